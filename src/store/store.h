/* store.h -- where runs and their journals are kept, behind a vtable (SQLite's
 * VFS shape): one backend per URL scheme, chosen by flow__store_open.
 *
 * DESIGN (docs/internals/store.md)
 * A store holds runs (their metadata) and each run's ordered list of journal
 * records. Records get sequence numbers 0, 1, 2, ... in the order they were
 * appended: the seq of a record is its index in the run's journal. One
 * `append` call is one transaction: all its records are kept or none is, so
 * that what survives a crash is always a prefix of what was appended.
 *
 * A store is not thread-safe: one thread at a time (the committer) may call
 * it. Callbacks (run_list, read) must not call the store they come from.
 */
#ifndef FLOW_STORE_STORE_H
#define FLOW_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flow.h"
#include "store/record.h"
#include "util/error.h"
#include "util/redact.h"
#include "util/strmap.h"

/* The highest store format this libflow reads and writes. */
#define FLOW__STORE_FORMAT 1

/* Capability bits (ops->caps). */
#define FLOW__STORE_CAP_DURABLE (1u << 0)       /* survives the process */
#define FLOW__STORE_CAP_CROSS_PROCESS (1u << 1) /* other processes see the same runs */

/* Flags for ops->open. */
#define FLOW__STORE_OPEN_NOCREATE (1u << 0) /* a missing store is FLOW_ENOTFOUND */

/* Flags for ops->append. */
#define FLOW__STORE_SYNC (1u << 0) /* survive power loss before returning (fsync,
                                    * synchronous=FULL); without it the batch
                                    * need only survive the process */

/* How long a lease lasts unless renewed, and how often a runner renews it. */
#define FLOW__LEASE_TTL 15.0
#define FLOW__LEASE_RENEW 3.0
/* How long slot_acquire's mark that a holder waits for a key lasts: a
 * waiter asks again at least every quarter second, so a mark outlives
 * many of its renewals and vanishes soon after its holder stops asking. */
#define FLOW__SLOT_WANT_TTL 3.0

/* A run as the store knows it. Strings and `inputs` are owned by whoever
 * filled the struct: run_get fills it with new copies the caller frees with
 * flow__run_meta_cleanup; run_create only reads it. */
struct flow__run_meta {
    char id[80];      /* NUL-terminated, not empty */
    char *flow;       /* flow name, may be NULL */
    char *version;    /* flow version, may be NULL */
    char *def_hash;   /* hash of the flow definition, may be NULL */
    char *source;     /* the workflow file it was loaded from, may be NULL */
    char *parent;     /* a nested run: its parent run's id, else NULL */
    json_t *inputs;   /* may be NULL */
    int status;       /* flow_run_status */
    double created_at; /* epoch seconds */
    double ended_at;   /* epoch seconds, 0 while the run has not ended */
};

/* Free what `m` owns (not `m` itself) and zero it; NULL is a no-op. */
void flow__run_meta_cleanup(struct flow__run_meta *m);

/* run_list callback: `meta` is borrowed for the call only. A return other
 * than FLOW_OK stops the listing, which then returns that code. */
typedef flow_err (*flow__store_run_cb)(void *udata, const struct flow__run_meta *meta);

/* read callback: `rec` and its payload are borrowed for the call only
 * (json_incref the payload to keep it). A return other than FLOW_OK stops
 * the read, which then returns that code. */
typedef flow_err (*flow__store_rec_cb)(void *udata, uint64_t seq, const struct flow__jrec *rec);

/* Every method fills `err` (may be NULL) when it fails and returns the code;
 * a failed method changes nothing in the store. Messages name the store. */
struct flow__store_ops {
    int version;        /* 1 to 4: the methods it has (below) */
    const char *scheme; /* URL scheme: "sqlite" */
    unsigned caps;      /* FLOW__STORE_CAP_* */

    /* Open the store at `url_rest` (the URL after "scheme:"), creating it
     * unless FLOW__STORE_OPEN_NOCREATE; *priv gets the backend's state.
     * Refuses a store written in a newer format. Mandatory. */
    flow_err (*open)(const char *url_rest, unsigned flags, void **priv, flow_error *err);
    /* Release everything; cannot fail. Mandatory. */
    void (*close)(void *priv);

    /* Record a new run from `meta` (copied). FLOW_EEXISTS when a run with
     * that id is already there, FLOW_EINVAL for an id flow__store_check_id
     * refuses. Mandatory. */
    flow_err (*run_create)(void *priv, const struct flow__run_meta *meta, flow_error *err);
    /* Fill `out` (zeroed first) with a copy of run `id`; the caller cleans
     * it up with flow__run_meta_cleanup. FLOW_ENOTFOUND if there is none.
     * Mandatory. */
    flow_err (*run_get)(void *priv, const char *id, struct flow__run_meta *out,
                        flow_error *err);
    /* Call `cb` for every run, oldest first (created_at, then id). Mandatory. */
    flow_err (*run_list)(void *priv, flow__store_run_cb cb, void *udata, flow_error *err);
    /* Set a run's status and end time (0: not ended). FLOW_ENOTFOUND if
     * there is no such run. Mandatory. */
    flow_err (*run_set_status)(void *priv, const char *id, int status, double ended_at,
                               flow_error *err);

    /* Append `n` records to run `run_id`'s journal, in order, as one
     * transaction: after a crash either all of them are there or none is.
     * (The disk store keeps a prefix only: a crash in the middle of its one
     * write() can keep the first records of the batch; see store_disk.c.)
     * A failed append adds nothing. The records are borrowed (the caller
     * keeps its payload references).
     * `flags`: FLOW__STORE_SYNC. FLOW_ENOTFOUND if the run does not exist.
     * Mandatory. */
    flow_err (*append)(void *priv, const char *run_id, const struct flow__jrec *recs, size_t n,
                       unsigned flags, flow_error *err);
    /* Make everything appended so far durable. Optional (NULL: each append
     * is already its own commit). */
    flow_err (*commit)(void *priv, const char *run_id, flow_error *err);
    /* Call `cb` for each record of run `run_id` with seq >= from_seq, in
     * order. FLOW_ENOTFOUND if the run does not exist; a record whose
     * payload cannot be parsed is FLOW_EPARSE. Mandatory. */
    flow_err (*read)(void *priv, const char *run_id, uint64_t from_seq, flow__store_rec_cb cb,
                     void *udata, flow_error *err);
    /* Delete run `id` and everything it has (journal, lease, requests).
     * FLOW_ENOTFOUND if there is none. Mandatory. */
    flow_err (*run_delete)(void *priv, const char *id, flow_error *err);

    /* Take, or renew, the lease on run `id` for `holder` ("pid@host") until
     * `now + ttl` (epoch seconds). Another holder's live lease is FLOW_EBUSY
     * with a message from flow__lease_busy (it names the pid and host); a
     * lease is not live once expired, or when its holder is a process of
     * this host that no longer exists (flow__lease_is_live). FLOW_ENOTFOUND
     * if there is no such run. Mandatory. */
    flow_err (*lease_acquire)(void *priv, const char *id, const char *holder, double now,
                              double ttl, flow_error *err);
    /* Give up `holder`'s lease on run `id`; nothing when another holds it or
     * none does. Mandatory. */
    flow_err (*lease_release)(void *priv, const char *id, const char *holder, flow_error *err);
    /* Who holds a live lease on run `id` at `now`: *holder gets a copy
     * (flow__free) or NULL when nobody does. FLOW_ENOTFOUND if there is no
     * such run. Mandatory. */
    flow_err (*lease_get)(void *priv, const char *id, double now, char **holder,
                          flow_error *err);

    /* Leave a request for whoever runs `id`: `kind` "pause" or "cancel",
     * `arg` a reason (may be NULL). Requests are taken in the order they
     * were put. FLOW_ENOTFOUND if there is no such run. Mandatory. */
    flow_err (*control_put)(void *priv, const char *id, const char *kind, const char *arg,
                            flow_error *err);
    /* Take (and remove) the oldest request for `id`: *kind and *arg become
     * the caller's (flow__free), both NULL when there is none. Mandatory. */
    flow_err (*control_take)(void *priv, const char *id, char **kind, char **arg,
                             flow_error *err);
    /* Methods above are valid for version 1. */

    /* version 2 */

    /* Record `answer` as THE answer to request `request` of run `run_id`:
     * the one compare-and-set every answer goes through (a person's, a
     * timeout's), so that of any number of concurrent claims, in threads
     * or processes sharing the store, exactly one gets FLOW_OK. Another
     * answer recorded first is FLOW_EEXISTS, and *winner (may be NULL)
     * gets a new reference to it. `not_after` (epoch seconds, 0: none): a
     * claim made once the store's clock has reached it is FLOW_ETIMEOUT
     * (a deadline is checked where the answer is taken). FLOW_ENOTFOUND if
     * there is no such run. A failed claim records nothing. Mandatory. */
    flow_err (*answer_claim)(void *priv, const char *run_id, const char *request,
                             json_t *answer, double not_after, json_t **winner,
                             flow_error *err);
    /* *out gets a new object: request id -> the answer recorded for it, for
     * every request of run `run_id` that has one. FLOW_ENOTFOUND if there
     * is no such run. Mandatory. */
    flow_err (*answer_list)(void *priv, const char *run_id, json_t **out, flow_error *err);
    /* Methods above are valid for version 2. */

    /* version 3: limits shared by every process using the store
     * (docs/internals/limits.md). Times are epoch seconds of the caller's
     * clock; `holder` is a lease holder ("pid@host", flow__lease_holder). */

    /* Concurrency key `key` has slots 0 .. limit-1. Take up to `want` of
     * the free ones for `holder` until now + ttl, in one transaction, and
     * write their numbers into slots[0 .. *got). A slot is free when nobody
     * holds it or its holder's lease is not live (flow__lease_is_live: it
     * expired, or its holder is a process of this host that is gone); a
     * slot numbered limit or more (a key another flow gives a higher
     * limit) does not count. `owner` (a run id, for people) is kept with
     * each slot. None free is not an error: FLOW_OK with *got 0.
     * In the same transaction it keeps `holder`'s demand mark of `key`
     * (slot_contended): granting fewer than `want` writes it, or renews
     * it, until now + FLOW__SLOT_WANT_TTL; granting all of them removes
     * it. */
    flow_err (*slot_acquire)(void *priv, const char *key, int limit, int want,
                             const char *holder, const char *owner, double now, double ttl,
                             int *slots, int *got, flow_error *err);
    /* Give back slots[0 .. n) of `key`, each only if `holder` holds it. */
    flow_err (*slot_release)(void *priv, const char *key, const int *slots, int n,
                             const char *holder, flow_error *err);
    /* Extend every slot `holder` holds, of every key, to now + ttl. */
    flow_err (*slot_renew)(void *priv, const char *holder, double now, double ttl,
                           flow_error *err);
    /* *out gets a new array of {key, slot, holder, owner, expires}: the
     * live slots at `now`, of `key` or of every key when `key` is NULL,
     * ordered by key then slot. */
    flow_err (*slot_list)(void *priv, const char *key, double now, json_t **out,
                          flow_error *err);
    /* Rate key `key` allows `limit` starts in any `window` seconds (a
     * sliding window log). Record up to `want` starts at `now`, as many as
     * fewer than `limit` starts in (now - window, now] allow, in one
     * transaction; *got says how many. When *got < want, *retry_at gets the
     * time the oldest start in the window leaves it (the next start may go
     * then; when a lowered limit left more than `limit` in it, the time
     * enough have left), else 0. Starts older than the window are
     * forgotten. A limit under 1, a ttl or window not a positive number is
     * FLOW_EINVAL (flow__limit_check). */
    flow_err (*rate_take)(void *priv, const char *key, int limit, double window, int want,
                          double now, int *got, double *retry_at, flow_error *err);
    /* *contended gets whether a holder other than `holder` waits for
     * `key`: its demand mark (slot_acquire) is live at `now`, judged as a
     * lease (flow__lease_is_live: not expired, not a dead pid of this
     * host). One read, for a holder that keeps passing a slot on among its
     * own waiters to ask whether it should give it back instead.
     * Optional: callers check it is not NULL (none: nobody waits). */
    flow_err (*slot_contended)(void *priv, const char *key, const char *holder, double now,
                               bool *contended, flow_error *err);
    /* Methods above are valid for version 3. */

    /* version 4: cached outputs of tasks (docs/internals/prompts.md,
     * "Cache"), shared by every process using the store. An entry is
     * named by (fname, task, key), three texts of any bytes but NUL; it
     * holds a JSON value (what a hit gives back), the time it was put and
     * an expiry (epoch seconds; 0: never). */

    /* *entry gets the entry named (fname, task, key) (a new reference, the
     * caller's) and *created the time it was put, or NULL and 0 when there
     * is none, or it has expired at `now` (its expiry is `now` or before).
     * An entry that cannot be read back (a torn file) is none. */
    flow_err (*cache_get)(void *priv, const char *fname, const char *task, const char *key,
                          double now, json_t **entry, double *created, flow_error *err);
    /* Keep `entry` (borrowed: copied) as the entry named (fname, task, key),
     * replacing any, put at `now`, until `expires` (0: never). Atomic: a
     * reader sees the old entry or the new one, whole. */
    flow_err (*cache_put)(void *priv, const char *fname, const char *task, const char *key,
                          const json_t *entry, double now, double expires, flow_error *err);
    /* Remove the entries expired at `now`, or every entry with `all`;
     * *removed gets how many. (Redis drops an expired entry by itself:
     * there only `all` finds any.) */
    flow_err (*cache_gc)(void *priv, double now, bool all, size_t *removed, flow_error *err);
    /* Methods above are valid for version 4. */
};

/* An open store. Owned by whoever opened it; freed by flow__store_close. */
struct flow__store {
    const struct flow__store_ops *ops;
    void *priv;
    char *url; /* the URL it was opened with */
    /* The values no write may carry: those of every run of this process
     * that used the store (flow__store_add_secrets), or NULL. Read and
     * changed by whoever calls the store, one at a time (the handle's io
     * lock). */
    struct flow__secrets *secrets;
};

/* ---- secrets (secrets.c) ----------------------------------------------- */

/* Redact the values of `add` (may be NULL) from everything written to `s`
 * from now on, as well as those it redacted before. FLOW_ENOMEM. */
flow_err flow__store_add_secrets(struct flow__store *s, struct flow__secrets *add,
                                 flow_error *err);
/* The writes below, with s->secrets redacted from what they write. */
flow_err flow__store_run_create_redacted(struct flow__store *s, const struct flow__run_meta *meta,
                                         flow_error *err);
flow_err flow__store_append_redacted(struct flow__store *s, const char *run_id,
                                     const struct flow__jrec *recs, size_t n, unsigned flags,
                                     flow_error *err);
flow_err flow__store_control_put_redacted(struct flow__store *s, const char *id,
                                          const char *kind, const char *arg, flow_error *err);
flow_err flow__store_answer_claim_redacted(struct flow__store *s, const char *run_id,
                                           const char *request, json_t *answer,
                                           double not_after, json_t **winner, flow_error *err);

/* The backends built in. */
extern const struct flow__store_ops flow__store_sqlite_ops;
extern const struct flow__store_ops flow__store_disk_ops;
extern const struct flow__store_ops flow__store_memory_ops;
extern const struct flow__store_ops flow__store_redis_ops;

/* ---- leases (store.c): shared by the backends -------------------------- */

/* This process as a lease holder: "PID@HOST". */
void flow__lease_holder(char *out, size_t size);
/* Is a lease held by `holder` until `expiry` live at `now`? Not when it has
 * expired, nor when `holder` names a process of this host that is gone. */
bool flow__lease_is_live(const char *holder, double expiry, double now);
/* Fill `err` with FLOW_EBUSY: "run 'ID' is being executed by pid P on host
 * H (lease expires in Ns)"; returns FLOW_EBUSY. `expiry` 0: not given. */
flow_err flow__lease_busy(flow_error *err, const char *id, const char *holder, double expiry,
                          double now);

/* ---- helpers for the backends (store.c) ------------------------------- */

/* Fill `dst` (zeroed first) with a deep copy of `src`; FLOW_ENOMEM leaves
 * `dst` zeroed. */
flow_err flow__run_meta_copy(struct flow__run_meta *dst, const struct flow__run_meta *src);
/* FLOW_EINVAL unless `id` can name a run in every backend: not empty,
 * shorter than flow__run_meta.id, no '/', not starting with '.' (the disk
 * store makes it a directory name). `store` names the store in messages. */
flow_err flow__store_check_id(const char *store, const char *id, flow_error *err);
/* Split the URL rest "PATH[?durability=normal|strict]" of `scheme`: *path
 * becomes the caller's (flow__free); *strict is true for strict. */
flow_err flow__store_parse_url(const char *scheme, const char *rest, char **path, bool *strict,
                               flow_error *err);
/* Create every missing directory above `path`, and `path` itself when
 * `self`, with mode 0700. Messages name the store `path`. */
flow_err flow__store_make_dirs(const char *path, bool self, flow_error *err);
/* The default store lives in the current directory, which may not be
 * private: refuse its directory `dir` when it is a symbolic link, not a
 * directory, someone else's or writable by group or others, and its file
 * `file` (may be NULL) when it is a link, not a regular file, someone
 * else's or writable by others. Missing is fine (created 0700 / 0600). The
 * message names the path and says what to do. */
flow_err flow__store_check_private(const char *dir, const char *file, flow_error *err);
/* Fill `err` with FLOW_EUNSUPPORTED: store `path` has format `format`, newer
 * than FLOW__STORE_FORMAT; returns FLOW_EUNSUPPORTED. */
flow_err flow__store_newer_format(flow_error *err, const char *path, long format);
/* A backend's entry for run `id` in `map`: entries are `size`-byte structs
 * that begin with `char id[80]`, the map's key. A missing one is created
 * zeroed with the id (*created true); NULL when out of memory. */
void *flow__store_run_entry(struct flow__strmap *map, const char *id, size_t size,
                            bool *created);
/* Call `release` (may be NULL) on every entry of `map`, free them and the
 * map. */
void flow__store_run_entries_free(struct flow__strmap *map, void (*release)(void *entry));
/* May `holder` take the lease on run `id` that `current` (NULL: nobody)
 * holds until `expiry`? FLOW_OK when nobody holds it, `holder` does, or
 * the lease is not live at `now`; else flow__lease_busy. For backends that
 * keep the lease as data (sqlite, memory). */
flow_err flow__lease_check(flow_error *err, const char *id, const char *current, double expiry,
                           const char *holder, double now);

/* ---- limits (store.c): shared by the backends -------------------------- */

/* FLOW_EINVAL unless `key` is a string (any, even empty), `limit` at least
 * 1 and `span` (a lease's ttl, a rate's window) a positive, finite number of
 * seconds. `kind` ("concurrency", "rate") and `store` name them in the
 * message. */
flow_err flow__limit_check(const char *store, const char *kind, const char *key, int limit,
                           double span, flow_error *err);
/* slot_acquire's choice: the lowest `want` numbers of 0 .. limit-1 that are
 * not in busy[0 .. nbusy) (ascending; numbers of `limit` or more are
 * ignored) into `slots`; returns how many. */
int flow__slot_pick(const int *busy, size_t nbusy, int limit, int want, int *slots);
/* Append {key, slot, holder, owner (null when NULL), expires} to the array
 * `list`. FLOW_ENOMEM. */
flow_err flow__slot_push(json_t *list, const char *key, int slot, const char *holder,
                         const char *owner, double expires);
/* Order slot_list's array by key (bytes) then slot. FLOW_ENOMEM leaves it
 * as it was. */
flow_err flow__slot_sort(json_t *list);
/* rate_take on a key's log starts[0 .. n) (any order), for the backends
 * that keep it as an array: forgets the starts at or before now - window,
 * records *got starts at `now`, sets *retry_at (0 when *got == want) and
 * leaves the log sorted, oldest first; returns its new length. `starts`
 * must have room for n + min(want, limit) entries. */
size_t flow__rate_apply(double *starts, size_t n, int limit, double window, int want, double now,
                        int *got, double *retry_at);

/* Has the time to answer run out: is `not_after` (0: never) past by the
 * wall clock? For answer_claim. */
bool flow__store_answer_late(double not_after);
/* Fill `err` with FLOW_ETIMEOUT: "request 'R' of run 'X' expired at T: its
 * timeout answer stands"; returns FLOW_ETIMEOUT. */
flow_err flow__store_answer_expired(flow_error *err, const char *run_id, const char *request,
                                    double not_after);
/* Fill `err` with FLOW_EEXISTS: "request 'R' of run 'X' was already
 * answered by B at T" (B and T from the answer `winner`); returns
 * FLOW_EEXISTS. */
flow_err flow__store_answer_taken(flow_error *err, const char *run_id, const char *request,
                                  const json_t *winner);

/* Open the store named by `url` ("sqlite:PATH[?durability=strict]",
 * "disk:DIR[?durability=strict]", "memory:",
 * "redis://HOST[:PORT][/DB][?prefix=P&durability=strict]"), creating it if it does not
 * exist. On success *out is the caller's (close
 * it with flow__store_close); on failure *out is NULL. An unknown scheme is
 * FLOW_EINVAL with a message listing the schemes built in. */
flow_err flow__store_open(const char *url, struct flow__store **out, flow_error *err);
/* The same with FLOW__STORE_OPEN_* flags. */
flow_err flow__store_open_flags(const char *url, unsigned flags, struct flow__store **out,
                                flow_error *err);
/* Close and free `s`; NULL is a no-op. */
void flow__store_close(struct flow__store *s);

static inline int flow__store_has_cap(const struct flow__store *s, unsigned cap)
{
    return (s->ops->caps & cap) == cap;
}

/* The writes redact s->secrets (docs/internals/core.md, "Secrets"). */
static inline flow_err flow__store_run_create(struct flow__store *s,
                                              const struct flow__run_meta *meta, flow_error *err)
{
    if (s->secrets)
        return flow__store_run_create_redacted(s, meta, err);
    return s->ops->run_create(s->priv, meta, err);
}

static inline flow_err flow__store_run_get(struct flow__store *s, const char *id,
                                           struct flow__run_meta *out, flow_error *err)
{
    return s->ops->run_get(s->priv, id, out, err);
}

static inline flow_err flow__store_run_list(struct flow__store *s, flow__store_run_cb cb,
                                            void *udata, flow_error *err)
{
    return s->ops->run_list(s->priv, cb, udata, err);
}

static inline flow_err flow__store_run_set_status(struct flow__store *s, const char *id,
                                                  int status, double ended_at, flow_error *err)
{
    return s->ops->run_set_status(s->priv, id, status, ended_at, err);
}

static inline flow_err flow__store_append(struct flow__store *s, const char *run_id,
                                          const struct flow__jrec *recs, size_t n,
                                          unsigned flags, flow_error *err)
{
    if (s->secrets)
        return flow__store_append_redacted(s, run_id, recs, n, flags, err);
    return s->ops->append(s->priv, run_id, recs, n, flags, err);
}

static inline flow_err flow__store_commit(struct flow__store *s, const char *run_id,
                                          flow_error *err)
{
    return s->ops->commit ? s->ops->commit(s->priv, run_id, err) : FLOW_OK;
}

static inline flow_err flow__store_read(struct flow__store *s, const char *run_id,
                                        uint64_t from_seq, flow__store_rec_cb cb, void *udata,
                                        flow_error *err)
{
    return s->ops->read(s->priv, run_id, from_seq, cb, udata, err);
}

static inline flow_err flow__store_run_delete(struct flow__store *s, const char *id,
                                              flow_error *err)
{
    return s->ops->run_delete(s->priv, id, err);
}

static inline flow_err flow__store_lease_acquire(struct flow__store *s, const char *id,
                                                 const char *holder, double now, double ttl,
                                                 flow_error *err)
{
    return s->ops->lease_acquire(s->priv, id, holder, now, ttl, err);
}

static inline flow_err flow__store_lease_release(struct flow__store *s, const char *id,
                                                 const char *holder, flow_error *err)
{
    return s->ops->lease_release(s->priv, id, holder, err);
}

static inline flow_err flow__store_lease_get(struct flow__store *s, const char *id, double now,
                                             char **holder, flow_error *err)
{
    return s->ops->lease_get(s->priv, id, now, holder, err);
}

static inline flow_err flow__store_control_put(struct flow__store *s, const char *id,
                                               const char *kind, const char *arg,
                                               flow_error *err)
{
    if (s->secrets)
        return flow__store_control_put_redacted(s, id, kind, arg, err);
    return s->ops->control_put(s->priv, id, kind, arg, err);
}

/* Backends older than version 2 cannot take answers. */
static inline flow_err flow__store_answer_claim(struct flow__store *s, const char *run_id,
                                                const char *request, json_t *answer,
                                                double not_after, json_t **winner,
                                                flow_error *err)
{
    if (winner)
        *winner = NULL;
    if (s->ops->version < 2 || !s->ops->answer_claim)
        return flow__error(err, FLOW_EUNSUPPORTED, "store '%s' cannot take answers", s->url);
    if (s->secrets)
        return flow__store_answer_claim_redacted(s, run_id, request, answer, not_after, winner,
                                                 err);
    return s->ops->answer_claim(s->priv, run_id, request, answer, not_after, winner, err);
}

static inline flow_err flow__store_answer_list(struct flow__store *s, const char *run_id,
                                               json_t **out, flow_error *err)
{
    *out = NULL;
    if (s->ops->version < 2 || !s->ops->answer_list)
        return flow__error(err, FLOW_EUNSUPPORTED, "store '%s' cannot take answers", s->url);
    return s->ops->answer_list(s->priv, run_id, out, err);
}

/* Backends older than version 3 keep no limits: the caller counts in
 * its own process only. */
static inline bool flow__store_has_limits(const struct flow__store *s)
{
    return s->ops->version >= 3 && s->ops->slot_acquire && s->ops->rate_take;
}

/* Backends older than version 4 keep no cache: every lookup misses. */
static inline bool flow__store_has_cache(const struct flow__store *s)
{
    return s->ops->version >= 4 && s->ops->cache_get && s->ops->cache_put && s->ops->cache_gc;
}

/* cache_put with s->secrets redacted from the entry (secrets.c). */
flow_err flow__store_cache_put_redacted(struct flow__store *s, const char *fname, const char *task,
                                        const char *key, const json_t *entry, double now,
                                        double expires, flow_error *err);

static inline flow_err flow__store_cache_put(struct flow__store *s, const char *fname,
                                             const char *task, const char *key,
                                             const json_t *entry, double now, double expires,
                                             flow_error *err)
{
    if (!flow__store_has_cache(s))
        return flow__error(err, FLOW_EUNSUPPORTED, "store '%s' keeps no cache", s->url);
    if (s->secrets)
        return flow__store_cache_put_redacted(s, fname, task, key, entry, now, expires, err);
    return s->ops->cache_put(s->priv, fname, task, key, entry, now, expires, err);
}

static inline flow_err flow__store_cache_get(struct flow__store *s, const char *fname,
                                             const char *task, const char *key, double now,
                                             json_t **entry, double *created, flow_error *err)
{
    *entry = NULL;
    *created = 0;
    if (!flow__store_has_cache(s))
        return FLOW_OK;
    return s->ops->cache_get(s->priv, fname, task, key, now, entry, created, err);
}

/* The name of cache entry (fname, task, key) where a backend needs one
 * short name of safe bytes (a file, a Redis key): 32 hex digits, two
 * FNV-1a hashes of the three texts. The entry keeps its names, and a
 * lookup compares them: two entries that share a name replace each
 * other, and never stand for each other. */
void flow__cache_name(const char *fname, const char *task, const char *key, char out[33]);
/* The JSON a backend keeps as a cache entry: {flow, task, key, created,
 * expires, entry}; and back: *entry (new reference) and *created when the
 * record names (fname, task, key) and has not expired at `now`, else NULL. */
json_t *flow__cache_record(const char *fname, const char *task, const char *key,
                           const json_t *entry, double now, double expires);
void flow__cache_record_open(json_t *rec, const char *fname, const char *task, const char *key,
                             double now, json_t **entry, double *created);
/* Is cache record `rec` expired at `now` (or unreadable)? */
bool flow__cache_record_expired(const json_t *rec, double now);

static inline flow_err flow__store_control_take(struct flow__store *s, const char *id,
                                                char **kind, char **arg, flow_error *err)
{
    return s->ops->control_take(s->priv, id, kind, arg, err);
}

#endif
