/* replay.c -- flow_run_resume: rebuild a run from its journal by applying
 * the input records through the scheduler's own code, then go on (see
 * docs/internals/store.md, "Replay"), and time travel from a checkpoint.
 * Reading a stored run and replaying it are shared with flow_run_retry
 * (retry.c). */
#include "util/compat.h"

#include <stdio.h>
#include <string.h>

#include "core/run_int.h"
#include "journal/durable.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

struct replay {
    struct flow_run *r;
    const struct flow__jrec *recs;
    size_t count;
    size_t ended_at;  /* index of the run_ended record, or count */
    flow_error *err;
    /* Records name tasks by their index in the flow as it was when they were
     * written (run_created, or a forced resume's resumed record lists the
     * names); this maps such an index to the flow's own, UINT32_MAX for a
     * task the flow no longer has. */
    uint32_t *task_map;
    size_t task_map_len;
    json_t *task_names; /* the names that task_map was made from (borrowed) */
};

/* Map the task names a record lists to the flow's tasks. */
static flow_err map_tasks(struct replay *rp, json_t *names)
{
    if (!json_is_array(names))
        return FLOW_OK; /* an old run_created without names: indexes as they are */
    size_t n = json_array_size(names);
    uint32_t *map = flow__reallocarray(rp->task_map, n ? n : 1, sizeof(*map));
    if (!map)
        return flow__error(rp->err, FLOW_ENOMEM, "out of memory resuming run '%s'", rp->r->id);
    for (size_t i = 0; i < n; i++) {
        const flow_task *t = flow_find_task(rp->r->flow, json_string_value(json_array_get(names, i)));
        map[i] = t ? t->index : UINT32_MAX;
    }
    rp->task_map = map;
    rp->task_map_len = n;
    rp->task_names = names;
    return FLOW_OK;
}

static bool counted(const struct act *a)
{
    /* foreach parents and nested flows are not attempts on a slot */
    const struct flow_task *t = act_task(a);
    if (t->kind == TASK_SUBFLOW)
        return false;
    return !(t->ext && t->ext->foreach && !(a->dyn && a->dyn->parent));
}

static bool is_foreach_parent(const struct act *a)
{
    const struct flow_task *t = act_task(a);
    return t->kind != TASK_SUBFLOW && t->ext && t->ext->foreach && !(a->dyn && a->dyn->parent);
}

static flow_err mismatch(struct replay *rp, size_t i, const char *what)
{
    const struct flow__jrec *rec = &rp->recs[i];
    struct flow_run *r = rp->r;
    if (r->stopping && r->error && strstr(r->error, "out of memory"))
        /* replay ran out of memory and stopped the run: the journal is fine */
        return flow__error(rp->err, FLOW_ENOMEM, "cannot resume run '%s': %s", r->id, r->error);
    return flow__error(rp->err, FLOW_ESTATE,
                       "the journal of run '%s' does not match its flow at record %zu (%s of "
                       "activation %u): %s; was the flow changed? (flow resume --force cannot "
                       "help here)",
                       rp->r->id, i, flow__jrec_type_name(rec->type), rec->act, what);
}

/* The activation a record names, checked against replay's own. */
static struct act *rec_act(struct replay *rp, size_t i, flow_err *rc)
{
    const struct flow__jrec *rec = &rp->recs[i];
    struct flow_run *r = rp->r;
    if (rec->act > r->act_count && r->unfinished == 0 && !r->stopping)
        /* the run was quiet here: a join waiting for a branch not taken ran */
        (void)flow__run_settle_optionals(r);
    if (rec->act == 0 || rec->act > r->act_count) {
        *rc = mismatch(rp, i, "replay created no such activation");
        return NULL;
    }
    struct act *a = flow__act_at(r, rec->act - 1);
    uint32_t task = rec->task;
    if (rp->task_map) {
        if (task >= rp->task_map_len || rp->task_map[task] == UINT32_MAX) {
            const char *name = json_string_value(json_array_get(rp->task_names, task));
            char why[200];
            snprintf(why, sizeof(why), "its task '%s' is not in the flow any more",
                     name ? name : "?");
            *rc = mismatch(rp, i, why);
            return NULL;
        }
        task = rp->task_map[task];
    }
    if (a->task != task) {
        *rc = mismatch(rp, i, "it belongs to another task");
        return NULL;
    }
    return a;
}

/* [L] An attempt's end arrives: it no longer holds a running slot. */
static void attempt_over(struct flow_run *r, struct act *a, const struct flow__jrec *rec)
{
    if (a->status == FLOW_ACT_RUNNING && counted(a) && r->running > 0)
        r->running--;
    a->attempt = rec->attempt;
    a->flags &= (uint8_t)~ACT_WAITING;
    if (a->dyn)
        a->dyn->streamed = 0; /* the events of an attempt that ended count no more */
}

static bool is_final(const struct act *a)
{
    return a->status == FLOW_ACT_COMPLETED || a->status == FLOW_ACT_FAILED ||
           a->status == FLOW_ACT_SKIPPED || a->status == FLOW_ACT_CANCELLED;
}

/* [L] A run_retried record: its roots run again (retry.c). */
static flow_err retried(struct replay *rp, size_t i)
{
    const struct flow__jrec *rec = &rp->recs[i];
    struct flow_run *r = rp->r;
    json_t *ids = json_object_get(rec->payload, "activations");
    size_t n = json_array_size(ids);
    uint32_t *roots = flow__calloc(n ? n : 1, sizeof(*roots));
    if (!roots)
        return flow__error(rp->err, FLOW_ENOMEM, "out of memory resuming run '%s'", r->id);
    for (size_t k = 0; k < n; k++) {
        json_int_t id = json_integer_value(json_array_get(ids, k));
        roots[k] = id > 0 && id <= (json_int_t)r->act_count ? (uint32_t)id : 0;
    }
    char *bad = NULL;
    flow_err rc = flow__run_retry_apply(r, roots, n, &bad);
    flow__free(roots);
    if (rc == FLOW_ENOMEM)
        rc = flow__error(rp->err, FLOW_ENOMEM, "out of memory resuming run '%s'", r->id);
    else if (rc != FLOW_OK)
        rc = mismatch(rp, i, bad ? bad : "it cannot be applied");
    flow__free(bad);
    return rc;
}

/* [L] Apply record i. Inputs whose effect derivation already produced are
 * recognised by the activation's state and skipped. */
static flow_err apply(struct replay *rp, size_t i)
{
    const struct flow__jrec *rec = &rp->recs[i];
    struct flow_run *r = rp->r;
    flow_err rc = FLOW_OK;
    struct act *a = NULL;
    r->engine->clock = rec->time;
    switch (rec->type) {
    case JREC_ACT_CREATED:
    case JREC_ACT_SKIPPED:
        rec_act(rp, i, &rc); /* derived: it must exist already */
        return rc;
    case JREC_ACT_STARTED:
        if (!(a = rec_act(rp, i, &rc)))
            return rc;
        if (a->status == FLOW_ACT_RUNNING && a->attempt == rec->attempt)
            return FLOW_OK;
        if (is_final(a))
            return mismatch(rp, i, "it had already finished");
        a->flags &= (uint8_t)~ACT_WAITING;
        if (a->dyn)
            a->dyn->streamed = 0; /* a new attempt or round streams anew */
        if (!counted(a)) {
            a->attempt = rec->attempt ? rec->attempt - 1u : 0;
            flow__run_expand(r, a);
            return FLOW_OK;
        }
        /* Counted once: a damaged journal may start an attempt over one
         * that never ended, and a count that never falls to zero would
         * keep the run from ever ending. */
        if (a->status != FLOW_ACT_RUNNING)
            r->running++;
        a->attempt = rec->attempt;
        a->status = FLOW_ACT_RUNNING;
        a->started = rec->time;
        return FLOW_OK;
    case JREC_ACT_COMPLETED: {
        if (!(a = rec_act(rp, i, &rc)))
            return rc;
        if (a->status == FLOW_ACT_COMPLETED)
            return FLOW_OK;
        if (is_final(a))
            return mismatch(rp, i, "it had already finished");
        /* The work it asked for names tasks: of this flow, as when it ran. */
        json_t *work = json_object_get(rec->payload, "work");
        char *bad = json_is_array(work) ? flow__run_check_directives(r, work) : NULL;
        if (bad) {
            rc = mismatch(rp, i, bad);
            flow__free(bad);
            return rc;
        }
        attempt_over(r, a, rec);
        flow__run_replay_completed(r, a, rec->payload);
        return FLOW_OK;
    }
    case JREC_ACT_FAILED:
    case JREC_ACT_RETRYING:
        if (!(a = rec_act(rp, i, &rc)))
            return rc;
        if (is_final(a) ||
            (rec->type == JREC_ACT_RETRYING && a->status == FLOW_ACT_PENDING &&
             a->attempt == rec->attempt))
            return FLOW_OK;
        attempt_over(r, a, rec);
        flow__run_replay_failed(r, a, json_string_value(json_object_get(rec->payload, "error")),
                                rec->type == JREC_ACT_FAILED);
        if (a->status == FLOW_ACT_PENDING && (a->flags & ACT_WAITING)) {
            /* The delay it waits is the journal's (a server's Retry-After,
             * or a backoff with jitter): a resume waits what is left. */
            json_t *d = json_object_get(rec->payload, "delay");
            struct act_dyn *dy = json_is_number(d) ? flow__act_dyn(r, a) : NULL;
            if (dy)
                dy->retry_at = rec->time + json_number_value(d);
        }
        return FLOW_OK;
    case JREC_ACT_CANCELLED:
        if (!(a = rec_act(rp, i, &rc)))
            return rc;
        if (is_final(a))
            return FLOW_OK;
        if (a->status == FLOW_ACT_RUNNING && counted(a) && r->running > 0)
            r->running--;
        flow__run_cancel_act(r, a, json_string_value(json_object_get(rec->payload, "error"))
                                       ? json_string_value(json_object_get(rec->payload, "error"))
                                       : "cancelled");
        return FLOW_OK;
    case JREC_EVENT: {
        if (!(a = rec_act(rp, i, &rc)))
            return rc;
        const char *label = json_string_value(json_object_get(rec->payload, "label"));
        if (!label)
            return mismatch(rp, i, "the event has no name");
        if (a->status == FLOW_ACT_RUNNING && act_task(a)->policy->executor == FLOW_EXEC_REMOTE) {
            /* Its worker's completion carries it again: applied once. */
            struct act_dyn *dy = flow__act_dyn(r, a);
            if (dy)
                dy->streamed++;
        }
        flow__run_emit(r, a, label, json_object_get(rec->payload, "data"), EMIT_STREAMED);
        return FLOW_OK;
    }
    case JREC_CHECKPOINT: {
        json_int_t id = json_integer_value(json_object_get(rec->payload, "id"));
        if (id > (json_int_t)r->checkpoints)
            r->checkpoints = (uint32_t)id;
        return FLOW_OK;
    }
    case JREC_RESUMED:
        return map_tasks(rp, json_object_get(rec->payload, "tasks"));
    case JREC_RUN_RETRIED:
        return retried(rp, i);
    case JREC_FEEDBACK_OPENED:
    case JREC_ACT_WAITING:
    case JREC_FEEDBACK_ANSWERED:
        if (!(a = rec_act(rp, i, &rc)))
            return rc;
        return flow__feedback_replay(r, a, rec, rp->err);
    default:
        return FLOW_OK; /* run_created, label, paused, log, a run_ended that a
                         * retry follows: derived or notes */
    }
}

/* [L] After replay: what was running runs again, what was pending is
 * queued, a stopping run finishes stopping. */
void flow__run_go_on(struct flow_run *r)
{
    struct flow_engine *e = r->engine;
    struct flow *f = r->flow;
    if (f->run_timeout > 0)
        flow__engine_run_timer(e, r, f->run_timeout);
    if (r->checkpoint_every > 0)
        flow__engine_run_timer_of(e, r, TIMER_CHECKPOINT, r->checkpoint_every);
    size_t n = r->act_count;
    double now = flow__wall_time();
    for (size_t i = 0; i < n; i++) {
        struct act *a = flow__act_at(r, i);
        /* Waiting for a retry the journal says is due later: it waits the
         * rest of its delay, on a timer. */
        double due = a->status == FLOW_ACT_PENDING && (a->flags & ACT_WAITING) && a->dyn
                         ? a->dyn->retry_at
                         : 0;
        if (a->dyn)
            a->dyn->retry_at = 0;
        if (a->status == FLOW_ACT_RUNNING) {
            if (is_foreach_parent(a))
                continue; /* its elements carry on */
            if (counted(a) && r->running > 0)
                r->running--;
            if (a->attempt > 0)
                a->attempt--; /* runs again as the same attempt */
            a->status = FLOW_ACT_PENDING;
        }
        if (a->status != FLOW_ACT_PENDING || (a->flags & ACT_PARKED && !r->stopping))
            continue; /* parked: it waits for an answer (feedback_resume) */
        if (a->flags & ACT_QUEUED)
            continue; /* a retry's live run queued it already */
        a->flags &= (uint8_t)~(ACT_WAITING | ACT_QUEUED | ACT_PARKED);
        if (r->stopping) {
            flow__run_cancel_act(r, a, "the run stopped before it started");
        } else if (due > now) {
            a->flags |= ACT_WAITING;
            flow__engine_timer(e, TIMER_RETRY, a, due - now);
        } else {
            flow__engine_enqueue(e, a);
        }
    }
    if (!r->stopping)
        flow__feedback_resume(r);
    flow__run_check_end(r);
}

/* Copy run `from`'s records up to and including checkpoint `cp` into a new
 * run (time travel); its id goes to `out`. */
static flow_err fork_from_checkpoint(struct flow_store *st, const struct flow__run_meta *meta,
                                     const struct flow__jrec *recs, size_t count,
                                     const flow_run_options *opts, char *out, size_t size,
                                     flow_error *err)
{
    char *end = NULL;
    long want = strtol(opts->from_checkpoint, &end, 10);
    if (!end || *end || want <= 0)
        return flow__error(err, FLOW_EINVAL,
                           "checkpoint '%s' of run '%s' is not a checkpoint id (1, 2, ...; see "
                           "flow checkpoints %s)",
                           opts->from_checkpoint, meta->id, meta->id);
    size_t upto = count;
    for (size_t i = 0; i < count; i++) {
        if (recs[i].type == JREC_CHECKPOINT &&
            json_integer_value(json_object_get(recs[i].payload, "id")) == want) {
            upto = i + 1;
            break;
        }
    }
    if (upto == count && !(count && recs[count - 1].type == JREC_CHECKPOINT &&
                           json_integer_value(json_object_get(recs[count - 1].payload, "id")) ==
                               want))
        return flow__error(err, FLOW_ENOTFOUND, "run '%s' has no checkpoint %ld (see flow "
                                                "checkpoints %s)",
                           meta->id, want, meta->id);
    struct flow__run_meta m = *meta;
    if (opts->new_run_id)
        snprintf(m.id, sizeof(m.id), "%s", opts->new_run_id);
    else
        snprintf(m.id, sizeof(m.id), "%.50s.from-%ld", meta->id, want);
    m.status = FLOW_RUN_RUNNING;
    m.created_at = flow__wall_time();
    m.ended_at = 0;
    flow_err rc;
    FLOW__WITH_STORE(st, rc = flow__store_run_create(st->backend, &m, err));
    if (rc != FLOW_OK)
        return rc;
    FLOW__WITH_STORE(st, rc = flow__store_append(st->backend, m.id, recs, upto, 0, err));
    if (rc != FLOW_OK) {
        FLOW__WITH_STORE(st, flow__store_run_delete(st->backend, m.id, NULL));
        return rc;
    }
    snprintf(out, size, "%s", m.id);
    return FLOW_OK;
}

/* ---- a stored run, for flow_run_resume and flow_run_retry ---------------- */

flow_err flow__stored_open(struct flow_engine *e, struct flow *f, const flow_run_options *opts,
                           const char *verb, struct flow__stored *s, flow_error *err)
{
    struct flow_store *st = opts->store;
    memset(s, 0, sizeof(*s));
    flow_err rc = flow__flow_freeze(f, err);
    if (!rc)
        rc = flow_check_resources(f, &e->capacity, err); /* could never start */
    if (rc)
        return rc;
    FLOW__WITH_STORE(st, rc = flow__store_run_get(st->backend, opts->run_id, &s->meta, err));
    if (rc != FLOW_OK)
        return rc;
    char hash[64];
    pthread_mutex_lock(&e->lock);
    bool hashed = flow__flow_hash(f, hash, sizeof(hash));
    pthread_mutex_unlock(&e->lock);
    if (!hashed)
        return flow__error(err, FLOW_ENOMEM, "out of memory reading run '%s'", opts->run_id);
    s->changed = s->meta.def_hash && strcmp(s->meta.def_hash, hash) != 0;
    if (s->changed && !opts->force)
        return flow__error(err, FLOW_ESTATE,
                           "the flow of run '%s' changed since the run started%s%s%s; %s with "
                           "--force to go on with the new definition",
                           opts->run_id, s->meta.source ? " (" : "",
                           s->meta.source ? s->meta.source : "", s->meta.source ? ")" : "", verb);
    return FLOW_OK;
}

flow_err flow__stored_records(struct flow *f, struct flow_store *st, const char *id,
                              struct flow__stored *s, flow_error *err)
{
    flow__records_free(s->recs, s->count);
    s->recs = NULL;
    s->count = 0;
    s->start_name = NULL;
    flow_err rc = flow__store_read_all(st, id, &s->recs, &s->count, err);
    if (rc != FLOW_OK)
        return rc;
    const struct flow__jrec *first = s->count ? &s->recs[0] : NULL;
    bool created = first && first->type == JREC_RUN_CREATED;
    if (created)
        s->start_name = json_string_value(json_object_get(first->payload, "start"));
    json_int_t format = created ? json_integer_value(json_object_get(first->payload, "format")) : 0;
    if (format > FLOW__JOURNAL_FORMAT)
        return flow__error(err, FLOW_EUNSUPPORTED,
                           "run '%s' was journaled in format %lld; this libflow replays up to %d: "
                           "upgrade libflow",
                           id, (long long)format, FLOW__JOURNAL_FORMAT);
    if (s->start_name && !flow_find_task(f, s->start_name))
        return flow__error(err, FLOW_ESTATE,
                           "run '%s' started at task '%s', which its flow no longer has", id,
                           s->start_name);
    /* Its end: the last run_ended that no retry follows. */
    s->ended_at = s->count;
    for (size_t i = 0; i < s->count; i++) {
        if (s->recs[i].type == JREC_RUN_ENDED)
            s->ended_at = i;
        else if (s->recs[i].type == JREC_RUN_RETRIED)
            s->ended_at = s->count;
    }
    return FLOW_OK;
}

void flow__stored_cleanup(struct flow__stored *s)
{
    flow__records_free(s->recs, s->count);
    s->recs = NULL;
    s->count = 0;
    flow__run_meta_cleanup(&s->meta);
}

struct flow_run *flow__stored_run(struct flow_engine *e, struct flow *f,
                                  const flow_run_options *opts, struct flow__stored *s,
                                  const char *id, bool attach, flow_error *err)
{
    /* The flow's own name: the records may be read again (retry.c). */
    const flow_task *start = s->start_name ? flow_find_task(f, s->start_name) : NULL;
    struct flow_run *r =
        flow__run_create(e, f, s->meta.inputs, id, start ? start->name : NULL, NULL, err);
    if (!r)
        return NULL;
    r->on_event = opts->on_event;
    r->event_udata = opts->event_udata;
    if (opts->work_dir && flow__run_set_work_dir(r, opts->work_dir) != FLOW_OK) {
        flow__error(err, FLOW_ENOMEM, "out of memory reading run '%s'", id);
        goto out_destroy;
    }
    /* A run started strict stays strict unless told otherwise. */
    json_t *created = s->count && s->recs[0].type == JREC_RUN_CREATED ? s->recs[0].payload : NULL;
    const char *durability = json_string_value(json_object_get(created, "durability"));
    r->strict = durability && !strcmp(durability, "strict");
    json_t *every = json_object_get(created, "checkpoint_every");
    if (!attach)
        return r;
    flow_run_options o = *opts;
    o.run_id = id;
    if (o.checkpoint_every <= 0 && json_is_number(every)) /* as the run was started */
        o.checkpoint_every = json_number_value(every);
    r->wait_for_people = opts->wait;
    r->no_cache = opts->no_cache;
    r->replaying = true; /* attach: the run exists, take its lease */
    flow_err rc = flow__run_attach_store(r, opts->store, &o, err);
    r->replaying = false;
    if (rc != FLOW_OK)
        goto out_destroy;
    /* Answers the store took that the journal may lack (flow__feedback_resume
     * applies them); read with the lease held, so that any later one is
     * sent to this runner. */
    struct flow_store *st = opts->store;
    FLOW__WITH_STORE(st, rc = flow__store_answer_list(st->backend, id, &r->claimed, err));
    if (rc != FLOW_OK)
        goto out_destroy;
    return r;

out_destroy:
    flow__run_destroy(r);
    return NULL;
}

flow_err flow__stored_replay(struct flow_run *r, struct flow__stored *s, flow_error *err)
{
    struct flow_engine *e = r->engine;
    struct replay rp = {.r = r, .recs = s->recs, .count = s->count, .ended_at = s->ended_at,
                        .err = err};
    flow_err rc = map_tasks(&rp, json_object_get(s->recs[0].payload, "tasks"));
    double now = e->clock;
    r->replaying = true;
    e->clock = s->recs[0].time;
    flow__run_begin(r, s->start_name ? flow_find_task(r->flow, s->start_name) : NULL);
    for (size_t i = 1; i < s->ended_at && rc == FLOW_OK; i++)
        rc = apply(&rp, i);
    r->replaying = false;
    e->clock = now;
    flow__free(rp.task_map);
    return rc;
}

void flow__run_discard(struct flow_run *r)
{
    struct flow_engine *e = r->engine;
    r->status = FLOW_RUN_FAILED;
    r->ended = true;
    r->end_persisted = true;
    pthread_mutex_unlock(&e->lock);
    flow_run_free(r);
}

flow_run *flow_run_resume(flow_engine *e, flow *f, const flow_run_options *opts, flow_error *err)
{
    if (!e || !f || !opts || !opts->store || !opts->run_id)
        return flow__error(err, FLOW_EINVAL, "flow_run_resume needs an engine, a flow, a store "
                                             "and a run id"),
               NULL;
    struct flow_store *st = opts->store;
    struct flow__stored s;
    struct flow_run *r = NULL;
    char id[80];
    snprintf(id, sizeof(id), "%s", opts->run_id);
    if (flow__stored_open(e, f, opts, "resume", &s, err) != FLOW_OK ||
        flow__stored_records(f, st, id, &s, err) != FLOW_OK)
        goto out;
    if (opts->from_checkpoint) {
        char forked[80];
        if (fork_from_checkpoint(st, &s.meta, s.recs, s.count, opts, forked, sizeof(forked), err))
            goto out;
        snprintf(id, sizeof(id), "%s", forked);
        if (flow__stored_records(f, st, id, &s, err) != FLOW_OK)
            goto out;
    }
    bool ended = s.ended_at < s.count;
    r = flow__stored_run(e, f, opts, &s, id, !ended, err);
    if (!r)
        goto out;
    pthread_mutex_lock(&e->lock);
    flow__engine_tick(e);
    if (!s.count || s.recs[0].type != JREC_RUN_CREATED) {
        /* It stopped before its first record was written: start it now. */
        flow__run_begin(r, s.start_name ? flow_find_task(f, s.start_name) : NULL);
        pthread_mutex_unlock(&e->lock);
        flow__journal_durable_ready(&r->journal);
        goto out;
    }
    if (flow__stored_replay(r, &s, err) != FLOW_OK) {
        flow__run_discard(r);
        r = NULL;
        goto out;
    }
    if (ended) {
        json_t *p = s.recs[s.ended_at].payload;
        const char *status = json_string_value(json_object_get(p, "status"));
        const char *error = json_string_value(json_object_get(p, "error"));
        r->status = FLOW_RUN_FAILED;
        for (int k = FLOW_RUN_COMPLETED; k <= FLOW_RUN_CANCELLED; k++) {
            if (status && !strcmp(status, flow_run_status_name((flow_run_status)k)))
                r->status = (flow_run_status)k;
        }
        json_decref(r->result);
        r->result = json_incref(json_object_get(p, "result"));
        if (!r->result)
            r->result = json_null();
        flow__free(r->error);
        r->error = error ? flow__strdup(error) : NULL;
        r->ended = true;
        r->end_persisted = true;
        flow__engine_forget_run(e, r);
        pthread_mutex_unlock(&e->lock);
        if (s.meta.status != (int)r->status) /* it crashed before saying so */
            FLOW__WITH_STORE(st, flow__store_run_set_status(st->backend, id, (int)r->status,
                                                             s.recs[s.ended_at].time, NULL));
        goto out;
    }
    json_t *note = json_object();
    if (note && opts->from_checkpoint) {
        json_object_set_new(note, "from", json_string(opts->run_id));
        json_object_set_new(note, "checkpoint", json_string(opts->from_checkpoint));
    }
    if (note && s.changed) {
        /* From here on records use the new flow's task indexes. */
        json_object_set_new(note, "forced", json_true());
        json_object_set_new(note, "tasks", flow__run_task_names(f));
    }
    flow__run_journal(r, JREC_RESUMED, NULL, note);
    if (s.meta.status != FLOW_RUN_RUNNING)
        FLOW__WITH_STORE(st, flow__store_run_set_status(st->backend, id, FLOW_RUN_RUNNING, 0, NULL));
    r->status = FLOW_RUN_RUNNING;
    flow__run_go_on(r);
    pthread_mutex_unlock(&e->lock);
    flow__journal_durable_ready(&r->journal);

out:
    flow__stored_cleanup(&s);
    return r;
}
