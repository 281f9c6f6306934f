/* Quantized matmul with GGML weights on one SIMD level (included by level_*.c with
 * MLXN_SIMD_LEVEL 1 or 2 and MLXN_LEVEL_FN set).
 *
 * x stays f32 (the op's contract; quantizing it to int8 would move a model's logits by ~1).
 * So the work per weight is: widen its code to a 32-bit lane, convert to f32, apply the
 * format's scale and offset with one FMA (w = code * scale + offset, scale and offset per 16
 * or 32 elements), and one FMA per row of x. The decoded VL-wide weight vectors live only in
 * registers and are used by every row of x in the call (up to QMM_MB rows per pass over W), so
 * at M = 1 the memory read of W is the only traffic and the decode must keep up with it:
 * a 4-bit block is 18 bytes per 32 weights, about 6 cycles per block per core at this
 * machine's read bandwidth. Hence:
 *   - 4-bit codes become f32 with one permute (AVX-512: vpermps reads the low 4 bits of each
 *     lane, so a nibble needs no mask) from a 16-entry table, 0..15 or a codebook;
 *   - per-block f16 scales are converted 16 at a time into a small f32 array ahead of use,
 *     so the scaling FMA takes them as broadcast memory operands;
 *   - M = 1 runs four independent accumulators (FMA latency), M = 2 two, more rows one each.
 * The arithmetic is the reference decoder's (src/formats/ggml_decode.h) up to the rounding of
 * code * scale + offset (one rounding instead of two) and the order of the f32 sums. */
#include "simd.h"
#include "../core/internal.h"
#include "../formats/ggml_blocks.h"
#include "../formats/ggml_decode.h"

#if MLXN_SIMD_LEVEL == 2
#define QMM_MB 8 /* rows of x per pass over W: 8 x 1 accumulators + weights fit 32 registers */
typedef __m512i vi;
/* VL bytes at p, zero- or sign-extended to 32-bit lanes */
MLXN_ALWAYS_INLINE vi vi_u8(const uint8_t *p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)); }
MLXN_ALWAYS_INLINE vi vi_i8(const int8_t *p) { return _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)); }
MLXN_ALWAYS_INLINE vi vi_set1(int a) { return _mm512_set1_epi32(a); }
MLXN_ALWAYS_INLINE vi vi_and(vi a, vi b) { return _mm512_and_si512(a, b); }
MLXN_ALWAYS_INLINE vi vi_or(vi a, vi b) { return _mm512_or_si512(a, b); }
MLXN_ALWAYS_INLINE vi vi_srl(vi a, unsigned n) { return _mm512_srli_epi32(a, n); }
MLXN_ALWAYS_INLINE vi vi_sll(vi a, unsigned n) { return _mm512_slli_epi32(a, n); }
MLXN_ALWAYS_INLINE vf vi_cvt(vi a) { return _mm512_cvtepi32_ps(a); }
/* A 16-entry f32 table and its lookup by the low 4 bits of each lane (higher bits ignored). */
typedef __m512 lut16;
MLXN_ALWAYS_INLINE lut16 lut16_make(const float *t) { return _mm512_loadu_ps(t); }
MLXN_ALWAYS_INLINE vf lut16_get(lut16 t, vi idx) { return _mm512_permutexvar_ps(idx, t); }
/* f32 of the low (high = 0) or high nibble of each lane's byte: vpermps on a 0..15 table
 * reads only the low 4 bits of the index, so no mask */
MLXN_ALWAYS_INLINE vf vi_nibble(vi q, const int high)
{
    const __m512 ident = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_permutexvar_ps(high ? _mm512_srli_epi32(q, 4) : q, ident);
}
/* q with bit 4 set in the lanes whose bit of `bits` (lane i: bit i) is set */
MLXN_ALWAYS_INLINE vi vi_or_bit4(vi q, uint32_t bits)
{
    return _mm512_mask_or_epi32(q, (__mmask16)bits, q, _mm512_set1_epi32(16));
}
/* the first n (<= 16) f16 values at p, stride bytes apart, as f32 into out[16] (one gather of
 * the 32-bit words they start: a per-value store and reload would stall store forwarding) */
MLXN_ALWAYS_INLINE void f16_gather16(const uint8_t *p, int stride, int n, float *out)
{
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(stride));
    const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), (__mmask16)((1u << n) - 1), idx, p, 1);
    _mm512_storeu_ps(out, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)));
}
#elif MLXN_SIMD_LEVEL == 1
#define QMM_MB 4 /* 16 registers: 4 accumulators + 4 weight vectors + temporaries */
typedef __m256i vi;
MLXN_ALWAYS_INLINE vi vi_u8(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }
MLXN_ALWAYS_INLINE vi vi_i8(const int8_t *p) { return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)); }
MLXN_ALWAYS_INLINE vi vi_set1(int a) { return _mm256_set1_epi32(a); }
MLXN_ALWAYS_INLINE vi vi_and(vi a, vi b) { return _mm256_and_si256(a, b); }
MLXN_ALWAYS_INLINE vi vi_or(vi a, vi b) { return _mm256_or_si256(a, b); }
MLXN_ALWAYS_INLINE vi vi_srl(vi a, unsigned n) { return _mm256_srli_epi32(a, (int)n); }
MLXN_ALWAYS_INLINE vi vi_sll(vi a, unsigned n) { return _mm256_slli_epi32(a, (int)n); }
MLXN_ALWAYS_INLINE vf vi_cvt(vi a) { return _mm256_cvtepi32_ps(a); }
/* two 8-entry permutes, the lane's bit 3 picks one */
typedef struct lut16 {
    __m256 lo, hi;
} lut16;
MLXN_ALWAYS_INLINE lut16 lut16_make(const float *t)
{
    lut16 r = {_mm256_loadu_ps(t), _mm256_loadu_ps(t + 8)};
    return r;
}
MLXN_ALWAYS_INLINE vf lut16_get(lut16 t, vi idx)
{
    __m256 lo = _mm256_permutevar8x32_ps(t.lo, idx), hi = _mm256_permutevar8x32_ps(t.hi, idx);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}
MLXN_ALWAYS_INLINE vf vi_nibble(vi q, const int high)
{
    return _mm256_cvtepi32_ps(high ? _mm256_srli_epi32(q, 4) : _mm256_and_si256(q, _mm256_set1_epi32(15)));
}
MLXN_ALWAYS_INLINE vi vi_or_bit4(vi q, uint32_t bits)
{
    const vi lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    vi b = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)bits), lane), _mm256_set1_epi32(1));
    return _mm256_or_si256(q, _mm256_slli_epi32(b, 4));
}
MLXN_ALWAYS_INLINE void f16_gather16(const uint8_t *p, int stride, int n, float *out)
{
    /* the low half of each 32-bit word, packed: within 128-bit lanes, then lanes 0 and 2 */
    const __m256i pick = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride));
    for (int h = 0; h < 2; h++) {
        const int lanes = n - 8 * h < 0 ? 0 : n - 8 * h > 8 ? 8 : n - 8 * h;
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256i v = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)(p + 8 * h * stride), idx, mask, 1);
        v = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, pick), 0x08);
        _mm256_storeu_ps(out + 8 * h, _mm256_cvtph_ps(_mm256_castsi256_si128(v)));
    }
}
#else
#error "qmatmul_impl.h needs MLXN_SIMD_LEVEL 1 or 2 (the portable level runs the generic path)"
#endif

#define QMM_NV (32 / VL) /* vectors per 32-element unit */

MLXN_ALWAYS_INLINE float qmm_h2f(uint16_t h) { return _cvtsh_ss(h); }

/* Accumulators: mb rows of x, QMM_NACC(mb) independent chains per row. */
#define QMM_NACC(mb) ((mb) == 1 ? 4 : (mb) == 2 ? 2 : 1)

typedef struct qmm_acc {
    vf v[QMM_MB][4];
} qmm_acc;

MLXN_ALWAYS_INLINE void acc_zero(qmm_acc *a, const int mb)
{
    for (int m = 0; m < mb; m++)
        for (int j = 0; j < QMM_NACC(mb); j++)
            a->v[m][j] = vf_zero();
}

/* the 32 weights w of one unit times elements 0..31 of x's mb rows (row stride xs floats);
 * slot alternates between neighbouring units so that M = 1 uses four chains */
MLXN_ALWAYS_INLINE void acc_unit(qmm_acc *a, const vf *w, const float *x, int64_t xs, const int mb, int slot)
{
    for (int m = 0; m < mb; m++)
        for (int i = 0; i < QMM_NV; i++) {
            const int j = (slot * QMM_NV + i) % QMM_NACC(mb);
            a->v[m][j] = vf_fma(w[i], vf_load_f32(x + m * xs + i * VL), a->v[m][j]);
        }
}

MLXN_ALWAYS_INLINE void acc_finish(const qmm_acc *a, const int mb, float *r)
{
    for (int m = 0; m < mb; m++) {
        vf s = a->v[m][0];
        for (int j = 1; j < QMM_NACC(mb); j++)
            s = vf_add(s, a->v[m][j]);
        r[m] = vf_hsum(s);
    }
}

/* ---------------------------------------------------------------- 32-element formats
 *
 * Blocks are taken 16 at a time: their f16 scales (and offsets) converted into f32 arrays
 * first, then each block decoded and accumulated. */

#define QMM_GROUP 16

/* Software prefetch distance in bytes of W: the hardware prefetcher alone leaves the first
 * loads of each group (the scales) waiting on memory */
#ifndef QMM_PREFETCH
#define QMM_PREFETCH 1024
#endif

/* prefetch bytes [p + QMM_PREFETCH, p + QMM_PREFETCH + n) */
MLXN_ALWAYS_INLINE void qmm_prefetch(const uint8_t *p, int n)
{
    for (int i = 0; i < n; i += 64)
        _mm_prefetch((const char *)p + QMM_PREFETCH + i, _MM_HINT_T0);
}

/* BODY(j, slot) for blocks j = 0 .. n - 1, two at a time so that slot is a constant */
#define QMM_PAIRS(n, BODY)               \
    do {                                 \
        int j_ = 0;                      \
        for (; j_ + 2 <= (n); j_ += 2) { \
            BODY(j_, 0);                 \
            BODY(j_ + 1, 1);             \
        }                                \
        if (j_ < (n))                    \
            BODY(j_, 0);                 \
    } while (0)

/* Q4_0: (q - 8) * d = q * d + (-8 d) */
MLXN_ALWAYS_INLINE void dot_q4_0(const uint8_t *row, const float *x, int64_t K, const int mb, float *r)
{
    const mlxn_block_q4_0 *b = (const mlxn_block_q4_0 *)row;
    const int64_t nb = K / 32;
#if defined(QMM_EXP_B) && MLXN_SIMD_LEVEL == 2
#if QMM_EXP_B == 1
#define QMM_EXP_DECODE __m512 t = _mm512_mul_ps(_mm512_permutexvar_ps(q, tm8), _mm512_loadu_ps(xx)); \
                t = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), tm8), _mm512_loadu_ps(xx + 16), t);
#else
#define QMM_EXP_DECODE __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_and_si512(q, _mm512_set1_epi32(15))), _mm512_loadu_ps(xx)); \
                t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4)), _mm512_loadu_ps(xx + 16), t);
#endif
    if (mb == 1) {
        const __m512 tm8 = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;
        for (int64_t g = 0; g < nb; g += QMM_GROUP) {
            const int gn = nb - g < QMM_GROUP ? (int)(nb - g) : QMM_GROUP;
            float d[QMM_GROUP];
            qmm_prefetch((const uint8_t *)(b + g), QMM_GROUP * (int)sizeof *b);
            f16_gather16((const uint8_t *)&b[g].d, sizeof *b, gn, d);
#define BODYB(j, A)                                                                          \
            do {                                                                             \
                const mlxn_block_q4_0 *bk = b + g + (j);                                     \
                const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)bk->qs)); \
                const float *xx = x + (g + (j)) * 32;                                        \
                QMM_EXP_DECODE \
                A = _mm512_fmadd_ps(t, _mm512_set1_ps(d[j]), A);                             \
            } while (0)
            int j = 0;
            for (; j + 2 <= gn; j += 2) {
                BODYB(j, a0);
                BODYB(j + 1, a1);
            }
            if (j < gn)
                BODYB(j, a0);
#undef BODYB
        }
        r[0] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        return;
    }
#endif
    qmm_acc acc;
    acc_zero(&acc, mb);
    for (int64_t g = 0; g < nb; g += QMM_GROUP) {
        const int gn = nb - g < QMM_GROUP ? (int)(nb - g) : QMM_GROUP;
        float d[QMM_GROUP], o[QMM_GROUP];
        qmm_prefetch((const uint8_t *)(b + g), QMM_GROUP * (int)sizeof *b);
        f16_gather16((const uint8_t *)&b[g].d, sizeof *b, gn, d);
        for (int j = 0; j < QMM_GROUP; j += VL)
            vf_store_f32(o + j, vf_mul(vf_load_f32(d + j), vf_set1(-8.0f)));
#define BODY(j, slot)                                                        \
        do {                                                                 \
            const mlxn_block_q4_0 *bk = b + g + (j);                         \
            const vf vd = vf_set1(d[j]), vo = vf_set1(o[j]);                 \
            vf w[QMM_NV];                                                    \
            for (int i = 0; i < QMM_NV; i++) {                               \
                const vi q = vi_u8(bk->qs + i * VL % 16);                    \
                w[i] = vf_fma(vi_nibble(q, i * VL >= 16), vd, vo);           \
            }                                                                \
            acc_unit(&acc, w, x + (g + (j)) * 32, K, mb, slot);              \
        } while (0)
        QMM_PAIRS(gn, BODY);
#undef BODY
    }
    acc_finish(&acc, mb, r);
}

/* Q4_1: q * d + m */
MLXN_ALWAYS_INLINE void dot_q4_1(const uint8_t *row, const float *x, int64_t K, const int mb, float *r)
{
    const mlxn_block_q4_1 *b = (const mlxn_block_q4_1 *)row;
    const int64_t nb = K / 32;
    qmm_acc acc;
    acc_zero(&acc, mb);
    for (int64_t g = 0; g < nb; g += QMM_GROUP) {
        const int gn = nb - g < QMM_GROUP ? (int)(nb - g) : QMM_GROUP;
        float d[QMM_GROUP], o[QMM_GROUP];
        qmm_prefetch((const uint8_t *)(b + g), QMM_GROUP * (int)sizeof *b);
        f16_gather16((const uint8_t *)&b[g].d, sizeof *b, gn, d);
        f16_gather16((const uint8_t *)&b[g].m, sizeof *b, gn, o);
#define BODY(j, slot)                                                        \
        do {                                                                 \
            const mlxn_block_q4_1 *bk = b + g + (j);                         \
            const vf vd = vf_set1(d[j]), vo = vf_set1(o[j]);                 \
            vf w[QMM_NV];                                                    \
            for (int i = 0; i < QMM_NV; i++) {                               \
                const vi q = vi_u8(bk->qs + i * VL % 16);                    \
                w[i] = vf_fma(vi_nibble(q, i * VL >= 16), vd, vo);           \
            }                                                                \
            acc_unit(&acc, w, x + (g + (j)) * 32, K, mb, slot);              \
        } while (0)
        QMM_PAIRS(gn, BODY);
#undef BODY
    }
    acc_finish(&acc, mb, r);
}

/* Q5_0 / Q5_1: the fifth bit of element j is bit j of qh; (q - 16) * d, or q * d + m */
MLXN_ALWAYS_INLINE void dot_q5(const uint8_t *row, const float *x, int64_t K, const int mb, float *r, const bool q51)
{
    const int bs = q51 ? (int)sizeof(mlxn_block_q5_1) : (int)sizeof(mlxn_block_q5_0);
    const int64_t nb = K / 32;
    const int qh_at = q51 ? 4 : 2;
    const vi lo4 = vi_set1(15);
    qmm_acc acc;
    acc_zero(&acc, mb);
    for (int64_t g = 0; g < nb; g += QMM_GROUP) {
        const int gn = nb - g < QMM_GROUP ? (int)(nb - g) : QMM_GROUP;
        const uint8_t *b0 = row + g * bs;
        float d[QMM_GROUP], o[QMM_GROUP];
        qmm_prefetch(b0, QMM_GROUP * bs);
        f16_gather16(b0, bs, gn, d);
        if (q51)
            f16_gather16(b0 + 2, bs, gn, o);
        else
            for (int j = 0; j < QMM_GROUP; j += VL)
                vf_store_f32(o + j, vf_mul(vf_load_f32(d + j), vf_set1(-16.0f)));
#define BODY(j, slot)                                                        \
        do {                                                                 \
            const uint8_t *bk = b0 + (j) * bs;                               \
            uint32_t qh;                                                     \
            memcpy(&qh, bk + qh_at, 4);                                      \
            const uint8_t *qs = bk + qh_at + 4;                              \
            const vf vd = vf_set1(d[j]), vo = vf_set1(o[j]);                 \
            vf w[QMM_NV];                                                    \
            for (int i = 0; i < QMM_NV; i++) {                               \
                const int e = i * VL;                                        \
                vi q = vi_u8(qs + e % 16);                                   \
                q = e < 16 ? vi_and(q, lo4) : vi_srl(q, 4);                  \
                w[i] = vf_fma(vi_cvt(vi_or_bit4(q, qh >> e)), vd, vo);       \
            }                                                                \
            acc_unit(&acc, w, x + (g + (j)) * 32, K, mb, slot);              \
        } while (0)
        QMM_PAIRS(gn, BODY);
#undef BODY
    }
    acc_finish(&acc, mb, r);
}

/* Q8_0: q * d */
MLXN_ALWAYS_INLINE void dot_q8_0(const uint8_t *row, const float *x, int64_t K, const int mb, float *r)
{
    const mlxn_block_q8_0 *b = (const mlxn_block_q8_0 *)row;
    const int64_t nb = K / 32;
    qmm_acc acc;
    acc_zero(&acc, mb);
    for (int64_t g = 0; g < nb; g += QMM_GROUP) {
        const int gn = nb - g < QMM_GROUP ? (int)(nb - g) : QMM_GROUP;
        float d[QMM_GROUP];
        qmm_prefetch((const uint8_t *)(b + g), QMM_GROUP * (int)sizeof *b);
        f16_gather16((const uint8_t *)&b[g].d, sizeof *b, gn, d);
#define BODY(j, slot)                                                        \
        do {                                                                 \
            const mlxn_block_q8_0 *bk = b + g + (j);                         \
            const vf vd = vf_set1(d[j]);                                     \
            vf w[QMM_NV];                                                    \
            for (int i = 0; i < QMM_NV; i++)                                 \
                w[i] = vf_mul(vi_cvt(vi_i8(bk->qs + i * VL)), vd);           \
            acc_unit(&acc, w, x + (g + (j)) * 32, K, mb, slot);              \
        } while (0)
        QMM_PAIRS(gn, BODY);
#undef BODY
    }
    acc_finish(&acc, mb, r);
}

/* IQ4_NL: codebook[q] * d */
MLXN_ALWAYS_INLINE void dot_iq4_nl(const uint8_t *row, const float *x, int64_t K, const int mb, float *r)
{
    const mlxn_block_iq4_nl *b = (const mlxn_block_iq4_nl *)row;
    const int64_t nb = K / 32;
    float book[16];
    for (int i = 0; i < 16; i++)
        book[i] = (float)mlxn_iq4_value(i);
    const lut16 t = lut16_make(book);
    qmm_acc acc;
    acc_zero(&acc, mb);
    for (int64_t g = 0; g < nb; g += QMM_GROUP) {
        const int gn = nb - g < QMM_GROUP ? (int)(nb - g) : QMM_GROUP;
        float d[QMM_GROUP];
        qmm_prefetch((const uint8_t *)(b + g), QMM_GROUP * (int)sizeof *b);
        f16_gather16((const uint8_t *)&b[g].d, sizeof *b, gn, d);
#define BODY(j, slot)                                                        \
        do {                                                                 \
            const mlxn_block_iq4_nl *bk = b + g + (j);                       \
            const vf vd = vf_set1(d[j]);                                     \
            vf w[QMM_NV];                                                    \
            for (int i = 0; i < QMM_NV; i++) {                               \
                const vi q = vi_u8(bk->qs + i * VL % 16);                    \
                w[i] = vf_mul(lut16_get(t, i * VL < 16 ? q : vi_srl(q, 4)), vd); \
            }                                                                \
            acc_unit(&acc, w, x + (g + (j)) * 32, K, mb, slot);              \
        } while (0)
        QMM_PAIRS(gn, BODY);
#undef BODY
    }
    acc_finish(&acc, mb, r);
}

/* ---------------------------------------------------------------- K super-blocks (256)
 *
 * Per super-block the unit (or 16-element) scales and offsets are decoded into small f32
 * arrays first; each unit then decodes its codes and takes its scale as a broadcast. */

/* Q4_K: unit u: d * sc_u * q - dmin * m_u, q the low (u even) or high (u odd) nibbles of
 * bytes 32 (u / 2) .. 32 (u / 2) + 31 */
MLXN_ALWAYS_INLINE void dot_q4_K(const uint8_t *row, const float *x, int64_t K, const int mb, float *r)
{
    const mlxn_block_q4_K *b = (const mlxn_block_q4_K *)row;
    const int64_t nb = K / 256;
    qmm_acc acc;
    acc_zero(&acc, mb);
    for (int64_t k = 0; k < nb; k++) {
        const mlxn_block_q4_K *bk = b + k;
        qmm_prefetch((const uint8_t *)bk, (int)sizeof *bk);
        const float d = qmm_h2f(bk->d), dmin = qmm_h2f(bk->dmin);
        float dl[8], ml[8];
        for (int u = 0; u < 8; u++) {
            int sc, m;
            mlxn_scale_min_k4(bk->scales, u, &sc, &m);
            dl[u] = d * (float)sc;
            ml[u] = -(dmin * (float)m);
        }
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) {
            const vf vd = vf_set1(dl[u]), vo = vf_set1(ml[u]);
            vf w[QMM_NV];
            for (int i = 0; i < QMM_NV; i++) {
                const vi q = vi_u8(bk->qs + 32 * (u / 2) + i * VL);
                w[i] = vf_fma(vi_nibble(q, u % 2), vd, vo);
            }
            acc_unit(&acc, w, x + k * 256 + u * 32, K, mb, u & 1);
        }
    }
    acc_finish(&acc, mb, r);
}

/* Q5_K: Q4_K's layout plus a fifth bit: bit u of qh[l] for element l of unit u */
MLXN_ALWAYS_INLINE void dot_q5_K(const uint8_t *row, const float *x, int64_t K, const int mb, float *r)
{
    const mlxn_block_q5_K *b = (const mlxn_block_q5_K *)row;
    const int64_t nb = K / 256;
    const vi lo4 = vi_set1(15), bit4 = vi_set1(16);
    qmm_acc acc;
    acc_zero(&acc, mb);
    for (int64_t k = 0; k < nb; k++) {
        const mlxn_block_q5_K *bk = b + k;
        qmm_prefetch((const uint8_t *)bk, (int)sizeof *bk);
        const float d = qmm_h2f(bk->d), dmin = qmm_h2f(bk->dmin);
        float dl[8], ml[8];
        for (int u = 0; u < 8; u++) {
            int sc, m;
            mlxn_scale_min_k4(bk->scales, u, &sc, &m);
            dl[u] = d * (float)sc;
            ml[u] = -(dmin * (float)m);
        }
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) {
            const vf vd = vf_set1(dl[u]), vo = vf_set1(ml[u]);
            vf w[QMM_NV];
            for (int i = 0; i < QMM_NV; i++) {
                vi q = vi_u8(bk->qs + 32 * (u / 2) + i * VL);
                q = u % 2 ? vi_srl(q, 4) : vi_and(q, lo4);
                const vi h = vi_u8(bk->qh + i * VL);
                const vi hb = u <= 4 ? vi_and(vi_sll(h, 4 - u), bit4) : vi_and(vi_srl(h, u - 4), bit4);
                w[i] = vf_fma(vi_cvt(vi_or(q, hb)), vd, vo);
            }
            acc_unit(&acc, w, x + k * 256 + u * 32, K, mb, u & 1);
        }
    }
    acc_finish(&acc, mb, r);
}

/* Q6_K: unit u (half g = u / 4, turn t = u % 4): element l has low bits from nibble t / 2 of
 * ql[64 g + 32 (t % 2) + l], high bits 2t, 2t + 1 of qh[32 g + l]; (q - 32) * d * sc, sc per 16 */
MLXN_ALWAYS_INLINE void dot_q6_K(const uint8_t *row, const float *x, int64_t K, const int mb, float *r)
{
    const mlxn_block_q6_K *b = (const mlxn_block_q6_K *)row;
    const int64_t nb = K / 256;
    const vi lo4 = vi_set1(15), hi2 = vi_set1(0x30);
    qmm_acc acc;
    acc_zero(&acc, mb);
    for (int64_t k = 0; k < nb; k++) {
        const mlxn_block_q6_K *bk = b + k;
        qmm_prefetch((const uint8_t *)bk, (int)sizeof *bk);
        const float d = qmm_h2f(bk->d);
        float s[16], o[16];
        for (int j = 0; j < 16; j += VL) {
            const vf v = vf_mul(vi_cvt(vi_i8(bk->scales + j)), vf_set1(d));
            vf_store_f32(s + j, v);
            vf_store_f32(o + j, vf_mul(v, vf_set1(-32.0f)));
        }
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) {
            const int g = u / 4, tn = u % 4;
            vf w[QMM_NV];
            for (int i = 0; i < QMM_NV; i++) {
                const int e = i * VL;
                vi q = vi_u8(bk->ql + 64 * g + 32 * (tn % 2) + e);
                q = tn / 2 ? vi_srl(q, 4) : vi_and(q, lo4);
                const vi h = vi_u8(bk->qh + 32 * g + e);
                const vi hb = tn < 3 ? vi_and(vi_sll(h, 4 - 2 * tn), hi2) : vi_and(vi_srl(h, 2), hi2);
                const int si = 2 * u + e / 16;
                w[i] = vf_fma(vi_cvt(vi_or(q, hb)), vf_set1(s[si]), vf_set1(o[si]));
            }
            acc_unit(&acc, w, x + k * 256 + u * 32, K, mb, u & 1);
        }
    }
    acc_finish(&acc, mb, r);
}

/* ---------------------------------------------------------------- float weights */

MLXN_ALWAYS_INLINE void dot_float(const uint8_t *row, const float *x, int64_t K, const int mb, float *r, const int dt)
{
    qmm_acc acc;
    acc_zero(&acc, mb);
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        vf w[QMM_NV];
        for (int i = 0; i < QMM_NV; i++)
            w[i] = vf_load(dt, row, k + i * VL);
        acc_unit(&acc, w, x + k, K, mb, (int)(k / 32) & 1);
    }
    float tail[QMM_MB] = {0};
    for (; k < K; k++) {
        const float wk = sc_load(dt, row, k);
        for (int m = 0; m < mb; m++)
            tail[m] += wk * x[m * K + k];
    }
    acc_finish(&acc, mb, r);
    for (int m = 0; m < mb; m++)
        r[m] += tail[m];
}

/* ---------------------------------------------------------------- rows of W */

/* y[m][n] = W[n] . x[m] for mb rows of x (f32, row stride K), one format */
MLXN_ALWAYS_INLINE void qmm_dot(const int type, const uint8_t *row, const float *x, int64_t K, const int mb, float *r)
{
    switch (type) {
    case MLXN_DTYPE_Q4_0: dot_q4_0(row, x, K, mb, r); break;
    case MLXN_DTYPE_Q4_1: dot_q4_1(row, x, K, mb, r); break;
    case MLXN_DTYPE_Q5_0: dot_q5(row, x, K, mb, r, false); break;
    case MLXN_DTYPE_Q5_1: dot_q5(row, x, K, mb, r, true); break;
    case MLXN_DTYPE_Q8_0: dot_q8_0(row, x, K, mb, r); break;
    case MLXN_DTYPE_IQ4_NL: dot_iq4_nl(row, x, K, mb, r); break;
    case MLXN_DTYPE_Q4_K: dot_q4_K(row, x, K, mb, r); break;
    case MLXN_DTYPE_Q5_K: dot_q5_K(row, x, K, mb, r); break;
    case MLXN_DTYPE_Q6_K: dot_q6_K(row, x, K, mb, r); break;
    default: dot_float(row, x, K, mb, r, type); break;
    }
}

/* Rows n0 .. n1 - 1 of W. The M rows of x go QMM_MB at a time; for M > QMM_MB the rows of W
 * are visited in panels that stay in the L2 cache while every chunk of x passes over them. */
MLXN_ALWAYS_INLINE void qmm_rows(const mlxn_qmatmul_args *a, const float *x, int64_t n0, int64_t n1, const int type)
{
    const int64_t K = a->K, M = a->M;
    int64_t panel = a->M <= QMM_MB ? n1 - n0 : (256 << 10) / (a->w_stride > 0 ? a->w_stride : 1);
    if (panel < 1)
        panel = 1;
    for (int64_t p0 = n0; p0 < n1; p0 += panel) {
        const int64_t p1 = p0 + panel < n1 ? p0 + panel : n1;
        for (int64_t m0 = 0; m0 < M; m0 += QMM_MB) {
            const int mb = M - m0 < QMM_MB ? (int)(M - m0) : QMM_MB;
            const float *xm = x + m0 * K;
            for (int64_t n = p0; n < p1; n++) {
                const uint8_t *row = a->w + n * a->w_stride;
                float r[QMM_MB];
                switch (mb) {
                case 1: qmm_dot(type, row, xm, K, 1, r); break;
                case 2: qmm_dot(type, row, xm, K, 2, r); break;
                case 3: qmm_dot(type, row, xm, K, 3, r); break;
                case 4: qmm_dot(type, row, xm, K, 4, r); break;
#if QMM_MB > 4
                case 5: qmm_dot(type, row, xm, K, 5, r); break;
                case 6: qmm_dot(type, row, xm, K, 6, r); break;
                case 7: qmm_dot(type, row, xm, K, 7, r); break;
                case 8: qmm_dot(type, row, xm, K, 8, r); break;
#endif
                default: break;
                }
                for (int m = 0; m < mb; m++)
                    ((float *)mlxn_rows_ptr(&a->y, m0 + m))[n] = r[m];
            }
        }
    }
}

#define QMM_ROWS_FN(tname, type)                                                                     \
    static void MLXN_LEVEL_FN(qmm_rows_##tname)(const mlxn_qmatmul_args *a, const float *x, int64_t n0, \
                                                int64_t n1)                                          \
    {                                                                                                \
        qmm_rows(a, x, n0, n1, type);                                                                \
    }
QMM_ROWS_FN(q4_0, MLXN_DTYPE_Q4_0)
QMM_ROWS_FN(q4_1, MLXN_DTYPE_Q4_1)
QMM_ROWS_FN(q5_0, MLXN_DTYPE_Q5_0)
QMM_ROWS_FN(q5_1, MLXN_DTYPE_Q5_1)
QMM_ROWS_FN(q8_0, MLXN_DTYPE_Q8_0)
QMM_ROWS_FN(iq4_nl, MLXN_DTYPE_IQ4_NL)
QMM_ROWS_FN(q4_K, MLXN_DTYPE_Q4_K)
QMM_ROWS_FN(q5_K, MLXN_DTYPE_Q5_K)
QMM_ROWS_FN(q6_K, MLXN_DTYPE_Q6_K)
QMM_ROWS_FN(f32, MLXN_DTYPE_F32)
QMM_ROWS_FN(f16, MLXN_DTYPE_F16)
QMM_ROWS_FN(bf16, MLXN_DTYPE_BF16)
#undef QMM_ROWS_FN

/* The row kernel for W's dtype on this level, or NULL (the generic path runs it). */
static mlxn_cpu_qmatmul_rows_fn MLXN_LEVEL_FN(qmatmul_rows)(int w_dtype)
{
    switch (w_dtype) {
    case MLXN_DTYPE_Q4_0: return MLXN_LEVEL_FN(qmm_rows_q4_0);
    case MLXN_DTYPE_Q4_1: return MLXN_LEVEL_FN(qmm_rows_q4_1);
    case MLXN_DTYPE_Q5_0: return MLXN_LEVEL_FN(qmm_rows_q5_0);
    case MLXN_DTYPE_Q5_1: return MLXN_LEVEL_FN(qmm_rows_q5_1);
    case MLXN_DTYPE_Q8_0: return MLXN_LEVEL_FN(qmm_rows_q8_0);
    case MLXN_DTYPE_IQ4_NL: return MLXN_LEVEL_FN(qmm_rows_iq4_nl);
    case MLXN_DTYPE_Q4_K: return MLXN_LEVEL_FN(qmm_rows_q4_K);
    case MLXN_DTYPE_Q5_K: return MLXN_LEVEL_FN(qmm_rows_q5_K);
    case MLXN_DTYPE_Q6_K: return MLXN_LEVEL_FN(qmm_rows_q6_K);
    case MLXN_DTYPE_F32: return MLXN_LEVEL_FN(qmm_rows_f32);
    case MLXN_DTYPE_F16: return MLXN_LEVEL_FN(qmm_rows_f16);
    case MLXN_DTYPE_BF16: return MLXN_LEVEL_FN(qmm_rows_bf16);
    default: return NULL;
    }
}
