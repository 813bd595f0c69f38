/* cache.h -- cached outputs of tasks around their attempts
 * (docs/internals/prompts.md, "Cache"). An activation whose task has
 * `cache:` has its key rendered and looked up in the store before it is
 * queued (before the limits: a hit takes no slot); a hit completes it with
 * the entry's output and state writes, without running it, journaled as
 * any completion with `info: {cached: true, cached_at}`; a miss queues it.
 * An attempt that succeeds keeps its entry. The engine's cache thread
 * makes the store calls without the engine lock.
 *
 * Every function runs with the engine lock held, unless it says otherwise.
 */
#ifndef FLOW_CORE_CACHE_H
#define FLOW_CORE_CACHE_H

#include <stdbool.h>

#include "core/engine.h"

struct flow__cache;
struct directives;

/* Must `a` have its key rendered (and be looked up) before it is queued?
 * Tasks without `cache:` pay the first test only; a foreach task is cached
 * per element, never as a whole. */
static inline bool flow__cache_wanted(const struct act *a)
{
    const struct task_ext *x = act_task(a)->ext;
    if (!x || !x->cache)
        return false;
    if (a->dyn && (a->dyn->cache_key || a->dyn->parent))
        return !a->dyn->cache_key; /* rendered once per activation */
    return !x->foreach;
}

/* Render `a`'s key and look it up; `a` is held (ACT_QUEUED, and its run
 * counts it running, so that it does not end) until the answer: a hit
 * completes it, a miss queues it again with flow__engine_enqueue. A run
 * with no_cache is not looked up: `a` is queued at once. A key that
 * cannot be rendered fails the attempt. */
void flow__cache_lookup(struct flow_engine *e, struct act *a);
/* The attempt of `a` is about to succeed with `output` and state `writes`
 * (both borrowed) and directives `d` (may be NULL): the entry to keep (a
 * deep copy, the caller's), or NULL when nothing is kept -- its task has no
 * cache, the run replays, the completion came from the cache, or the
 * attempt asked for more than state writes (dynamic work, terminate,
 * cancel, pause), which an entry does not hold. */
json_t *flow__cache_entry(struct flow_run *r, struct act *a, json_t *output, json_t *writes,
                          const struct directives *d);
/* The attempt succeeded: keep `entry` (taken) for `a`'s key, in the cache
 * thread. The run counts the write running until it is done. */
void flow__cache_keep(struct flow_run *r, struct act *a, json_t *entry);
/* Stop the thread, close the engine's own cache (engine shutdown, without
 * the lock). */
void flow__cache_stop(struct flow_engine *e);

#endif
