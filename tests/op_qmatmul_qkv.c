/* Harness cases for the q, k, v projection's fusions (mlxn_qmatmul_fusion's rope and kv_cache):
 * y = x . W^T over rows of heads, the first heads rotated in place, then the K and V heads
 * appended to a cache. Every device runs the fused call; the oracle device runs the product,
 * mlxn_rope and mlxn_kv_append one after the other over views this file builds itself (so a
 * wrong view in the fusion's own checks fails too). The output compared is y followed by the
 * whole cache (slots the call must not write hold random values that must come back
 * unchanged). On CUDA a decode step with short rows of W runs all of it in the mat-vec's
 * epilogue; the other cases (NEOX, a q8_0 cache, long rows, several rows of x) run the
 * separate kernels. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mlxn_quant.h"
#include "weights.h"
#include "test_ops.h"

/* |err| <= QKV_TOL * bound: the product's bound sum_k |x_k| |w_k| (op_qmatmul.c), through the
 * rotation (|cos|, |sin| <= 1, attn_factor 1): the bounds of the pair added. A cache of f16 or
 * bf16 adds one unit in the last place of its dtype (2^-10 / 2^-7 relative), a q8_0 cache one
 * step of its block's codes: two roundings of values this close may land on neighbours. */
#define QKV_TOL 1e-5

typedef struct qkv_case {
    mlxn_dtype w_dtype, cache_dtype;
    int64_t M, K, Hq, Hk, D, S;
    int n_rot;             /* 0: the whole head */
    mlxn_rope_style style;
    bool norm;             /* the fused input norm */
    int32_t pos;           /* the first token's position (its cache slot is pos % S) */
    int mode;              /* QKV_BOTH, QKV_ROPE (no kv_cache), QKV_KV (no rope) */
    bool kv_skip;          /* kv_pos -1: the append writes nothing */
} qkv_case;

enum { QKV_BOTH, QKV_ROPE, QKV_KV };

typedef struct qkv_data {
    const qkv_case *c;
    const test_device *oracle; /* runs the three ops apart */
    uint8_t *w;
    size_t w_bytes;
    float *wf;
    operand x, nw, y, rope_pos, kv_pos, cache;
} qkv_data;

static int64_t heads_n(const qkv_case *c)
{
    return (c->Hq + 2 * c->Hk) * c->D;
}

static bool make_data(const qkv_case *c, rng *g, qkv_data *d)
{
    memset(d, 0, sizeof *d);
    d->c = c;
    const int64_t N = heads_n(c), be = mlxn_dtype_block_elems(c->w_dtype), bb = mlxn_dtype_block_bytes(c->w_dtype);
    d->w_bytes = (size_t)(N * (c->K / be) * bb);
    d->w = malloc(d->w_bytes);
    d->wf = malloc((size_t)(N * c->K) * sizeof(float));
    const int64_t xs[2] = {c->M, c->K}, ys[2] = {c->M, N}, two = 2, cs[4] = {2, c->Hk, c->S, c->D};
    bool ok = d->w && d->wf && weights_make(c->w_dtype, N, c->K, g, d->w, d->wf) &&
              operand_init(&d->x, MLXN_DTYPE_F32, 2, xs, 0, false) &&
              operand_init(&d->nw, MLXN_DTYPE_F32, 1, &c->K, 0, false) &&
              operand_init(&d->y, MLXN_DTYPE_F32, 2, ys, 0, false) &&
              operand_init(&d->rope_pos, MLXN_DTYPE_I32, 1, &c->M, 0, false) &&
              operand_init(&d->kv_pos, MLXN_DTYPE_I32, 1, &two, 0, false) &&
              operand_init(&d->cache, c->cache_dtype, 4, cs, 0, false);
    if (!ok)
        return false;
    for (int64_t i = 0; i < d->x.numel; i++)
        operand_set(&d->x, i, (c->norm ? 7.0 : 1.0) * rng_normal(g));
    for (int64_t i = 0; i < c->K; i++)
        operand_set(&d->nw, i, 0.5 + rng_uniform(g));
    operand_poison(&d->y);
    for (int64_t t = 0; t < c->M; t++)
        operand_set(&d->rope_pos, t, c->pos + t);
    operand_set(&d->kv_pos, 0, c->kv_skip ? -1 : c->pos);
    operand_set(&d->kv_pos, 1, c->kv_skip ? -1 : c->pos);
    if (c->cache_dtype == MLXN_DTYPE_Q8_0) { /* valid blocks of random values */
        const int64_t rows = 2 * c->Hk * c->S;
        float *tmp = malloc((size_t)(rows * c->D) * sizeof *tmp);
        ok = tmp && weights_make(MLXN_DTYPE_Q8_0, rows, c->D, g, d->cache.image + d->cache.offset, tmp);
        free(tmp);
    } else {
        for (int64_t i = 0; i < d->cache.numel; i++)
            operand_set(&d->cache, i, rng_normal(g));
    }
    return ok;
}

static void free_data(qkv_data *d)
{
    free(d->w);
    free(d->wf);
    operand_free(&d->x);
    operand_free(&d->nw);
    operand_free(&d->y);
    operand_free(&d->rope_pos);
    operand_free(&d->kv_pos);
    operand_free(&d->cache);
}

static int64_t cache_elems(const qkv_case *c)
{
    return 2 * c->Hk * c->S * c->D;
}

/* Element e of the cache as f32 (q8_0: decoded). */
static double cache_get(const qkv_case *c, const operand *cache, int64_t e)
{
    if (c->cache_dtype != MLXN_DTYPE_Q8_0)
        return operand_get(cache, e);
    const uint8_t *blk = cache->image + cache->offset + (e / 32) * 34;
    float v[32];
    mlxn_ggml_dequantize(MLXN_DTYPE_Q8_0, blk, 32, v);
    return v[e % 32];
}

static bool run_on(void *ctx, test_device *dev, operand *out, char *why, size_t cap)
{
    const qkv_data *d = ctx;
    const qkv_case *c = d->c;
    mlxn_buffer *bw = NULL;
    placed x = {0}, nw = {0}, y = {0}, rp = {0}, kp = {0}, cache = {0};
    operand yf = {0}, cf = {0};
    bool ok = false;
    if (mlxn_buffer_create(dev->device, d->w_bytes, &bw) || mlxn_buffer_upload(bw, 0, d->w, d->w_bytes, NULL) ||
        !operand_place(&d->x, dev, &x) || !operand_place(&d->nw, dev, &nw) || !operand_place(&d->y, dev, &y) ||
        !operand_place(&d->rope_pos, dev, &rp) || !operand_place(&d->kv_pos, dev, &kp) ||
        !operand_place(&d->cache, dev, &cache)) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    const int64_t wshape[2] = {heads_n(c), c->K};
    mlxn_tensor tw = mlxn_tensor_make(bw, 0, c->w_dtype, 2, wshape);
    mlxn_rope_params rp_params = mlxn_rope_params_default();
    rp_params.style = c->style;
    rp_params.n_rot = c->n_rot;
    rp_params.base = 10000.0f;
    mlxn_qmatmul_fusion f = mlxn_qmatmul_fusion_default();
    f.norm_w = c->norm ? &nw.view : NULL;
    const bool rope = c->mode != QKV_KV, kv = c->mode != QKV_ROPE;
    mlxn_status st;
    if (dev == d->oracle) { /* the product, then the two ops over views of y built here */
        st = mlxn_qmatmul_fused(dev->stream, &x.view, &tw, &f, &y.view);
        const int64_t N = heads_n(c), E = (int64_t)sizeof(float);
        mlxn_tensor h = y.view;
        h.ndim = 3;
        const int64_t hs[3] = {c->M, c->Hq + c->Hk, c->D}, hst[3] = {N * E, c->D * E, E};
        for (int i = 0; i < 3; i++) {
            h.shape[i] = hs[i];
            h.stride[i] = hst[i];
        }
        if (st == MLXN_STATUS_OK && rope)
            st = mlxn_rope(dev->stream, &h, &rp.view, &rp_params, &h);
        mlxn_tensor src = y.view;
        src.ndim = 4;
        src.offset += (size_t)(c->Hq * c->D * E);
        const int64_t ss[4] = {2, c->M, c->Hk, c->D}, sst[4] = {c->Hk * c->D * E, N * E, c->D * E, E};
        for (int i = 0; i < 4; i++) {
            src.shape[i] = ss[i];
            src.stride[i] = sst[i];
        }
        if (st == MLXN_STATUS_OK && kv)
            st = mlxn_kv_append(dev->stream, &src, &kp.view, &cache.view);
    } else {
        f.rope = rope ? &rp_params : NULL;
        f.rope_pos = &rp.view;
        f.head_dim = c->D;
        f.rope_heads = c->Hq + c->Hk;
        f.kv_cache = kv ? &cache.view : NULL;
        f.kv_pos = &kp.view;
        f.kv_head = c->Hq;
        st = mlxn_qmatmul_fused(dev->stream, &x.view, &tw, &f, &y.view);
    }
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(&y, dev, &d->y, &yf) || !placed_fetch(&cache, dev, &d->cache, &cf)) {
        snprintf(why, cap, "fetching y and the cache: %s", mlxn_last_error());
        goto done;
    }
    /* one f32 operand: y's elements, then the cache's */
    const int64_t n = yf.numel + cache_elems(c);
    if (!operand_init(out, MLXN_DTYPE_F32, 1, &n, 0, false)) {
        snprintf(why, cap, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < yf.numel; i++)
        operand_set(out, i, operand_get(&yf, i));
    for (int64_t e = 0; e < cache_elems(c); e++)
        operand_set(out, yf.numel + e, cache_get(c, &cf, e));
    ok = true;
done:
    operand_free(&yf);
    operand_free(&cf);
    mlxn_buffer_free(bw);
    placed_free(&x);
    placed_free(&nw);
    placed_free(&y);
    placed_free(&rp);
    placed_free(&kp);
    placed_free(&cache);
    return ok;
}

/* One unit in the last place of cache element e (want's cache starts at element at): 2^-10 or
 * 2^-7 of it (f16, bf16), or its block's scale (q8_0: amax / 127; one code apart). */
static double cache_ulp(const qkv_case *c, const operand *want, int64_t at, int64_t e)
{
    if (c->cache_dtype == MLXN_DTYPE_Q8_0) {
        double amax = 0;
        for (int64_t i = e / 32 * 32; i < e / 32 * 32 + 32; i++)
            amax = fmax(amax, fabs(operand_get(want, at + i)));
        return amax / 127.0 * 1.001;
    }
    const double ulp = c->cache_dtype == MLXN_DTYPE_F16 ? 0x1p-10 : c->cache_dtype == MLXN_DTYPE_BF16 ? 0x1p-7 : 0.0;
    return ulp * fabs(operand_get(want, at + e));
}

/* The bounds of y's elements and of the cache's (0 where nothing is written: exact). */
static double *bounds(const qkv_data *d, const operand *want)
{
    const qkv_case *c = d->c;
    const int64_t N = heads_n(c), D = c->D, rot = c->n_rot ? c->n_rot : D;
    double *b = calloc((size_t)(c->M * N + cache_elems(c)), sizeof *b), *xh = malloc((size_t)c->K * sizeof *xh);
    double *p = malloc((size_t)N * sizeof *p);
    for (int64_t m = 0; b && xh && p && m < c->M; m++) {
        double ss = 0;
        for (int64_t k = 0; k < c->K; k++) {
            xh[k] = operand_get(&d->x, m * c->K + k);
            ss += xh[k] * xh[k];
        }
        const double inv = c->norm ? 1.0 / sqrt(ss / (double)c->K + 1e-6) : 1.0;
        for (int64_t k = 0; k < c->K; k++)
            xh[k] *= inv * (c->norm ? operand_get(&d->nw, k) : 1.0);
        for (int64_t n = 0; n < N; n++) {
            p[n] = 0;
            for (int64_t k = 0; k < c->K; k++)
                p[n] += fabs(xh[k]) * fabs((double)d->wf[n * c->K + k]);
        }
        for (int64_t n = 0; n < N; n++) {
            const int64_t h = n / D, j = n % D;
            double bn = p[n];
            if (c->mode != QKV_KV && h < c->Hq + c->Hk && j < rot) { /* the pair's other element */
                const int64_t o = c->style == MLXN_ROPE_NEOX ? (j < rot / 2 ? j + rot / 2 : j - rot / 2) : j ^ 1;
                bn += p[h * D + o];
            }
            b[m * N + n] = bn;
            if (h < c->Hq || c->mode == QKV_ROPE || c->kv_skip)
                continue; /* nothing of it in the cache: those elements must come back exact */
            /* K or V head: its cache element, rounded to the cache's dtype */
            const int64_t kv = h - c->Hq, bt = kv / c->Hk, hk = kv % c->Hk, slot = (c->pos + m) % c->S;
            const int64_t e = ((bt * c->Hk + hk) * c->S + slot) * D + j;
            b[c->M * N + e] = bn + cache_ulp(c, want, c->M * N, e) / QKV_TOL;
        }
    }
    free(xh);
    free(p);
    return b;
}

static void run_case(const qkv_case *c, test_devices *devs, rng *g)
{
    char name[200];
    static const char *modes[] = {"qkv-rope-kv", "qkv-rope", "qkv-kv"};
    snprintf(name, sizeof name, "qmatmul/%s/%s/%lldx%lld/Hq%lld-Hk%lld-D%lld%s/rot%d/%s-cache/S%lld/pos%d%s%s",
             modes[c->mode], mlxn_dtype_name(c->w_dtype), (long long)c->M, (long long)c->K, (long long)c->Hq,
             (long long)c->Hk, (long long)c->D, c->style == MLXN_ROPE_NEOX ? "/neox" : "", c->n_rot,
             mlxn_dtype_name(c->cache_dtype), (long long)c->S, c->pos, c->norm ? "/norm" : "",
             c->kv_skip ? "/kv-pos-negative" : "");
    qkv_data d;
    if (!make_data(c, g, &d)) {
        harness_fail(name, "making data: %s", mlxn_last_error());
        free_data(&d);
        return;
    }
    d.oracle = &devs->ref;
    /* the oracle's output first: the cache bounds scale with its values */
    char why[256];
    operand want = {0};
    if (!run_on(&d, &devs->ref, &want, why, sizeof why)) {
        harness_fail(name, "reference: %s", why);
        free_data(&d);
        return;
    }
    double *b = bounds(&d, &want);
    operand_free(&want);
    harness_run_bound_case(name, devs, run_on, &d, b, QKV_TOL, QKV_TOL);
    free(b);
    free_data(&d);
}

static void error_cases(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 20, &b) != MLXN_STATUS_OK)
        return;
    const int64_t xs[2] = {1, 64}, ws[2] = {8 * 16, 64}, ys[2] = {1, 8 * 16}, two = 2, one = 1;
    const int64_t cs[4] = {2, 2, 32, 16}, cs3[3] = {2, 2, 32}, cb3[4] = {3, 2, 32, 16}, y3s[3] = {1, 1, 128};
    mlxn_tensor x = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, xs);
    mlxn_tensor w = mlxn_tensor_make(b, 4096, MLXN_DTYPE_Q8_0, 2, ws);
    mlxn_tensor y = mlxn_tensor_make(b, 65536, MLXN_DTYPE_F32, 2, ys);
    mlxn_tensor pos = mlxn_tensor_make(b, 131072, MLXN_DTYPE_I32, 1, &one);
    mlxn_tensor kpos = mlxn_tensor_make(b, 131072, MLXN_DTYPE_I32, 1, &two);
    mlxn_tensor cache = mlxn_tensor_make(b, 262144, MLXN_DTYPE_F16, 4, cs);
    mlxn_tensor cache3 = mlxn_tensor_make(b, 262144, MLXN_DTYPE_F16, 3, cs3);
    mlxn_tensor cache_b3 = mlxn_tensor_make(b, 262144, MLXN_DTYPE_F16, 4, cb3);
    mlxn_tensor y3 = mlxn_tensor_make(b, 65536, MLXN_DTYPE_F32, 3, y3s);
    const int64_t x3s[3] = {1, 1, 64};
    mlxn_tensor x3 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 3, x3s); /* [.., M, K] and [.., M, N]: the product's own checks pass */
    mlxn_rope_params rp = mlxn_rope_params_default();
    mlxn_qmatmul_fusion f = mlxn_qmatmul_fusion_default();
    f.rope = &rp;
    f.rope_pos = &pos;
    f.head_dim = 16;
    f.rope_heads = 6;
    f.kv_cache = &cache;
    f.kv_pos = &kpos;
    f.kv_head = 4;
    f.accumulate = true;
    harness_expect_status("qmatmul/error/qkv-accumulate", mlxn_qmatmul_fused(dev->stream, &x, &w, &f, &y),
                          MLXN_STATUS_ERR_INVALID_ARG, "neither glu nor accumulate");
    f.accumulate = false;
    f.head_dim = 24;
    harness_expect_status("qmatmul/error/qkv-head-dim", mlxn_qmatmul_fused(dev->stream, &x, &w, &f, &y),
                          MLXN_STATUS_ERR_SHAPE, "head_dim 24 does not divide");
    f.head_dim = 16;
    f.rope_heads = 9;
    harness_expect_status("qmatmul/error/qkv-rope-heads", mlxn_qmatmul_fused(dev->stream, &x, &w, &f, &y),
                          MLXN_STATUS_ERR_SHAPE, "rope_heads is 9");
    f.rope_heads = 6;
    f.kv_head = 5;
    harness_expect_status("qmatmul/error/qkv-kv-head", mlxn_qmatmul_fused(dev->stream, &x, &w, &f, &y),
                          MLXN_STATUS_ERR_SHAPE, "kv_head 5");
    f.kv_head = 4;
    f.kv_cache = &cache3;
    harness_expect_status("qmatmul/error/qkv-cache-dims", mlxn_qmatmul_fused(dev->stream, &x, &w, &f, &y),
                          MLXN_STATUS_ERR_SHAPE, "kv_cache has 3 dims");
    f.kv_cache = &cache;
    f.kv_pos = &pos;
    harness_expect_status("qmatmul/error/qkv-kv-pos", mlxn_qmatmul_fused(dev->stream, &x, &w, &f, &y),
                          MLXN_STATUS_ERR_SHAPE, NULL);
    f.kv_pos = &kpos;
    f.kv_cache = &cache_b3;
    harness_expect_status("qmatmul/error/qkv-cache-batch", mlxn_qmatmul_fused(dev->stream, &x, &w, &f, &y),
                          MLXN_STATUS_ERR_SHAPE, "cache has shape 3x2x32x16");
    f.kv_cache = &cache;
    f.rope_pos = &kpos; /* two positions for one row of x */
    harness_expect_status("qmatmul/error/qkv-rope-pos", mlxn_qmatmul_fused(dev->stream, &x, &w, &f, &y),
                          MLXN_STATUS_ERR_SHAPE, "mlxn_qmatmul_fused");
    f.rope_pos = &pos;
    harness_expect_status("qmatmul/error/qkv-y-3d", mlxn_qmatmul_fused(dev->stream, &x3, &w, &f, &y3),
                          MLXN_STATUS_ERR_SHAPE, "y has 3 dims");
    mlxn_buffer_free(b);
}

void test_qmatmul_qkv(test_devices *devs, rng *g)
{
    static const qkv_case cases[] = {
        /* SmolLM2's decode step (Q4_1, K 576, 9 + 3 + 3 heads of 64; CUDA: the fused epilogue),
         * at a position past the cache's end (the ring slot), with f16, f32 and bf16 caches */
        {MLXN_DTYPE_Q4_1, MLXN_DTYPE_F16, 1, 576, 9, 3, 64, 48, 0, MLXN_ROPE_NORMAL, true, 100, QKV_BOTH, false},
        {MLXN_DTYPE_Q4_1, MLXN_DTYPE_F32, 1, 576, 9, 3, 64, 128, 0, MLXN_ROPE_NORMAL, true, 5, QKV_BOTH, false},
        {MLXN_DTYPE_Q4_1, MLXN_DTYPE_BF16, 1, 576, 9, 3, 64, 64, 0, MLXN_ROPE_NORMAL, false, 40000, QKV_BOTH, false},
        /* partial rotation, other formats and row lengths of the wide kernel (2 to 8 rows a warp) */
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F16, 1, 256, 4, 2, 32, 16, 16, MLXN_ROPE_NORMAL, true, 7, QKV_BOTH, false},
        {MLXN_DTYPE_Q4_K, MLXN_DTYPE_F32, 1, 512, 2, 1, 128, 32, 64, MLXN_ROPE_NORMAL, false, 31, QKV_BOTH, false},
        {MLXN_DTYPE_Q5_0, MLXN_DTYPE_F16, 1, 640, 4, 1, 256, 8, 0, MLXN_ROPE_NORMAL, true, 3, QKV_BOTH, false},
        {MLXN_DTYPE_IQ4_NL, MLXN_DTYPE_F32, 1, 128, 3, 3, 16, 8, 8, MLXN_ROPE_NORMAL, false, 9, QKV_BOTH, false},
        /* what the CUDA epilogue leaves to the separate kernels: NEOX pairs, a q8_0 cache, rows
         * long enough for a warp each, several rows of x, plain f16 weights */
        {MLXN_DTYPE_Q4_1, MLXN_DTYPE_F16, 1, 576, 9, 3, 64, 48, 0, MLXN_ROPE_NEOX, true, 12, QKV_BOTH, false},
        {MLXN_DTYPE_Q4_1, MLXN_DTYPE_Q8_0, 1, 576, 9, 3, 64, 48, 0, MLXN_ROPE_NORMAL, true, 12, QKV_BOTH, false},
        {MLXN_DTYPE_Q4_0, MLXN_DTYPE_F16, 1, 4096, 4, 2, 64, 16, 0, MLXN_ROPE_NORMAL, true, 20, QKV_BOTH, false},
        {MLXN_DTYPE_Q4_1, MLXN_DTYPE_F16, 3, 576, 9, 3, 64, 48, 0, MLXN_ROPE_NORMAL, true, 46, QKV_BOTH, false},
        {MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 96, 2, 1, 32, 8, 0, MLXN_ROPE_NORMAL, false, 2, QKV_BOTH, false},
        /* eight rows a warp over 90 rows: the last set's lanes past N (CUDA epilogue) */
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F16, 1, 256, 3, 1, 18, 8, 0, MLXN_ROPE_NORMAL, true, 5, QKV_BOTH, false},
        /* one fusion alone, and an append with a negative position (nothing written) */
        {MLXN_DTYPE_Q4_1, MLXN_DTYPE_F16, 1, 576, 9, 3, 64, 48, 32, MLXN_ROPE_NORMAL, true, 77, QKV_ROPE, false},
        {MLXN_DTYPE_Q4_1, MLXN_DTYPE_BF16, 1, 576, 9, 3, 64, 48, 0, MLXN_ROPE_NORMAL, true, 77, QKV_KV, false},
        {MLXN_DTYPE_Q4_1, MLXN_DTYPE_F16, 1, 576, 9, 3, 64, 48, 0, MLXN_ROPE_NORMAL, true, 77, QKV_BOTH, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], devs, g);
    error_cases(devs);
}
