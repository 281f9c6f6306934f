/* The synthetic qwen3moe GGUF: random weights with calibrated scales, written with the library's
 * GGUF writer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "core/internal.h"
#include "mlxn_gguf.h"
#include "mlxn_quant.h"
#include "synth_moe.h"

static const char *fn = "synth_moe_write";

/* GGML tensor type ids (GGUF numbering) */
enum { GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q8_0 = 8, GGML_Q4_K = 12 };

synth_moe_options synth_moe_options_default(void)
{
    return (synth_moe_options){.seed = 1,
                               .n_layer = 4,
                               .n_embd = 512,
                               .n_head = 8,
                               .n_head_kv = 2,
                               .head_dim = 64,
                               .n_expert = 32,
                               .n_expert_used = 4,
                               .n_ff_exp = 256,
                               .n_ctx_train = 4096,
                               .router_std = 3.0f,
                               .tokenizer_from = NULL,
                               .dense = false,
                               .n_ff = 1024};
}

typedef struct synth {
    mlxn_gguf_writer *w;
    uint64_t rng;
    void **data; /* tensor data, kept until the file is written */
    int n_data, cap_data;
} synth;

static uint64_t next_u64(synth *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(synth *s) /* [0, 1) */
{
    return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0);
}

static double gaussian(synth *s)
{
    const double u = uniform(s), v = uniform(s);
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

static void *keep(synth *s, size_t bytes)
{
    if (s->n_data == s->cap_data) {
        const int cap = s->cap_data ? 2 * s->cap_data : 64;
        void **p = realloc(s->data, (size_t)cap * sizeof *p);
        if (!p)
            return NULL;
        s->data = p;
        s->cap_data = cap;
    }
    void *d = malloc(bytes ? bytes : 1);
    if (d)
        s->data[s->n_data++] = d;
    return d;
}

/* Offsets of the f16 scale fields in a block: d, and dmin for Q4_K (whose values are
 * d * scale * q - dmin * min). */
static void scale_fields(uint32_t type, int *n, int off[2])
{
    *n = type == GGML_Q4_K ? 2 : 1;
    off[0] = 0;
    off[1] = 2;
}

/* A weight of `type` with ne = {K, rows, experts} (n_dims 1..3) and element RMS `rms`: float
 * types take Gaussian values; block types take random codes (every byte pattern is a valid
 * code) under f16 block scales drawn from [0.5, 1.5), all multiplied by one factor measured on
 * the decoded values so that the RMS comes out as asked. */
static mlxn_status add_weight(synth *s, const char *name, uint32_t type, int n_dims, const int64_t *ne, double rms)
{
    mlxn_ggml_type_info ti;
    if (!mlxn_ggml_type_info_get(type, &ti))
        return mlxn_error(MLXN_STATUS_ERR_INTERNAL, fn, "unknown GGML type %u", type);
    int64_t nel = 1;
    for (int d = 0; d < n_dims; d++)
        nel *= ne[d];
    if (ne[0] % ti.block_elems)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "%s: rows of %lld are not a multiple of %s's block of %lld",
                          name, (long long)ne[0], ti.name, (long long)ti.block_elems);
    const int64_t n_blocks = nel / ti.block_elems;
    uint8_t *data = keep(s, (size_t)(n_blocks * ti.block_bytes));
    if (!data)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "%s: %lld elements", name, (long long)nel);
    if (type == GGML_F32 || type == GGML_F16) {
        for (int64_t i = 0; i < nel; i++) {
            const float v = (float)(rms * gaussian(s));
            if (type == GGML_F32)
                memcpy(data + 4 * i, &v, 4);
            else {
                const uint16_t h = mlxn_f32_to_f16(v);
                memcpy(data + 2 * i, &h, 2);
            }
        }
        return mlxn_gguf_writer_add_tensor(s->w, name, type, n_dims, ne, data);
    }
    for (int64_t i = 0; i < n_blocks * ti.block_bytes; i += 8) {
        const uint64_t r = next_u64(s);
        memcpy(data + i, &r, (size_t)(n_blocks * ti.block_bytes - i < 8 ? n_blocks * ti.block_bytes - i : 8));
    }
    int n_scales, off[2];
    scale_fields(type, &n_scales, off);
    float *unit = malloc((size_t)n_blocks * sizeof *unit);
    if (!unit)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "%s: block scales", name);
    for (int64_t b = 0; b < n_blocks; b++)
        unit[b] = (float)(0.5 + uniform(s));
    /* dmin = 7.5 d centres a Q4_K sub-block whose scale and min codes are equal (codes 0..15) */
    const float min_ratio = 7.5f;
    /* Measure the RMS at factor 1 over the first blocks (they are drawn like all the others). */
    const int64_t n_probe = n_blocks < 2048 ? n_blocks : 2048;
    for (int64_t b = 0; b < n_probe; b++)
        for (int k = 0; k < n_scales; k++) {
            const uint16_t h = mlxn_f32_to_f16(unit[b] * (k ? min_ratio : 1.0f));
            memcpy(data + b * ti.block_bytes + off[k], &h, 2);
        }
    float *probe = malloc((size_t)(n_probe * ti.block_elems) * sizeof *probe);
    mlxn_status st = probe ? mlxn_ggml_dequantize(ti.dtype, data, n_probe * ti.block_elems, probe)
                           : mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "%s: probe", name);
    double ss = 0;
    for (int64_t i = 0; st == MLXN_STATUS_OK && i < n_probe * ti.block_elems; i++)
        ss += (double)probe[i] * probe[i];
    free(probe);
    if (st != MLXN_STATUS_OK) {
        free(unit);
        return st;
    }
    const double factor = rms / sqrt(ss / (double)(n_probe * ti.block_elems));
    for (int64_t b = 0; b < n_blocks; b++)
        for (int k = 0; k < n_scales; k++) {
            const uint16_t h = mlxn_f32_to_f16((float)(unit[b] * factor * (k ? min_ratio : 1.0f)));
            memcpy(data + b * ti.block_bytes + off[k], &h, 2);
        }
    free(unit);
    return mlxn_gguf_writer_add_tensor(s->w, name, type, n_dims, ne, data);
}

/* A norm weight: values drawn from [0.8, 1.2). */
static mlxn_status add_norm(synth *s, const char *name, int64_t n)
{
    float *v = keep(s, (size_t)n * sizeof *v);
    if (!v)
        return mlxn_error(MLXN_STATUS_ERR_OUT_OF_MEMORY, fn, "%s", name);
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)(0.8 + 0.4 * uniform(s));
    return mlxn_gguf_writer_add_tensor(s->w, name, GGML_F32, 1, &n, v);
}

static mlxn_status set_u32(synth *s, const char *key, int64_t v)
{
    const uint32_t u = (uint32_t)v;
    return mlxn_gguf_writer_set_scalar(s->w, key, MLXN_GGUF_TYPE_UINT32, &u);
}

static mlxn_status set_f32(synth *s, const char *key, float v)
{
    return mlxn_gguf_writer_set_scalar(s->w, key, MLXN_GGUF_TYPE_FLOAT32, &v);
}

/* GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the others for
 * code points from 256 on, in byte order. */
static unsigned byte_cp(int b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
        return (unsigned)b;
    int n = 0;
    for (int c = 0; c < b; c++)
        n += !((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255));
    return 256u + (unsigned)n;
}

static size_t utf8(unsigned cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    o[0] = (char)(0xc0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

/* Byte-level BPE vocabulary: the 256 byte tokens, a few English merges and <|endoftext|>
 * (end of text, control). Returns the vocabulary size. */
static mlxn_status byte_vocab(synth *s, int64_t *n_vocab)
{
    /* each merge joins its two halves ('_' is a space, written as the byte token of 0x20) */
    static const char *const merges[] = {"t h", "h e", "i n", "e r", "a n", "r e", "o n", "a t", "e n", "n d",
                                         "o r", "e s", "i s", "i t", "a l", "o u", "_ t", "_ a", "_ s", "_ w",
                                         "_ o", "_ i", "_ c", "_ f", "_t h", "_th e", "_a n", "_an d", "_o f", "_i s"};
    enum { n_merges = sizeof merges / sizeof merges[0], cap = 256 + n_merges + 1 };
    char text[cap][16], merge_text[n_merges][24];
    const char *tokens[cap], *merge_ptr[n_merges];
    int32_t types[cap];
    int n = 0;
    char space[3];
    space[utf8(byte_cp(' '), space)] = 0;
    for (int b = 0; b < 256; b++) {
        text[n][utf8(byte_cp(b), text[n])] = 0;
        types[n++] = 1; /* normal */
    }
    for (int i = 0; i < n_merges; i++) {
        char out[24] = {0};
        size_t o = 0;
        for (const char *c = merges[i]; *c; c++) {
            if (*c == '_') {
                memcpy(out + o, space, strlen(space));
                o += strlen(space);
            } else
                out[o++] = *c;
        }
        snprintf(merge_text[i], sizeof merge_text[i], "%s", out);
        merge_ptr[i] = merge_text[i];
        /* the merged token: both halves without the separating space */
        const char *sp = strchr(out, ' ');
        snprintf(text[n], sizeof text[n], "%.*s%s", (int)(sp - out), out, sp + 1);
        types[n++] = 1;
    }
    snprintf(text[n], sizeof text[n], "<|endoftext|>");
    types[n++] = 3; /* control */
    for (int i = 0; i < n; i++)
        tokens[i] = text[i];
    MLXN_TRY(mlxn_gguf_writer_set_string(s->w, "tokenizer.ggml.model", "gpt2", 4));
    MLXN_TRY(mlxn_gguf_writer_set_string(s->w, "tokenizer.ggml.pre", "qwen2", 5));
    MLXN_TRY(mlxn_gguf_writer_set_array(s->w, "tokenizer.ggml.tokens", MLXN_GGUF_TYPE_STRING, tokens, (uint64_t)n));
    MLXN_TRY(mlxn_gguf_writer_set_array(s->w, "tokenizer.ggml.token_type", MLXN_GGUF_TYPE_INT32, types, (uint64_t)n));
    MLXN_TRY(mlxn_gguf_writer_set_array(s->w, "tokenizer.ggml.merges", MLXN_GGUF_TYPE_STRING, merge_ptr,
                                        (uint64_t)n_merges));
    MLXN_TRY(set_u32(s, "tokenizer.ggml.eos_token_id", n - 1));
    MLXN_TRY(set_u32(s, "tokenizer.ggml.bos_token_id", n - 1));
    const uint8_t no = 0;
    MLXN_TRY(mlxn_gguf_writer_set_scalar(s->w, "tokenizer.ggml.add_bos_token", MLXN_GGUF_TYPE_BOOL, &no));
    *n_vocab = n;
    return MLXN_STATUS_OK;
}

/* Every tokenizer.* key of another GGUF; the vocabulary size is its token count. */
static mlxn_status copy_vocab(synth *s, const mlxn_gguf *src, int64_t *n_vocab)
{
    const mlxn_gguf_value *tokens = mlxn_gguf_find(src, "tokenizer.ggml.tokens");
    mlxn_gguf_type et;
    uint64_t n = 0;
    if (!tokens || mlxn_gguf_array_info(tokens, &et, &n) != MLXN_STATUS_OK || et != MLXN_GGUF_TYPE_STRING || n == 0)
        return mlxn_error(MLXN_STATUS_ERR_BAD_FORMAT, fn, "the tokenizer source has no tokenizer.ggml.tokens strings");
    for (int64_t i = 0; i < mlxn_gguf_kv_count(src); i++) {
        const char *key = mlxn_gguf_kv_key(src, i);
        if (strncmp(key, "tokenizer.", 10) == 0)
            MLXN_TRY(mlxn_gguf_writer_set_value(s->w, key, mlxn_gguf_kv_value(src, i)));
    }
    *n_vocab = (int64_t)n;
    return MLXN_STATUS_OK;
}

static mlxn_status check_options(const synth_moe_options *o)
{
    if (o->n_layer < 1 || o->n_embd < 1 || o->n_head < 1 || o->n_head_kv < 1 || o->n_head % o->n_head_kv ||
        o->head_dim < 2 || o->head_dim % 2 || o->n_expert < 1 || o->n_expert_used < 1 ||
        o->n_expert_used > o->n_expert || o->n_ff_exp < 1 || o->n_ctx_train < 1 || !(o->router_std > 0))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                          "options out of range: %lld layers, %lld wide, %lld/%lld heads of %lld, %lld experts "
                          "(%lld used) of %lld, context %lld, router spread %g",
                          (long long)o->n_layer, (long long)o->n_embd, (long long)o->n_head, (long long)o->n_head_kv,
                          (long long)o->head_dim, (long long)o->n_expert, (long long)o->n_expert_used,
                          (long long)o->n_ff_exp, (long long)o->n_ctx_train, (double)o->router_std);
    /* Q4_K rows (256 elements) in the expert weights, Q8_0 rows in attention and output */
    if (o->n_embd % 256 || o->n_ff_exp % 256 || (o->dense && (o->n_ff < 1 || o->n_ff % 256)) ||
        (o->n_head * o->head_dim) % 32)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn,
                          "width %lld, expert FFN %lld and dense FFN %lld must be multiples of 256 (Q4_K rows), "
                          "heads x head_dim %lld a multiple of 32",
                          (long long)o->n_embd, (long long)o->n_ff_exp, (long long)o->n_ff,
                          (long long)(o->n_head * o->head_dim));
    return MLXN_STATUS_OK;
}

/* "<arch>.<key>" = v, as u32 or (set_hp_f32) f32 */
static mlxn_status set_hp(synth *s, const char *arch, const char *key, int64_t v)
{
    char k[96];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return set_u32(s, k, v);
}

static mlxn_status set_hp_f32(synth *s, const char *arch, const char *key, float v)
{
    char k[96];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return set_f32(s, k, v);
}

static mlxn_status write_model(synth *s, const char *path, const synth_moe_options *o)
{
    const int64_t E = o->n_embd, D = o->head_dim, Hq = o->n_head, Hk = o->n_head_kv, X = o->n_expert;
    const int64_t F = o->n_ff_exp;
    const char *arch = o->dense ? "qwen3" : "qwen3moe";
    MLXN_TRY(mlxn_gguf_writer_set_string(s->w, "general.architecture", arch, strlen(arch)));
    char name[96];
    snprintf(name, sizeof name, "mlxn synthetic %s (seed %llu)", arch, (unsigned long long)o->seed);
    MLXN_TRY(mlxn_gguf_writer_set_string(s->w, "general.name", name, strlen(name)));
    MLXN_TRY(set_hp(s, arch, "block_count", o->n_layer));
    MLXN_TRY(set_hp(s, arch, "context_length", o->n_ctx_train));
    MLXN_TRY(set_hp(s, arch, "embedding_length", E));
    /* qwen3moe: the dense FFN width of the source config, unused by its layers (as in real files) */
    MLXN_TRY(set_hp(s, arch, "feed_forward_length", o->dense ? o->n_ff : 3 * E));
    MLXN_TRY(set_hp(s, arch, "attention.head_count", Hq));
    MLXN_TRY(set_hp(s, arch, "attention.head_count_kv", Hk));
    MLXN_TRY(set_hp(s, arch, "attention.key_length", D));
    MLXN_TRY(set_hp(s, arch, "attention.value_length", D));
    MLXN_TRY(set_hp_f32(s, arch, "rope.freq_base", 1000000.0f));
    MLXN_TRY(set_hp_f32(s, arch, "attention.layer_norm_rms_epsilon", 1e-6f));
    if (!o->dense) {
        MLXN_TRY(set_hp(s, arch, "expert_count", X));
        MLXN_TRY(set_hp(s, arch, "expert_used_count", o->n_expert_used));
        MLXN_TRY(set_hp(s, arch, "expert_feed_forward_length", F));
    }

    int64_t V = 0;
    if (o->tokenizer_from) {
        mlxn_gguf *src = NULL;
        MLXN_TRY(mlxn_gguf_open(o->tokenizer_from, &src));
        mlxn_status st = copy_vocab(s, src, &V);
        mlxn_gguf_free(src); /* set_value copied what it needs */
        MLXN_TRY(st);
    } else
        MLXN_TRY(byte_vocab(s, &V));

    /* logits spread over about +-3 * 3: clear argmaxes, no overflow */
    const double logit_std = 3.0;
    const int64_t ne_embd[2] = {E, V};
    MLXN_TRY(add_weight(s, "token_embd.weight", GGML_Q8_0, 2, ne_embd, 1.0));
    MLXN_TRY(add_norm(s, "output_norm.weight", E));
    MLXN_TRY(add_weight(s, "output.weight", GGML_Q8_0, 2, ne_embd, logit_std / sqrt((double)E)));
    static const uint32_t expert_types[3] = {GGML_Q4_0, GGML_Q8_0, GGML_Q4_K};
    for (int64_t l = 0; l < o->n_layer; l++) {
        char n[96];
        const uint32_t at = l % 2 ? GGML_F16 : GGML_Q8_0;
        const uint32_t gu = expert_types[l % 3], dn = expert_types[(l + 1) % 3];
        const int64_t ne_q[2] = {E, Hq * D}, ne_kv[2] = {E, Hk * D}, ne_o[2] = {Hq * D, E}, ne_r[2] = {E, X};
        const int64_t ne_gu[3] = {E, F, X}, ne_dn[3] = {F, E, X};
#define NAME(suffix) (snprintf(n, sizeof n, "blk.%lld." suffix ".weight", (long long)l), n)
        MLXN_TRY(add_norm(s, NAME("attn_norm"), E));
        MLXN_TRY(add_weight(s, NAME("attn_q"), at, 2, ne_q, 1.0 / sqrt((double)E)));
        MLXN_TRY(add_weight(s, NAME("attn_k"), at, 2, ne_kv, 1.0 / sqrt((double)E)));
        MLXN_TRY(add_weight(s, NAME("attn_v"), at, 2, ne_kv, 1.0 / sqrt((double)E)));
        MLXN_TRY(add_weight(s, NAME("attn_output"), at, 2, ne_o, 1.0 / sqrt((double)(Hq * D))));
        MLXN_TRY(add_norm(s, NAME("attn_q_norm"), D));
        MLXN_TRY(add_norm(s, NAME("attn_k_norm"), D));
        MLXN_TRY(add_norm(s, NAME("ffn_norm"), E));
        if (o->dense) {
            const int64_t ne_fu[2] = {E, o->n_ff}, ne_fd[2] = {o->n_ff, E};
            MLXN_TRY(add_weight(s, NAME("ffn_gate"), gu, 2, ne_fu, 1.0 / sqrt((double)E)));
            MLXN_TRY(add_weight(s, NAME("ffn_up"), gu, 2, ne_fu, 1.0 / sqrt((double)E)));
            MLXN_TRY(add_weight(s, NAME("ffn_down"), dn, 2, ne_fd, 1.0 / sqrt((double)o->n_ff)));
            continue;
        }
        MLXN_TRY(add_weight(s, NAME("ffn_gate_inp"), GGML_F32, 2, ne_r, o->router_std / sqrt((double)E)));
        MLXN_TRY(add_weight(s, NAME("ffn_gate_exps"), gu, 3, ne_gu, 1.0 / sqrt((double)E)));
        MLXN_TRY(add_weight(s, NAME("ffn_up_exps"), gu, 3, ne_gu, 1.0 / sqrt((double)E)));
        MLXN_TRY(add_weight(s, NAME("ffn_down_exps"), dn, 3, ne_dn, 1.0 / sqrt((double)F)));
    }
#undef NAME
    return mlxn_gguf_writer_write(s->w, path);
}

mlxn_status synth_moe_write(const char *path, const synth_moe_options *o)
{
    if (!path || !o)
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, fn, "path or options is NULL");
    MLXN_TRY(check_options(o));
    synth s = {.rng = o->seed};
    MLXN_TRY(mlxn_gguf_writer_create(&s.w));
    mlxn_status st = write_model(&s, path, o);
    for (int i = 0; i < s.n_data; i++)
        free(s.data[i]);
    free(s.data);
    mlxn_gguf_writer_free(s.w);
    return st;
}
