/* load_int.h -- the inside of the workflow-file loader, shared by its files:
 * load.c (the schema's tables, the top level, the public functions),
 * load_diag.c (diagnostics, values read with their positions, template
 * checks), load_policy.c (timeouts, retries, error strategies, defaults),
 * load_task.c (a task: triggers, body, I/O) and load_nested.c (nested flow
 * files, loaded once per tree). */
#ifndef FLOW_DEF_LOAD_INT_H
#define FLOW_DEF_LOAD_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "def/flowdef.h"
#include "def/yaml.h"
#include "flow.h"
#include "util/buf.h"
#include "util/compat.h"
#include "util/vec.h"

enum scope { SCOPE_TOP = 0, SCOPE_TASK, SCOPE_DEFAULTS };

/* Keys (and values) the format defines but this version does not implement
 * yet. They are accepted by the schema and reported as errors, so that
 * nothing silently misbehaves; delete a line when its feature lands. Lines
 * with a `value` apply to that value of the key in any scope. */
struct unsupported {
    enum scope scope;
    const char *key;
    const char *value;   /* NULL: the key itself */
    const char *message; /* NULL: "'KEY' is not supported yet" */
};

#define DURATION_HINT "use 250ms, 30s, 5m, 2h, 1d or seconds"
#define IN(s, list) flow__ld_in_list((s), (list), FLOW__ARRAY_LEN(list))

/* Is `key` a key of a task? The one nearest to it, or NULL. */
bool flow__ld_is_task_key(const char *key);
const char *flow__ld_closest_task_key(const char *key);

struct ldiag {
    flow_error e;
    flow_severity sev;
    struct flow__yaml_pos at; /* where it sorts in this file (a nested file's
                               * diagnostics sort at its `flow:` key) */
    size_t seq;               /* keeps the order of diagnostics at one place */
};

/* Nested flows: the files being loaded, outermost first, and the files
 * already loaded in this tree (each is loaded once and shared). */
#define MAX_NESTING 32

struct frame {
    const char *canon;            /* realpath, or NULL (a string has none) */
    const char *file;             /* the loader's name for it */
    struct flow__yaml_pos include; /* its `flow:` key being loaded now */
};

struct loaded {
    char *canon; /* owned */
    flow *f;     /* the tree's reference; NULL when it failed to load */
};

struct tree {
    FLOW__VEC(struct frame) stack;
    FLOW__VEC(struct loaded) done;
};

/* A label named in `on` or `when`, for the warning about labels no router
 * emits. */
struct label_use {
    const char *name; /* borrowed from the document */
    const char *task; /* borrowed from the document */
    const char *key;  /* "on" or "when" */
    struct flow__yaml_pos pos;
};

enum {
    P_TIMEOUT = 1u << 0,
    P_RETRIES = 1u << 1,
    P_BACKOFF = 1u << 2,
    P_ON_ERROR = 1u << 3,
    P_EXECUTOR = 1u << 4,
    P_PRIORITY = 1u << 5,
    P_MAX_ACTIVATIONS = 1u << 6,
    P_OUTPUT = 1u << 7,
    P_ENV = 1u << 8,
    P_CWD = 1u << 9,
    P_KILL_GRACE = 1u << 10,
    P_QUEUE = 1u << 11,
};

enum { B_DELAY = 1u << 0, B_FACTOR = 1u << 1, B_MAX_DELAY = 1u << 2, B_JITTER = 1u << 3 };

/* Policy keys of a task or of `defaults`, checked; `set` says which were
 * given. A task's policy is merged over the defaults when it is applied. */
struct policy {
    unsigned set;
    double timeout;
    double kill_grace;
    int retries;
    int priority;
    int max_activations;
    flow_backoff backoff;
    unsigned backoff_set;
    flow_on_error on_error;
    const char *fallback; /* borrowed from the document */
    flow_executor executor;
    flow_output_mode output;
    const char *queue; /* borrowed from the document */
    json_t *env; /* owned: NAME -> string template */
    char *cwd;   /* owned, relative paths resolved */
};

/* Whether templates may use `item` and `index`: not outside a foreach task,
 * yes in one, and not in its `foreach` list (which makes them). */
enum item_scope { ITEM_UNSET = 0, ITEM_SET, ITEM_LIST };

/* A template of task `task` that reads `tasks.DEP.output`, checked once the
 * whole graph is known (load_refs.c). */
struct output_ref {
    const char *task;  /* borrowed from the document */
    char *dep;         /* owned */
    char *text;        /* owned: the `{{ }}` as written */
    char *what;        /* owned: "'run' of task 'x'" */
    struct flow__yaml_pos pos;
};

struct loader {
    const char *file; /* names the text in messages */
    const char *dir;  /* absolute base of relative `cwd` and `flow`, or NULL */
    struct flow__yaml_doc *doc;
    json_t *tasks; /* the `tasks` mapping when it is one */
    flow *f;
    struct policy defaults;
    FLOW__VEC(struct ldiag) diags;
    size_t hidden_errors; /* a nested file that failed where it was first used */
    struct tree *tree;
    size_t depth; /* this file's frame in tree->stack */
    FLOW__VEC(struct label_use) labels;
    bool has_router;
    enum item_scope item_scope; /* of the templates being checked */
    const char *cur_task;       /* the task whose templates are being checked, or NULL */
    bool in_env;                /* they are `env` values: secrets may be named */
    bool secrets_broken;        /* `secrets` is not a list: its names are unknown */
    FLOW__VEC(const char *) broken_tasks; /* tasks with an error: what they wait for is unknown */
    FLOW__VEC(struct output_ref) output_refs;
    bool nomem;
};

/* A value of the document with where it is written. */
struct val {
    json_t *v;
    struct flow__yaml_pos pos;
    const char *raw; /* a plain scalar typed as non-string, as written; else NULL */
};

/* ---- load_diag.c ----------------------------------------------------- */

struct val flow__ld_member(const struct loader *L, json_t *map, const char *key);
/* The same, and where the key is written (in *key_pos); `value` (may be NULL) is the member's
 * value when the caller has it already (iterating the mapping). */
struct val flow__ld_member_at(const struct loader *L, json_t *map, const char *key, json_t *value,
                              struct flow__yaml_pos *key_pos);
/* The strings given, up to a NULL, one after the other into `buf`, cut to `len` - 1 bytes as
 * snprintf cuts: the "'key' of task 'x'" of messages, built for every key of a file, at a
 * fraction of snprintf's cost. */
void flow__ld_concat(char *buf, size_t len, ...);
struct val flow__ld_item(const struct loader *L, json_t *seq, size_t i);
/* Keep a diagnostic, sorted at `at` in this file. */
void flow__ld_add_diag(struct loader *L, const flow_error *e, flow_severity sev,
                       struct flow__yaml_pos at);
void flow__ld_report(struct loader *L, struct flow__yaml_pos pos, const char *fmt, ...)
    FLOW__PRINTF(3, 4);
void flow__ld_warn(struct loader *L, struct flow__yaml_pos pos, const char *fmt, ...)
    FLOW__PRINTF(3, 4);
/* Report a failed call into the core at `pos`. */
void flow__ld_core_failed(struct loader *L, struct flow__yaml_pos pos, flow_err rc,
                          const flow_error *e, const char *what);
/* In a workflow file an object is a mapping. */
const char *flow__ld_type_name(const json_t *v);
const char *flow__ld_closest(const char *word, const char *const *cands, size_t n);
/* " (did you mean 'x'?)" or "". */
void flow__ld_suggestion(char *buf, size_t len, const char *best);
/* Report every key of mapping `x` that is not in `keys` ("unknown key 'k' in
 * WHAT; did you mean ...?"); false when there was one. */
bool flow__ld_known_keys(struct loader *L, const struct val *x, const char *const *keys, size_t n,
                         const char *what);
void flow__ld_unknown_task(struct loader *L, struct flow__yaml_pos pos, const char *name,
                           const char *what);
bool flow__ld_valid_task_name(const char *s);

bool flow__ld_get_string(struct loader *L, const struct val *x, const char *what, bool non_empty,
                         const char **out);
/* A scalar as text: strings as they are, numbers and booleans as written. */
const char *flow__ld_scalar_text(const struct val *x, char *buf, size_t len);
bool flow__ld_get_bool(struct loader *L, const struct val *x, const char *what, bool *out);
bool flow__ld_get_int(struct loader *L, const struct val *x, const char *what, long long min,
                      const char *desc, int *out);
bool flow__ld_get_duration(struct loader *L, const struct val *x, const char *what, double *out);
/* One of `names`; *out is its index. */
bool flow__ld_get_choice(struct loader *L, const struct val *x, const char *what,
                         const char *const *names, size_t n, size_t *out);
/* Compile a template string and check the names it uses. */
bool flow__ld_check_template(struct loader *L, const char *s, struct flow__yaml_pos pos,
                             const char *what);
/* The same for every string inside a JSON value. */
bool flow__ld_check_template_value(struct loader *L, const struct val *x, const char *what);
/* A `cwd` as the core should see it: relative to the workflow file. */
char *flow__ld_resolve_cwd(struct loader *L, const char *s, struct flow__yaml_pos pos,
                           const char *what);

/* ---- load_limits.c ---------------------------------------------------- */

/* `concurrency: {limit, key}` of a task (the mapping form; a number is
 * foreach's): false when it was reported. */
bool flow__ld_parse_task_concurrency(struct loader *L, flow_task *t, const struct val *x,
                                     const char *what);
void flow__ld_parse_rate_limit(struct loader *L, flow_task *t, const struct val *x,
                               const char *what);
void flow__ld_parse_resources(struct loader *L, flow_task *t, const struct val *x,
                              const char *what);
/* `cache: {key, ttl}` of a task: its key template in *key and ttl (0: none)
 * in *ttl; false when it was reported. */
bool flow__ld_parse_cache(struct loader *L, const struct val *x, const char *what,
                          const char **key, double *ttl);
/* The flow's `concurrency:` (runs at once). */
void flow__ld_parse_flow_concurrency(struct loader *L, json_t *root);

/* Errors reported so far. */
size_t flow__ld_error_count(const struct loader *L);

/* Compile `s`, a `shell:` script, check its names, and warn about a
 * `{{ }}` not quoted with `| shell`. */
bool flow__ld_check_shell(struct loader *L, const char *s, struct flow__yaml_pos pos,
                          const char *what);

/* ---- load_prompt.c -------------------------------------------------- */

struct prompt_spec;
/* `prompt: NAME` or `{name, label, version, vars}` (`what` names it): the
 * prompt read from `prompts/` beside the file (or $FLOW_PROMPTS) and its
 * version chosen; NULL after reporting. */
struct prompt_spec *flow__ld_parse_prompt(struct loader *L, const struct val *x,
                                          const char *what);

/* ---- load_refs.c ---------------------------------------------------- */

/* Report every template that reads `tasks.X.output` in a task that X can
 * never precede (X is not upstream of it). */
void flow__ld_check_output_refs(struct loader *L);
void flow__ld_output_refs_free(struct loader *L);

/* ---- load_policy.c --------------------------------------------------- */

/* A queue or `fn` name: 1 to 100 of [A-Za-z0-9_.:-]; reported otherwise. */
bool flow__ld_check_worker_name(struct loader *L, const char *s, struct flow__yaml_pos pos,
                                const char *what);
void flow__ld_policy_cleanup(struct policy *p);
/* Parse one policy key into `p`; false when `key` is not a policy key. */
bool flow__ld_parse_policy_key(struct loader *L, const char *key, const struct val *x,
                               const char *owner, bool in_defaults, const char *task,
                               struct policy *p);
void flow__ld_parse_defaults(struct loader *L, const struct val *x);
/* Apply a task's policy merged over the defaults. Command-only defaults (env,
 * cwd, output, kill_grace) go only to command tasks. */
void flow__ld_apply_policy(struct loader *L, flow_task *t, const struct policy *tp,
                           bool is_command, struct flow__yaml_pos pos);

/* ---- load_task.c ----------------------------------------------------- */

/* Task `name` of the file: its entry `value` in `tasks`, and the task made for it (NULL: none). */
void flow__ld_load_task(struct loader *L, const char *name, json_t *value, flow_task *t);

/* ---- load_net.c ------------------------------------------------------ */

/* `http:` and `llm:` of a task (`what`: "'http' of task 'x'"): checked
 * where written and compiled; NULL after reporting. */
struct http_spec *flow__ld_parse_http(struct loader *L, const struct val *x, const char *what);
struct llm_spec *flow__ld_parse_llm(struct loader *L, const struct val *x, const char *what);

/* ---- load_nested.c --------------------------------------------------- */

/* The flow of `flow: path` in task `task` (written at `pos`): loaded with
 * this loader, once per tree (a file used again shares the flow), refusing
 * cycles. Borrowed from the tree; NULL after reporting. */
flow *flow__ld_load_nested(struct loader *L, const char *path, struct flow__yaml_pos pos,
                           const char *task);

/* ---- load.c ---------------------------------------------------------- */

/* Load one file of a tree of nested flows. `canon` (may be NULL) names the
 * file for cycle checks; `dir` is the base of its relative paths. */
flow *flow__ld_load(const char *text, size_t len, const char *file, const char *dir,
                    const char *canon, struct tree *tree, flow_diags *diags, flow_error *err);

/* The absolute directory of `path`; NULL when out of memory. */
char *flow__ld_base_dir(const char *path);
flow_err flow__ld_read_file(const char *path, struct flow__buf *b, flow_error *err);

bool flow__ld_in_list(const char *s, const char *const *list, size_t n);
const struct unsupported *flow__ld_find_unsupported(enum scope scope, const char *key,
                                                    const char *value);

#endif
