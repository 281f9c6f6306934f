/* The CPU backend: host memory, synchronous streams, host-clock events, and graphs recorded
 * by the core. */
#include <cpuid.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cpu.h"

static bool has_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    return (c & bit_F16C) != 0;
}

static bool cpu_has(mlxn_cpu_kernels level)
{
    __builtin_cpu_init();
    switch (level) {
    case MLXN_CPU_KERNELS_REFERENCE:
    case MLXN_CPU_KERNELS_PORTABLE:
        return true;
    case MLXN_CPU_KERNELS_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    case MLXN_CPU_KERNELS_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && has_f16c();
    case MLXN_CPU_KERNELS_AVX512_BF16:
        return cpu_has(MLXN_CPU_KERNELS_AVX512) && __builtin_cpu_supports("avx512bf16") &&
               __builtin_cpu_supports("avx512vnni");
    case MLXN_CPU_KERNELS_AUTO:
        break;
    }
    return false;
}

static const char *level_name(mlxn_cpu_kernels level)
{
    switch (level) {
    case MLXN_CPU_KERNELS_REFERENCE:
        return "reference";
    case MLXN_CPU_KERNELS_PORTABLE:
        return "portable";
    case MLXN_CPU_KERNELS_AVX2:
        return "avx2";
    case MLXN_CPU_KERNELS_AVX512:
        return "avx512";
    case MLXN_CPU_KERNELS_AVX512_BF16:
        return "avx512-bf16";
    case MLXN_CPU_KERNELS_AUTO:
        break;
    }
    return "auto";
}

static int default_threads(void)
{
    const char *env = getenv("MLXN_THREADS");
    if (env && atoi(env) > 0)
        return atoi(env);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static size_t last_level_cache(void)
{
    long llc = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
    llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (llc <= 0)
        llc = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return llc > 0 ? (size_t)llc : 0;
}

static mlxn_status cpu_device_init(mlxn_device *dev, const mlxn_device_options *o)
{
    static const char *fn = "mlxn_device_create";
    mlxn_cpu_kernels level = o->cpu_kernels;
    if (level == MLXN_CPU_KERNELS_AUTO)
        level = cpu_has(MLXN_CPU_KERNELS_AVX512_BF16) ? MLXN_CPU_KERNELS_AVX512_BF16
                : cpu_has(MLXN_CPU_KERNELS_AVX512) ? MLXN_CPU_KERNELS_AVX512
                : cpu_has(MLXN_CPU_KERNELS_AVX2) ? MLXN_CPU_KERNELS_AVX2
                                                 : MLXN_CPU_KERNELS_PORTABLE;
    if (level < MLXN_CPU_KERNELS_REFERENCE || level > MLXN_CPU_KERNELS_AVX512_BF16)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "unknown CPU kernel level %d",
                          (int)level);
    if (!cpu_has(level))
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn, "this CPU cannot run the %s kernels",
                          level_name(level));
    if (o->threads < 0)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "threads is %d, expected >= 0",
                          o->threads);
    mlxn_cpu_device *d = calloc(1, sizeof *d);
    if (!d)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
    d->level = level;
    d->kernels = level == MLXN_CPU_KERNELS_AVX512_BF16 ? &mlxn_cpu_kernels_avx512_bf16
                 : level == MLXN_CPU_KERNELS_AVX512 ? &mlxn_cpu_kernels_avx512
                 : level == MLXN_CPU_KERNELS_AVX2 ? &mlxn_cpu_kernels_avx2
                 : level == MLXN_CPU_KERNELS_PORTABLE ? &mlxn_cpu_kernels_portable
                                                      : NULL;
    d->pool = mlxn_threadpool_create(o->threads ? o->threads : default_threads());
    if (!d->pool) {
        free(d);
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "cannot start the thread pool");
    }
    d->llc_bytes = last_level_cache();
    dev->impl = d;
    dev->ordinal = 0;
    return MLXN_STATUS_OK;
}

static void cpu_device_fini(mlxn_device *dev)
{
    mlxn_cpu_device *d = dev->impl;
    mlxn_threadpool_free(d->pool);
    free(d);
}

static void cpu_model_name(char *out, size_t cap)
{
    snprintf(out, cap, "cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            const char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ')
                    p++;
                snprintf(out, cap, "%s", p);
                out[strcspn(out, "\n")] = 0;
            }
            break;
        }
    }
    fclose(f);
}

static mlxn_status cpu_device_info(const mlxn_device *dev, mlxn_device_info *out)
{
    mlxn_cpu_device *d = dev->impl;
    char model[200];
    cpu_model_name(model, sizeof model);
    snprintf(out->name, sizeof out->name, "%s [%s]", model, level_name(d->level));
    long page = sysconf(_SC_PAGESIZE);
    long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES);
    out->total_memory = page > 0 && pages > 0 ? (size_t)page * (size_t)pages : 0;
    out->free_memory = page > 0 && avail > 0 ? (size_t)page * (size_t)avail : 0;
    out->multiprocessors = mlxn_threadpool_size(d->pool);
    out->l2_bytes = d->llc_bytes;
    out->cpu_kernels = d->level;
    return MLXN_STATUS_OK;
}

static mlxn_status cpu_alloc(mlxn_device *dev, size_t bytes, bool pinned, void **out)
{
    (void)dev;
    (void)pinned;
    *out = mlxn_aligned_alloc(bytes);
    if (!*out)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_buffer_create",
                          "cannot allocate %zu bytes of host memory", bytes);
    return MLXN_STATUS_OK;
}

static void cpu_dealloc(mlxn_device *dev, void *ptr, bool pinned)
{
    (void)dev;
    (void)pinned;
    mlxn_aligned_free(ptr);
}

typedef struct copy_ctx {
    char *dst;
    const char *src;
} copy_ctx;

static void copy_task(void *ctx, int64_t b, int64_t e)
{
    copy_ctx *c = ctx;
    memmove(c->dst + b, c->src + b, (size_t)(e - b));
}

static mlxn_status cpu_copy(mlxn_device *dev, mlxn_stream *s, void *dst, const void *src,
                            size_t bytes, mlxn_copy_dir dir)
{
    (void)s;
    (void)dir;
    mlxn_cpu_device *d = dev->impl;
    copy_ctx c = {dst, src};
    /* Overlapping ranges are copied by one thread (memmove); disjoint ones in parallel. */
    bool overlap = (const char *)src < (char *)dst + bytes && (char *)dst < (const char *)src + bytes;
    if (overlap)
        memmove(dst, src, bytes);
    else
        mlxn_threadpool_run(d->pool, (int64_t)bytes, 1 << 20, copy_task, &c);
    return MLXN_STATUS_OK;
}

static mlxn_status cpu_stream_init(mlxn_stream *s)
{
    (void)s;
    return MLXN_STATUS_OK;
}

static void cpu_stream_fini(mlxn_stream *s)
{
    (void)s;
}

static mlxn_status cpu_stream_sync(mlxn_stream *s)
{
    (void)s; /* work on a CPU stream is done when its call returns */
    return MLXN_STATUS_OK;
}

static mlxn_status cpu_event_init(mlxn_event *e)
{
    (void)e;
    return MLXN_STATUS_OK;
}

static void cpu_event_fini(mlxn_event *e)
{
    (void)e;
}

static mlxn_status cpu_event_record(mlxn_event *e, mlxn_stream *s)
{
    (void)s;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    e->host_ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
    return MLXN_STATUS_OK;
}

static mlxn_status cpu_event_sync(mlxn_event *e)
{
    (void)e;
    return MLXN_STATUS_OK;
}

static mlxn_status cpu_event_elapsed(mlxn_event *a, mlxn_event *b, double *ms)
{
    *ms = b->host_ms - a->host_ms;
    return MLXN_STATUS_OK;
}

const mlxn_backend mlxn_cpu_backend = {
    .name = "cpu",
    .records_in_core = true,
    .device_init = cpu_device_init,
    .device_fini = cpu_device_fini,
    .device_info = cpu_device_info,
    .alloc = cpu_alloc,
    .dealloc = cpu_dealloc,
    .copy = cpu_copy,
    .stream_init = cpu_stream_init,
    .stream_fini = cpu_stream_fini,
    .stream_sync = cpu_stream_sync,
    .event_init = cpu_event_init,
    .event_fini = cpu_event_fini,
    .event_record = cpu_event_record,
    .event_sync = cpu_event_sync,
    .event_elapsed_ms = cpu_event_elapsed,
    .ops = {
        .rms_norm = mlxn_cpu_rms_norm,
        .qmatmul_mlx = mlxn_cpu_qmatmul_mlx,
        .qmatmul = mlxn_cpu_qmatmul,
        .act = mlxn_cpu_act,
        .softmax = mlxn_cpu_softmax,
        .rope = mlxn_cpu_rope,
        .get_rows = mlxn_cpu_get_rows,
        .binary = mlxn_cpu_binary,
        .scale = mlxn_cpu_scale,
        .argmax = mlxn_cpu_argmax,
        .attention = mlxn_cpu_attention,
        .kv_append = mlxn_cpu_kv_append,
        .sample = mlxn_cpu_sample,
        .moe_gate = mlxn_cpu_moe_gate,
        .moe_reduce = mlxn_cpu_moe_reduce,
        .copy = mlxn_cpu_copy,
        .l2_norm = mlxn_cpu_l2_norm,
        .cumsum = mlxn_cpu_cumsum,
        .moe_route_map = mlxn_cpu_moe_route_map,
        .qmatmul_id = mlxn_cpu_qmatmul_id,
    },
};
