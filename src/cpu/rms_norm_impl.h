/* RMS norm family on one SIMD level (included by level_*.c with MLXN_SIMD_LEVEL and
 * MLXN_LEVEL_FN set).
 *
 * Per row: pass 1 reads x (and r; s = round(x + r), or with norm_r round(x + r * rs * r_w)
 * after a pass over r for rs) and accumulates the squares; pass 2 reads the row again, now
 * from cache, recomputes s and writes y (and sum). Squares are summed in
 * f32 over blocks of VF_SQUARES_BLOCK elements and the block sums in f64 (simd.h), so a
 * 262144-element row keeps the f32 outputs within 1e-6 of the f64 oracle. With `stream` set, outputs are written
 * with non-temporal stores (large outputs: no read for ownership, no cache pollution). */
#include <math.h>

#include "simd.h"
#include "../core/internal.h"

/* The residual's term at i: r, or with norm_r r * rs * r_w. */
#define RMS_R(i) \
    (!a->norm_r ? vf_load(dt, res, i) \
                : rw ? vf_mul(vf_mul(vf_load(dt, res, i), vrs), vf_load(rwdt, rw, i)) : vf_mul(vf_load(dt, res, i), vrs))
#define RMS_R_SC(i) \
    (!a->norm_r ? sc_load(dt, res, i) : sc_load(dt, res, i) * rs * (rw ? sc_load(rwdt, rw, i) : 1.0f))
/* The row's value at i: x, or the stored sum round(x + r term). */
#define RMS_SRC(i) (res ? vf_round(dt, vf_add(vf_load(dt, x, i), RMS_R(i))) : vf_load(dt, x, i))

MLXN_ALWAYS_INLINE void rms_norm_row(const mlxn_rms_norm_args *a, int64_t row, bool stream,
                                     const int dt, const int wdt)
{
    const int64_t n = a->n;
    const char *x = mlxn_rows_ptr(&a->x, row);
    const char *res = a->r.base ? mlxn_rows_ptr(&a->r, row) : NULL;
    char *sum = a->r.base ? mlxn_rows_ptr(&a->sum, row) : NULL;
    const char *m = a->m.base ? mlxn_rows_ptr(&a->m, row) : NULL;
    char *y = mlxn_rows_ptr(&a->y, row);
    /* with norm_r: r's own scale, from a pass over r before sum (which may be r) is written */
    const char *rw = a->r_w;
    const int rwdt = a->r_w_dtype;
    const float rs = res && a->norm_r ? vf_inv_rms(dt, res, n, a->eps) : 1.0f;
    const vf vrs = vf_set1(rs);
    float scale;
    if (!res) {
        scale = vf_inv_rms(dt, x, n, a->eps);
    } else { /* the norm sees the sum as stored: recomputed here, stored in pass 2 */
        double total = 0;
        for (int64_t b = 0; b < n; b += VF_SQUARES_BLOCK) {
            const int64_t e = b + VF_SQUARES_BLOCK < n ? b + VF_SQUARES_BLOCK : n;
            vf acc = vf_zero();
            int64_t i = b;
            float tail = 0;
            for (; i + VL <= e; i += VL) {
                vf s = RMS_SRC(i);
                acc = vf_fma(s, s, acc);
            }
            for (; i < e; i++) {
                const float s = sc_round(dt, sc_load(dt, x, i) + RMS_R_SC(i));
                tail += s * s;
            }
            total += (double)(vf_hsum(acc) + tail);
        }
        scale = (float)(1.0 / sqrt(total / (double)n + (double)a->eps));
    }
    const vf vs = vf_set1(scale);
    /* Streaming needs y (and sum) aligned the same way; else plain stores. */
    int64_t head = stream ? vf_stream_head(dt, y, 0) : -1;
    if (head >= 0 && sum && vf_stream_head(dt, sum, 0) != head)
        head = -1;
    int64_t i = 0;
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: scalar head (up to the streaming alignment), then plain or streamed vectors;
         * pass 1: scalar tail */
        int64_t end = pass == 0 ? (head > 0 ? (head < n ? head : n) : 0) : n;
        for (; i < end; i++) {
            float s = sc_load(dt, x, i);
            if (res) {
                s = sc_round(dt, s + RMS_R_SC(i));
                sc_store(dt, sum, i, s);
            }
            float v = s * scale;
            if (a->w)
                v *= sc_load(wdt, a->w, i);
            if (m)
                v *= sc_load(dt, m, i);
            sc_store(dt, y, i, v);
        }
        if (pass == 1)
            break;
        for (; i + VL <= n; i += VL) {
            vf s = RMS_SRC(i);
            vf v = vf_mul(s, vs);
            if (a->w)
                v = vf_mul(v, vf_load(wdt, a->w, i));
            if (m)
                v = vf_mul(v, vf_load(dt, m, i));
            if (head >= 0) {
                if (res)
                    vf_stream(dt, sum, i, s);
                vf_stream(dt, y, i, v);
            } else {
                if (res)
                    vf_store(dt, sum, i, s);
                vf_store(dt, y, i, v);
            }
        }
    }
}
static void MLXN_LEVEL_FN(rms_norm_rows)(const mlxn_rms_norm_args *a, int64_t r0, int64_t r1,
                                         bool stream)
{
    /* One specialized loop per (dtype, weight dtype) pair. */
    const int wdt = a->w ? a->w_dtype : a->dtype;
    for (int64_t r = r0; r < r1; r++) {
        switch (a->dtype) {
        case MLXN_DTYPE_F32:
            rms_norm_row(a, r, stream, MLXN_DTYPE_F32, MLXN_DTYPE_F32);
            break;
        case MLXN_DTYPE_F16:
            if (wdt == MLXN_DTYPE_F32)
                rms_norm_row(a, r, stream, MLXN_DTYPE_F16, MLXN_DTYPE_F32);
            else
                rms_norm_row(a, r, stream, MLXN_DTYPE_F16, MLXN_DTYPE_F16);
            break;
        case MLXN_DTYPE_BF16:
            if (wdt == MLXN_DTYPE_F32)
                rms_norm_row(a, r, stream, MLXN_DTYPE_BF16, MLXN_DTYPE_F32);
            else
                rms_norm_row(a, r, stream, MLXN_DTYPE_BF16, MLXN_DTYPE_BF16);
            break;
        }
    }
    if (stream)
        mlxn_stream_fence();
}
