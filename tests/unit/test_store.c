/* test_store.c -- the store interface and its SQLite backend (src/store/):
 * real database files in a temp dir, reopened, corrupted and refused. */
#include "util/compat.h"

#include <pwd.h>
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
    m.inputs = json_pack("{s:i, s:f}", "n", 3, "x", 0.92);
    m.status = FLOW_RUN_RUNNING;
    m.created_at = created_at;
    flow_error err = {0};
    flow_err rc = flow__store_run_create(s, &m, &err);
    json_decref(m.inputs);
    if (rc != FLOW_OK)
        fail_msg("run_create %s: %s", id, err.message);
}

static flow_err list_cb(void *udata, const struct flow__run_meta *meta)
{
    char *ids = udata; /* char[64] */
    size_t len = strlen(ids);
    snprintf(ids + len, 64 - len, "%s,", meta->id);
    return FLOW_OK;
}

static void test_runs(void **state)
{
    struct fixture *fx = *state;
    struct flow__store *s = open_ok(fx->url);
    assert_true(flow__store_has_cap(s, FLOW__STORE_CAP_DURABLE));
    assert_true(flow__store_has_cap(s, FLOW__STORE_CAP_CROSS_PROCESS));
    make_run(s, "r2", 200.0);
    make_run(s, "r1", 100.0);

    struct flow__run_meta m;
    flow_error err = {0};
    assert_int_equal(flow__store_run_get(s, "r1", &m, &err), FLOW_OK);
    assert_string_equal(m.id, "r1");
    assert_string_equal(m.flow, "demo");
    assert_string_equal(m.version, "1.2");
    assert_string_equal(m.def_hash, "abc123");
    assert_int_equal(json_integer_value(json_object_get(m.inputs, "n")), 3);
    assert_true(json_real_value(json_object_get(m.inputs, "x")) == 0.92);
    assert_int_equal(m.status, FLOW_RUN_RUNNING);
    assert_true(m.created_at == 100.0);
    assert_true(m.ended_at == 0.0);
    flow__run_meta_cleanup(&m);

    /* duplicate id */
    struct flow__run_meta dup = {.id = "r1", .created_at = 1};
    assert_int_equal(flow__store_run_create(s, &dup, &err), FLOW_EEXISTS);
    assert_non_null(strstr(err.message, "run 'r1' already exists"));
    assert_non_null(strstr(err.message, fx->path));
    struct flow__run_meta empty = {0};
    assert_int_equal(flow__store_run_create(s, &empty, &err), FLOW_EINVAL);

    assert_int_equal(flow__store_run_get(s, "nope", &m, &err), FLOW_ENOTFOUND);
    assert_non_null(strstr(err.message, "no run 'nope'"));

    char ids[64] = "";
    assert_int_equal(flow__store_run_list(s, list_cb, ids, &err), FLOW_OK);
    assert_string_equal(ids, "r1,r2,");

    /* status update */
    assert_int_equal(flow__store_run_set_status(s, "r2", FLOW_RUN_COMPLETED, 250.5, &err),
                     FLOW_OK);
    assert_int_equal(flow__store_run_set_status(s, "zz", FLOW_RUN_COMPLETED, 1, &err),
                     FLOW_ENOTFOUND);
    flow__store_close(s);

    s = open_ok(fx->url);
    assert_int_equal(flow__store_run_get(s, "r2", &m, &err), FLOW_OK);
    assert_int_equal(m.status, FLOW_RUN_COMPLETED);
    assert_true(m.ended_at == 250.5);
    assert_non_null(m.inputs);
    flow__run_meta_cleanup(&m);
    flow__store_close(s);
}

#define NRECS 10000
#define BATCH 100

static json_t *payload_for(int i)
{
    if (i % 7 == 0)
        return NULL;
    return json_pack("{s:i, s:f, s:s, s:[i,b]}", "i", i, "x", i * 0.1, "s", "h\"é\n", "l", i,
                     i % 2);
}

struct reader {
    uint64_t next;
    int count;
    int stop_at; /* stop (FLOW_ECANCELLED) after this many, or 0 */
};

static flow_err read_cb(void *udata, uint64_t seq, const struct flow__jrec *rec)
{
    struct reader *r = udata;
    assert_int_equal(seq, r->next);
    int i = (int)seq;
    assert_int_equal(rec->type, 1 + i % 12);
    assert_int_equal(rec->act, (uint32_t)i * 3);
    assert_int_equal(rec->task, (uint32_t)i % 50);
    assert_int_equal(rec->attempt, i % 256);
    assert_int_equal(rec->src, (uint32_t)i / 2);
    assert_true(rec->time == 1700000000.25 + i);
    json_t *want = payload_for(i);
    if (!want)
        assert_null(rec->payload);
    else
        assert_true(json_equal(want, rec->payload));
    json_decref(want);
    r->next++;
    r->count++;
    if (r->stop_at && r->count == r->stop_at)
        return FLOW_ECANCELLED;
    return FLOW_OK;
}

static void read_all(struct flow__store *s, uint64_t from, int expect)
{
    struct reader r = {.next = from};
    flow_error err = {0};
    flow_err rc = flow__store_read(s, "run", from, read_cb, &r, &err);
    if (rc != FLOW_OK)
        fail_msg("read: %s", err.message);
    assert_int_equal(r.count, expect);
}

static void test_records(void **state)
{
    struct fixture *fx = *state;
    struct flow__store *s = open_ok(fx->url);
    make_run(s, "run", 1.0);
    flow_error err = {0};

    struct flow__jrec batch[BATCH];
    for (int b = 0; b < NRECS / BATCH; b++) {
        for (int k = 0; k < BATCH; k++) {
            int i = b * BATCH + k;
            batch[k] = (struct flow__jrec){
                .type = (uint8_t)(1 + i % 12),
                .attempt = (uint8_t)(i % 256),
                .task = (uint32_t)i % 50,
                .act = (uint32_t)i * 3,
                .src = (uint32_t)i / 2,
                .time = 1700000000.25 + i,
                .payload = payload_for(i),
            };
        }
        flow_err rc = flow__store_append(s, "run", batch, BATCH, &err);
        for (int k = 0; k < BATCH; k++)
            json_decref(batch[k].payload);
        if (rc != FLOW_OK)
            fail_msg("append: %s", err.message);
        assert_int_equal(flow__store_commit(s, "run", &err), FLOW_OK);
    }
    read_all(s, 0, NRECS);
    read_all(s, 4321, NRECS - 4321);
    read_all(s, NRECS, 0);

    /* a callback stops the read with its code */
    struct reader r = {.stop_at = 5};
    assert_int_equal(flow__store_read(s, "run", 0, read_cb, &r, &err), FLOW_ECANCELLED);
    assert_int_equal(r.count, 5);

    /* unknown run */
    assert_int_equal(flow__store_read(s, "ghost", 0, read_cb, &r, &err), FLOW_ENOTFOUND);
    assert_int_equal(flow__store_append(s, "ghost", batch, 1, &err), FLOW_ENOTFOUND);
    assert_non_null(strstr(err.message, "ghost"));
    flow__store_close(s);

    /* durable across close */
    s = open_ok(fx->url);
    read_all(s, 0, NRECS);
    flow__store_close(s);

    /* strict durability opens the same file */
    char *strict = flow__asprintf("%s?durability=strict", fx->url);
    s = open_ok(strict);
    read_all(s, 9990, 10);
    flow__store_close(s);
    flow__free(strict);
}

static void test_modes(void **state)
{
    struct fixture *fx = *state;
    mode_t old = umask(0);
    struct flow__store *s = open_ok(fx->url);
    umask(old);
    make_run(s, "m", 1.0);
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *wal = flow__asprintf("%s-wal", fx->path);
    assert_int_equal(stat(wal, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    flow__free(wal);
    char *sub = flow__asprintf("%s/sub", fx->dir);
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    flow__free(sub);
    flow__store_close(s);
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
    assert_int_equal(flow__store_open("redis://localhost", &s, &err), FLOW_EINVAL);
    assert_null(s);
    assert_non_null(strstr(err.message, "unknown store scheme 'redis'"));
    assert_non_null(strstr(err.message, "sqlite"));
    assert_int_equal(flow__store_open("flow.db", &s, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "sqlite"));
    assert_int_equal(flow__store_open("sqlite:", &s, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "has no path"));
    assert_int_equal(flow__store_open("sqlite:/tmp/x.db?fast=yes", &s, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "unknown option 'fast=yes'"));
    assert_int_equal(flow__store_open_flags("sqlite:/nonexistent-dir/x.db",
                                            FLOW__STORE_OPEN_NOCREATE, &s, &err),
                     FLOW_ENOTFOUND);
    assert_null(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
