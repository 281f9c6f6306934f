// Inclusive prefix sums along rows on CUDA (f32 summed in f32; i32 in unsigned arithmetic, so
// it wraps modulo 2^32). A row is scanned in tiles of TPR threads x ITEMS elements: each thread
// loads ITEMS consecutive elements (two 16-byte loads when the rows are 16-byte aligned), scans
// them in registers, and the threads' totals are scanned across the group with warp shuffles
// (and shared memory across warps). Two ways to chain the tiles of a row, chosen at launch:
//   ROWS      a group per row walks its tiles in order, carrying the running total: one pass
//             (read x, write y); groups are a warp for rows of up to 256 elements, else the
//             block. Enough rows fill the GPU this way.
//   LOOKBACK  few long rows: a block per tile of 2048, every tile of every row in flight at
//             once, chained by decoupled look-back (Merrill and Garland, "Single-pass Parallel
//             Prefix Scan with Decoupled Look-back", 2016): a tile publishes its total as soon as
//             it is known, then its first warp reads the flags of the 32 tiles before it at a
//             time, adding their totals until it meets one that has published its inclusive
//             prefix; then it publishes its own. Still one pass over x and y. Tiles take their
//             index from a counter in launch order, so every tile a block waits for is already
//             running (no deadlock whatever the scheduling). The flags and the counter live in
//             the stream's scan scratch (launch.h), cleared by a memset node before the kernel.
#include "common.cuh"
#include "elementwise.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int THREADS = 256, ITEMS = 8, TILE = THREADS * ITEMS;
constexpr unsigned FULL = 0xffffffffu;

template <typename Acc> __device__ __forceinline__ Acc from_bits(uint32_t w);
template <> __device__ __forceinline__ float from_bits<float>(uint32_t w) { return __uint_as_float(w); }
template <> __device__ __forceinline__ uint32_t from_bits<uint32_t>(uint32_t w) { return w; }
__device__ __forceinline__ uint32_t to_bits(float v) { return __float_as_uint(v); }
__device__ __forceinline__ uint32_t to_bits(uint32_t v) { return v; }

// Elements e0 .. e0 + ITEMS - 1 of a row of n (zeros past its end). VEC: the row starts 16-byte
// aligned, so e0 (a multiple of 8) is 32-byte aligned.
template <typename Acc, bool VEC> __device__ __forceinline__ void load_items(const char *row, int64_t e0, int64_t n, Acc (&v)[ITEMS])
{
    const uint32_t *p = reinterpret_cast<const uint32_t *>(row) + e0;
    if (VEC && e0 + ITEMS <= n) {
        uint4 w[2] = {reinterpret_cast<const uint4 *>(p)[0], reinterpret_cast<const uint4 *>(p)[1]};
        const uint32_t *u = reinterpret_cast<const uint32_t *>(w);
#pragma unroll
        for (int j = 0; j < ITEMS; j++)
            v[j] = from_bits<Acc>(u[j]);
        return;
    }
#pragma unroll
    for (int j = 0; j < ITEMS; j++)
        v[j] = e0 + j < n ? from_bits<Acc>(p[j]) : Acc(0);
}

template <typename Acc, bool VEC> __device__ __forceinline__ void store_items(char *row, int64_t e0, int64_t n, const Acc (&v)[ITEMS])
{
    uint32_t *p = reinterpret_cast<uint32_t *>(row) + e0;
    if (VEC && e0 + ITEMS <= n) {
        uint4 w[2];
        uint32_t *u = reinterpret_cast<uint32_t *>(w);
#pragma unroll
        for (int j = 0; j < ITEMS; j++)
            u[j] = to_bits(v[j]);
        reinterpret_cast<uint4 *>(p)[0] = w[0];
        reinterpret_cast<uint4 *>(p)[1] = w[1];
        return;
    }
#pragma unroll
    for (int j = 0; j < ITEMS; j++)
        if (e0 + j < n)
            p[j] = to_bits(v[j]);
}

// The sum of v over the threads of the group before this one (exclusive scan), and the group's
// total in *total. TPR 32: a warp; TPR THREADS: the block (all threads call; warp_tot holds the
// THREADS / 32 warps' totals).
template <typename Acc, int TPR> __device__ __forceinline__ Acc group_exclusive(Acc v, Acc *warp_tot, Acc *total)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    Acc inc = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const Acc u = __shfl_up_sync(FULL, inc, o);
        if (lane >= o)
            inc += u;
    }
    Acc excl = __shfl_up_sync(FULL, inc, 1);
    if (lane == 0)
        excl = Acc(0);
    if constexpr (TPR == 32) {
        *total = __shfl_sync(FULL, inc, 31);
        return excl;
    } else {
        if (lane == 31)
            warp_tot[warp] = inc;
        __syncthreads();
        Acc before = Acc(0), all = Acc(0);
#pragma unroll
        for (int w = 0; w < TPR / 32; w++) {
            if (w == warp)
                before = all;
            all += warp_tot[w];
        }
        __syncthreads(); // read before the next tile overwrites them
        *total = all;
        return before + excl;
    }
}

// The thread's ITEMS elements scanned in registers; returns their total.
template <typename Acc> __device__ __forceinline__ Acc scan_items(Acc (&v)[ITEMS])
{
#pragma unroll
    for (int j = 1; j < ITEMS; j++)
        v[j] += v[j - 1];
    return v[ITEMS - 1];
}

// ---------------------------------------------------------------- ROWS

template <typename Acc, int TPR, bool VEC> __global__ void __launch_bounds__(THREADS) cumsum_rows(const mlxn_cumsum_args a)
{
    __shared__ Acc warp_tot[THREADS / 32];
    wait_for_previous_kernel();
    allow_next_kernel();
    constexpr int ROWS = THREADS / TPR, GROUP_TILE = TPR * ITEMS;
    const int t = threadIdx.x % TPR, g = threadIdx.x / TPR;
    for (int64_t r0 = (int64_t)blockIdx.x * ROWS; r0 < a.n_rows; r0 += (int64_t)gridDim.x * ROWS) {
        const int64_t r = r0 + g;
        const bool live = r < a.n_rows;
        const char *x = live ? mlxn_rows_ptr(&a.x, r) : nullptr;
        char *y = live ? mlxn_rows_ptr(&a.y, r) : nullptr;
        Acc carry = Acc(0);
        for (int64_t i0 = 0; i0 < a.n; i0 += GROUP_TILE) {
            const int64_t e0 = i0 + (int64_t)t * ITEMS;
            Acc v[ITEMS];
            if (live)
                load_items<Acc, VEC>(x, e0, a.n, v);
            else
#pragma unroll
                for (int j = 0; j < ITEMS; j++)
                    v[j] = Acc(0);
            Acc total;
            const Acc base = carry + group_exclusive<Acc, TPR>(scan_items(v), warp_tot, &total);
#pragma unroll
            for (int j = 0; j < ITEMS; j++)
                v[j] = base + v[j];
            if (live)
                store_items<Acc, VEC>(y, e0, a.n, v);
            carry += total;
        }
    }
}

// ---------------------------------------------------------------- LOOKBACK

// A tile's flag: status in the high 32 bits, the value's bits in the low 32.
constexpr uint64_t FLAG_TOTAL = 1, FLAG_PREFIX = 2; // 0: nothing published yet

__device__ __forceinline__ uint64_t load_flag(const uint64_t *p)
{
    uint64_t v;
    asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ void store_flag(uint64_t *p, uint64_t v)
{
    asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

// scratch: [0] the tile counter, [1 + k] the flag of tile k (row-major over rows and tiles).
template <typename Acc, bool VEC>
__global__ void __launch_bounds__(THREADS) cumsum_lookback(const mlxn_cumsum_args a, uint64_t *scratch, int64_t tiles_per_row)
{
    __shared__ Acc warp_tot[THREADS / 32];
    __shared__ Acc tile_prefix;
    __shared__ uint32_t tile_index;
    wait_for_previous_kernel();
    allow_next_kernel();
    if (threadIdx.x == 0)
        tile_index = atomicAdd(reinterpret_cast<unsigned int *>(scratch), 1u);
    __syncthreads();
    uint64_t *flags = scratch + 1;
    const int64_t k = tile_index, row = k / tiles_per_row, first = row * tiles_per_row;
    const int64_t e0 = (k - first) * TILE + (int64_t)threadIdx.x * ITEMS;
    const char *x = mlxn_rows_ptr(&a.x, row);
    Acc v[ITEMS];
    load_items<Acc, VEC>(x, e0, a.n, v);
    Acc total;
    const Acc excl = group_exclusive<Acc, THREADS>(scan_items(v), warp_tot, &total);
    if (threadIdx.x == 0)
        store_flag(&flags[k], FLAG_TOTAL << 32 | to_bits(total));
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        Acc prefix = Acc(0);
        for (int64_t j = k - 1 - lane;; j -= 32) {
            uint64_t f = FLAG_PREFIX << 32; // before the row's first tile: a prefix of 0
            if (j >= first)
                do
                    f = load_flag(&flags[j]);
                while ((f >> 32) == 0);
            const unsigned done = __ballot_sync(FULL, (f >> 32) == FLAG_PREFIX);
            const int last = done ? __ffs(done) - 1 : 31; // the nearest tile with a prefix ends the walk
            Acc part = lane <= last ? from_bits<Acc>((uint32_t)f) : Acc(0);
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
                part += __shfl_down_sync(FULL, part, o);
            prefix += __shfl_sync(FULL, part, 0);
            if (done)
                break;
        }
        if (lane == 0) {
            store_flag(&flags[k], FLAG_PREFIX << 32 | to_bits(prefix + total));
            tile_prefix = prefix;
        }
    }
    __syncthreads();
    const Acc base = tile_prefix + excl;
#pragma unroll
    for (int j = 0; j < ITEMS; j++)
        v[j] = base + v[j];
    store_items<Acc, VEC>(mlxn_rows_ptr(&a.y, row), e0, a.n, v);
}

template <typename Acc, int TPR> cudaError_t launch_rows(const mlxn_cumsum_args &a, bool vec, cudaStream_t s, bool pdl)
{
    constexpr int ROWS = THREADS / TPR;
    const int64_t blocks = (a.n_rows + ROWS - 1) / ROWS;
    const dim3 grid((unsigned)(blocks < (1 << 20) ? blocks : (1 << 20)));
    return vec ? launch(cumsum_rows<Acc, TPR, true>, grid, dim3(THREADS), 0, s, pdl, a)
               : launch(cumsum_rows<Acc, TPR, false>, grid, dim3(THREADS), 0, s, pdl, a);
}

template <typename Acc>
cudaError_t launch_t(const mlxn_cumsum_args &a, void *scratch, size_t scratch_bytes, int sms, cudaStream_t s, bool pdl)
{
    const bool vec = rows_aligned16(a.x) && rows_aligned16(a.y);
    const int64_t tiles_per_row = (a.n + TILE - 1) / TILE, tiles = a.n_rows * tiles_per_row;
    // a block per row leaves SMs idle below two rows per SM; the look-back needs a flag per tile
    if (scratch && tiles_per_row > 1 && a.n_rows < 2 * (int64_t)sms && (size_t)(tiles + 1) * 8 <= scratch_bytes) {
        cudaError_t e = cudaMemsetAsync(scratch, 0, (size_t)(tiles + 1) * 8, s);
        if (e != cudaSuccess)
            return e;
        // after a memset node there is no kernel to overlap with: launched without PDL
        uint64_t *sc = static_cast<uint64_t *>(scratch);
        return vec ? launch(cumsum_lookback<Acc, true>, dim3((unsigned)tiles), dim3(THREADS), 0, s, false, a, sc,
                            tiles_per_row)
                   : launch(cumsum_lookback<Acc, false>, dim3((unsigned)tiles), dim3(THREADS), 0, s, false, a, sc,
                            tiles_per_row);
    }
    return a.n <= 32 * ITEMS ? launch_rows<Acc, 32>(a, vec, s, pdl) : launch_rows<Acc, THREADS>(a, vec, s, pdl);
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_cumsum(const mlxn_cumsum_args *a, void *scratch, size_t scratch_bytes, int sms,
                                                cudaStream_t s, bool pdl)
{
    switch (a->dtype) {
    case MLXN_DTYPE_F32: return launch_t<float>(*a, scratch, scratch_bytes, sms, s, pdl);
    case MLXN_DTYPE_I32: return launch_t<uint32_t>(*a, scratch, scratch_bytes, sms, s, pdl);
    }
    return cudaErrorInvalidValue;
}
