/* test_engine.c -- the scheduler's semantics through the public C API:
 * joins, after_any rounds, when trees, routers and loops, failure
 * propagation, retries, error strategies, timeouts, state, results. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <pthread.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static flow_engine *engine;

static int setup(void **state)
{
    (void)state;
    flow_engine_options o = {.jobs = 2};
    engine = flow_engine_new(&o, NULL);
    return engine ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    flow_engine_free(engine);
    return 0;
}

/* A task body that appends its name to a shared log (under a mutex) and
 * outputs its name. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char order_log[4096];

static int log_task(flow_ctx *ctx)
{
    pthread_mutex_lock(&log_mu);
    size_t n = strlen(order_log);
    snprintf(order_log + n, sizeof(order_log) - n, "%s ", flow_ctx_task_name(ctx));
    pthread_mutex_unlock(&log_mu);
    flow_ctx_set_output_take(ctx, json_string(flow_ctx_task_name(ctx)));
    return 0;
}

static void test_chain_and_join_input(void **state)
{
    (void)state;
    order_log[0] = '\0';
    flow *f = flow_new("join", NULL);
    flow_task *a = th_add(f, "a", log_task);
    flow_task *b = th_add(f, "b", log_task);
    flow_task *c = th_add(f, "c", log_task);
    flow_task *d = th_add(f, "d", NULL);
    flow_task_after(c, a);
    flow_task_after(c, b);
    flow_task_after(d, c); /* a no-op passes its input on */
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    /* c ran once, after both; d's output is c's output (its input). */
    assert_int_equal(th_count_acts(r, "c", FLOW_ACT_COMPLETED), 1);
    assert_string_equal(json_string_value(flow_run_result(r)), "c");
    assert_non_null(strstr(order_log, "c "));
    assert_true(strstr(order_log, "c ") > strstr(order_log, "a "));
    assert_true(strstr(order_log, "c ") > strstr(order_log, "b "));
    flow_run_free(r);
    flow_free(f);
}

static int capture_input(flow_ctx *ctx)
{
    flow_ctx_set_output(ctx, flow_ctx_input(ctx));
    return 0;
}

static void test_and_input_is_object(void **state)
{
    (void)state;
    flow *f = flow_new("input", NULL);
    flow_task *a = th_add(f, "a", log_task);
    flow_task *b = th_add(f, "b", log_task);
    flow_task *c = th_add(f, "c", capture_input);
    flow_task_after(c, a);
    flow_task_after(c, b);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    json_t *res = flow_run_result(r);
    assert_true(json_is_object(res));
    assert_string_equal(json_string_value(json_object_get(res, "a")), "a");
    assert_string_equal(json_string_value(json_object_get(res, "b")), "b");
    flow_run_free(r);
    flow_free(f);
}

static atomic_int slow_done;

static int slow_task(flow_ctx *ctx)
{
    usleep(100 * 1000);
    atomic_fetch_add(&slow_done, 1);
    return log_task(ctx);
}

static void test_after_any_fires_once(void **state)
{
    (void)state;
    atomic_store(&slow_done, 0);
    flow *f = flow_new("any", NULL);
    flow_task *fast = th_add(f, "fast", log_task);
    flow_task *slow = th_add(f, "slow", slow_task);
    flow_task *first = th_add(f, "first", capture_input);
    flow_task_after_any(first, fast);
    flow_task_after_any(first, slow);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(th_count_acts(r, "first", FLOW_ACT_COMPLETED), 1);
    /* nothing was cancelled: slow completed too */
    assert_int_equal(atomic_load(&slow_done), 1);
    flow_activation_info info;
    for (size_t i = 0; i < flow_run_activation_count(r); i++) {
        flow_run_activation(r, i, &info);
        if (!strcmp(info.task, "first"))
            assert_string_equal(json_string_value(info.output), "fast");
    }
    flow_run_free(r);
    flow_free(f);
}

static int failing(flow_ctx *ctx)
{
    flow_ctx_fail(ctx, "boom in %s", flow_ctx_task_name(ctx));
    return 1;
}

static void test_fail_stops_run(void **state)
{
    (void)state;
    flow *f = flow_new("fail", NULL);
    flow_task *a = th_add(f, "a", failing);
    flow_task *b = th_add(f, "b", log_task);
    flow_task_after(b, a);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_FAILED);
    assert_non_null(strstr(flow_run_error(r), "task 'a' failed: boom in a"));
    assert_int_equal(th_count_acts(r, "b", FLOW_ACT_COMPLETED), 0);
    flow_run_free(r);
    flow_free(f);
}

static void test_continue_skips_dependants(void **state)
{
    (void)state;
    flow *f = flow_new("continue", NULL);
    flow_task *a = th_add(f, "a", failing);
    flow_task *b = th_add(f, "b", log_task);
    flow_task *c = th_add(f, "c", log_task);
    flow_task *other = th_add(f, "other", log_task);
    flow_task *opt = th_add(f, "opt", capture_input);
    flow_task_set_on_error(a, FLOW_ON_ERROR_CONTINUE);
    flow_task_after(b, a);
    flow_task_after(c, b);
    flow_task_optional(opt, a);
    flow_task_after(opt, other);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_FAILED);
    assert_int_equal(th_count_acts(r, "a", FLOW_ACT_FAILED), 1);
    assert_int_equal(th_count_acts(r, "b", FLOW_ACT_SKIPPED), 1);
    assert_int_equal(th_count_acts(r, "c", FLOW_ACT_SKIPPED), 1);
    assert_int_equal(th_count_acts(r, "other", FLOW_ACT_COMPLETED), 1);
    /* optional dependency failed: opt still ran */
    assert_int_equal(th_count_acts(r, "opt", FLOW_ACT_COMPLETED), 1);
    flow_run_free(r);
    flow_free(f);
}

static void test_ignore_and_fallback(void **state)
{
    (void)state;
    flow *f = flow_new("strategies", NULL);
    flow_task *a = th_add(f, "a", failing);
    flow_task *b = th_add(f, "b", capture_input);
    flow_task *c = th_add(f, "c", failing);
    flow_task *fb = th_add(f, "fb", capture_input);
    flow_task *d = th_add(f, "d", capture_input);
    flow_task_set_on_error(a, FLOW_ON_ERROR_IGNORE);
    flow_task_after(b, a);
    flow_task_set_fallback(c, fb);
    flow_task_after(d, c);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(th_count_acts(r, "b", FLOW_ACT_COMPLETED), 1);
    assert_int_equal(th_count_acts(r, "fb", FLOW_ACT_COMPLETED), 1);
    assert_int_equal(th_count_acts(r, "d", FLOW_ACT_COMPLETED), 1);
    flow_activation_info info;
    for (size_t i = 0; i < flow_run_activation_count(r); i++) {
        flow_run_activation(r, i, &info);
        if (!strcmp(info.task, "b"))
            assert_true(json_is_null(info.output)); /* ignored: output null */
        if (!strcmp(info.task, "d")) {
            /* the fallback's output (its input: the error) stands for c's */
            json_t *e = json_object_get(info.output, "error");
            assert_non_null(e);
            assert_string_equal(json_string_value(e), "boom in c");
        }
    }
    flow_run_free(r);
    flow_free(f);
}

static atomic_int flaky_calls;

static int flaky(flow_ctx *ctx)
{
    int n = atomic_fetch_add(&flaky_calls, 1) + 1;
    if (flow_ctx_attempt(ctx) != n)
        return flow_ctx_fail(ctx, "attempt %d on call %d", flow_ctx_attempt(ctx), n), 1;
    if (n < 3)
        return flow_ctx_fail(ctx, "not yet"), 1;
    flow_ctx_set_output_take(ctx, json_integer(n));
    return 0;
}

static void test_retries_with_backoff(void **state)
{
    (void)state;
    atomic_store(&flaky_calls, 0);
    flow *f = flow_new("retry", NULL);
    flow_task *a = th_add(f, "a", flaky);
    flow_task_set_retries(a, 3);
    flow_backoff b = {.delay = 0.05, .factor = 2, .max_delay = 1, .jitter = false};
    flow_task_set_backoff(a, &b);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_int_equal(atomic_load(&flaky_calls), 3);
    assert_int_equal(json_integer_value(flow_run_result(r)), 3);
    /* backoff waited 0.05 + 0.1 s between the attempts */
    assert_true(secs >= 0.14);
    flow_activation_info info;
    flow_run_activation(r, 0, &info);
    assert_int_equal(info.attempts, 3);
    flow_run_free(r);
    /* retries exhausted: the run fails after 1 + 1 attempts */
    atomic_store(&flaky_calls, 0);
    flow_task_set_retries(a, 1); /* frozen now */
    flow_free(f);
}

static int sleepy(flow_ctx *ctx)
{
    for (int i = 0; i < 200 && !flow_ctx_is_cancelled(ctx); i++)
        usleep(10 * 1000);
    return 0;
}

static int deaf(flow_ctx *ctx)
{
    (void)ctx;
    usleep(1500 * 1000); /* ignores cancellation */
    return 0;
}

static void test_timeouts(void **state)
{
    (void)state;
    flow *f = flow_new("timeout", NULL);
    flow_task *a = th_add(f, "a", sleepy);
    flow_task_set_timeout(a, 0.1);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_FAILED);
    assert_non_null(strstr(flow_run_error(r), "timed out after 0.1s"));
    flow_run_free(r);
    flow_free(f);

    /* A body that ignores cancellation is abandoned after the grace period;
     * the pool keeps working meanwhile. */
    f = flow_new("deaf", NULL);
    flow_task *s = th_add(f, "s", deaf);
    flow_task_set_timeout(s, 0.1);
    flow_task_set_kill_grace(s, 0.1);
    flow_task_set_on_error(s, FLOW_ON_ERROR_CONTINUE);
    flow_task *x = th_add(f, "x", log_task);
    flow_task *y = th_add(f, "y", log_task);
    flow_task_after(y, x);
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_FAILED);
    assert_int_equal(th_count_acts(r, "y", FLOW_ACT_COMPLETED), 1);
    assert_int_equal(th_count_acts(r, "s", FLOW_ACT_FAILED), 1);
    assert_non_null(strstr(flow_run_error(r), "abandoned"));
    flow_run_free(r);
    flow_free(f);
    usleep(1600 * 1000); /* let the abandoned body return before teardown */
}

static int writer(flow_ctx *ctx)
{
    json_t *n = flow_ctx_get_state(ctx, "n");
    json_int_t v = json_integer_value(n);
    json_decref(n);
    flow_ctx_set_state_take(ctx, "n", json_integer(v + 1));
    /* read-your-writes */
    json_t *again = flow_ctx_get_state(ctx, "n");
    assert_int_equal(json_integer_value(again), v + 1);
    json_decref(again);
    char key[64];
    snprintf(key, sizeof(key), "by_%s", flow_ctx_task_name(ctx));
    flow_ctx_set_state_take(ctx, key, json_true());
    return 0;
}

static int writer_then_fail(flow_ctx *ctx)
{
    flow_ctx_set_state_take(ctx, "lost", json_true());
    return 1;
}

static void test_state_writes(void **state)
{
    (void)state;
    flow *f = flow_new("state", NULL);
    json_t *init = json_pack("{s:i}", "n", 10);
    flow_set_initial_state(f, init);
    json_decref(init);
    flow_task *a = th_add(f, "a", writer);
    flow_task *b = th_add(f, "b", writer);
    flow_task *c = th_add(f, "c", writer_then_fail);
    flow_task_after(b, a);
    flow_task_set_on_error(c, FLOW_ON_ERROR_CONTINUE);
    flow_task_set_save(b, "saved");
    json_t *inputs = json_pack("{s:s}", "who", "me");
    flow_run *r;
    assert_int_equal(th_run(engine, f, inputs, &r), FLOW_RUN_FAILED);
    json_decref(inputs);
    json_t *st = flow_run_state(r);
    assert_int_equal(json_integer_value(json_object_get(st, "n")), 12);
    assert_true(json_is_true(json_object_get(st, "by_a")));
    assert_true(json_is_true(json_object_get(st, "by_b")));
    assert_string_equal(json_string_value(json_object_get(st, "who")), "me"); /* inputs merged */
    assert_null(json_object_get(st, "lost")); /* failed attempt's writes discarded */
    assert_true(json_is_null(json_object_get(st, "saved")));
    json_decref(st);
    flow_run_free(r);
    flow_free(f);
}

/* A router that loops `again` three times, then says `done`. */
static int counter_router(flow_ctx *ctx)
{
    json_t *n = flow_ctx_get_state(ctx, "i");
    json_int_t i = json_integer_value(n) + 1;
    json_decref(n);
    flow_ctx_set_state_take(ctx, "i", json_integer(i));
    flow_ctx_set_output_take(ctx, json_string(i < 3 ? "again" : "done"));
    return 0;
}

static void test_router_loop(void **state)
{
    (void)state;
    flow *f = flow_new("loop", NULL);
    flow_task *head = th_add(f, "head", log_task);
    flow_task *route = th_add(f, "route", counter_router);
    flow_task *finish = th_add(f, "finish", log_task);
    flow_task_set_start(head, true);
    flow_task_on(head, "again");
    flow_task_after(route, head);
    flow_task_set_router(route, true);
    flow_task_on(finish, "done");
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(th_count_acts(r, "head", FLOW_ACT_COMPLETED), 3);
    assert_int_equal(th_count_acts(r, "route", FLOW_ACT_COMPLETED), 3);
    assert_int_equal(th_count_acts(r, "finish", FLOW_ACT_COMPLETED), 1);
    flow_run_free(r);
    flow_free(f);
}

static int always_again(flow_ctx *ctx)
{
    flow_ctx_set_output_take(ctx, json_string("again"));
    return 0;
}

static void test_runaway_loop_is_bounded(void **state)
{
    (void)state;
    flow *f = flow_new("runaway", NULL);
    flow_task *head = th_add(f, "head", always_again);
    flow_task_set_start(head, true);
    flow_task_on(head, "again");
    flow_task_set_router(head, true);
    flow_task_set_max_activations(head, 50);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_FAILED);
    assert_non_null(strstr(flow_run_error(r), "max_activations (50)"));
    assert_int_equal(th_count_acts(r, "head", FLOW_ACT_COMPLETED), 50);
    flow_run_free(r);
    flow_free(f);
}

static void test_when_tree_and_labels(void **state)
{
    (void)state;
    /* publish when {or: [auto_approve, review]}; the router says auto */
    flow *f = flow_new("when", NULL);
    flow_task *a = th_add(f, "a", log_task);
    flow_task *b = th_add(f, "b", log_task);
    flow_task *c = th_add(f, "c", log_task);
    flow_task *j = th_add(f, "j", capture_input);
    assert_int_equal(flow_task_when(j, flow_cond_and(2, flow_cond_task("a"),
                                                     flow_cond_or(2, flow_cond_task("b"),
                                                                  flow_cond_task("c")))),
                     FLOW_OK);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(th_count_acts(r, "j", FLOW_ACT_COMPLETED), 1);
    flow_run_free(r);
    flow_free(f);
    (void)a;
    (void)b;
    (void)c;
}

static void test_validation_errors(void **state)
{
    (void)state;
    flow *f = flow_new("cycle", NULL);
    flow_task *a = th_add(f, "a", log_task);
    flow_task *b = th_add(f, "b", log_task);
    flow_task *c = th_add(f, "c", log_task);
    flow_task *s = th_add(f, "s", log_task);
    flow_task_after(a, c);
    flow_task_after(b, a);
    flow_task_after(c, b);
    flow_task_when(s, flow_cond_task("nope"));
    flow_diags *d = flow_diags_new();
    flow_error err;
    assert_int_equal(flow_validate(f, d, &err), FLOW_EVALIDATION);
    /* the cycle, the unknown name, and no task left to start with */
    assert_int_equal(flow_diags_error_count(d), 3);
    int seen_cycle = 0, seen_unknown = 0, seen_start = 0;
    for (size_t i = 0; i < flow_diags_count(d); i++) {
        const flow_error *e = flow_diags_get(d, i, NULL);
        seen_cycle |= strstr(e->message, "cycle") && strstr(e->message, "a -> b -> c") != NULL;
        seen_cycle |= strstr(e->message, "cycle") && strstr(e->message, "b -> c -> a") != NULL;
        seen_cycle |= strstr(e->message, "cycle") && strstr(e->message, "c -> a -> b") != NULL;
        seen_unknown |= strstr(e->message, "unknown task 'nope' in 'when' of task 's'") != NULL;
        seen_start |= strstr(e->message, "has no start task") != NULL;
    }
    assert_true(seen_start);
    assert_true(seen_cycle);
    assert_true(seen_unknown);
    flow_diags_free(d);
    /* nothing runs */
    assert_null(flow_run_start(engine, f, NULL, &err));
    assert_int_equal(err.code, FLOW_EVALIDATION);
    flow_free(f);
}

static atomic_int wide_count;

static int count_task(flow_ctx *ctx)
{
    (void)ctx;
    atomic_fetch_add_explicit(&wide_count, 1, memory_order_relaxed);
    return 0;
}

static void test_wide_fan_and_long_chain(void **state)
{
    (void)state;
    enum { N = 20000 };
    atomic_store(&wide_count, 0);
    flow *f = flow_new("fan", NULL);
    flow_task *src = th_add(f, "src", count_task);
    flow_task *sink = th_add(f, "sink", count_task);
    flow_task *prev = NULL;
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "m%d", i);
        flow_task *m = th_add(f, name, count_task);
        flow_task_after(m, src);
        flow_task_after(sink, m);
        snprintf(name, sizeof(name), "c%d", i);
        flow_task *c = th_add(f, name, count_task);
        if (prev)
            flow_task_after(c, prev);
        prev = c;
    }
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(atomic_load(&wide_count), 2 * N + 2);
    assert_int_equal(th_count_acts(r, "sink", FLOW_ACT_COMPLETED), 1);
    flow_run_free(r);
    flow_free(f);
}

static void test_skip_down_long_chain(void **state)
{
    (void)state;
    enum { N = 50000 };
    flow *f = flow_new("skipchain", NULL);
    flow_task *prev = th_add(f, "root", failing);
    flow_task_set_on_error(prev, FLOW_ON_ERROR_CONTINUE);
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        flow_task *c = th_add(f, name, count_task);
        flow_task_after(c, prev);
        prev = c;
    }
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_FAILED);
    assert_int_equal(th_count_acts(r, "c49999", FLOW_ACT_SKIPPED), 1);
    flow_run_free(r);
    flow_free(f);
}

struct seen {
    int started, completed, ended;
};

static void observe(const flow_event *ev, void *udata)
{
    struct seen *s = udata;
    if (ev->type == FLOW_EV_TASK_STARTED)
        s->started++;
    if (ev->type == FLOW_EV_TASK_COMPLETED)
        s->completed++;
    if (ev->type == FLOW_EV_RUN_ENDED)
        s->ended++;
}

static void test_observer_sees_everything_before_wait_returns(void **state)
{
    (void)state;
    flow *f = flow_new("observed", NULL);
    flow_task *a = th_add(f, "a", log_task);
    flow_task *b = th_add(f, "b", log_task);
    flow_task_after(b, a);
    struct seen s = {0};
    flow_run_options o = {.on_event = observe, .event_udata = &s};
    flow_run *r = flow_run_start(engine, f, &o, NULL);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_int_equal(s.started, 2);
    assert_int_equal(s.completed, 2);
    assert_int_equal(s.ended, 1);
    flow_run_free(r);
    flow_free(f);
}

static int forever(flow_ctx *ctx)
{
    while (!flow_ctx_is_cancelled(ctx))
        usleep(1000);
    return 1;
}

static void test_cancel(void **state)
{
    (void)state;
    flow *f = flow_new("cancel", NULL);
    th_add(f, "a", forever);
    flow_run *r = flow_run_start(engine, f, NULL, NULL);
    usleep(50 * 1000);
    flow_run_cancel(r, "enough");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_CANCELLED);
    assert_string_equal(flow_run_error(r), "enough");
    assert_int_equal(th_count_acts(r, "a", FLOW_ACT_CANCELLED), 1);
    flow_run_free(r);
    flow_free(f);
}

/* --- values shared between bodies and the scheduler ----------------------- */

static int object_out(flow_ctx *ctx)
{
    return flow_ctx_set_output_take(ctx, json_pack("{s:i}", "v", 1));
}

/* Changes what it gets: its own copies, so nothing in the run changes. */
static int mutator(flow_ctx *ctx)
{
    json_t *x = flow_ctx_get_state(ctx, "x");
    assert_int_equal(json_array_append_new(json_object_get(x, "deep"), json_integer(3)), 0);
    json_decref(x);
    json_t *deps = flow_ctx_deps(ctx);
    assert_int_equal(json_object_set_new(json_object_get(deps, "a"), "changed", json_true()), 0);
    json_decref(deps);
    return 0;
}

/* Holds and drops values it got from the run while the scheduler counts
 * references to the same values for commands (their templates and inputs). */
static int holder(flow_ctx *ctx)
{
    json_t *x = flow_ctx_get_state(ctx, "x");
    usleep(150 * 1000); /* `reader` renders state.x meanwhile */
    json_decref(x);
    json_t *payload = json_pack("{s:[i,i]}", "rows", 1, 2);
    assert_int_equal(flow_ctx_emit(ctx, "ev", payload), FLOW_OK);
    json_decref(payload);
    usleep(150 * 1000); /* `listener` starts with the payload meanwhile */
    return 0;
}

static int short_nap(flow_ctx *ctx)
{
    (void)ctx;
    usleep(50 * 1000);
    return 0;
}

static void test_bodies_get_their_own_values(void **state)
{
    (void)state;
    json_t *init = json_pack("{s:{s:[i,i]}}", "x", "deep", 1, 2);
    flow *f = flow_new("copies", NULL);
    flow_set_initial_state(f, init);
    flow_task *a = th_add(f, "a", object_out);
    flow_task *m = th_add(f, "m", mutator);
    flow_task_after(m, a);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    json_t *st = flow_run_state(r);
    assert_true(json_equal(json_object_get(st, "x"), json_object_get(init, "x")));
    json_decref(st);
    flow_activation_info info;
    assert_int_equal(flow_run_activation(r, 0, &info), FLOW_OK);
    assert_string_equal(info.task, "a");
    assert_null(json_object_get(info.output, "changed"));
    flow_run_free(r);
    flow_free(f);
    json_decref(init);
}

/* Under ThreadSanitizer: a value counted from two threads is a race. */
static void test_bodies_and_commands_share_values(void **state)
{
    (void)state;
    json_t *init = json_pack("{s:{s:[i,i]}}", "x", "deep", 1, 2);
    flow *f = flow_new("shared", NULL);
    flow_set_initial_state(f, init);
    th_add(f, "holder", holder);
    flow_task *nap = th_add(f, "nap", short_nap);
    flow_error err;
    flow_run *r;
    flow_task *reader = th_add(f, "reader", NULL);
    const char *echo_x[] = {"echo", "{{ state.x }}", NULL};
    assert_int_equal(flow_task_set_command(reader, echo_x, &err), FLOW_OK);
    flow_task_after(reader, nap);
    flow_task *listener = th_add(f, "listener", NULL);
    const char *echo_rows[] = {"echo", "{{ input.rows }}", NULL};
    assert_int_equal(flow_task_set_command(listener, echo_rows, &err), FLOW_OK);
    flow_task_on(listener, "ev");
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(th_count_acts(r, "reader", FLOW_ACT_COMPLETED), 1);
    assert_int_equal(th_count_acts(r, "listener", FLOW_ACT_COMPLETED), 1);
    flow_run_free(r);
    flow_free(f);
    json_decref(init);
}

static int read_input(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    return flow_ctx_set_output(ctx, in);
}

static void *run_twice_on(void *arg)
{
    flow *f = arg;
    flow_engine_options o = {.jobs = 2};
    flow_engine *e = flow_engine_new(&o, NULL);
    for (int i = 0; i < 20; i++) {
        flow_run *r;
        th_run(e, f, NULL, &r);
        flow_run_free(r);
    }
    flow_engine_free(e);
    return NULL;
}

/* One flow, run on two engines at once: the runs share nothing they count. */
static void test_one_flow_two_engines(void **state)
{
    (void)state;
    const char *yaml = "name: twice\n"
                       "state: {cfg: {deep: [1, 2]}}\n"
                       "tasks:\n"
                       "  a:\n"
                       "    input: {k: [1, 2, 3]}\n"
                       "  b:\n"
                       "    after: a\n"
                       "    input: '{{ state.cfg }}'\n"
                       "  c:\n"
                       "    after: b\n"
                       "    run: [echo, '{{ state.cfg }}']\n";
    flow_error err;
    flow *f = flow_load_string(yaml, strlen(yaml), "twice.yaml", NULL, &err);
    assert_non_null(f);
    assert_int_equal(flow_bind(f, "a", read_input, NULL), FLOW_OK);
    assert_int_equal(flow_bind(f, "b", read_input, NULL), FLOW_OK);
    pthread_t t1, t2;
    pthread_create(&t1, NULL, run_twice_on, f);
    pthread_create(&t2, NULL, run_twice_on, f);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    flow_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_and_join_input),
        cmocka_unit_test(test_and_input_is_object),
        cmocka_unit_test(test_after_any_fires_once),
        cmocka_unit_test(test_fail_stops_run),
        cmocka_unit_test(test_continue_skips_dependants),
        cmocka_unit_test(test_ignore_and_fallback),
        cmocka_unit_test(test_retries_with_backoff),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_state_writes),
        cmocka_unit_test(test_router_loop),
        cmocka_unit_test(test_runaway_loop_is_bounded),
        cmocka_unit_test(test_when_tree_and_labels),
        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_wide_fan_and_long_chain),
        cmocka_unit_test(test_skip_down_long_chain),
        cmocka_unit_test(test_observer_sees_everything_before_wait_returns),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_bodies_get_their_own_values),
        cmocka_unit_test(test_bodies_and_commands_share_values),
        cmocka_unit_test(test_one_flow_two_engines),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
