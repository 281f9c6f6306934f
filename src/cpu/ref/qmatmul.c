/* Oracle: quantized matmul with GGML (or plain float) weights: each 32-element unit of a row
 * of W decoded by the reference decoder (the one checked bit for bit against gguf-py), f64
 * accumulation. */
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

void mlxn_ref_qmatmul(const mlxn_qmatmul_args *a)
{
    for (int64_t m = 0; m < a->M; m++) {
        const char *x = mlxn_rows_ptr(&a->x, m);
        float *y = (float *)mlxn_rows_ptr(&a->y, m);
        for (int64_t n = 0; n < a->N; n++) {
            const uint8_t *w = a->w + n * a->w_stride;
            double acc = 0;
            for (int64_t k0 = 0; k0 < a->K; k0 += 32) {
                float v[32];
                mlxn_ref_weight_unit(a->w_dtype, w, k0, v);
                for (int j = 0; j < 32; j++)
                    acc += mlxn_ref_load(a->x_dtype, x, k0 + j) * (double)v[j];
            }
            y[n] = (float)acc;
        }
    }
}
