/* Argmax on the CPU: rows split across the thread pool; each element packed with its index
 * (sample_math.h) and the maximum taken over the packed integers, a loop the compiler
 * vectorizes for f32. */
#include "../core/half.h"
#include "../core/sample_math.h"
#include "cpu.h"
#include "ref/ref.h"

static void argmax_task(void *ctx, int64_t r0, int64_t r1)
{
    const mlxn_argmax_args *a = ctx;
    for (int64_t r = r0; r < r1; r++) {
        const char *x = mlxn_rows_ptr(&a->x, r);
        uint64_t best = 0;
        for (int64_t i = 0; i < a->n; i++) {
            const float v = a->dtype == MLXN_DTYPE_F32   ? ((const float *)x)[i]
                            : a->dtype == MLXN_DTYPE_F16 ? mlxn_f16_to_f32(((const uint16_t *)x)[i])
                                                         : mlxn_bf16_to_f32(((const uint16_t *)x)[i]);
            const uint64_t p = mlxn_argmax_pack(v, i);
            best = p > best ? p : best;
        }
        a->out[r] = mlxn_argmax_index(best);
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
