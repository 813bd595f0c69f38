/* handle.h -- the public store handle (flow_store in flow.h): a backend
 * (store.h), the lock that serializes calls into it, and a slot for the
 * group-commit writer that journal/durable.c runs on it.
 *
 * Lock order: engine.lock, then mu; io, then nothing.
 */
#ifndef FLOW_STORE_HANDLE_H
#define FLOW_STORE_HANDLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "flow.h"
#include "store/record.h"
#include "store/store.h"

struct djournal;

struct flow_store {
    struct flow__store *backend;
    pthread_mutex_t io;      /* every backend call */
    char holder[128];        /* this process as a lease holder */
    /* The writer's slot: journal/durable.c's group committer owns the fields
     * below; the handle only creates the locks and, on close, calls
     * stop_writer (set once the writer thread runs) before freeing. */
    void (*stop_writer)(struct flow_store *s); /* [mu] */
    pthread_mutex_t mu;      /* journals and their queues */
    pthread_cond_t work;     /* the committer: something to write, or stop */
    pthread_cond_t done;     /* waiters: a batch became durable or failed */
    pthread_t thread;
    bool thread_started;     /* [mu] */
    bool committer_idle;     /* [mu] waiting on `work` */
    bool flush_now;          /* [mu] someone waits: write without lingering */
    bool shutdown;           /* [mu] */
    struct djournal *journals; /* [mu] open durable journals */
    flow_commit_stats commits; /* [mu] batches written, for monitoring */
};


/* Run `stmt` with the store's io lock held (every backend call). */
#define FLOW__WITH_STORE(s, stmt)                                                                  \
    do {                                                                                           \
        pthread_mutex_lock(&(s)->io);                                                              \
        stmt;                                                                                      \
        pthread_mutex_unlock(&(s)->io);                                                            \
    } while (0)

/* [mu] Count a batch that took `seconds` to become durable. */
void flow__commit_stats_add(flow_commit_stats *st, double seconds);

/* Read every record of `run_id` into a new array (caller frees with
 * flow__records_free); *count gets how many. */
flow_err flow__store_read_all(struct flow_store *s, const char *run_id, struct flow__jrec **out,
                              size_t *count, flow_error *err);

#endif
