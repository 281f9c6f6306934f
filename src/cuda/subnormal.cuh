// Codes as subnormal fields, for the MoE decode mat-vecs whose arithmetic per weight bounds them
// (qmatmul_id.cu; the dense streamed decode now takes integer dot products, bench/NOTES.md): a
// code c masked in place at bit b of a word is, read as a float, the subnormal c * 2^(b - 149),
// exactly. With x's element pre-scaled by 2^(E - b), one AND and one FMA per weight add
// x c 2^(E - 149): no integer-to-float conversion, no subtraction. E comes from the largest |x|
// of the row (x_exponent) so that the scaled x stay below 2^126 and the products are normal
// numbers (only elements about 2^100 below the largest lose bits, far under the f32 rounding of
// the sum); block scales and offsets (through sums of x per block) apply once per block, and the
// totals are scaled back by 2^(149 - E).
#ifndef MLXN_CUDA_SUBNORMAL_CUH
#define MLXN_CUDA_SUBNORMAL_CUH

#include <stdint.h>

namespace mlxn_cuda {

__device__ __forceinline__ float field(uint32_t w)
{
    return __uint_as_float(w);
}

// E for the largest |x| of a row, given as its bits (the bits of non-negative floats order as
// integers, so the largest is an integer max).
__device__ __forceinline__ int x_exponent(int big_bits)
{
    return 125 - ((big_bits >> 23) - 127);
}

// The nibble layout of nibbles_dot: the bit at which element j of a span of 2H elements sits
// (elements j and j + H in the low and high nibble of byte j of the span's H code bytes; the
// high nibble of byte 2 and byte 3 come from the word shifted right by 12).
__host__ __device__ constexpr int nibble_bit(int j, int H)
{
    return ((j < H ? 0x0C100800 : 0x10080C04) >> (8 * (j & 3))) & 0xFF;
}

// Q8_0's layout: the bit at which element j sits when a word's bytes 0-1 are masked in place
// and bytes 2-3 from the word shifted right by 16 (bytes_dot).
__host__ __device__ constexpr int byte_bit(int j) { return (j & 1) * 8; }

// Adds the 4 int8 codes of one word (made unsigned by + 128: the caller takes 128 times the
// block's sum of x off) times x0..x3, into two sums for shorter dependency chains.
__device__ __forceinline__ void bytes_dot(uint32_t w, float x0, float x1, float x2, float x3, float &a0, float &a1)
{
    const uint32_t u = w ^ 0x80808080u, t = u >> 16;
    a0 = fmaf(x0, field(u & 0xFFu), a0);
    a1 = fmaf(x1, field(u & 0xFF00u), a1);
    a0 = fmaf(x2, field(t & 0xFFu), a0);
    a1 = fmaf(x3, field(t & 0xFF00u), a1);
}

// Adds the 8 codes of one word in the nibble layout: low nibbles times xl[0..3], high times xh
// (two sums each, for shorter dependency chains).
__device__ __forceinline__ void nibbles_dot(uint32_t w, const float *xl, const float *xh, float (&al)[2], float (&ah)[2])
{
    const uint32_t t = w >> 12;
    al[0] = fmaf(xl[0], field(w & 0xFu), al[0]);
    ah[0] = fmaf(xh[0], field(w & 0xF0u), ah[0]);
    al[1] = fmaf(xl[1], field(w & 0xF00u), al[1]);
    ah[1] = fmaf(xh[1], field(w & 0xF000u), ah[1]);
    al[0] = fmaf(xl[2], field(w & 0xF0000u), al[0]);
    ah[0] = fmaf(xh[2], field(t & 0xF00u), ah[0]);
    al[1] = fmaf(xl[3], field(t & 0xF000u), al[1]);
    ah[1] = fmaf(xh[3], field(t & 0xF0000u), ah[1]);
}

} // namespace mlxn_cuda

#endif
