/* Oracle: y = x element by element in row-major order of the shape; a value changes dtype
 * through f64 (exact for f32, f16, bf16) and is rounded once; one dtype moves its bytes. */
#include <string.h>

#include "ref.h"

void mlxn_ref_copy(const mlxn_copy_args *a)
{
    int64_t numel = 1;
    for (int d = 0; d < a->ndim; d++)
        numel *= a->shape[d];
    const size_t es = mlxn_dtype_size((mlxn_dtype)a->x_dtype);
    for (int64_t e = 0; e < numel; e++) {
        int64_t rest = e, xo = 0, yo = 0;
        for (int d = a->ndim - 1; d >= 0; d--) {
            const int64_t i = rest % a->shape[d];
            rest /= a->shape[d];
            xo += i * a->xs[d];
            yo += i * a->ys[d];
        }
        if (a->x_dtype == a->y_dtype)
            memcpy(a->y + yo, a->x + xo, es);
        else
            mlxn_ref_store(a->y_dtype, a->y + yo, 0, mlxn_ref_load(a->x_dtype, a->x + xo, 0));
    }
}
