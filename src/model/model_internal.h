/* The model runner's state, shared by loading (model.c), the forward pass (forward.c) and the
 * step driver (model_eval.c). */
#ifndef MLXN_MODEL_INTERNAL_H
#define MLXN_MODEL_INTERNAL_H

#include "mlxn_model.h"

#define MLXN_MODEL_MAX_LAYERS 256

typedef enum model_arch { ARCH_LLAMA, ARCH_GEMMA3, ARCH_QWEN3, ARCH_QWEN3MOE } model_arch;

/* A weight is absent when its buffer is NULL. */
typedef struct model_layer {
    mlxn_tensor attn_norm, wq, wk, wv, wo, q_norm, k_norm, post_attn_norm;
    mlxn_tensor ffn_norm, w_gate, w_up, w_down, post_ffn_norm;
    /* routed experts (qwen3moe): router [n_expert, E], gate and up [n_expert, n_ff_exp, E] of one
     * type, down [n_expert, E, n_ff_exp] */
    mlxn_tensor ffn_gate_inp, ffn_gate_exps, ffn_up_exps, ffn_down_exps;
    /* On CUDA, rows of Wq|Wk|Wv and of Wgate|Wup copied into one weight each when the parts
     * share a type, so a decode step runs one mat-vec for each pair (buffer NULL otherwise). */
    mlxn_tensor w_qkv, w_gate_up;
    /* With w_qkv and q_norm, k_norm: f32 [n_head + n_head_kv, head_dim], q_norm once per q head
     * then k_norm once per k head, so one rope call normalizes and rotates the adjacent q and k
     * heads of the fused product (buffer NULL otherwise). */
    mlxn_tensor qk_norm;
    bool sliding;                 /* sliding-window attention layer */
    mlxn_rope_params rope;
    mlxn_buffer *kv_cache;        /* [2 (K, V), n_head_kv, n_ctx, head_dim] of kv_dtype */
} model_layer;

struct mlxn_model {
    mlxn_device *device;
    mlxn_stream *stream;
    bool on_cuda;
    mlxn_gguf *gguf;
    mlxn_tokenizer *tokenizer;
    mlxn_model_options opt;
    mlxn_model_info info;
    model_arch arch;
    char arch_name[16];

    float eps, attn_scale, embd_scale;
    int64_t window;               /* sliding window of the sliding layers (0: none) */
    mlxn_act ffn_act;
    bool moe;                     /* every layer's FFN is routed experts */
    mlxn_moe_gate_params moe_gate;

    mlxn_buffer *weights;         /* the GGUF data section on the device */
    mlxn_buffer *fused;           /* the fused weights of every layer (CUDA) */
    mlxn_buffer *qk_norms;        /* every layer's qk_norm */
    mlxn_tensor tok_embd, output_norm, output;
    model_layer layers[MLXN_MODEL_MAX_LAYERS];

    /* scratch for up to n_batch tokens, f32, row-major */
    mlxn_buffer *x, *xn, *q, *kv, *att, *proj, *gate, *up, *logits; /* kv: [2][n_batch][Hkv D] */
    /* a step's inputs, i32, in one buffer so that one upload stages them: pos_seq [2] (K's and
     * V's position in the cache), the tokens' positions [n_batch], their ids [n_batch] (ids
     * last: the sampler writes the next step's id there, and that step's upload stops before) */
    mlxn_buffer *step_in, *history;
    /* MoE scratch: router logits [n_batch, n_expert], selected experts (i32) and their weights
     * [n_batch, k], SwiGLU outputs [n_batch, k, n_ff_exp], expert outputs [n_batch, k, E] */
    mlxn_buffer *router, *moe_ids, *moe_weights, *moe_h, *moe_out;
    /* pinned host staging: three images of step_in (the second and third for the steps issued
     * ahead, in turn), then the sampled token */
    mlxn_buffer *staging;
    int32_t *h_step;
    /* The decode step of the token sampled last, issued before the host has that token (the
     * sampler wrote its id into step_in): the next mlxn_model_eval_sample fed that token only counts it; any
     * other call waits for it first. `sampled` is recorded after the token's download. */
    bool ahead;
    int32_t ahead_id;
    int ahead_img;
    mlxn_event *sampled;
    int64_t n_past;

    mlxn_graph *decode_graph;     /* one token at pos_seq, captured after one eager run */
    bool decode_warm;
};

/* Byte offsets of step_in's parts; the staging holds three images of step_bytes, then the
 * sampled token. */
#define STEP_POS_SEQ 0
#define STEP_POS 16
static inline size_t step_ids(const mlxn_model *m) { return STEP_POS + (size_t)m->opt.n_batch * 4; }
static inline size_t step_bytes(const mlxn_model *m) { return STEP_POS + (size_t)m->opt.n_batch * 8; }

/* Issues the forward pass of T tokens (ids and positions in m->step_in) on
 * the model's stream; the logits of every row (all_logits) or of the last row land in
 * m->logits. */
mlxn_status mlxn_model_forward(mlxn_model *m, int64_t T, bool all_logits);

/* Waits for a step issued ahead (see ahead) and drops it: its token was not the one fed. */
mlxn_status mlxn_model_settle(mlxn_model *m);

#endif
