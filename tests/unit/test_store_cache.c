/* test_store_cache.c -- the cached outputs every version 4 store keeps for
 * all the processes that share it (docs/internals/prompts.md, "Cache"):
 * entries put and got back by (flow, task, key), names of any text kept
 * apart, replaced whole, expired by the caller's clock, removed by gc
 * (expired ones, or all), kept across a reopen, damaged ones read as none,
 * secrets redacted and keys holding one refused. The same cases against
 * sqlite:, disk:, memory: and redis:// (one real redis-server for the
 * suite, each case under a prefix of its own), then processes, each with
 * its own handle, replacing and reading one entry at once: a reader always
 * gets a whole entry. */
#include "util/compat.h"

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "store_cases.h"

#include "store/store.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/redact.h"

/* ---- calls ----------------------------------------------------------------- */

static void put(struct flow__store *s, const char *f, const char *t, const char *k,
                json_t *entry, double now, double expires)
{
    flow_error err = {0};
    if (flow__store_cache_put(s, f, t, k, entry, now, expires, &err) != FLOW_OK)
        fail_msg("cache_put (%s, %s, %s): %s", f, t, k, err.message);
    json_decref(entry);
}

/* The entry of (f, t, k) at `now` (new reference), or NULL; *created gets
 * when it was put. */
static json_t *get(struct flow__store *s, const char *f, const char *t, const char *k, double now,
                   double *created)
{
    flow_error err = {0};
    json_t *e = NULL;
    double c = -1;
    if (flow__store_cache_get(s, f, t, k, now, &e, &c, &err) != FLOW_OK)
        fail_msg("cache_get (%s, %s, %s): %s", f, t, k, err.message);
    if (!e)
        assert_true(c == 0);
    if (created)
        *created = c;
    return e;
}

static size_t gc(struct flow__store *s, double now, bool all)
{
    flow_error err = {0};
    size_t n = 999;
    if (s->ops->cache_gc(s->priv, now, all, &n, &err) != FLOW_OK)
        fail_msg("cache_gc: %s", err.message);
    return n;
}

/* Does (f, t, k) hold exactly `want` at `now`? */
static void holds(struct flow__store *s, const char *f, const char *t, const char *k, double now,
                  const json_t *want)
{
    json_t *e = get(s, f, t, k, now, NULL);
    if (!want) {
        if (e)
            fail_msg("(%s, %s, %s) holds %s, expected none", f, t, k,
                     json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY));
        return;
    }
    if (!e || !json_equal(e, want))
        fail_msg("(%s, %s, %s) holds %s", f, t, k,
                 e ? json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY) : "nothing");
    json_decref(e);
}

/* ---- cases ----------------------------------------------------------------- */

static void test_version(void **state)
{
    struct th_store_case *fx = *state;
    assert_int_equal(fx->s->ops->version, 4);
    assert_true(flow__store_has_cache(fx->s));
}

static void test_put_get(void **state)
{
    struct th_store_case *fx = *state;
    double now = flow__wall_time();
    assert_null(get(fx->s, "f", "t", "k", now, NULL)); /* nothing yet, not even a cache */
    json_t *v = json_pack("{s:{s:[i,s,n,b]},s:{s:s},s:[[s,s,i]]}", "output", "list", 1, "two",
                          1, "writes", "a", "b", "ops", "incr", "n", 2);
    put(fx->s, "f", "t", "k", json_incref(v), now, 0);
    double created = 0;
    json_t *e = get(fx->s, "f", "t", "k", now + 1e6, &created); /* no expiry: kept */
    assert_non_null(e);
    assert_true(json_equal(e, v));
    assert_true(created > now - 0.001 && created < now + 0.001);
    json_decref(e);
    /* A scalar entry, and null. */
    put(fx->s, "f", "t", "s", json_string("x"), now, 0);
    put(fx->s, "f", "t", "n", json_null(), now, 0);
    json_t *x = json_string("x");
    holds(fx->s, "f", "t", "s", now, x);
    holds(fx->s, "f", "t", "n", now, json_null());
    json_decref(x);
    json_decref(v);
}

/* Names are three texts of any bytes: none stands for another. */
static void test_names_apart(void **state)
{
    struct th_store_case *fx = *state;
    double now = flow__wall_time();
    static const char *const names[][3] = {
        {"a", "b", "c"},      {"a", "b:c", ""},   {"a:b", "c", ""},  {"a", "", "b:c"},
        {"", "a", "b:c"},     {"a", "b", "c "},   {"a", "b", "C"},   {"a\nb", "c", "d"},
        {"ä", "b", "c"},      {"a", "b", "*"},    {"a", "b", "%2F"}, {"a", "b", "../x"},
        {"a", "b", "c\\d"},   {"fl", "ow", "[x]"}, {"a b", "c", "d"}, {"a", "b", "{\"j\": 1}"},
    };
    size_t n = sizeof(names) / sizeof(names[0]);
    for (size_t i = 0; i < n; i++)
        put(fx->s, names[i][0], names[i][1], names[i][2], json_integer((json_int_t)i), now, 0);
    for (size_t i = 0; i < n; i++) {
        json_t *want = json_integer((json_int_t)i);
        holds(fx->s, names[i][0], names[i][1], names[i][2], now, want);
        json_decref(want);
    }
    holds(fx->s, "a", "b", "", now, NULL);
    holds(fx->s, "b", "a", "c", now, NULL);
    /* A long key. */
    char *big = malloc(20001);
    memset(big, 'k', 20000);
    big[20000] = '\0';
    put(fx->s, "f", "t", big, json_true(), now, 0);
    holds(fx->s, "f", "t", big, now, json_true());
    big[19999] = 'j';
    holds(fx->s, "f", "t", big, now, NULL);
    free(big);
}

static void test_replace(void **state)
{
    struct th_store_case *fx = *state;
    double now = flow__wall_time();
    put(fx->s, "f", "t", "k", json_integer(1), now, now + 100);
    put(fx->s, "f", "t", "k", json_integer(2), now + 1, 0); /* the expiry goes too */
    double created;
    json_t *e = get(fx->s, "f", "t", "k", now + 1000, &created);
    assert_non_null(e);
    assert_int_equal(json_integer_value(e), 2);
    assert_true(created > now + 0.999 && created < now + 1.001);
    json_decref(e);
}

static void test_expiry(void **state)
{
    struct th_store_case *fx = *state;
    double now = flow__wall_time();
    put(fx->s, "f", "t", "k", json_integer(1), now, now + 30);
    json_t *one = json_integer(1);
    holds(fx->s, "f", "t", "k", now + 29.9, one);
    holds(fx->s, "f", "t", "k", now + 30, NULL); /* expired at its expiry */
    holds(fx->s, "f", "t", "k", now + 31, NULL);
    json_decref(one);
}

static void test_gc(void **state)
{
    struct th_store_case *fx = *state;
    double now = flow__wall_time();
    assert_int_equal(gc(fx->s, now, false), 0); /* nothing ever cached */
    assert_int_equal(gc(fx->s, now, true), 0);
    put(fx->s, "f", "t", "old", json_integer(1), now, now - 0.001);
    put(fx->s, "f", "t", "new", json_integer(2), now, now + 60);
    put(fx->s, "f", "t", "ever", json_integer(3), now, 0);
    put(fx->s, "g", "t", "old2", json_integer(4), now, now - 0.001);
    /* Redis drops the expired ones by itself (they got a PX of a
     * millisecond): gc finds none there. */
    usleep(20 * 1000);
    size_t expired = gc(fx->s, now, false);
    assert_int_equal(expired, fx->b->redis ? 0 : 2);
    holds(fx->s, "f", "t", "old", now - 5, NULL); /* gone, even by an earlier clock */
    json_t *two = json_integer(2), *three = json_integer(3);
    holds(fx->s, "f", "t", "new", now, two);
    holds(fx->s, "f", "t", "ever", now, three);
    assert_int_equal(gc(fx->s, now, false), 0);
    /* Later, the one with a ttl expires; the one without never does. */
    assert_int_equal(gc(fx->s, now + 61, false), fx->b->redis ? 0 : 1);
    holds(fx->s, "f", "t", "ever", now + 1e6, three);
    assert_int_equal(gc(fx->s, now, true), fx->b->redis ? 2 : 1);
    holds(fx->s, "f", "t", "ever", now, NULL);
    assert_int_equal(gc(fx->s, now, true), 0);
    json_decref(two);
    json_decref(three);
}

static void test_reopen(void **state)
{
    struct th_store_case *fx = *state;
    if (!th_store_durable(fx))
        skip();
    double now = flow__wall_time();
    put(fx->s, "f", "t", "k", json_pack("{s:s}", "output", "kept"), now, now + 60);
    flow__store_close(fx->s);
    fx->s = th_store_open(fx->url);
    json_t *want = json_pack("{s:s}", "output", "kept");
    holds(fx->s, "f", "t", "k", now, want);
    json_decref(want);
}

/* A second handle (another process's, as far as the store knows) sees the
 * entry at once. */
static void test_two_handles(void **state)
{
    struct th_store_case *fx = *state;
    if (!th_store_shared(fx))
        skip();
    struct flow__store *other = th_store_open(fx->url);
    double now = flow__wall_time();
    put(fx->s, "f", "t", "k", json_integer(7), now, 0);
    json_t *seven = json_integer(7);
    holds(other, "f", "t", "k", now, seven);
    put(other, "f", "t", "k", json_integer(8), now, 0);
    json_t *eight = json_integer(8);
    holds(fx->s, "f", "t", "k", now, eight);
    assert_int_equal(gc(other, now, true), 1);
    holds(fx->s, "f", "t", "k", now, NULL);
    json_decref(seven);
    json_decref(eight);
    flow__store_close(other);
}

/* A damaged entry (a torn write, a hand edit) reads as none, is replaced by
 * the next put, and gc removes it. */
static void test_damaged(void **state)
{
    struct th_store_case *fx = *state;
    double now = flow__wall_time();
    put(fx->s, "f", "t", "k", json_integer(1), now, 0);
    if (!strcmp(fx->b->name, "disk")) {
        char name[33], *path;
        flow__cache_name("f", "t", "k", name);
        path = flow__asprintf("%s/d/cache/%s", fx->dir, name);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        char *dir = flow__asprintf("%s/d/cache", fx->dir);
        assert_int_equal(stat(dir, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
        flow__free(dir);
        int fd = open(path, O_WRONLY | O_TRUNC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "{\"flow\": \"f\", \"ta", 17), 17);
        close(fd);
        flow__free(path);
    } else if (!strcmp(fx->b->name, "sqlite")) {
        char *path = flow__asprintf("%s/x/flow.db", fx->dir);
        sqlite3 *db;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, "UPDATE cache SET entry = '{\"out'", NULL, NULL, NULL),
                         SQLITE_OK);
        sqlite3_close(db);
        flow__free(path);
    } else if (fx->b->redis) {
        char k[128];
        char name[33];
        flow__cache_name("f", "t", "k", name);
        snprintf(k, sizeof(k), "%s:cache:%s", fx->prefix, name);
        free(th_redis_do(&th_store_redis, "SET %s {\"flow", k));
    } else {
        skip(); /* nothing to damage in memory */
    }
    holds(fx->s, "f", "t", "k", now, NULL);
    if (!fx->b->redis && !strcmp(fx->b->name, "disk"))
        assert_int_equal(gc(fx->s, now, false), 1);
    put(fx->s, "f", "t", "k", json_integer(2), now, 0);
    json_t *two = json_integer(2);
    holds(fx->s, "f", "t", "k", now, two);
    json_decref(two);
}

/* Secrets never reach the store: the entry is redacted; a key that holds
 * one is not kept at all (redacted, it would name another entry). */
static void test_secrets(void **state)
{
    struct th_store_case *fx = *state;
    setenv("CACHE_TEST_SECRET", "hunter2-value", 1);
    const char *names[] = {"CACHE_TEST_SECRET"};
    struct flow__secrets *sec = NULL;
    assert_int_equal(flow__secrets_from_env(names, 1, true, &sec, NULL), FLOW_OK);
    assert_int_equal(flow__store_add_secrets(fx->s, sec, NULL), FLOW_OK);
    flow__secrets_unref(sec);
    double now = flow__wall_time();
    put(fx->s, "f", "t", "k", json_pack("{s:s}", "output", "token hunter2-value here"), now, 0);
    json_t *want = json_pack("{s:s}", "output", "token *** here");
    holds(fx->s, "f", "t", "k", now, want);
    json_decref(want);
    flow_error err = {0};
    json_t *v = json_integer(1);
    assert_int_equal(flow__store_cache_put(fx->s, "f", "t", "key hunter2-value", v, now, 0, &err),
                     FLOW_EINVAL);
    assert_non_null(strstr(err.message, "holds the value of a secret"));
    json_decref(v);
    holds(fx->s, "f", "t", "key hunter2-value", now, NULL);
    unsetenv("CACHE_TEST_SECRET");
}

/* Redis: gc with `all` removes this prefix's entries only. */
static void test_prefixes_apart(void **state)
{
    struct th_store_case *fx = *state;
    if (!fx->b->redis)
        skip();
    /* A store whose prefix is this one's and ":cache": its keys begin with
     * what this one's entries do. */
    char *url = flow__asprintf("%s?prefix=%s:cache", th_store_redis.url, fx->prefix);
    struct flow__store *other = th_store_open(url);
    struct flow__run_meta m = {.id = "r1", .status = FLOW_RUN_RUNNING, .created_at = 1};
    flow_error err;
    assert_int_equal(other->ops->run_create(other->priv, &m, &err), FLOW_OK);
    double now = flow__wall_time();
    put(fx->s, "f", "t", "k", json_integer(1), now, 0);
    put(other, "f", "t", "k", json_integer(2), now, 0);
    assert_int_equal(gc(fx->s, now, true), 1);
    holds(fx->s, "f", "t", "k", now, NULL);
    json_t *two = json_integer(2);
    holds(other, "f", "t", "k", now, two);
    struct flow__run_meta got = {0};
    assert_int_equal(other->ops->run_get(other->priv, "r1", &got, &err), FLOW_OK);
    flow__run_meta_cleanup(&got);
    assert_int_equal(gc(other, now, true), 1);
    json_decref(two);
    flow__store_close(other);
    flow__free(url);
}

/* ---- processes ------------------------------------------------------------- */

#define PROCS 4
#define ROUNDS 40
#define BIG 65536

/* Each child replaces the entry with one of its own (a big string of its
 * digit) and reads it back: every read is whole, one writer's. */
static void cache_child(const char *url, int id, int fd)
{
    struct flow__store *s = NULL;
    flow_error err;
    if (flow__store_open(url, &s, &err) != FLOW_OK)
        _exit(3);
    char *text = malloc(BIG + 1);
    memset(text, '0' + id, BIG);
    text[BIG] = '\0';
    int bad = 0, seen = 0;
    for (int i = 0; i < ROUNDS && !bad; i++) {
        json_t *v = json_pack("{s:i,s:s}", "writer", id, "text", text);
        double now = flow__wall_time();
        if (flow__store_cache_put(s, "f", "t", "shared", v, now, 0, &err) != FLOW_OK)
            bad = 1;
        json_decref(v);
        json_t *e = NULL;
        double created;
        if (flow__store_cache_get(s, "f", "t", "shared", now, &e, &created, &err) != FLOW_OK) {
            bad = 2;
        } else if (e) {
            seen++;
            json_int_t w = json_integer_value(json_object_get(e, "writer"));
            const char *t = json_string_value(json_object_get(e, "text"));
            if (w < 0 || w >= PROCS || !t || strlen(t) != BIG || t[0] != '0' + w ||
                t[BIG - 1] != '0' + w)
                bad = 4;
        } else {
            bad = 5; /* an entry was put and none is there */
        }
        json_decref(e);
    }
    free(text);
    flow__store_close(s);
    dprintf(fd, "%d %d %d\n", id, bad, seen);
    _exit(bad);
}

static void test_procs(void **state)
{
    struct th_store_case *fx = *state;
    if (!th_store_shared(fx))
        skip();
    /* a child exits non-zero when it saw a torn or missing entry */
    free(th_store_children(fx->url, PROCS, cache_child));
}

#define CASES(X)                                                                                 \
    X(test_version)                                                                              \
    X(test_put_get)                                                                              \
    X(test_names_apart)                                                                          \
    X(test_replace)                                                                              \
    X(test_expiry)                                                                               \
    X(test_gc)                                                                                   \
    X(test_reopen)                                                                               \
    X(test_two_handles)                                                                          \
    X(test_damaged)                                                                              \
    X(test_secrets)                                                                              \
    X(test_prefixes_apart)                                                                       \
    X(test_procs)

int main(void)
{
#define ROW(fn) cmocka_unit_test_setup_teardown(fn, th_store_setup, th_store_teardown),
    const struct CMUnitTest suite[] = {CASES(ROW)};
#undef ROW
    return th_store_suites('c', NULL, suite, FLOW__ARRAY_LEN(suite));
}
