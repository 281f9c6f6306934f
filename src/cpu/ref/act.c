/* Oracle: activations in f64, each output rounded once to the dtype. */
#include <math.h>

#include "ref.h"

double mlxn_ref_act_f64(int act, double x)
{
    switch (act) {
    case MLXN_ACT_SILU: return x / (1.0 + exp(-x));
    /* the forms without 1 + tanh / 1 + erf, which cancel for negative x even in f64 */
    case MLXN_ACT_GELU_TANH: return x / (1.0 + exp(-2.0 * sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case MLXN_ACT_GELU_ERF: return 0.5 * x * erfc(-x / sqrt(2.0));
    default: return 1.0 / (1.0 + exp(-x));
    }
}

void mlxn_ref_act(const mlxn_act_args *a)
{
    for (int64_t r = 0; r < a->n_rows; r++) {
        const char *x = mlxn_rows_ptr(&a->x, r);
        const char *up = a->up.base ? mlxn_rows_ptr(&a->up, r) : NULL;
        char *y = mlxn_rows_ptr(&a->y, r);
        for (int64_t i = 0; i < a->n; i++) {
            double v = mlxn_ref_act_f64(a->act, mlxn_ref_load(a->dtype, x, i));
            if (up)
                v *= mlxn_ref_load(a->dtype, up, i);
            mlxn_ref_store(a->dtype, y, i, v);
        }
    }
}
