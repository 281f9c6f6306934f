/* The CPU kernels built for the avx2 SIMD level (see simd.h); picked at run time. */
#define MLXN_SIMD_LEVEL 1
#define MLXN_LEVEL_FN(name) name##_avx2

#include "cpu.h"
#include "rms_norm_impl.h"
#include "rope_impl.h"
#include "attention_impl.h"
#include "softmax_impl.h"
#include "act_impl.h"
#include "qmatmul_impl.h"

const mlxn_cpu_kernel_set mlxn_cpu_kernels_avx2 = {
    .name = "avx2",
    .rms_norm_rows = rms_norm_rows_avx2,
    .rope_rows = rope_rows_avx2,
    .attention_units = attention_units_avx2,
    .softmax_rows = softmax_rows_avx2,
    .act_rows = act_rows_avx2,
    .act_f32 = act_f32_avx2,
    .qmatmul_rows = qmatmul_rows_avx2,
    .qmatmul_x_form = qmatmul_x_form_avx2,
    .qmatmul_mlx_rows = qmatmul_mlx_rows_avx2,
};
