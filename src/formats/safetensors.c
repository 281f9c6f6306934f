/* safetensors reader and MLX quantization configs.
 *
 * File layout: u64 header_len (little-endian) | header_len bytes of JSON | data buffer.
 * Header: {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..],
 *          "data_offsets": [begin, end]}, ...}, offsets relative to the data buffer.
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
#include "formats/json.h"
#include "formats/name_index.h"
#include "mlxn_safetensors.h"

/* The reference implementation refuses headers over 100 MB. */
#define MAX_HEADER ((uint64_t)100 << 20)

typedef struct shard {
    const uint8_t *data;
    size_t size;
    bool mapped;
    json_doc *header;
} shard;

struct mlxn_safetensors {
    shard *shards;
    int n_shards;
    mlxn_st_tensor *tensors;
    int64_t n_tensors, cap_tensors;
    const json_value *metadata; /* first shard's __metadata__, or NULL */
    name_index names; /* the tensors by name */
};

typedef struct st_dtype {
    const char *name;
    int bits;
    mlxn_dtype dtype;
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"BOOL", 8, MLXN_DTYPE_COUNT},     {"U8", 8, MLXN_DTYPE_U8},
    {"I8", 8, MLXN_DTYPE_I8},          {"F8_E5M2", 8, MLXN_DTYPE_COUNT},
    {"F8_E4M3", 8, MLXN_DTYPE_COUNT},  {"F8_E8M0", 8, MLXN_DTYPE_COUNT},
    {"I16", 16, MLXN_DTYPE_I16},       {"U16", 16, MLXN_DTYPE_COUNT},
    {"F16", 16, MLXN_DTYPE_F16},       {"BF16", 16, MLXN_DTYPE_BF16},
    {"I32", 32, MLXN_DTYPE_I32},       {"U32", 32, MLXN_DTYPE_U32},
    {"F32", 32, MLXN_DTYPE_F32},       {"F64", 64, MLXN_DTYPE_COUNT},
    {"I64", 64, MLXN_DTYPE_COUNT},     {"U64", 64, MLXN_DTYPE_COUNT},
    {"C64", 64, MLXN_DTYPE_COUNT},     {"F4", 4, MLXN_DTYPE_COUNT},
    {"F6_E2M3", 6, MLXN_DTYPE_COUNT},  {"F6_E3M2", 6, MLXN_DTYPE_COUNT},
};

static mlxn_status bad(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

static mlxn_status bad(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, "mlxn_safetensors_open", "%s", msg);
}

static int cmp_offset(const void *a, const void *b)
{
    const mlxn_st_tensor *x = *(const mlxn_st_tensor *const *)a, *y = *(const mlxn_st_tensor *const *)b;
    const uint8_t *px = x->data, *py = y->data;
    return px < py ? -1 : px > py;
}

static mlxn_status add_tensor(mlxn_safetensors *st, mlxn_st_tensor *t)
{
    if (st->n_tensors == st->cap_tensors) {
        int64_t cap = st->cap_tensors ? st->cap_tensors * 2 : 64;
        mlxn_st_tensor *p = realloc(st->tensors, (size_t)cap * sizeof *p);
        if (!p)
            return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_safetensors_open", "no memory");
        st->tensors = p;
        st->cap_tensors = cap;
    }
    st->tensors[st->n_tensors++] = *t;
    return MLXN_STATUS_OK;
}

/* Parses and validates shard s, appending its tensors. */
static mlxn_status parse_shard(mlxn_safetensors *st, int s, const char *label)
{
    shard *sh = &st->shards[s];
    uint64_t hlen;
    if (sh->size < 8)
        return bad("%s: %zu bytes is too short for a safetensors file", label, sh->size);
    memcpy(&hlen, sh->data, 8);
    if (hlen > sh->size - 8)
        return bad("%s: header length %llu exceeds the file (%zu bytes)", label,
                   (unsigned long long)hlen, sh->size);
    if (hlen > MAX_HEADER)
        return bad("%s: header of %llu bytes exceeds the 100 MB limit", label, (unsigned long long)hlen);
    char err[160];
    sh->header = json_parse((const char *)sh->data + 8, (size_t)hlen, err, sizeof err);
    if (!sh->header)
        return bad("%s: header JSON: %s (header starts at byte 8)", label, err);
    const json_value *root = json_root(sh->header);
    if (root->type != JSON_OBJECT)
        return bad("%s: header is not a JSON object", label);
    const uint8_t *buf = sh->data + 8 + hlen;
    uint64_t buf_size = sh->size - 8 - hlen;
    int64_t first = st->n_tensors;
    for (size_t i = 0; i < root->count; i++) {
        const char *name = root->keys[i];
        const json_value *e = &root->items[i];
        for (size_t j = 0; j < i; j++)
            if (strcmp(root->keys[j], name) == 0)
                return bad("%s: entry '%s' appears twice", label, name);
        if (strcmp(name, "__metadata__") == 0) {
            if (e->type != JSON_OBJECT)
                return bad("%s: __metadata__ is not an object", label);
            for (size_t k = 0; k < e->count; k++)
                if (e->items[k].type != JSON_STRING)
                    return bad("%s: __metadata__ value '%s' is not a string", label, e->keys[k]);
            if (s == 0)
                st->metadata = e;
            continue;
        }
        if (e->type != JSON_OBJECT)
            return bad("%s: entry '%s' is not an object", label, name);
        const json_value *dt = json_get(e, "dtype"), *shape = json_get(e, "shape"),
                         *offs = json_get(e, "data_offsets");
        if (!dt || dt->type != JSON_STRING)
            return bad("%s: '%s' has no dtype string", label, name);
        const st_dtype *d = NULL;
        for (size_t k = 0; k < sizeof st_dtypes / sizeof st_dtypes[0]; k++)
            if (strcmp(dt->str, st_dtypes[k].name) == 0)
                d = &st_dtypes[k];
        if (!d)
            return bad("%s: '%s' has unknown dtype '%.32s'", label, name, dt->str);
        if (!shape || shape->type != JSON_ARRAY)
            return bad("%s: '%s' has no shape array", label, name);
        if (shape->count > MLXN_SAFETENSORS_MAX_DIMS)
            return bad("%s: '%s' has %zu dims, more than %d", label, name, shape->count,
                       MLXN_SAFETENSORS_MAX_DIMS);
        mlxn_st_tensor t = {0};
        t.name = name;
        t.dtype_name = d->name;
        t.dtype = d->dtype;
        t.ndim = (int)shape->count;
        t.shard = s;
        uint64_t numel = 1;
        for (size_t k = 0; k < shape->count; k++) {
            const json_value *dim = &shape->items[k];
            if (dim->type != JSON_NUMBER || !dim->is_uint || dim->uint > (uint64_t)INT64_MAX)
                return bad("%s: '%s' shape[%zu] is not a non-negative integer", label, name, k);
            if (dim->uint && numel > UINT64_MAX / 64 / dim->uint)
                return bad("%s: '%s' shape overflows", label, name);
            numel *= dim->uint;
            t.shape[k] = (int64_t)dim->uint;
        }
        uint64_t bits = numel * (uint64_t)d->bits;
        if (bits % 8)
            return bad("%s: '%s' has %llu %s elements, not a whole number of bytes", label, name,
                       (unsigned long long)numel, d->name);
        t.size = bits / 8;
        if (!offs || offs->type != JSON_ARRAY || offs->count != 2 ||
            offs->items[0].type != JSON_NUMBER || !offs->items[0].is_uint ||
            offs->items[1].type != JSON_NUMBER || !offs->items[1].is_uint)
            return bad("%s: '%s' data_offsets is not [begin, end]", label, name);
        uint64_t b = offs->items[0].uint, en = offs->items[1].uint;
        if (b > en || en > buf_size)
            return bad("%s: '%s' data_offsets [%llu, %llu] lie outside the data buffer of %llu bytes",
                       label, name, (unsigned long long)b, (unsigned long long)en,
                       (unsigned long long)buf_size);
        if (en - b != t.size)
            return bad("%s: '%s' data_offsets span %llu bytes, its dtype and shape need %llu", label,
                       name, (unsigned long long)(en - b), (unsigned long long)t.size);
        t.data = buf + b;
        MLXN_TRY(add_tensor(st, &t));
    }
    /* the tensors must tile the data buffer: sorted by offset, each starts where the last ended */
    int64_t n = st->n_tensors - first;
    mlxn_st_tensor **order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_safetensors_open", "no memory");
    for (int64_t i = 0; i < n; i++)
        order[i] = &st->tensors[first + i];
    qsort(order, (size_t)n, sizeof *order, cmp_offset);
    const uint8_t *at = buf;
    mlxn_status res = MLXN_STATUS_OK;
    for (int64_t i = 0; i < n && res == MLXN_STATUS_OK; i++) {
        if (order[i]->data != at)
            res = bad("%s: '%s' starts at data byte %lld, expected %lld (tensors must be contiguous)",
                      label, order[i]->name, (long long)((const uint8_t *)order[i]->data - buf),
                      (long long)(at - buf));
        at += order[i]->size;
    }
    if (res == MLXN_STATUS_OK && (uint64_t)(at - buf) != buf_size)
        res = bad("%s: tensors cover %lld of the data buffer's %llu bytes", label, (long long)(at - buf),
                  (unsigned long long)buf_size);
    free(order);
    return res;
}

static mlxn_status build_table(mlxn_safetensors *st)
{
    if (!name_index_init(&st->names, st->n_tensors))
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_safetensors_open", "no memory");
    for (int64_t t = 0; t < st->n_tensors; t++)
        if (name_index_add(&st->names, st->tensors[t].name, t) >= 0)
            return bad("tensor '%s' appears in two shards", st->tensors[t].name);
    return MLXN_STATUS_OK;
}

static mlxn_status map_file(const char *path, shard *sh)
{
    static const char *fn = "mlxn_safetensors_open";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mlxn_error(MLXN_STATUS_ERR_IO, fn, "cannot open %s", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return mlxn_error(MLXN_STATUS_ERR_IO, fn, "%s is not a regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return bad("%s: %lld bytes is too short for a safetensors file", path, (long long)sb.st_size);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return mlxn_error(MLXN_STATUS_ERR_IO, fn, "cannot map %s", path);
    sh->data = p;
    sh->size = (size_t)sb.st_size;
    sh->mapped = true;
    return MLXN_STATUS_OK;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = n >= 0 && (uint64_t)n <= MAX_HEADER ? malloc((size_t)n + 1) : NULL;
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (s) {
        s[n] = 0;
        *len = (size_t)n;
    }
    return s;
}

/* model.safetensors.index.json: {"weight_map": {"<tensor>": "<shard file>"}, ...} */
static mlxn_status open_index(mlxn_safetensors *st, const char *path)
{
    static const char *fn = "mlxn_safetensors_open";
    size_t len = 0;
    char *text = read_text(path, &len);
    if (!text)
        return mlxn_error(MLXN_STATUS_ERR_IO, fn, "cannot read %s", path);
    char err[160];
    json_doc *doc = json_parse(text, len, err, sizeof err);
    free(text);
    if (!doc)
        return bad("%s: %s", path, err);
    mlxn_status res = MLXN_STATUS_OK;
    const json_value *wm = json_get(json_root(doc), "weight_map");
    if (!wm || wm->type != JSON_OBJECT) {
        json_free(doc);
        return bad("%s: no weight_map object", path);
    }
    /* distinct shard files, in order of first mention */
    const char **files = calloc(wm->count + 1, sizeof *files);
    int n_files = 0;
    for (size_t i = 0; files && i < wm->count && res == MLXN_STATUS_OK; i++) {
        const json_value *f = &wm->items[i];
        if (f->type != JSON_STRING || !f->len || strlen(f->str) != f->len || strchr(f->str, '/') ||
            strcmp(f->str, "..") == 0)
            res = bad("%s: weight_map entry '%s' is not a plain file name", path, wm->keys[i]);
        int k = 0;
        while (res == MLXN_STATUS_OK && k < n_files && strcmp(files[k], f->str) != 0)
            k++;
        if (res == MLXN_STATUS_OK && k == n_files)
            files[n_files++] = f->str;
    }
    if (!files)
        res = mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
    if (res == MLXN_STATUS_OK) {
        st->shards = calloc((size_t)n_files + 1, sizeof *st->shards);
        if (!st->shards)
            res = mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
    }
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path + 1) : 0;
    for (int k = 0; k < n_files && res == MLXN_STATUS_OK; k++) {
        size_t need = dir_len + strlen(files[k]) + 1;
        char *shard_path = malloc(need);
        if (!shard_path) {
            res = mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
            break;
        }
        memcpy(shard_path, path, dir_len);
        strcpy(shard_path + dir_len, files[k]);
        res = map_file(shard_path, &st->shards[k]);
        if (res == MLXN_STATUS_OK) {
            st->n_shards++;
            res = parse_shard(st, k, shard_path);
        }
        free(shard_path);
    }
    if (res == MLXN_STATUS_OK)
        res = build_table(st);
    /* every weight_map entry must be in the shard it names */
    for (size_t i = 0; i < wm->count && res == MLXN_STATUS_OK; i++) {
        const mlxn_st_tensor *t = mlxn_safetensors_find(st, wm->keys[i]);
        int k = 0;
        while (k < n_files && strcmp(files[k], wm->items[i].str) != 0)
            k++;
        if (!t || t->shard != k)
            res = bad("%s: '%s' is not in %s", path, wm->keys[i], wm->items[i].str);
    }
    free(files);
    json_free(doc);
    return res;
}

static mlxn_status finish(mlxn_safetensors *st, mlxn_status res, mlxn_safetensors **out)
{
    if (res != MLXN_STATUS_OK) {
        mlxn_safetensors_free(st);
        return res;
    }
    *out = st;
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_safetensors_open(const char *path, mlxn_safetensors **out)
{
    static const char *fn = "mlxn_safetensors_open";
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    *out = NULL;
    if (!path)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "path is NULL");
    mlxn_safetensors *st = calloc(1, sizeof *st);
    if (!st)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
    if (ends_with(path, ".json"))
        return finish(st, open_index(st, path), out);
    st->shards = calloc(1, sizeof *st->shards);
    if (!st->shards)
        return finish(st, mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory"), out);
    mlxn_status res = map_file(path, &st->shards[0]);
    if (res == MLXN_STATUS_OK) {
        st->n_shards = 1;
        res = parse_shard(st, 0, path);
    }
    if (res == MLXN_STATUS_OK)
        res = build_table(st);
    return finish(st, res, out);
}

mlxn_status mlxn_safetensors_open_memory_borrowed(const void *data, size_t size,
                                                  mlxn_safetensors **out)
{
    static const char *fn = "mlxn_safetensors_open_memory_borrowed";
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    *out = NULL;
    if (!data && size)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "data is NULL");
    mlxn_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->shards = calloc(1, sizeof *st->shards))) {
        free(st);
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
    }
    st->shards[0].data = data;
    st->shards[0].size = size;
    st->n_shards = 1;
    mlxn_status res = parse_shard(st, 0, "memory");
    if (res == MLXN_STATUS_OK)
        res = build_table(st);
    return finish(st, res, out);
}

void mlxn_safetensors_free(mlxn_safetensors *st)
{
    if (!st)
        return;
    for (int s = 0; s < st->n_shards; s++) {
        if (st->shards[s].mapped)
            munmap((void *)st->shards[s].data, st->shards[s].size);
        json_free(st->shards[s].header);
    }
    free(st->shards);
    free(st->tensors);
    name_index_free(&st->names);
    free(st);
}

int64_t mlxn_safetensors_tensor_count(const mlxn_safetensors *st)
{
    return st ? st->n_tensors : 0;
}

const mlxn_st_tensor *mlxn_safetensors_tensor_at(const mlxn_safetensors *st, int64_t i)
{
    return st && i >= 0 && i < st->n_tensors ? &st->tensors[i] : NULL;
}

const mlxn_st_tensor *mlxn_safetensors_find(const mlxn_safetensors *st, const char *name)
{
    const int64_t i = st ? name_index_find(&st->names, name) : -1;
    return i >= 0 ? &st->tensors[i] : NULL;
}

int64_t mlxn_safetensors_metadata_count(const mlxn_safetensors *st)
{
    return st && st->metadata ? (int64_t)st->metadata->count : 0;
}

const char *mlxn_safetensors_metadata_key(const mlxn_safetensors *st, int64_t i)
{
    return i >= 0 && i < mlxn_safetensors_metadata_count(st) ? st->metadata->keys[i] : NULL;
}

const char *mlxn_safetensors_metadata_get(const mlxn_safetensors *st, const char *key)
{
    const json_value *v = st && key ? json_get(st->metadata, key) : NULL;
    return v ? v->str : NULL;
}

mlxn_status mlxn_st_tensor_view(const mlxn_st_tensor *t, mlxn_buffer *buffer, size_t offset,
                                mlxn_tensor *out)
{
    static const char *fn = "mlxn_st_tensor_view";
    if (!t || !buffer || !out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "an argument is NULL");
    if (t->dtype == MLXN_DTYPE_COUNT)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn, "tensor '%s' has dtype %s, which mlxn has no kernels for",
                          t->name, t->dtype_name);
    if (t->ndim > MLXN_MAX_DIMS)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn, "tensor '%s' has %d dims; views take up to %d",
                          t->name, t->ndim, MLXN_MAX_DIMS);
    int64_t one = 1;
    *out = mlxn_tensor_make(buffer, offset, t->dtype, t->ndim ? t->ndim : 1, t->ndim ? t->shape : &one);
    return mlxn_tensor_validate(out);
}

/* ---------------------------------------------------------------- MLX quantization config */

typedef struct layer_setting {
    const char *name;
    bool quantized;
    int bits, group_size;
} layer_setting;

struct mlxn_mlx_quant_config {
    json_doc *doc;
    bool quantized;
    int bits, group_size;
    layer_setting *layers;
    size_t n_layers;
};

mlxn_dtype mlxn_mlx_dtype_for_bits(int bits)
{
    switch (bits) {
    case 2: return MLXN_DTYPE_MLX_Q2;
    case 3: return MLXN_DTYPE_MLX_Q3;
    case 4: return MLXN_DTYPE_MLX_Q4;
    case 5: return MLXN_DTYPE_MLX_Q5;
    case 6: return MLXN_DTYPE_MLX_Q6;
    case 8: return MLXN_DTYPE_MLX_Q8;
    default: return MLXN_DTYPE_COUNT;
    }
}

/* group_size and bits of a quantization object (missing ones keep *bits / *gs). */
static mlxn_status read_setting(const json_value *o, const char *what, int *bits, int *gs)
{
    static const char *fn = "mlxn_mlx_quant_config_parse";
    const json_value *b = json_get(o, "bits"), *g = json_get(o, "group_size");
    if (b) {
        if (b->type != JSON_NUMBER || !b->is_uint || mlxn_mlx_dtype_for_bits((int)b->uint) == MLXN_DTYPE_COUNT ||
            b->uint > 8)
            return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, fn, "%s: bits must be 2, 3, 4, 5, 6 or 8", what);
        *bits = (int)b->uint;
    }
    if (g) {
        if (g->type != JSON_NUMBER || !g->is_uint || (g->uint != 32 && g->uint != 64 && g->uint != 128))
            return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, fn, "%s: group_size must be 32, 64 or 128", what);
        *gs = (int)g->uint;
    }
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_mlx_quant_config_parse(const char *json, size_t len, mlxn_mlx_quant_config **out)
{
    static const char *fn = "mlxn_mlx_quant_config_parse";
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    *out = NULL;
    mlxn_mlx_quant_config *c = calloc(1, sizeof *c);
    if (!c)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
    char err[160];
    c->doc = json_parse(json, len, err, sizeof err);
    mlxn_status res = MLXN_STATUS_OK;
    if (!c->doc)
        res = mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, fn, "config.json: %s", err);
    const json_value *root = json_root(c->doc);
    if (res == MLXN_STATUS_OK && root->type != JSON_OBJECT)
        res = mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, fn, "config.json is not a JSON object");
    const json_value *q = res == MLXN_STATUS_OK ? json_get(root, "quantization") : NULL;
    if (res == MLXN_STATUS_OK && !q)
        q = json_get(root, "quantization_config");
    if (q && q->type != JSON_OBJECT)
        res = mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, fn, "quantization is not an object");
    if (res == MLXN_STATUS_OK && q) {
        c->quantized = true;
        c->bits = 4;
        c->group_size = 64;
        res = read_setting(q, "quantization", &c->bits, &c->group_size);
        c->layers = calloc(q->count + 1, sizeof *c->layers);
        if (!c->layers && res == MLXN_STATUS_OK)
            res = mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
        for (size_t i = 0; i < q->count && res == MLXN_STATUS_OK; i++) {
            const json_value *v = &q->items[i];
            if (v->type != JSON_OBJECT && v->type != JSON_BOOL)
                continue; /* group_size, bits, mode, ... */
            layer_setting *l = &c->layers[c->n_layers++];
            l->name = q->keys[i];
            l->quantized = v->type == JSON_OBJECT || v->boolean;
            l->bits = c->bits;
            l->group_size = c->group_size;
            if (v->type == JSON_OBJECT)
                res = read_setting(v, q->keys[i], &l->bits, &l->group_size);
        }
    }
    if (res != MLXN_STATUS_OK) {
        mlxn_mlx_quant_config_free(c);
        return res;
    }
    *out = c;
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_mlx_quant_config_open(const char *path, mlxn_mlx_quant_config **out)
{
    if (!out || !path)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_mlx_quant_config_open", "an argument is NULL");
    *out = NULL;
    size_t len = 0;
    char *text = read_text(path, &len);
    if (!text)
        return mlxn_error(MLXN_STATUS_ERR_IO, "mlxn_mlx_quant_config_open", "cannot read %s", path);
    mlxn_status st = mlxn_mlx_quant_config_parse(text, len, out);
    free(text);
    return st;
}

void mlxn_mlx_quant_config_free(mlxn_mlx_quant_config *c)
{
    if (!c)
        return;
    json_free(c->doc);
    free(c->layers);
    free(c);
}

void mlxn_mlx_quant_config_layer(const mlxn_mlx_quant_config *c, const char *layer, bool *quantized,
                                 int *bits, int *group_size)
{
    bool q = c && c->quantized;
    int b = c ? c->bits : 0, g = c ? c->group_size : 0;
    for (size_t i = 0; c && layer && i < c->n_layers; i++)
        if (strcmp(c->layers[i].name, layer) == 0) {
            q = c->layers[i].quantized;
            b = c->layers[i].bits;
            g = c->layers[i].group_size;
        }
    if (quantized)
        *quantized = q;
    if (bits)
        *bits = q ? b : 0;
    if (group_size)
        *group_size = q ? g : 0;
}
