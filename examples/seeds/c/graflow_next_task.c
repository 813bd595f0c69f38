/* graflow_next_task.c -- Graflow's "next_task() - Add Task at Runtime"
 * (Dynamic Task Generation): a dispatcher reads "data" from the channel (the
 * run's state) and adds priority_handler or normal_handler at run time, with
 * the data as its input. Neither handler runs unless it is asked for
 * (start = false).
 *
 *   build/examples/seeds/graflow_next_task [TYPE]   TYPE: priority (default) or normal
 *
 * Prints the run (seed_report.h): the result is the output of the one handler
 * that ran, and "activations" shows that the other one never ran.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <flow.h>

#include "seed_report.h"

static int dispatcher(flow_ctx *ctx)
{
    json_t *data = flow_ctx_get_state(ctx, "data"); /* ctx.get_channel().get("data") */
    if (!data) {
        flow_ctx_fail(ctx, "state key 'data' is missing");
        return 1;
    }
    const char *type = json_string_value(json_object_get(data, "type"));
    const char *next = type && strcmp(type, "priority") == 0 ? "priority_handler"
                                                              : "normal_handler";
    flow_err rc = flow_ctx_next_task(ctx, next, data); /* copies data */
    json_decref(data);
    return rc == FLOW_OK ? 0 : 1;
}

/* Both handlers say who they are and what they got. */
static int handler(flow_ctx *ctx)
{
    json_t *out = json_pack("{s:s,s:O}", "handled_by", flow_ctx_task_name(ctx), "data",
                            flow_ctx_input(ctx));
    return flow_ctx_set_output_take(ctx, out) == FLOW_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *type = argc > 1 ? argv[1] : "priority";
    flow_error err;
    flow *f = flow_new("graflow-next-task", &err);
    flow_engine *engine = flow_engine_new(NULL, &err);
    if (!f || !engine) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    flow_task_set_fn(flow_add_task(f, "dispatcher", NULL), dispatcher, NULL);
    static const char *const handlers[] = {"priority_handler", "normal_handler"};
    for (int i = 0; i < 2; i++) {
        flow_task *h = flow_add_task(f, handlers[i], NULL);
        flow_task_set_fn(h, handler, NULL);
        flow_task_set_start(h, false); /* runs only when a task asks for it */
    }

    /* The run's inputs are merged into its state: the channel holds "data". */
    json_t *inputs = json_pack("{s:{s:s,s:i}}", "data", "type", type, "id", 7);
    flow_run *run = seed_run(engine, f, inputs, NULL);
    json_decref(inputs);
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
