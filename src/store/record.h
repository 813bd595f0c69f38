/* record.h -- one journal record: what happened to a run, in the order it
 * happened. The type is shared by the scheduler that writes records, the
 * journals that queue them and the stores that keep them, so it lives at the
 * bottom of that stack, with the stores.
 */
#ifndef FLOW_STORE_RECORD_H
#define FLOW_STORE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "flow.h"

/* The journal's format, written in each run's first record. */
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
    JREC_FEEDBACK_ANSWERED, /* input. act; payload {request, answer} */
    JREC_RUN_RETRIED,     /* input. payload {tasks: [names], activations: [ids], by?}:
                           * after a run_ended, the run goes on; those
                           * activations run again (docs/internals/core.md) */
    JREC_ACT_HELD         /* note. act, attempt (the last one); payload {reason}:
                           * ready, but a limit holds it (docs/internals/limits.md) */
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

/* A record as the disk and redis stores keep it: FLOW__JREC_FIXED bytes of
 * fixed fields -- type, attempt, two zero bytes, then task, act and src as
 * u32 and time as the 64 bits of its double, all little-endian -- followed
 * by the payload as compact JSON when there is one. */
#define FLOW__JREC_FIXED 24

static inline void flow__put_le32(char *p, uint32_t v)
{
    unsigned char *u = (unsigned char *)p;
    u[0] = (unsigned char)v;
    u[1] = (unsigned char)(v >> 8);
    u[2] = (unsigned char)(v >> 16);
    u[3] = (unsigned char)(v >> 24);
}

static inline uint32_t flow__get_le32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

/* Write the fixed fields of `r` into out[0..FLOW__JREC_FIXED). */
void flow__jrec_put_fixed(char *out, const struct flow__jrec *r);

/* Name of a record type ("act_completed"). */
const char *flow__jrec_type_name(int type);

/* Free an array of records and their payloads. */
void flow__records_free(struct flow__jrec *recs, size_t count);

/* Reading a journal back: most payloads repeat the one before them ({"output":null} for a
 * million no-op tasks), and parsing each again took half of a resume (bench W5). A memo of the
 * last small payload text hands out the value it gave, shared: payloads read back are never
 * changed (every reader only reads them). Zero-filled is empty. */
struct flow__payload_memo {
    char text[128]; /* the last payload text parsed, when it fits */
    size_t len;     /* its length; 0: nothing remembered */
    json_t *value;  /* what it gave (a reference) */
};

/* The payload of `len` bytes at `text` as a new reference in *out: the memo's value when the
 * text is the one before, else parsed (flow__json_load with JSON_DECODE_ANY: FLOW_EPARSE,
 * FLOW_ENOMEM), or inflated first when the store kept it deflated (store/compress.h:
 * also FLOW_EIO for damaged bytes, FLOW_EUNSUPPORTED for an unknown method;
 * flow__payload_why says which). */
flow_err flow__payload_parse(struct flow__payload_memo *m, const char *text, size_t len,
                             json_t **out);
void flow__payload_memo_cleanup(struct flow__payload_memo *m);

/* Read one record (fixed fields, then the payload if any) of `len` bytes
 * into `rec`; its payload is *root (the caller's to decref). FLOW_EPARSE when
 * it is not a record, FLOW_ENOMEM when jansson ran out of memory, and those
 * of flow__payload_parse for a deflated payload that cannot be read. */
flow_err flow__jrec_decode(const char *data, size_t len, struct flow__jrec *rec, json_t **root,
                           struct flow__payload_memo *memo);

#endif
