/* run_int.h -- the inside of a run, shared by the files that implement it:
 * activation.c (records, activations, state), trigger.c (firing, skipping,
 * labels), attempt.c (one try: success, failure, retries, stop), directive.c
 * (dynamic work asked for by tasks), expand.c (groups, foreach, nested
 * flows), input.c (inputs, commands) and run.c (start, end, public API).
 * Every function here runs with the engine lock held.
 */
#ifndef FLOW_CORE_RUN_INT_H
#define FLOW_CORE_RUN_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/engine.h"

static inline const char *flow__task_name(const struct flow_run *r, uint32_t task)
{
    return r->flow->tasks.items[task]->name;
}

/* ---- activation.c -------------------------------------------------------- */

/* A new activation of `task`, counted against max_activations by the
 * caller. NULL when out of memory. */
struct act *flow__act_new(struct flow_run *r, uint32_t task);
/* Set the activation's error (taking `error`; NULL clears it). Out of
 * memory, the message is lost, never the failure. */
void flow__act_set_error(struct flow_run *r, struct act *a, char *error);
/* An activation reached a final status. */
void flow__act_final(struct flow_run *r, struct act *a);
/* [L] Whether a record made now is kept: not while replaying (the store has
 * it), not for a run with no store. Payloads are built only when it is. */
static inline bool flow__run_journaling(const struct flow_run *r)
{
    return !r->replaying && flow__journal_on(&r->journal);
}
/* Append a record naming `src` as the activation's single source. */
void flow__run_journal_src(struct flow_run *r, uint8_t type, const struct act *a, json_t *payload,
                           const struct act *src);
/* Writing the journal failed: the run stops. `message` NULL: ask the journal. */
void flow__run_journal_broke(struct flow_run *r, const char *message);
/* Apply `writes` (an object; borrowed) to the state, key by key. */
void flow__run_state_write(struct flow_run *r, struct act *a, json_t *writes);

/* ---- trigger.c ----------------------------------------------------------- */

/* Create and queue an activation of `task`. `input` (borrowed) is explicit,
 * or NULL to build it from `srcs` when asked. NULL when none was made (the
 * run stops, or max_activations was crossed and the run fails). */
struct act *flow__run_fire(struct flow_run *r, uint32_t task, json_t *input, struct act **srcs,
                           uint32_t nsrc);
/* The task is skipped this round: record it and tell its dependants. */
void flow__run_skip(struct flow_run *r, uint32_t task);
/* Task `task` finished with `value` (LEAF_TRUE: completed; LEAF_FALSE:
 * failed or skipped): tell every leaf it feeds. */
void flow__run_propagate(struct flow_run *r, uint32_t task, uint8_t value, struct act *src);
/* The run is quiet (nothing runs, waits or is queued): a task waiting only
 * for `optional` dependencies that can no longer run -- a branch a router
 * did not take -- runs now, with null for them ("it runs even if they were
 * skipped"). Whether any did. Replay calls it at the same point. */
bool flow__run_settle_optionals(struct flow_run *r);

/* ---- attempt.c ----------------------------------------------------------- */

struct directives;
/* The attempt succeeded with `output` and state `writes` (both taken; writes
 * may be NULL) and directives `d` (may be NULL; cleaned up). */
void flow__attempt_succeeded(struct flow_run *r, struct act *a, json_t *output, json_t *writes,
                             struct directives *d);
/* ... `ignored`: the error an `on_error: ignore` absorbed, or NULL. */
void flow__attempt_succeeded_ex(struct flow_run *r, struct act *a, json_t *output, json_t *writes,
                                struct directives *d, const char *ignored);
/* What a completion of `a` starts: its router's label, its dependants, the
 * task a fallback stands for, the dynamic `work` it asked for (may be
 * NULL). Not while the run stops: a retry does it then. */
void flow__attempt_settle(struct flow_run *r, struct act *a, json_t *work);
/* The attempt failed with `error` (taken); retried per policy. */
void flow__attempt_failed(struct flow_run *r, struct act *a, char *error);
/* ... retried only when `may_retry` (a foreach parent is not: its children
 * had their retries). */
void flow__attempt_failed_ex(struct flow_run *r, struct act *a, char *error, bool may_retry);
/* How a failed attempt asked to be retried (flow_ctx_fail_final,
 * flow_ctx_retry_after; an http or llm task's verdict). */
struct fail_how {
    bool final;      /* no retry, whatever is left */
    bool delay_set;  /* the next retry waits `delay` seconds, not the backoff */
    double delay;
};
void flow__attempt_failed_how(struct flow_run *r, struct act *a, char *error,
                              const struct fail_how *how);
/* An interrupted run's attempt ended: not recorded; pending again, to run
 * as the same attempt on resume. */
void flow__attempt_dropped(struct flow_run *r, struct act *a);
/* Stop what runs: commands get SIGTERM then SIGKILL, C bodies are asked to
 * stop and abandoned after the grace period, nested runs are cancelled. */
void flow__run_stop_running(struct flow_run *r, const char *why);

/* ---- directive.c --------------------------------------------------------- */

/* What a successful attempt asked for besides its output, checked. */
/* The longest Retry-After honoured as it is, unless the task's backoff
 * max_delay is longer (seconds). */
#define FLOW__RETRY_AFTER_MAX 3600.0

struct directives {
    json_t *ops;        /* state updates in order: [["set"|"incr"|"append"|"merge",
                         * KEY, VALUE], ...], or NULL; applied to the state as
                         * it is when the attempt completes (attempt.c) */
    char *cancel;       /* `cancel`: the error, or NULL */
    json_t *terminate;  /* `terminate`: the result, or NULL */
    bool checkpoint;
    char *pause;        /* `pause`: the reason, or NULL */
    json_t *work;       /* next_task / next_iteration / parallel / emit, in order */
    json_t *info;       /* facts about the attempt journaled with its completion
                         * (`info` of act_completed: the prompt version used,
                         * a model's token usage, `cached`), or NULL */
};

/* Parse `list` (an array of directive objects) into `out`: NULL, or a
 * message naming the bad one (flow__free it; `out` is then to be cleaned). */
char *flow__directives_parse(struct flow_run *r, json_t *list, struct directives *out);
void flow__directives_cleanup(struct directives *d);
/* Fold state updates `ops` (directives.ops) over `*writes` (created when
 * NULL) against the current state: `incr`, `append` and `merge` read the
 * value as of now, so parallel activations lose none of each other's.
 * NULL, or why an update cannot apply (flow__free it). */
char *flow__directives_apply_ops(struct flow_run *r, json_t *ops, json_t **writes);
/* Start the dynamic work a successful attempt asked for, in order. */
void flow__directives_start(struct flow_run *r, struct act *a, json_t *work);

/* ---- expand.c ------------------------------------------------------------ */

/* A branch of a parallel group finished. */
void flow__group_member_done(struct flow_run *r, struct act *a);
/* A child of a foreach parent finished. */
void flow__foreach_child_done(struct flow_run *r, struct act *child);
/* A foreach parent running again after a retry: start its elements that
 * run again and those never started (or complete it when none is left). */
void flow__foreach_continue(struct flow_run *r, struct act *parent);
/* A nested run ended: its parent activation completes or fails. */
void flow__subflow_done(struct flow_run *child);

/* ---- input.c ------------------------------------------------------------- */

/* Build the activation's input: the trigger's (explicit, or from its
 * sources), then the task's `input` template over it. */
flow_err flow__run_build_input(struct flow_run *r, struct act *a, flow_error *err);

#endif
