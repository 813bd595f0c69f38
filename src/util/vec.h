/* vec.h -- a typed growable array as macros (like Redis's adlist but flat):
 *   FLOW__VEC(int) v = {0};  FLOW__VEC_PUSH(&v, 3, rc);  FLOW__VEC_FREE(&v); */
#ifndef FLOW_UTIL_VEC_H
#define FLOW_UTIL_VEC_H

#include <stddef.h>

#include "alloc.h"

#define FLOW__VEC(type)                                                        \
    struct {                                                                   \
        type *items;                                                           \
        size_t count;                                                          \
        size_t cap;                                                            \
    }

/* Grow to hold at least `n` items; sets `rc` (flow_err) to FLOW_ENOMEM on
 * failure, leaving the vector as it was. */
#define FLOW__VEC_RESERVE(v, n, rc)                                            \
    do {                                                                       \
        if ((n) > (v)->cap) {                                                  \
            size_t nc__ = (v)->cap ? (v)->cap * 2 : 8;                         \
            while (nc__ < (n))                                                 \
                nc__ *= 2;                                                     \
            void *p__ = flow__reallocarray((v)->items, nc__, sizeof(*(v)->items)); \
            if (!p__) {                                                        \
                (rc) = FLOW_ENOMEM;                                            \
                break;                                                         \
            }                                                                  \
            (v)->items = p__;                                                  \
            (v)->cap = nc__;                                                   \
        }                                                                      \
    } while (0)

/* Give back the unused capacity (a vector that will not grow again, sized
 * per task: doubling leaves up to half of it empty). Failing keeps it as is. */
#define FLOW__VEC_SHRINK(v)                                                    \
    do {                                                                       \
        if ((v)->count && (v)->count < (v)->cap) {                             \
            void *p__ = flow__reallocarray((v)->items, (v)->count, sizeof(*(v)->items)); \
            if (p__) {                                                         \
                (v)->items = p__;                                              \
                (v)->cap = (v)->count;                                         \
            }                                                                  \
        }                                                                      \
    } while (0)

#define FLOW__VEC_PUSH(v, item, rc)                                            \
    do {                                                                       \
        if ((v)->count == (v)->cap) {                                          \
            FLOW__VEC_RESERVE(v, (v)->count + 1, rc);                          \
            if ((v)->count == (v)->cap)                                        \
                break;                                                         \
        }                                                                      \
        (v)->items[(v)->count++] = (item);                                     \
    } while (0)

#define FLOW__VEC_FREE(v)                                                      \
    do {                                                                       \
        flow__free((v)->items);                                                \
        (v)->items = NULL;                                                     \
        (v)->count = (v)->cap = 0;                                             \
    } while (0)

#endif
