/* arena.h -- a chunked bump allocator for many small objects that live and
 * die together (a flow's tasks and names, a run's activations). No per-object
 * header; everything is freed at once by flow__arena_cleanup. */
#ifndef FLOW_UTIL_ARENA_H
#define FLOW_UTIL_ARENA_H

#include <stddef.h>

struct flow__arena_chunk;

struct flow__arena {
    struct flow__arena_chunk *head; /* newest chunk first */
    char *next;                     /* free space in head */
    size_t left;                    /* bytes free in head */
    size_t chunk_size;
};

void flow__arena_init(struct flow__arena *a, size_t chunk_size);
void flow__arena_cleanup(struct flow__arena *a);
/* Zeroed, max_align_t-aligned memory; NULL when out of memory. Chunks
 * double from `chunk_size` up to 1 MiB. */
void *flow__arena_alloc(struct flow__arena *a, size_t size);
/* The same aligned to `align` only (a power of two up to max_align_t): a
 * struct of pointers that is made once per task need not pay for 16. */
void *flow__arena_alloc_aligned(struct flow__arena *a, size_t size, size_t align);
char *flow__arena_strdup(struct flow__arena *a, const char *s);

#endif
