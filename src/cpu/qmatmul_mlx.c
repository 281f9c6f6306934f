/* MLX affine quantized matmul on the CPU: output columns (rows of W) split across threads;
 * per group of K, y += scale * dot(x, codes) + bias * sum(x), with the sums of x per group
 * computed once per call. Portable C: the compiler vectorizes the 4- and 8-bit inner loops. */
#include <stdlib.h>

#include "../core/half.h"
#include "../formats/mlx_affine.h"
#include "cpu.h"
#include "ref/ref.h"

typedef struct qmm_ctx {
    const mlxn_qmatmul_mlx_args *a;
    const float *x;     /* [M, K] f32 copy of x */
    const float *xsum;  /* [M, K / group_size] */
} qmm_ctx;

static float load_s(int dt, const void *p, int64_t i)
{
    if (dt == MLXN_DTYPE_F16)
        return mlxn_f16_to_f32(((const uint16_t *)p)[i]);
    if (dt == MLXN_DTYPE_BF16)
        return mlxn_bf16_to_f32(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

/* dot of one group's codes with x */
static float group_dot(const uint8_t *w, int64_t k0, int gs, int bits, const float *x)
{
    float acc = 0;
    if (bits == 4) {
        const uint8_t *p = w + k0 / 2;
        for (int j = 0; j < gs; j += 2) {
            acc += x[j] * (float)(p[j / 2] & 15) + x[j + 1] * (float)(p[j / 2] >> 4);
        }
    } else if (bits == 8) {
        const uint8_t *p = w + k0;
        for (int j = 0; j < gs; j++)
            acc += x[j] * (float)p[j];
    } else {
        for (int j = 0; j < gs; j++)
            acc += x[j] * (float)mlxn_mlx_get_code(w, k0 + j, bits);
    }
    return acc;
}

static void qmm_task(void *ctx, int64_t n0, int64_t n1)
{
    const qmm_ctx *c = ctx;
    const mlxn_qmatmul_mlx_args *a = c->a;
    const int gs = a->group_size;
    const int64_t groups = a->K / gs;
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *w = a->w + n * a->w_stride;
        const char *sp = (const char *)a->scales + n * a->s_stride;
        const char *bp = (const char *)a->biases + n * a->b_stride;
        for (int64_t m = 0; m < a->M; m++) {
            const float *x = c->x + m * a->K;
            const float *xs = c->xsum + m * groups;
            float acc = 0;
            for (int64_t g = 0; g < groups; g++)
                acc += load_s(a->s_dtype, sp, g) * group_dot(w, g * gs, gs, a->bits, x + g * gs) +
                       load_s(a->s_dtype, bp, g) * xs[g];
            ((float *)mlxn_rows_ptr(&a->y, m))[n] = acc;
        }
    }
}

mlxn_status mlxn_cpu_qmatmul_mlx(mlxn_stream *s, const mlxn_qmatmul_mlx_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_qmatmul_mlx(a);
        return MLXN_STATUS_OK;
    }
    const int64_t groups = a->K / a->group_size;
    float *x = malloc((size_t)(a->M * a->K + a->M * groups) * sizeof(float));
    if (!x)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_qmatmul_mlx", "no memory for x");
    float *xsum = x + a->M * a->K;
    for (int64_t m = 0; m < a->M; m++) {
        const char *row = mlxn_rows_ptr(&a->x, m);
        for (int64_t k = 0; k < a->K; k++)
            x[m * a->K + k] = load_s(a->x_dtype, row, k);
        for (int64_t g = 0; g < groups; g++) {
            float sum = 0;
            for (int j = 0; j < a->group_size; j++)
                sum += x[m * a->K + g * a->group_size + j];
            xsum[m * groups + g] = sum;
        }
    }
    qmm_ctx c = {a, x, xsum};
    mlxn_threadpool_run(d->pool, a->N, 16, qmm_task, &c);
    free(x);
    return MLXN_STATUS_OK;
}
