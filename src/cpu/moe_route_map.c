/* The routing map on the CPU: a count per expert, the exclusive sum, then one pass over the
 * pairs in order that appends each to its expert's list (so every list is increasing). */
#include "cpu.h"
#include "ref/ref.h"

void mlxn_cpu_route_map_build(const mlxn_rows *ids, int64_t T, int64_t k, int E, int32_t *offsets, int32_t *rows)
{
    const int64_t P = T * k;
    for (int e = 0; e <= E; e++)
        offsets[e] = 0;
    for (int64_t t = 0; t < T; t++) {
        const int32_t *id = (const int32_t *)mlxn_rows_ptr(ids, t);
        for (int64_t j = 0; j < k; j++)
            if (id[j] >= 0 && id[j] < E)
                offsets[id[j] + 1]++;
    }
    for (int e = 0; e < E; e++)
        offsets[e + 1] += offsets[e];
    /* offsets[e] serves as expert e's cursor: after the pass it holds the start of e + 1, and
     * one shift puts every start back in place */
    for (int64_t t = 0; t < T; t++) {
        const int32_t *id = (const int32_t *)mlxn_rows_ptr(ids, t);
        for (int64_t j = 0; j < k; j++)
            if (id[j] >= 0 && id[j] < E)
                rows[offsets[id[j]]++] = (int32_t)(t * k + j);
    }
    for (int e = E - 1; e > 0; e--)
        offsets[e] = offsets[e - 1];
    offsets[0] = 0;
    for (int64_t p = offsets[E]; p < P; p++)
        rows[p] = -1;
}

mlxn_status mlxn_cpu_moe_route_map(mlxn_stream *s, const mlxn_moe_route_map_args *a)
{
    if (!mlxn_cpu_dev(s)->kernels) {
        mlxn_ref_moe_route_map(a);
        return MLXN_STATUS_OK;
    }
    mlxn_cpu_route_map_build(&a->ids, a->n_tokens, a->k, a->n_experts, a->offsets, a->rows);
    return MLXN_STATUS_OK;
}
