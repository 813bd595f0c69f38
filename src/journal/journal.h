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

/* Record types. Numbers are stored: never renumber, only add.
 *
 * Replay (docs/internals/store.md) re-applies the *inputs* of a run -- what
 * the outside world decided: an attempt started, completed, failed; a task
 * streamed an event; a periodic checkpoint -- through the scheduler's own
 * code, which derives everything else (activations created, skipped,
 * labels of routers, the state) exactly as it did the first time. Derived
 * records are kept for readers (status, logs) and for checking that replay
 * took the same path. */
enum flow__jrec_type {
    JREC_RUN_CREATED = 1, /* payload {flow, version, inputs, start, tasks: [names], def_hash} */
    JREC_ACT_CREATED,     /* derived. act, task, src (the one source activation, or 0);
                           * payload {input} when explicit, {sources: [ids]}
                           * when several, {input, parent, index} for a
                           * foreach element, or NULL */
    JREC_ACT_STARTED,     /* input. act, attempt */
    JREC_ACT_COMPLETED,   /* input. act, attempt; payload {output, writes?, work?,
                           * terminate?, cancel?, checkpoint?, pause?, ignored?}:
                           * everything the completion applied */
    JREC_ACT_FAILED,      /* input. act, attempt; payload {error} */
    JREC_ACT_RETRYING,    /* input. act, attempt; payload {error, delay} */
    JREC_ACT_SKIPPED,     /* derived. act */
    JREC_ACT_CANCELLED,   /* input. act; payload {error} */
    JREC_LABEL,           /* derived. act (emitter); payload {label, data} */
    JREC_STATE_SET,       /* no longer written: writes ride in act_completed */
    JREC_RUN_ENDED,       /* payload {status, result, error} */
    JREC_CHECKPOINT,      /* act (the task that asked, or 0); payload {id, reason} */
    JREC_EVENT,           /* input. act (a running task); payload {label, data}:
                           * streamed with flow_ctx_emit while it ran */
    JREC_PAUSED,          /* payload {reason} */
    JREC_RESUMED,         /* payload {from?, checkpoint?, forced?} */
    JREC_LOG,             /* act, attempt; payload {stdout?, stderr?, exit_status}:
                           * what a command wrote that is not its output */
    JREC_FEEDBACK_OPENED, /* input. act, attempt; payload {request, type, message,
                           * options, deadline, default, channel_key} */
    JREC_ACT_WAITING,     /* input. act, attempt; payload {request}: the attempt
                           * ended waiting for that answer */
    JREC_FEEDBACK_ANSWERED /* input. act; payload {request, answer} */
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

/* Name of a record type ("act_completed"). */
const char *flow__jrec_type_name(int type);

#endif
