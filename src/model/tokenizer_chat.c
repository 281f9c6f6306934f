/* Chat prompts: the format of tokenizer.chat_template recognised from the markers it writes
 * (the Jinja template itself is not run), filled in for one user message. */
#include <string.h>

#include "core/internal.h"
#include "tokenizer_internal.h"

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

static void puts_(sink *s, const char *p) { put(s, p, strlen(p)); }

/* The default system prompt of a ChatML template: a literal "<|im_start|>system\n" TEXT
 * "<|im_end|>" inside one template string (the newline written as a newline or as Jinja's
 * \n), which the templates of SmolLM2 and Qwen2.5 write when the conversation has no system
 * message. Where the system turn is built from an expression (quotes, braces or + before the
 * end marker) it is not a default. Returns the text's length (0 when none) and its start. */
static size_t default_system(const char *tpl, const char **text)
{
    static const char open[] = "<|im_start|>system";
    for (const char *p = strstr(tpl, open); p; p = strstr(p + 1, open)) {
        const char *q = p + sizeof open - 1;
        if (*q == '\n')
            q += 1;
        else if (q[0] == '\\' && q[1] == 'n')
            q += 2;
        else
            continue;
        const char *end = strstr(q, "<|im_end|>");
        if (!end || end == q || memchr(q, '\'', (size_t)(end - q)) || memchr(q, '"', (size_t)(end - q)) ||
            memchr(q, '{', (size_t)(end - q)) || memchr(q, '}', (size_t)(end - q)) || memchr(q, '+', (size_t)(end - q)) ||
            memchr(q, '\\', (size_t)(end - q)))
            continue;
        *text = q;
        return (size_t)(end - q);
    }
    return 0;
}

/* Jinja's trim: white space off both ends (ASCII white space; the messages are UTF-8). */
static void trim(const char **s, size_t *n)
{
    while (*n > 0 && strchr(" \t\n\r\f\v", (*s)[0]))
        (*s)++, (*n)--;
    while (*n > 0 && strchr(" \t\n\r\f\v", (*s)[*n - 1]))
        (*n)--;
}

mlxn_status mlxn_tokenizer_chat(const mlxn_tokenizer *t, const char *user_message, char *buf, size_t cap, size_t *n)
{
    if (n)
        *n = 0;
    if (!t || !user_message || !n || (!buf && cap > 0))
        return mlxn_error(MLXN_STATUS_ERR_INVALID_ARG, "mlxn_tokenizer_chat", "%s is NULL",
                          !t ? "the tokenizer" : !user_message ? "user_message" : !n ? "n" : "buf (with cap > 0)");
    const char *tpl = t->chat_template;
    if (!tpl)
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, "mlxn_tokenizer_chat",
                          "the GGUF has no tokenizer.chat_template, so the model's chat format is unknown");
    sink s = {buf, cap, 0};
    const char *msg = user_message;
    size_t msg_len = strlen(msg);
    if (strstr(tpl, "<|im_start|>")) {
        const char *sys;
        size_t sys_len = default_system(tpl, &sys);
        if (sys_len) {
            puts_(&s, "<|im_start|>system\n");
            put(&s, sys, sys_len);
            puts_(&s, "<|im_end|>\n");
        }
        puts_(&s, "<|im_start|>user\n");
        put(&s, msg, msg_len);
        puts_(&s, "<|im_end|>\n<|im_start|>assistant\n");
    } else if (strstr(tpl, "<start_of_turn>")) {
        if (strstr(tpl, "| trim") || strstr(tpl, "|trim"))
            trim(&msg, &msg_len);
        puts_(&s, "<start_of_turn>user\n");
        put(&s, msg, msg_len);
        puts_(&s, "<end_of_turn>\n<start_of_turn>model\n");
    } else {
        return mlxn_error(MLXN_STATUS_ERR_UNSUPPORTED, "mlxn_tokenizer_chat",
                          "tokenizer.chat_template is in a format mlxn does not know (it reads ChatML, with "
                          "<|im_start|>, and Gemma's, with <start_of_turn>)");
    }
    if (s.n < cap)
        buf[s.n] = '\0';
    *n = s.n;
    return MLXN_STATUS_OK;
}
