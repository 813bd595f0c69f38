/* test_remote.c -- the remote executor's bookkeeping on both sides
 * (src/core/remote.c, src/core/worker.c; docs/internals/distribution.md),
 * against a real redis-server: what the runner keeps per queued attempt and
 * that an attempt Redis lost is queued again; completions kept for an
 * attempt not submitted yet are dropped once its run pauses. */
#include "util/compat.h"

#include <malloc.h>
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

int main(void)
{
    flow_set_alloc_funcs(count_malloc, count_realloc, count_free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sent_attempts_keep_no_spec),
        cmocka_unit_test(early_completions_pruned),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
