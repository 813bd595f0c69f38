/* test_template.c -- templates (compile, render, filters, errors, refs),
 * shell quoting checked through a real /bin/sh, and durations. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "def/template.h"
#include "util/alloc.h"
#include "util/error.h"

/* A scope over a JSON object of roots: {"inputs": {...}, "state": {...}}. */
static json_t *roots_lookup(void *udata, const struct flow__tmpl_path *path, flow_error *err)
{
    json_t *base = json_object_get(udata, path->segs[0].key);
    if (!base) {
        flow__error(err, FLOW_ETEMPLATE, "'%s' is not available", path->segs[0].key);
        return NULL;
    }
    json_t *v = flow__tmpl_walk(base, path, 1, err);
    return v ? json_incref(v) : NULL;
}

static json_t *roots;
static struct flow__tmpl_scope scope = {roots_lookup, NULL};

static int setup(void **state)
{
    (void)state;
    roots = json_loads("{\"inputs\": {\"n\": 5, \"s\": \"it's\", \"r\": 0.1, \"b\": true,"
                       " \"z\": null, \"obj\": {\"a\": [1, 2], \"k e y\": \"spaced\","
                       " \"q\\\"\": \"quoted\"}, \"list\": [\"x\", \"y\", \"z\"]},"
                       " \"state\": {\"count\": 2}}",
                       0, NULL);
    scope.udata = roots;
    return roots ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    json_decref(roots);
    return 0;
}

/* Render a template string to a new string (caller frees); NULL on error
 * with the message in `err`. */
static char *render_str(const char *tmpl, flow_error *err)
{
    struct flow__tmpl *t = NULL;
    if (flow__tmpl_compile_string(tmpl, &t, err) != FLOW_OK)
        return NULL;
    char *out = NULL;
    flow_err rc = flow__tmpl_render_string(t, &scope, &out, err);
    flow__tmpl_free(t);
    return rc == FLOW_OK ? out : NULL;
}

static void assert_renders(const char *tmpl, const char *expected)
{
    flow_error err;
    flow__error_clear(&err);
    char *out = render_str(tmpl, &err);
    if (!out)
        fail_msg("'%s' failed: %s", tmpl, err.message);
    if (strcmp(out, expected) != 0)
        fail_msg("'%s' rendered '%s', expected '%s'", tmpl, out, expected);
    flow__free(out);
}

/* Compiling or rendering `tmpl` fails with a message holding `needle`. */
static void assert_fails(const char *tmpl, const char *needle)
{
    flow_error err;
    flow__error_clear(&err);
    char *out = render_str(tmpl, &err);
    if (out)
        fail_msg("'%s' rendered '%s' but should fail", tmpl, out);
    assert_int_equal(err.code, FLOW_ETEMPLATE);
    if (!strstr(err.message, needle))
        fail_msg("'%s': message '%s' lacks '%s'", tmpl, err.message, needle);
}

/* A static value renders to a copy: the template belongs to its flow, and
 * runs of one flow on several engines count the references of what they get
 * under different locks. */
static void test_static_is_copied(void **state)
{
    (void)state;
    json_t *v = json_pack("{s:s, s:[i, s]}", "a", "plain", "b", 1, "no braces");
    struct flow__tmpl *t = NULL;
    assert_int_equal(flow__tmpl_compile(v, &t, NULL), FLOW_OK);
    assert_true(flow__tmpl_is_static(t));
    json_t *out = NULL;
    assert_int_equal(flow__tmpl_render(t, &scope, &out, NULL), FLOW_OK);
    assert_true(json_equal(out, v));
    assert_ptr_not_equal(out, v);
    json_decref(out);
    flow__tmpl_free(t);
    json_decref(v);

    assert_int_equal(flow__tmpl_compile_string("echo", &t, NULL), FLOW_OK);
    assert_true(flow__tmpl_is_static(t));
    char *s = NULL;
    assert_int_equal(flow__tmpl_render_string(t, &scope, &s, NULL), FLOW_OK);
    assert_string_equal(s, "echo");
    flow__free(s);
    flow__tmpl_free(t);

    assert_int_equal(flow__tmpl_compile_string("a {{ inputs.n }}", &t, NULL), FLOW_OK);
    assert_false(flow__tmpl_is_static(t));
    flow__tmpl_free(t);
}

static void test_whole_value_keeps_type(void **state)
{
    (void)state;
    struct flow__tmpl *t = NULL;
    json_t *out = NULL;
    assert_int_equal(flow__tmpl_compile_string("{{ inputs.obj }}", &t, NULL), FLOW_OK);
    assert_int_equal(flow__tmpl_render(t, &scope, &out, NULL), FLOW_OK);
    assert_true(json_is_object(out));
    assert_true(json_equal(out, json_object_get(json_object_get(roots, "inputs"), "obj")));
    json_decref(out);
    flow__tmpl_free(t);

    assert_int_equal(flow__tmpl_compile_string("{{inputs.n}}", &t, NULL), FLOW_OK);
    assert_int_equal(flow__tmpl_render(t, &scope, &out, NULL), FLOW_OK);
    assert_true(json_is_integer(out));
    assert_int_equal(json_integer_value(out), 5);
    json_decref(out);
    flow__tmpl_free(t);

    /* Any text around it, or a filter, makes a string. */
    assert_int_equal(flow__tmpl_compile_string(" {{ inputs.n }}", &t, NULL), FLOW_OK);
    assert_int_equal(flow__tmpl_render(t, &scope, &out, NULL), FLOW_OK);
    assert_true(json_is_string(out));
    assert_string_equal(json_string_value(out), " 5");
    json_decref(out);
    flow__tmpl_free(t);

    assert_int_equal(flow__tmpl_compile_string("{{ inputs.n | json }}", &t, NULL), FLOW_OK);
    assert_int_equal(flow__tmpl_render(t, &scope, &out, NULL), FLOW_OK);
    assert_string_equal(json_string_value(out), "5");
    json_decref(out);
    flow__tmpl_free(t);
}

static void test_string_rendering(void **state)
{
    (void)state;
    assert_renders("n={{ inputs.n }} s={{ inputs.s }}", "n=5 s=it's");
    assert_renders("{{ inputs.r }}", "0.1");
    assert_renders("{{ inputs.b }}/{{ inputs.z }}", "true/null");
    assert_renders("obj={{ inputs.obj.a }}", "obj=[1,2]");
    assert_renders("{{ state.count }}{{ state.count }}", "22");
    assert_renders("tail }} and { single", "tail }} and { single");
    assert_renders("{{\tinputs.n\n}}", "5");
    /* render_string of a whole-value template writes non-strings as JSON */
    assert_renders("{{ inputs.obj.a }}", "[1,2]");
    assert_renders("{{ inputs.s }}", "it's");
}

static void test_paths_indexes_and_quoted_keys(void **state)
{
    (void)state;
    assert_renders("{{ inputs.list[0] }}", "x");
    assert_renders("{{ inputs.list[ 2 ] }}", "z");
    assert_renders("{{ inputs.list[-1] }}", "z");
    assert_renders("{{ inputs.obj[\"k e y\"] }}", "spaced");
    assert_renders("{{ inputs.obj['k e y'] }}", "spaced");
    assert_renders("{{ inputs.obj[\"q\\\"\"] }}", "quoted");
    assert_renders("{{ inputs[\"obj\"].a[1] }}", "2");
}

static void test_filters(void **state)
{
    (void)state;
    assert_renders("{{ inputs.s | json }}", "\"it's\"");
    assert_renders("{{ inputs.obj.a | json }}", "[1,2]");
    assert_renders("{{ inputs.s | shell }}", "'it'\\''s'");
    assert_renders("{{ inputs.n | shell }}", "'5'");
    assert_renders("{{ inputs.obj.a|shell }}", "'[1,2]'");
    assert_renders("{{ inputs.s | json | shell }}", "'\"it'\\''s\"'");
    assert_renders("{{ inputs.s | shell | json }}", "\"'it'\\\\''s'\"");
    /* url: percent-encoded but for A-Z a-z 0-9 - . _ ~ */
    assert_renders("{{ inputs.s | url }}", "it%27s");
    assert_renders("q={{ inputs.obj['k e y'] | url }}&n={{ inputs.n | url }}", "q=spaced&n=5");
    assert_renders("{{ inputs.obj.a | url }}", "%5B1%2C2%5D");
    assert_renders("{{ inputs.obj.a | json | url }}", "%5B1%2C2%5D");
    assert_renders("{{ inputs.s | url | shell }}", "'it%27s'");
}

static void test_missing_values_are_clear_errors(void **state)
{
    (void)state;
    assert_fails("x {{ inputs.missing }}", "'inputs.missing' is not set");
    assert_fails("x {{ inputs.missing }}", "{{ inputs.missing }}");
    assert_fails("{{ inputs.obj.a[5] }}", "index 5 is out of range: 'inputs.obj.a' has 2 items");
    assert_fails("{{ inputs.s.deeper }}", "'inputs.s' is a string, not an object");
    assert_fails("{{ inputs.obj[0] }}", "'inputs.obj' is an object, not a list");
    assert_fails("{{ inputs.obj[\"no such\"] }}", "'inputs.obj[\"no such\"]' is not set");
    assert_fails("{{ env.HOME }}", "'env' is not available");
}

static void test_syntax_errors(void **state)
{
    (void)state;
    assert_fails("a {{ inputs.n", "unclosed '{{' in '{{ inputs.n'");
    assert_fails("a {{ inputs.n }", "unclosed '{{'");
    assert_fails("{{ nosuch.x }}", "unknown root 'nosuch'");
    assert_fails("{{ inputs.n | upper }}", "unknown filter 'upper'");
    assert_fails("{{ }}", "empty expression in '{{ }}'");
    assert_fails("{{ inputs.n inputs.s }}", "unexpected 'i'");
    assert_fails("{{ inputs. }}", "expected a key after '.'");
    assert_fails("{{ inputs.list[x] }}", "expected a number or a quoted key");
    assert_fails("{{ inputs.obj[\"open }}", "unclosed quote");
    assert_fails("{{ inputs.n | }}", "expected a filter name");
    assert_fails("{{ 5 }}", "expected a path");
    assert_fails("{{ tasks.a.nope }}", "expected 'tasks.NAME.output'");
    assert_fails("{{ tasks.a.status.x }}", "expected 'tasks.NAME.output'");
    assert_fails("{{ tasks }}", "expected 'tasks.NAME.output'");
    assert_fails("{{ run.user }}", "expected 'run.id' or 'run.name'");
    assert_fails("{{ env }}", "expected 'env.NAME'");
    assert_fails("{{ index.x }}", "'index' is a number");

    /* Errors in nested values name the bad string. */
    json_t *v = json_pack("{s:[s, s]}", "a", "fine", "{{ bad");
    struct flow__tmpl *t = NULL;
    flow_error err;
    assert_int_equal(flow__tmpl_compile(v, &t, &err), FLOW_ETEMPLATE);
    assert_null(t);
    assert_non_null(strstr(err.message, "'{{ bad'"));
    json_decref(v);
}

static int collect_ref(const struct flow__tmpl_path *path, void *udata)
{
    json_t *list = udata;
    char *text = flow__tmpl_path_text(path, path->count);
    json_array_append_new(list, json_string(text));
    flow__free(text);
    return 0;
}

static int stop_at_second(const struct flow__tmpl_path *path, void *udata)
{
    (void)path;
    int *n = udata;
    return ++*n == 2 ? 42 : 0;
}

static void test_refs_in_order(void **state)
{
    (void)state;
    json_t *v = json_loads("{\"a\": \"{{ tasks.fetch.output.rows[0] }} {{ state.x }}\","
                           " \"b\": [\"plain\", \"{{ inputs[\\\"odd key\\\"] | json }}\"],"
                           " \"c\": \"{{ tasks.my-task.status }}\"}",
                           0, NULL);
    assert_non_null(v);
    struct flow__tmpl *t = NULL;
    assert_int_equal(flow__tmpl_compile(v, &t, NULL), FLOW_OK);
    json_t *refs = json_array();
    assert_int_equal(flow__tmpl_foreach_ref(t, collect_ref, refs), 0);
    json_t *want = json_pack("[s, s, s, s]", "tasks.fetch.output.rows[0]", "state.x",
                             "inputs[\"odd key\"]", "tasks.my-task.status");
    if (!json_equal(refs, want)) {
        char *got = json_dumps(refs, 0);
        fail_msg("refs: %s", got);
    }
    int n = 0;
    assert_int_equal(flow__tmpl_foreach_ref(t, stop_at_second, &n), 42);
    assert_int_equal(n, 2);
    json_decref(want);
    json_decref(refs);
    flow__tmpl_free(t);
    json_decref(v);
}

static void test_nested_values(void **state)
{
    (void)state;
    json_t *v = json_loads("{\"count\": \"{{ inputs.n }}\", \"fixed\": {\"k\": [1, 2]},"
                           " \"list\": [\"{{ inputs.list[1] }}\", \"n={{ inputs.n }}\", 3]}",
                           0, NULL);
    struct flow__tmpl *t = NULL;
    assert_int_equal(flow__tmpl_compile(v, &t, NULL), FLOW_OK);
    assert_false(flow__tmpl_is_static(t));
    json_t *out = NULL;
    assert_int_equal(flow__tmpl_render(t, &scope, &out, NULL), FLOW_OK);
    json_t *want = json_loads("{\"count\": 5, \"fixed\": {\"k\": [1, 2]},"
                              " \"list\": [\"y\", \"n=5\", 3]}",
                              0, NULL);
    assert_true(json_equal(out, want));
    /* The static part is a copy too. */
    assert_ptr_not_equal(json_object_get(out, "fixed"), json_object_get(v, "fixed"));
    json_decref(want);
    json_decref(out);

    char *s = NULL;
    assert_int_equal(flow__tmpl_render_string(t, &scope, &s, NULL), FLOW_OK);
    assert_string_equal(s, "{\"count\":5,\"fixed\":{\"k\":[1,2]},\"list\":[\"y\",\"n=5\",3]}");
    flow__free(s);
    flow__tmpl_free(t);
    json_decref(v);
}

static void test_path_text(void **state)
{
    (void)state;
    struct flow__tmpl_seg segs[] = {{"inputs", 0}, {"rows", 0}, {NULL, 3}, {"a b", 0},
                                    {"q\"", 0}};
    struct flow__tmpl_path p = {segs, 5};
    char *s = flow__tmpl_path_text(&p, 5);
    assert_string_equal(s, "inputs.rows[3][\"a b\"][\"q\\\"\"]");
    flow__free(s);
    s = flow__tmpl_path_text(&p, 2);
    assert_string_equal(s, "inputs.rows");
    flow__free(s);
}

/* Run `sh -c 'printf %s <quoted>'` and read what the shell got. */
static char *through_shell(const char *quoted)
{
    char *script = NULL;
    if (asprintf(&script, "printf %%s %s", quoted) < 0)
        return NULL;
    int fds[2];
    if (pipe(fds) != 0)
        return NULL;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl("/bin/sh", "sh", "-c", script, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char buf[4096];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    free(script);
    buf[len] = '\0';
    return strdup(buf);
}

static void test_shell_quote(void **state)
{
    (void)state;
    char *q = flow__shell_quote("it's");
    assert_string_equal(q, "'it'\\''s'");
    flow__free(q);
    q = flow__shell_quote("");
    assert_string_equal(q, "''");
    flow__free(q);

    const char *nasty[] = {"plain", "", "it's", "''", "$(touch /tmp/pwned) `id` $HOME",
                           "a\nb\tc", "\\n \\", "*?[a]", "; rm -rf / #", "\"dq\" 'sq'"};
    for (size_t i = 0; i < sizeof(nasty) / sizeof(nasty[0]); i++) {
        q = flow__shell_quote(nasty[i]);
        char *got = through_shell(q);
        assert_non_null(got);
        if (strcmp(got, nasty[i]) != 0)
            fail_msg("quoted %s came back as '%s'", q, got);
        free(got);
        flow__free(q);
    }
}

static void test_durations(void **state)
{
    (void)state;
    struct {
        const char *text;
        double seconds;
    } good[] = {{"250ms", 0.25}, {"30s", 30},  {"5m", 300},     {"2h", 7200},
                {"1h30m", 5400}, {"1.5s", 1.5}, {"90", 90},     {"0.5", 0.5},
                {"0", 0},        {"1m30s", 90}, {"2h0m1s", 7201}, {"1s500ms", 1.5},
                {".5s", 0.5},    {"1d", 86400}, {"7d", 604800}, {"1d12h", 129600}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        double d = -1;
        if (!flow__parse_duration(good[i].text, &d))
            fail_msg("'%s' was refused", good[i].text);
        if (d < good[i].seconds - 1e-9 || d > good[i].seconds + 1e-9)
            fail_msg("'%s' gave %g", good[i].text, d);
    }
    const char *bad[] = {"",     "-5",  "-1s", "5 minutes", "5 m", "5x", "m",     "1h1d",
                         "30s ", " 30s", "5m5m", "30s5m",   "1e3", "inf", "nan",  "5mm",
                         "1.2.3s", ".",  "5m30", "0x10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        double d = 0;
        if (flow__parse_duration(bad[i], &d))
            fail_msg("'%s' was accepted as %g", bad[i], d);
    }
    double d = 0;
    assert_false(flow__parse_duration(NULL, &d));
}

/* 10,000 argv-like templates compile and render, each to its own text.
 * (How fast is bench/'s business: W5b loads 100,000-task files.) */
static void test_many_templates(void **state)
{
    (void)state;
    enum { N = 10000 };
    struct flow__tmpl **t = calloc(N * 3, sizeof(*t));
    assert_non_null(t);
    const char *want[3] = {"./bin/step", "--rows=5", "'y'"};
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(flow__tmpl_compile_string("./bin/step", &t[3 * i], NULL), FLOW_OK);
        assert_int_equal(flow__tmpl_compile_string("--rows={{ inputs.n }}", &t[3 * i + 1], NULL),
                         FLOW_OK);
        assert_int_equal(flow__tmpl_compile_string("{{ inputs.list[1] | shell }}",
                                                   &t[3 * i + 2], NULL),
                         FLOW_OK);
    }
    for (size_t i = 0; i < N * 3; i++) {
        char *s = NULL;
        assert_int_equal(flow__tmpl_render_string(t[i], &scope, &s, NULL), FLOW_OK);
        assert_string_equal(s, want[i % 3]);
        flow__free(s);
    }
    for (size_t i = 0; i < N * 3; i++)
        flow__tmpl_free(t[i]);
    free(t);
}

/* Every allocation of compile and render fails once: an error, never a crash
 * or a leak (ASan checks the leaks). */
static void test_allocation_failures(void **state)
{
    (void)state;
    json_t *v = json_loads("{\"a\": \"x {{ inputs.obj['k e y'] | json | shell }} y\","
                           " \"b\": [\"{{ inputs.n }}\", \"z\"]}",
                           0, NULL);
    bool done = false;
    for (size_t n = 1; !done && n < 10000; n++) {
        flow__alloc_fail_at(n);
        struct flow__tmpl *t = NULL;
        flow_error err;
        flow_err rc = flow__tmpl_compile(v, &t, &err);
        json_t *out = NULL;
        if (rc == FLOW_OK) {
            rc = flow__tmpl_render(t, &scope, &out, &err);
            flow__tmpl_free(t);
        }
        size_t used = flow__alloc_fail_at(0);
        if (rc == FLOW_OK) {
            json_decref(out);
            done = used < n; /* the injected failure never came: all paths covered */
        } else {
            assert_int_equal(rc, FLOW_ENOMEM);
        }
    }
    assert_true(done);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_static_is_copied),
        cmocka_unit_test(test_whole_value_keeps_type),
        cmocka_unit_test(test_string_rendering),
        cmocka_unit_test(test_paths_indexes_and_quoted_keys),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_missing_values_are_clear_errors),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_refs_in_order),
        cmocka_unit_test(test_nested_values),
        cmocka_unit_test(test_path_text),
        cmocka_unit_test(test_shell_quote),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_many_templates),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
