/* A strict JSON parser (RFC 8259) for file headers: safetensors headers, index files and
 * config.json. Parses into a tree owned by the document; strings are unescaped to UTF-8 and
 * validated; integers that fit are kept exact (offsets and shapes need all 64 bits). */
#ifndef MLXN_JSON_H
#define MLXN_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum json_type {
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT
} json_type;

typedef struct json_value json_value;
struct json_value {
    json_type type;
    bool boolean;
    double number;
    bool is_uint;       /* a non-negative integer that fits in uint64 */
    uint64_t uint;
    const char *str;    /* STRING: NUL-terminated UTF-8 (may contain NUL: see len) */
    size_t len;
    size_t count;       /* ARRAY / OBJECT */
    json_value *items;  /* ARRAY elements, OBJECT values */
    const char **keys;  /* OBJECT keys, in file order */
};

typedef struct json_doc json_doc;

/* Parses text[0..len). On failure returns NULL and writes "what at byte N" to err. */
json_doc *json_parse(const char *text, size_t len, char *err, size_t err_cap);
const json_value *json_root(const json_doc *doc);
void json_free(json_doc *doc);

/* The value of key in an object (first match), or NULL. */
const json_value *json_get(const json_value *object, const char *key);

#endif
