/* Quantized matmul with GGML weights on the CPU: rows of W split across threads; each row is
 * decoded once into f32 (the reference decoder) and dotted with every row of x (converted to
 * f32 once per call). Portable C the compiler vectorizes; SIMD integer dot products per
 * format are the next step (bench/NOTES.md). */
#include <stdlib.h>

#include "../core/half.h"
#include "cpu.h"
#include "ref/ref.h"

typedef struct qmm_ctx {
    const mlxn_qmatmul_args *a;
    const float *x; /* [M, K] f32 copy of x */
    mlxn_status st;
} qmm_ctx;

static void qmm_task(void *ctx, int64_t n0, int64_t n1)
{
    qmm_ctx *c = ctx;
    const mlxn_qmatmul_args *a = c->a;
    float *w = malloc((size_t)a->K * sizeof *w);
    if (!w) {
        c->st = MLXN_STATUS_ERR_OUT_OF_MEMORY; /* benign race: every writer stores the same */
        return;
    }
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *row = a->w + n * a->w_stride;
        for (int64_t k0 = 0; k0 < a->K; k0 += 32)
            mlxn_ref_weight_unit(a->w_dtype, row, k0, w + k0);
        for (int64_t m = 0; m < a->M; m++) {
            const float *x = c->x + m * a->K;
            float acc[8] = {0};
            for (int64_t k = 0; k < a->K; k += 8)
                for (int j = 0; j < 8; j++)
                    acc[j] += x[k + j] * w[k + j];
            ((float *)mlxn_rows_ptr(&a->y, m))[n] =
                ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        }
    }
    free(w);
}

mlxn_status mlxn_cpu_qmatmul(mlxn_stream *s, const mlxn_qmatmul_args *a)
{
    static const char fn[] = "mlxn_qmatmul";
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_qmatmul(a);
        return MLXN_STATUS_OK;
    }
    float *x = malloc((size_t)(a->M * a->K) * sizeof(float));
    if (!x)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory for x");
    for (int64_t m = 0; m < a->M; m++) {
        const char *row = mlxn_rows_ptr(&a->x, m);
        for (int64_t k = 0; k < a->K; k++)
            x[m * a->K + k] = (float)mlxn_ref_load(a->x_dtype, row, k);
    }
    qmm_ctx c = {a, x, MLXN_STATUS_OK};
    mlxn_threadpool_run(d->pool, a->N, 16, qmm_task, &c);
    free(x);
    if (c.st != MLXN_STATUS_OK)
        return mlxn_error(c.st, fn, "no memory for a row of W");
    return MLXN_STATUS_OK;
}
