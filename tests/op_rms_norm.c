/* Harness cases for the RMS norm family: every variant x dtype x weight dtype x shape,
 * including odd and long rows, strided, permuted and misaligned views, in-place use and
 * non-finite inputs, on every device under test against the oracle. */
#include "op_variants.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "test_ops.h"

typedef enum w_kind { W_NONE, W_F32, W_SAME } w_kind;

typedef struct rms_case {
    rms_variant variant;
    mlxn_dtype dtype;
    w_kind w;
    int ndim;
    int64_t shape[MLXN_MAX_DIMS];
    int64_t pad;     /* row padding in elements; r and m get pad + 8 (other strides) */
    bool permute;    /* outer dims stored transposed */
    bool in_place;   /* rms_norm: y = x; (norm_)add_rms_norm: sum = r */
    bool sum_is_x;   /* (norm_)add_rms_norm: sum = x (the runner's residual update) */
    bool nonfinite;  /* a NaN in row 0 and an Inf in the last row */
} rms_case;

typedef struct rms_operands {
    operand x, r, m, w, wr, sum, y;
} rms_operands;

static void case_name(const rms_case *c, const char *dev, char *out, size_t cap)
{
    char shape[96];
    size_t n = 0;
    for (int i = 0; i < c->ndim; i++)
        n += (size_t)snprintf(shape + n, sizeof shape - n, i ? "x%lld" : "%lld",
                              (long long)c->shape[i]);
    static const char *wn[] = {"none", "f32", "same"};
    snprintf(out, cap, "%s/%s/w=%s/%s%s%s%s%s @%s", rms_variant_name(c->variant),
             mlxn_dtype_name(c->dtype), wn[c->w], shape, c->pad ? "/pad" : "",
             c->pad ? (c->pad % 8 ? "-unaligned" : "-aligned") : "", c->permute ? "/permuted" : "",
             c->in_place ? "/in-place" : c->sum_is_x ? "/sum=x" : c->nonfinite ? "/nonfinite" : "", dev);
}

static void fill(operand *o, rng *g, double lo_scale, double hi_scale, bool per_row_scale)
{
    int64_t n = o->shape[o->ndim - 1];
    double scale = 1;
    for (int64_t i = 0; i < o->numel; i++) {
        if (i % n == 0)
            scale = per_row_scale ? pow(10.0, lo_scale + (hi_scale - lo_scale) * rng_uniform(g))
                                  : 1.0;
        operand_set(o, i, rng_normal(g) * scale);
    }
}

static bool make_operands(const rms_case *c, rng *g, rms_operands *o)
{
    memset(o, 0, sizeof *o);
    int64_t n = c->shape[c->ndim - 1];
    bool ok = operand_init(&o->x, c->dtype, c->ndim, c->shape, c->pad, c->permute) &&
              operand_init(&o->r, c->dtype, c->ndim, c->shape, c->pad ? c->pad + 8 : 0, false) &&
              operand_init(&o->m, c->dtype, c->ndim, c->shape, c->pad ? c->pad + 8 : 0, c->permute) &&
              operand_like(&o->sum, &o->x, c->dtype) && operand_like(&o->y, &o->x, c->dtype) &&
              operand_init(&o->w, c->w == W_F32 ? MLXN_DTYPE_F32 : c->dtype, 1, &n, 0, false) &&
              /* wr in the other of the two weight dtypes than w (for 16-bit x) */
              operand_init(&o->wr, c->w == W_F32 ? c->dtype : MLXN_DTYPE_F32, 1, &n, 0, false);
    if (!ok)
        return false;
    /* Activations spread over about three decades between rows; weights near 1 with both
     * signs present; the multiplier like a gate output. */
    fill(&o->x, g, -1.5, 1.5, true);
    fill(&o->r, g, -1.5, 1.5, true);
    fill(&o->m, g, 0, 0, false);
    for (int64_t i = 0; i < n; i++) {
        operand_set(&o->w, i, 1.0 + 0.5 * rng_normal(g));
        operand_set(&o->wr, i, 1.0 + 0.5 * rng_normal(g));
    }
    if (c->nonfinite) {
        operand_set(&o->x, 0, NAN);
        operand_set(&o->x, o->x.numel - 1, INFINITY);
    }
    operand_poison(&o->sum);
    operand_poison(&o->y);
    return true;
}

static void free_operands(rms_operands *o)
{
    operand_free(&o->x);
    operand_free(&o->r);
    operand_free(&o->m);
    operand_free(&o->w);
    operand_free(&o->wr);
    operand_free(&o->sum);
    operand_free(&o->y);
}

/* The outputs of running the case on dev: images of sum and y (and of x and r, which the
 * op may not change unless it works in place). */
typedef struct rms_result {
    operand x, r, sum, y;
} rms_result;

static void free_result(rms_result *r)
{
    operand_free(&r->x);
    operand_free(&r->r);
    operand_free(&r->sum);
    operand_free(&r->y);
}

static bool run_on(const rms_case *c, const rms_operands *o, float eps, test_device *dev,
                   rms_result *res, char *why, size_t cap)
{
    placed x = {0}, r = {0}, m = {0}, w = {0}, wr = {0}, sum = {0}, y = {0};
    bool ok = false;
    memset(res, 0, sizeof *res);
    if (!operand_place(&o->x, dev, &x) || !operand_place(&o->r, dev, &r) ||
        !operand_place(&o->m, dev, &m) || !operand_place(&o->w, dev, &w) || !operand_place(&o->wr, dev, &wr) ||
        !operand_place(&o->sum, dev, &sum) || !operand_place(&o->y, dev, &y)) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    const bool has_sum = rms_variant_has_sum(c->variant);
    const placed *py = c->in_place && !has_sum ? &x : &y;
    const placed *psum = c->in_place && has_sum ? &r : c->sum_is_x && has_sum ? &x : &sum;
    mlxn_status st = rms_variant_issue(dev->stream, c->variant, &x.view, &r.view,
                                       c->w == W_NONE ? NULL : &wr.view, c->w == W_NONE ? NULL : &w.view, &m.view,
                                       eps, &psum->view, &py->view);
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(&x, dev, &o->x, &res->x) || !placed_fetch(&r, dev, &o->r, &res->r) ||
        !placed_fetch(psum, dev, psum == &r ? &o->r : psum == &x ? &o->x : &o->sum, &res->sum) ||
        !placed_fetch(py, dev, py == &x ? &o->x : &o->y, &res->y)) {
        snprintf(why, cap, "fetching results: %s", mlxn_last_error());
        goto done;
    }
    ok = true;
done:
    placed_free(&x);
    placed_free(&r);
    placed_free(&m);
    placed_free(&w);
    placed_free(&wr);
    placed_free(&sum);
    placed_free(&y);
    return ok;
}

static bool same_bytes(const operand *a, const operand *b)
{
    return a->bytes == b->bytes && memcmp(a->image, b->image, a->bytes) == 0;
}

static void run_case(const rms_case *c, test_devices *devs, rng *g)
{
    char name[256], why[512];
    rms_operands o;
    float eps = rng_uniform(g) < 0.5 ? 1e-5f : 1e-6f;
    if (!make_operands(c, g, &o)) {
        case_name(c, "all", name, sizeof name);
        harness_fail(name, "out of memory making operands");
        free_operands(&o);
        return;
    }
    rms_result want;
    if (!run_on(c, &o, eps, &devs->ref, &want, why, sizeof why)) {
        case_name(c, devs->ref.name, name, sizeof name);
        harness_fail(name, "%s", why);
        free_result(&want);
        free_operands(&o);
        return;
    }
    tolerance tol = tolerance_for(c->dtype);
    /* sum = x + t (t = r, or r's norm times wr) is checked against |x| + |t| per element: an
     * element where the two cancel keeps only the absolute accuracy of its addends (a 1 x 1 case
     * of norm_add_rms_norm whose sum cancelled to -0.0103 missed a bound relative to the sum by
     * 4x with an error of 4e-8, seed 1796190487344612). y is checked against the oracle's norm of
     * the sum the device stored (the op's contract: what is stored is what is normalized), so a
     * sum one rounding away from the oracle's, amplified by a row that cancels, does not count
     * against y. */
    const bool has_sum = rms_variant_has_sum(c->variant);
    double *bound = has_sum ? malloc((size_t)o.x.numel * sizeof *bound) : NULL;
    for (int64_t i = 0; bound && i < o.x.numel; i++) {
        const double x = operand_get(&o.x, i);
        bound[i] = fabs(x) + fabs(operand_get(&want.sum, i) - x);
    }
    for (int d = 0; d < devs->count; d++) {
        test_device *dev = &devs->list[d];
        case_name(c, dev->name, name, sizeof name);
        rms_result got, norm_of_sum = {0};
        bool ok = run_on(c, &o, eps, dev, &got, why, sizeof why);
        if (ok && has_sum) {
            rms_case plain = *c;
            plain.variant = RMS_NORM;
            plain.in_place = plain.sum_is_x = false;
            rms_operands from_sum = o;
            from_sum.x = got.sum;
            ok = run_on(&plain, &from_sum, eps, &devs->ref, &norm_of_sum, why, sizeof why);
        }
        if (!ok || (has_sum && !bound)) {
            harness_fail(name, "%s", ok ? "out of memory" : why);
        } else if (!compare_operands(&got.y, has_sum ? &norm_of_sum.y : &want.y, tol, why, sizeof why)) {
            harness_fail(name, "y: %s", why);
        } else if (has_sum && !compare_within_bound(&got.sum, &want.sum, bound, tol.rel_max, why, sizeof why)) {
            harness_fail(name, "sum: %s", why);
        } else if (!(c->in_place && !has_sum) && !(c->sum_is_x && has_sum) && !same_bytes(&got.x, &o.x)) {
            harness_fail(name, "x was modified");
        } else if (!(c->in_place && has_sum) && !same_bytes(&got.r, &o.r)) {
            harness_fail(name, "r was modified");
        } else {
            if (g_verbose)
                printf("  %s: %s\n", name, why);
            harness_pass(name);
        }
        free_result(&got);
        free_result(&norm_of_sum);
    }
    free(bound);
    free_result(&want);
    free_operands(&o);
}

static void error_cases(test_devices *devs)
{
    test_device *dev = &devs->list[0];
    mlxn_stream *s = dev->stream;
    mlxn_buffer *b = NULL, *b2 = NULL;
    mlxn_device *other = NULL;
    mlxn_stream *os = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 20, &b) != MLXN_STATUS_OK ||
        mlxn_device_create(NULL, &other) != MLXN_STATUS_OK ||
        mlxn_buffer_create(other, 1 << 16, &b2) != MLXN_STATUS_OK ||
        mlxn_stream_create(other, &os) != MLXN_STATUS_OK) {
        harness_fail("rms_norm/errors", "setup: %s", mlxn_last_error());
        goto done;
    }
    int64_t sx[2] = {4, 4096}, sw[1] = {2048}, sz[2] = {4, 0}, s0[2] = {0, 64};
    mlxn_tensor x = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, sx);
    mlxn_tensor y = mlxn_tensor_make(b, 65536, MLXN_DTYPE_F32, 2, sx);
    mlxn_tensor w = mlxn_tensor_make(b, 131072, MLXN_DTYPE_F32, 1, sw);
    mlxn_tensor yh = mlxn_tensor_make(b, 65536, MLXN_DTYPE_F16, 2, sx);
    mlxn_tensor xi = mlxn_tensor_make(b, 0, MLXN_DTYPE_I32, 2, sx);
    mlxn_tensor big = mlxn_tensor_make(b, (1 << 20) - 1024, MLXN_DTYPE_F32, 2, sx);
    mlxn_tensor empty_rows = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, sz);
    mlxn_tensor no_rows = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, s0);
    mlxn_tensor strided_inner = x;
    strided_inner.shape[1] = 1024;
    strided_inner.stride[1] = 8;
    mlxn_tensor elsewhere = mlxn_tensor_make(b2, 0, MLXN_DTYPE_F32, 2, sx);
    elsewhere.shape[0] = 1;

    harness_expect_status("rms_norm/error/w-length", mlxn_rms_norm(s, &x, &w, 1e-5f, &y),
                  MLXN_STATUS_ERR_SHAPE, "w has 2048 elements, rows of x have 4096");
    harness_expect_status("rms_norm/error/y-dtype", mlxn_rms_norm(s, &x, NULL, 1e-5f, &yh),
                  MLXN_STATUS_ERR_DTYPE, "y is f16, x is f32");
    harness_expect_status("rms_norm/error/x-dtype", mlxn_rms_norm(s, &xi, NULL, 1e-5f, &y),
                  MLXN_STATUS_ERR_DTYPE, "x is i32");
    harness_expect_status("rms_norm/error/x-null", mlxn_rms_norm(s, NULL, NULL, 1e-5f, &y),
                  MLXN_STATUS_ERR_INVALID_ARG, "x is NULL");
    harness_expect_status("rms_norm/error/y-null", mlxn_rms_norm(s, &x, NULL, 1e-5f, NULL),
                  MLXN_STATUS_ERR_INVALID_ARG, "y is NULL");
    harness_expect_status("rms_norm/error/stream-null", mlxn_rms_norm(NULL, &x, NULL, 1e-5f, &y),
                  MLXN_STATUS_ERR_INVALID_ARG, "stream is NULL");
    harness_expect_status("rms_norm/error/m-null", mlxn_rms_norm_mul(s, &x, NULL, NULL, 1e-5f, &y),
                  MLXN_STATUS_ERR_INVALID_ARG, "m is NULL");
    harness_expect_status("rms_norm/error/sum-null", mlxn_add_rms_norm(s, &x, &x, NULL, 1e-5f, NULL, &y),
                  MLXN_STATUS_ERR_INVALID_ARG, "sum is NULL");
    harness_expect_status("rms_norm/error/norm-add-r-null",
                          mlxn_norm_add_rms_norm(s, &x, NULL, NULL, NULL, 1e-5f, &y, &y), MLXN_STATUS_ERR_INVALID_ARG,
                          "r is NULL");
    harness_expect_status("rms_norm/error/wr-length", mlxn_norm_add_rms_norm(s, &x, &x, &w, NULL, 1e-5f, &y, &y),
                          MLXN_STATUS_ERR_SHAPE, "wr has 2048 elements, rows of x have 4096");
    harness_expect_status("rms_norm/error/past-buffer", mlxn_rms_norm(s, &big, NULL, 1e-5f, &y),
                  MLXN_STATUS_ERR_SHAPE, "extends past its buffer");
    harness_expect_status("rms_norm/error/empty-rows", mlxn_rms_norm(s, &empty_rows, NULL, 1e-5f, &empty_rows),
                  MLXN_STATUS_ERR_SHAPE, "0 elements");
    harness_expect_status("rms_norm/error/strided-inner", mlxn_rms_norm(s, &strided_inner, NULL, 1e-5f, &strided_inner),
                  MLXN_STATUS_ERR_UNSUPPORTED, "innermost dim must be contiguous");
    harness_expect_status("rms_norm/error/eps", mlxn_rms_norm(s, &x, NULL, -1.0f, &y),
                  MLXN_STATUS_ERR_INVALID_ARG, "eps");
    harness_expect_status("rms_norm/error/other-device", mlxn_rms_norm(s, &elsewhere, NULL, 1e-5f, &elsewhere),
                  MLXN_STATUS_ERR_INVALID_ARG, "another device");
    /* Zero rows is a valid empty batch: OK, nothing written. */
    harness_expect_status("rms_norm/zero-rows", mlxn_rms_norm(s, &no_rows, NULL, 1e-5f, &no_rows),
                  MLXN_STATUS_OK, NULL);
done:
    mlxn_stream_free(os);
    mlxn_buffer_free(b2);
    mlxn_device_free(other);
    mlxn_buffer_free(b);
}

void test_rms_norm(test_devices *devs, rng *g)
{
    static const struct {
        int ndim;
        int64_t shape[MLXN_MAX_DIMS];
        bool permute;
    } shapes[] = {
        {2, {1, 1}, false},      {2, {3, 7}, false},       {2, {5, 33}, false},
        {2, {2, 4095}, false},   {2, {3, 16384}, false},   {2, {1, 262144}, false},
        {2, {64, 128}, false},   {2, {37, 2048}, false},   {2, {9, 4096}, false},
        {2, {2, 40000}, false},  {1, {4096}, false},       {4, {2, 3, 5, 96}, false},
        {3, {4, 3, 256}, true},  {2, {300, 64}, false},
    };
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    static const mlxn_dtype dtypes[] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    for (int di = 0; di < 3; di++) {
        mlxn_dtype dt = dtypes[di];
        for (int v = 0; v < RMS_VARIANT_COUNT; v++) {
            for (int wk = W_NONE; wk <= W_SAME; wk++) {
                if (dt == MLXN_DTYPE_F32 && wk == W_SAME)
                    continue; /* same as W_F32 */
                for (int si = 0; si < nshapes; si++) {
                    rms_case c = {.variant = (rms_variant)v, .dtype = dt, .w = (w_kind)wk,
                                  .ndim = shapes[si].ndim, .permute = shapes[si].permute};
                    memcpy(c.shape, shapes[si].shape, sizeof c.shape);
                    run_case(&c, devs, g);
                }
                /* Strided rows: padding that keeps 16-byte alignment and padding that breaks
                 * it; in place; non-finite inputs. */
                rms_case c = {.variant = (rms_variant)v, .dtype = dt, .w = (w_kind)wk, .ndim = 2,
                              .shape = {19, 1024}};
                c.pad = 8;
                run_case(&c, devs, g);
                c.pad = 3;
                run_case(&c, devs, g);
                c.pad = 0;
                c.in_place = true;
                run_case(&c, devs, g);
                c.in_place = false;
                if (rms_variant_has_sum((rms_variant)v)) {
                    /* sum written over x, on the block-row kernel's rows and on the generic
                     * kernel's (unaligned) ones */
                    c.sum_is_x = true;
                    c.shape[1] = 16384;
                    run_case(&c, devs, g);
                    c.pad = 3;
                    c.shape[1] = 1000;
                    run_case(&c, devs, g);
                    c.pad = 0;
                    c.shape[1] = 1024;
                    c.sum_is_x = false;
                }
                c.nonfinite = true;
                c.shape[1] = 2048;
                run_case(&c, devs, g);
            }
        }
    }
    error_cases(devs);
}
