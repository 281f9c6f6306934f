// The routing map of an MoE layer on the GPU (mlxn.h's mlxn_moe_route_map): the (token, slot)
// pairs of ids [T, k] grouped by expert, in increasing pair order within an expert. No host
// round trip, so a layer that uses it can be captured in a graph.
//
//   counts  E      pairs per expert: zeroed, then one atomic add per valid pair (the order of
//                  the adds does not matter for a count)
//   place   block per expert e: offsets[e] = sum of counts[e' < e]; then the block walks the
//                  pairs in order, PLACE_THREADS * PLACE_VEC at a time, and writes each pair of e
//                  at offsets[e] + (its rank among e's pairs), the rank from a block-wide prefix
//                  sum: deterministic and stable without a sort. The walk stops at e's last
//                  pair. For tiled consumers it also writes tile_off[e] (the sum of
//                  ceil(counts[e'] / tile_rows) over e' < e) and tile_expert[] = e over e's tiles.
//
// Each place block reads the ids up to its expert's last pair: E x T * k reads from L2 in the
// worst case (256 experts x 32768 pairs: 33 MB, about 10 us on an H100), against the 2 x 32768 x
// N x K flops of the products that follow.

#include "block_reduce.cuh"
#include "common.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int COUNT_THREADS = 256, PLACE_THREADS = 512, PLACE_VEC = 4, PLACE_WARPS = PLACE_THREADS / 32;

struct route_args {
    mlxn_rows ids; // T rows of k i32
    int64_t k, P;  // P = T * k pairs
    int E;
    int32_t *counts, *offsets, *rows;
    int tile_rows;                  // 0: no tiles
    int32_t *tile_off, *tile_expert;
};

__device__ __forceinline__ int32_t pair_id(const route_args &r, int64_t p)
{
    return reinterpret_cast<const int32_t *>(mlxn_rows_ptr(&r.ids, p / r.k))[p % r.k];
}

__global__ void __launch_bounds__(COUNT_THREADS) route_count(const route_args r)
{
    wait_for_previous_kernel();
    allow_next_kernel();
    for (int64_t p = (int64_t)blockIdx.x * COUNT_THREADS + threadIdx.x; p < r.P; p += (int64_t)gridDim.x * COUNT_THREADS) {
        const int32_t e = pair_id(r, p);
        if (e >= 0 && e < r.E)
            atomicAdd(&r.counts[e], 1);
    }
}

__global__ void __launch_bounds__(PLACE_THREADS) route_place(const route_args r)
{
    __shared__ int warp_part[PLACE_WARPS];
    wait_for_previous_kernel();
    allow_next_kernel();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int e = blockIdx.x; e < r.E; e += gridDim.x) {
        int off = 0, tiles = 0;
        for (int i = threadIdx.x; i < e; i += PLACE_THREADS) {
            const int c = r.counts[i];
            off += c;
            tiles += r.tile_rows ? (c + r.tile_rows - 1) / r.tile_rows : 0;
        }
        off = block_reduce(off, warp_part, 0, add_op());
        tiles = block_reduce(tiles, warp_part, 0, add_op());
        const int count = r.counts[e], my_tiles = r.tile_rows ? (count + r.tile_rows - 1) / r.tile_rows : 0;
        if (threadIdx.x == 0) {
            r.offsets[e] = off;
            if (e == r.E - 1)
                r.offsets[r.E] = off + count;
            if (r.tile_rows) {
                r.tile_off[e] = tiles;
                if (e == r.E - 1)
                    r.tile_off[r.E] = tiles + my_tiles;
            }
        }
        for (int i = threadIdx.x; i < my_tiles; i += PLACE_THREADS)
            r.tile_expert[tiles + i] = e;
        // the pairs not in any list (ids outside [0, E)) leave a tail of rows: -1 there
        if (e == r.E - 1)
            for (int64_t p = off + count + threadIdx.x; p < r.P; p += PLACE_THREADS)
                r.rows[p] = -1;
        int found = 0; // block-uniform
        for (int64_t base = 0; base < r.P && found < count; base += PLACE_THREADS * PLACE_VEC) {
            const int64_t p0 = base + (int64_t)threadIdx.x * PLACE_VEC;
            bool mine[PLACE_VEC];
            int c = 0;
#pragma unroll
            for (int v = 0; v < PLACE_VEC; v++) {
                mine[v] = p0 + v < r.P && pair_id(r, p0 + v) == e;
                c += mine[v];
            }
            int incl = c; // inclusive prefix over the warp, then over the warps before
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const int t = __shfl_up_sync(0xffffffffu, incl, o);
                if (lane >= o)
                    incl += t;
            }
            __syncthreads(); // the previous round's warp_part is read
            if (lane == 31)
                warp_part[warp] = incl;
            __syncthreads();
            int before = 0, total = 0;
#pragma unroll
            for (int w = 0; w < PLACE_WARPS; w++) {
                const int t = warp_part[w];
                before += w < warp ? t : 0;
                total += t;
            }
            int pos = off + found + before + incl - c;
#pragma unroll
            for (int v = 0; v < PLACE_VEC; v++)
                if (mine[v])
                    r.rows[pos++] = (int32_t)(p0 + v);
            found += total;
        }
    }
}

} // namespace

extern "C" cudaError_t mlxn_cuda_route_map_build(const mlxn_rows *ids, int64_t T, int64_t k, int E, int32_t *counts,
                                                 int32_t *offsets, int32_t *rows, int tile_rows, int32_t *tile_off,
                                                 int32_t *tile_expert, cudaStream_t s, bool pdl)
{
    const route_args r = {*ids, k, T * k, E, counts, offsets, rows, tile_rows, tile_off, tile_expert};
    cudaError_t e = cudaMemsetAsync(counts, 0, sizeof(int32_t) * (size_t)E, s);
    if (e != cudaSuccess)
        return e;
    const int64_t count_blocks = (r.P + COUNT_THREADS - 1) / COUNT_THREADS;
    if (count_blocks > 0) {
        e = launch(route_count, dim3((unsigned)(count_blocks < 1024 ? count_blocks : 1024)), dim3(COUNT_THREADS), 0, s,
                   pdl, r);
        if (e != cudaSuccess)
            return e;
    }
    return launch(route_place, dim3((unsigned)(E < 65535 ? E : 65535)), dim3(PLACE_THREADS), 0, s, pdl, r);
}

extern "C" cudaError_t mlxn_cuda_launch_moe_route_map(const mlxn_moe_route_map_args *a, int32_t *counts,
                                                      cudaStream_t s, bool pdl)
{
    return mlxn_cuda_route_map_build(&a->ids, a->n_tokens, a->k, a->n_experts, counts, a->offsets, a->rows, 0,
                                     nullptr, nullptr, s, pdl);
}
