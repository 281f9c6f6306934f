/* A fixed set of worker threads that run one parallel loop at a time. */
#ifndef MLXN_THREADPOOL_H
#define MLXN_THREADPOOL_H

#include <stdint.h>

typedef struct mlxn_threadpool mlxn_threadpool;

/* Called with a contiguous range [begin, end) of the loop. */
typedef void (*mlxn_task_fn)(void *ctx, int64_t begin, int64_t end);

/* n_threads counts the calling thread: n_threads - 1 workers are started. NULL on failure. */
mlxn_threadpool *mlxn_threadpool_create(int n_threads);
void mlxn_threadpool_free(mlxn_threadpool *pool);
int mlxn_threadpool_size(const mlxn_threadpool *pool);

/* Splits [0, n) into one contiguous range per thread (at least min_chunk items each, so small
 * loops stay on the caller) and returns when all ranges are done. Calls are serialized. */
void mlxn_threadpool_run(mlxn_threadpool *pool, int64_t n, int64_t min_chunk, mlxn_task_fn fn,
                         void *ctx);

#endif
