/* Scalar f16 / bf16 <-> f32 conversions with round-to-nearest-even, for host code. NaN stays
 * NaN (quieted), overflow goes to infinity, subnormals are kept. */
#ifndef MLXN_HALF_H
#define MLXN_HALF_H

#include <stdint.h>

#include "mlxn.h" /* mlxn_dtype */
#include <string.h>

static inline uint32_t mlxn_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float mlxn_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float mlxn_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {
        float v = (float)mant * (1.0f / 16777216.0f); /* mant * 2^-24, exact */
        return mlxn_bits_f32(mlxn_f32_bits(v) | sign);
    }
    if (exp == 31)
        return mlxn_bits_f32(sign | 0x7f800000u | (mant << 13));
    return mlxn_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

static inline uint16_t mlxn_f32_to_f16(float f)
{
    uint32_t u = mlxn_f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000;
    u &= 0x7fffffffu;
    uint16_t o;
    if (u >= 0x47800000u) { /* >= 65536, inf or NaN */
        o = u > 0x7f800000u ? 0x7e00 : 0x7c00;
    } else if (u < 0x38800000u) { /* below the smallest normal f16, 2^-14 */
        /* Adding 0.5 aligns the f16 subnormal grid (2^-24) to the f32 ulp at 0.5, so the FPU
         * rounds to nearest even for us. */
        float v = mlxn_bits_f32(u) + 0.5f;
        o = (uint16_t)(mlxn_f32_bits(v) - 0x3f000000u);
    } else {
        uint32_t odd = (u >> 13) & 1;
        u += 0xc8000fffu + odd; /* rebias exponent (-112 << 23) and round */
        o = (uint16_t)(u >> 13);
    }
    return (uint16_t)(o | sign);
}

static inline float mlxn_bf16_to_f32(uint16_t h)
{
    return mlxn_bits_f32((uint32_t)h << 16);
}

static inline uint16_t mlxn_f32_to_bf16(float f)
{
    uint32_t u = mlxn_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* Element i of f32, f16 or bf16 memory as f32, and back (round to nearest even): the row
 * loops of the CPU kernels that are not vectorized. */
static inline float mlxn_load_float(int dtype, const void *p, int64_t i)
{
    if (dtype == MLXN_DTYPE_F32)
        return ((const float *)p)[i];
    const uint16_t h = ((const uint16_t *)p)[i];
    return dtype == MLXN_DTYPE_F16 ? mlxn_f16_to_f32(h) : mlxn_bf16_to_f32(h);
}

static inline void mlxn_store_float(int dtype, void *p, int64_t i, float v)
{
    if (dtype == MLXN_DTYPE_F32)
        ((float *)p)[i] = v;
    else
        ((uint16_t *)p)[i] = dtype == MLXN_DTYPE_F16 ? mlxn_f32_to_f16(v) : mlxn_f32_to_bf16(v);
}

#endif
