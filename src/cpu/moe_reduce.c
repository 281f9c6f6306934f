/* MoE reduce on the CPU: work units of (token, chunk of CHUNK columns) split across the thread
 * pool, so a decode step (one token) still spreads over the threads. A unit accumulates
 * w[j] * x[t, j, chunk] for j in slot order into an f32 buffer (a loop the compiler vectorizes)
 * and rounds it once to y's dtype. */
#include "../core/half.h"
#include "cpu.h"
#include "ref/ref.h"

enum { CHUNK = 1024 };

static void moe_reduce_task(void *ctx, int64_t u0, int64_t u1)
{
    const mlxn_moe_reduce_args *a = ctx;
    const int64_t chunks = (a->n + CHUNK - 1) / CHUNK;
    float acc[CHUNK];
    for (int64_t u = u0; u < u1; u++) {
        const int64_t t = u / chunks, c0 = (u % chunks) * CHUNK;
        const int64_t len = a->n - c0 < CHUNK ? a->n - c0 : CHUNK;
        const float *w = (const float *)mlxn_rows_ptr(&a->weights, t);
        for (int64_t i = 0; i < len; i++)
            acc[i] = 0.0f;
        for (int64_t j = 0; j < a->top_k; j++) {
            const char *x = mlxn_rows_ptr(&a->x, t * a->top_k + j);
            const float wj = w[j];
            if (a->dtype == MLXN_DTYPE_F32) {
                const float *xf = (const float *)x + c0;
                for (int64_t i = 0; i < len; i++)
                    acc[i] += wj * xf[i];
            } else if (a->dtype == MLXN_DTYPE_F16) {
                const uint16_t *xh = (const uint16_t *)x + c0;
                for (int64_t i = 0; i < len; i++)
                    acc[i] += wj * mlxn_f16_to_f32(xh[i]);
            } else {
                const uint16_t *xh = (const uint16_t *)x + c0;
                for (int64_t i = 0; i < len; i++)
                    acc[i] += wj * mlxn_bf16_to_f32(xh[i]);
            }
        }
        char *y = mlxn_rows_ptr(&a->y, t);
        if (a->dtype == MLXN_DTYPE_F32) {
            float *yf = (float *)y + c0;
            for (int64_t i = 0; i < len; i++)
                yf[i] = acc[i];
        } else {
            for (int64_t i = 0; i < len; i++)
                mlxn_store_float(a->dtype, y, c0 + i, acc[i]);
        }
    }
}

mlxn_status mlxn_cpu_moe_reduce(mlxn_stream *s, const mlxn_moe_reduce_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_moe_reduce(a);
        return MLXN_STATUS_OK;
    }
    const int64_t chunks = (a->n + CHUNK - 1) / CHUNK;
    /* a unit reads k * CHUNK elements: 16 or more of them per range */
    const int64_t min_units = a->top_k >= 16 ? 1 : 16 / a->top_k;
    mlxn_threadpool_run(d->pool, a->n_tokens * chunks, min_units, moe_reduce_task, (void *)a);
    return MLXN_STATUS_OK;
}
