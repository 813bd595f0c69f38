/* scope.c -- where templates find their values during a run: inputs,
 * input, state, tasks.NAME.output|status|error, run.id|name, env.NAME,
 * secrets.NAME, and item and index in the children of a foreach task. */
#include "util/compat.h"

#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/redact.h"

struct scope_ctx {
    struct flow_run *r;
    struct act *a;
};

static const char *seg_key(const struct flow__tmpl_path *p, size_t i)
{
    return i < p->count ? p->segs[i].key : NULL;
}

/* [L] */
static json_t *lookup(void *udata, const struct flow__tmpl_path *path, flow_error *err)
{
    struct scope_ctx *sc = udata;
    struct flow_run *r = sc->r;
    const char *root = seg_key(path, 0);
    json_t *base = NULL;
    size_t from = 1;
    json_t *owned = NULL;
    if (!root) {
        flow__error(err, FLOW_ETEMPLATE, "empty template path");
        return NULL;
    }
    if (!strcmp(root, "inputs")) {
        base = r->inputs;
    } else if (!strcmp(root, "input")) {
        if (!sc->a) {
            flow__error(err, FLOW_ETEMPLATE, "'input' is not available here (no task)");
            return NULL;
        }
        base = sc->a->input ? sc->a->input : flow__run_act_input(r, sc->a);
        if (!base) {
            flow__error(err, FLOW_ETEMPLATE, "the task's input could not be built");
            return NULL;
        }
    } else if (!strcmp(root, "state")) {
        base = r->state;
    } else if (!strcmp(root, "tasks")) {
        const char *name = seg_key(path, 1);
        const char *field = seg_key(path, 2);
        const flow_task *t = name ? flow_find_task(r->flow, name) : NULL;
        if (!t) {
            flow__error(err, FLOW_ETEMPLATE, "no task '%s'", name ? name : "");
            return NULL;
        }
        const struct task_rt *rt = &r->trt[t->index];
        const struct act *latest = flow__act_by_id(r, rt->latest);
        const struct act *last = flow__act_by_id(r, rt->last);
        from = 3;
        if (!field || !strcmp(field, "output")) {
            if (!latest) {
                flow__error(err, FLOW_ETEMPLATE, "task '%s' has no output yet", name);
                return NULL;
            }
            base = latest->output;
        } else if (!strcmp(field, "status")) {
            owned = json_string(last ? flow_act_status_name((flow_act_status)last->status)
                                      : "pending");
            base = owned;
        } else if (!strcmp(field, "error")) {
            owned = last && act_error(last) ? json_string(act_error(last)) : json_null();
            base = owned;
        } else {
            flow__error(err, FLOW_ETEMPLATE,
                        "unknown field '%s' of task '%s' (use output, status or error)", field,
                        name);
            return NULL;
        }
        if (!field)
            from = 2;
    } else if (!strcmp(root, "run")) {
        const char *field = seg_key(path, 1);
        if (field && !strcmp(field, "id"))
            owned = json_string(r->id);
        else if (field && !strcmp(field, "name"))
            owned = json_string(r->flow->name);
        else {
            flow__error(err, FLOW_ETEMPLATE, "unknown field 'run.%s' (use run.id or run.name)",
                        field ? field : "");
            return NULL;
        }
        base = owned;
        from = 2;
    } else if (!strcmp(root, "secrets") ||
               (!strcmp(root, "env") && flow__secrets_get(r->secrets, seg_key(path, 1)))) {
        /* A remote task's worker fills it in from its own environment:
         * no secret goes to Redis (docs/internals/core.md, "Secrets"). */
        const char *name = seg_key(path, 1);
        const char *v = flow__secrets_get(r->secrets, name);
        if (!v) {
            flow__error(err, FLOW_ETEMPLATE, "no secret '%s' (list it in 'secrets')",
                        name ? name : "");
            return NULL;
        }
        bool remote = sc->a && act_task(sc->a)->policy->executor == FLOW_EXEC_REMOTE;
        char *ph = remote ? flow__asprintf("{{ secrets.%s }}", name) : NULL;
        owned = remote ? (ph ? json_string(ph) : NULL) : json_string(v);
        flow__free(ph);
        base = owned;
        from = 2;
    } else if (!strcmp(root, "env")) {
        const char *name = seg_key(path, 1);
        const char *v = name ? getenv(name) : NULL;
        if (!v) {
            flow__error(err, FLOW_ETEMPLATE, "environment variable '%s' is not set",
                        name ? name : "");
            return NULL;
        }
        owned = json_string(v);
        base = owned;
        from = 2;
    } else if (!strcmp(root, "item") || !strcmp(root, "index")) {
        const struct act_dyn *dy = sc->a ? sc->a->dyn : NULL;
        if (!dy || !dy->parent) {
            flow__error(err, FLOW_ETEMPLATE, "'%s' is only set in a foreach task", root);
            return NULL;
        }
        if (!strcmp(root, "item")) {
            base = dy->item;
        } else {
            owned = json_integer((json_int_t)dy->index);
            base = owned;
        }
    } else {
        flow__error(err, FLOW_ETEMPLATE, "unknown template root '%s'", root);
        return NULL;
    }
    if (!base) {
        flow__error(err, FLOW_ENOMEM, "out of memory");
        return NULL;
    }
    json_t *v = flow__tmpl_walk(base, path, from, err);
    json_t *result = v ? json_incref(v) : NULL;
    json_decref(owned);
    return result;
}

flow_err flow__run_render(struct flow_run *r, struct act *a, const struct flow__tmpl *t,
                          json_t **out, flow_error *err)
{
    struct scope_ctx sc = {.r = r, .a = a};
    struct flow__tmpl_scope scope = {.lookup = lookup, .udata = &sc};
    return flow__tmpl_render(t, &scope, out, err);
}

flow_err flow__run_render_string(struct flow_run *r, struct act *a, const struct flow__tmpl *t,
                                 char **out, flow_error *err)
{
    struct scope_ctx sc = {.r = r, .a = a};
    struct flow__tmpl_scope scope = {.lookup = lookup, .udata = &sc};
    return flow__tmpl_render_string(t, &scope, out, err);
}
