/* Elementwise binary ops and the affine scale on the CPU: rows split across the thread pool;
 * each row goes through f32 in chunks (converted in, one loop the compiler vectorizes,
 * converted out). */
#include <math.h>

#include "../core/binary_math.h"
#include "../core/half.h"
#include "cpu.h"
#include "ref/ref.h"

enum { CHUNK = 256 };

/* count elements of dtype dt at p, inc bytes apart (0: one element repeated), as f32 */
static void load_f32(int dt, const char *p, int64_t inc, int64_t count, float *out)
{
    if (dt == MLXN_DTYPE_F32 && inc == 4) {
        for (int64_t i = 0; i < count; i++)
            out[i] = ((const float *)p)[i];
        return;
    }
    for (int64_t i = 0; i < count; i++) {
        const char *q = p + i * inc;
        out[i] = dt == MLXN_DTYPE_F32   ? *(const float *)q
                 : dt == MLXN_DTYPE_F16 ? mlxn_f16_to_f32(*(const uint16_t *)q)
                                        : mlxn_bf16_to_f32(*(const uint16_t *)q);
    }
}

static void store_f32(int dt, char *p, int64_t count, const float *v)
{
    for (int64_t i = 0; i < count; i++) {
        if (dt == MLXN_DTYPE_F32)
            ((float *)p)[i] = v[i];
        else
            ((uint16_t *)p)[i] = dt == MLXN_DTYPE_F16 ? mlxn_f32_to_f16(v[i]) : mlxn_f32_to_bf16(v[i]);
    }
}

static void binary_task(void *ctx, int64_t r0, int64_t r1)
{
    const mlxn_binary_args *a = ctx;
    const int64_t es = a->dtype == MLXN_DTYPE_F32 ? 4 : 2;
    float x[CHUNK], b[CHUNK];
    for (int64_t r = r0; r < r1; r++) {
        const char *xr = mlxn_rows_ptr(&a->a, r), *br = mlxn_rows_ptr(&a->b, r);
        char *yr = mlxn_rows_ptr(&a->y, r);
        for (int64_t i0 = 0; i0 < a->n; i0 += CHUNK) {
            const int64_t m = a->n - i0 < CHUNK ? a->n - i0 : CHUNK;
            load_f32(a->dtype, xr + i0 * es, es, m, x);
            load_f32(a->b_dtype, br + i0 * a->b_inc, a->b_inc, m, b);
            switch (a->op) { /* one loop per op, so each vectorizes */
            case MLXN_BINOP_ADD:
                for (int64_t i = 0; i < m; i++)
                    x[i] = mlxn_binop_f32(MLXN_BINOP_ADD, x[i], b[i]);
                break;
            case MLXN_BINOP_SUB:
                for (int64_t i = 0; i < m; i++)
                    x[i] = mlxn_binop_f32(MLXN_BINOP_SUB, x[i], b[i]);
                break;
            case MLXN_BINOP_MUL:
                for (int64_t i = 0; i < m; i++)
                    x[i] = mlxn_binop_f32(MLXN_BINOP_MUL, x[i], b[i]);
                break;
            default:
                for (int64_t i = 0; i < m; i++)
                    x[i] = mlxn_binop_f32(MLXN_BINOP_DIV, x[i], b[i]);
                break;
            }
            store_f32(a->dtype, yr + i0 * es, m, x);
        }
    }
}

mlxn_status mlxn_cpu_binary(mlxn_stream *s, const mlxn_binary_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_binary(a);
        return MLXN_STATUS_OK;
    }
    const int64_t min_rows = a->n >= 16384 ? 1 : 16384 / a->n;
    mlxn_threadpool_run(d->pool, a->n_rows, min_rows, binary_task, (void *)a);
    return MLXN_STATUS_OK;
}
