// The softmax family on CUDA. Rows of up to 16384 elements, 16-byte aligned, are read once and
// written once: on sm_90 a block a row through shared memory where x and mask take 8 to 32 KB,
// else (and on every row before sm_90) held in registers (runs of 8 elements, 16-byte accesses),
// the max and the sum being two block reductions. Longer rows take a cluster of blocks a row on
// sm_90, each block's slice of it read once into shared memory (the longest rows without a mask:
// into registers and shared memory, any rest read twice, the second time from L2). Other rows take
// two passes (the second read mostly from L2), each thread keeping a running (max, sum of exp)
// over its elements, merged across the block.
#include "../core/softmax_math.h"
#include "block_reduce.cuh"
#include "bulk_copy.cuh"
#include "elementwise.cuh"

#include <cooperative_groups.h>
#include <type_traits>

namespace cg = cooperative_groups;

namespace {

using namespace mlxn_cuda;

constexpr int THREADS = 256;

__device__ __forceinline__ void warp_merge(float &m, float &s)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        mlxn_softmax_merge(&m, &s, m2, s2);
    }
}

__global__ void __launch_bounds__(THREADS) softmax_rows(const mlxn_softmax_args a)
{
    __shared__ float red_m[THREADS / 32], red_s[THREADS / 32];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int64_t r = blockIdx.x; r < a.n_rows; r += gridDim.x) {
        const char *x = mlxn_rows_ptr(&a.x, r);
        const char *mask = a.mask.base ? mlxn_rows_ptr(&a.mask, r) : nullptr;
        char *y = mlxn_rows_ptr(&a.y, r);
        float m = -INFINITY, s = 0.0f;
        for (int64_t i = threadIdx.x; i < a.n; i += THREADS) {
            const float z = mlxn_softmax_logit(load_any(a.dtype, x, i), mask ? load_any(a.dtype, mask, i) : 0.0f,
                                               a.scale, a.softcap);
            mlxn_softmax_merge(&m, &s, z, 1.0f);
        }
        warp_merge(m, s);
        if (lane == 0) {
            red_m[warp] = m;
            red_s[warp] = s;
        }
        __syncthreads();
        m = red_m[0];
        s = red_s[0];
        for (int w = 1; w < THREADS / 32; w++)
            mlxn_softmax_merge(&m, &s, red_m[w], red_s[w]);
        __syncthreads(); // red_* is read before the next row overwrites it
        for (int64_t i = threadIdx.x; i < a.n; i += THREADS) {
            const float z = mlxn_softmax_logit(load_any(a.dtype, x, i), mask ? load_any(a.dtype, mask, i) : 0.0f,
                                               a.scale, a.softcap);
            store_any(a.dtype, y, i, mlxn_softmax_out(z, m, s, a.log));
        }
    }
}

// One row's softmax with the row in registers, by TH threads holding up to R runs of RUN
// elements each: this thread's runs of the row's `runs` of x (and mask) are stored to y.
// The max comes first (one block reduction), then exp(z - max) once per element, kept for the
// output, and its sum (a second): one expf per element and a reciprocal per row, where the
// one-pass running (max, sum) of the generic kernel takes two expf and a division per element.
// V, the kernels' template argument (by_variant below): the row's variant as loops of their own,
// 0 any (mask, softcap, log: selected per element), 1 softmax and 2 log-softmax of rows without
// mask or softcap, which then run without the ~6 selects an element of ~20 instructions
// (bench/NOTES.md, softmax).
template <int V, typename T, int TH, int R>
__device__ __forceinline__ void softmax_row(const mlxn_softmax_args &a, const T *x, const T *mask, T *y,
                                            int64_t runs, float *red)
{
    float z[R][RUN];
    float m = -INFINITY;
#pragma unroll
    for (int j = 0; j < R; j++) {
        const int64_t run = (int64_t)j * TH + threadIdx.x, i = run * RUN;
        if (run >= runs)
            break;
        load_run(x + i, z[j]);
        if constexpr (V == 0) {
            float mv[RUN];
            if (mask)
                load_run(mask + i, mv);
#pragma unroll
            for (int e = 0; e < RUN; e++) {
                z[j][e] = mlxn_softmax_logit(z[j][e], mask ? mv[e] : 0.0f, a.scale, a.softcap);
                m = fmaxf(m, z[j][e]);
            }
        } else {
#pragma unroll
            for (int e = 0; e < RUN; e++) {
                z[j][e] *= a.scale;
                m = fmaxf(m, z[j][e]);
            }
        }
    }
    m = block_max(m, red);
    // a row of -inf logits (all masked): zeros, or -inf for log-softmax (mlxn_softmax_out)
    const float msub = m == -INFINITY ? 0.0f : m;
    const bool log = V == 0 ? a.log : V == 2;
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < R; j++) {
        if ((int64_t)j * TH + threadIdx.x >= runs)
            break;
#pragma unroll
        for (int e = 0; e < RUN; e++) {
            const float p = expf(z[j][e] - msub);
            s += p;
            if (V == 1 || (V == 0 && !log))
                z[j][e] = p;
        }
    }
    s = block_sum(s, red);
    // an all -inf row has p = 0 and s = 0: inv = 0 gives its zeros
    const float inv = m == -INFINITY ? 0.0f : 1.0f / s, ls = logf(s);
    const bool neg_inf_row = V == 2 && m == -INFINITY; // log-softmax's -inf outputs, branched once
#pragma unroll
    for (int j = 0; j < R; j++) {
        const int64_t run = (int64_t)j * TH + threadIdx.x, i = run * RUN;
        if (run >= runs)
            break;
        float out[RUN];
#pragma unroll
        for (int e = 0; e < RUN; e++) {
            if constexpr (V == 0)
                out[e] = m == -INFINITY ? (log ? -INFINITY : 0.0f) : log ? (z[j][e] - m) - ls : z[j][e] * inv;
            else if constexpr (V == 1)
                out[e] = z[j][e] * inv;
            else
                out[e] = (z[j][e] - m) - ls;
        }
        if (neg_inf_row)
#pragma unroll
            for (int e = 0; e < RUN; e++)
                out[e] = -INFINITY;
        store_run(y + i, out);
    }
}

// Rows of n <= TH * R * RUN, n % RUN == 0, aligned, read straight into registers.
template <typename T, int TH, int R, int V>
__global__ void __launch_bounds__(TH) softmax_rows_in_registers(const mlxn_softmax_args a)
{
    __shared__ float red[32]; // block_reduce.cuh's scratch
    wait_for_previous_kernel();
    allow_next_kernel();
    for (int64_t r = blockIdx.x; r < a.n_rows; r += gridDim.x) {
        const T *mask = a.mask.base ? reinterpret_cast<const T *>(mlxn_rows_ptr(&a.mask, r)) : nullptr;
        softmax_row<V, T, TH, R>(a, reinterpret_cast<const T *>(mlxn_rows_ptr(&a.x, r)), mask,
                                 reinterpret_cast<T *>(mlxn_rows_ptr(&a.y, r)), a.n / RUN, red);
    }
}

// A row's data lives in registers, so the rows resident on an SM (the bytes in flight) are
// bounded by the register file: fewer threads a row, each holding more of it, leave less per-
// thread overhead a row. 128 threads up to 8 runs each (n <= 8192), else 256.
template <typename T, int V> cudaError_t launch_in_registers(const mlxn_softmax_args &a, dim3 grid, cudaStream_t s, bool pdl)
{
    const int64_t runs = (a.n / RUN + 127) / 128; // runs per thread at 128 threads
    if (runs <= 1)
        return launch(softmax_rows_in_registers<T, 128, 1, V>, grid, dim3(128), 0, s, pdl, a);
    if (runs <= 2)
        return launch(softmax_rows_in_registers<T, 128, 2, V>, grid, dim3(128), 0, s, pdl, a);
    if (runs <= 4)
        return launch(softmax_rows_in_registers<T, 128, 4, V>, grid, dim3(128), 0, s, pdl, a);
    if (runs <= 8)
        return launch(softmax_rows_in_registers<T, 128, 8, V>, grid, dim3(128), 0, s, pdl, a);
    return launch(softmax_rows_in_registers<T, 256, 8, V>, grid, dim3(256), 0, s, pdl, a);
}

// Rows on sm_90: a block of ROW_TH threads a row where x and mask take ROW_MIN to ROW_BYTES; rows past
// the in-register kernels (n > 16384) a cluster of 8 blocks of SH_TH a row (16 where a slice of 8
// would not fit), each block a slice of the row's 16-byte words. The first pass reads the slice
// from global memory into shared memory (cp.async, D steps ahead) while each thread
// keeps a running (max, sum of exp) over its words, U words a step (one rescale of the sum a step,
// not an element); the block's and then the cluster's merge (each block pushes its (max, sum)
// into every block's shared memory) give the row's; the second pass computes the outputs from the
// shared copy, each thread its own words. Nothing of the row stays in registers, so an SM runs as many
// blocks as their slices fit its shared memory (the in-register cluster kernels this replaced
// ran one block of 512 threads an SM: 37-42% of copy on vocabulary rows; bench/NOTES.md,
// softmax). One row a cluster; the hardware places the next as one finishes. Logits are kept
// in base-2 units (z log2 e), so each exponential is one MUFU.EX2: the exponentials are two an
// element here, and expf is ~10 instructions. A block a row (no cluster, none of its instructions)
// of 128 threads, 8 blocks an SM by registers (6 by shared memory at 32 KB rows): on 4096-wide
// rows on an H100 99% of copy (f32) and 99.8% (bf16 with a mask), where a ring of bulk-copied
// stages feeding the in-register row ran 92% and 83%; but on 512-wide f32 rows (2 KB, a word a
// thread) 50.6% against that staged kernel's 80.2%, so rows under ROW_MIN take the in-register
// kernel (bench/NOTES.md, softmax, sessions 56-57).
constexpr int SH_TH = 512, ROW_TH = 128;
constexpr uint32_t ROW_MIN = 8 * 1024, ROW_BYTES = 32 * 1024;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 // (the kernel's body is sm_90 only)
// (m, s) and (m2, s2), each a max and a sum of 2^(z - max) in base-2 units, into (m, s); two parts
// whose max is -inf add their sums (0, or NaN from NaN logits, as mlxn_softmax_merge)
__device__ __forceinline__ void merge2(float &m, float &s, float m2, float s2)
{
    const float mn = fmaxf(m, m2);
    if (mn != -INFINITY) {
        s = s * ex2(m - mn) + s2 * ex2(m2 - mn);
        m = mn;
    } else {
        s += s2;
    }
}

// merge2 over the warp's lanes (every lane gets the result)
__device__ __forceinline__ void warp_merge2(float &m, float &s)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        merge2(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
}

// L2-hinted 16-byte loads for the slices' tails (R > 0 below; policies from bulk_copy.cuh)
__device__ __forceinline__ uint4 load_hint(const uint4 *q, uint64_t pol)
{
    uint4 v;
    asm volatile("ld.global.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(q), "l"(pol));
    return v;
}
#endif

// R > 0, the register form (TH = SH_TH, rows without a mask or softcap; clusters of 2 to 8 blocks,
// one an SM: lone_cluster_size): a block's slice is its first R words a thread in registers (as
// read), then up to ps words in shared memory, then a tail read twice, the second time from L2
// (kept there evict-last by the first pass). Else ps is per.
template <typename T, int V, int TH = SH_TH, int R = 0>
__global__ void __launch_bounds__(TH, TH == ROW_TH ? 8 : R ? 1 : 2)
    softmax_rows_shared(const mlxn_softmax_args a, int64_t per, int64_t ps)
{
    static_assert(R == 0 || (V != 0 && TH == SH_TH), "the register form takes rows without a mask or softcap");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    // elements a word; words a thread reduces a step (their logits held: 16 or 8 floats)
    constexpr int E = 16 / (int)sizeof(T), U = V == 0 ? 2 : 16 / E;
    // this block's slice of x, then of the mask; its base 128-byte aligned (16 bytes past a line ran
    // the cluster rows 7-10% slower: bench/NOTES.md, softmax)
    extern __shared__ __align__(128) uint4 words[];
    __shared__ float red_m[TH / 32], red_s[TH / 32];
    __shared__ __align__(8) float2 parts[16]; // the cluster's blocks' (max, sum), pushed by each
    __shared__ uint64_t parts_full;           // completes when all of them have landed
    constexpr bool ONE = TH == ROW_TH; // a block a row, launched without a cluster
    const int cl = ONE ? 1 : (int)cg::this_cluster().num_blocks();
    const int64_t rank = ONE ? 0 : cg::this_cluster().block_rank(), r = blockIdx.x / cl;
    if (!ONE) {
        if (threadIdx.x == 0) {
            mbar_init(&parts_full, 1);
            mbar_init_fence();
        }
        __syncthreads();
        if (threadIdx.x == 0)
            mbar_arrive_expect(&parts_full, (uint32_t)cl * sizeof(float2));
        cluster_arrive_relaxed(); // this block's parts_full is initialized (waited for before the pushes)
    }
    const int64_t all = a.n / E, w0 = rank * per < all ? rank * per : all;
    const int nw = (int)(w0 + per < all ? per : all - w0);
    // the slice's parts (R > 0): nr words in registers, ns in shared memory (planes of pl words),
    // nt past them (the tail)
    constexpr int RW = R * TH;
    constexpr bool TAIL = R > 0;
    const int64_t pl = TAIL ? ps : per;
    const int nr = nw < RW ? nw : RW;
    const int ns = TAIL ? (int)(nw - nr < ps ? nw - nr : ps) : nw;
    const int nt = nw - nr - ns;
    uint4 *xs = words, *ms = words + pl;
    // the slice kept as its f32 base-2 logits (E / 4 planes of pl words) where they take no more
    // room than x and mask (f32 rows, 16-bit rows with a mask): the outputs then neither unpack
    // nor recompute them. Else x (and mask) as read.
    const bool zs = sizeof(T) == 4 || (V == 0 && a.mask.base);
    float4 *zp = reinterpret_cast<float4 *>(words);
    wait_for_previous_kernel();
    allow_next_kernel();
    const uint4 *x = reinterpret_cast<const uint4 *>(mlxn_rows_ptr(&a.x, r)) + w0;
    const uint4 *mk = a.mask.base ? reinterpret_cast<const uint4 *>(mlxn_rows_ptr(&a.mask, r)) + w0 : nullptr;
    const float scale2 = a.scale * LOG2E;
    uint4 xr[R ? R : 1]; // the register words, loaded first
#pragma unroll
    for (int k = 0; k < R; k++) {
        const int j = threadIdx.x + k * TH;
        if (j < nr)
            xr[k] = x[j];
    }
    // the base-2 logits of a word (raw x and mask words); the softcap's test once a word, not an
    // element (both passes run it)
    auto logits = [&](const uint4 &xw, const uint4 &mw, float (&z)[E]) {
        float xf[E], mf[E];
        to_floats(reinterpret_cast<const T(&)[E]>(xw), xf);
        if (V == 0 && mk)
            to_floats(reinterpret_cast<const T(&)[E]>(mw), mf);
        if (V == 0 && a.softcap > 0.0f) {
#pragma unroll
            for (int e = 0; e < E; e++)
                z[e] = mlxn_softmax_logit(xf[e], mk ? mf[e] : 0.0f, a.scale, a.softcap) * LOG2E;
        } else if (V == 0 && mk) {
#pragma unroll
            for (int e = 0; e < E; e++)
                z[e] = fmaf(xf[e], scale2, mf[e] * LOG2E);
        } else {
#pragma unroll
            for (int e = 0; e < E; e++)
                z[e] = xf[e] * scale2;
        }
    };
    // The slice comes by cp.async into its place in shared memory, D steps of U words a thread
    // ahead of the step being reduced (registers held only for the step at hand); each thread reads
    // back only the words it copied, so its own wait_group is the only synchronization.
    constexpr int D = 12 / U; // 12 words a thread (and 12 of the mask) in flight
    const uint32_t xs_a = smem_addr(xs), ms_a = smem_addr(ms);
    auto issue = [&](int q) { // step q's copies: one commit group, empty past the slice
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int i = threadIdx.x + (q * U + u) * TH;
            if (i < ns) {
                cp_async16(xs_a + 16u * (uint32_t)i, x + RW + i, 16);
                if (V == 0 && mk)
                    cp_async16(ms_a + 16u * (uint32_t)i, mk + RW + i, 16);
            }
        }
        cp_async_commit();
    };
#pragma unroll
    for (int q = 0; q < D; q++)
        issue(q);
    float m = -INFINITY, s = 0.0f;
    // a step's logits into the running (max, sum) (the register words and the tail's; the
    // shared-memory loop below keeps these lines inline, its next copies issued between them: so
    // its kernels' machine code stays the one measured, bench/NOTES.md, softmax, session 57)
    auto absorb = [&](float (&z)[U][E]) {
        float mu = -INFINITY;
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int e = 0; e < E; e++)
                mu = fmaxf(mu, z[u][e]);
        const float mn = fmaxf(m, mu), msub = mn == -INFINITY ? 0.0f : mn;
        float acc = 0.0f;
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int e = 0; e < E; e++)
                acc += ex2(z[u][e] - msub);
        s = s * ex2(m - msub) + acc;
        m = mn;
    };
#pragma unroll
    for (int k0 = 0; k0 < R; k0 += U) {
        float z[U][E];
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (threadIdx.x + (k0 + u) * TH < nr) {
                logits(xr[k0 + u], xr[k0 + u], z[u]);
            } else {
#pragma unroll
                for (int e = 0; e < E; e++)
                    z[u][e] = -INFINITY;
            }
        }
        absorb(z);
    }
    for (int q = 0, i0 = threadIdx.x; i0 < ns; q++, i0 += U * TH) {
        cp_async_wait<D - 1>();
        uint4 xw[U], mw[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int i = i0 + u * TH;
            if (i < ns) {
                xw[u] = xs[i];
                if (V == 0 && mk)
                    mw[u] = ms[i];
            }
        }
        float z[U][E], mu = -INFINITY;
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int i = i0 + u * TH;
            if (i < ns) {
                logits(xw[u], mw[u], z[u]);
                if (zs) { // over the word(s) just read (plane 1 is the mask's words)
#pragma unroll
                    for (int k = 0; k < E / 4; k++)
                        zp[k * pl + i] = make_float4(z[u][4 * k], z[u][4 * k + 1], z[u][4 * k + 2], z[u][4 * k + 3]);
                }
            } else {
#pragma unroll
                for (int e = 0; e < E; e++)
                    z[u][e] = -INFINITY;
            }
#pragma unroll
            for (int e = 0; e < E; e++)
                mu = fmaxf(mu, z[u][e]);
        }
        // a step of -inf logits (masked, or past the slice) adds zeros whatever came before
        const float mn = fmaxf(m, mu), msub = mn == -INFINITY ? 0.0f : mn;
        float acc = 0.0f;
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int e = 0; e < E; e++)
                acc += ex2(z[u][e] - msub);
        s = s * ex2(m - msub) + acc;
        issue(q + D);
        m = mn;
    }
    // the tail: UT words a thread in flight, kept in L2 for the second pass
    constexpr int UT = 2 * U;
    const uint4 *xt = x + RW + ps;
    auto load_tail = [&](int i0, uint64_t pol, uint4(&xw)[UT]) { // (both passes)
#pragma unroll
        for (int u = 0; u < UT; u++) {
            const int i = i0 + u * TH;
            if (i < nt)
                xw[u] = load_hint(xt + i, pol);
        }
    };
    if (TAIL) {
        const uint64_t pol = l2_evict_last();
        for (int i0 = threadIdx.x; i0 < nt; i0 += UT * TH) {
            uint4 xw[UT];
            load_tail(i0, pol, xw);
#pragma unroll
            for (int h = 0; h < UT; h += U) {
                float z[U][E];
#pragma unroll
                for (int u = 0; u < U; u++) {
                    if (i0 + (h + u) * TH < nt) {
                        logits(xw[h + u], xw[h + u], z[u]);
                    } else {
#pragma unroll
                        for (int e = 0; e < E; e++)
                            z[u][e] = -INFINITY;
                    }
                }
                absorb(z);
            }
        }
    }
    // the row's (max, sum): over the warp, the block, then the cluster
    warp_merge2(m, s);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        red_m[warp] = m;
        red_s[warp] = s;
    }
    __syncthreads();
    if (warp == 0) {
        m = lane < TH / 32 ? red_m[lane] : -INFINITY;
        s = lane < TH / 32 ? red_s[lane] : 0.0f;
        warp_merge2(m, s);
        // lane 0's pair for every block: the lanes' sums may differ in the last bit (merge2's
        // products contract into an FMA in either order)
        m = __shfl_sync(0xffffffffu, m, 0);
        s = __shfl_sync(0xffffffffu, s, 0);
    }
    // A block alone hands its (max, sum) to its warps through parts[0]. In a cluster, the block's
    // pair is pushed into every block's parts (lane q to block q), each push completing bytes on
    // that block's parts_full: no cluster barrier here, whose release (a MEMBAR.GPU a thread) and
    // later arrive cost the vocabulary rows 3-10 points of copy (bench/NOTES.md, softmax). A block
    // reads only its own shared memory, and leaves only once every push into it has landed, so no
    // block waits for another's exit.
    if (ONE) {
        if (threadIdx.x == 0)
            parts[0] = make_float2(m, s);
        __syncthreads();
    } else {
        cluster_wait(); // every block's parts_full is initialized
        if (warp == 0 && lane < cl)
            push_pair(&parts[rank], &parts_full, lane, m, s);
        mbar_wait<true>(&parts_full, 0);
    }
    m = lane < cl ? parts[lane].x : -INFINITY;
    s = lane < cl ? parts[lane].y : 0.0f;
    warp_merge2(m, s);
    m = __shfl_sync(0xffffffffu, m, 0); // one (max, sum) for every thread of the row
    s = __shfl_sync(0xffffffffu, s, 0);
    uint4 *y = reinterpret_cast<uint4 *>(mlxn_rows_ptr(&a.y, r)) + w0;
    // the outputs, with the row's variant decided once: plain 2^(z - m) / s, log (z - m) ln 2 - ln s
    auto outputs = [&](auto log_c) {
        constexpr bool LOG = decltype(log_c)::value;
        const float inv = 1.0f / s, ls = logf(s);
        // a word's outputs (the tail's and the register words'; the shared-memory loop keeps these
        // lines inline: through store, the f32 kernels with a mask or softcap changed machine code)
        auto store = [&](uint4 *yw, const float (&z)[E]) {
            __align__(16) T out[E];
#pragma unroll
            for (int e = 0; e < E; e++)
                out[e] = from_f<T>(LOG ? fmaf(z[e] - m, LN2, -ls) : ex2(z[e] - m) * inv);
            *yw = *reinterpret_cast<const uint4 *>(out);
        };
        if (TAIL) { // the tail first (from L2, before the stores push it out), then the register words
            const uint64_t pol = l2_evict_first();
            for (int i0 = threadIdx.x; i0 < nt; i0 += UT * TH) {
                uint4 xw[UT];
                load_tail(i0, pol, xw);
#pragma unroll
                for (int u = 0; u < UT; u++) {
                    const int i = i0 + u * TH;
                    if (i < nt) {
                        float z[E];
                        logits(xw[u], xw[u], z);
                        store(y + RW + ps + i, z);
                    }
                }
            }
#pragma unroll
            for (int k = 0; k < R; k++) {
                const int j = threadIdx.x + k * TH;
                if (j < nr) {
                    float z[E];
                    logits(xr[k], xr[k], z);
                    store(y + j, z);
                }
            }
        }
        uint4 *ys = y + RW;
        for (int i = threadIdx.x; i < ns; i += TH) {
            float z[E];
            if (zs) {
#pragma unroll
                for (int k = 0; k < E / 4; k++)
                    reinterpret_cast<float4 *>(z)[k] = zp[k * pl + i];
            } else {
                logits(xs[i], V == 0 && mk ? ms[i] : xs[i], z);
            }
            __align__(16) T out[E];
#pragma unroll
            for (int e = 0; e < E; e++)
                out[e] = from_f<T>(LOG ? fmaf(z[e] - m, LN2, -ls) : ex2(z[e] - m) * inv);
            ys[i] = *reinterpret_cast<const uint4 *>(out);
        }
    };
    const bool log = V == 0 ? a.log : V == 2;
    if (m == -INFINITY) { // a row of -inf logits (all masked): zeros, or -inf for log-softmax
        __align__(16) T out[E];
#pragma unroll
        for (int e = 0; e < E; e++)
            out[e] = from_f<T>(log ? -INFINITY : 0.0f);
        for (int i = threadIdx.x; i < nw; i += TH)
            y[i] = *reinterpret_cast<const uint4 *>(out);
    } else if (log) {
        outputs(std::true_type());
    } else {
        outputs(std::false_type());
    }
#endif
}

// How many clusters of cl blocks of `kernel` (SH_TH threads and smem bytes of shared memory each)
// run at once on the current device (a cluster size over 8 must be allowed first)
template <typename K> cudaError_t max_clusters(K kernel, unsigned cl, size_t smem, int *n)
{
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = cl;
    attr.val.clusterDim.y = 1;
    attr.val.clusterDim.z = 1;
    cfg.gridDim = dim3(cl);
    cfg.blockDim = dim3(SH_TH);
    cfg.dynamicSmemBytes = smem;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    *n = 0;
    return cudaOccupancyMaxActiveClusters(n, kernel, &cfg);
}

// Whether clusters of 16 of `kernel` (a size the hardware does not promise) run on device dev:
// asked once per device and kernel (known, yes: bits per device, the caller's per kernel), at the
// largest slice `smem` (one block an SM; a smaller slice only lets more share an SM), after
// allowing the size for this kernel.
template <typename K>
cudaError_t wide_clusters(K kernel, int dev, size_t smem, unsigned long long &known, unsigned long long &yes, bool *ok)
{
    *ok = false;
    if (dev >= 64)
        return cudaSuccess;
    *ok = __atomic_load_n(&yes, __ATOMIC_RELAXED) >> dev & 1;
    if (__atomic_load_n(&known, __ATOMIC_RELAXED) >> dev & 1)
        return cudaSuccess;
    int clusters = 0;
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    if (e == cudaSuccess)
        e = max_clusters(kernel, 16, smem, &clusters);
    if (e != cudaSuccess)
        return e;
    *ok = clusters > 0;
    if (*ok)
        __atomic_fetch_or(&yes, 1ull << dev, __ATOMIC_RELAXED);
    __atomic_fetch_or(&known, 1ull << dev, __ATOMIC_RELAXED);
    return cudaSuccess;
}

// Words a thread keeps in registers in softmax_rows_shared's register form (its R; 64 of its 128
// registers)
constexpr int SH_R = 16;

// Rows whose slices in clusters of 8 take an SM each (over about half its shared memory): the
// cluster size of 2 to 8 blocks with the fewest rounds of rows times the slice, a round being as
// many rows as clusters run at once. Sizes whose slices fit (cap) run the shared-memory kernel;
// sizes under 5, for rows without a mask or softcap (regs_ok), the register form (*regs: SH_R words
// a thread in registers, what is past them and shared memory read twice, the second time from
// L2, while the tails of the rows in flight take at most half of it). 64 x 262144 f32 on an H100:
// clusters of 8 run 15 at once (5 rounds of an eighth of a row) at 79.7% of copy, of 5 22 (3
// rounds of a fifth) at 82.2%, of 2 in the register form 66 (one round of a half) at 86.1%
// (bench/NOTES.md, softmax). A row alone keeps 8; ties keep the larger size. The counts are asked
// once per device, size and kernel (known, the caller's: with one block an SM they do not depend
// on the slice).
template <typename K, typename KR>
cudaError_t lone_cluster_size(K kernel, KR kernel_r, bool regs_ok, const mlxn_softmax_args &a, int64_t words,
                              size_t cap, int dev, int (&known)[64][7][2], unsigned *cl, bool *regs)
{
    const int64_t wb = 16 * (a.mask.base ? 2 : 1), room = (int64_t)cap / wb; // words shared memory holds
    int l2 = 0;
    const cudaError_t e = cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev);
    if (e != cudaSuccess)
        return e;
    int64_t best_rounds = 0;
    *cl = 8; // also where 8's slices do not fit (the caller then passes on to 16)
    *regs = false;
    for (unsigned c = 8; c >= 2; c--) {
        const int64_t per = (words + c - 1) / c;
        const bool r = per > room;
        if (r && (c == 8 || !regs_ok)) // (smaller clusters have larger slices)
            break;
        if (r && c >= 5) // the register form measured slower than the shared-memory kernel at 5 to 8
            continue;
        int n = dev < 64 ? __atomic_load_n(&known[dev][c - 2][r], __ATOMIC_RELAXED) : 0;
        if (n <= 0) {
            const cudaError_t e = r ? max_clusters(kernel_r, c, cap, &n) : max_clusters(kernel, c, cap, &n);
            if (e != cudaSuccess)
                return e;
            if (n <= 0)
                continue;
            if (dev < 64)
                __atomic_store_n(&known[dev][c - 2][r], n, __ATOMIC_RELAXED);
        }
        const int64_t rounds = (a.n_rows + n - 1) / n, tail = per - room - SH_R * SH_TH;
        if (r && tail > 0 && (a.n_rows < n ? a.n_rows : n) * c * tail * wb > l2 / 2)
            continue;
        if (best_rounds == 0 || rounds * *cl < best_rounds * c) { // rounds / c < best_rounds / *cl
            best_rounds = rounds;
            *cl = c;
            *regs = r;
        }
    }
    return cudaSuccess;
}

// The shared-memory cluster kernel where a block's slice of x and mask fits: clusters of 8 blocks,
// two an SM where the slices allow (up to ~111 KB) else one (~227 KB; then 2 to 8 blocks,
// lone_cluster_size, the register form under 5 for rows without a mask or softcap); clusters of 16
// (where the GPU runs them) only for rows that 8 cannot hold (one block an SM in 8 measured faster
// than two in 16: bench/NOTES.md, softmax). *done false: the caller takes the generic kernel.
template <typename T, int V> cudaError_t launch_cluster(const mlxn_softmax_args &a, cudaStream_t s, bool pdl, bool *done)
{
    static unsigned long long smem_done, smem_done_r, wide_known, wide_yes; // per kernel, bits per device
    static int lone_known[64][7][2];                                        // per device, size and kernel
    auto kernel = softmax_rows_shared<T, V>;
    // the register form where there is no mask (V == 0 keeps the plain kernel: with a mask's words
    // in registers it spilled and ran slower at every size, bench/NOTES.md, softmax)
    auto kernel_r = softmax_rows_shared<T, V, SH_TH, V == 0 ? 0 : SH_R>;
    const int64_t words = a.n / (16 / (int64_t)sizeof(T)), wb = 16 * (a.mask.base ? 2 : 1);
    *done = false;
    int dev = 0, max_smem = 0, sm_smem = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&sm_smem, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
    // a block's own: the static shared memory (~140 bytes) and the 1 KB the system reserves
    const size_t caps[2] = {(size_t)sm_smem / 2 - 2048, (size_t)max_smem - 1024};
    if (e == cudaSuccess)
        e = allow_smem(kernel, caps[1], smem_done);
    if (e == cudaSuccess && V != 0)
        e = allow_smem(kernel_r, caps[1], smem_done_r);
    for (unsigned cl = 8; cl <= 16 && e == cudaSuccess; cl *= 2) {
        bool runs = cl == 8; // 16 where the device runs it
        if (!runs && (e = wide_clusters(kernel, dev, caps[1], wide_known, wide_yes, &runs)) != cudaSuccess)
            break;
        for (int c = 0; c < 2 && runs; c++) {
            unsigned size = cl;
            bool regs = false;
            if (cl == 8 && c == 1 &&
                (e = lone_cluster_size(kernel, kernel_r, V != 0, a, words, caps[1], dev, lone_known, &size, &regs)) !=
                    cudaSuccess)
                return e;
            const int64_t per = (words + size - 1) / size; // words a block
            // in the register form, shared memory holds what registers do not, up to its room
            int64_t ps = regs ? per - SH_R * SH_TH : per;
            ps = ps < 0 ? 0 : regs && ps * wb > (int64_t)caps[1] ? (int64_t)caps[1] / wb : ps;
            const size_t smem = (size_t)(ps * wb);
            if (smem > caps[c] || a.n_rows > INT32_MAX / size) // one row a cluster: the grid's x is under 2^31
                continue;
            *done = true;
            const dim3 grid((unsigned)(a.n_rows * size));
            return regs ? launch_clustered(kernel_r, grid, dim3(SH_TH), smem, s, pdl, size, a, per, ps)
                        : launch_clustered(kernel, grid, dim3(SH_TH), smem, s, pdl, size, a, per, ps);
        }
    }
    return e;
}

// A block a row (ROW_TH threads), x and mask in ROW_BYTES or less
template <typename T, int V> cudaError_t launch_rows(const mlxn_softmax_args &a, cudaStream_t s, bool pdl)
{
    const int64_t per = a.n / (16 / (int64_t)sizeof(T)); // the row's words
    const size_t smem = (size_t)per * 16 * (a.mask.base ? 2 : 1);
    return launch(softmax_rows_shared<T, V, ROW_TH>, dim3((unsigned)a.n_rows), dim3(ROW_TH), smem, s, pdl, a, per, per);
}

// the shared-memory kernels' bodies are sm_90 only (sm90_device)
bool sm90()
{
    int dev = 0;
    bool yes = false;
    return sm90_device(&dev, &yes) == cudaSuccess && yes;
}

// The rows' variant as a template argument of the kernels (softmax_row): 0 with a mask or a
// softcap, 1 softmax, 2 log-softmax; f(T(), V) launches for the call's dtype and variant.
template <typename T, typename F> cudaError_t by_variant(const mlxn_softmax_args &a, F &f)
{
    if (a.mask.base || a.softcap > 0.0f)
        return f(T(), std::integral_constant<int, 0>());
    return a.log ? f(T(), std::integral_constant<int, 2>()) : f(T(), std::integral_constant<int, 1>());
}

template <typename F> cudaError_t by_type(const mlxn_softmax_args &a, F &&f)
{
    switch (a.dtype) {
    case MLXN_DTYPE_F32: return by_variant<float>(a, f);
    case MLXN_DTYPE_F16: return by_variant<__half>(a, f);
    default: return by_variant<__nv_bfloat16>(a, f); // ops.c admits f32, f16 and bf16
    }
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_softmax(const mlxn_softmax_args *a, cudaStream_t s, bool pdl)
{
    const dim3 grid((unsigned)(a->n_rows < 65535 ? a->n_rows : 65535));
    const bool in_registers = a->n % RUN == 0 && a->n <= (int64_t)THREADS * 8 * RUN && rows_aligned16(a->x) &&
                              rows_aligned16(a->mask) && rows_aligned16(a->y);
    const uint64_t row_bytes = (uint64_t)a->n * (a->dtype == MLXN_DTYPE_F32 ? 4 : 2) * (a->mask.base ? 2 : 1);
    const bool a_block_a_row = in_registers && a->n_rows <= INT32_MAX && row_bytes >= ROW_MIN &&
                               row_bytes <= ROW_BYTES && sm90();
    if (a_block_a_row)
        return by_type(*a, [&](auto t, auto v) { return launch_rows<decltype(t), decltype(v)::value>(*a, s, pdl); });
    if (in_registers)
        return by_type(*a, [&](auto t, auto v) {
            return launch_in_registers<decltype(t), decltype(v)::value>(*a, grid, s, pdl);
        });
    const bool in_cluster = a->n % RUN == 0 && rows_aligned16(a->x) && rows_aligned16(a->mask) &&
                            rows_aligned16(a->y) && sm90();
    if (in_cluster) {
        bool done = false;
        const cudaError_t e = by_type(
            *a, [&](auto t, auto v) { return launch_cluster<decltype(t), decltype(v)::value>(*a, s, pdl, &done); });
        if (done || e != cudaSuccess)
            return e;
    }
    return launch(softmax_rows, grid, dim3(THREADS), 0, s, pdl, *a);
}
