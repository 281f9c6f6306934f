/* Activations on the CPU: rows split across the thread pool, f32 math per element (libm),
 * converted from and to the dtype. Portable C; the libm calls bound it (bench/NOTES.md). */
#include "../core/act_math.h"
#include "../core/half.h"
#include "cpu.h"
#include "ref/ref.h"

static void act_task(void *ctx, int64_t r0, int64_t r1)
{
    const mlxn_act_args *a = ctx;
    for (int64_t r = r0; r < r1; r++) {
        const char *x = mlxn_rows_ptr(&a->x, r);
        const char *up = a->up.base ? mlxn_rows_ptr(&a->up, r) : NULL;
        char *y = mlxn_rows_ptr(&a->y, r);
        for (int64_t i = 0; i < a->n; i++) {
            float v = mlxn_act_f32(a->act, mlxn_load_float(a->dtype, x, i));
            mlxn_store_float(a->dtype, y, i, up ? v * mlxn_load_float(a->dtype, up, i) : v);
        }
    }
}

mlxn_status mlxn_cpu_act(mlxn_stream *s, const mlxn_act_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_act(a);
        return MLXN_STATUS_OK;
    }
    const int64_t min_rows = a->n >= 16384 ? 1 : 16384 / a->n;
    mlxn_threadpool_run(d->pool, a->n_rows, min_rows, act_task, (void *)a);
    return MLXN_STATUS_OK;
}
