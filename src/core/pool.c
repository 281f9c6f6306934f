/* Buffer pool: power-of-two buckets with free lists, reset once per step. */
#include <stdlib.h>

#include "internal.h"

#define POOL_MIN_SHIFT 8 /* 256 B */
#define POOL_BUCKETS 56

typedef struct buffer_list {
    mlxn_buffer **items;
    size_t count, capacity;
} buffer_list;

struct mlxn_pool {
    mlxn_device *device;
    buffer_list all;                  /* every buffer the pool owns */
    buffer_list free_[POOL_BUCKETS];  /* per bucket: buffers not in use */
    mlxn_pool_stats stats;
};

static bool list_push(buffer_list *l, mlxn_buffer *b)
{
    if (l->count == l->capacity) {
        size_t cap = l->capacity ? l->capacity * 2 : 8;
        mlxn_buffer **p = realloc(l->items, cap * sizeof *p);
        if (!p)
            return false;
        l->items = p;
        l->capacity = cap;
    }
    l->items[l->count++] = b;
    return true;
}

mlxn_status mlxn_pool_create(mlxn_device *device, mlxn_pool **out)
{
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_pool_create", "out is NULL");
    *out = NULL;
    if (!device)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_pool_create", "device is NULL");
    mlxn_pool *p = calloc(1, sizeof *p);
    if (!p)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_pool_create", "no memory");
    p->device = device;
    *out = p;
    return MLXN_STATUS_OK;
}

static void destroy_buffer(mlxn_pool *p, mlxn_buffer *b)
{
    p->device->backend->dealloc(p->device, b->ptr, false);
    p->stats.bytes_reserved -= (size_t)1 << b->pool_bucket;
    free(b);
}

void mlxn_pool_free(mlxn_pool *pool)
{
    if (!pool)
        return;
    for (size_t i = 0; i < pool->all.count; i++)
        destroy_buffer(pool, pool->all.items[i]);
    free(pool->all.items);
    for (int k = 0; k < POOL_BUCKETS; k++)
        free(pool->free_[k].items);
    free(pool);
}

mlxn_status mlxn_pool_alloc(mlxn_pool *pool, size_t bytes, mlxn_buffer **out)
{
    static const char *fn = "mlxn_pool_alloc";
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    *out = NULL;
    if (!pool)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "pool is NULL");
    size_t k = POOL_MIN_SHIFT;
    while (k < POOL_BUCKETS && ((size_t)1 << k) < bytes)
        k++;
    if (k >= POOL_BUCKETS)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "request of %zu bytes is too large",
                          bytes);
    buffer_list *fl = &pool->free_[k];
    mlxn_buffer *b;
    if (fl->count) {
        b = fl->items[--fl->count];
        pool->stats.reuses++;
    } else {
        b = calloc(1, sizeof *b);
        if (!b)
            return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
        void *ptr = NULL;
        mlxn_status st = pool->device->backend->alloc(pool->device, (size_t)1 << k, false, &ptr);
        if (st != MLXN_STATUS_OK) {
            free(b);
            return st;
        }
        if (!list_push(&pool->all, b)) {
            pool->device->backend->dealloc(pool->device, ptr, false);
            free(b);
            return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
        }
        /* Reserve room in the free list now, so that releasing never needs to allocate. */
        if (!list_push(fl, b)) {
            pool->all.count--;
            pool->device->backend->dealloc(pool->device, ptr, false);
            free(b);
            return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "no memory");
        }
        fl->count--;
        b->device = pool->device;
        b->ptr = ptr;
        b->kind = MLXN_BUFFER_POOLED;
        b->host_visible = pool->device->kind == MLXN_DEVICE_CPU;
        b->pool = pool;
        b->pool_bucket = k;
        pool->stats.device_allocations++;
        pool->stats.bytes_reserved += (size_t)1 << k;
    }
    b->size = bytes;
    b->pool_in_use = true;
    pool->stats.bytes_in_use += (size_t)1 << k;
    *out = b;
    return MLXN_STATUS_OK;
}

void mlxn_pool_release(mlxn_buffer *b)
{
    mlxn_pool *p = b->pool;
    if (!b->pool_in_use)
        return; /* already returned (double free or after reset): ignore */
    b->pool_in_use = false;
    p->stats.bytes_in_use -= (size_t)1 << b->pool_bucket;
    /* Capacity was reserved when the buffer was made: this push cannot fail. */
    buffer_list *fl = &p->free_[b->pool_bucket];
    fl->items[fl->count++] = b;
}

void mlxn_pool_reset(mlxn_pool *pool)
{
    if (!pool)
        return;
    for (size_t i = 0; i < pool->all.count; i++)
        mlxn_pool_release(pool->all.items[i]);
}

void mlxn_pool_trim(mlxn_pool *pool)
{
    if (!pool)
        return;
    size_t kept = 0;
    for (size_t i = 0; i < pool->all.count; i++) {
        mlxn_buffer *b = pool->all.items[i];
        if (b->pool_in_use)
            pool->all.items[kept++] = b;
        else
            destroy_buffer(pool, b);
    }
    pool->all.count = kept;
    for (int k = 0; k < POOL_BUCKETS; k++)
        pool->free_[k].count = 0;
}

mlxn_pool_stats mlxn_pool_get_stats(const mlxn_pool *pool)
{
    mlxn_pool_stats s = {0};
    return pool ? pool->stats : s;
}
