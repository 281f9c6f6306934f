/* Oracle: MLX affine quantized matmul, f64 accumulation of x * (scale * code + bias). */
#include "../../formats/mlx_affine.h"
#include "ref.h"

void mlxn_ref_qmatmul_mlx(const mlxn_qmatmul_mlx_args *a)
{
    const int64_t groups = a->K / a->group_size;
    for (int64_t m = 0; m < a->M; m++) {
        const char *x = mlxn_rows_ptr(&a->x, m);
        float *y = (float *)mlxn_rows_ptr(&a->y, m);
        for (int64_t n = 0; n < a->N; n++) {
            const uint8_t *w = a->w + n * a->w_stride;
            const char *sp = (const char *)a->scales + n * a->s_stride;
            const char *bp = (const char *)a->biases + n * a->b_stride;
            double acc = 0;
            for (int64_t g = 0; g < groups; g++) {
                double s = mlxn_ref_load(a->s_dtype, sp, g), b = mlxn_ref_load(a->s_dtype, bp, g);
                for (int64_t j = g * a->group_size; j < (g + 1) * a->group_size; j++)
                    acc += mlxn_ref_load(a->x_dtype, x, j) * (s * (double)mlxn_mlx_get_code(w, j, a->bits) + b);
            }
            y[n] = (float)acc;
        }
    }
}
