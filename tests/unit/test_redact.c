/* test_redact.c -- secrets (util/redact.c, def/secrets.c, store/secrets.c):
 * sets read from the environment, every occurrence replaced in text and in
 * JSON (keys, numbers, JSON-escaped forms, longest first), what a worker
 * fills in, the API and its validation, and a run with secrets whose store,
 * events, result, error and activations hold none of them while its tasks
 * get the real values. Allocation failures leak nothing. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/remote_wire.h"
#include "util/alloc.h"
#include "util/redact.h"

static struct flow__secrets *set_of(const char *const *names, size_t n)
{
    struct flow__secrets *s = NULL;
    assert_int_equal(flow__secrets_from_env(names, n, false, &s, NULL), FLOW_OK);
    return s;
}

static char *redacted(const struct flow__secrets *s, const char *text)
{
    char *out = NULL;
    assert_int_equal(flow__redact_text(s, text, strlen(text), &out, NULL), FLOW_OK);
    return out;
}

static void test_from_env(void **state)
{
    (void)state;
    setenv("TR_A", "alpha-secret", 1);
    setenv("TR_SHORT", "ab", 1);
    unsetenv("TR_UNSET");
    const char *names[] = {"TR_A", "TR_UNSET", "TR_SHORT", "TR_A"};
    struct flow__secrets *s = NULL;
    const char *missing = NULL;
    assert_int_equal(flow__secrets_from_env(names, 4, true, &s, &missing), FLOW_ENOTFOUND);
    assert_null(s);
    assert_string_equal(missing, "TR_UNSET");
    /* Without need_all, names not set are left out; duplicates taken once. */
    s = set_of(names, 4);
    assert_int_equal(flow__secrets_count(s), 2);
    assert_string_equal(flow__secrets_get(s, "TR_A"), "alpha-secret");
    assert_string_equal(flow__secrets_get(s, "TR_SHORT"), "ab");
    assert_null(flow__secrets_get(s, "TR_UNSET"));
    /* The short one is kept for the tasks but not redacted. */
    char *out = redacted(s, "ab alpha-secret ab");
    assert_string_equal(out, "ab *** ab");
    flow__free(out);
    assert_null(redacted(s, "nothing here"));
    flow__secrets_unref(s);
    /* No names: NULL, the empty set, redacts nothing. */
    assert_int_equal(flow__secrets_from_env(names, 0, true, &s, NULL), FLOW_OK);
    assert_null(s);
    assert_false(flow__secrets_redact_any(NULL));
    assert_null(redacted(NULL, "alpha-secret"));
}

static void test_text(void **state)
{
    (void)state;
    setenv("TR_LONG", "abcdefgh", 1);
    setenv("TR_PART", "abcd", 1);
    setenv("TR_QUOTE", "p\"q\\r-s", 1);
    const char *names[] = {"TR_PART", "TR_LONG", "TR_QUOTE"};
    struct flow__secrets *s = set_of(names, 3);
    /* Longest first: the value that holds another goes whole. */
    char *out = redacted(s, "xxabcdefghxx abcdabcd abc");
    assert_string_equal(out, "xx***xx ****** abc");
    flow__free(out);
    /* Inside JSON text (a command's stdout), the escaped form is found too. */
    out = redacted(s, "{\"v\": \"p\\\"q\\\\r-s\"} and raw p\"q\\r-s");
    assert_string_equal(out, "{\"v\": \"***\"} and raw ***");
    flow__free(out);
    /* Percent-encoded, as `| url` puts it in a URL's query, too. */
    out = redacted(s, "GET /x?key=p%22q%5Cr-s&y=1");
    assert_string_equal(out, "GET /x?key=***&y=1");
    flow__free(out);
    char *dup = flow__redact_dup(s, "plain");
    assert_string_equal(dup, "plain");
    flow__free(dup);
    assert_null(flow__redact_dup(s, NULL));
    char *swap = flow__strdup("id=abcdefgh;");
    assert_int_equal(flow__redact_str_swap(s, &swap), FLOW_OK);
    assert_string_equal(swap, "id=***;");
    flow__free(swap);
    flow__secrets_unref(s);
}

static void test_json(void **state)
{
    (void)state;
    setenv("TR_TOKEN", "tok-123", 1);
    setenv("TR_PIN", "765432", 1);
    const char *names[] = {"TR_TOKEN", "TR_PIN"};
    struct flow__secrets *s = set_of(names, 2);
    /* A key, a string inside a list, a number whose text holds a value. */
    json_t *v = json_loads("{\"a\": \"x tok-123 y\", \"list\": [\"fine\", 9876543210, 0.5, true, "
                           "null, \"tok-123\"], \"tok-123\": {\"k\": \"tok-123\"}, \"n\": 42, "
                           "\"b\": \"untouched\"}",
                           0, NULL);
    json_t *out = NULL;
    assert_int_equal(flow__redact_json(s, v, &out), FLOW_OK);
    json_t *want = json_loads("{\"a\": \"x *** y\", \"list\": [\"fine\", \"***\", 0.5, true, "
                              "null, \"***\"], \"***\": {\"k\": \"***\"}, \"n\": 42, "
                              "\"b\": \"untouched\"}",
                              0, NULL);
    if (!json_equal(out, want)) {
        char *o = json_dumps(out, 0);
        fail_msg("got %s", o);
    }
    /* The copy shares nothing with the original, which is untouched. */
    assert_int_equal(v->refcount, 1);
    assert_string_equal(json_string_value(json_object_get(v, "a")), "x tok-123 y");
    assert_true(json_object_get(out, "b") != json_object_get(v, "b"));
    json_decref(want);
    json_decref(out);
    /* Nothing to replace: no copy. */
    json_t *clean = json_pack("{s:[i, s]}", "x", 1, "y");
    assert_int_equal(flow__redact_json(s, clean, &out), FLOW_OK);
    assert_null(out);
    assert_false(flow__redact_json_hits(s, clean));
    assert_true(flow__redact_json_hits(s, v));
    json_t *swap = json_incref(clean);
    assert_int_equal(flow__redact_json_swap(s, &swap), FLOW_OK);
    assert_ptr_equal(swap, clean);
    json_decref(swap);
    json_decref(clean);
    /* Each allocation failing once: an error, never a half-redacted value. */
    bool done = false;
    for (size_t n = 1; !done && n < 200; n++) {
        flow__alloc_fail_at(n);
        out = NULL;
        flow_err rc = flow__redact_json(s, v, &out);
        done = flow__alloc_fail_at(0) < n;
        if (rc == FLOW_OK) {
            assert_non_null(out);
            assert_false(flow__redact_json_hits(s, out));
        } else {
            assert_int_equal(rc, FLOW_ENOMEM);
            assert_null(out);
        }
        json_decref(out);
    }
    assert_true(done);
    json_decref(v);
    flow__secrets_unref(s);
}

static void test_union(void **state)
{
    (void)state;
    setenv("TR_U1", "first-value", 1);
    setenv("TR_U2", "second-value", 1);
    const char *n1[] = {"TR_U1"};
    const char *n2[] = {"TR_U2", "TR_U1"};
    struct flow__secrets *a = set_of(n1, 1), *b = set_of(n2, 2), *u = NULL, *same = NULL;
    assert_int_equal(flow__secrets_union(a, b, &u), FLOW_OK);
    assert_int_equal(flow__secrets_count(u), 2);
    char *out = redacted(u, "first-value second-value");
    assert_string_equal(out, "*** ***");
    flow__free(out);
    /* Adding nothing new gives the same set back. */
    assert_int_equal(flow__secrets_union(u, a, &same), FLOW_OK);
    assert_ptr_equal(same, u);
    flow__secrets_unref(same);
    assert_int_equal(flow__secrets_union(NULL, a, &same), FLOW_OK);
    assert_ptr_equal(same, a);
    flow__secrets_unref(same);
    assert_int_equal(flow__secrets_union(NULL, NULL, &same), FLOW_OK);
    assert_null(same);
    flow__secrets_unref(u);
    flow__secrets_unref(a);
    flow__secrets_unref(b);
}

static void test_worker_fill(void **state)
{
    (void)state;
    setenv("TR_W", "worker-value", 1);
    const char *names[] = {"TR_W", "TR_GONE", NULL};
    struct flow__secrets *s = set_of(names, 1);
    char *out = NULL, *why = NULL;
    assert_true(flow__rw_fill_secrets("A=x {{ secrets.TR_W }} {{ secrets.OTHER }} {{ secrets.TR_W }}",
                                      names, s, &out, &why));
    assert_string_equal(out, "A=x worker-value {{ secrets.OTHER }} worker-value");
    flow__free(out);
    assert_true(flow__rw_fill_secrets("B=plain", names, s, &out, &why));
    assert_null(out);
    assert_true(flow__rw_fill_secrets("B={{ secrets.TR_W }}", NULL, s, &out, &why));
    assert_null(out); /* the runner named none: nothing to fill in */
    assert_false(flow__rw_fill_secrets("C={{ secrets.TR_GONE }}", names, s, &out, &why));
    assert_string_equal(why, "secret 'TR_GONE' is not set in the worker's environment");
    flow__free(why);
    flow__secrets_unref(s);
}

static void test_api(void **state)
{
    (void)state;
    flow *f = flow_new("api", NULL);
    assert_int_equal(flow_add_secret(f, "GOOD_1"), FLOW_OK);
    assert_int_equal(flow_add_secret(f, "GOOD_1"), FLOW_EEXISTS);
    assert_int_equal(flow_add_secret(f, "1BAD"), FLOW_EINVAL);
    assert_int_equal(flow_add_secret(f, "A-B"), FLOW_EINVAL);
    assert_int_equal(flow_add_secret(f, ""), FLOW_EINVAL);
    assert_int_equal(flow_add_secret(f, NULL), FLOW_EINVAL);
    assert_int_equal(flow_secret_count(f), 1);
    assert_string_equal(flow_secret_at(f, 0), "GOOD_1");
    assert_null(flow_secret_at(f, 1));
    flow_task *t = flow_add_task(f, "t", NULL);
    const char *argv[] = {"echo", "{{ secrets.GOOD_1 }}", NULL};
    assert_int_equal(flow_task_set_command(t, argv, NULL), FLOW_OK);
    flow_diags *d = flow_diags_new();
    flow_error err;
    assert_int_equal(flow_validate(f, d, &err), FLOW_EVALIDATION);
    assert_non_null(strstr(flow_diags_get(d, 0, NULL)->message, "only be used in 'env'"));
    flow_diags_free(d);
    const char *plain[] = {"echo", NULL};
    assert_int_equal(flow_task_set_command(t, plain, NULL), FLOW_OK);
    assert_int_equal(flow_task_set_env(t, "X", "{{ secrets.NOT_LISTED }}", NULL), FLOW_OK);
    d = flow_diags_new();
    assert_int_equal(flow_validate(f, d, &err), FLOW_EVALIDATION);
    assert_non_null(strstr(flow_diags_get(d, 0, NULL)->message, "names no secret"));
    flow_diags_free(d);
    assert_int_equal(flow_task_set_env(t, "X", "{{ secrets.GOOD_1 }}", NULL), FLOW_OK);
    assert_int_equal(flow_validate(f, NULL, &err), FLOW_OK);
    flow_free(f);
}

/* ---- a run ------------------------------------------------------------------ */

#define SECRET "run-secret-0042"

static int leaks(flow_ctx *ctx)
{
    flow_ctx_set_state_take(ctx, "kept", json_string("state " SECRET));
    return flow_ctx_set_output_take(ctx, json_pack("{s:s}", "out", SECRET)) ? 1 : 0;
}

static int reads(flow_ctx *ctx)
{
    /* Inside the run, the real value. */
    json_t *dep = flow_ctx_dep(ctx, "leaks");
    json_t *st = flow_ctx_get_state(ctx, "kept");
    bool real = !strcmp(json_string_value(json_object_get(dep, "out")), SECRET) &&
                !strcmp(json_string_value(st), "state " SECRET);
    json_decref(st);
    if (!real) {
        flow_ctx_fail(ctx, "the task did not get the real value");
        return 1;
    }
    flow_ctx_fail(ctx, "failing with %s", SECRET);
    return 1;
}

static char events_seen[4096];

static void on_event(const flow_event *ev, void *udata)
{
    (void)udata;
    size_t n = strlen(events_seen);
    snprintf(events_seen + n, sizeof(events_seen) - n, "%s|", ev->error ? ev->error : "");
}

static void test_run(void **state)
{
    (void)state;
    flow *f = flow_new("secret_run", NULL);
    assert_int_equal(flow_add_secret(f, "TR_RUN"), FLOW_OK);
    flow_task *a = th_add(f, "leaks", leaks);
    flow_task *b = th_add(f, "reads", reads);
    flow_task_after(b, a);
    flow_engine *e = flow_engine_new(NULL, NULL);
    flow_store *st = flow_store_open("memory:", NULL);
    flow_run_options o = {.store = st, .run_id = "r1", .on_event = on_event};
    flow_error err;
    unsetenv("TR_RUN");
    assert_null(flow_run_start(e, f, &o, &err));
    assert_int_equal(err.code, FLOW_EINVAL);
    assert_non_null(strstr(err.message, "secret 'TR_RUN' is not set"));
    json_t *none = flow_store_run(st, "r1", NULL);
    assert_null(none); /* nothing was written */

    setenv("TR_RUN", SECRET, 1);
    json_t *inputs = json_pack("{s:s}", "given", "in " SECRET);
    o.inputs = inputs;
    flow_run *r = flow_run_start(e, f, &o, &err);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_FAILED);
    assert_string_equal(flow_run_error(r), "task 'reads' failed: failing with ***");
    assert_null(strstr(events_seen, SECRET));
    assert_non_null(strstr(events_seen, "failing with ***"));
    for (size_t i = 0; i < flow_run_activation_count(r); i++) {
        flow_activation_info info;
        assert_int_equal(flow_run_activation(r, i, &info), FLOW_OK);
        char *text = info.output ? json_dumps(info.output, JSON_ENCODE_ANY) : NULL;
        assert_true(!text || !strstr(text, SECRET));
        assert_true(!info.error || !strstr(info.error, SECRET));
        free(text);
    }
    json_t *doc = flow_run_to_json(r);
    char *text = json_dumps(doc, JSON_ENCODE_ANY);
    assert_null(strstr(text, SECRET));
    assert_non_null(strstr(text, "***"));
    free(text);
    json_decref(doc);
    flow_run_free(r);
    /* The store: journal and run, inputs included. */
    json_t *j = flow_store_journal(st, "r1", &err);
    json_t *run = flow_store_run(st, "r1", &err);
    assert_non_null(j);
    assert_non_null(run);
    text = json_dumps(j, JSON_ENCODE_ANY);
    char *rtext = json_dumps(run, JSON_ENCODE_ANY);
    assert_null(strstr(text, SECRET));
    assert_null(strstr(rtext, SECRET));
    assert_non_null(strstr(text, "state ***"));
    assert_non_null(strstr(text, "in ***"));
    free(text);
    free(rtext);
    json_decref(j);
    json_decref(run);
    json_decref(inputs);
    flow_store_close(st);
    flow_engine_free(e);
    flow_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_from_env),  cmocka_unit_test(test_text),
        cmocka_unit_test(test_json),      cmocka_unit_test(test_union),
        cmocka_unit_test(test_worker_fill), cmocka_unit_test(test_api),
        cmocka_unit_test(test_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
