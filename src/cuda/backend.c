/* The CUDA backend, host side: device memory, streams, events and CUDA graphs through the
 * runtime API; ops go to the launchers in the .cu files. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda.h"

int mlxn_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver or no GPU: clear the sticky error */
        return 0;
    }
    return n;
}

/* Every entry point makes the device current on the calling thread first. */
#define SET_DEVICE(fn, dev) MLXN_CUDA_CHECK(fn, cudaSetDevice((dev)->ordinal))

static mlxn_status cuda_device_init(mlxn_device *dev, const mlxn_device_options *o)
{
    static const char *fn = "mlxn_device_create";
    int n = mlxn_cuda_device_count();
    if (n == 0)
        return mlxn_error(MLXN_STATUS_ERR_DEVICE, fn, "no CUDA device is present");
    if (o->ordinal < 0 || o->ordinal >= n)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                          "CUDA device %d requested, %d present", o->ordinal, n);
    mlxn_cuda_device *d = calloc(1, sizeof *d);
    if (!d)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
    cudaError_t e = cudaGetDeviceProperties(&d->prop, o->ordinal);
    if (e == cudaSuccess)
        e = cudaSetDevice(o->ordinal);
    if (e == cudaSuccess)
        e = cudaFree(NULL); /* create the context now, not in the first op */
    if (e != cudaSuccess) {
        free(d);
        return mlxn_error(MLXN_STATUS_ERR_DEVICE, fn, "cannot open CUDA device %d: %s",
                          o->ordinal, cudaGetErrorString(e));
    }
    dev->impl = d;
    dev->ordinal = o->ordinal;
    return MLXN_STATUS_OK;
}

static void cuda_device_fini(mlxn_device *dev)
{
    free(dev->impl);
}

static mlxn_status cuda_device_info(const mlxn_device *dev, mlxn_device_info *out)
{
    static const char *fn = "mlxn_device_get_info";
    const mlxn_cuda_device *d = dev->impl;
    SET_DEVICE(fn, dev);
    snprintf(out->name, sizeof out->name, "%s", d->prop.name);
    size_t free_b = 0, total_b = 0;
    MLXN_CUDA_CHECK(fn, cudaMemGetInfo(&free_b, &total_b));
    out->total_memory = total_b;
    out->free_memory = free_b;
    out->compute_major = d->prop.major;
    out->compute_minor = d->prop.minor;
    out->multiprocessors = d->prop.multiProcessorCount;
    out->l2_bytes = (size_t)d->prop.l2CacheSize;
    return MLXN_STATUS_OK;
}

static mlxn_status cuda_alloc(mlxn_device *dev, size_t bytes, bool pinned, void **out)
{
    static const char *fn = "mlxn_buffer_create";
    SET_DEVICE(fn, dev);
    cudaError_t e = pinned ? cudaMallocHost(out, bytes ? bytes : 1)
                           : cudaMalloc(out, bytes ? bytes : 1);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "cannot allocate %zu bytes of %s",
                          bytes, pinned ? "pinned host memory" : "GPU memory");
    }
    MLXN_CUDA_CHECK(fn, e);
    return MLXN_STATUS_OK;
}

static void cuda_dealloc(mlxn_device *dev, void *ptr, bool pinned)
{
    if (cudaSetDevice(dev->ordinal) != cudaSuccess)
        return;
    if (pinned)
        cudaFreeHost(ptr);
    else
        cudaFree(ptr);
}

static mlxn_status cuda_copy(mlxn_device *dev, mlxn_stream *s, void *dst, const void *src,
                             size_t bytes, mlxn_copy_dir dir)
{
    static const char *fn = "mlxn_buffer_copy";
    SET_DEVICE(fn, dev);
    enum cudaMemcpyKind k = dir == MLXN_COPY_HOST_TO_DEVICE   ? cudaMemcpyHostToDevice
                            : dir == MLXN_COPY_DEVICE_TO_HOST ? cudaMemcpyDeviceToHost
                                                              : cudaMemcpyDeviceToDevice;
    if (s)
        MLXN_CUDA_CHECK(fn, cudaMemcpyAsync(dst, src, bytes, k, mlxn_cuda_stream(s)));
    else
        MLXN_CUDA_CHECK(fn, cudaMemcpy(dst, src, bytes, k));
    return MLXN_STATUS_OK;
}

static mlxn_status cuda_stream_init(mlxn_stream *s)
{
    static const char *fn = "mlxn_stream_create";
    SET_DEVICE(fn, s->device);
    mlxn_cuda_stream_state *st = calloc(1, sizeof *st);
    if (!st)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory for the stream");
    /* A blocking stream: synchronous copies (stream NULL) wait for work issued on it. */
    cudaError_t e = cudaStreamCreate(&st->stream);
    if (e != cudaSuccess) {
        free(st);
        MLXN_CUDA_CHECK(fn, e);
    }
    s->impl = st;
    return MLXN_STATUS_OK;
}

static void cuda_stream_fini(mlxn_stream *s)
{
    if (cudaSetDevice(s->device->ordinal) != cudaSuccess)
        return;
    if (s->capturing) {
        cudaGraph_t g = NULL;
        if (cudaStreamEndCapture(mlxn_cuda_stream(s), &g) == cudaSuccess && g)
            cudaGraphDestroy(g);
    }
    mlxn_cuda_stream_state *st = s->impl;
    mlxn_cuda_gemm_release(st);
    if (st->attention_partials)
        cudaFree(st->attention_partials);
    if (st->sample_scratch)
        cudaFree(st->sample_scratch);
    if (st->op_scratch)
        cudaFree(st->op_scratch);
    for (int i = 0; i < st->op_retired_count; i++)
        cudaFree(st->op_retired[i]);
    if (st->scan_scratch)
        cudaFree(st->scan_scratch);
    cudaStreamDestroy(st->stream);
    free(st);
}

static mlxn_status cuda_stream_sync(mlxn_stream *s)
{
    static const char *fn = "mlxn_stream_sync";
    SET_DEVICE(fn, s->device);
    MLXN_CUDA_CHECK(fn, cudaStreamSynchronize(mlxn_cuda_stream(s)));
    return MLXN_STATUS_OK;
}

static mlxn_status cuda_event_init(mlxn_event *e)
{
    static const char *fn = "mlxn_event_create";
    SET_DEVICE(fn, e->device);
    cudaEvent_t ev;
    MLXN_CUDA_CHECK(fn, cudaEventCreate(&ev));
    e->impl = ev;
    return MLXN_STATUS_OK;
}

static void cuda_event_fini(mlxn_event *e)
{
    if (cudaSetDevice(e->device->ordinal) == cudaSuccess)
        cudaEventDestroy((cudaEvent_t)e->impl);
}

static mlxn_status cuda_event_record(mlxn_event *e, mlxn_stream *s)
{
    static const char *fn = "mlxn_event_record";
    SET_DEVICE(fn, e->device);
    MLXN_CUDA_CHECK(fn, cudaEventRecord((cudaEvent_t)e->impl, mlxn_cuda_stream(s)));
    return MLXN_STATUS_OK;
}

static mlxn_status cuda_event_sync(mlxn_event *e)
{
    static const char *fn = "mlxn_event_sync";
    SET_DEVICE(fn, e->device);
    MLXN_CUDA_CHECK(fn, cudaEventSynchronize((cudaEvent_t)e->impl));
    return MLXN_STATUS_OK;
}

static mlxn_status cuda_event_elapsed(mlxn_event *a, mlxn_event *b, double *ms)
{
    static const char *fn = "mlxn_event_elapsed_ms";
    SET_DEVICE(fn, a->device);
    MLXN_CUDA_CHECK(fn, cudaEventSynchronize((cudaEvent_t)b->impl));
    float f = 0;
    MLXN_CUDA_CHECK(fn, cudaEventElapsedTime(&f, (cudaEvent_t)a->impl, (cudaEvent_t)b->impl));
    *ms = f;
    return MLXN_STATUS_OK;
}

static mlxn_status cuda_capture_begin(mlxn_stream *s)
{
    static const char *fn = "mlxn_stream_begin_capture";
    SET_DEVICE(fn, s->device);
    MLXN_CUDA_CHECK(fn, cudaStreamBeginCapture(mlxn_cuda_stream(s),
                                               cudaStreamCaptureModeThreadLocal));
    return MLXN_STATUS_OK;
}

static mlxn_status cuda_capture_end(mlxn_stream *s, mlxn_graph *g)
{
    static const char *fn = "mlxn_stream_end_capture";
    SET_DEVICE(fn, s->device);
    cudaGraph_t graph = NULL;
    MLXN_CUDA_CHECK(fn, cudaStreamEndCapture(mlxn_cuda_stream(s), &graph));
    if (mlxn_graph_profiling())
        mlxn_cuda_graph_profile(graph, mlxn_cuda_stream(s));
    cudaGraphExec_t exec = NULL;
    cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    MLXN_CUDA_CHECK(fn, e);
    g->impl = exec;
    return MLXN_STATUS_OK;
}

static mlxn_status cuda_graph_launch(mlxn_graph *g, mlxn_stream *s)
{
    static const char *fn = "mlxn_graph_launch";
    SET_DEVICE(fn, s->device);
    MLXN_CUDA_CHECK(fn, cudaGraphLaunch((cudaGraphExec_t)g->impl, mlxn_cuda_stream(s)));
    return MLXN_STATUS_OK;
}

static void cuda_graph_fini(mlxn_graph *g)
{
    if (cudaSetDevice(g->device->ordinal) == cudaSuccess)
        cudaGraphExecDestroy((cudaGraphExec_t)g->impl);
}

/* Programmatic dependent launch needs sm_90 (measured: 1.5-3 us less per norm kernel on an
 * H100, see bench/NOTES.md). */
static bool mlxn_cuda_pdl(const mlxn_stream *s)
{
    const mlxn_cuda_device *d = s->device->impl;
    return d->prop.major >= 9;
}

/* An op whose kernels are all behind one launcher in src/cuda/<op>.cu. */
#define MLXN_CUDA_OP(op, name)                                                                \
    static mlxn_status cuda_##op(mlxn_stream *s, const mlxn_##op##_args *a)                   \
    {                                                                                         \
        SET_DEVICE(name, s->device);                                                          \
        MLXN_CUDA_CHECK(name, mlxn_cuda_launch_##op(a, mlxn_cuda_stream(s), mlxn_cuda_pdl(s))); \
        return MLXN_STATUS_OK;                                                                \
    }
MLXN_CUDA_OP(rms_norm, "mlxn_rms_norm")
MLXN_CUDA_OP(qmatmul_mlx, "mlxn_qmatmul_mlx")
MLXN_CUDA_OP(act, "mlxn_activation")
MLXN_CUDA_OP(softmax, "mlxn_softmax")
MLXN_CUDA_OP(rope, "mlxn_rope")
MLXN_CUDA_OP(get_rows, "mlxn_get_rows")
MLXN_CUDA_OP(binary, "mlxn_binary")
MLXN_CUDA_OP(scale, "mlxn_scale")
MLXN_CUDA_OP(kv_append, "mlxn_kv_append")
MLXN_CUDA_OP(moe_reduce, "mlxn_moe_reduce")

MLXN_CUDA_OP(moe_gate, "mlxn_moe_gate")
MLXN_CUDA_OP(l2_norm, "mlxn_l2_norm")

/* Not through MLXN_CUDA_OP: cuda_copy is the backend's memory copy. */
static mlxn_status cuda_copy_op(mlxn_stream *s, const mlxn_copy_args *a)
{
    static const char *fn = "mlxn_copy";
    SET_DEVICE(fn, s->device);
    MLXN_CUDA_CHECK(fn, mlxn_cuda_launch_copy(a, mlxn_cuda_stream(s), mlxn_cuda_pdl(s)));
    return MLXN_STATUS_OK;
}

/* Stream memory of `bytes` in *slot, made zeroed at the first op that asks outside a capture (a
 * captured graph keeps its address) and kept until the stream is freed; NULL when captured
 * first or out of memory (the ops then take a path without it). */
static void *zeroed_memory(mlxn_stream *s, void **slot, size_t bytes)
{
    mlxn_cuda_stream_state *st = s->impl;
    if (!*slot && !s->capturing) {
        if (cudaMalloc(slot, bytes) != cudaSuccess) {
            (void)cudaGetLastError();
            *slot = NULL;
        } else if (cudaMemsetAsync(*slot, 0, bytes, st->stream) != cudaSuccess) {
            (void)cudaGetLastError();
            cudaFree(*slot);
            *slot = NULL;
        }
    }
    return *slot;
}

/* Without the scan scratch long rows scan one block per row. */
static mlxn_status cuda_cumsum(mlxn_stream *s, const mlxn_cumsum_args *a)
{
    static const char *fn = "mlxn_cumsum";
    SET_DEVICE(fn, s->device);
    mlxn_cuda_stream_state *st = s->impl;
    void *scan = zeroed_memory(s, &st->scan_scratch, MLXN_CUDA_SCAN_SCRATCH_BYTES);
    const mlxn_cuda_device *d = s->device->impl;
    MLXN_CUDA_CHECK(fn, mlxn_cuda_launch_cumsum(a, scan, scan ? MLXN_CUDA_SCAN_SCRATCH_BYTES : 0,
                                                d->prop.multiProcessorCount, st->stream, mlxn_cuda_pdl(s)));
    return MLXN_STATUS_OK;
}

static mlxn_status cuda_attention(mlxn_stream *s, const mlxn_attention_args *a)
{
    static const char *fn = "mlxn_attention";
    SET_DEVICE(fn, s->device);
    if (a->S > (1 << 30) || a->B * a->Tq * a->Hq > INT32_MAX)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn,
                          "the CUDA kernels take up to 2^30 cache slots and 2^31 - 1 query rows (B * Tq * Hq); "
                          "found S = %lld and %lld rows",
                          (long long)a->S, (long long)(a->B * a->Tq * a->Hq));
    mlxn_cuda_stream_state *st = s->impl;
    /* without it attention runs unsplit */
    void *partials = zeroed_memory(s, &st->attention_partials, MLXN_CUDA_ATTENTION_PARTIALS_BYTES);
    const mlxn_cuda_device *d = s->device->impl;
    MLXN_CUDA_CHECK(fn, mlxn_cuda_launch_attention(a, partials, partials ? MLXN_CUDA_ATTENTION_PARTIALS_BYTES : 0,
                                                   d->prop.multiProcessorCount, st->stream, mlxn_cuda_pdl(s)));
    return MLXN_STATUS_OK;
}

/* The stream's scratch for split argmax and sampling; without it the ops run one block per row. */
static void *sample_scratch(mlxn_stream *s)
{
    mlxn_cuda_stream_state *st = s->impl;
    return zeroed_memory(s, &st->sample_scratch, MLXN_CUDA_SAMPLE_SCRATCH_BYTES);
}

static mlxn_status cuda_argmax(mlxn_stream *s, const mlxn_argmax_args *a)
{
    static const char *fn = "mlxn_argmax";
    SET_DEVICE(fn, s->device);
    MLXN_CUDA_CHECK(fn, mlxn_cuda_launch_argmax(a, sample_scratch(s), mlxn_cuda_stream(s), mlxn_cuda_pdl(s)));
    return MLXN_STATUS_OK;
}

static mlxn_status cuda_sample(mlxn_stream *s, const mlxn_sample_args *a)
{
    static const char *fn = "mlxn_sample";
    SET_DEVICE(fn, s->device);
    MLXN_CUDA_CHECK(fn, mlxn_cuda_launch_sample(a, sample_scratch(s), mlxn_cuda_stream(s), mlxn_cuda_pdl(s)));
    return MLXN_STATUS_OK;
}

static mlxn_status cuda_qmatmul_plain(mlxn_stream *s, const mlxn_qmatmul_args *a)
{
    if (mlxn_cuda_gemm_takes(s, a))
        return mlxn_cuda_qmatmul_gemm(s, a);
    MLXN_CUDA_CHECK("mlxn_qmatmul", mlxn_cuda_launch_qmatmul(a, mlxn_cuda_stream(s), mlxn_cuda_pdl(s)));
    return MLXN_STATUS_OK;
}

/* The stream's scratch for one op's intermediate results (MoE routing maps, the passes of fused
 * products), at least `need` bytes; ops on a stream run in order, so they share it. It cannot
 * grow while the stream captures a graph, so a captured call needs one of its size (or larger)
 * run before.
 * Outgrown scratch stays allocated until the stream is freed: a graph captured earlier keeps its
 * address (sizes double from 64 KiB, so the retired ones add up to less than the current one). */
static mlxn_status stream_scratch(mlxn_stream *s, size_t need, const char *fn, void **out)
{
    mlxn_cuda_stream_state *st = s->impl;
    if (st->op_scratch_bytes < need) {
        if (s->capturing)
            return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                              "this call needs %zu bytes of stream scratch, which cannot grow "
                              "while capturing: run one of this size before capturing",
                              need);
        size_t bytes = st->op_scratch_bytes ? 2 * st->op_scratch_bytes : (size_t)64 << 10;
        while (bytes < need)
            bytes *= 2;
        const int cap = (int)(sizeof st->op_retired / sizeof st->op_retired[0]);
        if (st->op_scratch && st->op_retired_count == cap)
            return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "the stream's scratch was outgrown %d times",
                              cap);
        void *p = NULL;
        MLXN_CUDA_CHECK(fn, cudaMalloc(&p, bytes));
        if (st->op_scratch)
            st->op_retired[st->op_retired_count++] = st->op_scratch;
        st->op_scratch = p;
        st->op_scratch_bytes = bytes;
    }
    *out = st->op_scratch;
    return MLXN_STATUS_OK;
}

/* Fusions past the decode kernels (more than 8 rows of x): the normalized x and the plain
 * product in the stream's scratch, then the GLU / accumulation pass. */
static mlxn_status cuda_qmatmul_passes(mlxn_stream *s, const mlxn_qmatmul_args *a)
{
    static const char *fn = "mlxn_qmatmul_fused";
    mlxn_cuda_stream_state *st = s->impl;
    const bool epilogue = a->glu || a->accumulate;
    const size_t x_bytes = a->norm_w ? ((size_t)(a->M * a->K) * sizeof(float) + 255) / 256 * 256 : 0;
    const size_t need = x_bytes + (epilogue ? (size_t)(a->M * a->N) * sizeof(float) : 0);
    void *scratch = NULL;
    MLXN_TRY(stream_scratch(s, need, fn, &scratch));
    float *xn = scratch, *yt = (float *)((char *)scratch + x_bytes);
    mlxn_qmatmul_args p = *a; /* the plain product */
    p.norm_w = NULL;
    p.glu = p.accumulate = false;
    if (a->norm_w) {
        MLXN_CUDA_CHECK(fn, mlxn_cuda_launch_qmatmul_norm_x(a, xn, st->stream, mlxn_cuda_pdl(s)));
        p.x = (mlxn_rows){.base = (char *)xn, .d1 = 1, .d2 = a->M, .s2 = a->K * (int64_t)sizeof(float)};
        p.x_dtype = MLXN_DTYPE_F32;
    }
    if (epilogue)
        p.y = (mlxn_rows){.base = (char *)yt, .d1 = 1, .d2 = a->M, .s2 = a->N * (int64_t)sizeof(float)};
    MLXN_TRY(cuda_qmatmul_plain(s, &p));
    if (epilogue)
        MLXN_CUDA_CHECK(fn, mlxn_cuda_launch_qmatmul_epilogue(a, yt, st->stream, mlxn_cuda_pdl(s)));
    return MLXN_STATUS_OK;
}

/* The decode kernels (up to 8 rows of x) do the fusions themselves; the rope and KV append of a
 * q, k, v projection where the kernel can (mlxn_cuda_qmatmul_fuses_qkv), else as their own ops
 * after the product. */
static mlxn_status cuda_qmatmul(mlxn_stream *s, const mlxn_qmatmul_op_args *o)
{
    SET_DEVICE("mlxn_qmatmul", s->device);
    const mlxn_qmatmul_args *a = &o->mm;
    if ((o->rope_on || o->kv_on) && mlxn_cuda_qmatmul_fuses_qkv(o)) {
        MLXN_CUDA_CHECK("mlxn_qmatmul_fused", mlxn_cuda_launch_qmatmul_qkv(o, mlxn_cuda_stream(s), mlxn_cuda_pdl(s)));
        return MLXN_STATUS_OK;
    }
    if ((a->norm_w || a->glu || a->accumulate) && a->M > 8)
        MLXN_TRY(cuda_qmatmul_passes(s, a));
    else
        MLXN_TRY(cuda_qmatmul_plain(s, a));
    if (o->rope_on)
        MLXN_TRY(cuda_rope(s, &o->rope));
    if (o->kv_on)
        MLXN_TRY(cuda_kv_append(s, &o->kv));
    return MLXN_STATUS_OK;
}

static mlxn_status cuda_moe_route_map(mlxn_stream *s, const mlxn_moe_route_map_args *a)
{
    static const char *fn = "mlxn_moe_route_map";
    SET_DEVICE(fn, s->device);
    void *counts = NULL;
    MLXN_TRY(stream_scratch(s, sizeof(int32_t) * (size_t)a->n_experts, fn, &counts));
    MLXN_CUDA_CHECK(fn, mlxn_cuda_launch_moe_route_map(a, counts, mlxn_cuda_stream(s), mlxn_cuda_pdl(s)));
    return MLXN_STATUS_OK;
}

static mlxn_status cuda_qmatmul_id(mlxn_stream *s, const mlxn_qmatmul_id_args *a)
{
    const char *fn = a->w_up ? "mlxn_qmatmul_id_swiglu" : "mlxn_qmatmul_id";
    SET_DEVICE(fn, s->device);
    void *scratch = NULL;
    const size_t need = mlxn_cuda_qmatmul_id_scratch_bytes(a);
    if (need)
        MLXN_TRY(stream_scratch(s, need, fn, &scratch));
    MLXN_CUDA_CHECK(fn, mlxn_cuda_launch_qmatmul_id(a, scratch, mlxn_cuda_stream(s), mlxn_cuda_pdl(s)));
    return MLXN_STATUS_OK;
}

const mlxn_backend mlxn_cuda_backend = {
    .name = "cuda",
    .records_in_core = false,
    .device_init = cuda_device_init,
    .device_fini = cuda_device_fini,
    .device_info = cuda_device_info,
    .alloc = cuda_alloc,
    .dealloc = cuda_dealloc,
    .copy = cuda_copy,
    .stream_init = cuda_stream_init,
    .stream_fini = cuda_stream_fini,
    .stream_sync = cuda_stream_sync,
    .event_init = cuda_event_init,
    .event_fini = cuda_event_fini,
    .event_record = cuda_event_record,
    .event_sync = cuda_event_sync,
    .event_elapsed_ms = cuda_event_elapsed,
    .capture_begin = cuda_capture_begin,
    .capture_end = cuda_capture_end,
    .graph_launch = cuda_graph_launch,
    .graph_fini = cuda_graph_fini,
    .ops = {
        .rms_norm = cuda_rms_norm,
        .qmatmul_mlx = cuda_qmatmul_mlx,
        .qmatmul = cuda_qmatmul,
        .act = cuda_act,
        .softmax = cuda_softmax,
        .rope = cuda_rope,
        .get_rows = cuda_get_rows,
        .binary = cuda_binary,
        .scale = cuda_scale,
        .argmax = cuda_argmax,
        .attention = cuda_attention,
        .kv_append = cuda_kv_append,
        .sample = cuda_sample,
        .moe_route_map = cuda_moe_route_map,
        .qmatmul_id = cuda_qmatmul_id,
        .moe_gate = cuda_moe_gate,
        .moe_reduce = cuda_moe_reduce,
        .copy = cuda_copy_op,
        .l2_norm = cuda_l2_norm,
        .cumsum = cuda_cumsum,
    },
};
