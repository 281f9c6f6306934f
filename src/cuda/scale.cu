// y = alpha * x + beta on CUDA: a run of E elements per thread with 16-byte accesses when the
// rows are 16-byte aligned and n is a multiple of E (32 bytes, else 8 elements), else one element
// per thread (launch shape and runs: elementwise.cuh). One fmaf per element, as on the CPU.
#include "elementwise.cuh"

namespace {

using namespace mlxn_cuda;

template <typename T, int E> __global__ void __launch_bounds__(256) scale_rows(const mlxn_scale_args a)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    const int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * E;
    if (i >= a.n)
        return;
    for (int64_t r = ew_row0(); r < a.n_rows; r += ew_row_step()) {
        const T *x = reinterpret_cast<const T *>(mlxn_rows_ptr(&a.x, r)) + i;
        T *y = reinterpret_cast<T *>(mlxn_rows_ptr(&a.y, r)) + i;
        if constexpr (E > 1) {
            float v[E];
            load_run(x, v);
#pragma unroll
            for (int j = 0; j < E; j++)
                v[j] = fmaf(a.alpha, v[j], a.beta);
            store_run(y, v);
        } else {
            y[0] = from_f<T>(fmaf(a.alpha, to_f(x[0]), a.beta));
        }
    }
}

template <typename T> cudaError_t launch_t(const mlxn_scale_args &a, cudaStream_t s, bool pdl)
{
    return with_run<T>(a.n, rows_aligned16(a.x) && rows_aligned16(a.y), [&](auto run) {
        constexpr int E = decltype(run)::value;
        const ew_shape g = ew_launch_shape(a.n_rows, a.n / E);
        return launch(scale_rows<T, E>, g.grid, g.block, 0, s, pdl, a);
    });
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_scale(const mlxn_scale_args *a, cudaStream_t s, bool pdl)
{
    switch (a->dtype) {
    case MLXN_DTYPE_F32: return launch_t<float>(*a, s, pdl);
    case MLXN_DTYPE_F16: return launch_t<__half>(*a, s, pdl);
    case MLXN_DTYPE_BF16: return launch_t<__nv_bfloat16>(*a, s, pdl);
    }
    return cudaErrorInvalidValue;
}
