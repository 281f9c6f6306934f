/* Thread pool: workers spin briefly on a generation counter, then sleep on a condition
 * variable. The spin keeps back-to-back loops (one per op of a decode step) from paying a
 * futex wake-up each; the sleep keeps idle workers off the cores.
 *
 * A loop is cut into a few parts per thread that every participant claims from a shared
 * counter, and waiting threads yield the core now and then: when other processes hold cores
 * (more runnable threads than cores), a participant that is not running costs its parts to the
 * others instead of stalling the loop, and a spinning thread does not sit on the core that the
 * descheduled one needs (a 2-thread decode step on 2 busy cores went from 7 to 260 ms without). */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_ITERS 20000
#define YIELD_EVERY 256 /* spins between sched_yield calls */
#define PARTS_PER_THREAD 4

typedef struct worker {
    mlxn_threadpool *pool;
    pthread_t thread;
} worker;

struct mlxn_threadpool {
    int n_threads;
    worker *workers;
    pthread_mutex_t run_lock; /* one loop at a time */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_uint_fast64_t generation;
    atomic_int pending;
    atomic_int next_part;     /* parts of the current loop claimed so far */
    atomic_bool stop;
    /* the current loop */
    mlxn_task_fn fn;
    void *ctx;
    int64_t n, chunk;
    int parts;
};

/* Runs parts of the current loop until none is left. */
static void run_parts(mlxn_threadpool *p)
{
    for (int i; (i = atomic_fetch_add_explicit(&p->next_part, 1, memory_order_relaxed)) < p->parts;) {
        int64_t b = (int64_t)i * p->chunk;
        int64_t e = b + p->chunk < p->n ? b + p->chunk : p->n;
        if (b < e)
            p->fn(p->ctx, b, e);
    }
}

static void relax(int spins)
{
    if (spins % YIELD_EVERY == 0)
        sched_yield();
    else
        CPU_RELAX();
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    mlxn_threadpool *p = w->pool;
    uint_fast64_t seen = 0;
    for (;;) {
        uint_fast64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               !atomic_load(&p->stop)) {
            if (++spins < SPIN_ITERS) {
                relax(spins);
                continue;
            }
            pthread_mutex_lock(&p->lock);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->wake, &p->lock);
            pthread_mutex_unlock(&p->lock);
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = g;
        run_parts(p);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
}

mlxn_threadpool *mlxn_threadpool_create(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    mlxn_threadpool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->run_lock, NULL);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, false);
    p->workers = calloc((size_t)n_threads, sizeof *p->workers);
    if (!p->workers) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        p->workers[i].pool = p;
        if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0) {
            p->n_threads = i; /* run with the workers that started */
            break;
        }
    }
    return p;
}

void mlxn_threadpool_free(mlxn_threadpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->workers[i].thread, NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->run_lock);
    free(p->workers);
    free(p);
}

int mlxn_threadpool_size(const mlxn_threadpool *p)
{
    return p ? p->n_threads : 1;
}

void mlxn_threadpool_run(mlxn_threadpool *p, int64_t n, int64_t min_chunk, mlxn_task_fn fn,
                         void *ctx)
{
    if (n <= 0)
        return;
    if (min_chunk < 1)
        min_chunk = 1;
    int64_t parts = p && p->n_threads > 1 ? (int64_t)p->n_threads * PARTS_PER_THREAD : 1;
    if (parts > n / min_chunk)
        parts = n / min_chunk;
    if (parts <= 1) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->parts = (int)parts;
    p->chunk = (n + parts - 1) / parts;
    atomic_store(&p->pending, p->n_threads - 1);
    atomic_store_explicit(&p->next_part, 0, memory_order_relaxed);
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    run_parts(p);
    for (int spins = 1; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++)
        relax(spins);
    pthread_mutex_unlock(&p->run_lock);
}
