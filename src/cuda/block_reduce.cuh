// Block-wide reductions in two levels: warp shuffles, then one warp over the warps' results in
// shared memory. Every calling thread gets the result. blockDim.x is a multiple of 32 (up to
// 1024); all threads of the block must call, or with `first` > 0 all threads of warps first..
// (a named barrier; the first warps go on with other work). smem: 32 words of scratch, free
// again when the call returns (the closing barrier keeps a next call from overwriting it while
// it is read).
#ifndef MLXN_CUDA_BLOCK_REDUCE_CUH
#define MLXN_CUDA_BLOCK_REDUCE_CUH

#include <stdint.h>

#include "common.cuh"

namespace mlxn_cuda {

struct add_op {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct max_op {
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a > b ? a : b; }
};

// v combined over the warp's lanes by op (butterfly: every lane gets the result).
template <typename T, typename Op> __device__ __forceinline__ T warp_reduce(T v, Op op)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Barrier of the block's warps from `first` on: all of them, or (first > 0) named barrier 1 over
// the rest, so that the first warps (a producer) can go on with other work.
__device__ __forceinline__ void sync_from(int first)
{
    if (first == 0)
        __syncthreads();
    else
        asm volatile("bar.sync 1, %0;" ::"r"((int)blockDim.x - 32 * first) : "memory");
}

// v combined over the block (over its warps from `first` on, which alone call): per warp, then
// the warps' results (identity fills the rest).
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, T *smem, T identity, Op op, int first = 0)
{
    const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) - first;
    v = warp_reduce(v, op);
    if (lane == 0)
        smem[warp] = v;
    sync_from(first);
    v = warp_reduce(lane < (int)(blockDim.x >> 5) - first ? smem[lane] : identity, op);
    sync_from(first);
    return v;
}

__device__ __forceinline__ float warp_max(float v) { return warp_reduce(v, max_op()); }
__device__ __forceinline__ float block_sum(float v, float *smem) { return block_reduce(v, smem, 0.0f, add_op()); }
__device__ __forceinline__ float block_max(float v, float *smem) { return block_reduce(v, smem, -INFINITY, max_op()); }
__device__ __forceinline__ uint64_t block_sum_u64(uint64_t v, uint64_t *smem) { return block_reduce(v, smem, (uint64_t)0, add_op()); }
__device__ __forceinline__ uint64_t block_max_u64(uint64_t v, uint64_t *smem) { return block_reduce(v, smem, (uint64_t)0, max_op()); }

} // namespace mlxn_cuda

#endif
