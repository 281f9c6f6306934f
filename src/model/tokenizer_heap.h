/* The merge queue of both BPE kinds: a binary min-heap of candidate pairs ordered by key, then
 * by the left symbol's index (so among equal keys the leftmost pair merges first). */
#ifndef MLXN_TOKENIZER_HEAP_H
#define MLXN_TOKENIZER_HEAP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct tok_pair {
    double key;          /* SPM: -score; BPE: merge rank */
    int32_t left, right; /* symbol indices */
    uint32_t size;       /* SPM: bytes of both symbols when queued */
    int32_t id;          /* the token the pair merges into */
} tok_pair;

typedef struct tok_heap {
    tok_pair *a;
    size_t n, cap;
} tok_heap;

static inline bool tok_pair_before(const tok_pair *x, const tok_pair *y)
{
    return x->key < y->key || (x->key == y->key && x->left < y->left);
}

static inline bool mlxn_tok_heap_push(tok_heap *h, const tok_pair *p)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        tok_pair *a = realloc(h->a, cap * sizeof *a);
        if (!a)
            return false;
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!tok_pair_before(p, &h->a[parent]))
            break;
        h->a[i] = h->a[parent];
        i = parent;
    }
    h->a[i] = *p;
    return true;
}

static inline bool mlxn_tok_heap_pop(tok_heap *h, tok_pair *out)
{
    if (h->n == 0)
        return false;
    *out = h->a[0];
    tok_pair last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && tok_pair_before(&h->a[c + 1], &h->a[c]))
            c++;
        if (!tok_pair_before(&h->a[c], &last))
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n > 0)
        h->a[i] = last;
    return true;
}

static inline void mlxn_tok_heap_free(tok_heap *h)
{
    free(h->a);
    h->a = NULL;
    h->n = h->cap = 0;
}

#endif /* MLXN_TOKENIZER_HEAP_H */
