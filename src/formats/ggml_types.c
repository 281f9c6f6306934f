/* The GGML tensor type table, as GGUF numbers it. Ids 4, 5, 31-33 and 36-38 belonged to types
 * that ggml removed; files carrying them are rejected. */
#include "mlxn_gguf.h"

#include <stddef.h>

typedef struct ggml_type_row {
    const char *name;
    int64_t block_elems, block_bytes;
    mlxn_dtype dtype;
} ggml_type_row;

#define NONE MLXN_DTYPE_COUNT

static const ggml_type_row ggml_types[] = {
    [0] = {"f32", 1, 4, MLXN_DTYPE_F32},
    [1] = {"f16", 1, 2, MLXN_DTYPE_F16},
    [2] = {"q4_0", 32, 18, MLXN_DTYPE_Q4_0},
    [3] = {"q4_1", 32, 20, MLXN_DTYPE_Q4_1},
    [6] = {"q5_0", 32, 22, MLXN_DTYPE_Q5_0},
    [7] = {"q5_1", 32, 24, MLXN_DTYPE_Q5_1},
    [8] = {"q8_0", 32, 34, MLXN_DTYPE_Q8_0},
    [9] = {"q8_1", 32, 36, MLXN_DTYPE_Q8_1},
    [10] = {"q2_K", 256, 84, MLXN_DTYPE_Q2_K},
    [11] = {"q3_K", 256, 110, MLXN_DTYPE_Q3_K},
    [12] = {"q4_K", 256, 144, MLXN_DTYPE_Q4_K},
    [13] = {"q5_K", 256, 176, MLXN_DTYPE_Q5_K},
    [14] = {"q6_K", 256, 210, MLXN_DTYPE_Q6_K},
    [15] = {"q8_K", 256, 292, MLXN_DTYPE_Q8_K},
    [16] = {"iq2_xxs", 256, 66, NONE},
    [17] = {"iq2_xs", 256, 74, NONE},
    [18] = {"iq3_xxs", 256, 98, NONE},
    [19] = {"iq1_s", 256, 50, NONE},
    [20] = {"iq4_nl", 32, 18, MLXN_DTYPE_IQ4_NL},
    [21] = {"iq3_s", 256, 110, NONE},
    [22] = {"iq2_s", 256, 82, NONE},
    [23] = {"iq4_xs", 256, 136, MLXN_DTYPE_IQ4_XS},
    [24] = {"i8", 1, 1, MLXN_DTYPE_I8},
    [25] = {"i16", 1, 2, MLXN_DTYPE_I16},
    [26] = {"i32", 1, 4, MLXN_DTYPE_I32},
    [27] = {"i64", 1, 8, NONE},
    [28] = {"f64", 1, 8, NONE},
    [29] = {"iq1_m", 256, 56, NONE},
    [30] = {"bf16", 1, 2, MLXN_DTYPE_BF16},
    [34] = {"tq1_0", 256, 54, NONE},
    [35] = {"tq2_0", 256, 66, NONE},
    [39] = {"mxfp4", 32, 17, NONE},
    [40] = {"nvfp4", 64, 36, NONE},
    [41] = {"q1_0", 128, 18, NONE},
};

bool mlxn_ggml_type_info_get(uint32_t t, mlxn_ggml_type_info *out)
{
    if (t >= sizeof ggml_types / sizeof ggml_types[0] || !ggml_types[t].name)
        return false;
    if (out) {
        out->name = ggml_types[t].name;
        out->block_elems = ggml_types[t].block_elems;
        out->block_bytes = ggml_types[t].block_bytes;
        out->dtype = ggml_types[t].dtype;
    }
    return true;
}
