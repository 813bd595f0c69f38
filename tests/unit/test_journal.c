/* test_journal.c -- the journal a run writes: every record in the order
 * things happened, with what replay needs (sources of each activation). */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <string.h>

#include "core/engine.h"

static int noop_fn(flow_ctx *ctx)
{
    (void)ctx;
    return 0;
}

/* The position of the first record of `type` for task `name` (fails the
 * test when there is none). */
static size_t find_at(struct flow_run *r, int type, const char *name)
{
    for (size_t i = 0; i < flow__journal_count(&r->journal); i++) {
        const struct flow__jrec *rec = flow__journal_get(&r->journal, i);
        if (rec->type == type && rec->act &&
            !strcmp(r->flow->tasks.items[rec->task]->name, name))
            return i;
    }
    fail_msg("no record of type %d for task '%s'", type, name);
    return 0;
}

static const struct flow__jrec *find(struct flow_run *r, int type, const char *name)
{
    return flow__journal_get(&r->journal, find_at(r, type, name));
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
    flow_run *r;
    json_t *in = json_pack("{s:i}", "x", 1);
    assert_int_equal(th_run(e, f, in, &r), FLOW_RUN_COMPLETED);

    /* the start task's explicit input, one source in the record, several
     * in the payload */
    const struct flow__jrec *ca = find(r, JREC_ACT_CREATED, "a");
    const struct flow__jrec *cb = find(r, JREC_ACT_CREATED, "b");
    const struct flow__jrec *cd = find(r, JREC_ACT_CREATED, "d");
    assert_non_null(ca);
    assert_true(json_equal(json_object_get(ca->payload, "input"), in));
    assert_int_equal(cb->src, ca->act);
    assert_null(cb->payload);
    json_t *srcs = json_object_get(cd->payload, "sources");
    assert_int_equal(json_array_size(srcs), 2);
    assert_int_equal(cd->src, 0);

    /* per activation: created, started, completed, in that order; the
     * run's first and last records frame everything */
    size_t n = flow__journal_count(&r->journal);
    assert_int_equal(flow__journal_get(&r->journal, 0)->type, JREC_RUN_CREATED);
    assert_int_equal(flow__journal_get(&r->journal, n - 1)->type, JREC_RUN_ENDED);
    const char *names[] = {"a", "b", "c", "d"};
    for (int k = 0; k < 4; k++) {
        size_t cr = find_at(r, JREC_ACT_CREATED, names[k]);
        size_t st = find_at(r, JREC_ACT_STARTED, names[k]);
        size_t co = find_at(r, JREC_ACT_COMPLETED, names[k]);
        assert_true(cr < st && st < co);
        assert_true(flow__journal_get(&r->journal, cr)->time <=
                    flow__journal_get(&r->journal, co)->time);
    }
    /* d was created only after both b and c completed */
    size_t d_created = find_at(r, JREC_ACT_CREATED, "d");
    assert_true(find_at(r, JREC_ACT_COMPLETED, "b") < d_created);
    assert_true(find_at(r, JREC_ACT_COMPLETED, "c") < d_created);
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
