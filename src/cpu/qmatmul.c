/* Quantized matmul with GGML or MLX affine weights on the CPU: x converted to f32 once per call,
 * rows of W split across the thread pool. Each range runs the SIMD level's kernel for W's format
 * (qmatmul_impl.h: codes decoded in registers and used by every row of x); a format or level
 * without one takes the generic path, which decodes each row of W with the reference decoder
 * and dots it with every row of x. Fusions (GGML only): the norm of x is applied while x is
 * converted; GLU and accumulation run over the plain product, kept in a temporary, after the
 * pool is done. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../core/half.h"
#include "../formats/mlx_affine.h"
#include "cpu.h"
#include "mlxn_safetensors.h" /* mlxn_mlx_dtype_for_bits */
#include "ref/ref.h"

typedef struct qmm_ctx {
    const mlxn_qmatmul_args *a;
    const float *x;    /* [M, kpad] f32 copy of x */
    const float *xsum; /* [M, xss] span sums of x (level kernels; mlxn_cpu_qmm_xsums) */
    int64_t xss;
    const float *xt;   /* x in panels (mlxn_cpu_qmm_panels), or NULL */
    const mlxn_qmatmul_mlx_args *mlx; /* MLX weights (a->w unused), or NULL: GGML's */
    mlxn_cpu_qmatmul_rows_fn rows; /* the level's kernel, or NULL: generic */
    mlxn_cpu_qmatmul_mlx_rows_fn mlx_rows; /* the level's MLX kernel, or NULL */
    atomic_int_fast64_t next;      /* first row of W not yet taken */
    int64_t chunk;                 /* rows taken at a time */
    mlxn_status st;
} qmm_ctx;

static void qmm_generic(qmm_ctx *c, int64_t n0, int64_t n1)
{
    const mlxn_qmatmul_args *a = c->a;
    const int64_t kpad = (a->K + 31) / 32 * 32; /* x's rows and w are zero-padded to units */
    const mlxn_qmatmul_mlx_args *mlx = c->mlx;
    const bool blocks = !mlx && mlxn_dtype_block_elems(a->w_dtype) > 1;
    float *w = calloc((size_t)kpad, sizeof *w);
    if (!w) {
        c->st = MLXN_STATUS_ERR_OUT_OF_MEMORY; /* benign race: every writer stores the same */
        return;
    }
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *row = mlx ? mlx->w + n * mlx->w_stride : a->w + n * a->w_stride;
        if (mlx) {
            const char *sp = (const char *)mlx->scales + n * mlx->s_stride, *bp = (const char *)mlx->biases + n * mlx->b_stride;
            for (int64_t k = 0; k < a->K; k++) {
                const int64_t g = k / mlx->group_size;
                w[k] = mlxn_load_float(mlx->s_dtype, sp, g) * (float)mlxn_mlx_get_code(row, k, mlx->bits) +
                       mlxn_load_float(mlx->s_dtype, bp, g);
            }
        } else if (blocks)
            for (int64_t k0 = 0; k0 < a->K; k0 += 32)
                mlxn_ref_weight_unit(a->w_dtype, row, k0, w + k0);
        else
            for (int64_t k = 0; k < a->K; k++)
                w[k] = (float)mlxn_ref_load(a->w_dtype, row, k);
        for (int64_t m = 0; m < a->M; m++) {
            const float *x = c->x + m * kpad;
            float acc[8] = {0};
            for (int64_t k = 0; k < kpad; k += 8)
                for (int j = 0; j < 8; j++)
                    acc[j] += x[k + j] * w[k + j];
            ((float *)mlxn_rows_ptr(&a->y, m))[n] =
                ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        }
    }
    free(w);
}

/* Each thread takes chunks of rows of W until none are left: a thread slowed down by
 * something else on its core leaves its share to the others instead of holding up the call. */
static void qmm_task(void *ctx, int64_t p0, int64_t p1)
{
    (void)p0;
    (void)p1;
    qmm_ctx *c = ctx;
    for (;;) {
        const int64_t n0 = atomic_fetch_add_explicit(&c->next, c->chunk, memory_order_relaxed);
        if (n0 >= c->a->N)
            return;
        const int64_t n1 = n0 + c->chunk < c->a->N ? n0 + c->chunk : c->a->N;
        if (c->mlx_rows)
            c->mlx_rows(c->a, c->mlx, c->x, c->xsum, c->xss, c->xt, n0, n1);
        else if (c->rows)
            c->rows(c->a, c->x, c->xsum, c->xss, c->xt, n0, n1);
        else
            qmm_generic(c, n0, n1);
    }
}

#define QMM_XINT_MAX ((double)MLXN_CPU_QMM_XINT_MAX)

/* x's INT256 form for one 256-block (see cpu.h): its scale, and its digits d0 at d, d1 at d + 256,
 * d2 at d + 512. False where x is not finite or tiny there. Rounded in f32 (to within one of the
 * nearest integer: x within s of s X), which vectorizes. */
static bool qmm_xdigits(const float *x, float *scale, int8_t *d)
{
    float amax = 0;
    bool finite = true;
    for (int i = 0; i < 256; i++) {
        finite = finite && isfinite(x[i]);
        amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    }
    if (!finite || (amax > 0 && amax < MLXN_CPU_QMM_XINT_TINY))
        return false;
    const float inv = amax > 0 ? (float)(QMM_XINT_MAX / (double)amax) : 0;
    *scale = (float)((double)amax / QMM_XINT_MAX);
    for (int i = 0; i < 256; i++) {
        const float v = x[i] * inv; /* |v| <= QMM_XINT_MAX (1 + 2^-23): X stays in range */
        int32_t X = (int32_t)(v + (v >= 0 ? 0.5f : -0.5f));
        X = X > (int32_t)QMM_XINT_MAX ? (int32_t)QMM_XINT_MAX : X < -(int32_t)QMM_XINT_MAX ? -(int32_t)QMM_XINT_MAX : X;
        const int32_t d0 = ((X + 128) & 255) - 128, X1 = (X - d0) / 256;
        const int32_t d1 = ((X1 + 128) & 255) - 128;
        d[i] = (int8_t)d0;
        d[256 + i] = (int8_t)d1;
        d[512 + i] = (int8_t)((X1 - d1) / 256);
    }
    return true;
}

void mlxn_cpu_qmm_xsums(const float *x, int64_t K, float *xsum, int form, const mlxn_cpu_kernel_set *ks)
{
    const int64_t n32 = mlxn_cpu_qmm_xs32(K), n16 = mlxn_cpu_qmm_xdig(K) - n32;
    for (int64_t u = 0; u < n16; u++) {
        float s = 0;
        for (int j = 0; u < K / 16 && j < 16; j++)
            s += x[u * 16 + j];
        xsum[n32 + u] = s;
    }
    for (int64_t u = 0; u < n32; u++)
        xsum[u] = u < K / 32 ? xsum[n32 + 2 * u] + xsum[n32 + 2 * u + 1] : 0;
    float *flag = xsum + mlxn_cpu_qmm_xdig(K), *scales = flag + 16;
    bool ok = false;
    if (form == MLXN_CPU_QMM_X_INT256 && K % 256 == 0) {
        int8_t *d = (int8_t *)(scales + (K / 256 + 15) / 16 * 16);
        ok = true;
        for (int64_t b = 0; ok && b < K / 256; b++)
            ok = qmm_xdigits(x + b * 256, scales + b, d + b * 768);
    } else if ((form == MLXN_CPU_QMM_X_INT32 || form == MLXN_CPU_QMM_X_INT32_HALVES ||
                form == MLXN_CPU_QMM_X_INT32_HALVES_SUMS) &&
               ks->qmatmul_xint32) {
        ok = ks->qmatmul_xint32(x, K, form, scales, (int8_t *)(scales + n32));
    }
    *flag = ok ? (float)form : (float)MLXN_CPU_QMM_X_NONE;
}

void mlxn_cpu_qmm_panels(const float *x, int64_t K, int64_t u0, int64_t u1, float *xt)
{
    const int64_t P = MLXN_CPU_QMM_PANEL, kb = (K + 15) / 16;
    for (int64_t u = u0; u < u1; u++) { /* 16 elements of each of a panel's rows: a line of x each */
        const int64_t p = u / kb, k0 = u % kb * 16, k1 = K - k0 < 16 ? K : k0 + 16;
        float *t = xt + p * K * P;
        for (int64_t i = 0; i < P; i++)
            for (int64_t k = k0; k < k1; k++)
                t[k * P + i] = x[(p * P + i) * K + k];
    }
}

/* x's preparation: f32 rows (normed where asked), their span sums and the panels they fill */
typedef struct xprep_ctx {
    const mlxn_qmatmul_args *a;
    const mlxn_cpu_kernel_set *ks;
    float *x, *xsum, *xt; /* [M, kpad], [M, xss], panels or NULL */
    int64_t kpad, xss;
    int x_form;
} xprep_ctx;

/* rows 32 g0 .. 32 g1 - 1 of x, and their panels */
static void xprep_task(void *ctx, int64_t g0, int64_t g1)
{
    const xprep_ctx *c = ctx;
    const mlxn_qmatmul_args *a = c->a;
    const int64_t m1 = g1 * MLXN_CPU_QMM_PANEL < a->M ? g1 * MLXN_CPU_QMM_PANEL : a->M;
    for (int64_t m = g0 * MLXN_CPU_QMM_PANEL; m < m1; m++) {
        const char *row = mlxn_rows_ptr(&a->x, m);
        float *xm = c->x + m * c->kpad;
        if (a->x_dtype == MLXN_DTYPE_F32) /* the common case, without a call per element */
            memcpy(xm, row, (size_t)a->K * sizeof(float));
        else
            for (int64_t k = 0; k < a->K; k++)
                xm[k] = (float)mlxn_ref_load(a->x_dtype, row, k);
        if (a->norm_w) {
            double ss = 0; /* f64: rows of many thousands keep the sum's precision */
            for (int64_t k = 0; k < a->K; k++)
                ss += (double)xm[k] * xm[k];
            const float inv = (float)(1.0 / sqrt(ss / (double)a->K + (double)a->norm_eps));
            for (int64_t k = 0; k < a->K; k++)
                xm[k] = xm[k] * inv * a->norm_w[k];
        }
        if (c->xss)
            mlxn_cpu_qmm_xsums(xm, a->K, c->xsum + m * c->xss, a->M == 1 ? c->x_form : MLXN_CPU_QMM_X_NONE, c->ks);
    }
    if (c->xt) { /* the whole panels among the rows */
        const int64_t kb = mlxn_cpu_qmm_panel_units(MLXN_CPU_QMM_PANEL, a->K), np = a->M / MLXN_CPU_QMM_PANEL;
        mlxn_cpu_qmm_panels(c->x, a->K, g0 * kb, (g1 < np ? g1 : np) * kb, c->xt);
    }
}

/* a's product; with mlx, MLX's weights (mlx) take the place of a's (a then holds M, N, K, x and y) */
static mlxn_status qmatmul_product(mlxn_stream *s, const mlxn_qmatmul_args *a, const mlxn_qmatmul_mlx_args *mlx)
{
    const char *fn = mlx ? "mlxn_qmatmul_mlx" : "mlxn_qmatmul";
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        if (mlx)
            mlxn_ref_qmatmul_mlx(mlx);
        else
            mlxn_ref_qmatmul(a);
        return MLXN_STATUS_OK;
    }
    mlxn_cpu_qmatmul_rows_fn rows = !mlx && d->kernels->qmatmul_rows ? d->kernels->qmatmul_rows(a->w_dtype) : NULL;
    mlxn_cpu_qmatmul_mlx_rows_fn mlx_rows = mlx ? d->kernels->qmatmul_mlx_rows : NULL;
    const bool kernel = rows || mlx_rows;
    const int x_form = kernel && d->kernels->qmatmul_x_form ? d->kernels->qmatmul_x_form(a->w_dtype)
                                                            : MLXN_CPU_QMM_X_NONE;
    /* the generic path works in units of 32 elements; the GGML kernels take the span sums of x */
    const int64_t kpad = kernel ? a->K : (a->K + 31) / 32 * 32;
    /* x's integer forms are for one row of x: with more, a row of xsum holds the sums and the
     * flag alone (at K 14336 and 512 rows, 2.8 MB where the whole form takes 33 MB) */
    const int64_t xss = !kernel                                        ? 0
                        : a->M == 1 && (rows || x_form != MLXN_CPU_QMM_X_NONE) ? mlxn_cpu_qmm_xss(a->K)
                                                                          : mlxn_cpu_qmm_xdig(a->K) + 16;
    /* 64-byte aligned: the kernels load x a vector at a time, and off a 64-byte boundary every
     * 64-byte load straddles two cache lines. Zeroed (the panels are written whole, and so are
     * the rows where the kernels read x): the generic path reads its rows' padding. */
    int64_t npanel = kernel && mlxn_cpu_qmm_panels_apply(a->M, a->K) ? mlxn_cpu_qmm_panel_floats(a->M, a->K) : 0;
    float *x = mlxn_aligned_alloc((size_t)(a->M * (kpad + xss) + npanel) * sizeof(float));
    if (!x && npanel) { /* the kernels do without the panels, at session 4's rate */
        npanel = 0;
        x = mlxn_aligned_alloc((size_t)(a->M * (kpad + xss)) * sizeof(float));
    }
    if (!x)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory for x");
    float *xsum = x + a->M * kpad, *xt = npanel ? xsum + a->M * xss : NULL;
    memset(kernel ? xsum : x, 0, (size_t)(a->M * (kernel ? xss : kpad + xss)) * sizeof(float));
    /* on every thread, 32 rows a unit: on one, x's conversion and panels took ~7% of a prefill's
     * product with a short W (640 x 2048, 512 rows) */
    xprep_ctx xc = {a, d->kernels, x, xsum, xt, kpad, xss, x_form};
    const int64_t groups = (a->M + MLXN_CPU_QMM_PANEL - 1) / MLXN_CPU_QMM_PANEL;
    mlxn_threadpool_run(d->pool, groups, (16384 + 32 * a->K - 1) / (32 * a->K), xprep_task, &xc);
    /* GLU or accumulation: the plain product goes to yt [M, N] first */
    mlxn_qmatmul_args plain = *a;
    float *yt = NULL;
    if (a->glu || a->accumulate) {
        yt = malloc((size_t)(a->M * a->N) * sizeof *yt);
        if (!yt) {
            mlxn_aligned_free(x);
            return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory for the product before the epilogue");
        }
        plain.y = (mlxn_rows){.base = (char *)yt, .d1 = 1, .d2 = a->M, .s0 = 0, .s1 = 0,
                              .s2 = a->N * (int64_t)sizeof *yt};
    }
    qmm_ctx c = {.a = &plain, .x = x, .xsum = xsum, .xss = xss, .xt = xt, .mlx = mlx, .rows = rows,
                 .mlx_rows = mlx_rows, .st = MLXN_STATUS_OK};
    /* chunks of about 64 KiB of W (256 KiB from 9 rows of x: the kernels' L2 panels), at least
     * four per thread; with x in panels a quarter of a thread's share, in whole register blocks
     * (MLXN_CPU_QMM_PANEL_W): every chunk reads all of x's panels, once per block of rows. A small
     * product (under ~16K multiply-adds per thread) stays on the caller. */
    const int threads = mlxn_threadpool_size(d->pool);
    const int64_t row_bytes = a->w_stride > 0 ? a->w_stride : 1;
    int64_t chunk = ((a->M > 8 ? 256 : 64) << 10) / row_bytes;
    const int64_t quarter = (a->N + 4 * threads - 1) / (4 * threads);
    const int64_t pw = MLXN_CPU_QMM_PANEL_W;
    chunk = xt ? (quarter + pw - 1) / pw * pw : chunk > quarter ? quarter : chunk;
    c.chunk = chunk < 1 ? 1 : chunk;
    atomic_init(&c.next, 0);
    const int64_t per_row = a->K * a->M;
    const int64_t min_rows = per_row >= 16384 ? 1 : 16384 / per_row;
    int64_t parts = a->N / min_rows;
    parts = parts > threads ? threads : parts < 1 ? 1 : parts;
    mlxn_threadpool_run(d->pool, parts, 1, qmm_task, &c);
    mlxn_aligned_free(x);
    if (yt && c.st == MLXN_STATUS_OK) {
        const int64_t n_out = a->glu ? a->N / 2 : a->N;
        for (int64_t m = 0; m < a->M; m++) {
            const float *p = yt + m * a->N;
            float *y = (float *)mlxn_rows_ptr(&a->y, m);
            if (a->glu) {
                d->kernels->act_f32(a->glu_act, p, p + n_out, y, n_out, a->accumulate);
                continue;
            }
            for (int64_t n = 0; n < n_out; n++)
                y[n] = a->accumulate ? y[n] + p[n] : p[n];
        }
    }
    free(yt);
    if (c.st != MLXN_STATUS_OK)
        return mlxn_error(c.st, fn, "no memory for a row of W");
    return MLXN_STATUS_OK;
}

/* The product, then the fused rope and KV append as their own ops would run them. */
mlxn_status mlxn_cpu_qmatmul(mlxn_stream *s, const mlxn_qmatmul_op_args *a)
{
    MLXN_TRY(qmatmul_product(s, &a->mm, NULL));
    if (a->rope_on)
        MLXN_TRY(mlxn_cpu_rope(s, &a->rope));
    if (a->kv_on)
        MLXN_TRY(mlxn_cpu_kv_append(s, &a->kv));
    return MLXN_STATUS_OK;
}

/* MLX affine weights: the same driver, x's preparation and threading, with MLX's row kernel */
mlxn_status mlxn_cpu_qmatmul_mlx(mlxn_stream *s, const mlxn_qmatmul_mlx_args *a)
{
    const mlxn_qmatmul_args mm = {.M = a->M, .N = a->N, .K = a->K, .w_dtype = mlxn_mlx_dtype_for_bits(a->bits),
                                  .x_dtype = a->x_dtype, .x = a->x, .w = a->w, .w_stride = a->w_stride, .y = a->y};
    return qmatmul_product(s, &mm, a);
}
