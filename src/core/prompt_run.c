/* prompt_run.c -- prompts at run time: the `prompt:` task, rendered on the
 * loop thread (it only formats text), the prompt text of tasks that send
 * one on (llm:), and flow_ctx_render_prompt for C bodies. Each journals
 * the version it used in its completion's `info`. */
#include "util/compat.h"

#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "def/prompts.h"
#include "util/alloc.h"
#include "util/error.h"

char *flow__run_prompt_text(struct flow_run *r, struct act *a, const struct prompt_spec *ps,
                            json_t **used, flow_error *err)
{
    json_t *vars = NULL;
    if (used)
        *used = NULL;
    if (ps->vars && flow__run_render(r, a, ps->vars, &vars, err))
        return NULL;
    if (vars && !json_is_object(vars)) {
        flow__error(err, FLOW_ETEMPLATE,
                    "the vars of prompt '%s' must render to a mapping of names to values, not "
                    "%s",
                    ps->chosen->name, json_is_array(vars) ? "a list" : "a single value");
        json_decref(vars);
        return NULL;
    }
    char *text = flow__prompt_render(ps->chosen, vars, err);
    json_decref(vars);
    if (text && used && !(*used = flow__prompt_used(ps->chosen, ps->label, ps->version != NULL))) {
        flow__free(text);
        flow__error(err, FLOW_ENOMEM, "out of memory");
        return NULL;
    }
    return text;
}

void flow__prompt_task(struct flow_run *r, struct act *a, struct flow_ctx *ctx)
{
    const struct prompt_spec *ps = act_task(a)->ext->prompt;
    flow_error err;
    flow__error_clear(&err);
    json_t *used = NULL;
    char *text = flow__run_prompt_text(r, a, ps, &used, &err);
    if (!text) {
        ctx->rc = 1;
        ctx->error = flow__strdup(err.message);
        return;
    }
    json_t *out = json_pack("{s:s}", "text", text);
    if (!out || json_object_update(out, used)) {
        ctx->rc = 1;
        ctx->error = flow__strdup("out of memory rendering a prompt");
    } else {
        if (!json_object_get(out, "label"))
            json_object_set_new(out, "label", json_null());
        ctx->output = json_incref(out);
        ctx->rc = 0;
        flow__ctx_note(ctx, "prompt", json_incref(used));
    }
    json_decref(out);
    json_decref(used);
    flow__free(text);
}

char *flow_ctx_render_prompt(flow_ctx *ctx, const flow_prompt_ref *ref, json_t *vars,
                             flow_error *err)
{
    json_t *used = NULL;
    char *text = flow_prompt_render(ref, vars, &used, err);
    if (text)
        flow__ctx_note(ctx, "prompt", used);
    return text;
}
