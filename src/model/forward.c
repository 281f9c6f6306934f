/* The decoder forward pass of llama, gemma3, qwen3 and qwen3moe as a sequence of public ops on one stream.
 * Per layer (T tokens, x the residual stream [T, E], f32):
 *
 *   xn  = rms_norm(x) * attn_norm              (fused with the previous layer's residual add)
 *   q, k, v = xn . Wq^T, xn . Wk^T, xn . Wv^T   [T, H*D]
 *   q, k = rope(rms_norm per head (q_norm, k_norm; gemma3, qwen3), positions)
 *   append k, v to the layer's cache   (with a fused qkv product, these two are fusions of the
 *          product: one op, and for a llama decode step one kernel)
 *   att = attention(q, cache, window on sliding layers)
 *   a   = att . Wo^T
 *   x  += a (gemma3: rms_norm(a) * post_attention_norm);  xn = rms_norm(x) * ffn_norm   (one op)
 *   h   = act(xn . Wgate^T) * (xn . Wup^T);  d = h . Wdown^T
 *   x  += d (gemma3: rms_norm(d) * post_ffw_norm)    (one op with the next layer's norm)
 *
 * qwen3moe replaces the FFN with k of n_expert routed experts (F = n_ff_exp):
 *   r   = xn . Wrouter^T                          [T, n_expert] (f32 router weights)
 *   ids, w = top-k of softmax(r), w renormalized  [T, k]
 *   h[t, j] = silu(xn[t] . Wgate[ids]^T) * (xn[t] . Wup[ids]^T)    [T, k, F]
 *   y[t, j] = h[t, j] . Wdown[ids]^T              [T, k, E]
 *   d[t]    = sum_j w[t, j] y[t, j]
 *
 * and at the end logits = rms_norm(x) * output_norm . Wout^T (Wout = token_embd when tied). */
#include <string.h>

#include "../core/internal.h"
#include "model_internal.h"

static mlxn_tensor mat(mlxn_buffer *b, size_t offset, int64_t rows, int64_t cols)
{
    const int64_t shape[2] = {rows, cols};
    return mlxn_tensor_make(b, offset, MLXN_DTYPE_F32, 2, shape);
}

/* Heads [c0, c0 + H) of rows of `width` f32 values: [T, H, D], or [1, T, H, D] when batch. */
static mlxn_tensor heads(mlxn_buffer *b, int64_t T, int64_t width, int64_t c0, int64_t H, int64_t D, bool batch)
{
    mlxn_tensor t;
    memset(&t, 0, sizeof t);
    t.buffer = b;
    t.offset = (size_t)(c0 * D) * sizeof(float);
    t.dtype = MLXN_DTYPE_F32;
    const int64_t shape[4] = {1, T, H, D}, stride[4] = {T * width * 4, width * 4, D * 4, 4};
    t.ndim = batch ? 4 : 3;
    for (int i = 0; i < t.ndim; i++) {
        t.shape[i] = shape[i + !batch];
        t.stride[i] = stride[i + !batch];
    }
    return t;
}

/* The norms fold into the projections (no post norms: llama, qwen3). */
static bool folds_norms(const mlxn_model *m)
{
    return !m->moe && !m->layers[0].post_attn_norm.buffer && !m->layers[0].post_ffn_norm.buffer;
}

/* y = in . W^T [+ y when accumulate], with in normalized by norm_w first when given. */
static mlxn_status project(mlxn_model *m, const mlxn_tensor *in, const mlxn_tensor *w, const mlxn_tensor *norm_w,
                           bool glu, bool accumulate, const mlxn_tensor *y)
{
    mlxn_qmatmul_fusion f = mlxn_qmatmul_fusion_default();
    f.norm_w = norm_w;
    f.norm_eps = m->eps;
    f.glu = glu;
    f.glu_act = m->ffn_act;
    f.accumulate = accumulate;
    return mlxn_qmatmul_fused(m->stream, in, w, &f, y);
}

static mlxn_status attention_block(mlxn_model *m, const model_layer *L, int64_t T)
{
    const mlxn_model_info *in = &m->info;
    mlxn_stream *s = m->stream;
    const int64_t E = in->n_embd, D = in->head_dim, Hq = in->n_head, Hk = in->n_head_kv;
    const bool fold = folds_norms(m);
    /* the projections' input: x normalized on the way in, or xn */
    mlxn_tensor xn = fold ? mat(m->x, 0, T, E) : mat(m->xn, 0, T, E);
    const mlxn_tensor *norm = fold ? &L->attn_norm : NULL;
    /* q, k, v: heads of one [T, (Hq + 2 Hk) D] product when fused, else of q [T, Hq D] and of
     * m->kv ([2][n_batch][Hk D]: k, then v) */
    const bool fused = L->w_qkv.buffer != NULL;
    const int64_t W = fused ? (Hq + 2 * Hk) * D : 0, B = m->opt.n_batch;
    mlxn_buffer *qb = m->q, *kb = fused ? m->q : m->kv;
    const int64_t qw = fused ? W : Hq * D, kw = fused ? W : Hk * D, k0 = fused ? Hq : 0;
    mlxn_tensor pos = mlxn_tensor_make(m->step_in, STEP_POS, MLXN_DTYPE_I32, 1, &T);
    mlxn_rope_params rq = L->rope, rk = L->rope;
    rq.norm_w = L->q_norm.buffer ? &L->q_norm : NULL;
    rk.norm_w = L->k_norm.buffer ? &L->k_norm : NULL;
    rq.norm_eps = rk.norm_eps = m->eps;
    /* K and V appended in one call: "batch" 0 is K, 1 is V, both at the sequence's position */
    const int64_t two = 2, S = in->n_ctx;
    mlxn_tensor pos_kv = mlxn_tensor_make(m->step_in, STEP_POS_SEQ, MLXN_DTYPE_I32, 1, &two);
    mlxn_tensor pos_seq = mlxn_tensor_make(m->step_in, STEP_POS_SEQ, MLXN_DTYPE_I32, 1, &two);
    pos_seq.shape[0] = 1;
    const int64_t kv_shape[4] = {2, Hk, S, D};
    mlxn_tensor kv_cache = mlxn_tensor_make(L->kv_cache, 0, m->opt.kv_dtype, 4, kv_shape);
    if (fused && (L->qk_norm.buffer || (!rq.norm_w && !rk.norm_w))) {
        /* q and k heads are adjacent: one norm and rotation with a weight row per head, and the
         * append of the k and v heads after them, fused into the product */
        mlxn_rope_params rqk = L->rope;
        rqk.norm_w = L->qk_norm.buffer ? &L->qk_norm : NULL;
        rqk.norm_eps = m->eps;
        mlxn_qmatmul_fusion f = mlxn_qmatmul_fusion_default();
        f.norm_w = norm;
        f.norm_eps = m->eps;
        f.rope = &rqk;
        f.rope_pos = &pos;
        f.head_dim = D;
        f.rope_heads = Hq + Hk;
        f.kv_cache = &kv_cache;
        f.kv_pos = &pos_kv;
        f.kv_head = Hq;
        mlxn_tensor qkv = mat(m->q, 0, T, W);
        MLXN_TRY(mlxn_qmatmul_fused(s, &xn, &L->w_qkv, &f, &qkv));
    } else {
        if (fused) {
            mlxn_tensor qkv = mat(m->q, 0, T, W);
            MLXN_TRY(project(m, &xn, &L->w_qkv, norm, false, false, &qkv));
        } else {
            mlxn_tensor q = mat(m->q, 0, T, Hq * D), k = mat(m->kv, 0, T, Hk * D);
            mlxn_tensor v = mat(m->kv, (size_t)(B * Hk * D) * sizeof(float), T, Hk * D);
            MLXN_TRY(project(m, &xn, &L->wq, norm, false, false, &q));
            MLXN_TRY(project(m, &xn, &L->wk, norm, false, false, &k));
            MLXN_TRY(project(m, &xn, &L->wv, norm, false, false, &v));
        }
        mlxn_tensor q3 = heads(qb, T, qw, 0, Hq, D, false), k3 = heads(kb, T, kw, k0, Hk, D, false);
        MLXN_TRY(mlxn_rope(s, &q3, &pos, &rq, &q3));
        MLXN_TRY(mlxn_rope(s, &k3, &pos, &rk, &k3));
        /* in the source, V's heads lie Hk D values (fused) or n_batch Hk D values after K's */
        mlxn_tensor kv_src = heads(kb, T, kw, k0, Hk, D, true);
        kv_src.shape[0] = 2;
        kv_src.stride[0] = (fused ? Hk * D : B * Hk * D) * (int64_t)sizeof(float);
        MLXN_TRY(mlxn_kv_append(s, &kv_src, &pos_kv, &kv_cache));
    }
    mlxn_tensor kc = kv_cache, vc = kv_cache;
    kc.shape[0] = vc.shape[0] = 1;
    vc.offset = (size_t)kv_cache.stride[0];
    mlxn_attention_params ap = mlxn_attention_params_default();
    ap.scale = m->attn_scale;
    ap.window = L->sliding ? m->window : 0;
    mlxn_tensor q4 = heads(qb, T, qw, 0, Hq, D, true), o4 = heads(m->att, T, Hq * D, 0, Hq, D, true);
    MLXN_TRY(mlxn_attention(s, &q4, &kc, &vc, &pos_seq, &ap, &o4));
    mlxn_tensor att = mat(m->att, 0, T, Hq * D);
    if (fold) { /* x += att . Wo^T */
        mlxn_tensor x = mat(m->x, 0, T, E);
        return project(m, &att, &L->wo, NULL, false, true, &x);
    }
    mlxn_tensor a = mat(m->proj, 0, T, E);
    return mlxn_qmatmul(s, &att, &L->wo, &a); /* its post norm comes with the residual add */
}

static mlxn_status ffn_block(mlxn_model *m, const model_layer *L, int64_t T)
{
    const mlxn_model_info *in = &m->info;
    mlxn_stream *s = m->stream;
    const int64_t F = in->n_ff, E = in->n_embd;
    const bool fold = folds_norms(m);
    mlxn_tensor xn = fold ? mat(m->x, 0, T, E) : mat(m->xn, 0, T, E);
    const mlxn_tensor *norm = fold ? &L->ffn_norm : NULL;
    /* h = act(gate) * up */
    mlxn_tensor h = mat(m->gate, 0, T, F);
    if (L->w_gate_up.buffer) { /* one product over the gate rows, then the up rows, GLU fused */
        MLXN_TRY(project(m, &xn, &L->w_gate_up, norm, true, false, &h));
    } else {
        mlxn_tensor u = mat(m->up, 0, T, F);
        MLXN_TRY(project(m, &xn, &L->w_gate, norm, false, false, &h));
        MLXN_TRY(project(m, &xn, &L->w_up, norm, false, false, &u));
        MLXN_TRY(mlxn_glu(s, m->ffn_act, &h, &u, &h));
    }
    if (fold) { /* x += h . Wdown^T */
        mlxn_tensor x = mat(m->x, 0, T, E);
        return project(m, &h, &L->w_down, NULL, false, true, &x);
    }
    mlxn_tensor d = mat(m->proj, 0, T, E);
    return mlxn_qmatmul(s, &h, &L->w_down, &d); /* its post norm comes with the residual add */
}

/* The routed-expert FFN of xn into m->proj; ids and weights stay on the device. */
static mlxn_status moe_block(mlxn_model *m, const model_layer *L, int64_t T)
{
    const mlxn_model_info *in = &m->info;
    mlxn_stream *s = m->stream;
    const int64_t E = in->n_embd, X = in->n_expert, k = in->n_expert_used, F = in->n_ff;
    const int64_t tk[2] = {T, k}, tkf[3] = {T, k, F}, tke[3] = {T, k, E};
    mlxn_tensor xn = mat(m->xn, 0, T, E), router = mat(m->router, 0, T, X);
    mlxn_tensor ids = mlxn_tensor_make(m->moe_ids, 0, MLXN_DTYPE_I32, 2, tk);
    mlxn_tensor w = mlxn_tensor_make(m->moe_weights, 0, MLXN_DTYPE_F32, 2, tk);
    mlxn_tensor h = mlxn_tensor_make(m->moe_h, 0, MLXN_DTYPE_F32, 3, tkf);
    mlxn_tensor y = mlxn_tensor_make(m->moe_out, 0, MLXN_DTYPE_F32, 3, tke);
    mlxn_tensor d = mat(m->proj, 0, T, E);
    MLXN_TRY(mlxn_qmatmul(s, &xn, &L->ffn_gate_inp, &router));
    MLXN_TRY(mlxn_moe_gate(s, &router, &m->moe_gate, &ids, &w));
    MLXN_TRY(mlxn_qmatmul_id_swiglu(s, &xn, &L->ffn_gate_exps, &L->ffn_up_exps, &ids, &h));
    MLXN_TRY(mlxn_qmatmul_id(s, &h, &L->ffn_down_exps, &ids, &y));
    return mlxn_moe_reduce(s, &y, &w, &d);
}

/* x += r (normalized by post_norm first when the model has one: gemma3's sandwich norms), and
 * xn = rms_norm(x) * next_norm: one op either way. */
static mlxn_status residual_add_norm(mlxn_model *m, const mlxn_tensor *post_norm, const mlxn_tensor *next_norm,
                                     int64_t T)
{
    const int64_t E = m->info.n_embd;
    mlxn_tensor x = mat(m->x, 0, T, E), xn = mat(m->xn, 0, T, E), r = mat(m->proj, 0, T, E);
    if (post_norm->buffer)
        return mlxn_norm_add_rms_norm(m->stream, &x, &r, post_norm, next_norm, m->eps, &x, &xn);
    return mlxn_add_rms_norm(m->stream, &x, &r, next_norm, m->eps, &x, &xn);
}

mlxn_status mlxn_model_forward(mlxn_model *m, int64_t T, bool all_logits)
{
    const mlxn_model_info *in = &m->info;
    mlxn_stream *s = m->stream;
    const int64_t E = in->n_embd;
    mlxn_tensor ids = mlxn_tensor_make(m->step_in, step_ids(m), MLXN_DTYPE_I32, 1, &T);
    mlxn_tensor x = mat(m->x, 0, T, E), xn = mat(m->xn, 0, T, E);
    MLXN_TRY(mlxn_get_rows(s, &m->tok_embd, &ids, m->embd_scale, &x));
    const bool fold = folds_norms(m);
    if (!fold)
        MLXN_TRY(mlxn_rms_norm(s, &x, &m->layers[0].attn_norm, m->eps, &xn));
    for (int64_t l = 0; l < in->n_layer; l++) {
        const model_layer *L = &m->layers[l];
        MLXN_TRY(attention_block(m, L, T));
        if (!fold)
            MLXN_TRY(residual_add_norm(m, &L->post_attn_norm, &L->ffn_norm, T));
        MLXN_TRY(m->moe ? moe_block(m, L, T) : ffn_block(m, L, T));
        const mlxn_tensor *next_norm = l + 1 < in->n_layer ? &m->layers[l + 1].attn_norm : &m->output_norm;
        if (!fold)
            MLXN_TRY(residual_add_norm(m, &L->post_ffn_norm, next_norm, T));
    }
    const int64_t rows = all_logits ? T : 1;
    mlxn_tensor last = mat(fold ? m->x : m->xn, (size_t)((T - rows) * E) * sizeof(float), rows, E);
    mlxn_tensor logits = mat(m->logits, 0, rows, in->n_vocab);
    return project(m, &last, &m->output, fold ? &m->output_norm : NULL, false, false, &logits);
}
