/* test_journal.c -- the journal a run writes: every record in the order
 * things happened, with what replay needs (sources of each activation), read
 * back from a real SQLite store; a run with no store keeps none. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/engine.h"
#include "store/handle.h"

/* The records of the run under test, read back from its store. */
static struct flow__jrec *recs;
static size_t nrecs;
static const struct flow *flow_of_recs;

static int noop_fn(flow_ctx *ctx)
{
    (void)ctx;
    return 0;
}

/* The position of the first record of `type` for task `name` (fails the
 * test when there is none). */
static size_t find_at(int type, const char *name)
{
    for (size_t i = 0; i < nrecs; i++) {
        const struct flow__jrec *rec = &recs[i];
        if (rec->type == type && rec->act &&
            !strcmp(flow_of_recs->tasks.items[rec->task]->name, name))
            return i;
    }
    fail_msg("no record of type %d for task '%s'", type, name);
    return 0;
}

static const struct flow__jrec *find(int type, const char *name)
{
    return &recs[find_at(type, name)];
}

static void test_records_carry_sources_in_order(void **state)
{
    (void)state;
    flow_engine *e = flow_engine_new(&(flow_engine_options){.jobs = 2}, NULL);
    flow *f = flow_new("diamond", NULL);
    flow_task *a = th_add(f, "a", noop_fn);
    flow_task *b = th_add(f, "b", noop_fn);
    flow_task *c = th_add(f, "c", noop_fn);
    flow_task *d = th_add(f, "d", noop_fn);
    flow_task_after(b, a);
    flow_task_after(c, a);
    flow_task_after(d, b);
    flow_task_after(d, c);
    char dir[] = "/tmp/test_journal_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char url[128];
    snprintf(url, sizeof(url), "sqlite://%s/flow.db", dir);
    flow_error err = {0};
    flow_store *store = flow_store_open(url, &err);
    assert_non_null(store);
    json_t *in = json_pack("{s:i}", "x", 1);
    flow_run_options o = {.run_id = "diamond-1", .store = store, .inputs = in};
    flow_run *r = flow_run_start(e, f, &o, &err);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    flow_run_free(r);
    assert_int_equal(flow__store_read_all(store, "diamond-1", &recs, &nrecs, NULL), FLOW_OK);
    flow_of_recs = f;

    /* the start task's explicit input, one source in the record, several
     * in the payload */
    const struct flow__jrec *ca = find(JREC_ACT_CREATED, "a");
    const struct flow__jrec *cb = find(JREC_ACT_CREATED, "b");
    const struct flow__jrec *cd = find(JREC_ACT_CREATED, "d");
    assert_non_null(ca);
    assert_true(json_equal(json_object_get(ca->payload, "input"), in));
    assert_int_equal(cb->src, ca->act);
    assert_null(cb->payload);
    json_t *srcs = json_object_get(cd->payload, "sources");
    assert_int_equal(json_array_size(srcs), 2);
    assert_int_equal(cd->src, 0);

    /* per activation: created, started, completed, in that order; the
     * run's first and last records frame everything */
    assert_int_equal(recs[0].type, JREC_RUN_CREATED);
    assert_int_equal(recs[nrecs - 1].type, JREC_RUN_ENDED);
    const char *names[] = {"a", "b", "c", "d"};
    for (int k = 0; k < 4; k++) {
        size_t cr = find_at(JREC_ACT_CREATED, names[k]);
        size_t st = find_at(JREC_ACT_STARTED, names[k]);
        size_t co = find_at(JREC_ACT_COMPLETED, names[k]);
        assert_true(cr < st && st < co);
        assert_true(recs[cr].time <= recs[co].time);
    }
    /* d was created only after both b and c completed */
    size_t d_created = find_at(JREC_ACT_CREATED, "d");
    assert_true(find_at(JREC_ACT_COMPLETED, "b") < d_created);
    assert_true(find_at(JREC_ACT_COMPLETED, "c") < d_created);
    flow__records_free(recs, nrecs);
    flow_store_close(store);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);

    /* The same run with no store keeps no record at all: nobody could
     * read them. */
    assert_int_equal(th_run(e, f, in, &r), FLOW_RUN_COMPLETED);
    assert_false(flow__journal_on(&r->journal));
    json_decref(in);
    flow_run_free(r);
    flow_free(f);
    flow_engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records_carry_sources_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
