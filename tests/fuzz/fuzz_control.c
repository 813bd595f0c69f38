/* fuzz_control.c -- control directives: the input is the text a command
 * writes to $FLOW_CONTROL. It is read by the command runner's line reader
 * (flow__cmd_parse_control); the directives it yields are then handed to a
 * real run, as those of the first attempt of its start task `a` (a C task,
 * whose context carries them as a command's would), and the run goes to its
 * end with a journal in a memory store. The flow has a task of each kind a
 * directive can name: plain, foreach, router, `on:` labels, a connection, a
 * state schema. */
#define _GNU_SOURCE 1
#include "fuzz.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "exec/cmd.h"
#include "util/alloc.h"

static const char flow_text[] =
    "name: control\n"
    "state: {n: 0, tags: []}\n"
    "state_schema:\n"
    "  type: object\n"
    "  properties:\n"
    "    n: {type: integer, maximum: 100}\n"
    "    tags: {type: array, items: {type: string}}\n"
    "connect:\n"
    "  - {from: a.page, to: page, map: {url: address}}\n"
    "defaults: {executor: inline}\n"
    "tasks:\n"
    "  a: {}\n"
    "  b: {start: false}\n"
    "  c: {start: false, max_activations: 20}\n"
    "  d: {on: go}\n"
    "  e: {after: a}\n"
    "  f: {start: false, foreach: '{{ input }}', concurrency: 2}\n"
    "  page: {}\n"
    "  r: {after: e, router: true}\n"
    "  left: {on: left}\n"
    "  join: {when: {or: [left, d]}}\n";

static flow_engine *engine;
static json_t *directives; /* for the next run's first attempt of `a` */
static atomic_int injected;

static int echo(flow_ctx *ctx)
{
    return flow_ctx_set_output(ctx, flow_ctx_input(ctx)) ? 1 : 0;
}

static int inject(flow_ctx *ctx)
{
    if (!atomic_exchange(&injected, 1))
        ctx->directives = json_incref(directives);
    return echo(ctx);
}

/* A flow for each input: one kept across inputs would hold its tasks in
 * arena blocks, which the leak checker does not scan when they are large
 * enough to be mapped rather than allocated. */
static flow *control_flow(void)
{
    flow *f = flow_load_string(flow_text, sizeof(flow_text) - 1, "control.yaml", NULL, NULL);
    for (size_t i = 0; f && i < flow_task_count(f); i++) {
        const char *name = flow_task_name(flow_task_at(f, i));
        if (flow_bind(f, name, strcmp(name, "a") ? echo : inject, NULL))
            abort();
    }
    if (!f)
        abort();
    return f;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    flow_engine_options eo = {.jobs = 2};
    engine = flow_engine_new(&eo, NULL);
    if (!engine)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_copy(data, size, false);
    char *error = NULL;
    json_t *list = flow__cmd_parse_control(text, size, &error);
    free(text);
    if (!list) {
        fuzz_check_message(error); /* a refused file says why, on one line */
        flow__free(error);
        return 0;
    }
    if (error)
        abort();

    flow_store *store = flow_store_open("memory:", NULL);
    flow *f = control_flow();
    if (!store)
        abort();
    directives = list;
    atomic_store(&injected, 0);
    flow_run_options ro = {.store = store};
    flow_error err;
    flow_run *r = flow_run_start(engine, f, &ro, &err);
    if (!r)
        abort(); /* the flow is valid */
    flow_run_status st = flow_run_wait(r);
    if (st != FLOW_RUN_COMPLETED && st != FLOW_RUN_FAILED && st != FLOW_RUN_CANCELLED &&
        st != FLOW_RUN_PAUSED)
        abort();
    json_t *res = flow_run_to_json(r);
    json_decref(res);
    json_t *journal = flow_store_journal(store, flow_run_id(r), NULL);
    json_decref(journal);
    flow_run_free(r);
    flow_store_close(store);
    flow_free(f);
    directives = NULL;
    json_decref(list);
    return 0;
}
