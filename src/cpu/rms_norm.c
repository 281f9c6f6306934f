/* RMS norm on the CPU: rows split across the thread pool, each range run by the device's
 * SIMD level (or by the oracle on a REFERENCE device, single-threaded). */
#include "cpu.h"
#include "ref/ref.h"

typedef struct rms_norm_task_ctx {
    const mlxn_rms_norm_args *args;
    const mlxn_cpu_kernel_set *kernels;
    bool stream;
} rms_norm_task_ctx;

static void rms_norm_task(void *ctx, int64_t r0, int64_t r1)
{
    const rms_norm_task_ctx *c = ctx;
    c->kernels->rms_norm_rows(c->args, r0, r1, c->stream);
}

mlxn_status mlxn_cpu_rms_norm(mlxn_stream *s, const mlxn_rms_norm_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_rms_norm(a);
        return MLXN_STATUS_OK;
    }
    size_t es = a->dtype == MLXN_DTYPE_F32 ? 4 : 2;
    double out_bytes = (double)a->n_rows * (double)a->n * (double)es * (a->sum.base ? 2 : 1);
    rms_norm_task_ctx c = {a, d->kernels, mlxn_cpu_stream_output(d, out_bytes)};
    /* At least ~16K elements per thread, so that small norms stay on one core. */
    int64_t min_rows = a->n >= 16384 ? 1 : 16384 / a->n;
    mlxn_threadpool_run(d->pool, a->n_rows, min_rows, rms_norm_task, &c);
    return MLXN_STATUS_OK;
}
