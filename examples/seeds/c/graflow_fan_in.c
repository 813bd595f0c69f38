/* graflow_fan_in.c -- Graflow's "Fan-Out-then-Fan-In (Single Endpoint)"
 * (Fan-Out and Fan-In Patterns): root starts branch_a and branch_b as a
 * parallel group chained to integrator (`parallel(...) >> integrator`).
 * "integrator runs ONCE after both branches complete"; its input is the
 * branches' outputs as a list in branch order (branch_a first, although
 * branch_b finishes first).
 *
 *   build/examples/seeds/graflow_fan_in
 *
 * Prints the run (seed_report.h): the result is integrator's output.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <flow.h>

#include "seed_report.h"

static int root(flow_ctx *ctx)
{
    flow_branch group[2] = {{"branch_a", NULL}, {"branch_b", NULL}};
    /* parallel(branch_a, branch_b) >> integrator */
    return flow_ctx_parallel(ctx, group, 2, "integrator") == FLOW_OK ? 0 : 1;
}

static int branch_a(flow_ctx *ctx)
{
    struct timespec slow = {0, 80000000L}; /* finishes after branch_b */
    nanosleep(&slow, NULL);
    return flow_ctx_set_output_take(ctx, json_pack("{s:s,s:i}", "branch", "a", "rows", 3)) ? 1 : 0;
}

static int branch_b(flow_ctx *ctx)
{
    return flow_ctx_set_output_take(ctx, json_pack("{s:s,s:i}", "branch", "b", "rows", 4)) ? 1 : 0;
}

/* The input is [output of branch_a, output of branch_b]. */
static int integrator(flow_ctx *ctx)
{
    json_t *outputs = flow_ctx_input(ctx);
    json_int_t rows = 0;
    size_t i;
    json_t *out;
    json_array_foreach(outputs, i, out)
    {
        rows += json_integer_value(json_object_get(out, "rows"));
    }
    json_t *res = json_pack("{s:O,s:I}", "inputs", outputs, "total_rows", rows);
    return flow_ctx_set_output_take(ctx, res) == FLOW_OK ? 0 : 1;
}

int main(void)
{
    flow_error err;
    flow *f = flow_new("graflow-fan-in", &err);
    flow_engine *engine = flow_engine_new(&(flow_engine_options){.jobs = 4}, &err);
    if (!f || !engine) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    flow_task_set_fn(flow_add_task(f, "root", NULL), root, NULL);
    static const char *const later[] = {"branch_a", "branch_b", "integrator"};
    static const flow_task_fn fns[] = {branch_a, branch_b, integrator};
    for (int i = 0; i < 3; i++) {
        flow_task *t = flow_add_task(f, later[i], NULL);
        flow_task_set_fn(t, fns[i], NULL);
        flow_task_set_start(t, false);
    }
    flow_run *run = seed_run(engine, f, NULL, NULL);
    flow_free(f);
    int rc = 1;
    if (run) {
        rc = flow_run_get_status(run) == FLOW_RUN_COMPLETED ? 0 : 1;
        seed_print(seed_report(run, NULL));
    }
    flow_run_free(run);
    flow_engine_free(engine);
    return rc;
}
