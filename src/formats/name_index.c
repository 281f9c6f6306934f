#include "name_index.h"

#include <stdlib.h>
#include <string.h>

static size_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

bool name_index_init(name_index *ix, int64_t n)
{
    size_t cap = 16;
    while (cap < (size_t)n * 2)
        cap *= 2;
    ix->slots = calloc(cap, sizeof *ix->slots);
    ix->cap = ix->slots ? cap : 0;
    return ix->slots != NULL;
}

/* the slot that holds name, or the empty one where it would go */
static name_slot *slot_of(const name_index *ix, const char *name)
{
    size_t h = hash_name(name) & (ix->cap - 1);
    while (ix->slots[h].name && strcmp(ix->slots[h].name, name) != 0)
        h = (h + 1) & (ix->cap - 1);
    return &ix->slots[h];
}

int64_t name_index_add(name_index *ix, const char *name, int64_t item)
{
    name_slot *s = slot_of(ix, name);
    if (s->name)
        return s->item;
    s->name = name;
    s->item = item;
    return -1;
}

int64_t name_index_find(const name_index *ix, const char *name)
{
    if (!ix->cap || !name)
        return -1;
    const name_slot *s = slot_of(ix, name);
    return s->name ? s->item : -1;
}

void name_index_free(name_index *ix)
{
    free(ix->slots);
    ix->slots = NULL;
    ix->cap = 0;
}
