// Codes as subnormal fields, for the decode mat-vecs whose arithmetic per weight bounds them
// (qmatmul_stream.cu, qmatmul_id.cu): a code c masked in place at bit b of a word is, read as a
// float, the subnormal c * 2^(b - 149), exactly. With x's element pre-scaled by 2^(E - b), one
// AND and one FMA per weight add x c 2^(E - 149): no integer-to-float conversion, no
// subtraction. E comes from the largest |x| of the row (x_exponent) so that the scaled x stay
// below 2^126 and the products are normal numbers (only elements about 2^100 below the largest
// lose bits, far under the f32 rounding of the sum); block scales and offsets (through sums of
// x per block) apply once per block, and the totals are scaled back by 2^(149 - E).
#ifndef MLXN_CUDA_SUBNORMAL_CUH
#define MLXN_CUDA_SUBNORMAL_CUH

#include <stdint.h>

#include "../formats/ggml_decode.h"

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

// Adds the 4 unsigned codes of one word, a code a byte in its bits M (0xFF, or 0x1F for 5-bit
// codes whose bytes carry other bits above), times x0..x3, into two sums for shorter dependency
// chains (the byte_bit layout).
template <uint32_t M>
__device__ __forceinline__ void byte_fields_dot(uint32_t u, float x0, float x1, float x2, float x3, float &a0, float &a1)
{
    const uint32_t t = u >> 16;
    a0 = fmaf(x0, field(u & M), a0);
    a1 = fmaf(x1, field(u & (M << 8)), a1);
    a0 = fmaf(x2, field(t & M), a0);
    a1 = fmaf(x3, field(t & (M << 8)), a1);
}

// Adds the 4 int8 codes of one word (made unsigned by + 128: the caller takes 128 times the
// block's sum of x off) times x0..x3.
__device__ __forceinline__ void bytes_dot(uint32_t w, float x0, float x1, float x2, float x3, float &a0, float &a1)
{
    byte_fields_dot<0xFFu>(w ^ 0x80808080u, x0, x1, x2, x3, a0, a1);
}

// 5-bit codes as bytes: the low nibbles of u's bytes (bits 0-3), and bit 4 of each byte from h
// (its bits 5-7 may hold anything: byte_fields_dot<0x1F> drops them).
__device__ __forceinline__ uint32_t q5_bytes(uint32_t u, uint32_t h)
{
    return (u & 0x0F0F0F0Fu) | (h & 0xF0F0F0F0u);
}

// Bits 4n..4n+3 of a Q5_0 / Q5_1 block's high-bit word at bit 4 of bytes 0..3 (for q5_bytes):
// the multiply places bit k of the nibble at bit 8k + 4, its other terms land elsewhere, in
// bits that q5_bytes and the 5-bit fields drop, without carries.
__device__ __forceinline__ uint32_t q5_high_nibble(uint32_t qh, int n)
{
    return (qh >> (4 * n) & 0xFu) * 0x02040810u;
}

// IQ4_NL / IQ4_XS: the code-book values + 128 (unsigned bytes) of the four nibbles of sel's low
// 16 bits, in nibble order. A permute looks nibbles 0-7 up in the lower half of the book, one the
// upper half (selector msb flipped), and a third picks per byte by the nibble's bit 3; bytes
// from the wrong half are never picked, so the permutes' sign-replicate mode does not matter.
__device__ __forceinline__ uint32_t iq4_lookup(uint32_t sel)
{
    constexpr uint64_t lo = MLXN_IQ4_VALUES_LO ^ 0x8080808080808080ull, hi = MLXN_IQ4_VALUES_HI ^ 0x8080808080808080ull;
    const uint32_t a = __byte_perm((uint32_t)lo, (uint32_t)(lo >> 32), sel);
    const uint32_t b = __byte_perm((uint32_t)hi, (uint32_t)(hi >> 32), sel ^ 0x8888u);
    return __byte_perm(a, b, ((sel >> 1) & 0x4444u) | 0x3210u);
}

// Adds the 8 IQ4 codes of one word of a 32-element block (byte j: elements j and j + 16, as Q4_0)
// times x (the layout iq4_bit).
__device__ __forceinline__ void iq4_dot(uint32_t w, const float *xl, const float *xh, float &a0, float &a1)
{
    const uint32_t v0 = iq4_lookup(w), v1 = iq4_lookup(w >> 16); // elements l0 h0 l1 h1, l2 h2 l3 h3
    byte_fields_dot<0xFFu>(v0, xl[0], xh[0], xl[1], xh[1], a0, a1);
    byte_fields_dot<0xFFu>(v1, xl[2], xh[2], xl[3], xh[3], a0, a1);
}

// IQ4's layout: elements 0-15 of a block at bit 0, 16-31 at bit 8.
__host__ __device__ constexpr int iq4_bit(int j) { return j < 16 ? 0 : 8; }

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
