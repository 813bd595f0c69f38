/* test_remote.c -- the remote executor's bookkeeping on both sides
 * (src/core/remote.c, src/core/worker.c; docs/internals/distribution.md),
 * against a real redis-server: what the runner keeps per queued attempt and
 * that an attempt Redis lost is queued again; completions kept for an
 * attempt not submitted yet are dropped once its run pauses; a worker's
 * completion for a run whose keys are gone expires soon; a completion that
 * cannot be sent leaves its entry unacknowledged and no other; XAUTOCLAIM
 * walks a long pending list to the dead worker's entries; an activation
 * that asks resources no live worker has is held on the runner, with its
 * reason, until one that fits starts. */
#include "util/compat.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "helpers.h"
#include "redis_server.h"

#include "core/engine.h"
#include "util/clock.h"

static struct th_redis srv;

/* Every block libflow (and jansson) holds, in bytes: installed in main()
 * before anything is allocated. */
static atomic_llong live_bytes;

static void *count_malloc(size_t n)
{
    void *p = malloc(n);
    if (p)
        atomic_fetch_add(&live_bytes, (long long)malloc_usable_size(p));
    return p;
}

static void *count_realloc(void *p, size_t n)
{
    long long before = p ? (long long)malloc_usable_size(p) : 0;
    void *q = realloc(p, n);
    if (q)
        atomic_fetch_add(&live_bytes, (long long)malloc_usable_size(q) - before);
    return q;
}

static void count_free(void *p)
{
    if (p)
        atomic_fetch_sub(&live_bytes, (long long)malloc_usable_size(p));
    free(p);
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int group_setup(void **state)
{
    (void)state;
    th_redis_start(&srv, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    th_redis_stop(&srv);
    return 0;
}

/* A command on a connection of our own (made again when lost). */
static redisReply *rcmd(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static redisReply *rcmd(const char *fmt, ...)
{
    static redisContext *c;
    for (int i = 0; i < 2; i++) {
        if (!c || c->err) {
            if (c)
                redisFree(c);
            c = redisConnect("127.0.0.1", srv.port);
            assert_non_null(c);
        }
        va_list ap;
        va_start(ap, fmt);
        redisReply *r = redisvCommand(c, fmt, ap);
        va_end(ap);
        if (r)
            return r;
    }
    fail_msg("redis: %s", c->errstr);
    return NULL;
}

/* `cmd KEY`'s integer reply. */
static long long rint_of(const char *cmd, const char *key)
{
    redisReply *r = rcmd("%s %s", cmd, key);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -9999;
    freeReplyObject(r);
    return v;
}

static char *url_with(const char *prefix)
{
    char *u = NULL;
    assert_true(asprintf(&u, "%s?prefix=%s", srv.url, prefix) > 0);
    return u;
}

static flow *load(const char *yaml)
{
    flow_error err = {0};
    flow *f = flow_load_string(yaml, strlen(yaml), "test.yaml", NULL, &err);
    if (!f)
        fail_msg("load: %s", err.message);
    return f;
}

/* ---- the runner ----------------------------------------------------------- */

#define NTASKS 40
#define BIG (200 * 1024)

/* The submitter keeps no spec for what it queued (40 running attempts of a
 * 200 KB command line kept 8 MB); what Redis lost is still queued again
 * after a reconnect, rendered anew. */
static void sent_attempts_keep_no_spec(void **state)
{
    (void)state;
    char *yaml = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&yaml, &len);
    fprintf(m, "name: big\ndefaults:\n  executor: remote\n  queue: big\n  kill_grace: 0.1s\n"
               "tasks:\n");
    for (int i = 0; i < NTASKS; i++)
        fprintf(m, "  t%d:\n    run: [echo, \"{{ inputs.big }}\"]\n", i);
    fclose(m);
    char *url = url_with("ta");
    flow_error err = {0};
    flow_engine *e = flow_engine_new(&(flow_engine_options){.jobs = 2, .redis_url = url}, &err);
    assert_non_null(e);
    flow *f = load(yaml);
    char *big = malloc(BIG + 1);
    memset(big, 'x', BIG);
    big[BIG] = '\0';
    json_t *inputs = json_pack("{s:s}", "big", big);
    long long before = atomic_load(&live_bytes);
    flow_run *r = flow_run_start(e, f, &(flow_run_options){.inputs = inputs, .run_id = "ra"}, &err);
    assert_non_null(r);
    json_decref(inputs);

    int i = 0;
    while (rint_of("XLEN", "ta:q:big") < NTASKS && i++ < 500)
        nap_ms(20);
    assert_int_equal(rint_of("XLEN", "ta:q:big"), NTASKS);
    long long grown = 0;
    for (i = 0; i < 150; i++) { /* the submitter settles the batch, then frees it */
        grown = atomic_load(&live_bytes) - before;
        if (grown < 3 * 1024 * 1024)
            break;
        nap_ms(20);
    }
    if (grown >= 3 * 1024 * 1024)
        fail_msg("%d queued attempts of a %d KB command keep %lld KB", NTASKS, BIG / 1024,
                 grown / 1024);

    /* Redis loses the entries and the inflight record (a power cut with
     * appendfsync everysec), and the runner's connections go. */
    freeReplyObject(rcmd("DEL ta:q:big ta:inflight:ra"));
    freeReplyObject(rcmd("CLIENT KILL TYPE normal"));
    for (i = 0; rint_of("XLEN", "ta:q:big") < NTASKS && i < 500; i++)
        nap_ms(20);
    assert_int_equal(rint_of("XLEN", "ta:q:big"), NTASKS);
    assert_int_equal(rint_of("HLEN", "ta:inflight:ra"), NTASKS);
    redisReply *x = rcmd("XRANGE ta:q:big - + COUNT 1");
    assert_int_equal(x->type, REDIS_REPLY_ARRAY);
    assert_int_equal(x->elements, 1);
    const redisReply *fields = x->element[0]->element[1];
    const char *spec = NULL;
    for (size_t k = 0; k + 1 < fields->elements; k += 2)
        if (!strcmp(fields->element[k]->str, "spec"))
            spec = fields->element[k + 1]->str;
    assert_non_null(spec);
    assert_true(strlen(spec) > BIG);
    assert_non_null(strstr(spec, "[\"echo\",\"xxxxxxxx"));
    freeReplyObject(x);

    flow_run_cancel(r, "done");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_CANCELLED);
    flow_run_free(r);
    flow_free(f);
    flow_engine_free(e);
    free(big);
    free(yaml);
    free(url);
}

/* A completion read for an attempt to be submitted again (an interrupted
 * run's) is dropped once the run has paused; the resume reads it again. */
static void early_completions_pruned(void **state)
{
    (void)state;
    char *mark = NULL;
    char *dir = th_tempdir();
    assert_true(asprintf(&mark, "%s/mark", dir) > 0);
    char *yaml = NULL;
    assert_true(asprintf(&yaml,
                         "name: early\n"
                         "tasks:\n"
                         "  a:\n"
                         "    run: [echo, '1']\n"
                         "    executor: remote\n"
                         "    queue: early\n"
                         "  b:\n"
                         "    shell: 'if [ -e %s ]; then echo 2; else touch %s; trap \"\" TERM;"
                         " sleep 30; fi'\n"
                         "    kill_grace: 3s\n",
                         mark, mark) > 0);
    char *url = url_with("tb");
    flow_error err = {0};
    flow_engine *e = flow_engine_new(&(flow_engine_options){.jobs = 2, .redis_url = url}, &err);
    assert_non_null(e);
    flow_store *st = flow_store_open("memory:", &err);
    assert_non_null(st);
    flow *f = load(yaml);
    flow_run *r = flow_run_start(e, f, &(flow_run_options){.run_id = "rb", .store = st}, &err);
    assert_non_null(r);
    int i = 0;
    while ((rint_of("HLEN", "tb:inflight:rb") < 1 || access(mark, F_OK)) && i++ < 500)
        nap_ms(20);
    redisReply *k = rcmd("HKEYS tb:inflight:rb");
    assert_int_equal(k->elements, 1);
    char act[16];
    snprintf(act, sizeof(act), "%s", k->element[0]->str);
    freeReplyObject(k);

    /* The remote attempt is dropped at once; b ignores SIGTERM and keeps
     * the run going for its kill_grace. Meanwhile a completion of a's
     * attempt comes: it is kept for the resubmission. */
    flow_run_interrupt(r);
    nap_ms(300);
    freeReplyObject(rcmd("XADD tb:done:rb * v 1 run rb act %s attempt 1 worker fake result %s",
                         act, "{\"ok\":true,\"exit_status\":0,\"output\":7}"));
    for (i = 0; flow__remote_early_count(e) < 1 && i < 100; i++)
        nap_ms(20);
    assert_int_equal(flow__remote_early_count(e), 1);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
    for (i = 0; flow__remote_early_count(e) > 0 && i < 100; i++)
        nap_ms(20);
    assert_int_equal(flow__remote_early_count(e), 0);
    flow_run_free(r);

    /* Resumed on the same engine: a is not queued twice (Redis has its
     * attempt in flight) and its completion is read again from the stream. */
    r = flow_run_resume(e, f, &(flow_run_options){.run_id = "rb", .store = st}, &err);
    if (!r)
        fail_msg("resume: %s", err.message);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    json_t *res = flow_run_result(r);
    assert_int_equal(json_integer_value(json_object_get(res, "a")), 7);
    assert_int_equal(json_integer_value(json_object_get(res, "b")), 2);
    flow_run_free(r);
    flow_free(f);
    flow_store_close(st);
    flow_engine_free(e);
    th_rmtree(dir);
    free(dir);
    free(mark);
    free(yaml);
    free(url);
}

/* ---- the worker ----------------------------------------------------------- */

struct wthread {
    flow_worker *w;
    pthread_t t;
};

static int echo_fn(flow_ctx *ctx)
{
    return flow_ctx_set_output(ctx, flow_ctx_input(ctx)) == FLOW_OK ? 0 : 1;
}

static void *worker_main(void *p)
{
    struct wthread *x = p;
    flow_error err = {0};
    flow_worker_run(x->w, &err);
    return NULL;
}

static void worker_start(struct wthread *x, const char *prefix, const char *queue, int concurrency,
                         double claim_after)
{
    char *url = url_with(prefix);
    const char *queues[] = {queue, NULL};
    flow_error err = {0};
    x->w = flow_worker_new(url, &(flow_worker_options){.queues = queues, .concurrency = concurrency,
                                                       .name = "tw", .claim_after = claim_after},
                           &err);
    if (!x->w)
        fail_msg("worker: %s", err.message);
    assert_int_equal(flow_worker_register(x->w, "echo", echo_fn, NULL), FLOW_OK);
    assert_int_equal(pthread_create(&x->t, NULL, worker_main, x), 0);
    free(url);
}

static void worker_stop(struct wthread *x)
{
    flow_worker_stop(x->w);
    pthread_join(x->t, NULL);
    flow_worker_free(x->w);
}

/* Queue an activation of C function `echo` with input `act` by hand. */
static void queue_entry(const char *qkey, const char *run, int act)
{
    char spec[128];
    snprintf(spec, sizeof(spec), "{\"fn\":\"echo\",\"input\":%d,\"state\":{}}", act);
    freeReplyObject(rcmd("XADD %s * v 1 run %s act %d attempt 1 task t spec %s", qkey, run, act,
                         spec));
}

static bool wait_xlen(const char *key, long long n, int ms)
{
    for (int i = 0; i < ms / 20; i++) {
        if (rint_of("XLEN", key) >= n)
            return true;
        nap_ms(20);
    }
    return rint_of("XLEN", key) >= n;
}

/* A completion for a run whose keys the runner deleted (a late duplicate)
 * makes a stream that goes within a minute, not in 7 days. */
static void late_completion_expires(void **state)
{
    (void)state;
    freeReplyObject(rcmd("HSET tc:inflight:live 1 1"));
    struct wthread w;
    worker_start(&w, "tc", "late", 2, 30);
    queue_entry("tc:q:late", "live", 1);
    queue_entry("tc:q:late", "gone", 1);
    assert_true(wait_xlen("tc:done:live", 1, 5000));
    assert_true(wait_xlen("tc:done:gone", 1, 5000));
    long long live = rint_of("TTL", "tc:done:live");
    long long gone = rint_of("TTL", "tc:done:gone");
    assert_true(live > 6 * 24 * 3600);
    if (gone <= 0 || gone > 60)
        fail_msg("the late completion's stream expires in %lld s", gone);
    worker_stop(&w);
    assert_int_equal(rint_of("XLEN", "tc:q:late"), 0); /* acknowledged, deleted */
}

/* A completion whose script could not be sent: its entry is not
 * acknowledged until it is in its stream, and the others' are unaffected. */
static void publish_failure_acks_nothing_else(void **state)
{
    (void)state;
    const char *runs[] = {"p1", "p2", "p3", "p4"};
    for (size_t i = 0; i < 4; i++)
        freeReplyObject(rcmd("HSET tp:inflight:%s %d 1", runs[i], (int)i + 1));
    flow__worker_fail_publish_at(1); /* the first completion script to go */
    struct wthread w;
    worker_start(&w, "tp", "pub", 4, 30);
    for (size_t i = 0; i < 4; i++)
        queue_entry("tp:q:pub", runs[i], (int)i + 1);
    for (size_t i = 0; i < 4; i++) {
        char key[32];
        snprintf(key, sizeof(key), "tp:done:%s", runs[i]);
        assert_true(wait_xlen(key, 1, 5000));
    }
    for (int i = 0; rint_of("XLEN", "tp:q:pub") > 0 && i < 100; i++)
        nap_ms(20);
    worker_stop(&w);
    flow__worker_fail_publish_at(0);
    for (size_t i = 0; i < 4; i++) {
        redisReply *x = rcmd("XRANGE tp:done:%s - +", runs[i]);
        assert_int_equal(x->elements, 1); /* once each */
        const redisReply *fields = x->element[0]->element[1];
        for (size_t k = 0; k + 1 < fields->elements; k += 2)
            if (!strcmp(fields->element[k]->str, "act"))
                assert_int_equal(atoi(fields->element[k + 1]->str), (int)i + 1);
        freeReplyObject(x);
    }
    assert_int_equal(rint_of("XLEN", "tp:q:pub"), 0);
    redisReply *p = rcmd("XPENDING tp:q:pub workers");
    assert_int_equal(p->element[0]->integer, 0);
    freeReplyObject(p);
}

/* The dead worker's entries sit behind a long pending list of entries live
 * workers run: XAUTOCLAIM (which looks at COUNT * 10 entries a call) walks
 * on to them instead of starting at the head each time. */
static void autoclaim_walks_the_pending_list(void **state)
{
    (void)state;
    enum { LIVE = 30, DEAD = 3 };
    freeReplyObject(rcmd("XGROUP CREATE tw:q:claim workers 0 MKSTREAM"));
    for (int i = 1; i <= LIVE + DEAD; i++)
        queue_entry("tw:q:claim", "claimed", i);
    redisReply *live = rcmd("XREADGROUP GROUP workers live COUNT %d STREAMS tw:q:claim >", LIVE);
    freeReplyObject(rcmd("XREADGROUP GROUP workers dead COUNT %d STREAMS tw:q:claim >", DEAD));
    const redisReply *ids = live->element[0]->element[1];
    assert_int_equal(ids->elements, LIVE);
    const char *argv[6 + LIVE + 1];
    int argc = 0;
    argv[argc++] = "XCLAIM";
    argv[argc++] = "tw:q:claim";
    argv[argc++] = "workers";
    argv[argc++] = "live";
    argv[argc++] = "0";
    for (size_t i = 0; i < ids->elements; i++)
        argv[argc++] = ids->element[i]->element[0]->str;
    argv[argc++] = "JUSTID";
    redisContext *c = redisConnect("127.0.0.1", srv.port);
    assert_non_null(c);
    /* "live" keeps its entries busy; "dead" stopped a while ago. */
    for (int i = 0; i < 12; i++) {
        freeReplyObject(redisCommandArgv(c, argc, argv, NULL));
        nap_ms(100);
    }
    struct wthread w;
    worker_start(&w, "tw", "claim", 1, 1.0);
    long long left = DEAD;
    for (int i = 0; i < 60 && left > 0; i++) {
        freeReplyObject(redisCommandArgv(c, argc, argv, NULL));
        nap_ms(100);
        redisReply *p = redisCommand(c, "XPENDING tw:q:claim workers - + 100 dead");
        left = p && p->type == REDIS_REPLY_ARRAY ? (long long)p->elements : -1;
        freeReplyObject(p);
    }
    worker_stop(&w);
    redisReply *p = redisCommand(c, "XPENDING tw:q:claim workers - + 100 live");
    assert_int_equal(p->elements, LIVE); /* never idle: never taken */
    freeReplyObject(p);
    redisFree(c);
    freeReplyObject(live);
    if (left != 0)
        fail_msg("%lld entries of the dead worker were not claimed", left);
}

/* A worker of the C API with resources `res` (NULL: the machine's). */
static flow_worker *worker_with(const char *prefix, const char *queue, const char *name,
                                const flow_resources *res)
{
    char *url = url_with(prefix);
    const char *queues[] = {queue, NULL};
    flow_error err = {0};
    flow_worker *w = flow_worker_new(
        url, &(flow_worker_options){.queues = queues, .name = name, .resources = res}, &err);
    free(url);
    return w;
}

/* Why activation `task` of `r` waits on the runner, copied (NULL: it does not). */
static char *waiting_for(flow_engine *e, flow_run *r, const char *task)
{
    char *why = NULL;
    pthread_mutex_lock(&e->lock);
    for (size_t i = 0; i < r->act_count; i++) {
        struct act *a = flow__act_at(r, i);
        if (!strcmp(act_task(a)->name, task)) {
            const char *w = flow__remote_waiting_for(e, a);
            why = w ? strdup(w) : NULL;
        }
    }
    pthread_mutex_unlock(&e->lock);
    return why;
}

/* A task asking a gpu, with only a worker of gpu 0 live: the runner holds
 * it (no entry is queued, so none can go from worker to worker), says why,
 * and queues it once a worker with a gpu is live. */
static void held_until_a_worker_fits(void **state)
{
    (void)state;
    flow_resources bad = {.cpu = -1};
    assert_null(worker_with("tf", "fit", "bad", &bad)); /* refused: not an amount */
    flow_resources none = {.cpu = 1, .memory = 1024, .gpu = 0};
    flow_resources one = {.cpu = 1, .memory = 1024, .gpu = 1};
    struct wthread w0 = {.w = worker_with("tf", "fit", "nogpu", &none)};
    assert_non_null(w0.w);
    assert_int_equal(pthread_create(&w0.t, NULL, worker_main, &w0), 0);
    int i = 0;
    while (rint_of("EXISTS", "tf:worker:nogpu") < 1 && i++ < 250)
        nap_ms(20);

    char *url = url_with("tf");
    flow_error err = {0};
    flow_engine *e = flow_engine_new(&(flow_engine_options){.jobs = 2, .redis_url = url}, &err);
    assert_non_null(e);
    flow *f = load("name: fit\n"
                   "tasks:\n"
                   "  g:\n"
                   "    run: [echo, '3']\n"
                   "    executor: remote\n"
                   "    queue: fit\n"
                   "    resources: {gpu: 1, memory: 512}\n");
    flow_run *r = flow_run_start(e, f, &(flow_run_options){.run_id = "rf"}, &err);
    assert_non_null(r);
    char *why = NULL;
    for (i = 0; !(why = waiting_for(e, r, "g")) && i < 250; i++)
        nap_ms(20);
    assert_non_null(why);
    assert_string_equal(why, "resources: gpu 1, more than any live worker of queue 'fit' has "
                             "(the most: gpu 0)");
    free(why);
    nap_ms(1200); /* checked again: still held, never queued */
    why = waiting_for(e, r, "g");
    assert_non_null(why);
    free(why);
    assert_int_equal(rint_of("XLEN", "tf:q:fit"), 0);
    assert_int_equal(rint_of("EXISTS", "tf:inflight:rf"), 0);
    assert_int_equal(flow_run_get_status(r), FLOW_RUN_RUNNING);

    struct wthread w1 = {.w = worker_with("tf", "fit", "gpu", &one)};
    assert_non_null(w1.w);
    assert_int_equal(pthread_create(&w1.t, NULL, worker_main, &w1), 0);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_int_equal(json_integer_value(flow_run_result(r)), 3); /* its one end task's output */
    assert_null(waiting_for(e, r, "g"));
    flow_run_free(r);
    flow_free(f);
    flow_engine_free(e);
    worker_stop(&w0);
    worker_stop(&w1);
    free(url);
}

int main(void)
{
    flow_set_alloc_funcs(count_malloc, count_realloc, count_free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sent_attempts_keep_no_spec),
        cmocka_unit_test(early_completions_pruned),
        cmocka_unit_test(late_completion_expires),
        cmocka_unit_test(publish_failure_acks_nothing_else),
        cmocka_unit_test(autoclaim_walks_the_pending_list),
        cmocka_unit_test(held_until_a_worker_fits),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
