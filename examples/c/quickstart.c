/* quickstart.c -- the complete example of docs/c-api.md: a small flow of C
 * tasks with a join, a retry and a state write, run on an engine with an
 * observer, then inspected.
 *
 *   build/examples/quickstart [NAME]
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <flow.h>

/* Start task: its input is the run's inputs. */
static int fetch_user(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    const char *name = json_string_value(json_object_get(in, "name"));
    if (!name || !*name) {
        flow_ctx_fail(ctx, "input 'name' is missing");
        return 1;
    }
    return flow_ctx_set_output_take(ctx, json_pack("{s:s,s:i}", "name", name, "visits", 41));
}

/* Fails on its first attempt, as a network call might; retried. */
static int fetch_quota(flow_ctx *ctx)
{
    if (flow_ctx_attempt(ctx) == 1) {
        flow_ctx_fail(ctx, "quota service: connection reset");
        return 1;
    }
    return flow_ctx_set_output_take(ctx, json_integer(100));
}

/* After both: the input is {"fetch_user": ..., "fetch_quota": ...}. */
static int report(flow_ctx *ctx)
{
    json_t *user = flow_ctx_dep(ctx, "fetch_user"); /* borrowed */
    json_t *quota = flow_ctx_dep(ctx, "fetch_quota");
    json_int_t visits = json_integer_value(json_object_get(user, "visits")) + 1;
    flow_ctx_set_state_take(ctx, "visits", json_integer(visits));
    json_t *out = json_pack("{s:O,s:I,s:I}", "user", json_object_get(user, "name"), "visits",
                            visits, "quota_left", json_integer_value(quota) - visits);
    return flow_ctx_set_output_take(ctx, out);
}

static void on_event(const flow_event *ev, void *udata)
{
    (void)udata;
    if (ev->type == FLOW_EV_TASK_COMPLETED)
        fprintf(stderr, "completed %s\n", ev->task);
    else if (ev->type == FLOW_EV_TASK_RETRYING)
        fprintf(stderr, "retrying %s in %.2fs: %s\n", ev->task, ev->delay, ev->error);
}

int main(int argc, char **argv)
{
    flow_error err;
    flow *f = flow_new("quickstart", &err);
    flow_task *user = flow_add_task(f, "fetch_user", &err);
    flow_task *quota = flow_add_task(f, "fetch_quota", &err);
    flow_task *rep = flow_add_task(f, "report", &err);
    if (!f || !user || !quota || !rep) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    flow_task_set_fn(user, fetch_user, NULL);
    flow_task_set_fn(quota, fetch_quota, NULL);
    flow_task_set_fn(rep, report, NULL);
    flow_task_set_retries(quota, 2);
    flow_backoff backoff = {.delay = 0.05, .factor = 2, .max_delay = 1, .jitter = true};
    flow_task_set_backoff(quota, &backoff);
    flow_task_after(rep, user);
    flow_task_after(rep, quota);

    flow_engine *engine = flow_engine_new(NULL, &err); /* one thread per core */
    if (!engine) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    json_t *inputs = json_pack("{s:s}", "name", argc > 1 ? argv[1] : "ada");
    flow_run_options opts = {.inputs = inputs, .on_event = on_event};
    flow_run *run = flow_run_start(engine, f, &opts, &err);
    json_decref(inputs);
    flow_free(f); /* the run keeps its own reference */
    if (!run) {
        fprintf(stderr, "%s\n", err.message);
        flow_engine_free(engine);
        return 1;
    }
    flow_run_status status = flow_run_wait(run);
    if (status == FLOW_RUN_COMPLETED) {
        char *text = json_dumps(flow_run_result(run), JSON_SORT_KEYS);
        printf("%s\n", text);
        free(text);
    } else {
        fprintf(stderr, "run %s: %s\n", flow_run_status_name(status), flow_run_error(run));
    }
    for (size_t i = 0; i < flow_run_activation_count(run); i++) {
        flow_activation_info info;
        flow_run_activation(run, i, &info);
        fprintf(stderr, "  %-12s %-10s attempts=%d\n", info.task, flow_act_status_name(info.status),
                info.attempts);
    }
    flow_run_free(run);
    flow_engine_free(engine);
    return status == FLOW_RUN_COMPLETED ? 0 : 1;
}
