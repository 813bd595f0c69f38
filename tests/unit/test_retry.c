/* test_retry.c -- flow_run_retry through the C API: a run that ended failed
 * or cancelled runs again in the same run id; what failed, was cancelled or
 * was skipped because of it runs again (attempts growing, activations
 * reused), what completed is kept. Also foreach elements, joins, optional
 * dependencies, fallbacks, parallel groups, routers, `when` labels, nested
 * flows, feedback that timed out, completions that came in as the run
 * stopped, a second retry, a crash at every record of a retry followed by a
 * resume, and every refusal (which changes nothing). */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/handle.h"


/* ---- what ran, and what is broken ---------------------------------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct call {
    char task[32];
    uint64_t act;
    int attempt;
} calls[1024];
static size_t ncalls;
static char broken[8][32]; /* tasks whose bodies fail */
static atomic_uint broken_items; /* foreach elements (bit i: item i) that fail */
/* foreach elements from this index on wait until they are cancelled (0: none),
 * so what a failure stops does not depend on how fast threads start */
static atomic_int held_from;

static void note(flow_ctx *ctx)
{
    pthread_mutex_lock(&mu);
    if (ncalls < sizeof(calls) / sizeof(calls[0])) {
        snprintf(calls[ncalls].task, sizeof(calls[ncalls].task), "%s", flow_ctx_task_name(ctx));
        calls[ncalls].act = flow_ctx_activation(ctx);
        calls[ncalls].attempt = flow_ctx_attempt(ctx);
        ncalls++;
    }
    pthread_mutex_unlock(&mu);
}

static int count_calls(const char *task)
{
    int n = 0;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < ncalls; i++)
        n += !strcmp(calls[i].task, task);
    pthread_mutex_unlock(&mu);
    return n;
}

/* The last call of `task`: its activation and attempt. */
static struct call last_call(const char *task)
{
    struct call c = {{0}, 0, 0};
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < ncalls; i++)
        if (!strcmp(calls[i].task, task))
            c = calls[i];
    pthread_mutex_unlock(&mu);
    return c;
}

static void breaking(const char *a, const char *b)
{
    pthread_mutex_lock(&mu);
    memset(broken, 0, sizeof(broken));
    if (a)
        snprintf(broken[0], sizeof(broken[0]), "%s", a);
    if (b)
        snprintf(broken[1], sizeof(broken[1]), "%s", b);
    ncalls = 0;
    pthread_mutex_unlock(&mu);
    atomic_store(&broken_items, 0);
    atomic_store(&held_from, 0);
}

static bool is_broken(const char *task)
{
    bool yes = false;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++)
        yes |= broken[i][0] && !strcmp(broken[i], task);
    pthread_mutex_unlock(&mu);
    return yes;
}

/* Output: the task's name, or its input's numbers summed plus one. */
static int t_work(flow_ctx *ctx)
{
    note(ctx);
    if (is_broken(flow_ctx_task_name(ctx))) {
        flow_ctx_fail(ctx, "%s is broken", flow_ctx_task_name(ctx));
        return 1;
    }
    return flow_ctx_set_output_take(ctx, json_string(flow_ctx_task_name(ctx))) ? 1 : 0;
}

static int t_item(flow_ctx *ctx)
{
    note(ctx);
    json_int_t i = json_integer_value(flow_ctx_item(ctx));
    if (atomic_load(&broken_items) & (1u << i)) {
        flow_ctx_fail(ctx, "item %lld is broken", (long long)i);
        return 1;
    }
    int held = atomic_load(&held_from);
    for (int waited = 0; held && i >= held && waited < 30000; waited++) {
        if (flow_ctx_is_cancelled(ctx))
            return 1;
        usleep(1000);
    }
    return flow_ctx_set_output_take(ctx, json_integer(i * 10)) ? 1 : 0;
}

static int t_sum(flow_ctx *ctx)
{
    note(ctx);
    json_int_t sum = 0;
    size_t i;
    json_t *v;
    json_array_foreach(flow_ctx_input(ctx), i, v) sum += json_integer_value(v);
    return flow_ctx_set_output_take(ctx, json_integer(sum)) ? 1 : 0;
}

static int t_echo(flow_ctx *ctx)
{
    note(ctx);
    return flow_ctx_set_output(ctx, flow_ctx_input(ctx)) ? 1 : 0;
}

/* ---- running, retrying, reading ----------------------------------------- */

static flow_run_status run(flow *f, const char *id)
{
    flow_error err = {0};
    flow_run_options o = {.run_id = id, .store = th_store};
    flow_run *r = flow_run_start(th_engine, f, &o, &err);
    if (!r)
        fail_msg("start %s: %s", id, err.message);
    flow_run_status s = flow_run_wait(r);
    flow_run_free(r);
    return s;
}

/* Retry `id` (tasks: NULL-terminated, or NULL) to its end; *result gets a
 * new reference to its result when not NULL. */
static flow_run_status retry(flow *f, const char *id, const char *const *tasks, json_t **result)
{
    flow_error err = {0};
    flow_run_options o = {.run_id = id, .store = th_store, .by = "tester"};
    flow_run *r = flow_run_retry(th_engine, f, &o, tasks, &err);
    if (!r)
        fail_msg("retry %s: %s", id, err.message);
    flow_run_status s = flow_run_wait(r);
    if (result)
        *result = json_incref(flow_run_result(r));
    flow_run_free(r);
    return s;
}

/* A retry that is refused with `code` and a message containing `what`. */
static void refused(flow *f, const char *id, const char *const *tasks, flow_err code,
                    const char *what)
{
    flow_error err = {0};
    flow_run_options o = {.run_id = id, .store = th_store};
    flow_run *r = flow_run_retry(th_engine, f, &o, tasks, &err);
    if (r) {
        flow_run_wait(r);
        flow_run_free(r);
        fail_msg("retry %s was not refused", id);
    }
    if (err.code != code || !strstr(err.message, what))
        fail_msg("retry %s: %s (%s), expected %s with '%s'", id, err.message,
                 flow_err_name(err.code), flow_err_name(code), what);
}

/* The stored run's activations of `task`: how many, and the status and
 * attempts of the last one. */
static int stored_acts(const char *id, const char *task, const char **status, int *attempts)
{
    json_t *run = flow_store_run(th_store, id, NULL);
    assert_non_null(run);
    int n = 0;
    size_t i;
    json_t *t;
    static char st[32];
    json_array_foreach(json_object_get(run, "tasks"), i, t)
    {
        if (strcmp(json_string_value(json_object_get(t, "task")), task) != 0)
            continue;
        n++;
        snprintf(st, sizeof(st), "%s", json_string_value(json_object_get(t, "status")));
        if (attempts)
            *attempts = (int)json_integer_value(json_object_get(t, "attempts"));
    }
    if (status)
        *status = st;
    json_decref(run);
    return n;
}

static const char *stored_status(const char *id)
{
    static char st[32];
    json_t *run = flow_store_run(th_store, id, NULL);
    assert_non_null(run);
    snprintf(st, sizeof(st), "%s", json_string_value(json_object_get(run, "status")));
    json_decref(run);
    return st;
}

/* How many records of `type` the journal of `id` has. */
static int records_of(const char *id, int type)
{
    struct flow__jrec *recs;
    size_t count;
    int n = 0;
    assert_int_equal(flow__store_read_all(th_store, id, &recs, &count, NULL), FLOW_OK);
    for (size_t i = 0; i < count; i++)
        n += recs[i].type == type;
    flow__records_free(recs, count);
    return n;
}

/* ---- a chain ------------------------------------------------------------- */

/* a -> b -> c */
static flow *chain(void)
{
    flow *f = flow_new("chain", NULL);
    flow_task *a = th_add(f, "a", t_work);
    flow_task *b = th_add(f, "b", t_work);
    flow_task *c = th_add(f, "c", t_work);
    flow_task_after(b, a);
    flow_task_after(c, b);
    return f;
}

static void test_failed_task_runs_again(void **state)
{
    (void)state;
    flow *f = chain();
    breaking("b", NULL);
    assert_int_equal(run(f, "ch1"), FLOW_RUN_FAILED);
    assert_string_equal(stored_status("ch1"), "failed");
    struct call first = last_call("b");
    breaking(NULL, NULL);
    json_t *result = NULL;
    assert_int_equal(retry(f, "ch1", NULL, &result), FLOW_RUN_COMPLETED);
    assert_string_equal(json_string_value(result), "c");
    json_decref(result);
    assert_int_equal(count_calls("a"), 0); /* completed: kept */
    assert_int_equal(count_calls("b"), 1);
    assert_int_equal(count_calls("c"), 1);
    struct call again = last_call("b");
    assert_int_equal(again.act, first.act); /* the same activation ... */
    assert_int_equal(again.attempt, first.attempt + 1); /* ... its next attempt */
    const char *st;
    int attempts = 0;
    assert_int_equal(stored_acts("ch1", "b", &st, &attempts), 1);
    assert_string_equal(st, "completed");
    assert_int_equal(attempts, 2);
    assert_string_equal(stored_status("ch1"), "completed");
    assert_int_equal(records_of("ch1", JREC_RUN_RETRIED), 1);
    /* The journal shows the retry, who asked, and what ran again. */
    json_t *j = flow_store_journal(th_store, "ch1", NULL);
    size_t i;
    json_t *rec;
    bool seen = false;
    json_array_foreach(j, i, rec)
    {
        if (strcmp(json_string_value(json_object_get(rec, "type")), "run_retried") != 0)
            continue;
        seen = true;
        assert_string_equal(json_string_value(json_object_get(rec, "by")), "tester");
        assert_string_equal(json_string_value(json_array_get(json_object_get(rec, "tasks"), 0)),
                            "b");
        assert_int_equal(json_integer_value(json_array_get(json_object_get(rec, "activations"),
                                                           0)),
                         (json_int_t)first.act);
    }
    assert_true(seen);
    json_decref(j);
    /* A completed retry is a completed run: resuming it runs nothing. */
    flow_error err = {0};
    flow_run_options o = {.run_id = "ch1", .store = th_store};
    flow_run *r = flow_run_resume(th_engine, f, &o, &err);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_string_equal(json_string_value(flow_run_result(r)), "c");
    flow_run_free(r);
    flow_free(f);
}

static void test_second_retry(void **state)
{
    (void)state;
    flow *f = chain();
    breaking("b", NULL);
    assert_int_equal(run(f, "twice"), FLOW_RUN_FAILED);
    assert_int_equal(retry(f, "twice", NULL, NULL), FLOW_RUN_FAILED); /* still broken */
    assert_string_equal(stored_status("twice"), "failed");
    int attempts = 0;
    stored_acts("twice", "b", NULL, &attempts);
    assert_int_equal(attempts, 2);
    breaking(NULL, NULL);
    assert_int_equal(retry(f, "twice", NULL, NULL), FLOW_RUN_COMPLETED);
    stored_acts("twice", "b", NULL, &attempts);
    assert_int_equal(attempts, 3);
    assert_int_equal(last_call("b").attempt, 3);
    assert_int_equal(count_calls("a"), 0);
    assert_int_equal(records_of("twice", JREC_RUN_RETRIED), 2);
    assert_int_equal(records_of("twice", JREC_RUN_ENDED), 3);
    flow_free(f);
}

/* ---- downstream: joins, optional dependencies ---------------------------- */

/* a, b (on_error: continue) -> join after [a, b] -> tail; lone runs on. */
static flow *join_flow(void)
{
    flow *f = flow_new("join", NULL);
    flow_task *a = th_add(f, "a", t_work);
    flow_task *b = th_add(f, "b", t_work);
    flow_task_set_on_error(b, FLOW_ON_ERROR_CONTINUE);
    flow_task *join = th_add(f, "join", t_echo);
    flow_task_after(join, a);
    flow_task_after(join, b);
    flow_task *tail = th_add(f, "tail", t_echo);
    flow_task_after(tail, join);
    th_add(f, "lone", t_work);
    return f;
}

static void test_skipped_downstream_runs_again(void **state)
{
    (void)state;
    flow *f = join_flow();
    breaking("b", NULL);
    assert_int_equal(run(f, "j1"), FLOW_RUN_FAILED);
    const char *st;
    assert_int_equal(stored_acts("j1", "join", &st, NULL), 1);
    assert_string_equal(st, "skipped");
    assert_int_equal(stored_acts("j1", "tail", &st, NULL), 1);
    assert_string_equal(st, "skipped");
    breaking(NULL, NULL);
    json_t *result = NULL;
    assert_int_equal(retry(f, "j1", NULL, &result), FLOW_RUN_COMPLETED);
    /* the join saw a's output, kept from the first run, and b's new one */
    json_t *want = json_pack("{s:{s:s,s:s},s:s}", "tail", "a", "a", "b", "b", "lone", "lone");
    if (!json_equal(result, want)) {
        char *got = json_dumps(result, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("result %s", got);
    }
    json_decref(want);
    json_decref(result);
    assert_int_equal(count_calls("a"), 0);
    assert_int_equal(count_calls("lone"), 0);
    assert_int_equal(count_calls("join"), 1);
    assert_int_equal(count_calls("tail"), 1);
    /* the skipped activations ran: still one each */
    assert_int_equal(stored_acts("j1", "join", &st, NULL), 1);
    assert_string_equal(st, "completed");
    assert_int_equal(stored_acts("j1", "tail", &st, NULL), 1);
    assert_string_equal(st, "completed");
    flow_free(f);
}

/* `after` one that fails (continue), and `optional` on it: the optional one
 * ran with null and completed; the retry keeps it. */
static void test_completed_downstream_is_kept(void **state)
{
    (void)state;
    flow *f = flow_new("opt", NULL);
    flow_task *b = th_add(f, "b", t_work);
    flow_task_set_on_error(b, FLOW_ON_ERROR_CONTINUE);
    flow_task *opt = th_add(f, "opt", t_echo);
    flow_task_optional(opt, b);
    flow_task *req = th_add(f, "req", t_echo);
    flow_task_after(req, b);
    breaking("b", NULL);
    assert_int_equal(run(f, "o1"), FLOW_RUN_FAILED);
    assert_int_equal(count_calls("opt"), 1);
    breaking(NULL, NULL);
    json_t *result = NULL;
    assert_int_equal(retry(f, "o1", NULL, &result), FLOW_RUN_COMPLETED);
    assert_int_equal(count_calls("opt"), 0); /* kept, not run again */
    assert_int_equal(count_calls("req"), 1);
    json_t *want = json_pack("{s:n,s:s}", "opt", "req", "b");
    assert_true(json_equal(result, want));
    json_decref(want);
    json_decref(result);
    flow_free(f);
}

/* ---- foreach ------------------------------------------------------------- */

static flow *fan_flow(int concurrency, flow_on_error on_error)
{
    flow *f = flow_new("fan", NULL);
    flow_task *fan = th_add(f, "fan", t_item);
    json_t *list = json_string("{{ inputs.items }}");
    assert_int_equal(flow_task_set_foreach(fan, list, concurrency, NULL), FLOW_OK);
    json_decref(list);
    flow_task_set_on_error(fan, on_error);
    flow_task *sum = th_add(f, "sum", t_sum);
    flow_task_after(sum, fan);
    return f;
}

static flow_run_status run_items(flow *f, const char *id, int n)
{
    json_t *items = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(items, json_integer(i));
    json_t *in = json_pack("{s:o}", "items", items);
    flow_error err = {0};
    flow_run_options o = {.run_id = id, .store = th_store, .inputs = in};
    flow_run *r = flow_run_start(th_engine, f, &o, &err);
    json_decref(in);
    if (!r)
        fail_msg("start %s: %s", id, err.message);
    flow_run_status s = flow_run_wait(r);
    flow_run_free(r);
    return s;
}

static void test_foreach_runs_only_failed_items(void **state)
{
    (void)state;
    flow *f = fan_flow(2, FLOW_ON_ERROR_CONTINUE);
    breaking(NULL, NULL);
    atomic_store(&broken_items, (1u << 2) | (1u << 5));
    assert_int_equal(run_items(f, "fe1", 7), FLOW_RUN_FAILED);
    assert_int_equal(count_calls("fan"), 7);
    /* item 5 is still broken: the first retry fails again */
    breaking(NULL, NULL);
    atomic_store(&broken_items, 1u << 5);
    assert_int_equal(retry(f, "fe1", NULL, NULL), FLOW_RUN_FAILED);
    assert_int_equal(count_calls("fan"), 2); /* items 2 and 5 only */
    assert_int_equal(count_calls("sum"), 0);
    breaking(NULL, NULL);
    json_t *result = NULL;
    assert_int_equal(retry(f, "fe1", NULL, &result), FLOW_RUN_COMPLETED);
    assert_int_equal(count_calls("fan"), 1); /* item 5 only */
    assert_int_equal(last_call("fan").attempt, 3);
    assert_int_equal(count_calls("sum"), 1);
    assert_int_equal(json_integer_value(result), 210); /* 10 * (0 + 1 + ... + 6) */
    json_decref(result);
    flow_free(f);
}

/* on_error: fail: the first broken item stops the run; what was running is
 * cancelled and the rest never starts. All of that runs on retry, the
 * completed items do not. */
static void test_foreach_stopped_by_a_failure(void **state)
{
    (void)state;
    flow *f = fan_flow(2, FLOW_ON_ERROR_FAIL);
    breaking(NULL, NULL);
    atomic_store(&broken_items, 1u << 3);
    atomic_store(&held_from, 4);
    assert_int_equal(run_items(f, "fe2", 8), FLOW_RUN_FAILED);
    int first = count_calls("fan");
    assert_true(first <= 5); /* items 0 to 3, and 4 if it started before 3 failed */
    breaking(NULL, NULL);
    json_t *result = NULL;
    assert_int_equal(retry(f, "fe2", NULL, &result), FLOW_RUN_COMPLETED);
    assert_int_equal(json_integer_value(result), 280);
    json_decref(result);
    int again = count_calls("fan");
    /* every item completed once in all: those that completed the first time
     * did not run again */
    json_t *runj = flow_store_run(th_store, "fe2", NULL);
    size_t i;
    json_t *t;
    int completed = 0;
    json_array_foreach(json_object_get(runj, "tasks"), i, t)
    {
        if (!strcmp(json_string_value(json_object_get(t, "task")), "fan") &&
            !strcmp(json_string_value(json_object_get(t, "status")), "completed"))
            completed++;
    }
    json_decref(runj);
    assert_int_equal(completed, 9); /* the parent and its 8 elements */
    assert_true(again <= 8 - (first - 2));
    flow_free(f);
}

/* ---- naming tasks -------------------------------------------------------- */

static void test_named_task_only(void **state)
{
    (void)state;
    flow *f = flow_new("two", NULL);
    flow_task *x = th_add(f, "x", t_work);
    flow_task *y = th_add(f, "y", t_work);
    flow_task_set_on_error(x, FLOW_ON_ERROR_CONTINUE);
    flow_task_set_on_error(y, FLOW_ON_ERROR_CONTINUE);
    breaking("x", "y");
    assert_int_equal(run(f, "n1"), FLOW_RUN_FAILED);
    breaking(NULL, NULL);
    const char *only_x[] = {"x", NULL};
    flow_error err = {0};
    flow_run_options o = {.run_id = "n1", .store = th_store};
    flow_run *r = flow_run_retry(th_engine, f, &o, only_x, &err);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_FAILED); /* y was not retried */
    assert_non_null(strstr(flow_run_error(r), "task 'y' failed"));
    flow_run_free(r);
    assert_int_equal(count_calls("x"), 1);
    assert_int_equal(count_calls("y"), 0);
    assert_int_equal(retry(f, "n1", NULL, NULL), FLOW_RUN_COMPLETED);
    assert_int_equal(count_calls("x"), 1); /* completed by the first retry */
    assert_int_equal(count_calls("y"), 1);
    flow_free(f);
}

/* Naming a completed task runs it again, and what comes after it. */
static void test_named_completed_task_runs_downstream(void **state)
{
    (void)state;
    flow *f = chain();
    flow_task *x = th_add(f, "x", t_work);
    flow_task_set_on_error(x, FLOW_ON_ERROR_CONTINUE);
    breaking("x", NULL);
    assert_int_equal(run(f, "nc1"), FLOW_RUN_FAILED);
    breaking(NULL, NULL);
    const char *names[] = {"a", "x", NULL};
    assert_int_equal(retry(f, "nc1", names, NULL), FLOW_RUN_COMPLETED);
    assert_int_equal(count_calls("a"), 1);
    assert_int_equal(count_calls("b"), 1);
    assert_int_equal(count_calls("c"), 1);
    assert_int_equal(count_calls("x"), 1);
    flow_free(f);
}

/* ---- fallbacks, groups, routers, labels, nested flows -------------------- */

static void test_fallback_that_failed(void **state)
{
    (void)state;
    flow *f = flow_new("fb", NULL);
    flow_task *main_ = th_add(f, "main", t_work);
    flow_task *fb = th_add(f, "fb", t_work);
    flow_task_set_on_error(main_, FLOW_ON_ERROR_FALLBACK);
    flow_task_set_fallback(main_, fb);
    flow_task *next = th_add(f, "next", t_echo);
    flow_task_after(next, main_);
    breaking("main", "fb");
    assert_int_equal(run(f, "fb1"), FLOW_RUN_FAILED);
    /* main still broken: its fallback runs again, as the same activation */
    breaking("main", NULL);
    json_t *result = NULL;
    assert_int_equal(retry(f, "fb1", NULL, &result), FLOW_RUN_COMPLETED);
    assert_string_equal(json_string_value(result), "fb");
    json_decref(result);
    assert_int_equal(count_calls("main"), 1);
    assert_int_equal(count_calls("fb"), 1);
    const char *st;
    int attempts = 0;
    assert_int_equal(stored_acts("fb1", "fb", &st, &attempts), 1);
    assert_string_equal(st, "completed");
    assert_int_equal(attempts, 2);
    flow_free(f);
}

static int t_fan_out(flow_ctx *ctx)
{
    note(ctx);
    json_t *one = json_integer(1), *two = json_integer(2);
    flow_branch br[2] = {{"branch", one}, {"branch", two}};
    flow_err rc = flow_ctx_parallel(ctx, br, 2, "gather");
    json_decref(one);
    json_decref(two);
    return rc ? 1 : 0;
}

static int t_branch(flow_ctx *ctx)
{
    note(ctx);
    json_int_t v = json_integer_value(flow_ctx_input(ctx));
    if (v == 2 && is_broken("branch")) {
        flow_ctx_fail(ctx, "branch 2 is broken");
        return 1;
    }
    return flow_ctx_set_output_take(ctx, json_integer(v * 100)) ? 1 : 0;
}

static void test_parallel_group(void **state)
{
    (void)state;
    flow *f = flow_new("par", NULL);
    th_add(f, "split", t_fan_out);
    flow_task *br = th_add(f, "branch", t_branch);
    flow_task_set_start(br, false);
    flow_task_set_on_error(br, FLOW_ON_ERROR_CONTINUE);
    flow_task_set_start(th_add(f, "gather", t_sum), false);
    breaking("branch", NULL);
    assert_int_equal(run(f, "g1"), FLOW_RUN_FAILED);
    const char *st;
    assert_int_equal(stored_acts("g1", "gather", &st, NULL), 1);
    assert_string_equal(st, "skipped");
    breaking(NULL, NULL);
    json_t *result = NULL;
    assert_int_equal(retry(f, "g1", NULL, &result), FLOW_RUN_COMPLETED);
    assert_int_equal(count_calls("branch"), 1);
    assert_int_equal(count_calls("split"), 0);
    assert_int_equal(stored_acts("g1", "gather", &st, NULL), 1);
    assert_string_equal(st, "completed");
    assert_int_equal(json_integer_value(json_object_get(result, "gather")), 300);
    json_decref(result);
    flow_free(f);
}

static int t_router(flow_ctx *ctx)
{
    note(ctx);
    if (is_broken("route")) {
        flow_ctx_fail(ctx, "no route");
        return 1;
    }
    return flow_ctx_set_output_take(ctx, json_string("go")) ? 1 : 0;
}

/* A router that failed, a subscriber of its label, and a `when` over a
 * label and a task that failed (on_error: continue). */
static void test_router_and_when_label(void **state)
{
    (void)state;
    flow *f = flow_new("route", NULL);
    flow_task *route = th_add(f, "route", t_router);
    flow_task_set_router(route, true);
    flow_task_on(th_add(f, "went", t_work), "go");
    flow_task *sig = th_add(f, "sig", t_router);
    flow_task_set_router(sig, true);
    flow_task *b = th_add(f, "b", t_work);
    flow_task_set_on_error(b, FLOW_ON_ERROR_CONTINUE);
    flow_task *both = th_add(f, "both", t_work);
    flow_task_when(both, flow_cond_and(2, flow_cond_label("go"), flow_cond_task("b")));
    flow_task_after(b, sig);
    /* First run: route and b are broken; sig emits go, then b fails. */
    breaking("b", NULL);
    assert_int_equal(run(f, "rt1"), FLOW_RUN_FAILED);
    assert_int_equal(count_calls("both"), 0);
    breaking(NULL, NULL);
    assert_int_equal(retry(f, "rt1", NULL, NULL), FLOW_RUN_COMPLETED);
    assert_int_equal(count_calls("b"), 1);
    assert_int_equal(count_calls("both"), 1); /* the label it had stands */
    assert_int_equal(count_calls("sig"), 0);
    flow_free(f);

    f = flow_new("route2", NULL);
    route = th_add(f, "route", t_router);
    flow_task_set_router(route, true);
    flow_task_on(th_add(f, "went", t_work), "go");
    breaking("route", NULL);
    assert_int_equal(run(f, "rt2"), FLOW_RUN_FAILED);
    breaking(NULL, NULL);
    assert_int_equal(retry(f, "rt2", NULL, NULL), FLOW_RUN_COMPLETED);
    assert_int_equal(count_calls("route"), 1);
    assert_int_equal(count_calls("went"), 1);
    flow_free(f);
}

static void test_nested_flow(void **state)
{
    (void)state;
    flow *child = flow_new("child", NULL);
    th_add(child, "inner", t_work);
    flow *f = flow_new("parent", NULL);
    flow_task *pre = th_add(f, "pre", t_echo); /* {}: the child's inputs */
    flow_task *sub = th_add(f, "sub", NULL);
    assert_int_equal(flow_task_set_subflow(sub, child), FLOW_OK);
    flow_task_after(sub, pre);
    breaking("inner", NULL);
    assert_int_equal(run(f, "nest1"), FLOW_RUN_FAILED);
    breaking(NULL, NULL);
    json_t *result = NULL;
    assert_int_equal(retry(f, "nest1", NULL, &result), FLOW_RUN_COMPLETED);
    assert_string_equal(json_string_value(result), "inner");
    json_decref(result);
    assert_int_equal(count_calls("pre"), 0);
    assert_int_equal(count_calls("inner"), 1);
    flow_free(f);
    flow_free(child);
}

/* ---- feedback that timed out --------------------------------------------- */

static void test_feedback_timed_out(void **state)
{
    (void)state;
    flow *f = flow_new("ask", NULL);
    flow_task *ask = th_add(f, "ask", NULL);
    /* The retry's request times out too: its answer, given right after the
     * run paused, must come before that however slow the machine. */
    flow_feedback q = {.type = FLOW_FEEDBACK_APPROVAL, .message = "ok?", .timeout = 1.0};
    assert_int_equal(flow_task_set_feedback(ask, &q, NULL), FLOW_OK);
    flow_error err = {0};
    flow_run_options o = {.run_id = "fb-t", .store = th_store, .wait = true};
    flow_run *r = flow_run_start(th_engine, f, &o, &err);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_FAILED); /* no answer, no default */
    flow_run_free(r);
    /* The retry asks again, under a new id, and waits for the answer. */
    o.wait = false;
    o.by = NULL;
    r = flow_run_retry(th_engine, f, &o, NULL, &err);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
    flow_run_free(r);
    json_t *open = flow_store_feedback(th_store, "fb-t", NULL);
    assert_int_equal(json_array_size(open), 1);
    const char *id = json_string_value(json_object_get(json_array_get(open, 0), "request"));
    assert_string_equal(id, "ask-1.retry1");
    assert_int_equal(flow_store_answer(th_store, "fb-t", "ask-1.retry1", json_true(), "me", &err),
                     FLOW_OK);
    json_decref(open);
    r = flow_run_resume(th_engine, f, &o, &err);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_true(json_is_true(json_object_get(flow_run_result(r), "approved")));
    flow_run_free(r);
    flow_free(f);
}

/* ---- a completion that came in as the run stopped ------------------------ */

static atomic_int slow_in;

static int t_slow(flow_ctx *ctx)
{
    note(ctx);
    atomic_store(&slow_in, 1);
    usleep(150000); /* finishes after its sibling failed the run */
    return flow_ctx_set_output_take(ctx, json_string("slow")) ? 1 : 0;
}

static int t_fails_soon(flow_ctx *ctx)
{
    note(ctx);
    while (!atomic_load(&slow_in))
        usleep(1000);
    if (is_broken("quick")) {
        flow_ctx_fail(ctx, "quick is broken");
        return 1;
    }
    return flow_ctx_set_output_take(ctx, json_string("quick")) ? 1 : 0;
}

static void test_completion_while_stopping(void **state)
{
    (void)state;
    flow *f = flow_new("stopping", NULL);
    flow_task *slow = th_add(f, "slow", t_slow);
    th_add(f, "quick", t_fails_soon);
    flow_task *after = th_add(f, "after_slow", t_echo);
    flow_task_after(after, slow);
    atomic_store(&slow_in, 0);
    breaking("quick", NULL);
    assert_int_equal(run(f, "st1"), FLOW_RUN_FAILED);
    const char *st;
    assert_int_equal(stored_acts("st1", "slow", &st, NULL), 1);
    assert_string_equal(st, "completed");
    assert_int_equal(count_calls("after_slow"), 0);
    breaking(NULL, NULL);
    atomic_store(&slow_in, 1);
    assert_int_equal(retry(f, "st1", NULL, NULL), FLOW_RUN_COMPLETED);
    assert_int_equal(count_calls("slow"), 0);
    assert_int_equal(count_calls("after_slow"), 1);
    flow_free(f);
}

/* ---- cancelled runs ------------------------------------------------------ */

static atomic_int gate;

static int t_gate(flow_ctx *ctx)
{
    note(ctx);
    int closed = 0;
    atomic_compare_exchange_strong(&gate, &closed, 1); /* 2: open */
    while (atomic_load(&gate) == 1 && !flow_ctx_is_cancelled(ctx))
        usleep(1000);
    if (flow_ctx_is_cancelled(ctx)) {
        flow_ctx_fail(ctx, "cancelled");
        return 1;
    }
    return flow_ctx_set_output_take(ctx, json_string("through")) ? 1 : 0;
}

static void test_cancelled_run(void **state)
{
    (void)state;
    flow *f = flow_new("cancel", NULL);
    flow_task *a = th_add(f, "a", t_work);
    flow_task *g = th_add(f, "gate", t_gate);
    flow_task_after(g, a);
    flow_task *z = th_add(f, "z", t_echo);
    flow_task_after(z, g);
    breaking(NULL, NULL);
    atomic_store(&gate, 0);
    flow_error err = {0};
    flow_run_options o = {.run_id = "cx1", .store = th_store};
    flow_run *r = flow_run_start(th_engine, f, &o, &err);
    assert_non_null(r);
    while (!atomic_load(&gate))
        usleep(1000);
    flow_run_cancel(r, "enough");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_CANCELLED);
    flow_run_free(r);
    atomic_store(&gate, 2); /* the next time through, it passes */
    json_t *result = NULL;
    assert_int_equal(retry(f, "cx1", NULL, &result), FLOW_RUN_COMPLETED);
    assert_string_equal(json_string_value(result), "through");
    json_decref(result);
    assert_int_equal(count_calls("a"), 1); /* the first run's call only */
    assert_int_equal(count_calls("gate"), 2);
    assert_int_equal(count_calls("z"), 1);
    flow_free(f);
}

/* ---- refusals ------------------------------------------------------------ */

static void test_refusals_change_nothing(void **state)
{
    (void)state;
    flow *f = chain();
    breaking(NULL, NULL);
    assert_int_equal(run(f, "done"), FLOW_RUN_COMPLETED);
    size_t n = th_journal_length(th_store, "done");
    refused(f, "done", NULL, FLOW_ESTATE, "run 'done' completed: nothing to retry");
    assert_int_equal(th_journal_length(th_store, "done"), n);

    refused(f, "nosuch", NULL, FLOW_ENOTFOUND, "nosuch");

    breaking("b", NULL);
    assert_int_equal(run(f, "bad"), FLOW_RUN_FAILED);
    n = th_journal_length(th_store, "bad");
    const char *unknown[] = {"b", "nope", NULL};
    refused(f, "bad", unknown, FLOW_EINVAL, "unknown task 'nope'");
    const char *never[] = {"c", NULL};
    refused(f, "bad", never, FLOW_EINVAL, "task 'c' never ran in run 'bad'");
    assert_int_equal(th_journal_length(th_store, "bad"), n);
    assert_string_equal(stored_status("bad"), "failed");

    /* a skipped task, named without the failure that skipped it */
    flow *j = join_flow();
    breaking("b", NULL);
    assert_int_equal(run(j, "sk"), FLOW_RUN_FAILED);
    const char *join_only[] = {"join", NULL};
    refused(j, "sk", join_only, FLOW_EINVAL, "skipped because 'b' did not complete");
    const char *with_cause[] = {"join", "b", NULL};
    breaking(NULL, NULL);
    assert_int_equal(retry(j, "sk", with_cause, NULL), FLOW_RUN_COMPLETED);
    flow_free(j);

    /* paused: flow_run_resume continues it */
    atomic_store(&gate, 0);
    flow *g = flow_new("gated", NULL);
    th_add(g, "gate", t_gate);
    flow_run_options o = {.run_id = "pz", .store = th_store};
    flow_run *r = flow_run_start(th_engine, g, &o, NULL);
    assert_non_null(r);
    while (!atomic_load(&gate))
        usleep(1000);
    flow_run_pause(r, "lunch");
    /* running: another runner holds it */
    refused(g, "pz", NULL, FLOW_EBUSY, "run 'pz' has not ended");
    atomic_store(&gate, 2);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED); /* nothing was left to pause */
    flow_run_free(r);

    atomic_store(&gate, 0);
    o.run_id = "pz2";
    flow *g2 = flow_new("gated2", NULL);
    flow_task *gt = th_add(g2, "gate", t_gate);
    flow_task_after(th_add(g2, "then", t_work), gt);
    r = flow_run_start(th_engine, g2, &o, NULL);
    assert_non_null(r);
    while (!atomic_load(&gate))
        usleep(1000);
    flow_run_pause(r, "lunch");
    atomic_store(&gate, 2);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
    flow_run_free(r);
    n = th_journal_length(th_store, "pz2");
    refused(g2, "pz2", NULL, FLOW_ESTATE, "run 'pz2' is paused");
    assert_int_equal(th_journal_length(th_store, "pz2"), n);
    flow_free(g);
    flow_free(g2);

    /* a changed flow is refused unless forced */
    flow *other = chain();
    th_add(other, "extra", t_work);
    refused(other, "bad", NULL, FLOW_ESTATE, "changed since the run started");
    flow_free(other);
    flow_free(f);
}

/* A run stopped mid-run (its runner died): flow resume, not flow retry. */
static void test_stopped_run_is_refused(void **state)
{
    (void)state;
    flow *f = chain();
    breaking(NULL, NULL);
    assert_int_equal(run(f, "whole"), FLOW_RUN_COMPLETED);
    th_fork_prefix(th_store, "whole", "cut", 4, FLOW_RUN_RUNNING);
    refused(f, "cut", NULL, FLOW_ESTATE, "stopped before it ended");
    assert_int_equal(th_journal_length(th_store, "cut"), 4);
    flow_free(f);
}

/* A run whose runner died, cancelled from another process while nobody ran
 * it: its journal ends with activations left unfinished, which the retry
 * runs (as cancelled ones). */
static void test_cancelled_while_nobody_ran_it(void **state)
{
    (void)state;
    flow *f = chain();
    breaking(NULL, NULL);
    assert_int_equal(run(f, "whole2"), FLOW_RUN_COMPLETED);
    th_fork_prefix(th_store, "whole2", "orphan", 5, FLOW_RUN_RUNNING); /* b started, never ended */
    assert_string_equal(stored_status("orphan"), "stopped");
    assert_int_equal(flow_store_request(th_store, "orphan", "cancel", "given up", NULL), FLOW_OK);
    assert_string_equal(stored_status("orphan"), "cancelled");
    breaking(NULL, NULL);
    json_t *result = NULL;
    assert_int_equal(retry(f, "orphan", NULL, &result), FLOW_RUN_COMPLETED);
    assert_string_equal(json_string_value(result), "c");
    json_decref(result);
    assert_int_equal(count_calls("a"), 0);
    assert_int_equal(count_calls("b"), 1);
    assert_int_equal(count_calls("c"), 1);
    flow_free(f);
}

/* The same with a foreach cut while its elements ran: those that completed
 * are kept, the rest run. */
static void test_foreach_cancelled_while_nobody_ran_it(void **state)
{
    (void)state;
    flow *f = fan_flow(2, FLOW_ON_ERROR_FAIL);
    breaking(NULL, NULL);
    assert_int_equal(run_items(f, "fan-whole", 6), FLOW_RUN_COMPLETED);
    struct flow__jrec *recs;
    size_t count, cut = 0;
    assert_int_equal(flow__store_read_all(th_store, "fan-whole", &recs, &count, NULL), FLOW_OK);
    for (size_t i = 0; i < count && !cut; i++)
        if (recs[i].type == JREC_ACT_COMPLETED && recs[i].act > 1)
            cut = i + 1; /* the first element completed, the next running */
    flow__records_free(recs, count);
    assert_true(cut > 0);
    th_fork_prefix(th_store, "fan-whole", "fan-cut", cut, FLOW_RUN_RUNNING);
    assert_int_equal(flow_store_request(th_store, "fan-cut", "cancel", NULL, NULL), FLOW_OK);
    breaking(NULL, NULL);
    json_t *result = NULL;
    assert_int_equal(retry(f, "fan-cut", NULL, &result), FLOW_RUN_COMPLETED);
    assert_int_equal(json_integer_value(result), 150);
    json_decref(result);
    assert_int_equal(count_calls("fan"), 5); /* all but the one that completed */
    /* Replayed (a resume of the ended run replays the retry), it agrees. */
    flow_error err = {0};
    flow_run_options o = {.run_id = "fan-cut", .store = th_store};
    flow_run *r = flow_run_resume(th_engine, f, &o, &err);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_int_equal(json_integer_value(flow_run_result(r)), 150);
    flow_run_free(r);
    flow_free(f);
}

/* ---- a crash at every record of a retry ---------------------------------- */

static size_t index_of(const char *id, int type)
{
    struct flow__jrec *recs;
    size_t count;
    size_t at = 0;
    assert_int_equal(flow__store_read_all(th_store, id, &recs, &count, NULL), FLOW_OK);
    for (size_t i = 0; i < count; i++)
        if (recs[i].type == type)
            at = i;
    flow__records_free(recs, count);
    return at;
}

static void test_crash_during_retry(void **state)
{
    (void)state;
    /* joins, skips, foreach elements and a fallback in one run */
    flow *f = join_flow();
    flow_task *fan = th_add(f, "fan", t_item);
    json_t *list = json_pack("[i,i,i,i,i]", 0, 1, 2, 3, 4);
    assert_int_equal(flow_task_set_foreach(fan, list, 2, NULL), FLOW_OK);
    json_decref(list);
    flow_task_set_on_error(fan, FLOW_ON_ERROR_CONTINUE);
    flow_task *sum = th_add(f, "sum", t_sum);
    flow_task_after(sum, fan);
    breaking("b", NULL);
    atomic_store(&broken_items, 1u << 1);
    assert_int_equal(run(f, "cr"), FLOW_RUN_FAILED);
    breaking(NULL, NULL);
    json_t *want = NULL;
    assert_int_equal(retry(f, "cr", NULL, &want), FLOW_RUN_COMPLETED);
    size_t n = th_journal_length(th_store, "cr");
    size_t from = index_of("cr", JREC_RUN_RETRIED);
    assert_true(from > 0);
    for (size_t k = from + 1; k < n; k++) {
        char id[32];
        snprintf(id, sizeof(id), "cr-%zu", k);
        /* the store's status as a crash there leaves it: still failed right
         * after the record, running afterwards */
        th_fork_prefix(th_store, "cr", id, k, k == from + 1 ? FLOW_RUN_FAILED : FLOW_RUN_RUNNING);
        assert_string_equal(stored_status(id), "stopped");
        refused(f, id, NULL, FLOW_ESTATE, "stopped before it ended");
        breaking(NULL, NULL);
        flow_error err = {0};
        flow_run_options o = {.run_id = id, .store = th_store};
        flow_run *r = flow_run_resume(th_engine, f, &o, &err);
        if (!r)
            fail_msg("resume after %zu records: %s", k, err.message);
        flow_run_status s = flow_run_wait(r);
        if (s != FLOW_RUN_COMPLETED || !json_equal(flow_run_result(r), want)) {
            char *got = json_dumps(flow_run_result(r), JSON_COMPACT | JSON_SORT_KEYS);
            fail_msg("resume after %zu records: %s %s (%s)", k, flow_run_status_name(s), got,
                     flow_run_error(r) ? flow_run_error(r) : "");
        }
        flow_run_free(r);
        pthread_mutex_lock(&mu);
        for (size_t i = 0; i < ncalls; i++)
            if (th_completed_within(th_store, id, k, calls[i].act))
                fail_msg("after %zu records: %s#%llu ran again after its completion was "
                         "journaled",
                         k, calls[i].task, (unsigned long long)calls[i].act);
        pthread_mutex_unlock(&mu);
        assert_int_equal(records_of(id, JREC_RUN_RETRIED), 1); /* not retried twice */
        assert_string_equal(stored_status(id), "completed");
    }
    json_decref(want);
    flow_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed_task_runs_again),
        cmocka_unit_test(test_second_retry),
        cmocka_unit_test(test_skipped_downstream_runs_again),
        cmocka_unit_test(test_completed_downstream_is_kept),
        cmocka_unit_test(test_foreach_runs_only_failed_items),
        cmocka_unit_test(test_foreach_stopped_by_a_failure),
        cmocka_unit_test(test_named_task_only),
        cmocka_unit_test(test_named_completed_task_runs_downstream),
        cmocka_unit_test(test_fallback_that_failed),
        cmocka_unit_test(test_parallel_group),
        cmocka_unit_test(test_router_and_when_label),
        cmocka_unit_test(test_nested_flow),
        cmocka_unit_test(test_feedback_timed_out),
        cmocka_unit_test(test_completion_while_stopping),
        cmocka_unit_test(test_cancelled_run),
        cmocka_unit_test(test_refusals_change_nothing),
        cmocka_unit_test(test_stopped_run_is_refused),
        cmocka_unit_test(test_cancelled_while_nobody_ran_it),
        cmocka_unit_test(test_foreach_cancelled_while_nobody_ran_it),
        cmocka_unit_test(test_crash_during_retry),
    };
    return cmocka_run_group_tests(tests, th_engine_setup, th_engine_teardown);
}
