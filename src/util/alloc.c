/* alloc.c -- the replaceable allocator (see alloc.h). */
#include "compat.h"

#include "alloc.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

/* Every block carries its size in front (16 bytes keep max_align_t
 * alignment), so that free and realloc know where a block came from. Large
 * blocks (LARGE_MIN and up) come from mmap in power-of-two classes and go
 * back to a process-wide cache when freed: a flow of 100,000 tasks freed and
 * built again reuses warm pages instead of faulting fresh ones in, which
 * glibc would hand back to the kernel and fault in again (a page fault costs
 * more than the work of several tasks). The cache holds at most CACHE_MAX. */
struct block_header {
    size_t size; /* bytes asked for */
    size_t cap;  /* large blocks: bytes mapped (a class size); 0: from malloc */
};

#define LARGE_MIN ((size_t)64 << 10)
#define CACHE_MAX ((size_t)256 << 20)
#define CLASSES 40

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cached_block {
    struct cached_block *next;
} *cache[CLASSES];
static size_t cached_bytes;

static unsigned class_of(size_t cap)
{
    unsigned c = 0;
    while (((size_t)1 << c) < cap)
        c++;
    return c;
}

/* A large block with room for `size` bytes after its header; `zero` asks
 * for zeroed memory. */
static struct block_header *large_alloc(size_t size, bool zero)
{
    if (size > SIZE_MAX / 2)
        return NULL;
    size_t cap = LARGE_MIN;
    while (cap < size + sizeof(struct block_header))
        cap *= 2;
    unsigned c = class_of(cap);
    struct block_header *h = NULL;
    if (c < CLASSES) {
        pthread_mutex_lock(&cache_lock);
        struct cached_block *b = cache[c];
        if (b) {
            cache[c] = b->next;
            cached_bytes -= cap;
        }
        pthread_mutex_unlock(&cache_lock);
        if (b) {
            h = (struct block_header *)b;
            if (zero)
                memset(h + 1, 0, size);
        }
    }
    if (!h) {
        void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        h = p; /* fresh pages are zero */
    }
    h->size = size;
    h->cap = cap;
    return h;
}

static void large_free(struct block_header *h)
{
    size_t cap = h->cap;
    unsigned c = class_of(cap);
    pthread_mutex_lock(&cache_lock);
    if (c < CLASSES && cached_bytes + cap <= CACHE_MAX) {
        struct cached_block *b = (struct cached_block *)h;
        b->next = cache[c];
        cache[c] = b;
        cached_bytes += cap;
        h = NULL;
    }
    pthread_mutex_unlock(&cache_lock);
    if (h)
        munmap(h, cap);
}

static void *alloc_block(size_t size, bool zero)
{
    if (should_fail() || size > SIZE_MAX - sizeof(struct block_header))
        return NULL;
    struct block_header *h;
    if (size >= LARGE_MIN) {
        h = large_alloc(size, zero);
    } else {
        h = user_malloc(sizeof(*h) + size);
        if (h && zero)
            memset(h + 1, 0, size);
        if (h)
            h->cap = 0;
    }
    if (!h)
        return NULL;
    h->size = size;
    return h + 1;
}

void *flow__malloc(size_t size)
{
    return alloc_block(size, false);
}

void flow__free(void *ptr)
{
    if (!ptr)
        return;
    struct block_header *h = (struct block_header *)ptr - 1;
    if (h->cap)
        large_free(h);
    else
        user_free(h);
}

void *flow__calloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    return alloc_block(count * size, true);
}

void *flow__realloc(void *ptr, size_t size)
{
    if (!ptr)
        return flow__malloc(size);
    struct block_header *h = (struct block_header *)ptr - 1;
    if (h->cap && size + sizeof(*h) <= h->cap && size >= LARGE_MIN) {
        if (should_fail())
            return NULL;
        h->size = size; /* fits the class it has */
        return ptr;
    }
    if (!h->cap && size < LARGE_MIN) {
        if (should_fail() || size > SIZE_MAX - sizeof(*h))
            return NULL;
        struct block_header *n = user_realloc(h, sizeof(*h) + size);
        if (!n)
            return NULL;
        n->size = size;
        return n + 1;
    }
    void *p = flow__malloc(size);
    if (!p)
        return NULL;
    memcpy(p, ptr, h->size < size ? h->size : size);
    flow__free(ptr);
    return p;
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
