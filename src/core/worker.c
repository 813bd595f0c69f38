/* worker.c -- `flow worker` and the C worker API (include/flow.h): take
 * activations from Redis streams, run them, publish their completions
 * (docs/internals/distribution.md, "The worker").
 *
 * Threads, each with its own Redis connection where it talks to Redis:
 *  - the main thread (flow_worker_run): supervises commands through poll()
 *    (exec/cmd.h), publishes finished jobs in batches (a pipelined script
 *    per run that XADDs its completions and acknowledges them), checks
 *    the cancel keys, renews claims, heartbeats. It sleeps in poll() on the
 *    eventfd and the commands' descriptors; its connection waits for a
 *    reply MAIN_TIMEOUT_S at most, so a Redis that hangs does not stop it.
 *  - the reader (core/worker_take.c): XAUTOCLAIM then XREADGROUP COUNT
 *    <free slots> BLOCK, so an idle worker starts an entry as soon as it
 *    arrives; higher priority levels first, and only what the resources
 *    free let it start (it parks the rest for other workers); it gives
 *    each job its run's state (exec/remote_state.h: read once per version),
 *    hands C function jobs straight to the pool and wakes the main thread
 *    for the rest.
 *  - the pool: `concurrency` threads that run registered C functions with a
 *    worker-side flow_ctx (ctx->remote, core/ctx.c) and wake the main thread
 *    when one finishes.
 * `mu` guards the job list, the pool's queue, the lists of new and
 * finished jobs and the resources in use; a job's fixed fields are written
 * before it is listed. What the main thread writes to Redis is in
 * core/worker_pub.c; the structures the files share in core/worker_int.h.
 */
#include "util/compat.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/worker_int.h"
#include "exec/cmd.h"
#include "exec/remote_state.h"
#include "exec/remote_wire.h"
#include "exec/rundir.h"
#include "exec/tree.h"
#include "flow.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/json.h"
#include "util/log.h"
#include "util/redact.h"
#include "util/redis.h"
#include "util/vec.h"

static void wake(struct flow_worker *w)
{
    uint64_t one = 1;
    ssize_t wr = write(w->wake_fd, &one, sizeof(one));
    (void)wr;
}

void flow__worker_wake_locked(struct flow_worker *w)
{
    if (!w->wake_pending) {
        w->wake_pending = true;
        wake(w);
    }
}

/* [mu] Push, or log: out of memory keeps the job out of the list (its entry
 * stays pending and is claimed again). */
bool flow__worker_push(struct flow_worker *w, wjob_vec *v, struct wjob *j)
{
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(v, j, rc);
    if (rc)
        flow__log(FLOW_LOG_ERROR, "worker %s: out of memory taking entry %s", w->name,
                  j->entry_id);
    return rc == FLOW_OK;
}

/* The work directory of run `run`, shared; NULL when out of memory. */
static struct wdir *dir_of(struct flow_worker *w, const char *run)
{
    struct wdir *free_slot = NULL;
    for (size_t i = 0; i < w->dirs.count; i++) {
        struct wdir *d = w->dirs.items[i];
        if (d->dir && !strcmp(d->run, run)) {
            d->users++;
            return d;
        }
        if (!d->dir && !free_slot)
            free_slot = d;
    }
    if (!free_slot) {
        flow_err rc = FLOW_OK;
        free_slot = flow__calloc(1, sizeof(*free_slot));
        if (free_slot)
            FLOW__VEC_PUSH(&w->dirs, free_slot, rc);
        if (!free_slot || rc) {
            flow__free(free_slot);
            return NULL;
        }
    }
    free_slot->dir = flow__rundir_new(run, NULL);
    if (!free_slot->dir)
        return NULL;
    snprintf(free_slot->run, sizeof(free_slot->run), "%s", run);
    free_slot->users = 1;
    return free_slot;
}

/* ---- one job -------------------------------------------------------------- */

void flow__worker_job_free(struct wjob *j)
{
    if (!j)
        return;
    if (j->state_held)
        flow__rundir_state_release(j->dir->dir, j->state_version);
    if (j->dir && --j->dir->users == 0) {
        flow__rundir_unref(j->dir->dir);
        j->dir->dir = NULL; /* the slot is free */
    }
    flow__rw_task_cleanup(&j->task);
    flow__rstate_unref(j->state);
    flow__cmd_result_cleanup(&j->res);
    flow__cmd_result_cleanup(&j->ares);
    json_decref(j->writes);
    json_decref(j->events);
    json_decref(j->rctx.waiting);
    json_decref(j->ctx.output);
    json_decref(j->ctx.writes);
    json_decref(j->ctx.directives);
    flow__free(j->ctx.error);
    flow__free(j->rctx.unsupported);
    flow__free(j->env_worker);
    for (size_t i = 0; j->env_filled && j->task.env && j->task.env[i]; i++)
        flow__free(j->env_filled[i]);
    flow__free(j->env_filled);
    flow__secrets_unref(j->secrets);
    flow__free(j->env);
    flow__free(j->run);
    flow__free(j->task_name);
    flow__free(j->queue_key);
    flow__free(j);
}

void flow__worker_job_fail(struct wjob *j, char *why)
{
    flow__cmd_result_cleanup(&j->res);
    j->res.ok = false;
    j->res.exit_status = -1;
    j->res.error = why ? why : flow__strdup("out of memory");
    j->done = true;
}

/* [main] Start command job `j` (its spec decoded); on failure it is done. */
static void command_start(struct flow_worker *w, struct wjob *j)
{
    char *why = NULL;
    size_t n = 0;
    while (j->task.env && j->task.env[n])
        n++;
    j->env = flow__calloc(n + 2, sizeof(*j->env));
    j->env_worker = flow__asprintf("FLOW_WORKER=%s", w->name);
    j->dir = dir_of(w, j->run);
    if (!j->env || !j->env_worker || !j->dir) {
        flow__worker_job_fail(j, NULL);
        return;
    }
    /* The runner left the secrets for us to fill in (docs/internals/core.md). */
    j->env_filled = j->task.secrets ? flow__calloc(n + 1, sizeof(*j->env_filled)) : NULL;
    if (j->task.secrets && !j->env_filled) {
        flow__worker_job_fail(j, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (j->env_filled &&
            !flow__rw_fill_secrets(j->task.env[i], j->task.secrets, j->secrets,
                                   &j->env_filled[i], &why)) {
            flow__worker_job_fail(j, why);
            return;
        }
        j->env[i] = j->env_filled && j->env_filled[i] ? j->env_filled[i] : j->task.env[i];
    }
    j->env[n] = j->env_worker;
    struct flow__cmd_spec *s = &j->task.spec;
    s->env = j->env;
    s->run_id = j->run;
    s->task = j->task_name;
    s->activation = j->ident.act;
    s->attempt = (int)j->ident.attempt;
    s->work_dir = flow__rundir_path(j->dir->dir, &why);
    if (!s->work_dir) {
        flow__worker_job_fail(j, why);
        return;
    }
    s->workdir = flow__rundir_workdir(j->dir->dir);
    s->state_path = flow__rundir_state(j->dir->dir, j->state_version, j->task.state, &why);
    if (!s->state_path) {
        flow__worker_job_fail(j, why);
        return;
    }
    j->state_held = true;
    flow_error err;
    if (flow__cmd_start(s, &j->cmd, &err) != FLOW_OK) {
        flow__worker_job_fail(j, flow__strdup(err.message));
        return;
    }
    w->spawned = true;
}

/* ---- C functions: the pool ------------------------------------------------- */

/* [pool] What came out of a C function, as the completion's result (the
 * same rules as a local C task's, core/attempt.c). */
static void fn_result(struct flow_worker *w, struct wjob *j, int rc)
{
    struct flow_ctx *ctx = &j->ctx;
    struct flow__cmd_result *res = &j->res;
    bool timed_out = atomic_load(&j->timed_out);
    res->ok = rc == 0 && !timed_out && !j->rctx.unsupported;
    res->exit_status = res->ok ? 0 : -1;
    if (res->ok) {
        res->output = ctx->output ? ctx->output : json_null();
        res->directives = ctx->directives;
        j->writes = ctx->writes;
        ctx->output = ctx->directives = ctx->writes = NULL;
        return;
    }
    const char *why = j->rctx.unsupported ? j->rctx.unsupported : ctx->error;
    char code[32];
    snprintf(code, sizeof(code), "returned %d", rc);
    if (!why)
        why = rc ? code : "stopped when asked";
    res->error = timed_out ? flow__asprintf("timed out on worker '%s'; %s", w->name, why)
                           : flow__strdup(why);
    if (!timed_out && !j->rctx.unsupported) {
        res->final = ctx->fail_final;
        res->retry_set = ctx->retry_set;
        res->retry_after = ctx->retry_after;
    }
}

static void *pool_main(void *arg)
{
    struct flow_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->q_head && !w->pool_stop)
            pthread_cond_wait(&w->pool_cv, &w->mu);
        struct wjob *j = w->q_head;
        if (!j)
            break;
        w->q_head = j->next_q;
        if (!w->q_head)
            w->q_tail = NULL;
        pthread_mutex_unlock(&w->mu);
        /* Killed while it waited for a thread (maybe answered for and
         * acknowledged already): its body does not run at all. */
        int rc = atomic_load(&j->ctx.cancelled) ? -1 : j->fn->fn(&j->ctx);
        fn_result(w, j, rc);
        pthread_mutex_lock(&w->mu);
        flow__worker_push(w, &w->finished, j);
        flow__worker_wake_locked(w);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static const struct wfn *fn_named(const struct flow_worker *w, const char *name)
{
    for (size_t i = 0; i < w->fns.count; i++)
        if (!strcmp(w->fns.items[i].name, name))
            return &w->fns.items[i];
    return NULL;
}

/* [pool] flow_ctx_emit on a worker: kept for the completion, and streamed
 * to the runner by the main thread as soon as it wakes. */
static flow_err fn_emit(struct flow__rctx *rc, const char *event, json_t *data)
{
    struct wjob *j = rc->emit_arg;
    struct flow_worker *w = j->owner;
    json_t *ev = json_object();
    /* set_new takes `data` even when it fails */
    if (!ev || json_object_set_new(ev, "data", data ? data : json_null()) ||
        json_object_set_new(ev, "event", json_string(event))) {
        if (!ev)
            json_decref(data);
        json_decref(ev);
        return FLOW_ENOMEM;
    }
    pthread_mutex_lock(&w->mu);
    flow_err rc2 = FLOW_OK;
    if (!j->events && !(j->events = json_array()))
        rc2 = FLOW_ENOMEM;
    if (!rc2 && json_array_append(j->events, ev))
        rc2 = FLOW_ENOMEM;
    if (!rc2 && !j->emit_listed && flow__worker_push(w, &w->emitting, j)) {
        j->emit_listed = true;
        flow__worker_wake_locked(w);
    }
    json_decref(ev); /* the array's now, or nobody's; counted under mu either way */
    pthread_mutex_unlock(&w->mu);
    return rc2;
}

/* The values of the run's secrets from this worker's environment: what its
 * completions must not carry, and what fills in the env of its command. */
static flow_err take_secrets(struct wjob *j)
{
    size_t n = 0;
    while (j->task.secrets && j->task.secrets[n])
        n++;
    return flow__secrets_from_env(j->task.secrets, n, false, &j->secrets, NULL);
}

void flow__worker_fn_prepare(struct flow_worker *w, struct wjob *j)
{
    j->rctx.input = j->task.spec.input;
    j->rctx.state = j->task.state;
    j->rctx.task = j->task_name;
    j->rctx.run = j->run;
    j->rctx.act = j->ident.act;
    j->rctx.udata = j->fn->udata;
    j->rctx.worker = w->name;
    j->rctx.answers = j->task.answers;
    j->rctx.item = j->task.item;
    j->rctx.index = j->task.index;
    j->rctx.emit = fn_emit;
    j->rctx.emit_arg = j;
    j->rctx.secrets = j->secrets;
    j->owner = w;
    j->ctx.remote = &j->rctx;
    j->ctx.fn = j->fn->fn;
    j->ctx.attempt = j->ident.attempt;
    atomic_init(&j->ctx.cancelled, 0);
}

/* ---- reading entries (the reader thread) ------------------------------------ */

struct wjob *flow__worker_job_of_entry(struct flow_worker *w, const char *queue_key,
                                 const struct flow__rw_entry *en)
{
    struct wjob *j = flow__calloc(1, sizeof(*j));
    const char *why = NULL;
    if (!j)
        return NULL;
    snprintf(j->entry_id, sizeof(j->entry_id), "%s", en->id);
    j->queue_key = flow__strdup(queue_key);
    j->res.exit_status = -1;
    atomic_init(&j->timed_out, false);
    bool named = flow__rw_ident(en, &j->ident, &why);
    if (named) {
        j->run = flow__strdup(j->ident.run);
        j->ident.run = j->run;
    }
    const char *task = flow__rw_field(en, "task");
    j->task_name = flow__strdup(task ? task : "?");
    if (!j->queue_key || !j->task_name || (named && !j->run)) {
        flow__worker_job_free(j);
        return NULL;
    }
    if (!named) {
        /* Nobody to answer: acknowledge it so that it is not read again. */
        flow__log(FLOW_LOG_WARN, "worker %s: entry %s of %s is malformed (%s); dropped", w->name,
                  en->id, queue_key, why);
        j->done = true;
        j->no_reply = true;
        return j;
    }
    char *bad = NULL;
    if (!flow__rw_spec_decode(flow__rw_field(en, "spec"), &j->task, &bad))
        flow__worker_job_fail(j, flow__asprintf("malformed activation from Redis: %s", bad));
    else if (take_secrets(j) != FLOW_OK)
        flow__worker_job_fail(j, NULL);
    else if (j->task.fn && !(j->fn = fn_named(w, j->task.fn)))
        flow__worker_job_fail(j, flow__asprintf("function '%s' is not served by worker '%s'", j->task.fn,
                                   w->name));
    flow__free(bad);
    return j;
}


/* A connection of `wc` (connecting again after a loss, at most once every
 * RETRY_NS, so that a Redis that hangs costs a caller one timeout per
 * retry, not one per call); NULL while Redis cannot be reached. */
redisContext *flow__worker_conn(struct flow_worker *w, struct wconn *wc)
{
    if (wc->c && !wc->c->err)
        return wc->c;
    int64_t now = flow__now_ns();
    if (now < wc->retry_at)
        return NULL;
    wc->retry_at = now + RETRY_NS;
    if (wc->c)
        redisFree(wc->c);
    flow_error err;
    wc->c = flow__redis_connect(&w->addr, wc->timeout_s, &err);
    if (!wc->c && !wc->warned) {
        flow__log(FLOW_LOG_WARN, "worker %s: %s (retrying)", w->name, err.message);
        wc->warned = true;
    } else if (wc->c && wc->warned) {
        flow__log(FLOW_LOG_INFO, "worker %s: connected to %s again", w->name, w->addr.shown);
        wc->warned = false;
        if (wc == &w->rd)
            w->groups_ok = false;
    }
    return wc->c;
}

/* A command on `wc`; NULL when Redis cannot be reached or answered an
 * error (logged). */
redisReply *flow__worker_cmdv(struct flow_worker *w, struct wconn *wc, int argc, const char **argv)
{
    if (!flow__worker_conn(w, wc))
        return NULL;
    flow_error err;
    redisReply *r = flow__redis_cmdv(wc->c, &w->addr, &err, argc, argv, NULL);
    if (!r && !wc->c->err)
        flow__log(FLOW_LOG_WARN, "worker %s: %s", w->name, err.message);
    return r;
}

/* ---- the loop ------------------------------------------------------------- */

#define MAX_FDS 256

/* [main] Done with job `j` (its body returned or it never ran): publish it
 * unless it was (abandoned and answered). */
static void job_over(struct flow_worker *w, struct wjob *j, wjob_vec *pub)
{
    if (!j->over) { /* its slot is free: the reader may take another entry */
        pthread_mutex_lock(&w->mu);
        w->busy--;
        if (j->need.cpu > 0 || j->need.memory > 0 || j->need.gpu > 0) {
            /* Its resources too (a command's once its process ended). */
            w->used.cpu -= j->need.cpu;
            w->used.memory -= j->need.memory;
            w->used.gpu -= j->need.gpu;
            if (w->busy == 0) /* no sum drifts away from 0 */
                memset(&w->used, 0, sizeof(w->used));
            w->released = true;
        }
        pthread_cond_signal(&w->reader_cv);
        pthread_mutex_unlock(&w->mu);
    }
    j->over = true;
    if (j->acked)
        j->gone = true;
    else if (!j->in_pub) {
        j->in_pub = true;
        flow__worker_push(w, pub, j);
    }
}

/* [main] Forget the jobs that are acknowledged and over; keep the rest of
 * `pub` for later. */
static void sweep_published(struct flow_worker *w, wjob_vec *pub)
{
    (void)w;
    size_t keep = 0;
    for (size_t i = 0; i < pub->count; i++) {
        struct wjob *j = pub->items[i];
        if (!j->acked) {
            pub->items[keep++] = j;
            continue;
        }
        j->in_pub = false;
        j->gone = j->over;
    }
    pub->count = keep;
}

/* [main] Remove the jobs marked gone from `jobs` (freeing slots), free them. */
static void drop_gone(struct flow_worker *w, wjob_vec *scratch)
{
    scratch->count = 0;
    pthread_mutex_lock(&w->mu);
    size_t keep = 0;
    for (size_t i = 0; i < w->jobs.count; i++) {
        struct wjob *j = w->jobs.items[i];
        if (j->gone)
            flow__worker_push(w, scratch, j);
        else
            w->jobs.items[keep++] = j;
    }
    w->jobs.count = keep;
    if (scratch->count)
        pthread_cond_signal(&w->reader_cv);
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < scratch->count; i++)
        flow__worker_job_free(scratch->items[i]);
    scratch->count = 0;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Start a thread with SIGTERM, SIGINT and SIGHUP blocked: they are for the
 * main thread (its poll() returns), never for a body or a Redis read. */
static bool start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    bool ok = pthread_create(t, NULL, fn, arg) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ok;
}

/* [main] Poll the wake eventfd and the commands for at most `timeout` ms;
 * finished commands are over. */
static void wait_events(struct flow_worker *w, wjob_vec *cmds, wjob_vec *pub, int timeout)
{
    struct pollfd fds[MAX_FDS];
    int n = 0;
    fds[n].fd = w->wake_fd;
    fds[n].events = POLLIN;
    fds[n].revents = 0;
    n++;
    for (size_t i = 0; i < cmds->count; i++) {
        struct wjob *j = cmds->items[i];
        j->nfds = 0;
        if (n + FLOW__CMD_POLLFDS_MAX <= MAX_FDS) {
            j->fd_first = n;
            j->nfds = flow__cmd_pollfds(j->cmd, &fds[n], MAX_FDS - n);
            n += j->nfds;
        }
    }
    int ready = poll(fds, (nfds_t)n, timeout);
    if (ready < 0 && errno != EINTR)
        flow__log(FLOW_LOG_ERROR, "worker %s: poll failed: %s", w->name, strerror(errno));
    if (ready > 0 && (fds[0].revents & POLLIN)) {
        uint64_t v;
        ssize_t rd = read(w->wake_fd, &v, sizeof(v));
        (void)rd;
    }
    size_t keep = 0;
    for (size_t i = 0; i < cmds->count; i++) {
        struct wjob *j = cmds->items[i];
        if (j->nfds && ready > 0)
            flow__cmd_handle(j->cmd, &fds[j->fd_first], j->nfds);
        if (!flow__cmd_is_done(j->cmd)) {
            cmds->items[keep++] = j;
            continue;
        }
        flow__cmd_finish(j->cmd, atomic_load(&j->timed_out), &j->res);
        j->cmd = NULL;
        j->done = true;
        job_over(w, j, pub);
    }
    cmds->count = keep;
}

flow_err flow_worker_run(flow_worker *w, flow_error *err)
{
    flow__error_clear(err);
    if (w->running)
        return flow__error(err, FLOW_ESTATE, "worker %s: flow_worker_run was called already",
                           w->name);
    w->running = true;
    if (!flow__worker_conn(w, &w->main))
        return flow__error(err, FLOW_EIO, "cannot connect to %s", w->addr.shown);
    /* Jobs not acknowledged: `concurrency` running and as many published. */
    size_t cap = 2 * (size_t)w->concurrency;
    wjob_vec pub = {0}, live = {0}, fresh = {0}, fin = {0}, cmds = {0}, emit = {0};
    flow_err rc = FLOW_OK;
    bool reader = false;
    /* Reserved once: a job list never holds more than 2 * `concurrency`. */
    FLOW__VEC_RESERVE(&w->jobs, cap, rc);
    FLOW__VEC_RESERVE(&w->fresh, cap, rc);
    FLOW__VEC_RESERVE(&w->finished, cap, rc);
    FLOW__VEC_RESERVE(&w->emitting, cap, rc);
    FLOW__VEC_RESERVE(&emit, cap, rc);
    FLOW__VEC_RESERVE(&pub, cap, rc);
    FLOW__VEC_RESERVE(&live, cap, rc);
    FLOW__VEC_RESERVE(&fresh, cap, rc);
    FLOW__VEC_RESERVE(&fin, cap, rc);
    FLOW__VEC_RESERVE(&cmds, cap, rc);
    w->pool = w->fns.count ? flow__calloc(cap, sizeof(*w->pool)) : NULL;
    if (rc || (w->fns.count && !w->pool)) {
        flow__error(err, FLOW_ENOMEM, "out of memory starting worker %s", w->name);
        goto out;
    }
    w->started = flow__wall_time();
    flow__tree_prepare();
    for (; w->pool && w->npool < cap; w->npool++)
        if (!start_thread(&w->pool[w->npool], pool_main, w))
            break;
    reader = w->npool == (w->fns.count ? cap : 0) && start_thread(&w->reader, flow__worker_reader_main, w);
    if (!reader) {
        flow__log(FLOW_LOG_ERROR, "worker %s: cannot start its threads", w->name);
        atomic_store(&w->stopping, 1);
        w->reader_exited = true;
    }
    const int64_t renew_every = (int64_t)(w->claim_after * 1e9 / 3);
    int64_t now = flow__now_ns();
    int64_t cancel_at = 0, renew_at = now + renew_every, beat_at = 0, sweep_at = 0, pub_at = 0;
    for (;;) {
        bool stopping = atomic_load(&w->stopping);
        pthread_mutex_lock(&w->mu);
        wjob_vec t = w->fresh;
        w->fresh = fresh;
        fresh = t;
        t = w->finished;
        w->finished = fin;
        fin = t;
        t = w->emitting;
        w->emitting = emit;
        emit = t;
        w->wake_pending = false;
        bool reader_gone = w->reader_exited;
        if (stopping)
            pthread_cond_broadcast(&w->reader_cv);
        pthread_mutex_unlock(&w->mu);
        if (stopping && !reader_gone && !w->unblocked) {
            long long id = atomic_load(&w->rd_client_id);
            char ids[24];
            snprintf(ids, sizeof(ids), "%lld", id);
            const char *ub[] = {"CLIENT", "UNBLOCK", ids};
            freeReplyObject(id ? flow__worker_cmdv(w, &w->main, 3, ub) : NULL);
            w->unblocked = true;
        }
        for (size_t i = 0; i < fresh.count; i++) {
            struct wjob *j = fresh.items[i];
            command_start(w, j);
            if (j->done)
                job_over(w, j, &pub);
            else
                flow__worker_push(w, &cmds, j);
        }
        fresh.count = 0;
        for (size_t i = 0; i < fin.count; i++)
            job_over(w, fin.items[i], &pub);
        fin.count = 0;
        if (emit.count) /* before the completions: the runner reads in order */
            flow__worker_stream_events(w, &emit);
        now = flow__now_ns();
        if (pub.count && now >= pub_at) {
            flow__worker_publish(w, &pub);
            sweep_published(w, &pub);
            pub_at = pub.count ? now + RETRY_NS : 0; /* Redis is away: later */
        }
        drop_gone(w, &fin);
        flow__worker_snapshot(w, &live, true);
        pthread_mutex_lock(&w->mu);
        size_t njobs = w->jobs.count;
        pthread_mutex_unlock(&w->mu);
        if (stopping && reader_gone && njobs == 0)
            break;
        if (now >= beat_at) {
            flow__worker_heartbeat(w, false, njobs);
            beat_at = now + HEARTBEAT_EVERY_NS;
        }
        if (live.count && now >= cancel_at) {
            flow__worker_check_cancels(w, &live, &pub);
            cancel_at = now + CANCEL_EVERY_NS;
        }
        if (!live.count)
            renew_at = now + renew_every;
        else if (now >= renew_at) {
            flow__worker_renew_claims(w, &live);
            renew_at = now + renew_every;
        }
        if (cmds.count && now >= sweep_at) {
            flow__tree_sweep();
            sweep_at = now + 500 * MS;
        }
        if (pub.count && !pub_at)
            continue; /* abandoned just now: publish at once */
        int64_t next = beat_at;
        if (live.count)
            next = min64(next, min64(cancel_at, renew_at));
        if (cmds.count)
            next = min64(next, sweep_at);
        if (pub.count)
            next = min64(next, pub_at);
        if (cmds.count * FLOW__CMD_POLLFDS_MAX + 1 > MAX_FDS)
            next = min64(next, now + 50 * MS); /* some are not polled */
        now = flow__now_ns();
        int timeout = next <= now ? 0 : (int)((next - now + MS - 1) / MS);
        wait_events(w, &cmds, &pub, timeout);
    }
    flow__worker_heartbeat(w, true, 0);
    if (reader)
        pthread_join(w->reader, NULL);
    pthread_mutex_lock(&w->mu);
    w->pool_stop = true;
    pthread_cond_broadcast(&w->pool_cv);
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < w->npool; i++)
        pthread_join(w->pool[i], NULL);
    w->npool = 0;
out:
    FLOW__VEC_FREE(&pub);
    FLOW__VEC_FREE(&live);
    FLOW__VEC_FREE(&fresh);
    FLOW__VEC_FREE(&fin);
    FLOW__VEC_FREE(&cmds);
    FLOW__VEC_FREE(&emit);
    return err->code;
}

void flow_worker_stop(flow_worker *w)
{
    atomic_store(&w->stopping, 1);
    wake(w);
}

flow_err flow_worker_register(flow_worker *w, const char *name, flow_task_fn fn, void *udata)
{
    if (!w || !fn || !name || !flow__redis_name_ok(name))
        return FLOW_EINVAL;
    if (w->running)
        return FLOW_ESTATE;
    if (fn_named(w, name))
        return FLOW_EEXISTS;
    struct wfn f = {flow__strdup(name), fn, udata};
    flow_err rc = f.name ? FLOW_OK : FLOW_ENOMEM;
    if (!rc)
        FLOW__VEC_PUSH(&w->fns, f, rc);
    if (rc)
        flow__free(f.name);
    return rc;
}

flow_worker *flow_worker_new(const char *url, const flow_worker_options *o, flow_error *err)
{
    flow__error_clear(err);
    url = flow__redis_url_from_env(url);
    if (!url)
        return flow__error(err, FLOW_EINVAL, "flow worker needs Redis: give --redis URL or set "
                                             "FLOW_REDIS"),
               NULL;
    struct flow_worker *w = flow__calloc(1, sizeof(*w));
    if (!w)
        return flow__error(err, FLOW_ENOMEM, "out of memory starting a worker"), NULL;
    w->wake_fd = -1;
    atomic_init(&w->stopping, 0);
    atomic_init(&w->rd_client_id, 0);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->reader_cv, NULL);
    pthread_cond_init(&w->pool_cv, NULL);
    if (flow__redis_parse(url, &w->addr, err) != FLOW_OK)
        goto fail;
    w->concurrency = o && o->concurrency > 0 ? o->concurrency : 4;
    if (w->concurrency > 1024) {
        flow__error(err, FLOW_EINVAL, "--concurrency %d is too many (at most 1024)",
                    w->concurrency);
        goto fail;
    }
    w->claim_after = o && o->claim_after > 0 ? o->claim_after : 30.0;
    if (gethostname(w->host, sizeof(w->host) - 1))
        snprintf(w->host, sizeof(w->host), "unknown");
    if (o && o->name && *o->name)
        snprintf(w->name, sizeof(w->name), "%s", o->name);
    else
        snprintf(w->name, sizeof(w->name), "%.100s-%ld", w->host, (long)getpid());
    if (strlen(w->name) > 100 || strpbrk(w->name, " \t\n")) {
        flow__error(err, FLOW_EINVAL, "worker name '%s' is not 1 to 100 characters without blanks",
                    w->name);
        goto fail;
    }
    const char *const def[] = {"default", NULL};
    const char *const *qs = o && o->queues && o->queues[0] ? o->queues : def;
    while (qs[w->nqueues])
        w->nqueues++;
    w->queue_names = flow__calloc(w->nqueues, sizeof(*w->queue_names));
    struct flow__buf list;
    flow__buf_init(&list, 0);
    for (size_t i = 0; w->queue_names && i < w->nqueues; i++) {
        if (!flow__redis_name_ok(qs[i])) {
            flow__buf_cleanup(&list);
            flow__error(err, FLOW_EINVAL,
                        "queue '%s' is not 1 to 100 letters, digits and _ . : -", qs[i]);
            goto fail;
        }
        w->queue_names[i] = flow__strdup(qs[i]);
        if (!w->queue_names[i] || (i && flow__buf_appendc(&list, ',')) ||
            flow__buf_appends(&list, qs[i]))
            break;
    }
    w->queue_list = flow__buf_take(&list);
    w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!w->queue_names || !w->queue_list || w->wake_fd < 0) {
        flow__error(err, FLOW_ESYSTEM, "cannot start a worker: out of memory or descriptors");
        goto fail;
    }
    for (size_t i = 0; i < w->nqueues; i++)
        if (!w->queue_names[i]) {
            flow__error(err, FLOW_ENOMEM, "out of memory starting a worker");
            goto fail;
        }
    if (o && o->resources) {
        const flow_resources *r = o->resources;
        if (!(r->cpu >= 0 && r->memory >= 0 && r->gpu >= 0 && r->cpu < 1e300 &&
              r->memory < 1e300 && r->gpu < 1e300)) {
            flow__error(err, FLOW_EINVAL, "worker %s: resources must be 0 or more", w->name);
            goto fail;
        }
        w->capacity = *r;
    } else {
        flow_resources_machine(&w->capacity);
    }
    w->capacity_text = flow__rw_resources_encode(&w->capacity, true);
    if (!w->capacity_text || flow__worker_streams_init(w) != FLOW_OK) {
        flow__error(err, FLOW_ENOMEM, "out of memory starting a worker");
        goto fail;
    }
    w->main.timeout_s = MAIN_TIMEOUT_S;
    w->rd.timeout_s = 5.0;
    /* The first connection may take its time; its replies may not. */
    redisContext *c = flow__redis_connect(&w->addr, 5.0, err);
    if (!c)
        goto fail;
    w->main.c = c;
    long usec = (long)(MAIN_TIMEOUT_S * 1e6);
    if (redisSetTimeout(c, (struct timeval){.tv_sec = usec / 1000000, .tv_usec = usec % 1000000}) !=
        REDIS_OK) {
        flow__error(err, FLOW_EIO, "cannot set the timeout of the connection to %s",
                    w->addr.shown);
        goto fail;
    }
    return w;
fail:
    flow_worker_free(w);
    return NULL;
}

void flow_worker_free(flow_worker *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->jobs.count; i++) {
        struct wjob *j = w->jobs.items[i];
        if (j->cmd)
            flow__cmd_abort(j->cmd);
        j->cmd = NULL;
        flow__worker_job_free(j);
    }
    FLOW__VEC_FREE(&w->jobs);
    FLOW__VEC_FREE(&w->fresh);
    FLOW__VEC_FREE(&w->finished);
    FLOW__VEC_FREE(&w->emitting);
    for (size_t i = 0; i < w->dirs.count; i++)
        flow__free(w->dirs.items[i]);
    FLOW__VEC_FREE(&w->dirs);
    flow__rstate_cache_cleanup(&w->states);
    for (size_t i = 0; i < w->fns.count; i++)
        flow__free(w->fns.items[i].name);
    FLOW__VEC_FREE(&w->fns);
    flow__worker_streams_free(w);
    for (size_t i = 0; w->queue_names && i < w->nqueues; i++)
        flow__free(w->queue_names[i]);
    flow__free(w->queue_names);
    flow__free(w->capacity_text);
    flow__free(w->queue_list);
    flow__free(w->pool);
    if (w->main.c)
        redisFree(w->main.c);
    if (w->rd.c)
        redisFree(w->rd.c);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    pthread_cond_destroy(&w->pool_cv);
    pthread_cond_destroy(&w->reader_cv);
    pthread_mutex_destroy(&w->mu);
    flow__free(w);
}

