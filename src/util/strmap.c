/* strmap.c -- open addressing with linear probing; no deletion (flows and
 * runs only ever add names). */
#include "compat.h"

#include "strmap.h"

#include <string.h>

#include "alloc.h"

uint32_t flow__strhash(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

void flow__strmap_init(struct flow__strmap *m)
{
    m->slots = NULL;
    m->count = 0;
    m->mask = 0;
}

void flow__strmap_cleanup(struct flow__strmap *m)
{
    flow__free(m->slots);
    flow__strmap_init(m);
}

static struct flow__strmap_slot *find(struct flow__strmap_slot *slots, size_t mask,
                                      const char *key, size_t len, uint32_t h)
{
    size_t i = h & mask;
    for (;;) {
        struct flow__strmap_slot *s = &slots[i];
        if (!s->key)
            return s;
        if (s->hash == h && strncmp(s->key, key, len) == 0 && s->key[len] == '\0')
            return s;
        i = (i + 1) & mask;
    }
}

static flow_err grow(struct flow__strmap *m)
{
    size_t n = m->mask ? (m->mask + 1) * 2 : 16;
    struct flow__strmap_slot *slots = flow__calloc(n, sizeof(*slots));
    if (!slots)
        return FLOW_ENOMEM;
    if (m->slots) {
        for (size_t i = 0; i <= m->mask; i++) {
            struct flow__strmap_slot *s = &m->slots[i];
            if (s->key)
                *find(slots, n - 1, s->key, strlen(s->key), s->hash) = *s;
        }
    }
    flow__free(m->slots);
    m->slots = slots;
    m->mask = n - 1;
    return FLOW_OK;
}

flow_err flow__strmap_put(struct flow__strmap *m, const char *key, void *value)
{
    if (!m->slots || (m->count + 1) * 4 > (m->mask + 1) * 3) {
        flow_err rc = grow(m);
        if (rc)
            return rc;
    }
    size_t len = strlen(key);
    uint32_t h = flow__strhash(key, len);
    struct flow__strmap_slot *s = find(m->slots, m->mask, key, len, h);
    if (!s->key) {
        s->key = key;
        s->hash = h;
        m->count++;
    }
    s->value = value;
    return FLOW_OK;
}

void *flow__strmap_getn(const struct flow__strmap *m, const char *key, size_t len)
{
    if (!m->slots)
        return NULL;
    struct flow__strmap_slot *s = find(m->slots, m->mask, key, len, flow__strhash(key, len));
    return s->key ? s->value : NULL;
}

void *flow__strmap_get(const struct flow__strmap *m, const char *key)
{
    return flow__strmap_getn(m, key, strlen(key));
}
