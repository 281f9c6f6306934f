/* The softmax family on the CPU: rows across the thread pool, each range run by the device's
 * SIMD level (softmax_impl.h), or by the oracle on a REFERENCE device, single-threaded. */
#include "cpu.h"
#include "ref/ref.h"

typedef struct softmax_task_ctx {
    const mlxn_softmax_args *args;
    const mlxn_cpu_kernel_set *kernels;
} softmax_task_ctx;

static void softmax_task(void *ctx, int64_t r0, int64_t r1)
{
    const softmax_task_ctx *c = ctx;
    c->kernels->softmax_rows(c->args, r0, r1);
}

mlxn_status mlxn_cpu_softmax(mlxn_stream *s, const mlxn_softmax_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_softmax(a);
        return MLXN_STATUS_OK;
    }
    softmax_task_ctx c = {a, d->kernels};
    const int64_t min_rows = a->n >= 16384 ? 1 : 16384 / a->n;
    mlxn_threadpool_run(d->pool, a->n_rows, min_rows, softmax_task, &c);
    return MLXN_STATUS_OK;
}
