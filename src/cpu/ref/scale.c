/* Oracle: y = alpha * x + beta in f64, rounded once to y's dtype. */
#include "ref.h"

void mlxn_ref_scale(const mlxn_scale_args *a)
{
    for (int64_t r = 0; r < a->n_rows; r++) {
        const char *x = mlxn_rows_ptr(&a->x, r);
        char *y = mlxn_rows_ptr(&a->y, r);
        for (int64_t i = 0; i < a->n; i++)
            mlxn_ref_store(a->dtype, y, i, (double)a->alpha * mlxn_ref_load(a->dtype, x, i) + (double)a->beta);
    }
}
