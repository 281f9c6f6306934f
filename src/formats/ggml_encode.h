/* Quantization of one 32-element Q8_0 block, shared by the host reference quantizer
 * (ggml_quant.c, bit-exact with gguf-py and ggml's reference C) and the KV-cache append on the
 * CPU and in CUDA, so a cache row appended anywhere holds the reference's bytes:
 *
 *     amax = max |x_j| (NaN skipped);  d = amax / 127;  id = d == 0 ? 0 : 1 / d
 *     block.d = f16(d) (round to nearest even);  q_j = round(x_j * id), halves away from zero
 *
 * Every step is one correctly rounded f32 operation (no product feeds a sum, so nothing can
 * contract into a fused multiply-add; the CUDA build keeps IEEE division and reciprocals), and
 * the max is exact in any order: host and device agree bit for bit. Values are finite in the
 * rows this is meant for; for NaN or infinite x_j the codes are whatever the target's float to
 * int conversion makes of NaN. */
#ifndef MLXN_GGML_ENCODE_H
#define MLXN_GGML_ENCODE_H

#include <math.h>
#include <stdint.h>

#include "../core/half.h"
#include "../core/rows.h" /* MLXN_HD */
#include "ggml_blocks.h"

#ifdef __CUDACC__
#include <cuda_fp16.h>
#endif

/* |x| as a candidate for the block's amax: 0 for NaN (the reference's `|x| > amax` never takes
 * a NaN), so a max in any order (a loop, a warp's shuffles) gives the same amax. */
MLXN_HD float mlxn_q8_0_abs(float x)
{
    return fabsf(x) > 0.0f ? fabsf(x) : 0.0f;
}

/* The block's scale from its amax: writes the f16 bits of d, returns the inverse id that
 * mlxn_q8_0_code multiplies by. */
MLXN_HD float mlxn_q8_0_scale(float amax, uint16_t *d_bits)
{
    const float d = amax / 127.0f;
#ifdef __CUDA_ARCH__
    *d_bits = __half_as_ushort(__float2half_rn(d));
#else
    *d_bits = mlxn_f32_to_f16(d);
#endif
    return d == 0.0f ? 0.0f : 1.0f / d;
}

/* The code of x in a block of inverse scale id: in [-127, 127] for finite x. */
MLXN_HD int8_t mlxn_q8_0_code(float x, float id)
{
    return (int8_t)roundf(x * id); /* roundf: half away from zero, as ggml's */
}

MLXN_HD void mlxn_q8_0_quantize_block(const float *x, mlxn_block_q8_0 *b)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) {
        const float ax = mlxn_q8_0_abs(x[j]);
        amax = ax > amax ? ax : amax;
    }
    uint16_t d_bits;
    const float id = mlxn_q8_0_scale(amax, &d_bits);
    b->d = d_bits;
    for (int j = 0; j < 32; j++)
        b->qs[j] = mlxn_q8_0_code(x[j], id);
}

#endif
