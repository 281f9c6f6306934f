/* Tokenizer: small vocabularies written here (hand-checked ids, every error path), then the
 * real models' vocabularies against ids from independent tokenizers (SentencePiece for Gemma,
 * Hugging Face tokenizers for SmolLM2 and its vocabulary under other pre-tokenizers) and chat
 * prompts rendered by Jinja, all in tests/fixtures/tokenizer_*.txt
 * (make_tokenizer_fixture.py). Every fixture string must also come back from its pieces. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "mlxn_tokenizer.h"

#define EXPECT(name, cond, ...)              \
    do {                                     \
        if (cond)                            \
            harness_pass(name);              \
        else                                 \
            harness_fail(name, __VA_ARGS__); \
    } while (0)

static char *temp_path(void)
{
    static char path[256];
    static int serial;
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/mlxn-tok-%d-%d.gguf", dir && *dir ? dir : "/tmp", (int)getpid(), serial++);
    return path;
}

/* Writes w to a temporary file and makes a tokenizer of it (the file is gone afterwards). */
static mlxn_status tokenizer_from_writer(mlxn_gguf_writer *w, mlxn_tokenizer **out)
{
    *out = NULL;
    const char *path = temp_path();
    mlxn_status st = mlxn_gguf_writer_write(w, path);
    if (st != MLXN_STATUS_OK)
        return st;
    mlxn_gguf *g = NULL;
    st = mlxn_gguf_open(path, &g);
    if (st == MLXN_STATUS_OK)
        st = mlxn_tokenizer_create_gguf(g, out);
    mlxn_gguf_free(g);
    unlink(path);
    return st;
}

static void set_str(mlxn_gguf_writer *w, const char *key, const char *value)
{
    mlxn_gguf_writer_set_string(w, key, value, strlen(value));
}

static void set_u32(mlxn_gguf_writer *w, const char *key, uint32_t v)
{
    mlxn_gguf_writer_set_scalar(w, key, MLXN_GGUF_TYPE_UINT32, &v);
}

static void set_bool(mlxn_gguf_writer *w, const char *key, bool v)
{
    mlxn_gguf_writer_set_scalar(w, key, MLXN_GGUF_TYPE_BOOL, &v);
}

static bool encode_is(const mlxn_tokenizer *t, const char *text, bool add_bos, bool parse_special,
                      const int32_t *want, size_t n_want, char *why, size_t why_cap)
{
    int32_t ids[64];
    size_t n = 0;
    mlxn_status st = mlxn_tokenizer_encode(t, text, strlen(text), add_bos, parse_special, ids, 64, &n);
    if (st != MLXN_STATUS_OK) {
        snprintf(why, why_cap, "\"%s\": %s", text, mlxn_last_error());
        return false;
    }
    bool same = n == n_want;
    for (size_t i = 0; same && i < n; i++)
        same = ids[i] == want[i];
    if (!same) {
        int k = snprintf(why, why_cap, "\"%s\" gave", text);
        for (size_t i = 0; i < n && i < 64 && k > 0 && (size_t)k < why_cap; i++)
            k += snprintf(why + k, why_cap - (size_t)k, " %d", ids[i]);
    }
    return same;
}

static bool piece_is(const mlxn_tokenizer *t, int32_t id, bool special, const char *want, size_t want_len)
{
    char buf[64];
    size_t n = 0;
    return mlxn_tokenizer_piece(t, id, special, buf, sizeof buf, &n) == MLXN_STATUS_OK && n == want_len &&
           memcmp(buf, want, n) == 0;
}

/* ---------------------------------------------------------------- a small SentencePiece vocabulary */

enum { SPM_UNK, SPM_BOS, SPM_EOS, SPM_BYTE0 = 3, SPM_SPACE = 259, SPM_A, SPM_B, SPM_C, SPM_AB, SPM_SPACE_A,
       SPM_SPACE_AB, SPM_BC, SPM_HI, SPM_ABC, SPM_CA, SPM_COUNT };

static mlxn_gguf_writer *spm_vocab(bool with_space_prefix_key, bool space_prefix)
{
    static char bytes[256][8];
    const char *tokens[SPM_COUNT] = {"<unk>", "<s>", "</s>"};
    float scores[SPM_COUNT] = {0};
    int32_t types[SPM_COUNT];
    for (int i = 0; i < 3; i++)
        types[i] = 3; /* control */
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        tokens[SPM_BYTE0 + b] = bytes[b];
        types[SPM_BYTE0 + b] = 6;
    }
    const struct {
        int id;
        const char *text;
        float score;
        int type;
    } rest[] = {
        {SPM_SPACE, "\xE2\x96\x81", -10, 1}, {SPM_A, "a", -10, 1}, {SPM_B, "b", -10, 1}, {SPM_C, "c", -10, 1},
        {SPM_AB, "ab", -1, 1}, {SPM_SPACE_A, "\xE2\x96\x81" "a", -2, 1}, {SPM_SPACE_AB, "\xE2\x96\x81" "ab", -0.5f, 1},
        {SPM_BC, "bc", -0.1f, 1}, {SPM_HI, "<hi>", 0, 4}, {SPM_ABC, "abc", -3, 1}, {SPM_CA, "ca", -1, 1},
    };
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) {
        tokens[rest[i].id] = rest[i].text;
        scores[rest[i].id] = rest[i].score;
        types[rest[i].id] = rest[i].type;
    }
    mlxn_gguf_writer *w = NULL;
    mlxn_gguf_writer_create(&w);
    set_str(w, "tokenizer.ggml.model", "llama");
    mlxn_gguf_writer_set_array(w, "tokenizer.ggml.tokens", MLXN_GGUF_TYPE_STRING, tokens, SPM_COUNT);
    mlxn_gguf_writer_set_array(w, "tokenizer.ggml.scores", MLXN_GGUF_TYPE_FLOAT32, scores, SPM_COUNT);
    mlxn_gguf_writer_set_array(w, "tokenizer.ggml.token_type", MLXN_GGUF_TYPE_INT32, types, SPM_COUNT);
    set_u32(w, "tokenizer.ggml.bos_token_id", SPM_BOS);
    set_u32(w, "tokenizer.ggml.eos_token_id", SPM_EOS);
    set_u32(w, "tokenizer.ggml.unknown_token_id", SPM_UNK);
    if (with_space_prefix_key)
        set_bool(w, "tokenizer.ggml.add_space_prefix", space_prefix);
    return w;
}

static void test_small_spm(void)
{
    const char *name = "tokenizer/spm/small";
    char why[512] = "";
    mlxn_tokenizer *t = NULL;
    mlxn_gguf_writer *w = spm_vocab(true, false);
    CHECK_OK(name, tokenizer_from_writer(w, &t));
    /* the best-scored pair merges first: "bc" (-0.1) before "ab" (-1), then "a"+"bc" */
    bool ok = encode_is(t, "abc", false, false, (int32_t[]){SPM_ABC}, 1, why, sizeof why) &&
              /* "ab" (-1) before "\u2581a" (-2), then "\u2581"+"ab" */
              encode_is(t, " ab", false, false, (int32_t[]){SPM_SPACE_AB}, 1, why, sizeof why) &&
              /* equal scores: the leftmost pair ("ca", not "ab") */
              encode_is(t, "cab", false, false, (int32_t[]){SPM_CA, SPM_B}, 2, why, sizeof why) &&
              /* no token: UTF-8 bytes as <0xXX> */
              encode_is(t, "x\xC3\xA9", false, false, (int32_t[]){SPM_BYTE0 + 'x', SPM_BYTE0 + 0xC3, SPM_BYTE0 + 0xA9},
                        3, why, sizeof why) &&
              /* user-defined tokens are cut out always, control tokens with parse_special only */
              encode_is(t, "a<hi>b", false, false, (int32_t[]){SPM_A, SPM_HI, SPM_B}, 3, why, sizeof why) &&
              encode_is(t, "<s>a", false, true, (int32_t[]){SPM_BOS, SPM_A}, 2, why, sizeof why) &&
              encode_is(t, "<s>a", false, false,
                        (int32_t[]){SPM_BYTE0 + '<', SPM_BYTE0 + 's', SPM_BYTE0 + '>', SPM_A}, 4, why, sizeof why) &&
              /* the vocabulary says nothing of BOS: SentencePiece adds it */
              encode_is(t, "ab", true, false, (int32_t[]){SPM_BOS, SPM_AB}, 2, why, sizeof why) &&
              encode_is(t, "", true, false, (int32_t[]){SPM_BOS}, 1, why, sizeof why) &&
              encode_is(t, "", false, false, NULL, 0, why, sizeof why);
    EXPECT(name, ok, "%s", why);

    ok = piece_is(t, SPM_SPACE_AB, false, " ab", 3) && piece_is(t, SPM_BYTE0 + 0xC3, false, "\xC3", 1) &&
         piece_is(t, SPM_BYTE0 + 0, false, "", 1) && piece_is(t, SPM_BOS, false, "", 0) &&
         piece_is(t, SPM_BOS, true, "<s>", 3) && piece_is(t, SPM_HI, false, "<hi>", 4);
    EXPECT("tokenizer/spm/small/pieces", ok, "a piece differs");
    EXPECT("tokenizer/spm/small/ids", mlxn_tokenizer_bos(t) == SPM_BOS && mlxn_tokenizer_eos(t) == SPM_EOS &&
                                          mlxn_tokenizer_is_eog(t, SPM_EOS) && !mlxn_tokenizer_is_eog(t, SPM_BOS) &&
                                          !mlxn_tokenizer_is_eog(t, -1) && mlxn_tokenizer_vocab_size(t) == SPM_COUNT,
           "bos %d eos %d vocab %lld", mlxn_tokenizer_bos(t), mlxn_tokenizer_eos(t),
           (long long)mlxn_tokenizer_vocab_size(t));
    mlxn_tokenizer_free(t);
    t = NULL;
    mlxn_gguf_writer_free(w);

    /* add_space_prefix absent: on, before the text and after each special token */
    w = spm_vocab(false, false);
    name = "tokenizer/spm/small/space_prefix";
    CHECK_OK(name, tokenizer_from_writer(w, &t));
    ok = encode_is(t, "ab", false, false, (int32_t[]){SPM_SPACE_AB}, 1, why, sizeof why) &&
         encode_is(t, "a<s>a", false, true, (int32_t[]){SPM_SPACE_A, SPM_BOS, SPM_SPACE_A}, 3, why, sizeof why);
    EXPECT(name, ok, "%s", why);
fail:
    mlxn_tokenizer_free(t);
    mlxn_gguf_writer_free(w);
}

/* ---------------------------------------------------------------- a small byte-level BPE vocabulary */

enum { BPE_HE = 256, BPE_LL, BPE_HELL, BPE_SPACE_W, BPE_HELLO, BPE_END, BPE_COUNT };

/* GPT-2's spelling of byte b (as UTF-8). */
static void spell_byte(int b, char *out)
{
    int k = 0;
    int cp = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
        cp = 0x100;
        for (int x = 0; x < b; x++)
            cp += !((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE);
    }
    if (cp < 0x80) {
        out[k++] = (char)cp;
    } else {
        out[k++] = (char)(0xC0 | (cp >> 6));
        out[k++] = (char)(0x80 | (cp & 0x3F));
    }
    out[k] = '\0';
}

/* What to leave out of or change in the vocabulary, for the error cases. */
typedef struct bpe_variant {
    const char *model, *pre;
    bool no_merges, bad_merge, short_scores, bad_type, bad_bos, no_tokens;
} bpe_variant;

static mlxn_gguf_writer *bpe_vocab(bpe_variant v)
{
    static char bytes[256][4];
    const char *tokens[BPE_COUNT];
    for (int b = 0; b < 256; b++) {
        spell_byte(b, bytes[b]);
        tokens[b] = bytes[b];
    }
    tokens[BPE_HE] = "he";
    tokens[BPE_LL] = "ll";
    tokens[BPE_HELL] = "hell";
    tokens[BPE_SPACE_W] = "\xC4\xA0w"; /* "Ġw" */
    tokens[BPE_HELLO] = "hello";
    tokens[BPE_END] = "<|end|>";
    const char *merges[] = {"h e", "l l", "he ll", "\xC4\xA0 w", v.bad_merge ? "q zz" : "hell o"};
    int32_t types[BPE_COUNT];
    float scores[BPE_COUNT] = {0};
    for (int i = 0; i < BPE_COUNT; i++)
        types[i] = 1;
    types[BPE_END] = v.bad_type ? 9 : 3;
    mlxn_gguf_writer *w = NULL;
    mlxn_gguf_writer_create(&w);
    if (v.model)
        set_str(w, "tokenizer.ggml.model", v.model);
    if (v.pre)
        set_str(w, "tokenizer.ggml.pre", v.pre);
    if (!v.no_tokens)
        mlxn_gguf_writer_set_array(w, "tokenizer.ggml.tokens", MLXN_GGUF_TYPE_STRING, tokens, BPE_COUNT);
    mlxn_gguf_writer_set_array(w, "tokenizer.ggml.token_type", MLXN_GGUF_TYPE_INT32, types, BPE_COUNT);
    if (v.short_scores)
        mlxn_gguf_writer_set_array(w, "tokenizer.ggml.scores", MLXN_GGUF_TYPE_FLOAT32, scores, BPE_COUNT - 1);
    if (!v.no_merges)
        mlxn_gguf_writer_set_array(w, "tokenizer.ggml.merges", MLXN_GGUF_TYPE_STRING, merges, 5);
    set_u32(w, "tokenizer.ggml.eos_token_id", v.bad_bos ? 0 : BPE_END);
    if (v.bad_bos)
        set_u32(w, "tokenizer.ggml.bos_token_id", BPE_COUNT);
    return w;
}

static void test_small_bpe(void)
{
    const char *name = "tokenizer/bpe/small";
    char why[512] = "";
    mlxn_tokenizer *t = NULL;
    mlxn_gguf_writer *w = bpe_vocab((bpe_variant){.model = "gpt2", .pre = "gpt2"});
    CHECK_OK(name, tokenizer_from_writer(w, &t));
    bool ok = encode_is(t, "hello world", true, false,
                        (int32_t[]){BPE_HELLO, BPE_SPACE_W, 'o', 'r', 'l', 'd'}, 6, why, sizeof why) &&
              encode_is(t, "hi<|end|>", false, true, (int32_t[]){'h', 'i', BPE_END}, 3, why, sizeof why) &&
              /* GPT-2's spelling of bytes that are not printable: "\n" is U+010A, 0xFF stays 0xFF */
              encode_is(t, "\n\xFF", false, false, (int32_t[]){'\n', 0xFF}, 2, why, sizeof why);
    EXPECT(name, ok, "%s", why);
    ok = piece_is(t, BPE_SPACE_W, false, " w", 2) && piece_is(t, '\n', false, "\n", 1) &&
         piece_is(t, 0xFF, false, "\xFF", 1) && piece_is(t, BPE_END, false, "", 0) &&
         piece_is(t, BPE_END, true, "<|end|>", 7);
    EXPECT("tokenizer/bpe/small/pieces", ok, "a piece differs");
    EXPECT("tokenizer/bpe/small/ids", mlxn_tokenizer_bos(t) == -1 && mlxn_tokenizer_is_eog(t, BPE_END),
           "bos %d, eog(<|end|>) %d", mlxn_tokenizer_bos(t), mlxn_tokenizer_is_eog(t, BPE_END));

    /* buffers too small: OK, the full count, the prefix written */
    int32_t ids[3] = {-7, -7, -7};
    size_t n = 0;
    CHECK_OK(name, mlxn_tokenizer_encode(t, "hello world", 11, false, false, ids, 2, &n));
    EXPECT("tokenizer/bpe/small/short_ids", n == 6 && ids[0] == BPE_HELLO && ids[1] == BPE_SPACE_W && ids[2] == -7,
           "n %zu, ids %d %d %d", n, ids[0], ids[1], ids[2]);
    CHECK_OK(name, mlxn_tokenizer_encode(t, "hello world", 11, false, false, NULL, 0, &n));
    EXPECT("tokenizer/bpe/small/count_only", n == 6, "n %zu", n);
    char buf[4] = "xyz";
    CHECK_OK(name, mlxn_tokenizer_piece(t, BPE_END, true, buf, 3, &n));
    EXPECT("tokenizer/bpe/small/short_piece", n == 7 && memcmp(buf, "<|e", 3) == 0 && buf[3] == '\0',
           "n %zu, \"%.3s\"", n, buf);

    /* errors */
    harness_expect_status("tokenizer/err/encode_null_t", mlxn_tokenizer_encode(NULL, "a", 1, false, false, ids, 3, &n),
                          MLXN_STATUS_ERR_INVALID_ARG, "tokenizer");
    harness_expect_status("tokenizer/err/encode_null_text", mlxn_tokenizer_encode(t, NULL, 1, false, false, ids, 3, &n),
                          MLXN_STATUS_ERR_INVALID_ARG, "text");
    harness_expect_status("tokenizer/err/encode_null_ids", mlxn_tokenizer_encode(t, "a", 1, false, false, NULL, 3, &n),
                          MLXN_STATUS_ERR_INVALID_ARG, "ids");
    harness_expect_status("tokenizer/err/encode_null_n", mlxn_tokenizer_encode(t, "a", 1, false, false, ids, 3, NULL),
                          MLXN_STATUS_ERR_INVALID_ARG, "n is NULL");
    CHECK_OK(name, mlxn_tokenizer_encode(t, NULL, 0, false, false, ids, 3, &n));
    harness_expect_status("tokenizer/err/piece_id", mlxn_tokenizer_piece(t, BPE_COUNT, false, buf, 3, &n),
                          MLXN_STATUS_ERR_INVALID_ARG, "outside the vocabulary");
    harness_expect_status("tokenizer/err/piece_negative", mlxn_tokenizer_piece(t, -1, false, buf, 3, &n),
                          MLXN_STATUS_ERR_INVALID_ARG, "outside the vocabulary");
    harness_expect_status("tokenizer/err/piece_null_buf", mlxn_tokenizer_piece(t, 0, false, NULL, 3, &n),
                          MLXN_STATUS_ERR_INVALID_ARG, "buf");
    harness_expect_status("tokenizer/err/chat_none", mlxn_tokenizer_chat(t, "hi", buf, 3, &n),
                          MLXN_STATUS_ERR_UNSUPPORTED, "no tokenizer.chat_template");
    harness_expect_status("tokenizer/err/chat_null", mlxn_tokenizer_chat(t, NULL, buf, 3, &n),
                          MLXN_STATUS_ERR_INVALID_ARG, "user_message");
    mlxn_tokenizer *none = (mlxn_tokenizer *)1;
    harness_expect_status("tokenizer/err/create_null", mlxn_tokenizer_create_gguf(NULL, &none),
                          MLXN_STATUS_ERR_INVALID_ARG, "NULL");
    EXPECT("tokenizer/err/create_null_out", none == NULL, "out not cleared");
    harness_expect_status("tokenizer/err/create_null_out_arg", mlxn_tokenizer_create_gguf(NULL, NULL),
                          MLXN_STATUS_ERR_INVALID_ARG, "out is NULL");
    mlxn_tokenizer_free(NULL);
    mlxn_tokenizer_free(t);
    t = NULL;
    EXPECT("tokenizer/err/null_getters", mlxn_tokenizer_bos(NULL) == -1 && mlxn_tokenizer_vocab_size(NULL) == 0 &&
                                             !mlxn_tokenizer_is_eog(NULL, 0),
           "getters of NULL");
    mlxn_gguf_writer_free(w);
    w = NULL;

    const struct {
        const char *name;
        bpe_variant v;
        mlxn_status want;
        const char *needle;
    } bad[] = {
        {"no_model", {.model = NULL, .pre = "gpt2"}, MLXN_STATUS_ERR_BAD_FORMAT, "tokenizer.ggml.model"},
        {"model_bert", {.model = "bert", .pre = "gpt2"}, MLXN_STATUS_ERR_UNSUPPORTED, "\"bert\""},
        {"pre_unknown", {.model = "gpt2", .pre = "mystery"}, MLXN_STATUS_ERR_UNSUPPORTED, "\"mystery\""},
        {"pre_absent", {.model = "gpt2", .pre = NULL}, MLXN_STATUS_ERR_UNSUPPORTED, "absent"},
        {"no_merges", {.model = "gpt2", .pre = "gpt2", .no_merges = true}, MLXN_STATUS_ERR_BAD_FORMAT, "tokenizer.ggml.merges"},
        {"bad_merge", {.model = "gpt2", .pre = "gpt2", .bad_merge = true}, MLXN_STATUS_ERR_BAD_FORMAT, "not in the vocabulary"},
        {"short_scores", {.model = "gpt2", .pre = "gpt2", .short_scores = true}, MLXN_STATUS_ERR_BAD_FORMAT, "tokenizer.ggml.scores"},
        {"bad_type", {.model = "gpt2", .pre = "gpt2", .bad_type = true}, MLXN_STATUS_ERR_BAD_FORMAT, "token_type[261] is 9"},
        {"bad_bos", {.model = "gpt2", .pre = "gpt2", .bad_bos = true}, MLXN_STATUS_ERR_BAD_FORMAT, "bos_token_id"},
        {"no_tokens", {.model = "gpt2", .pre = "gpt2", .no_tokens = true}, MLXN_STATUS_ERR_BAD_FORMAT, "tokenizer.ggml.tokens"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char n2[96];
        snprintf(n2, sizeof n2, "tokenizer/err/%s", bad[i].name);
        w = bpe_vocab(bad[i].v);
        t = (mlxn_tokenizer *)1;
        harness_expect_status(n2, tokenizer_from_writer(w, &t), bad[i].want, bad[i].needle);
        if (t)
            harness_fail(n2, "out not NULL after a failure");
        mlxn_gguf_writer_free(w);
        w = NULL;
        t = NULL;
    }

    /* an unknown chat format */
    w = bpe_vocab((bpe_variant){.model = "gpt2", .pre = "gpt2"});
    set_str(w, "tokenizer.chat_template", "{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}");
    CHECK_OK(name, tokenizer_from_writer(w, &t));
    harness_expect_status("tokenizer/err/chat_unknown", mlxn_tokenizer_chat(t, "hi", buf, 3, &n),
                          MLXN_STATUS_ERR_UNSUPPORTED, "format");
fail:
    mlxn_tokenizer_free(t);
    mlxn_gguf_writer_free(w);
}

/* ---------------------------------------------------------------- real models */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The bytes of a fixture's hex field ("-" = empty), NUL-terminated; NULL if malformed. */
static char *unhex(const char *h, size_t *len)
{
    size_t n = strcmp(h, "-") == 0 ? 0 : strlen(h);
    if (n % 2)
        return NULL;
    char *out = malloc(n / 2 + 1);
    for (size_t i = 0; out && i < n / 2; i++) {
        int a = hexval(h[2 * i]), b = hexval(h[2 * i + 1]);
        if (a < 0 || b < 0) {
            free(out);
            return NULL;
        }
        out[i] = (char)(a << 4 | b);
    }
    if (out)
        out[n / 2] = '\0';
    *len = n / 2;
    return out;
}

/* A tokenizer of the model's vocabulary with one key set to another string value (NULL key:
 * the file's own). */
static mlxn_status model_tokenizer(const mlxn_gguf *g, const char *key, const char *value, mlxn_tokenizer **out)
{
    if (!key)
        return mlxn_tokenizer_create_gguf(g, out);
    mlxn_gguf_writer *w = NULL;
    mlxn_status st = mlxn_gguf_writer_create(&w);
    for (int64_t i = 0; st == MLXN_STATUS_OK && i < mlxn_gguf_kv_count(g); i++) {
        const char *k = mlxn_gguf_kv_key(g, i);
        if (strncmp(k, "tokenizer.", 10) == 0 && strcmp(k, key) != 0)
            st = mlxn_gguf_writer_set_value(w, k, mlxn_gguf_kv_value(g, i));
    }
    if (st == MLXN_STATUS_OK)
        st = mlxn_gguf_writer_set_string(w, key, value, strlen(value));
    if (st == MLXN_STATUS_OK)
        st = tokenizer_from_writer(w, out);
    mlxn_gguf_writer_free(w);
    return st;
}

typedef struct variant {
    char name[64];
    mlxn_tokenizer *t;
    int encodes, wrong, round_trip_wrong;
    char first_wrong[512];
} variant;

/* Joins the pieces of ids (render_special as given). */
static char *detokenize(const mlxn_tokenizer *t, const int32_t *ids, size_t n, bool special, size_t *len)
{
    size_t cap = 64, k = 0;
    char *s = malloc(cap);
    for (size_t i = 0; s && i < n; i++) {
        size_t m = 0;
        if (mlxn_tokenizer_piece(t, ids[i], special, s + k, cap - k, &m) != MLXN_STATUS_OK) {
            free(s);
            return NULL;
        }
        if (k + m > cap) {
            while (k + m > cap)
                cap *= 2;
            char *p = realloc(s, cap);
            if (!p) {
                free(s);
                return NULL;
            }
            s = p;
            mlxn_tokenizer_piece(t, ids[i], special, s + k, cap - k, &m);
        }
        k += m;
    }
    *len = k;
    return s;
}

static void check_encode(variant *v, char *line)
{
    char *tok[7]; /* encode VARIANT ADD_BOS PARSE_SPECIAL ROUND_TRIP HEX : */
    for (int i = 0; i < 7; i++)
        tok[i] = strtok(i ? NULL : line, " \n");
    if (!tok[6] || strcmp(tok[6], ":") != 0) {
        v->wrong++;
        snprintf(v->first_wrong, sizeof v->first_wrong, "malformed fixture line");
        return;
    }
    bool add_bos = tok[2][0] == '1', special = tok[3][0] == '1', round_trip = tok[4][0] == '1';
    size_t len;
    char *text = unhex(tok[5], &len);
    int32_t want[4096];
    size_t n_want = 0;
    for (char *id = strtok(NULL, " \n"); id && n_want < 4096; id = strtok(NULL, " \n"))
        want[n_want++] = atoi(id);
    int32_t got[4096];
    size_t n = 0;
    v->encodes++;
    mlxn_status st = text ? mlxn_tokenizer_encode(v->t, text, len, add_bos, special, got, 4096, &n)
                          : MLXN_STATUS_ERR_INVALID_ARG;
    bool same = st == MLXN_STATUS_OK && n == n_want;
    for (size_t i = 0; same && i < n; i++)
        same = got[i] == want[i];
    if (!same) {
        if (v->wrong++ == 0) {
            int k = snprintf(v->first_wrong, sizeof v->first_wrong, "text %.200s: want", tok[5]);
            for (size_t i = 0; i < n_want && i < 24 && k < 400; i++)
                k += snprintf(v->first_wrong + k, sizeof v->first_wrong - (size_t)k, " %d", want[i]);
            k += snprintf(v->first_wrong + k, sizeof v->first_wrong - (size_t)k, ", got");
            for (size_t i = 0; i < n && i < 24 && k < 480; i++)
                k += snprintf(v->first_wrong + k, sizeof v->first_wrong - (size_t)k, " %d", got[i]);
        }
        free(text);
        return;
    }
    /* the pieces give the text back (where the fixture says the vocabulary can) */
    if (round_trip) {
        /* the tokens that add_bos added are the difference from the count without it */
        size_t plain = n;
        if (add_bos)
            mlxn_tokenizer_encode(v->t, text, len, false, special, NULL, 0, &plain);
        size_t skip = n - plain;
        size_t back_len;
        char *back = detokenize(v->t, got + skip, n - skip, special, &back_len);
        if (!back || back_len != len || memcmp(back, text, len) != 0) {
            if (v->round_trip_wrong++ == 0 && v->wrong == 0)
                snprintf(v->first_wrong, sizeof v->first_wrong, "text %.200s does not come back from its pieces", tok[5]);
        }
        free(back);
    }
    free(text);
}

/* Random bytes, valid UTF-8 or not, come back from their pieces: 200 short strings and one of
 * 256 KiB. A byte-level vocabulary drops bytes it cannot spell, so only bytes that encode to
 * something are drawn; a SentencePiece one reads U+2581 as a space, so texts holding it are
 * redrawn. */
static void test_random_round_trip(const char *name, const mlxn_tokenizer *t, rng *r)
{
    unsigned char alphabet[256];
    int n_alpha = 0;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        size_t n = 0;
        if (mlxn_tokenizer_encode(t, &c, 1, false, false, NULL, 0, &n) == MLXN_STATUS_OK && n > 0)
            alphabet[n_alpha++] = (unsigned char)b;
    }
    size_t cap = 256 * 1024;
    char *text = malloc(cap);
    int32_t *ids = malloc(cap * sizeof *ids);
    int bad = 0;
    char why[256] = "";
    for (int k = 0; k <= 200 && text && ids && bad == 0; k++) {
        size_t len = k == 200 ? cap : (size_t)rng_int(r, 1, 64);
        for (size_t i = 0; i < len; i++) {
            /* mostly ASCII letters and spaces, so that merges happen, with any byte mixed in */
            int64_t pick = rng_int(r, 0, 9);
            text[i] = pick < 5 ? (char)('a' + rng_int(r, 0, 5)) : pick < 7 ? ' ' : (char)alphabet[rng_int(r, 0, n_alpha - 1)];
            if (i >= 2 && memcmp(text + i - 2, "\xE2\x96\x81", 3) == 0)
                text[i] = 'a';
        }
        size_t n = 0, back_len = 0;
        mlxn_status st = mlxn_tokenizer_encode(t, text, len, false, false, ids, cap, &n);
        char *back = st == MLXN_STATUS_OK ? detokenize(t, ids, n, false, &back_len) : NULL;
        if (!back || back_len != len || memcmp(back, text, len) != 0) {
            bad++;
            snprintf(why, sizeof why, "a text of %zu bytes %s", len,
                     st != MLXN_STATUS_OK ? mlxn_last_error() : "does not come back from its pieces");
        }
        free(back);
    }
    EXPECT(name, text && ids && bad == 0, "%s", why);
    free(text);
    free(ids);
}

static void test_model(const char *model, const char *file, rng *r)
{
    char path[512], fixture[512], name[96];
    const char *cache = getenv("MLXN_CACHE");
    const char *home = getenv("HOME");
    if (cache && *cache)
        snprintf(path, sizeof path, "%s/models/%s", cache, file);
    else
        snprintf(path, sizeof path, "%s/.cache/mlxn/models/%s", home ? home : ".", file);
    snprintf(name, sizeof name, "tokenizer/model/%s", model);
    if (access(path, R_OK) != 0) {
        char why[600];
        snprintf(why, sizeof why, "%s not found (run scripts/fetch_models.py)", path);
        harness_skip(name, why);
        return;
    }
    snprintf(fixture, sizeof fixture, "%s/tokenizer_%s.txt", MLXN_FIXTURES, model);
    FILE *fx = fopen(fixture, "r");
    mlxn_gguf *g = NULL;
    mlxn_tokenizer *t = NULL;
    if (!fx) {
        harness_fail(name, "cannot read %s", fixture);
        return;
    }
    CHECK_OK(name, mlxn_gguf_open(path, &g));
    CHECK_OK(name, mlxn_tokenizer_create_gguf(g, &t));
    const char *kind = NULL;
    mlxn_gguf_get_string(g, "tokenizer.ggml.model", &kind);
    bool spm = kind && strcmp(kind, "llama") == 0;
    {
        /* the end-of-turn marker of the model's chat format ends generation, as does eos */
        const char *marker = spm ? "<end_of_turn>" : "<|im_end|>";
        int32_t id = -1;
        size_t n = 0;
        CHECK_OK(name, mlxn_tokenizer_encode(t, marker, strlen(marker), false, true, &id, 1, &n));
        char en[200];
        snprintf(en, sizeof en, "%s/eog", name);
        EXPECT(en, n == 1 && mlxn_tokenizer_is_eog(t, id) && mlxn_tokenizer_is_eog(t, mlxn_tokenizer_eos(t)) &&
                       !mlxn_tokenizer_is_eog(t, mlxn_tokenizer_bos(t)),
               "%s is %zu tokens (id %d), eog %d; eos %d eog %d", marker, n, id, mlxn_tokenizer_is_eog(t, id),
               mlxn_tokenizer_eos(t), mlxn_tokenizer_is_eog(t, mlxn_tokenizer_eos(t)));
    }

    variant vars[8];
    int n_vars = 0;
    char *line = NULL;
    size_t line_cap = 0;
    int chats = 0, chat_wrong = 0;
    char chat_why[512] = "", tname[64] = "";
    mlxn_tokenizer *tt = NULL;
    while (getline(&line, &line_cap, fx) > 0) {
        if (strncmp(line, "encode ", 7) == 0) {
            char vname[64];
            if (sscanf(line + 7, "%63s", vname) != 1)
                continue;
            int k = 0;
            while (k < n_vars && strcmp(vars[k].name, vname) != 0)
                k++;
            if (k == n_vars) {
                if (n_vars == 8)
                    continue;
                memset(&vars[k], 0, sizeof vars[k]);
                snprintf(vars[k].name, sizeof vars[k].name, "%s", vname);
                mlxn_status st = strcmp(vname, "-") == 0 ? MLXN_STATUS_OK
                                                         : model_tokenizer(g, "tokenizer.ggml.pre", vname, &vars[k].t);
                if (strcmp(vname, "-") == 0)
                    vars[k].t = t;
                if (st != MLXN_STATUS_OK) {
                    harness_fail(name, "tokenizer with pre %s: %s", vname, mlxn_last_error());
                    continue;
                }
                n_vars++;
            }
            check_encode(&vars[k], line);
        } else if (strncmp(line, "template ", 9) == 0 || strncmp(line, "chat ", 5) == 0) {
            /* template NAME HEX: the vocabulary with that template; chat TEMPLATE HEX HEX */
            char *f[4];
            for (int i = 0; i < 4; i++)
                f[i] = strtok(i ? NULL : line, " \n");
            if (strcmp(f[0], "template") == 0) {
                size_t len;
                char *tpl = f[2] ? unhex(f[2], &len) : NULL;
                mlxn_tokenizer_free(tt);
                tt = NULL;
                snprintf(tname, sizeof tname, "%s", f[1]);
                if (!tpl || model_tokenizer(g, "tokenizer.chat_template", tpl, &tt) != MLXN_STATUS_OK)
                    harness_fail(name, "tokenizer with template %s: %s", f[1], mlxn_last_error());
                free(tpl);
                continue;
            }
            if (!f[3])
                continue;
            const mlxn_tokenizer *ct = strcmp(f[1], "-") == 0 ? t : strcmp(f[1], tname) == 0 ? tt : NULL;
            size_t ml, wl, n = 0;
            char *msg = unhex(f[2], &ml), *want = unhex(f[3], &wl);
            char out[4096];
            chats++;
            mlxn_status st = ct && msg && want ? mlxn_tokenizer_chat(ct, msg, out, sizeof out, &n) : MLXN_STATUS_ERR_INVALID_ARG;
            if (st != MLXN_STATUS_OK || n != wl || memcmp(out, want, n) != 0 || out[n] != '\0') {
                if (chat_wrong++ == 0)
                    snprintf(chat_why, sizeof chat_why, "template %s, message %s: %s \"%.200s\"", f[1], f[2],
                             st == MLXN_STATUS_OK ? "got" : mlxn_last_error(), st == MLXN_STATUS_OK ? out : "");
            }
            free(msg);
            free(want);
        }
    }
    free(line);
    mlxn_tokenizer_free(tt);
    for (int k = 0; k < n_vars; k++) {
        char vn[256];
        snprintf(vn, sizeof vn, "%s/encode/%.63s", name, strcmp(vars[k].name, "-") == 0 ? "file" : vars[k].name);
        EXPECT(vn, vars[k].encodes > 0 && vars[k].wrong == 0 && vars[k].round_trip_wrong == 0,
               "%d of %d encodings differ from the reference, %d do not round-trip; first: %s", vars[k].wrong,
               vars[k].encodes, vars[k].round_trip_wrong, vars[k].first_wrong);
        if (vars[k].t != t)
            mlxn_tokenizer_free(vars[k].t);
    }
    snprintf(name, sizeof name, "tokenizer/model/%s/random_round_trip", model);
    test_random_round_trip(name, t, r);
    snprintf(name, sizeof name, "tokenizer/model/%s/chat", model);
    EXPECT(name, chats > 0 && chat_wrong == 0, "%d of %d prompts differ; first: %s", chat_wrong, chats, chat_why);
fail:
    if (fx)
        fclose(fx);
    mlxn_tokenizer_free(t);
    mlxn_gguf_free(g);
}

int main(int argc, char **argv)
{
    rng r = {.s = harness_seed(argc, argv)};
    test_small_spm();
    test_small_bpe();
    test_model("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf", &r);
    test_model("gemma3-270m", "gemma-3-270m-q4_k_m.gguf", &r);
    return harness_finish();
}
