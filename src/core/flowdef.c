/* flowdef.c -- building flow definitions through the public API: tasks,
 * bodies, triggers, policies, I/O. Compilation and checks are in graph.c. */
#include "util/compat.h"

#include "core/flowdef.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/alloc.h"
#include "util/error.h"

static const struct task_policy default_policy = {
    .timeout = 0,
    .kill_grace = 5,
    .backoff = {.delay = 1, .factor = 2, .max_delay = 300, .jitter = false},
    .retries = 0,
    .priority = 0,
    .max_activations = 1000,
    .on_error = FLOW_ON_ERROR_FAIL,
    .executor = FLOW_EXEC_DEFAULT,
    .output_mode = FLOW_OUTPUT_AUTO,
    .output_limit = (size_t)16 << 20,
};

static const char *name_of_task(const void *table, uint32_t index)
{
    const struct flow *f = table;
    return f->tasks.items[index]->name;
}

flow *flow_new(const char *name, flow_error *err)
{
    if (!name || !*name) {
        flow__error(err, FLOW_EINVAL, "a flow needs a name");
        return NULL;
    }
    flow *f = flow__calloc(1, sizeof(*f));
    if (!f)
        goto out_nomem;
    atomic_init(&f->refs, 1);
    flow__arena_init(&f->arena, 64 * 1024);
    flow__nameidx_init(&f->by_name);
    flow__strmap_init(&f->label_by_name);
    f->defaults = default_policy;
    f->name = flow__strdup(name);
    f->initial_state = json_object();
    if (!f->name || !f->initial_state)
        goto out_nomem;
    return f;
out_nomem:
    flow_free(f);
    flow__error(err, FLOW_ENOMEM, "out of memory creating flow '%s'", name);
    return NULL;
}

void flow__ref(struct flow *f)
{
    atomic_fetch_add(&f->refs, 1);
}

static void cond_free(struct flow_cond *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->count; i++)
        cond_free(c->kids[i]);
    flow__free(c->kids);
    flow__free(c->name);
    flow__free(c);
}

void flow_cond_free(flow_cond *c)
{
    cond_free(c);
}

static void ext_free(struct task_ext *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->argc; i++) {
        flow__tmpl_free(x->argv[i]);
        flow__free(x->argv_src[i]);
    }
    flow__free(x->argv);
    flow__free(x->argv_src);
    flow__tmpl_free(x->shell);
    flow__free(x->shell_src);
    flow__tmpl_free(x->input);
    for (size_t i = 0; i < x->env.count; i++) {
        flow__free(x->env.items[i].name);
        flow__tmpl_free(x->env.items[i].value);
    }
    FLOW__VEC_FREE(&x->env);
    flow__tmpl_free(x->cwd);
    flow__free(x->save);
    cond_free(x->when);
    for (size_t i = 0; i < x->on.count; i++)
        flow__free(x->on.items[i]);
    FLOW__VEC_FREE(&x->on);
    flow__free(x);
}

void flow__graph_reset(struct flow *f); /* graph.c */

void flow_free(flow *f)
{
    if (!f || atomic_fetch_sub(&f->refs, 1) > 1)
        return;
    flow__graph_reset(f);
    for (size_t i = 0; i < f->tasks.count; i++) {
        struct flow_task *t = f->tasks.items[i];
        ext_free(t->ext);
        if (t->policy != &f->defaults)
            flow__free((void *)t->policy);
    }
    FLOW__VEC_FREE(&f->tasks);
    FLOW__VEC_FREE(&f->edges);
    flow__nameidx_cleanup(&f->by_name);
    flow__strmap_cleanup(&f->label_by_name);
    flow__arena_cleanup(&f->arena);
    json_decref(f->initial_state);
    flow__tmpl_free(f->result);
    json_decref(f->result_src);
    flow__free(f->name);
    flow__free(f->description);
    flow__free(f->version);
    flow__free(f);
}

const char *flow_name(const flow *f)
{
    return f->name;
}

static flow_err check_mutable(const struct flow *f)
{
    return f->frozen ? FLOW_ESTATE : FLOW_OK;
}

/* Every change to a flow goes through here: refused once frozen, and marks
 * the compiled graph stale. */
#define MUTATE(f)                                                              \
    do {                                                                       \
        if (check_mutable(f))                                                  \
            return FLOW_ESTATE;                                                \
        (f)->dirty = true;                                                     \
    } while (0)

static flow_err set_string(struct flow *f, char **slot, const char *value)
{
    MUTATE(f);
    char *copy = NULL;
    if (value && !(copy = flow__strdup(value)))
        return FLOW_ENOMEM;
    flow__free(*slot);
    *slot = copy;
    return FLOW_OK;
}

flow_err flow_set_description(flow *f, const char *d)
{
    return set_string(f, &f->description, d);
}

const char *flow_description(const flow *f)
{
    return f->description;
}

flow_err flow_set_version(flow *f, const char *v)
{
    return set_string(f, &f->version, v);
}

const char *flow_get_version(const flow *f)
{
    return f->version;
}

flow_err flow_set_initial_state(flow *f, json_t *state)
{
    MUTATE(f);
    if (!json_is_object(state))
        return FLOW_EINVAL;
    json_t *copy = json_deep_copy(state);
    if (!copy)
        return FLOW_ENOMEM;
    json_decref(f->initial_state);
    f->initial_state = copy;
    return FLOW_OK;
}

flow_err flow_set_result_template(flow *f, json_t *tmpl, flow_error *err)
{
    MUTATE(f);
    struct flow__tmpl *t = NULL;
    if (tmpl) {
        flow_err rc = flow__tmpl_compile(tmpl, &t, err);
        if (rc)
            return rc;
    }
    flow__tmpl_free(f->result);
    json_decref(f->result_src);
    f->result = t;
    f->result_src = tmpl ? json_incref(tmpl) : NULL;
    return FLOW_OK;
}

static bool valid_task_name(const char *name)
{
    if (!name || !(isalpha((unsigned char)*name) || *name == '_'))
        return false;
    for (const char *p = name + 1; *p; p++) {
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-'))
            return false;
    }
    return true;
}

flow_task *flow_add_task(flow *f, const char *name, flow_error *err)
{
    if (f->frozen) {
        flow__error(err, FLOW_ESTATE, "flow '%s' is running: tasks cannot be added", f->name);
        return NULL;
    }
    if (!valid_task_name(name)) {
        flow__error(err, FLOW_EINVAL,
                    "invalid task name '%s' (use letters, digits, '_' and '-', "
                    "starting with a letter or '_')",
                    name ? name : "");
        return NULL;
    }
    if (f->tasks.count >= UINT32_MAX - 1) {
        flow__error(err, FLOW_ELIMIT, "too many tasks in flow '%s'", f->name);
        return NULL;
    }
    /* Allocate everything first, so that adding to the index is the last
     * step that can fail (an arena block lost on failure is harmless). */
    uint32_t index = (uint32_t)f->tasks.count;
    flow_err rc = FLOW_OK;
    FLOW__VEC_RESERVE(&f->tasks, f->tasks.count + 1, rc);
    struct flow_task *t = rc ? NULL : flow__arena_alloc(&f->arena, sizeof(*t));
    const char *copy = t ? flow__arena_strdup(&f->arena, name) : NULL;
    if (!copy) {
        flow__error(err, FLOW_ENOMEM, "out of memory adding task '%s'", name);
        return NULL;
    }
    t->name = copy;
    f->tasks.items[index] = t; /* visible to name_of_task while adding */
    rc = flow__nameidx_add(&f->by_name, copy, index, name_of_task, f, NULL);
    if (rc == FLOW_EEXISTS) {
        flow__error(err, FLOW_EEXISTS, "duplicate task '%s'", name);
        return NULL;
    }
    if (rc) {
        flow__error(err, FLOW_ENOMEM, "out of memory adding task '%s'", name);
        return NULL;
    }
    f->tasks.count++;
    t->flow = f;
    t->index = index;
    t->kind = TASK_NOOP;
    t->start = -1;
    t->policy = &f->defaults;
    f->dirty = true;
    return t;
}

flow_task *flow_find_task(const flow *f, const char *name)
{
    int64_t i = name ? flow__nameidx_find(&f->by_name, name, name_of_task, f) : -1;
    return i >= 0 ? f->tasks.items[i] : NULL;
}

size_t flow_task_count(const flow *f)
{
    return f->tasks.count;
}

flow_task *flow_task_at(const flow *f, size_t i)
{
    return i < f->tasks.count ? f->tasks.items[i] : NULL;
}

const char *flow_task_name(const flow_task *t)
{
    return t->name;
}

static struct task_ext *ext_of(struct flow_task *t)
{
    if (!t->ext)
        t->ext = flow__calloc(1, sizeof(*t->ext));
    return t->ext;
}

void flow__task_set_origin(flow_task *t, const char *file, int line, int column)
{
    struct task_ext *x = ext_of(t);
    if (!x)
        return;
    x->origin_file = file ? flow__arena_strdup(&t->flow->arena, file) : NULL;
    x->origin_line = line;
    x->origin_column = column;
}

void flow__task_where(const flow_task *t, char *buf, size_t len)
{
    const struct task_ext *x = t->ext;
    if (x && x->origin_file && x->origin_line)
        snprintf(buf, len, " (%s:%d:%d)", x->origin_file, x->origin_line, x->origin_column);
    else if (x && x->origin_file)
        snprintf(buf, len, " (%s)", x->origin_file);
    else if (len)
        buf[0] = '\0';
}

/* Forget the body a task had, before it gets a new one. */
static void clear_body(struct flow_task *t)
{
    struct task_ext *x = t->ext;
    if (x) {
        for (size_t i = 0; i < x->argc; i++) {
            flow__tmpl_free(x->argv[i]);
            flow__free(x->argv_src[i]);
        }
        flow__free(x->argv);
        flow__free(x->argv_src);
        x->argv = NULL;
        x->argv_src = NULL;
        x->argc = 0;
        flow__tmpl_free(x->shell);
        flow__free(x->shell_src);
        x->shell = NULL;
        x->shell_src = NULL;
    }
    t->fn = NULL;
    t->udata = NULL;
    t->kind = TASK_NOOP;
}

flow_err flow_task_set_fn(flow_task *t, flow_task_fn fn, void *udata)
{
    MUTATE(t->flow);
    if (!fn)
        return FLOW_EINVAL;
    clear_body(t);
    t->kind = TASK_FN;
    t->fn = fn;
    t->udata = udata;
    return FLOW_OK;
}

flow_err flow_task_set_command(flow_task *t, const char *const *argv, flow_error *err)
{
    MUTATE(t->flow);
    if (!argv || !argv[0] || !argv[0][0])
        return flow__error(err, FLOW_EINVAL, "task '%s': a command needs a program name",
                           t->name);
    struct task_ext *x = ext_of(t);
    if (!x)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    size_t argc = 0;
    while (argv[argc])
        argc++;
    struct flow__tmpl **tmpls = flow__calloc(argc, sizeof(*tmpls));
    char **srcs = flow__calloc(argc, sizeof(*srcs));
    flow_err rc = (tmpls && srcs) ? FLOW_OK : FLOW_ENOMEM;
    for (size_t i = 0; i < argc && rc == FLOW_OK; i++) {
        rc = flow__tmpl_compile_string(argv[i], &tmpls[i], err);
        if (rc == FLOW_OK && !(srcs[i] = flow__strdup(argv[i])))
            rc = FLOW_ENOMEM;
    }
    if (rc) {
        for (size_t i = 0; tmpls && srcs && i < argc; i++) {
            flow__tmpl_free(tmpls[i]);
            flow__free(srcs[i]);
        }
        flow__free(tmpls);
        flow__free(srcs);
        return rc == FLOW_ENOMEM ? flow__error(err, rc, "out of memory") : rc;
    }
    clear_body(t);
    t->kind = TASK_COMMAND;
    x->argv = tmpls;
    x->argv_src = srcs;
    x->argc = argc;
    return FLOW_OK;
}

flow_err flow_task_set_shell(flow_task *t, const char *script, flow_error *err)
{
    MUTATE(t->flow);
    if (!script)
        return flow__error(err, FLOW_EINVAL, "task '%s': empty shell script", t->name);
    struct task_ext *x = ext_of(t);
    if (!x)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    struct flow__tmpl *tmpl = NULL;
    flow_err rc = flow__tmpl_compile_string(script, &tmpl, err);
    if (rc)
        return rc;
    char *src = flow__strdup(script);
    if (!src) {
        flow__tmpl_free(tmpl);
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    clear_body(t);
    t->kind = TASK_SHELL;
    x->shell = tmpl;
    x->shell_src = src;
    return FLOW_OK;
}

flow_err flow_task_set_noop(flow_task *t)
{
    MUTATE(t->flow);
    clear_body(t);
    return FLOW_OK;
}

static flow_err add_edge(struct flow_task *t, struct flow_task *dep, enum edge_kind kind)
{
    MUTATE(t->flow);
    if (!dep || dep->flow != t->flow)
        return FLOW_EINVAL;
    struct flow_edge e = {.task = t->index, .dep = dep->index, .kind = (uint8_t)kind};
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&t->flow->edges, e, rc);
    return rc;
}

flow_err flow_task_after(flow_task *t, flow_task *dep)
{
    return add_edge(t, dep, EDGE_AFTER);
}

flow_err flow_task_after_any(flow_task *t, flow_task *dep)
{
    return add_edge(t, dep, EDGE_AFTER_ANY);
}

flow_err flow_task_optional(flow_task *t, flow_task *dep)
{
    return add_edge(t, dep, EDGE_OPTIONAL);
}

static flow_cond *cond_leaf(int kind, const char *name)
{
    if (!name)
        return NULL;
    struct flow_cond *c = flow__calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->kind = kind;
    if (!(c->name = flow__strdup(name))) {
        flow__free(c);
        return NULL;
    }
    return c;
}

flow_cond *flow_cond_task(const char *task_name)
{
    return cond_leaf(COND_TASK, task_name);
}

flow_cond *flow_cond_label(const char *label)
{
    return cond_leaf(COND_LABEL, label);
}

/* Combinators take ownership of every argument, also on failure. */
static flow_cond *cond_combine(int kind, flow_cond *const *conds, size_t count)
{
    bool failed = false;
    for (size_t i = 0; i < count; i++)
        failed |= conds[i] == NULL;
    struct flow_cond *node = failed ? NULL : flow__calloc(1, sizeof(*node));
    struct flow_cond **kids = node && count ? flow__calloc(count, sizeof(*kids)) : NULL;
    if (!node || (count && !kids)) {
        for (size_t i = 0; i < count; i++)
            cond_free(conds[i]);
        flow__free(node);
        return NULL;
    }
    memcpy(kids, conds, count * sizeof(*kids));
    node->kind = kind;
    node->kids = kids;
    node->count = count;
    return node;
}

static flow_cond *cond_combine_va(int kind, size_t count, va_list ap)
{
    flow_cond *small[16] = {0};
    flow_cond **conds = count <= 16 ? small : flow__calloc(count, sizeof(*conds));
    for (size_t i = 0; i < count; i++) {
        flow_cond *c = va_arg(ap, flow_cond *);
        if (conds)
            conds[i] = c;
        else
            cond_free(c);
    }
    if (!conds)
        return NULL;
    flow_cond *node = cond_combine(kind, conds, count);
    if (conds != small)
        flow__free(conds);
    return node;
}

flow_cond *flow_cond_and(size_t count, ...)
{
    va_list ap;
    va_start(ap, count);
    flow_cond *c = cond_combine_va(COND_AND, count, ap);
    va_end(ap);
    return c;
}

flow_cond *flow_cond_or(size_t count, ...)
{
    va_list ap;
    va_start(ap, count);
    flow_cond *c = cond_combine_va(COND_OR, count, ap);
    va_end(ap);
    return c;
}

flow_cond *flow_cond_and_v(flow_cond *const *conds, size_t count)
{
    return cond_combine(COND_AND, conds, count);
}

flow_cond *flow_cond_or_v(flow_cond *const *conds, size_t count)
{
    return cond_combine(COND_OR, conds, count);
}

flow_err flow_task_when(flow_task *t, flow_cond *c)
{
    if (t->flow->frozen) {
        cond_free(c);
        return FLOW_ESTATE;
    }
    if (!c)
        return FLOW_EINVAL;
    struct task_ext *x = ext_of(t);
    if (!x) {
        cond_free(c);
        return FLOW_ENOMEM;
    }
    t->flow->dirty = true;
    cond_free(x->when);
    x->when = c;
    return FLOW_OK;
}

flow_err flow_task_on(flow_task *t, const char *label)
{
    MUTATE(t->flow);
    if (!label || !*label)
        return FLOW_EINVAL;
    struct task_ext *x = ext_of(t);
    char *copy = x ? flow__strdup(label) : NULL;
    if (!copy)
        return FLOW_ENOMEM;
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&x->on, copy, rc);
    if (rc) {
        flow__free(copy);
        return FLOW_ENOMEM;
    }
    return FLOW_OK;
}

flow_err flow_task_set_start(flow_task *t, bool start)
{
    MUTATE(t->flow);
    t->start = start ? 1 : 0;
    return FLOW_OK;
}

flow_err flow_task_set_entry(flow_task *t, bool entry)
{
    MUTATE(t->flow);
    t->entry = entry;
    return FLOW_OK;
}

flow_err flow_task_set_router(flow_task *t, bool router)
{
    MUTATE(t->flow);
    t->router = router;
    return FLOW_OK;
}

/* Copy on write: a task gets its own policy the first time it changes one. */
static struct task_policy *own_policy(struct flow_task *t)
{
    if (t->policy != &t->flow->defaults)
        return (struct task_policy *)t->policy;
    struct task_policy *p = flow__malloc(sizeof(*p));
    if (!p)
        return NULL;
    *p = *t->policy;
    t->policy = p;
    return p;
}

#define SET_POLICY(t, check, assign)                                           \
    do {                                                                       \
        MUTATE((t)->flow);                                                     \
        if (!(check))                                                          \
            return FLOW_EINVAL;                                                \
        struct task_policy *p = own_policy(t);                                 \
        if (!p)                                                                \
            return FLOW_ENOMEM;                                                \
        assign;                                                                \
        return FLOW_OK;                                                        \
    } while (0)

flow_err flow_task_set_timeout(flow_task *t, double seconds)
{
    SET_POLICY(t, seconds >= 0, p->timeout = seconds);
}

flow_err flow_task_set_retries(flow_task *t, int retries)
{
    SET_POLICY(t, retries >= 0, p->retries = retries);
}

flow_err flow_task_set_backoff(flow_task *t, const flow_backoff *b)
{
    SET_POLICY(t, b && b->delay >= 0 && b->factor >= 1 && b->max_delay >= 0, p->backoff = *b);
}

flow_err flow_task_set_on_error(flow_task *t, flow_on_error mode)
{
    SET_POLICY(t, mode >= FLOW_ON_ERROR_FAIL && mode <= FLOW_ON_ERROR_FALLBACK,
               p->on_error = mode);
}

flow_err flow_task_set_fallback(flow_task *t, flow_task *fallback)
{
    MUTATE(t->flow);
    if (!fallback || fallback->flow != t->flow || fallback == t)
        return FLOW_EINVAL;
    struct task_policy *p = own_policy(t);
    if (!p)
        return FLOW_ENOMEM;
    p->on_error = FLOW_ON_ERROR_FALLBACK;
    t->fallback = fallback;
    return FLOW_OK;
}

flow_err flow_task_set_executor(flow_task *t, flow_executor ex)
{
    SET_POLICY(t, ex >= FLOW_EXEC_DEFAULT && ex <= FLOW_EXEC_REMOTE, p->executor = ex);
}

flow_err flow_task_set_priority(flow_task *t, int priority)
{
    SET_POLICY(t, 1, p->priority = priority);
}

flow_err flow_task_set_max_activations(flow_task *t, int max)
{
    SET_POLICY(t, max >= 1, p->max_activations = max);
}

flow_err flow_task_set_kill_grace(flow_task *t, double seconds)
{
    SET_POLICY(t, seconds >= 0, p->kill_grace = seconds);
}

flow_err flow_task_set_output_mode(flow_task *t, flow_output_mode mode)
{
    SET_POLICY(t, mode >= FLOW_OUTPUT_AUTO && mode <= FLOW_OUTPUT_LINES, p->output_mode = mode);
}

flow_err flow_task_set_output_limit(flow_task *t, size_t bytes)
{
    SET_POLICY(t, bytes > 0, p->output_limit = bytes);
}

/* Replace *slot with a template compiled from `value` (NULL clears). */
static flow_err set_template(struct flow_task *t, struct flow__tmpl **slot, json_t *value,
                             flow_error *err)
{
    MUTATE(t->flow);
    struct flow__tmpl *tmpl = NULL;
    if (value) {
        flow_err rc = flow__tmpl_compile(value, &tmpl, err);
        if (rc)
            return rc;
    }
    flow__tmpl_free(*slot);
    *slot = tmpl;
    return FLOW_OK;
}

flow_err flow_task_set_input(flow_task *t, json_t *tmpl, flow_error *err)
{
    struct task_ext *x = ext_of(t);
    if (!x)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    return set_template(t, &x->input, tmpl, err);
}

flow_err flow_task_set_cwd(flow_task *t, const char *tmpl, flow_error *err)
{
    struct task_ext *x = ext_of(t);
    if (!x)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    json_t *s = tmpl ? json_string(tmpl) : NULL;
    if (tmpl && !s)
        return flow__error(err, FLOW_EINVAL, "task '%s': cwd is not valid UTF-8", t->name);
    flow_err rc = set_template(t, &x->cwd, s, err);
    json_decref(s);
    return rc;
}

flow_err flow_task_set_env(flow_task *t, const char *name, const char *tmpl, flow_error *err)
{
    MUTATE(t->flow);
    if (!name || !*name || strchr(name, '=') || !tmpl)
        return flow__error(err, FLOW_EINVAL, "task '%s': invalid environment variable name '%s'",
                           t->name, name ? name : "");
    struct task_ext *x = ext_of(t);
    if (!x)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    struct flow__tmpl *value = NULL;
    flow_err rc = flow__tmpl_compile_string(tmpl, &value, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < x->env.count; i++) {
        if (strcmp(x->env.items[i].name, name) == 0) {
            flow__tmpl_free(x->env.items[i].value);
            x->env.items[i].value = value;
            return FLOW_OK;
        }
    }
    struct task_env e = {.name = flow__strdup(name), .value = value};
    if (e.name)
        FLOW__VEC_PUSH(&x->env, e, rc);
    if (!e.name || rc) {
        flow__free(e.name);
        flow__tmpl_free(value);
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    return FLOW_OK;
}

flow_err flow_task_set_save(flow_task *t, const char *state_key)
{
    struct task_ext *x = ext_of(t);
    if (!x)
        return FLOW_ENOMEM;
    return set_string(t->flow, &x->save, state_key && *state_key ? state_key : NULL);
}
