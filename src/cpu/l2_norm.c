/* y = x / max(||x||, eps) per row on the CPU: rows split across the thread pool; each row goes
 * through f32 in chunks (converted in, loops over 16 independent partial sums that the compiler
 * vectorizes, converted out), as ggml sums in f32 (here with 16 partial sums instead of one). */
#include <math.h>

#include "../core/half.h"
#include "cpu.h"
#include "ref/ref.h"

enum { CHUNK = 256, LANES = 16 };

static void load_chunk(int dt, const char *row, int64_t i0, int64_t m, float *v)
{
    if (dt == MLXN_DTYPE_F32) {
        for (int64_t i = 0; i < m; i++)
            v[i] = ((const float *)row)[i0 + i];
        return;
    }
    for (int64_t i = 0; i < m; i++)
        v[i] = mlxn_load_float(dt, row, i0 + i);
}

static void l2_norm_task(void *ctx, int64_t r0, int64_t r1)
{
    const mlxn_l2_norm_args *a = ctx;
    float v[CHUNK];
    for (int64_t r = r0; r < r1; r++) {
        const char *x = mlxn_rows_ptr(&a->x, r);
        char *y = mlxn_rows_ptr(&a->y, r);
        float part[LANES] = {0};
        for (int64_t i0 = 0; i0 < a->n; i0 += CHUNK) {
            const int64_t m = a->n - i0 < CHUNK ? a->n - i0 : CHUNK;
            load_chunk(a->dtype, x, i0, m, v);
            for (int64_t i = m; i < (m + LANES - 1) / LANES * LANES; i++)
                v[i] = 0.0f;
            for (int64_t i = 0; i < m; i += LANES)
                for (int l = 0; l < LANES; l++)
                    part[l] += v[i + l] * v[i + l];
        }
        float sum = 0.0f;
        for (int l = 0; l < LANES; l++)
            sum += part[l];
        const float scale = 1.0f / fmaxf(sqrtf(sum), a->eps);
        for (int64_t i0 = 0; i0 < a->n; i0 += CHUNK) {
            const int64_t m = a->n - i0 < CHUNK ? a->n - i0 : CHUNK;
            load_chunk(a->dtype, x, i0, m, v);
            if (a->dtype == MLXN_DTYPE_F32)
                for (int64_t i = 0; i < m; i++)
                    ((float *)y)[i0 + i] = v[i] * scale;
            else
                for (int64_t i = 0; i < m; i++)
                    mlxn_store_float(a->dtype, y, i0 + i, v[i] * scale);
        }
    }
}

mlxn_status mlxn_cpu_l2_norm(mlxn_stream *s, const mlxn_l2_norm_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_l2_norm(a);
        return MLXN_STATUS_OK;
    }
    const int64_t min_rows = a->n >= 16384 ? 1 : 16384 / a->n;
    mlxn_threadpool_run(d->pool, a->n_rows, min_rows, l2_norm_task, (void *)a);
    return MLXN_STATUS_OK;
}
