/* load.c -- workflow files (YAML or JSON) into flows: every key and value is
 * checked where it is written, every problem is reported with its file, line
 * and column (all of them, not just the first), the flow is built through the
 * public API, and flow_validate() adds what needs the whole graph (cycles,
 * names in `when`). See docs/file-format.md for the format. */
#include "util/compat.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/flowdef.h"
#include "def/template.h"
#include "def/yaml.h"
#include "flow.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/json.h"
#include "util/vec.h"

/* ------------------------------------------------------------------------ */
/* The schema                                                               */

enum scope { SCOPE_TOP = 0, SCOPE_TASK, SCOPE_DEFAULTS };

/* Keys (and values) the format defines but this version does not implement
 * yet. They are accepted by the schema and reported as errors, so that
 * nothing silently misbehaves; delete a line when its feature lands. Lines
 * with a `value` apply to that value of the key in any scope. */
static const struct unsupported {
    enum scope scope;
    const char *key;
    const char *value;   /* NULL: the key itself */
    const char *message; /* NULL: "'KEY' is not supported yet" */
} unsupported[] = {
    {SCOPE_TASK, "cache", NULL, NULL},
    {SCOPE_TASK, "executor", "remote", "the 'remote' executor is not supported yet"},
};

/* Top-level keys; keys starting with "x-" are extensions, ignored (a place
 * for YAML anchors that tasks then alias). */
static const char *const top_keys[] = {
    "name",   "version", "description", "state",   "state_schema",
    "defaults", "result", "tasks",      "connect", "checkpoint_every",
};

static const char *const task_keys[] = {
    /* bodies */
    "run", "shell", "flow", "feedback", "noop",
    /* triggers */
    "after", "after_any", "when", "on", "optional", "start", "entry", "router", "foreach",
    "concurrency",
    /* policy */
    "timeout", "retries", "backoff", "on_error", "executor", "priority", "max_activations",
    "cache", "kill_grace",
    /* input and output */
    "input", "env", "cwd", "output", "save",
    /* for readers; ignored */
    "description",
};

/* Task keys that `defaults` may hold. */
static const char *const policy_keys[] = {
    "timeout", "retries",         "backoff", "on_error", "executor", "priority",
    "max_activations", "output", "env",     "cwd",      "kill_grace",
};

static const char *const backoff_keys[] = {"delay", "factor", "max_delay", "jitter"};

static const char *const connect_keys[] = {"from", "to", "map"};

static const char *const body_keys[] = {"run", "shell", "flow", "feedback", "noop"};

static const char *const on_error_names[] = {"fail", "continue", "ignore"};
static const flow_on_error on_error_values[] = {FLOW_ON_ERROR_FAIL, FLOW_ON_ERROR_CONTINUE,
                                                FLOW_ON_ERROR_IGNORE};

static const char *const executor_names[] = {"inline", "thread", "process", "remote"};
static const flow_executor executor_values[] = {FLOW_EXEC_INLINE, FLOW_EXEC_THREAD,
                                                FLOW_EXEC_PROCESS, FLOW_EXEC_REMOTE};

static const char *const output_names[] = {"auto", "json", "text", "lines"};
static const flow_output_mode output_values[] = {FLOW_OUTPUT_AUTO, FLOW_OUTPUT_JSON,
                                                 FLOW_OUTPUT_TEXT, FLOW_OUTPUT_LINES};

#define DURATION_HINT "use 250ms, 30s, 5m, 2h, 1d or seconds"

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, list[i]) == 0)
            return true;
    }
    return false;
}

#define IN(s, list) in_list((s), (list), FLOW__ARRAY_LEN(list))

static const struct unsupported *find_unsupported(enum scope scope, const char *key,
                                                  const char *value)
{
    for (size_t i = 0; i < FLOW__ARRAY_LEN(unsupported); i++) {
        const struct unsupported *u = &unsupported[i];
        if (strcmp(u->key, key) != 0)
            continue;
        if (!value && !u->value && u->scope == scope)
            return u;
        if (value && u->value && strcmp(u->value, value) == 0)
            return u;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The loader                                                               */

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
    json_t *env; /* owned: NAME -> string template */
    char *cwd;   /* owned, relative paths resolved */
};

/* Whether templates may use `item` and `index`: not outside a foreach task,
 * yes in one, and not in its `foreach` list (which makes them). */
enum item_scope { ITEM_UNSET = 0, ITEM_SET, ITEM_LIST };

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
    bool nomem;
};

/* A value of the document with where it is written. */
struct val {
    json_t *v;
    struct flow__yaml_pos pos;
    const char *raw; /* a plain scalar typed as non-string, as written; else NULL */
};

static struct val member(const struct loader *L, json_t *map, const char *key)
{
    struct val x = {json_object_get(map, key), flow__yaml_value_pos(L->doc, map, key),
                    flow__yaml_value_text(L->doc, map, key)};
    return x;
}

static struct val item(const struct loader *L, json_t *seq, size_t i)
{
    struct val x = {json_array_get(seq, i), flow__yaml_item_pos(L->doc, seq, i),
                    flow__yaml_item_text(L->doc, seq, i)};
    return x;
}

/* Keep a diagnostic, sorted at `at` in this file. */
static void add_diag(struct loader *L, const flow_error *e, flow_severity sev,
                     struct flow__yaml_pos at)
{
    struct ldiag d = {.e = *e, .sev = sev, .at = at, .seq = L->diags.count};
    flow_err rc = FLOW_OK;
    size_t before = L->diags.count;
    FLOW__VEC_PUSH(&L->diags, d, rc);
    if (rc != FLOW_OK || L->diags.count == before)
        L->nomem = true;
}

static void vreport(struct loader *L, flow_severity sev, const char *file,
                    struct flow__yaml_pos pos, struct flow__yaml_pos at, const char *fmt,
                    va_list ap) FLOW__PRINTF(6, 0);

static void vreport(struct loader *L, flow_severity sev, const char *file,
                    struct flow__yaml_pos pos, struct flow__yaml_pos at, const char *fmt,
                    va_list ap)
{
    char msg[420];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    flow_error e;
    flow__error_at(&e, FLOW_EVALIDATION, file, pos.line, pos.column, "%s", msg);
    add_diag(L, &e, sev, at);
}

static void report(struct loader *L, struct flow__yaml_pos pos, const char *fmt, ...)
    FLOW__PRINTF(3, 4);

static void report(struct loader *L, struct flow__yaml_pos pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(L, FLOW_SEV_ERROR, L->file, pos, pos, fmt, ap);
    va_end(ap);
}

static void warn(struct loader *L, struct flow__yaml_pos pos, const char *fmt, ...)
    FLOW__PRINTF(3, 4);

static void warn(struct loader *L, struct flow__yaml_pos pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(L, FLOW_SEV_WARNING, L->file, pos, pos, fmt, ap);
    va_end(ap);
}

/* Report a failed call into the core at `pos`. */
static void core_failed(struct loader *L, struct flow__yaml_pos pos, flow_err rc,
                        const flow_error *e, const char *what)
{
    if (rc == FLOW_ENOMEM) {
        L->nomem = true;
        return;
    }
    if (e && e->code != FLOW_OK && e->message[0])
        report(L, pos, "%s: %s", what, e->message);
    else
        report(L, pos, "%s: %s", what, flow_strerror(rc));
}

/* In a workflow file an object is a mapping. */
static const char *type_name(const json_t *v)
{
    return json_is_object(v) ? "a mapping" : flow__json_type_name(v);
}

/* Edit distance (Levenshtein, with a swap of two neighbours counting as one
 * edit), case-insensitive, for "did you mean"; large for long words. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);
    if (la > 63 || lb > 63)
        return SIZE_MAX;
    size_t rows[3][64]; /* two rows back, one row back, this row */
    size_t *pp = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            char ca = (char)tolower((unsigned char)a[i - 1]);
            char cb = (char)tolower((unsigned char)b[j - 1]);
            size_t best = prev[j - 1] + (ca != cb);
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && pp[j - 2] + 1 < best)
                best = pp[j - 2] + 1;
            cur[j] = best;
        }
        size_t *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

/* Close enough to suggest: one edit for short words, two for longer ones,
 * and never a whole one-letter word. */
static bool close_enough(const char *word, size_t d)
{
    size_t len = strlen(word);
    return d < len && d <= (len <= 4 ? 1u : 2u);
}

static const char *closest(const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(word, cands[i]);
        if (d < best_d) {
            best_d = d;
            best = cands[i];
        }
    }
    return best && close_enough(word, best_d) ? best : NULL;
}

/* " (did you mean 'x'?)" or "". */
static void suggestion(char *buf, size_t len, const char *best)
{
    if (best)
        snprintf(buf, len, " (did you mean '%s'?)", best);
    else if (len)
        buf[0] = '\0';
}

/* Report every key of mapping `x` that is not in `keys` ("unknown key 'k' in
 * WHAT; did you mean ...?"); false when there was one. */
static bool known_keys(struct loader *L, const struct val *x, const char *const *keys, size_t n,
                       const char *what)
{
    bool ok = true;
    const char *k;
    json_t *v;
    json_object_foreach (x->v, k, v) {
        if (!in_list(k, keys, n)) {
            char hint[80];
            suggestion(hint, sizeof(hint), closest(k, keys, n));
            report(L, flow__yaml_key_pos(L->doc, x->v, k), "unknown key '%s' in %s%s", k, what,
                   hint);
            ok = false;
        }
    }
    return ok;
}

static void unknown_task(struct loader *L, struct flow__yaml_pos pos, const char *name,
                         const char *what)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    const char *k;
    json_t *v;
    json_object_foreach (L->tasks, k, v) {
        size_t d = edit_distance(name, k);
        if (d < best_d) {
            best_d = d;
            best = k;
        }
    }
    char hint[160];
    suggestion(hint, sizeof(hint), best && close_enough(name, best_d) ? best : NULL);
    report(L, pos, "unknown task '%s' in %s%s", name, what, hint);
}

static bool valid_task_name(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return false;
    for (s++; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    }
    return true;
}

static bool valid_env_name(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return false;
    for (s++; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Values                                                                   */

static bool get_string(struct loader *L, const struct val *x, const char *what, bool non_empty,
                       const char **out)
{
    if (!json_is_string(x->v)) {
        report(L, x->pos, "%s must be %s, not %s", what, non_empty ? "a non-empty string"
                                                                   : "a string",
               type_name(x->v));
        return false;
    }
    const char *s = json_string_value(x->v);
    if (strlen(s) != json_string_length(x->v)) {
        report(L, x->pos, "%s cannot hold a NUL character", what);
        return false;
    }
    if (non_empty && !*s) {
        report(L, x->pos, "%s must be a non-empty string", what);
        return false;
    }
    *out = s;
    return true;
}

/* A scalar as text: strings as they are, numbers and booleans as written. */
static const char *scalar_text(const struct val *x, char *buf, size_t len)
{
    if (json_is_string(x->v)) {
        const char *s = json_string_value(x->v);
        return strlen(s) == json_string_length(x->v) ? s : NULL;
    }
    if (!json_is_number(x->v) && !json_is_boolean(x->v))
        return NULL;
    if (x->raw)
        return x->raw;
    if (json_is_integer(x->v))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(x->v));
    else if (json_is_real(x->v))
        snprintf(buf, len, "%.17g", json_real_value(x->v));
    else
        snprintf(buf, len, "%s", json_is_true(x->v) ? "true" : "false");
    return buf;
}

static bool get_bool(struct loader *L, const struct val *x, const char *what, bool *out)
{
    if (!json_is_boolean(x->v)) {
        report(L, x->pos, "%s must be true or false, not %s", what, type_name(x->v));
        return false;
    }
    *out = json_is_true(x->v);
    return true;
}

static bool get_int(struct loader *L, const struct val *x, const char *what, long long min,
                    const char *desc, int *out)
{
    if (!json_is_integer(x->v)) {
        report(L, x->pos, "%s must be %s, not %s", what, desc, type_name(x->v));
        return false;
    }
    json_int_t v = json_integer_value(x->v);
    if (v < min || v < INT_MIN || v > INT_MAX) {
        report(L, x->pos, "%s must be %s, not %" JSON_INTEGER_FORMAT, what, desc, v);
        return false;
    }
    *out = (int)v;
    return true;
}

static bool get_duration(struct loader *L, const struct val *x, const char *what, double *out)
{
    if (json_is_string(x->v)) {
        const char *s = json_string_value(x->v);
        if (!flow__parse_duration(s, out)) {
            report(L, x->pos, "bad duration '%s' for %s (" DURATION_HINT ")", s, what);
            return false;
        }
        return true;
    }
    if (json_is_number(x->v)) {
        double d = json_number_value(x->v);
        if (d < 0) {
            report(L, x->pos, "bad duration '%s' for %s (" DURATION_HINT ")",
                   x->raw ? x->raw : "negative", what);
            return false;
        }
        *out = d;
        return true;
    }
    report(L, x->pos, "%s must be a duration (" DURATION_HINT "), not %s", what, type_name(x->v));
    return false;
}

/* One of `names`; *out is its index. */
static bool get_choice(struct loader *L, const struct val *x, const char *what,
                       const char *const *names, size_t n, size_t *out)
{
    char list[160] = "";
    size_t used = 0;
    for (size_t i = 0; i < n && used < sizeof(list); i++) {
        int w = snprintf(list + used, sizeof(list) - used, "%s%s", names[i],
                         i + 2 < n ? ", " : i + 1 < n ? " or " : "");
        used += w > 0 ? (size_t)w : 0;
    }
    if (!json_is_string(x->v)) {
        report(L, x->pos, "%s must be %s, not %s", what, list, type_name(x->v));
        return false;
    }
    const char *s = json_string_value(x->v);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return true;
        }
    }
    report(L, x->pos, "%s must be %s, not '%s'", what, list, s);
    return false;
}

/* --- templates --- */

struct ref_check {
    struct loader *L;
    struct flow__yaml_pos pos;
    const char *what;
    bool ok;
};

static int check_ref(const struct flow__tmpl_path *path, void *udata)
{
    struct ref_check *c = udata;
    const char *root = path->segs[0].key;
    if (strcmp(root, "tasks") == 0 && path->count > 1 && path->segs[1].key) {
        const char *name = path->segs[1].key;
        if (c->L->tasks && !json_object_get(c->L->tasks, name)) {
            char *text = flow__tmpl_path_text(path, path->count);
            char what[300];
            snprintf(what, sizeof(what), "'{{ %s }}' in %s", text ? text : "tasks", c->what);
            flow__free(text);
            unknown_task(c->L, c->pos, name, what);
            c->ok = false;
        }
    } else if ((strcmp(root, "item") == 0 || strcmp(root, "index") == 0) &&
               c->L->item_scope != ITEM_SET) {
        if (c->L->item_scope == ITEM_LIST)
            report(c->L, c->pos,
                   "'{{ %s }}' in %s: '%s' is set in the activations the list makes, not in "
                   "the list itself",
                   root, c->what, root);
        else
            report(c->L, c->pos, "'{{ %s }}' in %s: '%s' is set only in a task with 'foreach'",
                   root, c->what, root);
        c->ok = false;
    }
    return 0;
}

/* Compile a template string and check the names it uses. */
static bool check_template(struct loader *L, const char *s, struct flow__yaml_pos pos,
                           const char *what)
{
    struct flow__tmpl *t = NULL;
    flow_error e;
    flow__error_clear(&e);
    flow_err rc = flow__tmpl_compile_string(s, &t, &e);
    if (rc == FLOW_ENOMEM) {
        L->nomem = true;
        return false;
    }
    if (rc) {
        report(L, pos, "bad template in %s: %s", what, e.message);
        return false;
    }
    struct ref_check c = {L, pos, what, true};
    flow__tmpl_foreach_ref(t, check_ref, &c);
    flow__tmpl_free(t);
    return c.ok;
}

/* The same for every string inside a JSON value. */
static bool check_template_value(struct loader *L, const struct val *x, const char *what)
{
    if (json_is_string(x->v)) {
        const char *s = json_string_value(x->v);
        if (!strstr(s, "{{"))
            return true;
        if (strlen(s) != json_string_length(x->v)) {
            report(L, x->pos, "%s cannot hold a NUL character", what);
            return false;
        }
        return check_template(L, s, x->pos, what);
    }
    bool ok = true;
    if (json_is_object(x->v)) {
        const char *k;
        json_t *v;
        json_object_foreach (x->v, k, v) {
            struct val kid = member(L, x->v, k);
            ok = check_template_value(L, &kid, what) && ok;
        }
    } else if (json_is_array(x->v)) {
        for (size_t i = 0; i < json_array_size(x->v); i++) {
            struct val kid = item(L, x->v, i);
            ok = check_template_value(L, &kid, what) && ok;
        }
    }
    return ok;
}

/* A `cwd` as the core should see it: relative to the workflow file. */
static char *resolve_cwd(struct loader *L, const char *s, struct flow__yaml_pos pos,
                         const char *what)
{
    if (!L->dir || s[0] == '/' || strncmp(s, "{{", 2) == 0) {
        char *copy = flow__strdup(s);
        if (!copy)
            L->nomem = true;
        return copy;
    }
    if (strstr(L->dir, "{{")) {
        report(L, pos, "%s: cannot make '%s' relative to '%s', whose name holds '{{'", what, s,
               L->dir);
        return NULL;
    }
    while (s[0] == '.' && s[1] == '/') {
        s += 2;
        while (*s == '/')
            s++;
    }
    char *path = (!*s || strcmp(s, ".") == 0) ? flow__strdup(L->dir)
                                              : flow__asprintf("%s/%s", L->dir, s);
    if (!path)
        L->nomem = true;
    return path;
}

/* ------------------------------------------------------------------------ */
/* Policies                                                                 */

static void policy_cleanup(struct policy *p)
{
    json_decref(p->env);
    flow__free(p->cwd);
    memset(p, 0, sizeof(*p));
}

static void parse_backoff(struct loader *L, const struct val *x, const char *owner,
                          struct policy *p)
{
    char what[200];
    snprintf(what, sizeof(what), "'backoff'%s", owner);
    if (!json_is_object(x->v)) {
        report(L, x->pos, "%s must be a mapping {delay, factor, max_delay, jitter}, not %s", what,
               type_name(x->v));
        return;
    }
    char inner[240];
    snprintf(inner, sizeof(inner), " in 'backoff'%s", owner);
    bool ok = true;
    const char *k;
    json_t *v;
    json_object_foreach (x->v, k, v) {
        struct val kid = member(L, x->v, k);
        char kwhat[300];
        snprintf(kwhat, sizeof(kwhat), "'%s'%s", k, inner);
        if (strcmp(k, "delay") == 0) {
            ok = get_duration(L, &kid, kwhat, &p->backoff.delay) && ok;
            p->backoff_set |= B_DELAY;
        } else if (strcmp(k, "max_delay") == 0) {
            ok = get_duration(L, &kid, kwhat, &p->backoff.max_delay) && ok;
            p->backoff_set |= B_MAX_DELAY;
        } else if (strcmp(k, "factor") == 0) {
            if (!json_is_number(kid.v) || json_number_value(kid.v) < 1) {
                report(L, kid.pos, "%s must be a number of at least 1, not %s", kwhat,
                       json_is_number(kid.v) ? (kid.raw ? kid.raw : "that") : type_name(kid.v));
                ok = false;
            } else {
                p->backoff.factor = json_number_value(kid.v);
                p->backoff_set |= B_FACTOR;
            }
        } else if (strcmp(k, "jitter") == 0) {
            ok = get_bool(L, &kid, kwhat, &p->backoff.jitter) && ok;
            p->backoff_set |= B_JITTER;
        } else {
            char hint[80];
            suggestion(hint, sizeof(hint), closest(k, backoff_keys, FLOW__ARRAY_LEN(backoff_keys)));
            report(L, flow__yaml_key_pos(L->doc, x->v, k), "unknown key '%s'%s%s", k, inner, hint);
            ok = false;
        }
    }
    if (ok)
        p->set |= P_BACKOFF;
}

static void parse_on_error(struct loader *L, const struct val *x, const char *what,
                           bool in_defaults, const char *task, struct policy *p)
{
    if (json_is_string(x->v)) {
        size_t i;
        const char *s = json_string_value(x->v);
        for (i = 0; i < FLOW__ARRAY_LEN(on_error_names); i++) {
            if (strcmp(s, on_error_names[i]) == 0)
                break;
        }
        if (i < FLOW__ARRAY_LEN(on_error_names)) {
            p->on_error = on_error_values[i];
            p->set |= P_ON_ERROR;
            return;
        }
        if (strcmp(s, "fallback") == 0) {
            report(L, x->pos, "%s: write the fallback task as {fallback: TASK}", what);
            return;
        }
    }
    if (json_is_object(x->v) && json_object_size(x->v) == 1 &&
        json_object_get(x->v, "fallback")) {
        struct val fb = member(L, x->v, "fallback");
        if (in_defaults) {
            report(L, fb.pos, "%s: a fallback task cannot be a default (give it per task)", what);
            return;
        }
        const char *name = NULL;
        char fwhat[300];
        snprintf(fwhat, sizeof(fwhat), "'fallback' in %s", what);
        if (!get_string(L, &fb, fwhat, true, &name))
            return;
        if (L->tasks && !json_object_get(L->tasks, name)) {
            unknown_task(L, fb.pos, name, fwhat);
            return;
        }
        if (task && strcmp(task, name) == 0) {
            report(L, fb.pos, "task '%s' cannot be its own fallback", task);
            return;
        }
        p->on_error = FLOW_ON_ERROR_FALLBACK;
        p->fallback = name;
        p->set |= P_ON_ERROR;
        return;
    }
    if (json_is_string(x->v))
        report(L, x->pos, "%s must be fail, continue, ignore or {fallback: TASK}, not '%s'", what,
               json_string_value(x->v));
    else
        report(L, x->pos, "%s must be fail, continue, ignore or {fallback: TASK}, not %s", what,
               type_name(x->v));
}

static void parse_env(struct loader *L, const struct val *x, const char *what,
                      struct policy *p)
{
    if (!json_is_object(x->v)) {
        report(L, x->pos, "%s must be a mapping of NAME: value, not %s", what, type_name(x->v));
        return;
    }
    json_t *env = json_object();
    if (!env) {
        L->nomem = true;
        return;
    }
    bool ok = true;
    const char *k;
    json_t *v;
    json_object_foreach (x->v, k, v) {
        struct val kid = member(L, x->v, k);
        if (!valid_env_name(k)) {
            report(L, flow__yaml_key_pos(L->doc, x->v, k),
                   "invalid environment variable name '%s' in %s (use letters, digits and '_', "
                   "not starting with a digit)",
                   k, what);
            ok = false;
            continue;
        }
        char buf[64];
        const char *s = scalar_text(&kid, buf, sizeof(buf));
        char kwhat[300];
        snprintf(kwhat, sizeof(kwhat), "'%s' in %s", k, what);
        if (!s) {
            report(L, kid.pos, "%s must be a string, not %s", kwhat, type_name(kid.v));
            ok = false;
            continue;
        }
        if (!check_template(L, s, kid.pos, kwhat)) {
            ok = false;
            continue;
        }
        if (json_object_set_new(env, k, json_string(s)))
            L->nomem = true;
    }
    if (!ok) {
        json_decref(env);
        return;
    }
    json_decref(p->env);
    p->env = env;
    p->set |= P_ENV;
}

/* Parse one policy key into `p`; false when `key` is not a policy key. */
static bool parse_policy_key(struct loader *L, const char *key, const struct val *x,
                             const char *owner, bool in_defaults, const char *task,
                             struct policy *p)
{
    char what[240];
    snprintf(what, sizeof(what), "'%s'%s", key, owner);
    size_t i = 0;
    if (strcmp(key, "timeout") == 0) {
        if (get_duration(L, x, what, &p->timeout))
            p->set |= P_TIMEOUT;
    } else if (strcmp(key, "kill_grace") == 0) {
        if (get_duration(L, x, what, &p->kill_grace))
            p->set |= P_KILL_GRACE;
    } else if (strcmp(key, "retries") == 0) {
        if (get_int(L, x, what, 0, "a non-negative integer", &p->retries))
            p->set |= P_RETRIES;
    } else if (strcmp(key, "priority") == 0) {
        if (get_int(L, x, what, INT_MIN, "an integer", &p->priority))
            p->set |= P_PRIORITY;
    } else if (strcmp(key, "max_activations") == 0) {
        if (get_int(L, x, what, 1, "a positive integer", &p->max_activations))
            p->set |= P_MAX_ACTIVATIONS;
    } else if (strcmp(key, "backoff") == 0) {
        parse_backoff(L, x, owner, p);
    } else if (strcmp(key, "on_error") == 0) {
        parse_on_error(L, x, what, in_defaults, task, p);
    } else if (strcmp(key, "executor") == 0) {
        if (get_choice(L, x, what, executor_names, FLOW__ARRAY_LEN(executor_names), &i)) {
            const struct unsupported *u = find_unsupported(SCOPE_TASK, key, executor_names[i]);
            if (u) {
                report(L, x->pos, "%s, in %s", u->message, what);
            } else {
                p->executor = executor_values[i];
                p->set |= P_EXECUTOR;
            }
        }
    } else if (strcmp(key, "output") == 0) {
        if (get_choice(L, x, what, output_names, FLOW__ARRAY_LEN(output_names), &i)) {
            p->output = output_values[i];
            p->set |= P_OUTPUT;
        }
    } else if (strcmp(key, "env") == 0) {
        parse_env(L, x, what, p);
    } else if (strcmp(key, "cwd") == 0) {
        const char *s = NULL;
        if (get_string(L, x, what, true, &s) && check_template(L, s, x->pos, what)) {
            char *cwd = resolve_cwd(L, s, x->pos, what);
            if (cwd) {
                flow__free(p->cwd);
                p->cwd = cwd;
                p->set |= P_CWD;
            }
        }
    } else {
        return false;
    }
    return true;
}

static void parse_defaults(struct loader *L, const struct val *x)
{
    if (!json_is_object(x->v)) {
        report(L, x->pos, "'defaults' must be a mapping of task policy keys, not %s",
               type_name(x->v));
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach (x->v, k, v) {
        struct val kid = member(L, x->v, k);
        if (parse_policy_key(L, k, &kid, " in 'defaults'", true, NULL, &L->defaults))
            continue;
        struct flow__yaml_pos kpos = flow__yaml_key_pos(L->doc, x->v, k);
        if (IN(k, task_keys)) {
            report(L, kpos,
                   "'%s' cannot be set in 'defaults', which holds timeout, retries, backoff, "
                   "on_error, executor, priority, max_activations, output, env, cwd and "
                   "kill_grace",
                   k);
            continue;
        }
        char hint[80];
        suggestion(hint, sizeof(hint), closest(k, policy_keys, FLOW__ARRAY_LEN(policy_keys)));
        report(L, kpos, "unknown key '%s' in 'defaults'%s", k, hint);
    }
}

/* Apply a task's policy merged over the defaults. Command-only defaults (env,
 * cwd, output, kill_grace) go only to command tasks. */
static void apply_policy(struct loader *L, flow_task *t, const struct policy *tp,
                         bool is_command, struct flow__yaml_pos pos)
{
    const struct policy *dp = &L->defaults;
    unsigned cmd_only = P_ENV | P_CWD | P_OUTPUT | P_KILL_GRACE;
    unsigned from_defaults = dp->set & ~tp->set & (is_command ? ~0u : ~cmd_only);
    char what[200];
    snprintf(what, sizeof(what), "task '%s'", flow_task_name(t));
#define PICK(bit) ((tp->set & (bit)) ? tp : (from_defaults & (bit)) ? dp : NULL)
    const struct policy *s;
    flow_err rc;
    if ((s = PICK(P_TIMEOUT)) && (rc = flow_task_set_timeout(t, s->timeout)))
        core_failed(L, pos, rc, NULL, what);
    if ((s = PICK(P_KILL_GRACE)) && (rc = flow_task_set_kill_grace(t, s->kill_grace)))
        core_failed(L, pos, rc, NULL, what);
    if ((s = PICK(P_RETRIES)) && (rc = flow_task_set_retries(t, s->retries)))
        core_failed(L, pos, rc, NULL, what);
    if ((s = PICK(P_PRIORITY)) && (rc = flow_task_set_priority(t, s->priority)))
        core_failed(L, pos, rc, NULL, what);
    if ((s = PICK(P_MAX_ACTIVATIONS)) &&
        (rc = flow_task_set_max_activations(t, s->max_activations)))
        core_failed(L, pos, rc, NULL, what);
    if ((s = PICK(P_EXECUTOR)) && (rc = flow_task_set_executor(t, s->executor)))
        core_failed(L, pos, rc, NULL, what);
    if ((s = PICK(P_OUTPUT)) && (rc = flow_task_set_output_mode(t, s->output)))
        core_failed(L, pos, rc, NULL, what);
    if ((tp->set | from_defaults) & P_BACKOFF) {
        /* Field by field: the task's fields over the defaults' over the built-in. */
        flow_backoff b = {.delay = 1, .factor = 2, .max_delay = 300, .jitter = false};
        const struct policy *layers[2] = {(from_defaults & P_BACKOFF) ? dp : NULL,
                                          (tp->set & P_BACKOFF) ? tp : NULL};
        for (size_t i = 0; i < 2; i++) {
            const struct policy *l = layers[i];
            if (!l)
                continue;
            if (l->backoff_set & B_DELAY)
                b.delay = l->backoff.delay;
            if (l->backoff_set & B_FACTOR)
                b.factor = l->backoff.factor;
            if (l->backoff_set & B_MAX_DELAY)
                b.max_delay = l->backoff.max_delay;
            if (l->backoff_set & B_JITTER)
                b.jitter = l->backoff.jitter;
        }
        if ((rc = flow_task_set_backoff(t, &b)))
            core_failed(L, pos, rc, NULL, what);
    }
    if ((s = PICK(P_ON_ERROR))) {
        if (s->on_error == FLOW_ON_ERROR_FALLBACK) {
            flow_task *fb = flow_find_task(L->f, s->fallback);
            if (fb && (rc = flow_task_set_fallback(t, fb)))
                core_failed(L, pos, rc, NULL, what);
        } else if ((rc = flow_task_set_on_error(t, s->on_error))) {
            core_failed(L, pos, rc, NULL, what);
        }
    }
    if ((s = PICK(P_CWD))) {
        flow_error e;
        flow__error_clear(&e);
        if ((rc = flow_task_set_cwd(t, s->cwd, &e)))
            core_failed(L, pos, rc, &e, what);
    }
    /* env: the defaults' variables the task does not set, then the task's. */
    for (int layer = 0; layer < 2; layer++) {
        json_t *env = layer == 0 ? ((dp->set & P_ENV) && is_command ? dp->env : NULL)
                                 : ((tp->set & P_ENV) ? tp->env : NULL);
        const char *k;
        json_t *v;
        json_object_foreach (env, k, v) {
            if (layer == 0 && tp->env && json_object_get(tp->env, k))
                continue;
            flow_error e;
            flow__error_clear(&e);
            if ((rc = flow_task_set_env(t, k, json_string_value(v), &e)))
                core_failed(L, pos, rc, &e, what);
        }
    }
#undef PICK
}

/* ------------------------------------------------------------------------ */
/* Tasks                                                                    */

/* The words a string-or-list key uses in its messages. */
struct name_words {
    const char *one;  /* "a task name" */
    const char *many; /* "a list of task names" */
    const char *verb; /* "name tasks": "... must name tasks: item 2 is empty" */
};

/* Walk a string or a list of non-empty strings, reporting what is not one,
 * and call `fn` for each good name. */
static void for_each_name(struct loader *L, const struct val *x, const char *what,
                          const struct name_words *w,
                          void (*fn)(struct loader *L, const struct val *it, const char *name,
                                     void *udata),
                          void *udata)
{
    bool list = json_is_array(x->v);
    if (!list && !json_is_string(x->v)) {
        report(L, x->pos, "%s must be %s or %s, not %s", what, w->one, w->many,
               type_name(x->v));
        return;
    }
    size_t n = list ? json_array_size(x->v) : 1;
    for (size_t i = 0; i < n; i++) {
        struct val it = list ? item(L, x->v, i) : *x;
        if (!json_is_string(it.v) || !*json_string_value(it.v)) {
            report(L, it.pos, "%s must %s: item %zu is %s", what, w->verb, i + 1,
                   json_is_string(it.v) ? "empty" : type_name(it.v));
            continue;
        }
        fn(L, &it, json_string_value(it.v), udata);
    }
}

struct dep_ctx {
    flow_task *t;
    const char *key;
    const char *what;
};

static void add_dep(struct loader *L, const struct val *it, const char *name, void *udata)
{
    const struct dep_ctx *c = udata;
    if (!json_object_get(L->tasks, name)) {
        unknown_task(L, it->pos, name, c->what);
        return;
    }
    flow_task *dep = flow_find_task(L->f, name);
    if (!c->t || !dep)
        return;
    flow_err rc = strcmp(c->key, "after") == 0       ? flow_task_after(c->t, dep)
                  : strcmp(c->key, "after_any") == 0 ? flow_task_after_any(c->t, dep)
                                                     : flow_task_optional(c->t, dep);
    if (rc)
        core_failed(L, it->pos, rc, NULL, c->what);
}

/* Task names in a string or a list: after, after_any, optional. */
static void parse_deps(struct loader *L, flow_task *t, const char *key, const struct val *x,
                       const char *what)
{
    static const struct name_words words = {"a task name", "a list of task names",
                                            "name tasks"};
    struct dep_ctx c = {t, key, what};
    for_each_name(L, x, what, &words, add_dep, &c);
}

/* Remember a label of `on` or `when` for the warning in warn_labels(). */
static void note_label(struct loader *L, const char *name, const char *task, const char *key,
                       struct flow__yaml_pos pos)
{
    struct label_use u = {name, task, key, pos};
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&L->labels, u, rc);
    if (rc)
        L->nomem = true;
}

/* A `when` condition of `task`; NULL after reporting. */
static flow_cond *parse_cond(struct loader *L, const struct val *x, const char *what,
                             const char *task)
{
    if (json_is_string(x->v)) {
        const char *name = json_string_value(x->v);
        if (!*name) {
            report(L, x->pos, "%s: a condition names a task or a label, not ''", what);
            return NULL;
        }
        bool is_task = json_object_get(L->tasks, name) != NULL;
        flow_cond *c = is_task ? flow_cond_task(name) : flow_cond_label(name);
        if (!c)
            L->nomem = true;
        else if (!is_task)
            note_label(L, name, task, "when", x->pos);
        return c;
    }
    const char *op = NULL;
    if (json_is_object(x->v) && json_object_size(x->v) == 1) {
        op = json_object_get(x->v, "and") ? "and" : json_object_get(x->v, "or") ? "or" : NULL;
    }
    if (!op) {
        report(L, x->pos,
               "%s must be a task or label name, {and: [...]} or {or: [...]}, not %s", what,
               json_is_object(x->v) ? "this mapping" : type_name(x->v));
        return NULL;
    }
    struct val list = member(L, x->v, op);
    if (!json_is_array(list.v) || json_array_size(list.v) == 0) {
        report(L, list.pos, "'%s' in %s must be a non-empty list of conditions, not %s", op, what,
               json_is_array(list.v) ? "an empty list" : type_name(list.v));
        return NULL;
    }
    size_t n = json_array_size(list.v);
    flow_cond **kids = flow__calloc(n, sizeof(*kids));
    if (!kids) {
        L->nomem = true;
        return NULL;
    }
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        struct val it = item(L, list.v, i);
        kids[i] = parse_cond(L, &it, what, task);
        ok = ok && kids[i];
    }
    flow_cond *c = NULL;
    if (ok) {
        c = strcmp(op, "and") == 0 ? flow_cond_and_v(kids, n) : flow_cond_or_v(kids, n);
        if (!c)
            L->nomem = true;
    } else {
        for (size_t i = 0; i < n; i++)
            flow_cond_free(kids[i]);
    }
    flow__free(kids);
    return c;
}

struct on_ctx {
    flow_task *t;
    const char *what;
    const char *task;
};

static void add_on(struct loader *L, const struct val *it, const char *label, void *udata)
{
    const struct on_ctx *c = udata;
    flow_err rc = c->t ? flow_task_on(c->t, label) : FLOW_OK;
    if (rc)
        core_failed(L, it->pos, rc, NULL, c->what);
    else
        note_label(L, label, c->task, "on", it->pos);
}

static void parse_on(struct loader *L, flow_task *t, const struct val *x, const char *what,
                     const char *task)
{
    static const struct name_words words = {"a label", "a list of labels", "hold labels"};
    struct on_ctx c = {t, what, task};
    for_each_name(L, x, what, &words, add_on, &c);
}

/* A `foreach` list that is a string template gives a list only when it is
 * one `{{ path }}`, and only when the path can hold one. */
struct list_check {
    struct loader *L;
    struct flow__yaml_pos pos;
    const char *what;
    const char *text; /* the template as written */
};

static int check_list_ref(const struct flow__tmpl_path *path, void *udata)
{
    struct list_check *c = udata;
    const char *root = path->segs[0].key;
    const char *field = path->count > 2 ? path->segs[2].key : NULL;
    bool text = strcmp(root, "run") == 0 || strcmp(root, "env") == 0 ||
                (strcmp(root, "tasks") == 0 && field &&
                 (strcmp(field, "status") == 0 || strcmp(field, "error") == 0));
    if (text) {
        report(c->L, c->pos, "%s must give a list, but '%s' is always a string or null",
               c->what, c->text);
        return 1;
    }
    return 0;
}

/* `foreach`: a template that renders to a list, or a list (of templates). */
static bool parse_foreach(struct loader *L, const struct val *x, const char *what)
{
    if (!json_is_string(x->v) && !json_is_array(x->v)) {
        report(L, x->pos,
               "%s must be a template that gives a list (like \"{{ inputs.files }}\") or a "
               "list, not %s",
               what, type_name(x->v));
        return false;
    }
    L->item_scope = ITEM_LIST;
    bool ok = check_template_value(L, x, what);
    L->item_scope = ITEM_SET;
    if (!ok || json_is_array(x->v))
        return ok;
    const char *s = json_string_value(x->v);
    struct flow__tmpl *t = NULL;
    flow_error e;
    flow__error_clear(&e);
    flow_err rc = flow__tmpl_compile_string(s, &t, &e);
    if (rc) {
        if (rc == FLOW_ENOMEM)
            L->nomem = true;
        else
            report(L, x->pos, "bad template in %s: %s", what, e.message);
        return false;
    }
    if (!flow__tmpl_is_whole(t)) {
        report(L, x->pos,
               "%s must give a list: write one '{{ path }}' with nothing around it and no "
               "filter (like \"{{ inputs.files }}\"), or a list; '%s' gives a string",
               what, s);
        ok = false;
    } else {
        struct list_check c = {L, x->pos, what, s};
        ok = flow__tmpl_foreach_ref(t, check_list_ref, &c) == 0;
    }
    flow__tmpl_free(t);
    return ok;
}

/* The body a task declares. */
struct body {
    const char *key; /* "run", "shell", "flow", "feedback", "noop" (or an unsupported one);
                      * NULL: none */
    struct flow__yaml_pos pos;
    char **argv; /* run: owned, NULL-terminated */
    const char *shell;
    const char *path; /* flow: the file as written */
    flow_feedback fb; /* feedback: strings borrowed from the document */
    const char **fb_options; /* owned array */
    const char **fb_notify;  /* owned array, NULL-terminated */
    size_t fb_notify_count;
    bool ok;
};

static void body_cleanup(struct body *b)
{
    for (size_t i = 0; b->argv && b->argv[i]; i++)
        flow__free(b->argv[i]);
    flow__free(b->argv);
    b->argv = NULL;
    flow__free(b->fb_options);
    flow__free(b->fb_notify);
    b->fb_options = NULL;
    b->fb_notify = NULL;
}

static const char *const feedback_keys[] = {"type",    "message",     "options", "timeout",
                                            "default", "channel_key", "request", "notify"};

/* A list of strings into a new array (borrowed strings); false after a
 * report. */
static bool string_list(struct loader *L, const struct val *x, const char *what,
                        const char ***out, size_t *count, bool null_end)
{
    if (!json_is_array(x->v) || json_array_size(x->v) == 0) {
        report(L, x->pos, "%s must be a non-empty list of strings, not %s", what,
               type_name(x->v));
        return false;
    }
    size_t n = json_array_size(x->v);
    const char **list = flow__calloc(n + (null_end ? 1 : 0), sizeof(*list));
    if (!list) {
        L->nomem = true;
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        struct val it = item(L, x->v, i);
        if (!json_is_string(it.v)) {
            report(L, it.pos, "item %zu of %s must be a string, not %s", i + 1, what,
                   type_name(it.v));
            ok = false;
        }
        list[i] = json_string_value(it.v);
    }
    if (!ok) {
        flow__free(list);
        return false;
    }
    *out = list;
    *count = n;
    return true;
}

/* `feedback: {type, message, options, timeout, default, channel_key,
 * request, notify}` (docs/file-format.md, Human feedback). */
static void parse_feedback(struct loader *L, const struct val *x, const char *what,
                           struct body *b)
{
    if (!json_is_object(x->v)) {
        report(L, x->pos, "%s must be a mapping {type: approval|text|selection, message: ...}, "
                          "not %s",
               what, type_name(x->v));
        return;
    }
    bool ok = known_keys(L, x, feedback_keys, FLOW__ARRAY_LEN(feedback_keys), what);
    char kwhat[320];
    memset(&b->fb, 0, sizeof(b->fb));
    struct val y = member(L, x->v, "type");
    const char *type = "approval";
    snprintf(kwhat, sizeof(kwhat), "'type' in %s", what);
    if (y.v && !get_string(L, &y, kwhat, true, &type))
        ok = false;
    if (!strcmp(type, "approval"))
        b->fb.type = FLOW_FEEDBACK_APPROVAL;
    else if (!strcmp(type, "text"))
        b->fb.type = FLOW_FEEDBACK_TEXT;
    else if (!strcmp(type, "selection"))
        b->fb.type = FLOW_FEEDBACK_SELECTION;
    else {
        report(L, y.pos, "%s is approval, text or selection, not '%s'", kwhat, type);
        ok = false;
    }
    y = member(L, x->v, "message");
    snprintf(kwhat, sizeof(kwhat), "'message' in %s", what);
    if (y.v && (!get_string(L, &y, kwhat, false, &b->fb.message) ||
                !check_template(L, b->fb.message, y.pos, kwhat)))
        ok = false;
    y = member(L, x->v, "options");
    snprintf(kwhat, sizeof(kwhat), "'options' in %s", what);
    if (y.v && !string_list(L, &y, kwhat, &b->fb_options, &b->fb.option_count, false))
        ok = false;
    b->fb.options = b->fb_options;
    if (b->fb.type == FLOW_FEEDBACK_SELECTION && !y.v) {
        report(L, x->pos, "%s is a selection: it needs 'options'", what);
        ok = false;
    } else if (b->fb.type != FLOW_FEEDBACK_SELECTION && y.v) {
        report(L, y.pos, "%s: only a selection has 'options'", what);
        ok = false;
    }
    y = member(L, x->v, "timeout");
    snprintf(kwhat, sizeof(kwhat), "'timeout' in %s", what);
    if (y.v && !get_duration(L, &y, kwhat, &b->fb.timeout))
        ok = false;
    y = member(L, x->v, "default");
    if (y.v) {
        if (!member(L, x->v, "timeout").v) {
            report(L, y.pos, "'default' in %s is taken when the timeout runs out: it needs "
                             "'timeout'",
                   what);
            ok = false;
        }
        b->fb.default_answer = y.v;
    }
    y = member(L, x->v, "channel_key");
    snprintf(kwhat, sizeof(kwhat), "'channel_key' in %s", what);
    if (y.v && !get_string(L, &y, kwhat, true, &b->fb.channel_key))
        ok = false;
    y = member(L, x->v, "request");
    snprintf(kwhat, sizeof(kwhat), "'request' in %s", what);
    if (y.v && !get_string(L, &y, kwhat, true, &b->fb.id))
        ok = false;
    y = member(L, x->v, "notify");
    snprintf(kwhat, sizeof(kwhat), "'notify' in %s", what);
    if (y.v && !string_list(L, &y, kwhat, &b->fb_notify, &b->fb_notify_count, true))
        ok = false;
    b->ok = ok;
}

static void parse_run(struct loader *L, const struct val *x, const char *what, struct body *b)
{
    if (json_is_string(x->v)) {
        report(L, x->pos,
               "%s must be a list (the argv; no shell is involved), not a string: use 'shell' "
               "for a command line",
               what);
        return;
    }
    if (!json_is_array(x->v) || json_array_size(x->v) == 0) {
        report(L, x->pos, "%s must be a non-empty list of strings, not %s", what,
               json_is_array(x->v) ? "an empty list" : type_name(x->v));
        return;
    }
    size_t n = json_array_size(x->v);
    char **argv = flow__calloc(n + 1, sizeof(*argv));
    if (!argv) {
        L->nomem = true;
        return;
    }
    b->argv = argv;
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        struct val it = item(L, x->v, i);
        char buf[64];
        const char *s = scalar_text(&it, buf, sizeof(buf));
        if (!s) {
            report(L, it.pos, "item %zu of %s must be a string, not %s", i + 1, what,
                   type_name(it.v));
            ok = false;
            continue;
        }
        if (i == 0 && !*s) {
            report(L, it.pos, "the program (item 1 of %s) is empty", what);
            ok = false;
            continue;
        }
        if (!check_template(L, s, it.pos, what)) {
            ok = false;
            continue;
        }
        if (ok && !(argv[i] = flow__strdup(s))) {
            L->nomem = true;
            ok = false;
        }
    }
    b->ok = ok;
}

static flow *load_nested(struct loader *L, const char *path, struct flow__yaml_pos pos,
                         const char *task);

/* `flow`: a workflow file, relative to this one. */
static void parse_flow(struct loader *L, const struct val *x, const char *what, struct body *b)
{
    const char *s = NULL;
    if (json_is_object(x->v)) {
        report(L, x->pos,
               "%s must be the name of a workflow file (relative to this file), not a mapping",
               what);
        return;
    }
    if (!get_string(L, x, what, true, &s))
        return;
    if (strstr(s, "{{")) {
        report(L, x->pos,
               "%s is a file name, read when the workflow is loaded: it cannot hold a template "
               "('%s')",
               what, s);
        return;
    }
    b->path = s;
    b->ok = true;
}

static void apply_body(struct loader *L, flow_task *t, const struct body *b, const char *name)
{
    flow_error e;
    flow__error_clear(&e);
    flow_err rc = FLOW_OK;
    char what[200];
    snprintf(what, sizeof(what), "'%s' of task '%s'", b->key, name);
    if (strcmp(b->key, "run") == 0) {
        rc = flow_task_set_command(t, (const char *const *)b->argv, &e);
    } else if (strcmp(b->key, "shell") == 0) {
        rc = flow_task_set_shell(t, b->shell, &e);
    } else if (strcmp(b->key, "noop") == 0) {
        rc = flow_task_set_noop(t);
    } else if (strcmp(b->key, "flow") == 0) {
        flow *child = load_nested(L, b->path, b->pos, name);
        if (child)
            rc = flow_task_set_subflow(t, child);
    } else if (strcmp(b->key, "feedback") == 0) {
        rc = flow_task_set_feedback(t, &b->fb, &e);
        if (!rc && b->fb_notify)
            rc = flow__task_set_feedback_notify(t, b->fb_notify, b->fb_notify_count);
    }
    if (rc)
        core_failed(L, b->pos, rc, &e, what);
}

static void load_task(struct loader *L, const char *name)
{
    struct val def = member(L, L->tasks, name);
    flow_task *t = L->f ? flow_find_task(L->f, name) : NULL;
    if (json_is_null(def.v))
        return; /* `name:` alone: a no-op start task */
    if (!json_is_object(def.v)) {
        report(L, def.pos, "task '%s' must be a mapping (run, after, retries, ...), not %s", name,
               type_name(def.v));
        return;
    }
    char owner[160];
    snprintf(owner, sizeof(owner), " of task '%s'", name);
    struct policy p = {0};
    struct body body = {0};
    struct body extra = {0}; /* a second body, reported */
    bool has_foreach = json_object_get(def.v, "foreach") != NULL;
    bool foreach_ok = false;
    int concurrency = 0;
    struct flow__yaml_pos concurrency_pos = {0, 0};
    L->item_scope = has_foreach ? ITEM_SET : ITEM_UNSET;
    const char *k;
    json_t *v;
    json_object_foreach (def.v, k, v) {
        struct val x = member(L, def.v, k);
        struct flow__yaml_pos kpos = flow__yaml_key_pos(L->doc, def.v, k);
        char what[240];
        snprintf(what, sizeof(what), "'%s'%s", k, owner);
        bool noop = strcmp(k, "noop") == 0;
        if (noop && !json_is_boolean(x.v)) {
            report(L, x.pos, "%s must be true or false, not %s", what, type_name(x.v));
            continue;
        }
        if (IN(k, body_keys) && !(noop && json_is_false(x.v))) {
            struct body *slot = body.key ? &extra : &body;
            if (slot == &extra && extra.key) {
                report(L, kpos, "task '%s' has more than two bodies: give exactly one of run, "
                                "shell, flow, feedback or noop",
                       name);
                continue;
            }
            slot->key = k;
            slot->pos = kpos;
            if (slot == &extra)
                report(L, kpos,
                       "task '%s' has two bodies ('%s' and '%s'): give exactly one of run, "
                       "shell, flow, feedback or noop",
                       name, body.key, k);
        }
        const struct unsupported *u = find_unsupported(SCOPE_TASK, k, NULL);
        if (u) {
            if (u->message)
                report(L, kpos, "%s in task '%s'", u->message, name);
            else
                report(L, kpos, "'%s' is not supported yet in task '%s'", k, name);
            continue;
        }
        if (parse_policy_key(L, k, &x, owner, false, name, &p))
            continue;
        bool flag = false;
        if (strcmp(k, "run") == 0) {
            struct body *slot = body.key == k ? &body : &extra;
            parse_run(L, &x, what, slot);
        } else if (strcmp(k, "shell") == 0) {
            struct body *slot = body.key == k ? &body : &extra;
            const char *s = NULL;
            if (get_string(L, &x, what, true, &s) && check_template(L, s, x.pos, what)) {
                slot->shell = s;
                slot->ok = true;
            }
        } else if (strcmp(k, "flow") == 0) {
            parse_flow(L, &x, what, body.key == k ? &body : &extra);
        } else if (strcmp(k, "feedback") == 0) {
            parse_feedback(L, &x, what, body.key == k ? &body : &extra);
        } else if (noop) {
            if (body.key == k)
                body.ok = true;
        } else if (strcmp(k, "foreach") == 0) {
            foreach_ok = parse_foreach(L, &x, what);
        } else if (strcmp(k, "concurrency") == 0) {
            concurrency_pos = kpos;
            if (!get_int(L, &x, what, 1, "a positive integer", &concurrency))
                concurrency = -1;
        } else if (strcmp(k, "after") == 0 || strcmp(k, "after_any") == 0 ||
                   strcmp(k, "optional") == 0) {
            parse_deps(L, t, k, &x, what);
        } else if (strcmp(k, "when") == 0) {
            flow_cond *c = parse_cond(L, &x, what, name);
            flow_err rc = FLOW_OK;
            if (c && t)
                rc = flow_task_when(t, c);
            else
                flow_cond_free(c);
            if (rc)
                core_failed(L, x.pos, rc, NULL, what);
        } else if (strcmp(k, "on") == 0) {
            parse_on(L, t, &x, what, name);
        } else if (strcmp(k, "start") == 0 || strcmp(k, "entry") == 0 ||
                   strcmp(k, "router") == 0) {
            if (!get_bool(L, &x, what, &flag))
                continue;
            if (k[0] == 'r' && flag)
                L->has_router = true;
            if (t) {
                flow_err rc = k[0] == 's'   ? flow_task_set_start(t, flag)
                              : k[0] == 'e' ? flow_task_set_entry(t, flag)
                                            : flow_task_set_router(t, flag);
                if (rc)
                    core_failed(L, x.pos, rc, NULL, what);
            }
        } else if (strcmp(k, "input") == 0) {
            if (check_template_value(L, &x, what) && t) {
                flow_error e;
                flow__error_clear(&e);
                flow_err rc = flow_task_set_input(t, x.v, &e);
                if (rc)
                    core_failed(L, x.pos, rc, &e, what);
            }
        } else if (strcmp(k, "save") == 0) {
            const char *s = NULL;
            if (get_string(L, &x, what, true, &s) && t) {
                flow_err rc = flow_task_set_save(t, s);
                if (rc)
                    core_failed(L, x.pos, rc, NULL, what);
            }
        } else if (strcmp(k, "description") == 0) {
            const char *s = NULL;
            get_string(L, &x, what, false, &s);
        } else {
            char hint[80];
            suggestion(hint, sizeof(hint), closest(k, task_keys, FLOW__ARRAY_LEN(task_keys)));
            report(L, kpos, "unknown key '%s' in task '%s'%s", k, name, hint);
        }
    }
    L->item_scope = ITEM_UNSET;
    if (concurrency_pos.line && !has_foreach)
        report(L, concurrency_pos,
               "'concurrency' needs 'foreach' in task '%s' (it bounds how many of the "
               "activations 'foreach' makes run at once)",
               name);
    if (t && foreach_ok && concurrency >= 0) {
        struct val x = member(L, def.v, "foreach");
        flow_error e;
        flow__error_clear(&e);
        flow_err rc = flow_task_set_foreach(t, x.v, concurrency, &e);
        if (rc) {
            char what[200];
            snprintf(what, sizeof(what), "'foreach'%s", owner);
            core_failed(L, x.pos, rc, &e, what);
        }
    }
    bool is_command = body.key && (strcmp(body.key, "run") == 0 ||
                                   strcmp(body.key, "shell") == 0);
    if (t && body.key && body.ok && !extra.key)
        apply_body(L, t, &body, name);
    if (t)
        apply_policy(L, t, &p, is_command, def.pos);
    body_cleanup(&body);
    body_cleanup(&extra);
    policy_cleanup(&p);
}

/* ------------------------------------------------------------------------ */
/* The file                                                                 */

static void report_dups(struct loader *L)
{
    for (size_t i = 0; i < flow__yaml_dup_count(L->doc); i++) {
        const struct flow__yaml_dup *d = flow__yaml_dup_at(L->doc, i);
        struct flow__yaml_pos first = flow__yaml_key_pos(L->doc, d->map, d->key);
        if (d->map == L->tasks)
            report(L, d->pos, "duplicate task '%s' (first defined at line %d)", d->key,
                   first.line);
        else
            report(L, d->pos, "duplicate key '%s' (first given at line %d)", d->key, first.line);
    }
}

/* `state_schema`: the core compiles it and says what is wrong with it. */
static void parse_state_schema(struct loader *L, json_t *root, const struct val *x)
{
    if (!json_is_object(x->v)) {
        report(L, x->pos,
               "'state_schema' must be a mapping (a JSON Schema: type, properties, required, "
               "enum, minimum, maximum, items), not %s",
               type_name(x->v));
        return;
    }
    flow_error e;
    flow__error_clear(&e);
    flow_err rc = flow_set_state_schema(L->f, x->v, &e);
    if (rc == FLOW_ENOMEM) {
        L->nomem = true;
    } else if (rc) {
        const char *msg = e.code != FLOW_OK && e.message[0] ? e.message : flow_strerror(rc);
        if (strncmp(msg, "state_schema: ", 14) == 0)
            msg += 14;
        report(L, flow__yaml_key_pos(L->doc, root, "state_schema"), "invalid 'state_schema': %s",
               msg);
    }
}

/* `map` of a connection: {source_key: target_key}, both non-empty strings,
 * no target twice. */
static bool check_connect_map(struct loader *L, const struct val *x, const char *what)
{
    if (!json_is_object(x->v)) {
        report(L, x->pos, "%s must be a mapping of payload keys to new names, not %s", what,
               type_name(x->v));
        return false;
    }
    bool ok = true;
    const char *k;
    json_t *v;
    json_object_foreach (x->v, k, v) {
        struct val kid = member(L, x->v, k);
        const char *to = NULL;
        char kwhat[300];
        snprintf(kwhat, sizeof(kwhat), "'%s' in %s", k, what);
        if (!*k) {
            report(L, flow__yaml_key_pos(L->doc, x->v, k), "%s: a payload key cannot be empty",
                   what);
            ok = false;
            continue;
        }
        if (!get_string(L, &kid, kwhat, true, &to)) {
            ok = false;
            continue;
        }
        const char *k2;
        json_t *v2;
        json_object_foreach (x->v, k2, v2) {
            if (k2 == k)
                break;
            if (json_is_string(v2) && strcmp(json_string_value(v2), to) == 0) {
                report(L, kid.pos, "%s renames both '%s' and '%s' to '%s'", what, k2, k, to);
                ok = false;
                break;
            }
        }
    }
    return ok;
}

/* One `connect` item: {from: TASK.EVENT, to: TASK, map: {src: dst}}. */
static void parse_connection(struct loader *L, const struct val *x, size_t n)
{
    char what[64];
    snprintf(what, sizeof(what), "'connect' item %zu", n);
    if (!json_is_object(x->v)) {
        report(L, x->pos, "%s must be a mapping {from: TASK.EVENT, to: TASK, map: {...}}, not %s",
               what, type_name(x->v));
        return;
    }
    bool ok = known_keys(L, x, connect_keys, FLOW__ARRAY_LEN(connect_keys), what);
    char kwhat[100];
    /* from: TASK.EVENT (task names hold no dot: the first one splits) */
    struct val from = member(L, x->v, "from");
    const char *src = NULL;
    char *from_task = NULL;
    const char *event = NULL;
    snprintf(kwhat, sizeof(kwhat), "'from' of %s", what);
    if (!from.v) {
        report(L, x->pos, "%s needs 'from' (TASK.EVENT: the task and the event it emits)", what);
        ok = false;
    } else if (get_string(L, &from, kwhat, true, &src)) {
        const char *dot = strchr(src, '.');
        if (!dot || dot == src || !dot[1]) {
            report(L, from.pos,
                   "%s must be TASK.EVENT (a task, a dot, the event it emits), not '%s'", kwhat,
                   src);
            ok = false;
        } else if (!(from_task = flow__strndup(src, (size_t)(dot - src)))) {
            L->nomem = true;
            ok = false;
        } else if (L->tasks && !json_object_get(L->tasks, from_task)) {
            unknown_task(L, from.pos, from_task, kwhat);
            ok = false;
        } else {
            event = dot + 1;
        }
    } else {
        ok = false;
    }
    /* to: TASK */
    struct val to = member(L, x->v, "to");
    const char *to_task = NULL;
    snprintf(kwhat, sizeof(kwhat), "'to' of %s", what);
    if (!to.v) {
        report(L, x->pos, "%s needs 'to' (the task each event starts)", what);
        ok = false;
    } else if (get_string(L, &to, kwhat, true, &to_task)) {
        if (L->tasks && !json_object_get(L->tasks, to_task)) {
            unknown_task(L, to.pos, to_task, kwhat);
            ok = false;
        }
    } else {
        ok = false;
    }
    /* map: {src: dst} */
    struct val map = member(L, x->v, "map");
    snprintf(kwhat, sizeof(kwhat), "'map' of %s", what);
    if (map.v && !check_connect_map(L, &map, kwhat))
        ok = false;
    if (ok && L->f) {
        flow_error e;
        flow__error_clear(&e);
        flow_err rc = flow_connect(L->f, from_task, event, to_task, map.v, &e);
        if (rc)
            core_failed(L, x->pos, rc, &e, what);
    }
    flow__free(from_task);
}

static void parse_connect(struct loader *L, const struct val *x)
{
    if (!json_is_array(x->v)) {
        report(L, x->pos,
               "'connect' must be a list of {from: TASK.EVENT, to: TASK, map: {...}}, not %s",
               type_name(x->v));
        return;
    }
    for (size_t i = 0; i < json_array_size(x->v); i++) {
        struct val it = item(L, x->v, i);
        parse_connection(L, &it, i + 1);
    }
}

/* Labels that no task of this flow emits as a router: warnings, since a
 * task may still emit them with `emit` (from C, or a command's control
 * file), which the file cannot tell. */
static void warn_labels(struct loader *L)
{
    if (L->has_router)
        return;
    for (size_t i = 0; i < L->labels.count; i++) {
        const struct label_use *u = &L->labels.items[i];
        warn(L, u->pos,
             "label '%s' in '%s' of task '%s' is not emitted by any router in this flow (a "
             "task can still emit it with 'emit')",
             u->name, u->key, u->task);
    }
}

static void load_top(struct loader *L, json_t *root)
{
    struct flow__yaml_pos root_pos = flow__yaml_node_pos(L->doc, root);
    if (root_pos.line == 0)
        root_pos = (struct flow__yaml_pos){1, 1};
    if (!json_is_object(root)) {
        report(L, root_pos,
               "the top level of a workflow must be a mapping (name, tasks, ...), not %s",
               json_is_null(root) ? "nothing" : type_name(root));
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach (root, k, v) {
        struct flow__yaml_pos kpos = flow__yaml_key_pos(L->doc, root, k);
        const struct unsupported *u = find_unsupported(SCOPE_TOP, k, NULL);
        if (u) {
            if (u->message)
                report(L, kpos, "%s", u->message);
            else
                report(L, kpos, "'%s' is not supported yet", k);
        } else if (!IN(k, top_keys) && strncmp(k, "x-", 2) != 0) {
            char hint[120];
            suggestion(hint, sizeof(hint), closest(k, top_keys, FLOW__ARRAY_LEN(top_keys)));
            if (!hint[0] && IN(k, task_keys))
                snprintf(hint, sizeof(hint), " ('%s' belongs to a task under 'tasks', or to "
                                             "'defaults')",
                         k);
            report(L, kpos, "unknown top-level key '%s'%s", k, hint);
        }
    }

    /* name */
    const char *name = NULL;
    struct val x = member(L, root, "name");
    if (!x.v)
        report(L, root_pos, "missing 'name': a workflow needs a name");
    else
        get_string(L, &x, "'name'", true, &name);
    flow_error e;
    flow__error_clear(&e);
    L->f = flow_new(name ? name : "unnamed", &e);
    if (!L->f) {
        core_failed(L, x.pos, e.code ? e.code : FLOW_ENOMEM, &e, "'name'");
        return;
    }

    /* tasks: pass 1 creates them all, so that names resolve in any order */
    x = member(L, root, "tasks");
    if (!x.v) {
        report(L, root_pos, "missing 'tasks': a workflow needs at least one task");
    } else if (!json_is_object(x.v)) {
        report(L, x.pos, "'tasks' must be a mapping of task names to tasks, not %s",
               type_name(x.v));
    } else if (json_object_size(x.v) == 0) {
        report(L, x.pos, "'tasks' is empty: a workflow needs at least one task");
    } else {
        L->tasks = x.v;
    }
    json_object_foreach (L->tasks, k, v) {
        struct flow__yaml_pos kpos = flow__yaml_key_pos(L->doc, L->tasks, k);
        if (!valid_task_name(k)) {
            report(L, kpos,
                   "invalid task name '%s' (use letters, digits, '_' and '-', starting with a "
                   "letter or '_')",
                   k);
            continue;
        }
        flow__error_clear(&e);
        flow_task *t = flow_add_task(L->f, k, &e);
        if (!t) {
            core_failed(L, kpos, e.code ? e.code : FLOW_ENOMEM, &e, "task");
            continue;
        }
        flow__task_set_origin(t, L->file, kpos.line, kpos.column);
    }

    x = member(L, root, "version");
    if (x.v) {
        char buf[64];
        const char *s = json_is_boolean(x.v) ? NULL : scalar_text(&x, buf, sizeof(buf));
        flow_err rc;
        if (!s)
            report(L, x.pos, "'version' must be a string or a number, not %s", type_name(x.v));
        else if ((rc = flow_set_version(L->f, s)))
            core_failed(L, x.pos, rc, NULL, "'version'");
    }
    x = member(L, root, "description");
    if (x.v) {
        const char *s = NULL;
        flow_err rc;
        if (get_string(L, &x, "'description'", false, &s) &&
            (rc = flow_set_description(L->f, s)))
            core_failed(L, x.pos, rc, NULL, "'description'");
    }
    x = member(L, root, "state");
    if (x.v) {
        flow_err rc;
        if (!json_is_object(x.v))
            report(L, x.pos, "'state' must be a mapping (the initial state), not %s",
                   type_name(x.v));
        else if ((rc = flow_set_initial_state(L->f, x.v)))
            core_failed(L, x.pos, rc, NULL, "'state'");
    }
    x = member(L, root, "result");
    if (x.v && check_template_value(L, &x, "'result'")) {
        flow__error_clear(&e);
        flow_err rc = flow_set_result_template(L->f, x.v, &e);
        if (rc)
            core_failed(L, x.pos, rc, &e, "'result'");
    }
    x = member(L, root, "checkpoint_every");
    if (x.v) {
        double every;
        if (get_duration(L, &x, "'checkpoint_every'", &every))
            flow_set_checkpoint_every(L->f, every);
    }
    x = member(L, root, "defaults");
    if (x.v)
        parse_defaults(L, &x);

    x = member(L, root, "state_schema");
    if (x.v)
        parse_state_schema(L, root, &x);

    /* tasks: pass 2 */
    json_object_foreach (L->tasks, k, v)
        load_task(L, k);

    x = member(L, root, "connect");
    if (x.v)
        parse_connect(L, &x);
    warn_labels(L);
}

static int diag_cmp(const void *a, const void *b)
{
    const struct ldiag *x = a;
    const struct ldiag *y = b;
    if (x->at.line != y->at.line)
        return x->at.line < y->at.line ? -1 : 1;
    if (x->at.column != y->at.column)
        return x->at.column < y->at.column ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void tree_cleanup(struct tree *tree)
{
    for (size_t i = 0; i < tree->done.count; i++) {
        flow__free(tree->done.items[i].canon);
        flow_free(tree->done.items[i].f);
    }
    FLOW__VEC_FREE(&tree->done);
    FLOW__VEC_FREE(&tree->stack);
}

/* Load one file of a tree of nested flows. `canon` (may be NULL) names the
 * file for cycle checks; `dir` is the base of its relative paths. */
static flow *load(const char *text, size_t len, const char *file, const char *dir,
                  const char *canon, struct tree *tree, flow_diags *diags, flow_error *err)
{
    struct loader L = {0};
    L.file = file ? file : "<string>";
    L.dir = dir;
    L.tree = tree;
    flow__error_clear(err);

    flow_error perr;
    flow__error_clear(&perr);
    flow_err rc = flow__yaml_parse(text, len, L.file, &L.doc, &perr);
    if (rc) {
        flow__diags_add(diags, &perr, FLOW_SEV_ERROR);
        if (err)
            *err = perr;
        return NULL;
    }
    struct frame fr = {canon, L.file, {0, 0}};
    L.depth = tree->stack.count;
    FLOW__VEC_PUSH(&tree->stack, fr, rc);
    if (rc || tree->stack.count != L.depth + 1) {
        L.nomem = true;
    } else {
        json_t *root = flow__yaml_root(L.doc);
        if (json_is_object(root)) {
            json_t *tasks = json_object_get(root, "tasks");
            if (json_is_object(tasks))
                L.tasks = tasks; /* for report_dups; load_top sets it again */
        }
        report_dups(&L);
        L.tasks = NULL;
        load_top(&L, root);
        tree->stack.count = L.depth;
    }

    /* Ours in file order (a nested file's at its `flow:` key), then the core's. */
    if (L.diags.count > 1)
        qsort(L.diags.items, L.diags.count, sizeof(*L.diags.items), diag_cmp);
    size_t errors = L.hidden_errors;
    for (size_t i = 0; i < L.diags.count; i++) {
        const struct ldiag *d = &L.diags.items[i];
        flow__diags_add(diags, &d->e, d->sev);
        if (d->sev != FLOW_SEV_ERROR)
            continue;
        if (errors == L.hidden_errors && err)
            *err = d->e;
        errors++;
    }

    if (L.f && !L.nomem) {
        flow_diags *core = flow_diags_new();
        flow_error verr;
        flow__error_clear(&verr);
        if (!core) {
            L.nomem = true;
        } else {
            rc = flow_validate(L.f, core, &verr);
            for (size_t i = 0; i < flow_diags_count(core); i++) {
                flow_severity sev = FLOW_SEV_ERROR;
                const flow_error *d = flow_diags_get(core, i, &sev);
                flow__diags_add(diags, d, sev);
            }
            if (rc == FLOW_ENOMEM) {
                L.nomem = true;
            } else if (rc != FLOW_OK) {
                const flow_error *first = NULL;
                for (size_t i = 0; i < flow_diags_count(core) && !first; i++) {
                    flow_severity sev = FLOW_SEV_ERROR;
                    const flow_error *d = flow_diags_get(core, i, &sev);
                    if (sev == FLOW_SEV_ERROR)
                        first = d;
                }
                if (errors == 0 && err)
                    *err = verr.code || !first ? verr : *first;
                errors += flow_diags_error_count(core) ? flow_diags_error_count(core) : 1;
            }
            flow_diags_free(core);
        }
    }

    flow *f = L.f;
    if (L.nomem) {
        flow__error(&perr, FLOW_ENOMEM, "out of memory loading '%s'", L.file);
        flow__diags_add(diags, &perr, FLOW_SEV_ERROR);
        if (err)
            *err = perr;
    }
    if (L.nomem || errors) {
        flow_free(f);
        f = NULL;
        if (err && !L.nomem)
            err->code = FLOW_EVALIDATION;
    }
    FLOW__VEC_FREE(&L.diags);
    FLOW__VEC_FREE(&L.labels);
    policy_cleanup(&L.defaults);
    flow__yaml_free(L.doc);
    return f;
}

/* Drop "." and "dir/.." steps from a path, in place, for messages
 * ("sub/../c.yaml" is "c.yaml"; a leading ".." stays). */
static void tidy_path(char *path)
{
    bool abs = path[0] == '/';
    char *out = path + abs;
    char *p = out;
    char *stop = path + strlen(path); /* writing a '/' may cover the NUL */
    size_t kept = 0;                  /* steps in `out` that a ".." may remove */
    while (p < stop) {
        char *end = memchr(p, '/', (size_t)(stop - p));
        size_t len = end ? (size_t)(end - p) : (size_t)(stop - p);
        if (len == 0 || (len == 1 && p[0] == '.')) {
            /* nothing */
        } else if (len == 2 && p[0] == '.' && p[1] == '.' && kept) {
            out[-1] = '\0'; /* back over the last step and its '/' */
            char *prev = strrchr(path + abs, '/');
            out = prev && prev >= path + abs ? prev + 1 : path + abs;
            kept--;
        } else if (len == 2 && p[0] == '.' && p[1] == '.' && abs) {
            /* "/.." is "/" */
        } else {
            memmove(out, p, len);
            out += len;
            *out++ = '/';
            if (!(len == 2 && p[0] == '.' && p[1] == '.'))
                kept++;
        }
        p += len;
        while (p < stop && *p == '/')
            p++;
    }
    if (out > path + abs)
        out--; /* the last '/' */
    else if (!abs)
        *out++ = '.';
    *out = '\0';
}

/* The name messages give a nested file `path` written in file `parent`:
 * relative to the parent's directory, as the parent is named. */
static char *nested_name(const char *parent, const char *path)
{
    const char *slash = strrchr(parent, '/');
    char *name = path[0] == '/' || !slash
                     ? flow__strdup(path)
                     : flow__asprintf("%.*s/%s", (int)(slash - parent), parent, path);
    if (name)
        tidy_path(name);
    return name;
}

static char *base_dir(const char *path);
static flow_err read_file(const char *path, struct flow__buf *b, flow_error *err);

/* Where a nested file's diagnostics go: copied into the parent's, sorted at
 * the `flow:` key that loads it. */
static void adopt_diags(struct loader *L, const flow_diags *d, struct flow__yaml_pos at)
{
    for (size_t i = 0; i < flow_diags_count(d); i++) {
        flow_severity sev = FLOW_SEV_ERROR;
        const flow_error *e = flow_diags_get(d, i, &sev);
        add_diag(L, e, sev, at);
    }
}

/* The flow of `flow: path` in task `task` (written at `pos`): loaded with
 * this loader, once per tree (a file used again shares the flow), refusing
 * cycles. Borrowed from the tree; NULL after reporting. */
static flow *load_nested(struct loader *L, const char *path, struct flow__yaml_pos pos,
                         const char *task)
{
    struct tree *tree = L->tree;
    flow *child = NULL;
    char *canon = NULL;
    char *dir = NULL;
    flow_diags *d = NULL;
    struct flow__buf b;
    flow__buf_init(&b, FLOW__YAML_MAX_BYTES);
    char *open_path = path[0] == '/' || !L->dir ? flow__strdup(path)
                                                : flow__asprintf("%s/%s", L->dir, path);
    char *shown = nested_name(L->file, path);
    if (!open_path || !shown) {
        L->nomem = true;
        goto out;
    }
    char looked[300] = "";
    if (strcmp(shown, path) != 0)
        snprintf(looked, sizeof(looked), " (looked for '%s')", shown);
    char *real = realpath(open_path, NULL);
    if (!real) {
        int e = errno;
        if (e == ENOMEM)
            L->nomem = true;
        else
            report(L, pos, "cannot open nested flow '%s' of task '%s'%s: %s", path, task, looked,
                   strerror(e));
        goto out;
    }
    canon = flow__strdup(real);
    free(real); /* realpath() allocates with malloc */
    if (!canon) {
        L->nomem = true;
        goto out;
    }

    /* A file that is being loaded further out: a cycle, reported where it starts. */
    tree->stack.items[L->depth].include = pos;
    for (size_t i = 0; i < tree->stack.count; i++) {
        const struct frame *fr = &tree->stack.items[i];
        if (!fr->canon || strcmp(fr->canon, canon) != 0)
            continue;
        struct flow__buf chain;
        flow__buf_init(&chain, 4096);
        for (size_t k = i; k < tree->stack.count; k++)
            flow__buf_printf(&chain, "%s -> ", tree->stack.items[k].file);
        flow__buf_printf(&chain, "%s", shown);
        flow_error e;
        flow__error_at(&e, FLOW_EVALIDATION, fr->file, fr->include.line, fr->include.column,
                       "nested flow cycle: %s", flow__buf_str(&chain));
        flow__buf_cleanup(&chain);
        bool known = false; /* a file that uses the cycle twice meets it twice */
        for (size_t k = 0; k < L->diags.count && !known; k++)
            known = strcmp(L->diags.items[k].e.message, e.message) == 0 &&
                    strcmp(L->diags.items[k].e.file, e.file) == 0;
        if (!known)
            add_diag(L, &e, FLOW_SEV_ERROR, pos);
        else
            L->hidden_errors++;
        goto out;
    }
    for (size_t i = 0; i < tree->done.count; i++) {
        if (strcmp(tree->done.items[i].canon, canon) == 0) {
            child = tree->done.items[i].f;
            if (!child)
                L->hidden_errors++; /* reported where it was first used */
            goto out;
        }
    }
    if (tree->stack.count >= MAX_NESTING) {
        report(L, pos, "nested flow '%s' of task '%s' is more than %d files deep", path, task,
               MAX_NESTING);
        goto out;
    }

    struct stat st;
    if (stat(canon, &st) == 0 && S_ISDIR(st.st_mode)) {
        report(L, pos, "nested flow '%s' of task '%s'%s is a directory, not a workflow file", path,
               task, looked);
        goto out;
    }
    flow_error e;
    flow__error_clear(&e);
    if (read_file(open_path, &b, &e)) {
        if (e.code == FLOW_ENOMEM)
            L->nomem = true;
        else
            report(L, pos, "cannot load nested flow '%s' of task '%s': %s", path, task,
                   e.message);
        goto out;
    }
    dir = base_dir(open_path);
    d = flow_diags_new();
    if (!dir || !d) {
        L->nomem = true;
        goto out;
    }
    child = load(b.data ? b.data : "", b.len, shown, dir, canon, tree, d, &e);
    adopt_diags(L, d, pos);
    if (!child && e.code == FLOW_ENOMEM)
        L->nomem = true;
    else if (!child && flow_diags_error_count(d) == 0)
        L->hidden_errors++;
    struct loaded ld = {canon, child};
    flow_err rc = FLOW_OK;
    size_t before = tree->done.count;
    FLOW__VEC_PUSH(&tree->done, ld, rc);
    if (rc || tree->done.count == before) {
        L->nomem = true;
        flow_free(child);
        child = NULL;
    } else {
        canon = NULL; /* the tree's now */
    }
out:
    flow_diags_free(d);
    flow__free(dir);
    flow__buf_cleanup(&b);
    flow__free(canon);
    flow__free(shown);
    flow__free(open_path);
    return child;
}

flow *flow_load_string(const char *text, size_t len, const char *name_for_errors,
                       flow_diags *diags, flow_error *err)
{
    if (!text) {
        flow_error e;
        flow__error(&e, FLOW_EVALIDATION, "no workflow text");
        flow__diags_add(diags, &e, FLOW_SEV_ERROR);
        if (err)
            *err = e;
        return NULL;
    }
    struct tree tree = {0};
    flow *f = load(text, len, name_for_errors, NULL, NULL, &tree, diags, err);
    tree_cleanup(&tree);
    return f;
}

/* The absolute directory of `path`; NULL when out of memory. */
static char *base_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? flow__strndup(path, slash == path ? 1 : (size_t)(slash - path))
                      : flow__strdup(".");
    if (!dir || dir[0] == '/')
        return dir;
    char *cwd = getcwd(NULL, 0);
    if (!cwd)
        return dir; /* keep it relative: the best we can do */
    char *abs = strcmp(dir, ".") == 0 ? flow__strdup(cwd) : flow__asprintf("%s/%s", cwd, dir);
    free(cwd);
    flow__free(dir);
    return abs;
}

static flow_err read_file(const char *path, struct flow__buf *b, flow_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return flow__error_at(err, e == ENOENT ? FLOW_ENOTFOUND : FLOW_EIO, path, 0, 0,
                              "cannot open '%s': %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        return flow__error_at(err, FLOW_EIO, path, 0, 0, "'%s' is a directory, not a file", path);
    }
    char chunk[65536];
    flow_err rc = FLOW_OK;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            rc = flow__error_at(err, FLOW_EIO, path, 0, 0, "cannot read '%s': %s", path,
                                strerror(e));
            break;
        }
        if (n == 0)
            break;
        rc = flow__buf_append(b, chunk, (size_t)n);
        if (rc == FLOW_ELIMIT) {
            rc = flow__error_at(err, FLOW_EPARSE, path, 0, 0, "'%s' is too large (over %zu MiB)",
                                path, FLOW__YAML_MAX_BYTES >> 20);
            break;
        }
        if (rc) {
            rc = flow__error(err, rc, "out of memory reading '%s'", path);
            break;
        }
    }
    close(fd);
    return rc;
}

flow *flow_load_file(const char *path, flow_diags *diags, flow_error *err)
{
    flow_error e;
    flow__error_clear(&e);
    if (!path || !*path) {
        flow__error(&e, FLOW_ENOTFOUND, "no workflow file given");
        goto out_error;
    }
    struct flow__buf b;
    flow__buf_init(&b, FLOW__YAML_MAX_BYTES);
    if (read_file(path, &b, &e)) {
        flow__buf_cleanup(&b);
        goto out_error;
    }
    char *dir = base_dir(path);
    char *real = realpath(path, NULL); /* NULL: no cycle can be told, nothing worse */
    char *canon = real ? flow__strdup(real) : NULL;
    bool nomem = !dir || (real && !canon);
    free(real); /* realpath() allocates with malloc */
    if (nomem) {
        flow__free(dir);
        flow__free(canon);
        flow__buf_cleanup(&b);
        flow__error(&e, FLOW_ENOMEM, "out of memory loading '%s'", path);
        goto out_error;
    }
    struct tree tree = {0};
    flow *f = load(b.data ? b.data : "", b.len, path, dir, canon, &tree, diags, err);
    tree_cleanup(&tree);
    flow__free(canon);
    flow__free(dir);
    flow__buf_cleanup(&b);
    return f;
out_error:
    flow__diags_add(diags, &e, FLOW_SEV_ERROR);
    if (err)
        *err = e;
    return NULL;
}

flow_err flow_bind(flow *f, const char *task_name, flow_task_fn fn, void *udata)
{
    flow_task *t = f && task_name ? flow_find_task(f, task_name) : NULL;
    if (!t)
        return FLOW_ENOTFOUND;
    return flow_task_set_fn(t, fn, udata);
}
