/* journal.h -- the ordered record of a run, behind a vtable so that stores
 * plug in underneath without the scheduler knowing (SQLite's VFS shape).
 *
 * DESIGN
 * Records are appended under the engine lock, in the order things happened.
 * A backend may buffer; `commit` marks a commit point: everything appended
 * before it must be made durable together (one transaction), so that what
 * survives a crash is always a prefix. The memory backend keeps everything
 * and makes nothing durable. Payloads are JSON values the journal takes a
 * reference to.
 */
#ifndef FLOW_JOURNAL_JOURNAL_H
#define FLOW_JOURNAL_JOURNAL_H

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
    /* Number of records and the i-th, borrowed (for status, logs, replay).
     * Mandatory. */
    size_t (*count)(void *priv);
    const struct flow__jrec *(*get)(void *priv, size_t i);
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

static inline flow_err flow__journal_append(struct flow__journal *j, struct flow__jrec *rec)
{
    return j->ops->append(j->priv, rec);
}

static inline flow_err flow__journal_commit(struct flow__journal *j)
{
    return j->ops->commit ? j->ops->commit(j->priv) : FLOW_OK;
}

static inline flow_err flow__journal_wait(struct flow__journal *j, flow_error *err)
{
    return j->ops && j->ops->wait ? j->ops->wait(j->priv, err) : FLOW_OK;
}

static inline size_t flow__journal_count(struct flow__journal *j)
{
    return j->ops->count(j->priv);
}

static inline const struct flow__jrec *flow__journal_get(struct flow__journal *j, size_t i)
{
    return j->ops->get(j->priv, i);
}

static inline void flow__journal_close(struct flow__journal *j)
{
    if (j->ops)
        j->ops->close(j->priv);
    j->ops = NULL;
    j->priv = NULL;
}

/* Open the in-memory journal. */
flow_err flow__journal_memory_open(struct flow__journal *j);

#endif
