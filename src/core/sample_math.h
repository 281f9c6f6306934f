/* Argmax and sampling pieces shared by the fast CPU path and the CUDA kernels, so both order
 * values, draw random numbers and weigh tokens bit for bit alike. The oracle
 * (src/cpu/ref/argmax.c, src/cpu/ref/sample.c) works in f64 and does not use them. */
#ifndef MLXN_SAMPLE_MATH_H
#define MLXN_SAMPLE_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "rows.h" /* MLXN_HD */

/* A key that orders floats as unsigned integers: a larger float has a larger key, -0 and +0
 * share one, and NaN gets 0, below every number (-inf included). Selects, not branches: a row
 * of logits has random signs, which a branch mispredicts for half the tokens (the CPU's
 * sampling loop). */
MLXN_HD uint32_t mlxn_f32_order_key(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    u = u == 0x80000000u ? 0 : u; /* -0 as +0 */
    const uint32_t k = u ^ ((uint32_t)((int32_t)u >> 31) | 0x80000000u); /* negatives: ~u, else u | 2^31 */
    return v != v ? 0 : k;
}

/* An argmax candidate as one integer: the key in the high word, the complement of the index
 * in the low word, so the larger of two candidates has the larger value and, on a tie, the
 * lower index. NaN gives 0, which loses to every number and unpacks to index -1. */
MLXN_HD uint64_t mlxn_argmax_pack(float v, int64_t i)
{
    const uint32_t key = mlxn_f32_order_key(v);
    return key ? (uint64_t)key << 32 | (uint32_t)~(uint32_t)i : 0;
}

MLXN_HD int32_t mlxn_argmax_index(uint64_t packed)
{
    return (int32_t)~(uint32_t)packed;
}

/* The float of a key (NaN for key 0; +0 for the key of -0 and +0). */
MLXN_HD float mlxn_order_key_value(uint32_t k)
{
    const uint32_t u = k == 0 ? 0x7fc00000u : (k & 0x80000000u) ? k & 0x7fffffffu : ~k;
    float v;
    memcpy(&v, &u, 4);
    return v;
}

/* Keys at or below this one belong to -inf or NaN: a row whose largest key is one of them has
 * nothing to draw. */
#define MLXN_KEY_NEG_INF 0x007fffffu

/* ---------------------------------------------------------------- sampling (mlxn.h's rule)
 *
 * Everything below is integer arithmetic or single IEEE operations, which the host compiler
 * and nvcc evaluate identically as long as no multiply and add are fused: the files that use
 * it are built without floating-point contraction (CMakeLists.txt). */

/* One weight unit: the most likely token weighs 2^40; a row of 2^24 tokens sums below 2^64. */
#define MLXN_SAMPLE_ONE 1099511627776.0f

/* splitmix64's finalizer: a bijection of 64-bit words that mixes every bit into every bit. */
MLXN_HD uint64_t mlxn_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The 64 random bits of (seed, step, row): counter-based, no state between calls. */
MLXN_HD uint64_t mlxn_sample_bits(uint64_t seed, uint64_t step, uint64_t row)
{
    uint64_t h = mlxn_mix64(seed + 0x9e3779b97f4a7c15ull);
    h = mlxn_mix64(h + (step + 1) * 0x9e3779b97f4a7c15ull);
    return mlxn_mix64(h + (row + 1) * 0xd1b54a32d192ed03ull);
}

/* floor(t * bits / 2^64): the draw's target among weights summing to t (below t). */
MLXN_HD uint64_t mlxn_sample_target(uint64_t t, uint64_t bits)
{
#ifdef __CUDA_ARCH__
    return __umul64hi(t, bits);
#else
    return (uint64_t)(((unsigned __int128)t * bits) >> 64);
#endif
}

/* z of a logit: the repeat penalty (when its id is in the history), then the temperature
 * (none when <= 0: greedy decoding takes the argmax of the penalized logits). */
MLXN_HD float mlxn_sample_logit(float l, int penalized, float penalty, float temperature)
{
    if (penalized)
        l = l > 0.0f ? l / penalty : l * penalty;
    return temperature > 0.0f ? l / temperature : l;
}

/* exp(d) for d <= 0 in f32 (Cephes' expf: d = n ln2 + r with n the nearest integer, ln2 in two
 * parts of which the first times n is exact, |r| <= ln2 / 2, a degree-6 polynomial for e^r,
 * then 2^n): within 2 ulp of exp, exactly 1 at 0, 0 below -87 and for NaN. Plain multiplies
 * and adds, each rounded (no contraction where this is compiled), so host and device agree. */
MLXN_HD float mlxn_sample_exp(float d)
{
    if (!(d >= -87.0f))
        return 0.0f;
    const float n = (float)(int)(d * 1.44269504088896341f - 0.5f); /* y <= 0: truncation rounds */
    float r = d - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float q = 1.9875691500e-4f;
    q = q * r + 1.3981999507e-3f;
    q = q * r + 8.3334519073e-3f;
    q = q * r + 4.1665795894e-2f;
    q = q * r + 1.6666665459e-1f;
    q = q * r + 5.0000001201e-1f;
    q = q * (r * r) + r + 1.0f;
    const uint32_t bits = (uint32_t)((int)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return q * scale;
}

/* The weight of a token with value z in a row whose largest is zmax: round-down of
 * exp(z - zmax) * 2^40 (2^40 for z == zmax, 0 for NaN and -inf). */
MLXN_HD uint64_t mlxn_sample_weight(float z, float zmax)
{
    if (z == zmax)
        return (uint64_t)1 << 40;
    return (uint64_t)(mlxn_sample_exp(z - zmax) * MLXN_SAMPLE_ONE);
}

/* top-p: the weight the kept prefix must reach, of total; 0 when top_p is 0. */
MLXN_HD uint64_t mlxn_sample_top_p_need(float top_p, uint64_t total)
{
    return (uint64_t)((double)top_p * (double)total);
}

/* min-p: whether a weight stays (min_p relative to the largest weight, 2^40). */
MLXN_HD int mlxn_sample_min_p_keeps(float min_p, uint64_t w)
{
    return (double)w >= (double)min_p * 1099511627776.0;
}

/* Of the counts or weights per next byte of the key, bins[255] (largest keys) down to bins[0],
 * the bin where the running total from the top, starting at *above, reaches target; *above
 * gets the total of the bins above it. -1 when the bins do not reach target. */
MLXN_HD int mlxn_radix_pick(const uint64_t *bins, uint64_t target, uint64_t *above)
{
    for (int b = 255; b >= 0; b--) {
        if (*above + bins[b] >= target)
            return b;
        *above += bins[b];
    }
    return -1;
}

#endif
