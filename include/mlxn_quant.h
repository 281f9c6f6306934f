/* Quantization formats on the host: reference quantize and dequantize, bit-compatible with
 * the formats' own tools. */
#ifndef MLXN_QUANT_H
#define MLXN_QUANT_H

#include "mlxn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- MLX affine
 *
 * A row of k values becomes k codes of `bits` bits (2, 3, 4, 5, 6 or 8), packed little-endian
 * low bits first as one bit stream (code i at bits [i*bits, (i+1)*bits) of the row's bytes;
 * k * bits / 8 bytes, read as uint32 words by MLX), plus a scale and a bias per group of
 * group_size (32, 64 or 128) values: w = scale * code + bias. Bit-compatible with
 * mlx.core.quantize / mlx.core.dequantize (checked against the mlx package in the tests).
 */

/* Quantizes rows x k values of w (f32, f16 or bf16; dtype says which) into codes
 * [rows, k*bits/8 bytes], scales and biases [rows, k/group_size] of w's dtype. */
MLXN_API mlxn_status mlxn_mlx_quantize(const void *w, mlxn_dtype dtype, int64_t rows, int64_t k,
                                       int bits, int group_size, void *codes, void *scales,
                                       void *biases);

/* The inverse: out = scale * code + bias with scales and biases of `dtype`, computed as MLX
 * does (in that dtype, the product and the sum each rounded to it), returned as f32. */
MLXN_API mlxn_status mlxn_mlx_dequantize(const void *codes, const void *scales,
                                         const void *biases, mlxn_dtype dtype, int64_t rows,
                                         int64_t k, int bits, int group_size, float *out);

/* ---------------------------------------------------------------- GGML blocks
 *
 * The block formats of GGUF files: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (32 elements per block), Q2_K,
 * Q3_K, Q4_K, Q5_K, Q6_K (256), IQ4_NL (32) and IQ4_XS (256); block bytes as
 * mlxn_ggml_type_info reports them. Dequantize of every type, and quantize of Q4_0, Q4_1, Q5_0,
 * Q5_1 and Q8_0, are bit-exact with the gguf Python package (and so with ggml's reference C),
 * checked against its output in the tests.
 */

/* Decodes n elements (a multiple of the block size) of `type` blocks into f32. The blocks may
 * lie at any address (both calls go through an aligned copy where needed). */
MLXN_API mlxn_status mlxn_ggml_dequantize(mlxn_dtype type, const void *blocks, int64_t n, float *out);

/* Encodes n f32 elements (a multiple of the block size) into `type` blocks, every type above.
 * Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 as ggml's reference quantizer does, bit for bit. The K types
 * and IQ4_NL / IQ4_XS with mlxn's own fit, NOT bit-exact with ggml (no reference to match: gguf
 * has no quantizer for them): per sub-block range fits whose scale and minimum codes round up,
 * so every value is within half a step of its sub-block (IQ4: within the code book's largest
 * gap or its clipped top, 14 steps of 1/127 of the sub-block's largest magnitude); ggml's
 * error-minimizing search gives a smaller mean error. Any GGML decoder reads the blocks. */
MLXN_API mlxn_status mlxn_ggml_quantize(mlxn_dtype type, const float *x, int64_t n, void *blocks);

#ifdef __cplusplus
}
#endif

#endif /* MLXN_QUANT_H */
