// y = a op b with b broadcast over a, on CUDA (launch shape: elementwise.cuh).
//
// Variants, chosen in order by the launcher at the bottom:
//   B_VEC     rows of a, b and y 16-byte aligned, n a multiple of 8, b contiguous along rows:
//             a thread loads a run of a and b with 16-byte loads and stores the run of y (32
//             bytes of a where n allows, else 8 elements: elementwise.cuh)
//   B_ROW     the same with b broadcast along rows (one b element per row, e.g. b [T, 1])
//   SCALAR    anything else: a thread per element
// The op is bound by memory: a read, b read (or broadcast from cache), y written.
#include "../core/binary_math.h"
#include "elementwise.cuh"

namespace {

using namespace mlxn_cuda;

enum mode { SCALAR, B_VEC, B_ROW };

template <typename T, typename TB, int OP, int MODE, int E>
__global__ void __launch_bounds__(256) binary_rows(const mlxn_binary_args a)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    const int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * E;
    if (i >= a.n)
        return;
    for (int64_t r = ew_row0(); r < a.n_rows; r += ew_row_step()) {
        const T *x = reinterpret_cast<const T *>(mlxn_rows_ptr(&a.a, r)) + i;
        const char *b = mlxn_rows_ptr(&a.b, r);
        T *y = reinterpret_cast<T *>(mlxn_rows_ptr(&a.y, r)) + i;
        if constexpr (MODE == SCALAR) {
            const float bv = to_f(*reinterpret_cast<const TB *>(b + i * a.b_inc));
            y[0] = from_f<T>(mlxn_binop_f32(OP, to_f(x[0]), bv));
        } else {
            float xv[E], bv[E];
            load_run(x, xv);
            if constexpr (MODE == B_VEC) {
                load_run(reinterpret_cast<const TB *>(b) + i, bv);
            } else {
                const float b0 = to_f(*reinterpret_cast<const TB *>(b));
#pragma unroll
                for (int j = 0; j < E; j++)
                    bv[j] = b0;
            }
#pragma unroll
            for (int j = 0; j < E; j++)
                xv[j] = mlxn_binop_f32(OP, xv[j], bv[j]);
            store_run(y, xv);
        }
    }
}

template <typename T, typename TB, int OP> cudaError_t launch_op(const mlxn_binary_args &a, cudaStream_t s, bool pdl)
{
    const bool vec = rows_aligned16(a.a) && rows_aligned16(a.y) &&
                     (a.b_inc == 0 || (a.b_inc == (int64_t)sizeof(TB) && rows_aligned16(a.b)));
    return with_run<T>(a.n, vec, [&](auto run) {
        constexpr int E = decltype(run)::value;
        const ew_shape g = ew_launch_shape(a.n_rows, a.n / E);
        if constexpr (E == 1)
            return launch(binary_rows<T, TB, OP, SCALAR, 1>, g.grid, g.block, 0, s, pdl, a);
        else if (a.b_inc == 0)
            return launch(binary_rows<T, TB, OP, B_ROW, E>, g.grid, g.block, 0, s, pdl, a);
        else
            return launch(binary_rows<T, TB, OP, B_VEC, E>, g.grid, g.block, 0, s, pdl, a);
    });
}

template <typename T, typename TB> cudaError_t launch_types(const mlxn_binary_args &a, cudaStream_t s, bool pdl)
{
    switch (a.op) {
    case MLXN_BINOP_ADD: return launch_op<T, TB, MLXN_BINOP_ADD>(a, s, pdl);
    case MLXN_BINOP_SUB: return launch_op<T, TB, MLXN_BINOP_SUB>(a, s, pdl);
    case MLXN_BINOP_MUL: return launch_op<T, TB, MLXN_BINOP_MUL>(a, s, pdl);
    case MLXN_BINOP_DIV: return launch_op<T, TB, MLXN_BINOP_DIV>(a, s, pdl);
    }
    return cudaErrorInvalidValue;
}

template <typename T> cudaError_t launch_a(const mlxn_binary_args &a, cudaStream_t s, bool pdl)
{
    return a.b_dtype == MLXN_DTYPE_F32 ? launch_types<T, float>(a, s, pdl) : launch_types<T, T>(a, s, pdl);
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_binary(const mlxn_binary_args *a, cudaStream_t s, bool pdl)
{
    switch (a->dtype) {
    case MLXN_DTYPE_F32: return launch_a<float>(*a, s, pdl);
    case MLXN_DTYPE_F16: return launch_a<__half>(*a, s, pdl);
    case MLXN_DTYPE_BF16: return launch_a<__nv_bfloat16>(*a, s, pdl);
    }
    return cudaErrorInvalidValue;
}
