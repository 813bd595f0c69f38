/* test_feedback.c -- feedback requests from C (issue #5): a C task asks in the
 * middle of its work, the run pauses, the answer comes through the store,
 * the task runs again as the same attempt and gets it; a waiting run that
 * gets its answer while it waits; timeouts; bad answers; replay of a run
 * cut after every record. Issue #9: deadlines are kept (late answers
 * refused, the timeout taken as of the deadline); answers racing in threads
 * on every store, with and without a runner, one taken; a runner takes the
 * answer the store holds, never its own timeout over it. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "journal/durable.h"
#include "store/store.h"
#include "util/alloc.h"

static atomic_int asks, befores;
static atomic_int last_attempt;

/* Does some work, then asks which region, then uses the answer. */
static int t_choose(flow_ctx *ctx)
{
    atomic_fetch_add(&befores, 1);
    atomic_store(&last_attempt, flow_ctx_attempt(ctx));
    const char *options[] = {"eu", "us"};
    flow_feedback req = {
        .type = FLOW_FEEDBACK_SELECTION,
        .message = "Which region?",
        .options = options,
        .option_count = 2,
        .channel_key = "region",
    };
    json_t *answer = NULL;
    atomic_fetch_add(&asks, 1);
    flow_err rc = flow_ctx_request_feedback(ctx, &req, &answer);
    if (rc == FLOW_EWAITING)
        return 0;
    if (rc != FLOW_OK)
        return 1;
    json_t *out = json_pack("{s:O,s:O}", "chosen", json_object_get(answer, "selected"), "by",
                            json_object_get(answer, "by"));
    json_decref(answer);
    return flow_ctx_set_output_take(ctx, out) ? 1 : 0;
}

static int t_other(flow_ctx *ctx)
{
    return flow_ctx_set_output_take(ctx, json_string("other done")) ? 1 : 0;
}

static flow *choose_flow(void)
{
    flow *f = flow_new("choose", NULL);
    th_add(f, "choose", t_choose);
    th_add(f, "other", t_other);
    flow_task *end = th_add(f, "end", NULL);
    flow_task_after(end, flow_find_task(f, "choose"));
    flow_task_after(end, flow_find_task(f, "other"));
    /* channel_key: the state key holds the answer's value, the option */
    json_t *result = json_pack("{s:s,s:s,s:s,s:s}", "chosen", "{{ tasks.choose.output.chosen }}",
                               "by", "{{ tasks.choose.output.by }}", "region", "{{ state.region }}",
                               "other", "{{ tasks.other.output }}");
    assert_int_equal(flow_set_result_template(f, result, NULL), FLOW_OK);
    json_decref(result);
    return f;
}

static flow_run *start(flow *f, const char *id, bool wait)
{
    flow_error err = {0};
    flow_run_options o = {.run_id = id, .store = th_store, .wait = wait};
    flow_run *r = flow_run_start(th_engine, f, &o, &err);
    if (!r)
        fail_msg("start %s: %s", id, err.message);
    return r;
}

static flow_run *resume(flow *f, const char *id)
{
    flow_error err = {0};
    flow_run_options o = {.run_id = id, .store = th_store};
    flow_run *r = flow_run_resume(th_engine, f, &o, &err);
    if (!r)
        fail_msg("resume %s: %s", id, err.message);
    return r;
}

static void test_c_task_asks_and_resumes(void **state)
{
    (void)state;
    flow *f = choose_flow();
    atomic_store(&befores, 0);
    flow_run *r = start(f, "c1", false);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
    assert_string_equal(flow_run_error(r), "waiting for feedback: choose-1");
    assert_int_equal(th_count_acts(r, "other", FLOW_ACT_COMPLETED), 1); /* the rest went on */
    flow_run_free(r);

    json_t *open = flow_store_feedback(th_store, "c1", NULL);
    assert_int_equal(json_array_size(open), 1);
    json_t *q = json_array_get(open, 0);
    assert_string_equal(json_string_value(json_object_get(q, "request")), "choose-1");
    assert_string_equal(json_string_value(json_object_get(q, "type")), "selection");
    assert_string_equal(json_string_value(json_object_get(q, "message")), "Which region?");
    json_decref(open);

    flow_error err = {0};
    json_t *bad = json_string("mars");
    assert_int_equal(flow_store_answer(th_store, "c1", "choose-1", bad, "ann", &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "'mars' is not one of the options [\"eu\",\"us\"]"));
    json_decref(bad);
    json_t *yes = json_true();
    assert_int_equal(flow_store_answer(th_store, "c1", "choose-1", yes, "ann", &err), FLOW_EINVAL);
    assert_int_equal(flow_store_answer(th_store, "c1", "nope", yes, "ann", &err), FLOW_ENOTFOUND);
    json_t *us = json_string("us");
    assert_int_equal(flow_store_answer(th_store, "c1", "choose-1", us, "ann", &err), FLOW_OK);
    assert_int_equal(flow_store_answer(th_store, "c1", "choose-1", us, "bob", &err), FLOW_ESTATE);
    assert_non_null(strstr(err.message, "request 'choose-1' of run 'c1' was already answered by "
                                        "ann at 20"));
    json_decref(us);

    r = resume(f, "c1");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    json_t *want = json_pack("{s:s,s:s,s:s,s:s}", "chosen", "us", "by", "ann", "region", "us",
                             "other", "other done");
    assert_true(json_equal(flow_run_result(r), want));
    json_decref(want);
    assert_int_equal(atomic_load(&befores), 2); /* asked, then ran again with the answer */
    assert_int_equal(atomic_load(&last_attempt), 1); /* as the same attempt */
    flow_run_free(r);
    flow_free(f);
}

/* Wait until run `run` has asked (its request is open in `st`). */
static void wait_asked(flow_store *st, const char *run)
{
    for (int i = 0; i < 500; i++) {
        json_t *open = flow_store_feedback(st, run, NULL);
        size_t n = json_array_size(open);
        json_decref(open);
        if (n)
            return;
        usleep(10000);
    }
}

struct answerer {
    const char *run;
    const char *request;
};

static void *answer_later(void *arg)
{
    struct answerer *a = arg;
    wait_asked(th_store, a->run);
    json_t *eu = json_string("eu");
    flow_store_answer(th_store, a->run, a->request, eu, "bob", NULL);
    json_decref(eu);
    return NULL;
}

static void test_answer_reaches_a_waiting_run(void **state)
{
    (void)state;
    flow *f = choose_flow();
    flow_run *r = start(f, "w1", true);
    pthread_t th;
    struct answerer a = {"w1", "choose-1"};
    pthread_create(&th, NULL, answer_later, &a);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    pthread_join(th, NULL);
    assert_string_equal(json_string_value(json_object_get(flow_run_result(r), "chosen")), "eu");
    assert_string_equal(json_string_value(json_object_get(flow_run_result(r), "by")), "bob");
    flow_run_free(r);
    flow_free(f);
}

static int t_timed(flow_ctx *ctx)
{
    flow_feedback req = {
        .type = FLOW_FEEDBACK_APPROVAL,
        .message = "Go?",
        .timeout = 0.2,
        .default_answer = (json_t *)flow_ctx_udata(ctx),
        .id = "go",
    };
    json_t *answer = NULL;
    flow_err rc = flow_ctx_request_feedback(ctx, &req, &answer);
    if (rc == FLOW_EWAITING)
        return 0;
    if (rc != FLOW_OK)
        return 1; /* flow_ctx_request_feedback said why */
    return flow_ctx_set_output_take(ctx, answer) ? 1 : 0;
}

static void test_timeouts(void **state)
{
    (void)state;
    json_t *dflt = json_true();
    flow *f = flow_new("timed", NULL);
    flow_task *t = th_add(f, "timed", NULL);
    flow_task_set_fn(t, t_timed, dflt);
    flow_run *r = start(f, "t1", true);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_true(json_is_true(json_object_get(flow_run_result(r), "approved")));
    assert_string_equal(json_string_value(json_object_get(flow_run_result(r), "by")), "timeout");
    flow_run_free(r);

    /* Run out while nobody ran it: taken at the resume. */
    r = start(f, "t2", false);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
    flow_run_free(r);
    usleep(300000);
    r = resume(f, "t2");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_string_equal(json_string_value(json_object_get(flow_run_result(r), "by")), "timeout");
    flow_run_free(r);
    flow_free(f);

    /* No default: the task fails, saying why. */
    f = flow_new("timed-out", NULL);
    t = th_add(f, "timed", NULL);
    flow_task_set_fn(t, t_timed, NULL);
    r = start(f, "t3", true);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_FAILED);
    assert_non_null(strstr(flow_run_error(r), "no answer to feedback request 'go' within 0.2s"));
    flow_run_free(r);
    flow_free(f);
    json_decref(dflt);
}

static void test_feedback_task_and_bad_specs(void **state)
{
    (void)state;
    flow *f = flow_new("spec", NULL);
    flow_task *t = th_add(f, "ask", NULL);
    flow_error err = {0};
    flow_feedback sel = {.type = FLOW_FEEDBACK_SELECTION, .message = "Pick"};
    assert_int_equal(flow_task_set_feedback(t, &sel, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "a selection needs options"));
    json_t *num = json_integer(3);
    flow_feedback appr = {.type = FLOW_FEEDBACK_APPROVAL, .message = "Go?", .default_answer = num,
                          .timeout = 1};
    assert_int_equal(flow_task_set_feedback(t, &appr, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "an approval is answered with approve or reject"));
    json_decref(num);
    flow_feedback text = {.type = FLOW_FEEDBACK_TEXT, .message = "Name for {{ inputs.who }}?",
                          .channel_key = "name"};
    assert_int_equal(flow_task_set_feedback(t, &text, &err), FLOW_OK);
    json_t *in = json_pack("{s:s}", "who", "the cat");
    flow_run_options o = {.run_id = "ft", .store = th_store, .inputs = in};
    flow_run *r = flow_run_start(th_engine, f, &o, &err);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
    flow_run_free(r);
    json_t *open = flow_store_feedback(th_store, NULL, NULL);
    bool seen = false;
    size_t i;
    json_t *q;
    json_array_foreach(open, i, q)
    {
        if (!strcmp(json_string_value(json_object_get(q, "run")), "ft")) {
            assert_string_equal(json_string_value(json_object_get(q, "message")),
                                "Name for the cat?");
            seen = true;
        }
    }
    assert_true(seen);
    json_decref(open);
    json_t *name = json_string("Tom");
    assert_int_equal(flow_store_answer(th_store, "ft", "ask-1", name, NULL, &err), FLOW_OK);
    json_decref(name);
    r = resume(f, "ft");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_string_equal(json_string_value(json_object_get(flow_run_result(r), "text")), "Tom");
    json_t *st = flow_run_state(r);
    assert_string_equal(json_string_value(json_object_get(st, "name")), "Tom"); /* the value */
    json_decref(st);
    flow_run_free(r);
    json_decref(in);
    flow_free(f);
}

static void test_nested_flows_cannot_ask(void **state)
{
    (void)state;
    flow *child = flow_new("child", NULL);
    flow_feedback req = {.type = FLOW_FEEDBACK_APPROVAL, .message = "Go?"};
    assert_int_equal(flow_task_set_feedback(th_add(child, "ask", NULL), &req, NULL), FLOW_OK);
    flow *parent = flow_new("parent", NULL);
    assert_int_equal(flow_task_set_subflow(th_add(parent, "sub", NULL), child), FLOW_OK);
    flow_run *r = start(parent, "nested", false);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_FAILED); /* not a run that waits for ever */
    assert_non_null(strstr(flow_run_error(r), "from inside a nested flow is not supported yet"));
    flow_run_free(r);
    flow_free(parent);
    flow_free(child);
}

/* A run with a request, answered and completed, cut after every record and
 * resumed: it ends the same, and the answer is never asked for again. */
static void test_every_crash_point(void **state)
{
    (void)state;
    flow *f = choose_flow();
    flow_run *r = start(f, "cut-src", false);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
    flow_run_free(r);
    json_t *eu = json_string("eu");
    assert_int_equal(flow_store_answer(th_store, "cut-src", "choose-1", eu, "eve", NULL), FLOW_OK);
    json_decref(eu);
    r = resume(f, "cut-src");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    json_t *want = json_incref(flow_run_result(r));
    flow_run_free(r);
    struct flow__jrec *recs;
    size_t count;
    assert_int_equal(flow__store_read_all(th_store, "cut-src", &recs, &count, NULL), FLOW_OK);
    struct flow__run_meta meta = {0};
    assert_int_equal(flow__store_run_get(th_store->backend, "cut-src", &meta, NULL), FLOW_OK);
    size_t answered_at = count;
    for (size_t i = 0; i < count; i++)
        if (recs[i].type == JREC_FEEDBACK_ANSWERED)
            answered_at = i;
    for (size_t k = 1; k < count; k++) {
        char id[32];
        snprintf(id, sizeof(id), "fcut-%zu", k);
        snprintf(meta.id, sizeof(meta.id), "%s", id);
        meta.status = FLOW_RUN_RUNNING;
        assert_int_equal(flow__store_run_create(th_store->backend, &meta, NULL), FLOW_OK);
        assert_int_equal(flow__store_append(th_store->backend, id, recs, k, 0, NULL), FLOW_OK);
        r = resume(f, id);
        flow_run_status s = flow_run_wait(r);
        if (k <= answered_at) { /* the answer is not in this journal: it waits again */
            if (s != FLOW_RUN_PAUSED)
                fail_msg("cut after %zu: %s, not paused", k, flow_run_status_name(s));
            flow_run_free(r);
            json_t *e2 = json_string("eu");
            if (flow_store_answer(th_store, id, "choose-1", e2, "eve", NULL) != FLOW_OK)
                fail_msg("cut after %zu: cannot answer", k);
            json_decref(e2);
            r = resume(f, id);
            s = flow_run_wait(r);
        }
        if (s != FLOW_RUN_COMPLETED || !json_equal(flow_run_result(r), want))
            fail_msg("cut after %zu records: %s", k, flow_run_status_name(s));
        flow_run_free(r);
    }
    flow__run_meta_cleanup(&meta);
    flow__records_free(recs, count);
    json_decref(want);
    flow_free(f);
}

/* ---- deadlines and answers at the same moment (issue #9) ------------------- */

static void test_late_answers_are_refused(void **state)
{
    (void)state;
    json_t *dflt = json_false();
    flow *f = flow_new("late", NULL);
    flow_task_set_fn(th_add(f, "timed", NULL), t_timed, dflt);
    flow_run *r = start(f, "late1", false);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
    flow_run_free(r);
    json_t *open = flow_store_feedback(th_store, "late1", NULL);
    assert_false(json_is_true(json_object_get(json_array_get(open, 0), "expired")));
    json_decref(open);
    usleep(300000);

    flow_error err = {0};
    json_t *yes = json_true();
    assert_int_equal(flow_store_answer(th_store, "late1", "go", yes, "ann", &err), FLOW_ESTATE);
    assert_non_null(strstr(err.message, "request 'go' of run 'late1' expired at 20"));
    assert_non_null(strstr(err.message, "its timeout answer stands"));
    json_decref(yes);
    open = flow_store_feedback(th_store, "late1", NULL);
    assert_int_equal(json_array_size(open), 1); /* listed, as expired */
    assert_true(json_is_true(json_object_get(json_array_get(open, 0), "expired")));
    const char *deadline = json_string_value(json_object_get(json_array_get(open, 0), "deadline"));
    assert_non_null(deadline);

    r = resume(f, "late1");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    json_t *out = flow_run_result(r);
    assert_true(json_is_false(json_object_get(out, "approved")));
    assert_string_equal(json_string_value(json_object_get(out, "by")), "timeout");
    /* taken as of the deadline, not when the resume came */
    assert_string_equal(json_string_value(json_object_get(out, "at")), deadline);
    flow_run_free(r);
    json_decref(open);
    flow_free(f);
    json_decref(dflt);
}

/* The store took a person's answer, the runner has not heard of it (its
 * message is still on the way): at the deadline the runner goes on with
 * the person's answer, not its timeout. */
static void test_the_store_decides_over_a_timeout(void **state)
{
    (void)state;
    json_t *dflt = json_true();
    flow *f = flow_new("decides", NULL);
    flow_task_set_fn(th_add(f, "timed", NULL), t_timed, dflt);
    flow_run *r = start(f, "dec1", true);
    wait_asked(th_store, "dec1");
    json_t *ann = json_pack("{s:b,s:s,s:s}", "approved", 0, "by", "ann", "at",
                            "2030-01-01T00:00:00.000Z");
    flow_err rc;
    FLOW__WITH_STORE(th_store, rc = flow__store_answer_claim(th_store->backend, "dec1", "go",
                                                             ann, 0, NULL, NULL));
    assert_int_equal(rc, FLOW_OK);
    json_decref(ann);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_string_equal(json_string_value(json_object_get(flow_run_result(r), "by")), "ann");
    assert_true(json_is_false(json_object_get(flow_run_result(r), "approved")));
    flow_run_free(r);

    /* and a resume takes an answer the store holds but the journal lacks
     * (the answering process died between the two) */
    r = start(f, "dec2", false);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
    flow_run_free(r);
    json_t *bob = json_pack("{s:b,s:s}", "approved", 0, "by", "bob");
    FLOW__WITH_STORE(th_store, rc = flow__store_answer_claim(th_store->backend, "dec2", "go",
                                                             bob, 0, NULL, NULL));
    assert_int_equal(rc, FLOW_OK);
    json_decref(bob);
    json_t *open = flow_store_feedback(th_store, "dec2", NULL);
    assert_int_equal(json_array_size(open), 0); /* answered, so not listed */
    json_decref(open);
    r = resume(f, "dec2");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_string_equal(json_string_value(json_object_get(flow_run_result(r), "by")), "bob");
    flow_run_free(r);
    flow_free(f);
    json_decref(dflt);
}

#define ANSWERERS 4

struct racer {
    flow_store *st;
    const char *run;
    pthread_barrier_t *go;
    char by[16];
    flow_err rc;
    char msg[512];
};

static void *race_answer(void *arg)
{
    struct racer *a = arg;
    json_t *v = json_boolean(a->by[1] % 2);
    flow_error err = {0};
    pthread_barrier_wait(a->go);
    a->rc = flow_store_answer(a->st, a->run, "ok", v, a->by, &err);
    snprintf(a->msg, sizeof(a->msg), "%s", err.message);
    json_decref(v);
    return NULL;
}

/* Answer run `id` from ANSWERERS threads at once; returns who won, and
 * checks that every other was refused naming the winner. */
static const char *race_once(flow_store *st, const char *url, const char *id,
                             struct racer racers[ANSWERERS])
{
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, ANSWERERS);
    pthread_t th[ANSWERERS];
    for (int i = 0; i < ANSWERERS; i++) {
        racers[i].st = url ? flow_store_open(url, NULL) : st; /* a handle each, as processes */
        assert_non_null(racers[i].st);
        racers[i].run = id;
        racers[i].go = &go;
        snprintf(racers[i].by, sizeof(racers[i].by), "t%d", i);
        pthread_create(&th[i], NULL, race_answer, &racers[i]);
    }
    const char *won = NULL;
    for (int i = 0; i < ANSWERERS; i++) {
        pthread_join(th[i], NULL);
        if (racers[i].st != st)
            flow_store_close(racers[i].st);
        if (racers[i].rc == FLOW_OK) {
            if (won)
                fail_msg("%s: %s and %s were both taken", id, won, racers[i].by);
            won = racers[i].by;
        }
    }
    pthread_barrier_destroy(&go);
    if (!won)
        fail_msg("%s: no answer taken (%s)", id, racers[0].msg);
    char want[128];
    snprintf(want, sizeof(want), "request 'ok' of run '%s' was already answered by %s at ", id,
             won);
    for (int i = 0; i < ANSWERERS; i++)
        if (racers[i].rc != FLOW_OK && (racers[i].rc != FLOW_ESTATE || !strstr(racers[i].msg, want)))
            fail_msg("%s: %s got %d: %s", id, racers[i].by, racers[i].rc, racers[i].msg);
    return won;
}

static void test_answers_at_the_same_moment(void **state)
{
    (void)state;
    char *dir = th_tempdir();
    char *urls[3] = {NULL, flow__asprintf("sqlite:%s/race.db", dir),
                     flow__asprintf("disk:%s/race.d", dir)};
    flow *f = flow_new("race", NULL);
    flow_feedback req = {.type = FLOW_FEEDBACK_APPROVAL, .message = "Go?", .id = "ok"};
    assert_int_equal(flow_task_set_feedback(th_add(f, "ask", NULL), &req, NULL), FLOW_OK);
    for (int u = 0; u < 3; u++) {
        flow_store *st = urls[u] ? flow_store_open(urls[u], NULL) : th_store;
        assert_non_null(st);
        for (int round = 0; round < 16; round++) {
            bool live = round % 2;
            char id[32];
            snprintf(id, sizeof(id), "race-%d-%d", u, round);
            flow_error err = {0};
            flow_run_options o = {.run_id = id, .store = st, .wait = live};
            flow_run *r = flow_run_start(th_engine, f, &o, &err);
            assert_non_null(r);
            if (!live) {
                assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
                flow_run_free(r);
            } else {
                wait_asked(st, id);
            }
            struct racer racers[ANSWERERS];
            memset(racers, 0, sizeof(racers));
            const char *won = race_once(st, urls[u], id, racers);
            if (!live) {
                o.wait = false;
                r = flow_run_resume(th_engine, f, &o, &err);
                if (!r)
                    fail_msg("resume %s: %s", id, err.message);
            }
            /* the runner went on with the answer the store took */
            assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
            const char *by = json_string_value(json_object_get(flow_run_result(r), "by"));
            if (!by || strcmp(by, won) != 0)
                fail_msg("%s (%s): %s was taken, the run went on with %s", id,
                         live ? "a waiting runner" : "resumed", won, by ? by : "nothing");
            flow_run_free(r);
        }
        if (st != th_store)
            flow_store_close(st);
    }
    flow_free(f);
    flow__free(urls[1]);
    flow__free(urls[2]);
    th_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_c_task_asks_and_resumes),
        cmocka_unit_test(test_answer_reaches_a_waiting_run),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_feedback_task_and_bad_specs),
        cmocka_unit_test(test_nested_flows_cannot_ask),
        cmocka_unit_test(test_every_crash_point),
        cmocka_unit_test(test_late_answers_are_refused),
        cmocka_unit_test(test_the_store_decides_over_a_timeout),
        cmocka_unit_test(test_answers_at_the_same_moment),
    };
    return cmocka_run_group_tests(tests, th_engine_setup, th_engine_teardown);
}
