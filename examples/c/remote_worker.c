/* remote_worker.c -- a C worker (docs/c-api.md, "Workers"): serves C
 * functions to the `fn: NAME` tasks of flows run with `executor: remote`,
 * such as examples/c/remote_worker.yaml, through Redis.
 *
 *   build/examples/remote_worker [--redis URL] [--name NAME] [--queue Q]
 *                                [--concurrency N] [--claim-after SECONDS]
 *
 * and in another terminal:
 *
 *   flow run examples/c/remote_worker.yaml --redis URL --input n=4
 *
 * SIGTERM or SIGINT stop it cleanly: it takes nothing new, finishes and
 * publishes what runs, and exits 0.
 *
 * The functions:
 *   noop    nothing (output null): for measuring the worker itself
 *   stamp   the time it started, in microseconds since the epoch (for
 *           measuring the latency from submit to start)
 *   square  input {"n": N} or N -> N * N; counts its calls in state key
 *           `squares` and remembers the last in `last_square`
 *   report  emits event `squared` with its input, appends it to state key
 *           `reports`, and returns the state it was given (`squares`)
 *   flaky   fails until attempt {"succeed_on": K} (default 3), then returns
 *           the attempt number
 *   slow    runs until asked to stop (a timeout or a cancel) and fails
 *           saying that it saw the cancellation
 *   hold    appends "TASK ATTEMPT PID" to the file named by $REMOTE_WORKER_MARKS
 *           (when set), then, when $REMOTE_WORKER_HOLD is set or its input
 *           has "hold": true, waits to be cancelled, and then goes on for
 *           "ignore_cancel_ms" more (default 0); returns its pid
 *   approve asks a person to approve input {"what": TEXT} (request id
 *           {"id": ID}, default TASK-ACTIVATION; the answer also goes to
 *           state key `decision`); returns {"what", "approved", "by"}.
 *           {"selection": true} asks a selection without options (refused);
 *           {"emit": N} emits `asking` N times first, each time it runs
 *   ticker  emits `tick` {"n": I} for I in 1..{"ticks": N} (default 1)
 *           while it runs, then waits up to 10 s for the file {"until": PATH}
 *           to exist (a subscriber of `tick` makes it); returns whether it
 *           saw it: events reach the runner while the function runs
 *   where   returns {"item", "index"} of a foreach activation
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep, clock_gettime */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <flow.h>

static flow_worker *worker;

static void on_signal(int sig)
{
    (void)sig;
    flow_worker_stop(worker); /* async-signal-safe */
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int noop(flow_ctx *ctx)
{
    (void)ctx;
    return 0;
}

static int stamp(flow_ctx *ctx)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_int_t us = (json_int_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    flow_ctx_set_output_take(ctx, json_integer(us));
    return 0;
}

static int square(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    json_t *n = json_is_object(in) ? json_object_get(in, "n") : in;
    if (!json_is_number(n)) {
        flow_ctx_fail(ctx, "square needs a number or {\"n\": number}");
        return 1;
    }
    double v = json_number_value(n) * json_number_value(n);
    json_t *out = json_is_integer(n) ? json_integer((json_int_t)v) : json_real(v);
    flow_ctx_set_state(ctx, "last_square", out);
    flow_ctx_set_output_take(ctx, out);
    flow_ctx_incr_state(ctx, "squares", 1);
    return 0;
}

static int report(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    flow_ctx_emit(ctx, "squared", in);
    flow_ctx_append_state(ctx, "reports", in);
    json_t *seen = flow_ctx_get_state(ctx, "squares");
    flow_ctx_set_output_take(ctx, seen ? seen : json_null());
    return 0;
}

static int flaky(flow_ctx *ctx)
{
    json_t *k = json_object_get(flow_ctx_input(ctx), "succeed_on");
    int succeed_on = json_is_integer(k) ? (int)json_integer_value(k) : 3;
    int attempt = flow_ctx_attempt(ctx);
    if (attempt < succeed_on) {
        flow_ctx_fail(ctx, "flaky: attempt %d fails", attempt);
        return 1;
    }
    flow_ctx_set_output_take(ctx, json_integer(attempt));
    return 0;
}

static int slow(flow_ctx *ctx)
{
    long waited = 0;
    while (!flow_ctx_is_cancelled(ctx)) {
        nap_ms(10);
        waited += 10;
    }
    flow_ctx_fail(ctx, "slow saw the cancellation after %ld ms", waited);
    return 1;
}

static int hold(flow_ctx *ctx)
{
    const char *marks = getenv("REMOTE_WORKER_MARKS");
    FILE *f = marks ? fopen(marks, "a") : NULL;
    if (f) {
        fprintf(f, "%s %d %ld\n", flow_ctx_task_name(ctx), flow_ctx_attempt(ctx), (long)getpid());
        fclose(f);
    }
    json_t *in = flow_ctx_input(ctx);
    bool wait = getenv("REMOTE_WORKER_HOLD") || json_is_true(json_object_get(in, "hold"));
    while (wait && !flow_ctx_is_cancelled(ctx))
        nap_ms(10);
    json_t *more = json_object_get(in, "ignore_cancel_ms");
    if (json_is_integer(more))
        nap_ms((long)json_integer_value(more));
    flow_ctx_set_output_take(ctx, json_integer((json_int_t)getpid()));
    return 0;
}

static int approve(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    const char *what = json_string_value(json_object_get(in, "what"));
    json_int_t notes = json_integer_value(json_object_get(in, "emit"));
    for (json_int_t i = 1; i <= notes; i++) { /* each time it runs, before it asks */
        json_t *data = json_pack("{s:I}", "n", i);
        flow_ctx_emit(ctx, "asking", data);
        json_decref(data);
    }
    char message[300];
    snprintf(message, sizeof(message), "Approve %s?", what ? what : "this");
    flow_feedback req = {
        .type = json_is_true(json_object_get(in, "selection")) ? FLOW_FEEDBACK_SELECTION
                                                                : FLOW_FEEDBACK_APPROVAL,
        .message = message,
        .channel_key = "decision",
        .id = json_string_value(json_object_get(in, "id")),
    };
    json_t *answer = NULL;
    flow_err rc = flow_ctx_request_feedback(ctx, &req, &answer);
    if (rc == FLOW_EWAITING)
        return 0; /* runs again, as the same attempt, once answered */
    if (rc != FLOW_OK)
        return 1; /* the reason is recorded already */
    flow_ctx_set_output_take(ctx, json_pack("{s:s?,s:O?,s:O?}", "what", what, "approved",
                                            json_object_get(answer, "approved"), "by",
                                            json_object_get(answer, "by")));
    json_decref(answer);
    return 0;
}

static int ticker(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    json_int_t ticks = json_integer_value(json_object_get(in, "ticks"));
    for (json_int_t i = 1; i <= (ticks > 0 ? ticks : 1); i++) {
        json_t *data = json_pack("{s:I}", "n", i);
        flow_ctx_emit(ctx, "tick", data); /* copies it */
        json_decref(data);
    }
    const char *until = json_string_value(json_object_get(in, "until"));
    bool seen = false;
    for (int waited = 0; until && !seen && waited < 10000 && !flow_ctx_is_cancelled(ctx);
         waited += 10) {
        seen = access(until, F_OK) == 0;
        if (!seen)
            nap_ms(10);
    }
    flow_ctx_set_output_take(ctx, json_boolean(seen));
    return 0;
}

static int where(flow_ctx *ctx)
{
    json_t *item = flow_ctx_item(ctx);
    flow_ctx_set_output_take(ctx, json_pack("{s:O?,s:I}", "item", item, "index",
                                            (json_int_t)flow_ctx_index(ctx)));
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: remote_worker [--redis URL] [--name NAME] [--queue Q] "
                    "[--concurrency N] [--claim-after SECONDS]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *queues[2] = {NULL, NULL};
    flow_worker_options o = {0};
    o.queues = queues;
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        if (!strcmp(argv[i], "--redis"))
            url = v;
        else if (!strcmp(argv[i], "--name"))
            o.name = v;
        else if (!strcmp(argv[i], "--queue"))
            queues[0] = v;
        else if (!strcmp(argv[i], "--concurrency"))
            o.concurrency = atoi(v);
        else if (!strcmp(argv[i], "--claim-after"))
            o.claim_after = atof(v);
        else
            return usage();
    }
    flow_error err;
    worker = flow_worker_new(url, &o, &err);
    if (!worker) {
        fprintf(stderr, "remote_worker: %s\n", err.message);
        return 1;
    }
    static const struct {
        const char *name;
        flow_task_fn fn;
    } fns[] = {{"noop", noop},   {"stamp", stamp}, {"square", square}, {"report", report},
               {"flaky", flaky}, {"slow", slow},   {"hold", hold},     {"approve", approve},
               {"ticker", ticker}, {"where", where}};
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
        if (flow_worker_register(worker, fns[i].name, fns[i].fn, NULL) != FLOW_OK) {
            fprintf(stderr, "remote_worker: cannot register %s\n", fns[i].name);
            flow_worker_free(worker);
            return 1;
        }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    flow_err rc = flow_worker_run(worker, &err);
    if (rc != FLOW_OK)
        fprintf(stderr, "remote_worker: %s\n", err.message);
    flow_worker_free(worker);
    return rc == FLOW_OK ? 0 : 1;
}
