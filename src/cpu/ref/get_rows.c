/* Oracle: embedding lookup. Each 32-element unit of a GGML row decoded by the reference
 * decoder (mlxn_ref_weight_unit), plain rows read element by element; the product with scale
 * in f64, rounded once to y's dtype. */
#include <math.h>

#include "ref.h"

void mlxn_ref_get_rows(const mlxn_get_rows_args *a)
{
    const bool blocks = mlxn_dtype_is_quantized((mlxn_dtype)a->table_dtype);
    for (int64_t t = 0; t < a->n_tokens; t++) {
        const int32_t id = ((const int32_t *)mlxn_rows_ptr(&a->ids, t / a->ids_len))[t % a->ids_len];
        char *y = mlxn_rows_ptr(&a->y, t);
        if (id < 0 || id >= a->table_rows) {
            for (int64_t i = 0; i < a->n; i++)
                mlxn_ref_store(a->y_dtype, y, i, NAN);
            continue;
        }
        const uint8_t *row = a->table + id * a->table_stride;
        for (int64_t i = 0; i < a->n; i++) {
            double v;
            if (blocks) {
                float unit[32];
                mlxn_ref_weight_unit(a->table_dtype, row, i / 32 * 32, unit);
                v = unit[i % 32];
            } else {
                v = mlxn_ref_load(a->table_dtype, row, i);
            }
            mlxn_ref_store(a->y_dtype, y, i, v * (double)a->scale);
        }
    }
}
