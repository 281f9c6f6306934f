/* Embedding lookup on the CPU: tokens split across the thread pool; a GGML row is decoded a
 * 32-element unit at a time by the shared decoders, scaled in f32 and stored. */
#include <math.h>

#include "../core/half.h"
#include "../formats/ggml_decode.h"
#include "cpu.h"
#include "ref/ref.h"

static void get_rows_task(void *ctx, int64_t t0, int64_t t1)
{
    const mlxn_get_rows_args *a = ctx;
    const int be = mlxn_ggml_block_elems(a->table_dtype);
    for (int64_t t = t0; t < t1; t++) {
        const int32_t id = ((const int32_t *)mlxn_rows_ptr(&a->ids, t / a->ids_len))[t % a->ids_len];
        char *y = mlxn_rows_ptr(&a->y, t);
        if (id < 0 || id >= a->table_rows) {
            for (int64_t i = 0; i < a->n; i++)
                mlxn_store_float(a->y_dtype, y, i, NAN);
            continue;
        }
        const uint8_t *row = a->table + id * a->table_stride;
        if (!be) {
            for (int64_t i = 0; i < a->n; i++)
                mlxn_store_float(a->y_dtype, y, i, mlxn_load_float(a->table_dtype, row, i) * a->scale);
            continue;
        }
        for (int64_t k0 = 0; k0 < a->n; k0 += 32) {
            float unit[32];
            int u;
            const uint8_t *block = mlxn_ggml_unit_ptr(a->table_dtype, row, k0, &u);
            mlxn_ggml_unit(a->table_dtype, block, u, unit);
            for (int j = 0; j < 32; j++)
                mlxn_store_float(a->y_dtype, y, k0 + j, unit[j] * a->scale);
        }
    }
}

mlxn_status mlxn_cpu_get_rows(mlxn_stream *s, const mlxn_get_rows_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_get_rows(a);
        return MLXN_STATUS_OK;
    }
    const int64_t min_tokens = a->n >= 16384 ? 1 : 16384 / a->n;
    mlxn_threadpool_run(d->pool, a->n_tokens, min_tokens, get_rows_task, (void *)a);
    return MLXN_STATUS_OK;
}
