/* alloc.c -- the replaceable allocator (see alloc.h).
 *
 * Every call goes straight to the host's functions: no header in front of
 * blocks and no cache of freed ones behind them, so ASan and valgrind see
 * each allocation with its exact bounds and every free at once, and a host
 * allocator that counts, limits or pools sees everything libflow asks for.
 * (A cache of large blocks once made rebuilding a 100,000-task flow faster,
 * but it hid use-after-free from the tools and bypassed the host; issue #9.) */
#include "compat.h"

#include "alloc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "flow.h"

static flow_malloc_fn user_malloc = malloc;
static flow_realloc_fn user_realloc = realloc;
static flow_free_fn user_free = free;

#ifdef FLOW_TESTING
#include <stdatomic.h>
static atomic_size_t fail_countdown;
static atomic_size_t alloc_count;

size_t flow__alloc_fail_at(size_t n)
{
    size_t count = atomic_exchange(&alloc_count, 0);
    atomic_store(&fail_countdown, n);
    return count;
}

static int should_fail(void)
{
    atomic_fetch_add(&alloc_count, 1);
    size_t c = atomic_load(&fail_countdown);
    while (c > 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &c, c - 1))
            return c == 1;
    }
    return 0;
}
#else
#define should_fail() 0
#endif

/* A zero-byte request still gets a block of its own: callers treat NULL as
 * "out of memory", and malloc(0) may return NULL. */
void *flow__malloc(size_t size)
{
    if (should_fail())
        return NULL;
    return user_malloc(size ? size : 1);
}

char flow__nomem_why[] = "out of memory";

void flow__free(void *ptr)
{
    if (ptr && ptr != (void *)flow__nomem_why)
        user_free(ptr);
}

void *flow__calloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    /* The C library's calloc knows when its pages are fresh from the kernel
     * and so zero already: large arenas and tables skip a memset that would
     * fault every page in. A host allocator has no calloc to call. */
    if (user_malloc == malloc) {
        if (should_fail())
            return NULL;
        return calloc(count ? count : 1, size ? size : 1);
    }
    void *p = flow__malloc(count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void *flow__realloc(void *ptr, size_t size)
{
    if (!ptr)
        return flow__malloc(size);
    if (should_fail())
        return NULL;
    return user_realloc(ptr, size ? size : 1);
}

void *flow__reallocarray(void *ptr, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    return flow__realloc(ptr, count * size);
}

char *flow__strndup(const char *s, size_t len)
{
    char *p = flow__malloc(len + 1);
    if (!p)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *flow__strdup(const char *s)
{
    return s ? flow__strndup(s, strlen(s)) : NULL;
}

char *flow__asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = flow__malloc((size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

char *flow__why(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *out = n >= 0 ? flow__malloc((size_t)n + 1) : NULL;
    if (!out)
        return flow__nomem_why;
    va_start(ap, fmt);
    vsnprintf(out, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return out;
}

void flow_set_alloc_funcs(flow_malloc_fn malloc_fn, flow_realloc_fn realloc_fn,
                          flow_free_fn free_fn)
{
    if (!malloc_fn || !realloc_fn || !free_fn) {
        malloc_fn = malloc;
        realloc_fn = realloc;
        free_fn = free;
    }
    user_malloc = malloc_fn;
    user_realloc = realloc_fn;
    user_free = free_fn;
    json_set_alloc_funcs(malloc_fn, free_fn);
}
