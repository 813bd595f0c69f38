/* arena.c -- chunked bump allocator (see arena.h). */
#include "compat.h"

#include "arena.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"

struct flow__arena_chunk {
    struct flow__arena_chunk *next;
    alignas(max_align_t) char data[];
};

void flow__arena_init(struct flow__arena *a, size_t chunk_size)
{
    a->head = NULL;
    a->next = NULL;
    a->left = 0;
    a->chunk_size = chunk_size ? chunk_size : 64 * 1024;
}

void flow__arena_cleanup(struct flow__arena *a)
{
    struct flow__arena_chunk *c = a->head;
    while (c) {
        struct flow__arena_chunk *next = c->next;
        flow__free(c);
        c = next;
    }
    a->head = NULL;
    a->next = NULL;
    a->left = 0;
}

void *flow__arena_alloc(struct flow__arena *a, size_t size)
{
    return flow__arena_alloc_aligned(a, size, alignof(max_align_t));
}

void *flow__arena_alloc_aligned(struct flow__arena *a, size_t size, size_t align)
{
    size = (size + align - 1) & ~(align - 1);
    /* Strings are bumped unaligned: realign the cursor first. */
    size_t pad = (size_t)(-(uintptr_t)a->next & (align - 1));
    if (pad == 0) {
        /* aligned, or no chunk yet: NULL + 0 is undefined in C */
    } else if (pad <= a->left) {
        a->next += pad;
        a->left -= pad;
    } else {
        a->left = 0;
    }
    if (size > a->left) {
        size_t data = size > a->chunk_size ? size : a->chunk_size;
        /* calloc: objects bumped from the chunk need no memset of their
         * own (a large calloc gets fresh zero pages from the C library). */
        struct flow__arena_chunk *c = flow__calloc(1, sizeof(*c) + data);
        if (!c)
            return NULL;
        c->next = a->head;
        a->head = c;
        a->next = c->data;
        a->left = data;
        /* Grow geometrically up to 1 MiB: few chunks for big flows, small
         * ones for small flows. */
        if (a->chunk_size < ((size_t)1 << 20))
            a->chunk_size *= 2;
    }
    void *p = a->next;
    a->next += size;
    a->left -= size;
    return p;
}

char *flow__arena_strdup(struct flow__arena *a, const char *s)
{
    size_t len = strlen(s) + 1;
    char *p;
    if (len > a->left) {
        p = flow__arena_alloc(a, len); /* a new chunk */
        if (!p)
            return NULL;
    } else {
        /* Strings need no alignment: bump byte by byte. */
        p = a->next;
        a->next += len;
        a->left -= len;
    }
    memcpy(p, s, len);
    return p;
}
