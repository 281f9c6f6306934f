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
MLXN_HD float mlxn_act_exp_arg(int act, float x)
{
    return act == 1 ? -1.5957691216057308f * (x + 0.044715f * x * x * x) : -x;
}

MLXN_HD float mlxn_act_logistic(int act, float x, float e)
{
    return (act == 3 ? 1.0f : x) / (1.0f + e);
}

MLXN_HD float mlxn_act_f32(int act, float x)
{
    if (act == 2) /* MLXN_ACT_GELU_ERF: 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2) */
        return 0.5f * x * erfcf(-0.7071067811865476f * x);
    return mlxn_act_logistic(act, x, expf(mlxn_act_exp_arg(act, x)));
}

#endif
