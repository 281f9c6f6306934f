// MoE gating on CUDA: one warp per token, up to 4 tokens per block (grid-stride over tokens).
// Lane l holds experts l, l + 32, l + 64, ... in registers (VPL = values per lane, a power of
// two >= E / 32, at most 16: E <= 512), so the logits load coalesced and softmax's max and sum
// are warp shuffles. Selection runs top_k rounds of a warp argmax over (score, expert) pairs;
// round j takes the best pair ordered after round j - 1's winner in the order (score
// descending, expert ascending), so nothing needs marking as taken and equal scores go to the
// lower expert. Every lane sees each winner and adds its probability to the normalizer in slot
// order; lane j writes slot j. A decode step (T = 1) is one warp: about top_k * (VPL + 15)
// dependent steps, a few microseconds.
#include <limits.h>

#include "common.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int MAX_WARPS = 4;

// (s, i) comes before (s2, i2) in selection order.
__device__ __forceinline__ bool before(float s, int i, float s2, int i2)
{
    return s > s2 || (s == s2 && i < i2);
}

__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
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
                p[v] = 1.0f / (1.0f + expf(-p[v]));
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

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_moe_gate(const mlxn_moe_gate_args *a, cudaStream_t s, bool pdl)
{
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
    if (vpl <= MLXN_CUDA_MOE_GATE_MAX_EXPERTS / 32)
        return launch(moe_gate_warp_per_token<MLXN_CUDA_MOE_GATE_MAX_EXPERTS / 32>, grid, block, 0, s, pdl, *a);
    return cudaErrorInvalidValue; // the backend refuses E > MLXN_CUDA_MOE_GATE_MAX_EXPERTS first
}
