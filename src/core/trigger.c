/* trigger.c -- when tasks run (docs/concepts.md, Triggers): leaves
 * of triggers learning outcomes, three-valued evaluation, firing and
 * re-arming, skips that propagate, labels and connections. The design is
 * docs/internals/core.md, "Triggers". Everything here runs with the engine
 * lock held. */
#include "util/compat.h"

#include <stdio.h>
#include <string.h>

#include "core/run_int.h"
#include "util/alloc.h"
#include "util/log.h"

/* ---- triggers ----------------------------------------------------------- */

/* [L] flow__run_fire; `owned`: `srcs` comes from the run's activation arena
 * and the activation takes it, so that a join's sources are not copied.
 * Source arrays live as long as the run, like the activations: the arena
 * spares each the malloc header (a layered graph has one per task). */
static struct act *fire(struct flow_run *r, uint32_t task, json_t *input, struct act **srcs,
                        uint32_t nsrc, bool owned)
{
    struct act *a = NULL;
    if (r->stopping)
        goto out;
    const struct flow_task *t = r->flow->tasks.items[task];
    struct task_rt *rt = &r->trt[task];
    /* After a retry, the activation that failed or was skipped runs again
     * rather than a new one (retry.c). */
    a = r->retry_slots ? flow__retry_take_slot(r, task) : NULL;
    if (!a && rt->activations >= (uint32_t)t->policy->max_activations) {
        char why[512];
        snprintf(why, sizeof(why),
                 "task '%s' reached max_activations (%d): a loop that does not end? "
                 "(raise 'max_activations' if it is meant to run more)",
                 t->name, t->policy->max_activations);
        flow__run_stop(r, FLOW_RUN_FAILED, why);
        goto out;
    }
    if (!a) {
        a = flow__act_new(r, task);
        if (!a) {
            flow__run_stop(r, FLOW_RUN_FAILED,
                           r->act_count >= UINT32_MAX - 1
                               ? "the run reached the limit of 4,294,967,294 activations"
                               : "out of memory creating an activation");
            goto out;
        }
        rt->activations++;
    }
    if (input) {
        a->input = json_incref(input);
    } else if (nsrc == 1) {
        a->src.one = srcs[0];
        a->nsrc = 1;
    } else if (nsrc > 1) {
        a->src.many = owned ? srcs
                            : flow__arena_alloc_aligned(&r->act_arena, nsrc * sizeof(*srcs),
                                                        _Alignof(struct act *));
        if (!a->src.many) {
            flow__run_stop(r, FLOW_RUN_FAILED, "out of memory creating an activation");
            a->status = FLOW_ACT_CANCELLED;
            a = NULL;
            goto out;
        }
        if (!owned)
            memcpy(a->src.many, srcs, nsrc * sizeof(*srcs));
        a->nsrc = nsrc;
    }
    r->unfinished++;
    /* What replay needs to rebuild the activation: its explicit input, or
     * its sources (one source rides in the record, with no allocation). */
    json_t *payload = NULL;
    if (!flow__run_journaling(r)) {
        /* no record is kept: build none */
    } else if (input) {
        payload = json_pack("{s:O}", "input", input);
    } else if (nsrc > 1) {
        json_t *ids = json_array();
        for (uint32_t i = 0; ids && i < nsrc; i++)
            json_array_append_new(ids, json_integer((json_int_t)a->src.many[i]->id));
        payload = ids ? json_pack("{s:o}", "sources", ids) : NULL;
    }
    flow__run_journal_src(r, JREC_ACT_CREATED, a, payload, a->nsrc == 1 ? a->src.one : NULL);
    flow__engine_enqueue(r->engine, a);
out:
    return a; /* an arena array not taken stays with the run */
}

/* [L] Create and queue an activation of `task`. `input` (borrowed) is
 * explicit, or NULL to build it from `srcs` when asked. */
struct act *flow__run_fire(struct flow_run *r, uint32_t task, json_t *input, struct act **srcs,
                           uint32_t nsrc)
{
    return fire(r, task, input, srcs, nsrc, false);
}

/* [L] The task is skipped this round: record it and tell its dependants. */
void flow__run_skip(struct flow_run *r, uint32_t task)
{
    if (r->stopping)
        return;
    struct act *a = r->retry_slots ? flow__retry_take_slot(r, task) : NULL;
    if (!a)
        a = flow__act_new(r, task);
    if (!a) {
        flow__run_stop(r, FLOW_RUN_FAILED, "out of memory creating an activation");
        return;
    }
    a->status = FLOW_ACT_SKIPPED;
    a->ended = r->engine->clock;
    flow__run_journal(r, JREC_ACT_SKIPPED, a, NULL);
    flow__run_notify(r, FLOW_EV_TASK_SKIPPED, a, NULL, 0);
    flow__run_propagate(r, task, LEAF_FALSE, a);
}

/* Three-valued evaluation of an expression node. */
static uint8_t eval_node(const struct flow *f, const uint8_t *ls, uint32_t n)
{
    const struct expr_node *node = &f->expr[n];
    if (node->op == 0) {
        uint8_t v = ls[node->leaf];
        return v == LEAF_LATE ? LEAF_UNKNOWN : v;
    }
    bool any_unknown = false;
    for (uint32_t i = 0; i < node->count; i++) {
        uint8_t v = eval_node(f, ls, node->first + i);
        if (node->op == 1 && v == LEAF_FALSE)
            return LEAF_FALSE;
        if (node->op == 2 && v == LEAF_TRUE)
            return LEAF_TRUE;
        any_unknown |= v == LEAF_UNKNOWN;
    }
    if (any_unknown)
        return LEAF_UNKNOWN;
    return node->op == 1 ? LEAF_TRUE : LEAF_FALSE;
}

/* [L] The trigger of `t` resolved to `outcome`: collect sources, re-arm the
 * leaves (unresolved ones become late when `late_ok`), fire or skip. */
static void resolve(struct flow_run *r, const struct flow_task *t, uint8_t outcome,
                    struct act *firing_src, bool late_ok)
{
    const struct flow *f = r->flow;
    struct task_rt *rt = &r->trt[t->index];
    uint8_t *ls = &r->leaf_state[t->leaf_first];
    struct act *one[1];
    struct act **srcs = one;
    uint32_t nsrc = 0;
    if (outcome == LEAF_TRUE && t->trig == TRIG_ANY) {
        one[0] = firing_src;
        nsrc = firing_src ? 1 : 0;
    } else if (outcome == LEAF_TRUE) {
        if (t->leaf_count > 1)
            srcs = flow__arena_alloc_aligned(&r->act_arena, t->leaf_count * sizeof(*srcs),
                                             _Alignof(struct act *));
        if (!srcs) {
            flow__run_stop(r, FLOW_RUN_FAILED, "out of memory firing a trigger");
            return;
        }
        for (uint32_t i = 0; i < t->leaf_count; i++) {
            const struct flow_leaf *l = &f->leaves[t->leaf_first + i];
            if (ls[i] != LEAF_TRUE || l->kind == LEAF_WHEN_LABEL)
                continue;
            const struct task_rt *from = &r->trt[l->source];
            struct act *latest = flow__act_by_id(r, from->latest);
            /* An optional dependency that failed gives no output. */
            if (latest && from->last == from->latest)
                srcs[nsrc++] = latest;
            else if (latest && l->kind != LEAF_OPTIONAL)
                srcs[nsrc++] = latest;
        }
    }
    /* A retry arms this trigger again and needs its labels' values (retry.c). */
    uint8_t *kept = NULL;
    if (t->trig == TRIG_EXPR && flow__run_retryable(r)) {
        kept = flow__arena_alloc(&r->act_arena, t->leaf_count);
        if (!kept) {
            flow__run_stop(r, FLOW_RUN_FAILED, "out of memory firing a trigger");
            return;
        }
        memcpy(kept, ls, t->leaf_count);
    }
    for (uint32_t i = 0; i < t->leaf_count; i++) {
        if (ls[i] == LEAF_UNKNOWN && late_ok) {
            ls[i] = LEAF_LATE;
            rt->late++;
        } else if (ls[i] != LEAF_LATE) {
            ls[i] = LEAF_UNKNOWN;
        }
    }
    rt->satisfied = rt->resolved = 0;
    struct act *a;
    if (outcome == LEAF_TRUE) {
        a = fire(r, t->index, NULL, srcs, nsrc, srcs != one);
    } else {
        flow__run_skip(r, t->index);
        a = flow__act_by_id(r, rt->last);
    }
    struct act_dyn *dy = kept && a && a->task == t->index ? flow__act_dyn(r, a) : NULL;
    if (dy)
        dy->leaves = kept;
}

/* [L] A leaf of some task's trigger learned `value` from `src`. */
static void leaf_event(struct flow_run *r, uint32_t li, uint8_t value, struct act *src)
{
    const struct flow *f = r->flow;
    const struct flow_leaf *leaf = &f->leaves[li];
    const struct flow_task *t = f->tasks.items[leaf->owner];
    struct task_rt *rt = &r->trt[leaf->owner];
    uint8_t *st = &r->leaf_state[li];
    if (leaf->kind == LEAF_OPTIONAL)
        value = LEAF_TRUE; /* waited for, whatever the outcome */

    if (*st == LEAF_LATE) {
        /* The rest of a round that already fired: absorbed. */
        *st = LEAF_UNKNOWN;
        rt->late--;
        return;
    }
    if (*st != LEAF_UNKNOWN) {
        /* Finished again before the others: keep the newest outcome. */
        if (t->trig == TRIG_AND && *st != value)
            rt->satisfied += value == LEAF_TRUE ? 1u : (uint32_t)-1;
        *st = value;
        if (t->trig == TRIG_AND)
            return;
    } else {
        if (rt->late) {
            /* Not late, so a new round has begun: forget the old one. */
            uint8_t *ls = &r->leaf_state[t->leaf_first];
            for (uint32_t i = 0; i < t->leaf_count; i++) {
                if (ls[i] == LEAF_LATE)
                    ls[i] = LEAF_UNKNOWN;
            }
            rt->late = 0;
        }
        *st = value;
        if (t->trig == TRIG_AND) {
            rt->resolved++;
            if (value == LEAF_TRUE)
                rt->satisfied++;
        }
    }

    switch (t->trig) {
    case TRIG_AND:
        if (rt->resolved < t->leaf_count)
            return;
        if (t->leaf_count == 1 && value == LEAF_TRUE) {
            /* The common chain link: no source array needed. */
            *st = LEAF_UNKNOWN;
            rt->satisfied = rt->resolved = 0;
            struct act *one =
                leaf->kind == LEAF_OPTIONAL && (!src || src->status != FLOW_ACT_COMPLETED) ? NULL
                                                                                          : src;
            flow__run_fire(r, t->index, NULL, &one, one ? 1 : 0);
            return;
        }
        resolve(r, t, rt->satisfied == t->leaf_count ? LEAF_TRUE : LEAF_FALSE, src, false);
        return;
    case TRIG_ANY: {
        if (value == LEAF_TRUE) {
            resolve(r, t, LEAF_TRUE, src, true);
            return;
        }
        const uint8_t *ls = &r->leaf_state[t->leaf_first];
        for (uint32_t i = 0; i < t->leaf_count; i++) {
            if (ls[i] != LEAF_FALSE)
                return;
        }
        resolve(r, t, LEAF_FALSE, src, true);
        return;
    }
    case TRIG_EXPR: {
        uint8_t v = eval_node(f, r->leaf_state, f->expr_root[t->index]);
        if (v != LEAF_UNKNOWN)
            resolve(r, t, v, src, true);
        return;
    }
    default:
        return;
    }
}

/* [L] Task `task` finished with `value` (true: completed; false: failed or
 * skipped): tell every leaf it feeds. Iterative, so that a skip that runs
 * down a 100,000-task chain does not recurse. */
void flow__run_propagate(struct flow_run *r, uint32_t task, uint8_t value, struct act *src)
{
    struct pending_sig sig = {.task = task, .value = value, .act = src};
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&r->sigs, sig, rc);
    if (rc) {
        flow__run_stop(r, FLOW_RUN_FAILED, "out of memory propagating a result");
        return;
    }
    if (r->propagating)
        return; /* the outer call drains the list */
    r->propagating = true;
    const struct flow *f = r->flow;
    for (size_t h = 0; h < r->sigs.count; h++) {
        struct pending_sig s = r->sigs.items[h];
        if (r->stopping)
            break;
        for (uint32_t k = f->dependant_off[s.task]; k < f->dependant_off[s.task + 1]; k++)
            leaf_event(r, f->dependant_leaf[k], s.value, s.act);
    }
    r->sigs.count = 0;
    r->propagating = false;
}

/* The payload with its keys renamed by a connection's map (new reference). */
static json_t *mapped(json_t *payload, json_t *map)
{
    if (!map || !json_is_object(payload))
        return json_incref(payload);
    json_t *out = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(payload, k, v)
    {
        json_t *to = json_object_get(map, k);
        json_object_set(out, to ? json_string_value(to) : k, v);
    }
    return out;
}

/* [L] Emit an event or a router's label: one activation of each subscriber
 * and of each connection from `from`, and the when-leaves naming it. */
void flow__run_emit(struct flow_run *r, struct act *from, const char *event, json_t *payload,
                    unsigned how)
{
    const struct flow *f = r->flow;
    if (!payload)
        payload = json_null();
    flow__run_journal(r, how & EMIT_STREAMED ? JREC_EVENT : JREC_LABEL, from,
                      json_pack("{s:s,s:O}", "label", event, "data", payload));
    int li = flow__label_index(f, event);
    if (r->on_event) {
        /* The observer reads the name later: give it one that lives as long
         * as the run (the caller's may be a directive about to be freed). */
        const char *kept =
            li >= 0 ? f->labels.items[li].name : flow__arena_strdup(&r->act_arena, event);
        if (kept)
            flow__run_notify(r, FLOW_EV_LABEL, from, kept, 0);
    }
    if (li >= 0) {
        const struct label_info *info = &f->labels.items[li];
        for (size_t i = 0; i < info->subscribers.count && !r->stopping; i++)
            flow__run_fire(r, info->subscribers.items[i], payload, NULL, 0);
        for (size_t i = 0; i < info->leaves.count && !r->stopping; i++)
            leaf_event(r, info->leaves.items[i], LEAF_TRUE, from);
    }
    for (size_t i = 0; from && i < f->connections.count && !r->stopping; i++) {
        const struct flow_connection *cn = &f->connections.items[i];
        if (cn->from != from->task || strcmp(cn->event, event) != 0)
            continue;
        json_t *input = mapped(payload, cn->map);
        if (!input) {
            flow__run_stop(r, FLOW_RUN_FAILED, "out of memory routing an event");
            break;
        }
        flow__run_fire(r, cn->to, input, NULL, 0);
        json_decref(input);
    }
    /* A nested run's events are its `flow:` task's, streamed while it runs,
     * so the parent connects them (`from: TASK.EVENT`); a router's labels
     * steer the nested run only. */
    struct act *up = r->parent_act;
    if (up && !(how & EMIT_LABEL) && up->status == FLOW_ACT_RUNNING && !up->run->stopping)
        flow__run_emit(up->run, up, event, payload, EMIT_STREAMED);
}

bool flow__run_settle_optionals(struct flow_run *r)
{
    const struct flow *f = r->flow;
    bool fired = false;
    if (!f->has_optional)
        return false;
    for (size_t i = 0; i < f->tasks.count && !r->stopping; i++) {
        const struct flow_task *t = f->tasks.items[i];
        if (t->trig != TRIG_AND)
            continue;
        const struct task_rt *rt = &r->trt[i];
        const uint8_t *ls = &r->leaf_state[t->leaf_first];
        bool waits_for_optional = false, waits_for_required = false;
        for (uint32_t k = 0; k < t->leaf_count; k++) {
            if (ls[k] != LEAF_UNKNOWN)
                continue;
            if (f->leaves[t->leaf_first + k].kind == LEAF_OPTIONAL)
                waits_for_optional = true;
            else
                waits_for_required = true;
        }
        /* Something of this round arrived (or, with only optional
         * dependencies, the task never ran): else there is no round to end,
         * and firing again would loop. */
        if (!waits_for_optional || waits_for_required || (!rt->resolved && rt->activations))
            continue;
        for (uint32_t k = 0; k < t->leaf_count && !r->stopping; k++) {
            if (r->leaf_state[t->leaf_first + k] == LEAF_UNKNOWN)
                leaf_event(r, t->leaf_first + k, LEAF_FALSE, NULL);
        }
        fired = true;
    }
    return fired;
}
