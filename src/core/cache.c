/* cache.c -- cached outputs of tasks around their attempts
 * (docs/internals/prompts.md, "Cache").
 *
 * flow__engine_enqueue sends an activation whose task has `cache:` here
 * before anything else (the limits, the ready queues): its key is rendered
 * under the engine lock, then a job goes to the engine's cache thread,
 * which asks the store without the lock and comes back under it with the
 * answer. The activation stays pending meanwhile, marked queued so that
 * nothing queues it twice, and its run counts the job as running, so that
 * it neither ends nor finishes pausing with a lookup in flight (a run that
 * stops or pauses meanwhile cancels the activation, or leaves it pending,
 * when the answer comes). Writes go the same way: an attempt that succeeds
 * hands its entry over, and its run waits for the write before it ends, so
 * that the next process finds the entry and the store is never closed
 * under the thread.
 *
 * One thread, jobs in order: a store takes one call at a time anyway (its
 * io lock), and a lookup costs a primary-key read. The thread starts on the
 * first job, so an engine that caches nothing has none.
 */
#include "util/compat.h"

#include <signal.h>
#include <string.h>

#include "core/cache.h"
#include "core/run_int.h"
#include "store/handle.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/log.h"

enum { JOB_GET = 0, JOB_PUT, JOB_FAIL };

struct cache_job {
    struct cache_job *next;
    uint8_t kind;
    struct flow_run *run;     /* counts the job running until it is applied */
    struct act *act;          /* GET, FAIL */
    struct flow_store *store; /* GET, PUT */
    char *fname, *task, *key; /* GET, PUT: the entry's name */
    json_t *entry;            /* PUT: what to keep (ours); GET: what was found */
    double created;           /* GET: when it was kept */
    double ttl;               /* PUT: seconds, 0: never expires */
    char *why;                /* FAIL: the attempt's error; else the store's */
};

struct flow__cache {
    pthread_t thread;
    bool started, stop;
    pthread_cond_t cond;        /* a job came, or stop */
    struct cache_job *head, **tail;
    struct flow_store *mem;     /* the cache of runs without a store */
};

/* ---- jobs ------------------------------------------------------------------ */

static void job_free(struct cache_job *j)
{
    if (!j)
        return;
    flow__free(j->fname);
    flow__free(j->task);
    flow__free(j->key);
    json_decref(j->entry);
    flow__free(j->why);
    flow__free(j);
}

static void *cache_main(void *arg);

/* [L] The engine's cache, its thread started; NULL when it cannot be. */
static struct flow__cache *cache_of(struct flow_engine *e)
{
    struct flow__cache *c = e->cache;
    if (!c) {
        if (!(c = flow__calloc(1, sizeof(*c))))
            return NULL;
        pthread_cond_init(&c->cond, NULL);
        c->tail = &c->head;
        e->cache = c;
    }
    if (!c->started) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int rc = pthread_create(&c->thread, NULL, cache_main, e);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc)
            return NULL;
        c->started = true;
    }
    return c;
}

/* [L] Hand `j` to the thread; its run counts it running until it is
 * applied. False (j freed) when the thread cannot start. */
static bool job_send(struct flow_engine *e, struct cache_job *j)
{
    struct flow__cache *c = cache_of(e);
    if (!c) {
        flow__log(FLOW_LOG_WARN, "cannot start the cache thread: task '%s' is not cached",
                  j->task ? j->task : "?");
        job_free(j);
        return false;
    }
    j->run->running++;
    *c->tail = j;
    c->tail = &j->next;
    pthread_cond_signal(&c->cond);
    return true;
}

/* [L] Where run `r` caches: its store, or its top run's (a nested run keeps
 * no journal of its own), or, without one, the engine's memory. NULL when
 * that cannot be opened. */
static struct flow_store *cache_store(struct flow_engine *e, struct flow_run *r)
{
    while (!r->store && r->parent_act)
        r = r->parent_act->run;
    if (r->store)
        return r->store;
    struct flow__cache *c = e->cache;
    if (!c) {
        if (!(c = flow__calloc(1, sizeof(*c))))
            return NULL;
        pthread_cond_init(&c->cond, NULL);
        c->tail = &c->head;
        e->cache = c;
    }
    if (!c->mem) {
        flow_error err;
        c->mem = flow_store_open("memory:", &err);
    }
    return c->mem;
}

/* [L] A new job of `kind` for `a`'s entry (names copied); NULL when out of
 * memory. */
static struct cache_job *job_new(uint8_t kind, struct flow_run *r, struct act *a,
                                 struct flow_store *store)
{
    struct cache_job *j = flow__calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->kind = kind;
    j->run = r;
    j->act = a;
    j->store = store;
    if (kind == JOB_FAIL)
        return j;
    j->fname = flow__strdup(r->flow->name ? r->flow->name : "");
    j->task = flow__strdup(act_task(a)->name);
    j->key = flow__strdup(a->dyn->cache_key);
    if (!j->fname || !j->task || !j->key) {
        job_free(j);
        return NULL;
    }
    return j;
}

/* ---- looking up ------------------------------------------------------------ */

void flow__cache_lookup(struct flow_engine *e, struct act *a)
{
    struct flow_run *r = a->run;
    const struct flow_task *t = act_task(a);
    struct act_dyn *dy = flow__act_dyn(r, a);
    char *key = NULL;
    flow_error err;
    struct cache_job *j = NULL;
    if (!dy) {
        flow__run_stop(r, FLOW_RUN_FAILED, "out of memory queueing a task");
        flow__run_cancel_act(r, a, "out of memory");
        return;
    }
    if (flow__run_render_string(r, a, t->ext->cache->key, &key, &err) != FLOW_OK) {
        /* Failed as a start that failed, by the thread: not from inside
         * whatever queued it (a trigger firing, a completion). */
        if ((j = job_new(JOB_FAIL, r, a, NULL)))
            j->why = flow__asprintf("the cache key of task '%s': %s", t->name, err.message);
        if (!j || !j->why) {
            job_free(j);
            flow__run_stop(r, FLOW_RUN_FAILED, "out of memory queueing a task");
            flow__run_cancel_act(r, a, "out of memory");
            return;
        }
        a->flags |= ACT_QUEUED;
        if (!job_send(e, j)) {
            a->flags &= (uint8_t)~ACT_QUEUED;
            flow__run_stop(r, FLOW_RUN_FAILED, "cannot start the cache thread");
            flow__run_cancel_act(r, a, "cannot start the cache thread");
        }
        return;
    }
    dy->cache_key = key; /* also the name its completion keeps */
    struct flow_store *store = r->no_cache ? NULL : cache_store(e, r);
    if (store && (j = job_new(JOB_GET, r, a, store))) {
        a->flags |= ACT_QUEUED;
        if (job_send(e, j))
            return;
        a->flags &= (uint8_t)~ACT_QUEUED;
    }
    /* --no-cache, or the cache cannot be asked: the task runs. */
    flow__engine_enqueue(e, a);
}

/* [L] Complete `a` with the cached `entry` (taken), kept at `created`. */
static void hit(struct flow_run *r, struct act *a, json_t *entry, double created)
{
    struct directives d = {0};
    json_t *output = json_incref(json_object_get(entry, "output"));
    json_t *w = json_object_get(entry, "writes");
    json_t *writes = json_is_object(w) ? json_copy(w) : NULL;
    json_t *ops = json_object_get(entry, "ops");
    if (json_is_array(ops))
        d.ops = json_incref(ops);
    d.info = json_pack("{s:b,s:o}", "cached", 1, "cached_at", flow__json_time(created));
    json_decref(entry);
    /* An attempt that ran nothing: no act_started record (a nested flow's
     * would start its child on replay); its completion carries the attempt
     * number, and replay applies it as any completion. */
    a->attempt++;
    a->status = FLOW_ACT_RUNNING;
    a->started = r->engine->clock;
    flow__attempt_succeeded(r, a, output ? output : json_null(), writes, &d);
}

/* [L] The answer to a lookup, or a key that could not be rendered. */
static void apply(struct flow_engine *e, struct cache_job *j)
{
    struct flow_run *r = j->run;
    struct act *a = j->act;
    if (r->running > 0)
        r->running--;
    if (j->kind == JOB_PUT) {
        if (j->why)
            flow__log(FLOW_LOG_WARN, "cannot keep the cache entry of task '%s': %s", j->task,
                      j->why);
        flow__run_check_end(r);
        return;
    }
    a->flags &= (uint8_t)~ACT_QUEUED;
    if (a->status != FLOW_ACT_PENDING) {
        flow__run_check_end(r);
        return;
    }
    if (r->stopping) {
        flow__run_cancel_act(r, a, "the run stopped before it started");
        flow__run_check_end(r);
        return;
    }
    if (r->pausing) {
        flow__run_check_end(r); /* it stays pending: a resume looks it up again */
        return;
    }
    if (j->kind == JOB_FAIL) {
        char *why = j->why;
        j->why = NULL;
        a->attempt++;
        a->status = FLOW_ACT_RUNNING;
        a->started = r->engine->clock;
        flow__attempt_failed(r, a, why);
        return;
    }
    if (j->why)
        flow__log(FLOW_LOG_WARN, "cannot look task '%s' up in the cache: %s (it runs)", j->task,
                  j->why);
    if (j->entry) {
        json_t *entry = j->entry;
        j->entry = NULL;
        hit(r, a, entry, j->created);
        return;
    }
    flow__engine_enqueue(e, a);
}

/* ---- keeping --------------------------------------------------------------- */

json_t *flow__cache_entry(struct flow_run *r, struct act *a, json_t *output, json_t *writes,
                          const struct directives *d)
{
    const struct task_ext *x = act_task(a)->ext;
    if (!x || !x->cache || r->replaying || !a->dyn || !a->dyn->cache_key)
        return NULL; /* no key: a foreach parent, or an attempt that never looked */
    if (d && (d->work || d->terminate || d->cancel || d->pause ||
              json_is_true(json_object_get(d->info, "cached"))))
        return NULL;
    json_t *entry = json_pack("{s:o}", "output", json_deep_copy(output ? output : json_null()));
    if (entry && writes && json_object_size(writes))
        json_object_set_new(entry, "writes", json_deep_copy(writes));
    if (entry && d && d->ops)
        json_object_set_new(entry, "ops", json_deep_copy(d->ops));
    return entry;
}

void flow__cache_keep(struct flow_run *r, struct act *a, json_t *entry)
{
    struct flow_engine *e = r->engine;
    struct flow_store *store = cache_store(e, r);
    struct cache_job *j = store ? job_new(JOB_PUT, r, a, store) : NULL;
    if (!j) {
        json_decref(entry);
        flow__log(FLOW_LOG_WARN, "out of memory keeping the cache entry of task '%s'",
                  act_task(a)->name);
        return;
    }
    j->entry = entry;
    j->ttl = act_task(a)->ext->cache->ttl;
    job_send(e, j);
}

/* ---- the thread -------------------------------------------------------------- */

/* Without the lock: ask or write the store. */
static void call(struct cache_job *j)
{
    struct flow_store *s = j->store;
    flow_error err;
    flow_err rc;
    double now = flow__wall_time();
    if (j->kind == JOB_GET) {
        FLOW__WITH_STORE(s, rc = flow__store_cache_get(s->backend, j->fname, j->task, j->key, now,
                                                       &j->entry, &j->created, &err));
    } else {
        double expires = j->ttl > 0 ? now + j->ttl : 0;
        FLOW__WITH_STORE(s, rc = flow__store_cache_put(s->backend, j->fname, j->task, j->key,
                                                       j->entry, now, expires, &err));
    }
    if (rc != FLOW_OK)
        j->why = flow__strdup(err.message);
}

static void *cache_main(void *arg)
{
    struct flow_engine *e = arg;
    struct flow__cache *c = e->cache;
    pthread_mutex_lock(&e->lock);
    while (!c->stop) {
        struct cache_job *j = c->head;
        if (!j) {
            pthread_cond_wait(&c->cond, &e->lock);
            continue;
        }
        if (!(c->head = j->next))
            c->tail = &c->head;
        if (j->kind != JOB_FAIL) {
            /* The run waits for the job (it counts it running): its store
             * stays open, its activation stays. */
            pthread_mutex_unlock(&e->lock);
            call(j);
            pthread_mutex_lock(&e->lock);
        }
        flow__engine_tick(e);
        apply(e, j);
        job_free(j);
        if (e->obs_runs.count)
            flow__engine_wake(e); /* the loop delivers what the job told */
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

void flow__cache_stop(struct flow_engine *e)
{
    pthread_mutex_lock(&e->lock);
    struct flow__cache *c = e->cache;
    if (!c) {
        pthread_mutex_unlock(&e->lock);
        return;
    }
    c->stop = true;
    pthread_cond_signal(&c->cond);
    bool started = c->started;
    pthread_mutex_unlock(&e->lock);
    if (started)
        pthread_join(c->thread, NULL);
    pthread_mutex_lock(&e->lock);
    /* Runs end before their engine, and wait for their jobs: none is left
     * unless a run was never waited for. */
    while (c->head) {
        struct cache_job *j = c->head;
        c->head = j->next;
        job_free(j);
    }
    e->cache = NULL;
    pthread_mutex_unlock(&e->lock);
    flow_store_close(c->mem);
    pthread_cond_destroy(&c->cond);
    flow__free(c);
}
