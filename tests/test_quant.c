/* Quantization formats against their own tools' output: MLX affine against golden vectors
 * made by the mlx package (tests/fixtures/make_mlx_golden.py), GGML blocks against the gguf
 * package (tests/fixtures/make_ggml_golden.py); round-trip error bounds on fresh random data. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "harness.h"
#include "mlxn_gguf.h"
#include "mlxn_quant.h"

static float load(int code, const uint8_t *p, int64_t i)
{
    uint16_t h;
    if (code == 0) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    memcpy(&h, p + 2 * i, 2);
    return code == 1 ? mlxn_f16_to_f32(h) : mlxn_bf16_to_f32(h);
}

static void test_mlx_golden(void)
{
    FILE *f = fopen(MLXN_FIXTURES "/mlx_golden.bin", "rb");
    if (!f) {
        harness_fail("mlx/golden", "cannot open the fixture");
        return;
    }
    static const mlxn_dtype dtypes[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    static const char *const names[3] = {"f32", "f16", "bf16"};
    char magic[4];
    uint32_t hdr[5];
    int records = 0;
    while (fread(magic, 1, 4, f) == 4 && fread(hdr, 4, 5, f) == 5) {
        int bits = (int)hdr[0], group = (int)hdr[1], code = (int)hdr[2];
        int64_t rows = hdr[3], cols = hdr[4];
        size_t es = code == 0 ? 4 : 2;
        size_t nw = (size_t)(rows * cols) * es, nq = (size_t)(rows * cols * bits / 8),
               ns = (size_t)(rows * cols / group) * es;
        uint8_t *w = malloc(nw), *q = malloc(nq), *s = malloc(ns), *b = malloc(ns), *d = malloc(nw);
        uint8_t *q2 = malloc(nq), *s2 = malloc(ns), *b2 = malloc(ns);
        float *d2 = malloc((size_t)(rows * cols) * sizeof(float));
        if (memcmp(magic, "MLXG", 4) || fread(w, 1, nw, f) != nw || fread(q, 1, nq, f) != nq ||
            fread(s, 1, ns, f) != ns || fread(b, 1, ns, f) != ns || fread(d, 1, nw, f) != nw) {
            harness_fail("mlx/golden", "fixture is truncated");
            records = -1000;
        } else {
            char name[96];
            snprintf(name, sizeof name, "mlx/quantize/%s/bits%d/g%d", names[code], bits, group);
            mlxn_status st = mlxn_mlx_quantize(w, dtypes[code], rows, cols, bits, group, q2, s2, b2);
            if (st != MLXN_STATUS_OK)
                harness_fail(name, "%s", mlxn_last_error());
            else if (memcmp(q, q2, nq) || memcmp(s, s2, ns) || memcmp(b, b2, ns)) {
                int64_t first = -1;
                for (size_t i = 0; i < nq && first < 0; i++)
                    if (q[i] != q2[i])
                        first = (int64_t)i;
                harness_fail(name, "differs from mlx (codes %s at byte %lld, scales %s, biases %s)",
                             memcmp(q, q2, nq) ? "differ" : "match", (long long)first,
                             memcmp(s, s2, ns) ? "differ" : "match", memcmp(b, b2, ns) ? "differ" : "match");
            } else
                harness_pass(name);
            snprintf(name, sizeof name, "mlx/dequantize/%s/bits%d/g%d", names[code], bits, group);
            st = mlxn_mlx_dequantize(q, s, b, dtypes[code], rows, cols, bits, group, d2);
            int64_t diff = 0, worst = -1;
            for (int64_t i = 0; i < rows * cols; i++) {
                float want = load(code, d, i);
                /* mlx returns w's dtype: compare after rounding ours to it */
                float got = code == 0 ? d2[i] : code == 1 ? mlxn_f16_to_f32(mlxn_f32_to_f16(d2[i]))
                                                          : mlxn_bf16_to_f32(mlxn_f32_to_bf16(d2[i]));
                if (memcmp(&got, &want, 4) != 0) {
                    diff++;
                    worst = i;
                }
            }
            if (st != MLXN_STATUS_OK || diff)
                harness_fail(name, "%lld of %lld values differ from mlx (last at %lld: %.9g vs %.9g)",
                             (long long)diff, (long long)(rows * cols), (long long)worst,
                             worst >= 0 ? (double)d2[worst] : 0.0, worst >= 0 ? (double)load(code, d, worst) : 0.0);
            else
                harness_pass(name);
            records++;
        }
        free(w); free(q); free(s); free(b); free(d); free(q2); free(s2); free(b2); free(d2);
    }
    fclose(f);
    if (records != 54)
        harness_fail("mlx/golden", "read %d records, expected 54", records);
}

/* ---------------------------------------------------------------- GGML blocks */

static int read_exact(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n; }


static void test_ggml_golden(void)
{
    FILE *f = fopen(MLXN_FIXTURES "/ggml_golden.bin", "rb");
    char magic[8];
    uint32_t hdr[2];
    if (!f || !read_exact(f, magic, 8) || memcmp(magic, "MLXNGGML", 8) || !read_exact(f, hdr, 8) || hdr[0] != 1) {
        harness_fail("ggml/golden", "cannot read the fixture");
        if (f)
            fclose(f);
        return;
    }
    int dequant_types = 0, quant_types = 0;
    for (uint32_t r = 0; r < hdr[1]; r++) {
        uint32_t rec[3];
        mlxn_ggml_type_info ti;
        if (!read_exact(f, rec, 12) || !mlxn_ggml_type_info_get(rec[1], &ti) || rec[2] % ti.block_elems) {
            harness_fail("ggml/golden", "bad record %u", r);
            break;
        }
        const size_t n = rec[2], nb = n / ti.block_elems * ti.block_bytes;
        uint8_t *blocks = malloc(nb), *mine = malloc(nb);
        float *vals = malloc(n * 4), *out = malloc(n * 4);
        char name[64];
        int ok = blocks && mine && vals && out;
        if (ok && rec[0] == 0)
            ok = read_exact(f, blocks, nb) && read_exact(f, vals, n * 4);
        else if (ok)
            ok = read_exact(f, vals, n * 4) && read_exact(f, blocks, nb);
        if (!ok) {
            harness_fail("ggml/golden", "truncated record %u", r);
        } else if (rec[0] == 0) {
            snprintf(name, sizeof name, "ggml/dequantize/%s", ti.name);
            memset(out, 0xff, n * 4); /* NaN poison */
            mlxn_status st = mlxn_ggml_dequantize(ti.dtype, blocks, (int64_t)n, out);
            size_t diff = 0, last = 0;
            for (size_t i = 0; i < n; i++)
                if (memcmp(&out[i], &vals[i], 4)) {
                    diff++;
                    last = i;
                }
            if (st != MLXN_STATUS_OK || diff)
                harness_fail(name, "%s; %zu of %zu values differ from gguf-py (last at %zu: %.9g vs %.9g)",
                             mlxn_status_str(st), diff, n, last, (double)out[last], (double)vals[last]);
            else
                harness_pass(name);
            dequant_types++;
        } else {
            snprintf(name, sizeof name, "ggml/quantize/%s", ti.name);
            memset(mine, 0xa5, nb);
            mlxn_status st = mlxn_ggml_quantize(ti.dtype, vals, (int64_t)n, mine);
            size_t first = nb;
            for (size_t i = 0; i < nb && first == nb; i++)
                if (mine[i] != blocks[i])
                    first = i;
            if (st != MLXN_STATUS_OK || first != nb)
                harness_fail(name, "%s; differs from gguf-py at byte %zu (block %zu)", mlxn_status_str(st),
                             first, first / (size_t)ti.block_bytes);
            else
                harness_pass(name);
            quant_types++;
        }
        free(blocks); free(mine); free(vals); free(out);
        if (!ok)
            break;
    }
    fclose(f);
    if (dequant_types != 12 || quant_types != 5)
        harness_fail("ggml/golden", "read %d dequantize and %d quantize records, expected 12 and 5",
                     dequant_types, quant_types);
}

/* quantize -> dequantize on fresh random blocks: each value within half a step (a whole step
 * for the symmetric formats, whose largest positive code is clipped) of the stored scale, plus
 * the f16 rounding of the scale and minimum (2^-9 of the block's largest magnitude). */
static void test_ggml_round_trip(rng *g)
{
    static const struct { mlxn_dtype t; uint32_t ggml_id; double steps; } types[] = {
        {MLXN_DTYPE_Q4_0, 2, 1.0}, {MLXN_DTYPE_Q4_1, 3, 0.5}, {MLXN_DTYPE_Q5_0, 6, 1.0},
        {MLXN_DTYPE_Q5_1, 7, 0.5}, {MLXN_DTYPE_Q8_0, 8, 0.5},
    };
    enum { BLOCKS = 64, N = BLOCKS * 32 };
    float x[N], y[N];
    uint8_t q[BLOCKS * 34];
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        char name[64];
        snprintf(name, sizeof name, "ggml/round-trip/%s", mlxn_dtype_name(types[ti].t));
        for (int b = 0; b < BLOCKS; b++) {
            const double scale = exp(rng_uniform(g) * 12 - 6), shift = (rng_uniform(g) - 0.5) * 4 * scale;
            for (int j = 0; j < 32; j++)
                x[32 * b + j] = (float)(rng_normal(g) * scale + (b % 2 ? shift : 0));
        }
        memset(y, 0xff, sizeof y);
        mlxn_status st = mlxn_ggml_quantize(types[ti].t, x, N, q);
        if (st == MLXN_STATUS_OK)
            st = mlxn_ggml_dequantize(types[ti].t, q, N, y);
        mlxn_ggml_type_info info;
        mlxn_ggml_type_info_get(types[ti].ggml_id, &info);
        int bad = -1;
        double worst = 0;
        for (int b = 0; st == MLXN_STATUS_OK && b < BLOCKS; b++) {
            uint16_t dh; /* d leads every block */
            memcpy(&dh, q + b * info.block_bytes, 2);
            double amax = 0;
            for (int j = 0; j < 32; j++)
                amax = fmax(amax, fabs(x[32 * b + j]));
            const double bound = types[ti].steps * fabs(mlxn_f16_to_f32(dh)) * (1 + 1e-6) + amax / 512;
            for (int j = 0; j < 32; j++) {
                const double e = fabs((double)y[32 * b + j] - x[32 * b + j]);
                if (!(e <= bound)) {
                    bad = 32 * b + j;
                    worst = e / bound;
                }
            }
        }
        if (st != MLXN_STATUS_OK || bad >= 0)
            harness_fail(name, "%s; value %d: error %.3g x the bound", mlxn_status_str(st), bad, worst);
        else
            harness_pass(name);
    }
    /* errors: a partial block, a format without a quantizer, one that is not a GGML block */
    float z[33] = {0};
    uint8_t out[300];
    harness_expect_status("ggml/error/partial-block", mlxn_ggml_dequantize(MLXN_DTYPE_Q4_0, out, 33, z),
                  MLXN_STATUS_ERR_SHAPE, "multiple of 32");
    harness_expect_status("ggml/error/no-quantizer", mlxn_ggml_quantize(MLXN_DTYPE_Q4_K, z, 0, out),
                  MLXN_STATUS_ERR_UNSUPPORTED, "no reference quantizer for q4_K");
    harness_expect_status("ggml/error/not-a-block-format", mlxn_ggml_dequantize(MLXN_DTYPE_F32, out, 32, z),
                  MLXN_STATUS_ERR_UNSUPPORTED, "not a GGML block format");
}

int main(int argc, char **argv)
{
    rng g = {harness_seed(argc, argv)};
    test_mlx_golden();
    test_ggml_golden();
    test_ggml_round_trip(&g);
    return harness_finish();
}
