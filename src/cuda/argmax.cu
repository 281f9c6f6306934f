// Argmax over rows on CUDA: one block per row (grid-stride over rows), each element packed with
// its index into one integer (src/core/sample_math.h) so the maximum is a plain integer max;
// per thread over its elements (16-byte loads when the rows are 16-byte aligned), then across
// the block (block_reduce.cuh). Up to 1024 threads per block: at B = 1 and V = 262144 the one
// block holds 64 KB of loads in flight.
#include "../core/sample_math.h"
#include "block_reduce.cuh"
#include "elementwise.cuh"

namespace {

using namespace mlxn_cuda;

template <typename T> __global__ void __launch_bounds__(1024) argmax_rows(const mlxn_argmax_args a, bool vec)
{
    __shared__ uint64_t red[32];
    wait_for_previous_kernel();
    allow_next_kernel();
    constexpr int E = 16 / sizeof(T);
    for (int64_t r = blockIdx.x; r < a.n_rows; r += gridDim.x) {
        const T *x = reinterpret_cast<const T *>(mlxn_rows_ptr(&a.x, r));
        uint64_t best = 0;
        const int64_t n_vec = vec ? a.n / E : 0;
#pragma unroll 4
        for (int64_t v = threadIdx.x; v < n_vec; v += blockDim.x) {
            __align__(16) T t[E]; // moved as 16-byte words
            *reinterpret_cast<uint4 *>(t) = reinterpret_cast<const uint4 *>(x)[v];
#pragma unroll
            for (int j = 0; j < E; j++) {
                const uint64_t p = mlxn_argmax_pack(to_f(t[j]), v * E + j);
                best = p > best ? p : best;
            }
        }
        for (int64_t i = n_vec * E + threadIdx.x; i < a.n; i += blockDim.x) {
            const uint64_t p = mlxn_argmax_pack(to_f(x[i]), i);
            best = p > best ? p : best;
        }
        best = block_max_u64(best, red);
        if (threadIdx.x == 0)
            a.out[r] = mlxn_argmax_index(best);
    }
}

template <typename T> cudaError_t launch_t(const mlxn_argmax_args &a, cudaStream_t s, bool pdl)
{
    const int64_t per_thread = a.n / (16 / (int64_t)sizeof(T)) + 1;
    int threads = 32;
    while (threads < 1024 && threads < per_thread)
        threads *= 2;
    const unsigned grid = (unsigned)(a.n_rows < 65535 ? a.n_rows : 65535);
    return launch(argmax_rows<T>, dim3(grid), dim3(threads), 0, s, pdl, a, rows_aligned16(a.x));
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_argmax(const mlxn_argmax_args *a, cudaStream_t s, bool pdl)
{
    switch (a->dtype) {
    case MLXN_DTYPE_F32: return launch_t<float>(*a, s, pdl);
    case MLXN_DTYPE_F16: return launch_t<__half>(*a, s, pdl);
    case MLXN_DTYPE_BF16: return launch_t<__nv_bfloat16>(*a, s, pdl);
    }
    return cudaErrorInvalidValue;
}
