/*
 * flow.h -- the public API of libflow, a durable workflow engine.
 *
 * One header, opaque handles, `flow_` prefix. JSON values are jansson's
 * `json_t` (https://jansson.readthedocs.io): libflow follows jansson's
 * reference rules, and every function below says whether it borrows,
 * copies (increfs) or steals (`_take`) a value.
 *
 * Ownership in one paragraph: a `flow` is created with flow_new() or
 * flow_load_file() and freed with flow_free(); the `flow_task` handles it
 * hands out belong to it and stay valid until it is freed. A run keeps its
 * own reference to its flow, so the caller may free the flow as soon as the
 * run has started. An engine owns its threads; free every run of an engine
 * before the engine. Strings returned as `const char *` are borrowed and stay
 * valid for as long as the object they came from, unless a function says
 * otherwise.
 *
 * Threads: a `flow` may be built on one thread and then run from any, by
 * several engines at once; it cannot be changed once a run has started from
 * it (FLOW_ESTATE). Functions marked "thread-safe" may be called from any
 * thread; `flow_ctx_*` functions may be called only by the task the context
 * was given to, while it runs. JSON values a task borrows from its run are
 * read-only and must not be reference-counted by the task (see
 * flow_ctx_input).
 */
#ifndef FLOW_H
#define FLOW_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define FLOW_API __attribute__((visibility("default")))
#define FLOW_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define FLOW_API
#define FLOW_PRINTF(fmt, args)
#endif

#define FLOW_VERSION_MAJOR 0
#define FLOW_VERSION_MINOR 1
#define FLOW_VERSION_PATCH 0
#define FLOW_VERSION_STRING "0.1.0"

/* The library's version ("0.1.0"); compare with FLOW_VERSION_STRING to check
 * that the header matches the library a program runs with. */
FLOW_API const char *flow_version(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */

/* X(name, message): one row per error code. Codes never change meaning. */
#define FLOW_ERR_MAP(X)                                                        \
    X(OK, "success")                                                           \
    X(NOMEM, "out of memory")                                                  \
    X(INVAL, "invalid argument")                                             \
    X(PARSE, "syntax error")                                                   \
    X(VALIDATION, "invalid workflow")                                          \
    X(NOTFOUND, "not found")                                                   \
    X(EXISTS, "already exists")                                                \
    X(IO, "input/output error")                                                \
    X(STATE, "not allowed in the current state")                               \
    X(TIMEOUT, "timed out")                                                    \
    X(CANCELLED, "cancelled")                                                  \
    X(TASK, "task failed")                                                     \
    X(LIMIT, "limit exceeded")                                                 \
    X(SPAWN, "cannot start command")                                           \
    X(TEMPLATE, "template error")                                              \
    X(UNSUPPORTED, "not supported")                                            \
    X(SYSTEM, "system call failed")                                            \
    X(BUSY, "in use by another process")                                      \
    X(WAITING, "waiting for an answer")

typedef enum flow_err {
#define FLOW__ERR_ENUM(name, msg) FLOW_E##name,
    FLOW_ERR_MAP(FLOW__ERR_ENUM)
#undef FLOW__ERR_ENUM
    FLOW_ERR_COUNT_
} flow_err;

#define FLOW_OK FLOW_EOK

/* A short description of `code` ("out of memory"); never NULL. */
FLOW_API const char *flow_strerror(flow_err code);
/* The code's name without prefix ("NOMEM"); never NULL. */
FLOW_API const char *flow_err_name(flow_err code);

/* Details of a failure, filled by any function that takes a `flow_error *`
 * (which may always be NULL). Caller-allocated; holds no heap memory. */
typedef struct flow_error {
    flow_err code;     /* FLOW_OK when nothing failed */
    char message[512]; /* one line, lowercase, what first then where */
    char file[256];    /* workflow file the error is about, or "" */
    int line;          /* 1-based; 0 when unknown */
    int column;        /* 1-based; 0 when unknown */
} flow_error;

/* Severity of one diagnostic from validation. */
typedef enum flow_severity { FLOW_SEV_ERROR = 0, FLOW_SEV_WARNING = 1 } flow_severity;

/* A list of diagnostics (every error and warning a validation found). */
typedef struct flow_diags flow_diags;

FLOW_API flow_diags *flow_diags_new(void);
FLOW_API void flow_diags_free(flow_diags *d);
FLOW_API size_t flow_diags_count(const flow_diags *d);
/* Number of diagnostics with FLOW_SEV_ERROR. */
FLOW_API size_t flow_diags_error_count(const flow_diags *d);
/* The i-th diagnostic, borrowed from `d`; NULL when i is out of range. */
FLOW_API const flow_error *flow_diags_get(const flow_diags *d, size_t i,
                                          flow_severity *severity);

/* json_dumps() with JSON_ENCODE_ANY, writing every real in the fewest digits
 * that read back exactly (0.92 stays "0.92"). `flags` are jansson's. The
 * caller frees the result with free() (or the allocator it gave to
 * flow_set_alloc_funcs); NULL on allocation failure. */
FLOW_API char *flow_json_dumps(const json_t *v, size_t flags);

/* ------------------------------------------------------------------------ */
/* Allocation and logging                                                    */

/* Replace the allocator used by libflow; jansson is pointed at the same
 * malloc and free. Every block libflow allocates comes from these functions
 * and goes back to them (libflow keeps no cache of its own, and frees
 * everything it allocated once the objects that hold it are freed); SQLite
 * and libyaml keep their own allocators. All NULL restores the C library's.
 * Call before any other function of libflow or jansson; not thread-safe. */
typedef void *(*flow_malloc_fn)(size_t size);
typedef void *(*flow_realloc_fn)(void *ptr, size_t size);
typedef void (*flow_free_fn)(void *ptr);
FLOW_API void flow_set_alloc_funcs(flow_malloc_fn malloc_fn, flow_realloc_fn realloc_fn,
                                   flow_free_fn free_fn);

typedef enum flow_log_level {
    FLOW_LOG_DEBUG = 0,
    FLOW_LOG_INFO = 1,
    FLOW_LOG_WARN = 2,
    FLOW_LOG_ERROR = 3,
    FLOW_LOG_OFF = 4
} flow_log_level;

/* The library never writes to stdout or stderr; it reports through this
 * callback, which may be called from any of the engine's threads. Set it
 * while no engine runs; not thread-safe. */
typedef void (*flow_log_fn)(flow_log_level level, const char *message, void *udata);
FLOW_API void flow_set_log(flow_log_fn fn, void *udata, flow_log_level min_level);

/* Processes. A command task runs in a process group of its own, and
 * everything it starts -- also what leaves that group (`setsid cmd &`, a
 * daemon's double fork) -- is killed when its attempt ends, however it ends
 * (exit, timeout, cancel, and the death of this process, even by SIGKILL).
 * To find what left the group, a process that runs command tasks makes
 * itself a child subreaper (PR_SET_CHILD_SUBREAPER) before its first
 * command: orphans below it come to it instead of to init. That is true of
 * orphans of the host's own children too. libflow reaps the zombie
 * children it knows are its commands' (killed by it, seen alive with the
 * FLOW_CMD_TAG of a command, or in a command's process group); `all` true
 * makes it reap every zombie child it did not start itself -- for a program
 * whose only children are libflow's, as the `flow` CLI, so that an orphan
 * that left its command's group and exited at once is reaped too. With
 * `all`, the host must not wait for children of its own (their status
 * would be taken). Default false. Thread-safe. */
FLOW_API void flow_set_reap_orphans(bool all);

/* ------------------------------------------------------------------------ */
/* Flows and tasks                                                           */

typedef struct flow flow;
typedef struct flow_task flow_task;
typedef struct flow_ctx flow_ctx;
typedef struct flow_cond flow_cond;

/* A task body. Return 0 on success; anything else is a failure (set a
 * message with flow_ctx_fail()). Runs on an engine thread; see flow_ctx_*. */
typedef int (*flow_task_fn)(flow_ctx *ctx);

/* Create an empty flow. `name` is copied. NULL and `err` filled on failure. */
FLOW_API flow *flow_new(const char *name, flow_error *err);
/* Drop the caller's reference; running runs keep theirs. NULL is a no-op. */
FLOW_API void flow_free(flow *f);

FLOW_API const char *flow_name(const flow *f);
/* Optional metadata, copied. */
FLOW_API flow_err flow_set_description(flow *f, const char *description);
FLOW_API const char *flow_description(const flow *f);
FLOW_API flow_err flow_set_version(flow *f, const char *version);
FLOW_API const char *flow_get_version(const flow *f);
/* Take a checkpoint of every durable run of `f` every `seconds` (0: none;
 * the file's `checkpoint_every`). */
FLOW_API flow_err flow_set_checkpoint_every(flow *f, double seconds);
/* Parse a duration as workflow files write them ("250ms", "30s", "5m",
 * "2h", "1d", or a number of seconds). FLOW_EINVAL if it is none. */
FLOW_API flow_err flow_parse_duration(const char *text, double *seconds);

/* Initial state of every run (copied; must be an object). Run inputs are
 * merged over it key by key. */
FLOW_API flow_err flow_set_initial_state(flow *f, json_t *state);
/* The run's result: a template (see docs/file-format.md), copied. */
FLOW_API flow_err flow_set_result_template(flow *f, json_t *tmpl, flow_error *err);

/* Secrets (the file's `secrets:`; docs/file-format.md): environment variable
 * `env_name` (copied) holds a value that is never written to a store nor
 * handed out by a run. Each run of `f` reads the values of its secrets, and
 * of those of the flows nested in it, from the environment when it starts
 * or resumes: one that is not set makes flow_run_start and flow_run_resume
 * fail with FLOW_EINVAL naming it, before anything is written. Tasks get the
 * real values (commands inherit the environment; `{{ secrets.NAME }}` works
 * in flow_task_set_env templates only). Every occurrence of a value of 4
 * bytes or more (shorter ones are not redacted; the run logs a warning) is
 * replaced by "***" in everything written to the store (outputs, errors,
 * logs, state, inputs, events, answers), in the events given to
 * `on_event`, in the notes of flow_ctx_progress, and -- for a run not
 * nested in another -- in its result, error and activations once it has
 * ended or paused (flow_run_result, flow_run_error, flow_run_activation,
 * flow_run_to_json).
 * Values read back from the store are the redacted ones: a resumed run sees
 * "***" where an output or the state held a secret.
 * FLOW_EINVAL unless `env_name` is [A-Za-z_][A-Za-z0-9_]*; FLOW_EEXISTS when
 * listed already; FLOW_ESTATE once a run started the flow. flow_validate
 * refuses `{{ secrets.NAME }}` outside env templates and of a NAME not
 * listed (in a flow that lists none, such a template fails its task). */
FLOW_API flow_err flow_add_secret(flow *f, const char *env_name);
/* The secrets `f` lists, in the order added; flow_secret_at gives NULL past
 * the end. Borrowed, valid while `f` is. */
FLOW_API size_t flow_secret_count(const flow *f);
FLOW_API const char *flow_secret_at(const flow *f, size_t i);

/* Add a task named `name` (copied; unique in the flow), or, with `name`
 * NULL, a generated one unique in the flow ("task_3": the first `task_N`
 * not taken, N from the task's position; read it with flow_task_name). The
 * new task is a no-op start task until given a body and triggers. The
 * handle belongs to the flow. NULL when the name is taken (FLOW_EEXISTS) or
 * invalid. */
FLOW_API flow_task *flow_add_task(flow *f, const char *name, flow_error *err);
FLOW_API flow_task *flow_find_task(const flow *f, const char *name);
FLOW_API size_t flow_task_count(const flow *f);
/* Tasks in the order they were added; NULL when i is out of range. */
FLOW_API flow_task *flow_task_at(const flow *f, size_t i);
FLOW_API const char *flow_task_name(const flow_task *t);

/* --- bodies: exactly one; the last call wins --------------------------- */

/* A C function; `udata` is returned by flow_ctx_udata(). */
FLOW_API flow_err flow_task_set_fn(flow_task *t, flow_task_fn fn, void *udata);
/* An external command: argv[0] is looked up in PATH; no shell is involved.
 * Every element is a template. `argv` is NULL-terminated and copied. */
FLOW_API flow_err flow_task_set_command(flow_task *t, const char *const *argv, flow_error *err);
/* A script for `/bin/sh -c` (a template whose values may use `| shell`). */
FLOW_API flow_err flow_task_set_shell(flow_task *t, const char *script, flow_error *err);
/* A task that does nothing and completes with its input as output. */
FLOW_API flow_err flow_task_set_noop(flow_task *t);

/* --- triggers ------------------------------------------------------------ */

/* AND: run once every task given to flow_task_after() has completed. */
FLOW_API flow_err flow_task_after(flow_task *t, flow_task *dep);
/* OR: run at the first completion among the tasks given to after_any(). */
FLOW_API flow_err flow_task_after_any(flow_task *t, flow_task *dep);
/* Wait for `dep` to finish, but run even if it failed or was skipped. */
FLOW_API flow_err flow_task_optional(flow_task *t, flow_task *dep);

/* Conditions for flow_task_when(): leaves name a task (its completion) or a
 * label; names are resolved when the flow is validated. The combinators take
 * ownership of their `count` arguments (also on failure, and any NULL
 * argument makes the result NULL), so conditions nest without error checks:
 *   flow_task_when(t, flow_cond_and(2, flow_cond_task("a"),
 *                     flow_cond_or(2, flow_cond_task("b"), flow_cond_task("c"))));
 * The _v forms take an array (its elements are taken, the array is not). */
FLOW_API flow_cond *flow_cond_task(const char *task_name);
FLOW_API flow_cond *flow_cond_label(const char *label);
FLOW_API flow_cond *flow_cond_and(size_t count, ...);
FLOW_API flow_cond *flow_cond_or(size_t count, ...);
FLOW_API flow_cond *flow_cond_and_v(flow_cond *const *conds, size_t count);
FLOW_API flow_cond *flow_cond_or_v(flow_cond *const *conds, size_t count);
FLOW_API void flow_cond_free(flow_cond *c);
/* Set the task's `when` condition; takes `c` (also on failure). */
FLOW_API flow_err flow_task_when(flow_task *t, flow_cond *c);
/* Run each time `label` is emitted by a router or an emitting task. */
FLOW_API flow_err flow_task_on(flow_task *t, const char *label);
/* Run at kickoff even with triggers (true), or never at kickoff (false). */
FLOW_API flow_err flow_task_set_start(flow_task *t, bool start);
/* The task may be chosen as the run's entry point (flow run --start). */
FLOW_API flow_err flow_task_set_entry(flow_task *t, bool entry);
/* The task's output (a string, or an object's "label") is emitted as a label. */
FLOW_API flow_err flow_task_set_router(flow_task *t, bool router);

/* --- policy -------------------------------------------------------------- */

typedef enum flow_on_error {
    FLOW_ON_ERROR_FAIL = 0, /* the run fails; running tasks are cancelled */
    FLOW_ON_ERROR_CONTINUE, /* task failed, dependants skipped, the rest goes on */
    FLOW_ON_ERROR_IGNORE,   /* counts as completed with output null */
    FLOW_ON_ERROR_FALLBACK  /* run the fallback task with the error as input */
} flow_on_error;

typedef enum flow_executor {
    FLOW_EXEC_DEFAULT = 0, /* thread for C functions, process for commands */
    FLOW_EXEC_INLINE,      /* on the engine's scheduler thread */
    FLOW_EXEC_THREAD,      /* on the engine's thread pool */
    FLOW_EXEC_PROCESS,     /* in a child process (commands only) */
    FLOW_EXEC_REMOTE       /* on a worker through Redis (flow worker) */
} flow_executor;

typedef struct flow_backoff {
    double delay;     /* seconds before the first retry (default 1) */
    double factor;    /* multiplier per retry (default 2) */
    double max_delay; /* cap in seconds (default 300) */
    bool jitter;      /* randomise each delay in [delay/2, delay] */
} flow_backoff;

/* Seconds; 0 means no timeout. */
FLOW_API flow_err flow_task_set_timeout(flow_task *t, double seconds);
/* Extra attempts after the first failure: 0 .. FLOW_MAX_RETRIES (the
 * journal keeps an attempt's number in a byte; with a backoff of an hour,
 * 254 retries wait ten days). */
#define FLOW_MAX_RETRIES 254
FLOW_API flow_err flow_task_set_retries(flow_task *t, int retries);
FLOW_API flow_err flow_task_set_backoff(flow_task *t, const flow_backoff *b);
/* FLOW_ON_ERROR_FALLBACK needs flow_task_set_fallback(). */
FLOW_API flow_err flow_task_set_on_error(flow_task *t, flow_on_error mode);
/* On failure run `fallback` with the error as its input; its output stands
 * for the failed task's. Sets on_error to FLOW_ON_ERROR_FALLBACK. */
FLOW_API flow_err flow_task_set_fallback(flow_task *t, flow_task *fallback);
FLOW_API flow_err flow_task_set_executor(flow_task *t, flow_executor ex);
/* FLOW_EXEC_REMOTE: the workers' queue its activations go to (NULL or "":
 * "default"); letters, digits and _ . : - only. */
FLOW_API flow_err flow_task_set_queue(flow_task *t, const char *queue);
/* The body is C function `name` served by workers (flow_worker_register);
 * the task needs FLOW_EXEC_REMOTE. */
FLOW_API flow_err flow_task_set_remote_fn(flow_task *t, const char *name);
/* Higher runs first among ready tasks (default 0). */
FLOW_API flow_err flow_task_set_priority(flow_task *t, int priority);
/* Bound on activations per run (default 1000); crossing it fails the run. */
FLOW_API flow_err flow_task_set_max_activations(flow_task *t, int max);
/* Seconds between SIGTERM and SIGKILL when a command times out (default 5). */
FLOW_API flow_err flow_task_set_kill_grace(flow_task *t, double seconds);

/* --- inputs and outputs ------------------------------------------------- */

typedef enum flow_output_mode {
    FLOW_OUTPUT_AUTO = 0, /* JSON if stdout parses as JSON, else trimmed text */
    FLOW_OUTPUT_JSON,     /* stdout must be JSON */
    FLOW_OUTPUT_TEXT,     /* trimmed text */
    FLOW_OUTPUT_LINES     /* array of lines */
} flow_output_mode;

/* A template (any JSON value whose strings may hold {{ }}) for the task's
 * input, replacing the input its trigger gives. Copied. */
FLOW_API flow_err flow_task_set_input(flow_task *t, json_t *tmpl, flow_error *err);
/* Environment for a command: NAME=template, copied; adds to the inherited env.
 * The template may use `{{ secrets.NAME }}` (flow_add_secret). */
FLOW_API flow_err flow_task_set_env(flow_task *t, const char *name, const char *tmpl,
                                    flow_error *err);
/* Working directory for a command (a template), copied. */
FLOW_API flow_err flow_task_set_cwd(flow_task *t, const char *tmpl, flow_error *err);
FLOW_API flow_err flow_task_set_output_mode(flow_task *t, flow_output_mode mode);
/* Largest stdout kept as a command's output, in bytes (default 16 MiB). */
FLOW_API flow_err flow_task_set_output_limit(flow_task *t, size_t bytes);
/* State key that receives the task's output when it completes. Copied. */
FLOW_API flow_err flow_task_set_save(flow_task *t, const char *state_key);

/* --- human feedback (docs/concepts.md) ----------------------------------- */

typedef enum flow_feedback_type {
    FLOW_FEEDBACK_APPROVAL = 0, /* answer {"approved": bool} */
    FLOW_FEEDBACK_TEXT,         /* answer {"text": S} */
    FLOW_FEEDBACK_SELECTION     /* answer {"selected": S}, one of `options` */
} flow_feedback_type;

/* A request for a person. Everything is copied. */
typedef struct flow_feedback {
    flow_feedback_type type;
    const char *message;          /* what the person reads */
    const char *const *options;   /* selection: the choices */
    size_t option_count;
    double timeout;               /* seconds; 0: wait for ever */
    json_t *default_answer;       /* taken when the timeout runs out (true/false, a text,
                                   * an option); NULL: the timeout fails the task */
    const char *channel_key;      /* state key that also receives the answer */
    const char *id;               /* the request's id; NULL: "TASK-ACTIVATION" */
} flow_feedback;

/* Make `t` a feedback task: it asks `req` (its message a template, e.g.
 * "Publish {{ tasks.draft.output.title }}?") and its output is the answer. */
FLOW_API flow_err flow_task_set_feedback(flow_task *t, const flow_feedback *req, flow_error *err);

/* --- HTTP and model tasks (docs/file-format.md, "HTTP tasks", "Model tasks")
 *
 * Make `t` an HTTP request, `spec` being the mapping a workflow file's
 * `http:` holds (borrowed): {url, method, headers, body, expect, timeout,
 * max_size, ca_file}; its strings are templates. The output is the
 * response body (JSON when it is JSON). Runs on the engine's threads. */
FLOW_API flow_err flow_task_set_http(flow_task *t, json_t *spec, flow_error *err);
/* Make `t` a chat completion against $FLOW_LLM_URL, `spec` being an `llm:`
 * mapping: {model, prompt | messages, temperature, max_tokens, json,
 * timeout, max_size}. The output is the answer (parsed with json: true). */
FLOW_API flow_err flow_task_set_llm(flow_task *t, json_t *spec, flow_error *err);

/* --- limits across runs (docs/concepts.md, "Limits") ---------------------- */

/* At most `limit` activations of `t` with the same key run at once, across
 * every run of the store and every process using it (within one engine for
 * runs without a store). `key` is a template rendered for each activation
 * (e.g. "{{ inputs.customer }}"); NULL: one key for the task,
 * "FLOW.TASK". Keys are shared: tasks of other flows naming the same key
 * share its slots. A slot is held from just before an attempt starts until
 * it ends; one whose process dies is freed by its lease. `limit` 0 removes
 * the limit. */
FLOW_API flow_err flow_task_set_concurrency(flow_task *t, int limit, const char *key,
                                            flow_error *err);
/* At most `limit` starts of `t` per `window` seconds with the same key
 * (sliding window), across runs and processes like concurrency. `key` as
 * above; NULL: "FLOW.TASK". `limit` 0 removes it. */
FLOW_API flow_err flow_task_set_rate_limit(flow_task *t, int limit, double window,
                                           const char *key, flow_error *err);
/* At most `limit` runs of `f` with the same key at once (key NULL: the
 * flow's name); a run waits, pending, before its first task until one of
 * them ends or pauses. `key` may use inputs. */
FLOW_API flow_err flow_set_concurrency(flow *f, int limit, const char *key, flow_error *err);

/* What a task needs while it runs, or what an engine or worker has. */
typedef struct flow_resources {
    double cpu;     /* cores (fractions allowed) */
    double memory;  /* bytes */
    double gpu;     /* devices */
} flow_resources;
/* A task starts only when its resources are free in its engine (or, for
 * `executor: remote`, on a worker). NULL or all zero: none. */
FLOW_API flow_err flow_task_set_resources(flow_task *t, const flow_resources *r,
                                          flow_error *err);
/* Parse "cpu=8,memory=16G,gpu=1" (any subset; memory takes K, M, G, T
 * suffixes, powers of 1024) over what `out` holds. */
FLOW_API flow_err flow_resources_parse(const char *spec, flow_resources *out, flow_error *err);
/* This machine: its cores, its RAM, no GPU. */
FLOW_API void flow_resources_machine(flow_resources *out);
/* Does every task of `f` (and of its nested flows) that runs in an engine
 * fit `capacity`? FLOW_EINVAL naming the task and the resource if not. */
FLOW_API flow_err flow_check_resources(const flow *f, const flow_resources *capacity,
                                       flow_error *err);

/* --- caching (docs/concepts.md, "Caching") ------------------------------- */

/* Cache the task's outputs. Before an activation runs, `key` (a template
 * rendered in the activation's scope: inputs, input, state,
 * tasks.X.output, item, index...; a key that cannot be rendered fails the
 * attempt) is looked up in the run's store (a run without a store: in its
 * engine) under (flow, task, key): an entry that has not expired completes
 * the activation with its output and state writes, without running it, and
 * the completion is journaled `info: {cached: true, cached_at}`. Otherwise
 * it runs, and an attempt that succeeds keeps its output and state writes
 * as that entry for `ttl_seconds` (0: until `flow gc --clear-cache`).
 * Attempts that fail are never kept. Any task with a body: a C function,
 * a command, a nested flow (not a no-op nor a feedback question: refused
 * by flow_validate); on a foreach task, each element is cached apart.
 * `key` NULL removes the cache. flow_run_options.no_cache skips lookups. */
FLOW_API flow_err flow_task_set_cache(flow_task *t, const char *key, double ttl_seconds,
                                      flow_error *err);

/* --- fan-out, events, nested flows -------------------------------------- */

/* Fan the task out over a list known only at run time: `tmpl` (copied) must
 * render to a list; each element runs as one activation (templates see it as
 * `item`, its position as `index`; its input is the element unless the task
 * has an `input` template), at most `concurrency` at once (0: no limit).
 * Tasks after this one receive the outputs as a list, in order; an empty
 * list completes at once with []. */
FLOW_API flow_err flow_task_set_foreach(flow_task *t, json_t *tmpl, int concurrency,
                                        flow_error *err);

/* Route event `event` emitted by task `from_task` to task `to_task`: each
 * emission is one activation of `to_task` whose input is the payload with
 * its keys renamed by `map` (an object {source_key: target_key}, copied; NULL:
 * unchanged; keys not named pass as they are). FlowForge's connect with
 * param_mapping. Names are checked by flow_validate(). */
FLOW_API flow_err flow_connect(flow *f, const char *from_task, const char *event,
                               const char *to_task, json_t *map, flow_error *err);

/* Make the task run `child` as a nested run with the task's input as the
 * child's inputs; the child's result is the task's output and its failure the
 * task's failure. Takes a reference to `child` (the caller keeps its own). */
FLOW_API flow_err flow_task_set_subflow(flow_task *t, flow *child);

/* A prompt of a prompt directory (docs/file-format.md, "Prompts"): files
 * NAME.yaml, each a list of {label, version, template} entries, their
 * templates naming variables bare (`{{ text }}`). */
typedef struct flow_prompt_ref {
    const char *dir;     /* NULL: $FLOW_PROMPTS, else "prompts" */
    const char *name;    /* the file's NAME */
    const char *label;   /* NULL: "production" (unless `version` is given) */
    const char *version; /* NULL: the one `label` names; else this version
                          * (which must then also carry `label` if given) */
} flow_prompt_ref;

/* The prompts of `dir` (NULL: $FLOW_PROMPTS, else "prompts"), by name:
 * [{name, file, versions: [{version, labels, variables, line}]}], or for a
 * file that does not load {name, file, error}. NULL with `err` when the
 * directory cannot be read. */
FLOW_API json_t *flow_prompts_list(const char *dir, flow_error *err);
/* One version of a prompt: {name, version, labels, variables, template,
 * file, line}. NULL with `err` naming the prompt, label or version that is
 * not there, or what is wrong in its file. */
FLOW_API json_t *flow_prompt_get(const flow_prompt_ref *ref, flow_error *err);
/* Render a prompt with `vars` (an object; NULL: none): new text (free() it);
 * *used (may be NULL) gets {name, version, label}. A variable the prompt
 * uses and `vars` does not give is FLOW_ETEMPLATE naming it. */
FLOW_API char *flow_prompt_render(const flow_prompt_ref *ref, json_t *vars, json_t **used,
                                  flow_error *err);

/* Make the task render a prompt: `vars` (an object template, or a template
 * string that renders to one, rendered per activation; NULL: no variables)
 * gives the prompt's variables. Its output is {text, name, version, label},
 * and its completion journals {name, version, label}. The prompt file is
 * read and the version chosen now: FLOW_ENOTFOUND naming the prompt, label
 * or version that is not there, FLOW_EINVAL for a bad file (naming its
 * line) or for a variable the prompt uses that a literal `vars` does not
 * give (naming it). */
FLOW_API flow_err flow_task_set_prompt(flow_task *t, const flow_prompt_ref *ref, json_t *vars,
                                       flow_error *err);
/* Render a prompt from a C task with `vars` (an object): new text (free()
 * it), and the version used is journaled with the attempt's completion
 * ({prompt: {name, version, label}} in its `info`). NULL with `err`
 * naming what is missing. */
FLOW_API char *flow_ctx_render_prompt(flow_ctx *ctx, const flow_prompt_ref *ref, json_t *vars,
                                      flow_error *err);

/* Validate the state against a JSON Schema subset (type, properties,
 * required, enum, minimum, maximum, items) on every write: a write that breaks
 * it fails the writing task with a message naming the key and the rule.
 * `schema` is copied; NULL removes it. */
FLOW_API flow_err flow_set_state_schema(flow *f, json_t *schema, flow_error *err);

/* The model of a flow-system design (docs/seeds.md): a flow's settings ... */
typedef enum flow_type {
    FLOW_TYPE_DEFAULT = 0, /* each task on its own executor */
    FLOW_TYPE_INLINE,      /* C tasks on the scheduler thread */
    FLOW_TYPE_THREAD,      /* C tasks on the pool */
    FLOW_TYPE_PROCESS,     /* commands in child processes (C tasks: the pool) */
    FLOW_TYPE_PARALLEL,    /* as many tasks at once as the engine allows */
    FLOW_TYPE_SEQUENTIAL   /* one task of a run at a time */
} flow_type;

typedef struct flow_config {
    const char *description; /* NULL: unchanged */
    double timeout;          /* seconds for the whole run; 0: none (when it runs
                              * out, running tasks are stopped and the run
                              * fails with "the run timed out after Ns") */
    int retries;             /* default retries of the flow's tasks */
    flow_type type;
} flow_config;

/* Apply a FlowConfig: description, run timeout, default retries (for tasks
 * that did not set their own) and type. */
FLOW_API flow_err flow_configure(flow *f, const flow_config *cfg);

/* ... and `register_to`: add task `name` running `fn`, after every task in
 * `required` and waiting for (but not requiring) every task in `optional`
 * (NULL-terminated name lists, may be NULL). Unknown names and a
 * registration that would close a cycle are refused (FLOW_EVALIDATION) and
 * change nothing. */
FLOW_API flow_task *flow_register(flow *f, const char *name, flow_task_fn fn, void *udata,
                                  const char *const *required, const char *const *optional,
                                  flow_error *err);

/* A registry of flows by name (the seeds' flow factory). */
typedef struct flow_registry flow_registry;
typedef flow *(*flow_factory_fn)(void *udata, flow_error *err);

FLOW_API flow_registry *flow_registry_new(void);
FLOW_API void flow_registry_free(flow_registry *reg);
/* Register a flow (a reference is taken) or a factory under `name`. */
FLOW_API flow_err flow_registry_add(flow_registry *reg, const char *name, flow *f);
FLOW_API flow_err flow_registry_add_factory(flow_registry *reg, const char *name,
                                            flow_factory_fn fn, void *udata);
/* A flow by name: the registered flow (a new reference) or a fresh one from
 * the factory; NULL with FLOW_ENOTFOUND naming the known names. */
FLOW_API flow *flow_registry_create(flow_registry *reg, const char *name, flow_error *err);

/* Check the flow: names resolve, no cycle through after/after_any/when,
 * templates name what exists. Every problem is added to `diags` (may be NULL);
 * returns FLOW_EVALIDATION when there was at least one error, with the first
 * one in `err`. Runs call this themselves. */
FLOW_API flow_err flow_validate(flow *f, flow_diags *diags, flow_error *err);

/* The flow's graph as JSON (tasks, kinds, triggers, edges, policies): a new
 * reference the caller owns, or NULL on allocation failure. The format is
 * documented in docs/cli.md (flow graph --format json). */
FLOW_API json_t *flow_describe(flow *f);

/* When `flow serve` starts runs of the flow by itself (the file's
 * `schedule:`; docs/file-format.md): `cron` is five cron fields, an
 * @hourly-style name or "@every DURATION"; `timezone` an IANA name (NULL:
 * UTC); `inputs` (NULL: none) the inputs of each run; `catchup`: a serve
 * that was down starts the ticks it missed. */
typedef struct flow_schedule {
    const char *cron;
    const char *timezone;
    json_t *inputs;
    bool catchup;
} flow_schedule;
/* Set (copied; NULL removes it). FLOW_EINVAL, naming the field, for a bad
 * expression or an unknown time zone. */
FLOW_API flow_err flow_set_schedule(flow *f, const flow_schedule *s, flow_error *err);
/* The flow's schedule (borrowed, valid while `f` is unchanged), or NULL. */
FLOW_API const flow_schedule *flow_get_schedule(const flow *f);
/* The first tick of the flow's schedule strictly after `after` (epoch
 * seconds), or -1 (no schedule, or no tick in the next five years). It
 * switches the process's TZ under a lock for the call: call it where no
 * other thread prints local times at that moment. */
FLOW_API double flow_schedule_next(const flow *f, double after);

/* How flow_graph_svg() draws; zero-filled means the defaults. */
typedef struct flow_graph_options {
    int max_label;   /* characters of a name or an edge's text shown before it
                      * is cut with an ellipsis (the whole text is in a
                      * <title>); 0 = 24, at least 4 */
    bool left_right; /* layers from left to right; default top to bottom */
    bool no_style;   /* leave out the embedded <style> (a page brings its own) */
} flow_graph_options;

/* The flow's graph as a standalone SVG document, laid out in layers (our own
 * layout, deterministic byte for byte): one `<g id="t-NAME" class="task
 * kind-KIND" data-task="NAME">` per task, whose state classes (st-running,
 * st-completed, ...) a page may set; docs/cli.md (flow graph --format svg)
 * has the classes. `opts` may be NULL. The caller frees the result with
 * free() (or the allocator it gave to flow_set_alloc_funcs); NULL with `err`
 * set on allocation failure. */
FLOW_API char *flow_graph_svg(flow *f, const flow_graph_options *opts, flow_error *err);

/* ------------------------------------------------------------------------ */
/* Workflow files                                                            */

/* Load a workflow file (YAML or JSON) into a new flow. Every error and warning
 * goes to `diags` (may be NULL) with file:line:column; on any error the result
 * is NULL and `err` holds the first one. The flow is validated. */
FLOW_API flow *flow_load_file(const char *path, flow_diags *diags, flow_error *err);
/* The same from memory; `name_for_errors` stands for the file in messages. */
FLOW_API flow *flow_load_string(const char *text, size_t len, const char *name_for_errors,
                                flow_diags *diags, flow_error *err);

/* Bind a C function to a task of a loaded flow by name (a task whose file
 * entry has `noop: true` or no body). FLOW_ENOTFOUND when no such task. */
FLOW_API flow_err flow_bind(flow *f, const char *task_name, flow_task_fn fn, void *udata);

/* ------------------------------------------------------------------------ */
/* Engines and runs                                                          */

typedef struct flow_engine flow_engine;
typedef struct flow_run flow_run;

typedef struct flow_engine_options {
    int jobs; /* tasks running at once on threads and processes; 0 = cores */
    const char *redis_url; /* where `executor: remote` activations go
                            * (redis://...); NULL: $FLOW_REDIS when a remote
                            * task first runs */
    const flow_resources *resources; /* what its tasks may use at once
                                      * (copied); NULL: flow_resources_machine */
} flow_engine_options;

/* Start an engine: a scheduler thread and a pool of `jobs` threads. `opts`
 * may be NULL. Free it with flow_engine_free() after its runs are freed. */
FLOW_API flow_engine *flow_engine_new(const flow_engine_options *opts, flow_error *err);
FLOW_API void flow_engine_free(flow_engine *e);
FLOW_API int flow_engine_jobs(const flow_engine *e);

/* What an engine is doing now (for monitoring): runs loaded, activations
 * ready and waiting for a slot, attempts running. Thread-safe. */
typedef struct flow_engine_stats {
    size_t runs;
    size_t ready;
    int running;
    int jobs;
} flow_engine_stats;
FLOW_API void flow_engine_get_stats(flow_engine *e, flow_engine_stats *out);

typedef enum flow_run_status {
    FLOW_RUN_PENDING = 0,
    FLOW_RUN_RUNNING,
    FLOW_RUN_PAUSED,
    FLOW_RUN_COMPLETED,
    FLOW_RUN_FAILED,
    FLOW_RUN_CANCELLED
} flow_run_status;

typedef enum flow_act_status {
    FLOW_ACT_PENDING = 0,
    FLOW_ACT_RUNNING,
    FLOW_ACT_COMPLETED,
    FLOW_ACT_FAILED,
    FLOW_ACT_SKIPPED,
    FLOW_ACT_CANCELLED
} flow_act_status;

FLOW_API const char *flow_run_status_name(flow_run_status s);
FLOW_API const char *flow_act_status_name(flow_act_status s);

/* What the scheduler reports to an observer. */
typedef enum flow_event_type {
    FLOW_EV_RUN_STARTED = 0,
    FLOW_EV_TASK_STARTED,   /* an attempt began */
    FLOW_EV_TASK_COMPLETED,
    FLOW_EV_TASK_FAILED,    /* final failure of an activation */
    FLOW_EV_TASK_RETRYING,  /* an attempt failed; `delay` seconds until the next */
    FLOW_EV_TASK_SKIPPED,
    FLOW_EV_TASK_CANCELLED,
    FLOW_EV_LABEL,          /* a router emitted label, or a task an event: `label` */
    FLOW_EV_RUN_ENDED,
    FLOW_EV_TASK_WAITING    /* ready, but held by a limit: `label` says which */
} flow_event_type;

typedef struct flow_event {
    flow_event_type type;
    const char *run_id;
    const char *task;     /* NULL for run events */
    uint64_t activation;  /* 0 for run events */
    int attempt;          /* 1-based */
    const char *error;    /* failures: the message; completed: the error that
                           * `on_error: ignore` absorbed, if any; else NULL */
    const char *label;    /* FLOW_EV_LABEL: the label; FLOW_EV_TASK_WAITING: why;
                           * FLOW_EV_TASK_COMPLETED: "cached" when the output
                           * came from the cache (the task did not run) */
    double delay;         /* FLOW_EV_TASK_RETRYING */
    double time;          /* seconds since the Unix epoch */
    flow_run_status run_status; /* FLOW_EV_RUN_ENDED */
    long index;           /* task events of a foreach element: its position
                           * in the list; else -1 */
    const json_t *item;   /* ... and the element (borrowed, read only); else NULL */
} flow_event;

/* Called on the engine's scheduler thread, in the order events happened,
 * shortly after they happen (events are batched). Pointers in `ev` are valid
 * only during the call. It must not block. */
typedef void (*flow_event_fn)(const flow_event *ev, void *udata);

/* ------------------------------------------------------------------------ */
/* Stores: where runs and their journals are kept (docs/concepts.md, "The
 * journal"). A store is safe to share between the runs and threads of one
 * process; several processes may open the same durable store. */

typedef struct flow_store flow_store;

/* Open the store at `url`: "sqlite:PATH" (the default kind), "disk:DIR",
 * "memory:" (nothing persists); durable ones take "?durability=strict".
 * NULL means flow_store_default_url(). Created if missing (files 0600,
 * directories 0700); a store written by a newer libflow is refused. The
 * default store (flow_store_default_url(), wherever its `.flow` was found,
 * and "sqlite:.flow/flow.db" however given) is refused (FLOW_EINVAL, the
 * message names the path and what to do) when its `.flow` is a symbolic
 * link, not a directory, someone else's or writable by group or others, or
 * its flow.db a link: the current directory, or one above it, may be
 * anyone's. */
FLOW_API flow_store *flow_store_open(const char *url, flow_error *err);
/* Flags for flow_store_open_flags. */
#define FLOW_STORE_NOCREATE 1u /* a store that does not exist is FLOW_ENOTFOUND */
FLOW_API flow_store *flow_store_open_flags(const char *url, unsigned flags, flow_error *err);
/* Close the store after its runs are freed (pending commits are written
 * first). NULL is a no-op. */
FLOW_API void flow_store_close(flow_store *s);
FLOW_API const char *flow_store_url(const flow_store *s);
/* $FLOW_STORE when set and not empty; else the .flow/flow.db of the nearest
 * directory, from the current one up to the root, that has a `.flow` (as
 * git finds .git): "sqlite:.flow/flow.db" when that is the current
 * directory or there is none, else "sqlite:/ABSOLUTE/PATH/.flow/flow.db".
 * The string is valid until the next call in the same thread. */
FLOW_API const char *flow_store_default_url(void);
/* Can runs in this store outlive the process? (not for "memory:") */
FLOW_API bool flow_store_is_durable(const flow_store *s);

/* Runs in the store, oldest first: a new array of {id, flow, version,
 * status, created_at, ended_at, source}, times as RFC 3339 strings. A run
 * the store says is running also has `runner`: the live process that runs
 * it ("pid@host"), or null when none does -- its runner died without ending
 * it (kill -9, a crash) -- and then its status reads "stopped". */
FLOW_API json_t *flow_store_runs(flow_store *s, flow_error *err);
/* One stored run from its journal alone (no flow definition needed): {id,
 * flow, version, status, result, error, source, created_at, ended_at, state,
 * tasks: [{task, activation, status, attempts, started_at, ended_at, error,
 * output}]}, `runner` as in flow_store_runs and `duration` as in
 * flow_store_list_runs; in a "stopped" run the activations its runner was
 * running read "stopped" too. An activation that is an element of a
 * `foreach` also has `index` (its position in the list) and `item` (the
 * element). New reference; NULL with FLOW_ENOTFOUND if there is none. */
FLOW_API json_t *flow_store_run(flow_store *s, const char *run_id, flow_error *err);
/* The run's journal as an array of records {seq, time, type, task,
 * activation, attempt, ...payload fields}: `type` is the record's own
 * (a payload field of the same name gets the record's first word, as
 * "feedback_type"), every time is an RFC 3339 string, and run_created
 * gives {flow, version, inputs, start}. New reference. */
FLOW_API json_t *flow_store_journal(flow_store *s, const char *run_id, flow_error *err);
/* Which runs flow_store_list_runs gives. Zero-filled (or NULL): every run. */
typedef struct flow_run_query {
    const char *status; /* only runs in one of these statuses, a comma-separated
                         * list ("failed,stopped"); "stopped" as in
                         * flow_store_runs. NULL: any */
    const char *flow;   /* only runs of the flow of this name; NULL: any */
    size_t limit;       /* at most this many, the newest; 0: no limit */
} flow_run_query;
/* The runs `q` selects, newest first (by created_at, then id), each as in
 * flow_store_runs plus `duration`: seconds from its creation to its end,
 * or until now while it runs; null for a run that has neither ended nor
 * runs (paused, stopped, pending). *matched (may be NULL) gets how many
 * runs the query selects without its limit. An unknown status is
 * FLOW_EINVAL, the message listing the known ones. New reference. */
FLOW_API json_t *flow_store_list_runs(flow_store *s, const flow_run_query *q, size_t *matched,
                                      flow_error *err);
/* Reading a journal as it grows (`flow logs --follow`): each call of
 * flow_journal_reader_next gives the records appended since the last one,
 * without reading the others again. One thread at a time; free the reader
 * before closing its store. */
typedef struct flow_journal_reader flow_journal_reader;
/* A reader of run `run_id`'s journal, from its first record. NULL with
 * FLOW_ENOTFOUND when there is no such run. */
FLOW_API flow_journal_reader *flow_journal_reader_new(flow_store *s, const char *run_id,
                                                      flow_error *err);
/* The records appended since the last call (the first time: all of them),
 * as flow_store_journal gives them: a new array, empty when there is
 * nothing new. The run's status is read first (flow_journal_reader_status):
 * once it has ended, the records this call gives are its last ones. NULL
 * when the store cannot be read or the run is gone (FLOW_ENOTFOUND). */
FLOW_API json_t *flow_journal_reader_next(flow_journal_reader *r, flow_error *err);
/* The run's status as the last flow_journal_reader_next found it, as
 * flow_store_runs tells it ("running", "stopped", "paused", "completed",
 * ...); NULL before the first call. Valid until the next call. */
FLOW_API const char *flow_journal_reader_status(const flow_journal_reader *r);
/* NULL is a no-op. */
FLOW_API void flow_journal_reader_free(flow_journal_reader *r);
/* The run's checkpoints: an array of {id, task, created_at, reason}. */
FLOW_API json_t *flow_store_checkpoints(flow_store *s, const char *run_id, flow_error *err);
/* Ask whoever runs `run_id` to "pause" or "cancel" (with `reason`, may be
 * NULL); the runner acts within a fraction of a second. A run that no live
 * process runs (paused, or stopped by a crash) is paused or cancelled in
 * the store at once. A run that has ended is FLOW_ESTATE. */
FLOW_API flow_err flow_store_request(flow_store *s, const char *run_id, const char *what,
                                     const char *reason, flow_error *err);
/* Delete runs that ended more than `older_than` seconds ago; *deleted (may
 * be NULL) gets how many. Runs that have not ended are never deleted. */
FLOW_API flow_err flow_store_gc(flow_store *s, double older_than, size_t *deleted,
                                flow_error *err);
/* Remove the cache entries (flow_task_set_cache) that have expired, or
 * every entry with `all`; *removed (may be NULL) gets how many. A Redis
 * store drops expired entries by itself: there only `all` finds any. */
FLOW_API flow_err flow_store_gc_cache(flow_store *s, bool all, size_t *removed,
                                      flow_error *err);

/* How long the store took to make journal batches durable, since it was
 * opened (for monitoring): `count` batches, `seconds` in all, and how many
 * took at most each of flow_commit_bounds' seconds (the last bucket: more
 * than the largest bound). Zero for a store no run journals to. */
#define FLOW_COMMIT_BUCKETS 12
typedef struct flow_commit_stats {
    uint64_t count;
    double seconds;
    uint64_t buckets[FLOW_COMMIT_BUCKETS];
} flow_commit_stats;
FLOW_API void flow_store_commit_stats(flow_store *s, flow_commit_stats *out);
/* The upper bounds (seconds) of the first FLOW_COMMIT_BUCKETS - 1 buckets. */
FLOW_API const double *flow_commit_bounds(void);

/* Open feedback requests: of run `run_id`, or of every run in the store
 * (NULL): a new array of {run, request, task, activation, type, message,
 * options, created_at, deadline, expired}. `expired` is true once the
 * deadline has passed: such a request takes no answer any more (its
 * timeout answer stands; a resume takes it). */
FLOW_API json_t *flow_store_feedback(flow_store *s, const char *run_id, flow_error *err);
/* Answer request `request` of run `run_id`: `answer` is true/false
 * (approval), a string (text), or one of the options (selection); `by`
 * names who answers (may be NULL). The store takes one answer per request,
 * atomically across threads and processes: of two answers at the same
 * moment, one gets FLOW_OK and the other FLOW_ESTATE ("request R of run X
 * was already answered by B at T"). A request whose deadline has passed is
 * FLOW_ESTATE too ("... expired at T"), whether or not a process runs the
 * run. The answer is then journaled: a live runner goes on with it, or
 * `flow_run_resume` does. A request that does not exist (FLOW_ENOTFOUND)
 * or an answer of the wrong kind (FLOW_EINVAL) is an error and changes
 * nothing. Thread-safe. */
FLOW_API flow_err flow_store_answer(flow_store *s, const char *run_id, const char *request,
                                   json_t *answer, const char *by, flow_error *err);

typedef enum flow_durability {
    FLOW_DURABILITY_STORE = 0, /* what the store URL says (normal unless ?durability=strict) */
    FLOW_DURABILITY_NORMAL,    /* survives any crash of the process */
    FLOW_DURABILITY_STRICT     /* survives power loss: every batch synced to the disk */
} flow_durability;

typedef struct flow_run_options {
    json_t *inputs;          /* object or NULL; borrowed during flow_run_start */
    const char *run_id;      /* NULL: a new unique id */
    const char *start_task;  /* run this task first instead of the start tasks */
    flow_event_fn on_event;  /* observer, or NULL */
    void *event_udata;
    const char *work_dir;    /* where command tasks' FLOW_* files go; NULL: a temp dir */
    flow_store *store;       /* journal the run here (NULL: no journal; not resumable) */
    const char *source;      /* the workflow file the flow came from, kept with
                              * the run so that `flow resume RUN` finds it */
    flow_durability durability;
    double checkpoint_every; /* seconds between periodic checkpoints; 0: none */
    bool force;              /* resume: even if the flow definition changed */
    const char *from_checkpoint; /* resume: start a new run (id `new_run_id`,
                              * or a new one) from this checkpoint of run_id */
    const char *new_run_id;
    bool wait;               /* when only people can let the run go on, keep
                              * waiting for their answers instead of pausing */
    const char *by;          /* retry: who asks, kept in the journal (may be NULL) */
    bool no_cache;           /* run tasks with `cache` without looking their
                              * entries up (a completed attempt still
                              * replaces the entry) */
} flow_run_options;

/* Start a run of `f` on `e` and return at once; `opts` may be NULL. The flow
 * is validated first (FLOW_EVALIDATION; nothing runs). The caller owns the
 * run: flow_run_wait() for it, then flow_run_free(). */
FLOW_API flow_run *flow_run_start(flow_engine *e, flow *f, const flow_run_options *opts,
                                  flow_error *err);
/* Continue run `opts->run_id` kept in `opts->store` (both required): its
 * journal is replayed -- completed work is never run again, work that was
 * running when it stopped runs again -- and it goes on from there. `f` must
 * be the flow it was started with (FLOW_ESTATE names the difference unless
 * `opts->force`). A run that has ended is returned ended: flow_run_wait
 * gives its status at once. A run another live process executes is
 * FLOW_EBUSY. With `opts->from_checkpoint`, a new run starts from that
 * checkpoint and the original stays as it was. */
FLOW_API flow_run *flow_run_resume(flow_engine *e, flow *f, const flow_run_options *opts,
                                   flow_error *err);
/* Run again run `opts->run_id` of `opts->store` (both required), which
 * ended `failed` or `cancelled`, from where it failed, in the same run id
 * (docs/concepts.md, "Retry"): its journal is replayed as by
 * flow_run_resume (`f` must be its flow, unless `opts->force`; on_event,
 * work_dir, wait and the others are honoured the same way), a `run_retried`
 * record is made durable, and then the activations that failed or were
 * cancelled run again -- as the next attempt of the same activation -- and
 * those that were skipped because of them run when their triggers fire
 * again. Completed activations keep their outputs and are not run again.
 * `tasks` is NULL (every failure) or a NULL-terminated list of task names:
 * only those tasks' failed and cancelled activations run again; a named
 * task that only completed runs again, and so does everything downstream
 * of it; a named task that was skipped runs again only if what it waits
 * on does. The caller owns the run: flow_run_wait, then flow_run_free.
 * Errors change nothing: no such run (FLOW_ENOTFOUND); a run that
 * completed ("run 'X' completed: nothing to retry"), is paused, or stopped
 * without ending (its runner died: flow_run_resume continues those), or
 * that has nothing to run again (FLOW_ESTATE); a run another live process
 * executes (FLOW_EBUSY); an unknown task name, a named task that never ran,
 * or one skipped because of a task not retried (FLOW_EINVAL, naming it). */
FLOW_API flow_run *flow_run_retry(flow_engine *e, flow *f, const flow_run_options *opts,
                                  const char *const *tasks, flow_error *err);
/* Block until the run has ended or paused (and, with a store, until all of
 * its journal is durable and the store holds its status); returns its
 * status. When the store cannot record the end (a write fails), the run is
 * FLOW_RUN_FAILED and flow_run_error() gives the store's message ("cannot
 * record the end of run 'X': ..."): an end the store does not hold is never
 * reported as reached; the run can be resumed once the cause is fixed. */
FLOW_API flow_run_status flow_run_wait(flow_run *r);
/* Pause the run: nothing new starts, running tasks finish, then the run is
 * `paused` and flow_run_wait returns. Resume it with flow_run_resume.
 * Thread-safe; returns at once. */
FLOW_API void flow_run_pause(flow_run *r, const char *reason);
/* Ask the run to stop: running tasks are cancelled (commands get SIGTERM,
 * then SIGKILL), nothing new starts, the run ends `cancelled` with `reason`.
 * Thread-safe; returns at once. */
FLOW_API void flow_run_cancel(flow_run *r, const char *reason);
/* Async-signal-safe: call it from a signal handler. Running tasks are
 * stopped (commands get SIGTERM, then SIGKILL) and their attempts are not
 * recorded, so that a resume runs them again; the run ends `paused` with
 * the reason "interrupted". */
FLOW_API void flow_run_interrupt(flow_run *r);
/* Free a run that has ended (waits for it if not). NULL is a no-op. */
FLOW_API void flow_run_free(flow_run *r);

/* Blocking convenience: a temporary engine with `jobs` threads runs `f`
 * with `inputs` (may be NULL); `*result` (may be NULL) receives a new
 * reference to the result. Returns the run's status, or FLOW_RUN_FAILED with
 * `err` filled when the run could not start. */
FLOW_API flow_run_status flow_run_simple(flow *f, json_t *inputs, int jobs, json_t **result,
                                         flow_error *err);

FLOW_API const char *flow_run_id(const flow_run *r);
/* Thread-safe. */
FLOW_API flow_run_status flow_run_get_status(flow_run *r);
/* After the run ended: its result (borrowed, valid until flow_run_free):
 * the flow's `result` template (flow_set_result_template) when set; else what a
 * task gave flow_ctx_terminate; else the outputs of the end tasks (those no
 * trigger, fallback or connection of another task names; routers only when
 * no other task is one) that completed -- that output when there is one end
 * task, else an object {task: output} in declaration order. Never depends
 * on which task happened to finish last. */
FLOW_API json_t *flow_run_result(flow_run *r);
/* After the run ended: why it failed or was cancelled, or NULL. */
FLOW_API const char *flow_run_error(flow_run *r);
/* A copy of the run's state (new reference). Thread-safe. */
FLOW_API json_t *flow_run_state(flow_run *r);

/* One activation of a task, as the run recorded it. */
typedef struct flow_activation_info {
    uint64_t id;           /* 1-based, in creation order */
    const char *task;
    flow_act_status status;
    int attempts;
    double created_at, started_at, ended_at; /* epoch seconds; 0 = not yet */
    json_t *input;         /* borrowed; NULL when not built */
    json_t *output;        /* borrowed; NULL until completed */
    const char *error;     /* NULL unless failed */
    /* The traceback-like context of a FlowResult: */
    const char *path;      /* "task", or "parent_task/child_flow/task" in nested runs */
    const char *stderr_tail; /* commands: the last lines of stderr, or NULL */
    int exit_status;       /* commands: exit status, or -1 */
} flow_activation_info;

/* After the run ended: number of activations, and the i-th (0-based). The
 * pointers in `info` stay valid until flow_run_free(). */
FLOW_API size_t flow_run_activation_count(flow_run *r);
FLOW_API flow_err flow_run_activation(flow_run *r, size_t i, flow_activation_info *info);

/* The run as JSON: {id, flow, status, result, error, tasks:[{task,
 * activation, status, attempts, started_at, ended_at, error, info?}]}, times as RFC
 * 3339 strings. New reference; call after the run ended. */
FLOW_API json_t *flow_run_to_json(flow_run *r);

/* ------------------------------------------------------------------------ */
/* Inside a task                                                             */

/* The task's input: from its trigger (one dependency: its output; several:
 * an object keyed by task name; start tasks: the run inputs), or its `input`
 * template. Borrowed, valid while the task runs; never NULL (json null).
 * Values borrowed from the run are shared with the engine's threads: read
 * them, but neither change them nor json_incref/json_decref them (the run
 * counts its references under its lock); json_deep_copy what you keep. */
FLOW_API json_t *flow_ctx_input(flow_ctx *ctx);
/* The latest output of a completed task (DependencyData.get), borrowed (as
 * flow_ctx_input) and valid while the task runs, or NULL if that task has
 * not completed. */
FLOW_API json_t *flow_ctx_dep(flow_ctx *ctx, const char *task_name);
/* The outputs of this activation's dependencies as an object keyed by task
 * name (DependencyData.get_all). New reference to copies of the task's own;
 * NULL when out of memory. */
FLOW_API json_t *flow_ctx_deps(flow_ctx *ctx);
/* The value of state key `key` as this task sees it (its own writes
 * included): a new reference to a copy of the task's own (changing it
 * changes nothing in the run), or NULL when absent. */
FLOW_API json_t *flow_ctx_get_state(flow_ctx *ctx, const char *key);
/* Write a state key. The write is applied when the task succeeds and is
 * discarded if it fails. `value` is copied; _take steals it (NULL: ENOMEM). */
FLOW_API flow_err flow_ctx_set_state(flow_ctx *ctx, const char *key, json_t *value);
FLOW_API flow_err flow_ctx_set_state_take(flow_ctx *ctx, const char *key, json_t *value);
/* Update a state key as an operation on the value it holds when the task
 * completes, so that parallel activations updating one key lose nothing
 * (a plain set by several keeps the last completed): add `by` to a number
 * (absent or null counts as 0; whole numbers stay integers), append a copy
 * of `value` to a list (absent or null: a new list), merge a copy of
 * `object`'s keys into an object (shallow; absent or null: a new object).
 * Applied in the order asked, after the task's plain writes, only if it
 * succeeds; a key holding another type fails the attempt (so retries
 * apply). Not visible to the task's own flow_ctx_get_state. FLOW_EINVAL for
 * an empty key, a non-finite `by`, or a non-object to merge. */
FLOW_API flow_err flow_ctx_incr_state(flow_ctx *ctx, const char *key, double by);
FLOW_API flow_err flow_ctx_append_state(flow_ctx *ctx, const char *key, json_t *value);
FLOW_API flow_err flow_ctx_merge_state(flow_ctx *ctx, const char *key, json_t *object);
/* Set the task's output (default null). Copied / stolen. */
FLOW_API flow_err flow_ctx_set_output(flow_ctx *ctx, json_t *value);
FLOW_API flow_err flow_ctx_set_output_take(flow_ctx *ctx, json_t *value);
/* Record why the task failed; return nonzero from the task after it. */
FLOW_API void flow_ctx_fail(flow_ctx *ctx, const char *fmt, ...) FLOW_PRINTF(2, 3);
/* The same, and this failure is not retried whatever retries are left (a
 * 404 will not get better): the task's on_error applies at once. */
FLOW_API void flow_ctx_fail_final(flow_ctx *ctx, const char *fmt, ...) FLOW_PRINTF(2, 3);
/* If this attempt fails and a retry is left, wait `seconds` (0 or more)
 * before it instead of the task's backoff (a server's Retry-After), at most
 * an hour or the backoff's max_delay when that is longer. The journal's
 * act_retrying record holds the delay taken. FLOW_EINVAL for a
 * negative or non-finite value. */
FLOW_API flow_err flow_ctx_retry_after(flow_ctx *ctx, double seconds);
/* True once the task should stop: timed out, or the run is being cancelled.
 *
 * Abandonment: C cannot stop a thread, so a body is asked to stop (this
 * turns true) when its timeout runs out or its run stops, and is given the
 * task's kill_grace (flow_task_set_kill_grace) to return. A body that does
 * not is abandoned: its attempt fails ("... its thread was abandoned"), the
 * engine starts a replacement thread, and the run goes on or ends without
 * it. The abandoned body keeps running on its own thread until it returns.
 * Meanwhile everything it reached through its flow_ctx stays valid -- the
 * input, dependency outputs, task name, run id, item, even after
 * flow_run_free and flow_free -- but the attempt is over: reads of the state
 * find nothing, writes, operations, directives, events and its output are
 * dropped, flow_ctx_request_feedback returns FLOW_ECANCELLED. The run's
 * memory is released when the body returns. Poll this in long loops and
 * return soon after it turns true. */
FLOW_API bool flow_ctx_is_cancelled(flow_ctx *ctx);
/* Report progress (0..1) with an optional note; delivered to logs. */
FLOW_API void flow_ctx_progress(flow_ctx *ctx, double fraction, const char *note);

/* Dynamic work. These are directives: they take effect when the attempt
 * succeeds and are dropped if it fails. Values are copied. */
/* Run `task` (declared in the flow) next, with `input` (NULL: null). */
FLOW_API flow_err flow_ctx_next_task(flow_ctx *ctx, const char *task, json_t *input);
/* Run this task again with `input`. */
FLOW_API flow_err flow_ctx_next_iteration(flow_ctx *ctx, json_t *input);
typedef struct flow_branch {
    const char *task;
    json_t *input; /* NULL: null */
} flow_branch;
/* Run the branches in parallel; with `then_task` (may be NULL) that task runs
 * once after all of them, with their outputs as a list in branch order. */
FLOW_API flow_err flow_ctx_parallel(flow_ctx *ctx, const flow_branch *branches, size_t count,
                                    const char *then_task);
/* End the run now as completed with `result`, or as cancelled with `error`. */
FLOW_API flow_err flow_ctx_terminate(flow_ctx *ctx, json_t *result);
FLOW_API flow_err flow_ctx_cancel(flow_ctx *ctx, const char *error);
/* Take a checkpoint after this task completes. */
FLOW_API flow_err flow_ctx_checkpoint(flow_ctx *ctx);
/* Pause the run after this task completes (FlowForge's pause(reason,
 * checkpoint)): a checkpoint is taken, nothing new starts, and the run is
 * `paused` once running tasks finish; flow_run_resume continues it. */
FLOW_API flow_err flow_ctx_pause(flow_ctx *ctx, const char *reason);
/* Ask a person (docs/concepts.md, "Human feedback"). Answered already (this request id, in this
 * run): FLOW_OK and *answer a new reference to {approved|text|selected, by,
 * at}. Else the request is opened (journaled; the run shows it to people)
 * and the call returns FLOW_EWAITING: return from the task at once (the
 * return value does not matter); the task runs again, as the same attempt,
 * once the answer is in, and the same call then returns it. What the task
 * did before the call is therefore done again: ask first. A durable run
 * waits days; a run that has nothing else to do pauses meanwhile. */
FLOW_API flow_err flow_ctx_request_feedback(flow_ctx *ctx, const flow_feedback *req,
                                            json_t **answer);
/* Emit an event (or label) with a payload (NULL: null). Unlike directives it
 * goes out at once, so a long task streams events to its connections while
 * it runs; each emission is one activation of each subscriber. */
FLOW_API flow_err flow_ctx_emit(flow_ctx *ctx, const char *event, json_t *data);
/* In a foreach activation: the element and its position; NULL / -1 else. */
FLOW_API json_t *flow_ctx_item(flow_ctx *ctx);
FLOW_API long flow_ctx_index(flow_ctx *ctx);

FLOW_API void *flow_ctx_udata(flow_ctx *ctx);
FLOW_API const char *flow_ctx_task_name(flow_ctx *ctx);
FLOW_API const char *flow_ctx_run_id(flow_ctx *ctx);
FLOW_API uint64_t flow_ctx_activation(flow_ctx *ctx);
/* 1 on the first try, 2 on the first retry, ... */
FLOW_API int flow_ctx_attempt(flow_ctx *ctx);


/* ---- workers (docs/internals/distribution.md) ------------------------------ */

/* A worker takes the activations of `executor: remote` tasks from Redis
 * streams and runs them: commands (as `flow worker` does) and the C
 * functions it registered, for tasks `fn: NAME` (flow_task_set_remote_fn).
 * Up to `concurrency` activations at once: the C functions on a fixed pool
 * of that many threads, the commands as child processes. docs/c-api.md,
 * "Workers", says what a C function can do through its flow_ctx there. */
typedef struct flow_worker flow_worker;
typedef struct flow_worker_options {
    const char *const *queues; /* NULL-terminated; NULL: {"default"} */
    int concurrency;           /* activations at once; 0: 4 */
    const char *name;          /* NULL: HOST-PID */
    double claim_after;        /* seconds before a dead worker's entries are
                                * taken over; 0: 30 */
    const flow_resources *resources; /* what its activations may use at once
                                      * (copied); NULL: flow_resources_machine.
                                      * It starts an activation only when what
                                      * the task asks (flow_task_set_resources)
                                      * is free; one it could never start is
                                      * left to another worker. */
} flow_worker_options;
/* `url`: redis://...; NULL: $FLOW_REDIS. Connects once to check. */
FLOW_API flow_worker *flow_worker_new(const char *url, const flow_worker_options *opts,
                                      flow_error *err);
/* Serve C function `name` (1 to 100 of [A-Za-z0-9_.:-], as in `fn:`) for
 * tasks `fn: NAME`: `fn` runs on one of the worker's threads with a
 * flow_ctx whose flow_ctx_udata() is `udata`. What the function reads (its
 * input, the run's state, a foreach item, answers to its feedback requests)
 * comes with the activation; what it writes (its output, error, state
 * writes, directives) goes back with the completion, and the runner applies
 * it as it would a local task's. Its events stream to the runner while it
 * runs; flow_ctx_request_feedback works as locally (the function runs
 * again, as the same attempt, once answered). flow_ctx_deps cannot work on a
 * worker: it fails the attempt, naming the call. An activation for a name no
 * function was registered under fails ("function 'NAME' is not served by
 * worker 'W'"). FLOW_EEXISTS for a name registered twice, FLOW_EINVAL for a
 * bad name or a NULL `fn`, FLOW_ESTATE once flow_worker_run was called. */
FLOW_API flow_err flow_worker_register(flow_worker *w, const char *name, flow_task_fn fn,
                                       void *udata);
/* Run until flow_worker_stop() and drained; once per worker (FLOW_ESTATE). */
FLOW_API flow_err flow_worker_run(flow_worker *w, flow_error *err);
/* Stop taking activations and return from flow_worker_run once those
 * running have finished and been published. Async-signal-safe; callable
 * from any thread (a signal handler, another thread than the run's). */
FLOW_API void flow_worker_stop(flow_worker *w);
FLOW_API void flow_worker_free(flow_worker *w);
/* The live workers of `url` (NULL: $FLOW_REDIS) as a JSON array of objects
 * {name, host, pid, queues, running, done, started, seen, resources,
 * in_use}, by name; `resources` (its capacity) and `in_use` are objects
 * {cpu, memory, gpu} (memory in bytes), absent for workers that predate
 * them. */
FLOW_API flow_err flow_workers_list(const char *url, json_t **out, flow_error *err);

#ifdef __cplusplus
}
#endif
#endif /* FLOW_H */
