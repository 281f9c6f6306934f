/* RoPE on one SIMD level (included by level_*.c with MLXN_SIMD_LEVEL and MLXN_LEVEL_FN set).
 *
 * Rows (b, t, h) come grouped by token. Per token, (cos, sin) of a chunk of pairs are formed
 * from the call's f64 frequencies (rope_math.h: angle in f64, reduced, then the f32 sin / cos;
 * rint and fma compile to instructions at the AVX levels) and applied to each of the token's
 * heads in the range, in f32 with one rounding to the dtype. NEOX rotates VL pairs per step,
 * one vector from each half; NORMAL takes VL interleaved elements per step against expanded
 * tables (c0, c0, c1, c1, ..) and (-s0, s0, -s1, s1, ..), the pairs swapped in the register.
 * Each step reads its elements before writing them: y may be x.
 *
 * With the per-head norm, each head's scale 1 / sqrt(mean(x^2) + eps) is taken first (squares
 * summed in f32 vectors over blocks, the block sums in f64, as rms_norm does), for up to
 * NORM_HEADS heads of a token at a time; then every element is loaded as x * scale * w, in f32,
 * where the plain rotation loads x, and the dims past n_rot are written the same way. */
#include <string.h>

#include "../core/rope_math.h"
#include "simd.h"

#define ROPE_CHUNK 128 /* pairs whose tables sit on the stack at a time */
#define NORM_HEADS 64  /* heads whose norm scales sit on the stack at a time */

#if MLXN_SIMD_LEVEL > 0
/* (v0, v1, v2, v3, ..) -> (v1, v0, v3, v2, ..) */
MLXN_ALWAYS_INLINE vf vf_swap_pairs(vf v)
{
#if MLXN_SIMD_LEVEL == 2
    return _mm512_permute_ps(v, 0xB1);
#else
    return _mm256_permute_ps(v, 0xB1);
#endif
}
#endif

/* Elements i .. i + VL - 1 of a head, normalized (x * scale * w) when norm. */
MLXN_ALWAYS_INLINE vf rope_in(const int dt, const bool norm, const char *x, int64_t i, const float *w, vf vscale)
{
    const vf v = vf_load(dt, x, i);
    return norm ? vf_mul(vf_mul(v, vscale), vf_load_f32(w + i)) : v;
}

MLXN_ALWAYS_INLINE float rope_in1(const int dt, const bool norm, const char *x, int64_t i, const float *w, float scale)
{
    const float v = sc_load(dt, x, i);
    return norm ? v * scale * w[i] : v;
}

/* Pairs i0 .. i0 + n - 1 of one head. NEOX: c, s, ns = -s per pair; NORMAL: c and s expanded
 * to two entries per pair (s with the sign of each output). w, scale: the head's norm. */
MLXN_ALWAYS_INLINE void rope_head(const int dt, const bool neox, const bool norm, int64_t half, const char *x, char *y,
                                  int64_t i0, int64_t n, const float *c, const float *s, const float *ns,
                                  const float *w, float scale)
{
    const vf vscale = vf_set1(scale);
    if (neox) {
        int64_t k = 0;
        for (; k + VL <= n; k += VL) {
            const vf x0 = rope_in(dt, norm, x, i0 + k, w, vscale), x1 = rope_in(dt, norm, x, i0 + k + half, w, vscale);
            const vf vc = vf_load_f32(c + k);
            vf_store(dt, y, i0 + k, vf_fma(x1, vf_load_f32(ns + k), vf_mul(x0, vc)));
            vf_store(dt, y, i0 + k + half, vf_fma(x1, vc, vf_mul(x0, vf_load_f32(s + k))));
        }
        for (; k < n; k++) {
            const float x0 = rope_in1(dt, norm, x, i0 + k, w, scale), x1 = rope_in1(dt, norm, x, i0 + k + half, w, scale);
            sc_store(dt, y, i0 + k, x0 * c[k] - x1 * s[k]);
            sc_store(dt, y, i0 + k + half, x0 * s[k] + x1 * c[k]);
        }
        return;
    }
    int64_t j = 0; /* element offset from 2 * i0 */
#if MLXN_SIMD_LEVEL > 0
    for (; j + VL <= 2 * n; j += VL) {
        const vf v = rope_in(dt, norm, x, 2 * i0 + j, w, vscale);
        vf_store(dt, y, 2 * i0 + j, vf_fma(vf_swap_pairs(v), vf_load_f32(s + j), vf_mul(v, vf_load_f32(c + j))));
    }
#endif
    for (; j < 2 * n; j += 2) {
        const float x0 = rope_in1(dt, norm, x, 2 * i0 + j, w, scale), x1 = rope_in1(dt, norm, x, 2 * i0 + j + 1, w, scale);
        sc_store(dt, y, 2 * i0 + j, x0 * c[j] + x1 * s[j]);
        sc_store(dt, y, 2 * i0 + j + 1, x1 * c[j + 1] + x0 * s[j + 1]);
    }
}

/* The norm weights of row r (head r % n_head). */
MLXN_ALWAYS_INLINE const float *rope_norm_w(const mlxn_rope_args *a, int64_t r)
{
    return (const float *)((const char *)a->norm_w + (r % a->n_head) * a->norm_w_stride);
}

MLXN_ALWAYS_INLINE void rope_rows_dt(const mlxn_rope_args *a, const double *w, int64_t r0, int64_t r1, const int dt,
                                     const bool neox, const bool norm)
{
    const int64_t half = a->n_rot / 2, es = dt == MLXN_DTYPE_F32 ? 4 : 2;
    float c[2 * ROPE_CHUNK], s[2 * ROPE_CHUNK], ns[ROPE_CHUNK], scale[NORM_HEADS];
    for (int64_t r = r0; r < r1;) {
        const int64_t tok = r / a->n_head, b = tok / a->n_tok, t = tok % a->n_tok;
        int64_t r_end = (tok + 1) * a->n_head < r1 ? (tok + 1) * a->n_head : r1;
        if (norm) {
            r_end = r_end - r < NORM_HEADS ? r_end : r + NORM_HEADS;
            for (int64_t h = r; h < r_end; h++)
                scale[h - r] = vf_inv_rms(dt, mlxn_rows_ptr(&a->x, h), a->head_dim, a->norm_eps);
        }
        for (int64_t i0 = 0; i0 < half; i0 += ROPE_CHUNK) {
            const int64_t n = half - i0 < ROPE_CHUNK ? half - i0 : ROPE_CHUNK;
            for (int64_t k = 0; k < n; k++) {
                float ck, sk;
                mlxn_rope_cos_sin((double)mlxn_rope_pos(a, b, t, i0 + k) * w[i0 + k], a->mscale, &ck, &sk);
                if (neox) {
                    c[k] = ck;
                    s[k] = sk;
                    ns[k] = -sk;
                } else {
                    c[2 * k] = c[2 * k + 1] = ck;
                    s[2 * k] = -sk;
                    s[2 * k + 1] = sk;
                }
            }
            for (int64_t h = r; h < r_end; h++)
                rope_head(dt, neox, norm, half, mlxn_rows_ptr(&a->x, h), mlxn_rows_ptr(&a->y, h), i0, n, c, s, ns,
                          norm ? rope_norm_w(a, h) : NULL, norm ? scale[h - r] : 1.0f);
        }
        for (int64_t h = r; h < r_end && a->n_rot < a->head_dim; h++) {
            const char *x = mlxn_rows_ptr(&a->x, h);
            char *y = mlxn_rows_ptr(&a->y, h);
            if (norm) {
                const float *nw = rope_norm_w(a, h), sc = scale[h - r];
                const vf vscale = vf_set1(sc);
                int64_t i = a->n_rot;
                for (; i + VL <= a->head_dim; i += VL)
                    vf_store(dt, y, i, rope_in(dt, true, x, i, nw, vscale));
                for (; i < a->head_dim; i++)
                    sc_store(dt, y, i, rope_in1(dt, true, x, i, nw, sc));
            } else if (x != y) {
                memcpy(y + a->n_rot * es, x + a->n_rot * es, (size_t)((a->head_dim - a->n_rot) * es));
            }
        }
        r = r_end;
    }
}

static void MLXN_LEVEL_FN(rope_rows)(const mlxn_rope_args *a, const double *w, int64_t r0, int64_t r1)
{
    /* one specialized loop per (dtype, pairing, norm) */
#define ROPE_ROWS_DT(dt)                                                                           \
    (a->style == MLXN_ROPE_NEOX ? (a->norm_w ? rope_rows_dt(a, w, r0, r1, dt, true, true)           \
                                             : rope_rows_dt(a, w, r0, r1, dt, true, false))         \
                                : (a->norm_w ? rope_rows_dt(a, w, r0, r1, dt, false, true)          \
                                             : rope_rows_dt(a, w, r0, r1, dt, false, false)))
    switch (a->dtype) {
    case MLXN_DTYPE_F32:
        ROPE_ROWS_DT(MLXN_DTYPE_F32);
        break;
    case MLXN_DTYPE_F16:
        ROPE_ROWS_DT(MLXN_DTYPE_F16);
        break;
    case MLXN_DTYPE_BF16:
        ROPE_ROWS_DT(MLXN_DTYPE_BF16);
        break;
    }
#undef ROPE_ROWS_DT
}
