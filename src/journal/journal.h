/* journal.h -- the ordered record of a run, behind a vtable so that stores
 * plug in underneath without the scheduler knowing (SQLite's VFS shape).
 *
 * DESIGN
 * Records are appended under the engine lock, in the order things happened.
 * A backend may buffer; `commit` marks a commit point: everything appended
 * before it must be made durable together (one transaction), so that what
 * survives a crash is always a prefix. Payloads are JSON values the journal
 * takes a reference to. Records are read back from the store they were
 * written to (store/handle.h), never from here.
 *
 * A run without a store has no journal at all (`ops` NULL): records exist
 * to be kept and read back from a store, and nobody could read those of an
 * in-memory run, so the scheduler does not even build them
 * (flow__journal_on). That keeps a run with no store as cheap as it was
 * before durability existed.
 */
#ifndef FLOW_JOURNAL_JOURNAL_H
#define FLOW_JOURNAL_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flow.h"
#include "store/record.h"

struct flow__journal_ops {
    int version;      /* 1 */
    const char *name; /* "memory", "sqlite", ... */
    /* Append one record; takes the payload reference, also on failure.
     * Mandatory. */
    flow_err (*append)(void *priv, struct flow__jrec *rec);
    /* Make everything appended so far durable. Optional (NULL: nothing to do). */
    flow_err (*commit)(void *priv);
    /* Free everything (a durable journal writes what is pending first).
     * Mandatory. */
    void (*close)(void *priv);
    /* Block until everything appended is durable; the failure if writing
     * failed. Optional (NULL: nothing to wait for). */
    flow_err (*wait)(void *priv, flow_error *err);
    /* Methods above are valid for version 1. */
};

struct flow__journal {
    const struct flow__journal_ops *ops;
    void *priv;
};

/* Whether records are kept: false for a run with no store. */
static inline bool flow__journal_on(const struct flow__journal *j)
{
    return j->ops != NULL;
}

static inline flow_err flow__journal_append(struct flow__journal *j, struct flow__jrec *rec)
{
    return j->ops->append(j->priv, rec);
}

static inline flow_err flow__journal_commit(struct flow__journal *j)
{
    return j->ops && j->ops->commit ? j->ops->commit(j->priv) : FLOW_OK;
}

static inline flow_err flow__journal_wait(struct flow__journal *j, flow_error *err)
{
    return j->ops && j->ops->wait ? j->ops->wait(j->priv, err) : FLOW_OK;
}

static inline void flow__journal_close(struct flow__journal *j)
{
    if (j->ops)
        j->ops->close(j->priv);
    j->ops = NULL;
    j->priv = NULL;
}

#endif
