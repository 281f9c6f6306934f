/* Inclusive prefix sums along rows on the CPU; f32 summed in f64 (one rounding per output, so
 * long rows keep f32 accuracy), i32 in unsigned arithmetic (wrapping modulo 2^32). Many rows:
 * rows split across the thread pool. Fewer rows than threads with long rows: each row in
 * SEG-element segments, in two passes: the segments' sums in parallel, their running offsets
 * in order, then the segments' scans from those offsets in parallel. */
#include <stdint.h>
#include <stdlib.h>

#include "cpu.h"
#include "ref/ref.h"

enum { SEG = 65536 };

/* y[i0 .. i1) = running sums of x[i0 .. i1) from `start` */
static void scan_range(const mlxn_cumsum_args *a, int64_t r, int64_t i0, int64_t i1, double start_f,
                       uint32_t start_i)
{
    const char *x = mlxn_rows_ptr(&a->x, r);
    char *y = mlxn_rows_ptr(&a->y, r);
    if (a->dtype == MLXN_DTYPE_I32) {
        uint32_t sum = start_i;
        for (int64_t i = i0; i < i1; i++) {
            sum += (uint32_t)((const int32_t *)x)[i];
            ((int32_t *)y)[i] = (int32_t)sum;
        }
    } else {
        double sum = start_f;
        for (int64_t i = i0; i < i1; i++) {
            sum += ((const float *)x)[i];
            ((float *)y)[i] = (float)sum;
        }
    }
}

static void rows_task(void *ctx, int64_t r0, int64_t r1)
{
    const mlxn_cumsum_args *a = ctx;
    for (int64_t r = r0; r < r1; r++)
        scan_range(a, r, 0, a->n, 0.0, 0);
}

typedef struct seg_ctx {
    const mlxn_cumsum_args *a;
    int64_t segs;        /* per row */
    double *sum_f;       /* [n_rows * segs]: a segment's sum, then its start */
    uint32_t *sum_i;
} seg_ctx;

static void seg_sum_task(void *ctx, int64_t u0, int64_t u1)
{
    const seg_ctx *c = ctx;
    const mlxn_cumsum_args *a = c->a;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t r = u / c->segs, i0 = u % c->segs * SEG, i1 = a->n - i0 < SEG ? a->n : i0 + SEG;
        const char *x = mlxn_rows_ptr(&a->x, r);
        if (a->dtype == MLXN_DTYPE_I32) {
            uint32_t s = 0;
            for (int64_t i = i0; i < i1; i++)
                s += (uint32_t)((const int32_t *)x)[i];
            c->sum_i[u] = s;
        } else {
            double s = 0;
            for (int64_t i = i0; i < i1; i++)
                s += ((const float *)x)[i];
            c->sum_f[u] = s;
        }
    }
}

static void seg_scan_task(void *ctx, int64_t u0, int64_t u1)
{
    const seg_ctx *c = ctx;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t i0 = u % c->segs * SEG;
        scan_range(c->a, u / c->segs, i0, c->a->n - i0 < SEG ? c->a->n : i0 + SEG, c->sum_f[u], c->sum_i[u]);
    }
}

mlxn_status mlxn_cpu_cumsum(mlxn_stream *s, const mlxn_cumsum_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_cumsum(a);
        return MLXN_STATUS_OK;
    }
    const int threads = mlxn_threadpool_size(d->pool);
    if (a->n_rows >= threads || a->n <= SEG) {
        const int64_t min_rows = a->n >= 16384 ? 1 : 16384 / a->n;
        mlxn_threadpool_run(d->pool, a->n_rows, min_rows, rows_task, (void *)a);
        return MLXN_STATUS_OK;
    }
    seg_ctx c = {.a = a, .segs = (a->n + SEG - 1) / SEG};
    const int64_t units = a->n_rows * c.segs;
    c.sum_f = calloc((size_t)units, sizeof *c.sum_f);
    c.sum_i = calloc((size_t)units, sizeof *c.sum_i);
    if (!c.sum_f || !c.sum_i) {
        free(c.sum_f);
        free(c.sum_i);
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_cumsum", "no memory for %lld segment sums",
                          (long long)units);
    }
    mlxn_threadpool_run(d->pool, units, 1, seg_sum_task, &c);
    for (int64_t r = 0; r < a->n_rows; r++) { /* sums -> exclusive running offsets */
        double run_f = 0;
        uint32_t run_i = 0;
        for (int64_t k = r * c.segs; k < (r + 1) * c.segs; k++) {
            const double sf = c.sum_f[k];
            const uint32_t si = c.sum_i[k];
            c.sum_f[k] = run_f;
            c.sum_i[k] = run_i;
            run_f += sf;
            run_i += si;
        }
    }
    mlxn_threadpool_run(d->pool, units, 1, seg_scan_task, &c);
    free(c.sum_f);
    free(c.sum_i);
    return MLXN_STATUS_OK;
}
