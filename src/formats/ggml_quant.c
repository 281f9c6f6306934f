/* Reference dequantize (every GGML format with a kernel; decoders in ggml_decode.h) and
 * quantize (every one of those formats) for GGML blocks.
 *
 * Dequantize of every format and quantize of Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 are bit-exact with
 * the gguf Python package's numpy code, which is bit-exact with ggml's reference C. Compiled
 * with -ffp-contract=off: each product and sum is rounded to f32 on its own, in numpy's order
 * (a fused multiply-add would round once).
 *
 * Quantize of Q2_K..Q6_K, IQ4_NL and IQ4_XS is our own and NOT bit-exact with ggml (gguf-py
 * has no quantizer for them, so there is nothing to match): ggml searches candidate scales for
 * the least weighted squared error; we fit each sub-block's range directly and round the
 * sub-block scale and minimum codes up, never to nearest, so the decoded grid always covers
 * the sub-block and every value is within half a step of the sub-block's (slightly enlarged)
 * scale. The blocks are valid GGML blocks that ggml decodes to the same values. */
#include <math.h>
#include <string.h>

#include "core/half.h"
#include "core/internal.h"
#include "ggml_decode.h"
#include "ggml_encode.h"
#include "mlxn_quant.h"

typedef struct ggml_codec {
    mlxn_dtype type;
    void (*quantize)(const float *x, void *block); /* one block of the type's element count */
} ggml_codec;

/* Quantize (the 32-element formats), in numpy's order of operations. */

/* The element of largest magnitude, the first one on ties (numpy argmax). */
static float absmax_signed(const float *x)
{
    int imax = 0;
    for (int j = 1; j < 32; j++)
        if (fabsf(x[j]) > fabsf(x[imax]))
            imax = j;
    return x[imax];
}

static void min_max(const float *x, float *mn, float *mx)
{
    *mn = *mx = x[0];
    for (int j = 1; j < 32; j++) {
        *mn = x[j] < *mn ? x[j] : *mn;
        *mx = x[j] > *mx ? x[j] : *mx;
    }
}

/* trunc(v) as numpy's float -> uint8 cast then clip(0, hi) */
static int code_of(float v, int hi)
{
    const int q = (int)truncf(v);
    return q < 0 ? 0 : q > hi ? hi : q;
}

static void q5_high_bits(const int *q, uint8_t *qh)
{
    uint32_t h = 0;
    for (int j = 0; j < 32; j++)
        h |= (uint32_t)(q[j] >> 4 & 1) << j;
    for (int i = 0; i < 4; i++)
        qh[i] = (uint8_t)(h >> (8 * i));
}

static void quant_q4_0(const float *x, void *out)
{
    mlxn_block_q4_0 *b = out;
    const float d = absmax_signed(x) / -8.0f, id = d == 0.0f ? 0.0f : 1.0f / d;
    int q[32];
    for (int j = 0; j < 32; j++)
        q[j] = code_of(x[j] * id + 8.5f, 15);
    b->d = mlxn_f32_to_f16(d);
    for (int j = 0; j < 16; j++)
        b->qs[j] = (uint8_t)(q[j] | q[j + 16] << 4);
}

static void quant_q4_1(const float *x, void *out)
{
    mlxn_block_q4_1 *b = out;
    float mn, mx;
    min_max(x, &mn, &mx);
    const float d = (mx - mn) / 15.0f, id = d == 0.0f ? 0.0f : 1.0f / d;
    int q[32];
    for (int j = 0; j < 32; j++)
        q[j] = code_of((x[j] - mn) * id + 0.5f, 15);
    b->d = mlxn_f32_to_f16(d);
    b->m = mlxn_f32_to_f16(mn);
    for (int j = 0; j < 16; j++)
        b->qs[j] = (uint8_t)(q[j] | q[j + 16] << 4);
}

static void quant_q5_0(const float *x, void *out)
{
    mlxn_block_q5_0 *b = out;
    const float d = absmax_signed(x) / -16.0f, id = d == 0.0f ? 0.0f : 1.0f / d;
    int q[32];
    for (int j = 0; j < 32; j++)
        q[j] = code_of(x[j] * id + 16.5f, 31);
    b->d = mlxn_f32_to_f16(d);
    q5_high_bits(q, b->qh);
    for (int j = 0; j < 16; j++)
        b->qs[j] = (uint8_t)((q[j] & 15) | (q[j + 16] & 15) << 4);
}

static void quant_q5_1(const float *x, void *out)
{
    mlxn_block_q5_1 *b = out;
    float mn, mx;
    min_max(x, &mn, &mx);
    const float d = (mx - mn) / 31.0f, id = d == 0.0f ? 0.0f : 1.0f / d;
    int q[32];
    for (int j = 0; j < 32; j++)
        q[j] = code_of((x[j] - mn) * id + 0.5f, 31);
    b->d = mlxn_f32_to_f16(d);
    b->m = mlxn_f32_to_f16(mn);
    q5_high_bits(q, b->qh);
    for (int j = 0; j < 16; j++)
        b->qs[j] = (uint8_t)((q[j] & 15) | (q[j + 16] & 15) << 4);
}

static void quant_q8_0(const float *x, void *out)
{
    mlxn_q8_0_quantize_block(x, out); /* ggml_encode.h: shared with the KV-cache append */
}


/* Quantize (the K and IQ4 formats): own fits, not ggml's search (see the top comment). */

/* v >= 0 as f16, one f16 unit up where round-to-nearest went below v: a super-block scale that
 * never shrinks keeps every sub-block's ceil'd code within its bits. */
static uint16_t f16_at_least(float v)
{
    const uint16_t h = mlxn_f32_to_f16(v);
    return mlxn_f16_to_f32(h) < v ? (uint16_t)(h + 1) : h;
}

/* ceil(v / d) clamped to [0, hi]; 0 where d is 0 (then v is 0 too) */
static int code_up(float v, float d, int hi)
{
    if (d <= 0.0f)
        return 0;
    const float c = ceilf(v / d);
    return c < 0.0f ? 0 : c > (float)hi ? hi : (int)c;
}

static int round_clamp(float v, int lo, int hi)
{
    const float r = rintf(v);
    return r < (float)lo ? lo : r > (float)hi ? hi : (int)r;
}

/* Affine K formats (Q2_K, Q4_K, Q5_K): value = d * sc * q - dmin * m, q in [0, nmax], sc and m
 * codes in [0, cmax]. Sub-block j of len elements gets minimum m_j = max(0, -min x) (the
 * decoder only subtracts), its code rounded up so -dmin * mc <= min x; then scale
 * s_j = (max x + dmin * mc) / nmax, its code rounded up so the grid reaches max x. The error is
 * at most half of d * sc < s_j + d. */
static void fit_affine(const float *x, int nsub, int len, int nmax, int cmax, uint16_t *dh,
                       uint16_t *dminh, int *sc, int *mc, int *q)
{
    float mn[16], mx[16], s[16], mmax = 0.0f, smax = 0.0f;
    for (int j = 0; j < nsub; j++) {
        mn[j] = mx[j] = x[j * len];
        for (int l = 1; l < len; l++) {
            mn[j] = fminf(mn[j], x[j * len + l]);
            mx[j] = fmaxf(mx[j], x[j * len + l]);
        }
        mmax = fmaxf(mmax, -mn[j]);
    }
    *dminh = f16_at_least(mmax / (float)cmax);
    const float dmin = mlxn_f16_to_f32(*dminh);
    for (int j = 0; j < nsub; j++) {
        mc[j] = code_up(-mn[j], dmin, cmax);
        s[j] = fmaxf(0.0f, (mx[j] + dmin * (float)mc[j]) / (float)nmax);
        smax = fmaxf(smax, s[j]);
    }
    *dh = f16_at_least(smax / (float)cmax);
    const float d = mlxn_f16_to_f32(*dh);
    for (int j = 0; j < nsub; j++) {
        sc[j] = code_up(s[j], d, cmax);
        const float dl = d * (float)sc[j], ml = dmin * (float)mc[j];
        for (int l = 0; l < len; l++)
            q[j * len + l] = dl > 0.0f ? round_clamp((x[j * len + l] + ml) / dl, 0, nmax) : 0;
    }
}

/* Symmetric K formats (Q3_K, Q6_K): value = d * sc * q, q in [-qmax - 1, qmax], sc in
 * [0, cmax]. Sub-block j's scale s_j = max |x| / qmax, its code rounded up so no value clips;
 * the error is at most half of d * sc < s_j + d. */
static void fit_symmetric(const float *x, int nsub, int len, int qmax, int cmax, uint16_t *dh,
                          int *sc, int *q)
{
    float s[16], smax = 0.0f;
    for (int j = 0; j < nsub; j++) {
        float amax = 0.0f;
        for (int l = 0; l < len; l++)
            amax = fmaxf(amax, fabsf(x[j * len + l]));
        s[j] = amax / (float)qmax;
        smax = fmaxf(smax, s[j]);
    }
    *dh = f16_at_least(smax / (float)cmax);
    const float d = mlxn_f16_to_f32(*dh);
    for (int j = 0; j < nsub; j++) {
        sc[j] = code_up(s[j], d, cmax);
        const float dl = d * (float)sc[j];
        for (int l = 0; l < len; l++)
            q[j * len + l] = dl > 0.0f ? round_clamp(x[j * len + l] / dl, -qmax - 1, qmax) : 0;
    }
}

/* Q4_K / Q5_K: six-bit scale and min codes of the eight sub-blocks into 12 bytes, the inverse of
 * mlxn_scale_min_k4 */
static void pack_scale_min_k4(const int *sc, const int *m, uint8_t *p)
{
    for (int j = 0; j < 4; j++) {
        p[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        p[j + 4] = (uint8_t)(m[j] | (m[j + 4] >> 4) << 6);
        p[j + 8] = (uint8_t)((sc[j + 4] & 15) | (m[j + 4] & 15) << 4);
    }
}

static void quant_q2_K(const float *x, void *out)
{
    mlxn_block_q2_K *b = out;
    int sc[16], m[16], q[256];
    fit_affine(x, 16, 16, 3, 15, &b->d, &b->dmin, sc, m, q);
    for (int i = 0; i < 16; i++)
        b->scales[i] = (uint8_t)(sc[i] | m[i] << 4);
    memset(b->qs, 0, sizeof b->qs);
    for (int u = 0; u < 8; u++) /* unit u: byte l of row u / 4, bits 2 * (u % 4) */
        for (int l = 0; l < 32; l++)
            b->qs[32 * (u / 4) + l] |= (uint8_t)(q[32 * u + l] << (2 * (u % 4)));
}

static void quant_q3_K(const float *x, void *out)
{
    mlxn_block_q3_K *b = out;
    int sc[16], q[256];
    fit_symmetric(x, 16, 16, 3, 31, &b->d, sc, q);
    memset(b->scales, 0, sizeof b->scales);
    for (int i = 0; i < 16; i++) { /* stored as sc + 32: low nibble, then two high bits */
        const int c = sc[i] + 32;
        b->scales[i % 8] |= (uint8_t)((c & 15) << (4 * (i / 8)));
        b->scales[8 + i % 4] |= (uint8_t)((c >> 4) << (2 * (i / 4)));
    }
    memset(b->qs, 0, sizeof b->qs);
    memset(b->hmask, 0, sizeof b->hmask);
    for (int u = 0; u < 8; u++)
        for (int l = 0; l < 32; l++) { /* q + 4 in [0, 7]: two low bits, the high bit set for q >= 0 */
            const int c = q[32 * u + l] + 4;
            b->qs[32 * (u / 4) + l] |= (uint8_t)((c & 3) << (2 * (u % 4)));
            b->hmask[l] |= (uint8_t)((c >> 2) << u);
        }
}

static void quant_q4_K(const float *x, void *out)
{
    mlxn_block_q4_K *b = out;
    int sc[8], m[8], q[256];
    fit_affine(x, 8, 32, 15, 63, &b->d, &b->dmin, sc, m, q);
    pack_scale_min_k4(sc, m, b->scales);
    for (int r = 0; r < 4; r++) /* row r: units 2r (low nibbles) and 2r + 1 */
        for (int l = 0; l < 32; l++)
            b->qs[32 * r + l] = (uint8_t)(q[64 * r + l] | q[64 * r + 32 + l] << 4);
}

static void quant_q5_K(const float *x, void *out)
{
    mlxn_block_q5_K *b = out;
    int sc[8], m[8], q[256];
    fit_affine(x, 8, 32, 31, 63, &b->d, &b->dmin, sc, m, q);
    pack_scale_min_k4(sc, m, b->scales);
    memset(b->qh, 0, sizeof b->qh);
    for (int r = 0; r < 4; r++)
        for (int l = 0; l < 32; l++)
            b->qs[32 * r + l] = (uint8_t)((q[64 * r + l] & 15) | (q[64 * r + 32 + l] & 15) << 4);
    for (int u = 0; u < 8; u++)
        for (int l = 0; l < 32; l++)
            b->qh[l] |= (uint8_t)((q[32 * u + l] >> 4) << u);
}

static void quant_q6_K(const float *x, void *out)
{
    mlxn_block_q6_K *b = out;
    int sc[16], q[256];
    fit_symmetric(x, 16, 16, 31, 127, &b->d, sc, q);
    for (int i = 0; i < 16; i++)
        b->scales[i] = (int8_t)sc[i];
    memset(b->ql, 0, sizeof b->ql);
    memset(b->qh, 0, sizeof b->qh);
    for (int u = 0; u < 8; u++) { /* half g of the super-block, turn t inside it */
        const int g = u / 4, t = u % 4;
        for (int l = 0; l < 32; l++) {
            const int c = q[32 * u + l] + 32;
            b->ql[64 * g + 32 * (t % 2) + l] |= (uint8_t)((c & 15) << (4 * (t / 2)));
            b->qh[32 * g + l] |= (uint8_t)((c >> 4) << (2 * t));
        }
    }
}

/* IQ4: the nearest code book entry to each x / dl (any of them on a tie); the squared error */
static double iq4_codes(const float *x, float dl, int *q)
{
    double err = 0.0;
    for (int j = 0; j < 32; j++) {
        int best = 0;
        float be = INFINITY;
        for (int c = 0; c < 16; c++) {
            const float e = fabsf(x[j] - dl * (float)mlxn_iq4_value(c));
            if (e < be) {
                be = e;
                best = c;
            }
        }
        q[j] = best;
        err += (double)be * be;
    }
    return err;
}

static float signed_absmax(const float *x, int n)
{
    float v = 0.0f;
    for (int j = 0; j < n; j++)
        v = fabsf(x[j]) > fabsf(v) ? x[j] : v;
    return v;
}

/* IQ4_NL: the code book spans [-127, 113]. Two candidate scales: the largest magnitude on -127
 * (others past 113 clip, at most 14 steps off) or on +113 (none clip, at most half the widest
 * gap, 12 steps); the one of less squared error. |d| rounds up to f16, so neither end moves in. */
static void quant_iq4_nl(const float *x, void *out)
{
    mlxn_block_iq4_nl *b = out;
    const float v = signed_absmax(x, 32);
    int q[2][32];
    uint16_t h[2];
    double err[2];
    for (int c = 0; c < 2; c++) {
        h[c] = f16_at_least(fabsf(v) / (c ? 113.0f : 127.0f));
        if ((v > 0.0f) != (c == 1)) /* the sign that puts v on -127 (c = 0) or +113 (c = 1) */
            h[c] |= 0x8000;
        err[c] = iq4_codes(x, mlxn_f16_to_f32(h[c]), q[c]);
    }
    const int c = err[1] < err[0];
    b->d = h[c];
    for (int j = 0; j < 16; j++)
        b->qs[j] = (uint8_t)(q[c][j] | q[c][j + 16] << 4);
}

/* IQ4_XS: eight sub-blocks of 32 with six-bit signed scales ls - 32 in [-32, 31] of one f16 d.
 * Sub-block j wants |dl| = max |x| / 127 with its largest magnitude on -127; d = the largest of
 * those / 31 (rounded up), the code rounded up in magnitude so nothing moves past -127 or +127:
 * at most 14 steps of dl off (a clip past 113), |dl| < max |x| / 127 + d. */
static void quant_iq4_xs(const float *x, void *out)
{
    mlxn_block_iq4_xs *b = out;
    float v[8], dmax = 0.0f;
    for (int j = 0; j < 8; j++) {
        v[j] = signed_absmax(x + 32 * j, 32);
        dmax = fmaxf(dmax, fabsf(v[j]) / 127.0f);
    }
    b->d = f16_at_least(dmax / 31.0f);
    const float d = mlxn_f16_to_f32(b->d);
    b->scales_h = 0;
    memset(b->scales_l, 0, sizeof b->scales_l);
    for (int j = 0; j < 8; j++) {
        const int mag = code_up(fabsf(v[j]) / 127.0f, d, 31);
        const int ls = (v[j] > 0.0f ? -mag : mag) + 32;
        int q[32];
        iq4_codes(x + 32 * j, d * (float)(ls - 32), q);
        b->scales_l[j / 2] |= (uint8_t)((ls & 15) << (4 * (j % 2)));
        b->scales_h |= (uint16_t)((ls >> 4) << (2 * j));
        for (int l = 0; l < 16; l++)
            b->qs[16 * j + l] = (uint8_t)(q[l] | q[l + 16] << 4);
    }
}

static const ggml_codec codecs[] = {
    {MLXN_DTYPE_Q4_0, quant_q4_0}, {MLXN_DTYPE_Q4_1, quant_q4_1}, {MLXN_DTYPE_Q5_0, quant_q5_0},
    {MLXN_DTYPE_Q5_1, quant_q5_1}, {MLXN_DTYPE_Q8_0, quant_q8_0}, {MLXN_DTYPE_Q2_K, quant_q2_K},
    {MLXN_DTYPE_Q3_K, quant_q3_K}, {MLXN_DTYPE_Q4_K, quant_q4_K}, {MLXN_DTYPE_Q5_K, quant_q5_K},
    {MLXN_DTYPE_Q6_K, quant_q6_K}, {MLXN_DTYPE_IQ4_NL, quant_iq4_nl}, {MLXN_DTYPE_IQ4_XS, quant_iq4_xs},
};

static const ggml_codec *codec_of(mlxn_dtype t, int64_t n, const char *fn, mlxn_status *st)
{
    for (size_t i = 0; i < sizeof codecs / sizeof codecs[0]; i++)
        if (codecs[i].type == t) {
            if (n < 0 || n % mlxn_ggml_block_elems(t)) {
                *st = mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "%lld elements: %s needs a multiple of %d",
                                 (long long)n, mlxn_dtype_name(t), mlxn_ggml_block_elems(t));
                return NULL;
            }
            return &codecs[i];
        }
    *st = mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn, "%s is not a GGML block format mlxn decodes",
                     mlxn_dtype_name(t));
    return NULL;
}

/* One block of any format, aligned for every block struct (Q6_K's 210 bytes are the largest). */
typedef union ggml_block_buf {
    uint8_t bytes[sizeof(mlxn_block_q6_K)];
    mlxn_block_q6_K q6_K;
    mlxn_block_q5_K q5_K;
    uint32_t align;
} ggml_block_buf;

mlxn_status mlxn_ggml_dequantize(mlxn_dtype type, const void *blocks, int64_t n, float *out)
{
    static const char fn[] = "mlxn_ggml_dequantize";
    mlxn_status st = MLXN_STATUS_OK;
    const ggml_codec *c = codec_of(type, n, fn, &st);
    if (!c)
        return st;
    if (n && (!blocks || !out))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "NULL blocks or out");
    /* the decoders read blocks through their structs: blocks at an address the struct's fields
     * do not allow (a cache row at an odd offset, say) are decoded from an aligned copy */
    const bool aligned = (uintptr_t)blocks % 2 == 0;
    const int bb = mlxn_ggml_block_bytes(type);
    int u;
    for (int64_t k = 0; k < n; k += 32) {
        const uint8_t *p = mlxn_ggml_unit_ptr(type, blocks, k, &u);
        if (aligned) {
            mlxn_ggml_unit(type, p, u, out + k);
        } else {
            ggml_block_buf tmp;
            memcpy(tmp.bytes, p, (size_t)bb);
            mlxn_ggml_unit(type, tmp.bytes, u, out + k);
        }
    }
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_ggml_quantize(mlxn_dtype type, const float *x, int64_t n, void *blocks)
{
    static const char fn[] = "mlxn_ggml_quantize";
    mlxn_status st = MLXN_STATUS_OK;
    const ggml_codec *c = codec_of(type, n, fn, &st);
    if (!c)
        return st;
    if (n && (!blocks || !x))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "NULL x or blocks");
    const int be = mlxn_ggml_block_elems(type), bb = mlxn_ggml_block_bytes(type);
    for (int64_t i = 0; i < n / be; i++) { /* through an aligned block: blocks may lie at any address */
        ggml_block_buf tmp;
        c->quantize(x + i * be, tmp.bytes);
        memcpy((uint8_t *)blocks + i * bb, tmp.bytes, (size_t)bb);
    }
    return MLXN_STATUS_OK;
}
