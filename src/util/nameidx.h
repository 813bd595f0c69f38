/* nameidx.h -- a compact index from names to small integers (8 bytes a
 * slot), for tables that already store their names: a flow's tasks. The
 * names are not copied; `name_of` gives the name of an index. */
#ifndef FLOW_UTIL_NAMEIDX_H
#define FLOW_UTIL_NAMEIDX_H

#include <stddef.h>
#include <stdint.h>

#include "flow.h"

typedef const char *(*flow__name_of_fn)(const void *table, uint32_t index);

struct flow__nameidx {
    uint64_t *slots; /* (hash << 32) | (index + 1); 0 = empty */
    size_t count;
    size_t mask;
};

void flow__nameidx_init(struct flow__nameidx *x);
void flow__nameidx_cleanup(struct flow__nameidx *x);
/* Add `name` -> `index` unless the name is there: then *existing gets its
 * index and FLOW_EEXISTS is returned. FLOW_ENOMEM changes nothing. */
flow_err flow__nameidx_add(struct flow__nameidx *x, const char *name, uint32_t index,
                           flow__name_of_fn name_of, const void *table, uint32_t *existing);
/* The index of `name`, or -1. */
int64_t flow__nameidx_find(const struct flow__nameidx *x, const char *name,
                           flow__name_of_fn name_of, const void *table);

#endif
