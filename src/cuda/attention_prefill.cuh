// Pieces shared by the prefill (many query rows per KV head) attention kernels on tensor cores:
// attention_prefill_mma (attention.cu, mma.sync, any sm_80+) and attention_prefill_wgmma
// (attention_prefill_wgmma.cu, sm_90a): the key splits, how q is staged, the online softmax of
// one tile of logits held in mma accumulator layout, and the store of a warp's output rows.
#ifndef MLXN_CUDA_ATTENTION_PREFILL_CUH
#define MLXN_CUDA_ATTENTION_PREFILL_CUH

#include "attention_common.cuh"

namespace mlxn_cuda {

// The keys split across blocks (flash-decoding): split s covers keys [s chunk, (s + 1) chunk)
// and writes, per query row, its unnormalized output and running (max, sum); attention_merge
// combines them. With one split the blocks write o themselves.
struct KeySplit {
    int splits;
    int chunk;      // keys per split (a multiple of the kernel's key tile: any key count is correct)
    float *part_o;  // [B * Tq * Hq][splits][D]
    float *part_ml; // [B * Tq * Hq][splits][2]: max (natural-log units) and sum
};

// How the prefill kernels read q: element by element (any dtype and alignment), or in 16-byte
// chunks when the rows are 16-byte aligned and q has the cache's type (copied) or is f32
// (rounded in registers).
enum QMode { Q_ANY, Q_SAME16, Q_F32_16 };

// attention_prefill_wgmma (attention_prefill_wgmma.cu), D 64, 128 or 256 with f16 / bf16 caches,
// on an sm_90 device running its sm_90a code: true when it takes the call, with its block's rows
// and key tile (what the key split is planned for); false sends the call to
// attention_prefill_mma. The launch takes splits up to 65535.
bool attention_prefill_wgmma_plan(const mlxn_attention_args &a, int &rows_per_block, int &tile_keys);
cudaError_t launch_attention_prefill_wgmma(const mlxn_attention_args &a, const KeySplit &sp, QMode q_mode,
                                           cudaStream_t s, bool pdl);

} // namespace mlxn_cuda

namespace {

QMode prefill_q_mode(const mlxn_attention_args &a)
{
    const bool q16 = ((uint64_t)(uintptr_t)a.q.base | (uint64_t)a.q.s0 | (uint64_t)a.q.s1 | (uint64_t)a.q.s2) % 16 == 0;
    if (q16 && a.q_dtype == a.kv_dtype)
        return Q_SAME16;
    if (q16 && a.q_dtype == MLXN_DTYPE_F32)
        return Q_F32_16;
    return Q_ANY;
}

// x clamped to [0, n]
__device__ __forceinline__ int clamp_to_tile(int x, int n)
{
    return x < 0 ? 0 : x > n ? n : x;
}

constexpr float RESCALE_SLACK = 8.0f; // log2 units: see prefill_softmax

// The block's query rows [row0, row0 + BM) (packed (t, head-in-group) order; rows past rows_here
// are zero) into shared memory at qs, rounded to the cache's type KV, by NTH threads. Layout:
// the 16-byte chunk ch (elements 8 ch .. 8 ch + 7) of row r at byte Layout::chunk(r, ch).
template <typename KV, int D, int BM, int NTH, typename Layout>
__device__ __forceinline__ void stage_q(const mlxn_attention_args &a, QMode mode, int b, int hk, int G, int row0,
                                        int rows_here, char *qs, int tid)
{
    constexpr int CH = D / 8; // 8 elements a chunk
    if (mode == Q_ANY) {
        for (int i = tid; i < BM * D; i += NTH) {
            const int r = i / D, d = i % D, pr = row0 + r;
            float v = 0.0f;
            if (r < rows_here)
                v = load_any(a.q_dtype, q_row(a, b, pr / G, hk * G + pr % G), d);
            *reinterpret_cast<KV *>(qs + Layout::chunk(r, d / 8) + (d % 8) * 2) = Mma<KV>::from_f32(v);
        }
        return;
    }
#pragma unroll 1
    for (int i = tid; i < BM * CH; i += NTH) {
        const int r = i / CH, ch = i % CH, pr = row0 + r;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r < rows_here) {
            const char *src = q_row(a, b, pr / G, hk * G + pr % G);
            if (mode == Q_SAME16) {
                v = *reinterpret_cast<const uint4 *>(src + ch * 16);
            } else {
                const float4 lo = reinterpret_cast<const float4 *>(src)[2 * ch];
                const float4 hi = reinterpret_cast<const float4 *>(src)[2 * ch + 1];
                v = make_uint4(Mma<KV>::pack(lo.x, lo.y), Mma<KV>::pack(lo.z, lo.w), Mma<KV>::pack(hi.x, hi.y),
                               Mma<KV>::pack(hi.z, hi.w));
            }
        }
        *reinterpret_cast<uint4 *>(qs + Layout::chunk(r, ch)) = v;
    }
}

// Split `split` of the keys of a batch row whose valid keys end at `valid`: [k0, k1); false when
// it starts at or past them (such a block does nothing: the merge does not read it).
__device__ __forceinline__ bool split_keys(const KeySplit &sp, unsigned split, int valid, int &k0, int &k1)
{
    const int64_t k0_wide = (int64_t)split * sp.chunk;
    if (k0_wide >= valid)
        return false;
    k0 = (int)k0_wide;
    k1 = valid - k0 > sp.chunk ? k0 + sp.chunk : valid;
    return true;
}

// What a warp's online softmax needs to know of its rows: the batch row's first query position,
// the key split [k0, k1), the packed rows R and group size G, the warp's first row, and the keys
// every one of its rows sees [flo, fhi) (lo and hi grow with the row).
struct WarpRows {
    int first, k0, k1, R, G, wrow0, flo, fhi;
};

// The keys [lo, hi) within the split [k0, k1) that some row of [row0, row_last] sees (EVERY
// false) or that every one of them sees (EVERY true): lo and hi grow with the row.
template <bool EVERY>
__device__ __forceinline__ void rows_keys(const mlxn_attention_args &a, int first, int row0, int row_last, int G,
                                          int k0, int k1, int &lo, int &hi)
{
    int tmp;
    visible_keys(a, first, (EVERY ? row_last : row0) / G, lo, tmp);
    visible_keys(a, first, (EVERY ? row0 : row_last) / G, tmp, hi);
    lo = lo > k0 ? lo : k0;
    hi = hi < k1 ? hi : k1;
}

// One tile of logits, keys j0 .. j0 + 8 NT - 1, for a warp's MW 16-row tiles, in mma accumulator
// layout (lane = 4 g + tq; sacc[m][nt]: (row m 16 + g, keys nt 8 + 2 tq, + 1), then row + 8),
// the raw products q . k: turned in place into weights (online softmax over the running max
// mrow, log2 units, and sum lrow). al gets each row's factor for o; returns whether any row of
// the warp moved (o needs rescaling by al).
template <int MW, int NT>
__device__ __forceinline__ bool prefill_softmax(const mlxn_attention_args &a, const WarpRows &w, int j0, int g, int tq,
                                                float scale_log2, float (&sacc)[MW][NT][4], float (&mrow)[MW][2],
                                                float (&lrow)[MW][2], float (&al)[MW][2])
{
    constexpr int SB = NT * 8;
    // the logits in log2 units are c sacc: a tile every row of the warp sees whole, with no
    // softcap or mask, keeps the raw products (c the scale, folded into the exponent's FFMA);
    // others are transformed here (c 1), invisible keys -inf
    float c = scale_log2;
    if (!(a.softcap <= 0.0f && !a.mask && a.scale > 0.0f && j0 >= w.flo && j0 + SB <= w.fhi)) {
        c = 1.0f;
        // (one pass per feature: the branches are uniform and each loop stays small)
        if (a.softcap > 0.0f) {
            const float inv_cap = __fdividef(1.0f, a.softcap);
#pragma unroll
            for (int m = 0; m < MW; m++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        sacc[m][nt][e] = a.softcap * tanhf(sacc[m][nt][e] * a.scale * inv_cap);
        } else {
#pragma unroll
            for (int m = 0; m < MW; m++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        sacc[m][nt][e] *= a.scale;
        }
#pragma unroll
        for (int m = 0; m < MW; m++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                // key positions relative to j0 (32-bit), the row's visible range clamped to the
                // tile (the row's range within the split, recomputed here: held across the loop
                // it costs registers the plain path needs; rows past R see nothing)
                const int pr = w.wrow0 + m * 16 + h * 8 + g;
                int lo = 0, hi = 0;
                if (pr < w.R)
                    visible_keys(a, w.first, pr / w.G, lo, hi);
                lo = lo > w.k0 ? lo : w.k0;
                hi = hi < w.k1 ? hi : w.k1;
                const int rlo = clamp_to_tile(lo - j0, SB), rhi = clamp_to_tile(hi - j0, SB);
                const float *mrow_p = a.mask && pr < w.R ? mask_row(a, pr / w.G) + j0 : nullptr;
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int jr = nt * 8 + 2 * tq + e;
                        float &z = sacc[m][nt][2 * h + e];
                        if (jr >= rlo && jr < rhi)
                            z = (mrow_p ? z + __ldg(mrow_p + jr) : z) * LOG2E;
                        else
                            z = -INFINITY;
                    }
            }
    }
    // online softmax per row (the four lanes of a quad share a row). A row's reference point
    // mrow moves only when its max passes it by more than RESCALE_SLACK: the weights stay below
    // 2^RESCALE_SLACK (exact in f32; P's rounding is relative), and o is rescaled only when some
    // row of the warp moved, which after the first keys is rare
    bool moved = false;
#pragma unroll
    for (int m = 0; m < MW; m++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float mx = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
                mx = fmaxf(mx, fmaxf(sacc[m][nt][2 * h], sacc[m][nt][2 * h + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            mx *= c;
            const float mo = mrow[m][h], mn = mx > mo + RESCALE_SLACK ? mx : mo;
            al[m][h] = 1.0f;
            if (mn != mo) {
                al[m][h] = ex2(mo - mn); // 0 while the row had seen no key
                moved = true;
            }
            // a row that has seen no key yet keeps -inf: its weights are 0
            const float msub = mn == -INFINITY ? 0.0f : mn;
            mrow[m][h] = mn;
            float sum = 0.0f;
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const float p = ex2(fmaf(sacc[m][nt][2 * h + e], c, -msub));
                    sacc[m][nt][2 * h + e] = p;
                    sum += p;
                }
            lrow[m][h] = lrow[m][h] * al[m][h] + sum;
        }
    return __any_sync(0xffffffffu, moved);
}

// A 16-row tile's output accumulators (dims in 8-column blocks, prefill_store's layout) scaled
// by its rows' factors al (rows g and g + 8).
template <int DT> __device__ __forceinline__ void rescale_rows(float (&oacc)[DT][4], const float (&al)[2])
{
#pragma unroll
    for (int i = 0; i < DT; i++) {
        oacc[i][0] *= al[0];
        oacc[i][1] *= al[0];
        oacc[i][2] *= al[1];
        oacc[i][3] *= al[1];
    }
}

// Keys 16 kb .. 16 kb + 15 of a 16-row tile's weights (accumulator layout, prefill_softmax) as
// the A operand of P V (mma.sync's m16n8k16 A layout, which is also wgmma's per warp), rounded
// to KV.
template <typename KV, int NT>
__device__ __forceinline__ void pack_p(const float (&sacc)[NT][4], int kb, uint32_t (&pf)[4])
{
    pf[0] = Mma<KV>::pack(sacc[2 * kb][0], sacc[2 * kb][1]);
    pf[1] = Mma<KV>::pack(sacc[2 * kb][2], sacc[2 * kb][3]);
    pf[2] = Mma<KV>::pack(sacc[2 * kb + 1][0], sacc[2 * kb + 1][1]);
    pf[3] = Mma<KV>::pack(sacc[2 * kb + 1][2], sacc[2 * kb + 1][3]);
}

// A warp's output rows from its accumulators (oacc[m][i]: (row m 16 + g, dims i 8 + 2 tq, + 1),
// then row + 8) and running (mrow, lrow): o normalized, or with key splits the split's partial
// row (o unnormalized, max in natural-log units, sum).
template <int MW, int D>
__device__ __forceinline__ void prefill_store(const mlxn_attention_args &a, const KeySplit &sp, int split, int b,
                                              int hk, const WarpRows &w, int g, int tq,
                                              const float (&oacc)[MW][D / 8][4], const float (&mrow)[MW][2],
                                              const float (&lrow)[MW][2])
{
#pragma unroll
    for (int m = 0; m < MW; m++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float l = lrow[m][h];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const int pr = w.wrow0 + m * 16 + h * 8 + g;
            if (pr >= w.R)
                continue;
            const int t = pr / w.G, hq = hk * w.G + pr % w.G;
            const float mr = mrow[m][h];
            if (sp.splits > 1) {
                const size_t row = (size_t)(b * (int)a.Tq + t) * (size_t)a.Hq + hq;
                float *po = sp.part_o + (row * sp.splits + split) * D;
#pragma unroll
                for (int i = 0; i < D / 8; i++)
#pragma unroll
                    for (int e = 0; e < 2; e++)
                        po[i * 8 + 2 * tq + e] = oacc[m][i][2 * h + e];
                if (tq == 0) {
                    sp.part_ml[(row * sp.splits + split) * 2] = mr == -INFINITY ? -INFINITY : mr * LN2;
                    sp.part_ml[(row * sp.splits + split) * 2 + 1] = l;
                }
                continue;
            }
            // m in log2 units: the denominator's sink term is exp2(sink log2 e - m)
            float inv = 0.0f;
            if (mr != -INFINITY)
                inv = __fdividef(1.0f, l + (a.sinks ? exp2f(__ldg(a.sinks + hq) * LOG2E - mr) : 0.0f));
            char *o = o_row(a, b, t, hq);
#pragma unroll
            for (int i = 0; i < D / 8; i++)
#pragma unroll
                for (int e = 0; e < 2; e++)
                    store_any(a.q_dtype, o, i * 8 + 2 * tq + e, oacc[m][i][2 * h + e] * inv);
        }
}

// Rows of a batch row whose pos is out of range: NaN (unsplit; with splits the merge writes them).
template <int D>
__device__ __forceinline__ void prefill_nan_rows(const mlxn_attention_args &a, int b, int hk, int G, int row0,
                                                 int rows_here, int tid, int nth)
{
    for (int i = tid; i < rows_here * D; i += nth) {
        const int pr = row0 + i / D;
        store_any(a.q_dtype, o_row(a, b, pr / G, hk * G + pr % G), i % D, NAN);
    }
}

} // namespace

#endif
