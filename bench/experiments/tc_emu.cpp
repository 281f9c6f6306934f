// Runs the tensor-core Q2_K decode path's lane code (src/cuda/piece_mma.cuh) on the host: a thread
// per lane of one warp, its shuffles and mma.sync emulated after PTX's definitions (fragment
// layouts of m16n8k32 with 8-bit operands), against the library's reference dequantizer. Checks
// the index work (planes, pairs, scales, the offset row, the reductions) where no GPU is at hand;
// the GPU test (test_ops qmatmul with MLXN_X_QMM_TC=1) stays the judge.
//   (with bench/experiments/qmm_tc_q2k.patch applied, for src/cuda/piece_mma.cuh)
//   g++ -O1 -std=c++20 -pthread -DMLXN_TC_EMU -I include -I src -I src/cuda -I /usr/local/cuda/include \
//       bench/experiments/tc_emu.cpp build/libmlxn.a -lm -o /tmp/tc_emu && /tmp/tc_emu [seed]
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "core/half.h"
#include "mlxn.h"
#include "mlxn_quant.h"

#define __device__
#define __forceinline__ inline

struct uint4 {
    uint32_t x, y, z, w;
};
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return {x, y, z, w}; }
struct float2 {
    float x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
struct float4 {
    float x, y, z, w;
};

static thread_local unsigned emu_lane;
struct emu_tid_t {
    unsigned x;
};
#define threadIdx (emu_tid_t{emu_lane})

static std::barrier<> *warp_bar;
static uint64_t xch[32];
static void __syncwarp() { warp_bar->arrive_and_wait(); }
template <typename T> static T __shfl_sync(unsigned, T v, int src)
{
    static_assert(sizeof(T) <= 8, "");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    xch[emu_lane] = b;
    warp_bar->arrive_and_wait();
    const uint64_t r = xch[src & 31];
    warp_bar->arrive_and_wait();
    T o;
    memcpy(&o, &r, sizeof o);
    return o;
}
template <typename T> static T __shfl_xor_sync(unsigned m, T v, int o) { return __shfl_sync(m, v, (int)emu_lane ^ o); }
static uint32_t __umulhi(uint32_t a, uint32_t b) { return (uint32_t)(((uint64_t)a * b) >> 32); }
static uint32_t __byte_perm(uint32_t a, uint32_t b, uint32_t s)
{
    const uint64_t v = (uint64_t)b << 32 | a;
    uint32_t r = 0;
    for (int i = 0; i < 4; i++)
        r |= (uint32_t)(v >> (8 * ((s >> (4 * i)) & 7)) & 0xFF) << (8 * i);
    return r;
}
static int __float2int_rn(float x) { return (int)std::nearbyint(x); } // round to nearest even
static int __float_as_int(float f) { return (int)mlxn_f32_bits(f); }
static float __int_as_float(int i) { return mlxn_bits_f32((uint32_t)i); }

// mma.sync.m16n8k32 s8 x u8 -> s32: a lane's a0..a3 (A 16x32 row-major: a0 row g k 4t.., a1 row
// g + 8, a2 row g k 16 + 4t.., a3 row g + 8), b0, b1 (B 32x8: column g, k 4t.. / 16 + 4t..), c0..c3
// (C: row g columns 2t, 2t + 1, then row g + 8)
static uint32_t xa[32][4], xb[32][2];
static void emu_mma_s8u8(int (&c)[4], const uint4 &a, uint32_t b0, uint32_t b1)
{
    const int lane = (int)emu_lane;
    xa[lane][0] = a.x, xa[lane][1] = a.y, xa[lane][2] = a.z, xa[lane][3] = a.w;
    xb[lane][0] = b0, xb[lane][1] = b1;
    warp_bar->arrive_and_wait();
    auto A = [](int m, int k) {
        const int g = m % 8, hi = m / 8, t = (k % 16) / 4, reg = (k / 16) * 2 + hi;
        return (int)(int8_t)(xa[4 * g + t][reg] >> (8 * (k % 4)));
    };
    auto B = [](int k, int n) {
        const int t = (k % 16) / 4;
        return (int)(uint8_t)(xb[4 * n + t][k / 16] >> (8 * (k % 4)));
    };
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; i++) {
        const int m = g + 8 * (i / 2), n = 2 * t + i % 2;
        int s = 0;
        for (int k = 0; k < 32; k++)
            s += A(m, k) * B(k, n);
        c[i] += s;
    }
    warp_bar->arrive_and_wait();
}

namespace mlxn_cuda {
static float pow2f(int e) { return __int_as_float((e + 127) << 23); }
static float scale2(float x, int k)
{
    const int h = k >> 1;
    return x * pow2f(h) * pow2f(k - h);
}
static float fmax_nan(float a, float b) { return std::isnan(a) || std::isnan(b) ? NAN : a > b ? a : b; }
static float half_at(const uint8_t *ring, uint32_t off)
{
    uint16_t h;
    memcpy(&h, ring + off, 2);
    return mlxn_f16_to_f32(h);
}
} // namespace mlxn_cuda

#include "piece_mma.cuh"

using namespace mlxn_cuda;

// One tile: 8 rows of K elements (nsb super-blocks, at most 4) of Q2_K, x as given; y from the
// lanes' code, ref and bound from the reference dequantizer in f64.
static int run(std::mt19937 &rng, int nsb, int mode, const char *name)
{
    const int K = 256 * nsb, row_bytes = 84 * nsb;
    std::vector<uint8_t> w(8 * row_bytes);
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto &b : w)
        b = (uint8_t)byte(rng);
    std::uniform_real_distribution<float> dm(0.0005f, 0.05f);
    for (int r = 0; r < 8; r++)
        for (int j = 0; j < nsb; j++) { // d and dmin: finite, of a trained model's size
            const float v[2] = {dm(rng), dm(rng)};
            for (int i = 0; i < 2; i++) {
                const uint16_t h = mlxn_f32_to_f16(v[i]);
                memcpy(&w[r * row_bytes + 84 * j + 80 + 2 * i], &h, 2);
            }
        }
    std::vector<float> x(K);
    std::normal_distribution<float> nd(0.f, 1.f);
    // uneven: as the harness's x_uneven, plain blocks among the zero and the uneven ones (without
    // them, a row whose weight at the 1e3 element is 0 has a bound of ~1e-9 and both this path and
    // the integer path's miss it: the tiny elements beside a large one round to a few steps)
    for (int k = 0; k < K; k++) {
        const int blk = k / 256;
        x[k] = mode == 0   ? nd(rng)
               : mode == 1 ? nd(rng) * 1e30f
               : mode == 2 ? nd(rng) * 1e-36f
               : mode == 3 ? (blk % 3 == 1 ? 0.f : blk % 3 == 2 ? (k % 256 == 7 ? 1e3f : 1e-6f * nd(rng)) : nd(rng))
               : mode == 4 ? nd(rng) * (float)std::ldexp(1.0, (k / 32) % 7 * 9 - 30) // pieces far apart
               : k == K / 2 ? (mode == 5 ? INFINITY : NAN)
                           : nd(rng);
    }
    std::vector<float> wf(8 * (size_t)K);
    for (int r = 0; r < 8; r++)
        if (mlxn_ggml_dequantize(MLXN_DTYPE_Q2_K, &w[r * row_bytes], K, &wf[(size_t)r * K]) != MLXN_STATUS_OK)
            return 1;
    // the ring: the 8 rows at stage 0, then the warp's planes and sums
    const uint32_t planes = (uint32_t)(8 * row_bytes + 16 + 15) / 16 * 16;
    std::vector<uint8_t> ring(planes + TC_PLANES + TC_SUMS, 0xCD);
    memcpy(ring.data(), w.data(), w.size());
    float y[8];
    for (float &v : y)
        v = NAN;
    std::barrier<> bar(32);
    warp_bar = &bar;
    std::vector<std::thread> lanes;
    for (int l = 0; l < 32; l++)
        lanes.emplace_back([&, l] {
            emu_lane = (unsigned)l;
            float xl[32];
            for (int e = 0; e < 32; e++)
                xl[e] = 32 * l + e < K ? x[32 * l + e] : 0.f;
            tc_stage(xl, ring.data() + planes, reinterpret_cast<float *>(ring.data() + planes + TC_PLANES));
            uint32_t pb;
            float wg;
            uint4 a;
            tc_lane_init(planes, pb, wg, a);
            const int g = l >> 2, t = l & 3;
            auto row_at = [&](int r) { return (uint32_t)(r * row_bytes); };
            const float v = tc_q2k_tile(ring.data(), row_at(g), row_at(2 * t), row_at(2 * t + 1), pb,
                                        reinterpret_cast<const float *>(ring.data() + planes + TC_PLANES), nsb, wg, a);
            if (t == g >> 1)
                y[g] = v;
        });
    for (auto &th : lanes)
        th.join();
    int bad = 0;
    for (int r = 0; r < 8; r++) {
        double ref = 0, bound = 0;
        for (int k = 0; k < K; k++) {
            ref += (double)x[k] * wf[(size_t)r * K + k];
            bound += std::fabs((double)x[k] * wf[(size_t)r * K + k]);
        }
        const double err = std::fabs(y[r] - ref);
        const bool ok = err <= 1e-5 * bound + 1e-300 || (!std::isfinite(ref) && !std::isfinite(y[r]));
        bad += !ok;
        if (!ok || r == 0)
            printf("%-10s nsb %d row %d: y %.9g ref %.9g err/bound %.3g %s\n", name, nsb, r, y[r], ref, err / bound,
                   ok ? "ok" : "FAIL");
    }
    return bad;
}

int main(int argc, char **argv)
{
    const unsigned seed = argc > 1 ? (unsigned)atoi(argv[1]) : (unsigned)time(nullptr);
    printf("seed %u\n", seed);
    std::mt19937 rng(seed);
    const char *names[] = {"normal", "1e30", "1e-36", "uneven", "spread", "inf", "nan"};
    int bad = 0;
    for (int mode = 0; mode < 7; mode++)
        for (int nsb = 1; nsb <= 4; nsb++)
            bad += run(rng, nsb, mode, names[mode]);
    printf("%s: %d rows failed\n", bad ? "FAIL" : "PASS", bad);
    return bad != 0;
}
