/* Harness cases for RoPE: NORMAL, NEOX, mrope and imrope; f32/f16/bf16; whole and partial
 * n_rot (odd pair counts too); with and without freq_factors and YaRN; positions up to 2^20,
 * around 30000 and in no order; head dims 2..640 (several pair chunks), odd T and H, batches
 * with per-sequence or shared positions; padded, permuted and fused-qkv views, in place; against
 * the oracle on every device. The per-head RMS norm with [D] and [H, D] weights over the same
 * kinds of shapes (decode q+k heads of a qkv row, head dims 2..1100, odd D with partial n_rot,
 * rows of very different magnitudes), and the fused op against rms_norm then rope. Then known
 * answers pinned to ggml (mrope / imrope sectors, YaRN correction dims and magnitude), a check
 * that the f32 tolerance sees the error of ggml's f32 angle recipe, and the error cases. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "test_ops.h"

typedef enum rope_kind { K_NORMAL, K_NEOX, K_MROPE, K_IMROPE, K_COUNT } rope_kind;
static const char *kind_names[K_COUNT] = {"normal", "neox", "mrope", "imrope"};

typedef enum rope_layout {
    L_CONTIG,
    L_PAD,      /* head rows padded by 3 elements (unaligned rows: the CUDA scalar path) */
    L_PERMUTED, /* [T, H, D] stored with H outermost */
    L_QKV       /* q heads of a fused [T, H + 2 * 2, D] qkv buffer; k and v must stay untouched */
} rope_layout;
static const char *layout_names[] = {"", "/pad", "/permuted", "/qkv"};

typedef struct rope_shape {
    int64_t B, T, H, D; /* B = 0: x is [T, H, D] */
    int n_rot;          /* 0: the whole head */
    rope_layout layout;
    bool in_place;
    bool pos_per_seq;   /* pos [B, T] ([B, 4, T]) rather than shared [T] ([4, T]) */
    int sections[4];    /* multi-section kinds */
} rope_shape;

typedef enum rope_norm {
    N_NONE,
    N_SHARED,  /* norm_w [D] */
    N_PER_HEAD /* norm_w [H, D] */
} rope_norm;
static const char *norm_names[] = {"", "/norm[D]", "/norm[H,D]"};

typedef struct rope_case {
    rope_kind kind;
    mlxn_dtype dtype;
    rope_shape s;
    bool ff, yarn;
    rope_norm norm;
    int w_pad; /* elements of padding after each row of [H, D] norm weights */
} rope_case;

typedef struct rope_operands {
    operand x, y, pos, ff, nw;
} rope_operands;

#define NORM_EPS 1e-5f

static bool is_multi(rope_kind k)
{
    return k == K_MROPE || k == K_IMROPE;
}

/* The parameters of a case: YaRN as a 4096-context model stretched 4x (its correction dims
 * stay > 0.01 away from integers for every n_rot here, so f32 and f64 agree on them); without
 * YaRN, linear scaling by 0.5 when freq_factors are on, to exercise freq_scale too. */
static mlxn_rope_params case_params(const rope_case *c, const mlxn_tensor *ff, const mlxn_tensor *nw)
{
    mlxn_rope_params p = mlxn_rope_params_default();
    p.style = c->kind == K_NORMAL ? MLXN_ROPE_NORMAL : MLXN_ROPE_NEOX;
    p.n_rot = c->s.n_rot;
    p.base = c->s.D == 80 ? 1e6f : 10000.0f;
    if (c->yarn) {
        p.freq_scale = 0.25f;
        p.ext_factor = 1.0f;
        p.attn_factor = 0.9f;
        p.beta_fast = 32.0f;
        p.beta_slow = 1.0f;
        p.n_ctx_orig = 4096;
    } else if (c->ff) {
        p.freq_scale = 0.5f;
    }
    p.freq_factors = ff;
    p.norm_w = nw;
    p.norm_eps = NORM_EPS;
    if (is_multi(c->kind)) {
        memcpy(p.sections, c->s.sections, sizeof p.sections);
        p.interleaved = c->kind == K_IMROPE;
    }
    return p;
}

static bool run_on(const rope_case *c, const rope_operands *o, test_device *dev, operand *out, char *why, size_t cap)
{
    placed x = {0}, y = {0}, pos = {0}, ff = {0}, nw = {0};
    bool ok = false;
    if (!operand_place(&o->x, dev, &x) || (!c->s.in_place && !operand_place(&o->y, dev, &y)) ||
        !operand_place(&o->pos, dev, &pos) || (c->ff && !operand_place(&o->ff, dev, &ff)) ||
        (c->norm && !operand_place(&o->nw, dev, &nw))) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    const mlxn_rope_params p = case_params(c, c->ff ? &ff.view : NULL, c->norm ? &nw.view : NULL);
    const placed *py = c->s.in_place ? &x : &y;
    mlxn_status st = mlxn_rope(dev->stream, &x.view, &pos.view, &p, &py->view);
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(py, dev, c->s.in_place ? &o->x : &o->y, out)) {
        snprintf(why, cap, "fetching y: %s", mlxn_last_error());
        goto done;
    }
    ok = true;
done:
    placed_free(&x);
    placed_free(&y);
    placed_free(&pos);
    placed_free(&ff);
    placed_free(&nw);
    return ok;
}

static bool init_x(operand *o, const rope_case *c)
{
    const rope_shape *s = &c->s;
    const int64_t rows = (s->B ? s->B : 1) * s->T;
    if (s->layout == L_QKV) {
        const int64_t qkv_heads = s->H + 2 * 2, shape[3] = {s->T, s->H, s->D};
        const int64_t stride[3] = {qkv_heads * s->D, s->D, 1};
        return operand_init_strided(o, c->dtype, 3, shape, stride, 0, rows * qkv_heads * s->D);
    }
    const int64_t shape4[4] = {s->B, s->T, s->H, s->D};
    const int nd = s->B ? 4 : 3;
    return operand_init(o, c->dtype, nd, s->B ? shape4 : shape4 + 1, s->layout == L_PAD ? 3 : 0,
                        s->layout == L_PERMUTED);
}

/* Positions: a quarter near 30000, a few up to 2^20 and at 0, the rest below 4096; in no
 * particular order. */
static int32_t draw_pos(rng *g)
{
    const double u = rng_uniform(g);
    if (u < 0.25)
        return (int32_t)rng_int(g, 28000, 32767);
    if (u < 0.35)
        return (int32_t)rng_int(g, 32768, 1 << 20);
    if (u < 0.40)
        return 0;
    return (int32_t)rng_int(g, 1, 4095);
}

/* Dims n_rot .. D - 1 must be copies of x, bit for bit (without the norm; with it they are
 * compared with the rest). */
static bool check_pass_through(const rope_case *c, const operand *x, const operand *got, char *why, size_t cap)
{
    if (c->norm)
        return true;
    const int64_t D = c->s.D, n_rot = c->s.n_rot ? c->s.n_rot : D;
    for (int64_t e = 0; e < got->numel; e++)
        if (e % D >= n_rot && memcmp(got->image + got->elem_offsets[e], x->image + x->elem_offsets[e],
                                     (size_t)mlxn_dtype_block_bytes(c->dtype)) != 0) {
            snprintf(why, cap, "element %lld (dim %lld >= n_rot %lld) is %g, x is %g", (long long)e,
                     (long long)(e % D), (long long)n_rot, operand_get(got, e), operand_get(x, e));
            return false;
        }
    return true;
}

/* f32: the angle is formed in f64 and reduced to [-pi, pi] before the f32 sin / cos, so it is
 * within 2^-24 pi = 1.9e-7 rad of exact; cos / sin add an ulp (6e-8), the products and the
 * sum three half-ulps: per pair |err| <= sqrt(2) * 2.5e-7 |x| + 1.8e-7 |y| ~ 5.3e-7 |y| (times
 * m), so max err / max |ref| <= 1e-6 and the RMS (angle errors spread evenly in +-1.9e-7) stays
 * near 2e-7: bound 4e-7. ggml's recipe (p * w in f32) is ~1e-3 rad off at p = 30000: 1000x over
 * (checked below). f16 / bf16: the one rounding of y dominates (tolerance_for). */
static tolerance rope_tolerance(mlxn_dtype dt)
{
    if (dt == MLXN_DTYPE_F32)
        return (tolerance){4e-7, 1e-6, "f32 rope: f64 angle reduced before f32 sin/cos, f32 rotation"};
    return tolerance_for(dt);
}

/* With the per-head norm, f32 adds to the rotation's error above: the scale carries the f32
 * sum of the D squares (per-lane or per-vector partial sums, then a tree: a few ulps of the
 * sum for D <= 1100, so ~1e-7 relative on the scale after the square root) and xn = x * scale
 * * w two more roundings (1.2e-7), all before the rotation's 5.3e-7: worst ~8e-7 per element,
 * bound 1.5e-6; RMS ~2.5e-7, bound 5e-7. f16 / bf16: the one rounding of y still dominates
 * (xn stays in f32). */
static tolerance rope_norm_tolerance(mlxn_dtype dt)
{
    if (dt == MLXN_DTYPE_F32)
        return (tolerance){5e-7, 1.5e-6, "f32 rms_norm + rope: f32 sum of squares and x * scale * w before the rotation"};
    return tolerance_for(dt);
}

static void run_case(const rope_case *c, test_devices *devs, rng *g)
{
    const rope_shape *s = &c->s;
    char name[256], full[300], why[512];
    char batch[24] = "";
    if (s->B)
        snprintf(batch, sizeof batch, "%lldx", (long long)s->B);
    char wpad[24] = "";
    if (c->norm == N_PER_HEAD && c->w_pad)
        snprintf(wpad, sizeof wpad, "/w-pad=%d", c->w_pad);
    snprintf(name, sizeof name, "rope/%s/%s/%s%lldx%lldx%lld/nrot=%d%s%s%s%s%s%s%s", kind_names[c->kind],
             mlxn_dtype_name(c->dtype), batch, (long long)s->T, (long long)s->H, (long long)s->D,
             s->n_rot ? s->n_rot : (int)s->D, norm_names[c->norm], wpad, c->ff ? "/ff" : "", c->yarn ? "/yarn" : "",
             layout_names[s->layout], s->in_place ? "/in-place" : "", s->B && !s->pos_per_seq ? "/shared-pos" : "");
    rope_operands o;
    memset(&o, 0, sizeof o);
    const int64_t n_rot = s->n_rot ? s->n_rot : s->D, ff_n = n_rot / 2;
    /* pos: [T], [B, T], [4, T] or [B, 4, T]; rows padded by one element, so that their
     * strides are not T */
    int64_t pshape[3];
    int pnd = 0;
    if (s->pos_per_seq)
        pshape[pnd++] = s->B;
    if (is_multi(c->kind))
        pshape[pnd++] = 4;
    pshape[pnd++] = s->T;
    if (!init_x(&o.x, c) || !operand_init(&o.pos, MLXN_DTYPE_I32, pnd, pshape, pnd > 1 ? 1 : 0, false) ||
        !operand_init(&o.ff, MLXN_DTYPE_F32, 1, &ff_n, 0, false) ||
        (c->norm == N_SHARED && !operand_init(&o.nw, MLXN_DTYPE_F32, 1, &s->D, 0, false)) ||
        (c->norm == N_PER_HEAD &&
         !operand_init(&o.nw, MLXN_DTYPE_F32, 2, (int64_t[2]){s->H, s->D}, c->w_pad, false))) {
        harness_fail(name, "out of memory");
        goto done;
    }
    if (!s->in_place && !(s->layout == L_QKV ? operand_init(&o.y, c->dtype, 3, (int64_t[3]){s->T, s->H, s->D}, 0, false)
                                              : operand_like(&o.y, &o.x, c->dtype))) {
        harness_fail(name, "out of memory");
        goto done;
    }
    /* with the norm, head rows of magnitudes 1e-2 .. 1e2, so that the scale matters */
    double row_scale = 2;
    for (int64_t i = 0; i < o.x.numel; i++) {
        if (c->norm && i % s->D == 0)
            row_scale = 2 * pow(10.0, 4 * rng_uniform(g) - 2);
        operand_set(&o.x, i, rng_normal(g) * row_scale);
    }
    for (int64_t i = 0; i < o.pos.numel; i++)
        operand_set(&o.pos, i, draw_pos(g));
    for (int64_t i = 0; i < o.nw.numel; i++) /* trained norm weights: around 1, some negative */
        operand_set(&o.nw, i, 1.0 + 0.5 * rng_normal(g));
    for (int64_t i = 0; i < ff_n; i++) /* llama3-style rope_freqs: 1 for high frequencies, up to 8 */
        operand_set(&o.ff, i, i < ff_n / 4 ? 1.0 : 1.0 + 7.0 * rng_uniform(g));
    if (!s->in_place)
        operand_poison(&o.y);
    operand want = {0};
    if (!run_on(c, &o, &devs->ref, &want, why, sizeof why)) {
        harness_fail(name, "reference: %s", why);
        goto done;
    }
    if (!check_pass_through(c, &o.x, &want, why, sizeof why)) {
        harness_fail(name, "reference: %s", why);
        operand_free(&want);
        goto done;
    }
    const tolerance tol = c->norm ? rope_norm_tolerance(c->dtype) : rope_tolerance(c->dtype);
    for (int d = 0; d < devs->count; d++) {
        snprintf(full, sizeof full, "%s @%s", name, devs->list[d].name);
        operand got = {0};
        if (!run_on(c, &o, &devs->list[d], &got, why, sizeof why))
            harness_fail(full, "%s", why);
        else if (!compare_operands(&got, &want, tol, why, sizeof why))
            harness_fail(full, "y: %s", why);
        else if (!check_pass_through(c, &o.x, &got, why, sizeof why))
            harness_fail(full, "%s", why);
        else
            harness_pass(full);
        operand_free(&got);
    }
    operand_free(&want);
done:
    operand_free(&o.x);
    operand_free(&o.y);
    operand_free(&o.pos);
    operand_free(&o.ff);
    operand_free(&o.nw);
}

/* ---------------------------------------------------------------- known answers */

/* Runs one f32 head set x [T, 1, D] with positions pos (n_pos i32, laid out as pos_nd dims
 * pos_shape) on dev; y gets the result. */
static bool run_small(test_device *dev, const float *x, int64_t T, int64_t D, const int32_t *pos, int pos_nd,
                      const int64_t *pos_shape, const mlxn_rope_params *p, float *y, char *why, size_t cap)
{
    mlxn_buffer *bx = NULL, *bp = NULL;
    const int64_t xshape[3] = {T, 1, D};
    int64_t n_pos = 1;
    for (int i = 0; i < pos_nd; i++)
        n_pos *= pos_shape[i];
    const size_t xbytes = (size_t)(T * D) * 4;
    bool ok = mlxn_buffer_create(dev->device, xbytes, &bx) == MLXN_STATUS_OK &&
              mlxn_buffer_create(dev->device, (size_t)n_pos * 4, &bp) == MLXN_STATUS_OK &&
              mlxn_buffer_upload(bx, 0, x, xbytes, NULL) == MLXN_STATUS_OK &&
              mlxn_buffer_upload(bp, 0, pos, (size_t)n_pos * 4, NULL) == MLXN_STATUS_OK;
    if (ok) {
        const mlxn_tensor tx = mlxn_tensor_make(bx, 0, MLXN_DTYPE_F32, 3, xshape);
        const mlxn_tensor tp = mlxn_tensor_make(bp, 0, MLXN_DTYPE_I32, pos_nd, pos_shape);
        ok = mlxn_rope(dev->stream, &tx, &tp, p, &tx) == MLXN_STATUS_OK && mlxn_stream_sync(dev->stream) == MLXN_STATUS_OK &&
             mlxn_buffer_download(bx, 0, y, xbytes, NULL) == MLXN_STATUS_OK;
    }
    if (!ok)
        snprintf(why, cap, "%s", mlxn_last_error());
    mlxn_buffer_free(bx);
    mlxn_buffer_free(bp);
    return ok;
}

/* Which position row drives each pair, read off the output: x = (1, 0) in every pair gives
 * y = (cos, sin) of the angle. Expected tables written out from ggml_mrope_cache_init for
 * sections [2, 3, 1, 1] (7 sectors) over 10 pairs. */
static void known_sections(test_device *dev, const char *devname)
{
    static const int want_mrope[10] = {0, 0, 1, 1, 1, 2, 3, 0, 0, 1};
    static const int want_imrope[10] = {0, 1, 2, 0, 1, 3, 3, 0, 1, 2};
    const int32_t rows[4] = {11, 23, 37, 53};
    const int64_t pshape[2] = {4, 1};
    for (int inter = 0; inter < 2; inter++) {
        char name[128], why[256];
        snprintf(name, sizeof name, "rope/known/%s-sectors @%s", inter ? "imrope" : "mrope", devname);
        float x[20] = {0}, y[20];
        for (int i = 0; i < 10; i++)
            x[i] = 1.0f;
        mlxn_rope_params p = mlxn_rope_params_default();
        p.style = MLXN_ROPE_NEOX;
        p.base = 100.0f;
        p.sections[0] = 2;
        p.sections[1] = 3;
        p.sections[2] = 1;
        p.sections[3] = 1;
        p.interleaved = inter;
        if (!run_small(dev, x, 1, 20, rows, 2, pshape, &p, y, why, sizeof why)) {
            harness_fail(name, "%s", why);
            continue;
        }
        const int *want = inter ? want_imrope : want_mrope;
        bool ok = true;
        for (int i = 0; i < 10 && ok; i++) {
            int found = -1;
            for (int r = 0; r < 4; r++) {
                const double th = rows[r] * pow(100.0, -2.0 * i / 20);
                if (fabs(y[i] - cos(th)) + fabs(y[i + 10] - sin(th)) < 1e-5)
                    found = r;
            }
            if (found != want[i]) {
                harness_fail(name, "pair %d uses position row %d, ggml uses row %d", i, found, want[i]);
                ok = false;
            }
        }
        if (ok)
            harness_pass(name);
    }
}

/* YaRN for n_rot 128, n_ctx_orig 4096, base 10000, beta 32 / 1: ggml's correction dims are
 * [20, 46] (20.94 floored, 45.03 ceiled), the magnitude 1 + 0.1 ln(1 / freq_scale). Pairs up
 * to 20 keep the unscaled angle, pairs from 46 on take the interpolated one. */
static void known_yarn(test_device *dev, const char *devname)
{
    char name[128], why[256];
    snprintf(name, sizeof name, "rope/known/yarn-corr-dims @%s", devname);
    float x[128] = {0}, y[128];
    for (int i = 0; i < 64; i++)
        x[i] = 1.0f;
    const int32_t pos = 1000;
    const int64_t pshape = 1;
    mlxn_rope_params p = mlxn_rope_params_default();
    p.style = MLXN_ROPE_NEOX;
    p.freq_scale = 0.5f;
    p.ext_factor = 1.0f;
    p.n_ctx_orig = 4096;
    if (!run_small(dev, x, 1, 128, &pos, 1, &pshape, &p, y, why, sizeof why)) {
        harness_fail(name, "%s", why);
        return;
    }
    const double m = 1.0 + 0.1 * log(2.0);
    for (int i = 0; i < 64; i++) {
        const double mix = 1.0 - fmin(1.0, fmax(0.0, (i - 20.0) / 26.0));
        const double th = pos * pow(10000.0, -2.0 * i / 128) * (0.5 * (1 - mix) + mix);
        if (fabs(y[i] - m * cos(th)) > 1e-5 || fabs(y[i + 64] - m * sin(th)) > 1e-5) {
            harness_fail(name, "pair %d: got (%.7f, %.7f), expected (%.7f, %.7f)", i, y[i], y[i + 64], m * cos(th),
                         m * sin(th));
            return;
        }
    }
    harness_pass(name);
}

/* The f32 bound must be tight enough to see ggml's own f32 recipe (theta = p, then multiplied
 * by base^(-2/n_rot) once per pair, sin / cos of the f32 value) at positions near 30000. */
static void tolerance_sees_f32_angles(test_devices *devs, rng *g)
{
    const char *name = "rope/tolerance/detects-ggml-f32-angles-at-30000";
    rope_case c = {K_NEOX, MLXN_DTYPE_F32, {0, 16, 2, 128, 0, L_CONTIG, false, false, {0}}, false, false, N_NONE, 0};
    rope_operands o;
    memset(&o, 0, sizeof o);
    const int64_t T = c.s.T;
    char why[512];
    operand want, naive;
    memset(&naive, 0, sizeof naive);
    if (!init_x(&o.x, &c) || !operand_like(&o.y, &o.x, MLXN_DTYPE_F32) ||
        !operand_init(&o.pos, MLXN_DTYPE_I32, 1, &T, 0, false) || !operand_like(&naive, &o.x, MLXN_DTYPE_F32)) {
        harness_fail(name, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < o.x.numel; i++)
        operand_set(&o.x, i, rng_normal(g) * 2);
    for (int64_t t = 0; t < T; t++)
        operand_set(&o.pos, t, (double)rng_int(g, 28000, 32767));
    if (!run_on(&c, &o, &devs->ref, &want, why, sizeof why)) {
        harness_fail(name, "reference: %s", why);
        goto done;
    }
    memcpy(naive.image, o.x.image, o.x.bytes);
    const float theta_scale = powf(10000.0f, -2.0f / 128);
    for (int64_t r = 0; r < T * 2; r++) {
        float theta = (float)operand_get(&o.pos, r / 2);
        for (int64_t i = 0; i < 64; i++, theta *= theta_scale) {
            const float x0 = (float)operand_get(&o.x, r * 128 + i), x1 = (float)operand_get(&o.x, r * 128 + i + 64);
            operand_set(&naive, r * 128 + i, x0 * cosf(theta) - x1 * sinf(theta));
            operand_set(&naive, r * 128 + i + 64, x0 * sinf(theta) + x1 * cosf(theta));
        }
    }
    if (compare_operands(&naive, &want, rope_tolerance(MLXN_DTYPE_F32), why, sizeof why))
        harness_fail(name, "the f32 bound accepts f32-formed angles at p ~ 30000");
    else
        harness_pass(name);
    operand_free(&want);
done:
    operand_free(&o.x);
    operand_free(&o.y);
    operand_free(&o.pos);
    operand_free(&naive);
}

/* ---------------------------------------------------------------- norm: fused = unfused */

/* The runner's decode step before the fusion: rms_norm of the q heads by q_norm, of the k heads
 * by k_norm, then one rope over the adjacent q and k heads of a qkv row; now one rope with the
 * [Hq + Hk, D] weights (q_norm repeated Hq times, k_norm Hk times). f32, on each device, 4 + 1
 * heads of 256 and 3 tokens; v's heads must stay as they were. */
static void norm_matches_unfused(test_device *dev, const char *devname, rng *g)
{
    enum { T = 3, HQ = 4, HK = 1, D = 256, W = (HQ + 2 * HK) * D };
    char name[128];
    snprintf(name, sizeof name, "rope/norm/matches-rms_norm-then-rope @%s", devname);
    static float qkv[T * W], w[(2 + HQ + HK) * D], got[2][T * W];
    int32_t pos[T];
    for (int64_t i = 0; i < T * W; i++)
        qkv[i] = (float)(rng_normal(g) * pow(10.0, (double)((i / D) % 5) - 2.0));
    for (int64_t i = 0; i < 2 * D; i++) /* q_norm, k_norm */
        w[i] = (float)(1.0 + 0.5 * rng_normal(g));
    for (int64_t h = 0; h < HQ + HK; h++)
        memcpy(w + (2 + h) * D, w + (h < HQ ? 0 : D), D * sizeof(float));
    for (int t = 0; t < T; t++)
        pos[t] = draw_pos(g);
    mlxn_buffer *bx[2] = {NULL, NULL}, *bw = NULL, *bp = NULL;
    for (int k = 0; k < 2; k++) {
        CHECK_OK(name, mlxn_buffer_create(dev->device, sizeof qkv, &bx[k]));
        CHECK_OK(name, mlxn_buffer_upload(bx[k], 0, qkv, sizeof qkv, NULL));
    }
    CHECK_OK(name, mlxn_buffer_create(dev->device, sizeof w, &bw));
    CHECK_OK(name, mlxn_buffer_upload(bw, 0, w, sizeof w, NULL));
    CHECK_OK(name, mlxn_buffer_create(dev->device, sizeof pos, &bp));
    CHECK_OK(name, mlxn_buffer_upload(bp, 0, pos, sizeof pos, NULL));
    const int64_t nT = T, d1 = D, whd[2] = {HQ + HK, D};
    /* heads [h0, h0 + n) of each qkv row: [T, n, D] */
#define HEADS(b, h0, n) \
    ((mlxn_tensor){.buffer = (b), .offset = (size_t)(h0) * D * 4, .dtype = MLXN_DTYPE_F32, .ndim = 3, \
                   .shape = {T, (n), D}, .stride = {W * 4, D * 4, 4}})
    const mlxn_tensor q0 = HEADS(bx[0], 0, HQ), k0 = HEADS(bx[0], HQ, HK), qk0 = HEADS(bx[0], 0, HQ + HK);
    const mlxn_tensor qk1 = HEADS(bx[1], 0, HQ + HK);
#undef HEADS
    const mlxn_tensor wq = mlxn_tensor_make(bw, 0, MLXN_DTYPE_F32, 1, &d1);
    const mlxn_tensor wk = mlxn_tensor_make(bw, D * 4, MLXN_DTYPE_F32, 1, &d1);
    const mlxn_tensor wqk = mlxn_tensor_make(bw, 2 * D * 4, MLXN_DTYPE_F32, 2, whd);
    const mlxn_tensor tp = mlxn_tensor_make(bp, 0, MLXN_DTYPE_I32, 1, &nT);
    mlxn_rope_params p = mlxn_rope_params_default();
    p.style = MLXN_ROPE_NEOX;
    p.base = 1e6f;
    CHECK_OK(name, mlxn_rms_norm(dev->stream, &q0, &wq, NORM_EPS, &q0));
    CHECK_OK(name, mlxn_rms_norm(dev->stream, &k0, &wk, NORM_EPS, &k0));
    CHECK_OK(name, mlxn_rope(dev->stream, &qk0, &tp, &p, &qk0));
    p.norm_w = &wqk;
    p.norm_eps = NORM_EPS;
    CHECK_OK(name, mlxn_rope(dev->stream, &qk1, &tp, &p, &qk1));
    CHECK_OK(name, mlxn_stream_sync(dev->stream));
    for (int k = 0; k < 2; k++)
        CHECK_OK(name, mlxn_buffer_download(bx[k], 0, got[k], sizeof qkv, NULL));
    /* the unfused path rounds the normalized heads to f32 once more before the rotation: the
     * fused bound for f32 (rope_norm_tolerance) covers it */
    const tolerance tol = rope_norm_tolerance(MLXN_DTYPE_F32);
    double err2 = 0, ref2 = 0, err_max = 0, ref_max = 0;
    bool v_kept = true;
    for (int64_t i = 0; i < T * W; i++) {
        if (i % W >= (HQ + HK) * D) {
            v_kept = v_kept && memcmp(&got[1][i], &qkv[i], 4) == 0 && memcmp(&got[0][i], &qkv[i], 4) == 0;
            continue;
        }
        const double e = (double)got[1][i] - got[0][i];
        err2 += e * e;
        ref2 += (double)got[0][i] * got[0][i];
        err_max = fmax(err_max, fabs(e));
        ref_max = fmax(ref_max, fabs(got[0][i]));
    }
    if (!v_kept)
        harness_fail(name, "v's heads changed");
    else if (!(sqrt(err2 / ref2) <= tol.rel_l2 && err_max / ref_max <= tol.rel_max))
        harness_fail(name, "fused vs unfused: rel L2 %.3g (bound %.3g), rel max %.3g (bound %.3g)", sqrt(err2 / ref2),
                     tol.rel_l2, err_max / ref_max, tol.rel_max);
    else
        harness_pass(name);
fail:
    for (int k = 0; k < 2; k++)
        mlxn_buffer_free(bx[k]);
    mlxn_buffer_free(bw);
    mlxn_buffer_free(bp);
}

/* ---------------------------------------------------------------- errors */

static void error_cases(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_buffer *b = NULL;
    void *zeros = calloc(1, 1 << 20);
    const bool ok = zeros && mlxn_buffer_create(dev->device, 1 << 20, &b) == MLXN_STATUS_OK &&
                    mlxn_buffer_upload(b, 0, zeros, 1 << 20, NULL) == MLXN_STATUS_OK;
    free(zeros);
    if (!ok) {
        harness_fail("rope/error", "setting up: %s", mlxn_last_error());
        mlxn_buffer_free(b);
        return;
    }
    const int64_t xs[3] = {5, 4, 128}, ys_bad[3] = {5, 4, 64}, x2[2] = {5, 128}, t5 = 5, t6 = 6, p4[2] = {4, 5},
                  pb[2] = {3, 5}, x4[4] = {2, 5, 4, 128}, ff63 = 63;
    const mlxn_tensor x = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 3, xs);
    const mlxn_tensor x_2d = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, x2);
    const mlxn_tensor x_i32 = mlxn_tensor_make(b, 0, MLXN_DTYPE_I32, 3, xs);
    const mlxn_tensor x_b = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 4, x4);
    const mlxn_tensor y_bf16 = mlxn_tensor_make(b, 0, MLXN_DTYPE_BF16, 3, xs);
    const mlxn_tensor y_bad = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 3, ys_bad);
    const mlxn_tensor pos = mlxn_tensor_make(b, 65536, MLXN_DTYPE_I32, 1, &t5);
    const mlxn_tensor pos_f32 = mlxn_tensor_make(b, 65536, MLXN_DTYPE_F32, 1, &t5);
    const mlxn_tensor pos_6 = mlxn_tensor_make(b, 65536, MLXN_DTYPE_I32, 1, &t6);
    const mlxn_tensor pos_4t = mlxn_tensor_make(b, 65536, MLXN_DTYPE_I32, 2, p4);
    const mlxn_tensor pos_3t = mlxn_tensor_make(b, 65536, MLXN_DTYPE_I32, 2, pb);
    const mlxn_tensor ff = mlxn_tensor_make(b, 131072, MLXN_DTYPE_F32, 1, &ff63);
    const mlxn_tensor ff_f16 = mlxn_tensor_make(b, 131072, MLXN_DTYPE_F16, 1, &ff63);
    const int64_t d127 = 127, d128 = 128, w5[2] = {5, 128}, w3d[3] = {1, 4, 128};
    const mlxn_tensor nw_127 = mlxn_tensor_make(b, 196608, MLXN_DTYPE_F32, 1, &d127);
    const mlxn_tensor nw_f16 = mlxn_tensor_make(b, 196608, MLXN_DTYPE_F16, 1, &d128);
    const mlxn_tensor nw_5h = mlxn_tensor_make(b, 196608, MLXN_DTYPE_F32, 2, w5);
    const mlxn_tensor nw_3d = mlxn_tensor_make(b, 196608, MLXN_DTYPE_F32, 3, w3d);
    const mlxn_tensor nw_ok = mlxn_tensor_make(b, 196608, MLXN_DTYPE_F32, 1, &d128);
    mlxn_stream *s = dev->stream;
    mlxn_rope_params p = mlxn_rope_params_default();

    p.n_rot = 7;
    harness_expect_status("rope/error/odd-n_rot", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_ERR_INVALID_ARG,
                          "n_rot is 7");
    p.n_rot = 130;
    harness_expect_status("rope/error/n_rot-past-head", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_ERR_INVALID_ARG,
                          "n_rot is 130, expected an even number in 2..128");
    p.n_rot = -2;
    harness_expect_status("rope/error/negative-n_rot", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_ERR_INVALID_ARG,
                          "n_rot is -2");
    p = mlxn_rope_params_default();
    harness_expect_status("rope/error/pos-dtype", mlxn_rope(s, &x, &pos_f32, &p, &x), MLXN_STATUS_ERR_DTYPE,
                          "pos is f32, expected i32");
    harness_expect_status("rope/error/pos-length", mlxn_rope(s, &x, &pos_6, &p, &x), MLXN_STATUS_ERR_SHAPE,
                          "pos has shape 6, expected [5] or [1, 5]");
    harness_expect_status("rope/error/pos-batch", mlxn_rope(s, &x_b, &pos_3t, &p, &x_b), MLXN_STATUS_ERR_SHAPE,
                          "pos has shape 3x5, expected [5] or [2, 5]");
    harness_expect_status("rope/error/pos-null", mlxn_rope(s, &x, NULL, &p, &x), MLXN_STATUS_ERR_INVALID_ARG,
                          "pos is NULL");
    harness_expect_status("rope/error/x-2d", mlxn_rope(s, &x_2d, &pos, &p, &x_2d), MLXN_STATUS_ERR_SHAPE,
                          "x has 2 dims, expected [T, H, D] or [B, T, H, D]");
    harness_expect_status("rope/error/x-dtype", mlxn_rope(s, &x_i32, &pos, &p, &x_i32), MLXN_STATUS_ERR_DTYPE,
                          "x is i32, expected f32, f16 or bf16");
    harness_expect_status("rope/error/y-dtype", mlxn_rope(s, &x, &pos, &p, &y_bf16), MLXN_STATUS_ERR_DTYPE,
                          "y is bf16, x is f32");
    harness_expect_status("rope/error/y-shape", mlxn_rope(s, &x, &pos, &p, &y_bad), MLXN_STATUS_ERR_SHAPE,
                          "y has shape 5x4x64, x has shape 5x4x128");
    harness_expect_status("rope/error/y-null", mlxn_rope(s, &x, &pos, &p, NULL), MLXN_STATUS_ERR_INVALID_ARG,
                          "y is NULL");
    harness_expect_status("rope/error/params-null", mlxn_rope(s, &x, &pos, NULL, &x), MLXN_STATUS_ERR_INVALID_ARG,
                          "params are NULL");
    p.style = (mlxn_rope_style)1;
    harness_expect_status("rope/error/style", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_ERR_INVALID_ARG,
                          "style is 1");
    p = mlxn_rope_params_default();
    p.base = 0.0f;
    harness_expect_status("rope/error/base", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_ERR_INVALID_ARG, "base 0");
    p = mlxn_rope_params_default();
    p.ext_factor = 1.0f;
    harness_expect_status("rope/error/yarn-n_ctx_orig", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_ERR_INVALID_ARG,
                          "needs n_ctx_orig > 0");
    p = mlxn_rope_params_default();
    p.freq_factors = &ff;
    harness_expect_status("rope/error/freq_factors-length", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_ERR_SHAPE,
                          "freq_factors has shape 63, expected [64] (n_rot / 2)");
    p.freq_factors = &ff_f16;
    harness_expect_status("rope/error/freq_factors-dtype", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_ERR_DTYPE,
                          "freq_factors is f16, expected f32");
    p = mlxn_rope_params_default();
    p.style = MLXN_ROPE_NEOX;
    p.sections[0] = 16;
    p.sections[1] = 24;
    p.sections[2] = 24;
    harness_expect_status("rope/error/sections-pos-shape", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_ERR_SHAPE,
                          "pos has shape 5, expected [4, 5] or [1, 4, 5]");
    harness_expect_status("rope/sections-pos-4xT-accepted", mlxn_rope(s, &x, &pos_4t, &p, &x), MLXN_STATUS_OK, NULL);
    p.style = MLXN_ROPE_NORMAL;
    harness_expect_status("rope/error/sections-normal", mlxn_rope(s, &x, &pos_4t, &p, &x), MLXN_STATUS_ERR_INVALID_ARG,
                          "style must be MLXN_ROPE_NEOX");
    p.style = MLXN_ROPE_NEOX;
    p.sections[3] = -1;
    harness_expect_status("rope/error/sections-negative", mlxn_rope(s, &x, &pos_4t, &p, &x),
                          MLXN_STATUS_ERR_INVALID_ARG, "sections are [16, 24, 24, -1]");
    p = mlxn_rope_params_default();
    p.interleaved = true;
    harness_expect_status("rope/error/interleaved-without-sections", mlxn_rope(s, &x, &pos, &p, &x),
                          MLXN_STATUS_ERR_INVALID_ARG, "sections are all 0");
    p = mlxn_rope_params_default();
    p.norm_w = &nw_127;
    harness_expect_status("rope/error/norm_w-length", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_ERR_SHAPE,
                          "norm_w has shape 127, expected [128] or [4, 128]");
    p.norm_w = &nw_5h;
    harness_expect_status("rope/error/norm_w-heads", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_ERR_SHAPE,
                          "norm_w has shape 5x128, expected [128] or [4, 128]");
    p.norm_w = &nw_3d;
    harness_expect_status("rope/error/norm_w-dims", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_ERR_SHAPE,
                          "norm_w has shape 1x4x128, expected [128] or [4, 128]");
    p.norm_w = &nw_f16;
    harness_expect_status("rope/error/norm_w-dtype", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_ERR_DTYPE,
                          "norm_w is f16, expected f32");
    p.norm_w = &nw_ok;
    p.norm_eps = -1e-6f;
    harness_expect_status("rope/error/norm_eps-negative", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_ERR_INVALID_ARG,
                          "norm_eps is -1e-06, expected a finite value >= 0");
    p.norm_eps = NAN;
    harness_expect_status("rope/error/norm_eps-nan", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_ERR_INVALID_ARG,
                          "norm_eps is nan");
    p.norm_eps = 0.0f;
    harness_expect_status("rope/norm_eps-0-accepted", mlxn_rope(s, &x, &pos, &p, &x), MLXN_STATUS_OK, NULL);
    mlxn_buffer_free(b);
}

void test_rope(test_devices *devs, rng *g)
{
    static const rope_shape shapes[] = {
        {0, 1, 1, 64, 0, L_CONTIG, false, false, {0}},    /* one token, one head */
        {0, 7, 5, 128, 0, L_CONTIG, false, false, {0}},   /* odd T and H */
        {0, 5, 3, 80, 0, L_CONTIG, false, false, {0}},
        {0, 3, 4, 256, 0, L_CONTIG, false, false, {0}},
        {0, 6, 3, 128, 64, L_CONTIG, false, false, {0}},  /* partial n_rot */
        {0, 4, 3, 80, 32, L_PAD, false, false, {0}},      /* partial, unaligned rows */
        {0, 5, 2, 64, 22, L_CONTIG, false, false, {0}},   /* 11 pairs */
        {2, 3, 5, 64, 0, L_CONTIG, false, true, {0}},     /* pos [B, T] */
        {3, 2, 3, 128, 96, L_CONTIG, false, false, {0}},  /* pos [T] shared by the batch */
        {0, 9, 4, 128, 0, L_QKV, false, false, {0}},      /* q out of a fused qkv row */
        {0, 9, 4, 128, 64, L_QKV, true, false, {0}},      /* ... rotated in place */
        {0, 5, 6, 64, 0, L_PERMUTED, false, false, {0}},
        {0, 3, 2, 640, 600, L_CONTIG, false, false, {0}}, /* 300 pairs: two chunks on CUDA */
        {0, 2, 300, 2, 0, L_CONTIG, false, false, {0}},   /* one pair per head, many heads */
        {0, 33, 2, 128, 0, L_CONTIG, true, false, {0}},   /* in place */
        /* more head steps than an H200's resident warps: each CUDA warp takes several units */
        {0, 3000, 7, 64, 0, L_CONTIG, false, false, {0}},
        {2, 1500, 3, 128, 96, L_CONTIG, false, true, {0}}, /* ... partial, pos [B, T] */
        {0, 2500, 3, 128, 96, L_CONTIG, true, false, {0}}, /* ... partial, in place */
    };
    static const rope_shape multi_shapes[] = {
        {0, 7, 5, 128, 0, L_CONTIG, false, false, {16, 24, 24, 0}}, /* Qwen2-VL */
        {0, 4, 3, 64, 64, L_CONTIG, false, false, {3, 2, 2, 1}},    /* sectors wrap; e used */
        {2, 3, 2, 128, 0, L_CONTIG, false, true, {24, 20, 20, 0}},  /* Qwen3-VL; pos [B, 4, T] */
        {0, 5, 3, 80, 64, L_QKV, true, false, {11, 11, 10, 0}},     /* partial, in place in qkv */
        {0, 3000, 3, 128, 0, L_CONTIG, false, false, {16, 24, 24, 0}}, /* several units a warp */
    };
    static const mlxn_dtype dts[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    for (int k = 0; k < K_COUNT; k++) {
        const bool multi = is_multi((rope_kind)k);
        const rope_shape *list = multi ? multi_shapes : shapes;
        const size_t n = multi ? sizeof multi_shapes / sizeof multi_shapes[0] : sizeof shapes / sizeof shapes[0];
        for (int d = 0; d < 3; d++)
            for (size_t si = 0; si < n; si++)
                for (int v = 0; v < 4; v++) {
                    /* the long calls are there for CUDA's several units a warp; freq_factors and
                     * YaRN one at a time only in the short ones (CPU time in CI) */
                    if (list[si].T >= 1000 && (v == 1 || v == 2))
                        continue;
                    const rope_case c = {(rope_kind)k, dts[d], list[si], v & 1, (v >> 1) & 1, N_NONE, 0};
                    run_case(&c, devs, g);
                }
    }
    /* the per-head norm: w_pad pads the rows of [H, D] weights (4: still 16-byte aligned; 1:
     * unaligned, the CUDA scalar path); extras: freq_factors and YaRN on too */
    static const struct {
        rope_shape s;
        int w_pad;
        bool extras;
    } norm_shapes[] = {
        {{0, 1, 5, 256, 0, L_QKV, true, false, {0}}, 0, false},    /* Gemma 3 decode: 4 + 1 heads of a qkv row */
        {{0, 1, 24, 128, 0, L_QKV, true, false, {0}}, 0, false},   /* Qwen3 decode: 16 + 8 heads */
        {{0, 33, 24, 128, 0, L_QKV, true, false, {0}}, 0, true},   /* prefill */
        {{0, 7, 3, 64, 0, L_CONTIG, false, false, {0}}, 0, false},
        {{0, 7, 4, 512, 0, L_CONTIG, false, false, {0}}, 4, false}, /* the longest rows held in registers */
        {{0, 5, 2, 128, 64, L_CONTIG, false, false, {0}}, 0, false}, /* partial n_rot: norm over all D */
        {{0, 3, 5, 75, 64, L_CONTIG, false, false, {0}}, 0, false},  /* odd D */
        {{0, 4, 3, 80, 32, L_PAD, false, false, {0}}, 1, false},     /* unaligned rows and weights */
        {{2, 3, 5, 64, 0, L_CONTIG, false, true, {0}}, 0, true},     /* pos [B, T] */
        {{0, 6, 3, 256, 0, L_PERMUTED, true, false, {0}}, 0, false},
        {{0, 3, 2, 640, 600, L_CONTIG, false, false, {0}}, 0, true}, /* two pair chunks */
        {{0, 2, 3, 1100, 64, L_CONTIG, false, false, {0}}, 0, false}, /* long pass-through */
        {{0, 2, 3, 600, 32, L_PAD, true, false, {0}}, 0, false},     /* ... one element at a time */
        {{0, 1, 1, 2, 0, L_CONTIG, false, false, {0}}, 0, false},    /* one pair */
        {{0, 33, 7, 256, 0, L_CONTIG, false, false, {0}}, 4, false},
        {{0, 7, 13, 128, 0, L_CONTIG, true, false, {0}}, 1, false},  /* aligned x, unaligned weights */
        /* over twice the head steps an H200's resident warps take at once (f32: CUDA's norm_tiles;
         * fewer tokens than rope_rows' resident warps, at least 2112 by its launch bounds, so never
         * norm_tokens) */
        {{0, 2000, 33, 64, 0, L_CONTIG, false, false, {0}}, 0, false},
        {{2, 1200, 3, 128, 96, L_CONTIG, false, true, {0}}, 4, true}, /* ... partial, pos [B, T] */
        {{0, 1000, 5, 256, 0, L_QKV, true, false, {0}}, 0, false},    /* ... Gemma 3 q, k in place */
        /* 16-bit rows in units of several turns of S steps (CUDA: the warp's table used again; the
         * last turn has head 12 alone, the other segments none) */
        {{0, 1100, 13, 128, 0, L_CONTIG, false, false, {0}}, 0, false},
        /* a warp a token on CUDA (norm_tokens: tokens >= rope_rows' resident warps; these are
         * more than an H200 holds, 8448), also in place, in a batch of two with pos [B, T], and
         * with 3 to 13 steps a token and lanes without items (D 80: 5, 10 or 20 items a head) */
        {{0, 8500, 3, 64, 0, L_CONTIG, false, false, {0}}, 0, false},
        {{2, 4250, 3, 64, 0, L_CONTIG, true, true, {0}}, 4, false},
        {{0, 8450, 9, 80, 0, L_CONTIG, true, false, {0}}, 4, false},
    };
    for (int k = K_NORMAL; k <= K_NEOX; k++)
        for (int d = 0; d < 3; d++)
            for (size_t si = 0; si < sizeof norm_shapes / sizeof norm_shapes[0]; si++)
                for (int nm = N_SHARED; nm <= N_PER_HEAD; nm++) {
                    const bool ex = norm_shapes[si].extras;
                    const rope_case c = {(rope_kind)k, dts[d], norm_shapes[si].s, ex, ex, (rope_norm)nm,
                                         norm_shapes[si].w_pad};
                    run_case(&c, devs, g);
                }
    for (int d = 0; d < 3; d++) { /* multi-section positions with the norm */
        const rope_case c = {K_IMROPE, dts[d], multi_shapes[3], false, false, N_PER_HEAD, 0};
        run_case(&c, devs, g);
    }
    norm_matches_unfused(&devs->ref, devs->ref.name, g);
    for (int d = 0; d < devs->count; d++)
        norm_matches_unfused(&devs->list[d], devs->list[d].name, g);
    known_sections(&devs->ref, devs->ref.name);
    known_yarn(&devs->ref, devs->ref.name);
    for (int d = 0; d < devs->count; d++) {
        known_sections(&devs->list[d], devs->list[d].name);
        known_yarn(&devs->list[d], devs->list[d].name);
    }
    tolerance_sees_f32_angles(devs, g);
    error_cases(devs);
}
