// Integer dot products of one 32-element piece of a GGML or MLX row of W (bytes in shared
// memory) with x's piece as 22-bit integers split into byte planes (xint), four codes a dp4a:
// the decode mat-vecs' inner step (qmatmul_stream.cu's streamed decode, qmatmul_id.cu's staged
// MoE decode). `ring` is the shared array the bytes lie in, `off` their offset from it.
// bench/NOTES.md ("qmatmul decode, streamed") has the precision budget.
#ifndef MLXN_CUDA_PIECE_DOT_CUH
#define MLXN_CUDA_PIECE_DOT_CUH

#include <stdint.h>

#include "common.cuh"
#include "ggml_unit.cuh"

namespace mlxn_cuda {

// BE / BB: elements / bytes per block (MLX: 32 codes of a row); PE: elements per piece (32),
// 0 for the formats piece_dot does not take
template <int WT> struct piece_fmt {
    // MLX's bit width (0: a GGML format); the MLX dtypes run Q2, Q3, Q4, Q5, Q6, then Q8
    static_assert(MLXN_DTYPE_MLX_Q6 - MLXN_DTYPE_MLX_Q2 == 4, "MLX dtypes in order of their widths");
    static constexpr int MLX_BITS = WT >= MLXN_DTYPE_MLX_Q2 && WT <= MLXN_DTYPE_MLX_Q6 ? 2 + (WT - MLXN_DTYPE_MLX_Q2)
                                    : WT == MLXN_DTYPE_MLX_Q8                          ? 8
                                                                                       : 0;
    static constexpr bool MLX = MLX_BITS > 0;
    static constexpr int BE = MLX ? 32 : block_elems_of<WT>();
    static constexpr int BB = MLX ? 4 * MLX_BITS : block_bytes_of<WT>();
    static constexpr int PE = WT == MLXN_DTYPE_Q4_0 || WT == MLXN_DTYPE_Q4_1 || WT == MLXN_DTYPE_Q5_0 ||
                                      WT == MLXN_DTYPE_Q5_1 || WT == MLXN_DTYPE_Q8_0 || WT == MLXN_DTYPE_Q2_K ||
                                      WT == MLXN_DTYPE_Q3_K || WT == MLXN_DTYPE_Q4_K || WT == MLXN_DTYPE_Q5_K ||
                                      WT == MLXN_DTYPE_Q6_K || WT == MLXN_DTYPE_IQ4_NL || WT == MLXN_DTYPE_IQ4_XS ||
                                      MLX
                                  ? 32
                                  : 0;
};

// N words of the bit stream at ring from bit 8 off + b on (-31 <= b < 32; b = 0: the bytes at
// ring + off), each two aligned words funnel-shifted: a field's shift and a block's misalignment
// in one instruction. With FIRST (the stream may begin at ring's first word), bits from before it
// come from that word instead, for callers that mask them off. The shift depends on off's low bits
// only, which the streamed kernel's offsets keep per thread. Offsets from the shared array itself
// keep the loads shared-memory loads (through a generic pointer they become slower generic ones).
template <int N, bool FIRST = false>
__device__ __forceinline__ void smem_bits(const uint8_t *ring, uint32_t off, int b, uint32_t (&w)[N])
{
    const uint32_t *q = reinterpret_cast<const uint32_t *>(ring);
    const int t = 8 * (int)(off & 3u) + b;
    const int i = (int)(off >> 2) + (t >> 5); // the word that holds the first bit
    const uint32_t sh = (uint32_t)t & 31u;
    uint32_t r[N + 1];
    r[0] = q[FIRST && i < 0 ? 0 : i];
#pragma unroll
    for (int k = 1; k <= N; k++)
        r[k] = q[i + k];
#pragma unroll
    for (int k = 0; k < N; k++)
        w[k] = __funnelshift_r(r[k], r[k + 1], sh);
}

__device__ __forceinline__ float half_at(const uint8_t *ring, uint32_t off)
{
    return __half2float(*reinterpret_cast<const __half *>(ring + off));
}

// MLX's scale or bias at ring + off, f16 or bf16
__device__ __forceinline__ float scale_at(const uint8_t *ring, uint32_t off, bool bf16)
{
    return bf16 ? __bfloat162float(*reinterpret_cast<const __nv_bfloat16 *>(ring + off)) : half_at(ring, off);
}

// The f16 in the low (i = 0) or high half of a word (a block's d and m, or d and dmin)
__device__ __forceinline__ float half_in(uint32_t w, int i)
{
    return __half2float(__ushort_as_half((unsigned short)(w >> (16 * i))));
}

// Byte offset of piece p's block in a row of W.
template <int WT> __host__ __device__ constexpr uint32_t piece_offset(int p)
{
    return (uint32_t)piece_fmt<WT>::BB * (uint32_t)(piece_fmt<WT>::BE == 256 ? p >> 3 : p);
}

// x as integers: a piece's 32 elements as 22-bit integers q (its own power of two 2^s, from its
// largest element: |q| <= 2^22, 2^22 only where rounding reaches it), split into a signed high
// byte and two unsigned bytes, q = 2^16 h + 2^8 m + l, four elements a word. A word of four
// codes (bytes) takes three dp4a, exact integer sums H, M, L, and a piece's sum is
// 2^16 H + (2^8 M + L) times pf = 2^-s: 22 bits of each 32-element block's largest element (the
// harness's bound is 1e-5 of sum |x w|).
// pf multiplies last: for |x| below ~2^-106 it is subnormal, and a block scale times it loses bits
// where the total (around 2^21 times the scale) times it does not.
struct xint {
    uint32_t h[8], m[8], l[8];
    float pf, sum[2]; // 2^-s, and the sums of the q of elements 0-15 and 16-31 (for offsets)
};

// Byte b of x's word k is element 4k + b of the piece, or for IQ4 the order its byte permutes
// produce (iq4_dot), or for MLX's codes other than 8-bit the order in which they come out of the
// code words (mlx_codes).
template <int WT> __host__ __device__ constexpr int xint_elem(int k, int b)
{
    return WT == MLXN_DTYPE_IQ4_NL || WT == MLXN_DTYPE_IQ4_XS     ? 4 * (k >> 1) + 2 * (k & 1) + (b >> 1) + 16 * (b & 1)
           : WT == MLXN_DTYPE_MLX_Q4                              ? 8 * (k >> 1) + 2 * b + (k & 1)
           : WT == MLXN_DTYPE_MLX_Q2 || WT == MLXN_DTYPE_MLX_Q6 ? 16 * (k >> 2) + 4 * b + (k & 3)
           : WT == MLXN_DTYPE_MLX_Q3 || WT == MLXN_DTYPE_MLX_Q5 ? 8 * b + k
                                                                  : 4 * k + b;
}

__device__ __forceinline__ float fmax_nan(float a, float b)
{
    float r;
    asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}

template <int WT> __device__ __forceinline__ xint make_xint(const float (&x)[32])
{
    // the largest |x| (max.NaN keeps a NaN, whose bits are above Inf's)
    float mx[16];
#pragma unroll
    for (int j = 0; j < 16; j++)
        mx[j] = fmax_nan(fabsf(x[j]), fabsf(x[j + 16]));
#pragma unroll
    for (int j = 0; j < 8; j++)
        mx[j] = fmax_nan(mx[j], mx[j + 8]);
#pragma unroll
    for (int j = 0; j < 4; j++)
        mx[j] = fmax_nan(mx[j], mx[j + 4]);
    mx[0] = fmax_nan(fmax_nan(mx[0], mx[2]), fmax_nan(mx[1], mx[3]));
    const int big = __float_as_int(mx[0]);
    const int s = 21 - ((big >> 23) - 127); // largest < 2^(e + 1), times 2^s: < 2^22
    // q = x 2^s rounded to nearest even by one FFMA: x 2^s + 1.5 2^23 has ulp 1, and its bits less
    // those of 1.5 2^23 are q (|q| <= 2^22). 2^s is a float for s <= 127; below that (|x| < 2^-106)
    // x is scaled by 2^(s - 127) first, exactly.
    int q[32];
    const float f = pow2f(s <= 127 ? s : 127);
    if (s <= 127) {
#pragma unroll
        for (int j = 0; j < 32; j++)
            q[j] = __float_as_int(fmaf(x[j], f, 12582912.f)) - 0x4B400000;
    } else {
        const float g = pow2f(s - 127);
#pragma unroll
        for (int j = 0; j < 32; j++)
            q[j] = __float_as_int(fmaf(x[j] * g, f, 12582912.f)) - 0x4B400000;
    }
    // the three byte planes, four elements a word in xint_elem's order, by byte permutes
    xint r;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const int a = q[xint_elem<WT>(k, 0)], b = q[xint_elem<WT>(k, 1)];
        const int c = q[xint_elem<WT>(k, 2)], d = q[xint_elem<WT>(k, 3)];
        const uint32_t lm01 = __byte_perm(a, b, 0x5140), lm23 = __byte_perm(c, d, 0x5140); // bytes 0, 1 of each
        r.l[k] = __byte_perm(lm01, lm23, 0x5410);
        r.m[k] = __byte_perm(lm01, lm23, 0x7632);
        r.h[k] = __byte_perm(__byte_perm(a, b, 0x0062), __byte_perm(c, d, 0x0062), 0x5410);
    }
    int sum[2] = {0, 0};
#pragma unroll
    for (int j = 0; j < 32; j++)
        sum[j >> 4] += q[j];
    // x has no integer form for Inf or NaN: pf NaN makes every product of the piece NaN, as the
    // float products would be (Inf times a zero weight is NaN too)
    r.pf = big < 0x7F800000 ? scale2(1.f, -s) : __int_as_float(0x7FC00000);
    r.sum[0] = (float)sum[0];
    r.sum[1] = (float)sum[1];
    return r;
}

// c + the dot of a's and b's four bytes, each signed (S) or unsigned
template <bool SA, bool SB> __device__ __forceinline__ int dp4a(uint32_t a, uint32_t b, int c)
{
    int d;
    if constexpr (SA && SB)
        asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    else if constexpr (SA)
        asm("dp4a.s32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    else if constexpr (SB)
        asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    else
        asm("dp4a.u32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

// Adds codes word c (signed bytes or not) times x's word k to the three sums.
template <bool SC> __device__ __forceinline__ void xint_dot(uint32_t c, const xint &x, int k, int (&a)[3])
{
    a[0] = dp4a<SC, true>(c, x.h[k], a[0]);
    a[1] = dp4a<SC, false>(c, x.m[k], a[1]);
    a[2] = dp4a<SC, false>(c, x.l[k], a[2]);
}

__device__ __forceinline__ float xint_total(const int (&a)[3])
{
    return fmaf((float)a[0], 65536.f, (float)(a[1] * 256 + a[2]));
}

// Bytes as codes: Q5_0 / Q5_1 / Q5_K's low nibbles (bits 0-3 of u's bytes) and fifth bits (bit 4
// of h's bytes; the other bits of h may hold anything).
__device__ __forceinline__ uint32_t q5_bytes(uint32_t u, uint32_t h)
{
    return (u & 0x0F0F0F0Fu) | (h & 0x10101010u);
}

// Bits 4n..4n+3 of a Q5_0 / Q5_1 block's high-bit word at bit 4 of bytes 0..3 (for q5_bytes):
// the multiply places bit k of the nibble at bit 8k + 4, its other terms land in other bits,
// without carries.
__device__ __forceinline__ uint32_t q5_high_nibble(uint32_t qh, int n)
{
    return (qh >> (4 * n) & 0xFu) * 0x02040810u;
}

// PTX's prmt: __byte_perm's selectors are its 3-bit byte indices, which costs a mask a call;
// prmt's bit 3 of a selector instead replicates the sign of the byte it picks
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel)
{
    uint32_t r;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
    return r;
}

// IQ4_NL / IQ4_XS: the code-book values (int8) of the eight nibbles of w, four a word in nibble
// order (v0: nibbles 0-3, v1: 4-7). A permute looks the nibbles up in the lower half of the book
// (nibbles 8-15 pick a sign there), one in the upper half (selectors' bit 3 flipped), and a third
// picks per byte by the nibble's bit 3; the bytes of the wrong half are never picked.
__device__ __forceinline__ void iq4_lookup(uint32_t w, uint32_t &v0, uint32_t &v1)
{
    constexpr uint64_t lo = MLXN_IQ4_VALUES_LO, hi = MLXN_IQ4_VALUES_HI;
    // the book's low words through a 0 that ptxas cannot fold (threadIdx.x < 1024), so that they stay in
    // registers: as constants, ptxas moved them from uniform registers before every permute
    const uint32_t z = threadIdx.x >> 10;
    const uint32_t lo0 = (uint32_t)lo ^ z, hi0 = (uint32_t)hi ^ z;
    const uint32_t wx = w ^ 0x88888888u, pick = (w >> 1 & 0x44444444u) | 0x32103210u;
    v0 = prmt(prmt(lo0, (uint32_t)(lo >> 32), w), prmt(hi0, (uint32_t)(hi >> 32), wx), pick);
    v1 = prmt(prmt(lo0, (uint32_t)(lo >> 32), w >> 16), prmt(hi0, (uint32_t)(hi >> 32), wx >> 16),
              pick >> 16);
}

// Piece p, whose block starts at ring + off, times x.
template <int WT> __device__ __forceinline__ float piece_dot(const uint8_t *ring, uint32_t off, int p, const xint &x);

// Q4_0 / Q4_1 / Q8_0 / Q5_0 / Q5_1 / IQ4_NL: a piece is a block; code byte j of the 4-bit
// formats holds elements j (low nibble) and j + 16 (high), Q5's fifth bits are bits j and j + 16
// of qh.
template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q8_0>(const uint8_t *ring, uint32_t off, int, const xint &x)
{
    uint32_t w[8];
    smem_bits<8>(ring, off + 2, 0, w);
    int a[3] = {0, 0, 0};
#pragma unroll
    for (int i = 0; i < 8; i++)
        xint_dot<true>(w[i], x, i, a);
    return half_at(ring, off) * xint_total(a) * x.pf;
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q4_0>(const uint8_t *ring, uint32_t off, int, const xint &x)
{
    uint32_t w[4];
    smem_bits<4>(ring, off + 2, 0, w);
    int a[3] = {0, 0, 0};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        xint_dot<false>(w[i] & 0x0F0F0F0Fu, x, i, a);
        xint_dot<false>(w[i] >> 4 & 0x0F0F0F0Fu, x, 4 + i, a);
    }
    return half_at(ring, off) * (xint_total(a) - 8.f * (x.sum[0] + x.sum[1])) * x.pf;
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q4_1>(const uint8_t *ring, uint32_t off, int, const xint &x)
{
    const uint32_t *q = reinterpret_cast<const uint32_t *>(ring) + (off >> 2); // aligned: d, m, the codes
    int a[3] = {0, 0, 0};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        xint_dot<false>(q[1 + i] & 0x0F0F0F0Fu, x, i, a);
        xint_dot<false>(q[1 + i] >> 4 & 0x0F0F0F0Fu, x, 4 + i, a);
    }
    const uint32_t dm = q[0];
    const float d = half_in(dm, 0);
    const float m = half_in(dm, 1);
    return x.pf * (d * xint_total(a) + m * (x.sum[0] + x.sum[1]));
}

// Q5_0 / Q5_1: the 5-bit codes of word i's bytes as bytes (elements 4i.., then 16 + 4i..)
__device__ __forceinline__ void q5_dot(uint32_t qh, const uint32_t *w, const xint &x, int (&a)[3])
{
#pragma unroll
    for (int i = 0; i < 4; i++) {
        xint_dot<false>(q5_bytes(w[i], q5_high_nibble(qh, i)), x, i, a);
        xint_dot<false>(q5_bytes(w[i] >> 4, q5_high_nibble(qh, 4 + i)), x, 4 + i, a);
    }
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q5_0>(const uint8_t *ring, uint32_t off, int, const xint &x)
{
    uint32_t w[5]; // qh, then the code bytes
    smem_bits<5>(ring, off + 2, 0, w);
    int a[3] = {0, 0, 0};
    q5_dot(w[0], w + 1, x, a);
    return half_at(ring, off) * (xint_total(a) - 16.f * (x.sum[0] + x.sum[1])) * x.pf;
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q5_1>(const uint8_t *ring, uint32_t off, int, const xint &x)
{
    const uint32_t *q = reinterpret_cast<const uint32_t *>(ring) + (off >> 2); // aligned: d, m, qh, the codes
    const uint32_t w[4] = {q[2], q[3], q[4], q[5]}, dm = q[0];
    int a[3] = {0, 0, 0};
    q5_dot(q[1], w, x, a);
    const float d = half_in(dm, 0);
    const float m = half_in(dm, 1);
    return x.pf * (d * xint_total(a) + m * (x.sum[0] + x.sum[1]));
}

// Q2_K / Q3_K: piece u (0..7) of a super-block is its 32-element unit u: field 2 (u % 4) of code
// bytes 32 (u / 4) .. + 31 (and for Q3_K bit u of the 32 high-mask bytes, the code's bit 2), a
// scale (and Q2_K a min) per 16 elements: sums per 16.
template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q2_K>(const uint8_t *ring, uint32_t off, int p, const xint &x)
{
    // the unit's field dotted where it lies (codes times 2^sh: one AND a word, no shift), the
    // 2^sh taken out of the scale
    const int u = p & 7, sh = 2 * (u & 3);
    const uint32_t field = 0x03030303u << sh;
    const uint32_t *q = reinterpret_cast<const uint32_t *>(ring) + ((off + 16 + 32 * (u >> 2)) >> 2); // aligned
    int a[2][3] = {{0, 0, 0}, {0, 0, 0}};
#pragma unroll
    for (int i = 0; i < 8; i++)
        xint_dot<false>(q[i] & field, x, i, a[i >> 2]);
    const uint32_t dm = reinterpret_cast<const uint32_t *>(ring)[(off + 80) >> 2];
    const uint32_t s0 = ring[off + 2 * u], s1 = ring[off + 2 * u + 1]; // scale | min << 4
    const float d = half_in(dm, 0) * pow2f(-sh);
    const float dmin = half_in(dm, 1);
    return x.pf * (d * ((float)(s0 & 15) * xint_total(a[0]) + (float)(s1 & 15) * xint_total(a[1])) -
                   dmin * ((float)(s0 >> 4) * x.sum[0] + (float)(s1 >> 4) * x.sum[1]));
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q3_K>(const uint8_t *ring, uint32_t off, int p, const xint &x)
{
    // 3-bit codes: bits 0-1 the unit's field (bits 2 (u % 4) of code bytes 32 (u / 4)..), bit 2 bit u
    // of the mask bytes, each read from the bit that lands there (the mask's from 2 bits before its
    // bit u: for u < 2 in a 4-byte aligned block, bits of the word before, masked off)
    const int u = p & 7;
    uint32_t q[8], hm[8];
    smem_bits<8>(ring, off + 32 + 32 * (u >> 2), 2 * (u & 3), q);
    smem_bits<8, true>(ring, off, u - 2, hm);
    int a[2][3] = {{0, 0, 0}, {0, 0, 0}};
#pragma unroll
    for (int i = 0; i < 8; i++)
        xint_dot<false>((q[i] & 0x03030303u) | (hm[i] & 0x04040404u), x, i, a[i >> 2]);
    // the 6-bit scales j = 2u, 2u + 1: 4 low bits from byte j % 8 (shifted by 4 (j / 8)), 2 high bits
    // from byte 8 + j % 4 (shifted by 2 (j / 4)) of the 12 at 96; both bytes of each kind adjacent
    // (2u even), so two 16-bit loads give the two scales as the bytes of v
    const uint8_t *sc = ring + off + 96;
    const uint32_t lo = *reinterpret_cast<const uint16_t *>(sc + (2 * u & 7));
    const uint32_t hi = *reinterpret_cast<const uint16_t *>(sc + 8 + (2 * u & 3));
    const uint32_t v = (lo >> (4 * (u >> 2)) & 0x0F0Fu) | (hi >> (2 * (u >> 1)) << 4 & 0x3030u);
    const float r = (float)((int)(v & 0xFFu) - 32) * (xint_total(a[0]) - 4.f * x.sum[0]) +
                    (float)((int)(v >> 8) - 32) * (xint_total(a[1]) - 4.f * x.sum[1]);
    return half_at(ring, off + 108) * r * x.pf;
}

// Q4_K / Q5_K: unit u's 6-bit scale and min from the 12 packed bytes of the header h, applied to
// its sum (and x's).
__device__ __forceinline__ float k4_piece(uint4 h, int u, float sum, float sx)
{
    uint32_t sc, mn;
    q4_K_scale_min(h.y, h.z, h.w, u, sc, mn);
    const float d = half_in(h.x, 0);
    const float dmin = half_in(h.x, 1);
    return d * (float)sc * sum - dmin * (float)mn * sx;
}

// Q4_K / Q5_K: piece u (0..7) of a super-block is its unit u: the low (u even) or high nibbles
// of code bytes 32 (u / 2) .. + 31; Q5_K's fifth bit of element l at bit u of qh[l] (the 32
// bytes after the header).
template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q4_K>(const uint8_t *ring, uint32_t off, int p, const xint &x)
{
    const int u = p & 7, sh = 4 * (u & 1);
    const uint4 *b = reinterpret_cast<const uint4 *>(ring + off); // 16-byte aligned
    const uint4 q0 = b[1 + (u & ~1)], q1 = b[2 + (u & ~1)];
    const uint32_t w[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
    // the nibbles dotted where they lie (codes times 2^sh: one AND a word, no shift), 2^sh taken
    // out of the sum
    const uint32_t nib = 0x0F0F0F0Fu << sh;
    int a[3] = {0, 0, 0};
#pragma unroll
    for (int i = 0; i < 8; i++)
        xint_dot<false>(w[i] & nib, x, i, a);
    return x.pf * k4_piece(b[0], u, xint_total(a) * pow2f(-sh), x.sum[0] + x.sum[1]);
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q5_K>(const uint8_t *ring, uint32_t off, int p, const xint &x)
{
    const int u = p & 7, sh = 4 * (u & 1);
    const uint4 *b = reinterpret_cast<const uint4 *>(ring + off); // 16-byte aligned
    const uint4 h0 = b[1], h1 = b[2], q0 = b[3 + (u & ~1)], q1 = b[4 + (u & ~1)];
    const uint32_t qh[8] = {h0.x, h0.y, h0.z, h0.w, h1.x, h1.y, h1.z, h1.w};
    const uint32_t w[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
    int a[3] = {0, 0, 0};
#pragma unroll
    for (int i = 0; i < 8; i++) // the fifth bits: bit u of qh's bytes rotated to bit 4
        xint_dot<false>(q5_bytes(w[i] >> sh, __funnelshift_r(qh[i], qh[i], (u - 4) & 31)), x, i, a);
    return x.pf * k4_piece(b[0], u, xint_total(a), x.sum[0] + x.sum[1]);
}

// Q6_K: piece p of super-block p / 8 is quarter c = p % 4 of half h = p / 4 % 2: elements
// 32c + l of the half take the low (c < 2) or high (c >= 2) nibble of code byte 32 (c & 1) + l
// of the half's 64 and bits 2c, 2c + 1 of its high-bit byte l (of 32) as bits 4-5, minus 32; a
// scale (int8) per 16 elements, times d.
template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q6_K>(const uint8_t *ring, uint32_t off, int p, const xint &x)
{
    const int h = (p >> 2) & 1, c = p & 3;
    uint32_t lo[8], hi[8]; // each read from the bit that lands at bit 0 (the nibble) or 4 (the high bits)
    smem_bits<8>(ring, off + 64 * h + 32 * (c & 1), 4 * (c >> 1), lo);
    smem_bits<8>(ring, off + 128 + 32 * h, 2 * c - 4, hi); // (bits before it: the block's)
    int a[2][3] = {{0, 0, 0}, {0, 0, 0}};
#pragma unroll
    for (int i = 0; i < 8; i++)
        xint_dot<false>((lo[i] & 0x0F0F0F0Fu) | (hi[i] & 0x30303030u), x, i, a[i >> 2]);
    const int8_t *sc = reinterpret_cast<const int8_t *>(ring + off + 192 + 8 * h + 2 * c);
    return half_at(ring, off + 208) *
           ((float)sc[0] * (xint_total(a[0]) - 32.f * x.sum[0]) + (float)sc[1] * (xint_total(a[1]) - 32.f * x.sum[1])) *
           x.pf;
}

// IQ4_NL / IQ4_XS: the code book's values looked up by byte permutes (x's words in their order,
// xint_elem); an IQ4_XS piece is block ib (0..7) of a super-block, with a 6-bit scale (4 bits of
// scales_l, 2 of scales_h) times d.
__device__ __forceinline__ void iq4_dot(const uint32_t *w, const xint &x, int (&a)[3])
{
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint32_t v0, v1;
        iq4_lookup(w[i], v0, v1);
        xint_dot<true>(v0, x, 2 * i, a);
        xint_dot<true>(v1, x, 2 * i + 1, a);
    }
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_IQ4_NL>(const uint8_t *ring, uint32_t off, int, const xint &x)
{
    uint32_t w[4];
    smem_bits<4>(ring, off + 2, 0, w);
    int a[3] = {0, 0, 0};
    iq4_dot(w, x, a);
    return half_at(ring, off) * xint_total(a) * x.pf;
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_IQ4_XS>(const uint8_t *ring, uint32_t off, int p, const xint &x)
{
    const int ib = p & 7;
    const uint32_t *q = reinterpret_cast<const uint32_t *>(ring) + (off >> 2); // aligned: d, scales_h, scales_l
    const uint2 *c = reinterpret_cast<const uint2 *>(ring + off + 8 + 16 * ib); // 8-byte aligned
    const uint2 c0 = c[0], c1 = c[1];
    const uint32_t w[4] = {c0.x, c0.y, c1.x, c1.y}, h = q[0];
    int a[3] = {0, 0, 0};
    iq4_dot(w, x, a);
    const int ls = (int)((q[1] >> (4 * ib) & 15) | (h >> (16 + 2 * ib) & 3) << 4);
    const float d = half_in(h, 0);
    return d * (float)(ls - 32) * xint_total(a) * x.pf;
}

// MLX 3- and 6-bit codes: three words of a piece's bit stream (bytes 0-11) hold four 3-byte
// groups; byte permutes gather each group's byte j into byte g of x_j, so that a field lies at
// the same bits of every byte (whole in one, or split over x_j and x_j+1)
__device__ __forceinline__ void mlx_gather3(const uint32_t *w, uint32_t (&x)[3])
{
    x[0] = __byte_perm(__byte_perm(w[0], w[1], 0x0630), w[2], 0x5210); // bytes 0, 3, 6, 9
    x[1] = __byte_perm(__byte_perm(w[0], w[1], 0x0741), w[2], 0x6210); // 1, 4, 7, 10
    x[2] = __byte_perm(__byte_perm(w[0], w[1], 0x0052), w[2], 0x7410); // 2, 5, 8, 11
}

// A piece's 32 codes as eight words of code bytes in xint_elem's order: 3- and 5-bit codes
// (groups of 8 codes in 3 and 5 bytes, byte j of every group gathered into one word) code i of
// each group, 6-bit ones (groups of 4 codes in 3 bytes) code i of four groups.
template <int WT> __device__ __forceinline__ void mlx_codes(const uint32_t *w, uint32_t (&c)[8])
{
    if constexpr (WT == MLXN_DTYPE_MLX_Q3) { // code i at bits 3i of its group's 24
        uint32_t x[3];
        mlx_gather3(w, x);
        c[0] = x[0] & 0x07070707u, c[1] = x[0] >> 3 & 0x07070707u;
        c[2] = (x[0] >> 6 & 0x03030303u) | (x[1] << 2 & 0x04040404u);
        c[3] = x[1] >> 1 & 0x07070707u, c[4] = x[1] >> 4 & 0x07070707u;
        c[5] = (x[1] >> 7 & 0x01010101u) | (x[2] << 1 & 0x06060606u);
        c[6] = x[2] >> 2 & 0x07070707u, c[7] = x[2] >> 5 & 0x07070707u;
    } else if constexpr (WT == MLXN_DTYPE_MLX_Q5) { // code i at bits 5i of its group's 40
        uint32_t x[5]; // byte j of each group: bytes j, 5 + j, 10 + j, 15 + j
        x[0] = __byte_perm(__byte_perm(w[0], w[1], 0x0050), __byte_perm(w[2], w[3], 0x0072), 0x5410);
        x[1] = __byte_perm(__byte_perm(w[0], w[1], 0x0061), __byte_perm(w[2], w[4], 0x0043), 0x5410);
        x[2] = __byte_perm(__byte_perm(w[0], w[1], 0x0072), __byte_perm(w[3], w[4], 0x0050), 0x5410);
        x[3] = __byte_perm(__byte_perm(w[0], w[2], 0x0043), __byte_perm(w[3], w[4], 0x0061), 0x5410);
        x[4] = __byte_perm(__byte_perm(w[1], w[2], 0x0050), __byte_perm(w[3], w[4], 0x0072), 0x5410);
        c[0] = x[0] & 0x1F1F1F1Fu;
        c[1] = (x[0] >> 5 & 0x07070707u) | (x[1] << 3 & 0x18181818u);
        c[2] = x[1] >> 2 & 0x1F1F1F1Fu;
        c[3] = (x[1] >> 7 & 0x01010101u) | (x[2] << 1 & 0x1E1E1E1Eu);
        c[4] = (x[2] >> 4 & 0x0F0F0F0Fu) | (x[3] << 4 & 0x10101010u);
        c[5] = x[3] >> 1 & 0x1F1F1F1Fu;
        c[6] = (x[3] >> 6 & 0x03030303u) | (x[4] << 2 & 0x1C1C1C1Cu);
        c[7] = x[4] >> 3 & 0x1F1F1F1Fu;
    } else { // 6-bit: code i at bits 6i of its group's 24, groups 0-3 then 4-7
#pragma unroll
        for (int h = 0; h < 2; h++) {
            uint32_t x[3];
            mlx_gather3(w + 3 * h, x);
            c[4 * h] = x[0] & 0x3F3F3F3Fu;
            c[4 * h + 1] = (x[0] >> 6 & 0x03030303u) | (x[1] << 2 & 0x3C3C3C3Cu);
            c[4 * h + 2] = (x[1] >> 4 & 0x0F0F0F0Fu) | (x[2] << 4 & 0x30303030u);
            c[4 * h + 3] = x[2] >> 2 & 0x3F3F3F3Fu;
        }
    }
}

// MLX: a piece is 32 codes of a row's little-endian bit stream (element j at bits B j), 4B bytes
// at off, in a group of 32, 64 or 128 whose scale and bias sit at soff and boff:
// scale * sum(q x) + bias * sum(x). 8-bit codes are bytes as they are, a word's 4-bit ones the
// even then the odd elements, 2-bit ones elements 4b + k for k = 0..3; 3-, 5- and 6-bit ones come
// from mlx_codes.
template <int WT>
__device__ __forceinline__ float mlx_dot(const uint8_t *ring, uint32_t off, uint32_t soff, uint32_t boff, bool bf16,
                                         const xint &x)
{
    constexpr int NW = piece_fmt<WT>::BB / 4;
    uint32_t w[NW];
    if constexpr (NW % 4 == 0) { // 16-byte aligned
#pragma unroll
        for (int i = 0; i < NW; i += 4) {
            const uint4 c = *reinterpret_cast<const uint4 *>(ring + off + 4 * i);
            w[i] = c.x, w[i + 1] = c.y, w[i + 2] = c.z, w[i + 3] = c.w;
        }
    } else if constexpr (NW % 2 == 0) { // 8-byte aligned
#pragma unroll
        for (int i = 0; i < NW; i += 2) {
            const uint2 c = *reinterpret_cast<const uint2 *>(ring + off + 4 * i);
            w[i] = c.x, w[i + 1] = c.y;
        }
    } else { // 4-byte aligned
#pragma unroll
        for (int i = 0; i < NW; i++)
            w[i] = *reinterpret_cast<const uint32_t *>(ring + off + 4 * i);
    }
    int a[3] = {0, 0, 0};
    if constexpr (WT == MLXN_DTYPE_MLX_Q3 || WT == MLXN_DTYPE_MLX_Q5 || WT == MLXN_DTYPE_MLX_Q6) {
        uint32_t c[8];
        mlx_codes<WT>(w, c);
#pragma unroll
        for (int k = 0; k < 8; k++)
            xint_dot<false>(c[k], x, k, a);
    } else { // each word's codes dotted as they come out (through mlx_codes: 1-2% slower, session 37)
#pragma unroll
        for (int i = 0; i < NW; i++) {
            if constexpr (WT == MLXN_DTYPE_MLX_Q8) {
                xint_dot<false>(w[i], x, i, a);
            } else if constexpr (WT == MLXN_DTYPE_MLX_Q4) {
                xint_dot<false>(w[i] & 0x0F0F0F0Fu, x, 2 * i, a);
                xint_dot<false>(w[i] >> 4 & 0x0F0F0F0Fu, x, 2 * i + 1, a);
            } else {
#pragma unroll
                for (int k = 0; k < 4; k++)
                    xint_dot<false>(w[i] >> (2 * k) & 0x03030303u, x, 4 * i + k, a);
            }
        }
    }
    const float sc = scale_at(ring, soff, bf16), bi = scale_at(ring, boff, bf16);
    return x.pf * (sc * xint_total(a) + bi * (x.sum[0] + x.sum[1]));
}

} // namespace mlxn_cuda

#endif
