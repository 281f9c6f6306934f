/* Activations on the CPU: rows split across the thread pool, each range run by the device's
 * SIMD level (act_impl.h), or by the oracle on a REFERENCE device, single-threaded. */
#include "cpu.h"
#include "ref/ref.h"

typedef struct act_task_ctx {
    const mlxn_act_args *args;
    const mlxn_cpu_kernel_set *kernels;
} act_task_ctx;

static void act_task(void *ctx, int64_t r0, int64_t r1)
{
    const act_task_ctx *c = ctx;
    c->kernels->act_rows(c->args, r0, r1);
}

mlxn_status mlxn_cpu_act(mlxn_stream *s, const mlxn_act_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_act(a);
        return MLXN_STATUS_OK;
    }
    act_task_ctx c = {a, d->kernels};
    const int64_t min_rows = a->n >= 16384 ? 1 : 16384 / a->n;
    mlxn_threadpool_run(d->pool, a->n_rows, min_rows, act_task, &c);
    return MLXN_STATUS_OK;
}
