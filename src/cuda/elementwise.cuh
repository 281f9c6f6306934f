// Pieces shared by the elementwise kernels (act.cu, binary.cu, scale.cu, ...): f32 conversions of
// the storage types, runs of elements moved with 16-byte accesses, and the launch shape.
//
// Launch shape: a block is BX x BY threads (BX * BY = 256); threadIdx.x walks the runs of a
// row (BX a multiple of 32 up to 256, no wider than the row needs, so short rows do not idle
// whole warps), threadIdx.y and grid.y walk rows (grid-stride past 65535 rows).
#ifndef MLXN_CUDA_ELEMENTWISE_CUH
#define MLXN_CUDA_ELEMENTWISE_CUH

#include <cstring>
#include <type_traits>

#include "common.cuh"

namespace mlxn_cuda {

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

constexpr int RUN = 8; // elements per thread on the vector paths: 16 bytes of f16/bf16, 32 of f32

// A run of 32 bytes (8 f32, 16 f16/bf16): the streaming kernels (act, binary, scale) take one a
// thread where n allows, since 16 bytes a thread left 16-bit rows at 56-85% of the H200's copy
// bandwidth where f32 rows reached 96-101% (bench/NOTES.md, elementwise).
template <typename T> constexpr int wide_run() { return 32 / (int)sizeof(T); }

// Calls f with the run length the rows allow as a compile-time constant
// (std::integral_constant<int, E>): wide_run<T>() where n is a multiple of it, else RUN, else 1;
// 1 as well when the rows are not aligned for 16-byte accesses (vec false).
template <typename T, typename F> cudaError_t with_run(int64_t n, bool vec, F f)
{
    if (vec && n % wide_run<T>() == 0)
        return f(std::integral_constant<int, wide_run<T>()>());
    if (vec && n % RUN == 0)
        return f(std::integral_constant<int, RUN>());
    return f(std::integral_constant<int, 1>());
}

// N elements as f32. bf16 pairs by their 32-bit word: the low element shifted up, the high one
// masked in place, one instruction each (element by element the high one took two: its half
// moved down, then shifted up).
template <typename T, int N> __device__ __forceinline__ void to_floats(const T (&t)[N], float (&v)[N])
{
    if constexpr (std::is_same<T, __nv_bfloat16>::value && N % 2 == 0) {
#pragma unroll
        for (int j = 0; j < N; j += 2) {
            uint32_t w;
            memcpy(&w, &t[j], 4);
            v[j] = __uint_as_float(w << 16);
            v[j + 1] = __uint_as_float(w & 0xffff0000u);
        }
    } else {
#pragma unroll
        for (int j = 0; j < N; j++)
            v[j] = to_f(t[j]);
    }
}

// N elements at p (16-byte aligned) as f32.
template <typename T, int N> __device__ __forceinline__ void load_run(const T *p, float (&v)[N])
{
    __align__(16) T t[N]; // moved as 16-byte words
#pragma unroll
    for (int w = 0; w < N * (int)sizeof(T) / 16; w++)
        reinterpret_cast<uint4 *>(t)[w] = reinterpret_cast<const uint4 *>(p)[w];
    // element by element: the 4096-wide bf16 masked softmax rows (softmax_row) lost 1-2 points of
    // copy with to_floats here (bench/NOTES.md, softmax, session 24)
#pragma unroll
    for (int j = 0; j < N; j++)
        v[j] = to_f(t[j]);
}

template <typename T, int N> __device__ __forceinline__ void store_run(T *p, const float (&v)[N])
{
    __align__(16) T t[N]; // moved as 16-byte words
#pragma unroll
    for (int j = 0; j < N; j++)
        t[j] = from_f<T>(v[j]);
#pragma unroll
    for (int w = 0; w < N * (int)sizeof(T) / 16; w++)
        reinterpret_cast<uint4 *>(p)[w] = reinterpret_cast<const uint4 *>(t)[w];
}

// Whether every row of r starts 16-byte aligned (an absent operand does).
inline bool rows_aligned16(const mlxn_rows &r)
{
    return !r.base || (((uintptr_t)r.base & 15) == 0 && r.s0 % 16 == 0 && r.s1 % 16 == 0 && r.s2 % 16 == 0);
}

struct ew_shape {
    dim3 grid, block;
};

// runs: threads a row needs (elements / RUN, or elements on a scalar path).
inline ew_shape ew_launch_shape(int64_t n_rows, int64_t runs)
{
    int bx = 32;
    while (bx < 256 && bx < runs)
        bx *= 2;
    const int by = 256 / bx;
    const int64_t gy = (n_rows + by - 1) / by;
    return {dim3((unsigned)((runs + bx - 1) / bx), (unsigned)(gy < 65535 ? gy : 65535)), dim3(bx, by)};
}

// The first row of this thread and the step to its next one.
__device__ __forceinline__ int64_t ew_row0() { return (int64_t)blockIdx.y * blockDim.y + threadIdx.y; }
__device__ __forceinline__ int64_t ew_row_step() { return (int64_t)gridDim.y * blockDim.y; }

} // namespace mlxn_cuda

#endif
