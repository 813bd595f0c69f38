/* durable.c -- group commit: runs append records to their journal's queue
 * under the engine lock; one committer thread per store writes each queue as
 * one transaction, in order, and also renews leases and takes control
 * requests on its 200 ms tick. See durable.h for the locks and
 * docs/internals/store.md for the design. */
#include "util/compat.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "journal/durable.h"

#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/vec.h"

#define TICK_MS 200
/* After a wake-up for new records, the committer waits this long for more
 * before it writes: spread-out appends (a run of slow tasks) then cost a
 * wake-up a millisecond at most, not one a record. Flushes skip it. */
#define LINGER_NS 1000000L

struct djournal {
    struct flow_store *store;
    char run_id[80];
    FLOW__VEC(struct flow__jrec) queue; /* [mu] appended, not yet taken */
    uint64_t appended;   /* [mu] records appended in this process */
    uint64_t durable;    /* [mu] of those, written */
    bool writing;        /* [mu] the committer holds a batch of ours */
    bool strict;
    bool lease;
    bool ready;          /* [mu] the run takes control requests now */
    bool closing;        /* [mu] */
    int in_hook;         /* [mu] hook calls in progress */
    flow_error failure;  /* [mu] code != OK once a write failed */
    bool failure_told;   /* [mu] the failed hook was called */
    double lease_renewed;
    unsigned pass;       /* [mu] the committer's last pass that served it */
    struct flow__journal_hooks hooks;
    struct djournal *next;
};

/* ---- the committer ------------------------------------------------------ */

static void free_batch(struct flow__jrec *recs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_decref(recs[i].payload);
    flow__free(recs);
}

/* [mu held on entry and exit] Call a hook of `j` without the lock. */
static void call_control(struct flow_store *s, struct djournal *j, char *kind, char *arg)
{
    j->in_hook++;
    pthread_mutex_unlock(&s->mu);
    if (j->hooks.control)
        j->hooks.control(j->hooks.udata, kind, arg);
    flow__free(kind);
    flow__free(arg);
    pthread_mutex_lock(&s->mu);
    j->in_hook--;
    pthread_cond_broadcast(&s->done);
}

static void call_failed(struct flow_store *s, struct djournal *j)
{
    char msg[sizeof(j->failure.message)];
    memcpy(msg, j->failure.message, sizeof(msg));
    j->failure_told = true;
    j->in_hook++;
    pthread_mutex_unlock(&s->mu);
    if (j->hooks.failed)
        j->hooks.failed(j->hooks.udata, msg);
    pthread_mutex_lock(&s->mu);
    j->in_hook--;
    pthread_cond_broadcast(&s->done);
}

/* [mu] Write one journal's queue as one batch. */
static void write_batch(struct flow_store *s, struct djournal *j)
{
    struct flow__jrec *recs = j->queue.items;
    size_t n = j->queue.count;
    j->queue.items = NULL;
    j->queue.count = j->queue.cap = 0;
    j->writing = true;
    pthread_mutex_unlock(&s->mu);

    flow_error err = {0};
    flow_err rc;
    FLOW__WITH_STORE(s, rc = flow__store_append(s->backend, j->run_id, recs, n,
                                                j->strict ? FLOW__STORE_SYNC : 0, &err));
    free_batch(recs, n);

    pthread_mutex_lock(&s->mu);
    j->writing = false;
    if (rc == FLOW_OK) {
        j->durable += n;
    } else if (j->failure.code == FLOW_OK) {
        j->failure = err;
        j->failure.code = rc;
    }
    pthread_cond_broadcast(&s->done);
}

/* [mu] Renew leases that are due and take control requests. */
static void tick(struct flow_store *s)
{
    double now = flow__wall_time();
    for (struct djournal *j = s->journals; j; j = j->next) {
        if (!j->lease || j->closing || j->failure.code)
            continue;
        char *kind = NULL, *arg = NULL;
        bool renew = now - j->lease_renewed >= FLOW__LEASE_RENEW;
        bool ready = j->ready;
        j->in_hook++; /* pinned: dj_close waits while we use it unlocked */
        pthread_mutex_unlock(&s->mu);
        pthread_mutex_lock(&s->io);
        flow_error lost = {0};
        flow_err renewed = FLOW_OK;
        if (renew) {
            renewed = flow__store_lease_acquire(s->backend, j->run_id, s->holder, now,
                                                FLOW__LEASE_TTL, &lost);
            if (renewed == FLOW_OK)
                j->lease_renewed = now;
        }
        if (ready && renewed != FLOW_EBUSY) /* else requests wait in the store */
            flow__store_control_take(s->backend, j->run_id, &kind, &arg, NULL);
        pthread_mutex_unlock(&s->io);
        pthread_mutex_lock(&s->mu);
        j->in_hook--;
        pthread_cond_broadcast(&s->done);
        if (renewed == FLOW_EBUSY && !j->failure.code) {
            /* Another process took the run over (we were stopped past the
             * lease): writing on would interleave two journals. */
            flow__error(&j->failure, FLOW_EBUSY, "lost the lease on run '%s': %.300s", j->run_id,
                        lost.message);
            pthread_cond_broadcast(&s->done);
        }
        if (kind && !j->closing) {
            call_control(s, j, kind, arg);
        } else {
            flow__free(kind);
            flow__free(arg);
        }
    }
}

/* Each pass serves every journal once, so a busy run cannot starve the
 * others; the list is walked again after each unlocked write because it may
 * have changed meanwhile. */
static void *committer_main(void *arg)
{
    struct flow_store *s = arg;
    int64_t next_tick = flow__now_ns() + TICK_MS * 1000000LL;
    unsigned pass = 0;
    bool woken = false;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (woken && !s->flush_now && !s->shutdown) {
            struct timespec linger = {0, LINGER_NS};
            pthread_mutex_unlock(&s->mu);
            nanosleep(&linger, NULL);
            pthread_mutex_lock(&s->mu);
        }
        woken = false;
        s->flush_now = false;
        pass++;
        bool wrote = false;
        for (;;) {
            struct djournal *j = s->journals;
            while (j && (j->pass == pass || j->closing ||
                         !((j->failure.code && !j->failure_told) ||
                           (j->queue.count && !j->failure.code))))
                j = j->next;
            if (!j)
                break;
            j->pass = pass;
            wrote = true;
            if (j->failure.code)
                call_failed(s, j);
            else
                write_batch(s, j);
        }
        if (wrote)
            continue;
        if (flow__now_ns() >= next_tick) {
            tick(s);
            next_tick = flow__now_ns() + TICK_MS * 1000000LL;
            continue;
        }
        if (s->shutdown)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t wait_ns = next_tick - flow__now_ns();
        if (wait_ns < 0)
            wait_ns = 0;
        ts.tv_sec += (time_t)(wait_ns / 1000000000LL);
        ts.tv_nsec += (long)(wait_ns % 1000000000LL);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        s->committer_idle = true;
        woken = pthread_cond_timedwait(&s->work, &s->mu, &ts) == 0;
        s->committer_idle = false;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* [mu] Wake the committer if it sleeps. */
static void kick(struct flow_store *s)
{
    if (s->committer_idle) {
        s->committer_idle = false;
        pthread_cond_signal(&s->work);
    }
}

/* ---- the journal vtable ------------------------------------------------- */

static flow_err dj_append(void *priv, struct flow__jrec *rec)
{
    struct djournal *j = priv;
    struct flow_store *s = j->store;
    flow_err rc = FLOW_OK;
    pthread_mutex_lock(&s->mu);
    if (j->failure.code) {
        rc = j->failure.code;
    } else {
        FLOW__VEC_PUSH(&j->queue, *rec, rc);
        if (rc == FLOW_OK) {
            j->appended++;
            if (j->queue.count == 1) /* else it was kicked for the first one */
                kick(s);
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != FLOW_OK)
        json_decref(rec->payload);
    return rc;
}

static flow_err dj_commit(void *priv)
{
    struct djournal *j = priv;
    pthread_mutex_lock(&j->store->mu);
    j->store->flush_now = true;
    kick(j->store);
    pthread_mutex_unlock(&j->store->mu);
    return FLOW_OK;
}

static size_t dj_count(void *priv)
{
    (void)priv;
    return 0; /* records are in the store, not here */
}

static const struct flow__jrec *dj_get(void *priv, size_t i)
{
    (void)priv;
    (void)i;
    return NULL;
}

/* [mu] Wait until `j` has nothing queued or being written (or failed). */
static void drain(struct flow_store *s, struct djournal *j)
{
    while ((j->queue.count || j->writing) && !j->failure.code) {
        s->flush_now = true;
        kick(s);
        pthread_cond_wait(&s->done, &s->mu);
    }
}

static flow_err dj_wait(void *priv, flow_error *err)
{
    struct djournal *j = priv;
    struct flow_store *s = j->store;
    pthread_mutex_lock(&s->mu);
    drain(s, j);
    flow_err rc = j->failure.code;
    if (rc && err)
        *err = j->failure;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void dj_close(void *priv)
{
    struct djournal *j = priv;
    if (!j)
        return;
    struct flow_store *s = j->store;
    pthread_mutex_lock(&s->mu);
    drain(s, j);
    j->closing = true;
    while (j->in_hook || j->writing)
        pthread_cond_wait(&s->done, &s->mu);
    for (struct djournal **p = &s->journals; *p; p = &(*p)->next) {
        if (*p == j) {
            *p = j->next;
            break;
        }
    }
    struct flow__jrec *left = j->queue.items;
    size_t nleft = j->queue.count;
    pthread_mutex_unlock(&s->mu);
    free_batch(left, nleft); /* only when writing had failed */
    if (j->lease)
        FLOW__WITH_STORE(s, flow__store_lease_release(s->backend, j->run_id, s->holder, NULL));
    flow__free(j);
}

static const struct flow__journal_ops durable_ops = {
    .version = 1,
    .name = "durable",
    .append = dj_append, /* queued; the committer writes */
    .commit = dj_commit, /* wakes the committer */
    .count = dj_count,
    .get = dj_get,
    .close = dj_close,   /* drains, releases the lease */
    .wait = dj_wait,
};

flow_err flow__journal_durable_open(struct flow__journal *j, struct flow_store *s,
                                    const struct flow__durable_opts *o, flow_error *err)
{
    struct djournal *d = flow__calloc(1, sizeof(*d));
    if (!d)
        return flow__error(err, FLOW_ENOMEM, "out of memory opening the journal of run '%s'",
                           o->run_id);
    d->store = s;
    snprintf(d->run_id, sizeof(d->run_id), "%s", o->run_id);
    d->strict = o->strict;
    d->lease = o->lease;
    d->hooks = o->hooks;
    (void)o->next_seq;
    pthread_mutex_lock(&s->mu);
    for (struct djournal *other = s->journals; other; other = other->next) {
        if (!other->closing && !strcmp(other->run_id, d->run_id)) {
            pthread_mutex_unlock(&s->mu);
            flow__free(d);
            return flow__error(err, FLOW_EBUSY, "run '%s' is being executed by this process",
                               o->run_id);
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (d->lease) {
        double now = flow__wall_time();
        flow_err rc;
        FLOW__WITH_STORE(s, rc = flow__store_lease_acquire(s->backend, d->run_id, s->holder, now,
                                                           FLOW__LEASE_TTL, err));
        if (rc != FLOW_OK) {
            flow__free(d);
            return rc;
        }
        d->lease_renewed = now;
    }
    pthread_mutex_lock(&s->mu);
    if (!s->thread_started) {
        if (pthread_create(&s->thread, NULL, committer_main, s) != 0) {
            pthread_mutex_unlock(&s->mu);
            if (d->lease)
                FLOW__WITH_STORE(s, flow__store_lease_release(s->backend, d->run_id, s->holder,
                                                              NULL));
            flow__free(d);
            return flow__error(err, FLOW_ESYSTEM, "cannot start the journal's writer thread");
        }
        s->thread_started = true;
    }
    d->next = s->journals;
    s->journals = d;
    pthread_mutex_unlock(&s->mu);
    j->ops = &durable_ops;
    j->priv = d;
    return FLOW_OK;
}

flow_err flow__journal_durable_wait(struct flow__journal *j, flow_error *err)
{
    return flow__journal_wait(j, err);
}

void flow__journal_durable_ready(struct flow__journal *j)
{
    if (j->ops != &durable_ops)
        return;
    struct djournal *d = j->priv;
    pthread_mutex_lock(&d->store->mu);
    d->ready = true;
    pthread_mutex_unlock(&d->store->mu);
}

bool flow__journal_durable_failed(struct flow__journal *j, flow_error *err)
{
    if (j->ops != &durable_ops)
        return false;
    struct djournal *d = j->priv;
    pthread_mutex_lock(&d->store->mu);
    bool failed = d->failure.code != FLOW_OK;
    if (failed && err)
        *err = d->failure;
    pthread_mutex_unlock(&d->store->mu);
    return failed;
}

/* ---- reading back ------------------------------------------------------- */

struct collect {
    FLOW__VEC(struct flow__jrec) recs;
};

static flow_err collect_rec(void *udata, uint64_t seq, const struct flow__jrec *rec)
{
    struct collect *c = udata;
    (void)seq;
    flow_err rc = FLOW_OK;
    struct flow__jrec copy = *rec;
    copy.payload = json_incref(rec->payload);
    FLOW__VEC_PUSH(&c->recs, copy, rc);
    if (rc)
        json_decref(copy.payload);
    return rc;
}

flow_err flow__store_read_all(struct flow_store *s, const char *run_id, struct flow__jrec **out,
                              size_t *count, flow_error *err)
{
    struct collect c = {0};
    flow_err rc;
    FLOW__WITH_STORE(s, rc = flow__store_read(s->backend, run_id, 0, collect_rec, &c, err));
    if (rc == FLOW_ENOMEM && err && !err->message[0])
        flow__error(err, rc, "out of memory reading the journal of run '%s'", run_id);
    if (rc != FLOW_OK) {
        flow__records_free(c.recs.items, c.recs.count);
        *out = NULL;
        *count = 0;
        return rc;
    }
    *out = c.recs.items;
    *count = c.recs.count;
    return FLOW_OK;
}

void flow__records_free(struct flow__jrec *recs, size_t count)
{
    free_batch(recs, count);
}

/* ---- the public handle -------------------------------------------------- */

#define DEFAULT_STORE_URL "sqlite:.flow/flow.db"

const char *flow_store_default_url(void)
{
    const char *env = getenv("FLOW_STORE");
    return env && *env ? env : DEFAULT_STORE_URL;
}

flow_store *flow_store_open(const char *url, flow_error *err)
{
    return flow_store_open_flags(url, 0, err);
}

flow_store *flow_store_open_flags(const char *url, unsigned flags, flow_error *err)
{
    if (!url)
        url = flow_store_default_url();
    /* The default store is in whatever directory the user is in: one that
     * others can write to or that is a link could hand them the journal. */
    if (!strcmp(url, DEFAULT_STORE_URL) &&
        flow__store_check_private(".flow", ".flow/flow.db", err) != FLOW_OK)
        return NULL;
    struct flow_store *s = flow__calloc(1, sizeof(*s));
    if (!s) {
        flow__error(err, FLOW_ENOMEM, "out of memory opening store '%s'", url);
        return NULL;
    }
    unsigned bflags = flags & FLOW_STORE_NOCREATE ? FLOW__STORE_OPEN_NOCREATE : 0;
    if (flow__store_open_flags(url, bflags, &s->backend, err) != FLOW_OK) {
        flow__free(s);
        return NULL;
    }
    pthread_mutex_init(&s->io, NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->done, NULL);
    flow__lease_holder(s->holder, sizeof(s->holder));
    return s;
}

void flow_store_close(flow_store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->shutdown = true;
    bool started = s->thread_started;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    if (started)
        pthread_join(s->thread, NULL);
    flow__store_close(s->backend);
    pthread_cond_destroy(&s->done);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->io);
    flow__free(s);
}

const char *flow_store_url(const flow_store *s)
{
    return s->backend->url;
}

bool flow_store_is_durable(const flow_store *s)
{
    return flow__store_has_cap(s->backend, FLOW__STORE_CAP_DURABLE | FLOW__STORE_CAP_CROSS_PROCESS);
}
