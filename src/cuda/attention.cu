// Attention over a KV cache on CUDA. Per (batch row b, query t, query head h) with KV head
// h / G (G = Hq / Hkv), the query at position p = pos[b] + t sees keys lo(p) <= j < hi(p):
// hi = p + 1 when causal (else pos[b] + Tq), lo = p - window + 1 with a window (else 0).
//
// Kernels, in the launcher's order (the shape rules are in attention_plan.h):
//
//   attention_decode (attention_decode.cu)
//       up to 8 query rows per KV head (decode, and short chunks of small groups); any cache
//       dtype (q8_0 read as it is stored, half the bytes of f16); D a multiple of 8; f32
//       arithmetic. attention_decode_mma there: f16 caches past 16 MiB at D 32, 64, 96 or 128,
//       the products on tensor cores with q and p split into f16 high and low parts (f32's
//       accuracy).
//
//   attention_prefill_mma
//       f16/bf16 caches, D in {64, 80, 96, 128, 256}, more rows: flash attention on tensor
//       cores (mma.sync m16n8k16, f32 accumulation). A block owns 64 rows of the packed
//       (query, head-in-group) space of one KV head (so GQA reads K/V once per group here too),
//       4 warps of 16 rows; K/V tiles of 64 (16 for D 256) keys in two cp.async stages; tiles
//       outside the block's visible key range (causal upper triangle, below the window) are
//       skipped, and a warp skips tiles none of its rows see. q is rounded to the cache's type
//       when loaded (exact when q has that type), P to that type before P V. When the row tiles
//       are too few to fill the GPU (decode of groups over 8 heads, short chunks of a few
//       sequences) the keys are split across blocks too (flash-decoding; the split size comes
//       from the cache capacity S at launch, never from pos, which lives in device memory and
//       may change between replays of a captured graph: blocks whose split starts past the
//       valid keys exit at once), and attention_merge combines the splits below pos[b] + Tq.
//       attention_prefill_wgmma (attention_prefill_wgmma.cu) takes D 64, 128 and 256 on an sm_90
//       device: the same contract and splits on Hopper's warpgroup tensor cores.
//
//   attention_generic
//       everything else (f32 and q8_0 caches with many rows, D 512 with many rows, odd head
//       dims, unaligned views): a warp per query row, f32. A q8_0 cache's blocks are read with
//       byte loads (any alignment); a key's dot product is taken per block and scaled by d.
//
// A batch row with pos[b] < 0 or pos[b] + Tq > S gets NaN outputs.
#include "attention_prefill.cuh"

namespace {

// The splits of each query row combined: a warp per row (b, t, h), lanes over D.
__global__ void __launch_bounds__(128) attention_merge(const mlxn_attention_args a, const KeySplit sp)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    constexpr int PER_LANE = MLXN_ATTENTION_MAX_D / 32;
    const int lane = threadIdx.x & 31, D = (int)a.D, Hq = (int)a.Hq, Tq = (int)a.Tq;
    const int rows = (int)a.B * Tq * Hq;
    for (int row = blockIdx.x * 4 + (threadIdx.x >> 5); row < rows; row += gridDim.x * 4) {
        const int h = row % Hq, t = (row / Hq) % Tq, b = row / (Hq * Tq), first = a.pos[b];
        char *o = o_row(a, b, t, h);
        if (!pos_in_range(a, first)) {
            for (int d = lane; d < D; d += 32)
                store_any(a.q_dtype, o, d, NAN);
            continue;
        }
        const int n = (first + Tq - 1) / sp.chunk + 1; // the splits that ran
        const float *ml = sp.part_ml + (size_t)row * sp.splits * 2;
        const float *po = sp.part_o + (size_t)row * sp.splits * D;
        float m = -INFINITY;
        for (int s = 0; s < n; s++)
            m = fmaxf(m, ml[2 * s]);
        float acc[PER_LANE], l = 0.0f;
#pragma unroll
        for (int i = 0; i < PER_LANE; i++)
            acc[i] = 0.0f;
        for (int s = 0; m != -INFINITY && s < n; s++) {
            const float ms = ml[2 * s];
            if (ms == -INFINITY)
                continue;
            const float w = expf(ms - m);
            l += w * ml[2 * s + 1];
#pragma unroll
            for (int i = 0; i < PER_LANE; i++)
                if (lane + 32 * i < D)
                    acc[i] = fmaf(w, po[(size_t)s * D + lane + 32 * i], acc[i]);
        }
        const float inv = inverse_denominator(a, h, m, l);
#pragma unroll
        for (int i = 0; i < PER_LANE; i++)
            if (lane + 32 * i < D)
                store_any(a.q_dtype, o, lane + 32 * i, acc[i] * inv);
    }
}

// ------------------------------------------------------------------ prefill on tensor cores

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

constexpr int PF_THREADS = 128;

template <int D> struct PrefillShape {
    static constexpr int MW = D <= 128 ? 2 : 1;   // 16-row tiles per warp: each K and V fragment
                                                  // loaded from shared memory serves MW of them
    static constexpr int BM = 4 * 16 * MW;        // rows per block (4 warps)
    static constexpr int BN = D <= 128 ? 64 : 16; // keys per tile (a load stage)
    static constexpr int SB = BN < 32 ? BN : 32;  // keys per sub-tile (S and P in registers)
    static constexpr int LD = D + 8;              // shared row stride (elements): 8 ldmatrix rows
                                                  // land on distinct bank groups
    static constexpr size_t SMEM = (size_t)(BM + 4 * BN) * LD * 2;
};

// q's rows in shared memory padded to LD elements (stage_q's layout)
template <int D> struct PaddedRows {
    static __device__ __forceinline__ int chunk(int r, int ch) { return (r * PrefillShape<D>::LD + ch * 8) * 2; }
};

// Keys j0 .. j0 + BN - 1 of K and V into a stage; keys at or past `valid` are zero-filled.
template <typename KV, int D>
__device__ __forceinline__ void prefill_load_tile(const mlxn_attention_args &a, const char *kbase, const char *vbase,
                                                  int j0, int valid, KV *stage)
{
    using S = PrefillShape<D>;
    const uint32_t kd = smem_addr(stage), vd = kd + (uint32_t)(S::BN * S::LD * 2);
    for (int i = threadIdx.x; i < S::BN * (D / 8); i += PF_THREADS) {
        const int row = i / (D / 8), ch = i % (D / 8);
        const int64_t j = j0 + row;
        const bool in = j < valid;
        const uint32_t so = (uint32_t)((row * S::LD + ch * 8) * 2);
        cp_async16(kd + so, kbase + (in ? j : 0) * a.k.s2 + ch * 16, in ? 16 : 0);
        cp_async16(vd + so, vbase + (in ? j : 0) * a.v.s2 + ch * 16, in ? 16 : 0);
    }
}

// Shared memory (16-bit elements, rows of LD):
//   qs [BM][LD]                       the block's query rows (packed (t, head-in-group) order)
//   stage s (0, 1): K [BN][LD], V [BN][LD]
// A warp owns MW 16-row tiles. Fragments (mma.m16n8k16, lane = 4 g + tq):
//   S = Q K^T  accumulators per (row tile m, 8-key tile): (row g, keys 2tq, 2tq+1), (row g + 8,
//   same keys); a thread's rows are m 16 + 8 h + g (h = 0, 1)
//   P as the A operand of P V reuses those registers: two 8-key tiles make one 16-key step.
// Tiles that every row of the warp sees whole, with no softcap or mask (most tiles of a long
// chunk), skip the per-key visibility test.
// (min blocks 2: the register file holds two blocks of 255 registers, and at D 128 the shared
// memory two blocks)
template <typename KV, int D>
__global__ void __launch_bounds__(PF_THREADS, 2) attention_prefill_mma(const mlxn_attention_args a, const KeySplit sp,
                                                                       QMode q_mode)
{
    using S = PrefillShape<D>;
    constexpr int MW = S::MW, BM = S::BM, BN = S::BN, SB = S::SB, LD = S::LD, NT = SB / 8, DT = D / 8;
    extern __shared__ __align__(16) unsigned char smem[];
    KV *qs = reinterpret_cast<KV *>(smem);
    KV *kvs = qs + BM * LD;
    wait_for_previous_kernel();
    allow_next_kernel();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, tq = lane & 3;
    // shared addresses of this lane's ldmatrix rows (bytes): Q rows of the warp's first tile
    // (k halves by lane / 16; tile m is 16 rows further), K rows of keys 0..7 / 8..15 (by lane /
    // 16, d halves by lane / 8 % 2), V rows of keys 0..15 (d halves by lane / 16)
    const uint32_t q_frag = smem_addr(qs) + (uint32_t)(((warp * 16 * MW + (lane & 15)) * LD + (lane >> 4) * 8) * 2);
    const uint32_t k_frag = (uint32_t)((((lane >> 4) * 8 + (lane & 7)) * LD + ((lane >> 3) & 1) * 8) * 2);
    const uint32_t v_frag = (uint32_t)(((lane & 15) * LD + (lane >> 4) * 8) * 2);
    const uint32_t kv_addr = smem_addr(kvs);
    const float scale_log2 = a.scale * LOG2E;
    const int G = (int)(a.Hq / a.Hkv), R = G * (int)a.Tq, Hkv = (int)a.Hkv, row_tiles = (R + BM - 1) / BM;
    // blocks start in blockIdx order, x fastest: the late rows (the most keys) of every (batch
    // row, KV head) first, so the short tiles fill the tail
    for (int tile = blockIdx.y; tile < row_tiles; tile += gridDim.y)
        for (int bh = blockIdx.x; bh < (int)a.B * Hkv; bh += gridDim.x) {
            const int row0 = (row_tiles - 1 - tile) * BM;
            const int b = bh / Hkv, hk = bh % Hkv, first = a.pos[b];
            const int rows_here = R - row0 < BM ? R - row0 : BM;
            __syncthreads(); // shared memory of the previous tile is no longer read
            if (!pos_in_range(a, first)) {
                if (sp.splits == 1) // with splits the merge kernel writes the NaN rows
                    prefill_nan_rows<D>(a, b, hk, G, row0, rows_here, tid, PF_THREADS);
                continue;
            }
            // this block's split of the keys: [k0, k1)
            const int valid = first + (int)a.Tq;
            int k0, k1;
            if (!split_keys(sp, blockIdx.z, valid, k0, k1))
                continue;
            stage_q<KV, D, BM, PF_THREADS, PaddedRows<D>>(a, q_mode, b, hk, G, row0, rows_here,
                                                           reinterpret_cast<char *>(qs), tid);
            // keys the block sees: from the first row's lo to the last row's hi, within the split
            int blo, bhi;
            rows_keys<false>(a, first, row0, row0 + rows_here - 1, G, k0, k1, blo, bhi);
            // this warp's rows: the keys any of them sees [wlo, whi) and the keys all of them see
            // [flo, fhi) (lo and hi grow with the row)
            WarpRows wr = {first, k0, k1, R, G, row0 + warp * 16 * MW, 0, 0};
            int wlo = 0, whi = 0;
            if (wr.wrow0 < R) {
                const int wlast = wr.wrow0 + 16 * MW - 1 < R ? wr.wrow0 + 16 * MW - 1 : R - 1;
                rows_keys<false>(a, first, wr.wrow0, wlast, G, k0, k1, wlo, whi);
                rows_keys<true>(a, first, wr.wrow0, wlast, G, k0, k1, wr.flo, wr.fhi);
            }
            float oacc[MW][DT][4];
#pragma unroll
            for (int m = 0; m < MW; m++)
#pragma unroll
                for (int i = 0; i < DT; i++)
                    oacc[m][i][0] = oacc[m][i][1] = oacc[m][i][2] = oacc[m][i][3] = 0.0f;
            float mrow[MW][2], lrow[MW][2];
#pragma unroll
            for (int m = 0; m < MW; m++)
                mrow[m][0] = mrow[m][1] = -INFINITY, lrow[m][0] = lrow[m][1] = 0.0f;
            const char *kbase = a.k.base + b * a.k.s0 + hk * a.k.s1, *vbase = a.v.base + b * a.v.s0 + hk * a.v.s1;
            const int kt0 = blo / BN, n_tiles = blo < bhi ? (bhi - 1) / BN + 1 - kt0 : 0;
            if (n_tiles > 0) {
                prefill_load_tile<KV, D>(a, kbase, vbase, kt0 * BN, valid, kvs);
                cp_async_commit();
            }
            for (int it = 0; it < n_tiles; it++) {
                if (it + 1 < n_tiles) {
                    prefill_load_tile<KV, D>(a, kbase, vbase, (kt0 + it + 1) * BN, valid,
                                             kvs + (size_t)((it + 1) & 1) * 2 * BN * LD);
                    cp_async_commit();
                    cp_async_wait<1>();
                } else {
                    cp_async_wait<0>();
                }
                __syncthreads(); // the tile and (first time) qs are visible
                const uint32_t ks = kv_addr + (uint32_t)((it & 1) * 2 * BN * LD * 2), vs = ks + BN * LD * 2;
                // the tile in sub-tiles of SB keys: S and P of one sub-tile in registers at a time
#pragma unroll 1
                for (int sb = 0; sb < BN / SB; sb++) {
                    const int j0 = (kt0 + it) * BN + sb * SB;
                    if (j0 < whi && j0 + SB > wlo) {
                        float sacc[MW][NT][4];
#pragma unroll
                        for (int m = 0; m < MW; m++)
#pragma unroll
                            for (int i = 0; i < NT; i++)
                                sacc[m][i][0] = sacc[m][i][1] = sacc[m][i][2] = sacc[m][i][3] = 0.0f;
#pragma unroll
                        for (int kk = 0; kk < D / 16; kk++) {
                            uint32_t af[MW][4];
#pragma unroll
                            for (int m = 0; m < MW; m++)
                                ldmatrix_x4(af[m], q_frag + (uint32_t)((m * 16 * LD + kk * 16) * 2));
#pragma unroll
                            for (int nb = 0; nb < NT / 2; nb++) {
                                uint32_t bf[4];
                                ldmatrix_x4(bf, ks + k_frag + ((sb * SB + nb * 16) * LD + kk * 16) * 2);
#pragma unroll
                                for (int m = 0; m < MW; m++) {
                                    Mma<KV>::run(sacc[m][2 * nb], af[m], bf[0], bf[1]);
                                    Mma<KV>::run(sacc[m][2 * nb + 1], af[m], bf[2], bf[3]);
                                }
                            }
                        }
                        float al[MW][2];
                        if (prefill_softmax<MW, NT>(a, wr, j0, g, tq, scale_log2, sacc, mrow, lrow, al))
#pragma unroll
                            for (int m = 0; m < MW; m++)
                                rescale_rows(oacc[m], al[m]);
#pragma unroll
                        for (int kb = 0; kb < SB / 16; kb++) {
                            uint32_t pf[MW][4];
#pragma unroll
                            for (int m = 0; m < MW; m++)
                                pack_p<KV>(sacc[m], kb, pf[m]);
#pragma unroll
                            for (int db = 0; db < D / 16; db++) {
                                uint32_t vf[4];
                                ldmatrix_x4_trans(vf, vs + v_frag + ((sb * SB + kb * 16) * LD + db * 16) * 2);
#pragma unroll
                                for (int m = 0; m < MW; m++) {
                                    Mma<KV>::run(oacc[m][2 * db], pf[m], vf[0], vf[1]);
                                    Mma<KV>::run(oacc[m][2 * db + 1], pf[m], vf[2], vf[3]);
                                }
                            }
                        }
                    }
                }
                __syncthreads(); // the stage is reloaded next
            }
            prefill_store<MW, D>(a, sp, blockIdx.z, b, hk, wr, g, tq, oacc, mrow, lrow);
        }
}

// ------------------------------------------------------------------ generic: a warp per row

constexpr int GEN_WARPS = 4;

// Element i of a cache row: Q8 (a q8_0 cache, any alignment) or a plain dtype.
template <bool Q8> __device__ __forceinline__ float kv_element(const mlxn_attention_args &a, const char *row, int i)
{
    if constexpr (Q8)
        return q8_scale_bytes(row + (i >> 5) * Q8_BLOCK_BYTES) * q8_code(row, i);
    else
        return load_any(a.kv_dtype, row, i);
}

// q . k of a q8_0 row: per block, the codes against q, scaled once.
__device__ __forceinline__ float q8_row_dot(const float *q, const char *k, int D)
{
    float dot = 0.0f;
    for (int b = 0; b < D / 32; b++) {
        float part = 0.0f;
#pragma unroll 8
        for (int e = 0; e < 32; e++)
            part = fmaf(q[b * 32 + e], q8_code(k, b * 32 + e), part);
        dot = fmaf(q8_scale_bytes(k + b * Q8_BLOCK_BYTES), part, dot);
    }
    return dot;
}

template <bool Q8>
__global__ void __launch_bounds__(GEN_WARPS * 32) attention_generic(const mlxn_attention_args a)
{
    constexpr int PER_LANE = MLXN_ATTENTION_MAX_D / 32;
    __shared__ float qsh[GEN_WARPS][MLXN_ATTENTION_MAX_D];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float *q = qsh[warp];
    const int D = (int)a.D, Hq = (int)a.Hq, Tq = (int)a.Tq, G = (int)(a.Hq / a.Hkv), rows = (int)a.B * Tq * Hq;
    for (int row = blockIdx.x * GEN_WARPS + warp; row < rows; row += gridDim.x * GEN_WARPS) {
        const int h = row % Hq, t = (row / Hq) % Tq, b = row / (Hq * Tq), hk = h / G, first = a.pos[b];
        char *o = o_row(a, b, t, h);
        if (!pos_in_range(a, first)) {
            for (int d = lane; d < D; d += 32)
                store_any(a.q_dtype, o, d, NAN);
            continue;
        }
        __syncwarp(); // the previous row's q is no longer read
        for (int d = lane; d < D; d += 32)
            q[d] = load_any(a.q_dtype, q_row(a, b, t, h), d) * a.scale;
        __syncwarp();
        int lo, hi;
        visible_keys(a, first, t, lo, hi);
        const char *kbase = a.k.base + b * a.k.s0 + hk * a.k.s1, *vbase = a.v.base + b * a.v.s0 + hk * a.v.s1;
        float m = -INFINITY, l = 0.0f, acc[PER_LANE];
#pragma unroll
        for (int i = 0; i < PER_LANE; i++)
            acc[i] = 0.0f;
        for (int j0 = lo; j0 < hi; j0 += 32) {
            // lane i: the logit of key j0 + i
            const int j = j0 + lane;
            float z = -INFINITY;
            if (j < hi) {
                const char *k = kbase + j * a.k.s2;
                float dot = 0.0f;
                if constexpr (Q8)
                    dot = q8_row_dot(q, k, D);
                else
                    for (int d = 0; d < D; d++)
                        dot = fmaf(q[d], load_any(a.kv_dtype, k, d), dot);
                z = finish_logit(a, dot, t, j);
            }
            const float mn = fmaxf(m, warp_max(z));
            if (mn == -INFINITY)
                continue; // nothing visible yet
            const float alpha = m == -INFINITY ? 0.0f : expf(m - mn);
            m = mn;
            l *= alpha;
#pragma unroll
            for (int i = 0; i < PER_LANE; i++)
                acc[i] *= alpha;
            const float p = z == -INFINITY ? 0.0f : expf(z - mn);
            l += p;
            const int n = hi - j0 < 32 ? (int)(hi - j0) : 32;
            for (int jj = 0; jj < n; jj++) {
                const float w = __shfl_sync(0xffffffffu, p, jj);
                if (w == 0.0f)
                    continue;
                const char *v = vbase + (j0 + jj) * a.v.s2;
#pragma unroll
                for (int i = 0; i < PER_LANE; i++)
                    if (lane + 32 * i < a.D)
                        acc[i] = fmaf(w, kv_element<Q8>(a, v, lane + 32 * i), acc[i]);
            }
        }
        const float inv = inverse_denominator(a, h, m, warp_sum(l));
#pragma unroll
        for (int i = 0; i < PER_LANE; i++)
            if (lane + 32 * i < a.D)
                store_any(a.q_dtype, o, lane + 32 * i, acc[i] * inv);
    }
}

// ------------------------------------------------------------------ launch

// Splits of the keys: enough blocks for two per SM over `units` blocks per split, each split at
// least two key tiles, no more than the scratch holds. From S, never from pos.
KeySplit plan_split(const mlxn_attention_args &a, int64_t units, int tile_keys, void *scratch, size_t scratch_bytes,
                    int sms)
{
    KeySplit sp = {};
    const int64_t rows = a.B * a.Tq * a.Hq;
    const size_t per_split = (size_t)rows * (size_t)(a.D + 2) * sizeof(float);
    int64_t splits = 1;
    if (scratch && per_split > 0) {
        splits = (2 * (int64_t)sms + units - 1) / units;
        const int64_t by_len = a.S / (2 * tile_keys), by_scratch = (int64_t)(scratch_bytes / per_split);
        splits = splits < by_len ? splits : by_len;
        splits = splits < by_scratch ? splits : by_scratch;
        if (splits < 2)
            splits = 1;
    }
    if (splits == 1) {
        sp.chunk = a.S > 0 ? (int)a.S : 1;
    } else {
        const int64_t per = (a.S + splits - 1) / splits;
        sp.chunk = (int)((per + tile_keys - 1) / tile_keys * tile_keys);
        splits = (a.S + sp.chunk - 1) / sp.chunk;
        sp.part_o = static_cast<float *>(scratch);
        sp.part_ml = sp.part_o + (size_t)rows * (size_t)splits * (size_t)a.D;
    }
    sp.splits = (int)splits;
    return sp;
}

cudaError_t launch_merge(const mlxn_attention_args &a, const KeySplit &sp, cudaStream_t s, bool pdl)
{
    const int64_t rows = a.B * a.Tq * a.Hq;
    return launch(attention_merge, dim3(grid_dim((rows + 3) / 4, 1 << 20)), dim3(128), 0, s, pdl, a, sp);
}

template <typename KV, int D>
cudaError_t launch_prefill(const mlxn_attention_args &a, void *scratch, size_t scratch_bytes, int sms, cudaStream_t s,
                           bool pdl)
{
    int block_rows = PrefillShape<D>::BM, tile_keys = PrefillShape<D>::BN;
    const bool wgmma = attention_prefill_wgmma_plan(a, block_rows, tile_keys);
    const int64_t rows = a.Hq / a.Hkv * a.Tq, tiles = (rows + block_rows - 1) / block_rows;
    // few row tiles (decode of large groups, short chunks of one sequence): split the keys too
    const KeySplit sp = plan_split(a, tiles * a.B * a.Hkv, tile_keys, scratch, scratch_bytes, sms);
    const QMode q_mode = prefill_q_mode(a);
    cudaError_t e;
    if (wgmma) {
        e = launch_attention_prefill_wgmma(a, sp, q_mode, s, pdl);
    } else {
        static unsigned long long smem_done;
        auto kernel = attention_prefill_mma<KV, D>;
        e = allow_smem(kernel, PrefillShape<D>::SMEM, smem_done);
        if (e == cudaSuccess)
            e = launch(kernel, dim3(grid_dim(a.B * a.Hkv, INT32_MAX), grid_dim(tiles, 65535), (unsigned)sp.splits),
                       dim3(PF_THREADS), PrefillShape<D>::SMEM, s, pdl, a, sp, q_mode);
    }
    if (e != cudaSuccess || sp.splits == 1)
        return e;
    return launch_merge(a, sp, s, pdl);
}

template <typename KV>
cudaError_t launch_prefill_d(const mlxn_attention_args &a, void *scratch, size_t scratch_bytes, int sms, cudaStream_t s,
                             bool pdl)
{
    switch (a.D) {
    case 64: return launch_prefill<KV, 64>(a, scratch, scratch_bytes, sms, s, pdl);
    case 80: return launch_prefill<KV, 80>(a, scratch, scratch_bytes, sms, s, pdl);
    case 96: return launch_prefill<KV, 96>(a, scratch, scratch_bytes, sms, s, pdl);
    case 128: return launch_prefill<KV, 128>(a, scratch, scratch_bytes, sms, s, pdl);
    default: return launch_prefill<KV, 256>(a, scratch, scratch_bytes, sms, s, pdl);
    }
}

// K and V rows at 16-byte aligned addresses (base and every stride), rows a whole number of
// 16-byte units: what the cp.async kernels need.
bool kv_aligned16(const mlxn_attention_args &a)
{
    const int es = a.kv_dtype == MLXN_DTYPE_F32 ? 4 : 2;
    const uint64_t bits = (uint64_t)(uintptr_t)a.k.base | (uint64_t)(uintptr_t)a.v.base | (uint64_t)a.k.s0 |
                          (uint64_t)a.k.s1 | (uint64_t)a.k.s2 | (uint64_t)a.v.s0 | (uint64_t)a.v.s1 |
                          (uint64_t)a.v.s2 | (uint64_t)(a.D * es);
    return bits % 16 == 0;
}

// q8_0 K and V rows at even addresses (base and every stride): the decode kernel's 2-byte loads.
bool kv_q8_0_aligned2(const mlxn_attention_args &a)
{
    const uint64_t bits = (uint64_t)(uintptr_t)a.k.base | (uint64_t)(uintptr_t)a.v.base | (uint64_t)a.k.s0 |
                          (uint64_t)a.k.s1 | (uint64_t)a.k.s2 | (uint64_t)a.v.s0 | (uint64_t)a.v.s1 |
                          (uint64_t)a.v.s2;
    return bits % 2 == 0;
}

cudaError_t launch_generic(const mlxn_attention_args &a, cudaStream_t s, bool pdl)
{
    const dim3 grid(grid_dim((a.B * a.Tq * a.Hq + GEN_WARPS - 1) / GEN_WARPS, 1 << 20)), block(GEN_WARPS * 32);
    if (a.kv_dtype == MLXN_DTYPE_Q8_0)
        return launch(attention_generic<true>, grid, block, 0, s, pdl, a);
    return launch(attention_generic<false>, grid, block, 0, s, pdl, a);
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_attention(const mlxn_attention_args *a, void *scratch, size_t scratch_bytes,
                                                  int sms, cudaStream_t s, bool pdl)
{
    const int64_t rows = a->Hq / a->Hkv * a->Tq;
    // q8_0: the decode kernel reads the blocks as stored; longer chunks take the generic kernel
    // (the tensor-core kernel's tiles are 16-bit)
    if (a->kv_dtype == MLXN_DTYPE_Q8_0)
        return rows <= MLXN_CUDA_ATTENTION_DECODE_ROWS && kv_q8_0_aligned2(*a)
                   ? mlxn_cuda_launch_attention_decode(a, scratch, scratch_bytes, sms, s, pdl)
                   : launch_generic(*a, s, pdl);
    const bool aligned = kv_aligned16(*a);
    if (aligned && rows <= MLXN_CUDA_ATTENTION_DECODE_ROWS && a->D % 8 == 0)
        return mlxn_cuda_launch_attention_decode(a, scratch, scratch_bytes, sms, s, pdl);
    // the split partials of the prefill kernel lie past the decode kernel's counters
    if (scratch && scratch_bytes > MLXN_CUDA_ATTENTION_COUNTER_BYTES) {
        scratch = static_cast<char *>(scratch) + MLXN_CUDA_ATTENTION_COUNTER_BYTES;
        scratch_bytes -= MLXN_CUDA_ATTENTION_COUNTER_BYTES;
    } else {
        scratch = nullptr;
        scratch_bytes = 0;
    }
    if (aligned && mlxn_cuda_attention_on_tensor_cores(a->kv_dtype, a->D, rows)) {
        if (a->kv_dtype == MLXN_DTYPE_F16)
            return launch_prefill_d<__half>(*a, scratch, scratch_bytes, sms, s, pdl);
        return launch_prefill_d<__nv_bfloat16>(*a, scratch, scratch_bytes, sms, s, pdl);
    }
    return launch_generic(*a, s, pdl);
}
