/* SentencePiece-style BPE (tokenizer.ggml.model "llama"): the text, spaces written as U+2581,
 * starts as one symbol per UTF-8 character; the adjacent pair whose joined text is the token
 * of highest score merges first (the leftmost pair among equal scores), until no pair joins
 * into a token. A symbol left without a token is written as its bytes' <0xXX> tokens.
 *
 * User-defined tokens are cut out of the escaped text first (the longest at each character,
 * from the left), as SentencePiece does; the stretches between them merge on their own.
 * Matching them after escaping, rather than in the raw text as llama.cpp does, makes a U+2581
 * written in the text act as the space it stands for, as it does in SentencePiece.
 *
 * Only normal, user-defined and unused tokens take part in merges, as in SentencePiece, whose
 * merge table holds no control, unknown or byte pieces: "<bos>" written in plain text never
 * merges into the control token. */
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "tokenizer_heap.h"
#include "tokenizer_internal.h"

typedef struct spm_sym {
    int32_t prev, next; /* neighbours in the list of live symbols, -1 at the ends */
    uint32_t start, n;  /* bytes of the escaped text; n = 0 once merged into its left */
} spm_sym;

static bool mergeable(const mlxn_tokenizer *t, int32_t id)
{
    uint8_t ty = t->type[id];
    return ty == TOK_TYPE_NORMAL || ty == TOK_TYPE_USER_DEFINED || ty == TOK_TYPE_UNUSED;
}

/* Queues the pair (left, right) when their joined text is a token. */
static bool push_pair(const mlxn_tokenizer *t, const char *text, const spm_sym *sym, int32_t left,
                      int32_t right, tok_heap *h)
{
    if (left < 0 || right < 0)
        return true;
    uint32_t size = sym[left].n + sym[right].n;
    int32_t id = mlxn_tok_find(t, text + sym[left].start, size);
    if (id < 0 || !mergeable(t, id))
        return true;
    /* highest score first: the heap pops the smallest key */
    tok_pair p = {.key = -(double)t->score[id], .left = left, .right = right, .size = size, .id = id};
    return mlxn_tok_heap_push(h, &p);
}

/* A symbol's token, or its bytes' tokens (the unknown token in a vocabulary without them). */
static void emit_symbol(const mlxn_tokenizer *t, const char *text, const spm_sym *s, tok_out *out)
{
    int32_t id = mlxn_tok_find(t, text + s->start, s->n);
    if (id >= 0) {
        tok_emit(out, id);
        return;
    }
    for (uint32_t i = 0; i < s->n; i++) {
        int32_t b = t->byte_token[(unsigned char)text[s->start + i]];
        if (b >= 0)
            tok_emit(out, b);
        else if (t->unk >= 0)
            tok_emit(out, t->unk);
    }
}

/* Merges the characters of text[a, b) and emits the ids. */
static bool merge_segment(const mlxn_tokenizer *t, const char *text, size_t a, size_t b, spm_sym *sym,
                          tok_heap *heap, tok_out *out)
{
    int32_t count = 0;
    for (size_t i = a; i < b;) {
        size_t len;
        mlxn_tok_utf8_decode((const unsigned char *)text + i, b - i, &len);
        sym[count] = (spm_sym){.prev = count - 1, .next = -1, .start = (uint32_t)i, .n = (uint32_t)len};
        if (count > 0)
            sym[count - 1].next = count;
        count++;
        i += len;
    }
    heap->n = 0;
    for (int32_t i = 1; i < count; i++)
        if (!push_pair(t, text, sym, i - 1, i, heap))
            return false;
    tok_pair p;
    while (mlxn_tok_heap_pop(heap, &p)) {
        spm_sym *l = &sym[p.left], *r = &sym[p.right];
        /* a pair queued before either side changed is stale: sizes only grow */
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            sym[r->next].prev = p.left;
        if (!push_pair(t, text, sym, l->prev, p.left, heap) || !push_pair(t, text, sym, p.left, l->next, heap))
            return false;
    }
    for (int32_t i = count > 0 ? 0 : -1; i >= 0; i = sym[i].next)
        emit_symbol(t, text, &sym[i], out);
    return true;
}

/* The user-defined tokens that can occur in a text, chained by first byte, longest first. */
typedef struct user_cands {
    int32_t head[256]; /* first candidate starting with the byte, -1 = none */
    int32_t *next;     /* [n_user] the next candidate with the same first byte */
} user_cands;

/* The user-defined token that is longest at text[i ..), or -1. */
static int32_t user_token_at(const mlxn_tokenizer *t, const char *text, size_t i, size_t m, const user_cands *c)
{
    for (int32_t u = c->head[(unsigned char)text[i]]; u >= 0; u = c->next[u]) {
        size_t n = t->user_len[u];
        if (n <= m - i && memcmp(text + i, t->user_text + t->user_off[u], n) == 0)
            return u;
    }
    return -1;
}

mlxn_status mlxn_tok_spm_encode(const mlxn_tokenizer *t, const char *s, size_t n, bool space_prefix,
                                tok_out *out)
{
    static const char space[3] = {'\xE2', '\x96', '\x81'}; /* U+2581 */
    size_t m = space_prefix ? 3 : 0; /* each space grows from 1 to 3 bytes */
    for (size_t i = 0; i < n; i++)
        m += s[i] == ' ' ? 3 : 1;
    if (m > UINT32_MAX)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_tokenizer_encode",
                          "a text fragment of %zu bytes is over the 4 GiB limit", n);
    char *text = malloc(m ? m : 1);
    spm_sym *sym = malloc((m ? m : 1) * sizeof *sym);
    user_cands cand;
    cand.next = malloc((t->n_user ? (size_t)t->n_user : 1) * sizeof *cand.next);
    tok_heap heap = {0};
    mlxn_status st = MLXN_STATUS_OK;
    if (!text || !sym || !cand.next) {
        st = mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_tokenizer_encode", "no memory for %zu bytes", m);
        goto done;
    }
    size_t k = 0;
    if (space_prefix) {
        memcpy(text, space, 3);
        k = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(text + k, space, 3);
            k += 3;
        } else {
            text[k++] = s[i];
        }
    }

    /* the user-defined tokens that can match: those whose byte pairs all occur in the text */
    bool any = false;
    for (int b = 0; b < 256; b++)
        cand.head[b] = -1;
    if (t->n_user > 0 && m > 0) {
        uint8_t *pairs = calloc(TOK_PAIR_BYTES, 1);
        bool first[256] = {false};
        int32_t tail[256];
        if (!pairs)
            goto oom;
        tok_pairs_mark(pairs, first, text, m);
        for (int32_t u = 0; u < t->n_user; u++) {
            const char *ut = t->user_text + t->user_off[u];
            if (t->user_len[u] > m || !tok_pairs_allow(pairs, first, ut, t->user_len[u]))
                continue;
            unsigned char b = (unsigned char)ut[0];
            cand.next[u] = -1;
            if (cand.head[b] < 0)
                cand.head[b] = u;
            else
                cand.next[tail[b]] = u;
            tail[b] = u;
            any = true;
        }
        free(pairs);
    }
    size_t seg = 0;
    for (size_t i = 0; any && i < m;) {
        int32_t u = user_token_at(t, text, i, m, &cand);
        size_t len;
        if (u < 0) {
            mlxn_tok_utf8_decode((const unsigned char *)text + i, m - i, &len);
            i += len;
            continue;
        }
        if (!merge_segment(t, text, seg, i, sym, &heap, out))
            goto oom;
        tok_emit(out, t->user_id[u]);
        i += t->user_len[u];
        seg = i;
    }
    if (!merge_segment(t, text, seg, m, sym, &heap, out))
        goto oom;
    goto done;
oom:
    st = mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_tokenizer_encode", "no memory for the merge queue");
done:
    free(text);
    free(sym);
    free(cand.next);
    mlxn_tok_heap_free(&heap);
    return st;
}
