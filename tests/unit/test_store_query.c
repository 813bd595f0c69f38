/* test_store_query.c -- what an operator's reader gets from a store: runs
 * selected by status (stopped included) and flow, newest first, limited and
 * counted, with their duration (flow_store_list_runs); a journal read as it
 * grows (flow_journal_reader_*), task names through a forced resume
 * included; foreach elements in flow_store_run; and the default store found
 * in the directories above the current one, with its checks. Real SQLite
 * files in a temp dir. */
#include "util/compat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

#include "store/handle.h"
#include "util/alloc.h"
#include "util/clock.h"

struct fixture {
    char *dir;
    flow_store *store;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    fx->dir = th_tempdir();
    char *url = flow__asprintf("sqlite:%s/flow.db", fx->dir);
    flow_error err = {0};
    fx->store = flow_store_open(url, &err);
    flow__free(url);
    if (!fx->store)
        fail_msg("open: %s", err.message);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    flow_store_close(fx->store);
    th_rmtree(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

static void append(flow_store *s, const char *id, int type, uint32_t act, uint32_t task,
                   json_t *payload)
{
    struct flow__jrec rec = {.type = (uint8_t)type, .act = act, .task = task, .time = 1000,
                             .payload = payload};
    flow_error err = {0};
    if (flow__store_append(s->backend, id, &rec, 1, 0, &err) != FLOW_OK)
        fail_msg("append %s: %s", id, err.message);
    json_decref(payload);
}

/* A run in `status` of flow `name`, created at `created` (epoch seconds),
 * ended at `ended` (0: not). */
static void make_run(flow_store *s, const char *id, const char *name, int status, double created,
                     double ended)
{
    struct flow__run_meta m = {0};
    snprintf(m.id, sizeof(m.id), "%s", id);
    m.flow = (char *)name;
    m.status = status;
    m.created_at = created;
    flow_error err = {0};
    if (flow__store_run_create(s->backend, &m, &err) != FLOW_OK)
        fail_msg("run_create %s: %s", id, err.message);
    if (ended > 0 && flow__store_run_set_status(s->backend, id, status, ended, &err) != FLOW_OK)
        fail_msg("set_status %s: %s", id, err.message);
    append(s, id, JREC_RUN_CREATED, 0, 0, json_pack("{s:s,s:[s]}", "flow", name, "tasks", "a"));
}

/* The ids of a list, "r6 r5 ..." */
static char *ids_of(json_t *runs)
{
    static char out[256];
    size_t i;
    json_t *r;
    out[0] = '\0';
    json_array_foreach(runs, i, r)
    {
        size_t n = strlen(out);
        snprintf(out + n, sizeof(out) - n, "%s%s", n ? " " : "",
                 json_string_value(json_object_get(r, "id")));
    }
    return out;
}

static json_t *list(flow_store *s, const char *status, const char *name, size_t limit,
                    size_t *matched)
{
    flow_run_query q = {.status = status, .flow = name, .limit = limit};
    flow_error err = {0};
    json_t *runs = flow_store_list_runs(s, &q, matched, &err);
    if (!runs)
        fail_msg("list: %s", err.message);
    return runs;
}

static json_t *find(json_t *runs, const char *id)
{
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        if (!strcmp(json_string_value(json_object_get(r, "id")), id))
            return r;
    }
    fail_msg("no run %s in the list", id);
    return NULL;
}

/* r1 completed (a), r2 failed (b), r3 paused (a), r4 running with a live
 * runner (us), r5 running with none (stopped), r6 cancelled (a). */
static void make_runs(flow_store *s)
{
    make_run(s, "r1", "a", FLOW_RUN_COMPLETED, 1000, 1010.5);
    make_run(s, "r2", "b", FLOW_RUN_FAILED, 1001, 1003);
    make_run(s, "r3", "a", FLOW_RUN_PAUSED, 1002, 0);
    make_run(s, "r4", "b", FLOW_RUN_RUNNING, 1003, 0);
    make_run(s, "r5", "a", FLOW_RUN_RUNNING, 1004, 0);
    make_run(s, "r6", "a", FLOW_RUN_CANCELLED, 1005, 1006);
    flow_error err = {0};
    if (flow__store_lease_acquire(s->backend, "r4", s->holder, flow__wall_time(), 60, &err) != FLOW_OK)
        fail_msg("lease: %s", err.message);
}

static void test_list_all(void **state)
{
    struct fixture *fx = *state;
    make_runs(fx->store);
    size_t matched = 0;
    json_t *runs = list(fx->store, NULL, NULL, 0, &matched);
    assert_string_equal(ids_of(runs), "r6 r5 r4 r3 r2 r1");
    assert_int_equal(matched, 6);
    assert_string_equal(json_string_value(json_object_get(find(runs, "r4"), "status")), "running");
    assert_string_equal(json_string_value(json_object_get(find(runs, "r5"), "status")), "stopped");
    assert_true(json_is_null(json_object_get(find(runs, "r5"), "runner")));
    assert_true(json_is_string(json_object_get(find(runs, "r4"), "runner")));
    /* Durations: ended - created; so far while running; null otherwise. */
    assert_true(json_number_value(json_object_get(find(runs, "r1"), "duration")) == 10.5);
    assert_true(json_number_value(json_object_get(find(runs, "r4"), "duration")) > 1e9 - 1e8);
    assert_true(json_is_null(json_object_get(find(runs, "r3"), "duration")));
    assert_true(json_is_null(json_object_get(find(runs, "r5"), "duration")));
    json_decref(runs);
    /* NULL query: the same. */
    flow_error err = {0};
    runs = flow_store_list_runs(fx->store, NULL, NULL, &err);
    assert_string_equal(ids_of(runs), "r6 r5 r4 r3 r2 r1");
    json_decref(runs);
}

static void test_list_filters(void **state)
{
    struct fixture *fx = *state;
    make_runs(fx->store);
    size_t matched = 0;
    struct {
        const char *status, *flow;
        size_t limit;
        const char *ids;
        size_t matched;
    } cases[] = {
        {"stopped", NULL, 0, "r5", 1},
        {"running", NULL, 0, "r4", 1},
        {"running,stopped", NULL, 0, "r5 r4", 2},
        {"failed,completed", NULL, 0, "r2 r1", 2},
        {" failed , ", NULL, 0, "r2", 1},
        {NULL, "a", 0, "r6 r5 r3 r1", 4},
        {"completed,stopped", "a", 0, "r5 r1", 2},
        {NULL, NULL, 2, "r6 r5", 6},
        {"running,stopped,paused", NULL, 1, "r5", 3},
        {"stopped,paused", NULL, 1, "r5", 2},
        {"running", NULL, 1, "r4", 1},
        {NULL, "nosuch", 5, "", 0},
        {"pending", NULL, 0, "", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *runs = list(fx->store, cases[i].status, cases[i].flow, cases[i].limit, &matched);
        if (strcmp(ids_of(runs), cases[i].ids) != 0 || matched != cases[i].matched)
            fail_msg("case %zu (%s, %s, %zu): got '%s' of %zu, expected '%s' of %zu", i,
                     cases[i].status ? cases[i].status : "-", cases[i].flow ? cases[i].flow : "-",
                     cases[i].limit, ids_of(runs), matched, cases[i].ids, cases[i].matched);
        json_decref(runs);
    }
}

static void test_list_bad_status(void **state)
{
    struct fixture *fx = *state;
    make_runs(fx->store);
    const char *bad[] = {"done", "failed,nope", "", ",", "RUNNING"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        flow_run_query q = {.status = bad[i]};
        flow_error err = {0};
        size_t matched = 99;
        json_t *runs = flow_store_list_runs(fx->store, &q, &matched, &err);
        assert_null(runs);
        assert_int_equal(err.code, FLOW_EINVAL);
        assert_int_equal(matched, 0);
        if (!strstr(err.message,
                    "(known: pending, running, paused, completed, failed, cancelled, stopped)"))
            fail_msg("'%s': %s", bad[i], err.message);
    }
    flow_run_query q = {.status = "failed,nope"};
    flow_error err = {0};
    assert_null(flow_store_list_runs(fx->store, &q, NULL, &err));
    assert_non_null(strstr(err.message, "unknown run status 'nope'"));
}

static const char *rec_task(json_t *recs, size_t i)
{
    return json_string_value(json_object_get(json_array_get(recs, i), "task"));
}

static void test_reader(void **state)
{
    struct fixture *fx = *state;
    flow_store *s = fx->store;
    flow_error err = {0};
    assert_null(flow_journal_reader_new(s, "nosuch", &err));
    assert_int_equal(err.code, FLOW_ENOTFOUND);

    make_run(s, "j1", "a", FLOW_RUN_RUNNING, flow__wall_time() - 100, 0); /* record 0: tasks [a] */
    append(s, "j1", JREC_ACT_CREATED, 1, 0, NULL);
    flow_journal_reader *r = flow_journal_reader_new(s, "j1", &err);
    assert_non_null(r);
    assert_null(flow_journal_reader_status(r));
    json_t *recs = flow_journal_reader_next(r, &err);
    assert_int_equal(json_array_size(recs), 2);
    assert_string_equal(rec_task(recs, 1), "a");
    assert_string_equal(flow_journal_reader_status(r), "stopped"); /* nobody runs it */
    json_decref(recs);

    recs = flow_journal_reader_next(r, &err);
    assert_non_null(recs);
    assert_int_equal(json_array_size(recs), 0);
    json_decref(recs);

    /* Only what was added; a forced resume renames the tasks, also for the
     * records of later calls. */
    append(s, "j1", JREC_ACT_STARTED, 1, 0, NULL);
    append(s, "j1", JREC_RESUMED, 0, 0, json_pack("{s:b,s:[ss]}", "forced", 1, "tasks", "x", "y"));
    append(s, "j1", JREC_ACT_CREATED, 2, 1, NULL);
    recs = flow_journal_reader_next(r, &err);
    assert_int_equal(json_array_size(recs), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(recs, 0), "seq")), 2);
    assert_string_equal(rec_task(recs, 0), "a");
    assert_string_equal(rec_task(recs, 2), "y");
    json_decref(recs);
    append(s, "j1", JREC_ACT_STARTED, 1, 0, NULL);
    recs = flow_journal_reader_next(r, &err);
    assert_int_equal(json_array_size(recs), 1);
    assert_string_equal(rec_task(recs, 0), "x");
    json_decref(recs);

    /* The same records as flow_store_journal gives. */
    json_t *all = flow_store_journal(s, "j1", &err);
    assert_int_equal(json_array_size(all), 6);
    assert_string_equal(rec_task(all, 5), "x");
    json_decref(all);

    /* The end: the status says so. */
    append(s, "j1", JREC_RUN_ENDED, 0, 0, json_pack("{s:s}", "status", "completed"));
    assert_int_equal(flow__store_run_set_status(s->backend, "j1", FLOW_RUN_COMPLETED, flow__wall_time(),
                                                &err),
                     FLOW_OK);
    recs = flow_journal_reader_next(r, &err);
    assert_int_equal(json_array_size(recs), 1);
    assert_string_equal(flow_journal_reader_status(r), "completed");
    json_decref(recs);

    /* Gone: an error, not an empty batch. */
    assert_int_equal(flow__store_run_delete(s->backend, "j1", &err), FLOW_OK);
    memset(&err, 0, sizeof(err));
    assert_null(flow_journal_reader_next(r, &err));
    assert_int_equal(err.code, FLOW_ENOTFOUND);
    flow_journal_reader_free(r);
    flow_journal_reader_free(NULL);
}

static void test_run_foreach_elements(void **state)
{
    struct fixture *fx = *state;
    flow_store *s = fx->store;
    make_run(s, "f1", "fe", FLOW_RUN_COMPLETED, 2000, 2003);
    append(s, "f1", JREC_ACT_CREATED, 1, 0, NULL);
    append(s, "f1", JREC_ACT_CREATED, 2, 0,
           json_pack("{s:s,s:i,s:i}", "input", "b.png", "parent", 1, "index", 1));
    append(s, "f1", JREC_ACT_CREATED, 3, 0,
           json_pack("{s:{s:i},s:i,s:i}", "input", "n", 7, "parent", 1, "index", 0));
    flow_error err = {0};
    json_t *run = flow_store_run(s, "f1", &err);
    assert_non_null(run);
    json_t *tasks = json_object_get(run, "tasks");
    assert_int_equal(json_array_size(tasks), 3);
    assert_null(json_object_get(json_array_get(tasks, 0), "index"));
    assert_null(json_object_get(json_array_get(tasks, 0), "item"));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(tasks, 1), "index")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(tasks, 1), "item")),
                        "b.png");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(tasks, 2), "index")), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(json_array_get(tasks, 2), "item"), "n")),
        7);
    assert_true(json_number_value(json_object_get(run, "duration")) == 3);
    json_decref(run);
}

/* The journal says a run ended before its row does (the runner writes the
 * row after the record): the run reads ended, and its duration runs to the
 * journal's end, never null beside a status that says it ended. */
static void test_run_ended_before_its_row(void **state)
{
    struct fixture *fx = *state;
    flow_store *s = fx->store;
    make_run(s, "e1", "a", FLOW_RUN_RUNNING, 2000, 0);
    struct flow__jrec rec = {.type = JREC_RUN_ENDED, .time = 2004.25,
                             .payload = json_pack("{s:s,s:i}", "status", "completed", "result", 7)};
    flow_error err = {0};
    assert_int_equal(flow__store_append(s->backend, "e1", &rec, 1, 0, &err), FLOW_OK);
    json_decref(rec.payload);
    json_t *run = flow_store_run(s, "e1", &err);
    assert_non_null(run);
    assert_string_equal(json_string_value(json_object_get(run, "status")), "completed");
    assert_int_equal(json_integer_value(json_object_get(run, "result")), 7);
    assert_non_null(json_string_value(json_object_get(run, "ended_at")));
    assert_true(json_number_value(json_object_get(run, "duration")) == 4.25);
    json_decref(run);
}

/* ---- the default store, found above ---------------------------------- */

/* Is there a `.flow` in `dir` or a directory above it? */
static bool flow_above(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s", dir);
    for (;;) {
        char probe[4200];
        struct stat st;
        snprintf(probe, sizeof(probe), "%s/.flow", strcmp(path, "/") ? path : "");
        if (lstat(probe, &st) == 0)
            return true;
        char *slash = strrchr(path, '/');
        if (!slash || slash == path) {
            if (!strcmp(path, "/"))
                return false;
            snprintf(path, sizeof(path), "/");
            continue;
        }
        *slash = '\0';
    }
}

static void test_default_found_above(void **state)
{
    struct fixture *fx = *state;
    char cwd[4096];
    char real[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_non_null(realpath(fx->dir, real));
    char *env = getenv("FLOW_STORE") ? strdup(getenv("FLOW_STORE")) : NULL;
    unsetenv("FLOW_STORE");
    char *proj = flow__asprintf("%s/proj", real);
    char *a = flow__asprintf("%s/proj/a", real);
    char *deep = flow__asprintf("%s/proj/a/b", real);
    assert_int_equal(mkdir(proj, 0700), 0);
    assert_int_equal(mkdir(a, 0700), 0);
    assert_int_equal(mkdir(deep, 0700), 0);
    assert_int_equal(chdir(deep), 0);

    bool clean = !flow_above(real);
    if (clean) /* none anywhere: the current directory */
        assert_string_equal(flow_store_default_url(), "sqlite:.flow/flow.db");

    char *proj_flow = flow__asprintf("%s/proj/.flow", real);
    assert_int_equal(mkdir(proj_flow, 0700), 0);
    char *want = flow__asprintf("sqlite:%s/flow.db", proj_flow);
    assert_string_equal(flow_store_default_url(), want);
    flow__free(want);

    /* A nearer one wins. */
    char *a_flow = flow__asprintf("%s/proj/a/.flow", real);
    assert_int_equal(mkdir(a_flow, 0700), 0);
    want = flow__asprintf("sqlite:%s/flow.db", a_flow);
    assert_string_equal(flow_store_default_url(), want);
    flow__free(want);

    /* Opened through the default: made there, not here. */
    flow_error err = {0};
    flow_store *s = flow_store_open(NULL, &err);
    assert_non_null(s);
    flow_store_close(s);
    char *db = flow__asprintf("%s/flow.db", a_flow);
    struct stat st;
    assert_int_equal(stat(db, &st), 0);
    assert_int_not_equal(stat(".flow", &st), 0);

    /* The checks hold for a .flow found above: writable by others. */
    assert_int_equal(chmod(a_flow, 0777), 0);
    memset(&err, 0, sizeof(err));
    assert_null(flow_store_open(NULL, &err));
    assert_int_equal(err.code, FLOW_EINVAL);
    if (!strstr(err.message, a_flow) || !strstr(err.message, "writable by others"))
        fail_msg("%s", err.message);
    assert_int_equal(chmod(a_flow, 0700), 0);

    /* A symbolic link found above is refused too, naming it. */
    th_rmtree(a_flow);
    assert_int_equal(symlink(proj_flow, a_flow), 0);
    memset(&err, 0, sizeof(err));
    assert_null(flow_store_open(NULL, &err));
    if (!strstr(err.message, a_flow) || !strstr(err.message, "symbolic link"))
        fail_msg("%s", err.message);
    unlink(a_flow);

    /* Here: relative, as ever. */
    assert_int_equal(mkdir(".flow", 0700), 0);
    assert_string_equal(flow_store_default_url(), "sqlite:.flow/flow.db");

    /* $FLOW_STORE wins over all. */
    setenv("FLOW_STORE", "memory:", 1);
    assert_string_equal(flow_store_default_url(), "memory:");
    if (env)
        setenv("FLOW_STORE", env, 1);
    else
        unsetenv("FLOW_STORE");
    assert_int_equal(chdir(cwd), 0);
    free(env);
    flow__free(proj);
    flow__free(a);
    flow__free(deep);
    flow__free(db);
    flow__free(proj_flow);
    flow__free(a_flow);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_list_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_bad_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_foreach_elements, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_ended_before_its_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_found_above, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
