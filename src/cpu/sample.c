/* Sampling on the CPU, by the same steps and the same integer arithmetic as the CUDA kernel
 * (src/cuda/sample.cu), so both pick the same token: rows split across the thread pool; per
 * row, the order keys of every token go to a scratch array (greedy rows: their argmax alone),
 * the top-k cut is found by radix selection over the keys (a pass over the row for the first
 * byte, then the elements of its bin alone for the other three; no sort) and its tokens are
 * gathered in id order; then the fixed-point weights of those (of every token without top-k),
 * the top-p cut by the same selection over them, and the draw walks the kept tokens in id
 * order. */
#include <stdlib.h>
#include <string.h>

#include "../core/sample_math.h"
#include "cpu.h"
#include "ref/ref.h"

/* A cut of the rank order: tokens with key > key, then the first `ties` (by id) of those with
 * key == key. */
typedef struct cut {
    uint32_t key;
    uint64_t ties;
} cut;

/* A radix selection over the keys: the key K at which the measure (a count, or the weights w)
 * of keys above K stays below target and reaches it with K's own. Elements with key <= floor
 * are left out (floor 0 and inclusive: none); an extra group of extra_count elements of key
 * extra_key and measure extra is added. *above and *above_count get the measure and the count
 * of the elements above K. */
typedef struct radix_in {
    const uint32_t *key;
    const uint64_t *w; /* NULL: count */
    int64_t n;
    uint32_t floor;
    bool floor_excl;
    uint32_t extra_key;
    uint64_t extra, extra_count;
    /* scratch for the elements the later passes read (those in the first byte's bin: a fraction
     * of the row) with their weights (cw, where w is given), as many as pass the floor */
    uint32_t *ckey;
    uint64_t *cw;
} radix_in;

static uint32_t radix_select(const radix_in *in, uint64_t target, uint64_t *above, uint64_t *above_count)
{
    uint32_t prefix = 0;
    *above = *above_count = 0;
    const uint32_t *key = in->key;
    const uint64_t *w = in->w;
    int64_t n = in->n;
    bool floor_excl = in->floor_excl;
    for (int shift = 24; shift >= 0; shift -= 8) {
        const uint32_t hi = shift == 24 ? 0 : ~0u << (shift + 8); /* the bits already chosen */
        if (shift == 16) { /* the elements left in the first byte's bin, into the scratch */
            int64_t m = 0;
            for (int64_t i = 0; i < n; i++) {
                const uint32_t k = key[i];
                in->ckey[m] = k;
                if (w)
                    in->cw[m] = w[i];
                m += (k & hi) == prefix && !(floor_excl && k <= in->floor);
            }
            key = in->ckey, w = w ? in->cw : NULL, n = m, floor_excl = false;
        }
        uint64_t bins[256] = {0}, counts[256] = {0};
        for (int64_t i = 0; i < n; i++) {
            const uint32_t k = key[i];
            if ((k & hi) != prefix || (floor_excl && k <= in->floor))
                continue;
            bins[k >> shift & 255] += w ? w[i] : 1;
            counts[k >> shift & 255]++;
        }
        if (in->extra_count && (in->extra_key & hi) == prefix) {
            bins[in->extra_key >> shift & 255] += in->extra;
            counts[in->extra_key >> shift & 255] += in->extra_count;
        }
        const int b = mlxn_radix_pick(bins, target, above);
        for (int j = 255; j > b; j--)
            *above_count += counts[j];
        prefix |= (uint32_t)b << shift;
    }
    return prefix;
}

static int32_t sample_row(const mlxn_sample_args *a, int64_t r, uint32_t *key, uint64_t *w, uint32_t *ids,
                          uint32_t *ckey, uint64_t *cw, uint8_t *pen)
{
    const int64_t V = a->n;
    const float *x = (const float *)mlxn_rows_ptr(&a->logits, r);
    if (a->history.base) {
        memset(pen, 0, (size_t)(V + 7) / 8);
        const int32_t *h = (const int32_t *)mlxn_rows_ptr(&a->history, r);
        for (int64_t j = 0; j < a->n_history; j++)
            if (h[j] >= 0 && h[j] < V)
                pen[h[j] >> 3] |= (uint8_t)(1u << (h[j] & 7));
    }
    /* the order keys and their argmax; greedy rows keep no keys, and without a penalty they are
     * mlxn_argmax's rows (whose loop the compiler vectorizes) */
    const bool greedy = a->temperature <= 0;
    if (greedy && !a->history.base)
        return mlxn_cpu_argmax_row(x, MLXN_DTYPE_F32, V);
    uint64_t best = 0;
    for (int64_t i = 0; i < V; i++) {
        const int penalized = a->history.base && pen[i >> 3] >> (i & 7) & 1;
        const float z = mlxn_sample_logit(x[i], penalized, a->repeat_penalty, a->temperature);
        if (!greedy)
            key[i] = mlxn_f32_order_key(z);
        const uint64_t c = mlxn_argmax_pack(z, i);
        best = c > best ? c : best;
    }
    if (greedy)
        return mlxn_argmax_index(best);
    const uint32_t kmax = (uint32_t)(best >> 32);
    if (kmax <= MLXN_KEY_NEG_INF)
        return -1;
    const float zmax = mlxn_order_key_value(kmax);

    /* the cut: everything, then top-k, then top-p inside it. With top-k the kept tokens (those
     * above the cut and its first ties by id) move to the front of key, in id order, their ids
     * to ids, and the rest works on them alone: the draw's walk in id order meets the same
     * tokens, and the top-p selection the same keys and weights. n: the tokens left. */
    cut c = {0, (uint64_t)V};
    uint64_t above, above_count;
    int64_t n = V;
    const bool topk = a->top_k > 0 && a->top_k < V;
    if (topk) {
        radix_in in = {key, NULL, V, 0, false, 0, 0, 0, (uint32_t *)w, NULL}; /* (w: not yet written) */
        c.key = radix_select(&in, (uint64_t)a->top_k, &above, &above_count);
        c.ties = (uint64_t)a->top_k - above_count;
        uint64_t ties = 0;
        n = 0;
        for (int64_t i = 0; i < V; i++) {
            const uint32_t k = key[i];
            if (k > c.key || (k == c.key && ties++ < c.ties)) {
                key[n] = k;
                ids[n++] = (uint32_t)i;
            }
        }
    }
    for (int64_t i = 0; i < n; i++)
        w[i] = mlxn_sample_weight(mlxn_order_key_value(key[i]), zmax);
    if (a->top_p < 1.0f) {
        const uint64_t wc = mlxn_sample_weight(mlxn_order_key_value(c.key), zmax);
        radix_in in = {key, w, n, c.key, topk, c.key, topk ? c.ties * wc : 0, topk ? c.ties : 0, ckey, cw};
        uint64_t total = in.extra;
        for (int64_t i = 0; i < n; i++)
            total += !topk || key[i] > c.key ? w[i] : 0;
        const uint64_t need = mlxn_sample_top_p_need(a->top_p, total);
        if (need == 0) {
            c = (cut){kmax, 1};
        } else {
            c.key = radix_select(&in, need, &above, &above_count);
            const uint64_t wp = mlxn_sample_weight(mlxn_order_key_value(c.key), zmax);
            c.ties = (need - above + wp - 1) / wp;
        }
    }

    /* the draw, in id order */
    uint64_t total = 0, ties = 0;
    for (int64_t i = 0; i < n; i++) {
        const bool in_cut = key[i] > c.key || (key[i] == c.key && ties++ < c.ties);
        if (in_cut && (a->min_p <= 0 || mlxn_sample_min_p_keeps(a->min_p, w[i])))
            total += w[i];
    }
    const uint64_t target = mlxn_sample_target(total, mlxn_sample_bits(a->seed, a->step, (uint64_t)r));
    uint64_t sum = 0;
    ties = 0;
    for (int64_t i = 0; i < n; i++) {
        const bool in_cut = key[i] > c.key || (key[i] == c.key && ties++ < c.ties);
        if (!in_cut || (a->min_p > 0 && !mlxn_sample_min_p_keeps(a->min_p, w[i])))
            continue;
        sum += w[i];
        if (sum > target)
            return (int32_t)(topk ? ids[i] : i);
    }
    return -1; /* unreachable: target < total */
}

typedef struct sample_ctx {
    const mlxn_sample_args *a;
    bool failed;
} sample_ctx;

static void sample_task(void *ctx, int64_t r0, int64_t r1)
{
    sample_ctx *c = ctx;
    const mlxn_sample_args *a = c->a;
    /* greedy rows keep no keys or weights (a vocabulary's 12 bytes a token, fresh pages every
     * call, cost more than the argmax) */
    const bool greedy = a->temperature <= 0;
    /* top-p's radix scratch: the tokens above the top-k cut (fewer than top_k), else the row
     * (radix_select's store for element i goes to a slot no later than the count kept before it) */
    const int64_t cap = greedy || a->top_p >= 1.0f ? 0 : a->top_k > 0 && a->top_k < a->n ? a->top_k : a->n;
    uint32_t *key = greedy ? NULL : malloc((size_t)a->n * sizeof *key), *ckey = cap ? malloc((size_t)cap * sizeof *ckey) : NULL;
    uint64_t *w = greedy ? NULL : malloc((size_t)a->n * sizeof *w), *cw = cap ? malloc((size_t)cap * sizeof *cw) : NULL;
    const bool topk = !greedy && a->top_k > 0 && a->top_k < a->n;
    uint32_t *ids = topk ? malloc((size_t)a->top_k * sizeof *ids) : NULL; /* the top-k tokens' ids */
    uint8_t *pen = a->history.base ? malloc((size_t)(a->n + 7) / 8) : NULL; /* the penalized ids */
    if ((!greedy && (!key || !w)) || (cap && (!ckey || !cw)) || (topk && !ids) || (a->history.base && !pen))
        c->failed = true; /* benign race: every writer stores the same */
    for (int64_t r = r0; !c->failed && r < r1; r++)
        a->out[r] = sample_row(a, r, key, w, ids, ckey, cw, pen);
    free(ids);
    free(key);
    free(w);
    free(ckey);
    free(cw);
    free(pen);
}

mlxn_status mlxn_cpu_sample(mlxn_stream *s, const mlxn_sample_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_sample(a);
        return MLXN_STATUS_OK;
    }
    sample_ctx c = {a, false};
    mlxn_threadpool_run(d->pool, a->n_rows, a->n >= 16384 ? 1 : 16384 / a->n, sample_task, &c);
    if (c.failed)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_sample", "no memory for a row's keys and weights");
    return MLXN_STATUS_OK;
}
