/* The CPU kernels built for the portable SIMD level (see simd.h); picked at run time. */
#define MLXN_SIMD_LEVEL 0
#define MLXN_LEVEL_FN(name) name##_portable

#include "cpu.h"
#include "rms_norm_impl.h"
#include "rope_impl.h"
#include "attention_impl.h"
#include "softmax_impl.h"
#include "act_impl.h"

const mlxn_cpu_kernel_set mlxn_cpu_kernels_portable = {
    .name = "portable",
    .rms_norm_rows = rms_norm_rows_portable,
    .rope_rows = rope_rows_portable,
    .attention_units = attention_units_portable,
    .softmax_rows = softmax_rows_portable,
    .act_rows = act_rows_portable,
    .act_f32 = act_f32_portable,
};
