/* retry_backoff.c -- CrewAI's "Retry with exponential backoff" (Error
 * Handling and Retries). The Python flow routes "error" back to itself with
 * time.sleep(2 ** retry_count) and gives up into handle_failure after 3
 * retries. In libflow that is policy, not plumbing: risky_operation has
 * retries: 3 with exponential backoff, and handle_failure is its fallback,
 * receiving the error and the number of attempts.
 *
 *   build/examples/retry_backoff [FAILURES] [BASE_DELAY_SECONDS]
 *
 * The fake external API fails FAILURES times (default 2) before answering.
 * With 2 the third attempt succeeds; with 5 the retries run out and the
 * fallback's {"error", "retries"} is the result.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <flow.h>

static atomic_int calls;
static int failures = 2;
static struct timespec started;

static double elapsed(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - started.tv_sec) + (double)(now.tv_nsec - started.tv_nsec) / 1e9;
}

static int risky_operation(flow_ctx *ctx)
{
    int n = atomic_fetch_add(&calls, 1) + 1;
    fprintf(stderr, "%6.3fs risky_operation attempt %d\n", elapsed(), flow_ctx_attempt(ctx));
    if (n <= failures) {
        flow_ctx_fail(ctx, "APIError: service unavailable (call %d)", n);
        return 1;
    }
    flow_ctx_set_state_take(ctx, "result", json_string("data from the API"));
    flow_ctx_set_output_take(ctx, json_string("success"));
    return 0;
}

static int handle_failure(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx); /* {error, task, activation, attempts} */
    json_t *out = json_pack("{s:O,s:i}", "error", json_object_get(in, "error"), "retries",
                            (int)json_integer_value(json_object_get(in, "attempts")) - 1);
    return flow_ctx_set_output_take(ctx, out) == FLOW_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        failures = atoi(argv[1]);
    double base = argc > 2 ? strtod(argv[2], NULL) : 0.1;
    clock_gettime(CLOCK_MONOTONIC, &started);

    flow_error err;
    flow *f = flow_new("robust-flow", &err);
    flow_task *risky = flow_add_task(f, "risky_operation", &err);
    flow_task *failed = flow_add_task(f, "handle_failure", &err);
    flow_task_set_fn(risky, risky_operation, NULL);
    flow_task_set_fn(failed, handle_failure, NULL);
    flow_task_set_retries(risky, 3);
    /* 2 ** retry_count, scaled by `base`: base, 2*base, 4*base */
    flow_backoff backoff = {.delay = base, .factor = 2, .max_delay = 60, .jitter = false};
    flow_task_set_backoff(risky, &backoff);
    flow_task_set_fallback(risky, failed);

    json_t *result = NULL;
    flow_run_status status = flow_run_simple(f, NULL, 2, &result, &err);
    char *text = json_dumps(result, JSON_ENCODE_ANY | JSON_SORT_KEYS);
    printf("%s\n", text ? text : "null");
    fprintf(stderr, "%6.3fs run %s after %d calls\n", elapsed(), flow_run_status_name(status),
            atomic_load(&calls));
    free(text);
    json_decref(result);
    flow_free(f);
    return status == FLOW_RUN_COMPLETED ? 0 : 1;
}
