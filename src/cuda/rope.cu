// RoPE on CUDA. A block owns a token (grid-stride over tokens) and groups of heads (grid-stride
// over groups in y). For each chunk of up to 256 pairs it first forms the token's (cos, sin) in
// shared memory: frequency and angle in f64, reduced to [-pi, pi], then the f32 sin / cos; the
// f64 part is a few dozen instructions per pair and token, shared by all heads of the group.
// Then each thread rotates V pairs of a head: with 16-byte loads and stores where the layout
// allows (NEOX: V = 16 bytes of elements from each half; NORMAL: 16 bytes of interleaved
// pairs), one pair otherwise. A thread's first x is loaded before the table so that its
// latency overlaps the trigonometry. Dims past n_rot are copied when y is not x.
//
// With the per-head RMS norm (Gemma 3, Qwen3: a decode step has 5 or 24 heads of 128..256)
// one warp owns a head row and a block up to 8 heads of one token, so the table is shared by
// the block's heads and the row's sum of squares is a warp reduction (no barrier). The
// warp loads the row once into registers (the first chunk of pairs, which is the whole row for
// D <= 512, as pair items; the first 16 elements per lane of the dims past n_rot), forms the
// table while those loads are in flight, reduces, then normalizes and rotates from registers.
// Longer rows take their remaining pairs and dims from memory again (L1 / L2 hits). The same
// lane owns an element in every pass, and the reduction sits between the reads and the writes,
// so y may be x.
#include "../core/rope_math.h"
#include "common.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int THREADS = 256, CHUNK = 256;

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// N contiguous elements; 16-byte accesses when N of them make whole 16-byte words (the
// launcher checks the alignment).
template <typename T, int N> __device__ __forceinline__ void load_n(const T *p, T (&v)[N])
{
    if constexpr (N * sizeof(T) % 16 == 0) {
#pragma unroll
        for (int w = 0; w < (int)(N * sizeof(T) / 16); w++)
            reinterpret_cast<uint4 *>(v)[w] = reinterpret_cast<const uint4 *>(p)[w];
    } else {
#pragma unroll
        for (int j = 0; j < N; j++)
            v[j] = p[j];
    }
}

template <typename T, int N> __device__ __forceinline__ void store_n(T *p, const T (&v)[N])
{
    if constexpr (N * sizeof(T) % 16 == 0) {
#pragma unroll
        for (int w = 0; w < (int)(N * sizeof(T) / 16); w++)
            reinterpret_cast<uint4 *>(p)[w] = reinterpret_cast<const uint4 *>(v)[w];
    } else {
#pragma unroll
        for (int j = 0; j < N; j++)
            p[j] = v[j];
    }
}

// The pairs of one item: NEOX reads V elements at i and V at i + n_rot/2, NORMAL 2V
// interleaved elements at 2i.
template <typename T, bool NEOX, int V> struct pair_item {
    static constexpr int NA = NEOX ? V : 2 * V, NB = NEOX ? V : 1;
    T xa[NA], xb[NB];

    __device__ __forceinline__ void load(const T *row, int64_t i, int64_t half)
    {
        load_n(row + (NEOX ? i : 2 * i), xa);
        if constexpr (NEOX)
            load_n(row + i + half, xb);
    }

    // Rotated and rounded once to T; with NORM, x * scale * w first in f32 (w: the head's norm
    // weights).
    template <bool NORM>
    __device__ __forceinline__ void rotate_store(T *row, int64_t i, int64_t half, const float2 *cs, const float *w,
                                                 float scale)
    {
        float wa[NA], wb[NB];
        if constexpr (NORM) {
            load_n(w + (NEOX ? i : 2 * i), wa);
            if constexpr (NEOX)
                load_n(w + i + half, wb);
        }
#pragma unroll
        for (int j = 0; j < V; j++) {
            const float c = cs[j].x, s = cs[j].y;
            float x0 = to_f(NEOX ? xa[j] : xa[2 * j]), x1 = to_f(NEOX ? xb[j] : xa[2 * j + 1]);
            if constexpr (NORM) {
                x0 = x0 * scale * (NEOX ? wa[j] : wa[2 * j]);
                x1 = x1 * scale * (NEOX ? wb[j] : wa[2 * j + 1]);
            }
            const T y0 = from_f<T>(x0 * c - x1 * s), y1 = from_f<T>(x0 * s + x1 * c);
            if constexpr (NEOX) {
                xa[j] = y0;
                xb[j] = y1;
            } else {
                xa[2 * j] = y0;
                xa[2 * j + 1] = y1;
            }
        }
        store_n(row + (NEOX ? i : 2 * i), xa);
        if constexpr (NEOX)
            store_n(row + i + half, xb);
    }

    __device__ __forceinline__ float sum_squares() const
    {
        float ss = 0.f;
#pragma unroll
        for (int j = 0; j < NA; j++)
            ss += to_f(xa[j]) * to_f(xa[j]);
        if constexpr (NEOX) {
#pragma unroll
            for (int j = 0; j < NB; j++)
                ss += to_f(xb[j]) * to_f(xb[j]);
        }
        return ss;
    }
};

template <typename T, int U> __device__ __forceinline__ float sum_squares(const T (&v)[U])
{
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < U; j++)
        ss += to_f(v[j]) * to_f(v[j]);
    return ss;
}

// U dims past n_rot: x * scale * w, rounded to T.
template <typename T, int U> __device__ __forceinline__ void norm_store(T *p, T (&v)[U], const float *w, float scale)
{
    float wv[U];
    load_n(w, wv);
#pragma unroll
    for (int j = 0; j < U; j++)
        v[j] = from_f<T>(to_f(v[j]) * scale * wv[j]);
    store_n(p, v);
}

// V pairs per thread; U elements per pass-through copy unit (16 bytes, or 1). A group holds
// at most max(1, THREADS / pairs per head) heads, so item counts within a group fit in int.
// Three blocks per SM: up to 85 registers (the f64 angle math is live next to the prefetched x;
// at the 64 that ptxas picks for plain 256-thread bounds some variants spill), and still 24 KB
// of loads in flight per SM.
template <typename T, bool NEOX, int V, int U>
__global__ void __launch_bounds__(THREADS, 3) rope_heads(const mlxn_rope_args a, int heads_per_group)
{
    __shared__ float2 cs[CHUNK];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int64_t half = a.n_rot / 2, n_tokens = a.n_rows / a.n_head;
    const int64_t n_groups = (a.n_head + heads_per_group - 1) / heads_per_group;
    const int64_t g0 = blockIdx.y;
    const int e0 = threadIdx.x; // this thread's first item of its first group
    for (int64_t tok = blockIdx.x; tok < n_tokens; tok += gridDim.x) {
        const int64_t b = tok / a.n_tok, t = tok % a.n_tok, row0 = tok * a.n_head;
        for (int64_t i0 = 0; i0 < half; i0 += CHUNK) {
            const int n = (int)(half - i0 < CHUNK ? half - i0 : CHUNK), per_head = n / V;
            const int nh0 = (int)min((int64_t)heads_per_group, a.n_head - g0 * heads_per_group);
            pair_item<T, NEOX, V> it;
            if (e0 < nh0 * per_head) {
                const int64_t r = row0 + g0 * heads_per_group + e0 / per_head;
                it.load(reinterpret_cast<const T *>(mlxn_rows_ptr(&a.x, r)), i0 + (e0 % per_head) * V, half);
            }
            if (threadIdx.x < n) {
                const int64_t i = i0 + threadIdx.x;
                float c, s;
                mlxn_rope_cos_sin((double)mlxn_rope_pos(&a, b, t, i) * mlxn_rope_freq(&a, i), a.mscale, &c, &s);
                cs[threadIdx.x] = make_float2(c, s);
            }
            __syncthreads();
            for (int64_t g = g0; g < n_groups; g += gridDim.y) {
                const int nh = (int)min((int64_t)heads_per_group, a.n_head - g * heads_per_group);
                for (int e = threadIdx.x; e < nh * per_head; e += THREADS) {
                    const int k = (e % per_head) * V;
                    const int64_t r = row0 + g * heads_per_group + e / per_head;
                    if (g != g0 || e != e0)
                        it.load(reinterpret_cast<const T *>(mlxn_rows_ptr(&a.x, r)), i0 + k, half);
                    it.template rotate_store<false>(reinterpret_cast<T *>(mlxn_rows_ptr(&a.y, r)), i0 + k, half, cs + k,
                                                    nullptr, 1.0f);
                }
            }
            __syncthreads(); // cs is read before the next chunk overwrites it
        }
        if (a.n_rot == a.head_dim || a.x.base == a.y.base)
            continue; // nothing past n_rot, or in place: the dims are already there
        const int64_t units = (a.head_dim - a.n_rot) / U;
        for (int64_t g = g0; g < n_groups; g += gridDim.y) {
            const int64_t nh = min((int64_t)heads_per_group, a.n_head - g * heads_per_group);
            for (int64_t e = threadIdx.x; e < nh * units; e += THREADS) {
                const int64_t r = row0 + g * heads_per_group + e / units, j = a.n_rot + (e % units) * U;
                T v[U];
                load_n(reinterpret_cast<const T *>(mlxn_rows_ptr(&a.x, r)) + j, v);
                store_n(reinterpret_cast<T *>(mlxn_rows_ptr(&a.y, r)) + j, v);
            }
        }
    }
}

constexpr int NORM_WARPS = 8;

// (cos, sin) of pairs i0 .. i0 + n - 1 of token (b, t) into cs, by all threads of the block.
__device__ __forceinline__ void fill_table(const mlxn_rope_args &a, int64_t b, int64_t t, int64_t i0, int n, float2 *cs)
{
    for (int k = threadIdx.x; k < n; k += blockDim.x) {
        float c, s;
        mlxn_rope_cos_sin((double)mlxn_rope_pos(&a, b, t, i0 + k) * mlxn_rope_freq(&a, i0 + k), a.mscale, &c, &s);
        cs[k] = make_float2(c, s);
    }
}

// Warp `warp` of a block handles head (group * heads_per_block + warp) of a token; blocks go
// grid-stride over (token, group). V pairs per item and U pass-through dims per unit as in
// rope_heads. A lane holds K items (one chunk of CHUNK pairs per warp) and KU units: 16
// elements each way, so rows of D <= 512 stay in registers whatever T, V and U are.
template <typename T, bool NEOX, int V, int U>
__global__ void __launch_bounds__(32 * NORM_WARPS, 2) rope_norm_warp_per_head(const mlxn_rope_args a,
                                                                              int heads_per_block)
{
    constexpr int K = CHUNK / (32 * V), KU = 16 / U;
    __shared__ float2 cs[CHUNK];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t half = a.n_rot / 2, n_tokens = a.n_rows / a.n_head;
    const int64_t groups = (a.n_head + heads_per_block - 1) / heads_per_block;
    const int64_t units = (a.head_dim - a.n_rot) / U;
    const int n0 = (int)(half < CHUNK ? half : CHUNK), items0 = n0 / V;
    for (int64_t blk = blockIdx.x; blk < n_tokens * groups; blk += gridDim.x) {
        const int64_t tok = blk / groups, b = tok / a.n_tok, t = tok % a.n_tok;
        const int64_t h = (blk % groups) * heads_per_block + warp, r = tok * a.n_head + h;
        const bool active = h < a.n_head; // uniform over the warp
        const T *x = active ? reinterpret_cast<const T *>(mlxn_rows_ptr(&a.x, r)) : nullptr;
        T *y = active ? reinterpret_cast<T *>(mlxn_rows_ptr(&a.y, r)) : nullptr;
        const float *w = active ? reinterpret_cast<const float *>(reinterpret_cast<const char *>(a.norm_w) + h * a.norm_w_stride)
                                : nullptr;
        pair_item<T, NEOX, V> it[K];
        T pu[KU][U];
        if (active) {
#pragma unroll
            for (int k = 0; k < K; k++)
                if (lane + 32 * k < items0)
                    it[k].load(x, (int64_t)(lane + 32 * k) * V, half);
#pragma unroll
            for (int k = 0; k < KU; k++)
                if (lane + 32 * k < units)
                    load_n(x + a.n_rot + (int64_t)(lane + 32 * k) * U, pu[k]);
        }
        fill_table(a, b, t, 0, n0, cs);
        float scale = 0.f;
        if (active) {
            float ss = 0.f;
#pragma unroll
            for (int k = 0; k < K; k++)
                if (lane + 32 * k < items0)
                    ss += it[k].sum_squares();
#pragma unroll
            for (int k = 0; k < KU; k++)
                if (lane + 32 * k < units)
                    ss += sum_squares(pu[k]);
            for (int64_t i = CHUNK + (int64_t)lane * V; i < half; i += 32 * V) {
                pair_item<T, NEOX, V> more;
                more.load(x, i, half);
                ss += more.sum_squares();
            }
            for (int64_t u = lane + 32 * KU; u < units; u += 32) {
                T v[U];
                load_n(x + a.n_rot + u * U, v);
                ss += sum_squares(v);
            }
            // f64 for the one division and square root per head
            scale = (float)(1.0 / sqrt((double)warp_sum(ss) / (double)a.head_dim + (double)a.norm_eps));
        }
        __syncthreads(); // the first table is complete
        if (active) {
#pragma unroll
            for (int k = 0; k < K; k++) {
                const int e = lane + 32 * k;
                if (e < items0)
                    it[k].template rotate_store<true>(y, (int64_t)e * V, half, cs + e * V, w, scale);
            }
        }
        for (int64_t i0 = CHUNK; i0 < half; i0 += CHUNK) {
            const int n = (int)(half - i0 < CHUNK ? half - i0 : CHUNK);
            __syncthreads(); // every warp is done with the previous table
            fill_table(a, b, t, i0, n, cs);
            __syncthreads();
            if (active) {
                for (int e = lane; e < n / V; e += 32) {
                    pair_item<T, NEOX, V> more;
                    more.load(x, i0 + (int64_t)e * V, half);
                    more.template rotate_store<true>(y, i0 + (int64_t)e * V, half, cs + e * V, w, scale);
                }
            }
        }
        if (active) {
#pragma unroll
            for (int k = 0; k < KU; k++) {
                const int64_t j = a.n_rot + (int64_t)(lane + 32 * k) * U;
                if (lane + 32 * k < units)
                    norm_store(y + j, pu[k], w + j, scale);
            }
            for (int64_t u = lane + 32 * KU; u < units; u += 32) {
                const int64_t j = a.n_rot + u * U;
                T v[U];
                load_n(x + j, v);
                norm_store(y + j, v, w + j, scale);
            }
        }
        __syncthreads(); // cs is read before the next token's table overwrites it
    }
}

bool rows_aligned(const mlxn_rows &r)
{
    return ((uintptr_t)r.base & 15) == 0 && r.s0 % 16 == 0 && r.s1 % 16 == 0 && r.s2 % 16 == 0;
}

template <typename T, bool NEOX, int V, int U> cudaError_t launch_v(const mlxn_rope_args &a, cudaStream_t s, bool pdl)
{
    const int64_t half = a.n_rot / 2, per_head = (half < CHUNK ? half : CHUNK) / V;
    // enough heads per group that a thread has about one item
    const int heads_per_group = per_head >= THREADS ? 1 : (int)(THREADS / per_head);
    const int64_t n_tokens = a.n_rows / a.n_head, n_groups = (a.n_head + heads_per_group - 1) / heads_per_group;
    const dim3 grid((unsigned)(n_tokens < (1 << 24) ? n_tokens : (1 << 24)), (unsigned)(n_groups < 65535 ? n_groups : 65535));
    return launch(rope_heads<T, NEOX, V, U>, grid, dim3(THREADS), 0, s, pdl, a, heads_per_group);
}

template <typename T, bool NEOX, int V, int U>
cudaError_t launch_norm(const mlxn_rope_args &a, cudaStream_t s, bool pdl)
{
    // as few groups as 8 warps allow, heads spread evenly over them (5 heads: one block of 5
    // warps; 24: three of 8)
    const int64_t groups = (a.n_head + NORM_WARPS - 1) / NORM_WARPS;
    const int heads_per_block = (int)((a.n_head + groups - 1) / groups);
    const int64_t blocks = a.n_rows / a.n_head * groups;
    const dim3 grid((unsigned)(blocks < (1 << 24) ? blocks : (1 << 24)));
    return launch(rope_norm_warp_per_head<T, NEOX, V, U>, grid, dim3(32 * heads_per_block), 0, s, pdl, a,
                  heads_per_block);
}

template <typename T> cudaError_t launch_t(const mlxn_rope_args &a, cudaStream_t s, bool pdl)
{
    constexpr int E = 16 / sizeof(T); // elements per 16 bytes
    const bool neox = a.style == MLXN_ROPE_NEOX;
    // 16-byte items: NEOX needs E pairs per half, NORMAL E / 2 pairs; whole words past n_rot;
    // norm weights read in 16-byte words too
    const bool vec = a.n_rot % (neox ? 2 * E : E) == 0 && a.head_dim % E == 0 && rows_aligned(a.x) && rows_aligned(a.y) &&
                     (!a.norm_w || ((uintptr_t)a.norm_w % 16 == 0 && a.norm_w_stride % 16 == 0));
    if (a.norm_w) {
        if (neox)
            return vec ? launch_norm<T, true, E, E>(a, s, pdl) : launch_norm<T, true, 1, 1>(a, s, pdl);
        return vec ? launch_norm<T, false, E / 2, E>(a, s, pdl) : launch_norm<T, false, 1, 1>(a, s, pdl);
    }
    if (neox)
        return vec ? launch_v<T, true, E, E>(a, s, pdl) : launch_v<T, true, 1, 1>(a, s, pdl);
    return vec ? launch_v<T, false, E / 2, E>(a, s, pdl) : launch_v<T, false, 1, 1>(a, s, pdl);
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_rope(const mlxn_rope_args *a, cudaStream_t s, bool pdl)
{
    switch (a->dtype) {
    case MLXN_DTYPE_F32: return launch_t<float>(*a, s, pdl);
    case MLXN_DTYPE_F16: return launch_t<__half>(*a, s, pdl);
    case MLXN_DTYPE_BF16: return launch_t<__nv_bfloat16>(*a, s, pdl);
    }
    return cudaErrorInvalidValue;
}
