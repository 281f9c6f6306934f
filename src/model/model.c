/* Loading a GGUF decoder model: hyperparameters from the metadata, weights as views of the
 * data section on the device, the KV cache and per-batch scratch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "model_internal.h"

static const char *fn = "mlxn_model_load";

mlxn_model_options mlxn_model_options_default(void)
{
    return (mlxn_model_options){.n_ctx = 0, .n_batch = 0, .kv_dtype = MLXN_DTYPE_F32, .use_graphs = true,
                                 .fuse_weights = -1};
}

/* <arch>.<key> as an integer; missing: def, or an error when def < 0 */
static mlxn_status meta_int(const mlxn_model *m, const char *key, int64_t def, int64_t *out)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", m->arch_name, key);
    uint64_t u;
    if (!mlxn_gguf_find(m->gguf, full)) {
        if (def < 0)
            return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, fn, "metadata key %s is missing", full);
        *out = def;
        return MLXN_STATUS_OK;
    }
    MLXN_TRY(mlxn_gguf_get_uint(m->gguf, full, &u));
    if (u > (uint64_t)1 << 40)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, fn, "metadata %s = %llu is out of range", full,
                          (unsigned long long)u);
    *out = (int64_t)u;
    return MLXN_STATUS_OK;
}

static double meta_float(const mlxn_model *m, const char *key, double def)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", m->arch_name, key);
    double d;
    return mlxn_gguf_get_float(m->gguf, full, &d) == MLXN_STATUS_OK ? d : def;
}

/* The weight `name` as a view of m->weights, checked against the expected shape (outermost
 * first; ndim 1 to 3, unused sizes 0). Optional weights that are absent leave t->buffer NULL. */
static mlxn_status weight3(mlxn_model *m, const char *name, bool required, int ndim, int64_t d0, int64_t d1,
                           int64_t d2, mlxn_tensor *t)
{
    memset(t, 0, sizeof *t);
    const mlxn_gguf_tensor *gt = mlxn_gguf_find_tensor(m->gguf, name);
    if (!gt)
        return required ? mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, fn, "tensor %s is missing", name) : MLXN_STATUS_OK;
    mlxn_status st = mlxn_gguf_tensor_view(gt, m->weights, 0, t);
    if (st != MLXN_STATUS_OK)
        return mlxn_error(st, fn, "tensor %s: %s", name, mlxn_last_error());
    const int64_t want[3] = {d0, d1, d2};
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == want[i];
    if (!ok) {
        char found[96] = "", expected[96] = "";
        for (int i = 0; i < t->ndim; i++)
            snprintf(found + strlen(found), sizeof found - strlen(found), "%s%lld", i ? ", " : "",
                     (long long)t->shape[i]);
        for (int i = 0; i < ndim; i++)
            snprintf(expected + strlen(expected), sizeof expected - strlen(expected), "%s%lld", i ? ", " : "",
                     (long long)want[i]);
        return mlxn_error(MLXN_STATUS_ERR_SHAPE, fn, "tensor %s has %d dims [%s], expected [%s]", name, t->ndim, found,
                          expected);
    }
    return MLXN_STATUS_OK;
}

static mlxn_status weight(mlxn_model *m, const char *name, bool required, int ndim, int64_t d0, int64_t d1,
                          mlxn_tensor *t)
{
    return weight3(m, name, required, ndim, d0, d1, 0, t);
}

/* Routed experts: count, top-k and width from the metadata; what qwen3moe's graph does not have
 * (shared experts, dense leading layers, other gating functions) is refused by name. */
static mlxn_status read_moe_hparams(mlxn_model *m)
{
    mlxn_model_info *in = &m->info;
    int64_t shared = 0, dense_lead = 0, gating = 1;
    MLXN_TRY(meta_int(m, "expert_count", -1, &in->n_expert));
    MLXN_TRY(meta_int(m, "expert_used_count", -1, &in->n_expert_used));
    MLXN_TRY(meta_int(m, "expert_feed_forward_length", -1, &in->n_ff));
    MLXN_TRY(meta_int(m, "expert_shared_count", 0, &shared));
    MLXN_TRY(meta_int(m, "leading_dense_block_count", 0, &dense_lead));
    MLXN_TRY(meta_int(m, "expert_gating_func", 1, &gating));
    if (shared > 0)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn, "%s.expert_shared_count = %lld: shared experts are not supported",
                          m->arch_name, (long long)shared);
    if (dense_lead > 0)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn,
                          "%s.leading_dense_block_count = %lld: dense layers before the MoE layers are not supported",
                          m->arch_name, (long long)dense_lead);
    if (gating != 1) /* llama.cpp's numbering: 1 softmax, 2 sigmoid, 3 softmax over the selected */
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn,
                          "%s.expert_gating_func = %lld: %s uses softmax gating (1)", m->arch_name, (long long)gating,
                          m->arch_name);
    if (in->n_expert < 1 || in->n_expert_used < 1 || in->n_expert_used > in->n_expert ||
        in->n_expert_used > MLXN_MOE_MAX_TOP_K || in->n_ff < 1)
        return mlxn_error(in->n_expert_used > MLXN_MOE_MAX_TOP_K ? MLXN_STATUS_ERR_UNSUPPORTED : MLXN_STATUS_ERR_BAD_FORMAT,
                          fn, "%s: %lld experts, %lld used per token (1 .. min(experts, %d)), expert FFN %lld",
                          m->arch_name, (long long)in->n_expert, (long long)in->n_expert_used, MLXN_MOE_MAX_TOP_K,
                          (long long)in->n_ff);
    /* qwen3moe: softmax over all experts, the top k renormalized (norm_topk_prob), no scale */
    m->moe_gate = mlxn_moe_gate_params_default();
    m->moe_gate.gating = MLXN_MOE_GATING_SOFTMAX;
    m->moe_gate.top_k = (int)in->n_expert_used;
    m->moe_gate.normalize = true;
    return MLXN_STATUS_OK;
}

static mlxn_status read_hparams(mlxn_model *m)
{
    const char *arch;
    MLXN_TRY(mlxn_gguf_get_string(m->gguf, "general.architecture", &arch));
    if (strcmp(arch, "llama") == 0)
        m->arch = ARCH_LLAMA;
    else if (strcmp(arch, "gemma3") == 0)
        m->arch = ARCH_GEMMA3;
    else if (strcmp(arch, "qwen3") == 0)
        m->arch = ARCH_QWEN3;
    else if (strcmp(arch, "qwen3moe") == 0)
        m->arch = ARCH_QWEN3MOE;
    else
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn,
                          "architecture '%s' is not supported (have: llama, gemma3, qwen3, qwen3moe)", arch);
    snprintf(m->arch_name, sizeof m->arch_name, "%s", arch);
    mlxn_model_info *in = &m->info;
    in->arch = m->arch_name;
    if (mlxn_gguf_get_string(m->gguf, "general.name", &in->name) != MLXN_STATUS_OK)
        in->name = "";
    MLXN_TRY(meta_int(m, "block_count", -1, &in->n_layer));
    MLXN_TRY(meta_int(m, "embedding_length", -1, &in->n_embd));
    m->moe = m->arch == ARCH_QWEN3MOE;
    int64_t n_expert = 0;
    MLXN_TRY(meta_int(m, "expert_count", 0, &n_expert));
    if (!m->moe && n_expert > 0)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn, "%s with %lld experts (%s.expert_count) is not supported",
                          m->arch_name, (long long)n_expert, m->arch_name);
    if (m->moe)
        MLXN_TRY(read_moe_hparams(m));
    else
        MLXN_TRY(meta_int(m, "feed_forward_length", -1, &in->n_ff));
    MLXN_TRY(meta_int(m, "attention.head_count", -1, &in->n_head));
    MLXN_TRY(meta_int(m, "attention.head_count_kv", in->n_head, &in->n_head_kv));
    MLXN_TRY(meta_int(m, "context_length", 2048, &in->n_ctx_train));
    if (in->n_layer < 1 || in->n_layer > MLXN_MODEL_MAX_LAYERS || in->n_head < 1 || in->n_head_kv < 1 ||
        in->n_head % in->n_head_kv != 0 || in->n_embd < 1 || in->n_ff < 1)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, fn,
                          "hyperparameters out of range: %lld layers (at most %d), %lld heads, %lld KV heads, "
                          "%lld wide, ffn %lld",
                          (long long)in->n_layer, MLXN_MODEL_MAX_LAYERS, (long long)in->n_head,
                          (long long)in->n_head_kv, (long long)in->n_embd, (long long)in->n_ff);
    int64_t kl = 0, vl = 0;
    MLXN_TRY(meta_int(m, "attention.key_length", in->n_embd / in->n_head, &kl));
    MLXN_TRY(meta_int(m, "attention.value_length", kl, &vl));
    if (kl != vl)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn, "key length %lld differs from value length %lld",
                          (long long)kl, (long long)vl);
    in->head_dim = kl;
    m->eps = (float)meta_float(m, "attention.layer_norm_rms_epsilon", 1e-5);
    m->attn_scale = (float)(1.0 / sqrt((double)in->head_dim));
    m->embd_scale = m->arch == ARCH_GEMMA3 ? sqrtf((float)in->n_embd) : 1.0f;
    m->ffn_act = m->arch == ARCH_GEMMA3 ? MLXN_ACT_GELU_TANH : MLXN_ACT_SILU;
    int64_t window = 0;
    if (m->arch == ARCH_GEMMA3)
        MLXN_TRY(meta_int(m, "attention.sliding_window", 0, &window));
    m->window = window;

    int64_t n_rot;
    MLXN_TRY(meta_int(m, "rope.dimension_count", in->head_dim, &n_rot));
    mlxn_rope_params rope = mlxn_rope_params_default();
    rope.style = m->arch == ARCH_LLAMA ? MLXN_ROPE_NORMAL : MLXN_ROPE_NEOX;
    rope.n_rot = (int)n_rot;
    rope.base = (float)meta_float(m, "rope.freq_base", 10000.0);
    const char *scaling;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch_name);
    if (mlxn_gguf_get_string(m->gguf, key, &scaling) == MLXN_STATUS_OK && strcmp(scaling, "none") != 0) {
        if (strcmp(scaling, "linear") != 0)
            return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn, "rope scaling '%s' is not supported (have: linear)",
                              scaling);
        const double factor = meta_float(m, "rope.scaling.factor", 1.0);
        rope.freq_scale = factor > 0 ? (float)(1.0 / factor) : 1.0f;
    }
    for (int64_t l = 0; l < in->n_layer; l++) {
        model_layer *L = &m->layers[l];
        L->rope = rope;
        /* Gemma 3: five sliding-window layers (RoPE base 10000, unscaled) per global layer */
        L->sliding = m->arch == ARCH_GEMMA3 && window > 0 && (l + 1) % 6 != 0;
        if (L->sliding) {
            L->rope.base = 10000.0f;
            L->rope.freq_scale = 1.0f;
        }
    }
    return MLXN_STATUS_OK;
}

/* What the MoE ops need of a layer's expert weights, and no shared expert beside them. */
static mlxn_status check_moe_layer(mlxn_model *m, int64_t l, const model_layer *L)
{
    static const char *const shared[] = {"ffn_gate_inp_shexp", "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"};
    for (size_t i = 0; i < sizeof shared / sizeof shared[0]; i++) {
        char n[96];
        snprintf(n, sizeof n, "blk.%lld.%s.weight", (long long)l, shared[i]);
        if (mlxn_gguf_find_tensor(m->gguf, n))
            return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn, "tensor %s: shared experts are not supported", n);
    }
    if (L->ffn_gate_exps.dtype != L->ffn_up_exps.dtype)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn,
                          "blk.%lld: ffn_gate_exps is %s and ffn_up_exps %s; the fused gate/up product takes one type",
                          (long long)l, mlxn_dtype_name(L->ffn_gate_exps.dtype), mlxn_dtype_name(L->ffn_up_exps.dtype));
    return MLXN_STATUS_OK;
}

static mlxn_status bind_weights(mlxn_model *m)
{
    const mlxn_model_info *in = &m->info;
    const int64_t E = in->n_embd, D = in->head_dim, Hq = in->n_head, Hk = in->n_head_kv, F = in->n_ff;
    const mlxn_gguf_tensor *emb = mlxn_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb || emb->n_dims != 2)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, fn, "tensor token_embd.weight is missing or not 2-D");
    m->info.n_vocab = emb->ne[1];
    const int64_t V = m->info.n_vocab;
    MLXN_TRY(weight(m, "token_embd.weight", true, 2, V, E, &m->tok_embd));
    MLXN_TRY(weight(m, "output_norm.weight", true, 1, E, 0, &m->output_norm));
    MLXN_TRY(weight(m, "output.weight", false, 2, V, E, &m->output));
    if (!m->output.buffer)
        m->output = m->tok_embd; /* tied */
    const bool qk_norm = m->arch != ARCH_LLAMA, post_norms = m->arch == ARCH_GEMMA3, dense = !m->moe;
    const int64_t X = in->n_expert;
    for (int64_t l = 0; l < in->n_layer; l++) {
        model_layer *L = &m->layers[l];
        char n[96];
#define W(field, suffix, req, nd, a, b)                                  \
    snprintf(n, sizeof n, "blk.%lld." suffix ".weight", (long long)l); \
    MLXN_TRY(weight(m, n, req, nd, a, b, &L->field))
#define W3(field, suffix, a, b, c)                                        \
    snprintf(n, sizeof n, "blk.%lld." suffix ".weight", (long long)l); \
    MLXN_TRY(weight3(m, n, true, 3, a, b, c, &L->field))
        W(attn_norm, "attn_norm", true, 1, E, 0);
        W(wq, "attn_q", true, 2, Hq * D, E);
        W(wk, "attn_k", true, 2, Hk * D, E);
        W(wv, "attn_v", true, 2, Hk * D, E);
        W(wo, "attn_output", true, 2, E, Hq * D);
        W(q_norm, "attn_q_norm", qk_norm, 1, D, 0);
        W(k_norm, "attn_k_norm", qk_norm, 1, D, 0);
        W(post_attn_norm, "post_attention_norm", post_norms, 1, E, 0);
        W(ffn_norm, "ffn_norm", true, 1, E, 0);
        W(post_ffn_norm, "post_ffw_norm", post_norms, 1, E, 0);
        if (dense) {
            W(w_gate, "ffn_gate", true, 2, F, E);
            W(w_up, "ffn_up", true, 2, F, E);
            W(w_down, "ffn_down", true, 2, E, F);
        } else {
            W(ffn_gate_inp, "ffn_gate_inp", true, 2, X, E);
            W3(ffn_gate_exps, "ffn_gate_exps", X, F, E);
            W3(ffn_up_exps, "ffn_up_exps", X, F, E);
            W3(ffn_down_exps, "ffn_down_exps", X, E, F);
            MLXN_TRY(check_moe_layer(m, l, L));
        }
#undef W
#undef W3
    }
    return MLXN_STATUS_OK;
}

/* Rows of the weights parts[0..n) (one GGML type, one row length) copied one after another
 * into m->fused at *offset: a lossless repacking, so one mat-vec serves them all. */
static mlxn_status fuse(mlxn_model *m, const mlxn_tensor *const *parts, int n, size_t *offset, bool copy,
                        mlxn_tensor *out)
{
    memset(out, 0, sizeof *out);
    int64_t rows = 0;
    for (int i = 0; i < n; i++) {
        if (parts[i]->dtype != parts[0]->dtype || parts[i]->shape[1] != parts[0]->shape[1] ||
            !mlxn_tensor_is_contiguous(parts[i]))
            return MLXN_STATUS_OK; /* mixed types: kept apart */
        rows += parts[i]->shape[0];
    }
    const int64_t shape[2] = {rows, parts[0]->shape[1]};
    if (copy) {
        *out = mlxn_tensor_make(m->fused, *offset, parts[0]->dtype, 2, shape);
        size_t at = *offset;
        for (int i = 0; i < n; i++) {
            const size_t bytes = mlxn_tensor_span_bytes(parts[i]);
            MLXN_TRY(mlxn_buffer_copy(m->fused, at, parts[i]->buffer, parts[i]->offset, bytes, m->stream));
            at += bytes;
        }
    }
    const mlxn_tensor t = mlxn_tensor_make(m->fused, 0, parts[0]->dtype, 2, shape);
    *offset += (mlxn_tensor_span_bytes(&t) + 255) / 256 * 256;
    return MLXN_STATUS_OK;
}

/* Sizes (copy false), then fills (copy true) the fused weights. */
static mlxn_status fuse_layers(mlxn_model *m, bool copy, size_t *bytes)
{
    size_t offset = 0;
    for (int64_t l = 0; l < m->info.n_layer; l++) {
        model_layer *L = &m->layers[l];
        const mlxn_tensor *qkv[3] = {&L->wq, &L->wk, &L->wv}, *gu[2] = {&L->w_gate, &L->w_up};
        MLXN_TRY(fuse(m, qkv, 3, &offset, copy, &L->w_qkv));
        if (L->w_gate.buffer) /* dense FFN (the experts' gate and up go to one fused op instead) */
            MLXN_TRY(fuse(m, gu, 2, &offset, copy, &L->w_gate_up));
    }
    *bytes = offset;
    return MLXN_STATUS_OK;
}

static mlxn_status fuse_weights(mlxn_model *m)
{
    size_t bytes = 0;
    MLXN_TRY(fuse_layers(m, false, &bytes));
    if (bytes == 0)
        return MLXN_STATUS_OK;
    MLXN_TRY(mlxn_buffer_create(m->device, bytes, &m->fused));
    MLXN_TRY(fuse_layers(m, true, &bytes));
    m->info.weight_bytes += bytes;
    return mlxn_stream_sync(m->stream);
}

/* Each fused layer's qk_norm: q_norm copied n_head times, then k_norm n_head_kv times, one
 * buffer for all layers. */
static mlxn_status build_qk_norms(mlxn_model *m)
{
    const mlxn_model_info *in = &m->info;
    const int64_t D = in->head_dim, H = in->n_head + in->n_head_kv, shape[2] = {H, D};
    const size_t row = (size_t)D * sizeof(float), per_layer = (size_t)H * row;
    int64_t n = 0;
    for (int64_t l = 0; l < in->n_layer; l++) {
        const model_layer *L = &m->layers[l];
        if (!L->w_qkv.buffer || !L->q_norm.buffer || !L->k_norm.buffer)
            continue;
        if (L->q_norm.dtype != MLXN_DTYPE_F32 || L->k_norm.dtype != MLXN_DTYPE_F32)
            return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn, "layer %lld: q_norm is %s, k_norm %s; expected f32",
                              (long long)l, mlxn_dtype_name(L->q_norm.dtype), mlxn_dtype_name(L->k_norm.dtype));
        n++;
    }
    if (n == 0)
        return MLXN_STATUS_OK;
    MLXN_TRY(mlxn_buffer_create(m->device, (size_t)n * per_layer, &m->qk_norms));
    size_t at = 0;
    for (int64_t l = 0; l < in->n_layer; l++) {
        model_layer *L = &m->layers[l];
        if (!L->w_qkv.buffer || !L->q_norm.buffer || !L->k_norm.buffer)
            continue;
        L->qk_norm = mlxn_tensor_make(m->qk_norms, at, MLXN_DTYPE_F32, 2, shape);
        for (int64_t h = 0; h < H; h++, at += row) {
            const mlxn_tensor *src = h < in->n_head ? &L->q_norm : &L->k_norm;
            MLXN_TRY(mlxn_buffer_copy(m->qk_norms, at, src->buffer, src->offset, row, m->stream));
        }
    }
    m->info.weight_bytes += (size_t)n * per_layer;
    return mlxn_stream_sync(m->stream);
}

static mlxn_status alloc_state(mlxn_model *m)
{
    const mlxn_model_info *in = &m->info;
    const int64_t B = m->opt.n_batch, E = in->n_embd, D = in->head_dim;
    const size_t f = sizeof(float);
    if (m->opt.kv_dtype == MLXN_DTYPE_Q8_0 && D % 32)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, fn,
                          "kv_dtype q8_0 needs a head dim that is a multiple of 32 (its blocks); this model's is "
                          "%lld: use f16, bf16 or f32",
                          (long long)D);
    struct {
        mlxn_buffer **b;
        size_t bytes;
    } bufs[] = {
        {&m->x, (size_t)(B * E) * f},
        {&m->xn, (size_t)(B * E) * f},
        {&m->q, (size_t)(B * (in->n_head + 2 * in->n_head_kv) * D) * f}, /* q, or q|k|v fused */
        {&m->kv, (size_t)(2 * B * in->n_head_kv * D) * f},
        {&m->att, (size_t)(B * in->n_head * D) * f},
        {&m->proj, (size_t)(B * E) * f},
        /* the dense FFN's gate (or gate|up fused) and up; MoE models use the MoE scratch below */
        {&m->gate, (size_t)(m->moe ? 1 : B * 2 * in->n_ff) * f},
        {&m->up, (size_t)(m->moe ? 1 : B * in->n_ff) * f},
        {&m->logits, (size_t)(B * in->n_vocab) * f},
        {&m->step_in, step_bytes(m)},
        {&m->history, (size_t)in->n_ctx * 4},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        MLXN_TRY(mlxn_buffer_create(m->device, bufs[i].bytes, bufs[i].b));
    if (m->moe) {
        const int64_t X = in->n_expert, k = in->n_expert_used;
        MLXN_TRY(mlxn_buffer_create(m->device, (size_t)(B * X) * f, &m->router));
        MLXN_TRY(mlxn_buffer_create(m->device, (size_t)(B * k) * 4, &m->moe_ids));
        MLXN_TRY(mlxn_buffer_create(m->device, (size_t)(B * k) * f, &m->moe_weights));
        MLXN_TRY(mlxn_buffer_create(m->device, (size_t)(B * k * in->n_ff) * f, &m->moe_h));
        MLXN_TRY(mlxn_buffer_create(m->device, (size_t)(B * k * E) * f, &m->moe_out));
    }
    /* rows of D elements, or of D / 32 blocks for q8_0 */
    const size_t cache = (size_t)(in->n_head_kv * in->n_ctx * (D / mlxn_dtype_block_elems(m->opt.kv_dtype))) *
                         (size_t)mlxn_dtype_block_bytes(m->opt.kv_dtype);
    for (int64_t l = 0; l < in->n_layer; l++)
        MLXN_TRY(mlxn_buffer_create(m->device, 2 * cache, &m->layers[l].kv_cache));
    m->info.kv_bytes = cache * 2 * (size_t)in->n_layer;
    MLXN_TRY(mlxn_buffer_create_pinned(m->device, 3 * step_bytes(m) + 4, &m->staging));
    m->h_step = mlxn_buffer_host_ptr(m->staging);
    MLXN_TRY(mlxn_event_create(m->device, &m->sampled));
    return MLXN_STATUS_OK;
}

static mlxn_status load(mlxn_model *m, const char *path)
{
    MLXN_TRY(mlxn_gguf_open(path, &m->gguf));
    MLXN_TRY(read_hparams(m));
    mlxn_device_info di;
    MLXN_TRY(mlxn_device_get_info(m->device, &di));
    m->on_cuda = di.kind == MLXN_DEVICE_CUDA;
    if (m->on_cuda)
        MLXN_TRY(mlxn_gguf_upload_data(m->gguf, m->device, m->opt.progress, m->opt.progress_user, &m->weights));
    else
        MLXN_TRY(mlxn_gguf_map_data(m->gguf, m->device, &m->weights));
    m->info.weight_bytes = mlxn_gguf_data_size(m->gguf);
    MLXN_TRY(bind_weights(m));
    MLXN_TRY(mlxn_tokenizer_create_gguf(m->gguf, &m->tokenizer));
    if (mlxn_tokenizer_vocab_size(m->tokenizer) > m->info.n_vocab)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, fn, "the tokenizer has %lld tokens, the embedding %lld rows",
                          (long long)mlxn_tokenizer_vocab_size(m->tokenizer), (long long)m->info.n_vocab);
    int64_t n_ctx = m->opt.n_ctx ? m->opt.n_ctx : (m->info.n_ctx_train < 4096 ? m->info.n_ctx_train : 4096);
    if (n_ctx < 1)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "n_ctx %lld: expected at least 1", (long long)n_ctx);
    m->info.n_ctx = n_ctx;
    if (m->opt.n_batch > n_ctx)
        m->opt.n_batch = n_ctx;
    MLXN_TRY(mlxn_stream_create(m->device, &m->stream));
    if (m->opt.fuse_weights > 0 || (m->opt.fuse_weights < 0 && m->on_cuda))
        MLXN_TRY(fuse_weights(m));
    MLXN_TRY(build_qk_norms(m));
    return alloc_state(m);
}

mlxn_status mlxn_model_load(mlxn_device *device, const char *path, const mlxn_model_options *options,
                            mlxn_model **out)
{
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "out is NULL");
    *out = NULL;
    if (!device || !path)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "%s is NULL", device ? "path" : "device");
    mlxn_model *m = calloc(1, sizeof *m);
    if (!m)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "model state");
    m->device = device;
    m->opt = options ? *options : mlxn_model_options_default();
    if (m->opt.n_batch <= 0)
        m->opt.n_batch = 512;
    if (m->opt.kv_dtype != MLXN_DTYPE_F32 && m->opt.kv_dtype != MLXN_DTYPE_F16 && m->opt.kv_dtype != MLXN_DTYPE_BF16 &&
        m->opt.kv_dtype != MLXN_DTYPE_Q8_0) {
        free(m);
        return mlxn_error(MLXN_STATUS_ERR_DTYPE, fn, "kv_dtype %s: expected f32, f16, bf16 or q8_0",
                          mlxn_dtype_name(options->kv_dtype));
    }
    mlxn_status st = load(m, path);
    if (st != MLXN_STATUS_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", mlxn_last_error());
        mlxn_model_free(m);
        return mlxn_error(st, fn, "%s: %s", path, msg);
    }
    *out = m;
    return MLXN_STATUS_OK;
}

void mlxn_model_free(mlxn_model *m)
{
    if (!m)
        return;
    if (m->stream)
        mlxn_stream_sync(m->stream);
    mlxn_graph_free(m->decode_graph);
    mlxn_event_free(m->sampled);
    mlxn_buffer *bufs[] = {m->x,       m->xn,      m->q,           m->kv,     m->att,     m->proj,
                           m->gate,    m->up,      m->logits,      m->step_in, m->staging,
                           m->history, m->router,      m->moe_ids, m->moe_weights, m->moe_h,
                           m->moe_out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        mlxn_buffer_free(bufs[i]);
    for (int64_t l = 0; l < m->info.n_layer && l < MLXN_MODEL_MAX_LAYERS; l++) {
        mlxn_buffer_free(m->layers[l].kv_cache);
    }
    mlxn_buffer_free(m->weights);
    mlxn_buffer_free(m->fused);
    mlxn_buffer_free(m->qk_norms);
    mlxn_tokenizer_free(m->tokenizer);
    mlxn_stream_free(m->stream);
    mlxn_gguf_free(m->gguf);
    free(m);
}

mlxn_model_info mlxn_model_get_info(const mlxn_model *m)
{
    return m->info;
}

const mlxn_tokenizer *mlxn_model_tokenizer(const mlxn_model *m)
{
    return m->tokenizer;
}

mlxn_stream *mlxn_model_stream(const mlxn_model *m)
{
    return m->stream;
}

int64_t mlxn_model_position(const mlxn_model *m)
{
    return m->n_past;
}

void mlxn_model_reset(mlxn_model *m)
{
    (void)mlxn_model_settle(m); /* a failed step shows again at the next call's sync */
    m->n_past = 0;
}
