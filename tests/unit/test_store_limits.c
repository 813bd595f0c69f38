/* test_store_limits.c -- the limits every version 3 store keeps for all the
 * processes that share it (docs/internals/limits.md): slots of concurrency
 * keys, held with leases, the marks of the holders that wait for them, and
 * the sliding windows of rate keys. The same
 * cases against sqlite:, disk:, memory: and redis:// (one real redis-server
 * for the suite, each case under a prefix of its own), then processes, each
 * with its own handle, taking one key's slots and starts at once: never
 * more held, nor started in a window, than the limit. */
#include "util/compat.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "store_cases.h"

#include "store/store.h"
#include "util/alloc.h"
#include "util/clock.h"

#define NOW 1700000000.0
#define OTHER "1@elsewhere.invalid" /* live until its lease expires */

/* ---- calls ----------------------------------------------------------------- */

/* slot_acquire that must work: how many it took, their numbers in `slots`. */
static int take(struct flow__store *s, const char *key, int limit, int want, const char *holder,
                const char *owner, double now, double ttl, int *slots)
{
    flow_error err = {0};
    int got = -1;
    flow_err rc =
        s->ops->slot_acquire(s->priv, key, limit, want, holder, owner, now, ttl, slots, &got, &err);
    if (rc != FLOW_OK)
        fail_msg("slot_acquire '%s': %s", key, err.message);
    assert_true(got >= 0 && got <= want);
    return got;
}

/* Take exactly one slot, `slot`. */
static void take_is(struct flow__store *s, const char *key, int limit, const char *holder,
                    double now, int slot)
{
    int got[1] = {-1};
    if (take(s, key, limit, 1, holder, "run", now, 15, got) != 1)
        fail_msg("'%s' took no slot of '%s' (limit %d)", holder, key, limit);
    assert_int_equal(got[0], slot);
}

static void none_free(struct flow__store *s, const char *key, int limit, const char *holder,
                      double now)
{
    int got[1];
    if (take(s, key, limit, 1, holder, "run", now, 15, got) != 0)
        fail_msg("'%s' took slot %d of '%s' (limit %d)", holder, got[0], key, limit);
}

static void give(struct flow__store *s, const char *key, int slot, const char *holder)
{
    flow_error err = {0};
    if (s->ops->slot_release(s->priv, key, &slot, 1, holder, &err) != FLOW_OK)
        fail_msg("slot_release '%s': %s", key, err.message);
}

static void renew(struct flow__store *s, const char *holder, double now, double ttl)
{
    flow_error err = {0};
    if (s->ops->slot_renew(s->priv, holder, now, ttl, &err) != FLOW_OK)
        fail_msg("slot_renew: %s", err.message);
}

static json_t *list(struct flow__store *s, const char *key, double now)
{
    flow_error err = {0};
    json_t *out = NULL;
    if (s->ops->slot_list(s->priv, key, now, &out, &err) != FLOW_OK)
        fail_msg("slot_list: %s", err.message);
    assert_true(json_is_array(out));
    return out;
}

/* "key/slot/holder/owner/expires-NOW;" for each slot listed. */
static char *list_text(struct flow__store *s, const char *key, double now)
{
    json_t *l = list(s, key, now);
    char *text = flow__strdup("");
    size_t i;
    json_t *e;
    json_array_foreach(l, i, e) {
        const char *owner = json_string_value(json_object_get(e, "owner"));
        assert_true(owner || json_is_null(json_object_get(e, "owner")));
        char *more = flow__asprintf(
            "%s%s/%lld/%s/%s/%g;", text, json_string_value(json_object_get(e, "key")),
            (long long)json_integer_value(json_object_get(e, "slot")),
            json_string_value(json_object_get(e, "holder")), owner ? owner : "-",
            json_number_value(json_object_get(e, "expires")) - NOW);
        flow__free(text);
        text = more;
    }
    json_decref(l);
    return text;
}

static void list_is(struct flow__store *s, const char *key, double now, const char *want)
{
    char *text = list_text(s, key, now);
    if (strcmp(text, want) != 0)
        fail_msg("slot_list %s: '%s', not '%s'", key ? key : "(all)", text, want);
    flow__free(text);
}

/* slot_contended that must work. */
static bool contended(struct flow__store *s, const char *key, const char *holder, double now)
{
    flow_error err = {0};
    bool yes = true;
    if (s->ops->slot_contended(s->priv, key, holder, now, &yes, &err) != FLOW_OK)
        fail_msg("slot_contended '%s': %s", key, err.message);
    return yes;
}

static int rate(struct flow__store *s, const char *key, int limit, double window, int want,
                double now, double *retry_at)
{
    flow_error err = {0};
    int got = -1;
    double retry = -1;
    if (s->ops->rate_take(s->priv, key, limit, window, want, now, &got, &retry, &err) != FLOW_OK)
        fail_msg("rate_take '%s': %s", key, err.message);
    assert_true(got >= 0 && got <= want);
    if (got == want)
        assert_true(retry == 0);
    if (retry_at)
        *retry_at = retry;
    return got;
}

/* ---- slots ----------------------------------------------------------------- */

static void test_version(void **state)
{
    struct th_store_case *fx = *state;
    assert_int_equal(fx->s->ops->version, 4);
    assert_true(flow__store_has_limits(fx->s));
    assert_non_null(fx->s->ops->slot_release);
    assert_non_null(fx->s->ops->slot_renew);
    assert_non_null(fx->s->ops->slot_list);
    assert_non_null(fx->s->ops->slot_contended);
}

static void test_slots(void **state)
{
    struct th_store_case *fx = *state;
    struct flow__store *s = fx->s;
    take_is(s, "k", 2, fx->me, NOW, 0);
    take_is(s, "k", 2, fx->me, NOW, 1);
    none_free(s, "k", 2, fx->me, NOW); /* one process holds a slot per acquisition */
    none_free(s, "k", 2, OTHER, NOW);
    take_is(s, "k2", 1, OTHER, NOW, 0); /* keys are apart */

    give(s, "k", 0, OTHER); /* not its slot: nothing */
    none_free(s, "k", 2, OTHER, NOW);
    give(s, "k", 0, fx->me);
    give(s, "k", 0, fx->me); /* twice: nothing more */
    give(s, "nokey", 0, fx->me);
    take_is(s, "k", 2, OTHER, NOW, 0);
    none_free(s, "k", 2, fx->me, NOW);

    /* held slots survive the handle (the durable stores) */
    if (flow__store_has_cap(s, FLOW__STORE_CAP_DURABLE)) {
        flow__store_close(fx->s);
        s = fx->s = th_store_open(fx->url);
        none_free(s, "k", 2, fx->me, NOW + 1);
        char *mine = flow__asprintf("k/0/%s/run/15;k/1/%s/run/15;", OTHER, fx->me);
        list_is(s, "k", NOW + 1, mine);
        flow__free(mine);
    }

    /* several at once, at most the limit; the lowest numbers first */
    int got[8];
    assert_int_equal(take(s, "w", 3, 5, fx->me, NULL, NOW, 15, got), 3);
    assert_int_equal(got[0], 0);
    assert_int_equal(got[1], 1);
    assert_int_equal(got[2], 2);
    assert_int_equal(take(s, "w", 3, 5, fx->me, NULL, NOW, 15, got), 0);
    give(s, "w", 1, fx->me);
    assert_int_equal(take(s, "w", 3, 2, OTHER, NULL, NOW, 15, got), 1);
    assert_int_equal(got[0], 1);
    int two[] = {0, 2};
    flow_error err = {0};
    assert_int_equal(s->ops->slot_release(s->priv, "w", two, 2, fx->me, &err), FLOW_OK);
    assert_int_equal(take(s, "w", 3, 3, OTHER, NULL, NOW, 15, got), 2);
    assert_int_equal(got[0], 0);
    assert_int_equal(got[1], 2);
    assert_int_equal(take(s, "w", 3, 0, OTHER, NULL, NOW, 15, got), 0);
    assert_int_equal(s->ops->slot_release(s->priv, "w", two, 0, OTHER, &err), FLOW_OK);

    int n = -1;
    assert_int_equal(
        s->ops->slot_acquire(s->priv, "k", 0, 1, fx->me, NULL, NOW, 15, got, &n, &err),
        FLOW_EINVAL);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err.message, "concurrency key 'k' has limit 0"));
    assert_int_equal(
        s->ops->slot_acquire(s->priv, "k", 1, 1, fx->me, NULL, NOW, 0, got, &n, &err),
        FLOW_EINVAL);
    assert_int_equal(
        s->ops->slot_acquire(s->priv, "k", 1, 1, fx->me, NULL, NOW, NAN, got, &n, &err),
        FLOW_EINVAL);
}

static void test_slot_list(void **state)
{
    struct th_store_case *fx = *state;
    struct flow__store *s = fx->s;
    list_is(s, NULL, NOW, "");
    list_is(s, "b", NOW, "");
    int got[2];
    assert_int_equal(take(s, "b", 3, 2, "7@h", "run-b", NOW, 15, got), 2);
    assert_int_equal(take(s, "a", 2, 1, OTHER, NULL, NOW, 15, got), 1);
    assert_int_equal(take(s, "c", 1, 1, OTHER, "run-c", NOW, 5, got), 1);
    assert_int_equal(take(s, "a b", 1, 1, OTHER, "x", NOW + 0.25, 2, got), 1);
    /* by key (bytes), then slot */
    list_is(s, NULL, NOW + 1,
            "a/0/" OTHER "/-/15;a b/0/" OTHER "/x/2.25;b/0/7@h/run-b/15;b/1/7@h/run-b/15;"
            "c/0/" OTHER "/run-c/5;");
    list_is(s, "b", NOW + 1, "b/0/7@h/run-b/15;b/1/7@h/run-b/15;");
    list_is(s, "zz", NOW + 1, "");
    /* live slots only */
    list_is(s, NULL, NOW + 5, "a/0/" OTHER "/-/15;b/0/7@h/run-b/15;b/1/7@h/run-b/15;");
    give(s, "b", 0, "7@h");
    list_is(s, "b", NOW + 5, "b/1/7@h/run-b/15;");
    /* holders and owners are kept as they are */
    assert_int_equal(take(s, "d", 1, 1, "8@h x\n", "run \xc3\xa9 1\n2 ", NOW, 15, got), 1);
    list_is(s, "d", NOW, "d/0/8@h x\n/run \xc3\xa9 1\n2 /15;");
    assert_int_equal(take(s, "e", 1, 1, "9@h", "", NOW, 15, got), 1);
    list_is(s, "e", NOW, "e/0/9@h//15;");
    /* the expires is kept exactly */
    json_t *l = list(s, "a", NOW);
    assert_true(json_number_value(json_object_get(json_array_get(l, 0), "expires")) == NOW + 15);
    json_decref(l);
}

static void test_expiry_renew(void **state)
{
    struct th_store_case *fx = *state;
    struct flow__store *s = fx->s;
    take_is(s, "k", 1, OTHER, NOW, 0); /* until NOW + 15 */
    none_free(s, "k", 1, fx->me, NOW + 14.5);
    take_is(s, "k", 1, fx->me, NOW + 15, 0); /* expired */
    none_free(s, "k", 1, OTHER, NOW + 16);

    /* renewal extends every slot of the holder, of every key */
    int got[2];
    assert_int_equal(take(s, "r1", 1, 1, OTHER, "x", NOW, 5, got), 1);
    assert_int_equal(take(s, "r2", 3, 2, OTHER, "y", NOW, 5, got), 2);
    renew(s, OTHER, NOW + 3, 10);
    renew(s, "9@nobody", NOW + 3, 10); /* holds nothing */
    none_free(s, "r1", 1, fx->me, NOW + 8);
    none_free(s, "r2", 2, fx->me, NOW + 8);
    list_is(s, "r2", NOW + 8, "r2/0/" OTHER "/y/13;r2/1/" OTHER "/y/13;");
    /* not another holder's: mine still ends at NOW + 30 */
    char *mine = flow__asprintf("k/0/%s/run/30;", fx->me);
    list_is(s, "k", NOW + 16, mine);
    flow__free(mine);
    /* a slot given back is not renewed into life */
    give(s, "r1", 0, OTHER);
    renew(s, OTHER, NOW + 9, 10);
    list_is(s, "r1", NOW + 9, "");
    list_is(s, "r2", NOW + 9, "r2/0/" OTHER "/y/19;r2/1/" OTHER "/y/19;");
    take_is(s, "r1", 1, fx->me, NOW + 9, 0);
    /* a slot taken over after it expired is the new holder's; one that
     * expired with nobody taking it is still its holder's to renew */
    take_is(s, "r2", 2, fx->me, NOW + 20, 0);
    renew(s, OTHER, NOW + 21, 10);
    mine = flow__asprintf("r2/0/%s/run/35;r2/1/" OTHER "/y/31;", fx->me);
    list_is(s, "r2", NOW + 21, mine);
    flow__free(mine);
    none_free(s, "r2", 1, OTHER, NOW + 21);
}

/* A pid of this host that no process has: a child that has exited. */
static pid_t dead_pid(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    return pid;
}

static void test_dead_holder(void **state)
{
    struct th_store_case *fx = *state;
    struct flow__store *s = fx->s;
    char host[256];
    assert_int_equal(gethostname(host, sizeof(host)), 0);
    char *dead = flow__asprintf("%ld@%s", (long)dead_pid(), host);
    char *init = flow__asprintf("1@%s", host); /* lives (another user's: EPERM) */
    int got[3];
    assert_int_equal(take(s, "k", 3, 3, dead, "gone", NOW, 1000, got), 3);
    /* taken over at once, its lease notwithstanding; the lowest first */
    assert_int_equal(take(s, "k", 3, 2, fx->me, "mine", NOW, 15, got), 2);
    assert_int_equal(got[0], 0);
    assert_int_equal(got[1], 1);
    char *want = flow__asprintf("k/0/%s/mine/15;k/1/%s/mine/15;", fx->me, fx->me);
    list_is(s, "k", NOW + 1, want);
    flow__free(want);
    take_is(s, "k", 3, init, NOW, 2);
    none_free(s, "k", 3, fx->me, NOW + 1);
    renew(s, dead, NOW + 1, 1000); /* holds nothing any more */
    none_free(s, "k", 3, OTHER, NOW + 2);
    flow__free(dead);
    flow__free(init);
}

/* Slots numbered at or past a limit (a key another flow gives a higher
 * limit) do not count against it. */
static void test_higher_limit(void **state)
{
    struct th_store_case *fx = *state;
    struct flow__store *s = fx->s;
    int got[4];
    assert_int_equal(take(s, "k", 4, 4, OTHER, NULL, NOW, 15, got), 4);
    give(s, "k", 0, OTHER);
    give(s, "k", 1, OTHER);
    assert_int_equal(take(s, "k", 2, 4, fx->me, NULL, NOW, 15, got), 2);
    assert_int_equal(got[0], 0);
    assert_int_equal(got[1], 1);
    none_free(s, "k", 2, "5@h", NOW);
    none_free(s, "k", 4, "5@h", NOW);
    give(s, "k", 3, OTHER);
    assert_int_equal(take(s, "k", 4, 2, "5@h", NULL, NOW, 15, got), 1);
    assert_int_equal(got[0], 3);
    none_free(s, "k", 1, "6@h", NOW);
}

/* A holder that slot_acquire gives fewer slots than it asked for marks that
 * it waits; the others see it (slot_contended) until it gets all it asks
 * for, or its mark expires, or its process is gone. */
static void test_contended(void **state)
{
    struct th_store_case *fx = *state;
    struct flow__store *s = fx->s;
    const char *me = fx->me, *other2 = "2@elsewhere.invalid";
    const double ttl = FLOW__SLOT_WANT_TTL;
    assert_false(contended(s, "k", me, NOW)); /* a key nobody asked for */
    take_is(s, "k", 1, me, NOW, 0);
    assert_false(contended(s, "k", me, NOW));     /* all it asked for: no mark */
    assert_false(contended(s, "k", OTHER, NOW));
    none_free(s, "k", 1, OTHER, NOW);             /* got nothing: marks */
    assert_true(contended(s, "k", me, NOW));
    assert_true(contended(s, "k", other2, NOW + ttl - 0.25));
    assert_false(contended(s, "k", OTHER, NOW));  /* its own mark */
    assert_false(contended(s, "k2", me, NOW));    /* another key's */
    if (th_store_shared(fx)) {
        /* seen through another handle (another process's) */
        struct flow__store *s2 = th_store_open(fx->url);
        assert_true(contended(s2, "k", me, NOW + 1));
        flow__store_close(s2);
    }
    assert_false(contended(s, "k", me, NOW + ttl)); /* expired (and may be forgotten) */
    none_free(s, "k", 1, OTHER, NOW + 2);         /* asking again marks it again */
    assert_true(contended(s, "k", me, NOW + ttl + 1));
    int got[3];
    assert_int_equal(take(s, "k", 1, 0, OTHER, NULL, NOW + 4, 15, got), 0); /* asks for none */
    assert_true(contended(s, "k", me, NOW + 4));
    assert_false(contended(s, "k", me, NOW + ttl + 2));
    none_free(s, "k", 1, OTHER, NOW + 6);
    give(s, "k", 0, me);
    take_is(s, "k", 1, OTHER, NOW + 6, 0);        /* all it asked for: the mark goes */
    assert_false(contended(s, "k", me, NOW + 6));
    assert_false(contended(s, "k", other2, NOW + 6));

    /* some but not all is still waiting */
    assert_int_equal(take(s, "p", 3, 2, me, NULL, NOW, 15, got), 2);
    assert_int_equal(take(s, "p", 3, 2, OTHER, NULL, NOW, 15, got), 1);
    assert_true(contended(s, "p", me, NOW));
    assert_int_equal(take(s, "p", 3, 2, other2, NULL, NOW, 15, got), 0);
    give(s, "p", 0, me);
    assert_int_equal(take(s, "p", 3, 1, OTHER, NULL, NOW + 1, 15, got), 1);
    assert_true(contended(s, "p", me, NOW + 1));  /* other2 still waits */
    assert_false(contended(s, "p", other2, NOW + 1)); /* OTHER does not */
    give(s, "p", 1, me);
    assert_int_equal(take(s, "p", 3, 2, other2, NULL, NOW + 2, 15, got), 1);
    assert_true(contended(s, "p", me, NOW + 2));  /* 1 of 2 */
    assert_int_equal(take(s, "p", 3, 1, other2, NULL, NOW + 2, 15, got), 0);
    give(s, "p", 2, OTHER);
    assert_int_equal(take(s, "p", 3, 1, other2, NULL, NOW + 2, 15, got), 1);
    assert_false(contended(s, "p", me, NOW + 2));

    /* a process of this host that is gone waits for nothing; one that
     * lives does */
    char host[256];
    assert_int_equal(gethostname(host, sizeof(host)), 0);
    char *dead = flow__asprintf("%ld@%s", (long)dead_pid(), host);
    char *init = flow__asprintf("1@%s", host);
    none_free(s, "k", 1, dead, NOW + 7);
    assert_false(contended(s, "k", me, NOW + 7));
    none_free(s, "k", 1, init, NOW + 7);
    assert_true(contended(s, "k", me, NOW + 7));
    assert_false(contended(s, "k", init, NOW + 7));
    flow__free(dead);
    flow__free(init);
}

/* Every directory under `path` is 0700 and every file 0600. */
static void check_modes(const char *path)
{
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *sub = flow__asprintf("%s/%s", path, e->d_name);
        struct stat st;
        assert_int_equal(lstat(sub, &st), 0);
        unsigned want = S_ISDIR(st.st_mode) ? 0700 : 0600;
        if ((st.st_mode & 0777) != want)
            fail_msg("%s has mode %o", sub, (unsigned)(st.st_mode & 0777));
        if (S_ISDIR(st.st_mode))
            check_modes(sub);
        flow__free(sub);
    }
    closedir(d);
}

/* Keys are any text: separators, dots, spaces, newlines, UTF-8, 1 KB. */
static void test_keys(void **state)
{
    struct th_store_case *fx = *state;
    struct flow__store *s = fx->s;
    char long1[1100], long2[1100], mid[301];
    memset(long1, 'x', 1000);
    snprintf(long1 + 1000, 100, "/one");
    memset(long2, 'x', 1000);
    snprintf(long2 + 1000, 100, "/two");
    memset(mid, 'm', 300);
    mid[300] = '\0';
    const char *keys[] = {long1, long2, mid, "",         "a/b c", "../x", ".hidden", "*",
                          "\xc3\xa9t\xc3\xa9 \xe2\x9c\x93", "line\nbreak", "k:1", "k%2F"};
    size_t n = FLOW__ARRAY_LEN(keys);
    mode_t old = umask(0); /* the store's files are private whatever the umask */
    for (size_t i = 0; i < n; i++) {
        take_is(s, keys[i], 1, OTHER, NOW, 0);
        assert_int_equal(rate(s, keys[i], 1, 10, 1, NOW, NULL), 1);
    }
    umask(old);
    for (size_t i = 0; i < n; i++) {
        none_free(s, keys[i], 1, fx->me, NOW);
        double retry;
        assert_int_equal(rate(s, keys[i], 1, 10, 1, NOW + 1, &retry), 0);
        assert_true(retry == NOW + 10);
        json_t *l = list(s, keys[i], NOW);
        assert_int_equal(json_array_size(l), 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "key")),
                            keys[i]);
        json_decref(l);
    }
    /* every key once, in the order of their bytes */
    json_t *all = list(s, NULL, NOW);
    assert_int_equal(json_array_size(all), n);
    for (size_t i = 0; i < n; i++) {
        const char *k = json_string_value(json_object_get(json_array_get(all, i), "key"));
        assert_non_null(k);
        if (i > 0)
            assert_true(
                strcmp(json_string_value(json_object_get(json_array_get(all, i - 1), "key")), k) <
                0);
    }
    json_decref(all);
    for (size_t i = 0; i < n; i++)
        give(s, keys[i], 0, OTHER);
    list_is(s, NULL, NOW, "");
    for (size_t i = 0; i < n; i++)
        take_is(s, keys[i], 1, fx->me, NOW, 0);

    if (fx->b->rel)
        check_modes(fx->dir);
}

/* A store made by a libflow before limits, or before demand marks, gets
 * their tables when opened; its format stays. */
static void test_sqlite_upgrade(void **state)
{
    struct th_store_case *fx = *state;
    if (strcmp(fx->b->name, "sqlite") != 0)
        skip();
    flow__store_close(fx->s);
    fx->s = NULL;
    char *path = flow__asprintf("%s/%s", fx->dir, fx->b->rel);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE slots; DROP TABLE rates; DROP TABLE slot_wants",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    fx->s = th_store_open(fx->url);
    take_is(fx->s, "k", 1, fx->me, NOW, 0);
    assert_int_equal(rate(fx->s, "k", 1, 1, 1, NOW, NULL), 1);
    flow__store_close(fx->s);
    fx->s = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE slot_wants", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    fx->s = th_store_open(fx->url);
    none_free(fx->s, "k", 1, OTHER, NOW);
    assert_true(contended(fx->s, "k", fx->me, NOW));
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
    flow__free(path);
}

/* The demand marks of key "k" the disk or Redis store keeps. */
static long marks_kept(const struct th_store_case *fx)
{
    if (fx->b->redis) {
        char *n = th_redis_do(&th_store_redis, "HLEN %s:slotwants:k", fx->prefix);
        long count = n ? strtol(n, NULL, 10) : -1;
        free(n);
        return count;
    }
    char *dir = flow__asprintf("%s/%s/slots/k6b", fx->dir, fx->b->rel); /* "k" in hex */
    DIR *d = opendir(dir);
    assert_non_null(d);
    long count = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        count += e->d_name[0] == 'w';
    closedir(d);
    flow__free(dir);
    return count;
}

/* What the disk and Redis stores keep of a limit goes away with it: a
 * holder's index once it holds nothing, a demand mark once its holder got
 * what it asked for or another marks after it expired; in Redis every key
 * has a TTL past its leases, windows and marks. */
static void test_cleanup(void **state)
{
    struct th_store_case *fx = *state;
    struct flow__store *s = fx->s;
    if (strcmp(fx->b->name, "disk") != 0 && !fx->b->redis)
        skip(); /* sqlite: rows, deleted with their slots */
    int got[2];
    assert_int_equal(take(s, "k", 2, 2, fx->me, NULL, NOW, 15, got), 2);
    assert_int_equal(rate(s, "r", 2, 30, 1, NOW, NULL), 1);
    char *holder_set = flow__asprintf("slotholders:%s", fx->me);
    const char *kinds[] = {"slots:k", holder_set, "slotkeys", "rate:r"};
    static const long ttls[] = {75000, 75000, 75000, 90000};
    for (size_t i = 0; fx->b->redis && i < FLOW__ARRAY_LEN(kinds); i++) {
        const char *k = kinds[i];
        char *ttl = th_redis_do(&th_store_redis, "PTTL %s:%s", fx->prefix, k);
        long ms = ttl ? strtol(ttl, NULL, 10) : -3;
        if (ms <= ttls[i] - 5000 || ms > ttls[i])
            fail_msg("%s has TTL %ld ms", k, ms);
        free(ttl);
    }
    flow__free(holder_set);
    const char *other2 = "2@elsewhere.invalid";
    none_free(s, "k", 2, OTHER, NOW);
    assert_int_equal(marks_kept(fx), 1);
    none_free(s, "k", 2, other2, NOW + 10); /* OTHER's has expired */
    assert_int_equal(marks_kept(fx), 1);
    if (fx->b->redis) {
        char *ttl = th_redis_do(&th_store_redis, "PTTL %s:slotwants:k", fx->prefix);
        long ms = ttl ? strtol(ttl, NULL, 10) : -3;
        if (ms <= 58000 || ms > 63000)
            fail_msg("slotwants:k has TTL %ld ms", ms);
        free(ttl);
    }
    give(s, "k", 0, fx->me);
    give(s, "k", 1, fx->me);
    take_is(s, "k", 2, other2, NOW + 10, 0);
    assert_int_equal(marks_kept(fx), 0);
    give(s, "k", 0, other2);
    list_is(s, NULL, NOW, "");
    if (fx->b->redis) {
        char *n = th_redis_do(&th_store_redis,
                              "EXISTS %s:slots:k %s:slotholders:%s %s:slotkeys %s:slotwants:k",
                              fx->prefix, fx->prefix, fx->me, fx->prefix, fx->prefix);
        assert_string_equal(n, "0");
        free(n);
    } else {
        char *holders = flow__asprintf("%s/%s/holders", fx->dir, fx->b->rel);
        DIR *d = opendir(holders);
        assert_non_null(d);
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                fail_msg("%s/%s is left", holders, e->d_name);
        closedir(d);
        flow__free(holders);
    }
}

/* ---- rates ----------------------------------------------------------------- */

static void test_rate(void **state)
{
    struct th_store_case *fx = *state;
    struct flow__store *s = fx->s;
    double retry;
    /* 3 starts in any 10 s */
    assert_int_equal(rate(s, "r", 3, 10, 1, 100, NULL), 1);
    assert_int_equal(rate(s, "r", 3, 10, 2, 101, NULL), 2);
    assert_int_equal(rate(s, "r", 3, 10, 1, 102, &retry), 0);
    assert_true(retry == 110); /* when the start of 100 leaves the window */
    assert_int_equal(rate(s, "r", 3, 10, 1, 109.5, &retry), 0);
    assert_true(retry == 110);
    assert_int_equal(rate(s, "r", 3, 10, 1, 110, NULL), 1); /* (100, 110] */
    assert_int_equal(rate(s, "r", 3, 10, 1, 110.5, &retry), 0);
    assert_true(retry == 111);
    assert_int_equal(rate(s, "other", 3, 10, 3, 110.5, NULL), 3);

    /* more than the window allows: some */
    assert_int_equal(rate(s, "r", 3, 10, 5, 200, &retry), 3);
    assert_true(retry == 210);
    assert_int_equal(rate(s, "r", 3, 10, 1, 205, &retry), 0);
    assert_true(retry == 210);
    assert_int_equal(rate(s, "r", 5, 10, 5, 205, &retry), 2); /* a higher limit */
    assert_true(retry == 210);
    assert_int_equal(rate(s, "r", 3, 10, 0, 300, NULL), 0);

    /* a lowered limit: the next start waits until only limit - 1 are left */
    assert_int_equal(rate(s, "low", 3, 10, 1, 300, NULL), 1);
    assert_int_equal(rate(s, "low", 3, 10, 1, 301, NULL), 1);
    assert_int_equal(rate(s, "low", 3, 10, 1, 302, NULL), 1);
    assert_int_equal(rate(s, "low", 1, 10, 1, 305, &retry), 0);
    assert_true(retry == 312);
    assert_int_equal(rate(s, "low", 1, 10, 1, 312, NULL), 1);

    /* fractions of a second, kept exactly */
    assert_int_equal(rate(s, "ms", 1, 0.25, 1, NOW + 0.125, NULL), 1);
    assert_int_equal(rate(s, "ms", 1, 0.25, 1, NOW + 0.25, &retry), 0);
    assert_true(retry == NOW + 0.375);
    assert_int_equal(rate(s, "ms", 1, 0.25, 1, NOW + 0.375, NULL), 1);

    flow_error err = {0};
    int got = -1;
    assert_int_equal(s->ops->rate_take(s->priv, "r", 0, 10, 1, 400, &got, &retry, &err),
                     FLOW_EINVAL);
    assert_int_equal(got, 0);
    assert_int_equal(s->ops->rate_take(s->priv, "r", 1, 0, 1, 400, &got, &retry, &err),
                     FLOW_EINVAL);
    assert_non_null(strstr(err.message, "rate key 'r' has a bad window"));
    assert_int_equal(s->ops->rate_take(s->priv, "r", 1, -1, 1, 400, &got, NULL, &err),
                     FLOW_EINVAL);
}

/* ---- processes ------------------------------------------------------------- */

#define PROCS 6
#define ROUNDS 30
#define SLOTS 2
#define STARTS 3
#define RATE_N 4
#define RATE_W 0.2

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void say(int fd, const char *line)
{
    if (write(fd, line, strlen(line)) != (ssize_t)strlen(line))
        _exit(3);
}

static void die(int fd, const char *what, const flow_error *err)
{
    char line[700];
    snprintf(line, sizeof(line), "X %s: %s\n", what, err->message);
    say(fd, line);
    _exit(2);
}

/* A child: ROUNDS times, wait for a slot, say so, hold it a little, say it
 * leaves, give it back. Each line is one write(), whole in the pipe. */
static void slot_child(const char *url, int i, int fd)
{
    (void)i;
    struct flow__store *s = NULL;
    flow_error err = {0};
    if (flow__store_open(url, &s, &err) != FLOW_OK)
        die(fd, "open", &err);
    char me[300];
    flow__lease_holder(me, sizeof(me));
    const char *key = "shared key/\xc3\xa9";
    for (int r = 0; r < ROUNDS; r++) {
        int slot = -1, got = 0;
        while (!got) {
            if (s->ops->slot_acquire(s->priv, key, SLOTS, 1, me, "run", flow__wall_time(), 15,
                                     &slot, &got, &err) != FLOW_OK)
                die(fd, "acquire", &err);
            if (!got)
                sleep_s(0.0005);
        }
        char line[64];
        snprintf(line, sizeof(line), "E %ld %d\n", (long)getpid(), slot);
        say(fd, line);
        sleep_s(0.002);
        snprintf(line, sizeof(line), "L %ld %d\n", (long)getpid(), slot);
        say(fd, line);
        if (s->ops->slot_release(s->priv, key, &slot, 1, me, &err) != FLOW_OK)
            die(fd, "release", &err);
    }
    flow__store_close(s);
    _exit(0);
}

/* A child: STARTS times, start when the window allows, else wait for the
 * time the store names. */
static void rate_child(const char *url, int i, int fd)
{
    (void)i;
    struct flow__store *s = NULL;
    flow_error err = {0};
    if (flow__store_open(url, &s, &err) != FLOW_OK)
        die(fd, "open", &err);
    for (int n = 0; n < STARTS;) {
        double now = flow__wall_time(), retry = 0;
        int got = 0;
        if (s->ops->rate_take(s->priv, "rate key", RATE_N, RATE_W, 1, now, &got, &retry,
                              &err) != FLOW_OK)
            die(fd, "rate_take", &err);
        char line[64];
        if (got) {
            snprintf(line, sizeof(line), "S %.6f\n", now);
            say(fd, line);
            n++;
            continue;
        }
        /* a start another made since we read the clock may be later */
        if (!(retry > now && retry <= now + 2 * RATE_W)) {
            snprintf(line, sizeof(line), "X retry_at %.6f at %.6f\n", retry, now);
            say(fd, line);
            _exit(2);
        }
        sleep_s(retry - flow__wall_time());
    }
    flow__store_close(s);
    _exit(0);
}

static void test_slots_procs(void **state)
{
    struct th_store_case *fx = *state;
    if (!th_store_shared(fx))
        skip();
    char *out = th_store_children(fx->url, PROCS, slot_child);
    long holder[SLOTS] = {0}; /* the pid in each slot, 0: free */
    int held = 0, most = 0, entered = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char kind;
        long pid;
        int slot;
        if (sscanf(line, "%c %ld %d", &kind, &pid, &slot) != 3 || slot < 0 || slot >= SLOTS)
            fail_msg("bad line '%s'", line);
        if (kind == 'E') {
            if (holder[slot])
                fail_msg("slot %d taken by %ld while %ld held it", slot, pid, holder[slot]);
            holder[slot] = pid;
            entered++;
            if (++held > most)
                most = held;
        } else {
            if (holder[slot] != pid)
                fail_msg("%ld left slot %d, held by %ld", pid, slot, holder[slot]);
            holder[slot] = 0;
            held--;
        }
        if (held > SLOTS)
            fail_msg("%d holders at once (limit %d)", held, SLOTS);
    }
    assert_int_equal(entered, PROCS * ROUNDS);
    assert_int_equal(held, 0);
    assert_int_equal(most, SLOTS);
    free(out);
    list_is(fx->s, NULL, flow__wall_time(), ""); /* everything given back */
}

static int double_order(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_rate_procs(void **state)
{
    struct th_store_case *fx = *state;
    if (!th_store_shared(fx))
        skip();
    char *out = th_store_children(fx->url, PROCS, rate_child);
    double t[PROCS * STARTS];
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (n == PROCS * STARTS || sscanf(line, "S %lf", &t[n]) != 1)
            fail_msg("bad line '%s'", line);
        n++;
    }
    free(out);
    assert_int_equal(n, PROCS * STARTS);
    qsort(t, (size_t)n, sizeof(*t), double_order);
    /* A child reads its clock just before its transaction: starts may land
     * a little out of the order of their times. A store that let several
     * in at once would show RATE_N + 1 within a few microseconds. */
    double slack = getenv("FLOW_VALGRIND") || TH_TSAN ? RATE_W / 2 : RATE_W / 4;
    for (int i = 0; i + RATE_N < n; i++)
        if (t[i + RATE_N] - t[i] < RATE_W - slack)
            fail_msg("%d starts in %.3f s (limit %d in %.3f s)", RATE_N + 1,
                     t[i + RATE_N] - t[i], RATE_N, RATE_W);
}

#define CASES(X)                                                                                 \
    X(test_version)                                                                              \
    X(test_slots)                                                                                \
    X(test_slot_list)                                                                            \
    X(test_expiry_renew)                                                                         \
    X(test_dead_holder)                                                                          \
    X(test_higher_limit)                                                                         \
    X(test_contended)                                                                            \
    X(test_keys)                                                                                 \
    X(test_sqlite_upgrade)                                                                       \
    X(test_cleanup)                                                                              \
    X(test_rate)                                                                                 \
    X(test_slots_procs)                                                                          \
    X(test_rate_procs)

int main(void)
{
#define ROW(fn) cmocka_unit_test_setup_teardown(fn, th_store_setup, th_store_teardown),
    const struct CMUnitTest suite[] = {CASES(ROW)};
#undef ROW
    return th_store_suites('l', NULL, suite, FLOW__ARRAY_LEN(suite));
}
