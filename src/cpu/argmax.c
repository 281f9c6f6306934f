/* Argmax on the CPU: rows split across the thread pool. A row goes in chunks of f32: the
 * chunk's maximum (NaN skipped: `v > m` is false for NaN) in a loop the compiler vectorizes,
 * then, only when it beats the best so far, the first element equal to it. Chunks run in index
 * order and must beat the best strictly, so ties go to the lowest index; -0 == +0. */
#include <math.h>

#include "../core/half.h"
#include "cpu.h"
#include "ref/ref.h"

enum { CHUNK = 1024 };

static void argmax_task(void *ctx, int64_t r0, int64_t r1)
{
    const mlxn_argmax_args *a = ctx;
    float buf[CHUNK];
    for (int64_t r = r0; r < r1; r++) {
        const char *x = mlxn_rows_ptr(&a->x, r);
        int64_t best_i = -1;
        float best = -INFINITY;
        for (int64_t i0 = 0; i0 < a->n; i0 += CHUNK) {
            const int64_t m = a->n - i0 < CHUNK ? a->n - i0 : CHUNK;
            const float *v = buf;
            if (a->dtype == MLXN_DTYPE_F32)
                v = (const float *)x + i0;
            else
                for (int64_t i = 0; i < m; i++) {
                    const uint16_t h = ((const uint16_t *)x)[i0 + i];
                    buf[i] = a->dtype == MLXN_DTYPE_F16 ? mlxn_f16_to_f32(h) : mlxn_bf16_to_f32(h);
                }
            float cm = -INFINITY;
            for (int64_t i = 0; i < m; i++)
                cm = v[i] > cm ? v[i] : cm;
            if (best_i >= 0 && !(cm > best))
                continue;
            for (int64_t i = 0; i < m; i++)
                if (v[i] == cm) { /* absent when the chunk holds only NaN */
                    best = cm;
                    best_i = i0 + i;
                    break;
                }
        }
        a->out[r] = (int32_t)best_i;
    }
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
