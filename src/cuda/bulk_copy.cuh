// The bulk copy engine (sm_90): global -> shared copies of contiguous bytes that complete on an
// mbarrier, so one thread can keep many kilobytes in flight per block while the others compute.
// Sizes and both addresses must be multiples of 16 bytes. The instructions exist from sm_90 on:
// compiled for an older target these trap, and the launchers take their kernels on compute
// capability 9 only (sm90_device in common.cuh).
#ifndef MLXN_CUDA_BULK_COPY_CUH
#define MLXN_CUDA_BULK_COPY_CUH

#include <stdint.h>

#include "common.cuh"

namespace mlxn_cuda {

// An mbarrier that completes a phase when `count` threads arrived and the bytes they announced
// have landed. Initialize in one thread, then fence and __syncthreads before use.
__device__ __forceinline__ void mbar_init(uint64_t *bar, uint32_t count)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count) : "memory");
#else
    __trap();
#endif
}

__device__ __forceinline__ void mbar_init_fence()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#else
    __trap();
#endif
}

// Arrives on bar and announces `bytes` more to land before the phase completes.
__device__ __forceinline__ void mbar_arrive_expect(uint64_t *bar, uint32_t bytes)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes)
                 : "memory");
#else
    __trap();
#endif
}

// Arrives on bar (release: this thread's earlier shared-memory writes are seen by the waiters).
__device__ __forceinline__ void mbar_arrive(uint64_t *bar)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(bar)) : "memory");
#else
    __trap();
#endif
}

// try_wait until the phase of parity %1 of the mbarrier at %0 has completed; SEM: its semantics
#define MLXN_MBAR_WAIT_LOOP(SEM)                                                                                        \
    "{\n\t.reg .pred done;\n"                                                                                          \
    "WAIT_%=:\n\t"                                                                                                     \
    "mbarrier.try_wait.parity" SEM ".shared::cta.b64 done, [%0], %1;\n\t"                                               \
    "@!done bra WAIT_%=;\n}"

// Waits until the phase with the given parity (0, 1, 0, ... for its uses) has completed.
// CLUSTER: for bytes pushed by other blocks of the cluster (acquire at cluster scope: their pushes
// are seen after it).
template <bool CLUSTER = false> __device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if constexpr (CLUSTER)
        asm volatile(MLXN_MBAR_WAIT_LOOP(".acquire.cluster") ::"r"(smem_addr(bar)), "r"(parity) : "memory");
    else
        asm volatile(MLXN_MBAR_WAIT_LOOP("") ::"r"(smem_addr(bar)), "r"(parity) : "memory");
#else
    __trap();
#endif
}

// Whether the phase with the given parity has completed, without waiting.
__device__ __forceinline__ bool mbar_test(uint64_t *bar, uint32_t parity)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint32_t done;
    asm volatile("{\n\t.reg .pred p;\n\t"
                 "mbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
                 "selp.u32 %0, 1, 0, p;\n}"
                 : "=r"(done)
                 : "r"(smem_addr(bar)), "r"(parity)
                 : "memory");
    return done != 0;
#else
    __trap();
    return false;
#endif
}

// Before a copy refills a stage that threads have read (they then said so through a barrier or
// __syncwarp): orders those generic-proxy reads before the copy engine's writes, as the PTX
// memory model asks of the async proxy.
__device__ __forceinline__ void fence_proxy_async_shared()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#else
    __trap();
#endif
}

__device__ __forceinline__ void bulk_copy(void *dst, const void *src, uint32_t bytes, uint64_t *bar)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                     smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(smem_addr(bar))
                 : "memory");
#else
    __trap();
#endif
}

// An L2 policy for bytes read once (a decode step's weights): evicted first, so that streaming
// them does not push out what is read again soon (the activations, the KV cache).
__device__ __forceinline__ uint64_t l2_evict_first()
{
    uint64_t p = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
#endif
    return p;
}

// An L2 policy for bytes read again soon (the long softmax rows' tails, read twice): kept last
__device__ __forceinline__ uint64_t l2_evict_last()
{
    uint64_t p = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(p));
#endif
    return p;
}

// bulk_copy with an L2 cache policy (l2_evict_first)
__device__ __forceinline__ void bulk_copy_hint(void *dst, const void *src, uint32_t bytes, uint64_t *bar, uint64_t policy)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(
                     smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(smem_addr(bar)), "l"(policy)
                 : "memory");
#else
    __trap();
#endif
}

// Thread-block clusters: pairs pushed into other blocks' shared memory, completing on their
// mbarriers, where a cluster barrier would cost every thread a release (MEMBAR.GPU) and tie the
// blocks' exits together.

// Arrives on the cluster barrier without ordering earlier memory accesses (an mbarrier's init is
// ordered by mbar_init_fence). Every thread of the cluster arrives once, then waits once.
__device__ __forceinline__ void cluster_arrive_relaxed()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#else
    __trap();
#endif
}

__device__ __forceinline__ void cluster_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
#else
    __trap();
#endif
}

// (a, b) into block `rank`'s copy of dst (this block's address of the same variable), completing
// 8 bytes on that block's copy of bar.
__device__ __forceinline__ void push_pair(float2 *dst, uint64_t *bar, uint32_t rank, float a, float b)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint32_t d, m;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(d) : "r"(smem_addr(dst)), "r"(rank));
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(m) : "r"(smem_addr(bar)), "r"(rank));
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v2.b32 [%0], {%1, %2}, [%3];" ::"r"(d),
                 "r"(__float_as_uint(a)), "r"(__float_as_uint(b)), "r"(m)
                 : "memory");
#else
    __trap();
#endif
}

} // namespace mlxn_cuda

#endif
