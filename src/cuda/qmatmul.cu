// Quantized matmul with GGML weights on CUDA: y[M, N] = x[M, K] . W[N, K]^T. The weights are
// decoded 32 at a time (one unit: a block, or a 32-element slice of a K super-block) by the
// decoders shared with the host reference (src/formats/ggml_decode.h).
//
// Variants (launcher at the bottom):
//   qmm_rows   M <= 8 (decode): a warp per row of W, a lane per unit; x staged in shared memory
//              (each 32-float unit padded to 36 floats, so lanes one unit apart hit different
//              banks), in K tiles when it does not fit; persistent warps when it does.
//   qmm_tiles  M > 8 (prefill): 64 x 64 output tiles, each K step of 32 decodes a 64 x 32 tile
//              of W into shared memory once for 64 rows of x. SIMT: the tensor-core version is
//              issue 3's next step.

#include "../formats/ggml_decode.h"
#include "common.cuh"

namespace {

using namespace mlxn_cuda;

// The 32 weights k0 .. k0 + 31 of a row of W as floats.
template <int WT> __device__ __forceinline__ void weight_unit(const uint8_t *row, int64_t k0, float (&v)[32])
{
    if constexpr (WT == MLXN_DTYPE_F32 || WT == MLXN_DTYPE_F16 || WT == MLXN_DTYPE_BF16) {
#pragma unroll
        for (int j = 0; j < 32; j++)
            v[j] = load_any(WT, row, k0 + j);
    } else {
        int u;
        const uint8_t *p = mlxn_ggml_unit_ptr(WT, row, k0, &u);
        mlxn_ggml_unit(WT, p, u, v);
    }
}

constexpr int WARPS = 8, MAX_M = 8, PAD = 36;
constexpr int SMEM_BUDGET = 100 * 1024, SMEM_MAX = 200 * 1024;

// Stages x[0..MT)[k0, k0 + klen) into xs [MT][klen / 32][PAD] (zeros for rows m >= M).
template <int MT>
__device__ __forceinline__ void stage_x(const mlxn_qmatmul_args &a, const char *const *xrow, int64_t k0,
                                        int klen, int tile_units, float *xs)
{
    for (int i = threadIdx.x; i < MT * klen; i += blockDim.x) {
        const int m = i / klen, k = i - m * klen;
        xs[(m * tile_units + k / 32) * PAD + k % 32] = m < a.M ? load_any(a.x_dtype, xrow[m], k0 + k) : 0.f;
    }
}

template <int WT, int MT>
__global__ void __launch_bounds__(32 * WARPS, 2) qmm_rows(const mlxn_qmatmul_args a, int kt)
{
    extern __shared__ float xs[];
    __shared__ const char *xrow[MAX_M];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tile_units = kt / 32;
    const bool one_tile = kt >= a.K;
    const int64_t first = (int64_t)blockIdx.x * WARPS + warp;
    const int64_t step = one_tile ? (int64_t)gridDim.x * WARPS : a.N;
    if (threadIdx.x < MT && threadIdx.x < a.M)
        xrow[threadIdx.x] = mlxn_rows_ptr(&a.x, threadIdx.x);
    float acc[MT];
#pragma unroll
    for (int m = 0; m < MT; m++)
        acc[m] = 0.f;
    for (int64_t k0 = 0; k0 < a.K; k0 += kt) {
        const int klen = (int)(a.K - k0 < kt ? a.K - k0 : kt), units = klen / 32;
        __syncthreads(); // xrow is written; the previous tile is consumed
        stage_x<MT>(a, xrow, k0, klen, tile_units, xs);
        __syncthreads();
        for (int64_t n = first; n < a.N; n += step) {
            const uint8_t *row = a.w + n * a.w_stride;
            for (int c = lane; c < units; c += 32) {
                float v[32];
                weight_unit<WT>(row, k0 + 32 * c, v);
#pragma unroll
                for (int m = 0; m < MT; m++) {
                    const float4 *x4 = reinterpret_cast<const float4 *>(xs + (m * tile_units + c) * PAD);
                    float d0 = 0.f, d1 = 0.f;
#pragma unroll
                    for (int j = 0; j < 8; j++) {
                        const float4 x = x4[j];
                        d0 = fmaf(x.x, v[4 * j], d0);
                        d1 = fmaf(x.y, v[4 * j + 1], d1);
                        d0 = fmaf(x.z, v[4 * j + 2], d0);
                        d1 = fmaf(x.w, v[4 * j + 3], d1);
                    }
                    acc[m] += d0 + d1;
                }
            }
            if (k0 + kt < a.K)
                break; // more tiles: keep this row and its sums
#pragma unroll
            for (int m = 0; m < MT; m++) {
                const float v = warp_sum(acc[m]);
                acc[m] = 0.f;
                if (lane == 0 && m < a.M)
                    reinterpret_cast<float *>(mlxn_rows_ptr(&a.y, m))[n] = v;
            }
            if (!one_tile)
                break;
        }
    }
}


template <int WT>
__global__ void __launch_bounds__(256) qmm_tiles(const mlxn_qmatmul_args a)
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
        if (threadIdx.x < TILE) { // W tile: a thread decodes one row's unit
            const int64_t n = n0 + threadIdx.x;
            float v[32];
            if (n < a.N)
                weight_unit<WT>(a.w + n * a.w_stride, k0, v);
#pragma unroll
            for (int j = 0; j < 32; j++)
                ws[threadIdx.x][j] = n < a.N ? v[j] : 0.f;
        } else { // x tile: 64 rows x 32
            for (int i = threadIdx.x - TILE; i < TILE * TK; i += 256 - TILE) {
                const int r = i / TK, k = i % TK;
                xs[r][k] = xrow[r] ? load_any(a.x_dtype, xrow[r], k0 + k) : 0.f;
            }
        }
        __syncthreads();
        tile_fma(xs, ws, acc);
        __syncthreads();
    }
    tile_store(a.y, a.M, a.N, m0, n0, acc);
}

// Raises a kernel's dynamic shared memory limit once per device.
template <typename K> cudaError_t allow_smem(K kernel, unsigned long long &done)
{
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess || dev >= 64 || (__atomic_load_n(&done, __ATOMIC_RELAXED) >> dev & 1))
        return e;
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_MAX);
    if (e == cudaSuccess)
        __atomic_fetch_or(&done, 1ull << dev, __ATOMIC_RELAXED);
    return e;
}

template <int WT, int MT> cudaError_t launch_rows(const mlxn_qmatmul_args &a, cudaStream_t s, bool pdl)
{
    static unsigned long long smem_done;
    auto kernel = qmm_rows<WT, MT>;
    const size_t per_unit = (size_t)MT * PAD * 4, whole = per_unit * (size_t)(a.K / 32); // bytes of x
    const int kt = whole <= SMEM_MAX ? (int)a.K : (int)(SMEM_BUDGET / per_unit / 8 * 256);
    int64_t blocks = (a.N + WARPS - 1) / WARPS;
    if (kt >= a.K) {
        int dev = 0, sms = 0;
        cudaError_t e = cudaGetDevice(&dev);
        if (e == cudaSuccess)
            e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
        if (e != cudaSuccess)
            return e;
        const int per_sm = whole <= SMEM_BUDGET ? 2 : 1;
        if (blocks > (int64_t)sms * per_sm)
            blocks = (int64_t)sms * per_sm;
    }
    cudaError_t e = allow_smem(kernel, smem_done);
    if (e != cudaSuccess)
        return e;
    return launch(kernel, dim3((unsigned)blocks), dim3(32 * WARPS), per_unit * (kt / 32), s, pdl, a, kt);
}

template <int WT> cudaError_t launch_type(const mlxn_qmatmul_args &a, cudaStream_t s, bool pdl)
{
    if (a.M == 1)
        return launch_rows<WT, 1>(a, s, pdl);
    if (a.M == 2)
        return launch_rows<WT, 2>(a, s, pdl);
    if (a.M <= 4)
        return launch_rows<WT, 4>(a, s, pdl);
    if (a.M <= MAX_M)
        return launch_rows<WT, 8>(a, s, pdl);
    const dim3 grid((unsigned)((a.N + TILE - 1) / TILE), (unsigned)((a.M + TILE - 1) / TILE));
    return launch(qmm_tiles<WT>, grid, dim3(256), 0, s, pdl, a);
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_qmatmul(const mlxn_qmatmul_args *a, cudaStream_t s, bool pdl)
{
    switch (a->w_dtype) {
#define CASE(t) case t: return launch_type<t>(*a, s, pdl);
    CASE(MLXN_DTYPE_F32) CASE(MLXN_DTYPE_F16) CASE(MLXN_DTYPE_BF16)
    CASE(MLXN_DTYPE_Q4_0) CASE(MLXN_DTYPE_Q4_1) CASE(MLXN_DTYPE_Q5_0) CASE(MLXN_DTYPE_Q5_1)
    CASE(MLXN_DTYPE_Q8_0) CASE(MLXN_DTYPE_Q2_K) CASE(MLXN_DTYPE_Q3_K) CASE(MLXN_DTYPE_Q4_K)
    CASE(MLXN_DTYPE_Q5_K) CASE(MLXN_DTYPE_Q6_K) CASE(MLXN_DTYPE_IQ4_NL) CASE(MLXN_DTYPE_IQ4_XS)
#undef CASE
    }
    return cudaErrorInvalidValue;
}

// ---- bf16 operands for the tensor-core GEMM (gemm.c)

namespace {

// A thread decodes one 32-element unit of W and stores it as bf16 (four 16-byte stores).
template <int WT> __global__ void __launch_bounds__(256) w_to_bf16(const mlxn_qmatmul_args a, __nv_bfloat16 *out)
{
    const int64_t units = a.K / 32, i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= a.N * units)
        return;
    const int64_t n = i / units, k0 = (i - n * units) * 32;
    float v[32];
    weight_unit<WT>(a.w + n * a.w_stride, k0, v);
    uint4 *dst = reinterpret_cast<uint4 *>(out + n * a.K + k0);
#pragma unroll
    for (int q = 0; q < 4; q++) {
        __nv_bfloat162 p[4];
#pragma unroll
        for (int j = 0; j < 4; j++)
            p[j] = __floats2bfloat162_rn(v[8 * q + 2 * j], v[8 * q + 2 * j + 1]);
        dst[q] = *reinterpret_cast<uint4 *>(p);
    }
}

__global__ void __launch_bounds__(256) x_to_bf16(const mlxn_qmatmul_args a, __nv_bfloat16 *out)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= a.M * a.K)
        return;
    const int64_t m = i / a.K, k = i - m * a.K;
    out[i] = __float2bfloat16_rn(load_any(a.x_dtype, mlxn_rows_ptr(&a.x, m), k));
}

template <int WT> cudaError_t to_bf16(const mlxn_qmatmul_args &a, void *w, void *x, cudaStream_t s)
{
    const int64_t units = a.N * (a.K / 32);
    w_to_bf16<WT><<<(unsigned)((units + 255) / 256), 256, 0, s>>>(a, static_cast<__nv_bfloat16 *>(w));
    x_to_bf16<<<(unsigned)((a.M * a.K + 255) / 256), 256, 0, s>>>(a, static_cast<__nv_bfloat16 *>(x));
    return cudaGetLastError();
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_qmatmul_to_bf16(const mlxn_qmatmul_args *a, void *w, void *x, cudaStream_t s)
{
    switch (a->w_dtype) {
#define CASE(t) case t: return to_bf16<t>(*a, w, x, s);
    CASE(MLXN_DTYPE_F32) CASE(MLXN_DTYPE_F16) CASE(MLXN_DTYPE_BF16)
    CASE(MLXN_DTYPE_Q4_0) CASE(MLXN_DTYPE_Q4_1) CASE(MLXN_DTYPE_Q5_0) CASE(MLXN_DTYPE_Q5_1)
    CASE(MLXN_DTYPE_Q8_0) CASE(MLXN_DTYPE_Q2_K) CASE(MLXN_DTYPE_Q3_K) CASE(MLXN_DTYPE_Q4_K)
    CASE(MLXN_DTYPE_Q5_K) CASE(MLXN_DTYPE_Q6_K) CASE(MLXN_DTYPE_IQ4_NL) CASE(MLXN_DTYPE_IQ4_XS)
#undef CASE
    }
    return cudaErrorInvalidValue;
}
