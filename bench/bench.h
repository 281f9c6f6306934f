/* Benchmarks: same-run ceilings and the op benchmark table. */
#ifndef MLXN_BENCH_H
#define MLXN_BENCH_H

#include <stdbool.h>
#include <stdio.h>

#include "mlxn.h"

typedef struct bench_options {
    const char *op;   /* only this op, or NULL for all */
    const char *shape; /* qmatmul(_mlx) rows: only those whose "shape format" text contains this, or NULL */
    bool quick;       /* fewer samples */
    FILE *json;       /* also write JSON lines here, or NULL */
} bench_options;

/* Timing of a repeated call: per-call milliseconds over samples of batches. */
typedef struct bench_timing {
    double median_ms, p10_ms, p90_ms;
    int samples, calls_per_sample;
} bench_timing;

/* Calls fn(ctx, i) for i = 0, 1, ... in batches of at least `batch` calls on stream s (doubled
 * until a sample takes about 1 ms of device time), timed with events between batches issued
 * back to back after warm-up (the device never waits for a sample's first launch); returns
 * false (with the library's last error) on failure. */
typedef mlxn_status (*bench_fn)(void *ctx, int i);
bool bench_time(mlxn_device *dev, mlxn_stream *s, bench_fn fn, void *ctx, int batch,
                int samples, bench_timing *out);

/* The same for calls fn(ctx, 0 .. calls - 1) captured once in a graph (mlxn_stream_begin_capture)
 * and timed as graph launches: no host launch cost between the calls, as in a captured decode
 * step. */
bool bench_time_graph(mlxn_device *dev, mlxn_stream *s, bench_fn fn, void *ctx, int calls, int samples,
                      bench_timing *out);

/* Device copy bandwidth in GB/s (10^9 bytes, read + write counted), measured on buffers of
 * several times the last-level cache. */
bool bench_copy_bandwidth(mlxn_device *dev, mlxn_stream *s, bool quick, double *gbps,
                          bench_timing *timing, size_t *bytes);

/* CPU read bandwidth in GB/s: the device's worker threads each sum a slice of a buffer several
 * times the last-level cache (false on other devices). The ceiling of ops that mostly read, such
 * as a decode mat-vec. */
bool bench_read_bandwidth(mlxn_device *dev, bool quick, double *gbps, bench_timing *timing,
                          size_t *bytes);

/* Runs the table; prints rows to stdout. Returns 0 on success. */
int bench_ops_run(mlxn_device *dev, const bench_options *opt);
/* The ops that have benchmark rows, comma separated, and whether NAME is one of them. */
extern const char bench_op_names[];
bool bench_has_op(const char *name);

#endif
