/* run.c -- the semantics of a run (SPEC section 2): activations, triggers
 * firing and re-arming, failure propagation, retries, error strategies,
 * state writes, the result, and the public flow_run_* functions.
 * Everything marked [L] in engine.h runs with the engine lock held.
 */
#include "util/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/engine.h"
#include "core/schema.h"
#include "journal/durable.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/json.h"
#include "util/log.h"

#define ACT_CHUNK 256

static void propagate(struct flow_run *r, uint32_t task, uint8_t value, struct act *src);
static flow_err build_input(struct flow_run *r, struct act *a, flow_error *err);
static void attempt_dropped(struct flow_run *r, struct act *a);

/* ---- activations -------------------------------------------------------- */

/* [L] A new activation of `task`, counted against max_activations by the
 * caller. NULL when out of memory. */
static struct act *act_new(struct flow_run *r, uint32_t task)
{
    size_t i = r->act_count;
    if (i / ACT_CHUNK == r->act_chunk_cap) {
        size_t cap = r->act_chunk_cap ? r->act_chunk_cap * 2 : 16;
        struct act **chunks = flow__reallocarray(r->act_chunks, cap, sizeof(*chunks));
        if (!chunks)
            return NULL;
        memset(chunks + r->act_chunk_cap, 0, (cap - r->act_chunk_cap) * sizeof(*chunks));
        r->act_chunks = chunks;
        r->act_chunk_cap = cap;
    }
    if (!r->act_chunks[i / ACT_CHUNK]) {
        r->act_chunks[i / ACT_CHUNK] = flow__arena_alloc(&r->act_arena, ACT_CHUNK * sizeof(struct act));
        if (!r->act_chunks[i / ACT_CHUNK])
            return NULL;
    }
    struct act *a = &r->act_chunks[i / ACT_CHUNK][i % ACT_CHUNK]; /* zeroed */
    a->id = (uint64_t)i + 1;
    a->run = r;
    a->task = task;
    a->status = FLOW_ACT_PENDING;
    r->act_count++;
    r->trt[task].last = a;
    return a;
}

static struct act *act_at(const struct flow_run *r, size_t i)
{
    return &r->act_chunks[i / ACT_CHUNK][i % ACT_CHUNK];
}

struct act *flow__act_at(const struct flow_run *r, size_t i)
{
    return act_at(r, i);
}

static const char *task_name(const struct flow_run *r, uint32_t task)
{
    return r->flow->tasks.items[task]->name;
}

/* [L] Writing the journal failed: the run stops (going on would do work
 * nobody could find again); what was committed stays, so it can be resumed
 * once the cause is fixed. `message` NULL: ask the journal. */
static void journal_broke(struct flow_run *r, const char *message)
{
    flow_error err = {0};
    if (!message)
        message = flow__journal_durable_failed(&r->journal, &err) ? err.message : "out of memory";
    char why[700];
    snprintf(why, sizeof(why), "cannot write the journal: %s", message);
    r->journal_failed = true;
    if (!r->stopping)
        flow__run_stop(r, FLOW_RUN_FAILED, why);
}

/* [L] Append a journal record; a journal that fails stops the run. */
static void journal_src(struct flow_run *r, uint8_t type, const struct act *a, json_t *payload,
                        const struct act *src)
{
    struct flow__jrec rec = {
        .type = type,
        .attempt = a ? (uint8_t)(a->attempt > 255 ? 255 : a->attempt) : 0,
        .task = a ? a->task : 0,
        .act = a ? (uint32_t)a->id : 0,
        .src = src ? (uint32_t)src->id : 0,
        .time = r->engine->clock,
        .payload = payload,
    };
    if (r->replaying) {
        json_decref(payload); /* the record is already in the store */
        return;
    }
    r->journal_moved = true;
    if (flow__journal_append(&r->journal, &rec) != FLOW_OK && !r->journal_failed)
        journal_broke(r, NULL);
}

static void journal(struct flow_run *r, uint8_t type, const struct act *a, json_t *payload)
{
    journal_src(r, type, a, payload, NULL);
}

void flow__run_journal(struct flow_run *r, uint8_t type, const struct act *a, json_t *payload)
{
    journal_src(r, type, a, payload, NULL);
}

json_t *flow__run_task_names(const struct flow *f)
{
    json_t *names = json_array();
    for (size_t i = 0; names && i < f->tasks.count; i++)
        json_array_append_new(names, json_string(f->tasks.items[i]->name));
    return names;
}

void flow__run_notify(struct flow_run *r, flow_event_type type, struct act *a, const char *label,
                      double delay)
{
    if (!r->on_event || r->replaying)
        return;
    struct obs_event ev = {
        .type = (uint8_t)type,
        .run_status = (uint8_t)r->status,
        .attempt = a ? a->attempt : 0,
        .act = a,
        .label = label,
        .delay = delay,
        .time = r->engine->clock,
    };
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&r->obs, ev, rc);
    if (rc)
        return; /* an observer missing an event is not worth failing a run */
    if (!r->obs_listed) {
        struct flow_engine *e = r->engine;
        FLOW__VEC_PUSH(&e->obs_runs, r, rc);
        if (!rc)
            r->obs_listed = true;
        flow__engine_wake(e);
    }
}

void flow__run_deliver(struct flow_run *r, struct obs_event *events, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct obs_event *o = &events[i];
        flow_event ev = {
            .type = (flow_event_type)o->type,
            .run_id = r->id,
            .task = o->act ? task_name(r, o->act->task) : NULL,
            .activation = o->act ? o->act->id : 0,
            .attempt = (int)o->attempt,
            .error = NULL,
            .label = o->label,
            .delay = o->delay,
            .time = o->time,
            .run_status = (flow_run_status)o->run_status,
        };
        /* Completed events carry the error an `on_error: ignore` absorbed. */
        if (o->type == FLOW_EV_TASK_FAILED || o->type == FLOW_EV_TASK_RETRYING ||
            o->type == FLOW_EV_TASK_CANCELLED || o->type == FLOW_EV_TASK_COMPLETED)
            ev.error = o->act ? o->act->error : NULL;
        if (o->type == FLOW_EV_RUN_ENDED)
            ev.error = r->error;
        r->on_event(&ev, r->event_udata);
    }
}

/* [L] The activation's rarely used parts, made on first use; NULL when out
 * of memory. */
static struct act_dyn *act_dyn(struct flow_run *r, struct act *a)
{
    if (!a->dyn) {
        a->dyn = flow__arena_alloc(&r->act_arena, sizeof(*a->dyn)); /* zeroed */
        if (a->dyn)
            a->dyn->exit_status = -1;
    }
    return a->dyn;
}

static void group_member_done(struct flow_run *r, struct act *a);
static void foreach_child_done(struct flow_run *r, struct act *a);

/* [L] An activation reached a final status. */
static void act_final(struct flow_run *r, struct act *a)
{
    a->ended = r->engine->clock;
    if (r->unfinished > 0)
        r->unfinished--;
    if (a->dyn && a->dyn->group)
        group_member_done(r, a);
    if (a->dyn && a->dyn->parent)
        foreach_child_done(r, a);
}

/* ---- state -------------------------------------------------------------- */

/* [L] Apply `writes` (an object; borrowed) to the state, key by key. */
static void state_write(struct flow_run *r, struct act *a, json_t *writes)
{
    if (!writes || !json_object_size(writes))
        return;
    json_t *next = json_copy(r->state); /* shallow: values are immutable */
    const char *key;
    json_t *value;
    bool ok = next != NULL;
    json_object_foreach(writes, key, value)
    {
        if (ok && json_object_set(next, key, value))
            ok = false;
    }
    if (!ok) {
        json_decref(next);
        flow__run_stop(r, FLOW_RUN_FAILED, "out of memory writing the state");
        return;
    }
    json_decref(r->state);
    r->state = next;
    r->state_version++;
    (void)a; /* the writes ride in the writer's act_completed record */
}

/* ---- triggers ----------------------------------------------------------- */

/* [L] Create and queue an activation of `task`. `input` (borrowed) is
 * explicit, or NULL to build it from `srcs` when asked. */
static struct act *fire(struct flow_run *r, uint32_t task, json_t *input, struct act **srcs,
                        uint32_t nsrc)
{
    if (r->stopping)
        return NULL;
    const struct flow_task *t = r->flow->tasks.items[task];
    struct task_rt *rt = &r->trt[task];
    if (rt->activations >= (uint32_t)t->policy->max_activations) {
        char why[512];
        snprintf(why, sizeof(why),
                 "task '%s' reached max_activations (%d): a loop that does not end? "
                 "(raise 'max_activations' if it is meant to run more)",
                 t->name, t->policy->max_activations);
        flow__run_stop(r, FLOW_RUN_FAILED, why);
        return NULL;
    }
    struct act *a = act_new(r, task);
    if (!a) {
        flow__run_stop(r, FLOW_RUN_FAILED, "out of memory creating an activation");
        return NULL;
    }
    rt->activations++;
    if (input) {
        a->input = json_incref(input);
    } else if (nsrc == 1) {
        a->src.one = srcs[0];
        a->nsrc = 1;
    } else if (nsrc > 1) {
        a->src.many = flow__reallocarray(NULL, nsrc, sizeof(*srcs));
        if (!a->src.many) {
            flow__run_stop(r, FLOW_RUN_FAILED, "out of memory creating an activation");
            a->status = FLOW_ACT_CANCELLED;
            return NULL;
        }
        memcpy(a->src.many, srcs, nsrc * sizeof(*srcs));
        a->nsrc = nsrc;
    }
    r->unfinished++;
    /* What replay needs to rebuild the activation: its explicit input, or
     * its sources (one source rides in the record, with no allocation). */
    json_t *payload = NULL;
    if (input) {
        payload = json_pack("{s:O}", "input", input);
    } else if (nsrc > 1) {
        json_t *ids = json_array();
        for (uint32_t i = 0; ids && i < nsrc; i++)
            json_array_append_new(ids, json_integer((json_int_t)srcs[i]->id));
        payload = ids ? json_pack("{s:o}", "sources", ids) : NULL;
    }
    journal_src(r, JREC_ACT_CREATED, a, payload, nsrc == 1 && !input ? srcs[0] : NULL);
    flow__engine_enqueue(r->engine, a);
    return a;
}

/* [L] The task is skipped this round: record it and tell its dependants. */
static void skip(struct flow_run *r, uint32_t task)
{
    if (r->stopping)
        return;
    struct act *a = act_new(r, task);
    if (!a) {
        flow__run_stop(r, FLOW_RUN_FAILED, "out of memory creating an activation");
        return;
    }
    a->status = FLOW_ACT_SKIPPED;
    a->ended = r->engine->clock;
    journal(r, JREC_ACT_SKIPPED, a, NULL);
    flow__run_notify(r, FLOW_EV_TASK_SKIPPED, a, NULL, 0);
    propagate(r, task, LEAF_FALSE, a);
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
            srcs = flow__reallocarray(NULL, t->leaf_count, sizeof(*srcs));
        if (!srcs) {
            flow__run_stop(r, FLOW_RUN_FAILED, "out of memory firing a trigger");
            return;
        }
        for (uint32_t i = 0; i < t->leaf_count; i++) {
            const struct flow_leaf *l = &f->leaves[t->leaf_first + i];
            if (ls[i] != LEAF_TRUE || l->kind == LEAF_WHEN_LABEL)
                continue;
            struct act *latest = r->trt[l->source].latest;
            /* An optional dependency that failed gives no output. */
            if (latest && r->trt[l->source].last == latest)
                srcs[nsrc++] = latest;
            else if (latest && l->kind != LEAF_OPTIONAL)
                srcs[nsrc++] = latest;
        }
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
    if (outcome == LEAF_TRUE)
        fire(r, t->index, NULL, srcs, nsrc);
    else
        skip(r, t->index);
    if (srcs != one)
        flow__free(srcs);
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
            struct act *one = leaf->kind == LEAF_OPTIONAL && src->status != FLOW_ACT_COMPLETED
                                  ? NULL
                                  : src;
            fire(r, t->index, NULL, &one, one ? 1 : 0);
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
static void propagate(struct flow_run *r, uint32_t task, uint8_t value, struct act *src)
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

/* [L] Emit `label` (a router's output, or later an event): one activation
 * of each subscriber, and the when-leaves naming it. */
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

void flow__run_emit(struct flow_run *r, struct act *from, const char *event, json_t *payload,
                    bool streamed)
{
    const struct flow *f = r->flow;
    if (!payload)
        payload = json_null();
    journal(r, streamed ? JREC_EVENT : JREC_LABEL, from,
            json_pack("{s:s,s:O}", "label", event, "data", payload));
    int li = flow__label_index(f, event);
    if (r->on_event) {
        /* The observer reads the name later: give it one that lives as long
         * as the run (the caller's may be a directive about to be freed). */
        const char *kept = li >= 0 ? f->labels.items[li].name
                                   : flow__arena_strdup(&r->act_arena, event);
        if (kept)
            flow__run_notify(r, FLOW_EV_LABEL, from, kept, 0);
    }
    if (li >= 0) {
        const struct label_info *info = &f->labels.items[li];
        for (size_t i = 0; i < info->subscribers.count && !r->stopping; i++)
            fire(r, info->subscribers.items[i], payload, NULL, 0);
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
        fire(r, cn->to, input, NULL, 0);
        json_decref(input);
    }
}

/* ---- attempts ----------------------------------------------------------- */

void flow__run_attempt_started(struct flow_run *r, struct act *a)
{
    const struct flow_task *t = act_task(a);
    a->attempt++;
    a->status = FLOW_ACT_RUNNING;
    a->started = r->engine->clock;
    r->running++;
    journal(r, JREC_ACT_STARTED, a, NULL);
    flow__run_notify(r, FLOW_EV_TASK_STARTED, a, NULL, 0);
    if (t->policy->timeout > 0)
        flow__engine_timer(r->engine, TIMER_TIMEOUT, a, t->policy->timeout);
}

bool flow__run_input_ready(struct flow_run *r, struct act *a, char **error)
{
    flow_error err;
    if (build_input(r, a, &err) == FLOW_OK)
        return true;
    *error = flow__strdup(err.message);
    return false;
}

/* [L] Delay before retry number `attempt` (1-based attempt that failed). */
static double backoff_delay(const flow_backoff *b, uint32_t attempt)
{
    double d = b->delay * pow(b->factor, (double)(attempt - 1));
    if (d > b->max_delay)
        d = b->max_delay;
    if (b->jitter) {
        uint32_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
            rnd = (uint32_t)flow__now_ns();
        d = d / 2 + (d / 2) * ((double)rnd / 4294967295.0);
    }
    return d;
}

struct directives;
static void attempt_succeeded(struct flow_run *r, struct act *a, json_t *output, json_t *writes,
                              struct directives *d);
static void attempt_succeeded_ex(struct flow_run *r, struct act *a, json_t *output,
                                 json_t *writes, struct directives *d, const char *ignored);

/* [L] The attempt failed with `error` (taken). */
static void attempt_failed_ex(struct flow_run *r, struct act *a, char *error, bool may_retry);

static void attempt_failed(struct flow_run *r, struct act *a, char *error)
{
    attempt_failed_ex(r, a, error, true);
}

/* [L] The attempt failed with `error` (taken); retried per policy when
 * `may_retry` (a foreach parent is not: its children had their retries). */
static void attempt_failed_ex(struct flow_run *r, struct act *a, char *error, bool may_retry)
{
    const struct flow_task *t = act_task(a);
    const struct task_policy *p = t->policy;
    flow__free(a->error);
    a->error = error ? error : flow__strdup("failed");
    if (r->stopping) {
        a->status = FLOW_ACT_CANCELLED;
        journal(r, JREC_ACT_CANCELLED, a, json_pack("{s:s?}", "error", a->error));
        flow__run_notify(r, FLOW_EV_TASK_CANCELLED, a, NULL, 0);
        act_final(r, a);
        flow__run_check_end(r);
        return;
    }
    if (may_retry && a->attempt <= (uint32_t)p->retries) {
        double delay = backoff_delay(&p->backoff, a->attempt);
        a->status = FLOW_ACT_PENDING;
        a->flags |= ACT_WAITING;
        journal(r, JREC_ACT_RETRYING, a, json_pack("{s:s?,s:f}", "error", a->error, "delay", delay));
        flow__run_notify(r, FLOW_EV_TASK_RETRYING, a, NULL, delay);
        flow__engine_timer(r->engine, TIMER_RETRY, a, delay);
        return;
    }
    if (p->on_error == FLOW_ON_ERROR_IGNORE) {
        /* Counts as completed with output null; the error stays visible. */
        char *kept = a->error;
        a->error = NULL;
        attempt_succeeded_ex(r, a, json_null(), NULL, NULL, kept);
        a->error = kept;
        return;
    }
    a->status = FLOW_ACT_FAILED;
    journal(r, JREC_ACT_FAILED, a, json_pack("{s:s?}", "error", a->error));
    flow__run_notify(r, FLOW_EV_TASK_FAILED, a, NULL, 0);
    act_final(r, a);
    switch (p->on_error) {
    case FLOW_ON_ERROR_CONTINUE:
        if (!r->had_failure) {
            r->had_failure = true;
            r->error = flow__asprintf("task '%s' failed: %s", t->name, a->error);
        }
        if (!(a->dyn && a->dyn->parent)) /* a foreach child's parent decides */
            propagate(r, a->task, LEAF_FALSE, a);
        break;
    case FLOW_ON_ERROR_FALLBACK: {
        json_t *in = json_pack("{s:s?,s:s,s:I,s:i}", "error", a->error, "task", t->name,
                               "activation", (json_int_t)a->id, "attempts", (int)a->attempt);
        struct act *fb = in ? fire(r, t->fallback->index, in, NULL, 0) : NULL;
        json_decref(in);
        if (fb) {
            fb->flags |= ACT_IS_FALLBACK;
            fb->stands_for = a;
        } else if (!r->stopping) {
            flow__run_stop(r, FLOW_RUN_FAILED, "out of memory starting a fallback");
        }
        break;
    }
    default: {
        char *why = flow__asprintf("task '%s' failed: %s", t->name, a->error);
        flow__run_stop(r, FLOW_RUN_FAILED, why ? why : "a task failed");
        flow__free(why);
        break;
    }
    }
    flow__run_check_end(r);
}

/* [L] The router's label: its output if a string, else the output's
 * "label" field. NULL when neither. */
static const char *router_label(json_t *output)
{
    if (json_is_string(output))
        return json_string_value(output);
    json_t *l = json_object_get(output, "label");
    return json_is_string(l) ? json_string_value(l) : NULL;
}

/* What a successful attempt asked for besides its output: the directives of
 * SPEC section 2, from $FLOW_CONTROL or flow_ctx_* calls, checked. */
struct directives {
    json_t *writes;     /* `set`: state keys, or NULL */
    char *cancel;       /* `cancel`: the error, or NULL */
    json_t *terminate;  /* `terminate`: the result, or NULL */
    bool checkpoint;
    char *pause;        /* `pause`: the reason, or NULL */
    json_t *work;       /* next_task / next_iteration / parallel / emit, in order */
};

static void directives_cleanup(struct directives *d)
{
    json_decref(d->writes);
    flow__free(d->cancel);
    flow__free(d->pause);
    json_decref(d->terminate);
    json_decref(d->work);
    memset(d, 0, sizeof(*d));
}

/* [L] Check a task name a directive gives; NULL or a message. */
static char *check_task_name(struct flow_run *r, const char *what, json_t *name)
{
    if (!json_is_string(name))
        return flow__asprintf("directive '%s' needs a task name", what);
    if (!flow_find_task(r->flow, json_string_value(name)))
        return flow__asprintf("directive '%s' names unknown task '%s'", what,
                              json_string_value(name));
    return NULL;
}

/* [L] Parse `list` (an array of directive objects) into `out`. */
static char *parse_directives(struct flow_run *r, json_t *list, struct directives *out)
{
    size_t i;
    json_t *d;
    char *bad = NULL;
    json_array_foreach(list, i, d)
    {
        const char *key;
        json_t *value;
        json_object_foreach(d, key, value)
        {
            if (!strcmp(key, "set")) {
                if (!json_is_object(value))
                    return flow__strdup("directive 'set' needs an object");
                if (!out->writes && !(out->writes = json_object()))
                    return flow__strdup("out of memory");
                if (json_object_update(out->writes, value))
                    return flow__strdup("out of memory");
                continue;
            }
            if (!strcmp(key, "cancel")) {
                json_t *e = json_is_object(value) ? json_object_get(value, "error") : value;
                flow__free(out->cancel);
                out->cancel = flow__strdup(json_is_string(e) ? json_string_value(e)
                                                             : "cancelled by a task");
                continue;
            }
            if (!strcmp(key, "terminate")) {
                json_t *res = json_is_object(value) ? json_object_get(value, "result") : NULL;
                json_decref(out->terminate);
                out->terminate = json_incref(res ? res : json_null());
                continue;
            }
            if (!strcmp(key, "checkpoint")) {
                out->checkpoint = true;
                continue;
            }
            if (!strcmp(key, "pause")) {
                json_t *why = json_is_object(value) ? json_object_get(value, "reason") : value;
                flow__free(out->pause);
                out->pause = flow__strdup(json_is_string(why) ? json_string_value(why)
                                                             : "paused by a task");
                if (!out->pause)
                    return flow__strdup("out of memory");
                continue;
            }
            if (!strcmp(key, "then") && json_object_get(d, "parallel"))
                continue; /* part of the parallel directive */
            if (!strcmp(key, "next_task")) {
                if (!json_is_object(value))
                    return flow__strdup("directive 'next_task' needs {\"task\": T, \"input\": V}");
                if ((bad = check_task_name(r, key, json_object_get(value, "task"))))
                    return bad;
            } else if (!strcmp(key, "next_iteration")) {
                if (value && !json_is_object(value) && !json_is_null(value))
                    return flow__strdup("directive 'next_iteration' needs {\"input\": V}");
            } else if (!strcmp(key, "parallel")) {
                size_t k;
                json_t *b;
                if (!json_is_array(value) || !json_array_size(value))
                    return flow__strdup("directive 'parallel' needs a non-empty list of "
                                        "{\"task\": T, \"input\": V}");
                json_array_foreach(value, k, b)
                {
                    if ((bad = check_task_name(r, key, json_object_get(b, "task"))))
                        return bad;
                }
                json_t *then = json_object_get(d, "then");
                if (then && !json_is_null(then) && (bad = check_task_name(r, "then", then)))
                    return bad;
            } else if (!strcmp(key, "emit")) {
                json_t *ev = json_is_object(value) ? json_object_get(value, "event") : value;
                if (!json_is_string(ev) || !json_string_length(ev))
                    return flow__strdup("directive 'emit' needs an event name");
            } else {
                return flow__asprintf("unknown directive '%s' (known: set, next_task, "
                                      "next_iteration, parallel, terminate, cancel, checkpoint, "
                                      "pause, emit)",
                                      key);
            }
            json_t *one = json_object();
            if (!one || json_object_set(one, key, value) ||
                (!strcmp(key, "parallel") && json_object_get(d, "then") &&
                 json_object_set(one, "then", json_object_get(d, "then"))) ||
                (!out->work && !(out->work = json_array())) ||
                json_array_append_new(out->work, one)) {
                json_decref(one);
                return flow__strdup("out of memory");
            }
        }
    }
    return NULL;
}

char *flow__run_check_directives(struct flow_run *r, json_t *list)
{
    struct directives d = {0};
    char *bad = parse_directives(r, list, &d);
    directives_cleanup(&d);
    return bad;
}

/* [L] Start the dynamic work a successful attempt asked for, in order. */
static void start_work(struct flow_run *r, struct act *a, json_t *work)
{
    size_t i;
    json_t *d;
    json_array_foreach(work, i, d)
    {
        if (r->stopping)
            return;
        json_t *v;
        if ((v = json_object_get(d, "next_task"))) {
            const flow_task *t = flow_find_task(r->flow, json_string_value(json_object_get(v, "task")));
            json_t *in = json_object_get(v, "input");
            fire(r, t->index, in ? in : json_null(), NULL, 0);
        } else if ((v = json_object_get(d, "next_iteration"))) {
            json_t *in = json_object_get(v, "input");
            fire(r, a->task, in ? in : json_null(), NULL, 0);
        } else if ((v = json_object_get(d, "parallel"))) {
            json_t *then = json_object_get(d, "then");
            struct group *g = NULL;
            if (then && json_is_string(then)) {
                g = flow__calloc(1, sizeof(*g));
                flow_err rc = g ? FLOW_OK : FLOW_ENOMEM;
                if (!rc)
                    FLOW__VEC_PUSH(&r->groups, g, rc);
                if (rc || !(g->outputs = json_array())) {
                    if (rc)
                        flow__free(g);
                    flow__run_stop(r, FLOW_RUN_FAILED, "out of memory starting a parallel group");
                    return;
                }
                g->count = (uint32_t)json_array_size(v);
                g->then_task = flow_find_task(r->flow, json_string_value(then))->index;
                for (uint32_t k = 0; k < g->count; k++)
                    json_array_append_new(g->outputs, json_null());
            }
            size_t k;
            json_t *b;
            json_array_foreach(v, k, b)
            {
                const flow_task *t =
                    flow_find_task(r->flow, json_string_value(json_object_get(b, "task")));
                json_t *in = json_object_get(b, "input");
                struct act *branch = fire(r, t->index, in ? in : json_null(), NULL, 0);
                if (!branch)
                    return;
                if (g) {
                    struct act_dyn *dy = act_dyn(r, branch);
                    if (!dy)
                        return;
                    dy->group = g;
                    dy->branch = (uint32_t)k;
                }
            }
        } else if ((v = json_object_get(d, "emit"))) {
            json_t *ev = json_is_object(v) ? json_object_get(v, "event") : v;
            json_t *data = json_is_object(v) ? json_object_get(v, "data") : NULL;
            flow__run_emit(r, a, json_string_value(ev), data, false);
        }
    }
}

/* The payload of an act_completed record: everything replay needs to apply
 * the completion again (docs/internals/store.md). */
static json_t *completed_payload(struct act *a, json_t *writes, const struct directives *d,
                                 const char *ignored)
{
    json_t *p = json_pack("{s:O}", "output", a->output);
    if (!p)
        return NULL;
    if (writes && json_object_size(writes))
        json_object_set_new(p, "writes", json_copy(writes));
    if (ignored)
        json_object_set_new(p, "ignored", json_string(ignored));
    if (!d)
        return p;
    if (d->work)
        json_object_set(p, "work", d->work);
    if (d->terminate)
        json_object_set(p, "terminate", d->terminate);
    if (d->cancel)
        json_object_set_new(p, "cancel", json_string(d->cancel));
    if (d->checkpoint)
        json_object_set(p, "checkpoint", json_true());
    if (d->pause)
        json_object_set_new(p, "pause", json_string(d->pause));
    return p;
}

/* [L] The attempt succeeded with `output` and state `writes` (both taken;
 * writes may be NULL) and directives `d` (may be NULL; cleaned up here). */
static void attempt_succeeded(struct flow_run *r, struct act *a, json_t *output, json_t *writes,
                              struct directives *d)
{
    attempt_succeeded_ex(r, a, output, writes, d, NULL);
}

/* ... `ignored`: the error an `on_error: ignore` absorbed, or NULL. */
static void attempt_succeeded_ex(struct flow_run *r, struct act *a, json_t *output,
                                 json_t *writes, struct directives *d, const char *ignored)
{
    const struct flow_task *t = act_task(a);
    if (!output)
        output = json_null();
    if (d && d->writes) {
        if (!writes) {
            writes = d->writes;
            d->writes = NULL;
        } else {
            json_object_update(writes, d->writes);
        }
    }
    if (t->ext && t->ext->save) {
        if (!writes)
            writes = json_object();
        if (writes)
            json_object_set(writes, t->ext->save, output);
    }
    /* The state schema guards every write; breaking it fails the writer. */
    if (writes && r->flow->schema) {
        json_t *next = json_copy(r->state);
        char *bad = NULL;
        if (!next || json_object_update(next, writes))
            bad = flow__strdup("out of memory checking the state");
        else
            bad = flow__schema_check_keys(r->flow->schema, next, writes);
        json_decref(next);
        if (bad) {
            json_decref(output);
            json_decref(writes);
            if (d)
                directives_cleanup(d);
            attempt_failed(r, a, bad);
            return;
        }
    }
    flow__free(a->error); /* an earlier attempt's; `ignore` puts its own back */
    a->error = NULL;
    a->output = output;
    a->status = FLOW_ACT_COMPLETED;
    journal(r, JREC_ACT_COMPLETED, a, r->replaying ? NULL : completed_payload(a, writes, d, ignored));
    state_write(r, a, writes);
    json_decref(writes);
    flow__run_notify(r, FLOW_EV_TASK_COMPLETED, a, NULL, 0);
    /* A foreach child speaks only to its parent, which completes for the
     * task as a whole. */
    bool child = a->dyn && a->dyn->parent;
    if (!child) {
        r->trt[a->task].latest = a;
        r->last_completed = a;
    }
    if (d && d->cancel) {
        flow__run_stop(r, FLOW_RUN_CANCELLED, d->cancel);
    } else if (d && d->terminate) {
        json_decref(r->terminate_result);
        r->terminate_result = d->terminate;
        d->terminate = NULL;
        flow__run_stop(r, FLOW_RUN_COMPLETED, NULL);
    }
    if (d && (d->checkpoint || d->pause))
        flow__run_checkpoint(r, a, d->pause ? "pause" : "task");
    if (d && d->pause && !r->stopping && !r->replaying)
        flow__run_pause(r, d->pause, false);
    act_final(r, a);
    if (!r->stopping && child) {
        if (d && d->work)
            start_work(r, a, d->work);
    } else if (!r->stopping) {
        if (t->router) {
            const char *label = router_label(a->output);
            if (label) {
                json_t *payload = json_is_object(a->output) ? a->output
                                                            : flow__run_act_input(r, a);
                flow__run_emit(r, a, label, payload, false);
            } else {
                flow__log(FLOW_LOG_WARN, "router '%s' returned no label", t->name);
            }
        }
        propagate(r, a->task, LEAF_TRUE, a);
        if (a->flags & ACT_IS_FALLBACK && a->stands_for) {
            /* The fallback's output stands for the failed task's. */
            struct act *orig = a->stands_for;
            r->trt[orig->task].latest = a;
            propagate(r, orig->task, LEAF_TRUE, a);
        }
        if (d && d->work)
            start_work(r, a, d->work);
    }
    if (d)
        directives_cleanup(d);
    flow__run_check_end(r);
}

/* ---- replay (replay.c) -------------------------------------------------- */

void flow__run_replay_completed(struct flow_run *r, struct act *a, json_t *payload)
{
    struct directives d = {0};
    json_t *v;
    json_t *output = json_incref(json_object_get(payload, "output"));
    json_t *writes = json_object_get(payload, "writes");
    writes = json_is_object(writes) ? json_copy(writes) : NULL;
    if ((v = json_object_get(payload, "work")) && json_is_array(v))
        d.work = json_incref(v);
    if ((v = json_object_get(payload, "terminate")))
        d.terminate = json_incref(v);
    if ((v = json_object_get(payload, "cancel")) && json_is_string(v))
        d.cancel = flow__strdup(json_string_value(v));
    if ((v = json_object_get(payload, "pause")) && json_is_string(v))
        d.pause = flow__strdup(json_string_value(v));
    d.checkpoint = json_is_true(json_object_get(payload, "checkpoint"));
    const char *ignored = json_string_value(json_object_get(payload, "ignored"));
    attempt_succeeded(r, a, output ? output : json_null(), writes, &d);
    if (ignored && a->status == FLOW_ACT_COMPLETED && !a->error)
        a->error = flow__strdup(ignored);
}

void flow__run_replay_failed(struct flow_run *r, struct act *a, const char *error)
{
    attempt_failed(r, a, flow__strdup(error ? error : "failed"));
}

/* ---- groups, foreach, nested flows -------------------------------------- */

/* [L] A branch of a parallel group finished. */
static void group_member_done(struct flow_run *r, struct act *a)
{
    struct group *g = a->dyn->group;
    a->dyn->group = NULL; /* count it once */
    g->finished++;
    if (a->status == FLOW_ACT_COMPLETED)
        json_array_set(g->outputs, a->dyn->branch, a->output);
    else
        g->failed = true;
    if (g->finished < g->count || r->stopping)
        return;
    if (g->failed)
        skip(r, g->then_task);
    else
        fire(r, g->then_task, g->outputs, NULL, 0);
}

/* [L] Start the next children of a foreach parent while the concurrency
 * allows. */
static void foreach_spawn(struct flow_run *r, struct act *parent)
{
    struct foreach_state *fe = parent->dyn->fe;
    while (!r->stopping && fe->next < fe->count &&
           (!fe->concurrency || fe->running < fe->concurrency)) {
        size_t i = fe->next++;
        struct act *child = act_new(r, parent->task);
        struct act_dyn *dy = child ? act_dyn(r, child) : NULL;
        if (!dy) {
            flow__run_stop(r, FLOW_RUN_FAILED, "out of memory creating an activation");
            return;
        }
        dy->parent = parent;
        dy->index = i;
        dy->item = json_incref(json_array_get(fe->items, i));
        child->input = json_incref(dy->item); /* the element, unless `input` says more */
        fe->running++;
        r->unfinished++;
        journal(r, JREC_ACT_CREATED, child,
                json_pack("{s:O,s:I,s:I}", "input", dy->item, "parent", (json_int_t)parent->id,
                          "index", (json_int_t)i));
        flow__engine_enqueue(r->engine, child);
    }
}

/* [L] The parent's children are all done: it completes with their outputs,
 * or fails naming the first failure. */
static void foreach_finish(struct flow_run *r, struct act *parent)
{
    struct foreach_state *fe = parent->dyn->fe;
    if (fe->failed) {
        char *why = flow__asprintf("%zu of %zu items failed; the first: %s", fe->failed,
                                   fe->count, fe->first_error ? fe->first_error : "?");
        attempt_failed_ex(r, parent, why, false);
        return;
    }
    json_t *out = fe->outputs;
    fe->outputs = NULL;
    attempt_succeeded(r, parent, out, NULL, NULL);
}

static void foreach_child_done(struct flow_run *r, struct act *child)
{
    struct act *parent = child->dyn->parent;
    struct foreach_state *fe = parent->dyn ? parent->dyn->fe : NULL;
    if (!fe || parent->status != FLOW_ACT_RUNNING)
        return;
    fe->running--;
    fe->finished++;
    if (child->status == FLOW_ACT_COMPLETED) {
        json_array_set(fe->outputs, child->dyn->index, child->output);
    } else {
        fe->failed++;
        if (!fe->first_error)
            fe->first_error = flow__asprintf("item %zu: %s", child->dyn->index,
                                             child->error ? child->error : "failed");
    }
    if (r->stopping) {
        if (!fe->running)
            attempt_failed_ex(r, parent, flow__strdup("the run stopped"), false);
        return;
    }
    foreach_spawn(r, parent);
    if (fe->finished == fe->count)
        foreach_finish(r, parent);
}

/* [L] Begin a foreach parent: render the list and start the children. */
static void expand_foreach(struct flow_run *r, struct act *a)
{
    const struct flow_task *t = act_task(a);
    flow_error err;
    json_t *list = NULL;
    struct act_dyn *dy = act_dyn(r, a);
    if (!dy) {
        attempt_failed_ex(r, a, flow__strdup("out of memory"), false);
        return;
    }
    char *why = NULL;
    if (!flow__run_input_ready(r, a, &why)) {
        attempt_failed(r, a, why);
        return;
    }
    if (flow__run_render(r, a, t->ext->foreach, &list, &err) != FLOW_OK) {
        attempt_failed(r, a, flow__asprintf("foreach: %s", err.message));
        return;
    }
    if (!json_is_array(list)) {
        why = flow__asprintf("foreach of task '%s' needs a list, got %s", t->name,
                                   flow__json_type_name(list));
        json_decref(list);
        attempt_failed_ex(r, a, why, false);
        return;
    }
    struct foreach_state *fe = dy->fe;
    if (!fe && !(fe = dy->fe = flow__arena_alloc(&r->act_arena, sizeof(*fe)))) {
        json_decref(list);
        attempt_failed_ex(r, a, flow__strdup("out of memory"), false);
        return;
    }
    json_decref(fe->items);
    json_decref(fe->outputs);
    flow__free(fe->first_error);
    memset(fe, 0, sizeof(*fe));
    fe->items = list;
    fe->count = json_array_size(list);
    fe->concurrency = t->ext->concurrency > 0 ? (size_t)t->ext->concurrency : 0;
    fe->outputs = json_array();
    for (size_t i = 0; fe->outputs && i < fe->count; i++)
        json_array_append_new(fe->outputs, json_null());
    if (!fe->outputs) {
        attempt_failed_ex(r, a, flow__strdup("out of memory"), false);
        return;
    }
    if (fe->count == 0) {
        foreach_finish(r, a); /* an empty list completes at once with [] */
        return;
    }
    foreach_spawn(r, a);
}


/* [L] Begin a nested flow: a child run on the same engine. Its end completes
 * this activation (end_run). */
static void expand_subflow(struct flow_run *r, struct act *a)
{
    const struct flow_task *t = act_task(a);
    struct flow *child = t->ext->subflow;
    struct act_dyn *dy = act_dyn(r, a);
    char *why = NULL;
    if (!dy) {
        attempt_failed(r, a, flow__strdup("out of memory"));
        return;
    }
    if (!flow__run_input_ready(r, a, &why)) {
        attempt_failed(r, a, why);
        return;
    }
    json_t *in = flow__run_act_input(r, a);
    if (!json_is_object(in) && !json_is_null(in)) {
        attempt_failed(r, a, flow__asprintf("the input of nested flow '%s' must be an object, "
                                            "not %s",
                                            child->name, flow__json_type_name(in)));
        return;
    }
    char id[96];
    snprintf(id, sizeof(id), "%.60s.%llu.%u", r->id, (unsigned long long)a->id, a->attempt);
    flow_error err;
    struct flow_run *c = flow__run_create(r->engine, child, json_is_object(in) ? in : NULL, id, NULL,
                                    a, &err);
    flow_err rc = FLOW_OK;
    if (c)
        FLOW__VEC_PUSH(&r->children, c, rc);
    if (!c || rc) {
        attempt_failed(r, a, flow__asprintf("nested flow '%s' could not start: %s", child->name,
                                            c ? "out of memory" : err.message));
        return;
    }
    dy->child = c;
    r->subflows_running++;
    flow__run_begin(c, NULL);
}

void flow__run_expand(struct flow_run *r, struct act *a)
{
    const struct flow_task *t = act_task(a);
    a->attempt++;
    a->status = FLOW_ACT_RUNNING;
    a->started = r->engine->clock;
    journal(r, JREC_ACT_STARTED, a, NULL);
    flow__run_notify(r, FLOW_EV_TASK_STARTED, a, NULL, 0);
    if (t->kind == TASK_SUBFLOW) {
        /* Replay: the child's journal is not kept; its end, if it came, is
         * the next input record for this activation. */
        if (!r->replaying)
            expand_subflow(r, a);
    } else {
        expand_foreach(r, a);
    }
}

/* [L] A nested run ended: its parent activation completes or fails. */
static void subflow_done(struct flow_run *child)
{
    struct act *a = child->parent_act;
    struct flow_run *r = a->run;
    if (a->status != FLOW_ACT_RUNNING || !a->dyn || a->dyn->child != child)
        return;
    a->dyn->child = NULL;
    if (r->subflows_running)
        r->subflows_running--;
    if (r->interrupting) {
        attempt_dropped(r, a);
        return;
    }
    if (child->status == FLOW_RUN_COMPLETED)
        attempt_succeeded(r, a, json_incref(child->result), NULL, NULL);
    else
        attempt_failed(r, a, flow__asprintf("nested flow '%s' %s: %s", child->flow->name,
                                            flow_run_status_name(child->status),
                                            child->error ? child->error : "no reason given"));
}

void flow__run_timed_out(struct flow_run *r)
{
    char why[128];
    snprintf(why, sizeof(why), "the run timed out after %gs", r->flow->run_timeout);
    flow__run_stop(r, FLOW_RUN_FAILED, why);
}

/* [L] Free the engine slot an attempt held. */
static void release_slot(struct flow_run *r, bool counted)
{
    struct flow_engine *e = r->engine;
    if (r->running > 0)
        r->running--;
    flow__engine_release_slot(e, r);
    if (!counted)
        return;
    e->running--;
    if (e->spawn_q.count)
        flow__engine_wake(e);
    if (e->pool_q.count && e->idle > 0)
        pthread_cond_signal(&e->pool_cond);
}

/* [L] An interrupted run's attempt ended: it is not recorded, and the
 * activation is pending again, to run as the same attempt on resume. */
static void attempt_dropped(struct flow_run *r, struct act *a)
{
    if (a->attempt > 0)
        a->attempt--;
    a->status = FLOW_ACT_PENDING;
    flow__run_check_end(r);
}

/* [L] Keep what a command said on stderr with a durable run's journal. */
static void journal_log(struct flow_run *r, struct act *a, const struct flow__cmd_result *res)
{
    if (!r->store || (!res->stderr_tail && !res->stdout_tail && res->exit_status == 0))
        return;
    journal(r, JREC_LOG, a,
            json_pack("{s:s?,s:s?,s:i}", "stdout", res->stdout_tail, "stderr", res->stderr_tail,
                      "exit_status", res->exit_status));
}

void flow__run_ctx_done(struct flow_run *r, struct flow_ctx *ctx)
{
    struct act *a = ctx->act;
    struct flow_engine *e = r->engine;
    release_slot(r, ctx->counted);
    a->ctx = NULL;
    if (r->interrupting) {
        flow__ctx_release(e, ctx);
        attempt_dropped(r, a);
        return;
    }
    if (ctx->waiting) {
        /* It asked a person: what it returned does not count; it runs
         * again once the answer is in. */
        char *request = ctx->waiting;
        ctx->waiting = NULL;
        flow__ctx_release(e, ctx);
        flow__feedback_park(r, a, request);
        flow__free(request);
        return;
    }
    const struct flow_task *t = ctx->task;
    bool ok = ctx->rc == 0 && !ctx->timed_out;
    if (ok) {
        struct directives d = {0};
        char *bad = ctx->directives ? parse_directives(r, ctx->directives, &d) : NULL;
        if (bad) {
            directives_cleanup(&d);
            flow__ctx_release(e, ctx);
            attempt_failed(r, a, bad);
            return;
        }
        json_t *out = ctx->output;
        json_t *writes = ctx->writes;
        ctx->output = NULL;
        ctx->writes = NULL;
        flow__ctx_release(e, ctx);
        attempt_succeeded(r, a, out, writes, &d);
        return;
    }
    char *error;
    if (ctx->timed_out)
        error = flow__asprintf("timed out after %gs", t->policy->timeout);
    else if (ctx->error)
        error = flow__strdup(ctx->error);
    else
        error = flow__asprintf("returned %d", ctx->rc);
    flow__ctx_release(e, ctx);
    attempt_failed(r, a, error);
}

static void state_file_release(struct flow_run *r, uint64_t version);

void flow__run_cmd_done(struct flow_run *r, struct act *a, struct flow__cmd_result *res)
{
    flow__engine_tick(r->engine);
    release_slot(r, true);
    state_file_release(r, a->cmd ? a->cmd->state_version : 0);
    if (!r->interrupting)
        journal_log(r, a, res);
    struct act_dyn *dy = act_dyn(r, a);
    if (dy) {
        flow__free(dy->stderr_tail);
        dy->stderr_tail = res->stderr_tail;
        res->stderr_tail = NULL;
        dy->exit_status = res->exit_status;
    }
    if (r->interrupting) {
        attempt_dropped(r, a);
        return;
    }
    if (res->ok) {
        struct directives d = {0};
        char *bad = parse_directives(r, res->directives, &d);
        if (bad) {
            directives_cleanup(&d);
            attempt_failed(r, a, bad);
            return;
        }
        json_t *out = res->output;
        res->output = NULL;
        attempt_succeeded(r, a, out, NULL, &d);
        return;
    }
    char *err = res->error;
    res->error = NULL;
    attempt_failed(r, a, err ? err : flow__strdup("the command failed"));
}

void flow__run_timer(struct flow_run *r, struct act *a, uint8_t kind)
{
    flow__engine_tick(r->engine);
    const struct flow_task *t = act_task(a);
    switch (kind) {
    case TIMER_RETRY:
        a->flags &= (uint8_t)~ACT_WAITING;
        if (r->stopping)
            flow__run_cancel_act(r, a, "the run stopped while it waited to retry");
        else
            flow__engine_enqueue(r->engine, a);
        break;
    case TIMER_TIMEOUT:
        if (a->cmd) {
            a->cmd->timed_out = true;
            if (a->cmd->cmd)
                flow__cmd_kill(a->cmd->cmd, SIGTERM);
        } else if (a->ctx) {
            a->ctx->timed_out = true;
            atomic_store(&a->ctx->cancelled, 1);
        }
        flow__engine_timer(r->engine, TIMER_GRACE, a, t->policy->kill_grace);
        break;
    case TIMER_GRACE:
        if (a->cmd) {
            if (a->cmd->cmd)
                flow__cmd_kill(a->cmd->cmd, SIGKILL);
        } else if (a->ctx && a->ctx->detached) {
            /* The engine abandoned the body; this attempt is over. */
            bool counted = a->ctx->counted;
            bool timed_out = a->ctx->timed_out;
            a->ctx = NULL;
            release_slot(r, counted);
            if (r->interrupting) {
                attempt_dropped(r, a);
                break;
            }
            attempt_failed(r, a,
                           timed_out ? flow__asprintf("timed out after %gs and did not stop "
                                                      "within %gs; its thread was abandoned",
                                                      t->policy->timeout, t->policy->kill_grace)
                                     : flow__strdup("cancelled; did not stop in time, its thread "
                                                    "was abandoned"));
        }
        break;
    default:
        break;
    }
}

void flow__run_cancel_act(struct flow_run *r, struct act *a, const char *why)
{
    if (a->status == FLOW_ACT_CANCELLED || a->status == FLOW_ACT_COMPLETED ||
        a->status == FLOW_ACT_FAILED)
        return;
    a->status = FLOW_ACT_CANCELLED;
    flow__free(a->error);
    a->error = flow__strdup(why);
    journal(r, JREC_ACT_CANCELLED, a, json_pack("{s:s}", "error", why));
    flow__run_notify(r, FLOW_EV_TASK_CANCELLED, a, NULL, 0);
    act_final(r, a);
    flow__run_check_end(r);
}

/* [L] Stop what runs: commands get SIGTERM then SIGKILL, C bodies are asked
 * to stop and abandoned after the grace period, nested runs are cancelled
 * with `why`. */
static void stop_running(struct flow_run *r, const char *why)
{
    struct flow_engine *e = r->engine;
    for (size_t i = 0; i < r->act_count; i++) {
        struct act *a = act_at(r, i);
        if (a->status != FLOW_ACT_RUNNING)
            continue;
        const struct flow_task *t = act_task(a);
        if (a->dyn && a->dyn->child)
            flow__run_stop(a->dyn->child, FLOW_RUN_CANCELLED, why);
        if (a->cmd) {
            a->cmd->killed = true;
            if (a->cmd->cmd)
                flow__cmd_kill(a->cmd->cmd, SIGTERM);
            flow__engine_timer(e, TIMER_GRACE, a, t->policy->kill_grace);
        } else if (a->ctx) {
            atomic_store(&a->ctx->cancelled, 1);
            flow__engine_timer(e, TIMER_GRACE, a, t->policy->kill_grace);
        }
    }
}

void flow__run_stop(struct flow_run *r, flow_run_status status, const char *why)
{
    if (r->stopping || r->status >= FLOW_RUN_COMPLETED)
        return;
    flow__engine_tick(r->engine);
    struct flow_engine *e = r->engine;
    r->stopping = true;
    r->stop_status = status;
    flow__free(r->error);
    r->error = why ? flow__strdup(why) : NULL;
    flow__engine_drop_run(e, r);
    stop_running(r, why ? why : "the parent run stopped");
    flow__run_check_end(r);
}

/* ---- the end ------------------------------------------------------------ */

static void end_run(struct flow_run *r)
{
    flow_run_status status;
    if (r->stopping)
        status = r->stop_status;
    else if (r->had_failure)
        status = FLOW_RUN_FAILED;
    else
        status = FLOW_RUN_COMPLETED;
    json_t *result = NULL;
    if (status == FLOW_RUN_COMPLETED) {
        if (r->flow->result) {
            flow_error err;
            if (flow__run_render(r, NULL, r->flow->result, &result, &err) != FLOW_OK) {
                status = FLOW_RUN_FAILED;
                flow__free(r->error);
                r->error = flow__asprintf("result: %s", err.message);
                result = NULL;
            }
        } else if (r->terminate_result) {
            result = json_incref(r->terminate_result);
        } else if (r->last_completed) {
            result = json_incref(r->last_completed->output);
        }
    }
    r->result = result ? result : json_null();
    r->status = status;
    flow__engine_forget_run(r->engine, r);
    journal(r, JREC_RUN_ENDED, NULL,
            json_pack("{s:s,s:O,s:s?}", "status", flow_run_status_name(status), "result",
                      r->result, "error", r->error));
    flow__journal_commit(&r->journal);
    flow__run_notify(r, FLOW_EV_RUN_ENDED, NULL, NULL, 0);
    if (!r->on_event || !r->obs_listed) {
        r->ended = true;
        pthread_cond_broadcast(&r->ended_cond);
    }
    if (r->parent_act)
        subflow_done(r);
}

/* [L] Nothing runs any more in a pausing run: it is paused. What is
 * pending stays pending, for flow_run_resume. */
static void pause_done(struct flow_run *r)
{
    const char *why = r->pause_reason ? r->pause_reason : "paused";
    if (r->journal_moved) /* a task's pause has just taken one */
        flow__run_checkpoint(r, NULL, r->interrupting ? "interrupted" : "pause");
    journal(r, JREC_PAUSED, NULL, json_pack("{s:s}", "reason", why));
    flow__free(r->error);
    r->error = flow__strdup(why);
    r->status = FLOW_RUN_PAUSED;
    flow__engine_forget_run(r->engine, r);
    flow__journal_commit(&r->journal);
    flow__run_notify(r, FLOW_EV_RUN_ENDED, NULL, NULL, 0);
    if (!r->on_event || !r->obs_listed) {
        r->ended = true;
        pthread_cond_broadcast(&r->ended_cond);
    }
}

void flow__run_check_end(struct flow_run *r)
{
    if (r->replaying || r->status != FLOW_RUN_RUNNING || r->running > 0)
        return;
    if (r->propagating)
        return; /* the outer caller checks again */
    if (r->unfinished > 0) {
        if (!r->pausing && !r->stopping && !r->wait_for_people && flow__feedback_only_people(r)) {
            /* Only people can let it go on: pause until they answer. */
            char *ids = flow__feedback_open_ids(r);
            flow__free(r->pause_reason);
            r->pause_reason = flow__asprintf("waiting for feedback: %s", ids ? ids : "?");
            flow__free(ids);
            r->pausing = true;
        }
        if (r->pausing && !r->stopping && !r->subflows_running)
            pause_done(r);
        return;
    }
    end_run(r);
}

void flow__run_pause(struct flow_run *r, const char *why, bool interrupt)
{
    if (r->status != FLOW_RUN_RUNNING || r->stopping)
        return;
    if (r->pausing && (!interrupt || r->interrupting))
        return;
    struct flow_engine *e = r->engine;
    flow__engine_tick(e);
    r->pausing = true;
    flow__free(r->pause_reason);
    r->pause_reason = flow__strdup(interrupt ? "interrupted" : why && *why ? why : "paused");
    flow__engine_unqueue_run(e, r);
    if (interrupt) {
        r->interrupting = true;
        stop_running(r, "interrupted");
    }
    flow__run_check_end(r);
}

void flow__run_checkpoint(struct flow_run *r, struct act *a, const char *reason)
{
    r->checkpoints++;
    journal(r, JREC_CHECKPOINT, a,
            json_pack("{s:I,s:s}", "id", (json_int_t)r->checkpoints, "reason", reason));
    r->journal_moved = false;
}

void flow__run_checkpoint_tick(struct flow_run *r)
{
    if (r->status != FLOW_RUN_RUNNING || r->stopping || r->pausing || r->checkpoint_every <= 0)
        return;
    flow__engine_tick(r->engine);
    if (r->journal_moved) /* else the last checkpoint is this one */
        flow__run_checkpoint(r, NULL, "periodic");
    flow__engine_run_timer_of(r->engine, r, TIMER_CHECKPOINT, r->checkpoint_every);
}

/* ---- inputs, commands --------------------------------------------------- */

/* [L] Build the activation's input: the trigger's (explicit, or from its
 * sources), then the task's `input` template over it, whose `input` root is
 * the trigger's input. */
static flow_err build_input(struct flow_run *r, struct act *a, flow_error *err)
{
    if (a->flags & ACT_INPUT_READY)
        return FLOW_OK;
    json_t *base = a->input;
    if (!base) {
        if (a->nsrc == 1) {
            base = json_incref(a->src.one->output);
        } else if (a->nsrc > 1) {
            base = json_object();
            for (uint32_t i = 0; base && i < a->nsrc; i++) {
                struct act *s = a->src.many[i];
                const char *name = task_name(r, s->stands_for ? s->stands_for->task : s->task);
                json_object_set(base, name, s->output);
            }
            if (!base)
                return flow__error(err, FLOW_ENOMEM, "out of memory building an input");
        } else {
            base = json_null();
        }
        a->input = base;
    }
    const struct flow_task *t = act_task(a);
    /* A foreach parent's `input` template is its children's (item, index). */
    bool foreach_parent = t->ext && t->ext->foreach && !(a->dyn && a->dyn->parent);
    if (t->ext && t->ext->input && !foreach_parent) {
        json_t *out = NULL;
        flow_err rc = flow__run_render(r, a, t->ext->input, &out, err);
        if (rc)
            return rc;
        json_decref(a->input);
        a->input = out;
    }
    a->flags |= ACT_INPUT_READY;
    return FLOW_OK;
}

json_t *flow__run_act_input(struct flow_run *r, struct act *a)
{
    flow_error err;
    if (build_input(r, a, &err) != FLOW_OK && !a->input)
        return json_null();
    return a->input;
}

struct cmd_scratch {
    FLOW__VEC(char *) strings;
    const char **argv;
    const char **env;
};

void flow__run_cmd_scratch_free(void *p)
{
    struct cmd_scratch *s = p;
    if (!s)
        return;
    for (size_t i = 0; i < s->strings.count; i++)
        flow__free(s->strings.items[i]);
    FLOW__VEC_FREE(&s->strings);
    flow__free(s->argv);
    flow__free(s->env);
    flow__free(s);
}

static bool keep(struct cmd_scratch *s, char *str)
{
    flow_err rc = FLOW_OK;
    if (str)
        FLOW__VEC_PUSH(&s->strings, str, rc);
    if (!str || rc) {
        flow__free(str);
        return false;
    }
    return true;
}

/* [L] The run's private directory for command files, made on first use. */
static const char *work_dir(struct flow_run *r, char **error)
{
    if (r->work_dir)
        return r->work_dir;
    const char *base = getenv("TMPDIR");
    char *tmpl = flow__asprintf("%s/flow-%s-XXXXXX", base && *base ? base : "/tmp", r->id);
    if (!tmpl || !mkdtemp(tmpl)) {
        *error = flow__asprintf("cannot create a work directory for commands: %s",
                                strerror(errno));
        flow__free(tmpl);
        return NULL;
    }
    r->work_dir = tmpl;
    r->own_work_dir = true;
    return r->work_dir;
}

/* [L] The path of a file holding the current state, written once per
 * state version and shared by the commands that start meanwhile. */
static const char *state_file(struct flow_run *r, char **error)
{
    struct state_file *cur = r->state_files.count ? &r->state_files.items[r->state_files.count - 1]
                                                  : NULL;
    if (cur && cur->version == r->state_version) {
        cur->users++;
        return cur->path;
    }
    const char *dir = work_dir(r, error);
    if (!dir)
        return NULL;
    char *path = flow__asprintf("%s/state-%llu.json", dir, (unsigned long long)r->state_version);
    size_t flags = JSON_COMPACT | flow__json_real_flags(r->state);
    if (!path || json_dump_file(r->state, path, flags) != 0) {
        *error = flow__asprintf("cannot write the state file for a command: %s",
                                path ? strerror(errno) : "out of memory");
        flow__free(path);
        return NULL;
    }
    struct state_file sf = {.version = r->state_version, .path = path, .users = 1};
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&r->state_files, sf, rc);
    if (rc) {
        unlink(path);
        flow__free(path);
        *error = flow__strdup("out of memory");
        return NULL;
    }
    /* Older versions nobody uses any more go now. */
    size_t kept = 0;
    for (size_t i = 0; i + 1 < r->state_files.count; i++) {
        struct state_file *old = &r->state_files.items[i];
        if (old->users == 0) {
            unlink(old->path);
            flow__free(old->path);
        } else {
            r->state_files.items[kept++] = *old;
        }
    }
    r->state_files.items[kept++] = r->state_files.items[r->state_files.count - 1];
    r->state_files.count = kept;
    return r->state_files.items[kept - 1].path;
}

static void state_file_release(struct flow_run *r, uint64_t version)
{
    for (size_t i = 0; i < r->state_files.count; i++) {
        struct state_file *sf = &r->state_files.items[i];
        if (sf->version == version && sf->users > 0) {
            sf->users--;
            return;
        }
    }
}

bool flow__run_prepare_cmd(struct flow_run *r, struct act *a, struct flow__cmd_spec *spec,
                           void **scratch, char **error)
{
    const struct flow_task *t = act_task(a);
    const struct task_ext *x = t->ext;
    struct cmd_scratch *s = flow__calloc(1, sizeof(*s));
    flow_error err;
    *error = NULL;
    *scratch = s;
    memset(spec, 0, sizeof(*spec));
    if (!s)
        goto out_nomem;
    /* The input first: argv, env and cwd templates may read `input`. */
    if (build_input(r, a, &err) != FLOW_OK)
        goto out_err;
    if (t->kind == TASK_COMMAND) {
        s->argv = flow__calloc(x->argc + 1, sizeof(*s->argv));
        if (!s->argv)
            goto out_nomem;
        for (size_t i = 0; i < x->argc; i++) {
            char *arg = NULL;
            if (flow__run_render_string(r, a, x->argv[i], &arg, &err) != FLOW_OK)
                goto out_err;
            if (!keep(s, arg))
                goto out_nomem;
            s->argv[i] = arg;
        }
        spec->argv = s->argv;
    } else {
        char *script = NULL;
        if (flow__run_render_string(r, a, x->shell, &script, &err) != FLOW_OK)
            goto out_err;
        if (!keep(s, script))
            goto out_nomem;
        spec->shell = script;
    }
    if (x->env.count) {
        s->env = flow__calloc(x->env.count + 1, sizeof(*s->env));
        if (!s->env)
            goto out_nomem;
        for (size_t i = 0; i < x->env.count; i++) {
            char *value = NULL;
            if (flow__run_render_string(r, a, x->env.items[i].value, &value, &err) != FLOW_OK)
                goto out_err;
            char *kv = flow__asprintf("%s=%s", x->env.items[i].name, value);
            flow__free(value);
            if (!keep(s, kv))
                goto out_nomem;
            s->env[i] = kv;
        }
        spec->env = s->env;
    }
    if (x->cwd) {
        char *cwd = NULL;
        if (flow__run_render_string(r, a, x->cwd, &cwd, &err) != FLOW_OK)
            goto out_err;
        if (!keep(s, cwd))
            goto out_nomem;
        spec->cwd = cwd;
    }
    spec->input = flow__run_act_input(r, a);
    spec->state_path = state_file(r, error);
    if (!spec->state_path)
        return false;
    a->cmd->state_version = r->state_version;
    spec->work_dir = work_dir(r, error);
    if (!spec->work_dir)
        return false;
    spec->run_id = r->id;
    spec->task = t->name;
    spec->activation = a->id;
    spec->attempt = (int)a->attempt;
    spec->output_mode = t->policy->output_mode;
    spec->output_limit = t->policy->output_limit;
    return true;
out_err:
    *error = flow__strdup(err.message);
    return false;
out_nomem:
    *error = flow__strdup("out of memory preparing the command");
    return false;
}

/* ---- public API --------------------------------------------------------- */

const char *flow_run_status_name(flow_run_status s)
{
    static const char *const names[] = {"pending",   "running", "paused",
                                        "completed", "failed",  "cancelled"};
    return (unsigned)s < FLOW__ARRAY_LEN(names) ? names[s] : "unknown";
}

const char *flow_act_status_name(flow_act_status s)
{
    static const char *const names[] = {"pending", "running", "completed",
                                        "failed",  "skipped", "cancelled"};
    return (unsigned)s < FLOW__ARRAY_LEN(names) ? names[s] : "unknown";
}

/* A sortable, unique run id: UTC time plus 48 random bits. */
static void new_run_id(char *out, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    unsigned char rnd[6] = {0};
    if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 20);
        memcpy(rnd, &x, sizeof(rnd));
    }
    snprintf(out, len, "%04d%02d%02d-%02d%02d%02d-%02x%02x%02x%02x%02x%02x", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5]);
}

static bool valid_run_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n >= 64)
        return false;
    for (const char *p = id; *p; p++) {
        if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return false;
    }
    return id[0] != '.';
}

void flow__run_destroy(struct flow_run *r)
{
    /* First: a durable journal writes what is left and stops calling our
     * hooks before anything they touch goes away. */
    flow__journal_close(&r->journal);
    for (size_t i = 0; i < r->children.count; i++)
        flow__run_destroy(r->children.items[i]);
    FLOW__VEC_FREE(&r->children);
    for (size_t i = 0; i < r->act_count; i++) {
        struct act *a = act_at(r, i);
        json_decref(a->input);
        json_decref(a->output);
        flow__free(a->error);
        if (a->nsrc > 1)
            flow__free(a->src.many);
        if (a->dyn) {
            json_decref(a->dyn->item);
            flow__free(a->dyn->stderr_tail);
            if (a->dyn->fe) {
                json_decref(a->dyn->fe->items);
                json_decref(a->dyn->fe->outputs);
                flow__free(a->dyn->fe->first_error);
            }
        }
    }
    for (size_t i = 0; i < r->groups.count; i++) {
        json_decref(r->groups.items[i]->outputs);
        flow__free(r->groups.items[i]);
    }
    FLOW__VEC_FREE(&r->groups);
    FLOW__VEC_FREE(&r->held);
    flow__arena_cleanup(&r->act_arena);
    flow__free(r->act_chunks);
    flow__journal_close(&r->journal);
    for (size_t i = 0; i < r->state_files.count; i++) {
        unlink(r->state_files.items[i].path);
        flow__free(r->state_files.items[i].path);
    }
    FLOW__VEC_FREE(&r->state_files);
    if (r->own_work_dir && r->work_dir)
        rmdir(r->work_dir);
    flow__free(r->work_dir);
    FLOW__VEC_FREE(&r->obs);
    FLOW__VEC_FREE(&r->sigs);
    json_decref(r->inputs);
    json_decref(r->state);
    json_decref(r->result);
    json_decref(r->terminate_result);
    flow__free(r->error);
    flow__free(r->pause_reason);
    flow__feedback_cleanup(r);
    flow__free(r->trt);
    flow__free(r->leaf_state);
    pthread_cond_destroy(&r->ended_cond);
    flow_free(r->flow);
    flow__free(r);
}

/* Make a run (not started). [L] for nested runs; flow_run_start calls it
 * without the lock, before the run is visible to anyone. */
struct flow_run *flow__run_create(struct flow_engine *e, struct flow *f, json_t *inputs,
                                   const char *run_id, const char *start_task,
                                   struct act *parent, flow_error *err)
{
    struct flow_run *r = flow__calloc(1, sizeof(*r));
    if (!r)
        goto out_nomem;
    pthread_cond_init(&r->ended_cond, NULL);
    atomic_init(&r->interrupt, 0);
    flow__arena_init(&r->act_arena, 64 * 1024);
    r->engine = e;
    flow__ref(f);
    r->flow = f;
    if (run_id)
        snprintf(r->id, sizeof(r->id), "%s", run_id);
    else
        new_run_id(r->id, sizeof(r->id));
    r->status = FLOW_RUN_PENDING;
    r->start_task = start_task;
    r->parent_act = parent;
    r->max_running = f->type == FLOW_TYPE_SEQUENTIAL ? 1 : 0;
    r->inputs = inputs ? json_deep_copy(inputs) : json_object();
    r->state = json_copy(f->initial_state);
    r->trt = flow__calloc(f->tasks.count ? f->tasks.count : 1, sizeof(*r->trt));
    r->leaf_state = flow__calloc(f->leaf_count ? f->leaf_count : 1, 1);
    if (!r->inputs || !r->state || !r->trt || !r->leaf_state ||
        json_object_update(r->state, r->inputs) ||
        flow__journal_memory_open(&r->journal) != FLOW_OK)
        goto out_nomem;
    if (f->schema) {
        char *bad = flow__schema_check(f->schema, r->state);
        if (bad) {
            flow__error(err, FLOW_EINVAL, "the initial state does not match state_schema: %s",
                        bad);
            flow__free(bad);
            flow__run_destroy(r);
            return NULL;
        }
    }
    return r;
out_nomem:
    if (r)
        flow__run_destroy(r);
    flow__error(err, FLOW_ENOMEM, "out of memory starting a run");
    return NULL;
}

/* [L] Start a created run: journal it, make it visible, fire its start. */
void flow__run_begin(struct flow_run *r, const struct flow_task *start)
{
    struct flow_engine *e = r->engine;
    struct flow *f = r->flow;
    f->frozen = true;
    json_t *created = json_pack("{s:s,s:s?,s:O,s:s?,s:i}", "flow", f->name, "version",
                                f->version, "inputs", r->inputs, "start", r->start_task,
                                "format", FLOW__JOURNAL_FORMAT);
    if (created && r->store && !r->replaying) {
        /* What readers of the store need without the flow: task names. */
        json_object_set_new(created, "tasks", flow__run_task_names(f));
        json_object_set(created, "state", r->state);
        if (r->strict)
            json_object_set_new(created, "durability", json_string("strict"));
        if (r->checkpoint_every > 0)
            json_object_set_new(created, "checkpoint_every", json_real(r->checkpoint_every));
    }
    journal(r, JREC_RUN_CREATED, NULL, created);
    r->next = e->runs;
    if (e->runs)
        e->runs->prev = r;
    e->runs = r;
    r->status = FLOW_RUN_RUNNING;
    flow__run_notify(r, FLOW_EV_RUN_STARTED, NULL, NULL, 0);
    if (f->run_timeout > 0)
        flow__engine_run_timer(e, r, f->run_timeout);
    if (start) {
        fire(r, start->index, r->inputs, NULL, 0);
    } else {
        for (size_t i = 0; i < f->start_tasks.count && !r->stopping; i++)
            fire(r, f->start_tasks.items[i], r->inputs, NULL, 0);
    }
    flow__run_check_end(r);
}

flow_run *flow_run_start(flow_engine *e, flow *f, const flow_run_options *opts, flow_error *err)
{
    flow_run_options none = {0};
    if (!opts)
        opts = &none;
    if (!e || !f)
        return flow__error(err, FLOW_EINVAL, "flow_run_start needs an engine and a flow"), NULL;
    pthread_mutex_lock(&e->lock); /* validation touches the flow's graph */
    flow_err rc = flow_validate(f, NULL, err);
    pthread_mutex_unlock(&e->lock);
    if (rc)
        return NULL;
    if (opts->inputs && !json_is_object(opts->inputs)) {
        flow__error(err, FLOW_EINVAL, "run inputs must be a JSON object");
        return NULL;
    }
    if (opts->run_id && !valid_run_id(opts->run_id)) {
        flow__error(err, FLOW_EINVAL,
                    "invalid run id '%s' (use up to 63 letters, digits, '-', '_' and '.')",
                    opts->run_id);
        return NULL;
    }
    const struct flow_task *start = NULL;
    if (opts->start_task) {
        start = flow_find_task(f, opts->start_task);
        if (!start) {
            flow__error(err, FLOW_ENOTFOUND, "unknown task '%s' for --start", opts->start_task);
            return NULL;
        }
        if (!start->is_start && !start->entry) {
            flow__error(err, FLOW_EINVAL,
                        "task '%s' cannot be an entry point: mark it 'entry: true' or make it a "
                        "start task",
                        start->name);
            return NULL;
        }
    }
    struct flow_run *r = flow__run_create(e, f, opts->inputs, opts->run_id, start ? start->name : NULL,
                                    NULL, err);
    if (!r)
        return NULL;
    r->on_event = opts->on_event;
    r->event_udata = opts->event_udata;
    if (opts->work_dir && !(r->work_dir = flow__strdup(opts->work_dir))) {
        flow__run_destroy(r);
        flow__error(err, FLOW_ENOMEM, "out of memory starting a run");
        return NULL;
    }
    if (opts->store && flow__run_attach_store(r, opts->store, opts, err) != FLOW_OK) {
        flow__run_destroy(r);
        return NULL;
    }
    r->wait_for_people = opts->wait;
    pthread_mutex_lock(&e->lock);
    flow__engine_tick(e);
    flow__run_begin(r, start);
    if (r->checkpoint_every > 0)
        flow__engine_run_timer_of(e, r, TIMER_CHECKPOINT, r->checkpoint_every);
    pthread_mutex_unlock(&e->lock);
    flow__journal_durable_ready(&r->journal);
    return r;
}

/* ---- durable runs ------------------------------------------------------- */

static void hook_control(void *udata, const char *kind, const char *arg)
{
    struct flow_run *r = udata;
    struct flow_engine *e = r->engine;
    pthread_mutex_lock(&e->lock);
    flow__engine_tick(e);
    if (!strcmp(kind, "feedback"))
        flow__feedback_control(r, arg);
    else if (!strcmp(kind, "pause"))
        flow__run_pause(r, arg ? arg : "paused from another process", false);
    else if (!strcmp(kind, "cancel"))
        flow__run_stop(r, FLOW_RUN_CANCELLED, arg && *arg ? arg : "cancelled from another process");
    pthread_mutex_unlock(&e->lock);
}

static void hook_failed(void *udata, const char *message)
{
    struct flow_run *r = udata;
    struct flow_engine *e = r->engine;
    pthread_mutex_lock(&e->lock);
    if (!r->journal_failed)
        journal_broke(r, message);
    pthread_mutex_unlock(&e->lock);
}

flow_err flow__run_attach_store(struct flow_run *r, struct flow_store *store,
                                const flow_run_options *opts, flow_error *err)
{
    bool resuming = opts->run_id && (opts->from_checkpoint || r->replaying);
    r->store = store;
    r->checkpoint_every = opts->checkpoint_every > 0 ? opts->checkpoint_every
                                                     : r->flow->checkpoint_every;
    if (!resuming) {
        char hash[64];
        struct flow_engine *e = r->engine;
        pthread_mutex_lock(&e->lock);
        bool hashed = flow__flow_hash(r->flow, hash, sizeof(hash));
        pthread_mutex_unlock(&e->lock);
        if (!hashed)
            return flow__error(err, FLOW_ENOMEM, "out of memory starting a run");
        struct flow__run_meta m = {0};
        snprintf(m.id, sizeof(m.id), "%s", r->id);
        m.flow = (char *)r->flow->name;
        m.version = (char *)r->flow->version;
        m.def_hash = hash;
        m.source = (char *)opts->source;
        m.inputs = r->inputs;
        m.status = FLOW_RUN_RUNNING;
        m.created_at = flow__wall_time();
        flow_err rc;
        FLOW__WITH_STORE(store, rc = flow__store_run_create(store->backend, &m, err));
        if (rc != FLOW_OK)
            return rc;
    }
    struct flow__journal memj = r->journal;
    if (opts->durability != FLOW_DURABILITY_STORE)
        r->strict = opts->durability == FLOW_DURABILITY_STRICT;
    struct flow__durable_opts o = {
        .run_id = r->id,
        .strict = r->strict,
        .lease = true,
        .hooks = {.control = hook_control,
                  .failed = hook_failed,
                  .answered = flow__feedback_claimed,
                  .udata = r},
    };
    flow_err rc = flow__journal_durable_open(&r->journal, store, &o, err);
    if (rc != FLOW_OK) {
        r->journal = memj;
        r->store = NULL;
        return rc;
    }
    flow__journal_close(&memj);
    return FLOW_OK;
}

/* Tell the store how the run ended (or that it paused), once its journal is
 * durable. When either write fails the run reads failed, with the store's
 * message: whoever waits for it must not be told of an end the store does
 * not hold (its status there stays as it was; it can be resumed). */
static void persist_end(struct flow_run *r)
{
    flow_error err = {0};
    flow_err rc = flow__journal_wait(&r->journal, &err);
    if (rc == FLOW_OK) {
        double ended = r->status >= FLOW_RUN_COMPLETED ? flow__wall_time() : 0;
        FLOW__WITH_STORE(r->store, rc = flow__store_run_set_status(r->store->backend, r->id,
                                                                   (int)r->status, ended, &err));
    }
    if (rc == FLOW_OK)
        return;
    struct flow_engine *e = r->engine;
    pthread_mutex_lock(&e->lock);
    if (!(r->status == FLOW_RUN_FAILED && r->journal_failed)) { /* else it says so already */
        char *why = flow__asprintf("cannot record the end of run '%s': %s", r->id, err.message);
        if (why) {
            flow__free(r->error);
            r->error = why;
        }
        r->status = FLOW_RUN_FAILED;
    }
    pthread_mutex_unlock(&e->lock);
}

flow_run_status flow_run_wait(flow_run *r)
{
    struct flow_engine *e = r->engine;
    pthread_mutex_lock(&e->lock);
    while (!r->ended)
        pthread_cond_wait(&r->ended_cond, &e->lock);
    bool persist = r->store && !r->end_persisted;
    r->end_persisted = true;
    pthread_mutex_unlock(&e->lock);
    if (r->store)
        flow__journal_wait(&r->journal, NULL);
    if (persist)
        persist_end(r);
    pthread_mutex_lock(&e->lock);
    flow_run_status s = r->status;
    pthread_mutex_unlock(&e->lock);
    return s;
}

void flow_run_pause(flow_run *r, const char *reason)
{
    struct flow_engine *e = r->engine;
    pthread_mutex_lock(&e->lock);
    flow__run_pause(r, reason, false);
    pthread_mutex_unlock(&e->lock);
}

void flow_run_cancel(flow_run *r, const char *reason)
{
    struct flow_engine *e = r->engine;
    pthread_mutex_lock(&e->lock);
    flow__run_stop(r, FLOW_RUN_CANCELLED, reason && *reason ? reason : "cancelled");
    pthread_mutex_unlock(&e->lock);
}

void flow_run_interrupt(flow_run *r)
{
    atomic_store(&r->interrupt, 1);
    flow__engine_wake(r->engine);
}

/* [L] Take a run and its nested runs out of the engine's list. */
static void run_unlink(struct flow_engine *e, struct flow_run *r)
{
    for (size_t i = 0; i < r->children.count; i++)
        run_unlink(e, r->children.items[i]);
    if (r->status == FLOW_RUN_PENDING)
        return; /* never linked */
    if (r->prev)
        r->prev->next = r->next;
    else if (e->runs == r)
        e->runs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

void flow_run_free(flow_run *r)
{
    if (!r)
        return;
    flow_run_wait(r);
    struct flow_engine *e = r->engine;
    pthread_mutex_lock(&e->lock);
    run_unlink(e, r);
    pthread_mutex_unlock(&e->lock);
    flow__run_destroy(r);
}

flow_run_status flow_run_simple(flow *f, json_t *inputs, int jobs, json_t **result,
                                flow_error *err)
{
    if (result)
        *result = NULL;
    flow_engine_options eo = {.jobs = jobs};
    flow_engine *e = flow_engine_new(&eo, err);
    if (!e)
        return FLOW_RUN_FAILED;
    flow_run_options ro = {.inputs = inputs};
    flow_run *r = flow_run_start(e, f, &ro, err);
    if (!r) {
        flow_engine_free(e);
        return FLOW_RUN_FAILED;
    }
    flow_run_status s = flow_run_wait(r);
    if (result)
        *result = json_incref(r->result);
    if (s != FLOW_RUN_COMPLETED && err)
        flow__error(err, FLOW_ETASK, "%s", r->error ? r->error : flow_run_status_name(s));
    flow_run_free(r);
    flow_engine_free(e);
    return s;
}

const char *flow_run_id(const flow_run *r)
{
    return r->id;
}

flow_run_status flow_run_get_status(flow_run *r)
{
    pthread_mutex_lock(&r->engine->lock);
    flow_run_status s = r->status;
    pthread_mutex_unlock(&r->engine->lock);
    return s;
}

json_t *flow_run_result(flow_run *r)
{
    return r->result;
}

const char *flow_run_error(flow_run *r)
{
    return r->error;
}

json_t *flow_run_state(flow_run *r)
{
    pthread_mutex_lock(&r->engine->lock);
    json_t *s = json_deep_copy(r->state);
    pthread_mutex_unlock(&r->engine->lock);
    return s;
}

size_t flow_run_activation_count(flow_run *r)
{
    return r->act_count;
}

flow_err flow_run_activation(flow_run *r, size_t i, flow_activation_info *info)
{
    if (i >= r->act_count)
        return FLOW_ENOTFOUND;
    struct act *a = act_at(r, i);
    info->id = a->id;
    info->task = task_name(r, a->task);
    info->status = (flow_act_status)a->status;
    info->attempts = (int)a->attempt;
    info->created_at = 0;
    info->started_at = a->started;
    info->ended_at = a->ended;
    info->input = a->input;
    info->output = a->output;
    info->error = a->error;
    info->path = task_name(r, a->task);
    info->stderr_tail = a->dyn ? a->dyn->stderr_tail : NULL;
    info->exit_status = a->dyn ? a->dyn->exit_status : -1;
    return FLOW_OK;
}

json_t *flow_run_to_json(flow_run *r)
{
    json_t *tasks = json_array();
    json_t *root = json_pack("{s:s,s:s,s:s,s:O,s:s?,s:o}", "id", r->id, "flow", r->flow->name,
                             "status", flow_run_status_name(r->status), "result",
                             r->result ? r->result : json_null(), "error", r->error, "tasks",
                             tasks);
    if (!root)
        return NULL;
    for (size_t i = 0; i < r->act_count; i++) {
        struct act *a = act_at(r, i);
        json_t *jt = json_pack("{s:s,s:I,s:s,s:i,s:o,s:o,s:s?}", "task", task_name(r, a->task),
                               "activation", (json_int_t)a->id, "status",
                               flow_act_status_name((flow_act_status)a->status), "attempts",
                               (int)a->attempt, "started_at", flow__json_time(a->started), "ended_at",
                               flow__json_time(a->ended), "error", a->error);
        if (jt && a->output)
            json_object_set(jt, "output", a->output);
        if (jt && a->dyn && a->dyn->stderr_tail)
            json_object_set_new(jt, "stderr_tail", json_string(a->dyn->stderr_tail));
        if (jt && a->dyn && a->dyn->exit_status >= 0)
            json_object_set_new(jt, "exit_status", json_integer(a->dyn->exit_status));
        if (jt && a->dyn && a->dyn->parent) {
            json_object_set_new(jt, "parent", json_integer((json_int_t)a->dyn->parent->id));
            json_object_set_new(jt, "index", json_integer((json_int_t)a->dyn->index));
        }
        json_array_append_new(tasks, jt);
    }
    return root;
}
