/* Decoding of GGML blocks in units of 32 elements, shared by the host reference (ggml_quant.c,
 * bit-exact with gguf-py when compiled without contraction) and the CUDA kernels. A unit is a
 * whole block of the 32-element formats, or the 32-element slice u (0..7) of a K super-block.
 * mlxn_ggml_unit() switches on the type; with a constant type (CUDA templates) it folds. */
#ifndef MLXN_GGML_DECODE_H
#define MLXN_GGML_DECODE_H

#include <stdint.h>
#include <string.h>

#include "../core/rows.h" /* MLXN_HD */
#include "ggml_blocks.h"
#include "mlxn.h"

MLXN_HD float mlxn_ggml_h2f(uint16_t h)
{
    /* f16 -> f32, exact (subnormals included): widen the exponent, renormalize via a float
     * multiply for subnormals */
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 31, mant = h & 0x3ff;
    uint32_t bits;
    float f;
    if (exp == 0) {
        f = (float)mant * 5.9604644775390625e-8f; /* mant * 2^-24 */
        memcpy(&bits, &f, 4);
        bits |= sign;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    memcpy(&f, &bits, 4);
    return f;
}

/* (float)v for |v| < 2^22. On the device without an integer-to-float conversion (a quarter of
 * the FMA rate): adding v to the bits of 1.5 * 2^23 makes 1.5 * 2^23 + v exactly, one
 * subtraction recovers v. The same value as the host's cast. */
MLXN_HD float mlxn_int_f32(int v)
{
#ifdef __CUDA_ARCH__
    return __int_as_float(0x4B400000 + v) - 12582912.0f;
#else
    return (float)v;
#endif
}

MLXN_HD uint32_t mlxn_ggml_le32(const uint8_t *p)
{
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The non-linear 4-bit code book of IQ4_NL and IQ4_XS: -127, -104, -83, -65, -49, -35, -22,
 * -10, 1, 13, 25, 38, 53, 69, 89, 113, as the int8 bytes of two constants (no table: host and
 * device code share this; the CUDA decode kernels look codes up in their words by byte permutes). */
#define MLXN_IQ4_VALUES_LO 0xF6EADDCFBFAD9881ull
#define MLXN_IQ4_VALUES_HI 0x7159453526190D01ull

MLXN_HD int mlxn_iq4_value(int i)
{
    return (int8_t)((i < 8 ? MLXN_IQ4_VALUES_LO : MLXN_IQ4_VALUES_HI) >> (8 * (i & 7)));
}

MLXN_HD void mlxn_unit_q4_0(const mlxn_block_q4_0 *b, float *y)
{
    const float d = mlxn_ggml_h2f(b->d);
    for (int j = 0; j < 16; j++) {
        y[j] = d * mlxn_int_f32((b->qs[j] & 15) - 8);
        y[j + 16] = d * mlxn_int_f32((b->qs[j] >> 4) - 8);
    }
}

MLXN_HD void mlxn_unit_q4_1(const mlxn_block_q4_1 *b, float *y)
{
    const float d = mlxn_ggml_h2f(b->d), m = mlxn_ggml_h2f(b->m);
    for (int j = 0; j < 16; j++) {
        y[j] = d * mlxn_int_f32(b->qs[j] & 15) + m;
        y[j + 16] = d * mlxn_int_f32(b->qs[j] >> 4) + m;
    }
}

MLXN_HD void mlxn_unit_q5_0(const mlxn_block_q5_0 *b, float *y)
{
    const float d = mlxn_ggml_h2f(b->d);
    const uint32_t qh = mlxn_ggml_le32(b->qh);
    for (int j = 0; j < 16; j++) {
        y[j] = d * mlxn_int_f32((int)((b->qs[j] & 15) | (qh >> j & 1) << 4) - 16);
        y[j + 16] = d * mlxn_int_f32((int)((b->qs[j] >> 4) | (qh >> (j + 16) & 1) << 4) - 16);
    }
}

MLXN_HD void mlxn_unit_q5_1(const mlxn_block_q5_1 *b, float *y)
{
    const float d = mlxn_ggml_h2f(b->d), m = mlxn_ggml_h2f(b->m);
    const uint32_t qh = mlxn_ggml_le32(b->qh);
    for (int j = 0; j < 16; j++) {
        y[j] = d * mlxn_int_f32((b->qs[j] & 15) | (qh >> j & 1) << 4) + m;
        y[j + 16] = d * mlxn_int_f32((b->qs[j] >> 4) | (qh >> (j + 16) & 1) << 4) + m;
    }
}

MLXN_HD void mlxn_unit_q8_0(const mlxn_block_q8_0 *b, float *y)
{
    const float d = mlxn_ggml_h2f(b->d);
    for (int j = 0; j < 32; j++)
        y[j] = mlxn_int_f32(b->qs[j]) * d;
}

/* K formats: element l of unit u takes its bits from byte l of a 32-byte row of the code
 * array, shifted by that row's turn; scales per 16 (Q2_K, Q3_K, Q6_K) or per 32 elements. */
MLXN_HD void mlxn_unit_q2_K(const mlxn_block_q2_K *b, int u, float *y)
{
    const float d = mlxn_ggml_h2f(b->d), dmin = mlxn_ggml_h2f(b->dmin);
    for (int l = 0; l < 32; l++) {
        const int sc = b->scales[2 * u + l / 16];
        const int q = b->qs[32 * (u / 4) + l] >> (2 * (u % 4)) & 3;
        const float dl = d * mlxn_int_f32(sc & 15), ml = dmin * mlxn_int_f32(sc >> 4);
        y[l] = dl * mlxn_int_f32(q) - ml;
    }
}

MLXN_HD void mlxn_unit_q3_K(const mlxn_block_q3_K *b, int u, float *y)
{
    const float d = mlxn_ggml_h2f(b->d);
    for (int l = 0; l < 32; l++) {
        const int i = 2 * u + l / 16; /* one of 16 six-bit scales */
        const int lo = b->scales[i % 8] >> (4 * (i / 8)) & 15, hi = b->scales[8 + i % 4] >> (2 * (i / 4)) & 3;
        const int ql = b->qs[32 * (u / 4) + l] >> (2 * (u % 4)) & 3;
        const int qh = (b->hmask[l] >> u & 1) ^ 1; /* a clear bit subtracts 4 */
        y[l] = d * mlxn_int_f32((lo | hi << 4) - 32) * mlxn_int_f32(ql - (qh << 2));
    }
}

/* Q4_K / Q5_K: eight 6-bit scales and mins packed in 12 bytes */
MLXN_HD void mlxn_scale_min_k4(const uint8_t *p, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = p[j] & 63;
        *m = p[j + 4] & 63;
    } else {
        *sc = (p[j + 4] & 15) | ((p[j - 4] >> 2) & 48);
        *m = (p[j + 4] >> 4) | ((p[j] >> 2) & 48);
    }
}

MLXN_HD void mlxn_unit_q4_K(const mlxn_block_q4_K *b, int u, float *y)
{
    int sc, m;
    mlxn_scale_min_k4(b->scales, u, &sc, &m);
    const float dl = mlxn_ggml_h2f(b->d) * mlxn_int_f32(sc), ml = mlxn_ggml_h2f(b->dmin) * mlxn_int_f32(m);
    for (int l = 0; l < 32; l++)
        y[l] = dl * mlxn_int_f32(b->qs[32 * (u / 2) + l] >> (4 * (u % 2)) & 15) - ml;
}

MLXN_HD void mlxn_unit_q5_K(const mlxn_block_q5_K *b, int u, float *y)
{
    int sc, m;
    mlxn_scale_min_k4(b->scales, u, &sc, &m);
    const float dl = mlxn_ggml_h2f(b->d) * mlxn_int_f32(sc), ml = mlxn_ggml_h2f(b->dmin) * mlxn_int_f32(m);
    for (int l = 0; l < 32; l++) {
        const int q = (b->qs[32 * (u / 2) + l] >> (4 * (u % 2)) & 15) | (b->qh[l] >> u & 1) << 4;
        y[l] = dl * mlxn_int_f32(q) - ml;
    }
}

MLXN_HD void mlxn_unit_q6_K(const mlxn_block_q6_K *b, int u, float *y)
{
    const float d = mlxn_ggml_h2f(b->d);
    const int g = u / 4, t = u % 4; /* half of the super-block, 32-element turn inside it */
    for (int l = 0; l < 32; l++) {
        const int ql = b->ql[64 * g + 32 * (t % 2) + l] >> (4 * (t / 2)) & 15;
        const int qh = b->qh[32 * g + l] >> (2 * t) & 3;
        y[l] = d * mlxn_int_f32(b->scales[2 * u + l / 16]) * mlxn_int_f32((ql | qh << 4) - 32);
    }
}

MLXN_HD void mlxn_unit_iq4_nl(const mlxn_block_iq4_nl *b, float *y)
{
    const float d = mlxn_ggml_h2f(b->d);
    for (int j = 0; j < 16; j++) {
        y[j] = d * mlxn_int_f32(mlxn_iq4_value(b->qs[j] & 15));
        y[j + 16] = d * mlxn_int_f32(mlxn_iq4_value(b->qs[j] >> 4));
    }
}

MLXN_HD void mlxn_unit_iq4_xs(const mlxn_block_iq4_xs *b, int u, float *y)
{
    const int ls = (b->scales_l[u / 2] >> (4 * (u % 2)) & 15) | (b->scales_h >> (2 * u) & 3) << 4;
    const float dl = mlxn_ggml_h2f(b->d) * mlxn_int_f32(ls - 32);
    for (int j = 0; j < 16; j++) {
        y[j] = dl * mlxn_int_f32(mlxn_iq4_value(b->qs[16 * u + j] & 15));
        y[j + 16] = dl * mlxn_int_f32(mlxn_iq4_value(b->qs[16 * u + j] >> 4));
    }
}

/* Elements per block and bytes per block of the formats decoded here; 0 for other types. */
MLXN_HD int mlxn_ggml_block_elems(int type)
{
    switch (type) {
    case MLXN_DTYPE_Q4_0: case MLXN_DTYPE_Q4_1: case MLXN_DTYPE_Q5_0: case MLXN_DTYPE_Q5_1:
    case MLXN_DTYPE_Q8_0: case MLXN_DTYPE_IQ4_NL:
        return 32;
    case MLXN_DTYPE_Q2_K: case MLXN_DTYPE_Q3_K: case MLXN_DTYPE_Q4_K: case MLXN_DTYPE_Q5_K:
    case MLXN_DTYPE_Q6_K: case MLXN_DTYPE_IQ4_XS:
        return 256;
    default:
        return 0;
    }
}

MLXN_HD int mlxn_ggml_block_bytes(int type)
{
    switch (type) {
    case MLXN_DTYPE_Q4_0: return (int)sizeof(mlxn_block_q4_0);
    case MLXN_DTYPE_Q4_1: return (int)sizeof(mlxn_block_q4_1);
    case MLXN_DTYPE_Q5_0: return (int)sizeof(mlxn_block_q5_0);
    case MLXN_DTYPE_Q5_1: return (int)sizeof(mlxn_block_q5_1);
    case MLXN_DTYPE_Q8_0: return (int)sizeof(mlxn_block_q8_0);
    case MLXN_DTYPE_Q2_K: return (int)sizeof(mlxn_block_q2_K);
    case MLXN_DTYPE_Q3_K: return (int)sizeof(mlxn_block_q3_K);
    case MLXN_DTYPE_Q4_K: return (int)sizeof(mlxn_block_q4_K);
    case MLXN_DTYPE_Q5_K: return (int)sizeof(mlxn_block_q5_K);
    case MLXN_DTYPE_Q6_K: return (int)sizeof(mlxn_block_q6_K);
    case MLXN_DTYPE_IQ4_NL: return (int)sizeof(mlxn_block_iq4_nl);
    case MLXN_DTYPE_IQ4_XS: return (int)sizeof(mlxn_block_iq4_xs);
    default: return 0;
    }
}

/* The 32 elements of unit u of the block at p. */
MLXN_HD void mlxn_ggml_unit(int type, const uint8_t *p, int u, float *y)
{
    switch (type) {
    case MLXN_DTYPE_Q4_0: mlxn_unit_q4_0((const mlxn_block_q4_0 *)p, y); break;
    case MLXN_DTYPE_Q4_1: mlxn_unit_q4_1((const mlxn_block_q4_1 *)p, y); break;
    case MLXN_DTYPE_Q5_0: mlxn_unit_q5_0((const mlxn_block_q5_0 *)p, y); break;
    case MLXN_DTYPE_Q5_1: mlxn_unit_q5_1((const mlxn_block_q5_1 *)p, y); break;
    case MLXN_DTYPE_Q8_0: mlxn_unit_q8_0((const mlxn_block_q8_0 *)p, y); break;
    case MLXN_DTYPE_Q2_K: mlxn_unit_q2_K((const mlxn_block_q2_K *)p, u, y); break;
    case MLXN_DTYPE_Q3_K: mlxn_unit_q3_K((const mlxn_block_q3_K *)p, u, y); break;
    case MLXN_DTYPE_Q4_K: mlxn_unit_q4_K((const mlxn_block_q4_K *)p, u, y); break;
    case MLXN_DTYPE_Q5_K: mlxn_unit_q5_K((const mlxn_block_q5_K *)p, u, y); break;
    case MLXN_DTYPE_Q6_K: mlxn_unit_q6_K((const mlxn_block_q6_K *)p, u, y); break;
    case MLXN_DTYPE_IQ4_NL: mlxn_unit_iq4_nl((const mlxn_block_iq4_nl *)p, y); break;
    case MLXN_DTYPE_IQ4_XS: mlxn_unit_iq4_xs((const mlxn_block_iq4_xs *)p, u, y); break;
    default: break;
    }
}

/* Element unit k / 32 of a row of blocks: the block and the unit inside it. */
MLXN_HD const uint8_t *mlxn_ggml_unit_ptr(int type, const uint8_t *row, int64_t k, int *u)
{
    const int be = mlxn_ggml_block_elems(type);
    *u = (int)(k % be) / 32;
    return row + k / be * mlxn_ggml_block_bytes(type);
}

#endif
