// One 32-element unit of a row of W as floats, for the kernels that decode GGML (or plain
// f32/f16/bf16) weights: the decoders shared with the host reference (src/formats/ggml_decode.h).
#ifndef MLXN_CUDA_GGML_UNIT_CUH
#define MLXN_CUDA_GGML_UNIT_CUH

#include "../formats/ggml_decode.h"
#include "common.cuh"

namespace mlxn_cuda {

constexpr bool plain_weight(int wt) { return wt == MLXN_DTYPE_F32 || wt == MLXN_DTYPE_F16 || wt == MLXN_DTYPE_BF16; }

// Bytes and elements of one GGML block of type WT at compile time (the structs of
// src/formats/ggml_blocks.h); 0 for other types.
template <int WT> constexpr int block_bytes_of()
{
    return WT == MLXN_DTYPE_Q4_0     ? (int)sizeof(mlxn_block_q4_0)
         : WT == MLXN_DTYPE_Q4_1     ? (int)sizeof(mlxn_block_q4_1)
         : WT == MLXN_DTYPE_Q5_0     ? (int)sizeof(mlxn_block_q5_0)
         : WT == MLXN_DTYPE_Q5_1     ? (int)sizeof(mlxn_block_q5_1)
         : WT == MLXN_DTYPE_Q8_0     ? (int)sizeof(mlxn_block_q8_0)
         : WT == MLXN_DTYPE_Q2_K     ? (int)sizeof(mlxn_block_q2_K)
         : WT == MLXN_DTYPE_Q3_K     ? (int)sizeof(mlxn_block_q3_K)
         : WT == MLXN_DTYPE_Q4_K     ? (int)sizeof(mlxn_block_q4_K)
         : WT == MLXN_DTYPE_Q5_K     ? (int)sizeof(mlxn_block_q5_K)
         : WT == MLXN_DTYPE_Q6_K     ? (int)sizeof(mlxn_block_q6_K)
         : WT == MLXN_DTYPE_IQ4_NL   ? (int)sizeof(mlxn_block_iq4_nl)
         : WT == MLXN_DTYPE_IQ4_XS   ? (int)sizeof(mlxn_block_iq4_xs)
                                     : 0;
}

template <int WT> constexpr int block_elems_of()
{
    return !block_bytes_of<WT>() ? 0
         : WT == MLXN_DTYPE_Q2_K || WT == MLXN_DTYPE_Q3_K || WT == MLXN_DTYPE_Q4_K || WT == MLXN_DTYPE_Q5_K ||
                   WT == MLXN_DTYPE_Q6_K || WT == MLXN_DTYPE_IQ4_XS
               ? 256
               : 32;
}

// Bytes of the first K elements of a row of W (K whole blocks).
template <int WT> __host__ __device__ constexpr int64_t row_bytes(int64_t K)
{
    if constexpr (plain_weight(WT))
        return K * (WT == MLXN_DTYPE_F32 ? 4 : 2);
    else
        return K / block_elems_of<WT>() * block_bytes_of<WT>();
}

// Q4_K / Q5_K: the 6-bit scale and min of unit u (ggml_decode.h's mlxn_scale_min_k4) from the
// 12 scale bytes as three words (bytes 0-3, 4-7, 8-11).
__device__ __forceinline__ void q4_K_scale_min(uint32_t s0, uint32_t s1, uint32_t s2, int u, uint32_t &sc, uint32_t &mn)
{
    const uint32_t sh = 8 * (u & 3), a = s0 >> sh, b = s1 >> sh, c = s2 >> sh;
    sc = u < 4 ? a & 63 : (c & 15) | (a >> 2 & 48);
    mn = u < 4 ? b & 63 : (c >> 4 & 15) | (b >> 2 & 48);
}

// Word i of the bytes at p (2-byte aligned): two aligned words funnel-shifted when p is 2 mod 4
// (piece_dot.cuh's smem_bits does the same from offsets into its shared ring, which keeps
// its loads shared-memory loads).
struct words_at {
    const uint32_t *w;
    uint32_t sh;
    __device__ __forceinline__ explicit words_at(const uint8_t *p)
        : w(reinterpret_cast<const uint32_t *>(reinterpret_cast<uintptr_t>(p) & ~(uintptr_t)3)),
          sh(8 * (uint32_t)(reinterpret_cast<uintptr_t>(p) & 2))
    {
    }
    __device__ __forceinline__ uint32_t operator[](int i) const { return __funnelshift_r(w[i], w[i + 1], sh); }
};

// Units of Q6_K, Q8_0 and Q4_0 blocks from shared memory for the MoE prefill, whose decode from
// shared memory bounds it (bench/NOTES.md, qmatmul_id); the values of ggml_decode.h's decoders
// (Q6_K: d times the scale first). Q8_0 and Q4_0 read 2 bytes at a time (every GGML block is
// 2-byte aligned), Q6_K 4: byte loads cost Q6_K 27.8 -> 42.0 TFLOP/s, and 2-byte loads left it
// the most instructions an element of the formats.

// Q6_K: four 6-bit codes assembled per step from a word of low nibbles and a word of high bit
// pairs; a code byte becomes the float 2^23 + q by a byte permute into 0x4B000000, so q - 32 is
// one subtraction (exact) before the scale.
__device__ __forceinline__ void unit_q6_K_32(const mlxn_block_q6_K *b, int u, float (&y)[32])
{
    const int g = u / 4, t = u % 4, lo = 4 * (t / 2), hi = 2 * t;
    const words_at ql(b->ql + 64 * g + 32 * (t % 2)), qh(b->qh + 32 * g);
    const float d = mlxn_ggml_h2f(b->d);
    const float s0 = d * mlxn_int_f32(b->scales[2 * u]), s1 = d * mlxn_int_f32(b->scales[2 * u + 1]);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const uint32_t q = (ql[i] >> lo & 0x0F0F0F0Fu) | (qh[i] >> hi & 0x03030303u) << 4;
#pragma unroll
        for (int j = 0; j < 4; j++)
            y[4 * i + j] = (i < 4 ? s0 : s1) * (__uint_as_float(__byte_perm(q, 0x4B000000u, 0x7540u + j)) - 8388640.0f);
    }
}

__device__ __forceinline__ void unit_q8_0_16(const mlxn_block_q8_0 *b, float (&y)[32])
{
    const uint16_t *qs = reinterpret_cast<const uint16_t *>(b->qs);
    const float d = mlxn_ggml_h2f(b->d);
#pragma unroll
    for (int i = 0; i < 16; i++) {
        const uint32_t w = qs[i];
        y[2 * i] = mlxn_int_f32((int8_t)(w & 255)) * d;
        y[2 * i + 1] = mlxn_int_f32((int8_t)(w >> 8)) * d;
    }
}

__device__ __forceinline__ void unit_q4_0_16(const mlxn_block_q4_0 *b, float (&y)[32])
{
    const uint16_t *qs = reinterpret_cast<const uint16_t *>(b->qs);
    const float d = mlxn_ggml_h2f(b->d);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const uint32_t w = qs[i];
#pragma unroll
        for (int j = 0; j < 2; j++) {
            y[2 * i + j] = d * mlxn_int_f32((int)(w >> (8 * j) & 15) - 8);
            y[2 * i + j + 16] = d * mlxn_int_f32((int)(w >> (8 * j + 4) & 15) - 8);
        }
    }
}

// Unit u of the GGML block at blk, through the decoders above where there is one.
template <int WT> __device__ __forceinline__ void block_unit(const uint8_t *blk, int u, float (&v)[32])
{
    if constexpr (WT == MLXN_DTYPE_Q6_K)
        unit_q6_K_32(reinterpret_cast<const mlxn_block_q6_K *>(blk), u, v);
    else if constexpr (WT == MLXN_DTYPE_Q8_0)
        unit_q8_0_16(reinterpret_cast<const mlxn_block_q8_0 *>(blk), v);
    else if constexpr (WT == MLXN_DTYPE_Q4_0)
        unit_q4_0_16(reinterpret_cast<const mlxn_block_q4_0 *>(blk), v);
    else
        mlxn_ggml_unit(WT, blk, u, v);
}

// The 32 weights k0 .. k0 + 31 of a row of W as floats.
template <int WT> __device__ __forceinline__ void weight_unit(const uint8_t *row, int64_t k0, float (&v)[32])
{
    if constexpr (plain_weight(WT)) {
#pragma unroll
        for (int j = 0; j < 32; j++)
            v[j] = load_any(WT, row, k0 + j);
    } else {
        int u;
        const uint8_t *p = mlxn_ggml_unit_ptr(WT, row, k0, &u);
        mlxn_ggml_unit(WT, p, u, v);
    }
}

// weight_unit for a row of K elements: zeros from K on (only plain weights have rows that are
// not whole units; a GGML unit is either inside the row or past it).
template <int WT>
__device__ __forceinline__ void weight_unit_bounded(const uint8_t *row, int64_t k0, int64_t K, float (&v)[32])
{
    if (k0 + 32 <= K) {
        weight_unit<WT>(row, k0, v);
    } else if constexpr (plain_weight(WT)) {
#pragma unroll
        for (int j = 0; j < 32; j++)
            v[j] = k0 + j < K ? load_any(WT, row, k0 + j) : 0.f;
    } else {
#pragma unroll
        for (int j = 0; j < 32; j++)
            v[j] = 0.f;
    }
}

// 32 products of a unit of W with a unit of x staged in shared memory at xu (16-byte aligned),
// in two chains
__device__ __forceinline__ float unit_dot(const float (&v)[32], const float *xu)
{
    const float4 *x4 = reinterpret_cast<const float4 *>(xu);
    float d0 = 0.f, d1 = 0.f;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const float4 x = x4[j];
        d0 = fmaf(x.x, v[4 * j], d0);
        d1 = fmaf(x.y, v[4 * j + 1], d1);
        d0 = fmaf(x.z, v[4 * j + 2], d0);
        d1 = fmaf(x.w, v[4 * j + 3], d1);
    }
    return d0 + d1;
}

} // namespace mlxn_cuda

#endif
