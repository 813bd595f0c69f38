/* flowforge_cancel.c -- FlowForge's "Cancelling Execution":
 * flow.cancel(reason="User cancelled") from outside the flow while it runs.
 * flow_run_cancel() stops the run: running tasks are told to stop (C tasks
 * see flow_ctx_is_cancelled(), commands get SIGTERM then SIGKILL), nothing
 * new starts, and the run ends `cancelled` with the reason.
 *
 *   build/examples/seeds/flowforge_cancel
 *
 * A routine works through 100 steps of 10 ms each; the program cancels the
 * run as soon as the routine has started. Prints the run (seed_report.h) plus
 * "steps_done" and exits 4, as `flow run` does for a cancelled run.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <flow.h>

#include "seed_report.h"

static atomic_int started;
static atomic_int steps_done;

static int long_routine(flow_ctx *ctx)
{
    atomic_store(&started, 1);
    for (int i = 0; i < 100; i++) {
        if (flow_ctx_is_cancelled(ctx)) /* cooperative: stop soon when asked */
            return 1;
        struct timespec step = {0, 10000000L};
        nanosleep(&step, NULL);
        atomic_fetch_add(&steps_done, 1);
    }
    return 0;
}

static int never(flow_ctx *ctx)
{
    flow_ctx_fail(ctx, "a task after a cancelled one ran");
    return 1;
}

int main(void)
{
    flow_error err;
    flow *f = flow_new("cancellable", &err);
    flow_engine *engine = flow_engine_new(NULL, &err);
    if (!f || !engine) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    flow_task *work = flow_add_task(f, "long_routine", NULL);
    flow_task *next = flow_add_task(f, "next_routine", NULL);
    flow_task_set_fn(work, long_routine, NULL);
    flow_task_set_fn(next, never, NULL);
    flow_task_after(next, work);

    flow_run *run = flow_run_start(engine, f, NULL, &err);
    flow_free(f);
    if (!run) {
        fprintf(stderr, "%s\n", err.message);
        flow_engine_free(engine);
        return 1;
    }
    while (!atomic_load(&started)) {
        struct timespec tick = {0, 1000000L};
        nanosleep(&tick, NULL);
    }
    flow_run_cancel(run, "User cancelled"); /* flow.cancel(reason="User cancelled") */
    flow_run_status status = flow_run_wait(run);
    seed_print(seed_report(run, json_pack("{s:i}", "steps_done", atomic_load(&steps_done))));
    flow_run_free(run);
    flow_engine_free(engine);
    return status == FLOW_RUN_CANCELLED ? 4 : 1;
}
