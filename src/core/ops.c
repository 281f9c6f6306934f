/* Op entry points: argument, shape and dtype checks, then dispatch through the stream. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../formats/mlx_affine.h"
#include "internal.h"

static mlxn_status check_stream(mlxn_stream *s, const char *fn)
{
    if (!s)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "stream is NULL");
    return MLXN_STATUS_OK;
}

/* Resolves an operand of the stream's device into rows. */
static mlxn_status operand_rows(mlxn_stream *s, const mlxn_tensor *t, const char *fn,
                                const char *what, mlxn_rows *rows, int64_t *n_rows,
                                int64_t *n)
{
    MLXN_TRY(mlxn_tensor_rows(t, fn, what, rows, n_rows, n));
    if (t->buffer->device != s->device)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                          "%s lives on another device than the stream", what);
    return MLXN_STATUS_OK;
}

static bool same_shape(const mlxn_tensor *a, const mlxn_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

static void shape_str(const mlxn_tensor *t, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? "x%lld" : "%lld", (long long)t->shape[i]);
}

/* A 1-D operand of n elements of dtype dt (`per` names what each is for in the shape error). */
static mlxn_status vector_operand(mlxn_stream *s, const mlxn_tensor *t, mlxn_dtype dt, int64_t n, const char *fn,
                                  const char *what, const char *per, mlxn_rows *rows)
{
    int64_t nr, len;
    if (!t)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "%s is NULL", what);
    MLXN_TRY(operand_rows(s, t, fn, what, rows, &nr, &len));
    if (t->dtype != dt)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "%s is %s, expected %s", what, mlxn_dtype_name(t->dtype),
                          mlxn_dtype_name(dt));
    if (t->ndim != 1 || len != n) {
        char sh[96];
        shape_str(t, sh, sizeof sh);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "%s has shape %s, expected [%lld]%s", what, sh, (long long)n,
                          per);
    }
    return MLXN_STATUS_OK;
}

static mlxn_status i32_vector(mlxn_stream *s, const mlxn_tensor *t, int64_t n, const char *fn, const char *what,
                              const char *per, int32_t **ptr)
{
    mlxn_rows rows;
    MLXN_TRY(vector_operand(s, t, MLXN_DTYPE_I32, n, fn, what, per, &rows));
    *ptr = (int32_t *)rows.base;
    return MLXN_STATUS_OK;
}

static mlxn_status f32_vector(mlxn_stream *s, const mlxn_tensor *t, int64_t n, const char *fn, const char *what,
                              const char *per, const float **ptr)
{
    mlxn_rows rows;
    MLXN_TRY(vector_operand(s, t, MLXN_DTYPE_F32, n, fn, what, per, &rows));
    *ptr = (const float *)rows.base;
    return MLXN_STATUS_OK;
}

/* An operand that must match ref (named ref_name in messages) in dtype and shape. */
static mlxn_status like_operand(mlxn_stream *s, const mlxn_tensor *ref, const char *ref_name, const mlxn_tensor *t,
                                const char *fn, const char *what, mlxn_rows *rows)
{
    int64_t nr, n;
    if (!t)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "%s is NULL", what);
    MLXN_TRY(operand_rows(s, t, fn, what, rows, &nr, &n));
    if (t->dtype != ref->dtype)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "%s is %s, %s is %s", what, mlxn_dtype_name(t->dtype), ref_name,
                          mlxn_dtype_name(ref->dtype));
    if (!same_shape(ref, t)) {
        char a[96], b[96];
        shape_str(t, a, sizeof a);
        shape_str(ref, b, sizeof b);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "%s has shape %s, %s has shape %s", what, a, ref_name, b);
    }
    return MLXN_STATUS_OK;
}

/* An operand that must match x in dtype and shape (NULL: INVALID_ARG). */
static mlxn_status like_x(mlxn_stream *s, const mlxn_tensor *x, const mlxn_tensor *t, const char *fn, const char *what,
                          mlxn_rows *rows)
{
    return like_operand(s, x, "x", t, fn, what, rows);
}

/* A norm weight: 1-D, n elements, f32 or x's dtype (NULL: no scale). */
static mlxn_status norm_weight(mlxn_stream *s, const mlxn_tensor *x, const mlxn_tensor *w, int64_t n, const char *fn,
                               const char *what, const void **ptr, int *dtype)
{
    *ptr = NULL;
    *dtype = (int)x->dtype;
    if (!w)
        return MLXN_STATUS_OK;
    mlxn_rows wr;
    int64_t wn_rows, wn;
    MLXN_TRY(operand_rows(s, w, fn, what, &wr, &wn_rows, &wn));
    if (w->ndim != 1)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "%s has %d dims, expected 1", what, w->ndim);
    if (w->dtype != MLXN_DTYPE_F32 && w->dtype != x->dtype)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "%s is %s, expected f32 or %s", what, mlxn_dtype_name(w->dtype),
                          mlxn_dtype_name(x->dtype));
    if (wn != n)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "%s has %lld elements, rows of x have %lld", what, (long long)wn,
                          (long long)n);
    *ptr = wr.base;
    *dtype = (int)w->dtype;
    return MLXN_STATUS_OK;
}

static mlxn_status rms_norm_issue(mlxn_stream *s, const char *fn, const mlxn_tensor *x,
                                  const mlxn_tensor *r, bool norm_r, const mlxn_tensor *wr, const mlxn_tensor *w,
                                  const mlxn_tensor *m, float eps, const mlxn_tensor *sum,
                                  const mlxn_tensor *y)
{
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_rms_norm};
    mlxn_rms_norm_args *a = &op.u.rms_norm;
    MLXN_TRY(operand_rows(s, x, fn, "x", &a->x, &a->n_rows, &a->n));
    if (x->dtype != MLXN_DTYPE_F32 && x->dtype != MLXN_DTYPE_F16 && x->dtype != MLXN_DTYPE_BF16)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "x is %s, expected f32, f16 or bf16",
                          mlxn_dtype_name(x->dtype));
    MLXN_TRY(like_x(s, x, y, fn, "y", &a->y));
    if (r)
        MLXN_TRY(like_x(s, x, r, fn, "r", &a->r));
    if (m)
        MLXN_TRY(like_x(s, x, m, fn, "m", &a->m));
    if (r) {
        if (!sum)
            return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "sum is NULL");
        MLXN_TRY(like_x(s, x, sum, fn, "sum", &a->sum));
    }
    MLXN_TRY(norm_weight(s, x, w, a->n, fn, "w", &a->w, &a->w_dtype));
    a->norm_r = norm_r;
    MLXN_TRY(norm_weight(s, x, wr, a->n, fn, "wr", &a->r_w, &a->r_w_dtype));
    if (a->n == 0 && a->n_rows > 0)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn,
                          "rows of x are empty: a norm over 0 elements is undefined");
    if (!(eps >= 0.0f) || isinf(eps))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "eps is %g, expected a finite value >= 0",
                          (double)eps);
    a->dtype = (int)x->dtype;
    a->eps = eps;
    if (a->n_rows == 0)
        return MLXN_STATUS_OK; /* nothing to do */
    return mlxn_stream_issue(s, &op);
}

mlxn_status mlxn_rms_norm(mlxn_stream *stream, const mlxn_tensor *x, const mlxn_tensor *w,
                          float eps, const mlxn_tensor *y)
{
    return rms_norm_issue(stream, "mlxn_rms_norm", x, NULL, false, NULL, w, NULL, eps, NULL, y);
}

mlxn_status mlxn_rms_norm_mul(mlxn_stream *stream, const mlxn_tensor *x, const mlxn_tensor *w,
                              const mlxn_tensor *m, float eps, const mlxn_tensor *y)
{
    if (!m)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_rms_norm_mul", "m is NULL");
    return rms_norm_issue(stream, "mlxn_rms_norm_mul", x, NULL, false, NULL, w, m, eps, NULL, y);
}

mlxn_status mlxn_add_rms_norm(mlxn_stream *stream, const mlxn_tensor *x, const mlxn_tensor *r,
                              const mlxn_tensor *w, float eps, const mlxn_tensor *sum,
                              const mlxn_tensor *y)
{
    if (!r)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_add_rms_norm", "r is NULL");
    return rms_norm_issue(stream, "mlxn_add_rms_norm", x, r, false, NULL, w, NULL, eps, sum, y);
}

mlxn_status mlxn_norm_add_rms_norm(mlxn_stream *stream, const mlxn_tensor *x, const mlxn_tensor *r,
                                   const mlxn_tensor *wr, const mlxn_tensor *w, float eps,
                                   const mlxn_tensor *sum, const mlxn_tensor *y)
{
    if (!r)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_norm_add_rms_norm", "r is NULL");
    return rms_norm_issue(stream, "mlxn_norm_add_rms_norm", x, r, true, wr, w, NULL, eps, sum, y);
}

static bool float_dtype(mlxn_dtype dt)
{
    return dt == MLXN_DTYPE_F32 || dt == MLXN_DTYPE_F16 || dt == MLXN_DTYPE_BF16;
}

/* y of a matmul: x's leading dims, rows of N = the rows of w. */
static mlxn_status check_matmul_y(const char *fn, const mlxn_tensor *x, const mlxn_tensor *y, int64_t xr,
                                  int64_t wr, int64_t yr, int64_t yn)
{
    if (yr != xr || yn != wr || y->ndim != x->ndim)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "y has %lld rows of %lld, expected %lld rows of %lld",
                          (long long)yr, (long long)yn, (long long)xr, (long long)wr);
    for (int i = 0; i + 1 < x->ndim; i++)
        if (x->shape[i] != y->shape[i])
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "y's leading dims differ from x's");
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_qmatmul_mlx(mlxn_stream *s, const mlxn_tensor *x, const mlxn_tensor *w,
                             const mlxn_tensor *scales, const mlxn_tensor *biases, int group_size,
                             const mlxn_tensor *y)
{
    static const char *fn = "mlxn_qmatmul_mlx";
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_qmatmul_mlx};
    mlxn_qmatmul_mlx_args *a = &op.u.qmatmul_mlx;
    int64_t xr, k, n, wr, sr, sc, br, bc, yr, yn;
    mlxn_rows wrows, srows, brows;
    MLXN_TRY(operand_rows(s, x, fn, "x", &a->x, &xr, &k));
    MLXN_TRY(operand_rows(s, w, fn, "w", &wrows, &wr, &n));
    MLXN_TRY(operand_rows(s, scales, fn, "scales", &srows, &sr, &sc));
    MLXN_TRY(operand_rows(s, biases, fn, "biases", &brows, &br, &bc));
    if (!y)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "y is NULL");
    MLXN_TRY(operand_rows(s, y, fn, "y", &a->y, &yr, &yn));
    if (!float_dtype(x->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "x is %s, expected f32, f16 or bf16",
                          mlxn_dtype_name(x->dtype));
    int bits = mlxn_mlx_bits_of(w->dtype);
    if (!bits)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "w is %s, expected an MLX affine dtype (mlx_q2..mlx_q8)",
                          mlxn_dtype_name(w->dtype));
    if (!float_dtype(scales->dtype) || biases->dtype != scales->dtype)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn,
                          "scales are %s and biases %s, expected one of f32, f16, bf16 for both",
                          mlxn_dtype_name(scales->dtype), mlxn_dtype_name(biases->dtype));
    if (y->dtype != MLXN_DTYPE_F32)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "y is %s, expected f32", mlxn_dtype_name(y->dtype));
    if (group_size != 32 && group_size != 64 && group_size != 128)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "group_size is %d, expected 32, 64 or 128",
                          group_size);
    if (w->ndim != 2 || scales->ndim != 2 || biases->ndim != 2)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "w, scales and biases must be 2-D");
    /* w's rows hold K codes: its innermost size is K */
    if (n != k)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "w has rows of %lld codes, x has rows of %lld",
                          (long long)n, (long long)k);
    if (k % group_size)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "K = %lld is not a multiple of group_size %d",
                          (long long)k, group_size);
    if (sr != wr || br != wr || sc != k / group_size || bc != k / group_size)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn,
                          "scales are [%lld, %lld] and biases [%lld, %lld], expected [%lld, %lld]",
                          (long long)sr, (long long)sc, (long long)br, (long long)bc, (long long)wr,
                          (long long)(k / group_size));
    MLXN_TRY(check_matmul_y(fn, x, y, xr, wr, yr, yn));
    a->M = xr;
    a->N = wr;
    a->K = k;
    a->bits = bits;
    a->group_size = group_size;
    a->x_dtype = (int)x->dtype;
    a->w = (const uint8_t *)wrows.base;
    a->w_stride = wr > 1 ? wrows.s2 : k * bits / 8;
    a->scales = srows.base;
    a->biases = brows.base;
    a->s_dtype = (int)scales->dtype;
    a->s_stride = wr > 1 ? srows.s2 : 0;
    a->b_stride = wr > 1 ? brows.s2 : 0;
    if (a->M == 0 || a->N == 0)
        return MLXN_STATUS_OK;
    if (a->K == 0)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "K is 0");
    return mlxn_stream_issue(s, &op);
}

static bool ggml_block_dtype(mlxn_dtype dt)
{
    switch (dt) {
    case MLXN_DTYPE_Q4_0: case MLXN_DTYPE_Q4_1: case MLXN_DTYPE_Q5_0: case MLXN_DTYPE_Q5_1:
    case MLXN_DTYPE_Q8_0: case MLXN_DTYPE_Q2_K: case MLXN_DTYPE_Q3_K: case MLXN_DTYPE_Q4_K:
    case MLXN_DTYPE_Q5_K: case MLXN_DTYPE_Q6_K: case MLXN_DTYPE_IQ4_NL: case MLXN_DTYPE_IQ4_XS:
        return true;
    default:
        return false;
    }
}

/* The matrix products' kernels load GGML blocks' f16 fields as such: their weights start and
 * step on even addresses (other ops take blocks anywhere, e.g. q8_0 caches at odd offsets). */
static mlxn_status check_weight_align(const mlxn_tensor *w, const char *fn, const char *what)
{
    return ggml_block_dtype(w->dtype) ? mlxn_tensor_check_align(w, 2, fn, what) : MLXN_STATUS_OK;
}

mlxn_qmatmul_fusion mlxn_qmatmul_fusion_default(void)
{
    return (mlxn_qmatmul_fusion){.norm_w = NULL, .norm_eps = 1e-6f, .glu = false, .glu_act = MLXN_ACT_SILU,
                                 .accumulate = false};
}

mlxn_status mlxn_qmatmul(mlxn_stream *s, const mlxn_tensor *x, const mlxn_tensor *w, const mlxn_tensor *y)
{
    return mlxn_qmatmul_fused(s, x, w, NULL, y);
}

static mlxn_status rope_args(mlxn_stream *s, const mlxn_tensor *x, const mlxn_tensor *pos, const mlxn_rope_params *p,
                             const mlxn_tensor *y, const char *fn, mlxn_rope_args *a);
static mlxn_status kv_append_args(mlxn_stream *s, const mlxn_tensor *src, const mlxn_tensor *pos,
                                  const mlxn_tensor *cache, const char *fn, mlxn_kv_append_args *a);
static bool kv_append_empty(const mlxn_kv_append_args *a);

/* The rope and kv_cache fusions of a q, k, v projection: the views of y's heads that
 * mlxn_qmatmul_fusion names, checked as mlxn_rope and mlxn_kv_append check them. */
static mlxn_status qkv_fusions(mlxn_stream *s, const mlxn_qmatmul_fusion *f, const mlxn_tensor *y, const char *fn,
                               mlxn_qmatmul_op_args *a)
{
    if (f->glu || f->accumulate)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "rope and kv_cache fuse with neither glu nor accumulate");
    if (y->ndim != 2)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "rope / kv_cache: y has %d dims, expected 2 ([M, N], rows of heads)",
                          y->ndim);
    const int64_t M = y->shape[0], N = y->shape[1], D = f->head_dim, E = (int64_t)sizeof(float);
    if (D <= 0 || N % D)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "head_dim %lld does not divide y's rows of %lld", (long long)D,
                          (long long)N);
    mlxn_tensor h = *y;
    h.ndim = 3;
    h.shape[0] = M;
    h.shape[2] = D;
    h.stride[1] = D * E;
    h.stride[2] = E;
    if (f->rope) {
        if (f->rope_heads < 1 || f->rope_heads > N / D)
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "rope_heads is %lld, expected 1 .. %lld (y's heads)",
                              (long long)f->rope_heads, (long long)(N / D));
        h.shape[1] = f->rope_heads;
        MLXN_TRY(rope_args(s, &h, f->rope_pos, f->rope, &h, fn, &a->rope));
        a->rope_on = true;
    }
    if (f->kv_cache) {
        if (f->kv_cache->ndim != 4)
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "kv_cache has %d dims, expected [2, Hk, S, head_dim]",
                              f->kv_cache->ndim);
        const int64_t Hk = f->kv_cache->shape[1];
        if (f->kv_head < 0 || f->kv_head + 2 * Hk > N / D)
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "kv_head %lld + 2 x %lld KV heads pass y's %lld heads",
                              (long long)f->kv_head, (long long)Hk, (long long)(N / D));
        mlxn_tensor src = h;
        src.ndim = 4;
        src.offset = y->offset + (size_t)(f->kv_head * D * E);
        const int64_t shape[4] = {2, M, Hk, D}, stride[4] = {Hk * D * E, y->stride[0], D * E, E};
        for (int i = 0; i < 4; i++) {
            src.shape[i] = shape[i];
            src.stride[i] = stride[i];
        }
        MLXN_TRY(kv_append_args(s, &src, f->kv_pos, f->kv_cache, fn, &a->kv));
        a->kv_on = !kv_append_empty(&a->kv);
    }
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_qmatmul_fused(mlxn_stream *s, const mlxn_tensor *x, const mlxn_tensor *w,
                               const mlxn_qmatmul_fusion *f, const mlxn_tensor *y)
{
    const char *fn = f ? "mlxn_qmatmul_fused" : "mlxn_qmatmul";
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_qmatmul};
    mlxn_qmatmul_args *a = &op.u.qmatmul.mm;
    int64_t xr, k, wr, wk, yr, yn;
    mlxn_rows wrows;
    MLXN_TRY(operand_rows(s, x, fn, "x", &a->x, &xr, &k));
    MLXN_TRY(operand_rows(s, w, fn, "w", &wrows, &wr, &wk));
    if (!y)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "y is NULL");
    MLXN_TRY(operand_rows(s, y, fn, "y", &a->y, &yr, &yn));
    if (!float_dtype(x->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "x is %s, expected f32, f16 or bf16",
                          mlxn_dtype_name(x->dtype));
    if (!ggml_block_dtype(w->dtype) && !float_dtype(w->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn,
                          "w is %s, expected a GGML block format (q4_0 .. q8_0, q2_K .. q6_K, iq4_nl, "
                          "iq4_xs) or f32, f16, bf16",
                          mlxn_dtype_name(w->dtype));
    MLXN_TRY(check_weight_align(w, fn, "w"));
    if (y->dtype != MLXN_DTYPE_F32)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "y is %s, expected f32", mlxn_dtype_name(y->dtype));
    if (w->ndim != 2)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "w must be 2-D [N, K]");
    if (wk != k)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "w has rows of %lld, x has rows of %lld",
                          (long long)wk, (long long)k);
    if (k % mlxn_dtype_block_elems(w->dtype))
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "K = %lld is not a multiple of %s's block of %lld",
                          (long long)k, mlxn_dtype_name(w->dtype), (long long)mlxn_dtype_block_elems(w->dtype));
    if (f && f->glu) {
        if (wr % 2)
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "glu: w has %lld rows, expected an even number "
                              "(gate rows, then as many up rows)", (long long)wr);
        if ((unsigned)f->glu_act >= MLXN_ACT_COUNT)
            return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "glu_act %d is not an mlxn_act", (int)f->glu_act);
    }
    MLXN_TRY(check_matmul_y(fn, x, y, xr, f && f->glu ? wr / 2 : wr, yr, yn));
    if (f && f->norm_w) {
        MLXN_TRY(f32_vector(s, f->norm_w, k, fn, "norm_w", " (one per column of x)", &a->norm_w));
        if (!(f->norm_eps >= 0.0f) || isinf(f->norm_eps))
            return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "norm_eps is %g, expected a finite value >= 0",
                              (double)f->norm_eps);
        a->norm_eps = f->norm_eps;
    }
    if (f) {
        a->glu = f->glu;
        a->glu_act = (int)f->glu_act;
        a->accumulate = f->accumulate;
        if (f->rope || f->kv_cache)
            MLXN_TRY(qkv_fusions(s, f, y, fn, &op.u.qmatmul));
    }
    a->M = xr;
    a->N = wr;
    a->K = k;
    a->w_dtype = (int)w->dtype;
    a->x_dtype = (int)x->dtype;
    a->w = (const uint8_t *)wrows.base;
    a->w_stride = wr > 1 ? wrows.s2 : k / mlxn_dtype_block_elems(w->dtype) * mlxn_dtype_block_bytes(w->dtype);
    if (a->M == 0 || a->N == 0)
        return MLXN_STATUS_OK;
    if (a->K == 0)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "K is 0");
    return mlxn_stream_issue(s, &op);
}

const char *mlxn_act_name(mlxn_act act)
{
    static const char *names[MLXN_ACT_COUNT] = {"silu", "gelu_tanh", "gelu_erf", "sigmoid"};
    return (unsigned)act < MLXN_ACT_COUNT ? names[act] : "?";
}

static mlxn_status act_issue(mlxn_stream *s, const char *fn, mlxn_act act, const mlxn_tensor *x,
                             const mlxn_tensor *up, const mlxn_tensor *y)
{
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_act};
    mlxn_act_args *a = &op.u.act;
    MLXN_TRY(operand_rows(s, x, fn, up ? "gate" : "x", &a->x, &a->n_rows, &a->n));
    if (!float_dtype(x->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "%s is %s, expected f32, f16 or bf16", up ? "gate" : "x",
                          mlxn_dtype_name(x->dtype));
    if ((unsigned)act >= MLXN_ACT_COUNT)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "unknown activation %d", (int)act);
    MLXN_TRY(like_x(s, x, y, fn, "y", &a->y));
    if (up)
        MLXN_TRY(like_x(s, x, up, fn, "up", &a->up));
    a->dtype = (int)x->dtype;
    a->act = (int)act;
    if (a->n_rows == 0 || a->n == 0)
        return MLXN_STATUS_OK;
    return mlxn_stream_issue(s, &op);
}

mlxn_status mlxn_activation(mlxn_stream *s, mlxn_act act, const mlxn_tensor *x, const mlxn_tensor *y)
{
    return act_issue(s, "mlxn_activation", act, x, NULL, y);
}

mlxn_status mlxn_glu(mlxn_stream *s, mlxn_act act, const mlxn_tensor *gate, const mlxn_tensor *up,
                     const mlxn_tensor *y)
{
    if (!up)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_glu", "up is NULL");
    return act_issue(s, "mlxn_glu", act, gate, up, y);
}

mlxn_status mlxn_softmax(mlxn_stream *s, const mlxn_tensor *x, const mlxn_tensor *mask, float scale, float softcap,
                         bool log, const mlxn_tensor *y)
{
    static const char *fn = "mlxn_softmax";
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_softmax};
    mlxn_softmax_args *a = &op.u.softmax;
    MLXN_TRY(operand_rows(s, x, fn, "x", &a->x, &a->n_rows, &a->n));
    if (!float_dtype(x->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "x is %s, expected f32, f16 or bf16", mlxn_dtype_name(x->dtype));
    MLXN_TRY(like_x(s, x, y, fn, "y", &a->y));
    if (mask)
        MLXN_TRY(like_x(s, x, mask, fn, "mask", &a->mask));
    if (!isfinite(scale) || !(softcap >= 0.0f) || isinf(softcap))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "scale %g and softcap %g: expected finite, softcap >= 0",
                          (double)scale, (double)softcap);
    a->dtype = (int)x->dtype;
    a->scale = scale;
    a->softcap = softcap;
    a->log = log;
    if (a->n_rows == 0)
        return MLXN_STATUS_OK;
    if (a->n == 0)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "rows of x are empty: a softmax over 0 elements is undefined");
    return mlxn_stream_issue(s, &op);
}

mlxn_rope_params mlxn_rope_params_default(void)
{
    mlxn_rope_params p = {0};
    p.style = MLXN_ROPE_NORMAL;
    p.base = 10000.0f;
    p.freq_scale = 1.0f;
    p.attn_factor = 1.0f;
    p.beta_fast = 32.0f;
    p.beta_slow = 1.0f;
    p.norm_eps = 1e-6f;
    return p;
}

/* ggml_rope_yarn_corr_dims, in f32 as ggml computes it: the pair index where the rotation at
 * the training context n_ctx_orig is beta full turns. */
static float rope_yarn_corr_dim(int n_rot, int n_ctx_orig, float beta, float base)
{
    return (float)n_rot * logf((float)n_ctx_orig / (beta * 2.0f * (float)M_PI)) / (2.0f * logf(base));
}

/* pos: i32, innermost dim contiguous, [T] or [B, T] (multi-section: [4, T] or [B, 4, T]). */
static mlxn_status rope_pos(mlxn_stream *s, const mlxn_tensor *pos, bool multi, int64_t B, int64_t T,
                            const char *fn, mlxn_rope_args *a)
{
    mlxn_rows rows;
    int64_t n_rows, n;
    if (!pos)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "pos is NULL");
    MLXN_TRY(operand_rows(s, pos, fn, "pos", &rows, &n_rows, &n));
    if (pos->dtype != MLXN_DTYPE_I32)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "pos is %s, expected i32", mlxn_dtype_name(pos->dtype));
    char got[96];
    shape_str(pos, got, sizeof got);
    const int base_dims = multi ? 2 : 1;
    const bool shape_ok = pos->ndim >= base_dims && pos->ndim <= base_dims + 1 && n == T &&
                          (!multi || pos->shape[pos->ndim - 2] == 4) &&
                          (pos->ndim == base_dims || pos->shape[0] == B);
    if (!shape_ok)
        return multi ? mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "pos has shape %s, expected [4, %lld] or [%lld, 4, %lld]",
                                  got, (long long)T, (long long)B, (long long)T)
                     : mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "pos has shape %s, expected [%lld] or [%lld, %lld]", got,
                                  (long long)T, (long long)B, (long long)T);
    /* rows.s1 / s2: strides of the two dims before the innermost (0 for size-1 dims) */
    a->pos = rows.base;
    a->pos_ss = multi ? rows.s2 : 0;
    a->pos_sb = pos->ndim == base_dims ? 0 : multi ? rows.s1 : rows.s2;
    return MLXN_STATUS_OK;
}

static mlxn_status rope_check_params(const mlxn_rope_params *p, int64_t D, const char *fn, mlxn_rope_args *a)
{
    if (p->style != MLXN_ROPE_NORMAL && p->style != MLXN_ROPE_NEOX)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "style is %d, expected MLXN_ROPE_NORMAL (0) or MLXN_ROPE_NEOX (2)",
                          (int)p->style);
    const int64_t n_rot = p->n_rot == 0 ? D : p->n_rot;
    if (n_rot <= 0 || n_rot % 2 || n_rot > D)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "n_rot is %d, expected an even number in 2..%lld (the head dim)",
                          p->n_rot, (long long)D);
    if (!(p->base > 0.0f) || isinf(p->base) || !(p->freq_scale > 0.0f) || isinf(p->freq_scale) ||
        !isfinite(p->ext_factor) || !isfinite(p->attn_factor))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                          "base %g, freq_scale %g, ext_factor %g, attn_factor %g: expected finite, base and freq_scale > 0",
                          (double)p->base, (double)p->freq_scale, (double)p->ext_factor, (double)p->attn_factor);
    if (p->ext_factor != 0.0f &&
        (p->n_ctx_orig <= 0 || !(p->beta_fast > 0.0f) || !(p->beta_slow > 0.0f) || isinf(p->beta_fast) || isinf(p->beta_slow)))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                          "YaRN (ext_factor %g) needs n_ctx_orig > 0 and finite beta_fast, beta_slow > 0; found %d, %g, %g",
                          (double)p->ext_factor, p->n_ctx_orig, (double)p->beta_fast, (double)p->beta_slow);
    const int *sec = p->sections;
    const bool multi = (sec[0] | sec[1] | sec[2] | sec[3]) != 0;
    if (multi) {
        if (sec[0] < 0 || sec[1] < 0 || sec[2] < 0 || sec[3] < 0 || sec[0] + sec[1] + sec[2] == 0 ||
            (int64_t)sec[0] + sec[1] + sec[2] + sec[3] > D)
            return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                              "sections are [%d, %d, %d, %d]: expected >= 0, one of the first three > 0, sum <= %lld (the head dim)",
                              sec[0], sec[1], sec[2], sec[3], (long long)D);
        if (p->style != MLXN_ROPE_NEOX)
            return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                              "multi-section rope pairs dims as NEOX (ggml modes 8 and 40): style must be MLXN_ROPE_NEOX");
    } else if (p->interleaved) {
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "interleaved (imrope) is set but sections are all 0");
    }
    a->style = (int)p->style;
    a->n_rot = (int)n_rot;
    a->base = p->base;
    a->freq_scale = p->freq_scale;
    a->ext_factor = p->ext_factor;
    a->attn_factor = p->attn_factor;
    a->beta_fast = p->beta_fast;
    a->beta_slow = p->beta_slow;
    a->n_ctx_orig = p->n_ctx_orig;
    a->freq_log2 = -2.0 * log2((double)p->base) / (double)n_rot;
    a->mscale = p->attn_factor;
    if (p->ext_factor != 0.0f) {
        const float lo = floorf(rope_yarn_corr_dim(a->n_rot, p->n_ctx_orig, p->beta_fast, p->base));
        const float hi = ceilf(rope_yarn_corr_dim(a->n_rot, p->n_ctx_orig, p->beta_slow, p->base));
        a->corr_lo = fmaxf(0.0f, lo);
        a->corr_hi = fminf((float)(a->n_rot - 1), hi);
        a->mscale *= 1.0f + 0.1f * logf(1.0f / p->freq_scale);
    }
    for (int i = 0; i < 4; i++)
        a->sections[i] = sec[i];
    a->interleaved = p->interleaved;
    return MLXN_STATUS_OK;
}

/* mlxn_rope's checks and arguments (errors in the name of fn). */
static mlxn_status rope_args(mlxn_stream *s, const mlxn_tensor *x, const mlxn_tensor *pos, const mlxn_rope_params *p,
                             const mlxn_tensor *y, const char *fn, mlxn_rope_args *a)
{
    MLXN_TRY(operand_rows(s, x, fn, "x", &a->x, &a->n_rows, &a->head_dim));
    if (!float_dtype(x->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "x is %s, expected f32, f16 or bf16", mlxn_dtype_name(x->dtype));
    if (x->ndim != 3 && x->ndim != 4)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "x has %d dims, expected [T, H, D] or [B, T, H, D]", x->ndim);
    MLXN_TRY(like_x(s, x, y, fn, "y", &a->y));
    if (!p)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "params are NULL");
    const int64_t B = x->ndim == 4 ? x->shape[0] : 1;
    a->n_tok = x->shape[x->ndim - 3];
    a->n_head = x->shape[x->ndim - 2];
    a->dtype = (int)x->dtype;
    MLXN_TRY(rope_check_params(p, a->head_dim, fn, a));
    MLXN_TRY(rope_pos(s, pos, a->sections[0] | a->sections[1] | a->sections[2] | a->sections[3], B, a->n_tok, fn, a));
    if (p->freq_factors)
        MLXN_TRY(f32_vector(s, p->freq_factors, a->n_rot / 2, fn, "freq_factors", " (n_rot / 2)", &a->freq_factors));
    if (p->norm_w) {
        const mlxn_tensor *nw = p->norm_w;
        mlxn_rows wr;
        int64_t w_rows, w_n;
        MLXN_TRY(operand_rows(s, nw, fn, "norm_w", &wr, &w_rows, &w_n));
        if (nw->dtype != MLXN_DTYPE_F32)
            return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "norm_w is %s, expected f32", mlxn_dtype_name(nw->dtype));
        if (!((nw->ndim == 1 || (nw->ndim == 2 && nw->shape[0] == a->n_head)) && w_n == a->head_dim)) {
            char got[96];
            shape_str(nw, got, sizeof got);
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "norm_w has shape %s, expected [%lld] or [%lld, %lld] (x is [.., H, D])",
                              got, (long long)a->head_dim, (long long)a->n_head, (long long)a->head_dim);
        }
        if (!(p->norm_eps >= 0.0f) || isinf(p->norm_eps))
            return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "norm_eps is %g, expected a finite value >= 0",
                              (double)p->norm_eps);
        a->norm_w = (const float *)wr.base;
        a->norm_w_stride = nw->ndim == 2 ? wr.s2 : 0;
        a->norm_eps = p->norm_eps;
    }
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_rope(mlxn_stream *s, const mlxn_tensor *x, const mlxn_tensor *pos, const mlxn_rope_params *p,
                      const mlxn_tensor *y)
{
    static const char *fn = "mlxn_rope";
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_rope};
    MLXN_TRY(rope_args(s, x, pos, p, y, fn, &op.u.rope));
    if (op.u.rope.n_rows == 0)
        return MLXN_STATUS_OK;
    return mlxn_stream_issue(s, &op);
}
mlxn_status mlxn_get_rows(mlxn_stream *s, const mlxn_tensor *table, const mlxn_tensor *ids, float scale,
                          const mlxn_tensor *y)
{
    static const char *fn = "mlxn_get_rows";
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_get_rows};
    mlxn_get_rows_args *a = &op.u.get_rows;
    mlxn_rows trows;
    int64_t id_rows, yr, yn;
    MLXN_TRY(operand_rows(s, table, fn, "table", &trows, &a->table_rows, &a->n));
    MLXN_TRY(operand_rows(s, ids, fn, "ids", &a->ids, &id_rows, &a->ids_len));
    if (!y)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "y is NULL");
    MLXN_TRY(operand_rows(s, y, fn, "y", &a->y, &yr, &yn));
    if (!ggml_block_dtype(table->dtype) && !float_dtype(table->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn,
                          "table is %s, expected a GGML block format (q4_0 .. q8_0, q2_K .. q6_K, iq4_nl, "
                          "iq4_xs) or f32, f16, bf16",
                          mlxn_dtype_name(table->dtype));
    if (table->ndim != 2)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "table has %d dims, expected 2 ([V, D])", table->ndim);
    if (ids->dtype != MLXN_DTYPE_I32)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "ids are %s, expected i32", mlxn_dtype_name(ids->dtype));
    if (ids->ndim > 3)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "ids have %d dims, expected 1 to 3", ids->ndim);
    if (!float_dtype(y->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "y is %s, expected f32, f16 or bf16", mlxn_dtype_name(y->dtype));
    bool fits = y->ndim == ids->ndim + 1 && yn == a->n;
    for (int i = 0; fits && i < ids->ndim; i++)
        fits = y->shape[i] == ids->shape[i];
    if (!fits) {
        char ys[96], is[96];
        shape_str(y, ys, sizeof ys);
        shape_str(ids, is, sizeof is);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "y has shape %s, expected ids' shape %s and then %lld", ys, is,
                          (long long)a->n);
    }
    if (!isfinite(scale))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "scale is %g, expected a finite value", (double)scale);
    a->n_tokens = id_rows * a->ids_len;
    a->table_dtype = (int)table->dtype;
    a->table = (const uint8_t *)trows.base;
    const int64_t row_bytes = a->n / mlxn_dtype_block_elems(table->dtype) * mlxn_dtype_block_bytes(table->dtype);
    a->table_stride = a->table_rows > 1 ? trows.s2 : row_bytes;
    a->y_dtype = (int)y->dtype;
    a->scale = scale;
    if (a->n_tokens == 0 || a->n == 0)
        return MLXN_STATUS_OK;
    return mlxn_stream_issue(s, &op);
}

mlxn_status mlxn_binary(mlxn_stream *s, mlxn_binop bop, const mlxn_tensor *a, const mlxn_tensor *b,
                        const mlxn_tensor *y)
{
    static const char *fn = "mlxn_binary";
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_binary};
    mlxn_binary_args *p = &op.u.binary;
    MLXN_TRY(operand_rows(s, a, fn, "a", &p->a, &p->n_rows, &p->n));
    if (!float_dtype(a->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "a is %s, expected f32, f16 or bf16", mlxn_dtype_name(a->dtype));
    if ((unsigned)bop > MLXN_BINOP_DIV)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "unknown operation %d, expected a mlxn_binop", (int)bop);
    if (!b)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "b is NULL");
    mlxn_rows brows;
    int64_t b_rows, b_n;
    MLXN_TRY(operand_rows(s, b, fn, "b", &brows, &b_rows, &b_n));
    if (b->dtype != a->dtype && b->dtype != MLXN_DTYPE_F32)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "b is %s, expected %s (a's dtype) or f32",
                          mlxn_dtype_name(b->dtype), mlxn_dtype_name(a->dtype));
    /* numpy broadcasting: b's dims aligned with a's innermost ones, each equal or 1 */
    const int lead = a->ndim - b->ndim;
    bool fits = lead >= 0;
    for (int i = 0; fits && i < b->ndim; i++)
        fits = b->shape[i] == a->shape[lead + i] || b->shape[i] == 1;
    if (!fits) {
        char bs[96], as[96];
        shape_str(b, bs, sizeof bs);
        shape_str(a, as, sizeof as);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "b has shape %s, which does not broadcast to a's shape %s", bs,
                          as);
    }
    MLXN_TRY(like_operand(s, a, "a", y, fn, "y", &p->y));
    /* b in a's row decomposition: slot k of the three leading dims holds a's dim k - (3 - (ndim - 1)) */
    int64_t stride[3] = {0, 0, 0};
    for (int i = 0; i + 1 < a->ndim; i++) {
        const int bi = i - lead;
        if (bi >= 0 && b->shape[bi] != 1)
            stride[3 - (a->ndim - 1) + i] = b->stride[bi];
    }
    p->b = (mlxn_rows){.base = brows.base, .d1 = p->a.d1, .d2 = p->a.d2, .s0 = stride[0], .s1 = stride[1],
                       .s2 = stride[2]};
    p->b_inc = b->shape[b->ndim - 1] == 1 ? 0 : (int64_t)mlxn_dtype_size(b->dtype);
    p->op = (int)bop;
    p->dtype = (int)a->dtype;
    p->b_dtype = (int)b->dtype;
    if (p->n_rows == 0 || p->n == 0)
        return MLXN_STATUS_OK;
    return mlxn_stream_issue(s, &op);
}

mlxn_status mlxn_scale(mlxn_stream *s, const mlxn_tensor *x, float alpha, float beta, const mlxn_tensor *y)
{
    static const char *fn = "mlxn_scale";
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_scale};
    mlxn_scale_args *p = &op.u.scale;
    MLXN_TRY(operand_rows(s, x, fn, "x", &p->x, &p->n_rows, &p->n));
    if (!float_dtype(x->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "x is %s, expected f32, f16 or bf16", mlxn_dtype_name(x->dtype));
    MLXN_TRY(like_operand(s, x, "x", y, fn, "y", &p->y));
    if (!isfinite(alpha) || !isfinite(beta))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "alpha %g and beta %g: expected finite values",
                          (double)alpha, (double)beta);
    p->dtype = (int)x->dtype;
    p->alpha = alpha;
    p->beta = beta;
    if (p->n_rows == 0 || p->n == 0)
        return MLXN_STATUS_OK;
    return mlxn_stream_issue(s, &op);
}

/* A contiguous i32 vector of n elements for per-row results. */
static mlxn_status row_results(mlxn_stream *s, const mlxn_tensor *out, int64_t n, const char *fn, int32_t **ptr)
{
    return i32_vector(s, out, n, fn, "out", " (one per row)", ptr);
}

mlxn_status mlxn_argmax(mlxn_stream *s, const mlxn_tensor *x, const mlxn_tensor *out)
{
    static const char *fn = "mlxn_argmax";
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_argmax};
    mlxn_argmax_args *a = &op.u.argmax;
    MLXN_TRY(operand_rows(s, x, fn, "x", &a->x, &a->n_rows, &a->n));
    if (!float_dtype(x->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "x is %s, expected f32, f16 or bf16", mlxn_dtype_name(x->dtype));
    MLXN_TRY(row_results(s, out, a->n_rows, fn, &a->out));
    if (a->n > INT32_MAX)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "rows of %lld elements: indices past i32", (long long)a->n);
    a->dtype = (int)x->dtype;
    if (a->n_rows == 0)
        return MLXN_STATUS_OK;
    if (a->n == 0)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "rows of x are empty: the argmax of 0 elements is undefined");
    return mlxn_stream_issue(s, &op);
}

mlxn_attention_params mlxn_attention_params_default(void)
{
    mlxn_attention_params p = {.scale = 1.0f, .causal = true};
    return p;
}

/* A 4-D operand of an attention op, as rows of its innermost dim: f32/f16/bf16, or for a
 * cache also q8_0 (rows of D / 32 blocks; the view's check already refused a D that is not a
 * multiple of 32). */
static mlxn_status attention_operand(mlxn_stream *s, const mlxn_tensor *t, const char *fn, const char *what,
                                     const char *layout, bool cache, mlxn_rows *rows)
{
    if (!t)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "%s is NULL", what);
    int64_t nr, n;
    MLXN_TRY(operand_rows(s, t, fn, what, rows, &nr, &n));
    if (t->ndim != 4)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "%s has %d dims, expected 4 (%s)", what, t->ndim, layout);
    if (!float_dtype(t->dtype) && !(cache && t->dtype == MLXN_DTYPE_Q8_0))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "%s is %s, expected f32, f16 or bf16%s", what,
                          mlxn_dtype_name(t->dtype), cache ? " or q8_0" : "");
    return MLXN_STATUS_OK;
}

/* pos: i32 [B] */
static mlxn_status attention_pos(mlxn_stream *s, const mlxn_tensor *pos, int64_t B, const char *fn,
                                 const int32_t **out)
{
    int32_t *p;
    MLXN_TRY(i32_vector(s, pos, B, fn, "pos", " (one per batch row)", &p));
    *out = p;
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_attention(mlxn_stream *s, const mlxn_tensor *q, const mlxn_tensor *k, const mlxn_tensor *v,
                           const mlxn_tensor *pos, const mlxn_attention_params *p, const mlxn_tensor *o)
{
    static const char *fn = "mlxn_attention";
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_attention};
    mlxn_attention_args *a = &op.u.attention;
    MLXN_TRY(attention_operand(s, q, fn, "q", "[B, Tq, Hq, D]", false, &a->q));
    MLXN_TRY(attention_operand(s, k, fn, "k", "[B, Hkv, S, D]", true, &a->k));
    MLXN_TRY(attention_operand(s, v, fn, "v", "[B, Hkv, S, D]", true, &a->v));
    MLXN_TRY(attention_operand(s, o, fn, "o", "[B, Tq, Hq, D]", false, &a->o));
    char want[96], got[96];
    if (v->dtype != k->dtype)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "v is %s, k is %s: the caches must share a dtype",
                          mlxn_dtype_name(v->dtype), mlxn_dtype_name(k->dtype));
    if (!same_shape(k, v)) {
        shape_str(v, got, sizeof got);
        shape_str(k, want, sizeof want);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "v has shape %s, k has shape %s", got, want);
    }
    a->B = q->shape[0];
    a->Tq = q->shape[1];
    a->Hq = q->shape[2];
    a->D = q->shape[3];
    a->Hkv = k->shape[1];
    a->S = k->shape[2];
    if (k->shape[0] != a->B)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "k has %lld batch rows, q has %lld", (long long)k->shape[0],
                          (long long)a->B);
    if (k->shape[3] != a->D)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "k has head dim %lld, q has head dim %lld",
                          (long long)k->shape[3], (long long)a->D);
    if (a->Hkv == 0 || a->Hq % a->Hkv)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "q has %lld heads, k has %lld: expected Hq a multiple of Hkv",
                          (long long)a->Hq, (long long)a->Hkv);
    if (o->dtype != q->dtype)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "o is %s, q is %s", mlxn_dtype_name(o->dtype),
                          mlxn_dtype_name(q->dtype));
    if (!same_shape(q, o)) {
        shape_str(o, got, sizeof got);
        shape_str(q, want, sizeof want);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "o has shape %s, q has shape %s", got, want);
    }
    MLXN_TRY(attention_pos(s, pos, a->B, fn, &a->pos));
    const mlxn_attention_params def = mlxn_attention_params_default();
    if (!p)
        p = &def;
    if (!isfinite(p->scale) || !(p->softcap >= 0.0f) || isinf(p->softcap))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "scale %g and softcap %g: expected finite, softcap >= 0",
                          (double)p->scale, (double)p->softcap);
    if (p->window < 0)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "window is %lld, expected >= 0 (0: none)",
                          (long long)p->window);
    if (p->mask) {
        mlxn_rows mr;
        int64_t nr, n;
        MLXN_TRY(operand_rows(s, p->mask, fn, "mask", &mr, &nr, &n));
        if (p->mask->dtype != MLXN_DTYPE_F32)
            return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "mask is %s, expected f32", mlxn_dtype_name(p->mask->dtype));
        if (p->mask->ndim != 2 || p->mask->shape[0] != a->Tq || p->mask->shape[1] != a->S) {
            shape_str(p->mask, got, sizeof got);
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "mask has shape %s, expected [Tq, S] = [%lld, %lld]", got,
                              (long long)a->Tq, (long long)a->S);
        }
        a->mask = (const float *)mr.base;
        a->mask_stride = mr.s2;
    }
    if (p->sinks)
        MLXN_TRY(f32_vector(s, p->sinks, a->Hq, fn, "sinks", " (one per query head)", &a->sinks));
    a->q_dtype = (int)q->dtype;
    a->kv_dtype = (int)k->dtype;
    a->scale = p->scale;
    a->softcap = p->softcap;
    a->window = p->window;
    a->causal = p->causal;
    if (a->B == 0 || a->Tq == 0 || a->Hq == 0)
        return MLXN_STATUS_OK;
    if (a->D == 0 || a->D > MLXN_ATTENTION_MAX_D)
        return mlxn_error(a->D ? MLXN_STATUS_ERR_UNSUPPORTED : MLXN_STATUS_ERR_SHAPE, fn,
                          "head dim is %lld, expected 1 .. %d", (long long)a->D, MLXN_ATTENTION_MAX_D);
    return mlxn_stream_issue(s, &op);
}

/* mlxn_kv_append's checks and arguments (errors in the name of fn). */
static mlxn_status kv_append_args(mlxn_stream *s, const mlxn_tensor *src, const mlxn_tensor *pos,
                                  const mlxn_tensor *cache, const char *fn, mlxn_kv_append_args *a)
{
    MLXN_TRY(attention_operand(s, src, fn, "src", "[B, T, Hkv, D]", false, &a->src));
    MLXN_TRY(attention_operand(s, cache, fn, "cache", "[B, Hkv, S, D]", true, &a->cache));
    a->B = src->shape[0];
    a->T = src->shape[1];
    a->H = src->shape[2];
    a->D = src->shape[3];
    a->S = cache->shape[2];
    if (cache->shape[0] != a->B || cache->shape[1] != a->H || cache->shape[3] != a->D) {
        char got[96];
        shape_str(cache, got, sizeof got);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "cache has shape %s, expected [%lld, %lld, S, %lld] for src [B, T, Hkv, D]",
                          got, (long long)a->B, (long long)a->H, (long long)a->D);
    }
    if (a->T > a->S)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "src has %lld rows per sequence, the cache only %lld slots",
                          (long long)a->T, (long long)a->S);
    MLXN_TRY(attention_pos(s, pos, a->B, fn, &a->pos));
    a->src_dtype = (int)src->dtype;
    a->cache_dtype = (int)cache->dtype;
    return MLXN_STATUS_OK;
}

static bool kv_append_empty(const mlxn_kv_append_args *a)
{
    return a->B == 0 || a->T == 0 || a->H == 0 || a->D == 0;
}

mlxn_status mlxn_kv_append(mlxn_stream *s, const mlxn_tensor *src, const mlxn_tensor *pos, const mlxn_tensor *cache)
{
    static const char *fn = "mlxn_kv_append";
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_kv_append};
    MLXN_TRY(kv_append_args(s, src, pos, cache, fn, &op.u.kv_append));
    if (kv_append_empty(&op.u.kv_append))
        return MLXN_STATUS_OK;
    return mlxn_stream_issue(s, &op);
}

mlxn_sampler_params mlxn_sampler_params_default(void)
{
    return (mlxn_sampler_params){
        .temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .repeat_penalty = 1.0f, .seed = 0};
}

mlxn_status mlxn_sample(mlxn_stream *s, const mlxn_tensor *logits, const mlxn_tensor *history,
                        const mlxn_sampler_params *p, uint64_t step, const mlxn_tensor *out)
{
    static const char *fn = "mlxn_sample";
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_sample};
    mlxn_sample_args *a = &op.u.sample;
    MLXN_TRY(operand_rows(s, logits, fn, "logits", &a->logits, &a->n_rows, &a->n));
    if (logits->dtype != MLXN_DTYPE_F32)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "logits are %s, expected f32", mlxn_dtype_name(logits->dtype));
    if (!p)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "p is NULL");
    if (!isfinite(p->temperature))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "temperature is %g, expected a finite value",
                          (double)p->temperature);
    if (p->top_k < 0)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "top_k is %d, expected >= 0 (0: off)", p->top_k);
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f) || !(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "top_p %g and min_p %g: expected both in [0, 1]",
                          (double)p->top_p, (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "repeat_penalty is %g, expected a finite value > 0",
                          (double)p->repeat_penalty);
    MLXN_TRY(row_results(s, out, a->n_rows, fn, &a->out));
    if (a->n > ((int64_t)1 << 24))
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "rows of %lld logits, at most 2^24 = 16777216",
                          (long long)a->n);
    if (history) {
        mlxn_rows hrows;
        int64_t h_rows, h;
        MLXN_TRY(operand_rows(s, history, fn, "history", &hrows, &h_rows, &h));
        if (history->dtype != MLXN_DTYPE_I32)
            return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "history is %s, expected i32",
                              mlxn_dtype_name(history->dtype));
        if (h_rows != a->n_rows)
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "history has %lld rows, logits have %lld", (long long)h_rows,
                              (long long)a->n_rows);
        if (p->repeat_penalty != 1.0f && h > 0) {
            if (h > MLXN_SAMPLE_MAX_HISTORY)
                return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn,
                                  "history has %lld entries per row; a repeat penalty reads at most %d",
                                  (long long)h, MLXN_SAMPLE_MAX_HISTORY);
            a->history = hrows;
            a->n_history = h;
        }
    }
    a->temperature = p->temperature;
    a->top_k = p->top_k;
    a->top_p = p->top_p;
    a->min_p = p->min_p;
    a->repeat_penalty = p->repeat_penalty;
    a->seed = p->seed;
    a->step = step;
    if (a->n_rows == 0)
        return MLXN_STATUS_OK;
    if (a->n == 0)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "rows of logits are empty: nothing to sample from");
    return mlxn_stream_issue(s, &op);
}

mlxn_moe_gate_params mlxn_moe_gate_params_default(void)
{
    return (mlxn_moe_gate_params){
        .gating = MLXN_MOE_GATING_SOFTMAX, .top_k = 1, .normalize = false, .scale = 1.0f, .bias = NULL};
}

/* A 2-D operand of the given dtype shaped [rows, cols]. */
static mlxn_status matrix_operand(mlxn_stream *s, const mlxn_tensor *t, const char *fn, const char *what,
                                  mlxn_dtype dtype, int64_t rows, int64_t cols, const char *dims, mlxn_rows *out)
{
    int64_t nr, n;
    if (!t)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "%s is NULL", what);
    MLXN_TRY(operand_rows(s, t, fn, what, out, &nr, &n));
    if (t->dtype != dtype)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "%s is %s, expected %s", what, mlxn_dtype_name(t->dtype),
                          mlxn_dtype_name(dtype));
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
        char sh[96];
        shape_str(t, sh, sizeof sh);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "%s has shape %s, expected %lldx%lld (%s)", what, sh,
                          (long long)rows, (long long)cols, dims);
    }
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_moe_gate(mlxn_stream *s, const mlxn_tensor *logits, const mlxn_moe_gate_params *p,
                          const mlxn_tensor *ids, const mlxn_tensor *weights)
{
    static const char *fn = "mlxn_moe_gate";
    MLXN_TRY(check_stream(s, fn));
    if (!p)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "params are NULL");
    mlxn_op op = {.kind = MLXN_OP_moe_gate};
    mlxn_moe_gate_args *a = &op.u.moe_gate;
    MLXN_TRY(operand_rows(s, logits, fn, "logits", &a->logits, &a->n_tokens, &a->n_experts));
    if (!float_dtype(logits->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "logits are %s, expected f32, f16 or bf16",
                          mlxn_dtype_name(logits->dtype));
    if (logits->ndim != 2) {
        char sh[96];
        shape_str(logits, sh, sizeof sh);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "logits have shape %s, expected 2 dims [T, E]", sh);
    }
    if (p->gating != MLXN_MOE_GATING_SOFTMAX && p->gating != MLXN_MOE_GATING_SIGMOID)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "gating is %d, expected softmax (0) or sigmoid (1)",
                          (int)p->gating);
    if (p->top_k < 1 || p->top_k > MLXN_MOE_MAX_TOP_K)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "top_k is %d, expected 1..%d", p->top_k,
                          MLXN_MOE_MAX_TOP_K);
    if (p->top_k > a->n_experts)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "top_k is %d, more than the %lld experts of logits",
                          p->top_k, (long long)a->n_experts);
    if (a->n_experts > INT32_MAX)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "logits have %lld experts: ids past i32",
                          (long long)a->n_experts);
    if (!isfinite(p->scale))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "scale is %g, expected a finite value", (double)p->scale);
    MLXN_TRY(matrix_operand(s, ids, fn, "ids", MLXN_DTYPE_I32, a->n_tokens, p->top_k, "[T, top_k]", &a->ids));
    MLXN_TRY(matrix_operand(s, weights, fn, "weights", MLXN_DTYPE_F32, a->n_tokens, p->top_k, "[T, top_k]",
                            &a->weights));
    a->bias = NULL;
    if (p->bias)
        MLXN_TRY(f32_vector(s, p->bias, a->n_experts, fn, "bias", " (one per expert)", &a->bias));
    a->dtype = (int)logits->dtype;
    a->gating = (int)p->gating;
    a->top_k = p->top_k;
    a->normalize = p->normalize;
    a->scale = p->scale;
    if (a->n_tokens == 0)
        return MLXN_STATUS_OK;
    return mlxn_stream_issue(s, &op);
}

mlxn_status mlxn_moe_reduce(mlxn_stream *s, const mlxn_tensor *x, const mlxn_tensor *weights, const mlxn_tensor *y)
{
    static const char *fn = "mlxn_moe_reduce";
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_moe_reduce};
    mlxn_moe_reduce_args *a = &op.u.moe_reduce;
    int64_t x_rows;
    MLXN_TRY(operand_rows(s, x, fn, "x", &a->x, &x_rows, &a->n));
    if (!float_dtype(x->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "x is %s, expected f32, f16 or bf16", mlxn_dtype_name(x->dtype));
    if (x->ndim != 3) {
        char sh[96];
        shape_str(x, sh, sizeof sh);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "x has shape %s, expected 3 dims [T, k, N]", sh);
    }
    a->n_tokens = x->shape[0];
    a->top_k = x->shape[1];
    if (a->top_k < 1)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "x has %lld slots per token, expected at least 1",
                          (long long)a->top_k);
    MLXN_TRY(matrix_operand(s, weights, fn, "weights", MLXN_DTYPE_F32, a->n_tokens, a->top_k, "[T, k] of x",
                            &a->weights));
    MLXN_TRY(matrix_operand(s, y, fn, "y", x->dtype, a->n_tokens, a->n, "[T, N] of x", &a->y));
    a->dtype = (int)x->dtype;
    if (a->n_tokens == 0 || a->n == 0)
        return MLXN_STATUS_OK;
    return mlxn_stream_issue(s, &op);
}

/* ---------------------------------------------------------------- layout ops */

static bool copy_dtypes_ok(mlxn_dtype x, mlxn_dtype y)
{
    return (float_dtype(x) && float_dtype(y)) || (x == MLXN_DTYPE_I32 && y == MLXN_DTYPE_I32);
}

static bool same_view(const mlxn_tensor *a, const mlxn_tensor *b)
{
    if (a->buffer != b->buffer || a->offset != b->offset || a->dtype != b->dtype || !same_shape(a, b))
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] > 1 && a->stride[i] != b->stride[i])
            return false;
    return true;
}

/* Checks a copy of x into y (x possibly a permuted view; x_name names it in messages) and fills
 * the normalized args (op_list.h); *empty when there is nothing to copy. */
static mlxn_status copy_plan(mlxn_stream *s, const char *fn, const mlxn_tensor *x, const char *x_name,
                             const mlxn_tensor *y, mlxn_copy_args *a, bool *empty)
{
    MLXN_TRY(mlxn_tensor_check(x, fn, x_name));
    if (!y)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "y is NULL");
    MLXN_TRY(mlxn_tensor_check(y, fn, "y"));
    if (x->buffer->device != s->device || y->buffer->device != s->device)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "%s lives on another device than the stream",
                          x->buffer->device != s->device ? x_name : "y");
    if (!copy_dtypes_ok(x->dtype, y->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn,
                          "%s is %s and y %s: expected f32, f16 or bf16 for both, or i32 for both", x_name,
                          mlxn_dtype_name(x->dtype), mlxn_dtype_name(y->dtype));
    if (!same_shape(x, y)) {
        char xs[96], ys[96];
        shape_str(x, xs, sizeof xs);
        shape_str(y, ys, sizeof ys);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "y has shape %s, expected %s (%s)", ys, xs, x_name);
    }
    memset(a, 0, sizeof *a);
    a->x_dtype = (int)x->dtype;
    a->y_dtype = (int)y->dtype;
    a->x = x->buffer->ptr + x->offset;
    a->y = y->buffer->ptr + y->offset;
    *empty = mlxn_tensor_numel(x) == 0;
    /* dims of size > 1, by y's stride, largest first (insertion sort: at most 4) */
    int nd = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (x->shape[i] == 1)
            continue;
        int k = nd++;
        while (k > 0 && a->ys[k - 1] < y->stride[i]) {
            a->shape[k] = a->shape[k - 1];
            a->xs[k] = a->xs[k - 1];
            a->ys[k] = a->ys[k - 1];
            k--;
        }
        a->shape[k] = x->shape[i];
        a->xs[k] = x->stride[i];
        a->ys[k] = y->stride[i];
    }
    if (*empty)
        return MLXN_STATUS_OK;
    /* y's elements must be distinct: each stride at least the span of the dims inside it */
    int64_t span = (int64_t)mlxn_dtype_size(y->dtype);
    for (int k = nd - 1; k >= 0; k--) {
        if (a->ys[k] < span)
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn,
                              "y's elements overlap (a stride of %lld bytes inside a span of %lld): an output view "
                              "must not repeat elements",
                              (long long)a->ys[k], (long long)span);
        span += a->ys[k] * (a->shape[k] - 1);
    }
    /* merge neighbours that are contiguous in both views */
    int m = 0;
    for (int k = 0; k < nd; k++) {
        if (m > 0 && a->xs[m - 1] == a->xs[k] * a->shape[k] && a->ys[m - 1] == a->ys[k] * a->shape[k]) {
            a->shape[m - 1] *= a->shape[k];
            a->xs[m - 1] = a->xs[k];
            a->ys[m - 1] = a->ys[k];
        } else {
            a->shape[m] = a->shape[k];
            a->xs[m] = a->xs[k];
            a->ys[m] = a->ys[k];
            m++;
        }
    }
    if (m == 0) { /* a single element */
        a->shape[0] = 1;
        a->xs[0] = (int64_t)mlxn_dtype_size(x->dtype);
        a->ys[0] = (int64_t)mlxn_dtype_size(y->dtype);
        m = 1;
    }
    a->ndim = m;
    return MLXN_STATUS_OK;
}

static mlxn_status copy_issue(mlxn_stream *s, const char *fn, const mlxn_tensor *x, const char *x_name,
                              const mlxn_tensor *y)
{
    mlxn_op op = {.kind = MLXN_OP_copy};
    bool empty;
    MLXN_TRY(copy_plan(s, fn, x, x_name, y, &op.u.copy, &empty));
    if (empty || same_view(x, y))
        return MLXN_STATUS_OK;
    return mlxn_stream_issue(s, &op);
}

mlxn_status mlxn_copy(mlxn_stream *s, const mlxn_tensor *x, const mlxn_tensor *y)
{
    static const char *fn = "mlxn_copy";
    MLXN_TRY(check_stream(s, fn));
    return copy_issue(s, fn, x, "x", y);
}

mlxn_status mlxn_permute(mlxn_stream *s, const mlxn_tensor *x, const int *perm, const mlxn_tensor *y)
{
    static const char *fn = "mlxn_permute";
    MLXN_TRY(check_stream(s, fn));
    MLXN_TRY(mlxn_tensor_check(x, fn, "x"));
    if (!perm)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "perm is NULL");
    bool seen[MLXN_MAX_DIMS] = {false};
    mlxn_tensor xp = *x;
    for (int i = 0; i < x->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= x->ndim || seen[perm[i]])
            return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                              "perm[%d] is %d: expected a permutation of 0..%d (x has %d dims)", i, perm[i],
                              x->ndim - 1, x->ndim);
        seen[perm[i]] = true;
        xp.shape[i] = x->shape[perm[i]];
        xp.stride[i] = x->stride[perm[i]];
    }
    if (y && y->ndim != x->ndim)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "y has %d dims, x has %d", y->ndim, x->ndim);
    return copy_issue(s, fn, &xp, "x permuted", y);
}

mlxn_status mlxn_concat(mlxn_stream *s, const mlxn_tensor *const *xs, int n, int dim, const mlxn_tensor *y)
{
    static const char *fn = "mlxn_concat";
    MLXN_TRY(check_stream(s, fn));
    if (!xs || n < 1)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "%s: expected an array of n >= 1 tensors",
                          xs ? "n < 1" : "xs is NULL");
    if (!y)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "y is NULL");
    MLXN_TRY(mlxn_tensor_check(y, fn, "y"));
    if (dim < 0 || dim >= y->ndim)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "dim is %d, y has %d dims", dim, y->ndim);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        const mlxn_tensor *x = xs[i];
        if (!x)
            return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "xs[%d] is NULL", i);
        MLXN_TRY(mlxn_tensor_check(x, fn, "an input"));
        bool fits = x->ndim == y->ndim;
        for (int d = 0; fits && d < y->ndim; d++)
            fits = d == dim || x->shape[d] == y->shape[d];
        if (!fits) {
            char got[96], want[96];
            shape_str(x, got, sizeof got);
            shape_str(y, want, sizeof want);
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "xs[%d] has shape %s, expected y's shape %s but along dim %d",
                              i, got, want, dim);
        }
        if (x->shape[dim] > y->shape[dim] - total)
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn,
                              "the inputs' sizes along dim %d add up to more than y's %lld (at xs[%d])", dim,
                              (long long)y->shape[dim], i);
        total += x->shape[dim];
    }
    if (total != y->shape[dim])
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "the inputs' sizes along dim %d add up to %lld, y has %lld", dim,
                          (long long)total, (long long)y->shape[dim]);
    /* every part is checked before the first is issued */
    for (int pass = 0; pass < 2; pass++) {
        int64_t at = 0;
        for (int i = 0; i < n; i++) {
            mlxn_tensor part;
            MLXN_TRY(mlxn_tensor_slice(y, dim, at, xs[i]->shape[dim], &part));
            at += xs[i]->shape[dim];
            char name[32];
            snprintf(name, sizeof name, "xs[%d]", i);
            mlxn_op op = {.kind = MLXN_OP_copy};
            bool empty;
            MLXN_TRY(copy_plan(s, fn, xs[i], name, &part, &op.u.copy, &empty));
            if (pass == 1 && !empty)
                MLXN_TRY(mlxn_stream_issue(s, &op));
        }
    }
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_l2_norm(mlxn_stream *s, const mlxn_tensor *x, float eps, const mlxn_tensor *y)
{
    static const char *fn = "mlxn_l2_norm";
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_l2_norm};
    mlxn_l2_norm_args *a = &op.u.l2_norm;
    MLXN_TRY(operand_rows(s, x, fn, "x", &a->x, &a->n_rows, &a->n));
    if (!float_dtype(x->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "x is %s, expected f32, f16 or bf16", mlxn_dtype_name(x->dtype));
    MLXN_TRY(like_x(s, x, y, fn, "y", &a->y));
    if (!(eps >= 0.0f) || isinf(eps))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "eps is %g, expected a finite value >= 0", (double)eps);
    a->dtype = (int)x->dtype;
    a->eps = eps;
    if (a->n_rows == 0 || a->n == 0)
        return MLXN_STATUS_OK;
    return mlxn_stream_issue(s, &op);
}

mlxn_status mlxn_cumsum(mlxn_stream *s, const mlxn_tensor *x, const mlxn_tensor *y)
{
    static const char *fn = "mlxn_cumsum";
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_cumsum};
    mlxn_cumsum_args *a = &op.u.cumsum;
    MLXN_TRY(operand_rows(s, x, fn, "x", &a->x, &a->n_rows, &a->n));
    if (x->dtype != MLXN_DTYPE_F32 && x->dtype != MLXN_DTYPE_I32)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "x is %s, expected f32 or i32", mlxn_dtype_name(x->dtype));
    MLXN_TRY(like_x(s, x, y, fn, "y", &a->y));
    a->dtype = (int)x->dtype;
    if (a->n_rows == 0 || a->n == 0)
        return MLXN_STATUS_OK;
    return mlxn_stream_issue(s, &op);
}

/* ---------------------------------------------------------------- expert-routed matmul (MoE) */

/* ids: i32 [T, k] with k 1..16 */
static mlxn_status moe_ids(mlxn_stream *s, const mlxn_tensor *ids, const char *fn, mlxn_rows *rows, int64_t *T,
                           int64_t *k)
{
    if (!ids)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "ids is NULL");
    MLXN_TRY(operand_rows(s, ids, fn, "ids", rows, T, k));
    if (ids->dtype != MLXN_DTYPE_I32)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "ids are %s, expected i32", mlxn_dtype_name(ids->dtype));
    if (ids->ndim != 2) {
        char sh[96];
        shape_str(ids, sh, sizeof sh);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "ids have shape %s, expected [T, k]", sh);
    }
    if (*k < 1 || *k > 16)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "ids have k = %lld slots per token, expected 1 to 16",
                          (long long)*k);
    if (*T * *k > INT32_MAX)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "%lld (token, slot) pairs: pair indices past i32",
                          (long long)(*T * *k));
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_moe_route_map(mlxn_stream *s, const mlxn_tensor *ids, int n_experts, const mlxn_tensor *offsets,
                               const mlxn_tensor *rows)
{
    static const char *fn = "mlxn_moe_route_map";
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_moe_route_map};
    mlxn_moe_route_map_args *a = &op.u.moe_route_map;
    MLXN_TRY(moe_ids(s, ids, fn, &a->ids, &a->n_tokens, &a->k));
    if (n_experts < 1 || n_experts == INT32_MAX)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "n_experts is %d, expected 1 to 2^31 - 2", n_experts);
    MLXN_TRY(i32_vector(s, offsets, (int64_t)n_experts + 1, fn, "offsets", "", &a->offsets));
    MLXN_TRY(i32_vector(s, rows, a->n_tokens * a->k, fn, "rows", "", &a->rows));
    a->n_experts = n_experts;
    return mlxn_stream_issue(s, &op);
}

static mlxn_status qmatmul_id_issue(mlxn_stream *s, const char *fn, const char *w_name, const mlxn_tensor *x,
                                    const mlxn_tensor *w, const mlxn_tensor *w_up, const mlxn_tensor *ids,
                                    const mlxn_tensor *y)
{
    MLXN_TRY(check_stream(s, fn));
    mlxn_op op = {.kind = MLXN_OP_qmatmul_id};
    mlxn_qmatmul_id_args *a = &op.u.qmatmul_id;
    if (!x)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "x is NULL");
    if (!w)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "%s is NULL", w_name);
    if (!y)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "y is NULL");
    MLXN_TRY(moe_ids(s, ids, fn, &a->ids, &a->T, &a->k));
    int64_t n_rows, wk, yn; /* the row counts follow from the shapes checked below */
    mlxn_rows wrows;
    MLXN_TRY(operand_rows(s, x, fn, "x", &a->x, &n_rows, &a->K));
    MLXN_TRY(operand_rows(s, w, fn, w_name, &wrows, &n_rows, &wk));
    MLXN_TRY(operand_rows(s, y, fn, "y", &a->y, &n_rows, &yn));
    if (!float_dtype(x->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "x is %s, expected f32, f16 or bf16", mlxn_dtype_name(x->dtype));
    if (!ggml_block_dtype(w->dtype) && !float_dtype(w->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn,
                          "%s is %s, expected a GGML block format (q4_0 .. q8_0, q2_K .. q6_K, iq4_nl, "
                          "iq4_xs) or f32, f16, bf16",
                          w_name, mlxn_dtype_name(w->dtype));
    MLXN_TRY(check_weight_align(w, fn, w_name));
    if (y->dtype != MLXN_DTYPE_F32)
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "y is %s, expected f32", mlxn_dtype_name(y->dtype));
    if (w->ndim != 3) {
        char sh[96];
        shape_str(w, sh, sizeof sh);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "%s has shape %s, expected 3 dims [E, N, K]", w_name, sh);
    }
    a->E = w->shape[0];
    a->N = w->shape[1];
    const bool per_slot = x->ndim == 3 && x->shape[0] == a->T && x->shape[1] == a->k;
    if (!per_slot && !(x->ndim == 2 && x->shape[0] == a->T)) {
        char sh[96];
        shape_str(x, sh, sizeof sh);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "x has shape %s, expected [T, K] = [%lld, K] or [T, k, K] = "
                          "[%lld, %lld, K] (ids are [%lld, %lld])", sh, (long long)a->T, (long long)a->T,
                          (long long)a->k, (long long)a->T, (long long)a->k);
    }
    if (wk != a->K)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "%s has rows of %lld, x has rows of %lld", w_name,
                          (long long)wk, (long long)a->K);
    const int64_t be = mlxn_dtype_block_elems(w->dtype);
    if (a->K % be)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "K = %lld is not a multiple of %s's block of %lld",
                          (long long)a->K, mlxn_dtype_name(w->dtype), (long long)be);
    if (y->ndim != 3 || y->shape[0] != a->T || y->shape[1] != a->k || yn != a->N) {
        char sh[96];
        shape_str(y, sh, sizeof sh);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "y has shape %s, expected [T, k, N] = [%lld, %lld, %lld]", sh,
                          (long long)a->T, (long long)a->k, (long long)a->N);
    }
    if (a->E > INT32_MAX - 1 || a->N > INT32_MAX || a->K > INT32_MAX)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "%s is [%lld, %lld, %lld], expected each dim below 2^31",
                          w_name, (long long)a->E, (long long)a->N, (long long)a->K);
    a->w_dtype = (int)w->dtype;
    a->x_dtype = (int)x->dtype;
    a->x_per_slot = per_slot;
    /* a dim of size 1 has stride 0 in rows: the packed sizes stand in */
    const int64_t row_bytes = a->K / be * mlxn_dtype_block_bytes(w->dtype);
    a->w = (const uint8_t *)wrows.base;
    a->w_stride = a->N > 1 ? wrows.s2 : row_bytes;
    a->w_expert_stride = a->E > 1 ? wrows.s1 : a->N * a->w_stride;
    if (w_up) {
        mlxn_rows urows;
        MLXN_TRY(like_operand(s, w, w_name, w_up, fn, "w_up", &urows));
        MLXN_TRY(check_weight_align(w_up, fn, "w_up"));
        a->w_up = (const uint8_t *)urows.base;
        a->up_stride = a->N > 1 ? urows.s2 : row_bytes;
        a->up_expert_stride = a->E > 1 ? urows.s1 : a->N * a->up_stride;
    }
    if (a->T == 0 || a->N == 0)
        return MLXN_STATUS_OK;
    if (a->K == 0)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "K is 0");
    a->ids_early = !mlxn_stream_last_writes(s, &a->ids, a->T, a->k * 4);
    return mlxn_stream_issue(s, &op);
}

mlxn_status mlxn_qmatmul_id(mlxn_stream *s, const mlxn_tensor *x, const mlxn_tensor *w, const mlxn_tensor *ids,
                            const mlxn_tensor *y)
{
    return qmatmul_id_issue(s, "mlxn_qmatmul_id", "w", x, w, NULL, ids, y);
}

mlxn_status mlxn_qmatmul_id_swiglu(mlxn_stream *s, const mlxn_tensor *x, const mlxn_tensor *w_gate,
                                   const mlxn_tensor *w_up, const mlxn_tensor *ids, const mlxn_tensor *y)
{
    if (!w_up)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_qmatmul_id_swiglu", "w_up is NULL");
    return qmatmul_id_issue(s, "mlxn_qmatmul_id_swiglu", "w_gate", x, w_gate, w_up, ids, y);
}
