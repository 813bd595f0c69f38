/* remote_fit.c -- remote activations that ask resources, held on the runner
 * until a live worker of their queue could ever start them (remote_fit.h).
 * A worker that cannot start an entry hands it back for another (it parks
 * it: core/worker.c); an entry that no live worker fits would wait parked
 * with nobody to take it, so it is not queued before one is there. */
#include "util/compat.h"

#include <stdio.h>
#include <string.h>

#include "core/remote_fit.h"
#include "core/run_int.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

#define FLEET_TTL_NS (1000 * 1000000LL) /* the live workers are read again after this */

static const flow_resources *asks(const struct act *a)
{
    const struct flow_task *t = act_task(a);
    return t->ext ? t->ext->resources : NULL;
}

bool flow__rfit_asks(const struct act *a)
{
    return asks(a) != NULL;
}

static const char *queue_of(const struct act *a)
{
    const struct flow_task *t = act_task(a);
    return t->ext && t->ext->queue ? t->ext->queue : "default";
}

/* A worker's capacity (its heartbeat's `resources`); false when it declares
 * none (a worker older than resources, which would ignore them). */
static bool capacity_of(const json_t *w, flow_resources *out)
{
    json_t *o = json_object_get(w, "resources");
    if (!json_is_object(o))
        return false;
    out->cpu = json_number_value(json_object_get(o, "cpu"));
    out->memory = json_number_value(json_object_get(o, "memory"));
    out->gpu = json_number_value(json_object_get(o, "gpu"));
    return true;
}

/* Could a worker of `fleet` that serves `queue` ever start an activation
 * asking `need`? When not, why in `buf`. */
static bool fleet_fits(const json_t *fleet, const char *queue, const flow_resources *need,
                       char *buf, size_t size)
{
    size_t serving = 0, declared = 0, i, k;
    flow_resources most = {0, 0, 0}, cap;
    json_t *w, *q;
    char what[64];
    json_array_foreach(fleet, i, w)
    {
        bool serves = false;
        json_array_foreach(json_object_get(w, "queues"), k, q)
        {
            serves = serves || (json_is_string(q) && !strcmp(json_string_value(q), queue));
        }
        if (!serves)
            continue;
        serving++;
        if (!capacity_of(w, &cap))
            continue;
        declared++;
        if (!flow__resources_misfit(need, &cap, what, sizeof(what)))
            return true;
        most.cpu = cap.cpu > most.cpu ? cap.cpu : most.cpu;
        most.memory = cap.memory > most.memory ? cap.memory : most.memory;
        most.gpu = cap.gpu > most.gpu ? cap.gpu : most.gpu;
    }
    if (!serving) {
        snprintf(buf, size, "resources: no live worker serves queue '%s'", queue);
    } else if (!declared) {
        snprintf(buf, size,
                 "resources: no live worker of queue '%s' declares its resources (older "
                 "workers ignore them)",
                 queue);
    } else if (flow__resources_misfit(need, &most, what, sizeof(what))) {
        char have[32];
        if (!strncmp(what, "memory", 6))
            flow__format_bytes(most.memory, have, sizeof(have));
        else
            snprintf(have, sizeof(have), "%g", !strncmp(what, "cpu", 3) ? most.cpu : most.gpu);
        snprintf(buf, size,
                 "resources: %s, more than any live worker of queue '%s' has (the most: %.*s %s)",
                 what, queue, (int)strcspn(what, " "), what, have);
    } else {
        snprintf(buf, size, "resources: no live worker of queue '%s' has all it asks at once",
                 queue);
    }
    return false;
}

bool flow__rfit_stale(const struct flow__rfit *f)
{
    return !f->fleet || flow__now_ns() - f->fleet_at >= FLEET_TTL_NS;
}

void flow__rfit_set_fleet(struct flow__rfit *f, json_t *fleet)
{
    json_decref(f->fleet);
    f->fleet = fleet;
    f->fleet_at = flow__now_ns();
}

bool flow__rfit_fits_now(const struct flow__rfit *f, const struct act *a)
{
    char why[256];
    return !flow__rfit_stale(f) && fleet_fits(f->fleet, queue_of(a), asks(a), why, sizeof(why));
}

bool flow__rfit_hold(struct flow__rfit *f, struct act *a)
{
    struct flow__rfit_held h = {.a = a, .r = a->run};
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&f->held, h, rc);
    if (rc)
        return false;
    a->flags |= ACT_QUEUED;
    atomic_fetch_add(&a->run->refs, 1);
    f->check_at = 0;
    return true;
}

void flow__rfit_let_go(struct flow__rfit *f, struct flow_engine *e)
{
    if (!f->unrefs.count)
        return;
    struct flow_run **v = f->unrefs.items;
    size_t n = f->unrefs.count;
    memset(&f->unrefs, 0, sizeof(f->unrefs));
    pthread_mutex_unlock(&e->lock);
    for (size_t i = 0; i < n; i++)
        flow__run_unref(v[i]);
    flow__free(v);
    pthread_mutex_lock(&e->lock);
}

/* Forget held entry `i`; its reference goes to f->unrefs. */
static void unhold(struct flow__rfit *f, struct flow_engine *e, size_t i)
{
    struct flow__rfit_held *h = &f->held.items[i];
    flow_err rc = FLOW_OK;
    h->a->flags &= (uint8_t)~ACT_QUEUED;
    FLOW__VEC_PUSH(&f->unrefs, h->r, rc);
    if (rc) { /* out of memory: without the lock, at once */
        pthread_mutex_unlock(&e->lock);
        flow__run_unref(h->r);
        pthread_mutex_lock(&e->lock);
    }
    flow__free(h->why);
    /* In order: the first held is submitted first. */
    memmove(h, h + 1, (f->held.count - i - 1) * sizeof(*h));
    f->held.count--;
}

struct act *flow__rfit_next(struct flow__rfit *f, struct flow_engine *e)
{
    for (size_t i = 0; i < f->held.count; i++) {
        struct act *a = f->held.items[i].a;
        if (!f->held.items[i].fits)
            continue;
        unhold(f, e, i);
        return a;
    }
    return NULL;
}

bool flow__rfit_ready(const struct flow__rfit *f)
{
    for (size_t i = 0; i < f->held.count; i++)
        if (f->held.items[i].fits)
            return true;
    return false;
}

void flow__rfit_check(struct flow__rfit *f, struct flow_engine *e)
{
    for (size_t i = 0; i < f->held.count;) {
        struct flow__rfit_held *h = &f->held.items[i];
        struct act *a = h->a;
        struct flow_run *r = h->r;
        char why[256];
        if (a->status != FLOW_ACT_PENDING || r->stopping || r->pausing ||
            r->status != FLOW_RUN_RUNNING) {
            bool cancel = r->stopping && a->status == FLOW_ACT_PENDING;
            unhold(f, e, i);
            if (cancel) {
                flow__engine_tick(e);
                flow__run_cancel_act(r, a, "the run stopped before it started");
            }
            continue;
        }
        i++;
        if (!f->fleet) {
            /* Redis never answered: the submitter tries, and says why it
             * cannot, as for any remote task. */
            h->fits = true;
            continue;
        }
        if (fleet_fits(f->fleet, queue_of(a), asks(a), why, sizeof(why))) {
            if (h->why)
                flow__log(FLOW_LOG_INFO, "remote tasks: run %s, task '%s': a worker fits it now",
                          r->id, act_task(a)->name);
            h->fits = true;
        } else if (!h->why || strcmp(h->why, why)) {
            if (!h->why) {
                flow__log(FLOW_LOG_WARN, "remote tasks: run %s, task '%s' waits (%s)", r->id,
                          act_task(a)->name, why);
                /* Shown `waiting`, and why, as for the engine's own limits. */
                flow__engine_tick(e);
                if (flow__run_journaling(r))
                    flow__run_journal(r, JREC_ACT_HELD, a, json_pack("{s:s}", "reason", why));
                flow__run_notify(r, FLOW_EV_TASK_WAITING, a, why, 0);
                flow__engine_wake(e);
            }
            char *copy = flow__strdup(why);
            if (copy) {
                flow__free(h->why);
                h->why = copy;
            }
        }
    }
    f->check_at = flow__now_ns() + FLEET_TTL_NS;
    flow__rfit_let_go(f, e);
}

const char *flow__rfit_waiting_for(const struct flow__rfit *f, const struct act *a)
{
    for (size_t i = 0; i < f->held.count; i++)
        if (f->held.items[i].a == a)
            return f->held.items[i].why;
    return NULL;
}

void flow__rfit_cleanup(struct flow__rfit *f, struct flow_engine *e)
{
    while (f->held.count)
        unhold(f, e, f->held.count - 1);
    flow__rfit_let_go(f, e);
    FLOW__VEC_FREE(&f->held);
    FLOW__VEC_FREE(&f->unrefs);
    json_decref(f->fleet);
    f->fleet = NULL;
}
