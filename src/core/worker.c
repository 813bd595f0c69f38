/* worker.c -- `flow worker` and the C worker API (include/flow.h): take
 * activations from Redis streams, run them, publish their completions
 * (docs/internals/distribution.md).
 *
 * One thread: it reads entries (XAUTOCLAIM, XREADGROUP), supervises the
 * commands through poll() as the engine's loop thread does (exec/cmd.h),
 * watches the cancel keys, renews its claims and writes its heartbeat.
 * C functions run on a thread each and wake it through the eventfd.
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
#include <unistd.h>

#include "exec/cmd.h"
#include "exec/remote_wire.h"
#include "flow.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/redis.h"
#include "util/vec.h"
#include "exec/rundir.h"
#include "exec/tree.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

#define MS 1000000LL
#define CANCEL_EVERY_NS (100 * MS)
#define HEARTBEAT_EVERY_NS (1000 * MS)

/* The work directory of one run, shared by its jobs on this worker. */
struct wdir {
    char run[80];
    struct flow__rundir *dir; /* NULL: a free slot */
    size_t users;
};

/* One entry being run. */
struct wjob {
    char entry_id[48];
    char *queue_key;
    struct flow__rw_ident ident; /* ident.run is `run` */
    char *run;
    char *task_name;
    struct flow__rw_task task;
    const char **env;
    char *env_worker;
    struct wdir *dir;
    uint64_t state_version;
    bool state_held;
    struct flow__cmd *cmd;
    int nfds, fd_first;
    int signalled;       /* 1: SIGTERM sent, 2: SIGKILL */
    bool timed_out;      /* the runner's signal said "timeout" */
    bool done;           /* res holds the completion */
    bool no_reply;       /* malformed: acknowledge only */
    int64_t started_ns;
    struct flow__cmd_result res;
    json_t *writes;
};

struct flow_worker {
    struct flow__redis_addr addr;
    redisContext *c;
    bool warned, groups_ok, spawned;
    char name[160];
    char host[256];
    char **queue_keys;
    size_t nqueues;
    char *queue_list;
    int concurrency;
    double claim_after;
    double started;
    int64_t claim_at;
    uint64_t done_count;
    int wake_fd;
    atomic_int stopping;
    FLOW__VEC(struct wjob *) jobs;
    FLOW__VEC(struct wdir *) dirs;
    uint64_t state_seq;
};

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

static void job_free(struct wjob *j)
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
    flow__cmd_result_cleanup(&j->res);
    json_decref(j->writes);
    flow__free(j->env_worker);
    flow__free(j->env);
    flow__free(j->run);
    flow__free(j->task_name);
    flow__free(j->queue_key);
    flow__free(j);
}

/* The completion of a job that could not run at all. */
static void job_fail(struct wjob *j, char *why)
{
    flow__cmd_result_cleanup(&j->res);
    j->res.ok = false;
    j->res.exit_status = -1;
    j->res.error = why ? why : flow__strdup("out of memory");
    j->done = true;
}

/* Start job `j` (its spec decoded): a command, or a C function's thread. */
static void job_start(struct flow_worker *w, struct wjob *j)
{
    char *why = NULL;
    if (j->task.fn) {
        job_fail(j, flow__asprintf("function '%s' is not served by worker '%s' (flow worker runs "
                                   "commands only)",
                                   j->task.fn, w->name));
        return;
    }
    size_t n = 0;
    while (j->task.env && j->task.env[n])
        n++;
    j->env = flow__calloc(n + 2, sizeof(*j->env));
    j->env_worker = flow__asprintf("FLOW_WORKER=%s", w->name);
    j->dir = dir_of(w, j->run);
    if (!j->env || !j->env_worker || !j->dir) {
        job_fail(j, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++)
        j->env[i] = j->task.env[i];
    j->env[n] = j->env_worker;
    struct flow__cmd_spec *s = &j->task.spec;
    s->env = j->env;
    s->run_id = j->run;
    s->task = j->task_name;
    s->activation = j->ident.act;
    s->attempt = (int)j->ident.attempt;
    s->work_dir = flow__rundir_path(j->dir->dir, &why);
    if (!s->work_dir) {
        job_fail(j, why);
        return;
    }
    s->workdir = flow__rundir_workdir(j->dir->dir);
    j->state_version = ++w->state_seq;
    s->state_path = flow__rundir_state(j->dir->dir, j->state_version, j->task.state, &why);
    if (!s->state_path) {
        job_fail(j, why);
        return;
    }
    j->state_held = true;
    flow_error err;
    if (flow__cmd_start(s, &j->cmd, &err) != FLOW_OK) {
        job_fail(j, flow__strdup(err.message));
        return;
    }
    w->spawned = true;
}

/* An entry read from a queue becomes a job (or, malformed, a completion
 * that says so, or nothing). */
static void take_entry(struct flow_worker *w, const char *queue_key,
                       const struct flow__rw_entry *en)
{
    struct wjob *j = flow__calloc(1, sizeof(*j));
    const char *why = NULL;
    if (!j)
        return;
    snprintf(j->entry_id, sizeof(j->entry_id), "%s", en->id);
    j->queue_key = flow__strdup(queue_key);
    j->res.exit_status = -1;
    j->started_ns = flow__now_ns();
    bool named = flow__rw_ident(en, &j->ident, &why);
    if (named) {
        j->run = flow__strdup(j->ident.run);
        j->ident.run = j->run;
    }
    const char *task = flow__rw_field(en, "task");
    j->task_name = flow__strdup(task ? task : "?");
    if (!j->queue_key || !j->task_name || (named && !j->run)) {
        job_free(j);
        return;
    }
    if (!named) {
        /* Nobody to answer: acknowledge it so that it is not read again. */
        flow__log(FLOW_LOG_WARN, "worker %s: entry %s of %s is malformed (%s); dropped", w->name,
                  en->id, queue_key, why);
        j->done = true;
        j->no_reply = true;
    } else {
        char *bad = NULL;
        if (!flow__rw_spec_decode(flow__rw_field(en, "spec"), &j->task, &bad))
            job_fail(j, flow__asprintf("malformed activation from Redis: %s", bad));
        flow__free(bad);
    }
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&w->jobs, j, rc);
    if (rc) {
        job_free(j);
        return;
    }
    if (!j->done)
        job_start(w, j);
}

/* ---- Redis ---------------------------------------------------------------- */

static redisContext *conn(struct flow_worker *w)
{
    if (w->c && !w->c->err)
        return w->c;
    if (w->c)
        redisFree(w->c);
    flow_error err;
    w->c = flow__redis_connect(&w->addr, 5.0, &err);
    if (!w->c && !w->warned) {
        flow__log(FLOW_LOG_WARN, "worker %s: %s (retrying)", w->name, err.message);
        w->warned = true;
    } else if (w->c && w->warned) {
        flow__log(FLOW_LOG_INFO, "worker %s: connected to %s again", w->name, w->addr.shown);
        w->warned = false;
        w->groups_ok = false;
    }
    return w->c;
}

/* A command; NULL when Redis cannot be reached or answered an error
 * (logged). */
static redisReply *cmdv(struct flow_worker *w, int argc, const char **argv)
{
    if (!conn(w))
        return NULL;
    flow_error err;
    redisReply *r = flow__redis_cmdv(w->c, &w->addr, &err, argc, argv, NULL);
    if (!r && !w->c->err)
        flow__log(FLOW_LOG_WARN, "worker %s: %s", w->name, err.message);
    return r;
}

static bool ensure_groups(struct flow_worker *w)
{
    if (w->groups_ok)
        return true;
    for (size_t i = 0; i < w->nqueues; i++) {
        if (!conn(w))
            return false;
        redisReply *r = redisCommand(w->c, "XGROUP CREATE %s %s 0 MKSTREAM", w->queue_keys[i],
                                     FLOW__RW_GROUP);
        if (!r)
            return false;
        bool ok = r->type != REDIS_REPLY_ERROR || strstr(r->str, "BUSYGROUP");
        if (!ok)
            flow__log(FLOW_LOG_WARN, "worker %s: XGROUP CREATE %s: %s", w->name,
                      w->queue_keys[i], r->str);
        freeReplyObject(r);
        if (!ok)
            return false;
    }
    w->groups_ok = true;
    return true;
}

static size_t running_jobs(const struct flow_worker *w)
{
    size_t n = 0;
    for (size_t i = 0; i < w->jobs.count; i++)
        n += !w->jobs.items[i]->done;
    return n;
}

/* Take the entries of a stream reply ([[key, [entry...]]...] or, for
 * XAUTOCLAIM, [cursor, [entry...], ...] of one key). */
static void take_entries(struct flow_worker *w, const char *key, const redisReply *list)
{
    if (!list || list->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t k = 0; k < list->elements; k++) {
        struct flow__rw_entry en;
        if (flow__rw_entry_of(list->element[k], &en))
            take_entry(w, key, &en);
        /* A deleted entry (nil fields) has nothing to run: acknowledge it. */
        else if (list->element[k]->type == REDIS_REPLY_ARRAY && list->element[k]->elements >= 1 &&
                 list->element[k]->element[0]->type == REDIS_REPLY_STRING) {
            const char *argv[] = {"XACK", key, FLOW__RW_GROUP, list->element[k]->element[0]->str};
            freeReplyObject(cmdv(w, 4, argv));
        }
    }
}

/* Claim the entries of dead workers, then read new ones. */
static void read_entries(struct flow_worker *w, bool may_block)
{
    size_t running = running_jobs(w);
    if (atomic_load(&w->stopping) || running >= (size_t)w->concurrency || !ensure_groups(w))
        return;
    char count[24], idle[32], block[16];
    int64_t now = flow__now_ns();
    if (now >= w->claim_at) {
        w->claim_at = now + (int64_t)(w->claim_after * 1e9 / 2);
        snprintf(idle, sizeof(idle), "%lld", (long long)(w->claim_after * 1000));
        for (size_t i = 0; i < w->nqueues && running_jobs(w) < (size_t)w->concurrency; i++) {
            snprintf(count, sizeof(count), "%zu", (size_t)w->concurrency - running_jobs(w));
            const char *argv[] = {"XAUTOCLAIM", w->queue_keys[i], FLOW__RW_GROUP, w->name, idle,
                                  "0-0", "COUNT", count};
            redisReply *r = cmdv(w, 8, argv);
            if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2)
                take_entries(w, w->queue_keys[i], r->element[1]);
            freeReplyObject(r);
        }
    }
    running = running_jobs(w);
    if (running >= (size_t)w->concurrency)
        return;
    snprintf(count, sizeof(count), "%zu", (size_t)w->concurrency - running);
    snprintf(block, sizeof(block), "%d", may_block ? 200 : 1);
    const char **argv = flow__calloc(9 + 2 * w->nqueues, sizeof(*argv));
    if (!argv)
        return;
    int argc = 0;
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = FLOW__RW_GROUP;
    argv[argc++] = w->name;
    argv[argc++] = "COUNT";
    argv[argc++] = count;
    argv[argc++] = "BLOCK";
    argv[argc++] = block;
    argv[argc++] = "STREAMS";
    for (size_t i = 0; i < w->nqueues; i++)
        argv[argc++] = w->queue_keys[i];
    for (size_t i = 0; i < w->nqueues; i++)
        argv[argc++] = ">";
    redisReply *r = cmdv(w, argc, argv);
    flow__free(argv);
    if (r && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *s = r->element[i];
            if (s->type == REDIS_REPLY_ARRAY && s->elements == 2 &&
                s->element[0]->type == REDIS_REPLY_STRING)
                take_entries(w, s->element[0]->str, s->element[1]);
        }
    }
    if (!r && !(w->c && !w->c->err))
        w->groups_ok = false; /* Redis may have restarted without its data */
    freeReplyObject(r);
}

/* Publish a finished job's completion, then acknowledge its entry. False:
 * Redis is away (try again later). */
static bool publish(struct flow_worker *w, struct wjob *j)
{
    if (!j->no_reply) {
        json_t *res = flow__rw_result_encode(&j->res, j->writes);
        char *text = res ? json_dumps(res, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        json_decref(res);
        char *key = flow__rw_key(w->addr.prefix, "done", j->run);
        char act[16], attempt[16], ttl[16];
        snprintf(act, sizeof(act), "%" PRIu32, j->ident.act);
        snprintf(attempt, sizeof(attempt), "%" PRIu32, j->ident.attempt);
        snprintf(ttl, sizeof(ttl), "%d", FLOW__RW_TTL_S);
        bool ok = false;
        if (text && key) {
            const char *argv[] = {"XADD", key,   "*",      "v",     FLOW__RW_VERSION,
                                  "run",  j->run, "act",   act,     "attempt",
                                  attempt, "worker", w->name, "result", text};
            redisReply *r = cmdv(w, 15, argv);
            ok = r != NULL;
            freeReplyObject(r);
            if (ok) {
                const char *ex[] = {"EXPIRE", key, ttl};
                freeReplyObject(cmdv(w, 3, ex));
            }
        }
        flow__json_free_text(text);
        flow__free(key);
        if (!ok)
            return false;
    }
    const char *argv[] = {"XACK", j->queue_key, FLOW__RW_GROUP, j->entry_id};
    redisReply *r = cmdv(w, 4, argv);
    bool ok = r != NULL;
    freeReplyObject(r);
    if (ok)
        w->done_count++;
    return ok;
}

/* Signal what the runner asked to stop (P:cancel:RUN ACT:ATTEMPT). */
static void check_cancels(struct flow_worker *w)
{
    for (size_t i = 0; i < w->jobs.count; i++) {
        struct wjob *j = w->jobs.items[i];
        if (j->done || j->no_reply || !j->run)
            continue;
        char *key = flow__rw_key(w->addr.prefix, "cancel", j->run);
        char field[32];
        snprintf(field, sizeof(field), "%" PRIu32 ":%" PRIu32, j->ident.act, j->ident.attempt);
        const char *argv[] = {"HGET", key, field};
        redisReply *r = key ? cmdv(w, 3, argv) : NULL;
        flow__free(key);
        if (r && r->type == REDIS_REPLY_STRING) {
            bool kill = !strncmp(r->str, "KILL", 4);
            j->timed_out = strstr(r->str, "timeout") != NULL;
            if (j->cmd && (kill ? j->signalled < 2 : j->signalled < 1)) {
                flow__cmd_kill(j->cmd, kill ? SIGKILL : SIGTERM);
                j->signalled = kill ? 2 : 1;
            }
        }
        freeReplyObject(r);
    }
}

/* Keep the idle time of the entries we run low (XCLAIM ... JUSTID). */
static void renew_claims(struct flow_worker *w)
{
    for (size_t i = 0; i < w->jobs.count; i++) {
        struct wjob *j = w->jobs.items[i];
        if (j->done)
            continue;
        const char *argv[] = {"XCLAIM", j->queue_key, FLOW__RW_GROUP, w->name, "0", j->entry_id,
                              "JUSTID"};
        freeReplyObject(cmdv(w, 7, argv));
    }
}

static void heartbeat(struct flow_worker *w, bool last)
{
    char *key = flow__rw_key(w->addr.prefix, "worker", w->name);
    char *set = flow__asprintf("%s:workers", w->addr.prefix);
    if (!key || !set)
        goto out;
    if (last) {
        const char *del[] = {"DEL", key};
        const char *zrem[] = {"ZREM", set, w->name};
        freeReplyObject(cmdv(w, 2, del));
        freeReplyObject(cmdv(w, 3, zrem));
        goto out;
    }
    char pid[16], running[16], done[24], seen[24], ttl[16], started[24];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    snprintf(running, sizeof(running), "%zu", running_jobs(w));
    snprintf(done, sizeof(done), "%" PRIu64, w->done_count);
    snprintf(seen, sizeof(seen), "%.3f", flow__wall_time());
    snprintf(started, sizeof(started), "%.3f", w->started);
    snprintf(ttl, sizeof(ttl), "%d", 3 * (int)(HEARTBEAT_EVERY_NS / MS));
    const char *hset[] = {"HSET",  key,          "host",    w->host, "pid",  pid,
                          "queues", w->queue_list, "running", running, "done", done,
                          "seen",   seen,          "started", started};
    const char *exp[] = {"PEXPIRE", key, ttl};
    const char *zadd[] = {"ZADD", set, seen, w->name};
    freeReplyObject(cmdv(w, 16, hset));
    freeReplyObject(cmdv(w, 3, exp));
    freeReplyObject(cmdv(w, 4, zadd));
out:
    flow__free(key);
    flow__free(set);
}

/* ---- the loop ------------------------------------------------------------- */

#define MAX_FDS 256

flow_err flow_worker_run(flow_worker *w, flow_error *err)
{
    flow__error_clear(err);
    if (!conn(w))
        return flow__error(err, FLOW_EIO, "cannot connect to %s", w->addr.shown);
    w->started = flow__wall_time();
    flow__tree_prepare();
    int64_t cancel_at = 0, renew_at = 0, beat_at = 0, sweep_at = 0;
    struct pollfd fds[MAX_FDS];
    for (;;) {
        bool stopping = atomic_load(&w->stopping);
        size_t running = running_jobs(w);
        if (stopping && w->jobs.count == 0)
            break;
        /* Finished jobs: publish, acknowledge, forget. */
        for (size_t i = 0; i < w->jobs.count;) {
            struct wjob *j = w->jobs.items[i];
            if (j->done && publish(w, j)) {
                job_free(j);
                w->jobs.items[i] = w->jobs.items[--w->jobs.count];
                continue;
            }
            i++;
        }
        int64_t now = flow__now_ns();
        if (now >= beat_at) {
            heartbeat(w, false);
            beat_at = now + HEARTBEAT_EVERY_NS;
        }
        if (running && now >= cancel_at) {
            check_cancels(w);
            cancel_at = now + CANCEL_EVERY_NS;
        }
        if (running && now >= renew_at) {
            renew_claims(w);
            renew_at = now + (int64_t)(w->claim_after * 1e9 / 3);
        }
        if (w->spawned && now >= sweep_at) {
            flow__tree_sweep();
            sweep_at = now + 500 * MS;
        }
        if (!stopping)
            read_entries(w, running == 0 && w->jobs.count == 0);
        int n = 0;
        fds[n].fd = w->wake_fd;
        fds[n].events = POLLIN;
        n++;
        for (size_t i = 0; i < w->jobs.count; i++) {
            struct wjob *j = w->jobs.items[i];
            j->nfds = 0;
            if (j->cmd && n + FLOW__CMD_POLLFDS_MAX <= MAX_FDS) {
                j->fd_first = n;
                j->nfds = flow__cmd_pollfds(j->cmd, &fds[n], MAX_FDS - n);
                n += j->nfds;
            }
        }
        bool pending = false;
        for (size_t i = 0; i < w->jobs.count; i++)
            pending |= w->jobs.items[i]->done;
        int timeout = running_jobs(w) ? 50 : pending ? 500 : 0;
        int ready = poll(fds, (nfds_t)n, timeout);
        if (ready < 0 && errno != EINTR)
            flow__log(FLOW_LOG_ERROR, "worker %s: poll failed: %s", w->name, strerror(errno));
        if (fds[0].revents & POLLIN) {
            uint64_t v;
            ssize_t rd = read(w->wake_fd, &v, sizeof(v));
            (void)rd;
        }
        for (size_t i = 0; i < w->jobs.count; i++) {
            struct wjob *j = w->jobs.items[i];
            if (j->cmd && j->nfds && ready > 0)
                flow__cmd_handle(j->cmd, &fds[j->fd_first], j->nfds);
            if (j->cmd && flow__cmd_is_done(j->cmd)) {
                flow__cmd_finish(j->cmd, j->timed_out, &j->res);
                j->cmd = NULL;
                j->done = true;
            }
        }
    }
    heartbeat(w, true);
    return FLOW_OK;
}

void flow_worker_stop(flow_worker *w)
{
    atomic_store(&w->stopping, 1);
    uint64_t one = 1;
    ssize_t wr = write(w->wake_fd, &one, sizeof(one));
    (void)wr;
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
    w->queue_keys = flow__calloc(w->nqueues, sizeof(*w->queue_keys));
    struct flow__buf list;
    flow__buf_init(&list, 0);
    for (size_t i = 0; w->queue_keys && i < w->nqueues; i++) {
        size_t n = strlen(qs[i]);
        bool ok = n > 0 && n <= 100;
        for (size_t k = 0; ok && k < n; k++)
            ok = (qs[i][k] >= 'a' && qs[i][k] <= 'z') || (qs[i][k] >= 'A' && qs[i][k] <= 'Z') ||
                 (qs[i][k] >= '0' && qs[i][k] <= '9') || strchr("_.:-", qs[i][k]);
        if (!ok) {
            flow__buf_cleanup(&list);
            flow__error(err, FLOW_EINVAL,
                        "queue '%s' is not 1 to 100 letters, digits and _ . : -", qs[i]);
            goto fail;
        }
        w->queue_keys[i] = flow__rw_key(w->addr.prefix, "q", qs[i]);
        if (!w->queue_keys[i] || (i && flow__buf_appendc(&list, ',')) ||
            flow__buf_appends(&list, qs[i]))
            break;
    }
    w->queue_list = flow__buf_take(&list);
    w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!w->queue_keys || !w->queue_list || w->wake_fd < 0) {
        flow__error(err, FLOW_ESYSTEM, "cannot start a worker: out of memory or descriptors");
        goto fail;
    }
    for (size_t i = 0; i < w->nqueues; i++)
        if (!w->queue_keys[i]) {
            flow__error(err, FLOW_ENOMEM, "out of memory starting a worker");
            goto fail;
        }
    redisContext *c = flow__redis_connect(&w->addr, 5.0, err);
    if (!c)
        goto fail;
    w->c = c;
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
        job_free(j);
    }
    FLOW__VEC_FREE(&w->jobs);
    for (size_t i = 0; i < w->dirs.count; i++)
        flow__free(w->dirs.items[i]);
    FLOW__VEC_FREE(&w->dirs);
    for (size_t i = 0; w->queue_keys && i < w->nqueues; i++)
        flow__free(w->queue_keys[i]);
    flow__free(w->queue_keys);
    flow__free(w->queue_list);
    if (w->c)
        redisFree(w->c);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    flow__free(w);
}

flow_err flow_workers_list(const char *url, json_t **out, flow_error *err)
{
    flow__error_clear(err);
    *out = NULL;
    url = flow__redis_url_from_env(url);
    if (!url)
        return flow__error(err, FLOW_EINVAL, "no Redis: give --redis URL or set FLOW_REDIS");
    struct flow__redis_addr a;
    if (flow__redis_parse(url, &a, err) != FLOW_OK)
        return err->code;
    redisContext *c = flow__redis_connect(&a, 5.0, err);
    if (!c)
        return err->code;
    json_t *list = json_array();
    char *set = flow__asprintf("%s:workers", a.prefix);
    redisReply *names = list && set ? flow__redis_cmd(c, &a, err, "ZRANGE %s 0 -1", set) : NULL;
    flow_err rc = names ? FLOW_OK : err->code ? err->code : FLOW_ENOMEM;
    static const char *const fields[] = {"host", "pid", "queues", "running", "done", "started",
                                         "seen"};
    for (size_t i = 0; !rc && names->type == REDIS_REPLY_ARRAY && i < names->elements; i++) {
        const redisReply *n = names->element[i];
        if (n->type != REDIS_REPLY_STRING)
            continue;
        char *key = flow__rw_key(a.prefix, "worker", n->str);
        redisReply *h = key ? flow__redis_cmd(c, &a, err, "HMGET %s host pid queues running done "
                                                          "started seen",
                                              key)
                            : NULL;
        flow__free(key);
        if (!h) {
            rc = err->code ? err->code : FLOW_ENOMEM;
            break;
        }
        if (h->type != REDIS_REPLY_ARRAY || h->elements != 7 ||
            h->element[0]->type != REDIS_REPLY_STRING) {
            /* Its heartbeat expired: it is gone. */
            freeReplyObject(flow__redis_cmd(c, &a, err, "ZREM %s %s", set, n->str));
            freeReplyObject(h);
            continue;
        }
        json_t *o = json_pack("{s:s}", "name", n->str);
        for (size_t k = 0; o && k < 7; k++) {
            const redisReply *v = h->element[k];
            if (v->type != REDIS_REPLY_STRING)
                continue;
            json_t *j;
            if (k == 0 || k == 2)
                j = k == 2 ? json_array() : json_string(v->str);
            else if (k >= 5)
                j = json_real(strtod(v->str, NULL));
            else
                j = json_integer(strtoll(v->str, NULL, 10));
            if (k == 2 && j) {
                char *copy = flow__strdup(v->str), *save = NULL;
                for (char *q = copy ? strtok_r(copy, ",", &save) : NULL; q;
                     q = strtok_r(NULL, ",", &save))
                    json_array_append_new(j, json_string(q));
                flow__free(copy);
            }
            json_object_set_new(o, fields[k], j);
        }
        if (!o || json_array_append_new(list, o))
            rc = FLOW_ENOMEM;
        freeReplyObject(h);
    }
    freeReplyObject(names);
    flow__free(set);
    redisFree(c);
    if (rc) {
        json_decref(list);
        if (rc == FLOW_ENOMEM)
            flow__error(err, FLOW_ENOMEM, "out of memory listing workers");
        return rc;
    }
    *out = list;
    return FLOW_OK;
}
