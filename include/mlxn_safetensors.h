/* safetensors files: single files and sharded checkpoints (model.safetensors.index.json),
 * read through memory maps with zero copies; plus the quantization settings of MLX checkpoints.
 *
 * Opening validates the header: JSON syntax, every entry's dtype, shape and data_offsets, and
 * that the tensors tile the data buffer exactly (as the reference implementation requires).
 * Anything out of place is MLXN_STATUS_ERR_BAD_FORMAT with a message naming the field.
 */
#ifndef MLXN_SAFETENSORS_H
#define MLXN_SAFETENSORS_H

#include "mlxn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MLXN_SAFETENSORS_MAX_DIMS 8

typedef struct mlxn_st_tensor {
    const char *name;
    const char *dtype_name;    /* as in the file: "F32", "BF16", "U32", "F8_E4M3", ... */
    mlxn_dtype dtype;          /* MLXN_DTYPE_COUNT where mlxn has none (F64, I64, F8, ...) */
    int ndim;                  /* 0..MLXN_SAFETENSORS_MAX_DIMS (0: a scalar) */
    int64_t shape[MLXN_SAFETENSORS_MAX_DIMS]; /* outermost first */
    uint64_t size;             /* bytes */
    const void *data;          /* in the shard's mapping */
    int shard;                 /* index of the file it lives in */
} mlxn_st_tensor;

typedef struct mlxn_safetensors mlxn_safetensors;

/* Opens a .safetensors file, or every shard named by a *.index.json file. */
MLXN_API mlxn_status mlxn_safetensors_open(const char *path, mlxn_safetensors **out);
/* One file's bytes held by the caller (alive and unchanged until free). */
MLXN_API mlxn_status mlxn_safetensors_open_memory_borrowed(const void *data, size_t size,
                                                           mlxn_safetensors **out);
MLXN_API void mlxn_safetensors_free(mlxn_safetensors *st);

MLXN_API int64_t mlxn_safetensors_tensor_count(const mlxn_safetensors *st);
MLXN_API const mlxn_st_tensor *mlxn_safetensors_tensor_at(const mlxn_safetensors *st, int64_t i);
MLXN_API const mlxn_st_tensor *mlxn_safetensors_find(const mlxn_safetensors *st,
                                                     const char *name);
/* __metadata__ (string to string) of the first file, in file order. */
MLXN_API int64_t mlxn_safetensors_metadata_count(const mlxn_safetensors *st);
MLXN_API const char *mlxn_safetensors_metadata_key(const mlxn_safetensors *st, int64_t i);
MLXN_API const char *mlxn_safetensors_metadata_get(const mlxn_safetensors *st, const char *key);

/* A view of a tensor in `buffer`, which holds the tensor's bytes from byte `offset` on (for
 * example a CPU buffer made with mlxn_buffer_create_host_borrowed over t->data, or a GPU
 * upload). More than MLXN_MAX_DIMS dims, or a dtype without an mlxn dtype, is UNSUPPORTED. */
MLXN_API mlxn_status mlxn_st_tensor_view(const mlxn_st_tensor *t, mlxn_buffer *buffer,
                                         size_t offset, mlxn_tensor *out);

/* ---------------------------------------------------------------- MLX checkpoints
 *
 * MLX-quantized layers are stored as `<layer>.weight` (U32 words of packed codes, [N, K*bits/32]),
 * `<layer>.scales` and `<layer>.biases` ([N, K/group_size], f16/bf16/f32), with the settings in
 * config.json: "quantization": {"group_size": G, "bits": B, "<layer>": {...} or false}.
 */
typedef struct mlxn_mlx_quant_config mlxn_mlx_quant_config;

/* Reads the "quantization" (or "quantization_config") block of a config.json. A config with no
 * such block is valid: every layer is then unquantized. */
MLXN_API mlxn_status mlxn_mlx_quant_config_open(const char *config_json_path,
                                                mlxn_mlx_quant_config **out);
MLXN_API mlxn_status mlxn_mlx_quant_config_parse(const char *json, size_t len,
                                                 mlxn_mlx_quant_config **out);
MLXN_API void mlxn_mlx_quant_config_free(mlxn_mlx_quant_config *c);
/* The settings of a layer (its path without ".weight"): per-layer overrides first, then the
 * defaults. *quantized is false for layers the config leaves unquantized. */
MLXN_API void mlxn_mlx_quant_config_layer(const mlxn_mlx_quant_config *c, const char *layer,
                                          bool *quantized, int *bits, int *group_size);

/* The dtype of an MLX affine weight with that many bits (MLXN_DTYPE_MLX_Q2.._Q8), or
 * MLXN_DTYPE_COUNT for a width MLX does not have. */
MLXN_API mlxn_dtype mlxn_mlx_dtype_for_bits(int bits);

#ifdef __cplusplus
}
#endif

#endif /* MLXN_SAFETENSORS_H */
