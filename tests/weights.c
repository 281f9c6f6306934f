/* Random weight rows for the tests (weights.h). */
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "mlxn_quant.h"
#include "weights.h"

const int *weights_f16_fields(mlxn_dtype t)
{
    static const int d0[] = {0, -1}, d02[] = {0, 2, -1}, q2k[] = {80, 82, -1}, q3k[] = {108, -1},
                     q6k[] = {208, -1};
    switch (t) {
    case MLXN_DTYPE_Q4_1: case MLXN_DTYPE_Q5_1: case MLXN_DTYPE_Q4_K: case MLXN_DTYPE_Q5_K: return d02;
    case MLXN_DTYPE_Q2_K: return q2k;
    case MLXN_DTYPE_Q3_K: return q3k;
    case MLXN_DTYPE_Q6_K: return q6k;
    default: return d0;
    }
}

bool weights_plain_dtype(mlxn_dtype t) { return t == MLXN_DTYPE_F32 || t == MLXN_DTYPE_F16 || t == MLXN_DTYPE_BF16; }

void weights_random_blocks(mlxn_dtype t, int64_t K, rng *g, uint8_t *row)
{
    const int64_t be = mlxn_dtype_block_elems(t), bb = mlxn_dtype_block_bytes(t);
    for (int64_t i = 0; i < K / be * bb; i++)
        row[i] = (uint8_t)rng_next(g);
    for (int64_t b = 0; b < K / be; b++)
        for (const int *f = weights_f16_fields(t); *f >= 0; f++) {
            const uint16_t h =
                mlxn_f32_to_f16((float)((rng_uniform(g) * 0.002 + 0.0005) * (rng_uniform(g) < 0.5 ? -1 : 1)));
            memcpy(row + b * bb + *f, &h, 2);
        }
}

bool weights_make(mlxn_dtype t, int64_t rows, int64_t K, rng *g, uint8_t *w, float *wf)
{
    const int64_t be = mlxn_dtype_block_elems(t), bb = mlxn_dtype_block_bytes(t), row_bytes = K / be * bb;
    float *rowf = malloc((size_t)K * sizeof(float));
    bool ok = rowf != NULL;
    for (int64_t n = 0; ok && n < rows; n++) {
        uint8_t *row = w + n * row_bytes;
        /* half the quantized rows are random bits (every code and scale the format allows);
           they need no float row */
        const bool random_bits = !weights_plain_dtype(t) && rng_uniform(g) < 0.5;
        const double sc = 0.02 * (1 + rng_uniform(g)), off = 0.01 * rng_normal(g);
        for (int64_t i = 0; !random_bits && i < K; i++)
            rowf[i] = (float)(off + sc * rng_normal(g));
        if (weights_plain_dtype(t)) {
            for (int64_t i = 0; i < K; i++) {
                if (t == MLXN_DTYPE_F32)
                    ((float *)row)[i] = rowf[i];
                else
                    ((uint16_t *)row)[i] = t == MLXN_DTYPE_F16 ? mlxn_f32_to_f16(rowf[i]) : mlxn_f32_to_bf16(rowf[i]);
                wf[n * K + i] = t == MLXN_DTYPE_F32   ? rowf[i]
                                : t == MLXN_DTYPE_F16 ? mlxn_f16_to_f32(((uint16_t *)row)[i])
                                                      : mlxn_bf16_to_f32(((uint16_t *)row)[i]);
            }
            continue;
        }
        if (random_bits || mlxn_ggml_quantize(t, rowf, K, row) != MLXN_STATUS_OK)
            weights_random_blocks(t, K, g, row);
        ok = mlxn_ggml_dequantize(t, row, K, wf + n * K) == MLXN_STATUS_OK;
    }
    free(rowf);
    return ok;
}
