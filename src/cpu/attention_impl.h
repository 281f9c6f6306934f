/* Attention on one SIMD level (included by level_*.c with MLXN_SIMD_LEVEL and MLXN_LEVEL_FN
 * set).
 *
 * A unit of work is a tile of consecutive queries (b, t0 ..) of one KV head's group of query
 * heads (cpu.h: up to MLXN_CPU_ATT_ROWS rows of query x head): keys are visited in blocks of
 * KEYS, each block of K and V read once for every row of the tile (an f32 cache row in place,
 * others converted to f32 once, a q8_0 row dequantized, exactly, by the shared decoder). Per row
 * the softmax is online: a running max m and sum l, the output accumulator rescaled by
 * exp(m_old - m_new) when the max grows. The sums run in two levels: a segment's keys (up to
 * ATT_SEGMENT) into acc and l, folded into the totals at the segment's end and at a rescale, so
 * an f32 sum takes at most ATT_SEGMENT terms in a row, and the totals one per segment and
 * rescale (one running sum over 16K keys drifted to 3e-5 of the output's bound). Rows are
 * padded with zeros to a multiple of the vector width, so the inner loops have no tails. A
 * block's keys outside a row's own range (causal, window) are scored and dropped: the tile's
 * keys are all written slots (below pos + Tq), so reading them is safe; like masked keys, they
 * take no part in the weighted sum. */
#include <math.h>
#include <string.h>

#include "simd.h"
#include "../core/internal.h"
#include "../formats/ggml_decode.h"

#define ATT_KEYS MLXN_CPU_ATT_KEYS
#define ATT_ROWS MLXN_CPU_ATT_ROWS
#define ATT_SEGMENT 256 /* keys, a multiple of ATT_KEYS */
_Static_assert(ATT_SEGMENT % ATT_KEYS == 0, "segments end at block boundaries");

/* n elements of dtype dt at src into dst as f32, zero-padded to np (a multiple of VL). */
MLXN_ALWAYS_INLINE void att_row_f32(int dt, const void *src, int64_t n, int64_t np, float scale, float *dst)
{
    int64_t i = 0;
    if (dt == MLXN_DTYPE_Q8_0) { /* a cache row (scale 1): n is a multiple of 32 */
        for (; i < n; i += MLXN_QK) {
            mlxn_block_q8_0 blk; /* copied out: blocks are 2-byte aligned at best */
            memcpy(&blk, (const char *)src + i / MLXN_QK * (int64_t)sizeof blk, sizeof blk);
            mlxn_unit_q8_0(&blk, dst + i);
        }
        for (; i < np; i++)
            dst[i] = 0.0f;
        return;
    }
    const vf s = vf_set1(scale);
    for (; i + VL <= n; i += VL)
        vf_store_f32(dst + i, vf_mul(vf_load(dt, src, i), s));
    for (; i < n; i++)
        dst[i] = sc_load(dt, src, i) * scale;
    for (; i < np; i++)
        dst[i] = 0.0f;
}

MLXN_ALWAYS_INLINE float att_dot(const float *x, const float *y, int64_t np)
{
    vf acc0 = vf_zero(), acc1 = vf_zero();
    int64_t i = 0;
    for (; i + 2 * VL <= np; i += 2 * VL) {
        acc0 = vf_fma(vf_load_f32(x + i), vf_load_f32(y + i), acc0);
        acc1 = vf_fma(vf_load_f32(x + i + VL), vf_load_f32(y + i + VL), acc1);
    }
    for (; i < np; i += VL)
        acc0 = vf_fma(vf_load_f32(x + i), vf_load_f32(y + i), acc0);
    return vf_hsum(vf_add(acc0, acc1));
}

/* A segment's sums folded into the totals, both scaled by alpha (a rescale; 1 at a segment's
 * end), and the segment restarted. */
MLXN_ALWAYS_INLINE void att_fold(float *acc, float *tot, float *l, float *lt, int64_t np, float alpha)
{
    const vf va = vf_set1(alpha);
    for (int64_t d = 0; d < np; d += VL) {
        vf_store_f32(tot + d, vf_mul(vf_add(vf_load_f32(tot + d), vf_load_f32(acc + d)), va));
        vf_store_f32(acc + d, vf_zero());
    }
    *lt = (*lt + *l) * alpha;
    *l = 0.0f;
}

/* z[j] = q . k[j] for the ATT_KEYS rows k: q's vectors loaded once for all of them */
MLXN_ALWAYS_INLINE void att_dots(const float *q, const float *const *k, int64_t np, float *z)
{
    vf acc[ATT_KEYS];
#pragma GCC unroll 8
    for (int j = 0; j < ATT_KEYS; j++)
        acc[j] = vf_zero();
    for (int64_t d = 0; d < np; d += VL) {
        const vf qv = vf_load_f32(q + d);
#pragma GCC unroll 8
        for (int j = 0; j < ATT_KEYS; j++)
            acc[j] = vf_fma(qv, vf_load_f32(k[j] + d), acc[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < ATT_KEYS; j++)
        z[j] = vf_hsum(acc[j]);
}

/* acc += sum_j w[j] v[j] over nk rows v: acc's vectors loaded and stored once for all of them */
MLXN_ALWAYS_INLINE void att_pv(float *acc, const float *const *v, const float *w, int nk, int64_t np)
{
    if (nk == ATT_KEYS) {
        vf wv[ATT_KEYS];
#pragma GCC unroll 8
        for (int j = 0; j < ATT_KEYS; j++)
            wv[j] = vf_set1(w[j]);
        for (int64_t d = 0; d < np; d += VL) {
            vf o = vf_load_f32(acc + d);
#pragma GCC unroll 8
            for (int j = 0; j < ATT_KEYS; j++)
                o = vf_fma(wv[j], vf_load_f32(v[j] + d), o);
            vf_store_f32(acc + d, o);
        }
        return;
    }
    for (int j = 0; j < nk; j++) {
        const vf wv = vf_set1(w[j]);
        for (int64_t d = 0; d < np; d += VL)
            vf_store_f32(acc + d, vf_fma(wv, vf_load_f32(v[j] + d), vf_load_f32(acc + d)));
    }
}

/* The tile's keys j0 .. j0 + nk - 1 for one row (its query at position p, its keys lo .. hi - 1):
 * scores, the online softmax's update and the weighted values into acc. */
MLXN_ALWAYS_INLINE void att_row_block(const mlxn_attention_args *a, const float *q, const float *const *kp,
                                      const float *const *vp, int64_t j0, int nk, int64_t lo, int64_t hi,
                                      const float *mask, int64_t np, float *acc, float *tot, float *m, float *l,
                                      float *lt)
{
    float z[ATT_KEYS], w[ATT_KEYS];
    if (nk == ATT_KEYS)
        att_dots(q, kp, np, z);
    else
        for (int j = 0; j < nk; j++)
            z[j] = att_dot(q, kp[j], np);
    float zmax = -INFINITY;
    for (int j = 0; j < nk; j++) {
        float zz = z[j];
        if (j0 + j < lo || j0 + j >= hi) {
            zz = -INFINITY;
        } else {
            if (a->softcap > 0.0f)
                zz = a->softcap * tanhf(zz / a->softcap);
            if (mask)
                zz += mask[j0 + j];
        }
        z[j] = zz;
        zmax = zz > zmax ? zz : zmax;
    }
    const float mn = zmax > *m ? zmax : *m;
    if (mn == -INFINITY)
        return; /* nothing visible yet */
    if (mn != *m) {
        att_fold(acc, tot, l, lt, np, expf(*m - mn));
        *m = mn;
    }
    /* the keys with a weight, as the reference takes them: a key masked to -inf adds nothing,
     * not even 0 times its value (which may be NaN or Inf) */
    const float *vw[ATT_KEYS];
    int n = 0;
    for (int j = 0; j < nk; j++)
        if (z[j] != -INFINITY) {
            w[n] = expf(z[j] - mn);
            *l += w[n];
            vw[n++] = vp[j];
        }
    att_pv(acc, vw, w, n, np);
}

MLXN_ALWAYS_INLINE void att_tile(const mlxn_attention_args *a, int64_t u, float *scratch, const int qdt,
                                 const int kvdt)
{
    const int64_t G = a->Hq / a->Hkv, D = a->D, np = (D + VL - 1) / VL * VL;
    const int64_t QT = mlxn_cpu_att_tile_queries(G), tiles = (a->Tq + QT - 1) / QT;
    const int64_t t0 = u % tiles * QT, hk = (u / tiles) % a->Hkv, b = u / (tiles * a->Hkv);
    const int64_t nq = a->Tq - t0 < QT ? a->Tq - t0 : QT;
    const int64_t first = a->pos[b];
    const bool in_range = first >= 0 && first + a->Tq <= a->S;
    const int64_t valid = first + a->Tq;
    const char *kbase = a->k.base + b * a->k.s0 + hk * a->k.s1, *vbase = a->v.base + b * a->v.s0 + hk * a->v.s1;
    /* an f32 cache's rows are read in place where they need no padding */
    const bool direct = kvdt == MLXN_DTYPE_F32 && np == D;
    /* the scratch's rows, np floats each (cpu.h) */
    float *qf = scratch, *acc = qf + ATT_ROWS * np, *tot = acc + ATT_ROWS * np, *kf = tot + ATT_ROWS * np,
          *vfl = kf + ATT_KEYS * np;
    float m[ATT_ROWS], l[ATT_ROWS], lt[ATT_ROWS];
    int64_t lo[ATT_ROWS], hi[ATT_ROWS];
    const float *kp[ATT_KEYS], *vp[ATT_KEYS];
    const int64_t hp = G < ATT_ROWS ? G : ATT_ROWS; /* heads a pass */
    for (int64_t h0 = hk * G; h0 < (hk + 1) * G; h0 += hp) {
        const int nh = (int)((hk + 1) * G - h0 < hp ? (hk + 1) * G - h0 : hp), rows = (int)nq * nh;
        if (!in_range) {
            for (int r = 0; r < rows; r++) {
                char *o = a->o.base + b * a->o.s0 + (t0 + r / nh) * a->o.s1 + (h0 + r % nh) * a->o.s2;
                for (int64_t d = 0; d < D; d++)
                    sc_store(qdt, o, d, NAN);
            }
            continue;
        }
        for (int r = 0; r < rows; r++) {
            const int64_t t = t0 + r / nh, p = first + t;
            hi[r] = a->causal ? p + 1 : valid;
            lo[r] = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
            att_row_f32(qdt, a->q.base + b * a->q.s0 + t * a->q.s1 + (h0 + r % nh) * a->q.s2, D, np, a->scale,
                        qf + r * np);
            for (int64_t d = 0; d < np; d++)
                acc[r * np + d] = tot[r * np + d] = 0.0f;
            m[r] = -INFINITY;
            l[r] = lt[r] = 0.0f;
        }
        /* the rows' key ranges grow with the position: the first row's start, the last's end */
        const int64_t klo = lo[0], khi = hi[rows - 1];
        for (int64_t j0 = klo; j0 < khi; j0 += ATT_KEYS) {
            const int nk = (int)(khi - j0 < ATT_KEYS ? khi - j0 : ATT_KEYS);
            for (int jj = 0; jj < nk; jj++) {
                const char *krow = kbase + (j0 + jj) * a->k.s2, *vrow = vbase + (j0 + jj) * a->v.s2;
                if (direct) {
                    kp[jj] = (const float *)krow;
                    vp[jj] = (const float *)vrow;
                } else {
                    att_row_f32(kvdt, krow, D, np, 1.0f, kf + jj * np);
                    att_row_f32(kvdt, vrow, D, np, 1.0f, vfl + jj * np);
                    kp[jj] = kf + jj * np;
                    vp[jj] = vfl + jj * np;
                }
            }
            for (int r = 0; r < rows; r++) {
                const float *mask =
                    a->mask ? (const float *)((const char *)a->mask + (t0 + r / nh) * a->mask_stride) : NULL;
                if (j0 < hi[r] && j0 + nk > lo[r])
                    att_row_block(a, qf + r * np, kp, vp, j0, nk, lo[r], hi[r], mask, np, acc + r * np,
                                  tot + r * np, &m[r], &l[r], &lt[r]);
                if ((j0 - klo + ATT_KEYS) % ATT_SEGMENT == 0)
                    att_fold(acc + r * np, tot + r * np, &l[r], &lt[r], np, 1.0f);
            }
        }
        for (int r = 0; r < rows; r++) {
            const int64_t i = h0 + r % nh;
            char *o = a->o.base + b * a->o.s0 + (t0 + r / nh) * a->o.s1 + i * a->o.s2;
            att_fold(acc + r * np, tot + r * np, &l[r], &lt[r], np, 1.0f);
            float inv = 0.0f;
            if (m[r] != -INFINITY) {
                float denom = lt[r];
                if (a->sinks)
                    denom += expf(a->sinks[i] - m[r]);
                inv = 1.0f / denom;
            }
            int64_t d = 0;
            for (; d + VL <= D; d += VL)
                vf_store(qdt, o, d, vf_mul(vf_load_f32(tot + r * np + d), vf_set1(inv)));
            for (; d < D; d++)
                sc_store(qdt, o, d, tot[r * np + d] * inv);
        }
    }
}

static void MLXN_LEVEL_FN(attention_units)(const mlxn_attention_args *a, int64_t u0, int64_t u1, float *scratch)
{
    /* One specialized loop per (q dtype, cache dtype) pair. */
#define ATT_CASE(q, kv)                             \
    if (a->q_dtype == (q) && a->kv_dtype == (kv)) { \
        for (int64_t u = u0; u < u1; u++)           \
            att_tile(a, u, scratch, (q), (kv));     \
        return;                                     \
    }
    ATT_CASE(MLXN_DTYPE_F32, MLXN_DTYPE_F32)
    ATT_CASE(MLXN_DTYPE_F32, MLXN_DTYPE_F16)
    ATT_CASE(MLXN_DTYPE_F32, MLXN_DTYPE_BF16)
    ATT_CASE(MLXN_DTYPE_F16, MLXN_DTYPE_F32)
    ATT_CASE(MLXN_DTYPE_F16, MLXN_DTYPE_F16)
    ATT_CASE(MLXN_DTYPE_F16, MLXN_DTYPE_BF16)
    ATT_CASE(MLXN_DTYPE_BF16, MLXN_DTYPE_F32)
    ATT_CASE(MLXN_DTYPE_BF16, MLXN_DTYPE_F16)
    ATT_CASE(MLXN_DTYPE_BF16, MLXN_DTYPE_BF16)
    ATT_CASE(MLXN_DTYPE_F32, MLXN_DTYPE_Q8_0)
    ATT_CASE(MLXN_DTYPE_F16, MLXN_DTYPE_Q8_0)
    ATT_CASE(MLXN_DTYPE_BF16, MLXN_DTYPE_Q8_0)
#undef ATT_CASE
}
