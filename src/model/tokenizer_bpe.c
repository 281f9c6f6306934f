/* Byte-level BPE (tokenizer.ggml.model "gpt2"): the pre-tokenizer cuts the text into pieces
 * with the vocabulary's regex, matched here by hand on code points; each piece starts as one
 * symbol per byte (the token of the byte's GPT-2 spelling) and the adjacent pair of lowest
 * merge rank merges first (the leftmost among equal ranks) until no pair has a merge.
 *
 * The regexes (Hugging Face tokenizers and llama.cpp spell them the same):
 *   GPT-2   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   Qwen2   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*
 *           |\s*[\r\n]+|\s+(?!\S)|\s+
 *   Llama 3 the Qwen2 regex with \p{N}{1,3}
 *   SmolLM  \p{N} first (each digit alone), then GPT-2's on the text between digits.
 * A regex match never crosses the end of the piece it is applied to. Every code point is a
 * letter, a number, white space or other, and each class starts some alternative, so the
 * matches tile the text. Bytes that are not valid UTF-8 count as "other". */
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "tokenizer_heap.h"
#include "tokenizer_internal.h"

enum { OTHER = 0 };

typedef struct cps {
    uint32_t *cp;   /* [m] code points */
    uint8_t *cls;   /* [m] TOK_CP_* classes */
    size_t *start;  /* [m + 1] byte offset of each code point, then the end */
} cps;

static bool is_nl(uint32_t c) { return c == '\r' || c == '\n'; }

static uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd at i (optionally in any case): the end, or 0. */
static size_t contraction(const cps *c, size_t i, size_t e, bool any_case)
{
    if (c->cp[i] != '\'' || i + 1 >= e)
        return 0;
    uint32_t a = c->cp[i + 1], b = i + 2 < e ? c->cp[i + 2] : 0;
    if (any_case)
        a = ascii_lower(a), b = ascii_lower(b);
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return i + 3;
    return 0;
}

static size_t run_of(const cps *c, size_t i, size_t e, uint8_t cls)
{
    while (i < e && (c->cls[i] & cls))
        i++;
    return i;
}

static size_t run_of_other(const cps *c, size_t i, size_t e)
{
    while (i < e && c->cls[i] == OTHER)
        i++;
    return i;
}

/* \s+(?!\S)|\s+ at a white-space code point i: the run, less its last code point when a
 * non-space follows and the run is longer than one (that one then joins the next piece). */
static size_t space_run(const cps *c, size_t i, size_t e)
{
    size_t j = run_of(c, i, e, TOK_CP_SPACE);
    if (j < e && j - i > 1)
        return j - 1;
    return j;
}

/* The end of the GPT-2 regex's match at i (i < e). */
static size_t match_gpt2(const cps *c, size_t i, size_t e)
{
    size_t j = contraction(c, i, e, false);
    if (j)
        return j;
    /* " ?X+" for X in letters, numbers, other: the space joins only when X follows */
    size_t p = c->cp[i] == ' ' && i + 1 < e ? i + 1 : i;
    uint8_t k = c->cls[p];
    if (k & TOK_CP_LETTER)
        return run_of(c, p, e, TOK_CP_LETTER);
    if (k & TOK_CP_NUMBER)
        return run_of(c, p, e, TOK_CP_NUMBER);
    if (k == OTHER)
        return run_of_other(c, p, e);
    return space_run(c, i, e);
}

/* The end of the Qwen2 (max_digits 1) or Llama 3 (3) regex's match at i. */
static size_t match_qwen2(const cps *c, size_t i, size_t e, size_t max_digits)
{
    size_t j = contraction(c, i, e, true);
    if (j)
        return j;
    uint8_t k = c->cls[i];
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (k & TOK_CP_LETTER)
        return run_of(c, i, e, TOK_CP_LETTER);
    if (!(k & TOK_CP_NUMBER) && !is_nl(c->cp[i]) && i + 1 < e && (c->cls[i + 1] & TOK_CP_LETTER))
        return run_of(c, i + 1, e, TOK_CP_LETTER);
    /* \p{N}{1,max_digits} */
    if (k & TOK_CP_NUMBER) {
        j = i;
        while (j < e && j - i < max_digits && (c->cls[j] & TOK_CP_NUMBER))
            j++;
        return j;
    }
    /* " ?[^\s\p{L}\p{N}]+[\r\n]*" */
    size_t p = c->cp[i] == ' ' && i + 1 < e ? i + 1 : i;
    if (c->cls[p] == OTHER) {
        j = run_of_other(c, p, e);
        while (j < e && is_nl(c->cp[j]))
            j++;
        return j;
    }
    /* \s*[\r\n]+ : the white space up to and including its last line break */
    j = run_of(c, i, e, TOK_CP_SPACE);
    for (size_t q = j; q > i; q--)
        if (is_nl(c->cp[q - 1]))
            return q;
    return space_run(c, i, e);
}

typedef struct bpe_sym {
    int32_t prev, next, id;
    bool live;
} bpe_sym;

typedef struct bpe_work {
    bpe_sym *sym;
    tok_heap heap;
    char *spelled; /* Llama 3: the piece in GPT-2's spelling, for the whole-piece lookup */
} bpe_work;

static int32_t merge_find(const mlxn_tokenizer *t, int32_t left, int32_t right, int32_t *result)
{
    uint64_t key = tok_merge_key(left, right);
    for (uint32_t i = tok_merge_home(t, key);; i = (i + 1) & t->merge_mask) {
        const tok_merge *m = &t->merge[i];
        if (m->key == key) {
            *result = m->result;
            return m->rank;
        }
        if (m->key == 0)
            return -1;
    }
}

static bool push_pair(const mlxn_tokenizer *t, bpe_work *w, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return true;
    int32_t result = -1;
    int32_t rank = merge_find(t, w->sym[left].id, w->sym[right].id, &result);
    if (rank < 0)
        return true;
    tok_pair p = {.key = rank, .left = left, .right = right, .id = result};
    return mlxn_tok_heap_push(&w->heap, &p);
}

/* BPE of one piece s[0 .. n) (n >= 1). */
static mlxn_status encode_piece(const mlxn_tokenizer *t, const unsigned char *s, size_t n, bpe_work *w,
                                tok_out *out)
{
    if (t->pre == TOK_PRE_LLAMA3) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += mlxn_tok_utf8_encode(mlxn_tok_byte_to_cp(s[i]), w->spelled + k);
        int32_t id = mlxn_tok_find(t, w->spelled, k);
        if (id >= 0) {
            tok_emit(out, id);
            return MLXN_STATUS_OK;
        }
    }
    /* A byte whose spelling is not in the vocabulary (SmolLM2 lacks 21 of them, such as the
     * lead byte 0xF1) is dropped before merging, as Hugging Face's BPE without an unknown token
     * does: its neighbours become adjacent. */
    int32_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (t->byte_token[s[i]] < 0)
            continue;
        w->sym[count] = (bpe_sym){.prev = count - 1, .next = -1, .id = t->byte_token[s[i]], .live = true};
        if (count > 0)
            w->sym[count - 1].next = count;
        count++;
    }
    if (count == 0)
        return MLXN_STATUS_OK;
    w->heap.n = 0;
    for (int32_t i = 1; i < count; i++)
        if (!push_pair(t, w, i - 1, i))
            goto oom;
    tok_pair p;
    while (mlxn_tok_heap_pop(&w->heap, &p)) {
        bpe_sym *l = &w->sym[p.left], *r = &w->sym[p.right];
        /* stale unless both sides are still the tokens that were queued: each rank belongs to
         * one pair of tokens, so the queued rank for the current pair means they are */
        if (!l->live || !r->live || l->next != p.right)
            continue;
        int32_t result = -1;
        if (merge_find(t, l->id, r->id, &result) != (int32_t)p.key)
            continue;
        l->id = result;
        l->next = r->next;
        if (r->next >= 0)
            w->sym[r->next].prev = p.left;
        r->live = false;
        if (!push_pair(t, w, l->prev, p.left) || !push_pair(t, w, p.left, l->next))
            goto oom;
    }
    for (int32_t i = 0; i >= 0; i = w->sym[i].next)
        tok_emit(out, w->sym[i].id);
    return MLXN_STATUS_OK;
oom:
    return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_tokenizer_encode", "no memory for the merge queue");
}

/* Applies the pre-tokenizer regex to code points [b, e) and encodes each match. */
static mlxn_status split_and_encode(const mlxn_tokenizer *t, const unsigned char *s, const cps *c, size_t b,
                                    size_t e, bpe_work *w, tok_out *out)
{
    for (size_t i = b; i < e;) {
        size_t j;
        switch (t->pre) {
        case TOK_PRE_QWEN2: j = match_qwen2(c, i, e, 1); break;
        case TOK_PRE_LLAMA3: j = match_qwen2(c, i, e, 3); break;
        default: j = match_gpt2(c, i, e); break;
        }
        MLXN_TRY(encode_piece(t, s + c->start[i], c->start[j] - c->start[i], w, out));
        i = j;
    }
    return MLXN_STATUS_OK;
}

mlxn_status mlxn_tok_bpe_encode(const mlxn_tokenizer *t, const char *text, size_t n, tok_out *out)
{
    if (n == 0)
        return MLXN_STATUS_OK;
    const unsigned char *s = (const unsigned char *)text;
    cps c = {malloc(n * sizeof *c.cp), malloc(n), malloc((n + 1) * sizeof *c.start)};
    bpe_work w = {.sym = malloc(n * sizeof *w.sym),
                  .spelled = t->pre == TOK_PRE_LLAMA3 ? malloc(2 * n) : NULL};
    mlxn_status st = MLXN_STATUS_OK;
    if (!c.cp || !c.cls || !c.start || !w.sym || (t->pre == TOK_PRE_LLAMA3 && !w.spelled)) {
        st = mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_tokenizer_encode", "no memory for %zu bytes of text", n);
        goto done;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; m++) {
        size_t len;
        c.cp[m] = mlxn_tok_utf8_decode(s + i, n - i, &len);
        c.cls[m] = mlxn_tok_cp_classes(c.cp[m]);
        c.start[m] = i;
        i += len;
    }
    c.start[m] = n;
    if (t->pre == TOK_PRE_SMOLLM) {
        /* every number code point is a piece of its own; GPT-2's regex splits the rest */
        size_t b = 0;
        for (size_t i = 0; i <= m && st == MLXN_STATUS_OK; i++) {
            if (i < m && !(c.cls[i] & TOK_CP_NUMBER))
                continue;
            st = split_and_encode(t, s, &c, b, i, &w, out);
            if (i < m && st == MLXN_STATUS_OK)
                st = encode_piece(t, s + c.start[i], c.start[i + 1] - c.start[i], &w, out);
            b = i + 1;
        }
    } else {
        st = split_and_encode(t, s, &c, 0, m, &w, out);
    }
done:
    free(c.cp);
    free(c.cls);
    free(c.start);
    free(w.sym);
    free(w.spelled);
    mlxn_tok_heap_free(&w.heap);
    return st;
}
