/* Harness cases for mlxn_l2_norm: f32/f16/bf16; single element, odd, padded, permuted and long
 * rows, more rows than a grid dimension holds; a row of zeros and an eps larger than some rows'
 * norms (the max picks eps); in place; errors. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "test_ops.h"

typedef struct l2_ctx {
    float eps;
    bool in_place;
} l2_ctx;

static mlxn_status issue_l2(void *ctx, mlxn_stream *s, const mlxn_tensor *v)
{
    const l2_ctx *c = ctx;
    return mlxn_l2_norm(s, &v[0], c->eps, c->in_place ? &v[0] : &v[1]);
}

static void l2_case(test_devices *devs, rng *g, mlxn_dtype dt, int ndim, const int64_t *shape, int64_t pad,
                    bool permute, float eps, bool in_place)
{
    char name[200], sh[64];
    size_t k = 0;
    for (int i = 0; i < ndim; i++)
        k += (size_t)snprintf(sh + k, sizeof sh - k, i ? "x%lld" : "%lld", (long long)shape[i]);
    snprintf(name, sizeof name, "l2_norm/%s/%s/eps%g%s%s%s", mlxn_dtype_name(dt), sh, (double)eps, pad ? "/pad" : "",
             permute ? "/permuted" : "", in_place ? "/in-place" : "");
    operand ops[2];
    if (!operand_init(&ops[0], dt, ndim, shape, pad, permute) || !operand_init(&ops[1], dt, ndim, shape, pad, permute)) {
        harness_fail(name, "out of memory");
        return;
    }
    const int64_t n = shape[ndim - 1];
    for (int64_t i = 0; i < ops[0].numel; i++) {
        /* row 1 all zeros (eps > 0 keeps it finite); rows of every 7th scaled down so that a
         * large eps exceeds their norm */
        const int64_t r = i / n;
        const double scale = r % 7 == 3 ? 1e-3 : 3.0;
        operand_set(&ops[0], i, r == 1 && eps > 0 ? 0.0 : rng_normal(g) * scale);
    }
    operand_poison(&ops[1]);
    l2_ctx c = {eps, in_place};
    harness_op_case oc = {ops, in_place ? 1 : 2, in_place ? 0 : 1, issue_l2, &c};
    /* f32: a sum of squares in f32 (partial sums of up to a few thousand terms), a sqrt and a
     * reciprocal: a few 1e-7 relative, as the rms_norm family */
    harness_run_op_case(name, devs, &oc, tolerance_for(dt));
    operand_free(&ops[0]);
    operand_free(&ops[1]);
}

static void error_cases(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 16, &b) != MLXN_STATUS_OK)
        return;
    const int64_t s1[2] = {4, 8}, s2[2] = {4, 9};
    mlxn_tensor x = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, s1);
    mlxn_tensor y = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F32, 2, s1);
    mlxn_tensor y9 = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F32, 2, s2);
    mlxn_tensor yh = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F16, 2, s1);
    mlxn_tensor xi = mlxn_tensor_make(b, 0, MLXN_DTYPE_I32, 2, s1);
    mlxn_tensor xs = x;
    xs.stride[1] = 8;
    mlxn_stream *s = dev->stream;
    harness_expect_status("l2_norm/error/shape", mlxn_l2_norm(s, &x, 1e-6f, &y9), MLXN_STATUS_ERR_SHAPE,
                          "y has shape 4x9, x has shape 4x8");
    harness_expect_status("l2_norm/error/y-dtype", mlxn_l2_norm(s, &x, 1e-6f, &yh), MLXN_STATUS_ERR_DTYPE,
                          "y is f16, x is f32");
    harness_expect_status("l2_norm/error/i32", mlxn_l2_norm(s, &xi, 1e-6f, &xi), MLXN_STATUS_ERR_DTYPE,
                          "x is i32, expected f32, f16 or bf16");
    harness_expect_status("l2_norm/error/eps", mlxn_l2_norm(s, &x, -1.0f, &y), MLXN_STATUS_ERR_INVALID_ARG, "eps is -1");
    harness_expect_status("l2_norm/error/eps-nan", mlxn_l2_norm(s, &x, NAN, &y), MLXN_STATUS_ERR_INVALID_ARG, "eps is nan");
    harness_expect_status("l2_norm/error/null-y", mlxn_l2_norm(s, &x, 1e-6f, NULL), MLXN_STATUS_ERR_INVALID_ARG,
                          "y is NULL");
    harness_expect_status("l2_norm/error/strided-innermost", mlxn_l2_norm(s, &xs, 1e-6f, &y),
                          MLXN_STATUS_ERR_UNSUPPORTED, "innermost dim must be contiguous");
    mlxn_buffer_free(b);
}

void test_l2_norm(test_devices *devs, rng *g)
{
    static const struct {
        int ndim;
        int64_t shape[3], pad;
        bool permute;
    } shapes[] = {
        {1, {1}, 0, false},       {2, {3, 7}, 0, false},      {2, {9, 33}, 3, false},  {2, {64, 4095}, 0, false},
        {3, {3, 4, 40}, 0, true}, {2, {3, 16384}, 0, false}, {2, {70000, 8}, 0, false}, {2, {16, 128}, 0, false},
    };
    static const mlxn_dtype dts[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    for (int d = 0; d < 3; d++)
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            /* eps: the typical 1e-12, a large one that exceeds the scaled-down rows' norms, and 0 */
            const float eps = k == 2 ? 0.05f : k == 0 ? 0.0f : 1e-12f;
            l2_case(devs, g, dts[d], shapes[k].ndim, shapes[k].shape, shapes[k].pad, shapes[k].permute, eps,
                    k == 2 && d == 1);
        }
    l2_case(devs, g, MLXN_DTYPE_F32, 2, (const int64_t[]){5, 300}, 0, false, 0.0f, true);
    error_cases(devs);
}
