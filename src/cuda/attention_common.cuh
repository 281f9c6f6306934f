// Pieces shared by the CUDA attention kernels (attention.cu: prefill on tensor cores, the
// generic kernel, the merge of key splits; attention_decode.cu: decode).
#ifndef MLXN_CUDA_ATTENTION_COMMON_CUH
#define MLXN_CUDA_ATTENTION_COMMON_CUH

#include "attention_plan.h"
#include "block_reduce.cuh"
#include "common.cuh"

namespace {

using namespace mlxn_cuda;

// ------------------------------------------------------------------ shared pieces

// Positions, query rows and heads are 32-bit in the kernels: the launcher sends calls with S or
// B * Tq * Hq past INT32_MAX nowhere (the backend refuses them), and pos is i32.

__device__ __forceinline__ bool pos_in_range(const mlxn_attention_args &a, int first)
{
    return first >= 0 && (int64_t)first + a.Tq <= a.S;
}

// The keys [lo, hi) visible to query t of a batch row whose first query is at `first` (which
// pos_in_range accepted).
__device__ __forceinline__ void visible_keys(const mlxn_attention_args &a, int first, int t, int &lo, int &hi)
{
    const int p = first + t;
    lo = a.window > 0 && p - a.window + 1 > 0 ? (int)(p - a.window + 1) : 0;
    hi = a.causal ? p + 1 : first + (int)a.Tq;
}

// The mask's row for query t.
__device__ __forceinline__ const float *mask_row(const mlxn_attention_args &a, int t)
{
    return reinterpret_cast<const float *>(reinterpret_cast<const char *>(a.mask) + t * a.mask_stride);
}

// softcap and mask on a scaled logit (__fdividef: no slow-path call for the rare operands
// that need it; 1 / softcap is within 2 ulp)
__device__ __forceinline__ float finish_logit(const mlxn_attention_args &a, float z, int t, int j)
{
    if (a.softcap > 0.0f)
        z = a.softcap * tanhf(z * __fdividef(1.0f, a.softcap));
    if (a.mask)
        z += __ldg(mask_row(a, t) + j);
    return z;
}

__device__ __forceinline__ const char *q_row(const mlxn_attention_args &a, int b, int t, int h)
{
    return a.q.base + b * a.q.s0 + t * a.q.s1 + h * a.q.s2;
}

__device__ __forceinline__ char *o_row(const mlxn_attention_args &a, int b, int t, int h)
{
    return a.o.base + b * a.o.s0 + t * a.o.s1 + h * a.o.s2;
}

// 1 / (softmax denominator) of a row with running max m and sum l, the head's sink included;
// 0 for a row that saw no key (its output is zero). l >= 1 (the max's own term): __fdividef is
// exact to 2 ulp there.
__device__ __forceinline__ float inverse_denominator(const mlxn_attention_args &a, int h, float m, float l)
{
    if (m == -INFINITY)
        return 0.0f;
    if (a.sinks)
        l += expf(__ldg(a.sinks + h) - m);
    return __fdividef(1.0f, l);
}

// 16 bytes holding 16 / sizeof(T) elements, as floats.
template <typename T> __device__ __forceinline__ void unpack16_f32(const uint4 &v, float *out);

template <> __device__ __forceinline__ void unpack16_f32<float>(const uint4 &v, float *out)
{
    out[0] = __uint_as_float(v.x);
    out[1] = __uint_as_float(v.y);
    out[2] = __uint_as_float(v.z);
    out[3] = __uint_as_float(v.w);
}

template <> __device__ __forceinline__ void unpack16_f32<__half>(const uint4 &v, float *out)
{
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&w[i]));
        out[2 * i] = f.x;
        out[2 * i + 1] = f.y;
    }
}

template <> __device__ __forceinline__ void unpack16_f32<__nv_bfloat16>(const uint4 &v, float *out)
{
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        out[2 * i] = __uint_as_float(w[i] << 16);
        out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}

// ------------------------------------------------------------------ tensor cores

// mma.sync m16n8k16 with f32 accumulation on 16-bit operands of type KV, and the packing of
// two floats into one operand register.
template <typename KV> struct Mma;

template <> struct Mma<__nv_bfloat16> {
    static __device__ __forceinline__ void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
    {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    // (lo, hi) rounded to nearest, lo in the low half
    static __device__ __forceinline__ uint32_t pack(float lo, float hi)
    {
        const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<const uint32_t *>(&v);
    }
    static __device__ __forceinline__ __nv_bfloat16 from_f32(float v) { return __float2bfloat16_rn(v); }
};

template <> struct Mma<__half> {
    static __device__ __forceinline__ void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
    {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi)
    {
        const __half2 v = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<const uint32_t *>(&v);
    }
    static __device__ __forceinline__ __half from_f32(float v) { return __float2half_rn(v); }
};

// The transpose of an 8 x 8 matrix of 16-bit elements held a row per 4 lanes (lane 4 i + j: row
// i, columns 2 j and 2 j + 1), into the same layout.
__device__ __forceinline__ uint32_t movmatrix_trans(uint32_t x)
{
    uint32_t y;
    asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
    return y;
}

// x less its f16 rounding: x = f16(x) + f16_rest(x) to ~2^-22 relative (the low part of a split
// into two f16 operands)
__device__ __forceinline__ float f16_rest(float x) { return x - __half2float(__float2half_rn(x)); }

// ------------------------------------------------------------------ q8_0 caches

// A q8_0 cache row is D / 32 blocks of Q8_BLOCK_BYTES (an f16 scale d, then 32 int8 codes c;
// the element is c * d, exact in f32), 2-byte aligned at best: never read with wider loads.
constexpr int Q8_BLOCK_BYTES = 34;

// The f16 scale at p (2-byte aligned), as f32.
__device__ __forceinline__ float q8_scale(const char *p)
{
    return __half2float(__ushort_as_half(__ldg(reinterpret_cast<const unsigned short *>(p))));
}

// The same at any alignment: two byte loads.
__device__ __forceinline__ float q8_scale_bytes(const char *p)
{
    const unsigned char *u = reinterpret_cast<const unsigned char *>(p);
    return __half2float(__ushort_as_half((unsigned short)(__ldg(u) | __ldg(u + 1) << 8)));
}

// Code i % 32 of block i / 32 of a row (any alignment).
__device__ __forceinline__ float q8_code(const char *row, int i)
{
    return (float)__ldg(reinterpret_cast<const signed char *>(row) + (i >> 5) * Q8_BLOCK_BYTES + 2 + (i & 31));
}

unsigned grid_dim(int64_t n, int64_t cap)
{
    return (unsigned)(n < 1 ? 1 : n < cap ? n : cap);
}

} // namespace

#endif
