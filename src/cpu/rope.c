/* RoPE on the CPU: the radians per position of every pair once per call (f64), then rows
 * (b, t, h) across the thread pool through the SIMD level's rope_rows (rope_impl.h). */
#include <stdlib.h>

#include "../core/rope_math.h"
#include "cpu.h"
#include "ref/ref.h"

typedef struct rope_ctx {
    const mlxn_rope_args *a;
    const double *w; /* [n_rot / 2] radians per position */
    const mlxn_cpu_kernel_set *k;
} rope_ctx;

static void rope_task(void *ctx, int64_t r0, int64_t r1)
{
    const rope_ctx *c = ctx;
    c->k->rope_rows(c->a, c->w, r0, r1);
}

mlxn_status mlxn_cpu_rope(mlxn_stream *s, const mlxn_rope_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_rope(a);
        return MLXN_STATUS_OK;
    }
    const int64_t half = a->n_rot / 2;
    double *w = malloc((size_t)half * sizeof *w);
    if (!w)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_rope", "%lld pair frequencies", (long long)half);
    for (int64_t i = 0; i < half; i++)
        w[i] = mlxn_rope_freq(a, i);
    rope_ctx ctx = {a, w, d->kernels};
    const int64_t min_rows = a->head_dim >= 16384 ? 1 : 16384 / a->head_dim;
    mlxn_threadpool_run(d->pool, a->n_rows, min_rows, rope_task, &ctx);
    free(w);
    return MLXN_STATUS_OK;
}
