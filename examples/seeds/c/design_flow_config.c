/* design_flow_config.c -- the flow-system design document: "Flow
 * Configuration" (FlowConfig: name, description, timeout, retries, flow_type)
 * and the types of src/flow/core/types.py (FlowType, FlowStatus).
 *
 * flow_configure() applies a FlowConfig to a flow: a description, a timeout
 * for the whole run, default retries for the tasks that do not set their own,
 * and a flow_type: INLINE / THREAD / PROCESS choose where tasks run,
 * PARALLEL runs as many at once as the engine allows, SEQUENTIAL one task of
 * a run at a time. The config is frozen once a run has started from the flow
 * (FLOW_ESTATE), like the document's `frozen = True`.
 *
 *   build/examples/seeds/design_flow_config
 *
 * Prints {"sequential", "parallel", "timeout", "retries", "frozen",
 * "flow_types", "statuses"}: the most tasks seen running at once with each
 * type (four tasks of 40 ms on four threads), the run that ran out of time,
 * the attempts of a task that fails twice under `retries: 2`, whether a
 * started flow refused a new config, and the names of the types.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <flow.h>

#include "seed_report.h"

static atomic_int in_flight, max_in_flight;

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A 40 ms processor that records how many tasks run at the same time. */
static int work(flow_ctx *ctx)
{
    int now = atomic_fetch_add(&in_flight, 1) + 1;
    int seen = atomic_load(&max_in_flight);
    while (now > seen && !atomic_compare_exchange_weak(&max_in_flight, &seen, now))
        ;
    pause_ms(40);
    atomic_fetch_sub(&in_flight, 1);
    return flow_ctx_set_output_take(ctx, json_string(flow_ctx_task_name(ctx))) ? 1 : 0;
}

/* Runs for 5 s unless told to stop. */
static int slow(flow_ctx *ctx)
{
    for (int i = 0; i < 500; i++) {
        if (flow_ctx_is_cancelled(ctx)) {
            flow_ctx_fail(ctx, "stopped after %d ms", i * 10);
            return 1;
        }
        pause_ms(10);
    }
    return 0;
}

/* Fails on its first two attempts. */
static int flaky(flow_ctx *ctx)
{
    if (flow_ctx_attempt(ctx) <= 2) {
        flow_ctx_fail(ctx, "transient error on attempt %d", flow_ctx_attempt(ctx));
        return 1;
    }
    return flow_ctx_set_output_take(ctx, json_string("ok")) ? 1 : 0;
}

static flow *make(const char *name, flow_task_fn fn, int tasks, const flow_config *cfg)
{
    flow *f = flow_new(name, NULL); /* FlowConfig.name */
    if (!f)
        return NULL;
    for (int i = 0; i < tasks; i++) {
        char task[16];
        snprintf(task, sizeof(task), "task_%d", i);
        flow_task_set_fn(flow_add_task(f, task, NULL), fn, NULL);
    }
    if (flow_configure(f, cfg) != FLOW_OK) {
        flow_free(f);
        return NULL;
    }
    return f;
}

/* Run a flow made with `cfg` and describe it. */
static json_t *try_config(flow_engine *engine, const char *name, flow_task_fn fn, int tasks,
                          const flow_config *cfg, json_t **frozen)
{
    flow *f = make(name, fn, tasks, cfg);
    if (!f)
        return json_null();
    atomic_store(&in_flight, 0);
    atomic_store(&max_in_flight, 0);
    flow_run *run = seed_run(engine, f, NULL, NULL);
    if (frozen) { /* FlowConfig is frozen: a started flow cannot be reconfigured */
        flow_config again = *cfg;
        *frozen = json_boolean(flow_configure(f, &again) == FLOW_ESTATE);
    }
    json_t *extra = json_pack("{s:s,s:s?,s:i}", "name", flow_name(f), "description",
                              flow_description(f), "max_in_flight", atomic_load(&max_in_flight));
    flow_free(f);
    if (!run) {
        json_decref(extra);
        return json_null();
    }
    json_t *attempts = json_array();
    for (size_t i = 0; i < flow_run_activation_count(run); i++) {
        flow_activation_info info;
        flow_run_activation(run, i, &info);
        json_array_append_new(attempts, json_integer(info.attempts));
    }
    json_object_set_new(extra, "attempts", attempts);
    json_t *rep = seed_report(run, extra);
    flow_run_free(run);
    return rep;
}

int main(void)
{
    flow_error err;
    flow_engine *engine = flow_engine_new(&(flow_engine_options){.jobs = 4}, &err);
    if (!engine) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    json_t *frozen = NULL;
    flow_config seq = {.description = "one task at a time", .type = FLOW_TYPE_SEQUENTIAL};
    flow_config par = {.description = "all at once", .type = FLOW_TYPE_PARALLEL};
    flow_config timed = {.timeout = 0.2}; /* seconds for the whole run */
    flow_config retried = {.retries = 2, .type = FLOW_TYPE_THREAD};
    json_t *out = json_object();
    json_object_set_new(out, "sequential", try_config(engine, "seq", work, 4, &seq, &frozen));
    json_object_set_new(out, "parallel", try_config(engine, "par", work, 4, &par, NULL));
    json_object_set_new(out, "timeout", try_config(engine, "timed", slow, 1, &timed, NULL));
    json_object_set_new(out, "retries", try_config(engine, "retried", flaky, 1, &retried, NULL));
    json_object_set_new(out, "frozen", frozen ? frozen : json_null());

    /* FlowType and FlowStatus as libflow names them */
    json_object_set_new(out, "flow_types",
                        json_pack("[s,s,s,s,s]", "FLOW_TYPE_INLINE", "FLOW_TYPE_THREAD",
                                  "FLOW_TYPE_PROCESS", "FLOW_TYPE_PARALLEL",
                                  "FLOW_TYPE_SEQUENTIAL"));
    json_t *statuses = json_array();
    for (int s = FLOW_RUN_PENDING; s <= FLOW_RUN_CANCELLED; s++)
        json_array_append_new(statuses, json_string(flow_run_status_name((flow_run_status)s)));
    json_object_set_new(out, "statuses", statuses);
    seed_print(out);
    flow_engine_free(engine);
    return 0;
}
