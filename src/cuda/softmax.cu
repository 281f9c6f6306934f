// The softmax family on CUDA: a block of 256 threads per row (grid-stride over rows). Pass 1:
// each thread keeps a running (max, sum of exp) over its elements, merged across the block;
// pass 2 reads the row again (from L2 for rows of moderate size) and writes the outputs.
#include "../core/softmax_math.h"
#include "common.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int THREADS = 256;

__device__ __forceinline__ void warp_merge(float &m, float &s)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        mlxn_softmax_merge(&m, &s, m2, s2);
    }
}

__device__ __forceinline__ void store_any(int dt, void *p, int64_t i, float v)
{
    if (dt == MLXN_DTYPE_F16)
        static_cast<__half *>(p)[i] = __float2half_rn(v);
    else if (dt == MLXN_DTYPE_BF16)
        static_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16_rn(v);
    else
        static_cast<float *>(p)[i] = v;
}

__global__ void __launch_bounds__(THREADS) softmax_rows(const mlxn_softmax_args a)
{
    __shared__ float red_m[THREADS / 32], red_s[THREADS / 32];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int64_t r = blockIdx.x; r < a.n_rows; r += gridDim.x) {
        const char *x = mlxn_rows_ptr(&a.x, r);
        const char *mask = a.mask.base ? mlxn_rows_ptr(&a.mask, r) : nullptr;
        char *y = mlxn_rows_ptr(&a.y, r);
        float m = -INFINITY, s = 0.0f;
        for (int64_t i = threadIdx.x; i < a.n; i += THREADS) {
            const float z = mlxn_softmax_logit(load_any(a.dtype, x, i), mask ? load_any(a.dtype, mask, i) : 0.0f,
                                               a.scale, a.softcap);
            mlxn_softmax_merge(&m, &s, z, 1.0f);
        }
        warp_merge(m, s);
        if (lane == 0) {
            red_m[warp] = m;
            red_s[warp] = s;
        }
        __syncthreads();
        m = red_m[0];
        s = red_s[0];
        for (int w = 1; w < THREADS / 32; w++)
            mlxn_softmax_merge(&m, &s, red_m[w], red_s[w]);
        __syncthreads(); // red_* is read before the next row overwrites it
        for (int64_t i = threadIdx.x; i < a.n; i += THREADS) {
            const float z = mlxn_softmax_logit(load_any(a.dtype, x, i), mask ? load_any(a.dtype, mask, i) : 0.0f,
                                               a.scale, a.softcap);
            store_any(a.dtype, y, i, mlxn_softmax_out(z, m, s, a.log));
        }
    }
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_softmax(const mlxn_softmax_args *a, cudaStream_t s, bool pdl)
{
    const unsigned grid = (unsigned)(a->n_rows < 65535 ? a->n_rows : 65535);
    return launch(softmax_rows, dim3(grid), dim3(THREADS), 0, s, pdl, *a);
}
