/* Reference dequantize (every GGML format with a kernel) and quantize (the 32-element formats)
 * for GGML blocks, bit-exact with the gguf Python package's numpy code, which is bit-exact
 * with ggml's reference C. Compiled with -ffp-contract=off: each product and sum is rounded
 * to f32 on its own, in numpy's order (a fused multiply-add would round once). */
#include <math.h>
#include <string.h>

#include "core/half.h"
#include "core/internal.h"
#include "ggml_blocks.h"
#include "mlxn_quant.h"

#define F16(h) mlxn_f16_to_f32(h)

static void deq_q4_0(const mlxn_block_q4_0 *b, float *y)
{
    const float d = F16(b->d);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((b->qs[j] & 15) - 8);
        y[j + 16] = d * (float)((b->qs[j] >> 4) - 8);
    }
}

static void deq_q4_1(const mlxn_block_q4_1 *b, float *y)
{
    const float d = F16(b->d), m = F16(b->m);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(b->qs[j] & 15) + m;
        y[j + 16] = d * (float)(b->qs[j] >> 4) + m;
    }
}

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static void deq_q5_0(const mlxn_block_q5_0 *b, float *y)
{
    const float d = F16(b->d);
    const uint32_t qh = le32(b->qh);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((int)((b->qs[j] & 15) | (qh >> j & 1) << 4) - 16);
        y[j + 16] = d * (float)((int)((b->qs[j] >> 4) | (qh >> (j + 16) & 1) << 4) - 16);
    }
}

static void deq_q5_1(const mlxn_block_q5_1 *b, float *y)
{
    const float d = F16(b->d), m = F16(b->m);
    const uint32_t qh = le32(b->qh);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((b->qs[j] & 15) | ((qh >> j & 1) << 4)) + m;
        y[j + 16] = d * (float)((b->qs[j] >> 4) | ((qh >> (j + 16) & 1) << 4)) + m;
    }
}

static void deq_q8_0(const mlxn_block_q8_0 *b, float *y)
{
    const float d = F16(b->d);
    for (int j = 0; j < 32; j++)
        y[j] = (float)b->qs[j] * d;
}

/* K formats: element e of a super-block lies in sub-block e / 16 (Q2_K, Q3_K, Q6_K) or e / 32
 * (Q4_K, Q5_K, IQ4_XS); its bits come from byte (e % 32) of a 32-byte row of the code array,
 * shifted by the row's turn (see each format). */
static void deq_q2_K(const mlxn_block_q2_K *b, float *y)
{
    const float d = F16(b->d), dmin = F16(b->dmin);
    for (int e = 0; e < 256; e++) {
        const int s = e / 32, l = e % 32, sc = b->scales[e / 16];
        const int q = b->qs[32 * (s / 4) + l] >> (2 * (s % 4)) & 3;
        const float dl = d * (float)(sc & 15), ml = dmin * (float)(sc >> 4);
        y[e] = dl * (float)q - ml;
    }
}

static void deq_q3_K(const mlxn_block_q3_K *b, float *y)
{
    const float d = F16(b->d);
    int8_t sc[16];
    for (int i = 0; i < 16; i++) {
        const int lo = b->scales[i % 8] >> (4 * (i / 8)) & 15;
        const int hi = b->scales[8 + i % 4] >> (2 * (i / 4)) & 3;
        sc[i] = (int8_t)((lo | hi << 4) - 32);
    }
    for (int e = 0; e < 256; e++) {
        const int s = e / 32, l = e % 32;
        const int ql = b->qs[32 * (s / 4) + l] >> (2 * (s % 4)) & 3;
        const int qh = (b->hmask[l] >> s & 1) ^ 1; /* a clear bit subtracts 4 */
        y[e] = d * (float)sc[e / 16] * (float)(ql - (qh << 2));
    }
}

/* Q4_K / Q5_K: eight 6-bit scales and mins packed in 12 bytes. */
static void scale_min_k4(const uint8_t *p, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = p[j] & 63;
        *m = p[j + 4] & 63;
    } else {
        *sc = (p[j + 4] & 15) | ((p[j - 4] >> 2) & 48);
        *m = (p[j + 4] >> 4) | ((p[j] >> 2) & 48);
    }
}

static void deq_q4_K(const mlxn_block_q4_K *b, float *y)
{
    const float d = F16(b->d), dmin = F16(b->dmin);
    for (int s = 0; s < 8; s++) {
        int sc, m;
        scale_min_k4(b->scales, s, &sc, &m);
        const float dl = d * (float)sc, ml = dmin * (float)m;
        for (int l = 0; l < 32; l++)
            y[32 * s + l] = dl * (float)(b->qs[32 * (s / 2) + l] >> (4 * (s % 2)) & 15) - ml;
    }
}

static void deq_q5_K(const mlxn_block_q5_K *b, float *y)
{
    const float d = F16(b->d), dmin = F16(b->dmin);
    for (int s = 0; s < 8; s++) {
        int sc, m;
        scale_min_k4(b->scales, s, &sc, &m);
        const float dl = d * (float)sc, ml = dmin * (float)m;
        for (int l = 0; l < 32; l++) {
            const int q = (b->qs[32 * (s / 2) + l] >> (4 * (s % 2)) & 15) | (b->qh[l] >> s & 1) << 4;
            y[32 * s + l] = dl * (float)q - ml;
        }
    }
}

static void deq_q6_K(const mlxn_block_q6_K *b, float *y)
{
    const float d = F16(b->d);
    for (int e = 0; e < 256; e++) {
        const int g = e / 128, w = e % 128;
        const int ql = b->ql[64 * g + w % 64] >> (4 * (w / 64)) & 15;
        const int qh = b->qh[32 * g + w % 32] >> (2 * (w / 32)) & 3;
        y[e] = d * (float)b->scales[e / 16] * (float)((ql | qh << 4) - 32);
    }
}

static void deq_iq4_nl(const mlxn_block_iq4_nl *b, float *y)
{
    const float d = F16(b->d);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)mlxn_iq4_values[b->qs[j] & 15];
        y[j + 16] = d * (float)mlxn_iq4_values[b->qs[j] >> 4];
    }
}

static void deq_iq4_xs(const mlxn_block_iq4_xs *b, float *y)
{
    const float d = F16(b->d);
    for (int s = 0; s < 8; s++) {
        const int ls = (b->scales_l[s / 2] >> (4 * (s % 2)) & 15) | (b->scales_h >> (2 * s) & 3) << 4;
        const float dl = d * (float)(ls - 32);
        for (int j = 0; j < 16; j++) {
            y[32 * s + j] = dl * (float)mlxn_iq4_values[b->qs[16 * s + j] & 15];
            y[32 * s + j + 16] = dl * (float)mlxn_iq4_values[b->qs[16 * s + j] >> 4];
        }
    }
}

typedef struct ggml_codec {
    mlxn_dtype type;
    int block_elems, block_bytes;
    void (*dequantize)(const void *block, float *y);
    void (*quantize)(const float *x, void *block); /* NULL: no reference quantizer yet */
} ggml_codec;

/* ---- quantize (the 32-element formats; numpy's order of operations) */

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
    mlxn_block_q8_0 *b = out;
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    const float d = amax / 127.0f, id = d == 0.0f ? 0.0f : 1.0f / d;
    b->d = mlxn_f32_to_f16(d);
    for (int j = 0; j < 32; j++)
        b->qs[j] = (int8_t)roundf(x[j] * id); /* half away from zero, as ggml's roundf */
}

#define DEQ(f) (void (*)(const void *, float *))(f)
static const ggml_codec codecs[] = {
    {MLXN_DTYPE_Q4_0, 32, 18, DEQ(deq_q4_0), quant_q4_0},
    {MLXN_DTYPE_Q4_1, 32, 20, DEQ(deq_q4_1), quant_q4_1},
    {MLXN_DTYPE_Q5_0, 32, 22, DEQ(deq_q5_0), quant_q5_0},
    {MLXN_DTYPE_Q5_1, 32, 24, DEQ(deq_q5_1), quant_q5_1},
    {MLXN_DTYPE_Q8_0, 32, 34, DEQ(deq_q8_0), quant_q8_0},
    {MLXN_DTYPE_Q2_K, 256, 84, DEQ(deq_q2_K), NULL},
    {MLXN_DTYPE_Q3_K, 256, 110, DEQ(deq_q3_K), NULL},
    {MLXN_DTYPE_Q4_K, 256, 144, DEQ(deq_q4_K), NULL},
    {MLXN_DTYPE_Q5_K, 256, 176, DEQ(deq_q5_K), NULL},
    {MLXN_DTYPE_Q6_K, 256, 210, DEQ(deq_q6_K), NULL},
    {MLXN_DTYPE_IQ4_NL, 32, 18, DEQ(deq_iq4_nl), NULL},
    {MLXN_DTYPE_IQ4_XS, 256, 136, DEQ(deq_iq4_xs), NULL},
};
#undef DEQ

static const ggml_codec *codec_of(mlxn_dtype t, int64_t n, const char *fn, mlxn_status *st)
{
    for (size_t i = 0; i < sizeof codecs / sizeof codecs[0]; i++)
        if (codecs[i].type == t) {
            if (n < 0 || n % codecs[i].block_elems) {
                *st = mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "%lld elements: %s needs a multiple of %d",
                                 (long long)n, mlxn_dtype_name(t), codecs[i].block_elems);
                return NULL;
            }
            return &codecs[i];
        }
    *st = mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn, "%s is not a GGML block format mlxn decodes",
                     mlxn_dtype_name(t));
    return NULL;
}

mlxn_status mlxn_ggml_dequantize(mlxn_dtype type, const void *blocks, int64_t n, float *out)
{
    static const char fn[] = "mlxn_ggml_dequantize";
    mlxn_status st = MLXN_STATUS_OK;
    const ggml_codec *c = codec_of(type, n, fn, &st);
    if (!c)
        return st;
    if (n && (!blocks || !out))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "NULL blocks or out");
    for (int64_t i = 0; i < n / c->block_elems; i++)
        c->dequantize((const uint8_t *)blocks + i * c->block_bytes, out + i * c->block_elems);
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_ggml_quantize(mlxn_dtype type, const float *x, int64_t n, void *blocks)
{
    static const char fn[] = "mlxn_ggml_quantize";
    mlxn_status st = MLXN_STATUS_OK;
    const ggml_codec *c = codec_of(type, n, fn, &st);
    if (!c)
        return st;
    if (!c->quantize)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn, "no reference quantizer for %s yet",
                          mlxn_dtype_name(type));
    if (n && (!blocks || !x))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "NULL x or blocks");
    for (int64_t i = 0; i < n / c->block_elems; i++)
        c->quantize(x + i * c->block_elems, (uint8_t *)blocks + i * c->block_bytes);
    return MLXN_STATUS_OK;
}
