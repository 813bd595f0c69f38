/* design_flow_result.c -- the flow-system design document: "Basic
 * Result Structure" (FlowResult: process_id, status, start_time, end_time,
 * output, error, traceback).
 *
 * After a run, flow_run_activation() gives one such record per activation:
 * id, task, status, start and end times, output, error, and a traceback-like
 * context: the task path, the attempt, and for commands the exit status and
 * the last lines of stderr. Three tasks show the cases: a C task that
 * completes, a C task that fails on every attempt (retries: 1), and a command
 * that fails with a message on stderr. Both failing tasks use
 * on_error: continue, so the run goes on and ends `failed`.
 *
 *   build/examples/seeds/design_flow_result
 *
 * Prints {"run_status", "results": [FlowResult, ...]}, times as RFC 3339
 * strings made from the epoch seconds the API gives.
 */
#define _POSIX_C_SOURCE 200809L /* gmtime_r */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <flow.h>

#include "seed_report.h"

static int compute(flow_ctx *ctx)
{
    return flow_ctx_set_output_take(ctx, json_pack("{s:i}", "answer", 42)) ? 1 : 0;
}

static int broken(flow_ctx *ctx)
{
    flow_ctx_fail(ctx, "division by zero in step %d", flow_ctx_attempt(ctx));
    return 1;
}

/* Epoch seconds as "2026-11-22T03:07:01.412Z", or null for 0. */
static json_t *iso_time(double t)
{
    if (t <= 0)
        return json_null();
    time_t secs = (time_t)t;
    struct tm tm;
    char buf[48], out[64];
    if (!gmtime_r(&secs, &tm) || !strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm))
        return json_null();
    snprintf(out, sizeof(out), "%s.%03dZ", buf, (int)((t - (double)secs) * 1000) % 1000);
    return json_string(out);
}

int main(void)
{
    flow_error err;
    flow *f = flow_new("flow-result", &err);
    flow_engine *engine = flow_engine_new(NULL, &err);
    if (!f || !engine) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    flow_task *ok = flow_add_task(f, "compute", NULL);
    flow_task *bad = flow_add_task(f, "broken", NULL);
    flow_task *cmd = flow_add_task(f, "command", NULL);
    flow_task_set_fn(ok, compute, NULL);
    flow_task_set_fn(bad, broken, NULL);
    flow_task_set_retries(bad, 1);
    flow_task_set_backoff(bad, &(flow_backoff){.delay = 0.01, .factor = 1, .max_delay = 1});
    flow_task_set_shell(cmd, "echo starting; echo 'config.yaml: no such file' >&2; exit 3", &err);
    flow_task_set_on_error(bad, FLOW_ON_ERROR_CONTINUE);
    flow_task_set_on_error(cmd, FLOW_ON_ERROR_CONTINUE);

    flow_run *run = seed_run(engine, f, NULL, NULL);
    flow_free(f);
    if (!run) {
        flow_engine_free(engine);
        return 1;
    }
    json_t *results = json_array();
    for (size_t i = 0; i < flow_run_activation_count(run); i++) {
        flow_activation_info a;
        flow_run_activation(run, i, &a);
        json_t *traceback = json_pack("{s:s,s:i}", "path", a.path, "attempt", a.attempts);
        if (a.exit_status >= 0)
            json_object_set_new(traceback, "exit_status", json_integer(a.exit_status));
        if (a.stderr_tail)
            json_object_set_new(traceback, "stderr_tail", json_string(a.stderr_tail));
        char id[160];
        snprintf(id, sizeof(id), "%s/%llu", flow_run_id(run), (unsigned long long)a.id);
        json_array_append_new(results,
                              json_pack("{s:s,s:s,s:s,s:o,s:o,s:O,s:s?,s:o}", "process_id", id,
                                        "task", a.task, "status", flow_act_status_name(a.status),
                                        "start_time", iso_time(a.started_at), "end_time",
                                        iso_time(a.ended_at), "output",
                                        a.output ? a.output : json_null(), "error", a.error,
                                        "traceback", traceback));
    }
    seed_print(json_pack("{s:s,s:o}", "run_status",
                         flow_run_status_name(flow_run_get_status(run)), "results", results));
    flow_run_free(run);
    flow_engine_free(engine);
    return 0;
}
