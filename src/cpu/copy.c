/* Strided copy with a dtype change on the CPU (mlxn_copy, mlxn_permute, mlxn_concat). The views
 * come normalized (op_list.h): dim ndim - 1 is the one y walks fastest.
 *   - x walks that dim contiguously too (copies, slices, concat parts): runs of up to RUN
 *     elements, each a memcpy (one dtype) or a conversion loop; runs are the parallel units, so
 *     one long contiguous copy spreads over the threads.
 *   - x is contiguous along another dim b (a transpose): TILE x TILE tiles of (b, ndim - 1), so
 *     the cache lines of x that a tile reads column by column are reused across its columns
 *     instead of being fetched once per element.
 *   - otherwise element by element along the innermost dim. */
#include <string.h>

#include "../core/half.h"
#include "cpu.h"
#include "ref/ref.h"

enum { RUN = 16384, TILE = 32 };

static inline void move_one(int xdt, int ydt, const char *x, char *y)
{
    if (xdt == ydt) {
        memcpy(y, x, xdt == MLXN_DTYPE_F32 || xdt == MLXN_DTYPE_I32 ? 4 : 2);
        return;
    }
    mlxn_store_float(ydt, y, 0, mlxn_load_float(xdt, x, 0));
}

/* n elements x[i * xinc] -> y[i * yinc] */
static void move_run(int xdt, int ydt, const char *x, int64_t xinc, char *y, int64_t yinc, int64_t n)
{
    const int64_t xes = xdt == MLXN_DTYPE_F32 || xdt == MLXN_DTYPE_I32 ? 4 : 2;
    const int64_t yes = ydt == MLXN_DTYPE_F32 || ydt == MLXN_DTYPE_I32 ? 4 : 2;
    if (xinc == xes && yinc == yes) {
        if (xdt == ydt) {
            memcpy(y, x, (size_t)(n * xes));
        } else if (xdt == MLXN_DTYPE_F32) {
            for (int64_t i = 0; i < n; i++)
                mlxn_store_float(ydt, y, i, ((const float *)x)[i]);
        } else {
            for (int64_t i = 0; i < n; i++)
                mlxn_store_float(ydt, y, i, mlxn_load_float(xdt, x, i));
        }
        return;
    }
    for (int64_t i = 0; i < n; i++)
        move_one(xdt, ydt, x + i * xinc, y + i * yinc);
}

/* The offsets of outer index o over the dims in `dims` (innermost last). */
static void outer_offsets(const mlxn_copy_args *a, const int *dims, int n_dims, int64_t o, int64_t *xo, int64_t *yo)
{
    *xo = *yo = 0;
    for (int k = n_dims - 1; k >= 0; k--) {
        const int d = dims[k];
        const int64_t i = o % a->shape[d];
        o /= a->shape[d];
        *xo += i * a->xs[d];
        *yo += i * a->ys[d];
    }
}

typedef struct copy_ctx {
    const mlxn_copy_args *a;
    int b;                  /* the transpose's contiguous dim of x, or -1 */
    int outer[MLXN_MAX_DIMS]; /* the dims the units walk besides the tiled or run ones */
    int n_outer;
    int64_t per_outer;      /* units per outer index: runs of the innermost dim, or tiles along b */
} copy_ctx;

static void runs_task(void *ctx, int64_t u0, int64_t u1)
{
    const copy_ctx *c = ctx;
    const mlxn_copy_args *a = c->a;
    const int in = a->ndim - 1;
    for (int64_t u = u0; u < u1; u++) {
        int64_t xo, yo;
        outer_offsets(a, c->outer, c->n_outer, u / c->per_outer, &xo, &yo);
        const int64_t i0 = u % c->per_outer * RUN;
        const int64_t n = a->shape[in] - i0 < RUN ? a->shape[in] - i0 : RUN;
        move_run(a->x_dtype, a->y_dtype, a->x + xo + i0 * a->xs[in], a->xs[in], a->y + yo + i0 * a->ys[in],
                 a->ys[in], n);
    }
}

static void tiles_task(void *ctx, int64_t u0, int64_t u1)
{
    const copy_ctx *c = ctx;
    const mlxn_copy_args *a = c->a;
    const int in = a->ndim - 1, b = c->b;
    for (int64_t u = u0; u < u1; u++) {
        int64_t xo, yo;
        outer_offsets(a, c->outer, c->n_outer, u / c->per_outer, &xo, &yo);
        const int64_t j0 = u % c->per_outer * TILE;
        const int64_t j1 = a->shape[b] - j0 < TILE ? a->shape[b] : j0 + TILE;
        for (int64_t i0 = 0; i0 < a->shape[in]; i0 += TILE) {
            const int64_t i1 = a->shape[in] - i0 < TILE ? a->shape[in] : i0 + TILE;
            for (int64_t j = j0; j < j1; j++) {
                const char *x = a->x + xo + j * a->xs[b];
                char *y = a->y + yo + j * a->ys[b];
                for (int64_t i = i0; i < i1; i++)
                    move_one(a->x_dtype, a->y_dtype, x + i * a->xs[in], y + i * a->ys[in]);
            }
        }
    }
}

mlxn_status mlxn_cpu_copy(mlxn_stream *s, const mlxn_copy_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_copy(a);
        return MLXN_STATUS_OK;
    }
    const int in = a->ndim - 1;
    const int64_t xes = (int64_t)mlxn_dtype_size((mlxn_dtype)a->x_dtype);
    copy_ctx c = {.a = a, .b = -1};
    if (a->xs[in] != xes)
        for (int k = in - 1; k >= 0; k--)
            if (a->xs[k] == xes) {
                c.b = k;
                break;
            }
    for (int k = 0; k < in; k++)
        if (k != c.b)
            c.outer[c.n_outer++] = k;
    int64_t outer = 1;
    for (int k = 0; k < c.n_outer; k++)
        outer *= a->shape[c.outer[k]];
    if (c.b < 0) {
        c.per_outer = (a->shape[in] + RUN - 1) / RUN;
        const int64_t min_units = a->shape[in] >= RUN ? 1 : RUN / a->shape[in];
        mlxn_threadpool_run(d->pool, outer * c.per_outer, min_units, runs_task, &c);
    } else {
        c.per_outer = (a->shape[c.b] + TILE - 1) / TILE;
        const int64_t per_unit = TILE * a->shape[in];
        mlxn_threadpool_run(d->pool, outer * c.per_outer, per_unit >= RUN ? 1 : RUN / per_unit, tiles_task, &c);
    }
    return MLXN_STATUS_OK;
}
