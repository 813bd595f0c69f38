/* engine.h -- the inside of engines, runs, activations and task contexts.
 * The engine (engine.c) owns threads, queues and timers; the files of a run
 * (run_int.h lists them) apply the semantics of docs/concepts.md under the
 * engine lock. See
 * docs/internals/core.md for the model and the threading rules.
 *
 * Lock order: engine->lock, then nothing. Every field below marked [L] is
 * read and written only with engine->lock held.
 */
#ifndef FLOW_CORE_ENGINE_H
#define FLOW_CORE_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "def/flowdef.h"
#include "exec/cmd.h"
struct flow__rundir;
#include "flow.h"
#include "journal/journal.h"
#include "store/store.h"
#include "util/arena.h"
#include "util/vec.h"

/* Leaf states in run->leaf_state. */
enum { LEAF_UNKNOWN = 0, LEAF_TRUE = 1, LEAF_FALSE = 2, LEAF_LATE = 3 };

enum act_flag {
    ACT_QUEUED = 1,      /* in a ready queue */
    ACT_WAITING = 2,     /* waiting for a retry timer */
    ACT_IS_FALLBACK = 4, /* stands for a failed activation (stands_for) */
    ACT_INPUT_READY = 8, /* input built (and its template rendered) */
    ACT_PARKED = 16,     /* waiting for the answer to a feedback request */
};

/* A feedback request of a run (docs/internals/feedback.md). */
struct fb_request {
    char *id;
    struct act *act;           /* the activation that asked */
    flow_feedback_type type;
    char *message;
    json_t *options;           /* array, or NULL */
    double created;            /* epoch seconds */
    double deadline;           /* epoch seconds, 0: none */
    json_t *default_answer;    /* or NULL */
    char *channel_key;         /* or NULL */
    json_t *answer;            /* NULL while open */
    bool claiming;             /* its timeout's answer is being claimed in the store */
    bool retired;              /* its activation was retried before an answer came:
                                * closed (docs/internals/core.md, Retry) */
    uint32_t gen;              /* its activation's act_dyn.retried when it was asked */
};

/* A `parallel` group with a `then` task (docs/internals/core.md, Groups). */
struct group {
    uint32_t count;      /* branches */
    uint32_t finished;
    bool failed;         /* a branch failed or was skipped: `then` is skipped */
    uint32_t then_task;
    json_t *outputs;     /* array, one slot per branch */
};

/* A foreach parent's progress. */
struct foreach_state {
    json_t *items;       /* the rendered list */
    size_t count;
    size_t next;         /* the next element to start */
    size_t running;      /* children started and not finished */
    size_t finished;
    size_t concurrency;  /* 0: no limit */
    json_t *outputs;     /* array, one slot per element */
    char *first_error;
    size_t failed;
    uint32_t first_child; /* id of element 0 of this expansion: older elements
                           * belong to an earlier one */
    struct act **redo;   /* a retry: elements to run again, in order, before `next` */
    size_t redo_count, redo_next;
};

/* What only some activations need. */
struct act_dyn {
    struct group *group;       /* a branch of this parallel group */
    uint32_t branch;
    struct act *parent;        /* a foreach child: its parent */
    size_t index;              /* ... and its position */
    json_t *item;              /* ... and its element */
    struct foreach_state *fe;  /* a foreach parent */
    struct flow_run *child;    /* a nested flow's current child run */
    char *stderr_tail;         /* a command's last attempt */
    int exit_status;
    struct cmd_slot *cmd;      /* a running command */
    char *error;               /* failed / cancelled / error ignored: why */
    struct act *stands_for;    /* ACT_IS_FALLBACK: the failed activation */
    char *worker;              /* a remote attempt: the worker that ran it */
    uint32_t waits;            /* times it waited for a feedback answer: a
                                * remote attempt's round (core/remote.c) */
    uint32_t streamed;         /* replay: events a remote attempt's round
                                * journaled, not to be applied again */
    uint32_t retried;          /* retries that ran it again (its feedback
                                * requests are asked anew: core/feedback.c) */
    bool branch_done;          /* its `group` counted it as finished */
    bool unsettled;            /* completed while its run stopped: what the
                                * completion starts is left to a retry */
    json_t *work;              /* ... with the dynamic work it asked for */
    struct act_gate *gate;     /* what its limits hold or wait for (core/gate.c) */
    char *cache_key;           /* its task's cache key, rendered (core/cache.c) */
    uint8_t *leaves;           /* a `when` trigger's leaves as it resolved this
                                * activation (run arena), for a retry */
    json_t *info;              /* its completion's journaled facts (prompt, usage,
                                * cached), or NULL */
    double retry_at;           /* replay: when the retry its journal says it
                                * waits for is due (epoch seconds), or 0 */
};

/* Every activation of a run lives until the run is freed, and a fan-out
 * makes them all at once: this is the one structure whose size is paid per
 * pending task (80 bytes). What few activations need is in `dyn`. */
#define ACT_MAX_ATTEMPT ((1u << 22) - 1) /* attempt's width; retries stay below */
_Static_assert(FLOW_MAX_RETRIES + 1 < ACT_MAX_ATTEMPT, "attempt too narrow for the retries");
struct act {
    struct flow_run *run;
    uint32_t id;               /* 1-based, creation order */
    uint32_t task;
    uint32_t nsrc;             /* activations whose outputs form the input */
    uint32_t attempt : 22;     /* 0 before the first start */
    uint32_t status : 4;       /* flow_act_status */
    uint32_t flags : 6;        /* enum act_flag */
    union {
        struct act *one;
        struct act **many;
    } src;
    json_t *input;             /* explicit or built; NULL: not built yet */
    json_t *output;            /* completed: the output (never NULL then) */
    double started, ended;     /* epoch seconds of the last attempt */
    struct flow_ctx *ctx;      /* running C task, for timeouts and cancel */
    struct act_dyn *dyn;       /* NULL unless needed */
};

static inline const char *act_error(const struct act *a)
{
    return a->dyn ? a->dyn->error : NULL;
}

/* For messages: never NULL. */
static inline const char *act_error_text(const struct act *a)
{
    return act_error(a) ? act_error(a) : "failed";
}

static inline struct cmd_slot *act_cmd(const struct act *a)
{
    return a->dyn ? a->dyn->cmd : NULL;
}

static inline struct act *act_stands_for(const struct act *a)
{
    return a->dyn ? a->dyn->stands_for : NULL;
}

/* Per task, per run (24 bytes: paid per task of every run). */
struct task_rt {
    uint32_t satisfied;   /* TRIG_AND: leaves true this round */
    uint32_t resolved;    /* TRIG_AND: leaves resolved this round */
    uint32_t late;        /* leaves absorbed-to-come this round */
    uint32_t activations; /* created so far (max_activations) */
    uint32_t latest;      /* id of the latest completed activation; 0: none */
    uint32_t last;        /* id of the latest activation, whatever its status */
};

/* One event waiting for the observer. Strings point into the flow or the
 * activation, which outlive the delivery. */
struct obs_event {
    uint8_t type;
    uint8_t run_status;
    uint32_t attempt;
    struct act *act;
    const char *label;
    char *error; /* a copy: the activation's may change before delivery */
    double delay;
    double time;
    const json_t *item; /* a foreach element's (the run keeps it), or NULL */
    long index;         /* ... and its position, or -1 */
};

/* Free the copies `count` events hold, then the array. */
void flow__obs_events_free(struct obs_event *events, size_t count);

struct flow_run {
    /* Held by the caller of flow_run_start/resume (dropped by flow_run_free)
     * and by each C body the engine abandoned, so that everything such a
     * body can reach through its flow_ctx stays valid until it returns. */
    atomic_int refs;
    struct flow_engine *engine;
    struct flow *flow;
    char id[80];
    flow_run_status status;         /* [L] */
    json_t *inputs;                 /* object, immutable */
    json_t *state;                  /* [L] immutable object, replaced on write */
    uint64_t state_version;         /* [L] */
    json_t *result;                 /* after the end */
    json_t *terminate_result;       /* [L] a `terminate` directive's result */
    char *error;                    /* failed / cancelled: why */
    struct task_rt *trt;            /* [L] per task */
    uint8_t *leaf_state;            /* [L] per leaf */
    struct act **act_chunks;        /* [L] activations, 256 a chunk */
    struct flow__arena act_arena;   /* [L] where the chunks come from (zeroed) */
    size_t act_count;               /* [L] */
    size_t act_chunk_cap;
    struct flow__journal journal;   /* [L] */
    size_t unfinished;              /* [L] activations not final */
    uint32_t running;               /* [L] attempts running now */
    bool had_failure;               /* [L] on_error: continue happened */
    bool stopping;                  /* [L] failing or cancelling: start nothing */
    flow_run_status stop_status;    /* [L] */
    bool ended;                     /* [L] status is final and observers told */
    atomic_int interrupt;           /* set by flow_run_interrupt (signal-safe) */
    const char *start_task;         /* NULL, or run this one first */
    flow_event_fn on_event;
    void *event_udata;
    FLOW__VEC(struct obs_event) obs; /* [L] waiting for the loop to deliver */
    bool obs_listed;                /* [L] in engine->obs_runs */
    pthread_cond_t ended_cond;
    struct flow__rundir *workdir;  /* command files (exec/rundir.h) */
    struct flow_run *next, *prev;   /* [L] engine->runs list */
    FLOW__VEC(struct group *) groups;  /* [L] parallel groups, freed with the run */
    FLOW__VEC(struct flow_run *) children; /* [L] nested runs, freed with the run */
    struct act *parent_act;         /* [L] a nested run: the activation it serves */
    uint32_t max_running;           /* [L] 0, or 1 for a sequential flow */
    uint32_t slots;                 /* [L] activations queued or running (max_running) */
    FLOW__VEC(struct act *) held;   /* [L] waiting for a slot (max_running) */
    size_t held_head;
    /* Scratch for skip/complete propagation without recursion. */
    FLOW__VEC(struct pending_sig) sigs;
    bool propagating;
    /* Durable runs (docs/internals/store.md). */
    struct flow_store *store;       /* NULL: no journal at all */
    bool replaying;                 /* [L] re-applying the journal: write,
                                     * queue, time and tell nothing */
    bool pausing;                   /* [L] start nothing new; pause when idle */
    bool interrupting;              /* [L] pausing, and running attempts are
                                     * killed and not recorded */
    char *pause_reason;             /* [L] */
    uint32_t checkpoints;           /* [L] checkpoint records so far */
    uint32_t subflows_running;      /* [L] nested runs in progress */
    double checkpoint_every;        /* seconds; 0: none */
    bool end_persisted;             /* the store knows how the run ended */
    bool journal_failed;            /* [L] the store could not be written */
    bool journal_moved;             /* [L] records since the last checkpoint */
    bool strict;                    /* every batch synced (resumes keep it) */
    FLOW__VEC(struct fb_request) requests; /* [L] feedback requests, in order */
    uint32_t parked;                /* [L] activations waiting for an answer */
    uint32_t claiming;              /* [L] requests whose timeout is being claimed */
    json_t *claimed;                /* [L] resume: request -> the answer the store
                                     * holds, taken by flow__feedback_resume */
    bool wait_for_people;           /* [L] flow_run_options.wait: do not pause for them */
    bool remote_watch;              /* [L] has remote work: its completions are read */
    struct flow__remote_state *remote_state; /* [L] the state versions core/remote.c
                                              * queued entries with (freed with the run) */
    uint32_t *retry_slots;          /* [L] after a retry: per task, the activation
                                     * its next firing or skip reuses (id; 0: none),
                                     * or NULL (core/retry.c) */
    struct gate_key *run_key;       /* [L] the flow's run limit: its key once known */
    int run_slot;                   /* [L] ... the slot it holds, or -1 */
    bool run_admitted;              /* [L] ... holds it: its tasks may go */
    bool no_cache;                  /* flow_run_options.no_cache (nested runs: the
                                     * parent's): cached tasks are not looked up */
    struct flow__secrets *secrets;  /* immutable: the values nothing that leaves the
                                     * run may hold (nested runs share their
                                     * parent's), or NULL */
};

#define ACT_CHUNK 256

/* The i-th activation (0-based). */
static inline struct act *flow__act_at(const struct flow_run *r, size_t i)
{
    return &r->act_chunks[i / ACT_CHUNK][i % ACT_CHUNK];
}

/* The activation with this id; NULL for 0. */
static inline struct act *flow__act_by_id(const struct flow_run *r, uint32_t id)
{
    return id ? flow__act_at(r, (size_t)id - 1) : NULL;
}

struct pending_sig {
    uint32_t task;   /* the source task that finished */
    uint8_t value;   /* LEAF_TRUE or LEAF_FALSE */
    struct act *act; /* the activation that finished */
};

/* What a C function running on a worker (core/worker.c) sees of its run:
 * the activation as shipped in its queue entry. Everything it writes goes
 * back in the completion; the runner applies it. */
struct flow__rctx {
    json_t *input;          /* the spec's input (borrowed from the entry) */
    json_t *state;          /* the run's state at submit time (borrowed) */
    const char *task;       /* task name */
    const char *run;        /* run id */
    uint64_t act;           /* activation id */
    void *udata;            /* flow_worker_register's */
    const char *worker;     /* the worker's name, for messages */
    char *unsupported;      /* a call that cannot work remotely: the attempt
                             * fails with this message */
    json_t *answers;        /* answered feedback requests (id -> answer), borrowed */
    json_t *item;           /* a foreach element (borrowed) or NULL */
    long index;             /* its position or -1 */
    json_t *waiting;        /* the feedback request it asked and has no
                             * answer for: the attempt ends waiting */
    /* Streams an event to the runner while the body runs (worker.c); takes
     * `data` (a reference nobody else counts). */
    flow_err (*emit)(struct flow__rctx *rc, const char *event, json_t *data);
    void *emit_arg;
    const struct flow__secrets *secrets; /* the worker's values of the run's secrets */
};

struct flow_ctx {
    struct flow__rctx *remote; /* a worker's context, or NULL: then the
                                * fields up to `writes` are all it uses */
    struct flow_engine *engine;
    struct flow_run *run;
    struct act *act;
    const struct flow_task *task;
    flow_task_fn fn;        /* the body, read under the lock: an abandoned
                             * body's thread never reads the flow again */
    uint32_t attempt;
    int rc;                 /* the body's return */
    json_t *output;         /* set_output; NULL: null */
    char *error;            /* flow_ctx_fail */
    json_t *writes;         /* buffered state writes, or NULL */
    atomic_int cancelled;   /* timed out or the run stops */
    bool timed_out;         /* [L] */
    bool detached;          /* [L] abandoned: the run may be gone */
    struct worker *worker;  /* [L] the pool thread running it, or NULL */
    bool counted;           /* [L] holds one of the engine's `jobs` slots */
    bool no_body;           /* the attempt failed before its body could run */
    bool input_failed;      /* [L] flow_ctx_input could not build the input */
    json_t *directives;     /* flow_ctx_next_task & co., or NULL */
    char *waiting;          /* flow_ctx_request_feedback opened this request: the
                             * attempt ends waiting for it */
    json_t *info;           /* facts journaled with the completion (directives.info) */
    bool fail_final;        /* flow_ctx_fail_final: a failure is not retried */
    bool retry_set;         /* flow_ctx_retry_after: a failure's retry waits */
    double retry_after;     /* ... this many seconds, not the backoff */
    struct flow_ctx *next_free;
};

/* A ready queue: FIFO per priority, highest priority first. */
struct readyq_bucket {
    int priority;
    struct act **ring;
    size_t head, count, cap;
};

struct readyq {
    struct readyq_bucket *buckets; /* sorted by priority, descending */
    size_t nbuckets;
    size_t count;
};

enum timer_kind {
    TIMER_RETRY = 1,
    TIMER_TIMEOUT,
    TIMER_GRACE,
    TIMER_RUN,
    TIMER_CHECKPOINT,
    TIMER_FEEDBACK /* act: a parked activation whose request has a deadline */
};

struct timer {
    int64_t at;          /* monotonic ns */
    struct flow_run *run;
    struct act *act;     /* NULL for TIMER_RUN */
    uint32_t attempt;    /* the attempt it was set for; stale otherwise */
    uint32_t round;      /* ... and its run (act_dyn.waits): an attempt runs
                          * again after each answer it waited for */
    uint8_t kind;
};

struct cmd_slot {
    struct flow__cmd *cmd;
    struct act *act;
    uint32_t attempt;
    bool timed_out;
    bool killed;         /* SIGTERM sent */
    int nfds;            /* entries in the poll set this round */
    int fd_first;        /* where they start in the poll set */
    uint64_t state_version; /* the state file it was given, */
    bool state_held;        /* if it was */
    bool remote;         /* on a worker (core/remote.c): cmd stays NULL */
    bool kill_sent;      /* remote: KILL asked for; the next grace ends it */
    uint32_t round;      /* remote: the same attempt's runs after feedback answers */
    uint32_t events;     /* remote: streamed events applied this round */
};

struct worker {
    pthread_t thread;
    bool exited;         /* [L] returned from its main */
    bool stuck;          /* [L] running an abandoned body: never join */
};

struct flow_engine {
    atomic_int refs;
    pthread_mutex_t lock;
    pthread_cond_t pool_cond;
    int jobs;
    int idle;                       /* [L] pool threads waiting */
    int running;                    /* [L] thread + process attempts running */
    int surplus;                    /* [L] threads to retire (replaced abandoned ones) */
    bool shutdown;                  /* [L] */
    struct readyq pool_q;           /* [L] C tasks for the pool */
    struct readyq loop_q;           /* [L] inline tasks and no-ops */
    struct readyq spawn_q;          /* [L] commands waiting for a slot */
    struct readyq remote_q;         /* [L] activations for workers (core/remote.c) */
    struct flow__remote *remote;    /* [L] its threads, started on first use */
    bool remote_stopped;            /* [L] flow__remote_stop ran: never start them again */
    char *redis_url;                /* flow_engine_options.redis_url, or NULL */
    FLOW__VEC(struct worker *) workers; /* [L] */
    pthread_t loop_thread;
    int wake_fd;                    /* eventfd */
    atomic_int wake_pending;
    FLOW__VEC(struct timer) timers; /* [L] binary min-heap on `at` */
    FLOW__VEC(struct cmd_slot *) cmds; /* [L] running commands */
    FLOW__VEC(struct flow_run *) obs_runs; /* [L] runs with events to deliver */
    FLOW__VEC(pid_t) notifiers;     /* [L] feedback notification commands to reap */
    FLOW__VEC(json_t *) notes;      /* [L] notifications to start: {run, request, argv, stdin} */
    bool spawned;                   /* [L] a command ran: orphans may come (tree.h) */
    bool orphans;                   /* [L] the last sweep saw children not owned */
    int64_t sweep_at;               /* [L] the next sweep, not before (ns) */
    struct flow_run *runs;          /* [L] live runs */
    struct flow_ctx *free_ctx;      /* [L] recycled contexts */
    int64_t body_ns_avg;            /* [L] moving average of C task bodies */
    struct flow__gates *gates;      /* [L] limits (core/gate.c), made on first use */
    struct flow__cache *cache;      /* [L] cached outputs (core/cache.c), made on first use */
    flow_resources capacity;        /* what tasks may use at once (resources) */
    double clock;                   /* [L] wall time of the current scheduling
                                     * step: one clock read serves every record
                                     * written in one critical section */
};

/* ---- engine.c ----------------------------------------------------------- */

/* [L] Read the wall clock into e->clock. */
void flow__engine_tick(struct flow_engine *e);
/* Wake the loop thread (coalesced). Async-signal-safe. */
void flow__engine_wake(struct flow_engine *e);
/* [L] Ready queues (engine.c): FIFO per priority. */
bool flow__readyq_push(struct readyq *q, struct act *a, int priority);
struct act *flow__readyq_pop(struct readyq *q);
/* Remove every entry of run `r`, calling `each` (may be NULL) on it. */
void flow__readyq_drop_run(struct readyq *q, struct flow_run *r,
                           void (*each)(struct act *a, void *arg), void *arg);
void flow__readyq_cleanup(struct readyq *q);
/* [L] Queue an activation to run (pool or loop by executor). */
void flow__engine_enqueue(struct flow_engine *e, struct act *a);
/* [L] Arm a timer. */
void flow__engine_timer(struct flow_engine *e, uint8_t kind, struct act *a, double seconds);
/* [L] An activation of a sequential run left its slot: start a held one. */
void flow__engine_release_slot(struct flow_engine *e, struct flow_run *r);
/* [L] Arm the run's own timeout. */
void flow__engine_run_timer(struct flow_engine *e, struct flow_run *r, double seconds);
/* [L] Remove queued activations and timers of a run (it is stopping);
 * calls flow__run_cancel_act for each activation removed. */
void flow__engine_drop_run(struct flow_engine *e, struct flow_run *r);

/* [L] Take the run's activations out of the ready queues, leaving them
 * pending (it is pausing). */
void flow__engine_unqueue_run(struct flow_engine *e, struct flow_run *r);
/* [L] Arm a run timer of `kind` (TIMER_RUN, TIMER_CHECKPOINT). */
void flow__engine_run_timer_of(struct flow_engine *e, struct flow_run *r, uint8_t kind,
                               double seconds);

/* [L] The run ended: drop its timers (all stale now), so nothing refers to
 * it once it is freed. */
void flow__engine_forget_run(struct flow_engine *e, struct flow_run *r);

/* [L] The next activation for workers, or NULL. */
struct act *flow__engine_remote_pop(struct flow_engine *e);

/* ---- remote.c: the remote executor (docs/internals/distribution.md) ----- */

struct flow__remote;
/* [L] An activation was queued on remote_q: start the threads if needed
 * and wake the submitter. */
void flow__remote_wake(struct flow_engine *e);
/* [L] Ask the worker running `a` to signal it: "TERM:timeout",
 * "KILL:cancel"... */
void flow__remote_signal(struct flow_run *r, struct act *a, const char *what);
/* [L] The run ended for good: its keys go. */
void flow__remote_run_ended(struct flow_run *r);
/* Stop the threads (engine shutdown, without the lock). */
void flow__remote_stop(struct flow_engine *e);
/* Free what a run shipped of its state (r->remote_state; NULL: nothing), as
 * the run is freed. */
struct flow__remote_state;
void flow__remote_state_free(struct flow__remote_state *st);
/* [L] Why remote activation `a` waits before it is queued for workers: it
 * asks resources that no live worker of its queue could ever give ("resources:
 * gpu 1, more than any live worker of queue 'default' has (the most: gpu
 * 0)", or "resources: no live worker serves queue 'default'"); NULL when it
 * does not wait for that (or has not been checked yet: within a second).
 * Valid while the lock is held. */
const char *flow__remote_waiting_for(struct flow_engine *e, const struct act *a);
/* [L] A remote attempt's completion (or its failure to be submitted):
 * the slot is given back and the result applied as a command's. */
void flow__run_remote_done(struct flow_run *r, struct act *a, struct flow__cmd_result *res,
                           json_t *writes, const char *worker);
/* [L] A remote attempt ended asking a person `req` (the completion's
 * `waiting`): the request is opened and the activation parked, or the
 * attempt fails when the request is not valid. */
void flow__run_remote_waiting(struct flow_run *r, struct act *a, json_t *req,
                              const char *worker);
#ifdef FLOW_TESTING
/* How many completions the runner keeps for attempts not submitted yet. */
size_t flow__remote_early_count(struct flow_engine *e);
/* core/worker.c: the n-th completion script a worker pipelines from now
 * (1: the next) cannot be appended, as when hiredis runs out of memory;
 * 0 turns it off. */
void flow__worker_fail_publish_at(size_t n);
#endif

/* ---- a run (run_int.h lists its files) ----------------------------------- */

/* [L] Start an attempt (status, journal, observer, timeout timer). */
void flow__run_attempt_started(struct flow_run *r, struct act *a);
/* [L] The activation's rarely used parts, made on first use; NULL when out
 * of memory. */
struct act_dyn *flow__act_dyn(struct flow_run *r, struct act *a);
/* [L] Build the input of an attempt about to start (its `input` template
 * may fail: then false, with a message to flow__free in *error). */
bool flow__run_input_ready(struct flow_run *r, struct act *a, char **error);
/* [L] An attempt of a C task, no-op or inline task ended: apply ctx's result. */
void flow__run_ctx_done(struct flow_run *r, struct flow_ctx *ctx);
/* [L] An attempt of a command ended. */
void flow__run_cmd_done(struct flow_run *r, struct act *a, struct flow__cmd_result *res);
/* [L] A timer fired for `a` (still current). */
void flow__run_timer(struct flow_run *r, struct act *a, uint8_t kind);
/* [L] Cancel an activation that has not started (queued or waiting). */
void flow__run_cancel_act(struct flow_run *r, struct act *a, const char *why);
/* [L] Stop the run: fail (FLOW_RUN_FAILED) or cancel (FLOW_RUN_CANCELLED). */
void flow__run_stop(struct flow_run *r, flow_run_status status, const char *why);
/* [L] End the run if nothing is left to do. */
void flow__run_check_end(struct flow_run *r);
/* [L] Prepare a command attempt: render argv/env/cwd, input, state file.
 * On failure returns false with a message (flow__free it) in *error. */
/* Without the lock: write the files the prepared command needs (its work
 * directory, the state file), filling spec->work_dir and spec->state_path. */
bool flow__run_cmd_files(void *scratch, struct flow__cmd_spec *spec, char **error);
/* [L] A command that was given the state file of `version` is done. */
void flow__run_cmd_files_release(struct flow_run *r, uint64_t version);
bool flow__run_prepare_cmd(struct flow_run *r, struct act *a, struct flow__cmd_spec *spec,
                           void **scratch, char **error);
void flow__run_cmd_scratch_free(void *scratch);
/* [L] The task's input for `a`, built if needed (borrowed); NULL when it
 * cannot be built (out of memory, a template that names nothing). */
json_t *flow__run_act_input(struct flow_run *r, struct act *a);
/* [L] Loop-thread work that runs no body: expand a foreach parent, or start
 * a nested flow's child run. */
void flow__run_expand(struct flow_run *r, struct act *a);
/* [L] The run's timeout ran out. */
void flow__run_timed_out(struct flow_run *r);
/* How an emission came about (flow__run_emit). */
enum {
    EMIT_STREAMED = 1u << 0, /* by a running task (flow_ctx_emit): an input of replay */
    EMIT_LABEL = 1u << 1,    /* a router's label: stays inside its run */
};
/* [L] Emit an event from activation `from` (see docs/internals/core.md).
 * An event (not a router's label) of a nested run is also emitted by the
 * parent's `flow:` activation, so the parent can connect it. */
void flow__run_emit(struct flow_run *r, struct act *from, const char *event, json_t *payload,
                    unsigned how);
/* [L] Pause the run (nothing new starts; paused once idle); `interrupt`:
 * kill what runs and do not record its attempts. */
void flow__run_pause(struct flow_run *r, const char *why, bool interrupt);
/* [L] A periodic checkpoint is due. */
void flow__run_checkpoint_tick(struct flow_run *r);

/* ---- a run, for replay.c and feedback.c --------------------------------- */

/* [L] Journal a record of `a` (NULL: of the run) at the engine's clock:
 * nothing while replaying; a failed write stops the run. Takes `payload`. */
void flow__run_journal(struct flow_run *r, uint8_t type, const struct act *a, json_t *payload);
/* The flow's task names, in index order (a new array; NULL: no memory). */
json_t *flow__run_task_names(const struct flow *f);

/* Make a run (not started); [L] for nested runs. */
struct flow_run *flow__run_create(struct flow_engine *e, struct flow *f, json_t *inputs,
                                  const char *run_id, const char *start_task,
                                  struct act *parent, flow_error *err);
/* [L] Start a created run: journal it, make it visible, fire its start. */
void flow__run_begin(struct flow_run *r, const struct flow_task *start);
void flow__run_destroy(struct flow_run *r);
/* Drop a reference; the last one destroys the run. Without the engine lock
 * (destroying closes the journal, whose writer may take it). */
void flow__run_unref(struct flow_run *r);
/* Before the run starts: its commands' files go in `dir` (kept after). */
flow_err flow__run_set_work_dir(struct flow_run *r, const char *dir);
/* Journal a durable run in `store` (a run has no journal before);
 * `next_seq`: records it already has. */
flow_err flow__run_attach_store(struct flow_run *r, struct flow_store *store,
                                const flow_run_options *opts, flow_error *err);
/* [L] Re-apply a journaled completion (payload of an act_completed record). */
void flow__run_replay_completed(struct flow_run *r, struct act *a, json_t *payload);
/* [L] Re-apply a journaled failed (`final`) or retrying attempt. */
void flow__run_replay_failed(struct flow_run *r, struct act *a, const char *error, bool final);
/* [L] Write a checkpoint record. */
void flow__run_checkpoint(struct flow_run *r, struct act *a, const char *reason);
/* [L] Check and parse a list of directives (C tasks and commands alike);
 * NULL, or a message naming the bad one (flow__free it). */
char *flow__run_check_directives(struct flow_run *r, json_t *list);
/* [L] Observer events: queue one. */
void flow__run_notify(struct flow_run *r, flow_event_type type, struct act *a, const char *label,
                      double delay);
/* Deliver the queued events (loop thread, without the lock). */
void flow__run_deliver(struct flow_run *r, struct obs_event *events, size_t count);

/* ---- replay.c: a stored run, for flow_run_resume and flow_run_retry ------ */

struct flow__stored {
    struct flow__run_meta meta;
    struct flow__jrec *recs;
    size_t count;
    size_t ended_at;        /* its end: the last run_ended that no run_retried
                             * follows; `count` when it has not ended */
    const char *start_name; /* the task it was started at (in recs), or NULL */
    bool changed;           /* its definition is not the flow's (opts->force) */
};
/* Read the metadata of run opts->run_id from opts->store and check that
 * `f` is its flow, unless opts->force (FLOW_ESTATE; `verb` names what to
 * do again with --force). `s` is to be cleaned up, also on failure. */
flow_err flow__stored_open(struct flow_engine *e, struct flow *f, const flow_run_options *opts,
                           const char *verb, struct flow__stored *s, flow_error *err);
/* (Re)read the records of run `id` into `s`, check their format and start
 * task, and find the run's end. */
flow_err flow__stored_records(struct flow *f, struct flow_store *st, const char *id,
                              struct flow__stored *s, flow_error *err);
void flow__stored_cleanup(struct flow__stored *s);
/* A run `id` to replay `s` into (not started), with opts' observer and work
 * directory; with `attach`, journaled in opts->store under its lease
 * (FLOW_EBUSY when a live process holds it). */
struct flow_run *flow__stored_run(struct flow_engine *e, struct flow *f,
                                  const flow_run_options *opts, struct flow__stored *s,
                                  const char *id, bool attach, flow_error *err);
/* [L] Replay the records of `s` before its end (s->recs[0] is run_created).
 * FLOW_OK, or why they do not match the flow (then flow__run_discard it). */
flow_err flow__stored_replay(struct flow_run *r, struct flow__stored *s, flow_error *err);
/* [L] Free a run that replay could not rebuild; releases the engine lock. */
void flow__run_discard(struct flow_run *r);
/* [L] After replay: what was running runs again, what is pending and not
 * queued is queued, timers are armed, a stopping run finishes stopping. */
void flow__run_go_on(struct flow_run *r);

/* ---- retry.c ------------------------------------------------------------ */

/* [L] Apply a retry whose roots are activations `roots` (ids, n of them;
 * docs/internals/core.md, "Retry"), live or in replay. FLOW_ESTATE with
 * *why (flow__free it) when a root cannot run again (the journal does not
 * match), FLOW_ENOMEM; the run is then to be discarded. */
flow_err flow__run_retry_apply(struct flow_run *r, const uint32_t *roots, size_t n, char **why);
/* [L] The activation a retry left for `task` to reuse when it fires or is
 * skipped next (cleared, pending), or NULL. */
struct act *flow__retry_take_slot(struct flow_run *r, uint32_t task);
/* [L] Whether the run keeps what a retry may need (a `when` trigger's
 * leaves, a completion's deferred work): a journaled run, or one being
 * replayed. The same live and in replay, so both derive the same run. */
static inline bool flow__run_retryable(const struct flow_run *r)
{
    return r->replaying || flow__journal_on(&r->journal);
}

/* ---- feedback.c --------------------------------------------------------- */

/* [L] Ask request `spec` (id, type, message...) for activation `a`:
 * FLOW_OK with *answer (borrowed) when answered, FLOW_EWAITING after
 * opening it, else an error in `err`. */
flow_err flow__feedback_ask(struct flow_run *r, struct act *a, const flow_feedback *spec,
                            json_t **answer, flow_error *err);
/* [L] The body of a feedback task (loop thread): sets ctx's output, or
 * ctx->waiting, or ctx->error. */
void flow__feedback_task(struct flow_run *r, struct act *a, struct flow_ctx *ctx);
/* [L] An attempt ended waiting for ctx->waiting: park the activation. */
void flow__feedback_park(struct flow_run *r, struct act *a, const char *request);
/* [L] A retry runs `a` again: its requests that wait are closed (it asks
 * anew, under new ids). */
void flow__feedback_retire(struct flow_run *r, const struct act *a);
/* [L] The answered requests of `a` (id -> answer), for a remote attempt's
 * activation; NULL when none (or out of memory). */
json_t *flow__feedback_answers_of(struct flow_run *r, const struct act *a);
/* [L] Open the request a remote C function asked (`req`, as the worker
 * sent it) for `a`: its id (the run's), or NULL with *why (flow__free). */
const char *flow__feedback_remote_ask(struct flow_run *r, struct act *a, json_t *req, char **why);
/* [L] Record the answer to request `id` (already checked) and let its
 * activation go on; `answer` is borrowed. */
flow_err flow__feedback_answer(struct flow_run *r, const char *id, json_t *answer,
                               flow_error *err);
/* [L] The deadline of `a`'s request passed: its timeout answer is claimed
 * in the store (flow__feedback_claimed tells which answer stands), or,
 * without a store, taken. */
void flow__feedback_timer(struct flow_run *r, struct act *a);
/* The journal's `answered` hook (committer thread, no lock held): the
 * answer the store holds for `request`. */
void flow__feedback_claimed(void *udata, const char *request, json_t *answer);
/* [L] A "feedback" control request, {request, answer}: an answer another
 * process has claimed in the store. */
void flow__feedback_control(struct flow_run *r, const char *arg);
/* [L] Replay of the three feedback records. */
flow_err flow__feedback_replay(struct flow_run *r, struct act *a, const struct flow__jrec *rec,
                               flow_error *err);
/* [L] After replay: answered activations are queued, passed deadlines
 * answered, timers armed. */
void flow__feedback_resume(struct flow_run *r);
/* [L] Would the run only wait for people now? (every unfinished activation
 * parked, nothing running) */
bool flow__feedback_only_people(struct flow_run *r);
/* [L] The run stops (cancel, a failure): the activations parked waiting
 * for an answer are cancelled -- nobody's answer can matter any more, and
 * a run that waits for people (flow_run_options.wait) would never end. */
void flow__feedback_stop(struct flow_run *r);
/* The ids of the open requests, "a, b" (flow__free), for messages. */
char *flow__feedback_open_ids(struct flow_run *r);
void flow__feedback_cleanup(struct flow_run *r);
/* [L] Start the queued notification commands, the lock released meanwhile
 * (the loop thread). */
void flow__feedback_notify_spawn(struct flow_engine *e);

/* ---- ctx.c -------------------------------------------------------------- */

/* [L] A context for an attempt of `a` (recycled from the engine). */
struct flow_ctx *flow__ctx_new(struct flow_engine *e, struct flow_run *r, struct act *a);
/* [L] Give a context back. */
void flow__ctx_release(struct flow_engine *e, struct flow_ctx *ctx);
/* Journal `key: value` (taken) in the `info` of the attempt's completion
 * (cached, prompt, usage): called by the body's thread, as set_output. */
void flow__ctx_note(struct flow_ctx *ctx, const char *key, json_t *value);
/* ---- net.c --------------------------------------------------------------- */

/* The bodies of `http:` and `llm:` tasks (a pool thread, without the lock). */
int flow__net_http(struct flow_ctx *ctx);
int flow__net_llm(struct flow_ctx *ctx);

/* A worker's context (ctx->remote): record that `call` cannot work there. */
void flow__ctx_unsupported(struct flow_ctx *ctx, const char *call, const char *instead);

/* ---- prompt_run.c ------------------------------------------------------- */

/* [L] The text of prompt `ps` for activation `a`: its vars rendered in the
 * activation's scope. *used (may be NULL) gets {name, version, label} to
 * journal. NULL with `err` naming what failed. flow__free the text. */
char *flow__run_prompt_text(struct flow_run *r, struct act *a, const struct prompt_spec *ps,
                            json_t **used, flow_error *err);
/* [L] Run a `prompt:` task's attempt into `ctx`. */
void flow__prompt_task(struct flow_run *r, struct act *a, struct flow_ctx *ctx);

/* ---- scope.c ------------------------------------------------------------ */

/* [L] Render a template for activation `a` (NULL: run-level, e.g. result). */
flow_err flow__run_render(struct flow_run *r, struct act *a, const struct flow__tmpl *t,
                          json_t **out, flow_error *err);
flow_err flow__run_render_string(struct flow_run *r, struct act *a, const struct flow__tmpl *t,
                                 char **out, flow_error *err);

static inline const struct flow_task *act_task(const struct act *a)
{
    return a->run->flow->tasks.items[a->task];
}

#endif
