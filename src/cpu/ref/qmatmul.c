/* Oracle: quantized matmul with GGML (or plain float) weights: each 32-element unit of a row
 * of W decoded by the reference decoder (the one checked bit for bit against gguf-py), f64
 * accumulation. The fusions (norm of x first, GLU of the gate and up halves, accumulation into y)
 * in f64 as well. */
#include <math.h>

#include "../../formats/ggml_decode.h"
#include "ref.h"

/* Elements k0 .. k0 + 31 of row w of W, as f32. */
void mlxn_ref_weight_unit(int w_dtype, const uint8_t *w, int64_t k0, float *out)
{
    if (mlxn_ggml_block_elems(w_dtype)) {
        int u;
        const uint8_t *p = mlxn_ggml_unit_ptr(w_dtype, w, k0, &u);
        mlxn_ggml_unit(w_dtype, p, u, out);
    } else {
        for (int j = 0; j < 32; j++)
            out[j] = (float)mlxn_ref_load(w_dtype, w, k0 + j);
    }
}

/* Row n of W dotted with row x of x, each x_k scaled by inv * norm_w[k] when the norm is fused.
 * GGML rows are whole units of 32; f32/f16/bf16 rows may end inside one. */
static double dot_row(const mlxn_qmatmul_args *a, const char *x, double inv, int64_t n)
{
    const uint8_t *w = a->w + n * a->w_stride;
    const bool blocks = mlxn_dtype_block_elems(a->w_dtype) > 1;
    double acc = 0;
    for (int64_t k0 = 0; k0 < a->K; k0 += 32) {
        const int nk = a->K - k0 < 32 ? (int)(a->K - k0) : 32;
        float v[32];
        if (blocks)
            mlxn_ref_weight_unit(a->w_dtype, w, k0, v);
        else
            for (int j = 0; j < nk; j++)
                v[j] = (float)mlxn_ref_load(a->w_dtype, w, k0 + j);
        for (int j = 0; j < nk; j++) {
            double xk = mlxn_ref_load(a->x_dtype, x, k0 + j);
            if (a->norm_w)
                xk *= inv * a->norm_w[k0 + j];
            acc += xk * (double)v[j];
        }
    }
    return acc;
}

void mlxn_ref_qmatmul(const mlxn_qmatmul_args *a)
{
    const int64_t n_out = a->glu ? a->N / 2 : a->N;
    for (int64_t m = 0; m < a->M; m++) {
        const char *x = mlxn_rows_ptr(&a->x, m);
        float *y = (float *)mlxn_rows_ptr(&a->y, m);
        const double inv = a->norm_w ? mlxn_ref_inv_rms(a->x_dtype, x, a->K, a->norm_eps) : 1.0;
        for (int64_t n = 0; n < n_out; n++) {
            double v = dot_row(a, x, inv, n);
            if (a->glu)
                v = mlxn_ref_act_f64(a->glu_act, v) * dot_row(a, x, inv, n + n_out);
            y[n] = (float)(a->accumulate ? (double)y[n] + v : v);
        }
    }
}
