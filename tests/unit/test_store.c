/* test_store.c -- the store registry and what store.c shares (URLs, lease
 * holders and their messages), plus what only one backend does: SQLite
 * files corrupted, foreign or unwritable; separate memory stores. What
 * every backend does is in test_store_conformance.c, the disk store's files
 * in test_store_disk.c. */
#include "util/compat.h"

#include <pwd.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#include "store/store.h"
#include "util/alloc.h"

struct fixture {
    char *dir;
    char *url; /* sqlite:DIR/sub/flow.db */
    char *path;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    fx->dir = th_tempdir();
    fx->path = flow__asprintf("%s/sub/flow.db", fx->dir);
    fx->url = flow__asprintf("sqlite:%s", fx->path);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    th_rmtree(fx->dir);
    free(fx->dir);
    flow__free(fx->url);
    flow__free(fx->path);
    free(fx);
    return 0;
}

static struct flow__store *open_ok(const char *url)
{
    struct flow__store *s = NULL;
    flow_error err = {0};
    flow_err rc = flow__store_open(url, &s, &err);
    if (rc != FLOW_OK)
        fail_msg("open %s: %s", url, err.message);
    assert_non_null(s);
    return s;
}

static void make_run(struct flow__store *s, const char *id, double created_at)
{
    struct flow__run_meta m = {0};
    snprintf(m.id, sizeof(m.id), "%s", id);
    m.flow = (char *)"demo";
    m.version = (char *)"1.2";
    m.def_hash = (char *)"abc123";
    m.source = (char *)"flow.yaml";
    m.inputs = json_pack("{s:i, s:f}", "n", 3, "x", 0.92);
    m.status = FLOW_RUN_RUNNING;
    m.created_at = created_at;
    flow_error err = {0};
    flow_err rc = flow__store_run_create(s, &m, &err);
    json_decref(m.inputs);
    if (rc != FLOW_OK)
        fail_msg("run_create %s: %s", id, err.message);
}

static void test_newer_format(void **state)
{
    struct fixture *fx = *state;
    flow__store_close(open_ok(fx->url));
    sqlite3 *db;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 2", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    struct flow__store *s = NULL;
    flow_error err = {0};
    assert_int_not_equal(flow__store_open(fx->url, &s, &err), FLOW_OK);
    assert_null(s);
    char *want = flow__asprintf("store '%s' has format 2; this libflow understands up to 1",
                                fx->path);
    if (!strstr(err.message, want))
        fail_msg("message: %s", err.message);
    flow__free(want);
}

static void test_garbage(void **state)
{
    struct fixture *fx = *state;
    char *path = th_write_file(fx->dir, "junk.db",
                               "this is not a database, just some text long enough to be a "
                               "header of a file that sqlite would read as its first page...");
    char *url = flow__asprintf("sqlite:%s", path);
    struct flow__store *s = NULL;
    flow_error err = {0};
    assert_int_equal(flow__store_open(url, &s, &err), FLOW_EPARSE);
    assert_null(s);
    char *want = flow__asprintf("store '%s' is not a libflow store (file is not a database)",
                                path);
    if (!strstr(err.message, want))
        fail_msg("message: %s", err.message);
    flow__free(want);
    flow__free(url);
    free(path);

    /* a SQLite database of something else */
    char *other = flow__asprintf("%s/other.db", fx->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(other, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    url = flow__asprintf("sqlite:%s", other);
    assert_int_equal(flow__store_open(url, &s, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "is not a libflow store"));
    flow__free(url);
    flow__free(other);
}

/* A store in a directory the process cannot write to. Root can write
 * anywhere, so the check runs in a child that drops to an unprivileged user. */
static void test_readonly_dir(void **state)
{
    struct fixture *fx = *state;
    /* Under valgrind the forked child's exit is checked for leaks of what
     * the parent allocated; the other builds run this test. */
    if (getenv("FLOW_VALGRIND"))
        skip();
    char *ro = flow__asprintf("%s/ro", fx->dir);
    assert_int_equal(mkdir(ro, 0555), 0);
    assert_int_equal(chmod(ro, 0555), 0);
    assert_int_equal(chmod(fx->dir, 0755), 0);
    char *url = flow__asprintf("sqlite:%s/flow.db", ro);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        if (geteuid() == 0) {
            struct passwd *pw = getpwnam("nobody");
            uid_t uid = pw ? pw->pw_uid : 65534;
            gid_t gid = pw ? pw->pw_gid : 65534;
            if (setgid(gid) != 0 || setuid(uid) != 0)
                _exit(3);
        }
        struct flow__store *s = NULL;
        flow_error err = {0};
        flow_err rc = flow__store_open(url, &s, &err);
        ssize_t w = write(fds[1], err.message, strlen(err.message));
        (void)w;
        _exit(rc == FLOW_OK ? 1 : 0);
    }
    close(fds[1]);
    char msg[600] = "";
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], msg + len, sizeof(msg) - 1 - len)) > 0)
        len += (size_t)n;
    msg[len] = '\0';
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("child exit %d: %s", WEXITSTATUS(status), msg);
    if (!strstr(msg, "cannot create store") || !strstr(msg, ro) ||
        !strstr(msg, "Permission denied"))
        fail_msg("message: %s", msg);
    flow__free(url);
    flow__free(ro);
}

static void test_bad_urls(void **state)
{
    (void)state;
    struct flow__store *s = NULL;
    flow_error err = {0};
    assert_int_equal(flow__store_open("mongodb://localhost", &s, &err), FLOW_EINVAL);
    assert_null(s);
    assert_non_null(strstr(err.message, "unknown store scheme 'mongodb'"));
    assert_non_null(strstr(err.message, "(built in: sqlite, disk, memory, redis)"));
    assert_int_equal(flow__store_open("flow.db", &s, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "sqlite"));
    assert_int_equal(flow__store_open("", &s, &err), FLOW_EINVAL);
    assert_int_equal(flow__store_open("sqlite:", &s, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "store url 'sqlite:' has no path"));
    assert_int_equal(flow__store_open("disk:", &s, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "store url 'disk:' has no path"));
    assert_int_equal(flow__store_open("disk:?durability=strict", &s, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "has no path"));
    assert_int_equal(flow__store_open("sqlite:/tmp/x.db?fast=yes", &s, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "unknown option 'fast=yes'"));
    assert_int_equal(flow__store_open("disk:/tmp/x?durability=lax", &s, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "unknown option 'durability=lax' in store url "
                                        "'disk:/tmp/x?durability=lax'"));
    assert_int_equal(flow__store_open("memory:x", &s, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "store url 'memory:x' has something after 'memory:'"));
    assert_int_equal(flow__store_open("memory:?durability=strict", &s, &err), FLOW_EINVAL);
    assert_null(s);
    assert_int_equal(flow__store_open_flags("sqlite:/nonexistent-dir/x.db",
                                            FLOW__STORE_OPEN_NOCREATE, &s, &err),
                     FLOW_ENOTFOUND);
    assert_null(s);
    assert_int_equal(flow__store_open_flags("disk:/nonexistent-dir/x", FLOW__STORE_OPEN_NOCREATE,
                                            &s, &err),
                     FLOW_ENOTFOUND);
    assert_non_null(strstr(err.message, "no store '/nonexistent-dir/x'"));
    assert_null(s);
}

/* The new columns and tables, seen with sqlite itself. */
static void test_schema(void **state)
{
    struct fixture *fx = *state;
    struct flow__store *s = open_ok(fx->url);
    make_run(s, "r", 1.0);
    flow_error err = {0};
    assert_int_equal(flow__store_control_put(s, "r", "pause", "why", &err), FLOW_OK);
    assert_int_equal(flow__store_lease_acquire(s, "r", "7@h", 10.0, 15.0, &err), FLOW_OK);
    flow__store_close(s);

    sqlite3 *db;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT source, parent, lease_holder, lease_expiry,"
                                        " (SELECT kind || ':' || arg FROM control WHERE run = 'r'),"
                                        " (SELECT value FROM meta WHERE key = 'format')"
                                        " FROM runs WHERE id = 'r'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "flow.yaml");
    assert_int_equal(sqlite3_column_type(st, 1), SQLITE_NULL);
    assert_string_equal((const char *)sqlite3_column_text(st, 2), "7@h");
    assert_true(sqlite3_column_double(st, 3) == 25.0);
    assert_string_equal((const char *)sqlite3_column_text(st, 4), "pause:why");
    assert_string_equal((const char *)sqlite3_column_text(st, 5), "1");
    sqlite3_finalize(st);
    sqlite3_close(db);

    /* a file holding only our tables is ours, whatever else sqlite added */
    s = open_ok(fx->url);
    flow__store_close(s);
}

static void test_lease_helpers(void **state)
{
    (void)state;
    char host[256];
    assert_int_equal(gethostname(host, sizeof(host)), 0);
    char me[300];
    flow__lease_holder(me, sizeof(me));
    char *want = flow__asprintf("%ld@%s", (long)getpid(), host);
    assert_string_equal(me, want);
    flow__free(want);

    double now = 1000.0;
    assert_true(flow__lease_is_live(me, now + 1, now));
    assert_false(flow__lease_is_live(me, now, now)); /* expired */
    assert_false(flow__lease_is_live(me, now - 5, now));
    char *dead = flow__asprintf("2147483646@%s", host);
    assert_false(flow__lease_is_live(dead, now + 10, now));
    flow__free(dead);
    /* A runner killed a moment ago, not reaped yet (a zombie), is dead too. */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0)
        _exit(0);
    char *zombie = flow__asprintf("%ld@%s", (long)child, host);
    bool live = true;
    for (int i = 0; i < 500 && live; i++) { /* until it has exited */
        live = flow__lease_is_live(zombie, now + 10, now);
        if (live)
            usleep(2000);
    }
    assert_false(live);
    assert_int_equal(kill(child, 0), 0); /* still there to be reaped */
    assert_int_equal(waitpid(child, NULL, 0), child);
    assert_false(flow__lease_is_live(zombie, now + 10, now));
    flow__free(zombie);
    assert_true(flow__lease_is_live("2147483646@elsewhere.invalid", now + 10, now));
    assert_true(flow__lease_is_live("1@elsewhere.invalid", now + 10, now));
    assert_true(flow__lease_is_live("not a holder", now + 10, now));
    assert_false(flow__lease_is_live("not a holder", now - 1, now));

    flow_error err = {0};
    assert_int_equal(flow__lease_busy(&err, "ID", "1234@h", 1007.0, 1000.0), FLOW_EBUSY);
    assert_int_equal(err.code, FLOW_EBUSY);
    assert_string_equal(err.message,
                        "run 'ID' is being executed by pid 1234 on host h (lease expires in 7s)");
    assert_int_equal(flow__lease_busy(&err, "ID", "1234@h", 1006.2, 1000.0), FLOW_EBUSY);
    assert_string_equal(err.message,
                        "run 'ID' is being executed by pid 1234 on host h (lease expires in 7s)");
    assert_int_equal(flow__lease_busy(&err, "ID", "1234@h", 0, 1000.0), FLOW_EBUSY);
    assert_string_equal(err.message, "run 'ID' is being executed by pid 1234 on host h");
    assert_int_equal(flow__lease_busy(&err, "ID", "", 0, 1000.0), FLOW_EBUSY);
    assert_string_equal(err.message, "run 'ID' is being executed by another process");
    assert_int_equal(flow__lease_busy(NULL, "ID", "1@h", 0, 0), FLOW_EBUSY);

    assert_int_equal(flow__lease_check(&err, "ID", NULL, 0, me, now), FLOW_OK);
    assert_int_equal(flow__lease_check(&err, "ID", me, now + 5, me, now), FLOW_OK);
    assert_int_equal(flow__lease_check(&err, "ID", "1@elsewhere.invalid", now + 5, me, now),
                     FLOW_EBUSY);
    assert_int_equal(flow__lease_check(&err, "ID", "1@elsewhere.invalid", now, me, now), FLOW_OK);
}

/* Two "memory:" handles are two stores. */
/* Reading a journal back: a payload repeated from the record before is the value parsed
 * before; anything else is parsed; errors change nothing. */
static void test_payload_memo(void **state)
{
    (void)state;
    struct flow__payload_memo m = {0};
    json_t *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    const char *done = "{\"output\":null}";
    assert_int_equal(flow__payload_parse(&m, done, strlen(done), &a), FLOW_OK);
    assert_int_equal(flow__payload_parse(&m, done, strlen(done), &b), FLOW_OK);
    assert_ptr_equal(a, b); /* shared */
    assert_true(json_is_null(json_object_get(b, "output")));
    json_decref(b);
    /* Same length, other text; then a prefix of the text remembered. */
    assert_int_equal(flow__payload_parse(&m, "{\"output\":true}", 15, &b), FLOW_OK);
    assert_ptr_not_equal(a, b);
    assert_true(json_is_true(json_object_get(b, "output")));
    assert_int_equal(flow__payload_parse(&m, done, 10, &c), FLOW_EPARSE);
    assert_null(c);
    assert_int_equal(flow__payload_parse(&m, "{\"output\":true}", 15, &c), FLOW_OK);
    assert_ptr_equal(b, c); /* a bad payload did not replace the memo */
    json_decref(b);
    json_decref(c);
    /* Scalars, and a payload too long to remember (parsed each time). */
    assert_int_equal(flow__payload_parse(&m, "null", 4, &b), FLOW_OK);
    assert_true(json_is_null(b));
    json_decref(b);
    char big[300];
    int n = snprintf(big, sizeof(big), "{\"output\":\"%0200d\"}", 7);
    assert_int_equal(flow__payload_parse(&m, big, (size_t)n, &b), FLOW_OK);
    assert_int_equal(flow__payload_parse(&m, big, (size_t)n, &c), FLOW_OK);
    assert_ptr_not_equal(b, c);
    assert_true(json_equal(b, c));
    json_decref(b);
    json_decref(c);
    assert_int_equal(flow__payload_parse(&m, done, strlen(done), &d), FLOW_OK);
    assert_true(json_equal(a, d));
    json_decref(a);
    json_decref(d);
    flow__payload_memo_cleanup(&m);
    flow__payload_memo_cleanup(&m); /* twice is harmless */
}

static void test_memory_separate(void **state)
{
    (void)state;
    struct flow__store *a = open_ok("memory:");
    struct flow__store *b = open_ok("memory:");
    assert_false(flow__store_has_cap(a, FLOW__STORE_CAP_DURABLE));
    assert_false(flow__store_has_cap(a, FLOW__STORE_CAP_CROSS_PROCESS));
    make_run(a, "r", 1.0);
    struct flow__run_meta m;
    flow_error err = {0};
    assert_int_equal(flow__store_run_get(b, "r", &m, &err), FLOW_ENOTFOUND);
    assert_non_null(strstr(err.message, "no run 'r' in store 'memory:'"));
    make_run(b, "r", 2.0);
    assert_int_equal(flow__store_run_get(a, "r", &m, &err), FLOW_OK);
    assert_true(m.created_at == 1.0);
    flow__run_meta_cleanup(&m);
    /* records keep their payloads: the caller's reference may go */
    json_t *p = json_pack("{s:i}", "k", 1);
    struct flow__jrec rec = {.type = 1, .payload = p};
    assert_int_equal(flow__store_append(a, "r", &rec, 1, 0, &err), FLOW_OK);
    json_decref(p);
    flow__store_close(b);
    flow__store_close(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_newer_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema, setup, teardown),
        cmocka_unit_test(test_lease_helpers),
        cmocka_unit_test(test_memory_separate),
        cmocka_unit_test(test_payload_memo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
