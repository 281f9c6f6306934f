/* Strict JSON parser: recursive descent with a depth limit, every read bounds-checked. */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct block {
    struct block *next;
    size_t used, cap;
    char data[];
} block;

struct json_doc {
    block *blocks;
    json_value root;
};

typedef struct parser {
    const char *s;
    size_t len, pos;
    json_doc *doc;
    char *err;
    size_t err_cap;
    bool failed;
} parser;

static void *alloc(parser *p, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    block *b = p->doc->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = p->doc->blocks;
        b->used = 0;
        b->cap = cap;
        p->doc->blocks = b;
    }
    void *r = b->data + b->used;
    b->used += n;
    return r;
}

static bool fail(parser *p, const char *what)
{
    if (!p->failed)
        snprintf(p->err, p->err_cap, "%s at byte %zu", what, p->pos);
    p->failed = true;
    return false;
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len &&
           (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static bool literal(parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return fail(p, "invalid literal");
    p->pos += n;
    return true;
}

static int hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static bool read_hex4(parser *p, uint32_t *out)
{
    if (p->len - p->pos < 4)
        return fail(p, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex(p->s[p->pos + (size_t)i]);
        if (h < 0)
            return fail(p, "bad \\u escape");
        v = v * 16 + (uint32_t)h;
    }
    p->pos += 4;
    *out = v;
    return true;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of a valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t k;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) {
        k = 1;
        cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        k = 2;
        cp = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        k = 3;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n <= k)
        return 0;
    for (size_t j = 1; j <= k; j++) {
        if ((s[j] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[j] & 0x3f);
    }
    static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return k + 1;
}

static bool parse_string(parser *p, const char **out, size_t *out_len)
{
    p->pos++; /* opening quote */
    size_t start = p->pos;
    /* the unescaped string is never longer than the escaped one */
    size_t end = start;
    while (end < p->len && p->s[end] != '"') {
        if (p->s[end] == '\\')
            end++;
        end++;
    }
    if (end >= p->len)
        return fail(p, "unterminated string");
    char *o = alloc(p, end - start + 1);
    if (!o)
        return fail(p, "out of memory");
    size_t n = 0;
    while (p->s[p->pos] != '"') {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20)
            return fail(p, "control character in string");
        if (c == '\\') {
            p->pos++;
            char e = p->s[p->pos++];
            switch (e) {
            case '"': o[n++] = '"'; break;
            case '\\': o[n++] = '\\'; break;
            case '/': o[n++] = '/'; break;
            case 'b': o[n++] = '\b'; break;
            case 'f': o[n++] = '\f'; break;
            case 'n': o[n++] = '\n'; break;
            case 'r': o[n++] = '\r'; break;
            case 't': o[n++] = '\t'; break;
            case 'u': {
                uint32_t cp;
                if (!read_hex4(p, &cp))
                    return false;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    uint32_t lo;
                    if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                        return fail(p, "unpaired surrogate");
                    p->pos += 2;
                    if (!read_hex4(p, &lo))
                        return false;
                    if (lo < 0xdc00 || lo > 0xdfff)
                        return fail(p, "unpaired surrogate");
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                    return fail(p, "unpaired surrogate");
                }
                /* \uXXXX takes 6 bytes and yields at most 3; a pair takes 12, yields 4 */
                n += put_utf8(o + n, cp);
                break;
            }
            default:
                p->pos--;
                return fail(p, "bad escape");
            }
        } else {
            size_t k = utf8_seq((const unsigned char *)p->s + p->pos, end - p->pos + 1);
            if (!k || p->pos + k > end)
                return fail(p, "invalid UTF-8 in string");
            memcpy(o + n, p->s + p->pos, k);
            n += k;
            p->pos += k;
        }
    }
    p->pos++; /* closing quote */
    o[n] = 0;
    *out = o;
    *out_len = n;
    return true;
}

static bool parse_number(parser *p, json_value *v)
{
    size_t start = p->pos;
    bool neg = false, integral = true;
    if (p->s[p->pos] == '-') {
        neg = true;
        p->pos++;
    }
    if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
        return fail(p, "bad number");
    if (p->s[p->pos] == '0' && p->pos + 1 < p->len && p->s[p->pos + 1] >= '0' && p->s[p->pos + 1] <= '9')
        return fail(p, "leading zero in number");
    uint64_t u = 0;
    bool fits = true;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        uint64_t d = (uint64_t)(p->s[p->pos] - '0');
        if (u > (UINT64_MAX - d) / 10)
            fits = false;
        else
            u = u * 10 + d;
        p->pos++;
    }
    if (p->pos < p->len && p->s[p->pos] == '.') {
        integral = false;
        p->pos++;
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
            return fail(p, "bad fraction");
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        integral = false;
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            p->pos++;
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9')
            return fail(p, "bad exponent");
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    }
    char tmp[64];
    size_t n = p->pos - start;
    if (n >= sizeof tmp) {
        /* long numbers: parse through a heap copy */
        char *h = malloc(n + 1);
        if (!h)
            return fail(p, "out of memory");
        memcpy(h, p->s + start, n);
        h[n] = 0;
        v->number = strtod(h, NULL);
        free(h);
    } else {
        memcpy(tmp, p->s + start, n);
        tmp[n] = 0;
        v->number = strtod(tmp, NULL);
    }
    v->type = JSON_NUMBER;
    v->is_uint = integral && !neg && fits;
    v->uint = v->is_uint ? u : 0;
    return true;
}

static bool parse_value(parser *p, json_value *v, int depth);

static bool parse_container(parser *p, json_value *v, int depth, bool object)
{
    char close = object ? '}' : ']';
    p->pos++;
    v->type = object ? JSON_OBJECT : JSON_ARRAY;
    /* elements are collected in a growing heap array, then moved into the arena */
    size_t cap = 0, n = 0;
    json_value *items = NULL;
    const char **keys = NULL;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return true;
    }
    bool ok = true;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            json_value *ni = realloc(items, cap * sizeof *ni);
            const char **nk = object ? realloc(keys, cap * sizeof *nk) : NULL;
            if (ni)
                items = ni;
            if (nk)
                keys = nk;
            if (!ni || (object && !nk)) {
                ok = fail(p, "out of memory");
                break;
            }
        }
        memset(&items[n], 0, sizeof items[n]);
        skip_ws(p);
        if (object) {
            size_t klen;
            if (p->pos >= p->len || p->s[p->pos] != '"') {
                ok = fail(p, "expected a key");
                break;
            }
            if (!parse_string(p, &keys[n], &klen)) {
                ok = false;
                break;
            }
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                ok = fail(p, "expected ':'");
                break;
            }
            p->pos++;
        }
        if (!parse_value(p, &items[n], depth + 1)) {
            ok = false;
            break;
        }
        n++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            break;
        }
        ok = fail(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
        break;
    }
    if (ok) {
        v->count = n;
        v->items = alloc(p, n * sizeof *items);
        v->keys = object ? alloc(p, n * sizeof *keys) : NULL;
        if (!v->items || (object && !v->keys))
            ok = fail(p, "out of memory");
        else {
            memcpy(v->items, items, n * sizeof *items);
            if (object)
                memcpy(v->keys, keys, n * sizeof *keys);
        }
    }
    free(items);
    free(keys);
    return ok;
}

static bool parse_value(parser *p, json_value *v, int depth)
{
    if (depth > MAX_DEPTH)
        return fail(p, "nesting too deep");
    skip_ws(p);
    if (p->pos >= p->len)
        return fail(p, "unexpected end");
    switch (p->s[p->pos]) {
    case '{':
        return parse_container(p, v, depth, true);
    case '[':
        return parse_container(p, v, depth, false);
    case '"':
        v->type = JSON_STRING;
        return parse_string(p, &v->str, &v->len);
    case 't':
        v->type = JSON_BOOL;
        v->boolean = true;
        return literal(p, "true");
    case 'f':
        v->type = JSON_BOOL;
        return literal(p, "false");
    case 'n':
        v->type = JSON_NULL;
        return literal(p, "null");
    default:
        return parse_number(p, v);
    }
}

json_doc *json_parse(const char *text, size_t len, char *err, size_t err_cap)
{
    json_doc *doc = calloc(1, sizeof *doc);
    if (!doc) {
        snprintf(err, err_cap, "out of memory");
        return NULL;
    }
    parser p = {text, len, 0, doc, err, err_cap, false};
    bool ok = text && parse_value(&p, &doc->root, 0);
    if (ok) {
        skip_ws(&p);
        if (p.pos != len)
            ok = fail(&p, "trailing characters");
    } else if (!text) {
        snprintf(err, err_cap, "no text");
    }
    if (!ok) {
        json_free(doc);
        return NULL;
    }
    return doc;
}

const json_value *json_root(const json_doc *doc)
{
    return doc ? &doc->root : NULL;
}

void json_free(json_doc *doc)
{
    if (!doc)
        return;
    while (doc->blocks) {
        block *n = doc->blocks->next;
        free(doc->blocks);
        doc->blocks = n;
    }
    free(doc);
}

const json_value *json_get(const json_value *o, const char *key)
{
    if (!o || o->type != JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < o->count; i++)
        if (strcmp(o->keys[i], key) == 0)
            return &o->items[i];
    return NULL;
}
