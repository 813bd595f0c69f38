/* graflow_checkpoint.c -- Graflow's "Basic Checkpoint" and "Periodic
 * Checkpoint" (Checkpoint and Resume). long_running processes batches
 * and asks for a checkpoint every 10 batches; periodic_checkpoint_task asks
 * for one whenever some time has passed (300 s in the seed, 20 ms here).
 * ctx.checkpoint() "schedules checkpoint after task": flow_ctx_checkpoint()
 * is a directive, taken when the attempt succeeds (several requests in one
 * attempt make one checkpoint) and dropped if it fails.
 *
 * The checkpoint is a record in the run's journal. This example runs
 * without a store, so no journal is kept; with one
 * (flow_run_options.store, or any `flow run`) it is durable, `flow
 * checkpoints RUN` lists it and `flow resume RUN --from-checkpoint ID`
 * (flow_run_resume with .from_checkpoint) starts a new run from it: see
 * examples/c/durable_resume.c.
 *
 *   build/examples/seeds/graflow_checkpoint [BATCHES]   (default 25)
 *
 * Prints the run (seed_report.h); each task's output says how many batches
 * or items it processed and how many checkpoints it asked for.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <flow.h>

#include "seed_report.h"

static long batches = 25;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void process(void)
{
    struct timespec work = {0, 2000000L}; /* 2 ms of "work" */
    nanosleep(&work, NULL);
}

static int long_running(flow_ctx *ctx)
{
    int asked = 0;
    for (long i = 0; i < batches; i++) {
        process();
        if (i % 10 == 0) { /* create a checkpoint after each 10th batch */
            if (flow_ctx_checkpoint(ctx) != FLOW_OK)
                return 1;
            asked++;
        }
    }
    json_t *out = json_pack("{s:i,s:i}", "batches", (int)batches, "checkpoints_asked", asked);
    return flow_ctx_set_output_take(ctx, out) == FLOW_OK ? 0 : 1;
}

static int periodic_checkpoint_task(flow_ctx *ctx)
{
    const double period = 0.020; /* the seed's 300 seconds, scaled down */
    double last_checkpoint = now();
    int asked = 0;
    for (long i = 0; i < batches; i++) {
        process();
        if (now() - last_checkpoint > period) {
            if (flow_ctx_checkpoint(ctx) != FLOW_OK)
                return 1;
            asked++;
            last_checkpoint = now();
        }
    }
    json_t *out = json_pack("{s:i,s:i}", "items", (int)batches, "checkpoints_asked", asked);
    return flow_ctx_set_output_take(ctx, out) == FLOW_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        char *end;
        batches = strtol(argv[1], &end, 10);
        if (*end || batches < 0) {
            fprintf(stderr, "usage: graflow_checkpoint [BATCHES]\n");
            return 2;
        }
    }
    flow_error err;
    flow *f = flow_new("graflow-checkpoint", &err);
    flow_engine *engine = flow_engine_new(NULL, &err);
    if (!f || !engine) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    flow_task_set_fn(flow_add_task(f, "long_running", NULL), long_running, NULL);
    flow_task_set_fn(flow_add_task(f, "periodic_checkpoint_task", NULL), periodic_checkpoint_task,
                     NULL);
    flow_run *run = seed_run(engine, f, NULL, NULL);
    flow_free(f);
    int rc = 1;
    if (run) {
        rc = flow_run_get_status(run) == FLOW_RUN_COMPLETED ? 0 : 1;
        json_t *outputs = json_object();
        for (size_t i = 0; i < flow_run_activation_count(run); i++) {
            flow_activation_info info;
            flow_run_activation(run, i, &info);
            if (info.output)
                json_object_set(outputs, info.task, info.output);
        }
        seed_print(seed_report(run, json_pack("{s:o}", "outputs", outputs)));
    }
    flow_run_free(run);
    flow_engine_free(engine);
    return rc;
}
