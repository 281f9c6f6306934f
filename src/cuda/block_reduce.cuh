// Block-wide reductions in two levels: warp shuffles, then one warp over the warps' results in
// shared memory. Every thread of the block gets the result. blockDim.x is a multiple of 32 (up
// to 1024); all threads of the block must call. smem: 32 words of scratch, free again when the
// call returns (the closing barrier keeps a next call from overwriting it while it is read).
#ifndef MLXN_CUDA_BLOCK_REDUCE_CUH
#define MLXN_CUDA_BLOCK_REDUCE_CUH

#include <stdint.h>

#include "common.cuh"

namespace mlxn_cuda {

__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float block_sum(float v, float *smem)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    if (lane == 0)
        smem[warp] = v;
    __syncthreads();
    v = warp_sum(lane < (int)(blockDim.x >> 5) ? smem[lane] : 0.0f);
    __syncthreads();
    return v;
}

__device__ __forceinline__ float block_max(float v, float *smem)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    if (lane == 0)
        smem[warp] = v;
    __syncthreads();
    v = warp_max(lane < (int)(blockDim.x >> 5) ? smem[lane] : -INFINITY);
    __syncthreads();
    return v;
}

__device__ __forceinline__ uint64_t warp_max_u64(uint64_t v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const uint64_t w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w > v ? w : v;
    }
    return v;
}

__device__ __forceinline__ uint64_t block_max_u64(uint64_t v, uint64_t *smem)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max_u64(v);
    if (lane == 0)
        smem[warp] = v;
    __syncthreads();
    v = warp_max_u64(lane < (int)(blockDim.x >> 5) ? smem[lane] : 0);
    __syncthreads();
    return v;
}

} // namespace mlxn_cuda

#endif
