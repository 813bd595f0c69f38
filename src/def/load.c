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

#include "def/flowdef.h"
#include "def/template.h"
#include "def/yaml.h"
#include "flow.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/json.h"
#include "util/vec.h"

#include "def/cron.h"
#include "def/load_int.h"

/* Keys of the format this version refuses (none today; the first entry is
 * a placeholder: C has no empty arrays). */
static const struct unsupported unsupported[] = {
    {SCOPE_TASK, NULL, NULL, NULL},
};

/* Top-level keys; keys starting with "x-" are extensions, ignored (a place
 * for YAML anchors that tasks then alias). */
static const char *const top_keys[] = {
    "name",     "version", "description", "state",   "state_schema",
    "defaults", "result",  "tasks",       "connect", "checkpoint_every", "secrets",
    "schedule", "timezone", "catchup",    "inputs",  "concurrency",
};

static const char *const task_keys[] = {
    /* bodies */
    "run",
    "shell",
    "flow",
    "feedback",
    "prompt",
    "noop",
    "fn",
    "http",
    "llm",
    /* triggers */
    "after",
    "after_any",
    "when",
    "on",
    "optional",
    "start",
    "entry",
    "router",
    "foreach",
    "concurrency",
    "rate_limit",
    "resources",
    /* policy */
    "timeout",
    "retries",
    "backoff",
    "on_error",
    "executor",
    "priority",
    "max_activations",
    "cache",
    "kill_grace",
    "queue",
    /* input and output */
    "input",
    "env",
    "cwd",
    "output",
    "save",
    /* for readers; ignored */
    "description",
};

bool flow__ld_is_task_key(const char *key)
{
    return IN(key, task_keys);
}

const char *flow__ld_closest_task_key(const char *key)
{
    return flow__ld_closest(key, task_keys, FLOW__ARRAY_LEN(task_keys));
}

/* Task keys that `defaults` may hold. */

static const char *const connect_keys[] = {"from", "to", "map"};

bool flow__ld_in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, list[i]) == 0)
            return true;
    }
    return false;
}

const struct unsupported *flow__ld_find_unsupported(enum scope scope, const char *key,
                                                    const char *value)
{
    for (size_t i = 0; i < FLOW__ARRAY_LEN(unsupported); i++) {
        const struct unsupported *u = &unsupported[i];
        if (!u->key || strcmp(u->key, key) != 0)
            continue;
        if (!value && !u->value && u->scope == scope)
            return u;
        if (value && u->value && strcmp(u->value, value) == 0)
            return u;
    }
    return NULL;
}

/* The file                                                                 */

static void report_dups(struct loader *L)
{
    for (size_t i = 0; i < flow__yaml_dup_count(L->doc); i++) {
        const struct flow__yaml_dup *d = flow__yaml_dup_at(L->doc, i);
        struct flow__yaml_pos first = flow__yaml_key_pos(L->doc, d->map, d->key);
        if (d->map == L->tasks)
            flow__ld_report(L, d->pos, "duplicate task '%s' (first defined at line %d)", d->key,
                            first.line);
        else
            flow__ld_report(L, d->pos, "duplicate key '%s' (first given at line %d)", d->key,
                            first.line);
    }
}

/* `state_schema`: the core compiles it and says what is wrong with it. */
static void parse_state_schema(struct loader *L, json_t *root, const struct val *x)
{
    if (!json_is_object(x->v)) {
        flow__ld_report(
            L, x->pos,
            "'state_schema' must be a mapping (a JSON Schema: type, properties, required, "
            "enum, minimum, maximum, items), not %s",
            flow__ld_type_name(x->v));
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
        flow__ld_report(L, flow__yaml_key_pos(L->doc, root, "state_schema"),
                        "invalid 'state_schema': %s", msg);
    }
}

/* `map` of a connection: {source_key: target_key}, both non-empty strings,
 * no target twice. */
static bool check_connect_map(struct loader *L, const struct val *x, const char *what)
{
    if (!json_is_object(x->v)) {
        flow__ld_report(L, x->pos, "%s must be a mapping of payload keys to new names, not %s",
                        what, flow__ld_type_name(x->v));
        return false;
    }
    bool ok = true;
    const char *k;
    json_t *v;
    json_object_foreach(x->v, k, v)
    {
        struct val kid = flow__ld_member(L, x->v, k);
        const char *to = NULL;
        char kwhat[300];
        snprintf(kwhat, sizeof(kwhat), "'%s' in %s", k, what);
        if (!*k) {
            flow__ld_report(L, flow__yaml_key_pos(L->doc, x->v, k),
                            "%s: a payload key cannot be empty", what);
            ok = false;
            continue;
        }
        if (!flow__ld_get_string(L, &kid, kwhat, true, &to)) {
            ok = false;
            continue;
        }
        const char *k2;
        json_t *v2;
        json_object_foreach(x->v, k2, v2)
        {
            if (k2 == k)
                break;
            if (json_is_string(v2) && strcmp(json_string_value(v2), to) == 0) {
                flow__ld_report(L, kid.pos, "%s renames both '%s' and '%s' to '%s'", what, k2, k,
                                to);
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
        flow__ld_report(L, x->pos,
                        "%s must be a mapping {from: TASK.EVENT, to: TASK, map: {...}}, not %s",
                        what, flow__ld_type_name(x->v));
        return;
    }
    bool ok = flow__ld_known_keys(L, x, connect_keys, FLOW__ARRAY_LEN(connect_keys), what);
    char kwhat[100];
    /* from: TASK.EVENT (task names hold no dot: the first one splits) */
    struct val from = flow__ld_member(L, x->v, "from");
    const char *src = NULL;
    char *from_task = NULL;
    const char *event = NULL;
    snprintf(kwhat, sizeof(kwhat), "'from' of %s", what);
    if (!from.v) {
        flow__ld_report(L, x->pos, "%s needs 'from' (TASK.EVENT: the task and the event it emits)",
                        what);
        ok = false;
    } else if (flow__ld_get_string(L, &from, kwhat, true, &src)) {
        const char *dot = strchr(src, '.');
        if (!dot || dot == src || !dot[1]) {
            flow__ld_report(L, from.pos,
                            "%s must be TASK.EVENT (a task, a dot, the event it emits), not '%s'",
                            kwhat, src);
            ok = false;
        } else if (!(from_task = flow__strndup(src, (size_t)(dot - src)))) {
            L->nomem = true;
            ok = false;
        } else if (L->tasks && !json_object_get(L->tasks, from_task)) {
            flow__ld_unknown_task(L, from.pos, from_task, kwhat);
            ok = false;
        } else {
            event = dot + 1;
        }
    } else {
        ok = false;
    }
    /* to: TASK */
    struct val to = flow__ld_member(L, x->v, "to");
    const char *to_task = NULL;
    snprintf(kwhat, sizeof(kwhat), "'to' of %s", what);
    if (!to.v) {
        flow__ld_report(L, x->pos, "%s needs 'to' (the task each event starts)", what);
        ok = false;
    } else if (flow__ld_get_string(L, &to, kwhat, true, &to_task)) {
        if (L->tasks && !json_object_get(L->tasks, to_task)) {
            flow__ld_unknown_task(L, to.pos, to_task, kwhat);
            ok = false;
        }
    } else {
        ok = false;
    }
    /* map: {src: dst} */
    struct val map = flow__ld_member(L, x->v, "map");
    snprintf(kwhat, sizeof(kwhat), "'map' of %s", what);
    if (map.v && !check_connect_map(L, &map, kwhat))
        ok = false;
    if (ok && L->f) {
        flow_error e;
        flow__error_clear(&e);
        flow_err rc = flow_connect(L->f, from_task, event, to_task, map.v, &e);
        if (rc)
            flow__ld_core_failed(L, x->pos, rc, &e, what);
    }
    flow__free(from_task);
}

/* `secrets`: environment variables whose values are never written nor
 * printed. Read before any template, which may name them. */
/* `schedule: CRON` with the flow's `timezone`, `catchup` and `inputs`, or
 * `schedule: {cron, timezone, catchup, inputs}`. */
static void parse_schedule(struct loader *L, json_t *root)
{
    static const char *const keys[] = {"cron", "timezone", "catchup", "inputs"};
    struct val x = flow__ld_member(L, root, "schedule");
    json_t *from = root;
    flow_schedule sc = {0};
    if (!x.v) {
        for (size_t i = 1; i < FLOW__ARRAY_LEN(keys); i++) {
            struct val k = flow__ld_member(L, root, keys[i]);
            if (k.v)
                flow__ld_report(L, k.pos, "'%s' is for scheduled runs: it needs 'schedule'",
                                keys[i]);
        }
        return;
    }
    struct val cron = x;
    if (json_is_object(x.v)) {
        if (!flow__ld_known_keys(L, &x, keys, FLOW__ARRAY_LEN(keys), "'schedule'"))
            return;
        from = x.v;
        cron = flow__ld_member(L, x.v, "cron");
        if (!cron.v) {
            flow__ld_report(L, x.pos, "'schedule' needs 'cron' (five fields, @daily, or @every "
                                      "DURATION)");
            return;
        }
    }
    struct val tz = flow__ld_member(L, from, "timezone");
    struct val cu = flow__ld_member(L, from, "catchup");
    struct val in = flow__ld_member(L, from, "inputs");
    struct flow__cron parsed;
    flow_error e = {0};
    bool ok = flow__ld_get_string(L, &cron, "'schedule'", true, &sc.cron);
    if (ok && flow__cron_parse(sc.cron, &parsed, &e) != FLOW_OK) {
        flow__ld_report(L, cron.pos, "%s", e.message);
        ok = false;
    }
    if (tz.v && flow__ld_get_string(L, &tz, "'timezone'", true, &sc.timezone) &&
        !flow__cron_zone_known(sc.timezone)) {
        flow__ld_report(L, tz.pos,
                        "unknown time zone '%s' (an IANA name such as Europe/Berlin or "
                        "America/New_York; UTC by default)",
                        sc.timezone);
        ok = false;
    } else if (tz.v && !sc.timezone) {
        ok = false;
    }
    if (cu.v && !flow__ld_get_bool(L, &cu, "'catchup'", &sc.catchup))
        ok = false;
    if (in.v && !json_is_object(in.v)) {
        flow__ld_report(L, in.pos, "'inputs' of a schedule must be a mapping, not %s",
                        flow__ld_type_name(in.v));
        ok = false;
    }
    sc.inputs = in.v;
    if (ok && flow_set_schedule(L->f, &sc, &e) != FLOW_OK)
        flow__ld_report(L, cron.pos, "%s", e.message);
}

static void parse_secrets(struct loader *L, const struct val *x)
{
    if (!json_is_array(x->v)) {
        flow__ld_report(L, x->pos,
                        "'secrets' must be a list of environment variable names (like [API_TOKEN]), "
                        "not %s",
                        flow__ld_type_name(x->v));
        L->secrets_broken = true;
        return;
    }
    for (size_t i = 0; i < json_array_size(x->v); i++) {
        struct val it = flow__ld_item(L, x->v, i);
        const char *name = json_string_value(it.v);
        if (!name) {
            flow__ld_report(L, it.pos, "item %zu of 'secrets' must be an environment variable "
                                       "name, not %s",
                            i + 1, flow__ld_type_name(it.v));
            continue;
        }
        flow_err rc = flow_add_secret(L->f, name);
        if (rc == FLOW_EINVAL) {
            flow__ld_report(L, it.pos,
                            "invalid secret '%s' in 'secrets': an environment variable name "
                            "(letters, digits and '_', not starting with a digit)",
                            name);
        } else if (rc == FLOW_EEXISTS) {
            size_t first = 0;
            for (const char *s; first < i; first++)
                if ((s = json_string_value(json_array_get(x->v, first))) && !strcmp(s, name))
                    break;
            struct flow__yaml_pos at = flow__ld_item(L, x->v, first).pos;
            flow__ld_report(L, it.pos,
                            "duplicate secret '%s' in 'secrets' (first listed at line %d, "
                            "column %d)",
                            name, at.line, at.column);
        } else if (rc) {
            flow__ld_core_failed(L, it.pos, rc, NULL, "'secrets'");
        }
    }
}

static void parse_connect(struct loader *L, const struct val *x)
{
    if (!json_is_array(x->v)) {
        flow__ld_report(
            L, x->pos,
            "'connect' must be a list of {from: TASK.EVENT, to: TASK, map: {...}}, not %s",
            flow__ld_type_name(x->v));
        return;
    }
    for (size_t i = 0; i < json_array_size(x->v); i++) {
        struct val it = flow__ld_item(L, x->v, i);
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
        flow__ld_warn(
            L, u->pos,
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
        flow__ld_report(L, root_pos,
                        "the top level of a workflow must be a mapping (name, tasks, ...), not %s",
                        json_is_null(root) ? "nothing" : flow__ld_type_name(root));
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        struct flow__yaml_pos kpos = flow__yaml_key_pos(L->doc, root, k);
        const struct unsupported *u = flow__ld_find_unsupported(SCOPE_TOP, k, NULL);
        if (u) {
            if (u->message)
                flow__ld_report(L, kpos, "%s", u->message);
            else
                flow__ld_report(L, kpos, "'%s' is not supported yet", k);
        } else if (!IN(k, top_keys) && strncmp(k, "x-", 2) != 0) {
            char hint[120];
            flow__ld_suggestion(hint, sizeof(hint),
                                flow__ld_closest(k, top_keys, FLOW__ARRAY_LEN(top_keys)));
            if (!hint[0] && flow__ld_is_task_key(k))
                snprintf(hint, sizeof(hint),
                         " ('%s' belongs to a task under 'tasks', or to "
                         "'defaults')",
                         k);
            flow__ld_report(L, kpos, "unknown top-level key '%s'%s", k, hint);
        }
    }

    /* name */
    const char *name = NULL;
    struct val x = flow__ld_member(L, root, "name");
    if (!x.v)
        flow__ld_report(L, root_pos, "missing 'name': a workflow needs a name");
    else
        flow__ld_get_string(L, &x, "'name'", true, &name);
    flow_error e;
    flow__error_clear(&e);
    L->f = flow_new(name ? name : "unnamed", &e);
    if (!L->f) {
        flow__ld_core_failed(L, x.pos, e.code ? e.code : FLOW_ENOMEM, &e, "'name'");
        return;
    }

    /* tasks: pass 1 creates them all, so that names resolve in any order */
    x = flow__ld_member(L, root, "tasks");
    if (!x.v) {
        flow__ld_report(L, root_pos, "missing 'tasks': a workflow needs at least one task");
    } else if (!json_is_object(x.v)) {
        flow__ld_report(L, x.pos, "'tasks' must be a mapping of task names to tasks, not %s",
                        flow__ld_type_name(x.v));
    } else if (json_object_size(x.v) == 0) {
        flow__ld_report(L, x.pos, "'tasks' is empty: a workflow needs at least one task");
    } else {
        L->tasks = x.v;
    }
    /* The task each key made (NULL: none), so that pass 2 finds it without a lookup by name. */
    size_t ntasks = json_object_size(L->tasks);
    flow_task **made = flow__calloc(ntasks ? ntasks : 1, sizeof(*made));
    if (!made) {
        L->nomem = true;
        return;
    }
    size_t at = 0;
    json_object_foreach(L->tasks, k, v)
    {
        struct flow__yaml_pos kpos = flow__yaml_key_pos(L->doc, L->tasks, k);
        at++;
        if (!flow__ld_valid_task_name(k)) {
            flow__ld_report(
                L, kpos,
                "invalid task name '%s' (use letters, digits, '_' and '-', starting with a "
                "letter or '_')",
                k);
            continue;
        }
        flow__error_clear(&e);
        flow_task *t = flow_add_task(L->f, k, &e);
        if (!t) {
            flow__ld_core_failed(L, kpos, e.code ? e.code : FLOW_ENOMEM, &e, "task");
            continue;
        }
        flow__task_set_origin(t, L->file, kpos.line, kpos.column);
        made[at - 1] = t;
    }

    x = flow__ld_member(L, root, "version");
    if (x.v) {
        char buf[64];
        const char *s = json_is_boolean(x.v) ? NULL : flow__ld_scalar_text(&x, buf, sizeof(buf));
        flow_err rc;
        if (!s)
            flow__ld_report(L, x.pos, "'version' must be a string or a number, not %s",
                            flow__ld_type_name(x.v));
        else if ((rc = flow_set_version(L->f, s)))
            flow__ld_core_failed(L, x.pos, rc, NULL, "'version'");
    }
    x = flow__ld_member(L, root, "description");
    if (x.v) {
        const char *s = NULL;
        flow_err rc;
        if (flow__ld_get_string(L, &x, "'description'", false, &s) &&
            (rc = flow_set_description(L->f, s)))
            flow__ld_core_failed(L, x.pos, rc, NULL, "'description'");
    }
    x = flow__ld_member(L, root, "state");
    if (x.v) {
        flow_err rc;
        if (!json_is_object(x.v))
            flow__ld_report(L, x.pos, "'state' must be a mapping (the initial state), not %s",
                            flow__ld_type_name(x.v));
        else if ((rc = flow_set_initial_state(L->f, x.v)))
            flow__ld_core_failed(L, x.pos, rc, NULL, "'state'");
    }
    x = flow__ld_member(L, root, "secrets");
    if (x.v)
        parse_secrets(L, &x);
    parse_schedule(L, root);
    flow__ld_parse_flow_concurrency(L, root);
    x = flow__ld_member(L, root, "result");
    if (x.v && flow__ld_check_template_value(L, &x, "'result'")) {
        flow__error_clear(&e);
        flow_err rc = flow_set_result_template(L->f, x.v, &e);
        if (rc)
            flow__ld_core_failed(L, x.pos, rc, &e, "'result'");
    }
    x = flow__ld_member(L, root, "checkpoint_every");
    if (x.v) {
        double every;
        if (flow__ld_get_duration(L, &x, "'checkpoint_every'", &every))
            flow_set_checkpoint_every(L->f, every);
    }
    x = flow__ld_member(L, root, "defaults");
    if (x.v)
        flow__ld_parse_defaults(L, &x);

    x = flow__ld_member(L, root, "state_schema");
    if (x.v)
        parse_state_schema(L, root, &x);

    /* tasks: pass 2, in the same order */
    at = 0;
    json_object_foreach(L->tasks, k, v) flow__ld_load_task(L, k, v, made[at++]);
    flow__free(made);

    x = flow__ld_member(L, root, "connect");
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
flow *flow__ld_load(const char *text, size_t len, const char *file, const char *dir,
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
        flow__ld_check_output_refs(&L);
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
    flow__ld_output_refs_free(&L);
    flow__ld_policy_cleanup(&L.defaults);
    flow__yaml_free(L.doc);
    return f;
}

flow *flow_load_string(const char *text, size_t len, const char *name_for_errors, flow_diags *diags,
                       flow_error *err)
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
    flow *f = flow__ld_load(text, len, name_for_errors, NULL, NULL, &tree, diags, err);
    tree_cleanup(&tree);
    return f;
}

/* The absolute directory of `path`; NULL when out of memory. */
char *flow__ld_base_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir =
        slash ? flow__strndup(path, slash == path ? 1 : (size_t)(slash - path)) : flow__strdup(".");
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

flow_err flow__ld_read_file(const char *path, struct flow__buf *b, flow_error *err)
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
    if (flow__ld_read_file(path, &b, &e)) {
        flow__buf_cleanup(&b);
        goto out_error;
    }
    char *dir = flow__ld_base_dir(path);
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
    flow *f = flow__ld_load(b.data ? b.data : "", b.len, path, dir, canon, &tree, diags, err);
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
