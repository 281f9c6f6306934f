// Experiment: how fast can weights stream from HBM into shared memory with bulk copies when each
// warp runs its own pipeline (its own ring of stages, one mbarrier per stage, no producer warp
// and no block-wide round trip)? The streamed decode mat-vec (src/cuda/qmatmul_stream.cu) with
// its products skipped reached only 63-82% of copy (bench/NOTES.md, session 7); this measures
// the alternative before a kernel is built on it. No arithmetic: "touch" reads every byte of a
// chunk from shared memory once (the least a mat-vec does), "none" only waits for it (the sweep
// below runs "touch"). Two chunk shapes: contiguous bytes (one copy a chunk), and "rows": R rows
// x P bytes of a K slice of W's
// rows (RS bytes each, Q4_0 at K 4096), one copy a row issued by lane r, as a warp that owns 16
// rows x a K slice (an mma tile) would stream them. Calls are launched plain (a call starts when
// the previous one has ended) or with PDL, each warp issuing its first stages before
// griddepcontrol.wait ("pre": a mat-vec may, as no kernel writes its weights). Session 9 ran it
// with plain launches only; session 25 added the PDL mode (bench/NOTES.md, "What bounds the
// decode mat-vec's calls").
// Not part of the library; built by hand:
//   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I include -I src/cuda \
//        bench/experiments/stream_ceiling.cu -o stream_ceiling
// Output: the copy ceiling (read + write of 1 GiB, as `mlxn bench`), then one line per (bytes,
// chunk, rows x piece for the row chunks, stages, warps, blocks per SM, touch, pdl) with the
// median time and % of the ceiling.
#include "bulk_copy.cuh"
#include "common.cuh"
#include "experiment.h"

using namespace mlxn_cuda;

constexpr int MAX_WARPS = 32, MAX_STAGES = 8;

// Warp g of the grid streams chunks g, g + warps, ... of `chunk` bytes through its `stages`.
// rows > 0: a chunk is `rows` pieces of chunk / rows bytes, piece r from row r of a tile of W's
// rows of rs bytes (chunk c: tile c / (rs / piece), slice c % (rs / piece)).
template <bool TOUCH>
__global__ void warp_stream(const uint8_t *w, long long chunks, int chunk, int stages, int rows, int rs, int pdl,
                            unsigned *out)
{
    extern __shared__ __align__(128) uint8_t sm[];
    __shared__ uint64_t bars[MAX_WARPS * MAX_STAGES];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
    uint8_t *ring = sm + (size_t)warp * stages * chunk;
    uint64_t *bar = bars + warp * MAX_STAGES;
    if (lane == 0) {
        for (int s = 0; s < stages; s++)
            mbar_init(&bar[s], 1);
        mbar_init_fence();
    }
    __syncwarp();
    const long long g = (long long)blockIdx.x * wpb + warp, nw = (long long)gridDim.x * wpb;
    const long long mine = chunks > g ? (chunks - 1 - g) / nw + 1 : 0;
    auto issue = [&](long long k) { // by the whole warp
        const int s = (int)(k % stages);
        const long long c = g + k * nw;
        if (rows == 0) {
            if (lane == 0) {
                mbar_arrive_expect(&bar[s], (uint32_t)chunk);
                bulk_copy(ring + (size_t)s * chunk, w + (size_t)c * chunk, (uint32_t)chunk, &bar[s]);
            }
            return;
        }
        const int piece = chunk / rows, slices = rs / piece;
        if (lane == 0)
            mbar_arrive_expect(&bar[s], (uint32_t)chunk);
        __syncwarp();
        if (lane < rows)
            bulk_copy(ring + (size_t)s * chunk + (size_t)lane * piece,
                      w + ((size_t)(c / slices) * rows + lane) * rs + (size_t)(c % slices) * piece, (uint32_t)piece,
                      &bar[s]);
    };
    for (long long k = 0; k < stages && k < mine; k++)
        issue(k);
    if (pdl) { // the first stages were issued before the previous call ends (weights no kernel writes)
        wait_for_previous_kernel();
        allow_next_kernel();
    }
    unsigned acc = 0;
    for (long long k = 0; k < mine; k++) {
        const int s = (int)(k % stages);
        mbar_wait(&bar[s], (uint32_t)(k / stages) & 1);
        if (TOUCH) {
            const uint4 *p = reinterpret_cast<const uint4 *>(ring + (size_t)s * chunk);
            for (int i = lane; i < chunk / 16; i += 32) {
                const uint4 v = p[i];
                acc ^= v.x ^ v.y ^ v.z ^ v.w;
            }
        }
        __syncwarp();
        if (k + stages < mine) {
            fence_proxy_async_shared();
            issue(k + stages);
        }
    }
    if (acc == 0x9E3779B9u) // keeps the loads; practically never true
        out[0] = acc;
}

int main()
{
    const experiment_gpu g = experiment_start();
    // weights: sets rotated so that every call reads from HBM (H200 L2: 50 MB)
    const size_t set_bytes = 34ull << 20, nsets = 6;
    uint8_t *w = nullptr;
    unsigned *out = nullptr;
    CK(cudaMalloc(&w, set_bytes * nsets));
    CK(cudaMemset(w, 1, set_bytes * nsets));
    CK(cudaMalloc(&out, 4));
    CK(cudaFuncSetAttribute(warp_stream<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, 225 * 1024));
    CK(cudaFuncSetAttribute(warp_stream<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, 225 * 1024));
    printf("%-10s %-7s %-9s %-6s %-5s %-6s %-5s %-4s %10s %8s\n", "bytes", "chunk", "rows", "stages", "warps", "blk/SM",
           "touch", "pdl", "median_us", "%copy");
    // one configuration: the median over 15 rounds of 6 calls (one per weight set)
    auto measure = [&](size_t bytes, int chunk, int stages, int warps, int per_sm, int touch, int rows, int rs,
                       int pdl) {
        const size_t smem = (size_t)warps * stages * chunk;
        if (smem * per_sm + per_sm * 3072 > (size_t)g.smem_sm || smem > 225 * 1024)
            return;
        const long long chunks = (long long)(bytes / chunk);
        auto run = [&](int i) {
            const uint8_t *src = w + (size_t)(i % nsets) * set_bytes;
            CK(launch(touch ? warp_stream<true> : warp_stream<false>, dim3((unsigned)(g.sms * per_sm)),
                      dim3((unsigned)(32 * warps)), smem, g.st, pdl != 0, src, chunks, chunk, stages, rows, rs, pdl,
                      out));
        };
        const double us = median_call_us(g.st, 6, run), gbs = (double)chunks * chunk / (us * 1e-6) / 1e9;
        char rdesc[16] = "-";
        if (rows)
            snprintf(rdesc, sizeof rdesc, "%dx%d", rows, chunk / rows);
        printf("%-10zu %-7d %-9s %-6d %-5d %-6d %-5s %-4s %10.2f %7.1f%%\n", bytes, chunk, rdesc, stages, warps, per_sm,
               touch ? "yes" : "no", pdl ? "pre" : "no", us, 100.0 * gbs / g.ceil_gbs);
    };
    const size_t sizes[] = {33030144, 9437184}; // Q4_0 14336 x 4096 and 4096 x 4096
    for (int pdl : {0, 1})
        for (size_t bytes : sizes)
            for (int chunk : {4096, 8192, 16384})
                for (int stages : {2, 3, 4, 6})
                    for (int warps : {4, 8, 16})
                        for (int per_sm : {1, 2})
                            measure(bytes, chunk, stages, warps, per_sm, 1, 0, 0, pdl);
    // 16 rows x a K slice of Q4_0 rows of 2304 bytes (K 4096): slices of 288 .. 1152 bytes
    const int rs = 2304;
    for (int pdl : {0, 1})
        for (size_t bytes : sizes)
            for (int piece : {288, 576, 1152})
                for (int stages : {2, 3, 4})
                    for (int warps : {4, 8, 12, 16})
                        measure(bytes / ((size_t)16 * rs) * 16 * rs, 16 * piece, stages, warps, 1, 1, 16, rs, pdl);
    return 0;
}
