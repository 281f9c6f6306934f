// Prefill attention on Hopper's warpgroup tensor cores (wgmma, sm_90a), head dims 64, 128 and 256,
// f16 / bf16 caches: the calls attention.cu's launcher sends here instead of attention_prefill_mma
// on an sm_90 device. Same contract, splits and precision as that kernel (q rounded to the cache's
// type, P rounded to it before P V, f32 accumulation); the reasoning and the measurements are in
// bench/NOTES.md (attention, "Prefill on wgmma").
//
// A block owns 128 rows of the packed (query, head-in-group) space of one KV head and one key
// split, in three warpgroups:
//   - warpgroups 0 and 1 (consumers) own 64 rows each. Per tile of keys (WgShape): S = Q K^T by
//     wgmma (Q and K from shared memory), the online softmax in registers (prefill_softmax, the
//     same code as the mma.sync kernel's: the accumulator layout of a warp's 16 rows is
//     mma.sync's), then O += P V by wgmma with P from registers and V from shared memory
//     (transposed by the instruction). Each warp says it is done with a stage on the stage's
//     "empty" mbarrier.
//   - warpgroup 2 (producer) streams K and V tiles into a ring of stages with cp.async (keys past
//     the valid ones zero-filled: a cache's slots past pos may hold NaN, and 0 x NaN would reach
//     O), waits for its own copies, fences them for the async proxy (wgmma reads shared memory
//     through it) and arrives on the stage's "full" mbarrier.
// Shared memory tiles are rows of D elements stored as slabs of 64 columns (128 bytes a row), the
// 16-byte chunks of row r XOR-swizzled by r % 8: wgmma's 128-byte swizzle, which also keeps the
// producer's and q's stores free of bank conflicts.
#include "attention_prefill.cuh"
#include "bulk_copy.cuh"

namespace {

constexpr int WG_BM = 128;      // rows a block (two consumer warpgroups of 64)
constexpr int WG_THREADS = 384; // consumers: warpgroups 0, 1; producer: warpgroup 2
constexpr size_t WG_SMEM_MAX = 227 * 1024; // a block's shared memory on sm_90
// registers a thread after the split (setmaxnreg): the producer's copies need few, the
// consumers' accumulators (S, P and O: BN / 2, BN / 4 and D / 2 a thread) many. setmaxnreg moves
// registers within the block's allocation, 384 threads x 168 (the launch bounds' cap): a larger
// total would leave the consumers' increase waiting forever.
constexpr int WG_PRODUCER_REGS = 56, WG_CONSUMER_REGS = 224;
static_assert(128 * WG_PRODUCER_REGS + 256 * WG_CONSUMER_REGS <= WG_THREADS * (65536 / WG_THREADS / 8 * 8),
              "the block's registers");

// Head dim D: tiles of BN keys (128; 64 at D 256, where O takes 128 registers a thread) in a
// ring of as many stages as the shared memory holds next to the consumers' q rows (up to 4).
template <int D> struct WgShape {
    static constexpr int BN = D == 256 ? 64 : 128;
    static constexpr uint32_t Q_BYTES = 64 * D * 2;      // one consumer's q rows
    static constexpr uint32_t KV_BYTES = BN * D * 2;     // K (or V) of a tile
    static constexpr uint32_t STAGE_BYTES = 2 * KV_BYTES;
    static constexpr size_t FIXED = 1024 /* alignment */ + 2 * Q_BYTES + 2 * 4 * 8 /* barriers */;
    static constexpr int FIT = (int)((WG_SMEM_MAX - FIXED) / STAGE_BYTES);
    static constexpr int STAGES = FIT < 4 ? FIT : 4;
    static constexpr size_t SMEM = FIXED + STAGES * STAGE_BYTES;
    static_assert(STAGES >= 2, "two stages at least");
};

// Chunk ch (elements 8 ch .. 8 ch + 7) of row r of a tile of ROWS rows: slab ch / 8 (ROWS rows of
// 128 bytes), the chunk's place in its row XOR-swizzled by r % 8. Slabs start 1024-byte aligned.
template <int ROWS> struct Swizzled {
    static __device__ __forceinline__ int chunk(int r, int ch)
    {
        return (ch >> 3) * (ROWS * 128) + r * 128 + (((ch & 7) ^ (r & 7)) << 4);
    }
};

// A wgmma shared-memory matrix descriptor with the 128-byte swizzle: start address, leading and
// stride byte offsets (PTX ISA, "Matrix Descriptor Format"). K-major operands (Q, K: rows of 16
// elements of the product's k along a 128-byte line): lbo unused, sbo 1024 (8 rows of 128 bytes);
// the next 16 elements of k are 32 bytes further along the line. MN-major (V for P V: keys along
// k, dims along n): lbo is the distance between 64-column slabs, sbo between groups of 8 keys.
__device__ __forceinline__ uint64_t wg_desc(uint32_t addr, uint32_t lbo, uint32_t sbo)
{
    return (uint64_t)((addr & 0x3FFFF) >> 4) | (uint64_t)((lbo & 0x3FFFF) >> 4) << 16 |
           (uint64_t)((sbo & 0x3FFFF) >> 4) << 32 | 1ull << 62;
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WG_ASM(...) asm volatile(__VA_ARGS__)
#else
#define WG_ASM(...) __trap()
#endif

__device__ __forceinline__ void wg_fence()
{
    WG_ASM("wgmma.fence.sync.aligned;" ::: "memory");
}

__device__ __forceinline__ void wg_commit()
{
    WG_ASM("wgmma.commit_group.sync.aligned;" ::: "memory");
}

__device__ __forceinline__ void wg_wait_all()
{
    WG_ASM("wgmma.wait_group.sync.aligned 0;" ::: "memory");
}

// Pins a wgmma operand's registers in place (no instruction of the compiler's own moves across
// it): around the issue and after the wait, so that no read or write of an accumulator or of P
// lands while a product that uses it is in flight (PTX leaves the order of plain register
// arithmetic against the asynchronous products to the compiler).
template <int N> __device__ __forceinline__ void wg_pin(float (&x)[N][4])
{
#pragma unroll
    for (int i = 0; i < N; i++)
        asm volatile("" : "+f"(x[i][0]), "+f"(x[i][1]), "+f"(x[i][2]), "+f"(x[i][3])::"memory");
}

template <int N> __device__ __forceinline__ void wg_pin(uint32_t (&x)[N][4])
{
#pragma unroll
    for (int i = 0; i < N; i++)
        asm volatile("" : "+r"(x[i][0]), "+r"(x[i][1]), "+r"(x[i][2]), "+r"(x[i][3])::"memory");
}

#define WG_F4(d, i) "+f"(d[i][0]), "+f"(d[i][1]), "+f"(d[i][2]), "+f"(d[i][3])
#define WG_D32(d) WG_F4(d, 0), WG_F4(d, 1), WG_F4(d, 2), WG_F4(d, 3), WG_F4(d, 4), WG_F4(d, 5), WG_F4(d, 6), WG_F4(d, 7)
#define WG_D64(d)                                                                                                    \
    WG_D32(d), WG_F4(d, 8), WG_F4(d, 9), WG_F4(d, 10), WG_F4(d, 11), WG_F4(d, 12), WG_F4(d, 13), WG_F4(d, 14),      \
        WG_F4(d, 15)
#define WG_R32                                                                                                       \
    "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,"    \
    "%29,%30,%31}"
#define WG_R64                                                                                                       \
    "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,"    \
    "%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,"   \
    "%56,%57,%58,%59,%60,%61,%62,%63}"

// S (64 rows x N keys, f32) = Q K^T over 16 dims: A (Q) and B (K) K-major in shared memory;
// first: S = the product (else S += it). N 64 or 128.
// O (64 rows x N dims, f32) += P V over 16 keys: A (P) in registers (mma.sync's A layout per
// warp), B (V) MN-major in shared memory (imm-trans-b 1). N 64 or 128.
#define WG_QK(T, N, REGS, D_OPS, A, B, F)                                                                            \
    static __device__ __forceinline__ void qk(float (&d)[N / 8][4], uint64_t da, uint64_t db, bool first)           \
    {                                                                                                                \
        WG_ASM("{\n.reg .pred p;\nsetp.eq.u32 p, " F ", 0;\n"                                                        \
               "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." T "." T " " REGS ", " A ", " B                   \
               ", p, 1, 1, 0, 0;\n}\n"                                                                               \
               : D_OPS(d)                                                                                            \
               : "l"(da), "l"(db), "r"((uint32_t)first));                                                           \
    }
#define WG_PV(T, N, REGS, D_OPS, A, B, F)                                                                            \
    static __device__ __forceinline__ void pv(float (&d)[N / 8][4], const uint32_t (&a)[4], uint64_t db)            \
    {                                                                                                                \
        WG_ASM("{\n.reg .pred p;\nsetp.ne.u32 p, " F ", 0;\n"                                                        \
               "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." T "." T " " REGS ", " A ", " B                   \
               ", p, 1, 1, 1;\n}\n"                                                                                  \
               : D_OPS(d)                                                                                            \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1u));                                      \
    }
#define WG_PRODUCTS(T)                                                                                               \
    WG_QK(T, 64, WG_R32, WG_D32, "%32", "%33", "%34")                                                                \
    WG_QK(T, 128, WG_R64, WG_D64, "%64", "%65", "%66")                                                               \
    WG_PV(T, 64, WG_R32, WG_D32, "{%32,%33,%34,%35}", "%36", "%37")                                                  \
    WG_PV(T, 128, WG_R64, WG_D64, "{%64,%65,%66,%67}", "%68", "%69")

template <typename KV> struct Wg;
template <> struct Wg<__nv_bfloat16> {
    WG_PRODUCTS("bf16")
};
template <> struct Wg<__half> {
    WG_PRODUCTS("f16")
};

// cp_async_wait<n> for a run-time n in [0, MAX].
template <int MAX> __device__ __forceinline__ void cp_async_wait_dyn(int n)
{
    if constexpr (MAX > 0) {
        if (n >= MAX) {
            cp_async_wait<MAX>();
            return;
        }
        cp_async_wait_dyn<MAX - 1>(n);
    } else {
        cp_async_wait<0>();
    }
}

// Keys j0 .. j0 + BN - 1 of K and V into a stage by the producer's 128 threads (keys at or past
// `valid` zero-filled), as one cp.async group.
template <int D>
__device__ __forceinline__ void wg_load_tile(const mlxn_attention_args &a, const char *kbase, const char *vbase, int j0,
                                             int valid, uint32_t ks, int ptid)
{
    using W = WgShape<D>;
    constexpr int CH = D / 8; // 16-byte chunks a row
#pragma unroll 4
    for (int i = ptid; i < W::BN * CH; i += 128) {
        const int row = i / CH, ch = i % CH, j = j0 + row;
        const bool in = j < valid;
        const uint32_t off = (uint32_t)Swizzled<W::BN>::chunk(row, ch);
        cp_async16(ks + off, kbase + (in ? j : 0) * a.k.s2 + ch * 16, in ? 16 : 0);
        cp_async16(ks + W::KV_BYTES + off, vbase + (in ? j : 0) * a.v.s2 + ch * 16, in ? 16 : 0);
    }
    cp_async_commit();
}

// The producer warpgroup: tiles 0 .. n_tiles - 1 (keys from kt0 BN) into the ring. Each thread on
// its own: it refills a stage as soon as the consumers released it and, when it cannot, signals
// its oldest tile in flight once its copies landed, so a landed tile never waits behind a refill
// the consumers hold up.
template <int D>
__device__ __forceinline__ void wg_produce(const mlxn_attention_args &a, int b, int hk, int kt0, int n_tiles,
                                          int valid, uint32_t kv_base, uint64_t *full, uint64_t *empty, int ptid)
{
    using W = WgShape<D>;
    constexpr int ST = W::STAGES;
    const char *kbase = a.k.base + b * a.k.s0 + hk * a.k.s1, *vbase = a.v.base + b * a.v.s0 + hk * a.v.s1;
    int issued = 0, signaled = 0;
    while (signaled < n_tiles) {
        if (issued < n_tiles) {
            const int s = issued % ST;
            const uint32_t parity = (uint32_t)(issued / ST - 1) & 1;
            bool free = issued < ST;
            if (!free && signaled == issued) { // nothing to signal: wait for the stage
                mbar_wait(&empty[s], parity);
                free = true;
            }
            if (free || mbar_test(&empty[s], parity)) {
                wg_load_tile<D>(a, kbase, vbase, (kt0 + issued) * W::BN, valid, kv_base + (uint32_t)s * W::STAGE_BYTES,
                                ptid);
                issued++;
                continue;
            }
        }
        cp_async_wait_dyn<ST - 1>(issued - signaled - 1); // the oldest landed
        fence_proxy_async_shared(); // cp.async wrote through the generic proxy; wgmma reads through the async one
        mbar_arrive(&full[signaled % ST]);
        signaled++;
    }
}

template <typename KV, int D>
__global__ void __launch_bounds__(WG_THREADS, 1)
    attention_prefill_wgmma(const mlxn_attention_args a, const KeySplit sp, QMode q_mode)
{
    using W = WgShape<D>;
    constexpr int BN = W::BN, ST = W::STAGES, NT = BN / 8, DT = D / 8;
    extern __shared__ unsigned char smem_raw[];
    const uint32_t raw = smem_addr(smem_raw), base = (raw + 1023) & ~1023u;
    char *smem = reinterpret_cast<char *>(smem_raw) + (base - raw);
    const uint32_t q_base = base, kv_base = base + 2 * W::Q_BYTES;
    uint64_t *full = reinterpret_cast<uint64_t *>(smem + 2 * W::Q_BYTES + ST * W::STAGE_BYTES);
    uint64_t *empty = full + ST;
    const int tid = threadIdx.x, wg = tid >> 7;
    if (tid == 0) {
        for (int s = 0; s < ST; s++) {
            mbar_init(&full[s], 128); // every producer thread, once its copies landed
            mbar_init(&empty[s], 8);  // every consumer warp
        }
        mbar_init_fence();
    }
    __syncthreads();
    wait_for_previous_kernel();
    allow_next_kernel();
    // the block: (batch row, KV head) blockIdx.x, row tile blockIdx.y (the last rows, which see the
    // most keys, first), key split blockIdx.z
    const int G = (int)(a.Hq / a.Hkv), R = G * (int)a.Tq, Hkv = (int)a.Hkv;
    const int row0 = ((R + WG_BM - 1) / WG_BM - 1 - (int)blockIdx.y) * WG_BM;
    const int b = (int)blockIdx.x / Hkv, hk = (int)blockIdx.x % Hkv, first = a.pos[b];
    const int rows_here = R - row0 < WG_BM ? R - row0 : WG_BM;
    if (!pos_in_range(a, first)) {
        if (sp.splits == 1 && wg < 2) // with splits the merge kernel writes the NaN rows
            prefill_nan_rows<D>(a, b, hk, G, row0, rows_here, tid, 256);
        return;
    }
    const int valid = first + (int)a.Tq;
    int k0, k1;
    if (!split_keys(sp, blockIdx.z, valid, k0, k1))
        return;
    int blo, bhi;
    rows_keys<false>(a, first, row0, row0 + rows_here - 1, G, k0, k1, blo, bhi);
    const int kt0 = blo / BN, n_tiles = blo < bhi ? (bhi - 1) / BN + 1 - kt0 : 0;

    if (wg == 2) {
        WG_ASM("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(WG_PRODUCER_REGS));
        wg_produce<D>(a, b, hk, kt0, n_tiles, valid, kv_base, full, empty, tid - 256);
        return;
    }
    WG_ASM("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(WG_CONSUMER_REGS));

    // consumer warpgroup wg: rows [grow0, grow0 + 64); this warp's 16 of them from wr.wrow0
    const int wtid = tid & 127, lane = tid & 31, g = lane >> 2, tq = lane & 3;
    const int grow0 = row0 + wg * 64;
    const int grows = rows_here - wg * 64 < 0 ? 0 : rows_here - wg * 64 > 64 ? 64 : rows_here - wg * 64;
    const uint32_t qs = q_base + (uint32_t)wg * W::Q_BYTES;
    stage_q<KV, D, 64, 128, Swizzled<64>>(a, q_mode, b, hk, G, grow0, grows, smem + wg * W::Q_BYTES, wtid);
    fence_proxy_async_shared(); // q's stores, before wgmma reads them
    if (wg == 0) // (constant barrier ids: a register id makes ptxas reserve all 16)
        asm volatile("bar.sync 1, 128;" ::: "memory");
    else
        asm volatile("bar.sync 2, 128;" ::: "memory");
    // the keys some row of the warpgroup sees [glo, ghi): the other tiles are only waited for and
    // released (a stage's "empty" phase counts every consumer warp)
    int glo = 0, ghi = 0;
    if (grows > 0)
        rows_keys<false>(a, first, grow0, grow0 + grows - 1, G, k0, k1, glo, ghi);
    WarpRows wr = {first, k0, k1, R, G, grow0 + (wtid >> 5) * 16, 0, 0};
    if (wr.wrow0 < R)
        rows_keys<true>(a, first, wr.wrow0, wr.wrow0 + 15 < R ? wr.wrow0 + 15 : R - 1, G, k0, k1, wr.flo, wr.fhi);
    const float scale_log2 = a.scale * LOG2E;
    float oacc[1][DT][4];
#pragma unroll
    for (int i = 0; i < DT; i++)
        oacc[0][i][0] = oacc[0][i][1] = oacc[0][i][2] = oacc[0][i][3] = 0.0f;
    float mrow[1][2] = {{-INFINITY, -INFINITY}}, lrow[1][2] = {{0.0f, 0.0f}};
#pragma unroll 1
    for (int it = 0; it < n_tiles; it++) {
        const int s = it % ST, j0 = (kt0 + it) * BN;
        mbar_wait(&full[s], (uint32_t)(it / ST) & 1);
        if (j0 < ghi && j0 + BN > glo) { // (uniform over the warpgroup, as wgmma needs)
            const uint32_t ks = kv_base + (uint32_t)s * W::STAGE_BYTES, vs = ks + W::KV_BYTES;
            // S = Q K^T: 16 dims a step, 4 steps a 64-column slab (32 bytes apart in its rows)
            float sacc[1][NT][4];
            wg_pin(oacc[0]);
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++)
                Wg<KV>::qk(sacc[0], wg_desc(qs + (uint32_t)(kk >> 2) * 64 * 128 + (uint32_t)(kk & 3) * 32, 16, 1024),
                           wg_desc(ks + (uint32_t)(kk >> 2) * BN * 128 + (uint32_t)(kk & 3) * 32, 16, 1024), kk == 0);
            wg_commit();
            wg_wait_all();
            wg_pin(sacc[0]);
            float al[1][2];
            if (prefill_softmax<1, NT>(a, wr, j0, g, tq, scale_log2, sacc, mrow, lrow, al))
                rescale_rows(oacc[0], al[0]);
            // O += P V, P from the weights in registers, 16 keys a step, 128 dims (two slabs) a
            // product (64 at D 64)
            uint32_t pf[BN / 16][4];
#pragma unroll
            for (int kb = 0; kb < BN / 16; kb++)
                pack_p<KV>(sacc[0], kb, pf[kb]);
            constexpr int PN = D < 128 ? D : 128; // dims a product
            wg_pin(oacc[0]);
            wg_pin(pf);
            wg_fence();
#pragma unroll
            for (int kb = 0; kb < BN / 16; kb++)
#pragma unroll
                for (int h = 0; h < D / PN; h++)
                    Wg<KV>::pv(*reinterpret_cast<float(*)[PN / 8][4]>(&oacc[0][h * PN / 8]), pf[kb],
                               wg_desc(vs + (uint32_t)kb * 16 * 128 + (uint32_t)h * 2 * BN * 128, BN * 128, 1024));
            wg_commit();
            wg_wait_all();
            wg_pin(oacc[0]);
            wg_pin(pf);
        }
        __syncwarp();
        if (lane == 0)
            mbar_arrive(&empty[s]);
    }
    prefill_store<1, D>(a, sp, (int)blockIdx.z, b, hk, wr, g, tq, oacc, mrow, lrow);
}

// The kernels run as sm_90a code on an sm_90 device: the library also carries compute_80 PTX,
// where their wgmma, mbarrier and setmaxnreg instructions trap (a driver that JIT-compiles that
// PTX, CUDA_FORCE_PTX_JIT=1 or a build without sm_90a, would run it). Per device, checked once.
bool wgmma_runs_here()
{
    static unsigned long long checked, good; // a bit per device ordinal
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev >= 64)
        return false;
    if (__atomic_load_n(&checked, __ATOMIC_ACQUIRE) >> dev & 1)
        return __atomic_load_n(&good, __ATOMIC_RELAXED) >> dev & 1;
    int major = 0, minor = 0;
    bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
              cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess && major == 9 &&
              minor == 0;
    if (ok) {
        cudaFuncAttributes fa;
        ok = cudaFuncGetAttributes(&fa, attention_prefill_wgmma<__half, 128>) == cudaSuccess;
        if (!ok)
            (void)cudaGetLastError(); // its error is not the next launch's
        ok = ok && fa.ptxVersion >= 90;
    }
    if (ok)
        __atomic_fetch_or(&good, 1ull << dev, __ATOMIC_RELAXED);
    __atomic_fetch_or(&checked, 1ull << dev, __ATOMIC_RELEASE);
    return ok;
}

} // namespace

namespace mlxn_cuda {

bool attention_prefill_wgmma_plan(const mlxn_attention_args &a, int &rows_per_block, int &tile_keys)
{
    const int64_t tiles = (a.Hq / a.Hkv * a.Tq + WG_BM - 1) / WG_BM;
    if (!(a.D == 64 || a.D == 128 || a.D == 256) ||
        !(a.kv_dtype == MLXN_DTYPE_F16 || a.kv_dtype == MLXN_DTYPE_BF16) || a.B * a.Hkv > INT32_MAX ||
        tiles > 65535 || !wgmma_runs_here())
        return false;
    rows_per_block = WG_BM;
    tile_keys = a.D == 64 ? WgShape<64>::BN : a.D == 128 ? WgShape<128>::BN : WgShape<256>::BN;
    return true;
}

template <int D>
cudaError_t launch_wgmma(const mlxn_attention_args &a, const KeySplit &sp, QMode q_mode, cudaStream_t s, bool pdl)
{
    static unsigned long long smem_done[2];
    const bool f16 = a.kv_dtype == MLXN_DTYPE_F16;
    auto kernel = f16 ? attention_prefill_wgmma<__half, D> : attention_prefill_wgmma<__nv_bfloat16, D>;
    cudaError_t e = allow_smem(kernel, WgShape<D>::SMEM, smem_done[f16]);
    if (e != cudaSuccess)
        return e;
    const int64_t tiles = (a.Hq / a.Hkv * a.Tq + WG_BM - 1) / WG_BM;
    return launch(kernel, dim3((unsigned)(a.B * a.Hkv), (unsigned)tiles, (unsigned)sp.splits), dim3(WG_THREADS),
                  WgShape<D>::SMEM, s, pdl, a, sp, q_mode);
}

cudaError_t launch_attention_prefill_wgmma(const mlxn_attention_args &a, const KeySplit &sp, QMode q_mode,
                                           cudaStream_t s, bool pdl)
{
    switch (a.D) {
    case 64: return launch_wgmma<64>(a, sp, q_mode, s, pdl);
    case 128: return launch_wgmma<128>(a, sp, q_mode, s, pdl);
    default: return launch_wgmma<256>(a, sp, q_mode, s, pdl);
    }
}

} // namespace mlxn_cuda
