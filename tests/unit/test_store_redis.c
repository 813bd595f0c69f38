/* test_store_redis.c -- what only the redis:// store has (src/store/store_redis.c),
 * against a real redis-server started by each test: fencing by the lease, a
 * server restarted under an open store, servers that would lose data
 * refused, prefixes kept apart, URLs and messages. The cases every store
 * shares are in test_store_conformance.c. */
#include "util/compat.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "redis_server.h"

#include "store/store.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/json.h"

static void make_run(struct flow__store *s, const char *id)
{
    struct flow__run_meta m = {.status = FLOW_RUN_RUNNING, .created_at = flow__wall_time()};
    snprintf(m.id, sizeof(m.id), "%s", id);
    flow_error err = {0};
    if (flow__store_run_create(s, &m, &err) != FLOW_OK)
        fail_msg("run_create %s: %s", id, err.message);
}

static flow_err append_n(struct flow__store *s, const char *run, size_t n, flow_error *err)
{
    struct flow__jrec recs[16];
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++)
        recs[i] = (struct flow__jrec){.type = JREC_LOG, .act = (uint32_t)i, .time = 1.5,
                                      .payload = json_pack("{s:i}", "i", (int)i)};
    flow_err rc = flow__store_append(s, run, recs, n, 0, err);
    for (size_t i = 0; i < n; i++)
        json_decref(recs[i].payload);
    return rc;
}

static void assert_msg(const flow_error *err, const char *want)
{
    if (!strstr(err->message, want))
        fail_msg("message '%s' lacks '%s'", err->message, want);
}

/* A runner stopped past its lease: another holder took the run over. The
 * old handle's appends are refused and write nothing; the new one's go on. */
static void fenced_by_lease(void **state)
{
    (void)state;
    struct th_redis srv;
    th_redis_start(&srv, NULL);
    struct flow__store *old = th_store_open(srv.url), *next = th_store_open(srv.url);
    make_run(old, "r");
    flow_error err = {0};
    double now = flow__wall_time();
    const char *other = "1@elsewhere.invalid";
    char me[300];
    flow__lease_holder(me, sizeof(me));
    assert_int_equal(flow__store_lease_acquire(old, "r", me, now - 20, 15, &err), FLOW_OK);
    assert_int_equal(append_n(old, "r", 3, &err), FLOW_OK);
    /* expired: another takes it */
    assert_int_equal(flow__store_lease_acquire(next, "r", other, now, 15, &err), FLOW_OK);
    assert_int_equal(append_n(old, "r", 5, &err), FLOW_EBUSY);
    assert_msg(&err, "lost the lease");
    assert_msg(&err, "pid 1 on host elsewhere.invalid");
    assert_int_equal(th_store_count(next, "r"), 3);
    assert_int_equal(append_n(next, "r", 2, &err), FLOW_OK);
    assert_int_equal(th_store_count(old, "r"), 5);
    /* nor can the old one take the lease back while it is live */
    assert_int_equal(flow__store_lease_acquire(old, "r", me, now + 1, 15, &err), FLOW_EBUSY);
    assert_int_equal(append_n(old, "r", 1, &err), FLOW_EBUSY);
    /* released: the one that lost it still writes nothing (its lease is
     * gone, not given back to it) ... */
    assert_int_equal(flow__store_lease_release(next, "r", other, &err), FLOW_OK);
    assert_int_equal(append_n(old, "r", 1, &err), FLOW_EBUSY);
    assert_msg(&err, "lost the lease: nobody holds it any more");
    assert_int_equal(th_store_count(next, "r"), 5);
    /* ... while a writer that never leased takes turns (runs that never lease) */
    struct flow__store *third = th_store_open(srv.url);
    assert_int_equal(append_n(third, "r", 1, &err), FLOW_OK);
    assert_int_equal(th_store_count(next, "r"), 6);
    flow__store_close(third);
    flow__store_close(old);
    flow__store_close(next);
    th_redis_stop(&srv);
}

/* Redis killed and started again from its append-only file: what was
 * committed is there, and the open store's next call connects again. While
 * it is down, calls fail with a message naming the store. The server writes
 * its file before it answers (appendfsync always): with everysec it may
 * answer first while a slow disk is still syncing the last second, and a
 * SIGKILL then loses what it answered, as Redis documents. */
static void survives_restart(void **state)
{
    (void)state;
    struct th_redis srv;
    th_redis_start(&srv, "appendfsync always");
    struct flow__store *s = th_store_open(srv.url);
    make_run(s, "r");
    flow_error err = {0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(append_n(s, "r", 10, &err), FLOW_OK);
    assert_int_equal(flow__store_control_put(s, "r", "pause", "why", &err), FLOW_OK);

    th_redis_kill(&srv);
    assert_int_equal(append_n(s, "r", 1, &err), FLOW_EIO);
    assert_msg(&err, "cannot append to run 'r' in store 'redis://127.0.0.1:");
    assert_msg(&err, "cannot connect to");
    th_redis_restart(&srv);

    assert_int_equal(th_store_count(s, "r"), 40);
    assert_int_equal(append_n(s, "r", 5, &err), FLOW_OK);
    assert_int_equal(th_store_count(s, "r"), 45);
    char *kind = NULL, *arg = NULL;
    assert_int_equal(flow__store_control_take(s, "r", &kind, &arg, &err), FLOW_OK);
    assert_string_equal(kind, "pause");
    assert_string_equal(arg, "why");
    flow__free(kind);
    flow__free(arg);

    /* a connection dropped between two calls (not a restart) is made again */
    free(th_redis_do(&srv, "CLIENT KILL TYPE normal"));
    assert_int_equal(append_n(s, "r", 2, &err), FLOW_OK);
    assert_int_equal(th_store_count(s, "r"), 47);
    flow__store_close(s);
    th_redis_stop(&srv);
}

/* A server that evicts keys would lose runs: refused at open, naming the
 * setting; strict durability needs every write fsync'ed. */
static void lossy_servers_refused(void **state)
{
    (void)state;
    struct th_redis srv;
    th_redis_start(&srv, "maxmemory-policy allkeys-lru");
    struct flow__store *s = NULL;
    flow_error err = {0};
    assert_int_equal(flow__store_open(srv.url, &s, &err), FLOW_EUNSUPPORTED);
    assert_null(s);
    assert_msg(&err, "maxmemory-policy");
    assert_msg(&err, "allkeys-lru");
    char *keys = th_redis_do(&srv, "DBSIZE");
    assert_string_equal(keys, "0"); /* nothing written */
    free(keys);
    th_redis_stop(&srv);

    th_redis_start(&srv, NULL); /* appendfsync everysec */
    char *strict = flow__asprintf("%s?durability=strict", srv.url);
    assert_int_equal(flow__store_open(strict, &s, &err), FLOW_EUNSUPPORTED);
    assert_msg(&err, "appendfsync");
    assert_msg(&err, "everysec");
    flow__free(strict);
    /* a normal store on it takes normal batches; a strict batch is refused */
    s = th_store_open(srv.url);
    make_run(s, "r");
    assert_int_equal(append_n(s, "r", 2, &err), FLOW_OK);
    struct flow__jrec one = {.type = JREC_LOG, .time = 1};
    assert_int_equal(flow__store_append(s, "r", &one, 1, FLOW__STORE_SYNC, &err),
                     FLOW_EUNSUPPORTED);
    assert_msg(&err, "appendfsync");
    assert_int_equal(th_store_count(s, "r"), 2);
    free(th_redis_do(&srv, "CONFIG SET appendfsync always"));
    flow__store_close(s);
    s = th_store_open(srv.url);
    assert_int_equal(flow__store_append(s, "r", &one, 1, FLOW__STORE_SYNC, &err), FLOW_OK);
    assert_int_equal(th_store_count(s, "r"), 3);
    flow__store_close(s);
    th_redis_stop(&srv);
}

static flow_err collect_cb(void *udata, const struct flow__run_meta *meta)
{
    return json_array_append_new(udata, json_string(meta->id)) ? FLOW_ENOMEM : FLOW_OK;
}

/* The ids run_list gives, as a JSON array: ["a","b"]. */
static void assert_list(struct flow__store *s, const char *want)
{
    json_t *ids = json_array();
    flow_error err = {0};
    if (flow__store_run_list(s, collect_cb, ids, &err) != FLOW_OK)
        fail_msg("run_list: %s", err.message);
    char *got = json_dumps(ids, JSON_COMPACT);
    assert_string_equal(got, want);
    flow__json_free_text(got);
    json_decref(ids);
}

/* Two prefixes (and two databases) on one server are two stores. */
static void prefixes_apart(void **state)
{
    (void)state;
    struct th_redis srv;
    th_redis_start(&srv, NULL);
    char *ua = flow__asprintf("%s?prefix=team.a", srv.url);
    char *ub = flow__asprintf("%s?prefix=team.b", srv.url);
    char *db3 = flow__asprintf("redis://127.0.0.1:%d/3?prefix=team.a", srv.port);
    struct flow__store *a = th_store_open(ua), *b = th_store_open(ub), *c = th_store_open(db3);
    flow_error err = {0};
    make_run(a, "x");
    make_run(b, "y");
    assert_int_equal(append_n(a, "x", 4, &err), FLOW_OK);
    assert_list(a, "[\"x\"]");
    assert_list(b, "[\"y\"]");
    assert_list(c, "[]");
    struct flow__run_meta m;
    assert_int_equal(flow__store_run_get(b, "x", &m, &err), FLOW_ENOTFOUND);
    assert_msg(&err, "no run 'x' in store 'redis://127.0.0.1:");
    assert_msg(&err, "?prefix=team.b'");
    make_run(b, "x"); /* the same id under another prefix is another run */
    assert_int_equal(th_store_count(b, "x"), 0);
    assert_int_equal(th_store_count(a, "x"), 4);
    char *keys = th_redis_do(&srv, "EXISTS team.a:runs team.b:runs team.a:journal:x");
    assert_string_equal(keys, "3");
    free(keys);
    flow__store_close(a);
    flow__store_close(b);
    flow__store_close(c);
    flow__free(ua);
    flow__free(ub);
    flow__free(db3);
    th_redis_stop(&srv);
}

/* Bad URLs and a server that is not there: one clear message each. */
static void urls_and_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *url, *says;
        flow_err code;
    } cases[] = {
        {"redis://", "has no host", FLOW_EINVAL},
        {"redis://h:99999", "bad port", FLOW_EINVAL},
        {"redis://h?durability=maybe", "bad durability", FLOW_EINVAL},
        {"redis://h?colour=red", "unknown parameter 'colour'", FLOW_EINVAL},
        {"redis:h", "is not a redis URL", FLOW_EINVAL},
        {"redis://127.0.0.1:1/0", "cannot connect to redis://127.0.0.1:1/0", FLOW_EIO},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct flow__store *s = NULL;
        flow_error err = {0};
        assert_int_equal(flow__store_open(cases[i].url, &s, &err), cases[i].code);
        assert_null(s);
        assert_msg(&err, cases[i].says);
        assert_null(strchr(err.message, '\n'));
    }
    struct th_redis srv;
    th_redis_start(&srv, "requirepass s3cret");
    char *url = flow__asprintf("redis://:wrong@127.0.0.1:%d/0", srv.port);
    struct flow__store *s = NULL;
    flow_error err = {0};
    assert_int_equal(flow__store_open(url, &s, &err), FLOW_EIO);
    assert_null(strstr(err.message, "wrong"));
    flow__free(url);
    url = flow__asprintf("redis://:s3cret@127.0.0.1:%d/0?prefix=p", srv.port);
    s = th_store_open(url);
    make_run(s, "r");
    assert_int_equal(flow__store_run_get(s, "nope", &(struct flow__run_meta){0}, &err),
                     FLOW_ENOTFOUND);
    assert_null(strstr(err.message, "s3cret")); /* messages never show the password */
    flow__store_close(s);
    flow__free(url);
    th_redis_stop(&srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fenced_by_lease),
        cmocka_unit_test(survives_restart),
        cmocka_unit_test(lossy_servers_refused),
        cmocka_unit_test(prefixes_apart),
        cmocka_unit_test(urls_and_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
