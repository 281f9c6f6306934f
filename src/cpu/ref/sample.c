/* Oracle: sampling by mlxn.h's rule in f64, by the book: penalized logits, a full sort for the
 * rank, weights exp(z - max z), the prefixes of top-k and top-p, min-p, and the draw with the
 * shared counter-based generator (sample_math.h) as u in [0, 1). It also says whether a
 * decision came within the error of the backends' f32 weights of going the other way. */
#include <math.h>
#include <stdlib.h>

#include "../../core/sample_math.h"
#include "ref.h"

typedef struct ranked {
    double z;
    int64_t i;
} ranked;

/* z descending, NaN last, ties by lower index */
static int by_rank(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    const bool an = isnan(a->z), bn = isnan(b->z);
    if (an != bn)
        return an ? 1 : -1;
    if (!an && a->z != b->z)
        return a->z > b->z ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

/* Two values that f32 arithmetic (two roundings of 2^-24 each) may order either way. */
static bool close_values(double a, double b)
{
    return a != b && fabs(a - b) <= 0x1p-21 * fmax(fabs(a), fabs(b));
}

mlxn_ref_sample_result mlxn_ref_sample_row(const mlxn_sample_args *a, int64_t r, double *probs)
{
    mlxn_ref_sample_result res = {-1, false, 0};
    const int64_t V = a->n;
    const float *x = (const float *)mlxn_rows_ptr(&a->logits, r);
    double *l = malloc((size_t)V * sizeof *l), *p = malloc((size_t)V * sizeof *p);
    ranked *order = malloc((size_t)V * sizeof *order);
    bool *kept = calloc((size_t)V, 1);
    bool *pen = calloc((size_t)V, 1);
    if (!l || !p || !order || !kept || !pen)
        goto done; /* -1: the test harness reports the mismatch */
    if (a->history.base) {
        const int32_t *h = (const int32_t *)mlxn_rows_ptr(&a->history, r);
        for (int64_t j = 0; j < a->n_history; j++)
            if (h[j] >= 0 && h[j] < V)
                pen[h[j]] = true;
    }
    for (int64_t i = 0; i < V; i++) {
        l[i] = x[i];
        if (pen[i])
            l[i] = l[i] > 0 ? l[i] / a->repeat_penalty : l[i] * a->repeat_penalty;
    }
    if (a->temperature <= 0) { /* greedy: the first of the largest, NaN skipped */
        for (int64_t i = 0; i < V; i++)
            if (!isnan(l[i]) && (res.token < 0 || l[i] > l[res.token]))
                res.token = (int32_t)i;
        for (int64_t i = 0; res.token >= 0 && i < V; i++) /* penalized logits are rounded in f32 */
            if ((pen[i] || pen[res.token]) && close_values(l[i], l[res.token]))
                res.near_boundary = true;
        goto done;
    }
    double zabs = 0;
    for (int64_t i = 0; i < V; i++) {
        order[i] = (ranked){l[i] / a->temperature, i};
        if (isfinite(order[i].z))
            zabs = fmax(zabs, fabs(order[i].z));
    }
    double *z = l; /* z replaces l, by index */
    for (int64_t i = 0; i < V; i++)
        z[order[i].i] = order[i].z;
    qsort(order, (size_t)V, sizeof *order, by_rank);
    const double zmax = order[0].z;
    if (isnan(zmax) || zmax == -INFINITY)
        goto done;
    /* The backends' weights: z, max z and their difference each a rounding or two in f32
     * (|error| <= 2^-22 (|z| + 1) in the exponent), the exponential within 2 ulp, then cut to
     * 2^-40. Sums of them are exact (integers); the CDF's relative error stays below eps plus
     * the cuts. Decisions within 4 times that of their boundary count as near. */
    const double eps = 0x1p-22 * (zabs + 1), delta = 4 * (eps + (double)V * 0x1p-40);
    res.margin = delta;
    for (int64_t i = 0; i < V; i++)
        p[i] = isnan(z[i]) ? 0 : z[i] == zmax ? 1 : exp(z[i] - zmax);
    const int64_t lk = a->top_k > 0 && a->top_k < V ? a->top_k : V;
    double wk = 0;
    for (int64_t k = 0; k < lk; k++)
        wk += p[order[k].i];
    int64_t len = lk;
    if (lk < V && close_values(order[lk - 1].z, order[lk].z))
        res.near_boundary = true;
    if (a->top_p < 1) {
        const double need = (double)a->top_p * wk;
        double cum = 0, before = 0;
        for (int64_t k = 0; k < lk; k++) {
            before = cum;
            cum += p[order[k].i];
            if (cum >= need) {
                len = k + 1;
                break;
            }
        }
        if (fabs(cum - need) <= delta * wk || (len > 1 && fabs(need - before) <= delta * wk))
            res.near_boundary = true;
        if (len < V && close_values(order[len - 1].z, order[len].z))
            res.near_boundary = true;
    }
    double total = 0;
    for (int64_t k = 0; k < len; k++) {
        const int64_t i = order[k].i;
        kept[i] = a->min_p <= 0 || p[i] >= a->min_p;
        if (a->min_p > 0 && fabs(p[i] - a->min_p) <= delta)
            res.near_boundary = true;
        if (kept[i])
            total += p[i];
    }
    const uint64_t bits = mlxn_sample_bits(a->seed, a->step, (uint64_t)r);
    const double target = (double)(bits >> 11) * 0x1p-53 * total;
    double cum = 0;
    for (int64_t i = 0; i < V; i++) {
        if (!kept[i] || p[i] == 0)
            continue;
        const double before = cum;
        cum += p[i];
        res.token = (int32_t)i; /* the last kept one, should rounding leave cum <= target */
        if (cum > target) {
            if (target - before <= delta * total || cum - target <= delta * total)
                res.near_boundary = true;
            break;
        }
    }
    for (int64_t i = 0; probs && i < V; i++)
        probs[i] = kept[i] ? p[i] / total : 0;
done:
    free(l);
    free(p);
    free(order);
    free(kept);
    free(pen);
    return res;
}

void mlxn_ref_sample(const mlxn_sample_args *a)
{
    for (int64_t r = 0; r < a->n_rows; r++)
        a->out[r] = mlxn_ref_sample_row(a, r, NULL).token;
}
