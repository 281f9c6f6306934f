// Decode mat-vec (M = 1) with Q8_0 weights in short rows (K of a few hundred: the output heads
// of small models, tens of thousands of rows): y[n] = x . W[n]^T (bench/NOTES.md, "Short-row
// Q8_0 mat-vec (output heads)", has the budget).
//
//  - A tile is 32 consecutive rows of W: with rows packed (w_stride = the row's bytes) that is
//    one contiguous range of 32 * 34 * K/32 bytes, a multiple of 16, so one bulk copy (the copy
//    engine, completing on an mbarrier) brings it into shared memory. Each warp owns one stage
//    of a tile and works through its tiles alone: its lane 0 issues the copy, all lanes wait on
//    the warp's mbarrier, lane j computes row j from shared memory and stores y[n] itself: no
//    reduction across lanes, no barrier between warps. A block has as many warps as tiles fit
//    in its shared memory (~200 KB in flight or being computed per SM), so the SM's loads in
//    flight come from many warps, and one warp's compute overlaps the others' copies.
//  - A row of K/32 blocks of 34 bytes goes in pairs of blocks (68 bytes = 17 words; the row
//    starts on a word when K/32 is even): block 0 of a pair is [d0 | codes] at bytes 0..33,
//    block 1 at 34..67, so the pair's words are 4-byte aligned and lane j reads word i of pair
//    p at j * 17 * K/64 + 17 p + i: an odd row stride in words (K/64 odd, e.g. K 576) is free of
//    bank conflicts, K/64 = 2 mod 4 (K 640) has two-way conflicts, and multiples of 4 (K a
//    multiple of 256: worse conflicts) are refused (the streamed kernel takes those).
//  - Codes as subnormal fields (subnormal.cuh): with u = word ^ 0x80808080 (codes + 128,
//    unsigned), the masked fields u & 0xFF, u & 0xFF00, u & 0xFF0000 and (u >> 8) & 0xFF0000
//    read as floats are (c + 128) * 2^(bit - 149) for bits 0, 8, 16, 16 (a field below 2^24 is
//    that integer times 2^-149 whether its bit 23 is set or not). x is staged in the pair's
//    byte layout, element at byte position q of the pair stored at float q and pre-scaled by
//    2^(E - bit of q mod 4), so word i's four x come in one broadcast float4 and a weight costs
//    one LOP3 and one FMA. The scale bytes' positions (0-1, 34-35) hold each block's sum of x
//    (for the -128 offset), read with the same float4s.
#include <stdint.h>

#include "block_reduce.cuh"
#include "bulk_copy.cuh"
#include "common.cuh"
#include "qmatmul_out.cuh"
#include "subnormal.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int MAX_WARPS = 16, MIN_WARPS = 4;
constexpr int PAIR_BYTES = 68, PAIR_WORDS = 17;
// Shared memory the launcher keeps back from the per-block maximum for the static arrays.
constexpr int STATIC_SMEM = 1024;
// Below this many tiles per SM the call stays with the wide-load kernel: one warp computes a
// whole tile (~1700 instructions a lane at K 576), a latency that only pays when each SM has
// several tiles to overlap (output heads have tens).
constexpr int MIN_TILES_PER_SM = 2;

// The bit at which the code at byte position q of a pair sits in the field its word gives.
__host__ __device__ constexpr int field_bit(int q)
{
    return (q & 3) == 0 ? 0 : (q & 3) == 1 ? 8 : 16;
}

// Adds the four codes of word w (pair positions 4i..4i+3) times their x (xv) to a and b.
__device__ __forceinline__ void word_dot(uint32_t w, float4 xv, float &a, float &b)
{
    const uint32_t u = w ^ 0x80808080u, h = u >> 8;
    a = fmaf(xv.x, field(u & 0xFFu), a);
    b = fmaf(xv.y, field(u & 0xFF00u), b);
    a = fmaf(xv.z, field(u & 0xFF0000u), a);
    b = fmaf(xv.w, field(h & 0xFF0000u), b);
}

// Row `row` of the tile in stage `st` (a byte offset into smem) times x: sum over the pairs, in
// units of 2^(E - 149).
__device__ __forceinline__ float row_dot(const uint8_t *smem, uint32_t st, uint32_t row_bytes, int pairs,
                                         const float *xs)
{
    const uint32_t *q = reinterpret_cast<const uint32_t *>(smem) + ((st + (uint32_t)(threadIdx.x & 31) * row_bytes) >> 2);
    const float4 *xq = reinterpret_cast<const float4 *>(xs);
    float total = 0.f;
    for (int p = 0; p < pairs; p++, q += PAIR_WORDS, xq += PAIR_WORDS) {
        uint32_t w[PAIR_WORDS];
#pragma unroll
        for (int i = 0; i < PAIR_WORDS; i++)
            w[i] = q[i];
        float a0 = 0.f, b0 = 0.f, a1 = 0.f, b1 = 0.f;
        // word 0: d0, then codes 0-1 (positions 2, 3); word 8: codes 30-31 of block 0, then d1
        const float4 x0 = xq[0], x8 = xq[8];
        const uint32_t u0 = w[0] ^ 0x80808080u, u8 = w[8] ^ 0x80808080u;
        a0 = fmaf(x0.z, field(u0 & 0xFF0000u), a0);
        b0 = fmaf(x0.w, field((u0 >> 8) & 0xFF0000u), b0);
#pragma unroll
        for (int i = 1; i < 8; i++)
            word_dot(w[i], xq[i], a0, b0);
        a0 = fmaf(x8.x, field(u8 & 0xFFu), a0);
        b0 = fmaf(x8.y, field(u8 & 0xFF00u), b0);
#pragma unroll
        for (int i = 9; i < PAIR_WORDS; i++)
            word_dot(w[i], xq[i], a1, b1);
        const float d0 = __half2float(__ushort_as_half((unsigned short)(w[0] & 0xFFFFu)));
        const float d1 = __half2float(__ushort_as_half((unsigned short)(w[8] >> 16)));
        total = fmaf(d0, fmaf(-128.f, x0.x, a0 + b0), total);
        total = fmaf(d1, fmaf(-128.f, x8.z, a1 + b1), total);
    }
    return total;
}

// Dynamic shared memory:
//   [warps stages of 32 rows x row_bytes]  stage of warp w at w * tile bytes (16-byte aligned)
//   [x: K/64 pairs x 68 floats]            float q of pair p: x at byte position q of a pair of
//                                          blocks (pre-scaled), the block sums at 0 and 34, 0 at
//                                          1 and 35
__global__ void __launch_bounds__(32 * MAX_WARPS) qmm_q8_0_short_rows(const mlxn_qmatmul_args a)
{
    extern __shared__ __align__(128) uint8_t smem[];
    __shared__ uint64_t full[MAX_WARPS]; // a warp's tile has landed
    __shared__ double dred[32];
    __shared__ int ired[32];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warps = blockDim.x >> 5;
    const int pairs = (int)(a.K / 64);
    const uint32_t row_bytes = (uint32_t)(a.K / 32 * 34), tile_bytes = 32 * row_bytes;
    const uint32_t stage = (uint32_t)warp * tile_bytes;
    float *xs = reinterpret_cast<float *>(smem + (size_t)warps * tile_bytes);
    const int64_t tiles = (a.N + 31) / 32;
    // Tiles go round-robin over the warps of all blocks, warp-major, so that a last, partial
    // round spreads over every SM rather than filling a few.
    const int64_t first = (int64_t)warp * gridDim.x + blockIdx.x, step = (int64_t)gridDim.x * warps;

    // Tile t into this warp's stage: the whole 16-byte multiple of its rows' bytes through the
    // copy engine (lane 0), the last few bytes of a partial last tile (rows that end off the 16-
    // byte grid) by the lanes from global memory, so nothing past row N - 1 is read.
    auto issue = [&](int64_t t) {
        const int64_t rows = a.N - 32 * t < 32 ? a.N - 32 * t : 32;
        const uint32_t bytes = (uint32_t)rows * row_bytes, bulk = bytes & ~15u;
        const uint8_t *src = a.w + t * tile_bytes;
        if (lane == 0) {
            fence_proxy_async_shared(); // the lanes' reads of the stage's previous tile
            mbar_arrive_expect(&full[warp], bulk);
            bulk_copy(smem + stage, src, bulk, &full[warp]);
        }
        const uint32_t off = bulk + 2 * (uint32_t)lane; // bytes are even: halfwords
        if (off < bytes)
            *reinterpret_cast<uint16_t *>(smem + stage + off) = *reinterpret_cast<const uint16_t *>(src + off);
    };
    // W does not depend on the previous kernel: the first tile is on its way before the wait.
    if (first < tiles) {
        if (lane == 0) {
            mbar_init(&full[warp], 1);
            mbar_init_fence();
        }
        __syncwarp();
        issue(first);
    }
    if (a.norm_w && tid == 0)
        prefetch_l2(a.norm_w, a.K * 4);
    wait_for_previous_kernel();
    allow_next_kernel();

    // x (times norm_w with the fused norm) into its slots; the sum of squares of x (f64, as the
    // other decode kernels) and the largest |x * norm_w|
    const char *xr = mlxn_rows_ptr(&a.x, 0);
    auto slot = [](int64_t k) { // float index of element k: pair, block in it, position
        return (int)(k >> 6) * PAIR_BYTES + (int)(k >> 5 & 1) * 34 + 2 + (int)(k & 31);
    };
    double ss = 0.0;
    int big = 0;
    for (int64_t k = tid; k < a.K; k += blockDim.x) {
        float v = load_any(a.x_dtype, xr, k);
        if (a.norm_w) {
            ss += (double)v * v;
            v *= __ldg(a.norm_w + k);
        }
        big = max(big, __float_as_int(fabsf(v)));
        xs[slot(k)] = v;
    }
    float inv = 1.f;
    if (a.norm_w) {
        ss = block_reduce(ss, dred, 0.0, add_op());
        inv = norm_scale(a, ss);
    }
    big = block_reduce(big, ired, 0, max_op());
    // E from the largest |x * norm_w * inv| (rounding is monotonic, so this is the largest of the
    // products below), its exponent field read from the bits: scaled x stay below 2^126
    const int E = x_exponent(__float_as_int(__int_as_float(big) * inv));
    // Every lane of a warp takes part in the same iterations (K and blockDim multiples of 32),
    // and the 32 elements of one iteration are one block: its sum is a warp sum.
    for (int64_t k = tid; k < a.K; k += blockDim.x) {
        const int q = slot(k);
        const float v = xs[q] * inv, s = warp_sum(v);
        xs[q] = scale2(v, E - field_bit(q));
        if (lane == 0) {
            xs[q - 2] = scale2(s, E - 149);
            xs[q - 1] = 0.f;
        }
    }
    __syncthreads();

    uint32_t phase = 0;
    for (int64_t t = first; t < tiles; t += step, phase ^= 1) {
        mbar_wait(&full[warp], phase);
        __syncwarp(); // the lanes' halfwords of a partial tile are in
        const int64_t n = 32 * t + lane;
        const float v = n < a.N ? row_dot(smem, stage, row_bytes, pairs, xs) : 0.f;
        __syncwarp(); // every lane is done with the stage before it is refilled
        if (t + step < tiles)
            issue(t + step);
        if (n < a.N)
            store_out(a, 0, n, scale2(v, 149 - E), 0.f);
    }
}

} // namespace

extern "C" bool mlxn_cuda_launch_qmatmul_short(const mlxn_qmatmul_args *a, cudaStream_t s, bool pdl, cudaError_t *e)
{
    static unsigned long long smem_done;
    const int64_t row_bytes = a->K / 32 * 34, tile_bytes = 32 * row_bytes, x_bytes = a->K / 64 * PAIR_BYTES * 4;
    if (a->w_dtype != MLXN_DTYPE_Q8_0 || a->M != 1 || a->glu || a->K % 64 || a->K % 256 == 0 ||
        a->w_stride != row_bytes || (uintptr_t)a->w % 16)
        return false;
    int dev = 0, sms = 0, optin = 0, per_sm = 0;
    bool sm90 = false;
    *e = sm90_device(&dev, &sm90);
    if (*e == cudaSuccess)
        *e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (*e == cudaSuccess)
        *e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (*e != cudaSuccess)
        return true;
    const int64_t tiles = (a->N + 31) / 32, budget = (int64_t)optin - STATIC_SMEM;
    int64_t warps = (budget - x_bytes) / tile_bytes;
    warps = warps > MAX_WARPS ? MAX_WARPS : warps;
    if (!sm90 || tiles < (int64_t)MIN_TILES_PER_SM * sms || warps < MIN_WARPS)
        return false;
    const size_t smem = (size_t)(warps * tile_bytes + x_bytes);
    *e = allow_smem(qmm_q8_0_short_rows, (size_t)budget, smem_done);
    if (*e == cudaSuccess)
        *e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, qmm_q8_0_short_rows, (int)(32 * warps), smem);
    if (*e != cudaSuccess)
        return true;
    const int64_t cap = (int64_t)sms * (per_sm > 0 ? per_sm : 1);
    *e = launch(qmm_q8_0_short_rows, dim3((unsigned)(tiles < cap ? tiles : cap)), dim3((unsigned)(32 * warps)), smem,
                s, pdl, *a);
    return true;
}
