// RMS norm family on CUDA: y = norm(x [+ r or + norm(r) * r_w]) [* w] [* m] over rows, f32
// accumulation.
//
// The op is bound by memory: read x (and r, m), write y (and sum). The fast variants keep the
// whole row in registers between the reduction and the scaling, so every byte is read once,
// with 16-byte loads:
//
//   row (n elements) = nvec vectors of 16 bytes (4 x f32 or 8 x f16/bf16)
//   thread t of the group holds vectors t, t + G, t + 2G, ... (G = threads per row)
//
// Variants, chosen in order by the launcher at the bottom:
//   rms_norm_warp_rows   one warp per row, 8 rows per block: rows of <= 256 vectors
//                        (<= 1024 f32, <= 2048 f16/bf16); no shared memory, no barrier
//   rms_norm_block_row   one block per row, up to 1024 threads x 4 or 512 x 8 vectors: rows
//                        up to 4096 vectors (16384 f32, 32768 f16/bf16)
//   rms_norm_generic     anything else (unaligned views, longer rows): one block per row,
//                        scalar, two passes over global memory (the second mostly hits L2),
//                        f64 per-thread accumulation so very long rows keep their precision

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "block_reduce.cuh"
#include "common.cuh"

namespace {

using namespace mlxn_cuda;

template <typename T> __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v)
{
    return __bfloat162float(v);
}

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v)
{
    return __float2bfloat16_rn(v);
}

// N consecutive elements of type U as floats; p must be aligned to N * sizeof(U) (a multiple
// of 16 bytes).
template <typename U, int N> __device__ __forceinline__ void load_vec(const U *p, float *out)
{
    constexpr int WORDS = N * (int)sizeof(U) / 16;
    static_assert(WORDS * 16 == N * (int)sizeof(U), "vector must be whole 16-byte words");
    uint4 raw[WORDS];
#pragma unroll
    for (int i = 0; i < WORDS; i++)
        raw[i] = reinterpret_cast<const uint4 *>(p)[i];
    const U *e = reinterpret_cast<const U *>(raw);
#pragma unroll
    for (int i = 0; i < N; i++)
        out[i] = to_f32<U>(e[i]);
}

// Pointers of one row of every operand.
template <typename T> struct row_ptrs {
    const T *x, *r, *m;
    T *sum, *y;
};

template <typename T>
__device__ __forceinline__ row_ptrs<T> row_of(const mlxn_rms_norm_args &a, int64_t row)
{
    row_ptrs<T> p;
    p.x = reinterpret_cast<const T *>(mlxn_rows_ptr(&a.x, row));
    p.r = a.r.base ? reinterpret_cast<const T *>(mlxn_rows_ptr(&a.r, row)) : nullptr;
    p.sum = a.r.base ? reinterpret_cast<T *>(mlxn_rows_ptr(&a.sum, row)) : nullptr;
    p.m = a.m.base ? reinterpret_cast<const T *>(mlxn_rows_ptr(&a.m, row)) : nullptr;
    p.y = reinterpret_cast<T *>(mlxn_rows_ptr(&a.y, row));
    return p;
}

// 16 bytes of T as VEC floats, and back.
template <typename T, int VEC> __device__ __forceinline__ void unpack(uint4 raw, float *out)
{
    const T *e = reinterpret_cast<const T *>(&raw);
#pragma unroll
    for (int i = 0; i < VEC; i++)
        out[i] = to_f32<T>(e[i]);
}

template <typename T, int VEC> __device__ __forceinline__ uint4 pack(const float *in)
{
    uint4 raw;
    T *e = reinterpret_cast<T *>(&raw);
#pragma unroll
    for (int i = 0; i < VEC; i++)
        e[i] = from_f32<T>(in[i]);
    return raw;
}

// The per-thread part of a register-resident row: NV vectors of 16 bytes at vector indices
// first, first + stride, ... kept packed in x's dtype (4 registers each, whatever the dtype).
// v holds x or, with a residual, the stored sum; u holds the second input of the row, r or m
// (the public ops never take both; the launcher sends such a call to the generic kernel).
// All loads are issued before the first use so their latencies overlap.
template <typename T, int NV>
__device__ __forceinline__ void load_row_part(const row_ptrs<T> &p, int64_t nvec, int first, int stride, uint4 (&v)[NV],
                                              uint4 (&u)[NV])
{
    const T *second = p.r ? p.r : p.m;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        const int64_t j = first + (int64_t)k * stride;
        if (j < nvec) {
            v[k] = reinterpret_cast<const uint4 *>(p.x)[j];
            if (second)
                u[k] = reinterpret_cast<const uint4 *>(second)[j];
        }
    }
}

// The thread's 16-byte vectors of a weight row (vector j at w + 16 j bytes), loaded with x so that
// their latency overlaps x's instead of following a reduction in the kernel's chain.
template <int NV>
__device__ __forceinline__ void load_weight_part(const void *w, int64_t nvec, int first, int stride, uint4 (&out)[NV])
{
#pragma unroll
    for (int k = 0; k < NV; k++) {
        const int64_t j = first + (int64_t)k * stride;
        if (j < nvec)
            out[k] = static_cast<const uint4 *>(w)[j];
    }
}

// The thread's sum of squares of the held part of r (for norm_r).
template <typename T, int NV, int VEC>
__device__ __forceinline__ float r_squares(int64_t nvec, int first, int stride, const uint4 (&u)[NV])
{
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < NV; k++)
        if (first + (int64_t)k * stride < nvec) {
            float f[VEC];
            unpack<T, VEC>(u[k], f);
#pragma unroll
            for (int i = 0; i < VEC; i++)
                ss = fmaf(f[i], f[i], ss);
        }
    return ss;
}

// With a residual, v becomes the sum x + r (or x + r * rs * r_w with norm_r), rounded to T as
// stored in sum; returns the thread's sum of squares of v.
// rw_raw: r_w's vectors preloaded (16 bytes each: r_w of x's element size), or null.
template <typename T, int NV, int VEC, bool NR>
__device__ __forceinline__ float add_and_square(const mlxn_rms_norm_args &a, const row_ptrs<T> &p, int64_t nvec,
                                                int first, int stride, float rs, uint4 (&v)[NV], const uint4 (&u)[NV],
                                                const uint4 *rw_raw = nullptr)
{
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        const int64_t j = first + (int64_t)k * stride;
        if (j < nvec) {
            float f[VEC];
            unpack<T, VEC>(v[k], f);
            if (p.r) {
                float rv[VEC];
                unpack<T, VEC>(u[k], rv);
                if constexpr (NR) {
                    float wv[VEC];
                    if (!a.r_w)
#pragma unroll
                        for (int i = 0; i < VEC; i++)
                            wv[i] = 1.f;
                    else if (rw_raw) {
                        if constexpr (sizeof(T) == 4)
                            unpack<float, VEC>(rw_raw[k], wv);
                        else
                            unpack<T, VEC>(rw_raw[k], wv);
                    } else if (a.r_w_dtype == MLXN_DTYPE_F32)
                        load_vec<float, VEC>(static_cast<const float *>(a.r_w) + j * VEC, wv);
                    else
                        load_vec<T, VEC>(static_cast<const T *>(a.r_w) + j * VEC, wv);
#pragma unroll
                    for (int i = 0; i < VEC; i++)
                        rv[i] = rv[i] * rs * wv[i];
                }
#pragma unroll
                for (int i = 0; i < VEC; i++)
                    f[i] += rv[i];
                v[k] = pack<T, VEC>(f);
                reinterpret_cast<uint4 *>(p.sum)[j] = v[k];
                unpack<T, VEC>(v[k], f); // the norm sees the stored (rounded) sum
            }
#pragma unroll
            for (int i = 0; i < VEC; i++)
                ss = fmaf(f[i], f[i], ss);
        }
    }
    return ss;
}

// w_raw: w's vectors preloaded (W of x's element size), or null.
template <typename T, typename W, int NV, int VEC>
__device__ __forceinline__ void store_row_part(const row_ptrs<T> &p, const W *w, int64_t nvec,
                                               int first, int stride, float scale,
                                               const uint4 (&v)[NV], const uint4 (&u)[NV], const uint4 *w_raw = nullptr)
{
#pragma unroll
    for (int k = 0; k < NV; k++) {
        const int64_t j = first + (int64_t)k * stride;
        if (j < nvec) {
            float o[VEC];
            unpack<T, VEC>(v[k], o);
#pragma unroll
            for (int i = 0; i < VEC; i++)
                o[i] *= scale;
            if (w) {
                float wv[VEC];
                if (w_raw)
                    unpack<W, VEC>(w_raw[k], wv);
                else
                    load_vec<W, VEC>(w + j * VEC, wv);
#pragma unroll
                for (int i = 0; i < VEC; i++)
                    o[i] *= wv[i];
            }
            if (p.m) {
                float mf[VEC];
                unpack<T, VEC>(u[k], mf);
#pragma unroll
                for (int i = 0; i < VEC; i++)
                    o[i] *= mf[i];
            }
            reinterpret_cast<uint4 *>(p.y)[j] = pack<T, VEC>(o);
        }
    }
}

// Before the PDL wait: the weights w (and r_w) into L2, so the loads where the row is scaled (and
// where the residual is normalized) hit L2 instead of waiting on DRAM in the kernel's chain.
// Only a prefetch may run there: a hint, and L2 is coherent.
template <typename W, bool NR> __device__ __forceinline__ void prefetch_weights(const mlxn_rms_norm_args &a)
{
    if (threadIdx.x != 0)
        return;
    if (a.w)
        prefetch_l2(a.w, a.n * (int64_t)sizeof(W));
    if (NR && a.r_w)
        prefetch_l2(a.r_w, a.n * (a.r_w_dtype == MLXN_DTYPE_F32 ? 4 : 2));
}

constexpr int WARP_ROWS_PER_BLOCK = 8;

// NR: the residual is normalized first (norm_r), a separate instantiation so that the plain
// variants keep their registers.
template <typename T, typename W, int NV, bool NR>
__global__ void __launch_bounds__(32 * WARP_ROWS_PER_BLOCK)
    rms_norm_warp_rows(const mlxn_rms_norm_args a)
{
    prefetch_weights<W, NR>(a);
    wait_for_previous_kernel();
    allow_next_kernel();
    constexpr int VEC = 16 / sizeof(T);
    const int lane = threadIdx.x & 31;
    const int64_t nvec = a.n / VEC;
    const W *w = static_cast<const W *>(a.w);
    for (int64_t row = (int64_t)blockIdx.x * WARP_ROWS_PER_BLOCK + (threadIdx.x >> 5);
         row < a.n_rows; row += (int64_t)gridDim.x * WARP_ROWS_PER_BLOCK) {
        const row_ptrs<T> p = row_of<T>(a, row);
        uint4 v[NV], u[NV], wr[NV], rwr[NV];
        load_row_part<T, NV>(p, nvec, lane, 32, v, u);
        // the weights with x where their vectors are 16 bytes like x's (W, r_w of x's element
        // size), else loaded where used: a row's chain then has one memory round trip
        constexpr bool hw = sizeof(W) == sizeof(T);
        const bool hrw = NR && a.r_w && (a.r_w_dtype == MLXN_DTYPE_F32) == (sizeof(T) == 4);
        if (hw && w)
            load_weight_part<NV>(w, nvec, lane, 32, wr);
        if (hrw)
            load_weight_part<NV>(a.r_w, nvec, lane, 32, rwr);
        float rs = 1.f;
        if constexpr (NR)
            rs = rsqrtf(warp_sum(r_squares<T, NV, VEC>(nvec, lane, 32, u)) / (float)a.n + a.eps);
        const float ss = warp_sum(add_and_square<T, NV, VEC, NR>(a, p, nvec, lane, 32, rs, v, u, hrw ? rwr : nullptr));
        const float scale = rsqrtf(ss / (float)a.n + a.eps);
        store_row_part<T, W, NV, VEC>(p, w, nvec, lane, 32, scale, v, u, hw && w ? wr : nullptr);
    }
}

// Register budget: 8 vectors of x and 8 of m per thread fit only with 512 threads or fewer.
constexpr int block_row_max_threads(int nv) { return nv >= 8 ? 512 : 1024; }

template <typename T, typename W, int NV, bool NR>
__global__ void __launch_bounds__(block_row_max_threads(NV)) rms_norm_block_row(const mlxn_rms_norm_args a)
{
    prefetch_weights<W, NR>(a);
    wait_for_previous_kernel();
    allow_next_kernel();
    constexpr int VEC = 16 / sizeof(T);
    __shared__ float red[32];
    const int64_t nvec = a.n / VEC;
    const W *w = static_cast<const W *>(a.w);
    for (int64_t row = blockIdx.x; row < a.n_rows; row += gridDim.x) {
        const row_ptrs<T> p = row_of<T>(a, row);
        uint4 v[NV], u[NV];
        load_row_part<T, NV>(p, nvec, threadIdx.x, blockDim.x, v, u);
        float rs = 1.f;
        if constexpr (NR)
            rs = rsqrtf(block_sum(r_squares<T, NV, VEC>(nvec, threadIdx.x, blockDim.x, u), red) / (float)a.n + a.eps);
        const float ss = block_sum(add_and_square<T, NV, VEC, NR>(a, p, nvec, threadIdx.x, blockDim.x, rs, v, u), red);
        const float scale = rsqrtf(ss / (float)a.n + a.eps);
        store_row_part<T, W, NV, VEC>(p, w, nvec, threadIdx.x, blockDim.x, scale, v, u);
    }
}

// The block's total of v, f64 (every thread gets it; red is free again on return).
__device__ __forceinline__ double block_sum_f64(double v, double *red)
{
    return block_reduce(v, red, 0.0, add_op());
}

template <typename T, typename W, bool NR>
__global__ void __launch_bounds__(1024) rms_norm_generic(const mlxn_rms_norm_args a)
{
    prefetch_weights<W, NR>(a);
    wait_for_previous_kernel();
    allow_next_kernel();
    __shared__ double red[32];
    const W *w = static_cast<const W *>(a.w);
    for (int64_t row = blockIdx.x; row < a.n_rows; row += gridDim.x) {
        const row_ptrs<T> p = row_of<T>(a, row);
        float rs = 1.f;
        if constexpr (NR) { // r's own norm, from a pass over r before sum (which may be r) is written
            double rss = 0;
            for (int64_t i = threadIdx.x; i < a.n; i += blockDim.x) {
                const double v = to_f32<T>(p.r[i]);
                rss += v * v;
            }
            rss = block_sum_f64(rss, red);
            rs = (float)(1.0 / sqrt(rss / (double)a.n + (double)a.eps));
        }
        double ss = 0;
        for (int64_t i = threadIdx.x; i < a.n; i += blockDim.x) {
            float v = to_f32<T>(p.x[i]);
            if (p.r) {
                float t = to_f32<T>(p.r[i]);
                if constexpr (NR)
                    t = t * rs * (a.r_w ? load_any(a.r_w_dtype, a.r_w, i) : 1.f);
                const T s = from_f32<T>(v + t);
                p.sum[i] = s;
                v = to_f32<T>(s);
            }
            ss += (double)v * v;
        }
        ss = block_sum_f64(ss, red);
        const float scale = (float)(1.0 / sqrt(ss / (double)a.n + (double)a.eps));
        const T *src = p.r ? p.sum : p.x;
        for (int64_t i = threadIdx.x; i < a.n; i += blockDim.x) {
            float o = to_f32<T>(src[i]) * scale;
            if (w)
                o *= to_f32<W>(w[i]);
            if (p.m)
                o *= to_f32<T>(p.m[i]);
            p.y[i] = from_f32<T>(o);
        }
    }
}

bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

bool rows_aligned16(const mlxn_rows &r)
{
    return !r.base || (aligned16(r.base) && r.s0 % 16 == 0 && r.s1 % 16 == 0 && r.s2 % 16 == 0);
}

unsigned grid_for(int64_t blocks)
{
    // Rows beyond the grid are covered by the kernels' grid-stride loops.
    const int64_t cap = 1 << 20;
    return (unsigned)(blocks < cap ? blocks : cap);
}

// NV rounded up to 1, 2, 4 or 8.
int pow2_nv(int64_t nv)
{
    return nv <= 1 ? 1 : nv <= 2 ? 2 : nv <= 4 ? 4 : 8;
}

enum rms_norm_kernel { KERNEL_WARP_ROWS, KERNEL_BLOCK_ROW, KERNEL_GENERIC };

struct rms_norm_plan {
    rms_norm_kernel kernel;
    unsigned grid, threads;
    int nv;    // vectors per thread
    bool pdl;  // launch with programmatic stream serialization
};

// The variant chain: the first kernel whose conditions hold.
template <typename T> rms_norm_plan plan_for(const mlxn_rms_norm_args &a, bool pdl)
{
    constexpr int VEC = 16 / sizeof(T);
    const bool vectorizable = a.n % VEC == 0 && !(a.r.base && a.m.base) && rows_aligned16(a.x) && rows_aligned16(a.r) &&
                              rows_aligned16(a.sum) && rows_aligned16(a.m) &&
                              rows_aligned16(a.y) && (!a.w || aligned16(a.w)) && (!a.r_w || aligned16(a.r_w));
    const int64_t nvec = a.n / VEC;
    rms_norm_plan p;
    p.pdl = pdl;
    if (vectorizable && nvec <= 32 * 8) {
        // Short rows: a warp holds the row; the reduction is shuffles only.
        p.kernel = KERNEL_WARP_ROWS;
        p.grid = grid_for((a.n_rows + WARP_ROWS_PER_BLOCK - 1) / WARP_ROWS_PER_BLOCK);
        p.threads = 32 * WARP_ROWS_PER_BLOCK;
        p.nv = pow2_nv((nvec + 31) / 32);
    } else if (vectorizable && nvec <= 512 * 8) {
        // Medium rows: a block holds the row, about 4 vectors per thread so each thread has
        // several 16-byte loads in flight.
        int64_t threads = ((nvec + 3) / 4 + 31) / 32 * 32;
        threads = threads < 64 ? 64 : threads > 1024 ? 1024 : threads;
        p.nv = pow2_nv((nvec + threads - 1) / threads);
        if (threads > block_row_max_threads(p.nv))
            threads = ((nvec + p.nv - 1) / p.nv + 31) / 32 * 32;
        p.kernel = KERNEL_BLOCK_ROW;
        p.grid = grid_for(a.n_rows);
        p.threads = (unsigned)threads;
    } else {
        p.kernel = KERNEL_GENERIC;
        p.grid = grid_for(a.n_rows);
        p.threads = a.n >= 1024 ? 1024 : (unsigned)((a.n + 31) / 32 * 32);
        p.nv = 1;
    }
    return p;
}

template <typename... Args>
cudaError_t launch_kernel(void (*kernel)(Args...), const rms_norm_plan &p, cudaStream_t s,
                          const mlxn_rms_norm_args &a)
{
    return launch(kernel, dim3(p.grid), dim3(p.threads), 0, s, p.pdl, a);
}

template <typename T, typename W, bool NR>
cudaError_t launch_plan_nr(const mlxn_rms_norm_args &a, const rms_norm_plan &p, cudaStream_t s)
{
    switch (p.kernel) {
    case KERNEL_WARP_ROWS:
        switch (p.nv) {
        case 1: return launch_kernel(rms_norm_warp_rows<T, W, 1, NR>, p, s, a);
        case 2: return launch_kernel(rms_norm_warp_rows<T, W, 2, NR>, p, s, a);
        case 4: return launch_kernel(rms_norm_warp_rows<T, W, 4, NR>, p, s, a);
        default: return launch_kernel(rms_norm_warp_rows<T, W, 8, NR>, p, s, a);
        }
    case KERNEL_BLOCK_ROW:
        switch (p.nv) {
        case 1: return launch_kernel(rms_norm_block_row<T, W, 1, NR>, p, s, a);
        case 2: return launch_kernel(rms_norm_block_row<T, W, 2, NR>, p, s, a);
        case 4: return launch_kernel(rms_norm_block_row<T, W, 4, NR>, p, s, a);
        default: return launch_kernel(rms_norm_block_row<T, W, 8, NR>, p, s, a);
        }
    default:
        return launch_kernel(rms_norm_generic<T, W, NR>, p, s, a);
    }
}

template <typename T, typename W>
cudaError_t launch_plan(const mlxn_rms_norm_args &a, const rms_norm_plan &p, cudaStream_t s)
{
    return a.norm_r ? launch_plan_nr<T, W, true>(a, p, s) : launch_plan_nr<T, W, false>(a, p, s);
}

// Calls f.template operator()<T, W>() for the args' dtypes.
template <typename F> cudaError_t with_types(const mlxn_rms_norm_args &a, F &&f)
{
    const bool w_f32 = !a.w || a.w_dtype == MLXN_DTYPE_F32;
    switch (a.dtype) {
    case MLXN_DTYPE_F32:
        return f.template operator()<float, float>();
    case MLXN_DTYPE_F16:
        return w_f32 ? f.template operator()<__half, float>() : f.template operator()<__half, __half>();
    case MLXN_DTYPE_BF16:
        return w_f32 ? f.template operator()<__nv_bfloat16, float>()
                     : f.template operator()<__nv_bfloat16, __nv_bfloat16>();
    }
    return cudaErrorInvalidValue;
}

} // namespace

namespace {
struct default_launch {
    const mlxn_rms_norm_args &a;
    cudaStream_t s;
    bool pdl;
    template <typename T, typename W> cudaError_t operator()() const
    {
        return launch_plan<T, W>(a, plan_for<T>(a, pdl), s);
    }
};
} // namespace

extern "C" cudaError_t mlxn_cuda_launch_rms_norm(const mlxn_rms_norm_args *a, cudaStream_t s,
                                                 bool pdl)
{
    return with_types(*a, default_launch{*a, s, pdl});
}
