// Wide loads of GGML blocks for the decode mat-vecs (qmatmul.cu's qmm_rows_wide, qmatmul_id.cu's
// qid_rows_wide): a lane owns G consecutive blocks of a row (a group) and loads their bytes with
// LB-byte loads into registers, where the shared decoders (ggml_unit.cuh) read them. Formats
// whose blocks align to at least 4 bytes in some small group; the others (Q3_K, Q6_K) have none.
#ifndef MLXN_CUDA_WIDE_LOAD_CUH
#define MLXN_CUDA_WIDE_LOAD_CUH

#include <stdint.h>

#include "ggml_unit.cuh"

namespace mlxn_cuda {

template <int WT> struct wide_plan { static constexpr int G = 0; };
#define WIDE(t, g, lb) template <> struct wide_plan<t> { static constexpr int G = g, LB = lb; };
WIDE(MLXN_DTYPE_Q4_0, 4, 8) WIDE(MLXN_DTYPE_IQ4_NL, 4, 8) WIDE(MLXN_DTYPE_Q5_0, 4, 8)
WIDE(MLXN_DTYPE_Q8_0, 4, 8) WIDE(MLXN_DTYPE_Q4_1, 4, 16) WIDE(MLXN_DTYPE_Q5_1, 4, 16)
WIDE(MLXN_DTYPE_Q4_K, 1, 16) WIDE(MLXN_DTYPE_Q5_K, 1, 16) WIDE(MLXN_DTYPE_IQ4_XS, 1, 8)
WIDE(MLXN_DTYPE_Q2_K, 1, 4)
#undef WIDE

template <int LB> struct load_word;
template <> struct load_word<4> { using type = uint32_t; };
template <> struct load_word<8> { using type = uint2; };
template <> struct load_word<16> { using type = uint4; };

// The load size for groups of G blocks: the plan's, or for a smaller group (rows whose K is not
// a whole number of the plan's groups) the largest of 8 and 4 bytes that divides the group.
template <int WT, int G> constexpr int wide_lb()
{
    constexpr int GB = G * block_bytes_of<WT>(), LB = wide_plan<WT>::LB;
    return GB % LB == 0 ? LB : GB % 8 == 0 ? 8 : GB % 4 == 0 ? 4 : 0;
}

// The bytes of group g of a row (aligned to the loads: the launchers check W, its row and
// expert strides).
template <int WT, int G> struct wide_raw {
    static constexpr int LB = wide_lb<WT, G>(), GB = G * block_bytes_of<WT>(), NL = GB / LB;
    static_assert(LB > 0 && GB % LB == 0, "a group is a whole number of 4-, 8- or 16-byte loads");
    using word = typename load_word<LB>::type;
    union {
        word v[NL];
        uint8_t b[GB];
    };
    __device__ __forceinline__ void load(const uint8_t *row, int g)
    {
        const word *src = reinterpret_cast<const word *>(row + (size_t)g * GB);
#pragma unroll
        for (int i = 0; i < NL; i++)
            v[i] = src[i];
    }
    // word k of the group; the 32-bit word at byte o (even, a constant once unrolled); the f16
    // at byte o, as a float
    __device__ __forceinline__ uint32_t u32(int k) const { return reinterpret_cast<const uint32_t *>(v)[k]; }
    __device__ __forceinline__ uint32_t word_at(int o) const
    {
        return o % 4 ? __funnelshift_r(u32(o / 4), u32(o / 4 + 1), 16) : u32(o / 4);
    }
    __device__ __forceinline__ float half_at(int o) const
    {
        return __half2float(__ushort_as_half((unsigned short)(u32(o / 4) >> (8 * (o % 4)))));
    }
};

// Lanes per row: enough for a group each, so short rows (embeddings, small models) put 2, 4 or 8
// rows in a warp instead of idling lanes.
inline int wide_lanes(int64_t groups)
{
    return groups <= 4 ? 4 : groups <= 8 ? 8 : groups <= 16 ? 16 : 32;
}

} // namespace mlxn_cuda

#endif
