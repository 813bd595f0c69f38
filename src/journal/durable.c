/* durable.c -- group commit: runs append records to their journal's queue
 * under the engine lock; one committer thread per store writes each queue as
 * one transaction, in order, claims the answers runs give to their own
 * feedback requests (timeouts), and renews leases and takes control
 * requests on its 200 ms tick. See durable.h for the locks and
 * docs/internals/store.md for the design.
 *
 * Payloads share values with the run (outputs, state), whose reference
 * counts the scheduler changes under the engine lock. The committer only
 * reads them: a written batch goes back to its journal and is freed by the
 * next append, which runs under that lock, or by close. jansson's counts
 * are atomic, but json_incref and json_decref read them with a plain load
 * first and the last decref frees without an acquire, so counting one value
 * from two threads is a data race (ThreadSanitizer reports it). */
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

/* An answer a run wants the store to take (see flow__journal_durable_claim). */
struct claim {
    char *request;
    json_t *answer;
};

/* Records appended together: a journal's queue, then the batch the
 * committer writes, then a written batch waiting to be freed. */
struct batch {
    struct batch *next; /* written batches of a journal */
    size_t count, cap;
    struct flow__jrec recs[];
};

struct djournal {
    struct flow_store *store;
    char run_id[80];
    struct batch *queue;   /* [mu] appended, not yet taken; NULL: empty */
    struct batch *written; /* [mu] written, payloads not yet freed */
    FLOW__VEC(struct claim) claims; /* [mu] answers to claim, in order */
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

/* ---- batches ------------------------------------------------------------ */

static size_t queued(const struct djournal *j)
{
    return j->queue ? j->queue->count : 0;
}

/* Append `rec` to the batch *bp (made on the first record). */
static flow_err batch_push(struct batch **bp, const struct flow__jrec *rec)
{
    struct batch *b = *bp;
    if (!b || b->count == b->cap) {
        size_t cap = b ? b->cap * 2 : 16;
        if (cap > (SIZE_MAX - sizeof(*b)) / sizeof(b->recs[0]))
            return FLOW_ENOMEM;
        struct batch *grown = flow__realloc(b, sizeof(*b) + cap * sizeof(b->recs[0]));
        if (!grown)
            return FLOW_ENOMEM;
        if (!b) {
            grown->next = NULL;
            grown->count = 0;
        }
        grown->cap = cap;
        *bp = b = grown;
    }
    b->recs[b->count++] = *rec;
    return FLOW_OK;
}

/* Free batches and their payloads: under the engine lock, or once the run
 * is no longer scheduled. */
static void batches_free(struct batch *b)
{
    while (b) {
        struct batch *next = b->next;
        for (size_t i = 0; i < b->count; i++)
            json_decref(b->recs[i].payload);
        flow__free(b);
        b = next;
    }
}

/* ---- the committer ------------------------------------------------------ */

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
    struct batch *b = j->queue;
    size_t n = b->count;
    j->queue = NULL;
    j->writing = true;
    pthread_mutex_unlock(&s->mu);

    flow_error err = {0};
    flow_err rc;
    int64_t began = flow__now_ns();
    FLOW__WITH_STORE(s, rc = flow__store_append(s->backend, j->run_id, b->recs, n,
                                                j->strict ? FLOW__STORE_SYNC : 0, &err));
    double took = (double)(flow__now_ns() - began) / 1e9;

    pthread_mutex_lock(&s->mu);
    flow__commit_stats_add(&s->commits, took);
    b->next = j->written;
    j->written = b;
    j->writing = false;
    if (rc == FLOW_OK) {
        j->durable += n;
    } else if (j->failure.code == FLOW_OK) {
        j->failure = err;
        j->failure.code = rc;
    }
    pthread_cond_broadcast(&s->done);
}

static void free_claims(struct claim *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        flow__free(c[i].request);
        json_decref(c[i].answer);
    }
    flow__free(c);
}

/* [mu] Claim one journal's answers, in order, and tell the run which
 * answer stands for each. */
static void write_claims(struct flow_store *s, struct djournal *j)
{
    struct claim *c = j->claims.items;
    size_t n = j->claims.count;
    j->claims.items = NULL;
    j->claims.count = j->claims.cap = 0;
    j->in_hook++; /* pinned: dj_close waits while we use it unlocked */
    pthread_mutex_unlock(&s->mu);
    flow_error err = {0};
    flow_err rc = FLOW_OK;
    for (size_t i = 0; i < n && rc == FLOW_OK; i++) {
        json_t *winner = NULL;
        FLOW__WITH_STORE(s, rc = flow__store_answer_claim(s->backend, j->run_id, c[i].request,
                                                          c[i].answer, 0, &winner, &err));
        if (rc == FLOW_EEXISTS) /* someone answered first: theirs stands */
            rc = FLOW_OK;
        if (rc == FLOW_OK && j->hooks.answered)
            j->hooks.answered(j->hooks.udata, c[i].request, winner ? winner : c[i].answer);
        json_decref(winner);
    }
    free_claims(c, n);
    pthread_mutex_lock(&s->mu);
    j->in_hook--;
    if (rc != FLOW_OK && j->failure.code == FLOW_OK) {
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
                           ((queued(j) || j->claims.count) && !j->failure.code))))
                j = j->next;
            if (!j)
                break;
            j->pass = pass;
            wrote = true;
            if (j->failure.code)
                call_failed(s, j);
            else if (queued(j))
                write_batch(s, j);
            else
                write_claims(s, j);
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

/* flow_store_close: the writer finishes what is queued, then exits. */
static void stop_committer(struct flow_store *s)
{
    pthread_mutex_lock(&s->mu);
    s->shutdown = true;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
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
    flow_err rc;
    pthread_mutex_lock(&s->mu);
    struct batch *written = j->written; /* we hold the engine lock: free them */
    j->written = NULL;
    rc = j->failure.code;
    if (rc == FLOW_OK && (rc = batch_push(&j->queue, rec)) == FLOW_OK) {
        j->appended++;
        if (j->queue->count == 1) /* else it was kicked for the first one */
            kick(s);
    } else if (rc == FLOW_ENOMEM && !j->failure.code) {
        /* A record lost: the next ones must not follow it, or the journal
         * is no longer the prefix replay needs. */
        flow__error(&j->failure, FLOW_ENOMEM, "out of memory queueing a record of run '%s'",
                    j->run_id);
    }
    pthread_mutex_unlock(&s->mu);
    batches_free(written);
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

/* [mu] Wait until `j` has nothing queued or being written (or failed). */
static void drain(struct flow_store *s, struct djournal *j)
{
    while ((queued(j) || j->writing) && !j->failure.code) {
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
    struct batch *left = j->queue; /* only when writing had failed */
    struct batch *written = j->written;
    struct claim *unclaimed = j->claims.items; /* the run is over: nobody waits for them */
    size_t nunclaimed = j->claims.count;
    pthread_mutex_unlock(&s->mu);
    batches_free(left);
    batches_free(written);
    free_claims(unclaimed, nunclaimed);
    if (j->lease)
        FLOW__WITH_STORE(s, flow__store_lease_release(s->backend, j->run_id, s->holder, NULL));
    flow__free(j);
}

static const struct flow__journal_ops durable_ops = {
    .version = 1,
    .name = "durable",
    .append = dj_append, /* queued; the committer writes */
    .commit = dj_commit, /* wakes the committer */
    .close = dj_close,   /* drains, releases the lease */
    .wait = dj_wait,
};

/* [mu] Does a journal of this process, not closing, write run `id`? */
static bool executing_locked(struct flow_store *s, const char *id)
{
    for (struct djournal *other = s->journals; other; other = other->next)
        if (!other->closing && !strcmp(other->run_id, id))
            return true;
    return false;
}

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
    if (executing_locked(s, d->run_id)) {
        pthread_mutex_unlock(&s->mu);
        flow__free(d);
        return flow__error(err, FLOW_EBUSY, "run '%s' is being executed by this process",
                           o->run_id);
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
    /* Again: two threads of this process may have opened it at once, and
     * the lease, whose holder is the process, let both through. The loser
     * leaves the lease alone: it is the winner's. */
    if (executing_locked(s, d->run_id)) {
        pthread_mutex_unlock(&s->mu);
        flow__free(d);
        return flow__error(err, FLOW_EBUSY, "run '%s' is being executed by this process",
                           o->run_id);
    }
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
        s->stop_writer = stop_committer;
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

flow_err flow__journal_durable_claim(struct flow__journal *j, const char *request,
                                     json_t *answer)
{
    if (j->ops != &durable_ops)
        return FLOW_EUNSUPPORTED;
    struct djournal *d = j->priv;
    struct flow_store *s = d->store;
    struct claim c = {flow__strdup(request), json_deep_copy(answer)};
    flow_err rc = c.request && c.answer ? FLOW_OK : FLOW_ENOMEM;
    pthread_mutex_lock(&s->mu);
    if (rc == FLOW_OK && d->failure.code)
        rc = d->failure.code;
    if (rc == FLOW_OK)
        FLOW__VEC_PUSH(&d->claims, c, rc);
    if (rc == FLOW_OK)
        kick(s);
    pthread_mutex_unlock(&s->mu);
    if (rc != FLOW_OK) {
        flow__free(c.request);
        json_decref(c.answer);
    }
    return rc;
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
