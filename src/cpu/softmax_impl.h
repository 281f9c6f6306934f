/* The softmax family's row kernel for one SIMD level (included by each level_*.c after
 * defining MLXN_SIMD_LEVEL and MLXN_LEVEL_FN). A row takes three passes over its logits, each
 * recomputed from x (and mask) in blocks of SM_BLOCK (L1-resident): the max, the sum of
 * exp(z - max), then the outputs; every element's exponential comes from vf_exp. Sums are f32
 * vectors within a block and f64 across blocks: a running f32 sum over a vocabulary row (1e5+
 * terms) drifts by ~sqrt(n) rounding steps, past the harness bound at n = 200000. Softcapped
 * logits take the scalar tanhf of softmax_math.h. f32 softmax outputs are the sum pass's
 * exponentials, scaled in place (x is then read twice). */
#include <math.h>

#include "../core/softmax_math.h"
#include "simd.h"

#define SM_BLOCK 256

/* z[0, n) = the logits of elements i0 .. i0 + n - 1 of the row (n <= SM_BLOCK) */
MLXN_ALWAYS_INLINE void MLXN_LEVEL_FN(sm_logits)(const mlxn_softmax_args *a, const void *x, const void *mask,
                                                 int64_t i0, int64_t n, float *z)
{
    int64_t i = 0;
    if (a->softcap <= 0.0f) {
        const vf sc = vf_set1(a->scale);
        for (; i + VL <= n; i += VL) {
            vf v = vf_mul(vf_load(a->dtype, x, i0 + i), sc);
            if (mask)
                v = vf_add(v, vf_load(a->dtype, mask, i0 + i));
            vf_store_f32(z + i, v);
        }
    }
    for (; i < n; i++)
        z[i] = mlxn_softmax_logit(sc_load(a->dtype, x, i0 + i), mask ? sc_load(a->dtype, mask, i0 + i) : 0.0f,
                                  a->scale, a->softcap);
}

static void MLXN_LEVEL_FN(softmax_rows)(const mlxn_softmax_args *a, int64_t r0, int64_t r1)
{
    float z[SM_BLOCK] __attribute__((aligned(64)));
    const int64_t n = a->n;
    for (int64_t r = r0; r < r1; r++) {
        const char *x = mlxn_rows_ptr(&a->x, r);
        const char *mask = a->mask.base ? mlxn_rows_ptr(&a->mask, r) : NULL;
        char *y = mlxn_rows_ptr(&a->y, r);
        /* NaN logits are passed over by the max and make the sum, so every output, NaN */
        vf vm = vf_set1(-INFINITY);
        float m = -INFINITY;
        for (int64_t b = 0; b < n; b += SM_BLOCK) {
            const int64_t nb = n - b < SM_BLOCK ? n - b : SM_BLOCK;
            MLXN_LEVEL_FN(sm_logits)(a, x, mask, b, nb, z);
            int64_t i = 0;
            for (; i + VL <= nb; i += VL)
                vm = vf_max(vf_load_f32(z + i), vm);
            for (; i < nb; i++)
                m = z[i] > m ? z[i] : m;
        }
        m = fmaxf(m, vf_hmax(vm));
        if (m == -INFINITY) { /* every logit -inf (all masked): zeros, or -inf for log-softmax */
            for (int64_t i = 0; i < n; i++)
                sc_store(a->dtype, y, i, a->log ? -INFINITY : 0.0f);
            continue;
        }
        const vf vmax = vf_set1(m);
        /* f32 softmax outputs keep the exponentials of the sum's pass and are scaled in place */
        float *const ye = !a->log && a->dtype == MLXN_DTYPE_F32 ? (float *)y : NULL;
        double s = 0;
        for (int64_t b = 0; b < n; b += SM_BLOCK) {
            const int64_t nb = n - b < SM_BLOCK ? n - b : SM_BLOCK;
            MLXN_LEVEL_FN(sm_logits)(a, x, mask, b, nb, z);
            vf acc = vf_zero();
            float tail = 0.0f;
            int64_t i = 0;
            for (; i + VL <= nb; i += VL) {
                const vf e = vf_exp(vf_sub(vf_load_f32(z + i), vmax));
                acc = vf_add(acc, e);
                if (ye)
                    vf_store_f32(ye + b + i, e);
            }
            for (; i < nb; i++) {
                const float e = expf(z[i] - m);
                tail += e;
                if (ye)
                    ye[b + i] = e;
            }
            s += (double)(vf_hsum(acc) + tail);
        }
        const float inv = (float)(1.0 / s), ls = (float)log(s);
        const vf vinv = vf_set1(inv), vls = vf_set1(ls);
        if (ye) {
            int64_t i = 0;
            for (; i + VL <= n; i += VL)
                vf_store_f32(ye + i, vf_mul(vf_load_f32(ye + i), vinv));
            for (; i < n; i++)
                ye[i] *= inv;
            continue;
        }
        for (int64_t b = 0; b < n; b += SM_BLOCK) {
            const int64_t nb = n - b < SM_BLOCK ? n - b : SM_BLOCK;
            MLXN_LEVEL_FN(sm_logits)(a, x, mask, b, nb, z);
            int64_t i = 0;
            for (; i + VL <= nb; i += VL) {
                const vf d = vf_sub(vf_load_f32(z + i), vmax);
                vf_store(a->dtype, y, b + i, a->log ? vf_sub(d, vls) : vf_mul(vf_exp(d), vinv));
            }
            for (; i < nb; i++)
                sc_store(a->dtype, y, b + i, a->log ? (z[i] - m) - ls : expf(z[i] - m) * inv);
        }
    }
}
