/* Oracle: MoE gating in f64. Probabilities over the whole row, then top_k rounds that each take
 * the not yet selected expert with the largest score, the lowest index among equal scores. */
#include <math.h>

#include "ref.h"

/* p[i] of the row: softmax (given the row's max m and sum of exp(l - m)) or sigmoid. */
static double prob(const mlxn_moe_gate_args *a, const char *x, int64_t i, double m, double sum)
{
    const double l = mlxn_ref_load(a->dtype, x, i);
    return a->gating == MLXN_MOE_GATING_SOFTMAX ? exp(l - m) / sum : 1.0 / (1.0 + exp(-l));
}

void mlxn_ref_moe_gate(const mlxn_moe_gate_args *a)
{
    const int64_t E = a->n_experts;
    const int k = a->top_k;
    for (int64_t t = 0; t < a->n_tokens; t++) {
        const char *x = mlxn_rows_ptr(&a->logits, t);
        double m = -INFINITY, sum = 0;
        for (int64_t i = 0; i < E; i++)
            m = fmax(m, mlxn_ref_load(a->dtype, x, i));
        for (int64_t i = 0; i < E; i++)
            sum += exp(mlxn_ref_load(a->dtype, x, i) - m);
        int64_t sel[MLXN_MOE_MAX_TOP_K];
        double w[MLXN_MOE_MAX_TOP_K], wsum = 0;
        for (int j = 0; j < k; j++) {
            int64_t best = -1;
            double best_s = 0;
            for (int64_t i = 0; i < E; i++) {
                bool taken = false;
                for (int q = 0; q < j; q++)
                    taken |= sel[q] == i;
                const double s = prob(a, x, i, m, sum) + (a->bias ? (double)a->bias[i] : 0.0);
                if (!taken && (best < 0 || s > best_s)) {
                    best = i;
                    best_s = s;
                }
            }
            sel[j] = best;
            w[j] = prob(a, x, best, m, sum);
            wsum += w[j];
        }
        int32_t *ids = (int32_t *)mlxn_rows_ptr(&a->ids, t);
        float *wt = (float *)mlxn_rows_ptr(&a->weights, t);
        for (int j = 0; j < k; j++) {
            ids[j] = (int32_t)sel[j];
            wt[j] = (float)((a->normalize ? w[j] / wsum : w[j]) * (double)a->scale);
        }
    }
}
