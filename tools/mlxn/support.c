/* mlxn test --support: the op x dtype x backend coverage table, found by asking the code rather
 * than kept by hand. For every op of the op list (src/core/op_list.h) a probe issues the op once
 * on tiny zero-filled tensors with its main operand in each dtype; a dtype is listed when the
 * call returns OK, so the answer comes from the core's checks and the backend's op table (a NULL
 * entry returns UNSUPPORTED), the same path a caller takes. Ops run for real (on the CPU, and on
 * the GPU when there is one). Without a GPU the CUDA column lists, for the ops this build has
 * CUDA kernels for (non-NULL entries of its op table), the dtypes the core's checks accept. An
 * op added to the list without a probe here shows as "no probe". */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/internal.h"

enum { X_AT = 0, W_AT = 256 << 10, Y_AT = 512 << 10, AUX_AT = 768 << 10, PROBE_BYTES = 1 << 20 };

typedef mlxn_status (*probe_fn)(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt);

static mlxn_tensor t2(mlxn_buffer *b, size_t at, mlxn_dtype dt, int64_t r, int64_t n)
{
    const int64_t shape[2] = {r, n};
    return mlxn_tensor_make(b, at, dt, 2, shape);
}

static mlxn_tensor t4(mlxn_buffer *b, size_t at, mlxn_dtype dt, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    const int64_t shape[4] = {d0, d1, d2, d3};
    return mlxn_tensor_make(b, at, dt, 4, shape);
}

static mlxn_tensor ids(mlxn_buffer *b, int64_t n)
{
    return mlxn_tensor_make(b, AUX_AT, MLXN_DTYPE_I32, 1, &n);
}

static mlxn_status probe_rms_norm(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor x = t2(b, X_AT, dt, 2, 256), y = t2(b, Y_AT, dt, 2, 256);
    return mlxn_rms_norm(s, &x, NULL, 1e-6f, &y);
}

static mlxn_status probe_qmatmul_mlx(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor x = t2(b, X_AT, MLXN_DTYPE_F32, 2, 256), w = t2(b, W_AT, dt, 4, 256);
    mlxn_tensor sc = t2(b, AUX_AT, MLXN_DTYPE_F32, 4, 4), bi = t2(b, AUX_AT + 64, MLXN_DTYPE_F32, 4, 4);
    mlxn_tensor y = t2(b, Y_AT, MLXN_DTYPE_F32, 2, 4);
    return mlxn_qmatmul_mlx(s, &x, &w, &sc, &bi, 64, &y);
}

static mlxn_status probe_qmatmul(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor x = t2(b, X_AT, MLXN_DTYPE_F32, 2, 256), w = t2(b, W_AT, dt, 4, 256), y = t2(b, Y_AT, MLXN_DTYPE_F32, 2, 4);
    return mlxn_qmatmul(s, &x, &w, &y);
}

static mlxn_status probe_act(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor x = t2(b, X_AT, dt, 2, 256), y = t2(b, Y_AT, dt, 2, 256);
    return mlxn_activation(s, MLXN_ACT_SILU, &x, &y);
}

static mlxn_status probe_softmax(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor x = t2(b, X_AT, dt, 2, 256), y = t2(b, Y_AT, dt, 2, 256);
    return mlxn_softmax(s, &x, NULL, 1.0f, 0.0f, false, &y);
}

static mlxn_status probe_rope(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    const int64_t shape[3] = {1, 2, 256}; /* 256: every block size divides the innermost dim */
    mlxn_tensor x = mlxn_tensor_make(b, X_AT, dt, 3, shape), y = mlxn_tensor_make(b, Y_AT, dt, 3, shape);
    mlxn_tensor pos = ids(b, 1);
    const mlxn_rope_params p = mlxn_rope_params_default();
    return mlxn_rope(s, &x, &pos, &p, &y);
}

static mlxn_status probe_get_rows(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor table = t2(b, W_AT, dt, 4, 256), id = ids(b, 2), y = t2(b, Y_AT, MLXN_DTYPE_F32, 2, 256);
    return mlxn_get_rows(s, &table, &id, 1.0f, &y);
}

static mlxn_status probe_binary(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor a = t2(b, X_AT, dt, 2, 256), bb = t2(b, W_AT, dt, 2, 256), y = t2(b, Y_AT, dt, 2, 256);
    return mlxn_binary(s, MLXN_BINOP_ADD, &a, &bb, &y);
}

static mlxn_status probe_scale(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor x = t2(b, X_AT, dt, 2, 256), y = t2(b, Y_AT, dt, 2, 256);
    return mlxn_scale(s, &x, 2.0f, 1.0f, &y);
}

static mlxn_status probe_argmax(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor x = t2(b, X_AT, dt, 2, 256), out = ids(b, 2);
    return mlxn_argmax(s, &x, &out);
}

/* Caches of head dim 256: whole q8_0 blocks, so a q8_0 cache is probed like the float ones. */
static mlxn_status probe_attention(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor q = t4(b, X_AT, MLXN_DTYPE_F32, 1, 1, 2, 256), o = t4(b, Y_AT, MLXN_DTYPE_F32, 1, 1, 2, 256);
    mlxn_tensor k = t4(b, W_AT, dt, 1, 1, 4, 256), v = t4(b, W_AT + 16384, dt, 1, 1, 4, 256), pos = ids(b, 1);
    return mlxn_attention(s, &q, &k, &v, &pos, NULL, &o);
}

static mlxn_status probe_kv_append(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor src = t4(b, X_AT, MLXN_DTYPE_F32, 1, 1, 1, 256), cache = t4(b, W_AT, dt, 1, 1, 4, 256), pos = ids(b, 1);
    return mlxn_kv_append(s, &src, &pos, &cache);
}

static mlxn_status probe_sample(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor logits = t2(b, X_AT, dt, 2, 256), out = ids(b, 2);
    const mlxn_sampler_params p = mlxn_sampler_params_default();
    return mlxn_sample(s, &logits, NULL, &p, 0, &out);
}

static mlxn_status probe_copy(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor x = t2(b, X_AT, dt, 2, 256), y = t2(b, Y_AT, dt, 2, 256);
    return mlxn_copy(s, &x, &y);
}

static mlxn_status probe_l2_norm(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor x = t2(b, X_AT, dt, 2, 256), y = t2(b, Y_AT, dt, 2, 256);
    return mlxn_l2_norm(s, &x, 1e-6f, &y);
}

static mlxn_status probe_cumsum(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor x = t2(b, X_AT, dt, 2, 256), y = t2(b, Y_AT, dt, 2, 256);
    return mlxn_cumsum(s, &x, &y);
}

static mlxn_status probe_moe_gate(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    mlxn_tensor logits = t2(b, X_AT, dt, 2, 256), ids2 = t2(b, AUX_AT, MLXN_DTYPE_I32, 2, 4),
                w = t2(b, Y_AT, MLXN_DTYPE_F32, 2, 4);
    mlxn_moe_gate_params p = mlxn_moe_gate_params_default();
    p.top_k = 4;
    return mlxn_moe_gate(s, &logits, &p, &ids2, &w);
}

static mlxn_status probe_moe_reduce(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    const int64_t xs[3] = {2, 4, 256};
    mlxn_tensor x = mlxn_tensor_make(b, X_AT, dt, 3, xs), w = t2(b, AUX_AT, MLXN_DTYPE_F32, 2, 4),
                y = t2(b, Y_AT, dt, 2, 256);
    return mlxn_moe_reduce(s, &x, &w, &y);
}

static mlxn_status probe_moe_route_map(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    /* 255 experts: offsets [256] is a valid view in every block dtype */
    const int64_t e1 = 256, n = 8;
    mlxn_tensor idt = t2(b, X_AT, MLXN_DTYPE_I32, 2, 4), offsets = mlxn_tensor_make(b, Y_AT, dt, 1, &e1),
                rows = mlxn_tensor_make(b, AUX_AT, MLXN_DTYPE_I32, 1, &n);
    return mlxn_moe_route_map(s, &idt, 255, &offsets, &rows);
}

static mlxn_status probe_qmatmul_id(mlxn_stream *s, mlxn_buffer *b, mlxn_dtype dt)
{
    const int64_t ws[3] = {4, 8, 256}, ys[3] = {2, 2, 8};
    mlxn_tensor w = mlxn_tensor_make(b, W_AT, dt, 3, ws), x = t2(b, X_AT, MLXN_DTYPE_F32, 2, 256),
                idt = t2(b, AUX_AT, MLXN_DTYPE_I32, 2, 2), y = mlxn_tensor_make(b, Y_AT, MLXN_DTYPE_F32, 3, ys);
    return mlxn_qmatmul_id(s, &x, &w, &idt, &y);
}

typedef struct op_probe {
    const char *operand; /* the operand whose dtype the probe varies (the others: f32 or i32) */
    probe_fn fn;
} op_probe;

static const op_probe probes[MLXN_OP_COUNT] = {
    [MLXN_OP_rms_norm] = {"x", probe_rms_norm},
    [MLXN_OP_qmatmul_mlx] = {"w", probe_qmatmul_mlx},
    [MLXN_OP_qmatmul] = {"w", probe_qmatmul},
    [MLXN_OP_act] = {"x", probe_act},
    [MLXN_OP_softmax] = {"x", probe_softmax},
    [MLXN_OP_rope] = {"x", probe_rope},
    [MLXN_OP_get_rows] = {"table", probe_get_rows},
    [MLXN_OP_binary] = {"a, b", probe_binary},
    [MLXN_OP_scale] = {"x", probe_scale},
    [MLXN_OP_argmax] = {"x", probe_argmax},
    [MLXN_OP_attention] = {"k, v", probe_attention},
    [MLXN_OP_kv_append] = {"cache", probe_kv_append},
    [MLXN_OP_sample] = {"logits", probe_sample},
    [MLXN_OP_moe_gate] = {"logits", probe_moe_gate},
    [MLXN_OP_moe_reduce] = {"x", probe_moe_reduce},
    [MLXN_OP_copy] = {"x, y", probe_copy},
    [MLXN_OP_moe_route_map] = {"offsets", probe_moe_route_map},
    [MLXN_OP_qmatmul_id] = {"w", probe_qmatmul_id},
    [MLXN_OP_l2_norm] = {"x", probe_l2_norm},
    [MLXN_OP_cumsum] = {"x", probe_cumsum},
};

#ifdef MLXN_HAVE_CUDA
static bool backend_has(const mlxn_backend *be, mlxn_op_kind k)
{
    switch (k) {
#define MLXN_X_HAS(op, args) \
    case MLXN_OP_##op:       \
        return be->ops.op != NULL;
        MLXN_OP_LIST(MLXN_X_HAS)
#undef MLXN_X_HAS
    default:
        return false;
    }
}
#endif

/* The dtypes (space separated) whose probe of op k returns OK on the stream; errors other than
 * DTYPE and UNSUPPORTED mean a broken probe and are counted. */
static void probe_dtypes(mlxn_stream *s, mlxn_buffer *b, mlxn_op_kind k, char *out, size_t cap, int *broken)
{
    size_t n = 0;
    out[0] = 0;
    for (int d = 0; d < MLXN_DTYPE_COUNT; d++) {
        const mlxn_status st = probes[k].fn(s, b, (mlxn_dtype)d);
        if (st == MLXN_STATUS_OK)
            n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s", n ? " " : "", mlxn_dtype_name((mlxn_dtype)d));
        else if (st != MLXN_STATUS_ERR_DTYPE && st != MLXN_STATUS_ERR_UNSUPPORTED) {
            fprintf(stderr, "mlxn test --support: probe of %s with %s: %s: %s\n", mlxn_op_name(k),
                    mlxn_dtype_name((mlxn_dtype)d), mlxn_status_str(st), mlxn_last_error());
            (*broken)++;
        }
    }
    if (!out[0])
        snprintf(out, cap, "-");
}

typedef struct probe_target {
    mlxn_device *dev;
    mlxn_stream *s;
    mlxn_buffer *b;
} probe_target;

static bool target_open(mlxn_device_kind kind, probe_target *t)
{
    memset(t, 0, sizeof *t);
    mlxn_device_options o = mlxn_device_options_default();
    o.kind = kind;
    static const unsigned char zeros[4096];
    bool ok = mlxn_device_create(&o, &t->dev) == MLXN_STATUS_OK && mlxn_stream_create(t->dev, &t->s) == MLXN_STATUS_OK &&
              mlxn_buffer_create(t->dev, PROBE_BYTES, &t->b) == MLXN_STATUS_OK;
    for (size_t at = 0; ok && at < PROBE_BYTES; at += sizeof zeros) /* zero ids and positions: in range */
        ok = mlxn_buffer_upload(t->b, at, zeros, sizeof zeros, NULL) == MLXN_STATUS_OK;
    if (!ok)
        fprintf(stderr, "mlxn test --support: %s\n", mlxn_last_error());
    return ok;
}

static void target_close(probe_target *t)
{
    mlxn_buffer_free(t->b);
    mlxn_stream_free(t->s);
    mlxn_device_free(t->dev);
}

static int support_table(void)
{
    probe_target cpu, gpu = {0};
    if (!target_open(MLXN_DEVICE_CPU, &cpu))
        return 1;
    bool have_gpu = mlxn_cuda_device_count() > 0 && target_open(MLXN_DEVICE_CUDA, &gpu);
    mlxn_device_info ci = {0}, gi = {0};
    mlxn_device_get_info(cpu.dev, &ci);
    if (have_gpu)
        mlxn_device_get_info(gpu.dev, &gi);
    char cuda_head[300];
#ifdef MLXN_HAVE_CUDA
    if (have_gpu)
        snprintf(cuda_head, sizeof cuda_head, "cuda:0 (%s)", gi.name);
    else
        snprintf(cuda_head, sizeof cuda_head, "cuda: no device (ops with kernels in this build, dtypes the checks accept)");
#else
    snprintf(cuda_head, sizeof cuda_head, "cuda: not built");
#endif
    printf("%-12s %-8s %-40s %s\n", "op", "operand", "cpu", cuda_head);
    printf("%-12s %-8s %-40.40s\n", "", "", ci.name);
    int broken = 0;
    for (int k = 0; k < MLXN_OP_COUNT; k++) {
        if (!probes[k].fn) {
            printf("%-12s %-8s %-40s %s\n", mlxn_op_name((mlxn_op_kind)k), "?", "no probe (tools/mlxn/support.c)", "");
            continue;
        }
        char cpu_dt[256], cuda_dt[256];
        probe_dtypes(cpu.s, cpu.b, (mlxn_op_kind)k, cpu_dt, sizeof cpu_dt, &broken);
#ifdef MLXN_HAVE_CUDA
        if (have_gpu)
            probe_dtypes(gpu.s, gpu.b, (mlxn_op_kind)k, cuda_dt, sizeof cuda_dt, &broken);
        else
            snprintf(cuda_dt, sizeof cuda_dt, "%s", backend_has(&mlxn_cuda_backend, (mlxn_op_kind)k) ? cpu_dt : "-");
#else
        snprintf(cuda_dt, sizeof cuda_dt, "-");
#endif
        printf("%-12s %-8s %-40s %s\n", mlxn_op_name((mlxn_op_kind)k), probes[k].operand, cpu_dt, cuda_dt);
    }
    if (mlxn_stream_sync(cpu.s) != MLXN_STATUS_OK || (have_gpu && mlxn_stream_sync(gpu.s) != MLXN_STATUS_OK)) {
        fprintf(stderr, "mlxn test --support: a probe failed on the device: %s\n", mlxn_last_error());
        broken++;
    }
    if (have_gpu)
        target_close(&gpu);
    target_close(&cpu);
    return broken ? 1 : 0;
}

int cmd_test(int argc, char **argv)
{
    if (argc == 1 && strcmp(argv[0], "--support") == 0)
        return support_table();
    fprintf(stderr, "mlxn test: expected --support (the op tests themselves are build/tests/test_ops)\n");
    return 2;
}
