/* The decoder forward pass of llama, gemma3 and qwen3 as a sequence of public ops on one stream.
 * Per layer (T tokens, x the residual stream [T, E], f32):
 *
 *   xn  = rms_norm(x) * attn_norm              (fused with the previous layer's residual add)
 *   q, k, v = xn . Wq^T, xn . Wk^T, xn . Wv^T   [T, H*D]
 *   q, k = rms_norm per head (q_norm, k_norm)   (gemma3, qwen3)
 *   q, k = rope(q, k, positions)
 *   append k, v to the layer's cache; att = attention(q, cache, window on sliding layers)
 *   a   = att . Wo^T;  a = rms_norm(a) * post_attention_norm    (gemma3)
 *   x  += a;  xn = rms_norm(x) * ffn_norm        (one fused op)
 *   h   = act(xn . Wgate^T) * (xn . Wup^T);  d = h . Wdown^T;  d = rms_norm(d) * post_ffw_norm (gemma3)
 *   x  += d                                      (fused with the next norm)
 *
 * and at the end logits = rms_norm(x) * output_norm . Wout^T (Wout = token_embd when tied). */
#include "../core/internal.h"
#include "model_internal.h"

static mlxn_tensor mat(mlxn_buffer *b, size_t offset, int64_t rows, int64_t cols)
{
    const int64_t shape[2] = {rows, cols};
    return mlxn_tensor_make(b, offset, MLXN_DTYPE_F32, 2, shape);
}

static mlxn_tensor heads3(mlxn_buffer *b, int64_t T, int64_t H, int64_t D)
{
    const int64_t shape[3] = {T, H, D};
    return mlxn_tensor_make(b, 0, MLXN_DTYPE_F32, 3, shape);
}

static mlxn_tensor heads4(mlxn_buffer *b, mlxn_dtype dt, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    const int64_t shape[4] = {d0, d1, d2, d3};
    return mlxn_tensor_make(b, 0, dt, 4, shape);
}

static mlxn_status attention_block(mlxn_model *m, const model_layer *L, int64_t T)
{
    const mlxn_model_info *in = &m->info;
    mlxn_stream *s = m->stream;
    const int64_t E = in->n_embd, D = in->head_dim, Hq = in->n_head, Hk = in->n_head_kv;
    mlxn_tensor xn = mat(m->xn, 0, T, E);
    mlxn_tensor q = mat(m->q, 0, T, Hq * D), k = mat(m->k, 0, T, Hk * D), v = mat(m->v, 0, T, Hk * D);
    MLXN_TRY(mlxn_qmatmul(s, &xn, &L->wq, &q));
    MLXN_TRY(mlxn_qmatmul(s, &xn, &L->wk, &k));
    MLXN_TRY(mlxn_qmatmul(s, &xn, &L->wv, &v));
    mlxn_tensor qh = mat(m->q, 0, T * Hq, D), kh = mat(m->k, 0, T * Hk, D);
    if (L->q_norm.buffer)
        MLXN_TRY(mlxn_rms_norm(s, &qh, &L->q_norm, m->eps, &qh));
    if (L->k_norm.buffer)
        MLXN_TRY(mlxn_rms_norm(s, &kh, &L->k_norm, m->eps, &kh));
    mlxn_tensor pos = mlxn_tensor_make(m->pos_tok, 0, MLXN_DTYPE_I32, 1, &T);
    mlxn_tensor q3 = heads3(m->q, T, Hq, D), k3 = heads3(m->k, T, Hk, D);
    MLXN_TRY(mlxn_rope(s, &q3, &pos, &L->rope, &q3));
    MLXN_TRY(mlxn_rope(s, &k3, &pos, &L->rope, &k3));
    const int64_t one = 1;
    mlxn_tensor pos_seq = mlxn_tensor_make(m->pos_seq, 0, MLXN_DTYPE_I32, 1, &one);
    mlxn_tensor kc = heads4(L->k_cache, m->opt.kv_dtype, 1, Hk, in->n_ctx, D);
    mlxn_tensor vc = heads4(L->v_cache, m->opt.kv_dtype, 1, Hk, in->n_ctx, D);
    mlxn_tensor k4 = heads4(m->k, MLXN_DTYPE_F32, 1, T, Hk, D), v4 = heads4(m->v, MLXN_DTYPE_F32, 1, T, Hk, D);
    MLXN_TRY(mlxn_kv_append(s, &k4, &pos_seq, &kc));
    MLXN_TRY(mlxn_kv_append(s, &v4, &pos_seq, &vc));
    mlxn_attention_params ap = mlxn_attention_params_default();
    ap.scale = m->attn_scale;
    ap.window = L->sliding ? m->window : 0;
    mlxn_tensor q4 = heads4(m->q, MLXN_DTYPE_F32, 1, T, Hq, D), o4 = heads4(m->att, MLXN_DTYPE_F32, 1, T, Hq, D);
    MLXN_TRY(mlxn_attention(s, &q4, &kc, &vc, &pos_seq, &ap, &o4));
    mlxn_tensor att = mat(m->att, 0, T, Hq * D), a = mat(m->proj, 0, T, E);
    MLXN_TRY(mlxn_qmatmul(s, &att, &L->wo, &a));
    if (L->post_attn_norm.buffer)
        MLXN_TRY(mlxn_rms_norm(s, &a, &L->post_attn_norm, m->eps, &a));
    return MLXN_STATUS_OK;
}

static mlxn_status ffn_block(mlxn_model *m, const model_layer *L, int64_t T)
{
    const mlxn_model_info *in = &m->info;
    mlxn_stream *s = m->stream;
    mlxn_tensor xn = mat(m->xn, 0, T, in->n_embd);
    mlxn_tensor g = mat(m->gate, 0, T, in->n_ff), u = mat(m->up, 0, T, in->n_ff);
    MLXN_TRY(mlxn_qmatmul(s, &xn, &L->w_gate, &g));
    MLXN_TRY(mlxn_qmatmul(s, &xn, &L->w_up, &u));
    MLXN_TRY(mlxn_glu(s, m->ffn_act, &g, &u, &g));
    mlxn_tensor d = mat(m->proj, 0, T, in->n_embd);
    MLXN_TRY(mlxn_qmatmul(s, &g, &L->w_down, &d));
    if (L->post_ffn_norm.buffer)
        MLXN_TRY(mlxn_rms_norm(s, &d, &L->post_ffn_norm, m->eps, &d));
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_model_forward(mlxn_model *m, int64_t T, bool all_logits)
{
    const mlxn_model_info *in = &m->info;
    mlxn_stream *s = m->stream;
    const int64_t E = in->n_embd;
    mlxn_tensor ids = mlxn_tensor_make(m->ids, 0, MLXN_DTYPE_I32, 1, &T);
    mlxn_tensor x = mat(m->x, 0, T, E), xn = mat(m->xn, 0, T, E), r = mat(m->proj, 0, T, E);
    MLXN_TRY(mlxn_get_rows(s, &m->tok_embd, &ids, m->embd_scale, &x));
    MLXN_TRY(mlxn_rms_norm(s, &x, &m->layers[0].attn_norm, m->eps, &xn));
    for (int64_t l = 0; l < in->n_layer; l++) {
        const model_layer *L = &m->layers[l];
        MLXN_TRY(attention_block(m, L, T));
        MLXN_TRY(mlxn_add_rms_norm(s, &x, &r, &L->ffn_norm, m->eps, &x, &xn));
        MLXN_TRY(ffn_block(m, L, T));
        const mlxn_tensor *next_norm = l + 1 < in->n_layer ? &m->layers[l + 1].attn_norm : &m->output_norm;
        MLXN_TRY(mlxn_add_rms_norm(s, &x, &r, next_norm, m->eps, &x, &xn));
    }
    const int64_t rows = all_logits ? T : 1;
    mlxn_tensor last = mat(m->xn, (size_t)((T - rows) * E) * sizeof(float), rows, E);
    mlxn_tensor logits = mat(m->logits, 0, rows, in->n_vocab);
    return mlxn_qmatmul(s, &last, &m->output, &logits);
}
