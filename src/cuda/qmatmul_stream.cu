// Decode mat-vec (M = 1) with GGML weights, streamed: y[n] = x . W[n]^T for Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, Q2_K..Q6_K, IQ4_NL and IQ4_XS (bench/NOTES.md, "qmatmul decode, streamed", has the
// budget behind each choice).
//
//  - K is split over the block's threads: a thread owns one piece of x (32 elements) for the
//    whole kernel, in registers, so x is read
//    once per block instead of once per row from shared memory. A Q6_K piece is a quarter of a
//    128-element half of a super-block: 32 elements whose low nibbles share 32 code bytes with
//    another quarter, and whose high 2 bits share 32 bytes with the three others.
//  - W comes in tiles of RT rows through the bulk copy engine into a ring of shared-memory
//    stages. Warp 0 produces: it issues the copies, and once every computing warp has said
//    (an mbarrier per stage) that it is done with a tile, it sums their partial sums, stores
//    the outputs and refills the stage. The computing warps never wait for each other, only
//    for their next tile's bytes.
//  - Codes as subnormal fields (subnormal.cuh): one AND and one FMA per weight against x
//    pre-scaled per element; block scales and offsets (through each piece's sum of x) apply
//    once per piece. 3- and 5-bit codes are first assembled into bytes, IQ4 codes looked up into
//    bytes (values + 128) by byte permutes.
#include <stdint.h>

#include "block_reduce.cuh"
#include "bulk_copy.cuh"
#include "common.cuh"
#include "ggml_unit.cuh"
#include "qmatmul_out.cuh"
#include "subnormal.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int MAX_STAGES = 8;
constexpr int MAX_PIECES = 512;       // a computing thread per piece
constexpr int MAX_THREADS = MAX_PIECES + 32; // and the producer warp
constexpr int SMEM_LIMIT = 200 * 1024;

// BE / BB: elements / bytes per block; PE: elements per piece (a thread's share of K), 0 for the
// formats this kernel does not take
template <int WT> struct sfmt {
    static constexpr int BE = block_elems_of<WT>(), BB = block_bytes_of<WT>();
    static constexpr int PE = WT == MLXN_DTYPE_Q4_0 || WT == MLXN_DTYPE_Q4_1 || WT == MLXN_DTYPE_Q5_0 ||
                                      WT == MLXN_DTYPE_Q5_1 || WT == MLXN_DTYPE_Q8_0 || WT == MLXN_DTYPE_Q2_K ||
                                      WT == MLXN_DTYPE_Q3_K || WT == MLXN_DTYPE_Q4_K || WT == MLXN_DTYPE_Q5_K ||
                                      WT == MLXN_DTYPE_Q6_K || WT == MLXN_DTYPE_IQ4_NL || WT == MLXN_DTYPE_IQ4_XS
                                  ? 32
                                  : 0;
    // sums of x per piece (Q2_K, Q3_K, Q6_K: per 16 elements, a scale's span)
    static constexpr int NS = WT == MLXN_DTYPE_Q2_K || WT == MLXN_DTYPE_Q3_K || WT == MLXN_DTYPE_Q6_K ? 2 : 1;
};

// The bit at which element j of a piece sits in the words its dot masks: the nibble layout
// (subnormal.cuh), bytes (Q8_0, the K formats and the 5-bit codes: bytes 2-3 from the word
// shifted right by 16) or IQ4's looked-up bytes.
template <int WT> __device__ __forceinline__ int field_bit(int j)
{
    if constexpr (WT == MLXN_DTYPE_Q8_0 || WT == MLXN_DTYPE_Q5_0 || WT == MLXN_DTYPE_Q5_1 || WT == MLXN_DTYPE_Q2_K ||
                  WT == MLXN_DTYPE_Q3_K || WT == MLXN_DTYPE_Q4_K || WT == MLXN_DTYPE_Q5_K)
        return byte_bit(j);
    else if constexpr (WT == MLXN_DTYPE_IQ4_NL || WT == MLXN_DTYPE_IQ4_XS)
        return iq4_bit(j);
    else
        return nibble_bit(j, sfmt<WT>::PE / 2);
}

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

// Byte offset of piece p's block in a row of W.
template <int WT> __host__ __device__ constexpr uint32_t piece_offset(int p)
{
    return (uint32_t)sfmt<WT>::BB * (uint32_t)(sfmt<WT>::BE == 256 ? p >> 3 : p);
}

// Piece p, whose block starts at ring + off, times x (scaled as above; sx: the piece's sums of
// x per 32 elements, scaled by 2^(E - 149)), in units of 2^(E - 149).
template <int WT> __device__ __forceinline__ float piece_dot(const uint8_t *ring, uint32_t off, int p, const float *x, const float *sx);

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q4_0>(const uint8_t *ring, uint32_t off, int, const float *x, const float *sx)
{
    uint32_t w[4];
    smem_words<4>(ring, off + 2, w);
    float al[2] = {0.f, 0.f}, ah[2] = {0.f, 0.f};
#pragma unroll
    for (int i = 0; i < 4; i++)
        nibbles_dot(w[i], x + 4 * i, x + 16 + 4 * i, al, ah);
    return half_at(ring, off) * ((al[0] + al[1]) + (ah[0] + ah[1]) - 8.f * sx[0]);
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q4_1>(const uint8_t *ring, uint32_t off, int, const float *x, const float *sx)
{
    const uint32_t *q = reinterpret_cast<const uint32_t *>(ring) + (off >> 2); // aligned: d, m, the codes
    const uint32_t dm = q[0];
    float al[2] = {0.f, 0.f}, ah[2] = {0.f, 0.f};
#pragma unroll
    for (int i = 0; i < 4; i++)
        nibbles_dot(q[1 + i], x + 4 * i, x + 16 + 4 * i, al, ah);
    const float d = __half2float(__ushort_as_half((unsigned short)(dm & 0xFFFF)));
    const float m = __half2float(__ushort_as_half((unsigned short)(dm >> 16)));
    return d * ((al[0] + al[1]) + (ah[0] + ah[1])) + m * sx[0];
}

// Q5_0 / Q5_1: code bytes j hold elements j (low nibble) and j + 16 (high); their fifth bits are
// bits j and j + 16 of qh. Word i's 8 codes become two words of 5-bit bytes (elements 4i..4i+3,
// then 16 + 4i..).
__device__ __forceinline__ void q5_block_dot(uint32_t qh, const uint32_t *w, const float *x, float (&a)[4])
{
#pragma unroll
    for (int i = 0; i < 4; i++) {
        byte_fields_dot<0x1Fu>(q5_bytes(w[i], q5_high_nibble(qh, i)), x[4 * i], x[4 * i + 1], x[4 * i + 2],
                               x[4 * i + 3], a[0], a[1]);
        byte_fields_dot<0x1Fu>(q5_bytes(w[i] >> 4, q5_high_nibble(qh, 4 + i)), x[16 + 4 * i], x[17 + 4 * i],
                               x[18 + 4 * i], x[19 + 4 * i], a[2], a[3]);
    }
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q5_0>(const uint8_t *ring, uint32_t off, int, const float *x, const float *sx)
{
    uint32_t w[5]; // qh, then the code bytes
    smem_words<5>(ring, off + 2, w);
    float a[4] = {0.f, 0.f, 0.f, 0.f};
    q5_block_dot(w[0], w + 1, x, a);
    return half_at(ring, off) * ((a[0] + a[1]) + (a[2] + a[3]) - 16.f * sx[0]);
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q5_1>(const uint8_t *ring, uint32_t off, int, const float *x, const float *sx)
{
    const uint32_t *q = reinterpret_cast<const uint32_t *>(ring) + (off >> 2); // aligned: d, m, qh, the codes
    const uint32_t dm = q[0];
    const uint32_t w[4] = {q[2], q[3], q[4], q[5]};
    float a[4] = {0.f, 0.f, 0.f, 0.f};
    q5_block_dot(q[1], w, x, a);
    const float d = __half2float(__ushort_as_half((unsigned short)(dm & 0xFFFF)));
    const float m = __half2float(__ushort_as_half((unsigned short)(dm >> 16)));
    return d * ((a[0] + a[1]) + (a[2] + a[3])) + m * sx[0];
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q8_0>(const uint8_t *ring, uint32_t off, int, const float *x, const float *sx)
{
    uint32_t w[8];
    smem_words<8>(ring, off + 2, w);
    float a0 = 0.f, a1 = 0.f;
#pragma unroll
    for (int i = 0; i < 8; i++)
        bytes_dot(w[i], x[4 * i], x[4 * i + 1], x[4 * i + 2], x[4 * i + 3], a0, a1);
    return half_at(ring, off) * (a0 + a1 - 128.f * sx[0]);
}

// Q4_K / Q5_K: piece u (0..7) of a super-block is its unit u: the low (u even) or high nibbles
// of code bytes 32 (u / 2) .. + 31, with a 6-bit scale and min from the 12 packed bytes of the
// header h, applied here to the piece's sum.
__device__ __forceinline__ float k4_piece(uint4 h, int u, float sum, float sx)
{
    uint32_t sc, mn;
    q4_K_scale_min(h.y, h.z, h.w, u, sc, mn);
    const float d = __half2float(__ushort_as_half((unsigned short)(h.x & 0xFFFF)));
    const float dmin = __half2float(__ushort_as_half((unsigned short)(h.x >> 16)));
    return d * (float)sc * sum - dmin * (float)mn * sx;
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q4_K>(const uint8_t *ring, uint32_t off, int p, const float *x, const float *sx)
{
    const int u = p & 7, sh = 4 * (u & 1);
    const uint4 *b = reinterpret_cast<const uint4 *>(ring + off); // 16-byte aligned
    const uint4 q0 = b[1 + (u & ~1)], q1 = b[2 + (u & ~1)];
    const uint32_t w[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
    float a[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int i = 0; i < 8; i++)
        byte_fields_dot<0x0Fu>(w[i] >> sh, x[4 * i], x[4 * i + 1], x[4 * i + 2], x[4 * i + 3], a[2 * (i & 1)],
                               a[2 * (i & 1) + 1]);
    return k4_piece(b[0], u, (a[0] + a[1]) + (a[2] + a[3]), sx[0]);
}

// Q5_K: as Q4_K, with the fifth bit of element l of unit u at bit u of qh[l] (the 32 bytes after
// the header).
template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q5_K>(const uint8_t *ring, uint32_t off, int p, const float *x, const float *sx)
{
    const int u = p & 7, sh = 4 * (u & 1);
    const uint4 *b = reinterpret_cast<const uint4 *>(ring + off); // 16-byte aligned
    const uint4 h0 = b[1], h1 = b[2], q0 = b[3 + (u & ~1)], q1 = b[4 + (u & ~1)];
    const uint32_t qh[8] = {h0.x, h0.y, h0.z, h0.w, h1.x, h1.y, h1.z, h1.w};
    const uint32_t w[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
    float a[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int i = 0; i < 8; i++)
        byte_fields_dot<0x1Fu>(q5_bytes(w[i] >> sh, (qh[i] >> u) << 4), x[4 * i], x[4 * i + 1], x[4 * i + 2],
                               x[4 * i + 3], a[2 * (i & 1)], a[2 * (i & 1) + 1]);
    return k4_piece(b[0], u, (a[0] + a[1]) + (a[2] + a[3]), sx[0]);
}

// Q2_K / Q3_K: piece u (0..7) of a super-block is its 32-element unit u: field 2 (u % 4) of code
// bytes 32 (u / 4) .. + 31 (and for Q3_K bit u of the 32 high-mask bytes, the code's bit 2), a
// scale (and Q2_K a min) per 16 elements.
template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q2_K>(const uint8_t *ring, uint32_t off, int p, const float *x, const float *sx)
{
    const int u = p & 7, sh = 2 * (u & 3);
    const uint32_t *q = reinterpret_cast<const uint32_t *>(ring) + ((off + 16 + 32 * (u >> 2)) >> 2); // aligned
    float a[4] = {0.f, 0.f, 0.f, 0.f}; // two sums per 16 elements
#pragma unroll
    for (int i = 0; i < 8; i++)
        byte_fields_dot<0x03u>(q[i] >> sh, x[4 * i], x[4 * i + 1], x[4 * i + 2], x[4 * i + 3], a[(i >> 2) * 2],
                               a[(i >> 2) * 2 + 1]);
    const uint32_t dm = reinterpret_cast<const uint32_t *>(ring)[(off + 80) >> 2];
    const uint32_t s0 = ring[off + 2 * u], s1 = ring[off + 2 * u + 1]; // scale | min << 4
    const float d = __half2float(__ushort_as_half((unsigned short)(dm & 0xFFFF)));
    const float dmin = __half2float(__ushort_as_half((unsigned short)(dm >> 16)));
    return d * ((float)(s0 & 15) * (a[0] + a[1]) + (float)(s1 & 15) * (a[2] + a[3])) -
           dmin * ((float)(s0 >> 4) * sx[0] + (float)(s1 >> 4) * sx[1]);
}

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q3_K>(const uint8_t *ring, uint32_t off, int p, const float *x, const float *sx)
{
    const int u = p & 7, sh = 2 * (u & 3);
    uint32_t q[8], hm[8];
    smem_words<8>(ring, off + 32 + 32 * (u >> 2), q);
    smem_words<8>(ring, off, hm);
    float a[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int i = 0; i < 8; i++) { // 3-bit codes: bits 0-1 from the field, bit 2 from the mask
        const uint32_t c = (q[i] >> sh & 0x03030303u) | ((hm[i] >> u) << 2 & 0xFCFCFCFCu);
        byte_fields_dot<0x07u>(c, x[4 * i], x[4 * i + 1], x[4 * i + 2], x[4 * i + 3], a[(i >> 2) * 2],
                               a[(i >> 2) * 2 + 1]);
    }
    // the 6-bit scales 2u and 2u + 1: 4 low bits from byte i % 8 (shifted by 4 (i / 8)), 2 high
    // bits from byte 8 + i % 4 (shifted by 2 (i / 4)) of the 12 at 96
    const uint8_t *sc = ring + off + 96;
    float r = 0.f;
#pragma unroll
    for (int k = 0; k < 2; k++) {
        const int i = 2 * u + k;
        const int v = (sc[i & 7] >> (4 * (i >> 3)) & 15) | (sc[8 + (i & 3)] >> (2 * (i >> 2)) & 3) << 4;
        r += (float)(v - 32) * ((a[2 * k] + a[2 * k + 1]) - 4.f * sx[k]);
    }
    return half_at(ring, off + 108) * r;
}

// Q6_K: piece p of super-block p / 8 is quarter c = p % 4 of half h = p / 4 % 2: elements
// 32c + l of the half take the low (c < 2) or high (c >= 2) nibble of code byte 32 (c & 1) + l
// of the half's 64 and bits 2c, 2c + 1 of its high-bit byte l (of 32), minus 32; a scale (int8)
// per 16 elements, times d. A byte b of a word sits at bit 8 (b & 1) of the word or of the word
// shifted right by 16, so that every field stays below bit 23 (a subnormal). x[j] is pre-scaled
// for the low field's bit; the high field of the same byte sits 4 (c >> 1) - 2c bits from it
// whatever the byte, so its sums take one factor at the end, 16 * 2^(4 (c >> 1) - 2c): one x in
// registers serves both fields.
__device__ __forceinline__ int q6k_lo_bit(int c, int j) { return 8 * (j & 1) + 4 * (c >> 1); }

template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_Q6_K>(const uint8_t *ring, uint32_t off, int p, const float *x, const float *sx)
{
    const int h = (p >> 2) & 1, c = p & 3;
    uint32_t lo[8], hi[8];
    smem_words<8>(ring, off + 64 * h + 32 * (c & 1), lo);
    smem_words<8>(ring, off + 128 + 32 * h, hi);
    const uint32_t ml = 0xFu << (4 * (c >> 1)), mh = 3u << (2 * c); // byte 0's fields; byte 1's 8 bits up
    float al[2] = {0.f, 0.f}, ah[2] = {0.f, 0.f}; // per 16 elements: low and high fields
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const uint32_t l0 = lo[i], l1 = lo[i] >> 16, h0 = hi[i], h1 = hi[i] >> 16;
        float &a = al[i >> 2], &b = ah[i >> 2];
        a = fmaf(x[4 * i], field(l0 & ml), a);
        b = fmaf(x[4 * i], field(h0 & mh), b);
        a = fmaf(x[4 * i + 1], field(l0 & (ml << 8)), a);
        b = fmaf(x[4 * i + 1], field(h0 & (mh << 8)), b);
        a = fmaf(x[4 * i + 2], field(l1 & ml), a);
        b = fmaf(x[4 * i + 2], field(h1 & mh), b);
        a = fmaf(x[4 * i + 3], field(l1 & (ml << 8)), a);
        b = fmaf(x[4 * i + 3], field(h1 & (mh << 8)), b);
    }
    const float f = (c & 1) ? 4.f : 16.f; // 16 * 2^(4 (c >> 1) - 2c)
    const int8_t *sc = reinterpret_cast<const int8_t *>(ring + off + 192 + 8 * h + 2 * c);
    return half_at(ring, off + 208) * ((float)sc[0] * (fmaf(f, ah[0], al[0]) - 32.f * sx[0]) +
                                       (float)sc[1] * (fmaf(f, ah[1], al[1]) - 32.f * sx[1]));
}

// IQ4_NL: d, then Q4_0's code bytes, looked up in the code book (values + 128).
template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_IQ4_NL>(const uint8_t *ring, uint32_t off, int, const float *x, const float *sx)
{
    uint32_t w[4];
    smem_words<4>(ring, off + 2, w);
    float a[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int i = 0; i < 4; i++)
        iq4_dot(w[i], x + 4 * i, x + 16 + 4 * i, a[2 * (i & 1)], a[2 * (i & 1) + 1]);
    return half_at(ring, off) * ((a[0] + a[1]) + (a[2] + a[3]) - 128.f * sx[0]);
}

// IQ4_XS: piece ib (0..7) of a super-block is its 32-element block ib, IQ4_NL's layout, with a
// 6-bit scale (4 bits of scales_l, 2 of scales_h) times d.
template <> __device__ __forceinline__ float piece_dot<MLXN_DTYPE_IQ4_XS>(const uint8_t *ring, uint32_t off, int p, const float *x, const float *sx)
{
    const int ib = p & 7;
    const uint32_t *q = reinterpret_cast<const uint32_t *>(ring) + (off >> 2); // aligned: d, scales_h, scales_l
    const uint2 *c = reinterpret_cast<const uint2 *>(ring + off + 8 + 16 * ib); // 8-byte aligned
    const uint2 c0 = c[0], c1 = c[1];
    const uint32_t w[4] = {c0.x, c0.y, c1.x, c1.y}, h = q[0];
    float a[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int i = 0; i < 4; i++)
        iq4_dot(w[i], x + 4 * i, x + 16 + 4 * i, a[2 * (i & 1)], a[2 * (i & 1) + 1]);
    const int ls = (int)((q[1] >> (4 * ib) & 15) | (h >> (16 + 2 * ib) & 3) << 4);
    const float d = __half2float(__ushort_as_half((unsigned short)(h & 0xFFFF)));
    return d * (float)(ls - 32) * ((a[0] + a[1]) + (a[2] + a[3]) - 128.f * sx[0]);
}

// RT: rows of W per tile (a power of two up to 32)
template <int WT, int RT>
__global__ void __launch_bounds__(MAX_THREADS) qmm_stream(const mlxn_qmatmul_args a, int stages, int row_bytes)
{
    constexpr int PE = sfmt<WT>::PE, NS = sfmt<WT>::NS;
    extern __shared__ __align__(128) uint8_t ring[]; // stages x RT rows, then 16 bytes of slack
    __shared__ uint64_t full[MAX_STAGES], empty[MAX_STAGES]; // bytes landed / tile consumed
    __shared__ float part[MAX_STAGES][MAX_PIECES / 32][RT]; // per stage, computing warp, row
    __shared__ double dred[32];
    __shared__ int ired[32];
    __shared__ int s_back; // the row sums come in units of 2^-s_back
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warps = blockDim.x >> 5;
    const int cwarps = warps - 1; // warp 0 produces, the others compute
    // A computing warp's pieces: consecutive ones, or for blocks of 2 mod 4 bytes (Q4_0, Q8_0)
    // every other one of a warp pair, so that its lanes' words are an odd number of words
    // apart and fall in distinct shared-memory banks
    const int cw = warp - 1;
    const int piece = warp == 0 ? -1 : sfmt<WT>::BB % 4 == 2 ? 2 * lane + (cw & 1) + 64 * (cw >> 1) : 32 * cw + lane;
    const int pieces = (int)(a.K / PE);
    const int64_t n_out = a.glu ? a.N / 2 : a.N; // with GLU, row o is a gate and o + n_out its up
    const int outs = a.glu ? RT / 2 : RT;         // outputs per tile
    const int64_t tiles = (n_out + outs - 1) / outs;
    const int64_t my_tiles = tiles > blockIdx.x ? (tiles - 1 - blockIdx.x) / gridDim.x + 1 : 0;
    const size_t stage_bytes = (size_t)RT * row_bytes;

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
    auto issue = [&](int64_t i) {
        fence_proxy_async_shared(); // the computing warps' reads of the stage's previous tile
        const int64_t o0 = (blockIdx.x + i * gridDim.x) * outs, rows = n_out - o0 < outs ? n_out - o0 : outs;
        uint8_t *dst = ring + (size_t)(i % stages) * stage_bytes;
        uint64_t *bar = &full[i % stages];
        if (packed) {
            if (lane == 0) {
                const uint32_t bytes = (uint32_t)(rows * row_bytes);
                mbar_arrive_expect(bar, a.glu ? 2 * bytes : bytes);
                bulk_copy(dst, a.w + o0 * row_bytes, bytes, bar);
                if (a.glu)
                    bulk_copy(dst + (size_t)outs * row_bytes, a.w + (o0 + n_out) * row_bytes, bytes, bar);
            }
            return;
        }
        if (lane == 0)
            mbar_arrive_expect(bar, (uint32_t)(RT * row_bytes));
        __syncwarp();
        if (lane < RT) {
            const int64_t o = o0 + (lane % outs < rows ? lane % outs : rows - 1);
            bulk_copy(dst + (size_t)lane * row_bytes, a.w + (lane < outs ? o : o + n_out) * a.w_stride,
                      (uint32_t)row_bytes, bar);
        }
    };
    if (warp == 0) { // the producer: the first tiles, then results of tile i and its stage's next
        for (int64_t i = 0; i < stages && i < my_tiles; i++) // weights: before the previous kernel ends
            issue(i);
        wait_for_previous_kernel();
        allow_next_kernel(); // after the wait: no third kernel launched while the previous one runs
        for (int64_t i = 0; i < my_tiles; i++) {
            const int s = (int)(i % stages);
            mbar_wait(&empty[s], (uint32_t)(i / stages) & 1); // (after the computing warps set s_back)
            const int64_t o = (blockIdx.x + i * gridDim.x) * outs + lane;
            if (lane < outs && o < n_out) {
                float g = 0.f, u = 0.f;
                for (int w = 0; w < cwarps; w++) {
                    g += part[s][w][lane];
                    u += a.glu ? part[s][w][lane + outs] : 0.f;
                }
                store_out(a, 0, o, scale2(g, s_back), scale2(u, s_back));
            }
            __syncwarp(); // part[s] read before its next tile can land
            if (i + stages < my_tiles)
                issue(i + stages);
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
#pragma unroll
    for (int j = 0; j < PE; j += 4) {
        if (!active) {
            x[j] = x[j + 1] = x[j + 2] = x[j + 3] = 0.f;
        } else if (a.x_dtype == MLXN_DTYPE_F32 && ((uintptr_t)xr & 15) == 0) {
            const float4 v = *reinterpret_cast<const float4 *>(xr + 4 * (k0 + j));
            x[j] = v.x, x[j + 1] = v.y, x[j + 2] = v.z, x[j + 3] = v.w;
        } else {
#pragma unroll
            for (int i = 0; i < 4; i++)
                x[j + i] = load_any(a.x_dtype, xr, k0 + j + i);
        }
    }
    if (a.norm_w) { // 1 / sqrt(mean(x^2) + eps), f64 sums as in the other decode kernels
        double ss = 0.0;
#pragma unroll
        for (int j = 0; j < PE; j++)
            ss += (double)x[j] * x[j];
        ss = block_reduce(ss, dred, 0.0, add_op(), 1);
        const float inv = (float)(1.0 / sqrt(ss / (double)a.K + (double)a.norm_eps));
#pragma unroll
        for (int j = 0; j < PE; j++)
            x[j] = active ? x[j] * inv * __ldg(a.norm_w + k0 + j) : 0.f;
    }
    // E from the largest |x| (its exponent field: the bits of a non-negative float order as ints)
    int big = 0;
#pragma unroll
    for (int j = 0; j < PE; j++)
        big = max(big, __float_as_int(fabsf(x[j])));
    big = block_reduce(big, ired, 0, max_op(), 1);
    const int E = x_exponent(big);
    if (tid == 32)
        s_back = 149 - E; // the row sums come in units of 2^(E - 149)
    float sx[NS]; // sums over the piece's NS spans of PE / NS elements
#pragma unroll
    for (int h = 0; h < NS; h++) {
        float s = 0.f;
#pragma unroll
        for (int j = h * (PE / NS); j < (h + 1) * (PE / NS); j++)
            s += x[j];
        sx[h] = scale2(s, E - 149);
    }
    if constexpr (WT == MLXN_DTYPE_Q6_K) {
#pragma unroll
        for (int j = 0; j < PE; j++)
            x[j] = scale2(x[j], E - q6k_lo_bit(pc & 3, j));
    } else {
#pragma unroll
        for (int j = 0; j < PE; j++)
            x[j] = scale2(x[j], E - field_bit<WT>(j));
    }

    for (int64_t i = 0; i < my_tiles; i++) {
        const int s = (int)(i % stages);
        mbar_wait(&full[s], (uint32_t)(i / stages) & 1);
        float acc[RT];
#pragma unroll
        for (int r = 0; r < RT; r++) { // inactive threads (past the last piece) read piece 0
            const float v = piece_dot<WT>(ring, (uint32_t)(s * stage_bytes + r * row_bytes) + poff, pc, x, sx);
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
            part[s][warp - 1][lane / (32 / RT)] = acc[0];
        __syncwarp();
        if (lane == 0)
            mbar_arrive(&empty[s]); // done with stage s; the partial sums are in
    }
}

// Launches qmm_stream<WT, RT> with as many stages as the shared memory leaves to the blocks
// the registers allow per SM.
template <int WT, int RT>
cudaError_t launch_tiles(const mlxn_qmatmul_args &a, cudaStream_t s, bool pdl, int dev, int64_t threads, int64_t row_bytes)
{
    static unsigned long long smem_done;
    auto kernel = qmm_stream<WT, RT>;
    const int64_t stage = RT * row_bytes;
    int sms = 0, sm_smem = 0, per_sm = 0;
    cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&sm_smem, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
    if (e == cudaSuccess)
        e = allow_smem(kernel, SMEM_LIMIT, smem_done);
    if (e == cudaSuccess)
        e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, (int)threads, (size_t)(2 * stage + 16));
    if (e != cudaSuccess)
        return e;
    per_sm = per_sm > 0 ? per_sm : 1;
    const int64_t share = sm_smem / per_sm - 4096; // less static and reserved shared memory
    int64_t stages = share / stage;
    stages = stages < 2 ? 2 : stages > MAX_STAGES ? MAX_STAGES : stages;
    while (stages > 2 && stages * stage + 16 > SMEM_LIMIT)
        stages--;
    const int64_t outs = a.glu ? RT / 2 : RT, n_out = a.glu ? a.N / 2 : a.N;
    const int64_t tiles = (n_out + outs - 1) / outs, cap = (int64_t)sms * per_sm;
    return launch(kernel, dim3((unsigned)(tiles < cap ? tiles : cap)), dim3((unsigned)threads),
                  (size_t)(stages * stage) + 16, s, pdl, a, (int)stages, (int)row_bytes);
}

template <int WT> bool launch_format(const mlxn_qmatmul_args &a, cudaStream_t s, bool pdl, cudaError_t *e)
{
    using F = sfmt<WT>;
    if constexpr (F::PE == 0) {
        return false;
    } else {
        const int64_t pieces = a.K / F::PE, per = F::BB % 4 == 2 ? 64 : 32; // whole warp pairs there
        const int64_t threads = 32 + (pieces + per - 1) / per * per;
        const int64_t row_bytes = a.K / F::BE * F::BB;
        // Q6_K from K 4096: Gemma 3's 640 x 2048 down projection was faster alone here but its
        // decode step slower (bench/NOTES.md), so the row kernel keeps the short rows; the
        // formats added after it too (Gemma 3's Q5_0 rows are 640 long), until a model's step
        // has measured them
        constexpr bool short_rows = WT == MLXN_DTYPE_Q4_0 || WT == MLXN_DTYPE_Q4_1 || WT == MLXN_DTYPE_Q8_0 ||
                                    WT == MLXN_DTYPE_Q4_K;
        if (!short_rows && a.K < 4096)
            return false;
        if (a.M != 1 || a.K % F::BE || threads < 96 || threads > MAX_THREADS || row_bytes % 16 ||
            a.w_stride % 16 || (uintptr_t)a.w % 16 || (a.glu && a.N % 2) || 2 * 4 * row_bytes + 16 > SMEM_LIMIT)
            return false;
        int dev = 0, major = 0;
        *e = cudaGetDevice(&dev);
        if (*e == cudaSuccess)
            *e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
        if (*e != cudaSuccess || major < 9)
            return *e != cudaSuccess;
        // 8 rows a tile (more work between a warp's reductions) when three stages of them fit
        *e = 3 * 8 * row_bytes + 16 <= SMEM_LIMIT ? launch_tiles<WT, 8>(a, s, pdl, dev, threads, row_bytes)
                                                  : launch_tiles<WT, 4>(a, s, pdl, dev, threads, row_bytes);
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
