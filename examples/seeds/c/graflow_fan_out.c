/* graflow_fan_out.c -- Graflow's "Fan-Out Pattern (Multiple Endpoints)"
 * (Fan-Out and Fan-In Patterns): branch starts process_a and process_b in
 * parallel, without a convergence point; each of them then adds endpoint with
 * next_task. "Result: endpoint runs TWICE (once per branch)", each time with
 * the path of the branch that asked.
 *
 *   build/examples/seeds/graflow_fan_out
 *
 * Prints the run (seed_report.h) plus "endpoint_paths": the parent_path each
 * endpoint activation received, sorted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <flow.h>

#include "seed_report.h"

/* parent_path from the input, "" when there is none. */
static const char *parent_path(flow_ctx *ctx)
{
    const char *p = json_string_value(json_object_get(flow_ctx_input(ctx), "parent_path"));
    return p ? p : "";
}

static int branch(flow_ctx *ctx)
{
    const char *parent = parent_path(ctx);
    char current[256];
    snprintf(current, sizeof(current), "%s%s%s", parent, *parent ? "." : "", "branch");
    flow_branch b[2] = {
        {"process_a", json_pack("{s:s}", "parent_path", current)},
        {"process_b", json_pack("{s:s}", "parent_path", current)},
    };
    flow_err rc = flow_ctx_parallel(ctx, b, 2, NULL); /* no `then`: no convergence point */
    json_decref(b[0].input);
    json_decref(b[1].input);
    return rc == FLOW_OK ? 0 : 1;
}

/* process_a and process_b: each triggers the shared endpoint itself. */
static int process(flow_ctx *ctx)
{
    char path[256];
    snprintf(path, sizeof(path), "%s.%s", parent_path(ctx), flow_ctx_task_name(ctx));
    json_t *in = json_pack("{s:s}", "parent_path", path);
    flow_err rc = flow_ctx_next_task(ctx, "endpoint", in);
    json_decref(in);
    return rc == FLOW_OK ? 0 : 1;
}

static int endpoint(flow_ctx *ctx)
{
    return flow_ctx_set_output_take(ctx, json_string(parent_path(ctx))) == FLOW_OK ? 0 : 1;
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int main(void)
{
    flow_error err;
    flow *f = flow_new("graflow-fan-out", &err);
    flow_engine *engine = flow_engine_new(NULL, &err);
    if (!f || !engine) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    flow_task_set_fn(flow_add_task(f, "branch", NULL), branch, NULL);
    static const char *const later[] = {"process_a", "process_b", "endpoint"};
    for (int i = 0; i < 3; i++) {
        flow_task *t = flow_add_task(f, later[i], NULL);
        flow_task_set_fn(t, i < 2 ? process : endpoint, NULL);
        flow_task_set_start(t, false);
    }
    flow_run *run = seed_run(engine, f, NULL, NULL);
    flow_free(f);
    int rc = 1;
    if (run) {
        rc = flow_run_get_status(run) == FLOW_RUN_COMPLETED ? 0 : 1;
        const char *paths[16];
        size_t n = 0;
        for (size_t i = 0; i < flow_run_activation_count(run) && n < 16; i++) {
            flow_activation_info info;
            flow_run_activation(run, i, &info);
            if (strcmp(info.task, "endpoint") == 0 && json_is_string(info.output))
                paths[n++] = json_string_value(info.output);
        }
        qsort(paths, n, sizeof(paths[0]), by_string);
        json_t *list = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(list, json_string(paths[i]));
        seed_print(seed_report(run, json_pack("{s:o}", "endpoint_paths", list)));
    }
    flow_run_free(run);
    flow_engine_free(engine);
    return rc;
}
