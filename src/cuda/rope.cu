// RoPE on CUDA. A block owns a token (grid-stride over tokens) and groups of heads (grid-stride
// over groups in y). For each chunk of up to 256 pairs it first forms the token's (cos, sin) in
// shared memory: frequency and angle in f64, reduced to [-pi, pi], then the f32 sin / cos; the
// f64 part is a few dozen instructions per pair and token, shared by all heads of the group.
// Then each thread rotates V pairs of a head: with 16-byte loads and stores where the layout
// allows (NEOX: V = 16 bytes of elements from each half; NORMAL: 16 bytes of interleaved
// pairs), one pair otherwise. A thread's first x is loaded before the table so that its
// latency overlaps the trigonometry. Dims past n_rot are copied when y is not x.
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

    __device__ __forceinline__ void rotate_store(T *row, int64_t i, int64_t half, const float2 *cs)
    {
#pragma unroll
        for (int j = 0; j < V; j++) {
            const float c = cs[j].x, s = cs[j].y;
            const float x0 = to_f(NEOX ? xa[j] : xa[2 * j]), x1 = to_f(NEOX ? xb[j] : xa[2 * j + 1]);
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
};

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
                    it.rotate_store(reinterpret_cast<T *>(mlxn_rows_ptr(&a.y, r)), i0 + k, half, cs + k);
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

template <typename T> cudaError_t launch_t(const mlxn_rope_args &a, cudaStream_t s, bool pdl)
{
    constexpr int E = 16 / sizeof(T); // elements per 16 bytes
    const bool neox = a.style == MLXN_ROPE_NEOX;
    // 16-byte items: NEOX needs E pairs per half, NORMAL E / 2 pairs; whole words past n_rot
    const bool vec = a.n_rot % (neox ? 2 * E : E) == 0 && a.head_dim % E == 0 && rows_aligned(a.x) && rows_aligned(a.y);
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
