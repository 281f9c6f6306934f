/* Harness cases for the expert-routed ops.
 *
 * moe_route_map: ids of T tokens x k slots over E experts (random top-k, every token on one
 * expert, half the experts empty, ids outside [0, E), repeated experts in a token), strided ids;
 * offsets and rows compared exactly with the oracle.
 *
 * qmatmul_id and qmatmul_id_swiglu: every W format (and f32/f16/bf16 W) x T from 1 to 512 x k
 * from 1 to 16 x E from 1 to 128, odd N, K several blocks long, x [T, K] and [T, k, K] in
 * f32/f16/bf16, contiguous, row-padded and transposed views, with experts that get no tokens,
 * all tokens on one expert and out-of-range ids (rows of zeros), against the oracle on every
 * device. W is made as in op_qmatmul.c (tests/weights.c): about half the rows real
 * quantizations, the others random valid blocks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "harness.h"
#include "weights.h"
#include "mlxn_quant.h"
#include "test_ops.h"

/* |y - ref| <= tol * sum_k |x_k| |w_k|, as for qmatmul (op_qmatmul.c): f32 accumulation on the
 * CPU and on the CUDA mat-vec path (up to 64 pairs); from 65 pairs CUDA rounds x and the decoded
 * W to bf16 for the tensor cores, a relative error of at most 2^-9 each:
 * (2 * 2^-9 + 2^-18) sum|x||w| ~ 3.9e-3, plus f32 accumulation. */
#define QID_TOL 1e-5
#define QID_TOL_BF16 4e-3
#define QID_DECODE_PAIRS 64

/* How the ids are drawn. */
typedef enum ids_mode {
    IDS_TOPK,         /* k distinct random experts per token (repeats only when k > E) */
    IDS_ONE_EXPERT,   /* every slot of every token on expert E - 1 */
    IDS_HALF_EMPTY,   /* random even experts: the odd ones get no pairs */
    IDS_OUT_OF_RANGE, /* random, about one in six replaced by -1, E, E + 7 or INT32_MIN */
    IDS_MODES
} ids_mode;

static const char *mode_name(ids_mode m)
{
    static const char *names[IDS_MODES] = {"topk", "one-expert", "half-empty", "out-of-range"};
    return names[m];
}

static void fill_ids(operand *ids, int64_t T, int64_t k, int64_t E, ids_mode mode, rng *g)
{
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < k; j++) {
            int64_t e = rng_int(g, 0, E - 1);
            if (mode == IDS_TOPK && k <= E) /* distinct: redraw until unused in this token */
                for (bool again = true; again;) {
                    again = false;
                    for (int64_t i = 0; i < j; i++)
                        if (operand_get(ids, t * k + i) == (double)e) {
                            e = rng_int(g, 0, E - 1);
                            again = true;
                            break;
                        }
                }
            if (mode == IDS_ONE_EXPERT)
                e = E - 1;
            if (mode == IDS_HALF_EMPTY)
                e = e / 2 * 2;
            if (mode == IDS_OUT_OF_RANGE && rng_int(g, 0, 5) == 0) {
                static const int64_t bad[4] = {-1, 0, 7, INT32_MIN};
                const int64_t b = bad[rng_int(g, 0, 3)];
                e = b == 0 ? E : b == 7 ? E + 7 : b;
            }
            operand_set(ids, t * k + j, (double)e);
        }
}

/* ---------------------------------------------------------------- moe_route_map */

typedef struct map_case {
    int64_t T, k, E, pad;
    ids_mode mode;
} map_case;

static bool map_run(const operand *ids, const operand *off, const operand *rows, int E, test_device *dev,
                    operand *got_off, operand *got_rows, char *why, size_t cap)
{
    placed pi = {0}, po = {0}, pr = {0};
    bool ok = false;
    got_off->image = got_rows->image = NULL;
    if (!operand_place(ids, dev, &pi) || !operand_place(off, dev, &po) || !operand_place(rows, dev, &pr)) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    mlxn_status st = mlxn_moe_route_map(dev->stream, &pi.view, E, &po.view, &pr.view);
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(&po, dev, off, got_off) || !placed_fetch(&pr, dev, rows, got_rows)) {
        snprintf(why, cap, "fetching the map: %s", mlxn_last_error());
        goto done;
    }
    ok = true;
done:
    placed_free(&pi);
    placed_free(&po);
    placed_free(&pr);
    return ok;
}

static void map_case_run(const map_case *c, test_devices *devs, rng *g)
{
    char name[200], full[300], why[512];
    snprintf(name, sizeof name, "moe_route_map/T=%lld/k=%lld/E=%lld/%s%s", (long long)c->T, (long long)c->k,
             (long long)c->E, mode_name(c->mode), c->pad ? "/strided" : "");
    operand ids, off, rows, want_off, want_rows;
    memset(&ids, 0, sizeof ids);
    memset(&off, 0, sizeof off);
    memset(&rows, 0, sizeof rows);
    const int64_t is[2] = {c->T, c->k}, os = c->E + 1, rs = c->T * c->k;
    if (!operand_init(&ids, MLXN_DTYPE_I32, 2, is, c->pad, false) ||
        !operand_init(&off, MLXN_DTYPE_I32, 1, &os, 0, false) || !operand_init(&rows, MLXN_DTYPE_I32, 1, &rs, 0, false)) {
        harness_fail(name, "out of memory");
        goto done;
    }
    fill_ids(&ids, c->T, c->k, c->E, c->mode, g);
    for (int64_t i = 0; i < os; i++) /* poison: -7 is no valid answer */
        operand_set(&off, i, -7);
    for (int64_t i = 0; i < rs; i++)
        operand_set(&rows, i, -7);
    if (!map_run(&ids, &off, &rows, (int)c->E, &devs->ref, &want_off, &want_rows, why, sizeof why)) {
        harness_fail(name, "reference: %s", why);
        goto done;
    }
    const tolerance exact = {0, 0, "indices are exact"};
    for (int d = 0; d < devs->count; d++) {
        snprintf(full, sizeof full, "%s @%s", name, devs->list[d].name);
        operand got_off = {0}, got_rows = {0};
        if (!map_run(&ids, &off, &rows, (int)c->E, &devs->list[d], &got_off, &got_rows, why, sizeof why))
            harness_fail(full, "%s", why);
        else if (!compare_operands(&got_off, &want_off, exact, why, sizeof why))
            harness_fail(full, "offsets: %s", why);
        else if (!compare_operands(&got_rows, &want_rows, exact, why, sizeof why))
            harness_fail(full, "rows: %s", why);
        else
            harness_pass(full);
        if (got_off.image)
            operand_free(&got_off);
        if (got_rows.image)
            operand_free(&got_rows);
    }
    operand_free(&want_off);
    operand_free(&want_rows);
done:
    operand_free(&ids);
    operand_free(&off);
    operand_free(&rows);
}

/* ---------------------------------------------------------------- qmatmul_id */

typedef struct qid_case {
    mlxn_dtype w_dtype, x_dtype;
    int64_t T, k, E, N, K;
    bool per_slot;  /* x [T, k, K] */
    int64_t pad;    /* row padding of x, ids and y */
    bool transpose; /* 3-D x and y stored with T and k swapped */
    ids_mode mode;
    bool swiglu;
    double x_mag; /* x's scale (0: 1): the CUDA decode pre-scales x by powers of two */
} qid_case;

typedef struct qid_data {
    uint8_t *w[2]; /* gate (or the only W), up */
    float *wf[2];
    size_t w_bytes;
    operand x, ids, y;
} qid_data;

static void free_data(qid_data *d)
{
    for (int i = 0; i < 2; i++) {
        free(d->w[i]);
        free(d->wf[i]);
    }
    operand_free(&d->x);
    operand_free(&d->ids);
    operand_free(&d->y);
}

static bool make_data(const qid_case *c, rng *g, qid_data *d)
{
    memset(d, 0, sizeof *d);
    const int64_t rows = c->E * c->N;
    d->w_bytes = (size_t)(rows * (c->K / mlxn_dtype_block_elems(c->w_dtype)) * mlxn_dtype_block_bytes(c->w_dtype));
    for (int i = 0; i < (c->swiglu ? 2 : 1); i++) {
        d->w[i] = malloc(d->w_bytes);
        d->wf[i] = malloc((size_t)(rows * c->K) * sizeof(float));
        if (!d->w[i] || !d->wf[i] || !weights_make(c->w_dtype, rows, c->K, g, d->w[i], d->wf[i]))
            return false;
    }
    const int64_t xs2[2] = {c->T, c->K}, xs3[3] = {c->T, c->k, c->K}, is[2] = {c->T, c->k},
                  ys[3] = {c->T, c->k, c->N};
    bool ok = (c->per_slot ? operand_init(&d->x, c->x_dtype, 3, xs3, c->pad, c->transpose)
                           : operand_init(&d->x, c->x_dtype, 2, xs2, c->pad, false)) &&
              operand_init(&d->ids, MLXN_DTYPE_I32, 2, is, c->pad, false) &&
              operand_init(&d->y, MLXN_DTYPE_F32, 3, ys, c->pad, c->transpose);
    if (!ok)
        return false;
    for (int64_t i = 0; i < d->x.numel; i++)
        operand_set(&d->x, i, (c->x_mag ? c->x_mag : 1.0) * rng_normal(g));
    fill_ids(&d->ids, c->T, c->k, c->E, c->mode, g);
    operand_poison(&d->y);
    return true;
}

/* The error bound of each output (see QID_TOL): sum_k |x_k| |w_k| for a plain product; for
 * SwiGLU y = silu(g) u, |dy| <= |silu'(g)| |u| |dg| + |silu(g)| |du| + |silu'| |dg| |du| with
 * |silu'| < 1.1. Rows of out-of-range pairs have bound 0: they must be exactly zero. */
static double *bounds(const qid_case *c, const qid_data *d)
{
    const int64_t P = c->T * c->k;
    double *out = calloc((size_t)(P * c->N), sizeof *out);
    for (int64_t p = 0; out && p < P; p++) {
        const int64_t e = (int64_t)operand_get(&d->ids, p);
        if (e < 0 || e >= c->E)
            continue;
        const int64_t x0 = (c->per_slot ? p : p / c->k) * c->K;
        for (int64_t n = 0; n < c->N; n++) {
            double s[2] = {0, 0}, v[2] = {0, 0};
            for (int i = 0; i < (c->swiglu ? 2 : 1); i++) {
                const float *w = d->wf[i] + (e * c->N + n) * c->K;
                for (int64_t kk = 0; kk < c->K; kk++) {
                    const double xv = operand_get(&d->x, x0 + kk);
                    s[i] += fabs(xv) * fabs((double)w[kk]);
                    v[i] += xv * w[kk];
                }
            }
            out[p * c->N + n] = !c->swiglu ? s[0]
                                           : 1.1 * fabs(v[1]) * s[0] + fabs(v[0] / (1 + exp(-v[0]))) * s[1] +
                                                 1.1 * QID_TOL_BF16 * s[0] * s[1];
        }
    }
    return out;
}

typedef struct qid_run {
    const qid_case *c;
    const qid_data *d;
} qid_run;

static bool run_cb(void *ctx, test_device *dev, operand *out, char *why, size_t cap)
{
    const qid_run *r = ctx;
    const qid_case *c = r->c;
    const qid_data *d = r->d;
    mlxn_buffer *bw[2] = {NULL, NULL};
    placed x = {0}, ids = {0}, y = {0}, y0 = {0};
    bool ok = false;
    /* decode sizes: the op twice, the first time into a y of its own, so that the checked call
     * follows a qmatmul_id that does not write its ids, as a model's down projection follows its
     * gate and up (on CUDA it then reads ids before waiting for that call: ids_early in ops.c) */
    const bool twice = c->T * c->k <= QID_DECODE_PAIRS;
    for (int i = 0; i < (c->swiglu ? 2 : 1); i++)
        if (mlxn_buffer_create(dev->device, d->w_bytes, &bw[i]) ||
            mlxn_buffer_upload(bw[i], 0, d->w[i], d->w_bytes, NULL)) {
            snprintf(why, cap, "placing W: %s", mlxn_last_error());
            goto done;
        }
    if (!operand_place(&d->x, dev, &x) || !operand_place(&d->ids, dev, &ids) || !operand_place(&d->y, dev, &y) ||
        (twice && !operand_place(&d->y, dev, &y0))) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    const int64_t ws[3] = {c->E, c->N, c->K};
    mlxn_tensor tw = mlxn_tensor_make(bw[0], 0, c->w_dtype, 3, ws);
    mlxn_tensor tu = c->swiglu ? mlxn_tensor_make(bw[1], 0, c->w_dtype, 3, ws) : tw;
    mlxn_status st = MLXN_STATUS_OK;
    for (int call = twice ? 0 : 1; call < 2 && st == MLXN_STATUS_OK; call++) {
        const mlxn_tensor *yv = call ? &y.view : &y0.view;
        st = c->swiglu ? mlxn_qmatmul_id_swiglu(dev->stream, &x.view, &tw, &tu, &ids.view, yv)
                       : mlxn_qmatmul_id(dev->stream, &x.view, &tw, &ids.view, yv);
    }
    if (st != MLXN_STATUS_OK) {
        snprintf(why, cap, "%s: %s", mlxn_status_str(st), mlxn_last_error());
        goto done;
    }
    if (!placed_fetch(&y, dev, &d->y, out)) {
        snprintf(why, cap, "fetching y: %s", mlxn_last_error());
        goto done;
    }
    ok = true;
done:
    mlxn_buffer_free(bw[0]);
    mlxn_buffer_free(bw[1]);
    placed_free(&x);
    placed_free(&ids);
    placed_free(&y);
    placed_free(&y0);
    return ok;
}

static void qid_case_run(const qid_case *c, test_devices *devs, rng *g)
{
    char name[256], mag[32] = "";
    if (c->x_mag)
        snprintf(mag, sizeof mag, "/|x|~%g", c->x_mag);
    snprintf(name, sizeof name, "qmatmul_id%s/%s/x=%s%s/T=%lld/k=%lld/E=%lld/%lldx%lld/%s%s%s%s",
             c->swiglu ? "_swiglu" : "", mlxn_dtype_name(c->w_dtype), mlxn_dtype_name(c->x_dtype),
             c->per_slot ? "[T,k,K]" : "[T,K]", (long long)c->T, (long long)c->k, (long long)c->E, (long long)c->N,
             (long long)c->K, mode_name(c->mode), c->pad ? "/strided" : "", c->transpose ? "/transposed" : "", mag);
    qid_data d;
    if (!make_data(c, g, &d)) {
        harness_fail(name, "making data: %s", mlxn_last_error());
        free_data(&d);
        return;
    }
    double *b = bounds(c, &d);
    qid_run r = {c, &d};
    harness_run_bound_case(name, devs, run_cb, &r, b, QID_TOL,
                           c->T * c->k > QID_DECODE_PAIRS ? QID_TOL_BF16 : QID_TOL);
    free(b);
    free_data(&d);
}

/* ---------------------------------------------------------------- graph capture */

/* The op captured once on each device and replayed with new x and ids uploaded into the same
 * buffers: the ids must be read when the graph runs (on CUDA the prefill's routing map and tile
 * schedule are built on the device). One eager call first makes the stream's scratch. */
static void capture_case(const qid_case *c, test_devices *devs, rng *g)
{
    char name[200], full[300], why[512];
    snprintf(name, sizeof name, "qmatmul_id%s/capture/%s/T=%lld/k=%lld/E=%lld/%lldx%lld", c->swiglu ? "_swiglu" : "",
             mlxn_dtype_name(c->w_dtype), (long long)c->T, (long long)c->k, (long long)c->E, (long long)c->N,
             (long long)c->K);
    qid_data d;
    if (!make_data(c, g, &d)) {
        harness_fail(name, "making data: %s", mlxn_last_error());
        free_data(&d);
        return;
    }
    const qid_run r = {c, &d};
    for (int dv = 0; dv < devs->count; dv++) {
        test_device *dev = &devs->list[dv];
        snprintf(full, sizeof full, "%s @%s", name, dev->name);
        mlxn_buffer *bw[2] = {NULL, NULL};
        placed x = {0}, ids = {0}, y = {0};
        mlxn_graph *graph = NULL;
        bool ok = true;
        for (int i = 0; ok && i < (c->swiglu ? 2 : 1); i++)
            ok = mlxn_buffer_create(dev->device, d.w_bytes, &bw[i]) == MLXN_STATUS_OK &&
                 mlxn_buffer_upload(bw[i], 0, d.w[i], d.w_bytes, NULL) == MLXN_STATUS_OK;
        ok = ok && operand_place(&d.x, dev, &x) && operand_place(&d.ids, dev, &ids) && operand_place(&d.y, dev, &y);
        const int64_t ws[3] = {c->E, c->N, c->K};
        mlxn_tensor tw = mlxn_tensor_make(bw[0], 0, c->w_dtype, 3, ws);
        mlxn_tensor tu = c->swiglu ? mlxn_tensor_make(bw[1], 0, c->w_dtype, 3, ws) : tw;
        mlxn_stream *s = dev->stream;
#define QID_ISSUE()                                                                                 \
    (c->swiglu ? mlxn_qmatmul_id_swiglu(s, &x.view, &tw, &tu, &ids.view, &y.view) == MLXN_STATUS_OK \
               : mlxn_qmatmul_id(s, &x.view, &tw, &ids.view, &y.view) == MLXN_STATUS_OK)
        ok = ok && QID_ISSUE() && mlxn_stream_sync(s) == MLXN_STATUS_OK &&
             mlxn_stream_begin_capture(s) == MLXN_STATUS_OK && QID_ISSUE() &&
             mlxn_stream_end_capture(s, &graph) == MLXN_STATUS_OK;
#undef QID_ISSUE
        if (!ok)
            harness_fail(full, "setting up the graph: %s", mlxn_last_error());
        for (int step = 0; ok && step < 3; step++) {
            for (int64_t i = 0; i < d.x.numel; i++)
                operand_set(&d.x, i, rng_normal(g));
            fill_ids(&d.ids, c->T, c->k, c->E, (ids_mode)((c->mode + step) % IDS_MODES), g);
            operand got = {0}, want = {0};
            if (mlxn_buffer_upload(x.buffer, 0, d.x.image, d.x.bytes, NULL) != MLXN_STATUS_OK ||
                mlxn_buffer_upload(ids.buffer, 0, d.ids.image, d.ids.bytes, NULL) != MLXN_STATUS_OK ||
                mlxn_graph_launch(graph, s) != MLXN_STATUS_OK || mlxn_stream_sync(s) != MLXN_STATUS_OK ||
                !placed_fetch(&y, dev, &d.y, &got)) {
                harness_fail(full, "step %d: %s", step, mlxn_last_error());
                ok = false;
                break;
            }
            double *b = bounds(c, &d);
            if (!run_cb((void *)&r, &devs->ref, &want, why, sizeof why)) {
                harness_fail(full, "step %d: reference: %s", step, why);
                ok = false;
            } else {
                const double tol = strncmp(dev->name, "cuda", 4) || c->T * c->k <= QID_DECODE_PAIRS ? QID_TOL
                                                                                                     : QID_TOL_BF16;
                if (!b || !compare_within_bound(&got, &want, b, tol, why, sizeof why)) {
                    harness_fail(full, "step %d: %s", step, b ? why : "out of memory");
                    ok = false;
                }
                operand_free(&want);
            }
            free(b);
            operand_free(&got);
        }
        if (ok)
            harness_pass(full);
        mlxn_graph_free(graph);
        mlxn_buffer_free(bw[0]);
        mlxn_buffer_free(bw[1]);
        placed_free(&x);
        placed_free(&ids);
        placed_free(&y);
    }
    free_data(&d);
}

/* ---------------------------------------------------------------- errors */

static void error_cases(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 20, &b) != MLXN_STATUS_OK)
        return;
    mlxn_stream *s = dev->stream;
    const int64_t xs[2] = {3, 256}, xs3[3] = {3, 2, 256}, xbad[2] = {4, 256}, ws[3] = {4, 8, 256},
                  w2[2] = {8, 256}, w96[3] = {4, 8, 96}, x96[2] = {3, 96}, is[2] = {3, 2}, i17[2] = {3, 17},
                  i1[1] = {6}, ys[3] = {3, 2, 8}, ybad[3] = {3, 2, 9}, off[1] = {5}, off4[1] = {4}, rows[1] = {6},
                  rows5[1] = {5}, wu[3] = {4, 8, 256};
    mlxn_tensor x = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, xs);
    mlxn_tensor x3 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 3, xs3);
    mlxn_tensor xb = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, xbad);
    mlxn_tensor xi = mlxn_tensor_make(b, 0, MLXN_DTYPE_I8, 2, xs);
    mlxn_tensor x9 = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, x96);
    mlxn_tensor w = mlxn_tensor_make(b, 8192, MLXN_DTYPE_Q4_0, 3, ws);
    mlxn_tensor wk = mlxn_tensor_make(b, 8192, MLXN_DTYPE_Q4_K, 3, w96);
    mlxn_tensor wflat = mlxn_tensor_make(b, 8192, MLXN_DTYPE_Q4_0, 2, w2);
    mlxn_tensor wi = mlxn_tensor_make(b, 8192, MLXN_DTYPE_I32, 3, ws);
    mlxn_tensor wu8 = mlxn_tensor_make(b, 65536, MLXN_DTYPE_Q8_0, 3, wu);
    mlxn_tensor ids = mlxn_tensor_make(b, 131072, MLXN_DTYPE_I32, 2, is);
    mlxn_tensor idf = mlxn_tensor_make(b, 131072, MLXN_DTYPE_F32, 2, is);
    mlxn_tensor id17 = mlxn_tensor_make(b, 131072, MLXN_DTYPE_I32, 2, i17);
    mlxn_tensor id1 = mlxn_tensor_make(b, 131072, MLXN_DTYPE_I32, 1, i1);
    mlxn_tensor y = mlxn_tensor_make(b, 196608, MLXN_DTYPE_F32, 3, ys);
    mlxn_tensor y9 = mlxn_tensor_make(b, 196608, MLXN_DTYPE_F32, 3, ybad);
    mlxn_tensor y16 = mlxn_tensor_make(b, 196608, MLXN_DTYPE_F16, 3, ys);
    mlxn_tensor to = mlxn_tensor_make(b, 262144, MLXN_DTYPE_I32, 1, off);
    mlxn_tensor to4 = mlxn_tensor_make(b, 262144, MLXN_DTYPE_I32, 1, off4);
    mlxn_tensor tof = mlxn_tensor_make(b, 262144, MLXN_DTYPE_F32, 1, off);
    mlxn_tensor tr = mlxn_tensor_make(b, 327680, MLXN_DTYPE_I32, 1, rows);
    mlxn_tensor tr5 = mlxn_tensor_make(b, 327680, MLXN_DTYPE_I32, 1, rows5);

    harness_expect_status("moe_route_map/error/ids-dtype", mlxn_moe_route_map(s, &idf, 4, &to, &tr),
                          MLXN_STATUS_ERR_DTYPE, "ids are f32, expected i32");
    harness_expect_status("moe_route_map/error/ids-dims", mlxn_moe_route_map(s, &id1, 4, &to, &tr),
                          MLXN_STATUS_ERR_SHAPE, "expected [T, k]");
    harness_expect_status("moe_route_map/error/k-17", mlxn_moe_route_map(s, &id17, 4, &to, &tr), MLXN_STATUS_ERR_SHAPE,
                          "k = 17 slots per token, expected 1 to 16");
    harness_expect_status("moe_route_map/error/no-experts", mlxn_moe_route_map(s, &ids, 0, &to, &tr),
                          MLXN_STATUS_ERR_INVALID_ARG, "n_experts is 0");
    harness_expect_status("moe_route_map/error/offsets-shape", mlxn_moe_route_map(s, &ids, 4, &to4, &tr),
                          MLXN_STATUS_ERR_SHAPE, "offsets has shape 4, expected [5]");
    harness_expect_status("moe_route_map/error/offsets-dtype", mlxn_moe_route_map(s, &ids, 4, &tof, &tr),
                          MLXN_STATUS_ERR_DTYPE, "offsets is f32, expected i32");
    harness_expect_status("moe_route_map/error/rows-shape", mlxn_moe_route_map(s, &ids, 4, &to, &tr5),
                          MLXN_STATUS_ERR_SHAPE, "rows has shape 5, expected [6]");
    harness_expect_status("moe_route_map/error/null-rows", mlxn_moe_route_map(s, &ids, 4, &to, NULL),
                          MLXN_STATUS_ERR_INVALID_ARG, "rows is NULL");

    harness_expect_status("qmatmul_id/error/x-rows", mlxn_qmatmul_id(s, &xb, &w, &ids, &y), MLXN_STATUS_ERR_SHAPE,
                          "x has shape 4x256, expected [T, K] = [3, K] or [T, k, K] = [3, 2, K]");
    harness_expect_status("qmatmul_id/error/x-dtype", mlxn_qmatmul_id(s, &xi, &w, &ids, &y), MLXN_STATUS_ERR_DTYPE,
                          "x is i8");
    harness_expect_status("qmatmul_id/error/w-dims", mlxn_qmatmul_id(s, &x, &wflat, &ids, &y), MLXN_STATUS_ERR_SHAPE,
                          "w has shape 8x256, expected 3 dims [E, N, K]");
    harness_expect_status("qmatmul_id/error/w-dtype", mlxn_qmatmul_id(s, &x, &wi, &ids, &y), MLXN_STATUS_ERR_DTYPE,
                          "w is i32");
    /* Q8_0 experts at an odd address (a byte copy per row's halfwords faulted on the GPU) */
    mlxn_tensor wodd = mlxn_tensor_make(b, 8193, MLXN_DTYPE_Q8_0, 3, ws);
    harness_expect_status("qmatmul_id/error/w-misaligned", mlxn_qmatmul_id(s, &x, &wodd, &ids, &y),
                          MLXN_STATUS_ERR_SHAPE, "multiple of 2 bytes");
    /* 96 is not a multiple of q4_K's 256: the view itself is refused */
    harness_expect_status("qmatmul_id/error/k-not-block-multiple", mlxn_qmatmul_id(s, &x9, &wk, &ids, &y),
                          MLXN_STATUS_ERR_SHAPE, "256");
    harness_expect_status("qmatmul_id/error/k-mismatch", mlxn_qmatmul_id(s, &x9, &w, &ids, &y), MLXN_STATUS_ERR_SHAPE,
                          "w has rows of 256, x has rows of 96");
    harness_expect_status("qmatmul_id/error/y-shape", mlxn_qmatmul_id(s, &x3, &w, &ids, &y9), MLXN_STATUS_ERR_SHAPE,
                          "y has shape 3x2x9, expected [T, k, N] = [3, 2, 8]");
    harness_expect_status("qmatmul_id/error/y-dtype", mlxn_qmatmul_id(s, &x, &w, &ids, &y16), MLXN_STATUS_ERR_DTYPE,
                          "y is f16, expected f32");
    harness_expect_status("qmatmul_id/error/ids-k", mlxn_qmatmul_id(s, &x, &w, &id17, &y), MLXN_STATUS_ERR_SHAPE,
                          "k = 17");
    harness_expect_status("qmatmul_id/error/null-ids", mlxn_qmatmul_id(s, &x, &w, NULL, &y),
                          MLXN_STATUS_ERR_INVALID_ARG, "ids is NULL");
    harness_expect_status("qmatmul_id_swiglu/error/up-dtype", mlxn_qmatmul_id_swiglu(s, &x, &w, &wu8, &ids, &y),
                          MLXN_STATUS_ERR_DTYPE, "w_up is q8_0, w_gate is q4_0");
    harness_expect_status("qmatmul_id_swiglu/error/null-up", mlxn_qmatmul_id_swiglu(s, &x, &w, NULL, &ids, &y),
                          MLXN_STATUS_ERR_INVALID_ARG, "w_up is NULL");
    mlxn_buffer_free(b);
}

void test_moe_route_map(test_devices *devs, rng *g)
{
    static const map_case cases[] = {
        {1, 1, 1, 0, IDS_TOPK},         {1, 8, 128, 0, IDS_TOPK},         {3, 6, 4, 2, IDS_TOPK},
        {7, 16, 1, 0, IDS_TOPK},        {9, 8, 32, 0, IDS_OUT_OF_RANGE},  {100, 8, 32, 3, IDS_HALF_EMPTY},
        {100, 2, 4, 0, IDS_ONE_EXPERT}, {512, 8, 128, 0, IDS_TOPK},       {512, 8, 128, 0, IDS_OUT_OF_RANGE},
        {2000, 8, 512, 1, IDS_TOPK},    {4096, 8, 256, 0, IDS_TOPK},      {4096, 8, 256, 0, IDS_HALF_EMPTY},
        {1500, 16, 7, 0, IDS_TOPK},     {64, 1, 1000, 0, IDS_TOPK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        map_case_run(&cases[i], devs, g);
}

void test_qmatmul_id(test_devices *devs, rng *g)
{
    static const mlxn_dtype types[] = {
        MLXN_DTYPE_Q4_0, MLXN_DTYPE_Q4_1, MLXN_DTYPE_Q5_0, MLXN_DTYPE_Q5_1, MLXN_DTYPE_Q8_0,
        MLXN_DTYPE_Q2_K, MLXN_DTYPE_Q3_K, MLXN_DTYPE_Q4_K, MLXN_DTYPE_Q5_K, MLXN_DTYPE_Q6_K,
        MLXN_DTYPE_IQ4_NL, MLXN_DTYPE_IQ4_XS, MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16,
    };
    /* T, k, E, N, K (rounded up to whole blocks), pad; 8 x 8 = 64 pairs is CUDA's last mat-vec
     * size, 9 x 8 = 72 its first tensor-core one */
    static const int64_t shapes[][6] = {
        {1, 8, 128, 67, 512, 0}, {2, 1, 4, 33, 256, 0},   {3, 6, 32, 31, 768, 0},  {7, 2, 4, 17, 256, 3},
        {8, 8, 32, 65, 512, 0},  {9, 8, 128, 19, 256, 0}, {16, 16, 32, 33, 256, 0}, {100, 6, 4, 17, 512, 5},
        {512, 8, 128, 19, 256, 0}, {5, 16, 1, 35, 256, 0},
    };
    static const mlxn_dtype xt[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    int variant = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++, variant++) {
            const int64_t be = mlxn_dtype_block_elems(types[ti]);
            const bool per_slot = (si + ti) % 2 == 1;
            qid_case c = {types[ti], xt[variant % 3], shapes[si][0], shapes[si][1], shapes[si][2], shapes[si][3],
                          (shapes[si][4] + be - 1) / be * be, per_slot, shapes[si][5],
                          per_slot && variant % 4 == 3, (ids_mode)(variant % IDS_MODES), (variant / 2) % 2 == 1, 0};
            qid_case_run(&c, devs, g);
        }
    /* larger rows and many tokens: a long gate/up row (x in K tiles on CUDA's mat-vec path), a
     * qwen3moe-like down projection (K = 768), one tile of 64 pairs exactly, one expert with
     * every pair (many tiles of one expert) */
    static const qid_case big[] = {
        {MLXN_DTYPE_Q4_K, MLXN_DTYPE_F32, 1, 8, 128, 24, 4096, false, 0, false, IDS_TOPK, true, 0},
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_BF16, 40, 8, 16, 40, 768, true, 0, false, IDS_TOPK, false, 0},
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F32, 64, 1, 1, 129, 128, false, 0, false, IDS_TOPK, false, 0},
        {MLXN_DTYPE_Q4_0, MLXN_DTYPE_F16, 300, 2, 3, 70, 256, false, 1, false, IDS_ONE_EXPERT, true, 0},
        /* float W with rows that are not whole 32-element units, decode and tiles */
        {MLXN_DTYPE_F16, MLXN_DTYPE_F32, 3, 2, 4, 9, 100, false, 0, false, IDS_TOPK, true, 0},
        {MLXN_DTYPE_BF16, MLXN_DTYPE_F32, 40, 4, 8, 21, 72, true, 1, true, IDS_OUT_OF_RANGE, false, 0},
        {MLXN_DTYPE_F32, MLXN_DTYPE_BF16, 33, 3, 5, 13, 37, false, 0, false, IDS_TOPK, true, 0},
        /* x far from 1 (the Q4_0, Q8_0 and Q4_K decode on CUDA scales x by powers of two from its largest |x|) */
        {MLXN_DTYPE_Q4_0, MLXN_DTYPE_F32, 1, 8, 16, 40, 512, false, 0, false, IDS_TOPK, false, 1e-30},
        {MLXN_DTYPE_Q4_0, MLXN_DTYPE_F32, 2, 4, 16, 33, 1024, true, 0, false, IDS_TOPK, false, 1e30},
        {MLXN_DTYPE_Q4_K, MLXN_DTYPE_F32, 1, 8, 16, 40, 512, true, 0, false, IDS_TOPK, false, 1e-30},
        {MLXN_DTYPE_Q4_K, MLXN_DTYPE_BF16, 1, 6, 16, 24, 768, false, 0, false, IDS_TOPK, false, 1e30},
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F32, 1, 8, 16, 40, 512, true, 0, false, IDS_TOPK, false, 1e-30},
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F32, 2, 3, 16, 33, 1024, false, 0, false, IDS_TOPK, false, 1e30},
        /* the formats CUDA decodes from rows staged in shared memory (Q3_K, Q5_K, Q6_K, IQ4_XS),
         * in K tiles as long as its budget allows (at 16 rows a block: 2560 Q6_K elements, 3072
         * with SwiGLU, 4096 Q3_K, 3840 Q5_K with SwiGLU; at 32 rows, N 1000 x 8 pairs, 1280
         * Q6_K): one tile, several with a shorter last one, rows not a multiple of the block's */
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_F32, 1, 8, 16, 70, 2304, false, 0, false, IDS_TOPK, false, 0},
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_F16, 1, 8, 16, 70, 2304, true, 0, false, IDS_TOPK, true, 0},
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_F32, 1, 8, 16, 70, 4864, false, 0, false, IDS_TOPK, true, 0},
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_F32, 1, 8, 16, 1000, 2304, true, 0, false, IDS_TOPK, false, 0},
        {MLXN_DTYPE_Q3_K, MLXN_DTYPE_BF16, 2, 4, 8, 45, 1280, false, 2, false, IDS_OUT_OF_RANGE, true, 0},
        {MLXN_DTYPE_Q3_K, MLXN_DTYPE_F32, 1, 8, 8, 45, 6144, false, 0, false, IDS_TOPK, false, 0},
        {MLXN_DTYPE_Q5_K, MLXN_DTYPE_F32, 1, 8, 16, 33, 4864, false, 0, false, IDS_TOPK, true, 0},
        {MLXN_DTYPE_IQ4_XS, MLXN_DTYPE_F16, 1, 8, 16, 40, 2304, true, 0, false, IDS_TOPK, false, 0},
        /* Qwen3.6's expert shapes (down: 32 rows a block, 16 lanes a row; gate+up: one tile of
         * 2048, 32 lanes a row), 32 rows a block with SwiGLU, two tiles of the 32-element
         * formats (Q4_1 with SwiGLU: 4096 + 768; IQ4_NL: 3584 + 1280), x far from 1 */
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_F32, 1, 8, 8, 2048, 512, true, 0, false, IDS_TOPK, false, 0},
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_F32, 1, 8, 8, 512, 2048, false, 0, false, IDS_TOPK, true, 0},
        {MLXN_DTYPE_Q5_K, MLXN_DTYPE_F32, 1, 8, 8, 1024, 512, false, 0, false, IDS_TOPK, true, 0},
        {MLXN_DTYPE_Q4_1, MLXN_DTYPE_F32, 1, 8, 16, 40, 4864, false, 0, false, IDS_TOPK, true, 0},
        {MLXN_DTYPE_IQ4_NL, MLXN_DTYPE_BF16, 1, 8, 16, 33, 4864, true, 0, false, IDS_TOPK, false, 0},
        {MLXN_DTYPE_Q3_K, MLXN_DTYPE_F32, 1, 8, 16, 40, 1024, false, 0, false, IDS_TOPK, true, 1e-30},
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_F32, 2, 4, 16, 33, 512, true, 0, false, IDS_TOPK, false, 1e30},
        {MLXN_DTYPE_Q2_K, MLXN_DTYPE_F32, 1, 6, 8, 33, 4096, false, 0, false, IDS_TOPK, false, 0},
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
        qid_case_run(&big[i], devs, g);
    /* a decode step (mat-vecs on CUDA) and a prefill (tiles over the routing map) in graphs */
    static const qid_case captured[] = {
        {MLXN_DTYPE_Q4_K, MLXN_DTYPE_F32, 1, 8, 32, 40, 256, false, 0, false, IDS_TOPK, true, 0},
        {MLXN_DTYPE_Q8_0, MLXN_DTYPE_F32, 20, 8, 32, 70, 128, true, 0, false, IDS_TOPK, false, 0},
        {MLXN_DTYPE_Q4_0, MLXN_DTYPE_BF16, 37, 4, 16, 33, 256, false, 0, false, IDS_HALF_EMPTY, true, 0},
    };
    for (size_t i = 0; i < sizeof captured / sizeof captured[0]; i++)
        capture_case(&captured[i], devs, g);
    error_cases(devs);
}
