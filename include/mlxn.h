/* mlxn: fast inference kernels for quantized transformer models on CUDA GPUs and CPUs.
 *
 * An explicit dispatch API: the caller creates a device, buffers and a stream, describes
 * operands with tensor views over buffers, and issues ops on the stream. Ops on a CUDA stream
 * run asynchronously; ops on a CPU stream run before the call returns (unless the stream is
 * capturing a graph). Plain C11, usable from C++.
 */
#ifndef MLXN_H
#define MLXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(MLXN_SHARED_BUILD)
#define MLXN_API __declspec(dllexport)
#elif defined(__GNUC__)
#define MLXN_API __attribute__((visibility("default")))
#else
#define MLXN_API
#endif

/* ---------------------------------------------------------------- version */

#define MLXN_VERSION_MAJOR 0
#define MLXN_VERSION_MINOR 1
#define MLXN_VERSION_PATCH 0

/* "MAJOR.MINOR.PATCH" of the library that is linked (may differ from the header's). */
MLXN_API const char *mlxn_version(void);

/* ---------------------------------------------------------------- status */

typedef enum mlxn_status {
    MLXN_STATUS_OK = 0,
    MLXN_STATUS_ERR_INVALID_ARG,   /* NULL where a value is needed, bad flag, freed object */
    MLXN_STATUS_ERR_SHAPE,         /* shapes or strides that do not fit together */
    MLXN_STATUS_ERR_DTYPE,         /* a dtype the op does not take, or operands that differ */
    MLXN_STATUS_ERR_UNSUPPORTED,   /* valid request this build or device cannot do */
    MLXN_STATUS_ERR_OUT_OF_MEMORY,
    MLXN_STATUS_ERR_IO,
    MLXN_STATUS_ERR_BAD_FORMAT,    /* a file or blob that is not what it claims */
    MLXN_STATUS_ERR_DEVICE,        /* the device runtime reported an error */
    MLXN_STATUS_ERR_INTERNAL,
    MLXN_STATUS_COUNT
} mlxn_status;

/* The status's name, e.g. "MLXN_STATUS_ERR_SHAPE". Never NULL. */
MLXN_API const char *mlxn_status_str(mlxn_status status);

/* The message of the last failed call on this thread ("mlxn_rms_norm: w has 2048 elements,
 * rows of x have 4096"), or "" if none failed. Valid until the thread's next failing call. */
MLXN_API const char *mlxn_last_error(void);

/* ---------------------------------------------------------------- dtypes */

typedef enum mlxn_dtype {
    MLXN_DTYPE_F32 = 0,
    MLXN_DTYPE_F16,
    MLXN_DTYPE_BF16,
    MLXN_DTYPE_I32,
    MLXN_DTYPE_U32,
    MLXN_DTYPE_I16,
    MLXN_DTYPE_I8,
    MLXN_DTYPE_U8,
    /* GGML block formats, bit-compatible with GGUF files. */
    MLXN_DTYPE_Q4_0,
    MLXN_DTYPE_Q4_1,
    MLXN_DTYPE_Q5_0,
    MLXN_DTYPE_Q5_1,
    MLXN_DTYPE_Q8_0,
    MLXN_DTYPE_Q8_1,
    MLXN_DTYPE_Q2_K,
    MLXN_DTYPE_Q3_K,
    MLXN_DTYPE_Q4_K,
    MLXN_DTYPE_Q5_K,
    MLXN_DTYPE_Q6_K,
    MLXN_DTYPE_Q8_K,
    MLXN_DTYPE_IQ4_NL,
    MLXN_DTYPE_IQ4_XS,
    /* MLX affine quantization: `bits`-bit codes packed low-bits-first into uint32 words; the
     * scales and biases per group live in separate tensors. One element is one code. */
    MLXN_DTYPE_MLX_Q2,
    MLXN_DTYPE_MLX_Q3,
    MLXN_DTYPE_MLX_Q4,
    MLXN_DTYPE_MLX_Q5,
    MLXN_DTYPE_MLX_Q6,
    MLXN_DTYPE_MLX_Q8,
    MLXN_DTYPE_COUNT
} mlxn_dtype;

/* Name as spelled in GGUF / MLX ("f32", "q4_K", "mlx_q4"); "?" for an invalid value. */
MLXN_API const char *mlxn_dtype_name(mlxn_dtype dtype);
/* Elements per block and bytes per block: 1 element for plain types, 32 or 256 for GGML
 * blocks, 32 codes (bits * 4 bytes) for MLX affine. A row of n elements takes
 * n / block_elems * block_bytes bytes; n must be a multiple of block_elems. */
MLXN_API int64_t mlxn_dtype_block_elems(mlxn_dtype dtype);
MLXN_API int64_t mlxn_dtype_block_bytes(mlxn_dtype dtype);
MLXN_API bool mlxn_dtype_is_quantized(mlxn_dtype dtype);

/* ---------------------------------------------------------------- devices */

typedef enum mlxn_device_kind {
    MLXN_DEVICE_CPU = 0,
    MLXN_DEVICE_CUDA = 1
} mlxn_device_kind;

/* Which CPU kernels a CPU device runs. AUTO picks the best the processor has. REFERENCE runs
 * the oracle (scalar, f64 accumulation): slow, for checking other backends. */
typedef enum mlxn_cpu_kernels {
    MLXN_CPU_KERNELS_AUTO = 0,
    MLXN_CPU_KERNELS_REFERENCE,
    MLXN_CPU_KERNELS_PORTABLE,
    MLXN_CPU_KERNELS_AVX2,
    MLXN_CPU_KERNELS_AVX512,
    MLXN_CPU_KERNELS_AVX512_BF16 /* AVX-512 plus the bf16 conversion instructions and VNNI */
} mlxn_cpu_kernels;

typedef struct mlxn_device_options {
    mlxn_device_kind kind;
    int ordinal;                  /* CUDA device index */
    int threads;                  /* CPU: worker threads; 0 = MLXN_THREADS env or all cores */
    mlxn_cpu_kernels cpu_kernels; /* CPU: asking for a level the CPU lacks is UNSUPPORTED */
} mlxn_device_options;

MLXN_API mlxn_device_options mlxn_device_options_default(void);

typedef struct mlxn_device mlxn_device;

/* Number of usable CUDA devices: 0 when built without CUDA or when no GPU or driver exists. */
MLXN_API int mlxn_cuda_device_count(void);

MLXN_API mlxn_status mlxn_device_create(const mlxn_device_options *options, mlxn_device **out);
MLXN_API void mlxn_device_free(mlxn_device *device);

typedef struct mlxn_device_info {
    mlxn_device_kind kind;
    int ordinal;
    char name[256];           /* GPU name, or the CPU model and the kernel level in use */
    size_t total_memory;      /* bytes */
    size_t free_memory;       /* bytes, at the time of the query */
    int compute_major;        /* CUDA compute capability; 0 on CPU */
    int compute_minor;
    int multiprocessors;      /* SMs, or CPU worker threads */
    size_t l2_bytes;          /* GPU L2, or the CPU's last-level cache */
    mlxn_cpu_kernels cpu_kernels; /* CPU: the level in use */
} mlxn_device_info;

MLXN_API mlxn_status mlxn_device_get_info(const mlxn_device *device, mlxn_device_info *out);

/* ---------------------------------------------------------------- streams and events */

typedef struct mlxn_stream mlxn_stream;
typedef struct mlxn_event mlxn_event;
typedef struct mlxn_graph mlxn_graph;

/* Work issued on one stream runs in issue order. */
MLXN_API mlxn_status mlxn_stream_create(mlxn_device *device, mlxn_stream **out);
MLXN_API void mlxn_stream_free(mlxn_stream *stream);
/* Waits until all work issued on the stream has finished; reports an asynchronous error. */
MLXN_API mlxn_status mlxn_stream_sync(mlxn_stream *stream);
MLXN_API mlxn_device *mlxn_stream_device(const mlxn_stream *stream);

MLXN_API mlxn_status mlxn_event_create(mlxn_device *device, mlxn_event **out);
MLXN_API void mlxn_event_free(mlxn_event *event);
MLXN_API mlxn_status mlxn_event_record(mlxn_event *event, mlxn_stream *stream);
MLXN_API mlxn_status mlxn_event_sync(mlxn_event *event);
/* Milliseconds between two recorded events (both synced or the call waits for them). */
MLXN_API mlxn_status mlxn_event_elapsed_ms(mlxn_event *start, mlxn_event *end, double *ms);

/* ---------------------------------------------------------------- graphs
 *
 * Between begin and end, ops and copies issued on the stream are recorded instead of run
 * (CUDA graphs on a GPU; a list of calls on the CPU). Launching the graph replays them with the
 * same buffers, which must stay alive as long as the graph. Argument checks happen at capture.
 */
MLXN_API mlxn_status mlxn_stream_begin_capture(mlxn_stream *stream);
MLXN_API mlxn_status mlxn_stream_end_capture(mlxn_stream *stream, mlxn_graph **out);
MLXN_API mlxn_status mlxn_graph_launch(mlxn_graph *graph, mlxn_stream *stream);
MLXN_API void mlxn_graph_free(mlxn_graph *graph);

/* ---------------------------------------------------------------- buffers */

typedef struct mlxn_buffer mlxn_buffer;

/* Memory the device's kernels use: GPU memory on CUDA, 64-byte aligned host memory on CPU.
 * Contents are undefined. */
MLXN_API mlxn_status mlxn_buffer_create(mlxn_device *device, size_t bytes, mlxn_buffer **out);
/* Page-locked host memory for fast, asynchronous transfers (plain host memory on CPU). */
MLXN_API mlxn_status mlxn_buffer_create_pinned(mlxn_device *device, size_t bytes,
                                               mlxn_buffer **out);
/* A CPU buffer over caller memory, which the caller keeps alive until the buffer is freed. */
MLXN_API mlxn_status mlxn_buffer_create_host_borrowed(mlxn_device *cpu_device, void *ptr,
                                                      size_t bytes, mlxn_buffer **out);
/* A view of bytes [offset, offset + bytes) of parent; parent must outlive it. */
MLXN_API mlxn_status mlxn_buffer_create_sub(mlxn_buffer *parent, size_t offset, size_t bytes,
                                            mlxn_buffer **out);
MLXN_API void mlxn_buffer_free(mlxn_buffer *buffer);

MLXN_API size_t mlxn_buffer_size(const mlxn_buffer *buffer);
MLXN_API mlxn_device *mlxn_buffer_device(const mlxn_buffer *buffer);
/* Host address of the bytes, or NULL for GPU memory. */
MLXN_API void *mlxn_buffer_host_ptr(mlxn_buffer *buffer);

/* Copies between host memory and a buffer. With a stream the copy is ordered on it (and may be
 * asynchronous: keep src/dst alive and unchanged until the stream is synced); with stream NULL
 * the call returns when the copy is done. */
MLXN_API mlxn_status mlxn_buffer_upload(mlxn_buffer *dst, size_t dst_offset, const void *src,
                                        size_t bytes, mlxn_stream *stream);
MLXN_API mlxn_status mlxn_buffer_download(mlxn_buffer *src, size_t src_offset, void *dst,
                                          size_t bytes, mlxn_stream *stream);
/* Buffer to buffer on one device, ordered on the stream (required). */
MLXN_API mlxn_status mlxn_buffer_copy(mlxn_buffer *dst, size_t dst_offset, mlxn_buffer *src,
                                      size_t src_offset, size_t bytes, mlxn_stream *stream);

/* ---------------------------------------------------------------- buffer pool
 *
 * Scratch buffers for a forward pass: sizes round up to a power of two (256 B at least) and
 * freed memory stays in per-size free lists, so the same sequence of requests in the next step
 * allocates nothing. mlxn_pool_reset() returns every buffer taken since the last reset (their
 * handles become invalid); mlxn_buffer_free() on a pool buffer returns it early.
 */
typedef struct mlxn_pool mlxn_pool;

typedef struct mlxn_pool_stats {
    size_t bytes_reserved;  /* device memory held by the pool */
    size_t bytes_in_use;    /* of which handed out now (rounded sizes) */
    uint64_t device_allocations; /* allocations that went to the device */
    uint64_t reuses;             /* requests served from a free list */
} mlxn_pool_stats;

MLXN_API mlxn_status mlxn_pool_create(mlxn_device *device, mlxn_pool **out);
MLXN_API void mlxn_pool_free(mlxn_pool *pool);
MLXN_API mlxn_status mlxn_pool_alloc(mlxn_pool *pool, size_t bytes, mlxn_buffer **out);
MLXN_API void mlxn_pool_reset(mlxn_pool *pool);
/* Frees the device memory of the free lists (not of buffers in use). */
MLXN_API void mlxn_pool_trim(mlxn_pool *pool);
MLXN_API mlxn_pool_stats mlxn_pool_get_stats(const mlxn_pool *pool);

/* ---------------------------------------------------------------- tensor views
 *
 * A view of a buffer: never owns memory. shape[0] is the outermost dimension; strides are in
 * bytes. For block-quantized dtypes the innermost dimension counts elements and must be
 * contiguous; strides of outer dimensions are still bytes. A view starts (buffer address plus
 * offset) and steps (the strides of dims of more than one element) on multiples of its
 * element's size for plain dtypes, of 4 bytes for the MLX affine dtypes; GGML blocks may lie
 * anywhere, except as the weights of mlxn_qmatmul and mlxn_qmatmul_id (even addresses).
 */
#define MLXN_MAX_DIMS 4

typedef struct mlxn_tensor {
    mlxn_buffer *buffer;
    size_t offset;                  /* bytes from the buffer's start to element 0 */
    mlxn_dtype dtype;
    int ndim;                       /* 1..MLXN_MAX_DIMS */
    int64_t shape[MLXN_MAX_DIMS];
    int64_t stride[MLXN_MAX_DIMS];  /* bytes; for the innermost dim, the element size */
} mlxn_tensor;

/* A contiguous row-major view. Plain dtypes only for the innermost stride; quantized dtypes
 * take the row's byte size from the block size. */
MLXN_API mlxn_tensor mlxn_tensor_make(mlxn_buffer *buffer, size_t offset, mlxn_dtype dtype,
                                      int ndim, const int64_t *shape);
MLXN_API int64_t mlxn_tensor_numel(const mlxn_tensor *t);
MLXN_API bool mlxn_tensor_is_contiguous(const mlxn_tensor *t);
/* Bytes from the first to one past the last byte the view can touch (0 if empty). */
MLXN_API size_t mlxn_tensor_span_bytes(const mlxn_tensor *t);
/* Checks that the view is well-formed, aligned (above) and lies inside its buffer. */
MLXN_API mlxn_status mlxn_tensor_validate(const mlxn_tensor *t);
/* A view of elements [start, start + len) of dim `dim` of t (same buffer, strides and dtype; the
 * offset moves to the first kept element): the slices that mlxn_concat writes and reads. For a
 * block-quantized dtype, slicing the innermost dim needs start and len multiples of the block.
 * An out-of-range dim or range is SHAPE (INVALID_ARG for NULL pointers); *out is zeroed on failure. */
MLXN_API mlxn_status mlxn_tensor_slice(const mlxn_tensor *t, int dim, int64_t start, int64_t len,
                                       mlxn_tensor *out);

/* ---------------------------------------------------------------- ops: RMS norm family
 *
 * Over the innermost dimension of x (its length n, any number of rows, any row strides;
 * the innermost dimension itself contiguous):
 *     y = x * rsqrt(mean(x^2) + eps) * w
 * x, y (and m, r, sum) in f32, f16 or bf16, all of x's dtype and shape; w is a 1-D tensor of
 * n elements in f32 or in x's dtype, or NULL for no scale. Accumulation is in f32. y may be x
 * itself (in place); other overlaps are undefined.
 */
MLXN_API mlxn_status mlxn_rms_norm(mlxn_stream *stream, const mlxn_tensor *x,
                                   const mlxn_tensor *w, float eps, const mlxn_tensor *y);
/* y = (rms_norm(x) * w) * m, with m shaped like x. */
MLXN_API mlxn_status mlxn_rms_norm_mul(mlxn_stream *stream, const mlxn_tensor *x,
                                       const mlxn_tensor *w, const mlxn_tensor *m, float eps,
                                       const mlxn_tensor *y);
/* sum = x + r (rounded to x's dtype), y = rms_norm(sum) * w: the residual-stream update and
 * the next layer's norm in one pass. sum may be x or r (in place). */
MLXN_API mlxn_status mlxn_add_rms_norm(mlxn_stream *stream, const mlxn_tensor *x,
                                       const mlxn_tensor *r, const mlxn_tensor *w, float eps,
                                       const mlxn_tensor *sum, const mlxn_tensor *y);
/* sum = x + rms_norm(r) * wr (rounded to x's dtype), y = rms_norm(sum) * w: a block's output
 * norm (Gemma's post-attention and post-FFN norms), the residual add and the next layer's norm
 * in one pass. wr is like w (NULL: no scale); both norms use eps. sum may be x or r (in place). */
MLXN_API mlxn_status mlxn_norm_add_rms_norm(mlxn_stream *stream, const mlxn_tensor *x,
                                            const mlxn_tensor *r, const mlxn_tensor *wr,
                                            const mlxn_tensor *w, float eps,
                                            const mlxn_tensor *sum, const mlxn_tensor *y);

/* ---------------------------------------------------------------- ops: quantized matmul
 *
 * y = x . dequant(W)^T with W MLX-affine quantized (mlx.core.quantize layout, see
 * mlxn_quant.h): w is [N, K] of dtype MLXN_DTYPE_MLX_Q2.._Q8 (the bit width), scales and
 * biases are [N, K / group_size] in f32, f16 or bf16 (the same dtype), group_size 32, 64 or
 * 128. x is [..., K] in f32, f16 or bf16 (rows may be strided), y is [..., N] f32 with x's
 * leading dims. Accumulation is in f32.
 */
MLXN_API mlxn_status mlxn_qmatmul_mlx(mlxn_stream *stream, const mlxn_tensor *x,
                                      const mlxn_tensor *w, const mlxn_tensor *scales,
                                      const mlxn_tensor *biases, int group_size,
                                      const mlxn_tensor *y);

/* y = x . W^T with W [N, K] in a GGML block format (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS: the layouts of GGUF files, K a multiple of the block
 * size) or in f32, f16 or bf16. x is [..., K] in f32, f16 or bf16 (rows may be strided), y is
 * [..., N] f32 with x's leading dims. Accumulation is in f32. On CUDA, from 64 rows of x (with
 * y's rows at one stride) the product runs on tensor cores with x and the decoded W rounded
 * to bf16 (relative error <= 2^-9 each), through a bf16 copy of W kept in the stream's
 * scratch memory; that scratch cannot grow during graph capture (run such a call once first). */
MLXN_API mlxn_status mlxn_qmatmul(mlxn_stream *stream, const mlxn_tensor *x, const mlxn_tensor *w,
                                  const mlxn_tensor *y);

/* ---------------------------------------------------------------- ops: expert-routed quantized matmul (MoE)
 *
 * ids: i32 [T, k] (k 1..16, rows may be strided): token t's k selected experts, pair p = t * k + j.
 *
 * mlxn_moe_route_map groups the pairs by expert: offsets i32 [E + 1] (offsets[e] = the number of
 * pairs whose expert is below e), rows i32 [T * k] = the pair indices p grouped by expert and
 * increasing within an expert; ids outside [0, E) are left out (offsets[E] counts the valid
 * pairs) and rows[offsets[E] ..] are -1. Both outputs contiguous.
 *
 * mlxn_qmatmul_id: y[t, j, :] = x_row(t, j) . W[ids[t, j]]^T with W [E, N, K] in any type
 * mlxn_qmatmul takes (K a multiple of its block); x is [T, K] (every slot of token t reads row t:
 * the gate and up projections) or [T, k, K] (row (t, j): the down projection), f32, f16 or bf16,
 * rows may be strided; y is [T, k, N] f32. A pair whose id is outside [0, E) gets a row of zeros.
 * mlxn_qmatmul_id_swiglu: y[t, j, :] = silu(x_row . W_gate[e]^T) * (x_row . W_up[e]^T), e = ids[t, j],
 * with w_gate and w_up [E, N, K] of one type.
 * Accumulation is in f32. On CUDA, up to 64 pairs (T * k <= 64) run as mat-vecs per pair (no
 * scratch: a decode step can be captured in a graph); from 65 pairs the routing map is built on
 * the GPU and the products run on tensor cores with x and the decoded W rounded to bf16 (relative
 * error <= 2^-9 each), through routing tables and a bf16 copy of the pairs' rows of x (T k K
 * 2 bytes) kept in the stream's scratch memory, which cannot grow during graph capture (run a
 * call of that size once first; outgrown scratch is kept until the stream is freed, so earlier
 * graphs stay valid). mlxn_moe_route_map also uses that scratch
 * (E integers) on CUDA.
 */
MLXN_API mlxn_status mlxn_moe_route_map(mlxn_stream *stream, const mlxn_tensor *ids, int n_experts,
                                        const mlxn_tensor *offsets, const mlxn_tensor *rows);
MLXN_API mlxn_status mlxn_qmatmul_id(mlxn_stream *stream, const mlxn_tensor *x, const mlxn_tensor *w,
                                     const mlxn_tensor *ids, const mlxn_tensor *y);
MLXN_API mlxn_status mlxn_qmatmul_id_swiglu(mlxn_stream *stream, const mlxn_tensor *x, const mlxn_tensor *w_gate,
                                            const mlxn_tensor *w_up, const mlxn_tensor *ids, const mlxn_tensor *y);

/* ---------------------------------------------------------------- ops: activations
 *
 * Elementwise over tensors of f32, f16 or bf16 (computed in f32, rounded once to the dtype):
 * all operands of one dtype and shape, any row strides (the innermost dimension contiguous).
 * y may be x (or gate) itself; other overlaps are undefined.
 */
typedef enum mlxn_act {
    MLXN_ACT_SILU,      /* x * sigmoid(x) */
    MLXN_ACT_GELU_TANH, /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    MLXN_ACT_GELU_ERF,  /* 0.5 x (1 + erf(x / sqrt(2))) */
    MLXN_ACT_SIGMOID,   /* 1 / (1 + exp(-x)) */
    MLXN_ACT_COUNT
} mlxn_act;

MLXN_API const char *mlxn_act_name(mlxn_act act);

/* y = act(x). */
MLXN_API mlxn_status mlxn_activation(mlxn_stream *stream, mlxn_act act, const mlxn_tensor *x,
                                     const mlxn_tensor *y);
/* y = act(gate) * up: SwiGLU (SILU), GeGLU (GELU_TANH / GELU_ERF), sigmoid-gated multiply
 * (SIGMOID). */
MLXN_API mlxn_status mlxn_glu(mlxn_stream *stream, mlxn_act act, const mlxn_tensor *gate,
                              const mlxn_tensor *up, const mlxn_tensor *y);

/* What a decoder does around its projections, fused into the product (mlxn_qmatmul_fused): on
 * CUDA a decode-sized call (up to 8 rows of x) stays one kernel, saving a launch and a pass
 * over the activations per fusion; larger calls run the same steps as separate kernels through
 * the stream's scratch memory, which cannot grow during graph capture (run such a call once
 * first).
 *   norm_w  (f32 [K] or NULL): x's rows are first RMS-normalized and scaled,
 *           x_m <- x_m / sqrt(mean(x_m^2) + norm_eps) * norm_w (f32 arithmetic)
 *   glu     W holds 2F rows, the gate rows [0, F) then the up rows [F, 2F):
 *           y[m, n] = act(g[m, n]) * u[m, n] with g = x . W[0:F]^T, u = x . W[F:2F]^T; y is [..., F]
 *   accumulate  y += the result (y is read first: the residual add), instead of y = it.
 * A fused q, k, v projection (y 2-D [M, N], its rows heads of head_dim; neither glu nor
 * accumulate) may also take the attention's next two steps, with the results of running them
 * after the product:
 *   rope (NULL: none)  mlxn_rope(yh, rope_pos, rope, yh) with yh the [M, rope_heads, head_dim]
 *           view of y's first rope_heads heads (the q heads, then the k heads): in place in y
 *   kv_cache (NULL: none)  then mlxn_kv_append(src, kv_pos, kv_cache) with src the
 *           [2, M, Hk, head_dim] view of heads [kv_head, kv_head + 2 Hk) of y's rows (K, then
 *           V; kv_cache [2, Hk, S, head_dim], kv_pos i32 [2]: K's and V's first slots)
 * On CUDA the decode kernel for one row of x with short rows of W (the small models' q, k, v)
 * does both in its epilogue (NORMAL-style rope without per-head norm or sections, a cache not
 * q8_0); other calls run them as the separate ops.
 * y must not overlap x. Zero-initialized (mlxn_qmatmul_fusion_default): no fusion. */
typedef struct mlxn_qmatmul_fusion {
    const mlxn_tensor *norm_w;
    float norm_eps;
    bool glu;
    mlxn_act glu_act;
    bool accumulate;
    const struct mlxn_rope_params *rope; /* mlxn_rope_params, declared below */
    const mlxn_tensor *rope_pos;
    int64_t head_dim, rope_heads;
    const mlxn_tensor *kv_cache, *kv_pos;
    int64_t kv_head;
} mlxn_qmatmul_fusion;

MLXN_API mlxn_qmatmul_fusion mlxn_qmatmul_fusion_default(void);
/* mlxn_qmatmul with the fusions of f (NULL: none). */
MLXN_API mlxn_status mlxn_qmatmul_fused(mlxn_stream *stream, const mlxn_tensor *x, const mlxn_tensor *w,
                                        const mlxn_qmatmul_fusion *f, const mlxn_tensor *y);

/* ---------------------------------------------------------------- ops: softmax family
 *
 * Over the innermost dimension of x (f32, f16 or bf16; any row strides), in f32:
 *     z = x * scale;  z = softcap * tanh(z / softcap) if softcap > 0;  z += mask if given
 *     y = softmax(z) = exp(z - max z) / sum exp(z - max z),  or log-softmax(z) when log
 * mask (additive, -inf to exclude) and y are shaped like x and of its dtype; y may be x. A row
 * whose z are all -inf gives zeros (softmax) or -inf (log-softmax); a row with a NaN z gives NaN
 * throughout.
 */
MLXN_API mlxn_status mlxn_softmax(mlxn_stream *stream, const mlxn_tensor *x, const mlxn_tensor *mask,
                                  float scale, float softcap, bool log, const mlxn_tensor *y);

/* ---------------------------------------------------------------- ops: layout
 *
 * Copies between views of any strides (each of them 1 to MLXN_MAX_DIMS dims; x may also repeat
 * elements through stride 0, y may not: its elements must not overlap each other). Values are
 * converted to y's dtype: f32, f16 and bf16 in any pair (round to nearest even; f32 -> f16
 * overflows to inf; NaN stays NaN), or i32 to i32. Copies of one dtype move the bits unchanged.
 * y must not overlap x (except as the very same view in mlxn_copy, which changes nothing).
 */
/* y = x converted to y's dtype; x and y have one shape. */
MLXN_API mlxn_status mlxn_copy(mlxn_stream *stream, const mlxn_tensor *x, const mlxn_tensor *y);
/* y = x with its dims permuted: y.shape[i] = x.shape[perm[i]], y[.., j_i, ..] = x[.., j at perm[i], ..]
 * (numpy's transpose(x, perm)); perm is a permutation of 0 .. x.ndim - 1, y of x's rank. */
MLXN_API mlxn_status mlxn_permute(mlxn_stream *stream, const mlxn_tensor *x, const int *perm,
                                  const mlxn_tensor *y);
/* y = the n tensors xs[0 .. n-1] one after another along dim (all of y's rank, every other dim
 * equal to y's, the sizes along dim summing to y.shape[dim]); each part is an mlxn_copy into the
 * mlxn_tensor_slice of y that it fills (so dtypes may differ as in mlxn_copy). The inverse, a
 * split, needs no op: mlxn_tensor_slice views of the whole. All parts are checked before any is
 * written. */
MLXN_API mlxn_status mlxn_concat(mlxn_stream *stream, const mlxn_tensor *const *xs, int n, int dim,
                                 const mlxn_tensor *y);

/* ---------------------------------------------------------------- ops: row reductions
 *
 * Over the innermost dimension of x (any row strides, the innermost dimension contiguous); y is
 * shaped like x, of its dtype, and may be x itself (other overlaps are undefined).
 */
/* y = x / max(||x_row||_2, eps) per row, as ggml_l2_norm (sum of squares in f32, then
 * x * (1 / max(sqrt(sum), eps))); f32, f16 or bf16; eps finite and >= 0. */
MLXN_API mlxn_status mlxn_l2_norm(mlxn_stream *stream, const mlxn_tensor *x, float eps,
                                  const mlxn_tensor *y);
/* Inclusive prefix sum along each row: y[r, i] = x[r, 0] + .. + x[r, i]. f32 (the CPU sums in f64;
 * CUDA sums in f32 by tiles of a row, so the rounding error grows with the number of tiles, not
 * of elements) or i32 (exact, wrapping modulo 2^32). */
MLXN_API mlxn_status mlxn_cumsum(mlxn_stream *stream, const mlxn_tensor *x, const mlxn_tensor *y);

/* ---------------------------------------------------------------- ops: rotary position embedding
 *
 * RoPE as ggml's ggml_rope_ext / ggml_rope_multi define it, over x [T, H, D] or [B, T, H, D]
 * (f32, f16 or bf16; any strides, the innermost dim contiguous); y is shaped like x, of its
 * dtype, and may be x itself (other overlaps are undefined). pos holds the absolute position
 * of each token: i32 [T] (shared by every sequence of a batch, as in ggml) or [B, T]. For pair
 * i < n_rot / 2 of each head, at position p:
 *     w_i   = base^(-2i / n_rot) / freq_factors[i]                  (no freq_factors: 1)
 *     theta = p * w_i * freq_scale,  m = attn_factor                 (ext_factor = 0)
 *   YaRN (ext_factor != 0), with ggml's correction dims [lo, hi] (ggml_rope_yarn_corr_dims in
 *   f32: floor / ceil of n_rot ln(n_ctx_orig / (2 pi beta)) / (2 ln base) for beta_fast /
 *   beta_slow, clamped to [0, n_rot - 1]):
 *     mix   = ext_factor * (1 - clamp((i - lo) / max(0.001, hi - lo), 0, 1))
 *     theta = p * w_i * (freq_scale * (1 - mix) + mix),  m = attn_factor * (1 + 0.1 ln(1 / freq_scale))
 *     (y_a, y_b) = m * (x_a cos theta - x_b sin theta,  x_a sin theta + x_b cos theta)
 * with (a, b) = (2i, 2i + 1) for MLXN_ROPE_NORMAL and (i, i + n_rot / 2) for MLXN_ROPE_NEOX;
 * dims n_rot .. D - 1 are copied unchanged.
 *
 * Multi-section rope (sections not all 0: each >= 0, one of the first three > 0, their sum <= D
 * as ggml asserts; pairs as NEOX, like ggml's modes 8 and 40, so style must be MLXN_ROPE_NEOX):
 * pos is i32 [4, T] (ggml's layout: rows of t, h, w and e positions; or [B, 4, T]) and pair i
 * takes its position from the row chosen by its sector
 * s = i mod (sections[0] + .. + sections[3]): mrope by consecutive sections (s < sections[0]:
 * t, then h, w, e); imrope (interleaved) by s mod 3 (0: t while s < 3 sections[0]; 1: h while
 * s < 3 sections[1]; 2: w while s < 3 sections[2]; otherwise e).
 *
 * Per-head RMS norm (norm_w set; Gemma 3 and Qwen3 normalize each q and k head before the
 * rotation): every head row x[.., h, :] is first replaced, over all D dims (not only n_rot), by
 *     xn = x / sqrt(mean(x^2) + norm_eps) * norm_w[h]
 * and xn is rotated as above; dims n_rot .. D - 1 then take xn. norm_w is f32 [D] (one row for
 * every head) or [H, D] (a row per head: q_norm for the q heads and k_norm for the k heads of
 * adjacent q and k heads in one call). This is ggml's rms_norm, mul and rope in one pass; xn
 * stays in f32 (not rounded to x's dtype) until the one rounding of y, which for f32 x is what
 * ggml's f32 graph does.
 *
 * Angles are formed in f64 and reduced to [-pi, pi] before an f32 sin / cos, so positions in
 * the tens of thousands keep f32 accuracy (ggml forms p * w_i in f32: about 1e-3 rad off at
 * p = 30000); everything else runs in f32, rounded once to the dtype.
 */
typedef enum mlxn_rope_style {
    MLXN_ROPE_NORMAL = 0, /* adjacent pairs (x_2i, x_2i+1) (ggml mode 0) */
    MLXN_ROPE_NEOX = 2    /* half split (x_i, x_i+n_rot/2) (ggml mode 2) */
} mlxn_rope_style;

typedef struct mlxn_rope_params {
    mlxn_rope_style style;
    int n_rot;         /* rotated dims at the start of each head (even, <= D); 0: the whole head */
    float base;        /* frequency base (> 0) */
    float freq_scale;  /* linear position scaling (> 0; 1 = none) */
    float ext_factor, attn_factor, beta_fast, beta_slow; /* YaRN as in ggml; ext_factor 0 = off */
    int n_ctx_orig;    /* YaRN: the training context (> 0 when ext_factor != 0) */
    const mlxn_tensor *freq_factors; /* optional f32 [n_rot / 2]: w_i /= freq_factors[i] (rope_freqs) */
    int sections[4];   /* multi-section rope (mrope / imrope), in pairs; all 0 = off */
    bool interleaved;  /* imrope (Qwen3-VL) instead of mrope */
    const mlxn_tensor *norm_w; /* optional f32 [D] or [H, D]: RMS-normalize each head first */
    float norm_eps;    /* the norm's epsilon (finite, >= 0) */
} mlxn_rope_params;

/* NORMAL, n_rot 0 (whole head), base 10000, freq_scale 1, YaRN off (ext_factor 0, attn_factor 1,
 * beta_fast 32, beta_slow 1, n_ctx_orig 0), no freq_factors, no sections, no norm (norm_w NULL,
 * norm_eps 1e-6). */
MLXN_API mlxn_rope_params mlxn_rope_params_default(void);

MLXN_API mlxn_status mlxn_rope(mlxn_stream *stream, const mlxn_tensor *x, const mlxn_tensor *pos,
                               const mlxn_rope_params *p, const mlxn_tensor *y);
/* ---------------------------------------------------------------- ops: embedding lookup
 *
 * y[t, :] = scale * table[ids[t], :], decoded and scaled in f32 and rounded once to y's dtype.
 * table is [V, D] in a GGML block format that mlxn_qmatmul takes (D a multiple of its block)
 * or in f32, f16 or bf16; ids are i32 of shape [T] (or [B, T], [A, B, T]); y is f32, f16 or
 * bf16 of shape ids.shape + [D]. Whether an id lies in [0, V) is only known on the device,
 * where no status can be returned: the row of an id outside it is written as NaN.
 */
MLXN_API mlxn_status mlxn_get_rows(mlxn_stream *stream, const mlxn_tensor *table,
                                   const mlxn_tensor *ids, float scale, const mlxn_tensor *y);

/* ---------------------------------------------------------------- ops: elementwise arithmetic
 *
 * Computed in f32 and rounded once to y's dtype. a, x and y are f32, f16 or bf16 of one dtype
 * and shape, any row strides (the innermost dimension contiguous).
 */
typedef enum mlxn_binop { MLXN_BINOP_ADD, MLXN_BINOP_SUB, MLXN_BINOP_MUL, MLXN_BINOP_DIV } mlxn_binop;

/* y = a op b, b broadcast to a's shape by numpy's rules: dims aligned at the right, each of b's
 * dims equal to a's or 1, missing leading dims repeated. b is of a's dtype or f32, any strides
 * (its innermost dimension contiguous or of size 1). y may be a, or b when b has a's shape;
 * other overlaps are undefined. */
MLXN_API mlxn_status mlxn_binary(mlxn_stream *stream, mlxn_binop op, const mlxn_tensor *a,
                                 const mlxn_tensor *b, const mlxn_tensor *y);
/* y = alpha * x + beta, as one fused multiply-add; y may be x. */
MLXN_API mlxn_status mlxn_scale(mlxn_stream *stream, const mlxn_tensor *x, float alpha, float beta,
                                const mlxn_tensor *y);

/* ---------------------------------------------------------------- ops: argmax and sampling */

/* out[b] = the index of the largest element of row b of x (f32, f16 or bf16 [B, V], any row
 * strides; rows of higher-dimensional x count as rows too). Ties go to the lowest index, -0 and
 * +0 are equal, NaN never wins; a row of only NaN gives -1. out: i32 [B], contiguous. */
MLXN_API mlxn_status mlxn_argmax(mlxn_stream *stream, const mlxn_tensor *x, const mlxn_tensor *out);

/* ---------------------------------------------------------------- ops: attention and KV cache
 *
 * Attention of new queries over a KV cache, per batch row b, query t and query head h (KV head
 * h / (Hq / Hkv): grouped-query attention of any ratio, MQA included):
 *     z_j = scale * q . k_j;  z_j = softcap * tanh(z_j / softcap) if softcap > 0;  z_j += mask[t, j]
 *     o = sum_j exp(z_j - m) v_j / (sum_j exp(z_j - m) + exp(sinks[h] - m))   (m: the max)
 * over the keys j visible to the query at position p = pos[b] + t: j < pos[b] + Tq (the valid
 * keys), j <= p when causal, and j > p - window when window > 0. A query that sees no key (or
 * whose mask excludes all of them) gets zeros. Arithmetic is f32 (the oracle: f64); the CUDA
 * prefill kernel rounds q to the cache's 16-bit type when q is f32 (relative error 2^-11 for
 * f16, 2^-8 for bf16 on each q element) and the probabilities to that type before the product
 * with V (the same relative error on each weight).
 */
typedef struct mlxn_attention_params {
    float scale;              /* logits = scale * q.k */
    float softcap;            /* 0 = none; else logits = softcap * tanh(logits / softcap) */
    int64_t window;           /* 0 = none; else key at position j is visible to a query at position p iff p - window < j (and j <= p when causal) */
    bool causal;              /* default true: keys j <= p */
    const mlxn_tensor *mask;  /* optional additive f32 [Tq, S], broadcast over batch and heads (-inf excludes) */
    const mlxn_tensor *sinks; /* optional f32 [Hq]: a per-head extra logit in the softmax denominator */
} mlxn_attention_params;

/* scale 1, causal, nothing else */
MLXN_API mlxn_attention_params mlxn_attention_params_default(void);

/* q: [B, Tq, Hq, D] (f32, f16, bf16; any strides with D contiguous, e.g. a view of a fused QKV
 * buffer); k, v: caches [B, Hkv, S, D] (f32, f16, bf16 or q8_0, one dtype for both),
 * Hq % Hkv == 0. A q8_0 cache holds each row as D / 32 GGML Q8_0 blocks (D a multiple of 32,
 * else SHAPE), read as their dequantized values: 34 bytes per 32 elements, about half of f16's.
 * pos: i32 [B] in device memory, the position of each sequence's first query (query t is at
 * pos[b] + t). Keys at positions 0 .. pos[b] + Tq - 1 live in slots 0.. of the cache (linear
 * layout); slots past them are never read. pos[b] + Tq <= S and pos[b] >= 0 are checked where
 * the op runs: a batch row outside that range gets NaN outputs. o: [B, Tq, Hq, D] in q's dtype.
 * Any D up to 512 (on CUDA the fast kernels take up to 8 query rows per KV head with D a
 * multiple of 8, and longer chunks with f16/bf16 caches and D in {64, 80, 96, 128, 256}; the
 * rest, q8_0 caches past 8 query rows per KV head included, runs in a slower generic kernel).
 * p NULL: the defaults. o must not overlap q, k or v. */
MLXN_API mlxn_status mlxn_attention(mlxn_stream *stream, const mlxn_tensor *q, const mlxn_tensor *k,
                                    const mlxn_tensor *v, const mlxn_tensor *pos,
                                    const mlxn_attention_params *p, const mlxn_tensor *o);

/* Writes new K or V rows into a cache: src [B, T, Hkv, D] (f32/f16/bf16) -> cache [B, Hkv, S, D]
 * (f32/f16/bf16, rounded to nearest even; or q8_0, D a multiple of 32 (else SHAPE), each row
 * quantized per 32 elements exactly as mlxn_ggml_quantize does, bit for bit on every backend)
 * at slots (pos[b] + t) % S: linear while pos[b] + T <= S, a ring past that. T <= S; a batch row
 * with pos[b] < 0 is left unwritten. */
MLXN_API mlxn_status mlxn_kv_append(mlxn_stream *stream, const mlxn_tensor *src, const mlxn_tensor *pos,
                                    const mlxn_tensor *cache);
typedef struct mlxn_sampler_params {
    float temperature;    /* <= 0: greedy (the argmax of the penalized logits) */
    int top_k;            /* 0 = off */
    float top_p;          /* in [0, 1]; 1 = off */
    float min_p;          /* in [0, 1]; 0 = off */
    float repeat_penalty; /* > 0; 1 = off */
    uint64_t seed;
} mlxn_sampler_params;

/* temperature 1, every filter off, no penalty, seed 0: a plain draw from softmax(logits). */
MLXN_API mlxn_sampler_params mlxn_sampler_params_default(void);

/* The most history entries per row that a repeat penalty reads. */
#define MLXN_SAMPLE_MAX_HISTORY 4096

/* One token per row of logits (f32 [B, V], any row strides, V <= 2^24) into out (i32 [B],
 * contiguous), in this order:
 *   1. repeat penalty: the logit l of each distinct id in the row's history (i32 [B, H],
 *      H <= MLXN_SAMPLE_MAX_HISTORY; entries outside [0, V) ignored; NULL: none) becomes
 *      l / repeat_penalty if l > 0, else l * repeat_penalty (llama.cpp's rule)
 *   2. temperature <= 0: the token is the argmax of these logits (mlxn_argmax's rules), done;
 *      else z = l / temperature
 *   3. rank: tokens ordered by z, largest first, ties by lower id, NaN last
 *   4. top_k > 0: keep the first top_k of that order
 *   5. weights p = exp(z - max z) of the kept tokens (the largest weighs 1)
 *   6. top_p < 1: keep the shortest prefix of the order whose weight reaches top_p of the
 *      kept weight (at least one token)
 *   7. min_p > 0: keep the tokens with p >= min_p
 *   8. draw: u in [0, 1) from a counter-based generator of (seed, step, row); the token is the
 *      first kept one, in id order, at which the running sum of weights exceeds u times their
 *      total.
 * Weights are computed in f32 and summed as integers of 2^-40, so the CPU and CUDA backends
 * pick the same token for the same logits. A row whose largest z is -inf or NaN gives -1. */
MLXN_API mlxn_status mlxn_sample(mlxn_stream *stream, const mlxn_tensor *logits,
                                 const mlxn_tensor *history, const mlxn_sampler_params *p,
                                 uint64_t step, const mlxn_tensor *out);

/* ---------------------------------------------------------------- ops: mixture-of-experts routing
 *
 * mlxn_moe_gate picks each token's experts from its router logits (f32, f16 or bf16 [T, E], any
 * row stride), in f32:
 *   1. probabilities over all E experts: p = softmax(logits row) or p = sigmoid(logits)
 *   2. selection scores s = p + bias (bias: optional f32 [E], contiguous; DeepSeek-V3's
 *      e_score_correction_bias), or s = p without one
 *   3. the top_k experts by s, slot order by descending s, equal scores by the lower expert index
 *   4. weights w = p of the selected experts (the unbiased probabilities); when normalize,
 *      w = w / (sum of the top_k w, added in slot order); then w = w * scale
 * ids: i32 [T, top_k], weights: f32 [T, top_k] (any row strides). 1 <= top_k <= 16, top_k <= E.
 * E: any (up to 2^31 - 1) on every backend. NaN logits give an unspecified selection. */
typedef enum mlxn_moe_gating { MLXN_MOE_GATING_SOFTMAX = 0, MLXN_MOE_GATING_SIGMOID = 1 } mlxn_moe_gating;

/* The most experts a token selects. */
#define MLXN_MOE_MAX_TOP_K 16

typedef struct mlxn_moe_gate_params {
    mlxn_moe_gating gating;   /* probabilities over all E experts: softmax(logits) or sigmoid(logits) */
    int top_k;                /* 1..16, <= E */
    bool normalize;           /* divide the k selected probabilities by their sum (qwen3moe norm_topk_prob) */
    float scale;              /* multiply the final weights (1 = none; DeepSeek routed_scaling_factor) */
    const mlxn_tensor *bias;  /* optional f32 [E]: added to the probabilities for SELECTION only (DeepSeek-V3
                                 e_score_correction_bias); the weights are the unbiased probabilities */
} mlxn_moe_gate_params;

/* softmax, top_k 1, no normalize, scale 1, no bias */
MLXN_API mlxn_moe_gate_params mlxn_moe_gate_params_default(void);
MLXN_API mlxn_status mlxn_moe_gate(mlxn_stream *stream, const mlxn_tensor *logits, const mlxn_moe_gate_params *p,
                                   const mlxn_tensor *ids, const mlxn_tensor *weights);

/* y[t, :] = sum over j = 0 .. k-1 of weights[t, j] * x[t, j, :], summed in f32 in slot order and
 * rounded once to y's dtype. x: [T, k, N] f32, f16 or bf16 (any strides but the innermost),
 * weights: f32 [T, k], y: [T, N] of x's dtype; k >= 1. */
MLXN_API mlxn_status mlxn_moe_reduce(mlxn_stream *stream, const mlxn_tensor *x, const mlxn_tensor *weights,
                                     const mlxn_tensor *y);

#ifdef __cplusplus
}
#endif

#endif /* MLXN_H */
