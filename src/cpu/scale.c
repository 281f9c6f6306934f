/* y = alpha * x + beta on the CPU: rows split across the thread pool, one fmaf per element in
 * f32 (the CUDA kernel's operation, so both round identically). */
#include <math.h>

#include "../core/half.h"
#include "cpu.h"
#include "ref/ref.h"

static void scale_task(void *ctx, int64_t r0, int64_t r1)
{
    const mlxn_scale_args *a = ctx;
    for (int64_t r = r0; r < r1; r++) {
        const char *x = mlxn_rows_ptr(&a->x, r);
        char *y = mlxn_rows_ptr(&a->y, r);
        const uint16_t *xh = (const uint16_t *)x;
        uint16_t *yh = (uint16_t *)y;
        switch (a->dtype) {
        case MLXN_DTYPE_F32:
            for (int64_t i = 0; i < a->n; i++)
                ((float *)y)[i] = fmaf(a->alpha, ((const float *)x)[i], a->beta);
            break;
        case MLXN_DTYPE_F16:
            for (int64_t i = 0; i < a->n; i++)
                yh[i] = mlxn_f32_to_f16(fmaf(a->alpha, mlxn_f16_to_f32(xh[i]), a->beta));
            break;
        default:
            for (int64_t i = 0; i < a->n; i++)
                yh[i] = mlxn_f32_to_bf16(fmaf(a->alpha, mlxn_bf16_to_f32(xh[i]), a->beta));
            break;
        }
    }
}

mlxn_status mlxn_cpu_scale(mlxn_stream *s, const mlxn_scale_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_scale(a);
        return MLXN_STATUS_OK;
    }
    const int64_t min_rows = a->n >= 16384 ? 1 : 16384 / a->n;
    mlxn_threadpool_run(d->pool, a->n_rows, min_rows, scale_task, (void *)a);
    return MLXN_STATUS_OK;
}
