/* Harness cases for mlxn_cumsum: f32 and i32; single element, odd, padded, permuted rows, rows
 * across the CUDA tile size (2048) and far past it with few rows (the multi-block scan), more
 * rows than a grid dimension holds; probabilities (all positive, the top-p use) and signed
 * values; i32 sums that wrap; in place; errors. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "test_ops.h"

typedef enum cs_values { CS_SIGNED, CS_PROBS, CS_WRAP } cs_values;

static mlxn_status issue_cumsum(void *ctx, mlxn_stream *s, const mlxn_tensor *v)
{
    const bool *in_place = ctx;
    return mlxn_cumsum(s, &v[0], *in_place ? &v[0] : &v[1]);
}

static void cs_case(test_devices *devs, rng *g, mlxn_dtype dt, int ndim, const int64_t *shape, int64_t pad,
                    bool permute, cs_values values, bool in_place)
{
    static const char *vnames[] = {"signed", "probs", "wrapping"};
    char name[200], sh[64];
    size_t k = 0;
    for (int i = 0; i < ndim; i++)
        k += (size_t)snprintf(sh + k, sizeof sh - k, i ? "x%lld" : "%lld", (long long)shape[i]);
    snprintf(name, sizeof name, "cumsum/%s/%s/%s%s%s%s", mlxn_dtype_name(dt), vnames[values], sh, pad ? "/pad" : "",
             permute ? "/permuted" : "", in_place ? "/in-place" : "");
    operand ops[2];
    if (!operand_init(&ops[0], dt, ndim, shape, pad, permute) || !operand_init(&ops[1], dt, ndim, shape, pad, permute)) {
        harness_fail(name, "out of memory");
        return;
    }
    for (int64_t i = 0; i < ops[0].numel; i++) {
        double v;
        if (dt == MLXN_DTYPE_I32)
            v = values == CS_WRAP ? (double)rng_int(g, 1 << 29, (1 << 30) + 12345) : (double)rng_int(g, -1000, 1000);
        else
            v = values == CS_PROBS ? rng_uniform(g) : rng_normal(g) * 3.0;
        operand_set(&ops[0], i, v);
    }
    operand_poison(&ops[1]);
    bool ip = in_place;
    harness_op_case oc = {ops, in_place ? 1 : 2, in_place ? 0 : 1, issue_cumsum, &ip};
    /* i32: exact. f32: CUDA adds in f32 along a tree within a tile and a chain of one addition
     * per tile across tiles (the CPU in f64): each output is a sum of thousands of terms whose
     * rounding errors add up to some 1e-6 of the running sum's size */
    const tolerance tol = dt == MLXN_DTYPE_I32
                              ? (tolerance){0, 0, "integer sums: exact"}
                              : (tolerance){1e-5, 1e-5, "f32 prefix sums of up to 1e6 terms, summed by tiles"};
    harness_run_op_case(name, devs, &oc, tol);
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
    mlxn_tensor y9 = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F32, 2, s2);
    mlxn_tensor yi = mlxn_tensor_make(b, 4096, MLXN_DTYPE_I32, 2, s1);
    mlxn_tensor xh = mlxn_tensor_make(b, 0, MLXN_DTYPE_F16, 2, s1);
    mlxn_stream *s = dev->stream;
    harness_expect_status("cumsum/error/shape", mlxn_cumsum(s, &x, &y9), MLXN_STATUS_ERR_SHAPE,
                          "y has shape 4x9, x has shape 4x8");
    harness_expect_status("cumsum/error/mixed", mlxn_cumsum(s, &x, &yi), MLXN_STATUS_ERR_DTYPE, "y is i32, x is f32");
    harness_expect_status("cumsum/error/f16", mlxn_cumsum(s, &xh, &xh), MLXN_STATUS_ERR_DTYPE,
                          "x is f16, expected f32 or i32");
    harness_expect_status("cumsum/error/null-y", mlxn_cumsum(s, &x, NULL), MLXN_STATUS_ERR_INVALID_ARG, "y is NULL");
    harness_expect_status("cumsum/error/null-x", mlxn_cumsum(s, NULL, &x), MLXN_STATUS_ERR_INVALID_ARG, "x is NULL");
    mlxn_buffer_free(b);
}

void test_cumsum(test_devices *devs, rng *g)
{
    static const struct {
        int ndim;
        int64_t shape[3], pad;
        bool permute;
    } shapes[] = {
        {1, {1}, 0, false},         {2, {7, 13}, 0, false},      {2, {5, 2049}, 3, false},
        {3, {3, 4, 40}, 0, true},   {2, {2, 6143}, 0, false},    {1, {1000003}, 0, false},
        {2, {3, 100000}, 0, false}, {2, {70000, 5}, 0, false},   {2, {40, 151936}, 0, false},
    };
    for (int d = 0; d < 2; d++)
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            const mlxn_dtype dt = d ? MLXN_DTYPE_I32 : MLXN_DTYPE_F32;
            const cs_values v = k % 2 ? CS_SIGNED : d ? CS_WRAP : CS_PROBS;
            cs_case(devs, g, dt, shapes[k].ndim, shapes[k].shape, shapes[k].pad, shapes[k].permute, v, k == 2);
        }
    error_cases(devs);
}
