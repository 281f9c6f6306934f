/* safetensors reader, its JSON parser and MLX quantization configs: files written by the
 * reference safetensors package, sharded checkpoints, hostile headers, truncations. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "formats/json.h"
#include "harness.h"
#include "mlxn_safetensors.h"

#define EXPECT(name, cond, ...)              \
    do {                                     \
        if (cond)                            \
            harness_pass(name);              \
        else                                 \
            harness_fail(name, __VA_ARGS__); \
    } while (0)

static double fixture_value(int64_t i)
{
    return (double)((i * 7 + 3) % 100 - 50);
}

static double element(const mlxn_st_tensor *t, int64_t i)
{
    const uint8_t *p = t->data;
    const char *d = t->dtype_name;
    if (!strcmp(d, "U8")) return p[i];
    if (!strcmp(d, "I8")) return ((const int8_t *)p)[i];
    if (!strcmp(d, "I16")) { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    if (!strcmp(d, "U32")) { uint32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    if (!strcmp(d, "I32")) { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    if (!strcmp(d, "I64")) { int64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
    if (!strcmp(d, "F16")) { uint16_t v; memcpy(&v, p + 2 * i, 2); return mlxn_f16_to_f32(v); }
    if (!strcmp(d, "BF16")) { uint16_t v; memcpy(&v, p + 2 * i, 2); return mlxn_bf16_to_f32(v); }
    if (!strcmp(d, "F32")) { float v; memcpy(&v, p + 4 * i, 4); return v; }
    if (!strcmp(d, "F64")) { double v; memcpy(&v, p + 8 * i, 8); return v; }
    return NAN;
}

static void test_reference_files(test_devices *devs)
{
    mlxn_safetensors *st = NULL;
    mlxn_status s = mlxn_safetensors_open(MLXN_FIXTURES "/safetensors/dtypes.safetensors", &st);
    EXPECT("safetensors/open", s == MLXN_STATUS_OK, "%s", mlxn_last_error());
    if (!st)
        return;
    static const struct {
        const char *name, *dtype;
        int ndim;
        int64_t numel, shift;
        mlxn_dtype mdt;
    } want[] = {{"u8", "U8", 2, 6, 0, MLXN_DTYPE_U8},       {"i8", "I8", 1, 5, 0, MLXN_DTYPE_I8},
                {"i16", "I16", 2, 12, 0, MLXN_DTYPE_I16},   {"u32", "U32", 3, 8, 100, MLXN_DTYPE_U32},
                {"i32", "I32", 4, 16, 0, MLXN_DTYPE_I32},   {"f16", "F16", 2, 10, 0, MLXN_DTYPE_F16},
                {"f32", "F32", 2, 9, 0, MLXN_DTYPE_F32},    {"f64", "F64", 1, 3, 0, MLXN_DTYPE_COUNT},
                {"i64", "I64", 1, 4, 0, MLXN_DTYPE_COUNT}};
    int bad = 0;
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        const mlxn_st_tensor *t = mlxn_safetensors_find(st, want[k].name);
        if (!t || strcmp(t->dtype_name, want[k].dtype) || t->ndim != want[k].ndim || t->dtype != want[k].mdt) {
            bad++;
            continue;
        }
        for (int64_t i = 0; i < want[k].numel; i++) {
            double v = fixture_value(i) + (double)want[k].shift;
            if (!strcmp(want[k].name, "u8"))
                v = (double)(uint8_t)(int64_t)fixture_value(i);
            if (element(t, i) != v)
                bad++;
        }
    }
    EXPECT("safetensors/reference-values", bad == 0 && mlxn_safetensors_tensor_count(st) == 9,
           "%d mismatches", bad);
    EXPECT("safetensors/metadata", mlxn_safetensors_metadata_count(st) == 2 &&
                                       strcmp(mlxn_safetensors_metadata_get(st, "note"), "mlxn fixture") == 0,
           "metadata wrong");
    /* a view over the mapped bytes runs through an op like any buffer */
    const mlxn_st_tensor *f32 = mlxn_safetensors_find(st, "f32");
    mlxn_buffer *b = NULL;
    mlxn_tensor v;
    bool ok = mlxn_buffer_create_host_borrowed(devs->ref.device, (void *)f32->data, f32->size, &b) == MLXN_STATUS_OK &&
              mlxn_st_tensor_view(f32, b, 0, &v) == MLXN_STATUS_OK && v.ndim == 2 && v.shape[0] == 3 &&
              v.shape[1] == 3 && v.dtype == MLXN_DTYPE_F32;
    EXPECT("safetensors/view", ok, "%s", mlxn_last_error());
    mlxn_tensor v2;
    EXPECT("safetensors/view-unsupported",
           mlxn_st_tensor_view(mlxn_safetensors_find(st, "f64"), b, 0, &v2) == MLXN_STATUS_ERR_UNSUPPORTED &&
               strstr(mlxn_last_error(), "F64"),
           "%s", mlxn_last_error());
    mlxn_buffer_free(b);
    mlxn_safetensors_free(st);

    st = NULL;
    s = mlxn_safetensors_open(MLXN_FIXTURES "/safetensors/bf16.safetensors", &st);
    const mlxn_st_tensor *t = st ? mlxn_safetensors_find(st, "bf16") : NULL;
    ok = s == MLXN_STATUS_OK && t && t->dtype == MLXN_DTYPE_BF16;
    for (int64_t i = 0; ok && i < 8; i++)
        ok = element(t, i) == fixture_value(i);
    EXPECT("safetensors/bf16", ok, "%s", mlxn_last_error());
    mlxn_safetensors_free(st);

    st = NULL;
    s = mlxn_safetensors_open(MLXN_FIXTURES "/safetensors/sharded/model.safetensors.index.json", &st);
    const mlxn_st_tensor *w0 = st ? mlxn_safetensors_find(st, "layer.0.weight") : NULL;
    const mlxn_st_tensor *w1 = st ? mlxn_safetensors_find(st, "layer.1.weight") : NULL;
    ok = s == MLXN_STATUS_OK && mlxn_safetensors_tensor_count(st) == 3 && w0 && w1 && w0->shard == 0 &&
         w1->shard == 1 && element(w1, 3) == fixture_value(3) && element(w0, 5) == fixture_value(5);
    EXPECT("safetensors/sharded", ok, "%s", mlxn_last_error());
    mlxn_safetensors_free(st);
}

/* One file from a header string and data bytes. */
static uint8_t *make_file(const char *header, size_t data_bytes, size_t *size)
{
    size_t h = strlen(header);
    *size = 8 + h + data_bytes;
    uint8_t *p = malloc(*size);
    uint64_t hl = h;
    memcpy(p, &hl, 8);
    memcpy(p + 8, header, h);
    for (size_t i = 0; i < data_bytes; i++)
        p[8 + h + i] = (uint8_t)i;
    return p;
}

static void expect_bad(const char *name, const char *header, size_t data, const char *needle)
{
    size_t n;
    uint8_t *p = make_file(header, data, &n);
    mlxn_safetensors *st = NULL;
    mlxn_status s = mlxn_safetensors_open_memory_borrowed(p, n, &st);
    if (s != MLXN_STATUS_ERR_BAD_FORMAT)
        harness_fail(name, "returned %s (%s)", mlxn_status_str(s), mlxn_last_error());
    else if (!strstr(mlxn_last_error(), needle))
        harness_fail(name, "message \"%s\" lacks \"%s\"", mlxn_last_error(), needle);
    else
        harness_pass(name);
    mlxn_safetensors_free(st);
    free(p);
}

static void test_hostile(void)
{
    expect_bad("safetensors/bad/not-object", "[1,2]", 0, "not a JSON object");
    expect_bad("safetensors/bad/json", "{\"a\": ", 0, "header JSON");
    expect_bad("safetensors/bad/dtype", "{\"a\":{\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
               "unknown dtype");
    expect_bad("safetensors/bad/shape-negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
               4, "shape[0]");
    expect_bad("safetensors/bad/shape-float", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}",
               4, "shape[0]");
    expect_bad("safetensors/bad/shape-overflow",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
               "overflows");
    expect_bad("safetensors/bad/offsets-outside", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               4, "outside the data buffer");
    expect_bad("safetensors/bad/offsets-reversed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}",
               4, "outside the data buffer");
    expect_bad("safetensors/bad/size-mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}",
               8, "need 4");
    expect_bad("safetensors/bad/gap",
               "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}",
               5, "contiguous");
    expect_bad("safetensors/bad/overlap",
               "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}",
               3, "contiguous");
    expect_bad("safetensors/bad/uncovered", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 6,
               "cover 2 of");
    expect_bad("safetensors/bad/duplicate",
               "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
               2, "twice");
    expect_bad("safetensors/bad/metadata", "{\"__metadata__\":{\"k\":1}}", 0, "not a string");
    expect_bad("safetensors/bad/offsets-shape", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1,
               "data_offsets");
    expect_bad("safetensors/bad/f4-half-byte", "{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2,
               "whole number of bytes");
    /* header length larger than the file, and a claimed 200 MB header */
    uint8_t hdr[16] = {0};
    uint64_t big = 100;
    memcpy(hdr, &big, 8);
    mlxn_safetensors *st = NULL;
    EXPECT("safetensors/bad/header-past-end",
           mlxn_safetensors_open_memory_borrowed(hdr, sizeof hdr, &st) == MLXN_STATUS_ERR_BAD_FORMAT &&
               strstr(mlxn_last_error(), "exceeds the file"),
           "%s", mlxn_last_error());
    /* empty and valid: {} with no data */
    size_t n;
    uint8_t *p = make_file("{}", 0, &n);
    EXPECT("safetensors/empty-valid", mlxn_safetensors_open_memory_borrowed(p, n, &st) == MLXN_STATUS_OK &&
                                          mlxn_safetensors_tensor_count(st) == 0,
           "%s", mlxn_last_error());
    mlxn_safetensors_free(st);
    free(p);
    /* truncations of a valid file */
    p = make_file("{\"a\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                  "\"b\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[12,13]}}",
                  13, &n);
    int wrong = 0;
    for (size_t len = 0; len < n; len++) {
        uint8_t *c = malloc(len ? len : 1);
        memcpy(c, p, len);
        st = NULL;
        if (mlxn_safetensors_open_memory_borrowed(c, len, &st) != MLXN_STATUS_ERR_BAD_FORMAT)
            wrong++;
        mlxn_safetensors_free(st);
        free(c);
    }
    st = NULL;
    EXPECT("safetensors/truncated", wrong == 0 && mlxn_safetensors_open_memory_borrowed(p, n, &st) == MLXN_STATUS_OK &&
                                        mlxn_safetensors_find(st, "b")->ndim == 0,
           "%d truncations accepted", wrong);
    mlxn_safetensors_free(st);
    free(p);
}

static void test_json(void)
{
    char err[160];
    const char *good = " {\"a\": [1, -2.5e3, 18446744073709551615, 18446744073709551616, true, null],"
                       " \"s\": \"\\u00e9\\ud83d\\ude00\\n\\\"x\\\"\", \"e\": {}, \"z\": []} ";
    json_doc *d = json_parse(good, strlen(good), err, sizeof err);
    const json_value *r = json_root(d), *a = json_get(r, "a"), *s = json_get(r, "s");
    bool ok = d && a && a->count == 6 && a->items[0].is_uint && a->items[0].uint == 1 && !a->items[1].is_uint &&
              a->items[1].number == -2500 && a->items[2].is_uint && a->items[2].uint == UINT64_MAX &&
              !a->items[3].is_uint && a->items[4].boolean && a->items[5].type == JSON_NULL && s &&
              strcmp(s->str, "\xc3\xa9\xf0\x9f\x98\x80\n\"x\"") == 0 && json_get(r, "e")->count == 0;
    EXPECT("json/valid", ok, "%s", d ? "values differ" : err);
    json_free(d);
    static const char *const bad[] = {
        "",         "{",          "{\"a\" 1}",    "[1,]",         "[01]",        "\"\\x\"",
        "\"\\ud800\"", "\"a\x01\"",  "[1] x",      "\"\xff\"",     "[tru]",       "{\"a\":1,}",
        "-",        "1.",         "1e",           "\"\\u12\"",    "\"\xc0\xaf\"",
    };
    int wrong = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        d = json_parse(bad[i], strlen(bad[i]), err, sizeof err);
        if (d || !strstr(err, "at byte")) {
            printf("  json accepted or unexplained: %s\n", bad[i]);
            wrong++;
        }
        json_free(d);
    }
    EXPECT("json/invalid", wrong == 0, "%d invalid documents accepted", wrong);
    char deep[300];
    memset(deep, '[', 200);
    d = json_parse(deep, 200, err, sizeof err);
    EXPECT("json/depth", !d && strstr(err, "too deep"), "deep nesting: %s", err);
    json_free(d);
}

static void test_mlx_config(void)
{
    const char *cfg = "{\"model_type\": \"llama\", \"quantization\": {\"group_size\": 64, \"bits\": 4,"
                      " \"model.layers.0.mlp.down_proj\": {\"group_size\": 32, \"bits\": 8},"
                      " \"lm_head\": false}}";
    mlxn_mlx_quant_config *c = NULL;
    bool q;
    int bits, gs;
    bool ok = mlxn_mlx_quant_config_parse(cfg, strlen(cfg), &c) == MLXN_STATUS_OK;
    mlxn_mlx_quant_config_layer(c, "model.layers.0.mlp.up_proj", &q, &bits, &gs);
    ok = ok && q && bits == 4 && gs == 64;
    mlxn_mlx_quant_config_layer(c, "model.layers.0.mlp.down_proj", &q, &bits, &gs);
    ok = ok && q && bits == 8 && gs == 32;
    mlxn_mlx_quant_config_layer(c, "lm_head", &q, &bits, &gs);
    ok = ok && !q && bits == 0;
    EXPECT("mlx/config", ok, "%s", mlxn_last_error());
    mlxn_mlx_quant_config_free(c);
    c = NULL;
    const char *none = "{\"model_type\": \"llama\"}";
    ok = mlxn_mlx_quant_config_parse(none, strlen(none), &c) == MLXN_STATUS_OK;
    mlxn_mlx_quant_config_layer(c, "x", &q, &bits, &gs);
    EXPECT("mlx/config-unquantized", ok && !q, "unquantized config wrong");
    mlxn_mlx_quant_config_free(c);
    const char *badbits = "{\"quantization\": {\"group_size\": 64, \"bits\": 7}}";
    c = NULL;
    EXPECT("mlx/config-bad-bits", mlxn_mlx_quant_config_parse(badbits, strlen(badbits), &c) == MLXN_STATUS_ERR_BAD_FORMAT &&
                                      !c && strstr(mlxn_last_error(), "bits"),
           "%s", mlxn_last_error());
    const char *badgs = "{\"quantization\": {\"group_size\": 48, \"bits\": 4}}";
    EXPECT("mlx/config-bad-group", mlxn_mlx_quant_config_parse(badgs, strlen(badgs), &c) == MLXN_STATUS_ERR_BAD_FORMAT,
           "group 48 accepted");
    EXPECT("mlx/dtype-for-bits", mlxn_mlx_dtype_for_bits(3) == MLXN_DTYPE_MLX_Q3 &&
                                     mlxn_mlx_dtype_for_bits(7) == MLXN_DTYPE_COUNT,
           "bits to dtype wrong");
}

int main(int argc, char **argv)
{
    rng g = {.s = harness_seed(argc, argv)};
    (void)g;
    test_devices devs;
    if (!test_devices_open(&devs))
        return 1;
    test_reference_files(&devs);
    test_hostile();
    test_json();
    test_mlx_config();
    test_devices_close(&devs);
    return harness_finish();
}
