// One 32-element unit of a row of W as floats, for the kernels that decode GGML (or plain
// f32/f16/bf16) weights: the decoders shared with the host reference (src/formats/ggml_decode.h).
#ifndef MLXN_CUDA_GGML_UNIT_CUH
#define MLXN_CUDA_GGML_UNIT_CUH

#include "../formats/ggml_decode.h"
#include "common.cuh"

namespace mlxn_cuda {

constexpr bool plain_weight(int wt) { return wt == MLXN_DTYPE_F32 || wt == MLXN_DTYPE_F16 || wt == MLXN_DTYPE_BF16; }

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

} // namespace mlxn_cuda

#endif
