/* strmap.h -- open-addressing hash map from strings to pointers. Keys are
 * borrowed: the caller keeps them alive for as long as they are in the map. */
#ifndef FLOW_UTIL_STRMAP_H
#define FLOW_UTIL_STRMAP_H

#include <stddef.h>
#include <stdint.h>

#include "flow.h"

struct flow__strmap_slot {
    const char *key; /* NULL: empty */
    uint32_t hash;
    void *value;
};

struct flow__strmap {
    struct flow__strmap_slot *slots;
    size_t count; /* keys stored */
    size_t mask;  /* slot count - 1 (a power of two), or 0 before first use */
};

void flow__strmap_init(struct flow__strmap *m);
void flow__strmap_cleanup(struct flow__strmap *m);
/* Insert or replace. FLOW_ENOMEM leaves the map unchanged. */
flow_err flow__strmap_put(struct flow__strmap *m, const char *key, void *value);
/* The value, or NULL when absent. */
void *flow__strmap_get(const struct flow__strmap *m, const char *key);
void *flow__strmap_getn(const struct flow__strmap *m, const char *key, size_t len);
uint32_t flow__strhash(const char *s, size_t len);

#endif
