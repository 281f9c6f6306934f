/* libFuzzer target for the GGUF reader: any input must open with OK or BAD_FORMAT, and on OK
 * every accessor must stay inside the input. */
#include <stddef.h>
#include <stdint.h>

#include "mlxn_gguf.h"

static volatile uint64_t sink;

static void walk(const mlxn_gguf_value *v, int depth)
{
    uint64_t u;
    int64_t i;
    double d;
    bool b;
    const char *s;
    size_t len;
    mlxn_gguf_type et;
    uint64_t n;
    if (mlxn_gguf_value_uint(v, &u) == MLXN_STATUS_OK)
        sink += u;
    if (mlxn_gguf_value_int(v, &i) == MLXN_STATUS_OK)
        sink += (uint64_t)i;
    if (mlxn_gguf_value_float(v, &d) == MLXN_STATUS_OK)
        sink += (uint64_t)(d == d);
    if (mlxn_gguf_value_bool(v, &b) == MLXN_STATUS_OK)
        sink += b;
    if (mlxn_gguf_value_string(v, &s, &len) == MLXN_STATUS_OK && len)
        sink += (unsigned char)s[len - 1] + (unsigned char)s[len];
    if (mlxn_gguf_array_info(v, &et, &n) == MLXN_STATUS_OK && depth < 16)
        for (uint64_t k = 0; k < n && k < 4096; k++)
            walk(mlxn_gguf_array_at(v, k), depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mlxn_gguf *g = NULL;
    mlxn_status st = mlxn_gguf_open_memory_borrowed(data, size, &g);
    if (st != MLXN_STATUS_OK && st != MLXN_STATUS_ERR_BAD_FORMAT)
        __builtin_trap();
    if (!g)
        return 0;
    for (int64_t k = 0; k < mlxn_gguf_kv_count(g); k++) {
        const char *key = mlxn_gguf_kv_key(g, k);
        walk(mlxn_gguf_kv_value(g, k), 0);
        if (mlxn_gguf_find(g, key) == NULL)
            __builtin_trap();
    }
    for (int64_t k = 0; k < mlxn_gguf_tensor_count(g); k++) {
        const mlxn_gguf_tensor *t = mlxn_gguf_tensor_at(g, k);
        if (mlxn_gguf_find_tensor(g, t->name) != t)
            __builtin_trap();
        const uint8_t *p = t->data;
        for (uint64_t j = 0; j < t->size; j += 64)
            sink += p[j];
        if (t->size)
            sink += p[t->size - 1];
    }
    mlxn_gguf_free(g);
    return 0;
}
