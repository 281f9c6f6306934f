// Argmax over rows on CUDA: one block per row (grid-stride over rows), each element packed with
// its index into one integer (src/core/sample_math.h) so the maximum is a plain integer max;
// per thread over its elements (16-byte loads when the rows are 16-byte aligned), then across
// the block (block_reduce.cuh). Up to 1024 threads per block.
//
// Small batches (B <= SPLIT_ROWS, split.cuh) split each row over up to 128 blocks of 256
// threads: one block per row reads at the pace of one SM (39.8 us for 1 x 262144 f32 on an
// H200), the split reads at the device's. Each block writes its chunk's packed maximum to the
// scratch and the row's last block to arrive takes the maximum of those.
#include "../core/sample_math.h"
#include "block_reduce.cuh"
#include "elementwise.cuh"
#include "split.cuh"

namespace {

using namespace mlxn_cuda;

// This thread's packed maximum of x[i0, i1); 16-byte loads when vec (the row is 16-byte
// aligned and i0 a multiple of 16 bytes' worth of elements).
template <typename T> __device__ __forceinline__ uint64_t thread_max(const T *x, int64_t i0, int64_t i1, bool vec)
{
    constexpr int E = 16 / sizeof(T);
    uint64_t best = 0;
    const int64_t v0 = i0 / E, n_vec = vec ? i1 / E : v0;
#pragma unroll 4
    for (int64_t v = v0 + threadIdx.x; v < n_vec; v += blockDim.x) {
        __align__(16) T t[E]; // moved as 16-byte words
        *reinterpret_cast<uint4 *>(t) = reinterpret_cast<const uint4 *>(x)[v];
#pragma unroll
        for (int j = 0; j < E; j++) {
            const uint64_t p = mlxn_argmax_pack(to_f(t[j]), v * E + j);
            best = p > best ? p : best;
        }
    }
    for (int64_t i = (vec ? n_vec * E : i0) + threadIdx.x; i < i1; i += blockDim.x) {
        const uint64_t p = mlxn_argmax_pack(to_f(x[i]), i);
        best = p > best ? p : best;
    }
    return best;
}

template <typename T> __global__ void __launch_bounds__(1024) argmax_rows(const mlxn_argmax_args a, bool vec)
{
    __shared__ uint64_t red[32];
    wait_for_previous_kernel();
    allow_next_kernel();
    for (int64_t r = blockIdx.x; r < a.n_rows; r += gridDim.x) {
        const T *x = reinterpret_cast<const T *>(mlxn_rows_ptr(&a.x, r));
        const uint64_t best = block_max_u64(thread_max(x, 0, a.n, vec), red);
        if (threadIdx.x == 0)
            a.out[r] = mlxn_argmax_index(best);
    }
}

// The split layout in the scratch: per row, the blocks' maxima and the arrival counter.
struct argmax_split_rows {
    uint64_t part[SPLIT_ROWS][SPLIT_MAX];
    uint32_t arrived[SPLIT_ROWS];
};
static_assert(sizeof(argmax_split_rows) <= SPLIT_ARGMAX_BYTES, "argmax's part of the scratch is too small");

// grid (blocks per row, rows): block c takes ids [c * len, (c + 1) * len) of row blockIdx.y;
// len is a multiple of 16 bytes' worth of elements so that every chunk starts aligned.
template <typename T>
__global__ void __launch_bounds__(256) argmax_split(const mlxn_argmax_args a, bool vec, int64_t len,
                                                   argmax_split_rows *sc)
{
    __shared__ uint64_t red[32];
    __shared__ bool last;
    wait_for_previous_kernel();
    allow_next_kernel();
    const int r = blockIdx.y, c = blockIdx.x;
    const T *x = reinterpret_cast<const T *>(mlxn_rows_ptr(&a.x, r));
    const int64_t i0 = (int64_t)c * len, i1 = i0 + len < a.n ? i0 + len : a.n;
    const uint64_t best = block_max_u64(thread_max(x, i0, i1, vec), red);
    if (threadIdx.x == 0)
        sc->part[r][c] = best;
    if (!split_last_block(&sc->arrived[r], gridDim.x, &last))
        return;
    uint64_t b = threadIdx.x < gridDim.x ? __ldcg(reinterpret_cast<const unsigned long long *>(&sc->part[r][threadIdx.x])) : 0;
    b = block_max_u64(b, red);
    if (threadIdx.x == 0)
        a.out[r] = mlxn_argmax_index(b);
}

template <typename T> cudaError_t launch_t(const mlxn_argmax_args &a, void *scratch, cudaStream_t s, bool pdl)
{
    constexpr int64_t E = 16 / (int64_t)sizeof(T);
    if (scratch && a.n_rows <= SPLIT_ROWS && a.n > 4096) {
        // about 512 blocks in all (four per SM), each at least 2048 elements (8 per thread)
        int blocks;
        int64_t len = split_chunk(a.n, (512 + a.n_rows - 1) / a.n_rows, 2048, &blocks);
        len = (len + E - 1) / E * E;
        blocks = (int)((a.n + len - 1) / len);
        return launch(argmax_split<T>, dim3((unsigned)blocks, (unsigned)a.n_rows), dim3(256), 0, s, pdl, a,
                      rows_aligned16(a.x), len, static_cast<argmax_split_rows *>(scratch));
    }
    const int64_t per_thread = a.n / (16 / (int64_t)sizeof(T)) + 1;
    int threads = 32;
    while (threads < 1024 && threads < per_thread)
        threads *= 2;
    const unsigned grid = (unsigned)(a.n_rows < 65535 ? a.n_rows : 65535);
    return launch(argmax_rows<T>, dim3(grid), dim3(threads), 0, s, pdl, a, rows_aligned16(a.x));
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_argmax(const mlxn_argmax_args *a, void *scratch, cudaStream_t s, bool pdl)
{
    switch (a->dtype) {
    case MLXN_DTYPE_F32: return launch_t<float>(*a, scratch, s, pdl);
    case MLXN_DTYPE_F16: return launch_t<__half>(*a, scratch, s, pdl);
    case MLXN_DTYPE_BF16: return launch_t<__nv_bfloat16>(*a, scratch, s, pdl);
    }
    return cudaErrorInvalidValue;
}
