/* activation.c -- the records of a run: activations (chunked, never freed
 * before the run), journal records, observer events, and the shared state.
 * Everything here runs with the engine lock held. */
#include "util/compat.h"

#include <stdio.h>
#include <string.h>

#include "core/run_int.h"
#include "journal/durable.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/redact.h"

/* ---- activations -------------------------------------------------------- */

/* An activation is paid for per pending task (docs/internals/performance.md). */
_Static_assert(sizeof(struct act) <= 80, "struct act grew");

/* [L] A new activation of `task`, counted against max_activations by the
 * caller. NULL when out of memory. */
struct act *flow__act_new(struct flow_run *r, uint32_t task)
{
    size_t i = r->act_count;
    if (i >= UINT32_MAX - 1)
        return NULL; /* ids are 32 bits in the journal */
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
        r->act_chunks[i / ACT_CHUNK] =
            flow__arena_alloc(&r->act_arena, ACT_CHUNK * sizeof(struct act));
        if (!r->act_chunks[i / ACT_CHUNK])
            return NULL;
    }
    struct act *a = &r->act_chunks[i / ACT_CHUNK][i % ACT_CHUNK]; /* zeroed */
    a->id = (uint64_t)i + 1;
    a->run = r;
    a->task = task;
    a->status = FLOW_ACT_PENDING;
    r->act_count++;
    r->trt[task].last = a->id;
    return a;
}

/* [L] Writing the journal failed: the run stops (going on would do work
 * nobody could find again); what was committed stays, so it can be resumed
 * once the cause is fixed. `message` NULL: ask the journal. */
void flow__run_journal_broke(struct flow_run *r, const char *message)
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
void flow__run_journal_src(struct flow_run *r, uint8_t type, const struct act *a, json_t *payload,
                           const struct act *src)
{
    if (!flow__run_journaling(r)) {
        json_decref(payload); /* in the store already, or nobody keeps it */
        return;
    }
    struct flow__jrec rec = {
        .type = type,
        .attempt = a ? (uint8_t)(a->attempt > 255 ? 255 : a->attempt) : 0,
        .task = a ? a->task : 0,
        .act = a ? (uint32_t)a->id : 0,
        .src = src ? (uint32_t)src->id : 0,
        .time = r->engine->clock,
        .payload = payload,
    };
    r->journal_moved = true;
    if (flow__journal_append(&r->journal, &rec) != FLOW_OK && !r->journal_failed)
        flow__run_journal_broke(r, NULL);
}

void flow__run_journal(struct flow_run *r, uint8_t type, const struct act *a, json_t *payload)
{
    flow__run_journal_src(r, type, a, payload, NULL);
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
        .index = -1,
    };
    /* Read here, under the lock: the loop delivers without it. */
    if (a && a->dyn && a->dyn->parent) {
        ev.item = a->dyn->item;
        ev.index = (long)a->dyn->index;
    }
    /* Completed events carry the error an `on_error: ignore` absorbed. */
    if (a && act_error(a) &&
        (type == FLOW_EV_TASK_FAILED || type == FLOW_EV_TASK_RETRYING ||
         type == FLOW_EV_TASK_CANCELLED || type == FLOW_EV_TASK_COMPLETED))
        ev.error = flow__redact_dup(r->secrets, act_error(a)); /* out of memory: none */
    if (type == FLOW_EV_TASK_WAITING) {
        /* The reason is made for this event: it travels as a copy. */
        ev.error = flow__redact_dup(r->secrets, label);
        ev.label = NULL;
    }
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&r->obs, ev, rc);
    if (rc) {
        flow__free(ev.error);
        return; /* an observer missing an event is not worth failing a run */
    }
    if (!r->obs_listed) {
        struct flow_engine *e = r->engine;
        FLOW__VEC_PUSH(&e->obs_runs, r, rc);
        if (!rc)
            r->obs_listed = true;
        flow__engine_wake(e);
    }
}

void flow__obs_events_free(struct obs_event *events, size_t count)
{
    for (size_t i = 0; i < count; i++)
        flow__free(events[i].error);
    flow__free(events);
}

void flow__run_deliver(struct flow_run *r, struct obs_event *events, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct obs_event *o = &events[i];
        flow_event ev = {
            .type = (flow_event_type)o->type,
            .run_id = r->id,
            .task = o->act ? flow__task_name(r, o->act->task) : NULL,
            .activation = o->act ? o->act->id : 0,
            .attempt = (int)o->attempt,
            .error = o->type == FLOW_EV_TASK_WAITING ? NULL : o->error,
            .label = o->type == FLOW_EV_TASK_WAITING ? o->error : o->label,
            .delay = o->delay,
            .time = o->time,
            .run_status = (flow_run_status)o->run_status,
            .index = o->index,
            .item = o->item,
        };
        if (o->type == FLOW_EV_RUN_ENDED)
            ev.error = r->error;
        r->on_event(&ev, r->event_udata);
    }
}

/* [L] The activation's rarely used parts, made on first use; NULL when out
 * of memory. */
struct act_dyn *flow__act_dyn(struct flow_run *r, struct act *a)
{
    if (!a->dyn) {
        a->dyn = flow__arena_alloc(&r->act_arena, sizeof(*a->dyn)); /* zeroed */
        if (a->dyn)
            a->dyn->exit_status = -1;
    }
    return a->dyn;
}

void flow__act_set_error(struct flow_run *r, struct act *a, char *error)
{
    if (!error && !a->dyn)
        return;
    struct act_dyn *dyn = flow__act_dyn(r, a);
    if (!dyn) {
        flow__free(error);
        return;
    }
    flow__free(dyn->error);
    dyn->error = error;
}

/* [L] An activation reached a final status. */
void flow__act_final(struct flow_run *r, struct act *a)
{
    a->ended = r->engine->clock;
    if (r->unfinished > 0)
        r->unfinished--;
    if (a->dyn && a->dyn->group && !a->dyn->branch_done)
        flow__group_member_done(r, a);
    if (a->dyn && a->dyn->parent)
        flow__foreach_child_done(r, a);
}

/* ---- state -------------------------------------------------------------- */

/* [L] Apply `writes` (an object; borrowed) to the state, key by key. */
void flow__run_state_write(struct flow_run *r, struct act *a, json_t *writes)
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
