/* Tokenizer: the vocabulary read from a GGUF, special-token matching, encoding (dispatched to
 * tokenizer_spm.c or tokenizer_bpe.c) and token pieces. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "tokenizer_internal.h"

/* ---------------------------------------------------------------- text -> id */

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

int32_t mlxn_tok_find(const mlxn_tokenizer *t, const char *s, size_t n)
{
    for (uint32_t i = hash_bytes(s, n) & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        uint32_t v = t->slot[i];
        if (v == 0)
            return -1;
        int32_t id = (int32_t)(v - 1);
        if (t->len[id] == n && memcmp(tok_text(t, id), s, n) == 0)
            return id;
    }
}

/* A later token with the same text as an earlier one takes its place, as in llama.cpp and
 * in Hugging Face's vocabulary maps. */
static void index_token(mlxn_tokenizer *t, int32_t id)
{
    for (uint32_t i = hash_bytes(tok_text(t, id), t->len[id]) & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        uint32_t v = t->slot[i];
        if (v == 0 || (t->len[v - 1] == t->len[id] && memcmp(tok_text(t, (int32_t)v - 1), tok_text(t, id), t->len[id]) == 0)) {
            t->slot[i] = (uint32_t)id + 1;
            return;
        }
    }
}

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t p = 16;
    while (p < n)
        p *= 2;
    return p;
}

/* ---------------------------------------------------------------- reading the GGUF */

#define FN "mlxn_tokenizer_create_gguf"

/* An optional array of `count` 4-byte numbers of one of two types; NULL data when absent. */
static mlxn_status get_array4(const mlxn_gguf *g, const char *key, mlxn_gguf_type a, mlxn_gguf_type b,
                              uint64_t count, const void **data)
{
    *data = NULL;
    const mlxn_gguf_value *v = mlxn_gguf_find(g, key);
    if (!v)
        return MLXN_STATUS_OK;
    mlxn_gguf_type et;
    uint64_t n;
    if (mlxn_gguf_value_type(v) != MLXN_GGUF_TYPE_ARRAY || mlxn_gguf_array_info(v, &et, &n) != MLXN_STATUS_OK ||
        (et != a && et != b) || n != count)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "%s should be an array of %llu %s, found %s of %llu %s",
                          key, (unsigned long long)count, mlxn_gguf_type_name(a),
                          mlxn_gguf_type_name(mlxn_gguf_value_type(v)),
                          mlxn_gguf_value_type(v) == MLXN_GGUF_TYPE_ARRAY ? (unsigned long long)n : 0ull,
                          mlxn_gguf_value_type(v) == MLXN_GGUF_TYPE_ARRAY ? mlxn_gguf_type_name(et) : "elements");
    *data = mlxn_gguf_array_data(v);
    return MLXN_STATUS_OK;
}

/* An optional token id: -1 when absent. */
static mlxn_status get_id(const mlxn_gguf *g, const char *key, int32_t n_vocab, int32_t *out)
{
    *out = -1;
    const mlxn_gguf_value *v = mlxn_gguf_find(g, key);
    if (!v)
        return MLXN_STATUS_OK;
    uint64_t id;
    if (mlxn_gguf_value_uint(v, &id) != MLXN_STATUS_OK)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "%s should be an unsigned integer, found %s", key,
                          mlxn_gguf_type_name(mlxn_gguf_value_type(v)));
    if (id >= (uint64_t)n_vocab)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "%s is %llu, past the %d tokens of the vocabulary", key,
                          (unsigned long long)id, n_vocab);
    *out = (int32_t)id;
    return MLXN_STATUS_OK;
}

static mlxn_status get_flag(const mlxn_gguf *g, const char *key, bool dflt, bool *out)
{
    *out = dflt;
    const mlxn_gguf_value *v = mlxn_gguf_find(g, key);
    if (v && mlxn_gguf_value_bool(v, out) != MLXN_STATUS_OK)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "%s should be a bool, found %s", key,
                          mlxn_gguf_type_name(mlxn_gguf_value_type(v)));
    return MLXN_STATUS_OK;
}

static mlxn_status read_tokens(mlxn_tokenizer *t, const mlxn_gguf *g)
{
    const mlxn_gguf_value *v = mlxn_gguf_find(g, "tokenizer.ggml.tokens");
    mlxn_gguf_type et;
    uint64_t n = 0;
    if (!v || mlxn_gguf_value_type(v) != MLXN_GGUF_TYPE_ARRAY || mlxn_gguf_array_info(v, &et, &n) != MLXN_STATUS_OK ||
        et != MLXN_GGUF_TYPE_STRING || n == 0)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "tokenizer.ggml.tokens should be a non-empty array of strings, %s",
                          v ? "found another value" : "the file has none");
    if (n >= INT32_MAX)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "tokenizer.ggml.tokens has %llu tokens, more than ids can hold",
                          (unsigned long long)n);
    t->n_vocab = (int32_t)n;
    t->off = malloc(n * sizeof *t->off);
    t->len = malloc(n * sizeof *t->len);
    t->score = calloc(n, sizeof *t->score);
    t->type = malloc(n);
    if (!t->off || !t->len || !t->score || !t->type)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, FN, "no memory for %llu tokens", (unsigned long long)n);
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (mlxn_gguf_value_string(mlxn_gguf_array_at(v, i), &s, &len) != MLXN_STATUS_OK)
            return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "tokenizer.ggml.tokens[%llu] is not a string",
                              (unsigned long long)i);
        t->off[i] = (uint32_t)total;
        t->len[i] = (uint32_t)len;
        total += (uint64_t)len + 1;
        if (total > UINT32_MAX)
            return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "the token texts add up to more than 4 GiB");
    }
    t->text = malloc(total);
    if (!t->text)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, FN, "no memory for %llu bytes of token text",
                          (unsigned long long)total);
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        mlxn_gguf_value_string(mlxn_gguf_array_at(v, i), &s, &len);
        memcpy(t->text + t->off[i], s, len);
        t->text[t->off[i] + len] = '\0';
    }

    const void *scores, *types;
    MLXN_TRY(get_array4(g, "tokenizer.ggml.scores", MLXN_GGUF_TYPE_FLOAT32, MLXN_GGUF_TYPE_FLOAT32, n, &scores));
    MLXN_TRY(get_array4(g, "tokenizer.ggml.token_type", MLXN_GGUF_TYPE_INT32, MLXN_GGUF_TYPE_UINT32, n, &types));
    if (scores)
        memcpy(t->score, scores, n * sizeof(float));
    for (uint64_t i = 0; i < n; i++) {
        int32_t ty = TOK_TYPE_NORMAL;
        if (types)
            memcpy(&ty, (const char *)types + 4 * i, 4);
        if (ty < TOK_TYPE_NORMAL || ty > TOK_TYPE_BYTE)
            return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "tokenizer.ggml.token_type[%llu] is %d, not a type 1..6",
                              (unsigned long long)i, ty);
        t->type[i] = (uint8_t)ty;
    }

    t->slot_mask = pow2_at_least(2 * n) - 1;
    t->slot = calloc((size_t)t->slot_mask + 1, sizeof *t->slot);
    if (!t->slot)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, FN, "no memory for the token index");
    for (int32_t i = 0; i < t->n_vocab; i++)
        index_token(t, i);
    return MLXN_STATUS_OK;
}

static mlxn_status read_merges(mlxn_tokenizer *t, const mlxn_gguf *g)
{
    const mlxn_gguf_value *v = mlxn_gguf_find(g, "tokenizer.ggml.merges");
    mlxn_gguf_type et;
    uint64_t n = 0;
    if (!v || mlxn_gguf_value_type(v) != MLXN_GGUF_TYPE_ARRAY || mlxn_gguf_array_info(v, &et, &n) != MLXN_STATUS_OK ||
        et != MLXN_GGUF_TYPE_STRING)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "a gpt2 vocabulary needs tokenizer.ggml.merges (array of strings), %s",
                          v ? "found another value" : "the file has none");
    if (n >= INT32_MAX)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "tokenizer.ggml.merges has %llu merges", (unsigned long long)n);
    t->merge_mask = pow2_at_least(2 * n) - 1;
    t->merge = calloc((size_t)t->merge_mask + 1, sizeof *t->merge);
    if (!t->merge)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, FN, "no memory for %llu merges", (unsigned long long)n);
    char *joined = NULL;
    size_t joined_cap = 0;
    mlxn_status st = MLXN_STATUS_OK;
    for (uint64_t r = 0; r < n && st == MLXN_STATUS_OK; r++) {
        const char *s;
        size_t len;
        mlxn_gguf_value_string(mlxn_gguf_array_at(v, r), &s, &len);
        /* "left right": the space that separates them is the first one after the first byte */
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp) {
            st = mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "tokenizer.ggml.merges[%llu] \"%.40s\" is not two tokens and a space",
                            (unsigned long long)r, s);
            break;
        }
        size_t ll = (size_t)(sp - s), rl = len - ll - 1;
        if (ll + rl > joined_cap) {
            joined_cap = 2 * (ll + rl);
            char *j = realloc(joined, joined_cap);
            if (!j) {
                st = mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, FN, "no memory");
                break;
            }
            joined = j;
        }
        memcpy(joined, s, ll);
        memcpy(joined + ll, sp + 1, rl);
        int32_t left = mlxn_tok_find(t, s, ll), right = mlxn_tok_find(t, sp + 1, rl);
        int32_t result = mlxn_tok_find(t, joined, ll + rl);
        if (left < 0 || right < 0 || result < 0) {
            st = mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "tokenizer.ggml.merges[%llu] \"%.40s\": %s is not in the vocabulary",
                            (unsigned long long)r, s, left < 0 ? "the left token" : right < 0 ? "the right token" : "the merged token");
            break;
        }
        uint64_t key = tok_merge_key(left, right);
        for (uint32_t i = tok_merge_home(t, key);; i = (i + 1) & t->merge_mask) {
            tok_merge *m = &t->merge[i];
            if (m->key == key)
                break; /* a repeated merge keeps its first (lowest) rank */
            if (m->key == 0) {
                *m = (tok_merge){.key = key, .rank = (int32_t)r, .result = result};
                break;
            }
        }
    }
    free(joined);
    return st;
}

static int compare_special(const void *a, const void *b)
{
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static bool user_defined(const mlxn_tokenizer *t, int32_t id)
{
    return t->len[id] > 0 && t->type[id] == TOK_TYPE_USER_DEFINED;
}

/* Token id's text as SentencePiece matches it: spaces written as U+2581. Returns the length;
 * writes it to out when out is not NULL. */
static size_t escaped(const mlxn_tokenizer *t, int32_t id, char *out)
{
    size_t k = 0;
    for (uint32_t j = 0; j < t->len[id]; j++) {
        char c = tok_text(t, id)[j];
        if (out && c == ' ')
            memcpy(out + k, "\xE2\x96\x81", 3);
        else if (out)
            out[k] = c;
        k += c == ' ' ? 3 : 1;
    }
    return k;
}

/* ids[0 .. count) sorted by key_len[] (longest first, key_len in step with ids), then by id. */
static mlxn_status sort_longest_first(int32_t *ids, int32_t count, const size_t *key_len)
{
    uint64_t *order = malloc((count ? (size_t)count : 1) * sizeof *order);
    if (!order)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, FN, "no memory for %d special tokens", count);
    for (int32_t i = 0; i < count; i++)
        order[i] = ((uint64_t)(UINT32_MAX - key_len[i]) << 32) | (uint32_t)ids[i];
    qsort(order, (size_t)count, sizeof *order, compare_special);
    for (int32_t i = 0; i < count; i++)
        ids[i] = (int32_t)(uint32_t)order[i];
    free(order);
    return MLXN_STATUS_OK;
}

/* The tokens cut out of the text before tokenizing, and (SPM) the user-defined tokens in
 * SentencePiece's spelling, each longest first. */
static mlxn_status collect_specials(mlxn_tokenizer *t)
{
    bool spm = t->kind == TOK_KIND_SPM;
    int32_t count = 0, users = 0;
    size_t user_bytes = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        bool control = t->len[i] > 0 && (t->type[i] == TOK_TYPE_CONTROL || t->type[i] == TOK_TYPE_UNKNOWN);
        count += control || (!spm && user_defined(t, i));
        if (spm && user_defined(t, i)) {
            users++;
            user_bytes += escaped(t, i, NULL);
        }
    }
    if (user_bytes > UINT32_MAX)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "the user-defined tokens add up to more than 4 GiB");
    size_t n_key = (size_t)(count > users ? count : users);
    size_t *key_len = malloc((n_key ? n_key : 1) * sizeof *key_len);
    t->special = malloc((count ? (size_t)count : 1) * sizeof *t->special);
    t->user_id = malloc((users ? (size_t)users : 1) * sizeof *t->user_id);
    t->user_off = malloc((users ? (size_t)users : 1) * sizeof *t->user_off);
    t->user_len = malloc((users ? (size_t)users : 1) * sizeof *t->user_len);
    t->user_text = malloc(user_bytes ? user_bytes : 1);
    mlxn_status st = MLXN_STATUS_OK;
    if (!key_len || !t->special || !t->user_id || !t->user_off || !t->user_len || !t->user_text) {
        st = mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, FN, "no memory for %d special tokens", count + users);
        goto done;
    }
    for (int32_t i = 0; i < t->n_vocab; i++) {
        bool control = t->len[i] > 0 && (t->type[i] == TOK_TYPE_CONTROL || t->type[i] == TOK_TYPE_UNKNOWN);
        if (control || (!spm && user_defined(t, i))) {
            key_len[t->n_special] = t->len[i];
            t->special[t->n_special++] = i;
        }
    }
    st = sort_longest_first(t->special, count, key_len);
    if (st != MLXN_STATUS_OK || users == 0)
        goto done;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (spm && user_defined(t, i)) {
            key_len[t->n_user] = escaped(t, i, NULL);
            t->user_id[t->n_user++] = i;
        }
    }
    st = sort_longest_first(t->user_id, users, key_len);
    size_t k = 0;
    for (int32_t u = 0; st == MLXN_STATUS_OK && u < users; u++) {
        t->user_off[u] = (uint32_t)k;
        t->user_len[u] = (uint32_t)escaped(t, t->user_id[u], t->user_text + k);
        k += t->user_len[u];
    }
done:
    free(key_len);
    return st;
}

static void add_eog(mlxn_tokenizer *t, int32_t id)
{
    if (id < 0)
        return;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id)
            return;
    if (t->n_eog < (int)(sizeof t->eog / sizeof t->eog[0]))
        t->eog[t->n_eog++] = id;
}

static mlxn_status read_specials(mlxn_tokenizer *t, const mlxn_gguf *g)
{
    int32_t eot, eom;
    MLXN_TRY(get_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos));
    MLXN_TRY(get_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos));
    MLXN_TRY(get_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk));
    MLXN_TRY(get_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &eot));
    MLXN_TRY(get_id(g, "tokenizer.ggml.eom_token_id", t->n_vocab, &eom));
    /* llama.cpp's defaults: SentencePiece vocabularies add BOS and a leading space unless the
     * file says otherwise; byte-level BPE ones add neither (BPE has no space prefix at all) */
    MLXN_TRY(get_flag(g, "tokenizer.ggml.add_bos_token", t->kind == TOK_KIND_SPM, &t->add_bos));
    MLXN_TRY(get_flag(g, "tokenizer.ggml.add_space_prefix", true, &t->add_space_prefix));
    if (t->kind != TOK_KIND_SPM)
        t->add_space_prefix = false;
    add_eog(t, t->eos);
    add_eog(t, eot);
    add_eog(t, eom);
    /* chat models end a turn with one of these, whether or not the file names it eot */
    static const char *const eog_names[] = {"<|im_end|>", "<end_of_turn>", "<|endoftext|>", "<|eot_id|>",
                                            "<|end|>", "<|eom_id|>", "<|end_of_text|>", "<EOT>"};
    for (size_t i = 0; i < sizeof eog_names / sizeof eog_names[0]; i++)
        add_eog(t, mlxn_tok_find(t, eog_names[i], strlen(eog_names[i])));

    for (int b = 0; b < 256; b++) {
        char s[8];
        if (t->kind == TOK_KIND_SPM) {
            snprintf(s, sizeof s, "<0x%02X>", b);
            int32_t id = mlxn_tok_find(t, s, 6);
            /* llama.cpp falls back to a token spelled as the byte itself */
            s[0] = (char)b;
            t->byte_token[b] = id >= 0 ? id : mlxn_tok_find(t, s, 1);
        } else {
            t->byte_token[b] = mlxn_tok_find(t, s, mlxn_tok_utf8_encode(mlxn_tok_byte_to_cp((uint8_t)b), s));
        }
    }

    const mlxn_gguf_value *v = mlxn_gguf_find(g, "tokenizer.chat_template");
    if (v) {
        const char *s;
        size_t len;
        if (mlxn_gguf_value_string(v, &s, &len) != MLXN_STATUS_OK)
            return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "tokenizer.chat_template should be a string, found %s",
                              mlxn_gguf_type_name(mlxn_gguf_value_type(v)));
        t->chat_template = malloc(len + 1);
        if (!t->chat_template)
            return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, FN, "no memory for the chat template");
        memcpy(t->chat_template, s, len);
        t->chat_template[len] = '\0';
    }
    return collect_specials(t);
}

static mlxn_status read_kind(mlxn_tokenizer *t, const mlxn_gguf *g)
{
    const char *model = NULL, *pre = NULL;
    const mlxn_gguf_value *v = mlxn_gguf_find(g, "tokenizer.ggml.model");
    if (!v)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "the file has no tokenizer.ggml.model: it carries no vocabulary");
    if (mlxn_gguf_value_string(v, &model, NULL) != MLXN_STATUS_OK)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "tokenizer.ggml.model should be a string, found %s",
                          mlxn_gguf_type_name(mlxn_gguf_value_type(v)));
    if (strcmp(model, "llama") == 0) {
        t->kind = TOK_KIND_SPM;
        return MLXN_STATUS_OK;
    }
    if (strcmp(model, "gpt2") != 0)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, FN,
                          "tokenizer.ggml.model is \"%s\"; mlxn reads \"llama\" (SentencePiece) and \"gpt2\" (byte-level BPE)", model);
    t->kind = TOK_KIND_BPE;
    v = mlxn_gguf_find(g, "tokenizer.ggml.pre");
    if (v && mlxn_gguf_value_string(v, &pre, NULL) != MLXN_STATUS_OK)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, FN, "tokenizer.ggml.pre should be a string, found %s",
                          mlxn_gguf_type_name(mlxn_gguf_value_type(v)));
    static const struct {
        const char *name;
        enum tok_pre pre;
    } pres[] = {
        {"gpt2", TOK_PRE_GPT2},   {"gpt-2", TOK_PRE_GPT2},    {"smollm", TOK_PRE_SMOLLM},
        {"starcoder", TOK_PRE_SMOLLM}, {"refact", TOK_PRE_SMOLLM}, {"qwen2", TOK_PRE_QWEN2},
        {"deepseek-r1-qwen", TOK_PRE_QWEN2}, {"llama3", TOK_PRE_LLAMA3}, {"llama-bpe", TOK_PRE_LLAMA3},
    };
    for (size_t i = 0; pre && i < sizeof pres / sizeof pres[0]; i++) {
        if (strcmp(pre, pres[i].name) == 0) {
            t->pre = pres[i].pre;
            return MLXN_STATUS_OK;
        }
    }
    return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, FN,
                      "tokenizer.ggml.pre is %s%s%s; mlxn splits text for gpt2, smollm (starcoder, refact), qwen2 "
                      "(deepseek-r1-qwen) and llama3 (llama-bpe)",
                      pre ? "\"" : "", pre ? pre : "absent", pre ? "\"" : "");
}

mlxn_status mlxn_tokenizer_create_gguf(const mlxn_gguf *g, mlxn_tokenizer **out)
{
    if (!out)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, FN, "out is NULL");
    *out = NULL;
    if (!g)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, FN, "the gguf is NULL");
    mlxn_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, FN, "no memory");
    mlxn_status st = read_kind(t, g);
    if (st == MLXN_STATUS_OK)
        st = read_tokens(t, g);
    if (st == MLXN_STATUS_OK && t->kind == TOK_KIND_BPE)
        st = read_merges(t, g);
    if (st == MLXN_STATUS_OK)
        st = read_specials(t, g);
    if (st != MLXN_STATUS_OK) {
        mlxn_tokenizer_free(t);
        return st;
    }
    *out = t;
    return MLXN_STATUS_OK;
}

#undef FN

void mlxn_tokenizer_free(mlxn_tokenizer *t)
{
    if (!t)
        return;
    free(t->text);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->slot);
    free(t->merge);
    free(t->special);
    free(t->user_text);
    free(t->user_off);
    free(t->user_len);
    free(t->user_id);
    free(t->chat_template);
    free(t);
}

/* ---------------------------------------------------------------- encoding */

/* A stretch of the text: plain text [start, start + len), or a special token. */
typedef struct fragment {
    int32_t id; /* -1 for text */
    size_t start, len;
} fragment;

typedef struct fragments {
    fragment *f;
    size_t n, cap;
} fragments;

static bool frag_push(fragments *l, fragment f)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        fragment *p = realloc(l->f, cap * sizeof *p);
        if (!p)
            return false;
        l->f = p;
        l->cap = cap;
    }
    l->f[l->n++] = f;
    return true;
}

static const char *find_bytes(const char *h, size_t hn, const char *needle, size_t nn)
{
    while (hn >= nn) {
        const char *p = memchr(h, needle[0], hn - nn + 1);
        if (!p)
            return NULL;
        if (memcmp(p, needle, nn) == 0)
            return p;
        hn -= (size_t)(p - h) + 1;
        h = p + 1;
    }
    return NULL;
}

/* Cuts the special tokens out of the text the way llama.cpp does: each token in turn, longest
 * first, splits every plain fragment at all its occurrences, left to right. Control and
 * unknown tokens take part only with parse_special. The byte-pair filter skips nearly all
 * tokens at once. */
static mlxn_status partition(const mlxn_tokenizer *t, const char *text, size_t len, bool parse_special,
                             fragments *out)
{
    out->n = 0;
    if (!frag_push(out, (fragment){-1, 0, len}))
        goto oom;
    if (t->n_special == 0 || len == 0)
        return MLXN_STATUS_OK;
    uint8_t *pairs = calloc(TOK_PAIR_BYTES, 1);
    bool first[256] = {false};
    if (!pairs)
        goto oom;
    tok_pairs_mark(pairs, first, text, len);
    fragments next = {0};
    for (int32_t k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        if (!parse_special && t->type[id] != TOK_TYPE_USER_DEFINED)
            continue;
        const char *s = tok_text(t, id);
        size_t n = t->len[id];
        if (n > len || !tok_pairs_allow(pairs, first, s, n))
            continue;
        next.n = 0;
        bool found = false;
        for (size_t f = 0; f < out->n; f++) {
            fragment fr = out->f[f];
            const char *p = fr.id < 0 ? find_bytes(text + fr.start, fr.len, s, n) : NULL;
            if (!p) {
                if (!frag_push(&next, fr))
                    goto oom_next;
                continue;
            }
            found = true;
            size_t at = fr.start, end = fr.start + fr.len;
            while (p) {
                size_t hit = (size_t)(p - text);
                if (hit > at && !frag_push(&next, (fragment){-1, at, hit - at}))
                    goto oom_next;
                if (!frag_push(&next, (fragment){id, hit, n}))
                    goto oom_next;
                at = hit + n;
                p = find_bytes(text + at, end - at, s, n);
            }
            if (end > at && !frag_push(&next, (fragment){-1, at, end - at}))
                goto oom_next;
        }
        if (found) {
            fragments swap = *out;
            *out = next;
            next = swap;
        }
    }
    free(next.f);
    free(pairs);
    return MLXN_STATUS_OK;
oom_next:
    free(next.f);
    free(pairs);
oom:
    return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, "mlxn_tokenizer_encode", "no memory for the special-token split");
}

mlxn_status mlxn_tokenizer_encode(const mlxn_tokenizer *t, const char *text, size_t len, bool add_bos,
                                  bool parse_special, int32_t *ids, size_t cap, size_t *n)
{
    if (n)
        *n = 0;
    if (!t || !n || (!text && len > 0) || (!ids && cap > 0))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_tokenizer_encode", "%s is NULL",
                          !t ? "the tokenizer" : !n ? "n" : !ids && cap > 0 ? "ids (with cap > 0)" : "text (with len > 0)");
    tok_out out = {ids, cap, 0};
    if (add_bos && t->add_bos && t->bos >= 0)
        tok_emit(&out, t->bos);
    fragments frags = {0};
    mlxn_status st = partition(t, text, len, parse_special, &frags);
    bool after_special = true; /* the text start counts as following a special token */
    for (size_t i = 0; i < frags.n && st == MLXN_STATUS_OK; i++) {
        const fragment *f = &frags.f[i];
        if (f->id >= 0) {
            tok_emit(&out, f->id);
            after_special = true;
            continue;
        }
        if (f->len == 0)
            continue;
        if (t->kind == TOK_KIND_SPM)
            /* llama.cpp's space prefix goes before every stretch of text that starts the text
             * or follows a special token */
            st = mlxn_tok_spm_encode(t, text + f->start, f->len, t->add_space_prefix && after_special, &out);
        else
            st = mlxn_tok_bpe_encode(t, text + f->start, f->len, &out);
        after_special = false;
    }
    free(frags.f);
    if (st == MLXN_STATUS_OK)
        *n = out.n;
    return st;
}

/* ---------------------------------------------------------------- pieces */

typedef struct sink {
    char *buf;
    size_t cap, n;
} sink;

static void put(sink *s, const char *p, size_t n)
{
    if (s->n < s->cap)
        memcpy(s->buf + s->n, p, s->n + n <= s->cap ? n : s->cap - s->n);
    s->n += n;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

mlxn_status mlxn_tokenizer_piece(const mlxn_tokenizer *t, int32_t id, bool render_special, char *buf, size_t cap,
                                 size_t *n)
{
    if (n)
        *n = 0;
    if (!t || !n || (!buf && cap > 0))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_tokenizer_piece", "%s is NULL",
                          !t ? "the tokenizer" : !n ? "n" : "buf (with cap > 0)");
    if (id < 0 || id >= t->n_vocab)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_tokenizer_piece", "token %d is outside the vocabulary [0, %d)",
                          id, t->n_vocab);
    sink s = {buf, cap, 0};
    const char *text = tok_text(t, id);
    size_t len = t->len[id];
    switch (t->type[id]) {
    case TOK_TYPE_CONTROL:
    case TOK_TYPE_UNKNOWN:
        if (render_special)
            put(&s, text, len);
        break;
    case TOK_TYPE_USER_DEFINED:
        put(&s, text, len);
        break;
    case TOK_TYPE_BYTE:
        if (len == 6 && memcmp(text, "<0x", 3) == 0 && text[5] == '>' && hex_digit(text[3]) >= 0 && hex_digit(text[4]) >= 0) {
            char b = (char)(hex_digit(text[3]) << 4 | hex_digit(text[4]));
            put(&s, &b, 1);
        } else {
            put(&s, text, len);
        }
        break;
    default: /* normal and unused */
        if (t->kind == TOK_KIND_SPM) {
            /* U+2581 stands for a space */
            for (size_t i = 0; i < len;) {
                if (i + 3 <= len && memcmp(text + i, "\xE2\x96\x81", 3) == 0) {
                    put(&s, " ", 1);
                    i += 3;
                } else {
                    put(&s, text + i, 1);
                    i++;
                }
            }
        } else {
            /* each character of GPT-2's byte alphabet is one byte; others pass through */
            for (size_t i = 0; i < len;) {
                size_t l;
                uint32_t cp = mlxn_tok_utf8_decode((const unsigned char *)text + i, len - i, &l);
                int b = cp == TOK_CP_INVALID ? -1 : mlxn_tok_cp_to_byte(cp);
                if (b >= 0) {
                    char c = (char)b;
                    put(&s, &c, 1);
                } else {
                    put(&s, text + i, l);
                }
                i += l;
            }
        }
        break;
    }
    *n = s.n;
    return MLXN_STATUS_OK;
}

/* ---------------------------------------------------------------- small getters */

int32_t mlxn_tokenizer_bos(const mlxn_tokenizer *t) { return t ? t->bos : -1; }
int32_t mlxn_tokenizer_eos(const mlxn_tokenizer *t) { return t ? t->eos : -1; }
int64_t mlxn_tokenizer_vocab_size(const mlxn_tokenizer *t) { return t ? t->n_vocab : 0; }

bool mlxn_tokenizer_is_eog(const mlxn_tokenizer *t, int32_t id)
{
    if (!t || id < 0)
        return false;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id)
            return true;
    return false;
}
