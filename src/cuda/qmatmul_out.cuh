// Where the quantized mat-vecs write their results: the fusions of mlxn_qmatmul_fused applied to
// one output, shared by the decode kernels.
#ifndef MLXN_CUDA_QMATMUL_OUT_CUH
#define MLXN_CUDA_QMATMUL_OUT_CUH

#include "../core/act_math.h"
#include "../core/op_list.h"
#include "../core/rope_math.h"
#include "common.cuh"

namespace mlxn_cuda {

// The fused RMS norm's scale of a row of x from its sum of squares (in f64, as every decode kernel
// sums them): 1 / sqrt(mean(x^2) + eps).
__device__ __forceinline__ float norm_scale(const mlxn_qmatmul_args &a, double ss)
{
    return (float)(1.0 / sqrt(ss / (double)a.K + (double)a.norm_eps));
}

// y[m][n] from the sums of a row of W: the gate g (or the plain product) and, with GLU, the up u.
__device__ __forceinline__ void store_out(const mlxn_qmatmul_args &a, int m, int64_t n, float g, float u)
{
    float *y = reinterpret_cast<float *>(mlxn_rows_ptr(&a.y, m)) + n;
    const float v = a.glu ? mlxn_act_f32(a.glu_act, g) * u : g;
    *y = a.accumulate ? *y + v : v;
}

// The q, k, v epilogue's arguments, a kernel parameter only of the kernels that have it (every
// launch copies the parameters: the plain products' stay small).
template <bool QKV> struct qkv_epilogue {};
template <> struct qkv_epilogue<true> {
    bool rope_on, kv_on;
    mlxn_rope_args rope;
    mlxn_kv_append_args kv;
};

// The positions the epilogue needs, loaded once the previous kernel is done (the loads then fly
// while x is staged, not in the chain of a row's results): the token's (one for every pair: no
// sections) and K's and V's first cache slots.
struct qkv_positions {
    int32_t rope, kv[2];
};

__device__ __forceinline__ qkv_positions load_qkv_positions(const qkv_epilogue<true> &q)
{
    qkv_positions p = {0, {0, 0}};
    if (q.rope_on)
        p.rope = mlxn_rope_pos(&q.rope, 0, 0, 0);
    if (q.kv_on) {
        p.kv[0] = q.kv.pos[0];
        p.kv[1] = q.kv.pos[1];
    }
    return p;
}

// The rotation of output n: (cos, sin) of its pair (NORMAL pairs are rows 2i and 2i + 1 of a
// head) when n is in the rope heads, else (1, 0) and rot false. Formed before the row's product,
// so that its f64 angle overlaps the weight loads.
struct qkv_rotation {
    float c, s;
    bool rot;
};

__device__ __forceinline__ qkv_rotation rotation_of(const qkv_epilogue<true> &q, const qkv_positions &p, int64_t n)
{
    qkv_rotation r = {1.f, 0.f, false};
    if (q.rope_on) {
        const int64_t h = n / q.rope.head_dim, d = n % q.rope.head_dim;
        if (h < q.rope.n_head && d < q.rope.n_rot) {
            mlxn_rope_cos_sin((double)p.rope * mlxn_rope_freq(&q.rope, d / 2), q.rope.mscale, &r.c, &r.s);
            r.rot = true;
        }
    }
    return r;
}

// Output n of a q, k, v projection (M = 1, mlxn_cuda_qmatmul_fuses_qkv): v, rotated with its
// pair's value by r, stored in y, and stored in the KV cache when n is in the K or V heads; what
// mlxn_rope and mlxn_kv_append would do after the product, with their formulas.
__device__ __forceinline__ void store_qkv(const mlxn_qmatmul_args &a, const qkv_epilogue<true> &q,
                                          const qkv_positions &p, const qkv_rotation &r, int64_t n, float v,
                                          float pair)
{
    if (r.rot)
        v = n & 1 ? pair * r.s + v * r.c : v * r.c - pair * r.s;
    float *y = reinterpret_cast<float *>(mlxn_rows_ptr(&a.y, 0));
    y[n] = v;
    if (q.kv_on) {
        const mlxn_kv_append_args &k = q.kv;
        const int64_t j = (int64_t)(reinterpret_cast<const char *>(y + n) - k.src.base) / (int64_t)sizeof(float);
        if (j >= 0 && j < 2 * k.H * k.D) {
            const int64_t b = j / (k.H * k.D), h = j / k.D % k.H, first = p.kv[b];
            if (first >= 0)
                store_any(k.cache_dtype, k.cache.base + b * k.cache.s0 + h * k.cache.s1 + first % k.S * k.cache.s2,
                          j % k.D, v);
        }
    }
}

} // namespace mlxn_cuda

#endif
