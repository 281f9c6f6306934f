// Where the quantized mat-vecs write their results: the fusions of mlxn_qmatmul_fused applied to
// one output, shared by the decode kernels.
#ifndef MLXN_CUDA_QMATMUL_OUT_CUH
#define MLXN_CUDA_QMATMUL_OUT_CUH

#include "../core/act_math.h"
#include "../core/op_list.h"
#include "../core/rope_math.h"
#include "common.cuh"

namespace mlxn_cuda {

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

// Output n of a q, k, v projection (M = 1, mlxn_cuda_qmatmul_fuses_qkv): v, rotated with its
// pair's value (NORMAL pairs are rows 2i and 2i + 1 of a head) when n is in the rope heads,
// stored in y, and stored in the KV cache when n is in the K or V heads; what mlxn_rope and
// mlxn_kv_append would do after the product, with their formulas.
__device__ __forceinline__ void store_qkv(const mlxn_qmatmul_args &a, const qkv_epilogue<true> &q, int64_t n, float v,
                                          float pair)
{
    if (q.rope_on) {
        const mlxn_rope_args &r = q.rope;
        const int64_t h = n / r.head_dim, d = n % r.head_dim, i = d / 2;
        if (h < r.n_head && d < r.n_rot) {
            float c, s;
            mlxn_rope_cos_sin((double)mlxn_rope_pos(&r, 0, 0, i) * mlxn_rope_freq(&r, i), r.mscale, &c, &s);
            v = d & 1 ? pair * s + v * c : v * c - pair * s;
        }
    }
    float *y = reinterpret_cast<float *>(mlxn_rows_ptr(&a.y, 0));
    y[n] = v;
    if (q.kv_on) {
        const mlxn_kv_append_args &k = q.kv;
        const int64_t j = (int64_t)(reinterpret_cast<const char *>(y + n) - k.src.base) / (int64_t)sizeof(float);
        if (j >= 0 && j < 2 * k.H * k.D) {
            const int64_t b = j / (k.H * k.D), h = j / k.D % k.H, first = k.pos[b];
            if (first >= 0)
                store_any(k.cache_dtype, k.cache.base + b * k.cache.s0 + h * k.cache.s1 + first % k.S * k.cache.s2,
                          j % k.D, v);
        }
    }
}

} // namespace mlxn_cuda

#endif
