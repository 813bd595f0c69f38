/* input.c -- what an activation is given: its input (from its trigger's
 * sources or an explicit value, then its `input` template), and for a
 * command, the rendered argv, environment and directory. The command's
 * files are written by exec/rundir.c when it is spawned, without the
 * engine lock. */
#include "util/compat.h"

#include <string.h>

#include "core/run_int.h"
#include "exec/rundir.h"
#include "util/alloc.h"
#include "util/error.h"

static uint32_t source_task(const struct act *s)
{
    return act_stands_for(s) ? act_stands_for(s)->task : s->task;
}

/* {task: output} of the activations that fired a trigger. */
static json_t *keyed_sources(struct flow_run *r, struct act *a)
{
    json_t *base = json_object();
    for (uint32_t i = 0; base && i < a->nsrc; i++) {
        struct act *s = a->src.many[i];
        if (json_object_set(base, flow__task_name(r, source_task(s)), s->output)) {
            json_decref(base);
            return NULL;
        }
    }
    return base;
}

/* The input of a task with several dependencies (`after` and `optional`):
 * an object keyed by every dependency, null for an optional one that failed
 * or was skipped, so its shape never depends on what happened. The trigger
 * collected its sources in leaf order (trigger.c, resolve), so one walk
 * pairs them up. */
static json_t *keyed_input(struct flow_run *r, struct act *a, const struct flow_task *t)
{
    const struct flow *f = r->flow;
    json_t *base = json_object();
    struct act *const *srcs = a->nsrc == 1 ? &a->src.one : a->src.many;
    uint32_t j = 0;
    for (uint32_t i = 0; base && i < t->leaf_count; i++) {
        uint32_t dep = f->leaves[t->leaf_first + i].source;
        json_t *v = json_null();
        if (j < a->nsrc && source_task(srcs[j]) == dep)
            v = srcs[j++]->output;
        if (json_object_set(base, flow__task_name(r, dep), v ? v : json_null())) {
            json_decref(base);
            return NULL;
        }
    }
    return base;
}

/* [L] Build the activation's input: the trigger's (explicit, or from its
 * sources), then the task's `input` template over it, whose `input` root is
 * the trigger's input. */
flow_err flow__run_build_input(struct flow_run *r, struct act *a, flow_error *err)
{
    if (a->flags & ACT_INPUT_READY)
        return FLOW_OK;
    const struct flow_task *t = act_task(a);
    json_t *base = a->input;
    if (!base) {
        if (t->trig == TRIG_AND && t->leaf_count > 1)
            base = keyed_input(r, a, t);
        else if (a->nsrc == 1)
            base = json_incref(a->src.one->output);
        else if (a->nsrc > 1)
            base = keyed_sources(r, a);
        else
            base = json_null();
        if (!base)
            return flow__error(err, FLOW_ENOMEM, "out of memory building an input");
        a->input = base;
    }
    /* A foreach parent's `input` template is its children's (item, index). */
    bool foreach_parent = t->ext && t->ext->foreach && !(a->dyn && a->dyn->parent);
    if (t->ext && t->ext->input && !foreach_parent) {
        json_t *out = NULL;
        flow_err rc = flow__run_render(r, a, t->ext->input, &out, err);
        if (rc)
            return rc;
        json_decref(a->input);
        a->input = out;
    }
    a->flags |= ACT_INPUT_READY;
    return FLOW_OK;
}

json_t *flow__run_act_input(struct flow_run *r, struct act *a)
{
    flow_error err;
    if (flow__run_build_input(r, a, &err) != FLOW_OK)
        return NULL; /* never a half-built input in its place */
    return a->input;
}

/* What a command's spec points to: owned here, so that the spawn can run
 * without the engine lock and whatever happens to the run meanwhile. */
struct cmd_scratch {
    FLOW__VEC(char *) strings;
    const char **argv;
    const char **env;
    json_t *input;
    json_t *state; /* the version current when it was prepared */
    uint64_t state_version;
    struct flow__rundir *workdir; /* a reference */
};

void flow__run_cmd_scratch_free(void *p)
{
    struct cmd_scratch *s = p;
    if (!s)
        return;
    for (size_t i = 0; i < s->strings.count; i++)
        flow__free(s->strings.items[i]);
    FLOW__VEC_FREE(&s->strings);
    flow__free(s->argv);
    flow__free(s->env);
    json_decref(s->input);
    json_decref(s->state);
    flow__rundir_unref(s->workdir);
    flow__free(s);
}

static bool keep(struct cmd_scratch *s, char *str)
{
    flow_err rc = FLOW_OK;
    if (str)
        FLOW__VEC_PUSH(&s->strings, str, rc);
    if (!str || rc) {
        flow__free(str);
        return false;
    }
    return true;
}

bool flow__run_prepare_cmd(struct flow_run *r, struct act *a, struct flow__cmd_spec *spec,
                           void **scratch, char **error)
{
    const struct flow_task *t = act_task(a);
    const struct task_ext *x = t->ext;
    struct cmd_scratch *s = flow__calloc(1, sizeof(*s));
    flow_error err;
    *error = NULL;
    *scratch = s;
    memset(spec, 0, sizeof(*spec));
    if (!s)
        goto out_nomem;
    /* The input first: argv, env and cwd templates may read `input`. */
    if (flow__run_build_input(r, a, &err) != FLOW_OK)
        goto out_err;
    if (t->kind == TASK_COMMAND) {
        s->argv = flow__calloc(x->argc + 1, sizeof(*s->argv));
        if (!s->argv)
            goto out_nomem;
        for (size_t i = 0; i < x->argc; i++) {
            char *arg = NULL;
            if (flow__run_render_string(r, a, x->argv[i], &arg, &err) != FLOW_OK)
                goto out_err;
            if (!keep(s, arg))
                goto out_nomem;
            s->argv[i] = arg;
        }
        spec->argv = s->argv;
    } else {
        char *script = NULL;
        if (flow__run_render_string(r, a, x->shell, &script, &err) != FLOW_OK)
            goto out_err;
        if (!keep(s, script))
            goto out_nomem;
        spec->shell = script;
    }
    if (x->env.count) {
        s->env = flow__calloc(x->env.count + 1, sizeof(*s->env));
        if (!s->env)
            goto out_nomem;
        for (size_t i = 0; i < x->env.count; i++) {
            char *value = NULL;
            if (flow__run_render_string(r, a, x->env.items[i].value, &value, &err) != FLOW_OK)
                goto out_err;
            char *kv = flow__asprintf("%s=%s", x->env.items[i].name, value);
            flow__free(value);
            if (!keep(s, kv))
                goto out_nomem;
            s->env[i] = kv;
        }
        spec->env = s->env;
    }
    if (x->cwd) {
        char *cwd = NULL;
        if (flow__run_render_string(r, a, x->cwd, &cwd, &err) != FLOW_OK)
            goto out_err;
        if (!keep(s, cwd))
            goto out_nomem;
        spec->cwd = cwd;
    }
    s->input = json_incref(flow__run_act_input(r, a));
    spec->input = s->input;
    s->state = json_incref(r->state);
    s->state_version = r->state_version;
    act_cmd(a)->state_version = r->state_version;
    s->workdir = r->workdir;
    flow__rundir_ref(s->workdir);
    char *run_id = flow__strdup(r->id);
    if (!keep(s, run_id))
        goto out_nomem;
    char *task = flow__strdup(t->name);
    if (!keep(s, task))
        goto out_nomem;
    spec->run_id = run_id;
    spec->task = task;
    spec->activation = a->id;
    spec->attempt = (int)a->attempt;
    spec->output_mode = t->policy->output_mode;
    spec->output_limit = t->policy->output_limit;
    return true;
out_err:
    *error = flow__strdup(err.message);
    return false;
out_nomem:
    *error = flow__strdup("out of memory preparing the command");
    return false;
}

bool flow__run_cmd_files(void *scratch, struct flow__cmd_spec *spec, char **error)
{
    struct cmd_scratch *s = scratch;
    spec->work_dir = flow__rundir_path(s->workdir, error);
    if (!spec->work_dir)
        return false;
    spec->workdir = flow__rundir_workdir(s->workdir);
    spec->state_path = flow__rundir_state(s->workdir, s->state_version, s->state, error);
    return spec->state_path != NULL;
}

void flow__run_cmd_files_release(struct flow_run *r, uint64_t version)
{
    flow__rundir_state_release(r->workdir, version);
}
