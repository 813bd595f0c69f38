/* alloc.h -- every allocation of libflow goes through here, so that a host
 * can replace the allocator (flow_set_alloc_funcs) and tests can fail the
 * Nth allocation. Each call goes to the host's function as it is, with no
 * cache in between; memory from here goes back through flow__free. */
#ifndef FLOW_UTIL_ALLOC_H
#define FLOW_UTIL_ALLOC_H

#include <stddef.h>

void *flow__malloc(size_t size);
void *flow__calloc(size_t count, size_t size); /* overflow-checked */
void *flow__realloc(void *ptr, size_t size);
/* realloc to count*size bytes, NULL on overflow. */
void *flow__reallocarray(void *ptr, size_t count, size_t size);
void flow__free(void *ptr);
char *flow__strdup(const char *s);
char *flow__strndup(const char *s, size_t len);
/* printf into a new string; NULL on failure. */
char *flow__asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Why a check failed: checks that answer with a message (NULL meaning all is
 * well) make it with this, which never returns NULL -- out of memory gives
 * the static flow__nomem_why, which flow__free leaves alone -- so that a
 * failed allocation can never read as "all is well". */
char *flow__why(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern char flow__nomem_why[];

#ifdef FLOW_TESTING
/* Fail the n-th allocation from now (1 = the next one); 0 turns it off.
 * Returns how many allocations happened since the last call. */
size_t flow__alloc_fail_at(size_t n);
#endif

#endif
