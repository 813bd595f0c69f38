/* test_redis.c -- Redis URLs, connections and the durability checks
 * (src/util/redis.c), against a real redis-server started by the test. */
#include "util/compat.h"

#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "redis_server.h"
#include "util/redis.h"

static void urls_parsed(void **state)
{
    (void)state;
    struct flow__redis_addr a;
    flow_error err = {0};
    assert_int_equal(flow__redis_parse("redis://localhost", &a, &err), FLOW_OK);
    assert_string_equal(a.host, "localhost");
    assert_int_equal(a.port, 6379);
    assert_int_equal(a.db, 0);
    assert_string_equal(a.prefix, "flow");
    assert_false(a.strict);
    assert_string_equal(a.shown, "redis://localhost:6379/0");

    assert_int_equal(flow__redis_parse("redis://u:p%40ss@10.0.0.1:7000/3?prefix=team.a&durability=strict",
                                       &a, &err),
                     FLOW_OK);
    assert_string_equal(a.user, "u");
    assert_string_equal(a.password, "p@ss");
    assert_string_equal(a.host, "10.0.0.1");
    assert_int_equal(a.port, 7000);
    assert_int_equal(a.db, 3);
    assert_string_equal(a.prefix, "team.a");
    assert_true(a.strict);
    assert_null(strstr(a.shown, "p@ss")); /* never shown */

    assert_int_equal(flow__redis_parse("redis://[::1]:6380", &a, &err), FLOW_OK);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 6380);
    assert_string_equal(a.shown, "redis://[::1]:6380/0");
    assert_int_equal(flow__redis_parse("redis://:secret@h/", &a, &err), FLOW_OK);
    assert_string_equal(a.password, "secret");
    assert_string_equal(a.user, "");
}

static void bad_urls_named(void **state)
{
    (void)state;
    static const struct {
        const char *url, *says;
    } cases[] = {
        {"http://x", "is not a redis URL"},
        {"redis://", "has no host"},
        {"redis://h:0", "bad port '0'"},
        {"redis://h:99999", "bad port '99999'"},
        {"redis://h:x1", "bad port 'x1'"},
        {"redis://h/db", "bad database 'db'"},
        {"redis://h?prefix=", "bad prefix ''"},
        {"redis://h?prefix=a/b", "bad prefix"},
        {"redis://h?durability=maybe", "bad durability 'maybe'"},
        {"redis://h?colour=red", "unknown parameter 'colour'"},
        {"redis://user@h", "':PASSWORD@'"},
        {"redis://:p%4@h", "bad %XX escape"},
        {"redis://[::1", "'[' without ']'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct flow__redis_addr a;
        flow_error err = {0};
        assert_int_equal(flow__redis_parse(cases[i].url, &a, &err), FLOW_EINVAL);
        if (!strstr(err.message, cases[i].says))
            fail_msg("%s: '%s' does not say '%s'", cases[i].url, err.message, cases[i].says);
    }
}

static void connects_and_names_failures(void **state)
{
    (void)state;
    struct th_redis srv;
    th_redis_start(&srv, NULL);
    struct flow__redis_addr a;
    flow_error err = {0};
    assert_int_equal(flow__redis_parse(srv.url, &a, &err), FLOW_OK);
    redisContext *c = flow__redis_connect(&a, 2.0, &err);
    assert_non_null(c);
    redisReply *r = flow__redis_cmd(c, &a, &err, "SET %s %s", "k", "v");
    assert_non_null(r);
    freeReplyObject(r);
    r = flow__redis_cmd(c, &a, &err, "GET %s", "k");
    assert_non_null(r);
    assert_string_equal(r->str, "v");
    freeReplyObject(r);
    /* A server error is a message naming the server and the command. */
    assert_null(flow__redis_cmd(c, &a, &err, "INCR %s", "k"));
    assert_non_null(strstr(err.message, srv.url));
    assert_non_null(strstr(err.message, "INCR"));
    assert_non_null(strstr(err.message, "not an integer"));
    redisFree(c);

    /* Database 2 is not database 0. */
    struct flow__redis_addr a2;
    char url2[80];
    snprintf(url2, sizeof(url2), "redis://127.0.0.1:%d/2", srv.port);
    assert_int_equal(flow__redis_parse(url2, &a2, &err), FLOW_OK);
    c = flow__redis_connect(&a2, 2.0, &err);
    assert_non_null(c);
    r = flow__redis_cmd(c, &a2, &err, "EXISTS %s", "k");
    assert_non_null(r);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    redisFree(c);

    /* A server that went away: the message says where. */
    th_redis_kill(&srv);
    assert_null(flow__redis_connect(&a, 2.0, &err));
    assert_non_null(strstr(err.message, "cannot connect to"));
    assert_non_null(strstr(err.message, srv.url));
    th_redis_stop(&srv);
}

static void password_required(void **state)
{
    (void)state;
    struct th_redis srv;
    th_redis_start(&srv, "requirepass s3cret");
    struct flow__redis_addr a;
    flow_error err = {0};
    char url[96];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", srv.port);
    assert_int_equal(flow__redis_parse(url, &a, &err), FLOW_OK);
    redisContext *c = flow__redis_connect(&a, 2.0, &err);
    assert_non_null(c); /* connecting works; commands are refused */
    assert_null(flow__redis_cmd(c, &a, &err, "PING"));
    assert_non_null(strstr(err.message, "NOAUTH"));
    redisFree(c);
    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d/0", srv.port);
    assert_int_equal(flow__redis_parse(url, &a, &err), FLOW_OK);
    assert_null(flow__redis_connect(&a, 2.0, &err));
    assert_non_null(strstr(err.message, "AUTH"));
    assert_null(strstr(err.message, "wrong")); /* the password is not shown */
    snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d/0", srv.port);
    assert_int_equal(flow__redis_parse(url, &a, &err), FLOW_OK);
    c = flow__redis_connect(&a, 2.0, &err);
    assert_non_null(c);
    redisReply *r = flow__redis_cmd(c, &a, &err, "PING");
    assert_non_null(r);
    freeReplyObject(r);
    redisFree(c);
    th_redis_stop(&srv);
}

static void durability_checked(void **state)
{
    (void)state;
    struct th_redis srv;
    th_redis_start(&srv, NULL); /* appendfsync everysec, noeviction */
    struct flow__redis_addr a;
    flow_error err = {0};
    assert_int_equal(flow__redis_parse(srv.url, &a, &err), FLOW_OK);
    redisContext *c = flow__redis_connect(&a, 2.0, &err);
    assert_non_null(c);
    assert_int_equal(flow__redis_check_durability(c, &a, false, &err), FLOW_OK);
    assert_int_equal(flow__redis_check_durability(c, &a, true, &err), FLOW_EUNSUPPORTED);
    assert_non_null(strstr(err.message, "appendfsync 'everysec'"));
    redisReply *r = flow__redis_cmd(c, &a, &err, "CONFIG SET appendfsync always");
    assert_non_null(r);
    freeReplyObject(r);
    assert_int_equal(flow__redis_check_durability(c, &a, true, &err), FLOW_OK);
    r = flow__redis_cmd(c, &a, &err, "CONFIG SET maxmemory-policy allkeys-lru");
    assert_non_null(r);
    freeReplyObject(r);
    assert_int_equal(flow__redis_check_durability(c, &a, false, &err), FLOW_EUNSUPPORTED);
    assert_non_null(strstr(err.message, "maxmemory-policy"));
    assert_non_null(strstr(err.message, "allkeys-lru"));
    redisFree(c);
    th_redis_stop(&srv);
}

static void url_from_environment(void **state)
{
    (void)state;
    unsetenv("FLOW_REDIS");
    assert_null(flow__redis_url_from_env(NULL));
    assert_string_equal(flow__redis_url_from_env("redis://a"), "redis://a");
    setenv("FLOW_REDIS", "redis://b", 1);
    assert_string_equal(flow__redis_url_from_env(NULL), "redis://b");
    assert_string_equal(flow__redis_url_from_env("redis://a"), "redis://a");
    unsetenv("FLOW_REDIS");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(urls_parsed),
        cmocka_unit_test(bad_urls_named),
        cmocka_unit_test(connects_and_names_failures),
        cmocka_unit_test(password_required),
        cmocka_unit_test(durability_checked),
        cmocka_unit_test(url_from_environment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
