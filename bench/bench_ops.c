/* The op benchmark table: each row times one op configuration on buffers rotated past twice
 * the last-level cache and reports GB/s against the copy bandwidth measured in the same run. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "core/half.h"
#include "formats/mlx_affine.h"
#include "op_variants.h"

#define MAX_SETS 64

typedef struct rms_row {
    rms_variant variant;
    mlxn_dtype dtype;
    int w; /* 0: none, 1: f32 weight */
    int64_t rows, n;
} rms_row;

/* The issue's shapes: a square activation matrix and a long prefill batch of 2048-wide rows;
 * plus one decode-sized row, where launch latency is all there is. */
static const rms_row rms_rows[] = {
    {RMS_NORM, MLXN_DTYPE_F32, 0, 4096, 4096},      {RMS_NORM, MLXN_DTYPE_F32, 1, 4096, 4096},
    {RMS_NORM_MUL, MLXN_DTYPE_F32, 1, 4096, 4096},  {ADD_RMS_NORM, MLXN_DTYPE_F32, 1, 4096, 4096},
    {RMS_NORM, MLXN_DTYPE_BF16, 0, 4096, 4096},     {RMS_NORM, MLXN_DTYPE_BF16, 1, 4096, 4096},
    {RMS_NORM_MUL, MLXN_DTYPE_BF16, 1, 4096, 4096}, {ADD_RMS_NORM, MLXN_DTYPE_BF16, 1, 4096, 4096},
    {RMS_NORM, MLXN_DTYPE_F32, 0, 32768, 2048},     {RMS_NORM, MLXN_DTYPE_F32, 1, 32768, 2048},
    {RMS_NORM_MUL, MLXN_DTYPE_F32, 1, 32768, 2048}, {ADD_RMS_NORM, MLXN_DTYPE_F32, 1, 32768, 2048},
    {RMS_NORM, MLXN_DTYPE_BF16, 0, 32768, 2048},    {RMS_NORM, MLXN_DTYPE_BF16, 1, 32768, 2048},
    {RMS_NORM_MUL, MLXN_DTYPE_BF16, 1, 32768, 2048},{ADD_RMS_NORM, MLXN_DTYPE_BF16, 1, 32768, 2048},
    {RMS_NORM, MLXN_DTYPE_F16, 1, 4096, 4096},      {RMS_NORM, MLXN_DTYPE_F32, 1, 1, 4096},
    {NORM_ADD_RMS_NORM, MLXN_DTYPE_F32, 1, 4096, 4096}, {NORM_ADD_RMS_NORM, MLXN_DTYPE_BF16, 1, 32768, 2048},
    {NORM_ADD_RMS_NORM, MLXN_DTYPE_F32, 1, 1, 640},
};

typedef struct rms_set {
    mlxn_buffer *x, *r, *m, *sum, *y;
} rms_set;

typedef struct rms_ctx {
    const rms_row *row;
    mlxn_stream *s;
    mlxn_buffer *w;
    rms_set sets[MAX_SETS];
    int nsets;
} rms_ctx;

static mlxn_status rms_call(void *ctx, int i)
{
    rms_ctx *c = ctx;
    const rms_set *set = &c->sets[i % c->nsets];
    int64_t shape[2] = {c->row->rows, c->row->n};
    mlxn_tensor x = mlxn_tensor_make(set->x, 0, c->row->dtype, 2, shape);
    mlxn_tensor r = mlxn_tensor_make(set->r, 0, c->row->dtype, 2, shape);
    mlxn_tensor m = mlxn_tensor_make(set->m, 0, c->row->dtype, 2, shape);
    mlxn_tensor sum = mlxn_tensor_make(set->sum, 0, c->row->dtype, 2, shape);
    mlxn_tensor y = mlxn_tensor_make(set->y, 0, c->row->dtype, 2, shape);
    mlxn_tensor w = mlxn_tensor_make(c->w, 0, MLXN_DTYPE_F32, 1, &shape[1]);
    return rms_variant_issue(c->s, c->row->variant, &x, &r, c->row->w ? &w : NULL, c->row->w ? &w : NULL, &m,
                             1e-6f, &sum, &y);
}

/* Fills a buffer with pseudo-random values of dtype, about N(0, 1) (never zeros, no NaN or
 * subnormals, which would time differently). */
static bool fill_random(mlxn_buffer *b, mlxn_dtype dt, size_t bytes, uint64_t seed)
{
    const size_t es = (size_t)mlxn_dtype_block_bytes(dt);
    const size_t chunk = ((size_t)8 << 20) / es * es; /* whole elements (q8_0: blocks) per upload */
    unsigned char *h = malloc(chunk);
    if (!h)
        return false;
    bool ok = true;
    for (size_t off = 0; ok && off < bytes; off += chunk) {
        size_t len = bytes - off < chunk ? bytes - off : chunk;
        for (size_t i = 0; i < len / es; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            /* sum of four uniforms: bell-shaped, mean 0, variance 1/3 */
            float v = 0;
            for (int k = 0; k < 4; k++)
                v += (float)((seed >> (16 * k)) & 0xffff) / 65536.0f - 0.5f;
            v *= 1.7f;
            if (dt == MLXN_DTYPE_U8)
                h[i] = (unsigned char)(seed >> 40);
            else if (dt == MLXN_DTYPE_Q8_0) { /* a valid block: scale ~ |v| / 64, random codes */
                const uint16_t d = mlxn_f32_to_f16(fabsf(v) / 64.0f + 1e-3f);
                memcpy(h + i * es, &d, 2);
                for (size_t j = 0; j < 32; j += 8) {
                    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                    memcpy(h + i * es + 2 + j, &seed, 8);
                }
            }
            else if (dt == MLXN_DTYPE_F32)
                memcpy(h + i * 4, &v, 4);
            else {
                uint16_t q = dt == MLXN_DTYPE_F16 ? mlxn_f32_to_f16(v) : mlxn_f32_to_bf16(v);
                memcpy(h + i * 2, &q, 2);
            }
        }
        ok = mlxn_buffer_upload(b, off, h, len, NULL) == MLXN_STATUS_OK;
    }
    free(h);
    return ok;
}

static void free_rms_ctx(rms_ctx *c)
{
    for (int i = 0; i < c->nsets; i++) {
        mlxn_buffer_free(c->sets[i].x);
        mlxn_buffer_free(c->sets[i].r);
        mlxn_buffer_free(c->sets[i].m);
        mlxn_buffer_free(c->sets[i].sum);
        mlxn_buffer_free(c->sets[i].y);
    }
    mlxn_buffer_free(c->w);
}

static void print_header(void)
{
    printf("%-22s %-13s %-12s %-5s %-5s %10s %10s %10s %9s %7s\n", "device", "op", "shape",
           "dtype", "w", "median_us", "p10_us", "p90_us", "GB/s", "%copy");
}

static int bench_rms_norm(mlxn_device *dev, mlxn_stream *s, const mlxn_device_info *info,
                          double copy_gbps, const bench_options *opt)
{
    int failures = 0;
    for (size_t k = 0; k < sizeof rms_rows / sizeof rms_rows[0]; k++) {
        const rms_row *row = &rms_rows[k];
        size_t es = (size_t)mlxn_dtype_block_bytes(row->dtype);
        size_t bytes = (size_t)(row->rows * row->n) * es;
        /* bytes moved per call: x read and y written, plus m read or r read and sum written,
         * plus the weight */
        double moved = 2.0 * (double)bytes + (row->variant == RMS_NORM_MUL ? (double)bytes : 0) +
                       (rms_variant_has_sum(row->variant) ? 2.0 * (double)bytes : 0) +
                       (row->w ? (double)row->n * 4 * (row->variant == NORM_ADD_RMS_NORM ? 2 : 1) : 0);
        rms_ctx c = {.row = row, .s = s};
        size_t need = info->l2_bytes * 2;
        c.nsets = (int)(need / (size_t)moved) + 2;
        if (c.nsets > MAX_SETS)
            c.nsets = MAX_SETS;
        bool ok = mlxn_buffer_create(dev, (size_t)row->n * 4, &c.w) == MLXN_STATUS_OK &&
                  fill_random(c.w, MLXN_DTYPE_F32, (size_t)row->n * 4, 7);
        int made = 0;
        for (int i = 0; ok && i < c.nsets; i++, made++) {
            rms_set *st = &c.sets[i];
            ok = mlxn_buffer_create(dev, bytes, &st->x) == MLXN_STATUS_OK &&
                 mlxn_buffer_create(dev, bytes, &st->y) == MLXN_STATUS_OK &&
                 fill_random(st->x, row->dtype, bytes, 11 + (uint64_t)i);
            if (ok && row->variant == RMS_NORM_MUL)
                ok = mlxn_buffer_create(dev, bytes, &st->m) == MLXN_STATUS_OK &&
                     fill_random(st->m, row->dtype, bytes, 101 + (uint64_t)i);
            if (ok && rms_variant_has_sum(row->variant))
                ok = mlxn_buffer_create(dev, bytes, &st->r) == MLXN_STATUS_OK &&
                     mlxn_buffer_create(dev, bytes, &st->sum) == MLXN_STATUS_OK &&
                     fill_random(st->r, row->dtype, bytes, 201 + (uint64_t)i);
            /* unused operands alias x so the views stay valid */
            if (ok && !st->m)
                ok = mlxn_buffer_create_sub(st->x, 0, bytes, &st->m) == MLXN_STATUS_OK;
            if (ok && !st->r)
                ok = mlxn_buffer_create_sub(st->x, 0, bytes, &st->r) == MLXN_STATUS_OK &&
                     mlxn_buffer_create_sub(st->y, 0, bytes, &st->sum) == MLXN_STATUS_OK;
        }
        c.nsets = made;
        bench_timing t = {0};
        bool cuda = info->kind == MLXN_DEVICE_CUDA;
        int batch = cuda ? (c.nsets > 8 ? c.nsets : 8) : c.nsets;
        ok = ok && bench_time(dev, s, rms_call, &c, batch, opt->quick ? 10 : 25, &t);
        char shape[32];
        snprintf(shape, sizeof shape, "%lldx%lld", (long long)row->rows, (long long)row->n);
        const char *vname = rms_variant_name(row->variant);
        if (!ok) {
            printf("%-22.22s %-13s %-12s %-5s error: %s\n", info->name, vname, shape,
                   mlxn_dtype_name(row->dtype), mlxn_last_error());
            failures++;
        } else {
            double gbps = moved / (t.median_ms * 1e-3) / 1e9;
            printf("%-22.22s %-13s %-12s %-5s %-5s %10.2f %10.2f %10.2f %9.1f %6.1f%%\n",
                   info->name, vname, shape, mlxn_dtype_name(row->dtype), row->w ? "f32" : "none",
                   t.median_ms * 1e3, t.p10_ms * 1e3, t.p90_ms * 1e3, gbps,
                   100.0 * gbps / copy_gbps);
            if (opt->json)
                fprintf(opt->json,
                        "{\"device\":\"%s\",\"op\":\"%s\",\"shape\":\"%s\",\"dtype\":\"%s\","
                        "\"w\":\"%s\",\"median_us\":%.3f,\"p10_us\":%.3f,\"p90_us\":%.3f,"
                        "\"bytes\":%.0f,\"gbps\":%.2f,\"pct_copy\":%.2f,\"sets\":%d}\n",
                        info->name, vname, shape, mlxn_dtype_name(row->dtype),
                        row->w ? "f32" : "none", t.median_ms * 1e3, t.p10_ms * 1e3,
                        t.p90_ms * 1e3, moved, gbps, 100.0 * gbps / copy_gbps, c.nsets);
        }
        fflush(stdout);
        free_rms_ctx(&c);
    }
    return failures;
}

/* ---------------------------------------------------------------- qmatmul, qmatmul_mlx */

typedef struct qmm_row {
    mlxn_dtype w;   /* MLX affine (group > 0) or GGML block format */
    int group;
    int64_t M, N, K;
} qmm_row;

/* The issues' shapes (Llama-3-8B FFN): MLX 4-bit decode at group 64 with a few batch sizes, and
 * every other bit width at one; the GGML formats' decode (both orientations) and prefill (M = 512). */
static const qmm_row qmm_rows[] = {
    {MLXN_DTYPE_MLX_Q4, 64, 1, 14336, 4096}, {MLXN_DTYPE_MLX_Q4, 64, 1, 4096, 14336},
    {MLXN_DTYPE_MLX_Q4, 64, 4, 14336, 4096}, {MLXN_DTYPE_MLX_Q4, 64, 8, 14336, 4096},
    {MLXN_DTYPE_MLX_Q8, 64, 1, 14336, 4096}, {MLXN_DTYPE_MLX_Q2, 64, 1, 14336, 4096},
    {MLXN_DTYPE_MLX_Q3, 64, 1, 14336, 4096}, {MLXN_DTYPE_MLX_Q5, 64, 1, 14336, 4096},
    {MLXN_DTYPE_MLX_Q6, 64, 1, 14336, 4096}, {MLXN_DTYPE_MLX_Q4, 64, 512, 14336, 4096},
#define GGML_DECODE_ROWS(t) {t, 0, 1, 14336, 4096}, {t, 0, 1, 4096, 14336}
#define GGML_ROWS(t) GGML_DECODE_ROWS(t), {t, 0, 512, 14336, 4096}
    GGML_ROWS(MLXN_DTYPE_Q4_0), GGML_ROWS(MLXN_DTYPE_Q4_1), GGML_ROWS(MLXN_DTYPE_Q5_1),
    GGML_ROWS(MLXN_DTYPE_Q8_0), GGML_ROWS(MLXN_DTYPE_Q4_K), GGML_ROWS(MLXN_DTYPE_Q5_K),
    GGML_ROWS(MLXN_DTYPE_Q6_K), GGML_ROWS(MLXN_DTYPE_IQ4_NL),
#undef GGML_ROWS
    /* the other formats' decode (issue 3 asks for every type) */
    GGML_DECODE_ROWS(MLXN_DTYPE_Q5_0), GGML_DECODE_ROWS(MLXN_DTYPE_IQ4_XS), GGML_DECODE_ROWS(MLXN_DTYPE_Q2_K),
    GGML_DECODE_ROWS(MLXN_DTYPE_Q3_K),
#undef GGML_DECODE_ROWS
    /* CPU-sized decode (a square 4096 layer, one token and eight) and the small models' layers:
     * SmolLM2-135M (Q4_1 FFN 1536 x 576 both ways, Q8_0 head 49152 x 576), Gemma 3 270M (Q5_0
     * up/gate 2048 x 640, Q6_K down 640 x 2048, Q8_0 head 262144 x 640) */
#define GGML_SQUARE_ROWS(t) {t, 0, 1, 4096, 4096}, {t, 0, 8, 4096, 4096}
    GGML_SQUARE_ROWS(MLXN_DTYPE_Q4_0), GGML_SQUARE_ROWS(MLXN_DTYPE_Q8_0), GGML_SQUARE_ROWS(MLXN_DTYPE_Q4_K),
    GGML_SQUARE_ROWS(MLXN_DTYPE_Q6_K), GGML_SQUARE_ROWS(MLXN_DTYPE_Q4_1), GGML_SQUARE_ROWS(MLXN_DTYPE_Q5_0),
#undef GGML_SQUARE_ROWS
    {MLXN_DTYPE_Q4_1, 0, 1, 1536, 576}, {MLXN_DTYPE_Q4_1, 0, 1, 576, 1536}, {MLXN_DTYPE_Q8_0, 0, 1, 49152, 576},
    {MLXN_DTYPE_Q5_0, 0, 1, 2048, 640}, {MLXN_DTYPE_Q6_K, 0, 1, 640, 2048}, {MLXN_DTYPE_Q8_0, 0, 1, 262144, 640},
    /* rows past the streamed decode's 16384 (Qwen2.5-7B's down projection 3584 x 18944,
     * Llama-3-70B's 8192 x 28672) */
#define GGML_LONG_ROWS(t) {t, 0, 1, 3584, 18944}, {t, 0, 1, 8192, 28672}
    GGML_LONG_ROWS(MLXN_DTYPE_Q4_0), GGML_LONG_ROWS(MLXN_DTYPE_Q8_0), GGML_LONG_ROWS(MLXN_DTYPE_Q4_K),
    GGML_LONG_ROWS(MLXN_DTYPE_Q6_K),
#undef GGML_LONG_ROWS
};

typedef struct qmm_set {
    mlxn_buffer *w, *s, *b; /* s, b: MLX scales and biases */
} qmm_set;

typedef struct qmm_ctx {
    const qmm_row *row;
    mlxn_stream *s;
    mlxn_buffer *x, *y;
    qmm_set sets[MAX_SETS];
    int nsets;
} qmm_ctx;

static mlxn_status qmm_call(void *ctx, int i)
{
    qmm_ctx *c = ctx;
    const qmm_row *r = c->row;
    const qmm_set *set = &c->sets[i % c->nsets];
    int64_t xs[2] = {r->M, r->K}, ws[2] = {r->N, r->K}, ys[2] = {r->M, r->N};
    mlxn_tensor x = mlxn_tensor_make(c->x, 0, MLXN_DTYPE_F32, 2, xs);
    mlxn_tensor w = mlxn_tensor_make(set->w, 0, r->w, 2, ws);
    mlxn_tensor y = mlxn_tensor_make(c->y, 0, MLXN_DTYPE_F32, 2, ys);
    if (!r->group)
        return mlxn_qmatmul(c->s, &x, &w, &y);
    int64_t ss[2] = {r->N, r->K / r->group};
    mlxn_tensor sc = mlxn_tensor_make(set->s, 0, MLXN_DTYPE_F16, 2, ss);
    mlxn_tensor bi = mlxn_tensor_make(set->b, 0, MLXN_DTYPE_F16, 2, ss);
    return mlxn_qmatmul_mlx(c->s, &x, &w, &sc, &bi, r->group, &y);
}

/* read_gbps: the CPU read ceiling (a decode mat-vec mostly reads), 0 where not measured */
static int bench_qmatmul(mlxn_device *dev, mlxn_stream *s, const mlxn_device_info *info, double copy_gbps,
                         double read_gbps, const bench_options *opt, bool mlx)
{
    int failures = 0;
    const char *op = mlx ? "qmatmul_mlx" : "qmatmul";
    for (size_t k = 0; k < sizeof qmm_rows / sizeof qmm_rows[0]; k++) {
        const qmm_row *r = &qmm_rows[k];
        if ((r->group > 0) != mlx)
            continue;
        if (info->kind == MLXN_DEVICE_CPU && r->M > 8 && opt->quick)
            continue; /* a CPU prefill row takes seconds */
        char shape[48], variant[16];
        snprintf(shape, sizeof shape, "M%lld %lldx%lld", (long long)r->M, (long long)r->N, (long long)r->K);
        if (mlx)
            snprintf(variant, sizeof variant, "q%d/g%d", mlxn_mlx_bits_of(r->w), r->group);
        else
            snprintf(variant, sizeof variant, "%s", mlxn_dtype_name(r->w));
        char both[80];
        snprintf(both, sizeof both, "%s %s", shape, variant);
        if (opt->shape && !strstr(both, opt->shape))
            continue;
        /* weight bytes: codes (MLX or GGML blocks) plus MLX's f16 scales and biases */
        size_t wb = (size_t)(r->N * (r->K / mlxn_dtype_block_elems(r->w)) * mlxn_dtype_block_bytes(r->w));
        size_t sb = mlx ? (size_t)(r->N * (r->K / r->group)) * 2 : 0;
        double weight_bytes = (double)wb + 2.0 * (double)sb;
        qmm_ctx c = {.row = r, .s = s};
        c.nsets = (int)((double)info->l2_bytes * 2 / weight_bytes) + 2;
        if (c.nsets > MAX_SETS)
            c.nsets = MAX_SETS;
        bool ok = mlxn_buffer_create(dev, (size_t)(r->M * r->K) * 4, &c.x) == MLXN_STATUS_OK &&
                  mlxn_buffer_create(dev, (size_t)(r->M * r->N) * 4, &c.y) == MLXN_STATUS_OK &&
                  fill_random(c.x, MLXN_DTYPE_F32, (size_t)(r->M * r->K) * 4, 5);
        int made = 0;
        for (int i = 0; ok && i < c.nsets; i++, made++) {
            qmm_set *st = &c.sets[i];
            /* random codes are valid codes (random f16 scales in GGML blocks: the time does not
             * depend on the values); MLX scales and biases real f16 values */
            ok = mlxn_buffer_create(dev, wb, &st->w) == MLXN_STATUS_OK &&
                 fill_random(st->w, MLXN_DTYPE_U8, wb, 31 + (uint64_t)i) &&
                 (!mlx || (mlxn_buffer_create(dev, sb, &st->s) == MLXN_STATUS_OK &&
                           mlxn_buffer_create(dev, sb, &st->b) == MLXN_STATUS_OK &&
                           fill_random(st->s, MLXN_DTYPE_F16, sb, 41 + (uint64_t)i) &&
                           fill_random(st->b, MLXN_DTYPE_F16, sb, 51 + (uint64_t)i)));
        }
        c.nsets = made;
        bench_timing t = {0};
        int batch = info->kind == MLXN_DEVICE_CUDA ? (c.nsets > 8 ? c.nsets : 8) : 2;
        ok = ok && bench_time(dev, s, qmm_call, &c, batch, opt->quick ? 10 : 25, &t);
        if (!ok) {
            printf("%-22.22s %-13s %-16s %-8s error: %s\n", info->name, op, shape, variant, mlxn_last_error());
            failures++;
        } else {
            double moved = weight_bytes + (double)(r->M * r->K) * 4 + (double)(r->M * r->N) * 4;
            double gbps = moved / (t.median_ms * 1e-3) / 1e9;
            double tflops = 2.0 * (double)r->M * (double)r->N * (double)r->K / (t.median_ms * 1e-3) / 1e12;
            char pct_read[16] = "";
            if (read_gbps > 0)
                snprintf(pct_read, sizeof pct_read, "%6.1f%%", 100.0 * gbps / read_gbps);
            printf("%-22.22s %-13s %-16s %-8s %10.2f %10.2f %10.2f %9.1f %6.1f%% %7s %7.3f TFLOP/s\n", info->name, op,
                   shape, variant, t.median_ms * 1e3, t.p10_ms * 1e3, t.p90_ms * 1e3, gbps,
                   100.0 * gbps / copy_gbps, pct_read, tflops);
            if (opt->json)
                fprintf(opt->json,
                        "{\"device\":\"%s\",\"op\":\"%s\",\"shape\":\"%s\",\"variant\":\"%s\","
                        "\"median_us\":%.3f,\"p10_us\":%.3f,\"p90_us\":%.3f,\"bytes\":%.0f,\"gbps\":%.2f,"
                        "\"pct_copy\":%.2f,\"pct_read\":%.2f,\"tflops\":%.3f,\"sets\":%d}\n",
                        info->name, op, shape, variant, t.median_ms * 1e3, t.p10_ms * 1e3, t.p90_ms * 1e3,
                        moved, gbps, 100.0 * gbps / copy_gbps, read_gbps > 0 ? 100.0 * gbps / read_gbps : 0.0,
                        tflops, c.nsets);
        }
        fflush(stdout);
        for (int i = 0; i < c.nsets; i++) {
            mlxn_buffer_free(c.sets[i].w);
            mlxn_buffer_free(c.sets[i].s);
            mlxn_buffer_free(c.sets[i].b);
        }
        mlxn_buffer_free(c.x);
        mlxn_buffer_free(c.y);
    }
    return failures;
}

/* ---------------------------------------------------------------- qmatmul_id (MoE experts) */

typedef enum qid_kind {
    QID_DOWN,   /* the down projection from x [T, k, K] */
    QID_SWIGLU, /* gate + up with SwiGLU from x [T, K] */
    QID_FFN,    /* the experts of a layer as a model issues them: gate + up [E, N, K] with SwiGLU from
                 * x [T, K], then down [E, K, N] from that h */
} qid_kind;

typedef struct qid_row {
    qid_kind kind;
    mlxn_dtype w;
    int64_t T, k, E, N, K;
} qid_row;

/* Qwen3-30B-A3B-like experts (128 of 768 x 2048, top 8; Q4_0, and gate/up at 512 tokens in the
 * other formats of issue 3's table) and a 256-expert model (Qwen3.6-35B-A3B:
 * 512 x 2048, top 8; Q4_0 as in issue 3's table, and Q4_K): gate/up and down, prefill of 512 and
 * 4096 tokens and one-token decode (and in every other GGML format: the experts of Q5_K_M .. Q2_K,
 * IQ4 and legacy-format files); one-token decode of a layer's experts (gate + up, then down,
 * as a model's step issues them: "ffn") in both shapes. */
static const qid_row qid_rows[] = {
    {QID_SWIGLU, MLXN_DTYPE_Q4_0, 512, 8, 128, 768, 2048},  {QID_DOWN, MLXN_DTYPE_Q4_0, 512, 8, 128, 2048, 768},
    {QID_SWIGLU, MLXN_DTYPE_Q4_0, 1, 8, 128, 768, 2048},    {QID_DOWN, MLXN_DTYPE_Q4_0, 1, 8, 128, 2048, 768},
    {QID_SWIGLU, MLXN_DTYPE_Q8_0, 512, 8, 128, 768, 2048},  {QID_SWIGLU, MLXN_DTYPE_Q4_K, 512, 8, 128, 768, 2048},
    {QID_SWIGLU, MLXN_DTYPE_Q6_K, 512, 8, 128, 768, 2048},   {QID_SWIGLU, MLXN_DTYPE_Q8_0, 1, 8, 128, 768, 2048},
    {QID_DOWN, MLXN_DTYPE_Q8_0, 1, 8, 128, 2048, 768},
    {QID_SWIGLU, MLXN_DTYPE_Q4_0, 512, 8, 256, 512, 2048},  {QID_DOWN, MLXN_DTYPE_Q4_0, 512, 8, 256, 2048, 512},
    {QID_SWIGLU, MLXN_DTYPE_Q4_0, 4096, 8, 256, 512, 2048}, {QID_DOWN, MLXN_DTYPE_Q4_0, 4096, 8, 256, 2048, 512},
    {QID_SWIGLU, MLXN_DTYPE_Q4_0, 1, 8, 256, 512, 2048},    {QID_DOWN, MLXN_DTYPE_Q4_0, 1, 8, 256, 2048, 512},
    {QID_SWIGLU, MLXN_DTYPE_Q4_K, 512, 8, 256, 512, 2048},  {QID_DOWN, MLXN_DTYPE_Q4_K, 512, 8, 256, 2048, 512},
    {QID_SWIGLU, MLXN_DTYPE_Q4_K, 4096, 8, 256, 512, 2048}, {QID_DOWN, MLXN_DTYPE_Q4_K, 4096, 8, 256, 2048, 512},
    {QID_SWIGLU, MLXN_DTYPE_Q4_K, 1, 8, 256, 512, 2048},    {QID_DOWN, MLXN_DTYPE_Q4_K, 1, 8, 256, 2048, 512},
    {QID_SWIGLU, MLXN_DTYPE_Q6_K, 1, 8, 256, 512, 2048},    {QID_DOWN, MLXN_DTYPE_Q6_K, 1, 8, 256, 2048, 512},
    {QID_SWIGLU, MLXN_DTYPE_Q3_K, 1, 8, 256, 512, 2048},    {QID_DOWN, MLXN_DTYPE_Q3_K, 1, 8, 256, 2048, 512},
    {QID_SWIGLU, MLXN_DTYPE_Q2_K, 1, 8, 256, 512, 2048},    {QID_DOWN, MLXN_DTYPE_Q2_K, 1, 8, 256, 2048, 512},
    {QID_SWIGLU, MLXN_DTYPE_Q5_K, 1, 8, 256, 512, 2048},    {QID_DOWN, MLXN_DTYPE_Q5_K, 1, 8, 256, 2048, 512},
    {QID_SWIGLU, MLXN_DTYPE_IQ4_XS, 1, 8, 256, 512, 2048},  {QID_DOWN, MLXN_DTYPE_IQ4_XS, 1, 8, 256, 2048, 512},
    {QID_SWIGLU, MLXN_DTYPE_IQ4_NL, 1, 8, 256, 512, 2048},  {QID_DOWN, MLXN_DTYPE_IQ4_NL, 1, 8, 256, 2048, 512},
    {QID_SWIGLU, MLXN_DTYPE_Q5_0, 1, 8, 256, 512, 2048},    {QID_DOWN, MLXN_DTYPE_Q5_0, 1, 8, 256, 2048, 512},
    {QID_SWIGLU, MLXN_DTYPE_Q4_1, 1, 8, 256, 512, 2048},    {QID_DOWN, MLXN_DTYPE_Q4_1, 1, 8, 256, 2048, 512},
    {QID_SWIGLU, MLXN_DTYPE_Q5_1, 1, 8, 256, 512, 2048},    {QID_DOWN, MLXN_DTYPE_Q5_1, 1, 8, 256, 2048, 512},
    {QID_FFN, MLXN_DTYPE_Q4_0, 1, 8, 128, 768, 2048},  {QID_FFN, MLXN_DTYPE_Q8_0, 1, 8, 128, 768, 2048},
    {QID_FFN, MLXN_DTYPE_Q4_0, 1, 8, 256, 512, 2048},  {QID_FFN, MLXN_DTYPE_Q4_K, 1, 8, 256, 512, 2048},
};

typedef struct qid_ctx {
    const qid_row *row;
    mlxn_stream *s;
    mlxn_buffer *x, *ids, *y;
    mlxn_buffer *w[MAX_SETS][3];
    int nsets;
    int nids; /* ids sets: call i reads set i % nids */
} qid_ctx;

static mlxn_status qid_call(void *ctx, int i)
{
    qid_ctx *c = ctx;
    const qid_row *r = c->row;
    mlxn_buffer *const *w = c->w[i % c->nsets];
    const int64_t x2[2] = {r->T, r->K}, x3[3] = {r->T, r->k, r->K}, ws[3] = {r->E, r->N, r->K}, is[2] = {r->T, r->k},
                  ys[3] = {r->T, r->k, r->N};
    mlxn_tensor x = r->kind != QID_DOWN ? mlxn_tensor_make(c->x, 0, MLXN_DTYPE_F32, 2, x2)
                                        : mlxn_tensor_make(c->x, 0, MLXN_DTYPE_F32, 3, x3);
    mlxn_tensor wg = mlxn_tensor_make(w[0], 0, r->w, 3, ws);
    mlxn_tensor ids = mlxn_tensor_make(c->ids, (size_t)(i % c->nids) * (size_t)(r->T * r->k) * 4, MLXN_DTYPE_I32, 2, is);
    mlxn_tensor y = mlxn_tensor_make(c->y, 0, MLXN_DTYPE_F32, 3, ys);
    if (r->kind == QID_DOWN)
        return mlxn_qmatmul_id(c->s, &x, &wg, &ids, &y);
    mlxn_tensor wu = mlxn_tensor_make(w[1], 0, r->w, 3, ws);
    if (r->kind == QID_SWIGLU)
        return mlxn_qmatmul_id_swiglu(c->s, &x, &wg, &wu, &ids, &y);
    /* the layer: y above is h; the down projection's output [T, k, K] follows in the same buffer */
    const int64_t ds[3] = {r->E, r->K, r->N}, os[3] = {r->T, r->k, r->K};
    mlxn_tensor wd = mlxn_tensor_make(w[2], 0, r->w, 3, ds);
    mlxn_tensor out = mlxn_tensor_make(c->y, (size_t)(r->T * r->k * r->N) * 4, MLXN_DTYPE_F32, 3, os);
    mlxn_status st = mlxn_qmatmul_id_swiglu(c->s, &x, &wg, &wu, &ids, &y);
    return st != MLXN_STATUS_OK ? st : mlxn_qmatmul_id(c->s, &y, &wd, &ids, &out);
}

/* ids of T tokens, k distinct experts each drawn uniformly; returns the number of experts used */
static int64_t qid_random_ids(const qid_row *r, int32_t *ids)
{
    uint64_t seed = 77;
    char *used = calloc((size_t)r->E, 1);
    int64_t distinct = 0;
    for (int64_t t = 0; t < r->T; t++)
        for (int64_t j = 0; j < r->k; j++) {
            int32_t e;
            bool again;
            do {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                e = (int32_t)((seed >> 33) % (uint64_t)r->E);
                again = false;
                for (int64_t i = 0; i < j; i++)
                    again = again || ids[t * r->k + i] == e;
            } while (again);
            ids[t * r->k + j] = e;
            if (used && !used[e]) {
                used[e] = 1;
                distinct++;
            }
        }
    free(used);
    return distinct;
}

/* Decode: E / k one-token calls whose k experts are disjoint chunks of a random permutation, so
 * that a batch of them touches every expert once (the experts' bytes are past the L2 cache when
 * the batch comes round again, as in a model's decode step, where each layer's experts are
 * fresh). */
static void qid_decode_ids(const qid_row *r, int32_t *ids)
{
    uint64_t seed = 91;
    for (int64_t e = 0; e < r->E; e++)
        ids[e] = (int32_t)e;
    for (int64_t e = r->E - 1; e > 0; e--) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        const int64_t j = (int64_t)((seed >> 33) % (uint64_t)(e + 1));
        const int32_t t = ids[e];
        ids[e] = ids[j];
        ids[j] = t;
    }
}

static int bench_qmatmul_id(mlxn_device *dev, mlxn_stream *s, const mlxn_device_info *info, double copy_gbps,
                            const bench_options *opt)
{
    int failures = 0;
    for (size_t n = 0; n < sizeof qid_rows / sizeof qid_rows[0]; n++) {
        const qid_row *r = &qid_rows[n];
        if (info->kind == MLXN_DEVICE_CPU && r->T > 1)
            continue; /* the CPU path is not a prefill kernel */
        char shape[48], variant[24], both[80];
        snprintf(shape, sizeof shape, "T%lld E%lld/%lld %lldx%lld", (long long)r->T, (long long)r->E, (long long)r->k,
                 (long long)r->N, (long long)r->K);
        snprintf(variant, sizeof variant, "%s/%s", mlxn_dtype_name(r->w),
                 r->kind == QID_FFN ? "ffn" : r->kind == QID_SWIGLU ? "swiglu" : "down");
        snprintf(both, sizeof both, "%s %s", shape, variant);
        if (opt->shape && !strstr(both, opt->shape))
            continue;
        const int mats = r->kind == QID_FFN ? 3 : r->kind == QID_SWIGLU ? 2 : 1;
        /* bytes of one matrix (the FFN's down [E, K, N] has as many elements as gate and up) */
        const size_t wb = (size_t)(r->E * r->N * (r->K / mlxn_dtype_block_elems(r->w)) * mlxn_dtype_block_bytes(r->w));
        const int64_t P = r->T * r->k, xrows = r->kind == QID_DOWN ? P : r->T, yn = r->N + (r->kind == QID_FFN ? r->K : 0);
        /* decode on a GPU: a graph of E / k calls, each on k experts of its own (issue 3: "experts
         * out of L2, inside a CUDA graph"); else one ids set on rotated weight sets */
        const bool decode = r->T == 1 && info->kind == MLXN_DEVICE_CUDA && r->E % r->k == 0;
        qid_ctx c = {.row = r, .s = s, .nids = decode ? (int)(r->E / r->k) : 1};
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)(P * c.nids));
        int64_t used = 0;
        if (ids && decode) {
            qid_decode_ids(r, ids);
            used = r->k;
        } else if (ids) {
            used = qid_random_ids(r, ids);
        }
        c.nsets = decode ? 1 : (int)((double)info->l2_bytes * 2 / ((double)wb * mats)) + 2;
        if (c.nsets > MAX_SETS)
            c.nsets = MAX_SETS;
        bool ok = ids && mlxn_buffer_create(dev, (size_t)(xrows * r->K) * 4, &c.x) == MLXN_STATUS_OK &&
                  mlxn_buffer_create(dev, (size_t)(P * c.nids) * 4, &c.ids) == MLXN_STATUS_OK &&
                  mlxn_buffer_create(dev, (size_t)(P * yn) * 4, &c.y) == MLXN_STATUS_OK &&
                  fill_random(c.x, MLXN_DTYPE_F32, (size_t)(xrows * r->K) * 4, 5) &&
                  mlxn_buffer_upload(c.ids, 0, ids, (size_t)(P * c.nids) * 4, NULL) == MLXN_STATUS_OK;
        int made = 0;
        for (int i = 0; ok && i < c.nsets; i++, made++)
            for (int m = 0; ok && m < mats; m++)
                ok = mlxn_buffer_create(dev, wb, &c.w[i][m]) == MLXN_STATUS_OK &&
                     fill_random(c.w[i][m], MLXN_DTYPE_U8, wb, 31 + (uint64_t)(2 * i + m));
        c.nsets = made;
        bench_timing t = {0};
        int batch = info->kind == MLXN_DEVICE_CUDA ? (c.nsets > 8 ? c.nsets : 8) : 2;
        if (decode)
            ok = ok && bench_time_graph(dev, s, qid_call, &c, c.nids, opt->quick ? 10 : 25, &t);
        else
            ok = ok && bench_time(dev, s, qid_call, &c, batch, opt->quick ? 10 : 25, &t);
        if (!ok) {
            printf("%-22.22s %-13s %-22s %-12s error: %s\n", info->name, "qmatmul_id", shape, variant,
                   mlxn_last_error());
            failures++;
        } else {
            /* bytes: the weights of the experts in use, x, ids and y (the FFN's h and y); flops: 2 N K per
             * pair and matrix */
            const double moved = (double)wb * mats * (double)used / (double)r->E + (double)(xrows * r->K) * 4 +
                                 (double)P * 4 + (double)(P * yn) * 4;
            const double gbps = moved / (t.median_ms * 1e-3) / 1e9;
            const double tflops = 2.0 * mats * (double)P * (double)r->N * (double)r->K / (t.median_ms * 1e-3) / 1e12;
            printf("%-22.22s %-13s %-22s %-12s %10.2f %10.2f %10.2f %9.1f %6.1f%% %8.2f TFLOP/s\n", info->name,
                   "qmatmul_id", shape, variant, t.median_ms * 1e3, t.p10_ms * 1e3, t.p90_ms * 1e3, gbps,
                   100.0 * gbps / copy_gbps, tflops);
            if (opt->json)
                fprintf(opt->json,
                        "{\"device\":\"%s\",\"op\":\"qmatmul_id\",\"shape\":\"%s\",\"variant\":\"%s\","
                        "\"median_us\":%.3f,\"p10_us\":%.3f,\"p90_us\":%.3f,\"bytes\":%.0f,\"gbps\":%.2f,"
                        "\"pct_copy\":%.2f,\"tflops\":%.3f,\"experts_used\":%lld,\"sets\":%d,\"graph\":%s}\n",
                        info->name, shape, variant, t.median_ms * 1e3, t.p10_ms * 1e3, t.p90_ms * 1e3, moved, gbps,
                        100.0 * gbps / copy_gbps, tflops, (long long)used, c.nsets, decode ? "true" : "false");
        }
        fflush(stdout);
        for (int i = 0; i < MAX_SETS; i++) /* a set made in part too */
            for (int m = 0; m < 3; m++)
                mlxn_buffer_free(c.w[i][m]);
        mlxn_buffer_free(c.x);
        mlxn_buffer_free(c.ids);
        mlxn_buffer_free(c.y);
        free(ids);
    }
    return failures;
}

/* ---------------------------------------------------------------- row-wise ops: activations, softmax */

typedef enum row_op { ROW_ACT, ROW_SOFTMAX } row_op;

typedef struct act_row {
    row_op op;
    mlxn_act act;
    bool glu;     /* act: gated; softmax: with an additive mask */
    bool log;     /* softmax: log-softmax */
    mlxn_dtype dtype;
    int64_t rows, n;
} act_row;

/* SwiGLU / GeGLU over a prefill's FFN activations (4096 tokens x 14336), plain activations;
 * softmax over attention-score rows (32 heads x 512 queries x 4096 keys; shorter rows: 32 x 4096
 * queries x 512 keys, 32 x 1024 x 2048) and vocabulary rows (Qwen's 151936, Gemma 3's 262144). */
static const act_row act_rows[] = {
    {ROW_ACT, MLXN_ACT_SILU, true, false, MLXN_DTYPE_BF16, 4096, 14336},
    {ROW_ACT, MLXN_ACT_GELU_TANH, true, false, MLXN_DTYPE_BF16, 4096, 14336},
    {ROW_ACT, MLXN_ACT_SILU, true, false, MLXN_DTYPE_F32, 4096, 14336},
    {ROW_ACT, MLXN_ACT_GELU_ERF, false, false, MLXN_DTYPE_F32, 4096, 14336},
    {ROW_ACT, MLXN_ACT_SIGMOID, false, false, MLXN_DTYPE_BF16, 4096, 14336},
    {ROW_SOFTMAX, 0, false, false, MLXN_DTYPE_F32, 16384, 4096},
    {ROW_SOFTMAX, 0, true, false, MLXN_DTYPE_BF16, 16384, 4096},
    {ROW_SOFTMAX, 0, false, true, MLXN_DTYPE_F32, 256, 151936},
    {ROW_SOFTMAX, 0, true, false, MLXN_DTYPE_BF16, 256, 151936},
    {ROW_SOFTMAX, 0, false, false, MLXN_DTYPE_F32, 64, 262144},
    {ROW_SOFTMAX, 0, false, false, MLXN_DTYPE_F32, 131072, 512},
    {ROW_SOFTMAX, 0, true, false, MLXN_DTYPE_BF16, 32768, 2048},
    /* few long rows, whose slices take an SM alone (lone_cluster_size): with a bf16 mask, rows
     * fewer than the clusters of 2 that run at once, f32 masked, log-softmax in the register form */
    {ROW_SOFTMAX, 0, true, false, MLXN_DTYPE_BF16, 64, 262144},
    {ROW_SOFTMAX, 0, false, false, MLXN_DTYPE_F32, 31, 250000},
    {ROW_SOFTMAX, 0, true, false, MLXN_DTYPE_BF16, 31, 250000},
    {ROW_SOFTMAX, 0, true, false, MLXN_DTYPE_F32, 64, 150000},
    {ROW_SOFTMAX, 0, false, true, MLXN_DTYPE_F32, 64, 262144},
};

typedef struct act_ctx {
    const act_row *row;
    mlxn_stream *s;
    mlxn_buffer *x, *up, *y;
} act_ctx;

static mlxn_status act_call(void *ctx, int i)
{
    (void)i;
    act_ctx *c = ctx;
    int64_t shape[2] = {c->row->rows, c->row->n};
    mlxn_tensor x = mlxn_tensor_make(c->x, 0, c->row->dtype, 2, shape);
    mlxn_tensor up = mlxn_tensor_make(c->up, 0, c->row->dtype, 2, shape);
    mlxn_tensor y = mlxn_tensor_make(c->y, 0, c->row->dtype, 2, shape);
    if (c->row->op == ROW_SOFTMAX)
        return mlxn_softmax(c->s, &x, c->row->glu ? &up : NULL, 0.125f, 0.0f, c->row->log, &y);
    return c->row->glu ? mlxn_glu(c->s, c->row->act, &x, &up, &y) : mlxn_activation(c->s, c->row->act, &x, &y);
}

/* One result row of a bytes-bound op (time, GB/s, % of copy) on stdout and as a JSON line; t NULL
 * prints the error row instead. Returns whether the row is a result. */
static bool report_bytes_row(const mlxn_device_info *info, const char *op, const char *shape, const char *variant,
                             const char *dtype, const bench_timing *t, double moved, double copy_gbps,
                             const bench_options *opt)
{
    if (!t) {
        printf("%-22.22s %-13s %-16s %-14s error: %s\n", info->name, op, shape, variant, mlxn_last_error());
        return false;
    }
    const double gbps = moved / (t->median_ms * 1e-3) / 1e9;
    printf("%-22.22s %-13s %-16s %-14s %-5s %10.2f %10.2f %10.2f %9.1f %6.1f%%\n", info->name, op, shape, variant,
           dtype, t->median_ms * 1e3, t->p10_ms * 1e3, t->p90_ms * 1e3, gbps, 100.0 * gbps / copy_gbps);
    if (opt->json)
        fprintf(opt->json,
                "{\"device\":\"%s\",\"op\":\"%s\",\"shape\":\"%s\",\"variant\":\"%s\",\"dtype\":\"%s\","
                "\"median_us\":%.3f,\"p10_us\":%.3f,\"p90_us\":%.3f,\"bytes\":%.0f,\"gbps\":%.2f,"
                "\"pct_copy\":%.2f}\n",
                info->name, op, shape, variant, dtype, t->median_ms * 1e3, t->p10_ms * 1e3, t->p90_ms * 1e3, moved,
                gbps, 100.0 * gbps / copy_gbps);
    return true;
}

static int bench_act(mlxn_device *dev, mlxn_stream *s, const mlxn_device_info *info, double copy_gbps,
                     const bench_options *opt)
{
    int failures = 0;
    for (size_t k = 0; k < sizeof act_rows / sizeof act_rows[0]; k++) {
        const act_row *r = &act_rows[k];
        const char *op = r->op == ROW_SOFTMAX ? "softmax" : "act";
        if (opt->op && strcmp(opt->op, op) != 0)
            continue;
        char shape[32], variant[24], both[64];
        snprintf(shape, sizeof shape, "%lldx%lld", (long long)r->rows, (long long)r->n);
        if (r->op == ROW_SOFTMAX)
            snprintf(variant, sizeof variant, "%s%s", r->log ? "log" : "plain", r->glu ? "/mask" : "");
        else
            snprintf(variant, sizeof variant, "%s%s", r->glu ? "glu/" : "", mlxn_act_name(r->act));
        snprintf(both, sizeof both, "%s %s %s", shape, variant, mlxn_dtype_name(r->dtype));
        if (opt->shape && !strstr(both, opt->shape))
            continue;
        const size_t bytes = (size_t)(r->rows * r->n) * (size_t)mlxn_dtype_block_bytes(r->dtype);
        act_ctx c = {.row = r, .s = s};
        bench_timing t = {0};
        /* each operand is several times the last-level cache: no rotation needed */
        bool ok = mlxn_buffer_create(dev, bytes, &c.x) == MLXN_STATUS_OK &&
                  mlxn_buffer_create(dev, bytes, &c.up) == MLXN_STATUS_OK &&
                  mlxn_buffer_create(dev, bytes, &c.y) == MLXN_STATUS_OK &&
                  fill_random(c.x, r->dtype, bytes, 61) && fill_random(c.up, r->dtype, bytes, 67) &&
                  bench_time(dev, s, act_call, &c, info->kind == MLXN_DEVICE_CUDA ? 8 : 1, opt->quick ? 5 : 15, &t);
        const double moved = (double)bytes * (r->glu ? 3 : 2);
        failures += !report_bytes_row(info, op, shape, variant, mlxn_dtype_name(r->dtype), ok ? &t : NULL, moved,
                                      copy_gbps, opt);
        fflush(stdout);
        mlxn_buffer_free(c.x);
        mlxn_buffer_free(c.up);
        mlxn_buffer_free(c.y);
    }
    return failures;
}

/* ---------------------------------------------------------------- rope */

typedef struct rope_row {
    mlxn_rope_style style;
    bool multi;   /* mrope with Qwen2-VL's sections [16, 24, 24, 0] */
    bool yarn_ff; /* YaRN (4x over a 4096 context) and freq_factors */
    bool norm;    /* the per-head RMS norm first, weights [H, D] */
    mlxn_dtype dtype;
    int64_t T, H, D;
} rope_row;

/* q of a 4096-token prefill (32 heads of 128) in both pairings and dtypes, with YaRN and
 * freq_factors, as mrope; and one decode token, where launch latency is all there is. With the
 * per-head norm: the q + k heads of a decode step of Gemma 3 (4 + 1 of 256, also without the
 * norm for comparison) and Qwen3 (16 + 8 of 128), and the 4096-token prefill. Then 16384 tokens
 * (134-268 MB each way): a 4096-token bf16 call moves 33.5 MB each way, short enough that a
 * launch's ramp and drain weigh on it (bench/NOTES.md, rope). */
static const rope_row rope_rows[] = {
    {MLXN_ROPE_NEOX, false, false, false, MLXN_DTYPE_F32, 4096, 32, 128},
    {MLXN_ROPE_NORMAL, false, false, false, MLXN_DTYPE_F32, 4096, 32, 128},
    {MLXN_ROPE_NEOX, false, false, false, MLXN_DTYPE_BF16, 4096, 32, 128},
    {MLXN_ROPE_NORMAL, false, false, false, MLXN_DTYPE_BF16, 4096, 32, 128},
    {MLXN_ROPE_NEOX, false, true, false, MLXN_DTYPE_BF16, 4096, 32, 128},
    {MLXN_ROPE_NEOX, true, false, false, MLXN_DTYPE_BF16, 4096, 32, 128},
    {MLXN_ROPE_NEOX, false, false, false, MLXN_DTYPE_F32, 1, 32, 128},
    {MLXN_ROPE_NEOX, false, false, false, MLXN_DTYPE_F32, 1, 5, 256},
    {MLXN_ROPE_NEOX, false, false, true, MLXN_DTYPE_F32, 1, 5, 256},
    {MLXN_ROPE_NEOX, false, false, true, MLXN_DTYPE_F32, 1, 24, 128},
    {MLXN_ROPE_NEOX, false, false, true, MLXN_DTYPE_F32, 4096, 32, 128},
    {MLXN_ROPE_NEOX, false, false, true, MLXN_DTYPE_BF16, 4096, 32, 128},
    {MLXN_ROPE_NEOX, false, false, true, MLXN_DTYPE_F32, 2048, 5, 256},
    {MLXN_ROPE_NEOX, false, false, true, MLXN_DTYPE_F32, 512, 5, 256},
    {MLXN_ROPE_NEOX, false, false, false, MLXN_DTYPE_F32, 16384, 32, 128},
    {MLXN_ROPE_NEOX, false, false, false, MLXN_DTYPE_BF16, 16384, 32, 128},
    {MLXN_ROPE_NEOX, false, false, true, MLXN_DTYPE_F32, 16384, 32, 128},
    {MLXN_ROPE_NEOX, false, false, true, MLXN_DTYPE_BF16, 16384, 32, 128},
};

typedef struct rope_set {
    mlxn_buffer *x, *y, *pos;
} rope_set;

typedef struct rope_ctx {
    const rope_row *row;
    mlxn_stream *s;
    mlxn_buffer *ff, *nw;
    rope_set sets[MAX_SETS];
    int nsets;
} rope_ctx;

static mlxn_status rope_call(void *ctx, int i)
{
    rope_ctx *c = ctx;
    const rope_row *r = c->row;
    const rope_set *set = &c->sets[i % c->nsets];
    const int64_t shape[3] = {r->T, r->H, r->D}, pshape[2] = {4, r->T}, half = r->D / 2;
    const mlxn_tensor x = mlxn_tensor_make(set->x, 0, r->dtype, 3, shape);
    const mlxn_tensor y = mlxn_tensor_make(set->y, 0, r->dtype, 3, shape);
    const mlxn_tensor pos = mlxn_tensor_make(set->pos, 0, MLXN_DTYPE_I32, r->multi ? 2 : 1, r->multi ? pshape : &r->T);
    const mlxn_tensor ff = mlxn_tensor_make(c->ff, 0, MLXN_DTYPE_F32, 1, &half);
    const mlxn_tensor nw = mlxn_tensor_make(c->nw, 0, MLXN_DTYPE_F32, 2, shape + 1);
    mlxn_rope_params p = mlxn_rope_params_default();
    p.style = r->style;
    if (r->norm)
        p.norm_w = &nw;
    if (r->yarn_ff) {
        p.freq_factors = &ff;
        p.freq_scale = 0.25f;
        p.ext_factor = 1.0f;
        p.n_ctx_orig = 4096;
    }
    if (r->multi) {
        p.sections[0] = 16;
        p.sections[1] = 24;
        p.sections[2] = 24;
    }
    return mlxn_rope(c->s, &x, &pos, &p, &y);
}

static void free_rope_ctx(rope_ctx *c)
{
    for (int i = 0; i < c->nsets; i++) {
        mlxn_buffer_free(c->sets[i].x);
        mlxn_buffer_free(c->sets[i].y);
        mlxn_buffer_free(c->sets[i].pos);
    }
    mlxn_buffer_free(c->ff);
    mlxn_buffer_free(c->nw);
}

static int bench_rope(mlxn_device *dev, mlxn_stream *s, const mlxn_device_info *info, double copy_gbps,
                      const bench_options *opt)
{
    int failures = 0;
    for (size_t k = 0; k < sizeof rope_rows / sizeof rope_rows[0]; k++) {
        const rope_row *r = &rope_rows[k];
        char shape[32], variant[24], all[80];
        snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)r->T, (long long)r->H, (long long)r->D);
        snprintf(variant, sizeof variant, "%s%s%s", r->multi ? "mrope" : r->style == MLXN_ROPE_NEOX ? "neox" : "normal",
                 r->yarn_ff ? "/yarn/ff" : "", r->norm ? "/norm" : "");
        snprintf(all, sizeof all, "%s %s %s", shape, variant, mlxn_dtype_name(r->dtype));
        if (opt->shape && !strstr(all, opt->shape))
            continue;
        const size_t bytes = (size_t)(r->T * r->H * r->D) * (size_t)mlxn_dtype_block_bytes(r->dtype);
        const size_t pos_n = (size_t)r->T * (r->multi ? 4 : 1);
        /* x read, y written, the positions (and norm weights) read */
        const size_t nw_bytes = (size_t)(r->H * r->D) * sizeof(float);
        const double moved = 2.0 * (double)bytes + 4.0 * (double)pos_n + (r->norm ? (double)nw_bytes : 0.0);
        rope_ctx c = {.row = r, .s = s};
        c.nsets = (int)(info->l2_bytes * 2 / (size_t)moved) + 2;
        if (c.nsets > MAX_SETS)
            c.nsets = MAX_SETS;
        /* positions 100.. of a sequence: a prefill after a cached prompt */
        int32_t *pos = malloc(pos_n * sizeof *pos);
        float ff[64];
        for (int i = 0; i < 64; i++)
            ff[i] = i < 16 ? 1.0f : 1.0f + (float)(i - 16) / 8.0f;
        bool ok = pos && mlxn_buffer_create(dev, sizeof ff, &c.ff) == MLXN_STATUS_OK &&
                  mlxn_buffer_upload(c.ff, 0, ff, sizeof ff, NULL) == MLXN_STATUS_OK &&
                  mlxn_buffer_create(dev, nw_bytes, &c.nw) == MLXN_STATUS_OK &&
                  fill_random(c.nw, MLXN_DTYPE_F32, nw_bytes, 307);
        for (size_t i = 0; ok && i < pos_n; i++)
            pos[i] = 100 + (int32_t)(i % (size_t)r->T);
        int made = 0;
        for (int i = 0; ok && i < c.nsets; i++, made++) {
            rope_set *st = &c.sets[i];
            ok = mlxn_buffer_create(dev, bytes, &st->x) == MLXN_STATUS_OK &&
                 mlxn_buffer_create(dev, bytes, &st->y) == MLXN_STATUS_OK &&
                 mlxn_buffer_create(dev, pos_n * 4, &st->pos) == MLXN_STATUS_OK &&
                 fill_random(st->x, r->dtype, bytes, 301 + (uint64_t)i) &&
                 mlxn_buffer_upload(st->pos, 0, pos, pos_n * 4, NULL) == MLXN_STATUS_OK;
        }
        free(pos);
        c.nsets = made;
        bench_timing t = {0};
        const bool cuda = info->kind == MLXN_DEVICE_CUDA;
        const int batch = cuda ? (c.nsets > 8 ? c.nsets : 8) : c.nsets;
        ok = ok && bench_time(dev, s, rope_call, &c, batch, opt->quick ? 5 : 15, &t);
        if (!ok) {
            printf("%-22.22s %-13s %-16s %-14s error: %s\n", info->name, "rope", shape, variant, mlxn_last_error());
            failures++;
        } else {
            const double gbps = moved / (t.median_ms * 1e-3) / 1e9;
            printf("%-22.22s %-13s %-16s %-14s %-5s %10.2f %10.2f %10.2f %9.1f %6.1f%%\n", info->name, "rope", shape,
                   variant, mlxn_dtype_name(r->dtype), t.median_ms * 1e3, t.p10_ms * 1e3, t.p90_ms * 1e3, gbps,
                   100.0 * gbps / copy_gbps);
            if (opt->json)
                fprintf(opt->json,
                        "{\"device\":\"%s\",\"op\":\"rope\",\"shape\":\"%s\",\"variant\":\"%s\",\"dtype\":\"%s\","
                        "\"median_us\":%.3f,\"p10_us\":%.3f,\"p90_us\":%.3f,\"bytes\":%.0f,\"gbps\":%.2f,"
                        "\"pct_copy\":%.2f,\"sets\":%d}\n",
                        info->name, shape, variant, mlxn_dtype_name(r->dtype), t.median_ms * 1e3, t.p10_ms * 1e3,
                        t.p90_ms * 1e3, moved, gbps, 100.0 * gbps / copy_gbps, c.nsets);
        }
        fflush(stdout);
        free_rope_ctx(&c);
    }
    return failures;
}

/* ---------------------------------------------------------------- small ops: get_rows, binary, scale, argmax, sampling, MoE gate and reduce */

typedef enum small_op {
    SMALL_GET_ROWS, SMALL_BINARY, SMALL_SCALE, SMALL_ARGMAX, SMALL_SAMPLE, SMALL_MOE_GATE, SMALL_MOE_REDUCE
} small_op;
static const char *small_op_names[] = {"get_rows", "binary", "scale", "argmax", "sample", "moe_gate", "moe_reduce"};

/* moe_gate: the router's rule */
typedef enum small_gate {
    GATE_QWEN3,   /* softmax, normalized top-k */
    GATE_DEEPSEEK /* sigmoid, selection bias, normalized, scaled by 2.5 */
} small_gate;

/* sample: the filter settings */
typedef enum small_sampler { SAMPLER_PLAIN, SAMPLER_LLAMA, SAMPLER_TOP_P } small_sampler;

/* binary: how b broadcasts over a */
typedef enum small_bcast { BCAST_NONE, BCAST_ROW_VECTOR, BCAST_PER_ROW } small_bcast;

typedef struct small_row {
    small_op op;
    mlxn_dtype dtype;   /* get_rows: the table's (y is f32); others: x's (binary: a's; b is f32) */
    int64_t rows, n;    /* get_rows: tokens x D */
    int64_t table_rows; /* get_rows: V */
    small_bcast bcast;  /* binary */
    small_sampler sampler; /* sample */
    int top_k;          /* moe ops: k (moe_gate: n is E; moe_reduce: n is N) */
    small_gate gate;    /* moe_gate */
} small_row;

/* Embedding lookups of a prefill (4096 tokens of a 4096-wide model, 32000-token vocabulary) and
 * of one decode token (Gemma 3 270M's Q8_0 table: 640 wide, 262144 tokens);
 * residual adds and norm-weight multiplies over prefill activations; the final logit scale;
 * argmax over one vocabulary row (decode) and a batch of them; MoE routing of a decode token and
 * of a 4096-token prefill (Qwen3-30B-A3B: 128 experts, top 8, 2048 wide; DeepSeek-V3: 256
 * experts, top 8, 7168 wide; a 1024-expert router, past CUDA's warp kernel). */
static const small_row small_rows[] = {
    {SMALL_GET_ROWS, MLXN_DTYPE_Q4_K, 4096, 4096, 32000, 0, 0, 0, 0},
    {SMALL_GET_ROWS, MLXN_DTYPE_Q8_0, 4096, 4096, 32000, 0, 0, 0, 0},
    {SMALL_GET_ROWS, MLXN_DTYPE_BF16, 4096, 4096, 32000, 0, 0, 0, 0},
    {SMALL_GET_ROWS, MLXN_DTYPE_Q8_0, 1, 640, 262144, 0, 0, 0, 0},
    {SMALL_BINARY, MLXN_DTYPE_F32, 4096, 4096, 0, BCAST_NONE, 0, 0, 0},
    {SMALL_BINARY, MLXN_DTYPE_BF16, 4096, 14336, 0, BCAST_NONE, 0, 0, 0},
    {SMALL_BINARY, MLXN_DTYPE_BF16, 4096, 14336, 0, BCAST_ROW_VECTOR, 0, 0, 0},
    {SMALL_BINARY, MLXN_DTYPE_F32, 16384, 4096, 0, BCAST_PER_ROW, 0, 0, 0},
    {SMALL_SCALE, MLXN_DTYPE_F32, 4096, 4096, 0, 0, 0, 0, 0},
    {SMALL_SCALE, MLXN_DTYPE_BF16, 4096, 14336, 0, 0, 0, 0, 0},
    {SMALL_SCALE, MLXN_DTYPE_BF16, 4096, 4096, 0, 0, 0, 0, 0}, /* the bytes of rope's bf16 row */
    {SMALL_ARGMAX, MLXN_DTYPE_F32, 1, 262144, 0, 0, 0, 0, 0},
    {SMALL_ARGMAX, MLXN_DTYPE_F32, 256, 151936, 0, 0, 0, 0, 0},
    {SMALL_ARGMAX, MLXN_DTYPE_BF16, 256, 151936, 0, 0, 0, 0, 0},
    {SMALL_SAMPLE, MLXN_DTYPE_F32, 1, 262144, 0, 0, SAMPLER_PLAIN, 0, 0},
    {SMALL_SAMPLE, MLXN_DTYPE_F32, 1, 262144, 0, 0, SAMPLER_LLAMA, 0, 0},
    {SMALL_SAMPLE, MLXN_DTYPE_F32, 1, 262144, 0, 0, SAMPLER_TOP_P, 0, 0},
    {SMALL_SAMPLE, MLXN_DTYPE_F32, 32, 151936, 0, 0, SAMPLER_LLAMA, 0, 0},
    {SMALL_MOE_GATE, MLXN_DTYPE_F32, 1, 128, 0, 0, 0, 8, GATE_QWEN3},
    {SMALL_MOE_GATE, MLXN_DTYPE_F32, 4096, 128, 0, 0, 0, 8, GATE_QWEN3},
    {SMALL_MOE_GATE, MLXN_DTYPE_F32, 1, 256, 0, 0, 0, 8, GATE_DEEPSEEK},
    {SMALL_MOE_GATE, MLXN_DTYPE_F32, 4096, 256, 0, 0, 0, 8, GATE_DEEPSEEK},
    {SMALL_MOE_GATE, MLXN_DTYPE_F32, 1, 1024, 0, 0, 0, 8, GATE_QWEN3},
    {SMALL_MOE_GATE, MLXN_DTYPE_F32, 4096, 1024, 0, 0, 0, 8, GATE_QWEN3},
    {SMALL_MOE_REDUCE, MLXN_DTYPE_F32, 1, 2048, 0, 0, 0, 8, 0},
    {SMALL_MOE_REDUCE, MLXN_DTYPE_F32, 4096, 2048, 0, 0, 0, 8, 0},
    {SMALL_MOE_REDUCE, MLXN_DTYPE_BF16, 4096, 7168, 0, 0, 0, 8, 0},
};

enum { BENCH_HISTORY = 64 };

typedef struct small_ctx {
    const small_row *row;
    mlxn_stream *s;
    mlxn_buffer *x, *b, *y, *ids;
} small_ctx;

static mlxn_status small_call(void *ctx, int i)
{
    (void)i;
    const small_ctx *c = ctx;
    const small_row *r = c->row;
    int64_t shape[2] = {r->rows, r->n};
    mlxn_tensor x = mlxn_tensor_make(c->x, 0, r->dtype, 2, shape);
    switch (r->op) {
    case SMALL_GET_ROWS: {
        int64_t tshape[2] = {r->table_rows, r->n};
        mlxn_tensor table = mlxn_tensor_make(c->x, 0, r->dtype, 2, tshape);
        mlxn_tensor ids = mlxn_tensor_make(c->ids, 0, MLXN_DTYPE_I32, 1, &r->rows);
        mlxn_tensor y = mlxn_tensor_make(c->y, 0, MLXN_DTYPE_F32, 2, shape);
        return mlxn_get_rows(c->s, &table, &ids, 1.0f, &y);
    }
    case SMALL_BINARY: {
        int64_t bshape[2] = {r->bcast == BCAST_ROW_VECTOR ? 1 : r->rows, r->bcast == BCAST_PER_ROW ? 1 : r->n};
        mlxn_tensor b = mlxn_tensor_make(c->b, 0, r->bcast == BCAST_NONE ? r->dtype : MLXN_DTYPE_F32, 2, bshape);
        mlxn_tensor y = mlxn_tensor_make(c->y, 0, r->dtype, 2, shape);
        return mlxn_binary(c->s, r->bcast == BCAST_NONE ? MLXN_BINOP_ADD : MLXN_BINOP_MUL, &x, &b, &y);
    }
    case SMALL_SCALE: {
        mlxn_tensor y = mlxn_tensor_make(c->y, 0, r->dtype, 2, shape);
        return mlxn_scale(c->s, &x, 0.125f, 1.0f, &y);
    }
    case SMALL_ARGMAX: {
        mlxn_tensor out = mlxn_tensor_make(c->y, 0, MLXN_DTYPE_I32, 1, &r->rows);
        return mlxn_argmax(c->s, &x, &out);
    }
    case SMALL_SAMPLE: {
        mlxn_tensor out = mlxn_tensor_make(c->y, 0, MLXN_DTYPE_I32, 1, &r->rows);
        int64_t hshape[2] = {r->rows, BENCH_HISTORY};
        mlxn_tensor history = mlxn_tensor_make(c->ids, 0, MLXN_DTYPE_I32, 2, hshape);
        mlxn_sampler_params p = mlxn_sampler_params_default();
        if (r->sampler == SAMPLER_LLAMA)
            p = (mlxn_sampler_params){0.8f, 40, 0.95f, 0.05f, 1.1f, 1234};
        else if (r->sampler == SAMPLER_TOP_P)
            p.top_p = 0.9f;
        return mlxn_sample(c->s, &x, r->sampler == SAMPLER_LLAMA ? &history : NULL, &p, (uint64_t)i, &out);
    }
    case SMALL_MOE_GATE: {
        int64_t oshape[2] = {r->rows, r->top_k};
        mlxn_tensor ids = mlxn_tensor_make(c->ids, 0, MLXN_DTYPE_I32, 2, oshape);
        mlxn_tensor w = mlxn_tensor_make(c->y, 0, MLXN_DTYPE_F32, 2, oshape);
        mlxn_tensor bias = mlxn_tensor_make(c->b, 0, MLXN_DTYPE_F32, 1, &r->n);
        mlxn_moe_gate_params p = mlxn_moe_gate_params_default();
        p.top_k = r->top_k;
        p.normalize = true;
        if (r->gate == GATE_DEEPSEEK) {
            p.gating = MLXN_MOE_GATING_SIGMOID;
            p.bias = &bias;
            p.scale = 2.5f;
        }
        return mlxn_moe_gate(c->s, &x, &p, &ids, &w);
    }
    case SMALL_MOE_REDUCE: {
        int64_t xshape[3] = {r->rows, r->top_k, r->n}, wshape[2] = {r->rows, r->top_k};
        mlxn_tensor xs = mlxn_tensor_make(c->x, 0, r->dtype, 3, xshape);
        mlxn_tensor w = mlxn_tensor_make(c->b, 0, MLXN_DTYPE_F32, 2, wshape);
        mlxn_tensor y = mlxn_tensor_make(c->y, 0, r->dtype, 2, shape);
        return mlxn_moe_reduce(c->s, &xs, &w, &y);
    }
    }
    return MLXN_STATUS_ERR_INTERNAL;
}

/* Bytes the op must move at least; the sizes of x, b and y for setting them up. */
static double small_bytes(const small_row *r, size_t *x_bytes, size_t *b_bytes, size_t *y_bytes)
{
    const double es = (double)mlxn_dtype_block_bytes(r->dtype) / (double)mlxn_dtype_block_elems(r->dtype);
    const double elems = (double)r->rows * (double)r->n;
    *x_bytes = *b_bytes = *y_bytes = 0;
    switch (r->op) {
    case SMALL_GET_ROWS: /* a table row in, an f32 row out per token */
        *x_bytes = (size_t)((double)r->table_rows * (double)r->n * es);
        *y_bytes = (size_t)elems * 4;
        return elems * (es + 4) + (double)r->rows * 4;
    case SMALL_BINARY: {
        *x_bytes = *y_bytes = (size_t)(elems * es);
        *b_bytes = r->bcast == BCAST_NONE ? *x_bytes : (size_t)(r->bcast == BCAST_ROW_VECTOR ? r->n : r->rows) * 4;
        return 2.0 * (double)*x_bytes + (double)*b_bytes;
    }
    case SMALL_SCALE:
        *x_bytes = *y_bytes = (size_t)(elems * es);
        return 2.0 * (double)*x_bytes;
    case SMALL_ARGMAX:
    case SMALL_SAMPLE: /* the floor reads the logits once; sampling reads them several times */
        *x_bytes = (size_t)(elems * es);
        *y_bytes = (size_t)r->rows * 4;
        return (double)*x_bytes + (double)*y_bytes;
    case SMALL_MOE_GATE: /* logits and the bias in; ids and weights out (ids: the ids buffer) */
        *x_bytes = (size_t)(elems * es);
        *b_bytes = (size_t)r->n * 4;
        *y_bytes = (size_t)(r->rows * r->top_k) * 4;
        return (double)*x_bytes + (r->gate == GATE_DEEPSEEK ? (double)*b_bytes : 0) + 2.0 * (double)*y_bytes;
    case SMALL_MOE_REDUCE: /* k rows and k weights in, one row out per token */
        *x_bytes = (size_t)(elems * es) * (size_t)r->top_k;
        *b_bytes = (size_t)(r->rows * r->top_k) * 4;
        *y_bytes = (size_t)(elems * es);
        return (double)*x_bytes + (double)*b_bytes + (double)*y_bytes;
    }
    return 0;
}

static int bench_small(mlxn_device *dev, mlxn_stream *s, const mlxn_device_info *info, double copy_gbps,
                       const bench_options *opt)
{
    int failures = 0;
    for (size_t k = 0; k < sizeof small_rows / sizeof small_rows[0]; k++) {
        const small_row *r = &small_rows[k];
        const char *op = small_op_names[r->op];
        if (opt->op && strcmp(opt->op, op) != 0)
            continue;
        size_t xb, bb, yb;
        const double moved = small_bytes(r, &xb, &bb, &yb);
        small_ctx c = {.row = r, .s = s};
        bench_timing t = {0};
        int32_t *ids = NULL;
        /* one set of buffers: the large rows are several times the last-level cache; the decode
         * rows (one token, one vocabulary row) measure what a decode step sees, cache and all */
        bool ok = mlxn_buffer_create(dev, xb, &c.x) == MLXN_STATUS_OK &&
                  mlxn_buffer_create(dev, yb, &c.y) == MLXN_STATUS_OK &&
                  fill_random(c.x, mlxn_dtype_is_quantized(r->dtype) ? MLXN_DTYPE_U8 : r->dtype, xb, 71);
        if (ok && bb)
            ok = mlxn_buffer_create(dev, bb, &c.b) == MLXN_STATUS_OK &&
                 fill_random(c.b, r->op == SMALL_BINARY && r->bcast == BCAST_NONE ? r->dtype : MLXN_DTYPE_F32, bb, 73);
        if (ok && (r->op == SMALL_GET_ROWS || r->op == SMALL_SAMPLE)) {
            /* token ids: get_rows' lookups, or sample's history */
            const int64_t n_ids = r->op == SMALL_SAMPLE ? r->rows * BENCH_HISTORY : r->rows;
            const int64_t range = r->op == SMALL_SAMPLE ? r->n : r->table_rows;
            ok = (ids = malloc((size_t)n_ids * 4)) != NULL &&
                 mlxn_buffer_create(dev, (size_t)n_ids * 4, &c.ids) == MLXN_STATUS_OK;
            uint64_t z = 79;
            for (int64_t i = 0; ok && i < n_ids; i++) {
                z = z * 6364136223846793005ull + 1442695040888963407ull;
                ids[i] = (int32_t)((z >> 33) % (uint64_t)range);
            }
            ok = ok && mlxn_buffer_upload(c.ids, 0, ids, (size_t)n_ids * 4, NULL) == MLXN_STATUS_OK;
        }
        if (ok && r->op == SMALL_MOE_GATE)
            ok = mlxn_buffer_create(dev, (size_t)(r->rows * r->top_k) * 4, &c.ids) == MLXN_STATUS_OK;
        ok = ok && bench_time(dev, s, small_call, &c, info->kind == MLXN_DEVICE_CUDA ? 8 : 1, opt->quick ? 5 : 15, &t);
        char shape[32], variant[24];
        if (r->op == SMALL_MOE_REDUCE)
            snprintf(shape, sizeof shape, "%lldx%dx%lld", (long long)r->rows, r->top_k, (long long)r->n);
        else
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)r->rows, (long long)r->n);
        if (r->op == SMALL_GET_ROWS)
            snprintf(variant, sizeof variant, "V=%lld->f32", (long long)r->table_rows);
        else if (r->op == SMALL_BINARY)
            snprintf(variant, sizeof variant, "%s", r->bcast == BCAST_NONE         ? "add"
                                                    : r->bcast == BCAST_ROW_VECTOR ? "mul/row-f32"
                                                                                   : "mul/per-row-f32");
        else if (r->op == SMALL_SAMPLE)
            snprintf(variant, sizeof variant, "%s", r->sampler == SAMPLER_PLAIN   ? "plain"
                                                    : r->sampler == SAMPLER_LLAMA ? "llama-defaults"
                                                                                  : "top-p");
        else if (r->op == SMALL_MOE_GATE)
            snprintf(variant, sizeof variant, "%s/k=%d", r->gate == GATE_QWEN3 ? "softmax" : "sigmoid+bias", r->top_k);
        else
            snprintf(variant, sizeof variant, "-");
        failures += !report_bytes_row(info, op, shape, variant, mlxn_dtype_name(r->dtype), ok ? &t : NULL, moved,
                                      copy_gbps, opt);
        fflush(stdout);
        free(ids);
        mlxn_buffer_free(c.x);
        mlxn_buffer_free(c.b);
        mlxn_buffer_free(c.y);
        mlxn_buffer_free(c.ids);
    }
    return failures;
}

/* ---------------------------------------------------------------- attention */

typedef struct attn_row {
    int64_t B, Tq, Hq, Hkv, S, D;
    mlxn_dtype qdt, kvdt;
    int64_t L; /* keys in the cache (0: full to S) */
} attn_row;

/* Decode: 32 query heads over 8 KV heads of 128 (Llama 3 8B), f16 caches full to S, with enough
 * sequences that the K and V bytes (256 and 512 MiB) are far past L2; and one sequence at 32768
 * (8 KV heads only: the split over keys has to fill the GPU); groups of 8 (4 KV heads, as in
 * Qwen3-30B-A3B) at 4 x 32768. The same with q8_0 caches (34
 * bytes per 32 elements: 136 and 272 MiB). GB/s counts the K and V bytes the call must read (for
 * q8_0 the blocks as stored), against the copy ceiling. Prefill: a 4096-token causal chunk,
 * bf16, 32 heads of 128 over 8 KV heads; TFLOP/s counts the causal half, 4 D flops per visible
 * (query, key) pair (q.k and p v); the same for 2048-token chunks of the default models' shapes
 * (f16, no sliding window). Then the decode calls of the two default models, one
 * sequence in a 4096-slot cache filled to 128 and to 4096 keys: SmolLM2 (9 query heads over 3
 * of 64) and Gemma 3 270M (4 over 1 of 256), bound by latency, not bytes, at these sizes. */
static const attn_row attn_rows[] = {
    {16, 1, 32, 8, 4096, 128, MLXN_DTYPE_F32, MLXN_DTYPE_F16, 0},
    {4, 1, 32, 8, 32768, 128, MLXN_DTYPE_F32, MLXN_DTYPE_F16, 0},
    {1, 1, 32, 8, 32768, 128, MLXN_DTYPE_F32, MLXN_DTYPE_F16, 0},
    {4, 1, 32, 4, 32768, 128, MLXN_DTYPE_F32, MLXN_DTYPE_F16, 0},
    {16, 1, 32, 8, 4096, 128, MLXN_DTYPE_F32, MLXN_DTYPE_Q8_0, 0},
    {4, 1, 32, 8, 32768, 128, MLXN_DTYPE_F32, MLXN_DTYPE_Q8_0, 0},
    {1, 1, 32, 8, 32768, 128, MLXN_DTYPE_F32, MLXN_DTYPE_Q8_0, 0},
    {1, 4096, 32, 8, 4096, 128, MLXN_DTYPE_BF16, MLXN_DTYPE_BF16, 0},
    {1, 2048, 9, 3, 2048, 64, MLXN_DTYPE_F16, MLXN_DTYPE_F16, 0},
    {1, 2048, 4, 1, 2048, 256, MLXN_DTYPE_F16, MLXN_DTYPE_F16, 0},
    {1, 1, 9, 3, 4096, 64, MLXN_DTYPE_F32, MLXN_DTYPE_F16, 128},
    {1, 1, 9, 3, 4096, 64, MLXN_DTYPE_F32, MLXN_DTYPE_F16, 4096},
    {1, 1, 4, 1, 4096, 256, MLXN_DTYPE_F32, MLXN_DTYPE_F16, 128},
    {1, 1, 4, 1, 4096, 256, MLXN_DTYPE_F32, MLXN_DTYPE_F16, 4096},
};

typedef struct attn_ctx {
    const attn_row *row;
    mlxn_stream *s;
    mlxn_buffer *q, *k, *v, *o, *pos;
} attn_ctx;

static mlxn_status attn_call(void *ctx, int i)
{
    (void)i;
    attn_ctx *c = ctx;
    const attn_row *r = c->row;
    const int64_t qs[4] = {r->B, r->Tq, r->Hq, r->D}, kvs[4] = {r->B, r->Hkv, r->S, r->D};
    mlxn_tensor q = mlxn_tensor_make(c->q, 0, r->qdt, 4, qs), o = mlxn_tensor_make(c->o, 0, r->qdt, 4, qs);
    mlxn_tensor k = mlxn_tensor_make(c->k, 0, r->kvdt, 4, kvs), v = mlxn_tensor_make(c->v, 0, r->kvdt, 4, kvs);
    mlxn_tensor pos = mlxn_tensor_make(c->pos, 0, MLXN_DTYPE_I32, 1, &r->B);
    mlxn_attention_params p = mlxn_attention_params_default();
    p.scale = 1.0f / sqrtf((float)r->D);
    return mlxn_attention(c->s, &q, &k, &v, &pos, &p, &o);
}

static int bench_attention(mlxn_device *dev, mlxn_stream *s, const mlxn_device_info *info, double copy_gbps,
                           const bench_options *opt)
{
    int failures = 0;
    for (size_t n = 0; n < sizeof attn_rows / sizeof attn_rows[0]; n++) {
        const attn_row *r = &attn_rows[n];
        const size_t qbytes = (size_t)(r->B * r->Tq * r->Hq * r->D) * (size_t)mlxn_dtype_block_bytes(r->qdt);
        /* rows of D elements, or of D / 32 blocks for q8_0 */
        const int64_t kv_row_bytes = r->D / mlxn_dtype_block_elems(r->kvdt) * mlxn_dtype_block_bytes(r->kvdt);
        const size_t kvbytes = (size_t)(r->B * r->Hkv * r->S * kv_row_bytes);
        attn_ctx c = {.row = r, .s = s};
        int32_t *pos = malloc((size_t)r->B * sizeof *pos);
        const int64_t live = r->L ? r->L : r->S; /* keys in the cache, the new ones included */
        for (int64_t b = 0; pos && b < r->B; b++)
            pos[b] = (int32_t)(live - r->Tq);
        bench_timing t = {0};
        bool ok = pos && mlxn_buffer_create(dev, qbytes, &c.q) == MLXN_STATUS_OK &&
                  mlxn_buffer_create(dev, qbytes, &c.o) == MLXN_STATUS_OK &&
                  mlxn_buffer_create(dev, kvbytes, &c.k) == MLXN_STATUS_OK &&
                  mlxn_buffer_create(dev, kvbytes, &c.v) == MLXN_STATUS_OK &&
                  mlxn_buffer_create(dev, (size_t)r->B * 4, &c.pos) == MLXN_STATUS_OK &&
                  mlxn_buffer_upload(c.pos, 0, pos, (size_t)r->B * 4, NULL) == MLXN_STATUS_OK &&
                  fill_random(c.q, r->qdt, qbytes, 71) && fill_random(c.k, r->kvdt, kvbytes, 73) &&
                  fill_random(c.v, r->kvdt, kvbytes, 79);
        /* decode: the caches are past L2, no rotation needed; prefill is bound by arithmetic */
        ok = ok && bench_time(dev, s, attn_call, &c, info->kind == MLXN_DEVICE_CUDA ? 4 : 1, opt->quick ? 5 : 20, &t);
        char shape[64], variant[24];
        snprintf(shape, sizeof shape, "%lldx%lldx%lld:%lldx%lld@%lld", (long long)r->B, (long long)r->Tq,
                 (long long)r->Hq, (long long)r->Hkv, (long long)r->S, (long long)live);
        snprintf(variant, sizeof variant, "%s/D%lld/q_%s", r->Tq == 1 ? "decode" : "prefill", (long long)r->D,
                 mlxn_dtype_name(r->qdt));
        if (!ok) {
            printf("%-22.22s %-13s %-22s %-18s error: %s\n", info->name, "attention", shape, variant, mlxn_last_error());
            failures++;
        } else {
            /* keys read: pos + Tq per sequence; pairs: causal, the (Tq + 1) Tq / 2 triangle on top of pos Tq */
            const double keys = (double)live, moved = 2.0 * (double)(r->B * r->Hkv * kv_row_bytes) * keys;
            const double pairs = (double)(r->B * r->Hq) *
                                 ((double)(live - r->Tq) * (double)r->Tq + (double)r->Tq * (double)(r->Tq + 1) / 2);
            const double sec = t.median_ms * 1e-3, gbps = moved / sec / 1e9, tflops = 4.0 * (double)r->D * pairs / sec / 1e12;
            printf("%-22.22s %-13s %-22s %-18s %-5s %10.2f %10.2f %10.2f %9.1f %6.1f%% %7.2f TFLOP/s\n", info->name,
                   "attention", shape, variant, mlxn_dtype_name(r->kvdt), t.median_ms * 1e3, t.p10_ms * 1e3,
                   t.p90_ms * 1e3, gbps, 100.0 * gbps / copy_gbps, tflops);
            if (opt->json)
                fprintf(opt->json,
                        "{\"device\":\"%s\",\"op\":\"attention\",\"shape\":\"%s\",\"variant\":\"%s\",\"dtype\":\"%s\","
                        "\"median_us\":%.3f,\"p10_us\":%.3f,\"p90_us\":%.3f,\"bytes\":%.0f,\"gbps\":%.2f,"
                        "\"pct_copy\":%.2f,\"tflops\":%.3f}\n",
                        info->name, shape, variant, mlxn_dtype_name(r->kvdt), t.median_ms * 1e3, t.p10_ms * 1e3,
                        t.p90_ms * 1e3, moved, gbps, 100.0 * gbps / copy_gbps, tflops);
        }
        fflush(stdout);
        free(pos);
        mlxn_buffer_free(c.q);
        mlxn_buffer_free(c.o);
        mlxn_buffer_free(c.k);
        mlxn_buffer_free(c.v);
        mlxn_buffer_free(c.pos);
    }
    return failures;
}

/* ---------------------------------------------------------------- layout ops, l2_norm, cumsum */

typedef enum layout_op { LAYOUT_COPY, LAYOUT_PERMUTE, LAYOUT_CONCAT, LAYOUT_L2_NORM, LAYOUT_CUMSUM } layout_op;
static const char *layout_op_names[] = {"copy", "permute", "concat", "l2_norm", "cumsum"};

typedef struct layout_row {
    layout_op op;
    mlxn_dtype x_dtype, y_dtype;
    int ndim;
    int64_t shape[4]; /* x's; concat: one part's, three parts along the last dim */
    int perm[4];
} layout_row;

/* Prefill-sized activations: a cast to bf16 and plain copies (the floor: the copy ceiling
 * itself), the [T, H, D] <-> [H, T, D] head transposes of attention (whole rows of D move: the
 * runs path), a full 2-D transpose (the tiled path), q/k/v concatenated along features;
 * l2_norm over wide rows and over head-sized rows (qk-norm of 32 heads x 4096 tokens); cumsum
 * over one long row and a few vocabulary rows (the look-back) and over many rows. */
static const layout_row layout_rows[] = {
    {LAYOUT_COPY, MLXN_DTYPE_BF16, MLXN_DTYPE_BF16, 2, {4096, 14336}, {0}},
    {LAYOUT_COPY, MLXN_DTYPE_F32, MLXN_DTYPE_BF16, 2, {4096, 14336}, {0}},
    {LAYOUT_PERMUTE, MLXN_DTYPE_BF16, MLXN_DTYPE_BF16, 3, {4096, 32, 128}, {1, 0, 2}},
    {LAYOUT_PERMUTE, MLXN_DTYPE_F32, MLXN_DTYPE_F32, 2, {8192, 8192}, {1, 0}},
    {LAYOUT_PERMUTE, MLXN_DTYPE_BF16, MLXN_DTYPE_BF16, 2, {8192, 8192}, {1, 0}},
    {LAYOUT_CONCAT, MLXN_DTYPE_BF16, MLXN_DTYPE_BF16, 2, {4096, 4096}, {0}},
    {LAYOUT_L2_NORM, MLXN_DTYPE_F32, MLXN_DTYPE_F32, 2, {16384, 4096}, {0}},
    {LAYOUT_L2_NORM, MLXN_DTYPE_BF16, MLXN_DTYPE_BF16, 2, {131072, 128}, {0}},
    {LAYOUT_CUMSUM, MLXN_DTYPE_F32, MLXN_DTYPE_F32, 2, {1, 1 << 26}, {0}},
    {LAYOUT_CUMSUM, MLXN_DTYPE_I32, MLXN_DTYPE_I32, 2, {1, 1 << 26}, {0}},
    {LAYOUT_CUMSUM, MLXN_DTYPE_F32, MLXN_DTYPE_F32, 2, {32, 151936}, {0}},
    {LAYOUT_CUMSUM, MLXN_DTYPE_F32, MLXN_DTYPE_F32, 2, {16384, 4096}, {0}},
};

typedef struct layout_ctx {
    const layout_row *row;
    mlxn_stream *s;
    mlxn_buffer *x, *y;
} layout_ctx;

static mlxn_status layout_call(void *ctx, int i)
{
    (void)i;
    const layout_ctx *c = ctx;
    const layout_row *r = c->row;
    mlxn_tensor x = mlxn_tensor_make(c->x, 0, r->x_dtype, r->ndim, r->shape);
    int64_t ys[4];
    for (int d = 0; d < r->ndim; d++)
        ys[d] = r->op == LAYOUT_PERMUTE ? r->shape[r->perm[d]] : r->shape[d];
    if (r->op == LAYOUT_CONCAT)
        ys[r->ndim - 1] *= 3;
    mlxn_tensor y = mlxn_tensor_make(c->y, 0, r->y_dtype, r->ndim, ys);
    switch (r->op) {
    case LAYOUT_COPY: return mlxn_copy(c->s, &x, &y);
    case LAYOUT_PERMUTE: return mlxn_permute(c->s, &x, r->perm, &y);
    case LAYOUT_CONCAT: {
        const size_t part = (size_t)mlxn_tensor_numel(&x) * (size_t)mlxn_dtype_block_bytes(r->x_dtype);
        mlxn_tensor k = mlxn_tensor_make(c->x, part, r->x_dtype, r->ndim, r->shape);
        mlxn_tensor v = mlxn_tensor_make(c->x, 2 * part, r->x_dtype, r->ndim, r->shape);
        const mlxn_tensor *parts[3] = {&x, &k, &v};
        return mlxn_concat(c->s, parts, 3, r->ndim - 1, &y);
    }
    case LAYOUT_L2_NORM: return mlxn_l2_norm(c->s, &x, 1e-6f, &y);
    case LAYOUT_CUMSUM: return mlxn_cumsum(c->s, &x, &y);
    }
    return MLXN_STATUS_ERR_INTERNAL;
}

static int bench_layout(mlxn_device *dev, mlxn_stream *s, const mlxn_device_info *info, double copy_gbps,
                        const bench_options *opt)
{
    int failures = 0;
    for (size_t k = 0; k < sizeof layout_rows / sizeof layout_rows[0]; k++) {
        const layout_row *r = &layout_rows[k];
        const char *op = layout_op_names[r->op];
        if (opt->op && strcmp(opt->op, op) != 0)
            continue;
        int64_t numel = 1;
        for (int d = 0; d < r->ndim; d++)
            numel *= r->shape[d];
        if (r->op == LAYOUT_CONCAT)
            numel *= 3;
        const size_t xb = (size_t)numel * (size_t)mlxn_dtype_block_bytes(r->x_dtype);
        const size_t yb = (size_t)numel * (size_t)mlxn_dtype_block_bytes(r->y_dtype);
        layout_ctx c = {.row = r, .s = s};
        bench_timing t = {0};
        /* one set of buffers, each past the last-level cache (the decode-sized rows aside, none
         * of these fits in it) */
        bool ok = mlxn_buffer_create(dev, xb, &c.x) == MLXN_STATUS_OK &&
                  mlxn_buffer_create(dev, yb, &c.y) == MLXN_STATUS_OK &&
                  fill_random(c.x, r->x_dtype == MLXN_DTYPE_I32 ? MLXN_DTYPE_U8 : r->x_dtype, xb, 83);
        ok = ok && bench_time(dev, s, layout_call, &c, info->kind == MLXN_DEVICE_CUDA ? 8 : 1, opt->quick ? 5 : 15, &t);
        char shape[48], variant[32];
        size_t n = 0;
        for (int d = 0; d < r->ndim; d++)
            n += (size_t)snprintf(shape + n, sizeof shape - n, d ? "x%lld" : "%lld", (long long)r->shape[d]);
        if (r->op == LAYOUT_PERMUTE) {
            size_t m = (size_t)snprintf(variant, sizeof variant, "perm ");
            for (int d = 0; d < r->ndim; d++)
                m += (size_t)snprintf(variant + m, sizeof variant - m, "%d", r->perm[d]);
        } else if (r->op == LAYOUT_COPY || r->op == LAYOUT_CONCAT)
            snprintf(variant, sizeof variant, "%s%s->%s", r->op == LAYOUT_CONCAT ? "3x " : "",
                     mlxn_dtype_name(r->x_dtype), mlxn_dtype_name(r->y_dtype));
        else
            snprintf(variant, sizeof variant, "-");
        const double moved = (double)(xb + yb);
        failures += !report_bytes_row(info, op, shape, variant, mlxn_dtype_name(r->x_dtype), ok ? &t : NULL, moved,
                                      copy_gbps, opt);
        fflush(stdout);
        mlxn_buffer_free(c.x);
        mlxn_buffer_free(c.y);
    }
    return failures;
}

const char bench_op_names[] = "rms_norm, qmatmul_mlx, qmatmul, qmatmul_id, act, softmax, rope, get_rows, binary, scale, argmax, sample, moe_gate, moe_reduce, attention, copy, permute, concat, l2_norm, cumsum";

bool bench_has_op(const char *name)
{
    const size_t n = strlen(name);
    for (const char *p = bench_op_names; (p = strstr(p, name)) != NULL; p += n)
        if ((p == bench_op_names || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

int bench_ops_run(mlxn_device *dev, const bench_options *opt)
{
    mlxn_stream *s = NULL;
    mlxn_device_info info;
    if (mlxn_device_get_info(dev, &info) != MLXN_STATUS_OK ||
        mlxn_stream_create(dev, &s) != MLXN_STATUS_OK) {
        fprintf(stderr, "mlxn bench: %s\n", mlxn_last_error());
        return 1;
    }
    double copy_gbps = 0;
    bench_timing ct;
    size_t copy_bytes = 0;
    if (!bench_copy_bandwidth(dev, s, opt->quick, &copy_gbps, &ct, &copy_bytes)) {
        fprintf(stderr, "mlxn bench: copy ceiling: %s\n", mlxn_last_error());
        mlxn_stream_free(s);
        return 1;
    }
    printf("device: %s\n", info.name);
    printf("copy ceiling: %.1f GB/s (read + write of %zu MiB, median of %d; p10 %.3f ms, p90 "
           "%.3f ms)\n",
           copy_gbps, copy_bytes >> 20, ct.samples, ct.p10_ms, ct.p90_ms);
    if (opt->json)
        fprintf(opt->json, "{\"device\":\"%s\",\"ceiling\":\"copy\",\"gbps\":%.2f,\"bytes\":%zu}\n",
                info.name, copy_gbps, copy_bytes);
    double read_gbps = 0;
    if (info.kind == MLXN_DEVICE_CPU) {
        bench_timing rt;
        size_t read_bytes = 0;
        if (!bench_read_bandwidth(dev, opt->quick, &read_gbps, &rt, &read_bytes)) {
            fprintf(stderr, "mlxn bench: read ceiling: %s\n", mlxn_last_error());
            mlxn_stream_free(s);
            return 1;
        }
        printf("read ceiling: %.1f GB/s (%d threads read %zu MiB, median of %d; p10 %.3f ms, p90 %.3f ms)\n",
               read_gbps, info.multiprocessors, read_bytes >> 20, rt.samples, rt.p10_ms, rt.p90_ms);
        if (opt->json)
            fprintf(opt->json, "{\"device\":\"%s\",\"ceiling\":\"read\",\"gbps\":%.2f,\"bytes\":%zu}\n",
                    info.name, read_gbps, read_bytes);
    }
    print_header();
    int failures = 0;
    if (!opt->op || strcmp(opt->op, "rms_norm") == 0)
        failures += bench_rms_norm(dev, s, &info, copy_gbps, opt);
    for (int mlx = 1; mlx >= 0; mlx--) {
        const char *op = mlx ? "qmatmul_mlx" : "qmatmul";
        if (opt->op && strcmp(opt->op, op) != 0)
            continue;
        printf("\n%-22s %-13s %-16s %-8s %10s %10s %10s %9s %7s %7s\n", "device", "op", "M NxK", "format",
               "median_us", "p10_us", "p90_us", "GB/s", "%copy", read_gbps > 0 ? "%read" : "");
        failures += bench_qmatmul(dev, s, &info, copy_gbps, read_gbps, opt, mlx);
    }
    if (!opt->op || strcmp(opt->op, "act") == 0 || strcmp(opt->op, "softmax") == 0) {
        printf("\n%-22s %-13s %-16s %-14s %-5s %10s %10s %10s %9s %7s\n", "device", "op", "shape", "variant", "dtype",
               "median_us", "p10_us", "p90_us", "GB/s", "%copy");
        failures += bench_act(dev, s, &info, copy_gbps, opt);
    }
    if (!opt->op || strcmp(opt->op, "rope") == 0) {
        printf("\n%-22s %-13s %-16s %-14s %-5s %10s %10s %10s %9s %7s\n", "device", "op", "shape", "variant", "dtype",
               "median_us", "p10_us", "p90_us", "GB/s", "%copy");
        failures += bench_rope(dev, s, &info, copy_gbps, opt);
    }
    if (!opt->op || strcmp(opt->op, "get_rows") == 0 || strcmp(opt->op, "binary") == 0 ||
        strcmp(opt->op, "scale") == 0 || strcmp(opt->op, "argmax") == 0 || strcmp(opt->op, "sample") == 0 ||
        strcmp(opt->op, "moe_gate") == 0 || strcmp(opt->op, "moe_reduce") == 0) {
        printf("\n%-22s %-13s %-16s %-14s %-5s %10s %10s %10s %9s %7s\n", "device", "op", "shape", "variant", "dtype",
               "median_us", "p10_us", "p90_us", "GB/s", "%copy");
        failures += bench_small(dev, s, &info, copy_gbps, opt);
    }
    if (!opt->op || strcmp(opt->op, "attention") == 0) {
        printf("\n%-22s %-13s %-22s %-18s %-5s %10s %10s %10s %9s %7s %s\n", "device", "op", "BxTqxHq:HkvxS", "variant",
               "cache", "median_us", "p10_us", "p90_us", "KV GB/s", "%copy", "causal TFLOP/s");
        failures += bench_attention(dev, s, &info, copy_gbps, opt);
    }
    if (!opt->op || strcmp(opt->op, "copy") == 0 || strcmp(opt->op, "permute") == 0 ||
        strcmp(opt->op, "concat") == 0 || strcmp(opt->op, "l2_norm") == 0 || strcmp(opt->op, "cumsum") == 0) {
        printf("\n%-22s %-13s %-16s %-14s %-5s %10s %10s %10s %9s %7s\n", "device", "op", "shape", "variant", "x",
               "median_us", "p10_us", "p90_us", "GB/s", "%copy");
        failures += bench_layout(dev, s, &info, copy_gbps, opt);
    }
    if (!opt->op || strcmp(opt->op, "qmatmul_id") == 0) {
        printf("\n%-22s %-13s %-22s %-12s %10s %10s %10s %9s %7s %s\n", "device", "op", "T E/k NxK", "format",
               "median_us", "p10_us", "p90_us", "GB/s", "%copy", "TFLOP/s");
        failures += bench_qmatmul_id(dev, s, &info, copy_gbps, opt);
    }
    mlxn_stream_free(s);
    return failures ? 1 : 0;
}
