// The softmax family on CUDA: a block of 256 threads per row (grid-stride over rows).
// Rows of up to 16384 elements, 16-byte aligned, stay in registers (runs of 8 elements moved
// with 16-byte accesses): the row is read once and written once, the max and the sum are two
// block reductions. Other rows take two passes (the second read mostly from L2), each thread
// keeping a running (max, sum of exp) over its elements, merged across the block.
#include "../core/softmax_math.h"
#include "elementwise.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int THREADS = 256;

__device__ __forceinline__ void warp_merge(float &m, float &s)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        mlxn_softmax_merge(&m, &s, m2, s2);
    }
}

__global__ void __launch_bounds__(THREADS) softmax_rows(const mlxn_softmax_args a)
{
    __shared__ float red_m[THREADS / 32], red_s[THREADS / 32];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int64_t r = blockIdx.x; r < a.n_rows; r += gridDim.x) {
        const char *x = mlxn_rows_ptr(&a.x, r);
        const char *mask = a.mask.base ? mlxn_rows_ptr(&a.mask, r) : nullptr;
        char *y = mlxn_rows_ptr(&a.y, r);
        float m = -INFINITY, s = 0.0f;
        for (int64_t i = threadIdx.x; i < a.n; i += THREADS) {
            const float z = mlxn_softmax_logit(load_any(a.dtype, x, i), mask ? load_any(a.dtype, mask, i) : 0.0f,
                                               a.scale, a.softcap);
            mlxn_softmax_merge(&m, &s, z, 1.0f);
        }
        warp_merge(m, s);
        if (lane == 0) {
            red_m[warp] = m;
            red_s[warp] = s;
        }
        __syncthreads();
        m = red_m[0];
        s = red_s[0];
        for (int w = 1; w < THREADS / 32; w++)
            mlxn_softmax_merge(&m, &s, red_m[w], red_s[w]);
        __syncthreads(); // red_* is read before the next row overwrites it
        for (int64_t i = threadIdx.x; i < a.n; i += THREADS) {
            const float z = mlxn_softmax_logit(load_any(a.dtype, x, i), mask ? load_any(a.dtype, mask, i) : 0.0f,
                                               a.scale, a.softcap);
            store_any(a.dtype, y, i, mlxn_softmax_out(z, m, s, a.log));
        }
    }
}

// The block's max and sum of the threads' values (the ops a block-wide reduction of one value
// each; every thread gets the result).
template <int TH, bool MAX> __device__ __forceinline__ float block_reduce1(float v, float *red)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = MAX ? fmaxf(v, w) : v + w;
    }
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    v = red[0];
    for (int w = 1; w < TH / 32; w++)
        v = MAX ? fmaxf(v, red[w]) : v + red[w];
    __syncthreads(); // red is read before it is written again
    return v;
}

// TH threads a row, R runs of RUN elements each: rows of n <= TH * R * RUN, n % RUN == 0,
// aligned.
// With the row in registers the max comes first (one block reduction), then exp(z - max) once
// per element, kept for the output, and its sum (a second): one expf per element and a
// reciprocal per row, where the one-pass running (max, sum) of the generic kernel takes two
// expf and a division per element.
template <typename T, int TH, int R>
__global__ void __launch_bounds__(TH) softmax_rows_in_registers(const mlxn_softmax_args a)
{
    __shared__ float red[TH / 32];
    wait_for_previous_kernel();
    allow_next_kernel();
    for (int64_t r = blockIdx.x; r < a.n_rows; r += gridDim.x) {
        const T *x = reinterpret_cast<const T *>(mlxn_rows_ptr(&a.x, r));
        const T *mask = a.mask.base ? reinterpret_cast<const T *>(mlxn_rows_ptr(&a.mask, r)) : nullptr;
        T *y = reinterpret_cast<T *>(mlxn_rows_ptr(&a.y, r));
        float z[R][RUN];
        float m = -INFINITY;
#pragma unroll
        for (int j = 0; j < R; j++) {
            const int64_t i = ((int64_t)j * TH + threadIdx.x) * RUN;
            if (i >= a.n)
                break;
            float mv[RUN];
            load_run(x + i, z[j]);
            if (mask)
                load_run(mask + i, mv);
#pragma unroll
            for (int e = 0; e < RUN; e++) {
                z[j][e] = mlxn_softmax_logit(z[j][e], mask ? mv[e] : 0.0f, a.scale, a.softcap);
                m = fmaxf(m, z[j][e]);
            }
        }
        m = block_reduce1<TH, true>(m, red);
        // a row of -inf logits (all masked): zeros, or -inf for log-softmax (mlxn_softmax_out)
        const float msub = m == -INFINITY ? 0.0f : m;
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < R; j++) {
            if (((int64_t)j * TH + threadIdx.x) * RUN >= a.n)
                break;
#pragma unroll
            for (int e = 0; e < RUN; e++) {
                const float p = expf(z[j][e] - msub);
                s += p;
                if (!a.log)
                    z[j][e] = p;
            }
        }
        s = block_reduce1<TH, false>(s, red);
        const float inv = 1.0f / s, ls = logf(s);
#pragma unroll
        for (int j = 0; j < R; j++) {
            const int64_t i = ((int64_t)j * TH + threadIdx.x) * RUN;
            if (i >= a.n)
                break;
            float out[RUN];
#pragma unroll
            for (int e = 0; e < RUN; e++)
                out[e] = m == -INFINITY ? (a.log ? -INFINITY : 0.0f) : a.log ? (z[j][e] - m) - ls : z[j][e] * inv;
            store_run(y + i, out);
        }
    }
}

// A row's data lives in registers, so the rows resident on an SM (the bytes in flight) are
// bounded by the register file: fewer threads a row, each holding more of it, leave less per-
// thread overhead a row. 128 threads up to 8 runs each (n <= 8192), else 256.
template <typename T> cudaError_t launch_in_registers(const mlxn_softmax_args &a, dim3 grid, cudaStream_t s, bool pdl)
{
    const int64_t runs = (a.n / RUN + 127) / 128; // runs per thread at 128 threads
    if (runs <= 1)
        return launch(softmax_rows_in_registers<T, 128, 1>, grid, dim3(128), 0, s, pdl, a);
    if (runs <= 2)
        return launch(softmax_rows_in_registers<T, 128, 2>, grid, dim3(128), 0, s, pdl, a);
    if (runs <= 4)
        return launch(softmax_rows_in_registers<T, 128, 4>, grid, dim3(128), 0, s, pdl, a);
    if (runs <= 8)
        return launch(softmax_rows_in_registers<T, 128, 8>, grid, dim3(128), 0, s, pdl, a);
    return launch(softmax_rows_in_registers<T, 256, 8>, grid, dim3(256), 0, s, pdl, a);
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_softmax(const mlxn_softmax_args *a, cudaStream_t s, bool pdl)
{
    const dim3 grid((unsigned)(a->n_rows < 65535 ? a->n_rows : 65535));
    const bool in_registers = a->n % RUN == 0 && a->n <= (int64_t)THREADS * 8 * RUN && rows_aligned16(a->x) &&
                              rows_aligned16(a->mask) && rows_aligned16(a->y);
    if (in_registers) {
        switch (a->dtype) {
        case MLXN_DTYPE_F32: return launch_in_registers<float>(*a, grid, s, pdl);
        case MLXN_DTYPE_F16: return launch_in_registers<__half>(*a, grid, s, pdl);
        case MLXN_DTYPE_BF16: return launch_in_registers<__nv_bfloat16>(*a, grid, s, pdl);
        }
    }
    return launch(softmax_rows, grid, dim3(THREADS), 0, s, pdl, *a);
}
