/* Internal objects and the backend interface. Everything under src/ sees this; nothing public. */
#ifndef MLXN_INTERNAL_H
#define MLXN_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "mlxn.h"
#include "op_list.h"

/* ---------------------------------------------------------------- errors (error.c) */

/* Records "func: message" as the thread's last error and returns status. */
mlxn_status mlxn_error(mlxn_status status, const char *func, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#define MLXN_TRY(expr)                          \
    do {                                        \
        mlxn_status mlxn_try_status_ = (expr);  \
        if (mlxn_try_status_ != MLXN_STATUS_OK) \
            return mlxn_try_status_;            \
    } while (0)

/* ---------------------------------------------------------------- objects */

typedef enum mlxn_copy_dir {
    MLXN_COPY_HOST_TO_DEVICE,
    MLXN_COPY_DEVICE_TO_HOST,
    MLXN_COPY_DEVICE_TO_DEVICE
} mlxn_copy_dir;

typedef struct mlxn_backend mlxn_backend;

struct mlxn_device {
    const mlxn_backend *backend;
    mlxn_device_kind kind;
    int ordinal;
    void *impl; /* the backend's own state */
};

typedef enum mlxn_buffer_kind {
    MLXN_BUFFER_DEVICE,   /* owns device memory */
    MLXN_BUFFER_PINNED,   /* owns pinned host memory */
    MLXN_BUFFER_BORROWED, /* caller's host memory */
    MLXN_BUFFER_SUB,      /* range of a parent buffer */
    MLXN_BUFFER_POOLED    /* device memory owned by a pool */
} mlxn_buffer_kind;

struct mlxn_buffer {
    mlxn_device *device;
    char *ptr;             /* address of byte 0 (device or host) */
    size_t size;
    mlxn_buffer_kind kind;
    bool host_visible;     /* ptr is a host address */
    struct mlxn_pool *pool;  /* POOLED: owner */
    size_t pool_bucket;      /* POOLED: bucket index */
    bool pool_in_use;
};

/* A recorded step of a CPU graph. */
typedef struct mlxn_node {
    enum { MLXN_NODE_OP, MLXN_NODE_COPY } type;
    mlxn_op op;
    struct {
        void *dst;
        const void *src;
        size_t bytes;
    } copy;
} mlxn_node;

typedef struct mlxn_node_list {
    mlxn_node *nodes;
    size_t count, capacity;
} mlxn_node_list;

struct mlxn_stream {
    mlxn_device *device;
    void *impl;
    bool capturing;
    mlxn_node_list recording; /* backends that record in core (CPU) */
    /* The bytes the last op issued on the stream writes, [last_lo, last_hi), when last_known:
     * see mlxn_stream_last_writes. Forgotten by anything else put on the stream. */
    bool last_known;
    const char *last_lo, *last_hi;
};

struct mlxn_event {
    mlxn_device *device;
    void *impl;
    double host_ms; /* CPU: time of the record */
    bool recorded;
};

struct mlxn_graph {
    mlxn_device *device;
    void *impl;          /* backend graph (CUDA exec graph) */
    mlxn_node_list list; /* recorded in core */
};

/* ---------------------------------------------------------------- backend interface */

struct mlxn_backend {
    const char *name;
    /* true: core records ops issued during capture into a node list and replays them
     * through the op table; false: the backend captures natively. */
    bool records_in_core;

    mlxn_status (*device_init)(mlxn_device *dev, const mlxn_device_options *opt);
    void (*device_fini)(mlxn_device *dev);
    mlxn_status (*device_info)(const mlxn_device *dev, mlxn_device_info *out);

    mlxn_status (*alloc)(mlxn_device *dev, size_t bytes, bool pinned, void **out);
    void (*dealloc)(mlxn_device *dev, void *ptr, bool pinned);
    /* stream NULL: synchronous */
    mlxn_status (*copy)(mlxn_device *dev, mlxn_stream *stream, void *dst, const void *src,
                        size_t bytes, mlxn_copy_dir dir);

    mlxn_status (*stream_init)(mlxn_stream *s);
    void (*stream_fini)(mlxn_stream *s);
    mlxn_status (*stream_sync)(mlxn_stream *s);

    mlxn_status (*event_init)(mlxn_event *e);
    void (*event_fini)(mlxn_event *e);
    mlxn_status (*event_record)(mlxn_event *e, mlxn_stream *s);
    mlxn_status (*event_sync)(mlxn_event *e);
    mlxn_status (*event_elapsed_ms)(mlxn_event *a, mlxn_event *b, double *ms);

    /* native capture (records_in_core == false) */
    mlxn_status (*capture_begin)(mlxn_stream *s);
    mlxn_status (*capture_end)(mlxn_stream *s, mlxn_graph *g);
    mlxn_status (*graph_launch)(mlxn_graph *g, mlxn_stream *s);
    void (*graph_fini)(mlxn_graph *g);

    mlxn_op_table ops;
};

extern const mlxn_backend mlxn_cpu_backend;
#ifdef MLXN_HAVE_CUDA
extern const mlxn_backend mlxn_cuda_backend;
#endif

/* ---------------------------------------------------------------- core helpers */

/* Issues an op on a stream: recorded while a core-recorded capture is on, else run. */
mlxn_status mlxn_stream_issue(mlxn_stream *s, const mlxn_op *op);
/* Whether the last op issued on s may write any of the n_rows rows of row_bytes in r: true unless
 * that op is known to write elsewhere only. When false, an op's kernel may read those rows before
 * waiting for the previous kernel (PDL): whatever wrote them ran at least a kernel earlier, and
 * every kernel of the library lets the next one launch only after its own wait, so that one
 * had completed before the previous kernel could let this one launch. */
bool mlxn_stream_last_writes(const mlxn_stream *s, const mlxn_rows *r, int64_t n_rows, int64_t row_bytes);
/* Runs one op through the stream's backend table. */
mlxn_status mlxn_op_run(mlxn_stream *s, const mlxn_op *op);
const char *mlxn_op_name(mlxn_op_kind kind);
/* MLXN_PROFILE_GRAPH set and not "0": backends that can time a captured graph's nodes do so
 * when its capture ends (a development aid; the model runner then also captures prefill). */
bool mlxn_graph_profiling(void);

/* Element size in bytes of a plain dtype; 0 for quantized ones. */
size_t mlxn_dtype_size(mlxn_dtype dtype);
/* The alignment in bytes that a view of the dtype needs at its start and in its strides. */
size_t mlxn_dtype_align(mlxn_dtype dtype);
bool mlxn_dtype_valid(int dtype);

/* Validates a view (well-formed, inside its buffer), naming func and what in the message. */
mlxn_status mlxn_tensor_check(const mlxn_tensor *t, const char *func, const char *what);
/* That a valid view's start and the strides of its dims of more than one element are multiples
 * of al bytes. */
mlxn_status mlxn_tensor_check_align(const mlxn_tensor *t, size_t al, const char *func, const char *what);
/* Resolves a view to rows (innermost dim contiguous), after validation. */
mlxn_status mlxn_tensor_rows(const mlxn_tensor *t, const char *func, const char *what,
                             mlxn_rows *out, int64_t *n_rows, int64_t *row_len);

void *mlxn_aligned_alloc(size_t bytes);
void mlxn_aligned_free(void *p);

#endif
