/* test_dynamic.c -- issue #3's control flow through the C API: next_task,
 * next_iteration, parallel with and without then, terminate, cancel,
 * directives dropped on failure, events with on: and connect (streaming),
 * foreach with concurrency, nested flows, the registry, register_to, flow
 * configuration (sequential, run timeout). */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static int echo_input(flow_ctx *ctx)
{
    return flow_ctx_set_output(ctx, flow_ctx_input(ctx)) ? 1 : 0;
}

/* --- next_task / next_iteration ----------------------------------------- */

static int dispatcher(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    const char *type = json_string_value(json_object_get(in, "type"));
    const char *next = type && !strcmp(type, "priority") ? "priority_handler" : "normal_handler";
    assert_int_equal(flow_ctx_next_task(ctx, "nope", NULL), FLOW_ENOTFOUND);
    return flow_ctx_next_task(ctx, next, in) ? 1 : 0;
}

static void test_next_task(void **state)
{
    (void)state;
    flow *f = flow_new("dispatch", NULL);
    th_add(f, "dispatcher", dispatcher);
    flow_task_set_start(th_add(f, "priority_handler", echo_input), false);
    flow_task_set_start(th_add(f, "normal_handler", echo_input), false);
    json_t *in = json_pack("{s:s}", "type", "priority");
    flow_run *r;
    assert_int_equal(th_run(engine, f, in, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(th_count_acts(r, "priority_handler", FLOW_ACT_COMPLETED), 1);
    assert_int_equal(th_count_acts(r, "normal_handler", FLOW_ACT_COMPLETED), 0);
    /* Three end tasks (nothing names them); the two that completed make the
     * result. */
    json_t *res = flow_run_result(r);
    assert_int_equal(json_object_size(res), 2);
    assert_true(json_is_null(json_object_get(res, "dispatcher")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(res, "priority_handler"), "type")),
        "priority");
    json_decref(in);
    flow_run_free(r);
    flow_free(f);
}

static int retry_task(flow_ctx *ctx)
{
    json_int_t attempt = json_integer_value(json_object_get(flow_ctx_input(ctx), "attempt"));
    if (attempt < 3) {
        json_t *next = json_pack("{s:I}", "attempt", attempt + 1);
        flow_err rc = flow_ctx_next_iteration(ctx, next); /* copies */
        json_decref(next);
        return rc ? 1 : 0;
    }
    return flow_ctx_set_output_take(ctx, json_integer(attempt)) ? 1 : 0;
}

static void test_next_iteration(void **state)
{
    (void)state;
    flow *f = flow_new("iterate", NULL);
    th_add(f, "retry_task", retry_task);
    json_t *in = json_pack("{s:i}", "attempt", 0);
    flow_run *r;
    assert_int_equal(th_run(engine, f, in, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(th_count_acts(r, "retry_task", FLOW_ACT_COMPLETED), 4);
    assert_int_equal(json_integer_value(flow_run_result(r)), 3);
    json_decref(in);
    flow_run_free(r);
    flow_free(f);
}

/* --- parallel --------------------------------------------------------------- */

static int root_with_then(flow_ctx *ctx)
{
    flow_branch b[3] = {
        {"branch", json_pack("{s:i}", "n", 1)},
        {"branch", json_pack("{s:i}", "n", 2)},
        {"branch", json_pack("{s:i}", "n", 3)},
    };
    flow_err rc = flow_ctx_parallel(ctx, b, 3, "integrator");
    for (int i = 0; i < 3; i++)
        json_decref(b[i].input);
    return rc ? 1 : 0;
}

static int branch(flow_ctx *ctx)
{
    json_int_t n = json_integer_value(json_object_get(flow_ctx_input(ctx), "n"));
    usleep((useconds_t)(4 - n) * 20000); /* finish in reverse order */
    return flow_ctx_set_output_take(ctx, json_integer(n * 10)) ? 1 : 0;
}

static void test_parallel_then_runs_once_in_order(void **state)
{
    (void)state;
    flow *f = flow_new("fanin", NULL);
    th_add(f, "root", root_with_then);
    flow_task_set_start(th_add(f, "branch", branch), false);
    flow_task_set_start(th_add(f, "integrator", echo_input), false);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(th_count_acts(r, "branch", FLOW_ACT_COMPLETED), 3);
    assert_int_equal(th_count_acts(r, "integrator", FLOW_ACT_COMPLETED), 1);
    /* `branch` ran three times and finished in reverse order: the result
     * holds its last-created activation's output, whatever the timing. */
    json_t *want = json_pack("{s:n,s:i,s:[i,i,i]}", "root", "branch", 30, "integrator", 10, 20, 30);
    assert_true(json_equal(flow_run_result(r), want));
    json_decref(want);
    flow_run_free(r);
    flow_free(f);
}

static int root_fan_out(flow_ctx *ctx)
{
    flow_branch b[2] = {{"process_a", NULL}, {"process_b", NULL}};
    return flow_ctx_parallel(ctx, b, 2, NULL) ? 1 : 0;
}

static int process_x(flow_ctx *ctx)
{
    return flow_ctx_next_task(ctx, "endpoint", NULL) ? 1 : 0;
}

static void test_parallel_without_then_endpoint_per_branch(void **state)
{
    (void)state;
    flow *f = flow_new("fanout", NULL);
    th_add(f, "branch", root_fan_out);
    flow_task_set_start(th_add(f, "process_a", process_x), false);
    flow_task_set_start(th_add(f, "process_b", process_x), false);
    flow_task_set_start(th_add(f, "endpoint", echo_input), false);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(th_count_acts(r, "endpoint", FLOW_ACT_COMPLETED), 2); /* once per branch */
    flow_run_free(r);
    flow_free(f);
}

/* --- terminate, cancel, discarded directives ------------------------------ */

static int terminator(flow_ctx *ctx)
{
    json_t *result = json_string("completed early");
    flow_err rc = flow_ctx_terminate(ctx, result); /* copies */
    json_decref(result);
    return rc ? 1 : 0;
}

static int canceller(flow_ctx *ctx)
{
    return flow_ctx_cancel(ctx, "Critical validation failed") ? 1 : 0;
}

static int never(flow_ctx *ctx)
{
    (void)ctx;
    fail_msg("this task must not run");
    return 1;
}

static void test_terminate_and_cancel(void **state)
{
    (void)state;
    flow *f = flow_new("terminate", NULL);
    flow_task *a = th_add(f, "check_complete", terminator);
    flow_task_after(th_add(f, "continue_processing", never), a);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_string_equal(json_string_value(flow_run_result(r)), "completed early");
    flow_run_free(r);
    flow_free(f);

    f = flow_new("cancel", NULL);
    a = th_add(f, "validate", canceller);
    flow_task_after(th_add(f, "later", never), a);
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_CANCELLED);
    assert_string_equal(flow_run_error(r), "Critical validation failed");
    flow_run_free(r);
    flow_free(f);
}

static int directs_then_fails(flow_ctx *ctx)
{
    flow_ctx_next_task(ctx, "follow", NULL);
    flow_ctx_set_state_take(ctx, "lost", json_true());
    flow_ctx_terminate(ctx, json_true());
    flow_ctx_fail(ctx, "failed after writing directives");
    return 1;
}

static void test_directives_of_failed_attempt_discarded(void **state)
{
    (void)state;
    flow *f = flow_new("discard", NULL);
    flow_task *a = th_add(f, "a", directs_then_fails);
    flow_task_set_on_error(a, FLOW_ON_ERROR_CONTINUE);
    flow_task_set_start(th_add(f, "follow", never), false);
    th_add(f, "other", echo_input);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_FAILED);
    assert_int_equal(th_count_acts(r, "follow", FLOW_ACT_COMPLETED), 0);
    json_t *st = flow_run_state(r);
    assert_null(json_object_get(st, "lost"));
    json_decref(st);
    flow_run_free(r);
    flow_free(f);
}

/* --- events and connections --------------------------------------------- */

static atomic_int streamed_before_end;
static atomic_int producer_done;

static int producer(flow_ctx *ctx)
{
    for (int i = 0; i < 3; i++) {
        json_t *data = json_pack("{s:i,s:s}", "value", i, "keep", "yes");
        assert_int_equal(flow_ctx_emit(ctx, "output", data), FLOW_OK);
        json_decref(data);
    }
    usleep(200 * 1000); /* the consumer runs while we are still busy */
    atomic_store(&producer_done, 1);
    return 0;
}

static int consumer(flow_ctx *ctx)
{
    if (!atomic_load(&producer_done))
        atomic_fetch_add(&streamed_before_end, 1);
    return echo_input(ctx);
}

static void test_connect_streams_with_map(void **state)
{
    (void)state;
    atomic_store(&streamed_before_end, 0);
    atomic_store(&producer_done, 0);
    flow *f = flow_new("routines", NULL);
    th_add(f, "routine1", producer);
    th_add(f, "routine2", consumer);
    th_add(f, "listener", echo_input);
    flow_task_on(flow_find_task(f, "listener"), "output");
    json_t *map = json_pack("{s:s}", "value", "input");
    assert_int_equal(flow_connect(f, "routine1", "output", "routine2", map, NULL), FLOW_OK);
    json_decref(map);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(th_count_acts(r, "routine2", FLOW_ACT_COMPLETED), 3); /* one per emission */
    assert_int_equal(th_count_acts(r, "listener", FLOW_ACT_COMPLETED), 3);
    assert_true(atomic_load(&streamed_before_end) >= 1);
    for (size_t i = 0; i < flow_run_activation_count(r); i++) {
        flow_activation_info info;
        flow_run_activation(r, i, &info);
        if (!strcmp(info.task, "routine2")) {
            assert_non_null(json_object_get(info.output, "input")); /* renamed */
            assert_null(json_object_get(info.output, "value"));
            assert_string_equal(json_string_value(json_object_get(info.output, "keep")), "yes");
        }
    }
    flow_run_free(r);
    flow_free(f);
    /* a connect naming an unknown task is a validation error */
    f = flow_new("badconnect", NULL);
    th_add(f, "a", echo_input);
    flow_connect(f, "a", "ev", "nobody", NULL, NULL);
    flow_error err;
    assert_int_equal(flow_validate(f, NULL, &err), FLOW_EVALIDATION);
    assert_non_null(strstr(err.message, "unknown task 'nobody'"));
    flow_free(f);
}

/* --- foreach ---------------------------------------------------------------- */

static atomic_int in_flight, max_in_flight;

static int square(flow_ctx *ctx)
{
    int now = atomic_fetch_add(&in_flight, 1) + 1;
    int seen = atomic_load(&max_in_flight);
    while (now > seen && !atomic_compare_exchange_weak(&max_in_flight, &seen, now))
        ;
    usleep(20 * 1000);
    atomic_fetch_sub(&in_flight, 1);
    json_int_t v = json_integer_value(flow_ctx_item(ctx));
    assert_int_equal(json_integer_value(flow_ctx_input(ctx)), v);
    return flow_ctx_set_output_take(ctx, json_integer(v * v + flow_ctx_index(ctx) * 0)) ? 1 : 0;
}

static void test_foreach(void **state)
{
    (void)state;
    atomic_store(&in_flight, 0);
    atomic_store(&max_in_flight, 0);
    flow *f = flow_new("foreach", NULL);
    flow_task *items = th_add(f, "items", echo_input);
    flow_task *sq = th_add(f, "square", square);
    flow_task *sum = th_add(f, "collect", echo_input);
    flow_task_after(sq, items);
    flow_task_after(sum, sq);
    json_t *tmpl = json_string("{{ input.numbers }}");
    assert_int_equal(flow_task_set_foreach(sq, tmpl, 2, NULL), FLOW_OK);
    json_decref(tmpl);
    json_t *in = json_pack("{s:[i,i,i,i,i,i]}", "numbers", 1, 2, 3, 4, 5, 6);
    flow_run *r;
    assert_int_equal(th_run(engine, f, in, &r), FLOW_RUN_COMPLETED);
    json_t *want = json_pack("[i,i,i,i,i,i]", 1, 4, 9, 16, 25, 36);
    assert_true(json_equal(flow_run_result(r), want));
    assert_int_equal(atomic_load(&max_in_flight), 2); /* concurrency */
    assert_int_equal(th_count_acts(r, "collect", FLOW_ACT_COMPLETED), 1); /* fan-in once */
    json_decref(want);
    json_decref(in);
    flow_run_free(r);

    /* an empty list completes at once with [] */
    in = json_pack("{s:[]}", "numbers");
    assert_int_equal(th_run(engine, f, in, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(json_array_size(flow_run_result(r)), 0);
    assert_true(json_is_array(flow_run_result(r)));
    json_decref(in);
    flow_run_free(r);

    /* not a list: a clear failure */
    in = json_pack("{s:{s:i}}", "numbers", "a", 1);
    assert_int_equal(th_run(engine, f, in, &r), FLOW_RUN_FAILED);
    assert_non_null(strstr(flow_run_error(r), "needs a list, got an object"));
    json_decref(in);
    flow_run_free(r);
    flow_free(f);
}

/* --- nested flows, registry, register_to, configuration ------------------ */

static int sub_process(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    return flow_ctx_set_output_take(
               ctx, json_pack("{s:s,s:O}", "sub", "result", "got", json_object_get(in, "data")))
               ? 1
               : 0;
}

static flow *make_subflow(void *udata, flow_error *err)
{
    (void)udata;
    flow *sub = flow_new("SubFlow", err);
    if (sub)
        flow_task_set_fn(flow_add_task(sub, "sub_process", err), sub_process, NULL);
    return sub;
}

static int boom(flow_ctx *ctx)
{
    flow_ctx_fail(ctx, "sub exploded");
    return 1;
}

static void test_nested_flow_and_registry(void **state)
{
    (void)state;
    flow_registry *reg = flow_registry_new();
    assert_int_equal(flow_registry_add_factory(reg, "sub", make_subflow, NULL), FLOW_OK);
    flow_error err;
    assert_null(flow_registry_create(reg, "nope", &err));
    assert_non_null(strstr(err.message, "'sub'"));
    flow *sub = flow_registry_create(reg, "sub", &err);
    assert_non_null(sub);

    flow *main_flow = flow_new("MainFlow", NULL);
    flow_task *setup_t = th_add(main_flow, "setup", echo_input);
    flow_task *run_sub = th_add(main_flow, "run_subflow", NULL);
    assert_int_equal(flow_task_set_subflow(run_sub, sub), FLOW_OK);
    flow_task_after(run_sub, setup_t);
    json_t *in = json_pack("{s:s}", "data", "hello");
    flow_run *r;
    assert_int_equal(th_run(engine, main_flow, in, &r), FLOW_RUN_COMPLETED);
    json_t *res = flow_run_result(r);
    assert_string_equal(json_string_value(json_object_get(res, "got")), "hello");
    flow_run_free(r);
    flow_free(main_flow);
    flow_free(sub);

    /* a failing child fails the parent task, naming the child */
    flow *bad = flow_new("BadSub", NULL);
    th_add(bad, "explode", boom);
    main_flow = flow_new("Main2", NULL);
    flow_task_set_subflow(th_add(main_flow, "run_bad", NULL), bad);
    assert_int_equal(th_run(engine, main_flow, in, &r), FLOW_RUN_FAILED);
    assert_non_null(strstr(flow_run_error(r), "nested flow 'BadSub' failed"));
    assert_non_null(strstr(flow_run_error(r), "sub exploded"));
    flow_run_free(r);
    flow_free(main_flow);
    flow_free(bad);
    json_decref(in);
    flow_registry_free(reg);
}

static void test_register_to(void **state)
{
    (void)state;
    flow *f = flow_new("design", NULL);
    flow_error err;
    flow_task *dep1 = flow_register(f, "dep1", echo_input, NULL, NULL, NULL, &err);
    flow_task *dep2 = flow_register(f, "dep2", boom, NULL, NULL, NULL, &err);
    assert_non_null(dep1);
    assert_non_null(dep2);
    flow_task_set_on_error(dep2, FLOW_ON_ERROR_CONTINUE);
    const char *req[] = {"dep1", NULL};
    const char *opt[] = {"dep2", NULL};
    assert_non_null(flow_register(f, "child", echo_input, NULL, req, opt, &err));
    const char *unknown[] = {"ghost", NULL};
    assert_null(flow_register(f, "x", echo_input, NULL, unknown, NULL, &err));
    assert_non_null(strstr(err.message, "unknown required dependency 'ghost'"));
    assert_null(flow_find_task(f, "x")); /* refused: nothing added */
    /* a when-condition naming a future task: registering it after that task
     * would close a cycle */
    flow_task *w = flow_register(f, "waits", echo_input, NULL, NULL, NULL, &err);
    flow_task_when(w, flow_cond_task("later"));
    const char *after_w[] = {"waits", NULL};
    assert_null(flow_register(f, "later", echo_input, NULL, after_w, NULL, &err));
    assert_non_null(strstr(err.message, "cycle"));
    flow_free(f);
}

static atomic_int seq_in_flight, seq_max;

static int seq_task(flow_ctx *ctx)
{
    (void)ctx;
    int now = atomic_fetch_add(&seq_in_flight, 1) + 1;
    int seen = atomic_load(&seq_max);
    while (now > seen && !atomic_compare_exchange_weak(&seq_max, &seen, now))
        ;
    usleep(10 * 1000);
    atomic_fetch_sub(&seq_in_flight, 1);
    return 0;
}

static int slow(flow_ctx *ctx)
{
    for (int i = 0; i < 500 && !flow_ctx_is_cancelled(ctx); i++)
        usleep(2000);
    return 0;
}

static void test_configure(void **state)
{
    (void)state;
    atomic_store(&seq_max, 0);
    flow *f = flow_new("seq", NULL);
    for (int i = 0; i < 6; i++) {
        char name[16];
        snprintf(name, sizeof(name), "t%d", i);
        th_add(f, name, seq_task);
    }
    flow_config cfg = {.description = "one at a time", .type = FLOW_TYPE_SEQUENTIAL};
    assert_int_equal(flow_configure(f, &cfg), FLOW_OK);
    assert_string_equal(flow_description(f), "one at a time");
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(atomic_load(&seq_max), 1);
    flow_run_free(r);
    flow_free(f);

    f = flow_new("timeout", NULL);
    th_add(f, "slow", slow);
    flow_config cfg2 = {.timeout = 0.1};
    flow_configure(f, &cfg2);
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_FAILED);
    assert_non_null(strstr(flow_run_error(r), "timed out"));
    flow_run_free(r);
    flow_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_task),
        cmocka_unit_test(test_next_iteration),
        cmocka_unit_test(test_parallel_then_runs_once_in_order),
        cmocka_unit_test(test_parallel_without_then_endpoint_per_branch),
        cmocka_unit_test(test_terminate_and_cancel),
        cmocka_unit_test(test_directives_of_failed_attempt_discarded),
        cmocka_unit_test(test_connect_streams_with_map),
        cmocka_unit_test(test_foreach),
        cmocka_unit_test(test_nested_flow_and_registry),
        cmocka_unit_test(test_register_to),
        cmocka_unit_test(test_configure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
