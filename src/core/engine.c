/* engine.c -- threads, ready queues and timers: the pool that runs C task
 * bodies and the loop thread that polls children, fires timers, runs inline
 * tasks and delivers observer events.
 *
 * DESIGN (docs/internals/core.md): the scheduler is engine->lock. A pool
 * thread that finishes a body applies its completion and pops its next task
 * in one critical section, so chains run without handoffs; it wakes an idle
 * thread only when more work is ready than it can take itself. The loop
 * thread sleeps in poll() on an eventfd, children's pidfds and pipes, with
 * the nearest timer as the timeout.
 *
 * Lock order: engine->lock, then nothing.
 */
#include "util/compat.h"

#include "core/engine.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/cache.h"
#include "core/gate.h"
#include "exec/tree.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"
#include "util/redis.h"

/* True on a pool thread while it holds the lock between bodies: it will pop
 * its next task itself, so what it queues needs no wake-up. (Not while a
 * body runs: flow_ctx_emit from a body must wake an idle thread.) */
static _Thread_local bool in_pool_thread;

/* ---- ready queues -------------------------------------------------------- */

static struct readyq_bucket *bucket_for(struct readyq *q, int priority)
{
    size_t i = 0;
    while (i < q->nbuckets && q->buckets[i].priority > priority)
        i++;
    if (i < q->nbuckets && q->buckets[i].priority == priority)
        return &q->buckets[i];
    struct readyq_bucket *b = flow__reallocarray(q->buckets, q->nbuckets + 1, sizeof(*b));
    if (!b)
        return NULL;
    q->buckets = b;
    memmove(&b[i + 1], &b[i], (q->nbuckets - i) * sizeof(*b));
    q->nbuckets++;
    memset(&b[i], 0, sizeof(b[i]));
    b[i].priority = priority;
    return &b[i];
}

bool flow__readyq_push(struct readyq *q, struct act *a, int priority)
{
    struct readyq_bucket *b = bucket_for(q, priority);
    if (!b)
        return false;
    if (b->count == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct act **ring = flow__reallocarray(NULL, cap, sizeof(*ring));
        if (!ring)
            return false;
        for (size_t i = 0; i < b->count; i++)
            ring[i] = b->ring[(b->head + i) & (b->cap - 1)];
        flow__free(b->ring);
        b->ring = ring;
        b->head = 0;
        b->cap = cap;
    }
    b->ring[(b->head + b->count) & (b->cap - 1)] = a; /* cap is a power of two */
    b->count++;
    q->count++;
    return true;
}

struct act *flow__readyq_pop(struct readyq *q)
{
    if (!q->count)
        return NULL;
    for (size_t i = 0; i < q->nbuckets; i++) {
        struct readyq_bucket *b = &q->buckets[i];
        if (!b->count)
            continue;
        struct act *a = b->ring[b->head];
        b->head = (b->head + 1) & (b->cap - 1);
        b->count--;
        q->count--;
        return a;
    }
    return NULL;
}

void flow__readyq_drop_run(struct readyq *q, struct flow_run *r,
                           void (*each)(struct act *a, void *arg), void *arg)
{
    /* Take them all out first, then call `each`: what it does (a freed slot
     * handed on, a cancel) may push into this very queue. */
    FLOW__VEC(struct act *) out = {0};
    bool nomem = false;
    for (size_t i = 0; i < q->nbuckets; i++) {
        struct readyq_bucket *b = &q->buckets[i];
        size_t kept = 0;
        size_t n = b->count;
        for (size_t k = 0; k < n; k++) {
            struct act *a = b->ring[(b->head + k) & (b->cap - 1)];
            flow_err rc = FLOW_OK;
            if (a->run == r && each)
                FLOW__VEC_PUSH(&out, a, rc);
            if (a->run == r && !rc) {
                a->flags &= (uint8_t)~ACT_QUEUED;
                q->count--;
            } else {
                nomem |= rc != FLOW_OK;
                b->ring[(b->head + kept) & (b->cap - 1)] = a;
                kept++;
            }
        }
        b->count = kept;
    }
    if (nomem)
        flow__log(FLOW_LOG_WARN, "out of memory taking run %s out of a queue", r->id);
    for (size_t i = 0; i < out.count; i++)
        each(out.items[i], arg);
    FLOW__VEC_FREE(&out);
}

void flow__readyq_cleanup(struct readyq *q)
{
    for (size_t i = 0; i < q->nbuckets; i++)
        flow__free(q->buckets[i].ring);
    flow__free(q->buckets);
    memset(q, 0, sizeof(*q));
}

/* A foreach parent or a nested flow runs no body of its own: the loop thread
 * expands it (flow__run_expand). */
static bool is_expander(const struct act *a)
{
    const struct flow_task *t = act_task(a);
    if (t->kind == TASK_SUBFLOW)
        return true;
    return t->ext && t->ext->foreach && !(a->dyn && a->dyn->parent);
}

static bool runs_remote(const struct act *a)
{
    const struct flow_task *t = act_task(a);
    return t->policy->executor == FLOW_EXEC_REMOTE && !is_expander(a) &&
           (t->kind == TASK_COMMAND || t->kind == TASK_SHELL || t->kind == TASK_FN);
}

struct act *flow__engine_remote_pop(struct flow_engine *e)
{
    struct act *a = flow__readyq_pop(&e->remote_q);
    if (a)
        a->flags &= (uint8_t)~ACT_QUEUED;
    return a;
}

/* A body that waits on the network: an http or llm task. */
static bool is_net(const struct flow_task *t)
{
    return t->kind == TASK_HTTP || t->kind == TASK_LLM;
}

static bool runs_on_pool(const struct act *a)
{
    const struct flow_task *t = act_task(a);
    flow_executor ex = t->policy->executor;
    if ((t->kind != TASK_FN && !is_net(t)) || is_expander(a))
        return false;
    return ex == FLOW_EXEC_DEFAULT || ex == FLOW_EXEC_THREAD || ex == FLOW_EXEC_PROCESS;
}

void flow__engine_enqueue(struct flow_engine *e, struct act *a)
{
    const struct flow_task *t = act_task(a);
    struct flow_run *r = a->run;
    if (r->replaying || r->pausing)
        return; /* stays pending: resume queues it */
    bool maybe = flow__gate_maybe(r, a);
    if (maybe && flow__cache_wanted(a)) {
        /* Before the limits: a hit takes no slot. Back here with the key
         * rendered (flow__cache_wanted is then false) unless it hit. */
        flow__cache_lookup(e, a);
        return;
    }
    bool passed = maybe && flow__gate_passed(a);
    if (r->max_running && !is_expander(a) && !passed) {
        /* A sequential run: one activation at a time; the rest wait here
         * until flow__engine_release_slot. */
        if (r->slots >= r->max_running) {
            flow_err rc = FLOW_OK;
            FLOW__VEC_PUSH(&r->held, a, rc);
            if (rc) {
                flow__run_stop(r, FLOW_RUN_FAILED, "out of memory queueing a task");
                flow__run_cancel_act(r, a, "out of memory");
            } else {
                a->flags |= ACT_QUEUED;
            }
            return;
        }
        r->slots++;
    }
    if (maybe && !passed && flow__gate_needed(r, a, is_expander(a))) {
        flow__gate_enter(e, a, is_expander(a)); /* back here once its limits let it */
        return;
    }
    bool remote = runs_remote(a);
    bool pool = !remote && runs_on_pool(a);
    bool spawn = !is_expander(a) && (t->kind == TASK_COMMAND || t->kind == TASK_SHELL);
    struct readyq *q = remote ? &e->remote_q : pool ? &e->pool_q : spawn ? &e->spawn_q : &e->loop_q;
    a->flags |= ACT_QUEUED;
    if (!flow__readyq_push(q, a, t->policy->priority)) {
        a->flags &= (uint8_t)~ACT_QUEUED;
        flow__run_stop(a->run, FLOW_RUN_FAILED, "out of memory queueing a task");
        flow__run_cancel_act(a->run, a, "out of memory");
        return;
    }
    if (remote) {
        flow__remote_wake(e);
    } else if (pool) {
        /* A pool thread pops its next task itself and wakes a peer only if
         * more is left (worker_main); others must wake one. */
        if (!in_pool_thread && e->idle > 0)
            pthread_cond_signal(&e->pool_cond);
    } else {
        flow__engine_wake(e);
    }
}

void flow__engine_release_slot(struct flow_engine *e, struct flow_run *r)
{
    if (!r->max_running)
        return;
    if (r->slots > 0)
        r->slots--;
    while (r->held_head < r->held.count && r->slots < r->max_running) {
        struct act *a = r->held.items[r->held_head++];
        a->flags &= (uint8_t)~ACT_QUEUED;
        if (a->status == FLOW_ACT_PENDING && !r->stopping)
            flow__engine_enqueue(e, a);
    }
    if (r->held_head == r->held.count)
        r->held.count = r->held_head = 0;
}

/* ---- timers: a binary min-heap ------------------------------------------ */

static void heap_swap(struct timer *h, size_t i, size_t j)
{
    struct timer tmp = h[i];
    h[i] = h[j];
    h[j] = tmp;
}

static bool timer_push(struct flow_engine *e, struct timer t);

void flow__engine_timer(struct flow_engine *e, uint8_t kind, struct act *a, double seconds)
{
    if (a->run->replaying)
        return;
    struct timer t = {
        .at = flow__now_ns() + flow__delay_ns(seconds),
        .run = a->run,
        .act = a,
        .attempt = a->attempt,
        .round = a->dyn ? a->dyn->waits : 0,
        .kind = kind,
    };
    /* Out of memory the run stops; an activation that was to wait for the
     * timer (a retry, an answer) would wait for ever: it is cancelled. */
    if (!timer_push(e, t) && a->status == FLOW_ACT_PENDING) {
        a->flags &= (uint8_t)~ACT_WAITING;
        flow__run_cancel_act(a->run, a, "out of memory arming a timer");
    }
}

void flow__engine_run_timer(struct flow_engine *e, struct flow_run *r, double seconds)
{
    flow__engine_run_timer_of(e, r, TIMER_RUN, seconds);
}

void flow__engine_run_timer_of(struct flow_engine *e, struct flow_run *r, uint8_t kind,
                               double seconds)
{
    if (r->replaying)
        return;
    struct timer t = {
        .at = flow__now_ns() + flow__delay_ns(seconds),
        .run = r,
        .act = NULL,
        .kind = kind,
    };
    (void)timer_push(e, t); /* out of memory, the run stops */
}

static bool timer_push(struct flow_engine *e, struct timer t)
{
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&e->timers, t, rc);
    if (rc) {
        flow__run_stop(t.run, FLOW_RUN_FAILED, "out of memory arming a timer");
        return false;
    }
    struct timer *h = e->timers.items;
    size_t i = e->timers.count - 1;
    while (i > 0 && h[(i - 1) / 2].at > h[i].at) {
        heap_swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    if (i == 0)
        flow__engine_wake(e); /* the loop's poll timeout changed */
    return true;
}

static void heap_sift_down(struct timer *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l].at < h[m].at)
            m = l;
        if (r < n && h[r].at < h[m].at)
            m = r;
        if (m == i)
            return;
        heap_swap(h, i, m);
        i = m;
    }
}

static void heap_pop(struct flow_engine *e)
{
    size_t n = --e->timers.count;
    if (n == 0)
        return;
    e->timers.items[0] = e->timers.items[n];
    heap_sift_down(e->timers.items, n, 0);
}

static void heap_rebuild(struct flow_engine *e)
{
    for (size_t k = e->timers.count / 2; k-- > 0;)
        heap_sift_down(e->timers.items, e->timers.count, k);
}

/* What left a ready queue without starting gives back what the gate gave
 * it, and is cancelled (`arg` non-NULL) or left pending. */
static void unqueued(struct act *a, void *arg)
{
    if (flow__gate_has(a))
        flow__gate_release(a->run->engine, a);
    if (arg)
        flow__run_cancel_act(a->run, a, "the run stopped before it started");
}

void flow__engine_drop_run(struct flow_engine *e, struct flow_run *r)
{
    static int cancel;
    flow__readyq_drop_run(&e->pool_q, r, unqueued, &cancel);
    flow__readyq_drop_run(&e->loop_q, r, unqueued, &cancel);
    flow__readyq_drop_run(&e->spawn_q, r, unqueued, &cancel);
    flow__readyq_drop_run(&e->remote_q, r, unqueued, &cancel);
    flow__gate_drop_run(e, r, true);
    while (r->held_head < r->held.count) {
        struct act *a = r->held.items[r->held_head++];
        a->flags &= (uint8_t)~ACT_QUEUED;
        flow__run_cancel_act(r, a, "the run stopped before it started");
    }
    r->held.count = r->held_head = 0;
    /* Retry timers of this run will never be wanted; their activations end
     * now. Timeout and grace timers stay: they kill what still runs. */
    size_t kept = 0;
    for (size_t i = 0; i < e->timers.count; i++) {
        struct timer t = e->timers.items[i];
        if (t.run == r && t.kind == TIMER_RETRY) {
            if (t.act->flags & ACT_WAITING && t.act->attempt == t.attempt) {
                t.act->flags &= (uint8_t)~ACT_WAITING;
                flow__run_cancel_act(r, t.act, "the run stopped while it waited to retry");
            }
            continue;
        }
        e->timers.items[kept++] = t;
    }
    e->timers.count = kept;
    heap_rebuild(e);
}

void flow__engine_unqueue_run(struct flow_engine *e, struct flow_run *r)
{
    flow__readyq_drop_run(&e->pool_q, r, unqueued, NULL);
    flow__readyq_drop_run(&e->loop_q, r, unqueued, NULL);
    flow__readyq_drop_run(&e->spawn_q, r, unqueued, NULL);
    flow__readyq_drop_run(&e->remote_q, r, unqueued, NULL);
    flow__gate_drop_run(e, r, false);
    while (r->held_head < r->held.count)
        r->held.items[r->held_head++]->flags &= (uint8_t)~ACT_QUEUED;
    r->held.count = r->held_head = 0;
}

void flow__engine_forget_run(struct flow_engine *e, struct flow_run *r)
{
    flow__gate_forget_run(e, r);
    size_t kept = 0;
    for (size_t i = 0; i < e->timers.count; i++) {
        if (e->timers.items[i].run != r)
            e->timers.items[kept++] = e->timers.items[i];
    }
    if (kept != e->timers.count) {
        e->timers.count = kept;
        heap_rebuild(e);
    }
}

/* ---- waking the loop ---------------------------------------------------- */

void flow__engine_tick(struct flow_engine *e)
{
    e->clock = flow__wall_time();
}

void flow__engine_wake(struct flow_engine *e)
{
    if (atomic_exchange(&e->wake_pending, 1))
        return;
    uint64_t one = 1;
    ssize_t n = write(e->wake_fd, &one, sizeof(one));
    (void)n; /* EAGAIN means a wake is pending anyway */
}

/* ---- the pool ----------------------------------------------------------- */

struct worker_arg {
    struct flow_engine *e;
    struct worker *self;
};

static void engine_unref(struct flow_engine *e);

/* [L] Begin an attempt of `a` on the calling thread; returns its context. */
static struct flow_ctx *begin_fn_attempt(struct flow_engine *e, struct act *a)
{
    struct flow_ctx *ctx = flow__ctx_new(e, a->run, a);
    if (!ctx) {
        flow__run_stop(a->run, FLOW_RUN_FAILED, "out of memory starting a task");
        flow__run_cancel_act(a->run, a, "out of memory");
        return NULL;
    }
    a->ctx = ctx;
    flow__run_attempt_started(a->run, a);
    const struct flow_task *t = act_task(a);
    char *why = NULL;
    if (t->ext && t->ext->input && !flow__run_input_ready(a->run, a, &why)) {
        ctx->no_body = true;
        ctx->rc = -1;
        ctx->error = why;
    }
    return ctx;
}

/* Batching: with many short tasks ready, two threads taking the lock for
 * every task spend their time passing the lock's cache line back and forth
 * (a 100,000-way fan-out ran 3x slower on 2 threads than on 1). A thread
 * therefore claims up to BATCH_MAX ready tasks at once when bodies have been
 * short (under BATCH_SHORT_NS on average) and many are ready, runs them, and
 * applies their completions in one critical section. Long bodies get batches
 * of one, so no thread sits on work another could start. */
#define BATCH_MAX 32
#define BATCH_SHORT_NS 20000

/* [L] How many ready tasks to claim now. */
static size_t batch_size(const struct flow_engine *e)
{
    if (e->body_ns_avg > BATCH_SHORT_NS)
        return 1;
    size_t share = e->pool_q.count / (2 * (size_t)e->jobs);
    return share < 1 ? 1 : share > BATCH_MAX ? BATCH_MAX : share;
}

static void *worker_main(void *arg)
{
    struct worker_arg wa = *(struct worker_arg *)arg;
    flow__free(arg);
    struct flow_engine *e = wa.e;
    struct flow_ctx *batch[BATCH_MAX];
    size_t nbatch = 0;
    bool retire = false;
    in_pool_thread = true;
    pthread_mutex_lock(&e->lock);
    flow__engine_tick(e);
    for (;;) {
        struct flow_run *drop[BATCH_MAX];
        size_t ndrop = 0;
        for (size_t i = 0; i < nbatch; i++) {
            struct flow_ctx *done = batch[i];
            if (done->detached) {
                drop[ndrop++] = done->run;
                flow__ctx_release(e, done);
                retire = true;
            } else {
                flow__run_ctx_done(done->run, done);
            }
        }
        nbatch = 0;
        if (ndrop) {
            /* The abandoned bodies have returned: their runs may go now. */
            pthread_mutex_unlock(&e->lock);
            for (size_t i = 0; i < ndrop; i++)
                flow__run_unref(drop[i]);
            pthread_mutex_lock(&e->lock);
            flow__engine_tick(e);
        }
        if (retire && e->surplus > 0) {
            /* A body of ours was abandoned and a replacement thread took our
             * place: retire. */
            e->surplus--;
            break;
        }
        retire = false;
        if (e->shutdown)
            break;
        if (e->running >= e->jobs || !e->pool_q.count) {
            e->idle++;
            pthread_cond_wait(&e->pool_cond, &e->lock);
            e->idle--;
            flow__engine_tick(e);
            continue;
        }
        /* Claim a batch; it holds one of the `jobs` slots. */
        size_t want = batch_size(e);
        while (nbatch < want && e->pool_q.count) {
            struct act *a = flow__readyq_pop(&e->pool_q);
            a->flags &= (uint8_t)~ACT_QUEUED;
            if (nbatch > 0 && (act_task(a)->policy->timeout > 0 || is_net(act_task(a)))) {
                /* A task with a timeout must start when its clock starts;
                 * one that waits on the network must not hold others up. */
                flow__readyq_push(&e->pool_q, a, act_task(a)->policy->priority);
                a->flags |= ACT_QUEUED;
                break;
            }
            struct flow_ctx *ctx = begin_fn_attempt(e, a);
            if (!ctx)
                continue;
            ctx->worker = wa.self;
            batch[nbatch++] = ctx;
        }
        if (!nbatch)
            continue;
        batch[0]->counted = true;
        e->running++;
        if (e->pool_q.count && e->idle > 0 && e->running < e->jobs)
            pthread_cond_signal(&e->pool_cond);
        double claimed_at = e->clock; /* read when this thread took the lock */
        in_pool_thread = false;
        pthread_mutex_unlock(&e->lock);
        for (size_t i = 0; i < nbatch; i++) {
            struct flow_ctx *ctx = batch[i];
            if (ctx->no_body)
                continue;
            if (i > 0 && atomic_load(&ctx->cancelled)) {
                /* The run stopped while this one waited in the batch. */
                ctx->rc = -1;
                continue;
            }
            ctx->rc = ctx->fn(ctx);
        }
        pthread_mutex_lock(&e->lock);
        in_pool_thread = true;
        flow__engine_tick(e);
        int64_t per_body = (int64_t)((e->clock - claimed_at) * 1e9) / (int64_t)nbatch;
        e->body_ns_avg = (e->body_ns_avg * 7 + per_body) / 8;
    }
    wa.self->exited = true;
    pthread_mutex_unlock(&e->lock);
    engine_unref(e);
    return NULL;
}

/* [L] Start one more pool thread. */
static flow_err add_worker(struct flow_engine *e)
{
    struct worker *w = flow__calloc(1, sizeof(*w));
    struct worker_arg *wa = flow__malloc(sizeof(*wa));
    flow_err rc = (w && wa) ? FLOW_OK : FLOW_ENOMEM;
    if (!rc)
        FLOW__VEC_PUSH(&e->workers, w, rc);
    if (rc) {
        flow__free(w);
        flow__free(wa);
        return FLOW_ENOMEM;
    }
    wa->e = e;
    wa->self = w;
    atomic_fetch_add(&e->refs, 1);
    /* Task bodies get signals blocked: the host's handlers run elsewhere. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int err = pthread_create(&w->thread, NULL, worker_main, wa);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        e->workers.count--;
        flow__free(w);
        flow__free(wa);
        atomic_fetch_sub(&e->refs, 1);
        return FLOW_ESYSTEM;
    }
    return FLOW_OK;
}

/* [L] A C task's body ignored its cancellation: leave its thread to it and
 * give the pool a replacement. */
static void abandon_ctx(struct flow_engine *e, struct flow_ctx *ctx)
{
    ctx->detached = true;
    atomic_fetch_add(&ctx->run->refs, 1); /* dropped when the body returns */
    if (ctx->worker && ctx->worker->stuck)
        return; /* its thread was replaced already (a batch behind one body) */
    if (ctx->worker)
        ctx->worker->stuck = true;
    e->surplus++;
    if (add_worker(e) != FLOW_OK)
        flow__log(FLOW_LOG_WARN, "cannot start a replacement thread; the pool is one short");
}

/* ---- the loop thread ---------------------------------------------------- */

#define MAX_POLL 512

/* [L] Take a slot out of the running set. */
static void remove_slot(struct flow_engine *e, struct cmd_slot *slot)
{
    for (size_t i = 0; i < e->cmds.count; i++) {
        if (e->cmds.items[i] == slot) {
            e->cmds.items[i] = e->cmds.items[--e->cmds.count];
            break;
        }
    }
    if (slot->act->dyn)
        slot->act->dyn->cmd = NULL;
    flow__free(slot);
}

/* [L] A command could not be started: its attempt fails with `why` (taken). */
static void cmd_not_started(struct flow_engine *e, struct cmd_slot *slot, char *why)
{
    struct act *a = slot->act;
    if (slot->state_held)
        flow__run_cmd_files_release(a->run, slot->state_version);
    remove_slot(e, slot);
    struct flow__cmd_result res = {.ok = false, .exit_status = -1};
    res.error = why ? why : flow__strdup("cannot start the command");
    flow__run_cmd_done(a->run, a, &res);
    flow__cmd_result_cleanup(&res);
}

/* [L] Spawn queued commands while slots are free. The spawn itself runs
 * without the lock. */
static void spawn_commands(struct flow_engine *e)
{
    while (e->spawn_q.count && e->running < e->jobs && e->cmds.count < MAX_POLL / 4) {
        struct act *a = flow__readyq_pop(&e->spawn_q);
        a->flags &= (uint8_t)~ACT_QUEUED;
        struct flow_run *r = a->run;
        struct cmd_slot *slot = flow__calloc(1, sizeof(*slot));
        flow_err rc = FLOW_OK;
        if (slot)
            FLOW__VEC_PUSH(&e->cmds, slot, rc);
        if (!slot || rc) {
            flow__free(slot);
            flow__run_stop(r, FLOW_RUN_FAILED, "out of memory starting a command");
            flow__run_cancel_act(r, a, "out of memory");
            continue;
        }
        slot->act = a;
        struct act_dyn *dyn = flow__act_dyn(r, a);
        if (!dyn) {
            remove_slot(e, slot);
            flow__run_stop(r, FLOW_RUN_FAILED, "out of memory starting a command");
            flow__run_cancel_act(r, a, "out of memory");
            continue;
        }
        dyn->cmd = slot;
        e->running++;
        e->spawned = true;
        flow__run_attempt_started(r, a);
        slot->attempt = a->attempt;
        struct flow__cmd_spec spec;
        void *scratch = NULL;
        char *why = NULL;
        if (!flow__run_prepare_cmd(r, a, &spec, &scratch, &why)) {
            flow__run_cmd_scratch_free(scratch);
            cmd_not_started(e, slot, why);
            continue;
        }
        flow_error err;
        struct flow__cmd *cmd = NULL;
        pthread_mutex_unlock(&e->lock);
        bool files = flow__run_cmd_files(scratch, &spec, &why);
        flow_err src = files ? flow__cmd_start(&spec, &cmd, &err) : FLOW_ESYSTEM;
        pthread_mutex_lock(&e->lock);
        flow__run_cmd_scratch_free(scratch);
        slot->state_held = spec.state_path != NULL;
        if (!files) {
            cmd_not_started(e, slot, why);
            continue;
        }
        if (src) {
            cmd_not_started(e, slot, flow__strdup(err.message));
            continue;
        }
        slot->cmd = cmd;
        if (slot->timed_out || a->run->stopping)
            flow__cmd_kill(cmd, SIGTERM); /* it was cancelled while we spawned */
    }
}

/* [L] Run queued inline bodies and no-ops here, the lock released around a
 * body. Only what was queued when we started: their completions may queue
 * more, handled on the next turn after the poll set is refreshed. */
static void run_loop_queue(struct flow_engine *e)
{
    size_t budget = e->loop_q.count;
    while (budget-- > 0) {
        struct act *a = flow__readyq_pop(&e->loop_q);
        if (!a)
            break;
        a->flags &= (uint8_t)~ACT_QUEUED;
        struct flow_run *r = a->run;
        const struct flow_task *t = act_task(a);
        if (is_expander(a)) {
            if (flow__gate_has(a))
                flow__gate_started(e, a);
            flow__run_expand(r, a);
            continue;
        }
        struct flow_ctx *ctx = begin_fn_attempt(e, a);
        if (!ctx)
            continue;
        if (ctx->no_body) {
            /* its input template failed; ctx says why */
        } else if (t->kind == TASK_FN) {
            pthread_mutex_unlock(&e->lock);
            ctx->rc = ctx->fn(ctx);
            pthread_mutex_lock(&e->lock);
            flow__engine_tick(e);
        } else if (t->kind == TASK_FEEDBACK) {
            flow__feedback_task(r, a, ctx);
        } else if (t->kind == TASK_PROMPT) {
            flow__prompt_task(r, a, ctx);
        } else {
            /* A no-op passes its input on. */
            json_t *in = flow__run_act_input(r, a);
            ctx->output = json_incref(in);
            ctx->rc = in ? 0 : 1;
            if (!in)
                ctx->error = flow__strdup("out of memory building the input");
        }
        flow__run_ctx_done(r, ctx);
    }
}

/* [L] Fire due timers. Returns the poll timeout in ms (-1: none). */
static int fire_timers(struct flow_engine *e)
{
    int64_t now = flow__now_ns();
    while (e->timers.count) {
        struct timer t = e->timers.items[0];
        if (t.at > now) {
            int64_t ms = (t.at - now + 999999) / 1000000;
            return ms > 60000 ? 60000 : (int)ms;
        }
        heap_pop(e);
        if (t.kind == TIMER_RUN) {
            flow__run_timed_out(t.run);
            continue;
        }
        if (t.kind == TIMER_CHECKPOINT) {
            flow__run_checkpoint_tick(t.run);
            continue;
        }
        if (t.kind == TIMER_FEEDBACK) {
            flow__feedback_timer(t.run, t.act);
            continue;
        }
        struct act *a = t.act;
        if (a->attempt != t.attempt || (a->dyn ? a->dyn->waits : 0) != t.round)
            continue; /* stale: the attempt (or round) it was set for is over */
        if (t.kind == TIMER_RETRY && !(a->flags & ACT_WAITING))
            continue;
        if (t.kind != TIMER_RETRY && a->status != FLOW_ACT_RUNNING)
            continue;
        if (t.kind == TIMER_GRACE && a->ctx && !act_cmd(a)) {
            /* The body did not return within the grace period: abandon it
             * first, so that failing the attempt leaves its context alone. */
            abandon_ctx(e, a->ctx);
        }
        flow__run_timer(a->run, a, t.kind);
    }
    return -1;
}

/* [L] Deliver observer events, without the lock around the callbacks. */
static void deliver_events(struct flow_engine *e)
{
    while (e->obs_runs.count) {
        struct flow_run *r = e->obs_runs.items[--e->obs_runs.count];
        r->obs_listed = false;
        struct obs_event *events = r->obs.items;
        size_t count = r->obs.count;
        r->obs.items = NULL;
        r->obs.count = r->obs.cap = 0;
        bool ended = r->status >= FLOW_RUN_PAUSED && !r->ended;
        pthread_mutex_unlock(&e->lock);
        flow__run_deliver(r, events, count);
        flow__obs_events_free(events, count);
        pthread_mutex_lock(&e->lock);
        if (ended && !r->obs.count) {
            r->ended = true;
            pthread_cond_broadcast(&r->ended_cond);
        }
    }
}

#define NOTIFY_GRACE_NS (5 * 1000000000LL)

/* [L] Reap the feedback notification commands that have exited; a failure
 * is worth a line in the log, not a failed run. While any is left, the loop
 * looks again at least every 100 ms. */
static void reap_notifiers(struct flow_engine *e)
{
    size_t kept = 0;
    for (size_t i = 0; i < e->notifiers.count; i++) {
        int status;
        pid_t pid = e->notifiers.items[i];
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == 0) {
            e->notifiers.items[kept++] = pid;
            continue;
        }
        flow__tree_disown(pid);
        if (got == pid && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            flow__log(FLOW_LOG_WARN, "a feedback notification command (pid %ld) %s %d",
                      (long)pid, WIFEXITED(status) ? "exited with status" : "was killed by signal",
                      WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    e->notifiers.count = kept;
}

#define SWEEP_EVERY_NS (500 * 1000000LL)

/* [L] Orphans of command tasks come to this thread (tree.h): reap those
 * that died, kill those whose attempt is over. At most every 500 ms, and
 * only once a command has run here; the lock is released meanwhile. */
static void sweep_orphans(struct flow_engine *e)
{
    if (!e->spawned)
        return;
    int64_t now = flow__now_ns();
    if (now < e->sweep_at)
        return;
    e->sweep_at = now + SWEEP_EVERY_NS;
    pthread_mutex_unlock(&e->lock);
    int seen = flow__tree_sweep();
    pthread_mutex_lock(&e->lock);
    e->orphans = seen > 0;
}

/* [L] Runs interrupted by a signal handler. */
static void check_interrupts(struct flow_engine *e)
{
    for (struct flow_run *r = e->runs; r; r = r->next) {
        if (atomic_exchange(&r->interrupt, 0))
            flow__run_pause(r, "interrupted", true);
    }
}

static void *loop_main(void *arg)
{
    struct flow_engine *e = arg;
    struct pollfd fds[MAX_POLL];
    int64_t shutdown_at = 0;
    pthread_mutex_lock(&e->lock);
    flow__engine_tick(e);
    for (;;) {
        check_interrupts(e);
        flow__feedback_notify_spawn(e);
        reap_notifiers(e);
        sweep_orphans(e);
        int timeout = fire_timers(e);
        run_loop_queue(e);
        spawn_commands(e);
        deliver_events(e);
        /* Notification commands die with this thread (PDEATHSIG): give
         * them a few seconds to do their work before the engine goes. */
        if (e->shutdown && !e->cmds.count &&
            (!e->notifiers.count || (shutdown_at && flow__now_ns() - shutdown_at > NOTIFY_GRACE_NS)))
            break;
        if (e->shutdown && !shutdown_at)
            shutdown_at = flow__now_ns();
        if (e->notifiers.count && (timeout < 0 || timeout > 100))
            timeout = 100; /* a notification command to reap */
        if ((e->cmds.count || e->orphans) && (timeout < 0 || timeout > 500))
            timeout = 500; /* orphans may die meanwhile: sweep_orphans */
        /* Work queued by what we just did is handled before sleeping. */
        if (e->loop_q.count || e->obs_runs.count ||
            (e->spawn_q.count && e->running < e->jobs && e->cmds.count < MAX_POLL / 4))
            timeout = 0;
        int n = 0;
        fds[n].fd = e->wake_fd;
        fds[n].events = POLLIN;
        n++;
        for (size_t i = 0; i < e->cmds.count; i++) {
            struct cmd_slot *s = e->cmds.items[i];
            s->fd_first = n;
            s->nfds = s->cmd ? flow__cmd_pollfds(s->cmd, &fds[n], MAX_POLL - n) : 0;
            n += s->nfds;
        }
        pthread_mutex_unlock(&e->lock);
        int ready = poll(fds, (nfds_t)n, timeout);
        pthread_mutex_lock(&e->lock);
        flow__engine_tick(e);
        if (ready < 0 && errno != EINTR) {
            flow__log(FLOW_LOG_ERROR, "poll failed: %s", strerror(errno));
            continue;
        }
        if (fds[0].revents & POLLIN) {
            uint64_t v;
            ssize_t rd = read(e->wake_fd, &v, sizeof(v));
            (void)rd;
        }
        atomic_store(&e->wake_pending, 0);
        for (size_t i = 0; i < e->cmds.count;) {
            struct cmd_slot *s = e->cmds.items[i];
            if (s->cmd && s->nfds && ready > 0)
                flow__cmd_handle(s->cmd, &fds[s->fd_first], s->nfds);
            s->nfds = 0;
            if (s->cmd && flow__cmd_is_done(s->cmd)) {
                struct flow__cmd_result res;
                memset(&res, 0, sizeof(res));
                struct flow__cmd *cmd = s->cmd;
                s->cmd = NULL;
                bool timed_out = s->timed_out;
                pthread_mutex_unlock(&e->lock);
                flow__cmd_finish(cmd, timed_out, &res);
                pthread_mutex_lock(&e->lock);
                struct act *a = s->act;
                remove_slot(e, s);
                flow__run_cmd_done(a->run, a, &res);
                flow__cmd_result_cleanup(&res);
                continue;
            }
            i++;
        }
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

static int default_jobs(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 2;
}

flow_engine *flow_engine_new(const flow_engine_options *opts, flow_error *err)
{
    int jobs = opts && opts->jobs > 0 ? opts->jobs : default_jobs();
    if (jobs > 1024) {
        flow__error(err, FLOW_EINVAL, "--jobs %d is too many (at most 1024)", jobs);
        return NULL;
    }
    struct flow__redis_addr addr;
    if (opts && opts->redis_url && flow__redis_parse(opts->redis_url, &addr, err) != FLOW_OK)
        return NULL; /* said at once, not at the first remote task */
    struct flow_engine *e = flow__calloc(1, sizeof(*e));
    if (!e) {
        flow__error(err, FLOW_ENOMEM, "out of memory creating an engine");
        return NULL;
    }
    atomic_init(&e->refs, 1);
    atomic_init(&e->wake_pending, 0);
    e->body_ns_avg = BATCH_SHORT_NS * 2; /* assume long bodies until measured */
    e->jobs = jobs;
    if (opts && opts->resources)
        e->capacity = *opts->resources;
    else
        flow_resources_machine(&e->capacity);
    if (opts && opts->redis_url && !(e->redis_url = flow__strdup(opts->redis_url))) {
        flow__error(err, FLOW_ENOMEM, "out of memory creating an engine");
        flow__free(e);
        return NULL;
    }
    e->wake_fd = -1;
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->pool_cond, NULL);
    e->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->wake_fd < 0) {
        flow__error_errno(err, errno, "cannot create an eventfd");
        goto out_free;
    }
    pthread_mutex_lock(&e->lock);
    for (int i = 0; i < jobs; i++) {
        if (add_worker(e) != FLOW_OK) {
            pthread_mutex_unlock(&e->lock);
            flow__error(err, FLOW_ESYSTEM, "cannot start %d threads", jobs);
            goto out_stop;
        }
    }
    pthread_mutex_unlock(&e->lock);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&e->loop_thread, NULL, loop_main, e);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        flow__error(err, FLOW_ESYSTEM, "cannot start the scheduler thread");
        goto out_stop;
    }
    return e;

out_stop:
    pthread_mutex_lock(&e->lock);
    e->shutdown = true;
    pthread_cond_broadcast(&e->pool_cond);
    pthread_mutex_unlock(&e->lock);
    for (size_t i = 0; i < e->workers.count; i++)
        pthread_join(e->workers.items[i]->thread, NULL);
    for (size_t i = 0; i < e->workers.count; i++)
        flow__free(e->workers.items[i]);
    FLOW__VEC_FREE(&e->workers);
out_free:
    if (e->wake_fd >= 0)
        close(e->wake_fd);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->pool_cond);
    flow__free(e);
    return NULL;
}

static void engine_destroy(struct flow_engine *e)
{
    for (size_t i = 0; i < e->workers.count; i++)
        flow__free(e->workers.items[i]);
    FLOW__VEC_FREE(&e->workers);
    flow__readyq_cleanup(&e->pool_q);
    flow__readyq_cleanup(&e->loop_q);
    flow__readyq_cleanup(&e->spawn_q);
    flow__readyq_cleanup(&e->remote_q);
    flow__free(e->redis_url);
    FLOW__VEC_FREE(&e->timers);
    FLOW__VEC_FREE(&e->cmds);
    FLOW__VEC_FREE(&e->obs_runs);
    for (size_t i = 0; i < e->notifiers.count; i++) {
        waitpid(e->notifiers.items[i], NULL, 0);
        flow__tree_disown(e->notifiers.items[i]);
    }
    FLOW__VEC_FREE(&e->notifiers);
    for (size_t i = 0; i < e->notes.count; i++) /* never started: the engine went first */
        json_decref(e->notes.items[i]);
    FLOW__VEC_FREE(&e->notes);
    while (e->free_ctx) {
        struct flow_ctx *c = e->free_ctx;
        e->free_ctx = c->next_free;
        flow__free(c);
    }
    close(e->wake_fd);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->pool_cond);
    flow__free(e);
}

static void engine_unref(struct flow_engine *e)
{
    if (atomic_fetch_sub(&e->refs, 1) == 1)
        engine_destroy(e);
}

void flow_engine_free(flow_engine *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->lock);
    e->shutdown = true;
    pthread_cond_broadcast(&e->pool_cond);
    /* Kill what still runs: the runs should have been freed first. */
    for (size_t i = 0; i < e->cmds.count; i++) {
        if (e->cmds.items[i]->cmd)
            flow__cmd_kill(e->cmds.items[i]->cmd, SIGKILL);
    }
    pthread_mutex_unlock(&e->lock);
    flow__engine_wake(e);
    pthread_join(e->loop_thread, NULL);
    flow__remote_stop(e);
    flow__gate_stop(e);
    flow__cache_stop(e);
    /* Join the threads that are not stuck in an abandoned body; detach the
     * others (each holds a reference and frees the engine if last). */
    pthread_mutex_lock(&e->lock);
    size_t n = e->workers.count;
    struct worker **ws = flow__calloc(n ? n : 1, sizeof(*ws));
    if (ws)
        memcpy(ws, e->workers.items, n * sizeof(*ws));
    pthread_mutex_unlock(&e->lock);
    pthread_mutex_lock(&e->lock);
    for (size_t i = 0; ws && i < n; i++) {
        if (ws[i]->stuck) {
            pthread_detach(ws[i]->thread);
            ws[i] = NULL;
        }
    }
    pthread_mutex_unlock(&e->lock);
    for (size_t i = 0; ws && i < n; i++) {
        if (ws[i])
            pthread_join(ws[i]->thread, NULL);
    }
    flow__free(ws);
    engine_unref(e);
}

int flow_engine_jobs(const flow_engine *e)
{
    return e->jobs;
}

void flow_engine_get_stats(flow_engine *e, flow_engine_stats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&e->lock);
    for (struct flow_run *r = e->runs; r; r = r->next)
        out->runs++;
    out->ready = e->pool_q.count + e->loop_q.count + e->spawn_q.count + e->remote_q.count +
                 flow__gate_waiting(e);
    out->running = e->running;
    out->jobs = e->jobs;
    pthread_mutex_unlock(&e->lock);
}
