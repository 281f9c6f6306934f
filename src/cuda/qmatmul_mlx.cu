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
// Variants (launcher at the bottom, in order):
//   qmm_mlx_rows   M <= 8 (decode): bound by the bytes of W. Each warp owns 2 rows of W, each
//                  lane whole chunks (16-byte loads for 4- and 8-bit codes); x is staged in
//                  shared memory in K tiles and shared by the 16 rows of the block, each chunk
//                  of 32 floats padded to 36 so that the lanes' float4 reads (one chunk apart)
//                  fall in different banks.
//   qmm_mlx_tiles  M > 8 (prefill): 64 x 64 output tiles; each K step of 32 dequantizes a
//                  64 x 32 tile of W into shared memory once and reuses it for 64 rows of x.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "launch.h"

namespace {

template <typename T> __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ float load_any(int dt, const void *p, int64_t i)
{
    if (dt == MLXN_DTYPE_F16)
        return to_f32(static_cast<const __half *>(p)[i]);
    if (dt == MLXN_DTYPE_BF16)
        return to_f32(static_cast<const __nv_bfloat16 *>(p)[i]);
    return static_cast<const float *>(p)[i];
}

__device__ __forceinline__ void wait_for_previous_kernel()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_next_kernel()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
}

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

constexpr int ROWS_WARPS = 8;     // warps per block
constexpr int ROWS_PER_WARP = 2;  // rows of W per warp
constexpr int ROWS_MAX_M = 8;
constexpr int CHUNK_PAD = 36; // floats per 32-float chunk of x in shared memory

// x tile in shared memory: [M][kt / 32 chunks][36] floats, then [M][kt / 32] chunk sums.
template <int BITS, bool VEC16>
__global__ void __launch_bounds__(32 * ROWS_WARPS) qmm_mlx_rows(const mlxn_qmatmul_mlx_args a, int kt)
{
    extern __shared__ float smem[];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int M = (int)a.M;
    const int kc_per_tile = kt / 32;
    float *xs = smem, *xsum = smem + M * kc_per_tile * CHUNK_PAD;
    // One K tile: x is staged once and the block walks over row sets (a persistent grid);
    // several tiles: the block keeps one row set and walks over the tiles.
    const bool one_tile = kt >= a.K;
    const int64_t row_sets = (a.N + ROWS_WARPS * ROWS_PER_WARP - 1) / (ROWS_WARPS * ROWS_PER_WARP);
    for (int64_t set = blockIdx.x; set < row_sets; set += one_tile ? gridDim.x : row_sets) {
    const int64_t n_first = (set * ROWS_WARPS + warp) * ROWS_PER_WARP;
    float acc[ROWS_PER_WARP][ROWS_MAX_M];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++)
#pragma unroll
        for (int m = 0; m < ROWS_MAX_M; m++)
            acc[r][m] = 0.f;
    for (int64_t k0 = 0; k0 < a.K; k0 += kt) {
        const int klen = (int)(a.K - k0 < kt ? a.K - k0 : kt), chunks = klen / 32;
        if (!one_tile || set == blockIdx.x) { // stage the x tile (once, with one tile)
        __syncthreads();
        for (int m = 0; m < M; m++) {
            const char *row = mlxn_rows_ptr(&a.x, m); // one address computation per row
#pragma unroll 8
            for (int k = threadIdx.x; k < klen; k += blockDim.x)
                xs[(m * kc_per_tile + k / 32) * CHUNK_PAD + k % 32] = load_any(a.x_dtype, row, k0 + k);
        }
        __syncthreads();
        for (int i = threadIdx.x; i < M * chunks; i += blockDim.x) {
            const int m = i / chunks, c = i - m * chunks;
            const float *p = xs + (m * kc_per_tile + c) * CHUNK_PAD;
            float s = 0.f;
#pragma unroll
            for (int j = 0; j < 32; j++)
                s += p[j];
            xsum[m * kc_per_tile + c] = s;
        }
        __syncthreads();
        }
#pragma unroll 2
        for (int c = lane; c < chunks; c += 32) {
            const int64_t kc = k0 + (int64_t)c * 32;
            const int64_t g = kc / a.group_size;
#pragma unroll
            for (int r = 0; r < ROWS_PER_WARP; r++) {
                const int64_t n = n_first + r;
                if (n >= a.N)
                    break;
                uint32_t w[BITS];
                load_chunk<BITS, VEC16>(a.w + n * a.w_stride + kc * BITS / 8, w);
                const float sc = load_any(a.s_dtype, (const char *)a.scales + n * a.s_stride, g);
                const float bi = load_any(a.s_dtype, (const char *)a.biases + n * a.b_stride, g);
                float q[32];
#pragma unroll
                for (int j = 0; j < 32; j++)
                    q[j] = code_to_f32(chunk_code<BITS>(w, j));
#pragma unroll
                for (int m = 0; m < ROWS_MAX_M; m++) {
                    if (m >= M)
                        break;
                    const float4 *xv =
                        reinterpret_cast<const float4 *>(xs + (m * kc_per_tile + c) * CHUNK_PAD);
                    float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f; // four chains, not one
#pragma unroll
                    for (int j = 0; j < 8; j++) {
                        const float4 v = xv[j];
                        d0 = fmaf(v.x, q[4 * j], d0);
                        d1 = fmaf(v.y, q[4 * j + 1], d1);
                        d2 = fmaf(v.z, q[4 * j + 2], d2);
                        d3 = fmaf(v.w, q[4 * j + 3], d3);
                    }
                    const float dot = (d0 + d1) + (d2 + d3);
                    acc[r][m] = fmaf(sc, dot, fmaf(bi, xsum[m * kc_per_tile + c], acc[r][m]));
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++) {
        const int64_t n = n_first + r;
#pragma unroll
        for (int m = 0; m < ROWS_MAX_M; m++) {
            if (m >= M)
                break;
            float v = acc[r][m];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
                v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0 && n < a.N)
                reinterpret_cast<float *>(mlxn_rows_ptr(&a.y, m))[n] = v;
        }
    }
    }
}

// Prefill: block = 256 threads computes a 64 (M) x 64 (N) tile; thread (ty, tx) owns 4 x 4
// outputs. Per K step of 32: x tile [64][33] and dequantized W tile [64][33] in shared memory
// (padded by one float against bank conflicts).
constexpr int TILE = 64, TK = 32;

template <int BITS>
__global__ void __launch_bounds__(256) qmm_mlx_tiles(const mlxn_qmatmul_mlx_args a)
{
    __shared__ float xs[TILE][TK + 1], ws[TILE][TK + 1];
    __shared__ const char *xrow[TILE];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
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
#pragma unroll 8
        for (int k = 0; k < TK; k++) {
            float xv[4], wv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                xv[i] = xs[ty + 16 * i][k];
                wv[i] = ws[tx + 16 * i][k];
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    acc[i][j] = fmaf(xv[i], wv[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int64_t m = m0 + ty + 16 * i;
        if (m >= a.M)
            continue;
        float *y = reinterpret_cast<float *>(mlxn_rows_ptr(&a.y, m));
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t n = n0 + tx + 16 * j;
            if (n < a.N)
                y[n] = acc[i][j];
        }
    }
}

template <typename... Args>
cudaError_t launch(void (*kernel)(Args...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                   bool pdl, Args... args)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, args...);
}

// Shared memory for the x tile of the row kernel: up to 96 KB, in whole groups of 128.
constexpr int ROWS_SMEM_BUDGET = 96 * 1024;
constexpr int ROWS_SMEM_MAX = ROWS_SMEM_BUDGET * (CHUNK_PAD + 1) / CHUNK_PAD + 1024;

// Raises a kernel's dynamic shared memory limit once per device (the call costs tens of
// microseconds: far more than a decode mat-vec).
template <int BITS, bool VEC16> cudaError_t allow_smem()
{
    auto kernel = qmm_mlx_rows<BITS, VEC16>;
    static unsigned long long done; // bit d: set on device d
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess || dev >= 64 || (__atomic_load_n(&done, __ATOMIC_RELAXED) >> dev & 1))
        return e;
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, ROWS_SMEM_MAX);
    if (e == cudaSuccess)
        __atomic_fetch_or(&done, 1ull << dev, __ATOMIC_RELAXED);
    return e;
}

template <int BITS>
cudaError_t launch_bits(const mlxn_qmatmul_mlx_args &a, cudaStream_t s, bool pdl)
{
    if (a.M <= ROWS_MAX_M) {
        int kt = (int)(ROWS_SMEM_BUDGET / (a.M * (4.0 * CHUNK_PAD / 32 + 4.0 / 32)) / 128) * 128;
        if (kt > a.K)
            kt = (int)a.K;
        const size_t smem = (size_t)a.M * (kt / 32) * (CHUNK_PAD + 1) * 4;
        const int64_t rows_per_block = ROWS_WARPS * ROWS_PER_WARP;
        int64_t blocks = (a.N + rows_per_block - 1) / rows_per_block;
        if (kt >= a.K) {
            // persistent: enough blocks to fill every SM (as many as fit), each walking row sets
            int dev = 0, sms = 0, per_sm = 0;
            cudaError_t e = cudaGetDevice(&dev);
            if (e == cudaSuccess)
                e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
            if (e != cudaSuccess)
                return e;
            // two blocks per SM: each stages x once and walks several row sets
            per_sm = (int)(200 * 1024 / (smem + 1024));
            per_sm = per_sm < 1 ? 1 : per_sm > 2 ? 2 : per_sm;
            if (blocks > (int64_t)sms * per_sm)
                blocks = (int64_t)sms * per_sm;
        }
        const dim3 grid((unsigned)blocks);
        // 16-byte loads need every chunk 16-byte aligned: base and row stride
        const bool vec16 = BITS % 4 == 0 && ((uintptr_t)a.w & 15) == 0 && a.w_stride % 16 == 0;
        constexpr bool V = BITS % 4 == 0;
        cudaError_t e = vec16 ? allow_smem<BITS, V>() : allow_smem<BITS, false>();
        if (e != cudaSuccess)
            return e;
        return launch(vec16 ? qmm_mlx_rows<BITS, V> : qmm_mlx_rows<BITS, false>, grid,
                      dim3(32 * ROWS_WARPS), smem, s, pdl, a, kt);
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
