// RoPE on CUDA. A warp works on one token's heads at a time. Within the warp a segment of L
// lanes (a power of two) owns one head row and HS = 32 / L segments take HS heads a step; lane
// sl of a segment owns the same pair items (V pairs each) and pass-through units in every head,
// so its (cos, sin) for those pairs are formed once per unit of S steps and held in registers
// (with the norm outside decode steps, where heads share a warp step or a unit several turns:
// once per unit by the whole warp into a table in shared memory; norm_unit). The pair
// frequencies (f64, independent of the token) are formed once per block in shared memory. The
// items of S steps are all loaded before any is rotated (~128 bytes a lane in flight).
// The angle: frequency and position in f64, reduced to half turns (rope_math.h), then the f32
// sincospif (f32 outputs) or the SFU's sin / cos (16-bit outputs).
//
// Items: 16 bytes of elements from each half (NEOX, V = 16 bytes of elements) or 16 bytes of
// interleaved pairs (NORMAL) where the layout allows, one pair otherwise. A lane holds K items a
// head (K = 1, or 4 for rows of more than L items); longer rows go through the pairs in chunks
// of L * K items, the (cos, sin) of later chunks formed per chunk.
//
// With the per-head RMS norm (Gemma 3, Qwen3) the segment reads its head row into registers
// (the first chunk and the first K pass-through units a lane; the rest, for rows that long, is
// read again from memory: L1 / L2 hits), reduces the sum of squares over the segment's lanes
// by shuffles, then normalizes and rotates from registers. Every element is read before any is
// written by the same lane, so y may be x. Dims past n_rot are copied when y is not x (plain),
// normalized and written (norm). Large calls with the norm go through norm_tokens where their
// heads rotate whole with one position row and 16-byte items (warp tasks of a token's heads,
// below), or, f32 ones it does not take, norm_tiles: the same segments, with the (cos, sin) of a
// tile of rows formed once per block.
#include "../core/rope_math.h"
#include "elementwise.cuh"

namespace {

using namespace mlxn_cuda;

constexpr int WARPS = 4; // warps a block

// Blocks of kernel (threads each, smem bytes of dynamic shared memory) the current device holds
// at once: its SMs times per_sm, which the caller keeps (static) once found (the same on every
// device of the build's one architecture).
template <typename K> cudaError_t resident_blocks(K kernel, int threads, size_t smem, int &per_sm, int64_t *out)
{
    int dev = 0, sms = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess && !per_sm)
        e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem);
    *out = (int64_t)sms * (per_sm > 0 ? per_sm : 1);
    return e;
}

// N contiguous elements; 16-byte accesses when N of them make whole 16-byte words (the
// launcher checks the alignment). STREAM: x read once and not again by this kernel, its 16-byte
// words past L1.
template <bool STREAM = false, typename T, int N> __device__ __forceinline__ void load_n(const T *p, T (&v)[N])
{
    if constexpr (N * sizeof(T) % 16 == 0) {
#pragma unroll
        for (int w = 0; w < (int)(N * sizeof(T) / 16); w++) {
            if constexpr (STREAM) {
                uint4 q;
                asm volatile("ld.global.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                             : "=r"(q.x), "=r"(q.y), "=r"(q.z), "=r"(q.w)
                             : "l"(reinterpret_cast<const uint4 *>(p) + w));
                reinterpret_cast<uint4 *>(v)[w] = q;
            } else {
                reinterpret_cast<uint4 *>(v)[w] = reinterpret_cast<const uint4 *>(p)[w];
            }
        }
    } else {
#pragma unroll
        for (int j = 0; j < N; j++)
            v[j] = p[j];
    }
}

template <typename T, int N> __device__ __forceinline__ void store_n(T *p, const T (&v)[N])
{
    if constexpr (N * sizeof(T) % 16 == 0) {
#pragma unroll
        for (int w = 0; w < (int)(N * sizeof(T) / 16); w++)
            reinterpret_cast<uint4 *>(p)[w] = reinterpret_cast<const uint4 *>(v)[w];
    } else {
#pragma unroll
        for (int j = 0; j < N; j++)
            p[j] = v[j];
    }
}

// ss plus the squares of v, added in order.
template <typename T, int U> __device__ __forceinline__ float squares(const T (&v)[U], float ss = 0.f)
{
    float f[U];
    to_floats(v, f);
#pragma unroll
    for (int j = 0; j < U; j++)
        ss += f[j] * f[j];
    return ss;
}

// The pairs of one item: NEOX reads V elements at i and V at i + n_rot/2, NORMAL 2V
// interleaved elements at 2i.
template <typename T, bool NEOX, int V> struct pair_item {
    static constexpr int NA = NEOX ? V : 2 * V, NB = NEOX ? V : 1;
    T xa[NA], xb[NB];

    template <bool STREAM = false> __device__ __forceinline__ void load(const T *row, int i, int half)
    {
        load_n<STREAM>(row + (NEOX ? i : 2 * i), xa);
        if constexpr (NEOX)
            load_n<STREAM>(row + i + half, xb);
    }

    // Rotated and rounded once to T; with NORM, x * scale * w first in f32 (w: the head's norm
    // weights).
    template <bool NORM>
    __device__ __forceinline__ void rotate_store(T *row, int i, int half, const float2 (&cs)[V], const float *w,
                                                 float scale)
    {
        float wa[NA], wb[NB], fa[NA], fb[NB];
        to_floats(xa, fa);
        if constexpr (NEOX)
            to_floats(xb, fb);
        if constexpr (NORM) {
            load_n(w + (NEOX ? i : 2 * i), wa);
            if constexpr (NEOX)
                load_n(w + i + half, wb);
        }
#pragma unroll
        for (int j = 0; j < V; j++) {
            const float c = cs[j].x, s = cs[j].y;
            float x0 = NEOX ? fa[j] : fa[2 * j], x1 = NEOX ? fb[j] : fa[2 * j + 1];
            if constexpr (NORM) {
                x0 = x0 * scale * (NEOX ? wa[j] : wa[2 * j]);
                x1 = x1 * scale * (NEOX ? wb[j] : wa[2 * j + 1]);
            }
            const T y0 = from_f<T>(x0 * c - x1 * s), y1 = from_f<T>(x0 * s + x1 * c);
            if constexpr (NEOX) {
                xa[j] = y0;
                xb[j] = y1;
            } else {
                xa[2 * j] = y0;
                xa[2 * j + 1] = y1;
            }
        }
        store_n(row + (NEOX ? i : 2 * i), xa);
        if constexpr (NEOX)
            store_n(row + i + half, xb);
    }

    __device__ __forceinline__ float sum_squares() const
    {
        if constexpr (NEOX)
            return squares(xb, squares(xa));
        else
            return squares(xa);
    }
};

// U dims past n_rot: x * scale * w, rounded to T.
template <typename T, int U> __device__ __forceinline__ void norm_store(T *p, T (&v)[U], const float *w, float scale)
{
    float wv[U];
    load_n(w, wv);
#pragma unroll
    for (int j = 0; j < U; j++)
        v[j] = from_f<T>(to_f(v[j]) * scale * wv[j]);
    store_n(p, v);
}

// The norm's scale of a head row from a lane's part ss of its sum of squares, summed over the
// segment's L lanes (aligned groups; every lane of the warp takes part). f32: correctly rounded
// steps (~2e-7 relative on the scale; f64 here cost ~30% of the time); 16-bit outputs: the
// SFU's reciprocal square root (2 ulp).
template <typename T> __device__ __forceinline__ float segment_scale(float ss, int L, const mlxn_rope_args &a)
{
    for (int o = L >> 1; o > 0; o >>= 1)
        ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if constexpr (sizeof(T) == 4)
        return __frsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)a.head_dim), a.norm_eps));
    else
        return rsqrtf(ss * (1.0f / (float)a.head_dim) + a.norm_eps);
}

// How a call is cut: L lanes a head (a power of two, at most 32), so 32 / L heads a warp step;
// a unit is `steps` (S, or 1 when every step of the call fits the resident warps at once: a
// decode step, where a warp's chain of S heads is the latency; with the norm and K == 1 a multiple
// of S, up to a token's, chosen by the rounds of S steps a warp runs one after another: launch_k)
// warp steps of one token's heads, units_per_token of them a token. table: the norm's (cos, sin)
// through the warp's table (norm_unit).
struct rope_plan {
    int L, steps;
    bool table;
    int64_t units_per_token, units;
    bool fast;                  // units < 2^31: the divisions below by fast_div
    fast_div per_token, n_tok; // units a token, tokens a sequence
};

// A window of FREQS pairs' frequencies (f64, the same for every token) and position rows
// (multi-section rope), formed once per block in shared memory. Heads of n_rot > 2 FREQS go
// through their pairs window by window (plain rope); the norm takes the pairs past its first
// window's registers with angles formed where they are used.
constexpr int FREQS = 1024;
struct pair_table {
    double freq[FREQS];
    unsigned char sec[FREQS];
};

__device__ __forceinline__ void fill_table(const mlxn_rope_args &a, bool multi, int w0, pair_table &tab)
{
    for (int k = threadIdx.x; k < FREQS && w0 + k < a.n_rot / 2; k += blockDim.x) {
        tab.freq[k] = mlxn_rope_freq(&a, w0 + k);
        tab.sec[k] = (unsigned char)(multi ? mlxn_rope_section(&a, w0 + k) : 0);
    }
}

// mscale * (cos, sin) of an angle in f64. f32 outputs: rope_math.h's accurate sincospif after
// the f64 reduction. 16-bit outputs: the same reduction, then the SFU's sin / cos (absolute
// error below 2^-21 on [-pi, pi], against the 2^-9 / 2^-12 relative rounding of y), ~35 fewer
// instructions a pair.
template <typename T> __device__ __forceinline__ void cos_sin(double angle, float mscale, float2 &cs)
{
    if constexpr (sizeof(T) == 4) {
        mlxn_rope_cos_sin(angle, mscale, &cs.x, &cs.y);
    } else {
        float sn, c;
        __sincosf(mlxn_rope_half_turns(angle) * 3.14159265358979f, &sn, &c);
        cs = make_float2(c * mscale, sn * mscale);
    }
}

// (cos, sin) of pair k of the table's window (k from its start) for a token at positions p4 (by
// row: multi-section rope reads the pair's row)
template <typename T>
__device__ __forceinline__ void pair_cos_sin(const mlxn_rope_args &a, const pair_table &tab, const int32_t (&p4)[4], int k,
                                             float2 &cs)
{
    const int r = tab.sec[k];
    cos_sin<T>((double)(r == 0 ? p4[0] : r == 1 ? p4[1] : r == 2 ? p4[2] : p4[3]) * tab.freq[k], a.mscale, cs);
}

// (cos, sin) of the V pairs of item e of token (b, t) from the table of the window at pair w0;
// p4: the token's positions by row.
template <typename T, int V>
__device__ __forceinline__ void item_cos_sin(const mlxn_rope_args &a, const pair_table &tab, int w0,
                                             const int32_t (&p4)[4], int e, float2 (&cs)[V])
{
#pragma unroll
    for (int j = 0; j < V; j++)
        pair_cos_sin<T>(a, tab, p4, e * V + j - w0, cs[j]);
}

// The same without a table (the norm's pairs past its registers).
template <typename T, int V>
__device__ __forceinline__ void item_cos_sin_direct(const mlxn_rope_args &a, int64_t b, int64_t t, int e, float2 (&cs)[V])
{
#pragma unroll
    for (int j = 0; j < V; j++)
        cos_sin<T>((double)mlxn_rope_pos(&a, b, t, e * V + j) * mlxn_rope_freq(&a, e * V + j), a.mscale, cs[j]);
}

// Head h of a token's rows (T const for x).
template <typename T> __device__ __forceinline__ T *head_row(const char *tok, const mlxn_rows &r, int64_t h)
{
    return reinterpret_cast<T *>(const_cast<char *>(tok) + h * r.s2);
}

// One unit of work: token (b, t), heads h0 + s HS (s < the plan's steps) below h_end for this
// lane's segment.
struct rope_unit {
    int64_t b, t, h0, h_end;
    const char *xt, *yt; // the token's rows of x and y
    int32_t p4[4];       // its position in each row (one row unless multi-section)
};

__device__ __forceinline__ rope_unit unit_at(const mlxn_rope_args &a, const rope_plan &p, bool multi, int64_t u, int seg)
{
    rope_unit w;
    const int64_t HS = 32 >> (__ffs(p.L) - 1);
    int64_t tok;
    if (p.fast) {
        const uint32_t t32 = p.per_token.div((uint32_t)u), b32 = p.n_tok.div(t32);
        tok = t32;
        w.b = b32;
        w.t = t32 - b32 * p.n_tok.d;
    } else {
        tok = u / p.units_per_token;
        w.b = tok / a.n_tok;
        w.t = tok % a.n_tok;
    }
    w.h0 = (u - tok * p.units_per_token) * p.steps * HS + seg;
    w.h_end = min(a.n_head, w.h0 - seg + p.steps * HS);
    w.xt = a.x.base + w.b * a.x.s0 + w.t * a.x.s1;
    w.yt = a.y.base + w.b * a.y.s0 + w.t * a.y.s1;
#pragma unroll
    for (int r = 0; r < 4; r++)
        w.p4[r] = r == 0 || multi ? reinterpret_cast<const int32_t *>(a.pos + w.b * a.pos_sb + r * a.pos_ss)[w.t] : 0;
    return w;
}

// Plain rope of a unit's items in the table's window [w0, w0 + FREQS) of pairs, in chunks of
// L K items; the pass-through dims with the first window.
template <typename T, bool NEOX, int V, int U, int K, int S>
__device__ __forceinline__ void plain_unit(const mlxn_rope_args &a, const pair_table &tab, int w0, const rope_unit &w,
                                           int L, int lane)
{
    const int HS = 32 / L, sl = lane % L, half = a.n_rot / 2, iph = half / V, chunk = L * K;
    const int c_end = min(iph, (w0 + FREQS) / V);
    for (int c0 = w0 / V; c0 < c_end; c0 += chunk) {
        pair_item<T, NEOX, V> it[S][K];
#pragma unroll
        for (int s = 0; s < S; s++)
#pragma unroll
            for (int k = 0; k < K; k++)
                if (w.h0 + s * HS < w.h_end && c0 + sl + L * k < c_end)
                    it[s][k].load(head_row<const T>(w.xt, a.x, w.h0 + s * HS), (c0 + sl + L * k) * V, half);
#pragma unroll
        for (int k = 0; k < K; k++) {
            const int e = c0 + sl + L * k;
            if (e < c_end) {
                float2 cs[V];
                item_cos_sin<T>(a, tab, w0, w.p4, e, cs);
#pragma unroll
                for (int s = 0; s < S; s++)
                    if (w.h0 + s * HS < w.h_end)
                        it[s][k].template rotate_store<false>(head_row<T>(w.yt, a.y, w.h0 + s * HS), e * V, half, cs,
                                                              nullptr, 1.f);
            }
        }
    }
    if (w0 == 0 && a.n_rot < a.head_dim && a.x.base != a.y.base) { // pass-through dims, unless in place
        const int pu = (int)(a.head_dim - a.n_rot) / U;
        const int64_t hb = w.h0 - lane / L, n = (w.h_end - hb) * pu;
        for (int64_t e = lane; e < n; e += 32) {
            const int64_t h = hb + e / pu, j = a.n_rot + (e % pu) * U;
            T v[U];
            load_n(head_row<const T>(w.xt, a.x, h) + j, v);
            store_n(head_row<T>(w.yt, a.y, h) + j, v);
        }
    }
}

// Per-head RMS norm and rope of a unit, S warp steps at a time (turns, the same count for every
// lane: the shuffles and the table's syncs take the whole warp): the first L K items and L K
// pass-through units of a lane in registers (their pairs inside the first window), the rest read
// again. With `table` (launch_k: K == 1, outside decode steps, where a warp step holds several
// heads or a unit several turns) the (cos, sin) of the unit's pairs are formed once a unit, each
// pair by one lane, into the warp's table wcs (32 V pairs), and each lane reads its V from there
// every turn; so a unit of a token's heads costs a lane n_rot / 64 pairs, where forming its own V
// pairs every S steps cost 3.6 instructions an element (bench/NOTES.md, rope).
template <typename T, bool NEOX, int V, int U, int K, int S>
__device__ __forceinline__ void norm_unit(const mlxn_rope_args &a, const pair_table &tab, const rope_unit &w, int L,
                                          int lane, bool decode, bool table, float2 *wcs)
{
    const int lg = __ffs(L) - 1, HS = 32 >> lg, seg = lane >> lg, sl = lane & (L - 1);
    const int half = a.n_rot / 2, iph = half / V, chunk = L * K, pu = (int)(a.head_dim - a.n_rot) / U;
    // A decode step (a head a warp): (cos, sin) of the lane's items formed while its loads are in
    // flight, where registers allow (more pairs or steps spilled). Longer calls without the table
    // form them after the reduction (before it they cost 63 -> 60% of copy on 4096 tokens).
    constexpr bool EARLY_FITS = K * V <= 4 && S <= 3;
    const bool early = EARLY_FITS && decode;
    float2 cs[EARLY_FITS ? K : 1][V];
    const auto weights = [&](int64_t h) {
        return reinterpret_cast<const float *>(reinterpret_cast<const char *>(a.norm_w) + h * a.norm_w_stride);
    };
    const int64_t hb0 = w.h0 - seg; // the warp's first head
    for (int64_t hb = hb0; hb < w.h_end; hb += S * HS) {
        const int64_t hc = hb + seg; // this segment's first head of the turn
        pair_item<T, NEOX, V> it[S][K];
        T pv[S][K][U];
#pragma unroll
        for (int s = 0; s < S; s++) {
            if (hc + s * HS < w.h_end) {
                const T *x = head_row<const T>(w.xt, a.x, hc + s * HS);
#pragma unroll
                for (int k = 0; k < K; k++) {
                    if (sl + L * k < iph)
                        it[s][k].load(x, (sl + L * k) * V, half);
                    if (sl + L * k < pu)
                        load_n(x + a.n_rot + (sl + L * k) * U, pv[s][k]);
                }
            }
        }
        if (hb == hb0) {
            if (table) {
                __syncwarp(); // the previous unit's reads are done
                for (int k = lane; k < half; k += 32)
                    pair_cos_sin<T>(a, tab, w.p4, k, wcs[k]);
                __syncwarp();
            } else if (early) {
#pragma unroll
                for (int k = 0; k < K; k++)
                    if (sl + L * k < iph)
                        item_cos_sin<T>(a, tab, 0, w.p4, sl + L * k, cs[k]);
            }
        }
        float scale[S];
#pragma unroll
        for (int s = 0; s < S; s++) {
            float ss = 0.f;
            if (hc + s * HS < w.h_end) {
                const T *x = head_row<const T>(w.xt, a.x, hc + s * HS);
#pragma unroll
                for (int k = 0; k < K; k++) {
                    if (sl + L * k < iph)
                        ss += it[s][k].sum_squares();
                    if (sl + L * k < pu)
                        ss += squares(pv[s][k]);
                }
                for (int e = chunk + sl; e < iph; e += L) { // rows longer than the registers hold
                    pair_item<T, NEOX, V> more;
                    more.load(x, e * V, half);
                    ss += more.sum_squares();
                }
                for (int q = chunk + sl; q < pu; q += L) {
                    T v[U];
                    load_n(x + a.n_rot + q * U, v);
                    ss += squares(v);
                }
            }
            scale[s] = segment_scale<T>(ss, L, a);
        }
#pragma unroll
        for (int k = 0; k < K; k++) {
            const int e = sl + L * k;
            if (e < iph) {
                float2(&c)[V] = cs[EARLY_FITS ? k : 0];
                if (table) { // read each turn rather than held in registers (they spilled)
#pragma unroll
                    for (int j = 0; j < V; j++)
                        c[j] = wcs[e * V + j];
                } else if (!early) {
                    item_cos_sin<T>(a, tab, 0, w.p4, e, c);
                }
#pragma unroll
                for (int s = 0; s < S; s++)
                    if (hc + s * HS < w.h_end)
                        it[s][k].template rotate_store<true>(head_row<T>(w.yt, a.y, hc + s * HS), e * V, half, c,
                                                             weights(hc + s * HS), scale[s]);
            }
        }
#pragma unroll
        for (int s = 0; s < S; s++) {
            const int64_t h = hc + s * HS;
            if (h < w.h_end) {
                const T *x = head_row<const T>(w.xt, a.x, h);
                T *y = head_row<T>(w.yt, a.y, h);
                const float *wt = weights(h);
#pragma unroll
                for (int k = 0; k < K; k++) {
                    const int j = a.n_rot + (sl + L * k) * U;
                    if (sl + L * k < pu)
                        norm_store(y + j, pv[s][k], wt + j, scale[s]);
                }
                for (int e = chunk + sl; e < iph; e += L) {
                    float2 c2[V];
                    item_cos_sin_direct<T>(a, w.b, w.t, e, c2);
                    pair_item<T, NEOX, V> more;
                    more.load(x, e * V, half);
                    more.template rotate_store<true>(y, e * V, half, c2, wt, scale[s]);
                }
                for (int q = chunk + sl; q < pu; q += L) {
                    const int j = a.n_rot + q * U;
                    T v[U];
                    load_n(x + j, v);
                    norm_store(y + j, v, wt + j, scale[s]);
                }
            }
        }
        if constexpr (K > 1)
            break; // units of one round of S steps (launch_k): said so, main's code and no spills
    }
}

// V pairs an item, U elements a pass-through unit (16 bytes, or 1), K items a lane a head held
// in registers, S warp steps loaded at once. The items of S steps are all loaded before the
// (cos, sin) of the first is formed, so the trigonometry overlaps the loads. Warps take units
// grid-stride.
template <typename T, bool NEOX, int V, int U, int K, int S, bool NORM>
__global__ void __launch_bounds__(32 * WARPS, 4) rope_rows(const mlxn_rope_args a, const rope_plan p)
{
    __shared__ pair_table tab;
    constexpr int WCS = NORM && K == 1 ? 32 * V : 1; // pairs of a warp's table (norm_unit)
    __shared__ __align__(16) float2 wcs[WARPS][WCS];
    // the table depends on the arguments only: formed while the previous kernel finishes
    const bool multi = mlxn_rope_multi(&a);
    fill_table(a, multi, 0, tab);
    wait_for_previous_kernel();
    allow_next_kernel();
    __syncthreads();
    const int lane = threadIdx.x & 31, seg = lane / p.L;
    const int64_t u0 = (int64_t)blockIdx.x * WARPS + threadIdx.x / 32, n_warps = (int64_t)gridDim.x * WARPS;
    if constexpr (NORM) {
        // K == 1 spelled out (p.table implies it) so that kernels whose wcs is one pair hold no table code
        for (int64_t u = u0; u < p.units; u += n_warps)
            norm_unit<T, NEOX, V, U, K, S>(a, tab, unit_at(a, p, multi, u, seg), p.L, lane, p.steps == 1,
                                           K == 1 && p.table, wcs[threadIdx.x / 32]);
    } else {
        for (int w0 = 0; w0 < a.n_rot / 2; w0 += FREQS) {
            if (w0) { // every warp of the block is done with the previous window
                __syncthreads();
                fill_table(a, multi, w0, tab);
                __syncthreads();
            }
            for (int64_t u = u0; u < p.units; u += n_warps)
                plain_unit<T, NEOX, V, U, K, S>(a, tab, w0, unit_at(a, p, multi, u, seg), p.L, lane);
        }
    }
}

// The per-head norm of calls with more head steps than the resident warps hold at once (prefill),
// on 16-byte items, a head row's items and pass-through units one a lane: persistent blocks of
// TW warps take tiles of R = TW TS 32 / L consecutive head rows (tokens x heads, flattened). A
// lane issues the loads of its TS rows, then the block forms the (cos, sin) of every (token,
// pair) of the tile once into shared memory while they are in flight (one barrier a tile, two
// buffers so the next tile's may be formed while others still read this one), then each segment
// norms, rotates and stores its rows. norm_unit forms them once a unit (a warp's table; per lane
// in decode steps), with f64 work that holds ~100 registers a thread (16 warps an SM). Measured
// on f32 rows; plain rope and 16-bit rows ran slower this way (bench/NOTES.md, rope), so the
// launcher gives it f32 norms only.
constexpr int TW = 8, TS = 4, CS_MAX = 1024; // warps a block, rows a lane a tile, (token, pair)s

struct tile_plan {
    int L, R; // lanes a head row, head rows a tile
    int64_t tiles;
    fast_div heads, n_tok; // head rows a token, tokens a sequence
};

template <typename T, bool NEOX, int V, int U>
__global__ void __launch_bounds__(32 * TW, 3) norm_tiles(const mlxn_rope_args a, const tile_plan p)
{
    __shared__ pair_table tab;
    __shared__ __align__(16) float2 cs[2][CS_MAX];
    const bool multi = mlxn_rope_multi(&a);
    fill_table(a, multi, 0, tab);
    wait_for_previous_kernel();
    allow_next_kernel();
    __syncthreads();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, L = p.L, HS = 32 / L, seg = lane / L, sl = lane % L;
    const int half = a.n_rot / 2, pu = (int)(a.head_dim - a.n_rot) / U;
    const unsigned H = (unsigned)a.n_head, tokens = (unsigned)(a.n_rows / a.n_head);
    // token tok's row of x or y
    const auto tok_row = [&](const mlxn_rows &r, unsigned tok) {
        const unsigned b = p.n_tok.div(tok);
        return r.base + (int64_t)b * r.s0 + (int64_t)(tok - b * p.n_tok.d) * r.s1;
    };
    const bool item = sl < half / V, pass = sl < pu;
    int buf = 0;
    for (int64_t tile = blockIdx.x; tile < p.tiles; tile += gridDim.x, buf ^= 1) {
        const int64_t hr0 = tile * p.R;
        const unsigned tok0 = p.heads.div((unsigned)hr0), off0 = (unsigned)hr0 - tok0 * H;
        pair_item<T, NEOX, V> it[TS];
        T pv[TS][U];
        int loc[TS]; // the row as head rows from token tok0's first; -1: past the call
#pragma unroll
        for (int s = 0; s < TS; s++) {
            const int r = (warp + TW * s) * HS + seg;
            loc[s] = hr0 + r < a.n_rows ? (int)off0 + r : -1;
            if (loc[s] >= 0) {
                const unsigned tt = p.heads.div((unsigned)loc[s]);
                const T *x = head_row<const T>(tok_row(a.x, tok0 + tt), a.x, (unsigned)loc[s] - tt * H);
                if (item)
                    it[s].load(x, sl * V, half);
                if (pass)
                    load_n(x + a.n_rot + sl * U, pv[s]);
            }
        }
        const unsigned last = p.heads.div(off0 + (unsigned)p.R - 1) + tok0; // the tile's last token
        const int span = (int)((last < tokens ? last : tokens - 1) - tok0 + 1);
        for (int i = threadIdx.x; i < span * half; i += 32 * TW) {
            const int q = i / half, k = i - q * half; // one division a (token, pair)
            const unsigned tok = tok0 + (unsigned)q, b = p.n_tok.div(tok);
            const int32_t pos = reinterpret_cast<const int32_t *>(a.pos + (int64_t)b * a.pos_sb +
                                                                  tab.sec[k] * a.pos_ss)[tok - b * p.n_tok.d];
            cos_sin<T>((double)pos * tab.freq[k], a.mscale, cs[buf][i]);
        }
        __syncthreads();
#pragma unroll
        for (int s = 0; s < TS; s++) {
            float ss = 0.f; // every lane takes part in the shuffles
            if (loc[s] >= 0) {
                if (item)
                    ss = it[s].sum_squares();
                if (pass)
                    ss = squares(pv[s], ss);
            }
            const float scale = segment_scale<T>(ss, L, a);
            if (loc[s] < 0)
                continue;
            const unsigned tt = p.heads.div((unsigned)loc[s]), h = (unsigned)loc[s] - tt * H;
            T *y = head_row<T>(tok_row(a.y, tok0 + tt), a.y, h);
            const float *w =
                reinterpret_cast<const float *>(reinterpret_cast<const char *>(a.norm_w) + (int64_t)h * a.norm_w_stride);
            if (item) {
                float2 c[V];
                const float2 *src = &cs[buf][tt * half + sl * V];
#pragma unroll
                for (int j = 0; j < V; j += 2)
                    *reinterpret_cast<float4 *>(&c[j]) = *reinterpret_cast<const float4 *>(&src[j]);
                it[s].template rotate_store<true>(y, sl * V, half, c, w, scale);
            }
            if (pass)
                norm_store(y + a.n_rot + sl * U, pv[s], w + a.n_rot + sl * U, scale);
        }
    }
}

template <typename T, bool NEOX, int V, int U>
cudaError_t launch_tiles(const mlxn_rope_args &a, const tile_plan &p, cudaStream_t s, bool pdl)
{
    auto kernel = norm_tiles<T, NEOX, V, U>;
    static int per_sm = 0;
    int64_t resident = 0;
    const cudaError_t e = resident_blocks(kernel, 32 * TW, 0, per_sm, &resident);
    if (e != cudaSuccess)
        return e;
    return launch(kernel, dim3((unsigned)(p.tiles < resident ? p.tiles : resident)), dim3(32 * TW), 0, s, pdl, a, p);
}

// The per-head norm of prefill-sized calls whose heads rotate whole (n_rot == head_dim), a head's
// items one a lane (K == 1), one position row: a warp task is a token's heads, or for 16-bit rows
// two steps of them. A lane forms the (cos, sin) of its V pairs once a task, while its first loads
// are in flight, and holds them in registers for the task's steps; heads are 32-bit and each
// step's rows one multiply-add from the token's. norm_unit, with 64-bit heads, per-step guards,
// run-time units and the warp's table, spent ~17 instructions an element on a step whose
// arithmetic is ~8 (bench/NOTES.md, rope); it keeps the other layouts and the short calls, where
// a warp a token would leave most warps idle. Plain rope measured slower this way (same notes).
struct token_plan {
    int lg;          // log2 of L, the lanes of a head
    int per;         // warp steps a task: all of a token's for f32 rows, two for 16-bit ones
    fast_div n_tok;  // tokens a sequence
    fast_div parts;  // tasks a token
};

// x is read with loads that skip L1, which keeps the norm's weights there (read again every token)
template <typename T, bool NEOX, int V>
__global__ void __launch_bounds__(32 * WARPS, 8) norm_tokens(const mlxn_rope_args a, const token_plan p)
{
    __shared__ pair_table tab;
    fill_table(a, false, 0, tab);
    wait_for_previous_kernel();
    allow_next_kernel();
    __syncthreads();
    const int lane = threadIdx.x & 31, L = 1 << p.lg, HS = 32 >> p.lg, seg = lane >> p.lg, sl = lane & (L - 1);
    const int half = a.n_rot / 2, H = (int)a.n_head, steps = (H + HS - 1) / HS;
    const bool item = sl < half / V;
    const unsigned tasks = (unsigned)(a.n_rows / a.n_head) * p.parts.d, n_warps = gridDim.x * WARPS;
    constexpr bool AHEAD = sizeof(T) == 4;
    for (unsigned task = blockIdx.x * WARPS + threadIdx.x / 32; task < tasks; task += n_warps) {
        const unsigned tok = p.parts.div(task), b = p.n_tok.div(tok), t = tok - b * p.n_tok.d;
        const int s0 = (int)(task - tok * p.parts.d) * p.per, s1 = min(s0 + p.per, steps); // the task's steps
        const char *xt = a.x.base + (int64_t)b * a.x.s0 + (int64_t)t * a.x.s1;
        const char *yt = a.y.base + (int64_t)b * a.y.s0 + (int64_t)t * a.y.s1;
        // step st's item into it (none past the task's steps; past the heads h >= H for every lane)
        const auto load = [&](int st, pair_item<T, NEOX, V> &it) {
            const int h = st * HS + seg;
            if (item && st < s1 && h < H)
                it.template load<true>(head_row<const T>(xt, a.x, h), sl * V, half);
        };
        float2 cs[V];
        // normed, rotated and stored; every lane runs it for every step (the norm's shuffles)
        const auto rotate = [&](int st, pair_item<T, NEOX, V> &it) {
            const int h = st * HS + seg;
            const bool mine = item && h < H;
            const float scale = segment_scale<T>(mine ? it.sum_squares() : 0.f, L, a);
            if (mine)
                it.template rotate_store<true>(head_row<T>(yt, a.y, h), sl * V, half, cs,
                                               reinterpret_cast<const float *>(reinterpret_cast<const char *>(a.norm_w) +
                                                                               (int64_t)h * a.norm_w_stride),
                                               scale);
        };
        const auto pairs = [&] { // while the first loads are in flight
            if (item) {
                const double pos = reinterpret_cast<const int32_t *>(a.pos + (int64_t)b * a.pos_sb)[t];
#pragma unroll
                for (int j = 0; j < V; j++)
                    cos_sin<T>(pos * tab.freq[sl * V + j], a.mscale, cs[j]);
            }
        };
        pair_item<T, NEOX, V> it0, it1;
        if constexpr (AHEAD) {
            // f32, a task a token: a step's loads in flight while the one before computes
            load(s0, it0);
            pairs();
            for (int st = s0; st < s1; st += 2) {
                load(st + 1, it1);
                rotate(st, it0);
                load(st + 2, it0);
                rotate(st + 1, it1);
            }
        } else {
            // 16-bit rows, whose steps take twice the instructions a byte: a task of two steps, both
            // loaded, then both computed (a task a token took four round trips to DRAM one after
            // another where this takes one: bench/NOTES.md, rope)
            load(s0, it0);
            load(s0 + 1, it1);
            pairs();
            rotate(s0, it0);
            rotate(s0 + 1, it1);
        }
    }
}

template <typename T, bool NEOX, int V>
cudaError_t launch_tokens(const mlxn_rope_args &a, int L, int steps, cudaStream_t s, bool pdl)
{
    auto kernel = norm_tokens<T, NEOX, V>;
    static int per_sm = 0;
    int64_t blocks = 0;
    const cudaError_t e = resident_blocks(kernel, 32 * WARPS, 0, per_sm, &blocks);
    if (e != cudaSuccess)
        return e;
    token_plan p;
    p.lg = __builtin_ctz((unsigned)L);
    p.per = sizeof(T) == 4 ? steps : 2;
    p.n_tok = fast_div((uint32_t)a.n_tok);
    p.parts = fast_div((uint32_t)((steps + p.per - 1) / p.per));
    const int64_t tasks = a.n_rows / a.n_head * p.parts.d, need = (tasks + WARPS - 1) / WARPS;
    return launch(kernel, dim3((unsigned)(need < blocks ? need : blocks)), dim3(32 * WARPS), 0, s, pdl, a, p);
}

// Warp steps loaded at once: ~128 bytes of x a lane in pairs (96 with the norm, which also holds
// pass-through units), at most 8 and at most 16 items: 16 warps an SM then have ~64 KB of loads
// in flight, over twice what the DRAM latency asks for at full bandwidth (~4.2 TB/s x ~0.8 us
// over 132 SMs: ~25 KB). Powers of two (S = 2 or 4 with the norm) measured slower than 3. Plain
// rope of one 16-byte item a lane: as measured on an H100 at 4096 x 32 x 128 (bench/NOTES.md,
// rope), 3 for 16-bit NEOX and f32 NORMAL rows (+2.3 and +3.8 points of copy over 4 and 8), 4 for
// 16-bit NORMAL ones (+2.0 over 8; 3 lost 0.8), f32 NEOX as the bytes give (4; 3 lost 0.3).
template <typename T, bool NEOX, int V, int K, bool NORM> constexpr int steps_at_once()
{
    if (!NORM && K == 1 && V > 1) {
        if (NEOX == (sizeof(T) == 2)) // 16-bit NEOX, f32 NORMAL
            return 3;
        if (!NEOX) // 16-bit NORMAL
            return 4;
    }
    const int bytes = K * 2 * V * (int)sizeof(T), s = (NORM ? 96 : 128) / bytes, cap = 16 / K < 8 ? 16 / K : 8;
    return s < 1 ? 1 : s > cap ? cap : s;
}

template <typename T, bool NEOX, int V, int U, int K, bool NORM>
cudaError_t launch_k(const mlxn_rope_args &a, int L, cudaStream_t s, bool pdl)
{
    constexpr int S = steps_at_once<T, NEOX, V, K, NORM>();
    auto kernel = rope_rows<T, NEOX, V, U, K, S, NORM>;
    static int per_sm = 0;
    int64_t blocks = 0;
    const cudaError_t e = resident_blocks(kernel, 32 * WARPS, 0, per_sm, &blocks);
    if (e != cudaSuccess)
        return e;
    rope_plan p;
    p.L = L;
    const int64_t steps = (a.n_head + 32 / L - 1) / (32 / L), tokens = a.n_rows / a.n_head;
    const int64_t resident = blocks * WARPS; // warps
    // norm_tokens' calls: the norm where the tokens alone fill this kernel's resident warps
    if constexpr (NORM && K == 1 && V > 1) {
        if (tokens >= resident && tokens * ((steps + 1) / 2) < ((int64_t)1 << 31) && a.n_head < ((int64_t)1 << 30) &&
            a.n_rot == a.head_dim && !mlxn_rope_multi(&a)) // 32-bit tasks and heads (heads up to a few steps past n_head)
            return launch_tokens<T, NEOX, V>(a, L, (int)steps, s, pdl);
    }
    // norm_tiles' calls: f32 norms of over twice the steps that fit at once (Gemma 3's 512-token
    // chunk, 1.2 times: 5.9 -> 6.1-6.4 us in tiles; 2048 tokens, 4.8 times: 11.5 -> 10.5-10.8), items
    // one a lane
    if constexpr (K == 1 && V > 1 && NORM && sizeof(T) == 4) {
        const int R = TW * TS * (32 / L); // head rows a tile, spanning at most `span` tokens
        const int64_t pu = (a.head_dim - a.n_rot) / U, span = (R - 1) / (a.n_head < R ? a.n_head : R) + 2;
        if (tokens * steps > 2 * resident && pu <= L && span * (a.n_rot / 2) <= CS_MAX && a.n_rows < ((int64_t)1 << 31) - R) {
            tile_plan tp;
            tp.L = L;
            tp.R = R;
            tp.tiles = (a.n_rows + R - 1) / R;
            tp.heads = fast_div((uint32_t)a.n_head);
            tp.n_tok = fast_div((uint32_t)a.n_tok);
            return launch_tiles<T, NEOX, V, U>(a, tp, s, pdl);
        }
    }
    p.steps = tokens * steps <= resident ? 1 : S; // a warp a head step when they all fit at once
    if (NORM && K == 1 && p.steps > 1) {
        // units of m turns of S steps, a token's at most (norm_unit forms the unit's pairs once): the
        // m with the fewest turns a warp takes one after another, the longest units on ties
        int64_t best = INT64_MAX;
        for (int64_t m = 1; (m - 1) * S < steps; m++) {
            const int64_t units = tokens * ((steps + m * S - 1) / (m * S)), turns = (units + resident - 1) / resident * m;
            if (turns <= best) {
                best = turns;
                p.steps = (int)(m * S);
            }
            if (units <= resident) // one round: longer units only add turns
                break;
        }
    }
    // the warp's table where it saves pairs: a lane of a whole-warp segment (L 32) forms just its
    // own V pairs once a turn without it (Gemma 3's 512 x 5 x 256 f32 took 5.8 -> 6.3 us with it)
    p.table = NORM && K == 1 && p.steps > 1 && (L < 32 || p.steps > S);
    p.units_per_token = (steps + p.steps - 1) / p.steps;
    p.units = tokens * p.units_per_token;
    p.fast = p.units < ((int64_t)1 << 31);
    if (p.fast) {
        p.per_token = fast_div((uint32_t)p.units_per_token);
        p.n_tok = fast_div((uint32_t)a.n_tok);
    }
    // Units are equal work (but a token's last, which may have fewer steps), so every warp takes
    // the same number of rounds of them: as many warps as spread the units evenly over the fewest
    // rounds the resident warps allow.
    const int64_t rounds = (p.units + resident - 1) / resident, warps = (p.units + rounds - 1) / rounds;
    return launch(kernel, dim3((unsigned)((warps + WARPS - 1) / WARPS)), dim3(32 * WARPS), 0, s, pdl, a, p);
}

template <typename T, bool NEOX, int V, int U, bool NORM> cudaError_t launch_v(const mlxn_rope_args &a, cudaStream_t s, bool pdl)
{
    // a segment's lanes: enough for the items of a head (with the norm, its pass-through units too)
    const int64_t iph = a.n_rot / 2 / V, pu = (a.head_dim - a.n_rot) / U, need = NORM && pu > iph ? pu : iph;
    int L = 1;
    while (L < 32 && L < need)
        L *= 2;
    return iph <= L ? launch_k<T, NEOX, V, U, 1, NORM>(a, L, s, pdl) : launch_k<T, NEOX, V, U, 4, NORM>(a, L, s, pdl);
}

template <typename T, bool NORM> cudaError_t launch_t(const mlxn_rope_args &a, cudaStream_t s, bool pdl)
{
    constexpr int E = 16 / sizeof(T); // elements per 16 bytes
    const bool neox = a.style == MLXN_ROPE_NEOX;
    // 16-byte items: NEOX needs E pairs per half, NORMAL E / 2 pairs; whole words past n_rot;
    // norm weights read in 16-byte words too
    const bool vec = a.n_rot % (neox ? 2 * E : E) == 0 && a.head_dim % E == 0 && rows_aligned16(a.x) && rows_aligned16(a.y) &&
                     (!NORM || ((uintptr_t)a.norm_w % 16 == 0 && a.norm_w_stride % 16 == 0));
    if (neox)
        return vec ? launch_v<T, true, E, E, NORM>(a, s, pdl) : launch_v<T, true, 1, 1, NORM>(a, s, pdl);
    return vec ? launch_v<T, false, E / 2, E, NORM>(a, s, pdl) : launch_v<T, false, 1, 1, NORM>(a, s, pdl);
}

template <typename T> cudaError_t launch_norm_or_not(const mlxn_rope_args &a, cudaStream_t s, bool pdl)
{
    return a.norm_w ? launch_t<T, true>(a, s, pdl) : launch_t<T, false>(a, s, pdl);
}

} // namespace

extern "C" cudaError_t mlxn_cuda_launch_rope(const mlxn_rope_args *a, cudaStream_t s, bool pdl)
{
    if (a->n_rows == 0)
        return cudaSuccess;
    switch (a->dtype) {
    case MLXN_DTYPE_F32: return launch_norm_or_not<float>(*a, s, pdl);
    case MLXN_DTYPE_F16: return launch_norm_or_not<__half>(*a, s, pdl);
    case MLXN_DTYPE_BF16: return launch_norm_or_not<__nv_bfloat16>(*a, s, pdl);
    }
    return cudaErrorInvalidValue;
}
