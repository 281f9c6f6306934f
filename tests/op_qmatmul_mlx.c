/* Harness cases for MLX affine quantized matmul: every bit width x group size x scale dtype,
 * x in f32/f16/bf16 with contiguous and strided rows, decode (M <= 8) and prefill shapes with
 * odd N, against the oracle on every device. Weights are real quantizations of random
 * matrices (mlxn_mlx_quantize, checked against mlx in test_quant). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "harness.h"
#include "mlxn_quant.h"
#include "mlxn_safetensors.h" /* mlxn_mlx_dtype_for_bits */
#include "test_ops.h"

typedef struct qmm_case {
    int bits, group;
    mlxn_dtype s_dtype, x_dtype;
    int64_t M, N, K, pad;
} qmm_case;

/* Error bound per output: |y - ref| <= QMM_TOL * sum_k |x_k| |w_k| (the standard bound for an
 * f32 dot product is a few eps x that sum; 1e-5 is ~170 eps, while a wrong code or scale moves
 * a term by at least 1/255 of itself). A relative bound on y alone would fail on outputs that
 * cancel to near zero. */
#define QMM_TOL 1e-5

typedef struct qmm_data {
    uint8_t *codes, *scales, *biases;
    size_t codes_bytes, s_bytes;
    operand x, y;
} qmm_data;

static bool make_data(const qmm_case *c, rng *g, qmm_data *d)
{
    memset(d, 0, sizeof *d);
    size_t es = (size_t)mlxn_dtype_block_bytes(c->s_dtype);
    void *w = malloc((size_t)(c->N * c->K) * es);
    d->codes_bytes = (size_t)(c->N * c->K * c->bits / 8);
    d->s_bytes = (size_t)(c->N * (c->K / c->group)) * es;
    d->codes = malloc(d->codes_bytes);
    d->scales = malloc(d->s_bytes);
    d->biases = malloc(d->s_bytes);
    if (!w || !d->codes || !d->scales || !d->biases)
        return false;
    /* weights: per-row scale and offset, like trained layers */
    for (int64_t n = 0; n < c->N; n++) {
        double sc = 0.02 * (1 + rng_uniform(g)), off = 0.01 * rng_normal(g);
        for (int64_t k = 0; k < c->K; k++) {
            float v = (float)(off + sc * rng_normal(g));
            int64_t i = n * c->K + k;
            if (c->s_dtype == MLXN_DTYPE_F32)
                ((float *)w)[i] = v;
            else
                ((uint16_t *)w)[i] = c->s_dtype == MLXN_DTYPE_F16 ? mlxn_f32_to_f16(v) : mlxn_f32_to_bf16(v);
        }
    }
    bool ok = mlxn_mlx_quantize(w, c->s_dtype, c->N, c->K, c->bits, c->group, d->codes, d->scales,
                                d->biases) == MLXN_STATUS_OK;
    free(w);
    int64_t xs[2] = {c->M, c->K}, ys[2] = {c->M, c->N};
    ok = ok && operand_init(&d->x, c->x_dtype, 2, xs, c->pad, false) &&
         operand_init(&d->y, MLXN_DTYPE_F32, 2, ys, 0, false);
    if (!ok)
        return false;
    for (int64_t i = 0; i < d->x.numel; i++)
        operand_set(&d->x, i, rng_normal(g));
    operand_poison(&d->y);
    return true;
}

/* sum_k |x[m,k]| |dequant(W)[n,k]| for every output, in f64 */
static double *abs_sums(const qmm_case *c, const qmm_data *d)
{
    double *out = calloc((size_t)(c->M * c->N), sizeof *out);
    float *w = malloc((size_t)(c->N * c->K) * sizeof *w);
    if (out && w && mlxn_mlx_dequantize(d->codes, d->scales, d->biases, c->s_dtype, c->N, c->K, c->bits,
                                        c->group, w) == MLXN_STATUS_OK)
        for (int64_t m = 0; m < c->M; m++)
            for (int64_t n = 0; n < c->N; n++) {
                double acc = 0;
                for (int64_t k = 0; k < c->K; k++)
                    acc += fabs(operand_get(&d->x, m * c->K + k)) * fabs((double)w[n * c->K + k]);
                out[m * c->N + n] = acc;
            }
    free(w);
    return out;
}

static void free_data(qmm_data *d)
{
    free(d->codes);
    free(d->scales);
    free(d->biases);
    operand_free(&d->x);
    operand_free(&d->y);
}

/* Runs the case on dev; y's whole image comes back in out. */
static bool run_on(const qmm_case *c, const qmm_data *d, test_device *dev, operand *out, char *why, size_t cap)
{
    mlxn_buffer *bw = NULL, *bs = NULL, *bb = NULL;
    placed x = {0}, y = {0};
    bool ok = false;
    if (mlxn_buffer_create(dev->device, d->codes_bytes, &bw) || mlxn_buffer_create(dev->device, d->s_bytes, &bs) ||
        mlxn_buffer_create(dev->device, d->s_bytes, &bb) ||
        mlxn_buffer_upload(bw, 0, d->codes, d->codes_bytes, NULL) ||
        mlxn_buffer_upload(bs, 0, d->scales, d->s_bytes, NULL) ||
        mlxn_buffer_upload(bb, 0, d->biases, d->s_bytes, NULL) || !operand_place(&d->x, dev, &x) ||
        !operand_place(&d->y, dev, &y)) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    int64_t wshape[2] = {c->N, c->K}, sshape[2] = {c->N, c->K / c->group};
    mlxn_tensor tw = mlxn_tensor_make(bw, 0, mlxn_mlx_dtype_for_bits(c->bits), 2, wshape);
    mlxn_tensor ts = mlxn_tensor_make(bs, 0, c->s_dtype, 2, sshape);
    mlxn_tensor tb = mlxn_tensor_make(bb, 0, c->s_dtype, 2, sshape);
    mlxn_status st = mlxn_qmatmul_mlx(dev->stream, &x.view, &tw, &ts, &tb, c->group, &y.view);
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
    mlxn_buffer_free(bs);
    mlxn_buffer_free(bb);
    placed_free(&x);
    placed_free(&y);
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
    snprintf(name, sizeof name, "qmatmul_mlx/q%d/g%d/s=%s/x=%s/%lldx%lldx%lld%s", c->bits, c->group,
             mlxn_dtype_name(c->s_dtype), mlxn_dtype_name(c->x_dtype), (long long)c->M, (long long)c->N,
             (long long)c->K, c->pad ? "/strided" : "");
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
    harness_run_bound_case(name, devs, run_cb, &r, abs_sum, QMM_TOL, QMM_TOL);
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
    int64_t xs[2] = {2, 256}, ws[2] = {8, 256}, ss[2] = {8, 4}, ys[2] = {2, 8}, ssb[2] = {8, 3};
    mlxn_tensor x = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, xs);
    mlxn_tensor w = mlxn_tensor_make(b, 4096, MLXN_DTYPE_MLX_Q4, 2, ws);
    mlxn_tensor s = mlxn_tensor_make(b, 8192, MLXN_DTYPE_F16, 2, ss);
    mlxn_tensor y = mlxn_tensor_make(b, 16384, MLXN_DTYPE_F32, 2, ys);
    mlxn_tensor sbad = mlxn_tensor_make(b, 8192, MLXN_DTYPE_F16, 2, ssb);
    mlxn_tensor wf = mlxn_tensor_make(b, 4096, MLXN_DTYPE_F32, 2, ws);
    mlxn_tensor sf = mlxn_tensor_make(b, 8192, MLXN_DTYPE_F32, 2, ss);
    harness_expect_status("qmatmul_mlx/error/scales-shape", mlxn_qmatmul_mlx(dev->stream, &x, &w, &sbad, &sbad, 64, &y),
           MLXN_STATUS_ERR_SHAPE, "scales are [8, 3]");
    harness_expect_status("qmatmul_mlx/error/group", mlxn_qmatmul_mlx(dev->stream, &x, &w, &s, &s, 48, &y),
           MLXN_STATUS_ERR_INVALID_ARG, "group_size is 48");
    harness_expect_status("qmatmul_mlx/error/w-dtype", mlxn_qmatmul_mlx(dev->stream, &x, &wf, &s, &s, 64, &y),
           MLXN_STATUS_ERR_DTYPE, "w is f32");
    harness_expect_status("qmatmul_mlx/error/mixed-scale-dtypes", mlxn_qmatmul_mlx(dev->stream, &x, &w, &s, &sf, 64, &y),
           MLXN_STATUS_ERR_DTYPE, "biases f32");
    int64_t xs2[2] = {2, 128};
    mlxn_tensor x2 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, xs2);
    harness_expect_status("qmatmul_mlx/error/k-mismatch", mlxn_qmatmul_mlx(dev->stream, &x2, &w, &s, &s, 64, &y),
           MLXN_STATUS_ERR_SHAPE, "rows of 256 codes, x has rows of 128");
    mlxn_buffer_free(b);
}

void test_qmatmul_mlx(test_devices *devs, rng *g)
{
    static const int64_t shapes[][4] = {
        /* M, N, K, pad */
        {1, 67, 256, 0}, {3, 33, 512, 0}, {8, 129, 384, 0}, {1, 1, 128, 0}, {1, 19, 96, 0}, {1, 21, 320, 3},
        {9, 65, 256, 0}, {100, 67, 640, 0}, {2, 31, 256, 5},
    };
    static const mlxn_dtype fl[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    static const int bits[6] = {2, 3, 4, 5, 6, 8}, groups[3] = {32, 64, 128};
    int variant = 0;
    for (int bi = 0; bi < 6; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
                qmm_case c = {bits[bi], groups[gi], fl[variant % 3], fl[(variant / 3) % 3],
                              shapes[si][0], shapes[si][1], shapes[si][2], shapes[si][3]};
                variant++;
                if (c.K % c.group)
                    c.K = (c.K / c.group + 1) * c.group;
                run_case(&c, devs, g);
            }
    /* long rows: the benchmark's decode K once (x staged whole), and x too large for shared
     * memory at M = 8 and M = 3 (the CUDA decode kernel walks K tiles, the last one partial) */
    static const qmm_case big[] = {
        {4, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 40, 14336, 0},
        {4, 64, MLXN_DTYPE_BF16, MLXN_DTYPE_F32, 8, 40, 8192, 0},
        {3, 128, MLXN_DTYPE_F32, MLXN_DTYPE_F16, 3, 37, 14336, 0},
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
        run_case(&big[i], devs, g);
    /* the streamed decode kernel on CUDA (M = 1, K from 4096, f16 or bf16 scales): every width and
     * group size, N past, at and below one tile of rows, every x dtype, strided x, and enough rows
     * that each block of a full grid takes several tiles */
    static const qmm_case stream[] = {
        {4, 32, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 67, 4096, 0},
        {4, 64, MLXN_DTYPE_BF16, MLXN_DTYPE_F16, 1, 3, 4096, 0},
        {4, 128, MLXN_DTYPE_F16, MLXN_DTYPE_BF16, 1, 131, 14336, 0},
        {4, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 8, 8192, 5},
        {4, 128, MLXN_DTYPE_BF16, MLXN_DTYPE_F32, 1, 45, 4096, 0},
        {4, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 6007, 14336, 0},
        {8, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 67, 4096, 0},
        {8, 32, MLXN_DTYPE_BF16, MLXN_DTYPE_BF16, 1, 131, 14336, 3},
        {8, 128, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 2007, 8192, 0},
        {2, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 67, 4096, 0},
        {2, 128, MLXN_DTYPE_BF16, MLXN_DTYPE_F16, 1, 131, 14336, 0},
        {2, 32, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 3007, 8192, 5},
        {3, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 67, 4096, 0},
        {3, 32, MLXN_DTYPE_BF16, MLXN_DTYPE_F16, 1, 3, 8192, 3},
        {3, 128, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 2007, 14336, 0},
        {5, 64, MLXN_DTYPE_BF16, MLXN_DTYPE_F32, 1, 67, 4096, 0},
        {5, 128, MLXN_DTYPE_F16, MLXN_DTYPE_BF16, 1, 131, 14336, 0},
        {5, 32, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 3007, 8192, 5},
        {6, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 67, 4096, 0},
        {6, 32, MLXN_DTYPE_BF16, MLXN_DTYPE_F32, 1, 131, 14336, 3},
        {6, 128, MLXN_DTYPE_F16, MLXN_DTYPE_F16, 1, 2007, 8192, 0},
        /* K 14336, f32 x: one block an SM, x staged in the ring's last stages */
        {6, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 2007, 14336, 0},
        /* rows past the streamed kernel's 512 pieces, which CUDA takes in parts of K (4-bit group
         * 64's of 9728 and 9216; group 128's rows of scales, 296 bytes, are not 16-byte words and
         * take the MLX kernel) */
        {4, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 67, 18944, 0},
        {4, 128, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 67, 18944, 0},
        {8, 64, MLXN_DTYPE_BF16, MLXN_DTYPE_F16, 1, 35, 28672, 0},
        {2, 32, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 1003, 33024, 3},
        {3, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 67, 18944, 0},
        {5, 64, MLXN_DTYPE_BF16, MLXN_DTYPE_F32, 1, 35, 28672, 0},
        {6, 32, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 103, 18944, 0},
    };
    for (size_t i = 0; i < sizeof stream / sizeof stream[0]; i++)
        run_case(&stream[i], devs, g);
    /* the CPU kernels: at one row on VNNI (2 to 6 bits) with a last quad of one unit, 6-bit rows
     * four a pass (K 14336) and two (K 28672, rows past 16 KB; 4-bit K 36864), and f32 scales in
     * 4-byte aligned rows of an odd number of groups; then prefill, the decoded rows of W in
     * register blocks (M 4..31) and in panels of x (from 32 rows; 4 MB passes over them at K
     * 8192, rows past the last panel) for every width */
    static const qmm_case cpu_paths[] = {
        {4, 32, MLXN_DTYPE_F32, MLXN_DTYPE_F32, 1, 7, 160, 0},
        {4, 64, MLXN_DTYPE_F32, MLXN_DTYPE_F32, 1, 9, 320, 0},
        {2, 32, MLXN_DTYPE_BF16, MLXN_DTYPE_F32, 1, 11, 160, 0},
        {3, 32, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 11, 416, 0},
        {5, 32, MLXN_DTYPE_F32, MLXN_DTYPE_BF16, 1, 13, 160, 2},
        {6, 32, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 7, 672, 0},
        {6, 64, MLXN_DTYPE_BF16, MLXN_DTYPE_F16, 1, 61, 14336, 0},
        {6, 128, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 29, 28672, 0},
        {4, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 9, 36864, 0},
        {2, 32, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 5, 17, 256, 0},
        {3, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 64, 29, 512, 0},
        {5, 32, MLXN_DTYPE_BF16, MLXN_DTYPE_BF16, 33, 13, 1024, 3},
        {6, 128, MLXN_DTYPE_F32, MLXN_DTYPE_F16, 45, 40, 2048, 0},
        {8, 128, MLXN_DTYPE_BF16, MLXN_DTYPE_F32, 96, 50, 4096, 0},
        {4, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 170, 26, 8192, 0},
    };
    for (size_t i = 0; i < sizeof cpu_paths / sizeof cpu_paths[0]; i++)
        run_case(&cpu_paths[i], devs, g);
    /* non-finite x: every width at K 4096 (the streamed kernel's), and bits 3 and M 3 on the MLX
     * kernel */
    static const qmm_case nonfinite[] = {
        {2, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 67, 4096, 0},
        {3, 32, MLXN_DTYPE_BF16, MLXN_DTYPE_F32, 1, 67, 4096, 0},
        {5, 128, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 67, 4096, 0},
        {6, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 67, 4096, 0},
        {4, 64, MLXN_DTYPE_BF16, MLXN_DTYPE_F32, 1, 67, 4096, 0},
        {8, 32, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 67, 4096, 0},
        {3, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F32, 1, 33, 512, 0},
        {4, 32, MLXN_DTYPE_F32, MLXN_DTYPE_F32, 3, 33, 512, 0},
    };
    for (size_t i = 0; i < sizeof nonfinite / sizeof nonfinite[0]; i++)
        for (int nan = 0; nan < 2; nan++)
            run_case_x(&nonfinite[i], nan ? X_NAN : X_INF, devs, g);
    error_cases(devs);
}
