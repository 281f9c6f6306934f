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
