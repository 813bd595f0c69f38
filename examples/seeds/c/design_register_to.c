/* design_register_to.c -- the flow-system design document: "Core Flow
 * Class Structure" (a Flow wraps a processor; register_to(parent,
 * required_deps, optional_deps)), "Dependency Data Interface"
 * (DependencyData.get / get_all) and "Current Usage Pattern" (a processor
 * that validates its Input, registered with a required and an optional
 * dependency, executed with {"data": [1, 2, 3]}), with the behaviours the
 * document lists: failure propagation, optional-dependency bypass and cycle
 * detection at registration.
 *
 * A libflow task plays the document's Flow: its body is a C function, and the
 * processor it wraps is the function's udata. flow_register() is register_to:
 *
 *   load     (no dependencies)    passes the executed input on
 *   enrich   (no dependencies)    fails when the input says so (on_error: continue)
 *   my_flow  required [load], optional [enrich]: MyProcessor, doubles "data"
 *   report   required [enrich]:   skipped when enrich failed (failure propagation)
 *
 *   build/examples/seeds/design_register_to
 *
 * Prints {"ok", "optional_failed", "bad_input", "refused"}: three runs
 * (seed_report.h; "outputs" holds each task's output or error) and, in
 * "refused", the messages of an unknown dependency and of a cycle refused at
 * registration, whether the refused task stayed out of the flow (true), and
 * the message of a cycle made with flow_task_after() that flow_validate()
 * refuses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <flow.h>

#include "seed_report.h"

/* The document's Processable: process(input) -> output, or NULL with a
 * message in `error`. */
typedef json_t *(*process_fn)(json_t *input, flow_ctx *ctx, char *error, size_t size);

struct processor {
    const char *name;
    process_fn process;
};

/* The body of every task: run the wrapped processor on the input. */
static int run_processor(flow_ctx *ctx)
{
    const struct processor *p = flow_ctx_udata(ctx);
    char error[256] = "";
    json_t *out = p->process(flow_ctx_input(ctx), ctx, error, sizeof(error));
    if (!out) {
        flow_ctx_fail(ctx, "%s: %s", p->name, error);
        return 1;
    }
    return flow_ctx_set_output_take(ctx, out) == FLOW_OK ? 0 : 1;
}

static json_t *load(json_t *input, flow_ctx *ctx, char *error, size_t size)
{
    (void)ctx, (void)error, (void)size;
    return json_deep_copy(input); /* the input is the run's: a task keeps a copy */
}

static json_t *enrich(json_t *input, flow_ctx *ctx, char *error, size_t size)
{
    (void)ctx;
    if (json_is_true(json_object_get(input, "enrich_fails"))) {
        snprintf(error, size, "enrichment service unavailable");
        return NULL;
    }
    return json_pack("{s:s}", "unit", "kg");
}

/* MyProcessor: Input {data: List[float]} -> Output {result: List[float]}. */
static json_t *my_processor(json_t *input, flow_ctx *ctx, char *error, size_t size)
{
    (void)input;
    json_t *loaded = flow_ctx_dep(ctx, "load"); /* await deps.get("load") */
    json_t *data = json_object_get(loaded, "data");
    if (!json_is_array(data)) {
        snprintf(error, size, "input 'data' must be a list of numbers");
        return NULL;
    }
    json_t *result = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(data, i, x)
    {
        if (!json_is_number(x)) {
            snprintf(error, size, "input 'data[%zu]' must be a number", i);
            json_decref(result);
            return NULL;
        }
        json_array_append_new(result, json_real(json_number_value(x) * 2));
    }
    json_t *all = flow_ctx_deps(ctx); /* await deps.get_all(): the deps that gave output */
    json_t *names = json_array();
    const char *name;
    json_object_foreach(all, name, x)
    {
        json_array_append_new(names, json_string(name));
    }
    json_t *unit = json_object_get(flow_ctx_dep(ctx, "enrich"), "unit"); /* NULL if it failed */
    json_t *out = json_pack("{s:o,s:o,s:O}", "result", result, "deps_with_data", names, "unit",
                            unit ? unit : json_null());
    json_decref(all);
    return out;
}

static json_t *report(json_t *input, flow_ctx *ctx, char *error, size_t size)
{
    (void)ctx, (void)error, (void)size;
    return json_pack("{s:O}", "enriched", input);
}

static const struct processor p_load = {"load", load};
static const struct processor p_enrich = {"enrich", enrich};
static const struct processor p_my = {"MyProcessor", my_processor};
static const struct processor p_report = {"report", report};

/* Build the flow of the four tasks above. */
static flow *build(void)
{
    flow_error err;
    flow *f = flow_new("design-register-to", &err);
    if (!f)
        return NULL;
    flow_task *enr = NULL;
    if (!flow_register(f, "load", run_processor, (void *)&p_load, NULL, NULL, &err) ||
        !(enr = flow_register(f, "enrich", run_processor, (void *)&p_enrich, NULL, NULL, &err)))
        goto fail;
    flow_task_set_on_error(enr, FLOW_ON_ERROR_CONTINUE);

    /* flow.register_to(parent, required_deps=[load], optional_deps=[enrich]) */
    const char *const required[] = {"load", NULL};
    const char *const optional[] = {"enrich", NULL};
    if (!flow_register(f, "my_flow", run_processor, (void *)&p_my, required, optional, &err))
        goto fail;
    const char *const needs_enrich[] = {"enrich", NULL};
    if (!flow_register(f, "report", run_processor, (void *)&p_report, needs_enrich, NULL, &err))
        goto fail;
    return f;
fail:
    fprintf(stderr, "%s\n", err.message);
    flow_free(f);
    return NULL;
}

/* Registrations and graphs that are refused, with their messages. Nothing
 * changes when a registration is refused. */
static json_t *refusals(void)
{
    json_t *msgs = json_array();
    flow_error err;
    flow *f = flow_new("refusals", &err);
    if (!f || !msgs)
        return msgs;
    flow_register(f, "load", run_processor, (void *)&p_load, NULL, NULL, &err);
    /* an unknown dependency */
    const char *const ghost[] = {"ghost", NULL};
    if (!flow_register(f, "orphan", run_processor, (void *)&p_report, ghost, NULL, &err))
        json_array_append_new(msgs, json_string(err.message));
    /* a cycle closed at registration: audit waits for "archive" (a condition
     * may name a task registered later), so archive cannot require audit */
    flow_task *audit = flow_register(f, "audit", run_processor, (void *)&p_report, NULL, NULL,
                                     &err);
    flow_task_when(audit, flow_cond_task("archive"));
    const char *const after_audit[] = {"audit", NULL};
    if (!flow_register(f, "archive", run_processor, (void *)&p_report, after_audit, NULL, &err))
        json_array_append_new(msgs, json_string(err.message));
    json_array_append_new(msgs, json_boolean(flow_find_task(f, "archive") == NULL));
    flow_free(f);

    /* a cycle made with plain dependencies is caught when the flow is checked */
    f = flow_new("cycle", &err);
    const char *const on_src[] = {"src", NULL};
    const char *const on_a[] = {"a", NULL};
    flow_register(f, "src", run_processor, (void *)&p_load, NULL, NULL, &err);
    flow_task *a = flow_register(f, "a", run_processor, (void *)&p_load, on_src, NULL, &err);
    flow_task *b = flow_register(f, "b", run_processor, (void *)&p_load, on_a, NULL, &err);
    if (a && b && flow_task_after(a, b) == FLOW_OK && flow_validate(f, NULL, &err) != FLOW_OK)
        json_array_append_new(msgs, json_string(err.message));
    flow_free(f);
    return msgs;
}

static json_t *execute(flow_engine *engine, flow *f, json_t *inputs)
{
    flow_run *run = seed_run(engine, f, inputs, NULL);
    json_decref(inputs);
    if (!run)
        return json_null();
    json_t *outputs = json_object();
    for (size_t i = 0; i < flow_run_activation_count(run); i++) {
        flow_activation_info info;
        flow_run_activation(run, i, &info);
        if (info.output)
            json_object_set(outputs, info.task, info.output);
        else if (info.error)
            json_object_set_new(outputs, info.task, json_pack("{s:s}", "error", info.error));
    }
    json_t *rep = seed_report(run, json_pack("{s:o}", "outputs", outputs));
    flow_run_free(run);
    return rep;
}

int main(void)
{
    flow_error err;
    flow_engine *engine = flow_engine_new(NULL, &err);
    flow *f = engine ? build() : NULL;
    if (!f) {
        fprintf(stderr, "%s\n", engine ? "cannot build the flow" : err.message);
        return 1;
    }
    json_t *out = json_object();
    /* await flow.execute({"data": [1, 2, 3]}) */
    json_object_set_new(out, "ok", execute(engine, f, json_pack("{s:[i,i,i]}", "data", 1, 2, 3)));
    json_object_set_new(out, "optional_failed",
                        execute(engine, f,
                                json_pack("{s:[i,i,i],s:b}", "data", 1, 2, 3, "enrich_fails", 1)));
    json_object_set_new(out, "bad_input", execute(engine, f, json_pack("{s:s}", "data", "oops")));
    json_object_set_new(out, "refused", refusals());
    seed_print(out);
    flow_free(f);
    flow_engine_free(engine);
    return 0;
}
