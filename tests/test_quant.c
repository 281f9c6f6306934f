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

/* f16_at_least(v)'s largest value: one f16 unit above v, 2^-10 of v or 2^-24 (subnormal) */
static double f16_up_bound(double v) { return v * (1 + 1.0 / 1024) + 0x1p-24; }

/* The K and IQ4 quantizers are our own (not bit-exact with ggml; gguf-py has none): their bound
 * is derived from the input alone, per sub-block j of a super-block, for the fits that
 * ggml_quant.c describes (sub-block codes rounded up, so nothing clips outside the code book):
 *   affine (Q2_K, Q4_K, Q5_K; q in [0, nmax], codes in [0, cmax]):
 *     m_j = max(0, -min x_j), dmin <= up(max m_j / cmax), the decoded minimum dmin * mc_j < m_j + dmin,
 *     s_j = (max x_j + dmin * mc_j) / nmax < (max x_j + m_j + dmin) / nmax = R_j / nmax,
 *     d <= up(max s_j / cmax), step d * sc_j < s_j + d: error <= (R_j / nmax + d) / 2;
 *   symmetric (Q3_K, Q6_K; q in [-qmax - 1, qmax]): s_j = max |x_j| / qmax, d <= up(max s_j / cmax),
 *     error <= (s_j + d) / 2;
 *   IQ4_NL: |d| <= up(max |x| / 127) with the extreme on -127 (past +113 clips: 14 steps) or
 *     up(max |x| / 113) with it on +113 (half the widest gap, 12 steps): error <= 14 up(max |x| / 127);
 *   IQ4_XS: |dl_j| < max |x_j| / 127 + d, d <= up(max_j (max |x_j| / 127) / 31): error <= 14 |dl_j|.
 * up(v) is f16_up_bound. Every bound gets a relative 1e-5 for the f32 rounding of the fit and of
 * the decoder's products (a few f32 ulps of the sub-block's magnitude). */
enum { FIT_EXACT, FIT_AFFINE, FIT_SYMMETRIC, FIT_IQ4_NL, FIT_IQ4_XS };
typedef struct {
    mlxn_dtype t;
    int fit, len, nmax, cmax; /* sub-block length, code and scale-code ranges of the K fits */
    double steps;             /* exact formats: the bound in steps of the stored d */
} rt_type;

/* The largest |error| allowed for each of the be values of x (one block), in bound[] */
static void rt_bounds(const rt_type *r, const float *x, int be, const uint8_t *blk, double *bound)
{
    double amax_all = 0, mmax = 0, rmax = 0, rj[16], aj[16];
    const int nsub = r->fit == FIT_EXACT ? 1 : be / r->len;
    for (int j = 0; j < nsub; j++) {
        const int len = be / nsub;
        double mn = x[j * len], mx = x[j * len], a = 0;
        for (int l = 0; l < len; l++) {
            mn = fmin(mn, x[j * len + l]);
            mx = fmax(mx, x[j * len + l]);
            a = fmax(a, fabs(x[j * len + l]));
        }
        aj[j] = a;
        mmax = fmax(mmax, fmax(0, -mn));
        amax_all = fmax(amax_all, a);
        rj[j] = r->fit == FIT_AFFINE ? mx + fmax(0, -mn) : a / (r->nmax ? r->nmax : 1);
    }
    const double dmin = r->fit == FIT_AFFINE ? f16_up_bound(mmax / r->cmax) : 0;
    for (int j = 0; j < nsub; j++) {
        if (r->fit == FIT_AFFINE)
            rj[j] = (rj[j] + dmin) / r->nmax;
        rmax = fmax(rmax, rj[j]);
    }
    for (int j = 0; j < nsub; j++) {
        double b = 0;
        if (r->fit == FIT_EXACT) {
            uint16_t dh; /* d leads every block of the exact formats */
            memcpy(&dh, blk, 2);
            b = r->steps * fabs(mlxn_f16_to_f32(dh)) * (1 + 1e-6) + amax_all / 512;
        } else if (r->fit == FIT_AFFINE || r->fit == FIT_SYMMETRIC) {
            b = 0.5 * (rj[j] + f16_up_bound(rmax / r->cmax));
        } else if (r->fit == FIT_IQ4_NL) {
            b = 14 * f16_up_bound(aj[j] / 127);
        } else {
            b = 14 * (aj[j] / 127 + f16_up_bound(amax_all / 127 / 31));
        }
        b = r->fit == FIT_EXACT ? b : b * (1 + 1e-5) + amax_all * 1e-6;
        for (int l = 0; l < be / nsub; l++)
            bound[j * (be / nsub) + l] = b;
    }
}

/* quantize -> dequantize on fresh random data, scale and offset drawn per 16 values (so every
 * sub-block of every format differs from its neighbours, over 5 decades), plus an all-zero and
 * two constant super-blocks. The exact formats: each value within half a step (a whole step for
 * the symmetric formats, whose largest positive code is clipped) of the stored scale, plus the
 * f16 rounding of the scale and minimum (2^-9 of the block's largest magnitude); the others:
 * rt_bounds. */
static void test_ggml_round_trip(rng *g)
{
    static const rt_type types[] = {
        {MLXN_DTYPE_Q4_0, FIT_EXACT, 32, 0, 0, 1.0},   {MLXN_DTYPE_Q4_1, FIT_EXACT, 32, 0, 0, 0.5},
        {MLXN_DTYPE_Q5_0, FIT_EXACT, 32, 0, 0, 1.0},   {MLXN_DTYPE_Q5_1, FIT_EXACT, 32, 0, 0, 0.5},
        {MLXN_DTYPE_Q8_0, FIT_EXACT, 32, 0, 0, 0.5},   {MLXN_DTYPE_Q2_K, FIT_AFFINE, 16, 3, 15, 0},
        {MLXN_DTYPE_Q3_K, FIT_SYMMETRIC, 16, 3, 31, 0}, {MLXN_DTYPE_Q4_K, FIT_AFFINE, 32, 15, 63, 0},
        {MLXN_DTYPE_Q5_K, FIT_AFFINE, 32, 31, 63, 0},  {MLXN_DTYPE_Q6_K, FIT_SYMMETRIC, 16, 31, 127, 0},
        {MLXN_DTYPE_IQ4_NL, FIT_IQ4_NL, 32, 0, 0, 0},  {MLXN_DTYPE_IQ4_XS, FIT_IQ4_XS, 32, 0, 0, 0},
    };
    enum { N = 32 * 256 };
    static float x[N], y[N];
    static double bound[256];
    static uint8_t q[N / 32 * 34]; /* the largest: Q8_0, 34 bytes per 32 */
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const rt_type *r = &types[ti];
        const int be = (int)mlxn_dtype_block_elems(r->t), bb = (int)mlxn_dtype_block_bytes(r->t);
        char name[64];
        snprintf(name, sizeof name, "ggml/round-trip/%s", mlxn_dtype_name(r->t));
        for (int c = 0; c < N / 16; c++) {
            const double scale = exp(rng_uniform(g) * 12 - 6), shift = (rng_uniform(g) - 0.5) * 4 * scale;
            for (int j = 0; j < 16; j++)
                x[16 * c + j] = (float)(rng_normal(g) * scale + (c % 2 ? shift : 0));
        }
        for (int j = 0; j < 256; j++) { /* all zero, constant negative, constant positive */
            x[j] = 0.0f;
            x[256 + j] = -0.3712f;
            x[512 + j] = 2.5f;
        }
        memset(y, 0xff, sizeof y);
        mlxn_status st = mlxn_ggml_quantize(r->t, x, N, q);
        if (st == MLXN_STATUS_OK)
            st = mlxn_ggml_dequantize(r->t, q, N, y);
        int bad = -1;
        double worst = 0, worst_bad = 0;
        for (int b = 0; st == MLXN_STATUS_OK && b < N / be; b++) {
            rt_bounds(r, x + b * be, be, q + (size_t)b * bb, bound);
            for (int j = 0; j < be; j++) {
                const double e = fabs((double)y[b * be + j] - x[b * be + j]);
                worst = fmax(worst, e / bound[j]);
                if (!(e <= bound[j])) {
                    bad = b * be + j;
                    worst_bad = e / bound[j];
                }
            }
        }
        if (st != MLXN_STATUS_OK || bad >= 0)
            harness_fail(name, "%s; value %d: error %.3g x the bound", mlxn_status_str(st), bad, worst_bad);
        else if (r->fit != FIT_EXACT && worst < 0.2)
            harness_fail(name, "worst error %.3g x the bound: the bound is too loose to test anything", worst);
        else
            harness_pass(name);
        printf("  %s: worst error %.3f of the bound\n", name, worst);
    }
    /* errors: a partial block, a partial super-block, one that is not a GGML block */
    float z[257] = {0};
    uint8_t out[300];
    harness_expect_status("ggml/error/partial-block", mlxn_ggml_dequantize(MLXN_DTYPE_Q4_0, out, 33, z),
                  MLXN_STATUS_ERR_SHAPE, "multiple of 32");
    harness_expect_status("ggml/error/partial-super-block", mlxn_ggml_quantize(MLXN_DTYPE_Q4_K, z, 224, out),
                  MLXN_STATUS_ERR_SHAPE, "multiple of 256");
    harness_expect_status("ggml/error/not-a-block-format", mlxn_ggml_dequantize(MLXN_DTYPE_F32, out, 32, z),
                  MLXN_STATUS_ERR_UNSUPPORTED, "not a GGML block format");
}

int main(int argc, char **argv)
{
    rng g = {.s = harness_seed(argc, argv)};
    test_mlx_golden();
    test_ggml_golden();
    test_ggml_round_trip(&g);
    return harness_finish();
}
