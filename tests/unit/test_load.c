/* test_load.c -- workflow files: the YAML reader (typing, positions,
 * duplicates, aliases and their cap, documents, tags, JSON), and loading
 * files into flows (every key, defaults, every error with its position),
 * checked through flow_describe() and by running the loaded flows. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "def/flowdef.h"
#include "def/yaml.h"
#include "util/alloc.h"
#include "util/error.h"

/* ------------------------------------------------------------------------ */
/* YAML                                                                     */

static struct flow__yaml_doc *parse_ok(const char *text)
{
    struct flow__yaml_doc *d = NULL;
    flow_error err;
    flow_err rc = flow__yaml_parse(text, strlen(text), "t.yaml", &d, &err);
    if (rc != FLOW_OK)
        fail_msg("parse failed: %s", err.message);
    return d;
}

/* Parsing fails with FLOW_EPARSE, a message holding `needle`, at line:col. */
static void parse_fails(const char *text, const char *needle, int line, int column)
{
    struct flow__yaml_doc *d = NULL;
    flow_error err;
    flow__error_clear(&err);
    flow_err rc = flow__yaml_parse(text, strlen(text), "t.yaml", &d, &err);
    assert_null(d);
    assert_int_equal(rc, FLOW_EPARSE);
    if (!strstr(err.message, needle))
        fail_msg("message '%s' lacks '%s'", err.message, needle);
    if (line && (err.line != line || err.column != column))
        fail_msg("'%s' at %d:%d, expected %d:%d", err.message, err.line, err.column, line,
                 column);
    assert_string_equal(err.file, "t.yaml");
}

static void assert_pos(struct flow__yaml_pos p, int line, int column)
{
    if (p.line != line || p.column != column)
        fail_msg("position %d:%d, expected %d:%d", p.line, p.column, line, column);
}

static void test_yaml_positions(void **state)
{
    (void)state;
    struct flow__yaml_doc *d = parse_ok("name: demo\n"
                                        "tasks:\n"
                                        "  fetch:\n"
                                        "    run: [curl, \"-s\", 'x']\n"
                                        "    retries: 3\n"
                                        "  \"quoted key\": {after: fetch}\n");
    json_t *root = flow__yaml_root(d);
    assert_pos(flow__yaml_node_pos(d, root), 1, 1);
    assert_pos(flow__yaml_key_pos(d, root, "name"), 1, 1);
    assert_pos(flow__yaml_value_pos(d, root, "name"), 1, 7);
    assert_pos(flow__yaml_key_pos(d, root, "tasks"), 2, 1);
    json_t *tasks = json_object_get(root, "tasks");
    assert_pos(flow__yaml_node_pos(d, tasks), 3, 3);
    assert_pos(flow__yaml_value_pos(d, root, "tasks"), 3, 3);
    json_t *fetch = json_object_get(tasks, "fetch");
    assert_pos(flow__yaml_key_pos(d, tasks, "fetch"), 3, 3);
    assert_pos(flow__yaml_key_pos(d, fetch, "run"), 4, 5);
    json_t *run = json_object_get(fetch, "run");
    assert_pos(flow__yaml_node_pos(d, run), 4, 10);
    assert_pos(flow__yaml_item_pos(d, run, 0), 4, 11);
    assert_pos(flow__yaml_item_pos(d, run, 1), 4, 17);
    assert_pos(flow__yaml_item_pos(d, run, 2), 4, 23);
    assert_pos(flow__yaml_value_pos(d, fetch, "retries"), 5, 14);
    assert_pos(flow__yaml_key_pos(d, tasks, "quoted key"), 6, 3);
    json_t *q = json_object_get(tasks, "quoted key");
    assert_pos(flow__yaml_key_pos(d, q, "after"), 6, 18);
    assert_pos(flow__yaml_value_pos(d, q, "after"), 6, 25);
    /* unknown places */
    assert_pos(flow__yaml_key_pos(d, tasks, "nope"), 0, 0);
    assert_pos(flow__yaml_item_pos(d, run, 9), 0, 0);
    flow__yaml_free(d);
}

/* Positions in big documents: mappings of many keys read in and out of order, containers looked
 * up back and forth, repeated strings (which the parser may share) at their own places. */
static void test_yaml_big_positions(void **state)
{
    (void)state;
    enum { N = 300 };
    size_t cap = (size_t)N * 64 + 64;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t n = (size_t)snprintf(text, cap, "tasks:\n");
    for (int i = 0; i < N; i++) /* line i + 2: "  k<i>: {run: [same, same], n: <i>}" */
        n += (size_t)snprintf(text + n, cap - n, "  k%d: {run: [same, same], n: %d}\n", i, i);
    struct flow__yaml_doc *d = parse_ok(text);
    json_t *tasks = json_object_get(flow__yaml_root(d), "tasks");
    assert_int_equal(json_object_size(tasks), N);
    /* backwards, then every third: the lookups that miss the reader's usual order */
    for (int pass = 0; pass < 2; pass++) {
        for (int j = 0; j < N; j++) {
            int i = pass == 0 ? N - 1 - j : (j * 3) % N;
            char key[16];
            snprintf(key, sizeof(key), "k%d", i);
            json_t *t = json_object_get(tasks, key);
            assert_non_null(t);
            assert_pos(flow__yaml_key_pos(d, tasks, key), i + 2, 3);
            assert_pos(flow__yaml_node_pos(d, t), i + 2, 7 + (int)strlen(key) - 2);
            json_t *run = json_object_get(t, "run");
            int col = 12 + (int)strlen(key);
            assert_pos(flow__yaml_item_pos(d, run, 0), i + 2, col);
            assert_pos(flow__yaml_item_pos(d, run, 1), i + 2, col + 6);
            assert_string_equal(json_string_value(json_array_get(run, 1)), "same");
            struct flow__yaml_pos kp, vp;
            const char *raw = NULL;
            assert_true(flow__yaml_member(d, t, "n", &kp, &vp, &raw));
            assert_pos(kp, i + 2, col + 13);
            assert_non_null(raw);
            assert_int_equal(atoi(raw), i);
        }
    }
    struct flow__yaml_pos kp, vp;
    const char *raw = "x";
    assert_false(flow__yaml_member(d, tasks, "k300", &kp, &vp, &raw));
    assert_pos(kp, 0, 0);
    assert_null(raw);
    assert_pos(flow__yaml_key_pos(d, tasks, "nope"), 0, 0);
    assert_pos(flow__yaml_node_pos(d, json_array_get(json_object_get(json_object_get(tasks, "k0"), "run"), 0)), 0, 0);
    flow__yaml_free(d);
    free(text);
}

static void test_yaml_scalar_typing(void **state)
{
    (void)state;
    struct flow__yaml_doc *d = parse_ok(
        "- ~\n- null\n- Null\n- NULL\n-\n- true\n- True\n- TRUE\n- false\n- FALSE\n"
        "- 42\n- -7\n- +3\n- 0x1F\n- 0o17\n- 007\n- 1.10\n- .5\n- 1e3\n- -2.5E-1\n"
        "- yes\n- no\n- on\n- off\n- tRUE\n- nULL\n- 0x\n- 1.2.3\n- '42'\n- \"true\"\n"
        "- !!str 5\n- !!int \"7\"\n- !!float 2\n- !!bool \"false\"\n- !!null ''\n- ! 12\n"
        "- 99999999999999999999\n- 12:30\n- 1_000\n");
    json_t *a = flow__yaml_root(d);
    const char *want =
        "[null, null, null, null, null, true, true, true, false, false,"
        " 42, -7, 3, 31, 15, 7, 1.1, 0.5, 1000.0, -0.25,"
        " \"yes\", \"no\", \"on\", \"off\", \"tRUE\", \"nULL\", \"0x\", \"1.2.3\", \"42\","
        " \"true\", \"5\", 7, 2.0, false, null, \"12\", 1e20, \"12:30\", \"1_000\"]";
    json_t *expected = json_loads(want, 0, NULL);
    assert_non_null(expected);
    assert_int_equal(json_array_size(a), json_array_size(expected));
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *got = json_array_get(a, i);
        json_t *exp = json_array_get(expected, i);
        bool same = json_is_real(exp) && json_is_real(got)
                        ? json_real_value(got) == json_real_value(exp)
                        : json_equal(got, exp);
        if (!same) {
            char *g = json_dumps(got, JSON_ENCODE_ANY);
            char *e = json_dumps(exp, JSON_ENCODE_ANY);
            fail_msg("item %zu: got %s, expected %s", i, g, e);
        }
    }
    /* Typed plain scalars keep their spelling. */
    assert_string_equal(flow__yaml_item_text(d, a, 16), "1.10");
    assert_string_equal(flow__yaml_item_text(d, a, 13), "0x1F");
    assert_string_equal(flow__yaml_item_text(d, a, 7), "TRUE");
    assert_null(flow__yaml_item_text(d, a, 20)); /* a string */
    json_decref(expected);
    flow__yaml_free(d);

    parse_fails("a: .inf\n", "'.inf' is not a finite number", 1, 4);
    parse_fails("a: -.Inf\n", "not a finite number", 1, 4);
    parse_fails("a: .nan\n", "not a finite number", 1, 4);
    parse_fails("a: !!int abc\n", "'abc' is not an integer", 1, 4);
    parse_fails("a: !!bool yes\n", "'yes' is not a boolean", 1, 4);
    parse_fails("a: 0x8000000000000000\n", "too large", 1, 4);
}

static void test_yaml_tags(void **state)
{
    (void)state;
    parse_fails("a: !custom x\n", "unsupported tag '!custom'", 1, 4);
    parse_fails("a: !!python/object x\n", "unsupported tag", 1, 4);
    parse_fails("a: !!set {x}\n", "unsupported tag", 1, 4);
    struct flow__yaml_doc *d = parse_ok("a: !!map {x: 1}\nb: !!seq [1]\nc: !!str\n");
    json_t *root = flow__yaml_root(d);
    assert_true(json_is_object(json_object_get(root, "a")));
    assert_true(json_is_array(json_object_get(root, "b")));
    assert_string_equal(json_string_value(json_object_get(root, "c")), "");
    flow__yaml_free(d);
}

static void test_yaml_duplicates(void **state)
{
    (void)state;
    struct flow__yaml_doc *d = parse_ok("a: 1\nb:\n  x: 1\n  x: 2\na: 3\n");
    json_t *root = flow__yaml_root(d);
    assert_int_equal(json_integer_value(json_object_get(root, "a")), 1); /* the first wins */
    assert_int_equal(flow__yaml_dup_count(d), 2);
    const struct flow__yaml_dup *x = flow__yaml_dup_at(d, 0);
    assert_string_equal(x->key, "x");
    assert_ptr_equal(x->map, json_object_get(root, "b"));
    assert_pos(x->pos, 4, 3);
    const struct flow__yaml_dup *a = flow__yaml_dup_at(d, 1);
    assert_string_equal(a->key, "a");
    assert_ptr_equal(a->map, root);
    assert_pos(a->pos, 5, 1);
    assert_null(flow__yaml_dup_at(d, 2));
    flow__yaml_free(d);
}

static flow *load(const char *text, char **msgs, flow_error *err);

/* A duplicate key whose dropped value holds a duplicate of its own: the
 * inner duplicate names a mapping the document no longer holds, and the
 * loader asks where its first occurrence was (issue #9: that read freed
 * memory, seen by valgrind and ASan). */
static void test_yaml_duplicate_inside_dropped_value(void **state)
{
    (void)state;
    const char *text = "x: 1\nx:\n  k: 1\n  k: 2\n";
    struct flow__yaml_doc *d = parse_ok(text);
    assert_int_equal(json_integer_value(json_object_get(flow__yaml_root(d), "x")), 1);
    assert_int_equal(flow__yaml_dup_count(d), 2);
    const struct flow__yaml_dup *x = flow__yaml_dup_at(d, 0);
    const struct flow__yaml_dup *k = flow__yaml_dup_at(d, 1);
    assert_string_equal(x->key, "x");
    assert_pos(x->pos, 2, 1);
    assert_string_equal(k->key, "k");
    assert_pos(k->pos, 4, 3);
    /* The dropped mapping still answers for its first 'k'. */
    assert_true(json_is_object(k->map));
    assert_int_equal(json_integer_value(json_object_get(k->map, "k")), 1);
    assert_pos(flow__yaml_key_pos(d, k->map, "k"), 3, 3);
    flow__yaml_free(d);

    char *msgs = NULL;
    flow_error err;
    assert_null(load("name: n\ntasks: {a: {}}\nx: 1\nx:\n  k: 1\n  k: 2\n", &msgs, &err));
    assert_non_null(strstr(msgs, "duplicate key 'x' (first given at line 3)"));
    assert_non_null(strstr(msgs, "duplicate key 'k' (first given at line 5)"));
    free(msgs);
}

static void test_yaml_aliases(void **state)
{
    (void)state;
    struct flow__yaml_doc *d = parse_ok("base: &b {retries: 2, env: {A: x}}\n"
                                        "one: *b\n"
                                        "two: *b\n"
                                        "s: &s text\n"
                                        "*s : key from alias\n");
    json_t *root = flow__yaml_root(d);
    assert_true(json_equal(json_object_get(root, "one"), json_object_get(root, "base")));
    assert_true(json_equal(json_object_get(root, "two"), json_object_get(root, "base")));
    assert_string_equal(json_string_value(json_object_get(root, "text")), "key from alias");
    /* The alias's own place, and positions inside it from the anchor. */
    assert_pos(flow__yaml_value_pos(d, root, "two"), 3, 6);
    assert_pos(flow__yaml_key_pos(d, json_object_get(root, "two"), "retries"), 1, 11);
    flow__yaml_free(d);

    parse_fails("a: *nope\n", "unknown anchor 'nope'", 1, 4);
    parse_fails("a: &x [1, *x]\n", "unknown anchor 'x'", 1, 11);
    parse_fails("m: &m {a: 1}\n*m : 2\n", "a mapping key must be a string", 2, 1);
}

static void test_yaml_billion_laughs(void **state)
{
    (void)state;
    /* 10 levels of 10 aliases: 10^10 nodes once expanded, from 200 bytes. */
    char text[4096];
    size_t n = (size_t)snprintf(text, sizeof(text), "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 10; i++) {
        n += (size_t)snprintf(text + n, sizeof(text) - n, "l%d: &l%d [", i, i);
        for (int k = 0; k < 10; k++)
            n += (size_t)snprintf(text + n, sizeof(text) - n, "%s*l%d", k ? ", " : "", i - 1);
        n += (size_t)snprintf(text + n, sizeof(text) - n, "]\n");
    }
    parse_fails(text, "too large: its aliases stand for over 1000000 values", 0, 0);

    /* A million is the cap, not less: 5 levels (10^5 x 1.1) is fine. */
    char small[4096];
    n = (size_t)snprintf(small, sizeof(small), "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 5; i++) {
        n += (size_t)snprintf(small + n, sizeof(small) - n, "l%d: &l%d [", i, i);
        for (int k = 0; k < 10; k++)
            n += (size_t)snprintf(small + n, sizeof(small) - n, "%s*l%d", k ? ", " : "", i - 1);
        n += (size_t)snprintf(small + n, sizeof(small) - n, "]\n");
    }
    struct flow__yaml_doc *d = parse_ok(small);
    flow__yaml_free(d);

    /* Values written out are not capped (the size of the text bounds them): a list of 1,200,000
     * loads, as a file of 100,000 tasks with a few keys each must. */
    size_t big_n = 1200000;
    char *big = malloc(2 * big_n + 3);
    assert_non_null(big);
    big[0] = '[';
    for (size_t i = 0; i < big_n; i++) {
        big[1 + 2 * i] = '0';
        big[2 + 2 * i] = i + 1 < big_n ? ',' : ']';
    }
    big[1 + 2 * big_n] = '\0';
    d = parse_ok(big);
    assert_int_equal(json_array_size(flow__yaml_root(d)), big_n);
    assert_pos(flow__yaml_item_pos(d, flow__yaml_root(d), big_n - 1), 1, (int)(2 * big_n));
    flow__yaml_free(d);
    free(big);
}

static void test_yaml_documents_and_limits(void **state)
{
    (void)state;
    parse_fails("a: 1\n---\nb: 2\n", "a second YAML document", 2, 1);
    parse_fails("a: [1, 2\nb: 3\n", "syntax error: did not find expected ',' or ']'", 2, 2);
    parse_fails("a: b: c\n", "syntax error: mapping values are not allowed", 1, 5);
    parse_fails("a: 'unclosed\n", "syntax error", 0, 0);
    parse_fails("a: b\n\tc: d\n", "syntax error", 2, 1);
    parse_fails("a: \xff\n", "cannot read the text: invalid leading UTF-8 octet", 1, 4);
    parse_fails("[a, b]: 1\n", "a mapping key must be a string", 1, 1);

    /* Depth */
    char deep[1200];
    memset(deep, '[', 600);
    memset(deep + 600, ']', 600);
    deep[1199] = '\0';
    deep[599] = '1';
    deep[600] = ']';
    parse_fails(deep, "nest deeper than 256 levels", 1, 257);

    /* Size: checked before reading a byte. */
    struct flow__yaml_doc *d = NULL;
    flow_error err;
    assert_int_equal(flow__yaml_parse("x", FLOW__YAML_MAX_BYTES + 1, "big.yaml", &d, &err),
                     FLOW_EPARSE);
    assert_non_null(strstr(err.message, "'big.yaml' is too large (over 64 MiB)"));

    /* Empty text: a null document. */
    d = parse_ok("");
    assert_true(json_is_null(flow__yaml_root(d)));
    flow__yaml_free(d);
    d = parse_ok("# only a comment\n");
    assert_true(json_is_null(flow__yaml_root(d)));
    flow__yaml_free(d);
}

static void test_yaml_json(void **state)
{
    (void)state;
    struct flow__yaml_doc *d = parse_ok("{\n\t\"name\":\"j\",\n\t\"list\": [1, 2.5, true, null],"
                                        "\n\t\"esc\": \"a\\/b\\u00e9\\ud83d\\ude00\\\"q\\\\\","
                                        "\n\t\"obj\": {}\n}\n");
    json_t *root = flow__yaml_root(d);
    json_t *want = json_loads("{\"name\":\"j\",\"list\":[1,2.5,true,null],"
                              "\"esc\":\"a/b\\u00e9\\ud83d\\ude00\\\"q\\\\\",\"obj\":{}}",
                              0, NULL);
    assert_non_null(want);
    if (!json_equal(root, want)) {
        char *s = json_dumps(root, 0);
        fail_msg("got %s", s);
    }
    assert_pos(flow__yaml_key_pos(d, root, "list"), 3, 2);
    json_decref(want);
    flow__yaml_free(d);
}

/* flow_load_string reads `len` bytes and no more: every prefix of a JSON
 * text with escapes (the surrogate pairs are rewritten before libyaml sees
 * them), in a heap block of exactly that size, so that ASan and valgrind
 * see a read past its end (issue #9: a '\\u' escape at the end did). */
static void test_load_string_reads_only_len(void **state)
{
    (void)state;
    const char *text = "{\"name\": \"n\", \"tasks\": {\"a\": {}}, "
                       "\"x-e\": \"\\ud83d\\ude00\\u00e9\\\"\\ud83d\\ude01\"}";
    size_t full = strlen(text);
    for (size_t len = 0; len <= full; len++) {
        char *exact = malloc(len ? len : 1);
        assert_non_null(exact);
        memcpy(exact, text, len);
        flow_diags *d = flow_diags_new();
        flow *f = flow_load_string(exact, len, "w.json", d, NULL);
        assert_true(len == full ? f != NULL : f == NULL);
        flow_free(f);
        flow_diags_free(d);
        free(exact);
    }
}

/* Every message is one line, whatever the file quotes in it (issue #9:
 * keys and names with a newline split messages, found by fuzzing). */
static void test_messages_are_one_line(void **state)
{
    (void)state;
    const char *text = "name: x\n\"a\\nb\": 1\ntasks:\n  \"t\\tq\": {}\n"
                       "  b: {after: \"z\\r\\u0001z\"}\n";
    flow_diags *d = flow_diags_new();
    assert_null(flow_load_string(text, strlen(text), "w\n.yaml", d, NULL));
    assert_int_equal(flow_diags_count(d), 3);
    const char *want[] = {"unknown top-level key 'a\\nb' (w\\n.yaml:2:1)",
                          "invalid task name 't\\tq'",
                          "unknown task 'z\\r\\x01z' in 'after' of task 'b'"};
    for (size_t i = 0; i < 3; i++) {
        const char *m = flow_diags_get(d, i, NULL)->message;
        if (!strstr(m, want[i]) || strpbrk(m, "\n\r\t\x01"))
            fail_msg("message '%s' lacks '%s' or is not one line", m, want[i]);
    }
    flow_diags_free(d);
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */

/* Load `text`; on failure, all messages joined by newlines in `*msgs`
 * (free it). */
static flow *load(const char *text, char **msgs, flow_error *err)
{
    flow_diags *d = flow_diags_new();
    flow *f = flow_load_string(text, strlen(text), "w.yaml", d, err);
    size_t len = 1;
    for (size_t i = 0; i < flow_diags_count(d); i++)
        len += strlen(flow_diags_get(d, i, NULL)->message) + 1;
    char *all = calloc(1, len);
    size_t used = 0;
    for (size_t i = 0; i < flow_diags_count(d); i++) {
        const char *m = flow_diags_get(d, i, NULL)->message;
        memcpy(all + used, m, strlen(m));
        used += strlen(m);
        all[used++] = '\n';
    }
    flow_diags_free(d);
    if (msgs)
        *msgs = all;
    else
        free(all);
    return f;
}

static flow *load_ok(const char *text)
{
    char *msgs = NULL;
    flow_error err;
    flow *f = load(text, &msgs, &err);
    if (!f)
        fail_msg("load failed:\n%s", msgs);
    free(msgs);
    return f;
}

/* Loading fails; every line of `expected` (NUL-separated list ending with
 * NULL) is in the diagnostics. */
static void load_fails(const char *text, flow_err code, const char *const *expected)
{
    char *msgs = NULL;
    flow_error err;
    flow *f = load(text, &msgs, &err);
    if (f)
        fail_msg("loaded, but should fail with: %s", expected[0]);
    assert_int_equal(err.code, code);
    for (size_t i = 0; expected[i]; i++) {
        if (!strstr(msgs, expected[i]))
            fail_msg("missing '%s' in:\n%s", expected[i], msgs);
    }
    /* err holds the first diagnostic */
    assert_non_null(strstr(msgs, err.message));
    assert_true(strncmp(msgs, err.message, strlen(err.message)) == 0);
    free(msgs);
}

/* The object for task `name` in flow_describe(). Borrowed from `desc`. */
static json_t *described_task(json_t *desc, const char *name)
{
    size_t i;
    json_t *t;
    json_array_foreach (json_object_get(desc, "tasks"), i, t) {
        if (strcmp(json_string_value(json_object_get(t, "name")), name) == 0)
            return t;
    }
    fail_msg("no task '%s' in the description", name);
    return NULL;
}

static bool has_edge(json_t *desc, const char *from, const char *to, const char *kind)
{
    size_t i;
    json_t *e;
    json_array_foreach (json_object_get(desc, "edges"), i, e) {
        const char *f = json_string_value(json_object_get(e, "from"));
        if (f && !strcmp(f, from) && !strcmp(json_string_value(json_object_get(e, "to")), to) &&
            !strcmp(json_string_value(json_object_get(e, "kind")), kind))
            return true;
    }
    return false;
}

static void test_load_full_file(void **state)
{
    (void)state;
    flow *f = load_ok("name: review\n"
                      "version: 1.10\n"
                      "description: Draft and check\n"
                      "state: {draft: '', confidence: 0}\n"
                      "defaults:\n"
                      "  timeout: 30s\n"
                      "  retries: 2\n"
                      "  backoff: {delay: 1s, factor: 2, max_delay: 30s, jitter: true}\n"
                      "  on_error: continue\n"
                      "result: '{{ state.draft }}'\n"
                      "tasks:\n"
                      "  generate_draft:\n"
                      "    run: [./bin/draft, --topic, '{{ inputs.topic }}', 5, 1.50, true]\n"
                      "    save: draft\n"
                      "    retries: 0\n"
                      "  check:\n"
                      "    after: generate_draft\n"
                      "    router: true\n"
                      "    shell: 'echo {{ tasks.generate_draft.output | shell }}'\n"
                      "    on_error: {fallback: rescue}\n"
                      "    executor: process\n"
                      "    priority: -3\n"
                      "  rescue:\n"
                      "    start: false\n"
                      "    noop: true\n"
                      "  review:\n"
                      "    on: [needs_review, again]\n"
                      "    entry: true\n"
                      "  publish:\n"
                      "    when: {or: [auto_approve, {and: [review, check]}]}\n"
                      "    run: [./bin/publish]\n"
                      "    timeout: 90\n"
                      "  bound_later: ~\n");
    assert_string_equal(flow_name(f), "review");
    assert_string_equal(flow_get_version(f), "1.10");
    assert_string_equal(flow_description(f), "Draft and check");
    assert_int_equal(flow_task_count(f), 6);
    assert_string_equal(flow_task_name(flow_task_at(f, 0)), "generate_draft");
    assert_string_equal(flow_task_name(flow_task_at(f, 5)), "bound_later");

    json_t *desc = flow_describe(f);
    json_t *g = described_task(desc, "generate_draft");
    assert_string_equal(json_string_value(json_object_get(g, "kind")), "command");
    json_t *argv = json_pack("[s,s,s,s,s,s]", "./bin/draft", "--topic", "{{ inputs.topic }}",
                             "5", "1.50", "true");
    assert_true(json_equal(json_object_get(g, "run"), argv));
    json_decref(argv);
    assert_int_equal(json_integer_value(json_object_get(g, "retries")), 0); /* own wins */
    assert_true(json_real_value(json_object_get(g, "timeout")) == 30);     /* from defaults */
    assert_string_equal(json_string_value(json_object_get(g, "on_error")), "continue");

    json_t *c = described_task(desc, "check");
    assert_string_equal(json_string_value(json_object_get(c, "kind")), "shell");
    assert_true(json_is_true(json_object_get(c, "router")));
    assert_string_equal(json_string_value(json_object_get(c, "on_error")), "fallback");
    assert_string_equal(json_string_value(json_object_get(c, "fallback")), "rescue");
    assert_string_equal(json_string_value(json_object_get(c, "executor")), "process");
    assert_int_equal(json_integer_value(json_object_get(c, "priority")), -3);
    assert_int_equal(json_integer_value(json_object_get(c, "retries")), 2);
    assert_true(has_edge(desc, "generate_draft", "check", "after"));

    json_t *rescue = described_task(desc, "rescue");
    assert_true(json_is_false(json_object_get(rescue, "start")));
    json_t *review = described_task(desc, "review");
    assert_true(json_is_true(json_object_get(review, "entry")));
    json_t *on = json_pack("[s,s]", "needs_review", "again");
    assert_true(json_equal(json_object_get(review, "on"), on));
    json_decref(on);

    json_t *p = described_task(desc, "publish");
    json_t *when = json_loads("{\"or\": [\"auto_approve\", {\"and\": [\"review\", \"check\"]}]}",
                              0, NULL);
    assert_true(json_equal(json_object_get(p, "when"), when));
    json_decref(when);
    assert_true(json_real_value(json_object_get(p, "timeout")) == 90);
    assert_true(has_edge(desc, "review", "publish", "when"));

    json_t *b = described_task(desc, "bound_later");
    assert_string_equal(json_string_value(json_object_get(b, "kind")), "noop");
    assert_true(json_is_true(json_object_get(b, "start")));
    json_decref(desc);
    flow_free(f);
}

static int double_input(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    json_t *n = json_object_get(in, "n");
    return flow_ctx_set_output_take(ctx, json_integer(2 * json_integer_value(n)));
}

static void test_bind_and_run(void **state)
{
    (void)state;
    flow *f = load_ok("name: bound\n"
                      "tasks:\n"
                      "  compute:\n"
                      "    input: {n: '{{ inputs.n }}'}\n"
                      "  report:\n"
                      "    after: compute\n"
                      "    run: [echo, 'got {{ tasks.compute.output }}']\n");
    assert_int_equal(flow_bind(f, "nosuch", double_input, NULL), FLOW_ENOTFOUND);
    assert_int_equal(flow_bind(f, "compute", double_input, NULL), FLOW_OK);
    json_t *inputs = json_pack("{s:i}", "n", 21);
    json_t *result = NULL;
    flow_error err;
    flow_run_status s = flow_run_simple(f, inputs, 2, &result, &err);
    if (s != FLOW_RUN_COMPLETED)
        fail_msg("run ended %s: %s", flow_run_status_name(s), err.message);
    assert_string_equal(json_string_value(result), "got 42");
    json_decref(result);
    json_decref(inputs);
    flow_free(f);
}

/* Relative `cwd` is relative to the file; defaults' env merges with the task's. */
static void test_file_cwd_and_env(void **state)
{
    (void)state;
    char *dir = th_tempdir();
    char sub[4096];
    snprintf(sub, sizeof(sub), "%s/work", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    char *path = th_write_file(dir, "flow.yaml",
                               "name: files\n"
                               "defaults:\n"
                               "  env: {A: one, B: default}\n"
                               "  cwd: ./work\n"
                               "tasks:\n"
                               "  where:\n"
                               "    run: [pwd]\n"
                               "  vars:\n"
                               "    after: where\n"
                               "    shell: 'echo \"$A-$B-$C:$(pwd)\"'\n"
                               "    cwd: .\n"
                               "    env: {B: two, C: 3}\n");
    flow_error err;
    flow *f = flow_load_file(path, NULL, &err);
    if (!f)
        fail_msg("load: %s", err.message);
    flow_run *r = NULL;
    flow_engine *e = flow_engine_new(NULL, &err);
    assert_non_null(e);
    flow_run_options o = {0};
    r = flow_run_start(e, f, &o, &err);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    char want[8192];
    /* realpath: the temp dir may sit behind a symlink */
    char *real = realpath(dir, NULL);
    snprintf(want, sizeof(want), "one-two-3:%s", real);
    assert_string_equal(json_string_value(flow_run_result(r)), want);
    for (size_t i = 0; i < flow_run_activation_count(r); i++) {
        flow_activation_info info;
        assert_int_equal(flow_run_activation(r, i, &info), FLOW_OK);
        if (!strcmp(info.task, "where")) {
            snprintf(want, sizeof(want), "%s/work", real);
            assert_string_equal(json_string_value(info.output), want);
        }
    }
    free(real);
    flow_run_free(r);
    flow_engine_free(e);
    flow_free(f);
    free(path);
    th_rmtree(dir);
    free(dir);
}

static void test_json_file(void **state)
{
    (void)state;
    flow *f = load_ok("{\"name\": \"j\", \"version\": 2,\n"
                      " \"tasks\": {\"a\": {\"run\": [\"echo\", \"hi\"]},\n"
                      "           \"b\": {\"after\": [\"a\"], \"shell\": \"true\"}}}\n");
    assert_string_equal(flow_get_version(f), "2");
    assert_int_equal(flow_task_count(f), 2);
    assert_non_null(flow_find_task(f, "b"));
    flow_free(f);

    const char *e1[] = {"unknown task 'c' in 'after' of task 'b' (w.yaml:2:37)", NULL};
    load_fails("{\"name\": \"j\",\n \"tasks\": {\"a\": {}, \"b\": {\"after\": [\"c\"]}}}\n",
               FLOW_EVALIDATION, e1);
}

static void test_every_error_is_reported(void **state)
{
    (void)state;
    const char *expected[] = {
        "unknown top-level key 'nmae' (did you mean 'name'?) (w.yaml:1:1)",
        "missing 'name': a workflow needs a name (w.yaml:1:1)",
        "'state' must be a mapping (the initial state), not a list (w.yaml:2:8)",
        "'retries' in 'defaults' must be a non-negative integer, not a string (w.yaml:4:12)",
        "'after' cannot be set in 'defaults'",
        "unknown key 'afer' in task 'b' (did you mean 'after'?) (w.yaml:9:5)",
        "'retries' of task 'b' must be a non-negative integer, not a string (w.yaml:10:14)",
        "bad duration '5 minutes' for 'timeout' of task 'b' (use 250ms, 30s, 5m, 2h, 1d or "
        "seconds) (w.yaml:11:14)",
        "unknown task 'zz' in 'after' of task 'c' (w.yaml:13:16)",
        "unknown task 'aa' in 'optional' of task 'c' (did you mean 'a'?) (w.yaml:14:15)",
        "task 'd' has two bodies ('run' and 'shell')",
        "'foreach' of task 'd' must give a list: write one '{{ path }}' with nothing around it "
        "and no filter (like \"{{ inputs.files }}\"), or a list; '{{ inputs.list }}!' gives a "
        "string (w.yaml:18:14)",
        "cannot open nested flow 'nowhere/other.yaml' of task 'e': No such file or directory "
        "(w.yaml:20:5)",
        "unknown task 'nope' in '{{ tasks.nope.output }}' in 'run' of task 'f' (w.yaml:22:17)",
        "bad template in 'shell' of task 'g': unclosed '{{' in '{{ inputs.x' (w.yaml:24:12)",
        "invalid task name '9lives'",
        "duplicate task 'a' (first defined at line 7) (w.yaml:27:3)",
        NULL,
    };
    load_fails("nmae: typo\n"
               "state: [1]\n"
               "defaults:\n"
               "  retries: two\n"
               "  after: a\n"
               "tasks:\n"
               "  a: {}\n"
               "  b:\n"
               "    afer: a\n"
               "    retries: three\n"
               "    timeout: 5 minutes\n"
               "  c:\n"
               "    after: [a, zz]\n"
               "    optional: aa\n"
               "  d:\n"
               "    run: [x]\n"
               "    shell: y\n"
               "    foreach: '{{ inputs.list }}!'\n"
               "  e:\n"
               "    flow: nowhere/other.yaml\n"
               "  f:\n"
               "    run: [echo, '{{ tasks.nope.output }}']\n"
               "  g:\n"
               "    shell: 'echo {{ inputs.x'\n"
               "  9lives:\n"
               "    noop: true\n"
               "  a: {noop: true}\n",
               FLOW_EVALIDATION, expected);
}

static void test_error_cases(void **state)
{
    (void)state;
    struct {
        const char *text;
        const char *message;
    } cases[] = {
        {"name: x\n", "missing 'tasks': a workflow needs at least one task (w.yaml:1:1)"},
        {"name: x\ntasks: {}\n",
         "'tasks' is empty: a workflow needs at least one task (w.yaml:2:8)"},
        {"name: x\ntasks: [a]\n", "'tasks' must be a mapping of task names to tasks, not a list"},
        {"- a\n", "the top level of a workflow must be a mapping (name, tasks, ...), not a list "
                  "(w.yaml:1:1)"},
        {"", "the top level of a workflow must be a mapping (name, tasks, ...), not nothing"},
        {"name: [x]\ntasks: {a: }\n", "'name' must be a non-empty string, not a list (w.yaml:1:7)"},
        {"name: x\nversion: true\ntasks: {a: }\n", "'version' must be a string or a number"},
        {"name: x\ntasks:\n  a: 5\n", "task 'a' must be a mapping (run, after, retries, ...), not "
                                     "an integer (w.yaml:3:6)"},
        {"name: x\ntasks:\n  a: {run: []}\n", "'run' of task 'a' must be a non-empty list of "
                                              "strings, not an empty list (w.yaml:3:12)"},
        {"name: x\ntasks:\n  a: {run: [echo, {x: 1}]}\n", "item 2 of 'run' of task 'a' must be "
                                                          "a string, not a mapping (w.yaml:3:19)"},
        {"name: x\ntasks:\n  a: {run: ['', x]}\n", "the program (item 1 of 'run' of task 'a') "
                                                   "is empty"},
        {"name: x\ntasks:\n  a: {shell: 5}\n", "'shell' of task 'a' must be a non-empty string, "
                                               "not an integer"},
        {"name: x\ntasks:\n  a: {noop: 1}\n", "'noop' of task 'a' must be true or false, not an "
                                              "integer"},
        {"name: x\ntasks:\n  a: {feedback: {type: maybe}}\n",
         "'type' in 'feedback' of task 'a' is approval, text or selection, not 'maybe' (w.yaml:3:24)"},
        {"name: x\ntasks:\n  a: {retries: -1}\n", "'retries' of task 'a' must be a "
                                                  "non-negative integer, not -1"},
        {"name: x\ntasks:\n  a: {max_activations: 0}\n", "'max_activations' of task 'a' must be "
                                                         "a positive integer, not 0"},
        {"name: x\ntasks:\n  a: {priority: 1.5}\n", "'priority' of task 'a' must be an integer, "
                                                    "not a number"},
        {"name: x\ntasks:\n  a: {timeout: -5}\n", "bad duration '-5' for 'timeout' of task 'a'"},
        {"name: x\ntasks:\n  a: {kill_grace: [1]}\n", "'kill_grace' of task 'a' must be a "
                                                      "duration (use 250ms, 30s, 5m, 2h, 1d or "
                                                      "seconds), not a list"},
        {"name: x\ntasks:\n  a: {on_error: explode}\n", "'on_error' of task 'a' must be fail, "
                                                        "continue, ignore or {fallback: TASK}, "
                                                        "not 'explode'"},
        {"name: x\ntasks:\n  a: {on_error: {fallback: b}}\n", "unknown task 'b' in 'fallback' "
                                                              "in 'on_error' of task 'a'"},
        {"name: x\ntasks:\n  a: {on_error: {fallback: a}}\n", "task 'a' cannot be its own "
                                                              "fallback"},
        {"name: x\ndefaults: {on_error: {fallback: a}}\ntasks:\n  a: {}\n",
         "'on_error' in 'defaults': a fallback task cannot be a default"},
        {"name: x\ntasks:\n  a: {executor: remote}\n",
         "task 'a': executor 'remote' runs commands and 'fn' functions only"},
        {"name: x\ntasks:\n  a: {executor: gpu}\n", "'executor' of task 'a' must be inline, "
                                                    "thread, process or remote, not 'gpu'"},
        {"name: x\ntasks:\n  a: {output: xml}\n", "'output' of task 'a' must be auto, json, text "
                                                  "or lines, not 'xml'"},
        {"name: x\ntasks:\n  a: {backoff: {dealy: 1s}}\n", "unknown key 'dealy' in 'backoff' of "
                                                           "task 'a' (did you mean 'delay'?)"},
        {"name: x\ntasks:\n  a: {backoff: {factor: 0.5}}\n", "'factor' in 'backoff' of task 'a' "
                                                             "must be a number of at least 1"},
        {"name: x\ntasks:\n  a: {backoff: 5}\n", "'backoff' of task 'a' must be a mapping"},
        {"name: x\ntasks:\n  a: {when: {xor: [a]}}\n", "'when' of task 'a' must be a task or "
                                                       "label name, {and: [...]} or {or: [...]}"},
        {"name: x\ntasks:\n  a: {when: {and: []}}\n", "'and' in 'when' of task 'a' must be a "
                                                      "non-empty list of conditions"},
        {"name: x\ntasks:\n  a: {on: 5}\n", "'on' of task 'a' must be a label or a list of "
                                            "labels, not an integer"},
        {"name: x\ntasks:\n  a: {start: yes}\n", "'start' of task 'a' must be true or false, not "
                                                 "a string"},
        {"name: x\ntasks:\n  a: {env: {1BAD: x}}\n", "invalid environment variable name '1BAD'"},
        {"name: x\ntasks:\n  a: {env: [A]}\n", "'env' of task 'a' must be a mapping of NAME: "
                                               "value, not a list"},
        {"name: x\ntasks:\n  a: {env: {A: [1]}}\n", "'A' in 'env' of task 'a' must be a string, "
                                                    "not a list"},
        {"name: x\ntasks:\n  a: {save: ''}\n", "'save' of task 'a' must be a non-empty string"},
        {"name: x\ntasks:\n  a: {input: {x: '{{ state.y | upper }}'}}\n",
         "bad template in 'input' of task 'a': unknown filter 'upper'"},
        {"name: x\ntasks:\n  a: {run: [echo, '{{ item }}']}\n",
         "'{{ item }}' in 'run' of task 'a': 'item' is set only in a task with 'foreach'"},
        {"name: x\nresult: '{{ tasks.b.output }}'\ntasks:\n  a: {}\n",
         "unknown task 'b' in '{{ tasks.b.output }}' in 'result' (w.yaml:2:9)"},
        {"name: x\ncheckpoint_every: soon\ntasks:\n  a: {}\n",
         "bad duration 'soon' for 'checkpoint_every'"},
        /* cache */
        {"name: x\ntasks:\n  a: {cache: {key: x}}\n",
         "'cache' needs a body that computes the output in task 'a' (a no-op has nothing to "
         "keep) (w.yaml:3:7)"},
        {"name: x\ntasks:\n  a: {noop: true, cache: {key: x}}\n",
         "'cache' needs a body that computes the output in task 'a'"},
        {"name: x\ntasks:\n  a: {feedback: {type: approval, message: ok?}, cache: {key: x}}\n",
         "(a feedback question asks a person each time)"},
        {"name: x\ntasks:\n  a: {run: [x], cache: '{{ inputs.x }}'}\n",
         "'cache' of task 'a' must be a mapping {key: TEMPLATE, ttl: DURATION}, not a string "
         "(w.yaml:3:24)"},
        {"name: x\ntasks:\n  a: {run: [x], cache: {ttl: 1h}}\n",
         "'cache' of task 'a' needs 'key': a template naming what the output depends on"},
        {"name: x\ntasks:\n  a: {run: [x], cache: {key: ''}}\n",
         "'key' of 'cache' of task 'a' must be a non-empty string"},
        {"name: x\ntasks:\n  a: {run: [x], cache: {key: k, tll: 1h}}\n",
         "unknown key 'tll' in 'cache' of task 'a' (did you mean 'ttl'?)"},
        {"name: x\ntasks:\n  a: {run: [x], cache: {key: k, ttl: soon}}\n",
         "bad duration 'soon' for 'ttl' of 'cache' of task 'a' (use 250ms, 30s, 5m, 2h, 1d or "
         "seconds) (w.yaml:3:38)"},
        {"name: x\ntasks:\n  a: {run: [x], cache: {key: k, ttl: 0}}\n",
         "'ttl' of 'cache' of task 'a' must be more than 0 and at most 10 years (leave it out "
         "for entries that never expire)"},
        {"name: x\ntasks:\n  a: {run: [x], cache: {key: '{{ tasks.zz.output }}'}}\n",
         "unknown task 'zz' in '{{ tasks.zz.output }}' in 'key' of 'cache' of task 'a'"},
        {"name: x\ntasks:\n  a: {run: [x], cache: {key: '{{ item }}'}}\n",
         "'{{ item }}' in 'key' of 'cache' of task 'a': 'item' is set only in a task with "
         "'foreach'"},
        {"name: x\ndefaults: {cache: {key: k}}\ntasks:\n  a: {run: [x]}\n",
         "'cache' cannot be set in 'defaults'"},
        /* foreach and concurrency */
        {"name: x\ntasks:\n  a: {foreach: 5}\n",
         "'foreach' of task 'a' must be a template that gives a list (like \"{{ inputs.files "
         "}}\") or a list, not an integer (w.yaml:3:16)"},
        {"name: x\ntasks:\n  a: {foreach: '{{ inputs.x | json }}'}\n",
         "'{{ inputs.x | json }}' gives a string (w.yaml:3:16)"},
        {"name: x\ntasks:\n  a: {foreach: files}\n", "'files' gives a string"},
        {"name: x\ntasks:\n  a: {foreach: ' {{ inputs.x }}'}\n", "' {{ inputs.x }}' gives a "
                                                                  "string"},
        {"name: x\ntasks:\n  a: {foreach: '{{ env.HOME }}'}\n",
         "'foreach' of task 'a' must give a list, but '{{ env.HOME }}' is always a string or "
         "null (w.yaml:3:16)"},
        {"name: x\ntasks:\n  a: {foreach: '{{ tasks.b.status }}'}\n  b: {}\n",
         "'{{ tasks.b.status }}' is always a string or null"},
        {"name: x\ntasks:\n  a: {foreach: '{{ item }}'}\n",
         "'{{ item }}' in 'foreach' of task 'a': 'item' is set in the activations the list "
         "makes, not in the list itself (w.yaml:3:16)"},
        {"name: x\ntasks:\n  a: {foreach: [1, '{{ index }}']}\n",
         "'{{ index }}' in 'foreach' of task 'a': 'index' is set in the activations"},
        {"name: x\ntasks:\n  a: {foreach: '{{ tasks.zz.output }}'}\n",
         "unknown task 'zz' in '{{ tasks.zz.output }}' in 'foreach' of task 'a' (w.yaml:3:16)"},
        {"name: x\ntasks:\n  a: {foreach: '{{ inputs.x'}\n",
         "bad template in 'foreach' of task 'a': unclosed '{{'"},
        {"name: x\ntasks:\n  a: {run: [x], concurrency: 2}\n",
         "'concurrency' needs 'foreach' in task 'a' (a number bounds how many of the "
         "activations 'foreach' makes run at once; across runs, write {limit: N, key: "
         "TEMPLATE}) (w.yaml:3:17)"},
        {"name: x\ntasks:\n  a: {run: [x], concurrency: {limit: 0}}\n",
         "'limit' of 'concurrency' of task 'a' must be a positive integer, not 0"},
        {"name: x\ntasks:\n  a: {run: [x], concurrency: {key: k}}\n",
         "'concurrency' of task 'a' needs 'limit' (how many at once) (w.yaml:3:30)"},
        {"name: x\ntasks:\n  a: {run: [x], concurrency: {limit: 2, kye: k}}\n",
         "unknown key 'kye' in 'concurrency' of task 'a'"},
        {"name: x\ntasks:\n  a: {run: [x], concurrency: {limit: 2, key: '{{ inputs.x'}}\n",
         "bad template in 'key' of 'concurrency' of task 'a': unclosed '{{'"},
        {"name: x\ntasks:\n  a: {run: [x], rate_limit: 10/x}\n",
         "bad rate '10/x' for 'rate_limit' of task 'a': write COUNT/UNIT"},
        {"name: x\ntasks:\n  a: {run: [x], rate_limit: 0/s}\n",
         "bad rate '0/s' for 'rate_limit' of task 'a'"},
        {"name: x\ntasks:\n  a: {run: [x], rate_limit: {key: k}}\n",
         "'rate_limit' of task 'a' needs 'limit'"},
        {"name: x\ntasks:\n  a: {run: [x], resources: {gpu: -1}}\n",
         "bad amount '-1' for 'gpu' of 'resources' of task 'a': a number, 0 or more"},
        {"name: x\ntasks:\n  a: {run: [x], resources: {memory: 4Q}}\n",
         "bad amount '4Q' for 'memory' of 'resources' of task 'a': bytes, or a size such as"},
        {"name: x\ntasks:\n  a: {run: [x], resources: {disk: 1}}\n",
         "unknown key 'disk' in 'resources' of task 'a'"},
        {"name: x\ntasks:\n  a: {run: [x], resources: 2}\n",
         "'resources' of task 'a' must be a mapping {cpu: 2, memory: 4G, gpu: 1}, not an integer"},
        {"name: x\nconcurrency: {limit: two}\ntasks:\n  a: {run: [x]}\n",
         "'limit' of 'concurrency' of the flow must be a positive integer, not a string"},
        {"name: x\ntasks:\n  a: {foreach: [], concurrency: 0}\n",
         "'concurrency' of task 'a' must be a positive integer, not 0 (w.yaml:3:33)"},
        {"name: x\ntasks:\n  a: {foreach: [], concurrency: two}\n",
         "'concurrency' of task 'a' must be a positive integer, not a string"},
        {"name: x\ntasks:\n  a: {foreach: []}\n  b: {run: [echo, '{{ index }}']}\n",
         "'{{ index }}' in 'run' of task 'b': 'index' is set only in a task with 'foreach'"},
        {"name: x\ndefaults: {env: {X: '{{ item }}'}}\ntasks:\n  a: {foreach: []}\n",
         "'{{ item }}' in 'X' in 'env' in 'defaults': 'item' is set only in a task with "
         "'foreach'"},
        {"name: x\nresult: '{{ index }}'\ntasks:\n  a: {foreach: []}\n",
         "'{{ index }}' in 'result': 'index' is set only in a task with 'foreach'"},
        {"name: x\ndefaults: {concurrency: 2}\ntasks:\n  a: {}\n",
         "'concurrency' cannot be set in 'defaults'"},
        /* connect */
        {"name: x\nconnect: {}\ntasks:\n  a: {}\n",
         "'connect' must be a list of {from: TASK.EVENT, to: TASK, map: {...}}, not a mapping "
         "(w.yaml:2:10)"},
        {"name: x\nconnect: [5]\ntasks:\n  a: {}\n",
         "'connect' item 1 must be a mapping {from: TASK.EVENT, to: TASK, map: {...}}, not an "
         "integer (w.yaml:2:11)"},
        {"name: x\nconnect: [{from: a, to: b}]\ntasks:\n  a: {}\n  b: {}\n",
         "'from' of 'connect' item 1 must be TASK.EVENT (a task, a dot, the event it emits), "
         "not 'a' (w.yaml:2:18)"},
        {"name: x\nconnect: [{from: .ev, to: b}]\ntasks:\n  a: {}\n  b: {}\n",
         "must be TASK.EVENT (a task, a dot, the event it emits), not '.ev'"},
        {"name: x\nconnect: [{from: 5, to: b}]\ntasks:\n  a: {}\n  b: {}\n",
         "'from' of 'connect' item 1 must be a non-empty string, not an integer (w.yaml:2:18)"},
        {"name: x\nconnect: [{from: a.ev}]\ntasks:\n  a: {}\n",
         "'connect' item 1 needs 'to' (the task each event starts) (w.yaml:2:11)"},
        {"name: x\nconnect: [{to: a}]\ntasks:\n  a: {}\n",
         "'connect' item 1 needs 'from' (TASK.EVENT: the task and the event it emits)"},
        {"name: x\nconnect: [{from: zz.ev, to: a}]\ntasks:\n  a: {}\n",
         "unknown task 'zz' in 'from' of 'connect' item 1 (w.yaml:2:18)"},
        {"name: x\nconnect:\n  - {from: a.ev, to: b}\n  - {from: a.ev, to: bb}\ntasks:\n"
         "  a: {}\n  b: {}\n",
         "unknown task 'bb' in 'to' of 'connect' item 2 (did you mean 'b'?) (w.yaml:4:22)"},
        {"name: x\nconnect: [{from: a.ev, to: b, map: x}]\ntasks:\n  a: {}\n  b: {}\n",
         "'map' of 'connect' item 1 must be a mapping of payload keys to new names, not a "
         "string (w.yaml:2:36)"},
        {"name: x\nconnect: [{from: a.ev, to: b, map: {x: [1]}}]\ntasks:\n  a: {}\n  b: {}\n",
         "'x' in 'map' of 'connect' item 1 must be a non-empty string, not a list"},
        {"name: x\nconnect: [{from: a.ev, to: b, map: {x: y, z: y}}]\ntasks:\n  a: {}\n"
         "  b: {}\n",
         "'map' of 'connect' item 1 renames both 'x' and 'z' to 'y'"},
        {"name: x\nconnect: [{from: a.ev, to: b, form: a}]\ntasks:\n  a: {}\n  b: {}\n",
         "unknown key 'form' in 'connect' item 1 (did you mean 'from'?)"},
        /* flow */
        {"name: x\ntasks:\n  a: {flow: 5}\n",
         "'flow' of task 'a' must be a non-empty string, not an integer (w.yaml:3:13)"},
        {"name: x\ntasks:\n  a: {flow: {name: y}}\n",
         "'flow' of task 'a' must be the name of a workflow file (relative to this file), not a "
         "mapping"},
        {"name: x\ntasks:\n  a: {flow: '{{ inputs.f }}'}\n",
         "'flow' of task 'a' is a file name, read when the workflow is loaded: it cannot hold a "
         "template ('{{ inputs.f }}')"},
        {"name: x\ntasks:\n  a: {flow: /nonexistent/x.yaml}\n",
         "cannot open nested flow '/nonexistent/x.yaml' of task 'a': No such file or directory "
         "(w.yaml:3:7)"},
        {"name: x\ntasks:\n  a: {flow: x.yaml, run: [x]}\n",
         "task 'a' has two bodies ('flow' and 'run')"},
        /* state_schema */
        {"name: x\nstate_schema: [object]\ntasks:\n  a: {}\n",
         "'state_schema' must be a mapping (a JSON Schema: type, properties, required, enum, "
         "minimum, maximum, items), not a list (w.yaml:2:15)"},
        {"name: x\nstate_schema: {type: float}\ntasks:\n  a: {}\n",
         "invalid 'state_schema': "},
        {"name: x\nretries: 2\ntasks:\n  a: {}\n",
         "unknown top-level key 'retries' ('retries' belongs to a task under 'tasks', or to "
         "'defaults')"},
        {"name: x\ntasks:\n  a:\n    run: [a]\n    run: [b]\n",
         "duplicate key 'run' (first given at line 4) (w.yaml:5:5)"},
        {"name: x\ntasks:\n  a: {run: [a], shell: b, noop: true}\n",
         "task 'a' has more than two bodies"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *expected[] = {cases[i].message, NULL};
        load_fails(cases[i].text, FLOW_EVALIDATION, expected);
    }
}

/* The core's checks come through the loader, positioned at the task. */
static void test_core_validation(void **state)
{
    (void)state;
    const char *cycle[] = {"cycle", NULL};
    load_fails("name: x\ntasks:\n  s: {}\n  a: {after: b}\n  b: {after: a}\n", FLOW_EVALIDATION,
               cycle);
    char *msgs = NULL;
    flow_error err;
    assert_null(load("name: x\ntasks:\n  s: {}\n  a: {after: b}\n  b: {after: a}\n", &msgs,
                     &err));
    assert_non_null(strstr(msgs, "w.yaml:"));
    free(msgs);
}

/* ------------------------------------------------------------------------ */
/* foreach, connect, nested flows, state_schema, label warnings             */

/* Load `text` keeping the diagnostics; the caller frees both. */
static flow *load_keep(const char *text, flow_diags **diags, flow_error *err)
{
    *diags = flow_diags_new();
    assert_non_null(*diags);
    return flow_load_string(text, strlen(text), "w.yaml", *diags, err);
}

/* The number of diagnostics of `sev` whose message holds `needle`. */
static size_t count_diags(const flow_diags *d, flow_severity sev, const char *needle)
{
    size_t n = 0;
    for (size_t i = 0; i < flow_diags_count(d); i++) {
        flow_severity s = FLOW_SEV_ERROR;
        const flow_error *e = flow_diags_get(d, i, &s);
        if (s == sev && strstr(e->message, needle))
            n++;
    }
    return n;
}

/* A foreach child: its element, its position and its input. */
static int foreach_echo(flow_ctx *ctx)
{
    json_t *item = flow_ctx_item(ctx);
    return flow_ctx_set_output_take(ctx, json_pack("{s:O?,s:I,s:O}", "item", item, "index",
                                                   (json_int_t)flow_ctx_index(ctx), "input",
                                                   flow_ctx_input(ctx)));
}

static void test_foreach(void **state)
{
    (void)state;
    flow *f = load_ok("name: fan\n"
                      "result: {each: '{{ tasks.each.output }}', lit: '{{ tasks.lit.output }}',"
                      " none: '{{ tasks.none.output }}'}\n"
                      "tasks:\n"
                      "  list: {run: [echo, '[\"a\", \"b\", \"c\"]']}\n"
                      "  each:\n"
                      "    after: list\n"
                      "    foreach: '{{ tasks.list.output }}'\n"
                      "    concurrency: 2\n"
                      "    input: {n: '{{ item }}', at: '{{ index }}', in: '{{ input }}'}\n"
                      "  lit:\n"
                      "    foreach: [x, '{{ inputs.y }}']\n"
                      "    run: [echo, '{{ index }}-{{ item }}-$ITEM']\n"
                      "    env: {ITEM: '{{ item }}'}\n"
                      "    cwd: '{{ env.HOME }}'\n"
                      "  none:\n"
                      "    foreach: '{{ inputs.empty }}'\n"
                      "    shell: 'exit 1'\n");
    json_t *desc = flow_describe(f);
    json_t *each = described_task(desc, "each");
    assert_string_equal(json_string_value(json_object_get(each, "foreach")),
                        "{{ tasks.list.output }}");
    assert_int_equal(json_integer_value(json_object_get(each, "concurrency")), 2);
    json_t *lit = described_task(desc, "lit");
    assert_true(json_is_array(json_object_get(lit, "foreach")));
    assert_int_equal(json_integer_value(json_object_get(lit, "concurrency")), 0);
    json_decref(desc);

    /* Run it: item, index and the input template per element, in order. */
    assert_int_equal(flow_bind(f, "each", foreach_echo, NULL), FLOW_OK);
    json_t *inputs = json_pack("{s:s,s:[]}", "y", "why", "empty");
    json_t *result = NULL;
    flow_error err;
    flow_run_status st = flow_run_simple(f, inputs, 2, &result, &err);
    if (st != FLOW_RUN_COMPLETED)
        fail_msg("run ended %s: %s", flow_run_status_name(st), err.message);
    /* (`input` in the input template of a foreach task is the element) */
    json_t *want = json_loads(
        "{\"each\": ["
        "{\"item\": \"a\", \"index\": 0, \"input\": {\"n\": \"a\", \"at\": 0, \"in\": \"a\"}},"
        "{\"item\": \"b\", \"index\": 1, \"input\": {\"n\": \"b\", \"at\": 1, \"in\": \"b\"}},"
        "{\"item\": \"c\", \"index\": 2, \"input\": {\"n\": \"c\", \"at\": 2, \"in\": \"c\"}}],"
        " \"lit\": [\"0-x-$ITEM\", \"1-why-$ITEM\"], \"none\": []}",
        0, NULL);
    assert_non_null(want);
    if (!json_equal(result, want)) {
        char *got = json_dumps(result, JSON_SORT_KEYS);
        fail_msg("result %s", got);
    }
    json_decref(want);
    json_decref(result);
    json_decref(inputs);
    flow_free(f);
}

/* The producer streams three rows while it runs; each is one activation of
 * the consumer, whose input is the row with `id` renamed to `row_id`. */
static int produce_rows(flow_ctx *ctx)
{
    for (int i = 1; i <= 3; i++) {
        json_t *row = json_pack("{s:i,s:s}", "id", i, "name", i == 2 ? "two" : "other");
        flow_err rc = flow_ctx_emit(ctx, "row", row);
        json_decref(row);
        if (rc)
            return 1;
    }
    return flow_ctx_emit(ctx, "done", NULL) ? 1 : 0;
}

static void test_connect(void **state)
{
    (void)state;
    flow *f = load_ok("name: stream\n"
                      "connect:\n"
                      "  - from: producer.row\n"
                      "    to: consumer\n"
                      "    map: {id: row_id}\n"
                      "  - {from: producer.done, to: closer}\n"
                      "tasks:\n"
                      "  producer: {}\n"
                      "  consumer: {noop: true}\n"
                      "  closer: {noop: true}\n");
    json_t *desc = flow_describe(f);
    bool found = false;
    size_t i;
    json_t *e;
    json_array_foreach (json_object_get(desc, "edges"), i, e) {
        if (strcmp(json_string_value(json_object_get(e, "kind")), "connect") != 0 ||
            strcmp(json_string_value(json_object_get(e, "to")), "consumer") != 0)
            continue;
        assert_string_equal(json_string_value(json_object_get(e, "from")), "producer");
        assert_string_equal(json_string_value(json_object_get(e, "event")), "row");
        json_t *map = json_pack("{s:s}", "id", "row_id");
        assert_true(json_equal(json_object_get(e, "map"), map));
        json_decref(map);
        found = true;
    }
    assert_true(found);
    assert_true(has_edge(desc, "producer", "closer", "connect"));
    /* A connect target is not a start task. */
    assert_true(json_is_false(json_object_get(described_task(desc, "consumer"), "start")));
    json_decref(desc);

    assert_int_equal(flow_bind(f, "producer", produce_rows, NULL), FLOW_OK);
    flow_error err;
    flow_engine *eng = flow_engine_new(NULL, &err);
    assert_non_null(eng);
    flow_run *r = flow_run_start(eng, f, NULL, &err);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_COMPLETED);
    json_t *seen = json_array();
    size_t closers = 0;
    for (i = 0; i < flow_run_activation_count(r); i++) {
        flow_activation_info info;
        assert_int_equal(flow_run_activation(r, i, &info), FLOW_OK);
        if (!strcmp(info.task, "consumer"))
            json_array_append(seen, info.input);
        else if (!strcmp(info.task, "closer"))
            closers++;
    }
    json_t *want = json_loads("[{\"row_id\": 1, \"name\": \"other\"}, {\"row_id\": 2, \"name\": "
                              "\"two\"}, {\"row_id\": 3, \"name\": \"other\"}]",
                              0, NULL);
    if (!json_equal(seen, want)) {
        char *got = json_dumps(seen, 0);
        fail_msg("consumer inputs %s", got);
    }
    assert_int_equal(closers, 1);
    json_decref(want);
    json_decref(seen);
    flow_run_free(r);
    flow_engine_free(eng);
    flow_free(f);
}

/* In the temp dir `dir`: write a file, fail the test when that fails. */
static void put(const char *dir, const char *name, const char *text)
{
    char *path = th_write_file(dir, name, text);
    assert_non_null(path);
    free(path);
}

static void test_nested_flows(void **state)
{
    (void)state;
    char *dir = th_tempdir();
    char here[4096];
    assert_non_null(getcwd(here, sizeof(here)));
    assert_int_equal(chdir(dir), 0); /* so that messages name files as written */
    assert_int_equal(mkdir("lib", 0700), 0);
    put(dir, "parent.yaml",
        "name: parent\n"
        "result: {one: '{{ tasks.one.output }}', two: '{{ tasks.two.output }}'}\n"
        "tasks:\n"
        "  one: {flow: lib/double.yaml, input: {n: 2}}\n"
        "  two:\n"
        "    after: one\n"
        "    flow: ./lib/../lib/double.yaml\n"
        "    input: {n: '{{ tasks.one.output }}'}\n");
    put(dir, "lib/double.yaml",
        "name: double\n"
        "result: '{{ tasks.calc.output }}'\n"
        "tasks:\n"
        "  calc: {env: {N: '{{ inputs.n }}'}, shell: 'echo $((N * 2))'}\n");
    flow_error err;
    flow_diags *d = flow_diags_new();
    flow *f = flow_load_file("parent.yaml", d, &err);
    if (!f)
        fail_msg("load: %s", err.message);
    assert_int_equal(flow_diags_count(d), 0);
    flow_diags_free(d);
    json_t *desc = flow_describe(f);
    json_t *one = described_task(desc, "one");
    assert_string_equal(json_string_value(json_object_get(one, "kind")), "flow");
    assert_string_equal(json_string_value(json_object_get(one, "flow")), "double");
    json_decref(desc);
    /* The file used twice is loaded once: both tasks run the same flow. */
    const struct flow_task *t1 = flow_find_task(f, "one");
    const struct flow_task *t2 = flow_find_task(f, "two");
    assert_non_null(t1->ext->subflow);
    assert_ptr_equal(t1->ext->subflow, t2->ext->subflow);
    json_t *result = NULL;
    flow_run_status st = flow_run_simple(f, NULL, 2, &result, &err);
    if (st != FLOW_RUN_COMPLETED)
        fail_msg("run ended %s: %s", flow_run_status_name(st), err.message);
    json_t *want = json_pack("{s:i,s:i}", "one", 4, "two", 8);
    assert_true(json_equal(result, want));
    json_decref(want);
    json_decref(result);
    flow_free(f);

    /* From a string, a relative `flow:` is relative to the current directory. */
    const char *text = "name: s\ntasks:\n  x: {flow: lib/double.yaml, input: {n: 1}}\n";
    f = flow_load_string(text, strlen(text), "s.yaml", NULL, &err);
    assert_non_null(f);
    flow_free(f);

    /* A cycle, reported where it starts, with its path. */
    put(dir, "a.yaml", "name: a\ntasks:\n  child:\n    flow: b.yaml\n  again: {flow: b.yaml}\n");
    put(dir, "b.yaml", "name: b\ntasks:\n  back: {flow: a.yaml}\n");
    d = flow_diags_new();
    assert_null(flow_load_file("a.yaml", d, &err));
    assert_string_equal(err.message, "nested flow cycle: a.yaml -> b.yaml -> a.yaml (a.yaml:4:5)");
    assert_string_equal(err.file, "a.yaml");
    assert_int_equal(err.line, 4);
    assert_int_equal(err.column, 5);
    assert_int_equal(flow_diags_error_count(d), 1); /* b.yaml is used twice: one message */
    flow_diags_free(d);
    put(dir, "self.yaml", "name: self\ntasks:\n  me: {flow: ./self.yaml}\n");
    assert_null(flow_load_file("self.yaml", NULL, &err));
    assert_string_equal(err.message, "nested flow cycle: self.yaml -> self.yaml (self.yaml:3:8)");

    /* A nested file's diagnostics keep its name; its warnings come along. */
    assert_int_equal(mkdir("sub", 0700), 0);
    put(dir, "sub/bad.yaml", "name: bad\ntasks:\n  w: {run: [x], retries: lots}\n  l: {on: go}\n");
    put(dir, "uses-bad.yaml",
        "name: p\ntasks:\n  x: {flow: sub/bad.yaml}\n  y: {flow: sub/bad.yaml}\n");
    d = flow_diags_new();
    assert_null(flow_load_file("uses-bad.yaml", d, &err));
    assert_string_equal(err.message, "'retries' of task 'w' must be a non-negative integer, not "
                                     "a string (sub/bad.yaml:3:26)");
    assert_string_equal(err.file, "sub/bad.yaml");
    assert_int_equal(err.code, FLOW_EVALIDATION);
    assert_int_equal(flow_diags_error_count(d), 1);
    assert_int_equal(count_diags(d, FLOW_SEV_WARNING, "label 'go' in 'on' of task 'l'"), 1);
    flow_diags_free(d);
    put(dir, "sub/warn.yaml", "name: w\ntasks:\n  s: {}\n  l: {on: go}\n");
    put(dir, "uses-warn.yaml", "name: p\ntasks:\n  x: {flow: sub/warn.yaml}\n");
    d = flow_diags_new();
    f = flow_load_file("uses-warn.yaml", d, &err);
    assert_non_null(f);
    assert_int_equal(flow_diags_error_count(d), 0);
    assert_int_equal(flow_diags_count(d), 1);
    flow_severity sev = FLOW_SEV_ERROR;
    const flow_error *w = flow_diags_get(d, 0, &sev);
    assert_int_equal(sev, FLOW_SEV_WARNING);
    assert_string_equal(w->file, "sub/warn.yaml");
    flow_diags_free(d);
    flow_free(f);

    /* Missing files and directories, at the `flow:` key of the task. */
    put(dir, "missing.yaml", "name: m\ntasks:\n  x:\n    flow: sub/gone.yaml\n  y: {flow: sub}\n");
    d = flow_diags_new();
    assert_null(flow_load_file("missing.yaml", d, &err));
    assert_string_equal(err.message, "cannot open nested flow 'sub/gone.yaml' of task 'x': No "
                                     "such file or directory (missing.yaml:4:5)");
    assert_int_equal(count_diags(d, FLOW_SEV_ERROR, "nested flow 'sub' of task 'y' is a "
                                                    "directory, not a workflow file "
                                                    "(missing.yaml:5:7)"),
                     1);
    flow_diags_free(d);
    /* From another directory, names are the paths that lead there. */
    assert_int_equal(chdir("lib"), 0);
    assert_null(flow_load_file("../missing.yaml", NULL, &err));
    assert_string_equal(err.message, "cannot open nested flow 'sub/gone.yaml' of task 'x' "
                                     "(looked for '../sub/gone.yaml'): No such file or "
                                     "directory (../missing.yaml:4:5)");
    assert_int_equal(chdir(".."), 0);

    /* A chain deeper than the limit: refused, not a stack overflow. */
    for (int i = 0; i < 40; i++) {
        char name[32], body[128];
        snprintf(name, sizeof(name), "deep%d.yaml", i);
        snprintf(body, sizeof(body), "name: d%d\ntasks:\n  t: {flow: deep%d.yaml}\n", i, i + 1);
        put(dir, name, body);
    }
    put(dir, "deep40.yaml", "name: end\ntasks:\n  t: {}\n");
    assert_null(flow_load_file("deep0.yaml", NULL, &err));
    assert_non_null(strstr(err.message, "nested flow 'deep32.yaml' of task 't' is more than 32 "
                                        "files deep (deep31.yaml:3:7)"));

    assert_int_equal(chdir(here), 0);
    th_rmtree(dir);
    free(dir);
}

/* Writes `confidence` as given in the input. */
static int write_confidence(flow_ctx *ctx)
{
    return flow_ctx_set_state(ctx, "confidence", flow_ctx_input(ctx)) ? 1 : 0;
}

static void test_state_schema(void **state)
{
    (void)state;
    const char *text = "name: s\n"
                       "state: {confidence: 0.5}\n"
                       "state_schema:\n"
                       "  type: object\n"
                       "  required: [confidence]\n"
                       "  properties:\n"
                       "    confidence: {type: number, minimum: 0, maximum: 1}\n"
                       "    status: {enum: [draft, done]}\n"
                       "    tags: {type: array, items: {type: string}}\n"
                       "tasks:\n"
                       "  set: {input: '{{ inputs.c }}'}\n";
    flow *f = load_ok(text);
    assert_int_equal(flow_bind(f, "set", write_confidence, NULL), FLOW_OK);
    json_t *inputs = json_pack("{s:f}", "c", 0.75);
    flow_error err;
    assert_int_equal(flow_run_simple(f, inputs, 1, NULL, &err), FLOW_RUN_COMPLETED);
    json_decref(inputs);
    /* A write that breaks the schema fails the writing task, naming the key. */
    inputs = json_pack("{s:f}", "c", 1.5);
    flow_engine *eng = flow_engine_new(NULL, &err);
    assert_non_null(eng);
    flow_run_options o = {.inputs = inputs};
    flow_run *r = flow_run_start(eng, f, &o, &err);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_FAILED);
    assert_non_null(flow_run_error(r));
    assert_non_null(strstr(flow_run_error(r), "confidence"));
    flow_run_free(r);
    flow_engine_free(eng);
    json_decref(inputs);
    flow_free(f);

    /* The core's word on a bad schema, at the key. */
    char *msgs = NULL;
    assert_null(load("name: s\nstate_schema:\n  properties:\n    x: {type: float}\ntasks:\n"
                     "  a: {}\n",
                     &msgs, &err));
    assert_non_null(strstr(err.message, "invalid 'state_schema': "));
    assert_non_null(strstr(err.message, "float"));
    assert_non_null(strstr(err.message, "(w.yaml:2:1)"));
    assert_null(strstr(err.message, "state_schema: state_schema"));
    assert_int_equal(err.line, 2);
    free(msgs);
}

static void test_label_warnings(void **state)
{
    (void)state;
    flow_diags *d = NULL;
    flow_error err;
    /* No router: every label of `on` and `when` gets a warning, the flow loads. */
    flow *f = load_keep("name: l\n"
                        "tasks:\n"
                        "  draft: {run: [echo]}\n"
                        "  review: {on: [needs_review, again]}\n"
                        "  publish: {when: {or: [draft, {and: [approved, draft]}]}}\n",
                        &d, &err);
    assert_non_null(f);
    assert_int_equal(err.code, FLOW_OK);
    assert_int_equal(flow_diags_error_count(d), 0);
    assert_int_equal(flow_diags_count(d), 3);
    const char *want[] = {
        "label 'needs_review' in 'on' of task 'review' is not emitted by any router in this "
        "flow (a task can still emit it with 'emit') (w.yaml:4:17)",
        "label 'again' in 'on' of task 'review' is not emitted by any router in this flow (a "
        "task can still emit it with 'emit') (w.yaml:4:31)",
        "label 'approved' in 'when' of task 'publish' is not emitted by any router in this flow "
        "(a task can still emit it with 'emit') (w.yaml:5:39)",
    };
    for (size_t i = 0; i < 3; i++) {
        flow_severity sev = FLOW_SEV_ERROR;
        const flow_error *e = flow_diags_get(d, i, &sev);
        assert_int_equal(sev, FLOW_SEV_WARNING);
        assert_string_equal(e->message, want[i]);
        assert_string_equal(e->file, "w.yaml");
    }
    flow_free(f);
    flow_diags_free(d);

    /* One router is enough; `router: false` is not one. */
    f = load_keep("name: l\ntasks:\n  judge: {router: true}\n  a: {on: yes_please}\n", &d, &err);
    assert_non_null(f);
    assert_int_equal(flow_diags_count(d), 0);
    flow_free(f);
    flow_diags_free(d);
    f = load_keep("name: l\ntasks:\n  judge: {router: false}\n  a: {on: x}\n", &d, &err);
    assert_non_null(f);
    assert_int_equal(count_diags(d, FLOW_SEV_WARNING, "label 'x' in 'on' of task 'a'"), 1);
    flow_free(f);
    flow_diags_free(d);

    /* With errors too, warnings stay warnings and errors come first in err. */
    assert_null(load_keep("name: l\ntasks:\n  a: {on: x}\n  b: {after: zz}\n", &d, &err));
    assert_int_equal(flow_diags_error_count(d), 1);
    assert_int_equal(count_diags(d, FLOW_SEV_WARNING, "label 'x'"), 1);
    assert_non_null(strstr(err.message, "unknown task 'zz'"));
    flow_diags_free(d);
}

static void test_parse_errors(void **state)
{
    (void)state;
    const char *e1[] = {"syntax error: did not find expected key", "(w.yaml:4:2)", NULL};
    load_fails("name: x\ntasks:\n  a: {}\n b: {}\n", FLOW_EPARSE, e1);
    flow_diags *d = flow_diags_new();
    flow_error err;
    assert_null(flow_load_string("a: [\n", 5, "w.yaml", d, &err));
    assert_int_equal(flow_diags_count(d), 1);
    assert_int_equal(flow_diags_error_count(d), 1);
    assert_int_equal(err.code, FLOW_EPARSE);
    assert_string_equal(err.file, "w.yaml");
    assert_true(err.line > 0);
    flow_diags_free(d);
}

static void test_files(void **state)
{
    (void)state;
    flow_error err;
    flow_diags *d = flow_diags_new();
    assert_null(flow_load_file("/nonexistent/flow.yaml", d, &err));
    assert_int_equal(err.code, FLOW_ENOTFOUND);
    assert_non_null(strstr(err.message, "cannot open '/nonexistent/flow.yaml'"));
    assert_int_equal(flow_diags_count(d), 1);
    flow_diags_free(d);

    char *dir = th_tempdir();
    assert_null(flow_load_file(dir, NULL, &err));
    assert_non_null(strstr(err.message, "is a directory"));

    char *path = th_write_file(dir, "f.json", "{\"name\": \"a\", \"tasks\": {\"t\": {}}}");
    flow *f = flow_load_file(path, NULL, &err);
    assert_non_null(f);
    flow_free(f);
    free(path);

    path = th_write_file(dir, "bad.yaml", "name: a\ntasks:\n  t: {after: q}\n");
    assert_null(flow_load_file(path, NULL, &err));
    char want[4200];
    snprintf(want, sizeof(want), "unknown task 'q' in 'after' of task 't' (%s:3:14)", path);
    assert_string_equal(err.message, want);
    assert_string_equal(err.file, path);
    assert_int_equal(err.line, 3);
    assert_int_equal(err.column, 14);
    free(path);
    th_rmtree(dir);
    free(dir);
}

/* Many tasks load in linear time. */
static void test_big_file(void **state)
{
    (void)state;
    size_t cap = 10000 * 80 + 100;
    char *text = malloc(cap);
    size_t n = (size_t)snprintf(text, cap, "name: big\ntasks:\n  t0: {run: [echo, '0']}\n");
    for (int i = 1; i < 10000; i++)
        n += (size_t)snprintf(text + n, cap - n,
                              "  t%d: {after: t%d, run: [echo, '{{ tasks.t%d.output }}']}\n", i,
                              i - 1, i - 1);
    flow *f = load_ok(text);
    assert_int_equal(flow_task_count(f), 10000);
    flow_free(f);
    free(text);
}

/* Every allocation of a load fails once: an error, never a crash or a leak. */
static void test_load_allocation_failures(void **state)
{
    (void)state;
    const char *text = "name: chaos\n"
                       "defaults: {retries: 1, env: {A: x}, backoff: {delay: 2s}}\n"
                       "state: {a: 1}\n"
                       "result: '{{ state.a }}'\n"
                       "tasks:\n"
                       "  a: {run: [echo, '{{ inputs.x }}'], save: a, on: [go]}\n"
                       "  b: {after: a, shell: 'echo hi', when: {or: [a, go]}, "
                       "on_error: {fallback: c}}\n"
                       "  c: {start: false, input: {x: '{{ tasks.a.output }}'}}\n"
                       "  d: {after: [nope]}\n"
                       "  e: {foreach: '{{ inputs.xs }}', concurrency: 2, input: '{{ item }}',"
                       " on: lonely}\n"
                       "  f: {foreach: [1, '{{ state.a }}'], run: [echo, '{{ index }}']}\n"
                       "  g: {flow: /nonexistent/child.yaml}\n"
                       "state_schema: {type: object, properties: {a: {type: integer}}}\n"
                       "connect: [{from: a.ev, to: c, map: {x: y}}, {from: b.ev, to: zz}]\n";
    bool done = false;
    for (size_t n = 1; !done && n < 100000; n++) {
        flow__alloc_fail_at(n);
        flow_diags *d = flow_diags_new();
        flow_error err;
        flow *f = flow_load_string(text, strlen(text), "c.yaml", d, &err);
        size_t used = flow__alloc_fail_at(0);
        assert_null(f); /* task d is wrong: never a flow */
        assert_true(err.code == FLOW_ENOMEM || err.code == FLOW_EVALIDATION);
        if (err.code == FLOW_EVALIDATION && used < n)
            done = true;
        flow_diags_free(d);
    }
    assert_true(done);
}

/* The same for a tree of files: a parent, a child used twice, a grandchild. */
static void test_nested_allocation_failures(void **state)
{
    (void)state;
    char *dir = th_tempdir();
    char sub[4096];
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    char *path = th_write_file(dir, "p.yaml",
                               "name: p\ntasks:\n  a: {flow: sub/c.yaml}\n"
                               "  b: {after: a, flow: sub/c.yaml, input: {n: 1}}\n");
    put(dir, "sub/c.yaml", "name: c\ntasks:\n  x: {flow: ../g.yaml}\n  y: {on: never}\n");
    put(dir, "g.yaml", "name: g\ntasks:\n  z: {run: [echo, '{{ inputs.n }}']}\n");
    bool done = false;
    for (size_t n = 1; !done && n < 100000; n++) {
        flow__alloc_fail_at(n);
        flow_diags *d = flow_diags_new();
        flow_error err;
        flow *f = flow_load_file(path, d, &err);
        size_t used = flow__alloc_fail_at(0);
        if (used < n) { /* nothing failed: the whole tree loads */
            assert_non_null(f);
            done = true;
        } else if (!f) {
            assert_int_equal(err.code, FLOW_ENOMEM);
        }
        flow_free(f);
        flow_diags_free(d);
    }
    assert_true(done);
    free(path);
    th_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yaml_positions),
        cmocka_unit_test(test_yaml_big_positions),
        cmocka_unit_test(test_yaml_scalar_typing),
        cmocka_unit_test(test_yaml_tags),
        cmocka_unit_test(test_yaml_duplicates),
        cmocka_unit_test(test_yaml_duplicate_inside_dropped_value),
        cmocka_unit_test(test_yaml_aliases),
        cmocka_unit_test(test_yaml_billion_laughs),
        cmocka_unit_test(test_yaml_documents_and_limits),
        cmocka_unit_test(test_yaml_json),
        cmocka_unit_test(test_load_string_reads_only_len),
        cmocka_unit_test(test_messages_are_one_line),
        cmocka_unit_test(test_load_full_file),
        cmocka_unit_test(test_bind_and_run),
        cmocka_unit_test(test_file_cwd_and_env),
        cmocka_unit_test(test_json_file),
        cmocka_unit_test(test_every_error_is_reported),
        cmocka_unit_test(test_error_cases),
        cmocka_unit_test(test_core_validation),
        cmocka_unit_test(test_foreach),
        cmocka_unit_test(test_connect),
        cmocka_unit_test(test_nested_flows),
        cmocka_unit_test(test_state_schema),
        cmocka_unit_test(test_label_warnings),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_big_file),
        cmocka_unit_test(test_load_allocation_failures),
        cmocka_unit_test(test_nested_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
