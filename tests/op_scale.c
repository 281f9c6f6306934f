/* Harness cases for y = alpha * x + beta: f32/f16/bf16 x odd, padded, permuted, single-element
 * and long views, in place, against the oracle on every device. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "test_ops.h"

typedef struct scale_case {
    mlxn_dtype dtype;
    int ndim;
    int64_t shape[3], pad;
    bool permute, in_place;
    float alpha, beta;
} scale_case;

static bool run_on(const scale_case *c, const operand *x, const operand *y, test_device *dev, operand *out, char *why,
                   size_t cap)
{
    placed px = {0}, py = {0};
    bool ok = false;
    if (!operand_place(x, dev, &px) || !operand_place(y, dev, &py)) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    const placed *dst = c->in_place ? &px : &py;
    mlxn_status st = mlxn_scale(dev->stream, &px.view, c->alpha, c->beta, &dst->view);
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(dst, dev, c->in_place ? x : y, out)) {
        snprintf(why, cap, "fetching y: %s", mlxn_last_error());
        goto done;
    }
    ok = true;
done:
    placed_free(&px);
    placed_free(&py);
    return ok;
}

static void run_case(const scale_case *c, test_devices *devs, rng *g)
{
    char name[200], full[300], why[512], shape[64];
    size_t k = 0;
    for (int i = 0; i < c->ndim; i++)
        k += (size_t)snprintf(shape + k, sizeof shape - k, i ? "x%lld" : "%lld", (long long)c->shape[i]);
    snprintf(name, sizeof name, "scale/%s/%s/alpha=%g/beta=%g%s%s%s", mlxn_dtype_name(c->dtype), shape,
             (double)c->alpha, (double)c->beta, c->pad ? "/pad" : "", c->permute ? "/permuted" : "",
             c->in_place ? "/in-place" : "");
    operand x, y;
    memset(&x, 0, sizeof x);
    memset(&y, 0, sizeof y);
    if (!operand_init(&x, c->dtype, c->ndim, c->shape, c->pad, c->permute) ||
        !operand_init(&y, c->dtype, c->ndim, c->shape, c->pad, c->permute)) {
        harness_fail(name, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < x.numel; i++)
        operand_set(&x, i, rng_normal(g) * 6);
    operand_poison(&y);
    operand want = {0};
    if (!run_on(c, &x, &y, &devs->ref, &want, why, sizeof why)) {
        harness_fail(name, "reference: %s", why);
        goto done;
    }
    /* one fused multiply-add in f32 against the oracle's f64 alpha * x + beta rounded through
     * f32: at most one f32 rounding apart, then one rounding to the dtype */
    const tolerance tol = tolerance_for(c->dtype);
    for (int d = 0; d < devs->count; d++) {
        snprintf(full, sizeof full, "%s @%s", name, devs->list[d].name);
        operand got = {0};
        if (!run_on(c, &x, &y, &devs->list[d], &got, why, sizeof why))
            harness_fail(full, "%s", why);
        else if (!compare_operands(&got, &want, tol, why, sizeof why))
            harness_fail(full, "y: %s", why);
        else
            harness_pass(full);
        operand_free(&got);
    }
    operand_free(&want);
done:
    operand_free(&x);
    operand_free(&y);
}

static void error_cases(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 16, &b) != MLXN_STATUS_OK)
        return;
    int64_t s1[2] = {4, 8}, s2[2] = {4, 9};
    mlxn_tensor x = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, s1);
    mlxn_tensor y = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F32, 2, s1);
    mlxn_tensor y9 = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F32, 2, s2);
    mlxn_tensor yh = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F16, 2, s1);
    mlxn_tensor xi = mlxn_tensor_make(b, 0, MLXN_DTYPE_I32, 2, s1);
    harness_expect_status("scale/error/y-shape", mlxn_scale(dev->stream, &x, 2, 0, &y9), MLXN_STATUS_ERR_SHAPE,
                          "y has shape 4x9, x has shape 4x8");
    harness_expect_status("scale/error/y-dtype", mlxn_scale(dev->stream, &x, 2, 0, &yh), MLXN_STATUS_ERR_DTYPE,
                          "y is f16, x is f32");
    harness_expect_status("scale/error/x-dtype", mlxn_scale(dev->stream, &xi, 2, 0, &y), MLXN_STATUS_ERR_DTYPE,
                          "x is i32");
    harness_expect_status("scale/error/alpha", mlxn_scale(dev->stream, &x, NAN, 0, &y), MLXN_STATUS_ERR_INVALID_ARG,
                          "alpha nan");
    harness_expect_status("scale/error/beta", mlxn_scale(dev->stream, &x, 1, -INFINITY, &y),
                          MLXN_STATUS_ERR_INVALID_ARG, "beta -inf");
    harness_expect_status("scale/error/null-y", mlxn_scale(dev->stream, &x, 1, 0, NULL), MLXN_STATUS_ERR_INVALID_ARG,
                          "y is NULL");
    mlxn_buffer_free(b);
}

void test_scale(test_devices *devs, rng *g)
{
    static const struct {
        int ndim;
        int64_t shape[3], pad;
        bool permute;
    } shapes[] = {
        {1, {1}, 0, false},       {2, {3, 7}, 0, false},    {2, {5, 33}, 3, false},
        {2, {64, 4096}, 0, false}, {3, {3, 4, 40}, 0, true}, {2, {200000, 1}, 0, false},
        {2, {6, 40}, 0, false}, /* 16-bit rows of 5 16-byte words: 8-element runs */
    };
    static const float ab[3][2] = {{0.125f, 0.0f}, {-1.5f, 0.75f}, {1.0f, -3.0f}};
    static const mlxn_dtype dts[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    int variant = 0;
    for (int d = 0; d < 3; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++, variant++) {
            scale_case c = {dts[d], shapes[s].ndim, {shapes[s].shape[0], shapes[s].shape[1], shapes[s].shape[2]},
                            shapes[s].pad, shapes[s].permute, s == 3, ab[variant % 3][0], ab[variant % 3][1]};
            run_case(&c, devs, g);
        }
    error_cases(devs);
}
