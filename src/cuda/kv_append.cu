// KV-cache append on CUDA: cache[b, h, (pos[b] + t) % S, :] = src[b, t, h, :], converted to the
// cache's dtype (round to nearest even). One thread per 8 elements of a source row, grid-stride;
// the slot comes from pos in device memory, so the launch can be captured once and replayed.
//
// A q8_0 cache takes a warp per 32-element block: lane j loads element j (coalesced), the
// block's amax is a warp max (exact in any order), and each lane writes its code byte, lane 0
// the scale, with the formula of ggml_encode.h (the reference quantizer's, bit for bit). Byte
// and 2-byte stores only: blocks are 34 bytes, 2-byte aligned at best.
#include "common.cuh"
#include "../formats/ggml_encode.h"

namespace {

using namespace mlxn_cuda;

constexpr int THREADS = 256, PER_THREAD = 8;

__global__ void __launch_bounds__(THREADS) kv_append_rows(const mlxn_kv_append_args a)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    const int64_t chunks = (a.D + PER_THREAD - 1) / PER_THREAD, total = a.B * a.T * a.H * chunks;
    for (int64_t i = (int64_t)blockIdx.x * THREADS + threadIdx.x; i < total; i += (int64_t)gridDim.x * THREADS) {
        const int64_t c = i % chunks, r = i / chunks;
        const int64_t h = r % a.H, t = (r / a.H) % a.T, b = r / (a.H * a.T);
        // the source before pos: both loads in flight at once (a decode step's chain is made of
        // such round trips)
        const char *src = a.src.base + b * a.src.s0 + t * a.src.s1 + h * a.src.s2;
        const int64_t d0 = c * PER_THREAD, n = a.D - d0 < PER_THREAD ? a.D - d0 : PER_THREAD;
        float val[PER_THREAD];
#pragma unroll
        for (int e = 0; e < PER_THREAD; e++)
            val[e] = e < n ? load_any(a.src_dtype, src, d0 + e) : 0.0f;
        const int64_t first = a.pos[b];
        if (first < 0)
            continue;
        char *dst = a.cache.base + b * a.cache.s0 + h * a.cache.s1 + ((first + t) % a.S) * a.cache.s2;
#pragma unroll
        for (int e = 0; e < PER_THREAD; e++)
            if (e < n)
                store_any(a.cache_dtype, dst, d0 + e, val[e]);
    }
}

constexpr int Q8_WARPS = THREADS / 32;

// A warp per q8_0 block (b, t, h, block k of the row), grid-stride; the loop bound is uniform
// across the warp, so every lane reaches the shuffles.
__global__ void __launch_bounds__(THREADS) kv_append_q8_0_blocks(const mlxn_kv_append_args a)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    const int lane = threadIdx.x & 31;
    const int64_t nb = a.D / MLXN_QK, total = a.B * a.T * a.H * nb;
    for (int64_t i = (int64_t)blockIdx.x * Q8_WARPS + (threadIdx.x >> 5); i < total;
         i += (int64_t)gridDim.x * Q8_WARPS) {
        const int64_t k = i % nb, r = i / nb;
        const int64_t h = r % a.H, t = (r / a.H) % a.T, b = r / (a.H * a.T);
        const char *src = a.src.base + b * a.src.s0 + t * a.src.s1 + h * a.src.s2;
        const float x = load_any(a.src_dtype, src, k * MLXN_QK + lane); // before pos: both in flight
        const int64_t first = a.pos[b];
        if (first < 0)
            continue; // uniform across the warp: the whole block is skipped
        unsigned char *blk = reinterpret_cast<unsigned char *>(a.cache.base + b * a.cache.s0 + h * a.cache.s1 +
                                                               ((first + t) % a.S) * a.cache.s2) +
                             k * (int64_t)sizeof(mlxn_block_q8_0);
        float amax = mlxn_q8_0_abs(x);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        uint16_t d_bits;
        const float id = mlxn_q8_0_scale(amax, &d_bits);
        blk[2 + lane] = static_cast<unsigned char>(mlxn_q8_0_code(x, id));
        if (lane == 0) {
            blk[0] = static_cast<unsigned char>(d_bits & 0xff);
            blk[1] = static_cast<unsigned char>(d_bits >> 8);
        }
    }
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_kv_append(const mlxn_kv_append_args *a, cudaStream_t s, bool pdl)
{
    if (a->cache_dtype == MLXN_DTYPE_Q8_0) {
        const int64_t blocks = (a->B * a->T * a->H * (a->D / MLXN_QK) + Q8_WARPS - 1) / Q8_WARPS;
        const unsigned grid = (unsigned)(blocks < 65535 ? blocks : 65535);
        return launch(kv_append_q8_0_blocks, dim3(grid), dim3(THREADS), 0, s, pdl, *a);
    }
    const int64_t work = a->B * a->T * a->H * ((a->D + PER_THREAD - 1) / PER_THREAD);
    const int64_t blocks = (work + THREADS - 1) / THREADS;
    const unsigned grid = (unsigned)(blocks < 65535 ? blocks : 65535);
    return launch(kv_append_rows, dim3(grid), dim3(THREADS), 0, s, pdl, *a);
}
