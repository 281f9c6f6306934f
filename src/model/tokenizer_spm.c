/* SentencePiece-style BPE (tokenizer.ggml.model "llama"): the text, spaces written as U+2581,
 * starts as one symbol per UTF-8 character; the adjacent pair whose joined text is the token
 * of highest score merges first (the leftmost pair among equal scores), until no pair joins
 * into a token. A symbol left without a token is written as its bytes' <0xXX> tokens.
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

mlxn_status mlxn_tok_spm_encode(const mlxn_tokenizer *t, const char *s, size_t n, bool space_prefix,
                                tok_out *out)
{
    static const char space[3] = {'\xE2', '\x96', '\x81'}; /* U+2581 */
    size_t spaces = space_prefix;
    for (size_t i = 0; i < n; i++)
        spaces += s[i] == ' ';
    size_t m = n + 2 * spaces; /* each space grows from 1 to 3 bytes */
    if (m > UINT32_MAX)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_tokenizer_encode",
                          "a text fragment of %zu bytes is over the 4 GiB limit", n);
    char *text = malloc(m ? m : 1);
    spm_sym *sym = malloc((m ? m : 1) * sizeof *sym);
    tok_heap heap = {0};
    mlxn_status st = MLXN_STATUS_OK;
    if (!text || !sym) {
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

    /* one symbol per character; a byte that cannot start a character is one symbol */
    int32_t count = 0;
    for (size_t i = 0; i < m;) {
        size_t len;
        mlxn_tok_utf8_decode((const unsigned char *)text + i, m - i, &len);
        sym[count] = (spm_sym){.prev = count - 1, .next = -1, .start = (uint32_t)i, .n = (uint32_t)len};
        if (count > 0)
            sym[count - 1].next = count;
        count++;
        i += len;
    }
    for (int32_t i = 1; i < count; i++)
        if (!push_pair(t, text, sym, i - 1, i, &heap))
            goto oom;

    tok_pair p;
    while (mlxn_tok_heap_pop(&heap, &p)) {
        spm_sym *l = &sym[p.left], *r = &sym[p.right];
        /* a pair queued before either side changed is stale: sizes only grow */
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            sym[r->next].prev = p.left;
        if (!push_pair(t, text, sym, l->prev, p.left, &heap) || !push_pair(t, text, sym, p.left, l->next, &heap))
            goto oom;
    }
    for (int32_t i = count > 0 ? 0 : -1; i >= 0; i = sym[i].next)
        emit_symbol(t, text, &sym[i], out);
    goto done;
oom:
    st = mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_tokenizer_encode", "no memory for the merge queue");
done:
    free(text);
    free(sym);
    mlxn_tok_heap_free(&heap);
    return st;
}
