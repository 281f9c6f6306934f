/* The tokenizer object and what its parts (tokenizer.c, tokenizer_spm.c, tokenizer_bpe.c,
 * tokenizer_unicode.c, tokenizer_chat.c) share. */
#ifndef MLXN_TOKENIZER_INTERNAL_H
#define MLXN_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "mlxn_tokenizer.h"

/* Token types, numbered as in tokenizer.ggml.token_type (SentencePiece's numbering). */
enum tok_type {
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6
};

enum tok_kind {
    TOK_KIND_SPM, /* tokenizer.ggml.model "llama" */
    TOK_KIND_BPE  /* "gpt2" */
};

/* Pre-tokenizers of byte-level BPE vocabularies (the regexes are in tokenizer_bpe.c). */
enum tok_pre {
    TOK_PRE_GPT2,   /* GPT-2's regex */
    TOK_PRE_SMOLLM, /* every \p{N} alone, then GPT-2's regex */
    TOK_PRE_QWEN2,  /* the Qwen2 regex (single digits) */
    TOK_PRE_LLAMA3  /* the Llama 3 regex (up to three digits); a piece in the vocabulary stays whole */
};

/* A merge of two adjacent tokens (byte-level BPE), keyed by their ids. */
typedef struct tok_merge {
    uint64_t key; /* tok_merge_key(left, right); 0 = empty slot */
    int32_t rank; /* position in tokenizer.ggml.merges: lower merges first */
    int32_t result;
} tok_merge;

struct mlxn_tokenizer {
    enum tok_kind kind;
    enum tok_pre pre;
    int32_t n_vocab;
    char *text;      /* every token's text, each followed by a NUL */
    uint32_t *off;   /* [n_vocab] start of token i's text in `text` */
    uint32_t *len;   /* [n_vocab] its length in bytes */
    float *score;    /* [n_vocab] (SentencePiece merge priority; 0 when the file has none) */
    uint8_t *type;   /* [n_vocab] enum tok_type */

    uint32_t *slot;  /* text -> id hash table: id + 1, 0 = empty; power-of-two size */
    uint32_t slot_mask;

    tok_merge *merge; /* merge table (BPE), power-of-two size */
    uint32_t merge_mask;

    /* SPM: the <0xXX> token of each byte; BPE: the token of the byte's one-character spelling.
     * -1 where the vocabulary has none. */
    int32_t byte_token[256];

    /* Tokens cut out of the text before it is tokenized, longest text first: control and
     * unknown ones, and for BPE the user-defined ones too. */
    int32_t *special;
    int32_t n_special;
    /* SPM: the user-defined tokens as SentencePiece matches them (in the escaped text, so with
     * U+2581 for each space; llama.cpp's GGUFs store the spaces), longest first. */
    char *user_text;
    uint32_t *user_off, *user_len;
    int32_t *user_id;
    int32_t n_user;

    int32_t bos, eos, unk; /* -1 = none */
    bool add_bos, add_space_prefix;
    int32_t eog[16];
    int n_eog;

    char *chat_template; /* NULL when the file has none */
};

static inline uint64_t tok_merge_key(int32_t left, int32_t right)
{
    return ((uint64_t)(uint32_t)(left + 1) << 32) | (uint32_t)(right + 1);
}
static inline uint32_t tok_merge_home(const mlxn_tokenizer *t, uint64_t key)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & t->merge_mask;
}

/* Where encoded ids go: the caller's buffer, filled up to cap, while n counts them all. */
typedef struct tok_out {
    int32_t *ids;
    size_t cap, n;
} tok_out;

static inline void tok_emit(tok_out *o, int32_t id)
{
    if (o->n < o->cap)
        o->ids[o->n] = id;
    o->n++;
}

/* Which byte pairs occur in a text (a 65536-bit set), to rule out the special tokens that
 * cannot occur in it: a token occurs only if its first byte and all its consecutive byte
 * pairs do. */
enum { TOK_PAIR_BYTES = 65536 / 8 };
static inline void tok_pairs_mark(uint8_t *pairs, bool *first, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        first[(unsigned char)s[i]] = true;
        if (i + 1 < n) {
            unsigned p = (unsigned)(unsigned char)s[i] << 8 | (unsigned char)s[i + 1];
            pairs[p >> 3] |= (uint8_t)(1u << (p & 7));
        }
    }
}
static inline bool tok_pairs_allow(const uint8_t *pairs, const bool *first, const char *tok, size_t n)
{
    if (n == 0 || !first[(unsigned char)tok[0]])
        return false;
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned p = (unsigned)(unsigned char)tok[i] << 8 | (unsigned char)tok[i + 1];
        if (!(pairs[p >> 3] & (1u << (p & 7))))
            return false;
    }
    return true;
}

/* The id whose text is s[0 .. n), or -1. */
int32_t mlxn_tok_find(const mlxn_tokenizer *t, const char *s, size_t n);
static inline const char *tok_text(const mlxn_tokenizer *t, int32_t id) { return t->text + t->off[id]; }

/* Appends the ids of one fragment of plain text (no special tokens in it). */
mlxn_status mlxn_tok_spm_encode(const mlxn_tokenizer *t, const char *s, size_t n, bool space_prefix,
                                tok_out *out);
mlxn_status mlxn_tok_bpe_encode(const mlxn_tokenizer *t, const char *s, size_t n, tok_out *out);

/* ---------------------------------------------------------------- Unicode (tokenizer_unicode.c) */

enum { TOK_CP_LETTER = 1, TOK_CP_NUMBER = 2, TOK_CP_SPACE = 4 };
#define TOK_CP_INVALID 0xFFFFFFFFu

struct tok_cp_range {
    uint32_t first, last;
    uint8_t classes;
};

/* The code point at s[0 .. n) (n >= 1) and its length in *len; a byte that does not start a
 * valid UTF-8 sequence (bad lead, missing or bad continuation, overlong form, surrogate, past
 * U+10FFFF) is TOK_CP_INVALID of length 1. */
uint32_t mlxn_tok_utf8_decode(const unsigned char *s, size_t n, size_t *len);
/* TOK_CP_LETTER / NUMBER / SPACE bits of a code point (0 for TOK_CP_INVALID). */
uint8_t mlxn_tok_cp_classes(uint32_t cp);
/* GPT-2's byte alphabet: the code point that spells byte b, and back (-1 for code points that
 * spell no byte). */
uint32_t mlxn_tok_byte_to_cp(uint8_t b);
int mlxn_tok_cp_to_byte(uint32_t cp);
/* Writes cp as UTF-8 to out (4 bytes of room); returns the length. */
size_t mlxn_tok_utf8_encode(uint32_t cp, char *out);

#endif /* MLXN_TOKENIZER_INTERNAL_H */
