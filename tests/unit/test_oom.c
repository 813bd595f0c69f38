/* test_oom.c -- out of memory anywhere in the engine: every allocation of a
 * run (libflow's and jansson's, through the host allocator hook) is made to
 * fail in turn. Whatever fails, the run ends -- completed, or failed saying
 * it ran out of memory -- or does not start, and nothing is freed twice,
 * leaked or left hanging (ASan and valgrind run this too). A durable run's
 * resume is tried the same way: a resume that runs out of memory leaves the
 * journal resumable, and the next one gives the right result; so is a
 * retry of a failed run.
 *
 * To chase a failure: OOM_FROM=N starts at the N-th allocation, OOM_TRACE=1
 * prints the stack of each failed allocation (feed it to addr2line). */
#define _GNU_SOURCE 1
#include "helpers.h"

#include "def/flowdef.h"
#include "def/schema.h"
#include "util/alloc.h"

#include <execinfo.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a host allocator that fails the Nth allocation ----------------------- */

static atomic_long countdown; /* 0: never fail; else fail when it reaches 1 */
static atomic_long failures;

static bool fail_now(void)
{
    long c = atomic_load(&countdown);
    while (c > 0) {
        if (atomic_compare_exchange_weak(&countdown, &c, c - 1)) {
            if (c == 1) {
                atomic_fetch_add(&failures, 1);
                if (getenv("OOM_TRACE")) { /* where it failed, for addr2line */
                    void *bt[40];
                    backtrace_symbols_fd(bt, backtrace(bt, 40), 2);
                }
                return true;
            }
            return false;
        }
    }
    return false;
}

static void *t_malloc(size_t n)
{
    return fail_now() ? NULL : malloc(n);
}

static void *t_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : realloc(p, n);
}

/* Fail the n-th allocation from now (0: none); returns whether the last
 * armed failure happened. */
static bool arm(long n)
{
    bool happened = atomic_exchange(&failures, 0) > 0;
    atomic_store(&countdown, n);
    return happened;
}

/* ---- the flow: joins, optional, foreach, parallel, operations, a nested
 * flow and a command --------------------------------------------------------- */

static int produce(flow_ctx *ctx)
{
    return flow_ctx_set_output_take(ctx, json_pack("{s:[i,i,i]}", "items", 1, 2, 3)) ? 1 : 0;
}

static int square(flow_ctx *ctx)
{
    json_int_t n = json_integer_value(flow_ctx_item(ctx));
    if (flow_ctx_incr_state(ctx, "sum", (double)n))
        return 1;
    return flow_ctx_set_output_take(ctx, json_integer(n * n)) ? 1 : 0;
}

static int fan(flow_ctx *ctx)
{
    flow_branch b[2] = {{"branch", json_integer(1)}, {"branch", json_integer(2)}};
    flow_err rc = b[0].input && b[1].input ? flow_ctx_parallel(ctx, b, 2, "join") : FLOW_ENOMEM;
    json_decref(b[0].input);
    json_decref(b[1].input);
    return rc ? 1 : 0;
}

static int echo(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    json_t *copy = json_deep_copy(in);
    if (in && !copy)
        return 1;
    return flow_ctx_set_output_take(ctx, copy ? copy : json_null()) ? 1 : 0;
}

static flow *make_flow(bool with_command)
{
    flow *child = flow_new("child", NULL);
    flow_task *c = th_add(child, "inner", echo);
    (void)c;
    flow *f = flow_new("oom", NULL);
    flow_task *p = th_add(f, "produce", produce);
    flow_task *sq = th_add(f, "square", square);
    json_t *list = json_string("{{ tasks.produce.output.items }}");
    assert_int_equal(flow_task_set_foreach(sq, list, 2, NULL), FLOW_OK);
    json_decref(list);
    flow_task_after(sq, p);
    flow_task *fn = th_add(f, "fan", fan);
    flow_task_set_start(th_add(f, "branch", echo), false);
    flow_task_set_start(th_add(f, "join", echo), false);
    flow_task *sub = th_add(f, "sub", NULL);
    flow_task_set_subflow(sub, child);
    flow_task_after(sub, p);
    flow_task *end = th_add(f, "end", echo);
    flow_task_after(end, sq);
    flow_task_after(end, sub);
    flow_task_optional(end, fn);
    if (with_command) {
        flow_task *cmd = th_add(f, "cmd", NULL);
        const char *argv[] = {"echo", "{\"c\": 1}", NULL};
        assert_int_equal(flow_task_set_command(cmd, argv, NULL), FLOW_OK);
        flow_task_after(end, cmd);
    }
    flow_free(child);
    return f;
}

/* A run that failed for lack of memory says why (the allocation that
 * failed may be anywhere: a message, a file, a body of this test). */
static bool oom_message(const char *s)
{
    return s && *s;
}

static long stride(void)
{
    /* valgrind is ~50x slower: try every 7th allocation there. */
    return getenv("FLOW_VALGRIND") ? 7 : 1;
}

/* One run of the flow with the n-th allocation failing (0: none). Returns
 * whether an allocation failed; checks how the run ended. */
static bool run_once_in(long n, json_t **result, bool with_store)
{
    flow_engine_options eo = {.jobs = 2};
    flow_engine *e = flow_engine_new(&eo, NULL);
    assert_non_null(e);
    flow *f = make_flow(true);
    flow_error err = {0};
    /* With a store, every record and its payload is built (and may fail). */
    flow_store *store = with_store ? flow_store_open("memory:", &err) : NULL;
    assert_true(!with_store || store);
    flow_run_options o = {.store = store};
    arm(n);
    flow_run *r = flow_run_start(e, f, &o, &err);
    if (r) {
        flow_run_status st = flow_run_wait(r);
        if (st == FLOW_RUN_COMPLETED) {
            *result = json_deep_copy(flow_run_result(r));
        } else {
            assert_int_equal(st, FLOW_RUN_FAILED);
            if (!oom_message(flow_run_error(r)))
                fail_msg("allocation %ld: the run failed for another reason: %s", n,
                         flow_run_error(r));
        }
    } else if (err.code != FLOW_ENOMEM) {
        fail_msg("allocation %ld: the run did not start, not for lack of memory: %s", n,
                 err.message);
    }
    bool happened = arm(0);
    flow_run_free(r);
    flow_free(f);
    flow_engine_free(e);
    flow_store_close(store);
    return happened;
}


static void sweep(bool with_store)
{
    json_t *want = NULL;
    assert_false(run_once_in(0, &want, with_store));
    assert_non_null(want);
    bool done = false;
    long from = getenv("OOM_FROM") ? atol(getenv("OOM_FROM")) : 1;
    for (long n = from > 0 ? from : 1; !done && n < 200000; n += stride()) {
        json_t *got = NULL;
        if (!run_once_in(n, &got, with_store))
            done = true; /* past the last allocation of a run */
        if (got && !json_equal(got, want)) {
            char *g = json_dumps(got, JSON_COMPACT), *w = json_dumps(want, JSON_COMPACT);
            fail_msg("allocation %ld: completed with %s, not %s", n, g, w);
        }
        json_decref(got);
    }
    assert_true(done);
    json_decref(want);
}

static void test_engine_survives_every_failed_allocation(void **state)
{
    (void)state;
    sweep(false);
}

/* The same run journaled in a store: its records and their payloads. */
static void test_durable_run_survives_every_failed_allocation(void **state)
{
    (void)state;
    sweep(true);
}

/* A sqlite store in a temporary directory, and an engine, for the sweeps of
 * durable runs below. */
struct durable {
    char *dir;
    flow_store *store;
    flow_engine *engine;
};

static void durable_open(struct durable *d)
{
    char url[4200];
    d->dir = th_tempdir();
    snprintf(url, sizeof(url), "sqlite:%s/flow.db", d->dir);
    d->store = flow_store_open(url, NULL);
    assert_non_null(d->store);
    flow_engine_options eo = {.jobs = 2};
    d->engine = flow_engine_new(&eo, NULL);
    assert_non_null(d->engine);
}

static void durable_close(struct durable *d)
{
    flow_engine_free(d->engine);
    flow_store_close(d->store);
    th_rmtree(d->dir);
    free(d->dir);
}

/* A durable run paused by its first task; the second runs after the resume. */
static int pause_after(flow_ctx *ctx)
{
    if (flow_ctx_pause(ctx, "halfway"))
        return 1;
    return flow_ctx_set_output_take(ctx, json_string("before")) ? 1 : 0;
}

static int after_pause(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    if (!json_is_string(in) || strcmp(json_string_value(in), "before"))
        return flow_ctx_fail(ctx, "wrong input"), 1;
    return flow_ctx_set_output_take(ctx, json_string("after the pause")) ? 1 : 0;
}

static void test_resume_survives_every_failed_allocation(void **state)
{
    (void)state;
    struct durable d;
    durable_open(&d);
    flow_store *s = d.store;
    flow_engine *e = d.engine;
    flow_error err = {0};
    flow *f = flow_new("resumable", NULL);
    flow_task *a = th_add(f, "first", pause_after);
    flow_task *b = th_add(f, "second", after_pause);
    flow_task_after(b, a);
    bool done = false;
    for (long n = 1; !done && n < 100000; n += stride()) {
        /* A new run paused halfway, then resumed with the n-th allocation
         * failing, then resumed again with none failing. */
        char id[64];
        snprintf(id, sizeof(id), "oom-%ld", n);
        flow_run_options o = {.run_id = id, .store = s};
        flow_run *r = flow_run_start(e, f, &o, &err);
        assert_non_null(r);
        assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
        flow_run_free(r);
        arm(n);
        flow_error rerr = {0};
        r = flow_run_resume(e, f, &o, &rerr);
        flow_run_status st = r ? flow_run_wait(r) : FLOW_RUN_PENDING;
        bool happened = arm(0);
        if (!happened) {
            assert_non_null(r);
            assert_int_equal(st, FLOW_RUN_COMPLETED);
            done = true; /* past the last allocation of a resume */
        } else if (st == FLOW_RUN_COMPLETED) {
            const char *got = json_string_value(flow_run_result(r));
            if (!got || strcmp(got, "after the pause"))
                fail_msg("allocation %ld: the resume completed with another result", n);
        } else if (st == FLOW_RUN_FAILED && !oom_message(flow_run_error(r))) {
            fail_msg("allocation %ld: resume failed for another reason: %s", n,
                     flow_run_error(r));
        } else if (!r && rerr.code != FLOW_ENOMEM) {
            fail_msg("allocation %ld: resume refused for another reason: %s (%s)", n, rerr.message,
                     flow_err_name(rerr.code));
        }
        flow_run_free(r);
        if (st != FLOW_RUN_FAILED && st != FLOW_RUN_COMPLETED) {
            /* It could not start or did not finish: the journal is intact,
             * and the next resume completes the run. */
            r = flow_run_resume(e, f, &o, &rerr);
            if (!r)
                fail_msg("allocation %ld: the next resume is refused: %s", n, rerr.message);
            flow_run_status again = flow_run_wait(r);
            const char *got = json_string_value(flow_run_result(r));
            if (again != FLOW_RUN_COMPLETED || !got || strcmp(got, "after the pause"))
                fail_msg("allocation %ld: the next resume ended %s (%s), result %s", n,
                         flow_run_status_name(again), flow_run_error(r) ? flow_run_error(r) : "",
                         got ? got : "not the string");
            flow_run_free(r);
        }
    }
    assert_true(done);
    flow_free(f);
    durable_close(&d);
}

static int after_pause_free(flow_ctx *ctx)
{
    return flow_ctx_set_output_take(ctx, json_string("first")) ? 1 : 0;
}

/* A task that fails the first time it runs in each run, for a retry. */
static atomic_int broken = 1;

static int fails_first(flow_ctx *ctx)
{
    if (atomic_load(&broken))
        return flow_ctx_fail(ctx, "not yet"), 1;
    return flow_ctx_set_output_take(ctx, json_string("retried")) ? 1 : 0;
}

/* How the store has run `id`. */
static bool stored_is(flow_store *s, const char *id, const char *status)
{
    json_t *run = flow_store_run(s, id, NULL);
    bool is = run && !strcmp(json_string_value(json_object_get(run, "status")), status);
    json_decref(run);
    return is;
}

static void test_retry_survives_every_failed_allocation(void **state)
{
    (void)state;
    struct durable d;
    durable_open(&d);
    flow_store *s = d.store;
    flow_engine *e = d.engine;
    flow_error err = {0};
    flow *f = flow_new("retried", NULL);
    flow_task *a = th_add(f, "first", after_pause_free);
    flow_task *b = th_add(f, "second", fails_first);
    flow_task_after(b, a);
    bool done = false;
    for (long n = 1; !done && n < 100000; n += stride()) {
        /* A run failed by its second task, retried with the n-th allocation
         * failing, then retried (or resumed, when it stopped) with none. */
        char id[64];
        snprintf(id, sizeof(id), "retry-%ld", n);
        flow_run_options o = {.run_id = id, .store = s};
        atomic_store(&broken, 1);
        flow_run *r = flow_run_start(e, f, &o, &err);
        assert_non_null(r);
        assert_int_equal(flow_run_wait(r), FLOW_RUN_FAILED);
        flow_run_free(r);
        atomic_store(&broken, 0);
        arm(n);
        flow_error rerr = {0};
        r = flow_run_retry(e, f, &o, NULL, &rerr);
        flow_run_status st = r ? flow_run_wait(r) : FLOW_RUN_PENDING;
        bool happened = arm(0);
        if (!happened) {
            assert_non_null(r);
            assert_int_equal(st, FLOW_RUN_COMPLETED);
            done = true; /* past the last allocation of a retry */
        } else if (st == FLOW_RUN_COMPLETED) {
            const char *got = json_string_value(flow_run_result(r));
            if (!got || strcmp(got, "retried"))
                fail_msg("allocation %ld: the retry completed with another result", n);
        } else if (st == FLOW_RUN_FAILED && !oom_message(flow_run_error(r))) {
            fail_msg("allocation %ld: retry failed for another reason: %s", n, flow_run_error(r));
        } else if (!r && rerr.code != FLOW_ENOMEM) {
            fail_msg("allocation %ld: retry refused for another reason: %s (%s)", n,
                     rerr.message, flow_err_name(rerr.code));
        }
        flow_run_free(r);
        if (st != FLOW_RUN_COMPLETED) {
            /* Refused, failed again, or stopped after its record: the run
             * can be retried (or resumed) to the right result. */
            bool stopped = stored_is(s, id, "stopped");
            r = stopped ? flow_run_resume(e, f, &o, &rerr) : flow_run_retry(e, f, &o, NULL, &rerr);
            if (!r)
                fail_msg("allocation %ld: the next %s is refused: %s", n,
                         stopped ? "resume" : "retry", rerr.message);
            flow_run_status again = flow_run_wait(r);
            const char *got = json_string_value(flow_run_result(r));
            if (again != FLOW_RUN_COMPLETED || !got || strcmp(got, "retried"))
                fail_msg("allocation %ld: the next %s ended %s (%s)", n,
                         stopped ? "resume" : "retry", flow_run_status_name(again),
                         flow_run_error(r) ? flow_run_error(r) : "");
            flow_run_free(r);
        }
    }
    assert_true(done);
    flow_free(f);
    durable_close(&d);
}

/* Checks answer with a message, NULL meaning "all is well": out of memory
 * while making the message must never read as "all is well". */
static void test_failed_checks_never_say_all_is_well(void **state)
{
    (void)state;
    json_t *schema = json_pack("{s:s,s:{s:{s:s,s:i}}}", "type", "object", "properties", "n",
                               "type", "integer", "minimum", 10);
    struct flow__schema *sc = NULL;
    assert_int_equal(flow__schema_compile(schema, &sc, NULL), FLOW_OK);
    json_t *bad_state = json_pack("{s:i}", "n", 3);
    json_t *three = json_integer(3);
    json_t *options = json_pack("[s,s]", "eu", "us");
    json_t *mars = json_string("mars");
    for (long n = 1; n < 50; n++) {
        arm(n);
        char *a = flow__schema_check(sc, bad_state);
        json_t *out = NULL;
        char *b = flow__feedback_check(FLOW_FEEDBACK_APPROVAL, NULL, three, NULL, 0, &out);
        char *c = flow__feedback_check(FLOW_FEEDBACK_SELECTION, options, mars, NULL, 0, &out);
        arm(0);
        if (!a || !b || !c)
            fail_msg("allocation %ld: a failed check said all is well", n);
        flow__free(a);
        flow__free(b);
        flow__free(c);
    }
    json_decref(mars);
    json_decref(options);
    json_decref(three);
    json_decref(bad_state);
    flow__schema_free(sc);
    json_decref(schema);
}

int main(void)
{
    flow_set_alloc_funcs(t_malloc, t_realloc, free);
    alarm(getenv("FLOW_VALGRIND") ? 580 : 110); /* a hang fails the test */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_survives_every_failed_allocation),
        cmocka_unit_test(test_durable_run_survives_every_failed_allocation),
        cmocka_unit_test(test_resume_survives_every_failed_allocation),
        cmocka_unit_test(test_retry_survives_every_failed_allocation),
        cmocka_unit_test(test_failed_checks_never_say_all_is_well),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
