/* worker_int.h -- what the files of the worker (core/worker.c: threads,
 * jobs, the loop; core/worker_take.c: the reader; core/worker_pub.c: what
 * its main thread says to Redis) share: its structures and the calls
 * between them. Not an interface for anything else: include/flow.h is the
 * worker's. */
#ifndef FLOW_CORE_WORKER_INT_H
#define FLOW_CORE_WORKER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "core/engine.h"
#include "exec/cmd.h"
#include "exec/remote_state.h"
#include "exec/remote_wire.h"
#include "exec/rundir.h"
#include "flow.h"
#include "util/redis.h"
#include "util/vec.h"

#define MS 1000000LL
#define CANCEL_EVERY_NS (100 * MS)
#define HEARTBEAT_EVERY_NS (1000 * MS)
#define RETRY_NS (500 * MS)
#define READ_BLOCK_MS "200"
/* The main thread's wait for a reply (a Redis that hangs keeps it from its
 * commands this long, not 5 s); a later reply is as a lost connection. */
#define MAIN_TIMEOUT_S 0.5
#define CLAIM_CALLS_MAX 16 /* XAUTOCLAIMs per queue and round, walking on */
/* How often the reader looks for parked entries it could start (and at
 * once when resources are given back). */
#define PARK_EVERY_NS (200 * MS)
/* How often a worker that reads no priority level but 0 checks whether
 * runners use others (P:levels:QUEUE): it learns of a new level this late
 * at most, the first time it is used. */
#define LEVELS_EVERY_NS (50 * MS)
#define LATE_TTL_S 60      /* a completion stream of a run whose keys are gone */

/* The work directory of one run, shared by its command jobs on this worker
 * (main thread only). */
struct wdir {
    char run[80];
    struct flow__rundir *dir; /* NULL: a free slot */
    size_t users;
};

struct wfn {
    char *name;
    flow_task_fn fn;
    void *udata;
};

/* One entry being run. The fields up to `fn` are fixed once it is listed. */
struct wjob {
    char entry_id[48];
    char *queue_key;
    struct flow__rw_ident ident; /* ident.run is `run` */
    char *run;
    char *task_name;
    struct flow__rw_task task;
    flow_resources need;        /* what its entry asks: held from its take
                                 * until its body (or command) ends */
    const struct wfn *fn;       /* a C function job */
    /* a command (main thread) */
    const char **env;
    char *env_worker;
    char **env_filled;          /* env items with secrets filled in (owned), or NULL */
    struct flow__secrets *secrets; /* this worker's values of the run's secrets */
    struct wdir *dir;
    struct flow__rstate *state; /* the version its entry names (a reference;
                                 * task.state points into it), or NULL */
    uint64_t state_version;     /* its state file's version (set with task.state) */
    bool state_held;
    struct flow__cmd *cmd;
    int nfds, fd_first;
    int signalled;              /* 1: SIGTERM sent (or asked), 2: SIGKILL */
    atomic_bool timed_out;      /* the runner's signal said "timeout" */
    bool done;                  /* failed before it could run (set before it
                                 * is listed), or a command that ended [main] */
    bool no_reply;              /* malformed: acknowledge only */
    bool over;                  /* [main] its body returned, or it never ran */
    bool in_pub;                /* [main] listed in the main thread's `pub` */
    bool xadded;                /* [main] its completion is in its stream */
    bool acked;                 /* [main] published and acknowledged */
    bool gone;                  /* [main] to be removed from `jobs` */
    bool abandoned;             /* [main] a C function that did not stop when
                                 * killed: answered with `ares`, its thread
                                 * still runs */
    struct flow__cmd_result res;
    struct flow__cmd_result ares;
    json_t *writes;
    json_t *events;             /* [mu] what its C function emitted, in order */
    size_t events_sent;         /* [main] how many of them were streamed */
    bool emit_listed;           /* [mu] in the worker's `emitting` list */
    struct flow_worker *owner;
    struct flow_ctx ctx;        /* a C function's */
    struct flow__rctx rctx;
    struct wjob *next_q;        /* [mu] the pool's queue */
};

typedef FLOW__VEC(struct wjob *) wjob_vec;

/* One Redis connection and whether its loss was logged. */
struct wconn {
    redisContext *c;
    bool warned;
    double timeout_s;   /* of connecting and of every reply */
    int64_t retry_at;   /* no new connection before (flow__now_ns) */
};

/* A stream the reader takes entries from: a queue's, at one priority. */
struct wstream {
    char *key;
    int priority;
    size_t queue;       /* its queue (queue_names) */
    char cursor[48];    /* where XAUTOCLAIM goes on */
    bool group_ok;      /* its consumer group is there */
};

struct flow_worker {
    struct flow__redis_addr addr;
    struct wconn main, rd;
    bool groups_ok;             /* [reader] */
    bool spawned;
    char name[160];
    char host[256];
    char **queue_names;
    size_t nqueues;
    char *queue_list;
    /* [reader] the streams of its queues, highest priority first: one each
     * (priority 0) and those of the levels in use (P:levels:QUEUE) */
    FLOW__VEC(struct wstream) streams;
    flow_resources capacity;    /* what its jobs may use at once */
    char *capacity_text;        /* as its heartbeat says it */
    int concurrency;
    double claim_after;
    double started;
    uint64_t done_count;        /* [main] */
    int wake_fd;
    atomic_int stopping;
    atomic_llong rd_client_id;  /* the reader's connection (CLIENT ID), 0: none yet */
    redisContext *rd_id_of;     /* [reader] the connection rd_client_id names */
    bool unblocked;             /* [main] CLIENT UNBLOCK sent for this stop */
    bool running;               /* flow_worker_run was called */
    FLOW__VEC(struct wfn) fns;
    FLOW__VEC(struct wdir *) dirs;
    struct flow__rstate_cache states; /* [reader] the runs' states by version */
    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t reader_cv;   /* a slot freed, or stopping */
    pthread_cond_t pool_cv;     /* a job queued, or the pool stops */
    wjob_vec jobs;              /* every job not acknowledged yet */
    wjob_vec fresh;             /* commands for the main thread to start */
    wjob_vec finished;          /* done, to publish */
    wjob_vec emitting;          /* C functions that emitted events to stream */
    struct wjob *q_head, *q_tail;
    bool wake_pending;
    bool reader_exited;
    bool pool_stop;
    pthread_t reader;
    pthread_t *pool;
    size_t npool;
    /* [mu] Listed jobs whose body has not ended: the slots in use. A job
     * whose body ended holds no slot while its completion is published, so
     * the reader takes the next entries meanwhile; the jobs not yet
     * acknowledged stay below 2 * concurrency. */
    size_t busy;
    flow_resources used;        /* [mu] what the jobs whose body has not ended ask */
    bool released;              /* [mu] some were given back since the reader
                                 * last looked at the parked entries */
};

/* ---- worker.c ------------------------------------------------------------ */

/* [mu] Wake the main thread unless a wake is pending already. */
void flow__worker_wake_locked(struct flow_worker *w);
/* A new job of an entry read from a queue's stream `key`: a C function, a
 * command, or (not served, malformed) a completion that says so, or (no
 * reply possible) one that is only acknowledged; NULL: out of memory. */
struct wjob *flow__worker_job_of_entry(struct flow_worker *w, const char *key,
                                       const struct flow__rw_entry *en);
void flow__worker_job_free(struct wjob *j);
/* The completion of a job that could not run at all (`why` taken; NULL:
 * out of memory). */
void flow__worker_job_fail(struct wjob *j, char *why);
/* The worker-side context of C function job `j`. */
void flow__worker_fn_prepare(struct flow_worker *w, struct wjob *j);

/* [mu] Push, or log: out of memory keeps the job out of the list (its entry
 * stays pending and is claimed again). */
bool flow__worker_push(struct flow_worker *w, wjob_vec *v, struct wjob *j);
/* The connection `wc`, made again after a failure (at most every
 * RETRY_NS); NULL while Redis cannot be reached. */
redisContext *flow__worker_conn(struct flow_worker *w, struct wconn *wc);
/* One command on `wc`; NULL (logged) on failure or an error reply. */
redisReply *flow__worker_cmdv(struct flow_worker *w, struct wconn *wc, int argc,
                              const char **argv);

/* ---- worker_take.c: the reader thread -------------------------------------- */

/* The reader: takes the entries it can start, highest priority first,
 * parks those it cannot (docs/internals/distribution.md, "The worker"). */
void *flow__worker_reader_main(void *arg);
/* Its list of streams: each queue's at priority 0. */
flow_err flow__worker_streams_init(struct flow_worker *w);
void flow__worker_streams_free(struct flow_worker *w);

/* ---- worker_pub.c: the main thread's side of Redis ------------------------- */

/* [main] The jobs listed now (`live`: only those still running), into
 * `out` (reserved to `concurrency`). */
void flow__worker_snapshot(struct flow_worker *w, wjob_vec *out, bool live);
/* [main] Publish the completions of `pub`, then acknowledge them. */
void flow__worker_publish(struct flow_worker *w, wjob_vec *pub);
/* [main] Stream the events the C functions of `emit` emitted since. */
void flow__worker_stream_events(struct flow_worker *w, wjob_vec *emit);
/* [main] Signal what the runner asked to stop; abandoned functions go to `pub`. */
void flow__worker_check_cancels(struct flow_worker *w, const wjob_vec *live, wjob_vec *pub);
/* [main] Keep the idle time of the running entries low (XCLAIM JUSTID). */
void flow__worker_renew_claims(struct flow_worker *w, const wjob_vec *live);
/* [main] Write (or, `last`, delete) the worker's heartbeat. */
void flow__worker_heartbeat(struct flow_worker *w, bool last, size_t running);

#endif
