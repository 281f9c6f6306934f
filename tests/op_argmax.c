/* Harness cases for argmax: f32/f16/bf16 rows x single element, odd, padded (unaligned), 3-D,
 * long (a 262144-token vocabulary at B = 1) and many short rows (past 65535); planted ties
 * (the lowest index wins), NaN anywhere (never wins), -0 beside +0 (equal), rows of only -inf
 * (index 0) and of only NaN (-1). Indices are compared exactly. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "test_ops.h"

typedef struct am_case {
    mlxn_dtype dtype;
    int ndim;
    int64_t shape[3], pad;
} am_case;

static bool run_on(const operand *x, const operand *out, test_device *dev, operand *got, char *why, size_t cap)
{
    placed px = {0}, po = {0};
    bool ok = false;
    if (!operand_place(x, dev, &px) || !operand_place(out, dev, &po)) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    mlxn_status st = mlxn_argmax(dev->stream, &px.view, &po.view);
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(&po, dev, out, got)) {
        snprintf(why, cap, "fetching out: %s", mlxn_last_error());
        goto done;
    }
    ok = true;
done:
    placed_free(&px);
    placed_free(&po);
    return ok;
}

/* Row r of x (n elements): normal values with planted specials, the kind chosen by r. */
static void fill_row(operand *x, int64_t r, int64_t n, rng *g)
{
    const int64_t base = r * n;
    const int kind = (int)(r % 6);
    for (int64_t i = 0; i < n; i++) {
        double v = rng_normal(g) * 4;
        if (kind == 4)
            v = -INFINITY;
        else if (kind == 5 && n > 1)
            v = NAN;
        else if (kind == 3)
            v = -fabs(v); /* every value <= 0: the maximum is a zero below */
        operand_set(x, base + i, v);
    }
    if (n < 3 || kind >= 4)
        return;
    const int64_t a = rng_int(g, 0, n - 1), b = rng_int(g, 0, n - 1), c = rng_int(g, 0, n - 1);
    if (kind == 3) { /* -0 and +0 */
        operand_set(x, base + a, -0.0);
        operand_set(x, base + b, 0.0);
        return;
    }
    /* the row's maximum copied to two more places, and NaN (which must not win) */
    double m = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, operand_get(x, base + i));
    operand_set(x, base + a, m);
    operand_set(x, base + b, m);
    operand_set(x, base + c, NAN);
    if (kind == 1)
        operand_set(x, base + rng_int(g, 0, n - 1), INFINITY);
}

static void run_case(const am_case *c, test_devices *devs, rng *g)
{
    char name[200], full[300], why[512], shape[64];
    size_t k = 0;
    for (int i = 0; i < c->ndim; i++)
        k += (size_t)snprintf(shape + k, sizeof shape - k, i ? "x%lld" : "%lld", (long long)c->shape[i]);
    snprintf(name, sizeof name, "argmax/%s/%s%s", mlxn_dtype_name(c->dtype), shape, c->pad ? "/pad" : "");
    const int64_t n = c->shape[c->ndim - 1];
    int64_t rows = 1;
    for (int i = 0; i + 1 < c->ndim; i++)
        rows *= c->shape[i];
    operand x, out;
    memset(&x, 0, sizeof x);
    memset(&out, 0, sizeof out);
    if (!operand_init(&x, c->dtype, c->ndim, c->shape, c->pad, false) ||
        !operand_init(&out, MLXN_DTYPE_I32, 1, &rows, 0, false)) {
        harness_fail(name, "out of memory");
        goto done;
    }
    for (int64_t r = 0; r < rows; r++)
        fill_row(&x, r, n, g);
    for (int64_t r = 0; r < rows; r++)
        operand_set(&out, r, -7); /* poison: no valid answer */
    operand want = {0};
    if (!run_on(&x, &out, &devs->ref, &want, why, sizeof why)) {
        harness_fail(name, "reference: %s", why);
        goto done;
    }
    const tolerance exact = {0, 0, "indices are exact"};
    for (int d = 0; d < devs->count; d++) {
        snprintf(full, sizeof full, "%s @%s", name, devs->list[d].name);
        operand got = {0};
        if (!run_on(&x, &out, &devs->list[d], &got, why, sizeof why))
            harness_fail(full, "%s", why);
        else if (!compare_operands(&got, &want, exact, why, sizeof why))
            harness_fail(full, "out: %s", why);
        else
            harness_pass(full);
        operand_free(&got);
    }
    /* the oracle's own answers follow the rules: spot-check the special rows */
    for (int64_t r = 0; r < rows && n > 1; r++) {
        const int32_t i = (int32_t)operand_get(&want, r);
        const bool ok = r % 6 == 4 ? i == 0 : r % 6 == 5 ? i == -1 : i >= 0 && !isnan(operand_get(&x, r * n + i));
        if (!ok) {
            harness_fail(name, "oracle: row %lld (kind %lld) gave index %d", (long long)r, (long long)(r % 6), i);
            break;
        }
    }
    operand_free(&want);
done:
    operand_free(&x);
    operand_free(&out);
}

static void error_cases(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 16, &b) != MLXN_STATUS_OK)
        return;
    int64_t s48[2] = {4, 8}, s40[2] = {4, 0}, s4[1] = {4}, s5[1] = {5}, s22[2] = {2, 2};
    mlxn_tensor x = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, s48);
    mlxn_tensor x0 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, s40);
    mlxn_tensor xi = mlxn_tensor_make(b, 0, MLXN_DTYPE_I32, 2, s48);
    mlxn_tensor out = mlxn_tensor_make(b, 4096, MLXN_DTYPE_I32, 1, s4);
    mlxn_tensor out5 = mlxn_tensor_make(b, 4096, MLXN_DTYPE_I32, 1, s5);
    mlxn_tensor out22 = mlxn_tensor_make(b, 4096, MLXN_DTYPE_I32, 2, s22);
    mlxn_tensor outf = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F32, 1, s4);
    harness_expect_status("argmax/error/x-dtype", mlxn_argmax(dev->stream, &xi, &out), MLXN_STATUS_ERR_DTYPE,
                          "x is i32");
    harness_expect_status("argmax/error/out-dtype", mlxn_argmax(dev->stream, &x, &outf), MLXN_STATUS_ERR_DTYPE,
                          "out is f32, expected i32");
    harness_expect_status("argmax/error/out-shape", mlxn_argmax(dev->stream, &x, &out5), MLXN_STATUS_ERR_SHAPE,
                          "out has shape 5, expected [4]");
    harness_expect_status("argmax/error/out-dims", mlxn_argmax(dev->stream, &x, &out22), MLXN_STATUS_ERR_SHAPE,
                          "out has shape 2x2");
    harness_expect_status("argmax/error/empty-rows", mlxn_argmax(dev->stream, &x0, &out), MLXN_STATUS_ERR_SHAPE,
                          "0 elements");
    harness_expect_status("argmax/error/null-out", mlxn_argmax(dev->stream, &x, NULL), MLXN_STATUS_ERR_INVALID_ARG,
                          "out is NULL");
    mlxn_buffer_free(b);
}

void test_argmax(test_devices *devs, rng *g)
{
    static const am_case shapes[] = {
        {0, 2, {1, 1}, 0},     {0, 2, {12, 7}, 0},   {0, 2, {6, 33}, 1},       {0, 3, {2, 3, 40}, 0},
        {0, 2, {6, 4095}, 0},  {0, 2, {1, 262144}, 0}, {0, 2, {2, 151936}, 3}, {0, 2, {70000, 3}, 0},
        /* CUDA splits rows of batches up to 32 over many blocks: the smallest split row, a chunk
         * length that is no multiple of 8 (unaligned rows), the largest split batch, the first
         * unsplit one, 128 chunks */
        {0, 2, {1, 4097}, 0},  {0, 2, {3, 70001}, 1}, {0, 2, {32, 9000}, 0},  {0, 2, {33, 5000}, 0},
        {0, 2, {1, 300001}, 0},
    };
    static const mlxn_dtype dts[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    for (int d = 0; d < 3; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            am_case c = shapes[s];
            c.dtype = dts[d];
            run_case(&c, devs, g);
        }
    error_cases(devs);
}
