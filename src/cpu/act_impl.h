/* Activations on one SIMD level (included by level_*.c with MLXN_SIMD_LEVEL and MLXN_LEVEL_FN
 * set): act_math.h's f32 forms in vectors, with vf_exp (within 1 ulp) for the exponentials and
 * IEEE division, so the results stay within a few ulp of the scalar forms. Tails and the
 * portable level take the scalar forms themselves. */
#include "../core/act_math.h"
#include "simd.h"

/* act(x) for MLXN_ACT_*: the logistic forms (x or 1) / (1 + exp(u)) of mlxn_act_exp_arg and
 * mlxn_act_logistic, and GELU-erf as mlxn_gelu_erf_f32 */
MLXN_ALWAYS_INLINE vf MLXN_LEVEL_FN(act_vf)(int act, vf x)
{
    if (act == MLXN_ACT_GELU_ERF) {
        const vf t = vf_div(vf_set1(1.0f), vf_fma(vf_set1(MLXN_GELU_ERF_K), vf_abs(x), vf_set1(1.0f)));
        const float c[] = MLXN_GELU_ERF_Q;
        vf q = vf_set1(c[0]);
        for (int k = 1; k < 9; k++)
            q = vf_fma(q, t, vf_set1(c[k]));
        const vf e = vf_mul(t, vf_exp(vf_fma(vf_mul(vf_set1(-0.5f), x), x, q)));
        return vf_mul(vf_mul(vf_set1(0.5f), x), vf_select_pos(x, vf_sub(vf_set1(2.0f), e), e));
    }
    vf u = vf_sub(vf_zero(), x);
    if (act == MLXN_ACT_GELU_TANH)
        u = vf_mul(vf_set1(MLXN_GELU_TANH_K), vf_fma(vf_mul(vf_set1(MLXN_GELU_TANH_A), vf_mul(x, x)), x, x));
    const vf num = act == MLXN_ACT_SIGMOID ? vf_set1(1.0f) : x;
    return vf_div(num, vf_add(vf_set1(1.0f), vf_exp(u)));
}

/* y[i] = act(x[i]) (* up[i]) (+ y[i] when accumulate) over n f32 elements */
static void MLXN_LEVEL_FN(act_f32)(int act, const float *x, const float *up, float *y, int64_t n, bool accumulate)
{
    int64_t i = 0;
    for (; i + VL <= n; i += VL) {
        vf v = MLXN_LEVEL_FN(act_vf)(act, vf_load_f32(x + i));
        if (up)
            v = vf_mul(v, vf_load_f32(up + i));
        if (accumulate)
            v = vf_add(v, vf_load_f32(y + i));
        vf_store_f32(y + i, v);
    }
    for (; i < n; i++) {
        const float v = mlxn_act_f32(act, x[i]) * (up ? up[i] : 1.0f);
        y[i] = accumulate ? y[i] + v : v;
    }
}

/* The activation op's rows r0 .. r1 - 1, any of f32 / f16 / bf16. */
static void MLXN_LEVEL_FN(act_rows)(const mlxn_act_args *a, int64_t r0, int64_t r1)
{
    const int dt = a->dtype;
    for (int64_t r = r0; r < r1; r++) {
        const char *x = mlxn_rows_ptr(&a->x, r);
        const char *up = a->up.base ? mlxn_rows_ptr(&a->up, r) : NULL;
        char *y = mlxn_rows_ptr(&a->y, r);
        int64_t i = 0;
        for (; i + VL <= a->n; i += VL) {
            vf v = MLXN_LEVEL_FN(act_vf)(a->act, vf_load(dt, x, i));
            if (up)
                v = vf_mul(v, vf_load(dt, up, i));
            vf_store(dt, y, i, v);
        }
        for (; i < a->n; i++) {
            const float v = mlxn_act_f32(a->act, sc_load(dt, x, i));
            sc_store(dt, y, i, up ? v * sc_load(dt, up, i) : v);
        }
    }
}
