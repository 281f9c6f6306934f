/* Harness cases for the softmax family: plain, scaled with an additive mask (some entries and
 * one whole row at -inf), softcapped, and log-softmax; f32/f16/bf16; single element, odd,
 * padded, permuted and long rows (every CUDA kernel); in place; against the oracle on every
 * device. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "test_ops.h"

typedef enum sm_variant { SM_PLAIN, SM_MASK, SM_SOFTCAP, SM_LOG, SM_COUNT } sm_variant;
static const char *sm_names[SM_COUNT] = {"softmax", "masked", "softcap", "log_softmax"};

typedef struct sm_case {
    sm_variant v;
    mlxn_dtype dtype;
    int ndim;
    int64_t shape[3], pad;
    bool permute, in_place;
} sm_case;

typedef struct sm_operands {
    operand x, mask, y;
} sm_operands;

static bool run_on(const sm_case *c, const sm_operands *o, test_device *dev, operand *out, char *why, size_t cap)
{
    placed x = {0}, mask = {0}, y = {0};
    bool ok = false;
    if (!operand_place(&o->x, dev, &x) || !operand_place(&o->mask, dev, &mask) || !operand_place(&o->y, dev, &y)) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    const float scale = c->v == SM_PLAIN ? 1.0f : 0.125f, softcap = c->v == SM_SOFTCAP ? 2.0f : 0.0f;
    const placed *py = c->in_place ? &x : &y;
    mlxn_status st = mlxn_softmax(dev->stream, &x.view, c->v == SM_MASK ? &mask.view : NULL, scale, softcap,
                                  c->v == SM_LOG, &py->view);
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(py, dev, c->in_place ? &o->x : &o->y, out)) {
        snprintf(why, cap, "fetching y: %s", mlxn_last_error());
        goto done;
    }
    ok = true;
done:
    placed_free(&x);
    placed_free(&mask);
    placed_free(&y);
    return ok;
}

static void run_case(const sm_case *c, test_devices *devs, rng *g)
{
    char name[200], full[260], why[512], shape[64];
    size_t k = 0;
    for (int i = 0; i < c->ndim; i++)
        k += (size_t)snprintf(shape + k, sizeof shape - k, i ? "x%lld" : "%lld", (long long)c->shape[i]);
    snprintf(name, sizeof name, "softmax/%s/%s/%s%s%s%s", sm_names[c->v], mlxn_dtype_name(c->dtype), shape,
             c->pad ? "/pad" : "", c->permute ? "/permuted" : "", c->in_place ? "/in-place" : "");
    sm_operands o;
    memset(&o, 0, sizeof o);
    if (!operand_init(&o.x, c->dtype, c->ndim, c->shape, c->pad, c->permute) ||
        !operand_init(&o.mask, c->dtype, c->ndim, c->shape, c->pad + 8, false) ||
        !operand_init(&o.y, c->dtype, c->ndim, c->shape, c->pad, c->permute)) {
        harness_fail(name, "out of memory");
        goto done;
    }
    const int64_t n = c->shape[c->ndim - 1];
    for (int64_t i = 0; i < o.x.numel; i++) {
        operand_set(&o.x, i, rng_normal(g) * 8); /* logits up to ~30: the exp spans 1e-13..1 */
        /* mask: a quarter of the entries excluded, and the whole of row 1 */
        const bool off = rng_uniform(g) < 0.25 || (i / n == 1 && o.x.numel / n > 2);
        operand_set(&o.mask, i, off ? -INFINITY : rng_normal(g));
    }
    /* a NaN logit makes its whole row NaN (the reference's sum is NaN): one in row 2 */
    if (o.x.numel / n > 3)
        operand_set(&o.x, 2 * n + n / 2, NAN);
    operand_poison(&o.y);
    operand want = {0};
    if (!run_on(c, &o, &devs->ref, &want, why, sizeof why)) {
        harness_fail(name, "reference: %s", why);
        goto done;
    }
    /* f32: exp arguments up to ~60 amplify the f32 rounding of z - max some 60-fold */
    const tolerance tol = c->dtype == MLXN_DTYPE_F32
                              ? (tolerance){1e-5, 2e-5, "f32 softmax: exp(z - max) with |z - max| up to ~60"}
                              : tolerance_for(c->dtype);
    for (int d = 0; d < devs->count; d++) {
        snprintf(full, sizeof full, "%s @%s", name, devs->list[d].name);
        operand got = {0};
        if (!run_on(c, &o, &devs->list[d], &got, why, sizeof why))
            harness_fail(full, "%s", why);
        else if (!compare_operands(&got, &want, tol, why, sizeof why))
            harness_fail(full, "y: %s", why);
        else
            harness_pass(full);
        operand_free(&got);
    }
    operand_free(&want);
done:
    operand_free(&o.x);
    operand_free(&o.mask);
    operand_free(&o.y);
}

static void error_cases(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 16, &b) != MLXN_STATUS_OK)
        return;
    int64_t s1[2] = {4, 8}, s2[2] = {4, 9}, s0[2] = {4, 0};
    mlxn_tensor x = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, s1);
    mlxn_tensor y = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F32, 2, s1);
    mlxn_tensor m9 = mlxn_tensor_make(b, 8192, MLXN_DTYPE_F32, 2, s2);
    mlxn_tensor x0 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, s0);
    harness_expect_status("softmax/error/mask-shape", mlxn_softmax(dev->stream, &x, &m9, 1, 0, false, &y),
                          MLXN_STATUS_ERR_SHAPE, "mask has shape 4x9");
    harness_expect_status("softmax/error/softcap", mlxn_softmax(dev->stream, &x, NULL, 1, -1, false, &y),
                          MLXN_STATUS_ERR_INVALID_ARG, "softcap -1");
    harness_expect_status("softmax/error/scale", mlxn_softmax(dev->stream, &x, NULL, NAN, 0, false, &y),
                          MLXN_STATUS_ERR_INVALID_ARG, "scale nan");
    harness_expect_status("softmax/error/empty-rows", mlxn_softmax(dev->stream, &x0, NULL, 1, 0, false, &x0),
                          MLXN_STATUS_ERR_SHAPE, "over 0 elements");
    harness_expect_status("softmax/error/null-y", mlxn_softmax(dev->stream, &x, NULL, 1, 0, false, NULL),
                          MLXN_STATUS_ERR_INVALID_ARG, "y is NULL");
    mlxn_buffer_free(b);
}

void test_softmax(test_devices *devs, rng *g)
{
    static const struct {
        int ndim;
        int64_t shape[3], pad;
        bool permute;
    } shapes[] = {
        {1, {1}, 0, false},        {2, {3, 7}, 0, false},      {2, {5, 33}, 3, false},
        {2, {64, 4095}, 0, false}, {3, {3, 4, 40}, 0, true},   {2, {3, 16384}, 0, false},
        /* CUDA, n % 8 == 0: on sm_90 a block a row through shared memory where x and mask take 8
         * to 32 KB (these rows and 16-bit 16384 above, but 16-bit 2048 and 4000 without a mask, and
         * with a mask 16-bit 16384 and f32 6000), which the in-register kernels take; before sm_90
         * the in-register kernels take them all (1, 2, 4 and 8 runs a thread) */
        {2, {7, 2048}, 0, false},  {2, {2, 4000}, 8, false},   {2, {2, 6000}, 0, false},
        /* many short rows: a block each, one 16-byte word a thread or less */
        {2, {40000, 8}, 0, false},
        /* longer rows: a cluster of 8 blocks a row on sm_90, each block's slice in shared memory
         * (100 rows: slices as short as 2049 elements); 500000: clusters of 16, and the generic
         * kernel for f32 with a mask (x and mask slices over 227 KB even at 16); an odd row length
         * takes the generic kernel */
        {2, {3, 40000}, 0, false}, {2, {2, 200000}, 0, false}, {2, {100, 16392}, 0, false},
        {2, {1, 500000}, 0, false}, {2, {2, 20001}, 0, false},
        /* slices that take an SM alone in clusters of 8 (f32 and 16-bit masked 250024, f32 masked
         * 150008; 16-bit 500000 above), more rows than clusters of 8 run at once (15 on an H100),
         * so lone_cluster_size takes other sizes: on an H100 (66 clusters of 2 at once, 22 of 5,
         * 17 of 6) 61 x 250024 f32 without a mask or softcap should take clusters of 2 in the
         * register form (a tail of each slice read twice), with a softcap and 16-bit masked
         * clusters of 5 and f32 masked 150008 of 6 (their slices ragged); f32 masked 250024 takes
         * clusters of 16 */
        {2, {61, 250024}, 0, false}, {2, {17, 150008}, 0, false},
    };
    static const mlxn_dtype dts[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    for (int v = 0; v < SM_COUNT; v++)
        for (int d = 0; d < 3; d++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                /* f16 rows past 65536: flat rows (softcap) put every output near 1 / n, below
                 * f16's normal range (6.1e-5), where its rounding step (6e-8) is over the f16
                 * bound relative to the row's largest output for any implementation */
                if (dts[d] == MLXN_DTYPE_F16 && shapes[s].shape[shapes[s].ndim - 1] > 65536)
                    continue;
                sm_case c = {(sm_variant)v, dts[d], shapes[s].ndim,
                             {shapes[s].shape[0], shapes[s].shape[1], shapes[s].shape[2]},
                             shapes[s].pad, shapes[s].permute, (s == 2 && d == 1) || (shapes[s].shape[0] == 100 && d == 0)};
                run_case(&c, devs, g);
            }
    error_cases(devs);
}
