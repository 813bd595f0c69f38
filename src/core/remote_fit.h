/* remote_fit.h -- remote activations that ask resources wait on the runner
 * until a live worker of their queue could ever start them
 * (docs/internals/distribution.md, "Resources"): core/remote.c's submitter
 * holds them here instead of queueing entries that no worker would take.
 * Every function runs with the engine lock held. */
#ifndef FLOW_CORE_REMOTE_FIT_H
#define FLOW_CORE_REMOTE_FIT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/engine.h"
#include "util/json.h"
#include "util/vec.h"

/* A held activation. It keeps ACT_QUEUED, as in a ready queue: a resume
 * does not queue it twice. */
struct flow__rfit_held {
    struct act *a;
    struct flow_run *r; /* a reference */
    char *why;          /* why it waits, or NULL: not checked yet */
    bool fits;          /* a worker could start it now: submitted next */
};

struct flow__rfit {
    FLOW__VEC(struct flow__rfit_held) held;
    int64_t check_at;   /* check them again then (flow__now_ns) */
    json_t *fleet;      /* the live workers as last read (flow__rw_workers_read) */
    int64_t fleet_at;   /* when (flow__now_ns) */
    FLOW__VEC(struct flow_run *) unrefs; /* to let go of without the lock */
};

/* Does `a` ask resources? */
bool flow__rfit_asks(const struct act *a);
/* Has the fleet, read less than a second ago, a worker that could start `a`? */
bool flow__rfit_fits_now(const struct flow__rfit *f, const struct act *a);
/* Hold `a`, popped from remote_q, until a worker could start it (checked
 * at once, then every second). False: out of memory (then it is not held). */
bool flow__rfit_hold(struct flow__rfit *f, struct act *a);
/* Is the fleet to be read again (none yet, or a second old)? */
bool flow__rfit_stale(const struct flow__rfit *f);
/* The live workers, just read (taken). */
void flow__rfit_set_fleet(struct flow__rfit *f, json_t *fleet);
/* Go over the held activations: those a worker of the fleet could start are
 * submitted next (flow__rfit_next), those of a run that stops are
 * cancelled, of a run that pauses left pending (its resume queues them),
 * the others wait on with why (said once in the log). The last fleet read
 * counts while Redis is away; with none read yet, they are submitted (and
 * fail as any remote task does when Redis was never reached). */
void flow__rfit_check(struct flow__rfit *f, struct flow_engine *e);
/* A held activation that a worker could start (no longer held), or NULL. */
struct act *flow__rfit_next(struct flow__rfit *f, struct flow_engine *e);
/* Is one of them waiting to be submitted (flow__rfit_next)? */
bool flow__rfit_ready(const struct flow__rfit *f);
/* Why `a` waits, or NULL (engine.h: flow__remote_waiting_for). */
const char *flow__rfit_waiting_for(const struct flow__rfit *f, const struct act *a);
/* Drop the run references given up, without the lock (a last reference
 * closes the run's journal, whose writer may take it): the lock is let go
 * and taken again when there are some. */
void flow__rfit_let_go(struct flow__rfit *f, struct flow_engine *e);
/* The engine goes: forget them all (they stay pending). */
void flow__rfit_cleanup(struct flow__rfit *f, struct flow_engine *e);

#endif
