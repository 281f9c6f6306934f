/* The dtype table: names and block geometry of every dtype. */
#include "../formats/mlx_affine.h"
#include "internal.h"

typedef struct dtype_info {
    const char *name;
    int64_t block_elems;
    int64_t block_bytes;
} dtype_info;

/* Block sizes of the GGML formats are those of GGUF; MLX affine packs 32 codes in
 * bits * 32 / 8 bytes. */
static const dtype_info dtypes[MLXN_DTYPE_COUNT] = {
    [MLXN_DTYPE_F32] = {"f32", 1, 4},
    [MLXN_DTYPE_F16] = {"f16", 1, 2},
    [MLXN_DTYPE_BF16] = {"bf16", 1, 2},
    [MLXN_DTYPE_I32] = {"i32", 1, 4},
    [MLXN_DTYPE_U32] = {"u32", 1, 4},
    [MLXN_DTYPE_I16] = {"i16", 1, 2},
    [MLXN_DTYPE_I8] = {"i8", 1, 1},
    [MLXN_DTYPE_U8] = {"u8", 1, 1},
    [MLXN_DTYPE_Q4_0] = {"q4_0", 32, 18},
    [MLXN_DTYPE_Q4_1] = {"q4_1", 32, 20},
    [MLXN_DTYPE_Q5_0] = {"q5_0", 32, 22},
    [MLXN_DTYPE_Q5_1] = {"q5_1", 32, 24},
    [MLXN_DTYPE_Q8_0] = {"q8_0", 32, 34},
    [MLXN_DTYPE_Q8_1] = {"q8_1", 32, 36},
    [MLXN_DTYPE_Q2_K] = {"q2_K", 256, 84},
    [MLXN_DTYPE_Q3_K] = {"q3_K", 256, 110},
    [MLXN_DTYPE_Q4_K] = {"q4_K", 256, 144},
    [MLXN_DTYPE_Q5_K] = {"q5_K", 256, 176},
    [MLXN_DTYPE_Q6_K] = {"q6_K", 256, 210},
    [MLXN_DTYPE_Q8_K] = {"q8_K", 256, 292},
    [MLXN_DTYPE_IQ4_NL] = {"iq4_nl", 32, 18},
    [MLXN_DTYPE_IQ4_XS] = {"iq4_xs", 256, 136},
    [MLXN_DTYPE_MLX_Q2] = {"mlx_q2", 32, 8},
    [MLXN_DTYPE_MLX_Q3] = {"mlx_q3", 32, 12},
    [MLXN_DTYPE_MLX_Q4] = {"mlx_q4", 32, 16},
    [MLXN_DTYPE_MLX_Q5] = {"mlx_q5", 32, 20},
    [MLXN_DTYPE_MLX_Q6] = {"mlx_q6", 32, 24},
    [MLXN_DTYPE_MLX_Q8] = {"mlx_q8", 32, 32},
};

bool mlxn_dtype_valid(int dtype)
{
    return dtype >= 0 && dtype < MLXN_DTYPE_COUNT;
}

const char *mlxn_dtype_name(mlxn_dtype dtype)
{
    return mlxn_dtype_valid((int)dtype) ? dtypes[dtype].name : "?";
}

int64_t mlxn_dtype_block_elems(mlxn_dtype dtype)
{
    return mlxn_dtype_valid((int)dtype) ? dtypes[dtype].block_elems : 0;
}

int64_t mlxn_dtype_block_bytes(mlxn_dtype dtype)
{
    return mlxn_dtype_valid((int)dtype) ? dtypes[dtype].block_bytes : 0;
}

bool mlxn_dtype_is_quantized(mlxn_dtype dtype)
{
    return mlxn_dtype_valid((int)dtype) && dtypes[dtype].block_elems > 1;
}

/* Plain dtypes: their size; MLX codes: their 32-bit words; GGML blocks: none (GGUF packs them:
 * q8_0 KV caches at odd addresses are read by byte loads), except as the weights of the matrix
 * products (ops.c: even, for their f16 fields). */
size_t mlxn_dtype_align(mlxn_dtype dtype)
{
    if (!mlxn_dtype_valid((int)dtype))
        return 1;
    return dtypes[dtype].block_elems == 1 ? (size_t)dtypes[dtype].block_bytes : mlxn_mlx_bits_of(dtype) ? 4 : 1;
}

size_t mlxn_dtype_size(mlxn_dtype dtype)
{
    if (!mlxn_dtype_valid((int)dtype) || dtypes[dtype].block_elems != 1)
        return 0;
    return (size_t)dtypes[dtype].block_bytes;
}
