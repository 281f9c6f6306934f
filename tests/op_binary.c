/* Harness cases for the elementwise binary ops: add, sub, mul, div x f32/f16/bf16 (b of a's
 * dtype or f32) x broadcasts of b (same shape, a row vector, one value per row, middle dims of
 * 4-D shapes, a single value), odd, padded, permuted and single-element views, rows past the
 * 65535 grid limit, in place on a and on b; division by zero gives inf/NaN at matching places. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "test_ops.h"

static const char *op_names[4] = {"add", "sub", "mul", "div"};

typedef struct bin_case {
    mlxn_binop op;
    mlxn_dtype dtype, b_dtype;
    int ndim, b_ndim;
    int64_t shape[4], b_shape[4];
    int64_t pad;
    bool permute;
    int in_place; /* 0: y apart, 1: y is a, 2: y is b */
} bin_case;

typedef struct bin_operands {
    operand a, b, y;
} bin_operands;

static bool run_on(const bin_case *c, const bin_operands *o, test_device *dev, operand *out, char *why, size_t cap)
{
    placed a = {0}, b = {0}, y = {0};
    bool ok = false;
    if (!operand_place(&o->a, dev, &a) || !operand_place(&o->b, dev, &b) || !operand_place(&o->y, dev, &y)) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    const placed *py = c->in_place == 1 ? &a : c->in_place == 2 ? &b : &y;
    mlxn_status st = mlxn_binary(dev->stream, c->op, &a.view, &b.view, &py->view);
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(py, dev, c->in_place == 1 ? &o->a : c->in_place == 2 ? &o->b : &o->y, out)) {
        snprintf(why, cap, "fetching y: %s", mlxn_last_error());
        goto done;
    }
    ok = true;
done:
    placed_free(&a);
    placed_free(&b);
    placed_free(&y);
    return ok;
}

static void shape_name(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t k = 0;
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, i ? "x%lld" : "%lld", (long long)shape[i]);
}

static void run_case(const bin_case *c, test_devices *devs, rng *g)
{
    char name[200], full[300], why[512], as[64], bs[64];
    shape_name(as, sizeof as, c->ndim, c->shape);
    shape_name(bs, sizeof bs, c->b_ndim, c->b_shape);
    snprintf(name, sizeof name, "binary/%s/%s/b=%s/%s/b=%s%s%s%s", op_names[c->op], mlxn_dtype_name(c->dtype),
             mlxn_dtype_name(c->b_dtype), as, bs, c->pad ? "/pad" : "", c->permute ? "/permuted" : "",
             c->in_place == 1 ? "/in-place-a" : c->in_place == 2 ? "/in-place-b" : "");
    bin_operands o;
    memset(&o, 0, sizeof o);
    if (!operand_init(&o.a, c->dtype, c->ndim, c->shape, c->pad, c->permute) ||
        !operand_init(&o.b, c->b_dtype, c->b_ndim, c->b_shape, c->b_ndim == c->ndim ? c->pad : 0,
                      c->b_ndim == c->ndim && c->permute) ||
        !operand_init(&o.y, c->dtype, c->ndim, c->shape, c->pad, c->permute)) {
        harness_fail(name, "out of memory");
        goto done;
    }
    /* activations of a residual stream and its updates; a few exact zeros in both for 0 / 0 and
     * x / 0, and large values that overflow f16 on multiplication */
    for (int64_t i = 0; i < o.a.numel; i++)
        operand_set(&o.a, i, rng_uniform(g) < 0.02 ? 0.0 : rng_normal(g) * (rng_uniform(g) < 0.01 ? 3e3 : 4));
    for (int64_t i = 0; i < o.b.numel; i++) {
        const bool zero = rng_uniform(g) < 0.02 && o.b.numel > 4;
        operand_set(&o.b, i, zero ? 0.0 : rng_normal(g) * (rng_uniform(g) < 0.01 ? 3e3 : 2));
    }
    operand_poison(&o.y);
    operand want = {0};
    if (!run_on(c, &o, &devs->ref, &want, why, sizeof why)) {
        harness_fail(name, "reference: %s", why);
        goto done;
    }
    /* Exact: a + b, a - b, a * b and a / b of f32 values are single IEEE operations, and the
     * oracle's f64 result rounded to f32 is the same number (rounding to 53 then 24 bits is
     * innocuous for these operations, as 53 >= 2 * 24 + 2); f16/bf16 outputs are then rounded
     * once from the same f32 value. */
    const tolerance exact = {0, 0, "one IEEE f32 operation, rounded once to the dtype"};
    for (int d = 0; d < devs->count; d++) {
        snprintf(full, sizeof full, "%s @%s", name, devs->list[d].name);
        operand got = {0};
        if (!run_on(c, &o, &devs->list[d], &got, why, sizeof why))
            harness_fail(full, "%s", why);
        else if (!compare_operands(&got, &want, exact, why, sizeof why))
            harness_fail(full, "y: %s", why);
        else
            harness_pass(full);
        operand_free(&got);
    }
    operand_free(&want);
done:
    operand_free(&o.a);
    operand_free(&o.b);
    operand_free(&o.y);
}

static void error_cases(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_buffer *buf = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 16, &buf) != MLXN_STATUS_OK)
        return;
    int64_t s48[2] = {4, 8}, s38[2] = {3, 8}, s9[1] = {9}, s248[3] = {2, 4, 8}, s49[2] = {4, 9};
    mlxn_tensor a = mlxn_tensor_make(buf, 0, MLXN_DTYPE_F32, 2, s48);
    mlxn_tensor y = mlxn_tensor_make(buf, 4096, MLXN_DTYPE_F32, 2, s48);
    mlxn_tensor b38 = mlxn_tensor_make(buf, 8192, MLXN_DTYPE_F32, 2, s38);
    mlxn_tensor b9 = mlxn_tensor_make(buf, 8192, MLXN_DTYPE_F32, 1, s9);
    mlxn_tensor b3d = mlxn_tensor_make(buf, 8192, MLXN_DTYPE_F32, 3, s248);
    mlxn_tensor b16 = mlxn_tensor_make(buf, 8192, MLXN_DTYPE_F16, 2, s48);
    mlxn_tensor bi = mlxn_tensor_make(buf, 8192, MLXN_DTYPE_I32, 2, s48);
    mlxn_tensor y49 = mlxn_tensor_make(buf, 4096, MLXN_DTYPE_F32, 2, s49);
    mlxn_tensor yh = mlxn_tensor_make(buf, 4096, MLXN_DTYPE_BF16, 2, s48);
    mlxn_tensor ai = mlxn_tensor_make(buf, 0, MLXN_DTYPE_I8, 2, s48);
    harness_expect_status("binary/error/broadcast", mlxn_binary(dev->stream, MLXN_BINOP_ADD, &a, &b38, &y),
                          MLXN_STATUS_ERR_SHAPE, "b has shape 3x8, which does not broadcast to a's shape 4x8");
    harness_expect_status("binary/error/broadcast-inner", mlxn_binary(dev->stream, MLXN_BINOP_ADD, &a, &b9, &y),
                          MLXN_STATUS_ERR_SHAPE, "b has shape 9");
    harness_expect_status("binary/error/b-more-dims", mlxn_binary(dev->stream, MLXN_BINOP_ADD, &a, &b3d, &y),
                          MLXN_STATUS_ERR_SHAPE, "b has shape 2x4x8");
    harness_expect_status("binary/error/b-dtype", mlxn_binary(dev->stream, MLXN_BINOP_MUL, &a, &b16, &y),
                          MLXN_STATUS_ERR_DTYPE, "b is f16, expected f32 (a's dtype) or f32");
    harness_expect_status("binary/error/b-int", mlxn_binary(dev->stream, MLXN_BINOP_MUL, &a, &bi, &y),
                          MLXN_STATUS_ERR_DTYPE, "b is i32");
    harness_expect_status("binary/error/a-dtype", mlxn_binary(dev->stream, MLXN_BINOP_MUL, &ai, &b38, &y),
                          MLXN_STATUS_ERR_DTYPE, "a is i8");
    harness_expect_status("binary/error/y-shape", mlxn_binary(dev->stream, MLXN_BINOP_SUB, &a, &a, &y49),
                          MLXN_STATUS_ERR_SHAPE, "y has shape 4x9, a has shape 4x8");
    harness_expect_status("binary/error/y-dtype", mlxn_binary(dev->stream, MLXN_BINOP_SUB, &a, &a, &yh),
                          MLXN_STATUS_ERR_DTYPE, "y is bf16, a is f32");
    harness_expect_status("binary/error/op", mlxn_binary(dev->stream, (mlxn_binop)7, &a, &a, &y),
                          MLXN_STATUS_ERR_INVALID_ARG, "unknown operation 7");
    harness_expect_status("binary/error/null-b", mlxn_binary(dev->stream, MLXN_BINOP_DIV, &a, NULL, &y),
                          MLXN_STATUS_ERR_INVALID_ARG, "b is NULL");
    harness_expect_status("binary/error/null-y", mlxn_binary(dev->stream, MLXN_BINOP_DIV, &a, &a, NULL),
                          MLXN_STATUS_ERR_INVALID_ARG, "y is NULL");
    mlxn_buffer_free(buf);
}

void test_binary(test_devices *devs, rng *g)
{
    static const struct {
        int ndim, b_ndim;
        int64_t shape[4], b_shape[4], pad;
        bool permute;
    } shapes[] = {
        {1, 1, {1}, {1}, 0, false},                          /* one element */
        {2, 2, {3, 7}, {3, 7}, 0, false},                    /* same shape, odd rows */
        {2, 1, {64, 4096}, {4096}, 0, false},                /* a row vector over every row */
        {2, 2, {5, 33}, {5, 1}, 3, false},                   /* one value per row, padded rows */
        {2, 2, {16, 64}, {16, 1}, 0, false},                 /* one value per row, 16-byte runs */
        {2, 1, {6, 40}, {40}, 0, false},                     /* 16-bit rows of 5 16-byte words */
        {3, 2, {2, 3, 40}, {3, 1}, 0, false},                /* b's dims aligned at the right */
        {4, 4, {2, 3, 4, 16}, {2, 1, 4, 16}, 0, false},      /* a broadcast middle dim */
        {3, 3, {4, 5, 24}, {4, 5, 24}, 0, true},             /* permuted views */
        {3, 1, {3, 4, 40}, {1}, 0, true},                    /* a single value */
    };
    static const mlxn_dtype dts[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    int variant = 0;
    for (int op = 0; op < 4; op++)
        for (int d = 0; d < 3; d++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                bin_case c = {(mlxn_binop)op, dts[d], dts[d], shapes[s].ndim, shapes[s].b_ndim,
                              {0}, {0}, shapes[s].pad, shapes[s].permute, 0};
                memcpy(c.shape, shapes[s].shape, sizeof c.shape);
                memcpy(c.b_shape, shapes[s].b_shape, sizeof c.b_shape);
                if (d > 0 && variant % 2) /* f32 b for 16-bit a: a norm weight or a scale kept in f32 */
                    c.b_dtype = MLXN_DTYPE_F32;
                const bool same = c.ndim == c.b_ndim && !memcmp(c.shape, c.b_shape, sizeof c.shape);
                if (s == 2 || s == 4)
                    c.in_place = 1;
                else if (same && c.b_dtype == c.dtype && s == 1)
                    c.in_place = 2;
                variant++;
                run_case(&c, devs, g);
            }
    /* more rows than a grid's 65535 blocks of 8 rows cover */
    bin_case big = {MLXN_BINOP_ADD, MLXN_DTYPE_F32, MLXN_DTYPE_F32, 2, 1, {600000, 1}, {1}, 0, false, 0};
    run_case(&big, devs, g);
    error_cases(devs);
}
