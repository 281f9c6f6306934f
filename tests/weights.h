/* Random weight rows for the matmul and lookup tests, in any GGML block type or f32/f16/bf16. */
#ifndef MLXN_TESTS_WEIGHTS_H
#define MLXN_TESTS_WEIGHTS_H

#include "harness.h"

/* f32, f16 or bf16: the plain (not block-quantized) weight types */
bool weights_plain_dtype(mlxn_dtype t);

/* Byte offsets of the f16 scales inside a block of type t (random bits elsewhere); -1 ends the
 * list. */
const int *weights_f16_fields(mlxn_dtype t);

/* One row of K elements of block type t as random valid blocks: random bits (so every code, sub-
 * scale and sign pattern a file may hold, e.g. the negative Q3_K / Q6_K scales that ggml writes
 * and mlxn's quantizers do not), the f16 scales of a trained layer's size. */
void weights_random_blocks(mlxn_dtype t, int64_t K, rng *g, uint8_t *row);

/* `rows` rows of K weights of type t, of a trained layer's size (|w| ~ 0.02): for block types
 * about half the rows real quantizations of random rows (mlxn_ggml_quantize), the others random
 * valid blocks (weights_random_blocks); the bytes into w (rows of K / block elems * block
 * bytes), the decoded values into wf [rows][K]. */
bool weights_make(mlxn_dtype t, int64_t rows, int64_t K, rng *g, uint8_t *w, float *wf);

#endif
