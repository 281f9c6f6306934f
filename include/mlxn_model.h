/* mlxn model runner: a GGUF decoder-only model (llama, gemma3, qwen3, qwen3moe) on one device, driven
 * through the public op API, with its tokenizer, a KV cache and on-device sampling. */
#ifndef MLXN_MODEL_H
#define MLXN_MODEL_H

#include "mlxn.h"
#include "mlxn_gguf.h"
#include "mlxn_tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mlxn_model mlxn_model;

typedef struct mlxn_model_options {
    int64_t n_ctx;         /* KV cache positions; 0: the model's training context, at most 4096 */
    int64_t n_batch;       /* tokens per forward pass (longer prompts run in chunks); 0: 512 */
    mlxn_dtype kv_dtype;   /* f32, f16, bf16 or q8_0 (head dim a multiple of 32); 0 (MLXN_DTYPE_F32) is the default */
    bool use_graphs;       /* decode steps replay a captured graph (CUDA); default true */
    int fuse_weights;      /* copy Wq|Wk|Wv and Wgate|Wup into one weight each (one mat-vec per
                            * pair): -1 on CUDA only (default; the CPU keeps the file's mapping), 0 never, 1 always */
    mlxn_progress_fn progress; /* weight upload progress (optional) */
    void *progress_user;
} mlxn_model_options;

MLXN_API mlxn_model_options mlxn_model_options_default(void);

typedef struct mlxn_model_info {
    const char *arch;      /* "llama", "gemma3", "qwen3", "qwen3moe" */
    const char *name;      /* general.name or "" */
    int64_t n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab;
    /* routed experts: 0 for dense models; in MoE models n_ff is each expert's FFN width */
    int64_t n_expert, n_expert_used;
    int64_t n_ctx_train, n_ctx;
    size_t weight_bytes;   /* tensor data on the device */
    size_t kv_bytes;       /* KV cache on the device */
} mlxn_model_info;

/* Opens the GGUF at path, checks that the architecture and every tensor type are supported
 * (an error names what is not), places the weights on the device (CPU: the mapped file, zero
 * copy; CUDA: one upload) and allocates the KV cache and scratch. */
MLXN_API mlxn_status mlxn_model_load(mlxn_device *device, const char *path,
                                     const mlxn_model_options *options, mlxn_model **out);
MLXN_API void mlxn_model_free(mlxn_model *model);
MLXN_API mlxn_model_info mlxn_model_get_info(const mlxn_model *model);
MLXN_API const mlxn_tokenizer *mlxn_model_tokenizer(const mlxn_model *model);
/* The model's stream; after mlxn_model_eval_sample on CUDA it may still run the decode step
 * issued ahead (see there). */
MLXN_API mlxn_stream *mlxn_model_stream(const mlxn_model *model);

/* Tokens already in the KV cache; mlxn_model_reset empties it. */
MLXN_API int64_t mlxn_model_position(const mlxn_model *model);
MLXN_API void mlxn_model_reset(mlxn_model *model);

/* Runs ids[0..n) at the next positions (in chunks of n_batch). logits (host, optional) gets the
 * f32 logits of every position ([n][n_vocab]) when all_logits, else of the last one. Running
 * past n_ctx is MLXN_STATUS_ERR_INVALID_ARG and leaves the cache as it was. */
MLXN_API mlxn_status mlxn_model_eval(mlxn_model *model, const int32_t *ids, int64_t n, bool all_logits,
                                     float *logits);

/* Feeds ids[0..n) like mlxn_model_eval and draws the next token on the device from the last
 * position's logits (only 4 bytes come back). history (optional, n_history ids) feeds the
 * repetition penalty; step numbers the draw for the sampler's counter-based generator.
 * On CUDA, once the decode step is captured, the step of the drawn token is issued before this
 * returns, so it runs while the caller handles the token: a next call that feeds exactly that
 * token (n = 1) only counts it; any other call on the model first waits for it and drops it
 * (the cache and the position are as if it had never run). */
MLXN_API mlxn_status mlxn_model_eval_sample(mlxn_model *model, const int32_t *ids, int64_t n,
                                            const mlxn_sampler_params *sampler, const int32_t *history,
                                            int64_t n_history, uint64_t step, int32_t *next);

#ifdef __cplusplus
}
#endif

#endif
