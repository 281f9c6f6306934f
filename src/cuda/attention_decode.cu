// Attention decode on CUDA: up to 8 query rows per KV head (one token of a GQA group, or a short
// chunk of a small group) against a cache of any dtype, D a multiple of 8, f32 arithmetic (or
// its equivalent on tensor cores, attention_decode_mma, for large f16 caches).
//
// A lane reads a row in chunks (KvChunk below): 16 bytes of an f32/f16/bf16 row, or 8 codes of
// a q8_0 row with their block's scale. A q8_0 chunk is 8 bytes at a 2-byte aligned address
// (34-byte blocks: a row of D 128 is 136 bytes), so it is read as four 2-byte loads plus the
// scale's; the codes become floats exactly (the bias trick in unpack), the dot product of a
// chunk is scaled once by d, and for V the weight p times d multiplies the codes. The row of a
// q8_0 cache is 34/64 of an f16 row's bytes, and decode is bound by those bytes.
//
// A block of 4 warps (8 when it holds one query row) serves (batch row b, KV head hk, tile of
// the group's rows, key split). The keys stream straight from global memory into registers: a
// key row is read by a group of LPK lanes, 16 bytes per lane per step (LPK = the row's 16-byte
// chunks rounded up to 8, 16 or 32; rows of more than 32 chunks take C chunks per lane), so a
// warp covers 32 / LPK keys per step and each lane has 2 x U x C 16-byte loads in flight (U keys
// unrolled). Every lane group keeps its own running max, sum and output (online softmax, in log2
// units) for its keys, with no shared memory and no barrier in the key loop; the groups are
// combined at the end, first across a warp by shuffles, then across the warps through shared
// memory. The group's rows are in registers (scaled q) and share each K and V load.
//
// Splits (flash-decoding): the keys are split across blocks so that a few sequences still fill
// the GPU. The split size comes from the cache capacity S at launch, never from pos (device
// memory, may change between replays of a captured graph): blocks past the valid keys exit at
// once. Each split writes its partial (output, max, sum) to scratch; the last split of a
// (b, hk, row tile) to finish, found by a counter in scratch, merges them and resets the
// counter, so there is no second kernel.
//
// f16 caches of head dim 32, 64, 96 or 128 whose K and V pass 16 MiB take attention_decode_mma:
// the same blocks, splits and merge, the products on tensor cores (see there). Small caches keep
// the lane-group kernel with one row per block, whose chain per block is shorter.
#include <type_traits>

#include "attention_common.cuh"

namespace {

// Warps per block: 8 for blocks of one query row (a short chain per key, so more keys in flight
// per pass: at short contexts a pass is most of the call), 4 for blocks of several rows.
__host__ __device__ constexpr int dec_warps(int rt) { return rt == 1 ? 8 : 4; }
// the counters, one per (b, hk, row tile), at the start of the scratch; zero between calls
constexpr int DEC_COUNTERS = MLXN_CUDA_ATTENTION_COUNTER_BYTES / sizeof(unsigned);
constexpr size_t DEC_COUNTER_BYTES = MLXN_CUDA_ATTENTION_COUNTER_BYTES;

struct DecodeSplit {
    int splits;         // along blockIdx.x
    int chunk;          // keys per split
    int row_tiles;      // along blockIdx.z
    unsigned *counters; // [B * Hkv * row_tiles]
    float *part_o;      // [B * Tq * Hq][splits][D]
    float *part_ml;     // [B * Tq * Hq][splits][2]: max (log2 units) and sum
};

// 16 bytes of the cache through the read-only path (the cache is written by earlier kernels).
__device__ __forceinline__ uint4 load_kv16(const char *p)
{
    return __ldg(reinterpret_cast<const uint4 *>(p));
}

struct Q8_0 {}; // tag: a q8_0 cache

// A lane's chunk of a cache row: E elements. f32/f16/bf16: 16 bytes, one aligned load.
template <typename KV> struct KvChunk {
    static constexpr bool Q8 = false;
    static constexpr int E = 16 / sizeof(KV);
    using Raw = uint4;
    // bytes from the row's start to chunk ch; bytes of n chunks (n a multiple of 4)
    __device__ static int64_t offset(int ch) { return (int64_t)ch * 16; }
    __host__ __device__ static int64_t span(int n) { return (int64_t)n * 16; }
    __device__ static Raw load(const char *p, int) { return load_kv16(p); }
    __device__ static Raw zero() { return make_uint4(0, 0, 0, 0); }
    __device__ static void unpack(const Raw &r, float *out) { unpack16_f32<KV>(r, out); }
};

// q8_0: chunk ch is codes 8 (ch % 4) .. + 7 of block ch / 4 (34 bytes: f16 d, 32 int8 codes);
// `back` bytes before them (2 + 8 (ch % 4), the same for all of a lane's chunks) lies the
// scale. Every address is even (the launcher checks the base and strides): 2-byte loads.
template <> struct KvChunk<Q8_0> {
    static constexpr bool Q8 = true;
    static constexpr int E = 8;
    struct Raw {
        uint32_t lo, hi; // codes 0..3 and 4..7, little-endian
        float d;
    };
    __device__ static int64_t offset(int ch) { return (int64_t)(ch >> 2) * Q8_BLOCK_BYTES + 2 + (ch & 3) * 8; }
    __host__ __device__ static int64_t span(int n) { return (int64_t)(n >> 2) * Q8_BLOCK_BYTES; }
    __device__ static Raw load(const char *p, int back)
    {
        const unsigned short *h = reinterpret_cast<const unsigned short *>(p);
        Raw r;
        r.lo = (uint32_t)__ldg(h) | (uint32_t)__ldg(h + 1) << 16;
        r.hi = (uint32_t)__ldg(h + 2) | (uint32_t)__ldg(h + 3) << 16;
        r.d = q8_scale(p - back);
        return r;
    }
    __device__ static Raw zero() { return Raw{0, 0, 0.0f}; }
    // the codes, unscaled: a code c biased to c + 128 (the xor), placed in the low byte of the
    // float 2^23 (one byte permute), is 2^23 + c + 128 exactly; subtracting 2^23 + 128 leaves c
    __device__ static void unpack(const Raw &r, float *out)
    {
        const uint32_t u0 = r.lo ^ 0x80808080u, u1 = r.hi ^ 0x80808080u;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            out[e] = __uint_as_float(__byte_perm(u0, 0x4B000000u, 0x7540u | e)) - 8388736.0f;
            out[4 + e] = __uint_as_float(__byte_perm(u1, 0x4B000000u, 0x7540u | e)) - 8388736.0f;
        }
    }
};

// Lane groups of LPK lanes hold the pieces of one key's dot product: their sum, in every lane.
template <int LPK> __device__ __forceinline__ float group_sum(float v)
{
#pragma unroll
    for (int o = LPK / 2; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// The query row of tile row r (group row r0 + r) of (b, hk): t = row / G, head hk G + row % G.
__device__ __forceinline__ int row_index(const mlxn_attention_args &a, int b, int hk, int row)
{
    const int G = (int)(a.Hq / a.Hkv);
    return (b * (int)a.Tq + row / G) * (int)a.Hq + hk * G + row % G;
}

// Shared memory: out [warps][RT][D] f32, then ml [warps][RT][2] (max, sum); the merging
// split reuses it for its weights [RT][splits] f32 (at most DEC_MAX_SPLITS).
constexpr int DEC_MAX_SPLITS = 2048;
__host__ __device__ constexpr size_t decode_smem(int warps, int rt, int d, int splits)
{
    const size_t combine = (size_t)warps * rt * d * 4 + (size_t)warps * rt * 2 * 4,
                 weights = (size_t)rt * splits * 4;
    return combine > weights ? combine : weights;
}

// Keys a lane group has in flight per pass (U): fewer as the chunks per lane (C) grow; 8 when a
// whole warp reads one key row (LPK 32, C 1: head 256 of a 16-bit or q8_0 cache) for up to 4
// rows, so that a pass still covers 32 keys and short contexts need few passes (8 rows would
// spill).
__host__ __device__ constexpr int dec_unroll(int rt, int lpk, int c)
{
    return c == 1 ? (lpk == 32 && rt <= 4 ? 8 : 4) : c == 2 ? 2 : 1;
}

// The splits that run for a block's (b, hk, row tile): [s_first, s_first + n_act).
struct DecodeRun {
    int s_first, n_act;
    bool alone; // the only split that runs: the block writes o itself
};

// A block's share of (b, hk) for its row tile: the keys [kstart, kend) of its split, the keys
// [all_lo, all_hi) visible to every row of the tile, and row r's [lo[r], hi[r]) (empty past the
// group's rows).
template <int RT> struct DecodeKeys {
    int kstart, kend, all_lo, all_hi;
    int lo[RT], hi[RT];
};

// Called by every thread of the block (it holds a barrier); false: nothing to do for (b, hk)
// (split 0 wrote NaN rows when pos is out of range).
template <int RT, int THREADS>
__device__ __forceinline__ bool decode_work(const mlxn_attention_args &a, const DecodeSplit &sp, int b, int hk,
                                            int r0, int rn, DecodeRun &run, DecodeKeys<RT> &w)
{
    const int G = (int)(a.Hq / a.Hkv), D = (int)a.D;
    const int first = a.pos[b];
    __syncthreads(); // shared memory of the previous (b, hk) is no longer read
    if (!pos_in_range(a, first)) {
        if (blockIdx.x == 0)
            for (int i = threadIdx.x; i < rn * D; i += THREADS) {
                const int row = r0 + i / D;
                store_any(a.q_dtype, o_row(a, b, row / G, hk * G + row % G), i % D, NAN);
            }
        return false;
    }
    // the splits that hold keys some row of the tile sees: [s_first, n_run) (the tile's first
    // row has the earliest window start); the others exit at once and are not merged
    const int valid = first + (int)a.Tq, n_run = (valid - 1) / sp.chunk + 1;
    int lo_first, hi_first;
    visible_keys(a, first, r0 / G, lo_first, hi_first);
    run.s_first = lo_first / sp.chunk;
    run.n_act = n_run - run.s_first;
    if ((int)blockIdx.x >= n_run || (int)blockIdx.x < run.s_first)
        return false;
    run.alone = sp.splits == 1 || run.n_act == 1;
    const int k0 = (int)blockIdx.x * sp.chunk;
    w.kend = valid - k0 > sp.chunk ? k0 + sp.chunk : valid;
#pragma unroll
    for (int r = 0; r < RT; r++) {
        w.lo[r] = 0;
        w.hi[r] = 0;
        if (r < rn)
            visible_keys(a, first, (r0 + r) / G, w.lo[r], w.hi[r]);
    }
    w.kstart = k0 > w.lo[0] ? k0 : w.lo[0]; // row 0 has the smallest window start
    w.all_lo = w.kstart;
    w.all_hi = w.kend;
#pragma unroll
    for (int r = 0; r < RT; r++)
        if (r < rn) {
            w.all_lo = w.lo[r] > w.all_lo ? w.lo[r] : w.all_lo;
            w.all_hi = w.hi[r] < w.all_hi ? w.hi[r] : w.all_hi;
        }
    return true;
}

// After each warp left its output, max and sum per row in shared memory (out [WARPS][RT][D], then
// ml [WARPS][RT][2]): the warps combined, then o written (the only split) or the split's partial,
// and the last split of (b, hk, row tile) to finish merges all of them. Every thread calls it.
template <int RT, int WARPS>
__device__ __forceinline__ void decode_finish(const mlxn_attention_args &a, const DecodeSplit &sp,
                                              const DecodeRun run, int b, int hk, int r0, int rn, float *sh)
{
    constexpr int THREADS = 32 * WARPS;
    __shared__ bool last_split;
    __shared__ float row_scale[RT]; // the merging split's 1 / denominator per row
    const int G = (int)(a.Hq / a.Hkv), D = (int)a.D, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float *out_s = sh, *ml_s = sh + (size_t)WARPS * RT * D;
    __syncthreads();
    // the warps combined: thread i over (row, d) of the tile
    for (int i = tid; i < rn * D; i += THREADS) {
        const int r = i / D, d = i % D, row = r0 + r, h = hk * G + row % G;
        float mx = -INFINITY;
#pragma unroll
        for (int v = 0; v < WARPS; v++)
            mx = fmaxf(mx, ml_s[(v * RT + r) * 2]);
        float o = 0.0f, sum = 0.0f;
        if (mx != -INFINITY)
#pragma unroll
            for (int v = 0; v < WARPS; v++) {
                const float mw = ml_s[(v * RT + r) * 2];
                const float f = mw == -INFINITY ? 0.0f : exp2f(mw - mx);
                o = fmaf(f, out_s[(v * RT + r) * D + d], o);
                sum = fmaf(f, ml_s[(v * RT + r) * 2 + 1], sum);
            }
        if (run.alone) {
            store_any(a.q_dtype, o_row(a, b, row / G, h), d, o * inverse_denominator(a, h, mx * LN2, sum));
        } else {
            const size_t at = (size_t)row_index(a, b, hk, row) * sp.splits + blockIdx.x;
            sp.part_o[at * D + d] = o;
            if (d == 0) {
                sp.part_ml[at * 2] = mx;
                sp.part_ml[at * 2 + 1] = sum;
            }
        }
    }
    if (run.alone)
        return;
    // the last split of (b, hk, row tile) to finish merges all of them
    __threadfence();
    __syncthreads();
    unsigned *counter = sp.counters + (size_t)(b * (int)a.Hkv + hk) * sp.row_tiles + blockIdx.z;
    if (tid == 0)
        last_split = atomicAdd(counter, 1u) == (unsigned)(run.n_act - 1);
    __syncthreads();
    if (!last_split)
        return;
    __threadfence();
    if (tid == 0)
        *counter = 0;
    // each split's weight per row, a warp per row with lanes over the splits, into shared
    // memory (wts [rn][n_act] over the combine area, whose reads ended at the barrier above)
    const int n_act = run.n_act;
    float *wts = sh;
    for (int r = warp; r < rn; r += WARPS) {
        const int row = r0 + r;
        const size_t at0 = (size_t)row_index(a, b, hk, row) * sp.splits + run.s_first;
        float mx = -INFINITY;
        for (int s = lane; s < n_act; s += 32)
            mx = fmaxf(mx, __ldcg(sp.part_ml + (at0 + s) * 2));
        mx = warp_max(mx);
        float sum = 0.0f;
        for (int s = lane; s < n_act; s += 32) {
            const float ms = __ldcg(sp.part_ml + (at0 + s) * 2);
            const float f = ms == -INFINITY ? 0.0f : exp2f(ms - mx);
            wts[r * n_act + s] = f;
            sum = fmaf(f, __ldcg(sp.part_ml + (at0 + s) * 2 + 1), sum);
        }
        sum = warp_sum(sum);
        if (lane == 0)
            row_scale[r] = inverse_denominator(a, hk * G + row % G, mx * LN2, sum);
    }
    __syncthreads();
    // four outputs a thread (D is a multiple of 8), the splits' partials in flight together
    for (int i = tid; i < rn * D / 4; i += THREADS) {
        const int r = i / (D / 4), d = 4 * (i % (D / 4)), row = r0 + r;
        const float4 *po = reinterpret_cast<const float4 *>(sp.part_o + ((size_t)row_index(a, b, hk, row) * sp.splits + run.s_first) * D + d);
        float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 8
        for (int s = 0; s < n_act; s++) {
            const float f = wts[r * n_act + s];
            const float4 v = __ldcg(po + (size_t)s * (D / 4));
            o.x = fmaf(f, v.x, o.x);
            o.y = fmaf(f, v.y, o.y);
            o.z = fmaf(f, v.z, o.z);
            o.w = fmaf(f, v.w, o.w);
        }
        char *orow = o_row(a, b, row / G, hk * G + row % G);
        store_any(a.q_dtype, orow, d, o.x * row_scale[r]);
        store_any(a.q_dtype, orow, d + 1, o.y * row_scale[r]);
        store_any(a.q_dtype, orow, d + 2, o.z * row_scale[r]);
        store_any(a.q_dtype, orow, d + 3, o.w * row_scale[r]);
    }
}

// LPK lanes per key row; C 16-byte chunks per lane (rows of up to LPK C chunks).
template <typename KV, int RT, int LPK, int C>
__global__ void __launch_bounds__(32 * dec_warps(RT)) attention_decode(const mlxn_attention_args a, const DecodeSplit sp)
{
    using Chunk = KvChunk<KV>;
    constexpr int E = Chunk::E; // elements per chunk
    constexpr int U = dec_unroll(RT, LPK, C);
    constexpr int DEC_WARPS = dec_warps(RT), DEC_THREADS = 32 * DEC_WARPS;
    constexpr int KPW = 32 / LPK, SLOTS = DEC_WARPS * KPW;
    extern __shared__ __align__(16) float sh[];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int D = (int)a.D, nch = D / E;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, sub = lane / LPK, cl = lane % LPK;
    // no softcap and no mask: a visible key's logit is the scaled dot product
    const bool plain = a.softcap <= 0.0f && !a.mask;
    const int G = (int)(a.Hq / a.Hkv), R = G * (int)a.Tq, Hkv = (int)a.Hkv;
    const int r0 = blockIdx.z * RT, rn = R - r0 < RT ? R - r0 : RT;
    float *out_s = sh, *ml_s = sh + (size_t)DEC_WARPS * RT * D;
    for (int bh = blockIdx.y; bh < (int)a.B * Hkv; bh += gridDim.y) {
        const int b = bh / Hkv, hk = bh % Hkv;
        // the tile's scaled query rows before pos, so that both loads are in flight at once
        float q[RT][C][E];
#pragma unroll
        for (int r = 0; r < RT; r++) {
            const int row = r0 + r;
            const char *qr = r < rn ? q_row(a, b, row / G, hk * G + row % G) : nullptr;
#pragma unroll
            for (int c = 0; c < C; c++) {
                const int ch = cl + c * LPK;
#pragma unroll
                for (int e = 0; e < E; e++)
                    q[r][c][e] = qr && ch < nch ? load_any(a.q_dtype, qr, ch * E + e) * a.scale : 0.0f;
            }
        }
        DecodeRun run;
        DecodeKeys<RT> w;
        if (!decode_work<RT, DEC_THREADS>(a, sp, b, hk, r0, rn, run, w))
            continue;
        const int kstart = w.kstart, kend = w.kend, all_lo = w.all_lo, all_hi = w.all_hi;
        const int *lo = w.lo, *hi = w.hi;
        float m[RT], l[RT], acc[RT][C][E];
#pragma unroll
        for (int r = 0; r < RT; r++) {
            m[r] = -INFINITY;
            l[r] = 0.0f;
#pragma unroll
            for (int c = 0; c < C; c++)
#pragma unroll
                for (int e = 0; e < E; e++)
                    acc[r][c][e] = 0.0f;
        }
        // this lane's chunk of key jb + sub
        const char *kp = a.k.base + b * a.k.s0 + hk * a.k.s1 + (int64_t)(kstart + warp * KPW + sub) * a.k.s2 +
                         Chunk::offset(cl);
        const char *vp = a.v.base + b * a.v.s0 + hk * a.v.s1 + (int64_t)(kstart + warp * KPW + sub) * a.v.s2 +
                         Chunk::offset(cl);
        const int back = Chunk::Q8 ? 2 + (cl & 3) * 8 : 0; // q8_0: from the codes to the block's scale
        const int64_t kstep = SLOTS * a.k.s2, vstep = SLOTS * a.v.s2;
        // jb is uniform across the warp (the shuffles need every lane); key j(u) = jb + sub + u SLOTS
        for (int jb = kstart + warp * KPW; jb < kend; jb += SLOTS * U, kp += U * kstep, vp += U * vstep) {
            typename Chunk::Raw kr[U][C], vr[U][C];
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int j = jb + sub + u * SLOTS;
#pragma unroll
                for (int c = 0; c < C; c++) {
                    const int ch = cl + c * LPK;
                    if (j < kend && ch < nch) {
                        kr[u][c] = Chunk::load(kp + u * kstep + Chunk::span(c * LPK), back);
                        vr[u][c] = Chunk::load(vp + u * vstep + Chunk::span(c * LPK), back);
                    } else {
                        kr[u][c] = Chunk::zero();
                        vr[u][c] = Chunk::zero();
                    }
                }
            }
            float z[U][RT];
#pragma unroll
            for (int u = 0; u < U; u++) {
                float dot[RT];
#pragma unroll
                for (int r = 0; r < RT; r++)
                    dot[r] = 0.0f;
#pragma unroll
                for (int c = 0; c < C; c++) {
                    float kf[E];
                    Chunk::unpack(kr[u][c], kf);
                    if constexpr (Chunk::Q8) { // the chunk's codes against q, scaled once
#pragma unroll
                        for (int r = 0; r < RT; r++) {
                            float part = 0.0f;
#pragma unroll
                            for (int e = 0; e < E; e++)
                                part = fmaf(q[r][c][e], kf[e], part);
                            dot[r] = fmaf(kr[u][c].d, part, dot[r]);
                        }
                    } else {
#pragma unroll
                        for (int r = 0; r < RT; r++)
#pragma unroll
                            for (int e = 0; e < E; e++)
                                dot[r] = fmaf(q[r][c][e], kf[e], dot[r]);
                    }
                }
#pragma unroll
                for (int r = 0; r < RT; r++)
                    z[u][r] = group_sum<LPK>(dot[r]);
            }
            if (plain && jb >= all_lo && jb + SLOTS * U <= all_hi) {
#pragma unroll
                for (int u = 0; u < U; u++)
#pragma unroll
                    for (int r = 0; r < RT; r++)
                        z[u][r] *= LOG2E;
            } else {
#pragma unroll
                for (int u = 0; u < U; u++) {
                    const int j = jb + sub + u * SLOTS;
#pragma unroll
                    for (int r = 0; r < RT; r++)
                        z[u][r] = j < kend && j >= lo[r] && j < hi[r]
                                      ? finish_logit(a, z[u][r], (r0 + r) / G, j) * LOG2E
                                      : -INFINITY;
                }
            }
            float p[U][RT], alpha[RT];
            bool rescale = false;
#pragma unroll
            for (int r = 0; r < RT; r++) {
                float mx = m[r];
#pragma unroll
                for (int u = 0; u < U; u++)
                    mx = fmaxf(mx, z[u][r]);
                alpha[r] = m[r] == mx ? 1.0f : m[r] == -INFINITY ? 0.0f : exp2f(m[r] - mx);
                rescale |= alpha[r] != 1.0f;
                float sum = 0.0f;
#pragma unroll
                for (int u = 0; u < U; u++) {
                    p[u][r] = z[u][r] == -INFINITY ? 0.0f : exp2f(z[u][r] - mx);
                    sum += p[u][r];
                }
                m[r] = mx;
                l[r] = l[r] * alpha[r] + sum;
            }
            // once the running maxima settle, most steps skip the rescale
            if (__any_sync(0xffffffffu, rescale))
#pragma unroll
                for (int r = 0; r < RT; r++)
#pragma unroll
                    for (int c = 0; c < C; c++)
#pragma unroll
                        for (int e = 0; e < E; e++)
                            acc[r][c][e] *= alpha[r];
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int c = 0; c < C; c++) {
                    float vf[E];
                    Chunk::unpack(vr[u][c], vf);
#pragma unroll
                    for (int r = 0; r < RT; r++) {
                        float w = p[u][r];
                        if constexpr (Chunk::Q8)
                            w *= vr[u][c].d; // the weight times the block's scale, on the codes
#pragma unroll
                        for (int e = 0; e < E; e++)
                            acc[r][c][e] = fmaf(w, vf[e], acc[r][c][e]);
                    }
                }
        }
        // the lane groups of a warp combined (lanes with the same chunks, across groups)
#pragma unroll
        for (int r = 0; r < RT; r++) {
            float mx = m[r];
#pragma unroll
            for (int o = LPK; o < 32; o <<= 1)
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float w = m[r] == -INFINITY ? 0.0f : exp2f(m[r] - mx);
            m[r] = mx;
            l[r] *= w;
#pragma unroll
            for (int c = 0; c < C; c++)
#pragma unroll
                for (int e = 0; e < E; e++)
                    acc[r][c][e] *= w;
#pragma unroll
            for (int o = LPK; o < 32; o <<= 1) {
                l[r] += __shfl_xor_sync(0xffffffffu, l[r], o);
#pragma unroll
                for (int c = 0; c < C; c++)
#pragma unroll
                    for (int e = 0; e < E; e++)
                        acc[r][c][e] += __shfl_xor_sync(0xffffffffu, acc[r][c][e], o);
            }
        }
        if (sub == 0) {
#pragma unroll
            for (int r = 0; r < RT; r++) {
#pragma unroll
                for (int c = 0; c < C; c++) {
                    const int ch = cl + c * LPK;
                    if (ch < nch)
#pragma unroll
                        for (int e = 0; e < E; e++)
                            out_s[(warp * RT + r) * D + ch * E + e] = acc[r][c][e];
                }
                if (lane == 0) {
                    ml_s[(warp * RT + r) * 2] = m[r];
                    ml_s[(warp * RT + r) * 2 + 1] = l[r];
                }
            }
        }
        decode_finish<RT, DEC_WARPS>(a, sp, run, b, hk, r0, rn, sh);
    }
}

// ------------------------------------------------------------------ f16 caches on tensor cores

constexpr int MMA_WARPS = 4;          // warps per block
constexpr float P_SCALE = 32768.0f;   // the weights' scale in the P V product (2^15: p <= 1 stays finite in f16)

// An f16 cache, up to 8 query rows per block (NT tiles of 4), D = 32 KD: the same blocks, splits
// and merge as the kernel above, with q.k and p.v as mma.sync m16n8k16 (f32 accumulation). A warp
// takes 16 keys a step; lane 4 g + t reads 16 bytes (dims 32 p + 8 t .. + 7, p < KD) of key rows
// g and g + 8 of K and of V, and keeps them as raw f16 pairs:
// - S = K q^T: K's bytes are the A operand as loaded (the contraction runs over D in the order the
//   lanes hold it); a B operand's 8 columns are 4 rows' scaled q split into f16 high and low
//   parts (q = hi + lo to 2^-22 relative; q is scaled by a power of two per row first, so both
//   parts stay normal f16), and S's columns r and r + 4 summed by one shuffle are the f32 dot
//   product of K's exact values with q.
// - O^T += V^T P^T: V^T is the A operand (dims x keys): each 16-byte load holds four 8 x 8 tiles
//   (8 keys x 8 dims, one register of every lane), transposed in registers by movmatrix; P^T is
//   the B operand, p 2^15 split into f16 high and low parts like q, laid out from S's
//   accumulators by one movmatrix per 8 keys; each step's product is added to the output in f32.
// So the products are those of the f32 kernel to ~2^-22 (the tolerance of the f32 path holds),
// at ~6 instructions a key and row tile where the lane-group kernel spends ~70.
// (3 blocks an SM at 4 rows, 168 registers, and 2 at 8 rows: what the measurements ran with)
template <int KD, int NT>
__global__ void __launch_bounds__(32 * MMA_WARPS, NT == 1 ? 3 : 2) attention_decode_mma(const mlxn_attention_args a, const DecodeSplit sp)
{
    constexpr int D = 32 * KD, RT = 4 * NT;
    extern __shared__ __align__(16) float sh[];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const bool plain = a.softcap <= 0.0f && !a.mask;
    const int G = (int)(a.Hq / a.Hkv), R = G * (int)a.Tq, Hkv = (int)a.Hkv;
    const int r0 = blockIdx.z * RT, rn = R - r0 < RT ? R - r0 : RT;
    // B columns of q in tile n: row 4 n + g % 4, high part for g < 4; accumulator columns 2 t,
    // 2 t + 1: rows 4 n + ra, + 1 (high parts for t < 2, low parts for t >= 2)
    const int rq = g & 3, ra = 2 * (t & 1);
    float *out_s = sh, *ml_s = sh + (size_t)MMA_WARPS * RT * D;
    for (int bh = blockIdx.y; bh < (int)a.B * Hkv; bh += gridDim.y) {
        const int b = bh / Hkv, hk = bh % Hkv;
        // q rows 4 n + rq scaled
        float qf[NT][KD][8];
#pragma unroll
        for (int n = 0; n < NT; n++) {
            const int row = r0 + 4 * n + rq;
            const char *qr = 4 * n + rq < rn ? q_row(a, b, row / G, hk * G + row % G) : nullptr;
#pragma unroll
            for (int p = 0; p < KD; p++)
#pragma unroll
                for (int e = 0; e < 8; e++)
                    qf[n][p][e] = qr ? load_any(a.q_dtype, qr, 32 * p + 8 * t + e) * a.scale : 0.0f;
        }
        DecodeRun run;
        DecodeKeys<RT> w;
        if (!decode_work<RT, 32 * MMA_WARPS>(a, sp, b, hk, r0, rn, run, w))
            continue;
        // q's split into f16 parts after pos's load: both loads in flight at once
        uint4 qb[NT][KD];
        float down[NT][2]; // S's columns 4 n + ra, + 1 back to natural units (2^-ex of each row)
#pragma unroll
        for (int n = 0; n < NT; n++) {
            float amax = 0.0f;
#pragma unroll
            for (int p = 0; p < KD; p++)
#pragma unroll
                for (int e = 0; e < 8; e++)
                    amax = fmaxf(amax, fabsf(qf[n][p][e]));
            amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
            amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
            // 2^ex brings the row's largest |q| into [2^13, 2^14): far from f16's overflow, and
            // the low parts of its large elements stay normal (a row with an inf is left unscaled;
            // a NaN does not win fmaxf, so a row holding one is scaled by its other elements and
            // its S columns turn NaN as in f32)
            const int eb = __float_as_int(amax) >> 23; // amax's biased exponent (0: subnormal)
            int ex = amax > 0.0f && eb < 255 ? 140 - eb : 0;
            ex = ex > 126 ? 126 : ex;
            const float up = pow2f(ex);
#pragma unroll
            for (int p = 0; p < KD; p++) {
                uint32_t qw[4];
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float x0 = qf[n][p][2 * e] * up, x1 = qf[n][p][2 * e + 1] * up;
                    if (g >= 4) {
                        x0 = f16_rest(x0);
                        x1 = f16_rest(x1);
                    }
                    qw[e] = Mma<__half>::pack(x0, x1);
                }
                qb[n][p] = make_uint4(qw[0], qw[1], qw[2], qw[3]);
            }
#pragma unroll
            for (int e = 0; e < 2; e++)
                down[n][e] = pow2f(-__shfl_sync(0xffffffffu, ex, 4 * (ra + e)));
        }
        const int kend = w.kend;
        // this lane's rows' visible keys
        int lo[NT][2], hi[NT][2];
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                lo[n][e] = t & 1 ? w.lo[4 * n + 2 + e] : w.lo[4 * n + e];
                hi[n][e] = t & 1 ? w.hi[4 * n + 2 + e] : w.hi[4 * n + e];
            }
        float m[NT][2], l[NT][2], acc[NT][KD][2][4];
#pragma unroll
        for (int n = 0; n < NT; n++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                m[n][e] = -INFINITY;
                l[n][e] = 0.0f;
            }
#pragma unroll
            for (int p = 0; p < KD; p++)
#pragma unroll
                for (int h = 0; h < 2; h++)
#pragma unroll
                    for (int i = 0; i < 4; i++)
                        acc[n][p][h][i] = 0.0f;
        }
        const char *kp = a.k.base + b * a.k.s0 + hk * a.k.s1 + t * 16, *vp = a.v.base + b * a.v.s0 + hk * a.v.s1 + t * 16;
        for (int jb = w.kstart + warp * 16; jb < kend; jb += MMA_WARPS * 16) {
            uint4 kr[2][KD], vr[2][KD];
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int j = jb + g + 8 * h;
#pragma unroll
                for (int p = 0; p < KD; p++) {
                    // keys past kend may be unwritten (NaN): zeros, so that p = 0 weighs them out
                    kr[h][p] = j < kend ? load_kv16(kp + j * a.k.s2 + p * 64) : make_uint4(0, 0, 0, 0);
                    vr[h][p] = j < kend ? load_kv16(vp + j * a.v.s2 + p * 64) : make_uint4(0, 0, 0, 0);
                }
            }
            const bool whole = plain && jb >= w.all_lo && jb + 16 <= w.all_hi; // every key visible to every row
            uint32_t pb[NT][2];
            float alpha[NT][2];
            bool rescale = false;
#pragma unroll
            for (int n = 0; n < NT; n++) {
                // S: two accumulator chains (even and odd 16-dim steps)
                float s[4] = {0.0f, 0.0f, 0.0f, 0.0f}, s2[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                for (int p = 0; p < KD; p++) {
                    const uint32_t a0[4] = {kr[0][p].x, kr[1][p].x, kr[0][p].y, kr[1][p].y};
                    Mma<__half>::run(s, a0, qb[n][p].x, qb[n][p].y);
                    const uint32_t a1[4] = {kr[0][p].z, kr[1][p].z, kr[0][p].w, kr[1][p].w};
                    Mma<__half>::run(s2, a1, qb[n][p].z, qb[n][p].w);
                }
                // z[i]: key g + 8 (i / 2), row 4 n + ra + i % 2, high and low parts of q summed
                float z[4];
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    z[i] = s[i] + s2[i];
                    z[i] += __shfl_xor_sync(0xffffffffu, z[i], 2);
                }
                if (whole) {
#pragma unroll
                    for (int i = 0; i < 4; i++)
                        z[i] *= down[n][i & 1] * LOG2E;
                } else {
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        const int j = jb + g + 8 * (i >> 1), e = i & 1;
                        z[i] = j < kend && j >= lo[n][e] && j < hi[n][e]
                                   ? finish_logit(a, z[i] * down[n][e], (r0 + 4 * n + ra + e) / G, j) * LOG2E
                                   : -INFINITY;
                    }
                }
                // online softmax of the lane's two rows over the warp's 16 keys (the lanes of one
                // t hold them all: a max over g)
                float pr[4];
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    float mx = fmaxf(z[e], z[2 + e]);
#pragma unroll
                    for (int o = 4; o < 32; o <<= 1)
                        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
                    mx = fmaxf(mx, m[n][e]);
                    alpha[n][e] = m[n][e] == mx ? 1.0f : m[n][e] == -INFINITY ? 0.0f : exp2f(m[n][e] - mx);
                    rescale |= alpha[n][e] != 1.0f;
                    pr[e] = z[e] == -INFINITY ? 0.0f : exp2f(z[e] - mx);
                    pr[2 + e] = z[2 + e] == -INFINITY ? 0.0f : exp2f(z[2 + e] - mx);
                    l[n][e] = l[n][e] * alpha[n][e] + (pr[e] + pr[2 + e]);
                    m[n][e] = mx;
                }
                // P^T as the B operand: p 2^15 (weights down to 2^-29 stay normal f16 in the high
                // part, and the low part carries the rest to 2^-40), the high parts in columns
                // 0..3, the low parts in 4..7; the output is scaled back at the end
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    pr[i] *= P_SCALE;
                    if (t >= 2)
                        pr[i] = f16_rest(pr[i]);
                }
                pb[n][0] = movmatrix_trans(Mma<__half>::pack(pr[0], pr[1]));
                pb[n][1] = movmatrix_trans(Mma<__half>::pack(pr[2], pr[3]));
            }
            if (__any_sync(0xffffffffu, rescale))
#pragma unroll
                for (int n = 0; n < NT; n++)
#pragma unroll
                    for (int p = 0; p < KD; p++)
#pragma unroll
                        for (int h = 0; h < 2; h++)
#pragma unroll
                            for (int i = 0; i < 4; i++)
                                acc[n][p][h][i] *= alpha[n][i & 1];
            // O^T: m-tile (p, h) holds dims 32 p + 8 (g / 2) + 4 h + g % 2 (+ 2 for rows g + 8)
#pragma unroll
            for (int p = 0; p < KD; p++) {
                const uint32_t v0[4] = {vr[0][p].x, vr[0][p].y, vr[0][p].z, vr[0][p].w},
                               v1[4] = {vr[1][p].x, vr[1][p].y, vr[1][p].z, vr[1][p].w};
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const uint32_t af[4] = {movmatrix_trans(v0[2 * h]), movmatrix_trans(v0[2 * h + 1]),
                                            movmatrix_trans(v1[2 * h]), movmatrix_trans(v1[2 * h + 1])};
                    // into zeros, then added in f32: the tensor core's adds truncate, which over
                    // hundreds of steps into one accumulator (an unsplit call) would drift
#pragma unroll
                    for (int n = 0; n < NT; n++) {
                        float o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                        Mma<__half>::run(o, af, pb[n][0], pb[n][1]);
#pragma unroll
                        for (int i = 0; i < 4; i++)
                            acc[n][p][h][i] += o[i];
                    }
                }
            }
        }
        // the warp's sums over its lanes' keys, and the high and low parts of p summed
#pragma unroll
        for (int n = 0; n < NT; n++) {
#pragma unroll
            for (int e = 0; e < 2; e++)
#pragma unroll
                for (int o = 4; o < 32; o <<= 1)
                    l[n][e] += __shfl_xor_sync(0xffffffffu, l[n][e], o);
#pragma unroll
            for (int p = 0; p < KD; p++)
#pragma unroll
                for (int h = 0; h < 2; h++)
#pragma unroll
                    for (int i = 0; i < 4; i++)
                        acc[n][p][h][i] += __shfl_xor_sync(0xffffffffu, acc[n][p][h][i], 2);
            if (t < 2) {
                const int r = warp * RT + 4 * n + ra; // the lane's first row's slot
#pragma unroll
                for (int p = 0; p < KD; p++)
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        const int d = 32 * p + 8 * (g >> 1) + 4 * h + (g & 1);
#pragma unroll
                        for (int i = 0; i < 4; i++)
                            out_s[(r + (i & 1)) * D + d + 2 * (i >> 1)] = acc[n][p][h][i] * (1.0f / P_SCALE);
                    }
                if (g == 0)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        ml_s[(r + e) * 2] = m[n][e];
                        ml_s[(r + e) * 2 + 1] = l[n][e];
                    }
            }
        }
        decode_finish<RT, MMA_WARPS>(a, sp, run, b, hk, r0, rn, sh);
    }
}

// Splits of the keys: one wave of blocks (`slots` = the blocks resident at once) over all
// (b, hk, row tile) units, each split at least DEC_MIN_PASSES passes of its block over the keys
// (`per_pass` keys a pass), no more than the scratch holds. From S, never from pos. (One full
// wave: a second, partial wave of blocks with as much work each would take as long as the
// first.) The minimum: a pass costs about one memory latency, and the merge of n splits a few
// latencies plus one per 8 splits, so splits shorter than a few passes only add merging
// (bench/NOTES.md, attention: at a short context one split, no merge).
constexpr int DEC_MIN_PASSES = 4;

DecodeSplit plan_decode_split(const mlxn_attention_args &a, int row_tiles, void *scratch, size_t scratch_bytes,
                              int64_t slots, int per_pass)
{
    DecodeSplit sp = {};
    sp.row_tiles = row_tiles;
    const int64_t units = a.B * a.Hkv * row_tiles, rows = a.B * a.Tq * a.Hq;
    const size_t per_split = (size_t)rows * (size_t)(a.D + 2) * sizeof(float);
    int64_t splits = 1;
    if (scratch && units <= DEC_COUNTERS && scratch_bytes > DEC_COUNTER_BYTES) {
        splits = slots / units;
        const int64_t by_len = a.S / ((int64_t)DEC_MIN_PASSES * per_pass), by_scratch = (int64_t)((scratch_bytes - DEC_COUNTER_BYTES) / per_split);
        splits = splits < by_len ? splits : by_len;
        splits = splits < by_scratch ? splits : by_scratch;
        splits = splits < DEC_MAX_SPLITS ? splits : DEC_MAX_SPLITS;
    }
    if (splits < 2) {
        sp.splits = 1;
        sp.chunk = a.S > 0 ? (int)a.S : 1;
        return sp;
    }
    const int64_t per = (a.S + splits - 1) / splits;
    sp.chunk = (int)((per + 31) / 32 * 32);
    sp.splits = (int)((a.S + sp.chunk - 1) / sp.chunk);
    sp.counters = static_cast<unsigned *>(scratch);
    sp.part_o = reinterpret_cast<float *>(static_cast<char *>(scratch) + DEC_COUNTER_BYTES);
    sp.part_ml = sp.part_o + (size_t)rows * (size_t)sp.splits * (size_t)a.D;
    return sp;
}

// A decode kernel of rt rows and `warps` warps a block, covering per_pass keys a pass, over one
// wave of resident blocks.
template <typename Kernel>
cudaError_t launch_decode_kernel(Kernel kernel, unsigned long long &smem_done, int rt, int warps, int per_pass,
                                 const mlxn_attention_args &a, void *scratch, size_t scratch_bytes, int sms,
                                 cudaStream_t s, bool pdl)
{
    cudaError_t e = allow_smem(kernel, decode_smem(warps, rt, MLXN_ATTENTION_MAX_D, DEC_MAX_SPLITS), smem_done);
    if (e != cudaSuccess)
        return e;
    const int64_t R = a.Hq / a.Hkv * a.Tq;
    const int row_tiles = (int)((R + rt - 1) / rt);
    int per_sm = 0;
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, 32 * warps, decode_smem(warps, rt, (int)a.D, 0));
    if (e != cudaSuccess)
        return e;
    const DecodeSplit sp = plan_decode_split(a, row_tiles, scratch, scratch_bytes, (int64_t)(per_sm > 0 ? per_sm : 1) * sms,
                                             per_pass);
    return launch(kernel, dim3((unsigned)sp.splits, grid_dim(a.B * a.Hkv, 65535), (unsigned)row_tiles),
                  dim3(32 * warps), decode_smem(warps, rt, (int)a.D, sp.splits > 1 ? sp.splits : 0), s, pdl, a, sp);
}

template <typename KV, int RT, int LPK, int C>
cudaError_t launch_decode(const mlxn_attention_args &a, void *scratch, size_t scratch_bytes, int sms, cudaStream_t s,
                          bool pdl)
{
    static unsigned long long smem_done;
    constexpr int per_pass = dec_warps(RT) * (32 / LPK) * dec_unroll(RT, LPK, C); // keys a block covers per pass
    return launch_decode_kernel(attention_decode<KV, RT, LPK, C>, smem_done, RT, dec_warps(RT), per_pass, a, scratch,
                                scratch_bytes, sms, s, pdl);
}

template <int KD, int NT>
cudaError_t launch_decode_mma(const mlxn_attention_args &a, void *scratch, size_t scratch_bytes, int sms, cudaStream_t s,
                              bool pdl)
{
    static unsigned long long smem_done;
    return launch_decode_kernel(attention_decode_mma<KD, NT>, smem_done, 4 * NT, MMA_WARPS, MMA_WARPS * 16, a, scratch,
                                scratch_bytes, sms, s, pdl);
}

// f16 caches of D 32 to 128 with up to 8 rows per KV head: the tensor-core kernel, 4 or 8 rows a block
template <int KD>
cudaError_t launch_decode_mma_rows(const mlxn_attention_args &a, int64_t rows, void *scratch, size_t scratch_bytes,
                                   int sms, cudaStream_t s, bool pdl)
{
    if (rows <= 4)
        return launch_decode_mma<KD, 1>(a, scratch, scratch_bytes, sms, s, pdl);
    return launch_decode_mma<KD, 2>(a, scratch, scratch_bytes, sms, s, pdl);
}

// Caches (K and V, every sequence, at capacity) up to this size take one query row per block.
constexpr double DEC_SMALL_CACHE_BYTES = 16.0 * 1024 * 1024;

// RT: the rows per block, as many as the group has up to 8, while the scaled query rows and the
// outputs (RT x C x E floats each) stay within 64 registers each; one for a small cache. Rows
// sharing a block share its K and V loads, which matters once the cache streams from DRAM; a
// small cache stays in L2, the call is bound by the block's chain of dependent instructions
// (RT rows' dot products, reductions and updates per key), and rows in blocks of their own make
// the chain RT times shorter (bench/NOTES.md, attention at short contexts).
template <typename KV, int LPK, int C>
cudaError_t launch_decode_rows(const mlxn_attention_args &a, int64_t rows, void *scratch, size_t scratch_bytes,
                               int sms, cudaStream_t s, bool pdl)
{
    constexpr int E = KvChunk<KV>::E, RT_MAX = 64 / (C * E) < 8 ? 64 / (C * E) : 8;
    const double row_bytes = (double)KvChunk<KV>::span((int)(a.D / E));
    if (rows <= 1 || 2.0 * (double)(a.B * a.Hkv * a.S) * row_bytes <= DEC_SMALL_CACHE_BYTES)
        return launch_decode<KV, 1, LPK, C>(a, scratch, scratch_bytes, sms, s, pdl);
    if constexpr (std::is_same<KV, __half>::value) // tensor cores: f16, up to 8 rows, D 32 to 128
        if (rows <= 8) {
            if (a.D == 32)
                return launch_decode_mma_rows<1>(a, rows, scratch, scratch_bytes, sms, s, pdl);
            if (a.D == 64)
                return launch_decode_mma_rows<2>(a, rows, scratch, scratch_bytes, sms, s, pdl);
            if (a.D == 96)
                return launch_decode_mma_rows<3>(a, rows, scratch, scratch_bytes, sms, s, pdl);
            if (a.D == 128)
                return launch_decode_mma_rows<4>(a, rows, scratch, scratch_bytes, sms, s, pdl);
        }
    if (rows <= 2 || RT_MAX == 2)
        return launch_decode<KV, 2, LPK, C>(a, scratch, scratch_bytes, sms, s, pdl);
    if (rows <= 4 || RT_MAX == 4)
        return launch_decode<KV, 4, LPK, C>(a, scratch, scratch_bytes, sms, s, pdl);
    return launch_decode<KV, RT_MAX, LPK, C>(a, scratch, scratch_bytes, sms, s, pdl);
}

template <typename KV>
cudaError_t launch_decode_kv(const mlxn_attention_args &a, int64_t rows, void *scratch, size_t scratch_bytes, int sms,
                             cudaStream_t s, bool pdl)
{
    // lanes per key: the row's chunks rounded up to 8, 16 or 32 (rows of up to 64 chunks at
    // D 512 for 16-bit and q8_0 caches, 128 for f32, take 2 or 4 per lane)
    const int64_t nch = a.D / KvChunk<KV>::E;
    if (nch <= 8)
        return launch_decode_rows<KV, 8, 1>(a, rows, scratch, scratch_bytes, sms, s, pdl);
    if (nch <= 16)
        return launch_decode_rows<KV, 16, 1>(a, rows, scratch, scratch_bytes, sms, s, pdl);
    if (nch <= 32)
        return launch_decode_rows<KV, 32, 1>(a, rows, scratch, scratch_bytes, sms, s, pdl);
    if (KvChunk<KV>::E == 8 || nch <= 64)
        return launch_decode_rows<KV, 32, 2>(a, rows, scratch, scratch_bytes, sms, s, pdl);
    if constexpr (KvChunk<KV>::E == 4) // f32
        return launch_decode_rows<KV, 32, 4>(a, rows, scratch, scratch_bytes, sms, s, pdl);
    return cudaErrorInvalidValue; // not reached: the check above holds for 16-bit and q8_0 caches
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_attention_decode(const mlxn_attention_args *a, void *scratch,
                                                         size_t scratch_bytes, int sms, cudaStream_t s, bool pdl)
{
    const int64_t rows = a->Hq / a->Hkv * a->Tq;
    if (a->kv_dtype == MLXN_DTYPE_F16)
        return launch_decode_kv<__half>(*a, rows, scratch, scratch_bytes, sms, s, pdl);
    if (a->kv_dtype == MLXN_DTYPE_BF16)
        return launch_decode_kv<__nv_bfloat16>(*a, rows, scratch, scratch_bytes, sms, s, pdl);
    if (a->kv_dtype == MLXN_DTYPE_Q8_0)
        return launch_decode_kv<Q8_0>(*a, rows, scratch, scratch_bytes, sms, s, pdl);
    return launch_decode_kv<float>(*a, rows, scratch, scratch_bytes, sms, s, pdl);
}
