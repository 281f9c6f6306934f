/* Harness cases for sampling (mlxn.h gives the rule):
 *   greedy   temperature <= 0 gives mlxn_argmax's token on the same device, filters or not
 *   top-1    top_k = 1 gives the argmax of z = l / temperature (f32, lowest index on ties),
 *            with planted ties, whatever the other filters say
 *   penalty  hand-made rows where llama.cpp's rule (positive logits divided, negative ones
 *            multiplied, each distinct id once, ids outside [0, V) ignored) decides the token
 *   oracle   random logits (realistic spreads, ties, -inf and NaN entries, rows of only -inf)
 *            x filter settings x shapes up to a 262144-token row: every device's token equals
 *            the f64 oracle's unless the oracle reports a decision within the f32 margin
 *            (counted and printed; more than 1% of the draws fails), and every device gives
 *            the same tokens as the first one (CPU and CUDA agree bit for bit)
 *   chi2     16384 draws of one row (4096 rows x 4 steps) against the oracle's filtered
 *            probabilities: no filtered-out token is drawn, and the chi-square statistic stays
 *            below its 1e-6 upper tail; the same counts against the distribution without
 *            top-p must exceed it (the check has the power to see a missing filter). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "cpu/ref/ref.h"
#include "harness.h"
#include "test_ops.h"

typedef struct smp_data {
    int64_t B, V, H;
    operand logits, history, out;
} smp_data;

static bool data_init(smp_data *d, int64_t B, int64_t V, int64_t H, int64_t pad)
{
    memset(d, 0, sizeof *d);
    d->B = B;
    d->V = V;
    d->H = H;
    int64_t ls[2] = {B, V}, hs[2] = {B, H > 0 ? H : 1};
    if (!operand_init(&d->logits, MLXN_DTYPE_F32, 2, ls, pad, false) ||
        !operand_init(&d->history, MLXN_DTYPE_I32, 2, hs, 0, false) ||
        !operand_init(&d->out, MLXN_DTYPE_I32, 1, &B, 0, false))
        return false;
    for (int64_t i = 0; i < d->history.numel; i++)
        operand_set(&d->history, i, -1);
    for (int64_t i = 0; i < B; i++)
        operand_set(&d->out, i, -7); /* poison: no valid answer */
    return true;
}

static void data_free(smp_data *d)
{
    operand_free(&d->logits);
    operand_free(&d->history);
    operand_free(&d->out);
}

static float logit_at(const smp_data *d, int64_t b, int64_t i) { return (float)operand_get(&d->logits, b * d->V + i); }

/* Runs mlxn_sample (or, with greedy_argmax, mlxn_argmax) on dev; tokens into got[B]. */
static bool run_on(const smp_data *d, const mlxn_sampler_params *p, uint64_t step, bool argmax, test_device *dev,
                   int32_t *got, char *why, size_t cap)
{
    placed l = {0}, h = {0}, o = {0};
    operand fetched;
    memset(&fetched, 0, sizeof fetched);
    bool ok = false;
    if (!operand_place(&d->logits, dev, &l) || !operand_place(&d->history, dev, &h) ||
        !operand_place(&d->out, dev, &o)) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    mlxn_status st = argmax ? mlxn_argmax(dev->stream, &l.view, &o.view)
                            : mlxn_sample(dev->stream, &l.view, d->H > 0 ? &h.view : NULL, p, step, &o.view);
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(&o, dev, &d->out, &fetched)) {
        snprintf(why, cap, "fetching out: %s", mlxn_last_error());
        goto done;
    }
    /* the bytes around out stay untouched (the values are judged by the caller) */
    const tolerance any = {1e30, 1e30, ""};
    if (!compare_operands(&fetched, &d->out, any, why, cap))
        goto done;
    for (int64_t b = 0; b < d->B; b++)
        got[b] = (int32_t)operand_get(&fetched, b);
    ok = true;
done:
    operand_free(&fetched);
    placed_free(&l);
    placed_free(&h);
    placed_free(&o);
    return ok;
}

/* The oracle's arguments over the host images. */
static mlxn_sample_args host_args(const smp_data *d, const mlxn_sampler_params *p, uint64_t step)
{
    mlxn_sample_args a;
    memset(&a, 0, sizeof a);
    a.n_rows = d->B;
    a.n = d->V;
    a.logits = (mlxn_rows){(char *)d->logits.image + d->logits.offset, 1, 1, d->logits.stride[0], 0, 0};
    if (d->H > 0 && p->repeat_penalty != 1.0f) {
        a.history = (mlxn_rows){(char *)d->history.image + d->history.offset, 1, 1, d->history.stride[0], 0, 0};
        a.n_history = d->H;
    }
    a.temperature = p->temperature;
    a.top_k = p->top_k;
    a.top_p = p->top_p;
    a.min_p = p->min_p;
    a.repeat_penalty = p->repeat_penalty;
    a.seed = p->seed;
    a.step = step;
    return a;
}

/* ---------------------------------------------------------------- greedy, top-1, penalty */

/* Logits with ties: bf16-rounded normals (many equal values), the maximum planted again. */
static void fill_tied(smp_data *d, rng *g)
{
    for (int64_t b = 0; b < d->B; b++) {
        double m = -INFINITY;
        for (int64_t i = 0; i < d->V; i++) {
            const double v = mlxn_bf16_to_f32(mlxn_f32_to_bf16((float)(rng_normal(g) * 3)));
            operand_set(&d->logits, b * d->V + i, v);
            m = fmax(m, v);
        }
        if (d->V > 2) {
            operand_set(&d->logits, b * d->V + rng_int(g, 0, d->V - 1), m);
            operand_set(&d->logits, b * d->V + rng_int(g, 0, d->V - 1), NAN);
        }
    }
}

static void greedy_cases(test_devices *devs, rng *g)
{
    static const int64_t shapes[][2] = {{1, 1}, {17, 50}, {3, 4099}, {1, 262144}};
    char name[160], why[512];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        smp_data d;
        int32_t *want = malloc((size_t)shapes[s][0] * 4), *got = malloc((size_t)shapes[s][0] * 4);
        if (!want || !got || !data_init(&d, shapes[s][0], shapes[s][1], 0, 0)) {
            harness_fail("sample/greedy", "out of memory");
            free(want);
            free(got);
            return;
        }
        fill_tied(&d, g);
        mlxn_sampler_params p = mlxn_sampler_params_default();
        for (int v = 0; v < 2; v++) {
            p.temperature = v ? -1.0f : 0.0f;
            p.top_k = v ? 5 : 0; /* ignored when greedy */
            p.top_p = v ? 0.5f : 1.0f;
            p.seed = rng_next(g);
            for (int k = 0; k < devs->count; k++) {
                snprintf(name, sizeof name, "sample/greedy/%lldx%lld/temperature=%g @%s", (long long)d.B,
                         (long long)d.V, (double)p.temperature, devs->list[k].name);
                if (!run_on(&d, &p, 3, true, &devs->list[k], want, why, sizeof why) ||
                    !run_on(&d, &p, 3, false, &devs->list[k], got, why, sizeof why)) {
                    harness_fail(name, "%s", why);
                    continue;
                }
                int64_t bad = -1;
                for (int64_t b = 0; b < d.B && bad < 0; b++)
                    if (got[b] != want[b])
                        bad = b;
                if (bad >= 0)
                    harness_fail(name, "row %lld: sampled %d, argmax %d", (long long)bad, got[bad], want[bad]);
                else
                    harness_pass(name);
            }
        }
        data_free(&d);
        free(want);
        free(got);
    }
}

static void top1_cases(test_devices *devs, rng *g)
{
    static const int64_t shapes[][2] = {{8, 3}, {16, 1000}, {2, 32000}, {1, 262144}};
    static const float temps[] = {1.0f, 0.6f, 2.5f};
    char name[160], why[512];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        smp_data d;
        int32_t *want = malloc((size_t)shapes[s][0] * 4), *got = malloc((size_t)shapes[s][0] * 4);
        if (!want || !got || !data_init(&d, shapes[s][0], shapes[s][1], 0, 0)) {
            harness_fail("sample/top-1", "out of memory");
            free(want);
            free(got);
            return;
        }
        fill_tied(&d, g);
        const float t = temps[s % 3];
        for (int64_t b = 0; b < d.B; b++) { /* argmax of z = l / t in f32, NaN skipped, lowest index */
            want[b] = -1;
            float best = 0;
            for (int64_t i = 0; i < d.V; i++) {
                const float z = logit_at(&d, b, i) / t;
                if (!isnan(z) && (want[b] < 0 || z > best)) {
                    best = z;
                    want[b] = (int32_t)i;
                }
            }
        }
        mlxn_sampler_params p = {t, 1, s % 2 ? 0.3f : 1.0f, s % 2 ? 0.0f : 0.5f, 1.0f, rng_next(g)};
        for (int k = 0; k < devs->count; k++) {
            snprintf(name, sizeof name, "sample/top-1/%lldx%lld/temperature=%g @%s", (long long)d.B, (long long)d.V,
                     (double)t, devs->list[k].name);
            if (!run_on(&d, &p, 11, false, &devs->list[k], got, why, sizeof why)) {
                harness_fail(name, "%s", why);
                continue;
            }
            int64_t bad = -1;
            for (int64_t b = 0; b < d.B && bad < 0; b++)
                if (got[b] != want[b])
                    bad = b;
            if (bad >= 0)
                harness_fail(name, "row %lld: sampled %d, argmax of z %d", (long long)bad, got[bad], want[bad]);
            else
                harness_pass(name);
        }
        data_free(&d);
        free(want);
        free(got);
    }
}

/* Rows where the penalty rule alone decides the greedy (and top-1) token. */
static void penalty_cases(test_devices *devs)
{
    enum { V = 6, H = 5 };
    static const struct {
        const char *what;
        float logits[V];
        int32_t history[H];
        float penalty;
        int32_t want;
    } rows[] = {
        /* 3 / 1.5 = 2 < 2.5: the penalized leader loses */
        {"positive-divided", {3.0f, 2.5f, 1.0f, 0.0f, -1.0f, -2.0f}, {0, -1, -1, -1, -1}, 1.5f, 1},
        /* -1 * 1.5 = -1.5 < -1.1 (dividing would give -0.67, still the largest) */
        {"negative-multiplied", {-1.0f, -1.1f, -3.0f, -4.0f, -5.0f, -6.0f}, {0, -1, -1, -1, -1}, 1.5f, 1},
        /* an id listed three times is penalized once: 3 / 1.5 = 2 > 1.8 */
        {"distinct-once", {3.0f, 1.8f, 1.0f, 0.0f, -1.0f, -2.0f}, {0, 0, 0, -1, -1}, 1.5f, 0},
        /* ids outside [0, V) are ignored */
        {"out-of-range-ignored", {3.0f, 2.5f, 1.0f, 0.0f, -1.0f, -2.0f}, {6, 7, -5, 100, -1}, 1.5f, 0},
        /* a penalty below 1 boosts: 2.4 / 0.8 = 3 > 2.9 */
        {"below-one-boosts", {2.9f, 2.4f, 1.0f, 0.0f, -1.0f, -2.0f}, {1, -1, -1, -1, -1}, 0.8f, 1},
        /* zero is neither: 0 stays 0 > -0.5 */
        {"zero-unchanged", {0.0f, -0.5f, -1.0f, -2.0f, -3.0f, -4.0f}, {0, -1, -1, -1, -1}, 3.0f, 0},
    };
    const int64_t n = (int64_t)(sizeof rows / sizeof rows[0]);
    smp_data d;
    int32_t got[16];
    char name[160], why[512];
    if (!data_init(&d, n, V, H, 0)) {
        harness_fail("sample/penalty", "out of memory");
        return;
    }
    for (int64_t b = 0; b < n; b++)
        for (int i = 0; i < V; i++) {
            operand_set(&d.logits, b * V + i, rows[b].logits[i]);
            if (i < H)
                operand_set(&d.history, b * H + i, rows[b].history[i]);
        }
    /* one call per row's penalty: rows that use another penalty are still checked against it */
    for (int64_t r = 0; r < n; r++) {
        for (int v = 0; v < 2; v++) {
            mlxn_sampler_params p = {v ? 0.7f : 0.0f, v ? 1 : 0, 1.0f, 0.0f, rows[r].penalty, 5};
            for (int k = 0; k < devs->count; k++) {
                snprintf(name, sizeof name, "sample/penalty/%s/%s @%s", rows[r].what, v ? "top-1" : "greedy",
                         devs->list[k].name);
                if (!run_on(&d, &p, 0, false, &devs->list[k], got, why, sizeof why))
                    harness_fail(name, "%s", why);
                else if (got[r] != rows[r].want)
                    harness_fail(name, "token %d, expected %d", got[r], rows[r].want);
                else
                    harness_pass(name);
            }
        }
    }
    data_free(&d);
}

/* ---------------------------------------------------------------- against the oracle */

typedef struct smp_tally {
    int64_t draws, near, near_mismatch;
} smp_tally;

/* Random logits for row b of a case: a spread of 2 .. 6, a few sharp leaders, some -inf (masked
 * tokens) and NaN; row 3 of a batch all -inf; bf16-rounded (tied) values when tied. */
static void fill_random_logits(smp_data *d, rng *g, bool tied)
{
    for (int64_t b = 0; b < d->B; b++) {
        const double spread = 2 + 4 * rng_uniform(g);
        for (int64_t i = 0; i < d->V; i++) {
            double v = rng_normal(g) * spread;
            const double u = rng_uniform(g);
            if (u < 0.002)
                v += 4 * spread;
            else if (u < 0.004)
                v = -INFINITY;
            else if (u < 0.005 && d->V > 10)
                v = NAN;
            if (b == 3 && d->B > 4)
                v = -INFINITY;
            if (tied)
                v = mlxn_bf16_to_f32(mlxn_f32_to_bf16((float)v));
            operand_set(&d->logits, b * d->V + i, v);
        }
        for (int64_t j = 0; j < d->H; j++) /* recent tokens, some repeated, some outside [0, V) */
            operand_set(&d->history, b * d->H + j, rng_uniform(g) < 0.1 ? -1 : (double)rng_int(g, 0, d->V + 2));
    }
}

/* Rows the filters find nearly empty: row 0 all -inf but one token, row 1 all NaN, row 2 all NaN
 * but one (each where the batch has it). */
static void fill_sparse_rows(smp_data *d, rng *g)
{
    for (int64_t b = 0; b < d->B && b < 3; b++) {
        const int64_t keep = rng_int(g, 0, d->V - 1);
        for (int64_t i = 0; i < d->V; i++)
            if (b == 1 || i != keep)
                operand_set(&d->logits, b * d->V + i, b == 0 ? -INFINITY : NAN);
    }
}

static void oracle_case(test_devices *devs, rng *g, int64_t B, int64_t V, int64_t H, int64_t pad, bool tied,
                        bool sparse, const mlxn_sampler_params *p, smp_tally *tally)
{
    char name[200], full[260], why[512];
    snprintf(name, sizeof name, "sample/oracle/%lldx%lld/t=%g/k=%d/p=%g/min_p=%g/rp=%g%s%s%s", (long long)B,
             (long long)V, (double)p->temperature, p->top_k, (double)p->top_p, (double)p->min_p,
             (double)p->repeat_penalty, pad ? "/pad" : "", tied ? "/tied" : "", sparse ? "/sparse" : "");
    smp_data d;
    int32_t *first = malloc((size_t)B * 4), *got = malloc((size_t)B * 4);
    mlxn_ref_sample_result *ref = malloc((size_t)B * sizeof *ref);
    if (!first || !got || !ref || !data_init(&d, B, V, H, pad)) {
        harness_fail(name, "out of memory");
        goto done;
    }
    fill_random_logits(&d, g, tied);
    if (sparse)
        fill_sparse_rows(&d, g);
    const uint64_t step = rng_next(g) >> 40;
    const mlxn_sample_args a = host_args(&d, p, step);
    for (int64_t b = 0; b < B; b++)
        ref[b] = mlxn_ref_sample_row(&a, b, NULL);
    for (int k = 0; k < devs->count; k++) {
        snprintf(full, sizeof full, "%s @%s", name, devs->list[k].name);
        if (!run_on(&d, p, step, false, &devs->list[k], got, why, sizeof why)) {
            harness_fail(full, "%s", why);
            continue;
        }
        int64_t bad = -1;
        for (int64_t b = 0; b < B; b++) {
            tally->draws++;
            if (ref[b].near_boundary)
                tally->near++;
            if (got[b] == ref[b].token)
                continue;
            if (ref[b].near_boundary)
                tally->near_mismatch++;
            else if (bad < 0)
                bad = b;
        }
        if (bad >= 0) {
            harness_fail(full, "row %lld: token %d, oracle %d (not within the margin %.2g)", (long long)bad, got[bad],
                         ref[bad].token, ref[bad].margin);
            continue;
        }
        if (k == 0) {
            memcpy(first, got, (size_t)B * 4);
        } else {
            for (int64_t b = 0; b < B && bad < 0; b++)
                if (got[b] != first[b])
                    bad = b;
            if (bad >= 0) {
                harness_fail(full, "row %lld: token %d, %s gave %d (backends must agree)", (long long)bad, got[bad],
                             devs->list[0].name, first[bad]);
                continue;
            }
        }
        harness_pass(full);
    }
    data_free(&d);
done:
    free(first);
    free(got);
    free(ref);
}

static void oracle_cases(test_devices *devs, rng *g)
{
    static const mlxn_sampler_params params[] = {
        /* temperature, top_k, top_p, min_p, repeat_penalty, seed (replaced) */
        {1.0f, 0, 1.0f, 0.0f, 1.0f, 0},     /* plain softmax */
        {0.8f, 40, 0.95f, 0.05f, 1.1f, 0},  /* llama.cpp's defaults with a penalty */
        {1.5f, 0, 0.5f, 0.0f, 1.0f, 0},     /* top-p alone, flat */
        {0.7f, 0, 1.0f, 0.1f, 1.3f, 0},     /* min-p alone */
        {1.0f, 3, 1.0f, 0.0f, 1.0f, 0},     /* top-k alone */
        {0.3f, 1000, 0.9f, 0.0f, 0.9f, 0},  /* sharp, a wide top-k, a boosting penalty */
        {1.2f, 20, 0.0f, 0.0f, 1.0f, 0},    /* top-p 0: the leader alone */
        {1.0f, 5000, 0.9f, 0.02f, 1.2f, 0}, /* a top-k cut too wide for CUDA's candidate list */
    };
    static const struct {
        int64_t B, V, H, pad;
        bool tied;
    } shapes[] = {
        {64, 7, 3, 0, false},   {48, 100, 16, 0, true}, {16, 1000, 64, 5, false},
        {4, 32000, 64, 0, true}, {2, 151936, 128, 3, false}, {1, 262144, 64, 0, false},
    };
    smp_tally tally = {0, 0, 0};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t k = 0; k < sizeof params / sizeof params[0]; k++) {
            /* the long rows: plain, llama.cpp's defaults, top-p alone, the wide top-k */
            if (shapes[s].V > 32000 && !(0x87u >> k & 1))
                continue;
            mlxn_sampler_params p = params[k];
            p.seed = rng_next(g);
            oracle_case(devs, g, shapes[s].B, shapes[s].V, shapes[s].H, shapes[s].pad, shapes[s].tied, false, &p,
                        &tally);
        }
    /* CUDA splits rows of batches up to 32 over many blocks (src/cuda/sample.cu): rows of one
     * chunk (V <= 1024), chunk edges (1025, 16385), a single row's widest split (300000), the
     * largest split batch (32) and the first unsplit one (33); top-k from 1 to 1024 (every
     * radix digit), top-p tiny (the leader alone or a few) and high (a cut deep in the row),
     * with and without top-k, min-p strict, greedy; rows all -inf or NaN but one (sparse: the
     * oracle counts their -inf ties at a cut as near, so those take few filter settings). */
    static const mlxn_sampler_params split_params[] = {
        {1.0f, 0, 1.0f, 0.0f, 1.0f, 0},      /* plain */
        {0.8f, 40, 0.95f, 0.05f, 1.1f, 0},   /* llama.cpp's defaults with a penalty */
        {1.0f, 0, 0.9f, 0.0f, 1.0f, 0},      /* top-p high alone */
        {0.9f, 0, 1e-4f, 0.0f, 1.0f, 0},     /* top-p tiny alone */
        {1.0f, 1, 1.0f, 0.0f, 1.0f, 0},      /* top-k 1 */
        {1.0f, 64, 0.5f, 0.0f, 1.3f, 0},     /* top-k 64 inside top-p */
        {2.0f, 1024, 0.9f, 0.0f, 1.0f, 0},   /* top-k 1024, top-p high */
        {1.0f, 7, 1e-4f, 0.3f, 1.0f, 0},     /* top-k, top-p tiny, min-p */
        {0.7f, 0, 1.0f, 0.5f, 1.0f, 0},      /* min-p strict alone */
        {0.0f, 40, 0.9f, 0.1f, 1.2f, 0},     /* greedy through the split */
    };
    static const struct {
        int64_t B, V, H, pad;
        bool tied, sparse;
        unsigned which; /* bits of split_params */
    } split_shapes[] = {
        {1, 1, 1, 0, false, false, 0x3ffu},      {1, 2, 2, 0, false, false, 0x3ffu},
        {1, 33, 4, 1, true, false, 0x3ffu},      {1, 1024, 16, 0, false, false, 0x3ffu},
        {1, 1025, 16, 0, true, false, 0x3ffu},   {2, 5000, 32, 2, false, false, 0x3ffu},
        {1, 16385, 64, 0, false, false, 0x3ffu}, {2, 6007, 8, 0, false, true, 0x101u},
        {32, 9001, 64, 0, false, false, 0x0ffu},
        {33, 4099, 8, 0, false, false, 0x003u},   {1, 100003, 128, 3, false, false, 0x1efu},
        {4, 65536, 64, 0, true, false, 0x007u},   {1, 300000, 64, 0, false, false, 0x047u},
    };
    for (size_t s = 0; s < sizeof split_shapes / sizeof split_shapes[0]; s++)
        for (size_t k = 0; k < sizeof split_params / sizeof split_params[0]; k++) {
            if (!(split_shapes[s].which >> k & 1))
                continue;
            mlxn_sampler_params p = split_params[k];
            p.seed = rng_next(g);
            oracle_case(devs, g, split_shapes[s].B, split_shapes[s].V, split_shapes[s].H, split_shapes[s].pad,
                        split_shapes[s].tied, split_shapes[s].sparse, &p, &tally);
        }
    /* Draws whose CDF boundary (or filter decision) lies within the f32 margin may go either
     * way; they should be rare. More than 1% means the margin (or the weights) is off. */
    printf("sample/oracle: %lld draws, %lld within the f32 margin of a boundary, %lld of them differing\n",
           (long long)tally.draws, (long long)tally.near, (long long)tally.near_mismatch);
    if (tally.near * 100 > tally.draws)
        harness_fail("sample/oracle/near-boundary-rate", "%lld of %lld draws within the margin", (long long)tally.near,
                     (long long)tally.draws);
    else
        harness_pass("sample/oracle/near-boundary-rate");
}

/* ---------------------------------------------------------------- statistics */

/* The chi-square statistic of counts against probabilities (n draws), over bins of expected
 * count >= 5 (smaller ones pooled); *df gets the degrees of freedom. Infinite when a token of
 * probability 0 was drawn. */
static double chi_square(const int64_t *counts, const double *probs, int64_t V, int64_t n, int *df)
{
    double chi2 = 0, pool_e = 0, pool_o = 0;
    int bins = 0;
    for (int64_t i = 0; i < V; i++) {
        const double e = probs[i] * (double)n;
        if (e == 0 && counts[i] > 0)
            return INFINITY;
        if (e >= 5) {
            chi2 += ((double)counts[i] - e) * ((double)counts[i] - e) / e;
            bins++;
        } else {
            pool_e += e;
            pool_o += (double)counts[i];
        }
    }
    if (pool_e > 0) {
        chi2 += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
        bins++;
    }
    *df = bins - 1;
    return chi2;
}

/* The chi-square value that df degrees of freedom exceed with probability 1e-6
 * (Wilson-Hilferty: chi2 / df is about normal in its cube root; z = 4.753). */
static double chi_square_limit(int df)
{
    const double k = df, c = 1 - 2 / (9 * k) + 4.753 * sqrt(2 / (9 * k));
    return k * c * c * c;
}

static void chi2_cases(test_devices *devs, rng *g)
{
    enum { V = 48, B = 4096, H = 6, STEPS = 4 };
    const mlxn_sampler_params p = {0.9f, 30, 0.8f, 0.02f, 1.3f, rng_next(g)};
    smp_data d;
    int32_t *got = malloc(B * 4);
    double *probs = malloc(V * sizeof *probs), *probs_no_top_p = malloc(V * sizeof *probs);
    int64_t counts[V];
    char name[160], why[512];
    if (!got || !probs || !probs_no_top_p || !data_init(&d, B, V, H, 0)) {
        harness_fail("sample/chi2", "out of memory");
        goto done;
    }
    /* A row whose filtered distribution keeps at least 4 tokens of expected count >= 5: with one
     * dominant logit top-p keeps a single token, and a chi-square test has nothing to test (that
     * case is the greedy one, tested exactly above). Redrawn until so (a few draws at most). */
    float row[V];
    int32_t hist[H];
    mlxn_sample_args a;
    for (int tries = 0;; tries++) {
        for (int i = 0; i < V; i++)
            row[i] = (float)(rng_normal(g) * 1.5);
        for (int j = 0; j < H; j++)
            hist[j] = (int32_t)rng_int(g, 0, V - 1);
        for (int i = 0; i < V; i++)
            operand_set(&d.logits, i, row[i]);
        for (int j = 0; j < H; j++)
            operand_set(&d.history, j, hist[j]);
        a = host_args(&d, &p, 0);
        mlxn_ref_sample_row(&a, 0, probs);
        int bins = 0;
        for (int i = 0; i < V; i++)
            bins += probs[i] * B * STEPS >= 5;
        if (bins >= 4)
            break;
        if (tries == 100) {
            harness_fail("sample/chi2", "no row with 4 likely tokens in 100 draws");
            goto done;
        }
    }
    for (int64_t b = 1; b < B; b++) {
        for (int i = 0; i < V; i++)
            operand_set(&d.logits, b * V + i, row[i]);
        for (int j = 0; j < H; j++)
            operand_set(&d.history, b * H + j, hist[j]);
    }
    mlxn_sampler_params q = p;
    q.top_p = 1.0f;
    a = host_args(&d, &q, 0);
    mlxn_ref_sample_row(&a, 0, probs_no_top_p);
    for (int k = 0; k < devs->count; k++) {
        snprintf(name, sizeof name, "sample/chi2/%d-draws @%s", B * STEPS, devs->list[k].name);
        memset(counts, 0, sizeof counts);
        bool ok = true;
        for (uint64_t step = 0; ok && step < STEPS; step++) {
            ok = run_on(&d, &p, 1000 + step, false, &devs->list[k], got, why, sizeof why);
            for (int64_t b = 0; ok && b < B; b++) {
                if (got[b] < 0 || got[b] >= V) {
                    snprintf(why, sizeof why, "token %d out of range", got[b]);
                    ok = false;
                } else {
                    counts[got[b]]++;
                }
            }
        }
        if (!ok) {
            harness_fail(name, "%s", why);
            continue;
        }
        int df = 0, df2 = 0;
        const double chi2 = chi_square(counts, probs, V, (int64_t)B * STEPS, &df);
        const double chi2_wrong = chi_square(counts, probs_no_top_p, V, (int64_t)B * STEPS, &df2);
        if (df < 1 || !(chi2 <= chi_square_limit(df)))
            harness_fail(name, "chi-square %.1f with %d degrees of freedom (limit %.1f at 1e-6)%s", chi2, df,
                         df >= 1 ? chi_square_limit(df) : 0.0, isinf(chi2) ? ": a filtered-out token was drawn" : "");
        else if (!(chi2_wrong > chi_square_limit(df2)))
            harness_fail(name, "against the distribution without top-p: chi-square %.1f, limit %.1f: no power",
                         chi2_wrong, chi_square_limit(df2));
        else
            harness_pass(name);
        if (g_verbose)
            printf("  chi-square %.1f (df %d, limit %.1f); without top-p %.1f\n", chi2, df, chi_square_limit(df),
                   chi2_wrong);
    }
    data_free(&d);
done:
    free(got);
    free(probs);
    free(probs_no_top_p);
}

/* ---------------------------------------------------------------- errors */

static void error_cases(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 16, &b) != MLXN_STATUS_OK)
        return;
    int64_t ls[2] = {2, 100}, hs[2] = {2, 8}, hs3[2] = {3, 8}, os[1] = {2}, os3[1] = {3}, hbig[2] = {1, 5000},
            lb[2] = {1, 100};
    mlxn_tensor l = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, ls);
    mlxn_tensor l16 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F16, 2, ls);
    mlxn_tensor l1 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, lb);
    mlxn_tensor h = mlxn_tensor_make(b, 4096, MLXN_DTYPE_I32, 2, hs);
    mlxn_tensor h3 = mlxn_tensor_make(b, 4096, MLXN_DTYPE_I32, 2, hs3);
    mlxn_tensor hf = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F32, 2, hs);
    mlxn_tensor hb = mlxn_tensor_make(b, 8192, MLXN_DTYPE_I32, 2, hbig);
    mlxn_tensor o = mlxn_tensor_make(b, 2048, MLXN_DTYPE_I32, 1, os);
    mlxn_tensor o3 = mlxn_tensor_make(b, 2048, MLXN_DTYPE_I32, 1, os3);
    mlxn_tensor o1 = mlxn_tensor_make(b, 2048, MLXN_DTYPE_I32, 1, &lb[0]);
    mlxn_sampler_params p = mlxn_sampler_params_default();
    p.repeat_penalty = 1.2f;
    mlxn_sampler_params bad = p;
    harness_expect_status("sample/error/logits-dtype", mlxn_sample(dev->stream, &l16, NULL, &p, 0, &o),
                          MLXN_STATUS_ERR_DTYPE, "logits are f16, expected f32");
    harness_expect_status("sample/error/out-shape", mlxn_sample(dev->stream, &l, NULL, &p, 0, &o3),
                          MLXN_STATUS_ERR_SHAPE, "out has shape 3, expected [2]");
    harness_expect_status("sample/error/history-rows", mlxn_sample(dev->stream, &l, &h3, &p, 0, &o),
                          MLXN_STATUS_ERR_SHAPE, "history has 3 rows, logits have 2");
    harness_expect_status("sample/error/history-dtype", mlxn_sample(dev->stream, &l, &hf, &p, 0, &o),
                          MLXN_STATUS_ERR_DTYPE, "history is f32, expected i32");
    harness_expect_status("sample/error/history-long", mlxn_sample(dev->stream, &l1, &hb, &p, 0, &o1),
                          MLXN_STATUS_ERR_UNSUPPORTED, "history has 5000 entries per row");
    harness_expect_status("sample/error/null-params", mlxn_sample(dev->stream, &l, &h, NULL, 0, &o),
                          MLXN_STATUS_ERR_INVALID_ARG, "p is NULL");
    harness_expect_status("sample/error/null-out", mlxn_sample(dev->stream, &l, &h, &p, 0, NULL),
                          MLXN_STATUS_ERR_INVALID_ARG, "out is NULL");
    bad.temperature = NAN;
    harness_expect_status("sample/error/temperature", mlxn_sample(dev->stream, &l, &h, &bad, 0, &o),
                          MLXN_STATUS_ERR_INVALID_ARG, "temperature is nan");
    bad = p;
    bad.top_k = -2;
    harness_expect_status("sample/error/top-k", mlxn_sample(dev->stream, &l, &h, &bad, 0, &o),
                          MLXN_STATUS_ERR_INVALID_ARG, "top_k is -2");
    bad = p;
    bad.top_p = 1.5f;
    harness_expect_status("sample/error/top-p", mlxn_sample(dev->stream, &l, &h, &bad, 0, &o),
                          MLXN_STATUS_ERR_INVALID_ARG, "top_p 1.5");
    bad = p;
    bad.min_p = -0.1f;
    harness_expect_status("sample/error/min-p", mlxn_sample(dev->stream, &l, &h, &bad, 0, &o),
                          MLXN_STATUS_ERR_INVALID_ARG, "min_p -0.1");
    bad = p;
    bad.repeat_penalty = 0;
    harness_expect_status("sample/error/penalty", mlxn_sample(dev->stream, &l, &h, &bad, 0, &o),
                          MLXN_STATUS_ERR_INVALID_ARG, "repeat_penalty is 0");
    mlxn_buffer_free(b);
}

void test_sample(test_devices *devs, rng *g)
{
    greedy_cases(devs, g);
    top1_cases(devs, g);
    penalty_cases(devs);
    oracle_cases(devs, g);
    chi2_cases(devs, g);
    error_cases(devs);
}
