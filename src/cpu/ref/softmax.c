/* Oracle: the softmax family in f64 (two passes: max, then the sum), rounded once. */
#include <math.h>

#include "ref.h"

static double logit(const mlxn_softmax_args *a, const char *x, const char *mask, int64_t i)
{
    double z = mlxn_ref_load(a->dtype, x, i) * (double)a->scale;
    if (a->softcap > 0)
        z = a->softcap * tanh(z / a->softcap);
    return z + (mask ? mlxn_ref_load(a->dtype, mask, i) : 0.0);
}

void mlxn_ref_softmax(const mlxn_softmax_args *a)
{
    for (int64_t r = 0; r < a->n_rows; r++) {
        const char *x = mlxn_rows_ptr(&a->x, r);
        const char *mask = a->mask.base ? mlxn_rows_ptr(&a->mask, r) : NULL;
        char *y = mlxn_rows_ptr(&a->y, r);
        double m = -INFINITY, s = 0;
        for (int64_t i = 0; i < a->n; i++)
            m = fmax(m, logit(a, x, mask, i));
        for (int64_t i = 0; m != -INFINITY && i < a->n; i++)
            s += exp(logit(a, x, mask, i) - m);
        for (int64_t i = 0; i < a->n; i++) {
            const double z = logit(a, x, mask, i);
            const double v = m == -INFINITY ? (a->log ? -INFINITY : 0.0) : a->log ? (z - m) - log(s) : exp(z - m) / s;
            mlxn_ref_store(a->dtype, y, i, v);
        }
    }
}
