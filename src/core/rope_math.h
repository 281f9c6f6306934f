/* RoPE's per-pair pieces, shared by the fast CPU path and the CUDA kernel (the oracle works on
 * its own in f64, src/cpu/ref/rope.c). */
#ifndef MLXN_ROPE_MATH_H
#define MLXN_ROPE_MATH_H

#include <math.h>
#include <stdint.h>

#include "op_list.h"
#include "rows.h" /* MLXN_HD */

MLXN_HD bool mlxn_rope_multi(const mlxn_rope_args *a)
{
    return (a->sections[0] | a->sections[1] | a->sections[2] | a->sections[3]) != 0;
}

/* The position row (0: t, 1: h, 2: w, 3: e) of pair i in multi-section rope: ggml's sectors
 * (ggml_mrope_cache_init). */
MLXN_HD int mlxn_rope_section(const mlxn_rope_args *a, int64_t i)
{
    const int *sec = a->sections;
    const int s = (int)(i % (sec[0] + sec[1] + sec[2] + sec[3]));
    if (a->interleaved) {
        if (s % 3 == 1 && s < 3 * sec[1])
            return 1;
        if (s % 3 == 2 && s < 3 * sec[2])
            return 2;
        if (s % 3 == 0 && s < 3 * sec[0])
            return 0;
        return 3;
    }
    if (s < sec[0])
        return 0;
    if (s < sec[0] + sec[1])
        return 1;
    if (s < sec[0] + sec[1] + sec[2])
        return 2;
    return 3;
}

/* The position of pair i of token t in sequence b. */
MLXN_HD int32_t mlxn_rope_pos(const mlxn_rope_args *a, int64_t b, int64_t t, int64_t i)
{
    const int s = mlxn_rope_multi(a) ? mlxn_rope_section(a, i) : 0;
    return ((const int32_t *)(a->pos + b * a->pos_sb + s * a->pos_ss))[t];
}

/* Radians per position of pair i: base^(-2i/n_rot) / freq_factors[i], blended between
 * interpolation and extrapolation for YaRN. In f64, so that p * w stays within ~1e-16
 * relative of the exact angle even at p in the tens of thousands. */
MLXN_HD double mlxn_rope_freq(const mlxn_rope_args *a, int64_t i)
{
    double w = exp2((double)i * a->freq_log2);
    if (a->freq_factors)
        w /= (double)a->freq_factors[i];
    double scale = a->freq_scale;
    if (a->ext_factor != 0.0f) {
        const double y = ((double)i - a->corr_lo) / fmax((double)0.001f, (double)a->corr_hi - a->corr_lo);
        const double mix = (1.0 - fmin(1.0, fmax(0.0, y))) * a->ext_factor;
        scale = a->freq_scale * (1.0 - mix) + mix;
    }
    return w * scale;
}

/* angle / pi reduced to [-1, 1] (half turns), exactly in f64 by rint, then rounded to f32: within
 * 2^-24 of the exact half turns. */
MLXN_HD float mlxn_rope_half_turns(double angle)
{
    const double h = angle * 0.3183098861837907; /* 1 / pi */
    return (float)(h - 2.0 * rint(0.5 * h));
}

/* mscale * (cos, sin) of an angle given in f64, reduced in f64 before rounding to f32 so that
 * the f32 argument is within 2^-24 pi of the exact one; then an f32 sin / cos (within an ulp).
 * On the device in half turns ([-1, 1], exact reduction by rint), for sincospif, which has no
 * slow path for large arguments; on the host to [-pi, pi] radians (2 pi split in two parts,
 * k * 2 pi exact in the fma). */
MLXN_HD void mlxn_rope_cos_sin(double angle, float mscale, float *c, float *s)
{
#ifdef __CUDA_ARCH__
    float sn, cs;
    sincospif(mlxn_rope_half_turns(angle), &sn, &cs);
    *c = cs * mscale;
    *s = sn * mscale;
#else
    const double two_pi_hi = 6.283185307179586, two_pi_lo = 2.4492935982947064e-16;
    const double k = rint(angle * 0.15915494309189535);
    const float r = (float)fma(-k, two_pi_lo, fma(-k, two_pi_hi, angle));
    *c = cosf(r) * mscale;
    *s = sinf(r) * mscale;
#endif
}

#endif
