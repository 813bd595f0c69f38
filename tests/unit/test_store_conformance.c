/* test_store_conformance.c -- one suite for every store backend:
 * the same cases against sqlite:, disk:, memory: and redis://, with real
 * files in a temp dir (redis: one real redis-server for the suite, each case
 * under a prefix of its own), reopened (the durable ones), shared with a
 * second handle and a child process (the cross-process ones), and threads
 * and processes racing to answer one request (each with its own handle
 * where the store is shared). */
#include "util/compat.h"

#include <dirent.h>
#include <pthread.h>
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

/* What each backend must do beyond the cases all of them run. */
struct expect {
    const char *backend; /* its th_backend's name */
    unsigned caps;       /* what the backend must announce */
    bool lease_by_lock;  /* leases end with their process, not by expiry */
    void (*set_format)(const struct th_store_case *fx, int format);
};

static void sqlite_set_format(const struct th_store_case *fx, int format)
{
    const char *path = fx->path;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", format);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void disk_set_format(const struct th_store_case *fx, int format)
{
    const char *path = fx->path;
    char text[64];
    snprintf(text, sizeof(text), "libflow-store %d\n", format);
    char *file = th_write_file(path, "FORMAT", text);
    assert_non_null(file);
    free(file);
}

static void redis_set_format(const struct th_store_case *fx, int format)
{
    free(th_redis_do(&th_store_redis, "SET %s:format %d", fx->prefix, format));
}

static const struct expect expects[] = {
    {"sqlite", FLOW__STORE_CAP_DURABLE | FLOW__STORE_CAP_CROSS_PROCESS, false, sqlite_set_format},
    {"disk", FLOW__STORE_CAP_DURABLE | FLOW__STORE_CAP_CROSS_PROCESS, true, disk_set_format},
    {"memory", 0, false, NULL},
    {"redis", FLOW__STORE_CAP_DURABLE | FLOW__STORE_CAP_CROSS_PROCESS, false, redis_set_format},
};

/* The expectations of the case's backend (one without any fails the case). */
static const struct expect *expected(const struct th_store_case *fx)
{
    for (size_t i = 0; i < FLOW__ARRAY_LEN(expects); i++)
        if (!strcmp(expects[i].backend, fx->b->name))
            return &expects[i];
    fail_msg("no expectations for backend %s", fx->b->name);
    return NULL;
}

static void make_run_full(struct flow__store *s, const char *id, double created_at,
                          const char *source, const char *parent)
{
    struct flow__run_meta m = {0};
    snprintf(m.id, sizeof(m.id), "%s", id);
    m.flow = (char *)"demo";
    m.version = (char *)"1.2";
    m.def_hash = (char *)"abc123";
    m.source = (char *)source;
    m.parent = (char *)parent;
    m.inputs = json_pack("{s:i, s:f, s:s}", "n", 3, "x", 0.92, "s", "h\"\xc3\xa9\n");
    m.status = FLOW_RUN_RUNNING;
    m.created_at = created_at;
    flow_error err = {0};
    flow_err rc = flow__store_run_create(s, &m, &err);
    json_decref(m.inputs);
    if (rc != FLOW_OK)
        fail_msg("run_create %s: %s", id, err.message);
}

static void make_run(struct flow__store *s, const char *id, double created_at)
{
    make_run_full(s, id, created_at, NULL, NULL);
}

static void assert_msg(const flow_error *err, const char *want)
{
    if (!strstr(err->message, want))
        fail_msg("message '%s' lacks '%s'", err->message, want);
}

/* ---- runs --------------------------------------------------------------- */

static flow_err list_cb(void *udata, const struct flow__run_meta *meta)
{
    char *ids = udata; /* char[128] */
    size_t len = strlen(ids);
    snprintf(ids + len, 128 - len, "%s,", meta->id);
    return FLOW_OK;
}

static flow_err list_stop_cb(void *udata, const struct flow__run_meta *meta)
{
    list_cb(udata, meta);
    return FLOW_ECANCELLED;
}

static void assert_list(struct flow__store *s, const char *want)
{
    char ids[128] = "";
    flow_error err = {0};
    if (flow__store_run_list(s, list_cb, ids, &err) != FLOW_OK)
        fail_msg("run_list: %s", err.message);
    assert_string_equal(ids, want);
}

static void check_r1(struct flow__store *s)
{
    struct flow__run_meta m;
    flow_error err = {0};
    if (flow__store_run_get(s, "r1", &m, &err) != FLOW_OK)
        fail_msg("run_get: %s", err.message);
    assert_string_equal(m.id, "r1");
    assert_string_equal(m.flow, "demo");
    assert_string_equal(m.version, "1.2");
    assert_string_equal(m.def_hash, "abc123");
    assert_string_equal(m.source, "flows/build.yaml");
    assert_string_equal(m.parent, "r0");
    assert_int_equal(json_integer_value(json_object_get(m.inputs, "n")), 3);
    assert_true(json_real_value(json_object_get(m.inputs, "x")) == 0.92);
    assert_string_equal(json_string_value(json_object_get(m.inputs, "s")), "h\"\xc3\xa9\n");
    assert_int_equal(m.status, FLOW_RUN_RUNNING);
    assert_true(m.created_at == 100.0);
    assert_true(m.ended_at == 0.0);
    flow__run_meta_cleanup(&m);
}

static void test_runs(void **state)
{
    struct th_store_case *fx = *state;
    assert_int_equal(fx->s->ops->caps, expected(fx)->caps);
    make_run(fx->s, "r2", 200.0);
    make_run_full(fx->s, "r1", 100.0, "flows/build.yaml", "r0");
    make_run(fx->s, "r0", 100.0); /* same time as r1: by id */
    check_r1(fx->s);

    struct flow__run_meta m;
    flow_error err = {0};
    assert_int_equal(flow__store_run_get(fx->s, "r2", &m, &err), FLOW_OK);
    assert_null(m.source);
    assert_null(m.parent);
    flow__run_meta_cleanup(&m);

    struct flow__run_meta dup = {.id = "r1", .created_at = 1};
    assert_int_equal(flow__store_run_create(fx->s, &dup, &err), FLOW_EEXISTS);
    assert_msg(&err, "run 'r1' already exists");
    if (fx->path)
        assert_msg(&err, fx->path);
    static const char *const bad[] = {"", "a/b", ".hidden", ".."};
    for (size_t i = 0; i < FLOW__ARRAY_LEN(bad); i++) {
        struct flow__run_meta b = {.created_at = 1};
        snprintf(b.id, sizeof(b.id), "%s", bad[i]);
        assert_int_equal(flow__store_run_create(fx->s, &b, &err), FLOW_EINVAL);
    }
    struct flow__run_meta longid = {.created_at = 1};
    memset(longid.id, 'a', sizeof(longid.id)); /* not NUL-terminated */
    assert_int_equal(flow__store_run_create(fx->s, &longid, &err), FLOW_EINVAL);

    assert_int_equal(flow__store_run_get(fx->s, "nope", &m, &err), FLOW_ENOTFOUND);
    assert_msg(&err, "no run 'nope'");
    assert_int_equal(flow__store_run_get(fx->s, "../x", &m, &err), FLOW_ENOTFOUND);
    assert_int_equal(flow__store_run_set_status(fx->s, "zz", FLOW_RUN_COMPLETED, 1, &err),
                     FLOW_ENOTFOUND);
    assert_msg(&err, "no run 'zz'");
    assert_int_equal(flow__store_run_delete(fx->s, "zz", &err), FLOW_ENOTFOUND);
    assert_msg(&err, "no run 'zz'");

    assert_list(fx->s, "r0,r1,r2,");
    char ids[128] = "";
    assert_int_equal(flow__store_run_list(fx->s, list_stop_cb, ids, &err), FLOW_ECANCELLED);
    assert_string_equal(ids, "r0,");

    assert_int_equal(flow__store_run_set_status(fx->s, "r2", FLOW_RUN_COMPLETED, 250.5, &err),
                     FLOW_OK);
    th_store_reopen(fx);
    assert_int_equal(flow__store_run_get(fx->s, "r2", &m, &err), FLOW_OK);
    assert_int_equal(m.status, FLOW_RUN_COMPLETED);
    assert_true(m.ended_at == 250.5);
    assert_true(m.created_at == 200.0);
    assert_non_null(m.inputs);
    assert_string_equal(m.flow, "demo");
    flow__run_meta_cleanup(&m);
    check_r1(fx->s);
    assert_list(fx->s, "r0,r1,r2,");

    assert_int_equal(flow__store_run_delete(fx->s, "r1", &err), FLOW_OK);
    assert_int_equal(flow__store_run_get(fx->s, "r1", &m, &err), FLOW_ENOTFOUND);
    assert_list(fx->s, "r0,r2,");
    th_store_reopen(fx);
    assert_list(fx->s, "r0,r2,");
    make_run_full(fx->s, "r1", 100.0, "flows/build.yaml", "r0");
    check_r1(fx->s);
}

/* ---- records -------------------------------------------------------------- */

#define NRECS 6000

static json_t *payload_for(uint64_t i)
{
    if (i % 7 == 0)
        return NULL;
    if (i % 11 == 0)
        return json_null();
    /* Runs of one payload, as a journal of no-op tasks has: readers may share their value. */
    if (i % 13 >= 9)
        return json_pack("{s:n}", "output");
    return json_pack("{s:I, s:f, s:s, s:[I,b]}", "i", (json_int_t)i, "x", (double)i * 0.1, "s",
                     "h\"\xc3\xa9\n", "l", (json_int_t)i, (int)(i % 2));
}

static struct flow__jrec rec_for(uint64_t i)
{
    return (struct flow__jrec){
        .type = (uint8_t)(1 + i % 16),
        .attempt = (uint8_t)(i % 256),
        .task = (uint32_t)i % 50,
        .act = (uint32_t)i * 3,
        .src = (uint32_t)i / 2,
        .time = 1700000000.25 + (double)i * 0.001,
        .payload = payload_for(i),
    };
}

/* Append records [first, first + n) of the reference sequence. */
static void append_range(struct flow__store *s, const char *run, uint64_t first, size_t n,
                         unsigned flags)
{
    struct flow__jrec *batch = calloc(n ? n : 1, sizeof(*batch));
    for (size_t k = 0; k < n; k++)
        batch[k] = rec_for(first + k);
    flow_error err = {0};
    flow_err rc = flow__store_append(s, run, batch, n, flags, &err);
    for (size_t k = 0; k < n; k++)
        json_decref(batch[k].payload);
    free(batch);
    if (rc != FLOW_OK)
        fail_msg("append %zu at %llu: %s", n, (unsigned long long)first, err.message);
}

struct reader {
    uint64_t next;
    uint64_t count;
    uint64_t stop_at; /* stop (FLOW_ECANCELLED) after this many, or 0 */
};

static flow_err read_cb(void *udata, uint64_t seq, const struct flow__jrec *rec)
{
    struct reader *r = udata;
    assert_int_equal(seq, r->next);
    struct flow__jrec want = rec_for(seq);
    assert_int_equal(rec->type, want.type);
    assert_int_equal(rec->act, want.act);
    assert_int_equal(rec->task, want.task);
    assert_int_equal(rec->attempt, want.attempt);
    assert_int_equal(rec->src, want.src);
    assert_true(rec->time == want.time);
    if (!want.payload)
        assert_null(rec->payload);
    else if (!rec->payload || !json_equal(want.payload, rec->payload))
        fail_msg("payload of record %llu differs", (unsigned long long)seq);
    json_decref(want.payload);
    r->next++;
    r->count++;
    if (r->stop_at && r->count == r->stop_at)
        return FLOW_ECANCELLED;
    return FLOW_OK;
}

static void read_all(struct flow__store *s, const char *run, uint64_t from, uint64_t expect)
{
    struct reader r = {.next = from};
    flow_error err = {0};
    flow_err rc = flow__store_read(s, run, from, read_cb, &r, &err);
    if (rc != FLOW_OK)
        fail_msg("read: %s", err.message);
    assert_int_equal(r.count, expect);
}

static void test_records(void **state)
{
    struct th_store_case *fx = *state;
    make_run(fx->s, "run", 1.0);
    flow_error err = {0};
    static const size_t sizes[] = {1, 13, 250, 2, 1000, 37};
    uint64_t total = 0;
    for (size_t b = 0; total < NRECS; b++) {
        size_t n = sizes[b % FLOW__ARRAY_LEN(sizes)];
        if (total + n > NRECS)
            n = NRECS - total;
        append_range(fx->s, "run", total, n, b % 3 == 0 ? FLOW__STORE_SYNC : 0);
        total += n;
        assert_int_equal(flow__store_commit(fx->s, "run", &err), FLOW_OK);
    }
    assert_int_equal(flow__store_append(fx->s, "run", NULL, 0, 0, &err), FLOW_OK);
    read_all(fx->s, "run", 0, NRECS);
    read_all(fx->s, "run", 4321, NRECS - 4321);
    read_all(fx->s, "run", NRECS, 0);
    read_all(fx->s, "run", NRECS + 5, 0);

    struct reader r = {.stop_at = 5};
    assert_int_equal(flow__store_read(fx->s, "run", 0, read_cb, &r, &err), FLOW_ECANCELLED);
    assert_int_equal(r.count, 5);

    struct flow__jrec one = rec_for(0);
    assert_int_equal(flow__store_read(fx->s, "ghost", 0, read_cb, &r, &err), FLOW_ENOTFOUND);
    assert_msg(&err, "no run 'ghost'");
    assert_int_equal(flow__store_append(fx->s, "ghost", &one, 1, 0, &err), FLOW_ENOTFOUND);
    assert_msg(&err, "ghost");
    assert_int_equal(flow__store_commit(fx->s, "ghost", &err),
                     fx->s->ops->commit ? FLOW_ENOTFOUND : FLOW_OK);

    /* a second run's journal is its own */
    make_run(fx->s, "other", 2.0);
    read_all(fx->s, "other", 0, 0);
    append_range(fx->s, "other", 0, 3, 0);
    read_all(fx->s, "other", 0, 3);

    if (!th_store_durable(fx))
        return;
    th_store_reopen(fx);
    read_all(fx->s, "run", 0, NRECS);
    append_range(fx->s, "run", NRECS, 10, 0); /* seqs go on after a reopen */
    read_all(fx->s, "run", 0, NRECS + 10);

    /* strict durability opens the same store */
    flow__store_close(fx->s);
    char *strict = flow__asprintf("%s%cdurability=strict", fx->url,
                                  strchr(fx->url, '?') ? '&' : '?');
    fx->s = th_store_open(strict);
    flow__free(strict);
    read_all(fx->s, "run", NRECS, 10);
    append_range(fx->s, "run", NRECS + 10, 5, 0);
    append_range(fx->s, "run", NRECS + 15, 5, FLOW__STORE_SYNC);
    th_store_reopen(fx);
    read_all(fx->s, "run", 0, NRECS + 20);
}

/* A failed append (every allocation in it failing once) changes nothing. */
static void test_append_failure(void **state)
{
    struct th_store_case *fx = *state;
    make_run(fx->s, "run", 1.0);
    append_range(fx->s, "run", 0, 20, 0);
    th_store_reopen(fx); /* cold caches: their allocations fail too */
    uint64_t have = 20;
    bool done = false;
    for (size_t k = 1; k < 10000 && !done; k++) {
        struct flow__jrec batch[40];
        for (size_t i = 0; i < FLOW__ARRAY_LEN(batch); i++)
            batch[i] = rec_for(have + i);
        flow_error err = {0};
        flow__alloc_fail_at(k);
        flow_err rc = flow__store_append(fx->s, "run", batch, FLOW__ARRAY_LEN(batch), 0, &err);
        flow__alloc_fail_at(0);
        for (size_t i = 0; i < FLOW__ARRAY_LEN(batch); i++)
            json_decref(batch[i].payload);
        if (rc == FLOW_OK) {
            done = true;
            have += FLOW__ARRAY_LEN(batch);
        } else if (!err.message[0]) {
            fail_msg("append failed (%s) without a message", flow_err_name(rc));
        }
        assert_int_equal(th_store_count(fx->s, "run"), have);
    }
    assert_true(done);
    read_all(fx->s, "run", 0, have);
    append_range(fx->s, "run", have, 3, 0);
    th_store_reopen(fx);
    read_all(fx->s, "run", 0, have + 3);
}

/* Two handles take turns appending to one run (a lease handed over): each
 * sees what the other wrote. */
static void test_two_writers(void **state)
{
    struct th_store_case *fx = *state;
    if (!th_store_shared(fx))
        skip();
    make_run(fx->s, "run", 1.0);
    struct flow__store *s2 = th_store_open(fx->url);
    uint64_t total = 0;
    for (int turn = 0; turn < 6; turn++) {
        size_t n = (size_t)(turn + 1) * 3;
        append_range(turn % 2 ? s2 : fx->s, "run", total, n, 0);
        total += n;
    }
    read_all(fx->s, "run", 0, total);
    read_all(s2, "run", 0, total);
    /* deleted and made again elsewhere: the journal starts over */
    flow_error err = {0};
    assert_int_equal(flow__store_run_delete(s2, "run", &err), FLOW_OK);
    make_run(s2, "run", 5.0);
    append_range(fx->s, "run", 0, 4, 0);
    read_all(s2, "run", 0, 4);
    flow__store_close(s2);
}

/* ---- leases --------------------------------------------------------------- */

#define NOW 1700000000.0
#define OTHER "1@elsewhere.invalid"

static void test_leases(void **state)
{
    struct th_store_case *fx = *state;
    struct flow__store *s = fx->s;
    flow_error err = {0};
    assert_int_equal(flow__store_lease_acquire(s, "ghost", fx->me, NOW, 15, &err), FLOW_ENOTFOUND);
    assert_msg(&err, "no run 'ghost'");
    assert_int_equal(flow__store_lease_release(s, "ghost", fx->me, &err), FLOW_OK);
    make_run(s, "r", 1.0);

    char host[256];
    assert_int_equal(gethostname(host, sizeof(host)), 0);
    char *busy_me = flow__asprintf("run 'r' is being executed by pid %ld on host %s",
                                   (long)getpid(), host);

    char *holder = (char *)"unset";
    assert_int_equal(flow__store_lease_get(s, "r", NOW, &holder, &err), FLOW_OK);
    assert_null(holder); /* nobody yet */
    assert_int_equal(flow__store_lease_get(s, "ghost", NOW, &holder, &err), FLOW_ENOTFOUND);
    assert_int_equal(flow__store_lease_acquire(s, "r", fx->me, NOW, 15, &err), FLOW_OK);
    assert_int_equal(flow__store_lease_get(s, "r", NOW + 1, &holder, &err), FLOW_OK);
    assert_non_null(holder);
    assert_string_equal(holder, fx->me);
    flow__free(holder);
    assert_int_equal(flow__store_lease_acquire(s, "r", OTHER, NOW + 1, 15, &err), FLOW_EBUSY);
    assert_msg(&err, busy_me);
    if (expected(fx)->lease_by_lock)
        assert_null(strstr(err.message, "(lease"));
    else
        assert_msg(&err, "(lease expires in 14s)");
    /* renewal */
    assert_int_equal(flow__store_lease_acquire(s, "r", fx->me, NOW + 2, 15, &err), FLOW_OK);
    /* another's release does nothing */
    assert_int_equal(flow__store_lease_release(s, "r", OTHER, &err), FLOW_OK);
    assert_int_equal(flow__store_lease_acquire(s, "r", OTHER, NOW + 3, 15, &err), FLOW_EBUSY);
    assert_int_equal(flow__store_lease_release(s, "r", fx->me, &err), FLOW_OK);
    assert_int_equal(flow__store_lease_release(s, "r", fx->me, &err), FLOW_OK);
    assert_int_equal(flow__store_lease_get(s, "r", NOW + 3, &holder, &err), FLOW_OK);
    assert_null(holder); /* released */
    assert_int_equal(flow__store_lease_acquire(s, "r", OTHER, NOW + 3, 15, &err), FLOW_OK);
    assert_int_equal(flow__store_lease_acquire(s, "r", fx->me, NOW + 4, 15, &err), FLOW_EBUSY);
    assert_msg(&err, "run 'r' is being executed by pid 1 on host elsewhere.invalid");

    if (!expected(fx)->lease_by_lock) {
        /* expired */
        assert_int_equal(flow__store_lease_acquire(s, "r", fx->me, NOW + 19, 15, &err), FLOW_OK);
        /* held by a process of this host that does not exist */
        char *dead = flow__asprintf("2147483646@%s", host);
        assert_int_equal(flow__store_lease_release(s, "r", fx->me, &err), FLOW_OK);
        assert_int_equal(flow__store_lease_acquire(s, "r", dead, NOW + 20, 15, &err), FLOW_OK);
        assert_int_equal(flow__store_lease_acquire(s, "r", fx->me, NOW + 21, 15, &err), FLOW_OK);
        flow__free(dead);
    } else {
        assert_int_equal(flow__store_lease_release(s, "r", OTHER, &err), FLOW_OK);
        assert_int_equal(flow__store_lease_acquire(s, "r", fx->me, NOW + 21, 15, &err), FLOW_OK);
    }

    if (th_store_shared(fx)) {
        /* a second handle is another holder's view of the same lease */
        struct flow__store *s2 = th_store_open(fx->url);
        assert_int_equal(flow__store_lease_acquire(s2, "r", OTHER, NOW + 22, 15, &err),
                         FLOW_EBUSY);
        assert_msg(&err, busy_me);
        assert_int_equal(flow__store_lease_release(s, "r", fx->me, &err), FLOW_OK);
        assert_int_equal(flow__store_lease_acquire(s2, "r", OTHER, NOW + 23, 15, &err), FLOW_OK);
        assert_int_equal(flow__store_lease_acquire(s, "r", fx->me, NOW + 24, 15, &err),
                         FLOW_EBUSY);
        assert_msg(&err, "pid 1 on host elsewhere.invalid");
        flow__store_close(s2);
        /* a lock ends with its handle; a lease in a table lasts until it expires */
        assert_int_equal(flow__store_lease_acquire(s, "r", fx->me, NOW + 25, 15, &err),
                         expected(fx)->lease_by_lock ? FLOW_OK : FLOW_EBUSY);
        assert_int_equal(flow__store_lease_acquire(s, "r", fx->me, NOW + 40, 15, &err), FLOW_OK);
    }

    /* deleting a run ends its lease */
    assert_int_equal(flow__store_run_delete(s, "r", &err), FLOW_OK);
    assert_int_equal(flow__store_lease_acquire(s, "r", OTHER, NOW + 41, 15, &err),
                     FLOW_ENOTFOUND);
    make_run(s, "r", 1.0);
    assert_int_equal(flow__store_lease_acquire(s, "r", OTHER, NOW + 42, 15, &err), FLOW_OK);
    flow__free(busy_me);
}

/* A lease held by a child process: refused while it lives, free once it is
 * killed (sqlite: its pid is gone; disk: its flock went with it). */
static void test_lease_child(void **state)
{
    struct th_store_case *fx = *state;
    if (!th_store_shared(fx))
        skip();
    make_run(fx->s, "r", 1.0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        struct flow__store *s = NULL;
        flow_error err = {0};
        char holder[300];
        flow__lease_holder(holder, sizeof(holder));
        flow_err rc = flow__store_open(fx->url, &s, &err);
        if (rc == FLOW_OK)
            rc = flow__store_lease_acquire(s, "r", holder, flow__wall_time(), 15, &err);
        char ok = rc == FLOW_OK ? 'y' : 'n';
        ssize_t w = write(fds[1], &ok, 1);
        (void)w;
        if (rc != FLOW_OK) {
            w = write(fds[1], err.message, strlen(err.message));
            _exit(1);
        }
        for (;;)
            pause(); /* holds the lease until killed */
    }
    close(fds[1]);
    char msg[600] = "";
    ssize_t n = read(fds[0], msg, sizeof(msg) - 1);
    if (n <= 0 || msg[0] != 'y') {
        ssize_t more = read(fds[0], msg + (n > 0 ? n : 0), sizeof(msg) - 1 - (size_t)(n > 0 ? n : 0));
        (void)more;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("child: %s", msg);
    }
    close(fds[0]);

    flow_error err = {0};
    assert_int_equal(flow__store_lease_acquire(fx->s, "r", fx->me, flow__wall_time(), 15, &err),
                     FLOW_EBUSY);
    char *want = flow__asprintf("is being executed by pid %ld on host", (long)pid);
    assert_msg(&err, want);
    flow__free(want);

    assert_int_equal(kill(pid, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    if (flow__store_lease_acquire(fx->s, "r", fx->me, flow__wall_time(), 15, &err) != FLOW_OK)
        fail_msg("after the child died: %s", err.message);
}

/* ---- control requests ------------------------------------------------------ */

static void take_is(struct flow__store *s, const char *run, const char *kind, const char *arg)
{
    char *k = (char *)"unset", *a = (char *)"unset";
    flow_error err = {0};
    if (flow__store_control_take(s, run, &k, &a, &err) != FLOW_OK)
        fail_msg("control_take: %s", err.message);
    if (!kind)
        assert_null(k);
    else if (!k || strcmp(k, kind) != 0)
        fail_msg("kind '%s', want '%s'", k ? k : "(null)", kind);
    if (!arg)
        assert_null(a);
    else if (!a || strcmp(a, arg) != 0)
        fail_msg("arg '%s', want '%s'", a ? a : "(null)", arg);
    flow__free(k);
    flow__free(a);
}

static void put_ok(struct flow__store *s, const char *run, const char *kind, const char *arg)
{
    flow_error err = {0};
    if (flow__store_control_put(s, run, kind, arg, &err) != FLOW_OK)
        fail_msg("control_put: %s", err.message);
}

static void test_control(void **state)
{
    struct th_store_case *fx = *state;
    flow_error err = {0};
    assert_int_equal(flow__store_control_put(fx->s, "ghost", "pause", NULL, &err),
                     FLOW_ENOTFOUND);
    assert_msg(&err, "no run 'ghost'");
    take_is(fx->s, "ghost", NULL, NULL);

    make_run(fx->s, "r", 1.0);
    make_run(fx->s, "q", 2.0);
    take_is(fx->s, "r", NULL, NULL);
    put_ok(fx->s, "r", "pause", "first");
    put_ok(fx->s, "q", "cancel", "for q");
    put_ok(fx->s, "r", "cancel", NULL);
    put_ok(fx->s, "r", "pause", "third, with \"quotes\"\n");
    take_is(fx->s, "r", "pause", "first");
    th_store_reopen(fx);
    take_is(fx->s, "r", "cancel", NULL);
    put_ok(fx->s, "r", "cancel", "fourth");
    take_is(fx->s, "r", "pause", "third, with \"quotes\"\n");
    take_is(fx->s, "r", "cancel", "fourth");
    take_is(fx->s, "r", NULL, NULL);
    take_is(fx->s, "q", "cancel", "for q");
    take_is(fx->s, "q", NULL, NULL);

    if (th_store_shared(fx)) {
        struct flow__store *s2 = th_store_open(fx->url);
        put_ok(s2, "r", "pause", "from another handle");
        put_ok(s2, "r", "cancel", "second");
        take_is(fx->s, "r", "pause", "from another handle");
        take_is(s2, "r", "cancel", "second");
        take_is(fx->s, "r", NULL, NULL);
        flow__store_close(s2);
    }

    /* requests go with their run */
    put_ok(fx->s, "r", "pause", NULL);
    assert_int_equal(flow__store_run_delete(fx->s, "r", &err), FLOW_OK);
    take_is(fx->s, "r", NULL, NULL);
    make_run(fx->s, "r", 1.0);
    take_is(fx->s, "r", NULL, NULL);
}

/* ---- answers --------------------------------------------------------------- */

static json_t *answer_by(const char *by)
{
    return json_pack("{s:b, s:s, s:s}", "approved", 1, "by", by, "at",
                     "2030-01-02T03:04:05.000Z");
}

/* Claim `request` of `run` for `by`; the code, with the winner's name in
 * `first` (when given) on FLOW_EEXISTS. */
static flow_err claim(struct flow__store *s, const char *run, const char *request, const char *by,
                      double not_after, char *first, flow_error *err)
{
    json_t *a = answer_by(by);
    json_t *winner = (json_t *)"unset";
    flow_err rc = flow__store_answer_claim(s, run, request, a, not_after, &winner, err);
    json_decref(a);
    if (rc == FLOW_EEXISTS) {
        assert_non_null(winner);
        if (first)
            snprintf(first, 64, "%s", json_string_value(json_object_get(winner, "by")));
        json_decref(winner);
    } else {
        assert_null(winner);
    }
    return rc;
}

static void claim_ok(struct flow__store *s, const char *run, const char *request, const char *by)
{
    flow_error err = {0};
    if (claim(s, run, request, by, 0, NULL, &err) != FLOW_OK)
        fail_msg("claim %s of %s: %s", request, run, err.message);
}

/* The answers of `run` as "request=by," sorted by request. */
static void assert_answers(struct flow__store *s, const char *run, const char *want)
{
    json_t *all = NULL;
    flow_error err = {0};
    if (flow__store_answer_list(s, run, &all, &err) != FLOW_OK)
        fail_msg("answer_list %s: %s", run, err.message);
    const char *keys[64];
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(all, k, v)
    {
        assert_true(n < 64);
        keys[n++] = k;
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
            const char *t = keys[j];
            keys[j] = keys[j - 1];
            keys[j - 1] = t;
        }
    char got[4096] = "";
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_object_get(all, keys[i]);
        assert_true(json_is_true(json_object_get(a, "approved")));
        size_t len = strlen(got);
        snprintf(got + len, sizeof(got) - len, "%s=%s,", keys[i],
                 json_string_value(json_object_get(a, "by")));
    }
    json_decref(all);
    assert_string_equal(got, want);
}

static void test_answers(void **state)
{
    struct th_store_case *fx = *state;
    flow_error err = {0};
    char first[64] = "";
    json_t *none = NULL;
    assert_int_equal(claim(fx->s, "ghost", "go", "ann", 0, NULL, &err), FLOW_ENOTFOUND);
    assert_msg(&err, "no run 'ghost'");
    assert_int_equal(flow__store_answer_list(fx->s, "ghost", &none, &err), FLOW_ENOTFOUND);
    assert_null(none);

    make_run(fx->s, "r", 1.0);
    make_run(fx->s, "q", 2.0);
    assert_answers(fx->s, "r", "");
    claim_ok(fx->s, "r", "go", "ann");
    assert_int_equal(claim(fx->s, "r", "go", "bob", 0, first, &err), FLOW_EEXISTS);
    assert_string_equal(first, "ann");
    assert_msg(&err, "request 'go' of run 'r' was already answered by ann at "
                     "2030-01-02T03:04:05.000Z");
    json_t *a = answer_by("bob");
    assert_int_equal(flow__store_answer_claim(fx->s, "r", "go", a, 0, NULL, &err), FLOW_EEXISTS);
    json_decref(a);
    claim_ok(fx->s, "q", "go", "bob"); /* another run's request of the same name */

    /* a deadline: refused once it has passed, by the store's clock */
    double now = flow__wall_time();
    assert_int_equal(claim(fx->s, "r", "late", "ann", now - 1, NULL, &err), FLOW_ETIMEOUT);
    assert_msg(&err, "request 'late' of run 'r' expired at ");
    assert_answers(fx->s, "r", "go=ann,"); /* nothing recorded */
    claim_ok(fx->s, "r", "late", "timeout"); /* the timeout's own answer has no deadline */
    assert_int_equal(claim(fx->s, "r", "soon", "ann", now + 3600, NULL, &err), FLOW_OK);
    /* an answered request stays answered, deadline or not */
    assert_int_equal(claim(fx->s, "r", "soon", "bob", now - 1, first, &err), FLOW_EEXISTS);
    assert_string_equal(first, "ann");

    /* ids that are not plain names stay apart */
    char long1[301], long2[301];
    memset(long1, 'x', 300);
    long1[300] = '\0';
    memcpy(long2, long1, sizeof(long2));
    long2[299] = 'y';
    static const char *const odd[] = {"a/b", "a%2Fb", ".hidden", "..", "caf\xc3\xa9", "a b"};
    for (size_t i = 0; i < FLOW__ARRAY_LEN(odd); i++)
        claim_ok(fx->s, "q", odd[i], odd[i]);
    claim_ok(fx->s, "q", long1, "long1");
    claim_ok(fx->s, "q", long2, "long2");
    assert_int_equal(claim(fx->s, "q", long1, "bob", 0, first, &err), FLOW_EEXISTS);
    assert_string_equal(first, "long1");
    assert_int_equal(claim(fx->s, "q", "a/b", "bob", 0, first, &err), FLOW_EEXISTS);
    assert_string_equal(first, "a/b");
    char *want = flow__asprintf("..=..,.hidden=.hidden,a b=a b,a%%2Fb=a%%2Fb,a/b=a/b,"
                                "caf\xc3\xa9=caf\xc3\xa9,go=bob,%s=long1,%s=long2,",
                                long1, long2);

    th_store_reopen(fx);
    assert_answers(fx->s, "r", "go=ann,late=timeout,soon=ann,");
    assert_answers(fx->s, "q", want);
    flow__free(want);
    assert_int_equal(claim(fx->s, "r", "go", "bob", 0, first, &err), FLOW_EEXISTS);
    assert_string_equal(first, "ann");
    if (th_store_shared(fx)) {
        struct flow__store *s2 = th_store_open(fx->url);
        assert_int_equal(claim(s2, "r", "go", "eve", 0, first, &err), FLOW_EEXISTS);
        assert_string_equal(first, "ann");
        claim_ok(s2, "r", "other", "eve");
        flow__store_close(s2);
        assert_answers(fx->s, "r", "go=ann,late=timeout,other=eve,soon=ann,");
    }

    /* answers go with their run */
    assert_int_equal(flow__store_run_delete(fx->s, "r", &err), FLOW_OK);
    assert_int_equal(claim(fx->s, "r", "go", "bob", 0, NULL, &err), FLOW_ENOTFOUND);
    make_run(fx->s, "r", 3.0);
    assert_answers(fx->s, "r", "");
    claim_ok(fx->s, "r", "go", "bob");
    assert_answers(fx->s, "r", "go=bob,");
}

#define RACERS 6
#define ROUNDS 25

struct racer {
    struct th_store_case *fx;
    struct flow__store *s;
    pthread_mutex_t *shared_mu; /* a memory store: one handle, calls serialized */
    pthread_barrier_t *start;
    char name[16];
    flow_err rc[ROUNDS];
    char first[ROUNDS][600]; /* whom a refusal named, or the error */
};

static void *race_main(void *arg)
{
    struct racer *r = arg;
    for (int k = 0; k < ROUNDS; k++) {
        char request[32];
        snprintf(request, sizeof(request), "q%d", k);
        pthread_barrier_wait(r->start);
        json_t *a = answer_by(r->name);
        json_t *winner = NULL;
        flow_error err = {0};
        if (r->shared_mu)
            pthread_mutex_lock(r->shared_mu);
        r->rc[k] = flow__store_answer_claim(r->s, "race", request, a, 0, &winner, &err);
        if (r->shared_mu)
            pthread_mutex_unlock(r->shared_mu);
        snprintf(r->first[k], sizeof(r->first[k]), "%s",
                 winner ? json_string_value(json_object_get(winner, "by")) : err.message);
        json_decref(winner);
        json_decref(a);
    }
    return NULL;
}

/* Threads answer the same requests at the same instant: each time exactly
 * one is taken, and every other one is refused naming it. */
static void test_answer_race(void **state)
{
    struct th_store_case *fx = *state;
    make_run(fx->s, "race", 1.0);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, RACERS);
    struct racer racers[RACERS];
    pthread_t threads[RACERS];
    memset(racers, 0, sizeof(racers));
    for (int i = 0; i < RACERS; i++) {
        racers[i].fx = fx;
        racers[i].s = th_store_shared(fx) ? th_store_open(fx->url) : fx->s;
        racers[i].shared_mu = th_store_shared(fx) ? NULL : &mu;
        racers[i].start = &start;
        snprintf(racers[i].name, sizeof(racers[i].name), "t%d", i);
        assert_int_equal(pthread_create(&threads[i], NULL, race_main, &racers[i]), 0);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
    json_t *all = NULL;
    assert_int_equal(flow__store_answer_list(fx->s, "race", &all, NULL), FLOW_OK);
    for (int k = 0; k < ROUNDS; k++) {
        int winners = 0;
        const char *won = NULL;
        for (int i = 0; i < RACERS; i++) {
            if (racers[i].rc[k] == FLOW_OK) {
                winners++;
                won = racers[i].name;
            } else if (racers[i].rc[k] != FLOW_EEXISTS) {
                fail_msg("round %d, %s: code %d: %s", k, racers[i].name, racers[i].rc[k],
                         racers[i].first[k]);
            }
        }
        if (winners != 1)
            fail_msg("round %d: %d answers taken", k, winners);
        for (int i = 0; i < RACERS; i++)
            if (racers[i].rc[k] == FLOW_EEXISTS && strcmp(racers[i].first[k], won) != 0)
                fail_msg("round %d: %s was told '%s' won, not %s", k, racers[i].name,
                         racers[i].first[k], won);
        char request[32];
        snprintf(request, sizeof(request), "q%d", k);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(all, request), "by")), won);
    }
    json_decref(all);
    for (int i = 0; i < RACERS; i++)
        if (racers[i].s != fx->s)
            flow__store_close(racers[i].s);
}

#define PROCS 4

/* One racing process: waits for the start (the pipe closing), claims
 * requests p0.. and writes one line per round: "OK" or the winner's name. */
static void race_child(const char *url, int start_fd, int out_fd, int me)
{
    char buf[1];
    ssize_t got = read(start_fd, buf, 1); /* EOF: go */
    (void)got;
    struct flow__store *s = NULL;
    flow_error err = {0};
    if (flow__store_open(url, &s, &err) != FLOW_OK)
        _exit(2);
    char name[16];
    snprintf(name, sizeof(name), "p%d", me);
    for (int k = 0; k < ROUNDS; k++) {
        char request[32], line[128];
        snprintf(request, sizeof(request), "p%d", k);
        json_t *a = answer_by(name);
        json_t *winner = NULL;
        flow_err rc = flow__store_answer_claim(s, "race", request, a, 0, &winner, &err);
        snprintf(line, sizeof(line), "%s\n",
                 rc == FLOW_OK       ? "OK"
                 : rc == FLOW_EEXISTS ? json_string_value(json_object_get(winner, "by"))
                                     : "ERROR");
        json_decref(winner);
        json_decref(a);
        if (write(out_fd, line, strlen(line)) < 0)
            _exit(3);
    }
    flow__store_close(s);
    _exit(0);
}

/* Processes answer the same requests at the same instant, each through its
 * own handle: each time exactly one is taken, the others are told whose. */
static void test_answer_race_procs(void **state)
{
    struct th_store_case *fx = *state;
    if (!th_store_shared(fx))
        skip();
    make_run(fx->s, "race", 1.0);
    int start[2];
    assert_int_equal(pipe(start), 0);
    int outs[PROCS];
    pid_t pids[PROCS];
    for (int i = 0; i < PROCS; i++) {
        int out[2];
        assert_int_equal(pipe(out), 0);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(start[1]);
            close(out[0]);
            race_child(fx->url, start[0], out[1], i);
        }
        close(out[1]);
        outs[i] = out[0];
    }
    close(start[0]);
    close(start[1]); /* go */
    char lines[PROCS][ROUNDS][32];
    for (int i = 0; i < PROCS; i++) {
        FILE *f = fdopen(outs[i], "r");
        for (int k = 0; k < ROUNDS; k++) {
            if (!fgets(lines[i][k], sizeof(lines[i][k]), f))
                fail_msg("racer %d stopped at round %d", i, k);
            lines[i][k][strcspn(lines[i][k], "\n")] = '\0';
        }
        fclose(f);
        int st;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    json_t *all = NULL;
    assert_int_equal(flow__store_answer_list(fx->s, "race", &all, NULL), FLOW_OK);
    for (int k = 0; k < ROUNDS; k++) {
        char request[32], won[16] = "";
        snprintf(request, sizeof(request), "p%d", k);
        int winners = 0;
        for (int i = 0; i < PROCS; i++)
            if (!strcmp(lines[i][k], "OK")) {
                winners++;
                snprintf(won, sizeof(won), "p%d", i);
            }
        if (winners != 1)
            fail_msg("round %d: %d answers taken", k, winners);
        for (int i = 0; i < PROCS; i++)
            if (strcmp(lines[i][k], "OK") != 0 && strcmp(lines[i][k], won) != 0)
                fail_msg("round %d: p%d was told '%s', not %s", k, i, lines[i][k], won);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(all, request), "by")), won);
    }
    json_decref(all);
}

/* ---- delete --------------------------------------------------------------- */

static void test_delete(void **state)
{
    struct th_store_case *fx = *state;
    flow_error err = {0};
    make_run(fx->s, "keep", 1.0);
    make_run(fx->s, "gone", 2.0);
    append_range(fx->s, "keep", 0, 5, 0);
    append_range(fx->s, "gone", 0, 50, 0);
    assert_int_equal(flow__store_lease_acquire(fx->s, "gone", fx->me, NOW, 15, &err), FLOW_OK);
    put_ok(fx->s, "gone", "pause", NULL);

    assert_int_equal(flow__store_run_delete(fx->s, "gone", &err), FLOW_OK);
    assert_int_equal(flow__store_run_delete(fx->s, "gone", &err), FLOW_ENOTFOUND);
    struct flow__run_meta m;
    assert_int_equal(flow__store_run_get(fx->s, "gone", &m, &err), FLOW_ENOTFOUND);
    struct reader r = {0};
    assert_int_equal(flow__store_read(fx->s, "gone", 0, read_cb, &r, &err), FLOW_ENOTFOUND);
    struct flow__jrec one = rec_for(0);
    assert_int_equal(flow__store_append(fx->s, "gone", &one, 1, 0, &err), FLOW_ENOTFOUND);
    assert_int_equal(flow__store_run_set_status(fx->s, "gone", 1, 0, &err), FLOW_ENOTFOUND);
    assert_list(fx->s, "keep,");
    read_all(fx->s, "keep", 0, 5);

    /* the same id again is a new run with an empty journal */
    make_run(fx->s, "gone", 3.0);
    read_all(fx->s, "gone", 0, 0);
    append_range(fx->s, "gone", 0, 2, 0);
    read_all(fx->s, "gone", 0, 2);
    th_store_reopen(fx);
    read_all(fx->s, "gone", 0, 2);
    assert_list(fx->s, "keep,gone,");
}

/* ---- files and formats ----------------------------------------------------- */

/* Every directory under `path` is 0700 and every file 0600. */
static void check_modes(const char *path, int *files)
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
        if (S_ISDIR(st.st_mode)) {
            if ((st.st_mode & 0777) != 0700)
                fail_msg("directory %s has mode %o", sub, (unsigned)(st.st_mode & 0777));
            check_modes(sub, files);
        } else {
            if ((st.st_mode & 0777) != 0600)
                fail_msg("file %s has mode %o", sub, (unsigned)(st.st_mode & 0777));
            (*files)++;
        }
        flow__free(sub);
    }
    closedir(d);
}

static void test_modes(void **state)
{
    struct th_store_case *fx = *state;
    if (!fx->b->rel)
        skip(); /* no files */
    flow__store_close(fx->s);
    th_rmtree(fx->dir);
    assert_int_equal(mkdir(fx->dir, 0700), 0);
    mode_t old = umask(0);
    fx->s = th_store_open(fx->url);
    flow_error err = {0};
    make_run(fx->s, "m", 1.0);
    append_range(fx->s, "m", 0, 3, FLOW__STORE_SYNC);
    assert_int_equal(flow__store_lease_acquire(fx->s, "m", fx->me, NOW, 15, &err), FLOW_OK);
    put_ok(fx->s, "m", "pause", "x");
    claim_ok(fx->s, "m", "go", "ann");
    assert_int_equal(flow__store_run_set_status(fx->s, "m", FLOW_RUN_PAUSED, 0, &err), FLOW_OK);
    umask(old);
    int files = 0;
    check_modes(fx->dir, &files);
    assert_true(files >= 2);
}

static void test_newer_format(void **state)
{
    struct th_store_case *fx = *state;
    if (!expected(fx)->set_format)
        skip();
    make_run(fx->s, "r", 1.0);
    flow__store_close(fx->s);
    fx->s = NULL;
    expected(fx)->set_format(fx, 2);
    flow_error err = {0};
    assert_int_equal(flow__store_open(fx->url, &fx->s, &err), FLOW_EUNSUPPORTED);
    assert_null(fx->s);
    char *want = flow__asprintf("store '%s' has format 2; this libflow understands up to 1: "
                                "upgrade libflow",
                                fx->path);
    assert_msg(&err, want);
    flow__free(want);
    /* and the same format again opens */
    expected(fx)->set_format(fx, 1);
    fx->s = th_store_open(fx->url);
    assert_list(fx->s, "r,");
}

static void test_nocreate(void **state)
{
    struct th_store_case *fx = *state;
    char prefix[32];
    char *url = fx->b->redis ? th_store_redis_url(prefix, sizeof(prefix))
                : fx->path   ? flow__asprintf("%s:%s/none/store", fx->b->name, fx->dir)
                             : flow__asprintf("%s", fx->url);
    struct flow__store *s = NULL;
    flow_error err = {0};
    assert_int_equal(flow__store_open_flags(url, FLOW__STORE_OPEN_NOCREATE, &s, &err),
                     FLOW_ENOTFOUND);
    assert_null(s);
    assert_msg(&err, "no store");
    flow__free(url);
    if (fx->path) {
        /* an existing store opens */
        s = NULL;
        assert_int_equal(flow__store_open_flags(fx->url, FLOW__STORE_OPEN_NOCREATE, &s, &err),
                         FLOW_OK);
        flow__store_close(s);
    }
}

#define CONFORMANCE(X)                                                                           \
    X(test_runs)                                                                                 \
    X(test_records)                                                                              \
    X(test_append_failure)                                                                       \
    X(test_two_writers)                                                                          \
    X(test_leases)                                                                               \
    X(test_lease_child)                                                                          \
    X(test_control)                                                                              \
    X(test_answers)                                                                              \
    X(test_answer_race)                                                                          \
    X(test_answer_race_procs)                                                                    \
    X(test_delete)                                                                               \
    X(test_modes)                                                                                \
    X(test_newer_format)                                                                         \
    X(test_nocreate)

int main(void)
{
#define ROW(fn) cmocka_unit_test_setup_teardown(fn, th_store_setup, th_store_teardown),
    const struct CMUnitTest suite[] = {CONFORMANCE(ROW)};
#undef ROW
    /* every write to redis fsync'ed, so that FLOW__STORE_SYNC and
     * ?durability=strict are accepted */
    return th_store_suites('t', "appendfsync always", suite, FLOW__ARRAY_LEN(suite));
}
