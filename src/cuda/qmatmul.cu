// Quantized matmul with GGML weights on CUDA: y[M, N] = x[M, K] . W[N, K]^T. The weights are
// decoded 32 at a time (one unit: a block, or a 32-element slice of a K super-block) by the
// decoders shared with the host reference (src/formats/ggml_decode.h).
//
// Variants (launcher at the bottom); M = 1 with K of 64..512 pieces goes to the streamed kernel
// (qmatmul_stream.cu: every GGML format, those after Q4_K from K 4096) first, then M = 1 with
// Q8_0 in short packed rows and many of them (output heads) to the short-row kernel
// (qmatmul_short.cu):
//   qmm_rows   M <= 8 (decode): a warp per row of W, a lane per unit; x staged in shared memory
//              (each 32-float unit padded to 36 floats, so lanes one unit apart hit different
//              banks), in K tiles when it does not fit; persistent warps when it does.
//   qmm_tiles  M > 8 (prefill): 64 x 64 output tiles, each K step of 32 decodes a 64 x 32 tile
//              of W into shared memory once for 64 rows of x. SIMT: the tensor-core version is
//              issue 3's next step.

// Fusions (mlxn_qmatmul_fused) in the decode kernels: x is staged times norm_w while the sums of
// squares gather, and the inverse RMS scales the sums where a warp writes them, with the GLU and
// the accumulation (with GLU a warp computes gate row n and up row n + N/2 in turn). The sums
// are of the unnormalized x, so |x| past ~1e34 would overflow them (the separate pass
// normalizes first). Larger calls run the fusions as separate passes (qmm_norm_x,
// qmm_epilogue) around the plain product.

#include "block_reduce.cuh"
#include "ggml_unit.cuh"
#include "wide_load.cuh"
#include "qmatmul_out.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int WARPS = 8, MAX_M = 8, PAD = 36;
constexpr int SMEM_BUDGET = 100 * 1024, SMEM_MAX = 200 * 1024;

// The fused norm: y = inv * (W . (x * norm_w)) with inv = 1 / sqrt(mean(x^2) + eps) per row of
// x, so x * norm_w is staged at once while each thread gathers sums of squares (f64: rows of
// many thousands keep their precision), and inv scales the sums where they are stored. No pass
// over x before the staging, and no barrier between finding inv and using x.

// Adds v^2 to ss[m] (m a runtime row index; the unrolled select keeps ss in registers).
template <int MT> __device__ __forceinline__ void add_square(double (&ss)[MT], int m, float v)
{
#pragma unroll
    for (int r = 0; r < MT; r++)
        if (r == m)
            ss[r] += (double)v * v;
}

// Adds each warp's sums of squares to red[warp] (lane 0 of a warp is the only one to touch its
// row, zeroed before the first call); a __syncthreads must follow before row_scale.
template <int MT> __device__ __forceinline__ void publish_squares(const double (&ss)[MT], double (*red)[MT])
{
#pragma unroll
    for (int m = 0; m < MT; m++) {
        const double v = warp_reduce(ss[m], add_op());
        if ((threadIdx.x & 31) == 0)
            red[threadIdx.x >> 5][m] += v;
    }
}

// The scale of row m once publish_squares and a barrier are done (1 without the fused norm).
template <int MT> __device__ __forceinline__ float row_scale(const mlxn_qmatmul_args &a, const double (*red)[MT], int m)
{
    if (!a.norm_w)
        return 1.f;
    double t = 0.0;
    for (int w = 0; w < WARPS; w++)
        t += red[w][m];
    return norm_scale(a, t);
}

// Before waiting on the previous kernel (PDL): the first `bytes` of row n of W, and of its up
// row with GLU, into L2. The weights do not depend on that kernel, so their DRAM latency
// overlaps its tail; only what a warp reads first (a whole long row ahead measured 5% slower).
__device__ __forceinline__ void prefetch_row(const mlxn_qmatmul_args &a, int64_t n, int64_t n_out, int64_t bytes)
{
    prefetch_l2(a.w + n * a.w_stride, bytes);
    if (a.glu)
        prefetch_l2(a.w + (n + n_out) * a.w_stride, bytes);
}

// The decode kernels' start once their rows of W are requested: norm_w into L2 too, then the
// wait for the previous kernel, the next one let in, and the rows of x.
template <int MT> __device__ __forceinline__ void start_rows(const mlxn_qmatmul_args &a, const char **xrow)
{
    if (a.norm_w && threadIdx.x == 0)
        prefetch_l2(a.norm_w, a.K * 4);
    wait_for_previous_kernel();
    allow_next_kernel();
    if (threadIdx.x < MT && threadIdx.x < a.M)
        xrow[threadIdx.x] = mlxn_rows_ptr(&a.x, threadIdx.x);
}

// Stages x[0..MT)[k0, k0 + klen) into xs [MT][units][PAD], units = klen / 32 rounded up (zeros
// for rows m >= M and past klen: a float W's K need not be whole units); with the fused norm
// times norm_w, the sums of squares added to red.
template <int MT>
__device__ __forceinline__ void stage_x(const mlxn_qmatmul_args &a, const char *const *xrow, int64_t k0, int klen,
                                        int tile_units, float *xs, double (*red)[MT])
{
    double ss[MT];
#pragma unroll
    for (int m = 0; m < MT; m++)
        ss[m] = 0.0;
    const int span = (klen + 31) / 32 * 32;
    for (int i = threadIdx.x; i < MT * span; i += blockDim.x) {
        const int m = i / span, k = i - m * span;
        float v = 0.f;
        if (m < a.M && k < klen) {
            v = load_any(a.x_dtype, xrow[m], k0 + k);
            if (a.norm_w) {
                add_square(ss, m, v);
                v *= __ldg(a.norm_w + k0 + k);
            }
        }
        xs[(m * tile_units + k / 32) * PAD + k % 32] = v;
    }
    if (a.norm_w)
        publish_squares(ss, red);
}

// The sums of row `row` (K elements) of W over the units of one K tile, added to acc.
template <int WT, int MT>
__device__ __forceinline__ void row_tile_dot(const uint8_t *row, int64_t k0, int64_t K, int units, int tile_units,
                                             const float *xs, float (&acc)[MT])
{
    const int lane = threadIdx.x & 31;
    for (int c = lane; c < units; c += 32) {
        float v[32];
        weight_unit_bounded<WT>(row, k0 + 32 * c, K, v);
#pragma unroll
        for (int m = 0; m < MT; m++)
            acc[m] += unit_dot(v, xs + (m * tile_units + c) * PAD);
    }
}

template <int WT, int MT>
__global__ void __launch_bounds__(32 * WARPS, 2) qmm_rows(const mlxn_qmatmul_args a, int kt)
{
    extern __shared__ float xs[];
    __shared__ const char *xrow[MAX_M];
    __shared__ double red[WARPS][MT];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tile_units = (kt + 31) / 32;
    const bool one_tile = kt >= a.K;
    const int64_t n_out = a.glu ? a.N / 2 : a.N; // outputs; with GLU row n is a gate, n + n_out its up
    const int64_t first = (int64_t)blockIdx.x * WARPS + warp;
    const int64_t step = one_tile ? (int64_t)gridDim.x * WARPS : n_out;
    // what the warp's lanes read first: the first 32 units of its first row
    if (lane == 0 && first < n_out)
        prefetch_row(a, first, n_out, row_bytes<WT>(a.K < 1024 ? a.K : 1024));
    start_rows<MT>(a, xrow);
    if (lane == 0)
        for (int m = 0; m < MT; m++)
            red[warp][m] = 0.0;
    float acc[MT], acc_u[MT];
#pragma unroll
    for (int m = 0; m < MT; m++)
        acc[m] = acc_u[m] = 0.f;
    for (int64_t k0 = 0; k0 < a.K; k0 += kt) {
        const int klen = (int)(a.K - k0 < kt ? a.K - k0 : kt), units = (klen + 31) / 32;
        const bool last = k0 + kt >= a.K;
        __syncthreads(); // xrow is written; the previous tile is consumed
        stage_x<MT>(a, xrow, k0, klen, tile_units, xs, red);
        __syncthreads();
        for (int64_t n = first; n < n_out; n += step) {
            row_tile_dot<WT, MT>(a.w + n * a.w_stride, k0, a.K, units, tile_units, xs, acc);
            if (a.glu)
                row_tile_dot<WT, MT>(a.w + (n + n_out) * a.w_stride, k0, a.K, units, tile_units, xs, acc_u);
            if (!last)
                break; // more tiles: keep this row and its sums
#pragma unroll
            for (int m = 0; m < MT; m++) {
                const float g = warp_sum(acc[m]), u = a.glu ? warp_sum(acc_u[m]) : 0.f;
                acc[m] = acc_u[m] = 0.f;
                if (lane == 0 && m < a.M) {
                    const float r = row_scale(a, red, m);
                    store_out(a, m, n, g * r, u * r);
                }
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
                weight_unit_bounded<WT>(a.w + n * a.w_stride, k0, a.K, v);
#pragma unroll
            for (int j = 0; j < 32; j++)
                ws[threadIdx.x][j] = n < a.N ? v[j] : 0.f;
        } else { // x tile: 64 rows x 32
            for (int i = threadIdx.x - TILE; i < TILE * TK; i += 256 - TILE) {
                const int r = i / TK, k = i % TK;
                xs[r][k] = xrow[r] && k0 + k < a.K ? load_any(a.x_dtype, xrow[r], k0 + k) : 0.f;
            }
        }
        __syncthreads();
        tile_fma(xs, ws, acc);
        __syncthreads();
    }
    tile_store(a.y, a.M, a.N, m0, n0, acc);
}

// ---- decode with wide loads (the plan per format: wide_load.cuh): a lane owns G consecutive
// blocks (a group) whose bytes it loads with LB-byte loads into registers and decodes there; x
// is staged per group, padded by 4 floats so that lanes one group apart read different banks.

// QKV: the epilogue of a q, k, v projection (store_qkv) instead of store_out.
template <int WT, int MT, int G, bool QKV>
__global__ void __launch_bounds__(32 * WARPS, 2) qmm_rows_wide(const mlxn_qmatmul_args a, int lpr,
                                                               const qkv_epilogue<QKV> q)
{
    constexpr int BE = block_elems_of<WT>(), GE = G * BE, BB = block_bytes_of<WT>(), GP = GE + 4;
    extern __shared__ float xs[];
    __shared__ const char *xrow[MAX_M];
    __shared__ double red[WARPS][MT];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, groups = (int)(a.K / GE);
    const int slot = lane / lpr, sl = lane % lpr, rows_per_warp = 32 / lpr;
    const int64_t n_out = a.glu ? a.N / 2 : a.N; // outputs; with GLU row n is a gate, n + n_out its up
    const int64_t sets = (n_out + rows_per_warp - 1) / rows_per_warp;
    const int64_t first = (int64_t)blockIdx.x * WARPS + warp, step = (int64_t)gridDim.x * WARPS;
    // what the warp's lanes read first: the first lpr groups of each row of its first set
    if (lane < rows_per_warp && first * rows_per_warp + lane < n_out)
        prefetch_row(a, first * rows_per_warp + lane, n_out, (int64_t)(groups < lpr ? groups : lpr) * (G * BB));
    start_rows<MT>(a, xrow);
    qkv_positions qpos;
    if constexpr (QKV)
        qpos = load_qkv_positions(q);
    if (lane == 0)
        for (int m = 0; m < MT; m++)
            red[warp][m] = 0.0;
    __syncthreads();
    // x (times norm_w with the fused norm): four elements per thread and step, one float4 load
    // when x is f32 and aligned
    double ss[MT];
#pragma unroll
    for (int m = 0; m < MT; m++)
        ss[m] = 0.0;
    const bool vec = a.x_dtype == MLXN_DTYPE_F32;
    for (int i = 4 * threadIdx.x; i < MT * a.K; i += 4 * blockDim.x) {
        const int m = i / (int)a.K, k = i - m * (int)a.K;
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (m < a.M) {
            if (vec && ((uintptr_t)xrow[m] & 15) == 0) {
                v = *reinterpret_cast<const float4 *>(xrow[m] + 4 * (int64_t)k);
            } else {
                v.x = load_any(a.x_dtype, xrow[m], k);
                v.y = load_any(a.x_dtype, xrow[m], k + 1);
                v.z = load_any(a.x_dtype, xrow[m], k + 2);
                v.w = load_any(a.x_dtype, xrow[m], k + 3);
            }
            if (a.norm_w) {
                add_square(ss, m, v.x);
                add_square(ss, m, v.y);
                add_square(ss, m, v.z);
                add_square(ss, m, v.w);
                v = make_float4(v.x * __ldg(a.norm_w + k), v.y * __ldg(a.norm_w + k + 1),
                                v.z * __ldg(a.norm_w + k + 2), v.w * __ldg(a.norm_w + k + 3));
            }
        }
        *reinterpret_cast<float4 *>(xs + (m * groups + k / GE) * GP + k % GE) = v;
    }
    if (a.norm_w)
        publish_squares(ss, red);
    __syncthreads();
    for (int64_t set = first; set < sets; set += step) {
        const int64_t n = set * rows_per_warp + slot;
        qkv_rotation rot;
        if constexpr (QKV)
            rot = rotation_of(q, qpos, n);
        float out[2][MT]; // the plain (or gate) sums, then the up sums
#pragma unroll
        for (int h = 0; h < 2; h++) {
            if (h == 1 && !a.glu)
                break;
            const uint8_t *row = a.w + ((n < n_out ? n : n_out - 1) + h * n_out) * a.w_stride;
            float acc[MT];
#pragma unroll
            for (int m = 0; m < MT; m++)
                acc[m] = 0.f;
            for (int g = sl; g < groups; g += lpr) {
                wide_raw<WT, G> raw;
                raw.load(row, g);
#pragma unroll
                for (int e0 = 0; e0 < GE; e0 += 32) {
                    float v[32];
                    mlxn_ggml_unit(WT, raw.b + (e0 / BE) * BB, (e0 % BE) / 32, v);
#pragma unroll
                    for (int m = 0; m < MT; m++)
                        acc[m] += unit_dot(v, xs + (m * groups + g) * GP + e0);
                }
            }
#pragma unroll
            for (int m = 0; m < MT; m++) {
                float v = acc[m];
                for (int o = lpr / 2; o > 0; o >>= 1)
                    v += __shfl_xor_sync(0xffffffffu, v, o);
                out[h][m] = v;
            }
        }
        if constexpr (QKV) { // M = 1; row n's pair is in the other slot of the same lanes
            const float v = out[0][0] * row_scale(a, red, 0), pair = __shfl_xor_sync(0xffffffffu, v, lpr);
            if (sl == 0 && n < n_out)
                store_qkv(a, q, qpos, rot, n, v, pair);
        } else {
#pragma unroll
            for (int m = 0; m < MT; m++)
                if (sl == 0 && n < n_out && m < a.M) {
                    const float r = row_scale(a, red, m);
                    store_out(a, m, n, out[0][m] * r, a.glu ? out[1][m] * r : 0.f);
                }
        }
    }
}

template <int WT, int MT> cudaError_t launch_rows(const mlxn_qmatmul_args &a, cudaStream_t s, bool pdl)
{
    static unsigned long long smem_done;
    auto kernel = qmm_rows<WT, MT>;
    const size_t per_unit = (size_t)MT * PAD * 4, whole = per_unit * (size_t)((a.K + 31) / 32); // bytes of x
    const int kt = whole <= SMEM_MAX ? (int)a.K : (int)(SMEM_BUDGET / per_unit / 8 * 256);
    int64_t blocks = ((a.glu ? a.N / 2 : a.N) + WARPS - 1) / WARPS;
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
    cudaError_t e = allow_smem(kernel, SMEM_MAX, smem_done);
    if (e != cudaSuccess)
        return e;
    return launch(kernel, dim3((unsigned)blocks), dim3(32 * WARPS), per_unit * ((kt + 31) / 32), s, pdl, a, kt);
}

// Whether the wide-load kernel takes groups of G blocks: K is whole groups, x fits in shared
// memory and W's rows are aligned to the loads.
template <int WT, int MT, int G> bool wide_fits(const mlxn_qmatmul_args &a)
{
    constexpr int GE = G * block_elems_of<WT>(), LB = wide_lb<WT, G>();
    static_assert(LB > 0, "a group of G blocks splits into 4-, 8- or 16-byte loads");
    const size_t smem = (size_t)MT * (a.K / GE) * (GE + 4) * 4;
    return a.K % GE == 0 && smem <= SMEM_MAX && (uintptr_t)a.w % LB == 0 && a.w_stride % LB == 0 &&
           a.K <= INT32_MAX / MT;
}

// The groups the wide-load kernel takes (its plan's, or half of them when K is not a whole
// number of those: K 576 of SmolLM2's 32-element formats); 0 when it does not take the call.
template <int WT, int MT> int wide_group(const mlxn_qmatmul_args &a)
{
    if constexpr (wide_plan<WT>::G == 0 || MT > 1) { // several rows of x: the registers spill
        return 0;
    } else {
        constexpr int G = wide_plan<WT>::G;
        if (wide_fits<WT, MT, G>(a))
            return G;
        if constexpr (G == 4)
            return wide_fits<WT, MT, 2>(a) ? 2 : 0;
        return 0;
    }
}

// The wide-load decode kernel (M = 1) with groups of G blocks.
template <int WT, int MT, int G, bool QKV = false>
cudaError_t launch_wide_g(const mlxn_qmatmul_args &a, cudaStream_t s, bool pdl, const qkv_epilogue<QKV> &q = {})
{
    static unsigned long long smem_done;
    constexpr int GE = G * block_elems_of<WT>();
    const int64_t groups = a.K / GE;
    const size_t smem = (size_t)MT * groups * (GE + 4) * 4;
    const int lpr = wide_lanes(groups);
    int dev = 0, sms = 0;
    auto kernel = qmm_rows_wide<WT, MT, G, QKV>;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess)
        e = allow_smem(kernel, SMEM_MAX, smem_done);
    if (e != cudaSuccess)
        return e;
    const int64_t sets = ((a.glu ? a.N / 2 : a.N) + 32 / lpr - 1) / (32 / lpr);
    int64_t blocks = (sets + WARPS - 1) / WARPS;
    const int64_t cap = (int64_t)sms * (smem <= SMEM_BUDGET ? 2 : 1);
    return launch(kernel, dim3((unsigned)(blocks < cap ? blocks : cap)), dim3(32 * WARPS), smem, s, pdl, a, lpr, q);
}

// The wide-load kernel with the groups wide_group chose.
template <int WT, int MT, bool QKV = false>
cudaError_t launch_wide(const mlxn_qmatmul_args &a, cudaStream_t s, bool pdl, int G, const qkv_epilogue<QKV> &q = {})
{
    if constexpr (wide_plan<WT>::G == 0 || MT > 1) {
        return cudaErrorInvalidValue;
    } else {
        if (G == wide_plan<WT>::G)
            return launch_wide_g<WT, MT, wide_plan<WT>::G, QKV>(a, s, pdl, q);
        if constexpr (wide_plan<WT>::G == 4)
            if (G == 2)
                return launch_wide_g<WT, MT, 2, QKV>(a, s, pdl, q);
        return cudaErrorInvalidValue;
    }
}

// Whether the wide-load kernel's epilogue does a q, k, v projection's rope and KV append: two or
// more rows a warp (NORMAL pairs are then two slots of a warp), no per-head norm or sections, a
// cache it stores one element at a time (not q8_0).
template <int WT> bool wide_fuses_qkv(const mlxn_qmatmul_op_args &o)
{
    const mlxn_qmatmul_args &a = o.mm;
    const int G = wide_group<WT, 1>(a);
    if (a.M != 1 || a.glu || a.accumulate || !G || wide_lanes(a.K / (G * block_elems_of<WT>())) > 16)
        return false;
    const mlxn_rope_args &r = o.rope;
    if (o.rope_on && (r.style != MLXN_ROPE_NORMAL || r.norm_w || r.head_dim % 2 ||
                      (r.sections[0] | r.sections[1] | r.sections[2] | r.sections[3])))
        return false;
    return !o.kv_on || (o.kv.cache_dtype != MLXN_DTYPE_Q8_0 && o.kv.T == 1);
}

template <int WT> cudaError_t launch_qkv(const mlxn_qmatmul_op_args &o, cudaStream_t s, bool pdl)
{
    const qkv_epilogue<true> q = {o.rope_on, o.kv_on, o.rope, o.kv};
    return launch_wide<WT, 1, true>(o.mm, s, pdl, wide_group<WT, 1>(o.mm), q);
}

template <int WT, int MT> cudaError_t launch_decode(const mlxn_qmatmul_args &a, cudaStream_t s, bool pdl)
{
    cudaError_t e = cudaSuccess;
    const int G = wide_group<WT, MT>(a);
    if (MT == 1 && mlxn_cuda_launch_qmatmul_stream(&a, s, pdl, &e))
        return e;
    if (MT == 1 && mlxn_cuda_launch_qmatmul_short(&a, s, pdl, &e))
        return e;
    if (G)
        return launch_wide<WT, MT>(a, s, pdl, G);
    return launch_rows<WT, MT>(a, s, pdl);
}

template <int WT> cudaError_t launch_type(const mlxn_qmatmul_args &a, cudaStream_t s, bool pdl)
{
    if (a.M == 1)
        return launch_decode<WT, 1>(a, s, pdl);
    if (a.M == 2)
        return launch_decode<WT, 2>(a, s, pdl);
    if (a.M <= 4)
        return launch_decode<WT, 4>(a, s, pdl);
    if (a.M <= MAX_M)
        return launch_rows<WT, 8>(a, s, pdl);
    const dim3 grid((unsigned)((a.N + TILE - 1) / TILE), (unsigned)((a.M + TILE - 1) / TILE));
    return launch(qmm_tiles<WT>, grid, dim3(256), 0, s, pdl, a);
}

} // namespace

// The formats of the wide-load kernel, the one with the q, k, v epilogue.
#define WIDE_CASES(CASE)                                                                           \
    CASE(MLXN_DTYPE_Q4_0) CASE(MLXN_DTYPE_Q4_1) CASE(MLXN_DTYPE_Q5_0) CASE(MLXN_DTYPE_Q5_1)           \
    CASE(MLXN_DTYPE_Q8_0) CASE(MLXN_DTYPE_Q2_K) CASE(MLXN_DTYPE_Q4_K) CASE(MLXN_DTYPE_Q5_K)           \
    CASE(MLXN_DTYPE_IQ4_NL) CASE(MLXN_DTYPE_IQ4_XS)

extern "C" bool mlxn_cuda_qmatmul_fuses_qkv(const mlxn_qmatmul_op_args *o)
{
    switch (o->mm.w_dtype) {
#define CASE(t) case t: return wide_fuses_qkv<t>(*o);
    WIDE_CASES(CASE)
#undef CASE
    }
    return false;
}

extern "C" cudaError_t mlxn_cuda_launch_qmatmul_qkv(const mlxn_qmatmul_op_args *o, cudaStream_t s, bool pdl)
{
    if (!mlxn_cuda_qmatmul_fuses_qkv(o))
        return cudaErrorInvalidValue;
    switch (o->mm.w_dtype) {
#define CASE(t) case t: return launch_qkv<t>(*o, s, pdl);
    WIDE_CASES(CASE)
#undef CASE
    }
    return cudaErrorInvalidValue;
}

extern "C" cudaError_t mlxn_cuda_launch_qmatmul(const mlxn_qmatmul_args *a, cudaStream_t s, bool pdl)
{
    if ((a->norm_w || a->glu || a->accumulate) && a->M > MAX_M)
        return cudaErrorInvalidValue; // the backend runs these as separate passes
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

// Plain weights whose rows do not end on a 32-element unit (their K is free): an element a
// thread, so that the unit kernel's last unit neither drops the row's tail nor reads past it.
template <int WT> __global__ void __launch_bounds__(256) w_elems_to_bf16(const mlxn_qmatmul_args a, __nv_bfloat16 *out)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= a.N * a.K)
        return;
    const int64_t n = i / a.K, k = i - n * a.K;
    out[i] = __float2bfloat16_rn(load_any(WT, a.w + n * a.w_stride, k));
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
    if (plain_weight(WT) && a.K % 32)
        w_elems_to_bf16<WT><<<(unsigned)((a.N * a.K + 255) / 256), 256, 0, s>>>(a, static_cast<__nv_bfloat16 *>(w));
    else
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

// ---- fusions as separate passes, for calls past the decode kernels (backend.c)

namespace {

// out[m][k] = x[m][k] / sqrt(mean(x_m^2) + eps) * norm_w[k], f32: a block per row.
__global__ void __launch_bounds__(256) qmm_norm_x(const mlxn_qmatmul_args a, float *out)
{
    __shared__ double part[8];
    wait_for_previous_kernel();
    allow_next_kernel();
    for (int64_t m = blockIdx.x; m < a.M; m += gridDim.x) {
        const char *row = mlxn_rows_ptr(&a.x, m);
        double ss = 0.0;
        for (int64_t k = threadIdx.x; k < a.K; k += blockDim.x) {
            const double v = load_any(a.x_dtype, row, k);
            ss += v * v;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            ss += __shfl_xor_sync(0xffffffffu, ss, o);
        __syncthreads(); // part of the previous row is read
        if ((threadIdx.x & 31) == 0)
            part[threadIdx.x >> 5] = ss;
        __syncthreads();
        double total = 0.0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++)
            total += part[w];
        const float inv = norm_scale(a, total);
        for (int64_t k = threadIdx.x; k < a.K; k += blockDim.x)
            out[m * a.K + k] = load_any(a.x_dtype, row, k) * inv * __ldg(a.norm_w + k);
    }
}

// y from the plain product yt [M][N]: GLU of its halves and / or accumulation.
__global__ void __launch_bounds__(256) qmm_epilogue(const mlxn_qmatmul_args a, const float *yt)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    const int64_t n_out = a.glu ? a.N / 2 : a.N, total = a.M * n_out;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t m = i / n_out, n = i % n_out;
        store_out(a, (int)m, n, yt[m * a.N + n], a.glu ? yt[m * a.N + n + n_out] : 0.f);
    }
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_qmatmul_norm_x(const mlxn_qmatmul_args *a, float *out, cudaStream_t s, bool pdl)
{
    return launch(qmm_norm_x, dim3((unsigned)(a->M < 65535 ? a->M : 65535)), dim3(256), 0, s, pdl, *a, out);
}

extern "C" cudaError_t mlxn_cuda_launch_qmatmul_epilogue(const mlxn_qmatmul_args *a, const float *yt, cudaStream_t s,
                                                         bool pdl)
{
    const int64_t total = a->M * (a->glu ? a->N / 2 : a->N), blocks = (total + 255) / 256;
    return launch(qmm_epilogue, dim3((unsigned)(blocks < (1 << 20) ? blocks : (1 << 20))), dim3(256), 0, s, pdl, *a,
                  yt);
}
