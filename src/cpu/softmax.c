/* The softmax family on the CPU: rows across the thread pool; per row one pass for the running
 * max and sum (f32, in blocks of 256 merged), one for the outputs (the row is read twice; the
 * second read hits cache for rows up to the cache size). */
#include <math.h>

#include "../core/half.h"
#include "../core/softmax_math.h"
#include "cpu.h"
#include "ref/ref.h"

static void softmax_task(void *ctx, int64_t r0, int64_t r1)
{
    const mlxn_softmax_args *a = ctx;
    for (int64_t r = r0; r < r1; r++) {
        const char *x = mlxn_rows_ptr(&a->x, r);
        const char *mask = a->mask.base ? mlxn_rows_ptr(&a->mask, r) : NULL;
        char *y = mlxn_rows_ptr(&a->y, r);
        /* blocks of 256 merged into the row's (max, sum): a running f32 sum over a whole
         * vocabulary row (1e5+ terms) drifts by ~sqrt(n) rounding steps (1.5e-5 relative at
         * n = 200000, over the harness bound), blocks keep it to ~256 + n / 256 */
        float m = -INFINITY, s = 0.0f;
        for (int64_t i0 = 0; i0 < a->n; i0 += 256) {
            const int64_t i1 = a->n - i0 < 256 ? a->n : i0 + 256;
            float mb = -INFINITY, sb = 0.0f;
            for (int64_t i = i0; i < i1; i++) {
                const float mk = mask ? mlxn_load_float(a->dtype, mask, i) : 0.0f;
                const float z = mlxn_softmax_logit(mlxn_load_float(a->dtype, x, i), mk, a->scale, a->softcap);
                mlxn_softmax_merge(&mb, &sb, z, 1.0f);
            }
            mlxn_softmax_merge(&m, &s, mb, sb);
        }
        for (int64_t i = 0; i < a->n; i++) {
            const float z = mlxn_softmax_logit(mlxn_load_float(a->dtype, x, i), mask ? mlxn_load_float(a->dtype, mask, i) : 0.0f,
                                               a->scale, a->softcap);
            mlxn_store_float(a->dtype, y, i, mlxn_softmax_out(z, m, s, a->log));
        }
    }
}

mlxn_status mlxn_cpu_softmax(mlxn_stream *s, const mlxn_softmax_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_softmax(a);
        return MLXN_STATUS_OK;
    }
    const int64_t min_rows = a->n >= 16384 ? 1 : 16384 / a->n;
    mlxn_threadpool_run(d->pool, a->n_rows, min_rows, softmax_task, (void *)a);
    return MLXN_STATUS_OK;
}
