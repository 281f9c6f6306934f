/* Reference dequantize (every GGML format with a kernel; decoders in ggml_decode.h) and
 * quantize (the 32-element formats) for GGML blocks, bit-exact with the gguf Python package's
 * numpy code, which is bit-exact with ggml's reference C. Compiled with -ffp-contract=off:
 * each product and sum is rounded to f32 on its own, in numpy's order (a fused multiply-add
 * would round once). */
#include <math.h>
#include <string.h>

#include "core/half.h"
#include "core/internal.h"
#include "ggml_decode.h"
#include "mlxn_quant.h"

typedef struct ggml_codec {
    mlxn_dtype type;
    void (*quantize)(const float *x, void *block); /* NULL: no reference quantizer yet */
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
    mlxn_block_q8_0 *b = out;
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    const float d = amax / 127.0f, id = d == 0.0f ? 0.0f : 1.0f / d;
    b->d = mlxn_f32_to_f16(d);
    for (int j = 0; j < 32; j++)
        b->qs[j] = (int8_t)roundf(x[j] * id); /* half away from zero, as ggml's roundf */
}

static const ggml_codec codecs[] = {
    {MLXN_DTYPE_Q4_0, quant_q4_0}, {MLXN_DTYPE_Q4_1, quant_q4_1}, {MLXN_DTYPE_Q5_0, quant_q5_0},
    {MLXN_DTYPE_Q5_1, quant_q5_1}, {MLXN_DTYPE_Q8_0, quant_q8_0}, {MLXN_DTYPE_Q2_K, NULL},
    {MLXN_DTYPE_Q3_K, NULL},       {MLXN_DTYPE_Q4_K, NULL},       {MLXN_DTYPE_Q5_K, NULL},
    {MLXN_DTYPE_Q6_K, NULL},       {MLXN_DTYPE_IQ4_NL, NULL},     {MLXN_DTYPE_IQ4_XS, NULL},
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

mlxn_status mlxn_ggml_dequantize(mlxn_dtype type, const void *blocks, int64_t n, float *out)
{
    static const char fn[] = "mlxn_ggml_dequantize";
    mlxn_status st = MLXN_STATUS_OK;
    const ggml_codec *c = codec_of(type, n, fn, &st);
    if (!c)
        return st;
    if (n && (!blocks || !out))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "NULL blocks or out");
    int u;
    for (int64_t k = 0; k < n; k += 32) {
        const uint8_t *p = mlxn_ggml_unit_ptr(type, blocks, k, &u);
        mlxn_ggml_unit(type, p, u, out + k);
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
    if (!c->quantize)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn, "no reference quantizer for %s yet",
                          mlxn_dtype_name(type));
    if (n && (!blocks || !x))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "NULL x or blocks");
    for (int64_t i = 0; i < n / 32; i++)
        c->quantize(x + i * 32, (uint8_t *)blocks + i * mlxn_ggml_block_bytes(type));
    return MLXN_STATUS_OK;
}
