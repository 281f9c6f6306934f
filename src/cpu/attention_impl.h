/* Attention on one SIMD level (included by level_*.c with MLXN_SIMD_LEVEL and MLXN_LEVEL_FN
 * set).
 *
 * A unit of work is one query (b, t) of one KV head's group of query heads, taken HEADS at a
 * time: keys are visited in blocks of KEYS, each block of K and V converted to f32 once and used
 * by every head of the set (a q8_0 cache row dequantized, exactly, by the shared decoder). Per
 * head the softmax is online: a running max m and sum l, the output accumulator rescaled by
 * exp(m_old - m_new) when the max grows. The sums run in two levels: a segment's keys (up to
 * ATT_SEGMENT) into acc and l, folded into the totals at the segment's end and at a rescale, so
 * an f32 sum takes at most ATT_SEGMENT terms in a row, and the totals one per segment and
 * rescale (one running sum over 16K keys drifted to 3e-5 of the output's bound). Rows are
 * padded with zeros to a multiple of the vector width, so the inner loops have no tails. */
#include <math.h>
#include <string.h>

#include "simd.h"
#include "../core/internal.h"
#include "../formats/ggml_decode.h"

#define ATT_KEYS 8
#define ATT_HEADS 8
#define ATT_SEGMENT 256 /* keys, a multiple of ATT_KEYS */
_Static_assert(ATT_SEGMENT % ATT_KEYS == 0, "segments end at block boundaries");
#define ATT_PAD (((MLXN_ATTENTION_MAX_D) + 15) / 16 * 16)

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

MLXN_ALWAYS_INLINE void att_unit(const mlxn_attention_args *a, int64_t u, const int qdt, const int kvdt)
{
    const int64_t G = a->Hq / a->Hkv, D = a->D, np = (D + VL - 1) / VL * VL;
    const int64_t t = u % a->Tq, hk = (u / a->Tq) % a->Hkv, b = u / (a->Tq * a->Hkv);
    const int64_t first = a->pos[b];
    const bool in_range = first >= 0 && first + a->Tq <= a->S;
    const int64_t p = first + t, valid = first + a->Tq;
    const int64_t hi = a->causal ? p + 1 : valid, lo = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
    const float *mask = a->mask ? (const float *)((const char *)a->mask + t * a->mask_stride) : NULL;
    const char *kbase = a->k.base + b * a->k.s0 + hk * a->k.s1, *vbase = a->v.base + b * a->v.s0 + hk * a->v.s1;
    float qf[ATT_HEADS][ATT_PAD], acc[ATT_HEADS][ATT_PAD], tot[ATT_HEADS][ATT_PAD], kf[ATT_KEYS][ATT_PAD],
        vfl[ATT_KEYS][ATT_PAD];
    float m[ATT_HEADS], l[ATT_HEADS], lt[ATT_HEADS], z[ATT_KEYS];
    for (int64_t h0 = hk * G; h0 < (hk + 1) * G; h0 += ATT_HEADS) {
        const int nh = (int)((hk + 1) * G - h0 < ATT_HEADS ? (hk + 1) * G - h0 : ATT_HEADS);
        if (!in_range) {
            for (int i = 0; i < nh; i++) {
                char *o = a->o.base + b * a->o.s0 + t * a->o.s1 + (h0 + i) * a->o.s2;
                for (int64_t d = 0; d < D; d++)
                    sc_store(qdt, o, d, NAN);
            }
            continue;
        }
        for (int i = 0; i < nh; i++) {
            att_row_f32(qdt, a->q.base + b * a->q.s0 + t * a->q.s1 + (h0 + i) * a->q.s2, D, np, a->scale, qf[i]);
            for (int64_t d = 0; d < np; d++)
                acc[i][d] = tot[i][d] = 0.0f;
            m[i] = -INFINITY;
            l[i] = lt[i] = 0.0f;
        }
        for (int64_t j0 = lo; j0 < hi; j0 += ATT_KEYS) {
            const int nk = (int)(hi - j0 < ATT_KEYS ? hi - j0 : ATT_KEYS);
            for (int jj = 0; jj < nk; jj++) {
                att_row_f32(kvdt, kbase + (j0 + jj) * a->k.s2, D, np, 1.0f, kf[jj]);
                att_row_f32(kvdt, vbase + (j0 + jj) * a->v.s2, D, np, 1.0f, vfl[jj]);
            }
            for (int i = 0; i < nh; i++) {
                float zmax = -INFINITY;
                for (int jj = 0; jj < nk; jj++) {
                    float zz = att_dot(qf[i], kf[jj], np);
                    if (a->softcap > 0.0f)
                        zz = a->softcap * tanhf(zz / a->softcap);
                    if (mask)
                        zz += mask[j0 + jj];
                    z[jj] = zz;
                    zmax = zz > zmax ? zz : zmax;
                }
                const float mn = zmax > m[i] ? zmax : m[i];
                if (mn == -INFINITY)
                    continue; /* nothing visible yet */
                if (mn != m[i]) {
                    att_fold(acc[i], tot[i], &l[i], &lt[i], np, expf(m[i] - mn));
                    m[i] = mn;
                }
                for (int jj = 0; jj < nk; jj++) {
                    if (z[jj] == -INFINITY)
                        continue;
                    const float w = expf(z[jj] - mn);
                    const vf wv = vf_set1(w);
                    l[i] += w;
                    for (int64_t d = 0; d < np; d += VL)
                        vf_store_f32(acc[i] + d, vf_fma(wv, vf_load_f32(vfl[jj] + d), vf_load_f32(acc[i] + d)));
                }
                if ((j0 - lo + ATT_KEYS) % ATT_SEGMENT == 0)
                    att_fold(acc[i], tot[i], &l[i], &lt[i], np, 1.0f);
            }
        }
        for (int i = 0; i < nh; i++) {
            char *o = a->o.base + b * a->o.s0 + t * a->o.s1 + (h0 + i) * a->o.s2;
            att_fold(acc[i], tot[i], &l[i], &lt[i], np, 1.0f);
            float inv = 0.0f;
            if (m[i] != -INFINITY) {
                float denom = lt[i];
                if (a->sinks)
                    denom += expf(a->sinks[h0 + i] - m[i]);
                inv = 1.0f / denom;
            }
            int64_t d = 0;
            for (; d + VL <= D; d += VL)
                vf_store(qdt, o, d, vf_mul(vf_load_f32(tot[i] + d), vf_set1(inv)));
            for (; d < D; d++)
                sc_store(qdt, o, d, tot[i][d] * inv);
        }
    }
}

static void MLXN_LEVEL_FN(attention_units)(const mlxn_attention_args *a, int64_t u0, int64_t u1)
{
    /* One specialized loop per (q dtype, cache dtype) pair. */
#define ATT_CASE(q, kv)                             \
    if (a->q_dtype == (q) && a->kv_dtype == (kv)) { \
        for (int64_t u = u0; u < u1; u++)           \
            att_unit(a, u, (q), (kv));              \
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
