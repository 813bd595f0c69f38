/* run.c -- a run from start to end: making and starting runs, how they
 * end (the result, pausing, checkpoints), durable runs' journals, and the
 * public flow_run_* functions. The semantics of a run are spread over the
 * files run_int.h lists. Everything marked [L] runs with the engine lock held.
 */
#include "util/compat.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/gate.h"
#include "core/run_int.h"
#include "def/schema.h"
#include "exec/rundir.h"
#include "journal/durable.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/json.h"
#include "util/log.h"
#include "util/redact.h"

void flow__run_timed_out(struct flow_run *r)
{
    char why[128];
    snprintf(why, sizeof(why), "the run timed out after %gs", r->flow->run_timeout);
    flow__run_stop(r, FLOW_RUN_FAILED, why);
}

/* ---- the end ------------------------------------------------------------ */

/* [L] The task an activation's output counts for: its own, or the failed
 * one a fallback stands for; UINT32_MAX for a foreach element (its parent
 * completes for the task). */
static uint32_t counts_for(const struct act *a)
{
    if (a->dyn && a->dyn->parent)
        return UINT32_MAX;
    if (a->flags & ACT_IS_FALLBACK && act_stands_for(a))
        return act_stands_for(a)->task;
    return a->task;
}

/* [L] The outputs of the end tasks that completed: that output when the
 * flow has one end task, else {task: output} in declaration order. A task
 * that completed more than once (a loop, parallel branches) gives the output
 * of its last-created activation that completed: creation order, unlike
 * completion order, does not depend on timing. */
static json_t *end_result(struct flow_run *r)
{
    const struct flow *f = r->flow;
    size_t n = f->end_tasks.count;
    if (n == 1) { /* the common case needs no tables */
        uint32_t t = f->end_tasks.items[0];
        for (size_t i = r->act_count; i-- > 0;) {
            const struct act *a = flow__act_at(r, i);
            if (a->status == FLOW_ACT_COMPLETED && counts_for(a) == t)
                return json_incref(a->output ? a->output : json_null());
        }
        return json_null();
    }
    const struct act **found = flow__calloc(f->tasks.count ? f->tasks.count : 1, sizeof(*found));
    uint8_t *is_end = flow__calloc(f->tasks.count ? f->tasks.count : 1, 1);
    json_t *out = NULL;
    if (!found || !is_end)
        goto out;
    for (size_t i = 0; i < n; i++)
        is_end[f->end_tasks.items[i]] = 1;
    size_t missing = n;
    for (size_t i = r->act_count; i-- > 0 && missing;) {
        const struct act *a = flow__act_at(r, i);
        uint32_t t = a->status == FLOW_ACT_COMPLETED ? counts_for(a) : UINT32_MAX;
        if (t != UINT32_MAX && is_end[t] && !found[t]) {
            found[t] = a;
            missing--;
        }
    }
    out = json_object();
    for (size_t i = 0; out && i < n; i++) {
        uint32_t t = f->end_tasks.items[i];
        const struct act *a = found[t];
        if (a && json_object_set(out, flow__task_name(r, t), a->output ? a->output : json_null())) {
            json_decref(out);
            out = NULL;
        }
    }
out:
    flow__free(found);
    flow__free(is_end);
    return out;
}

/* A string swapped for its redacted copy; out of memory drops it rather
 * than keep a secret. */
static void redact_str(const struct flow__secrets *sec, char **text)
{
    if (flow__redact_str_swap(sec, text) != FLOW_OK) {
        flow__free(*text);
        *text = NULL;
    }
}

static void redact_json(const struct flow__secrets *sec, json_t **v)
{
    if (*v && flow__redact_json_swap(sec, v) != FLOW_OK) {
        json_decref(*v);
        *v = json_null();
    }
}

/* [L] A top-level run that ended or paused hands out only what its store
 * holds: its result, error and activations with the secrets redacted
 * (docs/internals/core.md, "Secrets"). Nested runs give their real result
 * to the parent's task. */
static void redact_ended(struct flow_run *r)
{
    const struct flow__secrets *sec = r->secrets;
    if (r->parent_act || !flow__secrets_redact_any(sec))
        return;
    redact_json(sec, &r->result);
    redact_str(sec, &r->error);
    for (size_t i = 0; i < r->act_count; i++) {
        struct act *a = flow__act_at(r, i);
        redact_json(sec, &a->input);
        redact_json(sec, &a->output);
        if (a->dyn) {
            redact_str(sec, &a->dyn->error);
            redact_str(sec, &a->dyn->stderr_tail);
        }
    }
}

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
        } else if (!(result = end_result(r))) {
            status = FLOW_RUN_FAILED;
            flow__free(r->error);
            r->error = flow__strdup("out of memory making the result");
        }
    }
    r->result = result ? result : json_null();
    r->status = status;
    flow__engine_forget_run(r->engine, r);
    if (r->remote_watch)
        flow__remote_run_ended(r);
    flow__run_journal(r, JREC_RUN_ENDED, NULL,
                      json_pack("{s:s,s:O,s:s?}", "status", flow_run_status_name(status), "result",
                                r->result, "error", r->error));
    redact_ended(r);
    flow__journal_commit(&r->journal);
    flow__run_notify(r, FLOW_EV_RUN_ENDED, NULL, NULL, 0);
    if (!r->on_event || !r->obs_listed) {
        r->ended = true;
        pthread_cond_broadcast(&r->ended_cond);
    }
    if (r->parent_act)
        flow__subflow_done(r);
}

/* [L] Nothing runs any more in a pausing run: it is paused. What is
 * pending stays pending, for flow_run_resume. */
static void pause_done(struct flow_run *r)
{
    const char *why = r->pause_reason ? r->pause_reason : "paused";
    if (r->journal_moved) /* a task's pause has just taken one */
        flow__run_checkpoint(r, NULL, r->interrupting ? "interrupted" : "pause");
    flow__run_journal(r, JREC_PAUSED, NULL, json_pack("{s:s}", "reason", why));
    flow__free(r->error);
    r->error = flow__strdup(why);
    r->status = FLOW_RUN_PAUSED;
    redact_ended(r);
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
    if (!r->stopping && flow__run_settle_optionals(r) && r->unfinished > 0) {
        /* A join that waited for a branch not taken runs first -- or, when
         * the run is pausing, waits in the journal for the resume. */
        if (r->pausing && !r->subflows_running)
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
    /* A pause already asked for keeps its reason when it turns into an
     * interrupt (a serve's "serve stopped" after its grace period): the
     * reason says who paused the run, and so who resumes it. */
    if (!(interrupt && r->pausing && r->pause_reason)) {
        flow__free(r->pause_reason);
        r->pause_reason = flow__strdup(interrupt ? "interrupted" : why && *why ? why : "paused");
    }
    r->pausing = true;
    flow__engine_unqueue_run(e, r);
    if (interrupt) {
        r->interrupting = true;
        flow__run_stop_running(r, "interrupted");
    }
    flow__run_check_end(r);
}

void flow__run_checkpoint(struct flow_run *r, struct act *a, const char *reason)
{
    r->checkpoints++;
    flow__run_journal(r, JREC_CHECKPOINT, a,
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
              *p == '-' || *p == '_' || *p == '.' || *p == '@' || *p == ':'))
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
        flow__run_unref(r->children.items[i]);
    FLOW__VEC_FREE(&r->children);
    for (size_t i = 0; i < r->act_count; i++) {
        struct act *a = flow__act_at(r, i);
        json_decref(a->input);
        json_decref(a->output);
        if (a->dyn) {
            json_decref(a->dyn->item);
            json_decref(a->dyn->work);
            json_decref(a->dyn->info);
            flow__free(a->dyn->stderr_tail);
            flow__free(a->dyn->error);
            flow__free(a->dyn->worker);
            flow__gate_free(a->dyn->gate);
            flow__free(a->dyn->cache_key);
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
    flow__rundir_unref(r->workdir);
    flow__obs_events_free(r->obs.items, r->obs.count);
    r->obs.items = NULL;
    r->obs.count = r->obs.cap = 0;
    FLOW__VEC_FREE(&r->sigs);
    json_decref(r->inputs);
    json_decref(r->state);
    flow__remote_state_free(r->remote_state);
    json_decref(r->result);
    json_decref(r->terminate_result);
    flow__free(r->error);
    flow__free(r->pause_reason);
    flow__secrets_unref(r->secrets);
    flow__feedback_cleanup(r);
    flow__free(r->trt);
    flow__free(r->leaf_state);
    flow__free(r->retry_slots);
    pthread_cond_destroy(&r->ended_cond);
    flow_free(r->flow);
    flow__free(r);
}

flow_err flow__run_set_work_dir(struct flow_run *r, const char *dir)
{
    struct flow__rundir *w = flow__rundir_new(r->id, dir);
    if (!w)
        return FLOW_ENOMEM;
    flow__rundir_unref(r->workdir);
    r->workdir = w;
    return FLOW_OK;
}

void flow__run_unref(struct flow_run *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1)
        flow__run_destroy(r);
}

/* Make a run (not started). [L] for nested runs; flow_run_start calls it
 * without the lock, before the run is visible to anyone. */
struct flow_run *flow__run_create(struct flow_engine *e, struct flow *f, json_t *inputs,
                                  const char *run_id, const char *start_task, struct act *parent,
                                  flow_error *err)
{
    struct flow_run *r = flow__calloc(1, sizeof(*r));
    if (!r)
        goto out_nomem;
    pthread_cond_init(&r->ended_cond, NULL);
    atomic_init(&r->refs, 1);
    atomic_init(&r->interrupt, 0);
    flow__arena_init(&r->act_arena, 16 * 1024); /* small runs are many: 20 KB of activations first */
    r->engine = e;
    flow__ref(f);
    r->flow = f;
    /* The secrets first: a run whose secret is not set does not start. */
    if (parent) {
        r->secrets = flow__secrets_ref(parent->run->secrets);
        r->no_cache = parent->run->no_cache;
    } else if (flow__flow_secrets(f, &r->secrets, err) != FLOW_OK) {
        flow__run_destroy(r);
        return NULL;
    }
    if (run_id)
        snprintf(r->id, sizeof(r->id), "%s", run_id);
    else
        new_run_id(r->id, sizeof(r->id));
    r->status = FLOW_RUN_PENDING;
    r->start_task = start_task;
    r->parent_act = parent;
    r->max_running = f->type == FLOW_TYPE_SEQUENTIAL ? 1 : 0;
    r->run_slot = -1;
    r->inputs = inputs ? json_deep_copy(inputs) : json_object();
    r->state = json_deep_copy(f->initial_state); /* the flow's values are shared by engines */
    r->workdir = flow__rundir_new(r->id, NULL);
    r->trt = flow__calloc(f->tasks.count ? f->tasks.count : 1, sizeof(*r->trt));
    r->leaf_state = flow__calloc(f->leaf_count ? f->leaf_count : 1, 1);
    if (!r->inputs || !r->state || !r->workdir || !r->trt || !r->leaf_state ||
        json_object_update(r->state, r->inputs))
        goto out_nomem;
    if (f->schema) {
        char *bad = flow__schema_check(f->schema, r->state);
        if (bad) {
            flow__error(err, FLOW_EINVAL, "the initial state does not match state_schema: %s", bad);
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
    json_t *created =
        json_pack("{s:s,s:s?,s:O,s:s?,s:i}", "flow", f->name, "version", f->version, "inputs",
                  r->inputs, "start", r->start_task, "format", FLOW__JOURNAL_FORMAT);
    if (created && r->store && !r->replaying) {
        /* What readers of the store need without the flow: task names. */
        json_object_set_new(created, "tasks", flow__run_task_names(f));
        json_object_set(created, "state", r->state);
        if (r->strict)
            json_object_set_new(created, "durability", json_string("strict"));
        if (r->checkpoint_every > 0)
            json_object_set_new(created, "checkpoint_every", json_real(r->checkpoint_every));
    }
    flow__run_journal(r, JREC_RUN_CREATED, NULL, created);
    r->next = e->runs;
    if (e->runs)
        e->runs->prev = r;
    e->runs = r;
    r->status = FLOW_RUN_RUNNING;
    flow__run_notify(r, FLOW_EV_RUN_STARTED, NULL, NULL, 0);
    if (f->run_timeout > 0)
        flow__engine_run_timer(e, r, f->run_timeout);
    if (start) {
        flow__run_fire(r, start->index, r->inputs, NULL, 0);
    } else {
        for (size_t i = 0; i < f->start_tasks.count && !r->stopping; i++)
            flow__run_fire(r, f->start_tasks.items[i], r->inputs, NULL, 0);
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
    if (flow__flow_freeze(f, err) != FLOW_OK || flow_check_resources(f, &e->capacity, err))
        return NULL;
    if (opts->inputs && !json_is_object(opts->inputs)) {
        flow__error(err, FLOW_EINVAL, "run inputs must be a JSON object");
        return NULL;
    }
    if (opts->run_id && !valid_run_id(opts->run_id)) {
        flow__error(err, FLOW_EINVAL,
                    "invalid run id '%s' (use up to 63 letters, digits, '-', '_', '.', '@' and "
                    "':', not starting with '.')",
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
    struct flow_run *r =
        flow__run_create(e, f, opts->inputs, opts->run_id, start ? start->name : NULL, NULL, err);
    if (!r)
        return NULL;
    r->on_event = opts->on_event;
    r->event_udata = opts->event_udata;
    if (opts->work_dir && flow__run_set_work_dir(r, opts->work_dir) != FLOW_OK) {
        flow__run_destroy(r);
        flow__error(err, FLOW_ENOMEM, "out of memory starting a run");
        return NULL;
    }
    if (opts->store && flow__run_attach_store(r, opts->store, opts, err) != FLOW_OK) {
        flow__run_destroy(r);
        return NULL;
    }
    r->wait_for_people = opts->wait;
    r->no_cache = opts->no_cache;
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
        flow__run_journal_broke(r, message);
    pthread_mutex_unlock(&e->lock);
}

flow_err flow__run_attach_store(struct flow_run *r, struct flow_store *store,
                                const flow_run_options *opts, flow_error *err)
{
    bool resuming = opts->run_id && (opts->from_checkpoint || r->replaying);
    r->store = store;
    r->checkpoint_every =
        opts->checkpoint_every > 0 ? opts->checkpoint_every : r->flow->checkpoint_every;
    flow_err rc = FLOW_OK;
    if (r->secrets) /* before anything of the run is written */
        FLOW__WITH_STORE(store, rc = flow__store_add_secrets(store->backend, r->secrets, err));
    if (rc != FLOW_OK)
        return rc;
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
        FLOW__WITH_STORE(store, rc = flow__store_run_create(store->backend, &m, err));
        if (rc != FLOW_OK)
            return rc;
    }
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
    rc = flow__journal_durable_open(&r->journal, store, &o, err);
    if (rc != FLOW_OK) {
        r->journal = (struct flow__journal){0};
        r->store = NULL;
    }
    return rc;
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
    /* Now, not when the last reference goes: the store may be closed right
     * after this returns, while an abandoned body still holds the run. */
    flow__journal_close(&r->journal);
    flow__run_unref(r); /* an abandoned body may hold it a while longer */
}

flow_run_status flow_run_simple(flow *f, json_t *inputs, int jobs, json_t **result, flow_error *err)
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
    struct act *a = flow__act_at(r, i);
    info->id = a->id;
    info->task = flow__task_name(r, a->task);
    info->status = (flow_act_status)a->status;
    info->attempts = (int)a->attempt;
    info->created_at = 0;
    info->started_at = a->started;
    info->ended_at = a->ended;
    info->input = a->input;
    info->output = a->output;
    info->error = act_error(a);
    info->path = flow__task_name(r, a->task);
    info->stderr_tail = a->dyn ? a->dyn->stderr_tail : NULL;
    info->exit_status = a->dyn ? a->dyn->exit_status : -1;
    return FLOW_OK;
}

json_t *flow_run_to_json(flow_run *r)
{
    json_t *tasks = json_array();
    json_t *root =
        json_pack("{s:s,s:s,s:s,s:O,s:s?,s:o}", "id", r->id, "flow", r->flow->name, "status",
                  flow_run_status_name(r->status), "result", r->result ? r->result : json_null(),
                  "error", r->error, "tasks", tasks);
    if (root && r->flow->version)
        json_object_set_new(root, "version", json_string(r->flow->version));
    if (!root)
        return NULL;
    for (size_t i = 0; i < r->act_count; i++) {
        struct act *a = flow__act_at(r, i);
        json_t *jt = json_pack(
            "{s:s,s:I,s:s,s:i,s:o,s:o,s:s?}", "task", flow__task_name(r, a->task), "activation",
            (json_int_t)a->id, "status", flow_act_status_name((flow_act_status)a->status),
            "attempts", (int)a->attempt, "started_at", flow__json_time(a->started), "ended_at",
            flow__json_time(a->ended), "error", act_error(a));
        if (jt && a->output)
            json_object_set(jt, "output", a->output);
        if (jt && a->dyn && a->dyn->stderr_tail)
            json_object_set_new(jt, "stderr_tail", json_string(a->dyn->stderr_tail));
        if (jt && a->dyn && a->dyn->info)
            json_object_set(jt, "info", a->dyn->info);
        if (jt && a->dyn && a->dyn->exit_status >= 0)
            json_object_set_new(jt, "exit_status", json_integer(a->dyn->exit_status));
        if (jt && a->dyn && a->dyn->parent) {
            json_object_set_new(jt, "parent", json_integer((json_int_t)a->dyn->parent->id));
            json_object_set_new(jt, "index", json_integer((json_int_t)a->dyn->index));
        }
        json_array_append_new(tasks, jt);
    }
    if (flow__redact_json_swap(r->secrets, &root) != FLOW_OK) {
        json_decref(root); /* never a secret in its place */
        return NULL;
    }
    return root;
}
