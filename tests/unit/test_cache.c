/* test_cache.c -- cached outputs of tasks through the C API (core/cache.c,
 * docs/internals/prompts.md "Cache"): a hit completes an activation without
 * running it, journaled as a completion with info {cached: true}; misses,
 * other keys, expiry, no_cache, failed attempts never kept, foreach
 * elements, state writes, nested flows, routers, limits a hit does not
 * wait for, resume after a hit, runs without a store, keys that cannot be
 * rendered, refusals. The stores' side: test_store_cache.c; the program's:
 * tests/e2e/test_cache.sh. */
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
static flow_store *store;
static char *tmp;

static atomic_int runs_of_work; /* bodies of `work` that ran */
static atomic_int fail_first;   /* `work` fails while this is above 0 (counts down) */
static atomic_int pause_next;   /* `next` pauses its run while set */

static int setup(void **state)
{
    (void)state;
    flow_engine_options o = {.jobs = 2};
    engine = flow_engine_new(&o, NULL);
    store = flow_store_open("memory:", NULL);
    assert_non_null(engine);
    assert_non_null(store);
    atomic_store(&runs_of_work, 0);
    atomic_store(&fail_first, 0);
    atomic_store(&pause_next, 0);
    tmp = NULL;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    flow_engine_free(engine);
    flow_store_close(store);
    if (tmp) {
        th_rmtree(tmp);
        free(tmp);
    }
    return 0;
}

/* {"n": how many bodies ran so far, "x": the input's x (or the item)}. */
static int work(flow_ctx *ctx)
{
    int n = atomic_fetch_add(&runs_of_work, 1) + 1;
    if (atomic_load(&fail_first) > 0) {
        atomic_fetch_sub(&fail_first, 1);
        flow_ctx_fail(ctx, "not yet");
        return 1;
    }
    json_t *in = flow_ctx_item(ctx) ? flow_ctx_item(ctx) : json_object_get(flow_ctx_input(ctx), "x");
    flow_ctx_set_output_take(ctx, json_pack("{s:i,s:O?}", "n", n, "x", in));
    return 0;
}

/* Writes the state: a key set, a counter added to. */
static int writer(flow_ctx *ctx)
{
    atomic_fetch_add(&runs_of_work, 1);
    flow_ctx_set_state_take(ctx, "written", json_string("yes"));
    flow_ctx_incr_state(ctx, "count", 1);
    flow_ctx_set_output_take(ctx, json_string("w"));
    return 0;
}

static int next(flow_ctx *ctx)
{
    if (atomic_load(&pause_next))
        flow_ctx_pause(ctx, "told to");
    flow_ctx_set_output_take(ctx, json_incref(flow_ctx_input(ctx)));
    return 0;
}

/* A flow "c" whose task `work` is cached under {{ inputs.x }}. */
static flow *cached_flow(double ttl, flow_task **out)
{
    flow *f = flow_new("c", NULL);
    flow_task *t = th_add(f, "work", work);
    flow_error err;
    if (flow_task_set_cache(t, "{{ inputs.x }}", ttl, &err) != FLOW_OK)
        fail_msg("flow_task_set_cache: %s", err.message);
    if (out)
        *out = t;
    return f;
}

/* What the observer saw: completions, and those from the cache. */
struct seen {
    atomic_int completed, cached, started;
};

static void observe(const flow_event *ev, void *udata)
{
    struct seen *s = udata;
    if (ev->type == FLOW_EV_TASK_STARTED)
        atomic_fetch_add(&s->started, 1);
    if (ev->type != FLOW_EV_TASK_COMPLETED)
        return;
    atomic_fetch_add(&s->completed, 1);
    if (ev->label && !strcmp(ev->label, "cached"))
        atomic_fetch_add(&s->cached, 1);
}

/* Run `f` with inputs {"x": x} in `st` (may be NULL) as run `id` (may be
 * NULL); the run's result (new reference) when it completed, else NULL. */
static json_t *run_x(flow *f, flow_store *st, const char *id, const char *x, bool no_cache,
                     struct seen *seen)
{
    json_t *in = json_pack("{s:s}", "x", x);
    flow_run_options o = {.inputs = in, .store = st, .run_id = id, .no_cache = no_cache};
    if (seen) {
        o.on_event = observe;
        o.event_udata = seen;
    }
    flow_error err;
    flow_run *r = flow_run_start(engine, f, &o, &err);
    json_decref(in);
    if (!r)
        fail_msg("run did not start: %s", err.message);
    flow_run_status s = flow_run_wait(r);
    json_t *res = s == FLOW_RUN_COMPLETED ? json_incref(flow_run_result(r)) : NULL;
    flow_run_free(r);
    return res;
}

static int n_of(const json_t *result)
{
    return (int)json_integer_value(json_object_get(result, "n"));
}

/* The `info` the store's fold gives activation `act` (1-based) of `id`. */
static json_t *info_of(flow_store *st, const char *id, int act)
{
    flow_error err;
    json_t *run = flow_store_run(st, id, &err);
    if (!run)
        fail_msg("flow_store_run '%s': %s", id, err.message);
    json_t *t = json_array_get(json_object_get(run, "tasks"), (size_t)act - 1);
    json_t *info = json_incref(json_object_get(t, "info"));
    json_decref(run);
    return info;
}

/* ---- hits and misses ----------------------------------------------------- */

static void test_hit(void **state)
{
    (void)state;
    flow *f = cached_flow(0, NULL);
    struct seen s1 = {0}, s2 = {0};
    json_t *a = run_x(f, store, "h1", "k", false, &s1);
    json_t *b = run_x(f, store, "h2", "k", false, &s2);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(atomic_load(&runs_of_work), 1); /* the second did not run it */
    assert_true(json_equal(a, b));                  /* ... and gave the same output */
    assert_int_equal(atomic_load(&s1.cached), 0);
    assert_int_equal(atomic_load(&s2.cached), 1);   /* the observer is told */
    assert_int_equal(atomic_load(&s2.started), 0);  /* ... and nothing started */
    json_t *i1 = info_of(store, "h1", 1), *i2 = info_of(store, "h2", 1);
    assert_null(json_object_get(i1, "cached"));
    assert_true(json_is_true(json_object_get(i2, "cached")));
    assert_true(json_is_string(json_object_get(i2, "cached_at")));
    json_decref(i1);
    json_decref(i2);
    json_decref(a);
    json_decref(b);
    flow_free(f);
}

static void test_other_keys(void **state)
{
    (void)state;
    flow *f = cached_flow(0, NULL);
    json_t *a = run_x(f, store, NULL, "k1", false, NULL);
    json_t *b = run_x(f, store, NULL, "k2", false, NULL);
    json_t *c = run_x(f, store, NULL, "k1", false, NULL);
    assert_int_equal(atomic_load(&runs_of_work), 2);
    assert_int_equal(n_of(a), 1);
    assert_int_equal(n_of(b), 2);
    assert_int_equal(n_of(c), 1); /* k1's entry */
    json_decref(a);
    json_decref(b);
    json_decref(c);
    /* Another flow with a task of the same name and key: not its entry. */
    flow *g = flow_new("other", NULL);
    flow_task *t = th_add(g, "work", work);
    assert_int_equal(flow_task_set_cache(t, "{{ inputs.x }}", 0, NULL), FLOW_OK);
    json_t *d = run_x(g, store, NULL, "k1", false, NULL);
    assert_int_equal(n_of(d), 3);
    json_decref(d);
    flow_free(g);
    flow_free(f);
}

static void test_ttl_expiry(void **state)
{
    (void)state;
    flow *f = cached_flow(0.3, NULL);
    json_t *a = run_x(f, store, NULL, "k", false, NULL);
    json_t *b = run_x(f, store, NULL, "k", false, NULL);
    assert_int_equal(n_of(b), 1); /* within its ttl */
    usleep(450 * 1000);
    json_t *c = run_x(f, store, NULL, "k", false, NULL);
    assert_int_equal(n_of(c), 2); /* expired: ran again, and kept anew */
    json_t *d = run_x(f, store, NULL, "k", false, NULL);
    assert_int_equal(n_of(d), 2);
    assert_int_equal(atomic_load(&runs_of_work), 2);
    usleep(450 * 1000);
    size_t removed = 99;
    assert_int_equal(flow_store_gc_cache(store, false, &removed, NULL), FLOW_OK);
    assert_int_equal(removed, 1);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(d);
    flow_free(f);
}

static void test_no_cache(void **state)
{
    (void)state;
    flow *f = cached_flow(0, NULL);
    struct seen s = {0};
    json_t *a = run_x(f, store, NULL, "k", false, NULL);
    json_t *b = run_x(f, store, NULL, "k", true, &s); /* runs, and replaces the entry */
    json_t *c = run_x(f, store, NULL, "k", false, NULL);
    assert_int_equal(n_of(a), 1);
    assert_int_equal(n_of(b), 2);
    assert_int_equal(atomic_load(&s.cached), 0);
    assert_int_equal(n_of(c), 2);
    assert_int_equal(atomic_load(&runs_of_work), 2);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    flow_free(f);
}

static void test_failures_not_kept(void **state)
{
    (void)state;
    flow_task *t;
    flow *f = cached_flow(0, &t);
    atomic_store(&fail_first, 1);
    assert_null(run_x(f, store, NULL, "k", false, NULL)); /* failed: nothing kept */
    json_t *a = run_x(f, store, NULL, "k", false, NULL);   /* runs again */
    assert_int_equal(n_of(a), 2);
    json_t *b = run_x(f, store, NULL, "k", false, NULL);   /* now from the cache */
    assert_int_equal(n_of(b), 2);
    /* A retry that succeeds is kept; the attempt that failed before it is not. */
    flow *g = cached_flow(0, &t);
    assert_int_equal(flow_task_set_retries(t, 2), FLOW_OK);
    flow_backoff quick = {.delay = 0.01, .factor = 1, .max_delay = 0.01};
    assert_int_equal(flow_task_set_backoff(t, &quick), FLOW_OK);
    atomic_store(&fail_first, 1);
    json_t *c = run_x(g, store, NULL, "k2", false, NULL);
    json_t *d = run_x(g, store, NULL, "k2", false, NULL);
    assert_int_equal(n_of(c), 4);
    assert_int_equal(n_of(d), 4);
    assert_int_equal(atomic_load(&runs_of_work), 4);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(d);
    flow_free(g);
    flow_free(f);
}

/* on_error: ignore turns a failure into a completion with null: not kept. */
static void test_ignored_not_kept(void **state)
{
    (void)state;
    flow_task *t;
    flow *f = cached_flow(0, &t);
    assert_int_equal(flow_task_set_on_error(t, FLOW_ON_ERROR_IGNORE), FLOW_OK);
    atomic_store(&fail_first, 1);
    json_t *a = run_x(f, store, NULL, "k", false, NULL);
    assert_true(json_is_null(a));
    json_t *b = run_x(f, store, NULL, "k", false, NULL);
    assert_int_equal(n_of(b), 2);
    json_decref(a);
    json_decref(b);
    flow_free(f);
}

static void test_foreach_elements(void **state)
{
    (void)state;
    flow *f = flow_new("fe", NULL);
    flow_task *t = th_add(f, "work", work);
    json_t *tmpl = json_string("{{ inputs.items }}");
    assert_int_equal(flow_task_set_foreach(t, tmpl, 2, NULL), FLOW_OK);
    json_decref(tmpl);
    assert_int_equal(flow_task_set_cache(t, "{{ item }}", 0, NULL), FLOW_OK);
    json_t *in1 = json_pack("{s:[sss]}", "items", "a", "b", "c");
    json_t *in2 = json_pack("{s:[ssss]}", "items", "b", "d", "a", "a");
    flow_run *r1, *r2;
    assert_int_equal(th_run(engine, f, in1, &r1), FLOW_RUN_COMPLETED);
    assert_int_equal(atomic_load(&runs_of_work), 3);
    assert_int_equal(th_run(engine, f, in2, &r2), FLOW_RUN_COMPLETED);
    /* b and both a from the first run's entries; only d ran. */
    assert_int_equal(atomic_load(&runs_of_work), 4);
    json_t *out = flow_run_result(r2);
    assert_int_equal(json_array_size(out), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 0), "x")), "b");
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 1), "x")), "d");
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 2), "x")), "a");
    assert_int_equal(n_of(json_array_get(out, 0)), n_of(json_array_get(flow_run_result(r1), 1)));
    assert_int_equal(n_of(json_array_get(out, 2)), n_of(json_array_get(flow_run_result(r1), 0)));
    flow_run_free(r1);
    flow_run_free(r2);
    json_decref(in1);
    json_decref(in2);
    flow_free(f);
}

/* A hit has the effect of a run: its state writes, `save`, and operations
 * applied to the state as it is then. */
static void test_state_writes(void **state)
{
    (void)state;
    flow *f = flow_new("sw", NULL);
    json_t *init = json_pack("{s:i}", "count", 10);
    assert_int_equal(flow_set_initial_state(f, init), FLOW_OK);
    json_decref(init);
    flow_task *t = th_add(f, "w", writer);
    assert_int_equal(flow_task_set_save(t, "saved"), FLOW_OK);
    assert_int_equal(flow_task_set_cache(t, "always", 0, NULL), FLOW_OK);
    flow_run *r;
    for (int i = 0; i < 2; i++) {
        json_t *in = json_pack("{s:i}", "count", 100 * (i + 1));
        assert_int_equal(th_run(engine, f, in, &r), FLOW_RUN_COMPLETED);
        json_decref(in);
        json_t *st = flow_run_state(r);
        assert_string_equal(json_string_value(json_object_get(st, "written")), "yes");
        assert_string_equal(json_string_value(json_object_get(st, "saved")), "w");
        assert_int_equal(json_integer_value(json_object_get(st, "count")), 100 * (i + 1) + 1);
        json_decref(st);
        flow_run_free(r);
    }
    assert_int_equal(atomic_load(&runs_of_work), 1);
    flow_free(f);
}

/* ---- kinds of tasks -------------------------------------------------------- */

static int child_body(flow_ctx *ctx)
{
    atomic_fetch_add(&runs_of_work, 1);
    flow_ctx_set_output_take(ctx, json_pack("{s:O}", "got", flow_ctx_input(ctx)));
    return 0;
}

static void test_nested_flow(void **state)
{
    (void)state;
    flow *child = flow_new("child", NULL);
    th_add(child, "inner", child_body);
    flow *f = flow_new("parent", NULL);
    flow_task *t = th_add(f, "sub", NULL);
    assert_int_equal(flow_task_set_subflow(t, child), FLOW_OK);
    assert_int_equal(flow_task_set_cache(t, "{{ inputs.x }}", 0, NULL), FLOW_OK);
    json_t *a = run_x(f, store, "n1", "k", false, NULL);
    json_t *b = run_x(f, store, "n2", "k", false, NULL);
    assert_non_null(b);
    assert_true(json_equal(a, b));
    assert_int_equal(atomic_load(&runs_of_work), 1); /* no second child run */
    json_t *info = info_of(store, "n2", 1);
    assert_true(json_is_true(json_object_get(info, "cached")));
    json_decref(info);
    json_decref(a);
    json_decref(b);
    flow_free(f);
    flow_free(child);
}

static int route(flow_ctx *ctx)
{
    atomic_fetch_add(&runs_of_work, 1);
    flow_ctx_set_output_take(ctx, json_string("left"));
    return 0;
}

static int leaf(flow_ctx *ctx)
{
    flow_ctx_set_output_take(ctx, json_string(flow_ctx_task_name(ctx)));
    return 0;
}

/* A cached router emits its label on a hit as on a run. */
static void test_router(void **state)
{
    (void)state;
    flow *f = flow_new("rt", NULL);
    flow_task *r = th_add(f, "pick", route);
    assert_int_equal(flow_task_set_router(r, true), FLOW_OK);
    assert_int_equal(flow_task_set_cache(r, "one", 0, NULL), FLOW_OK);
    flow_task *l = th_add(f, "l", leaf);
    assert_int_equal(flow_task_on(l, "left"), FLOW_OK);
    for (int i = 0; i < 2; i++) {
        flow_run *run;
        assert_int_equal(th_run(engine, f, NULL, &run), FLOW_RUN_COMPLETED);
        assert_int_equal(th_count_acts(run, "l", FLOW_ACT_COMPLETED), 1);
        flow_run_free(run);
    }
    assert_int_equal(atomic_load(&runs_of_work), 1);
    flow_free(f);
}

/* A hit takes no slot nor token of the task's limits: with one start a
 * minute, the second run would wait a minute for its token. */
static void test_hit_skips_limits(void **state)
{
    (void)state;
    flow_task *t;
    flow *f = cached_flow(0, &t);
    assert_int_equal(flow_task_set_rate_limit(t, 1, 60, "once", NULL), FLOW_OK);
    assert_int_equal(flow_task_set_concurrency(t, 1, "one", NULL), FLOW_OK);
    json_t *a = run_x(f, store, NULL, "k", false, NULL);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    json_t *b = run_x(f, store, NULL, "k", false, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_int_equal(n_of(b), 1);
    assert_true(took < 5);
    json_decref(a);
    json_decref(b);
    flow_free(f);
}

static void test_without_store(void **state)
{
    (void)state;
    flow *f = cached_flow(0, NULL);
    json_t *a = run_x(f, NULL, NULL, "k", false, NULL);
    json_t *b = run_x(f, NULL, NULL, "k", false, NULL);
    assert_int_equal(n_of(a), 1);
    assert_int_equal(n_of(b), 1); /* the engine's own cache */
    /* ... which is not the store's */
    json_t *c = run_x(f, store, NULL, "k", false, NULL);
    assert_int_equal(n_of(c), 2);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    flow_free(f);
}

/* ---- keys, refusals ------------------------------------------------------------- */

static void test_key_not_rendered(void **state)
{
    (void)state;
    flow *f = flow_new("bad", NULL);
    flow_task *t = th_add(f, "work", work);
    assert_int_equal(flow_task_set_cache(t, "{{ inputs.nope.deeper }}", 0, NULL), FLOW_OK);
    assert_int_equal(flow_task_set_retries(t, 1), FLOW_OK);
    flow_backoff b = {.delay = 0.01, .factor = 1, .max_delay = 0.01};
    assert_int_equal(flow_task_set_backoff(t, &b), FLOW_OK);
    flow_run *r;
    assert_int_equal(th_run(engine, f, NULL, &r), FLOW_RUN_FAILED);
    flow_activation_info info;
    assert_int_equal(flow_run_activation(r, 0, &info), FLOW_OK);
    assert_int_equal(info.status, FLOW_ACT_FAILED);
    assert_int_equal(info.attempts, 2); /* retried like any failure */
    assert_non_null(strstr(info.error, "the cache key of task 'work'"));
    assert_non_null(strstr(info.error, "inputs.nope"));
    assert_int_equal(atomic_load(&runs_of_work), 0);
    flow_run_free(r);
    flow_free(f);
}

static void test_refused(void **state)
{
    (void)state;
    flow *f = flow_new("ref", NULL);
    flow_task *t = th_add(f, "nothing", NULL);
    flow_error err;
    assert_int_equal(flow_task_set_cache(t, "k", -1, &err), FLOW_EINVAL);
    assert_int_equal(flow_task_set_cache(t, "{{ x", 0, &err), FLOW_ETEMPLATE);
    assert_int_equal(flow_task_set_cache(t, "k", 0, &err), FLOW_OK);
    assert_int_equal(flow_validate(f, NULL, &err), FLOW_EVALIDATION);
    assert_non_null(strstr(err.message, "'cache' needs a body"));
    assert_int_equal(flow_task_set_cache(t, NULL, 0, &err), FLOW_OK); /* removed */
    assert_int_equal(flow_validate(f, NULL, &err), FLOW_OK);
    json_t *d = flow_describe(f);
    assert_null(json_object_get(json_array_get(json_object_get(d, "tasks"), 0), "cache"));
    json_decref(d);
    flow_free(f);
}

/* ---- durable runs ------------------------------------------------------------- */

/* A resumed run takes a cached completion from its journal: the task is
 * neither run nor looked up again (the cache is emptied before the
 * resume). */
static void test_resume_after_hit(void **state)
{
    (void)state;
    tmp = th_tempdir();
    char url[512];
    snprintf(url, sizeof(url), "sqlite:%s/flow.db", tmp);
    flow_store *st = flow_store_open(url, NULL);
    assert_non_null(st);
    flow_task *t;
    flow *f = cached_flow(0, &t);
    flow_task *n = th_add(f, "next", next);
    assert_int_equal(flow_task_after(n, t), FLOW_OK);
    json_t *a = run_x(f, st, "r1", "k", false, NULL);
    assert_non_null(a);
    atomic_store(&pause_next, 1);
    json_t *in = json_pack("{s:s}", "x", "k");
    flow_run_options o = {.inputs = in, .store = st, .run_id = "r2"};
    flow_run *r = flow_run_start(engine, f, &o, NULL);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
    flow_run_free(r);
    json_decref(in);
    assert_int_equal(atomic_load(&runs_of_work), 1);
    size_t removed = 0;
    assert_int_equal(flow_store_gc_cache(st, true, &removed, NULL), FLOW_OK);
    assert_int_equal(removed, 1);
    atomic_store(&pause_next, 0);
    flow_run_options ro = {.store = st, .run_id = "r2"};
    flow_error err;
    r = flow_run_resume(engine, f, &ro, &err);
    if (!r)
        fail_msg("resume: %s", err.message);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_int_equal(atomic_load(&runs_of_work), 1); /* not run, not looked up */
    assert_int_equal(n_of(flow_run_result(r)), 1);   /* `next` got the cached output */
    flow_activation_info info;
    assert_int_equal(flow_run_activation(r, 0, &info), FLOW_OK);
    assert_int_equal(info.status, FLOW_ACT_COMPLETED);
    assert_int_equal(info.attempts, 1);
    flow_run_free(r);
    json_t *i2 = info_of(st, "r2", 1);
    assert_true(json_is_true(json_object_get(i2, "cached")));
    json_decref(i2);
    /* The journal holds no act_started for the cached activation. */
    json_t *j = flow_store_journal(st, "r2", &err);
    size_t i;
    json_t *rec;
    json_array_foreach(j, i, rec)
    {
        if (json_integer_value(json_object_get(rec, "activation")) == 1)
            assert_string_not_equal(json_string_value(json_object_get(rec, "type")),
                                    "act_started");
    }
    json_decref(j);
    json_decref(a);
    flow_free(f);
    flow_store_close(st);
}

/* Different processes' runs of a store share its entries: here two
 * handles of one sqlite file. */
static void test_shared_store(void **state)
{
    (void)state;
    tmp = th_tempdir();
    char url[512];
    snprintf(url, sizeof(url), "sqlite:%s/flow.db", tmp);
    flow_store *s1 = flow_store_open(url, NULL), *s2 = flow_store_open(url, NULL);
    flow *f = cached_flow(0, NULL);
    json_t *a = run_x(f, s1, NULL, "k", false, NULL);
    json_t *b = run_x(f, s2, NULL, "k", false, NULL);
    assert_int_equal(n_of(b), 1);
    json_decref(a);
    json_decref(b);
    flow_free(f);
    flow_store_close(s1);
    flow_store_close(s2);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_hit),
        T(test_other_keys),
        T(test_ttl_expiry),
        T(test_no_cache),
        T(test_failures_not_kept),
        T(test_ignored_not_kept),
        T(test_foreach_elements),
        T(test_state_writes),
        T(test_nested_flow),
        T(test_router),
        T(test_hit_skips_limits),
        T(test_without_store),
        T(test_key_not_rendered),
        T(test_refused),
        T(test_resume_after_hit),
        T(test_shared_store),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
