/* test_remote_state.c -- a worker's copies of run states by version
 * (src/exec/remote_state.c), against a real redis-server: a version is read
 * once for all the jobs that need it and then served from the cache; a
 * missing or malformed version is an error naming it; without Redis nothing
 * is read and nothing is said; the cache keeps one version a run, 16 runs. */
#include "util/compat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/remote_state.h"
#include "helpers.h"
#include "redis_server.h"
#include "util/alloc.h"
#include "util/redis.h"

/* How many HGETs the server ran since the last call. */
static long hgets(struct th_redis *srv)
{
    char *info = th_redis_do(srv, "INFO commandstats");
    assert_non_null(info);
    const char *p = strstr(info, "cmdstat_hget:calls=");
    long n = p ? strtol(p + strlen("cmdstat_hget:calls="), NULL, 10) : 0;
    free(info);
    free(th_redis_do(srv, "CONFIG RESETSTAT"));
    return n;
}

static void release(struct flow__rstate_need *needs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        flow__rstate_unref(needs[i].state);
        flow__free(needs[i].error);
        needs[i].state = NULL;
        needs[i].error = NULL;
    }
}

static void read_once_then_cached(void **unused)
{
    (void)unused;
    struct th_redis srv;
    th_redis_start(&srv, NULL);
    struct flow__redis_addr a;
    flow_error err = {0};
    assert_int_equal(flow__redis_parse(srv.url, &a, &err), FLOW_OK);
    redisContext *c = flow__redis_connect(&a, 2.0, &err);
    assert_non_null(c);
    free(th_redis_do(&srv, "HSET flow:state:R1 e.1 {\"n\":1}"));
    free(th_redis_do(&srv, "HSET flow:state:R1 e.2 {\"n\":2}"));
    free(th_redis_do(&srv, "HSET flow:state:R2 bad.1 [1,2]"));
    hgets(&srv);

    struct flow__rstate_cache cache;
    memset(&cache, 0, sizeof(cache));
    struct flow__rstate_need needs[] = {
        {.run = "R1", .v = "e.1"},   {.run = "R1", .v = "e.1"}, {.run = "R1", .v = "e.1"},
        {.run = "R2", .v = "bad.1"}, {.run = "R3", .v = "x.9"},
    };
    flow__rstate_get(&cache, c, "flow", needs, 5);
    assert_int_equal(hgets(&srv), 3); /* one a version */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(json_integer_value(json_object_get(needs[i].state->state, "n")), 1);
        assert_int_equal(needs[i].state->seq, needs[0].state->seq); /* one state file */
        assert_null(needs[i].error);
    }
    assert_ptr_equal(needs[0].state, needs[1].state); /* one copy, shared */
    assert_null(needs[3].state);
    assert_string_equal(needs[3].error,
                        "the state of run R2 (version bad.1) in Redis is not a JSON object");
    assert_null(needs[4].state);
    assert_string_equal(needs[4].error, "the state of run R3 (version x.9) is not in Redis (the "
                                        "run ended, or its keys expired)");
    uint64_t seq1 = needs[0].state->seq;
    release(needs, 5);

    /* Cached: no connection needed. */
    flow__rstate_get(&cache, NULL, "flow", needs, 1);
    assert_int_equal(json_integer_value(json_object_get(needs[0].state->state, "n")), 1);
    assert_int_equal(needs[0].state->seq, seq1);
    release(needs, 1);
    /* Not cached and no connection: nothing, and no error. */
    struct flow__rstate_need two = {.run = "R1", .v = "e.2"};
    flow__rstate_get(&cache, NULL, "flow", &two, 1);
    assert_null(two.state);
    assert_null(two.error);
    /* A run's newer version takes its slot: the older is read again. */
    flow__rstate_get(&cache, c, "flow", &two, 1);
    assert_int_equal(json_integer_value(json_object_get(two.state->state, "n")), 2);
    assert_true(two.state->seq > seq1);
    release(&two, 1);
    flow__rstate_get(&cache, c, "flow", needs, 1);
    assert_non_null(needs[0].state);
    release(needs, 1);
    assert_int_equal(hgets(&srv), 2);

    /* 16 runs at most: the one handed out longest ago goes first. */
    for (int i = 0; i < 17; i++) {
        char run[16];
        snprintf(run, sizeof(run), "L%d", i);
        free(th_redis_do(&srv, "HSET flow:state:%s v.1 {\"i\":%d}", run, i));
        struct flow__rstate_need one = {.run = run, .v = "v.1"};
        flow__rstate_get(&cache, c, "flow", &one, 1);
        assert_int_equal(json_integer_value(json_object_get(one.state->state, "i")), i);
        release(&one, 1);
    }
    hgets(&srv);
    struct flow__rstate_need last = {.run = "L16", .v = "v.1"};
    struct flow__rstate_need first = {.run = "L0", .v = "v.1"};
    flow__rstate_get(&cache, NULL, "flow", &last, 1);
    flow__rstate_get(&cache, NULL, "flow", &first, 1);
    assert_non_null(last.state);
    assert_null(first.state); /* evicted */
    release(&last, 1);

    flow__rstate_cache_cleanup(&cache);
    redisFree(c);
    th_redis_stop(&srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(read_once_then_cached),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
