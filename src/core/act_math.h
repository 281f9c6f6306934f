/* The activation functions in f32, shared by the fast CPU path and the CUDA kernels (the
 * oracle computes them in f64, src/cpu/ref/act.c). Written so that negative inputs, where
 * 1 + tanh and 1 + erf cancel to a few ulps, keep their relative accuracy. */
#ifndef MLXN_ACT_MATH_H
#define MLXN_ACT_MATH_H

#include <math.h>

#include "rows.h" /* MLXN_HD */

/* SiLU (0), GELU-tanh (1) and sigmoid (3) are logistic forms, (x or 1) / (1 + exp(u)):
 * mlxn_act_exp_arg gives u, mlxn_act_logistic the value from e = exp(u), so that a caller with
 * its own exp (CUDA's __expf for 16-bit outputs) shares the formulas. GELU-tanh:
 * 0.5 x (1 + tanh v) = x / (1 + exp(-2v)), no cancellation. */
#define MLXN_GELU_TANH_K (-1.5957691216057308f) /* -2 sqrt(2 / pi) */
#define MLXN_GELU_TANH_A 0.044715f

MLXN_HD float mlxn_act_exp_arg(int act, float x)
{
    return act == 1 ? MLXN_GELU_TANH_K * (x + MLXN_GELU_TANH_A * x * x * x) : -x;
}

MLXN_HD float mlxn_act_logistic(int act, float x, float e)
{
    return (act == 3 ? 1.0f : x) / (1.0f + e);
}

/* GELU-erf, 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2), with e = erfc(|x| / sqrt 2)
 * from erfc(a) = t exp(Q(t) - a^2), t = 1 / (1 + 0.4 a): Q, degree 8, is a minimax-style fit
 * (error 9e-8) of log(erfc(a) exp(a^2) / t) over a in [0, 10] (bench/NOTES.md, activations).
 * -a^2 = -x^2 / 2 enters through one FMA of x itself, so no rounded a is squared: the result is
 * within ~1e-6 relative where |y| > 1e-6 (erfcf of the rounded -x / sqrt 2 was within 1.4e-6),
 * in about half of erfcf's instructions. CUDA takes the reciprocal on the SFU (1 ulp, which
 * moves the result by < 2e-7). */
#define MLXN_GELU_ERF_K 0.28284271f /* 0.4 / sqrt 2 */
/* Q's coefficients from the highest power down (the CPU's vector form, src/cpu/act_impl.h, uses
 * them too) */
#define MLXN_GELU_ERF_Q                                                                          \
    {-0.20704582f, 0.92228973f, -1.48074043f, 0.99262804f, -0.43854123f, 0.29811028f, 0.40039828f, \
     1.00160670f, -1.48870564f}

MLXN_HD float mlxn_gelu_erf_f32(float x)
{
    const float d = 1.0f + MLXN_GELU_ERF_K * fabsf(x);
#ifdef __CUDA_ARCH__
    const float t = __fdividef(1.0f, d);
#else
    const float t = 1.0f / d;
#endif
    const float c[] = MLXN_GELU_ERF_Q;
    float q = c[0];
    for (int k = 1; k < 9; k++) /* unrolled by both compilers: a constant trip count */
        q = q * t + c[k];
    const float e = t * expf(fmaf(-0.5f * x, x, q));
    return 0.5f * x * (x > 0.0f ? 2.0f - e : e); /* erfc(-a) = 2 - erfc(a) */
}

MLXN_HD float mlxn_act_f32(int act, float x)
{
    if (act == 2) /* MLXN_ACT_GELU_ERF */
        return mlxn_gelu_erf_f32(x);
    return mlxn_act_logistic(act, x, expf(mlxn_act_exp_arg(act, x)));
}

#endif
