// Decode mat-vec (M = 1), streamed: y[n] = x . W[n]^T for GGML weights (Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS) and MLX 2-, 4- and 8-bit ones (scales and biases in f16 or
// bf16)
// (bench/NOTES.md, "qmatmul decode, streamed", has the budget behind each choice).
//
//  - K is split over the block's threads: a thread owns one piece of x (32 elements) for the
//    whole kernel, in registers, so x is read once per block instead of once per row from shared
//    memory; f32 x comes in coalesced, each computing warp through its own 4 KB of a staging
//    area in shared memory (stage_x), past the ring where the block's share of the SM holds it,
//    else in the ring's last stages. A piece is a block, or a 32-element unit of a K super-block (a Q6_K piece is a
//    quarter of a 128-element half: its low nibbles share 32 code bytes with another quarter, its
//    high 2 bits 32 bytes with the three others).
//  - W comes in tiles of RT rows through the bulk copy engine into a ring of shared-memory
//    stages. Warp 0 produces: it issues the copies, and once every computing warp has said
//    (an mbarrier per stage) that it is done with a tile, it sums their partial sums, stores
//    the outputs and refills the stage. The computing warps never wait for each other, only
//    for their next tile's bytes. From K 4096 only the first one or two tiles are requested
//    before the previous kernel ends (PDL); the rest of the ring waits until the computing warps
//    have issued x's loads, so that those do not queue behind it, and any stages beneath x's
//    staging area until x is read (shorter rows: every stage early).
//  - Integer dot products: x's piece as 22-bit integers split into three bytes, codes as bytes
//    (2- to 6-bit codes assembled into bytes, IQ4 codes looked up by byte permutes), so that a
//    word of four codes takes three dp4a; block scales and offsets (through each piece's sum of
//    x) apply once per piece.
#include <stdint.h>

#include "block_reduce.cuh"
#include "bulk_copy.cuh"
#include "common.cuh"
#include "ggml_unit.cuh"
#include "qmatmul_out.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int MAX_STAGES = 8;
constexpr int MAX_PIECES = 512;       // a computing thread per piece
constexpr int MAX_THREADS = MAX_PIECES + 32; // and the producer warp
constexpr int SMEM_LIMIT = 200 * 1024;

// BE / BB: elements / bytes per block (MLX: 32 codes of a row); PE: elements per piece (a
// thread's share of K), 0 for the formats this kernel does not take
template <int WT> struct sfmt {
    static constexpr bool MLX = WT == MLXN_DTYPE_MLX_Q2 || WT == MLXN_DTYPE_MLX_Q4 || WT == MLXN_DTYPE_MLX_Q8;
    static constexpr int BE = MLX ? 32 : block_elems_of<WT>();
    static constexpr int BB = !MLX ? block_bytes_of<WT>() : WT == MLXN_DTYPE_MLX_Q2 ? 8 : WT == MLXN_DTYPE_MLX_Q4 ? 16 : 32;
    static constexpr int PE = WT == MLXN_DTYPE_Q4_0 || WT == MLXN_DTYPE_Q4_1 || WT == MLXN_DTYPE_Q5_0 ||
                                      WT == MLXN_DTYPE_Q5_1 || WT == MLXN_DTYPE_Q8_0 || WT == MLXN_DTYPE_Q2_K ||
                                      WT == MLXN_DTYPE_Q3_K || WT == MLXN_DTYPE_Q4_K || WT == MLXN_DTYPE_Q5_K ||
                                      WT == MLXN_DTYPE_Q6_K || WT == MLXN_DTYPE_IQ4_NL || WT == MLXN_DTYPE_IQ4_XS ||
                                      MLX
                                  ? 32
                                  : 0;
};

// MLX weights' scales and biases ([N, K / group] each, f16 or bf16): a tile's rows of them follow
// its rows of codes in the stage (srow bytes a row, scales then biases).
struct mlx_rows {
    const uint8_t *s, *b;
    int64_t s_stride, b_stride;
    int group, srow;
    bool bf16;
};

// N words of the bytes at ring + off (off even) from aligned shared-memory words. Offsets
// from the shared array itself keep the loads shared-memory loads (through a generic pointer
// they become slower generic ones).
template <int N> __device__ __forceinline__ void smem_words(const uint8_t *ring, uint32_t off, uint32_t (&w)[N])
{
    const uint32_t *q = reinterpret_cast<const uint32_t *>(ring) + (off >> 2);
    const uint32_t sh = (off & 3) * 8;
    uint32_t r[N + 1];
#pragma unroll
    for (int i = 0; i <= N; i++)
        r[i] = q[i];
#pragma unroll
    for (int i = 0; i < N; i++)
        w[i] = __funnelshift_r(r[i], r[i + 1], sh);
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
    return (uint32_t)sfmt<WT>::BB * (uint32_t)(sfmt<WT>::BE == 256 ? p >> 3 : p);
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
// produce (iq4_dot), or for MLX's 4- and 2-bit codes the order in which their fields come out of
// the code words (mlx_dot).
template <int WT> __host__ __device__ constexpr int xint_elem(int k, int b)
{
    return WT == MLXN_DTYPE_IQ4_NL || WT == MLXN_DTYPE_IQ4_XS ? 4 * (k >> 1) + 2 * (k & 1) + (b >> 1) + 16 * (b & 1)
           : WT == MLXN_DTYPE_MLX_Q4                          ? 8 * (k >> 1) + 2 * b + (k & 1)
           : WT == MLXN_DTYPE_MLX_Q2                          ? 16 * (k >> 2) + 4 * b + (k & 3)
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

// IQ4_NL / IQ4_XS: the code-book values (int8) of the four nibbles of sel's low 16 bits, in
// nibble order. A permute looks nibbles 0-7 up in the lower half of the book, one the upper half
// (selector msb flipped), and a third picks per byte by the nibble's bit 3; bytes from the wrong
// half are never picked, so the permutes' sign-replicate mode does not matter.
__device__ __forceinline__ uint32_t iq4_lookup(uint32_t sel)
{
    constexpr uint64_t lo = MLXN_IQ4_VALUES_LO, hi = MLXN_IQ4_VALUES_HI;
    const uint32_t a = __byte_perm((uint32_t)lo, (uint32_t)(lo >> 32), sel);
    const uint32_t b = __byte_perm((uint32_t)hi, (uint32_t)(hi >> 32), sel ^ 0x8888u);
    return __byte_perm(a, b, ((sel >> 1) & 0x4444u) | 0x3210u);
}

// Piece p, whose block starts at ring + off, times x.
template <int WT> __device__ __forceinline__ float piece_dot(const uint8_t *ring, uint32_t off, int p, const xint &x);

// Q4_0 / Q4_1 / Q8_0 / Q5_0 / Q5_1 / IQ4_NL: a piece is a block; code byte j of the 4-bit
// formats holds elements j (low nibble) and j + 16 (high), Q5's fifth bits are bits j and j + 16
// of qh.
template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q8_0>(const uint8_t *ring, uint32_t off, int, const xint &x)
{
    uint32_t w[8];
    smem_words<8>(ring, off + 2, w);
    int a[3] = {0, 0, 0};
#pragma unroll
    for (int i = 0; i < 8; i++)
        xint_dot<true>(w[i], x, i, a);
    return half_at(ring, off) * xint_total(a) * x.pf;
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q4_0>(const uint8_t *ring, uint32_t off, int, const xint &x)
{
    uint32_t w[4];
    smem_words<4>(ring, off + 2, w);
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
    smem_words<5>(ring, off + 2, w);
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
    const int u = p & 7, sh = 2 * (u & 3);
    const uint32_t *q = reinterpret_cast<const uint32_t *>(ring) + ((off + 16 + 32 * (u >> 2)) >> 2); // aligned
    int a[2][3] = {{0, 0, 0}, {0, 0, 0}};
#pragma unroll
    for (int i = 0; i < 8; i++)
        xint_dot<false>(q[i] >> sh & 0x03030303u, x, i, a[i >> 2]);
    const uint32_t dm = reinterpret_cast<const uint32_t *>(ring)[(off + 80) >> 2];
    const uint32_t s0 = ring[off + 2 * u], s1 = ring[off + 2 * u + 1]; // scale | min << 4
    const float d = half_in(dm, 0);
    const float dmin = half_in(dm, 1);
    return x.pf * (d * ((float)(s0 & 15) * xint_total(a[0]) + (float)(s1 & 15) * xint_total(a[1])) -
                   dmin * ((float)(s0 >> 4) * x.sum[0] + (float)(s1 >> 4) * x.sum[1]));
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q3_K>(const uint8_t *ring, uint32_t off, int p, const xint &x)
{
    const int u = p & 7, sh = 2 * (u & 3);
    uint32_t q[8], hm[8];
    smem_words<8>(ring, off + 32 + 32 * (u >> 2), q);
    smem_words<8>(ring, off, hm);
    int a[2][3] = {{0, 0, 0}, {0, 0, 0}};
#pragma unroll
    for (int i = 0; i < 8; i++) // 3-bit codes: bits 0-1 from the field, bit 2 from the mask
        xint_dot<false>((q[i] >> sh & 0x03030303u) | ((hm[i] >> u) << 2 & 0x04040404u), x, i, a[i >> 2]);
    // the 6-bit scales 2u and 2u + 1: 4 low bits from byte i % 8 (shifted by 4 (i / 8)), 2 high
    // bits from byte 8 + i % 4 (shifted by 2 (i / 4)) of the 12 at 96
    const uint8_t *sc = ring + off + 96;
    float r = 0.f;
#pragma unroll
    for (int k = 0; k < 2; k++) {
        const int i = 2 * u + k;
        const int v = (sc[i & 7] >> (4 * (i >> 3)) & 15) | (sc[8 + (i & 3)] >> (2 * (i >> 2)) & 3) << 4;
        r += (float)(v - 32) * (xint_total(a[k]) - 4.f * x.sum[k]);
    }
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
    int a[3] = {0, 0, 0};
#pragma unroll
    for (int i = 0; i < 8; i++)
        xint_dot<false>(w[i] >> sh & 0x0F0F0F0Fu, x, i, a);
    return x.pf * k4_piece(b[0], u, xint_total(a), x.sum[0] + x.sum[1]);
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
    for (int i = 0; i < 8; i++)
        xint_dot<false>(q5_bytes(w[i] >> sh, (qh[i] >> u) << 4), x, i, a);
    return x.pf * k4_piece(b[0], u, xint_total(a), x.sum[0] + x.sum[1]);
}

// Q6_K: piece p of super-block p / 8 is quarter c = p % 4 of half h = p / 4 % 2: elements
// 32c + l of the half take the low (c < 2) or high (c >= 2) nibble of code byte 32 (c & 1) + l
// of the half's 64 and bits 2c, 2c + 1 of its high-bit byte l (of 32) as bits 4-5, minus 32; a
// scale (int8) per 16 elements, times d.
template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q6_K>(const uint8_t *ring, uint32_t off, int p, const xint &x)
{
    const int h = (p >> 2) & 1, c = p & 3;
    uint32_t lo[8], hi[8];
    smem_words<8>(ring, off + 64 * h + 32 * (c & 1), lo);
    smem_words<8>(ring, off + 128 + 32 * h, hi);
    const int sl = 4 * (c >> 1), shh = 2 * c;
    int a[2][3] = {{0, 0, 0}, {0, 0, 0}};
#pragma unroll
    for (int i = 0; i < 8; i++)
        xint_dot<false>((lo[i] >> sl & 0x0F0F0F0Fu) | ((hi[i] >> shh) << 4 & 0x30303030u), x, i, a[i >> 2]);
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
        xint_dot<true>(iq4_lookup(w[i]), x, 2 * i, a);
        xint_dot<true>(iq4_lookup(w[i] >> 16), x, 2 * i + 1, a);
    }
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_IQ4_NL>(const uint8_t *ring, uint32_t off, int, const xint &x)
{
    uint32_t w[4];
    smem_words<4>(ring, off + 2, w);
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

// MLX: a piece is 32 codes, little-endian in words (B bits: element (32 / B) i + j at bits B j
// of word i), in a group of 32, 64 or 128 whose scale and bias sit at soff and boff:
// scale * sum(q x) + bias * sum(x). A word's fields come out as bytes: 8-bit codes as they are,
// 4-bit ones the even then the odd elements, 2-bit ones elements 4b + k for k = 0..3.
template <int WT>
__device__ __forceinline__ float mlx_dot(const uint8_t *ring, uint32_t off, uint32_t soff, uint32_t boff, bool bf16,
                                         const xint &x)
{
    constexpr int NW = sfmt<WT>::BB / 4;
    uint32_t w[NW];
    if constexpr (NW % 4 == 0) { // 16-byte aligned
#pragma unroll
        for (int i = 0; i < NW; i += 4) {
            const uint4 c = *reinterpret_cast<const uint4 *>(ring + off + 4 * i);
            w[i] = c.x, w[i + 1] = c.y, w[i + 2] = c.z, w[i + 3] = c.w;
        }
    } else { // 8-byte aligned
        const uint2 c = *reinterpret_cast<const uint2 *>(ring + off);
        w[0] = c.x, w[1] = c.y;
    }
    int a[3] = {0, 0, 0};
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
    const float sc = scale_at(ring, soff, bf16), bi = scale_at(ring, boff, bf16);
    return x.pf * (sc * xint_total(a) + bi * (x.sum[0] + x.sum[1]));
}

// x's pieces through a staging area, 4 KB a computing warp (its 32 pieces of 32 f32, 8 16-byte
// chunks each): chunk c of the warp's piece q in slot 8 q + (c ^ ((q ^ q >> 3) & 7)), so that
// neither a quarter warp's stores (8 chunks of one piece) nor its reads (chunk c of 8 consecutive
// pieces) conflict in banks
__device__ __forceinline__ int xs_slot(int q, int c) { return 8 * q + (c ^ ((q ^ q >> 3) & 7)); }

// x (normalized when norm_w is given) into the computing threads' registers, one piece a thread,
// loaded coalesced: each warp loads its own pieces' bytes (a piece is a 128-byte line), lane l the
// chunks l, l + 32, ... of them, where each thread's own piece would be 32 lanes' requests to 32
// lines an instruction (bench/NOTES.md session 31). piece(q) is the global piece of the warp's
// piece q. Barrier 2 is arrived at once the loads are issued, barrier 4 once x is read out of xs
// (the producer then requests the stages beneath it): every computing thread calls it, past the
// last piece too. The warps do not wait for each other (but for the norm's sum).
template <typename PieceOf>
__device__ __forceinline__ void stage_x(const mlxn_qmatmul_args &a, float4 *xs, double *dred, PieceOf piece_of,
                                        int pieces, float *x)
{
    const int lane = (int)threadIdx.x & 31, cw = ((int)threadIdx.x >> 5) - 1;
    const float4 *x4 = reinterpret_cast<const float4 *>(mlxn_rows_ptr(&a.x, 0));
    const float4 *w4 = reinterpret_cast<const float4 *>(a.norm_w);
    const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
    float4 *const xw = xs + 256 * cw; // this warp's 4 KB
    float4 v[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int q = 4 * i + lane / 8, p = piece_of(q);
        v[i] = p < pieces ? x4[8 * p + lane % 8] : zero;
    }
    asm volatile("bar.arrive 2, %0;" ::"r"((int)blockDim.x) : "memory");
    double ss = 0.0; // with norm_w: x's sum of squares (norm_scale)
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int q = 4 * i + lane / 8;
        xw[xs_slot(q, lane % 8)] = v[i];
        if (w4)
            ss += (double)v[i].x * v[i].x + (double)v[i].y * v[i].y + (double)v[i].z * v[i].z + (double)v[i].w * v[i].w;
    }
    if (w4) { // norm_w's loads after x's stores: both at once spilled registers
        float4 w[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int q = 4 * i + lane / 8, p = piece_of(q);
            w[i] = p < pieces ? __ldg(w4 + 8 * p + lane % 8) : zero;
        }
        ss = block_reduce(ss, dred, 0.0, add_op(), 1);
        const float inv = norm_scale(a, ss);
#pragma unroll
        for (int i = 0; i < 8; i++) { // x inv w, in that order as before; each thread its own chunks
            const int q = 4 * i + lane / 8;
            float4 &t = xw[xs_slot(q, lane % 8)];
            t = make_float4(t.x * inv * w[i].x, t.y * inv * w[i].y, t.z * inv * w[i].z, t.w * inv * w[i].w);
        }
    }
    __syncwarp();
#pragma unroll
    for (int c = 0; c < 8; c++) { // past the last piece: zeros, as stored
        const float4 t = xw[xs_slot(lane, c)];
        x[4 * c] = t.x, x[4 * c + 1] = t.y, x[4 * c + 2] = t.z, x[4 * c + 3] = t.w;
    }
    asm volatile("bar.arrive 4, %0;" ::"r"((int)blockDim.x) : "memory");
}

// RT: rows of W per tile (a power of two up to 32)
template <int WT, int RT>
__global__ void __launch_bounds__(MAX_THREADS) qmm_stream(const mlxn_qmatmul_args a, int stages, int pre, int row_bytes, const mlx_rows m,
                                                          int xstage, int xoff)
{
    constexpr int PE = sfmt<WT>::PE;
    extern __shared__ __align__(128) uint8_t ring[]; // stages x RT rows, 16 bytes of slack, part, x's staging
    __shared__ uint64_t full[MAX_STAGES], empty[MAX_STAGES]; // bytes landed / tile consumed
    __shared__ double dred[32];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warps = blockDim.x >> 5;
    const int cwarps = warps - 1; // warp 0 produces, the others compute
    // A computing warp's pieces: consecutive ones, or for blocks of 2 mod 4 bytes (Q4_0, Q5_0,
    // Q8_0, Q3_K, Q6_K, IQ4_NL) every other one of a warp pair, so that its lanes' words are an
    // odd number of words apart and fall in distinct shared-memory banks
    const int cw = warp - 1;
    const int piece = warp == 0 ? -1 : sfmt<WT>::BB % 4 == 2 ? 2 * lane + (cw & 1) + 64 * (cw >> 1) : 32 * cw + lane;
    const int pieces = (int)(a.K / PE);
    const int64_t n_out = a.glu ? a.N / 2 : a.N; // with GLU, row o is a gate and o + n_out its up
    const int outs = a.glu ? RT / 2 : RT;         // outputs per tile
    const int64_t tiles = (n_out + outs - 1) / outs;
    const int64_t my_tiles = tiles > blockIdx.x ? (tiles - 1 - blockIdx.x) / gridDim.x + 1 : 0;
    constexpr bool MLX = sfmt<WT>::MLX;
    const size_t stage_bytes = (size_t)RT * (row_bytes + (MLX ? 2 * m.srow : 0));
    // the partial sums after the ring: per stage, computing warp, row
    float *part = reinterpret_cast<float *>(ring + (size_t)stages * stage_bytes + 16);

    if (tid == 0) {
        for (int s = 0; s < stages; s++) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], cwarps);
        }
        mbar_init_fence();
    }
    __syncthreads();
    // Local tile i goes to stage i % stages; its rows are gate/up pairs with GLU. The whole
    // producer warp calls (one lane issuing a copy per row was slow, bench/NOTES.md session 7).
    // Packed rows (W's rows back to back) come in one copy per run of rows, the stage's rows past
    // N left stale or, in a stage's first tile, uninitialized (their sums are computed but never
    // stored); others in a copy per row from a lane each, the
    // last tile repeating a row rather than read past W.
    const bool packed = a.w_stride == row_bytes;
    const uint64_t pol = warp == 0 ? l2_evict_first() : 0; // W is read once a call: out of L2 first
    auto issue = [&](int64_t i) {
        fence_proxy_async_shared(); // the computing warps' reads of the stage's previous tile
        const int64_t o0 = (blockIdx.x + i * gridDim.x) * outs, rows = n_out - o0 < outs ? n_out - o0 : outs;
        uint8_t *dst = ring + (size_t)(i % stages) * stage_bytes;
        uint64_t *bar = &full[i % stages];
        if (packed && !MLX) {
            if (lane == 0) {
                const uint32_t bytes = (uint32_t)(rows * row_bytes);
                mbar_arrive_expect(bar, a.glu ? 2 * bytes : bytes);
                bulk_copy_hint(dst, a.w + o0 * row_bytes, bytes, bar, pol);
                if (a.glu)
                    bulk_copy_hint(dst + (size_t)outs * row_bytes, a.w + (o0 + n_out) * row_bytes, bytes, bar, pol);
            }
            return;
        }
        // MLX: RT rows of scales and of biases too, a row a lane (past N: the last row again)
        const uint32_t aux = MLX ? 2u * RT * (uint32_t)m.srow : 0u;
        if (lane == 0)
            mbar_arrive_expect(bar, (uint32_t)((packed ? rows : RT) * row_bytes) + aux);
        __syncwarp();
        if (packed) {
            if (lane == 0)
                bulk_copy_hint(dst, a.w + o0 * row_bytes, (uint32_t)(rows * row_bytes), bar, pol);
        } else if (lane < RT) {
            const int64_t o = o0 + (lane % outs < rows ? lane % outs : rows - 1);
            bulk_copy_hint(dst + (size_t)lane * row_bytes, a.w + (lane < outs ? o : o + n_out) * a.w_stride,
                           (uint32_t)row_bytes, bar, pol);
        }
        if (MLX && lane < 2 * RT) {
            const int r = lane % RT;
            const bool bias = lane >= RT;
            const int64_t o = o0 + (r < rows ? r : rows - 1);
            bulk_copy_hint(dst + (size_t)RT * row_bytes + (size_t)(bias ? RT + r : r) * m.srow,
                           bias ? m.b + o * m.b_stride : m.s + o * m.s_stride, (uint32_t)m.srow, bar, pol);
        }
    };
    if (warp == 0) { // the producer: the first tiles, then results of tile i and its stage's next
        // The first `pre` tiles' weights go out before the previous kernel ends; the other stages'
        // only once the computing warps have issued x's loads (barrier 2), which would otherwise
        // queue behind every stage's bytes (bench/NOTES.md, sessions 28 and 30)
        const int64_t first = stages < my_tiles ? stages : my_tiles;
        for (int64_t i = 0; i < pre && i < first; i++)
            issue(i);
        wait_for_previous_kernel();
        allow_next_kernel(); // after the wait: no third kernel launched while the previous one runs
        asm volatile("bar.sync 2, %0;" ::"r"((int)blockDim.x) : "memory");
        // the stages under x's staging area (stage xstage on) once the computing warps hold x
        const int64_t mid = xstage >= 0 && xstage < first ? xstage : first;
        for (int64_t i = pre; i < mid; i++)
            issue(i);
        if (xstage >= 0)
            asm volatile("bar.sync 4, %0;" ::"r"((int)blockDim.x) : "memory");
        for (int64_t i = mid; i < first; i++)
            issue(i);
        int s = 0; // tile i's stage i % stages, and ph its barriers' phase (i / stages) % 2
        uint32_t ph = 0;
        for (int64_t i = 0; i < my_tiles; i++) {
            mbar_wait(&empty[s], ph);
            const int64_t o = (blockIdx.x + i * gridDim.x) * outs + lane;
            if (lane < outs && o < n_out) {
                float g = 0.f, u = 0.f;
                for (int w = 0; w < cwarps; w++) {
                    g += part[(s * cwarps + w) * RT + lane];
                    u += a.glu ? part[(s * cwarps + w) * RT + lane + outs] : 0.f;
                }
                store_out(a, 0, o, g, u);
            }
            __syncwarp(); // part[s] read before its next tile can land
            if (i + stages < my_tiles)
                issue(i + stages);
            if (++s == stages)
                s = 0, ph ^= 1;
        }
        return;
    }
    // the computing warps stage x among themselves (barriers of warps 1.., not the producer's)
    wait_for_previous_kernel();
    allow_next_kernel();

    // x: this thread's piece, normalized when the norm is fused
    const bool active = piece >= 0 && piece < pieces;
    const int64_t k0 = (int64_t)piece * PE;
    const int pc = active ? piece : 0;
    const uint32_t poff = piece_offset<WT>(pc);
    const char *xr = mlxn_rows_ptr(&a.x, 0);
    float x[PE];
    static_assert(PE == 32, "stage_x moves pieces of 32 floats");
    if (xstage >= 0) {
        // the warp's piece q, as `piece` maps lanes to pieces
        auto piece_of = [cw](int q) {
            return sfmt<WT>::BB % 4 == 2 ? 2 * q + (cw & 1) + 64 * (cw >> 1) : 32 * cw + q;
        };
        stage_x(a, reinterpret_cast<float4 *>(ring + xoff), dred, piece_of, pieces, x);
    } else {
        if (active && a.x_dtype == MLXN_DTYPE_F32 && ((uintptr_t)xr & 15) == 0) {
#pragma unroll
            for (int j = 0; j < PE; j += 4) {
                const float4 v = *reinterpret_cast<const float4 *>(xr + 4 * (k0 + j));
                x[j] = v.x, x[j + 1] = v.y, x[j + 2] = v.z, x[j + 3] = v.w;
            }
        } else {
#pragma unroll
            for (int j = 0; j < PE; j++)
                x[j] = active ? load_any(a.x_dtype, xr, k0 + j) : 0.f;
        }
        // x's loads are out: the producer may request the rest of the ring, whose bytes then come
        // behind them (waiting until x had landed left the memory idle: bench/NOTES.md session 30)
        asm volatile("bar.arrive 2, %0;" ::"r"((int)blockDim.x) : "memory");
        if (a.norm_w) {
            double ss = 0.0;
#pragma unroll
            for (int j = 0; j < PE; j++)
                ss += (double)x[j] * x[j];
            ss = block_reduce(ss, dred, 0.0, add_op(), 1);
            const float inv = norm_scale(a, ss);
#pragma unroll
            for (int j = 0; j < PE; j++)
                x[j] = active ? x[j] * inv * __ldg(a.norm_w + k0 + j) : 0.f;
        }
    }
    const xint xi = make_xint<WT>(x);
    const uint32_t sgoff = MLX ? (uint32_t)(PE * pc / m.group) * 2 : 0; // the piece's scale in a row of them

    int s = 0; // as the producer's
    uint32_t ph = 0;
    for (int64_t i = 0; i < my_tiles; i++) {
        mbar_wait(&full[s], ph);
        float acc[RT];
#pragma unroll
        for (int r = 0; r < RT; r++) { // inactive threads (past the last piece) read piece 0
            const uint32_t off = (uint32_t)(s * stage_bytes + r * row_bytes) + poff;
            float v;
            if constexpr (MLX) {
                const uint32_t soff = (uint32_t)(s * stage_bytes + RT * row_bytes + r * m.srow) + sgoff;
                v = mlx_dot<WT>(ring, off, soff, soff + RT * m.srow, m.bf16, xi);
            } else {
                v = piece_dot<WT>(ring, off, pc, xi);
            }
            acc[r] = active ? v : 0.f;
        }
        // transposed warp reduction: each step halves the rows a lane holds (it keeps the lower
        // or upper half by its lane bit and adds the partner's), then plain sums; lane
        // r * (32 / RT) ends with row r
        int n = RT, o = 16;
#pragma unroll
        for (; n > 1; n >>= 1, o >>= 1) {
            const bool hi = lane & o;
#pragma unroll
            for (int j = 0; j < n / 2; j++) {
                const float keep = hi ? acc[j + n / 2] : acc[j], send = hi ? acc[j] : acc[j + n / 2];
                acc[j] = keep + __shfl_xor_sync(0xffffffffu, send, o);
            }
        }
#pragma unroll
        for (; o > 0; o >>= 1)
            acc[0] += __shfl_xor_sync(0xffffffffu, acc[0], o);
        if ((lane & (32 / RT - 1)) == 0)
            part[(s * cwarps + warp - 1) * RT + lane / (32 / RT)] = acc[0];
        __syncwarp();
        if (lane == 0)
            mbar_arrive(&empty[s]); // done with stage s; the partial sums are in
        if (++s == stages)
            s = 0, ph ^= 1;
    }
}

// Launches qmm_stream<WT, RT> with as many stages as the shared memory leaves to the blocks
// the registers allow per SM.
template <int WT, int RT>
cudaError_t launch_tiles(const mlxn_qmatmul_args &a, const mlx_rows &m, cudaStream_t s, bool pdl, int dev, int64_t threads,
                         int64_t row_bytes)
{
    static unsigned long long smem_done;
    auto kernel = qmm_stream<WT, RT>;
    const int64_t stage = RT * (row_bytes + (sfmt<WT>::MLX ? 2 * m.srow : 0));
    const int64_t pstage = stage + (threads - 32) / 32 * RT * 4; // and the computing warps' partial sums (part)
    int sms = 0, sm_smem = 0, per_sm = 0;
    cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&sm_smem, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
    if (e == cudaSuccess)
        e = allow_smem(kernel, SMEM_LIMIT, smem_done);
    if (e == cudaSuccess)
        e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, (int)threads, (size_t)(2 * pstage + 16));
    cudaFuncAttributes fa = {};
    int reserved = 0;
    if (e == cudaSuccess)
        e = cudaFuncGetAttributes(&fa, kernel);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, dev);
    if (e != cudaSuccess)
        return e;
    per_sm = per_sm > 0 ? per_sm : 1;
    // a block's share of the SM's shared memory, less its static and reserved shared memory
    const int64_t share = sm_smem / per_sm - (int64_t)fa.sharedSizeBytes - reserved - 16;
    int64_t stages = share / pstage;
    stages = stages < 2 ? 2 : stages > MAX_STAGES ? MAX_STAGES : stages;
    while (stages > 2 && stages * pstage + 16 > SMEM_LIMIT)
        stages--;
    // x staged (stage_x) where x and norm_w are f32 in 16-byte words: past the ring where the
    // share holds it beside the ring's stages, else in the ring's last stages, requested once x is
    // read (fewer stages cost more than a stage requested late: bench/NOTES.md session 31)
    const bool xok = a.x_dtype == MLXN_DTYPE_F32 && ((uintptr_t)mlxn_rows_ptr(&a.x, 0) & 15) == 0 &&
                     ((uintptr_t)a.norm_w & 15) == 0;
    const int64_t xb = (threads - 32) * 128; // 4 KB a computing warp
    const bool xout = xok && stages * pstage + xb <= share && stages * pstage + 16 + xb <= SMEM_LIMIT;
    const int64_t dyn = stages * pstage + 16 + (xout ? xb : 0);
    // the grid: the blocks that fit at once with those stages (fewer than per_sm where two stages
    // do not fit the share), so that no block waits for another to end
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, (int)threads, (size_t)dyn);
    if (e != cudaSuccess)
        return e;
    per_sm = per_sm > 0 ? per_sm : 1;
    // tiles issued before the PDL wait: two stages where an SM's blocks request no more than 60%
    // of its shared memory that way, else one; one for the formats bound by their products, for
    // which x early counts more (bench/NOTES.md session 28 has the measurements). Rows shorter
    // than 4096 (small models' steps, not measured this way yet) issue every stage early as before.
    constexpr bool product_bound = WT == MLXN_DTYPE_IQ4_NL || WT == MLXN_DTYPE_IQ4_XS || WT == MLXN_DTYPE_Q2_K ||
                                   WT == MLXN_DTYPE_Q3_K;
    int pre = 1;
    if (a.K < 4096)
        pre = (int)stages;
    else if (!product_bound && 2 * per_sm * stage <= (int64_t)sm_smem * 6 / 10)
        pre = 2;
    const int64_t outs = a.glu ? RT / 2 : RT, n_out = a.glu ? a.N / 2 : a.N;
    const int64_t tiles = (n_out + outs - 1) / outs, cap = (int64_t)sms * per_sm;
    // stage_x's area: its offset, and the first stage beneath it (stages: none, -1: no staging)
    int xstage = -1, xoff = 0;
    if (xout) {
        xstage = (int)stages, xoff = (int)(stages * pstage + 16);
    } else if (xok && stages * stage - xb >= pre * stage) {
        xoff = (int)(stages * stage - xb), xstage = xoff / (int)stage;
    }
    return launch(kernel, dim3((unsigned)(tiles < cap ? tiles : cap)), dim3((unsigned)threads), (size_t)dyn, s, pdl, a,
                  (int)stages, pre, (int)row_bytes, m, xstage, xoff);
}

template <int WT> bool launch_format(const mlxn_qmatmul_args &a, cudaStream_t s, bool pdl, cudaError_t *e, const mlx_rows &m = {})
{
    using F = sfmt<WT>;
    if constexpr (F::PE == 0) {
        return false;
    } else {
        const int64_t pieces = a.K / F::PE, per = F::BB % 4 == 2 ? 64 : 32; // whole warp pairs there
        const int64_t threads = 32 + (pieces + per - 1) / per * per;
        const int64_t row_bytes = a.K / F::BE * F::BB, aux = F::MLX ? 2 * m.srow : 0; // a row's bytes in a stage: + aux
        // Q6_K from K 4096: Gemma 3's 640 x 2048 down projection was faster alone here but its
        // decode step slower (bench/NOTES.md), so the row kernel keeps the short rows; the
        // formats added after it too (Gemma 3's Q5_0 rows are 640 long), until a model's step
        // has measured them
        constexpr bool short_rows = WT == MLXN_DTYPE_Q4_0 || WT == MLXN_DTYPE_Q4_1 || WT == MLXN_DTYPE_Q8_0 ||
                                    WT == MLXN_DTYPE_Q4_K;
        if (!short_rows && a.K < 4096)
            return false;
        if (a.M != 1 || a.K % F::BE || threads < 96 || threads > MAX_THREADS || row_bytes % 16 ||
            a.w_stride % 16 || (uintptr_t)a.w % 16 || (a.glu && a.N % 2) || 2 * 4 * (row_bytes + aux) + 16 > SMEM_LIMIT)
            return false;
        int dev = 0, major = 0;
        *e = cudaGetDevice(&dev);
        if (*e == cudaSuccess)
            *e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
        if (*e != cudaSuccess || major < 9)
            return *e != cudaSuccess;
        // 8 rows a tile (more work between a warp's reductions) when three stages of them fit
        *e = 3 * 8 * (row_bytes + aux) + 16 <= SMEM_LIMIT ? launch_tiles<WT, 8>(a, m, s, pdl, dev, threads, row_bytes)
                                                          : launch_tiles<WT, 4>(a, m, s, pdl, dev, threads, row_bytes);
        return true;
    }
}

} // namespace

extern "C" bool mlxn_cuda_launch_qmatmul_stream(const mlxn_qmatmul_args *a, cudaStream_t s, bool pdl, cudaError_t *e)
{
    switch (a->w_dtype) {
    case MLXN_DTYPE_Q4_0: return launch_format<MLXN_DTYPE_Q4_0>(*a, s, pdl, e);
    case MLXN_DTYPE_Q4_1: return launch_format<MLXN_DTYPE_Q4_1>(*a, s, pdl, e);
    case MLXN_DTYPE_Q5_0: return launch_format<MLXN_DTYPE_Q5_0>(*a, s, pdl, e);
    case MLXN_DTYPE_Q5_1: return launch_format<MLXN_DTYPE_Q5_1>(*a, s, pdl, e);
    case MLXN_DTYPE_Q8_0: return launch_format<MLXN_DTYPE_Q8_0>(*a, s, pdl, e);
    case MLXN_DTYPE_Q2_K: return launch_format<MLXN_DTYPE_Q2_K>(*a, s, pdl, e);
    case MLXN_DTYPE_Q3_K: return launch_format<MLXN_DTYPE_Q3_K>(*a, s, pdl, e);
    case MLXN_DTYPE_Q4_K: return launch_format<MLXN_DTYPE_Q4_K>(*a, s, pdl, e);
    case MLXN_DTYPE_Q5_K: return launch_format<MLXN_DTYPE_Q5_K>(*a, s, pdl, e);
    case MLXN_DTYPE_Q6_K: return launch_format<MLXN_DTYPE_Q6_K>(*a, s, pdl, e);
    case MLXN_DTYPE_IQ4_NL: return launch_format<MLXN_DTYPE_IQ4_NL>(*a, s, pdl, e);
    case MLXN_DTYPE_IQ4_XS: return launch_format<MLXN_DTYPE_IQ4_XS>(*a, s, pdl, e);
    default: return false;
    }
}

// MLX 2-, 4- and 8-bit weights, codes in packed rows, f16 or bf16 scales and biases whose rows are
// 16-byte aligned (from K 4096, as the GGML formats added after Q4_K: launch_format)
extern "C" bool mlxn_cuda_launch_qmatmul_mlx_stream(const mlxn_qmatmul_mlx_args *a, cudaStream_t s, bool pdl,
                                                    cudaError_t *e)
{
    const int64_t srow = a->K / a->group_size * 2;
    if (a->M != 1 || (a->bits != 2 && a->bits != 4 && a->bits != 8) || a->w_stride != a->K * a->bits / 8 ||
        (a->s_dtype != MLXN_DTYPE_F16 && a->s_dtype != MLXN_DTYPE_BF16) || a->K % a->group_size || srow % 16 ||
        a->s_stride % 16 || a->b_stride % 16 || (uintptr_t)a->scales % 16 || (uintptr_t)a->biases % 16)
        return false;
    mlxn_qmatmul_args g = {};
    g.M = 1, g.N = a->N, g.K = a->K, g.x_dtype = a->x_dtype;
    g.w_dtype = a->bits == 2 ? MLXN_DTYPE_MLX_Q2 : a->bits == 4 ? MLXN_DTYPE_MLX_Q4 : MLXN_DTYPE_MLX_Q8;
    g.x = a->x, g.w = a->w, g.w_stride = a->w_stride, g.y = a->y;
    const mlx_rows m = {static_cast<const uint8_t *>(a->scales), static_cast<const uint8_t *>(a->biases), a->s_stride,
                        a->b_stride, a->group_size, (int)srow, a->s_dtype == MLXN_DTYPE_BF16};
    switch (a->bits) {
    case 2: return launch_format<MLXN_DTYPE_MLX_Q2>(g, s, pdl, e, m);
    case 4: return launch_format<MLXN_DTYPE_MLX_Q4>(g, s, pdl, e, m);
    default: return launch_format<MLXN_DTYPE_MLX_Q8>(g, s, pdl, e, m);
    }
}
