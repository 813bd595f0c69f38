/* graflow_parallel_group.c -- Graflow's "Dynamic Parallel Group" (Fan-Out
 * and Fan-In Patterns): create_workers reads "items" from the channel (the
 * run's state) and starts one process_item worker per item, in parallel, as a
 * group made at run time. The group has no `then`: each worker is on its own,
 * and writes its result to the channel under "worker_<i>".
 *
 *   build/examples/seeds/graflow_parallel_group [ITEM]...   (default: a b c d)
 *
 * Prints the run (seed_report.h) plus "workers": the channel's worker_* keys.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <flow.h>

#include "seed_report.h"

static int create_workers(flow_ctx *ctx)
{
    json_t *items = flow_ctx_get_state(ctx, "items"); /* ctx.get_channel().get("items") */
    if (!json_is_array(items) || json_array_size(items) == 0) {
        flow_ctx_fail(ctx, "state key 'items' must be a non-empty list");
        json_decref(items);
        return 1;
    }
    size_t n = json_array_size(items);
    flow_branch *workers = calloc(n, sizeof(*workers));
    if (!workers) {
        json_decref(items);
        return 1;
    }
    for (size_t i = 0; i < n; i++) { /* process_item(task_id=f"worker_{i}", item=item) */
        workers[i].task = "process_item";
        workers[i].input = json_pack("{s:I,s:O}", "worker", (json_int_t)i, "item",
                                     json_array_get(items, i));
    }
    flow_err rc = flow_ctx_parallel(ctx, workers, n, NULL); /* ctx.next_task(parallel(*workers)) */
    for (size_t i = 0; i < n; i++)
        json_decref(workers[i].input);
    free(workers);
    json_decref(items);
    return rc == FLOW_OK ? 0 : 1;
}

static int process_item(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    json_int_t worker = json_integer_value(json_object_get(in, "worker"));
    const char *item = json_string_value(json_object_get(in, "item"));
    struct timespec work = {0, 10000000L * (long)(4 - worker % 4)}; /* later ones finish first */
    nanosleep(&work, NULL);
    char key[32];
    snprintf(key, sizeof(key), "worker_%lld", (long long)worker);
    json_t *out = json_pack("{s:s,s:s+}", "worker", key, "result", "processed ", item ? item : "?");
    flow_ctx_set_state(ctx, key, out); /* each worker writes its own key: no lost update */
    return flow_ctx_set_output_take(ctx, out) == FLOW_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    flow_error err;
    flow *f = flow_new("graflow-parallel-group", &err);
    flow_engine *engine = flow_engine_new(&(flow_engine_options){.jobs = 4}, &err);
    if (!f || !engine) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    flow_task_set_fn(flow_add_task(f, "create_workers", NULL), create_workers, NULL);
    flow_task *worker = flow_add_task(f, "process_item", NULL);
    flow_task_set_fn(worker, process_item, NULL);
    flow_task_set_start(worker, false);

    json_t *items = json_array();
    for (int i = 1; i < argc; i++)
        json_array_append_new(items, json_string(argv[i]));
    if (argc < 2) {
        static const char *const dflt[] = {"a", "b", "c", "d"};
        for (int i = 0; i < 4; i++)
            json_array_append_new(items, json_string(dflt[i]));
    }
    json_t *inputs = json_pack("{s:o}", "items", items);
    flow_run *run = seed_run(engine, f, inputs, NULL);
    json_decref(inputs);
    flow_free(f);
    int rc = 1;
    if (run) {
        rc = flow_run_get_status(run) == FLOW_RUN_COMPLETED ? 0 : 1;
        json_t *state = flow_run_state(run);
        json_t *workers = json_object();
        const char *key;
        json_t *value;
        json_object_foreach(state, key, value)
        {
            if (strncmp(key, "worker_", 7) == 0)
                json_object_set(workers, key, json_object_get(value, "result"));
        }
        json_decref(state);
        seed_print(seed_report(run, json_pack("{s:o}", "workers", workers)));
    }
    flow_run_free(run);
    flow_engine_free(engine);
    return rc;
}
