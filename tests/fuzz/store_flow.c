/* store_flow.c -- the flow of fuzz_store, with a task for each kind of
 * journal record: routing by label, foreach, retries and a fallback, a
 * question to a person, an event on a connection, loops, pause, cancel,
 * checkpoints and state writes under a schema; the run inputs say which
 * way a run goes. */
#define _GNU_SOURCE 1
#include "store_flow.h"

#include <stdlib.h>
#include <string.h>

static const char flow_text[] =
    "name: store\n"
    "state: {n: 0}\n"
    "state_schema: {type: object, properties: {n: {type: integer, minimum: 0}}}\n"
    "connect:\n"
    "  - {from: start.page, to: page}\n"
    "tasks:\n"
    "  start: {}\n"
    "  route: {after: start, router: true}\n"
    "  left: {on: left}\n"
    "  right: {on: right}\n"
    "  join: {after_any: [left, right]}\n"
    "  each: {after: start, foreach: '{{ inputs.items }}', concurrency: 2}\n"
    "  flaky: {after: start, input: '{{ inputs }}', retries: 2, backoff: {delay: 1ms}, on_error: {fallback: rescue}}\n"
    "  rescue: {start: false}\n"
    "  ask: {after: join, feedback: {type: approval, message: 'go on {{ inputs.mode }}?'}}\n"
    "  pick: {after: ask, feedback: {type: selection, options: [a, b], request: pick}}\n"
    "  page: {}\n"
    "  spin: {start: false, max_activations: 10}\n"
    "  last: {after: [each, flaky], optional: [pick], save: n}\n";

/* The run inputs of each scenario. */
static const char *const scenarios[] = {
    "{\"mode\": \"plain\", \"route\": \"left\", \"items\": [1, 2, 3]}",
    "{\"mode\": \"pause\", \"route\": \"right\", \"items\": []}",
    "{\"mode\": \"cancel\", \"route\": \"left\", \"items\": [1]}",
    "{\"mode\": \"checkpoint\", \"route\": \"right\", \"items\": [\"x\"], \"fail\": true}",
    "{\"mode\": \"spin\", \"route\": \"left\", \"items\": [[1], {\"a\": 2}]}",
    "{\"mode\": \"parallel\", \"route\": \"nowhere\", \"items\": [1, 2]}",
    "{\"mode\": \"emit\", \"route\": \"left\", \"items\": [3]}",
    "{\"mode\": \"terminate\", \"route\": \"left\", \"items\": []}",
    "{\"mode\": \"set\", \"route\": \"right\", \"items\": [5, 6, 7, 8]}",
    "{\"mode\": \"bad-set\", \"route\": \"left\", \"items\": \"not a list\"}",
};

static json_t *run_input(flow_ctx *ctx, const char *key)
{
    json_t *in = flow_ctx_input(ctx);
    return json_object_get(json_is_object(in) ? in : NULL, key);
}

static int echo(flow_ctx *ctx)
{
    return flow_ctx_set_output(ctx, flow_ctx_input(ctx)) ? 1 : 0;
}

/* start: does what inputs.mode says; its output is the label to route to. */
static int start(flow_ctx *ctx)
{
    const char *mode = json_string_value(run_input(ctx, "mode"));
    mode = mode ? mode : "";
    flow_err rc = FLOW_OK;
    if (!strcmp(mode, "pause")) {
        rc = flow_ctx_pause(ctx, "fuzz pause");
    } else if (!strcmp(mode, "cancel")) {
        rc = flow_ctx_cancel(ctx, "fuzz cancel");
    } else if (!strcmp(mode, "checkpoint")) {
        rc = flow_ctx_checkpoint(ctx);
    } else if (!strcmp(mode, "spin")) {
        json_t *zero = json_integer(0);
        rc = flow_ctx_next_task(ctx, "spin", zero);
        json_decref(zero);
    } else if (!strcmp(mode, "parallel")) {
        flow_branch b[2] = {{"spin", NULL}, {"page", NULL}};
        b[0].input = json_integer(1);
        b[1].input = json_string("p");
        rc = flow_ctx_parallel(ctx, b, 2, "rescue");
        json_decref(b[0].input);
        json_decref(b[1].input);
    } else if (!strcmp(mode, "emit")) {
        json_t *data = json_pack("{s:s}", "url", "u");
        rc = flow_ctx_emit(ctx, "page", data);
        json_decref(data);
    } else if (!strcmp(mode, "terminate")) {
        json_t *result = json_string("early");
        rc = flow_ctx_terminate(ctx, result);
        json_decref(result);
    } else if (!strcmp(mode, "set") || !strcmp(mode, "bad-set")) {
        rc = flow_ctx_set_state_take(ctx, "n", json_integer(!strcmp(mode, "set") ? 7 : -1));
    }
    if (rc == FLOW_OK)
        rc = flow_ctx_set_output(ctx, run_input(ctx, "route"));
    return rc ? 1 : 0;
}

static int flaky(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    if (json_is_true(json_object_get(json_is_object(in) ? in : NULL, "fail"))) {
        flow_ctx_fail(ctx, "flaky failed attempt %d", flow_ctx_attempt(ctx));
        return 1;
    }
    return echo(ctx);
}

static int spin(flow_ctx *ctx)
{
    json_int_t n = json_integer_value(flow_ctx_input(ctx));
    if (n < 3) {
        json_t *next = json_integer(n + 1);
        flow_err rc = flow_ctx_next_iteration(ctx, next);
        json_decref(next);
        return rc ? 1 : 0;
    }
    return echo(ctx);
}

static int last(flow_ctx *ctx)
{
    return flow_ctx_set_output_take(ctx, json_integer(1)) ? 1 : 0;
}

flow *fuzz_store_flow(void)
{
    flow_diags *d = flow_diags_new();
    flow *f = flow_load_string(flow_text, sizeof(flow_text) - 1, "store.yaml", d, NULL);
    flow_diags_free(d);
    static const struct {
        const char *task;
        flow_task_fn fn;
    } fns[] = {{"start", start}, {"route", echo}, {"left", echo},  {"right", echo},
               {"join", echo},   {"each", echo},  {"flaky", flaky}, {"rescue", echo},
               {"page", echo},   {"spin", spin},  {"last", last}};
    for (size_t i = 0; f && i < sizeof(fns) / sizeof(fns[0]); i++) {
        if (flow_bind(f, fns[i].task, fns[i].fn, NULL))
            abort();
    }
    if (!f)
        abort();
    return f;
}

size_t fuzz_store_scenario_count(void)
{
    return sizeof(scenarios) / sizeof(scenarios[0]);
}

int fuzz_store_answer_all(flow_store *store, const char *run_id)
{
    json_t *open = flow_store_feedback(store, run_id, NULL);
    int answered = 0;
    size_t i;
    json_t *req;
    json_array_foreach(open, i, req)
    {
        const char *id = json_string_value(json_object_get(req, "request"));
        const char *type = json_string_value(json_object_get(req, "type"));
        json_t *options = json_object_get(req, "options");
        json_t *answer = NULL;
        if (type && !strcmp(type, "selection"))
            answer = json_incref(json_array_get(options, 0));
        else if (type && !strcmp(type, "text"))
            answer = json_string("fuzz");
        else
            answer = json_true();
        if (id && answer && flow_store_answer(store, run_id, id, answer, "fuzz", NULL) == FLOW_OK)
            answered++;
        json_decref(answer);
    }
    json_decref(open);
    return answered;
}

void fuzz_store_scenario(flow_engine *e, flow *f, flow_store *store, size_t i,
                         const char *run_id, int stops, fuzz_store_stop_fn on_stop, void *udata)
{
    json_t *inputs = json_loads(scenarios[i], 0, NULL);
    flow_run_options o = {.inputs = inputs, .run_id = run_id, .store = store};
    flow_run *r = flow_run_start(e, f, &o, NULL);
    json_decref(inputs);
    if (!r)
        abort();
    for (int stop = 0; r; stop++) {
        flow_run_status st = flow_run_wait(r);
        flow_run_free(r);
        r = NULL;
        if (on_stop)
            on_stop(run_id, stop, udata);
        if ((st != FLOW_RUN_PAUSED && st != FLOW_RUN_FAILED && st != FLOW_RUN_CANCELLED) ||
            stop + 1 >= stops)
            break;
        flow_run_options ro = {.run_id = run_id, .store = store};
        if (st != FLOW_RUN_PAUSED) { /* its journal goes on with a retry */
            r = flow_run_retry(e, f, &ro, NULL, NULL);
            continue;
        }
        fuzz_store_answer_all(store, run_id);
        r = flow_run_resume(e, f, &ro, NULL);
    }
}
