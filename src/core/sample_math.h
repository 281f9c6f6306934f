/* Argmax and sampling pieces shared by the fast CPU path and the CUDA kernels, so both order
 * values, draw random numbers and weigh tokens bit for bit alike. The oracle
 * (src/cpu/ref/argmax.c, src/cpu/ref/sample.c) works in f64 and does not use them. */
#ifndef MLXN_SAMPLE_MATH_H
#define MLXN_SAMPLE_MATH_H

#include <stdint.h>
#include <string.h>

#include "rows.h" /* MLXN_HD */

/* A key that orders floats as unsigned integers: a larger float has a larger key, -0 and +0
 * share one, and NaN gets 0, below every number (-inf included). */
MLXN_HD uint32_t mlxn_f32_order_key(float v)
{
    if (v != v)
        return 0;
    if (v == 0.0f)
        v = 0.0f;
    uint32_t u;
    memcpy(&u, &v, 4);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
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

#endif
