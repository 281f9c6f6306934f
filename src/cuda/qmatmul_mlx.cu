// MLX affine quantized matmul on CUDA: y[M, N] = x[M, K] . dequant(W)^T.
//
// W row n is a bit stream of K codes (code k at bits [k*BITS, (k+1)*BITS)); a chunk of 32
// codes is BITS 32-bit words and always lies inside one group (group size >= 32):
//
//   W row n:  | chunk 0: BITS words | chunk 1 | ... |      scales/biases row n: one per group
//
// Per chunk the kernels add  scale * dot(x[32], codes[32]) + bias * sum(x[32]),  with the
// sums of x per chunk computed once per block in shared memory.
//
// Variants (launcher at the bottom, in order; M = 1 with f16/bf16 scales and K from 4096 goes
// to the GGML formats' streamed kernel first, qmatmul_stream.cu):
//   qmm_mlx_rows   M <= 8 (decode): bound by the bytes of W. Each warp owns ROWS_R rows of W,
//                  each lane whole chunks (16-byte loads for 4- and 8-bit codes); x is staged
//                  in shared memory in K tiles, pre-scaled so that codes need no shift.
//   qmm_mlx_tiles  M > 8 (prefill): 64 x 64 output tiles; each K step of 32 dequantizes a
//                  64 x 32 tile of W into shared memory once and reuses it for 64 rows of x.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include <type_traits>

#include "common.cuh"

namespace {

using namespace mlxn_cuda;

// Code j (0..31) of a chunk held in BITS words; j is a compile-time constant after unrolling,
// so word indices and shifts are too.
template <int BITS> __device__ __forceinline__ uint32_t chunk_code(const uint32_t (&w)[BITS], int j)
{
    const int bit = j * BITS, word = bit >> 5, shift = bit & 31;
    uint32_t v = w[word] >> shift;
    if (shift + BITS > 32)
        v |= w[word + 1] << (32 - shift);
    return v & ((1u << BITS) - 1);
}

// Codes as floats: OR-ing a code into the mantissa of 2^23 makes 2^23 + code exactly; one
// subtraction recovers it (cheaper than an integer-to-float conversion, which runs at a
// quarter of the FMA rate).
__device__ __forceinline__ float code_to_f32(uint32_t c)
{
    return __int_as_float(0x4B000000u | c) - 8388608.0f;
}

template <int BITS, bool VEC16>
__device__ __forceinline__ void load_chunk(const uint8_t *p, uint32_t (&w)[BITS])
{
    if constexpr (VEC16) {
#pragma unroll
        for (int i = 0; i < BITS / 4; i++) {
            uint4 v = reinterpret_cast<const uint4 *>(p)[i];
            w[4 * i] = v.x;
            w[4 * i + 1] = v.y;
            w[4 * i + 2] = v.z;
            w[4 * i + 3] = v.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < BITS; i++)
            w[i] = reinterpret_cast<const uint32_t *>(p)[i];
    }
}

// ---- decode (M <= 8)
//
// 2-, 4- and 8-bit codes never straddle a word, and inside each 16-bit half of a word the code
// at position t is (half & mask << BITS*t) = code * 2^(BITS*t): masked in place, OR-ed into
// 2^23 and one subtraction away from an exact float, with no shift. x is staged in shared memory
// pre-multiplied by 2^(-BITS*t) (exact: a power of two; only |x| < 2^-112 would lose bits to
// subnormals), so the products come out right. 3-, 5- and 6-bit codes are shifted out
// (chunk_code) and x is staged as is.
template <int BITS> constexpr bool in_place_codes = BITS == 2 || BITS == 4 || BITS == 8;

// 2^(-BITS*t) for the code at chunk offset k (k mod 16/BITS = t), or 1.
template <int BITS> __device__ __forceinline__ float x_prescale(int k)
{
    if constexpr (in_place_codes<BITS>)
        return __int_as_float((127 - BITS * (k % (16 / BITS))) << 23);
    else
        return 1.f;
}

// (a & b) | c in one LOP3: written in C, the two constants become two instructions (LOP3
// takes one immediate).
__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t b, uint32_t c)
{
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

// Code j (compile-time) of a chunk, as a float: code * 2^(BITS*t) for in-place codes, else code.
template <int BITS> __device__ __forceinline__ float chunk_value(const uint32_t (&w)[BITS], int j)
{
    if constexpr (in_place_codes<BITS>) {
        constexpr int per_word = 32 / BITS, per_half = 16 / BITS;
        const uint32_t word = w[j / per_word];
        const int jw = j % per_word, t = jw % per_half;
        const uint32_t half = jw / per_half ? word >> 16 : word;
        const uint32_t mask = ((1u << BITS) - 1) << (BITS * t);
        return __int_as_float(and_or(half, mask, 0x4B000000u)) - 8388608.0f;
    } else {
        return code_to_f32(chunk_code<BITS>(w, j));
    }
}

// Scales and biases are loaded as raw bits and converted where used, so that the loads of a
// chunk stay in flight together (a conversion next to its load would wait for it).
__device__ __forceinline__ float raw_to_f32(uint32_t v, int dt)
{
    if (dt == MLXN_DTYPE_F16)
        return __half2float(__ushort_as_half((unsigned short)v));
    if (dt == MLXN_DTYPE_BF16)
        return __uint_as_float(v << 16);
    return __uint_as_float(v);
}

constexpr int ROWS_WARPS = 8;  // warps per block
constexpr int ROWS_MAX_M = 8;
constexpr int CHUNK_PAD = 36;  // floats per 32-float chunk of x in shared memory
constexpr int STAGE_BATCH = 8; // float4 loads in flight per thread while staging x

// Stages x[0..MT)[k0, k0 + klen) into shared memory: xs [MT][tile_chunks][CHUNK_PAD] (pre-scaled,
// zeros for rows m >= M) and the chunk sums of the unscaled x in xsum [MT][tile_chunks].
// Four consecutive k per thread, eight threads per chunk (their partial sums meet by shuffles).
template <int BITS, int MT>
__device__ __forceinline__ void stage_x(const mlxn_qmatmul_mlx_args &a, int64_t k0, int klen,
                                        int tile_chunks, float *xs, float *xsum)
{
    const int nvec = klen / 4; // a multiple of 8: klen is one of 32
    const bool vec = a.x_dtype == MLXN_DTYPE_F32 && ((uintptr_t)a.x.base & 15) == 0 &&
                     (a.M == 1 || (a.x.s0 % 16 == 0 && a.x.s1 % 16 == 0 && a.x.s2 % 16 == 0));
#pragma unroll 1
    for (int m = 0; m < MT; m++) {
        const char *row = m < a.M ? mlxn_rows_ptr(&a.x, m) : nullptr;
        for (int base = 0; base < nvec; base += STAGE_BATCH * blockDim.x) {
            float4 v[STAGE_BATCH];
#pragma unroll
            for (int b = 0; b < STAGE_BATCH; b++) {
                const int k = (base + b * blockDim.x + threadIdx.x) * 4;
                v[b] = make_float4(0.f, 0.f, 0.f, 0.f);
                if (k < klen && row) {
                    if (vec) {
                        v[b] = *reinterpret_cast<const float4 *>(row + (k0 + k) * 4);
                    } else {
                        v[b].x = load_any(a.x_dtype, row, k0 + k);
                        v[b].y = load_any(a.x_dtype, row, k0 + k + 1);
                        v[b].z = load_any(a.x_dtype, row, k0 + k + 2);
                        v[b].w = load_any(a.x_dtype, row, k0 + k + 3);
                    }
                }
            }
#pragma unroll
            for (int b = 0; b < STAGE_BATCH; b++) {
                const int k = (base + b * blockDim.x + threadIdx.x) * 4, c = k / 32, j = k % 32;
                float sum = (v[b].x + v[b].y) + (v[b].z + v[b].w);
                sum += __shfl_xor_sync(0xffffffffu, sum, 1);
                sum += __shfl_xor_sync(0xffffffffu, sum, 2);
                sum += __shfl_xor_sync(0xffffffffu, sum, 4);
                if (k < klen) {
                    const float4 p = make_float4(v[b].x * x_prescale<BITS>(j), v[b].y * x_prescale<BITS>(j + 1),
                                                 v[b].z * x_prescale<BITS>(j + 2), v[b].w * x_prescale<BITS>(j + 3));
                    *reinterpret_cast<float4 *>(xs + (m * tile_chunks + c) * CHUNK_PAD + j) = p;
                    if (j == 0)
                        xsum[m * tile_chunks + c] = sum;
                }
            }
        }
    }
}

// Chunk rounds per item of the decode kernel: two while a chunk is at most 4 words and x has at
// most 4 rows (more spill).
template <int BITS, int MT> constexpr int rows_u = BITS <= 4 && MT <= 4 ? 2 : 1;

// The loads of one item: U chunks of R rows, codes and raw scale and bias bits.
template <int BITS, int R, int U> struct item_loads {
    uint32_t w[U][R][BITS], s[U][R], b[U][R];
};

// Decode: y[m, n] for m < M <= MT. A warp owns R rows of W (a row set); a lane owns whole
// 32-code chunks (c = lane, lane + 32, ...): one 16-byte load per row for 4-bit codes. Each
// float4 of x read from shared memory serves the R rows. x chunks are padded to 36 floats so
// that the lanes' float4 reads, one chunk apart, fall in different banks.
// A warp's work is a list of items (row set, U chunk rounds); the loads of the next item are
// issued before the current one is computed, so that every warp keeps loads in flight (the
// first item's before x is staged). Loads are never skipped (past the end they read the last
// chunk again, unused), and two buffers alternate, so that no register copies are needed.
// One K tile (x fits in shared memory): the grid is persistent; x is staged once per block and
// warp w walks row sets w, w + (all warps), ... Several tiles: one row set per warp, and the
// block walks the tiles, restaging x for each.
template <int BITS, int MT, int R, bool VEC16, bool S32>
__global__ void __launch_bounds__(32 * ROWS_WARPS, 2) qmm_mlx_rows(const mlxn_qmatmul_mlx_args a, int kt)
{
    constexpr int U = rows_u<BITS, MT>, SSIZE = S32 ? 4 : 2;
    using sraw_t = typename std::conditional<S32, uint32_t, uint16_t>::type;
    extern __shared__ float smem[];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int tile_chunks = kt / 32;
    float *xs = smem, *xsum = smem + MT * tile_chunks * CHUNK_PAD;
    const bool one_tile = kt >= a.K;
    const int gshift = __ffs(a.group_size) - 1; // group sizes are powers of two
    const int64_t row_sets = (a.N + R - 1) / R;
    const int64_t set_step = one_tile ? (int64_t)gridDim.x * ROWS_WARPS : row_sets;
    const int64_t first_set = (int64_t)blockIdx.x * ROWS_WARPS + warp;
    float acc[R][MT];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int m = 0; m < MT; m++)
            acc[r][m] = 0.f;
    for (int64_t k0 = 0; k0 < a.K; k0 += kt) {
        const int klen = (int)(a.K - k0 < kt ? a.K - k0 : kt), chunks = klen / 32;
        const int items = (chunks + 32 * U - 1) / (32 * U); // per row set
        const bool last_tile = k0 + kt >= a.K;
        // Row bases of the warp's current row set at this tile (rows past N read row N - 1
        // and are not stored; k0 is a multiple of the group size).
        const uint8_t *wb[R];
        const char *sb[R], *bb[R];
        auto set_rows = [&](int64_t set) {
#pragma unroll
            for (int r = 0; r < R; r++) {
                const int64_t n = set * R + r < a.N ? set * R + r : a.N - 1;
                wb[r] = a.w + n * a.w_stride + k0 * BITS / 8;
                sb[r] = (const char *)a.scales + n * a.s_stride + (k0 >> gshift) * SSIZE;
                bb[r] = (const char *)a.biases + n * a.b_stride + (k0 >> gshift) * SSIZE;
            }
        };
        auto load = [&](int item, item_loads<BITS, R, U> &l) {
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int c = min(lane + 32 * (item * U + u), chunks - 1);
                const int wo = c * (BITS * 4), so = ((c * 32) >> gshift) * SSIZE;
#pragma unroll
                for (int r = 0; r < R; r++) {
                    load_chunk<BITS, VEC16>(wb[r] + wo, l.w[u][r]);
                    l.s[u][r] = *reinterpret_cast<const sraw_t *>(sb[r] + so);
                    l.b[u][r] = *reinterpret_cast<const sraw_t *>(bb[r] + so);
                }
            }
        };
        int64_t set = first_set;
        int item = 0;
        // One item: issue the next item's loads into `next`, compute `cur`; false when the
        // warp has no row set left.
        auto step = [&](const item_loads<BITS, R, U> &cur, item_loads<BITS, R, U> &next) {
            int64_t nset = set;
            int nitem = item + 1;
            if (nitem == items) {
                nitem = 0;
                nset = set + set_step;
                set_rows(nset);
            }
            load(nitem, next);
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int c = lane + 32 * (item * U + u);
                if (c >= chunks)
                    break;
                float dot[R][MT];
#pragma unroll
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int m = 0; m < MT; m++)
                        dot[r][m] = 0.f;
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    float q[R][4];
#pragma unroll
                    for (int r = 0; r < R; r++)
#pragma unroll
                        for (int i = 0; i < 4; i++)
                            q[r][i] = chunk_value<BITS>(cur.w[u][r], 4 * j + i);
#pragma unroll
                    for (int m = 0; m < MT; m++) {
                        const float4 v =
                            reinterpret_cast<const float4 *>(xs + (m * tile_chunks + c) * CHUNK_PAD)[j];
#pragma unroll
                        for (int r = 0; r < R; r++) {
                            dot[r][m] = fmaf(v.x, q[r][0], dot[r][m]);
                            dot[r][m] = fmaf(v.y, q[r][1], dot[r][m]);
                            dot[r][m] = fmaf(v.z, q[r][2], dot[r][m]);
                            dot[r][m] = fmaf(v.w, q[r][3], dot[r][m]);
                        }
                    }
                }
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const float sc = raw_to_f32(cur.s[u][r], a.s_dtype), bi = raw_to_f32(cur.b[u][r], a.s_dtype);
#pragma unroll
                    for (int m = 0; m < MT; m++)
                        acc[r][m] = fmaf(sc, dot[r][m], fmaf(bi, xsum[m * tile_chunks + c], acc[r][m]));
                }
            }
            if (nitem == 0 && last_tile) { // the row set is done: reduce over lanes, store
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const int64_t n = set * R + r;
#pragma unroll
                    for (int m = 0; m < MT; m++) {
                        float v = acc[r][m];
                        acc[r][m] = 0.f;
#pragma unroll
                        for (int o = 16; o > 0; o >>= 1)
                            v += __shfl_xor_sync(0xffffffffu, v, o);
                        if (lane == 0 && n < a.N && m < a.M)
                            reinterpret_cast<float *>(mlxn_rows_ptr(&a.y, m))[n] = v;
                    }
                }
            }
            set = nset;
            item = nitem;
            return set < row_sets;
        };
        item_loads<BITS, R, U> b0, b1;
        set_rows(set);
        load(0, b0);
        __syncthreads(); // the previous tile is consumed
        stage_x<BITS, MT>(a, k0, klen, tile_chunks, xs, xsum);
        __syncthreads();
        if (set < row_sets)
            while (step(b0, b1) && step(b1, b0)) {
            }
    }
}

// Prefill: block = 256 threads computes a 64 (M) x 64 (N) tile; thread (ty, tx) owns 4 x 4
// outputs. Per K step of 32: x tile [64][33] and dequantized W tile [64][33] in shared memory
// (padded by one float against bank conflicts).

template <int BITS>
__global__ void __launch_bounds__(256) qmm_mlx_tiles(const mlxn_qmatmul_mlx_args a)
{
    __shared__ float xs[TILE][TK + 1], ws[TILE][TK + 1];
    __shared__ const char *xrow[TILE];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int64_t m0 = (int64_t)blockIdx.y * TILE, n0 = (int64_t)blockIdx.x * TILE;
    if (threadIdx.x < TILE)
        xrow[threadIdx.x] = m0 + threadIdx.x < a.M ? mlxn_rows_ptr(&a.x, m0 + threadIdx.x) : nullptr;
    __syncthreads();
    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < a.K; k0 += TK) {
        // x tile: 64 rows x 32
        for (int i = threadIdx.x; i < TILE * TK; i += 256) {
            const int r = i / TK, k = i % TK;
            const int64_t m = m0 + r;
            xs[r][k] = m < a.M ? load_any(a.x_dtype, xrow[r], k0 + k) : 0.f;
        }
        // W tile: 64 rows, one chunk of 32 codes each: 4 threads per row, 8 codes each
        {
            const int r = threadIdx.x >> 2, part = threadIdx.x & 3;
            const int64_t n = n0 + r;
            if (n < a.N) {
                uint32_t w[BITS];
                load_chunk<BITS, false>(a.w + n * a.w_stride + k0 * BITS / 8, w);
                const int64_t g = k0 / a.group_size;
                const float sc = load_any(a.s_dtype, (const char *)a.scales + n * a.s_stride, g);
                const float bi = load_any(a.s_dtype, (const char *)a.biases + n * a.b_stride, g);
#pragma unroll
                for (int j = 0; j < 32; j++)
                    if (j / 8 == part)
                        ws[r][j] = fmaf(sc, code_to_f32(chunk_code<BITS>(w, j)), bi);
            } else {
                for (int j = part * 8; j < part * 8 + 8; j++)
                    ws[r][j] = 0.f;
            }
        }
        __syncthreads();
        tile_fma(xs, ws, acc);
        __syncthreads();
    }
    tile_store(a.y, a.M, a.N, m0, n0, acc);
}

// Rows of W per warp in the decode kernel (see bench/NOTES.md for the choice).
constexpr int ROWS_R = 2;

// Shared memory for x in the decode kernel: up to ~100 KB two blocks fit on an SM; up to ~200 KB
// one block per SM still stages x once; beyond, x goes in K tiles of the smaller size.
constexpr int ROWS_SMEM_BUDGET = 100 * 1024, ROWS_SMEM_MAX = 200 * 1024;

inline size_t rows_smem(int mt, int kt) { return (size_t)mt * (kt / 32) * (CHUNK_PAD + 1) * 4; }

template <int BITS, int MT, int R, bool VEC16, bool S32>
cudaError_t launch_rows(const mlxn_qmatmul_mlx_args &a, cudaStream_t s, bool pdl)
{
    static unsigned long long smem_done; // bit d: the limit is raised on device d
    auto kernel = qmm_mlx_rows<BITS, MT, R, VEC16, S32>;
    const size_t whole = (size_t)MT * (size_t)(a.K / 32) * (CHUNK_PAD + 1) * 4;
    const int per_sm = whole <= ROWS_SMEM_BUDGET ? 2 : 1;
    // K tiles: of whole groups (<= 128), so that a tile's first group index is k0 / group_size
    int kt = whole <= ROWS_SMEM_MAX ? (int)a.K
                                    : (int)(ROWS_SMEM_BUDGET / ((size_t)MT * (CHUNK_PAD + 1) * 4) / 4 * 128);
    const size_t smem = rows_smem(MT, kt);
    const int64_t row_sets = (a.N + R - 1) / R;
    int64_t blocks = (row_sets + ROWS_WARPS - 1) / ROWS_WARPS;
    if (kt >= a.K) {
        // persistent: one or two blocks per SM (__launch_bounds__ allows two), staging x once
        int dev = 0, sms = 0;
        cudaError_t e = cudaGetDevice(&dev);
        if (e == cudaSuccess)
            e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
        if (e != cudaSuccess)
            return e;
        if (blocks > (int64_t)sms * per_sm)
            blocks = (int64_t)sms * per_sm;
    }
    cudaError_t e = allow_smem(kernel, ROWS_SMEM_MAX + 4096, smem_done);
    if (e != cudaSuccess)
        return e;
    return launch(kernel, dim3((unsigned)blocks), dim3(32 * ROWS_WARPS), smem, s, pdl, a, kt);
}

template <int BITS, int MT>
cudaError_t launch_rows_mt(const mlxn_qmatmul_mlx_args &a, cudaStream_t s, bool pdl)
{
    // 16-byte loads need every chunk 16-byte aligned: base and row stride
    // with several rows of x each code is already used several times; more rows of W spill
    constexpr bool V = BITS % 4 == 0;
    constexpr int R = MT == 1 ? ROWS_R : 1;
    const bool vec16 = V && ((uintptr_t)a.w & 15) == 0 && a.w_stride % 16 == 0;
    if (a.s_dtype == MLXN_DTYPE_F32)
        return vec16 ? launch_rows<BITS, MT, R, V, true>(a, s, pdl) : launch_rows<BITS, MT, R, false, true>(a, s, pdl);
    return vec16 ? launch_rows<BITS, MT, R, V, false>(a, s, pdl) : launch_rows<BITS, MT, R, false, false>(a, s, pdl);
}

template <int BITS>
cudaError_t launch_bits(const mlxn_qmatmul_mlx_args &a, cudaStream_t s, bool pdl)
{
    if (a.M <= ROWS_MAX_M) {
        cudaError_t e = cudaSuccess;
        if (a.M == 1 && mlxn_cuda_launch_qmatmul_mlx_stream(&a, s, pdl, &e)) // qmatmul_stream.cu
            return e;
        if (a.M == 1)
            return launch_rows_mt<BITS, 1>(a, s, pdl);
        if (a.M == 2)
            return launch_rows_mt<BITS, 2>(a, s, pdl);
        if (a.M <= 4)
            return launch_rows_mt<BITS, 4>(a, s, pdl);
        return launch_rows_mt<BITS, 8>(a, s, pdl);
    }
    const dim3 grid((unsigned)((a.N + TILE - 1) / TILE), (unsigned)((a.M + TILE - 1) / TILE));
    return launch(qmm_mlx_tiles<BITS>, grid, dim3(256), 0, s, pdl, a);
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_qmatmul_mlx(const mlxn_qmatmul_mlx_args *a, cudaStream_t s,
                                                    bool pdl)
{
    switch (a->bits) {
    case 2: return launch_bits<2>(*a, s, pdl);
    case 3: return launch_bits<3>(*a, s, pdl);
    case 4: return launch_bits<4>(*a, s, pdl);
    case 5: return launch_bits<5>(*a, s, pdl);
    case 6: return launch_bits<6>(*a, s, pdl);
    case 8: return launch_bits<8>(*a, s, pdl);
    }
    return cudaErrorInvalidValue;
}
