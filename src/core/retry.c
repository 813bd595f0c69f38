/* retry.c -- flow_run_retry: a run that ended failed or cancelled runs again
 * from where it failed, in the same run id. Choosing the activations that
 * run again (the roots), the run_retried record, and applying it: one
 * function, live and in replay, so that both derive the same run.
 *
 * DESIGN (docs/internals/core.md, "Retry"): the roots go back to pending in
 * place (attempts keep counting); the tasks downstream of them that run
 * again have their triggers armed again from what is known now, and reuse
 * their failed or skipped activation when they fire (the task's slot); a
 * completed task downstream keeps its output, its leaves fed by what runs
 * again absorbing the new completions (`late`). The record is durable before
 * anything runs; a crash afterwards is an ordinary stopped run. Everything
 * marked [L] runs with the engine lock held. */
#include "util/compat.h"

#include <stdio.h>
#include <string.h>

#include "core/run_int.h"
#include "journal/durable.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

/* What a retry works out about each task of the run. */
enum {
    T_IN = 1,       /* runs again: its outcome is coming */
    T_REACHED = 2,  /* ... because a task it waits on runs again */
    T_ALL = 4,      /* downstream of a completed task that runs again: all of it does */
    T_ROOT = 8,     /* a root's task: the root runs in place, its trigger stays */
};

/* What a retry works out about each activation. */
enum {
    A_STOOD = 1,    /* a fallback stood in for its failure ... */
    A_ABSORBED = 2, /* ... and completed */
    A_ROOT = 4,     /* runs again in place */
    A_CANDIDATE = 8 /* choosing: would be a root */
};

struct retry {
    struct flow_run *r;
    uint32_t *last;   /* per task: its last activation not a foreach element (id; 0: none) */
    uint8_t *task;    /* per task: T_* */
    uint8_t *act;     /* per activation (id - 1): A_* */
    uint32_t *queue;  /* tasks to visit */
    size_t qlen;
};

static bool is_element(const struct act *a)
{
    return a->dyn && a->dyn->parent;
}

static bool is_foreach(const struct act *a)
{
    const struct flow_task *t = act_task(a);
    return t->kind != TASK_SUBFLOW && t->ext && t->ext->foreach && !is_element(a);
}

static struct act *fallback_for(const struct act *a)
{
    return a->flags & ACT_IS_FALLBACK ? act_stands_for(a) : NULL;
}

static void retry_cleanup(struct retry *rt)
{
    flow__free(rt->last);
    flow__free(rt->task);
    flow__free(rt->act);
    flow__free(rt->queue);
}

/* [L] The tables, filled from the run as it is now. */
static flow_err retry_init(struct retry *rt, struct flow_run *r)
{
    size_t ntasks = r->flow->tasks.count ? r->flow->tasks.count : 1;
    memset(rt, 0, sizeof(*rt));
    rt->r = r;
    rt->last = flow__calloc(ntasks, sizeof(*rt->last));
    rt->task = flow__calloc(ntasks, 1);
    rt->queue = flow__calloc(ntasks, sizeof(*rt->queue));
    rt->act = flow__calloc(r->act_count ? r->act_count : 1, 1);
    if (!rt->last || !rt->task || !rt->queue || !rt->act) {
        retry_cleanup(rt);
        return FLOW_ENOMEM;
    }
    for (size_t i = 0; i < r->act_count; i++) {
        struct act *a = flow__act_at(r, i);
        if (!is_element(a))
            rt->last[a->task] = a->id;
        struct act *orig = fallback_for(a);
        if (orig) {
            rt->act[orig->id - 1] |= A_STOOD;
            if (a->status == FLOW_ACT_COMPLETED)
                rt->act[orig->id - 1] |= A_ABSORBED;
        }
    }
    return FLOW_OK;
}

static struct act *last_of(const struct retry *rt, uint32_t task)
{
    return flow__act_by_id(rt->r, rt->last[task]);
}

/* What task `x` gave this round, as a trigger's leaf sees it. */
static uint8_t outcome(const struct retry *rt, uint32_t x)
{
    struct flow_run *r = rt->r;
    struct act *a = last_of(rt, x);
    if (!a)
        return LEAF_UNKNOWN;
    struct act *latest = flow__act_by_id(r, r->trt[x].latest);
    if (latest && (latest == a || fallback_for(latest) == a))
        return LEAF_TRUE;
    switch (a->status) {
    case FLOW_ACT_COMPLETED:
        return LEAF_TRUE;
    case FLOW_ACT_FAILED:
    case FLOW_ACT_SKIPPED:
    case FLOW_ACT_CANCELLED:
        return LEAF_FALSE;
    default:
        return LEAF_UNKNOWN;
    }
}

static void seed(struct retry *rt, uint32_t task, uint8_t how)
{
    if (!(rt->task[task] & T_IN))
        rt->queue[rt->qlen++] = task;
    rt->task[task] |= (uint8_t)(T_IN | how);
}

/* Visit what waits on the tasks queued from `from` on: a dependant runs
 * again unless it completed (and is not after a completed root). */
static void spread(struct retry *rt, size_t from)
{
    const struct flow *f = rt->r->flow;
    for (size_t h = from; h < rt->qlen; h++) {
        uint32_t x = rt->queue[h];
        bool all = rt->task[x] & T_ALL;
        for (uint32_t k = f->dependant_off[x]; k < f->dependant_off[x + 1]; k++) {
            uint32_t u = f->leaves[f->dependant_leaf[k]].owner;
            rt->task[u] |= T_REACHED;
            if (rt->task[u] & T_IN)
                continue;
            struct act *l = last_of(rt, u);
            if (all || !l || l->status != FLOW_ACT_COMPLETED)
                seed(rt, u, all ? T_ALL : 0);
        }
    }
}

/* The tasks that run again: those of `roots` and everything downstream
 * that does (docs/internals/core.md, "Downstream"). A root that completed
 * runs its whole downstream again; those are visited first. */
static void closure(struct retry *rt, struct act *const *roots, size_t n,
                    struct group *const *groups, size_t ngroups)
{
    struct flow_run *r = rt->r;
    memset(rt->task, 0, r->flow->tasks.count);
    rt->qlen = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t from = rt->qlen;
        for (size_t i = 0; i < n; i++) {
            struct act *a = roots[i];
            bool done = a->status == FLOW_ACT_COMPLETED;
            if (done != (pass == 0))
                continue;
            seed(rt, a->task, (uint8_t)(T_ROOT | (done ? T_ALL : 0)));
            if (fallback_for(a))
                seed(rt, fallback_for(a)->task, done ? T_ALL : 0);
        }
        for (size_t i = 0; pass == 1 && i < ngroups; i++)
            seed(rt, groups[i]->then_task, 0);
        spread(rt, from);
    }
}

/* [L] The run has ended: what had not finished is cancelled. Only a run
 * cancelled by another process while nobody ran it (flow_store_request)
 * ends with activations left, journaled as they were; a retry sees them
 * as that end left them, live and in replay alike. */
static void settle_end(struct flow_run *r)
{
    for (size_t i = 0; i < r->act_count; i++) {
        struct act *a = flow__act_at(r, i);
        if (a->status != FLOW_ACT_PENDING && a->status != FLOW_ACT_RUNNING)
            continue;
        a->status = FLOW_ACT_CANCELLED;
        a->flags &= (uint8_t)~(ACT_QUEUED | ACT_WAITING | ACT_PARKED);
        if (!act_error(a))
            flow__act_set_error(r, a, flow__strdup("the run ended before it finished"));
        if (r->unfinished > 0)
            r->unfinished--;
    }
    r->running = r->parked = r->subflows_running = 0;
}

/* ---- choosing the roots (a live retry) ----------------------------------- */

/* [L] Activations of task `t` a named retry runs again: its failed and
 * cancelled ones, else its last completed one. */
static size_t named_candidates(struct retry *rt, uint32_t t)
{
    struct flow_run *r = rt->r;
    size_t found = 0;
    struct act *done = NULL;
    for (size_t i = 0; i < r->act_count; i++) {
        struct act *a = flow__act_at(r, i);
        if (a->task != t || is_element(a))
            continue;
        if (a->status == FLOW_ACT_FAILED || a->status == FLOW_ACT_CANCELLED) {
            rt->act[i] |= A_CANDIDATE;
            found++;
        } else if (a->status == FLOW_ACT_COMPLETED) {
            done = a;
        }
    }
    if (!found && done) {
        rt->act[done->id - 1] |= A_CANDIDATE;
        found++;
    }
    return found;
}

/* A task that `t` waits on and that did not complete: why it was skipped. */
static const char *skip_cause(const struct retry *rt, const struct flow_task *t)
{
    const struct flow *f = rt->r->flow;
    for (uint32_t i = 0; i < t->leaf_count; i++) {
        const struct flow_leaf *l = &f->leaves[t->leaf_first + i];
        if (l->kind != LEAF_WHEN_LABEL && l->kind != LEAF_OPTIONAL &&
            outcome(rt, l->source) == LEAF_FALSE)
            return f->tasks.items[l->source]->name;
    }
    return NULL;
}

/* [L] The roots of a retry of `tasks` (NULL: every failure), in id order,
 * in `out` (caller frees). 0 with FLOW_EINVAL or FLOW_ESTATE in `err` when
 * there is nothing to retry. */
static flow_err choose(struct retry *rt, const char *const *tasks, struct act ***out,
                       size_t *nout, flow_error *err)
{
    struct flow_run *r = rt->r;
    const struct flow *f = r->flow;
    for (size_t i = 0; !tasks && i < r->act_count; i++) {
        struct act *a = flow__act_at(r, i);
        if (is_element(a) || (a->status != FLOW_ACT_FAILED && a->status != FLOW_ACT_CANCELLED))
            continue;
        if (a->status == FLOW_ACT_FAILED && rt->act[i] & A_ABSORBED)
            continue; /* a fallback stood in for it and completed */
        rt->act[i] |= A_CANDIDATE;
    }
    for (size_t k = 0; tasks && tasks[k]; k++) {
        const flow_task *t = flow_find_task((flow *)f, tasks[k]);
        if (!named_candidates(rt, t->index) && !last_of(rt, t->index))
            return flow__error(err, FLOW_EINVAL,
                               "task '%s' never ran in run '%s': nothing to retry (it runs when "
                               "what it waits on completes)",
                               t->name, r->id);
    }
    /* A fallback that failed for a failure that runs again is not run on
     * its own: it comes again if the failure does. */
    size_t n = 0;
    for (size_t i = 0; i < r->act_count; i++) {
        struct act *orig = fallback_for(flow__act_at(r, i));
        if (rt->act[i] & A_CANDIDATE && orig && rt->act[orig->id - 1] & A_CANDIDATE)
            rt->act[i] &= (uint8_t)~A_CANDIDATE;
        n += rt->act[i] & A_CANDIDATE ? 1 : 0;
    }
    struct act **c = flow__calloc(n ? n : 1, sizeof(*c));
    if (!c)
        return flow__error(err, FLOW_ENOMEM, "out of memory retrying run '%s'", r->id);
    n = 0;
    for (size_t i = 0; i < r->act_count; i++)
        if (rt->act[i] & A_CANDIDATE)
            c[n++] = flow__act_at(r, i);
    /* One that waits on another runs when its trigger fires again. */
    closure(rt, c, n, NULL, 0);
    size_t roots = 0;
    for (size_t i = 0; i < n; i++)
        if ((rt->task[c[i]->task] & (T_REACHED | T_IN)) != (T_REACHED | T_IN))
            c[roots++] = c[i];
    closure(rt, c, roots, NULL, 0);
    for (size_t k = 0; tasks && tasks[k]; k++) {
        const flow_task *t = flow_find_task((flow *)f, tasks[k]);
        if (rt->task[t->index] & T_IN)
            continue;
        const char *cause = skip_cause(rt, t);
        flow__free(c);
        if (cause)
            return flow__error(err, FLOW_EINVAL,
                               "task '%s' of run '%s' was skipped because '%s' did not complete: "
                               "retry '%s' too (or name no task to retry every failure)",
                               t->name, r->id, cause, cause);
        return flow__error(err, FLOW_EINVAL, "task '%s' of run '%s' has nothing to retry",
                           t->name, r->id);
    }
    if (!roots) {
        flow__free(c);
        return flow__error(err, FLOW_ESTATE,
                           "run '%s' has no failed or cancelled task to run again: nothing to "
                           "retry (it ended: %s)",
                           r->id, r->error ? r->error : flow_run_status_name(r->status));
    }
    *out = c;
    *nout = roots;
    return FLOW_OK;
}

/* ---- applying a retry ---------------------------------------------------- */

/* [L] Arm task `u`'s trigger again: a leaf fed by what runs again waits for
 * it; another gets its source's outcome now; a label keeps the value it had
 * when the trigger last resolved. */
static void arm(struct retry *rt, uint32_t u)
{
    struct flow_run *r = rt->r;
    const struct flow *f = r->flow;
    const struct flow_task *t = f->tasks.items[u];
    struct task_rt *trt = &r->trt[u];
    uint8_t *ls = &r->leaf_state[t->leaf_first];
    struct act *l = last_of(rt, u);
    const uint8_t *kept = l && l->dyn ? l->dyn->leaves : NULL;
    trt->satisfied = trt->resolved = trt->late = 0;
    for (uint32_t i = 0; i < t->leaf_count; i++) {
        const struct flow_leaf *leaf = &f->leaves[t->leaf_first + i];
        uint8_t v;
        if (leaf->kind == LEAF_WHEN_LABEL)
            v = kept && kept[i] == LEAF_TRUE ? LEAF_TRUE : LEAF_UNKNOWN;
        else if (rt->task[leaf->source] & T_IN)
            v = LEAF_UNKNOWN;
        else
            v = outcome(rt, leaf->source);
        if (leaf->kind == LEAF_OPTIONAL && v == LEAF_FALSE)
            v = LEAF_TRUE; /* waited for, whatever the outcome */
        ls[i] = v;
        if (t->trig == TRIG_AND && v != LEAF_UNKNOWN) {
            trt->resolved++;
            trt->satisfied += v == LEAF_TRUE;
        }
    }
}

/* [L] A completed task that stays: what runs again before it would fire
 * it a second time, so its leaves fed by that absorb the completion. */
static void keep(struct retry *rt)
{
    struct flow_run *r = rt->r;
    const struct flow *f = r->flow;
    for (size_t h = 0; h < rt->qlen; h++) {
        uint32_t x = rt->queue[h];
        for (uint32_t k = f->dependant_off[x]; k < f->dependant_off[x + 1]; k++) {
            uint32_t li = f->dependant_leaf[k];
            uint32_t u = f->leaves[li].owner;
            if (rt->task[u] & T_IN || r->leaf_state[li] != LEAF_UNKNOWN)
                continue;
            r->leaf_state[li] = LEAF_LATE;
            r->trt[u].late++;
        }
    }
}

/* [L] An activation runs again: its error, its waits and its questions go. */
static void clear(struct flow_run *r, struct act *a)
{
    flow__act_set_error(r, a, NULL);
    if (a->flags & ACT_PARKED && r->parked > 0)
        r->parked--;
    a->flags &= (uint8_t)~(ACT_WAITING | ACT_QUEUED | ACT_PARKED);
    a->ended = 0;
    struct act_dyn *dy = a->dyn; /* made by prepare() */
    dy->retried++;
    dy->streamed = 0;
    dy->waits = 0;
    dy->child = NULL;
    dy->unsettled = false;
    json_decref(dy->work);
    dy->work = NULL;
    flow__free(dy->cache_key); /* looked up again: its input may be new */
    dy->cache_key = NULL;
    flow__feedback_retire(r, a);
}

struct act *flow__retry_take_slot(struct flow_run *r, uint32_t task)
{
    struct act *a = flow__act_by_id(r, r->retry_slots[task]);
    if (!a)
        return NULL;
    r->retry_slots[task] = 0;
    json_decref(a->input);
    json_decref(a->output);
    a->input = a->output = NULL;
    a->nsrc = 0;
    a->src.one = NULL;
    a->started = 0;
    if (a->dyn) {
        clear(r, a);
        a->dyn->stands_for = NULL;
        a->dyn->leaves = NULL;
        a->dyn->group = NULL;
        a->dyn->branch_done = false;
        flow__free(a->dyn->stderr_tail);
        a->dyn->stderr_tail = NULL;
        json_decref(a->dyn->info);
        a->dyn->info = NULL;
        a->dyn->exit_status = -1;
    }
    a->flags = 0;
    a->status = FLOW_ACT_PENDING;
    r->trt[task].last = a->id;
    return a;
}

/* [L] A foreach parent that had expanded: the elements that failed or were
 * cancelled run again before those it never started. Allocates only. */
static flow_err prepare_foreach(struct flow_run *r, struct act *p)
{
    struct foreach_state *fe = p->dyn->fe;
    size_t n = 0;
    for (size_t i = fe->first_child ? fe->first_child - 1 : r->act_count; i < r->act_count; i++) {
        struct act *c = flow__act_at(r, i);
        if (c->dyn && c->dyn->parent == p &&
            (c->status == FLOW_ACT_FAILED || c->status == FLOW_ACT_CANCELLED))
            n++;
    }
    fe->redo = n ? flow__arena_alloc(&r->act_arena, n * sizeof(*fe->redo)) : NULL;
    fe->redo_count = fe->redo_next = 0;
    return n && !fe->redo ? FLOW_ENOMEM : FLOW_OK;
}

static bool expanded(const struct act *a)
{
    return a->status != FLOW_ACT_COMPLETED && a->dyn && a->dyn->fe && a->dyn->fe->items;
}

/* [L] ... and its counts, as if those elements had not run yet. */
static void again_foreach(struct flow_run *r, struct act *p)
{
    struct foreach_state *fe = p->dyn->fe;
    fe->finished = fe->failed = fe->running = 0;
    flow__free(fe->first_error);
    fe->first_error = NULL;
    for (size_t i = fe->first_child ? fe->first_child - 1 : r->act_count; i < r->act_count; i++) {
        struct act *c = flow__act_at(r, i);
        if (!c->dyn || c->dyn->parent != p)
            continue;
        if (c->status == FLOW_ACT_FAILED || c->status == FLOW_ACT_CANCELLED) {
            clear(r, c); /* pending once its turn comes (expand.c) */
            fe->redo[fe->redo_count++] = c;
        } else if (c->status == FLOW_ACT_COMPLETED || c->status == FLOW_ACT_SKIPPED) {
            fe->finished++;
        }
    }
}

flow_err flow__run_retry_apply(struct flow_run *r, const uint32_t *ids, size_t n, char **why)
{
    struct retry rt;
    flow_err rc = FLOW_OK;
    *why = NULL;
    struct act **roots = flow__calloc(n ? n : 1, sizeof(*roots));
    struct group **groups = flow__calloc(n ? n : 1, sizeof(*groups));
    size_t ngroups = 0;
    if (!roots || !groups || retry_init(&rt, r) != FLOW_OK) {
        flow__free(roots);
        flow__free(groups);
        return FLOW_ENOMEM;
    }
    /* The end as the roots were chosen at (a failure from here on discards
     * the run, live or in replay); then check and allocate everything
     * before changing anything else: a retry applies whole. */
    settle_end(r);
    for (size_t i = 0; i < n && !rc; i++) {
        struct act *a = flow__act_by_id(r, ids[i]);
        if (!a || is_element(a) || rt.act[a->id - 1] & A_ROOT ||
            a->status == FLOW_ACT_SKIPPED) {
            *why = a ? flow__asprintf("activation %u cannot run again: it is %s", a->id,
                                      is_element(a) ? "a foreach element"
                                                    : flow_act_status_name(a->status))
                     : flow__asprintf("the retry names activation %u, which replay did not "
                                      "create",
                                      ids[i]);
            rc = FLOW_ESTATE;
            break;
        }
        roots[i] = a;
        rt.act[a->id - 1] |= A_ROOT;
        if (!flow__act_dyn(r, a) || (is_foreach(a) && expanded(a) && prepare_foreach(r, a)))
            rc = FLOW_ENOMEM;
        if (!rc && a->dyn->group && a->dyn->branch_done) {
            size_t g = 0;
            while (g < ngroups && groups[g] != a->dyn->group)
                g++;
            groups[g] = a->dyn->group;
            ngroups += g == ngroups;
        }
    }
    for (size_t i = 0; !rc && i < r->act_count; i++) { /* elements that run again */
        struct act *c = flow__act_at(r, i);
        if (is_element(c) && rt.act[c->dyn->parent->id - 1] & A_ROOT &&
            (c->status == FLOW_ACT_FAILED || c->status == FLOW_ACT_CANCELLED) &&
            !flow__act_dyn(r, c))
            rc = FLOW_ENOMEM;
    }
    if (!rc && !r->retry_slots &&
        !(r->retry_slots = flow__calloc(r->flow->tasks.count ? r->flow->tasks.count : 1,
                                        sizeof(*r->retry_slots))))
        rc = FLOW_ENOMEM;
    if (rc)
        goto out;
    memset(r->retry_slots, 0, r->flow->tasks.count * sizeof(*r->retry_slots));

    /* The run is running again, as it was before it failed. */
    r->status = FLOW_RUN_RUNNING;
    r->stopping = r->pausing = r->interrupting = false;
    r->had_failure = false;
    r->ended = r->end_persisted = false;
    flow__free(r->error);
    flow__free(r->pause_reason);
    r->error = r->pause_reason = NULL;
    json_decref(r->result);
    json_decref(r->terminate_result);
    r->result = r->terminate_result = NULL;

    /* A parallel group counts its retried branches as unfinished again. */
    for (size_t i = 0; i < n; i++) {
        if (roots[i]->dyn->group && roots[i]->dyn->branch_done) {
            roots[i]->dyn->branch_done = false;
            roots[i]->dyn->group->finished--;
        }
    }
    for (size_t g = 0; g < ngroups; g++) {
        groups[g]->failed = false;
        for (size_t i = 0; i < r->act_count; i++) {
            struct act *b = flow__act_at(r, i);
            if (b->dyn && b->dyn->group == groups[g] && b->dyn->branch_done &&
                b->status != FLOW_ACT_COMPLETED)
                groups[g]->failed = true;
        }
    }

    /* Downstream: triggers armed again, slots, completions absorbed. */
    closure(&rt, roots, n, groups, ngroups);
    for (size_t h = 0; h < rt.qlen; h++) {
        uint32_t u = rt.queue[h];
        struct act *l = last_of(&rt, u);
        if (!l || rt.act[l->id - 1] & A_ROOT)
            continue;
        if (rt.task[u] & T_REACHED && !(rt.task[u] & T_ROOT))
            arm(&rt, u);
        if (l->status == FLOW_ACT_FAILED || l->status == FLOW_ACT_CANCELLED ||
            l->status == FLOW_ACT_SKIPPED)
            r->retry_slots[u] = l->id; /* fires (or is skipped) as this one */
    }
    for (size_t i = 0; i < r->act_count; i++) {
        /* A fallback that failed comes again as itself if its failure does. */
        struct act *fb = flow__act_at(r, i);
        struct act *orig = fallback_for(fb);
        if (orig && rt.act[orig->id - 1] & A_ROOT && !(rt.act[i] & A_ROOT) &&
            fb->status != FLOW_ACT_COMPLETED && rt.last[fb->task] == fb->id)
            r->retry_slots[fb->task] = fb->id;
    }
    keep(&rt);

    /* The roots, in place. */
    for (size_t i = 0; i < n; i++) {
        struct act *a = roots[i];
        clear(r, a);
        json_decref(a->output);
        a->output = NULL;
        r->unfinished++;
        if (is_foreach(a) && expanded(a)) {
            again_foreach(r, a);
            a->status = FLOW_ACT_RUNNING; /* its elements run (below) */
        } else {
            a->status = FLOW_ACT_PENDING;
        }
    }

    /* A failure the retry leaves fails the run again, as it did. */
    for (size_t i = 0; i < r->act_count && !r->had_failure; i++) {
        struct act *a = flow__act_at(r, i);
        struct act *orig = fallback_for(a);
        if (is_element(a) || (a->status != FLOW_ACT_FAILED && a->status != FLOW_ACT_CANCELLED) ||
            rt.act[i] & A_ABSORBED || r->retry_slots[a->task] == a->id ||
            (orig && rt.act[orig->id - 1] & A_ROOT))
            continue;
        r->had_failure = true;
        r->error = flow__asprintf("task '%s' %s: %s", act_task(a)->name,
                                  a->status == FLOW_ACT_FAILED ? "failed" : "was cancelled",
                                  act_error_text(a));
    }

    /* What the first run left undone: foreach elements, and what the
     * completions that came in as it stopped were to start. */
    for (size_t i = 0; i < n; i++)
        if (roots[i]->status == FLOW_ACT_RUNNING)
            flow__foreach_continue(r, roots[i]);
    for (size_t i = 0; i < r->act_count && !r->stopping; i++) {
        struct act *a = flow__act_at(r, i);
        if (!a->dyn || !a->dyn->unsettled)
            continue;
        json_t *work = a->dyn->work;
        a->dyn->unsettled = false;
        a->dyn->work = NULL;
        flow__attempt_settle(r, a, work);
        json_decref(work);
    }
out:
    retry_cleanup(&rt);
    flow__free(roots);
    flow__free(groups);
    return rc;
}

/* ---- flow_run_retry ------------------------------------------------------ */

static flow_err any_record(void *udata, uint64_t seq, const struct flow__jrec *rec)
{
    (void)seq;
    (void)rec;
    *(bool *)udata = true;
    return FLOW_ECANCELLED; /* one is enough */
}

/* Has run `id` more than `count` records? */
static bool grew(struct flow_store *st, const char *id, size_t count)
{
    bool more = false;
    FLOW__WITH_STORE(st, (void)flow__store_read(st->backend, id, count, any_record, &more, NULL));
    return more;
}

/* Refuse a run that has not ended failed or cancelled, from its journal. */
static flow_err check_ended(const struct flow__stored *s, const char *id, flow_error *err)
{
    if (s->ended_at < s->count) {
        const char *status =
            json_string_value(json_object_get(s->recs[s->ended_at].payload, "status"));
        if (status && !strcmp(status, "completed"))
            return flow__error(err, FLOW_ESTATE, "run '%s' completed: nothing to retry", id);
        return FLOW_OK;
    }
    for (size_t i = s->count; i-- > 0;) {
        uint8_t type = s->recs[i].type;
        if (type == JREC_PAUSED)
            return flow__error(err, FLOW_ESTATE,
                               "run '%s' is paused, not ended: continue it with flow resume %s",
                               id, id);
        if (type == JREC_RESUMED || type == JREC_RUN_RETRIED || type == JREC_RUN_CREATED)
            break;
    }
    return flow__error(err, FLOW_ESTATE,
                       "run '%s' stopped before it ended (its runner died): continue it with "
                       "flow resume %s",
                       id, id);
}

/* The record: the roots, their tasks for readers, who asked. */
static json_t *retried_payload(struct flow_run *r, struct act **roots, size_t n, const char *by)
{
    json_t *ids = json_array();
    json_t *names = json_array();
    json_t *p = json_pack("{s:o,s:o}", "tasks", names, "activations", ids);
    for (size_t i = 0; p && i < n; i++) {
        const char *name = flow__task_name(r, roots[i]->task);
        bool seen = false;
        for (size_t k = 0; k < json_array_size(names); k++)
            seen |= !strcmp(json_string_value(json_array_get(names, k)), name);
        if ((!seen && json_array_append_new(names, json_string(name))) ||
            json_array_append_new(ids, json_integer((json_int_t)roots[i]->id))) {
            json_decref(p);
            p = NULL;
        }
    }
    if (p && by && json_object_set_new(p, "by", json_string(by))) {
        json_decref(p);
        p = NULL;
    }
    return p;
}

flow_run *flow_run_retry(flow_engine *e, flow *f, const flow_run_options *opts,
                         const char *const *tasks, flow_error *err)
{
    if (!e || !f || !opts || !opts->store || !opts->run_id)
        return flow__error(err, FLOW_EINVAL, "flow_run_retry needs an engine, a flow, a store "
                                             "and a run id"),
               NULL;
    struct flow_store *st = opts->store;
    const char *id = opts->run_id;
    struct flow__stored s;
    struct flow_run *r = NULL;
    struct act **roots = NULL;
    size_t n = 0;
    if (flow__stored_open(e, f, opts, "retry", &s, err) != FLOW_OK)
        goto out;
    for (size_t k = 0; tasks && tasks[k]; k++) {
        if (!flow_find_task(f, tasks[k])) {
            flow__error(err, FLOW_EINVAL, "unknown task '%s' to retry: the flow of run '%s' (%s) "
                                          "has no such task",
                        tasks[k], id, f->name);
            goto out;
        }
    }
    if (flow__stored_records(f, st, id, &s, err) != FLOW_OK)
        goto out;
    r = flow__stored_run(e, f, opts, &s, id, true, err);
    if (!r) {
        if (err && err->code == FLOW_EBUSY) {
            char busy[sizeof(err->message)];
            snprintf(busy, sizeof(busy), "%s", err->message);
            flow__error(err, FLOW_EBUSY, "run '%s' has not ended: %s", id, busy);
        }
        goto out;
    }
    /* Read before the lease was ours: another process may have written
     * since (a retry or a resume that ended meanwhile). */
    if (grew(st, id, s.count) && flow__stored_records(f, st, id, &s, err) != FLOW_OK)
        goto out_destroy;
    if (!s.count || s.recs[0].type != JREC_RUN_CREATED) {
        check_ended(&s, id, err);
        goto out_destroy;
    }
    if (check_ended(&s, id, err) != FLOW_OK)
        goto out_destroy;

    pthread_mutex_lock(&e->lock);
    flow__engine_tick(e);
    struct retry rt;
    if (flow__stored_replay(r, &s, err) != FLOW_OK)
        goto out_discard;
    settle_end(r);
    if (retry_init(&rt, r) != FLOW_OK) {
        flow__error(err, FLOW_ENOMEM, "out of memory retrying run '%s'", id);
        goto out_discard;
    }
    flow_err rc = choose(&rt, tasks, &roots, &n, err);
    retry_cleanup(&rt);
    if (rc != FLOW_OK)
        goto out_discard;

    /* Durable before anything runs again. */
    flow__run_journal(r, JREC_RUN_RETRIED, NULL, retried_payload(r, roots, n, opts->by));
    flow__journal_commit(&r->journal);
    pthread_mutex_unlock(&e->lock);
    if (flow__journal_wait(&r->journal, err) != FLOW_OK) {
        pthread_mutex_lock(&e->lock);
        goto out_discard;
    }
    flow_error serr;
    flow__error_clear(&serr);
    FLOW__WITH_STORE(st, rc = flow__store_run_set_status(st->backend, id, FLOW_RUN_RUNNING, 0,
                                                         &serr));
    if (rc != FLOW_OK) /* the journal says it runs: a resume would set it */
        flow__log(FLOW_LOG_WARN, "run '%s' is retried, but its status could not be set: %s", id,
                  serr.message);

    pthread_mutex_lock(&e->lock);
    flow__engine_tick(e);
    uint32_t *ids = flow__calloc(n, sizeof(*ids));
    char *why = NULL;
    for (size_t i = 0; ids && i < n; i++)
        ids[i] = roots[i]->id;
    rc = ids ? flow__run_retry_apply(r, ids, n, &why) : FLOW_ENOMEM;
    flow__free(ids);
    if (rc != FLOW_OK) {
        /* Durable, not applied (out of memory before it changed anything):
         * nothing more is written, as if the process had died here, and a
         * resume applies it. */
        flow__error(err, rc, "cannot retry run '%s': %s; the retry is recorded: continue it "
                             "with flow resume %s",
                    id, why ? why : "out of memory", id);
        flow__free(why);
        goto out_discard;
    }
    flow__run_go_on(r);
    pthread_mutex_unlock(&e->lock);
    flow__journal_durable_ready(&r->journal);
    goto out;

out_discard:
    flow__run_discard(r);
    r = NULL;
    goto out;
out_destroy:
    flow__run_destroy(r);
    r = NULL;
out:
    flow__free(roots);
    flow__stored_cleanup(&s);
    return r;
}
