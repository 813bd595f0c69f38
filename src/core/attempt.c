/* attempt.c -- one try of an activation: started, succeeded (output, state
 * writes, directives), failed (retries with backoff, error strategies),
 * timed out, cancelled, dropped by an interrupt; and stopping a run.
 * Everything here runs with the engine lock held. */
#include "util/compat.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "core/cache.h"
#include "core/gate.h"
#include "core/run_int.h"
#include "def/schema.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

/* ---- attempts ----------------------------------------------------------- */

void flow__run_attempt_started(struct flow_run *r, struct act *a)
{
    const struct flow_task *t = act_task(a);
    a->attempt++;
    a->status = FLOW_ACT_RUNNING;
    a->started = r->engine->clock;
    r->running++;
    if (flow__gate_has(a))
        flow__gate_started(r->engine, a);
    flow__run_journal(r, JREC_ACT_STARTED, a, NULL);
    flow__run_notify(r, FLOW_EV_TASK_STARTED, a, NULL, 0);
    if (t->policy->timeout > 0)
        flow__engine_timer(r->engine, TIMER_TIMEOUT, a, t->policy->timeout);
}

bool flow__run_input_ready(struct flow_run *r, struct act *a, char **error)
{
    flow_error err;
    if (flow__run_build_input(r, a, &err) == FLOW_OK)
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

void flow__attempt_failed(struct flow_run *r, struct act *a, char *error)
{
    flow__attempt_failed_ex(r, a, error, true);
}

/* [L] The attempt failed with `error` (taken); retried per policy when
 * `may_retry` (a foreach parent is not: its children had their retries). */
void flow__attempt_failed_ex(struct flow_run *r, struct act *a, char *error, bool may_retry)
{
    struct fail_how how = {.final = !may_retry};
    flow__attempt_failed_how(r, a, error, &how);
}

/* [L] The attempt failed with `error` (taken); retried per policy unless
 * `how` says otherwise. */
void flow__attempt_failed_how(struct flow_run *r, struct act *a, char *error,
                              const struct fail_how *how)
{
    const struct flow_task *t = act_task(a);
    const struct task_policy *p = t->policy;
    flow__act_set_error(r, a, error ? error : flow__strdup("failed"));
    if (r->stopping) {
        a->status = FLOW_ACT_CANCELLED;
        flow__run_journal(r, JREC_ACT_CANCELLED, a, json_pack("{s:s?}", "error", act_error(a)));
        flow__run_notify(r, FLOW_EV_TASK_CANCELLED, a, NULL, 0);
        flow__act_final(r, a);
        flow__run_check_end(r);
        return;
    }
    if (!how->final && a->attempt <= (uint32_t)p->retries) {
        double delay = how->delay_set ? how->delay : backoff_delay(&p->backoff, a->attempt);
        /* A delay a server asked for (Retry-After) is honoured up to the
         * longer of the backoff's max_delay and an hour: one bad answer
         * must not park a run for years. */
        double cap = p->backoff.max_delay > FLOW__RETRY_AFTER_MAX ? p->backoff.max_delay
                                                                  : FLOW__RETRY_AFTER_MAX;
        if (how->delay_set && !(delay <= cap))
            delay = cap;
        a->status = FLOW_ACT_PENDING;
        a->flags |= ACT_WAITING;
        flow__run_journal(r, JREC_ACT_RETRYING, a,
                          json_pack("{s:s?,s:f,s:s?}", "error", act_error(a), "delay", delay,
                                    "worker", a->dyn ? a->dyn->worker : NULL));
        flow__run_notify(r, FLOW_EV_TASK_RETRYING, a, NULL, delay);
        flow__engine_timer(r->engine, TIMER_RETRY, a, delay);
        return;
    }
    if (p->on_error == FLOW_ON_ERROR_IGNORE) {
        /* Counts as completed with output null; the error stays visible. */
        char *kept = a->dyn ? a->dyn->error : NULL;
        if (kept)
            a->dyn->error = NULL;
        flow__attempt_succeeded_ex(r, a, json_null(), NULL, NULL, kept);
        flow__act_set_error(r, a, kept);
        return;
    }
    a->status = FLOW_ACT_FAILED;
    flow__run_journal(r, JREC_ACT_FAILED, a,
                      json_pack("{s:s?,s:s?}", "error", act_error(a), "worker",
                                a->dyn ? a->dyn->worker : NULL));
    flow__run_notify(r, FLOW_EV_TASK_FAILED, a, NULL, 0);
    flow__act_final(r, a);
    switch (p->on_error) {
    case FLOW_ON_ERROR_CONTINUE:
        if (!r->had_failure) {
            r->had_failure = true;
            r->error = flow__asprintf("task '%s' failed: %s", t->name, act_error_text(a));
        }
        if (!(a->dyn && a->dyn->parent)) /* a foreach child's parent decides */
            flow__run_propagate(r, a->task, LEAF_FALSE, a);
        break;
    case FLOW_ON_ERROR_FALLBACK: {
        json_t *in = json_pack("{s:s?,s:s,s:I,s:i}", "error", act_error(a), "task", t->name,
                               "activation", (json_int_t)a->id, "attempts", (int)a->attempt);
        struct act *fb = in ? flow__run_fire(r, flow__task_fallback(t)->index, in, NULL, 0) : NULL;
        json_decref(in);
        struct act_dyn *fb_dyn = fb ? flow__act_dyn(r, fb) : NULL;
        if (fb_dyn) {
            fb->flags |= ACT_IS_FALLBACK;
            fb_dyn->stands_for = a;
        } else if (!r->stopping) {
            flow__run_stop(r, FLOW_RUN_FAILED, "out of memory starting a fallback");
        }
        break;
    }
    default: {
        char *why = flow__asprintf("task '%s' failed: %s", t->name, act_error_text(a));
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

/* The payload of an act_completed record: everything replay needs to apply
 * the completion again (docs/internals/store.md). */
static json_t *completed_payload(struct act *a, json_t *writes, const struct directives *d,
                                 const char *ignored)
{
    json_t *p = json_pack("{s:O}", "output", a->output);
    if (!p)
        return NULL;
    if (a->dyn && a->dyn->worker)
        json_object_set_new(p, "worker", json_string(a->dyn->worker));
    if (writes && json_object_size(writes))
        json_object_set_new(p, "writes", json_copy(writes));
    if (ignored)
        json_object_set_new(p, "ignored", json_string(ignored));
    if (!d)
        return p;
    if (d->info)
        json_object_set(p, "info", d->info);
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
void flow__attempt_succeeded(struct flow_run *r, struct act *a, json_t *output, json_t *writes,
                             struct directives *d)
{
    flow__attempt_succeeded_ex(r, a, output, writes, d, NULL);
}

/* ... `ignored`: the error an `on_error: ignore` absorbed, or NULL. */
void flow__attempt_succeeded_ex(struct flow_run *r, struct act *a, json_t *output, json_t *writes,
                                struct directives *d, const char *ignored)
{
    const struct flow_task *t = act_task(a);
    if (!output)
        output = json_null();
    /* Taken before the operations fold into the writes: a hit applies them
     * to the state as it is then, as a run would. */
    json_t *kept = t->ext && t->ext->cache && !ignored ? flow__cache_entry(r, a, output, writes, d)
                                                       : NULL;
    char *bad = d ? flow__directives_apply_ops(r, d->ops, &writes) : NULL;
    if (!bad && t->ext && t->ext->save) {
        if (!writes)
            writes = json_object();
        if (!writes || json_object_set(writes, t->ext->save, output))
            bad = flow__strdup("out of memory saving the output");
    }
    /* The state schema guards every write; breaking it fails the writer. */
    if (!bad && writes && r->flow->schema) {
        json_t *next = json_copy(r->state);
        if (!next || json_object_update(next, writes))
            bad = flow__strdup("out of memory checking the state");
        else
            bad = flow__schema_check_keys(r->flow->schema, next, writes);
        json_decref(next);
    }
    if (bad) {
        json_decref(kept);
        json_decref(output);
        json_decref(writes);
        if (d)
            flow__directives_cleanup(d);
        flow__attempt_failed(r, a, bad);
        return;
    }
    if (kept)
        flow__cache_keep(r, a, kept);
    flow__act_set_error(r, a, NULL); /* an earlier attempt's; `ignore` puts its own back */
    if (d && d->info) {
        struct act_dyn *dy = flow__act_dyn(r, a);
        if (dy) {
            json_decref(dy->info);
            dy->info = json_incref(d->info);
        }
    }
    a->output = output;
    a->status = FLOW_ACT_COMPLETED;
    flow__run_journal(r, JREC_ACT_COMPLETED, a,
                      flow__run_journaling(r) ? completed_payload(a, writes, d, ignored) : NULL);
    flow__run_state_write(r, a, writes);
    json_decref(writes);
    flow__run_notify(r, FLOW_EV_TASK_COMPLETED, a,
                     d && d->info && json_is_true(json_object_get(d->info, "cached")) ? "cached"
                                                                                      : NULL,
                     0);
    /* A foreach child speaks only to its parent, which completes for the
     * task as a whole. */
    bool child = a->dyn && a->dyn->parent;
    if (!child) {
        r->trt[a->task].latest = a->id;
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
    flow__act_final(r, a);
    if (!r->stopping) {
        flow__attempt_settle(r, a, d ? d->work : NULL);
    } else if (flow__run_retryable(r)) {
        /* Nothing starts in a stopping run; a retry starts it (retry.c). */
        struct act_dyn *dy = flow__act_dyn(r, a);
        if (dy) {
            dy->unsettled = true;
            dy->work = d && d->work ? json_incref(d->work) : NULL;
        }
    }
    if (d)
        flow__directives_cleanup(d);
    flow__run_check_end(r);
}

void flow__attempt_settle(struct flow_run *r, struct act *a, json_t *work)
{
    const struct flow_task *t = act_task(a);
    if (a->dyn && a->dyn->parent) { /* a foreach element: its parent speaks for it */
        if (work)
            flow__directives_start(r, a, work);
        return;
    }
    if (t->router) {
        const char *label = router_label(a->output);
        if (label) {
            json_t *payload = json_is_object(a->output) ? a->output : flow__run_act_input(r, a);
            if (payload)
                flow__run_emit(r, a, label, payload, EMIT_LABEL);
            else
                flow__run_stop(r, FLOW_RUN_FAILED, "out of memory emitting a label");
        } else {
            flow__log(FLOW_LOG_WARN, "router '%s' returned no label", t->name);
        }
    }
    flow__run_propagate(r, a->task, LEAF_TRUE, a);
    if (a->flags & ACT_IS_FALLBACK && act_stands_for(a)) {
        /* The fallback's output stands for the failed task's. */
        struct act *orig = act_stands_for(a);
        r->trt[orig->task].latest = a->id;
        flow__run_propagate(r, orig->task, LEAF_TRUE, a);
    }
    if (work)
        flow__directives_start(r, a, work);
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
    if ((v = json_object_get(payload, "info")) && json_is_object(v))
        d.info = json_incref(v);
    const char *ignored = json_string_value(json_object_get(payload, "ignored"));
    flow__attempt_succeeded(r, a, output ? output : json_null(), writes, &d);
    if (ignored && a->status == FLOW_ACT_COMPLETED && !act_error(a))
        flow__act_set_error(r, a, flow__strdup(ignored));
}

void flow__run_replay_failed(struct flow_run *r, struct act *a, const char *error, bool final)
{
    /* The record says whether it was retried: an attempt may have asked
     * for no retry (flow_ctx_fail_final) with retries left. */
    struct fail_how how = {.final = final};
    flow__attempt_failed_how(r, a, flow__strdup(error ? error : "failed"), &how);
}

/* [L] Free the engine slot an attempt of `a` held, and what its limits
 * gave it. */
static void release_slot(struct flow_run *r, struct act *a, bool counted)
{
    struct flow_engine *e = r->engine;
    if (flow__gate_has(a))
        flow__gate_release(e, a);
    if (r->running > 0)
        r->running--;
    flow__engine_release_slot(e, r);
    if (!counted)
        return;
    e->running--;
    if (e->gates)
        flow__gate_kick(e);
    if (e->spawn_q.count)
        flow__engine_wake(e);
    if (e->pool_q.count && e->idle > 0)
        pthread_cond_signal(&e->pool_cond);
}

/* [L] An interrupted run's attempt ended: it is not recorded, and the
 * activation is pending again, to run as the same attempt on resume. */
void flow__attempt_dropped(struct flow_run *r, struct act *a)
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
    flow__run_journal(r, JREC_LOG, a,
                      json_pack("{s:s?,s:s?,s:i}", "stdout", res->stdout_tail, "stderr",
                                res->stderr_tail, "exit_status", res->exit_status));
}

void flow__run_ctx_done(struct flow_run *r, struct flow_ctx *ctx)
{
    struct act *a = ctx->act;
    struct flow_engine *e = r->engine;
    release_slot(r, a, ctx->counted);
    a->ctx = NULL;
    if (r->interrupting) {
        flow__ctx_release(e, ctx);
        flow__attempt_dropped(r, a);
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
    bool ok = ctx->rc == 0 && !ctx->timed_out && !ctx->input_failed;
    if (ok) {
        struct directives d = {0};
        char *bad = ctx->directives ? flow__directives_parse(r, ctx->directives, &d) : NULL;
        if (bad) {
            flow__directives_cleanup(&d);
            flow__ctx_release(e, ctx);
            flow__attempt_failed(r, a, bad);
            return;
        }
        json_t *out = ctx->output;
        json_t *writes = ctx->writes;
        d.info = ctx->info;
        ctx->output = ctx->writes = ctx->info = NULL;
        flow__ctx_release(e, ctx);
        flow__attempt_succeeded(r, a, out, writes, &d);
        return;
    }
    char *error;
    if (ctx->timed_out)
        error = flow__asprintf("timed out after %gs", t->policy->timeout);
    else if (ctx->input_failed)
        error = flow__strdup("out of memory building the input");
    else if (ctx->error)
        error = flow__strdup(ctx->error);
    else
        error = flow__asprintf("returned %d", ctx->rc);
    /* What the body asked of its failure (not of a timeout's). */
    struct fail_how how = {0};
    if (!ctx->timed_out && !ctx->input_failed)
        how = (struct fail_how){ctx->fail_final, ctx->retry_set, ctx->retry_after};
    flow__ctx_release(e, ctx);
    flow__attempt_failed_how(r, a, error, &how);
}

static void cmd_done(struct flow_run *r, struct act *a, struct flow__cmd_result *res,
                     json_t *writes, bool counted);

void flow__run_cmd_done(struct flow_run *r, struct act *a, struct flow__cmd_result *res)
{
    cmd_done(r, a, res, NULL, true);
}

/* [L] A remote attempt's slot goes; the worker that ran it is kept. */
static void remote_slot_done(struct flow_run *r, struct act *a, const char *worker)
{
    struct act_dyn *dy = flow__act_dyn(r, a);
    if (dy) {
        flow__free(dy->cmd);
        dy->cmd = NULL;
        flow__free(dy->worker);
        dy->worker = worker ? flow__strdup(worker) : NULL;
    }
}

void flow__run_remote_done(struct flow_run *r, struct act *a, struct flow__cmd_result *res,
                           json_t *writes, const char *worker)
{
    remote_slot_done(r, a, worker);
    cmd_done(r, a, res, writes, false);
}

void flow__run_remote_waiting(struct flow_run *r, struct act *a, json_t *req, const char *worker)
{
    remote_slot_done(r, a, worker);
    flow__engine_tick(r->engine);
    release_slot(r, a, false);
    if (r->interrupting) {
        flow__attempt_dropped(r, a);
        return;
    }
    char *why = NULL;
    const char *id = flow__feedback_remote_ask(r, a, req, &why);
    if (!id) {
        flow__attempt_failed(r, a, why);
        return;
    }
    flow__feedback_park(r, a, id);
}

/* [L] `writes`: a remote C function's state writes (taken), or NULL. */
static void cmd_done(struct flow_run *r, struct act *a, struct flow__cmd_result *res,
                     json_t *writes, bool counted)
{
    flow__engine_tick(r->engine);
    release_slot(r, a, counted);
    if (act_cmd(a) && act_cmd(a)->state_held)
        flow__run_cmd_files_release(r, act_cmd(a)->state_version);
    if (!r->interrupting)
        journal_log(r, a, res);
    struct act_dyn *dy = flow__act_dyn(r, a);
    if (dy) {
        flow__free(dy->stderr_tail);
        dy->stderr_tail = res->stderr_tail;
        res->stderr_tail = NULL;
        dy->exit_status = res->exit_status;
    }
    if (r->interrupting) {
        json_decref(writes);
        flow__attempt_dropped(r, a);
        return;
    }
    if (res->ok) {
        struct directives d = {0};
        char *bad = flow__directives_parse(r, res->directives, &d);
        if (bad) {
            json_decref(writes);
            flow__directives_cleanup(&d);
            flow__attempt_failed(r, a, bad);
            return;
        }
        json_t *out = res->output;
        res->output = NULL;
        flow__attempt_succeeded(r, a, out, writes, &d);
        return;
    }
    json_decref(writes);
    char *err = res->error;
    res->error = NULL;
    struct fail_how how = {res->final, res->retry_set, res->retry_after};
    flow__attempt_failed_how(r, a, err ? err : flow__strdup("the command failed"), &how);
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
        if (act_cmd(a)) {
            act_cmd(a)->timed_out = true;
            if (act_cmd(a)->cmd)
                flow__cmd_kill(act_cmd(a)->cmd, SIGTERM);
            else if (act_cmd(a)->remote)
                flow__remote_signal(r, a, "TERM:timeout");
        } else if (a->ctx) {
            a->ctx->timed_out = true;
            atomic_store(&a->ctx->cancelled, 1);
        }
        flow__engine_timer(r->engine, TIMER_GRACE, a, t->policy->kill_grace);
        break;
    case TIMER_GRACE:
        if (act_cmd(a)) {
            if (act_cmd(a)->cmd)
                flow__cmd_kill(act_cmd(a)->cmd, SIGKILL);
            else if (act_cmd(a)->remote && !act_cmd(a)->kill_sent) {
                /* The worker is told to kill it and has one more grace to
                 * say it did. */
                act_cmd(a)->kill_sent = true;
                flow__remote_signal(r, a,
                                    act_cmd(a)->timed_out ? "KILL:timeout" : "KILL:cancel");
                flow__engine_timer(r->engine, TIMER_GRACE, a,
                                   t->policy->kill_grace > 1 ? t->policy->kill_grace : 1);
            } else if (act_cmd(a)->remote) {
                /* No answer: a dead worker, or none serving the queue, never
                 * would. The attempt ends here (a late completion is
                 * dropped). */
                bool timed_out = act_cmd(a)->timed_out;
                struct flow__cmd_result res = {.ok = false, .exit_status = -1};
                res.error = timed_out ? flow__asprintf("timed out after %gs (no worker reported "
                                                       "that it stopped)",
                                                       t->policy->timeout)
                                      : flow__strdup("cancelled (no worker reported that it "
                                                     "stopped)");
                flow__run_remote_done(r, a, &res, NULL, NULL);
                flow__cmd_result_cleanup(&res);
            }
        } else if (a->ctx && a->ctx->detached) {
            /* The engine abandoned the body; this attempt is over. */
            bool counted = a->ctx->counted;
            bool timed_out = a->ctx->timed_out;
            a->ctx = NULL;
            release_slot(r, a, counted);
            if (r->interrupting) {
                flow__attempt_dropped(r, a);
                break;
            }
            flow__attempt_failed(r, a,
                                 timed_out
                                     ? flow__asprintf("timed out after %gs and did not stop "
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
    flow__act_set_error(r, a, flow__strdup(why));
    flow__run_journal(r, JREC_ACT_CANCELLED, a, json_pack("{s:s}", "error", why));
    flow__run_notify(r, FLOW_EV_TASK_CANCELLED, a, NULL, 0);
    flow__act_final(r, a);
    flow__run_check_end(r);
}

/* [L] Stop what runs: commands get SIGTERM then SIGKILL, C bodies are asked
 * to stop and abandoned after the grace period, nested runs are cancelled
 * with `why`. */
void flow__run_stop_running(struct flow_run *r, const char *why)
{
    struct flow_engine *e = r->engine;
    for (size_t i = 0; i < r->act_count; i++) {
        struct act *a = flow__act_at(r, i);
        if (a->status != FLOW_ACT_RUNNING)
            continue;
        const struct flow_task *t = act_task(a);
        if (a->dyn && a->dyn->child)
            flow__run_stop(a->dyn->child, FLOW_RUN_CANCELLED, why);
        if (act_cmd(a) && act_cmd(a)->remote && r->interrupting) {
            /* The worker goes on; the resumed run reads its completion. */
            struct flow__cmd_result res = {.ok = false, .exit_status = -1};
            flow__run_remote_done(r, a, &res, NULL, NULL);
            continue;
        }
        if (act_cmd(a)) {
            act_cmd(a)->killed = true;
            if (act_cmd(a)->cmd)
                flow__cmd_kill(act_cmd(a)->cmd, SIGTERM);
            else if (act_cmd(a)->remote)
                flow__remote_signal(r, a, "TERM:cancel");
            flow__engine_timer(e, TIMER_GRACE, a, t->policy->kill_grace);
        } else if (a->ctx) {
            atomic_store(&a->ctx->cancelled, 1);
            flow__engine_timer(e, TIMER_GRACE, a, t->policy->kill_grace);
        }
    }
}

void flow__run_stop(struct flow_run *r, flow_run_status status, const char *why)
{
    /* A paused run has stopped in this process too, and its host may be
     * reading it (flow_run_wait has returned): nothing changes it now, not
     * even a cancel that the store hands the runner before it lets go. */
    if (r->stopping || r->status >= FLOW_RUN_PAUSED)
        return;
    flow__engine_tick(r->engine);
    struct flow_engine *e = r->engine;
    r->stopping = true;
    r->stop_status = status;
    flow__free(r->error);
    r->error = why ? flow__strdup(why) : NULL;
    flow__engine_drop_run(e, r);
    flow__run_stop_running(r, why ? why : "the parent run stopped");
    /* A foreach parent with no element running now would wait for ever: the
     * elements it had still to start will not be created (expand.c). */
    for (size_t i = 0; i < r->act_count; i++) {
        struct act *a = flow__act_at(r, i);
        if (a->status == FLOW_ACT_RUNNING && a->dyn && a->dyn->fe && !a->dyn->fe->running)
            flow__run_cancel_act(r, a, "the run stopped before its elements ran");
    }
    flow__feedback_stop(r);
    flow__run_check_end(r);
}
