/* Oracle: RMS norm family, scalar, f64 accumulation. */
#include <math.h>

#include "../../core/half.h"
#include "ref.h"

double mlxn_ref_load(int dtype, const void *p, int64_t i)
{
    switch (dtype) {
    case MLXN_DTYPE_F32:
        return ((const float *)p)[i];
    case MLXN_DTYPE_F16:
        return mlxn_f16_to_f32(((const uint16_t *)p)[i]);
    case MLXN_DTYPE_BF16:
        return mlxn_bf16_to_f32(((const uint16_t *)p)[i]);
    }
    return NAN;
}

/* Rounds v to dtype (through f32, as a kernel with f32 registers stores it) and returns the
 * stored value. */
double mlxn_ref_store(int dtype, void *p, int64_t i, double v)
{
    float f = (float)v;
    switch (dtype) {
    case MLXN_DTYPE_F32:
        ((float *)p)[i] = f;
        return f;
    case MLXN_DTYPE_F16:
        ((uint16_t *)p)[i] = mlxn_f32_to_f16(f);
        return mlxn_f16_to_f32(((uint16_t *)p)[i]);
    case MLXN_DTYPE_BF16:
        ((uint16_t *)p)[i] = mlxn_f32_to_bf16(f);
        return mlxn_bf16_to_f32(((uint16_t *)p)[i]);
    }
    return NAN;
}

double mlxn_ref_inv_rms(int dtype, const void *x, int64_t n, double eps)
{
    double ss = 0;
    for (int64_t i = 0; i < n; i++) {
        const double v = mlxn_ref_load(dtype, x, i);
        ss += v * v;
    }
    return 1.0 / sqrt(ss / (double)n + eps);
}

void mlxn_ref_rms_norm(const mlxn_rms_norm_args *a)
{
    for (int64_t r = 0; r < a->n_rows; r++) {
        const char *x = mlxn_rows_ptr(&a->x, r);
        const char *src = x;
        if (a->r.base) { /* the sum, rounded to dtype as stored, is what gets normalized */
            const char *res = mlxn_rows_ptr(&a->r, r);
            char *sum = mlxn_rows_ptr(&a->sum, r);
            /* with norm_r, r's own norm first (read in full before sum, which may be r, is written) */
            const double rs = a->norm_r ? mlxn_ref_inv_rms(a->dtype, res, a->n, a->eps) : 1.0;
            for (int64_t i = 0; i < a->n; i++) {
                double t = mlxn_ref_load(a->dtype, res, i) * rs;
                if (a->norm_r && a->r_w)
                    t *= mlxn_ref_load(a->r_w_dtype, a->r_w, i);
                mlxn_ref_store(a->dtype, sum, i, mlxn_ref_load(a->dtype, x, i) + t);
            }
            src = sum;
        }
        const double scale = mlxn_ref_inv_rms(a->dtype, src, a->n, a->eps);
        char *y = mlxn_rows_ptr(&a->y, r);
        const char *m = a->m.base ? mlxn_rows_ptr(&a->m, r) : NULL;
        for (int64_t i = 0; i < a->n; i++) {
            double v = mlxn_ref_load(a->dtype, src, i) * scale;
            if (a->w)
                v *= mlxn_ref_load(a->w_dtype, a->w, i);
            if (m)
                v *= mlxn_ref_load(a->dtype, m, i);
            mlxn_ref_store(a->dtype, y, i, v);
        }
    }
}
