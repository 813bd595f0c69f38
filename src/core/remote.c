/* remote.c -- the runner's side of the remote executor
 * (docs/internals/distribution.md): a submitter thread that starts remote
 * attempts and queues them on Redis streams, and a reader thread that reads
 * the runs' completion streams and applies each completion under the engine
 * lock, as a pool thread applies a C body's.
 *
 * Lock order: engine->lock, then nothing; no Redis call is made with it.
 */
#include "util/compat.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/remote_fit.h"
#include "core/run_int.h"
#include "exec/remote_wire.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/json.h"
#include "util/log.h"
#include "util/redact.h"
#include "util/redis.h"

#define REDIS_TIMEOUT_S 5.0
/* How long the reader blocks on the completion streams it follows: a run
 * that starts having remote work meanwhile is followed from the next read. */
#define READ_BLOCK_MS 50
#define RETRY_MS 500
#define SUBMIT_BATCH 128 /* activations queued in one round trip */
#define CHECK_BATCH 512  /* inflight records read in one round trip */

/* A completion read before its (resumed) attempt was submitted again. */
struct early {
    char run[80];
    uint32_t act, attempt, round;
    struct flow__cmd_result res;
    struct flow__rw_extra x;
    char *worker;
};

/* A cancel key to write. */
struct signal_req {
    char run[80];
    char field[32];
    char what[16];
};

/* What the reader follows: a run's completion stream and how far it read. */
struct watch {
    char run[80];
    char *key;
    char last[48];
};

/* One version of a run's state as queued for workers: field `field` of
 * `key` (P:state:RUN). Shared by the run's list and by the submissions
 * that name it, which keep it (and its text, to write it again after a
 * reconnect) as long as their attempts run; a run may be freed on another
 * thread, hence the atomic count. The other fields are the submitter's. */
struct state_blob {
    atomic_int refs;
    uint64_t version;        /* the run's state_version it was dumped at */
    char field[FLOW__RW_STATE_V_MAX]; /* "EPOCH.VERSION" */
    char *key;
    char *text;              /* the state, as JSON */
    unsigned written;        /* the connection generation that stored it (0: none) */
    bool pinned;             /* a user we lost track of (out of memory): kept */
    unsigned batch;          /* the last batch that wrote it */
    char *error;             /* the server's refusal to store it, or NULL */
};

/* What a run queued of its state (r->remote_state). [L] */
struct flow__remote_state {
    char epoch[17];          /* hex; a resumed run (a new object) gets another */
    FLOW__VEC(struct state_blob *) shipped; /* newest last; a reference each */
    size_t sweep_at;         /* sweep unused versions at this count */
};

/* A version to delete from P:state:RUN (the submitter's). */
struct state_drop {
    char *key;
    char field[FLOW__RW_STATE_V_MAX];
};

/* A queued attempt that may still run: queued again after a reconnect if
 * Redis lost it. Only its name is kept; its spec is rendered again then. */
struct sent {
    struct flow_run *r; /* a reference */
    struct act *a;
    uint32_t attempt, round;
    struct state_blob *blob; /* the state version its entry names (a
                              * reference: in use while it runs), or NULL
                              * once it is known to have ended */
};

/* What a submission needs, prepared under the lock. */
struct submission {
    struct flow_run *r;
    struct act *a;
    uint32_t attempt, round;
    char *queue_key, *inflight_key, *levels_key;
    char act_s[16], attempt_s[16], round_s[16], inflight_v[32], priority_s[16];
    char *spec;
    char *resources;  /* what it asks (the entry's field), or NULL */
    struct state_blob *blob; /* its state version (a reference) */
    flow_err rc;   /* of the last try: FLOW_EIO means try again */
    char *error;   /* its message when it failed otherwise */
    bool settled;  /* queued, or ended without being queued */
    bool appended; /* in the pipeline of the last try */
};

struct flow__remote {
    struct flow_engine *e;
    struct flow__redis_addr addr;
    bool addr_ok;
    char addr_error[600];
    pthread_t submitter, reader;
    bool threads;
    pthread_cond_t cond;              /* the submitter waits on it */
    bool stop;                        /* [L] */
    FLOW__VEC(struct early) early;    /* [L] */
    FLOW__VEC(struct signal_req) sigs; /* [L] */
    FLOW__VEC(char *) ended;          /* [L] runs whose keys go */
    FLOW__VEC(struct watch) watched;  /* the reader's own */
    /* Queued and maybe still running (the submitter's own): queued again
     * after a reconnect, as a restarted Redis may have lost them (an
     * append-only file with appendfsync everysec loses its last second). */
    FLOW__VEC(struct sent) sent;
    size_t sent_prune;                /* prune `sent` at this count */
    FLOW__VEC(struct state_drop) drops; /* the submitter's: sent with the next batch */
    unsigned batch;                   /* the submitter's: batches sent */
    unsigned gen;                     /* the submitter's: one more at each reconnect (a
                                       * restarted Redis may have lost state versions) */
    atomic_bool reconnected;
    struct flow__rfit fit;            /* [L] activations waiting for a worker that fits */
};

/* KEYS: the queue's stream for the priority, P:inflight:RUN, P:state:RUN,
 * P:levels:QUEUE; ARGV: act, attempt, TTL, state version, priority, then
 * the entry's fields. An entry is never queued without its state version:
 * NOSTATE asks the submitter to write it again. A priority other than 0
 * is listed in P:levels:QUEUE, where workers find the streams to read. */
static const char submit_lua[] =
    "local cur = redis.call('HGET', KEYS[2], ARGV[1])\n"
    "if cur == ARGV[2] then return 0 end\n"
    "if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 0 then\n"
    "  return redis.error_reply('NOSTATE state version ' .. ARGV[4] .. ' is not in ' .. KEYS[3])\n"
    "end\n"
    "if ARGV[5] ~= '0' then redis.call('ZADD', KEYS[4], ARGV[5], ARGV[5]) end\n"
    "redis.call('XADD', KEYS[1], '*', unpack(ARGV, 6))\n"
    "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[3])\n"
    "redis.call('EXPIRE', KEYS[3], ARGV[3])\n"
    "return 1\n";

/* KEYS: P:state:RUN; ARGV: the version, the state, TTL. A version never
 * changes once written. */
static const char state_lua[] = "local n = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])\n"
                                "redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
                                "return n\n";


/* Sleep `ms` on the submitter's condition (so that stopping is quick). [L] */
static void nap(struct flow__remote *rm, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    ts.tv_sec += ms / 1000 + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&rm->cond, &rm->e->lock, &ts);
}

/* A connection, made again after a failure; NULL (logged once, and in
 * `why` when not NULL) when Redis cannot be reached. Without the lock. */
static redisContext *connection(struct flow__remote *rm, redisContext **c, bool *warned,
                                flow_error *why)
{
    if (*c && !(*c)->err)
        return *c;
    bool again = *c || *warned;
    if (*c)
        redisFree(*c);
    flow_error err;
    *c = flow__redis_connect(&rm->addr, REDIS_TIMEOUT_S, &err);
    if (!*c && why)
        *why = err;
    if (*c && again) { /* the submitter queues again what Redis may have lost */
        pthread_mutex_lock(&rm->e->lock);
        atomic_store(&rm->reconnected, true);
        pthread_cond_broadcast(&rm->cond);
        pthread_mutex_unlock(&rm->e->lock);
    }
    if (!*c && !*warned) {
        flow__log(FLOW_LOG_WARN, "remote tasks: %s (retrying)", err.message);
        *warned = true;
    } else if (*c && *warned) {
        flow__log(FLOW_LOG_INFO, "remote tasks: connected to %s again", rm->addr.shown);
        *warned = false;
    }
    return *c;
}

/* ---- the submitter -------------------------------------------------------- */

/* [L] Find and take the completion kept for (run, act, attempt, round). */
static bool take_early(struct flow__remote *rm, const char *run, uint32_t act, uint32_t attempt,
                       uint32_t round, struct early *out)
{
    for (size_t i = 0; i < rm->early.count; i++) {
        struct early *x = &rm->early.items[i];
        if (x->act == act && x->attempt == attempt && x->round == round &&
            !strcmp(x->run, run)) {
            *out = *x;
            rm->early.items[i] = rm->early.items[--rm->early.count];
            return true;
        }
    }
    return false;
}

static void early_free(struct early *x)
{
    flow__cmd_result_cleanup(&x->res);
    flow__rw_extra_cleanup(&x->x);
    flow__free(x->worker);
}

static void blob_unref(struct state_blob *b)
{
    if (!b || atomic_fetch_sub(&b->refs, 1) != 1)
        return;
    flow__free(b->key);
    flow__json_free_text(b->text);
    flow__free(b->error);
    flow__free(b);
}

void flow__remote_state_free(struct flow__remote_state *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->shipped.count; i++)
        blob_unref(st->shipped.items[i]);
    FLOW__VEC_FREE(&st->shipped);
    flow__free(st);
}

/* [L] Is `a` still running (attempt, round) on a worker? */
static bool still_remote(const struct act *a, uint32_t attempt, uint32_t round)
{
    return a->status == FLOW_ACT_RUNNING && a->attempt == attempt && act_cmd(a) &&
           act_cmd(a)->remote && act_cmd(a)->round == round;
}

/* [L] The round `a` runs in next: one more for each feedback answer it
 * waited for. */
static uint32_t next_round(const struct act *a)
{
    return a->dyn ? a->dyn->waits : 0;
}

/* [L] The events a remote body emitted that were not applied as they
 * streamed (the runner was away, or the entry was lost), in order. */
static void apply_events(struct flow_run *r, struct act *a, json_t *events)
{
    struct cmd_slot *slot = act_cmd(a);
    for (size_t i = slot ? slot->events : 0; i < json_array_size(events) && !r->stopping; i++) {
        json_t *ev = json_array_get(events, i);
        flow__run_emit(r, a, json_string_value(json_object_get(ev, "event")),
                       json_object_get(ev, "data"), EMIT_STREAMED);
        slot = act_cmd(a);
        if (slot)
            slot->events = (uint32_t)i + 1;
    }
}

/* [L] Apply a completion of the (attempt, round) `a` runs: events not
 * applied yet, then the request it waits for or its result. Takes `x`. */
static void finish(struct flow_run *r, struct act *a, struct flow__cmd_result *res,
                   struct flow__rw_extra *x, const char *worker)
{
    uint32_t attempt = a->attempt, round = act_cmd(a) ? act_cmd(a)->round : 0;
    apply_events(r, a, x->events);
    if (!still_remote(a, attempt, round)) {
        /* What the events started ended this attempt (the run was
         * interrupted meanwhile): nothing more to apply. */
        flow__rw_extra_cleanup(x);
        return;
    }
    if (x->waiting) {
        flow__run_remote_waiting(r, a, x->waiting, worker);
    } else {
        flow__run_remote_done(r, a, res, x->writes, worker);
        x->writes = NULL;
    }
    flow__rw_extra_cleanup(x);
}

/* [L] The attempt could not be queued: it fails with `why` (taken). */
static void not_submitted(struct flow_run *r, struct act *a, char *why)
{
    struct flow__cmd_result res = {.ok = false, .exit_status = -1};
    res.error = why ? why : flow__strdup("cannot queue the task for a worker");
    flow__run_remote_done(r, a, &res, NULL, NULL);
    flow__cmd_result_cleanup(&res);
}

static void submission_cleanup(struct submission *s)
{
    flow__free(s->queue_key);
    flow__free(s->inflight_key);
    flow__free(s->levels_key);
    flow__json_free_text(s->resources);
    flow__free(s->spec);
    flow__free(s->error);
    blob_unref(s->blob);
    s->blob = NULL;
}

/* [L] Delete (with the next batch) the state versions of `st` that no
 * attempt still running remotely was queued with, but the newest: the
 * records in `sent` of attempts that ended let go of theirs first. */
static void sweep_states(struct flow__remote *rm, struct flow__remote_state *st)
{
    for (size_t i = 0; i < rm->sent.count; i++) {
        struct sent *x = &rm->sent.items[i];
        if (x->blob && !still_remote(x->a, x->attempt, x->round)) {
            blob_unref(x->blob);
            x->blob = NULL;
        }
    }
    size_t kept = 0, last = st->shipped.count - 1;
    for (size_t i = 0; i < last; i++) {
        struct state_blob *b = st->shipped.items[i];
        struct state_drop d = {.key = NULL};
        flow_err rc = FLOW_OK;
        if (atomic_load(&b->refs) == 1 && !b->pinned) { /* the list's own */
            d.key = flow__strdup(b->key);
            snprintf(d.field, sizeof(d.field), "%s", b->field);
            rc = d.key ? FLOW_OK : FLOW_ENOMEM;
            if (!rc)
                FLOW__VEC_PUSH(&rm->drops, d, rc);
        }
        if (d.key && !rc) {
            blob_unref(b);
        } else {
            flow__free(d.key); /* out of memory: it stays until the run ends */
            st->shipped.items[kept++] = b;
        }
    }
    st->shipped.items[kept++] = st->shipped.items[last];
    st->shipped.count = kept;
    st->sweep_at = 2 * kept + 16;
}

/* [L] The state version of run `r` for a submission (a new reference),
 * dumped on its first use; NULL: out of memory. */
static struct state_blob *state_of(struct flow__remote *rm, struct flow_run *r)
{
    struct flow__remote_state *st = r->remote_state;
    if (!st) {
        st = flow__calloc(1, sizeof(*st));
        if (!st)
            return NULL;
        uint64_t x;
        if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != (ssize_t)sizeof(x))
            x = (uint64_t)flow__now_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)st;
        snprintf(st->epoch, sizeof(st->epoch), "%016" PRIx64, x);
        st->sweep_at = 16;
        r->remote_state = st;
    }
    struct state_blob *b = st->shipped.count ? st->shipped.items[st->shipped.count - 1] : NULL;
    if (b && b->version == r->state_version) {
        atomic_fetch_add(&b->refs, 1);
        return b;
    }
    b = flow__calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->version = r->state_version;
    snprintf(b->field, sizeof(b->field), "%s.%" PRIu64, st->epoch, r->state_version);
    b->key = flow__rw_key(rm->addr.prefix, "state", r->id);
    json_t *clean = NULL; /* no secret goes to Redis */
    if (flow__redact_json(r->secrets, r->state, &clean) == FLOW_OK)
        b->text = json_dumps(clean ? clean : r->state, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(clean);
    flow_err rc = b->key && b->text ? FLOW_OK : FLOW_ENOMEM;
    if (!rc)
        FLOW__VEC_PUSH(&st->shipped, b, rc);
    if (rc) {
        blob_unref(b);
        return NULL;
    }
    if (st->shipped.count >= st->sweep_at)
        sweep_states(rm, st);
    atomic_fetch_add(&b->refs, 1);
    return b;
}

/* [L] The spec of `s` as JSON, naming the run's state version as it is
 * now (s->blob, a new reference); NULL: out of memory. */
static json_t *spec_of(struct flow__remote *rm, struct flow_run *r, struct submission *s,
                       const struct flow__cmd_spec *spec, const char *fn)
{
    s->blob = state_of(rm, r);
    return s->blob ? flow__rw_spec_encode(spec, fn, s->blob->field) : NULL;
}

/* [L] No secret goes to Redis: the spec `*js` redacted, naming the run's
 * secrets for the worker, which takes their values from its own environment
 * (docs/internals/core.md, "Secrets"). */
static flow_err secrets_out(struct flow_run *r, json_t **js)
{
    size_t n = flow__secrets_count(r->secrets);
    if (!n)
        return FLOW_OK;
    if (flow__redact_json_swap(r->secrets, js) != FLOW_OK)
        return FLOW_ENOMEM;
    json_t *names = json_array();
    for (size_t i = 0; names && i < n; i++)
        if (json_array_append_new(names, json_string(flow__secrets_name(r->secrets, i)))) {
            json_decref(names);
            names = NULL;
        }
    return names && !json_object_set_new(*js, "secrets", names) ? FLOW_OK : FLOW_ENOMEM;
}

/* [L] The message of running attempt `a->attempt` of `a` into `s` (its
 * queue and inflight keys, its spec naming the run's state version); false with a
 * message (or NULL: out of memory) in *why. Called when the attempt starts
 * and again when Redis lost it: a spec is not kept in between. */
static bool render(struct flow__remote *rm, struct act *a, struct submission *s, char **why)
{
    struct flow_run *r = a->run;
    const struct flow_task *t = act_task(a);
    memset(s, 0, sizeof(*s));
    *why = NULL;
    struct flow__cmd_spec spec;
    void *scratch = NULL;
    json_t *js = NULL;
    const char *fn = t->kind == TASK_FN ? (t->ext ? t->ext->remote_fn : NULL) : NULL;
    if (t->kind == TASK_FN) {
        memset(&spec, 0, sizeof(spec));
        if (!fn) {
            *why = flow__asprintf("task '%s' has no 'fn' name for workers", t->name);
            return false;
        }
        if (!flow__run_input_ready(r, a, why))
            return false;
        spec.input = flow__run_act_input(r, a);
        js = spec_of(rm, r, s, &spec, fn);
        /* What the function reads through its flow_ctx besides its input. */
        const struct act_dyn *dy = a->dyn;
        json_t *answers = flow__feedback_answers_of(r, a);
        if (js && answers)
            json_object_set_new(js, "answers", answers);
        else
            json_decref(answers);
        if (js && dy && dy->parent) {
            json_object_set(js, "item", dy->item ? dy->item : json_null());
            json_object_set_new(js, "index", json_integer((json_int_t)dy->index));
        }
    } else if (flow__run_prepare_cmd(r, a, &spec, &scratch, why)) {
        js = spec_of(rm, r, s, &spec, NULL);
    } else {
        flow__run_cmd_scratch_free(scratch);
        return false;
    }
    flow__run_cmd_scratch_free(scratch);
    if (js && secrets_out(r, &js) != FLOW_OK) {
        json_decref(js);
        js = NULL;
    }
    s->spec = js ? json_dumps(js, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(js);
    const char *queue = t->ext && t->ext->queue ? t->ext->queue : "default";
    int priority = t->policy->priority;
    s->queue_key = flow__rw_queue_key(rm->addr.prefix, queue, priority);
    /* Priority 0 lists no level (its KEYS[4] is the queue's, unused). */
    s->levels_key = priority ? flow__rw_key(rm->addr.prefix, "levels", queue) : NULL;
    s->inflight_key = flow__rw_key(rm->addr.prefix, "inflight", r->id);
    const flow_resources *need = t->ext ? t->ext->resources : NULL;
    s->resources = need ? flow__rw_resources_encode(need, false) : NULL;
    snprintf(s->priority_s, sizeof(s->priority_s), "%d", priority);
    if (!s->spec || !s->queue_key || !s->inflight_key || (priority && !s->levels_key) ||
        (need && !s->resources)) {
        submission_cleanup(s);
        memset(s, 0, sizeof(*s));
        *why = flow__strdup("out of memory queueing a remote task");
        return false;
    }
    s->r = r;
    s->a = a;
    s->attempt = a->attempt;
    s->round = act_cmd(a) ? act_cmd(a)->round : 0;
    snprintf(s->act_s, sizeof(s->act_s), "%" PRIu32, a->id);
    snprintf(s->attempt_s, sizeof(s->attempt_s), "%" PRIu32, a->attempt);
    snprintf(s->round_s, sizeof(s->round_s), "%" PRIu32, s->round);
    flow__rw_inflight_value(s->inflight_v, sizeof(s->inflight_v), s->attempt, s->round);
    return true;
}

/* [L] Start the attempt and prepare its message; false when it ended
 * already (failed to prepare, or its completion was waiting). */
static bool prepare(struct flow__remote *rm, struct act *a, struct submission *s)
{
    struct flow_run *r = a->run;
    memset(s, 0, sizeof(*s));
    struct cmd_slot *slot = flow__calloc(1, sizeof(*slot));
    struct act_dyn *dyn = slot ? flow__act_dyn(r, a) : NULL;
    if (!dyn) {
        flow__free(slot);
        flow__run_stop(r, FLOW_RUN_FAILED, "out of memory starting a remote task");
        flow__run_cancel_act(r, a, "out of memory");
        return false;
    }
    slot->remote = true;
    slot->act = a;
    dyn->cmd = slot;
    if (!r->remote_watch) {
        r->remote_watch = true;
        pthread_cond_broadcast(&rm->cond); /* a reader napping for want of runs */
    }
    flow__run_attempt_started(r, a);
    slot->attempt = a->attempt;
    slot->round = next_round(a);
    slot->events = dyn->streamed; /* what a resumed round applied before */
    dyn->streamed = 0;
    struct early x;
    if (take_early(rm, r->id, a->id, a->attempt, slot->round, &x)) {
        finish(r, a, &x.res, &x.x, x.worker);
        early_free(&x);
        return false;
    }
    if (!rm->addr_ok) {
        not_submitted(r, a, flow__strdup(rm->addr_error));
        return false;
    }
    char *why = NULL;
    if (!render(rm, a, s, &why)) {
        not_submitted(r, a, why);
        return false;
    }
    atomic_fetch_add(&r->refs, 1); /* the run outlives the unlocked part */
    return true;
}

/* An error reply that says "later", not "never": a server loading its
 * append-only file after a restart, busy with a script, out of memory
 * (noeviction), or a replica. */
static bool transient(const char *msg)
{
    static const char *const later[] = {"LOADING", "BUSY", "OOM", "TRYAGAIN", "MASTERDOWN",
                                        "READONLY"};
    for (size_t i = 0; msg && i < FLOW__ARRAY_LEN(later); i++)
        if (!strncmp(msg, later[i], strlen(later[i])))
            return true;
    return false;
}

/* Without the lock: one round trip for the batch `v` (pipelined): the
 * deletions of unused state versions, the state versions its unsettled
 * submissions need that are not written yet (HSETNX, EXPIRE), then for
 * each the Lua script (XADD unless this attempt is in flight already).
 * Each gets its rc: FLOW_OK, FLOW_EIO (Redis unreachable, or its state
 * version was not there: try again) or another error with its message;
 * `why` gets the reason Redis could not be reached. */
static void submit_batch(struct flow__remote *rm, redisContext **c, bool *warned,
                         struct submission *v, size_t n, flow_error *why)
{
    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%d", FLOW__RW_TTL_S);
    bool connected = connection(rm, c, warned, why) != NULL;
    unsigned batch = ++rm->batch ? rm->batch : ++rm->batch; /* 0: none */
    size_t sent = 0, ndrops = 0, nwrites = 0;
    for (size_t i = 0; connected && i < rm->drops.count; i++) {
        struct state_drop *d = &rm->drops.items[i];
        const char *argv[] = {"HDEL", d->key, d->field};
        if (redisAppendCommandArgv(*c, 3, argv, NULL) == REDIS_OK)
            ndrops++;
    }
    for (size_t i = 0; i < rm->drops.count; i++)
        flow__free(rm->drops.items[i].key);
    rm->drops.count = 0; /* sent or not: a version left over goes with the run */
    for (size_t i = 0; connected && i < n; i++) {
        struct state_blob *b = v[i].blob;
        if (v[i].settled || b->written == rm->gen || b->batch == batch)
            continue; /* (an unsettled submission's attempt runs: it has its blob) */
        const char *argv[] = {"EVAL", state_lua, "1", b->key, b->field, b->text, ttl};
        if (redisAppendCommandArgv(*c, 7, argv, NULL) == REDIS_OK) {
            b->batch = batch;
            nwrites++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct submission *s = &v[i];
        if (s->settled)
            continue;
        s->rc = FLOW_EIO;
        if (!connected)
            continue;
        const char *task = act_task(s->a)->name; /* the flow outlives the run */
        const char *levels = s->levels_key ? s->levels_key : s->queue_key;
        const char *fixed[] = {"EVAL",         submit_lua,    "4",          s->queue_key,
                               s->inflight_key, s->blob->key,  levels,       s->act_s,
                               s->inflight_v,  ttl,           s->blob->field, s->priority_s,
                               "v",            FLOW__RW_VERSION, "run",     s->r->id,
                               "act",          s->act_s,      "attempt",    s->attempt_s,
                               "task",         task,          "spec",       s->spec};
        const char *argv[FLOW__ARRAY_LEN(fixed) + 4];
        int argc = 0;
        for (size_t k = 0; k < FLOW__ARRAY_LEN(fixed); k++)
            argv[argc++] = fixed[k];
        /* Round 0 goes without its field, an entry that asks no resources
         * without that one: entries as they always were. */
        if (s->round) {
            argv[argc++] = "round";
            argv[argc++] = s->round_s;
        }
        if (s->resources) {
            argv[argc++] = "resources";
            argv[argc++] = s->resources;
        }
        s->appended = redisAppendCommandArgv(*c, argc, argv, NULL) == REDIS_OK;
        sent += s->appended;
    }
    bool alive = true;
    for (size_t i = 0; i < ndrops && alive; i++) {
        redisReply *rep = NULL;
        alive = redisGetReply(*c, (void **)&rep) == REDIS_OK && rep;
        freeReplyObject(rep);
    }
    for (size_t i = 0; i < n && nwrites && alive; i++) {
        struct state_blob *b = v[i].blob;
        if (v[i].settled || b->written == rm->gen || b->batch != batch)
            continue;
        b->batch = 0; /* its reply is read */
        nwrites--;
        redisReply *rep = NULL;
        alive = redisGetReply(*c, (void **)&rep) == REDIS_OK && rep;
        if (alive && rep->type == REDIS_REPLY_ERROR && !transient(rep->str)) {
            flow__free(b->error);
            b->error = flow__asprintf("redis %s: cannot store the run's state: %.300s",
                                      rm->addr.shown, rep->str ? rep->str : "error");
        } else if (alive && rep->type == REDIS_REPLY_INTEGER) {
            b->written = rm->gen;
            flow__free(b->error);
            b->error = NULL;
        }
        freeReplyObject(rep);
    }
    for (size_t i = 0; i < n && sent && alive; i++) {
        struct submission *s = &v[i];
        if (s->settled || !s->appended) /* not sent (out of memory): no reply of its own */
            continue;
        redisReply *rep = NULL;
        if (redisGetReply(*c, (void **)&rep) != REDIS_OK || !rep) {
            break; /* the connection failed: the rest stay FLOW_EIO */
        }
        sent--;
        const char *msg = rep->type == REDIS_REPLY_ERROR && rep->str ? rep->str : "error";
        if (rep->type == REDIS_REPLY_ERROR && !strncmp(msg, "NOSTATE", 7)) {
            /* Not stored, or lost (Redis restarted): write it again, or
             * fail with the reason it was refused. */
            s->blob->written = 0;
            s->rc = s->blob->error ? FLOW_EINVAL : FLOW_EIO;
            flow__free(s->error);
            s->error = s->blob->error ? flow__strdup(s->blob->error) : NULL;
        } else if (rep->type == REDIS_REPLY_ERROR && !transient(msg)) {
            s->rc = FLOW_EINVAL;
            flow__free(s->error);
            s->error = flow__asprintf("redis %s: cannot queue the task: %.300s", rm->addr.shown,
                                      msg);
        } else {
            s->rc = rep->type == REDIS_REPLY_ERROR ? FLOW_EIO : FLOW_OK;
        }
        freeReplyObject(rep);
    }
    for (size_t i = 0; i < n; i++)
        if (v[i].blob && v[i].blob->batch == batch)
            v[i].blob->batch = 0; /* unread: written again next time */
}

/* Without the lock: write the cancel keys asked for. */
static void write_signals(struct flow__remote *rm, redisContext **c, bool *warned,
                          struct signal_req *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!connection(rm, c, warned, NULL))
            return;
        char *key = flow__rw_key(rm->addr.prefix, "cancel", v[i].run);
        flow_error err;
        redisReply *rep = key ? flow__redis_cmd(*c, &rm->addr, &err, "HSET %s %s %s", key,
                                                v[i].field, v[i].what)
                              : NULL;
        if (rep) {
            freeReplyObject(rep);
            rep = flow__redis_cmd(*c, &rm->addr, &err, "EXPIRE %s %d", key, FLOW__RW_TTL_S);
        }
        if (!rep && key)
            flow__log(FLOW_LOG_WARN, "remote tasks: cannot signal a worker: %s", err.message);
        freeReplyObject(rep);
        flow__free(key);
    }
}

/* Without the lock: delete the keys of runs that ended. */
static void delete_ended(struct flow__remote *rm, redisContext **c, bool *warned, char **runs,
                         size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!connection(rm, c, warned, NULL))
            return;
        char *k1 = flow__rw_key(rm->addr.prefix, "done", runs[i]);
        char *k2 = flow__rw_key(rm->addr.prefix, "inflight", runs[i]);
        char *k3 = flow__rw_key(rm->addr.prefix, "cancel", runs[i]);
        char *k4 = flow__rw_key(rm->addr.prefix, "state", runs[i]);
        flow_error err;
        if (k1 && k2 && k3 && k4) {
            redisReply *rep =
                flow__redis_cmd(*c, &rm->addr, &err, "DEL %s %s %s %s", k1, k2, k3, k4);
            freeReplyObject(rep);
        }
        flow__free(k1);
        flow__free(k2);
        flow__free(k3);
        flow__free(k4);
    }
}

/* Without the lock: which of the attempts of `v` Redis does not have in
 * flight (their field of P:inflight:RUN is not their attempt and round), with one
 * pipelined HGET each, in batches; false when Redis could not tell (try
 * again later). The runs' ids and the activations' numbers never change:
 * the references of `v` make them safe to read. */
static bool find_lost(struct flow__remote *rm, redisContext **c, bool *warned,
                      const struct sent *v, size_t n, bool *lost)
{
    bool ok = true;
    for (size_t from = 0; ok && from < n; from += CHECK_BATCH) {
        size_t m = n - from < CHECK_BATCH ? n - from : CHECK_BATCH;
        if (!connection(rm, c, warned, NULL))
            return false;
        size_t asked = 0;
        for (size_t i = from; ok && i < from + m; i++) {
            char *key = flow__rw_key(rm->addr.prefix, "inflight", v[i].r->id);
            char act[16];
            snprintf(act, sizeof(act), "%" PRIu32, v[i].a->id);
            const char *argv[] = {"HGET", key, act};
            ok = key && redisAppendCommandArgv(*c, 3, argv, NULL) == REDIS_OK;
            asked += ok;
            flow__free(key);
        }
        for (size_t i = from; i < from + asked; i++) {
            redisReply *rep = NULL;
            if (redisGetReply(*c, (void **)&rep) != REDIS_OK || !rep)
                return false; /* the connection failed: its replies are gone with it */
            char attempt[32];
            flow__rw_inflight_value(attempt, sizeof(attempt), v[i].attempt, v[i].round);
            if (rep->type == REDIS_REPLY_ERROR) /* LOADING after a restart: later */
                ok = false;
            lost[i] = rep->type != REDIS_REPLY_STRING || strcmp(rep->str, attempt) != 0;
            freeReplyObject(rep);
        }
    }
    return ok;
}

/* [L] Forget the queued attempts of `sent` that ended; when `send` (after a
 * reconnect), queue again those Redis lost. Their specs are rendered again
 * under the lock, as when they started (a resumed run's are too): what is
 * queued again sees the run's state as it is now. */
static void resubmit(struct flow__remote *rm, redisContext **c, bool *warned, bool send)
{
    struct flow_engine *e = rm->e;
    FLOW__VEC(struct flow_run *) drop = {0};
    size_t kept = 0;
    for (size_t i = 0; i < rm->sent.count; i++) {
        struct sent x = rm->sent.items[i];
        bool over = !still_remote(x.a, x.attempt, x.round);
        flow_err rc = FLOW_OK;
        if (over)
            FLOW__VEC_PUSH(&drop, x.r, rc);
        if (!over || rc) /* out of memory: forgotten next time */
            rm->sent.items[kept++] = x;
        else
            blob_unref(x.blob);
    }
    rm->sent.count = kept;
    if (drop.count) {
        /* Without the lock: the last reference closes the run's journal,
         * whose writer may take the lock (flow__run_unref). */
        pthread_mutex_unlock(&e->lock);
        for (size_t i = 0; i < drop.count; i++)
            flow__run_unref(drop.items[i]);
        pthread_mutex_lock(&e->lock);
    }
    FLOW__VEC_FREE(&drop);
    rm->sent_prune = 2 * rm->sent.count + 64;
    /* Redis may have lost state versions too: each is written again first. */
    if (send && !++rm->gen)
        rm->gen = 1;
    size_t n = rm->sent.count;
    if (!send || !n)
        return;
    bool *lost = flow__calloc(n, sizeof(*lost));
    bool failed = !lost;
    if (lost) {
        /* `sent` is this thread's alone: it may be read without the lock. */
        pthread_mutex_unlock(&e->lock);
        failed = !find_lost(rm, c, warned, rm->sent.items, n, lost);
        pthread_mutex_lock(&e->lock);
    }
    struct submission batch[SUBMIT_BATCH];
    size_t at[SUBMIT_BATCH]; /* their records in `sent` */
    for (size_t i = 0; !failed && i < n;) {
        size_t m = 0;
        for (; i < n && m < SUBMIT_BATCH; i++) {
            struct sent *x = &rm->sent.items[i];
            char *why = NULL;
            if (!lost[i] || !still_remote(x->a, x->attempt, x->round))
                continue;
            at[m] = i;
            if (render(rm, x->a, &batch[m], &why))
                m++;
            else /* it cannot be queued again: it fails, as at its start */
                not_submitted(x->r, x->a, why);
        }
        if (!m)
            continue;
        pthread_mutex_unlock(&e->lock);
        submit_batch(rm, c, warned, batch, m, NULL);
        pthread_mutex_lock(&e->lock);
        flow__engine_tick(e);
        for (size_t k = 0; k < m; k++) {
            struct submission *s = &batch[k];
            failed |= s->rc == FLOW_EIO;
            if (s->rc != FLOW_OK && s->rc != FLOW_EIO && still_remote(s->a, s->attempt, s->round)) {
                not_submitted(s->r, s->a, s->error);
                s->error = NULL;
            }
            if (s->rc == FLOW_OK) { /* its new entry names the state as it is now */
                struct state_blob *b = rm->sent.items[at[k]].blob;
                rm->sent.items[at[k]].blob = s->blob;
                s->blob = b;
            }
            submission_cleanup(s);
        }
    }
    flow__free(lost);
    if (failed)
        atomic_store(&rm->reconnected, true); /* next time */
}

/* [L] Read the live workers when they are stale (without the lock), then
 * go over the activations held for resources (core/remote_fit.h). */
static void check_held(struct flow__remote *rm, redisContext **c, bool *warned)
{
    struct flow_engine *e = rm->e;
    if (flow__rfit_stale(&rm->fit)) {
        pthread_mutex_unlock(&e->lock);
        json_t *fleet = NULL;
        flow_error err;
        if (connection(rm, c, warned, NULL) &&
            flow__rw_workers_read(*c, &rm->addr, false, &fleet, &err) != FLOW_OK)
            flow__log(FLOW_LOG_WARN, "remote tasks: cannot read the live workers: %s",
                      err.message);
        pthread_mutex_lock(&e->lock);
        if (fleet)
            flow__rfit_set_fleet(&rm->fit, fleet);
    }
    flow__rfit_check(&rm->fit, e);
}

const char *flow__remote_waiting_for(struct flow_engine *e, const struct act *a)
{
    return e->remote ? flow__rfit_waiting_for(&e->remote->fit, a) : NULL;
}

/* [L] The next activation to submit: one held for resources that a worker
 * fits now (*checked), else the engine's next remote one. */
static struct act *next_act(struct flow__remote *rm, bool *checked)
{
    struct act *a = flow__rfit_next(&rm->fit, rm->e);
    *checked = a != NULL;
    return a ? a : flow__engine_remote_pop(rm->e);
}

static void *submitter_main(void *arg)
{
    struct flow__remote *rm = arg;
    struct flow_engine *e = rm->e;
    redisContext *c = NULL;
    bool warned = false;
    bool reached = false; /* once Redis answered, its absence is a restart: wait */
    rm->gen = 1;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        if (rm->sigs.count || rm->ended.count) {
            struct signal_req *sigs = rm->sigs.items;
            size_t nsigs = rm->sigs.count;
            char **ended = rm->ended.items;
            size_t nended = rm->ended.count;
            memset(&rm->sigs, 0, sizeof(rm->sigs));
            memset(&rm->ended, 0, sizeof(rm->ended));
            pthread_mutex_unlock(&e->lock);
            write_signals(rm, &c, &warned, sigs, nsigs);
            delete_ended(rm, &c, &warned, ended, nended);
            for (size_t i = 0; i < nended; i++)
                flow__free(ended[i]);
            flow__free(ended);
            flow__free(sigs);
            pthread_mutex_lock(&e->lock);
            continue;
        }
        if (rm->stop)
            break;
        bool again = atomic_exchange(&rm->reconnected, false);
        if (again || rm->sent.count >= rm->sent_prune) {
            resubmit(rm, &c, &warned, again);
            if (again && atomic_load(&rm->reconnected))
                nap(rm, RETRY_MS);
            continue;
        }
        if (rm->fit.held.count && flow__now_ns() >= rm->fit.check_at) {
            check_held(rm, &c, &warned);
            continue;
        }
        if (!e->remote_q.count && !flow__rfit_ready(&rm->fit)) {
            int64_t left = rm->fit.check_at - flow__now_ns();
            if (rm->fit.held.count)
                nap(rm, left > 0 ? (int)((left + 999999) / 1000000) : 0);
            else
                pthread_cond_wait(&rm->cond, &e->lock);
            continue;
        }
        flow__engine_tick(e);
        struct submission batch[SUBMIT_BATCH];
        size_t n = 0;
        struct act *a;
        bool checked;
        while (n < SUBMIT_BATCH && (a = next_act(rm, &checked)) != NULL) {
            if (a->run->stopping)
                flow__run_cancel_act(a->run, a, "the run stopped before it started");
            else if (!checked && rm->addr_ok && flow__rfit_asks(a) &&
                     !flow__rfit_fits_now(&rm->fit, a) && flow__rfit_hold(&rm->fit, a))
                continue; /* checked at once, then every second */
            else if (prepare(rm, a, &batch[n]))
                n++;
        }
        for (size_t unsettled = n; unsettled;) {
            pthread_mutex_unlock(&e->lock);
            flow_error why = {0};
            submit_batch(rm, &c, &warned, batch, n, &why);
            reached |= c && !c->err;
            pthread_mutex_lock(&e->lock);
            flow__engine_tick(e);
            unsettled = 0;
            for (size_t i = 0; i < n; i++) {
                struct submission *s = &batch[i];
                if (s->settled)
                    continue;
                if (!still_remote(s->a, s->attempt, s->round) || s->rc == FLOW_OK) {
                    s->settled = true; /* queued, or timed out or cancelled meanwhile */
                } else if (s->rc != FLOW_EIO || rm->stop || !reached) {
                    /* Never reached at all: a wrong address, not a restart. */
                    not_submitted(s->r, s->a,
                                  s->error ? s->error
                                  : why.code ? flow__strdup(why.message)
                                             : flow__asprintf("cannot reach %s", rm->addr.shown));
                    s->error = NULL;
                    s->settled = true;
                } else {
                    unsettled++;
                }
            }
            if (unsettled)
                nap(rm, RETRY_MS); /* Redis is away: the attempts wait (their timeouts run) */
        }
        /* What is queued and still running is remembered (with a reference
         * to its run, not its spec) to be queued again after a reconnect. */
        for (size_t i = 0; i < n; i++) {
            flow_err rc = FLOW_EIO;
            if (batch[i].rc == FLOW_OK &&
                still_remote(batch[i].a, batch[i].attempt, batch[i].round)) {
                struct sent x = {batch[i].r, batch[i].a, batch[i].attempt, batch[i].round,
                                 batch[i].blob};
                rc = FLOW_OK;
                FLOW__VEC_PUSH(&rm->sent, x, rc);
            }
            if (rc == FLOW_ENOMEM)
                batch[i].blob->pinned = true; /* still used, but we cannot tell */
            if (!rc) { /* its references are the entry's now */
                batch[i].r = NULL;
                batch[i].blob = NULL;
            }
        }
        /* Without the lock: a last reference closes the run's journal. */
        pthread_mutex_unlock(&e->lock);
        for (size_t i = 0; i < n; i++) {
            submission_cleanup(&batch[i]);
            flow__run_unref(batch[i].r);
        }
        pthread_mutex_lock(&e->lock);
        flow__rfit_let_go(&rm->fit, e); /* the references of held ones submitted now */
    }
    flow__rfit_cleanup(&rm->fit, e); /* the engine goes: they stay pending */
    pthread_mutex_unlock(&e->lock);
    for (size_t i = 0; i < rm->sent.count; i++) {
        blob_unref(rm->sent.items[i].blob);
        flow__run_unref(rm->sent.items[i].r);
    }
    FLOW__VEC_FREE(&rm->sent);
    for (size_t i = 0; i < rm->drops.count; i++)
        flow__free(rm->drops.items[i].key);
    FLOW__VEC_FREE(&rm->drops);
    if (c)
        redisFree(c);
    return NULL;
}

/* ---- the reader ------------------------------------------------------------ */

/* [L] Whether the reader follows the completion stream of `r`. */
static bool followed(const struct flow_run *r)
{
    return r->remote_watch && r->status == FLOW_RUN_RUNNING;
}

/* [L] Drop the completions kept for attempts that will not be submitted
 * again here: the run is not followed any more (paused, ended, freed) or
 * the activation is not waiting for that attempt. A run that is followed
 * again later is read from the start of its stream (refresh_watched): a
 * resume finds them there. */
static void prune_early(struct flow__remote *rm)
{
    for (size_t i = 0; i < rm->early.count;) {
        struct early *x = &rm->early.items[i];
        struct flow_run *r = rm->e->runs;
        while (r && !(followed(r) && !strcmp(r->id, x->run)))
            r = r->next;
        struct act *a = r && x->act <= r->act_count ? flow__act_by_id(r, x->act) : NULL;
        if (a && a->status == FLOW_ACT_PENDING && (uint32_t)a->attempt + 1u == x->attempt) {
            i++;
            continue;
        }
        early_free(x);
        rm->early.items[i] = rm->early.items[--rm->early.count];
    }
}

/* [L] Refresh the list of completion streams to read: the runs with remote
 * work that have not ended (nor paused). */
static void refresh_watched(struct flow__remote *rm)
{
    struct flow_engine *e = rm->e;
    if (rm->early.count)
        prune_early(rm);
    size_t kept = 0;
    for (size_t i = 0; i < rm->watched.count; i++) {
        struct watch *w = &rm->watched.items[i];
        bool live = false;
        for (struct flow_run *r = e->runs; r && !live; r = r->next)
            live = followed(r) && !strcmp(r->id, w->run);
        if (live)
            rm->watched.items[kept++] = *w;
        else
            flow__free(w->key);
    }
    rm->watched.count = kept;
    for (struct flow_run *r = e->runs; r; r = r->next) {
        if (!followed(r))
            continue;
        bool have = false;
        for (size_t i = 0; i < rm->watched.count && !have; i++)
            have = !strcmp(rm->watched.items[i].run, r->id);
        if (have)
            continue;
        struct watch w = {.key = flow__rw_key(rm->addr.prefix, "done", r->id)};
        flow_err rc = w.key ? FLOW_OK : FLOW_ENOMEM;
        snprintf(w.run, sizeof(w.run), "%s", r->id);
        snprintf(w.last, sizeof(w.last), "0");
        if (!rc)
            FLOW__VEC_PUSH(&rm->watched, w, rc);
        if (rc)
            flow__free(w.key);
    }
}

static struct flow_run *run_by_id(struct flow_engine *e, const char *id)
{
    for (struct flow_run *r = e->runs; r; r = r->next)
        if (!strcmp(r->id, id))
            return r;
    return NULL;
}

/* A completion or a streamed event, decoded without the lock. */
struct incoming {
    struct flow__rw_ident id;
    struct early x;
    json_t *event;        /* an event: the decoded message, or NULL */
    const char *ev_name;  /* in `event` */
    json_t *ev_data;      /* in `event` */
    uint32_t ev_seq;
};

/* Without the lock: decode an entry into `in`; false (logged) when it is
 * malformed. */
static bool decode_completion(const struct flow__rw_entry *en, const char *stream,
                              struct incoming *in)
{
    const char *why = NULL;
    char *bad = NULL;
    memset(in, 0, sizeof(*in));
    const char *ev = flow__rw_field(en, "event");
    bool ok = flow__rw_ident(en, &in->id, &why);
    if (ok && ev)
        ok = flow__rw_event_decode(ev, &in->ev_seq, &in->ev_name, &in->ev_data, &in->event, &bad);
    else if (ok)
        ok = flow__rw_result_decode(flow__rw_field(en, "result"), &in->x.res, &in->x.x, &bad);
    if (!ok) {
        flow__log(FLOW_LOG_WARN, "remote tasks: entry %s of %s is malformed (%s); skipped", en->id,
                  stream, why ? why : bad);
        flow__free(bad);
        flow__cmd_result_cleanup(&in->x.res);
        flow__rw_extra_cleanup(&in->x.x);
        return false;
    }
    const char *worker = flow__rw_field(en, "worker");
    in->x.worker = worker ? flow__strdup(worker) : NULL;
    return true;
}

/* [L] Apply a completion, or keep it for a resumed attempt not submitted
 * yet, or drop it as a duplicate. `in` is emptied. */
static void apply_completion(struct flow__remote *rm, struct incoming *in)
{
    struct flow__rw_ident *id = &in->id;
    struct early *x = &in->x;
    struct flow_run *r = run_by_id(rm->e, id->run);
    struct act *a = r && id->act <= r->act_count ? flow__act_by_id(r, id->act) : NULL;
    if (in->event) {
        /* Applied once, in order: a body run again (its worker died) emits
         * what it emitted before, and that is dropped. An event of an
         * attempt not running here now comes again in its completion. */
        struct cmd_slot *slot = a && still_remote(a, id->attempt, id->round) ? act_cmd(a) : NULL;
        if (slot && slot->events == in->ev_seq && !r->stopping) {
            slot->events++;
            flow__run_emit(r, a, in->ev_name, in->ev_data, EMIT_STREAMED);
        }
        json_decref(in->event);
        early_free(x);
        return;
    }
    if (a && still_remote(a, id->attempt, id->round)) {
        finish(r, a, &x->res, &x->x, x->worker);
    } else if (a && a->status == FLOW_ACT_PENDING && (uint32_t)a->attempt + 1u == id->attempt &&
               next_round(a) == id->round) {
        /* A resumed (or paused, soon resumed) attempt whose entry ran
         * meanwhile: the submitter applies it when it gets there. */
        snprintf(x->run, sizeof(x->run), "%s", id->run);
        x->act = id->act;
        x->attempt = id->attempt;
        x->round = id->round;
        flow_err rc = FLOW_OK;
        FLOW__VEC_PUSH(&rm->early, *x, rc);
        if (!rc)
            memset(x, 0, sizeof(*x));
    }
    early_free(x);
}

static void *reader_main(void *arg)
{
    struct flow__remote *rm = arg;
    struct flow_engine *e = rm->e;
    redisContext *c = NULL;
    bool warned = false;
    for (;;) {
        pthread_mutex_lock(&e->lock);
        if (rm->stop) {
            pthread_mutex_unlock(&e->lock);
            break;
        }
        refresh_watched(rm);
        size_t n = rm->addr_ok ? rm->watched.count : 0;
        if (!n) {
            nap(rm, READ_BLOCK_MS);
            pthread_mutex_unlock(&e->lock);
            continue;
        }
        const char **argv = flow__calloc(6 + 2 * n, sizeof(*argv));
        if (!argv) {
            pthread_mutex_unlock(&e->lock);
            continue;
        }
        char block[16];
        snprintf(block, sizeof(block), "%d", READ_BLOCK_MS);
        int argc = 0;
        argv[argc++] = "XREAD";
        argv[argc++] = "COUNT";
        argv[argc++] = "512";
        argv[argc++] = "BLOCK";
        argv[argc++] = block;
        argv[argc++] = "STREAMS";
        for (size_t i = 0; i < n; i++)
            argv[argc++] = rm->watched.items[i].key;
        for (size_t i = 0; i < n; i++)
            argv[argc++] = rm->watched.items[i].last;
        pthread_mutex_unlock(&e->lock);
        /* The watched list is only changed by this thread: reading it
         * unlocked is safe. */
        flow_error err;
        redisReply *rep = NULL;
        if (connection(rm, &c, &warned, NULL))
            rep = flow__redis_cmdv(c, &rm->addr, &err, argc, argv, NULL);
        flow__free(argv);
        if (!rep) {
            if (c && !c->err)
                flow__log(FLOW_LOG_WARN, "remote tasks: %s", err.message);
            pthread_mutex_lock(&e->lock);
            if (!rm->stop)
                nap(rm, RETRY_MS);
            pthread_mutex_unlock(&e->lock);
            continue;
        }
        /* Decode the whole reply without the lock, apply it under one. */
        FLOW__VEC(struct incoming) in = {0};
        for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
            const redisReply *s = rep->element[i];
            if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
                s->element[0]->type != REDIS_REPLY_STRING ||
                s->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            struct watch *w = NULL;
            for (size_t k = 0; k < rm->watched.count && !w; k++)
                if (!strcmp(rm->watched.items[k].key, s->element[0]->str))
                    w = &rm->watched.items[k];
            if (!w)
                continue;
            for (size_t k = 0; k < s->element[1]->elements; k++) {
                struct flow__rw_entry en;
                if (!flow__rw_entry_of(s->element[1]->element[k], &en))
                    continue;
                snprintf(w->last, sizeof(w->last), "%s", en.id);
                struct incoming one;
                if (!decode_completion(&en, w->key, &one))
                    continue;
                flow_err rc = FLOW_OK;
                FLOW__VEC_PUSH(&in, one, rc);
                if (rc) { /* out of memory: this one at once, by itself */
                    pthread_mutex_lock(&e->lock);
                    flow__engine_tick(e);
                    apply_completion(rm, &one);
                    pthread_mutex_unlock(&e->lock);
                }
            }
        }
        if (in.count) {
            pthread_mutex_lock(&e->lock);
            flow__engine_tick(e);
            for (size_t i = 0; i < in.count; i++)
                apply_completion(rm, &in.items[i]);
            pthread_mutex_unlock(&e->lock);
        }
        FLOW__VEC_FREE(&in);
        freeReplyObject(rep);
    }
    for (size_t i = 0; i < rm->watched.count; i++)
        flow__free(rm->watched.items[i].key);
    FLOW__VEC_FREE(&rm->watched);
    if (c)
        redisFree(c);
    return NULL;
}

/* ---- the engine's side ---------------------------------------------------- */

void flow__remote_wake(struct flow_engine *e)
{
    struct flow__remote *rm = e->remote;
    if (!rm && e->remote_stopped)
        return; /* the engine is going: what is queued stays, and goes with it */
    if (!rm) {
        rm = flow__calloc(1, sizeof(*rm));
        if (!rm) {
            flow__log(FLOW_LOG_ERROR, "out of memory starting the remote executor");
            return; /* stays queued */
        }
        rm->e = e;
        pthread_cond_init(&rm->cond, NULL);
        const char *url = flow__redis_url_from_env(e->redis_url);
        flow_error err;
        if (!url)
            snprintf(rm->addr_error, sizeof(rm->addr_error),
                     "no Redis for remote tasks: give --redis URL or set FLOW_REDIS");
        else if (flow__redis_parse(url, &rm->addr, &err) != FLOW_OK)
            snprintf(rm->addr_error, sizeof(rm->addr_error), "%s", err.message);
        else
            rm->addr_ok = true;
        e->remote = rm;
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int rc = pthread_create(&rm->submitter, NULL, submitter_main, rm);
        if (!rc && pthread_create(&rm->reader, NULL, reader_main, rm)) {
            rm->stop = true;
            pthread_mutex_unlock(&e->lock);
            pthread_cond_broadcast(&rm->cond);
            pthread_join(rm->submitter, NULL);
            pthread_mutex_lock(&e->lock);
            rm->stop = false;
            rc = 1;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        rm->threads = rc == 0;
        if (rc)
            flow__log(FLOW_LOG_ERROR, "cannot start the remote executor's threads");
    }
    pthread_cond_broadcast(&rm->cond);
}

void flow__remote_signal(struct flow_run *r, struct act *a, const char *what)
{
    struct flow__remote *rm = r->engine->remote;
    if (!rm)
        return;
    struct signal_req q;
    snprintf(q.run, sizeof(q.run), "%s", r->id);
    struct cmd_slot *slot = act_cmd(a);
    flow__rw_cancel_field(q.field, sizeof(q.field), a->id, a->attempt, slot ? slot->round : 0);
    snprintf(q.what, sizeof(q.what), "%s", what);
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&rm->sigs, q, rc);
    if (rc)
        flow__log(FLOW_LOG_WARN, "out of memory signalling a remote task");
    pthread_cond_broadcast(&rm->cond);
}

void flow__remote_run_ended(struct flow_run *r)
{
    struct flow__remote *rm = r->engine->remote;
    if (!rm || r->status == FLOW_RUN_PAUSED)
        return;
    char *id = flow__strdup(r->id);
    flow_err rc = id ? FLOW_OK : FLOW_ENOMEM;
    if (!rc)
        FLOW__VEC_PUSH(&rm->ended, id, rc);
    if (rc)
        flow__free(id);
    /* Completions kept for this run will never be wanted. */
    for (size_t i = 0; i < rm->early.count;) {
        if (!strcmp(rm->early.items[i].run, r->id)) {
            early_free(&rm->early.items[i]);
            rm->early.items[i] = rm->early.items[--rm->early.count];
        } else {
            i++;
        }
    }
    pthread_cond_broadcast(&rm->cond);
}

void flow__remote_stop(struct flow_engine *e)
{
    pthread_mutex_lock(&e->lock);
    struct flow__remote *rm = e->remote;
    e->remote = NULL;
    e->remote_stopped = true;
    if (rm)
        rm->stop = true;
    pthread_mutex_unlock(&e->lock);
    if (!rm)
        return;
    pthread_cond_broadcast(&rm->cond);
    if (rm->threads) {
        pthread_join(rm->submitter, NULL);
        pthread_join(rm->reader, NULL);
    }
    for (size_t i = 0; i < rm->early.count; i++)
        early_free(&rm->early.items[i]);
    FLOW__VEC_FREE(&rm->early);
    FLOW__VEC_FREE(&rm->sigs);
    for (size_t i = 0; i < rm->ended.count; i++)
        flow__free(rm->ended.items[i]);
    FLOW__VEC_FREE(&rm->ended);
    pthread_cond_destroy(&rm->cond);
    flow__free(rm);
}

#ifdef FLOW_TESTING
size_t flow__remote_early_count(struct flow_engine *e)
{
    pthread_mutex_lock(&e->lock);
    size_t n = e->remote ? e->remote->early.count : 0;
    pthread_mutex_unlock(&e->lock);
    return n;
}
#endif
