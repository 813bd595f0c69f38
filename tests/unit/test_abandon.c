/* test_abandon.c -- a C task body that ignores its timeout is abandoned: its
 * attempt fails, the run ends and may be freed, flow and all, while the body
 * still runs. Everything the body reached through its flow_ctx must stay
 * valid until it returns (ASan and valgrind see any read of freed memory). */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int run_freed; /* set by the test once run and flow are gone */
static atomic_int body_done; /* set by the body when it has checked everything */
static atomic_int body_ok;

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int first(flow_ctx *ctx)
{
    return flow_ctx_set_output_take(ctx, json_pack("{s:s}", "word", "kept")) ? 1 : 0;
}

/* Ignores its cancellation; keeps what the context gave it and uses all of
 * it after the run is freed. */
static int stubborn(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);         /* borrowed */
    json_t *dep = flow_ctx_dep(ctx, "first");  /* borrowed */
    const char *name = flow_ctx_task_name(ctx);
    const char *run = flow_ctx_run_id(ctx);
    uint64_t act = flow_ctx_activation(ctx);
    for (int i = 0; i < 500 && !atomic_load(&run_freed); i++)
        pause_ms(10);
    bool ok = atomic_load(&run_freed);
    ok &= !strcmp(json_string_value(json_object_get(in, "word")), "kept");
    ok &= !strcmp(json_string_value(json_object_get(dep, "word")), "kept");
    ok &= !strcmp(name, "stubborn");
    ok &= !strcmp(run, "abandoned-run");
    ok &= act > 0;
    ok &= flow_ctx_is_cancelled(ctx);
    /* The attempt is over: reads find nothing, writes and requests go nowhere. */
    json_t *st = flow_ctx_get_state(ctx, "nothing");
    ok &= st == NULL;
    ok &= flow_ctx_set_state_take(ctx, "late", json_true()) == FLOW_OK;
    ok &= flow_ctx_incr_state(ctx, "late_count", 1) == FLOW_OK;
    json_t *data = json_true();
    flow_ctx_emit(ctx, "late", data);
    json_decref(data);
    flow_feedback req = {.type = FLOW_FEEDBACK_APPROVAL, .message = "too late"};
    json_t *answer = NULL;
    ok &= flow_ctx_request_feedback(ctx, &req, &answer) == FLOW_ECANCELLED;
    ok &= answer == NULL;
    atomic_store(&body_ok, ok);
    atomic_store(&body_done, 1);
    return 0;
}

static void test_abandoned_body_outlives_its_run(void **state)
{
    (void)state;
    flow_engine_options eo = {.jobs = 2};
    flow_engine *e = flow_engine_new(&eo, NULL);
    assert_non_null(e);
    flow *f = flow_new("abandon", NULL);
    flow_task *a = th_add(f, "first", first);
    flow_task *t = th_add(f, "stubborn", stubborn);
    flow_task_after(t, a);
    flow_task_set_timeout(t, 0.05);
    flow_task_set_kill_grace(t, 0.05);
    flow_run_options o = {.run_id = "abandoned-run"};
    flow_run *r = flow_run_start(e, f, &o, NULL);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_FAILED);
    assert_non_null(strstr(flow_run_error(r), "its thread was abandoned"));
    assert_int_equal(atomic_load(&body_done), 0); /* still running */
    flow_run_free(r);
    flow_free(f);
    atomic_store(&run_freed, 1);
    for (int i = 0; i < 1000 && !atomic_load(&body_done); i++)
        pause_ms(10);
    assert_int_equal(atomic_load(&body_done), 1);
    pause_ms(50); /* the pool thread drops the run once the body returned */
    assert_int_equal(atomic_load(&body_ok), 1);
    flow_engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abandoned_body_outlives_its_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
