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

#define FLOW__JOURNAL_FORMAT 1

enum flow__jrec_type {
    JREC_RUN_CREATED = 1, /* payload {flow, version, inputs, state} */
    JREC_ACT_CREATED,     /* act, task, src (the one source activation, or 0);
                           * payload {input} when explicit, {sources: [ids]}
                           * when several, or NULL */
    JREC_ACT_STARTED,     /* act, attempt */
    JREC_ACT_COMPLETED,   /* act, attempt; payload output */
    JREC_ACT_FAILED,      /* act, attempt; payload {error} */
    JREC_ACT_RETRYING,    /* act, attempt; payload {error, delay} */
    JREC_ACT_SKIPPED,     /* act */
    JREC_ACT_CANCELLED,   /* act; payload {error} */
    JREC_LABEL,           /* act (emitter); payload {label, data} (labels and events) */
    JREC_STATE_SET,       /* act (writer); payload {key: value, ...} */
    JREC_RUN_ENDED,       /* payload {status, result | error} */
    JREC_CHECKPOINT       /* act (the task that asked); made durable with stores */
};

struct flow__jrec {
    uint8_t type;     /* enum flow__jrec_type */
    uint8_t attempt;  /* saturates at 255 */
    uint32_t task;    /* task index, for activation records */
    uint32_t act;     /* activation id, 0 for run records */
    uint32_t src;     /* act_created: its single source activation, or 0 */
    double time;      /* epoch seconds */
    json_t *payload;  /* owned by the journal once appended; may be NULL */
};

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
    /* Free everything. Mandatory. */
    void (*close)(void *priv);
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

/* Name of a record type ("act_completed"). */
const char *flow__jrec_type_name(int type);

#endif
