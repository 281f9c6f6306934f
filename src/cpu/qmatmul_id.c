/* The expert-routed quantized matmul on the CPU. The pairs are grouped by expert (the routing
 * map, moe_route_map.c); the work is cut into items of (expert, block of up to PAIR_BLOCK of its
 * pairs, chunk of rows of W) that the threads claim from a shared counter, so a thread slowed by
 * something else on its core leaves its share to the others. An item gathers its pairs' rows of
 * x as f32 (with the 32-element unit sums the level kernels take; once per block of pairs, as
 * consecutive items share the block), runs the dense qmatmul's row kernel for W's format
 * (qmatmul_impl.h: each weight decoded once for every pair of the block) over its chunk of W into
 * a small buffer, and writes the results (SwiGLU applied) to the pairs' rows of y. */
#include <stdatomic.h>
#include <stdlib.h>

#include "cpu.h"
#include "ref/ref.h"

/* pairs per item: a whole block is one panel of x for the row kernels' outer products
 * (MLXN_CPU_QMM_PANEL); fewer rows go to their register blocks of a few rows of x */
#define PAIR_BLOCK MLXN_CPU_QMM_PANEL

typedef struct qid_ctx {
    const mlxn_qmatmul_id_args *a;
    mlxn_cpu_qmatmul_rows_fn rows_fn; /* the level's kernel for W's format, or NULL: generic */
    /* the level's activation over f32 (SwiGLU of the gate and up products) */
    void (*act_f32)(int act, const float *x, const float *up, float *y, int64_t n, bool accumulate);
    const int32_t *offsets, *pairs;   /* the routing map: [E + 1], [T * k] */
    const int64_t *tile_off;          /* [E + 1]: expert e's pair blocks are tile_off[e] .. [e + 1] - 1 */
    int64_t n_tiles, chunk, n_chunks;
    int64_t xss;                      /* span sums per row of x (mlxn_cpu_qmm_xss) */
    int x_form;                       /* x's integer form for rows_fn at one row (cpu.h) */
    const mlxn_cpu_kernel_set *ks;    /* the level (which makes that form) */
    atomic_int_fast64_t next;         /* first item not yet taken */
    atomic_bool no_memory;
} qid_ctx;

/* The expert of pair block `tile`: the last e with tile_off[e] <= tile. */
static int tile_expert(const qid_ctx *c, int64_t tile)
{
    int lo = 0, hi = (int)c->a->E; /* tile_off[lo] <= tile < tile_off[hi] */
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (c->tile_off[mid] <= tile)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Rows m0 .. m0 + mb - 1 of the map's pair list: their rows of x as f32 [mb, K] and span sums
 * [mb, xss]; where panels apply (cpu.h) as a panel xt too, else xt NULL. */
static void gather_x(const qid_ctx *c, int64_t m0, int64_t mb, float *x, float *xsum, float *panel, const float **xt)
{
    const mlxn_qmatmul_id_args *a = c->a;
    for (int64_t m = 0; m < mb; m++) {
        const int64_t p = c->pairs[m0 + m];
        const char *row = mlxn_rows_ptr(&a->x, a->x_per_slot ? p : p / a->k);
        float *xm = x + m * a->K;
        if (a->x_dtype == MLXN_DTYPE_F32)
            for (int64_t i = 0; i < a->K; i++)
                xm[i] = ((const float *)row)[i];
        else
            for (int64_t i = 0; i < a->K; i++)
                xm[i] = (float)mlxn_ref_load(a->x_dtype, row, i);
        mlxn_cpu_qmm_xsums(xm, a->K, xsum + m * c->xss, mb == 1 ? c->x_form : MLXN_CPU_QMM_X_NONE, c->ks);
    }
    *xt = NULL;
    if (c->rows_fn && mlxn_cpu_qmm_panels_apply(mb, a->K)) {
        mlxn_cpu_qmm_panels(x, a->K, 0, mlxn_cpu_qmm_panel_units(mb, a->K), panel);
        *xt = panel;
    }
}

/* The portable level's path: each row of W decoded by the reference decoder into wrow, dotted
 * with every row of x. */
static void rows_generic(const mlxn_qmatmul_args *q, const float *x, float *wrow)
{
    const bool blocks = mlxn_dtype_block_elems(q->w_dtype) > 1;
    for (int64_t n = 0; n < q->N; n++) {
        const uint8_t *row = q->w + n * q->w_stride;
        if (blocks)
            for (int64_t k0 = 0; k0 < q->K; k0 += 32)
                mlxn_ref_weight_unit(q->w_dtype, row, k0, wrow + k0);
        else
            for (int64_t k = 0; k < q->K; k++)
                wrow[k] = (float)mlxn_ref_load(q->w_dtype, row, k);
        for (int64_t m = 0; m < q->M; m++) {
            const float *xm = x + m * q->K;
            float acc[8] = {0}, tail = 0;
            int64_t k = 0;
            for (; k + 8 <= q->K; k += 8)
                for (int j = 0; j < 8; j++)
                    acc[j] += xm[k + j] * wrow[k + j];
            for (; k < q->K; k++)
                tail += xm[k] * wrow[k];
            ((float *)mlxn_rows_ptr(&q->y, m))[n] =
                ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
        }
    }
}

/* out [mb, nn] = x [mb, K] . rows n0 .. n0 + nn - 1 of one expert's W (at w, rows w_stride apart)^T */
static void expert_rows(const qid_ctx *c, const uint8_t *w, int64_t w_stride, int64_t mb, int64_t nn, const float *x,
                        const float *xsum, const float *xt, float *out, float *wrow)
{
    const mlxn_qmatmul_id_args *a = c->a;
    mlxn_qmatmul_args q = {.M = mb, .N = nn, .K = a->K, .w_dtype = a->w_dtype, .x_dtype = MLXN_DTYPE_F32,
                           .w = w, .w_stride = w_stride};
    q.y.base = (char *)out;
    q.y.d1 = 1;
    q.y.d2 = mb;
    q.y.s2 = nn * (int64_t)sizeof(float);
    if (c->rows_fn)
        c->rows_fn(&q, x, xsum, c->xss, xt, 0, nn);
    else
        rows_generic(&q, x, wrow);
}

static void qid_task(void *ctx, int64_t p0, int64_t p1)
{
    (void)p0;
    (void)p1;
    qid_ctx *c = ctx;
    const mlxn_qmatmul_id_args *a = c->a;
    const int64_t K = a->K, nc = c->chunk, halves = a->w_up ? 2 : 1;
    /* 64-byte aligned, as qmatmul's x: the row kernel's vector loads of x stay within a line */
    float *x = mlxn_aligned_alloc(sizeof(float) *
                                  (size_t)(PAIR_BLOCK * (K + c->xss) + mlxn_cpu_qmm_panel_floats(PAIR_BLOCK, K) +
                                           halves * PAIR_BLOCK * nc + K));
    if (!x) {
        atomic_store(&c->no_memory, true);
        return;
    }
    float *xsum = x + PAIR_BLOCK * K, *panel = xsum + PAIR_BLOCK * c->xss,
          *yg = panel + mlxn_cpu_qmm_panel_floats(PAIR_BLOCK, K), *yu = yg + PAIR_BLOCK * nc,
          *wrow = yg + halves * PAIR_BLOCK * nc;
    const float *xt = NULL;
    int64_t gathered = -1; /* the pair block now in x */
    for (;;) {
        const int64_t i = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (i >= c->n_tiles * c->n_chunks)
            break;
        const int64_t tile = i / c->n_chunks, n0 = (i % c->n_chunks) * nc;
        const int e = tile_expert(c, tile);
        const int64_t m0 = c->offsets[e] + (tile - c->tile_off[e]) * PAIR_BLOCK;
        const int64_t mb = c->offsets[e + 1] - m0 < PAIR_BLOCK ? c->offsets[e + 1] - m0 : PAIR_BLOCK;
        const int64_t nn = a->N - n0 < nc ? a->N - n0 : nc;
        if (tile != gathered) {
            gather_x(c, m0, mb, x, xsum, panel, &xt);
            gathered = tile;
        }
        expert_rows(c, a->w + e * a->w_expert_stride + n0 * a->w_stride, a->w_stride, mb, nn, x, xsum, xt, yg, wrow);
        if (a->w_up)
            expert_rows(c, a->w_up + e * a->up_expert_stride + n0 * a->up_stride, a->up_stride, mb, nn, x, xsum, xt,
                        yu, wrow);
        for (int64_t m = 0; m < mb; m++) {
            float *y = (float *)mlxn_rows_ptr(&a->y, c->pairs[m0 + m]) + n0;
            const float *g = yg + m * nn, *u = yu + m * nn;
            if (a->w_up)
                c->act_f32(MLXN_ACT_SILU, g, u, y, nn, false);
            else
                for (int64_t j = 0; j < nn; j++)
                    y[j] = g[j];
        }
    }
    mlxn_aligned_free(x);
}

mlxn_status mlxn_cpu_qmatmul_id(mlxn_stream *s, const mlxn_qmatmul_id_args *a)
{
    static const char fn[] = "mlxn_qmatmul_id";
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_qmatmul_id(a);
        return MLXN_STATUS_OK;
    }
    const int E = (int)a->E;
    const int64_t P = a->T * a->k;
    int32_t *map = malloc(sizeof(int32_t) * (size_t)(E + 1 + P));
    int64_t *tile_off = malloc(sizeof(int64_t) * (size_t)(E + 1));
    if (!map || !tile_off) {
        free(map);
        free(tile_off);
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory for the routing map");
    }
    int32_t *offsets = map, *pairs = map + E + 1;
    mlxn_cpu_route_map_build(&a->ids, a->T, a->k, E, offsets, pairs);
    tile_off[0] = 0;
    for (int e = 0; e < E; e++)
        tile_off[e + 1] = tile_off[e] + (offsets[e + 1] - offsets[e] + PAIR_BLOCK - 1) / PAIR_BLOCK;

    qid_ctx c = {.a = a, .offsets = offsets, .pairs = pairs, .tile_off = tile_off, .n_tiles = tile_off[E]};
    c.rows_fn = d->kernels->qmatmul_rows ? d->kernels->qmatmul_rows(a->w_dtype) : NULL;
    c.act_f32 = d->kernels->act_f32;
    c.xss = mlxn_cpu_qmm_xss(a->K);
    c.ks = d->kernels;
    c.x_form = c.rows_fn && d->kernels->qmatmul_x_form ? d->kernels->qmatmul_x_form(a->w_dtype) : MLXN_CPU_QMM_X_NONE;
    /* chunks of about 64 KiB of W, at least four items per thread when there is enough work */
    const int threads = mlxn_threadpool_size(d->pool);
    int64_t chunk = (64 << 10) / a->w_stride;
    const int64_t even = (c.n_tiles * a->N + 4 * threads - 1) / (4 * threads);
    chunk = chunk > even ? even : chunk;
    bool panels = false; /* an expert with a whole block: its items take the row kernels' panels */
    for (int e = 0; e < E && !panels; e++)
        panels = offsets[e + 1] - offsets[e] >= PAIR_BLOCK;
    if (panels) /* whole register blocks of rows of W */
        chunk = (chunk + MLXN_CPU_QMM_PANEL_W - 1) / MLXN_CPU_QMM_PANEL_W * MLXN_CPU_QMM_PANEL_W;
    c.chunk = chunk < 1 ? 1 : chunk > a->N ? a->N : chunk;
    c.n_chunks = (a->N + c.chunk - 1) / c.chunk;
    atomic_init(&c.next, 0);
    atomic_init(&c.no_memory, false);
    /* a small product (under ~64K multiply-adds) stays on the caller */
    const int64_t items = c.n_tiles * c.n_chunks;
    int64_t parts = (double)offsets[E] * (double)a->N * (double)a->K < 65536.0 ? 1 : threads;
    parts = parts > items ? items : parts;
    if (parts > 0)
        mlxn_threadpool_run(d->pool, parts, 1, qid_task, &c);
    /* the pairs left out of the map (ids outside [0, E)) get rows of zeros */
    for (int64_t t = 0; t < a->T; t++) {
        const int32_t *id = (const int32_t *)mlxn_rows_ptr(&a->ids, t);
        for (int64_t j = 0; j < a->k; j++)
            if (id[j] < 0 || id[j] >= E) {
                float *y = (float *)mlxn_rows_ptr(&a->y, t * a->k + j);
                for (int64_t n = 0; n < a->N; n++)
                    y[n] = 0.0f;
            }
    }
    free(map);
    free(tile_off);
    /* a thread without memory leaves its items to the others; it fails only if none could run */
    if (atomic_load(&c.no_memory) && atomic_load(&c.next) < items)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory for a thread's rows of x");
    return MLXN_STATUS_OK;
}
