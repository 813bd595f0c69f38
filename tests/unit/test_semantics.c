/* test_semantics.c -- rules that must not depend on timing: the run's result
 * comes from the end tasks, an input's shape from the declared dependencies,
 * parallel updates of one state key lose nothing when made as operations;
 * and the defaults of flow_configure, generated task names. */
#define _GNU_SOURCE 1
#include "helpers.h"

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
    flow_engine_options o = {.jobs = 4};
    engine = flow_engine_new(&o, NULL);
    return engine ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    flow_engine_free(engine);
    return 0;
}

/* Sleeps a random 0-3 ms, so that parallel tasks finish in any order, then
 * outputs its name. */
static int jitter_name(flow_ctx *ctx)
{
    struct timespec ts = {0, (long)(rand() % 3000) * 1000L};
    nanosleep(&ts, NULL);
    return flow_ctx_set_output_take(ctx, json_string(flow_ctx_task_name(ctx))) ? 1 : 0;
}

static int fail_body(flow_ctx *ctx)
{
    flow_ctx_fail(ctx, "no");
    return 1;
}

static int echo_input(flow_ctx *ctx)
{
    return flow_ctx_set_output(ctx, flow_ctx_input(ctx)) ? 1 : 0;
}

/* ---- 1. the result -------------------------------------------------------- */

static void test_result_from_end_tasks_whatever_the_order(void **state)
{
    (void)state;
    /* a -> (z, b, m): three end tasks finishing in random order, declared
     * z, b, m; `a` is named by them, so it is not an end task. */
    flow *f = flow_new("ends", NULL);
    flow_task *a = th_add(f, "a", jitter_name);
    const char *names[] = {"z", "b", "m"};
    for (int i = 0; i < 3; i++)
        flow_task_after(th_add(f, names[i], jitter_name), a);
    for (int rep = 0; rep < 25; rep++) {
        flow_run *r;
        assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
        char *got = json_dumps(flow_run_result(r), JSON_COMPACT);
        assert_string_equal(got, "{\"z\":\"z\",\"b\":\"b\",\"m\":\"m\"}");
        free(got);
        flow_run_free(r);
    }
    flow_free(f);
}

static void test_result_single_end_task_and_skipped_ends(void **state)
{
    (void)state;
    /* One end task: its output itself, even when other tasks finish later. */
    flow *f = flow_new("one", NULL);
    flow_task *a = th_add(f, "a", jitter_name);
    flow_task *slow = th_add(f, "slow", jitter_name);
    flow_task *end = th_add(f, "end", jitter_name);
    flow_task_after(end, a);
    flow_task_after(end, slow);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_string_equal(json_string_value(flow_run_result(r)), "end");
    flow_run_free(r);
    flow_free(f);

    /* Two end tasks, one skipped (on_error: continue upstream): only the
     * completed one is in the object... and the run fails, so no result;
     * with `ignore` the failed task counts as completed with null. */
    f = flow_new("skip", NULL);
    flow_task *bad = th_add(f, "bad", fail_body);
    flow_task_set_on_error(bad, FLOW_ON_ERROR_IGNORE);
    flow_task *after_bad = th_add(f, "after_bad", echo_input);
    flow_task_after(after_bad, bad);
    th_add(f, "fine", jitter_name);
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    json_t *want = json_pack("{s:n,s:s}", "after_bad", "fine", "fine");
    assert_true(json_equal(flow_run_result(r), want));
    json_decref(want);
    flow_run_free(r);
    flow_free(f);
}

static int route_by_input(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    const char *to = json_string_value(json_object_get(in, "to"));
    return flow_ctx_set_output_take(ctx, json_string(to ? to : "left")) ? 1 : 0;
}

static void test_result_router_is_not_an_end_task(void **state)
{
    (void)state;
    flow *f = flow_new("route", NULL);
    flow_task *router = th_add(f, "router", route_by_input);
    flow_task_set_router(router, true);
    flow_task_on(th_add(f, "left", jitter_name), "left");
    flow_task_on(th_add(f, "right", jitter_name), "right");
    json_t *in = json_pack("{s:s}", "to", "right");
    flow_run *r;
    assert_int_equal(th_run(engine, f, in, &r), FLOW_RUN_COMPLETED);
    json_t *want = json_pack("{s:s}", "right", "right");
    assert_true(json_equal(flow_run_result(r), want));
    json_decref(want);
    json_decref(in);
    flow_run_free(r);
    flow_free(f);
}

/* ---- 2. the shape of an input --------------------------------------------- */

static void test_input_keyed_by_every_dependency(void **state)
{
    (void)state;
    /* join after `a`, optional `opt`: whether `opt` completes or fails, the
     * input is {a: ..., opt: ...}, with null for a failed optional. */
    for (int failing = 0; failing < 2; failing++) {
        flow *f = flow_new("shape", NULL);
        flow_task *a = th_add(f, "a", jitter_name);
        flow_task *opt = th_add(f, "opt", failing ? fail_body : jitter_name);
        flow_task_set_on_error(opt, FLOW_ON_ERROR_CONTINUE);
        flow_task *join = th_add(f, "join", echo_input);
        flow_task_after(join, a);
        flow_task_optional(join, opt);
        flow_run *r;
        flow_run_status st = th_run(engine, f, NULL, &r);
        /* a failure under `continue` ends the run failed, after the join ran */
        assert_int_equal(st, failing ? FLOW_RUN_FAILED : FLOW_RUN_COMPLETED);
        json_t *in = NULL;
        for (size_t i = 0; i < flow_run_activation_count(r); i++) {
            flow_activation_info info;
            assert_int_equal(flow_run_activation(r, i, &info), FLOW_OK);
            if (!strcmp(info.task, "join"))
                in = info.output;
        }
        json_t *want = failing ? json_pack("{s:s,s:n}", "a", "a", "opt")
                               : json_pack("{s:s,s:s}", "a", "a", "opt", "opt");
        assert_non_null(in);
        assert_true(json_equal(in, want));
        json_decref(want);
        flow_run_free(r);
        flow_free(f);
    }
}

static int route_left(flow_ctx *ctx)
{
    return flow_ctx_set_output_take(ctx, json_string("left")) ? 1 : 0;
}

static void test_optional_branch_not_taken(void **state)
{
    (void)state;
    /* A router takes `left`; `x` runs on it, `y` (on `right`) never does.
     * `join` waits for both, optionally: it must still run, once, when the
     * run goes quiet, with null for the branch not taken. `tail` after
     * `join` shows the run goes on from there. */
    flow *f = flow_new("branch", NULL);
    flow_task *route = th_add(f, "route", route_left);
    flow_task_set_router(route, true);
    flow_task *x = th_add(f, "x", jitter_name);
    flow_task_on(x, "left");
    flow_task *y = th_add(f, "y", jitter_name);
    flow_task_on(y, "right");
    flow_task *join = th_add(f, "join", echo_input);
    flow_task_optional(join, x);
    flow_task_optional(join, y);
    flow_task *tail = th_add(f, "tail", echo_input);
    flow_task_after(tail, join);
    for (int rep = 0; rep < 10; rep++) {
        flow_run *r;
        assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
        int joins = 0, tails = 0, ys = 0;
        json_t *in = NULL;
        for (size_t i = 0; i < flow_run_activation_count(r); i++) {
            flow_activation_info info;
            assert_int_equal(flow_run_activation(r, i, &info), FLOW_OK);
            if (!strcmp(info.task, "join")) {
                joins++;
                in = info.output;
            }
            tails += !strcmp(info.task, "tail") && info.status == FLOW_ACT_COMPLETED;
            ys += !strcmp(info.task, "y");
        }
        assert_int_equal(joins, 1);
        assert_int_equal(tails, 1);
        assert_int_equal(ys, 0);
        json_t *want = json_pack("{s:s,s:n}", "x", "x", "y");
        assert_non_null(in);
        assert_true(json_equal(in, want));
        json_decref(want);
        flow_run_free(r);
    }
    flow_free(f);
}

/* ---- 3. operations on one key from parallel activations ------------------- */

static int count_up(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    json_int_t n = json_integer_value(json_object_get(in, "n"));
    struct timespec ts = {0, (long)(rand() % 2000) * 1000L};
    nanosleep(&ts, NULL);
    json_t *tag = json_integer(n);
    char key[32];
    snprintf(key, sizeof(key), "k%lld", (long long)n);
    json_t *by = json_pack("{s:I}", key, n);
    flow_err rc = flow_ctx_incr_state(ctx, "count", 1);
    if (!rc)
        rc = flow_ctx_incr_state(ctx, "sum", (double)n);
    if (!rc)
        rc = flow_ctx_append_state(ctx, "seen", tag);
    if (!rc)
        rc = flow_ctx_merge_state(ctx, "by", by);
    if (!rc)
        rc = flow_ctx_incr_state(ctx, "half", 0.5);
    json_decref(tag);
    json_decref(by);
    return rc ? 1 : 0;
}

static int fan_out(flow_ctx *ctx)
{
    flow_branch b[40];
    for (int i = 0; i < 40; i++) {
        b[i].task = "count_up";
        b[i].input = json_pack("{s:i}", "n", i + 1);
    }
    flow_err rc = flow_ctx_parallel(ctx, b, 40, NULL);
    for (int i = 0; i < 40; i++)
        json_decref(b[i].input);
    return rc ? 1 : 0;
}

static void test_parallel_operations_lose_nothing(void **state)
{
    (void)state;
    flow *f = flow_new("ops", NULL);
    th_add(f, "fan_out", fan_out);
    flow_task_set_start(th_add(f, "count_up", count_up), false);
    json_t *init = json_pack("{s:i}", "count", 100);
    flow_set_initial_state(f, init);
    json_decref(init);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    json_t *st = flow_run_state(r);
    assert_int_equal(json_integer_value(json_object_get(st, "count")), 140);
    assert_int_equal(json_integer_value(json_object_get(st, "sum")), 40 * 41 / 2);
    assert_true(json_is_real(json_object_get(st, "half")));
    assert_true(json_real_value(json_object_get(st, "half")) == 20.0);
    assert_int_equal(json_array_size(json_object_get(st, "seen")), 40);
    assert_int_equal(json_object_size(json_object_get(st, "by")), 40);
    json_decref(st);
    flow_run_free(r);
    flow_free(f);
}

static int incr_text(flow_ctx *ctx)
{
    return flow_ctx_incr_state(ctx, "name", 1) ? 1 : 0;
}

static void test_operation_on_wrong_type_fails_the_attempt(void **state)
{
    (void)state;
    flow *f = flow_new("wrong", NULL);
    flow_task *t = th_add(f, "t", incr_text);
    json_t *init = json_pack("{s:s}", "name", "ann");
    flow_set_initial_state(f, init);
    json_decref(init);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_FAILED);
    assert_non_null(strstr(flow_run_error(r), "cannot incr state key 'name': it holds a string"));
    json_t *st = flow_run_state(r);
    assert_string_equal(json_string_value(json_object_get(st, "name")), "ann"); /* unchanged */
    json_decref(st);
    flow_run_free(r);
    (void)t;
    flow_free(f);
}

/* ---- 8. a nested flow's events reach the parent's connections ------------ */

static int stream_three(flow_ctx *ctx)
{
    for (int i = 1; i <= 3; i++) {
        json_t *d = json_pack("{s:i}", "pct", i * 25);
        flow_err rc = flow_ctx_emit(ctx, "progress", d);
        json_decref(d);
        if (rc)
            return 1;
    }
    return flow_ctx_set_output_take(ctx, json_string("streamed")) ? 1 : 0;
}

static int route_done(flow_ctx *ctx)
{
    return flow_ctx_set_output_take(ctx, json_string("progress")) ? 1 : 0; /* a label */
}

static int log_progress(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    return flow_ctx_append_state(ctx, "seen", json_object_get(in, "percent")) ? 1 : 0;
}

static void test_nested_flow_events_reach_the_parent(void **state)
{
    (void)state;
    flow *child = flow_new("child", NULL);
    flow_task *streamer = th_add(child, "streamer", stream_three);
    /* a router inside the child whose label has the same name: it steers
     * the child only, and must not reach the parent */
    flow_task *router = th_add(child, "router", route_done);
    flow_task_set_router(router, true);
    flow_task_after(router, streamer);
    flow_task_on(th_add(child, "inner", NULL), "progress");
    flow *f = flow_new("parent", NULL);
    flow_task *sub = th_add(f, "sub", NULL);
    assert_int_equal(flow_task_set_subflow(sub, child), FLOW_OK);
    flow_task_set_start(th_add(f, "log", log_progress), false);
    json_t *map = json_pack("{s:s}", "pct", "percent");
    assert_int_equal(flow_connect(f, "sub", "progress", "log", map, NULL), FLOW_OK);
    json_decref(map);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(th_count_acts(r, "log", FLOW_ACT_COMPLETED), 3);
    json_t *st = flow_run_state(r);
    json_t *seen = json_object_get(st, "seen"); /* in completion order */
    assert_int_equal(json_array_size(seen), 3);
    int sum = 0;
    for (size_t i = 0; i < 3; i++)
        sum += 1 << (json_integer_value(json_array_get(seen, i)) / 25);
    assert_int_equal(sum, 2 + 4 + 8); /* 25, 50 and 75, each once */
    json_decref(st);
    flow_run_free(r);
    flow_free(f);
    flow_free(child);
}

/* ---- 7. flow_configure reaches tasks that set other policies -------------- */

static atomic_int tries;

static int fail_twice(flow_ctx *ctx)
{
    if (atomic_fetch_add(&tries, 1) < 2) {
        flow_ctx_fail(ctx, "not yet");
        return 1;
    }
    return flow_ctx_set_output_take(ctx, json_string("ok")) ? 1 : 0;
}

static void test_configure_defaults_reach_tasks_with_own_policy(void **state)
{
    (void)state;
    flow *f = flow_new("defaults", NULL);
    flow_task *t = th_add(f, "t", fail_twice);
    flow_task_set_timeout(t, 30); /* a policy of its own, but not retries */
    flow_backoff quick = {.delay = 0.001, .factor = 1, .max_delay = 0.001};
    flow_task_set_backoff(t, &quick);
    flow_config cfg = {.retries = 2};
    assert_int_equal(flow_configure(f, &cfg), FLOW_OK);
    atomic_store(&tries, 0);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(atomic_load(&tries), 3);
    flow_run_free(r);
    flow_free(f);
    /* What a task set itself stays its own, before or after the defaults. */
    f = flow_new("own", NULL);
    t = th_add(f, "t", fail_twice);
    flow_task_set_retries(t, 0);
    cfg.retries = 5;
    assert_int_equal(flow_configure(f, &cfg), FLOW_OK);
    atomic_store(&tries, 0);
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_FAILED);
    assert_int_equal(atomic_load(&tries), 1);
    flow_run_free(r);
    flow_free(f);
}

/* ---- 10. generated task names ------------------------------------------- */

static void test_add_task_without_a_name(void **state)
{
    (void)state;
    flow *f = flow_new("anon", NULL);
    flow_task *a = flow_add_task(f, NULL, NULL);
    th_add(f, "task_2", NULL); /* taken by hand: the next generated one skips it */
    flow_task *c = flow_add_task(f, NULL, NULL);
    flow_task *d = flow_add_task(f, NULL, NULL);
    assert_non_null(a);
    assert_non_null(c);
    assert_non_null(d);
    assert_string_equal(flow_task_name(a), "task_1");
    assert_string_equal(flow_task_name(c), "task_3");
    assert_string_equal(flow_task_name(d), "task_4");
    assert_ptr_equal(flow_find_task(f, "task_3"), c);
    flow_task_set_fn(c, jitter_name, NULL);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(th_count_acts(r, "task_3", FLOW_ACT_COMPLETED), 1);
    flow_run_free(r);
    flow_free(f);
}

int main(void)
{
    srand((unsigned)time(NULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_from_end_tasks_whatever_the_order),
        cmocka_unit_test(test_result_single_end_task_and_skipped_ends),
        cmocka_unit_test(test_result_router_is_not_an_end_task),
        cmocka_unit_test(test_input_keyed_by_every_dependency),
        cmocka_unit_test(test_optional_branch_not_taken),
        cmocka_unit_test(test_parallel_operations_lose_nothing),
        cmocka_unit_test(test_operation_on_wrong_type_fails_the_attempt),
        cmocka_unit_test(test_nested_flow_events_reach_the_parent),
        cmocka_unit_test(test_configure_defaults_reach_tasks_with_own_policy),
        cmocka_unit_test(test_add_task_without_a_name),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
