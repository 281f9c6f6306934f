// The expert-routed quantized matmul on CUDA (mlxn.h's mlxn_qmatmul_id and _swiglu):
// y[p, :] = x_row(p) . W[ids[p]]^T for each (token, slot) pair p, or SwiGLU of a gate and an up
// product. The weights are decoded 32 at a time by the decoders shared with the host reference.
//
// Variants (launcher at the bottom):
//   qid_rows_wide  decode (up to MLXN_CUDA_QMATMUL_ID_DECODE_PAIRS pairs) for the formats with a
//             wide-load plan (wide_load.cuh) and aligned experts where it beats the staged
//             decode (staged_over_wide): as qid_rows below, but a lane owns a group of G blocks
//             of a row, loaded with 8- or 16-byte loads into registers and decoded there
//             (qmatmul.cu's qmm_rows_wide), lpr lanes a row, a row per slot of lanes; Q4_0,
//             Q8_0 and Q4_K groups as subnormal fields against x staged pre-scaled
//             (subnormal_group below), the others through the shared decoders.
//   qid_rows_staged  decode of the other GGML weights with K a multiple of 256 (Q3_K, Q6_K,
//             the staged_over_wide cases, or experts the wide loads do not fit): per K tile a
//             block's 16 or 32 rows copied into shared memory by cp.async in the widest pieces
//             their alignment allows, then dotted from there with x's pieces as integers
//             (piece_dot.cuh), lpr lanes a row.
//   qid_rows  the other decodes (float weights, K not a multiple of 256): a block per (pair, 32
//             rows of W), a warp per 4 rows, a lane per 32-element unit (qmatmul.cu's qmm_rows
//             design); the pair's row of x staged in shared memory (units padded to 36 floats so
//             lanes one unit apart hit different banks) in K tiles of 4096. The expert id is read
//             on the device; the SwiGLU variant decodes the gate and up rows in the same warp.
//   Decodes whose ids the previous kernel does not write (ids_early, ops.c) read them, and start
//   on their weights, before waiting for that kernel.
//   qid_mma   more pairs (prefill): the routing map built on the GPU (moe_route_map.cu), then
//             tiles of (expert, 64 of its pairs, 64 rows of W) on tensor cores (mma.sync
//             m16n8k16, bf16 in, f32 accumulate): each K step of 64 decodes the W tile (and the
//             up tile) to bf16 in shared memory once for the 64 pairs, gathers the pairs' rows of
//             x through the pair list rounded to bf16, and the epilogue writes (SwiGLU applied)
//             straight to the pairs' rows of y. The grid is sized for the worst case of tiles
//             (ceil(P / 64) + min(E, P)) and each block reads its expert from the map's tile
//             table, leaving when its tile index is past the last tile: no host round trip.

#include "block_reduce.cuh"
#include "ggml_unit.cuh"
#include "piece_dot.cuh"
#include "subnormal.cuh"
#include "wide_load.cuh"

namespace {

using namespace mlxn_cuda;

__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

// Pair p's token without a division for the first token's pairs (all of a decode step's): a
// 64-bit division costs ~25 dependent instructions, and the decode's (here and in
// mlxn_rows_ptr) took ~370 before its first weight load (bench/NOTES.md).
__device__ __forceinline__ int64_t pair_token(const mlxn_qmatmul_id_args &a, int64_t p)
{
    return p < a.k ? 0 : p / a.k;
}

// read from the L2 (ld.global.cg): a decode may read ids before its wait (ids_early), and no
// line of them in the L1 from an earlier kernel can then be taken for them
__device__ __forceinline__ int32_t pair_expert(const mlxn_qmatmul_id_args &a, int64_t p)
{
    const int64_t t = pair_token(a, p);
    return __ldcg(reinterpret_cast<const int32_t *>(mlxn_rows_ptr(&a.ids, t)) + (p - t * a.k));
}

__device__ __forceinline__ const char *pair_x(const mlxn_qmatmul_id_args &a, int64_t p)
{
    return mlxn_rows_ptr(&a.x, a.x_per_slot ? p : pair_token(a, p));
}

// ---- decode: mat-vecs per pair

constexpr int DEC_WARPS = 8, DEC_ROWS = 4, DEC_BLOCK_ROWS = DEC_WARPS * DEC_ROWS, DEC_KT = 4096, PAD = 36;

// grid: (ceil(N / DEC_BLOCK_ROWS), pairs)
template <int WT, bool SWIGLU>
__global__ void __launch_bounds__(32 * DEC_WARPS) qid_rows(const mlxn_qmatmul_id_args a)
{
    __shared__ __align__(16) float xs[DEC_KT / 32 * PAD];
    // ids_early (ops.c): the expert read and its rows asked of the L2 before the wait
    const bool early = a.ids_early;
    if (!early) {
        wait_for_previous_kernel();
        allow_next_kernel();
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t p = blockIdx.y, n_block = (int64_t)blockIdx.x * DEC_BLOCK_ROWS;
    const int32_t e = pair_expert(a, p);
    const bool routed = e >= 0 && e < a.E;
    const uint8_t *wg = a.w + e * a.w_expert_stride, *wu = SWIGLU ? a.w_up + e * a.up_expert_stride : nullptr;
    if (early) {
        if (routed && threadIdx.x == 0) {
            const int64_t rows = a.N - n_block < DEC_BLOCK_ROWS ? a.N - n_block : DEC_BLOCK_ROWS;
            const int64_t rb = (int64_t)row_bytes<WT>(a.K);
            prefetch_l2(wg + n_block * a.w_stride, (rows - 1) * a.w_stride + rb);
            if constexpr (SWIGLU)
                prefetch_l2(wu + n_block * a.up_stride, (rows - 1) * a.up_stride + rb);
        }
        wait_for_previous_kernel();
        allow_next_kernel();
    }
    float *y = reinterpret_cast<float *>(mlxn_rows_ptr(&a.y, p));
    if (!routed) { // a pair left out of the routing: a row of zeros
        if (n_block + threadIdx.x < a.N && threadIdx.x < DEC_BLOCK_ROWS)
            y[n_block + threadIdx.x] = 0.f;
        return;
    }
    const char *xr = pair_x(a, p);
    const int64_t n0 = n_block + warp * DEC_ROWS;
    float acc[DEC_ROWS], accu[DEC_ROWS];
#pragma unroll
    for (int r = 0; r < DEC_ROWS; r++)
        acc[r] = accu[r] = 0.f;
    for (int64_t k0 = 0; k0 < a.K; k0 += DEC_KT) {
        const int klen = (int)(a.K - k0 < DEC_KT ? a.K - k0 : DEC_KT), units = (klen + 31) / 32;
        __syncthreads(); // the previous tile is consumed
        for (int i = threadIdx.x; i < units * 32; i += blockDim.x)
            xs[(i >> 5) * PAD + (i & 31)] = i < klen ? load_any(a.x_dtype, xr, k0 + i) : 0.f;
        __syncthreads();
#pragma unroll
        for (int r = 0; r < DEC_ROWS; r++) {
            if (n0 + r >= a.N)
                break;
            for (int c = lane; c < units; c += 32) {
                float v[32];
                weight_unit_bounded<WT>(wg + (n0 + r) * a.w_stride, k0 + 32 * c, a.K, v);
                acc[r] += unit_dot(v, xs + c * PAD);
                if constexpr (SWIGLU) {
                    weight_unit_bounded<WT>(wu + (n0 + r) * a.up_stride, k0 + 32 * c, a.K, v);
                    accu[r] += unit_dot(v, xs + c * PAD);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < DEC_ROWS; r++) {
        const float g = warp_sum(acc[r]);
        const float u = SWIGLU ? warp_sum(accu[r]) : 0.f;
        if (lane == 0 && n0 + r < a.N)
            y[n0 + r] = SWIGLU ? silu(g) * u : g;
    }
}

// Q4_0 and Q8_0 groups (4 blocks) and Q4_K's (a super-block) in qid_rows_wide with codes as
// subnormal fields (subnormal.cuh): x is staged pre-scaled per element for its field's bit, with each
// 32 elements' sum of x; a weight costs one AND and one FMA (the shared decoder's integer-to-
// float steps cost ~10 instructions a weight, and bound the kernel: ncu, bench/NOTES.md). E is
// chosen per 128 elements from their largest |x|, a warp's float4s in the staging: no
// block-wide reduction.
template <int WT, int G> constexpr bool subnormal_group()
{
    return ((WT == MLXN_DTYPE_Q4_0 || WT == MLXN_DTYPE_Q8_0) && G == 4) || (WT == MLXN_DTYPE_Q4_K && G == 1);
}
constexpr int XSPAN = 128; // elements per E

// The bit at which element j (of any 64-element-aligned span) sits in the fields of the dots
// below: the nibble layout of Q4_0 blocks (16 code bytes) and of Q4_K's 64-element pieces (32),
// or Q8_0's bytes (subnormal.cuh).
template <int WT> __device__ __forceinline__ int x_bit(int j)
{
    if constexpr (WT == MLXN_DTYPE_Q8_0)
        return byte_bit(j);
    else if constexpr (WT == MLXN_DTYPE_Q4_0)
        return nibble_bit(j % 32, 16);
    else
        return nibble_bit(j % 64, 32);
}

// x of the pair staged for subnormal_group: elements pre-scaled by 2^(E - bit) into xg (groups
// of GE, GP apart), each 32 elements' sum of x times 2^(E - 149) into xsum, each 128 elements'
// E into xexp. K is a multiple of 128: a warp's float4s are one span of E.
template <int WT, int GE, int GP>
__device__ __forceinline__ void stage_x_subnormal(const mlxn_qmatmul_id_args &a, const char *xr, float *xg, float *xsum,
                                                  int *xexp)
{
    static_assert(GE % XSPAN == 0, "a warp's float4s are whole spans of E");
    const float *xf = reinterpret_cast<const float *>(xr);
    const bool vec = a.x_dtype == MLXN_DTYPE_F32 && (reinterpret_cast<uintptr_t>(xf) & 15) == 0;
    for (int i = 4 * threadIdx.x; i < (int)a.K; i += 4 * blockDim.x) {
        const float4 v = vec ? *reinterpret_cast<const float4 *>(xf + i)
                             : make_float4(load_any(a.x_dtype, xr, i), load_any(a.x_dtype, xr, i + 1),
                                           load_any(a.x_dtype, xr, i + 2), load_any(a.x_dtype, xr, i + 3));
        int big = max(max(__float_as_int(fabsf(v.x)), __float_as_int(fabsf(v.y))),
                      max(__float_as_int(fabsf(v.z)), __float_as_int(fabsf(v.w))));
        const int E = x_exponent(warp_reduce(big, max_op())), j = i % 64;
        float4 o;
        o.x = scale2(v.x, E - x_bit<WT>(j));
        o.y = scale2(v.y, E - x_bit<WT>(j + 1));
        o.z = scale2(v.z, E - x_bit<WT>(j + 2));
        o.w = scale2(v.w, E - x_bit<WT>(j + 3));
        *reinterpret_cast<float4 *>(xg + (i / GE) * GP + i % GE) = o;
        float sum = (v.x + v.y) + (v.z + v.w);
#pragma unroll
        for (int m = 4; m > 0; m >>= 1) // the 8 lanes of 32 elements
            sum += __shfl_xor_sync(0xffffffffu, sum, m);
        if (i % 32 == 0)
            xsum[i / 32] = scale2(sum, E - 149);
        if (i % XSPAN == 0)
            xexp[i / XSPAN] = E;
    }
}

// The NW words from byte o of each of NM groups (the gate's and the up's for SwiGLU) times the
// staged x of a 2H-element span at xs (nibble layout; each x read once for all NM), in units of
// 2^(E - 149): lo and hi, the sums of the low and high nibbles.
template <int WT, int G, int NW, int NM>
__device__ __forceinline__ void nibble_span_dot(const wide_raw<WT, G> (&raw)[NM], int o, const float *xs, float (&lo)[NM],
                                                float (&hi)[NM])
{
    constexpr int H = NW * 4;
    float al[NM][2], ah[NM][2];
#pragma unroll
    for (int m = 0; m < NM; m++)
        al[m][0] = al[m][1] = ah[m][0] = ah[m][1] = 0.f;
#pragma unroll
    for (int i = 0; i < NW; i++) {
        const float4 l4 = *reinterpret_cast<const float4 *>(xs + 4 * i), h4 = *reinterpret_cast<const float4 *>(xs + H + 4 * i);
        const float xl[4] = {l4.x, l4.y, l4.z, l4.w}, xh[4] = {h4.x, h4.y, h4.z, h4.w};
#pragma unroll
        for (int m = 0; m < NM; m++)
            nibbles_dot(raw[m].word_at(o + 4 * i), xl, xh, al[m], ah[m]);
    }
#pragma unroll
    for (int m = 0; m < NM; m++) {
        lo[m] = al[m][0] + al[m][1];
        hi[m] = ah[m][0] + ah[m][1];
    }
}

// Group g of each of NM raws times the staged x (group g of xg, the group's sums in xsum from
// g GE / 32) into out.
template <int WT, int G, int GP, int NM>
__device__ __forceinline__ void group_dot_subnormal(const wide_raw<WT, G> (&raw)[NM], const float *xg, const float *xsum,
                                                    const int *xexp, int g, float (&out)[NM])
{
    constexpr int BB = block_bytes_of<WT>(), GE = G * block_elems_of<WT>();
    const float *xs = xg + g * GP;
    const float *sx = xsum + g * (GE / 32);
    float r[NM];
#pragma unroll
    for (int m = 0; m < NM; m++)
        r[m] = 0.f;
    if constexpr (WT == MLXN_DTYPE_Q4_0) { // blocks: d (f16), 16 code bytes
#pragma unroll
        for (int b = 0; b < G; b++) {
            float lo[NM], hi[NM];
            nibble_span_dot<WT, G, 4, NM>(raw, BB * b + 2, xs + 32 * b, lo, hi);
#pragma unroll
            for (int m = 0; m < NM; m++)
                r[m] += raw[m].half_at(BB * b) * (lo[m] + hi[m] - 8.f * sx[b]);
        }
        const int E = xexp[g * GE / XSPAN];
#pragma unroll
        for (int m = 0; m < NM; m++)
            out[m] = scale2(r[m], 149 - E);
    } else if constexpr (WT == MLXN_DTYPE_Q8_0) { // blocks: d (f16), 32 int8 codes
#pragma unroll
        for (int b = 0; b < G; b++) {
            float a0[NM], a1[NM];
#pragma unroll
            for (int m = 0; m < NM; m++)
                a0[m] = a1[m] = 0.f;
#pragma unroll
            for (int i = 0; i < 8; i++) {
                const float4 x4 = *reinterpret_cast<const float4 *>(xs + 32 * b + 4 * i);
#pragma unroll
                for (int m = 0; m < NM; m++)
                    bytes_dot(raw[m].word_at(BB * b + 2 + 4 * i), x4.x, x4.y, x4.z, x4.w, a0[m], a1[m]);
            }
#pragma unroll
            for (int m = 0; m < NM; m++)
                r[m] += raw[m].half_at(BB * b) * (a0[m] + a1[m] - 128.f * sx[b]);
        }
        const int E = xexp[g * GE / XSPAN];
#pragma unroll
        for (int m = 0; m < NM; m++)
            out[m] = scale2(r[m], 149 - E);
    } else { // Q4_K: d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 code bytes
#pragma unroll
        for (int c = 0; c < 4; c++) { // 64-element pieces: units 2c (low nibbles), 2c + 1
            float v[2][NM];
            nibble_span_dot<WT, G, 8, NM>(raw, 16 + 32 * c, xs + 64 * c, v[0], v[1]);
            const int E = xexp[(g * GE + 64 * c) / XSPAN];
#pragma unroll
            for (int m = 0; m < NM; m++) {
                float pr = 0.f;
#pragma unroll
                for (int k = 0; k < 2; k++) {
                    uint32_t sc, mn;
                    q4_K_scale_min(raw[m].u32(1), raw[m].u32(2), raw[m].u32(3), 2 * c + k, sc, mn);
                    pr += raw[m].half_at(0) * (float)sc * v[k][m] - raw[m].half_at(2) * (float)mn * sx[2 * c + k];
                }
                r[m] += scale2(pr, 149 - E);
            }
        }
#pragma unroll
        for (int m = 0; m < NM; m++)
            out[m] = r[m];
    }
}

// [src, src + bytes) into dst (16-byte aligned) in `piece`-byte pieces, piece dividing src and
// bytes (nothing outside the row is read), lanes on consecutive pieces: cp.async for 16, 8 and 4
// (every piece of a tile in flight at once; the caller commits and waits), 2-byte pieces eight
// loads at a time before their stores. A first version with plain loads and stores, one piece
// after another, left one load in flight a thread: Q6_K's gate+up took 51 us against 28 before.
__device__ __forceinline__ void copy_row(uint8_t *dst, const uint8_t *src, int bytes, int lane, int piece)
{
    const uint32_t d = smem_addr(dst);
    const int n = bytes / piece;
    if (piece == 16) {
        for (int c = lane; c < n; c += 32)
            cp_async16(d + 16 * c, src + 16 * c, 16);
    } else if (piece == 8) {
        for (int c = lane; c < n; c += 32)
            cp_async8(d + 8 * c, src + 8 * c);
    } else if (piece == 4) {
        for (int c = lane; c < n; c += 32)
            cp_async4(d + 4 * c, src + 4 * c);
    } else {
        const uint16_t *s2 = reinterpret_cast<const uint16_t *>(src);
        uint16_t *d2 = reinterpret_cast<uint16_t *>(dst);
        for (int c0 = lane; c0 < n; c0 += 8 * 32) {
            uint16_t v[8];
#pragma unroll
            for (int j = 0; j < 8; j++)
                if (c0 + 32 * j < n)
                    v[j] = s2[c0 + 32 * j];
#pragma unroll
            for (int j = 0; j < 8; j++)
                if (c0 + 32 * j < n)
                    d2[c0 + 32 * j] = v[j];
        }
    }
}

// qid_rows_staged's dynamic shared memory: [1 or 2][brows][staged_pitch] bytes of W's (and W_up's)
// K tile of kt elements, then x's tile (kt / 32 units of PAD floats). A tile is as long as fits
// the block's share at the blocks an SM its launch bounds allow (2 with SwiGLU, else 4): each
// tile is a copy, then the products, with nothing overlapping inside the block, and the
// latency of that round bounds the one-token decode (bench/NOTES.md, qmatmul_id session 32).
template <int WT> constexpr int staged_pitch(int64_t kt) { return ((int)row_bytes<WT>(kt) + 15) / 16 * 16; }
template <int WT, bool SWIGLU> size_t staged_smem(int brows, int64_t kt)
{
    return (size_t)(SWIGLU ? 2 : 1) * brows * staged_pitch<WT>(kt) + (size_t)kt / 32 * PAD * sizeof(float);
}
// 100 KB with SwiGLU, 48 KB without, or less where the device allows a block less (99 KB on
// sm_86 / sm_89)
template <bool SWIGLU> cudaError_t staged_budget(size_t &budget)
{
    int dev = 0, optin = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    const size_t want = SWIGLU ? 100 * 1024 : 48 * 1024;
    budget = (size_t)optin < want ? (size_t)optin : want;
    return e;
}

// grid: (ceil(N / brows), pairs). Decode of GGML weights with K a multiple of 256 that take no
// wide loads (Q3_K and Q6_K, whose blocks are only 2-byte aligned, the formats and calls of
// staged_over_wide, or experts the wide loads do not fit): per K tile the block's brows (16 or
// 32) rows of W (and of W_up) are copied into shared memory with the widest loads their
// alignment allows (`piece` bytes, coalesced), then each warp takes its brows / 8 rows from
// there, lpr lanes a row (a power of two dividing the tiles' units: short rows keep every lane
// busy): a lane makes the integer form of x's piece for each unit it owns and dots it with that
// unit of each of its rows (piece_dot, as the streamed dense decode). Four blocks an SM without
// SwiGLU (64 registers): at 114 a Q6_K down projection of 512 blocks ran in two waves. qid_rows
// below reads each unit from global memory a byte or two at a time, 32 lanes a row: Q6_K's down
// projection of Qwen3.6's shape took 15 us.
template <int WT, bool SWIGLU>
__global__ void __launch_bounds__(32 * DEC_WARPS, SWIGLU ? 2 : 4) qid_rows_staged(const mlxn_qmatmul_id_args a, int lpr, int piece, int brows, int kt)
{
    constexpr int NM = SWIGLU ? 2 : 1;
    extern __shared__ __align__(16) uint8_t ws[]; // staged_smem
    const int pitch = staged_pitch<WT>(kt);
    float *const xs = reinterpret_cast<float *>(ws + NM * brows * pitch);
    const bool early = a.ids_early; // as in qid_rows_wide
    if (!early) {
        wait_for_previous_kernel();
        allow_next_kernel();
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, sl = lane % lpr, rps = 32 / lpr;
    const int rpw = brows / DEC_WARPS; // a warp's rows
    const int64_t p = blockIdx.y, n_block = (int64_t)blockIdx.x * brows;
    const int rows = (int)(a.N - n_block < brows ? a.N - n_block : brows);
    const int32_t e = pair_expert(a, p);
    const bool routed = e >= 0 && e < a.E;
    const uint8_t *w[2] = {a.w + e * a.w_expert_stride + n_block * a.w_stride,
                           SWIGLU ? a.w_up + e * a.up_expert_stride + n_block * a.up_stride : nullptr};
    const int64_t stride[2] = {a.w_stride, a.up_stride};
    // the block's rows asked of the L2 (later tiles then come from there), before the wait if early
    if (routed && threadIdx.x < NM)
        prefetch_l2(threadIdx.x ? w[1] : w[0], (rows - 1) * (threadIdx.x ? stride[1] : stride[0]) + row_bytes<WT>(a.K));
    if (early) {
        wait_for_previous_kernel();
        allow_next_kernel();
    }
    float *y = reinterpret_cast<float *>(mlxn_rows_ptr(&a.y, p));
    if (!routed) { // a pair left out of the routing: a row of zeros
        if (threadIdx.x < rows)
            y[n_block + threadIdx.x] = 0.f;
        return;
    }
    const char *xr = pair_x(a, p);
    float acc[DEC_ROWS], accu[DEC_ROWS];
#pragma unroll
    for (int st = 0; st < DEC_ROWS; st++)
        acc[st] = accu[st] = 0.f;
    for (int64_t k0 = 0; k0 < a.K; k0 += kt) {
        const int klen = (int)(a.K - k0 < kt ? a.K - k0 : kt), units = klen / 32, tb = (int)row_bytes<WT>(klen);
        const int64_t kb = row_bytes<WT>(k0);
        __syncthreads(); // the last tile is consumed
#pragma unroll
        for (int m = 0; m < NM; m++) // the weights' copies first: x's loads wait under them
            for (int r = warp; r < rows; r += DEC_WARPS)
                copy_row(ws + (m * brows + r) * pitch, w[m] + r * stride[m] + kb, tb, lane, piece);
        cp_async_commit();
        for (int i = threadIdx.x; i < klen; i += blockDim.x)
            xs[(i >> 5) * PAD + (i & 31)] = load_any(a.x_dtype, xr, k0 + i);
        cp_async_wait<0>();
        __syncthreads();
        for (int c = sl; c < units; c += lpr) {
            float xv[32];
            const float4 *x4 = reinterpret_cast<const float4 *>(xs + c * PAD);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                const float4 t = x4[i];
                xv[4 * i] = t.x, xv[4 * i + 1] = t.y, xv[4 * i + 2] = t.z, xv[4 * i + 3] = t.w;
            }
            const xint xi = make_xint<WT>(xv);
            const uint32_t po = piece_offset<WT>(c); // the tile starts a super-block: c is its piece
#pragma unroll
            for (int st = 0; st < DEC_ROWS; st++) {
                const int j = st * rps + lane / lpr, r = warp * rpw + j;
                if (j < rpw && r < rows) {
                    acc[st] += piece_dot<WT>(ws, (uint32_t)(r * pitch) + po, c, xi);
                    if constexpr (SWIGLU)
                        accu[st] += piece_dot<WT>(ws, (uint32_t)((brows + r) * pitch) + po, c, xi);
                }
            }
        }
    }
#pragma unroll
    for (int st = 0; st < DEC_ROWS; st++) {
        if (st * rps >= rpw)
            break;
        for (int o = lpr / 2; o > 0; o >>= 1) {
            acc[st] += __shfl_xor_sync(0xffffffffu, acc[st], o);
            if constexpr (SWIGLU)
                accu[st] += __shfl_xor_sync(0xffffffffu, accu[st], o);
        }
        const int j = st * rps + lane / lpr, r = warp * rpw + j;
        if (sl == 0 && j < rpw && r < rows)
            y[n_block + r] = SWIGLU ? silu(acc[st]) * accu[st] : acc[st];
    }
}

// grid: (ceil(N / (DEC_WARPS 32 / lpr)), pairs): a warp owns a row per slot of lpr lanes (one
// pass: the rows' loads all go out together, and the grid has more blocks to spread the bytes
// over the SMs); dynamic shared memory: x by groups (GE + 4 floats each), then for
// subnormal_group the sums of x per 32 elements (K / 32 floats) and the E per 128 (K / 128 ints)
template <int WT, int G, bool SWIGLU>
__global__ void __launch_bounds__(32 * DEC_WARPS) qid_rows_wide(const mlxn_qmatmul_id_args a, int lpr)
{
    constexpr int BE = block_elems_of<WT>(), BB = block_bytes_of<WT>(), GE = G * BE, GP = GE + 4;
    constexpr bool SUB = subnormal_group<WT, G>();
    extern __shared__ __align__(16) float xg[];
    // ids_early (ops.c): the previous kernel does not write ids, so the expert and the first
    // weights come before the wait (the Qwen3.6 down projection 4.7 -> 3.4 us in a graph of
    // them: bench/NOTES.md); x and y only after it
    const bool early = a.ids_early;
    if (!early) {
        wait_for_previous_kernel();
        allow_next_kernel();
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, groups = (int)(a.K / GE);
    const int slot = lane / lpr, sl = lane % lpr, rw = 32 / lpr;
    const int64_t p = blockIdx.y, n_block = (int64_t)blockIdx.x * DEC_WARPS * rw;
    const int32_t e = pair_expert(a, p);
    if (e < 0 || e >= a.E) { // a pair left out of the routing: a row of zeros
        if (early) {
            wait_for_previous_kernel();
            allow_next_kernel();
        }
        float *y = reinterpret_cast<float *>(mlxn_rows_ptr(&a.y, p));
        for (int i = threadIdx.x; i < DEC_WARPS * rw && n_block + i < a.N; i += blockDim.x)
            y[n_block + i] = 0.f;
        return;
    }
    const uint8_t *wg = a.w + e * a.w_expert_stride, *wu = SWIGLU ? a.w_up + e * a.up_expert_stride : nullptr;
    const int64_t n = n_block + warp * rw + slot;
    const bool on = n < a.N;
    // The lane's first group is loaded before x is staged (and before any other address
    // arithmetic), so its latency overlaps the staging's (Q4_K down 11.6 -> 9.7 us); with
    // SwiGLU the gate's, and the up's too for groups up to 96 bytes (held across the staging,
    // both spilled Q5_K's 176-byte groups; neither goes early above 144).
    constexpr int GB = wide_raw<WT, G>::GB;
    constexpr bool EARLY = !SWIGLU || GB <= 144, EARLY_UP = SWIGLU && GB <= 96;
    wide_raw<WT, G> first, first_up;
    if (EARLY && on && sl < groups)
        first.load(wg + n * a.w_stride, sl);
    if (EARLY_UP && on && sl < groups)
        first_up.load(wu + n * a.up_stride, sl);
    if (early) {
        wait_for_previous_kernel();
        allow_next_kernel();
    }
    const char *xr = pair_x(a, p);
    float *const xsum = xg + groups * GP;
    int *const xexp = reinterpret_cast<int *>(xsum + a.K / 32);
    if constexpr (SUB) {
        stage_x_subnormal<WT, GE, GP>(a, xr, xg, xsum, xexp);
    } else {
        const float *xf = reinterpret_cast<const float *>(xr);
        if (a.x_dtype == MLXN_DTYPE_F32 && (reinterpret_cast<uintptr_t>(xf) & 15) == 0) {
            for (int i = 4 * threadIdx.x; i < (int)a.K; i += 4 * blockDim.x) // GE is a multiple of 32
                *reinterpret_cast<float4 *>(xg + (i / GE) * GP + i % GE) = *reinterpret_cast<const float4 *>(xf + i);
        } else {
            for (int i = threadIdx.x; i < (int)a.K; i += blockDim.x)
                xg[(i / GE) * GP + i % GE] = load_any(a.x_dtype, xr, i);
        }
    }
    __syncthreads();
    float acc = 0.f, accu = 0.f;
    for (int g = sl; on && g < groups; g += lpr) {
        wide_raw<WT, G> raw = first, rawu = first_up;
        if (!EARLY || g != sl)
            raw.load(wg + n * a.w_stride, g);
        if (SWIGLU && (!EARLY_UP || g != sl))
            rawu.load(wu + n * a.up_stride, g);
        if constexpr (SUB && SWIGLU && WT == MLXN_DTYPE_Q4_K) {
            // gate and up in one pass over x: two dots spilled 392 bytes; Q4_0's lost 2% that
            // way (E128 10.9 -> 11.2 us), so the others keep two
            const wide_raw<WT, G> both[2] = {raw, rawu};
            float r[2];
            group_dot_subnormal<WT, G, GP, 2>(both, xg, xsum, xexp, g, r);
            acc += r[0];
            accu += r[1];
        } else if constexpr (SUB) {
            const wide_raw<WT, G> gate[1] = {raw}, up[1] = {rawu};
            float r[1];
            group_dot_subnormal<WT, G, GP, 1>(gate, xg, xsum, xexp, g, r);
            acc += r[0];
            if constexpr (SWIGLU) {
                group_dot_subnormal<WT, G, GP, 1>(up, xg, xsum, xexp, g, r);
                accu += r[0];
            }
        } else {
#pragma unroll
            for (int e0 = 0; e0 < GE; e0 += 32) {
                float v[32];
                mlxn_ggml_unit(WT, raw.b + (e0 / BE) * BB, (e0 % BE) / 32, v);
                acc += unit_dot(v, xg + g * GP + e0);
                if constexpr (SWIGLU) {
                    mlxn_ggml_unit(WT, rawu.b + (e0 / BE) * BB, (e0 % BE) / 32, v);
                    accu += unit_dot(v, xg + g * GP + e0);
                }
            }
        }
    }
    for (int o = lpr / 2; o > 0; o >>= 1) {
        acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if constexpr (SWIGLU)
            accu += __shfl_xor_sync(0xffffffffu, accu, o);
    }
    if (on && sl == 0)
        reinterpret_cast<float *>(mlxn_rows_ptr(&a.y, p))[n] = SWIGLU ? silu(acc) * accu : acc;
}

// ---- prefill: grouped tiles on tensor cores
//
// First the routed pairs' rows of x, in the map's order, rounded to bf16 into the scratch
// (qid_gather_x: rows of KP = K rounded up to 64 elements, zeros past K), so that a tile's x is
// 64 consecutive rows. Then a block of 4 warps owns a 64 x 64 tile of (pairs of one expert) x
// (rows of W); warp (wm, wn) = (warp / 2, warp % 2) the 32 x 32 quarter at (32 wm, 32 wn): 2 x 4
// mma tiles of 16 x 8. Per K step of 64, in shared memory, bf16 rows padded from 64 to 72
// elements (144 bytes: the 8 rows x 4 words of a fragment load fall in 32 different banks):
//   xs [2][64 pairs][72]     x of the tile's pairs (zeros past the expert's list), cp.async one
//                            step ahead of the products
//   ws [1 or 2][64 rows][72] the W tile (gate and up for SwiGLU), decoded by 128 threads, one
//                            32-element unit each, from the raw rows
//   raw [1 or 2][64 rows][PITCH] W's bytes of a raw step of R elements (a super-block or 8 blocks
//                            a row; 64 elements of plain weights), copied by cp.async in 16-byte
//                            (or 4-byte) pieces aligned outward, during the last step's products
// Decoding straight from global memory instead (a row a thread, 1-2 byte loads) kept the L1 92%
// busy on 3 useful bytes of 32 a sector.
constexpr int BM = 64, BN = 64, BK = 64, LDS = BK + 8, MMA_THREADS = 128;

__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2])
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// 32 floats rounded to bf16 and stored at dst (16-byte aligned) with four 16-byte stores
__device__ __forceinline__ void store_bf16x32(__nv_bfloat16 *dst, const float (&v)[32])
{
#pragma unroll
    for (int q = 0; q < 4; q++) {
        __nv_bfloat162 h[4];
#pragma unroll
        for (int j = 0; j < 4; j++)
            h[j] = __floats2bfloat162_rn(v[8 * q + 2 * j], v[8 * q + 2 * j + 1]);
        reinterpret_cast<uint4 *>(dst)[q] = *reinterpret_cast<const uint4 *>(h);
    }
}

// Elements of W a raw step: 256 (a K super-block, or 8 blocks) for GGML formats, 64 for
// plain weights (whole blocks either way: row_bytes applies); the row pitch in shared memory:
// 16-byte pieces aligned outward from a step that starts inside one add up to 14 bytes.
template <int WT> constexpr int raw_elems() { return plain_weight(WT) ? 64 : 256; }
template <int WT> constexpr int raw_pitch()
{
    constexpr int rb = (int)row_bytes<WT>(raw_elems<WT>());
    return (rb + (rb % 16 ? 14 : 0) + 15) / 16 * 16;
}

// Bytes [off, off + rb) of `rows` rows of W (stride bytes apart, rows aligned to cw) into the
// raw rows, in cw-byte pieces aligned outward (cp.async for 16 and 4; plain 2-byte copies
// otherwise); returns where the bytes start in a raw row.
template <int PITCH>
__device__ __forceinline__ int copy_raw(uint8_t *dst, const uint8_t *w, int64_t stride, int rows, int64_t off, int rb,
                                        int cw)
{
    const int64_t a0 = off & ~(int64_t)(cw - 1), a1 = (off + rb + cw - 1) & ~(int64_t)(cw - 1);
    const int per_row = (int)(a1 - a0) / cw, total = rows * per_row;
    for (int i = threadIdx.x; i < total; i += MMA_THREADS) {
        const int r = i / per_row, c = (i - r * per_row) * cw;
        const uint8_t *sp = w + r * stride + a0 + c;
        uint8_t *dp = dst + r * PITCH + c;
        if (cw == 16)
            cp_async16(smem_addr(dp), sp, 16);
        else if (cw == 4)
            cp_async4(smem_addr(dp), sp);
        else
            *reinterpret_cast<uint16_t *>(dp) = *reinterpret_cast<const uint16_t *>(sp);
    }
    return (int)(off - a0);
}

// The 32 weights from element kl of a raw step of kr elements (zeros from kr on).
template <int WT> __device__ __forceinline__ void raw_unit(const uint8_t *row, int kl, int kr, float (&v)[32])
{
    if constexpr (plain_weight(WT)) {
#pragma unroll
        for (int j = 0; j < 32; j++)
            v[j] = kl + j < kr ? load_any(WT, row, kl + j) : 0.f;
    } else if (kl < kr) { // a GGML unit lies inside K or past it
        constexpr int be = block_elems_of<WT>();
        block_unit<WT>(row + kl / be * block_bytes_of<WT>(), kl % be / 32, v);
    } else {
#pragma unroll
        for (int j = 0; j < 32; j++)
            v[j] = 0.f;
    }
}

// The routing tables in the op's scratch (see mlxn_cuda_qmatmul_id_scratch_bytes).
struct qid_map {
    const int32_t *offsets;     // [E + 1]
    const int32_t *rows;        // [P]: pairs grouped by expert
    const int32_t *tile_off;    // [E + 1]: expert e's tiles are tile_off[e] .. tile_off[e + 1] - 1
    const int32_t *tile_expert; // [tile_off[E]]
    int64_t max_tiles;          // the grid's worst case
};

// x of the routed pairs (map order) into xg as bf16 rows of KP elements, zeros past K; a
// thread 8 elements (one 16-byte store) at a time.
__global__ void __launch_bounds__(256) qid_gather_x(const mlxn_qmatmul_id_args a, const int32_t *offsets,
                                                    const int32_t *rows, __nv_bfloat16 *xg, int64_t KP)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    const int64_t per_row = KP / 8, n = (int64_t)offsets[a.E] * per_row;
    for (int64_t i = (int64_t)blockIdx.x * 256 + threadIdx.x; i < n; i += (int64_t)gridDim.x * 256) {
        const int64_t slot = i / per_row, k = (i - slot * per_row) * 8;
        const char *xr = pair_x(a, rows[slot]);
        const float *xf = reinterpret_cast<const float *>(xr) + k;
        float v[8];
        if (a.x_dtype == MLXN_DTYPE_F32 && k + 8 <= a.K && (reinterpret_cast<uintptr_t>(xf) & 15) == 0) {
            const float4 f0 = reinterpret_cast<const float4 *>(xf)[0], f1 = reinterpret_cast<const float4 *>(xf)[1];
            v[0] = f0.x, v[1] = f0.y, v[2] = f0.z, v[3] = f0.w, v[4] = f1.x, v[5] = f1.y, v[6] = f1.z, v[7] = f1.w;
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++)
                v[j] = k + j < a.K ? load_any(a.x_dtype, xr, k + j) : 0.f;
        }
        __nv_bfloat162 h[4];
#pragma unroll
        for (int j = 0; j < 4; j++)
            h[j] = __floats2bfloat162_rn(v[2 * j], v[2 * j + 1]);
        *reinterpret_cast<uint4 *>(xg + slot * KP + k) = *reinterpret_cast<const uint4 *>(h);
    }
}

// grid: (ceil(N / BN), min(max_tiles, 65535)); blocks walk the tile indices by gridDim.y.
// Dynamic shared memory: xs, then the raw rows; cw: the raw copies' piece (16, 4 or 2 bytes).
template <int WT, bool SWIGLU>
__global__ void __launch_bounds__(MMA_THREADS) qid_mma(const mlxn_qmatmul_id_args a, const qid_map map,
                                                       const __nv_bfloat16 *xg, int64_t KP, int cw)
{
    constexpr int NW = SWIGLU ? 2 : 1, R = raw_elems<WT>(), PITCH = raw_pitch<WT>(), SUB = R / BK;
    extern __shared__ __align__(16) uint8_t smem[];
    auto xs = reinterpret_cast<__nv_bfloat16(*)[BM][LDS]>(smem);  // [2][BM][LDS]
    uint8_t *const raw = smem + 2 * BM * LDS * sizeof(__nv_bfloat16); // [NW][BN][PITCH]
    __shared__ __align__(16) __nv_bfloat16 ws[NW][BN][LDS];
    __shared__ float *yrow[BM]; // nullptr past the expert's list
    __shared__ int tile_e, tile_m0, tile_rows;
    wait_for_previous_kernel();
    allow_next_kernel();
    const int t = threadIdx.x, warp = t >> 5, lane = t & 31, g = lane >> 2, q = lane & 3;
    const int wm = warp >> 1, wn = warp & 1;
    const int64_t n0 = (int64_t)blockIdx.x * BN;
    const int rows_w = (int)(a.N - n0 < BN ? a.N - n0 : BN);
    const int J = (int)((a.K + BK - 1) / BK); // K steps
    for (int64_t tile = blockIdx.y; tile < map.max_tiles; tile += gridDim.y) {
        __syncthreads(); // the previous tile's products and epilogue are done with xs, ws, raw, yrow
        if (t == 0) {
            const int32_t total = map.tile_off[a.E];
            tile_e = -1;
            if (tile < total) {
                const int e = map.tile_expert[tile];
                tile_e = e;
                tile_m0 = map.offsets[e] + (int)(tile - map.tile_off[e]) * BM;
                tile_rows = min(BM, map.offsets[e + 1] - tile_m0);
            }
        }
        __syncthreads();
        const int e = tile_e;
        if (e < 0)
            return; // block-uniform: every later tile index is past the last tile too
        if (t < BM)
            yrow[t] = t < tile_rows ? reinterpret_cast<float *>(mlxn_rows_ptr(&a.y, map.rows[tile_m0 + t])) : nullptr;
        const uint8_t *wbase[NW];
        int64_t wstride[NW];
        wbase[0] = a.w + e * a.w_expert_stride + n0 * a.w_stride;
        wstride[0] = a.w_stride;
        if constexpr (SWIGLU) {
            wbase[NW - 1] = a.w_up + e * a.up_expert_stride + n0 * a.up_stride;
            wstride[NW - 1] = a.up_stride;
        }
        const __nv_bfloat16 *xt = xg + (int64_t)tile_m0 * KP;
        const int m_rows = tile_rows;
        // x of step j into xs[j % 2]: 64 rows x 8 pieces of 16 bytes, 4 a thread
        const auto issue_x = [&](int j) {
#pragma unroll
            for (int i = 0; i < BM * 8 / MMA_THREADS; i++) {
                const int idx = t + MMA_THREADS * i, r = idx >> 3, c = 8 * (idx & 7);
                const bool in = r < m_rows;
                cp_async16(smem_addr(&xs[j & 1][r][c]), in ? xt + r * KP + (int64_t)j * BK + c : xg, in ? 16 : 0);
            }
        };
        // elements of raw step s (R, fewer in the last)
        const auto step_elems = [&](int s) { return (int)(a.K - (int64_t)s * R < R ? a.K - (int64_t)s * R : R); };
        int shift[NW];
        const auto issue_raw = [&](int s) {
#pragma unroll
            for (int h = 0; h < NW; h++)
                shift[h] = copy_raw<PITCH>(raw + h * BN * PITCH, wbase[h], wstride[h], rows_w,
                                           row_bytes<WT>((int64_t)s * R), (int)row_bytes<WT>(step_elems(s)), cw);
        };

        float acc[NW][2][4][4];
#pragma unroll
        for (int h = 0; h < NW; h++)
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
#pragma unroll
                    for (int c = 0; c < 4; c++)
                        acc[h][i][j][c] = 0.f;

        issue_raw(0);
        issue_x(0);
        cp_async_commit();
        for (int j = 0; j < J; j++) {
            cp_async_wait<0>();
            __syncthreads(); // xs[j % 2] and the raw rows of this step are in; step j - 1's products are done
            if (j + 1 < J)
                issue_x(j + 1);
            cp_async_commit();
            { // this thread's unit of each W tile: row t / 2, half t % 2 of the K step
                const int r = t >> 1, s = j / SUB, kr = step_elems(s);
                const int kl = (j - s * SUB) * BK + 32 * (t & 1);
                float v[32];
#pragma unroll
                for (int h = 0; h < NW; h++) {
                    raw_unit<WT>(raw + (h * BN + r) * PITCH + shift[h], r < rows_w ? kl : kr, kr, v);
                    store_bf16x32(&ws[h][r][32 * (t & 1)], v);
                }
            }
            __syncthreads(); // ws is complete; the raw rows are read
            if ((j + 1) % SUB == 0 && j + 1 < J) {
                issue_raw((j + 1) / SUB);
                cp_async_commit();
            }
#pragma unroll
            for (int kk = 0; kk < BK; kk += 16) {
                uint32_t af[2][4];
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    const int r = 32 * wm + 16 * i + g;
                    af[i][0] = *reinterpret_cast<const uint32_t *>(&xs[j & 1][r][kk + 2 * q]);
                    af[i][1] = *reinterpret_cast<const uint32_t *>(&xs[j & 1][r + 8][kk + 2 * q]);
                    af[i][2] = *reinterpret_cast<const uint32_t *>(&xs[j & 1][r][kk + 2 * q + 8]);
                    af[i][3] = *reinterpret_cast<const uint32_t *>(&xs[j & 1][r + 8][kk + 2 * q + 8]);
                }
#pragma unroll
                for (int h = 0; h < NW; h++)
#pragma unroll
                    for (int jj = 0; jj < 4; jj++) {
                        const int c = 32 * wn + 8 * jj + g;
                        const uint32_t bf[2] = {*reinterpret_cast<const uint32_t *>(&ws[h][c][kk + 2 * q]),
                                                *reinterpret_cast<const uint32_t *>(&ws[h][c][kk + 2 * q + 8])};
#pragma unroll
                        for (int i = 0; i < 2; i++)
                            mma_bf16(acc[h][i][jj], af[i], bf);
                    }
            }
        }
        // epilogue: accumulator c of mma tile (i, j) is row 16 i + g (+ 8 for c >= 2), column
        // 8 j + 2 q + c % 2 of the warp's quarter
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int hi = 0; hi < 2; hi++) {
                float *yr = yrow[32 * wm + 16 * i + 8 * hi + g];
                if (!yr)
                    continue;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int64_t n = n0 + 32 * wn + 8 * j + 2 * q;
                    float o[2];
#pragma unroll
                    for (int c = 0; c < 2; c++) {
                        const float v = acc[0][i][j][2 * hi + c];
                        o[c] = SWIGLU ? silu(v) * acc[NW - 1][i][j][2 * hi + c] : v;
                    }
                    if (n + 1 < a.N && (reinterpret_cast<uintptr_t>(yr + n) & 7) == 0) {
                        *reinterpret_cast<float2 *>(yr + n) = make_float2(o[0], o[1]);
                    } else {
#pragma unroll
                        for (int c = 0; c < 2; c++)
                            if (n + c < a.N)
                                yr[n + c] = o[c];
                    }
                }
            }
    }
}

// Rows of zeros for the pairs left out of the routing map (ids outside [0, E)).
__global__ void __launch_bounds__(128) qid_zero_unrouted(const mlxn_qmatmul_id_args a)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    for (int64_t p = blockIdx.x; p < a.T * a.k; p += gridDim.x) {
        const int32_t e = pair_expert(a, p);
        if (e >= 0 && e < a.E)
            continue;
        float *y = reinterpret_cast<float *>(mlxn_rows_ptr(&a.y, p));
        for (int64_t n = threadIdx.x; n < a.N; n += blockDim.x)
            y[n] = 0.f;
    }
}

// ---- scratch layout and launch

constexpr size_t align256(size_t b) { return (b + 255) / 256 * 256; }

struct scratch_plan {
    size_t counts, offsets, tile_off, tile_expert, rows, xg, bytes;
    int64_t max_tiles, KP; // KP: the elements of a row of xg
};

scratch_plan plan_scratch(const mlxn_qmatmul_id_args &a)
{
    scratch_plan s;
    const int64_t P = a.T * a.k;
    s.max_tiles = (P + BM - 1) / BM + (a.E < P ? a.E : P);
    s.counts = 0;
    s.offsets = s.counts + align256(sizeof(int32_t) * (size_t)a.E);
    s.tile_off = s.offsets + align256(sizeof(int32_t) * (size_t)(a.E + 1));
    s.tile_expert = s.tile_off + align256(sizeof(int32_t) * (size_t)(a.E + 1));
    s.rows = s.tile_expert + align256(sizeof(int32_t) * (size_t)s.max_tiles);
    s.xg = s.rows + align256(sizeof(int32_t) * (size_t)P);
    s.KP = (a.K + BK - 1) / BK * BK;
    s.bytes = s.xg + align256(sizeof(__nv_bfloat16) * (size_t)P * (size_t)s.KP);
    return s;
}

// Whether groups of G blocks suit the call: K whole groups, x's groups (and block sums) within 48 KB of shared
// memory, W (and the up weights) aligned to the loads at every expert and row.
template <int WT, int G> bool wide_fits_id(const mlxn_qmatmul_id_args &a)
{
    constexpr int GE = G * block_elems_of<WT>(), LB = wide_lb<WT, G>();
    const auto al = [](const void *p, int64_t row, int64_t expert) {
        return (uintptr_t)p % LB == 0 && row % LB == 0 && expert % LB == 0;
    };
    const int64_t smem = (a.K / GE * (GE + 4) + (subnormal_group<WT, G>() ? a.K / 32 + a.K / XSPAN : 0)) * 4;
    return a.K % GE == 0 && smem <= 48 * 1024 && al(a.w, a.w_stride, a.w_expert_stride) &&
           (!a.w_up || al(a.w_up, a.up_stride, a.up_expert_stride));
}

template <int WT, int G, bool SWIGLU>
cudaError_t launch_decode_wide(const mlxn_qmatmul_id_args &a, cudaStream_t s, bool pdl)
{
    constexpr int GE = G * block_elems_of<WT>();
    const int64_t groups = a.K / GE;
    const int lpr = wide_lanes(groups), block_rows = DEC_WARPS * 32 / lpr;
    const dim3 grid((unsigned)((a.N + block_rows - 1) / block_rows), (unsigned)(a.T * a.k));
    const size_t smem = ((size_t)groups * (GE + 4) + (subnormal_group<WT, G>() ? (size_t)(a.K / 32 + a.K / XSPAN) : 0)) * 4;
    return launch(qid_rows_wide<WT, G, SWIGLU>, grid, dim3(32 * DEC_WARPS), smem, s, pdl, a, lpr);
}

// The OR of what a copy of W's rows starts from: addresses, row and expert strides, a row's
// bytes (and W_up's); a power of two dividing it divides every row's start and length.
template <int WT> uint64_t weight_bits(const mlxn_qmatmul_id_args &a)
{
    uint64_t bits = (uint64_t)(uintptr_t)a.w | (uint64_t)a.w_stride | (uint64_t)a.w_expert_stride |
                    (uint64_t)row_bytes<WT>(a.K);
    if (a.w_up)
        bits |= (uint64_t)(uintptr_t)a.w_up | (uint64_t)a.up_stride | (uint64_t)a.up_expert_stride;
    return bits;
}

// qid_rows_staged where it applies (K a multiple of 256, rows 2-byte aligned, a tile of 256 fits
// the device's shared memory a block): true, its launch's error in *e; else false.
template <int WT, bool SWIGLU> bool launch_staged(const mlxn_qmatmul_id_args &a, cudaStream_t s, bool pdl, cudaError_t *e)
{
    if (a.K % 256 != 0)
        return false;
    // 16 rows a block where 32 would give fewer than 256 blocks (two an SM of an H100 or H200), so
    // that one block's copy overlaps another's products
    const int brows =
        (a.N + DEC_BLOCK_ROWS - 1) / DEC_BLOCK_ROWS * a.T * a.k < 256 ? DEC_BLOCK_ROWS / 2 : DEC_BLOCK_ROWS;
    // the tile: the most super-blocks that fit the budget (each row's pitch rounds up by at most
    // 16 bytes)
    size_t budget = 0;
    if ((*e = staged_budget<SWIGLU>(budget)) != cudaSuccess)
        return true;
    const size_t per256 = staged_smem<WT, SWIGLU>(brows, 256), pad = (size_t)(SWIGLU ? 2 : 1) * brows * 16;
    int64_t kt = budget > pad ? 256 * (int64_t)((budget - pad) / per256) : 0;
    kt = kt < a.K ? kt : a.K;
    if (kt < 256)
        return false;
    // lpr: a power of two (8..32) dividing the units of every tile; piece: the widest load that
    // divides the rows' addresses and every tile's bytes
    const int64_t uf = kt / 32, ul = (a.K % kt ? a.K % kt : kt) / 32;
    int lpr = 32;
    while (uf % lpr || ul % lpr)
        lpr /= 2;
    const uint64_t bits = weight_bits<WT>(a) | (uint64_t)row_bytes<WT>(kt) | (uint64_t)row_bytes<WT>(ul * 32);
    if (bits % 2 != 0)
        return false;
    const int piece = bits % 16 == 0 ? 16 : bits % 8 == 0 ? 8 : bits % 4 == 0 ? 4 : 2;
    static unsigned long long smem_set = 0;
    if ((*e = allow_smem(qid_rows_staged<WT, SWIGLU>, budget, smem_set)) != cudaSuccess)
        return true;
    const dim3 grid((unsigned)((a.N + brows - 1) / brows), (unsigned)(a.T * a.k));
    *e = launch(qid_rows_staged<WT, SWIGLU>, grid, dim3(32 * DEC_WARPS), staged_smem<WT, SWIGLU>(brows, kt), s, pdl, a,
                lpr, piece, brows, (int)kt);
    return true;
}

// Where the formats with a wide-load plan decode faster staged, with piece dots, than wide
// (H200, Qwen3.6's experts at one token, % of copy, wide -> staged: bench/NOTES.md, qmatmul_id
// session 32). Both ways for Q5_K (SwiGLU 21.1 -> 26.9, down 11.6 -> 21.1), IQ4_XS (14.3 -> 21.7,
// 7.5 -> 16.5) and IQ4_NL (13.9 -> 22.6, 15.8 -> 17.5); SwiGLU only for Q4_1 (22.2 -> 27.6; down
// 24.2 -> 21.4), Q5_0 (21.5 -> 27.4; 25.4 -> 21.6) and Q5_1 (21.6 -> 29.7; 25.2 -> 23.9); the down
// projection only for Q2_K (9.5 -> 10.7; SwiGLU 14.1 -> 10.9). Q4_0, Q8_0 and Q4_K stay wide
// (subnormal fields).
constexpr bool staged_over_wide(int wt, bool swiglu)
{
    return wt == MLXN_DTYPE_Q5_K || wt == MLXN_DTYPE_IQ4_XS || wt == MLXN_DTYPE_IQ4_NL ||
           (swiglu && (wt == MLXN_DTYPE_Q4_1 || wt == MLXN_DTYPE_Q5_0 || wt == MLXN_DTYPE_Q5_1)) ||
           (!swiglu && wt == MLXN_DTYPE_Q2_K);
}

// The first that applies: the staged decode where it beats the wide loads, the wide loads, the
// staged decode, the row kernel.
template <int WT, bool SWIGLU> cudaError_t launch_decode(const mlxn_qmatmul_id_args &a, cudaStream_t s, bool pdl)
{
    cudaError_t e = cudaSuccess;
    constexpr bool first = staged_over_wide(WT, SWIGLU);
    if constexpr (first)
        if (launch_staged<WT, SWIGLU>(a, s, pdl, &e))
            return e;
    if constexpr (wide_plan<WT>::G > 0) {
        constexpr int G = wide_plan<WT>::G;
        if (wide_fits_id<WT, G>(a))
            return launch_decode_wide<WT, G, SWIGLU>(a, s, pdl);
        if constexpr (G == 4)
            if (wide_fits_id<WT, 2>(a))
                return launch_decode_wide<WT, 2, SWIGLU>(a, s, pdl);
    }
    if constexpr (!first && !plain_weight(WT))
        if (launch_staged<WT, SWIGLU>(a, s, pdl, &e))
            return e;
    const dim3 grid((unsigned)((a.N + DEC_BLOCK_ROWS - 1) / DEC_BLOCK_ROWS), (unsigned)(a.T * a.k));
    return launch(qid_rows<WT, SWIGLU>, grid, dim3(32 * DEC_WARPS), 0, s, pdl, a);
}

// The raw copies' piece: 16 or 4 bytes where the weights' rows (addresses, row and expert
// strides, a row's bytes) are aligned to it, else 2.
template <int WT> int raw_copy_width(const mlxn_qmatmul_id_args &a)
{
    const uint64_t bits = weight_bits<WT>(a);
    return bits % 16 == 0 ? 16 : bits % 4 == 0 ? 4 : 2;
}

template <int WT, bool SWIGLU>
cudaError_t launch_prefill(const mlxn_qmatmul_id_args &a, char *scratch, cudaStream_t s, bool pdl)
{
    const scratch_plan sp = plan_scratch(a);
    int32_t *counts = reinterpret_cast<int32_t *>(scratch + sp.counts);
    int32_t *offsets = reinterpret_cast<int32_t *>(scratch + sp.offsets);
    int32_t *tile_off = reinterpret_cast<int32_t *>(scratch + sp.tile_off);
    int32_t *tile_expert = reinterpret_cast<int32_t *>(scratch + sp.tile_expert);
    int32_t *rows = reinterpret_cast<int32_t *>(scratch + sp.rows);
    cudaError_t e = mlxn_cuda_route_map_build(&a.ids, a.T, a.k, (int)a.E, counts, offsets, rows, BM, tile_off,
                                              tile_expert, s, pdl);
    if (e != cudaSuccess)
        return e;
    const int64_t P = a.T * a.k;
    e = launch(qid_zero_unrouted, dim3((unsigned)(P < 4096 ? P : 4096)), dim3(128), 0, s, pdl, a);
    if (e != cudaSuccess)
        return e;
    __nv_bfloat16 *xg = reinterpret_cast<__nv_bfloat16 *>(scratch + sp.xg);
    const int64_t pieces = P * (sp.KP / 8), gblocks = (pieces + 255) / 256;
    e = launch(qid_gather_x, dim3((unsigned)(gblocks < 8192 ? gblocks : 8192)), dim3(256), 0, s, pdl, a,
               (const int32_t *)offsets, (const int32_t *)rows, xg, sp.KP);
    if (e != cudaSuccess)
        return e;
    const qid_map map = {offsets, rows, tile_off, tile_expert, sp.max_tiles};
    const dim3 grid((unsigned)((a.N + BN - 1) / BN), (unsigned)(sp.max_tiles < 65535 ? sp.max_tiles : 65535));
    const size_t smem = 2 * BM * LDS * sizeof(__nv_bfloat16) + (size_t)(SWIGLU ? 2 : 1) * BN * raw_pitch<WT>();
    static unsigned long long smem_set = 0;
    e = allow_smem(qid_mma<WT, SWIGLU>, smem, smem_set);
    if (e != cudaSuccess)
        return e;
    return launch(qid_mma<WT, SWIGLU>, grid, dim3(MMA_THREADS), smem, s, pdl, a, map, (const __nv_bfloat16 *)xg,
                  sp.KP, raw_copy_width<WT>(a));
}

template <int WT>
cudaError_t launch_type(const mlxn_qmatmul_id_args &a, void *scratch, cudaStream_t s, bool pdl)
{
    const bool decode = a.T * a.k <= MLXN_CUDA_QMATMUL_ID_DECODE_PAIRS;
    if (a.w_up)
        return decode ? launch_decode<WT, true>(a, s, pdl)
                      : launch_prefill<WT, true>(a, static_cast<char *>(scratch), s, pdl);
    return decode ? launch_decode<WT, false>(a, s, pdl)
                  : launch_prefill<WT, false>(a, static_cast<char *>(scratch), s, pdl);
}

} // namespace

extern "C" size_t mlxn_cuda_qmatmul_id_scratch_bytes(const mlxn_qmatmul_id_args *a)
{
    return a->T * a->k <= MLXN_CUDA_QMATMUL_ID_DECODE_PAIRS ? 0 : plan_scratch(*a).bytes;
}

extern "C" cudaError_t mlxn_cuda_launch_qmatmul_id(const mlxn_qmatmul_id_args *a, void *scratch, cudaStream_t s,
                                                   bool pdl)
{
    switch (a->w_dtype) {
#define CASE(t) case t: return launch_type<t>(*a, scratch, s, pdl);
    CASE(MLXN_DTYPE_F32) CASE(MLXN_DTYPE_F16) CASE(MLXN_DTYPE_BF16)
    CASE(MLXN_DTYPE_Q4_0) CASE(MLXN_DTYPE_Q4_1) CASE(MLXN_DTYPE_Q5_0) CASE(MLXN_DTYPE_Q5_1)
    CASE(MLXN_DTYPE_Q8_0) CASE(MLXN_DTYPE_Q2_K) CASE(MLXN_DTYPE_Q3_K) CASE(MLXN_DTYPE_Q4_K)
    CASE(MLXN_DTYPE_Q5_K) CASE(MLXN_DTYPE_Q6_K) CASE(MLXN_DTYPE_IQ4_NL) CASE(MLXN_DTYPE_IQ4_XS)
#undef CASE
    }
    return cudaErrorInvalidValue;
}
