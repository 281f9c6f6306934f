/* Oracle: y = x / max(||x||_2, eps) per row, in f64, rounded once to the dtype. */
#include <math.h>

#include "ref.h"

void mlxn_ref_l2_norm(const mlxn_l2_norm_args *a)
{
    for (int64_t r = 0; r < a->n_rows; r++) {
        const char *x = mlxn_rows_ptr(&a->x, r);
        char *y = mlxn_rows_ptr(&a->y, r);
        double ss = 0;
        for (int64_t i = 0; i < a->n; i++) {
            const double v = mlxn_ref_load(a->dtype, x, i);
            ss += v * v;
        }
        const double d = fmax(sqrt(ss), (double)a->eps);
        for (int64_t i = 0; i < a->n; i++)
            mlxn_ref_store(a->dtype, y, i, mlxn_ref_load(a->dtype, x, i) / d);
    }
}
