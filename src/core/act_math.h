/* The activation functions in f32, shared by the fast CPU path and the CUDA kernels (the
 * oracle computes them in f64, src/cpu/ref/act.c). Written so that negative inputs, where
 * 1 + tanh and 1 + erf cancel to a few ulps, keep their relative accuracy. */
#ifndef MLXN_ACT_MATH_H
#define MLXN_ACT_MATH_H

#include <math.h>

#include "rows.h" /* MLXN_HD */

MLXN_HD float mlxn_act_f32(int act, float x)
{
    switch (act) {
    case 0: /* MLXN_ACT_SILU */
        return x / (1.0f + expf(-x));
    case 1: /* MLXN_ACT_GELU_TANH: 0.5 x (1 + tanh u) = x / (1 + exp(-2u)), no cancellation */
        return x / (1.0f + expf(-1.5957691216057308f * (x + 0.044715f * x * x * x)));
    case 2: /* MLXN_ACT_GELU_ERF: 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2), ditto */
        return 0.5f * x * erfcf(-0.7071067811865476f * x);
    default: /* MLXN_ACT_SIGMOID */
        return 1.0f / (1.0f + expf(-x));
    }
}

#endif
