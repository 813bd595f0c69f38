/* remote_state.h -- a worker's copies of run states, by version
 * (docs/internals/distribution.md, "Keys"): a queued entry names the state
 * it was rendered with (`state_v`, a field of P:state:RUN); the worker reads
 * each version once, with pipelined HGETs, and keeps the one it read last
 * of the 16 runs it used last. One thread owns a cache (the worker's
 * reader); the states it hands out are shared, counted with C11 atomics
 * (jansson's own count is not safe to change from two threads at once:
 * it reads it plainly), and other threads may read and release them.
 */
#ifndef FLOW_EXEC_REMOTE_STATE_H
#define FLOW_EXEC_REMOTE_STATE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "exec/remote_wire.h"
#include "flow.h"

#define FLOW__RSTATE_SLOTS 16

/* One version of a run's state, shared by the cache and the jobs using it. */
struct flow__rstate {
    atomic_int refs;
    json_t *state;   /* an object, never changed, freed with the last ref */
    uint64_t seq;    /* its state file's version (exec/rundir.h) */
};
/* Release a reference (NULL: nothing); any thread. */
void flow__rstate_unref(struct flow__rstate *s);

struct flow__rstate_slot {
    char run[80];
    char v[FLOW__RW_STATE_V_MAX];
    struct flow__rstate *s; /* a reference; NULL: a free slot */
    uint64_t used;   /* when it was last handed out */
};

/* Zero-filled: empty. */
struct flow__rstate_cache {
    struct flow__rstate_slot slots[FLOW__RSTATE_SLOTS];
    uint64_t clock;  /* of `used` */
    uint64_t seq;    /* the last state file version handed out */
};

/* What one job needs, and what it gets. */
struct flow__rstate_need {
    const char *run;  /* borrowed */
    const char *v;    /* the state version (flow__rw_state_v_ok), borrowed */
    void *owner;      /* the caller's */
    struct flow__rstate *state; /* out: a new reference, or NULL */
    char *error;      /* out, without `state`: why (flow__free), or NULL when
                       * Redis could not be reached (or memory was short) */
};

/* Fill `needs` from the cache, reading each version it does not have once
 * (one round trip on `c`; NULL: not connected) from PREFIX:state:RUN. */
void flow__rstate_get(struct flow__rstate_cache *cache, redisContext *c, const char *prefix,
                      struct flow__rstate_need *needs, size_t n);

/* A state file version of its own (for a state that came in its entry). */
uint64_t flow__rstate_seq(struct flow__rstate_cache *cache);

/* Release the cache's references. */
void flow__rstate_cache_cleanup(struct flow__rstate_cache *cache);

#endif
