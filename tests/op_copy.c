/* Harness cases for the layout ops: mlxn_copy (every dtype pair, contiguous, padded rows, strided
 * innermost dims, repeated (stride-0) inputs, special values), mlxn_permute (ranks 1..4, every
 * permutation of rank 3, odd sizes, tiles past the grid limits), mlxn_concat (along every dim,
 * mixed dtypes, empty parts, strided parts) and mlxn_tensor_slice; errors. Copies and casts are
 * exact (one rounding to nearest even, the same on every backend), so the tolerance is 0. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "test_ops.h"

static const tolerance exact = {0, 0, "a copy or one round-to-nearest-even cast: exact on every backend"};

static void shape_name(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, i ? "x%lld" : "%lld", (long long)shape[i]);
}

/* Random values of the range a model's activations take, and every 13th element a special
 * value: infinities, NaN, values past the f16 range, subnormals of f16 and of f32. */
static void fill_values(operand *o, rng *g)
{
    static const double special[] = {INFINITY, -INFINITY, NAN, 70000.0, 65520.0, -65504.0, 3e-6, -2e-40, 0.0, -0.0};
    for (int64_t i = 0; i < o->numel; i++) {
        if (o->dtype == MLXN_DTYPE_I32)
            operand_set(o, i, (double)rng_int(g, -2000000000, 2000000000));
        else if (i % 13 == 5)
            operand_set(o, i, special[rng_int(g, 0, sizeof special / sizeof special[0] - 1)]);
        else
            operand_set(o, i, rng_normal(g) * 4.0);
    }
}

/* ---------------------------------------------------------------- copy */

static mlxn_status issue_copy(void *ctx, mlxn_stream *s, const mlxn_tensor *v)
{
    (void)ctx;
    return mlxn_copy(s, &v[0], &v[1]);
}

static void copy_case(test_devices *devs, rng *g, const char *what, operand *x, operand *y)
{
    char name[200], shape[64];
    shape_name(shape, sizeof shape, x->ndim, x->shape);
    snprintf(name, sizeof name, "copy/%s/%s->%s/%s", what, mlxn_dtype_name(x->dtype), mlxn_dtype_name(y->dtype), shape);
    fill_values(x, g);
    operand_poison(y);
    operand ops[2] = {*x, *y};
    harness_op_case c = {ops, 2, 1, issue_copy, NULL};
    harness_run_op_case(name, devs, &c, exact);
    operand_free(x);
    operand_free(y);
}

static void copy_cases(test_devices *devs, rng *g)
{
    static const mlxn_dtype fl[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    static const struct {
        int ndim;
        int64_t shape[4], pad;
        bool permute;
    } shapes[] = {
        {1, {1}, 0, false},          {1, {7}, 0, false},           {2, {3, 5}, 3, false},
        {4, {2, 3, 4, 5}, 1, true},  {1, {100003}, 0, false},      {2, {600000, 3}, 2, false},
        {3, {5, 7, 64}, 8, true},
    };
    operand x, y;
    for (int xd = 0; xd < 4; xd++)
        for (int yd = 0; yd < 4; yd++) {
            if ((xd == 3) != (yd == 3))
                continue; /* i32 copies only to i32 */
            const mlxn_dtype xt = xd == 3 ? MLXN_DTYPE_I32 : fl[xd], yt = yd == 3 ? MLXN_DTYPE_I32 : fl[yd];
            for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
                /* x padded / permuted, y contiguous; and the other way round */
                const bool flip = k % 2;
                if (!operand_init(&x, xt, shapes[k].ndim, shapes[k].shape, flip ? 0 : shapes[k].pad,
                                  !flip && shapes[k].permute) ||
                    !operand_init(&y, yt, shapes[k].ndim, shapes[k].shape, flip ? shapes[k].pad : 0,
                                  flip && shapes[k].permute)) {
                    harness_fail("copy", "out of memory");
                    return;
                }
                copy_case(devs, g, flip ? "into-strided" : "from-strided", &x, &y);
            }
        }
    /* innermost dims with a stride: every other element of x into every third of y */
    for (int d = 0; d < 4; d++) {
        const mlxn_dtype xt = d == 3 ? MLXN_DTYPE_I32 : fl[d], yt = d == 3 ? MLXN_DTYPE_I32 : fl[(d + 1) % 3];
        const int64_t shape[3] = {3, 5, 33}, xs[3] = {5 * 70, 70, 2}, ys[3] = {5 * 100, 100, 3};
        if (!operand_init_strided(&x, xt, 3, shape, xs, 1, 3 * 5 * 70) ||
            !operand_init_strided(&y, yt, 3, shape, ys, 2, 3 * 5 * 100 + 2)) {
            harness_fail("copy", "out of memory");
            return;
        }
        copy_case(devs, g, "strided-innermost", &x, &y);
    }
    /* x repeats its rows (stride 0): a broadcast copied out */
    for (int d = 0; d < 3; d++) {
        const int64_t shape[3] = {4, 6, 129}, xs[3] = {0, 129, 1};
        if (!operand_init_strided(&x, fl[d], 3, shape, xs, 0, 6 * 129) ||
            !operand_init(&y, fl[(d + 2) % 3], 3, shape, 0, false)) {
            harness_fail("copy", "out of memory");
            return;
        }
        copy_case(devs, g, "repeated-rows", &x, &y);
    }
}

/* ---------------------------------------------------------------- permute */

typedef struct permute_ctx {
    int perm[4];
} permute_ctx;

static mlxn_status issue_permute(void *ctx, mlxn_stream *s, const mlxn_tensor *v)
{
    const permute_ctx *c = ctx;
    return mlxn_permute(s, &v[0], c->perm, &v[1]);
}

static void permute_case(test_devices *devs, rng *g, mlxn_dtype xt, mlxn_dtype yt, int ndim, const int64_t *shape,
                         const int *perm, int64_t pad)
{
    char name[200], sh[64], ps[32];
    int64_t yshape[4];
    size_t k = 0;
    for (int i = 0; i < ndim; i++) {
        yshape[i] = shape[perm[i]];
        k += (size_t)snprintf(ps + k, sizeof ps - k, "%d", perm[i]);
    }
    shape_name(sh, sizeof sh, ndim, shape);
    snprintf(name, sizeof name, "permute/%s->%s/%s/perm%s%s", mlxn_dtype_name(xt), mlxn_dtype_name(yt), sh, ps,
             pad ? "/padded" : "");
    operand ops[2];
    if (!operand_init(&ops[0], xt, ndim, shape, pad, false) || !operand_init(&ops[1], yt, ndim, yshape, pad, false)) {
        harness_fail(name, "out of memory");
        return;
    }
    fill_values(&ops[0], g);
    operand_poison(&ops[1]);
    permute_ctx c = {{0}};
    memcpy(c.perm, perm, (size_t)ndim * sizeof *perm);
    harness_op_case oc = {ops, 2, 1, issue_permute, &c};
    harness_run_op_case(name, devs, &oc, exact);
    operand_free(&ops[0]);
    operand_free(&ops[1]);
}

static void permute_cases(test_devices *devs, rng *g)
{
    static const int p1[1] = {0}, p2[2] = {1, 0};
    static const int p3[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    static const int p4[4][4] = {{0, 2, 1, 3}, {3, 2, 1, 0}, {0, 1, 3, 2}, {2, 0, 3, 1}};
    const int64_t s1[1] = {37};
    permute_case(devs, g, MLXN_DTYPE_F32, MLXN_DTYPE_F32, 1, s1, p1, 0);
    /* 2-D transposes: odd sizes around the 32-element tiles, a row, a column, and one with more
     * tiles along one dim than a grid dimension holds (2^16 - 1) */
    const int64_t s2[][2] = {{37, 45}, {1, 67}, {67, 1}, {515, 1029}, {64, 96}, {2, 2100000}};
    static const mlxn_dtype dts[][2] = {{MLXN_DTYPE_F32, MLXN_DTYPE_F32}, {MLXN_DTYPE_F16, MLXN_DTYPE_F16},
                                        {MLXN_DTYPE_BF16, MLXN_DTYPE_F32}, {MLXN_DTYPE_F32, MLXN_DTYPE_BF16},
                                        {MLXN_DTYPE_I32, MLXN_DTYPE_I32},  {MLXN_DTYPE_F16, MLXN_DTYPE_BF16}};
    for (size_t k = 0; k < sizeof s2 / sizeof s2[0]; k++)
        for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++)
            if (k != 5 || d == 1 || d == 4 || d == 5) /* the largest only with 16-bit and i32 x */
                permute_case(devs, g, dts[d][0], dts[d][1], 2, s2[k], p2, k == 0 ? 3 : 0);
    const int64_t s3[][3] = {{3, 5, 7}, {2, 33, 65}, {130, 3, 40}};
    for (size_t k = 0; k < sizeof s3 / sizeof s3[0]; k++)
        for (int p = 0; p < 6; p++)
            permute_case(devs, g, dts[(k + (size_t)p) % 6][0], dts[(k + (size_t)p) % 6][1], 3, s3[k], p3[p],
                         k == 1 ? 2 : 0);
    /* 4-D: [B, T, H, D] <-> [B, H, T, D] (attention heads) and others */
    const int64_t s4[][4] = {{2, 33, 5, 64}, {3, 4, 5, 6}, {1, 17, 3, 129}};
    for (size_t k = 0; k < sizeof s4 / sizeof s4[0]; k++)
        for (int p = 0; p < 4; p++)
            permute_case(devs, g, dts[((size_t)p + k) % 6][0], dts[((size_t)p + k) % 6][1], 4, s4[k], p4[p],
                         k == 2 ? 5 : 0);
}

/* ---------------------------------------------------------------- concat */

typedef struct concat_ctx {
    int n, dim;
} concat_ctx;

static mlxn_status issue_concat(void *ctx, mlxn_stream *s, const mlxn_tensor *v)
{
    const concat_ctx *c = ctx;
    const mlxn_tensor *xs[HARNESS_MAX_OPERANDS];
    for (int i = 0; i < c->n; i++)
        xs[i] = &v[i];
    return mlxn_concat(s, xs, c->n, c->dim, &v[c->n]);
}

static void concat_case(test_devices *devs, rng *g, int ndim, const int64_t *shape, int dim, int n,
                        const int64_t *sizes, const mlxn_dtype *dts, mlxn_dtype yt, bool strided)
{
    char name[200], sh[64];
    shape_name(sh, sizeof sh, ndim, shape);
    size_t k = (size_t)snprintf(name, sizeof name, "concat/%s/dim%d/", sh, dim);
    for (int i = 0; i < n; i++)
        k += (size_t)snprintf(name + k, sizeof name - k, "%s%lld%s", i ? "+" : "", (long long)sizes[i],
                              mlxn_dtype_name(dts[i]));
    snprintf(name + k, sizeof name - k, "->%s%s", mlxn_dtype_name(yt), strided ? "/strided" : "");
    operand ops[HARNESS_MAX_OPERANDS];
    memset(ops, 0, sizeof ops);
    int64_t ys[4];
    memcpy(ys, shape, (size_t)ndim * sizeof *ys);
    ys[dim] = 0;
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        int64_t xs[4];
        memcpy(xs, shape, (size_t)ndim * sizeof *xs);
        xs[dim] = sizes[i];
        ys[dim] += sizes[i];
        ok = operand_init(&ops[i], dts[i], ndim, xs, strided ? 3 : 0, strided && i == 0);
        if (ok)
            fill_values(&ops[i], g);
    }
    ok = ok && operand_init(&ops[n], yt, ndim, ys, strided ? 1 : 0, false);
    if (!ok) {
        harness_fail(name, "out of memory");
    } else {
        operand_poison(&ops[n]);
        concat_ctx c = {n, dim};
        harness_op_case oc = {ops, n + 1, n, issue_concat, &c};
        harness_run_op_case(name, devs, &oc, exact);
    }
    for (int i = 0; i <= n; i++)
        operand_free(&ops[i]);
}

static void concat_cases(test_devices *devs, rng *g)
{
    const mlxn_dtype f32 = MLXN_DTYPE_F32, f16 = MLXN_DTYPE_F16, bf16 = MLXN_DTYPE_BF16, i32 = MLXN_DTYPE_I32;
    {
        const int64_t shape[1] = {0}, sizes[3] = {5, 1, 300};
        const mlxn_dtype d[3] = {f32, f16, bf16};
        concat_case(devs, g, 1, shape, 0, 3, sizes, d, f32, false);
    }
    {
        const int64_t shape[2] = {7, 0}, sizes[2] = {64, 64}, sizes3[3] = {3, 0, 61};
        const mlxn_dtype d[3] = {bf16, bf16, bf16}, di[3] = {i32, i32, i32};
        concat_case(devs, g, 2, shape, 1, 2, sizes, d, bf16, false);
        concat_case(devs, g, 2, shape, 1, 3, sizes3, di, i32, true);
    }
    {
        const int64_t shape[3] = {0, 5, 33}, sizes[2] = {2, 3};
        const mlxn_dtype d[2] = {f16, f32};
        concat_case(devs, g, 3, shape, 0, 2, sizes, d, f16, true);
    }
    {
        /* [B, T, H, D]: heads of q, k and v side by side, and the KV of two steps along T */
        const int64_t shape[4] = {2, 9, 0, 64}, sizes[3] = {4, 1, 1};
        const mlxn_dtype d[3] = {bf16, bf16, f32};
        concat_case(devs, g, 4, shape, 2, 3, sizes, d, bf16, false);
        const int64_t shape_t[4] = {2, 0, 3, 40}, sizes_t[2] = {7, 1};
        const mlxn_dtype dt[2] = {f32, f32};
        concat_case(devs, g, 4, shape_t, 1, 2, sizes_t, dt, f32, true);
        const int64_t shape_d[4] = {1, 3, 5, 0}, sizes_d[1] = {17};
        concat_case(devs, g, 4, shape_d, 3, 1, sizes_d, dt, f16, false);
    }
}

/* ---------------------------------------------------------------- slices, in place, errors */

static void slice_checks(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 16, &b) != MLXN_STATUS_OK) {
        harness_fail("copy/slice", "buffer: %s", mlxn_last_error());
        return;
    }
    const int64_t shape[3] = {4, 6, 10}, qshape[2] = {4, 64};
    mlxn_tensor t = mlxn_tensor_make(b, 128, MLXN_DTYPE_F16, 3, shape), s;
    mlxn_status st = mlxn_tensor_slice(&t, 1, 2, 3, &s);
    if (st != MLXN_STATUS_OK || s.offset != 128 + 2 * 20 || s.shape[1] != 3 || s.shape[0] != 4 || s.shape[2] != 10 ||
        s.stride[1] != 20 || s.stride[0] != 120 || s.buffer != b)
        harness_fail("copy/slice/middle-dim", "status %s, offset %zu, shape %lldx%lldx%lld", mlxn_status_str(st),
                     s.offset, (long long)s.shape[0], (long long)s.shape[1], (long long)s.shape[2]);
    else
        harness_pass("copy/slice/middle-dim");
    st = mlxn_tensor_slice(&t, 2, 10, 0, &s);
    if (st != MLXN_STATUS_OK || s.offset != 128 + 20 || s.shape[2] != 0)
        harness_fail("copy/slice/empty-at-end", "status %s, offset %zu", mlxn_status_str(st), s.offset);
    else
        harness_pass("copy/slice/empty-at-end");
    mlxn_tensor q = mlxn_tensor_make(b, 0, MLXN_DTYPE_Q8_0, 2, qshape);
    st = mlxn_tensor_slice(&q, 1, 32, 32, &s);
    if (st != MLXN_STATUS_OK || s.offset != 34 || s.shape[1] != 32)
        harness_fail("copy/slice/q8_0-block", "status %s, offset %zu", mlxn_status_str(st), s.offset);
    else
        harness_pass("copy/slice/q8_0-block");
    harness_expect_status("copy/slice/error/past-end", mlxn_tensor_slice(&t, 1, 4, 3, &s), MLXN_STATUS_ERR_SHAPE,
                          "outside its 6 elements");
    harness_expect_status("copy/slice/error/negative", mlxn_tensor_slice(&t, 0, -1, 1, &s), MLXN_STATUS_ERR_SHAPE,
                          "outside");
    harness_expect_status("copy/slice/error/dim", mlxn_tensor_slice(&t, 3, 0, 1, &s), MLXN_STATUS_ERR_SHAPE,
                          "dim is 3");
    harness_expect_status("copy/slice/error/q-block", mlxn_tensor_slice(&q, 1, 16, 32, &s), MLXN_STATUS_ERR_SHAPE,
                          "multiples of its block (32)");
    harness_expect_status("copy/slice/error/null", mlxn_tensor_slice(&t, 0, 0, 1, NULL), MLXN_STATUS_ERR_INVALID_ARG,
                          "out is NULL");
    if (s.buffer != NULL)
        harness_fail("copy/slice/error/zeroed", "a failed slice left a view behind");
    else
        harness_pass("copy/slice/error/zeroed");
    mlxn_buffer_free(b);
}

static mlxn_status issue_copy_in_place(void *ctx, mlxn_stream *s, const mlxn_tensor *v)
{
    (void)ctx;
    return mlxn_copy(s, &v[0], &v[0]);
}

static void error_cases(test_devices *devs, rng *g)
{
    /* the same view as x and y: nothing changes */
    operand x;
    const int64_t shape3[3] = {3, 4, 5};
    if (operand_init(&x, MLXN_DTYPE_BF16, 3, shape3, 2, true)) {
        fill_values(&x, g);
        harness_op_case c = {&x, 1, 0, issue_copy_in_place, NULL};
        harness_run_op_case("copy/in-place/bf16/3x4x5", devs, &c, exact);
        operand_free(&x);
    }
    test_device *dev = &devs->ref;
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 16, &b) != MLXN_STATUS_OK)
        return;
    mlxn_stream *s = dev->stream;
    const int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, s24[2] = {2, 4}, s33[2] = {3, 3}, s64[1] = {64};
    mlxn_tensor x23 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, s23);
    mlxn_tensor y23 = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F32, 2, s23);
    mlxn_tensor y32 = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F32, 2, s32);
    mlxn_tensor y24 = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F32, 2, s24);
    mlxn_tensor y33 = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F32, 2, s33);
    const int64_t s43[2] = {4, 3};
    mlxn_tensor y43 = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F32, 2, s43);
    mlxn_tensor i23 = mlxn_tensor_make(b, 8192, MLXN_DTYPE_I32, 2, s23);
    mlxn_tensor q64 = mlxn_tensor_make(b, 8192, MLXN_DTYPE_Q8_0, 1, s64);
    mlxn_tensor y64 = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F32, 1, s64);
    mlxn_tensor yrep = y23;
    yrep.stride[0] = 0;
    harness_expect_status("copy/error/shape", mlxn_copy(s, &x23, &y32), MLXN_STATUS_ERR_SHAPE,
                          "y has shape 3x2, expected 2x3");
    harness_expect_status("copy/error/f32-to-i32", mlxn_copy(s, &x23, &i23), MLXN_STATUS_ERR_DTYPE,
                          "x is f32 and y i32");
    harness_expect_status("copy/error/quantized", mlxn_copy(s, &q64, &y64), MLXN_STATUS_ERR_DTYPE, "x is q8_0");
    harness_expect_status("copy/error/null-y", mlxn_copy(s, &x23, NULL), MLXN_STATUS_ERR_INVALID_ARG, "y is NULL");
    harness_expect_status("copy/error/null-x", mlxn_copy(s, NULL, &y23), MLXN_STATUS_ERR_INVALID_ARG, "x is NULL");
    harness_expect_status("copy/error/null-stream", mlxn_copy(NULL, &x23, &y23), MLXN_STATUS_ERR_INVALID_ARG,
                          "stream is NULL");
    harness_expect_status("copy/error/y-overlaps-itself", mlxn_copy(s, &x23, &yrep), MLXN_STATUS_ERR_SHAPE,
                          "must not repeat elements");
    const int perm_dup[2] = {0, 0}, perm_big[2] = {1, 2}, perm_t[2] = {1, 0};
    harness_expect_status("permute/error/duplicate", mlxn_permute(s, &x23, perm_dup, &y32),
                          MLXN_STATUS_ERR_INVALID_ARG, "perm[1] is 0");
    harness_expect_status("permute/error/range", mlxn_permute(s, &x23, perm_big, &y32), MLXN_STATUS_ERR_INVALID_ARG,
                          "perm[1] is 2");
    harness_expect_status("permute/error/null-perm", mlxn_permute(s, &x23, NULL, &y32), MLXN_STATUS_ERR_INVALID_ARG,
                          "perm is NULL");
    harness_expect_status("permute/error/shape", mlxn_permute(s, &x23, perm_t, &y23), MLXN_STATUS_ERR_SHAPE,
                          "y has shape 2x3, expected 3x2");
    harness_expect_status("permute/error/rank", mlxn_permute(s, &x23, perm_t, &y64), MLXN_STATUS_ERR_SHAPE,
                          "y has 1 dims, x has 2");
    const mlxn_tensor *two[2] = {&x23, &x23}, *with_null[2] = {&x23, NULL}, *one_i32[2] = {&x23, &i23};
    harness_expect_status("concat/error/sum", mlxn_concat(s, two, 2, 1, &y24), MLXN_STATUS_ERR_SHAPE,
                          "add up to more than y's 4 (at xs[1])");
    harness_expect_status("concat/error/sum-short", mlxn_concat(s, two, 2, 0, &y24), MLXN_STATUS_ERR_SHAPE,
                          "xs[0] has shape 2x3, expected y's shape 2x4 but along dim 0");
    harness_expect_status("concat/error/too-few", mlxn_concat(s, two, 1, 0, &y33), MLXN_STATUS_ERR_SHAPE,
                          "add up to 2, y has 3");
    harness_expect_status("concat/error/dim", mlxn_concat(s, two, 2, 2, &y24), MLXN_STATUS_ERR_INVALID_ARG,
                          "dim is 2, y has 2 dims");
    harness_expect_status("concat/error/null-part", mlxn_concat(s, with_null, 2, 1, &y24),
                          MLXN_STATUS_ERR_INVALID_ARG, "xs[1] is NULL");
    harness_expect_status("concat/error/n", mlxn_concat(s, two, 0, 1, &y24), MLXN_STATUS_ERR_INVALID_ARG, "n < 1");
    harness_expect_status("concat/error/dtype", mlxn_concat(s, one_i32, 2, 0, &y43), MLXN_STATUS_ERR_DTYPE,
                          "xs[1] is i32 and y f32");
    mlxn_buffer_free(b);
}

void test_copy(test_devices *devs, rng *g)
{
    copy_cases(devs, g);
    permute_cases(devs, g);
    concat_cases(devs, g);
    slice_checks(devs);
    error_cases(devs, g);
}
