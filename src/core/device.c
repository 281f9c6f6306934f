/* Devices, buffers, streams, events and graphs: argument checks, then the backend. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void *mlxn_aligned_alloc(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0)
        return NULL;
    return p;
}

void mlxn_aligned_free(void *p)
{
    free(p);
}

/* ---------------------------------------------------------------- devices */

mlxn_device_options mlxn_device_options_default(void)
{
    mlxn_device_options o = {0};
    o.kind = MLXN_DEVICE_CPU;
    o.cpu_kernels = MLXN_CPU_KERNELS_AUTO;
    return o;
}

static const mlxn_backend *backend_of(mlxn_device_kind kind)
{
    switch (kind) {
    case MLXN_DEVICE_CPU:
        return &mlxn_cpu_backend;
    case MLXN_DEVICE_CUDA:
#ifdef MLXN_HAVE_CUDA
        return &mlxn_cuda_backend;
#else
        return NULL;
#endif
    }
    return NULL;
}

mlxn_status mlxn_device_create(const mlxn_device_options *options, mlxn_device **out)
{
    static const char *fn = "mlxn_device_create";
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    *out = NULL;
    mlxn_device_options o = options ? *options : mlxn_device_options_default();
    if (o.kind != MLXN_DEVICE_CPU && o.kind != MLXN_DEVICE_CUDA)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "unknown device kind %d", (int)o.kind);
    const mlxn_backend *b = backend_of(o.kind);
    if (!b)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn,
                          "this build of mlxn has no CUDA backend (built without nvcc)");
    mlxn_device *d = calloc(1, sizeof *d);
    if (!d)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory for the device");
    d->backend = b;
    d->kind = o.kind;
    d->ordinal = o.ordinal;
    mlxn_status st = b->device_init(d, &o);
    if (st != MLXN_STATUS_OK) {
        free(d);
        return st;
    }
    *out = d;
    return MLXN_STATUS_OK;
}

void mlxn_device_free(mlxn_device *device)
{
    if (!device)
        return;
    device->backend->device_fini(device);
    free(device);
}

mlxn_status mlxn_device_get_info(const mlxn_device *device, mlxn_device_info *out)
{
    if (!device || !out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_device_get_info",
                          "device or out is NULL");
    memset(out, 0, sizeof *out);
    out->kind = device->kind;
    out->ordinal = device->ordinal;
    return device->backend->device_info(device, out);
}

/* ---------------------------------------------------------------- buffers */

static mlxn_status buffer_new(mlxn_device *device, size_t bytes, bool pinned, const char *fn,
                              mlxn_buffer **out)
{
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    *out = NULL;
    if (!device)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "device is NULL");
    mlxn_buffer *b = calloc(1, sizeof *b);
    if (!b)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory for the buffer");
    void *p = NULL;
    mlxn_status st = device->backend->alloc(device, bytes, pinned, &p);
    if (st != MLXN_STATUS_OK) {
        free(b);
        return st;
    }
    b->device = device;
    b->ptr = p;
    b->size = bytes;
    b->kind = pinned ? MLXN_BUFFER_PINNED : MLXN_BUFFER_DEVICE;
    b->host_visible = pinned || device->kind == MLXN_DEVICE_CPU;
    *out = b;
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_buffer_create(mlxn_device *device, size_t bytes, mlxn_buffer **out)
{
    return buffer_new(device, bytes, false, "mlxn_buffer_create", out);
}

mlxn_status mlxn_buffer_create_pinned(mlxn_device *device, size_t bytes, mlxn_buffer **out)
{
    return buffer_new(device, bytes, true, "mlxn_buffer_create_pinned", out);
}

mlxn_status mlxn_buffer_create_host_borrowed(mlxn_device *cpu_device, void *ptr, size_t bytes,
                                             mlxn_buffer **out)
{
    static const char *fn = "mlxn_buffer_create_host_borrowed";
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    *out = NULL;
    if (!cpu_device || (!ptr && bytes))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "device or ptr is NULL");
    if (cpu_device->kind != MLXN_DEVICE_CPU)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                          "host memory can be borrowed by a CPU device only");
    mlxn_buffer *b = calloc(1, sizeof *b);
    if (!b)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory for the buffer");
    b->device = cpu_device;
    b->ptr = ptr;
    b->size = bytes;
    b->kind = MLXN_BUFFER_BORROWED;
    b->host_visible = true;
    *out = b;
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_buffer_create_sub(mlxn_buffer *parent, size_t offset, size_t bytes,
                                   mlxn_buffer **out)
{
    static const char *fn = "mlxn_buffer_create_sub";
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    *out = NULL;
    if (!parent)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "parent is NULL");
    if (offset > parent->size || bytes > parent->size - offset)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn,
                          "range [%zu, %zu + %zu) lies outside the parent's %zu bytes", offset,
                          offset, bytes, parent->size);
    mlxn_buffer *b = calloc(1, sizeof *b);
    if (!b)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory for the buffer");
    b->device = parent->device;
    b->ptr = parent->ptr + offset;
    b->size = bytes;
    b->kind = MLXN_BUFFER_SUB;
    b->host_visible = parent->host_visible;
    *out = b;
    return MLXN_STATUS_OK;
}

void mlxn_pool_release(mlxn_buffer *b); /* pool.c */

void mlxn_buffer_free(mlxn_buffer *buffer)
{
    if (!buffer)
        return;
    switch (buffer->kind) {
    case MLXN_BUFFER_DEVICE:
    case MLXN_BUFFER_PINNED:
        buffer->device->backend->dealloc(buffer->device, buffer->ptr,
                                         buffer->kind == MLXN_BUFFER_PINNED);
        break;
    case MLXN_BUFFER_POOLED:
        mlxn_pool_release(buffer);
        return; /* the pool keeps the object */
    case MLXN_BUFFER_BORROWED:
    case MLXN_BUFFER_SUB:
        break;
    }
    free(buffer);
}

size_t mlxn_buffer_size(const mlxn_buffer *buffer)
{
    return buffer ? buffer->size : 0;
}

mlxn_device *mlxn_buffer_device(const mlxn_buffer *buffer)
{
    return buffer ? buffer->device : NULL;
}

void *mlxn_buffer_host_ptr(mlxn_buffer *buffer)
{
    return buffer && buffer->host_visible ? buffer->ptr : NULL;
}

static mlxn_status node_append(mlxn_node_list *l, const mlxn_node *n)
{
    if (l->count == l->capacity) {
        size_t cap = l->capacity ? l->capacity * 2 : 16;
        mlxn_node *p = realloc(l->nodes, cap * sizeof *p);
        if (!p)
            return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_stream_issue",
                              "no memory to record the graph");
        l->nodes = p;
        l->capacity = cap;
    }
    l->nodes[l->count++] = *n;
    return MLXN_STATUS_OK;
}

static mlxn_status copy_issue(mlxn_device *dev, mlxn_stream *s, void *dst, const void *src,
                              size_t bytes, mlxn_copy_dir dir)
{
    if (bytes == 0)
        return MLXN_STATUS_OK;
    if (s)
        s->last_known = false; /* mlxn_stream_last_writes */
    if (s && s->capturing && dev->backend->records_in_core) {
        mlxn_node n = {.type = MLXN_NODE_COPY};
        n.copy.dst = dst;
        n.copy.src = src;
        n.copy.bytes = bytes;
        return node_append(&s->recording, &n);
    }
    return dev->backend->copy(dev, s, dst, src, bytes, dir);
}

static mlxn_status check_range(const mlxn_buffer *b, size_t off, size_t bytes, const char *fn,
                               const char *what)
{
    if (!b)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "%s is NULL", what);
    if (off > b->size || bytes > b->size - off)
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn,
                          "%zu bytes at offset %zu lie outside %s's %zu bytes", bytes, off, what,
                          b->size);
    return MLXN_STATUS_OK;
}

static mlxn_status check_stream(const mlxn_stream *s, const mlxn_device *d, const char *fn)
{
    if (s && s->device != d)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                          "the stream belongs to another device than the buffer");
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_buffer_upload(mlxn_buffer *dst, size_t dst_offset, const void *src,
                               size_t bytes, mlxn_stream *stream)
{
    static const char *fn = "mlxn_buffer_upload";
    MLXN_TRY(check_range(dst, dst_offset, bytes, fn, "dst"));
    MLXN_TRY(check_stream(stream, dst->device, fn));
    if (!src && bytes)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "src is NULL");
    return copy_issue(dst->device, stream, dst->ptr + dst_offset, src, bytes,
                      MLXN_COPY_HOST_TO_DEVICE);
}

mlxn_status mlxn_buffer_download(mlxn_buffer *src, size_t src_offset, void *dst, size_t bytes,
                                 mlxn_stream *stream)
{
    static const char *fn = "mlxn_buffer_download";
    MLXN_TRY(check_range(src, src_offset, bytes, fn, "src"));
    MLXN_TRY(check_stream(stream, src->device, fn));
    if (!dst && bytes)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "dst is NULL");
    return copy_issue(src->device, stream, dst, src->ptr + src_offset, bytes,
                      MLXN_COPY_DEVICE_TO_HOST);
}

mlxn_status mlxn_buffer_copy(mlxn_buffer *dst, size_t dst_offset, mlxn_buffer *src,
                             size_t src_offset, size_t bytes, mlxn_stream *stream)
{
    static const char *fn = "mlxn_buffer_copy";
    MLXN_TRY(check_range(dst, dst_offset, bytes, fn, "dst"));
    MLXN_TRY(check_range(src, src_offset, bytes, fn, "src"));
    if (!stream)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "stream is NULL");
    if (dst->device != src->device)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "src and dst are on different devices");
    MLXN_TRY(check_stream(stream, dst->device, fn));
    return copy_issue(dst->device, stream, dst->ptr + dst_offset, src->ptr + src_offset, bytes,
                      MLXN_COPY_DEVICE_TO_DEVICE);
}

/* ---------------------------------------------------------------- streams */

mlxn_status mlxn_stream_create(mlxn_device *device, mlxn_stream **out)
{
    static const char *fn = "mlxn_stream_create";
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    *out = NULL;
    if (!device)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "device is NULL");
    mlxn_stream *s = calloc(1, sizeof *s);
    if (!s)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory for the stream");
    s->device = device;
    mlxn_status st = device->backend->stream_init(s);
    if (st != MLXN_STATUS_OK) {
        free(s);
        return st;
    }
    *out = s;
    return MLXN_STATUS_OK;
}

void mlxn_stream_free(mlxn_stream *stream)
{
    if (!stream)
        return;
    stream->device->backend->stream_fini(stream);
    free(stream->recording.nodes);
    free(stream);
}

mlxn_status mlxn_stream_sync(mlxn_stream *stream)
{
    if (!stream)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_stream_sync", "stream is NULL");
    return stream->device->backend->stream_sync(stream);
}

mlxn_device *mlxn_stream_device(const mlxn_stream *stream)
{
    return stream ? stream->device : NULL;
}

mlxn_status mlxn_op_run(mlxn_stream *s, const mlxn_op *node)
{
    const mlxn_op_table *t = &s->device->backend->ops;
    switch (node->kind) {
#define MLXN_X_CASE(op, args)                                                            \
    case MLXN_OP_##op:                                                                     \
        if (!t->op)                                                                        \
            return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, "mlxn_" #op,                    \
                              "the %s backend has no " #op " kernel",                      \
                              s->device->backend->name);                                   \
        return t->op(s, &node->u.op);
        MLXN_OP_LIST(MLXN_X_CASE)
#undef MLXN_X_CASE
    case MLXN_OP_COUNT:
        break;
    }
    return mlxn_error(MLXN_STATUS_ERR_INTERNAL, "mlxn_op_run", "unknown op %d", (int)node->kind);
}

const char *mlxn_op_name(mlxn_op_kind kind)
{
    static const char *const names[] = {
#define MLXN_X_NAME(op, args) #op,
        MLXN_OP_LIST(MLXN_X_NAME)
#undef MLXN_X_NAME
    };
    return (unsigned)kind < MLXN_OP_COUNT ? names[kind] : "?";
}

/* The bytes of n_rows rows of row_bytes in r: [*lo, *hi), an upper bound (strides are not
 * negative: tensor.c). */
static void rows_span(const mlxn_rows *r, int64_t n_rows, int64_t row_bytes, const char **lo, const char **hi)
{
    const int64_t inner = r->d1 * r->d2 > 0 ? r->d1 * r->d2 : 1, n0 = (n_rows + inner - 1) / inner;
    const int64_t last = (n0 - 1) * r->s0 + (r->d1 - 1) * r->s1 + (r->d2 - 1) * r->s2;
    *lo = r->base;
    *hi = r->base + last + row_bytes;
}

/* The bytes op writes, where known (the ops a decode step's kernels read after: qmatmul_id's y). */
static bool op_writes(const mlxn_op *op, const char **lo, const char **hi)
{
    switch (op->kind) {
    case MLXN_OP_qmatmul_id: {
        const mlxn_qmatmul_id_args *a = &op->u.qmatmul_id;
        rows_span(&a->y, a->T * a->k, a->N * 4, lo, hi);
        return true;
    }
    default:
        return false;
    }
}

bool mlxn_stream_last_writes(const mlxn_stream *s, const mlxn_rows *r, int64_t n_rows, int64_t row_bytes)
{
    if (!s->last_known)
        return true;
    const char *lo, *hi;
    rows_span(r, n_rows, row_bytes, &lo, &hi);
    return lo < s->last_hi && s->last_lo < hi;
}

mlxn_status mlxn_stream_issue(mlxn_stream *s, const mlxn_op *op)
{
    s->last_known = false;
    if (s->capturing && s->device->backend->records_in_core) {
        mlxn_node n = {.type = MLXN_NODE_OP, .op = *op};
        return node_append(&s->recording, &n);
    }
    const mlxn_status st = mlxn_op_run(s, op);
    if (st == MLXN_STATUS_OK)
        s->last_known = op_writes(op, &s->last_lo, &s->last_hi);
    return st;
}

/* ---------------------------------------------------------------- events */

mlxn_status mlxn_event_create(mlxn_device *device, mlxn_event **out)
{
    static const char *fn = "mlxn_event_create";
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    *out = NULL;
    if (!device)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "device is NULL");
    mlxn_event *e = calloc(1, sizeof *e);
    if (!e)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory for the event");
    e->device = device;
    mlxn_status st = device->backend->event_init(e);
    if (st != MLXN_STATUS_OK) {
        free(e);
        return st;
    }
    *out = e;
    return MLXN_STATUS_OK;
}

void mlxn_event_free(mlxn_event *event)
{
    if (!event)
        return;
    event->device->backend->event_fini(event);
    free(event);
}

mlxn_status mlxn_event_record(mlxn_event *event, mlxn_stream *stream)
{
    static const char *fn = "mlxn_event_record";
    if (!event || !stream)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "event or stream is NULL");
    if (event->device != stream->device)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                          "event and stream belong to different devices");
    if (stream->capturing)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn,
                          "events cannot be recorded while the stream captures a graph");
    MLXN_TRY(event->device->backend->event_record(event, stream));
    event->recorded = true;
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_event_sync(mlxn_event *event)
{
    if (!event)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_event_sync", "event is NULL");
    if (!event->recorded)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_event_sync",
                          "the event was never recorded");
    return event->device->backend->event_sync(event);
}

mlxn_status mlxn_event_elapsed_ms(mlxn_event *start, mlxn_event *end, double *ms)
{
    static const char *fn = "mlxn_event_elapsed_ms";
    if (!start || !end || !ms)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "an argument is NULL");
    if (!start->recorded || !end->recorded)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "an event was never recorded");
    if (start->device != end->device)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "events of different devices");
    return start->device->backend->event_elapsed_ms(start, end, ms);
}

/* ---------------------------------------------------------------- graphs */

mlxn_status mlxn_stream_begin_capture(mlxn_stream *stream)
{
    static const char *fn = "mlxn_stream_begin_capture";
    if (!stream)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "stream is NULL");
    if (stream->capturing)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "the stream is already capturing");
    const mlxn_backend *b = stream->device->backend;
    if (!b->records_in_core)
        MLXN_TRY(b->capture_begin(stream));
    stream->recording.count = 0;
    stream->capturing = true;
    stream->last_known = false; /* the graph's first kernel follows whatever precedes its launch */
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_stream_end_capture(mlxn_stream *stream, mlxn_graph **out)
{
    static const char *fn = "mlxn_stream_end_capture";
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    *out = NULL;
    if (!stream)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "stream is NULL");
    if (!stream->capturing)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "the stream is not capturing");
    stream->capturing = false;
    stream->last_known = false; /* the captured ops did not run on the stream */
    mlxn_graph *g = calloc(1, sizeof *g);
    if (!g)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory for the graph");
    g->device = stream->device;
    const mlxn_backend *b = stream->device->backend;
    if (b->records_in_core) {
        g->list = stream->recording; /* the graph takes the list */
        stream->recording = (mlxn_node_list){0};
    } else {
        mlxn_status st = b->capture_end(stream, g);
        if (st != MLXN_STATUS_OK) {
            free(g);
            return st;
        }
    }
    *out = g;
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_graph_launch(mlxn_graph *graph, mlxn_stream *stream)
{
    static const char *fn = "mlxn_graph_launch";
    if (!graph || !stream)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "graph or stream is NULL");
    if (graph->device != stream->device)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                          "graph and stream belong to different devices");
    if (stream->capturing)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn,
                          "a graph cannot be launched into a capturing stream");
    const mlxn_backend *b = stream->device->backend;
    stream->last_known = false;
    if (!b->records_in_core)
        return b->graph_launch(graph, stream);
    for (size_t i = 0; i < graph->list.count; i++) {
        const mlxn_node *n = &graph->list.nodes[i];
        if (n->type == MLXN_NODE_OP)
            MLXN_TRY(mlxn_op_run(stream, &n->op));
        else
            MLXN_TRY(b->copy(stream->device, stream, n->copy.dst, n->copy.src, n->copy.bytes,
                             MLXN_COPY_DEVICE_TO_DEVICE));
    }
    return MLXN_STATUS_OK;
}

bool mlxn_graph_profiling(void)
{
    const char *env = getenv("MLXN_PROFILE_GRAPH");
    return env && *env && strcmp(env, "0") != 0;
}

void mlxn_graph_free(mlxn_graph *graph)
{
    if (!graph)
        return;
    if (!graph->device->backend->records_in_core)
        graph->device->backend->graph_fini(graph);
    free(graph->list.nodes);
    free(graph);
}

#ifndef MLXN_HAVE_CUDA
int mlxn_cuda_device_count(void)
{
    return 0;
}
#endif
