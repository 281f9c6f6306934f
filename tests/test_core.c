/* Unit tests of the core objects: status and dtype tables, tensor views, buffers, the pool,
 * streams, events and graph replay, on the CPU and on every CUDA device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/softmax_math.h"
#include "cpu/ref/ref.h"
#include "harness.h"
#include "mlxn_quant.h"

#define EXPECT(name, cond, ...)                 \
    do {                                        \
        if (cond)                               \
            harness_pass(name);                 \
        else                                    \
            harness_fail(name, __VA_ARGS__);    \
    } while (0)

static void test_tables(void)
{
    EXPECT("status/names", strcmp(mlxn_status_str(MLXN_STATUS_ERR_SHAPE), "MLXN_STATUS_ERR_SHAPE") == 0 &&
                               strcmp(mlxn_status_str((mlxn_status)999), "MLXN_STATUS_UNKNOWN") == 0,
           "wrong status names");
    bool ok = true;
    for (int i = 0; i < MLXN_STATUS_COUNT; i++)
        ok = ok && strncmp(mlxn_status_str((mlxn_status)i), "MLXN_STATUS_", 12) == 0;
    EXPECT("status/all-named", ok, "a status has no name");
    EXPECT("version", strcmp(mlxn_version(), "0.1.0") == 0, "version is %s", mlxn_version());
    EXPECT("dtype/q4_K", strcmp(mlxn_dtype_name(MLXN_DTYPE_Q4_K), "q4_K") == 0 &&
                             mlxn_dtype_block_elems(MLXN_DTYPE_Q4_K) == 256 &&
                             mlxn_dtype_block_bytes(MLXN_DTYPE_Q4_K) == 144,
           "q4_K geometry wrong");
    EXPECT("dtype/mlx_q3", mlxn_dtype_block_bytes(MLXN_DTYPE_MLX_Q3) == 12 &&
                               mlxn_dtype_is_quantized(MLXN_DTYPE_MLX_Q3),
           "mlx_q3 geometry wrong");
    ok = true;
    for (int i = 0; i < MLXN_DTYPE_COUNT; i++)
        ok = ok && strcmp(mlxn_dtype_name((mlxn_dtype)i), "?") != 0 &&
             mlxn_dtype_block_bytes((mlxn_dtype)i) > 0;
    EXPECT("dtype/all-described", ok, "a dtype lacks a name or size");
    EXPECT("dtype/invalid", strcmp(mlxn_dtype_name(MLXN_DTYPE_COUNT), "?") == 0 &&
                                mlxn_dtype_block_bytes(MLXN_DTYPE_COUNT) == 0,
           "invalid dtype described");
}

/* mlxn_softmax_merge as CUDA's generic softmax kernel combines it (an element enters as (z, 1), a
 * thread's elements in turn, a warp's lanes by butterfly, then the warps in order), on the host
 * against the oracle (mlxn_ref_softmax): masked (-inf) logits, fully masked rows and rows with a
 * NaN logit, with the op harness's f32 bound (2e-5 of the row's largest output). */
static void test_softmax_merge(rng *g)
{
    enum { WARPS = 8, LANES = 32, THREADS = WARPS * LANES, NMAX = 700 };
    float z[NMAX], want[NMAX];
    int bad = 0;
    for (int row = 0; row < 3000 && !bad; row++) {
        const int n = (int)rng_int(g, 1, NMAX);
        const int kind = (int)rng_int(g, 0, 5); /* 0: all masked, 1: one NaN, else some masked */
        const double p_mask = kind == 0 ? 1.0 : rng_uniform(g);
        for (int i = 0; i < n; i++)
            z[i] = rng_uniform(g) < p_mask ? -INFINITY : (float)(4.0 * rng_normal(g));
        if (kind == 1)
            z[rng_int(g, 0, n - 1)] = NAN;
        float m[THREADS], s[THREADS];
        for (int t = 0; t < THREADS; t++) {
            m[t] = -INFINITY;
            s[t] = 0.0f;
            for (int i = t; i < n; i += THREADS)
                mlxn_softmax_merge(&m[t], &s[t], z[i], 1.0f);
        }
        for (int o = LANES / 2; o > 0; o >>= 1) {
            float m2[THREADS], s2[THREADS];
            for (int t = 0; t < THREADS; t++) {
                m2[t] = m[t ^ o];
                s2[t] = s[t ^ o];
            }
            for (int t = 0; t < THREADS; t++)
                mlxn_softmax_merge(&m[t], &s[t], m2[t], s2[t]);
        }
        float rm = m[0], rs = s[0];
        for (int w = 1; w < WARPS; w++)
            mlxn_softmax_merge(&rm, &rs, m[w * LANES], s[w * LANES]);
        const mlxn_rows one = {.d1 = 1, .d2 = 1};
        mlxn_softmax_args a = {.n_rows = 1, .n = n, .dtype = MLXN_DTYPE_F32, .scale = 1.0f, .x = one, .y = one};
        a.x.base = (char *)z;
        a.y.base = (char *)want;
        mlxn_ref_softmax(&a);
        float top = 0.0f;
        for (int i = 0; i < n; i++)
            top = fmaxf(top, want[i]);
        for (int i = 0; i < n && !bad; i++) {
            const float got = mlxn_softmax_out(z[i], rm, rs, false);
            if (isnan(want[i]) != isnan(got) || (!isnan(want[i]) && fabsf(got - want[i]) > 2e-5f * top)) {
                bad = 1;
                harness_fail("softmax/merge", "row %d (n %d, kind %d) element %d: got %g, expected %g", row, n, kind, i,
                             (double)got, (double)want[i]);
            }
        }
    }
    if (!bad)
        harness_pass("softmax/merge");
}

static void test_views(mlxn_device *cpu)
{
    mlxn_buffer *b = NULL;
    if (mlxn_buffer_create(cpu, 4096, &b) != MLXN_STATUS_OK) {
        harness_fail("views", "%s", mlxn_last_error());
        return;
    }
    int64_t s[3] = {2, 3, 4};
    mlxn_tensor t = mlxn_tensor_make(b, 16, MLXN_DTYPE_F32, 3, s);
    EXPECT("views/make", t.stride[2] == 4 && t.stride[1] == 16 && t.stride[0] == 48 &&
                             mlxn_tensor_numel(&t) == 24 && mlxn_tensor_is_contiguous(&t) &&
                             mlxn_tensor_span_bytes(&t) == 96,
           "contiguous view wrong");
    EXPECT("views/validate", mlxn_tensor_validate(&t) == MLXN_STATUS_OK, "%s", mlxn_last_error());
    mlxn_tensor tt = t;
    tt.stride[0] = 16;
    tt.stride[1] = 32; /* transposed outer dims */
    EXPECT("views/transposed", !mlxn_tensor_is_contiguous(&tt) && mlxn_tensor_span_bytes(&tt) == 96,
           "transposed view wrong (span %zu)", mlxn_tensor_span_bytes(&tt));
    int64_t q[2] = {3, 512};
    mlxn_tensor qt = mlxn_tensor_make(b, 0, MLXN_DTYPE_Q4_0, 2, q);
    EXPECT("views/quantized", qt.stride[0] == 16 * 18 && mlxn_tensor_span_bytes(&qt) == 3 * 16 * 18 &&
                                  mlxn_tensor_validate(&qt) == MLXN_STATUS_OK,
           "q4_0 view wrong");
    int64_t q2[2] = {3, 500};
    qt = mlxn_tensor_make(b, 0, MLXN_DTYPE_Q4_0, 2, q2);
    EXPECT("views/quantized-partial-block", mlxn_tensor_validate(&qt) == MLXN_STATUS_ERR_SHAPE &&
                                                strstr(mlxn_last_error(), "multiple of the q4_0 block"),
           "got %s", mlxn_last_error());
    int64_t huge[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
    mlxn_tensor h = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, huge);
    EXPECT("views/overflow", mlxn_tensor_validate(&h) == MLXN_STATUS_ERR_SHAPE, "overflow accepted");
    mlxn_tensor past = mlxn_tensor_make(b, 4008, MLXN_DTYPE_F32, 3, s);
    EXPECT("views/past-end", mlxn_tensor_validate(&past) == MLXN_STATUS_ERR_SHAPE, "view past end accepted");
    mlxn_tensor bad = t;
    bad.ndim = 5;
    EXPECT("views/ndim", mlxn_tensor_validate(&bad) == MLXN_STATUS_ERR_SHAPE, "ndim 5 accepted");
    bad = t;
    bad.stride[0] = -4;
    EXPECT("views/negative-stride", mlxn_tensor_validate(&bad) == MLXN_STATUS_ERR_SHAPE,
           "negative stride accepted");
    EXPECT("views/null", mlxn_tensor_validate(NULL) == MLXN_STATUS_ERR_INVALID_ARG, "NULL accepted");
    /* alignment: a view starts and steps on multiples of its element's (a GGML block's f16 fields') */
    mlxn_tensor al = mlxn_tensor_make(b, 18, MLXN_DTYPE_F32, 3, s);
    EXPECT("views/misaligned-start", mlxn_tensor_validate(&al) == MLXN_STATUS_ERR_SHAPE &&
                                         strstr(mlxn_last_error(), "multiple of 4 bytes"),
           "f32 view at offset 18: %s", mlxn_last_error());
    al = mlxn_tensor_make(b, 18, MLXN_DTYPE_F16, 3, s);
    EXPECT("views/aligned-f16", mlxn_tensor_validate(&al) == MLXN_STATUS_OK, "f16 view at offset 18: %s",
           mlxn_last_error());
    al = t;
    al.stride[1] = 18;
    EXPECT("views/misaligned-stride", mlxn_tensor_validate(&al) == MLXN_STATUS_ERR_SHAPE &&
                                          strstr(mlxn_last_error(), "stride 18 of dim 1"),
           "f32 stride 18: %s", mlxn_last_error());
    int64_t s1[3] = {1, 3, 4};
    al = mlxn_tensor_make(b, 16, MLXN_DTYPE_F32, 3, s1);
    al.stride[0] = 7; /* a dim of one element is never stepped */
    EXPECT("views/unit-dim-stride", mlxn_tensor_validate(&al) == MLXN_STATUS_OK, "%s", mlxn_last_error());
    qt = mlxn_tensor_make(b, 1, MLXN_DTYPE_Q8_0, 2, q); /* GGML blocks anywhere (q8_0 caches at odd offsets) */
    EXPECT("views/odd-blocks", mlxn_tensor_validate(&qt) == MLXN_STATUS_OK, "q8_0 view at offset 1: %s",
           mlxn_last_error());
    al = mlxn_tensor_make(b, 2, MLXN_DTYPE_MLX_Q4, 2, q);
    EXPECT("views/misaligned-mlx", mlxn_tensor_validate(&al) == MLXN_STATUS_ERR_SHAPE, "mlx_q4 view at offset 2 accepted");
    mlxn_buffer_free(b);
}

/* Buffers, pool, streams, events and graphs on one device. */
static void test_device_objects(test_device *td, rng *g)
{
    char name[128];
    mlxn_device *dev = td->device;
    mlxn_stream *s = td->stream;
    mlxn_buffer *b = NULL, *sub = NULL, *pinned = NULL;
    mlxn_pool *pool = NULL;
    mlxn_graph *graph = NULL;
    mlxn_event *e0 = NULL, *e1 = NULL;
    float *host = NULL, *back = NULL;
    const int n = 4096;

#define NAME(x) (snprintf(name, sizeof name, "%s @%s", x, td->name), name)
    host = malloc(n * sizeof(float));
    back = malloc(n * sizeof(float));
    if (!host || !back) {
        harness_fail(NAME("objects"), "out of memory");
        goto fail;
    }
    for (int i = 0; i < n; i++)
        host[i] = (float)rng_normal(g);

    /* Buffers: round trip, sub-ranges, pinned memory. */
    CHECK_OK(NAME("buffer/create"), mlxn_buffer_create(dev, n * sizeof(float), &b));
    CHECK_OK(NAME("buffer/upload"), mlxn_buffer_upload(b, 0, host, n * sizeof(float), NULL));
    memset(back, 0, n * sizeof(float));
    CHECK_OK(NAME("buffer/download"), mlxn_buffer_download(b, 0, back, n * sizeof(float), NULL));
    EXPECT(NAME("buffer/round-trip"), memcmp(host, back, n * sizeof(float)) == 0, "data differs");
    CHECK_OK(NAME("buffer/sub"), mlxn_buffer_create_sub(b, 1024, 512, &sub));
    memset(back, 0, 512);
    CHECK_OK(NAME("buffer/sub-download"), mlxn_buffer_download(sub, 0, back, 512, NULL));
    EXPECT(NAME("buffer/sub-range"), memcmp(back, (char *)host + 1024, 512) == 0 &&
                                         mlxn_buffer_size(sub) == 512,
           "sub-range reads the wrong bytes");
    EXPECT(NAME("buffer/sub-out-of-range"),
           mlxn_buffer_download(sub, 256, back, 512, NULL) == MLXN_STATUS_ERR_SHAPE,
           "read past a sub-buffer accepted");
    CHECK_OK(NAME("buffer/pinned"), mlxn_buffer_create_pinned(dev, 1 << 16, &pinned));
    EXPECT(NAME("buffer/pinned-host-visible"), mlxn_buffer_host_ptr(pinned) != NULL,
           "pinned memory has no host address");
    EXPECT(NAME("buffer/device-ptr"),
           (mlxn_buffer_host_ptr(b) != NULL) == (td->device && strncmp(td->name, "cpu", 3) == 0),
           "host visibility of device memory wrong");

    /* Streams: copies and ops issued in order on one stream. */
    {
        int64_t sh[2] = {2, 1024};
        mlxn_tensor x = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, sh);
        mlxn_tensor y = mlxn_tensor_make(b, 8192, MLXN_DTYPE_F32, 2, sh);
        for (int round = 0; round < 3; round++) {
            for (int i = 0; i < 2048; i++)
                host[i] = (float)(rng_normal(g) * (round + 1));
            CHECK_OK(NAME("stream/upload"), mlxn_buffer_upload(b, 0, host, 2048 * 4, s));
            CHECK_OK(NAME("stream/op"), mlxn_rms_norm(s, &x, NULL, 1e-6f, &y));
            CHECK_OK(NAME("stream/download"), mlxn_buffer_download(b, 8192, back, 2048 * 4, s));
            CHECK_OK(NAME("stream/sync"), mlxn_stream_sync(s));
            double ss = 0;
            for (int i = 0; i < 1024; i++)
                ss += (double)host[i] * host[i];
            double sc = 1.0 / sqrt(ss / 1024 + 1e-6);
            double err = 0;
            for (int i = 0; i < 1024; i++)
                err = fmax(err, fabs(back[i] - host[i] * sc));
            EXPECT(NAME("stream/order"), err < 1e-5, "round %d: result of the previous upload (err %g)",
                   round, err);
        }
    }

    /* Events: elapsed time of recorded work. */
    CHECK_OK(NAME("event/create"), mlxn_event_create(dev, &e0));
    CHECK_OK(NAME("event/create"), mlxn_event_create(dev, &e1));
    EXPECT(NAME("event/unrecorded"), mlxn_event_sync(e0) == MLXN_STATUS_ERR_INVALID_ARG,
           "sync of an unrecorded event accepted");
    CHECK_OK(NAME("event/record"), mlxn_event_record(e0, s));
    CHECK_OK(NAME("event/copy"), mlxn_buffer_copy(b, 0, b, 8192, 8192, s));
    CHECK_OK(NAME("event/record"), mlxn_event_record(e1, s));
    {
        double ms = -1;
        CHECK_OK(NAME("event/elapsed"), mlxn_event_elapsed_ms(e0, e1, &ms));
        EXPECT(NAME("event/elapsed-range"), ms >= 0 && ms < 10000, "elapsed %g ms", ms);
    }

    /* Graphs: a captured sequence replayed on new inputs equals eager execution; nothing
     * runs during capture. */
    {
        int64_t sh[2] = {3, 256};
        const size_t bytes = 3 * 256 * 4;
        mlxn_tensor x = mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 2, sh);
        mlxn_tensor r = mlxn_tensor_make(b, bytes, MLXN_DTYPE_F32, 2, sh);
        mlxn_tensor y = mlxn_tensor_make(b, 2 * bytes, MLXN_DTYPE_F32, 2, sh);
        mlxn_tensor sum = mlxn_tensor_make(b, 3 * bytes, MLXN_DTYPE_F32, 2, sh);
        mlxn_tensor z = mlxn_tensor_make(b, 4 * bytes, MLXN_DTYPE_F32, 2, sh);
        float *eager = malloc(bytes), *replayed = malloc(bytes), *nan = malloc(bytes);
        if (!eager || !replayed || !nan) {
            free(eager);
            free(replayed);
            free(nan);
            harness_fail(NAME("graph"), "out of memory");
            goto fail;
        }
        for (int i = 0; i < 768; i++)
            nan[i] = NAN;
        bool ok = true;
        for (int i = 0; i < 1536; i++)
            host[i] = (float)rng_normal(g);
        /* capture: z = norm(y + r) where y = norm(x) */
        ok = ok && mlxn_buffer_upload(b, 0, host, 2 * bytes, NULL) == MLXN_STATUS_OK;
        ok = ok && mlxn_buffer_upload(b, 4 * bytes, nan, bytes, NULL) == MLXN_STATUS_OK;
        ok = ok && mlxn_stream_begin_capture(s) == MLXN_STATUS_OK;
        ok = ok && mlxn_rms_norm(s, &x, NULL, 1e-6f, &y) == MLXN_STATUS_OK;
        ok = ok && mlxn_add_rms_norm(s, &y, &r, NULL, 1e-6f, &sum, &z) == MLXN_STATUS_OK;
        ok = ok && mlxn_stream_end_capture(s, &graph) == MLXN_STATUS_OK;
        if (!ok) {
            harness_fail(NAME("graph/capture"), "%s", mlxn_last_error());
        } else {
            ok = mlxn_buffer_download(b, 4 * bytes, replayed, bytes, NULL) == MLXN_STATUS_OK;
            EXPECT(NAME("graph/capture-does-not-run"), ok && isnan(replayed[0]) && isnan(replayed[767]),
                   "ops ran during capture");
            /* new inputs, replay twice (the second replay must give the same) */
            for (int i = 0; i < 1536; i++)
                host[i] = (float)rng_normal(g);
            ok = mlxn_buffer_upload(b, 0, host, 2 * bytes, NULL) == MLXN_STATUS_OK &&
                 mlxn_graph_launch(graph, s) == MLXN_STATUS_OK &&
                 mlxn_graph_launch(graph, s) == MLXN_STATUS_OK && mlxn_stream_sync(s) == MLXN_STATUS_OK &&
                 mlxn_buffer_download(b, 4 * bytes, replayed, bytes, NULL) == MLXN_STATUS_OK;
            /* eager on the same inputs */
            ok = ok && mlxn_buffer_upload(b, 4 * bytes, nan, bytes, NULL) == MLXN_STATUS_OK &&
                 mlxn_rms_norm(s, &x, NULL, 1e-6f, &y) == MLXN_STATUS_OK &&
                 mlxn_add_rms_norm(s, &y, &r, NULL, 1e-6f, &sum, &z) == MLXN_STATUS_OK &&
                 mlxn_stream_sync(s) == MLXN_STATUS_OK &&
                 mlxn_buffer_download(b, 4 * bytes, eager, bytes, NULL) == MLXN_STATUS_OK;
            EXPECT(NAME("graph/replay-equals-eager"), ok && memcmp(eager, replayed, bytes) == 0 && !isnan(eager[0]),
                   "replay differs from eager execution (%s)", ok ? "data" : mlxn_last_error());
            EXPECT(NAME("graph/launch-while-capturing"),
                   mlxn_stream_begin_capture(s) == MLXN_STATUS_OK &&
                       mlxn_graph_launch(graph, s) == MLXN_STATUS_ERR_UNSUPPORTED,
                   "launch into a capturing stream accepted");
            mlxn_graph *g2 = NULL;
            EXPECT(NAME("graph/empty"), mlxn_stream_end_capture(s, &g2) == MLXN_STATUS_OK,
                   "empty capture failed: %s", mlxn_last_error());
            mlxn_graph_free(g2);
        }
        EXPECT(NAME("graph/end-without-begin"),
               mlxn_stream_end_capture(s, &(mlxn_graph *){NULL}) == MLXN_STATUS_ERR_INVALID_ARG,
               "end without begin accepted");
        free(eager);
        free(replayed);
        free(nan);
    }

    /* Pool: a repeated sequence of requests reuses memory after each reset. */
    CHECK_OK(NAME("pool/create"), mlxn_pool_create(dev, &pool));
    {
        static const size_t sizes[] = {100, 4096, 5000, 1 << 20, 300, 100};
        bool ok = true;
        for (int step = 0; step < 3 && ok; step++) {
            mlxn_buffer *got[6];
            for (int i = 0; i < 6 && ok; i++) {
                ok = mlxn_pool_alloc(pool, sizes[i], &got[i]) == MLXN_STATUS_OK &&
                     mlxn_buffer_size(got[i]) == sizes[i];
                if (ok && i > 0)
                    ok = got[i] != got[i - 1];
            }
            if (ok) /* a buffer from the pool is a working buffer */
                ok = mlxn_buffer_upload(got[3], 0, host, 4096, NULL) == MLXN_STATUS_OK &&
                     mlxn_buffer_download(got[3], 0, back, 4096, NULL) == MLXN_STATUS_OK &&
                     memcmp(host, back, 4096) == 0;
            mlxn_pool_reset(pool);
        }
        mlxn_pool_stats st = mlxn_pool_get_stats(pool);
        EXPECT(NAME("pool/reuse"), ok && st.device_allocations == 6 && st.reuses == 12 &&
                                       st.bytes_in_use == 0,
               "allocations %llu reuses %llu in use %zu (%s)", (unsigned long long)st.device_allocations,
               (unsigned long long)st.reuses, st.bytes_in_use, ok ? "" : mlxn_last_error());
        EXPECT(NAME("pool/buckets"), st.bytes_reserved == 256 * 2 + 4096 + 8192 + (1 << 20) + 512,
               "reserved %zu", st.bytes_reserved);
        mlxn_buffer *one = NULL;
        ok = mlxn_pool_alloc(pool, 4000, &one) == MLXN_STATUS_OK;
        mlxn_buffer_free(one); /* early return to the pool */
        mlxn_buffer *again = NULL;
        ok = ok && mlxn_pool_alloc(pool, 4000, &again) == MLXN_STATUS_OK && again == one;
        EXPECT(NAME("pool/early-free"), ok && mlxn_pool_get_stats(pool).device_allocations == 6,
               "early-freed buffer not reused");
        mlxn_pool_trim(pool);
        st = mlxn_pool_get_stats(pool);
        EXPECT(NAME("pool/trim"), st.bytes_reserved == 4096 && st.bytes_in_use == 4096,
               "after trim reserved %zu in use %zu", st.bytes_reserved, st.bytes_in_use);
    }

fail:
    mlxn_pool_free(pool);
    mlxn_graph_free(graph);
    mlxn_event_free(e0);
    mlxn_event_free(e1);
    mlxn_buffer_free(pinned);
    mlxn_buffer_free(sub);
    mlxn_buffer_free(b);
    free(host);
    free(back);
#undef NAME
}

/* A captured prefill-sized quantized matmul (the CUDA tensor-core path keeps a cuBLAS handle
 * and scratch on the stream): refused with a clear error on a stream that has not yet run one
 * of its size (nothing can be allocated during capture), and after one eager call, replayed
 * on new inputs it equals eager execution. */
#define NAME(x) (snprintf(name, sizeof name, "%s @%s", x, td->name), name)
static void test_graph_qmatmul(test_device *td, rng *g)
{
    enum { M = 64, N = 40, K = 256 };
    char name[128];
    mlxn_stream *s = NULL;
    mlxn_buffer *b = NULL;
    mlxn_graph *graph = NULL, *empty = NULL;
    float *host = malloc((M * K + N * K) * sizeof(float)), *eager = malloc(M * N * 4), *replayed = malloc(M * N * 4);
    uint8_t *wq = malloc(N * (K / 32) * 34);
    const size_t xoff = 0, woff = M * K * 4, yoff = woff + N * (K / 32) * 34 + 256;
    if (!host || !eager || !replayed || !wq || mlxn_stream_create(td->device, &s) != MLXN_STATUS_OK ||
        mlxn_buffer_create(td->device, yoff + M * N * 4, &b) != MLXN_STATUS_OK) {
        harness_fail(NAME("graph/qmatmul"), "setup: %s", mlxn_last_error());
        goto done;
    }
    for (int i = 0; i < M * K + N * K; i++)
        host[i] = (float)rng_normal(g);
    int64_t xs[2] = {M, K}, ws[2] = {N, K}, ys[2] = {M, N};
    mlxn_tensor x = mlxn_tensor_make(b, xoff, MLXN_DTYPE_F32, 2, xs);
    mlxn_tensor w = mlxn_tensor_make(b, woff, MLXN_DTYPE_Q8_0, 2, ws);
    mlxn_tensor y = mlxn_tensor_make(b, yoff, MLXN_DTYPE_F32, 2, ys);
    bool ok = mlxn_ggml_quantize(MLXN_DTYPE_Q8_0, host + M * K, N * K, wq) == MLXN_STATUS_OK &&
              mlxn_buffer_upload(b, xoff, host, M * K * 4, NULL) == MLXN_STATUS_OK &&
              mlxn_buffer_upload(b, woff, wq, N * (K / 32) * 34, NULL) == MLXN_STATUS_OK;
    /* a fresh stream, capturing */
    ok = ok && mlxn_stream_begin_capture(s) == MLXN_STATUS_OK;
    mlxn_status st = mlxn_qmatmul(s, &x, &w, &y);
    if (strncmp(td->name, "cuda", 4) == 0)
        EXPECT(NAME("graph/qmatmul-unsized-capture"),
               st == MLXN_STATUS_ERR_INVALID_ARG && strstr(mlxn_last_error(), "before capturing"),
               "returned %s: %s", mlxn_status_str(st), mlxn_last_error());
    ok = ok && mlxn_stream_end_capture(s, &empty) == MLXN_STATUS_OK;
    /* eager once (sizes the stream's state), then capture and replay on new inputs */
    ok = ok && mlxn_qmatmul(s, &x, &w, &y) == MLXN_STATUS_OK && mlxn_stream_begin_capture(s) == MLXN_STATUS_OK &&
         mlxn_qmatmul(s, &x, &w, &y) == MLXN_STATUS_OK && mlxn_stream_end_capture(s, &graph) == MLXN_STATUS_OK;
    for (int i = 0; i < M * K; i++)
        host[i] = (float)rng_normal(g);
    ok = ok && mlxn_buffer_upload(b, xoff, host, M * K * 4, NULL) == MLXN_STATUS_OK &&
         mlxn_graph_launch(graph, s) == MLXN_STATUS_OK && mlxn_stream_sync(s) == MLXN_STATUS_OK &&
         mlxn_buffer_download(b, yoff, replayed, M * N * 4, NULL) == MLXN_STATUS_OK &&
         mlxn_qmatmul(s, &x, &w, &y) == MLXN_STATUS_OK && mlxn_stream_sync(s) == MLXN_STATUS_OK &&
         mlxn_buffer_download(b, yoff, eager, M * N * 4, NULL) == MLXN_STATUS_OK;
    EXPECT(NAME("graph/qmatmul-replay-equals-eager"), ok && memcmp(eager, replayed, M * N * 4) == 0,
           "%s", ok ? "replay differs from eager" : mlxn_last_error());
done:
    mlxn_graph_free(graph);
    mlxn_graph_free(empty);
    mlxn_buffer_free(b);
    mlxn_stream_free(s);
    free(host);
    free(eager);
    free(replayed);
    free(wq);
}
#undef NAME

static void test_devices_api(test_devices *devs)
{
    for (int i = 0; i < devs->count; i++) {
        mlxn_device_info info;
        char name[96];
        snprintf(name, sizeof name, "device/info @%s", devs->list[i].name);
        mlxn_status st = mlxn_device_get_info(devs->list[i].device, &info);
        EXPECT(name, st == MLXN_STATUS_OK && info.name[0] && info.total_memory > 0 && info.multiprocessors > 0,
               "%s", mlxn_last_error());
        if (st == MLXN_STATUS_OK)
            printf("  %s: %s, %.1f GiB, %d %s\n", devs->list[i].name, info.name,
                   (double)info.total_memory / (1 << 30), info.multiprocessors,
                   info.kind == MLXN_DEVICE_CUDA ? "SMs" : "threads");
    }
    mlxn_device *d = (mlxn_device *)1;
    mlxn_device_options o = mlxn_device_options_default();
    o.kind = MLXN_DEVICE_CUDA;
    o.ordinal = 99;
    mlxn_status st = mlxn_device_create(&o, &d);
    EXPECT("device/cuda-99", d == NULL && st != MLXN_STATUS_OK && mlxn_last_error()[0],
           "opening CUDA device 99 did not fail cleanly");
    o = mlxn_device_options_default();
    o.kind = (mlxn_device_kind)7;
    EXPECT("device/bad-kind", mlxn_device_create(&o, &d) == MLXN_STATUS_ERR_INVALID_ARG,
           "bad kind accepted");
    mlxn_device_free(NULL);
    mlxn_buffer_free(NULL);
    mlxn_stream_free(NULL);
    mlxn_pool_free(NULL);
    mlxn_graph_free(NULL);
    mlxn_event_free(NULL);
    harness_pass("free-null");
}

int main(int argc, char **argv)
{
    rng g = {.s = harness_seed(argc, argv)};
    test_tables();
    test_softmax_merge(&g);
    test_devices devs;
    if (!test_devices_open(&devs))
        return 1;
    test_views(devs.ref.device);
    test_devices_api(&devs);
    for (int i = 0; i < devs.count; i++) {
        test_device_objects(&devs.list[i], &g);
        test_graph_qmatmul(&devs.list[i], &g);
    }
    test_devices_close(&devs);
    return harness_finish();
}
