/* qwen3moe end to end on a synthetic model: synth_moe_write (tools/mlxn/synth_moe.c, also `mlxn
 * synth-moe`) writes 4 layers of 32 experts, top 4, with random weights (experts Q4_0, Q8_0 and
 * Q4_K, attention Q8_0 and f16, an f32 router) into a temporary directory. There is no
 * independent implementation of a random model, so the CPU runner is the reference:
 *
 * - CPU self-consistency: greedy decoding continues each prompt; the prompt and continuation as
 *   one prefill give every position's logits; token-by-token decoding and a prefill in odd
 *   chunks must reproduce them (other kernels: mat-vecs, single-query attention, chunk
 *   boundaries in the KV cache), and the prefill's argmax must be the greedy token.
 * - CUDA (when a device is present): the same prefill and teacher-forced decoding (the decode
 *   step as a captured graph) compared with the CPU logits at every position, and the device
 *   sampler's greedy continuation compared with the CPU's up to the first near-tie.
 * - Loading refuses what qwen3moe's graph lacks (shared experts) and a missing router, by name.
 *
 * Routing is discontinuous: where a token's k-th and (k+1)-th router logits nearly tie, any
 * rounding difference may swap one expert, which moves that position's logits by O(0.1..1) and
 * cascades into later layers' routing. Such positions are found on the CPU first: two copies of
 * the model whose router weights are scaled by 1 +- 1e-4 r (r uniform in [-1, 1], one draw per
 * weight) move every router logit by ~2e-4 one way and the other, beyond what f32 rounding
 * differences do to them (~1e-5), so a tie that f32 rounding could break is broken in one of
 * them. Positions whose logits jump there ("route-fragile") are held to TOL_ROUTE only, and
 * counted; all others to the tight bounds.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "mlxn_model.h"
#include "synth_moe.h"

/* The bounds of one comparison: every logit of a position within `max` (route-fragile positions:
 * TOL_ROUTE), the mean |error| over all logits within `mean`. */
typedef struct bound {
    double max, mean;
} bound;

/* Logits here spread over about +-13 (synth_moe: output RMS 3). Both CPU runs keep activations,
 * K/V and accumulation in f32 and differ only in summation order (mat-vec against mat-mat
 * kernels, one query against many): relative rounding of ~1e-6 through 4 layers (measured:
 * <= 1.2e-5), so 1e-4 is a wide bound that a wrong mask, position, cache slot or expert (errors
 * of O(1)) cannot meet. */
static const bound TOL_SELF = {1e-4, 1e-4};
/* CUDA with 16-token chunks stays in f32 everywhere: the dense qmatmul below 64 rows and
 * qmatmul_id up to 64 (token, expert) pairs (16 x 4) run f32 mat-vecs; the CPU's bound widened
 * as test_model.c widens it for its f32 CUDA runs (other reduction trees, f32 RoPE and exp on
 * the device). */
static const bound TOL_F32 = {1e-3, 1e-3};
/* From 64 rows (dense) and 65 pairs (experts) CUDA rounds x and W to bf16 for the tensor cores
 * (2^-9 relative each). Alone that moves logits of this spread by a few 1e-2 (test_model.c), but
 * every rounding also perturbs the next layers' router logits by ~2^-9 x their spread (3), which
 * swaps experts at the near-ties, and those swaps cascade, so no position is safe from them. An
 * emulation on the CPU (expert products with x and W rounded to bf16, router logits perturbed
 * by N(0, 0.005)) moved the mean |logit| by 0.011 and the worst logit by 0.6 to 0.9, with no
 * argmax changed where the margin exceeded 1. So: the mean within 0.05 (a wrong expert, row or
 * weight moves every position by O(1)), every logit within TOL_ROUTE, and argmaxes where the
 * CPU margin exceeds twice that. */
static const bound TOL_BF16 = {2.0, 0.05};
/* An expert swapped at a near-tie, and what it cascades into: one swap moved a position by 0.38
 * in the emulation above, bf16-wide perturbation by up to 0.9. */
#define TOL_ROUTE 2.0
/* The router perturbation that finds route-fragile positions, and how far a position's logits
 * must move under it to count. Measured on this model: the smooth change of the gate weights
 * moves logits by up to ~10 x the relative perturbation (1e-4 .. 2e-3 here, scaling with it),
 * a swapped expert by 1e-2 .. 1. */
#define ROUTER_EPS 1e-4
#define FRAGILE_MOVE 1e-2

#define N_GEN 16
#define MAX_TOKENS 512
#define MAX_ROUTERS 256 /* router tensors a copy can perturb */

static const char *const prompts[] = {
    "The capital of France is",
    "In the beginning the river ran north, and the people on its banks built their houses of stone",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, "
    "it was the season of Darkness, it was the spring of hope, it was the winter of despair.",
};
#define N_PROMPTS (int)(sizeof prompts / sizeof prompts[0])

typedef struct sequence {
    int32_t ids[MAX_TOKENS];
    int64_t n_prompt, n; /* n = n_prompt + N_GEN: the prompt and the CPU's greedy continuation */
    float *ref;          /* [n][n_vocab]: the CPU prefill's logits */
    bool fragile[MAX_TOKENS]; /* route-fragile positions (see the top) */
} sequence;

static int64_t argmax(const float *x, int64_t n)
{
    int64_t a = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[a])
            a = i;
    return a;
}

/* top-1 minus top-2 */
static double margin(const float *x, int64_t n)
{
    const int64_t a = argmax(x, n);
    double second = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (i != a && x[i] > second)
            second = x[i];
    return (double)x[a] - second;
}

typedef struct diff {
    double max_err, sum_err;
    int64_t worst_pos, n_logits, n_fragile, argmax_checked, argmax_wrong;
} diff;

static double position_error(const float *g, const float *r, int64_t V)
{
    double e = 0;
    for (int64_t i = 0; i < V; i++) {
        const double d = fabs((double)g[i] - r[i]);
        if (!(d <= e))
            e = isnan(d) ? INFINITY : d;
    }
    return e;
}

/* Positions [from, to) of got against the reference; max_err is the worst excess over the
 * position's bound (b->max, or TOL_ROUTE where fragile), as a multiple of that bound. NaN
 * counts as an infinite error. */
static void compare_rows(const float *got, const sequence *s, int64_t from, int64_t to, int64_t V, const bound *b,
                         diff *d)
{
    for (int64_t p = from; p < to; p++) {
        const float *g = got + p * V, *r = s->ref + p * V;
        const double limit = s->fragile[p] ? TOL_ROUTE : b->max, e = position_error(g, r, V) / limit;
        if (!(e <= d->max_err)) {
            d->max_err = isnan(e) ? INFINITY : e;
            d->worst_pos = p;
        }
        for (int64_t i = 0; i < V; i++)
            d->sum_err += fabs((double)g[i] - r[i]);
        d->n_logits += V;
        d->n_fragile += s->fragile[p];
        if (!s->fragile[p] && margin(r, V) > 2 * b->max) {
            d->argmax_checked++;
            d->argmax_wrong += argmax(g, V) != argmax(r, V);
        }
    }
}

static void report(const char *name, const diff *d, const bound *b)
{
    const double mean = d->n_logits ? d->sum_err / (double)d->n_logits : 0;
    if (d->max_err > 1 || !(mean <= b->mean) || d->argmax_wrong)
        harness_fail(name, "worst position %lld off by %.3g x its bound (%.3g, %.3g where route-fragile); mean "
                           "|logit error| %.3g (bound %.3g); argmax wrong at %lld of %lld positions",
                     (long long)d->worst_pos, d->max_err, b->max, TOL_ROUTE, mean, b->mean,
                     (long long)d->argmax_wrong, (long long)d->argmax_checked);
    else {
        harness_pass(name);
        printf("  %s: worst position at %.2f x its bound (%.0e), mean |logit error| %.2e (bound %.0e), argmax "
               "%lld/%lld, %lld route-fragile\n",
               name, d->max_err, b->max, mean, b->mean, (long long)(d->argmax_checked - d->argmax_wrong),
               (long long)d->argmax_checked, (long long)d->n_fragile);
    }
}

static mlxn_status load(mlxn_device *dev, const char *path, int64_t n_batch, mlxn_model **m)
{
    mlxn_model_options o = mlxn_model_options_default();
    o.n_ctx = MAX_TOKENS;
    o.n_batch = n_batch;
    return mlxn_model_load(dev, path, &o, m);
}

/* Teacher-forced decoding: the first `from` tokens as one batch, then one token per step; the
 * logits of positions from - 1 .. n - 1 land in out. */
static mlxn_status decode(mlxn_model *m, const sequence *s, int64_t from, float *out, int64_t V)
{
    mlxn_model_reset(m);
    mlxn_status st = mlxn_model_eval(m, s->ids, from, false, out + (from - 1) * V);
    for (int64_t p = from; st == MLXN_STATUS_OK && p < s->n; p++)
        st = mlxn_model_eval(m, &s->ids[p], 1, false, out + p * V);
    return st;
}

/* Greedy tokens from the device sampler after the prompt: how many agree with the CPU's before
 * the first position that is route-fragile or whose CPU margin is within 2 tol (*must). */
static mlxn_status greedy(mlxn_model *m, const sequence *s, int64_t V, double tol, int *must, int *matched)
{
    mlxn_sampler_params sp = mlxn_sampler_params_default();
    sp.temperature = 0;
    *must = N_GEN;
    for (int g = 0; g < N_GEN; g++)
        if (s->fragile[s->n_prompt - 1 + g] || margin(s->ref + (s->n_prompt - 1 + g) * V, V) <= 2 * tol) {
            *must = g;
            break;
        }
    *matched = 0;
    mlxn_model_reset(m);
    int32_t next;
    mlxn_status st = mlxn_model_eval_sample(m, s->ids, s->n_prompt, &sp, NULL, 0, 0, &next);
    for (int g = 0; st == MLXN_STATUS_OK && g < *must && next == s->ids[s->n_prompt + g]; g++) {
        (*matched)++;
        if (g + 1 < *must)
            st = mlxn_model_eval_sample(m, &next, 1, &sp, NULL, 0, (uint64_t)g + 1, &next);
    }
    return st;
}

/* The prompt's ids through the model's tokenizer, checked to decode back to the text. */
static bool encode(const mlxn_tokenizer *tok, const char *text, sequence *s, const char *name)
{
    size_t n = 0;
    mlxn_status st = mlxn_tokenizer_encode(tok, text, strlen(text), true, false, s->ids, MAX_TOKENS - N_GEN, &n);
    if (st != MLXN_STATUS_OK || n == 0) {
        harness_fail(name, "encoding: %s", st != MLXN_STATUS_OK ? mlxn_last_error() : "no tokens");
        return false;
    }
    char back[1024];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        if (mlxn_tokenizer_piece(tok, s->ids[i], false, back + len, sizeof back - len, &k) != MLXN_STATUS_OK ||
            len + k >= sizeof back) {
            harness_fail(name, "piece of token %d: %s", s->ids[i], mlxn_last_error());
            return false;
        }
        len += k;
    }
    if (len != strlen(text) || memcmp(back, text, len) != 0) {
        harness_fail(name, "the %zu tokens decode to \"%.*s\"", n, (int)len, back);
        return false;
    }
    harness_pass(name);
    s->n_prompt = (int64_t)n;
    s->n = s->n_prompt + N_GEN;
    return true;
}

/* The CPU reference of each prompt (greedy continuation, prefill logits) and its
 * self-consistency checks. */
static bool cpu_reference(const char *path, const char *const variants[2], sequence *seqs, int n_seq, int64_t *V)
{
    char name[160];
    mlxn_device_options o = mlxn_device_options_default();
    o.kind = MLXN_DEVICE_CPU;
    mlxn_device *dev = NULL;
    mlxn_model *m = NULL, *chunked = NULL, *perturbed[2] = {NULL, NULL};
    float *buf = NULL;
    bool ok = false;
    snprintf(name, sizeof name, "model_moe/load @cpu");
    CHECK_OK(name, mlxn_device_create(&o, &dev));
    CHECK_OK(name, load(dev, path, 512, &m));
    CHECK_OK(name, load(dev, path, 13, &chunked)); /* odd chunks: boundaries inside every prompt but the first */
    for (int v = 0; v < 2; v++)
        CHECK_OK(name, load(dev, variants[v], 512, &perturbed[v]));
    const mlxn_model_info in = mlxn_model_get_info(m);
    if (strcmp(in.arch, "qwen3moe") != 0 || in.n_expert != 32 || in.n_expert_used != 4 || in.n_ff != 256) {
        harness_fail(name, "info: arch %s, %lld experts, %lld used, expert FFN %lld", in.arch,
                     (long long)in.n_expert, (long long)in.n_expert_used, (long long)in.n_ff);
        goto fail;
    }
    harness_pass(name);
    *V = in.n_vocab;
    buf = malloc((size_t)(MAX_TOKENS * in.n_vocab) * sizeof *buf);
    if (!buf) {
        harness_fail(name, "no memory");
        goto fail;
    }
    mlxn_sampler_params sp = mlxn_sampler_params_default();
    sp.temperature = 0;
    for (int i = 0; i < n_seq; i++) {
        sequence *s = &seqs[i];
        snprintf(name, sizeof name, "model_moe/prompt%d/tokenizer round trip", i);
        if (!encode(mlxn_model_tokenizer(m), prompts[i], s, name))
            goto fail;
        snprintf(name, sizeof name, "model_moe/prompt%d/reference (%lld+%d tokens) @cpu", i, (long long)s->n_prompt,
                 N_GEN);
        mlxn_model_reset(m);
        int32_t next;
        CHECK_OK(name, mlxn_model_eval_sample(m, s->ids, s->n_prompt, &sp, NULL, 0, 0, &next));
        for (int g = 0; g < N_GEN; g++) {
            s->ids[s->n_prompt + g] = next;
            if (g + 1 < N_GEN)
                CHECK_OK(name, mlxn_model_eval_sample(m, &next, 1, &sp, NULL, 0, (uint64_t)g + 1, &next));
        }
        s->ref = malloc((size_t)(s->n * in.n_vocab) * sizeof *s->ref);
        if (!s->ref) {
            harness_fail(name, "no memory");
            goto fail;
        }
        mlxn_model_reset(m);
        CHECK_OK(name, mlxn_model_eval(m, s->ids, s->n, true, s->ref));
        /* well-conditioned logits: finite, spread, the greedy tokens not all one id */
        double lo = INFINITY, hi = -INFINITY;
        int distinct = 0;
        for (int64_t j = 0; j < s->n * in.n_vocab; j++) {
            lo = fmin(lo, s->ref[j]);
            hi = fmax(hi, s->ref[j]);
        }
        for (int g = 1; g < N_GEN; g++)
            distinct += s->ids[s->n_prompt + g] != s->ids[s->n_prompt];
        if (!isfinite(lo) || !isfinite(hi) || hi - lo < 4 || hi - lo > 200 || distinct == 0) {
            harness_fail(name, "logits span [%g, %g]; continuation %s", lo, hi, distinct ? "varied" : "one token repeated");
            goto fail;
        }
        harness_pass(name);

        /* route-fragile positions: moved by the router perturbation */
        for (int v = 0; v < 2; v++) {
            mlxn_model_reset(perturbed[v]);
            CHECK_OK(name, mlxn_model_eval(perturbed[v], s->ids, s->n, true, buf));
            for (int64_t p = 0; p < s->n; p++)
                s->fragile[p] |= position_error(buf + p * in.n_vocab, s->ref + p * in.n_vocab, in.n_vocab) > FRAGILE_MOVE;
        }

        /* the prefill's argmax is the greedy token wherever the margin is clear */
        diff d = {0};
        snprintf(name, sizeof name, "model_moe/prompt%d/greedy = prefill argmax @cpu", i);
        for (int g = 0; g < N_GEN; g++) {
            const float *r = s->ref + (s->n_prompt - 1 + g) * in.n_vocab;
            if (!s->fragile[s->n_prompt - 1 + g] && margin(r, in.n_vocab) > 2 * TOL_SELF.max) {
                d.argmax_checked++;
                d.argmax_wrong += argmax(r, in.n_vocab) != s->ids[s->n_prompt + g];
            }
        }
        if (d.argmax_wrong)
            harness_fail(name, "%lld of %lld greedy tokens are not the prefill's argmax", (long long)d.argmax_wrong,
                         (long long)d.argmax_checked);
        else
            harness_pass(name);

        memset(&d, 0, sizeof d);
        snprintf(name, sizeof name, "model_moe/prompt%d/decode = prefill @cpu", i);
        CHECK_OK(name, decode(m, s, 1, buf, in.n_vocab));
        compare_rows(buf, s, 0, s->n, in.n_vocab, &TOL_SELF, &d);
        report(name, &d, &TOL_SELF);

        memset(&d, 0, sizeof d);
        snprintf(name, sizeof name, "model_moe/prompt%d/chunks of 13 = prefill @cpu", i);
        mlxn_model_reset(chunked);
        CHECK_OK(name, mlxn_model_eval(chunked, s->ids, s->n, true, buf));
        compare_rows(buf, s, 0, s->n, in.n_vocab, &TOL_SELF, &d);
        report(name, &d, &TOL_SELF);
    }
    ok = true;
fail:
    free(buf);
    mlxn_model_free(perturbed[0]);
    mlxn_model_free(perturbed[1]);
    mlxn_model_free(chunked);
    mlxn_model_free(m);
    mlxn_device_free(dev);
    return ok;
}

static void test_cuda(const char *path, const sequence *seqs, int n_seq, int64_t V, const char *label,
                      int64_t n_batch, const bound *tol)
{
    char name[160];
    mlxn_device_options o = mlxn_device_options_default();
    o.kind = MLXN_DEVICE_CUDA;
    mlxn_device *dev = NULL;
    mlxn_model *m = NULL;
    float *buf = malloc((size_t)(MAX_TOKENS * V) * sizeof *buf);
    snprintf(name, sizeof name, "model_moe/load @%s", label);
    if (!buf) {
        harness_fail(name, "no memory");
        goto fail;
    }
    CHECK_OK(name, mlxn_device_create(&o, &dev));
    CHECK_OK(name, load(dev, path, n_batch, &m));
    harness_pass(name);
    for (int i = 0; i < n_seq; i++) {
        const sequence *s = &seqs[i];
        diff d = {0};
        snprintf(name, sizeof name, "model_moe/prompt%d/prefill (%lld tokens) @%s", i, (long long)s->n, label);
        mlxn_model_reset(m);
        CHECK_OK(name, mlxn_model_eval(m, s->ids, s->n, true, buf));
        compare_rows(buf, s, 0, s->n, V, tol, &d);
        report(name, &d, tol);

        memset(&d, 0, sizeof d);
        snprintf(name, sizeof name, "model_moe/prompt%d/decode (%d steps) @%s", i, N_GEN, label);
        CHECK_OK(name, decode(m, s, s->n_prompt, buf, V));
        compare_rows(buf, s, s->n_prompt - 1, s->n, V, tol, &d);
        report(name, &d, tol);

        int must = 0, matched = 0;
        snprintf(name, sizeof name, "model_moe/prompt%d/greedy @%s", i, label);
        CHECK_OK(name, greedy(m, s, V, tol->max, &must, &matched));
        if (matched != must)
            harness_fail(name, "greedy tokens differ from the CPU's at token %d of %d (CPU id %d)", matched, must,
                         s->ids[s->n_prompt + matched]);
        else
            harness_pass(name);
    }
fail:
    free(buf);
    mlxn_model_free(m);
    mlxn_device_free(dev);
}

/* A copy of the GGUF at src with one more u32 key (extra_key, if not NULL), without the tensor
 * skip (if not NULL), and with every f32 router weight w scaled by 1 + router_eps r, r drawn
 * uniformly from [-1, 1] with a fixed seed (the same r for every call). */
static mlxn_status copy_gguf(const char *src, const char *dst, const char *extra_key, const char *skip,
                             double router_eps)
{
    mlxn_gguf *g = NULL;
    mlxn_gguf_writer *w = NULL;
    float *scaled[MAX_ROUTERS] = {NULL};
    int n_scaled = 0;
    rng r = {.s = 0x5eed};
    mlxn_status st = mlxn_gguf_open(src, &g);
    if (st == MLXN_STATUS_OK)
        st = mlxn_gguf_writer_create(&w);
    for (int64_t i = 0; st == MLXN_STATUS_OK && i < mlxn_gguf_kv_count(g); i++)
        st = mlxn_gguf_writer_set_value(w, mlxn_gguf_kv_key(g, i), mlxn_gguf_kv_value(g, i));
    const uint32_t one = 1;
    if (st == MLXN_STATUS_OK && extra_key)
        st = mlxn_gguf_writer_set_scalar(w, extra_key, MLXN_GGUF_TYPE_UINT32, &one);
    for (int64_t i = 0; st == MLXN_STATUS_OK && i < mlxn_gguf_tensor_count(g); i++) {
        const mlxn_gguf_tensor *t = mlxn_gguf_tensor_at(g, i);
        const void *data = t->data;
        const size_t len = strlen(t->name), suffix = strlen("ffn_gate_inp.weight");
        if (skip && strcmp(t->name, skip) == 0)
            continue;
        if (router_eps != 0 && t->ggml_type == 0 /* f32 */ && len > suffix &&
            strcmp(t->name + len - suffix, "ffn_gate_inp.weight") == 0 && n_scaled < MAX_ROUTERS) {
            const size_t n = (size_t)(t->size / 4);
            float *v = scaled[n_scaled++] = malloc(t->size);
            if (!v) {
                st = MLXN_STATUS_ERR_OUT_OF_MEMORY;
                break;
            }
            memcpy(v, t->data, t->size);
            for (size_t j = 0; j < n; j++)
                v[j] *= (float)(1 + router_eps * (2 * rng_uniform(&r) - 1));
            data = v;
        }
        st = mlxn_gguf_writer_add_tensor(w, t->name, t->ggml_type, t->n_dims, t->ne, data);
    }
    if (st == MLXN_STATUS_OK)
        st = mlxn_gguf_writer_write(w, dst);
    for (int i = 0; i < n_scaled; i++)
        free(scaled[i]);
    mlxn_gguf_writer_free(w);
    mlxn_gguf_free(g);
    return st;
}

static void test_refusals(const char *path, const char *dir)
{
    static const struct {
        const char *what, *key, *skip, *needle;
        mlxn_status want;
    } cases[] = {
        {"shared experts", "qwen3moe.expert_shared_count", NULL, "expert_shared_count", MLXN_STATUS_ERR_UNSUPPORTED},
        {"dense leading layers", "qwen3moe.leading_dense_block_count", NULL, "leading_dense_block_count",
         MLXN_STATUS_ERR_UNSUPPORTED},
        {"no router", NULL, "blk.2.ffn_gate_inp.weight", "blk.2.ffn_gate_inp.weight", MLXN_STATUS_ERR_BAD_FORMAT},
    };
    mlxn_device_options o = mlxn_device_options_default();
    o.kind = MLXN_DEVICE_CPU;
    mlxn_device *dev = NULL;
    char name[160], file[600];
    snprintf(file, sizeof file, "%s/variant.gguf", dir);
    CHECK_OK("model_moe/refusals", mlxn_device_create(&o, &dev));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(name, sizeof name, "model_moe/load refuses %s", cases[i].what);
        CHECK_OK(name, copy_gguf(path, file, cases[i].key, cases[i].skip, 0));
        mlxn_model *m = NULL;
        harness_expect_status(name, load(dev, file, 512, &m), cases[i].want, cases[i].needle);
        mlxn_model_free(m);
    }
fail:
    remove(file);
    mlxn_device_free(dev);
}

int main(int argc, char **argv)
{
    (void)harness_seed(argc, argv); /* the model's seed is fixed: printed for the record only */
    const char *tmp = getenv("TMPDIR");
    char dir[512], path[600], variant[2][600];
    snprintf(dir, sizeof dir, "%s/mlxn_moe_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        harness_fail("model_moe/synthesize", "cannot create a directory from %s", dir);
        return harness_finish();
    }
    snprintf(path, sizeof path, "%s/synth_qwen3moe.gguf", dir);
    synth_moe_options so = synth_moe_options_default();
    mlxn_status st = synth_moe_write(path, &so);
    for (int v = 0; v < 2; v++) {
        snprintf(variant[v], sizeof variant[v], "%s/router_%s.gguf", dir, v ? "minus" : "plus");
        if (st == MLXN_STATUS_OK)
            st = copy_gguf(path, variant[v], NULL, NULL, v ? -ROUTER_EPS : ROUTER_EPS);
    }
    if (st != MLXN_STATUS_OK)
        harness_fail("model_moe/synthesize", "%s: %s", mlxn_status_str(st), mlxn_last_error());
    else {
        harness_pass("model_moe/synthesize");
        /* MLXN_TEST_MODEL_PROMPTS=N: the first N prompts only (sanitizer builds) */
        const char *limit = getenv("MLXN_TEST_MODEL_PROMPTS");
        const int n_seq = limit && atoi(limit) > 0 && atoi(limit) < N_PROMPTS ? atoi(limit) : N_PROMPTS;
        static sequence seqs[N_PROMPTS];
        int64_t V = 0;
        const char *const variants[2] = {variant[0], variant[1]};
        if (cpu_reference(path, variants, seqs, n_seq, &V)) {
            if (mlxn_cuda_device_count() == 0)
                harness_skip("model_moe @cuda:0", "no CUDA device");
            else {
                test_cuda(path, seqs, n_seq, V, "cuda:0/f32-chunks", 16, &TOL_F32);
                test_cuda(path, seqs, n_seq, V, "cuda:0/bf16-prefill", 512, &TOL_BF16);
            }
        }
        for (int i = 0; i < N_PROMPTS; i++)
            free(seqs[i].ref);
        test_refusals(path, dir);
    }
    remove(path);
    remove(variant[0]);
    remove(variant[1]);
    rmdir(dir);
    return harness_finish();
}
