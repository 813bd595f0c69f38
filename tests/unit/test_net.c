/* test_net.c -- what `http:` and `llm:` tasks are made of, without a
 * server (tests/e2e/test_http.sh and test_llm.sh run them against one):
 * how a status is judged, Retry-After, the snippets of messages, the
 * chat-completions request and answer, the specs the C API and the files
 * give (and every refusal); and the retry control a failing attempt has,
 * flow_ctx_fail_final and flow_ctx_retry_after, live and through a resume. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exec/http.h"
#include "exec/llm.h"
#include "util/clock.h"


/* ---- statuses, Retry-After, snippets --------------------------------------- */

static void test_judge(void **state)
{
    (void)state;
    assert_int_equal(flow__http_judge(200, NULL, 0), FLOW__HTTP_SUCCESS);
    assert_int_equal(flow__http_judge(204, NULL, 0), FLOW__HTTP_SUCCESS);
    assert_int_equal(flow__http_judge(301, NULL, 0), FLOW__HTTP_FINAL);
    assert_int_equal(flow__http_judge(404, NULL, 0), FLOW__HTTP_FINAL);
    assert_int_equal(flow__http_judge(401, NULL, 0), FLOW__HTTP_FINAL);
    assert_int_equal(flow__http_judge(408, NULL, 0), FLOW__HTTP_RETRY);
    assert_int_equal(flow__http_judge(429, NULL, 0), FLOW__HTTP_RETRY);
    assert_int_equal(flow__http_judge(500, NULL, 0), FLOW__HTTP_RETRY);
    assert_int_equal(flow__http_judge(503, NULL, 0), FLOW__HTTP_RETRY);
    int expect[] = {200, 404};
    assert_int_equal(flow__http_judge(404, expect, 2), FLOW__HTTP_SUCCESS);
    assert_int_equal(flow__http_judge(201, expect, 2), FLOW__HTTP_FINAL);
    int busy[] = {503};
    assert_int_equal(flow__http_judge(503, busy, 1), FLOW__HTTP_SUCCESS);
}

static void test_retry_after(void **state)
{
    (void)state;
    double now = flow__wall_time();
    assert_true(flow__http_retry_after("3", now) == 3);
    assert_true(flow__http_retry_after(" 120\r\n", now) == 120);
    assert_true(flow__http_retry_after("0", now) == 0);
    assert_true(flow__http_retry_after("", now) < 0);
    assert_true(flow__http_retry_after("soon", now) < 0);
    assert_true(flow__http_retry_after("-1", now) < 0);
    assert_true(flow__http_retry_after("5s", now) < 0);
    char date[64];
    time_t later = (time_t)now + 30;
    struct tm tm;
    gmtime_r(&later, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    double d = flow__http_retry_after(date, now);
    assert_true(d > 28 && d <= 31);
    time_t past = (time_t)now - 30;
    gmtime_r(&past, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    assert_true(flow__http_retry_after(date, now) == 0);
}

static void test_snippet(void **state)
{
    (void)state;
    char *s = flow__http_snippet("  {\"a\":\n1}\x01 \xc3\xa9t\xc3", 16, 100);
    assert_string_equal(s, "{\"a\": 1}? \xc3\xa9t?");
    free(s);
    s = flow__http_snippet("abcdefghij", 10, 4);
    assert_string_equal(s, "abcd...");
    free(s);
    s = flow__http_snippet("", 0, 4);
    assert_string_equal(s, "");
    free(s);
}

/* ---- chat completions ------------------------------------------------------ */

static void test_llm_endpoint(void **state)
{
    (void)state;
    const char *cases[][2] = {
        {"http://h/v1", "http://h/v1/chat/completions"},
        {"http://h/v1/", "http://h/v1/chat/completions"},
        {"http://h/v1/chat/completions", "http://h/v1/chat/completions"},
        {"http://h/chat/completions/", "http://h/chat/completions"},
        {"https://api.example.com", "https://api.example.com/chat/completions"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *u = flow__llm_endpoint(cases[i][0]);
        assert_string_equal(u, cases[i][1]);
        free(u);
    }
}

static void test_llm_request_body(void **state)
{
    (void)state;
    json_t *msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", "hi");
    struct flow__llm_call call = {.model = "m", .messages = msgs, .temperature = NAN};
    json_t *b = flow__llm_request_body(&call);
    assert_non_null(b);
    assert_string_equal(json_string_value(json_object_get(b, "model")), "m");
    assert_true(json_equal(json_object_get(b, "messages"), msgs));
    assert_null(json_object_get(b, "temperature"));
    assert_null(json_object_get(b, "max_tokens"));
    assert_null(json_object_get(b, "response_format"));
    json_decref(b);
    call.temperature = 0.5;
    call.max_tokens = 20;
    call.json = true;
    b = flow__llm_request_body(&call);
    assert_true(json_real_value(json_object_get(b, "temperature")) == 0.5);
    assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 20);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(b, "response_format"), "type")),
        "json_object");
    json_decref(b);
    json_decref(msgs);
}

static const char *answer_with(const char *content_json)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf),
             "{\"model\": \"m-1\", \"choices\": [{\"message\": {\"role\": \"assistant\", "
             "\"content\": %s}}], \"usage\": {\"prompt_tokens\": 7, \"completion_tokens\": 3, "
             "\"total_tokens\": 10}}",
             content_json);
    return buf;
}

static void test_llm_answer(void **state)
{
    (void)state;
    json_t *out = NULL, *usage = NULL;
    const char *a = answer_with("\"Hello there\"");
    char *why = flow__llm_parse_answer(a, strlen(a), false, "m", &out, &usage);
    assert_null(why);
    assert_string_equal(json_string_value(out), "Hello there");
    json_t *want = json_pack("{s:i,s:i,s:i,s:s}", "prompt_tokens", 7, "completion_tokens", 3,
                             "total_tokens", 10, "model", "m-1");
    assert_true(json_equal(usage, want));
    json_decref(want);
    json_decref(out);
    json_decref(usage);

    a = answer_with("\"```json\\n{\\\"a\\\": [1, 2]}\\n```\"");
    why = flow__llm_parse_answer(a, strlen(a), true, "m", &out, &usage);
    assert_null(why);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(out, "a"), 1)), 2);
    json_decref(out);
    json_decref(usage);

    a = answer_with("\"Sure! {a: 1}\"");
    why = flow__llm_parse_answer(a, strlen(a), true, "m", &out, &usage);
    assert_non_null(why);
    assert_non_null(strstr(why, "not JSON (json: true)"));
    assert_non_null(strstr(why, "Sure! {a: 1}"));
    assert_null(out);
    assert_null(usage);
    free(why);

    a = "{\"choices\": []}";
    why = flow__llm_parse_answer(a, strlen(a), false, "m", &out, &usage);
    assert_non_null(strstr(why, "no choices[0].message.content"));
    free(why);
    a = "<html>bad gateway</html>";
    why = flow__llm_parse_answer(a, strlen(a), false, "m", &out, &usage);
    assert_non_null(strstr(why, "not a JSON object: <html>bad gateway</html>"));
    free(why);

    /* No usage: none noted; no model in the answer: the one asked for. */
    a = "{\"choices\": [{\"message\": {\"content\": \"x\"}}], \"usage\": {\"total_tokens\": 4}}";
    why = flow__llm_parse_answer(a, strlen(a), false, "asked", &out, &usage);
    assert_null(why);
    assert_string_equal(json_string_value(json_object_get(usage, "model")), "asked");
    json_decref(out);
    json_decref(usage);
}

/* ---- specs: the C API's refusals ------------------------------------------- */

static void expect_http_refused(const char *spec_json, const char *words)
{
    flow *f = flow_new("specs", NULL);
    flow_task *t = flow_add_task(f, "t", NULL);
    json_t *spec = json_loads(spec_json, JSON_DECODE_ANY, NULL);
    assert_non_null(spec);
    flow_error err;
    memset(&err, 0, sizeof(err));
    flow_err rc = flow_task_set_http(t, spec, &err);
    if (rc == FLOW_OK || !strstr(err.message, words))
        fail_msg("%s: rc %d, '%s' (wanted '%s')", spec_json, rc, err.message, words);
    json_decref(spec);
    flow_free(f);
}

static void expect_llm_refused(const char *spec_json, const char *words)
{
    flow *f = flow_new("specs", NULL);
    flow_task *t = flow_add_task(f, "t", NULL);
    json_t *spec = json_loads(spec_json, JSON_DECODE_ANY, NULL);
    flow_error err;
    memset(&err, 0, sizeof(err));
    flow_err rc = flow_task_set_llm(t, spec, &err);
    if (rc == FLOW_OK || !strstr(err.message, words))
        fail_msg("%s: rc %d, '%s' (wanted '%s')", spec_json, rc, err.message, words);
    json_decref(spec);
    flow_free(f);
}

static void test_specs(void **state)
{
    (void)state;
    expect_http_refused("\"http://x\"", "'http' of task 't' must be a mapping");
    expect_http_refused("{}", "needs 'url'");
    expect_http_refused("{\"url\": \"ftp://x/y\"}", "must start with http:// or https://");
    expect_http_refused("{\"url\": \"file:///etc/passwd\"}", "must start with http://");
    expect_http_refused("{\"url\": \"http://x\", \"method\": \"G T\"}", "bad 'method'");
    expect_http_refused("{\"url\": \"http://x\", \"headers\": {\"A B\": \"1\"}}",
                        "bad header name 'A B'");
    expect_http_refused("{\"url\": \"http://x\", \"headers\": {\"A\": [1]}}",
                        "header 'A' in 'http' of task 't' must be a string");
    expect_http_refused("{\"url\": \"http://x\", \"headers\": {\"A\": \"a\\nb\"}}",
                        "line break");
    expect_http_refused("{\"url\": \"http://x\", \"expect\": [200, 700]}", "100 to 599");
    expect_http_refused("{\"url\": \"http://x\", \"expect\": []}", "non-empty list");
    expect_http_refused("{\"url\": \"http://x\", \"timeout\": \"5 minutes\"}",
                        "bad duration '5 minutes' for 'timeout'");
    expect_http_refused("{\"url\": \"http://x\", \"timeout\": 0}", "bad duration");
    expect_http_refused("{\"url\": \"http://x\", \"max_size\": \"2T\"}", "bad size for 'max_size'");
    expect_http_refused("{\"url\": \"http://x\", \"urls\": 1}", "unknown key 'urls'");
    expect_http_refused("{\"url\": \"http://x/{{ inputs.\"}", "'url' in 'http' of task 't'");
    expect_http_refused("{\"url\": \"http://x\", \"ca_file\": \"{{ inputs.ca }}\"}",
                        "'ca_file'");
    expect_llm_refused("{\"model\": \"m\"}", "needs either 'prompt'");
    expect_llm_refused("{\"prompt\": \"a\", \"messages\": [{\"role\": \"user\", \"content\": "
                       "\"b\"}]}",
                       "not both");
    expect_llm_refused("{\"prompt\": {\"name\": \"p\"}}", "no prompt 'p'");
    expect_llm_refused("{\"prompt\": [1]}", "'prompt' in 'llm' of task 't' must be a string");
    expect_llm_refused("{\"messages\": []}", "non-empty list");
    expect_llm_refused("{\"messages\": [{\"content\": \"b\"}]}", "needs a 'role'");
    expect_llm_refused("{\"messages\": [{\"role\": \"user\"}]}", "needs a 'content' string");
    expect_llm_refused("{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"name\": 1}]}",
                       "unknown key 'name' in item 1 of 'messages'");
    expect_llm_refused("{\"prompt\": \"a\", \"temperature\": 3}", "from 0 to 2");
    expect_llm_refused("{\"prompt\": \"a\", \"max_tokens\": 0}", "positive integer");
    expect_llm_refused("{\"prompt\": \"a\", \"json\": \"yes\"}", "true or false");

    /* What is accepted validates, and describes itself. */
    flow *f = flow_new("ok", NULL);
    flow_task *h = flow_add_task(f, "h", NULL);
    flow_task *l = flow_add_task(f, "l", NULL);
    json_t *hs = json_pack("{s:s,s:s,s:{s:s},s:{s:s},s:[i,i],s:s,s:s}", "url",
                           "https://example.com/{{ inputs.id }}", "method", "patch", "headers",
                           "X-Id", "{{ inputs.id }}", "body", "v", "{{ inputs.v }}", "expect", 200,
                           204, "timeout", "2s", "max_size", "512K");
    json_t *ls = json_pack("{s:s,s:s,s:b,s:f,s:i}", "model", "m", "prompt", "Say {{ inputs.v }}",
                           "json", 1, "temperature", 0.5, "max_tokens", 10);
    flow_error err;
    assert_int_equal(flow_task_set_http(h, hs, &err), FLOW_OK);
    assert_int_equal(flow_task_set_llm(l, ls, &err), FLOW_OK);
    assert_int_equal(flow_validate(f, NULL, &err), FLOW_OK);
    json_t *d = flow_describe(f);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(d, "tasks"), 0), "kind")), "http");
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(d, "tasks"), 1), "executor")), "thread");
    json_decref(d);
    json_decref(hs);
    json_decref(ls);
    /* Not on a worker, not inline. */
    flow_task_set_executor(h, FLOW_EXEC_REMOTE);
    assert_int_equal(flow_validate(f, NULL, &err), FLOW_EVALIDATION);
    assert_non_null(strstr(err.message, "an 'http' task runs on the engine's threads"));
    flow_task_set_executor(h, FLOW_EXEC_INLINE);
    assert_int_equal(flow_validate(f, NULL, &err), FLOW_EVALIDATION);
    flow_free(f);
}

/* A secret may be named in an http request's url, headers and body, never
 * in its method nor in a model's messages. */
static void test_secrets_in_specs(void **state)
{
    (void)state;
    flow *f = flow_new("sec", NULL);
    flow_add_secret(f, "NET_TOKEN");
    flow_task *h = flow_add_task(f, "h", NULL);
    json_t *hs = json_pack("{s:s,s:{s:s},s:s}", "url", "http://x/?k={{ secrets.NET_TOKEN }}",
                           "headers", "Authorization", "Bearer {{ secrets.NET_TOKEN }}", "body",
                           "{{ secrets.NET_TOKEN }}");
    flow_error err;
    assert_int_equal(flow_task_set_http(h, hs, &err), FLOW_OK);
    assert_int_equal(flow_validate(f, NULL, &err), FLOW_OK);
    json_decref(hs);
    flow_task *l = flow_add_task(f, "l", NULL);
    json_t *ls = json_pack("{s:s}", "prompt", "the key is {{ secrets.NET_TOKEN }}");
    assert_int_equal(flow_task_set_llm(l, ls, &err), FLOW_OK);
    assert_int_equal(flow_validate(f, NULL, &err), FLOW_EVALIDATION);
    assert_non_null(strstr(err.message, "can only be used in 'env' values"));
    json_decref(ls);
    flow_free(f);
}

/* ---- flow_ctx_fail_final, flow_ctx_retry_after ----------------------------- */

static atomic_int tries;

static int t_final(flow_ctx *ctx)
{
    atomic_fetch_add(&tries, 1);
    flow_ctx_fail_final(ctx, "HTTP 404 from GET %s", "http://x/");
    return 1;
}

static void test_fail_final(void **state)
{
    (void)state;
    atomic_store(&tries, 0);
    flow *f = flow_new("final", NULL);
    flow_task *t = th_add(f, "t", t_final);
    flow_task_set_retries(t, 3);
    flow_run *r = NULL;
    assert_int_equal(th_run(th_engine, f, NULL, &r), FLOW_RUN_FAILED);
    assert_int_equal(atomic_load(&tries), 1);
    assert_non_null(strstr(flow_run_error(r), "HTTP 404 from GET http://x/"));
    flow_run_free(r);
    flow_free(f);
}

static int t_busy_once(flow_ctx *ctx)
{
    if (atomic_fetch_add(&tries, 1) == 0) {
        assert_int_equal(flow_ctx_retry_after(ctx, -1), FLOW_EINVAL);
        assert_int_equal(flow_ctx_retry_after(ctx, NAN), FLOW_EINVAL);
        assert_int_equal(flow_ctx_retry_after(ctx, 0.3), FLOW_OK);
        flow_ctx_fail(ctx, "busy");
        return 1;
    }
    return flow_ctx_set_output_take(ctx, json_string("done")) ? 1 : 0;
}

static double retry_delay;
static atomic_int retry_seen; /* set after retry_delay */

static void on_event(const flow_event *ev, void *udata)
{
    (void)udata;
    if (ev->type == FLOW_EV_TASK_RETRYING) {
        retry_delay = ev->delay;
        atomic_store(&retry_seen, 1);
    }
}

/* The delay asked for replaces the backoff (10 s here), once. */
static void test_retry_after_delay(void **state)
{
    (void)state;
    atomic_store(&tries, 0);
    retry_delay = -1;
    flow *f = flow_new("later", NULL);
    flow_task *t = th_add(f, "t", t_busy_once);
    flow_task_set_retries(t, 2);
    flow_backoff b = {.delay = 10, .factor = 2, .max_delay = 60};
    flow_task_set_backoff(t, &b);
    flow_run_options o = {.on_event = on_event, .store = th_store, .run_id = "later"};
    double t0 = flow__wall_time();
    flow_run *r = flow_run_start(th_engine, f, &o, NULL);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    double took = flow__wall_time() - t0;
    assert_true(took >= 0.28);
    assert_true(took < 5);
    assert_int_equal(atomic_load(&tries), 2);
    assert_true(fabs(retry_delay - 0.3) < 1e-9);
    flow_run_free(r);
    /* The journal keeps the delay taken. */
    json_t *log = flow_store_journal(th_store, "later", NULL);
    bool seen = false;
    for (size_t i = 0; i < json_array_size(log); i++) {
        json_t *rec = json_array_get(log, i);
        if (!strcmp(json_string_value(json_object_get(rec, "type")), "act_retrying"))
            seen = fabs(json_number_value(json_object_get(rec, "delay")) - 0.3) < 1e-9;
    }
    assert_true(seen);
    json_decref(log);
    flow_free(f);
}

static int t_years(flow_ctx *ctx)
{
    assert_int_equal(flow_ctx_retry_after(ctx, 1e9), FLOW_OK); /* a server's Retry-After */
    flow_ctx_fail(ctx, "busy for ever");
    return 1;
}

/* A delay asked for is honoured up to an hour (the backoff's max_delay is
 * shorter here): one bad answer does not park a run for years. */
static void test_retry_after_capped(void **state)
{
    (void)state;
    retry_delay = -1;
    atomic_store(&retry_seen, 0);
    flow *f = flow_new("years", NULL);
    flow_task *t = th_add(f, "t", t_years);
    flow_task_set_retries(t, 1);
    flow_run_options o = {.on_event = on_event};
    flow_run *r = flow_run_start(th_engine, f, &o, NULL);
    assert_non_null(r);
    struct timespec tick = {0, 10000000L};
    for (int i = 0; i < 500 && !atomic_load(&retry_seen); i++)
        nanosleep(&tick, NULL);
    assert_true(fabs(retry_delay - 3600) < 1e-9);
    flow_run_cancel(r, "enough");
    assert_int_equal(flow_run_wait(r), FLOW_RUN_CANCELLED);
    flow_run_free(r);
    flow_free(f);
}

static int t_pause(flow_ctx *ctx)
{
    return flow_ctx_pause(ctx, "lunch") ? 1 : 0;
}

/* A failure that asked for no retry stays failed through a resume: replay
 * follows the journal's act_failed, not the retries the policy has left. */
static void test_final_survives_resume(void **state)
{
    (void)state;
    atomic_store(&tries, 0);
    flow *f = flow_new("final-resume", NULL);
    flow_task *t = th_add(f, "t", t_final);
    flow_task_set_retries(t, 3);
    flow_task_set_on_error(t, FLOW_ON_ERROR_CONTINUE);
    flow_task *p = th_add(f, "p", t_pause);
    flow_task_optional(p, t);
    flow_task *q = th_add(f, "q", NULL);
    flow_task_after(q, p);
    flow_run_options o = {.store = th_store, .run_id = "final-resume"};
    flow_run *r = flow_run_start(th_engine, f, &o, NULL);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_PAUSED);
    flow_run_free(r);
    assert_int_equal(atomic_load(&tries), 1);
    flow_error err;
    r = flow_run_resume(th_engine, f, &o, &err);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_FAILED);
    assert_int_equal(atomic_load(&tries), 1);
    assert_int_equal(th_count_acts(r, "t", FLOW_ACT_FAILED), 1);
    assert_int_equal(th_count_acts(r, "q", FLOW_ACT_COMPLETED), 1);
    flow_run_free(r);
    flow_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_judge),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_snippet),
        cmocka_unit_test(test_llm_endpoint),
        cmocka_unit_test(test_llm_request_body),
        cmocka_unit_test(test_llm_answer),
        cmocka_unit_test(test_specs),
        cmocka_unit_test(test_secrets_in_specs),
        cmocka_unit_test(test_fail_final),
        cmocka_unit_test(test_retry_after_delay),
        cmocka_unit_test(test_retry_after_capped),
        cmocka_unit_test(test_final_survives_resume),
    };
    return cmocka_run_group_tests(tests, th_engine_setup, th_engine_teardown);
}
