/* remote_state.h -- a worker's copies of run states, by version
 * (docs/internals/distribution.md, "Keys"): a queued entry names the state
 * it was rendered with (`state_v`, a field of P:state:RUN); the worker reads
 * each version once, with pipelined HGETs, and keeps the one it read last
 * of the 16 runs it used last. One thread owns a cache (the worker's
 * reader); the states it hands out are references to immutable JSON, which
 * other threads may read and release.
 */
#ifndef FLOW_EXEC_REMOTE_STATE_H
#define FLOW_EXEC_REMOTE_STATE_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "exec/remote_wire.h"
#include "flow.h"

#define FLOW__RSTATE_SLOTS 16

struct flow__rstate_slot {
    char run[80];
    char v[FLOW__RW_STATE_V_MAX];
    json_t *state;   /* NULL: a free slot */
    uint64_t seq;    /* its state file's version (exec/rundir.h) */
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
    json_t *state;    /* out: a new reference, or NULL */
    uint64_t seq;     /* out: the version of its state file, with `state` */
    char *error;      /* out, without `state`: why (flow__free), or NULL when
                       * Redis could not be reached (or memory was short) */
};

/* Fill `needs` from the cache, reading each version it does not have once
 * (one round trip on `c`; NULL: not connected) from PREFIX:state:RUN. */
void flow__rstate_get(struct flow__rstate_cache *cache, redisContext *c, const char *prefix,
                      struct flow__rstate_need *needs, size_t n);

/* A state file version of its own (for a state that came in its entry). */
uint64_t flow__rstate_seq(struct flow__rstate_cache *cache);

/* Release the cached states. */
void flow__rstate_cache_cleanup(struct flow__rstate_cache *cache);

#endif
