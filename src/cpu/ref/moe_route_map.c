/* Oracle: the routing map by its definition, one pass over the pairs per expert. */
#include "ref.h"

static int32_t pair_id(const mlxn_moe_route_map_args *a, int64_t p)
{
    return ((const int32_t *)mlxn_rows_ptr(&a->ids, p / a->k))[p % a->k];
}

void mlxn_ref_moe_route_map(const mlxn_moe_route_map_args *a)
{
    const int64_t P = a->n_tokens * a->k;
    int64_t n = 0;
    for (int e = 0; e < a->n_experts; e++) {
        a->offsets[e] = (int32_t)n;
        for (int64_t p = 0; p < P; p++)
            if (pair_id(a, p) == e)
                a->rows[n++] = (int32_t)p;
    }
    a->offsets[a->n_experts] = (int32_t)n;
    while (n < P)
        a->rows[n++] = -1;
}
