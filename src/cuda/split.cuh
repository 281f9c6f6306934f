// Rows split over many blocks (argmax.cu, sample.cu): at B = 1 one block per row leaves all but
// one SM idle, so a small batch spreads each row over up to SPLIT_MAX blocks (chunks of
// consecutive ids). Their partial results go to the stream's scratch
// (MLXN_CUDA_SAMPLE_SCRATCH_BYTES, launch.h); the last block of a row to finish (an arrival
// counter, the threadfence-reduction pattern) combines them, so no kernel waits on another
// block and any number of blocks may be resident.
#ifndef MLXN_CUDA_SPLIT_CUH
#define MLXN_CUDA_SPLIT_CUH

#include <stdint.h>

#include "launch.h"

namespace mlxn_cuda {

constexpr int SPLIT_ROWS = 32;             // batches up to this many rows split
constexpr int SPLIT_MAX = 128;             // blocks per row at most
constexpr size_t SPLIT_ARGMAX_BYTES = 64 << 10; // argmax's part of the scratch, then sampling's

// Chunks of a row of n split over about `want` blocks, each at least min_len long: the chunk
// length, and *blocks (<= SPLIT_MAX, no empty chunk).
inline int64_t split_chunk(int64_t n, int64_t want, int64_t min_len, int *blocks)
{
    int64_t s = (n + min_len - 1) / min_len;
    s = s < want ? s : want;
    s = s < SPLIT_MAX ? s : SPLIT_MAX;
    s = s > 1 ? s : 1;
    const int64_t len = (n + s - 1) / s;
    *blocks = (int)((n + len - 1) / len);
    return len;
}

// The last block of a row to arrive: every thread calls after writing its partial results to
// global memory; true in every thread of the one block that arrives last, which then sees every
// block's results (read them with __ldcg: not from L1). The counter is back at 0 afterwards.
__device__ __forceinline__ bool split_last_block(uint32_t *counter, uint32_t blocks, bool *flag)
{
    __threadfence(); // this block's results are visible before its arrival counts
    __syncthreads();
    if (threadIdx.x == 0) {
        const uint32_t ticket = atomicAdd(counter, 1u);
        *flag = ticket == blocks - 1;
        if (*flag)
            *counter = 0; // every block of the row has arrived: none touches it again in this launch
    }
    __syncthreads();
    const bool last = *flag;
    if (last)
        __threadfence();
    return last;
}

} // namespace mlxn_cuda

#endif
