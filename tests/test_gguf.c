/* GGUF reader and writer: round trips of every value type and tensor layout, hostile and
 * truncated files, typed getters, the real models against lists made by an independent reader
 * (the gguf Python package), and data upload to every device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "mlxn_gguf.h"

#define EXPECT(name, cond, ...)              \
    do {                                     \
        if (cond)                            \
            harness_pass(name);              \
        else                                 \
            harness_fail(name, __VA_ARGS__); \
    } while (0)

/* ---------------------------------------------------------------- byte builder */

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

static void b_put(buf *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void b_u32(buf *b, uint32_t v) { b_put(b, &v, 4); }
static void b_u64(buf *b, uint64_t v) { b_put(b, &v, 8); }
static void b_str(buf *b, const char *s) { b_u64(b, strlen(s)); b_put(b, s, strlen(s)); }
static void b_pad(buf *b, size_t a) { while (b->len % a) b_put(b, "", 1); }

static void b_header(buf *b, uint64_t n_tensors, uint64_t n_kv)
{
    b_put(b, "GGUF", 4);
    b_u32(b, 3);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}

/* A small valid file: one kv, one f32 tensor [4] and one q4_0 tensor [32 x 2]. Returns the
 * offset of the end of the last tensor's data. */
static size_t valid_file(buf *b)
{
    b->len = 0;
    b_header(b, 2, 2);
    b_str(b, "general.architecture");
    b_u32(b, MLXN_GGUF_TYPE_STRING);
    b_str(b, "llama");
    b_str(b, "x.nested");
    b_u32(b, MLXN_GGUF_TYPE_ARRAY);
    b_u32(b, MLXN_GGUF_TYPE_ARRAY);
    b_u64(b, 2);
    for (int k = 0; k < 2; k++) {
        b_u32(b, MLXN_GGUF_TYPE_INT16);
        b_u64(b, 3);
        for (int16_t v = 0; v < 3; v++) {
            int16_t x = (int16_t)(v - 7 * k);
            b_put(b, &x, 2);
        }
    }
    b_str(b, "a");
    b_u32(b, 1);
    b_u64(b, 4);
    b_u32(b, 0); /* f32 */
    b_u64(b, 0);
    b_str(b, "b");
    b_u32(b, 2);
    b_u64(b, 32);
    b_u64(b, 2);
    b_u32(b, 2); /* q4_0 */
    b_u64(b, 32);
    b_pad(b, 32);
    size_t data = b->len;
    float f[4] = {1, -2, 3.5f, 0.25f};
    b_put(b, f, 16);
    b_pad(b, 32);
    uint8_t q[36];
    for (int i = 0; i < 36; i++)
        q[i] = (uint8_t)(i * 7 + 1);
    b_put(b, q, 36);
    size_t end = b->len;
    b_pad(b, 32);
    (void)data;
    return end;
}

/* ---------------------------------------------------------------- tests */

static void test_valid_and_truncated(void)
{
    buf b = {0};
    size_t end = valid_file(&b);
    mlxn_gguf *g = NULL;
    mlxn_status st = mlxn_gguf_open_memory_borrowed(b.p, b.len, &g);
    EXPECT("gguf/valid", st == MLXN_STATUS_OK, "%s", mlxn_last_error());
    if (g) {
        const mlxn_gguf_tensor *t = mlxn_gguf_find_tensor(g, "b");
        EXPECT("gguf/valid/tensor", t && t->n_dims == 2 && t->ne[0] == 32 && t->ne[1] == 2 &&
                                        t->size == 36 && t->type.dtype == MLXN_DTYPE_Q4_0 &&
                                        ((const uint8_t *)t->data)[35] == (uint8_t)(35 * 7 + 1),
               "tensor b wrong");
        const mlxn_gguf_value *v = mlxn_gguf_find(g, "x.nested");
        const mlxn_gguf_value *inner = mlxn_gguf_array_at(v, 1);
        int64_t x = 0;
        mlxn_gguf_type et;
        uint64_t n = 0;
        EXPECT("gguf/valid/nested", inner && mlxn_gguf_array_info(inner, &et, &n) == MLXN_STATUS_OK &&
                                        et == MLXN_GGUF_TYPE_INT16 && n == 3 &&
                                        mlxn_gguf_value_int(mlxn_gguf_array_at(inner, 0), &x) == MLXN_STATUS_OK &&
                                        x == -7,
               "nested array wrong");
        mlxn_gguf_free(g);
    }
    /* Every truncation that cuts into the header or a tensor's data is rejected cleanly;
     * cutting only trailing padding keeps the file valid. */
    int bad = 0, wrong = 0;
    for (size_t len = 0; len < b.len; len++) {
        uint8_t *copy = malloc(len ? len : 1); /* exact size, so ASan sees any overread */
        memcpy(copy, b.p, len);
        st = mlxn_gguf_open_memory_borrowed(copy, len, &g);
        bool want_ok = len >= end;
        if ((st == MLXN_STATUS_OK) != want_ok || (st != MLXN_STATUS_OK && st != MLXN_STATUS_ERR_BAD_FORMAT))
            wrong++;
        if (st != MLXN_STATUS_OK)
            bad++;
        mlxn_gguf_free(g);
        free(copy);
    }
    EXPECT("gguf/truncated", wrong == 0, "%d of %zu truncations gave the wrong status", wrong, b.len);
    (void)bad;
    free(b.p);
}

typedef void (*mutator)(buf *b);

static void expect_bad(const char *name, buf *b, const char *needle)
{
    mlxn_gguf *g = NULL;
    uint8_t *copy = malloc(b->len ? b->len : 1);
    memcpy(copy, b->p, b->len);
    mlxn_status st = mlxn_gguf_open_memory_borrowed(copy, b->len, &g);
    if (st != MLXN_STATUS_ERR_BAD_FORMAT)
        harness_fail(name, "returned %s, expected BAD_FORMAT (%s)", mlxn_status_str(st),
                     mlxn_last_error());
    else if (!strstr(mlxn_last_error(), needle) || !strstr(mlxn_last_error(), "at byte"))
        harness_fail(name, "message \"%s\" lacks \"%s\" or the offset", mlxn_last_error(), needle);
    else
        harness_pass(name);
    mlxn_gguf_free(g);
    free(copy);
}

/* One tensor info after a header with no kv; the caller fills the info's fields. */
static void one_tensor(buf *b, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off,
                       size_t data_bytes)
{
    b->len = 0;
    b_header(b, 1, 0);
    b_str(b, "t");
    b_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        b_u64(b, ne[d]);
    b_u32(b, type);
    b_u64(b, off);
    b_pad(b, 32);
    for (size_t i = 0; i < data_bytes; i++)
        b_put(b, "\x11", 1);
}

static void test_hostile(void)
{
    buf b = {0};
    valid_file(&b);
    memcpy(b.p, "GGUG", 4);
    expect_bad("gguf/bad/magic", &b, "not a GGUF file");
    valid_file(&b);
    b.p[4] = 1;
    expect_bad("gguf/bad/version-1", &b, "version 1");
    valid_file(&b);
    b.p[4] = 4;
    expect_bad("gguf/bad/version-4", &b, "version 4");
    valid_file(&b);
    memset(b.p + 16, 0xff, 8);
    expect_bad("gguf/bad/kv-count", &b, "metadata count");
    valid_file(&b);
    memset(b.p + 8, 0x7f, 8);
    expect_bad("gguf/bad/tensor-count", &b, "tensor count");
    valid_file(&b);
    memset(b.p + 24, 0xee, 8); /* first key's length */
    expect_bad("gguf/bad/string-length", &b, "has length");

    b.len = 0;
    b_header(&b, 0, 1);
    b_u64(&b, 2);
    b_put(&b, "\xc3\x28", 2); /* invalid UTF-8 */
    b_u32(&b, MLXN_GGUF_TYPE_UINT8);
    b_put(&b, "\1", 1);
    expect_bad("gguf/bad/utf8-key", &b, "not valid UTF-8");
    b.len = 0;
    b_header(&b, 0, 1);
    b_str(&b, "");
    b_u32(&b, MLXN_GGUF_TYPE_UINT8);
    b_put(&b, "\1", 1);
    expect_bad("gguf/bad/empty-key", &b, "empty");
    b.len = 0;
    b_header(&b, 0, 2);
    for (int k = 0; k < 2; k++) {
        b_str(&b, "k");
        b_u32(&b, MLXN_GGUF_TYPE_UINT8);
        b_put(&b, "\1", 1);
    }
    expect_bad("gguf/bad/duplicate-key", &b, "appears twice");
    b.len = 0;
    b_header(&b, 0, 1);
    b_str(&b, "k");
    b_u32(&b, 13);
    b_u64(&b, 0);
    expect_bad("gguf/bad/value-type", &b, "unknown type 13");
    b.len = 0;
    b_header(&b, 0, 1);
    b_str(&b, "k");
    b_u32(&b, MLXN_GGUF_TYPE_ARRAY);
    b_u32(&b, MLXN_GGUF_TYPE_UINT32);
    b_u64(&b, (uint64_t)1 << 60);
    expect_bad("gguf/bad/array-count", &b, "claims");
    b.len = 0;
    b_header(&b, 0, 1);
    b_str(&b, "k");
    b_u32(&b, MLXN_GGUF_TYPE_ARRAY);
    for (int d = 0; d < 12; d++) {
        b_u32(&b, MLXN_GGUF_TYPE_ARRAY);
        b_u64(&b, 1);
    }
    b_u32(&b, MLXN_GGUF_TYPE_UINT8);
    b_u64(&b, 0);
    expect_bad("gguf/bad/nesting", &b, "nest deeper");
    b.len = 0;
    b_header(&b, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, MLXN_GGUF_TYPE_UINT32);
    b_u32(&b, 48);
    expect_bad("gguf/bad/alignment", &b, "power of two");
    b.len = 0;
    b_header(&b, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, MLXN_GGUF_TYPE_UINT64);
    b_u64(&b, 64);
    expect_bad("gguf/bad/alignment-type", &b, "u32");

    uint64_t ne1[1] = {4};
    one_tensor(&b, 1, ne1, 4, 0, 64);
    expect_bad("gguf/bad/removed-type", &b, "unknown or removed GGML type 4");
    one_tensor(&b, 1, ne1, 99, 0, 64);
    expect_bad("gguf/bad/unknown-type", &b, "type 99");
    one_tensor(&b, 0, ne1, 0, 0, 64);
    expect_bad("gguf/bad/zero-dims", &b, "0 dimensions");
    uint64_t ne5[5] = {1, 1, 1, 1, 1};
    one_tensor(&b, 5, ne5, 0, 0, 64);
    expect_bad("gguf/bad/five-dims", &b, "5 dimensions");
    uint64_t big[2] = {(uint64_t)1 << 40, (uint64_t)1 << 40};
    one_tensor(&b, 2, big, 0, 0, 64);
    expect_bad("gguf/bad/dims-overflow", &b, "overflow");
    uint64_t neg[1] = {UINT64_MAX};
    one_tensor(&b, 1, neg, 0, 0, 64);
    expect_bad("gguf/bad/dims-huge", &b, "overflow");
    uint64_t ne33[1] = {33};
    one_tensor(&b, 1, ne33, 2, 0, 64);
    expect_bad("gguf/bad/partial-block", &b, "not a multiple of the q4_0 block");
    one_tensor(&b, 1, ne1, 0, 8, 64);
    expect_bad("gguf/bad/misaligned-offset", &b, "not a multiple of the alignment");
    one_tensor(&b, 1, ne1, 0, 64, 64);
    expect_bad("gguf/bad/offset-outside", &b, "outside the data section");
    one_tensor(&b, 1, ne1, 0, UINT64_MAX - 31, 64);
    expect_bad("gguf/bad/offset-overflow", &b, "outside the data section");
    b.len = 0;
    b_header(&b, 2, 0);
    for (int k = 0; k < 2; k++) {
        b_str(&b, "same");
        b_u32(&b, 1);
        b_u64(&b, 4);
        b_u32(&b, 0);
        b_u64(&b, 0);
    }
    b_pad(&b, 32);
    b_put(&b, "0123456789abcdef", 16);
    expect_bad("gguf/bad/duplicate-tensor", &b, "appears twice");
    free(b.p);
}

/* Random byte flips of a valid file: open must return OK or BAD_FORMAT and never read
 * outside the buffer (ASan builds check that). */
static void test_mutations(rng *g)
{
    buf b = {0};
    valid_file(&b);
    int wrong = 0;
    for (int it = 0; it < 3000; it++) {
        uint8_t *copy = malloc(b.len);
        memcpy(copy, b.p, b.len);
        int flips = (int)rng_int(g, 1, 4);
        for (int k = 0; k < flips; k++)
            copy[rng_int(g, 0, (int64_t)b.len - 1)] = (uint8_t)rng_next(g);
        mlxn_gguf *f = NULL;
        mlxn_status st = mlxn_gguf_open_memory_borrowed(copy, b.len, &f);
        if (st != MLXN_STATUS_OK && st != MLXN_STATUS_ERR_BAD_FORMAT)
            wrong++;
        if (f) /* touch everything an accessor can reach */
            for (int64_t i = 0; i < mlxn_gguf_tensor_count(f); i++) {
                const mlxn_gguf_tensor *t = mlxn_gguf_tensor_at(f, i);
                volatile uint8_t sink = 0;
                for (uint64_t j = 0; j < t->size; j++)
                    sink ^= ((const uint8_t *)t->data)[j];
                (void)sink;
            }
        mlxn_gguf_free(f);
        free(copy);
    }
    EXPECT("gguf/mutations", wrong == 0, "%d mutated files gave a status other than OK or BAD_FORMAT", wrong);
    free(b.p);
}

static char *temp_path(const char *suffix)
{
    static char path[256];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/mlxn-test-%d-%s", dir && *dir ? dir : "/tmp", (int)getpid(), suffix);
    return path;
}

static bool same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb)
            same = false;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

static void test_round_trip(rng *g)
{
    const char *name = "gguf/round-trip";
    mlxn_gguf_writer *w = NULL;
    mlxn_gguf *r = NULL, *r2 = NULL, *nested = NULL;
    mlxn_gguf_writer *w2 = NULL;
    char path[256], path2[256];
    snprintf(path, sizeof path, "%s", temp_path("a.gguf"));
    snprintf(path2, sizeof path2, "%s", temp_path("b.gguf"));
    /* every scalar type, with values at their limits */
    uint8_t u8 = 255;
    int8_t i8 = -128;
    uint16_t u16 = 65535;
    int16_t i16 = -32768;
    uint32_t u32 = 4000000000u, align = 64;
    int32_t i32 = -2000000000;
    float f32 = -1.5e-30f;
    uint8_t bl = 1;
    uint64_t u64 = 18446744073709551615ull;
    int64_t i64 = INT64_MIN;
    double f64 = 3.141592653589793;
    float farr[5] = {1, 2, 3, -4, 1e30f};
    int64_t iarr[3] = {-1, 0, INT64_MAX};
    const char *sarr[3] = {"alpha", "", "\xe2\x96\x81token"};
    /* tensors: f32, q4_0, q4_K, and a type mlxn has no kernel for (iq2_xxs) */
    float tf[3 * 5];
    uint8_t q40[2 * 3 * 18], q4k[144 * 2], iq2[66];
    for (int i = 0; i < 15; i++)
        tf[i] = (float)rng_normal(g);
    for (size_t i = 0; i < sizeof q40; i++)
        q40[i] = (uint8_t)rng_next(g);
    for (size_t i = 0; i < sizeof q4k; i++)
        q4k[i] = (uint8_t)rng_next(g);
    for (size_t i = 0; i < sizeof iq2; i++)
        iq2[i] = (uint8_t)rng_next(g);
    int64_t ne_f[2] = {5, 3}, ne_q[3] = {64, 3, 1}, ne_k[1] = {512}, ne_i[1] = {256};

    /* a file with a nested array to copy from (the writer builds nested arrays only by copy) */
    buf b = {0};
    valid_file(&b);
    CHECK_OK(name, mlxn_gguf_open_memory_borrowed(b.p, b.len, &nested));

    CHECK_OK(name, mlxn_gguf_writer_create(&w));
    CHECK_OK(name, mlxn_gguf_writer_set_scalar(w, "general.alignment", MLXN_GGUF_TYPE_UINT32, &align));
    CHECK_OK(name, mlxn_gguf_writer_set_scalar(w, "t.u8", MLXN_GGUF_TYPE_UINT8, &u8));
    CHECK_OK(name, mlxn_gguf_writer_set_scalar(w, "t.i8", MLXN_GGUF_TYPE_INT8, &i8));
    CHECK_OK(name, mlxn_gguf_writer_set_scalar(w, "t.u16", MLXN_GGUF_TYPE_UINT16, &u16));
    CHECK_OK(name, mlxn_gguf_writer_set_scalar(w, "t.i16", MLXN_GGUF_TYPE_INT16, &i16));
    CHECK_OK(name, mlxn_gguf_writer_set_scalar(w, "t.u32", MLXN_GGUF_TYPE_UINT32, &u32));
    CHECK_OK(name, mlxn_gguf_writer_set_scalar(w, "t.i32", MLXN_GGUF_TYPE_INT32, &i32));
    CHECK_OK(name, mlxn_gguf_writer_set_scalar(w, "t.f32", MLXN_GGUF_TYPE_FLOAT32, &f32));
    CHECK_OK(name, mlxn_gguf_writer_set_scalar(w, "t.bool", MLXN_GGUF_TYPE_BOOL, &bl));
    CHECK_OK(name, mlxn_gguf_writer_set_scalar(w, "t.u64", MLXN_GGUF_TYPE_UINT64, &u64));
    CHECK_OK(name, mlxn_gguf_writer_set_scalar(w, "t.i64", MLXN_GGUF_TYPE_INT64, &i64));
    CHECK_OK(name, mlxn_gguf_writer_set_scalar(w, "t.f64", MLXN_GGUF_TYPE_FLOAT64, &f64));
    CHECK_OK(name, mlxn_gguf_writer_set_string(w, "t.str", "with\0nul", 8));
    CHECK_OK(name, mlxn_gguf_writer_set_array(w, "t.farr", MLXN_GGUF_TYPE_FLOAT32, farr, 5));
    CHECK_OK(name, mlxn_gguf_writer_set_array(w, "t.iarr", MLXN_GGUF_TYPE_INT64, iarr, 3));
    CHECK_OK(name, mlxn_gguf_writer_set_array(w, "t.sarr", MLXN_GGUF_TYPE_STRING, sarr, 3));
    CHECK_OK(name, mlxn_gguf_writer_set_array(w, "t.empty", MLXN_GGUF_TYPE_UINT8, NULL, 0));
    CHECK_OK(name, mlxn_gguf_writer_set_value(w, "t.nested", mlxn_gguf_find(nested, "x.nested")));
    EXPECT("gguf/writer/duplicate-key", mlxn_gguf_writer_set_scalar(w, "t.u8", MLXN_GGUF_TYPE_UINT8, &u8) ==
                                            MLXN_STATUS_ERR_INVALID_ARG,
           "duplicate key accepted");
    CHECK_OK(name, mlxn_gguf_writer_add_tensor(w, "f", 0, 2, ne_f, tf));
    CHECK_OK(name, mlxn_gguf_writer_add_tensor(w, "q", 2, 3, ne_q, q40));
    CHECK_OK(name, mlxn_gguf_writer_add_tensor(w, "k", 12, 1, ne_k, q4k));
    CHECK_OK(name, mlxn_gguf_writer_add_tensor(w, "iq", 16, 1, ne_i, iq2));
    EXPECT("gguf/writer/partial-block", mlxn_gguf_writer_add_tensor(w, "bad", 2, 1, (int64_t[]){33}, q40) ==
                                            MLXN_STATUS_ERR_SHAPE,
           "partial block accepted");
    CHECK_OK(name, mlxn_gguf_writer_write(w, path));
    CHECK_OK(name, mlxn_gguf_open(path, &r));

    {
        uint64_t u;
        int64_t i;
        double d;
        bool bb;
        const char *s;
        size_t len;
        bool ok = mlxn_gguf_version(r) == 3 && mlxn_gguf_alignment(r) == 64 &&
                  mlxn_gguf_kv_count(r) == 18 && mlxn_gguf_tensor_count(r) == 4;
        ok = ok && mlxn_gguf_get_uint(r, "t.u8", &u) == 0 && u == 255;
        ok = ok && mlxn_gguf_get_int(r, "t.i8", &i) == 0 && i == -128;
        ok = ok && mlxn_gguf_get_uint(r, "t.u16", &u) == 0 && u == 65535;
        ok = ok && mlxn_gguf_get_int(r, "t.i16", &i) == 0 && i == -32768;
        ok = ok && mlxn_gguf_get_uint(r, "t.u32", &u) == 0 && u == 4000000000u;
        ok = ok && mlxn_gguf_get_int(r, "t.i32", &i) == 0 && i == -2000000000;
        ok = ok && mlxn_gguf_get_float(r, "t.f32", &d) == 0 && (float)d == -1.5e-30f;
        ok = ok && mlxn_gguf_get_bool(r, "t.bool", &bb) == 0 && bb;
        ok = ok && mlxn_gguf_get_uint(r, "t.u64", &u) == 0 && u == u64;
        ok = ok && mlxn_gguf_get_int(r, "t.i64", &i) == 0 && i == INT64_MIN;
        ok = ok && mlxn_gguf_get_float(r, "t.f64", &d) == 0 && d == f64;
        ok = ok && mlxn_gguf_value_string(mlxn_gguf_find(r, "t.str"), &s, &len) == 0 && len == 8 &&
             memcmp(s, "with\0nul", 8) == 0;
        EXPECT("gguf/round-trip/scalars", ok, "a scalar or string differs");
        mlxn_gguf_type et;
        uint64_t n;
        const mlxn_gguf_value *fa = mlxn_gguf_find(r, "t.farr"), *ia = mlxn_gguf_find(r, "t.iarr"),
                              *sa = mlxn_gguf_find(r, "t.sarr"), *ea = mlxn_gguf_find(r, "t.empty"),
                              *na = mlxn_gguf_find(r, "t.nested");
        ok = mlxn_gguf_array_info(fa, &et, &n) == 0 && et == MLXN_GGUF_TYPE_FLOAT32 && n == 5 &&
             memcmp(mlxn_gguf_array_data(fa), farr, sizeof farr) == 0;
        ok = ok && mlxn_gguf_value_int(mlxn_gguf_array_at(ia, 2), &i) == 0 && i == INT64_MAX;
        ok = ok && mlxn_gguf_value_string(mlxn_gguf_array_at(sa, 2), &s, &len) == 0 &&
             strcmp(s, sarr[2]) == 0 && mlxn_gguf_value_string(mlxn_gguf_array_at(sa, 1), &s, &len) == 0 &&
             len == 0;
        ok = ok && mlxn_gguf_array_info(ea, &et, &n) == 0 && n == 0 && mlxn_gguf_array_at(ea, 0) == NULL;
        ok = ok && mlxn_gguf_value_int(mlxn_gguf_array_at(mlxn_gguf_array_at(na, 1), 2), &i) == 0 && i == -5;
        EXPECT("gguf/round-trip/arrays", ok, "an array differs");
        const mlxn_gguf_tensor *tq = mlxn_gguf_find_tensor(r, "q"), *tk = mlxn_gguf_find_tensor(r, "k"),
                               *tf2 = mlxn_gguf_find_tensor(r, "f"), *ti = mlxn_gguf_find_tensor(r, "iq");
        ok = tq && tk && tf2 && ti && tq->size == sizeof q40 && memcmp(tq->data, q40, sizeof q40) == 0 &&
             tk->size == sizeof q4k && memcmp(tk->data, q4k, sizeof q4k) == 0 &&
             memcmp(tf2->data, tf, sizeof tf) == 0 && memcmp(ti->data, iq2, sizeof iq2) == 0 &&
             tq->n_dims == 3 && tq->ne[2] == 1 && tq->offset % 64 == 0 && tk->offset % 64 == 0 &&
             (mlxn_gguf_data_offset(r) % 64) == 0;
        EXPECT("gguf/round-trip/tensors", ok, "tensor bytes, shapes or alignment differ");
        ok = ti && ti->type.dtype == MLXN_DTYPE_COUNT && strcmp(ti->type.name, "iq2_xxs") == 0;
        EXPECT("gguf/round-trip/type-without-kernel", ok, "iq2_xxs not recognized");
        /* read -> write -> identical bytes */
        CHECK_OK(name, mlxn_gguf_writer_create(&w2));
        for (int64_t k = 0; k < mlxn_gguf_kv_count(r); k++)
            CHECK_OK(name, mlxn_gguf_writer_set_value(w2, mlxn_gguf_kv_key(r, k), mlxn_gguf_kv_value(r, k)));
        for (int64_t k = 0; k < mlxn_gguf_tensor_count(r); k++) {
            const mlxn_gguf_tensor *t = mlxn_gguf_tensor_at(r, k);
            CHECK_OK(name, mlxn_gguf_writer_add_tensor(w2, t->name, t->ggml_type, t->n_dims, t->ne, t->data));
        }
        CHECK_OK(name, mlxn_gguf_writer_write(w2, path2));
        EXPECT("gguf/round-trip/rewrite-identical", same_file(path, path2), "re-written file differs");
        CHECK_OK(name, mlxn_gguf_open(path2, &r2));
    }

    /* typed getters: mismatches and missing keys are errors, not aborts */
    {
        uint64_t u;
        int64_t i;
        const char *s;
        EXPECT("gguf/getter/type-mismatch", mlxn_gguf_get_string(r, "t.u32", &s) == MLXN_STATUS_ERR_DTYPE &&
                                                strstr(mlxn_last_error(), "uint32"),
               "%s", mlxn_last_error());
        EXPECT("gguf/getter/negative-as-uint", mlxn_gguf_get_uint(r, "t.i8", &u) == MLXN_STATUS_ERR_DTYPE,
               "negative read as unsigned");
        EXPECT("gguf/getter/u64-as-int", mlxn_gguf_get_int(r, "t.u64", &i) == MLXN_STATUS_ERR_DTYPE,
               "u64 max read as int64");
        EXPECT("gguf/getter/missing", mlxn_gguf_get_uint(r, "no.such.key", &u) == MLXN_STATUS_ERR_INVALID_ARG &&
                                          strstr(mlxn_last_error(), "no.such.key"),
               "%s", mlxn_last_error());
        EXPECT("gguf/getter/float-from-int", mlxn_gguf_get_float(r, "t.u8", &(double){0}) == MLXN_STATUS_ERR_DTYPE,
               "int read as float");
    }
fail:
    mlxn_gguf_writer_free(w);
    mlxn_gguf_writer_free(w2);
    mlxn_gguf_free(r);
    mlxn_gguf_free(r2);
    mlxn_gguf_free(nested);
    free(b.p);
    unlink(path);
    unlink(path2);
}

/* Views and uploads: the data section reaches every device byte for byte. */
static bool count_progress(void *user, size_t done, size_t total)
{
    int *calls = user;
    (*calls)++;
    return done <= total;
}

static void test_views_and_upload(test_devices *devs, rng *g)
{
    buf b = {0};
    valid_file(&b);
    mlxn_gguf *f = NULL;
    mlxn_buffer *mapped = NULL;
    if (mlxn_gguf_open_memory_borrowed(b.p, b.len, &f) != MLXN_STATUS_OK) {
        harness_fail("gguf/views", "%s", mlxn_last_error());
        free(b.p);
        return;
    }
    mlxn_tensor view;
    const mlxn_gguf_tensor *t = mlxn_gguf_find_tensor(f, "b");
    bool ok = mlxn_gguf_map_data(f, devs->ref.device, &mapped) == MLXN_STATUS_OK &&
              mlxn_gguf_tensor_view(t, mapped, 0, &view) == MLXN_STATUS_OK && view.ndim == 2 &&
              view.shape[0] == 2 && view.shape[1] == 32 && view.dtype == MLXN_DTYPE_Q4_0 &&
              (const char *)mlxn_buffer_host_ptr(mapped) + view.offset == (const char *)t->data;
    EXPECT("gguf/views/map", ok, "%s", mlxn_last_error());
    mlxn_buffer_free(mapped);
    for (int d = 0; d < devs->count; d++) {
        char name[96];
        snprintf(name, sizeof name, "gguf/upload @%s", devs->list[d].name);
        mlxn_buffer *up = NULL;
        int calls = 0;
        size_t n = mlxn_gguf_data_size(f);
        uint8_t *back = malloc(n ? n : 1);
        ok = mlxn_gguf_upload_data(f, devs->list[d].device, count_progress, &calls, &up) == MLXN_STATUS_OK &&
             mlxn_buffer_download(up, 0, back, n, NULL) == MLXN_STATUS_OK &&
             memcmp(back, (const uint8_t *)mlxn_gguf_file_data(f) + mlxn_gguf_data_offset(f), n) == 0 &&
             calls >= 1;
        EXPECT(name, ok, "%s", mlxn_last_error());
        mlxn_buffer_free(up);
        free(back);
    }
    (void)g;
    mlxn_gguf_free(f);
    free(b.p);
}

/* ---------------------------------------------------------------- real models */

static void test_real_model(const char *model, const char *file)
{
    char path[512], fixture[512], name[128];
    const char *cache = getenv("MLXN_CACHE");
    const char *home = getenv("HOME");
    if (cache && *cache)
        snprintf(path, sizeof path, "%s/models/%s", cache, file);
    else
        snprintf(path, sizeof path, "%s/.cache/mlxn/models/%s", home ? home : ".", file);
    snprintf(name, sizeof name, "gguf/model/%s", model);
    if (access(path, R_OK) != 0) {
        char why[600];
        snprintf(why, sizeof why, "%s not found (run scripts/fetch_models.py)", path);
        harness_skip(name, why);
        return;
    }
    mlxn_gguf *g = NULL;
    mlxn_status st = mlxn_gguf_open(path, &g);
    if (st != MLXN_STATUS_OK) {
        harness_fail(name, "open: %s", mlxn_last_error());
        return;
    }
    snprintf(fixture, sizeof fixture, "%s/%s.tensors.tsv", MLXN_FIXTURES, model);
    FILE *fx = fopen(fixture, "r");
    if (!fx) {
        harness_fail(name, "cannot read %s", fixture);
        mlxn_gguf_free(g);
        return;
    }
    char line[1024];
    int64_t rows = 0, bad = 0;
    while (fgets(line, sizeof line, fx)) {
        char *tname = strtok(line, "\t\n"), *ttype = strtok(NULL, "\t\n"), *tshape = strtok(NULL, "\t\n");
        if (!tname || !ttype || !tshape)
            continue;
        rows++;
        const mlxn_gguf_tensor *t = mlxn_gguf_find_tensor(g, tname);
        if (!t || strcasecmp(t->type.name, ttype) != 0) {
            if (bad++ < 3)
                printf("  %s: %s has %s, the gguf package says %s\n", model, tname, t ? t->type.name : "(missing)", ttype);
            continue;
        }
        int d = 0;
        for (char *tok = strtok(tshape, ","); tok; tok = strtok(NULL, ","), d++)
            if (d >= t->n_dims || t->ne[d] != atoll(tok))
                d = 99;
        if (d != t->n_dims && bad++ < 3)
            printf("  %s: %s shape differs\n", model, tname);
    }
    fclose(fx);
    EXPECT(name, bad == 0 && rows == mlxn_gguf_tensor_count(g) && rows > 0,
           "%lld of %lld tensors differ from the gguf package's list (we have %lld)", (long long)bad,
           (long long)rows, (long long)mlxn_gguf_tensor_count(g));
    /* metadata keys and types */
    snprintf(fixture, sizeof fixture, "%s/%s.metadata.tsv", MLXN_FIXTURES, model);
    fx = fopen(fixture, "r");
    bad = rows = 0;
    while (fx && fgets(line, sizeof line, fx)) {
        char *key = strtok(line, "\t\n"), *type = strtok(NULL, "\t\n");
        if (!key || !type)
            continue;
        rows++;
        const mlxn_gguf_value *v = mlxn_gguf_find(g, key);
        if (!v || strcmp(mlxn_gguf_type_name(mlxn_gguf_value_type(v)), type) != 0)
            bad++;
    }
    if (fx)
        fclose(fx);
    snprintf(name, sizeof name, "gguf/model/%s/metadata", model);
    EXPECT(name, fx && bad == 0 && rows == mlxn_gguf_kv_count(g), "%lld of %lld keys differ", (long long)bad,
           (long long)rows);
    mlxn_gguf_free(g);
}

int main(int argc, char **argv)
{
    rng g = {.s = harness_seed(argc, argv)};
    test_devices devs;
    if (!test_devices_open(&devs))
        return 1;
    test_valid_and_truncated();
    test_hostile();
    test_mutations(&g);
    test_round_trip(&g);
    test_views_and_upload(&devs, &g);
    test_real_model("gemma3-270m", "gemma-3-270m-q4_k_m.gguf");
    test_real_model("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf");
    test_devices_close(&devs);
    return harness_finish();
}
