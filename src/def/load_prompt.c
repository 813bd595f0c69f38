/* load_prompt.c -- `prompt:` in a workflow file: a task's body, and what
 * tasks that send a prompt on (llm:) are given. The prompt file is read
 * and its version chosen while the workflow loads, so a wrong name, label,
 * version or variable is reported at the line that asks for it. */
#include "util/compat.h"

#include <stdio.h>
#include <string.h>

#include "def/load_int.h"
#include "def/prompts.h"
#include "util/alloc.h"
#include "util/error.h"

static const char *const prompt_keys[] = {"name", "label", "version", "vars"};

struct prompt_spec *flow__ld_parse_prompt(struct loader *L, const struct val *x, const char *what)
{
    flow_prompt_ref ref = {0};
    struct val name = *x, label = {0}, version = {0}, vars = {0};
    char kwhat[320], vbuf[64];
    bool ok = true;
    if (json_is_object(x->v)) {
        ok = flow__ld_known_keys(L, x, prompt_keys, FLOW__ARRAY_LEN(prompt_keys), what);
        name = flow__ld_member(L, x->v, "name");
        label = flow__ld_member(L, x->v, "label");
        version = flow__ld_member(L, x->v, "version");
        vars = flow__ld_member(L, x->v, "vars");
        if (!name.v) {
            flow__ld_report(L, x->pos, "%s needs 'name': the prompt file's NAME (NAME.yaml)",
                            what);
            return NULL;
        }
    } else if (!json_is_string(x->v)) {
        flow__ld_report(L, x->pos,
                        "%s must be a prompt's name or a mapping {name, label, version, vars}, "
                        "not %s",
                        what, flow__ld_type_name(x->v));
        return NULL;
    }
    flow__ld_concat(kwhat, sizeof(kwhat), "'name' in ", what, (char *)NULL);
    ok &= flow__ld_get_string(L, &name, json_is_object(x->v) ? kwhat : what, true, &ref.name);
    flow__ld_concat(kwhat, sizeof(kwhat), "'label' in ", what, (char *)NULL);
    if (label.v)
        ok &= flow__ld_get_string(L, &label, kwhat, true, &ref.label);
    if (version.v) {
        ref.version = flow__ld_scalar_text(&version, vbuf, sizeof(vbuf));
        if (!ref.version || !*ref.version || json_is_boolean(version.v) ||
            json_is_null(version.v)) {
            flow__ld_report(L, version.pos, "'version' in %s must be a number or a string", what);
            ok = false;
        }
    }
    flow__ld_concat(kwhat, sizeof(kwhat), "'vars' in ", what, (char *)NULL);
    if (vars.v && !json_is_object(vars.v) && !json_is_string(vars.v)) {
        flow__ld_report(L, vars.pos,
                        "%s must be a mapping of the prompt's variables to values (templates "
                        "allowed), not %s",
                        kwhat, flow__ld_type_name(vars.v));
        ok = false;
    } else if (vars.v) {
        ok &= flow__ld_check_template_value(L, &vars, kwhat);
    }
    if (!ok)
        return NULL;
    char *dir = flow__prompt_dir(L->dir);
    if (!dir) {
        L->nomem = true;
        return NULL;
    }
    ref.dir = dir;
    struct prompt_spec *ps = NULL;
    const char *field = NULL;
    flow_error e;
    flow__error_clear(&e);
    flow_err rc = flow__prompt_spec_make(&ref, vars.v, what, &ps, &field, &e);
    flow__free(dir);
    if (rc == FLOW_ENOMEM) {
        L->nomem = true;
    } else if (rc) {
        const struct val *at = !strcmp(field, "label") && label.v       ? &label
                               : !strcmp(field, "version") && version.v ? &version
                               : !strcmp(field, "vars") && vars.v       ? &vars
                                                                         : &name;
        flow__ld_report(L, at->pos, "%s", e.message);
    }
    return ps;
}
