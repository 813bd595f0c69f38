/* gate.c -- limits across runs: concurrency keys, rate limits, resources
 * and the flow's run limit, in front of the ready queues
 * (docs/internals/limits.md).
 *
 * An activation passes up to four stages in order: its run's slot (the
 * flow's `concurrency`), its task's concurrency slot, a rate token,
 * resources. Each key keeps the activations waiting for it in a ready queue
 * (priority, then arrival). Slots and tokens of a run with a store that
 * keeps limits are taken in the store, so every process sharing it counts
 * them; runs without one count in this engine only.
 *
 * The gate's thread takes slots and tokens from the stores without the
 * engine lock; everything else, including giving slots back (one small
 * write, rare: a freed slot goes straight to the next activation waiting
 * here for its key), happens under it. A slot passed on that way for more
 * than a second is given back instead when another process waits for its
 * key (slot_free), so that a busy process does not keep a key for ever.
 */
#include "util/compat.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/gate.h"
#include "core/run_int.h"
#include "store/handle.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/strmap.h"

enum { GK_RUN = 0, GK_SLOT, GK_RATE };
/* Local resources come before a key's slot, which other processes may be
 * waiting for; the rate token comes last: it stands for the start, which
 * follows it as closely as a free --jobs slot allows (serve_rate). */
enum { ST_RUN = 0, ST_RES, ST_SLOT, ST_RATE, ST_PASSED };

#define GRANT_BATCH 32
#define POLL_MIN_NS (50 * 1000000LL)
/* Short enough that a process another gives a slot back for (slot_free)
 * asks before the giver's YIELD_NS is over and takes it again. */
#define POLL_MAX_NS (250 * 1000000LL)
#define HOLD_NS (1000 * 1000000LL) /* a slot passed on among our waiters, before we ask */
#define YIELD_NS (300 * 1000000LL) /* after giving one back: the other's turn */
#define RENEW_NS ((int64_t)(FLOW__LEASE_RENEW * 1e9))
#define SAFETY_NS (100 * 1000000LL)
#define LINGER_NS (50 * 1000000LL) /* a spare slot nobody waits for is kept this long */

struct gate_key {
    char *map_key;            /* kind|store|key: the map's key */
    struct flow_store *store; /* NULL: counted in this engine only */
    char *key;                /* as the flow gave it, for people */
    char *skey;               /* its name in the store */
    uint8_t kind;
    int limit;
    double window;            /* GK_RATE */
    int held;                 /* slots this engine holds */
    FLOW__VEC(int) spare;     /* ... of them given back by an attempt, not yet reused */
    int64_t spare_at;         /* when the last of them came (monotonic ns) */
    FLOW__VEC(int64_t) taken; /* by slot number: monotonic ns it was taken from the
                               * store, or last found nobody else waits for it */
    struct readyq waiters;
    int64_t next_try;         /* monotonic ns: the store's next look (0: now) */
    int64_t backoff;
    FLOW__VEC(double) starts; /* GK_RATE without a store: the window's starts */
    size_t refs;              /* activations and runs that name it */
    size_t untold;            /* waiters that came since the last tell_all */
    struct gate_key *next;
};

struct act_gate {
    struct gate_key *slot_key, *rate_key; /* this round's keys (referenced) */
    int slot;                 /* held slot of slot_key, or -1 */
    uint8_t stage;            /* the next stage to pass */
    bool waiting_here;        /* in some key's waiters (or res_q) */
    bool res_held;
    bool passed;              /* admitted: in a ready queue or running */
    bool queued;              /* ... and not started yet (counts in `ready`) */
    bool told;                /* its waiting was journaled this round */
    bool run_only;            /* a foreach parent or nested flow: only the run's
                               * slot applies (its elements pass the rest) */
    char *failed;             /* its key could not be rendered: the attempt fails */
};

struct flow__gates {
    pthread_t thread;
    bool started, stop;
    pthread_cond_t cond;
    pthread_cond_t idle;      /* the thread left a store call */
    struct flow_store *calling; /* the store the thread is calling now */
    struct flow__strmap map;  /* map_key -> gate_key (stale entries: NULL) */
    struct gate_key *keys;
    size_t nkeys, dead;
    struct readyq res_q;      /* activations waiting for resources */
    size_t res_untold;
    flow_resources used;
    size_t ready;             /* passed, queued, not started */
    size_t waiting;           /* in the gate */
    FLOW__VEC(struct act *) failed; /* key render failures to apply */
    int64_t renew_at;
    bool kick;                /* something changed: look again now */
    bool want_job;            /* a key waits for a free --jobs slot (start_room) */
};

/* ---- keys ---------------------------------------------------------------- */

static struct flow__gates *gates_of(struct flow_engine *e)
{
    if (!e->gates) {
        struct flow__gates *g = flow__calloc(1, sizeof(*g));
        if (!g)
            return NULL;
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* its waits time out on it */
        pthread_cond_init(&g->cond, &ca);
        pthread_condattr_destroy(&ca);
        pthread_cond_init(&g->idle, NULL);
        flow__strmap_init(&g->map);
        e->gates = g;
    }
    return e->gates;
}

static struct flow_store *limits_store(const struct flow_run *r)
{
    struct flow_store *s = r->store;
    return s && flow__store_has_limits(s->backend) ? s : NULL;
}

static struct gate_key *key_get(struct flow__gates *g, uint8_t kind, struct flow_store *store,
                                const char *key, int limit, double window)
{
    /* Flows giving one key different limits each keep theirs: the store's
     * numbered slots are shared, a limit of 2 counting slots 0 and 1. */
    char *mk = flow__asprintf("%u|%p|%d|%.17g|%s", (unsigned)kind, (void *)store, limit, window,
                              key);
    if (!mk)
        return NULL;
    struct gate_key *k = flow__strmap_get(&g->map, mk);
    if (k) {
        flow__free(mk);
        k->refs++;
        return k;
    }
    k = flow__calloc(1, sizeof(*k));
    /* In the store, a flow's run key is apart from task keys of the same
     * text: a run holding "acme" must not hold its own task's "acme". */
    if (!k || !(k->key = flow__strdup(key)) ||
        !(k->skey = kind == GK_RUN ? flow__asprintf("flow-runs:%s", key) : flow__strdup(key)) ||
        flow__strmap_put(&g->map, mk, k) != FLOW_OK) {
        if (k) {
            flow__free(k->key);
            flow__free(k->skey);
        }
        flow__free(k);
        flow__free(mk);
        return NULL;
    }
    k->map_key = mk;
    k->store = store;
    k->kind = kind;
    k->limit = limit;
    k->window = window;
    k->backoff = POLL_MIN_NS;
    k->refs = 1;
    k->next = g->keys;
    g->keys = k;
    g->nkeys++;
    return k;
}

static bool key_idle(const struct gate_key *k)
{
    return !k->refs && !k->held && !k->waiters.count && !k->spare.count && !k->starts.count;
}

static void key_free(struct gate_key *k)
{
    flow__readyq_cleanup(&k->waiters);
    FLOW__VEC_FREE(&k->spare);
    FLOW__VEC_FREE(&k->taken);
    FLOW__VEC_FREE(&k->starts);
    flow__free(k->key);
    flow__free(k->skey);
    flow__free(k->map_key);
    flow__free(k);
}

/* Drop idle keys, so a key per run does not pile up in a long-lived
 * engine; the map is rebuilt when they are many. */
static void keys_collect(struct flow__gates *g)
{
    size_t idle = 0;
    for (struct gate_key *k = g->keys; k; k = k->next)
        idle += key_idle(k);
    if (idle < 64 || idle * 2 < g->nkeys)
        return;
    struct flow__strmap fresh;
    flow__strmap_init(&fresh);
    struct gate_key **link = &g->keys;
    bool ok = true;
    while (*link) {
        struct gate_key *k = *link;
        if (key_idle(k)) {
            *link = k->next;
            key_free(k);
            g->nkeys--;
            continue;
        }
        if (flow__strmap_put(&fresh, k->map_key, k) != FLOW_OK)
            ok = false;
        link = &k->next;
    }
    if (!ok) {
        /* Out of memory: keep the old map, whose dead entries we must now
         * forget; rebuilding it failed, so the old one stays valid only for
         * live keys: put them back. */
        flow__strmap_cleanup(&fresh);
        flow__strmap_cleanup(&g->map);
        flow__strmap_init(&g->map);
        for (struct gate_key *k = g->keys; k; k = k->next)
            (void)flow__strmap_put(&g->map, k->map_key, k);
        return;
    }
    flow__strmap_cleanup(&g->map);
    g->map = fresh;
}

/* The first activation `q` would give, left in it. */
static struct act *peek(const struct readyq *q)
{
    for (size_t i = 0; i < q->nbuckets; i++) {
        const struct readyq_bucket *b = &q->buckets[i];
        if (b->count)
            return b->ring[b->head];
    }
    return NULL;
}

/* Whether `a`'s run can take what the gate gives: not while it stops,
 * pauses or replays (its waiters are being taken out). */
static bool run_takes(const struct act *a)
{
    const struct flow_run *r = a->run;
    return !r->stopping && !r->pausing && !r->replaying;
}

/* Take the first waiter of `q` whose run can take it, in queue order;
 * NULL when none can. */
static struct act *take_waiter(struct readyq *q)
{
    for (size_t i = 0; i < q->nbuckets; i++) {
        struct readyq_bucket *b = &q->buckets[i];
        for (size_t j = 0; j < b->count; j++) {
            struct act *a = b->ring[(b->head + j) & (b->cap - 1)];
            if (!run_takes(a))
                continue;
            for (size_t m = j; m > 0; m--) /* close the gap from the front */
                b->ring[(b->head + m) & (b->cap - 1)] = b->ring[(b->head + m - 1) & (b->cap - 1)];
            b->head = (b->head + 1) & (b->cap - 1);
            b->count--;
            q->count--;
            return a;
        }
    }
    return NULL;
}

/* Ready activations that passed the gate and have not started: more would
 * hold slots other processes could use while they only wait here. */
static size_t ready_cap(const struct flow_engine *e)
{
    return (size_t)e->jobs * 2 + 8;
}

/* ---- store calls, without the engine lock -------------------------------- */

static void store_release(struct gate_key *k, const int *slots, int n)
{
    struct flow_store *s = k->store;
    if (!s || n <= 0)
        return;
    flow_error err;
    flow_err rc;
    FLOW__WITH_STORE(s, rc = s->backend->ops->slot_release(s->backend->priv, k->skey, slots, n,
                                                            s->holder, &err));
    if (rc)
        flow__log(FLOW_LOG_WARN, "cannot give back a slot of concurrency key '%s': %s (its "
                  "lease frees it)", k->key, err.message);
}

/* Slot `slot` of `k` came from the store at `at` (monotonic ns). */
static void taken_at(struct gate_key *k, int slot, int64_t at)
{
    if (slot < 0)
        return;
    if ((size_t)slot >= k->taken.count) {
        flow_err rc = FLOW_OK;
        FLOW__VEC_RESERVE(&k->taken, (size_t)slot + 1, rc);
        if (rc)
            return; /* out of memory: this slot is only ever passed on */
        while (k->taken.count <= (size_t)slot)
            k->taken.items[k->taken.count++] = at;
    }
    k->taken.items[slot] = at;
}

/* [L] Should slot `slot` of `k`, freed while this engine has waiters for
 * it, go back to the store rather than to them? Passing it on costs
 * nothing, but a process whose waiters never run out would then keep the
 * key for ever, and another process waiting for it would wait until this
 * one has nothing left to do. So once the slot has been passed on for
 * HOLD_NS, ask the store whether another holder has marked that it waits
 * (slot_acquire leaves the mark when it cannot give it all it asks for):
 * one small read, under the lock as store_release is, at most once per
 * HOLD_NS per slot. Nobody: pass it on for another HOLD_NS. Somebody:
 * give it back, and let this key's next try here wait YIELD_NS, longer
 * than the other's poll (POLL_MAX_NS), so that it gets the slot rather
 * than we take it again. */
static bool slot_yield(struct gate_key *k, int slot)
{
    struct flow_store *s = k->store;
    if (!s || !s->backend->ops->slot_contended || slot < 0 || (size_t)slot >= k->taken.count)
        return false;
    int64_t now = flow__now_ns();
    if (now - k->taken.items[slot] <= HOLD_NS)
        return false;
    bool contended = false;
    flow_error err;
    flow_err rc;
    FLOW__WITH_STORE(s, rc = s->backend->ops->slot_contended(s->backend->priv, k->skey, s->holder,
                                                              flow__wall_time(), &contended,
                                                              &err));
    if (rc) {
        flow__log(FLOW_LOG_WARN, "concurrency key '%s': %s (kept here)", k->key, err.message);
        contended = false;
    }
    if (!contended) {
        k->taken.items[slot] = now;
        return false;
    }
    k->next_try = now + YIELD_NS;
    k->backoff = POLL_MIN_NS;
    return true;
}

/* ---- stages ---------------------------------------------------------------- */

static const flow_resources *need_of(const struct act *a)
{
    const struct flow_task *t = act_task(a);
    if (!t->ext || !t->ext->resources || t->policy->executor == FLOW_EXEC_REMOTE)
        return NULL;
    return t->ext->resources;
}

static bool res_fit(const struct flow_engine *e, const flow_resources *n)
{
    const struct flow__gates *g = e->gates;
    flow_resources free = {e->capacity.cpu - g->used.cpu, e->capacity.memory - g->used.memory,
                           e->capacity.gpu - g->used.gpu};
    char buf[64];
    return !flow__resources_misfit(n, &free, buf, sizeof(buf));
}

static void res_add(struct flow__gates *g, const flow_resources *n, double sign)
{
    g->used.cpu += sign * n->cpu;
    g->used.memory += sign * n->memory;
    g->used.gpu += sign * n->gpu;
}

/* The activation's keys for this round, rendered; false when one cannot be
 * (g->failed gets it). */
static bool render_keys(struct flow_engine *e, struct act *a, struct act_gate *ag)
{
    struct flow_run *r = a->run;
    const struct flow_task *t = act_task(a);
    struct flow__limit *lims[2] = {t->ext ? t->ext->concurrency_limit : NULL,
                                   t->ext ? t->ext->rate_limit : NULL};
    struct gate_key **slots[2] = {&ag->slot_key, &ag->rate_key};
    for (int i = 0; i < 2; i++) {
        struct flow__limit *l = lims[i];
        if (!l || *slots[i])
            continue;
        char *key = NULL;
        flow_error err;
        if (l->key && flow__run_render_string(r, a, l->key, &key, &err) != FLOW_OK) {
            ag->failed = flow__asprintf("the %s key of task '%s': %s",
                                        i ? "rate_limit" : "concurrency", t->name, err.message);
            return false;
        }
        *slots[i] = key_get(e->gates, i ? GK_RATE : GK_SLOT, limits_store(r),
                            key ? key : l->fixed, l->limit, l->window);
        flow__free(key);
        if (!*slots[i]) {
            ag->failed = flow__strdup("out of memory");
            return false;
        }
    }
    return true;
}

static struct act_gate *gate_of(struct flow_run *r, struct act *a)
{
    struct act_dyn *d = flow__act_dyn(r, a);
    if (!d)
        return NULL;
    if (!d->gate) {
        d->gate = flow__calloc(1, sizeof(*d->gate));
        if (d->gate)
            d->gate->slot = -1;
    }
    return d->gate;
}

static bool run_key_ready(struct flow_engine *e, struct flow_run *r, char **why)
{
    if (r->run_key)
        return true;
    const struct flow__limit *l = r->flow->run_limit;
    char *key = NULL;
    flow_error err;
    if (l->key && flow__run_render_string(r, NULL, l->key, &key, &err) != FLOW_OK) {
        *why = flow__asprintf("the concurrency key of flow '%s': %s", r->flow->name,
                              err.message);
        return false;
    }
    r->run_key = key_get(e->gates, GK_RUN, limits_store(r), key ? key : l->fixed, l->limit, 0);
    flow__free(key);
    if (!r->run_key)
        *why = flow__strdup("out of memory");
    return r->run_key != NULL;
}

static void wait_in(struct flow__gates *g, struct readyq *q, size_t *untold, struct act *a,
                    struct act_gate *ag)
{
    if (!flow__readyq_push(q, a, act_task(a)->policy->priority)) {
        flow__run_stop(a->run, FLOW_RUN_FAILED, "out of memory queueing a task");
        flow__run_cancel_act(a->run, a, "out of memory");
        return;
    }
    ag->waiting_here = true;
    (*untold)++;
    g->waiting++;
    g->kick = true;
    pthread_cond_signal(&g->cond);
}

static size_t room(const struct flow_engine *e);

/* Take `a` to its next stage that holds it, or through. */
static void advance(struct flow_engine *e, struct act *a)
{
    struct flow__gates *g = e->gates;
    struct flow_run *r = a->run;
    struct act_gate *ag = a->dyn->gate;
    if (ag->run_only && ag->stage > ST_RUN)
        ag->stage = ST_PASSED;
    if (ag->stage == ST_RUN) {
        if (r->flow->run_limit && !r->run_admitted) {
            char *why = NULL;
            if (!run_key_ready(e, r, &why)) {
                ag->failed = why;
                goto fail;
            }
            wait_in(g, &r->run_key->waiters, &r->run_key->untold, a, ag);
            return;
        }
        ag->stage = ag->run_only ? ST_PASSED : ST_RES;
    }
    if (ag->stage == ST_RES) {
        const flow_resources *n = need_of(a);
        if (n && !ag->res_held) {
            if (g->res_q.count || !res_fit(e, n)) {
                wait_in(g, &g->res_q, &g->res_untold, a, ag);
                return;
            }
            res_add(g, n, 1);
            ag->res_held = true;
        }
        ag->stage = ST_SLOT;
    }
    if (ag->stage == ST_SLOT) {
        if (!render_keys(e, a, ag))
            goto fail;
        struct gate_key *sk = ag->slot_key;
        if (sk && ag->slot < 0 && sk->spare.count && !sk->waiters.count && room(e)) {
            ag->slot = sk->spare.items[--sk->spare.count]; /* kept for it (slot_free) */
        }
        if (sk && ag->slot < 0) {
            wait_in(g, &sk->waiters, &sk->untold, a, ag);
            return;
        }
        ag->stage = ST_RATE;
    }
    if (ag->stage == ST_RATE) {
        if (ag->rate_key) {
            wait_in(g, &ag->rate_key->waiters, &ag->rate_key->untold, a, ag); /* pass() moves it on */
            return;
        }
        ag->stage = ST_PASSED;
    }
    ag->passed = true;
    ag->queued = true;
    g->ready++;
    a->flags &= (uint8_t)~ACT_QUEUED;
    flow__engine_enqueue(e, a);
    if (!(a->flags & ACT_QUEUED) && a->status == FLOW_ACT_PENDING)
        flow__gate_release(e, a); /* not queued (its run pauses): give it all back */
    return;
fail:
    a->flags |= ACT_QUEUED;
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&g->failed, a, rc);
    if (rc) {
        flow__run_stop(r, FLOW_RUN_FAILED, "out of memory queueing a task");
        flow__run_cancel_act(r, a, "out of memory");
        return;
    }
    g->kick = true;
    pthread_cond_signal(&g->cond);
}

bool flow__gate_passed(const struct act *a)
{
    return a->dyn && a->dyn->gate && a->dyn->gate->passed;
}

bool flow__gate_needed(const struct flow_run *r, const struct act *a, bool expander)
{
    if (flow__gate_passed(a))
        return false;
    if (r->flow->run_limit && !r->run_admitted)
        return true;
    return !expander && flow__task_limited(act_task(a));
}

static void *gate_main(void *arg);

void flow__gate_enter(struct flow_engine *e, struct act *a, bool expander)
{
    struct flow_run *r = a->run;
    struct flow__gates *g = gates_of(e);
    struct act_gate *ag = g ? gate_of(r, a) : NULL;
    if (!ag) {
        flow__run_stop(r, FLOW_RUN_FAILED, "out of memory queueing a task");
        flow__run_cancel_act(r, a, "out of memory");
        return;
    }
    if (!g->started) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int rc = pthread_create(&g->thread, NULL, gate_main, e);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc) {
            flow__run_stop(r, FLOW_RUN_FAILED, "cannot start the limits thread");
            flow__run_cancel_act(r, a, "cannot start the limits thread");
            return;
        }
        g->started = true;
    }
    ag->told = false;
    ag->run_only = expander;
    a->flags |= ACT_QUEUED;
    advance(e, a);
}

void flow__gate_started(struct flow_engine *e, struct act *a)
{
    struct act_gate *ag = a->dyn ? a->dyn->gate : NULL;
    if (!ag || !ag->queued)
        return;
    ag->queued = false;
    struct flow__gates *g = e->gates;
    if (g->ready-- == ready_cap(e) || (g->want_job && g->ready == 0)) {
        g->want_job = false;
        g->kick = true;
        pthread_cond_signal(&g->cond);
    }
}

/* A slot of `k` is free for the next waiter here, or for the store. */
static void grant(struct flow_engine *e, struct gate_key *k, struct act *a, int slot);

static void slot_free(struct flow_engine *e, struct gate_key *k, int slot)
{
    struct flow__gates *g = e->gates;
    if (k->waiters.count && slot_yield(k, slot)) {
        if (k->held > 0)
            k->held--;
        store_release(k, &slot, 1);
        g->kick = true; /* the thread's wait now ends at k->next_try */
        pthread_cond_signal(&g->cond);
        return;
    }
    struct act *next = k->waiters.count && room(e) ? take_waiter(&k->waiters) : NULL;
    if (next) {
        /* Straight to the next waiter: no store call, no thread hop. */
        grant(e, k, next, slot);
        return;
    }
    if (k->waiters.count || k->store) {
        /* Kept a moment even with nobody waiting: the next task of a chain
         * comes for it within microseconds, and would pay two store
         * transactions and a thread hop for a slot given back and taken
         * again. The thread gives it back after LINGER_NS. */
        flow_err rc = FLOW_OK;
        FLOW__VEC_PUSH(&k->spare, slot, rc);
        if (!rc) {
            k->spare_at = flow__now_ns();
            g->kick = true;
            pthread_cond_signal(&g->cond);
            return;
        }
    }
    if (k->held > 0)
        k->held--;
    store_release(k, &slot, 1);
    if (k->waiters.count) {
        g->kick = true;
        pthread_cond_signal(&g->cond);
    }
}

static void key_unref(struct gate_key **k)
{
    if (*k && (*k)->refs > 0)
        (*k)->refs--;
    *k = NULL;
}

void flow__gate_release(struct flow_engine *e, struct act *a)
{
    struct act_gate *ag = a->dyn ? a->dyn->gate : NULL;
    if (!ag)
        return;
    struct flow__gates *g = e->gates;
    flow__gate_started(e, a);
    if (ag->slot >= 0) {
        slot_free(e, ag->slot_key, ag->slot);
        ag->slot = -1;
    }
    if (ag->res_held) {
        res_add(g, act_task(a)->ext->resources, -1);
        ag->res_held = false;
        if (g->res_q.count) {
            g->kick = true;
            pthread_cond_signal(&g->cond);
        }
    }
    key_unref(&ag->slot_key);
    key_unref(&ag->rate_key);
    ag->stage = ST_RUN;
    ag->passed = false;
    flow__free(ag->failed);
    ag->failed = NULL;
}

struct drop_arg {
    struct flow_engine *e;
    bool cancel;
};

static void drop_one(struct act *a, void *arg)
{
    struct drop_arg *d = arg;
    a->dyn->gate->waiting_here = false;
    d->e->gates->waiting--;
    flow__gate_release(d->e, a);
    if (d->cancel)
        flow__run_cancel_act(a->run, a, "the run stopped before it started");
}

void flow__gate_drop_run(struct flow_engine *e, struct flow_run *r, bool cancel)
{
    struct flow__gates *g = e->gates;
    if (!g)
        return;
    struct drop_arg d = {e, cancel};
    for (struct gate_key *k = g->keys; k; k = k->next)
        flow__readyq_drop_run(&k->waiters, r, drop_one, &d);
    flow__readyq_drop_run(&g->res_q, r, drop_one, &d);
    size_t kept = 0, n = g->failed.count;
    struct act **dropped = flow__calloc(n ? n : 1, sizeof(*dropped));
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        struct act *a = g->failed.items[i];
        if (a->run == r && dropped)
            dropped[nd++] = a;
        else
            g->failed.items[kept++] = a;
    }
    g->failed.count = kept;
    for (size_t i = 0; i < nd; i++) {
        struct act *a = dropped[i];
        a->flags &= (uint8_t)~ACT_QUEUED;
        flow__gate_release(e, a);
        if (cancel)
            flow__run_cancel_act(r, a, "the run stopped before it started");
    }
    flow__free(dropped);
}

void flow__gate_forget_run(struct flow_engine *e, struct flow_run *r)
{
    struct flow__gates *g = e->gates;
    if (!g)
        return;
    if (r->run_key) {
        if (r->run_slot >= 0)
            slot_free(e, r->run_key, r->run_slot);
        r->run_slot = -1;
        r->run_admitted = false;
        key_unref(&r->run_key);
    }
    /* Slots passed back here with nobody left to take them go back to the
     * store now: the caller may close it once its runs are over. */
    for (struct gate_key *k = g->keys; k; k = k->next) {
        if (k->store != r->store || !k->spare.count || k->waiters.count)
            continue;
        store_release(k, k->spare.items, (int)k->spare.count);
        k->held = k->held > (int)k->spare.count ? k->held - (int)k->spare.count : 0;
        k->spare.count = 0;
    }
    /* The caller may close the store once the run is over: not while the
     * thread is in it. */
    while (g->calling && g->calling == r->store)
        pthread_cond_wait(&g->idle, &e->lock);
}

void flow__gate_free(struct act_gate *ag)
{
    if (!ag)
        return;
    flow__free(ag->failed);
    flow__free(ag);
}

void flow__gate_kick(struct flow_engine *e)
{
    struct flow__gates *g = e->gates;
    if (g && g->want_job) {
        /* Only then: every attempt that ends comes here, and waking the
         * thread for each would cost a context switch a task. */
        g->want_job = false;
        g->kick = true;
        pthread_cond_signal(&g->cond);
    }
}

size_t flow__gate_waiting(const struct flow_engine *e)
{
    return e->gates ? e->gates->waiting : 0;
}

/* ---- the thread ------------------------------------------------------------ */

/* Tell once per round that `a` waits, and why. */
static void tell(struct flow_run *r, struct act *a, const char *why)
{
    struct act_gate *ag = a->dyn->gate;
    if (ag->told)
        return;
    ag->told = true;
    if (flow__run_journaling(r))
        flow__run_journal(r, JREC_ACT_HELD, a, json_pack("{s:s}", "reason", why));
    flow__run_notify(r, FLOW_EV_TASK_WAITING, a, why, 0);
}

static void tell_all(struct gate_key *k, const char *why)
{
    if (!k->untold)
        return; /* each was told already: no walk over thousands of waiters */
    k->untold = 0;
    struct readyq *q = &k->waiters;
    for (size_t i = 0; i < q->nbuckets; i++) {
        struct readyq_bucket *b = &q->buckets[i];
        for (size_t j = 0; j < b->count; j++) {
            struct act *a = b->ring[(b->head + j) & (b->cap - 1)];
            tell(a->run, a, why);
        }
    }
}

static void reason(const struct gate_key *k, char *buf, size_t size)
{
    if (k->kind == GK_RATE) {
        snprintf(buf, size, "rate limit '%.200s': %d per %gs", k->key, k->limit, k->window);
    } else if (k->kind == GK_RUN) {
        snprintf(buf, size, "concurrency key '%.200s': %d run%s at once, all held", k->key,
                 k->limit, k->limit == 1 ? "" : "s");
    } else {
        snprintf(buf, size, "concurrency key '%.200s': %d at once, all held", k->key, k->limit);
    }
}

/* How many more may pass now without piling up in the ready queues. */
static size_t room(const struct flow_engine *e)
{
    size_t cap = ready_cap(e);
    return e->gates->ready >= cap ? 0 : cap - e->gates->ready;
}

/* `a` passed the stage it waited in. */
static void pass(struct flow_engine *e, struct act *a)
{
    struct act_gate *ag = a->dyn->gate;
    ag->waiting_here = false;
    e->gates->waiting--;
    ag->stage++;
    ag->told = false; /* a wait at the next stage is told for its own reason */
    advance(e, a);
}


/* A slot of run key `k` goes to `a`'s run: every activation of that run
 * waiting for it goes on. */
static void run_granted(struct flow_engine *e, struct gate_key *k, struct act *a, int slot)
{
    struct flow_run *r = a->run;
    r->run_slot = slot;
    r->run_admitted = true;
    FLOW__VEC(struct act *) same = {0};
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&same, a, rc);
    struct readyq *q = &k->waiters;
    for (size_t i = 0; i < q->nbuckets; i++) {
        struct readyq_bucket *b = &q->buckets[i];
        for (size_t j = 0; j < b->count; j++) {
            struct act *o = b->ring[(b->head + j) & (b->cap - 1)];
            if (o->run == r && !rc)
                FLOW__VEC_PUSH(&same, o, rc);
        }
    }
    if (same.count > 1)
        flow__readyq_drop_run(q, r, NULL, NULL);
    for (size_t i = 0; i < same.count; i++)
        pass(e, same.items[i]);
    FLOW__VEC_FREE(&same);
}

static void grant(struct flow_engine *e, struct gate_key *k, struct act *a, int slot)
{
    if (k->kind == GK_RUN) {
        run_granted(e, k, a, slot);
        return;
    }
    a->dyn->gate->slot = slot;
    pass(e, a);
}

static size_t start_room(const struct flow_engine *e, const struct act *head);

/* [L] Let go of the engine lock for a call into `k`'s store: `k` stays
 * (its refs), and a run that ends waits before its store may be closed
 * (g->calling, flow__gate_forget_run). */
static void call_begin(struct flow_engine *e, struct gate_key *k)
{
    e->gates->calling = k->store;
    k->refs++;
    pthread_mutex_unlock(&e->lock);
}

/* ... and take it again. */
static void call_end(struct flow_engine *e, struct gate_key *k)
{
    pthread_mutex_lock(&e->lock);
    k->refs--;
    e->gates->calling = NULL;
    pthread_cond_broadcast(&e->gates->idle);
    flow__engine_tick(e);
}

/* [L] Slots of `k` for its waiters: spare ones first, then the store's. */
static void serve_slots(struct flow_engine *e, struct gate_key *k, int64_t now)
{
    struct flow__gates *g = e->gates;
    struct act *w;
    while (k->spare.count && k->waiters.count && room(e) && (w = take_waiter(&k->waiters)))
        grant(e, k, w, k->spare.items[--k->spare.count]);
    if (k->spare.count && !k->waiters.count && (!k->store || now - k->spare_at >= LINGER_NS)) {
        store_release(k, k->spare.items, (int)k->spare.count);
        k->held -= (int)k->spare.count;
        if (k->held < 0)
            k->held = 0;
        k->spare.count = 0;
    }
    if (!k->waiters.count || !room(e))
        return;
    char why[320];
    if (k->held >= k->limit) {
        reason(k, why, sizeof(why));
        tell_all(k, why); /* a release here wakes them */
        return;
    }
    if (!k->store) {
        while (k->waiters.count && k->held < k->limit && room(e) &&
               (w = take_waiter(&k->waiters))) {
            k->held++;
            grant(e, k, w, k->held - 1);
        }
        if (k->waiters.count && k->held >= k->limit) {
            reason(k, why, sizeof(why));
            tell_all(k, why);
        }
        return;
    }
    if (now < k->next_try)
        return;
    size_t want = k->waiters.count;
    size_t free_here = (size_t)(k->limit - k->held);
    size_t r = start_room(e, peek(&k->waiters));
    want = want < free_here ? want : free_here;
    want = want < r ? want : r;
    want = want < GRANT_BATCH ? want : GRANT_BATCH;
    if (!want) {
        g->want_job |= r == 0; /* a job that ends looks again */
        return;
    }
    char owner[80];
    snprintf(owner, sizeof(owner), "%s", peek(&k->waiters)->run->id);
    int slots[GRANT_BATCH];
    int got = 0;
    struct flow_store *s = k->store;
    double wall = flow__wall_time();
    call_begin(e, k);
    flow_error err;
    flow_err rc;
    FLOW__WITH_STORE(s, rc = s->backend->ops->slot_acquire(
                            s->backend->priv, k->skey, k->limit, (int)want, s->holder, owner, wall,
                            FLOW__LEASE_TTL, slots, &got, &err));
    call_end(e, k);
    if (rc) {
        flow__log(FLOW_LOG_WARN, "concurrency key '%s': %s (trying again)", k->key, err.message);
        got = 0;
    }
    k->held += got;
    int64_t at = flow__now_ns();
    for (int j = 0; j < got; j++)
        taken_at(k, slots[j], at);
    int i = 0;
    for (; i < got && k->waiters.count && (w = take_waiter(&k->waiters)); i++)
        grant(e, k, w, slots[i]);
    for (; i < got; i++) {
        flow_err prc = FLOW_OK;
        FLOW__VEC_PUSH(&k->spare, slots[i], prc);
        if (prc) {
            k->held--;
            store_release(k, &slots[i], 1);
        }
    }
    if ((size_t)got < want) {
        /* Held by other processes: look again soon, then less often. */
        k->next_try = now + k->backoff;
        k->backoff = k->backoff * 2 > POLL_MAX_NS ? POLL_MAX_NS : k->backoff * 2;
        reason(k, why, sizeof(why));
        tell_all(k, why);
    } else {
        k->backoff = POLL_MIN_NS;
        if (k->waiters.count && k->held >= k->limit) {
            reason(k, why, sizeof(why));
            tell_all(k, why);
        }
    }
}

/* [L] Tokens of rate key `k` for its waiters. */
/* How many may take a store slot or a rate token now: a task that runs here
 * takes one only when a --jobs slot is free for it. A token stands for a
 * start (waiting in the ready queue, it could start with later ones, more
 * than the limit in one window); a slot others wait for is not held while
 * its task only waits for a thread. */
static size_t start_room(const struct flow_engine *e, const struct act *head)
{
    size_t r = room(e);
    if (act_task(head)->policy->executor == FLOW_EXEC_REMOTE)
        return r;
    long free = (long)e->jobs - (long)e->running - (long)e->gates->ready;
    return free <= 0 ? 0 : (size_t)free < r ? (size_t)free : r;
}

static void serve_rate(struct flow_engine *e, struct gate_key *k, int64_t now)
{
    struct flow__gates *g = e->gates;
    if (!k->waiters.count || now < k->next_try)
        return;
    /* A token per free job puts a store transaction between every end and
     * the next start; a high limit may take a few ahead: at most 1 % of
     * it, the most a window can then see over the limit. */
    size_t ahead = (size_t)k->limit / 100;
    ahead = ahead < GRANT_BATCH ? ahead : GRANT_BATCH;
    size_t r = start_room(e, peek(&k->waiters)) + ahead;
    r = r < room(e) ? r : room(e);
    if (!r) {
        g->want_job = true; /* a job that ends looks again (flow__gate_kick) */
        return;
    }
    size_t want = k->waiters.count;
    want = want < r ? want : r;
    want = want < GRANT_BATCH ? want : GRANT_BATCH;
    int got = 0;
    double wall = flow__wall_time();
    double retry_at = 0;
    if (!k->store) {
        size_t keep = 0;
        for (size_t i = 0; i < k->starts.count; i++)
            if (k->starts.items[i] > wall - k->window)
                k->starts.items[keep++] = k->starts.items[i];
        k->starts.count = keep;
        while ((size_t)got < want && k->starts.count < (size_t)k->limit) {
            flow_err rc = FLOW_OK;
            FLOW__VEC_PUSH(&k->starts, wall, rc);
            if (rc)
                break;
            got++;
        }
        if ((size_t)got < want && k->starts.count)
            retry_at = k->starts.items[0] + k->window;
    } else {
        struct flow_store *s = k->store;
        call_begin(e, k);
        flow_error err;
        flow_err rc;
        FLOW__WITH_STORE(s, rc = s->backend->ops->rate_take(s->backend->priv, k->skey, k->limit,
                                                             k->window, (int)want, wall, &got,
                                                             &retry_at, &err));
        call_end(e, k);
        if (rc) {
            flow__log(FLOW_LOG_WARN, "rate limit '%s': %s (trying again)", k->key, err.message);
            got = 0;
            retry_at = wall + 1;
        }
    }
    /* Tokens taken for waiters that left meanwhile are spent: the window
     * counts them, which errs on the safe side. */
    struct act *w;
    for (int i = 0; i < got && k->waiters.count && (w = take_waiter(&k->waiters)); i++)
        pass(e, w);
    if ((size_t)got < want) {
        double delay = retry_at > wall ? retry_at - wall : 0.001;
        k->next_try = now + flow__delay_ns(delay);
        char why[320];
        reason(k, why, sizeof(why));
        tell_all(k, why);
    } else {
        k->next_try = 0;
        /* Those left wait for room: the next job that ends (or start that
         * frees room) looks again. */
        if (k->waiters.count)
            g->want_job = true;
    }
}

/* [L] Activations waiting for resources, in priority order: the first that
 * does not fit holds the others back, so a big task is not starved by
 * small ones. */
static void serve_resources(struct flow_engine *e)
{
    struct flow__gates *g = e->gates;
    while (g->res_q.count && room(e)) {
        struct act *a = peek(&g->res_q);
        const flow_resources *n = need_of(a);
        if (n && !res_fit(e, n)) {
            char need[64], why[160];
            flow_resources free = {e->capacity.cpu - g->used.cpu,
                                   e->capacity.memory - g->used.memory,
                                   e->capacity.gpu - g->used.gpu};
            flow__resources_misfit(n, &free, need, sizeof(need));
            snprintf(why, sizeof(why), "resources: needs %s, not free yet", need);
            if (!g->res_untold)
                return;
            g->res_untold = 0;
            for (size_t i = 0; i < g->res_q.nbuckets; i++) {
                struct readyq_bucket *b = &g->res_q.buckets[i];
                for (size_t j = 0; j < b->count; j++) {
                    struct act *w = b->ring[(b->head + j) & (b->cap - 1)];
                    tell(w->run, w, why);
                }
            }
            return;
        }
        flow__readyq_pop(&g->res_q);
        if (n) {
            res_add(g, n, 1);
            a->dyn->gate->res_held = true;
        }
        pass(e, a);
    }
}

/* [L] Attempts whose key could not be rendered fail, as a start that failed. */
static void apply_failed(struct flow_engine *e)
{
    struct flow__gates *g = e->gates;
    while (g->failed.count) {
        struct act *a = g->failed.items[--g->failed.count];
        struct flow_run *r = a->run;
        struct act_gate *ag = a->dyn->gate;
        char *why = ag->failed;
        ag->failed = NULL;
        a->flags &= (uint8_t)~ACT_QUEUED;
        flow__gate_release(e, a);
        if (r->stopping || r->pausing || a->status != FLOW_ACT_PENDING) {
            flow__free(why);
            continue;
        }
        flow__run_attempt_started(r, a);
        if (r->running > 0)
            r->running--;
        flow__engine_release_slot(e, r);
        flow__attempt_failed(r, a, why);
    }
}

static void renew(struct flow_engine *e)
{
    /* Every store this engine holds slots of, once each. */
    struct flow__gates *g = e->gates;
    double wall = flow__wall_time();
    for (struct gate_key *k = g->keys; k; k = k->next) {
        if (!k->store || !k->held)
            continue;
        bool seen = false;
        for (struct gate_key *o = g->keys; o != k; o = o->next)
            seen |= o->store == k->store && o->held > 0;
        if (seen)
            continue;
        struct flow_store *s = k->store;
        flow_error err;
        flow_err rc;
        /* Under the engine lock: the store may be closed once its runs end. */
        FLOW__WITH_STORE(s, rc = s->backend->ops->slot_renew(s->backend->priv, s->holder, wall,
                                                              FLOW__LEASE_TTL, &err));
        if (rc)
            flow__log(FLOW_LOG_WARN, "cannot renew the slots held in store '%s': %s",
                      flow_store_url(s), err.message);
    }
}

static void *gate_main(void *arg)
{
    struct flow_engine *e = arg;
    struct flow__gates *g = e->gates;
    pthread_mutex_lock(&e->lock);
    g->renew_at = flow__now_ns() + RENEW_NS;
    while (!g->stop) {
        flow__engine_tick(e);
        g->kick = false;
        apply_failed(e);
        int64_t now = flow__now_ns();
        if (now >= g->renew_at) {
            renew(e);
            g->renew_at = now + RENEW_NS;
        }
        int64_t next = g->renew_at;
        for (struct gate_key *k = g->keys; k && !g->stop; k = k->next) {
            if (k->kind == GK_RATE)
                serve_rate(e, k, now);
            else
                serve_slots(e, k, now);
            if (k->waiters.count && k->next_try > now && k->next_try < next &&
                (k->kind == GK_RATE || k->held < k->limit))
                next = k->next_try;
            if (k->spare.count && !k->waiters.count && k->spare_at + LINGER_NS < next)
                next = k->spare_at + LINGER_NS; /* give back what lingers */
        }
        serve_resources(e);
        keys_collect(g);
        if (g->waiting && next > now + SAFETY_NS)
            next = now + SAFETY_NS; /* a wake-up missed costs this much at most */
        if (g->kick || g->failed.count)
            continue;
        if (e->obs_runs.count)
            flow__engine_wake(e); /* the loop delivers what we told */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t wait = next - flow__now_ns();
        if (wait < 1000000)
            wait = 1000000;
        int64_t at = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec + wait;
        ts.tv_sec = (time_t)(at / 1000000000LL);
        ts.tv_nsec = (long)(at % 1000000000LL);
        pthread_cond_timedwait(&g->cond, &e->lock, &ts);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

void flow__gate_stop(struct flow_engine *e)
{
    pthread_mutex_lock(&e->lock);
    struct flow__gates *g = e->gates;
    if (!g) {
        pthread_mutex_unlock(&e->lock);
        return;
    }
    g->stop = true;
    pthread_cond_signal(&g->cond);
    bool started = g->started;
    pthread_mutex_unlock(&e->lock);
    if (started)
        pthread_join(g->thread, NULL);
    pthread_mutex_lock(&e->lock);
    while (g->keys) {
        struct gate_key *k = g->keys;
        g->keys = k->next;
        if (k->held && k->store) {
            /* Runs should have ended before the engine: what is left is
             * spare (or its lease frees it). */
            store_release(k, k->spare.items, (int)k->spare.count);
        }
        key_free(k);
    }
    flow__strmap_cleanup(&g->map);
    flow__readyq_cleanup(&g->res_q);
    FLOW__VEC_FREE(&g->failed);
    e->gates = NULL;
    pthread_mutex_unlock(&e->lock);
    pthread_cond_destroy(&g->cond);
    pthread_cond_destroy(&g->idle);
    flow__free(g);
}
