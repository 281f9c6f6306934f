/* MLX affine code packing, shared by the reference, the CPU kernels and the tests: code i of a
 * row sits at bits [i*bits, (i+1)*bits) of the row's little-endian byte stream.
 *
 *   bits 4:  byte 0 = c1 c0 (c0 in the low nibble), byte 1 = c3 c2, ...
 *   bits 3:  8 codes in 3 bytes: c0 = b0[2:0], c1 = b0[5:3], c2 = b0[7:6] | b1[0] << 2, ...
 */
#ifndef MLXN_MLX_AFFINE_H
#define MLXN_MLX_AFFINE_H

#include <stdint.h>

#include "mlxn.h"

/* the bit width of an MLX dtype (0 for any other): the inverse of mlxn_mlx_dtype_for_bits */
static inline int mlxn_mlx_bits_of(mlxn_dtype dt)
{
    switch (dt) {
    case MLXN_DTYPE_MLX_Q2: return 2;
    case MLXN_DTYPE_MLX_Q3: return 3;
    case MLXN_DTYPE_MLX_Q4: return 4;
    case MLXN_DTYPE_MLX_Q5: return 5;
    case MLXN_DTYPE_MLX_Q6: return 6;
    case MLXN_DTYPE_MLX_Q8: return 8;
    default: return 0;
    }
}

static inline uint32_t mlxn_mlx_get_code(const uint8_t *row, int64_t i, int bits)
{
    int64_t bit = i * bits;
    /* a code spans at most two bytes (bits <= 8) */
    uint32_t two = row[bit >> 3] | ((bit & 7) + bits > 8 ? (uint32_t)row[(bit >> 3) + 1] << 8 : 0);
    return (two >> (bit & 7)) & ((1u << bits) - 1);
}

static inline void mlxn_mlx_put_code(uint8_t *row, int64_t i, int bits, uint32_t code)
{
    int64_t bit = i * bits;
    uint32_t v = code << (bit & 7);
    row[bit >> 3] |= (uint8_t)v;
    if ((bit & 7) + bits > 8)
        row[(bit >> 3) + 1] |= (uint8_t)(v >> 8);
}

#endif
