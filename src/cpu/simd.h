/* Vectors of f32 lanes for the CPU kernels, in one of three widths chosen by the file that
 * includes this header (each level is a separate translation unit built with its own -m
 * flags, and picked at run time from cpuid):
 *   MLXN_SIMD_LEVEL 0: portable C, one lane
 *   MLXN_SIMD_LEVEL 1: AVX2 + FMA + F16C, 8 lanes
 *   MLXN_SIMD_LEVEL 2: AVX-512 F/BW/VL, 16 lanes (MLXN_SIMD_AVX512_BF16: with the bf16
 *                      conversion instruction; MLXN_SIMD_VNNI: with the int8 dot products,
 *                      which MLXN_SIMD_VNNI_RUNTIME builds by target attribute and uses only
 *                      where the processor has them)
 * Loads and stores convert from and to f32 / f16 / bf16 memory (round to nearest even, NaN
 * kept). Unaligned addresses are fine. */
#ifndef MLXN_SIMD_H
#define MLXN_SIMD_H

#include <math.h>
#include <stdint.h>

#include "../core/half.h"
#include "mlxn.h"

#define MLXN_ALWAYS_INLINE static inline __attribute__((always_inline))

/* The VNNI kernels: code between MLXN_VNNI_BEGIN and MLXN_VNNI_END may use the int8 dot
 * products; it is entered through MLXN_VNNI_ENTRY functions, and only where MLXN_VNNI_PRESENT.
 * The avx512-bf16 level is built with VNNI (every processor with AVX512_BF16 has it); the avx512
 * level (MLXN_SIMD_VNNI_RUNTIME) builds that code for VNNI by target attribute, its entry
 * functions not inlined into the level's code, and asks the processor at run time, so that
 * AVX-512 processors with VNNI but no BF16 (Cascade Lake, Ice Lake) take the integer decode. */
#ifdef MLXN_SIMD_VNNI_RUNTIME
#ifdef __clang__
#define MLXN_VNNI_BEGIN _Pragma("clang attribute push(__attribute__((target(\"avx512vnni\"))), apply_to = function)")
#define MLXN_VNNI_END _Pragma("clang attribute pop")
#else
#define MLXN_VNNI_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx512vnni\")")
#define MLXN_VNNI_END _Pragma("GCC pop_options")
#endif
#define MLXN_VNNI_ENTRY static __attribute__((noinline))
#define MLXN_VNNI_PRESENT __builtin_cpu_supports("avx512vnni")
#else
#define MLXN_VNNI_BEGIN
#define MLXN_VNNI_END
#define MLXN_VNNI_ENTRY MLXN_ALWAYS_INLINE
#define MLXN_VNNI_PRESENT 1
#endif

#ifndef MLXN_SIMD_LEVEL
#error "define MLXN_SIMD_LEVEL before including simd.h"
#endif

#if MLXN_SIMD_LEVEL == 2
#include <immintrin.h>
typedef __m512 vf;
#define VL 16
MLXN_ALWAYS_INLINE vf vf_zero(void) { return _mm512_setzero_ps(); }
MLXN_ALWAYS_INLINE vf vf_set1(float a) { return _mm512_set1_ps(a); }
MLXN_ALWAYS_INLINE vf vf_add(vf a, vf b) { return _mm512_add_ps(a, b); }
MLXN_ALWAYS_INLINE vf vf_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
MLXN_ALWAYS_INLINE vf vf_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
MLXN_ALWAYS_INLINE float vf_hsum(vf a) { return _mm512_reduce_add_ps(a); }
MLXN_ALWAYS_INLINE vf vf_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
MLXN_ALWAYS_INLINE vf vf_div(vf a, vf b) { return _mm512_div_ps(a, b); }
MLXN_ALWAYS_INLINE vf vf_abs(vf a) { return _mm512_abs_ps(a); }
/* a where x > 0, else b (NaN x: b) */
MLXN_ALWAYS_INLINE vf vf_select_pos(vf x, vf a, vf b)
{
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ), b, a);
}
/* the larger lane of a and b; b where either is NaN */
MLXN_ALWAYS_INLINE vf vf_max(vf a, vf b) { return _mm512_max_ps(a, b); }
MLXN_ALWAYS_INLINE vf vf_min(vf a, vf b) { return _mm512_min_ps(a, b); }
MLXN_ALWAYS_INLINE float vf_hmax(vf a) { return _mm512_reduce_max_ps(a); }
MLXN_ALWAYS_INLINE vf vf_round_int(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
/* p 2^n for integral n: scalef rounds into subnormals and overflows to infinity itself */
MLXN_ALWAYS_INLINE vf vf_ldexp(vf p, vf n) { return _mm512_scalef_ps(p, n); }
MLXN_ALWAYS_INLINE vf vf_load_f32(const float *p) { return _mm512_loadu_ps(p); }
MLXN_ALWAYS_INLINE void vf_store_f32(float *p, vf v) { _mm512_storeu_ps(p, v); }
MLXN_ALWAYS_INLINE vf vf_load_f16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
MLXN_ALWAYS_INLINE void vf_store_f16(uint16_t *p, vf v)
{
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
/* Non-temporal stores of packed vectors; addresses aligned to the vector's bytes. */
MLXN_ALWAYS_INLINE void vf_stream_f32(float *p, vf v) { _mm512_stream_ps(p, v); }
MLXN_ALWAYS_INLINE void vf_stream_16(uint16_t *p, __m256i v) { _mm256_stream_si256((__m256i *)p, v); }
MLXN_ALWAYS_INLINE __m256i vf_pack_f16(vf v) { return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
MLXN_ALWAYS_INLINE vf vf_load_bf16(const uint16_t *p)
{
    __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}
MLXN_ALWAYS_INLINE vf vf_unpack_f16(__m256i h) { return _mm512_cvtph_ps(h); }
MLXN_ALWAYS_INLINE vf vf_unpack_bf16(__m256i h)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
#ifdef MLXN_SIMD_AVX512_BF16
/* AVX512-BF16: one instruction, round to nearest even, NaN kept (subnormals flush to 0). */
MLXN_ALWAYS_INLINE __m256i vf_pack_bf16(vf v)
{
    return (__m256i)_mm512_cvtneps_pbh(v);
}
#else
MLXN_ALWAYS_INLINE __m256i vf_pack_bf16(vf v)
{
    __m512i u = _mm512_castps_si512(v);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd), 16);
    __m512i q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), q);
    return _mm512_cvtepi32_epi16(r);
}
#endif
MLXN_ALWAYS_INLINE void vf_store_bf16(uint16_t *p, vf v)
{
    _mm256_storeu_si256((__m256i *)p, vf_pack_bf16(v));
}

#elif MLXN_SIMD_LEVEL == 1
#include <immintrin.h>
typedef __m256 vf;
#define VL 8
MLXN_ALWAYS_INLINE vf vf_zero(void) { return _mm256_setzero_ps(); }
MLXN_ALWAYS_INLINE vf vf_set1(float a) { return _mm256_set1_ps(a); }
MLXN_ALWAYS_INLINE vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
MLXN_ALWAYS_INLINE vf vf_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
MLXN_ALWAYS_INLINE vf vf_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
MLXN_ALWAYS_INLINE float vf_hsum(vf a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
MLXN_ALWAYS_INLINE vf vf_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
MLXN_ALWAYS_INLINE vf vf_div(vf a, vf b) { return _mm256_div_ps(a, b); }
MLXN_ALWAYS_INLINE vf vf_abs(vf a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
MLXN_ALWAYS_INLINE vf vf_select_pos(vf x, vf a, vf b)
{
    return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ));
}
MLXN_ALWAYS_INLINE vf vf_max(vf a, vf b) { return _mm256_max_ps(a, b); }
MLXN_ALWAYS_INLINE vf vf_min(vf a, vf b) { return _mm256_min_ps(a, b); }
MLXN_ALWAYS_INLINE float vf_hmax(vf a)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
MLXN_ALWAYS_INLINE vf vf_round_int(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
/* p 2^n for integral n in [-150, 128], as two exact powers of two (n / 2 and the rest), so
 * that results round into subnormals and overflow to infinity as one multiply would */
MLXN_ALWAYS_INLINE vf vf_ldexp(vf p, vf n)
{
    const __m256i k = _mm256_cvtps_epi32(n), k1 = _mm256_srai_epi32(k, 1), k2 = _mm256_sub_epi32(k, k1);
    const __m256i bias = _mm256_set1_epi32(127);
    const vf s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
    const vf s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}
MLXN_ALWAYS_INLINE vf vf_load_f32(const float *p) { return _mm256_loadu_ps(p); }
MLXN_ALWAYS_INLINE void vf_store_f32(float *p, vf v) { _mm256_storeu_ps(p, v); }
MLXN_ALWAYS_INLINE vf vf_load_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
MLXN_ALWAYS_INLINE void vf_store_f16(uint16_t *p, vf v)
{
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
MLXN_ALWAYS_INLINE void vf_stream_f32(float *p, vf v) { _mm256_stream_ps(p, v); }
MLXN_ALWAYS_INLINE void vf_stream_16(uint16_t *p, __m128i v) { _mm_stream_si128((__m128i *)p, v); }
MLXN_ALWAYS_INLINE __m128i vf_pack_f16(vf v) { return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
MLXN_ALWAYS_INLINE vf vf_load_bf16(const uint16_t *p)
{
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}
MLXN_ALWAYS_INLINE vf vf_unpack_f16(__m128i h) { return _mm256_cvtph_ps(h); }
MLXN_ALWAYS_INLINE vf vf_unpack_bf16(__m128i h)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
MLXN_ALWAYS_INLINE __m128i vf_pack_bf16(vf v)
{
    __m256i u = _mm256_castps_si256(v);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd), 16);
    __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, q, nan);
    /* packus works within 128-bit lanes: gather lanes 0 and 2 to put the 8 halves in order */
    __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    return _mm256_castsi256_si128(packed);
}
MLXN_ALWAYS_INLINE void vf_store_bf16(uint16_t *p, vf v)
{
    _mm_storeu_si128((__m128i *)p, vf_pack_bf16(v));
}

#else
typedef float vf;
#define VL 1
MLXN_ALWAYS_INLINE vf vf_zero(void) { return 0.0f; }
MLXN_ALWAYS_INLINE vf vf_set1(float a) { return a; }
MLXN_ALWAYS_INLINE vf vf_add(vf a, vf b) { return a + b; }
MLXN_ALWAYS_INLINE vf vf_mul(vf a, vf b) { return a * b; }
MLXN_ALWAYS_INLINE vf vf_fma(vf a, vf b, vf c) { return a * b + c; }
MLXN_ALWAYS_INLINE float vf_hsum(vf a) { return a; }
MLXN_ALWAYS_INLINE vf vf_sub(vf a, vf b) { return a - b; }
MLXN_ALWAYS_INLINE vf vf_div(vf a, vf b) { return a / b; }
MLXN_ALWAYS_INLINE vf vf_abs(vf a) { return fabsf(a); }
MLXN_ALWAYS_INLINE vf vf_select_pos(vf x, vf a, vf b) { return x > 0.0f ? a : b; }
MLXN_ALWAYS_INLINE vf vf_max(vf a, vf b) { return a > b ? a : b; }
MLXN_ALWAYS_INLINE vf vf_min(vf a, vf b) { return a < b ? a : b; }
MLXN_ALWAYS_INLINE float vf_hmax(vf a) { return a; }
MLXN_ALWAYS_INLINE vf vf_load_f32(const float *p) { return *p; }
MLXN_ALWAYS_INLINE void vf_store_f32(float *p, vf v) { *p = v; }
MLXN_ALWAYS_INLINE vf vf_load_f16(const uint16_t *p) { return mlxn_f16_to_f32(*p); }
MLXN_ALWAYS_INLINE void vf_store_f16(uint16_t *p, vf v) { *p = mlxn_f32_to_f16(v); }
MLXN_ALWAYS_INLINE vf vf_load_bf16(const uint16_t *p) { return mlxn_bf16_to_f32(*p); }
MLXN_ALWAYS_INLINE void vf_store_bf16(uint16_t *p, vf v) { *p = mlxn_f32_to_bf16(v); }
#endif

/* e^x, within 1 ulp (0.94 over every float of [-110, 90] on AVX2, subnormal results
 * included); NaN stays NaN, x < -104 gives 0 (the portable level: libm's expf).
 * Cody-Waite: x = n ln 2 + r, |r| <= ln 2 / 2 (ln 2 in two parts, n ln2_hi exact), e^r by its
 * Taylor series to r^7 / 7! (truncation 5e-9 relative), times 2^n. */
MLXN_ALWAYS_INLINE vf vf_exp(vf x)
{
#if MLXN_SIMD_LEVEL == 0
    return expf(x);
#else
    /* clamped with x second, so a NaN x passes through (max / min return it) */
    const vf t = vf_min(vf_set1(88.8f), vf_max(vf_set1(-104.0f), x));
    const vf n = vf_round_int(vf_mul(t, vf_set1(1.44269504088896341f)));
    vf r = vf_fma(n, vf_set1(-0.693145751953125f), t);
    r = vf_fma(n, vf_set1(-1.428606765330187e-06f), r);
    vf p = vf_set1(1.0f / 5040);
    p = vf_fma(p, r, vf_set1(1.0f / 720));
    p = vf_fma(p, r, vf_set1(1.0f / 120));
    p = vf_fma(p, r, vf_set1(1.0f / 24));
    p = vf_fma(p, r, vf_set1(1.0f / 6));
    p = vf_fma(p, r, vf_set1(0.5f));
    p = vf_fma(p, r, vf_set1(1.0f));
    p = vf_fma(p, r, vf_set1(1.0f));
    return vf_ldexp(p, n);
#endif
}

/* Element i of an f32/f16/bf16 array; dt is a compile-time constant after inlining. */
MLXN_ALWAYS_INLINE vf vf_load(int dt, const void *p, int64_t i)
{
    if (dt == MLXN_DTYPE_F16)
        return vf_load_f16((const uint16_t *)p + i);
    if (dt == MLXN_DTYPE_BF16)
        return vf_load_bf16((const uint16_t *)p + i);
    return vf_load_f32((const float *)p + i);
}

MLXN_ALWAYS_INLINE void vf_store(int dt, void *p, int64_t i, vf v)
{
    if (dt == MLXN_DTYPE_F16)
        vf_store_f16((uint16_t *)p + i, v);
    else if (dt == MLXN_DTYPE_BF16)
        vf_store_bf16((uint16_t *)p + i, v);
    else
        vf_store_f32((float *)p + i, v);
}

/* Non-temporal store of one vector: bypasses the caches, so large outputs cost no read for
 * ownership. p + i must be aligned to VL elements of dt. Callers end with mlxn_stream_fence(). */
MLXN_ALWAYS_INLINE void vf_stream(int dt, void *p, int64_t i, vf v)
{
#if MLXN_SIMD_LEVEL == 0
    vf_store(dt, p, i, v);
#else
    if (dt == MLXN_DTYPE_F16)
        vf_stream_16((uint16_t *)p + i, vf_pack_f16(v));
    else if (dt == MLXN_DTYPE_BF16)
        vf_stream_16((uint16_t *)p + i, vf_pack_bf16(v));
    else
        vf_stream_f32((float *)p + i, v);
#endif
}

MLXN_ALWAYS_INLINE float sc_round(int dt, float v)
{
    if (dt == MLXN_DTYPE_F16)
        return mlxn_f16_to_f32(mlxn_f32_to_f16(v));
    if (dt == MLXN_DTYPE_BF16)
        return mlxn_bf16_to_f32(mlxn_f32_to_bf16(v));
    return v;
}

/* v rounded to dt (as stored), back in f32. */
MLXN_ALWAYS_INLINE vf vf_round(int dt, vf v)
{
#if MLXN_SIMD_LEVEL == 0
    return sc_round(dt, v);
#else
    if (dt == MLXN_DTYPE_F16)
        return vf_unpack_f16(vf_pack_f16(v));
    if (dt == MLXN_DTYPE_BF16)
        return vf_unpack_bf16(vf_pack_bf16(v));
    return v;
#endif
}

MLXN_ALWAYS_INLINE void mlxn_stream_fence(void)
{
#if MLXN_SIMD_LEVEL > 0
    _mm_sfence();
#endif
}

/* Elements from p + i to the next address aligned for vf_stream (at most VL - 1). */
MLXN_ALWAYS_INLINE int64_t vf_stream_head(int dt, const void *p, int64_t i)
{
    size_t es = dt == MLXN_DTYPE_F32 ? 4 : 2;
    size_t align = VL * es;
    uintptr_t a = (uintptr_t)((const char *)p + (size_t)i * es);
    if (a % es)
        return -1; /* not even element-aligned: no streaming */
    return (int64_t)(((align - a % align) % align) / es);
}

MLXN_ALWAYS_INLINE float sc_load(int dt, const void *p, int64_t i)
{
    if (dt == MLXN_DTYPE_F16)
        return mlxn_f16_to_f32(((const uint16_t *)p)[i]);
    if (dt == MLXN_DTYPE_BF16)
        return mlxn_bf16_to_f32(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

MLXN_ALWAYS_INLINE void sc_store(int dt, void *p, int64_t i, float v)
{
    if (dt == MLXN_DTYPE_F16)
        ((uint16_t *)p)[i] = mlxn_f32_to_f16(v);
    else if (dt == MLXN_DTYPE_BF16)
        ((uint16_t *)p)[i] = mlxn_f32_to_bf16(v);
    else
        ((float *)p)[i] = v;
}

/* Squares are summed in f32 over blocks of this many elements and the block sums in f64, so
 * rows of hundreds of thousands keep f32 accuracy. */
#define VF_SQUARES_BLOCK 1024

/* 1 / sqrt(mean(p[0..n)^2) + eps) of a row of dtype dt (the RMS norm family, and the per-head
 * norm of rope). */
MLXN_ALWAYS_INLINE float vf_inv_rms(const int dt, const void *p, int64_t n, float eps)
{
    double total = 0;
    for (int64_t b = 0; b < n; b += VF_SQUARES_BLOCK) {
        const int64_t e = b + VF_SQUARES_BLOCK < n ? b + VF_SQUARES_BLOCK : n;
        vf acc0 = vf_zero(), acc1 = vf_zero();
        int64_t i = b;
        float tail = 0;
        for (; i + 2 * VL <= e; i += 2 * VL) {
            const vf v0 = vf_load(dt, p, i), v1 = vf_load(dt, p, i + VL);
            acc0 = vf_fma(v0, v0, acc0);
            acc1 = vf_fma(v1, v1, acc1);
        }
        for (; i + VL <= e; i += VL) {
            const vf v = vf_load(dt, p, i);
            acc0 = vf_fma(v, v, acc0);
        }
        for (; i < e; i++) {
            const float v = sc_load(dt, p, i);
            tail += v * v;
        }
        total += (double)(vf_hsum(vf_add(acc0, acc1)) + tail);
    }
    return (float)(1.0 / sqrt(total / (double)n + (double)eps));
}

#endif
