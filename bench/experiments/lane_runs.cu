// Experiment: what reading a row in per-lane runs costs against coalesced loads. The wide-load
// decode mat-vecs (wide_load.cuh: qmm_rows_wide, qid_rows_wide for all MoE decode) give each lane
// its own group of blocks (72-176 bytes) and load it with LB-byte loads, so one load instruction's
// 32 lanes touch up to 32 lines; the streamed mat-vec's x loads had that form and cost it 3-13
// points of copy bandwidth (bench/NOTES.md session 31). Here a warp reads tiles of 32 runs of RUN
// bytes either way, XORs the words (so the loads are kept) and nothing else:
//   lane  lane l reads run l of the tile, word i at byte l RUN + i LB (the wide kernels' order)
//   coal  word i of lane l at byte (i 32 + l) LB (the same bytes, coalesced)
// over a 2 GiB buffer (HBM) and over 32 MiB read again and again (L2-resident), with 2 or 8 blocks
// of 256 threads an SM. Not part of the library; built by hand:
//   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a bench/experiments/lane_runs.cu -o lane_runs
// Output: a line per (format's run, order, buffer, blocks an SM) with the bytes' rate in GB/s.
#include <cstdint>
#include <cstdio>

template <int LB> struct word_of;
template <> struct word_of<4> { using type = uint32_t; };
template <> struct word_of<8> { using type = uint2; };
template <> struct word_of<16> { using type = uint4; };

__device__ __forceinline__ uint32_t fold(uint32_t v) { return v; }
__device__ __forceinline__ uint32_t fold(uint2 v) { return v.x ^ v.y; }
__device__ __forceinline__ uint32_t fold(uint4 v) { return v.x ^ v.y ^ v.z ^ v.w; }

// NL words of LB bytes a lane (a run of LB NL bytes), tiles of 32 runs a warp
template <int LB, int NL, bool COAL>
__global__ void read_runs(const uint8_t *buf, long tiles, unsigned *sink)
{
    using word = typename word_of<LB>::type;
    constexpr long RUN = (long)LB * NL;
    const int lane = threadIdx.x & 31;
    const long warp = ((long)blockIdx.x * blockDim.x + threadIdx.x) >> 5, warps = ((long)gridDim.x * blockDim.x) >> 5;
    unsigned acc = 0;
    for (long t = warp; t < tiles; t += warps) {
        const uint8_t *tile = buf + t * 32 * RUN;
        word v[NL];
#pragma unroll
        for (int i = 0; i < NL; i++)
            v[i] = COAL ? reinterpret_cast<const word *>(tile)[i * 32 + lane]
                        : reinterpret_cast<const word *>(tile + lane * RUN)[i];
#pragma unroll
        for (int i = 0; i < NL; i++)
            acc ^= fold(v[i]);
    }
    if (acc == 0x9E3779B9u) // never in practice: keeps the loads
        sink[0] = acc;
}

template <int LB, int NL, bool COAL> void measure(const char *name, const uint8_t *buf, long bytes, int per_sm, int sms,
                                                  unsigned *sink)
{
    const long tiles = bytes / (32L * LB * NL);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    read_runs<LB, NL, COAL><<<sms * per_sm, 256>>>(buf, tiles, sink); // warm-up
    const int reps = 10;
    cudaEventRecord(e0);
    for (int r = 0; r < reps; r++)
        read_runs<LB, NL, COAL><<<sms * per_sm, 256>>>(buf, tiles, sink);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms = 0.f;
    cudaEventElapsedTime(&ms, e0, e1);
    printf("%-7s run %3d B, %2d-byte words, %s, %5ld MiB, %d blocks an SM: %6.0f GB/s\n", name, LB * NL, LB,
           COAL ? "coal" : "lane", bytes >> 20, per_sm, (double)reps * tiles * 32 * LB * NL / (ms * 1e6));
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
}

template <int LB, int NL> void both(const char *name, const uint8_t *buf, int sms, unsigned *sink)
{
    for (long bytes : {2048L << 20, 32L << 20})
        for (int per_sm : {2, 8}) {
            measure<LB, NL, false>(name, buf, bytes, per_sm, sms, sink);
            measure<LB, NL, true>(name, buf, bytes, per_sm, sms, sink);
        }
}

int main()
{
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    uint8_t *buf = nullptr;
    unsigned *sink = nullptr;
    if (cudaMalloc(&buf, 2048L << 20) != cudaSuccess || cudaMalloc(&sink, 4) != cudaSuccess) {
        printf("cudaMalloc failed\n");
        return 1;
    }
    cudaMemset(buf, 1, 2048L << 20);
    // the wide plans' groups (wide_load.cuh): G blocks a lane, LB-byte loads
    both<8, 9>("q4_0", buf, sms, sink);   // 4 x 18 bytes
    both<8, 17>("q8_0", buf, sms, sink);  // 4 x 34
    both<16, 5>("q4_1", buf, sms, sink);  // 4 x 20
    both<16, 9>("q4_K", buf, sms, sink);  // 1 x 144
    both<16, 11>("q5_K", buf, sms, sink); // 1 x 176
    both<4, 21>("q2_K", buf, sms, sink);  // 1 x 84
    both<16, 8>("x f32", buf, sms, sink); // 32 floats: the streamed kernel's x before session 31
    const cudaError_t e = cudaDeviceSynchronize();
    printf("%s\n", cudaGetErrorString(e));
    return e == cudaSuccess ? 0 : 1;
}
