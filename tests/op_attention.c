/* Harness cases for attention over a KV cache and for the cache append.
 *
 * Attention: decode (Tq 1), short chunks (Tq 2, 3, 7) and prefill chunks (Tq 64, 130, 257) at every
 * head dim the kernels serve (and 100, which none does), GQA ratios from 1 to 16 (MQA 4/1 at
 * D 256 as in Gemma 3, with a long-context case at 8192 slots), every
 * q x cache dtype pair (q8_0 caches, real quantizations by the reference quantizer, at each head
 * dim that is a multiple of 32), causal and not, with and without mask, sinks, softcap and a sliding
 * window, positions that differ per batch row (one row filling the cache to the last slot), q
 * viewed out of a fused QKV buffer and o written through a transposed view. Cache slots past
 * each row's valid keys and mask columns past the longest row hold NaN: any read of them
 * reaches the output. A batch row whose pos is out of range gets NaN outputs. A decode loop
 * captured in a graph (append K and V, attend) is replayed at moving positions.
 *
 * Errors are measured against the f64 oracle element by element, relative to
 * bound = sum_j p_j |v_jd| (the oracle run with |v|): the output is a convex combination of
 * the v_jd, so relative errors of the weights p_j and of the output's rounding are errors of
 * at most that size relative to the bound (a relative bound on o alone fails where the sum
 * cancels to near zero). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/attention_plan.h"
#include "formats/ggml_blocks.h"
#include "harness.h"
#include "mlxn_quant.h"
#include "test_ops.h"

typedef enum at_feature {
    AT_MASK = 1,
    AT_SINKS = 2,
    AT_SOFTCAP = 4,
    AT_WINDOW = 8,
    AT_NONCAUSAL = 16,
    AT_FUSED_Q = 32,   /* q is a view of the Q part of a [B, Tq, Hq + 2 Hkv, D] buffer */
    AT_PERMUTED_O = 64, /* o stored [Tq, B, Hq, D] */
    AT_BAD_POS = 128,   /* batch row 1 past the cache's end, row 2 (if any) negative */
    AT_ODD_KV = 256,    /* q8_0 caches at an odd byte offset (CUDA: the generic kernel's byte loads) */
    AT_PEAK = 512,      /* with AT_MASK: flat logits (q / 100) under one key per query raised by 18 through
                         * the mask, so the other keys weigh e^-18 (below f16's smallest subnormal) */
} at_feature;

typedef struct at_case {
    int64_t B, Tq, Hq, Hkv, S, D;
    mlxn_dtype qdt, kvdt;
    unsigned features;
    int64_t window;
    int64_t pos_hint; /* >= 0: every batch row at this position */
} at_case;

typedef struct at_operands {
    operand q, k, v, vabs, pos, mask, sinks, o;
    float scale, softcap;
} at_operands;

typedef struct at_run {
    const at_case *c;
    const at_operands *ops;
    bool use_vabs;
} at_run;

/* A [B, Tq, Hq, D] view of the first Hq heads of a [B, Tq, Htot, D] buffer. */
static bool fused_view(operand *o, mlxn_dtype dt, const int64_t shape[4], int64_t htot)
{
    memset(o, 0, sizeof *o);
    const int64_t es = mlxn_dtype_block_bytes(dt);
    o->dtype = dt;
    o->ndim = 4;
    memcpy(o->shape, shape, 4 * sizeof shape[0]);
    o->stride[3] = es;
    o->stride[2] = shape[3] * es;
    o->stride[1] = htot * shape[3] * es;
    o->stride[0] = shape[1] * o->stride[1];
    o->offset = GUARD_BYTES;
    o->bytes = (size_t)(shape[0] * o->stride[0]) + 2 * GUARD_BYTES;
    o->numel = shape[0] * shape[1] * shape[2] * shape[3];
    o->image = malloc(o->bytes);
    o->elem_offsets = malloc((size_t)(o->numel ? o->numel : 1) * sizeof(int64_t));
    if (!o->image || !o->elem_offsets)
        return false;
    memset(o->image, GUARD_BYTE, o->bytes);
    int64_t e = 0;
    for (int64_t i0 = 0; i0 < shape[0]; i0++)
        for (int64_t i1 = 0; i1 < shape[1]; i1++)
            for (int64_t i2 = 0; i2 < shape[2]; i2++)
                for (int64_t i3 = 0; i3 < shape[3]; i3++)
                    o->elem_offsets[e++] = (int64_t)o->offset + i0 * o->stride[0] + i1 * o->stride[1] +
                                           i2 * o->stride[2] + i3 * o->stride[3];
    return true;
}

/* A q8_0 cache [B, Hkv, S, D], contiguous rows of D / 32 blocks, as an operand whose
 * "elements" are its blocks (operand_get/set do not apply: the test writes the image); odd: the
 * view starts one byte off the buffer's alignment. */
static bool q8_cache_init(operand *o, const int64_t shape[4], bool odd)
{
    memset(o, 0, sizeof *o);
    const int64_t bb = (int64_t)sizeof(mlxn_block_q8_0), nb = shape[3] / MLXN_QK;
    o->dtype = MLXN_DTYPE_Q8_0;
    o->ndim = 4;
    memcpy(o->shape, shape, 4 * sizeof shape[0]);
    o->stride[3] = bb;
    o->stride[2] = nb * bb;
    o->stride[1] = shape[2] * o->stride[2];
    o->stride[0] = shape[1] * o->stride[1];
    o->offset = GUARD_BYTES + (odd ? 1 : 0);
    o->bytes = (size_t)(shape[0] * o->stride[0]) + 2 * GUARD_BYTES + 1;
    o->numel = shape[0] * shape[1] * shape[2] * nb;
    o->image = malloc(o->bytes);
    o->elem_offsets = malloc((size_t)(o->numel ? o->numel : 1) * sizeof(int64_t));
    if (!o->image || !o->elem_offsets)
        return false;
    memset(o->image, GUARD_BYTE, o->bytes);
    for (int64_t e = 0; e < o->numel; e++)
        o->elem_offsets[e] = (int64_t)o->offset + e * bb;
    return true;
}

/* Row (b, h, slot) of a q8_0 cache operand. */
static uint8_t *q8_row(const operand *o, int64_t b, int64_t h, int64_t slot)
{
    return o->image + o->offset + b * o->stride[0] + h * o->stride[1] + slot * o->stride[2];
}

static void at_operands_free(at_operands *o)
{
    operand_free(&o->q);
    operand_free(&o->k);
    operand_free(&o->v);
    operand_free(&o->vabs);
    operand_free(&o->pos);
    operand_free(&o->mask);
    operand_free(&o->sinks);
    operand_free(&o->o);
}

static bool at_call(const at_case *c, const at_operands *o, test_device *dev, bool use_vabs, operand *out, char *why,
                    size_t cap)
{
    placed q = {0}, k = {0}, v = {0}, pos = {0}, mask = {0}, sinks = {0}, po = {0};
    bool ok = false;
    if (!operand_place(&o->q, dev, &q) || !operand_place(&o->k, dev, &k) ||
        !operand_place(use_vabs ? &o->vabs : &o->v, dev, &v) || !operand_place(&o->pos, dev, &pos) ||
        !operand_place(&o->mask, dev, &mask) || !operand_place(&o->sinks, dev, &sinks) ||
        !operand_place(&o->o, dev, &po)) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    mlxn_attention_params p = mlxn_attention_params_default();
    p.scale = o->scale;
    p.softcap = o->softcap;
    p.causal = !(c->features & AT_NONCAUSAL);
    p.window = c->features & AT_WINDOW ? c->window : 0;
    p.mask = c->features & AT_MASK ? &mask.view : NULL;
    p.sinks = c->features & AT_SINKS ? &sinks.view : NULL;
    mlxn_status st = mlxn_attention(dev->stream, &q.view, &k.view, &v.view, &pos.view, &p, &po.view);
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(&po, dev, &o->o, out)) {
        snprintf(why, cap, "fetching o: %s", mlxn_last_error());
        goto done;
    }
    ok = true;
done:
    placed_free(&q);
    placed_free(&k);
    placed_free(&v);
    placed_free(&pos);
    placed_free(&mask);
    placed_free(&sinks);
    placed_free(&po);
    return ok;
}

static bool at_run_fn(void *ctx, test_device *dev, operand *out, char *why, size_t cap)
{
    const at_run *r = ctx;
    return at_call(r->c, r->ops, dev, r->use_vabs, out, why, cap);
}

/* Unit roundoff of a dtype: half the distance from 1 to the next value. */
static double unit_roundoff(mlxn_dtype dt)
{
    return dt == MLXN_DTYPE_BF16 ? 0x1p-8 : dt == MLXN_DTYPE_F16 ? 0x1p-11 : 0x1p-24;
}

#define AT_Q_SIGMA 3.0 /* q ~ N(0, 3^2), k ~ N(0, 1), scale 1/sqrt(D): logits ~ N(0, 9) */

/* Error bounds relative to sum_j p_j |v_jd|.
 * f32 arithmetic (the CPU and the CUDA SIMT paths): the logits carry the f32 rounding of a
 * D-term dot product (~1e-7 relative, logits up to ~15 in size: ~1e-6 absolute, which is the
 * relative error of the weights), the exp and the sums another few 1e-7; then o is rounded to
 * its dtype, as is the oracle's: the two may land one ulp apart (2 u of o's dtype). */
static double tol_f32_path(const at_case *c)
{
    return 2e-5 + 2.0 * unit_roundoff(c->qdt);
}

/* CUDA tensor-core path: as above, plus the weights p rounded to the cache's 16-bit type before
 * the product with V (u_kv relative each, at most u_kv of the bound), plus, when q is rounded
 * to the cache's type (q f32, or f16 q with a bf16 cache), the logit errors that rounding
 * causes: each z_j moves by about u_kv / sqrt(3) * scale * ||q o k_j|| ~ u_kv * 3 / sqrt(3)
 * (standard deviation, q ~ N(0, 9)); a weight moves by its logit error minus the weighted mean
 * error, so o moves by at most twice the largest logit error relative to the bound: 4.5
 * standard deviations over the ~10^5 logits of a case. */
static double tol_tensor_core_path(const at_case *c)
{
    const double ukv = unit_roundoff(c->kvdt);
    const bool q_rounded = c->qdt == MLXN_DTYPE_F32 || (c->qdt == MLXN_DTYPE_F16 && c->kvdt == MLXN_DTYPE_BF16);
    const double dz = q_rounded ? 4.5 * ukv * AT_Q_SIGMA / sqrt(3.0) : 0.0;
    return tol_f32_path(c) + ukv + 2.0 * dz;
}

static void case_name(const at_case *c, char *name, size_t cap)
{
    snprintf(name, cap, "attention/B%lld/T%lld/H%lld:%lld/S%lld/D%lld/q_%s/kv_%s%s%s%s%s%s%s%s%s%s%s",
             (long long)c->B, (long long)c->Tq, (long long)c->Hq, (long long)c->Hkv, (long long)c->S,
             (long long)c->D, mlxn_dtype_name(c->qdt), mlxn_dtype_name(c->kvdt),
             c->features & AT_NONCAUSAL ? "/noncausal" : "/causal", c->features & AT_MASK ? "/mask" : "",
             c->features & AT_SINKS ? "/sinks" : "", c->features & AT_SOFTCAP ? "/softcap" : "",
             c->features & AT_WINDOW ? "/window" : "", c->features & AT_FUSED_Q ? "/fused-q" : "",
             c->features & AT_PERMUTED_O ? "/permuted-o" : "", c->features & AT_BAD_POS ? "/bad-pos" : "",
             c->features & AT_ODD_KV ? "/odd-kv" : "", c->features & AT_PEAK ? "/peak" : "");
}

/* q8_0 caches: valid rows are the reference quantizer's blocks of N(0, 1) rows; |v| is v with
 * the codes' signs dropped (the scale is positive: exactly the dequantized |v|). The blocks of
 * slots past a row's valid keys have a NaN scale, so each of their values is NaN. */
static bool fill_q8_caches(const at_case *c, at_operands *o, rng *g)
{
    float *x = malloc((size_t)c->D * sizeof *x);
    if (!x)
        return false;
    const int64_t row_bytes = o->k.stride[2];
    for (int64_t b = 0; b < c->B; b++) {
        const int64_t p = (int64_t)operand_get(&o->pos, b);
        for (int64_t h = 0; h < c->Hkv; h++)
            for (int64_t slot = 0; slot < c->S; slot++) {
                uint8_t *k = q8_row(&o->k, b, h, slot), *v = q8_row(&o->v, b, h, slot),
                        *va = q8_row(&o->vabs, b, h, slot);
                if (slot < p + c->Tq) {
                    for (int64_t d = 0; d < c->D; d++)
                        x[d] = (float)rng_normal(g);
                    (void)mlxn_ggml_quantize(MLXN_DTYPE_Q8_0, x, c->D, k);
                    for (int64_t d = 0; d < c->D; d++)
                        x[d] = (float)rng_normal(g);
                    (void)mlxn_ggml_quantize(MLXN_DTYPE_Q8_0, x, c->D, v);
                    memcpy(va, v, (size_t)row_bytes);
                    for (int64_t blk = 0; blk < c->D / MLXN_QK; blk++)
                        for (int j = 0; j < MLXN_QK; j++) {
                            int8_t *q = (int8_t *)(va + blk * (int64_t)sizeof(mlxn_block_q8_0) + 2 + j);
                            *q = (int8_t)(*q < 0 ? -*q : *q);
                        }
                } else {
                    for (int64_t i = 0; i < row_bytes; i++)
                        k[i] = v[i] = va[i] = (uint8_t)rng_next(g);
                    for (int64_t blk = 0; blk < c->D / MLXN_QK; blk++) {
                        const uint16_t nan16 = 0x7e00;
                        const int64_t at = blk * (int64_t)sizeof(mlxn_block_q8_0);
                        memcpy(k + at, &nan16, 2);
                        memcpy(v + at, &nan16, 2);
                        memcpy(va + at, &nan16, 2);
                    }
                }
            }
    }
    free(x);
    return true;
}

static void run_case(const at_case *c, test_devices *devs, rng *g)
{
    char name[300], why[512];
    case_name(c, name, sizeof name);
    at_operands o;
    memset(&o, 0, sizeof o);
    const int64_t qs[4] = {c->B, c->Tq, c->Hq, c->D}, kvs[4] = {c->B, c->Hkv, c->S, c->D};
    const int64_t ms[2] = {c->Tq, c->S}, bs[1] = {c->B}, hs[1] = {c->Hq};
    const bool q8 = c->kvdt == MLXN_DTYPE_Q8_0;
    bool ok = (c->features & AT_FUSED_Q) ? fused_view(&o.q, c->qdt, qs, c->Hq + 2 * c->Hkv)
                                         : operand_init(&o.q, c->qdt, 4, qs, 0, false);
    const bool odd = (c->features & AT_ODD_KV) != 0;
    ok = ok && (q8 ? q8_cache_init(&o.k, kvs, odd) && q8_cache_init(&o.v, kvs, odd) && q8_cache_init(&o.vabs, kvs, odd)
                   : operand_init(&o.k, c->kvdt, 4, kvs, 0, false) && operand_init(&o.v, c->kvdt, 4, kvs, 0, false) &&
                         operand_init(&o.vabs, c->kvdt, 4, kvs, 0, false)) &&
         operand_init(&o.pos, MLXN_DTYPE_I32, 1, bs, 0, false) &&
         operand_init(&o.mask, MLXN_DTYPE_F32, 2, ms, 0, false) &&
         operand_init(&o.sinks, MLXN_DTYPE_F32, 1, hs, 0, false) &&
         operand_init(&o.o, c->qdt, 4, qs, 0, (c->features & AT_PERMUTED_O) != 0);
    if (!ok) {
        harness_fail(name, "out of memory");
        goto done;
    }
    o.scale = (float)(1.0 / sqrt((double)c->D));
    o.softcap = c->features & AT_SOFTCAP ? 4.0f : 0.0f;
    /* positions: random per row, the last row filling the cache to its final slot */
    int64_t longest = 0;
    for (int64_t b = 0; b < c->B; b++) {
        int64_t p = c->pos_hint >= 0 ? c->pos_hint : b == c->B - 1 ? c->S - c->Tq : rng_int(g, 0, c->S - c->Tq);
        if (c->features & AT_BAD_POS) {
            if (b == 1)
                p = c->S - c->Tq + 1;
            else if (b == 2)
                p = -1;
        }
        operand_set(&o.pos, b, (double)p);
        if (p >= 0 && p + c->Tq <= c->S && p + c->Tq > longest)
            longest = p + c->Tq;
    }
    const double q_sigma = c->features & AT_PEAK ? AT_Q_SIGMA / 100.0 : AT_Q_SIGMA;
    for (int64_t i = 0; i < o.q.numel; i++)
        operand_set(&o.q, i, rng_normal(g) * q_sigma);
    /* cache slots past each row's valid keys hold NaN */
    if (q8 && !fill_q8_caches(c, &o, g)) {
        harness_fail(name, "out of memory");
        goto done;
    }
    for (int64_t i = 0; !q8 && i < o.k.numel; i++) {
        const int64_t slot = (i / c->D) % c->S, b = i / (c->Hkv * c->S * c->D);
        const int64_t p = (int64_t)operand_get(&o.pos, b);
        const bool valid = slot < p + c->Tq;
        const double v = rng_normal(g);
        operand_set(&o.k, i, valid ? rng_normal(g) : NAN);
        operand_set(&o.v, i, valid ? v : NAN);
        operand_set(&o.vabs, i, valid ? fabs(v) : NAN);
    }
    /* mask: a fifth of the entries -inf, all of row 1 (its queries see nothing), NaN past the
     * longest row's keys */
    int64_t shortest = c->S;
    for (int64_t b = 0; b < c->B; b++)
        shortest = operand_get(&o.pos, b) < shortest ? (int64_t)operand_get(&o.pos, b) : shortest;
    for (int64_t i = 0; i < o.mask.numel; i++) {
        const int64_t t = i / c->S, j = i % c->S;
        double m = rng_uniform(g) < 0.2 || (t == 1 && c->Tq > 2) ? -INFINITY : rng_normal(g) * 2.0;
        if (c->features & AT_PEAK) /* the peak: a key every batch row's query t sees */
            m = j == (shortest > 3 ? shortest - 3 : 0) + t ? 18.0 : 0.0;
        operand_set(&o.mask, i, j < longest ? m : NAN);
    }
    for (int64_t i = 0; i < o.sinks.numel; i++)
        operand_set(&o.sinks, i, rng_normal(g) * 2.0 + 1.0);
    operand_poison(&o.o);

    operand bound_op;
    at_run rb = {c, &o, true};
    if (!at_run_fn(&rb, &devs->ref, &bound_op, why, sizeof why)) {
        harness_fail(name, "reference with |v|: %s", why);
        goto done;
    }
    double *bound = malloc((size_t)o.o.numel * sizeof *bound);
    if (bound)
        for (int64_t i = 0; i < o.o.numel; i++)
            bound[i] = operand_get(&bound_op, i);
    operand_free(&bound_op);
    const int64_t rows = c->Hq / c->Hkv * c->Tq;
    const double tol_cuda = mlxn_cuda_attention_on_tensor_cores(c->kvdt, c->D, rows) ? tol_tensor_core_path(c)
                                                                                       : tol_f32_path(c);
    at_run r = {c, &o, false};
    harness_run_bound_case(name, devs, at_run_fn, &r, bound, tol_f32_path(c), tol_cuda);
    free(bound);
done:
    at_operands_free(&o);
}

/* ---------------------------------------------------------------- kv_append */

typedef struct kv_case {
    int64_t B, T, H, S, D;
    mlxn_dtype sdt, cdt;
    int64_t pad; /* src rows padded (a strided view) */
    bool odd;    /* q8_0: the cache one byte off the buffer's alignment */
} kv_case;

/* Appends src at pos into a copy of cache placed on dev and fetches that copy into got (zeroed
 * first); false with the error in mlxn_last_error when a step fails. */
static bool append_on(test_device *dev, const operand *src, const operand *pos, const operand *cache, operand *got)
{
    placed ps = {0}, pp = {0}, pc = {0};
    memset(got, 0, sizeof *got);
    bool ok = operand_place(src, dev, &ps) && operand_place(pos, dev, &pp) && operand_place(cache, dev, &pc);
    ok = ok && mlxn_kv_append(dev->stream, &ps.view, &pp.view, &pc.view) == MLXN_STATUS_OK &&
         placed_fetch(&pc, dev, cache, got);
    placed_free(&ps);
    placed_free(&pp);
    placed_free(&pc);
    return ok;
}

static void run_kv_case(const kv_case *c, test_devices *devs, rng *g)
{
    char name[200], full[280], why[512];
    snprintf(name, sizeof name, "kv_append/B%lld/T%lld/H%lld/S%lld/D%lld/%s_to_%s%s", (long long)c->B, (long long)c->T,
             (long long)c->H, (long long)c->S, (long long)c->D, mlxn_dtype_name(c->sdt), mlxn_dtype_name(c->cdt),
             c->pad ? "/strided" : "");
    operand src, pos, cache;
    const int64_t ss[4] = {c->B, c->T, c->H, c->D}, cs[4] = {c->B, c->H, c->S, c->D}, bs[1] = {c->B};
    memset(&src, 0, sizeof src);
    memset(&pos, 0, sizeof pos);
    memset(&cache, 0, sizeof cache);
    if (!operand_init(&src, c->sdt, 4, ss, c->pad, false) || !operand_init(&pos, MLXN_DTYPE_I32, 1, bs, 0, false) ||
        !operand_init(&cache, c->cdt, 4, cs, 0, false)) {
        harness_fail(name, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < src.numel; i++)
        operand_set(&src, i, rng_normal(g) * 10.0);
    for (int64_t i = 0; i < cache.numel; i++)
        operand_set(&cache, i, rng_normal(g));
    /* row 0 linear, row 1 wrapping around the ring's end, row 2 negative (left unwritten) */
    for (int64_t b = 0; b < c->B; b++) {
        const int64_t p = b == 0 ? rng_int(g, 0, c->S - c->T) : b == 1 ? c->S - c->T / 2 - 1 + 3 * c->S : -5;
        operand_set(&pos, b, (double)p);
    }
    operand want = {0};
    bool have_want = false;
    for (int d = -1; d < devs->count; d++) {
        test_device *dev = d < 0 ? &devs->ref : &devs->list[d];
        operand got = {0};
        const bool ok = append_on(dev, &src, &pos, &cache, &got);
        snprintf(full, sizeof full, "%s @%s", name, dev->name);
        if (!ok)
            harness_fail(full, "%s", mlxn_last_error());
        else if (d < 0) {
            want = got;
            have_want = true;
            memset(&got, 0, sizeof got);
        } else if (!have_want)
            harness_fail(full, "no reference result");
        /* the conversions round to nearest even everywhere: exact */
        else if (!compare_operands(&got, &want, (tolerance){0, 0, "exact"}, why, sizeof why))
            harness_fail(full, "%s", why);
        else
            harness_pass(full);
        operand_free(&got);
    }
    operand_free(&want);
done:
    operand_free(&src);
    operand_free(&pos);
    operand_free(&cache);
}

/* A q8_0 cache: the cache image starts as random bytes (blocks nobody may touch), and every
 * device's image must equal, byte for byte, that image with the rows of batch rows with pos >= 0
 * replaced by the reference quantizer's blocks (mlxn_ggml_quantize) of the source rows, as f32
 * (f16 and bf16 sources widened, exactly) at slots (pos + t) % S. Some source blocks are all
 * zeros (scale 0). */
static void run_kv_q8_case(const kv_case *c, test_devices *devs, rng *g)
{
    char name[200], full[280];
    snprintf(name, sizeof name, "kv_append/B%lld/T%lld/H%lld/S%lld/D%lld/%s_to_q8_0%s%s", (long long)c->B,
             (long long)c->T, (long long)c->H, (long long)c->S, (long long)c->D, mlxn_dtype_name(c->sdt),
             c->pad ? "/strided" : "", c->odd ? "/odd-cache" : "");
    operand src, pos, cache;
    const int64_t ss[4] = {c->B, c->T, c->H, c->D}, cs[4] = {c->B, c->H, c->S, c->D}, bs[1] = {c->B};
    memset(&src, 0, sizeof src);
    memset(&pos, 0, sizeof pos);
    memset(&cache, 0, sizeof cache);
    uint8_t *want = NULL;
    float *x = malloc((size_t)c->D * sizeof *x);
    if (!x || !operand_init(&src, c->sdt, 4, ss, c->pad, false) || !operand_init(&pos, MLXN_DTYPE_I32, 1, bs, 0, false) ||
        !q8_cache_init(&cache, cs, c->odd) || !(want = malloc(cache.bytes))) {
        harness_fail(name, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < src.numel; i++)
        operand_set(&src, i, (i / 32) % 7 == 3 ? 0.0 : rng_normal(g) * 10.0);
    for (size_t i = 0; i < cache.bytes; i++)
        cache.image[i] = (uint8_t)rng_next(g);
    /* row 0 linear, row 1 wrapping around the ring's end, row 2 negative (left unwritten) */
    for (int64_t b = 0; b < c->B; b++) {
        const int64_t p = b == 0 ? rng_int(g, 0, c->S - c->T) : b == 1 ? c->S - c->T / 2 - 1 + 3 * c->S : -5;
        operand_set(&pos, b, (double)p);
    }
    memcpy(want, cache.image, cache.bytes);
    for (int64_t b = 0; b < c->B; b++) {
        const int64_t p = (int64_t)operand_get(&pos, b);
        for (int64_t t = 0; p >= 0 && t < c->T; t++)
            for (int64_t h = 0; h < c->H; h++) {
                for (int64_t d = 0; d < c->D; d++)
                    x[d] = (float)operand_get(&src, ((b * c->T + t) * c->H + h) * c->D + d);
                (void)mlxn_ggml_quantize(MLXN_DTYPE_Q8_0, x, c->D, want + (q8_row(&cache, b, h, (p + t) % c->S) - cache.image));
            }
    }
    for (int d = -1; d < devs->count; d++) {
        test_device *dev = d < 0 ? &devs->ref : &devs->list[d];
        operand got = {0};
        const bool ok = append_on(dev, &src, &pos, &cache, &got);
        snprintf(full, sizeof full, "%s @%s", name, dev->name);
        if (!ok) {
            harness_fail(full, "%s", mlxn_last_error());
        } else {
            size_t first_bad = cache.bytes;
            for (size_t i = 0; i < cache.bytes && first_bad == cache.bytes; i++)
                if (got.image[i] != want[i])
                    first_bad = i;
            if (first_bad == cache.bytes)
                harness_pass(full);
            else
                harness_fail(full, "byte %zu of the cache image is 0x%02x, expected 0x%02x (row %lld of the cache)",
                             first_bad, got.image[first_bad], want[first_bad],
                             (long long)(((int64_t)first_bad - (int64_t)cache.offset) / cache.stride[2]));
        }
        operand_free(&got);
    }
done:
    free(x);
    free(want);
    operand_free(&src);
    operand_free(&pos);
    operand_free(&cache);
}

/* ---------------------------------------------------------------- a captured decode loop */

/* Per device: K and V rows appended and attention run, captured once in a graph (on a fresh
 * stream, and on one that ran the step eagerly first) and replayed at positions that move
 * between launches (positions live in a device buffer). Each step's output is compared with
 * the oracle's eager run of the same step. */
static void decode_graph_case(test_devices *devs, rng *g, mlxn_dtype kvdt, bool eager_first)
{
    enum { B = 2, HQ = 8, HKV = 2, S = 1500, D = 128, STEPS = 4, ROW_GAP = 3 };
    const mlxn_dtype qdt = MLXN_DTYPE_F32;
    const int64_t qs[4] = {B, 1, HQ, D}, ns[4] = {B, 1, HKV, D}, cs[4] = {B, HKV, S, D}, bs[1] = {B};
    /* f16: 2 bytes an element; q8_0: 34 bytes a block of 32 */
    const size_t row_bytes = kvdt == MLXN_DTYPE_Q8_0 ? D / 32 * 34 : D * 2;
    const size_t qbytes = (size_t)(B * HQ * D) * 4, nbytes = (size_t)(B * HKV * D) * 4,
                 cbytes = (size_t)(B * HKV * S) * row_bytes;
    /* one buffer per device: q | k_new | v_new | pos | o | k cache | v cache */
    const size_t off_q = 0, off_kn = off_q + qbytes, off_vn = off_kn + nbytes, off_pos = off_vn + nbytes,
                 off_o = off_pos + 256, off_kc = off_o + qbytes, off_vc = off_kc + cbytes, total = off_vc + cbytes;
    float *hq = malloc(qbytes), *hk = malloc(nbytes), *hv = malloc(nbytes), *hwant = malloc(qbytes),
          *hgot = malloc(qbytes);
    uint16_t *hcache = malloc(cbytes);
    int32_t hpos[B];
    char name[160];
    test_device *ref = &devs->ref;
    if (!hq || !hk || !hv || !hwant || !hgot || !hcache) {
        harness_fail("attention/graph-decode", "out of memory");
        goto done;
    }
    /* caches start as NaN (f16 NaNs; for q8_0 every block's scale is one): only appended rows
     * may be read */
    for (size_t i = 0; i < cbytes / 2; i++)
        hcache[i] = 0x7e00;
    for (int dv = 0; dv < devs->count; dv++) {
        test_device *td = &devs->list[dv];
        snprintf(name, sizeof name, "attention/graph-decode/kv_%s%s @%s", mlxn_dtype_name(kvdt),
                 eager_first ? "/after-eager" : "/fresh-stream", td->name);
        mlxn_stream *s = NULL;
        mlxn_buffer *buf[2] = {NULL, NULL}; /* [0]: the oracle's, [1]: the device's */
        mlxn_graph *graph = NULL;
        bool ok = mlxn_stream_create(td->device, &s) == MLXN_STATUS_OK &&
                  mlxn_buffer_create(ref->device, total, &buf[0]) == MLXN_STATUS_OK &&
                  mlxn_buffer_create(td->device, total, &buf[1]) == MLXN_STATUS_OK;
        mlxn_tensor tq[2], tkn[2], tvn[2], tpos[2], to[2], tkc[2], tvc[2];
        for (int w = 0; ok && w < 2; w++) {
            tq[w] = mlxn_tensor_make(buf[w], off_q, qdt, 4, qs);
            tkn[w] = mlxn_tensor_make(buf[w], off_kn, MLXN_DTYPE_F32, 4, ns);
            tvn[w] = mlxn_tensor_make(buf[w], off_vn, MLXN_DTYPE_F32, 4, ns);
            tpos[w] = mlxn_tensor_make(buf[w], off_pos, MLXN_DTYPE_I32, 1, bs);
            to[w] = mlxn_tensor_make(buf[w], off_o, qdt, 4, qs);
            tkc[w] = mlxn_tensor_make(buf[w], off_kc, kvdt, 4, cs);
            tvc[w] = mlxn_tensor_make(buf[w], off_vc, kvdt, 4, cs);
            ok = mlxn_buffer_upload(buf[w], off_kc, hcache, cbytes, NULL) == MLXN_STATUS_OK &&
                 mlxn_buffer_upload(buf[w], off_vc, hcache, cbytes, NULL) == MLXN_STATUS_OK;
        }
        mlxn_attention_params p = mlxn_attention_params_default();
        p.scale = 1.0f / sqrtf((float)D);
        /* the caches filled up to `filled` on both sides by one append of a prefill's rows; row b
         * then decodes from start + ROW_GAP * b, so every slot below a row's position is written */
        const int start = 1000 + (int)rng_int(g, 0, 50), filled = start + ROW_GAP * (B - 1);
        const int64_t ps[4] = {B, filled, HKV, D};
        const size_t pbytes = (size_t)(B * filled * HKV * D) * 4;
        float *hp = malloc(pbytes);
        ok = ok && hp;
        for (int b = 0; b < B; b++)
            hpos[b] = 0;
        for (int w = 0; ok && w < 2; w++) {
            mlxn_stream *ss = w ? s : ref->stream;
            mlxn_buffer *pb = NULL;
            ok = mlxn_buffer_create(w ? td->device : ref->device, pbytes, &pb) == MLXN_STATUS_OK &&
                 mlxn_buffer_upload(buf[w], off_pos, hpos, sizeof hpos, NULL) == MLXN_STATUS_OK;
            for (int kv = 0; ok && kv < 2; kv++) {
                rng same = {.s = 0x5eedu + (uint64_t)kv}; /* the same rows on both sides */
                for (size_t i = 0; i < pbytes / 4; i++)
                    hp[i] = (float)rng_normal(&same);
                mlxn_tensor src = mlxn_tensor_make(pb, 0, MLXN_DTYPE_F32, 4, ps);
                ok = mlxn_buffer_upload(pb, 0, hp, pbytes, NULL) == MLXN_STATUS_OK &&
                     mlxn_kv_append(ss, &src, &tpos[w], kv ? &tvc[w] : &tkc[w]) == MLXN_STATUS_OK &&
                     mlxn_stream_sync(ss) == MLXN_STATUS_OK;
            }
            mlxn_buffer_free(pb);
        }
        free(hp);
        if (ok && eager_first) {
            /* an eager attention first (on CUDA it sets up the stream's split scratch) */
            for (int b = 0; b < B; b++)
                hpos[b] = start - 1;
            ok = mlxn_buffer_upload(buf[1], off_pos, hpos, sizeof hpos, NULL) == MLXN_STATUS_OK &&
                 mlxn_attention(s, &tq[1], &tkc[1], &tvc[1], &tpos[1], &p, &to[1]) == MLXN_STATUS_OK &&
                 mlxn_stream_sync(s) == MLXN_STATUS_OK;
        }
        ok = ok && mlxn_stream_begin_capture(s) == MLXN_STATUS_OK &&
             mlxn_kv_append(s, &tkn[1], &tpos[1], &tkc[1]) == MLXN_STATUS_OK &&
             mlxn_kv_append(s, &tvn[1], &tpos[1], &tvc[1]) == MLXN_STATUS_OK &&
             mlxn_attention(s, &tq[1], &tkc[1], &tvc[1], &tpos[1], &p, &to[1]) == MLXN_STATUS_OK &&
             mlxn_stream_end_capture(s, &graph) == MLXN_STATUS_OK;
        double worst = 0;
        for (int step = 0; ok && step < STEPS; step++) {
            for (int b = 0; b < B; b++)
                hpos[b] = start + ROW_GAP * b + step;
            for (size_t i = 0; i < qbytes / 4; i++)
                hq[i] = (float)(rng_normal(g) * AT_Q_SIGMA);
            for (size_t i = 0; i < nbytes / 4; i++) {
                hk[i] = (float)rng_normal(g);
                hv[i] = (float)rng_normal(g);
            }
            for (int w = 0; ok && w < 2; w++)
                ok = mlxn_buffer_upload(buf[w], off_q, hq, qbytes, NULL) == MLXN_STATUS_OK &&
                     mlxn_buffer_upload(buf[w], off_kn, hk, nbytes, NULL) == MLXN_STATUS_OK &&
                     mlxn_buffer_upload(buf[w], off_vn, hv, nbytes, NULL) == MLXN_STATUS_OK &&
                     mlxn_buffer_upload(buf[w], off_pos, hpos, sizeof hpos, NULL) == MLXN_STATUS_OK;
            /* the oracle runs the step eagerly */
            ok = ok && mlxn_kv_append(ref->stream, &tkn[0], &tpos[0], &tkc[0]) == MLXN_STATUS_OK &&
                 mlxn_kv_append(ref->stream, &tvn[0], &tpos[0], &tvc[0]) == MLXN_STATUS_OK &&
                 mlxn_attention(ref->stream, &tq[0], &tkc[0], &tvc[0], &tpos[0], &p, &to[0]) == MLXN_STATUS_OK &&
                 mlxn_buffer_download(buf[0], off_o, hwant, qbytes, NULL) == MLXN_STATUS_OK;
            ok = ok && mlxn_graph_launch(graph, s) == MLXN_STATUS_OK && mlxn_stream_sync(s) == MLXN_STATUS_OK &&
                 mlxn_buffer_download(buf[1], off_o, hgot, qbytes, NULL) == MLXN_STATUS_OK;
            /* |o| <= max |v| over the keys, below 6 for these N(0, 1) draws: the scale of the error */
            for (size_t i = 0; ok && i < qbytes / 4; i++) {
                const double e = fabs((double)hgot[i] - (double)hwant[i]) / 6.0;
                if (!(e <= worst))
                    worst = e;
            }
        }
        if (!ok)
            harness_fail(name, "%s", mlxn_last_error());
        /* the cache values (f16, or q8_0 quantized bit for bit alike on both sides) are exact in
         * f32: f32 arithmetic only */
        else if (!(worst <= 1e-5))
            harness_fail(name, "error %.3g relative to max |v| (bound 1e-5)", worst);
        else
            harness_pass(name);
        mlxn_graph_free(graph);
        mlxn_buffer_free(buf[0]);
        mlxn_buffer_free(buf[1]);
        mlxn_stream_free(s);
    }
done:
    free(hq);
    free(hk);
    free(hv);
    free(hwant);
    free(hgot);
    free(hcache);
}

/* ---------------------------------------------------------------- errors */

static void attention_error_cases(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 20, &b) != MLXN_STATUS_OK)
        return;
    const int64_t qs[4] = {2, 3, 8, 64}, ks[4] = {2, 2, 16, 64}, k3[4] = {2, 3, 16, 64}, kd[4] = {2, 2, 16, 32};
    const int64_t q3[3] = {3, 8, 64}, bs[1] = {2}, ms[2] = {3, 16}, mbad[2] = {3, 15}, hs[1] = {8}, hbad[1] = {4};
    const int64_t qbig[4] = {1, 1, 1, 1024}, kbig[4] = {1, 1, 4, 1024}, b1[1] = {1};
    mlxn_tensor q = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 4, qs);
    mlxn_tensor o = mlxn_tensor_make(b, 65536, MLXN_DTYPE_F32, 4, qs);
    mlxn_tensor o16 = mlxn_tensor_make(b, 65536, MLXN_DTYPE_F16, 4, qs);
    mlxn_tensor k = mlxn_tensor_make(b, 131072, MLXN_DTYPE_F16, 4, ks);
    mlxn_tensor v = mlxn_tensor_make(b, 196608, MLXN_DTYPE_F16, 4, ks);
    mlxn_tensor v32 = mlxn_tensor_make(b, 196608, MLXN_DTYPE_F32, 4, ks);
    mlxn_tensor kh3 = mlxn_tensor_make(b, 131072, MLXN_DTYPE_F16, 4, k3);
    mlxn_tensor kd32 = mlxn_tensor_make(b, 131072, MLXN_DTYPE_F16, 4, kd);
    mlxn_tensor qt3 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 3, q3);
    mlxn_tensor pos = mlxn_tensor_make(b, 262144, MLXN_DTYPE_I32, 1, bs);
    mlxn_tensor posf = mlxn_tensor_make(b, 262144, MLXN_DTYPE_F32, 1, bs);
    mlxn_tensor pos1 = mlxn_tensor_make(b, 262144, MLXN_DTYPE_I32, 1, b1);
    mlxn_tensor mask = mlxn_tensor_make(b, 327680, MLXN_DTYPE_F32, 2, ms);
    mlxn_tensor maskbad = mlxn_tensor_make(b, 327680, MLXN_DTYPE_F32, 2, mbad);
    mlxn_tensor mask16 = mlxn_tensor_make(b, 327680, MLXN_DTYPE_F16, 2, ms);
    mlxn_tensor sinks = mlxn_tensor_make(b, 393216, MLXN_DTYPE_F32, 1, hs);
    mlxn_tensor sinksbad = mlxn_tensor_make(b, 393216, MLXN_DTYPE_F32, 1, hbad);
    mlxn_tensor qb = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 4, qbig);
    mlxn_tensor ob = mlxn_tensor_make(b, 65536, MLXN_DTYPE_F32, 4, qbig);
    mlxn_tensor kb = mlxn_tensor_make(b, 131072, MLXN_DTYPE_F16, 4, kbig);
    mlxn_attention_params p = mlxn_attention_params_default();
    mlxn_stream *s = dev->stream;
    harness_expect_status("attention/error/group-ratio", mlxn_attention(s, &q, &kh3, &kh3, &pos, &p, &o),
                          MLXN_STATUS_ERR_SHAPE, "Hq a multiple of Hkv");
    harness_expect_status("attention/error/head-dim", mlxn_attention(s, &q, &kd32, &kd32, &pos, &p, &o),
                          MLXN_STATUS_ERR_SHAPE, "head dim 32, q has head dim 64");
    harness_expect_status("attention/error/pos-dtype", mlxn_attention(s, &q, &k, &v, &posf, &p, &o),
                          MLXN_STATUS_ERR_DTYPE, "pos is f32, expected i32");
    harness_expect_status("attention/error/pos-shape", mlxn_attention(s, &q, &k, &v, &pos1, &p, &o),
                          MLXN_STATUS_ERR_SHAPE, "expected [2]");
    harness_expect_status("attention/error/kv-dtypes", mlxn_attention(s, &q, &k, &v32, &pos, &p, &o),
                          MLXN_STATUS_ERR_DTYPE, "v is f32, k is f16");
    harness_expect_status("attention/error/o-dtype", mlxn_attention(s, &q, &k, &v, &pos, &p, &o16),
                          MLXN_STATUS_ERR_DTYPE, "o is f16, q is f32");
    harness_expect_status("attention/error/q-dims", mlxn_attention(s, &qt3, &k, &v, &pos, &p, &o),
                          MLXN_STATUS_ERR_SHAPE, "q has 3 dims, expected 4");
    harness_expect_status("attention/error/null-o", mlxn_attention(s, &q, &k, &v, &pos, &p, NULL),
                          MLXN_STATUS_ERR_INVALID_ARG, "o is NULL");
    harness_expect_status("attention/error/head-dim-limit", mlxn_attention(s, &qb, &kb, &kb, &pos1, &p, &ob),
                          MLXN_STATUS_ERR_UNSUPPORTED, "head dim is 1024");
    p.mask = &maskbad;
    harness_expect_status("attention/error/mask-shape", mlxn_attention(s, &q, &k, &v, &pos, &p, &o),
                          MLXN_STATUS_ERR_SHAPE, "mask has shape 3x15, expected [Tq, S] = [3, 16]");
    p.mask = &mask16;
    harness_expect_status("attention/error/mask-dtype", mlxn_attention(s, &q, &k, &v, &pos, &p, &o),
                          MLXN_STATUS_ERR_DTYPE, "mask is f16, expected f32");
    p.mask = &mask;
    p.sinks = &sinksbad;
    harness_expect_status("attention/error/sinks-shape", mlxn_attention(s, &q, &k, &v, &pos, &p, &o),
                          MLXN_STATUS_ERR_SHAPE, "sinks has shape 4, expected [8] (one per query head)");
    p.sinks = &sinks;
    p.window = -1;
    harness_expect_status("attention/error/window", mlxn_attention(s, &q, &k, &v, &pos, &p, &o),
                          MLXN_STATUS_ERR_INVALID_ARG, "window is -1");
    p.window = 0;
    p.softcap = -2;
    harness_expect_status("attention/error/softcap", mlxn_attention(s, &q, &k, &v, &pos, &p, &o),
                          MLXN_STATUS_ERR_INVALID_ARG, "softcap -2");
    /* q8_0 caches: head dims of whole 32-element blocks; q and o stay float; k and v alike */
    const int64_t q48[4] = {2, 3, 8, 48}, k48[4] = {2, 2, 16, 48};
    mlxn_tensor qd48 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 4, q48);
    mlxn_tensor od48 = mlxn_tensor_make(b, 65536, MLXN_DTYPE_F32, 4, q48);
    mlxn_tensor k8_48 = mlxn_tensor_make(b, 131072, MLXN_DTYPE_Q8_0, 4, k48);
    mlxn_tensor k8 = mlxn_tensor_make(b, 131072, MLXN_DTYPE_Q8_0, 4, ks);
    mlxn_tensor v8 = mlxn_tensor_make(b, 196608, MLXN_DTYPE_Q8_0, 4, ks);
    mlxn_tensor q8q = mlxn_tensor_make(b, 0, MLXN_DTYPE_Q8_0, 4, qs);
    p = mlxn_attention_params_default();
    harness_expect_status("attention/error/q8_0-head-dim", mlxn_attention(s, &qd48, &k8_48, &k8_48, &pos, &p, &od48),
                          MLXN_STATUS_ERR_SHAPE, "k: innermost size 48 is not a multiple of the q8_0 block (32)");
    harness_expect_status("attention/error/q8_0-query", mlxn_attention(s, &q8q, &k8, &v8, &pos, &p, &o),
                          MLXN_STATUS_ERR_DTYPE, "q is q8_0, expected f32, f16 or bf16");
    harness_expect_status("attention/error/q8_0-with-f16", mlxn_attention(s, &q, &k8, &v, &pos, &p, &o),
                          MLXN_STATUS_ERR_DTYPE, "v is f16, k is q8_0");
    mlxn_buffer_free(b);
}

static void kv_error_cases(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_stream *s = dev->stream;
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 20, &b) != MLXN_STATUS_OK)
        return;
    /* src [B, T, Hkv, D] against cache [B, Hkv, S, D] */
    const int64_t src_s[4] = {2, 20, 2, 64}, src_h[4] = {2, 3, 3, 64}, ks[4] = {2, 2, 16, 64}, k3[4] = {2, 3, 16, 64};
    const int64_t bs[1] = {2};
    mlxn_tensor src_long = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 4, src_s);
    mlxn_tensor src_heads = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 4, src_h);
    mlxn_tensor k = mlxn_tensor_make(b, 131072, MLXN_DTYPE_F16, 4, ks);
    mlxn_tensor kh3 = mlxn_tensor_make(b, 131072, MLXN_DTYPE_F16, 4, k3);
    mlxn_tensor pos = mlxn_tensor_make(b, 262144, MLXN_DTYPE_I32, 1, bs);
    mlxn_tensor posf = mlxn_tensor_make(b, 262144, MLXN_DTYPE_F32, 1, bs);
    harness_expect_status("kv_append/error/too-many-rows", mlxn_kv_append(s, &src_long, &pos, &k),
                          MLXN_STATUS_ERR_SHAPE, "src has 20 rows per sequence, the cache only 16 slots");
    harness_expect_status("kv_append/error/heads", mlxn_kv_append(s, &src_heads, &pos, &k), MLXN_STATUS_ERR_SHAPE,
                          "cache has shape 2x2x16x64, expected [2, 3, S, 64]");
    harness_expect_status("kv_append/error/pos-dtype", mlxn_kv_append(s, &src_heads, &posf, &kh3),
                          MLXN_STATUS_ERR_DTYPE, "pos is f32, expected i32");
    /* q8_0: rows of whole 32-element blocks; sources stay float */
    const int64_t src40[4] = {2, 3, 2, 40}, k40[4] = {2, 2, 16, 40}, src64[4] = {2, 3, 2, 64};
    mlxn_tensor s40 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 4, src40);
    mlxn_tensor q40 = mlxn_tensor_make(b, 131072, MLXN_DTYPE_Q8_0, 4, k40);
    mlxn_tensor q64 = mlxn_tensor_make(b, 131072, MLXN_DTYPE_Q8_0, 4, ks);
    mlxn_tensor sq8 = mlxn_tensor_make(b, 0, MLXN_DTYPE_Q8_0, 4, src64);
    harness_expect_status("kv_append/error/q8_0-head-dim", mlxn_kv_append(s, &s40, &pos, &q40), MLXN_STATUS_ERR_SHAPE,
                          "innermost size 40 is not a multiple of the q8_0 block (32)");
    harness_expect_status("kv_append/error/q8_0-source", mlxn_kv_append(s, &sq8, &pos, &q64), MLXN_STATUS_ERR_DTYPE,
                          "src is q8_0, expected f32, f16 or bf16");
    mlxn_buffer_free(b);
}

void test_attention(test_devices *devs, rng *g)
{
    /* shapes: {B, Tq, Hq, Hkv, S, D} */
    static const int64_t shapes[][6] = {
        /* decode */
        {1, 1, 8, 8, 300, 64},   {3, 1, 8, 2, 1000, 128}, {1, 1, 4, 1, 600, 256}, {3, 1, 12, 4, 513, 80},
        {2, 1, 6, 2, 257, 96},   {1, 1, 8, 1, 700, 512},  {3, 1, 16, 2, 2048, 128},
        /* short chunks: up to 8 rows per KV head (the CUDA decode kernel) and past it */
        {3, 2, 8, 2, 777, 128},  {1, 7, 4, 1, 512, 256},  {3, 7, 6, 6, 300, 64},  {1, 2, 2, 1, 200, 512},
        {3, 7, 4, 2, 450, 96},   {1, 7, 10, 2, 333, 80},
        /* prefill chunks */
        {1, 64, 8, 2, 1024, 128}, {3, 130, 4, 1, 700, 64}, {1, 130, 4, 1, 2048, 256}, {3, 64, 8, 8, 256, 80},
        {1, 130, 6, 3, 900, 96},  {1, 64, 2, 1, 512, 512},  {1, 257, 8, 2, 1100, 128},
        /* prefill of D 64, 128 and 256 (CUDA sm_90: the wgmma kernel): batch rows at their own
         * positions, groups of 4, 8 and 3 (row tiles that end inside a group, a warpgroup with
         * no rows); SmolLM2's and Gemma 3's groupings */
        {2, 100, 16, 4, 1500, 128}, {1, 200, 8, 1, 2500, 128}, {3, 50, 12, 4, 400, 128},
        {2, 100, 9, 3, 1500, 64},   {1, 300, 4, 1, 1200, 256},
        /* a group of 16 heads decoding (CUDA: tensor cores, keys split); a head dim no fast
         * kernel takes */
        {1, 1, 16, 1, 3000, 128}, {2, 3, 4, 2, 150, 100},
    };
    static const unsigned combos[] = {
        0,
        AT_MASK | AT_SINKS,
        AT_SOFTCAP | AT_WINDOW,
        AT_NONCAUSAL | AT_MASK,
        AT_WINDOW | AT_SINKS | AT_SOFTCAP | AT_MASK | AT_FUSED_Q,
        AT_FUSED_Q | AT_PERMUTED_O,
        AT_NONCAUSAL | AT_SINKS | AT_PERMUTED_O,
    };
    static const mlxn_dtype dts[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    const size_t n_shapes = sizeof shapes / sizeof shapes[0], n_combos = sizeof combos / sizeof combos[0];
    int k = 0, k8 = 0;
    for (size_t s = 0; s < n_shapes; s++) {
        for (int kv = 0; kv < 3; kv++, k++) {
            at_case c = {shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4], shapes[s][5],
                         dts[(k / 3 + kv) % 3], dts[kv], combos[k % n_combos], 0, -1};
            c.window = c.Tq > 64 ? 100 : 37;
            run_case(&c, devs, g);
        }
        /* a q8_0 cache where the head dim allows one: every q dtype and feature set in turn */
        if (shapes[s][5] % 32 == 0) {
            at_case c = {shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4], shapes[s][5],
                         dts[k8 % 3], MLXN_DTYPE_Q8_0, combos[k8 % n_combos], 0, -1};
            c.window = c.Tq > 64 ? 100 : 37;
            run_case(&c, devs, g);
            k8++;
        }
    }
    /* q8_0 at the smallest head dim, decode and a short chunk; then caches at an odd address,
     * decode and prefill */
    at_case q32 = {3, 1, 8, 2, 333, 32, MLXN_DTYPE_F32, MLXN_DTYPE_Q8_0, AT_MASK | AT_SINKS | AT_WINDOW, 41, -1};
    run_case(&q32, devs, g);
    q32.Tq = 5;
    q32.features = AT_SOFTCAP | AT_NONCAUSAL | AT_PERMUTED_O;
    run_case(&q32, devs, g);
    at_case qodd = {2, 1, 8, 2, 400, 128, MLXN_DTYPE_F16, MLXN_DTYPE_Q8_0, AT_ODD_KV | AT_SINKS, 0, -1};
    run_case(&qodd, devs, g);
    qodd.Tq = 33;
    qodd.features = AT_ODD_KV | AT_WINDOW | AT_MASK;
    qodd.window = 50;
    run_case(&qodd, devs, g);
    /* the CPU's tiles of (query, head) rows: a group of 32 heads (two passes of 16) in a chunk,
     * and windows shorter than a tile's 16 queries (one head a KV head), causal and not */
    at_case tiles = {1, 20, 32, 1, 300, 64, MLXN_DTYPE_F32, MLXN_DTYPE_F32, AT_WINDOW | AT_MASK, 5, -1};
    run_case(&tiles, devs, g);
    tiles = (at_case){2, 40, 2, 2, 300, 64, MLXN_DTYPE_BF16, MLXN_DTYPE_F32, AT_WINDOW | AT_NONCAUSAL, 3, -1};
    run_case(&tiles, devs, g);
    tiles = (at_case){1, 35, 4, 4, 200, 80, MLXN_DTYPE_F32, MLXN_DTYPE_F16, AT_WINDOW | AT_SINKS, 1, -1};
    run_case(&tiles, devs, g);
    /* long-context decode: Gemma 3's MQA (4 query heads over 1 KV head of 256), 8192 slots */
    at_case lc = {1, 1, 4, 1, 8192, 256, MLXN_DTYPE_F32, MLXN_DTYPE_BF16, AT_SOFTCAP, 0, 8000};
    run_case(&lc, devs, g);
    lc.kvdt = MLXN_DTYPE_F16;
    lc.features = AT_WINDOW;
    lc.window = 512;
    run_case(&lc, devs, g);
    lc.kvdt = MLXN_DTYPE_Q8_0;
    lc.qdt = MLXN_DTYPE_BF16;
    run_case(&lc, devs, g);
    /* caches of more than 16 MiB (K and V at capacity; 34-67 MB here, the q8_0 one included):
     * CUDA's decode kernel keeps a group's rows in one block there (2, 4 or 8 rows), one row per
     * block below that; 1000 live keys, so several key splits merge and the reference stays
     * cheap */
    static const int64_t large[][6] = {
        {2, 1, 16, 2, 16384, 128}, {1, 3, 8, 4, 65536, 64}, {1, 1, 4, 1, 65536, 256}, {1, 2, 6, 3, 32768, 96},
        {1, 1, 6, 3, 32768, 96},
    };
    static const mlxn_dtype large_kv[4] = {MLXN_DTYPE_F16, MLXN_DTYPE_Q8_0, MLXN_DTYPE_BF16, MLXN_DTYPE_F32};
    for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) {
        at_case c = {large[i][0], large[i][1], large[i][2], large[i][3], large[i][4], large[i][5], dts[i % 3],
                     large_kv[i % 4], combos[i % n_combos], 0, 1000};
        if (c.kvdt == MLXN_DTYPE_Q8_0 && c.D % 32)
            c.kvdt = MLXN_DTYPE_F16;
        c.window = 300;
        run_case(&c, devs, g);
    }
    /* f16 caches of more than 16 MiB with 2 to 8 rows per KV head: CUDA's tensor-core decode at
     * each head dim it takes (32 to 128), tiles of 4 rows and of 8, every feature set, positions
     * per batch row or at 1000 and 2100 live keys (splits that end inside a 16-key step) */
    static const int64_t mma[][7] = {
        {2, 1, 8, 2, 16384, 128, -1}, {1, 2, 4, 2, 40000, 64, 1000}, {1, 1, 6, 2, 24000, 128, 2100},
        {1, 1, 3, 1, 50000, 96, 1000}, {1, 1, 2, 1, 140000, 32, 2100}, {3, 1, 4, 1, 24000, 64, -1},
        {1, 1, 32, 8, 4200, 128, 4199}, {1, 1, 6, 1, 70000, 64, 1000}, {1, 2, 8, 2, 24000, 96, 2100},
        {1, 1, 7, 1, 140000, 32, -1},   {2, 1, 32, 4, 5000, 128, -1},
    };
    for (size_t i = 0; i < sizeof mma / sizeof mma[0]; i++) {
        at_case c = {mma[i][0], mma[i][1], mma[i][2], mma[i][3], mma[i][4], mma[i][5], dts[i % 3], MLXN_DTYPE_F16,
                     combos[(i + 3) % n_combos], 300, mma[i][6]};
        run_case(&c, devs, g);
    }
    /* one dominant key over 8000 that weigh e^-18 each (1.2e-4 of the sum together): weights that
     * small must still count in P V (the tensor-core decode scales them before the f16 split) */
    at_case peak = {1, 1, 4, 1, 40000, 128, MLXN_DTYPE_F32, MLXN_DTYPE_F16, AT_MASK | AT_PEAK, 0, 8000};
    run_case(&peak, devs, g);
    peak.Hq = 8;
    peak.D = 64;
    peak.features |= AT_SINKS;
    run_case(&peak, devs, g);
    /* pos out of range in rows 1 and 2: NaN rows; row 0 unaffected (caches long enough for
     * CUDA's key splits, where the merge writes the NaN rows, and one short) */
    static const int64_t bad[][6] = {{3, 1, 8, 2, 1000, 128}, {3, 7, 4, 4, 64, 64}, {3, 64, 4, 2, 1200, 128}};
    for (size_t i = 0; i < 3; i++) {
        at_case c = {bad[i][0], bad[i][1], bad[i][2], bad[i][3], bad[i][4], bad[i][5], dts[i], dts[(i + 1) % 3],
                     AT_BAD_POS | (i == 1 ? AT_MASK | AT_SINKS : 0), 0, -1};
        run_case(&c, devs, g);
    }
    /* a single key: pos 0, one query */
    at_case one = {1, 1, 2, 1, 1, 64, MLXN_DTYPE_BF16, MLXN_DTYPE_BF16, AT_SINKS, 0, 0};
    run_case(&one, devs, g);

    decode_graph_case(devs, g, MLXN_DTYPE_F16, false);
    decode_graph_case(devs, g, MLXN_DTYPE_F16, true);
    decode_graph_case(devs, g, MLXN_DTYPE_Q8_0, false);
    attention_error_cases(devs);
}

void test_kv_append(test_devices *devs, rng *g)
{
    static const mlxn_dtype dts[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    /* {B, T, H, S, D}: every dtype pair, strided sources, ring wrap, a skipped row */
    static const int64_t shapes[][5] = {{1, 1, 1, 16, 64}, {3, 5, 4, 40, 128}, {3, 17, 2, 24, 80}, {2, 1, 8, 1000, 256}};
    int k = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int a = 0; a < 3; a++)
            for (int c = 0; c < 3; c++, k++) {
                kv_case kc = {shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4], dts[a], dts[c],
                              k % 2 ? 8 : 0, false};
                run_kv_case(&kc, devs, g);
            }
    /* q8_0 caches: every source dtype at each head dim that is a multiple of 32, strided sources,
     * caches at odd addresses, the smallest head dim and one of an odd block count past the
     * attention limit */
    static const int64_t q8_shapes[][5] = {{1, 1, 1, 16, 64}, {3, 5, 4, 40, 128}, {2, 1, 8, 1000, 256},
                                           {3, 9, 3, 12, 32}, {3, 4, 2, 10, 544}};
    for (size_t s = 0; s < sizeof q8_shapes / sizeof q8_shapes[0]; s++)
        for (int a = 0; a < 3; a++) {
            kv_case kc = {q8_shapes[s][0], q8_shapes[s][1], q8_shapes[s][2], q8_shapes[s][3], q8_shapes[s][4], dts[a],
                          MLXN_DTYPE_Q8_0, (s + a) % 2 ? 8 : 0, (s + a) % 3 == 1};
            run_kv_q8_case(&kc, devs, g);
        }
    kv_error_cases(devs);
}
