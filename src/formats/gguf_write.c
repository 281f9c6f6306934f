/* GGUF writer (version 3): metadata is serialized as it is added; tensors are laid out at
 * write time, each at the next multiple of the alignment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "mlxn_gguf.h"

typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes;

typedef struct wtensor {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[MLXN_MAX_DIMS];
    const void *data;
    uint64_t size, offset;
} wtensor;

struct mlxn_gguf_writer {
    bytes kv;
    uint64_t n_kv;
    char **keys;
    wtensor *tensors;
    int64_t n_tensors, cap_tensors;
    size_t alignment;
    bool oom;
};

static void put(mlxn_gguf_writer *w, const void *src, size_t n)
{
    bytes *b = &w->kv;
    if (w->oom || n == 0) /* n == 0 may come with src == NULL (empty array) */
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            w->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_u32(mlxn_gguf_writer *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(mlxn_gguf_writer *w, uint64_t v) { put(w, &v, 8); }

static void put_str(mlxn_gguf_writer *w, const char *s, size_t len)
{
    put_u64(w, len);
    put(w, s, len);
}

static size_t elem_size(mlxn_gguf_type t)
{
    switch (t) {
    case MLXN_GGUF_TYPE_UINT8: case MLXN_GGUF_TYPE_INT8: case MLXN_GGUF_TYPE_BOOL: return 1;
    case MLXN_GGUF_TYPE_UINT16: case MLXN_GGUF_TYPE_INT16: return 2;
    case MLXN_GGUF_TYPE_UINT32: case MLXN_GGUF_TYPE_INT32: case MLXN_GGUF_TYPE_FLOAT32: return 4;
    case MLXN_GGUF_TYPE_UINT64: case MLXN_GGUF_TYPE_INT64: case MLXN_GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

mlxn_status mlxn_gguf_writer_create(mlxn_gguf_writer **out)
{
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_gguf_writer_create", "out is NULL");
    *out = calloc(1, sizeof **out);
    if (!*out)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_gguf_writer_create", "no memory");
    (*out)->alignment = 32;
    return MLXN_STATUS_OK;
}

void mlxn_gguf_writer_free(mlxn_gguf_writer *w)
{
    if (!w)
        return;
    for (uint64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    free(w->keys);
    for (int64_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->tensors);
    free(w->kv.p);
    free(w);
}

/* Writes the key and the type of a new entry; rejects duplicates. */
static mlxn_status begin_kv(mlxn_gguf_writer *w, const char *key, mlxn_gguf_type type,
                            const char *fn)
{
    if (!w || !key || !*key)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "writer or key is NULL or empty");
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0)
            return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "key '%s' was already added", key);
    char **keys = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *keys);
    char *copy = keys ? strdup(key) : NULL;
    if (!copy) {
        if (keys)
            w->keys = keys;
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
    }
    w->keys = keys;
    w->keys[w->n_kv++] = copy;
    put_str(w, key, strlen(key));
    put_u32(w, (uint32_t)type);
    return MLXN_STATUS_OK;
}

static mlxn_status end_kv(mlxn_gguf_writer *w, const char *fn)
{
    return w->oom ? mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory") : MLXN_STATUS_OK;
}

mlxn_status mlxn_gguf_writer_set_scalar(mlxn_gguf_writer *w, const char *key, mlxn_gguf_type type,
                                        const void *value)
{
    static const char *fn = "mlxn_gguf_writer_set_scalar";
    size_t es = elem_size(type);
    if (!es || !value)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "type %s is not a scalar (or value is NULL)",
                          mlxn_gguf_type_name(type));
    if (key && strcmp(key, "general.alignment") == 0) {
        uint32_t a = 0;
        if (type == MLXN_GGUF_TYPE_UINT32)
            memcpy(&a, value, 4);
        if (a == 0 || (a & (a - 1)))
            return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                              "general.alignment must be a u32 power of two");
        w->alignment = a;
    }
    MLXN_TRY(begin_kv(w, key, type, fn));
    put(w, value, es);
    return end_kv(w, fn);
}

mlxn_status mlxn_gguf_writer_set_string(mlxn_gguf_writer *w, const char *key, const char *value,
                                        size_t len)
{
    static const char *fn = "mlxn_gguf_writer_set_string";
    if (!value && len)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "value is NULL");
    MLXN_TRY(begin_kv(w, key, MLXN_GGUF_TYPE_STRING, fn));
    put_str(w, value, len);
    return end_kv(w, fn);
}

mlxn_status mlxn_gguf_writer_set_array(mlxn_gguf_writer *w, const char *key,
                                       mlxn_gguf_type elem_type, const void *data, uint64_t count)
{
    static const char *fn = "mlxn_gguf_writer_set_array";
    size_t es = elem_size(elem_type);
    if ((!es && elem_type != MLXN_GGUF_TYPE_STRING) || (!data && count))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                          "element type %s is not a scalar or string (or data is NULL)",
                          mlxn_gguf_type_name(elem_type));
    MLXN_TRY(begin_kv(w, key, MLXN_GGUF_TYPE_ARRAY, fn));
    put_u32(w, (uint32_t)elem_type);
    put_u64(w, count);
    if (es) {
        put(w, data, (size_t)count * es);
    } else {
        const char *const *strs = data;
        for (uint64_t i = 0; i < count; i++)
            put_str(w, strs[i] ? strs[i] : "", strs[i] ? strlen(strs[i]) : 0);
    }
    return end_kv(w, fn);
}

/* Serializes a value read from a file (without its key and type). */
static void put_value(mlxn_gguf_writer *w, const mlxn_gguf_value *v)
{
    mlxn_gguf_type t = mlxn_gguf_value_type(v);
    if (t == MLXN_GGUF_TYPE_STRING) {
        const char *s;
        size_t len;
        mlxn_gguf_value_string(v, &s, &len);
        put_str(w, s, len);
    } else if (t == MLXN_GGUF_TYPE_ARRAY) {
        mlxn_gguf_type et;
        uint64_t count;
        mlxn_gguf_array_info(v, &et, &count);
        put_u32(w, (uint32_t)et);
        put_u64(w, count);
        if (elem_size(et))
            put(w, mlxn_gguf_array_data(v), (size_t)count * elem_size(et));
        else
            for (uint64_t i = 0; i < count; i++)
                put_value(w, mlxn_gguf_array_at(v, i));
    } else {
        /* scalars: re-encode from the decoded value */
        uint64_t u = 0;
        int64_t i = 0;
        double f = 0;
        bool b = false;
        switch (t) {
        case MLXN_GGUF_TYPE_UINT8: mlxn_gguf_value_uint(v, &u); put(w, &(uint8_t){(uint8_t)u}, 1); break;
        case MLXN_GGUF_TYPE_UINT16: mlxn_gguf_value_uint(v, &u); put(w, &(uint16_t){(uint16_t)u}, 2); break;
        case MLXN_GGUF_TYPE_UINT32: mlxn_gguf_value_uint(v, &u); put(w, &(uint32_t){(uint32_t)u}, 4); break;
        case MLXN_GGUF_TYPE_UINT64: mlxn_gguf_value_uint(v, &u); put(w, &u, 8); break;
        case MLXN_GGUF_TYPE_INT8: mlxn_gguf_value_int(v, &i); put(w, &(int8_t){(int8_t)i}, 1); break;
        case MLXN_GGUF_TYPE_INT16: mlxn_gguf_value_int(v, &i); put(w, &(int16_t){(int16_t)i}, 2); break;
        case MLXN_GGUF_TYPE_INT32: mlxn_gguf_value_int(v, &i); put(w, &(int32_t){(int32_t)i}, 4); break;
        case MLXN_GGUF_TYPE_INT64: mlxn_gguf_value_int(v, &i); put(w, &i, 8); break;
        case MLXN_GGUF_TYPE_FLOAT32: mlxn_gguf_value_float(v, &f); put(w, &(float){(float)f}, 4); break;
        case MLXN_GGUF_TYPE_FLOAT64: mlxn_gguf_value_float(v, &f); put(w, &f, 8); break;
        case MLXN_GGUF_TYPE_BOOL: mlxn_gguf_value_bool(v, &b); put(w, &(uint8_t){b ? 1 : 0}, 1); break;
        default: break;
        }
    }
}

mlxn_status mlxn_gguf_writer_set_value(mlxn_gguf_writer *w, const char *key,
                                       const mlxn_gguf_value *value)
{
    static const char *fn = "mlxn_gguf_writer_set_value";
    if (!value || mlxn_gguf_value_type(value) >= MLXN_GGUF_TYPE_COUNT)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "value is NULL");
    if (key && strcmp(key, "general.alignment") == 0) {
        uint64_t a = 0;
        if (mlxn_gguf_value_type(value) != MLXN_GGUF_TYPE_UINT32 ||
            mlxn_gguf_value_uint(value, &a) != MLXN_STATUS_OK || a == 0 || (a & (a - 1)))
            return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                              "general.alignment must be a u32 power of two");
        w->alignment = (size_t)a;
    }
    MLXN_TRY(begin_kv(w, key, mlxn_gguf_value_type(value), fn));
    put_value(w, value);
    return end_kv(w, fn);
}

mlxn_status mlxn_gguf_writer_add_tensor(mlxn_gguf_writer *w, const char *name, uint32_t ggml_type,
                                        int n_dims, const int64_t *ne, const void *data)
{
    static const char *fn = "mlxn_gguf_writer_add_tensor";
    mlxn_ggml_type_info info;
    if (!w || !name || !ne || n_dims < 1 || n_dims > MLXN_MAX_DIMS)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "bad arguments (n_dims %d)", n_dims);
    if (!mlxn_ggml_type_info_get(ggml_type, &info))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "unknown GGML type %u", ggml_type);
    for (int64_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "tensor '%s' was already added", name);
    uint64_t nel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 0 || (ne[d] && nel > (uint64_t)INT64_MAX / (uint64_t)ne[d]))
            return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "tensor '%s': bad or overflowing dims", name);
        nel *= (uint64_t)ne[d];
    }
    if (ne[0] % info.block_elems)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn,
                          "tensor '%s': row length %lld is not a multiple of the %s block (%lld)",
                          name, (long long)ne[0], info.name, (long long)info.block_elems);
    if (!data && nel)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "tensor '%s' has no data", name);
    if (w->n_tensors == w->cap_tensors) {
        int64_t cap = w->cap_tensors ? w->cap_tensors * 2 : 16;
        wtensor *p = realloc(w->tensors, (size_t)cap * sizeof *p);
        if (!p)
            return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
        w->tensors = p;
        w->cap_tensors = cap;
    }
    wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
    t->type = ggml_type;
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++)
        t->ne[d] = ne[d];
    t->data = data;
    t->size = nel / (uint64_t)info.block_elems * (uint64_t)info.block_bytes;
    w->n_tensors++;
    return MLXN_STATUS_OK;
}

static bool write_all(FILE *f, const void *p, size_t n)
{
    return n == 0 || fwrite(p, 1, n, f) == n;
}

static bool write_pad(FILE *f, size_t pos, size_t align)
{
    static const uint8_t zeros[256];
    size_t pad = (align - pos % align) % align;
    while (pad) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        if (!write_all(f, zeros, k))
            return false;
        pad -= k;
    }
    return true;
}

mlxn_status mlxn_gguf_writer_write(mlxn_gguf_writer *w, const char *path)
{
    static const char *fn = "mlxn_gguf_writer_write";
    if (!w || !path)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "writer or path is NULL");
    if (w->oom)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "an earlier call ran out of memory");
    /* Tensor infos, serialized after the metadata in the same buffer, then removed again. */
    size_t kv_len = w->kv.len;
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_tensors; i++) {
        wtensor *t = &w->tensors[i];
        t->offset = off;
        put_str(w, t->name, strlen(t->name));
        put_u32(w, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++)
            put_u64(w, (uint64_t)t->ne[d]);
        put_u32(w, t->type);
        put_u64(w, t->offset);
        off += t->size;
        off += (w->alignment - off % w->alignment) % w->alignment;
    }
    if (w->oom) {
        w->kv.len = kv_len;
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        w->kv.len = kv_len;
        return mlxn_error(MLXN_STATUS_ERR_IO, fn, "cannot create %s", path);
    }
    uint32_t version = 3;
    uint64_t nt = (uint64_t)w->n_tensors;
    bool ok = write_all(f, "GGUF", 4) && write_all(f, &version, 4) && write_all(f, &nt, 8) &&
              write_all(f, &w->n_kv, 8) && write_all(f, w->kv.p, w->kv.len);
    size_t pos = 24 + w->kv.len;
    ok = ok && write_pad(f, pos, w->alignment);
    for (int64_t i = 0; ok && i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        ok = write_all(f, t->data, (size_t)t->size) && write_pad(f, (size_t)t->size, w->alignment);
    }
    w->kv.len = kv_len;
    if (fclose(f) != 0)
        ok = false;
    if (!ok)
        return mlxn_error(MLXN_STATUS_ERR_IO, fn, "writing %s failed", path);
    return MLXN_STATUS_OK;
}
