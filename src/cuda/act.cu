// Activations on CUDA: a run of V elements of a row per thread (32 bytes, else 8 elements:
// elementwise.cuh's with_run), moved with 16-byte loads and stores, when rows are 16-byte
// aligned and n is a multiple of V; else one element per thread.
#include "../core/act_math.h"
#include "elementwise.cuh"

namespace {

using namespace mlxn_cuda;

// 16-bit outputs take the exponential on the SFU (__expf: ~2^-21 relative, up to ~5e-6 at the
// tails' |arguments| of ~80), far inside their rounding (2^-8 bf16, 2^-11 f16): the bf16
// sigmoid was bound by the accurate expf's instructions (bench/NOTES.md, activations). f32
// outputs keep act_math.h's forms; GELU-erf keeps them at every dtype.
template <typename T, int ACT> __device__ __forceinline__ float act_value(float x)
{
    if constexpr (sizeof(T) == 2 && ACT != MLXN_ACT_GELU_ERF)
        return mlxn_act_logistic(ACT, x, __expf(mlxn_act_exp_arg(ACT, x)));
    else
        return mlxn_act_f32(ACT, x);
}

// grid.x covers the runs of a row (or elements, V = 1), grid.y the rows.
template <typename T, int ACT, bool GLU, int V>
__global__ void __launch_bounds__(256) act_kernel(const mlxn_act_args a)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    const int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * V;
    for (int64_t r = blockIdx.y; r < a.n_rows; r += gridDim.y) {
        if (i >= a.n)
            return;
        const T *x = reinterpret_cast<const T *>(mlxn_rows_ptr(&a.x, r)) + i;
        const T *up = GLU ? reinterpret_cast<const T *>(mlxn_rows_ptr(&a.up, r)) + i : nullptr;
        T *y = reinterpret_cast<T *>(mlxn_rows_ptr(&a.y, r)) + i;
        if constexpr (V == 1) {
            float v = act_value<T, ACT>(to_f(x[0]));
            y[0] = from_f<T>(GLU ? v * to_f(up[0]) : v);
        } else {
            constexpr int W = V * sizeof(T) / 16; // 16-byte words per vector
            T xv[V], uv[V], yv[V];
#pragma unroll
            for (int w = 0; w < W; w++) {
                reinterpret_cast<uint4 *>(xv)[w] = reinterpret_cast<const uint4 *>(x)[w];
                if (GLU)
                    reinterpret_cast<uint4 *>(uv)[w] = reinterpret_cast<const uint4 *>(up)[w];
            }
#pragma unroll
            for (int j = 0; j < V; j++) {
                const float v = act_value<T, ACT>(to_f(xv[j]));
                yv[j] = from_f<T>(GLU ? v * to_f(uv[j]) : v);
            }
#pragma unroll
            for (int w = 0; w < W; w++)
                reinterpret_cast<uint4 *>(y)[w] = reinterpret_cast<const uint4 *>(yv)[w];
        }
    }
}

bool rows_aligned(const mlxn_rows &r, int64_t n_rows, size_t es, int64_t n)
{
    if (!r.base)
        return true;
    const bool base = ((uintptr_t)r.base & 15) == 0;
    return base && (n * (int64_t)es) % 16 == 0 && (n_rows <= 1 || (r.s2 % 16 == 0 && r.s1 % 16 == 0 && r.s0 % 16 == 0));
}

template <typename T, int ACT, bool GLU> cudaError_t launch_act(const mlxn_act_args &a, cudaStream_t s, bool pdl)
{
    const bool vec = rows_aligned(a.x, a.n_rows, sizeof(T), a.n) && rows_aligned(a.up, a.n_rows, sizeof(T), a.n) &&
                     rows_aligned(a.y, a.n_rows, sizeof(T), a.n);
    return with_run<T>(a.n, vec, [&](auto run) {
        constexpr int V = decltype(run)::value;
        const int64_t per_row = (a.n / V + 255) / 256;
        const unsigned rows = (unsigned)(a.n_rows < 65535 ? a.n_rows : 65535);
        return launch(act_kernel<T, ACT, GLU, V>, dim3((unsigned)per_row, rows), dim3(256), 0, s, pdl, a);
    });
}

template <typename T, int ACT> cudaError_t launch_glu(const mlxn_act_args &a, cudaStream_t s, bool pdl)
{
    return a.up.base ? launch_act<T, ACT, true>(a, s, pdl) : launch_act<T, ACT, false>(a, s, pdl);
}

template <typename T> cudaError_t launch_dtype(const mlxn_act_args &a, cudaStream_t s, bool pdl)
{
    switch (a.act) {
    case MLXN_ACT_SILU: return launch_glu<T, MLXN_ACT_SILU>(a, s, pdl);
    case MLXN_ACT_GELU_TANH: return launch_glu<T, MLXN_ACT_GELU_TANH>(a, s, pdl);
    case MLXN_ACT_GELU_ERF: return launch_glu<T, MLXN_ACT_GELU_ERF>(a, s, pdl);
    case MLXN_ACT_SIGMOID: return launch_glu<T, MLXN_ACT_SIGMOID>(a, s, pdl);
    }
    return cudaErrorInvalidValue;
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_act(const mlxn_act_args *a, cudaStream_t s, bool pdl)
{
    switch (a->dtype) {
    case MLXN_DTYPE_F32: return launch_dtype<float>(*a, s, pdl);
    case MLXN_DTYPE_F16: return launch_dtype<__half>(*a, s, pdl);
    case MLXN_DTYPE_BF16: return launch_dtype<__nv_bfloat16>(*a, s, pdl);
    }
    return cudaErrorInvalidValue;
}
