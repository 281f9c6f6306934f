/* RoPE on the CPU: rows (b, t, h) across the thread pool, grouped by token. The radians per
 * position of every pair are computed once per call (f64); per token, (cos, sin) of a chunk of
 * pairs are formed (angle in f64, reduced, f32 sin / cos) and applied to each of the token's
 * heads in the range, in f32 with one rounding to the dtype. */
#include <stdlib.h>
#include <string.h>

#include "../core/half.h"
#include "../core/rope_math.h"
#include "cpu.h"
#include "ref/ref.h"

enum { CHUNK = 128 }; /* pairs whose (cos, sin) sit on the stack at a time */

typedef struct rope_ctx {
    const mlxn_rope_args *a;
    const double *w; /* [n_rot / 2] radians per position */
} rope_ctx;

static inline __attribute__((always_inline)) float load(int dt, const void *p, int64_t i)
{
    if (dt == MLXN_DTYPE_F32)
        return ((const float *)p)[i];
    const uint16_t h = ((const uint16_t *)p)[i];
    return dt == MLXN_DTYPE_F16 ? mlxn_f16_to_f32(h) : mlxn_bf16_to_f32(h);
}

static inline __attribute__((always_inline)) void store(int dt, void *p, int64_t i, float v)
{
    if (dt == MLXN_DTYPE_F32)
        ((float *)p)[i] = v;
    else
        ((uint16_t *)p)[i] = dt == MLXN_DTYPE_F16 ? mlxn_f32_to_f16(v) : mlxn_f32_to_bf16(v);
}

/* Pairs i0 .. i0 + n - 1 of one head; dt and neox are constants at each call site below, so
 * every combination compiles to its own loop. Each pair is read before it is written: y may
 * be x. */
static inline __attribute__((always_inline)) void rotate(int dt, bool neox, int64_t half, const void *x, void *y,
                                                         int64_t i0, int64_t n, const float *c, const float *s)
{
    for (int64_t k = 0; k < n; k++) {
        const int64_t ia = neox ? i0 + k : 2 * (i0 + k), ib = neox ? ia + half : ia + 1;
        const float x0 = load(dt, x, ia), x1 = load(dt, x, ib);
        store(dt, y, ia, x0 * c[k] - x1 * s[k]);
        store(dt, y, ib, x0 * s[k] + x1 * c[k]);
    }
}

static void rotate_head(const mlxn_rope_args *a, const void *x, void *y, int64_t i0, int64_t n, const float *c,
                        const float *s)
{
    const int64_t half = a->n_rot / 2;
    const bool neox = a->style == MLXN_ROPE_NEOX;
    switch (a->dtype) {
    case MLXN_DTYPE_F32:
        neox ? rotate(MLXN_DTYPE_F32, true, half, x, y, i0, n, c, s) : rotate(MLXN_DTYPE_F32, false, half, x, y, i0, n, c, s);
        break;
    case MLXN_DTYPE_F16:
        neox ? rotate(MLXN_DTYPE_F16, true, half, x, y, i0, n, c, s) : rotate(MLXN_DTYPE_F16, false, half, x, y, i0, n, c, s);
        break;
    default:
        neox ? rotate(MLXN_DTYPE_BF16, true, half, x, y, i0, n, c, s)
             : rotate(MLXN_DTYPE_BF16, false, half, x, y, i0, n, c, s);
        break;
    }
}

static void rope_task(void *ctx, int64_t r0, int64_t r1)
{
    const rope_ctx *rc = ctx;
    const mlxn_rope_args *a = rc->a;
    const int64_t half = a->n_rot / 2, es = a->dtype == MLXN_DTYPE_F32 ? 4 : 2;
    float c[CHUNK], s[CHUNK];
    for (int64_t r = r0; r < r1;) {
        const int64_t tok = r / a->n_head, b = tok / a->n_tok, t = tok % a->n_tok;
        const int64_t r_end = (tok + 1) * a->n_head < r1 ? (tok + 1) * a->n_head : r1;
        for (int64_t i0 = 0; i0 < half; i0 += CHUNK) {
            const int64_t n = half - i0 < CHUNK ? half - i0 : CHUNK;
            for (int64_t k = 0; k < n; k++)
                mlxn_rope_cos_sin((double)mlxn_rope_pos(a, b, t, i0 + k) * rc->w[i0 + k], a->mscale, &c[k], &s[k]);
            for (int64_t h = r; h < r_end; h++)
                rotate_head(a, mlxn_rows_ptr(&a->x, h), mlxn_rows_ptr(&a->y, h), i0, n, c, s);
        }
        for (int64_t h = r; h < r_end && a->n_rot < a->head_dim; h++) {
            const char *x = mlxn_rows_ptr(&a->x, h);
            char *y = mlxn_rows_ptr(&a->y, h);
            if (x != y)
                memcpy(y + a->n_rot * es, x + a->n_rot * es, (size_t)((a->head_dim - a->n_rot) * es));
        }
        r = r_end;
    }
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
    rope_ctx ctx = {a, w};
    const int64_t min_rows = a->head_dim >= 16384 ? 1 : 16384 / a->head_dim;
    mlxn_threadpool_run(d->pool, a->n_rows, min_rows, rope_task, &ctx);
    free(w);
    return MLXN_STATUS_OK;
}
