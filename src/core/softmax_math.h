/* The softmax family's per-element pieces in f32 (the oracle works in f64, src/cpu/ref/
 * softmax.c): the logit, shared by the CPU row kernel (softcapped rows and tails) and the CUDA
 * kernels; the one-pass merge and the output, used by CUDA's generic two-pass kernel. */
#ifndef MLXN_SOFTMAX_MATH_H
#define MLXN_SOFTMAX_MATH_H

#include <math.h>
#include <stdbool.h>

#include "rows.h" /* MLXN_HD */

/* z = softcap(x * scale) + mask */
MLXN_HD float mlxn_softmax_logit(float x, float mask, float scale, float softcap)
{
    float z = x * scale;
    if (softcap > 0.0f)
        z = softcap * tanhf(z / softcap);
    return z + mask;
}

/* Running (max, sum of exp(z - max)) over a row, merged pairwise: the one-pass reduction; an
 * element z enters as (z, 1). A part whose max is -inf counts for s2 * 0 against a finite max
 * (an element's 1 for a masked logit must vanish), and two such parts add their sums (whose
 * exp(-inf - -inf) would be NaN): the sum stays NaN where any logit was NaN (fmaxf passes NaN
 * over, so such a part may hold max -inf with a NaN sum), whichever side of a merge it is on. */
MLXN_HD void mlxn_softmax_merge(float *m, float *s, float m2, float s2)
{
    if (m2 > *m) {
        *s = *s * expf(*m - m2) + s2;
        *m = m2;
    } else {
        *s += m2 == -INFINITY && *m == -INFINITY ? s2 : s2 * expf(m2 - *m);
    }
}

/* The output for logit z of a row with (max, sum). */
MLXN_HD float mlxn_softmax_out(float z, float m, float s, bool log)
{
    if (m == -INFINITY)
        return log ? -INFINITY : 0.0f;
    return log ? (z - m) - logf(s) : expf(z - m) / s;
}

#endif
