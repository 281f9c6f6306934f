// Sampling on CUDA (mlxn.h gives the rule), by the same steps and the same integer arithmetic
// as the CPU path (src/cpu/sample.c), so both pick the same token.
//
// Batches up to 32 rows split each row over many blocks (the second half of this file); larger
// ones run one block per row (grid-stride over rows), up to 512 threads (at 1024 the 64 registers a
// thread may have spill); the logits never leave the device and are never sorted. A pass over the row reads it again (from L2 after the first)
// and recomputes z (penalty through a hash of the history in shared memory, then temperature):
//
//   max        z's maximum and its index (packed, block_reduce.cuh): greedy ends here
//   top-k      radix selection of the k-th key of the rank order: four passes, one byte of
//              the 32-bit order key each, counting keys per byte value in shared memory
//   gather     when the tokens at or above the top-k cut number at most CAND (top_k = 40:
//              about 40), one pass copies their z and ids to shared memory in id order, and
//              the steps below run over that list instead of the row
//   top-p      the same radix selection over weights (fixed point, sample_math.h) instead of
//              counts, inside the top-k cut; the first pass's total gives the weight to reach
//   total      the kept weight (min-p applied), one reduction
//   draw       the kept tokens in id order, RUN = 4 consecutive per thread: block scans of the
//              tie ranks at the cut and of the kept weights find the thread, then the token,
//              where the running sum passes the target; stops at that chunk
//
// Histograms: logits crowd into few values of the key's top byte, so lanes of a warp that hit
// one bin are summed first and a single lane adds to shared memory (hist_add).
//
// Shared memory (44.5 KB): history hash 32 KB (8192 ids, twice MLXN_SAMPLE_MAX_HISTORY,
// linear probing), candidates 8 KB, bins 3 KB, scan and broadcast words.

#include "../core/sample_math.h"
#include "block_reduce.cuh"
#include "common.cuh"
#include "split.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int MAX_THREADS = 512, HASH_BITS = 13, HASH = 1 << HASH_BITS, RUN = 4, CAND = 1024;
static_assert(HASH >= 2 * MLXN_SAMPLE_MAX_HISTORY, "the history hash must stay at most half full");

struct shared_state {
    int32_t hash[HASH];
    float cand_z[CAND];
    int32_t cand_id[CAND];
    uint64_t wbins[256];
    uint32_t cbins[256];
    uint64_t red[32];
    uint64_t scan64[33];
    uint32_t scan32[33];
    uint32_t pick;
    uint64_t above, above_count, at_count, target;
    int32_t token;
    bool stop;
};

__device__ __forceinline__ uint32_t hash_slot(int32_t id) { return ((uint32_t)id * 2654435761u) >> (32 - HASH_BITS); }

__device__ __forceinline__ bool in_history(const int32_t *hash, int32_t id)
{
    for (uint32_t h = hash_slot(id);; h = (h + 1) & (HASH - 1)) {
        const int32_t e = hash[h];
        if (e == id)
            return true;
        if (e < 0)
            return false;
    }
}

// The passes read tokens from a source: the whole row (z recomputed from the logit each time)
// or the candidates gathered in shared memory. Both list tokens in id order.
struct row_source {
    const float *x;
    int64_t n;
    const int32_t *hash; // the row's history, or nullptr: no penalty
    float penalty, temperature;
    __device__ __forceinline__ float z(int64_t j) const
    {
        return mlxn_sample_logit(x[j], hash && in_history(hash, (int32_t)j), penalty, temperature);
    }
    __device__ __forceinline__ int64_t id(int64_t j) const { return j; }
};

struct cand_source {
    const float *zs;
    const int32_t *ids;
    int64_t n;
    __device__ __forceinline__ float z(int64_t j) const { return zs[j]; }
    __device__ __forceinline__ int64_t id(int64_t j) const { return ids[j]; }
};

// Exclusive prefix sum over the block in thread order; *total gets the block's sum. smem: 33
// words, free again on return. All threads must call.
template <typename T> __device__ __forceinline__ T block_exclusive_scan(T v, T *smem, T *total)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (int)(blockDim.x >> 5);
    T incl = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const T t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o)
            incl += t;
    }
    if (lane == 31)
        smem[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        const T s = lane < nwarps ? smem[lane] : T(0);
        T si = s;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const T t = __shfl_up_sync(0xffffffffu, si, o);
            if (lane >= o)
                si += t;
        }
        smem[lane] = si - s;
        if (lane == 31)
            smem[32] = si;
    }
    __syncthreads();
    const T out = smem[warp] + incl - v;
    *total = smem[32];
    __syncthreads();
    return out;
}

// Adds one count (and weight w) to bin b for every lane where act; lanes of one bin are summed
// first and one of them adds. All lanes of the warp must call.
template <bool WEIGHTED>
__device__ __forceinline__ void hist_add(bool act, uint32_t b, uint64_t w, uint32_t *cbins, uint64_t *wbins)
{
    const int lane = threadIdx.x & 31;
    unsigned todo = __ballot_sync(0xffffffffu, act);
    while (todo) {
        const int leader = __ffs(todo) - 1;
        const uint32_t lb = __shfl_sync(0xffffffffu, b, leader);
        const bool mine = (todo >> lane & 1) && b == lb;
        const unsigned group = __ballot_sync(0xffffffffu, mine);
        if (WEIGHTED) {
            const uint64_t s = warp_reduce(mine ? w : (uint64_t)0, add_op());
            if (lane == leader)
                atomicAdd(reinterpret_cast<unsigned long long *>(&wbins[lb]), (unsigned long long)s);
        }
        if (lane == leader)
            atomicAdd(&cbins[lb], (uint32_t)__popc(group));
        todo &= ~group;
    }
}

struct radix_out {
    uint32_t key;
    uint64_t above, above_count; // measure and count of the keys above key
    uint64_t at_count;           // count of the elements with key itself (the extra group included)
    uint64_t need;               // the target (top-p: from the first pass's total)
};

// Radix selection over the keys of a source (src/cpu/sample.c's radix_select, block-parallel):
// the key K at which the measure of keys above it stays below the target and reaches it with
// K's own. Keys <= floor are left out when floor_excl; an extra group (extra_count elements of
// key extra_key, measure extra) joins. WEIGHTED: the measure is the weight, else the count.
// top_p >= 0: the target is mlxn_sample_top_p_need(top_p, the first pass's total); when that
// is 0 the selection stops with need 0.
template <bool WEIGHTED, typename S>
__device__ radix_out radix_select(const S &src, shared_state &sm, float zmax, uint32_t floor, bool floor_excl,
                                  uint32_t extra_key, uint64_t extra, uint64_t extra_count, uint64_t target,
                                  float top_p)
{
    uint32_t prefix = 0;
    uint64_t above = 0, above_count = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        const uint32_t hi = shift == 24 ? 0u : ~0u << (shift + 8);
        for (int t = threadIdx.x; t < 256; t += blockDim.x) {
            sm.cbins[t] = 0;
            sm.wbins[t] = 0;
        }
        __syncthreads();
        for (int64_t base = 0; base < src.n; base += blockDim.x) {
            const int64_t j = base + threadIdx.x;
            bool act = false;
            uint32_t bin = 0;
            uint64_t w = 0;
            if (j < src.n) {
                const float z = src.z(j);
                const uint32_t k = mlxn_f32_order_key(z);
                act = (k & hi) == prefix && !(floor_excl && k <= floor);
                bin = k >> shift & 255;
                if (WEIGHTED && act)
                    w = mlxn_sample_weight(z, zmax);
            }
            hist_add<WEIGHTED>(act, bin, w, sm.cbins, sm.wbins);
        }
        __syncthreads();
        if (threadIdx.x < 32) { // warp 0 picks the bin; lane l owns bins 255 - 8l .. 248 - 8l
            const int lane = threadIdx.x;
            const bool has_extra = extra_count && (extra_key & hi) == prefix;
            const uint32_t extra_bin = extra_key >> shift & 255;
            // bin b's count and measure, the extra group included
            auto count_of = [&](uint32_t b) -> uint64_t {
                return sm.cbins[b] + (has_extra && b == extra_bin ? extra_count : 0);
            };
            auto measure_of = [&](uint32_t b) -> uint64_t {
                return WEIGHTED ? sm.wbins[b] + (has_extra && b == extra_bin ? extra : 0) : count_of(b);
            };
            uint64_t msum = 0, csum = 0;
            for (int j = 0; j < 8; j++) {
                msum += measure_of(255 - 8 * lane - j);
                csum += count_of(255 - 8 * lane - j);
            }
            uint64_t mi = msum, ci = csum;
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const uint64_t tm = __shfl_up_sync(0xffffffffu, mi, o), tc = __shfl_up_sync(0xffffffffu, ci, o);
                if (lane >= o) {
                    mi += tm;
                    ci += tc;
                }
            }
            if (shift == 24 && top_p >= 0.0f)
                target = mlxn_sample_top_p_need(top_p, __shfl_sync(0xffffffffu, mi, 31));
            const unsigned reach = __ballot_sync(0xffffffffu, above + mi >= target);
            const int f = reach ? __ffs(reach) - 1 : 31;
            if (lane == 0) {
                sm.target = target; // for every thread (top-p computes it here)
                sm.stop = target == 0;
            }
            if (lane == f) {
                uint64_t run = above + mi - msum, cnt = above_count + ci - csum;
                uint32_t pick = 255 - 8 * lane - 7;
                for (int j = 0; j < 8; j++) {
                    const uint32_t b = 255 - 8 * lane - j;
                    if (run + measure_of(b) >= target) {
                        pick = b;
                        break;
                    }
                    run += measure_of(b);
                    cnt += count_of(b);
                }
                sm.pick = pick;
                sm.above = run;
                sm.above_count = cnt;
                sm.at_count = count_of(pick);
            }
        }
        __syncthreads();
        target = sm.target;
        if (sm.stop)
            return {0, 0, 0, 0, 0};
        prefix |= sm.pick << shift;
        above = sm.above;
        above_count = sm.above_count;
        __syncthreads(); // every thread has read sm before the next pass writes it
    }
    return {prefix, above, above_count, sm.at_count, target};
}

// Copies the row's tokens with key >= floor (at most CAND of them) to the candidate list, in id
// order; returns their number.
__device__ int64_t gather(const row_source &r, shared_state &sm, uint32_t floor)
{
    int64_t count = 0;
    for (int64_t c0 = 0; c0 < r.n; c0 += (int64_t)blockDim.x * RUN) {
        const int64_t i0 = c0 + (int64_t)threadIdx.x * RUN;
        float z[RUN];
        uint32_t mine = 0;
#pragma unroll
        for (int j = 0; j < RUN; j++) {
            z[j] = i0 + j < r.n ? r.z(i0 + j) : 0.0f;
            mine += i0 + j < r.n && mlxn_f32_order_key(z[j]) >= floor;
        }
        uint32_t chunk;
        int64_t at = count + block_exclusive_scan<uint32_t>(mine, sm.scan32, &chunk);
#pragma unroll
        for (int j = 0; j < RUN; j++)
            if (i0 + j < r.n && mlxn_f32_order_key(z[j]) >= floor) {
                sm.cand_z[at] = z[j];
                sm.cand_id[at] = (int32_t)(i0 + j);
                at++;
            }
        count += chunk;
    }
    __syncthreads();
    return count;
}

// The row's cut after top-k, narrowed by top-p: keys above cut_key, then the first cut_ties
// (by id) of cut_key.
template <typename S>
__device__ void top_p_cut(const S &src, shared_state &sm, float zmax, uint32_t kmax, bool topk, float top_p,
                          uint32_t &cut_key, uint64_t &cut_ties)
{
    const uint64_t wc = mlxn_sample_weight(mlxn_order_key_value(cut_key), zmax);
    const radix_out p = radix_select<true>(src, sm, zmax, cut_key, topk, cut_key, topk ? cut_ties * wc : 0,
                                           topk ? cut_ties : 0, 0, top_p);
    if (p.need == 0) {
        cut_key = kmax;
        cut_ties = 1;
    } else {
        const uint64_t wp = mlxn_sample_weight(mlxn_order_key_value(p.key), zmax);
        cut_key = p.key;
        cut_ties = (p.need - p.above + wp - 1) / wp;
    }
}

template <typename S>
__device__ int32_t draw_walk(const S &src, uint32_t *scan32, uint64_t *scan64, int32_t *token_slot, float min_p,
                             float zmax, uint32_t cut_key, uint64_t cut_ties, uint64_t target, uint64_t ties_before,
                             uint64_t weight_before);

// The kept weight (keys above the cut that min-p keeps, and the cut's ties, of one weight),
// then the draw: the kept tokens in id order, RUN per thread, until the running sum passes the
// target. Returns the token's id.
template <typename S>
__device__ int32_t draw(const S &src, shared_state &sm, const mlxn_sample_args &a, int64_t row, float zmax,
                        uint32_t cut_key, uint64_t cut_ties)
{
    uint64_t total = 0;
    for (int64_t j = threadIdx.x; j < src.n; j += blockDim.x) {
        const float z = src.z(j);
        if (mlxn_f32_order_key(z) > cut_key) {
            const uint64_t w = mlxn_sample_weight(z, zmax);
            if (a.min_p <= 0.0f || mlxn_sample_min_p_keeps(a.min_p, w))
                total += w;
        }
    }
    total = block_sum_u64(total, sm.red);
    const uint64_t w_cut = mlxn_sample_weight(mlxn_order_key_value(cut_key), zmax);
    if (a.min_p <= 0.0f || mlxn_sample_min_p_keeps(a.min_p, w_cut))
        total += cut_ties * w_cut;
    const uint64_t target = mlxn_sample_target(total, mlxn_sample_bits(a.seed, a.step, (uint64_t)row));
    return draw_walk(src, sm.scan32, sm.scan64, &sm.token, a.min_p, zmax, cut_key, cut_ties, target, 0, 0);
}

// The draw's walk: the kept tokens of src in id order, RUN per thread, after ties_before ties
// of the cut and weight_before of kept weight (earlier chunks of the row), until the running sum
// passes target. Returns the token's id (-1 when src's kept weight ends before target).
template <typename S>
__device__ int32_t draw_walk(const S &src, uint32_t *scan32, uint64_t *scan64, int32_t *token_slot, float min_p,
                             float zmax, uint32_t cut_key, uint64_t cut_ties, uint64_t target, uint64_t ties_before,
                             uint64_t weight_before)
{
    if (threadIdx.x == 0)
        *token_slot = -1;
    for (int64_t c0 = 0; c0 < src.n; c0 += (int64_t)blockDim.x * RUN) {
        const int64_t j0 = c0 + (int64_t)threadIdx.x * RUN;
        uint32_t key[RUN];
        uint64_t w[RUN];
        uint32_t my_ties = 0;
#pragma unroll
        for (int j = 0; j < RUN; j++) {
            key[j] = 0;
            w[j] = 0;
            if (j0 + j < src.n) {
                const float z = src.z(j0 + j);
                key[j] = mlxn_f32_order_key(z);
                if (key[j] >= cut_key)
                    w[j] = mlxn_sample_weight(z, zmax);
                my_ties += key[j] == cut_key;
            }
        }
        uint32_t chunk_ties;
        uint64_t rank = ties_before + block_exclusive_scan<uint32_t>(my_ties, scan32, &chunk_ties);
        uint64_t my_weight = 0;
#pragma unroll
        for (int j = 0; j < RUN; j++) {
            const bool in_cut = key[j] > cut_key || (key[j] == cut_key && j0 + j < src.n && rank++ < cut_ties);
            if (!in_cut || (min_p > 0.0f && !mlxn_sample_min_p_keeps(min_p, w[j])))
                w[j] = 0;
            my_weight += w[j];
        }
        uint64_t chunk_weight;
        uint64_t sum = weight_before + block_exclusive_scan<uint64_t>(my_weight, scan64, &chunk_weight);
        if (sum <= target && target < sum + my_weight) {
#pragma unroll
            for (int j = 0; j < RUN; j++) {
                sum += w[j];
                if (sum > target) {
                    *token_slot = (int32_t)src.id(j0 + j);
                    break;
                }
            }
        }
        __syncthreads();
        if (*token_slot >= 0)
            break;
        ties_before += chunk_ties;
        weight_before += chunk_weight;
    }
    const int32_t token = *token_slot;
    __syncthreads(); // read by every thread before anyone writes it again
    return token;
}

__global__ void __launch_bounds__(MAX_THREADS, 1) sample_rows(const mlxn_sample_args a)
{
    __shared__ shared_state sm;
    wait_for_previous_kernel();
    allow_next_kernel();
    for (int64_t row = blockIdx.x; row < a.n_rows; row += gridDim.x) {
        const bool pen = a.history.base != nullptr;
        const row_source r = {reinterpret_cast<const float *>(mlxn_rows_ptr(&a.logits, row)), a.n,
                              pen ? sm.hash : nullptr, a.repeat_penalty, a.temperature};
        if (pen) {
            for (int t = threadIdx.x; t < HASH; t += blockDim.x)
                sm.hash[t] = -1;
            __syncthreads();
            const int32_t *h = reinterpret_cast<const int32_t *>(mlxn_rows_ptr(&a.history, row));
            for (int64_t j = threadIdx.x; j < a.n_history; j += blockDim.x) {
                const int32_t id = h[j];
                if (id < 0 || id >= r.n)
                    continue;
                for (uint32_t s = hash_slot(id);; s = (s + 1) & (HASH - 1)) {
                    const int32_t prev = atomicCAS(&sm.hash[s], -1, id);
                    if (prev == -1 || prev == id)
                        break;
                }
            }
            __syncthreads();
        }

        // the maximum (and greedy's answer)
        uint64_t best = 0;
        for (int64_t i = threadIdx.x; i < r.n; i += blockDim.x) {
            const uint64_t c = mlxn_argmax_pack(r.z(i), i);
            best = c > best ? c : best;
        }
        best = block_max_u64(best, sm.red);
        const uint32_t kmax = (uint32_t)(best >> 32);
        int32_t token;
        if (r.temperature <= 0.0f || kmax <= MLXN_KEY_NEG_INF) {
            token = r.temperature <= 0.0f ? mlxn_argmax_index(best) : -1;
        } else {
            const float zmax = mlxn_order_key_value(kmax);
            uint32_t cut_key = 0;
            uint64_t cut_ties = (uint64_t)r.n;
            const bool topk = a.top_k > 0 && a.top_k < r.n;
            bool gathered = false;
            if (topk) {
                const radix_out k = radix_select<false>(r, sm, zmax, 0, false, 0, 0, 0, (uint64_t)a.top_k, -1.0f);
                cut_key = k.key;
                cut_ties = (uint64_t)a.top_k - k.above_count;
                gathered = k.above_count + k.at_count <= (uint64_t)CAND;
            }
            if (gathered) {
                const cand_source c = {sm.cand_z, sm.cand_id, gather(r, sm, cut_key)};
                if (a.top_p < 1.0f)
                    top_p_cut(c, sm, zmax, kmax, topk, a.top_p, cut_key, cut_ties);
                token = draw(c, sm, a, row, zmax, cut_key, cut_ties);
            } else {
                if (a.top_p < 1.0f)
                    top_p_cut(r, sm, zmax, kmax, topk, a.top_p, cut_key, cut_ties);
                token = draw(r, sm, a, row, zmax, cut_key, cut_ties);
            }
        }
        if (threadIdx.x == 0)
            a.out[row] = token;
        __syncthreads(); // the hash and the candidates are read before the next row writes them
    }
}


// ---------------------------------------------------------------- rows split over blocks
//
// For B <= SPLIT_ROWS (split.cuh) each row is cut into chunks of consecutive ids, one block of
// SPLIT_THREADS each (up to SPLIT_MAX per row, at most CHUNK_MAX ids so that a chunk's history
// bits fit in shared memory), and the steps above become kernels over all chunks at once:
//
//   split_max    the chunk's packed maximum (z with penalty and temperature); also resets the
//                row's selection state and the bins of the radix passes that follow
//   split_radix  one digit (11, 11, 10 bits of the order key) of a radix selection: top-k over
//                counts, then top-p over weights inside the top-k cut (the cut's ties as one
//                extra group, as in radix_select above); each block adds its shared histogram
//                to the row's in the scratch, the last block to arrive picks the bin and
//                stores the selection's state for the next digit
//   split_draw   per chunk: the ties of the cut key and the kept weight above it; the last
//                block turns them into each chunk's kept weight (ties count in id order up to
//                the cut's), draws the target and walks only the chunk that holds it
//
// Every block recomputes the row's maximum from the chunks' (at most 128 loads). Plain
// sampling runs 2 kernels, llama.cpp's defaults 8; each reads the row from L2 at the device's
// pace instead of one SM's. The arithmetic per token is the same as above and as the CPU's,
// and a radix selection's result does not depend on the digit widths, so the token is too.

constexpr int SPLIT_THREADS = 256, CHUNK_MAX = 16384, NBINS = 2048;

__device__ __forceinline__ int digit_shift(int d) { return d == 0 ? 21 : d == 1 ? 10 : 0; }
__device__ __forceinline__ uint32_t digit_bins(int d) { return d == 2 ? 1024u : 2048u; }
// the key bits that the digits before d have chosen
__device__ __forceinline__ uint32_t digit_hi(int d) { return d == 0 ? 0u : ~0u << digit_shift(d - 1); }

// A radix selection's state between digits (see radix_out).
struct split_sel {
    uint32_t prefix, stop; // stop: top-p's target is 0 (the leader alone)
    uint64_t above, above_count, target;
};

// A row's part of the scratch.
struct split_row {
    uint64_t part_max[SPLIT_MAX];
    uint64_t part_w[SPLIT_MAX];     // split_draw: kept weight above the cut, per chunk
    uint32_t part_ties[SPLIT_MAX];  // split_draw: tokens with the cut key, per chunk
    uint32_t arrived[8];            // per pass: top-k digits 0-2, top-p digits 3-5, draw 6
    split_sel sel[2];               // 0: top-k (counts), 1: top-p (weights)
    uint32_t cnt[2][3][NBINS];
    uint64_t wgt[3][NBINS];
};
static_assert(SPLIT_ARGMAX_BYTES + SPLIT_ROWS * sizeof(split_row) <= MLXN_CUDA_SAMPLE_SCRATCH_BYTES,
              "the sampling scratch is too small");

struct split_shared {
    uint32_t pen[CHUNK_MAX / 32]; // bit j: id first + j of the chunk is in the history
    uint32_t cbins[NBINS];
    uint64_t wbins[NBINS];
    uint64_t red[32];
    uint64_t scan64[33];
    uint32_t scan32[33];
    int64_t at_chunk;
    uint64_t at_ties, at_weight;
    int32_t token;
    bool last;
};

// Scratch written by other blocks or kernels is read from L2, never from a stale L1 line.
__device__ __forceinline__ uint64_t ld_u64(const uint64_t *p) { return __ldcg(reinterpret_cast<const unsigned long long *>(p)); }
__device__ __forceinline__ uint32_t ld_u32(const uint32_t *p) { return __ldcg(reinterpret_cast<const unsigned int *>(p)); }

__device__ __forceinline__ split_sel load_sel(const split_sel &s)
{
    return {ld_u32(&s.prefix), ld_u32(&s.stop), ld_u64(&s.above), ld_u64(&s.above_count), ld_u64(&s.target)};
}

// The tokens of one chunk, in id order.
struct chunk_source {
    const float *x; // the row's logits from the chunk's first id
    int64_t first, n;
    const uint32_t *pen; // nullptr: no penalty
    float penalty, temperature;
    __device__ __forceinline__ float z(int64_t j) const
    {
        return mlxn_sample_logit(x[j], pen && (pen[j >> 5] >> (j & 31) & 1), penalty, temperature);
    }
    __device__ __forceinline__ int64_t id(int64_t j) const { return first + j; }
};

// Chunk c of row r (c * len < n) with its history bits in shared memory. All threads call.
__device__ chunk_source chunk_of(const mlxn_sample_args &a, int64_t len, int r, int64_t c, split_shared &sm)
{
    const int64_t first = c * len, n = len < a.n - first ? len : a.n - first;
    const bool pen = a.history.base != nullptr;
    if (pen) {
        __syncthreads(); // the bits of an earlier chunk are no longer read
        for (int t = threadIdx.x; t < CHUNK_MAX / 32; t += blockDim.x)
            sm.pen[t] = 0;
        __syncthreads();
        const int32_t *h = reinterpret_cast<const int32_t *>(mlxn_rows_ptr(&a.history, r));
        for (int64_t j = threadIdx.x; j < a.n_history; j += blockDim.x) {
            const int64_t id = (int64_t)h[j] - first; // ids outside [0, V) fall outside every chunk
            if (id >= 0 && id < n)
                atomicOr(&sm.pen[id >> 5], 1u << (id & 31));
        }
        __syncthreads();
    }
    const float *x = reinterpret_cast<const float *>(mlxn_rows_ptr(&a.logits, r));
    return {x + first, first, n, pen ? sm.pen : nullptr, a.repeat_penalty, a.temperature};
}

// The row's packed maximum, from the chunks' (all threads call).
__device__ uint64_t row_best(const split_row &sr, split_shared &sm)
{
    const uint64_t b = threadIdx.x < gridDim.x ? ld_u64(&sr.part_max[threadIdx.x]) : 0;
    return block_max_u64(b, sm.red);
}

// grid (chunks, rows) for all three kernels.
__global__ void __launch_bounds__(SPLIT_THREADS) split_max(const mlxn_sample_args a, int64_t len, split_row *rows,
                                                           bool zero_bins)
{
    __shared__ split_shared sm;
    wait_for_previous_kernel();
    allow_next_kernel();
    const int r = blockIdx.y;
    const int64_t c = blockIdx.x;
    split_row &sr = rows[r];
    const chunk_source src = chunk_of(a, len, r, c, sm);
    uint64_t best = 0;
    for (int64_t j = threadIdx.x; j < src.n; j += blockDim.x) {
        const uint64_t p = mlxn_argmax_pack(src.z(j), src.id(j));
        best = p > best ? p : best;
    }
    best = block_max_u64(best, sm.red);
    if (threadIdx.x == 0)
        sr.part_max[c] = best;
    if (c == 0 && threadIdx.x == 0) {
        sr.sel[0] = {0, 0, 0, 0, (uint64_t)a.top_k};
        sr.sel[1] = {0, 0, 0, 0, 0};
    }
    if (zero_bins) {
        const int64_t step = (int64_t)gridDim.x * blockDim.x, at = c * blockDim.x + threadIdx.x;
        for (int64_t i = at; i < 2 * 3 * NBINS; i += step)
            (&sr.cnt[0][0][0])[i] = 0;
        for (int64_t i = at; i < 3 * NBINS; i += step)
            (&sr.wgt[0][0])[i] = 0;
    }
}

// Digit d of selection sel (0: top-k over counts; 1: top-p over weights).
__global__ void __launch_bounds__(SPLIT_THREADS) split_radix(const mlxn_sample_args a, int64_t len, split_row *rows,
                                                             int sel, int d)
{
    __shared__ split_shared sm;
    wait_for_previous_kernel();
    allow_next_kernel();
    const int r = blockIdx.y;
    split_row &sr = rows[r];
    const uint32_t kmax = (uint32_t)(row_best(sr, sm) >> 32);
    const split_sel st = load_sel(sr.sel[sel]);
    if (kmax <= MLXN_KEY_NEG_INF || st.stop) // the same in every block of the row: none arrives
        return;
    const float zmax = mlxn_order_key_value(kmax);
    // top-p inside a top-k cut: keys above the cut, and the cut's ties as one group
    const bool inside_topk = sel == 1 && a.top_k > 0 && a.top_k < a.n;
    uint32_t floor = 0;
    uint64_t extra = 0, extra_count = 0;
    if (inside_topk) {
        floor = ld_u32(&sr.sel[0].prefix);
        extra_count = (uint64_t)a.top_k - ld_u64(&sr.sel[0].above_count);
        extra = extra_count * mlxn_sample_weight(mlxn_order_key_value(floor), zmax);
    }
    const int shift = digit_shift(d);
    const uint32_t hi = digit_hi(d), nb = digit_bins(d);
    for (int t = threadIdx.x; t < NBINS; t += blockDim.x) {
        sm.cbins[t] = 0;
        sm.wbins[t] = 0;
    }
    const chunk_source src = chunk_of(a, len, r, blockIdx.x, sm);
    __syncthreads();
    for (int64_t base = 0; base < src.n; base += blockDim.x) {
        const int64_t j = base + threadIdx.x;
        bool act = false;
        uint32_t bin = 0;
        uint64_t w = 0;
        if (j < src.n) {
            const float z = src.z(j);
            const uint32_t k = mlxn_f32_order_key(z);
            act = (k & hi) == st.prefix && !(inside_topk && k <= floor);
            bin = k >> shift & (nb - 1);
            if (sel == 1 && act)
                w = mlxn_sample_weight(z, zmax);
        }
        if (sel == 1)
            hist_add<true>(act, bin, w, sm.cbins, sm.wbins);
        else
            hist_add<false>(act, bin, w, sm.cbins, sm.wbins);
    }
    __syncthreads();
    uint32_t *gc = sr.cnt[sel][d];
    uint64_t *gw = sr.wgt[d];
    for (uint32_t b = threadIdx.x; b < nb; b += blockDim.x)
        if (sm.cbins[b]) {
            atomicAdd(&gc[b], sm.cbins[b]);
            if (sel == 1)
                atomicAdd(reinterpret_cast<unsigned long long *>(&gw[b]), (unsigned long long)sm.wbins[b]);
        }
    if (!split_last_block(&sr.arrived[sel * 3 + d], gridDim.x, &sm.last))
        return;

    // The last block picks the bin where the measure from the top reaches the target: thread t
    // owns bins nb - 1 - per * t down to nb - per * (t + 1), largest keys first.
    const bool has_extra = extra_count && (floor & hi) == st.prefix;
    const uint32_t extra_bin = floor >> shift & (nb - 1), per = nb / blockDim.x;
    auto count_of = [&](uint32_t b) -> uint64_t {
        return ld_u32(&gc[b]) + (has_extra && b == extra_bin ? extra_count : 0);
    };
    auto measure_of = [&](uint32_t b) -> uint64_t {
        return sel == 1 ? ld_u64(&gw[b]) + (has_extra && b == extra_bin ? extra : 0) : count_of(b);
    };
    const uint32_t top = nb - 1 - per * threadIdx.x;
    uint64_t m = 0, n = 0;
    for (uint32_t j = 0; j < per; j++) {
        m += measure_of(top - j);
        n += count_of(top - j);
    }
    uint64_t m_total, n_total;
    const uint64_t m_before = st.above + block_exclusive_scan<uint64_t>(m, sm.scan64, &m_total);
    const uint64_t n_before = st.above_count + block_exclusive_scan<uint64_t>(n, sm.scan64, &n_total);
    uint64_t target = st.target;
    if (sel == 1 && d == 0) { // the first top-p digit sees the whole kept weight
        target = mlxn_sample_top_p_need(a.top_p, m_total);
        if (target == 0) {
            if (threadIdx.x == 0)
                sr.sel[1].stop = 1;
            return;
        }
    }
    if (m_before < target && target <= m_before + m) { // one thread: the measures are >= 0
        uint64_t run = m_before, cnt = n_before;
        uint32_t pick = top + 1 - per;
        for (uint32_t j = 0; j < per; j++) {
            const uint32_t b = top - j;
            if (run + measure_of(b) >= target) {
                pick = b;
                break;
            }
            run += measure_of(b);
            cnt += count_of(b);
        }
        sr.sel[sel] = {st.prefix | pick << shift, 0, run, cnt, target};
    }
}

__global__ void __launch_bounds__(SPLIT_THREADS) split_draw(const mlxn_sample_args a, int64_t len, split_row *rows)
{
    __shared__ split_shared sm;
    wait_for_previous_kernel();
    allow_next_kernel();
    const int r = blockIdx.y;
    const int64_t c = blockIdx.x;
    split_row &sr = rows[r];
    const uint64_t best = row_best(sr, sm);
    const uint32_t kmax = (uint32_t)(best >> 32);
    if (a.temperature <= 0.0f || kmax <= MLXN_KEY_NEG_INF) {
        if (c == 0 && threadIdx.x == 0)
            a.out[r] = a.temperature <= 0.0f ? mlxn_argmax_index(best) : -1;
        return;
    }
    const float zmax = mlxn_order_key_value(kmax);
    // the cut: everything, then top-k, then top-p inside it (top_p_cut above)
    uint32_t cut_key = 0;
    uint64_t cut_ties = (uint64_t)a.n;
    if (a.top_k > 0 && a.top_k < a.n) {
        cut_key = ld_u32(&sr.sel[0].prefix);
        cut_ties = (uint64_t)a.top_k - ld_u64(&sr.sel[0].above_count);
    }
    if (a.top_p < 1.0f) {
        const split_sel p = load_sel(sr.sel[1]);
        if (p.stop) {
            cut_key = kmax;
            cut_ties = 1;
        } else {
            const uint64_t wp = mlxn_sample_weight(mlxn_order_key_value(p.prefix), zmax);
            cut_key = p.prefix;
            cut_ties = (p.target - p.above + wp - 1) / wp;
        }
    }
    const uint64_t w_cut = mlxn_sample_weight(mlxn_order_key_value(cut_key), zmax);
    const bool cut_kept = a.min_p <= 0.0f || mlxn_sample_min_p_keeps(a.min_p, w_cut);

    const chunk_source src = chunk_of(a, len, r, c, sm);
    uint64_t ties = 0, weight = 0;
    for (int64_t j = threadIdx.x; j < src.n; j += blockDim.x) {
        const float z = src.z(j);
        const uint32_t k = mlxn_f32_order_key(z);
        ties += k == cut_key;
        if (k > cut_key) {
            const uint64_t w = mlxn_sample_weight(z, zmax);
            if (a.min_p <= 0.0f || mlxn_sample_min_p_keeps(a.min_p, w))
                weight += w;
        }
    }
    ties = block_sum_u64(ties, sm.red);
    weight = block_sum_u64(weight, sm.red);
    if (threadIdx.x == 0) {
        sr.part_ties[c] = (uint32_t)ties;
        sr.part_w[c] = weight;
    }
    if (!split_last_block(&sr.arrived[6], gridDim.x, &sm.last))
        return;

    // The last block: each chunk's kept weight (its ties stay while the row's count, in id
    // order, is below cut_ties), the target, and the chunk where the running sum passes it.
    if (threadIdx.x == 0)
        sm.at_chunk = -1;
    uint64_t ct = 0, cw = 0;
    if (threadIdx.x < gridDim.x) {
        ct = ld_u32(&sr.part_ties[threadIdx.x]);
        cw = ld_u64(&sr.part_w[threadIdx.x]);
    }
    uint64_t ties_total, total;
    const uint64_t ties_before = block_exclusive_scan<uint64_t>(ct, sm.scan64, &ties_total);
    const uint64_t kept_ties = cut_ties > ties_before ? (ct < cut_ties - ties_before ? ct : cut_ties - ties_before) : 0;
    const uint64_t kept = cw + (cut_kept ? kept_ties * w_cut : 0);
    const uint64_t kept_before = block_exclusive_scan<uint64_t>(kept, sm.scan64, &total);
    const uint64_t target = mlxn_sample_target(total, mlxn_sample_bits(a.seed, a.step, (uint64_t)r));
    if (kept_before <= target && target < kept_before + kept) { // one chunk: target < total
        sm.at_chunk = threadIdx.x;
        sm.at_ties = ties_before;
        sm.at_weight = kept_before;
    }
    __syncthreads();
    const int64_t at = sm.at_chunk;
    int32_t token = -1;
    if (at >= 0) {
        const chunk_source hold = chunk_of(a, len, r, at, sm);
        token = draw_walk(hold, sm.scan32, sm.scan64, &sm.token, a.min_p, zmax, cut_key, cut_ties, target, sm.at_ties,
                          sm.at_weight);
    }
    if (threadIdx.x == 0)
        a.out[r] = token;
}

cudaError_t launch_split(const mlxn_sample_args &a, int blocks, int64_t len, split_row *rows, cudaStream_t s, bool pdl)
{
    const dim3 grid((unsigned)blocks, (unsigned)a.n_rows), block(SPLIT_THREADS);
    const bool sampled = a.temperature > 0.0f;
    const bool topk = sampled && a.top_k > 0 && a.top_k < a.n, topp = sampled && a.top_p < 1.0f;
    cudaError_t e = launch(split_max, grid, block, 0, s, pdl, a, len, rows, topk || topp);
    for (int sel = 0; sel < 2; sel++)
        for (int d = 0; d < 3 && e == cudaSuccess && (sel == 0 ? topk : topp); d++)
            e = launch(split_radix, grid, block, 0, s, pdl, a, len, rows, sel, d);
    if (e == cudaSuccess)
        e = launch(split_draw, grid, block, 0, s, pdl, a, len, rows);
    return e;
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_sample(const mlxn_sample_args *a, void *scratch, cudaStream_t s, bool pdl)
{
    if (scratch && a->n_rows <= SPLIT_ROWS) {
        // about 512 blocks in all (four per SM), each at least 1024 ids
        int blocks;
        const int64_t len = split_chunk(a->n, (512 + a->n_rows - 1) / a->n_rows, 1024, &blocks);
        if (len <= CHUNK_MAX)
            return launch_split(*a, blocks, len,
                                reinterpret_cast<split_row *>(static_cast<char *>(scratch) + SPLIT_ARGMAX_BYTES), s, pdl);
    }
    // a thread per RUN tokens of a row, at least a warp (short rows in large batches)
    int threads = 32;
    while (threads < MAX_THREADS && threads * RUN < a->n)
        threads *= 2;
    const unsigned grid = (unsigned)(a->n_rows < 65535 ? a->n_rows : 65535);
    return launch(sample_rows, dim3(grid), dim3(threads), 0, s, pdl, *a);
}
