/* Quantization formats against their own tools' output: MLX affine against golden vectors
 * made by the mlx package (tests/fixtures/make_mlx_golden.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "harness.h"
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

int main(int argc, char **argv)
{
    harness_seed(argc, argv);
    test_mlx_golden();
    return harness_finish();
}
