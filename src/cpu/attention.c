/* Attention and the KV-cache append on the CPU. Attention: units of a tile of queries of one KV
 * head's group of query heads across the thread pool, each run by the SIMD level's kernel
 * (attention_impl.h). Append: rows across the pool, converted element by element (a copy
 * when the dtypes agree), or quantized a block at a time for a q8_0 cache (ggml_encode.h). */
#include <stdatomic.h>
#include <string.h>

#include "../core/half.h"
#include "../formats/ggml_encode.h"
#include "cpu.h"
#include "ref/ref.h"

typedef struct attention_task_ctx {
    const mlxn_attention_args *a;
    const mlxn_cpu_kernel_set *kernels;
    atomic_bool no_memory;
} attention_task_ctx;

static void attention_task(void *ctx, int64_t u0, int64_t u1)
{
    attention_task_ctx *c = ctx;
    float *scratch = mlxn_aligned_alloc(mlxn_cpu_att_scratch_floats(c->a->D) * sizeof(float));
    if (!scratch) {
        atomic_store(&c->no_memory, true);
        return;
    }
    c->kernels->attention_units(c->a, u0, u1, scratch);
    mlxn_aligned_free(scratch);
}

mlxn_status mlxn_cpu_attention(mlxn_stream *s, const mlxn_attention_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels)
        return mlxn_ref_attention(a);
    attention_task_ctx c = {.a = a, .kernels = d->kernels};
    atomic_init(&c.no_memory, false);
    /* a unit reads up to pos + Tq keys for a tile of queries: one is worth a thread */
    const int64_t qt = mlxn_cpu_att_tile_queries(a->Hq / a->Hkv);
    mlxn_threadpool_run(d->pool, a->B * a->Hkv * ((a->Tq + qt - 1) / qt), 1, attention_task, &c);
    if (atomic_load(&c.no_memory))
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_attention", "no memory for a thread's scratch");
    return MLXN_STATUS_OK;
}

static float load_f32(int dt, const char *p, int64_t i)
{
    if (dt == MLXN_DTYPE_F32)
        return ((const float *)p)[i];
    const uint16_t h = ((const uint16_t *)p)[i];
    return dt == MLXN_DTYPE_F16 ? mlxn_f16_to_f32(h) : mlxn_bf16_to_f32(h);
}

static void store_f32(int dt, char *p, int64_t i, float v)
{
    if (dt == MLXN_DTYPE_F32)
        ((float *)p)[i] = v;
    else
        ((uint16_t *)p)[i] = dt == MLXN_DTYPE_F16 ? mlxn_f32_to_f16(v) : mlxn_f32_to_bf16(v);
}

/* rows r = (b * T + t) * H + h of src */
static void kv_append_task(void *ctx, int64_t r0, int64_t r1)
{
    const mlxn_kv_append_args *a = ctx;
    const size_t es = a->src_dtype == MLXN_DTYPE_F32 ? 4 : 2;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t h = r % a->H, t = (r / a->H) % a->T, b = r / (a->H * a->T);
        const int64_t first = a->pos[b];
        if (first < 0)
            continue;
        const char *src = a->src.base + b * a->src.s0 + t * a->src.s1 + h * a->src.s2;
        char *dst = a->cache.base + b * a->cache.s0 + h * a->cache.s1 + ((first + t) % a->S) * a->cache.s2;
        if (a->cache_dtype == MLXN_DTYPE_Q8_0)
            for (int64_t d0 = 0; d0 < a->D; d0 += MLXN_QK) {
                float x[MLXN_QK];
                mlxn_block_q8_0 blk; /* built aside: dst holds blocks at 2-byte alignment at best */
                for (int j = 0; j < MLXN_QK; j++)
                    x[j] = load_f32(a->src_dtype, src, d0 + j);
                mlxn_q8_0_quantize_block(x, &blk);
                memcpy(dst + d0 / MLXN_QK * (int64_t)sizeof blk, &blk, sizeof blk);
            }
        else if (a->src_dtype == a->cache_dtype)
            memcpy(dst, src, (size_t)a->D * es);
        else
            for (int64_t d = 0; d < a->D; d++)
                store_f32(a->cache_dtype, dst, d, load_f32(a->src_dtype, src, d));
    }
}

mlxn_status mlxn_cpu_kv_append(mlxn_stream *s, const mlxn_kv_append_args *a)
{
    mlxn_cpu_device *d = mlxn_cpu_dev(s);
    if (!d->kernels) {
        mlxn_ref_kv_append(a);
        return MLXN_STATUS_OK;
    }
    const int64_t min_rows = a->D >= 4096 ? 1 : 4096 / a->D;
    mlxn_threadpool_run(d->pool, a->B * a->T * a->H, min_rows, kv_append_task, (void *)a);
    return MLXN_STATUS_OK;
}
