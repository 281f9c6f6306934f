// Where the quantized mat-vecs write their results: the fused GLU and accumulation of
// mlxn_qmatmul_fused applied to one output, shared by the decode kernels.
#ifndef MLXN_CUDA_QMATMUL_OUT_CUH
#define MLXN_CUDA_QMATMUL_OUT_CUH

#include "../core/act_math.h"
#include "../core/op_list.h"
#include "common.cuh"

namespace mlxn_cuda {

// y[m][n] from the sums of a row of W: the gate g (or the plain product) and, with GLU, the up u.
__device__ __forceinline__ void store_out(const mlxn_qmatmul_args &a, int m, int64_t n, float g, float u)
{
    float *y = reinterpret_cast<float *>(mlxn_rows_ptr(&a.y, m)) + n;
    const float v = a.glu ? mlxn_act_f32(a.glu_act, g) * u : g;
    *y = a.accumulate ? *y + v : v;
}

} // namespace mlxn_cuda

#endif
