/* Same-run ceilings: event timing of repeated calls, and the device copy bandwidth. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* per-call times sorted into the median and the 10th and 90th percentiles */
static void summarize(double *ms, int samples, int calls, bench_timing *out)
{
    qsort(ms, (size_t)samples, sizeof *ms, cmp_double);
    out->median_ms = ms[samples / 2];
    out->p10_ms = ms[samples / 10];
    out->p90_ms = ms[(samples * 9) / 10 < samples ? (samples * 9) / 10 : samples - 1];
    out->samples = samples;
    out->calls_per_sample = calls;
}

/* What one sample issues: `calls` calls of fn in turn, or one launch of a graph of them */
typedef struct batch {
    mlxn_stream *s;
    bench_fn fn;
    void *ctx;
    int calls, next;
    mlxn_graph *g;
} batch;

static bool issue_batch(batch *b)
{
    if (b->g)
        return mlxn_graph_launch(b->g, b->s) == MLXN_STATUS_OK;
    for (int i = 0; i < b->calls; i++)
        if (b->fn(b->ctx, b->next++) != MLXN_STATUS_OK)
            return false;
    return true;
}

/* Samples of a batch each, with an event between consecutive batches, all issued before one wait
 * and a batch issued ahead of the first event: the host issues batch k + 1 while the device runs
 * batch k, so no sample starts with the device idle until its first launch arrives. Eager
 * batches are made long enough to take at least MIN_SAMPLE_MS of device time: a call after an
 * event cannot start under the previous call's tail as calls launched with PDL do, so short
 * samples count that once a sample. (Each sample of 8 decode calls timed from an idle device
 * counted ~1 us a call more than a long run of them: bench/NOTES.md, "How the op table is
 * timed".) Where the host takes longer to issue a call than the device to run it, the times are
 * the host's. */
#define MIN_SAMPLE_MS 1.0
#define MAX_BATCH 512

static bool time_batches(mlxn_device *dev, batch *b, int samples, bench_timing *out)
{
    mlxn_event **ev = calloc((size_t)samples + 1, sizeof *ev);
    double *ms = calloc((size_t)samples, sizeof *ms);
    bool ok = ev && ms;
    for (int k = 0; ok && k <= samples; k++)
        ok = mlxn_event_create(dev, &ev[k]) == MLXN_STATUS_OK;
    /* warm-up: one batch (module load, clocks, caches of the first set), then one timed for the
     * batch length */
    double first = 0.0;
    ok = ok && issue_batch(b) && mlxn_stream_sync(b->s) == MLXN_STATUS_OK;
    if (ok && !b->g && samples > 0) {
        ok = mlxn_event_record(ev[0], b->s) == MLXN_STATUS_OK && issue_batch(b) &&
             mlxn_event_record(ev[1], b->s) == MLXN_STATUS_OK && mlxn_event_sync(ev[1]) == MLXN_STATUS_OK &&
             mlxn_event_elapsed_ms(ev[0], ev[1], &first) == MLXN_STATUS_OK;
        const double per_call = first / b->calls;
        while (ok && b->calls < MAX_BATCH && b->calls * per_call < MIN_SAMPLE_MS)
            b->calls *= 2;
    }
    ok = ok && issue_batch(b);
    for (int k = 0; ok && k < samples; k++)
        ok = mlxn_event_record(ev[k], b->s) == MLXN_STATUS_OK && issue_batch(b);
    ok = ok && mlxn_event_record(ev[samples], b->s) == MLXN_STATUS_OK && mlxn_event_sync(ev[samples]) == MLXN_STATUS_OK;
    for (int k = 0; ok && k < samples; k++) {
        ok = mlxn_event_elapsed_ms(ev[k], ev[k + 1], &ms[k]) == MLXN_STATUS_OK;
        ms[k] /= b->calls;
    }
    if (ok)
        summarize(ms, samples, b->calls, out);
    else
        mlxn_stream_sync(b->s); /* nothing left running on the buffers the caller frees */
    for (int k = 0; ev && k <= samples; k++)
        mlxn_event_free(ev[k]);
    free(ev);
    free(ms);
    return ok;
}

bool bench_time(mlxn_device *dev, mlxn_stream *s, bench_fn fn, void *ctx, int batch_calls,
                int samples, bench_timing *out)
{
    batch b = {.s = s, .fn = fn, .ctx = ctx, .calls = batch_calls};
    return time_batches(dev, &b, samples, out);
}

bool bench_time_graph(mlxn_device *dev, mlxn_stream *s, bench_fn fn, void *ctx, int calls, int samples,
                      bench_timing *out)
{
    batch b = {.s = s, .fn = fn, .ctx = ctx, .calls = calls};
    /* one eager round first: calls that size their scratch do it outside the capture */
    bool ok = issue_batch(&b) && mlxn_stream_sync(s) == MLXN_STATUS_OK &&
              mlxn_stream_begin_capture(s) == MLXN_STATUS_OK;
    if (ok) {
        b.next = 0;
        ok = issue_batch(&b);
        /* end the capture even after a failed call, so the stream is usable */
        const bool ended = mlxn_stream_end_capture(s, &b.g) == MLXN_STATUS_OK;
        ok = ok && ended;
    }
    ok = ok && time_batches(dev, &b, samples, out);
    mlxn_graph_free(b.g);
    return ok;
}

typedef struct copy_ctx {
    mlxn_buffer *src, *dst;
    mlxn_stream *s;
    size_t bytes;
} copy_ctx;

static mlxn_status copy_call(void *ctx, int i)
{
    copy_ctx *c = ctx;
    /* alternate direction so neither buffer stays hot */
    return i % 2 ? mlxn_buffer_copy(c->src, 0, c->dst, 0, c->bytes, c->s)
                 : mlxn_buffer_copy(c->dst, 0, c->src, 0, c->bytes, c->s);
}

bool bench_copy_bandwidth(mlxn_device *dev, mlxn_stream *s, bool quick, double *gbps,
                          bench_timing *timing, size_t *bytes_out)
{
    mlxn_device_info info;
    if (mlxn_device_get_info(dev, &info) != MLXN_STATUS_OK)
        return false;
    size_t bytes = (size_t)256 << 20;
    if (info.l2_bytes * 8 > bytes)
        bytes = info.l2_bytes * 8;
    if (info.kind == MLXN_DEVICE_CUDA)
        bytes = (size_t)1 << 30;
    copy_ctx c = {NULL, NULL, s, bytes};
    bool ok = mlxn_buffer_create(dev, bytes, &c.src) == MLXN_STATUS_OK &&
              mlxn_buffer_create(dev, bytes, &c.dst) == MLXN_STATUS_OK;
    /* fill the source with non-zero bytes (pages touched, no zero-page shortcuts) */
    if (ok) {
        size_t chunk = (size_t)16 << 20;
        unsigned char *h = malloc(chunk);
        ok = h != NULL;
        for (size_t i = 0; ok && i < chunk; i++)
            h[i] = (unsigned char)(i * 2654435761u >> 13);
        for (size_t off = 0; ok && off < bytes; off += chunk) {
            ok = mlxn_buffer_upload(c.src, off, h, bytes - off < chunk ? bytes - off : chunk, NULL) ==
                     MLXN_STATUS_OK &&
                 mlxn_buffer_upload(c.dst, off, h, bytes - off < chunk ? bytes - off : chunk, NULL) ==
                     MLXN_STATUS_OK;
        }
        free(h);
    }
    ok = ok && bench_time(dev, s, copy_call, &c, info.kind == MLXN_DEVICE_CUDA ? 4 : 2,
                          quick ? 10 : 20, timing);
    if (ok) {
        *gbps = 2.0 * (double)bytes / (timing->median_ms * 1e-3) / 1e9;
        *bytes_out = bytes;
    }
    mlxn_buffer_free(c.src);
    mlxn_buffer_free(c.dst);
    return ok;
}

/* CPU read ceiling: each of n threads sums its slice of a buffer several times the last-level
 * cache (the loop vectorizes; 2 x 16-byte loads per cycle is far above what memory delivers). */
typedef struct read_slice {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} read_slice;

static void *read_slice_run(void *arg)
{
    read_slice *r = arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= r->n; i += 4) {
        s0 += r->p[i];
        s1 += r->p[i + 1];
        s2 += r->p[i + 2];
        s3 += r->p[i + 3];
    }
    r->sum = s0 + s1 + s2 + s3;
    return NULL;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

bool bench_read_bandwidth(mlxn_device *dev, bool quick, double *gbps, bench_timing *timing,
                          size_t *bytes_out)
{
    mlxn_device_info info;
    if (mlxn_device_get_info(dev, &info) != MLXN_STATUS_OK || info.kind != MLXN_DEVICE_CPU)
        return false;
    size_t bytes = (size_t)256 << 20;
    if (info.l2_bytes * 8 > bytes)
        bytes = info.l2_bytes * 8;
    int nt = info.multiprocessors > 0 ? info.multiprocessors : 1;
    if (nt > 256)
        nt = 256;
    const int samples = quick ? 10 : 20;
    mlxn_buffer *b = NULL;
    double *ms = calloc((size_t)samples, sizeof *ms);
    bool ok = ms && mlxn_buffer_create(dev, bytes, &b) == MLXN_STATUS_OK;
    uint64_t *p = ok ? mlxn_buffer_host_ptr(b) : NULL;
    ok = ok && p;
    for (size_t i = 0; ok && i < bytes / 8; i++)
        p[i] = i * 0x9E3779B97F4A7C15ull; /* pages touched, no zero-page shortcuts */
    read_slice sl[256];
    pthread_t th[256];
    volatile uint64_t sink = 0; /* keeps the sums live */
    const size_t per = bytes / 8 / (size_t)nt / 4 * 4;
    for (int k = -1; ok && k < samples; k++) { /* k = -1: warm-up */
        double t0 = now_ms();
        for (int t = 0; t < nt; t++) {
            sl[t] = (read_slice){p + (size_t)t * per, per, 0};
            if (t > 0 && pthread_create(&th[t], NULL, read_slice_run, &sl[t]) != 0)
                ok = false;
        }
        read_slice_run(&sl[0]);
        for (int t = 1; t < nt; t++)
            pthread_join(th[t], NULL);
        double t1 = now_ms();
        for (int t = 0; t < nt; t++)
            sink = sink + sl[t].sum;
        if (k >= 0)
            ms[k] = t1 - t0;
    }
    if (ok) {
        qsort(ms, (size_t)samples, sizeof *ms, cmp_double);
        timing->median_ms = ms[samples / 2];
        timing->p10_ms = ms[samples / 10];
        timing->p90_ms = ms[(samples * 9) / 10];
        timing->samples = samples;
        timing->calls_per_sample = 1;
        *gbps = (double)(per * 8 * (size_t)nt) / (timing->median_ms * 1e-3) / 1e9;
        *bytes_out = per * 8 * (size_t)nt;
    }
    mlxn_buffer_free(b);
    free(ms);
    return ok;
}
