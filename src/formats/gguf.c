/* GGUF reader: maps the file, validates everything at open, then serves metadata and tensors.
 *
 * File layout (little-endian):
 *   "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x      { string key | u32 type | value }
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to `alignment` | tensor data (each tensor at data_offset + offset)
 * string = u64 length + bytes (no NUL); array value = u32 elem_type | u64 count | elements.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"
#include "formats/name_index.h"
#include "mlxn_gguf.h"

#define MAX_NESTING 8

struct mlxn_gguf_value {
    mlxn_gguf_type type;
    union {
        uint64_t u;
        int64_t i;
        double f;
        bool b;
    } scalar;
    /* STRING */
    const char *str;
    size_t len;
    /* ARRAY */
    mlxn_gguf_type elem_type;
    uint64_t count;
    const uint8_t *raw;     /* numeric elements, in the mapping */
    mlxn_gguf_value *items; /* STRING and ARRAY elements */
};

typedef struct kv {
    const char *key;
    mlxn_gguf_value value;
} kv;

/* Owned allocations made while parsing, freed together. */
typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    char data[];
} arena_block;

struct mlxn_gguf {
    const uint8_t *data;
    size_t size;
    bool mapped;
    uint32_t version;
    size_t alignment, data_offset, data_size;
    kv *kvs;
    int64_t n_kv;
    mlxn_gguf_tensor *tensors;
    int64_t n_tensors;
    name_index names; /* the tensors by name */
    arena_block *arena;
};

/* ---------------------------------------------------------------- arena */

static void *arena_alloc(mlxn_gguf *g, size_t bytes)
{
    bytes = (bytes + 15) & ~(size_t)15;
    arena_block *b = g->arena;
    if (!b || b->cap - b->used < bytes) {
        size_t cap = bytes > ((size_t)1 << 20) ? bytes : ((size_t)1 << 20);
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = g->arena;
        b->used = 0;
        b->cap = cap;
        g->arena = b;
    }
    void *p = b->data + b->used;
    b->used += bytes;
    return p;
}

/* ---------------------------------------------------------------- cursor */

typedef struct cursor {
    mlxn_gguf *g;
    size_t pos;
    mlxn_status st;
} cursor;

static bool fail(cursor *c, size_t at, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static bool fail(cursor *c, size_t at, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->st = mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, "mlxn_gguf_open", "%s (at byte %zu)", msg, at);
    return false;
}

static size_t remaining(const cursor *c)
{
    return c->g->size - c->pos;
}

static bool read_bytes(cursor *c, void *out, size_t n, const char *what)
{
    if (remaining(c) < n)
        return fail(c, c->pos, "file ends inside %s (%zu bytes needed, %zu left)", what, n,
                    remaining(c));
    memcpy(out, c->g->data + c->pos, n);
    c->pos += n;
    return true;
}

static bool read_u32(cursor *c, uint32_t *v, const char *what)
{
    return read_bytes(c, v, 4, what);
}

static bool read_u64(cursor *c, uint64_t *v, const char *what)
{
    return read_bytes(c, v, 8, what);
}

/* A string: validated length, copied NUL-terminated into the arena. */
static bool read_string(cursor *c, const char **out, size_t *len_out, const char *what)
{
    size_t at = c->pos;
    uint64_t len = 0;
    if (!read_u64(c, &len, what))
        return false;
    if (len > remaining(c))
        return fail(c, at, "%s has length %llu but only %zu bytes remain", what,
                    (unsigned long long)len, remaining(c));
    char *s = arena_alloc(c->g, (size_t)len + 1);
    if (!s) {
        c->st = mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_gguf_open", "no memory");
        return false;
    }
    memcpy(s, c->g->data + c->pos, (size_t)len);
    s[len] = 0;
    c->pos += (size_t)len;
    *out = s;
    if (len_out)
        *len_out = (size_t)len;
    return true;
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        size_t k;
        uint32_t cp;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            k = 1;
            cp = b & 0x1f;
        } else if ((b & 0xf0) == 0xe0) {
            k = 2;
            cp = b & 0x0f;
        } else if ((b & 0xf8) == 0xf0) {
            k = 3;
            cp = b & 0x07;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

/* ---------------------------------------------------------------- values */

static size_t scalar_size(mlxn_gguf_type t)
{
    switch (t) {
    case MLXN_GGUF_TYPE_UINT8:
    case MLXN_GGUF_TYPE_INT8:
    case MLXN_GGUF_TYPE_BOOL:
        return 1;
    case MLXN_GGUF_TYPE_UINT16:
    case MLXN_GGUF_TYPE_INT16:
        return 2;
    case MLXN_GGUF_TYPE_UINT32:
    case MLXN_GGUF_TYPE_INT32:
    case MLXN_GGUF_TYPE_FLOAT32:
        return 4;
    case MLXN_GGUF_TYPE_UINT64:
    case MLXN_GGUF_TYPE_INT64:
    case MLXN_GGUF_TYPE_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

/* Decodes a numeric scalar from raw little-endian bytes. */
static void decode_scalar(mlxn_gguf_value *v, mlxn_gguf_type t, const uint8_t *p)
{
    v->type = t;
    switch (t) {
    case MLXN_GGUF_TYPE_UINT8: v->scalar.u = p[0]; break;
    case MLXN_GGUF_TYPE_INT8: v->scalar.i = (int8_t)p[0]; break;
    case MLXN_GGUF_TYPE_BOOL: v->scalar.b = p[0] != 0; break;
    case MLXN_GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, p, 2); v->scalar.u = x; break; }
    case MLXN_GGUF_TYPE_INT16: { int16_t x; memcpy(&x, p, 2); v->scalar.i = x; break; }
    case MLXN_GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, p, 4); v->scalar.u = x; break; }
    case MLXN_GGUF_TYPE_INT32: { int32_t x; memcpy(&x, p, 4); v->scalar.i = x; break; }
    case MLXN_GGUF_TYPE_FLOAT32: { float x; memcpy(&x, p, 4); v->scalar.f = x; break; }
    case MLXN_GGUF_TYPE_UINT64: { uint64_t x; memcpy(&x, p, 8); v->scalar.u = x; break; }
    case MLXN_GGUF_TYPE_INT64: { int64_t x; memcpy(&x, p, 8); v->scalar.i = x; break; }
    case MLXN_GGUF_TYPE_FLOAT64: { double x; memcpy(&x, p, 8); v->scalar.f = x; break; }
    default: break;
    }
}

static bool read_value(cursor *c, mlxn_gguf_type t, mlxn_gguf_value *v, int depth,
                       const char *key)
{
    memset(v, 0, sizeof *v);
    v->type = t;
    size_t at = c->pos;
    size_t ss = scalar_size(t);
    if (ss) {
        if (remaining(c) < ss)
            return fail(c, at, "file ends inside the value of '%s'", key);
        decode_scalar(v, t, c->g->data + c->pos);
        c->pos += ss;
        return true;
    }
    if (t == MLXN_GGUF_TYPE_STRING)
        return read_string(c, &v->str, &v->len, "a string value");
    if (t != MLXN_GGUF_TYPE_ARRAY)
        return fail(c, at, "value of '%s' has unknown type %u", key, (unsigned)t);
    if (depth >= MAX_NESTING)
        return fail(c, at, "arrays in '%s' nest deeper than %d levels", key, MAX_NESTING);
    uint32_t et = 0;
    uint64_t count = 0;
    if (!read_u32(c, &et, "an array's element type") || !read_u64(c, &count, "an array's count"))
        return false;
    if (et >= MLXN_GGUF_TYPE_COUNT)
        return fail(c, at, "array '%s' has unknown element type %u", key, et);
    v->elem_type = (mlxn_gguf_type)et;
    v->count = count;
    size_t es = scalar_size((mlxn_gguf_type)et);
    /* smallest encoding of one element: a scalar, an empty string (8), an empty array (12) */
    size_t min_elem = es ? es : et == MLXN_GGUF_TYPE_STRING ? 8 : 12;
    if (count > remaining(c) / min_elem)
        return fail(c, at, "array '%s' claims %llu elements but only %zu bytes remain", key,
                    (unsigned long long)count, remaining(c));
    if (es) {
        v->raw = c->g->data + c->pos;
        c->pos += (size_t)count * es;
        return true;
    }
    v->items = arena_alloc(c->g, (size_t)count * sizeof *v->items + 1);
    if (!v->items) {
        c->st = mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_gguf_open", "no memory");
        return false;
    }
    for (uint64_t i = 0; i < count; i++)
        if (!read_value(c, (mlxn_gguf_type)et, &v->items[i], depth + 1, key))
            return false;
    return true;
}

/* ---------------------------------------------------------------- tensors */

static bool build_table(cursor *c)
{
    mlxn_gguf *g = c->g;
    if (!name_index_init(&g->names, g->n_tensors)) {
        c->st = mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_gguf_open", "no memory");
        return false;
    }
    for (int64_t t = 0; t < g->n_tensors; t++) {
        const int64_t earlier = name_index_add(&g->names, g->tensors[t].name, t);
        if (earlier >= 0)
            return fail(c, 0, "tensor name '%s' appears twice (tensors %lld and %lld)", g->tensors[t].name,
                        (long long)earlier, (long long)t);
    }
    return true;
}

static bool read_tensor_info(cursor *c, int64_t idx, mlxn_gguf_tensor *t)
{
    size_t at = c->pos;
    char what[64];
    snprintf(what, sizeof what, "the name of tensor %lld", (long long)idx);
    if (!read_string(c, &t->name, NULL, what))
        return false;
    uint32_t n_dims = 0;
    if (!read_u32(c, &n_dims, "a tensor's dimension count"))
        return false;
    if (n_dims < 1 || n_dims > MLXN_MAX_DIMS)
        return fail(c, at, "tensor '%s' has %u dimensions, expected 1..%d", t->name, n_dims,
                    MLXN_MAX_DIMS);
    t->n_dims = (int)n_dims;
    for (int d = 0; d < MLXN_MAX_DIMS; d++)
        t->ne[d] = 1;
    uint64_t nel = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t ne = 0;
        if (!read_u64(c, &ne, "a tensor dimension"))
            return false;
        if (ne > (uint64_t)INT64_MAX || (ne && nel > (uint64_t)INT64_MAX / ne))
            return fail(c, at, "tensor '%s': dimensions overflow (ne[%u] = %llu)", t->name, d,
                        (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
        nel *= ne;
    }
    if (!read_u32(c, &t->ggml_type, "a tensor's type") ||
        !read_u64(c, &t->offset, "a tensor's offset"))
        return false;
    if (!mlxn_ggml_type_info_get(t->ggml_type, &t->type))
        return fail(c, at, "tensor '%s' has unknown or removed GGML type %u", t->name,
                    t->ggml_type);
    if (t->ne[0] % t->type.block_elems)
        return fail(c, at, "tensor '%s': row length %lld is not a multiple of the %s block (%lld)",
                    t->name, (long long)t->ne[0], t->type.name, (long long)t->type.block_elems);
    uint64_t blocks = nel / (uint64_t)t->type.block_elems;
    if (blocks > UINT64_MAX / (uint64_t)t->type.block_bytes)
        return fail(c, at, "tensor '%s': byte size overflows", t->name);
    t->size = blocks * (uint64_t)t->type.block_bytes;
    return true;
}

/* ---------------------------------------------------------------- open */

static mlxn_status parse(mlxn_gguf *g)
{
    cursor c = {g, 0, MLXN_STATUS_OK};
    uint32_t magic = 0;
    uint64_t n_tensors = 0, n_kv = 0;
    if (!read_u32(&c, &magic, "the magic"))
        return c.st;
    if (memcmp(&magic, "GGUF", 4) != 0)
        return fail(&c, 0, "not a GGUF file (magic %02x %02x %02x %02x)", g->data[0], g->data[1],
                    g->data[2], g->data[3]),
               c.st;
    if (!read_u32(&c, &g->version, "the version"))
        return c.st;
    if (g->version != 2 && g->version != 3)
        return fail(&c, 4, "GGUF version %u is not supported (2 and 3 are)", g->version), c.st;
    if (!read_u64(&c, &n_tensors, "the tensor count") || !read_u64(&c, &n_kv, "the metadata count"))
        return c.st;
    /* each kv takes at least 13 bytes, each tensor info at least 32 */
    if (n_kv > remaining(&c) / 13)
        return fail(&c, 16, "metadata count %llu is impossible for a file of %zu bytes",
                    (unsigned long long)n_kv, g->size),
               c.st;
    if (n_tensors > remaining(&c) / 32)
        return fail(&c, 8, "tensor count %llu is impossible for a file of %zu bytes",
                    (unsigned long long)n_tensors, g->size),
               c.st;
    g->kvs = calloc((size_t)n_kv + 1, sizeof *g->kvs);
    g->tensors = calloc((size_t)n_tensors + 1, sizeof *g->tensors);
    if (!g->kvs || !g->tensors)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_gguf_open", "no memory");
    g->alignment = 32;
    for (uint64_t i = 0; i < n_kv; i++) {
        size_t at = c.pos;
        kv *e = &g->kvs[i];
        size_t klen;
        uint32_t type = 0;
        if (!read_string(&c, &e->key, &klen, "a metadata key") ||
            !read_u32(&c, &type, "a metadata type"))
            return c.st;
        if (klen == 0 || !utf8_valid((const unsigned char *)e->key, klen) || strlen(e->key) != klen)
            return fail(&c, at, "metadata key %llu is empty or not valid UTF-8",
                        (unsigned long long)i),
                   c.st;
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->kvs[j].key, e->key) == 0)
                return fail(&c, at, "metadata key '%s' appears twice", e->key), c.st;
        if (type >= MLXN_GGUF_TYPE_COUNT)
            return fail(&c, at + 8 + klen, "metadata '%s' has unknown type %u", e->key, type), c.st;
        if (!read_value(&c, (mlxn_gguf_type)type, &e->value, 0, e->key))
            return c.st;
        g->n_kv++;
        if (strcmp(e->key, "general.alignment") == 0) {
            if (type != MLXN_GGUF_TYPE_UINT32 || e->value.scalar.u == 0 ||
                (e->value.scalar.u & (e->value.scalar.u - 1)))
                return fail(&c, at, "general.alignment must be a u32 power of two"), c.st;
            g->alignment = (size_t)e->value.scalar.u;
        }
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        if (!read_tensor_info(&c, (int64_t)i, &g->tensors[i]))
            return c.st;
        g->n_tensors++;
    }
    size_t end = c.pos;
    size_t pad = (g->alignment - end % g->alignment) % g->alignment;
    g->data_offset = end + pad;
    g->data_size = g->data_offset <= g->size ? g->size - g->data_offset : 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        mlxn_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment)
            return fail(&c, end, "tensor '%s': offset %llu is not a multiple of the alignment %zu",
                        t->name, (unsigned long long)t->offset, g->alignment),
                   c.st;
        if (t->offset > g->data_size || t->size > g->data_size - t->offset)
            return fail(&c, end,
                        "tensor '%s': data [%llu, %llu + %llu) lies outside the data section of "
                        "%zu bytes",
                        t->name, (unsigned long long)t->offset, (unsigned long long)t->offset,
                        (unsigned long long)t->size, g->data_size),
                   c.st;
        t->data = g->data + g->data_offset + t->offset;
    }
    if (!build_table(&c))
        return c.st;
    return MLXN_STATUS_OK;
}

static mlxn_status open_common(mlxn_gguf *g, mlxn_gguf **out)
{
    mlxn_status st = parse(g);
    if (st != MLXN_STATUS_OK) {
        mlxn_gguf_free(g);
        return st;
    }
    *out = g;
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_gguf_open_memory_borrowed(const void *data, size_t size, mlxn_gguf **out)
{
    static const char *fn = "mlxn_gguf_open_memory_borrowed";
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    *out = NULL;
    if (!data && size)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "data is NULL");
    mlxn_gguf *g = calloc(1, sizeof *g);
    if (!g)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
    g->data = data;
    g->size = size;
    return open_common(g, out);
}

mlxn_status mlxn_gguf_open(const char *path, mlxn_gguf **out)
{
    static const char *fn = "mlxn_gguf_open";
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    *out = NULL;
    if (!path)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mlxn_error(MLXN_STATUS_ERR_IO, fn, "cannot open %s", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return mlxn_error(MLXN_STATUS_ERR_IO, fn, "%s is not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, fn, "%s is empty", path);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return mlxn_error(MLXN_STATUS_ERR_IO, fn, "cannot map %s", path);
    mlxn_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        munmap(p, (size_t)sb.st_size);
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
    }
    g->data = p;
    g->size = (size_t)sb.st_size;
    g->mapped = true;
    return open_common(g, out);
}

void mlxn_gguf_free(mlxn_gguf *g)
{
    if (!g)
        return;
    if (g->mapped)
        munmap((void *)g->data, g->size);
    while (g->arena) {
        arena_block *n = g->arena->next;
        free(g->arena);
        g->arena = n;
    }
    free(g->kvs);
    free(g->tensors);
    name_index_free(&g->names);
    free(g);
}

/* ---------------------------------------------------------------- accessors */

uint32_t mlxn_gguf_version(const mlxn_gguf *g) { return g ? g->version : 0; }
size_t mlxn_gguf_alignment(const mlxn_gguf *g) { return g ? g->alignment : 0; }
size_t mlxn_gguf_data_offset(const mlxn_gguf *g) { return g ? g->data_offset : 0; }
size_t mlxn_gguf_data_size(const mlxn_gguf *g) { return g ? g->data_size : 0; }
const void *mlxn_gguf_file_data(const mlxn_gguf *g) { return g ? g->data : NULL; }
size_t mlxn_gguf_file_size(const mlxn_gguf *g) { return g ? g->size : 0; }
int64_t mlxn_gguf_kv_count(const mlxn_gguf *g) { return g ? g->n_kv : 0; }
int64_t mlxn_gguf_tensor_count(const mlxn_gguf *g) { return g ? g->n_tensors : 0; }

const char *mlxn_gguf_kv_key(const mlxn_gguf *g, int64_t i)
{
    return g && i >= 0 && i < g->n_kv ? g->kvs[i].key : NULL;
}

const mlxn_gguf_value *mlxn_gguf_kv_value(const mlxn_gguf *g, int64_t i)
{
    return g && i >= 0 && i < g->n_kv ? &g->kvs[i].value : NULL;
}

const mlxn_gguf_value *mlxn_gguf_find(const mlxn_gguf *g, const char *key)
{
    if (!g || !key)
        return NULL;
    for (int64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kvs[i].key, key) == 0)
            return &g->kvs[i].value;
    return NULL;
}

const char *mlxn_gguf_type_name(mlxn_gguf_type t)
{
    static const char *const names[MLXN_GGUF_TYPE_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64"};
    return (unsigned)t < MLXN_GGUF_TYPE_COUNT ? names[t] : "?";
}

mlxn_gguf_type mlxn_gguf_value_type(const mlxn_gguf_value *v)
{
    return v ? v->type : MLXN_GGUF_TYPE_COUNT;
}

static bool is_unsigned(mlxn_gguf_type t)
{
    return t == MLXN_GGUF_TYPE_UINT8 || t == MLXN_GGUF_TYPE_UINT16 ||
           t == MLXN_GGUF_TYPE_UINT32 || t == MLXN_GGUF_TYPE_UINT64;
}

static bool is_signed(mlxn_gguf_type t)
{
    return t == MLXN_GGUF_TYPE_INT8 || t == MLXN_GGUF_TYPE_INT16 || t == MLXN_GGUF_TYPE_INT32 ||
           t == MLXN_GGUF_TYPE_INT64;
}

static mlxn_status type_error(const char *fn, const mlxn_gguf_value *v, const char *wanted)
{
    if (!v)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "value is NULL");
    return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "value is %s, not %s",
                      mlxn_gguf_type_name(v->type), wanted);
}

mlxn_status mlxn_gguf_value_uint(const mlxn_gguf_value *v, uint64_t *out)
{
    static const char *fn = "mlxn_gguf_value_uint";
    if (!v || !out)
        return type_error(fn, v, "an unsigned integer");
    if (is_unsigned(v->type)) {
        *out = v->scalar.u;
        return MLXN_STATUS_OK;
    }
    if (is_signed(v->type)) {
        if (v->scalar.i < 0)
            return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "value %lld is negative",
                              (long long)v->scalar.i);
        *out = (uint64_t)v->scalar.i;
        return MLXN_STATUS_OK;
    }
    return type_error(fn, v, "an integer");
}

mlxn_status mlxn_gguf_value_int(const mlxn_gguf_value *v, int64_t *out)
{
    static const char *fn = "mlxn_gguf_value_int";
    if (!v || !out)
        return type_error(fn, v, "an integer");
    if (is_signed(v->type)) {
        *out = v->scalar.i;
        return MLXN_STATUS_OK;
    }
    if (is_unsigned(v->type)) {
        if (v->scalar.u > (uint64_t)INT64_MAX)
            return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "value %llu does not fit in int64",
                              (unsigned long long)v->scalar.u);
        *out = (int64_t)v->scalar.u;
        return MLXN_STATUS_OK;
    }
    return type_error(fn, v, "an integer");
}

mlxn_status mlxn_gguf_value_float(const mlxn_gguf_value *v, double *out)
{
    if (!v || !out || (v->type != MLXN_GGUF_TYPE_FLOAT32 && v->type != MLXN_GGUF_TYPE_FLOAT64))
        return type_error("mlxn_gguf_value_float", v, "a float");
    *out = v->scalar.f;
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_gguf_value_bool(const mlxn_gguf_value *v, bool *out)
{
    if (!v || !out || v->type != MLXN_GGUF_TYPE_BOOL)
        return type_error("mlxn_gguf_value_bool", v, "a bool");
    *out = v->scalar.b;
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_gguf_value_string(const mlxn_gguf_value *v, const char **out, size_t *len)
{
    if (!v || !out || v->type != MLXN_GGUF_TYPE_STRING)
        return type_error("mlxn_gguf_value_string", v, "a string");
    *out = v->str;
    if (len)
        *len = v->len;
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_gguf_array_info(const mlxn_gguf_value *v, mlxn_gguf_type *elem_type,
                                 uint64_t *count)
{
    if (!v || v->type != MLXN_GGUF_TYPE_ARRAY)
        return type_error("mlxn_gguf_array_info", v, "an array");
    if (elem_type)
        *elem_type = v->elem_type;
    if (count)
        *count = v->count;
    return MLXN_STATUS_OK;
}

const void *mlxn_gguf_array_data(const mlxn_gguf_value *v)
{
    return v && v->type == MLXN_GGUF_TYPE_ARRAY ? v->raw : NULL;
}

/* Element i as a value: strings and arrays are stored as values; numeric elements are decoded
 * into a per-thread slot (valid until the next call on this thread). */
const mlxn_gguf_value *mlxn_gguf_array_at(const mlxn_gguf_value *v, uint64_t i)
{
    static _Thread_local mlxn_gguf_value slot;
    if (!v || v->type != MLXN_GGUF_TYPE_ARRAY || i >= v->count)
        return NULL;
    if (v->items)
        return &v->items[i];
    size_t es = scalar_size(v->elem_type);
    memset(&slot, 0, sizeof slot);
    decode_scalar(&slot, v->elem_type, v->raw + i * es);
    return &slot;
}

static const mlxn_gguf_value *find_or_error(const mlxn_gguf *g, const char *key, const char *fn)
{
    const mlxn_gguf_value *v = mlxn_gguf_find(g, key);
    if (!v)
        mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "no key '%s'", key ? key : "(null)");
    return v;
}

#define KEY_GETTER(name, ctype)                                                      \
    mlxn_status mlxn_gguf_get_##name(const mlxn_gguf *g, const char *key, ctype *out) \
    {                                                                               \
        const mlxn_gguf_value *v = find_or_error(g, key, "mlxn_gguf_get_" #name);   \
        if (!v)                                                                     \
            return MLXN_STATUS_ERR_INVALID_ARG;                                     \
        mlxn_status st = mlxn_gguf_value_##name(v, out);                            \
        if (st != MLXN_STATUS_OK)                                                   \
            mlxn_error(st, "mlxn_gguf_get_" #name, "'%s' is %s", key,               \
                       mlxn_gguf_type_name(v->type));                               \
        return st;                                                                  \
    }

KEY_GETTER(uint, uint64_t)
KEY_GETTER(int, int64_t)
KEY_GETTER(float, double)
KEY_GETTER(bool, bool)

mlxn_status mlxn_gguf_get_string(const mlxn_gguf *g, const char *key, const char **out)
{
    const mlxn_gguf_value *v = find_or_error(g, key, "mlxn_gguf_get_string");
    if (!v)
        return MLXN_STATUS_ERR_INVALID_ARG;
    mlxn_status st = mlxn_gguf_value_string(v, out, NULL);
    if (st != MLXN_STATUS_OK)
        mlxn_error(st, "mlxn_gguf_get_string", "'%s' is %s", key, mlxn_gguf_type_name(v->type));
    return st;
}

const mlxn_gguf_tensor *mlxn_gguf_tensor_at(const mlxn_gguf *g, int64_t i)
{
    return g && i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const mlxn_gguf_tensor *mlxn_gguf_find_tensor(const mlxn_gguf *g, const char *name)
{
    const int64_t i = g ? name_index_find(&g->names, name) : -1;
    return i >= 0 ? &g->tensors[i] : NULL;
}

mlxn_status mlxn_gguf_tensor_view(const mlxn_gguf_tensor *t, mlxn_buffer *buffer, size_t base,
                                  mlxn_tensor *out)
{
    static const char *fn = "mlxn_gguf_tensor_view";
    if (!t || !buffer || !out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "an argument is NULL");
    if (t->type.dtype == MLXN_DTYPE_COUNT)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn,
                          "tensor '%s' has type %s, which mlxn has no kernels for", t->name,
                          t->type.name);
    int64_t shape[MLXN_MAX_DIMS];
    for (int d = 0; d < t->n_dims; d++)
        shape[d] = t->ne[t->n_dims - 1 - d];
    *out = mlxn_tensor_make(buffer, base + (size_t)t->offset, t->type.dtype, t->n_dims, shape);
    return mlxn_tensor_validate(out);
}

mlxn_status mlxn_gguf_map_data(mlxn_gguf *g, mlxn_device *cpu, mlxn_buffer **out)
{
    if (!g)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_gguf_map_data", "gguf is NULL");
    return mlxn_buffer_create_host_borrowed(cpu, (void *)(g->data + g->data_offset), g->data_size,
                                            out);
}

mlxn_status mlxn_gguf_upload_data(mlxn_gguf *g, mlxn_device *device, mlxn_progress_fn progress,
                                  void *user, mlxn_buffer **out)
{
    static const char *fn = "mlxn_gguf_upload_data";
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    *out = NULL;
    if (!g || !device)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "gguf or device is NULL");
    const size_t chunk = (size_t)32 << 20, total = g->data_size;
    const uint8_t *src = g->data + g->data_offset;
    mlxn_buffer *dst = NULL, *stage[2] = {NULL, NULL};
    mlxn_event *done[2] = {NULL, NULL};
    mlxn_stream *s = NULL;
    mlxn_status st = mlxn_buffer_create(device, total, &dst);
    for (int k = 0; k < 2 && st == MLXN_STATUS_OK; k++) {
        st = mlxn_buffer_create_pinned(device, chunk, &stage[k]);
        if (st == MLXN_STATUS_OK)
            st = mlxn_event_create(device, &done[k]);
    }
    if (st == MLXN_STATUS_OK)
        st = mlxn_stream_create(device, &s);
    /* Chunk i is staged in buffer i % 2 while chunk i - 1 is still uploading from the other. */
    bool used[2] = {false, false};
    for (size_t off = 0, i = 0; st == MLXN_STATUS_OK && off < total; off += chunk, i++) {
        size_t len = total - off < chunk ? total - off : chunk;
        int k = (int)(i % 2);
        if (used[k])
            st = mlxn_event_sync(done[k]);
        if (st != MLXN_STATUS_OK)
            break;
        memcpy(mlxn_buffer_host_ptr(stage[k]), src + off, len);
        st = mlxn_buffer_upload(dst, off, mlxn_buffer_host_ptr(stage[k]), len, s);
        if (st == MLXN_STATUS_OK)
            st = mlxn_event_record(done[k], s);
        used[k] = true;
        if (st == MLXN_STATUS_OK && progress && !progress(user, off + len, total))
            st = mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "cancelled by the progress callback");
    }
    if (s) {
        mlxn_status sync = mlxn_stream_sync(s);
        if (st == MLXN_STATUS_OK)
            st = sync;
    }
    mlxn_stream_free(s);
    for (int k = 0; k < 2; k++) {
        mlxn_event_free(done[k]);
        mlxn_buffer_free(stage[k]);
    }
    if (st != MLXN_STATUS_OK) {
        mlxn_buffer_free(dst);
        return st;
    }
    *out = dst;
    return MLXN_STATUS_OK;
}
