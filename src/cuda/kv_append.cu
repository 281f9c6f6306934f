// KV-cache append on CUDA: cache[b, h, (pos[b] + t) % S, :] = src[b, t, h, :], converted to the
// cache's dtype (round to nearest even). One thread per 8 elements of a source row, grid-stride;
// the slot comes from pos in device memory, so the launch can be captured once and replayed.
#include "common.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int THREADS = 256, PER_THREAD = 8;

__device__ __forceinline__ void store_as(int dt, void *p, int64_t i, float v)
{
    if (dt == MLXN_DTYPE_F16)
        static_cast<__half *>(p)[i] = __float2half_rn(v);
    else if (dt == MLXN_DTYPE_BF16)
        static_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16_rn(v);
    else
        static_cast<float *>(p)[i] = v;
}

__global__ void __launch_bounds__(THREADS) kv_append_rows(const mlxn_kv_append_args a)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    const int64_t chunks = (a.D + PER_THREAD - 1) / PER_THREAD, total = a.B * a.T * a.H * chunks;
    for (int64_t i = (int64_t)blockIdx.x * THREADS + threadIdx.x; i < total; i += (int64_t)gridDim.x * THREADS) {
        const int64_t c = i % chunks, r = i / chunks;
        const int64_t h = r % a.H, t = (r / a.H) % a.T, b = r / (a.H * a.T);
        const int64_t first = a.pos[b];
        if (first < 0)
            continue;
        const char *src = a.src.base + b * a.src.s0 + t * a.src.s1 + h * a.src.s2;
        char *dst = a.cache.base + b * a.cache.s0 + h * a.cache.s1 + ((first + t) % a.S) * a.cache.s2;
        const int64_t d1 = (c + 1) * PER_THREAD < a.D ? (c + 1) * PER_THREAD : a.D;
        for (int64_t d = c * PER_THREAD; d < d1; d++)
            store_as(a.cache_dtype, dst, d, load_any(a.src_dtype, src, d));
    }
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_kv_append(const mlxn_kv_append_args *a, cudaStream_t s, bool pdl)
{
    const int64_t work = a->B * a->T * a->H * ((a->D + PER_THREAD - 1) / PER_THREAD);
    const int64_t blocks = (work + THREADS - 1) / THREADS;
    const unsigned grid = (unsigned)(blocks < 65535 ? blocks : 65535);
    return launch(kv_append_rows, dim3(grid), dim3(THREADS), 0, s, pdl, *a);
}
