/* load_task.c -- one task of a file: its triggers (after, after_any,
 * optional, when, on, start, entry, router, foreach), its body (run, shell,
 * flow, feedback, noop) and its I/O (input, output, save). */
#include "util/compat.h"

#include <stdio.h>
#include <string.h>

#include "def/load_int.h"
#include "def/template.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/json.h"

static const char *const body_keys[] = {"run",  "shell", "flow", "feedback", "noop",
                                        "fn",   "http",  "llm",  "prompt"};

/* Tasks                                                                    */

/* The words a string-or-list key uses in its messages. */
struct name_words {
    const char *one;  /* "a task name" */
    const char *many; /* "a list of task names" */
    const char *verb; /* "name tasks": "... must name tasks: item 2 is empty" */
};

/* Walk a string or a list of non-empty strings, reporting what is not one,
 * and call `fn` for each good name. */
static void
for_each_name(struct loader *L, const struct val *x, const char *what, const struct name_words *w,
              void (*fn)(struct loader *L, const struct val *it, const char *name, void *udata),
              void *udata)
{
    bool list = json_is_array(x->v);
    if (!list && !json_is_string(x->v)) {
        flow__ld_report(L, x->pos, "%s must be %s or %s, not %s", what, w->one, w->many,
                        flow__ld_type_name(x->v));
        return;
    }
    size_t n = list ? json_array_size(x->v) : 1;
    for (size_t i = 0; i < n; i++) {
        struct val it = list ? flow__ld_item(L, x->v, i) : *x;
        if (!json_is_string(it.v) || !*json_string_value(it.v)) {
            flow__ld_report(L, it.pos, "%s must %s: item %zu is %s", what, w->verb, i + 1,
                            json_is_string(it.v) ? "empty" : flow__ld_type_name(it.v));
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
    /* Tasks of the flow come from the file's: one lookup is enough when the name is one. */
    flow_task *dep = L->f ? flow_find_task(L->f, name) : NULL;
    if (!dep && !json_object_get(L->tasks, name)) {
        flow__ld_unknown_task(L, it->pos, name, c->what);
        return;
    }
    if (!c->t || !dep)
        return;
    flow_err rc = strcmp(c->key, "after") == 0       ? flow_task_after(c->t, dep)
                  : strcmp(c->key, "after_any") == 0 ? flow_task_after_any(c->t, dep)
                                                     : flow_task_optional(c->t, dep);
    if (rc)
        flow__ld_core_failed(L, it->pos, rc, NULL, c->what);
}

/* Task names in a string or a list: after, after_any, optional. */
static void parse_deps(struct loader *L, flow_task *t, const char *key, const struct val *x,
                       const char *what)
{
    static const struct name_words words = {"a task name", "a list of task names", "name tasks"};
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
            flow__ld_report(L, x->pos, "%s: a condition names a task or a label, not ''", what);
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
        flow__ld_report(L, x->pos,
                        "%s must be a task or label name, {and: [...]} or {or: [...]}, not %s",
                        what, json_is_object(x->v) ? "this mapping" : flow__ld_type_name(x->v));
        return NULL;
    }
    struct val list = flow__ld_member(L, x->v, op);
    if (!json_is_array(list.v) || json_array_size(list.v) == 0) {
        flow__ld_report(L, list.pos, "'%s' in %s must be a non-empty list of conditions, not %s",
                        op, what,
                        json_is_array(list.v) ? "an empty list" : flow__ld_type_name(list.v));
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
        struct val it = flow__ld_item(L, list.v, i);
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
        flow__ld_core_failed(L, it->pos, rc, NULL, c->what);
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
        flow__ld_report(c->L, c->pos, "%s must give a list, but '%s' is always a string or null",
                        c->what, c->text);
        return 1;
    }
    return 0;
}

/* `foreach`: a template that renders to a list, or a list (of templates). */
static bool parse_foreach(struct loader *L, const struct val *x, const char *what)
{
    if (!json_is_string(x->v) && !json_is_array(x->v)) {
        flow__ld_report(
            L, x->pos,
            "%s must be a template that gives a list (like \"{{ inputs.files }}\") or a "
            "list, not %s",
            what, flow__ld_type_name(x->v));
        return false;
    }
    L->item_scope = ITEM_LIST;
    bool ok = flow__ld_check_template_value(L, x, what);
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
            flow__ld_report(L, x->pos, "bad template in %s: %s", what, e.message);
        return false;
    }
    if (!flow__tmpl_is_whole(t)) {
        flow__ld_report(L, x->pos,
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
    const char *path;        /* flow: the file as written */
    flow_feedback fb;        /* feedback: strings borrowed from the document */
    const char **fb_options; /* owned array */
    const char **fb_notify;  /* owned array, NULL-terminated */
    size_t fb_notify_count;
    struct prompt_spec *prompt; /* prompt: owned until applied */
    struct http_spec *http;  /* http: owned until applied */
    struct llm_spec *llm;    /* llm: owned until applied */
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
    flow__prompt_spec_free(b->prompt);
    b->prompt = NULL;
    b->fb_options = NULL;
    b->fb_notify = NULL;
    flow__http_spec_free(b->http);
    flow__llm_spec_free(b->llm);
    b->http = NULL;
    b->llm = NULL;
}

static const char *const feedback_keys[] = {"type",    "message",     "options", "timeout",
                                            "default", "channel_key", "request", "notify"};

/* A list of strings into a new array (borrowed strings); false after a
 * report. */
static bool string_list(struct loader *L, const struct val *x, const char *what, const char ***out,
                        size_t *count, bool null_end)
{
    if (!json_is_array(x->v) || json_array_size(x->v) == 0) {
        flow__ld_report(L, x->pos, "%s must be a non-empty list of strings, not %s", what,
                        flow__ld_type_name(x->v));
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
        struct val it = flow__ld_item(L, x->v, i);
        if (!json_is_string(it.v)) {
            flow__ld_report(L, it.pos, "item %zu of %s must be a string, not %s", i + 1, what,
                            flow__ld_type_name(it.v));
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
static void parse_feedback(struct loader *L, const struct val *x, const char *what, struct body *b)
{
    if (!json_is_object(x->v)) {
        flow__ld_report(L, x->pos,
                        "%s must be a mapping {type: approval|text|selection, message: ...}, "
                        "not %s",
                        what, flow__ld_type_name(x->v));
        return;
    }
    bool ok = flow__ld_known_keys(L, x, feedback_keys, FLOW__ARRAY_LEN(feedback_keys), what);
    char kwhat[320];
    memset(&b->fb, 0, sizeof(b->fb));
    struct val y = flow__ld_member(L, x->v, "type");
    const char *type = "approval";
    snprintf(kwhat, sizeof(kwhat), "'type' in %s", what);
    if (y.v && !flow__ld_get_string(L, &y, kwhat, true, &type))
        ok = false;
    if (!strcmp(type, "approval"))
        b->fb.type = FLOW_FEEDBACK_APPROVAL;
    else if (!strcmp(type, "text"))
        b->fb.type = FLOW_FEEDBACK_TEXT;
    else if (!strcmp(type, "selection"))
        b->fb.type = FLOW_FEEDBACK_SELECTION;
    else {
        flow__ld_report(L, y.pos, "%s is approval, text or selection, not '%s'", kwhat, type);
        ok = false;
    }
    y = flow__ld_member(L, x->v, "message");
    snprintf(kwhat, sizeof(kwhat), "'message' in %s", what);
    if (y.v && (!flow__ld_get_string(L, &y, kwhat, false, &b->fb.message) ||
                !flow__ld_check_template(L, b->fb.message, y.pos, kwhat)))
        ok = false;
    y = flow__ld_member(L, x->v, "options");
    snprintf(kwhat, sizeof(kwhat), "'options' in %s", what);
    if (y.v && !string_list(L, &y, kwhat, &b->fb_options, &b->fb.option_count, false))
        ok = false;
    b->fb.options = b->fb_options;
    if (b->fb.type == FLOW_FEEDBACK_SELECTION && !y.v) {
        flow__ld_report(L, x->pos, "%s is a selection: it needs 'options'", what);
        ok = false;
    } else if (b->fb.type != FLOW_FEEDBACK_SELECTION && y.v) {
        flow__ld_report(L, y.pos, "%s: only a selection has 'options'", what);
        ok = false;
    }
    y = flow__ld_member(L, x->v, "timeout");
    snprintf(kwhat, sizeof(kwhat), "'timeout' in %s", what);
    if (y.v && !flow__ld_get_duration(L, &y, kwhat, &b->fb.timeout))
        ok = false;
    y = flow__ld_member(L, x->v, "default");
    if (y.v) {
        if (!flow__ld_member(L, x->v, "timeout").v) {
            flow__ld_report(L, y.pos,
                            "'default' in %s is taken when the timeout runs out: it needs "
                            "'timeout'",
                            what);
            ok = false;
        }
        /* Checked here, where it is written, against the options given */
        json_t *options = json_array(), *answer = NULL;
        for (size_t i = 0; options && i < b->fb.option_count; i++)
            json_array_append_new(options, json_string(b->fb.options[i]));
        char *bad = options ? flow__feedback_check(b->fb.type, options, y.v, NULL, 0, &answer)
                            : NULL;
        json_decref(answer);
        json_decref(options);
        if (!options) {
            L->nomem = true;
        } else if (bad) {
            flow__ld_report(L, y.pos, "'default' in %s: %s", what, bad);
            ok = false;
        }
        flow__free(bad);
        b->fb.default_answer = y.v;
    }
    y = flow__ld_member(L, x->v, "channel_key");
    snprintf(kwhat, sizeof(kwhat), "'channel_key' in %s", what);
    if (y.v && !flow__ld_get_string(L, &y, kwhat, true, &b->fb.channel_key))
        ok = false;
    y = flow__ld_member(L, x->v, "request");
    snprintf(kwhat, sizeof(kwhat), "'request' in %s", what);
    if (y.v && !flow__ld_get_string(L, &y, kwhat, true, &b->fb.id))
        ok = false;
    y = flow__ld_member(L, x->v, "notify");
    snprintf(kwhat, sizeof(kwhat), "'notify' in %s", what);
    if (y.v && !string_list(L, &y, kwhat, &b->fb_notify, &b->fb_notify_count, true))
        ok = false;
    b->ok = ok;
}

static void parse_run(struct loader *L, const struct val *x, const char *what, struct body *b)
{
    if (json_is_string(x->v)) {
        flow__ld_report(
            L, x->pos,
            "%s must be a list (the argv; no shell is involved), not a string: use 'shell' "
            "for a command line",
            what);
        return;
    }
    if (!json_is_array(x->v) || json_array_size(x->v) == 0) {
        flow__ld_report(L, x->pos, "%s must be a non-empty list of strings, not %s", what,
                        json_is_array(x->v) ? "an empty list" : flow__ld_type_name(x->v));
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
        struct val it = flow__ld_item(L, x->v, i);
        char buf[64];
        const char *s = flow__ld_scalar_text(&it, buf, sizeof(buf));
        if (!s) {
            flow__ld_report(L, it.pos, "item %zu of %s must be a string, not %s", i + 1, what,
                            flow__ld_type_name(it.v));
            ok = false;
            continue;
        }
        if (i == 0 && !*s) {
            flow__ld_report(L, it.pos, "the program (item 1 of %s) is empty", what);
            ok = false;
            continue;
        }
        if (!flow__ld_check_template(L, s, it.pos, what)) {
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

/* `flow`: a workflow file, relative to this one. */
static void parse_flow(struct loader *L, const struct val *x, const char *what, struct body *b)
{
    const char *s = NULL;
    if (json_is_object(x->v)) {
        flow__ld_report(
            L, x->pos,
            "%s must be the name of a workflow file (relative to this file), not a mapping", what);
        return;
    }
    if (!flow__ld_get_string(L, x, what, true, &s))
        return;
    if (strstr(s, "{{")) {
        flow__ld_report(
            L, x->pos,
            "%s is a file name, read when the workflow is loaded: it cannot hold a template "
            "('%s')",
            what, s);
        return;
    }
    b->path = s;
    b->ok = true;
}

static void apply_body(struct loader *L, flow_task *t, struct body *b, const char *name)
{
    flow_error e;
    flow__error_clear(&e);
    flow_err rc = FLOW_OK;
    char what[200];
    flow__ld_concat(what, sizeof(what), "'", b->key, "' of task '", name, "'", (char *)NULL);
    if (strcmp(b->key, "run") == 0) {
        rc = flow_task_set_command(t, (const char *const *)b->argv, &e);
    } else if (strcmp(b->key, "shell") == 0) {
        rc = flow_task_set_shell(t, b->shell, &e);
    } else if (strcmp(b->key, "noop") == 0) {
        rc = flow_task_set_noop(t);
    } else if (strcmp(b->key, "fn") == 0) {
        rc = flow_task_set_remote_fn(t, b->shell);
    } else if (strcmp(b->key, "flow") == 0) {
        flow *child = flow__ld_load_nested(L, b->path, b->pos, name);
        if (child)
            rc = flow_task_set_subflow(t, child);
    } else if (strcmp(b->key, "prompt") == 0) {
        rc = flow__task_take_prompt(t, b->prompt);
        b->prompt = NULL;
    } else if (strcmp(b->key, "feedback") == 0) {
        rc = flow_task_set_feedback(t, &b->fb, &e);
        if (!rc && b->fb_notify)
            rc = flow__task_set_feedback_notify(t, b->fb_notify, b->fb_notify_count);
    } else if (strcmp(b->key, "http") == 0) {
        rc = flow__task_take_http(t, b->http);
        b->http = NULL;
    } else if (strcmp(b->key, "llm") == 0) {
        rc = flow__task_take_llm(t, b->llm);
        b->llm = NULL;
    }
    if (rc)
        flow__ld_core_failed(L, b->pos, rc, &e, what);
}

void flow__ld_load_task(struct loader *L, const char *name, json_t *value, flow_task *t)
{
    struct flow__yaml_pos key_pos;
    struct val def = flow__ld_member_at(L, L->tasks, name, value, &key_pos);
    if (json_is_null(def.v))
        return; /* `name:` alone: a no-op start task */
    if (!json_is_object(def.v)) {
        flow__ld_report(L, def.pos,
                        "task '%s' must be a mapping (run, after, retries, ...), not %s", name,
                        flow__ld_type_name(def.v));
        return;
    }
    char owner[160];
    flow__ld_concat(owner, sizeof(owner), " of task '", name, "'", (char *)NULL);
    struct policy p = {0};
    struct body body = {0};
    struct body extra = {0}; /* a second body, reported */
    bool has_foreach = json_object_get(def.v, "foreach") != NULL;
    bool foreach_ok = false;
    int concurrency = 0;
    struct flow__yaml_pos concurrency_pos = {0, 0};
    const char *cache_key = NULL;
    double cache_ttl = 0;
    struct flow__yaml_pos cache_pos = {0, 0};
    L->item_scope = has_foreach ? ITEM_SET : ITEM_UNSET;
    L->cur_task = name;
    size_t errors_before = flow__ld_error_count(L);
    const char *k;
    json_t *v;
    json_object_foreach(def.v, k, v)
    {
        struct flow__yaml_pos kpos;
        struct val x = flow__ld_member_at(L, def.v, k, v, &kpos);
        char what[240];
        flow__ld_concat(what, sizeof(what), "'", k, "'", owner, (char *)NULL);
        bool noop = strcmp(k, "noop") == 0;
        if (noop && !json_is_boolean(x.v)) {
            flow__ld_report(L, x.pos, "%s must be true or false, not %s", what,
                            flow__ld_type_name(x.v));
            continue;
        }
        if (IN(k, body_keys) && !(noop && json_is_false(x.v))) {
            struct body *slot = body.key ? &extra : &body;
            if (slot == &extra && extra.key) {
                flow__ld_report(L, kpos,
                                "task '%s' has more than two bodies: give exactly one of run, "
                                "shell, flow, feedback, prompt, fn, http, llm or noop",
                                name);
                continue;
            }
            slot->key = k;
            slot->pos = kpos;
            if (slot == &extra)
                flow__ld_report(
                    L, kpos,
                    "task '%s' has two bodies ('%s' and '%s'): give exactly one of run, "
                    "shell, flow, feedback, prompt, fn, http, llm or noop",
                    name, body.key, k);
        }
        const struct unsupported *u = flow__ld_find_unsupported(SCOPE_TASK, k, NULL);
        if (u) {
            if (u->message)
                flow__ld_report(L, kpos, "%s in task '%s'", u->message, name);
            else
                flow__ld_report(L, kpos, "'%s' is not supported yet in task '%s'", k, name);
            continue;
        }
        if (flow__ld_parse_policy_key(L, k, &x, owner, false, name, &p))
            continue;
        bool flag = false;
        if (strcmp(k, "run") == 0) {
            struct body *slot = body.key == k ? &body : &extra;
            parse_run(L, &x, what, slot);
        } else if (strcmp(k, "shell") == 0) {
            struct body *slot = body.key == k ? &body : &extra;
            const char *s = NULL;
            if (flow__ld_get_string(L, &x, what, true, &s) &&
                flow__ld_check_shell(L, s, x.pos, what)) {
                slot->shell = s;
                slot->ok = true;
            }
        } else if (strcmp(k, "fn") == 0) {
            struct body *slot = body.key == k ? &body : &extra;
            const char *s = NULL;
            if (flow__ld_get_string(L, &x, what, true, &s)) {
                if (flow__ld_check_worker_name(L, s, x.pos, what)) {
                    slot->shell = s; /* the function's name */
                    slot->ok = true;
                }
            }
        } else if (strcmp(k, "flow") == 0) {
            parse_flow(L, &x, what, body.key == k ? &body : &extra);
        } else if (strcmp(k, "feedback") == 0) {
            parse_feedback(L, &x, what, body.key == k ? &body : &extra);
        } else if (strcmp(k, "prompt") == 0) {
            struct body *slot = body.key == k ? &body : &extra;
            slot->prompt = flow__ld_parse_prompt(L, &x, what);
            slot->ok = slot->prompt != NULL;
        } else if (strcmp(k, "http") == 0) {
            struct body *slot = body.key == k ? &body : &extra;
            slot->http = flow__ld_parse_http(L, &x, what);
            slot->ok = slot->http != NULL;
        } else if (strcmp(k, "llm") == 0) {
            struct body *slot = body.key == k ? &body : &extra;
            slot->llm = flow__ld_parse_llm(L, &x, what);
            slot->ok = slot->llm != NULL;
        } else if (noop) {
            if (body.key == k)
                body.ok = true;
        } else if (strcmp(k, "foreach") == 0) {
            foreach_ok = parse_foreach(L, &x, what);
        } else if (strcmp(k, "concurrency") == 0 && json_is_object(x.v)) {
            flow__ld_parse_task_concurrency(L, t, &x, what);
        } else if (strcmp(k, "concurrency") == 0) {
            concurrency_pos = kpos;
            if (!flow__ld_get_int(L, &x, what, 1, "a positive integer", &concurrency))
                concurrency = -1;
        } else if (strcmp(k, "rate_limit") == 0) {
            flow__ld_parse_rate_limit(L, t, &x, what);
        } else if (strcmp(k, "cache") == 0) {
            if (flow__ld_parse_cache(L, &x, what, &cache_key, &cache_ttl))
                cache_pos = kpos;
        } else if (strcmp(k, "resources") == 0) {
            flow__ld_parse_resources(L, t, &x, what);
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
                flow__ld_core_failed(L, x.pos, rc, NULL, what);
        } else if (strcmp(k, "on") == 0) {
            parse_on(L, t, &x, what, name);
        } else if (strcmp(k, "start") == 0 || strcmp(k, "entry") == 0 || strcmp(k, "router") == 0) {
            if (!flow__ld_get_bool(L, &x, what, &flag))
                continue;
            if (k[0] == 'r' && flag)
                L->has_router = true;
            if (t) {
                flow_err rc = k[0] == 's'   ? flow_task_set_start(t, flag)
                              : k[0] == 'e' ? flow_task_set_entry(t, flag)
                                            : flow_task_set_router(t, flag);
                if (rc)
                    flow__ld_core_failed(L, x.pos, rc, NULL, what);
            }
        } else if (strcmp(k, "input") == 0) {
            if (flow__ld_check_template_value(L, &x, what) && t) {
                flow_error e;
                flow__error_clear(&e);
                flow_err rc = flow_task_set_input(t, x.v, &e);
                if (rc)
                    flow__ld_core_failed(L, x.pos, rc, &e, what);
            }
        } else if (strcmp(k, "save") == 0) {
            const char *s = NULL;
            if (flow__ld_get_string(L, &x, what, true, &s) && t) {
                flow_err rc = flow_task_set_save(t, s);
                if (rc)
                    flow__ld_core_failed(L, x.pos, rc, NULL, what);
            }
        } else if (strcmp(k, "description") == 0) {
            const char *s = NULL;
            flow__ld_get_string(L, &x, what, false, &s);
        } else {
            char hint[80];
            flow__ld_suggestion(hint, sizeof(hint), flow__ld_closest_task_key(k));
            flow__ld_report(L, kpos, "unknown key '%s' in task '%s'%s", k, name, hint);
        }
    }
    L->item_scope = ITEM_UNSET;
    L->cur_task = NULL;
    if (flow__ld_error_count(L) > errors_before) {
        flow_err rc = FLOW_OK;
        FLOW__VEC_PUSH(&L->broken_tasks, name, rc);
        if (rc)
            L->nomem = true;
    }
    if (concurrency_pos.line && !has_foreach)
        flow__ld_report(L, concurrency_pos,
                        "'concurrency' needs 'foreach' in task '%s' (a number bounds how many "
                        "of the activations 'foreach' makes run at once; across runs, write "
                        "{limit: N, key: TEMPLATE})",
                        name);
    if (t && foreach_ok && concurrency >= 0) {
        struct val x = flow__ld_member(L, def.v, "foreach");
        flow_error e;
        flow__error_clear(&e);
        flow_err rc = flow_task_set_foreach(t, x.v, concurrency, &e);
        if (rc) {
            char what[200];
            snprintf(what, sizeof(what), "'foreach'%s", owner);
            flow__ld_core_failed(L, x.pos, rc, &e, what);
        }
    }
    if (cache_pos.line) {
        /* What a run computes can be kept; a no-op computes nothing, and a
         * person's answer is asked each time. */
        bool noop = !body.key || strcmp(body.key, "noop") == 0;
        if (noop || strcmp(body.key, "feedback") == 0) {
            flow__ld_report(L, cache_pos,
                            "'cache' needs a body that computes the output in task '%s' (%s)",
                            name,
                            noop ? "a no-op has nothing to keep"
                                 : "a feedback question asks a person each time");
        } else if (t) {
            flow_error e;
            flow__error_clear(&e);
            flow_err rc = flow_task_set_cache(t, cache_key, cache_ttl, &e);
            if (rc) {
                char what[200];
                snprintf(what, sizeof(what), "'cache'%s", owner);
                flow__ld_core_failed(L, cache_pos, rc, &e, what);
            }
        }
    }
    bool is_command = body.key && (strcmp(body.key, "run") == 0 || strcmp(body.key, "shell") == 0);
    if (t && body.key && body.ok && !extra.key)
        apply_body(L, t, &body, name);
    if (t)
        flow__ld_apply_policy(L, t, &p, is_command, def.pos);
    body_cleanup(&body);
    body_cleanup(&extra);
    flow__ld_policy_cleanup(&p);
}
