/* gate.h -- limits across runs in front of the engine's ready queues:
 * concurrency keys, rate limits, resources and the flow's run limit
 * (docs/internals/limits.md). An activation whose task (or run) has a
 * limit goes through the gate before it is queued; it leaves it holding
 * what it needs, and gives that back when its attempt ends.
 *
 * Every function runs with the engine lock held. The gate's thread talks
 * to the stores without it, one call at a time.
 */
#ifndef FLOW_CORE_GATE_H
#define FLOW_CORE_GATE_H

#include <stdbool.h>

#include "core/engine.h"

struct flow__gates;
struct act_gate;

/* Does `a` have to pass the gate before it is queued (it has a limit and
 * has not passed)? */
bool flow__gate_needed(const struct flow_run *r, const struct act *a, bool expander);
/* Has `a` passed the gate this round (it holds what its limits gave)? */
bool flow__gate_passed(const struct act *a);
/* Hold `a` until its limits let it go; then it is queued with
 * flow__engine_enqueue (and flow__gate_needed says false). An `expander`
 * (a foreach parent, a nested flow) only waits for its run's slot. */
void flow__gate_enter(struct flow_engine *e, struct act *a, bool expander);
/* An attempt of `a` started: it no longer counts as waiting to start. */
void flow__gate_started(struct flow_engine *e, struct act *a);
/* Give back what `a` holds (a slot, resources), if anything: its attempt
 * ended, or it left the ready queue without starting. */
void flow__gate_release(struct flow_engine *e, struct act *a);
/* Take the run's waiting activations out of the gate: cancelled
 * (`cancel`), or left pending (a pause). */
void flow__gate_drop_run(struct flow_engine *e, struct flow_run *r, bool cancel);
/* The run ended or paused: its run slot goes back, and the gate stops using
 * its store before returning. */
void flow__gate_forget_run(struct flow_engine *e, struct flow_run *r);
/* A --jobs slot was freed: rate limits that wait for one look again. */
void flow__gate_kick(struct flow_engine *e);
/* Activations waiting in the gate (flow_engine_get_stats). */
size_t flow__gate_waiting(const struct flow_engine *e);
/* Free an activation's gate state (the run is freed). */
void flow__gate_free(struct act_gate *ag);
/* Stop the thread and give everything back (engine shutdown, without the
 * lock). */
void flow__gate_stop(struct flow_engine *e);

/* The hot path of every task, limited or not, pays only these tests. */

/* Does `a` hold or wait for anything of the gate? */
static inline bool flow__gate_has(const struct act *a)
{
    return a->dyn && a->dyn->gate;
}

/* Might `a` have to pass the gate (flow__gate_needed says for sure)? */
static inline bool flow__gate_maybe(const struct flow_run *r, const struct act *a)
{
    return r->flow->run_limit || flow__gate_has(a) || act_task(a)->ext;
}

#endif
