/* Random weight rows for the matmul and lookup tests, in any GGML block type or f32/f16/bf16. */
#ifndef MLXN_TESTS_WEIGHTS_H
#define MLXN_TESTS_WEIGHTS_H

#include "harness.h"

/* f32, f16 or bf16: the plain (not block-quantized) weight types */
bool weights_plain_dtype(mlxn_dtype t);

/* Byte offsets of the f16 scales inside a block of type t (random bits elsewhere); -1 ends the
 * list. */
const int *weights_f16_fields(mlxn_dtype t);

/* `rows` rows of K weights of type t, of a trained layer's size (|w| ~ 0.02): real quantizations
 * of random rows where mlxn has a quantizer for t, else random valid blocks with f16 scales of
 * that size; the bytes into w (rows of K / block elems * block bytes), the decoded values into
 * wf [rows][K]. */
bool weights_make(mlxn_dtype t, int64_t rows, int64_t K, rng *g, uint8_t *w, float *wf);

#endif
