/* test_resume.c -- durable runs through the C API: a run is cut after every
 * record of its journal (a crash at that instant), resumed, and must end
 * with the same result and state as the uninterrupted run, without running
 * again any activation whose completion had been journaled. Also: ended
 * runs, changed definitions, leases, pause, interrupt, checkpoints and time
 * travel, control requests through the store. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "journal/durable.h"
#include "store/store.h"


/* ---- what ran ----------------------------------------------------------- */

static pthread_mutex_t calls_mu = PTHREAD_MUTEX_INITIALIZER;
static struct call {
    char task[32];
    uint64_t act;
    int attempt;
} calls[4096];
static size_t ncalls;

static void note(flow_ctx *ctx)
{
    pthread_mutex_lock(&calls_mu);
    if (ncalls < sizeof(calls) / sizeof(calls[0])) {
        snprintf(calls[ncalls].task, sizeof(calls[ncalls].task), "%s", flow_ctx_task_name(ctx));
        calls[ncalls].act = flow_ctx_activation(ctx);
        calls[ncalls].attempt = flow_ctx_attempt(ctx);
        ncalls++;
    }
    pthread_mutex_unlock(&calls_mu);
}

static void calls_reset(void)
{
    pthread_mutex_lock(&calls_mu);
    ncalls = 0;
    pthread_mutex_unlock(&calls_mu);
}

/* ---- a flow with every kind of record ----------------------------------- */

static int t_start(flow_ctx *ctx)
{
    note(ctx);
    flow_ctx_set_state_take(ctx, "n", json_integer(0));
    return flow_ctx_set_output_take(ctx, json_pack("{s:[i,i,i,i]}", "items", 1, 2, 3, 4)) ? 1 : 0;
}

static int t_fan(flow_ctx *ctx)
{
    note(ctx);
    return flow_ctx_set_output_take(ctx, json_integer(json_integer_value(flow_ctx_item(ctx)) * 10))
               ? 1
               : 0;
}

static json_int_t sum_list(json_t *list)
{
    json_int_t sum = 0;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) sum += json_integer_value(v);
    return sum;
}

static int t_sum(flow_ctx *ctx)
{
    note(ctx);
    json_int_t sum = sum_list(flow_ctx_input(ctx));
    flow_ctx_set_state_take(ctx, "sum", json_integer(sum));
    return flow_ctx_set_output_take(ctx, json_integer(sum)) ? 1 : 0;
}

static int t_loop(flow_ctx *ctx)
{
    note(ctx);
    json_t *n = flow_ctx_get_state(ctx, "n");
    json_int_t next = json_integer_value(n) + 1;
    json_decref(n);
    flow_ctx_set_state_take(ctx, "n", json_integer(next));
    return flow_ctx_set_output_take(ctx, json_string(next < 3 ? "again" : "done")) ? 1 : 0;
}

static int t_flaky(flow_ctx *ctx)
{
    note(ctx);
    if (flow_ctx_attempt(ctx) < 2) {
        flow_ctx_fail(ctx, "first attempt fails");
        return 1;
    }
    return flow_ctx_set_output_take(ctx, json_string("steady")) ? 1 : 0;
}

static int t_par(flow_ctx *ctx)
{
    note(ctx);
    json_t *one = json_integer(1), *two = json_integer(2);
    flow_branch b[2] = {{"br", one}, {"br", two}};
    flow_err rc = flow_ctx_parallel(ctx, b, 2, "join");
    json_decref(one);
    json_decref(two);
    return rc ? 1 : 0;
}

static int t_br(flow_ctx *ctx)
{
    note(ctx);
    return flow_ctx_set_output_take(ctx, json_integer(json_integer_value(flow_ctx_input(ctx)) + 100))
               ? 1
               : 0;
}

static int t_join(flow_ctx *ctx)
{
    note(ctx);
    return flow_ctx_set_output_take(ctx, json_integer(sum_list(flow_ctx_input(ctx)))) ? 1 : 0;
}

static int t_emitter(flow_ctx *ctx)
{
    note(ctx);
    for (int i = 0; i < 3; i++) {
        json_t *d = json_pack("{s:i}", "i", i);
        flow_ctx_emit(ctx, "tick", d);
        json_decref(d);
    }
    return flow_ctx_set_output_take(ctx, json_string("emitted")) ? 1 : 0;
}

static int t_listener(flow_ctx *ctx)
{
    note(ctx);
    json_int_t i = json_integer_value(json_object_get(flow_ctx_input(ctx), "i"));
    char key[32];
    snprintf(key, sizeof(key), "tick_%lld", (long long)i);
    flow_ctx_set_state_take(ctx, key, json_integer(i * 2));
    return flow_ctx_set_output_take(ctx, json_integer(i * 2)) ? 1 : 0;
}

static int t_fails(flow_ctx *ctx)
{
    note(ctx);
    flow_ctx_fail(ctx, "always fails");
    return 1;
}

static int t_fallback(flow_ctx *ctx)
{
    note(ctx);
    return flow_ctx_set_output_take(ctx, json_string("recovered")) ? 1 : 0;
}

static int t_final(flow_ctx *ctx)
{
    note(ctx);
    flow_ctx_checkpoint(ctx);
    return flow_ctx_set_output(ctx, flow_ctx_input(ctx)) ? 1 : 0;
}

static int t_echo(flow_ctx *ctx)
{
    note(ctx);
    return flow_ctx_set_output(ctx, flow_ctx_input(ctx)) ? 1 : 0;
}

static flow *big_flow(const char *extra_task)
{
    flow *f = flow_new("everything", NULL);
    flow_task *start = th_add(f, "start", t_start);
    flow_task *fan = th_add(f, "fan", t_fan);
    json_t *tmpl = json_string("{{ tasks.start.output.items }}");
    assert_int_equal(flow_task_set_foreach(fan, tmpl, 2, NULL), FLOW_OK);
    json_decref(tmpl);
    flow_task_after(fan, start);
    flow_task *sum = th_add(f, "sum", t_sum);
    flow_task_after(sum, fan);
    flow_task *loop = th_add(f, "loop", t_loop);
    flow_task_after(loop, sum);
    flow_task_on(loop, "again");
    flow_task_set_router(loop, true);
    flow_task *flaky = th_add(f, "flaky", t_flaky);
    flow_task_on(flaky, "done");
    flow_task_set_retries(flaky, 2);
    flow_backoff quick = {.delay = 0.001, .factor = 1, .max_delay = 0.001};
    flow_task_set_backoff(flaky, &quick);
    flow_task *par = th_add(f, "par", t_par);
    flow_task_on(par, "done");
    flow_task_set_start(th_add(f, "br", t_br), false);
    flow_task_set_start(th_add(f, "join", t_join), false);
    flow_task *emitter = th_add(f, "emitter", t_emitter);
    flow_task_on(emitter, "done");
    flow_task_on(th_add(f, "listener", t_listener), "tick");
    flow_task *fb_src = th_add(f, "fb_src", t_fails);
    flow_task_on(fb_src, "done");
    flow_task *fb = th_add(f, "fb", t_fallback);
    flow_task_set_on_error(fb_src, FLOW_ON_ERROR_FALLBACK);
    flow_task_set_fallback(fb_src, fb);
    flow_task *ign = th_add(f, "ign", t_fails);
    flow_task_on(ign, "done");
    flow_task_set_on_error(ign, FLOW_ON_ERROR_IGNORE);
    /* A join on two optional branches, one never taken: it runs when the
     * run goes quiet, and replay must take it at the same point. */
    flow_task *taken = th_add(f, "taken", t_fallback);
    flow_task_on(taken, "done");
    flow_task *not_taken = th_add(f, "not_taken", t_fallback);
    flow_task_on(not_taken, "never");
    flow_task *either = th_add(f, "either", t_echo);
    flow_task_optional(either, taken);
    flow_task_optional(either, not_taken);
    flow_task *final = th_add(f, "final", t_final);
    flow_task_after(final, either);
    flow_task_after(final, flow_find_task(f, "join"));
    flow_task_after(final, flaky);
    flow_task_after(final, fb_src);
    flow_task_after(final, emitter);
    if (extra_task) /* not a start task: replay takes the same path */
        flow_task_set_start(th_add(f, extra_task, t_fallback), false);
    /* The result must not depend on timing: without a template it is the
     * output of whichever task completed last. */
    json_t *result = json_string("{{ tasks.final.output }}");
    assert_int_equal(flow_set_result_template(f, result, NULL), FLOW_OK);
    json_decref(result);
    return f;
}

static flow_run *start_durable(flow *f, const char *id)
{
    flow_error err = {0};
    flow_run_options o = {.run_id = id, .store = th_store};
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

static void test_every_crash_point(void **state)
{
    (void)state;
    flow *f = big_flow(NULL);
    flow_run *r = start_durable(f, "whole");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    json_t *want_result = json_incref(flow_run_result(r));
    json_t *want_state = flow_run_state(r);
    assert_int_equal(json_integer_value(json_object_get(want_state, "n")), 3);
    assert_int_equal(json_integer_value(json_object_get(want_state, "sum")), 100);
    assert_string_equal(json_string_value(json_object_get(want_result, "fb_src")), "recovered");
    assert_int_equal(json_integer_value(json_object_get(want_result, "join")), 203);
    json_t *either = json_pack("{s:s,s:n}", "taken", "recovered", "not_taken");
    assert_true(json_equal(json_object_get(want_result, "either"), either));
    json_decref(either);
    flow_run_free(r);
    size_t n = th_journal_length(th_store, "whole");
    assert_true(n > 60);

    for (size_t k = 1; k < n; k++) {
        char id[32];
        snprintf(id, sizeof(id), "cut-%zu", k);
        th_fork_prefix(th_store, "whole", id, k, FLOW_RUN_RUNNING);
        calls_reset();
        r = resume(f, id);
        flow_run_status s = flow_run_wait(r);
        if (s != FLOW_RUN_COMPLETED)
            fail_msg("cut after %zu records: %s (%s)", k, flow_run_status_name(s),
                     flow_run_error(r) ? flow_run_error(r) : "");
        json_t *got_state = flow_run_state(r);
        if (!json_equal(got_state, want_state) || !json_equal(flow_run_result(r), want_result)) {
            char *a = json_dumps(got_state, JSON_COMPACT | JSON_SORT_KEYS);
            char *b = json_dumps(flow_run_result(r), JSON_COMPACT | JSON_SORT_KEYS);
            fail_msg("cut after %zu records: state %s result %s", k, a, b);
        }
        json_decref(got_state);
        pthread_mutex_lock(&calls_mu);
        for (size_t i = 0; i < ncalls; i++) {
            if (th_completed_within(th_store, id, k, calls[i].act))
                fail_msg("cut after %zu records: %s#%llu ran again after its completion was "
                         "journaled",
                         k, calls[i].task, (unsigned long long)calls[i].act);
        }
        pthread_mutex_unlock(&calls_mu);
        flow_run_free(r);
        /* The resumed run's own journal replays to its end. */
        r = resume(f, id);
        assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
        assert_true(json_equal(flow_run_result(r), want_result));
        flow_run_free(r);
    }
    json_decref(want_result);
    json_decref(want_state);
    flow_free(f);
}

static void test_ended_run_is_not_run_again(void **state)
{
    (void)state;
    flow *f = big_flow(NULL);
    flow_run *r = start_durable(f, "ended");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    json_t *want = json_incref(flow_run_result(r));
    flow_run_free(r);
    size_t n = th_journal_length(th_store, "ended");
    calls_reset();
    r = resume(f, "ended");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_true(json_equal(flow_run_result(r), want));
    assert_int_equal(ncalls, 0);
    flow_run_free(r);
    assert_int_equal(th_journal_length(th_store, "ended"), n); /* nothing written */
    json_decref(want);
    flow_free(f);
}

static void test_changed_definition_is_refused(void **state)
{
    (void)state;
    flow *f = big_flow(NULL);
    flow_run *r = start_durable(f, "changed");
    flow_run_wait(r);
    flow_run_free(r);
    th_fork_prefix(th_store, "changed", "changed-cut", 5, FLOW_RUN_RUNNING);
    flow *g = big_flow("extra");
    flow_error err = {0};
    flow_run_options o = {.run_id = "changed-cut", .store = th_store};
    assert_null(flow_run_resume(th_engine, g, &o, &err));
    assert_int_equal(err.code, FLOW_ESTATE);
    assert_non_null(strstr(err.message, "changed since the run started"));
    assert_non_null(strstr(err.message, "--force"));
    o.force = true;
    r = flow_run_resume(th_engine, g, &o, &err);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    flow_run_free(r);
    flow_free(g);
    flow_free(f);
}

/* Run `from`'s journal, as `edit` changes it, as the new running run `to`:
 * `edit` returns how many of the records to keep. */
static void copy_run(const char *from, const char *to,
                     size_t (*edit)(struct flow__jrec *recs, size_t count))
{
    struct flow__run_meta meta = {0};
    assert_int_equal(flow__store_run_get(th_store->backend, from, &meta, NULL), FLOW_OK);
    struct flow__jrec *recs;
    size_t count;
    assert_int_equal(flow__store_read_all(th_store, from, &recs, &count, NULL), FLOW_OK);
    size_t keep = edit(recs, count);
    snprintf(meta.id, sizeof(meta.id), "%s", to);
    meta.status = FLOW_RUN_RUNNING;
    assert_int_equal(flow__store_run_create(th_store->backend, &meta, NULL), FLOW_OK);
    assert_int_equal(flow__store_append(th_store->backend, to, recs, keep, 0, NULL), FLOW_OK);
    flow__records_free(recs, count);
    flow__run_meta_cleanup(&meta);
}

/* Resuming run `id` of `f` fails with `code` and a message holding `needle`. */
static void resume_refused(flow *f, const char *id, flow_err code, const char *needle)
{
    flow_error err = {0};
    flow_run_options o = {.run_id = id, .store = th_store};
    assert_null(flow_run_resume(th_engine, f, &o, &err));
    assert_int_equal(err.code, code);
    if (!strstr(err.message, needle))
        fail_msg("message '%s' lacks '%s'", err.message, needle);
}

/* The same journal, cut short, as a newer libflow would have written it. */
static size_t newer_format(struct flow__jrec *recs, size_t count)
{
    assert_true(count >= 5);
    json_object_set_new(recs[0].payload, "format", json_integer(99));
    return 5;
}

static void test_newer_journal_is_refused(void **state)
{
    (void)state;
    flow *f = big_flow(NULL);
    flow_run *r = start_durable(f, "fmt-src");
    flow_run_wait(r);
    flow_run_free(r);
    copy_run("fmt-src", "fmt-new", newer_format);
    resume_refused(f, "fmt-new", FLOW_EUNSUPPORTED,
                   "journaled in format 99; this libflow replays up to 1");
    flow_free(f);
}

static int t_to_b(flow_ctx *ctx)
{
    return flow_ctx_next_task(ctx, "b", NULL) ? 1 : 0;
}

static int t_b(flow_ctx *ctx)
{
    return flow_ctx_set_output(ctx, flow_ctx_input(ctx)) ? 1 : 0;
}

/* The journal up to the first completion, whose recorded next_task names a
 * task that is not in the flow. */
static size_t unknown_next_task(struct flow__jrec *recs, size_t count)
{
    size_t done = 0;
    while (done < count && recs[done].type != JREC_ACT_COMPLETED)
        done++;
    assert_true(done < count);
    json_t *work = json_object_get(recs[done].payload, "work");
    json_t *next = json_object_get(json_array_get(work, 0), "next_task");
    assert_int_equal(json_object_set_new(next, "task", json_string("nope")), 0);
    return done + 1;
}

/* A journal whose recorded work names a task the flow does not have (a
 * damaged record, found by fuzzing, issue #9) is refused like any other
 * mismatch, instead of starting a task that is not there. */
static void test_work_naming_unknown_task_is_refused(void **state)
{
    (void)state;
    flow *f = flow_new("work", NULL);
    th_add(f, "a", t_to_b);
    flow_task_set_start(th_add(f, "b", t_b), false);
    flow_run *r = start_durable(f, "work-src");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    flow_run_free(r);
    copy_run("work-src", "work-bad", unknown_next_task);
    resume_refused(f, "work-bad", FLOW_ESTATE,
                   "does not match its flow at record 3 (act_completed of activation 1): "
                   "directive 'next_task' names unknown task 'nope'");
    flow_free(f);
}

static int t_fails_once(flow_ctx *ctx)
{
    if (flow_ctx_attempt(ctx) == 1) {
        flow_ctx_fail(ctx, "first attempt fails");
        return 1;
    }
    return flow_ctx_set_output_take(ctx, json_integer(flow_ctx_attempt(ctx))) ? 1 : 0;
}

/* The journal up to the second attempt's start, without the record that
 * ended the first (turned into a note replay ignores). */
static size_t second_start_unended(struct flow__jrec *recs, size_t count)
{
    size_t i = 0;
    while (i < count && recs[i].type != JREC_ACT_RETRYING)
        i++;
    assert_true(i < count);
    recs[i].type = JREC_LOG;
    while (i < count && recs[i].type != JREC_ACT_STARTED)
        i++;
    assert_true(i < count);
    return i + 1;
}

/* An attempt that starts over one the journal never ended (a damaged
 * journal, found by fuzzing, issue #9) is counted once, so the resumed run
 * ends instead of waiting for ever for an attempt that is not running. */
static void test_start_over_unended_attempt(void **state)
{
    (void)state;
    flow *f = flow_new("again", NULL);
    flow_task *t = th_add(f, "f", t_fails_once);
    flow_backoff b = {.delay = 0.001, .factor = 1};
    flow_task_set_retries(t, 1);
    flow_task_set_backoff(t, &b);
    flow_run *r = start_durable(f, "again-src");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    flow_run_free(r);
    copy_run("again-src", "again-bad", second_start_unended);
    r = resume(f, "again-bad");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_int_equal(json_integer_value(flow_run_result(r)), 2);
    flow_run_free(r);
    flow_free(f);
}

/* ---- pause, interrupt, leases, control ---------------------------------- */

static atomic_int gate_open;
static atomic_int in_gate;

static int t_gate(flow_ctx *ctx)
{
    note(ctx);
    atomic_fetch_add(&in_gate, 1);
    while (!atomic_load(&gate_open) && !flow_ctx_is_cancelled(ctx))
        usleep(1000);
    atomic_fetch_sub(&in_gate, 1);
    if (flow_ctx_is_cancelled(ctx))
        return 1;
    return flow_ctx_set_output_take(ctx, json_string("through")) ? 1 : 0;
}

static int t_after_gate(flow_ctx *ctx)
{
    note(ctx);
    return flow_ctx_set_output(ctx, flow_ctx_input(ctx)) ? 1 : 0;
}

static flow *gate_flow(void)
{
    flow *f = flow_new("gate", NULL);
    flow_task *g = th_add(f, "gate", t_gate);
    flow_task *a = th_add(f, "after", t_after_gate);
    flow_task_after(a, g);
    return f;
}

static void wait_in_gate(void)
{
    for (int i = 0; i < 5000 && !atomic_load(&in_gate); i++)
        usleep(1000);
    assert_true(atomic_load(&in_gate) > 0);
}

static int count_calls(const char *task)
{
    int n = 0;
    pthread_mutex_lock(&calls_mu);
    for (size_t i = 0; i < ncalls; i++)
        n += !strcmp(calls[i].task, task);
    pthread_mutex_unlock(&calls_mu);
    return n;
}

static void test_pause_then_resume(void **state)
{
    (void)state;
    flow *f = gate_flow();
    atomic_store(&gate_open, 0);
    calls_reset();
    flow_run *r = start_durable(f, "paused");
    wait_in_gate();
    flow_run_pause(r, "lunch");
    usleep(20000);
    atomic_store(&gate_open, 1); /* the running task finishes */
    assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
    assert_string_equal(flow_run_error(r), "lunch");
    assert_int_equal(th_count_acts(r, "gate", FLOW_ACT_COMPLETED), 1);
    assert_int_equal(count_calls("after"), 0); /* nothing new started */
    flow_run_free(r);
    json_t *st = flow_store_run(th_store, "paused", NULL);
    assert_string_equal(json_string_value(json_object_get(st, "status")), "paused");
    json_decref(st);

    r = resume(f, "paused");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_string_equal(json_string_value(flow_run_result(r)), "through");
    assert_int_equal(count_calls("gate"), 1);
    assert_int_equal(count_calls("after"), 1);
    flow_run_free(r);
    flow_free(f);
}

static int t_route_left(flow_ctx *ctx)
{
    note(ctx);
    return flow_ctx_set_output_take(ctx, json_string("left")) ? 1 : 0;
}

/* A router takes `left`; the gate runs on it, `right` never does; `join`
 * waits for both, optionally. Paused while the gate runs, the run goes quiet
 * with the join still to run: it must pause, not end, and the resume must
 * run the join once, with null for the branch not taken. */
static void test_pause_before_a_settled_join(void **state)
{
    (void)state;
    flow *f = flow_new("settle", NULL);
    flow_task *route = th_add(f, "route", t_route_left);
    flow_task_set_router(route, true);
    flow_task *g = th_add(f, "gate", t_gate);
    flow_task_on(g, "left");
    flow_task *right = th_add(f, "right", t_after_gate);
    flow_task_on(right, "right");
    flow_task *join = th_add(f, "join", t_after_gate);
    flow_task_optional(join, g);
    flow_task_optional(join, right);
    atomic_store(&gate_open, 0);
    calls_reset();
    flow_run *r = start_durable(f, "settle-paused");
    wait_in_gate();
    flow_run_pause(r, "lunch");
    usleep(20000);
    atomic_store(&gate_open, 1);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
    assert_int_equal(count_calls("join"), 0);
    flow_run_free(r);

    r = resume(f, "settle-paused");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_int_equal(count_calls("join"), 1);
    assert_int_equal(count_calls("gate"), 1);
    assert_int_equal(count_calls("right"), 0);
    json_t *want = json_pack("{s:s,s:n}", "gate", "through", "right");
    assert_true(json_equal(flow_run_result(r), want));
    json_decref(want);
    flow_run_free(r);
    flow_free(f);
}

static void test_interrupt_reruns_the_same_attempt(void **state)
{
    (void)state;
    flow *f = gate_flow();
    atomic_store(&gate_open, 0);
    calls_reset();
    flow_run *r = start_durable(f, "interrupted");
    wait_in_gate();
    flow_run_interrupt(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
    assert_string_equal(flow_run_error(r), "interrupted");
    flow_run_free(r);
    atomic_store(&gate_open, 1);
    r = resume(f, "interrupted");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    flow_run_free(r);
    assert_int_equal(count_calls("gate"), 2);
    pthread_mutex_lock(&calls_mu);
    for (size_t i = 0; i < ncalls; i++)
        if (!strcmp(calls[i].task, "gate"))
            assert_int_equal(calls[i].attempt, 1); /* no retry was spent */
    pthread_mutex_unlock(&calls_mu);
    flow_free(f);
}

static void test_second_runner_is_refused(void **state)
{
    (void)state;
    flow *f = gate_flow();
    atomic_store(&gate_open, 0);
    flow_run *r = start_durable(f, "leased");
    wait_in_gate();
    flow_error err = {0};
    flow_run_options o = {.run_id = "leased", .store = th_store};
    assert_null(flow_run_resume(th_engine, f, &o, &err));
    assert_int_equal(err.code, FLOW_EBUSY);
    assert_non_null(strstr(err.message, "leased"));
    atomic_store(&gate_open, 1);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    flow_run_free(r);
    flow_free(f);
}

/* Threads of one process resuming one paused run at once (the requests of
 * a serve): the lease, held by the process, lets them all through, so the
 * journal's open decides -- exactly one of them runs it. */
#define RACERS 6
static flow *race_flow;
static const char *race_id;
static pthread_barrier_t race_barrier;
static flow_run *race_runs[RACERS];

static void *race_resume(void *arg)
{
    size_t k = (size_t)(uintptr_t)arg;
    flow_run_options o = {.run_id = race_id, .store = th_store};
    flow_error err = {0};
    pthread_barrier_wait(&race_barrier);
    race_runs[k] = flow_run_resume(th_engine, race_flow, &o, &err);
    if (!race_runs[k] && err.code != FLOW_EBUSY)
        fprintf(stderr, "resume %s: %s\n", race_id, err.message);
    return NULL;
}

static void test_resumes_at_once_run_it_once(void **state)
{
    (void)state;
    flow *f = gate_flow();
    char dir[] = "/tmp/flow-race-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char url[64];
    snprintf(url, sizeof(url), "sqlite:%s/s.db", dir);
    flow_store *mem = th_store;
    th_store = flow_store_open(url, NULL);
    assert_non_null(th_store);
    race_flow = f;
    for (int round = 0; round < 30; round++) {
        char id[32];
        snprintf(id, sizeof(id), "race-%d", round);
        race_id = id;
        atomic_store(&gate_open, 0);
        calls_reset();
        flow_run *r = start_durable(f, id);
        wait_in_gate();
        flow_run_pause(r, "lunch");
        atomic_store(&gate_open, 1);
        assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
        flow_run_free(r);

        pthread_t th[RACERS];
        pthread_barrier_init(&race_barrier, NULL, RACERS);
        for (size_t k = 0; k < RACERS; k++)
            assert_int_equal(pthread_create(&th[k], NULL, race_resume, (void *)(uintptr_t)k), 0);
        for (size_t k = 0; k < RACERS; k++)
            pthread_join(th[k], NULL);
        pthread_barrier_destroy(&race_barrier);
        /* A resume that comes after the winner ended gets the ended run. */
        int got = 0;
        for (size_t k = 0; k < RACERS; k++) {
            if (!race_runs[k])
                continue;
            got++;
            assert_int_equal(flow_run_wait(race_runs[k]), FLOW_RUN_COMPLETED);
        }
        for (size_t k = 0; k < RACERS; k++)
            flow_run_free(race_runs[k]);
        assert_true(got >= 1);
        assert_int_equal(count_calls("after"), 1);
    }
    flow_store_close(th_store);
    th_store = mem;
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    flow_free(f);
}

static void test_lost_lease_stops_the_run(void **state)
{
    (void)state;
    flow *f = gate_flow();
    atomic_store(&gate_open, 0);
    flow_run *r = start_durable(f, "taken");
    wait_in_gate();
    /* Another host takes the run over, as if this runner had been stopped
     * past its lease. */
    flow_err rc;
    double later = (double)time(NULL) + 100;
    FLOW__WITH_STORE(th_store, rc = flow__store_lease_acquire(th_store->backend, "taken",
                                                              "1@elsewhere.invalid", later,
                                                              15, NULL));
    assert_int_equal(rc, FLOW_OK);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_FAILED); /* at the next renewal */
    assert_non_null(strstr(flow_run_error(r), "lost the lease on run 'taken'"));
    assert_non_null(strstr(flow_run_error(r), "pid 1 on host elsewhere.invalid"));
    atomic_store(&gate_open, 1);
    flow_run_free(r);
    flow_free(f);
}

static void test_requests_through_the_store(void **state)
{
    (void)state;
    flow *f = gate_flow();
    atomic_store(&gate_open, 0);
    flow_run *r = start_durable(f, "asked");
    wait_in_gate();
    assert_int_equal(flow_store_request(th_store, "asked", "cancel", "no longer needed", NULL),
                     FLOW_OK);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_CANCELLED);
    assert_string_equal(flow_run_error(r), "no longer needed");
    flow_run_free(r);
    flow_error err = {0};
    assert_int_equal(flow_store_request(th_store, "asked", "pause", NULL, &err), FLOW_ESTATE);
    assert_non_null(strstr(err.message, "already ended"));
    assert_int_equal(flow_store_request(th_store, "asked", "stop", NULL, &err), FLOW_EINVAL);
    flow_free(f);
}

static void test_checkpoint_time_travel(void **state)
{
    (void)state;
    flow *f = big_flow(NULL);
    flow_run *r = start_durable(f, "travel");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    json_t *want = json_incref(flow_run_result(r));
    flow_run_free(r);
    json_t *cps = flow_store_checkpoints(th_store, "travel", NULL);
    assert_int_equal(json_array_size(cps), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(cps, 0), "task")),
                        "final");
    json_decref(cps);
    size_t n = th_journal_length(th_store, "travel");

    calls_reset();
    flow_error err = {0};
    flow_run_options o = {.run_id = "travel", .store = th_store, .from_checkpoint = "1"};
    r = flow_run_resume(th_engine, f, &o, &err);
    if (!r)
        fail_msg("%s", err.message);
    assert_string_equal(flow_run_id(r), "travel.from-1");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_true(json_equal(flow_run_result(r), want));
    assert_int_equal(ncalls, 0); /* everything before the checkpoint had completed */
    flow_run_free(r);
    assert_int_equal(th_journal_length(th_store, "travel"), n); /* the original is intact */
    o.from_checkpoint = "7";
    assert_null(flow_run_resume(th_engine, f, &o, &err));
    assert_int_equal(err.code, FLOW_ENOTFOUND);
    json_decref(want);
    flow_free(f);
}

static void test_status_from_the_journal(void **state)
{
    (void)state;
    flow *f = big_flow(NULL);
    flow_run *r = start_durable(f, "shown");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    json_t *want_state = flow_run_state(r);
    flow_run_free(r);
    json_t *st = flow_store_run(th_store, "shown", NULL);
    assert_string_equal(json_string_value(json_object_get(st, "status")), "completed");
    assert_true(json_equal(json_object_get(st, "state"), want_state));
    size_t i;
    json_t *t;
    int flaky_attempts = 0, ign_completed = 0;
    json_array_foreach(json_object_get(st, "tasks"), i, t)
    {
        const char *name = json_string_value(json_object_get(t, "task"));
        if (!strcmp(name, "flaky"))
            flaky_attempts = (int)json_integer_value(json_object_get(t, "attempts"));
        if (!strcmp(name, "ign") &&
            !strcmp(json_string_value(json_object_get(t, "status")), "completed"))
            ign_completed = 1;
    }
    assert_int_equal(flaky_attempts, 2);
    assert_int_equal(ign_completed, 1);
    json_decref(st);
    json_decref(want_state);
    json_t *runs = flow_store_runs(th_store, NULL);
    assert_true(json_array_size(runs) > 0);
    json_decref(runs);
    flow_error err = {0};
    assert_null(flow_store_run(th_store, "nope", &err));
    assert_int_equal(err.code, FLOW_ENOTFOUND);
    flow_free(f);
}

/* Every time of `list`'s objects' `key` is null. */
static void assert_times_null(json_t *list, const char *key)
{
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o)
    {
        if (!json_is_null(json_object_get(o, key)))
            fail_msg("%s %zu: %s", key, i, json_string_value(json_object_get(o, key)));
    }
}

/* A journal whose times are damaged (NaN, infinities, huge, negative) reads
 * as unknown times and resumes; never undefined behaviour (the UBSan build
 * checks the conversions). */
static void test_corrupt_times(void **state)
{
    (void)state;
    static const double bad[] = {NAN, INFINITY, -INFINITY, 1e300, -1e300, -5, 9.3e18, 1.8e19};
    flow *f = big_flow(NULL);
    flow_run *r = start_durable(f, "times-src");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    json_t *want = json_incref(flow_run_result(r));
    flow_run_free(r);
    struct flow__run_meta meta = {0};
    assert_int_equal(flow__store_run_get(th_store->backend, "times-src", &meta, NULL), FLOW_OK);
    struct flow__jrec *recs;
    size_t count;
    assert_int_equal(flow__store_read_all(th_store, "times-src", &recs, &count, NULL), FLOW_OK);
    assert_true(count > 2 && recs[count - 1].type == JREC_RUN_ENDED);
    for (size_t i = 0; i < count; i++)
        recs[i].time = bad[i % (sizeof(bad) / sizeof(bad[0]))];
    snprintf(meta.id, sizeof(meta.id), "times-bad");
    meta.status = FLOW_RUN_RUNNING;
    meta.created_at = 1e308;
    meta.ended_at = NAN;
    assert_int_equal(flow__store_run_create(th_store->backend, &meta, NULL), FLOW_OK);
    /* cut before its end, so that the resume replays and finishes it */
    assert_int_equal(flow__store_append(th_store->backend, "times-bad", recs, count - 1, 0, NULL),
                     FLOW_OK);
    flow__records_free(recs, count);
    flow__run_meta_cleanup(&meta);

    json_t *st = flow_store_run(th_store, "times-bad", NULL);
    assert_non_null(st);
    assert_true(json_is_null(json_object_get(st, "created_at")));
    assert_true(json_is_null(json_object_get(st, "ended_at")));
    assert_times_null(json_object_get(st, "tasks"), "started_at");
    assert_times_null(json_object_get(st, "tasks"), "ended_at");
    json_decref(st);
    json_t *j = flow_store_journal(th_store, "times-bad", NULL);
    assert_true(json_array_size(j) == count - 1);
    assert_times_null(j, "time");
    json_decref(j);
    j = flow_store_checkpoints(th_store, "times-bad", NULL);
    assert_non_null(j);
    assert_times_null(j, "created_at");
    json_decref(j);
    j = flow_store_runs(th_store, NULL);
    assert_non_null(j);
    json_decref(j);

    flow_error err = {0};
    flow_run_options o = {.run_id = "times-bad", .store = th_store};
    r = flow_run_resume(th_engine, f, &o, &err);
    if (!r)
        fail_msg("resume: %s", err.message);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    assert_true(json_equal(flow_run_result(r), want));
    j = flow_run_to_json(r);
    assert_non_null(j);
    json_decref(j);
    flow_run_free(r);
    json_decref(want);
    flow_free(f);
}

/* ---- payloads shared by the scheduler, the writer and readers ------------ */

static const struct flow__store_ops *memory_ops;

/* The memory store's append, held up: the committer keeps its batch for a
 * while as the run goes on. */
static flow_err slow_append(void *priv, const char *run_id, const struct flow__jrec *recs,
                            size_t n, unsigned flags, flow_error *err)
{
    flow_err rc = memory_ops->append(priv, run_id, recs, n, flags, err);
    usleep(30 * 1000);
    return rc;
}

static int t_write_state(flow_ctx *ctx)
{
    usleep(10 * 1000); /* the committer has taken the first record by now */
    return flow_ctx_set_state_take(ctx, "n", json_integer(flow_ctx_attempt(ctx))) ? 1 : 0;
}

/* Under ThreadSanitizer: the run's first record holds its state; the task
 * replaces the state (dropping the run's reference) while the committer is
 * still writing that record. Whoever drops the last reference, the count is
 * changed from one thread at a time. */
static void test_writer_and_scheduler_share_the_state(void **state)
{
    (void)state;
    memory_ops = th_store->backend->ops;
    struct flow__store_ops slow = *memory_ops;
    slow.append = slow_append;
    th_store->backend->ops = &slow;
    flow *f = flow_new("shared_state", NULL);
    json_t *init = json_pack("{s:{s:[i]}}", "seed", "deep", 1);
    flow_set_initial_state(f, init);
    json_decref(init);
    th_add(f, "w", t_write_state);
    flow_run *r = start_durable(f, "shared-state");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    flow_run_free(r);
    th_store->backend->ops = memory_ops;
    flow_free(f);
}

struct journal_reader {
    const char *run_id;
    atomic_int stop;
    int reads;
};

static void *read_journal(void *arg)
{
    struct journal_reader *jr = arg;
    while (!atomic_load(&jr->stop)) {
        json_t *j = flow_store_journal(th_store, jr->run_id, NULL);
        if (j)
            jr->reads++;
        json_decref(j);
    }
    return NULL;
}

static int t_chain_link(flow_ctx *ctx)
{
    usleep(1000);
    return flow_ctx_set_output_take(ctx, json_pack("{s:i}", "at", (int)flow_ctx_activation(ctx)))
               ? 1
               : 0;
}

/* Under ThreadSanitizer: another thread reads the journal of a run that is
 * still writing it; the records it gets are its own. */
static void test_reader_of_a_live_journal(void **state)
{
    (void)state;
    flow *f = flow_new("read_live", NULL);
    flow_task *prev = NULL;
    for (int i = 0; i < 40; i++) {
        char name[16];
        snprintf(name, sizeof(name), "t%d", i);
        flow_task *t = th_add(f, name, t_chain_link);
        if (prev)
            flow_task_after(t, prev);
        prev = t;
    }
    flow_run *r = start_durable(f, "read-live");
    struct journal_reader jr = {.run_id = "read-live"};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, read_journal, &jr), 0);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    atomic_store(&jr.stop, 1);
    pthread_join(th, NULL);
    assert_true(jr.reads > 0);
    flow_run_free(r);
    flow_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_crash_point),
        cmocka_unit_test(test_ended_run_is_not_run_again),
        cmocka_unit_test(test_changed_definition_is_refused),
        cmocka_unit_test(test_newer_journal_is_refused),
        cmocka_unit_test(test_work_naming_unknown_task_is_refused),
        cmocka_unit_test(test_start_over_unended_attempt),
        cmocka_unit_test(test_pause_then_resume),
        cmocka_unit_test(test_pause_before_a_settled_join),
        cmocka_unit_test(test_interrupt_reruns_the_same_attempt),
        cmocka_unit_test(test_second_runner_is_refused),
        cmocka_unit_test(test_resumes_at_once_run_it_once),
        cmocka_unit_test(test_requests_through_the_store),
        cmocka_unit_test(test_lost_lease_stops_the_run),
        cmocka_unit_test(test_checkpoint_time_travel),
        cmocka_unit_test(test_status_from_the_journal),
        cmocka_unit_test(test_corrupt_times),
        cmocka_unit_test(test_writer_and_scheduler_share_the_state),
        cmocka_unit_test(test_reader_of_a_live_journal),
    };
    return cmocka_run_group_tests(tests, th_engine_setup, th_engine_teardown);
}
