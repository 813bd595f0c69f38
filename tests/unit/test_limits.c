/* test_limits.c -- limits across runs in one process (core/gate.c):
 * concurrency keys, rate limits, resources, the flow's run limit, priority
 * among waiters, and what a cancel or pause does to activations that wait.
 * Across processes: tests/e2e/test_limits.sh. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- a body that records when it ran, per key -------------------------- */

#define MAX_SPANS 256

struct span {
    char key[32];
    double start, end;
    int order;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct span spans[MAX_SPANS];
static int nspans;
static int sleep_ms = 40;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void reset(int ms)
{
    pthread_mutex_lock(&mu);
    nspans = 0;
    sleep_ms = ms;
    pthread_mutex_unlock(&mu);
}

/* The element's "k" (or "-") is the key it records under. */
static int timed(flow_ctx *ctx)
{
    json_t *item = flow_ctx_item(ctx);
    const char *k = item ? json_string_value(json_object_get(item, "k")) : NULL;
    double t0 = now_s();
    usleep((useconds_t)sleep_ms * 1000);
    double t1 = now_s();
    pthread_mutex_lock(&mu);
    if (nspans < MAX_SPANS) {
        struct span *s = &spans[nspans];
        snprintf(s->key, sizeof(s->key), "%s", k ? k : "-");
        s->start = t0;
        s->end = t1;
        s->order = nspans;
        nspans++;
    }
    pthread_mutex_unlock(&mu);
    return 0;
}

/* The most spans of `key` (NULL: any) that overlapped at once. */
static int max_overlap(const char *key)
{
    int best = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < nspans; i++) {
        if (key && strcmp(spans[i].key, key))
            continue;
        int n = 0;
        for (int j = 0; j < nspans; j++) {
            if (key && strcmp(spans[j].key, key))
                continue;
            if (spans[j].start <= spans[i].start && spans[j].end > spans[i].start)
                n++;
        }
        if (n > best)
            best = n;
    }
    pthread_mutex_unlock(&mu);
    return best;
}

/* A flow of one task fanned out over inputs.items, with body `timed`. */
static flow *fan_flow(const char *name, flow_task **out)
{
    flow *f = flow_new(name, NULL);
    flow_task *t = th_add(f, "work", timed);
    json_t *tmpl = json_string("{{ inputs.items }}");
    assert_int_equal(flow_task_set_foreach(t, tmpl, 0, NULL), FLOW_OK);
    json_decref(tmpl);
    *out = t;
    return f;
}

/* {"items": [{"k": keys[i % n]}, ... count of them]} */
static json_t *items(int count, const char *const *keys, int n)
{
    json_t *list = json_array();
    for (int i = 0; i < count; i++)
        json_array_append_new(list, json_pack("{s:s}", "k", keys[i % n]));
    return json_pack("{s:o}", "items", list);
}

/* th_run, then drop the inputs (th_run only borrows them). */
static flow_run_status run_with(flow_engine *e, flow *f, json_t *inputs, flow_run **out)
{
    flow_run_status s = th_run(e, f, inputs, out);
    json_decref(inputs);
    return s;
}

static flow_engine *engine_with(int jobs, const char *resources)
{
    flow_resources res;
    flow_resources_machine(&res);
    if (resources)
        assert_int_equal(flow_resources_parse(resources, &res, NULL), FLOW_OK);
    flow_engine_options o = {.jobs = jobs, .resources = &res};
    flow_engine *e = flow_engine_new(&o, NULL);
    assert_non_null(e);
    return e;
}

/* ---- concurrency keys ---------------------------------------------------- */

static void test_concurrency_key(void **state)
{
    (void)state;
    reset(40);
    flow_engine *e = engine_with(8, NULL);
    flow_task *t;
    flow *f = fan_flow("ck", &t);
    assert_int_equal(flow_task_set_concurrency(t, 2, "{{ item.k }}", NULL), FLOW_OK);
    static const char *const keys[] = {"acme", "zeta"};
    assert_int_equal(run_with(e, f, items(12, keys, 2), NULL), FLOW_RUN_COMPLETED);
    assert_int_equal(nspans, 12);
    /* Two at once per key, and the keys do not wait for each other. */
    assert_int_equal(max_overlap("acme"), 2);
    assert_int_equal(max_overlap("zeta"), 2);
    assert_int_equal(max_overlap(NULL), 4);
    flow_free(f);
    flow_engine_free(e);
}

static void test_concurrency_across_runs(void **state)
{
    (void)state;
    reset(30);
    flow_engine *e = engine_with(8, NULL);
    flow_task *t1, *t2;
    flow *f1 = fan_flow("one", &t1);
    flow *f2 = fan_flow("two", &t2);
    /* Two flows naming one key share its slot. */
    assert_int_equal(flow_task_set_concurrency(t1, 1, "shared", NULL), FLOW_OK);
    assert_int_equal(flow_task_set_concurrency(t2, 1, "shared", NULL), FLOW_OK);
    static const char *const keys[] = {"x"};
    flow_run_options o1 = {.inputs = items(4, keys, 1)};
    flow_run_options o2 = {.inputs = items(4, keys, 1)};
    flow_run *r1 = flow_run_start(e, f1, &o1, NULL);
    flow_run *r2 = flow_run_start(e, f2, &o2, NULL);
    assert_non_null(r1);
    assert_non_null(r2);
    assert_int_equal(flow_run_wait(r1), FLOW_RUN_COMPLETED);
    assert_int_equal(flow_run_wait(r2), FLOW_RUN_COMPLETED);
    assert_int_equal(nspans, 8);
    assert_int_equal(max_overlap(NULL), 1);
    flow_run_free(r1);
    flow_run_free(r2);
    json_decref(o1.inputs);
    json_decref(o2.inputs);
    flow_free(f1);
    flow_free(f2);
    flow_engine_free(e);
}

/* Waiting activations of one key start by priority, then in order. */
static int prio_log(flow_ctx *ctx)
{
    pthread_mutex_lock(&mu);
    if (nspans < MAX_SPANS) {
        snprintf(spans[nspans].key, sizeof(spans[nspans].key), "%s", flow_ctx_task_name(ctx));
        nspans++;
    }
    pthread_mutex_unlock(&mu);
    usleep(20000);
    return 0;
}

static void test_priority_among_waiters(void **state)
{
    (void)state;
    reset(0);
    flow_engine *e = engine_with(4, NULL);
    flow *f = flow_new("prio", NULL);
    flow_task *first = th_add(f, "first", prio_log);
    flow_task_set_concurrency(first, 1, "k", NULL);
    const char *names[] = {"low1", "high1", "low2", "high2", "mid"};
    int prios[] = {0, 10, 0, 10, 5};
    for (int i = 0; i < 5; i++) {
        flow_task *t = th_add(f, names[i], prio_log);
        flow_task_set_concurrency(t, 1, "k", NULL);
        flow_task_set_priority(t, prios[i]);
        flow_task_after(t, first);
    }
    assert_int_equal(th_run(e, f, NULL, NULL), FLOW_RUN_COMPLETED);
    assert_int_equal(nspans, 6);
    const char *want[] = {"first", "high1", "high2", "mid", "low1", "low2"};
    for (int i = 0; i < 6; i++)
        assert_string_equal(spans[i].key, want[i]);
    flow_free(f);
    flow_engine_free(e);
}

/* A key that cannot be rendered fails the attempt, saying which key. */
static void test_bad_key(void **state)
{
    (void)state;
    reset(1);
    flow_engine *e = engine_with(2, NULL);
    flow_task *t;
    flow *f = fan_flow("badkey", &t);
    assert_int_equal(flow_task_set_concurrency(t, 1, "{{ inputs.nosuch.deeper }}", NULL),
                     FLOW_OK);
    static const char *const keys[] = {"x"};
    flow_run *r;
    assert_int_equal(run_with(e, f, items(1, keys, 1), &r), FLOW_RUN_FAILED);
    assert_non_null(strstr(flow_run_error(r), "concurrency key of task 'work'"));
    assert_int_equal(nspans, 0);
    flow_run_free(r);
    flow_free(f);
    flow_engine_free(e);
}

/* ---- rate limits ------------------------------------------------------------ */

static void test_rate_limit(void **state)
{
    (void)state;
    reset(1);
    flow_engine *e = engine_with(8, NULL);
    flow_task *t;
    flow *f = fan_flow("rate", &t);
    assert_int_equal(flow_task_set_rate_limit(t, 4, 0.4, NULL, NULL), FLOW_OK);
    static const char *const keys[] = {"x"};
    double t0 = now_s();
    assert_int_equal(run_with(e, f, items(10, keys, 1), NULL), FLOW_RUN_COMPLETED);
    double took = now_s() - t0;
    assert_int_equal(nspans, 10);
    /* 10 starts at 4 per 0.4 s: the third group cannot start before 0.8 s. */
    assert_true(took >= 0.75);
    /* No window of 0.4 s holds more than 4 starts. A body starts a little
     * after its token (a thread wakes up; much later under valgrind): the
     * window looked at is a quarter shorter. */
    for (int i = 0; i < nspans; i++) {
        int n = 0;
        for (int j = 0; j < nspans; j++)
            n += spans[j].start >= spans[i].start && spans[j].start < spans[i].start + 0.3;
        assert_true(n <= 4);
    }
    flow_free(f);
    flow_engine_free(e);
}

/* ---- resources --------------------------------------------------------------- */

static void test_resources(void **state)
{
    (void)state;
    reset(40);
    flow_engine *e = engine_with(8, "cpu=2,memory=1G,gpu=1");
    flow_task *t;
    flow *f = fan_flow("res", &t);
    flow_resources need = {.cpu = 1};
    assert_int_equal(flow_task_set_resources(t, &need, NULL), FLOW_OK);
    static const char *const keys[] = {"x"};
    assert_int_equal(run_with(e, f, items(6, keys, 1), NULL), FLOW_RUN_COMPLETED);
    assert_int_equal(max_overlap(NULL), 2); /* cpu=2, 1 each */
    flow_free(f);

    /* More than the engine has: refused before anything runs. */
    flow *g = fan_flow("gpu", &t);
    flow_resources gpus = {.gpu = 2};
    flow_task_set_resources(t, &gpus, NULL);
    flow_error err;
    flow_run_options o = {0};
    assert_null(flow_run_start(e, g, &o, &err));
    assert_int_equal(err.code, FLOW_EINVAL);
    assert_non_null(strstr(err.message, "task 'work' asks gpu 2"));
    assert_non_null(strstr(err.message, "--resources gpu=N"));
    flow_free(g);
    flow_engine_free(e);
}

static void test_resources_parse(void **state)
{
    (void)state;
    flow_resources r = {0};
    assert_int_equal(flow_resources_parse("cpu=0.5,memory=1.5G,gpu=2", &r, NULL), FLOW_OK);
    assert_true(r.cpu == 0.5 && r.gpu == 2);
    assert_true(r.memory == 1.5 * 1024 * 1024 * 1024);
    assert_int_equal(flow_resources_parse("memory=512Mi", &r, NULL), FLOW_OK);
    assert_true(r.memory == 512.0 * 1024 * 1024);
    flow_error err;
    assert_int_equal(flow_resources_parse("disk=1", &r, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "unknown resource 'disk'"));
    assert_int_equal(flow_resources_parse("cpu", &r, &err), FLOW_EINVAL);
    assert_int_equal(flow_resources_parse("cpu=-1", &r, &err), FLOW_EINVAL);
    assert_int_equal(flow_resources_parse("memory=4Q", &r, &err), FLOW_EINVAL);
    flow_resources m;
    flow_resources_machine(&m);
    assert_true(m.cpu >= 1 && m.memory > 0 && m.gpu == 0);
}

/* ---- the flow's run limit ------------------------------------------------------ */

static void test_run_limit(void **state)
{
    (void)state;
    reset(30);
    flow_engine *e = engine_with(8, NULL);
    flow_task *t;
    flow *f = fan_flow("runs", &t);
    assert_int_equal(flow_set_concurrency(f, 1, "{{ inputs.tenant }}", NULL), FLOW_OK);
    flow_run *r[4];
    const char *tenants[] = {"a", "a", "b", "b"};
    for (int i = 0; i < 4; i++) {
        const char *const keys[] = {tenants[i]};
        json_t *in = items(3, keys, 1);
        json_object_set_new(in, "tenant", json_string(tenants[i]));
        flow_run_options o = {.inputs = in};
        r[i] = flow_run_start(e, f, &o, NULL);
        assert_non_null(r[i]);
        json_decref(in);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(flow_run_wait(r[i]), FLOW_RUN_COMPLETED);
        flow_run_free(r[i]);
    }
    assert_int_equal(nspans, 12);
    /* One run per tenant at a time: a run's 3 elements overlap, so at most
     * 3 of a tenant at once, and the two tenants ran side by side. */
    assert_int_equal(max_overlap("a"), 3);
    assert_int_equal(max_overlap("b"), 3);
    assert_int_equal(max_overlap(NULL), 6);
    flow_free(f);

    /* With a key on the task too: the foreach parent, which runs no body,
     * takes the run's slot but none of the key's. */
    reset(30);
    flow *g = fan_flow("both", &t);
    assert_int_equal(flow_set_concurrency(g, 1, NULL, NULL), FLOW_OK);
    assert_int_equal(flow_task_set_concurrency(t, 2, "k", NULL), FLOW_OK);
    static const char *const keys[] = {"x"};
    assert_int_equal(run_with(e, g, items(6, keys, 1), NULL), FLOW_RUN_COMPLETED);
    assert_int_equal(nspans, 6);
    assert_int_equal(max_overlap(NULL), 2);
    flow_free(g);
    flow_engine_free(e);
}

/* ---- cancel and pause while waiting ------------------------------------------ */

static void test_cancel_and_pause_waiting(void **state)
{
    (void)state;
    reset(300);
    flow_engine *e = engine_with(4, NULL);
    flow_task *t;
    flow *f = fan_flow("wait", &t);
    assert_int_equal(flow_task_set_concurrency(t, 1, "only", NULL), FLOW_OK);
    static const char *const keys[] = {"x"};
    json_t *in = items(1, keys, 1);
    flow_run_options o = {.inputs = in};
    flow_run *holder = flow_run_start(e, f, &o, NULL);
    usleep(50000);
    flow_run *waiter = flow_run_start(e, f, &o, NULL);
    usleep(50000);
    /* The waiter's element waits; cancelling ends it at once. */
    double t0 = now_s();
    flow_run_cancel(waiter, "not needed");
    assert_int_equal(flow_run_wait(waiter), FLOW_RUN_CANCELLED);
    assert_true(now_s() - t0 < 0.2);
    assert_int_equal(flow_run_wait(holder), FLOW_RUN_COMPLETED);
    assert_int_equal(nspans, 1);
    flow_run_free(waiter);
    flow_run_free(holder);

    /* A waiting run pauses at once, and gives nothing it does not hold. */
    reset(200);
    holder = flow_run_start(e, f, &o, NULL);
    usleep(50000);
    waiter = flow_run_start(e, f, &o, NULL);
    usleep(50000);
    flow_run_pause(waiter, "later");
    assert_int_equal(flow_run_wait(waiter), FLOW_RUN_PAUSED);
    assert_int_equal(flow_run_wait(holder), FLOW_RUN_COMPLETED);
    /* The slot is free: a new run goes without waiting for the paused one. */
    flow_run *after = flow_run_start(e, f, &o, NULL);
    assert_int_equal(flow_run_wait(after), FLOW_RUN_COMPLETED);
    assert_int_equal(nspans, 2);
    flow_run_free(after);
    flow_run_free(waiter);
    flow_run_free(holder);
    json_decref(in);
    flow_free(f);
    flow_engine_free(e);
}

/* ---- the observer hears why --------------------------------------------------- */

static atomic_int waiting_events;
static char waiting_reason[256];

static void on_event(const flow_event *ev, void *udata)
{
    (void)udata;
    if (ev->type != FLOW_EV_TASK_WAITING)
        return;
    if (atomic_fetch_add(&waiting_events, 1) == 0)
        snprintf(waiting_reason, sizeof(waiting_reason), "%s", ev->label ? ev->label : "");
}

static void test_waiting_event(void **state)
{
    (void)state;
    reset(30);
    atomic_store(&waiting_events, 0);
    flow_engine *e = engine_with(4, NULL);
    flow_task *t;
    flow *f = fan_flow("told", &t);
    flow_task_set_concurrency(t, 1, "{{ item.k }}", NULL);
    static const char *const keys[] = {"acme"};
    json_t *in = items(3, keys, 1);
    flow_run_options o = {.inputs = in, .on_event = on_event};
    flow_run *r = flow_run_start(e, f, &o, NULL);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    /* Two elements waited, each told once. */
    assert_int_equal(atomic_load(&waiting_events), 2);
    assert_non_null(strstr(waiting_reason, "concurrency key 'acme'"));
    flow_run_free(r);
    json_decref(in);
    flow_free(f);
    flow_engine_free(e);
}

/* ---- what the review found ---------------------------------------------------- */

/* Cancelling a run whose elements hold a key and wait for it, with one
 * thread: what the cancel gives back must not go to the run's own waiters
 * (it crashed the engine). A run waiting for the key then goes on. */
static void test_cancel_with_holders_and_waiters(void **state)
{
    (void)state;
    reset(200);
    flow_engine *e = engine_with(1, NULL);
    flow_task *t;
    flow *f = fan_flow("cancelled", &t);
    assert_int_equal(flow_task_set_concurrency(t, 2, "k", NULL), FLOW_OK);
    static const char *const keys[] = {"x"};
    json_t *in = items(3, keys, 1);
    flow_run_options o = {.inputs = in};
    flow_run *a = flow_run_start(e, f, &o, NULL);
    usleep(50000);
    flow_run *b = flow_run_start(e, f, &o, NULL);
    usleep(50000);
    flow_run_cancel(a, "stop");
    assert_int_equal(flow_run_wait(a), FLOW_RUN_CANCELLED);
    assert_int_equal(flow_run_wait(b), FLOW_RUN_COMPLETED);
    /* Pause one that holds and waits; another run of the key still goes. */
    flow_run *c = flow_run_start(e, f, &o, NULL);
    usleep(50000);
    flow_run_pause(c, "later");
    assert_int_equal(flow_run_wait(c), FLOW_RUN_PAUSED);
    flow_run *d = flow_run_start(e, f, &o, NULL);
    assert_int_equal(flow_run_wait(d), FLOW_RUN_COMPLETED);
    flow_run_free(a);
    flow_run_free(b);
    flow_run_free(c);
    flow_run_free(d);
    json_decref(in);
    flow_free(f);
    flow_engine_free(e);
}

/* The flow's key and its task's key may be the same text: a run holding
 * "acme" does not wait for its own task's "acme". */
static void test_same_text_for_run_and_task_keys(void **state)
{
    (void)state;
    reset(10);
    flow_engine *e = engine_with(4, NULL);
    char *dir = th_tempdir();
    char url[600];
    snprintf(url, sizeof(url), "sqlite:%s/s.db", dir);
    flow_store *st = flow_store_open(url, NULL);
    assert_non_null(st);
    flow_task *t;
    flow *f = fan_flow("acme", &t);
    assert_int_equal(flow_set_concurrency(f, 1, "{{ inputs.c }}", NULL), FLOW_OK);
    assert_int_equal(flow_task_set_concurrency(t, 2, "{{ inputs.c }}", NULL), FLOW_OK);
    static const char *const keys[] = {"x"};
    json_t *in = items(4, keys, 1);
    json_object_set_new(in, "c", json_string("acme"));
    flow_run_options o = {.inputs = in, .store = st};
    flow_run *r = flow_run_start(e, f, &o, NULL);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_int_equal(nspans, 4);
    assert_int_equal(max_overlap(NULL), 2);
    flow_run_free(r);
    json_decref(in);
    flow_free(f);
    flow_engine_free(e);
    flow_store_close(st);
    th_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrency_key),
        cmocka_unit_test(test_concurrency_across_runs),
        cmocka_unit_test(test_priority_among_waiters),
        cmocka_unit_test(test_bad_key),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_resources),
        cmocka_unit_test(test_resources_parse),
        cmocka_unit_test(test_run_limit),
        cmocka_unit_test(test_cancel_and_pause_waiting),
        cmocka_unit_test(test_waiting_event),
        cmocka_unit_test(test_cancel_with_holders_and_waiters),
        cmocka_unit_test(test_same_text_for_run_and_task_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
