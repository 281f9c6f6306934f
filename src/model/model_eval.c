/* Driving the forward pass: token chunks, positions, the captured decode step, logits and
 * on-device sampling. */
#include <string.h>

#include "../core/internal.h"
#include "model_internal.h"

/* Writes staging image `img` for T tokens at positions n_past.. and uploads it in one copy,
 * ordered on the stream: with ids, all of it; without, up to the ids (the sampler wrote the id
 * there). Image 0 serves the chunks of eval (unchanged until the chunk's sync), images 1 and 2
 * in turn the steps issued ahead. */
static mlxn_status stage_image(mlxn_model *m, int img, const int32_t *ids, int64_t T)
{
    int32_t *h = m->h_step + (size_t)img * step_bytes(m) / 4, *h_ids = h + step_ids(m) / 4, *h_pos = h + STEP_POS / 4;
    for (int64_t t = 0; t < T; t++) {
        if (ids)
            h_ids[t] = ids[t];
        h_pos[t] = (int32_t)(m->n_past + t);
    }
    h[STEP_POS_SEQ / 4] = h[STEP_POS_SEQ / 4 + 1] = (int32_t)m->n_past;
    return mlxn_buffer_upload(m->step_in, 0, h, ids ? step_bytes(m) : step_ids(m), m->stream);
}

mlxn_status mlxn_model_settle(mlxn_model *m)
{
    if (!m->ahead)
        return MLXN_STATUS_OK;
    m->ahead = false;
    return mlxn_stream_sync(m->stream);
}

/* Issues the decode step of the token just sampled into step_in's ids, at position n_past,
 * before the host has it: the positions from staging images 1 and 2 in turn (the one written now
 * was last uploaded before the token the host last waited for). Only a captured decode step is
 * issued ahead. */
static mlxn_status issue_ahead(mlxn_model *m)
{
    m->ahead_img = m->ahead_img == 1 ? 2 : 1;
    MLXN_TRY(stage_image(m, m->ahead_img, NULL, 1));
    return mlxn_graph_launch(m->decode_graph, m->stream);
}

/* MLXN_PROFILE_GRAPH=1 (a development aid): the CUDA backend times every captured graph's
 * kernels when its capture ends. Prefill chunks run eagerly, so with it set each chunk of more
 * than one token runs once more under capture, for the profile only: every op sized its scratch
 * in the eager run, and the replays write the same cache rows again. */
static mlxn_status profile_chunk(mlxn_model *m, int64_t T, bool all_logits)
{
    if (T == 1 || !m->on_cuda || !mlxn_graph_profiling())
        return MLXN_STATUS_OK;
    MLXN_TRY(mlxn_stream_begin_capture(m->stream));
    const mlxn_status st = mlxn_model_forward(m, T, all_logits);
    mlxn_graph *g = NULL;
    const mlxn_status end = mlxn_stream_end_capture(m->stream, &g);
    mlxn_graph_free(g);
    MLXN_TRY(st);
    return end;
}

/* One chunk of T tokens. A single-token step on CUDA replays a graph captured on the second
 * such step (the first runs eagerly, so every op has sized its scratch before capture). */
static mlxn_status run_chunk(mlxn_model *m, const int32_t *ids, int64_t T, bool all_logits)
{
    MLXN_TRY(stage_image(m, 0, ids, T));
    if (T != 1 || all_logits || !m->on_cuda || !m->opt.use_graphs) {
        MLXN_TRY(mlxn_model_forward(m, T, all_logits));
        return profile_chunk(m, T, all_logits);
    }
    if (!m->decode_graph) {
        if (!m->decode_warm) {
            m->decode_warm = true;
            return mlxn_model_forward(m, 1, false);
        }
        MLXN_TRY(mlxn_stream_begin_capture(m->stream));
        mlxn_status st = mlxn_model_forward(m, 1, false);
        mlxn_graph *g = NULL;
        mlxn_status end = mlxn_stream_end_capture(m->stream, &g);
        MLXN_TRY(st);
        MLXN_TRY(end);
        m->decode_graph = g;
    }
    return mlxn_graph_launch(m->decode_graph, m->stream);
}

/* Issues the chunks of ids, syncing after each but the last when defer_sync (the caller then
 * issues more and syncs, restoring n_past to its value before on failure). */
static mlxn_status eval(mlxn_model *m, const char *fn, const int32_t *ids, int64_t n, bool all_logits,
                        float *logits, bool defer_sync)
{
    if (!m || !ids || n < 1)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "%s", !m ? "model is NULL" : !ids ? "ids is NULL"
                                                                                            : "no tokens");
    MLXN_TRY(mlxn_model_settle(m));
    const int64_t V = m->info.n_vocab;
    if (m->n_past + n > m->info.n_ctx)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                          "context full: %lld tokens in the cache + %lld new > n_ctx %lld", (long long)m->n_past,
                          (long long)n, (long long)m->info.n_ctx);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "token %lld is id %d, outside the vocabulary [0, %lld)",
                              (long long)i, ids[i], (long long)V);
    const int64_t n_past = m->n_past;
    for (int64_t start = 0; start < n; start += m->opt.n_batch) {
        const int64_t T = n - start < m->opt.n_batch ? n - start : m->opt.n_batch;
        mlxn_status st = run_chunk(m, ids + start, T, all_logits);
        if (st == MLXN_STATUS_OK && logits && (all_logits || start + T == n))
            st = mlxn_buffer_download(m->logits, 0, logits + (all_logits ? start * V : 0),
                                      (size_t)((all_logits ? T : 1) * V) * sizeof(float), m->stream);
        if (st == MLXN_STATUS_OK && !(defer_sync && start + T == n))
            st = mlxn_stream_sync(m->stream);
        if (st != MLXN_STATUS_OK) {
            /* what was issued may still read the staging: done before a next call rewrites it */
            (void)mlxn_stream_sync(m->stream);
            m->n_past = n_past;
            return st;
        }
        m->n_past += T;
    }
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_model_eval(mlxn_model *m, const int32_t *ids, int64_t n, bool all_logits, float *logits)
{
    return eval(m, "mlxn_model_eval", ids, n, all_logits, logits, false);
}

mlxn_status mlxn_model_eval_sample(mlxn_model *m, const int32_t *ids, int64_t n, const mlxn_sampler_params *sampler,
                                   const int32_t *history, int64_t n_history, uint64_t step, int32_t *next)
{
    static const char *fn = "mlxn_model_eval_sample";
    if (!sampler || !next || (n_history > 0 && !history))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "%s is NULL",
                          !sampler ? "sampler" : !next ? "next" : "history");
    /* The sampling is issued behind the forward pass with one wait for both. When the step of
     * the token sampled last was issued ahead and this call feeds that token, it only counts. */
    if (!m)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "model is NULL");
    const int64_t n_past = m->n_past;
    if (m->ahead && n == 1 && ids && ids[0] == m->ahead_id) {
        m->ahead = false;
        m->n_past++;
    } else
        MLXN_TRY(eval(m, fn, ids, n, false, NULL, true));
    const int64_t keep = m->info.n_ctx < MLXN_SAMPLE_MAX_HISTORY ? m->info.n_ctx : MLXN_SAMPLE_MAX_HISTORY;
    if (n_history > keep) { /* the penalty looks at the most recent tokens */
        history += n_history - keep;
        n_history = keep;
    }
    const int64_t V = m->info.n_vocab, one = 1;
    const int64_t lshape[2] = {1, V}, hshape[2] = {1, n_history};
    mlxn_tensor logits = mlxn_tensor_make(m->logits, 0, MLXN_DTYPE_F32, 2, lshape);
    mlxn_tensor hist = mlxn_tensor_make(m->history, 0, MLXN_DTYPE_I32, 2, hshape);
    /* the token goes where the next step reads its id (the forward pass has read this one's) */
    mlxn_tensor out = mlxn_tensor_make(m->step_in, step_ids(m), MLXN_DTYPE_I32, 1, &one);
    int32_t *h_next = m->h_step + 3 * step_bytes(m) / 4;
    mlxn_status st = MLXN_STATUS_OK;
    if (n_history > 0)
        st = mlxn_buffer_upload(m->history, 0, history, (size_t)n_history * 4, m->stream);
    if (st == MLXN_STATUS_OK)
        st = mlxn_sample(m->stream, &logits, n_history > 0 ? &hist : NULL, sampler, step, &out);
    if (st == MLXN_STATUS_OK)
        st = mlxn_buffer_download(m->step_in, step_ids(m), h_next, 4, m->stream);
    if (st == MLXN_STATUS_OK)
        st = mlxn_event_record(m->sampled, m->stream);
    /* the next step, for the token just sampled, while the host waits for that token */
    const bool ahead = st == MLXN_STATUS_OK && m->decode_graph && m->n_past < m->info.n_ctx &&
                       issue_ahead(m) == MLXN_STATUS_OK;
    /* the forward pass's errors surface here too: the tokens then did not enter the cache */
    mlxn_status waited = ahead ? mlxn_event_sync(m->sampled) : mlxn_stream_sync(m->stream);
    if (waited != MLXN_STATUS_OK) {
        if (ahead)
            (void)mlxn_stream_sync(m->stream);
        m->n_past = n_past;
        return waited;
    }
    if (st != MLXN_STATUS_OK)
        return st;
    *next = m->ahead_id = *h_next;
    m->ahead = ahead;
    return MLXN_STATUS_OK;
}
