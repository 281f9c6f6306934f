// Experiment: can long f32 softmax rows (64 x 262144, issue 5's row at 78% of copy on an H100)
// go faster read twice, the second time from L2, than read once into shared memory?
// softmax_rows_shared (src/cuda/softmax.cu) gives a cluster of 8 blocks a row, each block's 128 KB
// slice copied into shared memory, so an SM holds one block: its loads, the cluster's merge and its
// stores run one after another, then the next wave starts (bench/NOTES.md, softmax). Here a block
// keeps nothing of the row: pass 1 reads its slice (U 16-byte words a thread in flight) into a
// running (max, sum of 2^z), the cluster merges the blocks' pairs (a cluster barrier, pairs read
// through distributed shared memory), pass 2 reads the slice again and writes the outputs. With no
// slice in shared memory an SM holds as many blocks as registers allow, so one block's stores run
// beside another's loads; the price is the second read, from L2 only if the rows in flight fit it.
// A persistent grid of G clusters takes rows g, g + G, ... (G bounds the rows in flight: G MiB).
// pol 1: pass-1 loads with an L2 evict-last policy, pass-2 loads evict-first, stores streaming
// (st.global.cs), so the writes do not push out what pass 2 reads; pol 0: plain.
// Not part of the library; built by hand:
//   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I include -I src/cuda \
//        bench/experiments/softmax_twopass.cu -o softmax_twopass
// Output: the copy ceiling, the largest relative error of every row against a double-precision
// softmax on the host (for each configuration), then a line per configuration: per-call median and
// (read + write) bytes as % of the ceiling, as `mlxn bench` counts them.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <vector>

#include <cooperative_groups.h>

#include "common.cuh"
#include "experiment.h"

namespace cg = cooperative_groups;
using namespace mlxn_cuda;

constexpr float L2E = 1.4426950408889634f;

__device__ __forceinline__ void merge(float &m, float &s, float m2, float s2)
{
    const float mn = fmaxf(m, m2);
    if (mn != -INFINITY) {
        s = s * ex2(m - mn) + s2 * ex2(m2 - mn);
        m = mn;
    }
}

__device__ __forceinline__ uint64_t policy(bool last)
{
    uint64_t p;
    if (last)
        asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(p));
    else
        asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
    return p;
}

template <int POL> __device__ __forceinline__ float4 ld(const float4 *p, uint64_t pol)
{
    float4 v;
    if (POL)
        asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.f32 {%0, %1, %2, %3}, [%4], %5;"
                     : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                     : "l"(p), "l"(pol));
    else
        asm volatile("ld.global.nc.L1::no_allocate.v4.f32 {%0, %1, %2, %3}, [%4];"
                     : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                     : "l"(p));
    return v;
}

template <int POL> __device__ __forceinline__ void st(float4 *p, float4 v)
{
    if (POL)
        asm volatile("st.global.cs.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(p), "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w)
                     : "memory");
    else
        asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(p), "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w)
                     : "memory");
}

// rows of n f32 (n / 4 / cluster size / TH a multiple of U), scale 1
template <int TH, int U, int POL>
__global__ void __launch_bounds__(TH) twopass(const float4 *x, float4 *y, int rows, int n)
{
    __shared__ float red_m[TH / 32], red_s[TH / 32];
    __shared__ float2 pair[2]; // this block's (max, sum) of row k in pair[k & 1]
    cg::cluster_group cl = cg::this_cluster();
    const int C = (int)cl.num_blocks(), rank = (int)cl.block_rank();
    const int G = gridDim.x / C, g = blockIdx.x / C;
    const int n4 = n / 4 / C, per = n4 / TH, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint64_t p1 = policy(true), p2 = policy(false);
    wait_for_previous_kernel();
    allow_next_kernel();
    int k = 0;
    for (int r = g; r < rows; r += G, k++) {
        const float4 *xs = x + (int64_t)r * (n / 4) + (int64_t)rank * n4;
        float4 *ys = y + (int64_t)r * (n / 4) + (int64_t)rank * n4;
        float m = -INFINITY, s = 0.f;
        for (int c = 0; c < per; c += U) {
            float4 v[U];
#pragma unroll
            for (int u = 0; u < U; u++)
                v[u] = ld<POL>(xs + threadIdx.x + (c + u) * TH, p1);
            float cm = m;
#pragma unroll
            for (int u = 0; u < U; u++)
                cm = fmaxf(cm, fmaxf(fmaxf(v[u].x, v[u].y), fmaxf(v[u].z, v[u].w)) * L2E);
            s = cm == -INFINITY ? s : s * ex2(m - cm);
            m = cm;
            const float msub = m == -INFINITY ? 0.f : m;
#pragma unroll
            for (int u = 0; u < U; u++)
                s += ex2(fmaf(v[u].x, L2E, -msub)) + ex2(fmaf(v[u].y, L2E, -msub)) + ex2(fmaf(v[u].z, L2E, -msub)) +
                     ex2(fmaf(v[u].w, L2E, -msub));
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            merge(m, s, __shfl_xor_sync(~0u, m, o), __shfl_xor_sync(~0u, s, o));
        if (lane == 0) {
            red_m[warp] = m;
            red_s[warp] = s;
        }
        __syncthreads();
        if (warp == 0) {
            m = lane < TH / 32 ? red_m[lane] : -INFINITY;
            s = lane < TH / 32 ? red_s[lane] : 0.f;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
                merge(m, s, __shfl_xor_sync(~0u, m, o), __shfl_xor_sync(~0u, s, o));
            if (lane == 0)
                pair[k & 1] = make_float2(m, s);
        }
        cl.sync(); // every block's pair written (and row k - 1's pairs read: pair[k & 1] was row k - 2's)
        if (warp == 0) {
            const float2 q = lane < C ? *cl.map_shared_rank(&pair[k & 1], lane) : make_float2(-INFINITY, 0.f);
            m = q.x;
            s = q.y;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
                merge(m, s, __shfl_xor_sync(~0u, m, o), __shfl_xor_sync(~0u, s, o));
            if (lane == 0) {
                red_m[0] = m;
                red_s[0] = s;
            }
        }
        __syncthreads();
        m = red_m[0];
        const float inv = 1.f / red_s[0], msub = m == -INFINITY ? 0.f : m;
        __syncthreads(); // red_* free for the next row
        for (int c = 0; c < per; c += U) {
            float4 v[U];
#pragma unroll
            for (int u = 0; u < U; u++)
                v[u] = ld<POL>(xs + threadIdx.x + (c + u) * TH, p2);
#pragma unroll
            for (int u = 0; u < U; u++)
                st<POL>(ys + threadIdx.x + (c + u) * TH,
                        make_float4(ex2(fmaf(v[u].x, L2E, -msub)) * inv, ex2(fmaf(v[u].y, L2E, -msub)) * inv,
                                    ex2(fmaf(v[u].z, L2E, -msub)) * inv, ex2(fmaf(v[u].w, L2E, -msub)) * inv));
        }
    }
    cl.sync(); // no block leaves while another may read its pair
}

struct config {
    int th, u, pol, c;
};

template <int TH, int U, int POL> struct kernel_of {
    static void *get() { return (void *)twopass<TH, U, POL>; }
};

static void *kernel_for(const config &k)
{
#define K(TH, U, POL)                                                                                               \
    if (k.th == TH && k.u == U && k.pol == POL)                                                                     \
        return kernel_of<TH, U, POL>::get();
    K(256, 4, 0) K(256, 4, 1) K(256, 8, 0) K(256, 8, 1) K(512, 4, 0) K(512, 4, 1) K(512, 8, 0) K(512, 8, 1)
#undef K
    return nullptr;
}

static cudaLaunchConfig_t launch_config(const config &k, int clusters, cudaStream_t s, cudaLaunchAttribute (&at)[2])
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)(clusters * k.c));
    cfg.blockDim = dim3((unsigned)k.th);
    cfg.stream = s;
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = (unsigned)k.c;
    at[0].val.clusterDim.y = 1;
    at[0].val.clusterDim.z = 1;
    at[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[1].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = 2;
    return cfg;
}

int main(int argc, char **argv)
{
    const int rows = argc > 1 ? atoi(argv[1]) : 64, n = argc > 2 ? atoi(argv[2]) : 262144;
    experiment_gpu gpu = experiment_start();
    const size_t elems = (size_t)rows * n, bytes = elems * 4;
    const int sets = 2; // inputs and outputs alternate over two sets (each past half of L2)
    std::vector<float> hx(elems);
    uint64_t st = 0x9E3779B97F4A7C15ull ^ (uint64_t)time(nullptr);
    printf("seed %llu\n", (unsigned long long)st);
    for (size_t i = 0; i < elems; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        hx[i] = (float)((int)(st >> 40) % 20000) / 1000.0f; // [-20, 20)
    }
    float *x[sets], *y[sets];
    for (int i = 0; i < sets; i++) {
        CK(cudaMalloc(&x[i], bytes));
        CK(cudaMalloc(&y[i], bytes));
        CK(cudaMemcpy(x[i], hx.data(), bytes, cudaMemcpyHostToDevice));
    }
    // the reference: double softmax of every row
    std::vector<double> ref(elems);
    for (int r = 0; r < rows; r++) {
        double m = -INFINITY, s = 0;
        for (int i = 0; i < n; i++)
            m = fmax(m, hx[(size_t)r * n + i]);
        for (int i = 0; i < n; i++)
            s += exp(hx[(size_t)r * n + i] - m);
        for (int i = 0; i < n; i++)
            ref[(size_t)r * n + i] = exp(hx[(size_t)r * n + i] - m) / s;
    }
    std::vector<float> hy(elems);
    const config cs[] = {{512, 8, 0, 8},  {512, 8, 1, 8},  {512, 4, 1, 8},  {256, 8, 1, 8},  {256, 4, 1, 8},
                         {512, 8, 0, 16}, {512, 8, 1, 16}, {256, 8, 1, 16}, {256, 4, 1, 16}, {256, 8, 0, 16}};
    for (const config &k : cs) {
        if (n % (4 * k.c * k.th * k.u)) {
            printf("th %d u %d c %d: n not a multiple of the slices\n", k.th, k.u, k.c);
            continue;
        }
        void *kern = kernel_for(k);
        CK(cudaFuncSetAttribute(kern, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
        cudaLaunchAttribute at[2];
        cudaLaunchConfig_t cfg = launch_config(k, 1, gpu.st, at);
        int maxc = 0;
        CK(cudaOccupancyMaxActiveClusters(&maxc, kern, &cfg));
        cudaFuncAttributes fa;
        CK(cudaFuncGetAttributes(&fa, kern));
        // correctness at the largest grid
        {
            const int G = maxc < rows ? maxc : rows;
            cfg = launch_config(k, G, gpu.st, at);
            CK(cudaMemset(y[0], 0xFF, bytes)); // poison: NaN
            const float4 *xa = reinterpret_cast<const float4 *>(x[0]);
            float4 *ya = reinterpret_cast<float4 *>(y[0]);
            void *args[] = {&xa, &ya, (void *)&rows, (void *)&n};
            CK(cudaLaunchKernelExC(&cfg, kern, args));
            CK(cudaStreamSynchronize(gpu.st));
            CK(cudaMemcpy(hy.data(), y[0], bytes, cudaMemcpyDeviceToHost));
            double worst = 0;
            for (size_t i = 0; i < elems; i++) {
                const double e = fabs(hy[i] - ref[i]) / (ref[i] + 1e-30);
                if (!(e <= worst)) // NaN counts
                    worst = std::isnan(e) ? INFINITY : e;
            }
            printf("th %d u %d pol %d c %d: %d regs, max %d clusters; largest relative error %.2e %s\n", k.th, k.u,
                   k.pol, k.c, fa.numRegs, maxc, worst, worst < 1e-5 ? "ok" : "FAIL");
        }
        const int top = maxc < rows ? maxc : rows, gs[] = {top, 48, 32, 24, 16};
        for (int j = 0; j < 5; j++) {
            const int G = gs[j];
            if (G > top || (j && G == top))
                continue;
            cfg = launch_config(k, G, gpu.st, at);
            const double us = median_call_us(gpu.st, 20, [&](int i) {
                const float4 *xa = reinterpret_cast<const float4 *>(x[i % sets]);
                float4 *ya = reinterpret_cast<float4 *>(y[i % sets]);
                void *args[] = {&xa, &ya, (void *)&rows, (void *)&n};
                CK(cudaLaunchKernelExC(&cfg, kern, args));
            });
            printf("%dx%d th %d u %d pol %d c %d G %2d: %8.2f us  %5.1f%% of copy\n", rows, n, k.th, k.u, k.pol, k.c, G,
                   us, 2.0 * bytes / (us * 1e-6) / 1e9 / gpu.ceil_gbs * 100);
        }
    }
    return 0;
}
