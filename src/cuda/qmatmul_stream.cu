// Decode mat-vec (M = 1), streamed: y[n] = x . W[n]^T for GGML weights (Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS) and MLX ones of every width (scales and biases in f16 or
// bf16)
// (bench/NOTES.md, "qmatmul decode, streamed", has the budget behind each choice).
//
//  - K is split over the block's threads: a thread owns one piece of x (32 elements) for the
//    whole kernel, in registers, so x is read once per block instead of once per row from shared
//    memory; f32 x comes in coalesced, each computing warp through its own 4 KB of a staging
//    area in shared memory (stage_x), past the ring where the block's share of the SM holds it,
//    else in the ring's last stages. A piece is a block, or a 32-element unit of a K super-block
//    (a Q6_K piece is a quarter of a 128-element half: its low nibbles share 32 code bytes with
//    another quarter, its high 2 bits 32 bytes with the three others).
//  - W comes in tiles of RT rows through the bulk copy engine into a ring of shared-memory
//    stages. A row whose bytes are not whole 16-byte words where they lie (Q6_K's 18944-long
//    rows of 15540 bytes) comes as the 16-byte words that hold it, into a slot a word longer,
//    and is read from its offset in the first word. Warp 0 produces: it issues the copies, and
//    once every computing warp has said
//    (an mbarrier per stage) that it is done with a tile, it sums their partial sums, stores
//    the outputs and refills the stage. The computing warps never wait for each other, only
//    for their next tile's bytes. From K 4096 only the first one or two tiles are requested
//    before the previous kernel ends (PDL); the rest of the ring waits until the computing warps
//    have issued x's loads, so that those do not queue behind it, and any stages beneath x's
//    staging area until x is read (shorter rows: every stage early).
//  - Integer dot products: x's piece as 22-bit integers split into three bytes, codes as bytes
//    (2- to 6-bit codes assembled into bytes, IQ4 codes looked up by byte permutes), so that a
//    word of four codes takes three dp4a; block scales and offsets (through each piece's sum of x)
//    apply once per piece. (x as 15-bit integers in two planes, two dp4a a word, was faster but
//    misses the harness's bound where a few elements carry a row: bench/NOTES.md, "x in two byte
//    planes".)
#include <stdint.h>

#include <mutex>

#include "block_reduce.cuh"
#include "bulk_copy.cuh"
#include "common.cuh"
#include "ggml_unit.cuh"
#include "mlxn_safetensors.h" // mlxn_mlx_dtype_for_bits
#include "piece_dot.cuh"
#include "qmatmul_out.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int MAX_STAGES = 8;
constexpr int MAX_PIECES = 512;       // a computing thread per piece
constexpr int MAX_THREADS = MAX_PIECES + 32; // and the producer warp

// Settings by format, each measured on an H100 (bench/NOTES.md, qmatmul sessions 28, 45, 47, 48, 49,
// 51 and 58; find_plan, launch_rows and qmm_stream apply them):
// - product_bound: the formats bound by their products rather than by W's bytes (55-75% of copy
//   where the others read 85-99), for which x early counts more than W's tiles early: one tile
//   before the PDL wait from K 4096, two rather than three under the K 14336 rule
// - rt4_k4096: 4-row tiles at K 4096 (+1 to +7 points; the other formats even or slower)
// - two_early: two tiles before the PDL wait beyond find_plan's 60% bound (MLX 4-bit: +1.5 and
//   +2.0 at 14336x4096 in two sessions, where Q4_0's rows of the same bytes lost 5)
// - ring_limit: a block's dynamic shared memory at most (of sm_90's 227 KB): 224 KB for Q4_1 and
//   Q5_1, whose rings at K 14336 (a block alone on its SM) then hold one more stage before x's
//   staging area (+0.8 to +3.7 at 4096x14336 in two calls); the others lost up to 2.8 or did not
//   move with it
// - x_past_ring: x's staging area may run past the ring where a block of 14 or more computing warps
//   (Q6_K: K over 12288) is alone on its SM, for one more stage before it (find_plan): Q6_K +3.6 at
//   4096x14336 and +1.7 at 8192x28672 (parts of K 14336); at K 9472 (3584x18944's parts) Q6_K
//   lost 2.4, the others moved -0.5..+0.6 (the product-bound formats' losses of up to 4.2 at K
//   14336 came with part's offset as a kernel argument, not from their plans: qmm_stream's part)
// - paired_pieces: a warp's lanes take every other piece of a warp pair, for blocks of 2 mod 4
//   bytes (Q4_0, Q5_0, Q8_0, IQ4_NL: a piece a block; Q6_K), so that its lanes' words are an odd
//   number of words apart and fall in distinct shared-memory banks. Q3_K's take consecutive ones:
//   paired, a warp spans 8 of its 110-byte super-blocks, the 1st and the 8th in the same banks
//   (7 x 27.5 words), and every load of its codes and high bits took two wavefronts (+4.6 and +4.8
//   points consecutive, bench/NOTES.md session 58)
template <int WT>
constexpr bool product_bound = WT == MLXN_DTYPE_IQ4_NL || WT == MLXN_DTYPE_IQ4_XS || WT == MLXN_DTYPE_Q2_K ||
                               WT == MLXN_DTYPE_Q3_K || WT == MLXN_DTYPE_MLX_Q2;
template <int WT>
constexpr bool rt4_k4096 = WT == MLXN_DTYPE_Q4_1 || WT == MLXN_DTYPE_Q5_0 || WT == MLXN_DTYPE_Q5_K ||
                           WT == MLXN_DTYPE_Q3_K || WT == MLXN_DTYPE_MLX_Q3 || WT == MLXN_DTYPE_MLX_Q5 ||
                           WT == MLXN_DTYPE_MLX_Q6;
template <int WT> constexpr bool two_early = WT == MLXN_DTYPE_MLX_Q4;
template <int WT> constexpr int ring_limit = WT == MLXN_DTYPE_Q4_1 || WT == MLXN_DTYPE_Q5_1 ? 224 * 1024 : 200 * 1024;
template <int WT> constexpr bool x_past_ring = WT == MLXN_DTYPE_Q6_K;
template <int WT> constexpr bool paired_pieces = piece_fmt<WT>::BB % 4 == 2 && WT != MLXN_DTYPE_Q3_K;

// MLX weights' scales and biases ([N, K / group] each, f16 or bf16): a tile's rows of them follow
// its rows of codes in the stage (srow bytes a row, scales then biases).
struct mlx_rows {
    const uint8_t *s, *b;
    int64_t s_stride, b_stride;
    int group, srow;
    bool bf16;
};

// x's pieces through a staging area, 4 KB a computing warp (its 32 pieces of 32 f32, 8 16-byte
// chunks each): chunk c of the warp's piece q in slot 8 q + (c ^ ((q ^ q >> 3) & 7)), so that
// neither a quarter warp's stores (8 chunks of one piece) nor its reads (chunk c of 8 consecutive
// pieces) conflict in banks
__device__ __forceinline__ int xs_slot(int q, int c) { return 8 * q + (c ^ ((q ^ q >> 3) & 7)); }

// x (normalized when norm_w is given) into the computing threads' registers, one piece a thread,
// loaded coalesced: each warp loads its own pieces' bytes (a piece is a 128-byte line), lane l the
// chunks l, l + 32, ... of them, where each thread's own piece would be 32 lanes' requests to 32
// lines an instruction (bench/NOTES.md session 31). piece(q) is the global piece of the warp's
// piece q. Barrier 2 is arrived at once the loads are issued, barrier 4 once x is read out of xs
// (the producer then requests the stages beneath it): every computing thread calls it, past the
// last piece too. The warps do not wait for each other (but for the norm's sum).
template <typename PieceOf>
__device__ __forceinline__ void stage_x(const mlxn_qmatmul_args &a, float4 *xs, double *dred, PieceOf piece_of,
                                        int pieces, float *x)
{
    const int lane = (int)threadIdx.x & 31, cw = ((int)threadIdx.x >> 5) - 1;
    const float4 *x4 = reinterpret_cast<const float4 *>(mlxn_rows_ptr(&a.x, 0));
    const float4 *w4 = reinterpret_cast<const float4 *>(a.norm_w);
    const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
    float4 *const xw = xs + 256 * cw; // this warp's 4 KB
    float4 v[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int q = 4 * i + lane / 8, p = piece_of(q);
        v[i] = p < pieces ? x4[8 * p + lane % 8] : zero;
    }
    asm volatile("bar.arrive 2, %0;" ::"r"((int)blockDim.x) : "memory");
    double ss = 0.0; // with norm_w: x's sum of squares (norm_scale)
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int q = 4 * i + lane / 8;
        xw[xs_slot(q, lane % 8)] = v[i];
        if (w4)
            ss += (double)v[i].x * v[i].x + (double)v[i].y * v[i].y + (double)v[i].z * v[i].z + (double)v[i].w * v[i].w;
    }
    if (w4) { // norm_w's loads after x's stores: both at once spilled registers
        float4 w[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int q = 4 * i + lane / 8, p = piece_of(q);
            w[i] = p < pieces ? __ldg(w4 + 8 * p + lane % 8) : zero;
        }
        ss = block_reduce(ss, dred, 0.0, add_op(), 1);
        const float inv = norm_scale(a, ss);
#pragma unroll
        for (int i = 0; i < 8; i++) { // x inv w, in that order as before; each thread its own chunks
            const int q = 4 * i + lane / 8;
            float4 &t = xw[xs_slot(q, lane % 8)];
            t = make_float4(t.x * inv * w[i].x, t.y * inv * w[i].y, t.z * inv * w[i].z, t.w * inv * w[i].w);
        }
    }
    __syncwarp();
#pragma unroll
    for (int c = 0; c < 8; c++) { // past the last piece: zeros, as stored
        const float4 t = xw[xs_slot(lane, c)];
        x[4 * c] = t.x, x[4 * c + 1] = t.y, x[4 * c + 2] = t.z, x[4 * c + 3] = t.w;
    }
    asm volatile("bar.arrive 4, %0;" ::"r"((int)blockDim.x) : "memory");
}

// RT: rows of W per tile (a power of two up to 32); UA: rows not whole 16-byte words where
// they lie, each in a stage slot of slot_arg bytes that holds the words that hold it (stream_shape);
// otherwise rows whole words, row_bytes a slot (the kernel without UA's work)
template <int WT, int RT, bool UA>
__global__ void __launch_bounds__(MAX_THREADS) qmm_stream(const mlxn_qmatmul_args a, int stages, int pre, int row_bytes,
                                                          int slot_arg, const mlx_rows m, int xstage, int xoff,
                                                          int part_off)
{
    constexpr int PE = piece_fmt<WT>::PE;
    // stages x RT rows, 16 bytes of slack, then part; x's staging area in the ring's last stages,
    // or past part (find_plan's xout), or for x_past_ring from inside the ring to past its end,
    // part then following it at part_off
    extern __shared__ __align__(128) uint8_t ring[];
    __shared__ uint64_t full[MAX_STAGES], empty[MAX_STAGES]; // bytes landed / tile consumed
    __shared__ double dred[32];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warps = blockDim.x >> 5;
    const int cwarps = warps - 1; // warp 0 produces, the others compute
    // A computing warp's pieces: consecutive ones, or every other one of a warp pair (paired_pieces)
    const int cw = warp - 1;
    auto piece_of = [cw](int q) { // computing warp cw's piece q
        return paired_pieces<WT> ? 2 * q + (cw & 1) + 64 * (cw >> 1) : 32 * cw + q;
    };
    const int piece = warp == 0 ? -1 : piece_of(lane);
    const int pieces = (int)(a.K / PE);
    const int64_t n_out = a.glu ? a.N / 2 : a.N; // with GLU, row o is a gate and o + n_out its up
    const int outs = a.glu ? RT / 2 : RT;         // outputs per tile
    const int64_t tiles = (n_out + outs - 1) / outs;
    const int64_t my_tiles = tiles > blockIdx.x ? (tiles - 1 - blockIdx.x) / gridDim.x + 1 : 0;
    constexpr bool MLX = piece_fmt<WT>::MLX;
    static_assert(!UA || (RT <= 8 && !MLX), "a tile's row offsets (leads) are 4 bits a row of a word; MLX rows are words");
    constexpr bool words = !UA;
    // Slots are whole 16-byte words (shape_of). For the formats read as bit streams (smem_bits)
    // the mask tells the compiler so: a piece's shifts then depend on its offset in the row only
    // and are formed once a thread, not once a row (measured: the same code for the others,
    // where it only moved instructions)
    constexpr bool bits = WT == MLXN_DTYPE_Q3_K || WT == MLXN_DTYPE_Q6_K;
    const int row_slot = (UA ? slot_arg : row_bytes) & (bits ? ~15 : ~0);
    const size_t stage_bytes = (size_t)RT * (row_slot + (MLX ? 2 * m.srow : 0));
    // tile i's row r: W's row (with GLU rows outs.. are the gates' up rows; past N the last row
    // again), and its offset in the 16-byte word that starts its slot (W is 16-byte aligned);
    // leads: the tile's offsets, 4 bits a row (0 where rows are whole words)
    auto w_row = [&](int64_t i, int r) {
        const int64_t o0 = (blockIdx.x + i * gridDim.x) * outs, rows = n_out - o0 < outs ? n_out - o0 : outs;
        const int64_t o = o0 + ((r & (outs - 1)) < rows ? (r & (outs - 1)) : rows - 1);
        return r < outs ? o : o + n_out;
    };
    auto lead_of = [&](int64_t i, int r) { return (uint32_t)w_row(i, r) * (uint32_t)a.w_stride & 15u; };
    auto leads_of = [&](int64_t i) {
        uint32_t l = 0;
        if constexpr (UA)
#pragma unroll
            for (int r = 0; r < RT; r++)
                l |= lead_of(i, r) << 4 * r;
        return l;
    };
    // the partial sums after the ring (per stage, computing warp, row), or past x's staging area
    // where x_past_ring placed it there (part_off); the other formats' kernels compute the offset
    // as before part_off was an argument: taking it from the argument cost the product-bound
    // formats 1.5-2.3 points at K 14336 (bench/NOTES.md, session 52)
    float *part = reinterpret_cast<float *>(ring + (x_past_ring<WT> ? (size_t)part_off : (size_t)stages * stage_bytes + 16));

    if (tid == 0) {
        for (int s = 0; s < stages; s++) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], cwarps);
        }
        mbar_init_fence();
    }
    __syncthreads();
    // Local tile i goes to stage i % stages; its rows are gate/up pairs with GLU. The whole
    // producer warp calls (one lane issuing a copy per row was slow, bench/NOTES.md session 7).
    // Packed rows (W's rows back to back) come in one copy per run of rows, the stage's rows past
    // N left stale or, in a stage's first tile, uninitialized (their sums are computed but never
    // stored); others in a copy per row from a lane each, the
    // last tile repeating a row rather than read past W.
    const bool packed = a.w_stride == row_bytes && words;
    const uint64_t pol = warp == 0 ? l2_evict_first() : 0; // W is read once a call: out of L2 first
    auto issue = [&](int64_t i) {
        fence_proxy_async_shared(); // the computing warps' reads of the stage's previous tile
        const int64_t o0 = (blockIdx.x + i * gridDim.x) * outs, rows = n_out - o0 < outs ? n_out - o0 : outs;
        uint8_t *dst = ring + (size_t)(i % stages) * stage_bytes;
        uint64_t *bar = &full[i % stages];
        if (packed && !MLX) {
            if (lane == 0) {
                const uint32_t bytes = (uint32_t)(rows * row_bytes);
                mbar_arrive_expect(bar, a.glu ? 2 * bytes : bytes);
                bulk_copy_hint(dst, a.w + o0 * row_bytes, bytes, bar, pol);
                if (a.glu)
                    bulk_copy_hint(dst + (size_t)outs * row_bytes, a.w + (o0 + n_out) * row_bytes, bytes, bar, pol);
            }
            return;
        }
        // MLX: RT rows of scales and of biases too, a row a lane (past N: the last row again).
        // A row a lane: the 16-byte words that hold it, from lead bytes before it.
        const uint32_t aux = MLX ? 2u * RT * (uint32_t)m.srow : 0u;
        const uint32_t leads = leads_of(i);
        auto span = [&](int r) { return UA ? ((leads >> 4 * r & 15u) + (uint32_t)row_bytes + 15u) & ~15u : (uint32_t)row_bytes; };
        if (lane == 0) {
            uint32_t bytes = 0;
            for (int r = 0; r < RT && !words; r++)
                bytes += span(r);
            mbar_arrive_expect(bar, (words ? (uint32_t)((packed ? rows : RT) * row_bytes) : bytes) + aux);
        }
        __syncwarp();
        if (packed) {
            if (lane == 0)
                bulk_copy_hint(dst, a.w + o0 * row_bytes, (uint32_t)(rows * row_bytes), bar, pol);
        } else if (lane < RT) {
            bulk_copy_hint(dst + (size_t)lane * row_slot, a.w + w_row(i, lane) * a.w_stride - (leads >> 4 * lane & 15u),
                           span(lane), bar, pol);
        }
        if (MLX && lane < 2 * RT) {
            const int r = lane % RT;
            const bool bias = lane >= RT;
            const int64_t o = o0 + (r < rows ? r : rows - 1);
            bulk_copy_hint(dst + (size_t)RT * row_slot + (size_t)(bias ? RT + r : r) * m.srow,
                           bias ? m.b + o * m.b_stride : m.s + o * m.s_stride, (uint32_t)m.srow, bar, pol);
        }
    };
    if (warp == 0) { // the producer: the first tiles, then results of tile i and its stage's next
        // The first `pre` tiles' weights go out before the previous kernel ends; the other stages'
        // only once the computing warps have issued x's loads (barrier 2), which would otherwise
        // queue behind every stage's bytes (bench/NOTES.md, sessions 28 and 30)
        const int64_t first = stages < my_tiles ? stages : my_tiles;
        for (int64_t i = 0; i < pre && i < first; i++)
            issue(i);
        wait_for_previous_kernel();
        allow_next_kernel(); // after the wait: no third kernel launched while the previous one runs
        asm volatile("bar.sync 2, %0;" ::"r"((int)blockDim.x) : "memory");
        // the stages under x's staging area (stage xstage on) once the computing warps hold x
        const int64_t mid = xstage >= 0 && xstage < first ? xstage : first;
        for (int64_t i = pre; i < mid; i++)
            issue(i);
        if (xstage >= 0)
            asm volatile("bar.sync 4, %0;" ::"r"((int)blockDim.x) : "memory");
        for (int64_t i = mid; i < first; i++)
            issue(i);
        int s = 0; // tile i's stage i % stages, and ph its barriers' phase (i / stages) % 2
        uint32_t ph = 0;
        for (int64_t i = 0; i < my_tiles; i++) {
            mbar_wait(&empty[s], ph);
            const int64_t o = (blockIdx.x + i * gridDim.x) * outs + lane;
            if (lane < outs && o < n_out) {
                float g = 0.f, u = 0.f;
                for (int w = 0; w < cwarps; w++) {
                    g += part[(s * cwarps + w) * RT + lane];
                    u += a.glu ? part[(s * cwarps + w) * RT + lane + outs] : 0.f;
                }
                store_out(a, 0, o, g, u);
            }
            __syncwarp(); // part[s] read before its next tile can land
            if (i + stages < my_tiles)
                issue(i + stages);
            if (++s == stages)
                s = 0, ph ^= 1;
        }
        return;
    }
    // the computing warps stage x among themselves (barriers of warps 1.., not the producer's)
    wait_for_previous_kernel();
    allow_next_kernel();

    // x: this thread's piece, normalized when the norm is fused
    const bool active = piece >= 0 && piece < pieces;
    const int64_t k0 = (int64_t)piece * PE;
    const int pc = active ? piece : 0;
    const uint32_t poff = piece_offset<WT>(pc);
    const char *xr = mlxn_rows_ptr(&a.x, 0);
    float x[PE];
    static_assert(PE == 32, "stage_x moves pieces of 32 floats");
    if (xstage >= 0) {
        stage_x(a, reinterpret_cast<float4 *>(ring + xoff), dred, piece_of, pieces, x);
    } else {
        if (active && a.x_dtype == MLXN_DTYPE_F32 && ((uintptr_t)xr & 15) == 0) {
#pragma unroll
            for (int j = 0; j < PE; j += 4) {
                const float4 v = *reinterpret_cast<const float4 *>(xr + 4 * (k0 + j));
                x[j] = v.x, x[j + 1] = v.y, x[j + 2] = v.z, x[j + 3] = v.w;
            }
        } else {
#pragma unroll
            for (int j = 0; j < PE; j++)
                x[j] = active ? load_any(a.x_dtype, xr, k0 + j) : 0.f;
        }
        // x's loads are out: the producer may request the rest of the ring, whose bytes then come
        // behind them (waiting until x had landed left the memory idle: bench/NOTES.md session 30)
        asm volatile("bar.arrive 2, %0;" ::"r"((int)blockDim.x) : "memory");
        if (a.norm_w) {
            double ss = 0.0;
#pragma unroll
            for (int j = 0; j < PE; j++)
                ss += (double)x[j] * x[j];
            ss = block_reduce(ss, dred, 0.0, add_op(), 1);
            const float inv = norm_scale(a, ss);
#pragma unroll
            for (int j = 0; j < PE; j++)
                x[j] = active ? x[j] * inv * __ldg(a.norm_w + k0 + j) : 0.f;
        }
    }
    const xint xi = make_xint<WT>(x);
    const uint32_t sgoff = MLX ? (uint32_t)(PE * pc / m.group) * 2 : 0; // the piece's scale in a row of them

    int s = 0; // as the producer's
    uint32_t ph = 0;
    for (int64_t i = 0; i < my_tiles; i++) {
        mbar_wait(&full[s], ph);
        const uint32_t leads = leads_of(i);
        float acc[RT];
#pragma unroll
        for (int r = 0; r < RT; r++) { // inactive threads (past the last piece) read piece 0
            const uint32_t off = (uint32_t)(s * stage_bytes + r * row_slot) + (leads >> 4 * r & 15u) + poff;
            float v;
            if constexpr (MLX) {
                const uint32_t soff = (uint32_t)(s * stage_bytes + RT * row_slot + r * m.srow) + sgoff;
                v = mlx_dot<WT>(ring, off, soff, soff + RT * m.srow, m.bf16, xi);
            } else {
                v = piece_dot<WT>(ring, off, pc, xi);
            }
            acc[r] = active ? v : 0.f;
        }
        // transposed warp reduction: each step halves the rows a lane holds (it keeps the lower
        // or upper half by its lane bit and adds the partner's), then plain sums; lane
        // r * (32 / RT) ends with row r
        int n = RT, o = 16;
#pragma unroll
        for (; n > 1; n >>= 1, o >>= 1) {
            const bool hi = lane & o;
#pragma unroll
            for (int j = 0; j < n / 2; j++) {
                const float keep = hi ? acc[j + n / 2] : acc[j], send = hi ? acc[j] : acc[j + n / 2];
                acc[j] = keep + __shfl_xor_sync(0xffffffffu, send, o);
            }
        }
#pragma unroll
        for (; o > 0; o >>= 1)
            acc[0] += __shfl_xor_sync(0xffffffffu, acc[0], o);
        if ((lane & (32 / RT - 1)) == 0)
            part[(s * cwarps + warp - 1) * RT + lane / (32 / RT)] = acc[0];
        __syncwarp();
        if (lane == 0)
            mbar_arrive(&empty[s]); // done with stage s; the partial sums are in
        if (++s == stages)
            s = 0, ph ^= 1;
    }
}

// A launch's ring: its stages, the tiles requested before the PDL wait (pre), x's staging area
// (xstage: the first stage beneath it, stages where it lies past the ring, -1 where x is not
// staged; xoff: its byte offset), the dynamic shared memory and the blocks an SM with it.
struct ring_plan {
    int stages, pre, xstage, xoff, part_off, per_sm, sms;
    int64_t dyn;
};

// What a plan depends on besides the kernel: the occupancy and attribute queries behind one took
// a few microseconds of host time a launch, about what a small decode call takes on the device
// (bench/NOTES.md session 46), so plans are kept per kernel.
struct plan_key {
    int dev;
    int64_t threads, row_slot, aux; // shape_of's
    bool xok, short_k;              // x staged (f32 in 16-byte words), K under 4096
    bool operator==(const plan_key &o) const
    {
        return dev == o.dev && threads == o.threads && row_slot == o.row_slot && aux == o.aux && xok == o.xok &&
               short_k == o.short_k;
    }
};

// The ring of qmm_stream<WT, RT, UA>: as many stages as the shared memory leaves to the blocks the
// registers allow per SM.
template <int WT, int RT, bool UA> cudaError_t find_plan(const plan_key &k, ring_plan &p)
{
    static unsigned long long smem_done;
    auto kernel = qmm_stream<WT, RT, UA>;
    const int64_t threads = k.threads, stage = RT * (k.row_slot + k.aux);
    const int64_t pstage = stage + (threads - 32) / 32 * RT * 4; // and the computing warps' partial sums (part)
    int sms = 0, sm_smem = 0, per_sm = 0;
    cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, k.dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&sm_smem, cudaDevAttrMaxSharedMemoryPerMultiprocessor, k.dev);
    if (e == cudaSuccess)
        e = allow_smem(kernel, ring_limit<WT>, smem_done);
    if (e == cudaSuccess)
        e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, (int)threads, (size_t)(2 * pstage + 16));
    cudaFuncAttributes fa = {};
    int reserved = 0;
    if (e == cudaSuccess)
        e = cudaFuncGetAttributes(&fa, kernel);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, k.dev);
    if (e != cudaSuccess)
        return e;
    per_sm = per_sm > 0 ? per_sm : 1;
    // a block's share of the SM's shared memory, less its static and reserved shared memory
    const int64_t share = sm_smem / per_sm - (int64_t)fa.sharedSizeBytes - reserved - 16;
    int64_t stages = share / pstage;
    stages = stages < 2 ? 2 : stages > MAX_STAGES ? MAX_STAGES : stages;
    while (stages > 2 && stages * pstage + 16 > ring_limit<WT>)
        stages--;
    // x staged (stage_x) where x and norm_w are f32 in 16-byte words: past the ring where the
    // share holds it beside the ring's stages, else in the ring's last stages, requested once x is
    // read (fewer stages cost more than a stage requested late: bench/NOTES.md session 31)
    const int64_t xb = (threads - 32) * 128; // 4 KB a computing warp
    const bool xout = k.xok && stages * pstage + xb <= share && stages * pstage + 16 + xb <= ring_limit<WT>;
    p.dyn = stages * pstage + 16 + (xout ? xb : 0);
    // the grid: the blocks that fit at once with those stages (fewer than per_sm where two stages
    // do not fit the share), so that no block waits for another to end
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, (int)threads, (size_t)p.dyn);
    if (e != cudaSuccess)
        return e;
    p.per_sm = per_sm > 0 ? per_sm : 1;
    p.sms = sms;
    p.stages = (int)stages;
    // tiles issued before the PDL wait: two stages where an SM's blocks request no more than 60%
    // of its shared memory that way, else one (by format: product_bound, two_early). Rows shorter
    // than 4096 (small models' steps, not measured this way yet) issue every stage early as before.
    p.pre = 1;
    if (k.short_k)
        p.pre = (int)stages;
    else if (!product_bound<WT> && (two_early<WT> || 2 * p.per_sm * stage <= (int64_t)sm_smem * 6 / 10))
        p.pre = 2;
    // part right after the ring: the kernels but Q6_K's form this same offset themselves (qmm_stream's
    // part: taken from the argument it cost them 1.5-2.3 points), so the two must stay alike
    p.xstage = -1, p.xoff = 0, p.part_off = (int)(stages * stage + 16);
    if (xout) {
        p.xstage = (int)stages, p.xoff = (int)(stages * pstage + 16);
    } else if (k.xok && stages * stage - xb >= p.pre * stage) {
        p.xoff = (int)(stages * stage - xb), p.xstage = p.xoff / (int)stage;
    }
    // x_past_ring: x's staging area from 16 bytes into a stage (the stage before it may read a word
    // past its last row), running past the ring into the shared memory left under the limit, where
    // that leaves more stages before it, up to four (bench/NOTES.md sessions 49-51); part then
    // follows it
    if (x_past_ring<WT> && !xout && k.xok && p.per_sm == 1 && threads >= 32 + 14 * 32) {
        const int64_t parts = stages * (pstage - stage);
        for (int64_t j = stages - 1 < 4 ? stages - 1 : 4; j > p.xstage && j >= p.pre; j--) {
            const int64_t xend = j * stage + 16 + xb, end = xend > stages * stage ? xend : stages * stage;
            if (end + parts <= share && end + 16 + parts <= ring_limit<WT>) {
                p.xstage = (int)j, p.xoff = (int)(j * stage + 16), p.part_off = (int)(end + 16);
                p.dyn = end + 16 + parts;
                break;
            }
        }
    }
    return cudaSuccess;
}

// find_plan's plans, kept per kernel (a model's products take a few shapes each)
template <int WT, int RT, bool UA> cudaError_t plan_of(const plan_key &k, ring_plan &p)
{
    static std::mutex mu;
    static plan_key keys[16];
    static ring_plan plans[16];
    static int n = 0;
    {
        std::lock_guard<std::mutex> lock(mu);
        for (int i = 0; i < n; i++)
            if (keys[i] == k) {
                p = plans[i];
                return cudaSuccess;
            }
    }
    const cudaError_t e = find_plan<WT, RT, UA>(k, p);
    if (e == cudaSuccess) {
        std::lock_guard<std::mutex> lock(mu);
        if (n < 16)
            keys[n] = k, plans[n] = p, n++;
    }
    return e;
}

// A product's launch shape: the block's threads (the producer warp and a thread a piece, in whole
// warp pairs where pieces pair up), a row's bytes (codes; MLX: + aux, its scales and biases) and
// its slot in a stage: the row's bytes, or where a row is not whole 16-byte words where it lies
// (W is 16-byte aligned), the words that can hold it (a word more, rounded up)
struct stream_shape {
    int64_t threads, row_bytes, aux, row_slot;
};

template <int WT> stream_shape shape_of(const mlxn_qmatmul_args &a, const mlx_rows &m)
{
    using F = piece_fmt<WT>;
    const int64_t pieces = a.K / F::PE, per = paired_pieces<WT> ? 64 : 32, row_bytes = a.K / F::BE * F::BB;
    const bool words = row_bytes % 16 == 0 && a.w_stride % 16 == 0;
    return {32 + (pieces + per - 1) / per * per, row_bytes, F::MLX ? 2 * m.srow : 0,
            words ? row_bytes : (row_bytes + 15) / 16 * 16 + 16};
}

// Whether the kernel takes the product a (K up to MAX_PIECES pieces), but for the device's
// compute capability. Rows not whole 16-byte words (GGML formats only) are read as the words that
// hold them, so the last row's last word must end within W: W's end on the 16-byte grid (end: the
// end of W's last row, past this product's part of K). Their blocks then lie in the stage as
// aligned as in W: at least as the piece_dot loads need (the largest power of two up to 16 that
// divides a block's bytes), where the row stride keeps it.
template <int WT> bool stream_takes(const mlxn_qmatmul_args &a, const mlx_rows &m, const uint8_t *end)
{
    using F = piece_fmt<WT>;
    const stream_shape h = shape_of<WT>(a, m);
    constexpr int align = F::BB % 16 == 0 ? 16 : F::BB % 8 == 0 ? 8 : F::BB % 4 == 0 ? 4 : 2;
    const bool words = h.row_slot == h.row_bytes;
    const bool in_words = !F::MLX && a.w_stride % align == 0 && (uintptr_t)end % 16 == 0;
    // Q6_K from K 4096: Gemma 3's 640 x 2048 down projection was faster alone here but its
    // decode step slower (bench/NOTES.md), so the row kernel keeps the short rows; the
    // formats added after it too (Gemma 3's Q5_0 rows are 640 long), until a model's step
    // has measured them
    constexpr bool short_rows = WT == MLXN_DTYPE_Q4_0 || WT == MLXN_DTYPE_Q4_1 || WT == MLXN_DTYPE_Q8_0 ||
                                WT == MLXN_DTYPE_Q4_K;
    return (short_rows || a.K >= 4096) && a.M == 1 && a.K % piece_fmt<WT>::BE == 0 && h.threads >= 96 &&
           h.threads <= MAX_THREADS && (uintptr_t)a.w % 16 == 0 && (words || in_words) &&
           m.srow % 16 == 0 && // (MLX: this part's rows of scales and biases)
           !(a.glu && a.N % 2) && 2 * 4 * (h.row_slot + h.aux) + 16 <= ring_limit<WT>;
}

template <int WT, int RT, bool UA>
cudaError_t launch_tiles(const mlxn_qmatmul_args &a, const mlx_rows &m, const ring_plan &p, const stream_shape &h,
                         cudaStream_t s, bool pdl)
{
    const int64_t outs = a.glu ? RT / 2 : RT, n_out = a.glu ? a.N / 2 : a.N;
    const int64_t tiles = (n_out + outs - 1) / outs, cap = (int64_t)p.sms * p.per_sm;
    return launch(qmm_stream<WT, RT, UA>, dim3((unsigned)(tiles < cap ? tiles : cap)), dim3((unsigned)h.threads),
                  (size_t)p.dyn, s, pdl, a, p.stages, p.pre, (int)h.row_bytes, (int)h.row_slot, m, p.xstage, p.xoff,
                  p.part_off);
}

// The tile rows and the ring of a launch. 8 rows a tile (more work between a warp's reductions)
// when three stages of them fit; 4 for rt4_k4096's formats at K 4096, and where a block is alone
// on its SM (K 14336), where 4-row tiles leave at least four stages before x's staging area: then
// three of them go before the PDL wait, two for the product-bound formats (at K 14336 +1.3 to
// +4.0 points for Q4_0, Q4_K, IQ4_NL, IQ4_XS, Q2_K and MLX 4-bit, and two early instead of three
// another +0.9 to +2.6 for the product-bound ones; the formats with fewer such stages lost up to
// 9: bench/NOTES.md sessions 47 and 48). Other K not measured.
template <int WT, bool UA>
cudaError_t launch_rows(const mlxn_qmatmul_args &a, const mlx_rows &m, const stream_shape &h, cudaStream_t s, bool pdl,
                        int dev)
{
    const bool rt8 = 3 * 8 * (h.row_slot + h.aux) + 16 <= ring_limit<WT> && !(rt4_k4096<WT> && a.K == 4096);
    const bool xok = a.x_dtype == MLXN_DTYPE_F32 && ((uintptr_t)mlxn_rows_ptr(&a.x, 0) & 15) == 0 &&
                     ((uintptr_t)a.norm_w & 15) == 0;
    const plan_key k = {dev, h.threads, h.row_slot, h.aux, xok, a.K < 4096};
    ring_plan p, q;
    cudaError_t e = rt8 ? plan_of<WT, 8, UA>(k, p) : cudaSuccess;
    if (e != cudaSuccess)
        return e;
    if (rt8 && p.per_sm > 1)
        return launch_tiles<WT, 8, UA>(a, m, p, h, s, pdl);
    e = plan_of<WT, 4, UA>(k, q);
    if (e != cudaSuccess)
        return e;
    if (!rt8)
        return launch_tiles<WT, 4, UA>(a, m, q, h, s, pdl);
    if (q.xstage < 4)
        return launch_tiles<WT, 8, UA>(a, m, p, h, s, pdl);
    q.pre = product_bound<WT> ? 2 : 3;
    return launch_tiles<WT, 4, UA>(a, m, q, h, s, pdl);
}

template <int WT> cudaError_t launch_one(const mlxn_qmatmul_args &a, cudaStream_t s, bool pdl, int dev, const mlx_rows &m)
{
    const stream_shape h = shape_of<WT>(a, m);
    using F = piece_fmt<WT>;
    if constexpr (!F::MLX && F::BB % 16 != 0) // the formats whose rows may not be whole words
        if (h.row_slot != h.row_bytes)
            return launch_rows<WT, true>(a, m, h, s, pdl, dev);
    return launch_rows<WT, false>(a, m, h, s, pdl, dev);
}

// Rows longer than MAX_PIECES pieces (Qwen2.5-7B's 18944-long down projection, Llama-3-70B's
// 28672) as that many products over consecutive parts of K, the later ones adding to y: each
// part's rows are strided (a copy a row), its x and scales offset. Not with the fusions that
// need the whole row (the norm's sum, GLU's product of two sums).
template <int WT> bool launch_format(const mlxn_qmatmul_args &a, cudaStream_t s, bool pdl, cudaError_t *e, const mlx_rows &m = {})
{
    using F = piece_fmt<WT>;
    if constexpr (F::PE == 0) {
        return false;
    } else {
        const int64_t max_k = (int64_t)MAX_PIECES * F::PE;
        const int64_t parts = a.K <= max_k ? 1 : (a.K + max_k - 1) / max_k;
        if (parts > 8 || (parts > 1 && (a.norm_w || a.glu || a.M != 1 || a.K % F::BE)))
            return false;
        // a part's length: whole blocks whose bytes are whole 16-byte words (MLX: whole groups
        // whose scales are too), so that every part's rows stay aligned; stream_takes checks the
        // rows of scales again
        int64_t step = F::BE;
        while (step / F::BE * F::BB % 16 || (F::MLX && (step % m.group || step / m.group * 2 % 16)))
            step += F::BE;
        const int64_t len = ((a.K + parts - 1) / parts + step - 1) / step * step;
        const size_t xe = a.x_dtype == MLXN_DTYPE_F32 ? 4 : 2;
        mlxn_qmatmul_args p[8];
        mlx_rows pm[8];
        const uint8_t *w_end = a.w + (a.N - 1) * a.w_stride + a.K / F::BE * F::BB;
        for (int i = 0; i < parts; i++) {
            const int64_t k0 = i * len;
            p[i] = a, pm[i] = m;
            if (parts > 1) {
                p[i].K = a.K - k0 < len ? a.K - k0 : len;
                p[i].x.base += k0 * xe;
                p[i].w += k0 / F::BE * F::BB;
                p[i].accumulate = a.accumulate || i > 0;
                if (F::MLX) {
                    pm[i].s += k0 / m.group * 2, pm[i].b += k0 / m.group * 2;
                    pm[i].srow = (int)(p[i].K / m.group * 2);
                }
            }
            if (p[i].K <= 0 || !stream_takes<WT>(p[i], pm[i], w_end))
                return false;
        }
        int dev = 0;
        bool sm90 = false;
        *e = sm90_device(&dev, &sm90);
        if (*e != cudaSuccess || !sm90)
            return *e != cudaSuccess;
        // with PDL (sm_90) the later parts' first tiles overlap the previous part; they add to y
        // only once it is done (the producer stores after its wait)
        for (int i = 0; i < parts && *e == cudaSuccess; i++)
            *e = launch_one<WT>(p[i], s, pdl, dev, pm[i]);
        return true;
    }
}

} // namespace

extern "C" bool mlxn_cuda_launch_qmatmul_stream(const mlxn_qmatmul_args *a, cudaStream_t s, bool pdl, cudaError_t *e)
{
    switch (a->w_dtype) {
    case MLXN_DTYPE_Q4_0: return launch_format<MLXN_DTYPE_Q4_0>(*a, s, pdl, e);
    case MLXN_DTYPE_Q4_1: return launch_format<MLXN_DTYPE_Q4_1>(*a, s, pdl, e);
    case MLXN_DTYPE_Q5_0: return launch_format<MLXN_DTYPE_Q5_0>(*a, s, pdl, e);
    case MLXN_DTYPE_Q5_1: return launch_format<MLXN_DTYPE_Q5_1>(*a, s, pdl, e);
    case MLXN_DTYPE_Q8_0: return launch_format<MLXN_DTYPE_Q8_0>(*a, s, pdl, e);
    case MLXN_DTYPE_Q2_K: return launch_format<MLXN_DTYPE_Q2_K>(*a, s, pdl, e);
    case MLXN_DTYPE_Q3_K: return launch_format<MLXN_DTYPE_Q3_K>(*a, s, pdl, e);
    case MLXN_DTYPE_Q4_K: return launch_format<MLXN_DTYPE_Q4_K>(*a, s, pdl, e);
    case MLXN_DTYPE_Q5_K: return launch_format<MLXN_DTYPE_Q5_K>(*a, s, pdl, e);
    case MLXN_DTYPE_Q6_K: return launch_format<MLXN_DTYPE_Q6_K>(*a, s, pdl, e);
    case MLXN_DTYPE_IQ4_NL: return launch_format<MLXN_DTYPE_IQ4_NL>(*a, s, pdl, e);
    case MLXN_DTYPE_IQ4_XS: return launch_format<MLXN_DTYPE_IQ4_XS>(*a, s, pdl, e);
    default: return false;
    }
}

// MLX weights, codes in packed rows, f16 or bf16 scales and biases at 16-byte strides (their
// rows whole 16-byte words in each part of K: stream_takes; from K 4096, as the GGML formats
// added after Q4_K: launch_format)
extern "C" bool mlxn_cuda_launch_qmatmul_mlx_stream(const mlxn_qmatmul_mlx_args *a, cudaStream_t s, bool pdl,
                                                    cudaError_t *e)
{
    const int64_t srow = a->K / a->group_size * 2;
    const mlxn_dtype wt = mlxn_mlx_dtype_for_bits(a->bits);
    if (a->M != 1 || wt == MLXN_DTYPE_COUNT || a->w_stride != a->K * a->bits / 8 ||
        (a->s_dtype != MLXN_DTYPE_F16 && a->s_dtype != MLXN_DTYPE_BF16) || a->K % a->group_size ||
        a->s_stride % 16 || a->b_stride % 16 || (uintptr_t)a->scales % 16 || (uintptr_t)a->biases % 16)
        return false;
    mlxn_qmatmul_args g = {};
    g.M = 1, g.N = a->N, g.K = a->K, g.x_dtype = a->x_dtype;
    g.w_dtype = wt;
    g.x = a->x, g.w = a->w, g.w_stride = a->w_stride, g.y = a->y;
    const mlx_rows m = {static_cast<const uint8_t *>(a->scales), static_cast<const uint8_t *>(a->biases), a->s_stride,
                        a->b_stride, a->group_size, (int)srow, a->s_dtype == MLXN_DTYPE_BF16};
    switch (a->bits) {
    case 2: return launch_format<MLXN_DTYPE_MLX_Q2>(g, s, pdl, e, m);
    case 3: return launch_format<MLXN_DTYPE_MLX_Q3>(g, s, pdl, e, m);
    case 4: return launch_format<MLXN_DTYPE_MLX_Q4>(g, s, pdl, e, m);
    case 5: return launch_format<MLXN_DTYPE_MLX_Q5>(g, s, pdl, e, m);
    case 6: return launch_format<MLXN_DTYPE_MLX_Q6>(g, s, pdl, e, m);
    default: return launch_format<MLXN_DTYPE_MLX_Q8>(g, s, pdl, e, m);
    }
}
