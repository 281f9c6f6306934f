/* Quantized matmul with GGML (and MLX affine, below) weights on one SIMD level (included by level_*.c with
 * MLXN_SIMD_LEVEL 1 or 2 and MLXN_LEVEL_FN set).
 *
 * x stays f32 (the op's contract; quantizing it to int8 would move a model's logits by ~1;
 * the exceptions at one row of x, dot256_int on AVX2 and the VNNI kernels, hold it as 24-bit
 * integers per span), so every weight is widened to a 32-bit lane, converted to f32 and
 * multiplied into x with an f32 FMA. Every format is written as w = code * scale + offset, the scale and offset per unit of
 * 32 elements (or per 16), the code a small integer or a codebook value. Up to QMM_DECODED_M
 * rows of x the decoded vectors live only in registers and serve QMM_MB rows of x per pass over
 * W; from QMM_DECODED_M rows (small batches) a few rows of W are decoded once into f32 for a
 * chunk of x that stays in L2, and a register-blocked kernel multiplies them
 * (qmm_rows_decoded); from 32 rows (prefill) x comes in transposed panels, and the decoded rows
 * of W are multiplied into them as outer products (qmm_rows_panels).
 *
 * Decode (one row of x) is bound by the read of W, and at 18 bytes per 32 weights (4-bit
 * formats) the decode must cost about 4 cycles per 32 weights to keep up with this machine's
 * read bandwidth. The CPU sustains one 512-bit FMA per cycle, and shuffles (byte widening,
 * permutes, broadcasts) compete with the FMAs while shifts, masks and int-to-float conversions
 * do not (bench/NOTES.md). So at M = 1 a unit costs one widening per 16 codes, a mask or shift
 * and a conversion per vector, two FMA-unit ops for the 32 products (t = c . x) and one FMA to
 * apply the scale (acc += s t); the offsets are applied once per 16 units as
 * sum(offset_u * sum of x over unit u), with the sums of x computed once per call. The formats
 * with scales per 16 elements (Q2_K, Q3_K, Q6_K) take dot products and offsets per 16. With
 * more rows of x the scale and offset are folded into the weights once (w = c s + o, one FMA
 * per vector) and each row costs one FMA per vector.
 *
 * The arithmetic is the reference decoder's (src/formats/ggml_decode.h) up to the order of the
 * f32 sums and the rounding of code * scale + offset. The exceptions, where the f32 decode costs
 * most: at one row of x, Q2_K, Q3_K, Q4_K and Q6_K on AVX2 take x as integers (dot256_int), and every format
 * with unsigned integer codes does on AVX-512 with VNNI (dot32_vnni, dot256_vnni). */
#include "simd.h"
#include "../core/internal.h"
#include "../formats/ggml_blocks.h"
#include "../formats/ggml_decode.h"

/* The first n (<= 16) f16 values at p, stride bytes apart, packed into 16 halves (zeros past
 * n). Assembled in general registers: a vector gather, or a store per value and a vector
 * reload (which stalls store forwarding), costs more than the 16 blocks' decode. */
MLXN_ALWAYS_INLINE __m256i f16_pack16(const uint8_t *p, int stride, int n)
{
    uint64_t q[4] = {0, 0, 0, 0};
    for (int i = 0; i < 16; i++) {
        uint16_t h = 0;
        if (i < n)
            memcpy(&h, p + i * stride, 2);
        q[i / 4] |= (uint64_t)h << (16 * (i % 4));
    }
    return _mm256_setr_epi64x((long long)q[0], (long long)q[1], (long long)q[2], (long long)q[3]);
}

#if MLXN_SIMD_LEVEL == 2
#define QMM_MB 8 /* rows of x per pass over W: 8 accumulators + weights fit 32 registers */
typedef __m512i vi;
/* VL bytes at p, zero- or sign-extended to 32-bit lanes */
MLXN_ALWAYS_INLINE vi vi_u8(const uint8_t *p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)); }
MLXN_ALWAYS_INLINE vi vi_i8(const int8_t *p) { return _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)); }
/* bytes j .. j + VL - 1 of the 16 in the words lo, hi (little-endian), from registers */
MLXN_ALWAYS_INLINE vi vi_u8_words(uint64_t lo, uint64_t hi, int j)
{
    (void)j;
    return _mm512_cvtepu8_epi32(_mm_set_epi64x((long long)hi, (long long)lo));
}
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
/* q with bit 4 set in the lanes whose bit of `bits` (lane i: bit i) is set */
MLXN_ALWAYS_INLINE vi vi_or_bit4(vi q, uint32_t bits)
{
    return _mm512_mask_or_epi32(q, (__mmask16)bits, q, _mm512_set1_epi32(16));
}
MLXN_ALWAYS_INLINE void f16_gather16(const uint8_t *p, int stride, int n, float *out)
{
    _mm512_storeu_ps(out, _mm512_cvtph_ps(f16_pack16(p, stride, n)));
}
#elif MLXN_SIMD_LEVEL == 1
#define QMM_MB 4 /* 16 registers: 4 accumulators + 4 weight vectors + temporaries */
typedef __m256i vi;
MLXN_ALWAYS_INLINE vi vi_u8(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }
MLXN_ALWAYS_INLINE vi vi_i8(const int8_t *p) { return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)); }
MLXN_ALWAYS_INLINE vi vi_u8_words(uint64_t lo, uint64_t hi, int j)
{
    return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)(j ? hi : lo)));
}
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
MLXN_ALWAYS_INLINE vi vi_or_bit4(vi q, uint32_t bits)
{
    const vi lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    vi b = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)bits), lane), _mm256_set1_epi32(1));
    return _mm256_or_si256(q, _mm256_slli_epi32(b, 4));
}
MLXN_ALWAYS_INLINE void f16_gather16(const uint8_t *p, int stride, int n, float *out)
{
    const __m256i h = f16_pack16(p, stride, n);
    _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm256_castsi256_si128(h)));
    _mm256_storeu_ps(out + 8, _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
}
#else
#error "qmatmul_impl.h needs MLXN_SIMD_LEVEL 1 or 2 (the portable level runs the generic path)"
#endif

#define QMM_NV (32 / VL) /* vectors per 32-element unit */

/* IQ4_NL's and IQ4_XS's codebook as a table */
MLXN_ALWAYS_INLINE lut16 qmm_iq4_book(void)
{
    float t[16];
    for (int i = 0; i < 16; i++)
        t[i] = (float)mlxn_iq4_value(i);
    return lut16_make(t);
}

MLXN_ALWAYS_INLINE float qmm_h2f(uint16_t h) { return _cvtsh_ss(h); }

MLXN_ALWAYS_INLINE vi vi_nibbles(const uint8_t *p, const int high)
{
    const vi q = vi_u8(p);
    return high ? vi_srl(q, 4) : vi_and(q, vi_set1(15));
}

/* Software prefetch distance in bytes of W: ahead of the hardware prefetcher, so that the first
 * loads of a group (its scales) do not wait on memory. 4 KiB: Q8_0 at one row of x ~10% faster
 * than at 1 KiB (its decode is the lightest per byte), the other formats within the noise
 * (bench/NOTES.md). */
#define QMM_PREFETCH 4096

MLXN_ALWAYS_INLINE void qmm_prefetch(const uint8_t *p, int n)
{
    for (int i = 0; i < n; i += 64)
        _mm_prefetch((const char *)p + QMM_PREFETCH + i, _MM_HINT_T0);
}

/* p, hidden from the optimizer: the scales stored through p are then read back as broadcast
 * memory operands of the FMAs. Left to itself the compiler keeps them in a register and
 * broadcasts each with a shuffle, which competes with the FMAs. */
MLXN_ALWAYS_INLINE const float *qmm_opaque(const float *p)
{
    __asm__("" : "+r"(p));
    return p;
}

/* ---------------------------------------------------------------- formats
 *
 * Per format: where the scales live and how one unit's codes decode. A unit is 32 elements:
 * a whole block of the 32-element formats, or slice u (0..7) of a 256-element super-block. */

#if MLXN_SIMD_LEVEL == 1
/* Q5_0 / Q5_1: the codes of a unit as 32 bytes (element j in byte j), the fifth bits (bit j of
 * qh) set 32 at a time by a byte shuffle and compare: per 8-lane vector, AVX2's variable shift
 * of qh cost four more instructions than the vector's conversion and FMA together. */
MLXN_ALWAYS_INLINE __m256i q5_bytes(const uint8_t *qs, uint32_t qh)
{
    const __m256i q = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    const __m256i nib = _mm256_and_si256(_mm256_blend_epi32(q, _mm256_srli_epi16(q, 4), 0xF0), _mm256_set1_epi8(15));
    /* byte j: byte j / 8 of qh (the shuffle stays in each 128-bit lane: elements 16.. read qh's
     * bytes 2, 3), then its bit j % 8 */
    const __m256i sel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                         2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
    const __m256i h = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), sel), bit);
    return _mm256_or_si256(nib, _mm256_and_si256(_mm256_cmpeq_epi8(h, bit), _mm256_set1_epi8(16)));
}
#endif

/* the codes of a unit of a 32-element format: c[i] holds elements i VL .. i VL + VL - 1 */
MLXN_ALWAYS_INLINE void codes32(const int type, const uint8_t *bk, vf *c, const lut16 *book)
{
#if MLXN_SIMD_LEVEL == 1
    if (type == MLXN_DTYPE_Q5_0 || type == MLXN_DTYPE_Q5_1) {
        const int at = type == MLXN_DTYPE_Q5_0 ? 2 : 4;
        uint32_t qh;
        memcpy(&qh, bk + at, 4);
        const __m256i b = q5_bytes(bk + at + 4, qh);
        const __m128i lo = _mm256_castsi256_si128(b), hi = _mm256_extracti128_si256(b, 1);
        c[0] = vi_cvt(_mm256_cvtepu8_epi32(lo));
        c[1] = vi_cvt(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
        c[2] = vi_cvt(_mm256_cvtepu8_epi32(hi));
        c[3] = vi_cvt(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
        return;
    }
#endif
    for (int i = 0; i < QMM_NV; i++) {
        const int e = i * VL;
        switch (type) {
        case MLXN_DTYPE_Q4_0: /* qs at 2: element j low nibble of qs[j], j + 16 high nibble */
            c[i] = vi_cvt(vi_nibbles(bk + 2 + e % 16, e >= 16));
            break;
        case MLXN_DTYPE_Q4_1:
            c[i] = vi_cvt(vi_nibbles(bk + 4 + e % 16, e >= 16));
            break;
        case MLXN_DTYPE_Q5_0:
        case MLXN_DTYPE_Q5_1: { /* fifth bit of element j: bit j of qh */
            const int at = type == MLXN_DTYPE_Q5_0 ? 2 : 4;
            uint32_t qh;
            memcpy(&qh, bk + at, 4);
            c[i] = vi_cvt(vi_or_bit4(vi_nibbles(bk + at + 4 + e % 16, e >= 16), qh >> e));
            break;
        }
        case MLXN_DTYPE_Q8_0:
            c[i] = vi_cvt(vi_i8((const int8_t *)bk + 2 + e));
            break;
        default: { /* IQ4_NL: codebook values */
            const vi q = vi_u8(bk + 2 + e % 16);
            c[i] = lut16_get(*book, e >= 16 ? vi_srl(q, 4) : q);
            break;
        }
        }
    }
}

MLXN_ALWAYS_INLINE int block_bytes32(const int type)
{
    switch (type) {
    case MLXN_DTYPE_Q4_0: return (int)sizeof(mlxn_block_q4_0);
    case MLXN_DTYPE_Q4_1: return (int)sizeof(mlxn_block_q4_1);
    case MLXN_DTYPE_Q5_0: return (int)sizeof(mlxn_block_q5_0);
    case MLXN_DTYPE_Q5_1: return (int)sizeof(mlxn_block_q5_1);
    case MLXN_DTYPE_Q8_0: return (int)sizeof(mlxn_block_q8_0);
    default: return (int)sizeof(mlxn_block_iq4_nl);
    }
}

/* Scale s and offset o of up to 16 blocks at b (o stays zero for formats without one):
 * w = c s + o. */
MLXN_ALWAYS_INLINE bool scales32(const int type, const uint8_t *b, int n, float *s, float *o)
{
    const int bs = block_bytes32(type);
    f16_gather16(b, bs, n, s);
    switch (type) {
    case MLXN_DTYPE_Q4_0:
    case MLXN_DTYPE_Q5_0:
        for (int j = 0; j < 16; j += VL)
            vf_store_f32(o + j, vf_mul(vf_load_f32(s + j), vf_set1(type == MLXN_DTYPE_Q4_0 ? -8.0f : -16.0f)));
        return true;
    case MLXN_DTYPE_Q4_1:
    case MLXN_DTYPE_Q5_1:
        f16_gather16(b + 2, bs, n, o);
        return true;
    default:
        return false;
    }
}

/* ---------------------------------------------------------------- accumulation */

/* A-path accumulators: mb rows of x, QMM_NACC(mb) independent chains per row. */
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
    if (mb == 0) { /* decode mode (qmm_decode_row): x is where the unit's weights go */
        for (int i = 0; i < QMM_NV; i++)
            vf_store_f32((float *)x + i * VL, w[i]);
        return;
    }
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

/* c . x over one unit (x: its 32 elements), as VL partial sums */
MLXN_ALWAYS_INLINE vf unit_dot(const vf *c, const float *x)
{
    vf t = vf_mul(c[0], vf_load_f32(x));
    for (int i = 1; i < QMM_NV; i++)
        t = vf_fma(c[i], vf_load_f32(x + i * VL), t);
    return t;
}

/* BODY(j, slot) for j = 0 .. n - 1, two at a time so that slot is a constant. Not unrolled
 * further: unrolled, the compiler keeps the scales in a register and broadcasts each with a
 * permute (a shuffle, which competes with the FMAs) instead of a broadcast memory operand. */
#define QMM_PAIRS(n, BODY)               \
    do {                                 \
        int j_ = 0;                      \
        _Pragma("GCC unroll 1")          \
        for (; j_ + 2 <= (n); j_ += 2) { \
            BODY(j_, 0);                 \
            BODY(j_ + 1, 1);             \
        }                                \
        if (j_ < (n))                    \
            BODY(j_, 0);                 \
    } while (0)

#ifdef MLXN_SIMD_VNNI
/* ---------------------------------------------------------------- integer decode (VNNI)
 *
 * At one row of x, on AVX-512 with VNNI (the avx512-bf16 level, and the avx512 level where the
 * processor has VNNI: MLXN_VNNI_BEGIN in simd.h), the formats whose codes are
 * small unsigned integers take x's integer form per 32-element unit (cpu.h,
 * MLXN_CPU_QMM_X_INT32 and _HALVES: X = 65536 d2 + 256 d1 + d0, x = s_u X): codes as bytes,
 * 64 a vector, against the digits by vpdpbusd, digit by digit with a shift of 8 between, so
 * that each 32-bit lane ends with the exact sum of c X over its elements; then one conversion
 * and one FMA by the lanes' scales (W's scale times s_u). The lane sums stay below 2^31: 8
 * elements a lane for codes up to 31 (8 * 31 * MLXN_CPU_QMM_XINT_MAX), 4 for Q6_K's up to 63. The offsets stay
 * on the f32 sums of x. The 32-element formats take four blocks at once: two loads, from which
 * word permutes gather their code runs (low nibbles in one vector and high in another, a block's
 * 8 lanes in each) and their f16 scales, ~22 vector instructions for 128 codes; the K-quants two
 * units a vector (~11 for 64, their scales per super-block). The f32 path spends ~18 per 64
 * 4-bit codes and packs f16 scales in general registers. Measured in bench/NOTES.md. IQ4_NL's
 * codebook values (signed) go in as value + 128 (1 .. 241), the extra 128 times x's integers
 * taken off exactly through per-lane sums of the digits (x's _HALVES_SUMS form); with codes that
 * large the top digit's sum is kept apart (vnni_dot_sums). Q8_0 and IQ4_XS keep the f32 path. */
MLXN_ALWAYS_INLINE bool qmm_vnni(const int type)
{
    switch (type) {
    case MLXN_DTYPE_Q4_0: case MLXN_DTYPE_Q4_1: case MLXN_DTYPE_Q5_0: case MLXN_DTYPE_Q5_1:
    case MLXN_DTYPE_Q2_K: case MLXN_DTYPE_Q3_K: case MLXN_DTYPE_Q4_K: case MLXN_DTYPE_Q5_K:
    case MLXN_DTYPE_Q6_K: case MLXN_DTYPE_IQ4_NL:
        return true;
    default:
        return false;
    }
}

/* the form of x a VNNI format's kernel reads (cpu.h): blocks of 32 four at a time, IQ4_NL's with
 * the lanes' digit sums; the K-quants' units in order */
MLXN_ALWAYS_INLINE int qmm_vnni_form(const int type)
{
    return type == MLXN_DTYPE_IQ4_NL                 ? MLXN_CPU_QMM_X_INT32_HALVES_SUMS
           : mlxn_dtype_block_elems(type) == 32 ? MLXN_CPU_QMM_X_INT32_HALVES
                                                : MLXN_CPU_QMM_X_INT32;
}

/* x's INT32, _HALVES or _HALVES_SUMS form (cpu.h): per 32-element unit its scale s = largest
 * |x| / MLXN_CPU_QMM_XINT_MAX and X = x / s rounded to nearest (to within one: x within s of
 * s X), as three balanced base-256 digits; _HALVES_SUMS adds each lane's digit sums */
static bool MLXN_LEVEL_FN(qmatmul_xint32)(const float *x, int64_t K, int form, float *scales, int8_t *digits)
{
    const bool halves = form != MLXN_CPU_QMM_X_INT32, sums = form == MLXN_CPU_QMM_X_INT32_HALVES_SUMS;
    const int64_t nu = K / 32, stride = mlxn_cpu_qmm_xquad(form);
    for (int64_t u = nu; u < mlxn_cpu_qmm_xs32(K); u++)
        scales[u] = 0;
    if (K % 128) /* the last 128 elements' missing part stays zero */
        memset(digits + K / 128 * stride, 0, (size_t)stride);
    const __m512i b128 = _mm512_set1_epi32(128), m255 = _mm512_set1_epi32(255);
    const __m512i lim = _mm512_set1_epi32(MLXN_CPU_QMM_XINT_MAX);
    for (int64_t u = 0; u < nu; u++) {
        const __m512 x0 = _mm512_loadu_ps(x + 32 * u), x1 = _mm512_loadu_ps(x + 32 * u + 16);
        if (_mm512_cmp_ps_mask(x0, x0, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(x1, x1, _CMP_UNORD_Q))
            return false; /* NaN */
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
        if (amax == INFINITY || (amax > 0 && amax < MLXN_CPU_QMM_XINT_TINY))
            return false;
        scales[u] = amax / (float)MLXN_CPU_QMM_XINT_MAX;
        const __m512 inv = _mm512_set1_ps(amax > 0 ? (float)MLXN_CPU_QMM_XINT_MAX / amax : 0);
        int8_t *c = digits + u / 4 * stride + (halves ? u % 4 * 16 : u % 4 * 32);
        for (int h = 0; h < 2; h++) {
            __m512i X = _mm512_cvtps_epi32(_mm512_mul_ps(h ? x1 : x0, inv));
            X = _mm512_max_epi32(_mm512_min_epi32(X, lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
            const __m512i e0 = _mm512_sub_epi32(_mm512_and_si512(_mm512_add_epi32(X, b128), m255), b128);
            const __m512i X1 = _mm512_srai_epi32(_mm512_sub_epi32(X, e0), 8);
            const __m512i e1 = _mm512_sub_epi32(_mm512_and_si512(_mm512_add_epi32(X1, b128), m255), b128);
            const __m512i e2 = _mm512_srai_epi32(_mm512_sub_epi32(X1, e1), 8);
            int8_t *p = c + h * (halves ? 64 : 16);
            _mm_storeu_si128((__m128i *)p, _mm512_cvtepi32_epi8(e2));
            _mm_storeu_si128((__m128i *)(p + 128), _mm512_cvtepi32_epi8(e1));
            _mm_storeu_si128((__m128i *)(p + 256), _mm512_cvtepi32_epi8(e0));
        }
    }
    for (int64_t q = 0; sums && q < (K + 127) / 128; q++) { /* each lane's digit sums, times 128 */
        const int8_t *d = digits + q * stride;
        int32_t *ps = (int32_t *)(digits + q * stride + 384);
        for (int l = 0; l < 16; l++) {
            int32_t s2 = 0, s10 = 0;
            for (int j = 0; j < 2; j++)
                for (int b = 0; b < 4; b++) {
                    const int i = 64 * j + 4 * l + b;
                    s2 += d[i];
                    s10 += 256 * d[128 + i] + d[256 + i];
                }
            ps[l] = 128 * s2;
            ps[16 + l] = 128 * s10;
        }
    }
    return true;
}

MLXN_VNNI_BEGIN
/* lane i: the sum of code times x's integer over the lane's elements of the n code vectors c
 * (4 elements in each), against their digits at d: d2, d1, d0 128 bytes apart, vector j's 64
 * bytes after vector j - 1's */
MLXN_ALWAYS_INLINE __m512 vnni_dot(const __m512i *c, const int n, const int8_t *d)
{
    __m512i t = _mm512_setzero_si512();
    for (int k = 0; k < 3; k++) {
        if (k)
            t = _mm512_slli_epi32(t, 8);
        for (int j = 0; j < n; j++)
            t = _mm512_dpbusd_epi32(t, c[j], _mm512_loadu_si512(d + 128 * k + 64 * j));
    }
    return _mm512_cvtepi32_ps(t);
}

/* lane i's sums of code times x's top digit (t2) and of code times its two lower digits (t10,
 * 256 d1 + d0), kept apart where the shifted sum would pass 2^31: codes up to 255 in lanes of 4
 * elements (one vector), up to 63 in lanes of 8; the caller joins them, 65536 t2 + t10 */
MLXN_ALWAYS_INLINE void vnni_dot_split(const __m512i *c, const int n, const int8_t *d, __m512i *t2, __m512i *t10)
{
    *t2 = *t10 = _mm512_setzero_si512();
    for (int j = 0; j < n; j++) {
        *t2 = _mm512_dpbusd_epi32(*t2, c[j], _mm512_loadu_si512(d + 64 * j));
        *t10 = _mm512_dpbusd_epi32(*t10, c[j], _mm512_loadu_si512(d + 128 + 64 * j));
    }
    *t10 = _mm512_slli_epi32(*t10, 8);
    for (int j = 0; j < n; j++)
        *t10 = _mm512_dpbusd_epi32(*t10, c[j], _mm512_loadu_si512(d + 256 + 64 * j));
}

MLXN_ALWAYS_INLINE __m512 vnni_join(__m512i t2, __m512i t10)
{
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(t2), _mm512_set1_ps(65536.f), _mm512_cvtepi32_ps(t10));
}

/* vnni_dot for codes up to 255 (lanes of 8 elements) that stand for code - 128: each of the
 * split sums less its 128 times the digits' sum (after the digits at d: x's _HALVES_SUMS form) */
MLXN_ALWAYS_INLINE __m512 vnni_dot_sums(const __m512i *c, const int n, const int8_t *d)
{
    __m512i t2, t10;
    vnni_dot_split(c, n, d, &t2, &t10);
    return vnni_join(_mm512_sub_epi32(t2, _mm512_loadu_si512(d + 384)), _mm512_sub_epi32(t10, _mm512_loadu_si512(d + 448)));
}

/* the four floats at p, each in four consecutive lanes (a block's lanes in a vector of four) */
MLXN_ALWAYS_INLINE __m512 vnni_bcast4(const float *p)
{
    const __m512i four = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_permutexvar_ps(four, _mm512_castps128_ps512(_mm_loadu_ps(p)));
}

/* lanes 0-7 of sv[a], lanes 8-15 of sv[a + 1] (two units in a vector) */
MLXN_ALWAYS_INLINE __m512 vnni_pair_scale(__m512 sv, int a)
{
    const __m512i two = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(_mm512_add_epi32(two, _mm512_set1_epi32(a)), sv);
}

#define QMM_W8(o) o, o + 1, o + 2, o + 3, o + 4, o + 5, o + 6, o + 7
#define QMM_W4(o) o, o, o, o
#define QMM_Q4(at, bs) {QMM_W8(at / 2), QMM_W8((at + bs) / 2), QMM_W8((at + 2 * bs) / 2), QMM_W8((at + 3 * bs) / 2)}
#define QMM_S4(bs) {QMM_W4(0), QMM_W4(bs / 2), QMM_W4(bs), QMM_W4(3 * bs / 2), \
                    QMM_W4(1), QMM_W4(bs / 2 + 1), QMM_W4(bs + 1), QMM_W4(3 * bs / 2 + 1)}
/* Word permutes of four consecutive blocks' first 128 bytes (every field at an even offset):
 * their 16 code bytes each, and their f16 scales (then offsets) four times each. */
static const uint16_t qmm_vnni_gather[4][32] = {QMM_Q4(2, 18), QMM_Q4(4, 20), QMM_Q4(6, 22), QMM_Q4(8, 24)};
static const uint16_t qmm_vnni_scales[4][32] = {QMM_S4(18), QMM_S4(20), QMM_S4(22), QMM_S4(24)};
#undef QMM_S4
#undef QMM_Q4
#undef QMM_W4
#undef QMM_W8

/* The lanes of four blocks of a 32-element format at b (n of them, the loads stop there: the
 * digits past K are zero): t the sum of c X for each lane's 8 elements (lo: elements 0-15 of
 * each block, block i in bytes 16i ..; hi: elements 16-31), its scale (W's times x's) and
 * offset factor (the f16 scale, or the min) */
MLXN_ALWAYS_INLINE void vnni_quad(const int type, const uint8_t *b, const int n, const int8_t *d, const float *xsc,
                                  __m512 *t, __m512 *scale, __m512 *off)
{
    /* (IQ4_NL's blocks are laid out as Q4_0's) */
    const int ti = type == MLXN_DTYPE_Q4_0 || type == MLXN_DTYPE_IQ4_NL ? 0
                   : type == MLXN_DTYPE_Q4_1                          ? 1
                   : type == MLXN_DTYPE_Q5_0                          ? 2
                                                                      : 3;
    const int bs = block_bytes32(type), bytes = n * bs;
    const __m512i z0 = bytes >= 64 ? _mm512_loadu_si512(b) : _mm512_maskz_loadu_epi8((1ULL << bytes) - 1, b);
    const __m512i z1 = _mm512_maskz_loadu_epi8(bytes > 64 ? (1ULL << (bytes - 64)) - 1 : 0, b + 64);
    const __m512i c = _mm512_permutex2var_epi16(z0, _mm512_loadu_si512(qmm_vnni_gather[ti]), z1);
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512i lh[2] = {_mm512_and_si512(c, m4), _mm512_and_si512(_mm512_srli_epi16(c, 4), m4)}; /* lo, hi */
    if (type == MLXN_DTYPE_Q5_0 || type == MLXN_DTYPE_Q5_1) { /* fifth bit of element j: bit j of qh */
        uint64_t klo = 0, khi = 0;
        for (int i = 0; i < n; i++) {
            uint32_t h;
            memcpy(&h, b + i * bs + (type == MLXN_DTYPE_Q5_0 ? 2 : 4), 4);
            klo |= (uint64_t)(h & 0xFFFF) << (16 * i);
            khi |= (uint64_t)(h >> 16) << (16 * i);
        }
        lh[0] = _mm512_mask_add_epi8(lh[0], (__mmask64)klo, lh[0], _mm512_set1_epi8(16));
        lh[1] = _mm512_mask_add_epi8(lh[1], (__mmask64)khi, lh[1], _mm512_set1_epi8(16));
    }
    if (type == MLXN_DTYPE_IQ4_NL) { /* the codebook's values + 128, looked up by byte shuffles */
        const __m512i book = _mm512_broadcast_i32x4(_mm_xor_si128(
            _mm_set_epi64x((long long)MLXN_IQ4_VALUES_HI, (long long)MLXN_IQ4_VALUES_LO), _mm_set1_epi8((char)0x80)));
        lh[0] = _mm512_shuffle_epi8(book, lh[0]);
        lh[1] = _mm512_shuffle_epi8(book, lh[1]);
        *t = vnni_dot_sums(lh, 2, d);
    } else {
        *t = vnni_dot(lh, 2, d);
    }
    const __m512i sc = _mm512_permutex2var_epi16(z0, _mm512_loadu_si512(qmm_vnni_scales[ti]), z1);
    const __m512 dl = _mm512_cvtph_ps(_mm512_castsi512_si256(sc));
    *scale = _mm512_mul_ps(dl, vnni_bcast4(xsc));
    *off = type == MLXN_DTYPE_Q4_1 || type == MLXN_DTYPE_Q5_1 ? _mm512_cvtph_ps(_mm512_extracti64x4_epi64(sc, 1)) : dl;
}

/* dot32 at one row of x in integers, four blocks at a time; the offsets through the f32 sums
 * of x, per lane a quarter of its block's. nr (1, 2 or 4) rows of W, wstride bytes apart, share
 * each of x's loads (QMM_PAIR_K: past the L1 every row re-read x's digits from the L2); nr rows
 * prefetch nr - 1 distances further ahead, their bytes going nr times as fast. */
MLXN_ALWAYS_INLINE void dot32_vnni_rows(const int type, const uint8_t *row, const int64_t wstride, const int nr,
                                        const float *xsum, int64_t K, float *r)
{
    const int bs = block_bytes32(type), xstride = mlxn_cpu_qmm_xquad(qmm_vnni_form(type));
    const bool offsets = type != MLXN_DTYPE_IQ4_NL;
    const int64_t nb = K / 32;
    const float *xsc = xsum + mlxn_cpu_qmm_xdig(K) + 16;
    const int8_t *xd = (const int8_t *)(xsc + mlxn_cpu_qmm_xs32(K));
    __m512 acc[4][2], off[4][2];
    for (int i = 0; i < nr; i++)
        acc[i][0] = acc[i][1] = off[i][0] = off[i][1] = _mm512_setzero_ps();
    int64_t q = 0;
#define QMM_QUAD(n, i, j)                                                                                    \
    do {                                                                                                     \
        __m512 t_, s_, o_;                                                                                   \
        vnni_quad(type, row + (i) * wstride + q * 4 * bs, n, xd + q * xstride, xsc + 4 * q, &t_, &s_, &o_);  \
        acc[i][j] = _mm512_fmadd_ps(t_, s_, acc[i][j]);                                                      \
        if (offsets)                                                                                         \
            off[i][j] = _mm512_fmadd_ps(o_, vnni_bcast4(xsum + 4 * q), off[i][j]);                          \
    } while (0)
    for (; 4 * q + 8 <= nb; q += 2)
        for (int i = 0; i < nr; i++) {
            qmm_prefetch(row + i * wstride + q * 4 * bs + (nr - 1) * QMM_PREFETCH, 8 * bs);
            QMM_QUAD(4, i, 0);
            q++;
            QMM_QUAD(4, i, 1);
            q--;
        }
    for (; 4 * q < nb; q++)
        for (int i = 0; i < nr; i++)
            QMM_QUAD(nb - 4 * q < 4 ? (int)(nb - 4 * q) : 4, i, 0);
#undef QMM_QUAD
    /* a lane's offset term is a quarter of its block's: w = c d + m, or c d - 8 d (Q4_0), - 16 d
     * (Q5_0); IQ4_NL has none (off stays zero) */
    const float of = type == MLXN_DTYPE_Q4_1 || type == MLXN_DTYPE_Q5_1 ? 0.25f : type == MLXN_DTYPE_Q4_0 ? -2.0f : -4.0f;
    for (int i = 0; i < nr; i++)
        r[i] = _mm512_reduce_add_ps(
            _mm512_fmadd_ps(_mm512_add_ps(off[i][0], off[i][1]), _mm512_set1_ps(of), _mm512_add_ps(acc[i][0], acc[i][1])));
}

MLXN_VNNI_ENTRY void dot32_vnni(const int type, const uint8_t *row, const int64_t wstride, const int nr,
                                const float *xsum, int64_t K, float *r)
{
    if (nr == 4)
        dot32_vnni_rows(type, row, wstride, 4, xsum, K, r);
    else if (nr == 2)
        dot32_vnni_rows(type, row, wstride, 2, xsum, K, r);
    else
        dot32_vnni_rows(type, row, wstride, 1, xsum, K, r);
}
MLXN_VNNI_END
#endif

/* ---------------------------------------------------------------- 32-element formats
 *
 * Blocks go 16 at a time: their scales and offsets converted into f32 arrays first. */

/* dot32 at one row of x in f32: nr (1, 2 or 4) rows of W, wstride bytes apart, sharing x's loads
 * (as dot32_vnni_rows) */
MLXN_ALWAYS_INLINE void dot32_f32_rows(const int type, const uint8_t *row, const int64_t wstride, const int nr,
                                       const float *x, const float *xsum, int64_t K, const lut16 *book, float *r)
{
    const int bs = block_bytes32(type);
    const int64_t nb = K / 32;
    vf acc0[4], acc1[4], off[4];
    for (int i = 0; i < nr; i++)
        acc0[i] = acc1[i] = off[i] = vf_zero();
    for (int64_t g = 0; g < nb; g += 16) {
        const int gn = nb - g < 16 ? (int)(nb - g) : 16;
        for (int i = 0; i < nr; i++) {
            const uint8_t *b = row + i * wstride + g * bs;
            float s[16], o[16];
            qmm_prefetch(b + (nr - 1) * QMM_PREFETCH, 16 * bs);
            if (scales32(type, b, gn, s, o)) /* xsum is zero-padded to whole groups */
                for (int j = 0; j < 16; j += VL)
                    off[i] = vf_fma(vf_load_f32(o + j), vf_load_f32(xsum + g + j), off[i]);
            const float *sp = qmm_opaque(s);
#define BODY(j, slot)                                                              \
            do {                                                                   \
                vf c[QMM_NV];                                                      \
                codes32(type, b + (j) * bs, c, book);                              \
                const vf t = unit_dot(c, x + (g + (j)) * 32);                      \
                if (slot)                                                          \
                    acc1[i] = vf_fma(t, vf_set1(sp[j]), acc1[i]);                  \
                else                                                               \
                    acc0[i] = vf_fma(t, vf_set1(sp[j]), acc0[i]);                  \
            } while (0)
            QMM_PAIRS(gn, BODY);
#undef BODY
        }
    }
    for (int i = 0; i < nr; i++)
        r[i] = vf_hsum(vf_add(vf_add(acc0[i], acc1[i]), off[i]));
}

MLXN_ALWAYS_INLINE void dot32(const int type, const uint8_t *row, const float *x, const float *xsum, int64_t K,
                              const int mb, float *r)
{
    const int bs = block_bytes32(type);
    const int64_t nb = K / 32;
#ifdef MLXN_SIMD_VNNI
    if (mb == 1 && qmm_vnni(type) && xsum[mlxn_cpu_qmm_xdig(K)] == (float)qmm_vnni_form(type)) {
        dot32_vnni(type, row, 0, 1, xsum, K, r);
        return;
    }
#endif
    lut16 book;
    if (type == MLXN_DTYPE_IQ4_NL)
        book = qmm_iq4_book();
    if (mb == 1) {
        dot32_f32_rows(type, row, 0, 1, x, xsum, K, &book, r);
        return;
    }
    qmm_acc acc;
    acc_zero(&acc, mb);
    for (int64_t g = 0; g < nb; g += 16) {
        const int gn = nb - g < 16 ? (int)(nb - g) : 16;
        const uint8_t *b = row + g * bs;
        float s[16], o[16];
        qmm_prefetch(b, 16 * bs);
        const bool offsets = scales32(type, b, gn, s, o);
        const float *sp = qmm_opaque(s), *op = qmm_opaque(o);
#define BODY(j, slot)                                                              \
        do {                                                                       \
            vf c[QMM_NV];                                                          \
            codes32(type, b + (j) * bs, c, &book);                                 \
            const vf vs = vf_set1(sp[j]);                                          \
            for (int i = 0; i < QMM_NV; i++)                                       \
                c[i] = offsets ? vf_fma(c[i], vs, vf_set1(op[j])) : vf_mul(c[i], vs); \
            acc_unit(&acc, c, x + (g + (j)) * 32, K, mb, slot);                    \
        } while (0)
        QMM_PAIRS(gn, BODY);
#undef BODY
    }
    acc_finish(&acc, mb, r);
}

/* ---------------------------------------------------------------- K super-blocks (256)
 *
 * Per super-block the scales (and offsets) are decoded into small f32 arrays first: per unit
 * (Q4_K, Q5_K, IQ4_XS) or per 16 elements (Q2_K, Q3_K, Q6_K). */

MLXN_ALWAYS_INLINE int block_bytes256(const int type)
{
    switch (type) {
    case MLXN_DTYPE_Q2_K: return (int)sizeof(mlxn_block_q2_K);
    case MLXN_DTYPE_Q3_K: return (int)sizeof(mlxn_block_q3_K);
    case MLXN_DTYPE_Q4_K: return (int)sizeof(mlxn_block_q4_K);
    case MLXN_DTYPE_Q5_K: return (int)sizeof(mlxn_block_q5_K);
    case MLXN_DTYPE_Q6_K: return (int)sizeof(mlxn_block_q6_K);
    default: return (int)sizeof(mlxn_block_iq4_xs);
    }
}

/* whether the format's scales are per 16 elements (else per unit) */
MLXN_ALWAYS_INLINE bool per16(const int type)
{
    return type == MLXN_DTYPE_Q2_K || type == MLXN_DTYPE_Q3_K || type == MLXN_DTYPE_Q6_K;
}

/* Q4_K / Q5_K: the eight 6-bit scales and mins of the 12 bytes at p, as bytes sc[0..7] and
 * m[0..7] of out (mlxn_scale_min_k4, four at a time in 32-bit words) */
MLXN_ALWAYS_INLINE void scale_min_k4_all(const uint8_t *p, uint8_t *out)
{
    uint32_t u[4];
    memcpy(u, p, 12);
    const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
    u[3] = ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4); /* mins 4..7 */
    const uint32_t mins03 = u[1] & m6;
    u[1] = (u[2] & m4) | (((u[0] >> 6) & m2) << 4); /* scales 4..7 */
    u[2] = mins03;
    u[0] &= m6; /* scales 0..3 */
    memcpy(out, u, 16);
}

/* Q3_K's 16 6-bit scales (unsigned, before the -32) as bytes in two little-endian words: sc_i's
 * low 4 bits are nibble i / 8 of scales[i % 8], its high 2 bits pair i / 4 of scales[8 + i % 4];
 * the pairs of h's four bytes shifted by 2 g land in dword g (i = 4 g + byte). Kept in registers:
 * 16 scalar scales stored one by one and read back by vector loads cost a store-forwarding stall
 * per super-block (bench/NOTES.md, session 21). */
MLXN_ALWAYS_INLINE void q3k_scale_words(const mlxn_block_q3_K *b, uint64_t *w0, uint64_t *w1)
{
    uint64_t l;
    uint32_t h;
    memcpy(&l, b->scales, 8);
    memcpy(&h, b->scales + 8, 4);
    const uint64_t m4 = 0x0F0F0F0F0F0F0F0Full, m2 = 0x03030303u;
    const uint64_t h01 = (uint64_t)(h & m2) | (uint64_t)(h >> 2 & m2) << 32,
                   h23 = (uint64_t)(h >> 4 & m2) | (uint64_t)(h >> 6 & m2) << 32;
    *w0 = (l & m4) | h01 << 4;
    *w1 = (l >> 4 & m4) | h23 << 4;
}

/* Scales s and offsets o of the super-block at bk: 8 per unit, or 16 per 16 elements (the
 * constant offsets of Q3_K's and Q6_K's codes are in o, so that at one row of x they cost one
 * FMA per 16 elements instead of a subtraction per vector). Returns whether there are offsets. */
MLXN_ALWAYS_INLINE bool scales256(const int type, const uint8_t *bk, float *s, float *o)
{
    switch (type) {
    case MLXN_DTYPE_Q4_K:
    case MLXN_DTYPE_Q5_K: { /* d sc_u, -dmin m_u */
        const mlxn_block_q4_K *b = (const mlxn_block_q4_K *)bk; /* Q5_K starts the same */
        uint8_t sm[16];
        scale_min_k4_all(b->scales, sm);
        const __m256 d = _mm256_set1_ps(qmm_h2f(b->d)), nm = _mm256_set1_ps(-qmm_h2f(b->dmin));
        _mm256_storeu_ps(s, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sm))), d));
        _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sm + 8)))), nm));
        return true;
    }
    case MLXN_DTYPE_Q6_K: { /* d sc_i, -32 d sc_i */
        const mlxn_block_q6_K *b = (const mlxn_block_q6_K *)bk;
        const vf d = vf_set1(qmm_h2f(b->d));
        for (int j = 0; j < 16; j += VL) {
            const vf v = vf_mul(vi_cvt(vi_i8(b->scales + j)), d);
            vf_store_f32(s + j, v);
            vf_store_f32(o + j, vf_mul(v, vf_set1(-32.0f)));
        }
        return true;
    }
    case MLXN_DTYPE_Q3_K: { /* d (sc_i - 32) and -4 times that (q3k_scale_words) */
        const mlxn_block_q3_K *b = (const mlxn_block_q3_K *)bk;
        uint64_t w0, w1;
        q3k_scale_words(b, &w0, &w1);
        const vf d = vf_set1(qmm_h2f(b->d)), c32 = vf_set1(32.0f);
        for (int j = 0; j < 16; j += VL) {
            const vf v = vf_mul(vf_sub(vi_cvt(vi_u8_words(w0, w1, j)), c32), d);
            vf_store_f32(s + j, v);
            vf_store_f32(o + j, vf_mul(v, vf_set1(-4.0f)));
        }
        return true;
    }
    case MLXN_DTYPE_Q2_K: { /* d (sc & 15), -dmin (sc >> 4) */
        const mlxn_block_q2_K *b = (const mlxn_block_q2_K *)bk;
        const vf d = vf_set1(qmm_h2f(b->d)), nm = vf_set1(-qmm_h2f(b->dmin));
        for (int j = 0; j < 16; j += VL) {
            const vi sc = vi_u8(b->scales + j);
            vf_store_f32(s + j, vf_mul(vi_cvt(vi_and(sc, vi_set1(15))), d));
            vf_store_f32(o + j, vf_mul(vi_cvt(vi_srl(sc, 4)), nm));
        }
        return true;
    }
    default: { /* IQ4_XS: d (ls_u - 32), ls_u 6 bits: nibble u of scales_l, then bits 2u, 2u + 1 of
                * scales_h; the eight spread to bytes in a 64-bit word (byte u = ls_u), ~15 operations
                * where a loop over u took ~60 (bench/NOTES.md) */
        const mlxn_block_iq4_xs *b = (const mlxn_block_iq4_xs *)bk;
        uint32_t l32;
        memcpy(&l32, b->scales_l, 4);
        uint64_t l = l32, h = b->scales_h;
        l = (l | l << 16) & 0x0000FFFF0000FFFFull; /* nibbles 0-3 | 4-7 */
        l = (l | l << 8) & 0x00FF00FF00FF00FFull;  /* nibble pairs */
        l = (l | l << 4) & 0x0F0F0F0F0F0F0F0Full;  /* a nibble a byte */
        h = (h | h << 24) & 0x000000FF000000FFull; /* fields 0-3 | 4-7 */
        h = (h | h << 12) & 0x000F000F000F000Full; /* field pairs */
        h = (h | h << 6) & 0x0303030303030303ull;  /* a field a byte */
        const __m256i ls = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)(l | h << 4)));
        _mm256_storeu_ps(s, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(ls, _mm256_set1_epi32(32))),
                                          _mm256_set1_ps(qmm_h2f(b->d))));
        return false;
    }
    }
}

/* the codes of unit u (0..7) of the super-block at bk */
MLXN_ALWAYS_INLINE void codes256(const int type, const uint8_t *bk, const int u, vf *c, const lut16 *book)
{
    for (int i = 0; i < QMM_NV; i++) {
        const int e = i * VL;
        switch (type) {
        case MLXN_DTYPE_Q4_K: { /* nibble u % 2 of qs[32 (u / 2) + l] */
            const mlxn_block_q4_K *b = (const mlxn_block_q4_K *)bk;
            c[i] = vi_cvt(vi_nibbles(b->qs + 32 * (u / 2) + e, u % 2));
            break;
        }
        case MLXN_DTYPE_Q5_K: { /* Q4_K's nibble, bit u of qh[l] as bit 4 */
            const mlxn_block_q5_K *b = (const mlxn_block_q5_K *)bk;
            const vi h = vi_u8(b->qh + e);
            const vi hb = vi_and(u <= 4 ? vi_sll(h, 4 - u) : vi_srl(h, u - 4), vi_set1(16));
            c[i] = vi_cvt(vi_or(vi_nibbles(b->qs + 32 * (u / 2) + e, u % 2), hb));
            break;
        }
        case MLXN_DTYPE_Q6_K: { /* half g = u / 4, turn t = u % 4: nibble t / 2 of
                                 * ql[64 g + 32 (t % 2) + l], bits 2t, 2t + 1 of qh[32 g + l] (the
                                 * -32 is in the offsets) */
            const mlxn_block_q6_K *b = (const mlxn_block_q6_K *)bk;
            const int g = u / 4, t = u % 4;
            const vi lo = vi_nibbles(b->ql + 64 * g + 32 * (t % 2) + e, t / 2);
            const vi h = vi_u8(b->qh + 32 * g + e);
            const vi hb = vi_and(t < 3 ? vi_sll(h, 4 - 2 * t) : vi_srl(h, 2), vi_set1(0x30));
            c[i] = vi_cvt(vi_or(lo, hb));
            break;
        }
        case MLXN_DTYPE_Q3_K: { /* bits 2 (u % 4) of qs[32 (u / 4) + l], bit u of hmask[l] as bit 2
                                 * (clear: - 4): the code is ql + 4 bit, the -4 in the offsets */
            const mlxn_block_q3_K *b = (const mlxn_block_q3_K *)bk;
            const vi ql = vi_and(vi_srl(vi_u8(b->qs + 32 * (u / 4) + e), 2 * (u % 4)), vi_set1(3));
            const vi h = vi_u8(b->hmask + e);
            const vi hb = vi_and(u <= 2 ? vi_sll(h, 2 - u) : vi_srl(h, u - 2), vi_set1(4));
            c[i] = vi_cvt(vi_or(ql, hb));
            break;
        }
        case MLXN_DTYPE_Q2_K: { /* bits 2 (u % 4) of qs[32 (u / 4) + l] */
            const mlxn_block_q2_K *b = (const mlxn_block_q2_K *)bk;
            c[i] = vi_cvt(vi_and(vi_srl(vi_u8(b->qs + 32 * (u / 4) + e), 2 * (u % 4)), vi_set1(3)));
            break;
        }
        default: { /* IQ4_XS: codebook values, qs[16 u + j] low nibble element j, high j + 16 */
            const mlxn_block_iq4_xs *b = (const mlxn_block_iq4_xs *)bk;
            const vi q = vi_u8(b->qs + 16 * u + e % 16);
            c[i] = lut16_get(*book, e >= 16 ? vi_srl(q, 4) : q);
            break;
        }
        }
    }
}

#if MLXN_SIMD_LEVEL == 1
/* The K-quants (Q2_K, Q3_K, Q4_K, Q6_K) at one row of x on AVX2, in integers: x's integer form
 * (three int8 digits per element, cpu.h) against the codes as bytes, 32 products a vpmaddubsw,
 * the unit's (or 16 elements') scale applied by the vpmaddwd that widens the pair sums, the
 * super-block summed in int32 and converted once: per 32 weights about 12 (Q4_K) or 15 (Q6_K)
 * vector instructions against ~15 and ~30 for the f32 path. Exact in the integers; x is held to
 * ~2^-24 of its 256-block's largest element. The offsets (mins, Q3_K's -4 and Q6_K's -32) stay
 * on the f32 sums of x. Measured in bench/NOTES.md; AVX-512 processors without VNNI keep the f32 path. */
MLXN_ALWAYS_INLINE void dot256_int(const int type, const uint8_t *row, const float *xsum, int64_t K, float *r)
{
    /* vpshufb controls: word u of each 128-bit lane into all its words */
    static const uint8_t pick[8][32] = {
#define P(u) {2 * u, 2 * u + 1, 2 * u, 2 * u + 1, 2 * u, 2 * u + 1, 2 * u, 2 * u + 1, 2 * u, 2 * u + 1, 2 * u, 2 * u + 1, \
              2 * u, 2 * u + 1, 2 * u, 2 * u + 1, 2 * u, 2 * u + 1, 2 * u, 2 * u + 1, 2 * u, 2 * u + 1, 2 * u, 2 * u + 1, \
              2 * u, 2 * u + 1, 2 * u, 2 * u + 1, 2 * u, 2 * u + 1, 2 * u, 2 * u + 1}
        P(0), P(1), P(2), P(3), P(4), P(5), P(6), P(7)
#undef P
    };
    const int bs = block_bytes256(type);
    const int64_t nb = K / 256;
    const float *xs16 = xsum + mlxn_cpu_qmm_xs32(K), *xscale = xsum + mlxn_cpu_qmm_xdig(K) + 16;
    const int8_t *xd = (const int8_t *)(xscale + (nb + 15) / 16 * 16);
    const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps(), off = _mm256_setzero_ps();
    for (int64_t k = 0; k < nb; k++) {
        const uint8_t *bk = row + k * bs;
        const int8_t *dk = xd + k * 768;
        qmm_prefetch(bk, bs);
        __m256i sc, i0 = _mm256_setzero_si256(), i1 = i0, i2 = i0;
        float d;
        if (type == MLXN_DTYPE_Q4_K) { /* words: scales 0..7 in both lanes; offsets -dmin m_u */
            const mlxn_block_q4_K *b = (const mlxn_block_q4_K *)bk;
            uint8_t sm[16];
            scale_min_k4_all(b->scales, sm);
            sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sm)));
            const __m256 mins = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sm + 8))));
            off = _mm256_fmadd_ps(_mm256_mul_ps(mins, _mm256_set1_ps(-qmm_h2f(b->dmin))),
                                  _mm256_loadu_ps(xsum + k * 8), off);
            d = qmm_h2f(b->d);
        } else { /* per 16 elements: words of the int8 scales, the even in the low lane, the odd
                  * in the high lane (a unit's elements 0..15 and 16..31); offsets per 16:
                  * Q6_K -32 d sc_i, Q3_K -4 d sc_i, Q2_K -dmin m_i */
            __m128i s8; /* the scales as int8 */
            float od;   /* the offsets: od times the bytes of o8 */
            __m128i o8;
            if (type == MLXN_DTYPE_Q6_K) {
                const mlxn_block_q6_K *b = (const mlxn_block_q6_K *)bk;
                s8 = o8 = _mm_loadu_si128((const __m128i *)b->scales);
                d = qmm_h2f(b->d);
                od = -32.0f * d;
            } else if (type == MLXN_DTYPE_Q3_K) {
                const mlxn_block_q3_K *b = (const mlxn_block_q3_K *)bk;
                uint64_t w0, w1;
                q3k_scale_words(b, &w0, &w1);
                s8 = o8 = _mm_sub_epi8(_mm_set_epi64x((long long)w1, (long long)w0), _mm_set1_epi8(32));
                d = qmm_h2f(b->d);
                od = -4.0f * d;
            } else { /* Q2_K: scales and mins the low and high nibbles of scales[i] */
                const mlxn_block_q2_K *b = (const mlxn_block_q2_K *)bk;
                const __m128i q = _mm_loadu_si128((const __m128i *)b->scales), n4 = _mm_set1_epi8(15);
                s8 = _mm_and_si128(q, n4);
                o8 = _mm_and_si128(_mm_srli_epi16(q, 4), n4);
                d = qmm_h2f(b->d);
                od = -qmm_h2f(b->dmin);
            }
            const __m128i eo = _mm_shuffle_epi8(s8, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
            sc = _mm256_cvtepi8_epi16(eo);
            const __m256 sd = _mm256_set1_ps(od);
            const __m256 v0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(o8)),
                         v1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(o8, o8)));
            off = _mm256_fmadd_ps(_mm256_mul_ps(v0, sd), _mm256_loadu_ps(xs16 + k * 16), off);
            off = _mm256_fmadd_ps(_mm256_mul_ps(v1, sd), _mm256_loadu_ps(xs16 + k * 16 + 8), off);
        }
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) {
            __m256i c;
            if (type == MLXN_DTYPE_Q4_K) { /* nibble u % 2 of qs[32 (u / 2) + l] */
                const mlxn_block_q4_K *b = (const mlxn_block_q4_K *)bk;
                const __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * (u / 2)));
                c = _mm256_and_si256(u % 2 ? _mm256_srli_epi16(q, 4) : q, m4);
            } else if (type != MLXN_DTYPE_Q6_K) { /* Q2_K, Q3_K: field 2 (u % 4) of qs[32 (u / 4) + l];
                                                   * Q3_K: bit u of hmask[l] as bit 2 (16-bit lane
                                                   * shifts, then masks per byte) */
                const uint8_t *qs = type == MLXN_DTYPE_Q2_K ? ((const mlxn_block_q2_K *)bk)->qs
                                                             : ((const mlxn_block_q3_K *)bk)->qs;
                const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * (u / 4)));
                c = _mm256_and_si256(_mm256_srli_epi16(q, 2 * (u % 4)), _mm256_set1_epi8(3));
                if (type == MLXN_DTYPE_Q3_K) {
                    const __m256i h = _mm256_loadu_si256((const __m256i *)((const mlxn_block_q3_K *)bk)->hmask);
                    const __m256i hb = u <= 2 ? _mm256_slli_epi16(h, 2 - u) : _mm256_srli_epi16(h, u - 2);
                    c = _mm256_or_si256(c, _mm256_and_si256(hb, _mm256_set1_epi8(4)));
                }
            } else { /* as codes256: nibble t / 2 of ql[64 g + 32 (t % 2) + l], bits 2t, 2t + 1
                      * of qh[32 g + l] as bits 4, 5 (shifted in 16-bit lanes, then masked) */
                const mlxn_block_q6_K *b = (const mlxn_block_q6_K *)bk;
                const int g = u / 4, t = u % 4;
                const __m256i ql = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * g + 32 * (t % 2)));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * g));
                const __m256i hb = t == 0 ? _mm256_slli_epi16(qh, 4) : t == 1 ? _mm256_slli_epi16(qh, 2)
                                 : t == 2 ? qh : _mm256_srli_epi16(qh, 2);
                c = _mm256_or_si256(_mm256_and_si256(t / 2 ? _mm256_srli_epi16(ql, 4) : ql, m4),
                                    _mm256_and_si256(hb, m30));
            }
            const __m256i su = _mm256_shuffle_epi8(sc, _mm256_loadu_si256((const __m256i *)pick[u]));
            const int8_t *du = dk + 32 * u;
            i0 = _mm256_add_epi32(i0, _mm256_madd_epi16(_mm256_maddubs_epi16(c, _mm256_loadu_si256((const __m256i *)du)), su));
            i1 = _mm256_add_epi32(i1, _mm256_madd_epi16(_mm256_maddubs_epi16(c, _mm256_loadu_si256((const __m256i *)(du + 256))), su));
            i2 = _mm256_add_epi32(i2, _mm256_madd_epi16(_mm256_maddubs_epi16(c, _mm256_loadu_si256((const __m256i *)(du + 512))), su));
            /* the sums in registers here: left to itself the compiler regroups the 24 adds
             * into a tree whose partial sums spill */
            __asm__("" : "+x"(i0), "+x"(i1), "+x"(i2));
        }
        const __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i2), _mm256_set1_ps(65536.0f),
                                         _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1), _mm256_set1_ps(256.0f), _mm256_cvtepi32_ps(i0)));
        acc = _mm256_fmadd_ps(v, _mm256_set1_ps(d * xscale[k]), acc);
    }
    __m256 t = _mm256_add_ps(acc, off);
    __m128 o4 = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    o4 = _mm_add_ps(o4, _mm_movehl_ps(o4, o4));
    o4 = _mm_add_ss(o4, _mm_movehdup_ps(o4));
    r[0] = _mm_cvtss_f32(o4);
}
#endif

#ifdef MLXN_SIMD_VNNI
MLXN_VNNI_BEGIN
/* bytes of a 512-bit vector: the lower 32 a, the upper 32 b */
MLXN_ALWAYS_INLINE __m512i vnni_halves8(int a, int b)
{
    return _mm512_inserti64x4(_mm512_set1_epi8((char)a), _mm256_set1_epi8((char)b), 1);
}

/* words of a 512-bit vector: the lower 16 a, the upper 16 b (shift counts) */
MLXN_ALWAYS_INLINE __m512i vnni_halves16(int a, int b)
{
    return _mm512_inserti64x4(_mm512_set1_epi16((short)a), _mm256_set1_epi16((short)b), 1);
}

/* the 64 codes of units 2p and 2p + 1 of the super-block at bk, as bytes in element order
 * (Q3_K's and Q6_K's constant offsets left to the offsets, as in codes256) */
MLXN_ALWAYS_INLINE __m512i vnni_codes256(const int type, const uint8_t *bk, const int p)
{
    switch (type) {
    case MLXN_DTYPE_Q4_K:
    case MLXN_DTYPE_Q5_K: { /* the low nibbles of qs[32 p + l], then the high ones */
        const uint8_t *qs = type == MLXN_DTYPE_Q4_K ? ((const mlxn_block_q4_K *)bk)->qs : ((const mlxn_block_q5_K *)bk)->qs;
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
        __m512i c = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1),
                                     _mm512_set1_epi8(15));
        if (type == MLXN_DTYPE_Q5_K) { /* bit u of qh[l] as bit 4 */
            const __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)((const mlxn_block_q5_K *)bk)->qh));
            c = _mm512_mask_add_epi8(c, _mm512_test_epi8_mask(h, vnni_halves8(1 << (2 * p), 1 << (2 * p + 1))), c,
                                     _mm512_set1_epi8(16));
        }
        return c;
    }
    case MLXN_DTYPE_Q6_K: { /* half g = p / 2, turns t = 2 (p % 2) and t + 1: nibble p % 2 of
                             * ql[64 g + l] (l < 64), bits 2t, 2t + 1 of qh[32 g + l] as bits 4, 5 */
        const mlxn_block_q6_K *b = (const mlxn_block_q6_K *)bk;
        const int g = p / 2;
        __m512i lo = _mm512_loadu_si512(b->ql + 64 * g);
        if (p % 2)
            lo = _mm512_srli_epi16(lo, 4);
        const __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * g)));
        const __m512i hs = p % 2 ? _mm512_srlv_epi16(h, vnni_halves16(0, 2)) : _mm512_sllv_epi16(h, vnni_halves16(4, 2));
        /* (lo & 15) | (hs & 0x30) */
        return _mm512_ternarylogic_epi32(lo, _mm512_set1_epi8(15), _mm512_and_si512(hs, _mm512_set1_epi8(0x30)), 0xEA);
    }
    default: { /* Q2_K, Q3_K: bits 2 (u % 4) of qs[32 (p / 2) + l] (u % 4 = 2 (p % 2), + 1);
                * Q3_K: bit u of hmask[l] as bit 2 */
        const uint8_t *qs = type == MLXN_DTYPE_Q2_K ? ((const mlxn_block_q2_K *)bk)->qs : ((const mlxn_block_q3_K *)bk)->qs;
        const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * (p / 2))));
        __m512i c = _mm512_and_si512(_mm512_srlv_epi16(q, vnni_halves16(4 * (p % 2), 4 * (p % 2) + 2)), _mm512_set1_epi8(3));
        if (type == MLXN_DTYPE_Q3_K) {
            const __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)((const mlxn_block_q3_K *)bk)->hmask));
            c = _mm512_mask_add_epi8(c, _mm512_test_epi8_mask(h, vnni_halves8(1 << (2 * p), 1 << (2 * p + 1))), c,
                                     _mm512_set1_epi8(4));
        }
        return c;
    }
    }
}

/* dot256 at one row of x in integers: per super-block the scales (W's per unit or per 16, times
 * x's per unit) in one vector, four pairs of units; nr (1, 2 or 4) rows of W, wstride bytes
 * apart, sharing x's loads (dot32_vnni_rows) */
MLXN_ALWAYS_INLINE void dot256_vnni_rows(const int type, const uint8_t *row, const int64_t wstride, const int nr,
                                         const float *xsum, int64_t K, float *r)
{
    const int bs = block_bytes256(type);
    const int64_t nb = K / 256;
    const float *xs16 = xsum + mlxn_cpu_qmm_xs32(K), *xsc = xsum + mlxn_cpu_qmm_xdig(K) + 16;
    const int8_t *xd = (const int8_t *)(xsc + mlxn_cpu_qmm_xs32(K));
    const __m512i twice = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i four = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512 acc0[4], acc1[4], off16[4];
    __m256 off[4];
    for (int i = 0; i < nr; i++) {
        acc0[i] = acc1[i] = off16[i] = _mm512_setzero_ps();
        off[i] = _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < nb; k++) {
        const __m512 xs = _mm512_castps256_ps512(_mm256_loadu_ps(xsc + k * 8));
        const int8_t *dk = xd + k * 2 * mlxn_cpu_qmm_xquad(MLXN_CPU_QMM_X_INT32);
        for (int i = 0; i < nr; i++) {
            const uint8_t *bk = row + i * wstride + k * bs;
            float s[16], o[16];
            qmm_prefetch(bk + (nr - 1) * QMM_PREFETCH, bs);
            scales256(type, bk, s, o); /* every VNNI format has offsets */
            __m512 sv;
            if (per16(type)) {
                off16[i] = _mm512_fmadd_ps(_mm512_loadu_ps(o), _mm512_loadu_ps(xs16 + k * 16), off16[i]);
                sv = _mm512_mul_ps(_mm512_loadu_ps(s), _mm512_permutexvar_ps(twice, xs));
            } else {
                off[i] = _mm256_fmadd_ps(_mm256_loadu_ps(o), _mm256_loadu_ps(xsum + k * 8), off[i]);
                sv = _mm512_mul_ps(_mm512_castps256_ps512(_mm256_loadu_ps(s)), xs);
            }
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) {
                const __m512i c = vnni_codes256(type, bk, p);
                const __m512 t = vnni_dot(&c, 1, dk + p / 2 * mlxn_cpu_qmm_xquad(MLXN_CPU_QMM_X_INT32) + p % 2 * 64);
                const __m512 sc = per16(type) ? _mm512_permutexvar_ps(_mm512_add_epi32(four, _mm512_set1_epi32(4 * p)), sv)
                                              : vnni_pair_scale(sv, 2 * p);
                if (p % 2)
                    acc1[i] = _mm512_fmadd_ps(t, sc, acc1[i]);
                else
                    acc0[i] = _mm512_fmadd_ps(t, sc, acc0[i]);
            }
        }
    }
    for (int i = 0; i < nr; i++) {
        __m128 o4 = _mm_add_ps(_mm256_castps256_ps128(off[i]), _mm256_extractf128_ps(off[i], 1));
        o4 = _mm_add_ps(o4, _mm_movehl_ps(o4, o4));
        o4 = _mm_add_ss(o4, _mm_movehdup_ps(o4));
        r[i] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0[i], acc1[i]), off16[i])) + _mm_cvtss_f32(o4);
    }
}

MLXN_VNNI_ENTRY void dot256_vnni(const int type, const uint8_t *row, const int64_t wstride, const int nr,
                                 const float *xsum, int64_t K, float *r)
{
    if (nr == 4)
        dot256_vnni_rows(type, row, wstride, 4, xsum, K, r);
    else if (nr == 2)
        dot256_vnni_rows(type, row, wstride, 2, xsum, K, r);
    else
        dot256_vnni_rows(type, row, wstride, 1, xsum, K, r);
}
MLXN_VNNI_END
#endif

/* dot256 at one row of x in f32, scaled dot products per unit or per 16 elements: nr (1, 2 or 4)
 * rows of W, wstride bytes apart, sharing x's loads (as dot32_vnni_rows) */
MLXN_ALWAYS_INLINE void dot256_f32_rows(const int type, const uint8_t *row, const int64_t wstride, const int nr,
                                        const float *x, const float *xsum, int64_t K, const lut16 *book, float *r)
{
    const int bs = block_bytes256(type);
    const int64_t nb = K / 256;
    vf acc0[4], acc1[4], off16[4];
    __m256 off[4];
    for (int i = 0; i < nr; i++) {
        acc0[i] = acc1[i] = off16[i] = vf_zero();
        off[i] = _mm256_setzero_ps();
    }
    const float *xs16 = xsum + mlxn_cpu_qmm_xs32(K);
    for (int64_t k = 0; k < nb; k++)
        for (int i = 0; i < nr; i++) {
            const uint8_t *bk = row + i * wstride + k * bs;
            const float *xk = x + k * 256;
            float s[16], o[16];
            qmm_prefetch(bk + (nr - 1) * QMM_PREFETCH, bs);
            if (scales256(type, bk, s, o)) {
                if (per16(type))
                    for (int j = 0; j < 16; j += VL)
                        off16[i] = vf_fma(vf_load_f32(o + j), vf_load_f32(xs16 + k * 16 + j), off16[i]);
                else
                    off[i] = _mm256_fmadd_ps(_mm256_loadu_ps(o), _mm256_loadu_ps(xsum + k * 8), off[i]);
            }
            const float *sp = qmm_opaque(s);
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++) {
                vf c[QMM_NV];
                codes256(type, bk, u, c, book);
                if (per16(type)) /* the unit's two halves, one scale each */
                    for (int h = 0; h < 2; h++) {
                        const int i0 = h * QMM_NV / 2;
                        vf t = vf_mul(c[i0], vf_load_f32(xk + u * 32 + i0 * VL));
                        for (int v = i0 + 1; v < i0 + QMM_NV / 2; v++)
                            t = vf_fma(c[v], vf_load_f32(xk + u * 32 + v * VL), t);
                        if (h)
                            acc1[i] = vf_fma(t, vf_set1(sp[2 * u + h]), acc1[i]);
                        else
                            acc0[i] = vf_fma(t, vf_set1(sp[2 * u + h]), acc0[i]);
                    }
                else {
                    const vf t = unit_dot(c, xk + u * 32);
                    if (u % 2)
                        acc1[i] = vf_fma(t, vf_set1(sp[u]), acc1[i]);
                    else
                        acc0[i] = vf_fma(t, vf_set1(sp[u]), acc0[i]);
                }
            }
        }
    for (int i = 0; i < nr; i++) {
        __m128 o4 = _mm_add_ps(_mm256_castps256_ps128(off[i]), _mm256_extractf128_ps(off[i], 1));
        o4 = _mm_add_ps(o4, _mm_movehl_ps(o4, o4));
        o4 = _mm_add_ss(o4, _mm_movehdup_ps(o4));
        r[i] = vf_hsum(vf_add(vf_add(acc0[i], acc1[i]), off16[i])) + _mm_cvtss_f32(o4);
    }
}

MLXN_ALWAYS_INLINE void dot256(const int type, const uint8_t *row, const float *x, const float *xsum, int64_t K,
                               const int mb, float *r)
{
    const int bs = block_bytes256(type);
    const int64_t nb = K / 256;
    lut16 book;
    if (type == MLXN_DTYPE_IQ4_XS)
        book = qmm_iq4_book();
#if MLXN_SIMD_LEVEL == 1
    if (mb == 1 && (type == MLXN_DTYPE_Q2_K || type == MLXN_DTYPE_Q3_K || type == MLXN_DTYPE_Q4_K || type == MLXN_DTYPE_Q6_K) &&
        xsum[mlxn_cpu_qmm_xdig(K)] == (float)MLXN_CPU_QMM_X_INT256) {
        dot256_int(type, row, xsum, K, r);
        return;
    }
#endif
#ifdef MLXN_SIMD_VNNI
    if (mb == 1 && qmm_vnni(type) && xsum[mlxn_cpu_qmm_xdig(K)] == (float)qmm_vnni_form(type)) {
        dot256_vnni(type, row, 0, 1, xsum, K, r);
        return;
    }
#endif
    if (mb == 1) {
        dot256_f32_rows(type, row, 0, 1, x, xsum, K, &book, r);
        return;
    }
    qmm_acc acc;
    acc_zero(&acc, mb);
    for (int64_t k = 0; k < nb; k++) {
        const uint8_t *bk = row + k * bs;
        float s[16], o[16];
        qmm_prefetch(bk, bs);
        const bool offsets = scales256(type, bk, s, o);
        const float *sp = qmm_opaque(s), *op = qmm_opaque(o);
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) {
            vf c[QMM_NV];
            codes256(type, bk, u, c, &book);
            for (int i = 0; i < QMM_NV; i++) {
                const int si = per16(type) ? 2 * u + i * VL / 16 : u;
                c[i] = offsets ? vf_fma(c[i], vf_set1(sp[si]), vf_set1(op[si])) : vf_mul(c[i], vf_set1(sp[si]));
            }
            acc_unit(&acc, c, x + k * 256 + u * 32, K, mb, u & 1);
        }
    }
    acc_finish(&acc, mb, r);
}

/* ---------------------------------------------------------------- float weights */

MLXN_ALWAYS_INLINE void dot_float(const int dt, const uint8_t *row, const float *x, int64_t K, const int mb, float *r)
{
    qmm_acc acc;
    acc_zero(&acc, mb);
    int64_t k = 0;
    for (; k + 64 <= K; k += 64) {
        vf w[QMM_NV];
        for (int h = 0; h < 2; h++) {
            for (int i = 0; i < QMM_NV; i++)
                w[i] = vf_load(dt, row, k + 32 * h + i * VL);
            acc_unit(&acc, w, x + k + 32 * h, K, mb, h);
        }
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

/* r[m] = W[n] . x[m] for mb rows of x (f32, row stride K; unit sums xsum, row stride xss) */
MLXN_ALWAYS_INLINE void qmm_dot(const int type, const uint8_t *row, const float *x, const float *xsum, int64_t K,
                                const int mb, float *r)
{
    switch (type) {
    case MLXN_DTYPE_Q4_0: case MLXN_DTYPE_Q4_1: case MLXN_DTYPE_Q5_0: case MLXN_DTYPE_Q5_1:
    case MLXN_DTYPE_Q8_0: case MLXN_DTYPE_IQ4_NL:
        dot32(type, row, x, xsum, K, mb, r);
        break;
    case MLXN_DTYPE_Q2_K: case MLXN_DTYPE_Q3_K: case MLXN_DTYPE_Q4_K: case MLXN_DTYPE_Q5_K:
    case MLXN_DTYPE_Q6_K: case MLXN_DTYPE_IQ4_XS:
        dot256(type, row, x, xsum, K, mb, r);
        break;
    default:
        dot_float(type, row, x, K, mb, r);
        break;
    }
}

/* From this K rows of W go several a pass over x at one row of x (qmm_pass_rows): x's form (3
 * bytes an element as digits, 4 as f32) then outgrows the L1 beside W's lines; at K 4096 the
 * pairs' two streams of W were slower (bench/NOTES.md, "Rows of W two or four a pass over x") */
#define QMM_PAIR_K 8192
#define QMM_QUAD_ROW_BYTES (16 << 10) /* rows up to this long go four a pass where the format takes four */

/* Rows of W a pass over x at one row of x from K QMM_PAIR_K, x's form (xsum) being read: four
 * where a row is at most 16 KB (four longer ones, 17.5 KB and up, were slower than two) for the
 * 32-element formats, Q4_K and Q5_K on the VNNI integer path and for Q8_0 and IQ4_XS on AVX-512's
 * f32 path; two for the others (four were slower on Q2_K, Q3_K and Q6_K, whose scales per 16
 * elements cost more instructions); MLX's 4- and 6-bit rows (mlx_rows_vnni) as the 32-element
 * formats; 1: one at a time (float W; MLX's 2-, 3- and 5-bit rows, whose codes cost more work a
 * byte and gained nothing; the K-quants on AVX2, where two lost up to 15% with 16 registers) */
MLXN_ALWAYS_INLINE int qmm_pass_rows(const int type, const float *xsum, int64_t K, int64_t row_bytes)
{
    switch (type) {
    case MLXN_DTYPE_Q4_0: case MLXN_DTYPE_Q4_1: case MLXN_DTYPE_Q5_0: case MLXN_DTYPE_Q5_1:
    case MLXN_DTYPE_IQ4_NL:
#ifdef MLXN_SIMD_VNNI
        if (xsum[mlxn_cpu_qmm_xdig(K)] == (float)qmm_vnni_form(type) && row_bytes <= QMM_QUAD_ROW_BYTES)
            return 4;
#else
        (void)row_bytes;
#endif
        return 2;
    case MLXN_DTYPE_Q8_0:
        return MLXN_SIMD_LEVEL == 2 && row_bytes <= QMM_QUAD_ROW_BYTES ? 4 : 2;
    case MLXN_DTYPE_Q4_K: case MLXN_DTYPE_Q5_K:
#ifdef MLXN_SIMD_VNNI
        if (xsum[mlxn_cpu_qmm_xdig(K)] == (float)qmm_vnni_form(type) && row_bytes <= QMM_QUAD_ROW_BYTES)
            return 4;
#endif
        return MLXN_SIMD_LEVEL == 1 ? 1 : 2;
    case MLXN_DTYPE_IQ4_XS:
        return MLXN_SIMD_LEVEL == 1 ? 1 : row_bytes <= QMM_QUAD_ROW_BYTES ? 4 : 2;
    case MLXN_DTYPE_Q2_K: case MLXN_DTYPE_Q3_K: case MLXN_DTYPE_Q6_K:
        return MLXN_SIMD_LEVEL == 1 ? 1 : 2;
    case MLXN_DTYPE_MLX_Q4: case MLXN_DTYPE_MLX_Q6: /* (on VNNI: mlx_rows_vnni, x's form present) */
        return row_bytes <= QMM_QUAD_ROW_BYTES ? 4 : 2;
    default:
        return 1;
    }
}

/* r[0 .. nr - 1] = rows row, row + wstride, ... of W . x at one row of x, nr 2 or 4 (qmm_pass_rows) */
MLXN_ALWAYS_INLINE void qmm_dot_rows(const int type, const uint8_t *row, int64_t wstride, const int nr,
                                     const float *x, const float *xsum, int64_t K, float *r)
{
    const bool b32 = type == MLXN_DTYPE_Q4_0 || type == MLXN_DTYPE_Q4_1 || type == MLXN_DTYPE_Q5_0 ||
                     type == MLXN_DTYPE_Q5_1 || type == MLXN_DTYPE_Q8_0 || type == MLXN_DTYPE_IQ4_NL;
#ifdef MLXN_SIMD_VNNI
    if (qmm_vnni(type) && xsum[mlxn_cpu_qmm_xdig(K)] == (float)qmm_vnni_form(type)) {
        if (b32)
            dot32_vnni(type, row, wstride, nr, xsum, K, r);
        else
            dot256_vnni(type, row, wstride, nr, xsum, K, r);
        return;
    }
#endif
    lut16 book;
    if (type == MLXN_DTYPE_IQ4_NL || type == MLXN_DTYPE_IQ4_XS)
        book = qmm_iq4_book();
    if (b32 && nr == 4)
        dot32_f32_rows(type, row, wstride, 4, x, xsum, K, &book, r);
    else if (b32)
        dot32_f32_rows(type, row, wstride, 2, x, xsum, K, &book, r);
    else if (nr == 4) /* the K-quants (AVX-512: qmm_pass_rows) */
        dot256_f32_rows(type, row, wstride, 4, x, xsum, K, &book, r);
    else
        dot256_f32_rows(type, row, wstride, 2, x, xsum, K, &book, r);
}

/* ---------------------------------------------------------------- many rows of x
 *
 * Past QMM_DECODED_M rows of x, decoding a row of W for every QMM_MB rows of x costs more than
 * its FMAs. Instead QMM_NR rows of W are decoded once into f32 (the kernels above in decode
 * mode: mb 0, the weights with scale and offset applied, as at mb > 1) for every chunk of x
 * that fits in L2, and a register block of QMM_MR rows of x by QMM_NR rows of W takes
 * QMM_MR + QMM_NR vector loads per QMM_MR x QMM_NR FMAs. From 32 rows the panels below take
 * over; these blocks keep the rows past the last panel. */
#if MLXN_SIMD_LEVEL >= 2
#define QMM_MR 4 /* 16 accumulators + 4 + 4 loads of the 32 registers */
#else
#define QMM_MR 2 /* 8 accumulators + 4 + 2 of the 16 */
#endif
#define QMM_NR 4
#define QMM_DECODED_M 4 /* from where the decoded path is ahead (bench/NOTES.md) */

/* Row `row` of W as K f32 values into out (K a multiple of 32: every format's unit). */
MLXN_ALWAYS_INLINE void qmm_decode_row(const int type, const uint8_t *row, int64_t K, float *out)
{
    switch (type) {
    case MLXN_DTYPE_Q4_0: case MLXN_DTYPE_Q4_1: case MLXN_DTYPE_Q5_0: case MLXN_DTYPE_Q5_1:
    case MLXN_DTYPE_Q8_0: case MLXN_DTYPE_IQ4_NL:
        dot32(type, row, out, NULL, K, 0, NULL);
        break;
    case MLXN_DTYPE_Q2_K: case MLXN_DTYPE_Q3_K: case MLXN_DTYPE_Q4_K: case MLXN_DTYPE_Q5_K:
    case MLXN_DTYPE_Q6_K: case MLXN_DTYPE_IQ4_XS:
        dot256(type, row, out, NULL, K, 0, NULL);
        break;
    default:
        for (int64_t k = 0; k < K; k += VL)
            vf_store_f32(out + k, vf_load(type, row, k));
        break;
    }
}

/* ---------------------------------------------------------------- MLX affine weights
 *
 * MLX rows (mlx_affine.h): code i at bits [i bits, (i + 1) bits) of the row's bytes, a scale s
 * and a bias b per group of 32, 64 or 128, w = s code + b. A unit of 32 codes takes 4 bits
 * bytes from byte 4 bits u; its codes come out in element order (4-bit: the low and high
 * nibbles interleaved; 2-bit: four planes interleaved; 3-, 5- and 6-bit: byte shuffles and
 * variable shifts, mlx_odd) and widen to f32 as the GGML formats' codes do; at one row of x on
 * VNNI, as bytes against x's integer form (mlx_quad_codes). */

/* the group's scale or bias g of a row of them (f32, f16 or bf16) */
MLXN_ALWAYS_INLINE float mlx_scale(int dt, const uint8_t *p, int64_t g)
{
    uint16_t h;
    if (dt == MLXN_DTYPE_F32) {
        float f;
        memcpy(&f, p + 4 * g, 4);
        return f;
    }
    memcpy(&h, p + 2 * g, 2);
    return dt == MLXN_DTYPE_F16 ? qmm_h2f(h) : mlxn_bf16_to_f32(h);
}

/* 3-, 5- and 6-bit codes: a byte shuffle gives each 32-bit lane the two bytes that hold its code,
 * a shift by the code's bit offset in them and a mask leave the code. Lane i of a run of codes
 * starting at a byte takes bytes (bits i) / 8 and the next, shifted by (bits i) % 8. */
#define MLX_IDX(b, i) (uint8_t)((b) * (i) / 8), (uint8_t)((b) * (i) / 8 + 1), 0x80, 0x80
#define MLX_IDX16(b)                                                                                               \
    {MLX_IDX(b, 0),  MLX_IDX(b, 1),  MLX_IDX(b, 2),  MLX_IDX(b, 3),  MLX_IDX(b, 4),  MLX_IDX(b, 5),                \
     MLX_IDX(b, 6),  MLX_IDX(b, 7),  MLX_IDX(b, 8),  MLX_IDX(b, 9),  MLX_IDX(b, 10), MLX_IDX(b, 11),               \
     MLX_IDX(b, 12), MLX_IDX(b, 13), MLX_IDX(b, 14), MLX_IDX(b, 15)}
#define MLX_SH16(b)                                                                                                \
    {(b) * 0 % 8,  (b) * 1 % 8,  (b) * 2 % 8,  (b) * 3 % 8,  (b) * 4 % 8,  (b) * 5 % 8,  (b) * 6 % 8,  (b) * 7 % 8, \
     (b) * 8 % 8,  (b) * 9 % 8,  (b) * 10 % 8, (b) * 11 % 8, (b) * 12 % 8, (b) * 13 % 8, (b) * 14 % 8, (b) * 15 % 8}
static const uint8_t mlx_odd_idx[3][64] = {MLX_IDX16(3), MLX_IDX16(5), MLX_IDX16(6)};
static const uint32_t mlx_odd_shift[3][16] = {MLX_SH16(3), MLX_SH16(5), MLX_SH16(6)};
#undef MLX_SH16
#undef MLX_IDX16
#undef MLX_IDX

/* codes VL v .. VL v + VL - 1 of the unit at p (4 bits bytes), bits 3, 5 or 6, as 32-bit lanes; no
 * byte past the unit is read */
MLXN_ALWAYS_INLINE vi mlx_odd(const int bits, const uint8_t *p, int v)
{
    const int t = bits == 3 ? 0 : bits == 5 ? 1 : 2;
#if MLXN_SIMD_LEVEL == 2
    /* 16 codes: 2 bits bytes, by a masked load */
    const __m128i b = _mm_maskz_loadu_epi8((__mmask16)((1u << (2 * bits)) - 1), p + 2 * bits * v);
    const __m512i q = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(b), _mm512_loadu_si512(mlx_odd_idx[t]));
    return _mm512_and_si512(_mm512_srlv_epi32(q, _mm512_loadu_si512(mlx_odd_shift[t])),
                            _mm512_set1_epi32((1 << bits) - 1));
#else
    /* 8 codes: `bits` bytes, within 8 loaded from where they end inside the unit (4 bits >= 12) */
    const int at = bits * v, base = at + 8 <= 4 * bits ? at : 4 * bits - 8;
    const __m256i idx = _mm256_add_epi8(_mm256_loadu_si256((const __m256i *)mlx_odd_idx[t]), _mm256_set1_epi8((char)(at - base)));
    const __m256i q = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadl_epi64((const __m128i *)(p + base))), idx);
    return _mm256_and_si256(_mm256_srlv_epi32(q, _mm256_loadu_si256((const __m256i *)mlx_odd_shift[t])),
                            _mm256_set1_epi32((1 << bits) - 1));
#endif
}

/* codes 32 u .. 32 u + 31 of the row as f32 vectors, c[i] holding elements i VL .. */
MLXN_ALWAYS_INLINE void mlx_unit(const int bits, const uint8_t *row, int64_t u, vf *c)
{
    const uint8_t *p = row + 4 * bits * u;
    __m128i e0, e1; /* elements 0-15 and 16-31 as bytes */
    if (bits == 8) {
        e0 = _mm_loadu_si128((const __m128i *)p);
        e1 = _mm_loadu_si128((const __m128i *)(p + 16));
    } else if (bits == 4) {
        const __m128i q = _mm_loadu_si128((const __m128i *)p), m = _mm_set1_epi8(15);
        const __m128i lo = _mm_and_si128(q, m), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m);
        e0 = _mm_unpacklo_epi8(lo, hi);
        e1 = _mm_unpackhi_epi8(lo, hi);
    } else if (bits == 2) {
        const __m128i q = _mm_loadl_epi64((const __m128i *)p), m = _mm_set1_epi8(3);
        const __m128i p0 = _mm_and_si128(q, m), p1 = _mm_and_si128(_mm_srli_epi16(q, 2), m);
        const __m128i p2 = _mm_and_si128(_mm_srli_epi16(q, 4), m), p3 = _mm_and_si128(_mm_srli_epi16(q, 6), m);
        const __m128i a = _mm_unpacklo_epi8(p0, p1), b = _mm_unpacklo_epi8(p2, p3); /* 4j, 4j + 1 | 4j + 2, 4j + 3 */
        e0 = _mm_unpacklo_epi16(a, b);
        e1 = _mm_unpackhi_epi16(a, b);
    } else { /* 3, 5, 6 */
        for (int v = 0; v < QMM_NV; v++)
            c[v] = vi_cvt(mlx_odd(bits, p, v));
        return;
    }
#if MLXN_SIMD_LEVEL == 2
    c[0] = vi_cvt(_mm512_cvtepu8_epi32(e0));
    c[1] = vi_cvt(_mm512_cvtepu8_epi32(e1));
#else
    c[0] = vi_cvt(_mm256_cvtepu8_epi32(e0));
    c[1] = vi_cvt(_mm256_cvtepu8_epi32(_mm_srli_si128(e0, 8)));
    c[2] = vi_cvt(_mm256_cvtepu8_epi32(e1));
    c[3] = vi_cvt(_mm256_cvtepu8_epi32(_mm_srli_si128(e1, 8)));
#endif
}

#ifdef MLXN_SIMD_VNNI
MLXN_VNNI_BEGIN
/* The scales (or biases) of units 4 q .. 4 q + 3 of a row of them (unit u in group u >> ug), the
 * units past nu taking unit 4 q's: vector loads and one permute where the four are whole, so that
 * no scalar passes through memory (a vector reload of stored scalars stalls store forwarding) */
MLXN_ALWAYS_INLINE __m128 mlx_quad_scales(int dt, const uint8_t *p, int64_t q, int ug, int64_t left)
{
    if (left < 4) {
        float v[4];
        for (int j = 0; j < 4; j++)
            v[j] = mlx_scale(dt, p, (4 * q + (j < left ? j : 0)) >> ug);
        return _mm_setr_ps(v[0], v[1], v[2], v[3]);
    }
    const int64_t g0 = 4 * q >> ug, ng = 4 >> ug; /* the quad's groups: 4, 2 or 1 */
    __m128 g;
    if (dt == MLXN_DTYPE_F32) {
        uint64_t f2;
        if (ng == 2) /* (a scales row is only 4-byte aligned) */
            memcpy(&f2, p + 4 * g0, 8);
        g = ng == 4   ? _mm_loadu_ps((const float *)p + g0)
            : ng == 2 ? _mm_castsi128_ps(_mm_cvtsi64_si128((long long)f2))
                      : _mm_load_ss((const float *)p + g0);
    } else {
        uint64_t h4;
        uint32_t h2;
        uint16_t h1;
        __m128i w; /* one load of the quad's 4, 2 or 1 16-bit values */
        if (ng == 4) {
            memcpy(&h4, p + 2 * g0, 8);
            w = _mm_cvtsi64_si128((long long)h4);
        } else if (ng == 2) {
            memcpy(&h2, p + 2 * g0, 4);
            w = _mm_cvtsi32_si128((int)h2);
        } else {
            memcpy(&h1, p + 2 * g0, 2);
            w = _mm_cvtsi32_si128(h1);
        }
        g = dt == MLXN_DTYPE_F16 ? _mm_cvtph_ps(w) : _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), w));
    }
    return ng == 4 ? g : ng == 2 ? _mm_unpacklo_ps(g, g) : _mm_shuffle_ps(g, g, 0);
}

/* Word tables of the 3-, 5- and 6-bit codes in x's _HALVES order (below): for a half unit's 16
 * codes (2 bits bytes, from byte o of a 128-bit lane), the byte pairs holding the even codes
 * (words of E) and the odd ones (words of O), and the shifts that bring an even code to bits 0..
 * of its word and an odd one to bits 8.. */
#define MLX_EW(b, o, k) (uint8_t)((o) + (b) * 2 * (k) / 8), (uint8_t)((o) + (b) * 2 * (k) / 8 + 1)
#define MLX_OW(b, o, k) (uint8_t)((o) + (b) * (2 * (k) + 1) / 8), (uint8_t)((o) + (b) * (2 * (k) + 1) / 8 + 1)
#define MLX_W8(W, b, o) {W(b, o, 0), W(b, o, 1), W(b, o, 2), W(b, o, 3), W(b, o, 4), W(b, o, 5), W(b, o, 6), W(b, o, 7)}
#define MLX_ES(b) {(b) * 0 % 8, (b) * 2 % 8, (b) * 4 % 8, (b) * 6 % 8, (b) * 8 % 8, (b) * 10 % 8, (b) * 12 % 8, (b) * 14 % 8}
#define MLX_OS(b) {8 - (b) * 1 % 8, 8 - (b) * 3 % 8, 8 - (b) * 5 % 8, 8 - (b) * 7 % 8, \
                   8 - (b) * 9 % 8, 8 - (b) * 11 % 8, 8 - (b) * 13 % 8, 8 - (b) * 15 % 8}
/* [3, 5, 6 bits][half][E, O]: the halves start at byte 0 and 6 (3-bit), 0 and 2 (5-bit), 0 and 0 */
static const uint8_t mlx_half_idx[3][2][2][16] = {
    {{MLX_W8(MLX_EW, 3, 0), MLX_W8(MLX_OW, 3, 0)}, {MLX_W8(MLX_EW, 3, 6), MLX_W8(MLX_OW, 3, 6)}},
    {{MLX_W8(MLX_EW, 5, 0), MLX_W8(MLX_OW, 5, 0)}, {MLX_W8(MLX_EW, 5, 2), MLX_W8(MLX_OW, 5, 2)}},
    {{MLX_W8(MLX_EW, 6, 0), MLX_W8(MLX_OW, 6, 0)}, {MLX_W8(MLX_EW, 6, 0), MLX_W8(MLX_OW, 6, 0)}}};
static const uint16_t mlx_half_shift[3][2][8] = {{MLX_ES(3), MLX_OS(3)}, {MLX_ES(5), MLX_OS(5)}, {MLX_ES(6), MLX_OS(6)}};
/* the dwords that give 128-bit lane j a half of unit j (of the four of a quad, loaded as dwords
 * 0 .. 4 bits - 1 of two vectors): [3, 5, 6 bits][half] */
#define MLX_D4(a) a, (a) + 1, (a) + 2, (a) + 2
#define MLX_D16(s, o) {MLX_D4(o), MLX_D4((s) + (o)), MLX_D4(2 * (s) + (o)), MLX_D4(3 * (s) + (o))}
static const uint32_t mlx_half_dwords[3][2][16] = {{MLX_D16(3, 0), MLX_D16(3, 0)},
                                                   {MLX_D16(5, 0), MLX_D16(5, 2)},
                                                   {MLX_D16(6, 0), MLX_D16(6, 3)}};
#undef MLX_D16
#undef MLX_D4
#undef MLX_OS
#undef MLX_ES
#undef MLX_W8
#undef MLX_OW
#undef MLX_EW

/* The codes of units 4 q .. 4 q + 3 of an MLX row (left of them in the row, the loads stop
 * there) as bytes in x's _HALVES order: 128-bit lane j of c[0] holds unit j's elements 0-15, of
 * c[1] its 16-31. 4-bit: the low and high nibbles (even and odd elements) interleaved by byte
 * unpacks, which work within 128-bit lanes. 2-bit: each lane given its unit's 8 bytes, whose four
 * bit planes interleave by unpacks. 3-, 5- and 6-bit: each lane given the dwords of its half unit,
 * then byte shuffles put the two bytes that hold each even code in a word of E and each odd one in
 * a word of O, shifts by the codes' bit offsets bring them to bytes 0 and 1 of the words, a byte
 * blend joins the two and a mask leaves the codes. */
MLXN_ALWAYS_INLINE void mlx_quad_codes(const int bits, const uint8_t *row, int64_t q, int64_t left, __m512i *c)
{
    const int qb = 16 * bits, nb = (int)(left < 4 ? 4 * bits * left : qb); /* a quad's bytes; those in the row */
    const uint8_t *p = row + (int64_t)qb * q;
    const __m512i z0 = nb >= 64 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8((1ULL << nb) - 1, p);
    if (bits == 4) {
        const __m512i m4 = _mm512_set1_epi8(15);
        const __m512i lo = _mm512_and_si512(z0, m4), hi = _mm512_and_si512(_mm512_srli_epi16(z0, 4), m4);
        c[0] = _mm512_unpacklo_epi8(lo, hi);
        c[1] = _mm512_unpackhi_epi8(lo, hi);
    } else if (bits == 2) {
        const __m512i u = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 0, 1, 1, 2, 2, 3, 3), z0);
        const __m512i m2 = _mm512_set1_epi8(3);
        const __m512i p0 = _mm512_and_si512(u, m2), p1 = _mm512_and_si512(_mm512_srli_epi16(u, 2), m2);
        const __m512i p2 = _mm512_and_si512(_mm512_srli_epi16(u, 4), m2), p3 = _mm512_and_si512(_mm512_srli_epi16(u, 6), m2);
        const __m512i a = _mm512_unpacklo_epi8(p0, p1), b = _mm512_unpacklo_epi8(p2, p3); /* 4i, 4i + 1 | 4i + 2, 4i + 3 */
        c[0] = _mm512_unpacklo_epi16(a, b);
        c[1] = _mm512_unpackhi_epi16(a, b);
    } else {
        const int t = bits == 3 ? 0 : bits == 5 ? 1 : 2;
        const __m512i z1 = qb > 64 ? _mm512_maskz_loadu_epi8(nb > 64 ? (1ULL << (nb - 64)) - 1 : 0, p + 64) : z0;
        const __m512i mask = _mm512_set1_epi8((char)((1 << bits) - 1));
        const __m512i es = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)mlx_half_shift[t][0]));
        const __m512i os = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)mlx_half_shift[t][1]));
        for (int h = 0; h < 2; h++) {
            const __m512i u = _mm512_permutex2var_epi32(z0, _mm512_loadu_si512(mlx_half_dwords[t][h]), z1);
            const __m512i e = _mm512_shuffle_epi8(u, _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)mlx_half_idx[t][h][0])));
            const __m512i o = _mm512_shuffle_epi8(u, _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)mlx_half_idx[t][h][1])));
            c[h] = _mm512_and_si512(_mm512_mask_blend_epi8((__mmask64)0xAAAAAAAAAAAAAAAAULL, _mm512_srlv_epi16(e, es),
                                                           _mm512_sllv_epi16(o, os)),
                                    mask);
        }
    }
}

/* Row n of MLX weights (2 to 6 bits) . x at one row of x in integers, against x's _HALVES
 * digits: a 32-bit lane's sum stays in one unit, scaled by its group's scale times x's unit
 * scale; the biases go on the f32 sums of x, four units a step. 6-bit codes (up to 63) keep the
 * top digit's sum apart (lanes of 8 elements). */
MLXN_ALWAYS_INLINE __m512 mlx_quad(const int bits, const uint8_t *row, const uint8_t *sp, int dt, int64_t q, int ug,
                                   int64_t left, const int8_t *xd, const float *xsc)
{
    __m512i c[2];
    mlx_quad_codes(bits, row, q, left, c);
    const __m512 sc = _mm512_broadcast_f32x4(_mm_mul_ps(mlx_quad_scales(dt, sp, q, ug, left), _mm_loadu_ps(xsc + 4 * q)));
    const __m512i four = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const int8_t *d = xd + q * mlxn_cpu_qmm_xquad(MLXN_CPU_QMM_X_INT32_HALVES);
    __m512 t;
    if (bits == 6) {
        __m512i t2, t10;
        vnni_dot_split(c, 2, d, &t2, &t10);
        t = vnni_join(t2, t10);
    } else {
        t = vnni_dot(c, 2, d);
    }
    return _mm512_mul_ps(t, _mm512_permutexvar_ps(four, sc));
}

/* rows n .. n + nr - 1 of W (nr 1, 2 or 4: each quad of x's digits loaded for the first row
 * hits the L1 for the others, as dot32_vnni_rows) into r */
MLXN_ALWAYS_INLINE void mlx_dot_vnni_rows(const mlxn_qmatmul_mlx_args *m, const int bits, int64_t n, const int nr,
                                          const float *xsum, float *r)
{
    const int64_t K = m->K, nu = K / 32, upg = m->group_size / 32;
    const int ug = upg == 1 ? 0 : upg == 2 ? 1 : 2, dt = m->s_dtype;
    const float *xsc = xsum + mlxn_cpu_qmm_xdig(K) + 16; /* xsum's unit sums and scales: zero past K */
    const int8_t *xd = (const int8_t *)(xsc + mlxn_cpu_qmm_xs32(K));
    const uint8_t *row[4], *sp[4], *bp[4];
    __m512 acc[4][2];
    __m128 off[4];
    for (int i = 0; i < nr; i++) {
        row[i] = m->w + (n + i) * m->w_stride;
        sp[i] = (const uint8_t *)m->scales + (n + i) * m->s_stride;
        bp[i] = (const uint8_t *)m->biases + (n + i) * m->b_stride;
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        off[i] = _mm_setzero_ps();
    }
    int64_t q = 0;
    for (; 4 * q + 8 <= nu; q += 2)
        for (int i = 0; i < nr; i++) {
            qmm_prefetch(row[i] + 16 * bits * q + (nr - 1) * QMM_PREFETCH, 32 * bits);
            acc[i][0] = _mm512_add_ps(acc[i][0], mlx_quad(bits, row[i], sp[i], dt, q, ug, 4, xd, xsc));
            acc[i][1] = _mm512_add_ps(acc[i][1], mlx_quad(bits, row[i], sp[i], dt, q + 1, ug, 4, xd, xsc));
            off[i] = _mm_fmadd_ps(mlx_quad_scales(dt, bp[i], q, ug, 4), _mm_loadu_ps(xsum + 4 * q), off[i]);
            off[i] = _mm_fmadd_ps(mlx_quad_scales(dt, bp[i], q + 1, ug, 4), _mm_loadu_ps(xsum + 4 * q + 4), off[i]);
        }
    for (; 4 * q < nu; q++)
        for (int i = 0; i < nr; i++) {
            acc[i][0] = _mm512_add_ps(acc[i][0], mlx_quad(bits, row[i], sp[i], dt, q, ug, nu - 4 * q, xd, xsc));
            off[i] = _mm_fmadd_ps(mlx_quad_scales(dt, bp[i], q, ug, nu - 4 * q), _mm_loadu_ps(xsum + 4 * q), off[i]);
        }
    for (int i = 0; i < nr; i++) {
        const __m128 o = _mm_add_ps(off[i], _mm_movehl_ps(off[i], off[i]));
        r[i] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1])) + _mm_cvtss_f32(_mm_add_ss(o, _mm_movehdup_ps(o)));
    }
}

/* Rows n0 .. n1 - 1 of MLX weights (2 to 6 bits; a's w_dtype the MLX dtype) at one row of x in
 * integers (VNNI), from K QMM_PAIR_K several rows a pass where qmm_pass_rows says (fewer at the
 * end). One entry, not inlined into the level's code (MLXN_VNNI_BEGIN), each width's loop
 * specialized. */
MLXN_ALWAYS_INLINE void mlx_rows_vnni_bits(const mlxn_qmatmul_args *a, const mlxn_qmatmul_mlx_args *m, const int bits,
                                           const float *xsum, int64_t n0, int64_t n1)
{
    float *y = (float *)mlxn_rows_ptr(&a->y, 0);
    const int np = m->K >= QMM_PAIR_K ? qmm_pass_rows(a->w_dtype, xsum, m->K, m->w_stride) : 1;
    for (int64_t n = n0; n < n1;) {
        const int g = n + np <= n1 ? np : n + 2 <= n1 ? 2 : 1; /* (as qmm_rows) */
        switch (g) {
        case 1: mlx_dot_vnni_rows(m, bits, n, 1, xsum, y + n); break;
        case 2: mlx_dot_vnni_rows(m, bits, n, 2, xsum, y + n); break;
        default: mlx_dot_vnni_rows(m, bits, n, 4, xsum, y + n); break;
        }
        n += g;
    }
}

MLXN_VNNI_ENTRY void mlx_rows_vnni(const mlxn_qmatmul_args *a, const mlxn_qmatmul_mlx_args *m, const float *xsum,
                                   int64_t n0, int64_t n1)
{
    switch (m->bits) {
    case 2: mlx_rows_vnni_bits(a, m, 2, xsum, n0, n1); break;
    case 3: mlx_rows_vnni_bits(a, m, 3, xsum, n0, n1); break;
    case 4: mlx_rows_vnni_bits(a, m, 4, xsum, n0, n1); break;
    case 5: mlx_rows_vnni_bits(a, m, 5, xsum, n0, n1); break;
    default: mlx_rows_vnni_bits(a, m, 6, xsum, n0, n1); break;
    }
}
MLXN_VNNI_END
#endif

/* Row n of MLX weights as K f32 values into out (for the decoded and panel paths) */
MLXN_ALWAYS_INLINE void mlx_decode_row_bits(const mlxn_qmatmul_mlx_args *m, const int bits, int64_t n, float *out)
{
    const uint8_t *row = m->w + n * m->w_stride;
    const uint8_t *sp = (const uint8_t *)m->scales + n * m->s_stride, *bp = (const uint8_t *)m->biases + n * m->b_stride;
    const int64_t upg = m->group_size / 32;
    for (int64_t g = 0; g < m->K / m->group_size; g++) {
        const vf s = vf_set1(mlx_scale(m->s_dtype, sp, g)), b = vf_set1(mlx_scale(m->s_dtype, bp, g));
        for (int64_t u = g * upg; u < (g + 1) * upg; u++) {
            vf c[QMM_NV];
            mlx_unit(bits, row, u, c);
            for (int i = 0; i < QMM_NV; i++)
                vf_store_f32(out + 32 * u + i * VL, vf_fma(c[i], s, b));
        }
    }
}

/* one function for every width: it runs once per row of W per pass over x */
static void MLXN_LEVEL_FN(mlx_decode_row)(const mlxn_qmatmul_mlx_args *m, int64_t n, float *out)
{
    switch (m->bits) {
    case 2: mlx_decode_row_bits(m, 2, n, out); break;
    case 3: mlx_decode_row_bits(m, 3, n, out); break;
    case 4: mlx_decode_row_bits(m, 4, n, out); break;
    case 5: mlx_decode_row_bits(m, 5, n, out); break;
    case 6: mlx_decode_row_bits(m, 6, n, out); break;
    default: mlx_decode_row_bits(m, 8, n, out); break;
    }
}

/* Row n of W as K f32 values into out: GGML's (type), or MLX's where mlx is set */
MLXN_ALWAYS_INLINE void qmm_decode_w(const mlxn_qmatmul_args *a, const mlxn_qmatmul_mlx_args *mlx, const int type,
                                     int64_t n, float *out)
{
    if (mlx)
        MLXN_LEVEL_FN(mlx_decode_row)(mlx, n, out);
    else
        qmm_decode_row(type, a->w + n * a->w_stride, a->K, out);
}

/* y[m][n0 + j] = w[j] . x[m] for mr rows of x and nr decoded rows w (each K f32). */
MLXN_ALWAYS_INLINE void qmm_block(const float *w, const float *x, int64_t K, const int mr, const int nr, float *r)
{
    vf acc[QMM_MR][QMM_NR];
    for (int m = 0; m < mr; m++)
        for (int j = 0; j < nr; j++)
            acc[m][j] = vf_zero();
    for (int64_t k = 0; k < K; k += VL) {
        vf wv[QMM_NR];
        for (int j = 0; j < nr; j++)
            wv[j] = vf_load_f32(w + j * K + k);
        for (int m = 0; m < mr; m++) {
            const vf xv = vf_load_f32(x + m * K + k);
            for (int j = 0; j < nr; j++)
                acc[m][j] = vf_fma(wv[j], xv, acc[m][j]);
        }
    }
    for (int m = 0; m < mr; m++)
        for (int j = 0; j < nr; j++)
            r[m * QMM_NR + j] = vf_hsum(acc[m][j]);
}

#if QMM_MR == 4
#define QMM_BLOCK_MR(mr, nr)                          \
    switch (mr) {                                     \
    case 1: qmm_block(w, xm, K, 1, nr, r); break;     \
    case 2: qmm_block(w, xm, K, 2, nr, r); break;     \
    case 3: qmm_block(w, xm, K, 3, nr, r); break;     \
    default: qmm_block(w, xm, K, 4, nr, r); break;    \
    }
#else
#define QMM_BLOCK_MR(mr, nr)                          \
    switch (mr) {                                     \
    case 1: qmm_block(w, xm, K, 1, nr, r); break;     \
    default: qmm_block(w, xm, K, 2, nr, r); break;    \
    }
#endif

/* y[m][n + j] = w[j] . x[m] for rows m0 .. m1 - 1 of x (f32, row stride K) and nr (<= QMM_NR)
 * decoded rows w (K apart). One function for every format: the rows are floats by now. */
static void MLXN_LEVEL_FN(qmm_blocks)(const mlxn_qmatmul_args *a, const float *w, const float *x, int64_t m0,
                                      int64_t m1, int64_t n, int nr)
{
    const int64_t K = a->K;
    for (; m0 < m1; m0 += QMM_MR) {
        const int mr = m1 - m0 < QMM_MR ? (int)(m1 - m0) : QMM_MR;
        const float *xm = x + m0 * K;
        float r[QMM_MR * QMM_NR];
        switch (nr) {
        case 1: QMM_BLOCK_MR(mr, 1) break;
        case 2: QMM_BLOCK_MR(mr, 2) break;
        case 3: QMM_BLOCK_MR(mr, 3) break;
        default: QMM_BLOCK_MR(mr, QMM_NR) break;
        }
        for (int m = 0; m < mr; m++)
            for (int j = 0; j < nr; j++)
                ((float *)mlxn_rows_ptr(&a->y, m0 + m))[n + j] = r[m * QMM_NR + j];
    }
}
#undef QMM_BLOCK_MR

/* Rows n0 .. n1 - 1 of W against all M rows of x, W decoded QMM_NR rows at a time (wbuf:
 * QMM_NR * K floats) once per chunk of x that stays in L2. */
MLXN_ALWAYS_INLINE void qmm_rows_decoded(const mlxn_qmatmul_args *a, const mlxn_qmatmul_mlx_args *mlx, const float *x,
                                         int64_t n0, int64_t n1, const int type, float *wbuf)
{
    const int64_t K = a->K, M = a->M;
    int64_t mc = ((192 << 10) / (K * 4)) / QMM_MR * QMM_MR;
    if (mc < QMM_MR)
        mc = QMM_MR;
    for (int64_t c0 = 0; c0 < M; c0 += mc) {
        const int64_t c1 = c0 + mc < M ? c0 + mc : M;
        for (int64_t n = n0; n < n1; n += QMM_NR) {
            const int nr = n1 - n < QMM_NR ? (int)(n1 - n) : QMM_NR;
            for (int j = 0; j < nr; j++)
                qmm_decode_w(a, mlx, type, n + j, wbuf + j * K);
            MLXN_LEVEL_FN(qmm_blocks)(a, wbuf, x, c0, c1, n, nr);
        }
    }
}

/* ---------------------------------------------------------------- x in panels
 *
 * From 32 rows of x (with K whole units) x comes in panels of 32 rows, transposed (cpu.h; the
 * rows past the last panel go to qmm_blocks), and QMM_TN decoded rows of W are multiplied into a
 * panel as an outer product: per element k, an element of each row of W broadcast times a vector
 * of x's rows at k. The accumulators hold outputs (a vector of rows of x for one row of W) rather
 * than partial dot products, so no horizontal sums are left at the end of K, and a register
 * block takes QMM_TV + QMM_TN loads per QMM_TV x QMM_TN FMAs. */
#if MLXN_SIMD_LEVEL >= 2
#define QMM_TN MLXN_CPU_QMM_PANEL_W /* 12 x 2 accumulators + 2 vectors of x + a broadcast of the 32 registers */
#else
#define QMM_TN (MLXN_CPU_QMM_PANEL_W / 2) /* 6 x 2 + 2 + 1 of the 16 */
#endif
#define QMM_TV 2 /* vectors of x's rows a block: 32 rows on AVX-512, 16 on AVX2 */
/* bytes of x's panels a pass over W, its rows decoded once a pass (bench/NOTES.md: 4 MB, in the
 * last-level cache, ran faster than passes the size of L2, whose decoding is repeated more) */
#define QMM_PANEL_PASS_BYTES (4 << 20)

/* out[j 32 + i] = w[j] . x[i] for the QMM_TN decoded rows w (K floats each) and QMM_TV vectors of
 * x's rows from the panel column xt (row i's element k at xt[k 32 + i]) */
MLXN_ALWAYS_INLINE void qmm_panel_block(const float *w, const float *xt, int64_t K, float *out)
{
    vf acc[QMM_TN][QMM_TV];
#pragma GCC unroll 12
    for (int j = 0; j < QMM_TN; j++)
#pragma GCC unroll 2
        for (int v = 0; v < QMM_TV; v++)
            acc[j][v] = vf_zero();
    for (int64_t k = 0; k < K; k++) {
        vf xv[QMM_TV];
#pragma GCC unroll 2
        for (int v = 0; v < QMM_TV; v++)
            xv[v] = vf_load_f32(xt + k * MLXN_CPU_QMM_PANEL + v * VL);
#pragma GCC unroll 12
        for (int j = 0; j < QMM_TN; j++) {
            const vf b = vf_set1(w[j * K + k]);
#pragma GCC unroll 2
            for (int v = 0; v < QMM_TV; v++)
                acc[j][v] = vf_fma(b, xv[v], acc[j][v]);
        }
    }
#pragma GCC unroll 12
    for (int j = 0; j < QMM_TN; j++)
#pragma GCC unroll 2
        for (int v = 0; v < QMM_TV; v++)
            vf_store_f32(out + j * MLXN_CPU_QMM_PANEL + v * VL, acc[j][v]);
}

/* Rows n0 .. n1 - 1 of W against x's panels xt and, past them, its rows x; W decoded QMM_TN rows
 * at a time (wbuf: QMM_TN K floats; rows past n1 zero) once per pass over the panels. */
MLXN_ALWAYS_INLINE void qmm_rows_panels(const mlxn_qmatmul_args *a, const mlxn_qmatmul_mlx_args *mlx, const float *x,
                                        const float *xt, int64_t n0, int64_t n1, const int type, float *wbuf)
{
    const int64_t K = a->K, M = a->M, P = MLXN_CPU_QMM_PANEL, np = M / P;
    int64_t pass = QMM_PANEL_PASS_BYTES / (K * P * (int64_t)sizeof(float));
    pass = pass < 1 ? 1 : pass;
    for (int64_t p0 = 0; p0 < np; p0 += pass) {
        const int64_t p1 = p0 + pass < np ? p0 + pass : np;
        for (int64_t n = n0; n < n1; n += QMM_TN) {
            const int nr = n1 - n < QMM_TN ? (int)(n1 - n) : QMM_TN;
            for (int j = 0; j < QMM_TN; j++)
                if (j < nr)
                    qmm_decode_w(a, mlx, type, n + j, wbuf + j * K);
                else
                    memset(wbuf + j * K, 0, (size_t)K * sizeof(float));
            for (int64_t p = p0; p < p1; p++) {
                float out[QMM_TN * MLXN_CPU_QMM_PANEL];
                for (int r0 = 0; r0 < P; r0 += QMM_TV * VL) /* AVX2: two halves of 16 rows */
                    qmm_panel_block(wbuf, xt + p * K * P + r0, K, out + r0);
                for (int i = 0; i < P; i++) {
                    float *y = (float *)mlxn_rows_ptr(&a->y, p * P + i) + n;
                    for (int j = 0; j < nr; j++)
                        y[j] = out[j * P + i];
                }
            }
            if (p1 == np) /* the rows past the panels, in the last pass */
                for (int j = 0; j < nr; j += QMM_NR)
                    MLXN_LEVEL_FN(qmm_blocks)(a, wbuf + j * K, x, np * P, M, n + j,
                                              nr - j < QMM_NR ? nr - j : QMM_NR);
        }
    }
}

/* Rows n0 .. n1 - 1 of W (GGML's, or MLX's where mlx is set) decoded into a buffer of rows: with
 * x's panels xt qmm_rows_panels, else from QMM_DECODED_M rows of x qmm_rows_decoded. False where
 * neither applies or no buffer can be had: the caller's paths, which need no memory. */
MLXN_ALWAYS_INLINE bool qmm_rows_buffered(const mlxn_qmatmul_args *a, const mlxn_qmatmul_mlx_args *mlx, const float *x,
                                          const float *xt, int64_t n0, int64_t n1, const int type)
{
    const int64_t K = a->K, M = a->M;
    if (xt && mlxn_cpu_qmm_panels_apply(M, K)) {
        float *wbuf = mlxn_aligned_alloc((size_t)QMM_TN * (size_t)K * sizeof(float));
        if (wbuf) { /* else the decoded rows */
            qmm_rows_panels(a, mlx, x, xt, n0, n1, type, wbuf);
            mlxn_aligned_free(wbuf);
            return true;
        }
    }
    if (M >= QMM_DECODED_M && K % 32 == 0) {
        float *wbuf = mlxn_aligned_alloc((size_t)QMM_NR * (size_t)K * sizeof(float));
        if (wbuf) {
            qmm_rows_decoded(a, mlx, x, n0, n1, type, wbuf);
            mlxn_aligned_free(wbuf);
            return true;
        }
    }
    return false;
}

/* Rows n0 .. n1 - 1 of W: qmm_rows_buffered where it applies. Otherwise (and when a buffer cannot
 * be had, or a float W's K is not whole units) the M rows of x go QMM_MB at a time; for M > QMM_MB the rows of W are visited in panels that stay in the L2
 * cache while every chunk of x passes over them. xsum: [M, xss] sums of x over each
 * 32-element unit, zero-padded. */
MLXN_ALWAYS_INLINE void qmm_rows(const mlxn_qmatmul_args *a, const float *x, const float *xsum, int64_t xss,
                                 const float *xt, int64_t n0, int64_t n1, const int type)
{
    const int64_t K = a->K, M = a->M;
    if (qmm_rows_buffered(a, NULL, x, xt, n0, n1, type))
        return;
    int64_t panel = M <= QMM_MB ? n1 - n0 : (256 << 10) / (a->w_stride > 0 ? a->w_stride : 1);
    if (panel < 1)
        panel = 1;
    for (int64_t p0 = n0; p0 < n1; p0 += panel) {
        const int64_t p1 = p0 + panel < n1 ? p0 + panel : n1;
        for (int64_t m0 = 0; m0 < M; m0 += QMM_MB) {
            const int mb = M - m0 < QMM_MB ? (int)(M - m0) : QMM_MB;
            const float *xm = x + m0 * K, *xsm = xsum + m0 * xss;
            const int np = mb == 1 && K >= QMM_PAIR_K ? qmm_pass_rows(type, xsm, K, a->w_stride) : 1;
            for (int64_t n = p0; n < p1; n++) {
                const uint8_t *row = a->w + n * a->w_stride;
                float r[QMM_MB];
                const int g = n + np <= p1 ? np : n + 2 <= p1 ? 2 : 1; /* fewer at the part's end */
                if (g > 1) {
                    qmm_dot_rows(type, row, a->w_stride, g, xm, xsm, K, r);
                    for (int i = 0; i < g; i++)
                        ((float *)mlxn_rows_ptr(&a->y, m0))[n + i] = r[i];
                    n += g - 1;
                    continue;
                }
                switch (mb) {
                case 1: qmm_dot(type, row, xm, xsm, K, 1, r); break;
                case 2: qmm_dot(type, row, xm, xsm, K, 2, r); break;
                case 3: qmm_dot(type, row, xm, xsm, K, 3, r); break;
                case 4: qmm_dot(type, row, xm, xsm, K, 4, r); break;
#if QMM_MB > 4
                case 5: qmm_dot(type, row, xm, xsm, K, 5, r); break;
                case 6: qmm_dot(type, row, xm, xsm, K, 6, r); break;
                case 7: qmm_dot(type, row, xm, xsm, K, 7, r); break;
                case 8: qmm_dot(type, row, xm, xsm, K, 8, r); break;
#endif
                default: break;
                }
                for (int m = 0; m < mb; m++)
                    ((float *)mlxn_rows_ptr(&a->y, m0 + m))[n] = r[m];
            }
        }
    }
}

/* r[i] = row n of MLX weights . x[i] for mb (1 .. QMM_DECODED_M - 1) rows of x (row stride K;
 * xsum: their unit sums, row stride xss): per group t = codes . x (one FMA a vector), then
 * acc += s t and the bias through the group's sum of x, so that a vector of weights costs a
 * widening, a conversion and an FMA a row. Two chains of t and acc a row (a unit's vectors
 * alternate) hide the FMA's latency. */
MLXN_ALWAYS_INLINE void mlx_dot(const mlxn_qmatmul_mlx_args *m, const int bits, int64_t n, const float *x,
                                const float *xsum, int64_t xss, const int mb, float *r)
{
    const uint8_t *row = m->w + n * m->w_stride;
    const uint8_t *sp = (const uint8_t *)m->scales + n * m->s_stride, *bp = (const uint8_t *)m->biases + n * m->b_stride;
    const int64_t K = m->K, upg = m->group_size / 32, gbytes = (int64_t)m->group_size * bits / 8;
    vf acc[QMM_DECODED_M - 1][2];
    float bias[QMM_DECODED_M - 1];
    for (int i = 0; i < mb; i++) {
        acc[i][0] = acc[i][1] = vf_zero();
        bias[i] = 0;
    }
    for (int64_t g = 0; g < K / m->group_size; g++) {
        qmm_prefetch(row + g * gbytes, (int)gbytes);
        vf t[QMM_DECODED_M - 1][2];
        for (int i = 0; i < mb; i++)
            t[i][0] = t[i][1] = vf_zero();
        for (int64_t u = g * upg; u < (g + 1) * upg; u++) {
            vf c[QMM_NV];
            mlx_unit(bits, row, u, c);
            for (int v = 0; v < QMM_NV; v++)
                for (int i = 0; i < mb; i++)
                    t[i][v & 1] = vf_fma(c[v], vf_load_f32(x + i * K + 32 * u + v * VL), t[i][v & 1]);
        }
        const vf s = vf_set1(mlx_scale(m->s_dtype, sp, g));
        const float b = mlx_scale(m->s_dtype, bp, g);
        for (int i = 0; i < mb; i++) {
            acc[i][0] = vf_fma(s, t[i][0], acc[i][0]);
            acc[i][1] = vf_fma(s, t[i][1], acc[i][1]);
            float xs = 0;
            for (int64_t u = g * upg; u < (g + 1) * upg; u++)
                xs += xsum[i * xss + u];
            bias[i] += b * xs;
        }
    }
    for (int i = 0; i < mb; i++)
        r[i] = vf_hsum(vf_add(acc[i][0], acc[i][1])) + bias[i];
}

/* Rows n0 .. n1 - 1 of MLX weights against the M rows of x: from QMM_DECODED_M rows, decoded rows
 * of W through the GGML formats' panel or block kernels; fewer (or without a buffer), at one row
 * 2- to 6-bit on VNNI in integers (mlx_rows_vnni), else mlx_dot. */
MLXN_ALWAYS_INLINE void mlx_rows(const mlxn_qmatmul_args *a, const mlxn_qmatmul_mlx_args *mlx, const int bits,
                                 const float *x, const float *xsum, int64_t xss, const float *xt, int64_t n0,
                                 int64_t n1)
{
    const int64_t K = a->K, M = a->M;
    if (qmm_rows_buffered(a, mlx, x, xt, n0, n1, -1)) /* -1: no GGML type */
        return;
#ifdef MLXN_SIMD_VNNI
    if (M == 1 && bits != 8 && xsum[mlxn_cpu_qmm_xdig(K)] == (float)MLXN_CPU_QMM_X_INT32_HALVES) {
        mlx_rows_vnni(a, mlx, xsum, n0, n1);
        return;
    }
#endif
    for (int64_t m0 = 0; m0 < M; m0 += QMM_DECODED_M - 1) {
        const int mb = M - m0 < QMM_DECODED_M - 1 ? (int)(M - m0) : QMM_DECODED_M - 1;
        for (int64_t n = n0; n < n1; n++) {
            float r[QMM_DECODED_M - 1];
            switch (mb) {
            case 1: mlx_dot(mlx, bits, n, x + m0 * K, xsum + m0 * xss, xss, 1, r); break;
            case 2: mlx_dot(mlx, bits, n, x + m0 * K, xsum + m0 * xss, xss, 2, r); break;
            default: mlx_dot(mlx, bits, n, x + m0 * K, xsum + m0 * xss, xss, 3, r); break;
            }
            for (int i = 0; i < mb; i++)
                ((float *)mlxn_rows_ptr(&a->y, m0 + i))[n] = r[i];
        }
    }
}

/* the MLX row kernel: one function for every width, whose inner loops are specialized */
static void MLXN_LEVEL_FN(qmatmul_mlx_rows)(const mlxn_qmatmul_args *a, const mlxn_qmatmul_mlx_args *mlx,
                                            const float *x, const float *xsum, int64_t xss, const float *xt,
                                            int64_t n0, int64_t n1)
{
    switch (mlx->bits) {
    case 2: mlx_rows(a, mlx, 2, x, xsum, xss, xt, n0, n1); break;
    case 3: mlx_rows(a, mlx, 3, x, xsum, xss, xt, n0, n1); break;
    case 4: mlx_rows(a, mlx, 4, x, xsum, xss, xt, n0, n1); break;
    case 5: mlx_rows(a, mlx, 5, x, xsum, xss, xt, n0, n1); break;
    case 6: mlx_rows(a, mlx, 6, x, xsum, xss, xt, n0, n1); break;
    default: mlx_rows(a, mlx, 8, x, xsum, xss, xt, n0, n1); break;
    }
}

#define QMM_ROWS_FN(tname, type)                                                                        \
    static void MLXN_LEVEL_FN(qmm_rows_##tname)(const mlxn_qmatmul_args *a, const float *x,              \
                                                const float *xsum, int64_t xss, const float *xt,        \
                                                int64_t n0, int64_t n1)                                 \
    {                                                                                                   \
        qmm_rows(a, x, xsum, xss, xt, n0, n1, type);                                                    \
    }
QMM_ROWS_FN(q4_0, MLXN_DTYPE_Q4_0)
QMM_ROWS_FN(q4_1, MLXN_DTYPE_Q4_1)
QMM_ROWS_FN(q5_0, MLXN_DTYPE_Q5_0)
QMM_ROWS_FN(q5_1, MLXN_DTYPE_Q5_1)
QMM_ROWS_FN(q8_0, MLXN_DTYPE_Q8_0)
QMM_ROWS_FN(iq4_nl, MLXN_DTYPE_IQ4_NL)
QMM_ROWS_FN(q2_K, MLXN_DTYPE_Q2_K)
QMM_ROWS_FN(q3_K, MLXN_DTYPE_Q3_K)
QMM_ROWS_FN(q4_K, MLXN_DTYPE_Q4_K)
QMM_ROWS_FN(q5_K, MLXN_DTYPE_Q5_K)
QMM_ROWS_FN(q6_K, MLXN_DTYPE_Q6_K)
QMM_ROWS_FN(iq4_xs, MLXN_DTYPE_IQ4_XS)
QMM_ROWS_FN(f32, MLXN_DTYPE_F32)
QMM_ROWS_FN(f16, MLXN_DTYPE_F16)
QMM_ROWS_FN(bf16, MLXN_DTYPE_BF16)
#undef QMM_ROWS_FN

/* The integer form of x that the row kernel for W's dtype reads at one row of x (cpu.h). */
static int MLXN_LEVEL_FN(qmatmul_x_form)(int w_dtype)
{
#if MLXN_SIMD_LEVEL == 1
    return w_dtype == MLXN_DTYPE_Q2_K || w_dtype == MLXN_DTYPE_Q3_K || w_dtype == MLXN_DTYPE_Q4_K || w_dtype == MLXN_DTYPE_Q6_K
               ? MLXN_CPU_QMM_X_INT256
               : MLXN_CPU_QMM_X_NONE;
#elif defined(MLXN_SIMD_VNNI)
    if (w_dtype == MLXN_DTYPE_MLX_Q2 || w_dtype == MLXN_DTYPE_MLX_Q3 || w_dtype == MLXN_DTYPE_MLX_Q4 ||
        w_dtype == MLXN_DTYPE_MLX_Q5 || w_dtype == MLXN_DTYPE_MLX_Q6) /* mlx_rows_vnni */
        return MLXN_VNNI_PRESENT ? MLXN_CPU_QMM_X_INT32_HALVES : MLXN_CPU_QMM_X_NONE;
    return !qmm_vnni(w_dtype) || !MLXN_VNNI_PRESENT ? MLXN_CPU_QMM_X_NONE : qmm_vnni_form(w_dtype);
#else
    (void)w_dtype;
    return MLXN_CPU_QMM_X_NONE;
#endif
}

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
    case MLXN_DTYPE_Q2_K: return MLXN_LEVEL_FN(qmm_rows_q2_K);
    case MLXN_DTYPE_Q3_K: return MLXN_LEVEL_FN(qmm_rows_q3_K);
    case MLXN_DTYPE_Q4_K: return MLXN_LEVEL_FN(qmm_rows_q4_K);
    case MLXN_DTYPE_Q5_K: return MLXN_LEVEL_FN(qmm_rows_q5_K);
    case MLXN_DTYPE_Q6_K: return MLXN_LEVEL_FN(qmm_rows_q6_K);
    case MLXN_DTYPE_IQ4_XS: return MLXN_LEVEL_FN(qmm_rows_iq4_xs);
    case MLXN_DTYPE_F32: return MLXN_LEVEL_FN(qmm_rows_f32);
    case MLXN_DTYPE_F16: return MLXN_LEVEL_FN(qmm_rows_f16);
    case MLXN_DTYPE_BF16: return MLXN_LEVEL_FN(qmm_rows_bf16);
    default: return NULL;
    }
}
