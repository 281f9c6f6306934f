/* libFuzzer target for the safetensors reader (and so its JSON parser): any input must open
 * with OK or BAD_FORMAT, and on OK every tensor must lie inside the input. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mlxn_safetensors.h"

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mlxn_safetensors *st = NULL;
    mlxn_status s = mlxn_safetensors_open_memory_borrowed(data, size, &st);
    if (s != MLXN_STATUS_OK && s != MLXN_STATUS_ERR_BAD_FORMAT)
        __builtin_trap();
    if (!st)
        return 0;
    for (int64_t i = 0; i < mlxn_safetensors_tensor_count(st); i++) {
        const mlxn_st_tensor *t = mlxn_safetensors_tensor_at(st, i);
        if (mlxn_safetensors_find(st, t->name) != t)
            __builtin_trap();
        const uint8_t *p = t->data;
        if (t->size)
            sink += p[0] + p[t->size - 1];
    }
    for (int64_t i = 0; i < mlxn_safetensors_metadata_count(st); i++)
        sink += strlen(mlxn_safetensors_metadata_get(st, mlxn_safetensors_metadata_key(st, i)));
    mlxn_safetensors_free(st);
    return 0;
}
