/* Oracle: argmax by plain comparison, the first of equal maxima, NaN skipped. */
#include <math.h>

#include "ref.h"

void mlxn_ref_argmax(const mlxn_argmax_args *a)
{
    for (int64_t r = 0; r < a->n_rows; r++) {
        const char *x = mlxn_rows_ptr(&a->x, r);
        int64_t best = -1;
        double best_v = 0;
        for (int64_t i = 0; i < a->n; i++) {
            const double v = mlxn_ref_load(a->dtype, x, i);
            if (!isnan(v) && (best < 0 || v > best_v)) {
                best = i;
                best_v = v;
            }
        }
        a->out[r] = (int32_t)best;
    }
}
