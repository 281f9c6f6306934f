/* The CPU kernels built for AVX-512 with the bf16 conversion instructions and VNNI (see
 * simd.h; every processor with the first has the second); picked at run time. */
#define MLXN_SIMD_LEVEL 2
#define MLXN_SIMD_AVX512_BF16 1
#define MLXN_SIMD_VNNI 1
#define MLXN_LEVEL_FN(name) name##_avx512_bf16

#include "cpu.h"
#include "rms_norm_impl.h"
#include "rope_impl.h"
#include "attention_impl.h"
#include "softmax_impl.h"
#include "act_impl.h"
#include "qmatmul_impl.h"

const mlxn_cpu_kernel_set mlxn_cpu_kernels_avx512_bf16 = {
    .name = "avx512-bf16",
    .rms_norm_rows = rms_norm_rows_avx512_bf16,
    .rope_rows = rope_rows_avx512_bf16,
    .attention_units = attention_units_avx512_bf16,
    .softmax_rows = softmax_rows_avx512_bf16,
    .act_rows = act_rows_avx512_bf16,
    .act_f32 = act_f32_avx512_bf16,
    .qmatmul_rows = qmatmul_rows_avx512_bf16,
    .qmatmul_x_form = qmatmul_x_form_avx512_bf16,
    .qmatmul_xint32 = qmatmul_xint32_avx512_bf16,
    .qmatmul_mlx_rows = qmatmul_mlx_rows_avx512_bf16,
};
