// MoE gating on CUDA, two kernels with one selection rule.
//
// E <= 512: one warp per token, up to 4 tokens per block (grid-stride over tokens). Lane l holds
// experts l, l + 32, l + 64, ... in registers (VPL = values per lane, a power of two >= E / 32,
// at most 16), so the logits load coalesced and softmax's max and sum are warp shuffles.
// Selection runs top_k rounds of a warp argmax over (score, expert) pairs; round j takes the
// best pair ordered after round j - 1's winner in the order (score descending, expert
// ascending), so nothing needs marking as taken and equal scores go to the lower expert. Every
// lane sees each winner and adds its probability to the normalizer in slot order; lane j writes
// slot j. A decode step (T = 1) is one warp: about top_k * (VPL + 15) dependent steps, a few
// microseconds.
//
// E > 512: one block per token (grid-stride over tokens), thread i owning experts i, i + B,
// i + 2B, ... (B threads), so loads stay coalesced. Softmax's max and sum are block reductions;
// the probabilities sit in dynamic shared memory (each thread reads back only its own experts,
// so filling them needs no barrier) up to BLOCK_CACHED_MAX_EXPERTS, past that every round
// recomputes them from the logits with the same expression, so every round sees the same bits
// and the order stays a strict total order across rounds. The rounds are those of the warp
// kernel with a block argmax: a warp argmax, then every thread merges the warps' winners from
// shared memory in the same order, so all threads agree on the winner. Any E the op accepts
// (up to 2^31 - 1) runs.
#include <limits.h>

#include "block_reduce.cuh"
#include "common.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int MAX_WARPS = 4;
// The most experts of the warp kernel: 16 per lane in registers.
constexpr int WARP_MAX_EXPERTS = 512;
// The block kernel: probabilities cached in 32 KiB of shared memory (within the 48 KiB a block
// gets without opting in; six blocks fit an SM for prefill); past that recomputed per round by 4x
// the threads, which keeps a round's scan short.
constexpr int BLOCK_CACHED_MAX_EXPERTS = 8192;
constexpr int BLOCK_THREADS_CACHED = 256, BLOCK_THREADS_RECOMPUTED = 1024;

// (s, i) comes before (s2, i2) in selection order.
__device__ __forceinline__ bool before(float s, int i, float s2, int i2)
{
    return s > s2 || (s == s2 && i < i2);
}

__device__ __forceinline__ float sigmoid(float l)
{
    return 1.0f / (1.0f + expf(-l));
}

// The best of the warp's (score, expert, probability) triples in selection order, in every lane.
__device__ __forceinline__ void warp_best(float &bs, int &bi, float &bp)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float os = __shfl_xor_sync(0xffffffffu, bs, o), op = __shfl_xor_sync(0xffffffffu, bp, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (before(os, oi, bs, bi)) {
            bs = os;
            bi = oi;
            bp = op;
        }
    }
}

template <int VPL> __global__ void __launch_bounds__(MAX_WARPS * 32) moe_gate_warp_per_token(const mlxn_moe_gate_args a)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    const int E = (int)a.n_experts;
    for (int64_t t = (int64_t)blockIdx.x * warps + (threadIdx.x >> 5); t < a.n_tokens;
         t += (int64_t)gridDim.x * warps) {
        const char *x = mlxn_rows_ptr(&a.logits, t);
        float p[VPL], s[VPL];
        float m = -INFINITY;
#pragma unroll
        for (int v = 0; v < VPL; v++) {
            const int e = lane + 32 * v;
            p[v] = e < E ? load_any(a.dtype, x, e) : -INFINITY;
            m = fmaxf(m, p[v]);
        }
        if (a.gating == MLXN_MOE_GATING_SOFTMAX) {
            m = warp_max(m);
            float sum = 0.0f;
#pragma unroll
            for (int v = 0; v < VPL; v++) {
                p[v] = lane + 32 * v < E ? expf(p[v] - m) : 0.0f;
                sum += p[v];
            }
            sum = warp_sum(sum);
#pragma unroll
            for (int v = 0; v < VPL; v++)
                p[v] = p[v] / sum;
        } else {
#pragma unroll
            for (int v = 0; v < VPL; v++)
                p[v] = sigmoid(p[v]);
        }
        // experts past E score -inf and come after every expert (their index is larger), and
        // top_k <= E, so they are never taken
#pragma unroll
        for (int v = 0; v < VPL; v++) {
            const int e = lane + 32 * v;
            s[v] = e >= E ? -INFINITY : a.bias ? p[v] + a.bias[e] : p[v];
        }
        float prev_s = INFINITY, wsum = 0.0f, my_p = 0.0f;
        int prev_i = -1, my_id = 0;
        for (int j = 0; j < a.top_k; j++) {
            float bs = -INFINITY, bp = 0.0f;
            int bi = INT_MAX;
#pragma unroll
            for (int v = 0; v < VPL; v++) {
                const int e = lane + 32 * v;
                if (before(prev_s, prev_i, s[v], e) && before(s[v], e, bs, bi)) {
                    bs = s[v];
                    bi = e;
                    bp = p[v];
                }
            }
            warp_best(bs, bi, bp);
            if (lane == j) {
                my_id = bi;
                my_p = bp;
            }
            wsum += bp;
            prev_s = bs;
            prev_i = bi;
        }
        if (lane < a.top_k) {
            reinterpret_cast<int32_t *>(mlxn_rows_ptr(&a.ids, t))[lane] = my_id;
            reinterpret_cast<float *>(mlxn_rows_ptr(&a.weights, t))[lane] =
                (a.normalize ? my_p / wsum : my_p) * a.scale;
        }
    }
}

// Expert e's probability from its logit: softmax with the row's max m and sum of exponentials,
// or sigmoid. The same expression wherever it is evaluated, so recomputing it gives equal bits.
__device__ __forceinline__ float block_prob(bool softmax, float l, float m, float sum)
{
    return softmax ? expf(l - m) / sum : sigmoid(l);
}

template <bool CACHED>
__global__ void __launch_bounds__(CACHED ? BLOCK_THREADS_CACHED : BLOCK_THREADS_RECOMPUTED)
    moe_gate_block_per_token(const mlxn_moe_gate_args a)
{
    extern __shared__ float prob_cache[]; // [E] when CACHED; thread i reads only experts i + B v
    __shared__ float red[32];
    // the warps' winners of a round, two rounds apart: a warp writes round r + 2's only after
    // round r + 1's barrier, which every thread passes after reading round r's
    __shared__ float win_s[2][32], win_p[2][32];
    __shared__ int win_i[2][32];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const int64_t E = a.n_experts;
    const bool softmax = a.gating == MLXN_MOE_GATING_SOFTMAX;
    int round = 0; // counts across tokens, so consecutive rounds alternate buffers
    for (int64_t t = blockIdx.x; t < a.n_tokens; t += gridDim.x) {
        const char *x = mlxn_rows_ptr(&a.logits, t);
        float m = 0.0f, sum = 1.0f;
        if (softmax) {
            float v = -INFINITY;
            for (int64_t e = threadIdx.x; e < E; e += blockDim.x)
                v = fmaxf(v, load_any(a.dtype, x, e));
            m = block_max(v, red);
            v = 0.0f;
            for (int64_t e = threadIdx.x; e < E; e += blockDim.x)
                v += expf(load_any(a.dtype, x, e) - m);
            sum = block_sum(v, red);
        }
        if (CACHED)
            for (int64_t e = threadIdx.x; e < E; e += blockDim.x)
                prob_cache[e] = block_prob(softmax, load_any(a.dtype, x, e), m, sum);
        float prev_s = INFINITY, wsum = 0.0f, my_p = 0.0f;
        int prev_i = -1, my_id = 0;
        for (int j = 0; j < a.top_k; j++, round++) {
            float bs = -INFINITY, bp = 0.0f;
            int bi = INT_MAX;
            for (int64_t e = threadIdx.x; e < E; e += blockDim.x) {
                const float p = CACHED ? prob_cache[e] : block_prob(softmax, load_any(a.dtype, x, e), m, sum);
                const float sc = a.bias ? p + a.bias[e] : p;
                if (before(prev_s, prev_i, sc, (int)e) && before(sc, (int)e, bs, bi)) {
                    bs = sc;
                    bi = (int)e;
                    bp = p;
                }
            }
            warp_best(bs, bi, bp);
            const int buf = round & 1;
            if (lane == 0) {
                win_s[buf][warp] = bs;
                win_i[buf][warp] = bi;
                win_p[buf][warp] = bp;
            }
            __syncthreads();
            for (int w = 0; w < warps; w++)
                if (before(win_s[buf][w], win_i[buf][w], bs, bi)) {
                    bs = win_s[buf][w];
                    bi = win_i[buf][w];
                    bp = win_p[buf][w];
                }
            if ((int)threadIdx.x == j) {
                my_id = bi;
                my_p = bp;
            }
            wsum += bp;
            prev_s = bs;
            prev_i = bi;
        }
        if ((int)threadIdx.x < a.top_k) {
            reinterpret_cast<int32_t *>(mlxn_rows_ptr(&a.ids, t))[threadIdx.x] = my_id;
            reinterpret_cast<float *>(mlxn_rows_ptr(&a.weights, t))[threadIdx.x] =
                (a.normalize ? my_p / wsum : my_p) * a.scale;
        }
    }
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_moe_gate(const mlxn_moe_gate_args *a, cudaStream_t s, bool pdl)
{
    if (a->n_experts > WARP_MAX_EXPERTS) {
        const dim3 grid((unsigned)(a->n_tokens < (1 << 20) ? a->n_tokens : (1 << 20)));
        if (a->n_experts <= BLOCK_CACHED_MAX_EXPERTS)
            return launch(moe_gate_block_per_token<true>, grid, dim3(BLOCK_THREADS_CACHED),
                          (size_t)a->n_experts * sizeof(float), s, pdl, *a);
        return launch(moe_gate_block_per_token<false>, grid, dim3(BLOCK_THREADS_RECOMPUTED), 0, s, pdl, *a);
    }
    const int64_t warps = a->n_tokens < MAX_WARPS ? a->n_tokens : MAX_WARPS;
    const int64_t blocks = (a->n_tokens + warps - 1) / warps;
    const dim3 grid((unsigned)(blocks < (1 << 20) ? blocks : (1 << 20))), block((unsigned)(32 * warps));
    const int64_t vpl = (a->n_experts + 31) / 32;
    if (vpl <= 1)
        return launch(moe_gate_warp_per_token<1>, grid, block, 0, s, pdl, *a);
    if (vpl <= 2)
        return launch(moe_gate_warp_per_token<2>, grid, block, 0, s, pdl, *a);
    if (vpl <= 4)
        return launch(moe_gate_warp_per_token<4>, grid, block, 0, s, pdl, *a);
    if (vpl <= 8)
        return launch(moe_gate_warp_per_token<8>, grid, block, 0, s, pdl, *a);
    return launch(moe_gate_warp_per_token<WARP_MAX_EXPERTS / 32>, grid, block, 0, s, pdl, *a);
}
