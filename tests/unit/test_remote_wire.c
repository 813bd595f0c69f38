/* test_remote_wire.c -- the messages of the remote executor
 * (src/exec/remote_wire.c): a spec names its state version (state_v) and
 * carries no state, a spec with the state in it (runners before state_v)
 * still decodes, and everything malformed -- a spec field, the state a
 * version names -- is an error naming it. */
#include "util/compat.h"

#include <stdlib.h>
#include <string.h>

#include "exec/remote_wire.h"
#include "helpers.h"
#include "util/alloc.h"
#include "util/json.h"

static char *encoded(const struct flow__cmd_spec *spec, const char *fn, const char *state_v)
{
    json_t *js = flow__rw_spec_encode(spec, fn, state_v);
    assert_non_null(js);
    char *text = json_dumps(js, JSON_COMPACT);
    json_decref(js);
    assert_non_null(text);
    return text;
}

static void spec_names_its_state_version(void **unused)
{
    (void)unused;
    const char *argv[] = {"echo", "hi", NULL};
    json_t *input = json_pack("{s:i}", "n", 3);
    struct flow__cmd_spec spec = {.argv = argv, .input = input};
    char *text = encoded(&spec, NULL, "0123abcd.42");
    json_t *o = json_loads(text, 0, NULL);
    assert_null(json_object_get(o, "state"));
    assert_string_equal(json_string_value(json_object_get(o, "state_v")), "0123abcd.42");
    json_decref(o);

    struct flow__rw_task t;
    char *why = NULL;
    assert_true(flow__rw_spec_decode(text, &t, &why));
    assert_null(why);
    assert_string_equal(t.state_v, "0123abcd.42");
    assert_null(t.state);
    assert_string_equal(t.spec.argv[0], "echo");
    assert_true(json_equal(t.spec.input, input));
    flow__rw_task_cleanup(&t);
    flow__json_free_text(text);

    text = encoded(&spec, "square", "e.1");
    assert_true(flow__rw_spec_decode(text, &t, &why));
    assert_string_equal(t.fn, "square");
    assert_string_equal(t.state_v, "e.1");
    flow__rw_task_cleanup(&t);
    flow__json_free_text(text);
    json_decref(input);
}

static void spec_with_the_state_in_it(void **unused)
{
    (void)unused;
    struct flow__rw_task t;
    char *why = NULL;
    assert_true(flow__rw_spec_decode(
        "{\"fn\":\"report\",\"input\":1,\"state\":{\"squares\":5}}", &t, &why));
    assert_null(t.state_v);
    assert_int_equal(json_integer_value(json_object_get(t.state, "squares")), 5);
    flow__rw_task_cleanup(&t);
}

#define NOT_A_VERSION "field 'state_v' of the spec is not a state version"

static void malformed_specs(void **unused)
{
    (void)unused;
    static const struct {
        const char *spec, *why;
    } cases[] = {
        {"{\"fn\":\"f\",\"input\":1}", "field 'state_v' of the spec is missing"},
        {"{\"fn\":\"f\",\"input\":1,\"state_v\":\"../x\"}", NOT_A_VERSION},
        {"{\"fn\":\"f\",\"input\":1,\"state_v\":\"\"}", NOT_A_VERSION},
        {"{\"fn\":\"f\",\"input\":1,\"state_v\":7}", NOT_A_VERSION},
        {"{\"fn\":\"f\",\"input\":1,\"state\":[1]}", "field 'state' of the spec is not an object"},
        {"{\"fn\":\"f\",\"state_v\":\"a.1\"}", "field 'input' of the spec is missing"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct flow__rw_task t;
        char *why = NULL;
        assert_false(flow__rw_spec_decode(cases[i].spec, &t, &why));
        assert_non_null(why);
        assert_string_equal(why, cases[i].why);
        flow__free(why);
        flow__rw_task_cleanup(&t);
    }
    char longest[FLOW__RW_STATE_V_MAX + 1];
    memset(longest, 'a', sizeof(longest) - 1);
    longest[sizeof(longest) - 1] = '\0';
    assert_false(flow__rw_state_v_ok(longest));
    longest[FLOW__RW_STATE_V_MAX - 1] = '\0';
    assert_true(flow__rw_state_v_ok(longest));
    assert_false(flow__rw_state_v_ok("a b"));
    assert_false(flow__rw_state_v_ok(NULL));
}

/* A reply as hiredis would make it: only the fields the decoder reads. */
static redisReply reply(int type, const char *str)
{
    redisReply r;
    memset(&r, 0, sizeof(r));
    r.type = type;
    r.str = (char *)str;
    r.len = str ? strlen(str) : 0;
    return r;
}

static void state_replies(void **unused)
{
    (void)unused;
    static const struct {
        int type;
        const char *str, *why;
    } bad[] = {
        {REDIS_REPLY_NIL, NULL, "the state of run R1 (version e.3) is not in Redis (the run ended, "
                                "or its keys expired)"},
        {REDIS_REPLY_STRING, "[1, 2]", "the state of run R1 (version e.3) in Redis is not a JSON "
                                       "object"},
        {REDIS_REPLY_STRING, "{\"a\":", "the state of run R1 (version e.3) in Redis is not a "
                                        "JSON object"},
        {REDIS_REPLY_STRING, "", "the state of run R1 (version e.3) in Redis is not a JSON object"},
        {REDIS_REPLY_INTEGER, NULL, "the state of run R1 (version e.3) in Redis is not a string"},
        {REDIS_REPLY_ERROR, "WRONGTYPE Operation against a key holding the wrong kind of value",
         "cannot read the state of run R1 (version e.3): WRONGTYPE Operation against a key "
         "holding the wrong kind of value"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply r = reply(bad[i].type, bad[i].str);
        char *why = NULL;
        assert_null(flow__rw_state_decode(&r, "R1", "e.3", &why));
        assert_non_null(why);
        assert_string_equal(why, bad[i].why);
        flow__free(why);
    }
    redisReply r = reply(REDIS_REPLY_STRING, "{\"squares\": 4}");
    char *why = NULL;
    json_t *st = flow__rw_state_decode(&r, "R1", "e.3", &why);
    assert_non_null(st);
    assert_null(why);
    assert_int_equal(json_integer_value(json_object_get(st, "squares")), 4);
    json_decref(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spec_names_its_state_version),
        cmocka_unit_test(spec_with_the_state_in_it),
        cmocka_unit_test(malformed_specs),
        cmocka_unit_test(state_replies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
