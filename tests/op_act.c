/* Harness cases for the activations: every activation x plain and gated (GLU) x dtype x shape
 * (single element, odd rows, padded and 3-D permuted views, long rows), in place, against the
 * oracle on every device; inputs span [-8, 8] where the functions bend and saturate. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "test_ops.h"

typedef struct act_case {
    mlxn_act act;
    bool glu, in_place;
    mlxn_dtype dtype;
    int ndim;
    int64_t shape[3];
    int64_t pad;
    bool permute;
} act_case;

typedef struct act_operands {
    operand x, up, y;
} act_operands;

static bool run_on(const act_case *c, const act_operands *o, test_device *dev, operand *out, operand *x_out,
                   char *why, size_t cap)
{
    placed x = {0}, up = {0}, y = {0};
    bool ok = false;
    if (!operand_place(&o->x, dev, &x) || !operand_place(&o->up, dev, &up) || !operand_place(&o->y, dev, &y)) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    const placed *py = c->in_place ? &x : &y;
    mlxn_status st = c->glu ? mlxn_glu(dev->stream, c->act, &x.view, &up.view, &py->view)
                            : mlxn_activation(dev->stream, c->act, &x.view, &py->view);
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(py, dev, c->in_place ? &o->x : &o->y, out) || !placed_fetch(&x, dev, &o->x, x_out)) {
        snprintf(why, cap, "fetching y: %s", mlxn_last_error());
        goto done;
    }
    ok = true;
done:
    placed_free(&x);
    placed_free(&up);
    placed_free(&y);
    return ok;
}

static void run_case(const act_case *c, test_devices *devs, rng *g)
{
    char name[200], full[260], why[512], shape[64];
    size_t k = 0;
    for (int i = 0; i < c->ndim; i++)
        k += (size_t)snprintf(shape + k, sizeof shape - k, i ? "x%lld" : "%lld", (long long)c->shape[i]);
    snprintf(name, sizeof name, "%s/%s/%s/%s%s%s%s", c->glu ? "glu" : "act", mlxn_act_name(c->act),
             mlxn_dtype_name(c->dtype), shape, c->pad ? "/pad" : "", c->permute ? "/permuted" : "",
             c->in_place ? "/in-place" : "");
    act_operands o;
    memset(&o, 0, sizeof o);
    if (!operand_init(&o.x, c->dtype, c->ndim, c->shape, c->pad, c->permute) ||
        !operand_init(&o.up, c->dtype, c->ndim, c->shape, c->pad + 3, false) ||
        !operand_init(&o.y, c->dtype, c->ndim, c->shape, c->pad, c->permute)) {
        harness_fail(name, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < o.x.numel; i++) {
        operand_set(&o.x, i, (rng_uniform(g) * 2 - 1) * 8);
        operand_set(&o.up, i, rng_normal(g));
    }
    operand_poison(&o.y);
    operand want = {0}, want_x = {0};
    if (!run_on(c, &o, &devs->ref, &want, &want_x, why, sizeof why)) {
        harness_fail(name, "reference: %s", why);
        goto done;
    }
    /* f32: in the saturated tails the exp/erfc arguments reach ~50 and amplify the f32
     * rounding of the argument (2^-24 relative) about 50-fold for a lone element */
    const tolerance tol = c->dtype == MLXN_DTYPE_F32
                              ? (tolerance){1e-5, 2e-5, "f32 activation: tail conditioning, ~50 ulp"}
                              : tolerance_for(c->dtype);
    for (int d = 0; d < devs->count; d++) {
        snprintf(full, sizeof full, "%s @%s", name, devs->list[d].name);
        operand got = {0}, got_x = {0};
        if (!run_on(c, &o, &devs->list[d], &got, &got_x, why, sizeof why))
            harness_fail(full, "%s", why);
        else if (!compare_operands(&got, &want, tol, why, sizeof why))
            harness_fail(full, "y: %s", why);
        else if (!c->in_place && memcmp(got_x.image, o.x.image, o.x.bytes))
            harness_fail(full, "x was modified");
        else
            harness_pass(full);
        operand_free(&got);
        operand_free(&got_x);
    }
    operand_free(&want);
    operand_free(&want_x);
done:
    operand_free(&o.x);
    operand_free(&o.up);
    operand_free(&o.y);
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
    harness_expect_status("act/error/shape", mlxn_activation(dev->stream, MLXN_ACT_SILU, &x, &y9),
                          MLXN_STATUS_ERR_SHAPE, "y has shape 4x9, x has shape 4x8");
    harness_expect_status("act/error/dtype", mlxn_activation(dev->stream, MLXN_ACT_SILU, &x, &yh),
                          MLXN_STATUS_ERR_DTYPE, "y is f16, x is f32");
    harness_expect_status("act/error/int", mlxn_activation(dev->stream, MLXN_ACT_SILU, &xi, &xi),
                          MLXN_STATUS_ERR_DTYPE, "x is i32");
    harness_expect_status("act/error/unknown", mlxn_activation(dev->stream, (mlxn_act)9, &x, &y),
                          MLXN_STATUS_ERR_INVALID_ARG, "unknown activation 9");
    harness_expect_status("act/error/null-y", mlxn_activation(dev->stream, MLXN_ACT_SILU, &x, NULL),
                          MLXN_STATUS_ERR_INVALID_ARG, "y is NULL");
    harness_expect_status("glu/error/null-up", mlxn_glu(dev->stream, MLXN_ACT_SILU, &x, NULL, &y),
                          MLXN_STATUS_ERR_INVALID_ARG, "up is NULL");
    harness_expect_status("glu/error/up-shape", mlxn_glu(dev->stream, MLXN_ACT_SILU, &x, &y9, &y),
                          MLXN_STATUS_ERR_SHAPE, "up has shape 4x9");
    mlxn_buffer_free(b);
}

void test_act(test_devices *devs, rng *g)
{
    static const struct {
        int ndim;
        int64_t shape[3], pad;
        bool permute;
    } shapes[] = {
        {1, {1}, 0, false},         {2, {3, 7}, 0, false},  {2, {5, 33}, 3, false},
        {2, {64, 4096}, 8, false},  {3, {3, 4, 40}, 0, true}, {2, {2, 16384}, 0, false},
        {2, {6, 40}, 0, false}, /* 16-bit rows of 5 16-byte words: 8-element runs, not 32-byte ones */
    };
    static const mlxn_dtype dts[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    for (int act = 0; act < MLXN_ACT_COUNT; act++)
        for (int glu = 0; glu < 2; glu++)
            for (int d = 0; d < 3; d++)
                for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                    act_case c = {(mlxn_act)act, glu != 0, s == 2 && d == 0, dts[d], shapes[s].ndim,
                                  {shapes[s].shape[0], shapes[s].shape[1], shapes[s].shape[2]},
                                  shapes[s].pad, shapes[s].permute};
                    run_case(&c, devs, g);
                }
    error_cases(devs);
}
