/* prompt_task.c -- a task that renders a prompt (`prompt:`,
 * flow_task_set_prompt): the prompt file is read and the entry chosen when
 * the flow is built, so an unknown name, label or version, and a variable
 * a literal `vars` leaves out, are errors before any run. */
#include "util/compat.h"

#include <stdio.h>
#include <string.h>

#include "def/flowdef.h"
#include "def/prompts.h"
#include "def/template.h"
#include "util/alloc.h"
#include "util/error.h"

void flow__prompt_spec_free(struct prompt_spec *ps)
{
    if (!ps)
        return;
    flow__prompt_file_free(ps->file);
    flow__free(ps->label);
    flow__free(ps->version);
    flow__tmpl_free(ps->vars);
    json_decref(ps->vars_src);
    flow__free(ps);
}

flow_err flow__prompt_spec_new(const flow_prompt_ref *ref, json_t *vars, const char *who,
                               struct prompt_spec **out, flow_error *err)
{
    return flow__prompt_spec_make(ref, vars, who, out, NULL, err);
}

flow_err flow__prompt_spec_make(const flow_prompt_ref *ref, json_t *vars, const char *who,
                                struct prompt_spec **out, const char **field, flow_error *err)
{
    const char *unused;
    if (!field)
        field = &unused;
    *field = "name";
    *out = NULL;
    if (!ref || !ref->name || !*ref->name)
        return flow__error(err, FLOW_EINVAL, "%s: a prompt needs a name", who);
    if (vars && !json_is_object(vars) && !json_is_string(vars))
        return *field = "vars", flow__error(err, FLOW_EINVAL,
                           "%s: the prompt's vars must be a mapping of names to values (or a "
                           "template giving one)",
                           who);
    struct prompt_spec *ps = flow__calloc(1, sizeof(*ps));
    char *dir = ref->dir ? flow__strdup(ref->dir) : flow__prompt_dir(NULL);
    if (!ps || !dir) {
        flow__free(ps);
        flow__free(dir);
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    flow_error e;
    flow__error_clear(&e);
    flow_err rc = flow__prompt_file_load(dir, ref->name, &ps->file, &e);
    flow__free(dir);
    if (!rc && !(ps->chosen = flow__prompt_choose(ps->file, ref->label, ref->version, &e))) {
        rc = e.code;
        *field = ref->version ? "version" : "label";
    }
    if (!rc && ((ref->label && !(ps->label = flow__strdup(ref->label))) ||
                (ref->version && !(ps->version = flow__strdup(ref->version)))))
        rc = flow__error(&e, FLOW_ENOMEM, "out of memory");
    if (!rc && vars) {
        ps->vars_src = json_incref(vars);
        *field = "vars";
        rc = flow__tmpl_compile(vars, &ps->vars, &e);
    }
    /* Literal names are known now: every variable must be among them. */
    const char *missing = NULL;
    if (!rc && (!vars || json_is_object(vars)) &&
        (missing = flow__prompt_missing_var(ps->chosen, vars)))
        *field = "vars", rc = flow__error(&e, FLOW_EINVAL,
                         "version %s of prompt '%s' uses variable '%s', which its vars do not "
                         "give%s",
                         ps->chosen->version, ps->chosen->name, missing,
                         vars ? "" : " (it has no vars)");
    if (rc) {
        flow__error(err, rc, "%s: %s", who, e.message);
        flow__prompt_spec_free(ps);
        return rc;
    }
    *out = ps;
    return FLOW_OK;
}

flow_err flow__prompt_spec_from_json(json_t *obj, const char *dir, const char *who,
                                     struct prompt_spec **out, const char **field,
                                     flow_error *err)
{
    static const char *const keys[] = {"name", "label", "version", "vars"};
    const char *k;
    json_t *v;
    char version[64];
    *out = NULL;
    *field = NULL;
    json_object_foreach(obj, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && !known; i++)
            known = !strcmp(k, keys[i]);
        if (!known)
            return flow__error(err, FLOW_EINVAL,
                               "%s: unknown key '%s' in 'prompt' (name, label, version, vars)",
                               who, k);
    }
    flow_prompt_ref ref = {.dir = dir};
    ref.name = json_string_value(json_object_get(obj, "name"));
    ref.label = json_string_value(json_object_get(obj, "label"));
    json_t *ver = json_object_get(obj, "version");
    if (json_is_integer(ver)) {
        snprintf(version, sizeof(version), "%lld", (long long)json_integer_value(ver));
        ref.version = version;
    } else if (json_is_real(ver)) {
        snprintf(version, sizeof(version), "%.15g", json_real_value(ver));
        ref.version = version;
    } else if (ver) {
        ref.version = json_string_value(ver);
        if (!ref.version) {
            *field = "version";
            return flow__error(err, FLOW_EINVAL, "%s: 'version' of 'prompt' must be a number or "
                               "a string", who);
        }
    }
    if (json_object_get(obj, "label") && !ref.label) {
        *field = "label";
        return flow__error(err, FLOW_EINVAL, "%s: 'label' of 'prompt' must be a string", who);
    }
    return flow__prompt_spec_make(&ref, json_object_get(obj, "vars"), who, out, field, err);
}

flow_err flow_task_set_prompt(flow_task *t, const flow_prompt_ref *ref, json_t *vars,
                              flow_error *err)
{
    flow_err rc = flow__flow_mutate(t->flow);
    if (rc)
        return rc;
    char who[200];
    snprintf(who, sizeof(who), "task '%s'", t->name);
    struct prompt_spec *ps = NULL;
    if ((rc = flow__prompt_spec_new(ref, vars, who, &ps, err)))
        return rc;
    if ((rc = flow__task_take_prompt(t, ps)))
        return flow__error(err, rc, "out of memory");
    return FLOW_OK;
}

flow_err flow__task_take_prompt(struct flow_task *t, struct prompt_spec *ps)
{
    struct task_ext *x = flow__task_ext_of(t);
    if (!x) {
        flow__prompt_spec_free(ps);
        return FLOW_ENOMEM;
    }
    flow__task_clear_body(t);
    x->prompt = ps;
    t->kind = TASK_PROMPT;
    return FLOW_OK;
}
