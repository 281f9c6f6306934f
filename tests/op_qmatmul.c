/* Harness cases for the quantized matmul with GGML weights: every format (and f32/f16/bf16
 * weights) x decode and prefill shapes (M from 1 to 512, odd N, K several blocks long), x in
 * f32/f16/bf16, contiguous and strided, against the oracle on every device. Rows of W are, about
 * half each, real quantizations of random rows (mlxn_ggml_quantize) and random valid blocks
 * (every bit pattern a file may hold): tests/weights.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "harness.h"
#include "weights.h"
#include "mlxn_quant.h"
#include "test_ops.h"

/* |y - ref| <= QMM_TOL * sum_k |x_k| |w_k|: as for qmatmul_mlx (op_qmatmul_mlx.c). On CUDA from
 * M = 64 (the tensor-core GEMM) x and the decoded W are each rounded to bf16, a relative error
 * of at most 2^-9 each: |err| <= (2 * 2^-9 + 2^-18) sum|x||w| ~ 3.9e-3, plus f32 accumulation. */
#define QMM_TOL 1e-5
#define QMM_TOL_BF16 4e-3

/* mlxn_qmatmul_fused's fusions, as case flags */
enum { QMM_NORM = 1, QMM_GLU = 2, QMM_ACC = 4 };

typedef struct qmm_case {
    mlxn_dtype w_dtype, x_dtype;
    int64_t M, N, K, pad;
    int fusion;    /* QMM_* flags; 0: mlxn_qmatmul itself */
    mlxn_act act;  /* with QMM_GLU */
    double x_mag;  /* x's scale (0: 1): the products must hold at any magnitude */
    bool x_uneven; /* x's 256-blocks in turn all zero, tiny (1e-6) around one element of 1e3,
                    * and plain: the CPU's integer form of x scales each block by its largest */
} qmm_case;

typedef struct qmm_data {
    uint8_t *w;
    size_t w_bytes;
    float *wf; /* W decoded by the reference, for the error bound */
    operand x, y;
    operand nw; /* the fused norm's weights, f32 [K] (QMM_NORM) */
} qmm_data;

static bool make_data(const qmm_case *c, rng *g, qmm_data *d)
{
    memset(d, 0, sizeof *d);
    const int64_t be = mlxn_dtype_block_elems(c->w_dtype), bb = mlxn_dtype_block_bytes(c->w_dtype);
    d->w_bytes = (size_t)(c->N * (c->K / be) * bb);
    d->w = malloc(d->w_bytes);
    d->wf = malloc((size_t)(c->N * c->K) * sizeof(float));
    bool ok = d->w && d->wf && weights_make(c->w_dtype, c->N, c->K, g, d->w, d->wf);
    int64_t xs[2] = {c->M, c->K}, ys[2] = {c->M, c->fusion & QMM_GLU ? c->N / 2 : c->N};
    ok = ok && operand_init(&d->x, c->x_dtype, 2, xs, c->pad, false) &&
         operand_init(&d->y, MLXN_DTYPE_F32, 2, ys, 0, false) &&
         (!(c->fusion & QMM_NORM) || operand_init(&d->nw, MLXN_DTYPE_F32, 1, &c->K, 0, false));
    if (!ok)
        return false;
    /* x of a residual stream's scale when it is normalized first (the norm removes it) */
    const double x_scale = (c->fusion & QMM_NORM ? 7.0 : 1.0) * (c->x_mag ? c->x_mag : 1.0);
    for (int64_t i = 0; i < d->x.numel; i++) {
        const int64_t k = i % c->K, blk = k / 256;
        const double v = !c->x_uneven || blk % 3 == 2 ? rng_normal(g) : blk % 3 == 0 ? 0.0
                         : k % 256 == 7 ? 1e3 : 1e-6 * rng_normal(g);
        operand_set(&d->x, i, x_scale * v);
    }
    for (int64_t i = 0; c->fusion & QMM_NORM && i < c->K; i++)
        operand_set(&d->nw, i, 0.5 + rng_uniform(g)); /* trained norm weights: around 1 */
    if (c->fusion & QMM_ACC) /* y is an input: the residual the product is added to */
        for (int64_t i = 0; i < d->y.numel; i++)
            operand_set(&d->y, i, rng_normal(g));
    else
        operand_poison(&d->y);
    return true;
}

static void free_data(qmm_data *d)
{
    free(d->w);
    free(d->wf);
    operand_free(&d->x);
    operand_free(&d->y);
    operand_free(&d->nw);
}

/* act in f64, for the GLU bound */
static double act_f64(mlxn_act act, double x)
{
    return act == MLXN_ACT_SILU ? x / (1.0 + exp(-x))
                                : x / (1.0 + exp(-2.0 * sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* The error bound of every output, in f64. Plain: sum_k |x[m,k]| |W[n,k]| (with x normalized
 * as the fused norm does, when it does). GLU: y = act(g) u moves by |act'(g)| |u| dg + |act(g)|
 * du, |act'| <= 1.2 for SiLU and GELU-tanh, with dg, du bounded as plain outputs; plus |y| for
 * act's own f32 rounding. Accumulation adds |y0| for the final f32 add. */
static double *abs_sums(const qmm_case *c, const qmm_data *d)
{
    const int64_t n_out = c->fusion & QMM_GLU ? c->N / 2 : c->N;
    double *out = calloc((size_t)(c->M * n_out), sizeof *out);
    double *xh = malloc((size_t)c->K * sizeof *xh);
    for (int64_t m = 0; out && xh && m < c->M; m++) {
        double inv = 1.0, ss = 0;
        for (int64_t k = 0; k < c->K; k++) {
            xh[k] = operand_get(&d->x, m * c->K + k);
            ss += xh[k] * xh[k];
        }
        if (c->fusion & QMM_NORM) {
            inv = 1.0 / sqrt(ss / (double)c->K + 1e-6);
            for (int64_t k = 0; k < c->K; k++)
                xh[k] *= inv * operand_get(&d->nw, k);
        }
        for (int64_t n = 0; n < n_out; n++) {
            double s[2] = {0, 0}, v[2] = {0, 0};
            for (int h = 0; h < (c->fusion & QMM_GLU ? 2 : 1); h++)
                for (int64_t k = 0; k < c->K; k++) {
                    const double wk = (double)d->wf[(n + h * n_out) * c->K + k];
                    s[h] += fabs(xh[k]) * fabs(wk);
                    v[h] += xh[k] * wk;
                }
            double b = s[0];
            if (c->fusion & QMM_GLU) {
                const double a = act_f64(c->act, v[0]);
                b = 1.2 * fabs(v[1]) * s[0] + fabs(a) * s[1] + fabs(a * v[1]);
            }
            if (c->fusion & QMM_ACC)
                b += fabs(operand_get(&d->y, m * n_out + n));
            out[m * n_out + n] = b;
        }
    }
    free(xh);
    return out;
}

static bool run_on(const qmm_case *c, const qmm_data *d, test_device *dev, operand *out, char *why, size_t cap)
{
    mlxn_buffer *bw = NULL;
    placed x = {0}, y = {0}, nw = {0};
    bool ok = false;
    if (mlxn_buffer_create(dev->device, d->w_bytes, &bw) || mlxn_buffer_upload(bw, 0, d->w, d->w_bytes, NULL) ||
        !operand_place(&d->x, dev, &x) || !operand_place(&d->y, dev, &y) ||
        (c->fusion & QMM_NORM && !operand_place(&d->nw, dev, &nw))) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    int64_t wshape[2] = {c->N, c->K};
    mlxn_tensor tw = mlxn_tensor_make(bw, 0, c->w_dtype, 2, wshape);
    mlxn_status st;
    if (c->fusion) {
        mlxn_qmatmul_fusion f = mlxn_qmatmul_fusion_default();
        f.norm_w = c->fusion & QMM_NORM ? &nw.view : NULL;
        f.glu = c->fusion & QMM_GLU;
        f.glu_act = c->act;
        f.accumulate = c->fusion & QMM_ACC;
        st = mlxn_qmatmul_fused(dev->stream, &x.view, &tw, &f, &y.view);
    } else {
        st = mlxn_qmatmul(dev->stream, &x.view, &tw, &y.view);
    }
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(&y, dev, &d->y, out)) {
        snprintf(why, cap, "fetching y: %s", mlxn_last_error());
        goto done;
    }
    ok = true;
done:
    mlxn_buffer_free(bw);
    placed_free(&x);
    placed_free(&y);
    placed_free(&nw);
    return ok;
}

/* run_on for the harness: the case and its data */
typedef struct qmm_run {
    const qmm_case *c;
    const qmm_data *d;
} qmm_run;

static bool run_cb(void *ctx, test_device *dev, operand *out, char *why, size_t cap)
{
    const qmm_run *r = ctx;
    return run_on(r->c, r->d, dev, out, why, cap);
}

/* nonfinite: 0, or X_INF / X_NAN: x holds them and every output must be non-finite on every
 * device (harness_run_nonfinite_case) instead of within the bound */
enum { X_INF = 1, X_NAN };
static void run_case_x(const qmm_case *c, int nonfinite, test_devices *devs, rng *g)
{
    char name[220];
    qmm_data d;
    char mag[32] = "";
    if (c->x_mag)
        snprintf(mag, sizeof mag, "/|x|~%g", c->x_mag);
    if (c->x_uneven)
        snprintf(mag + strlen(mag), sizeof mag - strlen(mag), "/x_uneven");
    snprintf(name, sizeof name, "qmatmul/%s/x=%s/%lldx%lldx%lld%s%s%s%s%s%s", mlxn_dtype_name(c->w_dtype),
             mlxn_dtype_name(c->x_dtype), (long long)c->M, (long long)c->N, (long long)c->K,
             c->pad ? "/strided" : "", c->fusion & QMM_NORM ? "/norm" : "", c->fusion & QMM_GLU ? "/glu_" : "",
             c->fusion & QMM_GLU ? mlxn_act_name(c->act) : "", c->fusion & QMM_ACC ? "/accumulate" : "", mag);
    if (nonfinite)
        snprintf(name + strlen(name), sizeof name - strlen(name), "/x_%s", nonfinite == X_NAN ? "nan" : "inf");
    if (!make_data(c, g, &d)) {
        harness_fail(name, "making data: %s", mlxn_last_error());
        free_data(&d);
        return;
    }
    qmm_run r = {c, &d};
    if (nonfinite) {
        harness_run_nonfinite_case(name, devs, run_cb, &r, &d.x, c->M, c->K, nonfinite == X_NAN);
        free_data(&d);
        return;
    }
    double *abs_sum = abs_sums(c, &d);
    harness_run_bound_case(name, devs, run_cb, &r, abs_sum, QMM_TOL, c->M >= 64 ? QMM_TOL_BF16 : QMM_TOL);
    free(abs_sum);
    free_data(&d);
}

static void run_case(const qmm_case *c, test_devices *devs, rng *g) { run_case_x(c, 0, devs, g); }

static void error_cases(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 20, &b) != MLXN_STATUS_OK)
        return;
    int64_t xs[2] = {2, 256}, ws[2] = {8, 256}, ys[2] = {2, 8}, xs2[2] = {2, 96}, ws2[2] = {8, 96};
    mlxn_tensor x = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, xs);
    mlxn_tensor w = mlxn_tensor_make(b, 4096, MLXN_DTYPE_Q4_K, 2, ws);
    mlxn_tensor y = mlxn_tensor_make(b, 16384, MLXN_DTYPE_F32, 2, ys);
    mlxn_tensor x2 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, xs2);
    mlxn_tensor wi = mlxn_tensor_make(b, 4096, MLXN_DTYPE_I32, 2, ws);
    mlxn_tensor xi = mlxn_tensor_make(b, 0, MLXN_DTYPE_I8, 2, xs);
    mlxn_tensor y16 = mlxn_tensor_make(b, 16384, MLXN_DTYPE_F16, 2, ys);
    harness_expect_status("qmatmul/error/k-mismatch", mlxn_qmatmul(dev->stream, &x2, &w, &y), MLXN_STATUS_ERR_SHAPE,
                          "w has rows of 256, x has rows of 96");
    /* 96 is not a multiple of q4_K's 256: the view itself is refused */
    mlxn_tensor wq = mlxn_tensor_make(b, 4096, MLXN_DTYPE_Q4_K, 2, ws2);
    harness_expect_status("qmatmul/error/k-not-block-multiple", mlxn_qmatmul(dev->stream, &x2, &wq, &y),
                          MLXN_STATUS_ERR_SHAPE, "256");
    harness_expect_status("qmatmul/error/w-dtype", mlxn_qmatmul(dev->stream, &x, &wi, &y), MLXN_STATUS_ERR_DTYPE,
                          "w is i32");
    harness_expect_status("qmatmul/error/x-dtype", mlxn_qmatmul(dev->stream, &xi, &w, &y), MLXN_STATUS_ERR_DTYPE,
                          "x is i8");
    harness_expect_status("qmatmul/error/y-dtype", mlxn_qmatmul(dev->stream, &x, &w, &y16), MLXN_STATUS_ERR_DTYPE,
                          "y is f16");
    harness_expect_status("qmatmul/error/null-y", mlxn_qmatmul(dev->stream, &x, &w, NULL),
                          MLXN_STATUS_ERR_INVALID_ARG, "y is NULL");
    /* views off their elements' alignment (the CUDA kernels faulted on them, poisoning the
     * context): x at a 2-byte offset, W's blocks at an odd one, y's rows 6 bytes apart */
    mlxn_tensor xm = mlxn_tensor_make(b, 2, MLXN_DTYPE_F32, 2, xs);
    harness_expect_status("qmatmul/error/x-misaligned", mlxn_qmatmul(dev->stream, &xm, &w, &y), MLXN_STATUS_ERR_SHAPE,
                          "multiple of 4 bytes");
    mlxn_tensor wm = mlxn_tensor_make(b, 4097, MLXN_DTYPE_Q4_K, 2, ws);
    harness_expect_status("qmatmul/error/w-misaligned", mlxn_qmatmul(dev->stream, &x, &wm, &y), MLXN_STATUS_ERR_SHAPE,
                          "multiple of 2 bytes");
    mlxn_tensor ym = y;
    ym.stride[0] = 34;
    harness_expect_status("qmatmul/error/y-stride-misaligned", mlxn_qmatmul(dev->stream, &x, &w, &ym),
                          MLXN_STATUS_ERR_SHAPE, "stride 34 of dim 0");
    /* fusions: GLU over an odd number of rows, GLU with y of W's rows, a norm weight of the
     * wrong length or dtype */
    int64_t wodd[2] = {7, 256}, nwlen = 128, y4s[2] = {2, 4};
    mlxn_tensor w7 = mlxn_tensor_make(b, 4096, MLXN_DTYPE_Q4_K, 2, wodd);
    mlxn_tensor y4 = mlxn_tensor_make(b, 16384, MLXN_DTYPE_F32, 2, y4s);
    mlxn_tensor nw_short = mlxn_tensor_make(b, 32768, MLXN_DTYPE_F32, 1, &nwlen);
    mlxn_tensor nw16 = mlxn_tensor_make(b, 32768, MLXN_DTYPE_F16, 1, &xs[1]);
    mlxn_qmatmul_fusion f = mlxn_qmatmul_fusion_default();
    f.glu = true;
    harness_expect_status("qmatmul/error/glu-odd-rows", mlxn_qmatmul_fused(dev->stream, &x, &w7, &f, &y4),
                          MLXN_STATUS_ERR_SHAPE, "even number");
    harness_expect_status("qmatmul/error/glu-y-width", mlxn_qmatmul_fused(dev->stream, &x, &w, &f, &y),
                          MLXN_STATUS_ERR_SHAPE, "expected 2 rows of 4");
    f = mlxn_qmatmul_fusion_default();
    f.norm_w = &nw_short;
    harness_expect_status("qmatmul/error/norm-w-length", mlxn_qmatmul_fused(dev->stream, &x, &w, &f, &y),
                          MLXN_STATUS_ERR_SHAPE, "expected [256]");
    f.norm_w = &nw16;
    harness_expect_status("qmatmul/error/norm-w-dtype", mlxn_qmatmul_fused(dev->stream, &x, &w, &f, &y),
                          MLXN_STATUS_ERR_DTYPE, "norm_w is f16");
    mlxn_buffer_free(b);
}

void test_qmatmul(test_devices *devs, rng *g)
{
    static const mlxn_dtype types[] = {
        MLXN_DTYPE_Q4_0, MLXN_DTYPE_Q4_1, MLXN_DTYPE_Q5_0, MLXN_DTYPE_Q5_1, MLXN_DTYPE_Q8_0,
        MLXN_DTYPE_Q2_K, MLXN_DTYPE_Q3_K, MLXN_DTYPE_Q4_K, MLXN_DTYPE_Q5_K, MLXN_DTYPE_Q6_K,
        MLXN_DTYPE_IQ4_NL, MLXN_DTYPE_IQ4_XS, MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16,
    };
    static const int64_t shapes[][4] = {
        /* M, N, K (rounded up to whole blocks), pad. From M = 32 the CPU kernels take x in panels of
         * 32 rows, the rows past the last one in register blocks of a few rows (57, 100) */
        {1, 67, 512, 0}, {2, 33, 256, 0}, {3, 31, 768, 0}, {7, 17, 256, 3}, {8, 129, 512, 0},
        {9, 65, 256, 0}, {16, 33, 512, 0}, {57, 29, 768, 0}, {100, 67, 256, 5}, {512, 19, 256, 0},
    };
    static const mlxn_dtype xt[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    int variant = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int64_t be = mlxn_dtype_block_elems(types[ti]);
            qmm_case c = {types[ti], xt[variant++ % 3], shapes[si][0], shapes[si][1],
                          (shapes[si][2] + be - 1) / be * be, shapes[si][3], 0, MLXN_ACT_SILU, 0, false};
            run_case(&c, devs, g);
        }
    /* a long row, and x too large for the CUDA decode kernel's shared memory at M = 8 (K tiles) */
    static const qmm_case big[] = {
        {MLXN_DTYPE_Q4_K, MLXN_DTYPE_F32, 1, 40, 14336, 0, 0, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_BF16, 8, 24, 8192, 0, 0, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F16, 3, 37, 14336, 0, 0, MLXN_ACT_SILU, 0, false},
        /* the CPU's panels: long rows (each output one f32 sum over K), more panels than one
         * 4 MB pass holds (5 at K 8192, 4 a pass) with rows past them, the norm fused at 32+ rows,
         * and a float W whose K is not whole 32-element units (no panels) */
        {MLXN_DTYPE_Q4_K, MLXN_DTYPE_F32, 40, 13, 14336, 0, 0, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_BF16, 170, 26, 8192, 0, QMM_GLU, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_Q5_0, MLXN_DTYPE_F32, 45, 22, 4096, 0, QMM_NORM | QMM_ACC, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_F16, MLXN_DTYPE_F32, 64, 21, 72, 0, 0, MLXN_ACT_SILU, 0, false},
        /* float W whose K is not whole 32-element units on the other paths (CUDA: the decode row
         * kernel, in one K tile and in several at M 2 and 8; the SIMT tiles at M 9 and 20) */
        {MLXN_DTYPE_F32, MLXN_DTYPE_F32, 1, 33, 72, 0, 0, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_BF16, MLXN_DTYPE_F16, 3, 20, 72, 3, QMM_NORM | QMM_GLU, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_F16, MLXN_DTYPE_BF16, 8, 17, 40, 0, 0, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_F16, MLXN_DTYPE_F32, 8, 24, 8200, 0, 0, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_F32, MLXN_DTYPE_F32, 2, 9, 50008, 0, QMM_ACC, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_F32, MLXN_DTYPE_F32, 9, 19, 72, 0, 0, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_BF16, MLXN_DTYPE_F32, 20, 33, 104, 0, QMM_ACC, MLXN_ACT_SILU, 0, false},
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
        run_case(&big[i], devs, g);
    /* short rows at M = 1 (CUDA: the wide-load kernel with 8, 4, 2 or 1 rows per warp at K 512,
     * 640, 1536, 4096, and its groups of 2 blocks where K is not whole groups of 4: K 192, 576
     * as in SmolLM2; Q4_0, Q4_1 and Q8_0 at K 1536 and 4096, Q5_0, Q5_1 and IQ4_NL at 4096 take
     * the streamed kernel; odd numbers of blocks: the CPU's VNNI kernel pairs blocks), plain and
     * with the fusions a decoder uses */
    static const mlxn_dtype wtypes[] = {MLXN_DTYPE_Q4_0, MLXN_DTYPE_Q4_1, MLXN_DTYPE_Q5_0,
                                        MLXN_DTYPE_Q5_1, MLXN_DTYPE_Q8_0, MLXN_DTYPE_IQ4_NL};
    static const int64_t wshapes[][2] = {{66, 192}, {130, 576}, {46, 640}, {34, 1536}, {18, 512}, {10, 4096},
                                         {35, 96}, {21, 1056}}; /* odd block counts: 3, 33 */
    static const int wfusions[] = {0, QMM_NORM | QMM_GLU, QMM_NORM | QMM_ACC, QMM_NORM};
    int wv = 0;
    for (size_t ti = 0; ti < sizeof wtypes / sizeof wtypes[0]; ti++)
        for (size_t si = 0; si < sizeof wshapes / sizeof wshapes[0]; si++, wv++) {
            qmm_case c = {wtypes[ti], xt[wv % 3], 1, wshapes[si][0], wshapes[si][1], 0, wfusions[wv % 4],
                          MLXN_ACT_SILU, 0, false};
            run_case(&c, devs, g);
        }
    /* fusions: each alone and in the pairs a decoder uses, on the decode kernels (M 1..8, the
     * wide-load and the row kernels, K tiles at 14336) and the prefill paths (SIMT tiles at 9,
     * the bf16 GEMM on CUDA at 100) */
    static const mlxn_dtype ftypes[] = {MLXN_DTYPE_Q4_0, MLXN_DTYPE_Q8_0, MLXN_DTYPE_Q4_K, MLXN_DTYPE_Q6_K,
                                        MLXN_DTYPE_IQ4_NL, MLXN_DTYPE_F16};
    static const int64_t fshapes[][3] = {{1, 66, 512}, {2, 34, 256}, {3, 130, 768}, {8, 18, 256}, {9, 66, 256},
                                         {100, 34, 256}};
    static const int fusions[] = {QMM_NORM, QMM_GLU, QMM_ACC, QMM_NORM | QMM_GLU, QMM_NORM | QMM_ACC,
                                  QMM_GLU | QMM_ACC};
    int fv = 0;
    for (size_t ti = 0; ti < sizeof ftypes / sizeof ftypes[0]; ti++)
        for (size_t si = 0; si < sizeof fshapes / sizeof fshapes[0]; si++, fv++) {
            const int64_t be = mlxn_dtype_block_elems(ftypes[ti]);
            qmm_case c = {ftypes[ti], xt[fv % 3], fshapes[si][0], fshapes[si][1],
                          (fshapes[si][2] + be - 1) / be * be, fv % 4 == 1 ? 3 : 0,
                          fusions[fv % 6], fv % 5 == 2 ? MLXN_ACT_GELU_TANH : MLXN_ACT_SILU, 0, false};
            run_case(&c, devs, g);
        }
    static const qmm_case fbig[] = {
        {MLXN_DTYPE_Q4_K, MLXN_DTYPE_F32, 1, 64, 14336, 0, QMM_NORM | QMM_GLU, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_F32, 8, 24, 14336, 0, QMM_NORM | QMM_ACC, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F32, 1, 960, 576, 0, QMM_NORM, MLXN_ACT_SILU, 0, false},   /* SmolLM2's q|k|v */
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F32, 1, 3072, 576, 0, QMM_NORM | QMM_GLU, MLXN_ACT_SILU, 0, false}, /* its gate|up */
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F32, 1, 576, 1536, 0, QMM_ACC, MLXN_ACT_SILU, 0, false},   /* its down */
    };
    for (size_t i = 0; i < sizeof fbig / sizeof fbig[0]; i++)
        run_case(&fbig[i], devs, g);
    /* the streamed decode kernel on CUDA (M = 1, K of 64 to 512 pieces: every format it takes;
     * K 2304 only Q4_0, Q4_1, Q8_0 and Q4_K, the others from K 4096): N past, at and below one
     * tile of rows, every x dtype, the fusions, and x far from 1 (it enters the products as
     * integers scaled by a power of two per 32 elements) */
    static const mlxn_dtype stypes[] = {MLXN_DTYPE_Q4_0, MLXN_DTYPE_Q4_1,   MLXN_DTYPE_Q5_0,  MLXN_DTYPE_Q5_1,
                                        MLXN_DTYPE_Q8_0, MLXN_DTYPE_Q2_K,   MLXN_DTYPE_Q3_K,  MLXN_DTYPE_Q4_K,
                                        MLXN_DTYPE_Q5_K, MLXN_DTYPE_Q6_K,   MLXN_DTYPE_IQ4_NL, MLXN_DTYPE_IQ4_XS};
    static const qmm_case sshapes[] = {
        {0, MLXN_DTYPE_F32, 1, 67, 4096, 0, 0, MLXN_ACT_SILU, 0, false},
        {0, MLXN_DTYPE_F16, 1, 3, 4096, 0, 0, MLXN_ACT_SILU, 0, false},
        {0, MLXN_DTYPE_BF16, 1, 131, 14336, 0, 0, MLXN_ACT_SILU, 0, false},
        {0, MLXN_DTYPE_F32, 1, 37, 2048 + 256, 0, 0, MLXN_ACT_SILU, 0, false},
        {0, MLXN_DTYPE_F32, 1, 66, 4096, 0, QMM_NORM | QMM_GLU, MLXN_ACT_SILU, 0, false},
        {0, MLXN_DTYPE_F32, 1, 70, 8192, 0, QMM_NORM, MLXN_ACT_SILU, 0, false},
        {0, MLXN_DTYPE_F16, 1, 35, 4096, 0, QMM_NORM | QMM_ACC, MLXN_ACT_SILU, 0, false},
        {0, MLXN_DTYPE_F32, 1, 2, 4096, 0, QMM_GLU | QMM_ACC, MLXN_ACT_GELU_TANH, 0, false},
        {0, MLXN_DTYPE_F32, 1, 45, 4096, 0, 0, MLXN_ACT_SILU, 1e-30, false},
        {0, MLXN_DTYPE_F32, 1, 45, 4096, 0, 0, MLXN_ACT_SILU, 1e30, false},
        /* |x| below 2^-106: 2^s for x's integers is past a float's range (two scalings) */
        {0, MLXN_DTYPE_F32, 1, 45, 4096, 0, 0, MLXN_ACT_SILU, 1e-36, false},
        {0, MLXN_DTYPE_F32, 1, 45, 4096, 5, 0, MLXN_ACT_SILU, 0, false},
        /* enough rows that every block of a full grid (one or two blocks per SM at K = 14336)
         * takes several tiles: stages refilled, barrier phases turning over */
        {0, MLXN_DTYPE_F32, 1, 6007, 14336, 0, 0, MLXN_ACT_SILU, 0, false},
        /* the same with the norm and GLU at K 4096 (four blocks an SM): x normalized in the
         * staging area, which later tiles then overwrite */
        {0, MLXN_DTYPE_F32, 1, 9002, 4096, 0, QMM_NORM | QMM_GLU, MLXN_ACT_SILU, 0, false},
        /* rows past the streamed kernel's 512 pieces, which CUDA takes in parts of K (Q4_0 2 x
         * 9472, three parts at K 33024; Q6_K's 18944-long rows, not whole 16-byte words, and the
         * norm and GLU, which need whole rows, on the wide-load kernel): with the caller's
         * accumulate, strided x, the norm and GLU */
        {0, MLXN_DTYPE_F32, 1, 67, 18944, 0, 0, MLXN_ACT_SILU, 0, false},
        {0, MLXN_DTYPE_F16, 1, 35, 28672, 0, QMM_ACC, MLXN_ACT_SILU, 0, false},
        {0, MLXN_DTYPE_F32, 1, 1501, 33024, 0, 0, MLXN_ACT_SILU, 0, false},
        {0, MLXN_DTYPE_F32, 1, 45, 18944, 5, 0, MLXN_ACT_SILU, 0, false},
        {0, MLXN_DTYPE_F32, 1, 34, 18944, 0, QMM_NORM | QMM_GLU, MLXN_ACT_SILU, 0, false},
    };
    for (size_t ti = 0; ti < sizeof stypes / sizeof stypes[0]; ti++)
        for (size_t si = 0; si < sizeof sshapes / sizeof sshapes[0]; si++) {
            qmm_case c = sshapes[si];
            c.w_dtype = stypes[ti];
            run_case(&c, devs, g);
        }
    /* rows that are not whole 16-byte words where they lie (on CUDA the streamed kernel reads the
     * words that hold them where W ends on the 16-byte grid, N 64, 72 and 3000; N 67 takes the
     * wide-load kernel): blocks of 32 at K 4128 (129 blocks), the K-quants whose blocks are not
     * whole words at K 4352 (17 super-blocks), with the fusions, strided x and many tiles a block;
     * then Q2_K, Q3_K and Q6_K rows of 18944 (Qwen2.5-7B's down projection, in parts of K) */
    static const mlxn_dtype atypes[] = {MLXN_DTYPE_Q4_0, MLXN_DTYPE_Q4_1, MLXN_DTYPE_Q5_0, MLXN_DTYPE_Q5_1,
                                        MLXN_DTYPE_Q8_0, MLXN_DTYPE_IQ4_NL, MLXN_DTYPE_Q2_K, MLXN_DTYPE_Q3_K,
                                        MLXN_DTYPE_Q6_K, MLXN_DTYPE_IQ4_XS};
    static const qmm_case ashapes[] = {
        {0, MLXN_DTYPE_F32, 1, 64, 0, 0, 0, MLXN_ACT_SILU, 0, false},
        {0, MLXN_DTYPE_BF16, 1, 67, 0, 0, QMM_ACC, MLXN_ACT_SILU, 0, false},
        {0, MLXN_DTYPE_F32, 1, 72, 0, 0, QMM_NORM | QMM_GLU, MLXN_ACT_SILU, 0, false},
        {0, MLXN_DTYPE_F16, 1, 3000, 0, 3, 0, MLXN_ACT_SILU, 0, false},
    };
    for (size_t ti = 0; ti < sizeof atypes / sizeof atypes[0]; ti++)
        for (size_t si = 0; si < sizeof ashapes / sizeof ashapes[0]; si++) {
            qmm_case c = ashapes[si];
            c.w_dtype = atypes[ti];
            c.K = mlxn_dtype_block_elems(atypes[ti]) == 32 ? 4128 : 4352;
            run_case(&c, devs, g);
        }
    static const qmm_case aparts[] = {
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_F32, 1, 64, 18944, 0, 0, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_F32, 1, 1000, 18944, 0, QMM_ACC, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_Q3_K, MLXN_DTYPE_F16, 1, 64, 18944, 0, QMM_ACC, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_Q2_K, MLXN_DTYPE_F32, 1, 64, 18944, 5, 0, MLXN_ACT_SILU, 0, false},
    };
    for (size_t i = 0; i < sizeof aparts / sizeof aparts[0]; i++)
        run_case(&aparts[i], devs, g);
    /* Q6_K's x staging area running past the ring (CUDA, a block alone on its SM with 14 or more
     * computing warps: K over 12288), x normalized there, and at K 12544, rows not whole 16-byte
     * words (N 1000: W ends on the 16-byte grid) */
    static const qmm_case xpast[] = {
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_F32, 1, 2003, 14336, 0, QMM_NORM, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_F32, 1, 1000, 12544, 0, 0, MLXN_ACT_SILU, 0, false},
    };
    for (size_t i = 0; i < sizeof xpast / sizeof xpast[0]; i++)
        run_case(&xpast[i], devs, g);
    /* x's blocks far apart in scale, zero blocks among them (the CPU's integer form of x for
     * Q4_K and Q6_K at one row of x, the streamed kernel's power of two per 32 elements on CUDA);
     * normalized (si 1, 2), the rows are carried by a few elements of x that are not short binary
     * fractions, so that 16 bits of them miss the bound (x in two byte planes on CUDA failed these
     * at K 4096: bench/NOTES.md, "x in two byte planes") */
    static const mlxn_dtype utypes[] = {MLXN_DTYPE_Q4_K, MLXN_DTYPE_Q6_K,  MLXN_DTYPE_Q4_0,   MLXN_DTYPE_Q5_K,
                                        MLXN_DTYPE_IQ4_XS, MLXN_DTYPE_Q3_K, MLXN_DTYPE_Q2_K, MLXN_DTYPE_IQ4_NL,
                                        MLXN_DTYPE_Q4_1, MLXN_DTYPE_Q5_0,  MLXN_DTYPE_Q5_1,   MLXN_DTYPE_Q8_0};
    for (size_t ti = 0; ti < sizeof utypes / sizeof utypes[0]; ti++)
        for (int si = 0; si < 3; si++) {
            const qmm_case c = {utypes[ti], MLXN_DTYPE_F32, 1, si ? 35 : 67, si == 1 ? 2048 : 4096, 0,
                                si ? QMM_NORM : 0, MLXN_ACT_SILU, si == 1 ? 1e-20 : 0, true};
            run_case(&c, devs, g);
        }
    /* the short-row Q8_0 kernel on CUDA (M = 1, K a multiple of 64 and not of 256, at least two
     * 32-row tiles per SM: N >= 8448 on a 132-SM H200): the last tile partial by 7, 1 and 31 rows
     * (its bytes off the 16-byte grid loaded by the lanes), every x dtype, strided x, the norm
     * and accumulate fusions, K from 64 (one pair of blocks a row) to 1472 (the longest rows
     * with four tiles a block), x far from 1 (subnormal codes scaled by x's largest element) */
    static const qmm_case qshort[] = {
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F32, 1, 49152 + 7, 576, 0, 0, MLXN_ACT_SILU, 0, false}, /* SmolLM2's head */
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F16, 1, 10240 + 1, 576, 0, QMM_NORM, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_BF16, 1, 9984 + 31, 640, 0, QMM_NORM | QMM_ACC, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F32, 1, 9000, 640, 0, QMM_ACC, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F32, 1, 9001, 64, 3, 0, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F16, 1, 9003, 1472, 5, QMM_NORM, MLXN_ACT_SILU, 0, false},
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F32, 1, 9017, 192, 0, 0, MLXN_ACT_SILU, 1e-30, false},
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F32, 1, 9017, 192, 0, 0, MLXN_ACT_SILU, 1e30, false},
    };
    for (size_t i = 0; i < sizeof qshort / sizeof qshort[0]; i++)
        run_case(&qshort[i], devs, g);
    /* non-finite x, every format on the streamed kernel's shape and on a short-row one */
    for (size_t ti = 0; ti < sizeof stypes / sizeof stypes[0]; ti++)
        for (int nan = 0; nan < 2; nan++)
            for (int si = 0; si < 2; si++) {
                const qmm_case c = {stypes[ti], MLXN_DTYPE_F32, 1, si ? 33 : 67, si ? 512 : 4096, 0, 0,
                                    MLXN_ACT_SILU, 0, false};
                run_case_x(&c, nan ? X_NAN : X_INF, devs, g);
            }
    error_cases(devs);
    test_qmatmul_qkv(devs, g);
}
