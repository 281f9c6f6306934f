// Device helpers shared by the kernels: programmatic dependent launch, typed loads, warp sums,
// and the launch with the PDL attribute.
#ifndef MLXN_CUDA_COMMON_CUH
#define MLXN_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "launch.h"

namespace mlxn_cuda {

// x * 2^k for k in [-252, 254]: two multiplies by powers of two made from their bits, exact
// wherever the result is a normal float (ldexpf gives the same there, but is a library routine
// of a dozen instructions, which the mat-vecs' x staging paid per element).
__device__ __forceinline__ float pow2f(int e) // e in [-126, 127]
{
    return __int_as_float((e + 127) << 23);
}

__device__ __forceinline__ float scale2(float x, int k)
{
    const int h = k >> 1;
    return x * pow2f(h) * pow2f(k - h);
}

// n / d for n < 2^31 and a divisor fixed for the launch, by a multiply-high, an add and a shift
// (Granlund and Montgomery's round-up method) where the plain division is ~20 instructions, its
// reciprocal formed again at every use: s = ceil(log2 d), m = 2^32 (2^s - d) / d + 1.
struct fast_div {
    uint32_t d, m;
    int s;
    __host__ __device__ fast_div() : d(1), m(1), s(0) {}
    __host__ __device__ explicit fast_div(uint32_t dv) : d(dv), s(0)
    {
        while ((1ull << s) < dv)
            s++;
        m = (uint32_t)((((1ull << s) - dv) << 32) / dv + 1);
    }
    __device__ __forceinline__ uint32_t div(uint32_t n) const { return (__umulhi(n, m) + n) >> s; }
};

// Programmatic dependent launch (sm_90): the kernel waits for the previous kernel in the
// stream only when it first touches memory, and lets the next kernel's blocks be scheduled
// as soon as all of its own blocks are running, so launch latency and the ramp of the next
// kernel hide behind the tail of this one. Without the launch attribute both are no-ops.
__device__ __forceinline__ void wait_for_previous_kernel()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Every kernel calls it only after its wait_for_previous_kernel() (or not at all): a kernel may
// then read, before its own wait, what was written two kernels back (core's
// mlxn_stream_last_writes, qmatmul_id's ids_early).
__device__ __forceinline__ void allow_next_kernel()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
}

// Asks the L2 for [p, p + bytes) through the bulk copy engine (sm_90), no registers held and
// nothing to wait for. The range is rounded inward to 16 bytes (the instruction's granule), so
// nothing outside it is touched. Kernels call it before wait_for_previous_kernel() for operands
// the previous kernel does not write (weights), so their DRAM latency overlaps that kernel.
__device__ __forceinline__ void prefetch_l2(const void *p, int64_t bytes)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const uint64_t b = ((uint64_t)(uintptr_t)p + 15) & ~(uint64_t)15, e = ((uint64_t)(uintptr_t)p + (uint64_t)bytes) & ~(uint64_t)15;
    if (bytes > 0 && e > b)
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(b), "r"((uint32_t)(e - b)) : "memory");
#endif
}

// Softmax in base-2 units (logits times log2 e) takes its exponentials as ex2 below.
constexpr float LOG2E = 1.4426950408889634f, LN2 = 0.6931471805599453f;

// 2^x on the special-function unit (2 ulp); -inf gives 0 and results under 2^-126 flush to 0 (a
// weight below 2^-126 of a row's largest, which weighs 1)
__device__ __forceinline__ float ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Element i of an f32, f16 or bf16 array (dt a uniform runtime dtype), as f32.
__device__ __forceinline__ float load_any(int dt, const void *p, int64_t i)
{
    if (dt == MLXN_DTYPE_F16)
        return __half2float(static_cast<const __half *>(p)[i]);
    if (dt == MLXN_DTYPE_BF16)
        return __bfloat162float(static_cast<const __nv_bfloat16 *>(p)[i]);
    return static_cast<const float *>(p)[i];
}

// Stores v as element i of an f32, f16 or bf16 array (dt a uniform runtime dtype), rounded to
// nearest even.
__device__ __forceinline__ void store_any(int dt, void *p, int64_t i, float v)
{
    if (dt == MLXN_DTYPE_F16)
        static_cast<__half *>(p)[i] = __float2half_rn(v);
    else if (dt == MLXN_DTYPE_BF16)
        static_cast<__nv_bfloat16 *>(p)[i] = __float2bfloat16_rn(v);
    else
        static_cast<float *>(p)[i] = v;
}

// The shared-memory address of p (a pointer into shared memory), as the PTX instructions take it.
__device__ __forceinline__ uint32_t smem_addr(const void *p)
{
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 (or 8 or 4) bytes global -> shared without a register round trip (sm_80+); src_bytes 0
// fills zeros. Completion: cp_async_commit closes a group, cp_async_wait<N> waits until at most
// N groups of this thread are pending.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}

__device__ __forceinline__ void cp_async8(uint32_t dst, const void *src)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(dst), "l"(src) : "memory");
}

__device__ __forceinline__ void cp_async4(uint32_t dst, const void *src)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(src) : "memory");
}

__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N> __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// The current device (*dev) and whether it runs this build's sm_90a machine code (*yes): kernels
// built on Hopper's instructions (bulk copies, clusters) are taken on compute capability 9 only,
// since a later GPU would run them from the compute_80 PTX, where those instructions are compiled
// out.
inline cudaError_t sm90_device(int *dev, bool *yes)
{
    int major = 0;
    cudaError_t e = cudaGetDevice(dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, *dev);
    *yes = e == cudaSuccess && major == 9;
    return e;
}

// Launches kernel with programmatic stream serialization when pdl (sm_90+), in thread block
// clusters of `cluster` blocks along x when cluster > 1 (sm_90+; grid.x a multiple of it).
template <typename... Args>
cudaError_t launch_clustered(void (*kernel)(Args...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                             bool pdl, unsigned cluster, Args... args)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr[2];
    unsigned n = 0;
    if (pdl) {
        attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[n++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (cluster > 1) {
        attr[n].id = cudaLaunchAttributeClusterDimension;
        attr[n].val.clusterDim.x = cluster;
        attr[n].val.clusterDim.y = 1;
        attr[n++].val.clusterDim.z = 1;
    }
    cfg.attrs = attr;
    cfg.numAttrs = n;
    return cudaLaunchKernelEx(&cfg, kernel, args...);
}

template <typename... Args>
cudaError_t launch(void (*kernel)(Args...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                   bool pdl, Args... args)
{
    return launch_clustered(kernel, grid, block, smem, s, pdl, 1u, args...);
}

// Raises a kernel's dynamic shared memory limit to `bytes` once per device (done: a bit per
// device; the call costs tens of microseconds, far more than a decode mat-vec).
template <typename K> cudaError_t allow_smem(K kernel, size_t bytes, unsigned long long &done)
{
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess || dev >= 64 || (__atomic_load_n(&done, __ATOMIC_RELAXED) >> dev & 1))
        return e;
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e == cudaSuccess)
        __atomic_fetch_or(&done, 1ull << dev, __ATOMIC_RELAXED);
    return e;
}

// SIMT tile matmul pieces shared by the prefill placeholders: a block of 256 threads owns a
// 64 x 64 output tile, thread (ty, tx) = (threadIdx.x / 16, threadIdx.x % 16) the outputs
// (ty + 16 i, tx + 16 j); x and W tiles of 64 x 32 sit in shared memory, padded by one float.
constexpr int TILE = 64, TK = 32;

__device__ __forceinline__ void tile_fma(const float (*xs)[TK + 1], const float (*ws)[TK + 1], float (&acc)[4][4])
{
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll 8
    for (int k = 0; k < TK; k++) {
        float xv[4], wv[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            xv[i] = xs[ty + 16 * i][k];
            wv[i] = ws[tx + 16 * i][k];
        }
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                acc[i][j] = fmaf(xv[i], wv[j], acc[i][j]);
    }
}

__device__ __forceinline__ void tile_store(const mlxn_rows &y, int64_t M, int64_t N, int64_t m0, int64_t n0,
                                           const float (&acc)[4][4])
{
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int64_t m = m0 + ty + 16 * i;
        if (m >= M)
            continue;
        float *row = reinterpret_cast<float *>(mlxn_rows_ptr(&y, m));
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t n = n0 + tx + 16 * j;
            if (n < N)
                row[n] = acc[i][j];
        }
    }
}

} // namespace mlxn_cuda

#endif
