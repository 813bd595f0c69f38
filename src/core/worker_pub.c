/* worker_pub.c -- what a worker's main thread says to Redis
 * (docs/internals/distribution.md, "The worker"): completions and streamed
 * events (one pipelined script per run), acknowledgements and deletions,
 * the cancel keys it checks, claim renewals and heartbeats; and
 * flow_workers_list, which reads the heartbeats back. */
#include "util/compat.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/worker_int.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/json.h"
#include "util/log.h"
#include "util/redact.h"

/* ---- publishing (the main thread) ------------------------------------------ */

/* [main] The jobs listed now (`live`: only those still running), into
 * `out` (reserved to `concurrency`). */
void flow__worker_snapshot(struct flow_worker *w, wjob_vec *out, bool live)
{
    out->count = 0;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->jobs.count; i++) {
        struct wjob *j = w->jobs.items[i];
        if (!live || (!j->over && !j->abandoned && !j->no_reply))
            flow__worker_push(w, out, j);
    }
    pthread_mutex_unlock(&w->mu);
}

/* Read `n` pipelined replies into `out` (NULL for a lost connection or an
 * error reply, which is logged once). False: the connection is lost. */
static bool replies(struct flow_worker *w, redisContext *c, size_t n, redisReply **out)
{
    bool logged = false, alive = true;
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (!alive || redisGetReply(c, &r) != REDIS_OK) {
            alive = false;
            out[i] = NULL;
            continue;
        }
        redisReply *rep = r;
        if (rep && rep->type == REDIS_REPLY_ERROR) {
            if (!logged)
                flow__log(FLOW_LOG_WARN, "worker %s: %s", w->name, rep->str);
            logged = true;
            freeReplyObject(rep);
            rep = NULL;
        }
        out[i] = rep;
    }
    return alive;
}

/* The messages of one run, in one atomic step: an XADD each to P:done:RUN
 * (KEYS[1]), kept FLOW__RW_TTL_S while P:inflight:RUN (KEYS[2]) exists.
 * Without it the run ended (late duplicates) or Redis lost it (the runner
 * queues the attempt again): a stream made here goes after LATE_TTL_S.
 * A completion's entry is acknowledged and deleted from its queue
 * (KEYS[2 + QI]) by the same script, so it is never acknowledged without
 * its completion written, and publishing costs one round trip. ARGV: ttl,
 * late ttl, v, run, worker, group, then (act, attempt, round, kind, text,
 * QI, entry id) for each message, kind `result` (a completion) or `event`
 * (streamed, QI 0: nothing to acknowledge); a round 0 goes without its
 * field. */
static const char publish_lua[] =
    "local live = redis.call('EXISTS', KEYS[2])\n"
    "for i = 7, #ARGV, 7 do\n"
    "  if ARGV[i + 2] == '0' then\n"
    "    redis.call('XADD', KEYS[1], '*', 'v', ARGV[3], 'run', ARGV[4], 'act', ARGV[i],\n"
    "               'attempt', ARGV[i + 1], 'worker', ARGV[5], ARGV[i + 3], ARGV[i + 4])\n"
    "  else\n"
    "    redis.call('XADD', KEYS[1], '*', 'v', ARGV[3], 'run', ARGV[4], 'act', ARGV[i],\n"
    "               'attempt', ARGV[i + 1], 'worker', ARGV[5], ARGV[i + 3], ARGV[i + 4],\n"
    "               'round', ARGV[i + 2])\n"
    "  end\n"
    "  local q = tonumber(ARGV[i + 5])\n"
    "  if q > 0 then\n"
    "    redis.call('XACK', KEYS[2 + q], ARGV[6], ARGV[i + 6])\n"
    "    redis.call('XDEL', KEYS[2 + q], ARGV[i + 6])\n"
    "  end\n"
    "end\n"
    "if live == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1])\n"
    "elseif redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end\n"
    "return live\n";

#ifdef FLOW_TESTING
static atomic_size_t publish_fail_at; /* engine.h: flow__worker_fail_publish_at */
void flow__worker_fail_publish_at(size_t n)
{
    atomic_store(&publish_fail_at, n);
}
#define publish_fails()                                                                    \
    (atomic_load(&publish_fail_at) && atomic_fetch_sub(&publish_fail_at, 1) == 1)
#else
#define publish_fails() false
#endif

/* The streams the entries of `v` came from, each once, into `keys` (room
 * for v->count): how many. A few streams per batch: a quadratic look is
 * cheap. */
static size_t streams_of(const wjob_vec *v, const char **keys)
{
    size_t n = 0;
    for (size_t i = 0; i < v->count; i++) {
        const char *k = v->items[i]->queue_key;
        size_t q = 0;
        while (q < n && strcmp(keys[q], k))
            q++;
        if (q == n)
            keys[n++] = k;
    }
    return n;
}

/* [main] Pipeline a command; false when hiredis cannot (out of memory). */
static bool append(redisContext *c, int argc, const char **argv)
{
    return redisAppendCommandArgv(c, argc, argv, NULL) == REDIS_OK;
}

/* [main] Publish the completions of `pub`, one script call per run
 * (publish_lua), pipelined; then acknowledge the entries whose own script
 * answered (pipelined, one XACK per queue): a completion is in its stream
 * before its entry is acknowledged. Then delete what was acknowledged.
 * Each reply goes to the command it answers: one not sent or failed holds
 * back its own jobs, no other. Marks jobs xadded and acked; the rest is
 * tried again later (the runner drops a second completion). */
void flow__worker_publish(struct flow_worker *w, wjob_vec *pub)
{
    redisContext *c = flow__worker_conn(w, &w->main);
    size_t n = pub->count;
    if (!c || !n)
        return;
    const char **skeys = flow__calloc(n, sizeof(*skeys));
    size_t nkeys = skeys ? streams_of(pub, skeys) : 0;
    size_t ncmd = n > nkeys ? n : nkeys;
    char **text = flow__calloc(n, sizeof(*text));
    char(*num)[4][16] = flow__calloc(n, sizeof(*num));
    size_t *lead = flow__calloc(n, sizeof(*lead));        /* first job of its run's call */
    size_t *cmd_of = flow__calloc(ncmd, sizeof(*cmd_of)); /* per command sent: lead or queue */
    redisReply **reps = flow__calloc(ncmd, sizeof(*reps));
    /* EVAL's is the longest */
    const char **argv = flow__calloc(11 + nkeys + 7 * n, sizeof(*argv));
    if (!skeys || !text || !num || !lead || !cmd_of || !reps || !argv)
        goto out;
    char ttl[16], late[16];
    snprintf(ttl, sizeof(ttl), "%d", FLOW__RW_TTL_S);
    snprintf(late, sizeof(late), "%d", LATE_TTL_S);
    for (size_t i = 0; i < n; i++) {
        struct wjob *j = pub->items[i];
        lead[i] = SIZE_MAX;
        if (j->no_reply || j->xadded)
            continue;
        const struct flow__cmd_result *res = j->abandoned ? &j->ares : &j->res;
        /* The body has returned (or, abandoned, says nothing more): its
         * events and request are read without the lock. */
        struct flow__rw_extra x = {j->writes, j->events, j->rctx.waiting};
        json_t *rj = flow__rw_result_encode(res, j->abandoned ? NULL : &x);
        if (rj && flow__redact_json_swap(j->secrets, &rj) != FLOW_OK) {
            json_decref(rj); /* never a secret to Redis: next time */
            rj = NULL;
        }
        text[i] = rj ? json_dumps(rj, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        json_decref(rj);
        if (!text[i])
            continue; /* out of memory: next time */
        snprintf(num[i][0], sizeof(num[i][0]), "%" PRIu32, j->ident.act);
        snprintf(num[i][1], sizeof(num[i][1]), "%" PRIu32, j->ident.attempt);
        snprintf(num[i][2], sizeof(num[i][2]), "%" PRIu32, j->ident.round);
        size_t qi = 0;
        while (qi < nkeys && strcmp(skeys[qi], j->queue_key))
            qi++;
        snprintf(num[i][3], sizeof(num[i][3]), "%u", (unsigned)(qi < nkeys ? qi + 1 : 0));
        lead[i] = i;
        for (size_t k = 0; k < i; k++)
            if (lead[k] == k && !strcmp(pub->items[k]->run, j->run)) {
                lead[i] = k;
                break;
            }
    }
    size_t sent = 0;
    for (size_t i = 0; i < n; i++) {
        if (lead[i] != i)
            continue;
        struct wjob *j = pub->items[i];
        char *done = flow__rw_key(w->addr.prefix, "done", j->run);
        char *inflight = flow__rw_key(w->addr.prefix, "inflight", j->run);
        char numkeys[16];
        snprintf(numkeys, sizeof(numkeys), "%zu", 2 + nkeys);
        int argc = 0;
        argv[argc++] = "EVAL";
        argv[argc++] = publish_lua;
        argv[argc++] = numkeys;
        argv[argc++] = done;
        argv[argc++] = inflight;
        for (size_t q = 0; q < nkeys; q++)
            argv[argc++] = skeys[q];
        const char *fixed[] = {ttl, late, FLOW__RW_VERSION, j->run, w->name, FLOW__RW_GROUP};
        for (size_t f = 0; f < FLOW__ARRAY_LEN(fixed); f++)
            argv[argc++] = fixed[f];
        for (size_t k = i; k < n; k++) {
            if (lead[k] != i)
                continue;
            argv[argc++] = num[k][0];
            argv[argc++] = num[k][1];
            argv[argc++] = num[k][2];
            argv[argc++] = "result";
            argv[argc++] = text[k];
            argv[argc++] = num[k][3];
            argv[argc++] = pub->items[k]->entry_id;
        }
        if (done && inflight && !publish_fails() && append(c, argc, argv))
            cmd_of[sent++] = i;
        flow__free(done);
        flow__free(inflight);
    }
    bool alive = replies(w, c, sent, reps);
    for (size_t k = 0; k < sent; k++) {
        for (size_t i = cmd_of[k]; reps[k] && i < n; i++)
            if (lead[i] == cmd_of[k]) {
                struct wjob *j = pub->items[i];
                j->xadded = true; /* and acknowledged and deleted, by the script */
                if (!j->acked) {
                    j->acked = true;
                    w->done_count++;
                }
            }
        freeReplyObject(reps[k]);
    }
    /* Acknowledge what needs no reply (malformed entries, by themselves). */
    size_t acks = 0;
    for (size_t q = 0; alive && q < nkeys; q++) {
        int argc = 0;
        argv[argc++] = "XACK";
        argv[argc++] = skeys[q];
        argv[argc++] = FLOW__RW_GROUP;
        for (size_t i = 0; i < n; i++) {
            struct wjob *j = pub->items[i];
            if (j->no_reply && !j->acked && !strcmp(j->queue_key, skeys[q]))
                argv[argc++] = j->entry_id;
        }
        if (argc > 3 && append(c, argc, argv))
            cmd_of[acks++] = q;
    }
    alive = replies(w, c, acks, reps) && alive;
    for (size_t k = 0; k < acks; k++) {
        const char *queue = skeys[cmd_of[k]];
        for (size_t i = 0; reps[k] && i < n; i++) {
            struct wjob *j = pub->items[i];
            if (j->no_reply && !j->acked && !strcmp(j->queue_key, queue)) {
                j->acked = true;
                w->done_count++;
            }
        }
        freeReplyObject(reps[k]);
    }
    /* An acknowledged entry is needed by nobody (a resubmission goes by
     * the runner's inflight record): delete it, or the queue's stream
     * would keep every task ever run. */
    size_t dels = 0;
    for (size_t q = 0; alive && q < nkeys; q++) {
        int argc = 0;
        argv[argc++] = "XDEL";
        argv[argc++] = skeys[q];
        for (size_t i = 0; i < n; i++) {
            struct wjob *j = pub->items[i];
            if (j->no_reply && j->acked && !strcmp(j->queue_key, skeys[q]))
                argv[argc++] = j->entry_id;
        }
        if (argc > 2 && append(c, argc, argv))
            dels++;
    }
    replies(w, c, dels, reps);
    for (size_t k = 0; k < dels; k++)
        freeReplyObject(reps[k]);
out:
    for (size_t i = 0; text && i < n; i++)
        flow__json_free_text(text[i]);
    flow__free(skeys);
    flow__free(text);
    flow__free(num);
    flow__free(lead);
    flow__free(cmd_of);
    flow__free(reps);
    flow__free(argv);
}

/* [main] Stream the events the C functions of `emit` emitted since last
 * time (pipelined XADDs to their runs' completion streams). Best effort:
 * what cannot be sent now goes with the completion, which carries every
 * event, and the runner applies each once. */
void flow__worker_stream_events(struct flow_worker *w, wjob_vec *emit)
{
    FLOW__VEC(char *) texts = {0};
    FLOW__VEC(struct wjob *) of = {0};
    flow_err rc = FLOW_OK;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < emit->count; i++) {
        struct wjob *j = emit->items[i];
        j->emit_listed = false;
        for (; !rc && j->events_sent < json_array_size(j->events); j->events_sent++) {
            json_t *ev = json_array_get(j->events, j->events_sent);
            json_t *clean = NULL; /* never a secret to Redis */
            if (flow__redact_json(j->secrets, ev, &clean) != FLOW_OK) {
                rc = FLOW_ENOMEM;
                break;
            }
            if (clean)
                ev = clean;
            char *text = flow__rw_event_encode((uint32_t)j->events_sent,
                                               json_string_value(json_object_get(ev, "event")),
                                               json_object_get(ev, "data"));
            json_decref(clean);
            if (text)
                FLOW__VEC_PUSH(&texts, text, rc);
            if (!text || rc) {
                flow__json_free_text(text);
                rc = FLOW_ENOMEM;
                break;
            }
            FLOW__VEC_PUSH(&of, j, rc);
        }
    }
    emit->count = 0;
    pthread_mutex_unlock(&w->mu);
    redisContext *c = texts.count == of.count ? flow__worker_conn(w, &w->main) : NULL;
    size_t sent = 0;
    char act[16], attempt[16], round[16], ttl[16], late[16];
    snprintf(ttl, sizeof(ttl), "%d", FLOW__RW_TTL_S);
    snprintf(late, sizeof(late), "%d", LATE_TTL_S);
    for (size_t i = 0; c && i < texts.count; i++) {
        struct wjob *j = of.items[i];
        char *done = flow__rw_key(w->addr.prefix, "done", j->run);
        char *inflight = flow__rw_key(w->addr.prefix, "inflight", j->run);
        snprintf(act, sizeof(act), "%" PRIu32, j->ident.act);
        snprintf(attempt, sizeof(attempt), "%" PRIu32, j->ident.attempt);
        snprintf(round, sizeof(round), "%" PRIu32, j->ident.round);
        const char *argv[] = {"EVAL",  publish_lua,      "2",    done,    inflight,
                              ttl,     late,             FLOW__RW_VERSION, j->run,
                              w->name, FLOW__RW_GROUP,   act,    attempt, round,
                              "event", texts.items[i],   "0",    ""};
        if (done && inflight && append(c, (int)FLOW__ARRAY_LEN(argv), argv))
            sent++;
        flow__free(done);
        flow__free(inflight);
    }
    for (size_t i = 0; i < sent; i++) {
        void *r = NULL;
        if (redisGetReply(c, &r) != REDIS_OK)
            break;
        freeReplyObject(r);
    }
    for (size_t i = 0; i < texts.count; i++)
        flow__json_free_text(texts.items[i]);
    FLOW__VEC_FREE(&texts);
    FLOW__VEC_FREE(&of);
}

/* [main] A C function killed by the runner that has not returned: answer
 * for it now (the runner's kill_grace is over), keep its slot until it
 * returns. */
static void abandon(struct flow_worker *w, struct wjob *j, wjob_vec *pub)
{
    j->abandoned = true;
    j->ares.ok = false;
    j->ares.exit_status = -1;
    j->ares.error = flow__asprintf("%s on worker '%s' and did not stop within its kill_grace; "
                                   "its thread was abandoned",
                                   atomic_load(&j->timed_out) ? "timed out" : "cancelled",
                                   w->name);
    if (!j->in_pub) {
        j->in_pub = true;
        flow__worker_push(w, pub, j);
    }
}

/* [main] Signal what the runner asked to stop (P:cancel:RUN ACT:ATTEMPT):
 * one pipelined HGET per running job. */
void flow__worker_check_cancels(struct flow_worker *w, const wjob_vec *live, wjob_vec *pub)
{
    redisContext *c = flow__worker_conn(w, &w->main);
    size_t n = live->count;
    redisReply **reps = c && n ? flow__calloc(n, sizeof(*reps)) : NULL;
    size_t *job_of = reps ? flow__calloc(n, sizeof(*job_of)) : NULL; /* per HGET sent */
    if (!job_of) {
        flow__free(reps);
        return;
    }
    char field[32];
    size_t sent = 0;
    for (size_t i = 0; i < n; i++) {
        struct wjob *j = live->items[i];
        char *key = flow__rw_key(w->addr.prefix, "cancel", j->run);
        flow__rw_cancel_field(field, sizeof(field), j->ident.act, j->ident.attempt,
                              j->ident.round);
        const char *argv[] = {"HGET", key, field};
        if (key && append(c, 3, argv))
            job_of[sent++] = i;
        flow__free(key);
    }
    replies(w, c, sent, reps);
    for (size_t k = 0; k < sent; k++) {
        struct wjob *j = live->items[job_of[k]];
        redisReply *r = reps[k];
        if (r && r->type == REDIS_REPLY_STRING) {
            bool kill = !strncmp(r->str, "KILL", 4);
            if (strstr(r->str, "timeout"))
                atomic_store(&j->timed_out, true);
            if (kill ? j->signalled < 2 : j->signalled < 1) {
                j->signalled = kill ? 2 : 1;
                if (j->cmd)
                    flow__cmd_kill(j->cmd, kill ? SIGKILL : SIGTERM);
                else if (j->fn) {
                    atomic_store(&j->ctx.cancelled, 1);
                    if (kill)
                        abandon(w, j, pub);
                }
            }
        }
        freeReplyObject(r);
    }
    flow__free(job_of);
    flow__free(reps);
}

/* [main] Keep the idle time of the entries we run low: XCLAIM ... JUSTID,
 * one per stream. */
void flow__worker_renew_claims(struct flow_worker *w, const wjob_vec *live)
{
    const char **argv = flow__calloc(live->count + 7, sizeof(*argv));
    const char **skeys = flow__calloc(live->count + 1, sizeof(*skeys));
    size_t nkeys = argv && skeys ? streams_of(live, skeys) : 0;
    for (size_t q = 0; q < nkeys; q++) {
        int argc = 0;
        argv[argc++] = "XCLAIM";
        argv[argc++] = skeys[q];
        argv[argc++] = FLOW__RW_GROUP;
        argv[argc++] = w->name;
        argv[argc++] = "0";
        for (size_t i = 0; i < live->count; i++)
            if (!strcmp(live->items[i]->queue_key, skeys[q]))
                argv[argc++] = live->items[i]->entry_id;
        argv[argc++] = "JUSTID";
        if (argc > 6)
            freeReplyObject(flow__worker_cmdv(w, &w->main, argc, argv));
    }
    flow__free(skeys);
    flow__free(argv);
}

void flow__worker_heartbeat(struct flow_worker *w, bool last, size_t running)
{
    char *key = flow__rw_key(w->addr.prefix, "worker", w->name);
    char *set = flow__asprintf("%s:workers", w->addr.prefix);
    if (!key || !set)
        goto out;
    if (last) {
        const char *del[] = {"DEL", key};
        const char *zrem[] = {"ZREM", set, w->name};
        freeReplyObject(flow__worker_cmdv(w, &w->main, 2, del));
        freeReplyObject(flow__worker_cmdv(w, &w->main, 3, zrem));
        goto out;
    }
    pthread_mutex_lock(&w->mu);
    flow_resources used = w->used;
    pthread_mutex_unlock(&w->mu);
    char *in_use = flow__rw_resources_encode(&used, true);
    char pid[16], nrun[24], done[24], seen[24], ttl[16], started[24];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    snprintf(nrun, sizeof(nrun), "%zu", running);
    snprintf(done, sizeof(done), "%" PRIu64, w->done_count);
    snprintf(seen, sizeof(seen), "%.3f", flow__wall_time());
    snprintf(started, sizeof(started), "%.3f", w->started);
    snprintf(ttl, sizeof(ttl), "%d", 3 * (int)(HEARTBEAT_EVERY_NS / MS));
    const char *hset[] = {"HSET",      key,      "host",      w->host,         "pid",
                          pid,         "queues", w->queue_list, "running",     nrun,
                          "done",      done,     "seen",      seen,            "started",
                          started,     "resources", w->capacity_text, "in_use", in_use};
    const char *exp[] = {"PEXPIRE", key, ttl};
    const char *zadd[] = {"ZADD", set, seen, w->name};
    /* Out of memory, the heartbeat goes without what is in use. */
    int nh = (int)FLOW__ARRAY_LEN(hset) - (in_use ? 0 : 2);
    freeReplyObject(flow__worker_cmdv(w, &w->main, nh, hset));
    flow__json_free_text(in_use);
    freeReplyObject(flow__worker_cmdv(w, &w->main, 3, exp));
    freeReplyObject(flow__worker_cmdv(w, &w->main, 4, zadd));
out:
    flow__free(key);
    flow__free(set);
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
    flow_err rc = flow__rw_workers_read(c, &a, true, out, err);
    redisFree(c);
    return rc;
}
