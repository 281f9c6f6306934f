/* Oracle: inclusive prefix sums along rows; f32 summed in f64 and rounded once per output, i32
 * summed modulo 2^32 (unsigned arithmetic, the wrap the op documents). */
#include <stdint.h>

#include "ref.h"

void mlxn_ref_cumsum(const mlxn_cumsum_args *a)
{
    for (int64_t r = 0; r < a->n_rows; r++) {
        const char *x = mlxn_rows_ptr(&a->x, r);
        char *y = mlxn_rows_ptr(&a->y, r);
        if (a->dtype == MLXN_DTYPE_I32) {
            uint32_t sum = 0;
            for (int64_t i = 0; i < a->n; i++) {
                sum += (uint32_t)((const int32_t *)x)[i];
                ((int32_t *)y)[i] = (int32_t)sum;
            }
        } else {
            double sum = 0;
            for (int64_t i = 0; i < a->n; i++) {
                sum += ((const float *)x)[i];
                ((float *)y)[i] = (float)sum;
            }
        }
    }
}
