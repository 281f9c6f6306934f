/* MoE gating on the CPU: tokens split across the thread pool. Per token, softmax's max and sum
 * in one pass over the logits (eight partial sums, so the sum's rounding grows with E / 8), then
 * a second pass that recomputes each probability and keeps the top_k scores in a list sorted by
 * (score descending, index ascending): experts arrive in index order, so a later expert enters
 * only with a strictly larger score and equal scores stay behind the lower index. */
#include <math.h>

#include "../core/half.h"
#include "cpu.h"
#include "ref/ref.h"

static void moe_gate_task(void *ctx, int64_t t0, int64_t t1)
{
    const mlxn_moe_gate_args *a = ctx;
    const int64_t E = a->n_experts;
    const int k = a->top_k;
    const bool softmax = a->gating == MLXN_MOE_GATING_SOFTMAX;
    for (int64_t t = t0; t < t1; t++) {
        const char *x = mlxn_rows_ptr(&a->logits, t);
        float m = -INFINITY, sum = 1.0f;
        if (softmax) {
            for (int64_t i = 0; i < E; i++)
                m = fmaxf(m, mlxn_load_float(a->dtype, x, i));
            float part[8] = {0};
            for (int64_t i = 0; i < E; i++)
                part[i & 7] += expf(mlxn_load_float(a->dtype, x, i) - m);
            sum = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
        }
        float top_s[MLXN_MOE_MAX_TOP_K], top_p[MLXN_MOE_MAX_TOP_K];
        int32_t top_i[MLXN_MOE_MAX_TOP_K];
        int n = 0;
        for (int64_t i = 0; i < E; i++) {
            const float l = mlxn_load_float(a->dtype, x, i);
            const float p = softmax ? expf(l - m) / sum : 1.0f / (1.0f + expf(-l));
            const float s = a->bias ? p + a->bias[i] : p;
            if (n == k && !(s > top_s[k - 1]))
                continue;
            int pos = n < k ? n++ : k - 1;
            for (; pos > 0 && s > top_s[pos - 1]; pos--) {
                top_s[pos] = top_s[pos - 1];
                top_p[pos] = top_p[pos - 1];
                top_i[pos] = top_i[pos - 1];
            }
            top_s[pos] = s;
            top_p[pos] = p;
            top_i[pos] = (int32_t)i;
        }
        float wsum = 0.0f;
        for (int j = 0; j < k; j++)
            wsum += top_p[j];
        int32_t *ids = (int32_t *)mlxn_rows_ptr(&a->ids, t);
        float *w = (float *)mlxn_rows_ptr(&a->weights, t);
        for (int j = 0; j < k; j++) {
            ids[j] = top_i[j];
            w[j] = (a->normalize ? top_p[j] / wsum : top_p[j]) * a->scale;
        }
    }
}

mlxn_status mlxn_cpu_moe_gate(mlxn_stream *s, const mlxn_moe_gate_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_moe_gate(a);
        return MLXN_STATUS_OK;
    }
    /* a token costs about 2E exponentials: a few thousand per range keep the handoff cheap */
    const int64_t min_tokens = a->n_experts >= 4096 ? 1 : 4096 / a->n_experts;
    mlxn_threadpool_run(d->pool, a->n_tokens, min_tokens, moe_gate_task, (void *)a);
    return MLXN_STATUS_OK;
}
