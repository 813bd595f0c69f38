/* flowforge_routines.c -- FlowForge's "Creating a Flow", "Adding Routines",
 * "Connecting Routines" and "Executing Flows", in C.
 *
 * A flow named "my_flow" gets three routines (tasks running C functions): one
 * under a given id ("my_routine") and two under generated ids, as
 * add_routine(routine) does without an id. routine_1's event "output" is
 * connected to routine_2 with param_mapping {"source_param": "target_param"}.
 * routine_1 emits three events while it runs, and each emission is one
 * activation of routine_2 at once: routine_2 runs while routine_1 is still
 * busy (streaming). execute(entry_routine_id, entry_params) is a run started
 * from one entry task with the params as its input; the others (my_routine)
 * do not run. The JobState is the run as JSON (flow_run_to_json).
 *
 *   build/examples/seeds/flowforge_routines
 *
 * Prints {"flow", "routines", "job_state", "received", "streamed"}: the ids,
 * the run as JSON, routine_2's inputs in order, and how many of them arrived
 * while routine_1 was still running.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <flow.h>

#include "seed_report.h"

static atomic_int source_running;
static atomic_int streamed;

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* routine_1: emits "output" three times, then keeps working a little. */
static int producer(flow_ctx *ctx)
{
    atomic_store(&source_running, 1);
    json_t *data = json_object_get(flow_ctx_input(ctx), "data"); /* entry_params["data"] */
    for (int i = 1; i <= 3; i++) {
        json_t *payload = json_pack("{s:i,s:O}", "source_param", i, "data",
                                    data ? data : json_null());
        flow_err rc = flow_ctx_emit(ctx, "output", payload); /* goes out now */
        json_decref(payload);
        if (rc != FLOW_OK)
            return 1;
        pause_ms(40);
    }
    pause_ms(100);
    atomic_store(&source_running, 0);
    return flow_ctx_set_output_take(ctx, json_string("emitted 3 events")) ? 1 : 0;
}

/* routine_2 (slot "input"): gets each payload with source_param renamed. */
static int consumer(flow_ctx *ctx)
{
    if (atomic_load(&source_running))
        atomic_fetch_add(&streamed, 1);
    return flow_ctx_set_output(ctx, flow_ctx_input(ctx)) == FLOW_OK ? 0 : 1;
}

static int idle(flow_ctx *ctx)
{
    return flow_ctx_set_output_take(ctx, json_string("my_routine ran")) ? 1 : 0;
}

/* flow.add_routine(routine, routine_id=id): `id` NULL generates one. The id,
 * borrowed from the flow, or NULL with a message on stderr. */
static const char *add_routine(flow *f, flow_task_fn fn, const char *id)
{
    char generated[32];
    if (!id) {
        snprintf(generated, sizeof(generated), "routine_%zu", flow_task_count(f));
        id = generated;
    }
    flow_error err;
    flow_task *t = flow_add_task(f, id, &err);
    if (!t || flow_task_set_fn(t, fn, NULL) != FLOW_OK) {
        fprintf(stderr, "add_routine: %s\n", t ? "cannot set the body" : err.message);
        return NULL;
    }
    return flow_task_name(t);
}

int main(void)
{
    flow_error err;
    flow *f = flow_new("my_flow", &err); /* Flow(flow_id="my_flow") */
    flow_engine *engine = flow_engine_new(&(flow_engine_options){.jobs = 4}, &err);
    if (!f || !engine) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    const char *mine = add_routine(f, idle, "my_routine");
    const char *r1 = add_routine(f, producer, NULL); /* routine_1 */
    const char *r2 = add_routine(f, consumer, NULL); /* routine_2 */
    if (!mine || !r1 || !r2)
        return 1;
    json_t *map = json_pack("{s:s}", "source_param", "target_param");
    flow_err rc = flow_connect(f, r1, "output", r2, map, &err); /* param_mapping */
    json_decref(map);
    if (rc != FLOW_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }

    /* job_state = flow.execute(entry_routine_id=r1, entry_params={"data": "test"}) */
    json_t *params = json_pack("{s:s}", "data", "test");
    flow_run *run = seed_run(engine, f, params, r1);
    json_decref(params);
    json_t *routines = json_pack("[s,s,s]", mine, r1, r2);
    flow_free(f);
    if (!run) {
        json_decref(routines);
        flow_engine_free(engine);
        return 1;
    }
    int status = flow_run_get_status(run) == FLOW_RUN_COMPLETED ? 0 : 1;
    json_t *received = json_array();
    for (size_t i = 0; i < flow_run_activation_count(run); i++) {
        flow_activation_info info;
        flow_run_activation(run, i, &info);
        if (strcmp(info.task, "routine_2") == 0 && info.output)
            json_array_append(received, info.output);
    }
    seed_print(json_pack("{s:s,s:o,s:o,s:o,s:i}", "flow", "my_flow", "routines", routines,
                         "job_state", flow_run_to_json(run), "received", received, "streamed",
                         atomic_load(&streamed)));
    flow_run_free(run);
    flow_engine_free(engine);
    return status;
}
