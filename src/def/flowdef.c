/* flowdef.c -- building flow definitions through the public API: tasks,
 * bodies, triggers, policies, I/O. Compilation and checks are in graph.c. */
#include "util/compat.h"

#include "def/flowdef.h"

#include <ctype.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "def/schema.h"
#include "def/template.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/redis.h"

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

static void feedback_spec_free(struct feedback_spec *fs)
{
    if (!fs)
        return;
    flow__tmpl_free(fs->message);
    flow__free(fs->message_src);
    json_decref(fs->options);
    json_decref(fs->default_answer);
    flow__free(fs->channel_key);
    flow__free(fs->id);
    for (size_t i = 0; fs->notify && i < fs->notify_argc; i++)
        flow__free(fs->notify[i]);
    flow__free(fs->notify);
    flow__free(fs);
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
    flow__free(x->queue);
    flow__free(x->remote_fn);
    cond_free(x->when);
    for (size_t i = 0; i < x->on.count; i++)
        flow__free(x->on.items[i]);
    FLOW__VEC_FREE(&x->on);
    flow_free(x->subflow);
    flow__tmpl_free(x->foreach);
    json_decref(x->foreach_src);
    feedback_spec_free(x->feedback);
    flow__prompt_spec_free(x->prompt);
    flow__http_spec_free(x->http);
    flow__llm_spec_free(x->llm);
    flow__limit_free(x->concurrency_limit);
    flow__limit_free(x->rate_limit);
    flow__free(x->resources);
    flow__cache_spec_free(x->cache);
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
    for (size_t i = 0; i < f->connections.count; i++) {
        struct flow_connection *c = &f->connections.items[i];
        flow__free(c->from_name);
        flow__free(c->event);
        flow__free(c->to_name);
        json_decref(c->map);
    }
    FLOW__VEC_FREE(&f->connections);
    flow__flow_secrets_free(f);
    flow__schedule_free(f);
    flow__limit_free(f->run_limit);
    flow__schema_free(f->schema);
    json_decref(f->schema_src);
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

flow_err flow_set_checkpoint_every(flow *f, double seconds)
{
    MUTATE(f);
    if (!(seconds >= 0))
        return FLOW_EINVAL;
    f->checkpoint_every = seconds;
    return FLOW_OK;
}

flow_err flow_parse_duration(const char *text, double *seconds)
{
    return text && seconds && flow__parse_duration(text, seconds) ? FLOW_OK : FLOW_EINVAL;
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

/* A task is paid for per task of every flow (docs/internals/performance.md). */
_Static_assert(sizeof(struct flow_task) <= 8 * sizeof(void *), "struct flow_task grew");

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
    char generated[32];
    if (!name) {
        /* FlowForge's add_routine without an id: a name of our own, the
         * first `task_N` not taken, N counting from the task's position. */
        for (size_t n = f->tasks.count + 1;; n++) {
            snprintf(generated, sizeof(generated), "task_%zu", n);
            if (!flow_find_task(f, generated))
                break;
        }
        name = generated;
    }
    if (!valid_task_name(name)) {
        flow__error(err, FLOW_EINVAL,
                    "invalid task name '%s' (use letters, digits, '_' and '-', "
                    "starting with a letter or '_')",
                    name ? name : "");
        return NULL;
    }
    if (f->tasks.count >= FLOW__MAX_TASKS - 1) {
        flow__error(err, FLOW_ELIMIT, "too many tasks in flow '%s'", f->name);
        return NULL;
    }
    /* Allocate everything first, so that adding to the index is the last
     * step that can fail (an arena block lost on failure is harmless). */
    uint32_t index = (uint32_t)f->tasks.count;
    flow_err rc = FLOW_OK;
    FLOW__VEC_RESERVE(&f->tasks, f->tasks.count + 1, rc);
    struct flow_task *t =
        rc ? NULL : flow__arena_alloc_aligned(&f->arena, sizeof(*t), alignof(struct flow_task));
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

struct task_ext *flow__task_ext_of(struct flow_task *t)
{
    return ext_of(t);
}

flow_err flow__flow_mutate(struct flow *f)
{
    MUTATE(f);
    return FLOW_OK;
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
        feedback_spec_free(x->feedback);
        x->feedback = NULL;
        flow__prompt_spec_free(x->prompt);
        x->prompt = NULL;
        flow__http_spec_free(x->http);
        x->http = NULL;
        flow__llm_spec_free(x->llm);
        x->llm = NULL;
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
        flow_free(x->subflow);
        x->subflow = NULL;
        flow__free(x->remote_fn);
        x->remote_fn = NULL;
    }
    t->fn = NULL;
    t->udata = NULL;
    t->kind = TASK_NOOP;
}

void flow__task_clear_body(struct flow_task *t)
{
    clear_body(t);
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

flow_err flow_task_set_queue(flow_task *t, const char *queue)
{
    MUTATE(t->flow);
    if (queue && *queue && !flow__redis_name_ok(queue))
        return FLOW_EINVAL;
    struct task_ext *x = ext_of(t);
    if (!x)
        return FLOW_ENOMEM;
    return set_string(t->flow, &x->queue, queue && *queue ? queue : NULL);
}

flow_err flow_task_set_remote_fn(flow_task *t, const char *name)
{
    MUTATE(t->flow);
    if (!name || !flow__redis_name_ok(name))
        return FLOW_EINVAL;
    clear_body(t);
    struct task_ext *x = ext_of(t);
    if (!x)
        return FLOW_ENOMEM;
    t->kind = TASK_FN;
    return set_string(t->flow, &x->remote_fn, name);
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
    p->set = 0;
    t->policy = p;
    return p;
}

void flow__policy_inherit(struct flow *f)
{
    const struct task_policy *d = &f->defaults;
    for (size_t i = 0; i < f->tasks.count; i++) {
        struct flow_task *t = f->tasks.items[i];
        if (t->policy == d)
            continue;
        struct task_policy *p = (struct task_policy *)t->policy;
#define INHERIT(bit, field)                                                                        \
    if (!(p->set & (bit)))                                                                         \
    p->field = d->field
        INHERIT(POL_TIMEOUT, timeout);
        INHERIT(POL_KILL_GRACE, kill_grace);
        INHERIT(POL_BACKOFF, backoff);
        INHERIT(POL_RETRIES, retries);
        INHERIT(POL_PRIORITY, priority);
        INHERIT(POL_MAX_ACTIVATIONS, max_activations);
        INHERIT(POL_ON_ERROR, on_error);
        INHERIT(POL_EXECUTOR, executor);
        INHERIT(POL_OUTPUT_MODE, output_mode);
        INHERIT(POL_OUTPUT_LIMIT, output_limit);
#undef INHERIT
    }
}

#define SET_POLICY(t, bit, check, assign)                                      \
    do {                                                                       \
        MUTATE((t)->flow);                                                     \
        if (!(check))                                                          \
            return FLOW_EINVAL;                                                \
        struct task_policy *p = own_policy(t);                                 \
        if (!p)                                                                \
            return FLOW_ENOMEM;                                                \
        assign;                                                                \
        p->set |= (bit);                                                       \
        return FLOW_OK;                                                        \
    } while (0)

flow_err flow_task_set_timeout(flow_task *t, double seconds)
{
    SET_POLICY(t, POL_TIMEOUT, seconds >= 0, p->timeout = seconds);
}

flow_err flow_task_set_retries(flow_task *t, int retries)
{
    SET_POLICY(t, POL_RETRIES, retries >= 0 && retries <= FLOW_MAX_RETRIES, p->retries = retries);
}

flow_err flow_task_set_backoff(flow_task *t, const flow_backoff *b)
{
    SET_POLICY(t, POL_BACKOFF, b && b->delay >= 0 && b->factor >= 1 && b->max_delay >= 0, p->backoff = *b);
}

flow_err flow_task_set_on_error(flow_task *t, flow_on_error mode)
{
    SET_POLICY(t, POL_ON_ERROR, mode >= FLOW_ON_ERROR_FAIL && mode <= FLOW_ON_ERROR_FALLBACK,
               p->on_error = mode);
}

flow_err flow_task_set_fallback(flow_task *t, flow_task *fallback)
{
    MUTATE(t->flow);
    if (!fallback || fallback->flow != t->flow || fallback == t)
        return FLOW_EINVAL;
    struct task_policy *p = own_policy(t);
    struct task_ext *x = p ? ext_of(t) : NULL;
    if (!x)
        return FLOW_ENOMEM;
    p->on_error = FLOW_ON_ERROR_FALLBACK;
    p->set |= POL_ON_ERROR;
    x->fallback = fallback;
    return FLOW_OK;
}

flow_err flow_task_set_executor(flow_task *t, flow_executor ex)
{
    SET_POLICY(t, POL_EXECUTOR, ex >= FLOW_EXEC_DEFAULT && ex <= FLOW_EXEC_REMOTE, p->executor = ex);
}

flow_err flow_task_set_priority(flow_task *t, int priority)
{
    SET_POLICY(t, POL_PRIORITY, 1, p->priority = priority);
}

flow_err flow_task_set_max_activations(flow_task *t, int max)
{
    SET_POLICY(t, POL_MAX_ACTIVATIONS, max >= 1, p->max_activations = max);
}

flow_err flow_task_set_kill_grace(flow_task *t, double seconds)
{
    SET_POLICY(t, POL_KILL_GRACE, seconds >= 0, p->kill_grace = seconds);
}

flow_err flow_task_set_output_mode(flow_task *t, flow_output_mode mode)
{
    SET_POLICY(t, POL_OUTPUT_MODE, mode >= FLOW_OUTPUT_AUTO && mode <= FLOW_OUTPUT_LINES, p->output_mode = mode);
}

flow_err flow_task_set_output_limit(flow_task *t, size_t bytes)
{
    SET_POLICY(t, POL_OUTPUT_LIMIT, bytes > 0, p->output_limit = bytes);
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

flow_err flow_task_set_subflow(flow_task *t, flow *child)
{
    MUTATE(t->flow);
    if (!child || child == t->flow)
        return FLOW_EINVAL;
    struct task_ext *x = ext_of(t);
    if (!x)
        return FLOW_ENOMEM;
    clear_body(t);
    flow__ref(child);
    x->subflow = child;
    t->kind = TASK_SUBFLOW;
    return FLOW_OK;
}

flow_err flow_task_set_feedback(flow_task *t, const flow_feedback *req, flow_error *err)
{
    MUTATE(t->flow);
    if (!req || (unsigned)req->type > FLOW_FEEDBACK_SELECTION)
        return flow__error(err, FLOW_EINVAL, "task '%s': unknown feedback type", t->name);
    if (req->type == FLOW_FEEDBACK_SELECTION && (!req->options || !req->option_count))
        return flow__error(err, FLOW_EINVAL, "task '%s': a selection needs options", t->name);
    if (req->timeout < 0)
        return flow__error(err, FLOW_EINVAL, "task '%s': the timeout must be 0 or more", t->name);
    struct feedback_spec *fs = flow__calloc(1, sizeof(*fs));
    if (!fs)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    fs->type = req->type;
    fs->timeout = req->timeout;
    fs->message_src = flow__strdup(req->message ? req->message : "");
    bool ok = fs->message_src != NULL;
    if (ok && req->option_count) {
        fs->options = json_array();
        for (size_t i = 0; fs->options && i < req->option_count; i++)
            json_array_append_new(fs->options,
                                  json_string(req->options[i] ? req->options[i] : ""));
        ok = fs->options && json_array_size(fs->options) == req->option_count;
    }
    if (ok && req->default_answer) {
        json_t *checked = NULL;
        char *bad = flow__feedback_check(req->type, fs->options, req->default_answer, NULL, 0,
                                         &checked);
        json_decref(checked);
        if (bad) {
            flow__error(err, FLOW_EINVAL, "task '%s': the default answer: %s", t->name, bad);
            flow__free(bad);
            feedback_spec_free(fs);
            return FLOW_EINVAL;
        }
        fs->default_answer = json_incref(req->default_answer);
    }
    if (ok && req->channel_key)
        ok = (fs->channel_key = flow__strdup(req->channel_key)) != NULL;
    if (ok && req->id)
        ok = (fs->id = flow__strdup(req->id)) != NULL;
    flow_error terr;
    if (ok && flow__tmpl_compile_string(fs->message_src, &fs->message, &terr) != FLOW_OK) {
        flow__error(err, terr.code, "task '%s': message: %s", t->name, terr.message);
        feedback_spec_free(fs);
        return terr.code;
    }
    struct task_ext *x = ok ? ext_of(t) : NULL;
    if (!x) {
        feedback_spec_free(fs);
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    clear_body(t);
    x->feedback = fs;
    t->kind = TASK_FEEDBACK;
    return FLOW_OK;
}

flow_err flow__task_take_http(flow_task *t, struct http_spec *spec)
{
    struct task_ext *x = check_mutable(t->flow) ? NULL : ext_of(t);
    if (!x) {
        flow__http_spec_free(spec);
        return t->flow->frozen ? FLOW_ESTATE : FLOW_ENOMEM;
    }
    t->flow->dirty = true;
    clear_body(t);
    x->http = spec;
    t->kind = TASK_HTTP;
    return FLOW_OK;
}

flow_err flow__task_take_llm(flow_task *t, struct llm_spec *spec)
{
    struct task_ext *x = check_mutable(t->flow) ? NULL : ext_of(t);
    if (!x) {
        flow__llm_spec_free(spec);
        return t->flow->frozen ? FLOW_ESTATE : FLOW_ENOMEM;
    }
    t->flow->dirty = true;
    clear_body(t);
    x->llm = spec;
    t->kind = TASK_LLM;
    return FLOW_OK;
}

/* "'http' of task 'x'" */
static void spec_what(char *buf, size_t len, const char *key, const flow_task *t)
{
    snprintf(buf, len, "'%s' of task '%s'", key, t->name);
}

flow_err flow_task_set_http(flow_task *t, json_t *spec, flow_error *err)
{
    MUTATE(t->flow);
    char what[200];
    spec_what(what, sizeof(what), "http", t);
    struct http_spec *s = NULL;
    flow_err rc = flow__http_spec_parse(spec, what, &s, NULL, err);
    return rc ? rc : flow__task_take_http(t, s);
}

flow_err flow_task_set_llm(flow_task *t, json_t *spec, flow_error *err)
{
    MUTATE(t->flow);
    char what[200];
    spec_what(what, sizeof(what), "llm", t);
    struct llm_spec *s = NULL;
    flow_err rc = flow__llm_spec_parse(spec, what, NULL, &s, NULL, err);
    return rc ? rc : flow__task_take_llm(t, s);
}

flow_err flow__task_set_feedback_notify(flow_task *t, const char *const *argv, size_t argc)
{
    struct feedback_spec *fs = t->ext ? t->ext->feedback : NULL;
    if (!fs || !argc)
        return FLOW_EINVAL;
    char **copy = flow__calloc(argc + 1, sizeof(*copy));
    if (!copy)
        return FLOW_ENOMEM;
    for (size_t i = 0; i < argc; i++) {
        if (!(copy[i] = flow__strdup(argv[i]))) {
            for (size_t k = 0; k < i; k++)
                flow__free(copy[k]);
            flow__free(copy);
            return FLOW_ENOMEM;
        }
    }
    fs->notify = copy;
    fs->notify_argc = argc;
    return FLOW_OK;
}

flow_err flow_task_set_foreach(flow_task *t, json_t *tmpl, int concurrency, flow_error *err)
{
    MUTATE(t->flow);
    if (concurrency < 0)
        return flow__error(err, FLOW_EINVAL, "task '%s': concurrency must be 0 or more",
                           t->name);
    struct task_ext *x = ext_of(t);
    if (!x)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    struct flow__tmpl *compiled = NULL;
    if (tmpl) {
        flow_err rc = flow__tmpl_compile(tmpl, &compiled, err);
        if (rc)
            return rc;
    }
    flow__tmpl_free(x->foreach);
    json_decref(x->foreach_src);
    x->foreach = compiled;
    x->foreach_src = tmpl ? json_incref(tmpl) : NULL;
    x->concurrency = concurrency;
    return FLOW_OK;
}

flow_err flow_connect(flow *f, const char *from_task, const char *event, const char *to_task,
                      json_t *map, flow_error *err)
{
    MUTATE(f);
    if (!from_task || !event || !*event || !to_task)
        return flow__error(err, FLOW_EINVAL, "connect needs a source task, an event and a target");
    if (map) {
        const char *k;
        json_t *v;
        if (!json_is_object(map))
            return flow__error(err, FLOW_EINVAL, "connect %s.%s -> %s: 'map' must be an object",
                               from_task, event, to_task);
        json_object_foreach(map, k, v)
        {
            if (!json_is_string(v))
                return flow__error(err, FLOW_EINVAL,
                                   "connect %s.%s -> %s: map value of '%s' must be a string",
                                   from_task, event, to_task, k);
        }
    }
    struct flow_connection c = {
        .from_name = flow__strdup(from_task),
        .event = flow__strdup(event),
        .to_name = flow__strdup(to_task),
        .map = map ? json_deep_copy(map) : NULL,
    };
    flow_err rc = FLOW_OK;
    if (!c.from_name || !c.event || !c.to_name || (map && !c.map))
        rc = FLOW_ENOMEM;
    else
        FLOW__VEC_PUSH(&f->connections, c, rc);
    if (rc) {
        flow__free(c.from_name);
        flow__free(c.event);
        flow__free(c.to_name);
        json_decref(c.map);
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    return FLOW_OK;
}

flow_err flow_set_state_schema(flow *f, json_t *schema, flow_error *err)
{
    MUTATE(f);
    struct flow__schema *compiled = NULL;
    if (schema) {
        flow_err rc = flow__schema_compile(schema, &compiled, err);
        if (rc)
            return rc;
    }
    flow__schema_free(f->schema);
    json_decref(f->schema_src);
    f->schema = compiled;
    f->schema_src = schema ? json_deep_copy(schema) : NULL;
    return FLOW_OK;
}

flow_err flow_configure(flow *f, const flow_config *cfg)
{
    MUTATE(f);
    if (!cfg || cfg->timeout < 0 || cfg->retries < 0 || cfg->retries > FLOW_MAX_RETRIES ||
        cfg->type < FLOW_TYPE_DEFAULT ||
        cfg->type > FLOW_TYPE_SEQUENTIAL)
        return FLOW_EINVAL;
    if (cfg->description) {
        flow_err rc = set_string(f, &f->description, cfg->description);
        if (rc)
            return rc;
    }
    f->run_timeout = cfg->timeout;
    f->defaults.retries = cfg->retries;
    f->type = cfg->type;
    switch (cfg->type) {
    case FLOW_TYPE_INLINE:
        f->defaults.executor = FLOW_EXEC_INLINE;
        break;
    case FLOW_TYPE_THREAD:
        f->defaults.executor = FLOW_EXEC_THREAD;
        break;
    default:
        f->defaults.executor = FLOW_EXEC_DEFAULT;
        break;
    }
    flow__policy_inherit(f);
    return FLOW_OK;
}

/* Could `target` reach a task whose `when` names `name`, following
 * dependencies backwards? Then adding `name` after `target` closes a cycle. */
static bool cond_names(const struct flow_cond *c, const char *name)
{
    if (!c)
        return false;
    if (c->kind == COND_TASK)
        return strcmp(c->name, name) == 0;
    for (size_t i = 0; i < c->count; i++) {
        if (cond_names(c->kids[i], name))
            return true;
    }
    return false;
}

static flow_err would_cycle(struct flow *f, const char *name, const struct flow_task *start,
                            bool *cycle)
{
    size_t n = f->tasks.count;
    uint8_t *seen = flow__calloc(n ? n : 1, 1);
    uint32_t *stack = flow__calloc(n ? n : 1, sizeof(*stack));
    if (!seen || !stack) {
        flow__free(seen);
        flow__free(stack);
        return FLOW_ENOMEM;
    }
    size_t top = 0;
    stack[top++] = start->index;
    seen[start->index] = 1;
    *cycle = false;
    while (top && !*cycle) {
        const struct flow_task *t = f->tasks.items[stack[--top]];
        if (t->ext && cond_names(t->ext->when, name)) {
            *cycle = true;
            break;
        }
        for (size_t i = 0; i < f->edges.count; i++) {
            const struct flow_edge *e = &f->edges.items[i];
            if (e->task == t->index && !seen[e->dep]) {
                seen[e->dep] = 1;
                stack[top++] = e->dep;
            }
        }
    }
    flow__free(seen);
    flow__free(stack);
    return FLOW_OK;
}

flow_task *flow_register(flow *f, const char *name, flow_task_fn fn, void *udata,
                         const char *const *required, const char *const *optional,
                         flow_error *err)
{
    /* Check everything first: a refused registration changes nothing. */
    const char *const *lists[2] = {required, optional};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; lists[k] && lists[k][i]; i++) {
            const flow_task *dep = flow_find_task(f, lists[k][i]);
            if (!dep) {
                flow__error(err, FLOW_EVALIDATION, "unknown %s dependency '%s' of '%s'",
                            k ? "optional" : "required", lists[k][i], name ? name : "");
                return NULL;
            }
            bool cycle = false;
            if (name && would_cycle(f, name, dep, &cycle) != FLOW_OK) {
                flow__error(err, FLOW_ENOMEM, "out of memory");
                return NULL;
            }
            if (cycle) {
                flow__error(err, FLOW_EVALIDATION,
                            "registering '%s' after '%s' would close a cycle: '%s' already "
                            "depends on '%s'",
                            name, dep->name, dep->name, name);
                return NULL;
            }
        }
    }
    if (!fn) {
        flow__error(err, FLOW_EINVAL, "flow_register needs a function for '%s'",
                    name ? name : "");
        return NULL;
    }
    flow_task *t = flow_add_task(f, name, err);
    if (!t)
        return NULL;
    flow_err rc = flow_task_set_fn(t, fn, udata);
    for (int k = 0; k < 2 && !rc; k++) {
        for (size_t i = 0; lists[k] && lists[k][i] && !rc; i++) {
            flow_task *dep = flow_find_task(f, lists[k][i]);
            rc = k ? flow_task_optional(t, dep) : flow_task_after(t, dep);
        }
    }
    if (rc) {
        flow__error(err, rc, "cannot register '%s': %s", name, flow_strerror(rc));
        return NULL;
    }
    return t;
}

/* ---- the registry ------------------------------------------------------- */

struct registry_entry {
    char *name;
    flow *flow;
    flow_factory_fn factory;
    void *udata;
};

struct flow_registry {
    FLOW__VEC(struct registry_entry) entries;
};

flow_registry *flow_registry_new(void)
{
    return flow__calloc(1, sizeof(flow_registry));
}

void flow_registry_free(flow_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->entries.count; i++) {
        flow__free(reg->entries.items[i].name);
        flow_free(reg->entries.items[i].flow);
    }
    FLOW__VEC_FREE(&reg->entries);
    flow__free(reg);
}

static flow_err registry_put(flow_registry *reg, const char *name, flow *f, flow_factory_fn fn,
                             void *udata)
{
    if (!reg || !name || !*name || (!f && !fn))
        return FLOW_EINVAL;
    for (size_t i = 0; i < reg->entries.count; i++) {
        if (!strcmp(reg->entries.items[i].name, name))
            return FLOW_EEXISTS;
    }
    struct registry_entry e = {.name = flow__strdup(name), .flow = f, .factory = fn,
                               .udata = udata};
    flow_err rc = e.name ? FLOW_OK : FLOW_ENOMEM;
    if (!rc)
        FLOW__VEC_PUSH(&reg->entries, e, rc);
    if (rc) {
        flow__free(e.name);
        return rc;
    }
    if (f)
        flow__ref(f);
    return FLOW_OK;
}

flow_err flow_registry_add(flow_registry *reg, const char *name, flow *f)
{
    return f ? registry_put(reg, name, f, NULL, NULL) : FLOW_EINVAL;
}

flow_err flow_registry_add_factory(flow_registry *reg, const char *name, flow_factory_fn fn,
                                   void *udata)
{
    return fn ? registry_put(reg, name, NULL, fn, udata) : FLOW_EINVAL;
}

flow *flow_registry_create(flow_registry *reg, const char *name, flow_error *err)
{
    for (size_t i = 0; reg && name && i < reg->entries.count; i++) {
        struct registry_entry *e = &reg->entries.items[i];
        if (strcmp(e->name, name) != 0)
            continue;
        if (e->flow) {
            flow__ref(e->flow);
            return e->flow;
        }
        return e->factory(e->udata, err);
    }
    struct flow__buf known;
    flow__buf_init(&known, 4096);
    for (size_t i = 0; reg && i < reg->entries.count; i++)
        flow__buf_printf(&known, "%s'%s'", i ? ", " : "", reg->entries.items[i].name);
    flow__error(err, FLOW_ENOTFOUND, "no flow named '%s' in the registry (known: %s)",
                name ? name : "", known.len ? flow__buf_str(&known) : "none");
    flow__buf_cleanup(&known);
    return NULL;
}
