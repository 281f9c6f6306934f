/* Oracle: attention and the KV-cache append in f64. Per query row: the logits of the visible
 * keys (scale, softcap, mask), their max with the sink, the softmax denominator (sink included),
 * the weighted sum of V; rounded once to o's dtype. A q8_0 cache is read as its dequantized
 * values (q * d, exact in f64); the append quantizes with the reference quantizer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/half.h"
#include "../../formats/ggml_blocks.h"
#include "mlxn_quant.h"
#include "ref.h"

/* Element d of a cache row of dtype dt. */
static double kv_load(int dt, const char *row, int64_t d)
{
    if (dt != MLXN_DTYPE_Q8_0)
        return mlxn_ref_load(dt, row, d);
    const char *blk = row + d / MLXN_QK * (int64_t)sizeof(mlxn_block_q8_0);
    uint16_t scale;
    memcpy(&scale, blk, 2);
    return (double)(int8_t)blk[2 + d % MLXN_QK] * (double)mlxn_f16_to_f32(scale);
}

/* The logit of key j (its row kj, widened) for query row qd at position p: -inf when the key is
 * not visible. */
static double logit(const mlxn_attention_args *a, const double *qd, const double *kj, int64_t t, int64_t j,
                    int64_t first)
{
    const int64_t p = first + t, valid = first + a->Tq;
    if (j >= valid || (a->causal && j > p) || (a->window > 0 && j <= p - a->window))
        return -INFINITY;
    double dot = 0;
    for (int64_t d = 0; d < a->D; d++)
        dot += qd[d] * kj[d];
    double z = (double)a->scale * dot;
    if (a->softcap > 0)
        z = a->softcap * tanh(z / a->softcap);
    if (a->mask)
        z += *(const float *)((const char *)a->mask + t * a->mask_stride + j * (int64_t)sizeof(float));
    return z;
}

/* One query row (batch b, position first + t, head h) against its kv head's widened rows kd, vd. */
static void query_row(const mlxn_attention_args *a, int64_t b, int64_t t, int64_t h, int64_t first,
                      const double *kd, const double *vd, double *qd, double *z, double *acc)
{
    const char *q = a->q.base + b * a->q.s0 + t * a->q.s1 + h * a->q.s2;
    char *o = a->o.base + b * a->o.s0 + t * a->o.s1 + h * a->o.s2;
    const int64_t valid = first + a->Tq;
    for (int64_t d = 0; d < a->D; d++)
        qd[d] = mlxn_ref_load(a->q_dtype, q, d);
    double m = -INFINITY;
    for (int64_t j = 0; j < valid; j++) {
        z[j] = logit(a, qd, kd + j * a->D, t, j, first);
        m = fmax(m, z[j]);
    }
    const bool any = m != -INFINITY;
    if (a->sinks)
        m = fmax(m, (double)a->sinks[h]);
    double l = a->sinks && m != -INFINITY ? exp((double)a->sinks[h] - m) : 0.0;
    for (int64_t d = 0; d < a->D; d++)
        acc[d] = 0;
    for (int64_t j = 0; any && j < valid; j++) {
        if (z[j] == -INFINITY)
            continue;
        const double w = exp(z[j] - m);
        l += w;
        for (int64_t d = 0; d < a->D; d++)
            acc[d] += w * vd[j * a->D + d];
    }
    for (int64_t d = 0; d < a->D; d++)
        mlxn_ref_store(a->q_dtype, o, d, any ? acc[d] / l : 0.0);
}

mlxn_status mlxn_ref_attention(const mlxn_attention_args *a)
{
    /* each kv head's visible rows are widened once and shared by its query heads and rows */
    const size_t S = (size_t)(a->S ? a->S : 1), D = (size_t)a->D;
    double *z = malloc(S * sizeof *z), *acc = malloc(D * sizeof *acc), *qd = malloc(D * sizeof *qd);
    double *kd = malloc(S * D * sizeof *kd), *vd = malloc(S * D * sizeof *vd);
    mlxn_status st = MLXN_STATUS_OK;
    if (!z || !acc || !qd || !kd || !vd) {
        st = mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_attention", "no memory for the reference");
        goto done;
    }
    const int64_t group = a->Hq / a->Hkv;
    for (int64_t b = 0; b < a->B; b++) {
        const int64_t first = a->pos[b];
        if (!(first >= 0 && first + a->Tq <= a->S)) {
            for (int64_t t = 0; t < a->Tq; t++)
                for (int64_t h = 0; h < a->Hq; h++)
                    for (int64_t d = 0; d < a->D; d++)
                        mlxn_ref_store(a->q_dtype, a->o.base + b * a->o.s0 + t * a->o.s1 + h * a->o.s2, d, NAN);
            continue;
        }
        for (int64_t hk = 0; hk < a->Hkv; hk++) {
            for (int64_t j = 0; j < first + a->Tq; j++) {
                const char *k = a->k.base + b * a->k.s0 + hk * a->k.s1 + j * a->k.s2;
                const char *v = a->v.base + b * a->v.s0 + hk * a->v.s1 + j * a->v.s2;
                for (int64_t d = 0; d < a->D; d++) {
                    kd[j * a->D + d] = kv_load(a->kv_dtype, k, d);
                    vd[j * a->D + d] = kv_load(a->kv_dtype, v, d);
                }
            }
            for (int64_t t = 0; t < a->Tq; t++)
                for (int64_t h = hk * group; h < (hk + 1) * group; h++)
                    query_row(a, b, t, h, first, kd, vd, qd, z, acc);
        }
    }
done:
    free(z);
    free(acc);
    free(qd);
    free(kd);
    free(vd);
    return st;
}

void mlxn_ref_kv_append(const mlxn_kv_append_args *a)
{
    for (int64_t b = 0; b < a->B; b++) {
        const int64_t first = a->pos[b];
        if (first < 0)
            continue;
        for (int64_t t = 0; t < a->T; t++)
            for (int64_t h = 0; h < a->H; h++) {
                const char *src = a->src.base + b * a->src.s0 + t * a->src.s1 + h * a->src.s2;
                char *dst = a->cache.base + b * a->cache.s0 + h * a->cache.s1 + ((first + t) % a->S) * a->cache.s2;
                if (a->cache_dtype == MLXN_DTYPE_Q8_0) {
                    /* the widened source values, one block at a time, through mlxn_ggml_quantize */
                    for (int64_t d0 = 0; d0 < a->D; d0 += MLXN_QK) {
                        float x[MLXN_QK];
                        mlxn_block_q8_0 blk;
                        for (int j = 0; j < MLXN_QK; j++)
                            x[j] = (float)mlxn_ref_load(a->src_dtype, src, d0 + j);
                        (void)mlxn_ggml_quantize(MLXN_DTYPE_Q8_0, x, MLXN_QK, &blk);
                        memcpy(dst + d0 / MLXN_QK * (int64_t)sizeof blk, &blk, sizeof blk);
                    }
                    continue;
                }
                for (int64_t d = 0; d < a->D; d++)
                    mlxn_ref_store(a->cache_dtype, dst, d, mlxn_ref_load(a->src_dtype, src, d));
            }
    }
}
