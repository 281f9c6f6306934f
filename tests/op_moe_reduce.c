/* Harness cases for the MoE reduce y[t, :] = sum_j w[t, j] x[t, j, :]: f32/f16/bf16; one slot,
 * one column, odd and padded rows (the scalar path), aligned rows (the 16-byte path), x stored
 * slot-major ([k, T, N] in memory, a permuted view), decode (T = 1) and prefill shapes of
 * Qwen3-30B-A3B (k = 8, N = 2048), k = 16, and more tokens than one grid dimension holds.
 * Weights are positive and sum to 1 per token (a router's output) or, in some cases, are
 * signed, so outputs cancel. Checked per element against sum_j |w_j x_j|. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "test_ops.h"

typedef struct reduce_case {
    int64_t T, k, N;
    mlxn_dtype dtype;
    int64_t pad;
    bool slot_major, signed_w;
} reduce_case;

typedef struct reduce_operands {
    operand x, w, y;
} reduce_operands;

static bool run_on(void *ctx, test_device *dev, operand *out, char *why, size_t cap)
{
    const reduce_operands *o = ctx;
    placed px = {0}, pw = {0}, py = {0};
    bool ok = false;
    if (!operand_place(&o->x, dev, &px) || !operand_place(&o->w, dev, &pw) || !operand_place(&o->y, dev, &py)) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    mlxn_status st = mlxn_moe_reduce(dev->stream, &px.view, &pw.view, &py.view);
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(&py, dev, &o->y, out)) {
        snprintf(why, cap, "fetching y: %s", mlxn_last_error());
        goto done;
    }
    ok = true;
done:
    placed_free(&px);
    placed_free(&pw);
    placed_free(&py);
    return ok;
}

static void run_case(const reduce_case *c, test_devices *devs, rng *g)
{
    char name[200];
    snprintf(name, sizeof name, "moe_reduce/%s/%lldx%lldx%lld%s%s%s", mlxn_dtype_name(c->dtype), (long long)c->T,
             (long long)c->k, (long long)c->N, c->pad ? "/pad" : "", c->slot_major ? "/slot-major" : "",
             c->signed_w ? "/signed" : "");
    reduce_operands o;
    memset(&o, 0, sizeof o);
    const int64_t xs[3] = {c->T, c->k, c->N}, ws[2] = {c->T, c->k}, ys[2] = {c->T, c->N};
    double *bound = malloc(sizeof(double) * (size_t)(c->T * c->N));
    if (!bound || !operand_init(&o.x, c->dtype, 3, xs, c->pad, c->slot_major) ||
        !operand_init(&o.w, MLXN_DTYPE_F32, 2, ws, c->pad ? 1 : 0, false) ||
        !operand_init(&o.y, c->dtype, 2, ys, c->pad ? 2 : 0, false)) {
        harness_fail(name, "out of memory");
        free(bound);
        goto done;
    }
    for (int64_t i = 0; i < o.x.numel; i++)
        operand_set(&o.x, i, rng_normal(g) * 2);
    for (int64_t t = 0; t < c->T; t++) {
        double sum = 0;
        for (int64_t j = 0; j < c->k; j++) {
            const double w = c->signed_w ? rng_normal(g) : rng_uniform(g) + 1e-3;
            operand_set(&o.w, t * c->k + j, w);
            sum += w;
        }
        if (!c->signed_w)
            for (int64_t j = 0; j < c->k; j++)
                operand_set(&o.w, t * c->k + j, operand_get(&o.w, t * c->k + j) / sum);
    }
    for (int64_t t = 0; t < c->T; t++)
        for (int64_t i = 0; i < c->N; i++) {
            double b = 0;
            for (int64_t j = 0; j < c->k; j++)
                b += fabs(operand_get(&o.w, t * c->k + j) * operand_get(&o.x, (t * c->k + j) * c->N + i));
            bound[t * c->N + i] = b;
        }
    operand_poison(&o.y);
    /* f32: at most k + 1 roundings of 2^-24 relative to sum |w x| (k <= 16: 1.0e-6); f16 and
     * bf16: the output's rounding, half a step of 2^-10 or 2^-7, plus the f32 sum */
    const double tol = c->dtype == MLXN_DTYPE_F32 ? 2e-6 : c->dtype == MLXN_DTYPE_F16 ? 1e-3 : 8e-3;
    harness_run_bound_case(name, devs, run_on, &o, bound, tol, tol);
    free(bound);
done:
    operand_free(&o.x);
    operand_free(&o.w);
    operand_free(&o.y);
}

static void error_cases(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 16, &b) != MLXN_STATUS_OK)
        return;
    int64_t s3[3] = {4, 2, 8}, s30[3] = {4, 0, 8}, s2[2] = {4, 8}, w42[2] = {4, 2}, w43[2] = {4, 3}, y49[2] = {4, 9};
    mlxn_tensor x = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 3, s3);
    mlxn_tensor xh = mlxn_tensor_make(b, 0, MLXN_DTYPE_F16, 3, s3);
    mlxn_tensor xi = mlxn_tensor_make(b, 0, MLXN_DTYPE_I32, 3, s3);
    mlxn_tensor x0 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 3, s30);
    mlxn_tensor x2 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, s2);
    mlxn_tensor w = mlxn_tensor_make(b, 8192, MLXN_DTYPE_F32, 2, w42);
    mlxn_tensor wh = mlxn_tensor_make(b, 8192, MLXN_DTYPE_F16, 2, w42);
    mlxn_tensor w3 = mlxn_tensor_make(b, 8192, MLXN_DTYPE_F32, 2, w43);
    mlxn_tensor y = mlxn_tensor_make(b, 16384, MLXN_DTYPE_F32, 2, s2);
    mlxn_tensor y9 = mlxn_tensor_make(b, 16384, MLXN_DTYPE_F32, 2, y49);
    mlxn_stream *st = dev->stream;
    harness_expect_status("moe_reduce/error/ok", mlxn_moe_reduce(st, &x, &w, &y), MLXN_STATUS_OK, NULL);
    harness_expect_status("moe_reduce/error/x-dtype", mlxn_moe_reduce(st, &xi, &w, &y), MLXN_STATUS_ERR_DTYPE,
                          "x is i32, expected f32, f16 or bf16");
    harness_expect_status("moe_reduce/error/x-dims", mlxn_moe_reduce(st, &x2, &w, &y), MLXN_STATUS_ERR_SHAPE,
                          "x has shape 4x8, expected 3 dims [T, k, N]");
    harness_expect_status("moe_reduce/error/no-slots", mlxn_moe_reduce(st, &x0, &w, &y), MLXN_STATUS_ERR_SHAPE,
                          "x has 0 slots per token");
    harness_expect_status("moe_reduce/error/weights-dtype", mlxn_moe_reduce(st, &x, &wh, &y), MLXN_STATUS_ERR_DTYPE,
                          "weights is f16, expected f32");
    harness_expect_status("moe_reduce/error/weights-shape", mlxn_moe_reduce(st, &x, &w3, &y), MLXN_STATUS_ERR_SHAPE,
                          "weights has shape 4x3, expected 4x2");
    harness_expect_status("moe_reduce/error/y-dtype", mlxn_moe_reduce(st, &xh, &w, &y), MLXN_STATUS_ERR_DTYPE,
                          "y is f32, expected f16");
    harness_expect_status("moe_reduce/error/y-shape", mlxn_moe_reduce(st, &x, &w, &y9), MLXN_STATUS_ERR_SHAPE,
                          "y has shape 4x9, expected 4x8");
    harness_expect_status("moe_reduce/error/null-weights", mlxn_moe_reduce(st, &x, NULL, &y),
                          MLXN_STATUS_ERR_INVALID_ARG, "weights is NULL");
    harness_expect_status("moe_reduce/error/null-y", mlxn_moe_reduce(st, &x, &w, NULL), MLXN_STATUS_ERR_INVALID_ARG,
                          "y is NULL");
    mlxn_buffer_free(b);
}

void test_moe_reduce(test_devices *devs, rng *g)
{
    static const reduce_case shapes[] = {
        {1, 1, 1, 0, 0, false, false},     {3, 2, 7, 0, 0, false, true},       {17, 4, 33, 0, 3, false, false},
        {5, 6, 4096, 0, 0, true, false},   {5, 3, 40, 0, 1, true, true},       {1, 8, 2048, 0, 0, false, false},
        {512, 8, 2048, 0, 0, false, false}, {64, 16, 264, 0, 0, true, true},   {70000, 2, 16, 0, 0, false, false},
        {6, 4, 40, 0, 0, false, false}, /* 16-bit rows of 5 16-byte words: 8-column runs */
    };
    static const mlxn_dtype dts[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    for (int d = 0; d < 3; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            reduce_case c = shapes[s];
            c.dtype = dts[d];
            run_case(&c, devs, g);
        }
    error_cases(devs);
}
