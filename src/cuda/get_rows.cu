// Embedding lookup on CUDA: y[t, :] = scale * table[ids[t], :].
//
// grid.y walks the tokens (grid-stride past 65535), grid.x the units of a row: a thread
// decodes one 32-element unit of a GGML row in registers with the decoders shared with the
// host reference (src/formats/ggml_decode.h), or converts 8 elements of a plain row, and
// writes them with 16-byte stores when y's rows are 16-byte aligned. The op moves one table
// row in and one y row out per token; the id is read once per thread (a broadcast from L1).

#include <math.h>

#include "../formats/ggml_decode.h"
#include "common.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int THREADS = 128;

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// The row of token t, or nullptr when its id is outside [0, V).
__device__ __forceinline__ const uint8_t *table_row(const mlxn_get_rows_args &a, int64_t t)
{
    const int32_t id = reinterpret_cast<const int32_t *>(mlxn_rows_ptr(&a.ids, t / a.ids_len))[t % a.ids_len];
    return id >= 0 && id < a.table_rows ? a.table + id * a.table_stride : nullptr;
}

// Stores v[0 .. E) at y[i0 ..]: 16-byte stores when vec (the address is then 16-byte aligned:
// rows are, and i0 is a multiple of E elements of E * sizeof(TY) >= 16 bytes).
template <typename TY, int E> __device__ __forceinline__ void store_run(TY *y, bool vec, const float (&v)[E])
{
    if (vec) {
        constexpr int W = E * (int)sizeof(TY) / 16;
        __align__(16) TY out[E]; // moved as 16-byte words
#pragma unroll
        for (int j = 0; j < E; j++)
            out[j] = from_f<TY>(v[j]);
#pragma unroll
        for (int w = 0; w < W; w++)
            reinterpret_cast<uint4 *>(y)[w] = reinterpret_cast<const uint4 *>(out)[w];
    } else {
#pragma unroll
        for (int j = 0; j < E; j++)
            y[j] = from_f<TY>(v[j]);
    }
}

// GGML rows: a thread per 32-element unit.
template <int WT, typename TY>
__global__ void __launch_bounds__(THREADS) get_rows_blocks(const mlxn_get_rows_args a, bool vec)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    const int64_t k0 = ((int64_t)blockIdx.x * THREADS + threadIdx.x) * 32;
    if (k0 >= a.n)
        return;
    for (int64_t t = blockIdx.y; t < a.n_tokens; t += gridDim.y) {
        const uint8_t *row = table_row(a, t);
        float v[32];
        if (row) {
            int u;
            const uint8_t *block = mlxn_ggml_unit_ptr(WT, row, k0, &u);
            mlxn_ggml_unit(WT, block, u, v);
#pragma unroll
            for (int j = 0; j < 32; j++)
                v[j] *= a.scale;
        } else {
#pragma unroll
            for (int j = 0; j < 32; j++)
                v[j] = NAN;
        }
        store_run<TY, 32>(reinterpret_cast<TY *>(mlxn_rows_ptr(&a.y, t)) + k0, vec, v);
    }
}

// f32 / f16 / bf16 rows: a thread per 8 elements (the last run of a row may be shorter).
template <int WT, typename TY>
__global__ void __launch_bounds__(THREADS) get_rows_plain(const mlxn_get_rows_args a, bool vec)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    const int64_t i0 = ((int64_t)blockIdx.x * THREADS + threadIdx.x) * 8;
    if (i0 >= a.n)
        return;
    const bool full = i0 + 8 <= a.n;
    for (int64_t t = blockIdx.y; t < a.n_tokens; t += gridDim.y) {
        const uint8_t *row = table_row(a, t);
        TY *y = reinterpret_cast<TY *>(mlxn_rows_ptr(&a.y, t)) + i0;
        float v[8];
#pragma unroll
        for (int j = 0; j < 8; j++)
            v[j] = !row ? NAN : full || i0 + j < a.n ? load_any(WT, row, i0 + j) * a.scale : 0.0f;
        if (full) {
            store_run<TY, 8>(y, vec, v);
        } else {
            for (int j = 0; i0 + j < a.n; j++)
                y[j] = from_f<TY>(v[j]);
        }
    }
}

template <typename TY> cudaError_t launch_y(const mlxn_get_rows_args &a, cudaStream_t s, bool pdl)
{
    const int64_t run = mlxn_ggml_block_elems(a.table_dtype) ? 32 : 8;
    const int64_t runs = (a.n + run - 1) / run;
    const dim3 grid((unsigned)((runs + THREADS - 1) / THREADS), (unsigned)(a.n_tokens < 65535 ? a.n_tokens : 65535));
    // 16-byte stores need every row of y 16-byte aligned (and whole 16-byte runs)
    const bool vec = ((uintptr_t)a.y.base & 15) == 0 && a.y.s0 % 16 == 0 && a.y.s1 % 16 == 0 && a.y.s2 % 16 == 0 &&
                     (run * (int64_t)sizeof(TY)) % 16 == 0;
    switch (a.table_dtype) {
#define PLAIN(t) case t: return launch(get_rows_plain<t, TY>, grid, dim3(THREADS), 0, s, pdl, a, vec);
#define BLOCKS(t) case t: return launch(get_rows_blocks<t, TY>, grid, dim3(THREADS), 0, s, pdl, a, vec);
    PLAIN(MLXN_DTYPE_F32) PLAIN(MLXN_DTYPE_F16) PLAIN(MLXN_DTYPE_BF16)
    BLOCKS(MLXN_DTYPE_Q4_0) BLOCKS(MLXN_DTYPE_Q4_1) BLOCKS(MLXN_DTYPE_Q5_0) BLOCKS(MLXN_DTYPE_Q5_1)
    BLOCKS(MLXN_DTYPE_Q8_0) BLOCKS(MLXN_DTYPE_Q2_K) BLOCKS(MLXN_DTYPE_Q3_K) BLOCKS(MLXN_DTYPE_Q4_K)
    BLOCKS(MLXN_DTYPE_Q5_K) BLOCKS(MLXN_DTYPE_Q6_K) BLOCKS(MLXN_DTYPE_IQ4_NL) BLOCKS(MLXN_DTYPE_IQ4_XS)
#undef PLAIN
#undef BLOCKS
    }
    return cudaErrorInvalidValue;
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_get_rows(const mlxn_get_rows_args *a, cudaStream_t s, bool pdl)
{
    switch (a->y_dtype) {
    case MLXN_DTYPE_F32: return launch_y<float>(*a, s, pdl);
    case MLXN_DTYPE_F16: return launch_y<__half>(*a, s, pdl);
    case MLXN_DTYPE_BF16: return launch_y<__nv_bfloat16>(*a, s, pdl);
    }
    return cudaErrorInvalidValue;
}
