/* mlxn inspect: a GGUF file's metadata, tensor table and summary, as text or JSON. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "mlxn_gguf.h"

#define ARRAY_PREVIEW 8

static void json_string(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* Text: strings quoted with control bytes escaped, long ones cut. */
static void text_string(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    size_t n = len < 60 ? len : 60;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '"')
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
    if (len > n)
        fprintf(f, "... (%zu bytes)", len);
}

static void print_value(FILE *f, const mlxn_gguf_value *v, bool json, int depth)
{
    mlxn_gguf_type t = mlxn_gguf_value_type(v);
    uint64_t u;
    int64_t i;
    double d;
    bool b;
    const char *s;
    size_t len;
    switch (t) {
    case MLXN_GGUF_TYPE_UINT8: case MLXN_GGUF_TYPE_UINT16: case MLXN_GGUF_TYPE_UINT32:
    case MLXN_GGUF_TYPE_UINT64:
        mlxn_gguf_value_uint(v, &u);
        fprintf(f, "%" PRIu64, u);
        break;
    case MLXN_GGUF_TYPE_INT8: case MLXN_GGUF_TYPE_INT16: case MLXN_GGUF_TYPE_INT32:
    case MLXN_GGUF_TYPE_INT64:
        mlxn_gguf_value_int(v, &i);
        fprintf(f, "%" PRId64, i);
        break;
    case MLXN_GGUF_TYPE_FLOAT32: case MLXN_GGUF_TYPE_FLOAT64:
        mlxn_gguf_value_float(v, &d);
        fprintf(f, "%.9g", d);
        break;
    case MLXN_GGUF_TYPE_BOOL:
        mlxn_gguf_value_bool(v, &b);
        fprintf(f, b ? "true" : "false");
        break;
    case MLXN_GGUF_TYPE_STRING:
        mlxn_gguf_value_string(v, &s, &len);
        if (json)
            json_string(f, s, len);
        else
            text_string(f, s, len);
        break;
    case MLXN_GGUF_TYPE_ARRAY: {
        mlxn_gguf_type et;
        uint64_t count;
        mlxn_gguf_array_info(v, &et, &count);
        /* JSON gets whole arrays unless they are long: then the count and a preview */
        uint64_t show = count <= ARRAY_PREVIEW || (json && count <= 64) ? count : ARRAY_PREVIEW;
        if (json && show < count)
            fprintf(f, "{\"type\":\"%s\",\"count\":%" PRIu64 ",\"first\":", mlxn_gguf_type_name(et), count);
        else if (!json)
            fprintf(f, "[%s x %" PRIu64 "] ", mlxn_gguf_type_name(et), count);
        fputc('[', f);
        for (uint64_t k = 0; k < show; k++) {
            if (k)
                fputs(", ", f);
            print_value(f, mlxn_gguf_array_at(v, k), json, depth + 1);
        }
        if (!json && show < count)
            fputs(", ...", f);
        fputc(']', f);
        if (json && show < count)
            fputc('}', f);
        break;
    }
    default:
        fputs("null", f);
    }
}

static void shape_str(const mlxn_gguf_tensor *t, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = 0;
    for (int d = t->n_dims - 1; d >= 0 && n < cap; d--)
        n += (size_t)snprintf(out + n, cap - n, d == t->n_dims - 1 ? "%" PRId64 : "x%" PRId64, t->ne[d]);
}

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (!path)
            path = argv[i];
        else {
            fprintf(stderr, "mlxn inspect: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: mlxn inspect FILE.gguf [--json]\n");
        return 2;
    }
    mlxn_gguf *g = NULL;
    mlxn_status st = mlxn_gguf_open(path, &g);
    if (st != MLXN_STATUS_OK) {
        fprintf(stderr, "mlxn inspect: %s: %s\n", mlxn_status_str(st), mlxn_last_error());
        return 1;
    }
    /* summary per type */
    uint64_t params = 0, bytes_by_type[64] = {0}, count_by_type[64] = {0};
    for (int64_t i = 0; i < mlxn_gguf_tensor_count(g); i++) {
        const mlxn_gguf_tensor *t = mlxn_gguf_tensor_at(g, i);
        uint64_t nel = 1;
        for (int d = 0; d < t->n_dims; d++)
            nel *= (uint64_t)t->ne[d];
        params += nel;
        if (t->ggml_type < 64) {
            bytes_by_type[t->ggml_type] += t->size;
            count_by_type[t->ggml_type]++;
        }
    }
    FILE *f = stdout;
    if (json) {
        fprintf(f, "{\"file\":");
        json_string(f, path, strlen(path));
        fprintf(f, ",\"version\":%u,\"alignment\":%zu,\"data_offset\":%zu,\"metadata\":{",
                mlxn_gguf_version(g), mlxn_gguf_alignment(g), mlxn_gguf_data_offset(g));
        for (int64_t i = 0; i < mlxn_gguf_kv_count(g); i++) {
            const char *k = mlxn_gguf_kv_key(g, i);
            if (i)
                fputc(',', f);
            json_string(f, k, strlen(k));
            fputc(':', f);
            print_value(f, mlxn_gguf_kv_value(g, i), true, 0);
        }
        fprintf(f, "},\"tensors\":[");
        for (int64_t i = 0; i < mlxn_gguf_tensor_count(g); i++) {
            const mlxn_gguf_tensor *t = mlxn_gguf_tensor_at(g, i);
            fprintf(f, "%s{\"name\":", i ? "," : "");
            json_string(f, t->name, strlen(t->name));
            fprintf(f, ",\"type\":\"%s\",\"shape\":[", t->type.name);
            for (int d = t->n_dims - 1; d >= 0; d--)
                fprintf(f, "%s%" PRId64, d == t->n_dims - 1 ? "" : ",", t->ne[d]);
            fprintf(f, "],\"bytes\":%" PRIu64 ",\"offset\":%" PRIu64 "}", t->size, t->offset);
        }
        fprintf(f, "],\"summary\":{\"parameters\":%" PRIu64 ",\"bytes_by_type\":{", params);
        bool first = true;
        for (uint32_t k = 0; k < 64; k++) {
            mlxn_ggml_type_info info;
            if (count_by_type[k] && mlxn_ggml_type_info_get(k, &info)) {
                fprintf(f, "%s\"%s\":%" PRIu64, first ? "" : ",", info.name, bytes_by_type[k]);
                first = false;
            }
        }
        fprintf(f, "}}}\n");
    } else {
        fprintf(f, "%s: GGUF v%u, %" PRId64 " metadata keys, %" PRId64 " tensors, alignment %zu, "
                   "data at byte %zu\n\nmetadata:\n",
                path, mlxn_gguf_version(g), mlxn_gguf_kv_count(g), mlxn_gguf_tensor_count(g),
                mlxn_gguf_alignment(g), mlxn_gguf_data_offset(g));
        for (int64_t i = 0; i < mlxn_gguf_kv_count(g); i++) {
            const mlxn_gguf_value *v = mlxn_gguf_kv_value(g, i);
            fprintf(f, "  %-44s %-8s ", mlxn_gguf_kv_key(g, i),
                    mlxn_gguf_type_name(mlxn_gguf_value_type(v)));
            print_value(f, v, false, 0);
            fputc('\n', f);
        }
        fprintf(f, "\ntensors (shape outermost first):\n  %-40s %-8s %-20s %12s %12s\n", "name",
                "type", "shape", "bytes", "offset");
        for (int64_t i = 0; i < mlxn_gguf_tensor_count(g); i++) {
            const mlxn_gguf_tensor *t = mlxn_gguf_tensor_at(g, i);
            char shape[96];
            shape_str(t, shape, sizeof shape);
            fprintf(f, "  %-40s %-8s %-20s %12" PRIu64 " %12" PRIu64 "\n", t->name, t->type.name,
                    shape, t->size, t->offset);
        }
        uint64_t total = 0;
        for (int k = 0; k < 64; k++)
            total += bytes_by_type[k];
        fprintf(f, "\nsummary: %" PRIu64 " parameters (%.1f M), %.1f MiB of tensor data\n", params,
                (double)params / 1e6, (double)total / (1 << 20));
        for (uint32_t k = 0; k < 64; k++) {
            mlxn_ggml_type_info info;
            if (count_by_type[k] && mlxn_ggml_type_info_get(k, &info))
                fprintf(f, "  %-8s %4" PRIu64 " tensors %10.2f MiB  %5.1f%%\n", info.name,
                        count_by_type[k], (double)bytes_by_type[k] / (1 << 20),
                        total ? 100.0 * (double)bytes_by_type[k] / (double)total : 0.0);
        }
    }
    mlxn_gguf_free(g);
    return 0;
}
