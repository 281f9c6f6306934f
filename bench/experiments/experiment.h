// What the hand-built experiments in this folder share: the error check, the median, the copy
// ceiling measured as `mlxn bench` does (read + write of 1 GiB, device to device, median of 20),
// and the timing of repeated calls.
#ifndef MLXN_BENCH_EXPERIMENT_H
#define MLXN_BENCH_EXPERIMENT_H

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cuda_runtime.h>

#define CK(x)                                                                              \
    do {                                                                                   \
        cudaError_t e_ = (x);                                                              \
        if (e_ != cudaSuccess) {                                                           \
            printf("%s: %s\n", #x, cudaGetErrorString(e_));                                \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// GB/s (10^9 bytes, read + write counted) of 1 GiB copies on stream s
static double copy_ceiling_gbs(cudaStream_t s)
{
    const size_t cb = 1ull << 30;
    void *a = nullptr, *b = nullptr;
    cudaEvent_t e0, e1;
    CK(cudaMalloc(&a, cb));
    CK(cudaMalloc(&b, cb));
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<double> ms;
    for (int r = 0; r < 21; r++) {
        CK(cudaEventRecord(e0, s));
        CK(cudaMemcpyAsync(r % 2 ? a : b, r % 2 ? b : a, cb, cudaMemcpyDeviceToDevice, s));
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float t = 0.f;
        CK(cudaEventElapsedTime(&t, e0, e1));
        if (r)
            ms.push_back(t);
    }
    CK(cudaFree(a));
    CK(cudaFree(b));
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return 2.0 * cb / (median(ms) * 1e-3) / 1e9;
}

// The device the ceiling experiments run on: its SMs and shared memory per SM, a stream, and the
// copy ceiling on it (printed as their first line).
struct experiment_gpu {
    int sms, smem_sm;
    cudaStream_t st;
    double ceil_gbs;
};

static experiment_gpu experiment_start()
{
    experiment_gpu g = {};
    CK(cudaDeviceGetAttribute(&g.sms, cudaDevAttrMultiProcessorCount, 0));
    CK(cudaDeviceGetAttribute(&g.smem_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, 0));
    CK(cudaStreamCreateWithFlags(&g.st, cudaStreamNonBlocking));
    g.ceil_gbs = copy_ceiling_gbs(g.st);
    printf("copy ceiling %.1f GB/s, %d SMs, %d KB shared memory per SM\n", g.ceil_gbs, g.sms, g.smem_sm / 1024);
    return g;
}

// Median per-call microseconds of run(0 .. calls - 1) on stream s: one warm-up batch, then 15
// timed batches of `calls` calls each.
template <typename F> static double median_call_us(cudaStream_t s, int calls, F run)
{
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < calls; i++)
        run(i);
    std::vector<double> t;
    for (int r = 0; r < 15; r++) {
        CK(cudaEventRecord(e0, s));
        for (int i = 0; i < calls; i++)
            run(i);
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float f = 0.f;
        CK(cudaEventElapsedTime(&f, e0, e1));
        t.push_back(f * 1e3 / calls);
    }
    CK(cudaGetLastError());
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return median(t);
}

#endif
