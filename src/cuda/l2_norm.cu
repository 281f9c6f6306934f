// y = x * (1 / max(||x||, eps)) per row on CUDA, as ggml_l2_norm: the sum of squares in f32,
// then a second read of the row (from L1/L2 for the rows of models, a few KB) to scale it.
// Rows of up to 2048 elements take a warp each (8 rows per block of 256); longer rows a block
// each, the warps' sums combined in shared memory. Rows 16-byte aligned with a length that is a
// multiple of 8 move 8 elements per thread with 16-byte accesses (elementwise.cuh).
#include "elementwise.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int THREADS = 256;

template <typename T, int TPR, bool VEC> __global__ void __launch_bounds__(THREADS) l2_norm_rows(const mlxn_l2_norm_args a)
{
    __shared__ float warp_sums[THREADS / 32];
    wait_for_previous_kernel();
    allow_next_kernel();
    constexpr int ROWS = THREADS / TPR, E = VEC ? RUN : 1;
    const int t = threadIdx.x % TPR, g = threadIdx.x / TPR;
    for (int64_t r0 = (int64_t)blockIdx.x * ROWS; r0 < a.n_rows; r0 += (int64_t)gridDim.x * ROWS) {
        const int64_t r = r0 + g;
        const bool live = r < a.n_rows;
        const T *x = live ? reinterpret_cast<const T *>(mlxn_rows_ptr(&a.x, r)) : nullptr;
        float ss = 0.0f;
        if (live)
            for (int64_t i = (int64_t)t * E; i < a.n; i += (int64_t)TPR * E) {
                if constexpr (VEC) {
                    float v[RUN];
                    load_run(x + i, v);
#pragma unroll
                    for (int j = 0; j < RUN; j++)
                        ss = fmaf(v[j], v[j], ss);
                } else {
                    const float v = to_f(x[i]);
                    ss = fmaf(v, v, ss);
                }
            }
        ss = warp_sum(ss);
        if constexpr (TPR > 32) {
            if ((threadIdx.x & 31) == 0)
                warp_sums[threadIdx.x >> 5] = ss;
            __syncthreads();
            ss = 0.0f;
#pragma unroll
            for (int w = 0; w < TPR / 32; w++)
                ss += warp_sums[w];
            __syncthreads(); // read before the next row's sums overwrite them
        }
        if (!live)
            continue;
        const float scale = 1.0f / fmaxf(sqrtf(ss), a.eps);
        T *y = reinterpret_cast<T *>(mlxn_rows_ptr(&a.y, r));
        for (int64_t i = (int64_t)t * E; i < a.n; i += (int64_t)TPR * E) {
            if constexpr (VEC) {
                float v[RUN];
                load_run(x + i, v);
#pragma unroll
                for (int j = 0; j < RUN; j++)
                    v[j] *= scale;
                store_run(y + i, v);
            } else {
                y[i] = from_f<T>(to_f(x[i]) * scale);
            }
        }
    }
}

template <typename T, int TPR, bool VEC> cudaError_t launch_rows(const mlxn_l2_norm_args &a, cudaStream_t s, bool pdl)
{
    constexpr int ROWS = THREADS / TPR;
    const int64_t blocks = (a.n_rows + ROWS - 1) / ROWS;
    return launch(l2_norm_rows<T, TPR, VEC>, dim3((unsigned)(blocks < (1 << 20) ? blocks : (1 << 20))), dim3(THREADS),
                  0, s, pdl, a);
}

template <typename T> cudaError_t launch_t(const mlxn_l2_norm_args &a, cudaStream_t s, bool pdl)
{
    const bool vec = a.n % RUN == 0 && rows_aligned16(a.x) && rows_aligned16(a.y);
    if (a.n <= 2048)
        return vec ? launch_rows<T, 32, true>(a, s, pdl) : launch_rows<T, 32, false>(a, s, pdl);
    return vec ? launch_rows<T, THREADS, true>(a, s, pdl) : launch_rows<T, THREADS, false>(a, s, pdl);
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_l2_norm(const mlxn_l2_norm_args *a, cudaStream_t s, bool pdl)
{
    switch (a->dtype) {
    case MLXN_DTYPE_F32: return launch_t<float>(*a, s, pdl);
    case MLXN_DTYPE_F16: return launch_t<__half>(*a, s, pdl);
    case MLXN_DTYPE_BF16: return launch_t<__nv_bfloat16>(*a, s, pdl);
    }
    return cudaErrorInvalidValue;
}
