/* A synthetic qwen3moe GGUF with random weights: small enough to write in a second, shaped
 * like the real architecture (q/k norms, GQA, routed experts without shared ones), so that the
 * MoE path of the runner runs end to end without downloading a model. Shared by `mlxn
 * synth-moe` and tests/test_model_moe.c. */
#ifndef MLXN_SYNTH_MOE_H
#define MLXN_SYNTH_MOE_H

#include "mlxn.h"

typedef struct synth_moe_options {
    uint64_t seed;
    int64_t n_layer, n_embd, n_head, n_head_kv, head_dim;
    int64_t n_expert, n_expert_used, n_ff_exp;
    int64_t n_ctx_train;
    /* Router logit spread (standard deviation over the experts for a unit-RMS input). */
    float router_std;
    /* Copy the tokenizer (every tokenizer.* key) from this GGUF instead of generating a byte-level
     * vocabulary; NULL: 256 byte tokens and <|endoftext|>. */
    const char *tokenizer_from;
    /* A dense qwen3 instead (the same attention; an FFN of n_ff with the expert weights' types,
     * no router or experts). */
    bool dense;
    int64_t n_ff;
} synth_moe_options;

/* 4 layers, 512 wide, 8 query heads / 2 KV heads of 64, 32 experts, top 4, expert FFN 256 (dense:
 * FFN 1024). */
synth_moe_options synth_moe_options_default(void);

/* Writes the model to path. The expert weights cycle through Q4_0, Q8_0 and Q4_K by layer (gate
 * and up share a type, down takes the next one), attention weights alternate Q8_0 and f16, the
 * router is f32, norms f32 near 1, token_embd and output Q8_0. Every quantized tensor is random
 * codes with block scales calibrated so that each weight matrix has RMS 1/sqrt(K): activations
 * stay O(1) through the layers and the logits spread over a few units. */
mlxn_status synth_moe_write(const char *path, const synth_moe_options *o);

#endif
