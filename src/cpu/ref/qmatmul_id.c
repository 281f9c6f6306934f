/* Oracle: the expert-routed quantized matmul pair by pair, each output an f64 dot product of
 * x's row with the expert's row of W decoded by the reference decoder; SwiGLU in f64. */
#include <math.h>

#include "ref.h"

/* GGML rows are whole units of 32; f32/f16/bf16 rows may end inside one */
static double dot(const mlxn_qmatmul_id_args *a, const char *x, const uint8_t *w)
{
    double acc = 0;
    if (mlxn_dtype_block_elems(a->w_dtype) == 1) {
        for (int64_t i = 0; i < a->K; i++)
            acc += mlxn_ref_load(a->x_dtype, x, i) * mlxn_ref_load(a->w_dtype, w, i);
        return acc;
    }
    for (int64_t k0 = 0; k0 < a->K; k0 += 32) {
        float v[32];
        mlxn_ref_weight_unit(a->w_dtype, w, k0, v);
        for (int j = 0; j < 32; j++)
            acc += mlxn_ref_load(a->x_dtype, x, k0 + j) * (double)v[j];
    }
    return acc;
}

void mlxn_ref_qmatmul_id(const mlxn_qmatmul_id_args *a)
{
    for (int64_t p = 0; p < a->T * a->k; p++) {
        const int32_t e = ((const int32_t *)mlxn_rows_ptr(&a->ids, p / a->k))[p % a->k];
        const char *x = mlxn_rows_ptr(&a->x, a->x_per_slot ? p : p / a->k);
        float *y = (float *)mlxn_rows_ptr(&a->y, p);
        for (int64_t n = 0; n < a->N; n++) {
            if (e < 0 || e >= a->E) {
                y[n] = 0.0f;
                continue;
            }
            const double g = dot(a, x, a->w + e * a->w_expert_stride + n * a->w_stride);
            if (!a->w_up) {
                y[n] = (float)g;
                continue;
            }
            const double u = dot(a, x, a->w_up + e * a->up_expert_stride + n * a->up_stride);
            y[n] = (float)(g / (1.0 + exp(-g)) * u);
        }
    }
}
