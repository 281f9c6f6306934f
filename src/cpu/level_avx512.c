/* The CPU kernels built for the avx512 SIMD level (see simd.h); picked at run time. The
 * qmatmul decode's VNNI kernels are in it too, used where the processor has VNNI. */
#define MLXN_SIMD_LEVEL 2
#define MLXN_SIMD_VNNI 1
#define MLXN_SIMD_VNNI_RUNTIME 1
#define MLXN_LEVEL_FN(name) name##_avx512

#include "cpu.h"
#include "rms_norm_impl.h"
#include "rope_impl.h"
#include "attention_impl.h"
#include "softmax_impl.h"
#include "act_impl.h"
#include "qmatmul_impl.h"

const mlxn_cpu_kernel_set mlxn_cpu_kernels_avx512 = {
    .name = "avx512",
    .rms_norm_rows = rms_norm_rows_avx512,
    .rope_rows = rope_rows_avx512,
    .attention_units = attention_units_avx512,
    .softmax_rows = softmax_rows_avx512,
    .act_rows = act_rows_avx512,
    .act_f32 = act_f32_avx512,
    .qmatmul_rows = qmatmul_rows_avx512,
    .qmatmul_x_form = qmatmul_x_form_avx512,
    .qmatmul_xint32 = qmatmul_xint32_avx512,
    .qmatmul_mlx_rows = qmatmul_mlx_rows_avx512,
};
