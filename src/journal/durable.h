/* durable.h -- the public store handle (struct flow_store) and the durable
 * journal: a run's records queued under the engine lock and written in
 * batches, in order, by the store's committer thread (group commit). The
 * design is docs/internals/store.md.
 *
 * Threads and locks: `flow_store.io` serializes every call into the
 * backend; `flow_store.mu` guards the list of journals and their queues.
 * Lock order: engine.lock, then mu; io, then nothing. The committer never
 * holds mu or io while it calls a journal's hooks, so hooks may take the
 * engine lock. It only reads record payloads (they share values with the
 * run): the reference counts of a run's values change under the engine
 * lock only, so written batches are freed by the next append or by close.
 */
#ifndef FLOW_JOURNAL_DURABLE_H
#define FLOW_JOURNAL_DURABLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "flow.h"
#include "journal/journal.h"
#include "store/handle.h"
#include "store/store.h"

/* What the journal tells the run it belongs to. Called on the committer
 * thread with no store lock held (they may take the engine lock). */
struct flow__journal_hooks {
    /* A control request for the run: kind "pause" or "cancel", arg a
     * reason or NULL. */
    void (*control)(void *udata, const char *kind, const char *arg);
    /* Writing failed; nothing more will be written for this run. */
    void (*failed)(void *udata, const char *message);
    /* The answer the store holds for `request` after
     * flow__journal_durable_claim: the one claimed, or another that came
     * first (borrowed for the call). May be NULL. */
    void (*answered)(void *udata, const char *request, json_t *answer);
    void *udata;
};

struct flow__durable_opts {
    const char *run_id;
    uint64_t next_seq;   /* records the store already holds for the run */
    bool strict;         /* FLOW__STORE_SYNC with every batch */
    bool lease;          /* hold the run's lease and take control requests */
    struct flow__journal_hooks hooks;
};

/* Open a durable journal on `s`. With `lease`, the lease is taken first
 * (FLOW_EBUSY when another live process holds it; nothing is opened). */
flow_err flow__journal_durable_open(struct flow__journal *j, struct flow_store *s,
                                    const struct flow__durable_opts *o, flow_error *err);

/* Block until every record appended to `j` is durable. FLOW_OK, or the
 * code of the write that failed (message in `err`). */
flow_err flow__journal_durable_wait(struct flow__journal *j, flow_error *err);

/* The run has started (or been replayed): from now on the committer hands
 * it control requests. Until then they wait in the store. No-op for other
 * journals. */
void flow__journal_durable_ready(struct flow__journal *j);

/* Claim `answer` (copied) as the answer to `request` in the store, on the
 * committer thread (the engine lock is never held for it); the `answered`
 * hook then says which answer stands. A claim that fails to be written
 * fails the journal, as a failed write does. FLOW_EUNSUPPORTED for a
 * journal that is not durable (no store decides: take the answer). */
flow_err flow__journal_durable_claim(struct flow__journal *j, const char *request,
                                     json_t *answer);

/* Has writing failed? (the message in `err` when so) */
bool flow__journal_durable_failed(struct flow__journal *j, flow_error *err);

#endif
