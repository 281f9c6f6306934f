// MoE reduce on CUDA: y[t, :] = sum_j w[t, j] * x[t, j, :]. Bound by reading x (k rows per
// token): each thread owns a run of columns of one token (32 bytes, else 8 columns:
// elementwise.cuh with_run and launch shape) and reads its k runs with 16-byte loads when every
// row is 16-byte aligned and N a multiple of the run, else one column per thread. Accumulation
// in f32 in slot order, one rounding to y's dtype.
#include "elementwise.cuh"

namespace {

using namespace mlxn_cuda;

template <typename T, int R> __global__ void __launch_bounds__(256) moe_reduce_rows(const mlxn_moe_reduce_args a)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    const int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * R;
    if (i >= a.n)
        return;
    for (int64_t t = ew_row0(); t < a.n_tokens; t += ew_row_step()) {
        const float *w = reinterpret_cast<const float *>(mlxn_rows_ptr(&a.weights, t));
        T *y = reinterpret_cast<T *>(mlxn_rows_ptr(&a.y, t)) + i;
        float acc[R] = {};
#pragma unroll 4
        for (int64_t j = 0; j < a.top_k; j++) {
            const T *x = reinterpret_cast<const T *>(mlxn_rows_ptr(&a.x, t * a.top_k + j)) + i;
            const float wj = w[j];
            if constexpr (R > 1) {
                float v[R];
                load_run(x, v);
#pragma unroll
                for (int q = 0; q < R; q++)
                    acc[q] = fmaf(wj, v[q], acc[q]);
            } else {
                acc[0] = fmaf(wj, to_f(x[0]), acc[0]);
            }
        }
        if constexpr (R > 1)
            store_run(y, acc);
        else
            y[0] = from_f<T>(acc[0]);
    }
}

template <typename T> cudaError_t launch_t(const mlxn_moe_reduce_args &a, cudaStream_t s, bool pdl)
{
    return with_run<T>(a.n, rows_aligned16(a.x) && rows_aligned16(a.y), [&](auto run) {
        constexpr int R = decltype(run)::value;
        const ew_shape g = ew_launch_shape(a.n_tokens, a.n / R);
        return launch(moe_reduce_rows<T, R>, g.grid, g.block, 0, s, pdl, a);
    });
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_moe_reduce(const mlxn_moe_reduce_args *a, cudaStream_t s, bool pdl)
{
    switch (a->dtype) {
    case MLXN_DTYPE_F32: return launch_t<float>(*a, s, pdl);
    case MLXN_DTYPE_F16: return launch_t<__half>(*a, s, pdl);
    case MLXN_DTYPE_BF16: return launch_t<__nv_bfloat16>(*a, s, pdl);
    }
    return cudaErrorInvalidValue;
}
