/* flowdef.h -- the inside of a flow definition: tasks, policies, conditions,
 * and the graph compiled from them by flow_validate() (graph.c).
 * See docs/internals/core.md. */
#ifndef FLOW_DEF_FLOWDEF_H
#define FLOW_DEF_FLOWDEF_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "def/template.h"
#include "flow.h"
#include "util/arena.h"
#include "util/nameidx.h"
#include "util/strmap.h"
#include "util/vec.h"

enum task_kind {
    TASK_NOOP = 0,
    TASK_FN,
    TASK_COMMAND, /* argv */
    TASK_SHELL,   /* /bin/sh -c script */
    TASK_SUBFLOW, /* a nested run of ext->subflow */
    TASK_FEEDBACK, /* asks a person: ext->feedback; its output is the answer */
    TASK_PROMPT,   /* renders ext->prompt on the loop thread */
    TASK_HTTP,     /* one HTTP request: ext->http (core/net.c) */
    TASK_LLM       /* a chat completion: ext->llm (core/net.c) */
};

/* A task's prompt (`prompt:`, def/prompt_task.c): the file read when the
 * flow was built, the entry chosen then, and the variables' template. */
struct prompt_spec {
    struct flow__prompt_file *file;
    const struct flow__prompt *chosen; /* an entry of `file` */
    char *label;                       /* as asked, or NULL */
    char *version;                     /* as asked, or NULL */
    struct flow__tmpl *vars;           /* NULL: no variables */
    json_t *vars_src;
};
void flow__prompt_spec_free(struct prompt_spec *ps);
/* Read and choose `ref`'s prompt and compile `vars` (borrowed; may be NULL)
 * for task `who` (messages). */
flow_err flow__prompt_spec_new(const flow_prompt_ref *ref, json_t *vars, const char *who,
                               struct prompt_spec **out, flow_error *err);
/* The same, *field (may be NULL) naming what was wrong: "name", "label",
 * "version" or "vars". */
flow_err flow__prompt_spec_make(const flow_prompt_ref *ref, json_t *vars, const char *who,
                                struct prompt_spec **out, const char **field, flow_error *err);
/* `{name, label, version, vars}` (an object) read from `dir` (NULL: the
 * default): as flow__prompt_spec_make. */
flow_err flow__prompt_spec_from_json(json_t *obj, const char *dir, const char *who,
                                     struct prompt_spec **out, const char **field,
                                     flow_error *err);
/* Give task `t` the prompt `ps` (taken) as its body. */
flow_err flow__task_take_prompt(struct flow_task *t, struct prompt_spec *ps);

/* A feedback task's request (flow_task_set_feedback, `feedback:`). */
struct feedback_spec {
    flow_feedback_type type;
    struct flow__tmpl *message;  /* rendered for each activation */
    char *message_src;
    json_t *options;             /* array of strings, or NULL */
    double timeout;              /* seconds, 0: none */
    json_t *default_answer;      /* or NULL */
    char *channel_key;           /* or NULL */
    char *id;                    /* or NULL: TASK-ACTIVATION */
    char **notify;               /* argv of the notification command, or NULL */
    size_t notify_argc;
};

struct task_env;

/* Defaults of `http:` and `llm:` tasks. */
#define FLOW__NET_TIMEOUT 300.0                 /* seconds for a request */
#define FLOW__NET_MAX_BYTES ((size_t)10 << 20)  /* 10 MiB of response body */

/* An `http:` task's request (flow_task_set_http; netspec.c). */
struct http_spec {
    json_t *src;                 /* the mapping as given (fingerprint, describe) */
    struct flow__tmpl *method;   /* or NULL: GET, or POST with a body */
    struct flow__tmpl *url;
    struct task_env *headers;    /* name -> value template */
    size_t header_count;
    struct flow__tmpl *body;     /* or NULL: none */
    int *expect;                 /* statuses taken as success; none: any 2xx */
    size_t expect_count;
    double timeout;              /* seconds for the whole request */
    size_t max_size;             /* bytes of response body at most */
    char *ca_file;               /* a CA bundle to trust, or NULL */
};

/* One message of an `llm:` task. */
struct llm_message {
    char *role;
    struct flow__tmpl *content;
};

/* An `llm:` task's call (flow_task_set_llm; netspec.c). */
struct llm_spec {
    json_t *src;
    struct flow__tmpl *model;    /* or NULL: $FLOW_LLM_MODEL */
    struct flow__tmpl *prompt;   /* the user message, or NULL (then named or messages) */
    struct prompt_spec *named;   /* `prompt: {name, ...}`: a prompt file's version */
    struct llm_message *messages;
    size_t message_count;
    double temperature;          /* NAN: the endpoint's */
    long max_tokens;             /* 0: the endpoint's */
    bool json;                   /* the answer must be JSON */
    double timeout;
    size_t max_size;
};

/* Where a spec given as a mapping is wrong, for the loader's positions:
 * `key` of the mapping, then item `index` (-1: none) of it, then `sub` of
 * that (NULL: none). */
struct spec_bad {
    const char *key;
    long index;
    const char *sub;
};

/* Policy knobs; tasks share the flow's defaults until they change one. A
 * task's own policy takes every knob it did not set (`set`, POL_* bits)
 * from the defaults again whenever they change (flow_configure). */
enum {
    POL_TIMEOUT = 1u << 0,
    POL_KILL_GRACE = 1u << 1,
    POL_BACKOFF = 1u << 2,
    POL_RETRIES = 1u << 3,
    POL_PRIORITY = 1u << 4,
    POL_MAX_ACTIVATIONS = 1u << 5,
    POL_ON_ERROR = 1u << 6,
    POL_EXECUTOR = 1u << 7,
    POL_OUTPUT_MODE = 1u << 8,
    POL_OUTPUT_LIMIT = 1u << 9,
};

struct task_policy {
    unsigned set;        /* POL_* bits the task set itself */
    double timeout;      /* seconds, 0 = none */
    double kill_grace;   /* seconds between SIGTERM and SIGKILL */
    flow_backoff backoff;
    int retries;
    int priority;
    int max_activations;
    flow_on_error on_error;
    flow_executor executor;
    flow_output_mode output_mode;
    size_t output_limit;
};

struct flow_cond {
    enum { COND_TASK, COND_LABEL, COND_AND, COND_OR } kind;
    char *name;             /* COND_TASK / COND_LABEL */
    struct flow_cond **kids; /* COND_AND / COND_OR */
    size_t count;
};

struct task_env {
    char *name;
    struct flow__tmpl *value;
};

/* A concurrency or rate limit (limits.c, docs/internals/limits.md). */
struct flow__limit {
    int limit;               /* slots, or starts per window */
    double window;           /* a rate limit's seconds; 0: a concurrency limit */
    struct flow__tmpl *key;  /* rendered per activation (or run); NULL: `fixed` */
    char *key_src;           /* as written, or NULL */
    char *fixed;             /* the default key: "FLOW.TASK", or the flow's name */
};

/* `cache: {key, ttl}` (def/cache_spec.c; the engine's side: core/cache.c). */
struct flow__cache_spec {
    struct flow__tmpl *key;      /* rendered per activation */
    char *key_src;               /* as written */
    double ttl;                  /* seconds an entry lasts; 0: until removed */
};

/* Rarely used parts of a task, allocated on first use. */
struct task_ext {
    char **argv_src;             /* TASK_COMMAND: the argv as written */
    struct flow__tmpl **argv;    /* compiled, argc entries */
    size_t argc;
    struct flow__tmpl *shell;    /* TASK_SHELL */
    char *shell_src;
    struct flow__tmpl *input;    /* `input` template or NULL */
    FLOW__VEC(struct task_env) env;
    struct flow__tmpl *cwd;
    char *save;                  /* state key for the output */
    struct flow_cond *when;
    FLOW__VEC(char *) on;        /* labels */
    const char *origin_file;     /* where the task was written (borrowed from the flow) */
    int origin_line, origin_column;
    struct flow *subflow;        /* TASK_SUBFLOW: a reference */
    struct flow__tmpl *foreach;  /* fan out over this list, or NULL */
    json_t *foreach_src;
    int concurrency;             /* foreach: at most this many at once; 0: no limit */
    struct feedback_spec *feedback; /* TASK_FEEDBACK */
    struct prompt_spec *prompt;  /* TASK_PROMPT */
    struct http_spec *http;      /* TASK_HTTP */
    struct llm_spec *llm;        /* TASK_LLM */
    struct flow_task *fallback;  /* on_error: fallback */
    char *queue;                 /* executor remote: the workers' queue (NULL: default) */
    char *remote_fn;             /* `fn: NAME`: a C function served by workers */
    struct flow__limit *concurrency_limit; /* `concurrency: {limit, key}`, or NULL */
    struct flow__limit *rate_limit;        /* `rate_limit:`, or NULL */
    flow_resources *resources;   /* `resources:`, or NULL (none asked) */
    struct flow__cache_spec *cache; /* `cache:`, or NULL */
};

/* Kinds of dependency edges a task declares (before compilation). */
enum edge_kind { EDGE_AFTER = 0, EDGE_AFTER_ANY, EDGE_OPTIONAL };

/* 64 bytes, paid per task of every flow: what few tasks need is in `ext`. */
struct flow_task {
    struct flow *flow;
    const char *name;        /* in the flow's arena */
    uint32_t index;          /* position in flow->tasks */
    uint8_t kind;            /* enum task_kind */
    int8_t start;            /* -1 unset, 0 false, 1 true */
    uint8_t trig;            /* enum trig_kind (compiled by graph.c) */
    bool entry : 1;
    bool router : 1;
    bool is_start : 1;           /* compiled by graph.c */
    bool is_fallback_target : 1; /* compiled by graph.c */
    flow_task_fn fn;
    void *udata;
    const struct task_policy *policy; /* flow->defaults or own_policy */
    struct task_ext *ext;    /* NULL until needed */
    /* Compiled by graph.c: */
    uint32_t leaf_first;     /* this task's leaves: flow->leaves[leaf_first .. +leaf_count) */
    uint32_t leaf_count;
};

/* The task standing in when `t` fails (on_error: fallback), or NULL. */
/* Is the task's body a C function served by workers (`fn: NAME`)? */
static inline bool flow__task_runs_remote_fn(const struct flow_task *t)
{
    return t->ext && t->ext->remote_fn;
}

static inline struct flow_task *flow__task_fallback(const struct flow_task *t)
{
    return t->ext ? t->ext->fallback : NULL;
}

/* Tasks (and labels) of one flow: indexes fit the packed edges and leaves
 * below, which are paid per dependency of every task. */
#define FLOW__MAX_TASKS ((uint32_t)1 << 29)

/* One declared dependency: `task` waits for `dep`. */
struct flow_edge {
    uint32_t task;
    uint32_t dep : 30;
    uint32_t kind : 2; /* enum edge_kind */
};

/* How a compiled trigger is evaluated. */
enum trig_kind {
    TRIG_NONE = 0, /* no leaves: starts, or only on labels / dynamic */
    TRIG_AND,      /* flat: every leaf (after + optional); two counters */
    TRIG_ANY,      /* flat: after_any only */
    TRIG_EXPR      /* anything else: walk the expression */
};

enum leaf_kind { LEAF_AFTER = 0, LEAF_OPTIONAL, LEAF_ANY, LEAF_WHEN_TASK, LEAF_WHEN_LABEL };

/* A leaf of a compiled trigger. */
struct flow_leaf {
    uint32_t owner;      /* the task whose trigger this is */
    uint32_t source : 29; /* task index (task leaves) or label index */
    uint32_t kind : 3;   /* enum leaf_kind */
};

/* Expression node for TRIG_EXPR (postfix-free tree in an array). */
struct flow__schema;

struct expr_node {
    uint8_t op;       /* 0 leaf, 1 and, 2 or */
    uint32_t leaf;    /* op 0: absolute leaf index */
    uint32_t first;   /* ops 1,2: children are expr[first .. first+count) */
    uint32_t count;
};

/* A `connect` route: events `event` emitted by `from` start `to`. */
struct flow_connection {
    char *from_name;
    char *event;
    char *to_name;
    json_t *map;     /* {source_key: target_key} or NULL */
    uint32_t from;   /* resolved by graph.c */
    uint32_t to;
};

/* (dependant task's leaf) reached from a source: CSR over sources. */
struct label_info {
    const char *name;
    FLOW__VEC(uint32_t) subscribers; /* tasks with `on: name` */
    FLOW__VEC(uint32_t) leaves;      /* when-leaves naming the label */
};

struct flow {
    atomic_int refs;
    char *name;
    char *description;
    char *version;
    json_t *initial_state;          /* object */
    struct flow__tmpl *result;      /* or NULL */
    json_t *result_src;
    struct flow__arena arena;       /* tasks and names */
    FLOW__VEC(struct flow_task *) tasks;
    struct flow__nameidx by_name;   /* task name -> index */
    FLOW__VEC(struct flow_edge) edges;
    struct task_policy defaults;
    FLOW__VEC(struct flow_connection) connections;
    struct flow__schema *schema;    /* state_schema, or NULL */
    json_t *schema_src;
    double run_timeout;             /* flow_configure: seconds, 0 = none */
    double checkpoint_every;        /* seconds between periodic checkpoints, 0 = none */
    flow_type type;                 /* flow_configure */
    bool frozen;                    /* a run started: no more changes (set under
                                     * the lock of flow__flow_freeze) */
    bool compiling;                 /* flow_validate is on the stack (nesting cycles) */
    /* Compiled graph (valid when compiled && !dirty): */
    bool compiled;
    bool dirty;
    struct flow_leaf *leaves;
    uint32_t leaf_count;
    bool has_optional;              /* some leaf is LEAF_OPTIONAL */
    uint32_t *dependant_off;        /* n+1 offsets into dependant_leaf */
    uint32_t *dependant_leaf;       /* leaf indexes whose source is that task */
    struct expr_node *expr;         /* for TRIG_EXPR tasks */
    uint32_t *expr_root;            /* per task: root node index or UINT32_MAX;
                                     * NULL when no task has an expression */
    uint32_t expr_count;
    FLOW__VEC(struct label_info) labels;
    struct flow__strmap label_by_name; /* name -> index + 1 */
    FLOW__VEC(uint32_t) start_tasks;
    /* End tasks, in declaration order: those no trigger, fallback or
     * connection of another task names (routers only when nothing else
     * is). Their outputs make the run's result when `result:` is not set. */
    FLOW__VEC(uint32_t) end_tasks;
    bool has_routers;               /* any task with router: true */
    bool has_subflows;              /* any task that runs a nested flow */
    FLOW__VEC(char *) secrets;      /* environment variables never written
                                     * nor printed (secrets.c) */
    struct flow__schedule *schedule; /* `schedule:`, or NULL (schedule.c) */
    struct flow__limit *run_limit;  /* `concurrency:` of the flow's runs, or NULL */
};

/* ---- netspec.c ---------------------------------------------------------- */

/* Check and compile `src`, an `http:` (or `llm:`) mapping as a workflow
 * file writes it, into *out. `what` names it in messages ("'http' of task
 * 'x'"); `bad` (may be NULL) says where the first error is. FLOW_EINVAL
 * (with the message in err), FLOW_ETEMPLATE, FLOW_ENOMEM. */
flow_err flow__http_spec_parse(json_t *src, const char *what, struct http_spec **out,
                               struct spec_bad *bad, flow_error *err);
/* `prompt_dir`: where a `prompt: {name, ...}` is read (NULL: $FLOW_PROMPTS,
 * else "prompts"). */
flow_err flow__llm_spec_parse(json_t *src, const char *what, const char *prompt_dir,
                              struct llm_spec **out, struct spec_bad *bad, flow_error *err);
void flow__http_spec_free(struct http_spec *s);
void flow__llm_spec_free(struct llm_spec *s);
/* Make `t` an http (llm) task running `spec` (taken, also on failure). */
flow_err flow__task_take_http(flow_task *t, struct http_spec *spec);
flow_err flow__task_take_llm(flow_task *t, struct llm_spec *spec);
/* Is `s` an HTTP method (1 to 20 upper-case letters)? */
bool flow__http_valid_method(const char *s);
/* Is `s` a header name (an RFC 9110 token)? */
bool flow__http_valid_header_name(const char *s);

/* ---- limits.c ---------------------------------------------------------- */

void flow__limit_free(struct flow__limit *l);
/* The task's ext, made on first use (flowdef.c); NULL when out of memory. */
struct task_ext *flow__task_ext_of(struct flow_task *t);
/* Forget the body a task had, before it gets a new one (a no-op then). */
void flow__task_clear_body(struct flow_task *t);
/* FLOW_ESTATE once the flow is frozen; else marks its graph stale. */
flow_err flow__flow_mutate(struct flow *f);
/* Does the task ask anything of the limits (concurrency, rate, resources)? */
static inline bool flow__task_limited(const struct flow_task *t)
{
    return t->ext && (t->ext->concurrency_limit || t->ext->rate_limit || t->ext->resources);
}
void flow__cache_spec_free(struct flow__cache_spec *c);
/* "cpu 2", "memory 4G", "gpu 1": the first resource `need` asks more of
 * than `have`, written into buf; NULL when it fits. */
const char *flow__resources_misfit(const flow_resources *need, const flow_resources *have,
                                   char *buf, size_t size);
/* Format `bytes` as 512M, 4G, 1.5G... */
void flow__format_bytes(double bytes, char *buf, size_t size);

/* ---- schedule.c -------------------------------------------------------- */

void flow__schedule_free(struct flow *f);

/* ---- secrets.c -------------------------------------------------------- */

struct flow__secrets;

/* Is `s` an environment variable name: [A-Za-z_][A-Za-z0-9_]*? */
bool flow__valid_env_name(const char *s);
/* Does `f` list secret `name`? */
bool flow__flow_has_secret(const struct flow *f, const char *name);
void flow__flow_secrets_free(struct flow *f);
/* Why task `t` of `f` (or the flow's `result`) uses `{{ secrets.NAME }}`
 * where it may not -- outside `env` values, or naming no secret of `f` --
 * (flow__free), or NULL. */
char *flow__secrets_check_task(const struct flow *f, const struct flow_task *t);
char *flow__secrets_check_flow(const struct flow *f);
/* The values of the secrets of `f` and of the flows nested in it, from the
 * environment, in *out (NULL: none). One that is not set is FLOW_EINVAL
 * naming it; FLOW_ENOMEM. */
flow_err flow__flow_secrets(const struct flow *f, struct flow__secrets **out, flow_error *err);

/* The notification command of a feedback task (`notify:`), copied. */
flow_err flow__task_set_feedback_notify(flow_task *t, const char *const *argv, size_t argc);

/* Record where a task was defined, for messages ("(flow.yaml:12:3)").
 * `file` is copied into the flow. */
void flow__task_set_origin(flow_task *t, const char *file, int line, int column);

/* Tasks with a policy of their own take what they did not set from the
 * flow's defaults (after the defaults changed). */
void flow__policy_inherit(struct flow *f);

/* Index of a label, or -1. */
int flow__label_index(const struct flow *f, const char *name);

/* Take / drop a reference (runs hold one). */
void flow__ref(struct flow *f);

/* Validate `f` for a run and freeze it and its nested flows: from then on
 * nothing in them changes, and runs on any engine read them without a lock.
 * Thread-safe (one lock for the process, shared with flow_validate). */
flow_err flow__flow_freeze(struct flow *f, flow_error *err);

/* Format " (file:line:col)" for a task into buf, or "" when unknown. */
void flow__task_where(const flow_task *t, char *buf, size_t len);

/* The hash of a flow definition ("fnv1a64:0123456789abcdef"); false on
 * allocation failure. */
bool flow__flow_hash(struct flow *f, char *out, size_t size);

/* Check an answer against a feedback request (def/feedback.c): NULL, or why not
 * (flow__free). The answer as the task sees it, {approved|text|selected,
 * by, at}, in *out (a new reference). */
char *flow__feedback_check(flow_feedback_type type, json_t *options, json_t *value,
                           const char *by, double at, json_t **out);
/* The value an answer gives (the bool, the text, the option), as a
 * `channel_key` receives it; borrowed from `answer`. */
json_t *flow__feedback_value(json_t *answer);

#endif
