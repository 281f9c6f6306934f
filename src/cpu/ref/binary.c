/* Oracle: y = a op b in f64 with b broadcast over a, rounded once to y's dtype. */
#include "ref.h"

static double binop(int op, double a, double b)
{
    switch (op) {
    case MLXN_BINOP_ADD: return a + b;
    case MLXN_BINOP_SUB: return a - b;
    case MLXN_BINOP_MUL: return a * b;
    default: return a / b;
    }
}

void mlxn_ref_binary(const mlxn_binary_args *a)
{
    for (int64_t r = 0; r < a->n_rows; r++) {
        const char *x = mlxn_rows_ptr(&a->a, r), *b = mlxn_rows_ptr(&a->b, r);
        char *y = mlxn_rows_ptr(&a->y, r);
        for (int64_t i = 0; i < a->n; i++) {
            const double bv = mlxn_ref_load(a->b_dtype, b + i * a->b_inc, 0);
            mlxn_ref_store(a->dtype, y, i, binop(a->op, mlxn_ref_load(a->dtype, x, i), bv));
        }
    }
}
