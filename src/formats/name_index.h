/* Names -> item numbers, for a loader's tensors by name (GGUF, safetensors): open addressing over
 * FNV-1a hashes. The names are borrowed: they must outlive the index. */
#ifndef MLXN_NAME_INDEX_H
#define MLXN_NAME_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct name_slot {
    const char *name; /* NULL: empty */
    int64_t item;
} name_slot;

typedef struct name_index {
    name_slot *slots;
    size_t cap; /* a power of two, at least twice the items */
} name_index;

/* Room for n items; false where there is no memory (the index is then empty). */
bool name_index_init(name_index *ix, int64_t n);
/* Adds name as item, unless an item has that name already: returns that item's number then, else -1. */
int64_t name_index_add(name_index *ix, const char *name, int64_t item);
/* The item named name, or -1 (also for an empty index or a NULL name). */
int64_t name_index_find(const name_index *ix, const char *name);
void name_index_free(name_index *ix);

#endif
