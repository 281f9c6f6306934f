/* Oracle: y[t, :] = sum_j weights[t, j] * x[t, j, :] in f64, rounded once to y's dtype. */
#include "ref.h"

void mlxn_ref_moe_reduce(const mlxn_moe_reduce_args *a)
{
    for (int64_t t = 0; t < a->n_tokens; t++) {
        const float *w = (const float *)mlxn_rows_ptr(&a->weights, t);
        char *y = mlxn_rows_ptr(&a->y, t);
        for (int64_t i = 0; i < a->n; i++) {
            double acc = 0;
            for (int64_t j = 0; j < a->top_k; j++)
                acc += (double)w[j] * mlxn_ref_load(a->dtype, mlxn_rows_ptr(&a->x, t * a->top_k + j), i);
            mlxn_ref_store(a->dtype, y, i, acc);
        }
    }
}
