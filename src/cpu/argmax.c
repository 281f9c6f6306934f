/* Argmax on the CPU: rows split across the thread pool. A row goes in chunks of f32: the
 * chunk's maximum (NaN skipped: `v > m` is false for NaN) in loops the compiler vectorizes,
 * then, only when it beats the best so far, the first element equal to it. Chunks run in index
 * order and must beat the best strictly, so ties go to the lowest index; -0 == +0. */
#include <math.h>

#include "../core/half.h"
#include "cpu.h"
#include "ref/ref.h"

enum { CHUNK = 1024 };

int32_t mlxn_cpu_argmax_row(const void *row, int dtype, int64_t n)
{
    const char *x = row;
    float buf[CHUNK];
    int64_t best_i = -1;
    float best = -INFINITY;
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
        const int64_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        const float *v = buf;
        if (dtype == MLXN_DTYPE_F32)
            v = (const float *)x + i0;
        else
            for (int64_t i = 0; i < m; i++) {
                const uint16_t h = ((const uint16_t *)x)[i0 + i];
                buf[i] = dtype == MLXN_DTYPE_F16 ? mlxn_f16_to_f32(h) : mlxn_bf16_to_f32(h);
            }
        /* 16 running maxima (four vectors' chains at SSE width): without NaN the maximum does
         * not depend on the order, and where it is a zero, -0 and +0 find the same element */
        float c16[16];
        for (int j = 0; j < 16; j++)
            c16[j] = -INFINITY;
        int64_t k = 0;
        for (; k + 16 <= m; k += 16)
            for (int j = 0; j < 16; j++)
                c16[j] = v[k + j] > c16[j] ? v[k + j] : c16[j];
        float cm = -INFINITY;
        for (; k < m; k++)
            cm = v[k] > cm ? v[k] : cm;
        for (int j = 0; j < 16; j++)
            cm = c16[j] > cm ? c16[j] : cm;
        if (best_i >= 0 && !(cm > best))
            continue;
        for (int64_t i = 0; i < m; i++)
            if (v[i] == cm) { /* absent when the chunk holds only NaN */
                best = cm;
                best_i = i0 + i;
                break;
            }
    }
    return (int32_t)best_i;
}

static void argmax_task(void *ctx, int64_t r0, int64_t r1)
{
    const mlxn_argmax_args *a = ctx;
    for (int64_t r = r0; r < r1; r++)
        a->out[r] = mlxn_cpu_argmax_row(mlxn_rows_ptr(&a->x, r), a->dtype, a->n);
}

mlxn_status mlxn_cpu_argmax(mlxn_stream *s, const mlxn_argmax_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_argmax(a);
        return MLXN_STATUS_OK;
    }
    const int64_t min_rows = a->n >= 16384 ? 1 : 16384 / a->n;
    mlxn_threadpool_run(d->pool, a->n_rows, min_rows, argmax_task, (void *)a);
    return MLXN_STATUS_OK;
}
