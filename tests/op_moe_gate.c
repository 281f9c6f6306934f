/* Harness cases for MoE gating: every (E, top_k) of E in {1, 8, 60, 128, 256, 512} and top_k in
 * {1, 2, 4, 6, 8, 16} (top_k <= E), each twice with complementary settings (softmax / sigmoid,
 * bias / none, normalize / not, scale 1 / 2.5, f32 / f16 / bf16 logits, padded rows / not),
 * T in {1, 3, 17}; past CUDA's warp kernel (E > 512: a block per token, the probabilities in
 * shared memory up to 8192 experts, recomputed past that) every scoring mode (softmax / sigmoid
 * x bias / none x normalize / not) at top_k 1, 8 and 16 for E in {513, 1000, 2048, 4096, 8192,
 * 8193}; then model shapes at T = 512 and 4097, 70000 tokens (past 65535 rows), and wide routers
 * at decode and in a batch. Ids are compared exactly, weights within a stated bound.
 *
 * Inputs that make exact ids a fair demand: logits lie on a grid of 1/64 in [-6, 6] (bf16 and
 * f16 hold these exactly or on a coarser grid), so two experts' logits are either equal or at
 * least 1/64 apart. Ties are planted in three rows of four: the logits of the best and of the
 * top_k-th expert are copied to two other experts each (with an equal bias when there is one),
 * so equal scores fall inside the selection and across its boundary, where the lower index
 * must win. Equal (logit, bias)
 * pairs give bit-equal scores on every backend. For the remaining pairs, each row is redrawn
 * until the first top_k + 1 scores (f64, in selection order) are each either such an exact tie
 * or apart by more than the f32 error of a score (see separated()), so f32 backends cannot
 * order them differently from the f64 oracle. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "test_ops.h"

typedef struct gate_case {
    int64_t T, E;
    int k;
    mlxn_moe_gating gating;
    bool bias, normalize;
    float scale;
    mlxn_dtype dtype;
    int64_t pad;
} gate_case;

typedef struct gate_operands {
    operand logits, bias, ids, weights;
} gate_operands;

static bool run_on(const gate_case *c, const gate_operands *o, test_device *dev, operand *ids, operand *w, char *why,
                   size_t cap)
{
    placed pl = {0}, pb = {0}, pi = {0}, pw = {0};
    bool ok = false;
    memset(ids, 0, sizeof *ids);
    memset(w, 0, sizeof *w);
    if (!operand_place(&o->logits, dev, &pl) || !operand_place(&o->bias, dev, &pb) ||
        !operand_place(&o->ids, dev, &pi) || !operand_place(&o->weights, dev, &pw)) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    mlxn_moe_gate_params p = mlxn_moe_gate_params_default();
    p.gating = c->gating;
    p.top_k = c->k;
    p.normalize = c->normalize;
    p.scale = c->scale;
    p.bias = c->bias ? &pb.view : NULL;
    mlxn_status st = mlxn_moe_gate(dev->stream, &pl.view, &p, &pi.view, &pw.view);
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(&pi, dev, &o->ids, ids) || !placed_fetch(&pw, dev, &o->weights, w)) {
        snprintf(why, cap, "fetching ids and weights: %s", mlxn_last_error());
        goto done;
    }
    ok = true;
done:
    placed_free(&pl);
    placed_free(&pb);
    placed_free(&pi);
    placed_free(&pw);
    return ok;
}

/* The f64 probabilities and scores of row t (as stored, after rounding to the dtype). */
static void row_scores(const gate_case *c, const gate_operands *o, int64_t t, double *p, double *s)
{
    double m = -INFINITY, sum = 0;
    for (int64_t e = 0; e < c->E; e++)
        m = fmax(m, operand_get(&o->logits, t * c->E + e));
    for (int64_t e = 0; e < c->E; e++)
        sum += exp(operand_get(&o->logits, t * c->E + e) - m);
    for (int64_t e = 0; e < c->E; e++) {
        const double l = operand_get(&o->logits, t * c->E + e);
        p[e] = c->gating == MLXN_MOE_GATING_SOFTMAX ? exp(l - m) / sum : 1 / (1 + exp(-l));
        s[e] = p[e] + (c->bias ? operand_get(&o->bias, e) : 0);
    }
}

/* Experts in selection order: score descending, index ascending. */
static const double *g_scores;
static int by_selection(const void *pa, const void *pb)
{
    const int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    if (g_scores[a] != g_scores[b])
        return g_scores[a] > g_scores[b] ? -1 : 1;
    return a < b ? -1 : 1;
}

static double bias_of(const gate_case *c, const gate_operands *o, int64_t e)
{
    return c->bias ? operand_get(&o->bias, e) : 0;
}

/* A bound on the relative error of an f32 backend's probability, in roundings of 2^-24: a few
 * for expf and the division, and for softmax the sum of E exponentials, whose longest chain of
 * additions is the CPU's (E / 8 partial sums, then 3 to combine them; CUDA's warp kernel chains
 * E / 32 + 5, the block kernel E / 256 + 10). At least 70: the bound the cases up to E = 512
 * were written against (4.2e-6). */
static double prob_err(const gate_case *c)
{
    const double sum_chain = c->gating == MLXN_MOE_GATING_SOFTMAX ? (double)((c->E + 7) / 8 + 3) : 0;
    return fmax(70, sum_chain + 6) * 0x1p-24;
}

/* Whether row t's first top_k + 1 experts in selection order are pairwise either exact ties
 * (equal logit and bias) or apart by more than an f32 backend's error in a score: the two
 * probabilities of a pair are each off by at most prob_err(), so their difference by twice that
 * of the larger; the margin is 5 prob_err() of it (2e-5 at 70 roundings), plus the rounding of
 * p + bias. */
static bool separated(const gate_case *c, const gate_operands *o, int64_t t, const int64_t *order, const double *p,
                      const double *s)
{
    const int64_t last = c->k < c->E ? c->k : c->E - 1;
    for (int64_t q = 0; q < last; q++) {
        const int64_t a = order[q], b = order[q + 1];
        const bool exact = operand_get(&o->logits, t * c->E + a) == operand_get(&o->logits, t * c->E + b) &&
                           bias_of(c, o, a) == bias_of(c, o, b);
        const double margin = 5 * prob_err(c) * fmax(p[a], p[b]) + 1e-6 * fmax(fabs(s[a]), fabs(s[b]));
        if (!exact && !(fabs(s[a] - s[b]) > margin))
            return false;
    }
    return true;
}

static double grid_logit(rng *g)
{
    return fmin(6.0, fmax(-6.0, round(rng_normal(g) * 1.5 * 64) / 64));
}

/* Copies expert src's logit in row t to up to two other experts with src's bias. */
static void plant_tie(const gate_case *c, gate_operands *o, int64_t t, int64_t src, rng *g)
{
    for (int n = 0; n < 2; n++) {
        const int64_t start = rng_int(g, 0, c->E - 1);
        for (int64_t q = 0; q < c->E; q++) {
            const int64_t e = (start + q) % c->E;
            if (e != src && bias_of(c, o, e) == bias_of(c, o, src)) {
                operand_set(&o->logits, t * c->E + e, operand_get(&o->logits, t * c->E + src));
                break;
            }
        }
    }
}

/* Fills row t as the header says; false when no separated row came up in 100 draws. */
static bool fill_row(const gate_case *c, gate_operands *o, int64_t t, double *p, double *s, int64_t *order, rng *g)
{
    for (int attempt = 0; attempt < 100; attempt++) {
        for (int64_t e = 0; e < c->E; e++)
            operand_set(&o->logits, t * c->E + e, grid_logit(g));
        for (int64_t e = 0; e < c->E; e++)
            order[e] = e;
        if (c->E > 1 && t % 4 != 3) {
            row_scores(c, o, t, p, s);
            g_scores = s;
            qsort(order, (size_t)c->E, sizeof *order, by_selection);
            const int64_t best = order[0], kth = order[c->k - 1];
            plant_tie(c, o, t, best, g);
            plant_tie(c, o, t, kth, g);
        }
        row_scores(c, o, t, p, s);
        for (int64_t e = 0; e < c->E; e++)
            order[e] = e;
        g_scores = s;
        qsort(order, (size_t)c->E, sizeof *order, by_selection);
        if (separated(c, o, t, order, p, s))
            return true;
    }
    return false;
}

static void run_case(const gate_case *c, test_devices *devs, rng *g)
{
    char name[256], full[320], why[512];
    snprintf(name, sizeof name, "moe_gate/%s/E%lld/k%d/T%lld/%s%s%s%s%s", mlxn_dtype_name(c->dtype),
             (long long)c->E, c->k, (long long)c->T, c->gating == MLXN_MOE_GATING_SOFTMAX ? "softmax" : "sigmoid",
             c->bias ? "/bias" : "", c->normalize ? "/norm" : "", c->scale != 1.0f ? "/scaled" : "",
             c->pad ? "/pad" : "");
    gate_operands o;
    memset(&o, 0, sizeof o);
    double *p = malloc(sizeof(double) * (size_t)c->E), *s = malloc(sizeof(double) * (size_t)c->E);
    int64_t *order = malloc(sizeof(int64_t) * (size_t)c->E);
    double *bound = malloc(sizeof(double) * (size_t)(c->T * c->k));
    const int64_t ls[2] = {c->T, c->E}, os[2] = {c->T, c->k};
    if (!p || !s || !order || !bound || !operand_init(&o.logits, c->dtype, 2, ls, c->pad, false) ||
        !operand_init(&o.bias, MLXN_DTYPE_F32, 1, &c->E, 0, false) ||
        !operand_init(&o.ids, MLXN_DTYPE_I32, 2, os, c->pad ? 3 : 0, false) ||
        !operand_init(&o.weights, MLXN_DTYPE_F32, 2, os, c->pad ? 1 : 0, false)) {
        harness_fail(name, "out of memory");
        goto done;
    }
    /* bias on a grid of 1/64 in [-1/16, 1/16]: the size of the probabilities, so it reorders
     * them; with 9 values, many experts share one (ties across equal biases) */
    for (int64_t e = 0; e < c->E; e++)
        operand_set(&o.bias, e, (double)rng_int(g, -4, 4) / 64);
    for (int64_t t = 0; t < c->T; t++)
        if (!fill_row(c, &o, t, p, s, order, g)) {
            harness_fail(name, "no row with separated scores in 100 draws (token %lld)", (long long)t);
            goto done;
        }
    for (int64_t i = 0; i < c->T * c->k; i++)
        operand_set(&o.ids, i, -7); /* poison: no valid id */
    operand_poison(&o.weights);
    operand want_ids = {0}, want_w = {0};
    if (!run_on(c, &o, &devs->ref, &want_ids, &want_w, why, sizeof why)) {
        harness_fail(name, "reference: %s", why);
        operand_free(&want_ids);
        operand_free(&want_w);
        goto done;
    }
    for (int64_t i = 0; i < c->T * c->k; i++)
        bound[i] = fabs(operand_get(&want_w, i));
    const tolerance exact = {0, 0, "expert ids are exact (ties to the lower index)"};
    /* weights: |w - w_ref| <= tol_w |w_ref| per element, 1e-5 per 70 roundings of prob_err()
     * (1e-5 up to E = 536 and for sigmoid, 8.5e-5 at softmax E = 8193). A probability is off by
     * at most prob_err() (4.2e-6 at 70 roundings); normalizing cancels the sum's error and adds
     * top_k + 2 roundings; the scale one more. */
    const double tol_w = 1e-5 * prob_err(c) / (70 * 0x1p-24);
    for (int d = 0; d < devs->count; d++) {
        snprintf(full, sizeof full, "%s @%s", name, devs->list[d].name);
        operand got_ids = {0}, got_w = {0};
        if (!run_on(c, &o, &devs->list[d], &got_ids, &got_w, why, sizeof why))
            harness_fail(full, "%s", why);
        else if (!compare_operands(&got_ids, &want_ids, exact, why, sizeof why))
            harness_fail(full, "ids: %s", why);
        else if (!compare_within_bound(&got_w, &want_w, bound, tol_w, why, sizeof why))
            harness_fail(full, "weights: %s", why);
        else
            harness_pass(full);
        operand_free(&got_ids);
        operand_free(&got_w);
    }
    /* the oracle follows the rules: its ids are the first top_k of the selection order, and
     * normalized weights sum to the scale */
    for (int64_t t = 0; t < c->T; t++) {
        row_scores(c, &o, t, p, s);
        for (int64_t e = 0; e < c->E; e++)
            order[e] = e;
        g_scores = s;
        qsort(order, (size_t)c->E, sizeof *order, by_selection);
        double wsum = 0;
        for (int j = 0; j < c->k; j++) {
            wsum += operand_get(&want_w, t * c->k + j);
            if (operand_get(&want_ids, t * c->k + j) != (double)order[j]) {
                harness_fail(name, "oracle: token %lld slot %d has expert %g, the selection order says %lld",
                             (long long)t, j, operand_get(&want_ids, t * c->k + j), (long long)order[j]);
                t = c->T;
                break;
            }
        }
        if (t < c->T && c->normalize && fabs(wsum - c->scale) > 1e-6 * c->scale) {
            harness_fail(name, "oracle: token %lld's normalized weights sum to %.9g, expected %g", (long long)t, wsum,
                         (double)c->scale);
            break;
        }
    }
    operand_free(&want_ids);
    operand_free(&want_w);
done:
    free(p);
    free(s);
    free(order);
    free(bound);
    operand_free(&o.logits);
    operand_free(&o.bias);
    operand_free(&o.ids);
    operand_free(&o.weights);
}

static void error_cases(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 16, &b) != MLXN_STATUS_OK)
        return;
    int64_t s48[2] = {4, 8}, s42[2] = {4, 2}, s43[2] = {4, 3}, s52[2] = {5, 2}, s248[3] = {2, 4, 8};
    int64_t s8[1] = {8}, s7[1] = {7}, s4_17[2] = {4, 17}, s4_20[2] = {4, 20};
    mlxn_tensor x = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, s48);
    mlxn_tensor xi = mlxn_tensor_make(b, 0, MLXN_DTYPE_I32, 2, s48);
    mlxn_tensor x3 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 3, s248);
    mlxn_tensor x20 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, s4_20);
    mlxn_tensor ids = mlxn_tensor_make(b, 8192, MLXN_DTYPE_I32, 2, s42);
    mlxn_tensor ids_f = mlxn_tensor_make(b, 8192, MLXN_DTYPE_F32, 2, s42);
    mlxn_tensor ids3 = mlxn_tensor_make(b, 8192, MLXN_DTYPE_I32, 2, s43);
    mlxn_tensor ids17 = mlxn_tensor_make(b, 8192, MLXN_DTYPE_I32, 2, s4_17);
    mlxn_tensor w = mlxn_tensor_make(b, 16384, MLXN_DTYPE_F32, 2, s42);
    mlxn_tensor w_h = mlxn_tensor_make(b, 16384, MLXN_DTYPE_F16, 2, s42);
    mlxn_tensor w5 = mlxn_tensor_make(b, 16384, MLXN_DTYPE_F32, 2, s52);
    mlxn_tensor w17 = mlxn_tensor_make(b, 16384, MLXN_DTYPE_F32, 2, s4_17);
    mlxn_tensor bias = mlxn_tensor_make(b, 24576, MLXN_DTYPE_F32, 1, s8);
    mlxn_tensor bias7 = mlxn_tensor_make(b, 24576, MLXN_DTYPE_F32, 1, s7);
    mlxn_tensor bias_h = mlxn_tensor_make(b, 24576, MLXN_DTYPE_F16, 1, s8);
    mlxn_moe_gate_params p = mlxn_moe_gate_params_default();
    p.top_k = 2;
    mlxn_stream *st = dev->stream;
    harness_expect_status("moe_gate/error/ok", mlxn_moe_gate(st, &x, &p, &ids, &w), MLXN_STATUS_OK, NULL);
    harness_expect_status("moe_gate/error/logits-dtype", mlxn_moe_gate(st, &xi, &p, &ids, &w), MLXN_STATUS_ERR_DTYPE,
                          "logits are i32, expected f32, f16 or bf16");
    harness_expect_status("moe_gate/error/logits-dims", mlxn_moe_gate(st, &x3, &p, &ids, &w), MLXN_STATUS_ERR_SHAPE,
                          "logits have shape 2x4x8, expected 2 dims");
    harness_expect_status("moe_gate/error/ids-dtype", mlxn_moe_gate(st, &x, &p, &ids_f, &w), MLXN_STATUS_ERR_DTYPE,
                          "ids is f32, expected i32");
    harness_expect_status("moe_gate/error/ids-shape", mlxn_moe_gate(st, &x, &p, &ids3, &w), MLXN_STATUS_ERR_SHAPE,
                          "ids has shape 4x3, expected 4x2");
    harness_expect_status("moe_gate/error/weights-dtype", mlxn_moe_gate(st, &x, &p, &ids, &w_h),
                          MLXN_STATUS_ERR_DTYPE, "weights is f16, expected f32");
    harness_expect_status("moe_gate/error/weights-shape", mlxn_moe_gate(st, &x, &p, &ids, &w5), MLXN_STATUS_ERR_SHAPE,
                          "weights has shape 5x2, expected 4x2");
    harness_expect_status("moe_gate/error/null-ids", mlxn_moe_gate(st, &x, &p, NULL, &w), MLXN_STATUS_ERR_INVALID_ARG,
                          "ids is NULL");
    harness_expect_status("moe_gate/error/null-params", mlxn_moe_gate(st, &x, NULL, &ids, &w),
                          MLXN_STATUS_ERR_INVALID_ARG, "params are NULL");
    p.bias = &bias7;
    harness_expect_status("moe_gate/error/bias-shape", mlxn_moe_gate(st, &x, &p, &ids, &w), MLXN_STATUS_ERR_SHAPE,
                          "bias has shape 7, expected [8]");
    p.bias = &bias_h;
    harness_expect_status("moe_gate/error/bias-dtype", mlxn_moe_gate(st, &x, &p, &ids, &w), MLXN_STATUS_ERR_DTYPE,
                          "bias is f16, expected f32");
    p.bias = &bias;
    harness_expect_status("moe_gate/error/bias-ok", mlxn_moe_gate(st, &x, &p, &ids, &w), MLXN_STATUS_OK, NULL);
    p.bias = NULL;
    p.top_k = 0;
    harness_expect_status("moe_gate/error/top_k-0", mlxn_moe_gate(st, &x, &p, &ids, &w), MLXN_STATUS_ERR_INVALID_ARG,
                          "top_k is 0, expected 1..16");
    p.top_k = 17;
    harness_expect_status("moe_gate/error/top_k-17", mlxn_moe_gate(st, &x20, &p, &ids17, &w17),
                          MLXN_STATUS_ERR_INVALID_ARG, "top_k is 17, expected 1..16");
    p.top_k = 9;
    harness_expect_status("moe_gate/error/top_k-over-E", mlxn_moe_gate(st, &x, &p, &ids, &w),
                          MLXN_STATUS_ERR_INVALID_ARG, "top_k is 9, more than the 8 experts");
    p.top_k = 2;
    p.gating = (mlxn_moe_gating)2;
    harness_expect_status("moe_gate/error/gating", mlxn_moe_gate(st, &x, &p, &ids, &w), MLXN_STATUS_ERR_INVALID_ARG,
                          "gating is 2");
    p.gating = MLXN_MOE_GATING_SIGMOID;
    p.scale = NAN;
    harness_expect_status("moe_gate/error/scale", mlxn_moe_gate(st, &x, &p, &ids, &w), MLXN_STATUS_ERR_INVALID_ARG,
                          "scale is nan");
    mlxn_buffer_free(b);
}

void test_moe_gate(test_devices *devs, rng *g)
{
    static const int64_t Es[] = {1, 8, 60, 128, 256, 512};
    static const int ks[] = {1, 2, 4, 6, 8, 16};
    static const int64_t Ts[] = {1, 3, 17};
    static const mlxn_dtype dts[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    int n = 0;
    for (size_t e = 0; e < sizeof Es / sizeof Es[0]; e++)
        for (size_t q = 0; q < sizeof ks / sizeof ks[0]; q++) {
            if (ks[q] > Es[e])
                continue;
            for (int flip = 0; flip < 2; flip++, n++) {
                const unsigned v = flip ? ~(unsigned)(n / 2) : (unsigned)(n / 2);
                gate_case c = {.T = Ts[n % 3],
                               .E = Es[e],
                               .k = ks[q],
                               .gating = (v & 1) ? MLXN_MOE_GATING_SIGMOID : MLXN_MOE_GATING_SOFTMAX,
                               .bias = (v >> 1) & 1,
                               .normalize = (v >> 2) & 1,
                               .scale = (v >> 3) & 1 ? 2.5f : 1.0f,
                               .dtype = dts[(n + flip) % 3],
                               .pad = (v >> 1) % 3 == 2 ? 3 : 0};
                run_case(&c, devs, g);
            }
        }
    /* past the warp kernel: every scoring mode at top_k 1, 8 and 16 (8192 is the last width with
     * the probabilities in shared memory, 8193 the first that recomputes them) */
    static const int64_t wide_Es[] = {513, 1000, 2048, 4096, 8192, 8193};
    static const int wide_ks[] = {1, 8, 16};
    n = 0;
    for (size_t e = 0; e < sizeof wide_Es / sizeof wide_Es[0]; e++)
        for (size_t q = 0; q < sizeof wide_ks / sizeof wide_ks[0]; q++)
            for (unsigned mode = 0; mode < 8; mode++, n++) {
                gate_case c = {.T = Ts[n % 3],
                               .E = wide_Es[e],
                               .k = wide_ks[q],
                               .gating = (mode & 1) ? MLXN_MOE_GATING_SIGMOID : MLXN_MOE_GATING_SOFTMAX,
                               .bias = (mode >> 1) & 1,
                               .normalize = (mode >> 2) & 1,
                               .scale = n % 5 == 1 ? 2.5f : 1.0f,
                               .dtype = dts[(n / 3) % 3],
                               .pad = n % 7 == 3 ? 3 : 0};
                run_case(&c, devs, g);
            }
    static const gate_case models[] = {
        /* Qwen3-30B-A3B: 128 experts, top 8, normalized softmax; prefill */
        {512, 128, 8, MLXN_MOE_GATING_SOFTMAX, false, true, 1.0f, MLXN_DTYPE_F32, 0},
        /* DeepSeek-V3: 256 experts, top 8, sigmoid with the correction bias, normalized, scaled */
        {4097, 256, 8, MLXN_MOE_GATING_SIGMOID, true, true, 2.5f, MLXN_DTYPE_BF16, 0},
        /* Qwen2-MoE 57B: 64 experts (60 routed), top 4, softmax without normalizing */
        {4097, 60, 4, MLXN_MOE_GATING_SOFTMAX, false, false, 1.0f, MLXN_DTYPE_F16, 1},
        /* the largest CUDA width at decode and in a batch */
        {1, 512, 16, MLXN_MOE_GATING_SOFTMAX, true, true, 1.0f, MLXN_DTYPE_F32, 0},
        {512, 512, 16, MLXN_MOE_GATING_SIGMOID, false, false, 1.0f, MLXN_DTYPE_F32, 5},
        /* more tokens than one grid dimension holds */
        {70000, 8, 2, MLXN_MOE_GATING_SOFTMAX, false, true, 1.0f, MLXN_DTYPE_F32, 0},
        /* wide routers (a block per token on CUDA): a batch in shared memory, a decode token and
         * a batch past it (recomputed probabilities, 1024 threads a token) */
        {512, 1024, 8, MLXN_MOE_GATING_SIGMOID, true, true, 2.5f, MLXN_DTYPE_BF16, 0},
        {1, 16384, 16, MLXN_MOE_GATING_SOFTMAX, true, true, 1.0f, MLXN_DTYPE_F32, 0},
        {33, 12000, 8, MLXN_MOE_GATING_SIGMOID, false, false, 1.0f, MLXN_DTYPE_F16, 2},
    };
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++)
        run_case(&models[m], devs, g);
    error_cases(devs);
}
