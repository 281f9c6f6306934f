// Experiment: what share of the copy ceiling can a decode-sized call (one read of 8-33 MB of
// weights, no arithmetic) reach when calls run back to back, and how much of the gap do
// programmatic dependent launches close? stream_ceiling.cu (bulk copies, plain launches) peaked at
// 71%; the streamed mat-vec with its products skipped at 63-82% (bench/NOTES.md, sessions 7, 9).
// Plain 16-byte loads here, U of them in flight a thread, a grid of `per_sm` blocks a SM.
// Launch modes:
//   plain  no PDL attribute: a call starts when the previous one has ended
//   pdl    PDL; each block waits for the previous call first, then lets the next one launch
//   pre    PDL; each thread issues its first U loads (its share of the first "stage") before the
//          wait, as a mat-vec may with weights no kernel writes
// `half`: the blocks of one call take at most half of a SM's shared memory (the rest is dummy
// shared memory that limits residency), so the next call's blocks fit beside them and can start
// their loads while this call drains; otherwise a call's blocks fill the SM.
// Not part of the library; built by hand:
//   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I include -I src/cuda \
//        bench/experiments/read_ceiling.cu -o read_ceiling
// Output: the copy ceiling (read + write of 1 GiB, as `mlxn bench`), then a line per configuration
// with the median per-call time and the weight bytes' rate as % of the ceiling.
#include <cstdint>

#include "common.cuh"
#include "experiment.h"

using namespace mlxn_cuda;


__device__ __forceinline__ uint4 ld_stream(const uint4 *p)
{
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// mode 0 plain, 1 pdl, 2 pre (above). Thread t of the grid reads 16-byte words t + k * G for
// k = 0, 1, ... (G the grid's threads), U at a time.
template <int U> __global__ void read_all(const uint4 *w, long long n16, int mode, unsigned *out)
{
    const long long G = (long long)gridDim.x * blockDim.x, t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned acc = 0;
    long long i = t;
    uint4 v[U];
    if (mode == 2) {
#pragma unroll
        for (int k = 0; k < U; k++)
            v[k] = i + k * G < n16 ? ld_stream(w + i + k * G) : make_uint4(0, 0, 0, 0);
    }
    if (mode) {
        wait_for_previous_kernel();
        allow_next_kernel();
    }
    if (mode == 2) {
#pragma unroll
        for (int k = 0; k < U; k++)
            acc ^= v[k].x ^ v[k].y ^ v[k].z ^ v[k].w;
        i += U * G;
    }
    for (; i < n16; i += U * G) {
#pragma unroll
        for (int k = 0; k < U; k++)
            v[k] = i + k * G < n16 ? ld_stream(w + i + k * G) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int k = 0; k < U; k++)
            acc ^= v[k].x ^ v[k].y ^ v[k].z ^ v[k].w;
    }
    if (acc == 0x9E3779B9u) // keeps the loads; practically never true
        out[0] = acc;
}

int main()
{
    const experiment_gpu g = experiment_start();
    const size_t set_bytes = 34ull << 20, nsets = 8; // rotated: every call reads from HBM
    uint8_t *w = nullptr;
    unsigned *out = nullptr;
    CK(cudaMalloc(&w, set_bytes * nsets));
    CK(cudaMemset(w, 1, set_bytes * nsets));
    CK(cudaMalloc(&out, 4));
    CK(cudaFuncSetAttribute(read_all<4>, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024));
    CK(cudaFuncSetAttribute(read_all<8>, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024));
    const char *mode_name[] = {"plain", "pdl", "pre"};
    printf("%-10s %-6s %-7s %-6s %-2s %-5s %10s %8s\n", "bytes", "mode", "threads", "blk/SM", "U", "half",
           "median_us", "%copy");
    auto measure = [&](size_t bytes, int mode, int threads, int per_sm, int U, int half) {
        // dummy shared memory: per_sm blocks fill the SM, or half of it
        const size_t smem = (size_t)(g.smem_sm / (half ? 2 * per_sm : per_sm)) - 2048;
        if (threads * per_sm * (half ? 2 : 1) > 2048)
            return;
        const long long n16 = (long long)(bytes / 16);
        auto run = [&](int i) {
            const uint4 *src = reinterpret_cast<const uint4 *>(w + (size_t)(i % nsets) * set_bytes);
            CK(launch(U == 4 ? read_all<4> : read_all<8>, dim3((unsigned)(g.sms * per_sm)), dim3((unsigned)threads),
                      smem, g.st, mode != 0, src, n16, mode, out));
        };
        const double us = median_call_us(g.st, 16, run), gbs = (double)bytes / (us * 1e-6) / 1e9;
        printf("%-10zu %-6s %-7d %-6d %-2d %-5s %10.2f %7.1f%%\n", bytes, mode_name[mode], threads, per_sm, U,
               half ? "yes" : "no", us, 100.0 * gbs / g.ceil_gbs);
    };
    const size_t sizes[] = {33030144, 16515072, 9437184}; // Q4_0 14336 x 4096, half of it, 4096 x 4096
    for (size_t bytes : sizes)
        for (int mode : {0, 1, 2})
            for (int threads : {256, 512, 1024})
                for (int per_sm : {1, 2, 4})
                    for (int U : {4, 8})
                        for (int half : {0, 1})
                            measure(bytes, mode, threads, per_sm, U, half);
    return 0;
}
