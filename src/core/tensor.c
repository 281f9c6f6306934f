/* Tensor views: construction, validation, and flattening into rows. */
#include <string.h>

#include "internal.h"

static bool mul_ok(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* Bytes of the innermost dimension's elements: element size x n, or blocks x block bytes. */
static bool inner_bytes(mlxn_dtype dtype, int64_t n, int64_t *out)
{
    int64_t be = mlxn_dtype_block_elems(dtype);
    return be > 0 && n % be == 0 && mul_ok(n / be, mlxn_dtype_block_bytes(dtype), out);
}

mlxn_tensor mlxn_tensor_make(mlxn_buffer *buffer, size_t offset, mlxn_dtype dtype, int ndim,
                             const int64_t *shape)
{
    mlxn_tensor t = {0};
    t.buffer = buffer;
    t.offset = offset;
    t.dtype = dtype;
    t.ndim = ndim;
    if (ndim < 1 || ndim > MLXN_MAX_DIMS || !shape)
        return t; /* mlxn_tensor_validate reports it */
    for (int i = 0; i < ndim; i++)
        t.shape[i] = shape[i];
    int64_t be = mlxn_dtype_block_elems(dtype);
    int64_t row = 0;
    if (!inner_bytes(dtype, shape[ndim - 1], &row))
        row = 0;
    t.stride[ndim - 1] = be > 1 ? mlxn_dtype_block_bytes(dtype) : (int64_t)mlxn_dtype_size(dtype);
    int64_t s = row;
    for (int i = ndim - 2; i >= 0; i--) {
        t.stride[i] = s;
        if (!mul_ok(s, shape[i], &s))
            s = 0;
    }
    return t;
}

int64_t mlxn_tensor_numel(const mlxn_tensor *t)
{
    if (!t || t->ndim < 1 || t->ndim > MLXN_MAX_DIMS)
        return 0;
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0 || !mul_ok(n, t->shape[i], &n))
            return 0;
    return n;
}

bool mlxn_tensor_is_contiguous(const mlxn_tensor *t)
{
    if (!t || t->ndim < 1 || t->ndim > MLXN_MAX_DIMS)
        return false;
    mlxn_tensor c = mlxn_tensor_make(t->buffer, t->offset, t->dtype, t->ndim, t->shape);
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != 1 && t->stride[i] != c.stride[i])
            return false;
    return true;
}

/* Span without validation; false on overflow. */
static bool span(const mlxn_tensor *t, int64_t *out)
{
    *out = 0;
    int64_t last = 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] == 0)
            return true;
    if (!inner_bytes(t->dtype, t->shape[t->ndim - 1], &last))
        return false;
    int64_t total = last;
    for (int i = 0; i < t->ndim - 1; i++) {
        int64_t step;
        if (!mul_ok(t->shape[i] - 1, t->stride[i], &step) || __builtin_add_overflow(total, step, &total))
            return false;
    }
    /* The innermost dim is contiguous for quantized dtypes; for plain dtypes its stride may
     * differ from the element size. */
    if (!mlxn_dtype_is_quantized(t->dtype)) {
        int64_t es = (int64_t)mlxn_dtype_size(t->dtype), step;
        int64_t n = t->shape[t->ndim - 1];
        if (t->stride[t->ndim - 1] != es) {
            if (!mul_ok(n - 1, t->stride[t->ndim - 1], &step) ||
                __builtin_add_overflow(total - last + es, step, &total))
                return false;
        }
    }
    *out = total;
    return true;
}

size_t mlxn_tensor_span_bytes(const mlxn_tensor *t)
{
    int64_t s = 0;
    if (!t || t->ndim < 1 || t->ndim > MLXN_MAX_DIMS || !span(t, &s))
        return 0;
    return (size_t)s;
}

mlxn_status mlxn_tensor_check_align(const mlxn_tensor *t, size_t al, const char *func, const char *what)
{
    const size_t off = (size_t)((uintptr_t)(t->buffer->ptr + t->offset) % al);
    if (off)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, func,
                          "%s: a %s view must start on a multiple of %zu bytes, found buffer offset %zu "
                          "(address %% %zu = %zu)",
                          what, mlxn_dtype_name(t->dtype), al, t->offset, al, off);
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] > 1 && t->stride[i] % (int64_t)al)
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, func,
                              "%s: stride %lld of dim %d is not a multiple of %zu bytes (a %s view's alignment)",
                              what, (long long)t->stride[i], i, al, mlxn_dtype_name(t->dtype));
    return MLXN_STATUS_OK;
}

static mlxn_status validate(const mlxn_tensor *t, const char *func, const char *what)
{
    if (!t)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, func, "%s is NULL", what);
    if (!t->buffer)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, func, "%s has no buffer", what);
    if (!mlxn_dtype_valid((int)t->dtype))
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, func, "%s has invalid dtype %d", what,
                          (int)t->dtype);
    if (t->ndim < 1 || t->ndim > MLXN_MAX_DIMS)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, func, "%s has %d dims, expected 1..%d", what,
                          t->ndim, MLXN_MAX_DIMS);
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0)
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, func, "%s has negative size %lld in dim %d",
                              what, (long long)t->shape[i], i);
        if (t->stride[i] < 0)
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, func,
                              "%s has negative stride %lld in dim %d", what,
                              (long long)t->stride[i], i);
    }
    int64_t be = mlxn_dtype_block_elems(t->dtype);
    int64_t n = t->shape[t->ndim - 1];
    if (be > 1) {
        if (n % be != 0)
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, func,
                              "%s: innermost size %lld is not a multiple of the %s block (%lld)",
                              what, (long long)n, mlxn_dtype_name(t->dtype), (long long)be);
        if (t->stride[t->ndim - 1] != mlxn_dtype_block_bytes(t->dtype))
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, func,
                              "%s: innermost stride of a %s view must be its block size %lld, "
                              "found %lld",
                              what, mlxn_dtype_name(t->dtype),
                              (long long)mlxn_dtype_block_bytes(t->dtype),
                              (long long)t->stride[t->ndim - 1]);
    }
    int64_t s;
    if (!span(t, &s))
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, func, "%s: size overflows", what);
    if (t->offset > t->buffer->size || (size_t)s > t->buffer->size - t->offset)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, func,
                          "%s: view of %lld bytes at offset %zu extends past its buffer of %zu "
                          "bytes",
                          what, (long long)s, t->offset, t->buffer->size);
    /* The kernels load plain elements at their natural alignment; a view off it would fault on
     * the GPU, which poisons the context, or be undefined on the CPU. */
    return mlxn_tensor_check_align(t, mlxn_dtype_align(t->dtype), func, what);
}

mlxn_status mlxn_tensor_validate(const mlxn_tensor *t)
{
    return validate(t, "mlxn_tensor_validate", "tensor");
}

mlxn_status mlxn_tensor_check(const mlxn_tensor *t, const char *func, const char *what)
{
    return validate(t, func, what);
}

mlxn_status mlxn_tensor_slice(const mlxn_tensor *t, int dim, int64_t start, int64_t len, mlxn_tensor *out)
{
    static const char *fn = "mlxn_tensor_slice";
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    memset(out, 0, sizeof *out);
    MLXN_TRY(validate(t, fn, "t"));
    if (dim < 0 || dim >= t->ndim)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "dim is %d, t has %d dims", dim, t->ndim);
    const int64_t size = t->shape[dim];
    if (start < 0 || len < 0 || start > size || len > size - start)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn,
                          "elements [%lld, %lld + %lld) of dim %d: outside its %lld elements", (long long)start,
                          (long long)start, (long long)len, dim, (long long)size);
    int64_t skip = start * t->stride[dim];
    if (dim == t->ndim - 1 && mlxn_dtype_is_quantized(t->dtype)) {
        const int64_t be = mlxn_dtype_block_elems(t->dtype);
        if (start % be || len % be)
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn,
                              "start %lld and len %lld of the innermost dim of a %s view: expected multiples of its "
                              "block (%lld)",
                              (long long)start, (long long)len, mlxn_dtype_name(t->dtype), (long long)be);
        skip = start / be * t->stride[dim];
    }
    *out = *t;
    out->offset += (size_t)skip;
    out->shape[dim] = len;
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_tensor_rows(const mlxn_tensor *t, const char *func, const char *what,
                             mlxn_rows *out, int64_t *n_rows, int64_t *row_len)
{
    MLXN_TRY(validate(t, func, what));
    int nd = t->ndim;
    if (!mlxn_dtype_is_quantized(t->dtype) &&
        t->stride[nd - 1] != (int64_t)mlxn_dtype_size(t->dtype) && t->shape[nd - 1] > 1)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, func,
                          "%s: the innermost dim must be contiguous (stride %zu), found stride "
                          "%lld",
                          what, mlxn_dtype_size(t->dtype), (long long)t->stride[nd - 1]);
    int64_t d[3] = {1, 1, 1}, s[3] = {0, 0, 0};
    for (int i = 0; i < nd - 1; i++) {
        d[3 - (nd - 1) + i] = t->shape[i];
        s[3 - (nd - 1) + i] = t->shape[i] == 1 ? 0 : t->stride[i];
    }
    out->base = t->buffer->ptr + t->offset;
    out->d1 = d[1];
    out->d2 = d[2];
    out->s0 = s[0];
    out->s1 = s[1];
    out->s2 = s[2];
    *n_rows = d[0] * d[1] * d[2];
    *row_len = t->shape[nd - 1];
    return MLXN_STATUS_OK;
}
