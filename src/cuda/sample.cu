// Sampling on CUDA (mlxn.h gives the rule), by the same steps and the same integer arithmetic
// as the CPU path (src/cpu/sample.c), so both pick the same token.
//
// One block per row (grid-stride over rows), up to 512 threads (at 1024 the 64 registers a
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

__device__ __forceinline__ uint64_t warp_sum_u64(uint64_t v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ uint64_t block_sum_u64(uint64_t v, uint64_t *smem)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum_u64(v);
    if (lane == 0)
        smem[warp] = v;
    __syncthreads();
    v = warp_sum_u64(lane < (int)(blockDim.x >> 5) ? smem[lane] : 0);
    __syncthreads();
    return v;
}

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
            const uint64_t s = warp_sum_u64(mine ? w : 0);
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

    if (threadIdx.x == 0)
        sm.token = -1;
    uint64_t ties_before = 0, weight_before = 0;
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
        uint64_t rank = ties_before + block_exclusive_scan<uint32_t>(my_ties, sm.scan32, &chunk_ties);
        uint64_t my_weight = 0;
#pragma unroll
        for (int j = 0; j < RUN; j++) {
            const bool in_cut = key[j] > cut_key || (key[j] == cut_key && j0 + j < src.n && rank++ < cut_ties);
            if (!in_cut || (a.min_p > 0.0f && !mlxn_sample_min_p_keeps(a.min_p, w[j])))
                w[j] = 0;
            my_weight += w[j];
        }
        uint64_t chunk_weight;
        uint64_t sum = weight_before + block_exclusive_scan<uint64_t>(my_weight, sm.scan64, &chunk_weight);
        if (sum <= target && target < sum + my_weight) {
#pragma unroll
            for (int j = 0; j < RUN; j++) {
                sum += w[j];
                if (sum > target) {
                    sm.token = (int32_t)src.id(j0 + j);
                    break;
                }
            }
        }
        __syncthreads();
        if (sm.token >= 0)
            break;
        ties_before += chunk_ties;
        weight_before += chunk_weight;
    }
    const int32_t token = sm.token;
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

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_sample(const mlxn_sample_args *a, cudaStream_t s, bool pdl)
{
    // a thread per RUN tokens of a row, at least a warp (short rows in large batches)
    int threads = 32;
    while (threads < MAX_THREADS && threads * RUN < a->n)
        threads *= 2;
    const unsigned grid = (unsigned)(a->n_rows < 65535 ? a->n_rows : 65535);
    return launch(sample_rows, dim3(grid), dim3(threads), 0, s, pdl, *a);
}
