/* nameidx.c -- open addressing, linear probing, no deletion. */
#include "compat.h"

#include "nameidx.h"

#include <string.h>

#include "alloc.h"
#include "strmap.h"

void flow__nameidx_init(struct flow__nameidx *x)
{
    x->slots = NULL;
    x->count = 0;
    x->mask = 0;
}

void flow__nameidx_cleanup(struct flow__nameidx *x)
{
    flow__free(x->slots);
    flow__nameidx_init(x);
}

static flow_err grow(struct flow__nameidx *x)
{
    size_t n = x->mask ? (x->mask + 1) * 2 : 64;
    uint64_t *slots = flow__calloc(n, sizeof(*slots));
    if (!slots)
        return FLOW_ENOMEM;
    for (size_t i = 0; x->slots && i <= x->mask; i++) {
        uint64_t s = x->slots[i];
        if (!s)
            continue;
        size_t j = (size_t)(s >> 32) & (n - 1);
        while (slots[j])
            j = (j + 1) & (n - 1);
        slots[j] = s;
    }
    flow__free(x->slots);
    x->slots = slots;
    x->mask = n - 1;
    return FLOW_OK;
}

flow_err flow__nameidx_add(struct flow__nameidx *x, const char *name, uint32_t index,
                           flow__name_of_fn name_of, const void *table, uint32_t *existing)
{
    /* Up to 7/8 full: one slot is 8 bytes per task of every flow, and
     * lookups by name are not on the scheduling path. */
    if (!x->slots || (x->count + 1) * 8 > (x->mask + 1) * 7) {
        if (grow(x))
            return FLOW_ENOMEM;
    }
    uint32_t h = flow__strhash(name, strlen(name));
    size_t i = h & x->mask;
    for (;;) {
        uint64_t s = x->slots[i];
        if (!s)
            break;
        if ((uint32_t)(s >> 32) == h && !strcmp(name_of(table, (uint32_t)s - 1), name)) {
            if (existing)
                *existing = (uint32_t)s - 1;
            return FLOW_EEXISTS;
        }
        i = (i + 1) & x->mask;
    }
    x->slots[i] = ((uint64_t)h << 32) | ((uint64_t)index + 1);
    x->count++;
    return FLOW_OK;
}

int64_t flow__nameidx_find(const struct flow__nameidx *x, const char *name,
                           flow__name_of_fn name_of, const void *table)
{
    if (!x->slots)
        return -1;
    uint32_t h = flow__strhash(name, strlen(name));
    size_t i = h & x->mask;
    for (;;) {
        uint64_t s = x->slots[i];
        if (!s)
            return -1;
        if ((uint32_t)(s >> 32) == h && !strcmp(name_of(table, (uint32_t)s - 1), name))
            return (int64_t)((uint32_t)s - 1);
        i = (i + 1) & x->mask;
    }
}
