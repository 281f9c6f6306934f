/* Harness cases for the embedding lookup: every GGML format and f32/f16/bf16 tables x y in
 * f32/f16/bf16; one token, odd token counts, 2-D and strided ids, padded table rows, padded
 * and misaligned y rows; repeated ids and ids outside [0, V) (NaN rows); against the oracle on
 * every device. Table rows of every GGML format are, about half each, real quantizations of
 * random rows of trained-layer size (mlxn_ggml_quantize) and random valid blocks (every bit
 * pattern a file may hold). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "harness.h"
#include "weights.h"
#include "mlxn_quant.h"
#include "test_ops.h"

typedef struct gr_case {
    mlxn_dtype table_dtype, y_dtype;
    int64_t V, D;
    int ids_ndim;
    int64_t ids_shape[2];
    int64_t ids_pad, y_pad, table_pad; /* elements (ids, y) or bytes (table, a multiple of 4) after rows */
    float scale;
} gr_case;

typedef struct gr_data {
    uint8_t *table;
    size_t table_bytes;
    int64_t table_stride;
    operand ids, y;
} gr_data;


/* One row of the table: embeddings of trained size (|v| ~ 0.02 .. 0.1). */
static void make_row(const gr_case *c, rng *g, float *rowf, uint8_t *row)
{
    const double sc = 0.02 * (1 + 4 * rng_uniform(g)), off = 0.01 * rng_normal(g);
    for (int64_t k = 0; k < c->D; k++)
        rowf[k] = (float)(off + sc * rng_normal(g));
    if (weights_plain_dtype(c->table_dtype)) {
        for (int64_t k = 0; k < c->D; k++) {
            if (c->table_dtype == MLXN_DTYPE_F32)
                memcpy(row + 4 * k, &rowf[k], 4);
            else {
                uint16_t h = c->table_dtype == MLXN_DTYPE_F16 ? mlxn_f32_to_f16(rowf[k]) : mlxn_f32_to_bf16(rowf[k]);
                memcpy(row + 2 * k, &h, 2);
            }
        }
        return;
    }
    /* half the rows real quantizations, the others random valid blocks (every bit pattern) */
    if (rng_uniform(g) < 0.5 || mlxn_ggml_quantize(c->table_dtype, rowf, c->D, row) != MLXN_STATUS_OK)
        weights_random_blocks(c->table_dtype, c->D, g, row);
}

static bool make_data(const gr_case *c, rng *g, gr_data *d)
{
    memset(d, 0, sizeof *d);
    const int64_t row_bytes = c->D / mlxn_dtype_block_elems(c->table_dtype) * mlxn_dtype_block_bytes(c->table_dtype);
    d->table_stride = row_bytes + c->table_pad;
    d->table_bytes = (size_t)(c->V * d->table_stride);
    d->table = malloc(d->table_bytes);
    float *rowf = malloc((size_t)c->D * sizeof(float));
    bool ok = d->table && rowf;
    if (ok)
        memset(d->table, 0x7f, d->table_bytes); /* the padding between rows: NaN-like bytes nobody may read */
    for (int64_t v = 0; ok && v < c->V; v++)
        make_row(c, g, rowf, d->table + v * d->table_stride);
    free(rowf);
    int64_t yshape[3] = {c->ids_shape[0], c->ids_shape[1], 0};
    yshape[c->ids_ndim] = c->D;
    ok = ok && operand_init(&d->ids, MLXN_DTYPE_I32, c->ids_ndim, c->ids_shape, c->ids_pad, false) &&
         operand_init(&d->y, c->y_dtype, c->ids_ndim + 1, yshape, c->y_pad, false);
    if (!ok)
        return false;
    /* mostly valid ids (some repeated), and every kind of id outside [0, V) */
    static const int64_t bad[] = {-1, INT32_MIN, INT32_MAX};
    for (int64_t i = 0; i < d->ids.numel; i++) {
        const double r = rng_uniform(g);
        int64_t id = rng_int(g, 0, c->V - 1);
        if (d->ids.numel > 2 && r < 0.1)
            id = r < 0.05 ? c->V : bad[rng_int(g, 0, 2)];
        else if (i > 0 && r < 0.2)
            id = (int64_t)operand_get(&d->ids, i - 1);
        operand_set(&d->ids, i, (double)id);
    }
    operand_poison(&d->y);
    return true;
}

static void free_data(gr_data *d)
{
    free(d->table);
    operand_free(&d->ids);
    operand_free(&d->y);
}

static bool run_on(const gr_case *c, const gr_data *d, test_device *dev, operand *out, char *why, size_t cap)
{
    mlxn_buffer *bt = NULL;
    placed ids = {0}, y = {0};
    bool ok = false;
    if (mlxn_buffer_create(dev->device, d->table_bytes, &bt) ||
        mlxn_buffer_upload(bt, 0, d->table, d->table_bytes, NULL) || !operand_place(&d->ids, dev, &ids) ||
        !operand_place(&d->y, dev, &y)) {
        snprintf(why, cap, "placing operands: %s", mlxn_last_error());
        goto done;
    }
    int64_t tshape[2] = {c->V, c->D};
    mlxn_tensor table = mlxn_tensor_make(bt, 0, c->table_dtype, 2, tshape);
    table.stride[0] = d->table_stride;
    mlxn_status st = mlxn_get_rows(dev->stream, &table, &ids.view, c->scale, &y.view);
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
    mlxn_buffer_free(bt);
    placed_free(&ids);
    placed_free(&y);
    return ok;
}

static void run_case(const gr_case *c, test_devices *devs, rng *g)
{
    char name[200], full[300], why[512], ids[48];
    if (c->ids_ndim == 1)
        snprintf(ids, sizeof ids, "%lld", (long long)c->ids_shape[0]);
    else
        snprintf(ids, sizeof ids, "%lldx%lld", (long long)c->ids_shape[0], (long long)c->ids_shape[1]);
    snprintf(name, sizeof name, "get_rows/%s/y=%s/V=%lld/D=%lld/ids=%s%s%s%s", mlxn_dtype_name(c->table_dtype),
             mlxn_dtype_name(c->y_dtype), (long long)c->V, (long long)c->D, ids, c->ids_pad ? "/strided-ids" : "",
             c->y_pad ? "/padded-y" : "", c->table_pad ? "/padded-table" : "");
    gr_data d;
    if (!make_data(c, g, &d)) {
        harness_fail(name, "making data: %s", mlxn_last_error());
        free_data(&d);
        return;
    }
    operand want = {0};
    if (!run_on(c, &d, &devs->ref, &want, why, sizeof why)) {
        harness_fail(name, "reference: %s", why);
        free_data(&d);
        return;
    }
    /* Decoding is exact in f32 and the scaling one f32 product (the oracle's f64 product of the
     * same two floats rounds to the same value), so the CPU matches exactly; CUDA may fuse a
     * decoder's d * q - m into one FMA, one f32 rounding less: within the dtype's bound. */
    const tolerance tol = tolerance_for(c->y_dtype);
    for (int i = 0; i < devs->count; i++) {
        snprintf(full, sizeof full, "%s @%s", name, devs->list[i].name);
        operand got = {0};
        if (!run_on(c, &d, &devs->list[i], &got, why, sizeof why))
            harness_fail(full, "%s", why);
        else if (!compare_operands(&got, &want, tol, why, sizeof why))
            harness_fail(full, "y: %s", why);
        else
            harness_pass(full);
        operand_free(&got);
    }
    operand_free(&want);
    free_data(&d);
}

static void error_cases(test_devices *devs)
{
    test_device *dev = &devs->ref;
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(dev->device, 1 << 20, &b) != MLXN_STATUS_OK)
        return;
    int64_t ts[2] = {16, 256}, ts3[3] = {2, 8, 256}, is[1] = {4};
    int64_t ys[2] = {4, 256}, ys2[2] = {4, 128}, ys3[2] = {5, 256};
    mlxn_tensor table = mlxn_tensor_make(b, 0, MLXN_DTYPE_Q4_K, 2, ts);
    mlxn_tensor table3 = mlxn_tensor_make(b, 0, MLXN_DTYPE_Q4_K, 3, ts3);
    mlxn_tensor tmlx = mlxn_tensor_make(b, 0, MLXN_DTYPE_MLX_Q4, 2, ts);
    mlxn_tensor ids = mlxn_tensor_make(b, 65536, MLXN_DTYPE_I32, 1, is);
    mlxn_tensor idsf = mlxn_tensor_make(b, 65536, MLXN_DTYPE_F32, 1, is);
    mlxn_tensor y = mlxn_tensor_make(b, 131072, MLXN_DTYPE_F32, 2, ys);
    mlxn_tensor yi = mlxn_tensor_make(b, 131072, MLXN_DTYPE_I32, 2, ys);
    mlxn_tensor yd = mlxn_tensor_make(b, 131072, MLXN_DTYPE_F32, 2, ys2);
    mlxn_tensor yt = mlxn_tensor_make(b, 131072, MLXN_DTYPE_F32, 2, ys3);
    harness_expect_status("get_rows/error/table-dims", mlxn_get_rows(dev->stream, &table3, &ids, 1, &y),
                          MLXN_STATUS_ERR_SHAPE, "table has 3 dims, expected 2");
    harness_expect_status("get_rows/error/table-dtype", mlxn_get_rows(dev->stream, &tmlx, &ids, 1, &y),
                          MLXN_STATUS_ERR_DTYPE, "table is mlx_q4");
    harness_expect_status("get_rows/error/ids-dtype", mlxn_get_rows(dev->stream, &table, &idsf, 1, &y),
                          MLXN_STATUS_ERR_DTYPE, "ids are f32, expected i32");
    harness_expect_status("get_rows/error/y-dtype", mlxn_get_rows(dev->stream, &table, &ids, 1, &yi),
                          MLXN_STATUS_ERR_DTYPE, "y is i32");
    harness_expect_status("get_rows/error/y-width", mlxn_get_rows(dev->stream, &table, &ids, 1, &yd),
                          MLXN_STATUS_ERR_SHAPE, "y has shape 4x128, expected ids' shape 4 and then 256");
    harness_expect_status("get_rows/error/y-tokens", mlxn_get_rows(dev->stream, &table, &ids, 1, &yt),
                          MLXN_STATUS_ERR_SHAPE, "y has shape 5x256");
    harness_expect_status("get_rows/error/scale", mlxn_get_rows(dev->stream, &table, &ids, INFINITY, &y),
                          MLXN_STATUS_ERR_INVALID_ARG, "scale is inf");
    harness_expect_status("get_rows/error/null-y", mlxn_get_rows(dev->stream, &table, &ids, 1, NULL),
                          MLXN_STATUS_ERR_INVALID_ARG, "y is NULL");
    harness_expect_status("get_rows/error/null-ids", mlxn_get_rows(dev->stream, &table, NULL, 1, &y),
                          MLXN_STATUS_ERR_INVALID_ARG, "ids is NULL");
    mlxn_buffer_free(b);
}

void test_get_rows(test_devices *devs, rng *g)
{
    static const mlxn_dtype types[] = {
        MLXN_DTYPE_Q4_0, MLXN_DTYPE_Q4_1, MLXN_DTYPE_Q5_0, MLXN_DTYPE_Q5_1, MLXN_DTYPE_Q8_0,
        MLXN_DTYPE_Q2_K, MLXN_DTYPE_Q3_K, MLXN_DTYPE_Q4_K, MLXN_DTYPE_Q5_K, MLXN_DTYPE_Q6_K,
        MLXN_DTYPE_IQ4_NL, MLXN_DTYPE_IQ4_XS, MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16,
    };
    static const mlxn_dtype yt[3] = {MLXN_DTYPE_F32, MLXN_DTYPE_F16, MLXN_DTYPE_BF16};
    /* V, D (rounded up to whole blocks), ids dims and shape, ids pad, y pad, table pad */
    static const struct {
        int64_t V, D;
        int ids_ndim;
        int64_t ids_shape[2], ids_pad, y_pad, table_pad;
    } shapes[] = {
        {1, 32, 1, {1, 0}, 0, 0, 0},     {37, 256, 1, {5, 0}, 0, 0, 0},   {100, 640, 1, {300, 0}, 0, 0, 0},
        {19, 512, 2, {2, 3}, 3, 1, 0},   {23, 768, 2, {3, 7}, 0, 8, 16},  {7, 33, 1, {9, 0}, 0, 0, 8},
    };
    int variant = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int64_t be = mlxn_dtype_block_elems(types[ti]);
            const float scales[3] = {1.0f, 25.298221f /* sqrt(640), Gemma's embedding scale */, -0.5f};
            gr_case c = {types[ti], yt[variant % 3], shapes[si].V, (shapes[si].D + be - 1) / be * be,
                         shapes[si].ids_ndim, {shapes[si].ids_shape[0], shapes[si].ids_shape[1]},
                         shapes[si].ids_pad, shapes[si].y_pad,
                         shapes[si].table_pad, scales[variant % 3]};
            variant++;
            run_case(&c, devs, g);
        }
    /* a long row (a 4096-wide model) and many tokens */
    static const gr_case big[] = {
        {MLXN_DTYPE_Q6_K, MLXN_DTYPE_F32, 300, 4096, 1, {2000, 0}, 0, 0, 0, 1.0f},
        {MLXN_DTYPE_BF16, MLXN_DTYPE_BF16, 300, 4096, 1, {700, 0}, 0, 0, 0, 64.0f},
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
        run_case(&big[i], devs, g);
    error_cases(devs);
}
