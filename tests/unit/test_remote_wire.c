/* test_remote_wire.c -- the messages of the remote executor
 * (exec/remote_wire.c): what names a submission (run, activation, attempt,
 * round), results with a C function's extras (state writes, events, the
 * feedback request it waits for), streamed events, and the spec fields a
 * function reads (answers, item, index); a spec names its state version
 * (state_v) and carries no state, a spec with the state in it (runners
 * before state_v) still decodes, and the state a version names is checked.
 * The stream of a priority level and the resources an entry asks (field
 * `resources`) as workers read them. Everything read from Redis is checked:
 * a malformed field is refused with a message, never a crash. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/remote_wire.h"
#include "util/alloc.h"
#include "util/json.h"

/* An entry as hiredis hands it over: [id, [k1, v1, ...]]. */
struct fake {
    redisReply top, id, fields, kv[16];
    redisReply *top_el[2], *field_el[16];
};

static void fake_entry(struct fake *f, const char *const *kv, size_t n)
{
    memset(f, 0, sizeof(*f));
    f->id.type = REDIS_REPLY_STRING;
    f->id.str = (char *)"1-0";
    f->id.len = 3;
    for (size_t i = 0; i < n; i++) {
        f->kv[i].type = REDIS_REPLY_STRING;
        f->kv[i].str = (char *)kv[i];
        f->kv[i].len = strlen(kv[i]);
        f->field_el[i] = &f->kv[i];
    }
    f->fields.type = REDIS_REPLY_ARRAY;
    f->fields.elements = n;
    f->fields.element = f->field_el;
    f->top_el[0] = &f->id;
    f->top_el[1] = &f->fields;
    f->top.type = REDIS_REPLY_ARRAY;
    f->top.elements = 2;
    f->top.element = f->top_el;
}

static bool ident_of(const char *const *kv, size_t n, struct flow__rw_ident *id, const char **why)
{
    struct fake f;
    fake_entry(&f, kv, n);
    struct flow__rw_entry e;
    assert_true(flow__rw_entry_of(&f.top, &e));
    return flow__rw_ident(&e, id, why);
}

static void test_ident_round(void **state)
{
    (void)state;
    struct flow__rw_ident id;
    const char *why = NULL;
    const char *plain[] = {"v", FLOW__RW_VERSION, "run", "r1", "act", "7", "attempt", "2"};
    assert_true(ident_of(plain, 8, &id, &why));
    assert_int_equal(id.act, 7);
    assert_int_equal(id.attempt, 2);
    assert_int_equal(id.round, 0); /* entries without the field: round 0 */
    const char *second[] = {"v", FLOW__RW_VERSION, "run", "r1", "act", "7", "attempt", "2",
                            "round", "3"};
    assert_true(ident_of(second, 10, &id, &why));
    assert_int_equal(id.round, 3);
    const char *bad[] = {"v", FLOW__RW_VERSION, "run", "r1", "act", "7", "attempt", "2",
                         "round", "-1"};
    assert_false(ident_of(bad, 10, &id, &why));
    assert_non_null(strstr(why, "'round'"));
    const char *climbs[] = {"v", FLOW__RW_VERSION, "run", "../x", "act", "7", "attempt", "2"};
    assert_false(ident_of(climbs, 8, &id, &why));
    assert_non_null(strstr(why, "'run'"));
}

static void test_names_of_a_submission(void **state)
{
    (void)state;
    char b[32];
    flow__rw_cancel_field(b, sizeof(b), 5, 1, 0);
    assert_string_equal(b, "5:1"); /* as before rounds existed */
    flow__rw_cancel_field(b, sizeof(b), 5, 1, 2);
    assert_string_equal(b, "5:1.2");
    flow__rw_inflight_value(b, sizeof(b), 4, 0);
    assert_string_equal(b, "4");
    flow__rw_inflight_value(b, sizeof(b), 4, 1);
    assert_string_equal(b, "4.1");
}

/* Priority 0 keeps the stream queues always had; a level's stream cannot
 * be another queue's ('@' is not allowed in a queue's name). */
static void streams_of_priorities(void **state)
{
    (void)state;
    char *k = flow__rw_queue_key("flow", "default", 0);
    assert_string_equal(k, "flow:q:default");
    flow__free(k);
    k = flow__rw_queue_key("p", "gpu", 10);
    assert_string_equal(k, "p:q:gpu@10");
    flow__free(k);
    k = flow__rw_queue_key("p", "gpu", -3);
    assert_string_equal(k, "p:q:gpu@-3");
    flow__free(k);
}

static void resources_field(void **state)
{
    (void)state;
    flow_resources r = {.cpu = 2, .memory = 4.0 * 1024 * 1024 * 1024, .gpu = 0};
    char *t = flow__rw_resources_encode(&r, false);
    assert_string_equal(t, "{\"cpu\":2,\"memory\":4294967296}"); /* what is asked only */
    flow_resources back;
    const char *why = NULL;
    assert_true(flow__rw_resources_decode(t, &back, &why));
    assert_true(back.cpu == 2 && back.memory == r.memory && back.gpu == 0);
    flow__json_free_text(t);
    r = (flow_resources){.cpu = 0.5, .memory = 0, .gpu = 1};
    t = flow__rw_resources_encode(&r, true); /* a worker's, all three */
    assert_string_equal(t, "{\"cpu\":0.5,\"memory\":0,\"gpu\":1}");
    flow__json_free_text(t);
    assert_true(flow__rw_resources_decode(NULL, &back, &why)); /* none asked */
    assert_true(back.cpu == 0 && back.memory == 0 && back.gpu == 0);
    static const char *const bad[] = {"[1]", "{\"gpu\":-1}", "{\"cpu\":\"2\"}", "cpu=2", "{"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        why = NULL;
        assert_false(flow__rw_resources_decode(bad[i], &back, &why));
        assert_non_null(strstr(why, "field 'resources'"));
    }
}

static char *dumps(json_t *v)
{
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    return t;
}

static void test_result_extras_round_trip(void **state)
{
    (void)state;
    struct flow__cmd_result res = {.ok = true, .output = json_integer(49)};
    struct flow__rw_extra x = {
        .writes = json_pack("{s:i}", "k", 1),
        .events = json_pack("[{s:s,s:i}]", "event", "tick", "data", 1),
        .waiting = json_pack("{s:s,s:i,s:s}", "id", "go", "type", 0, "message", "Go?"),
    };
    char *text = dumps(flow__rw_result_encode(&res, &x));
    assert_non_null(text);
    flow__rw_extra_cleanup(&x);
    flow__cmd_result_cleanup(&res);
    char *why = NULL;
    assert_true(flow__rw_result_decode(text, &res, &x, &why));
    assert_int_equal(json_integer_value(res.output), 49);
    assert_int_equal(json_integer_value(json_object_get(x.writes, "k")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(x.events, 0), "event")),
                        "tick");
    assert_string_equal(json_string_value(json_object_get(x.waiting, "id")), "go");
    flow__rw_extra_cleanup(&x);
    flow__cmd_result_cleanup(&res);
    flow__json_free_text(text);
    /* a command's result has none of them */
    struct flow__cmd_result cmd = {.ok = false, .exit_status = 3, .error = (char *)"exit 3"};
    text = dumps(flow__rw_result_encode(&cmd, NULL));
    assert_true(flow__rw_result_decode(text, &res, &x, &why));
    assert_null(x.writes);
    assert_null(x.events);
    assert_null(x.waiting);
    assert_string_equal(res.error, "exit 3");
    flow__cmd_result_cleanup(&res);
    flow__json_free_text(text);
}

static void test_result_malformed_extras(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"ok\":true,\"events\":{}}",
        "{\"ok\":true,\"events\":[1]}",
        "{\"ok\":true,\"events\":[{\"data\":1}]}",
        "{\"ok\":true,\"events\":[{\"event\":\"\"}]}",
        "{\"ok\":true,\"waiting\":[]}",
        "{\"ok\":true,\"waiting\":{\"type\":0}}",
        "{\"ok\":true,\"writes\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct flow__cmd_result res;
        struct flow__rw_extra x;
        char *why = NULL;
        if (flow__rw_result_decode(bad[i], &res, &x, &why))
            fail_msg("accepted %s", bad[i]);
        assert_non_null(why);
        assert_null(x.events);
        flow__free(why);
        flow__cmd_result_cleanup(&res);
    }
}

static void test_events(void **state)
{
    (void)state;
    json_t *data = json_pack("{s:i}", "n", 2);
    char *text = flow__rw_event_encode(4, "tick", data);
    json_decref(data);
    assert_non_null(text);
    uint32_t seq = 0;
    const char *name = NULL;
    json_t *got = NULL, *owned = NULL;
    char *why = NULL;
    assert_true(flow__rw_event_decode(text, &seq, &name, &got, &owned, &why));
    assert_int_equal(seq, 4);
    assert_string_equal(name, "tick");
    assert_int_equal(json_integer_value(json_object_get(got, "n")), 2);
    json_decref(owned);
    flow__json_free_text(text);
    /* no data: null */
    text = flow__rw_event_encode(0, "e", NULL);
    assert_true(flow__rw_event_decode(text, &seq, &name, &got, &owned, &why));
    assert_true(json_is_null(got));
    json_decref(owned);
    flow__json_free_text(text);
    static const char *const bad[] = {"", "[]", "{\"event\":\"e\"}", "{\"seq\":-1,\"event\":\"e\"}",
                                      "{\"seq\":1}", "{\"seq\":1,\"event\":\"\"}",
                                      "{\"seq\":1.5,\"event\":\"e\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (flow__rw_event_decode(bad[i], &seq, &name, &got, &owned, &why))
            fail_msg("accepted %s", bad[i]);
        assert_non_null(why);
        flow__free(why);
    }
}

static void test_spec_function_fields(void **state)
{
    (void)state;
    struct flow__rw_task t;
    char *why = NULL;
    assert_true(flow__rw_spec_decode("{\"fn\":\"f\",\"input\":1,\"state\":{},"
                                     "\"answers\":{\"go\":{\"approved\":true}},"
                                     "\"item\":\"b\",\"index\":1}",
                                     &t, &why));
    assert_true(json_is_true(json_object_get(json_object_get(t.answers, "go"), "approved")));
    assert_string_equal(json_string_value(t.item), "b");
    assert_int_equal(t.index, 1);
    flow__rw_task_cleanup(&t);
    assert_true(flow__rw_spec_decode("{\"fn\":\"f\",\"input\":1,\"state\":{}}", &t, &why));
    assert_null(t.answers);
    assert_null(t.item);
    assert_int_equal(t.index, -1); /* not a foreach activation */
    flow__rw_task_cleanup(&t);
    static const char *const bad[] = {
        "{\"fn\":\"f\",\"input\":1,\"state\":{},\"answers\":[]}",
        "{\"fn\":\"f\",\"input\":1,\"state\":{},\"index\":-2}",
        "{\"fn\":\"f\",\"input\":1,\"state\":{},\"index\":\"1\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (flow__rw_spec_decode(bad[i], &t, &why))
            fail_msg("accepted %s", bad[i]);
        assert_non_null(why);
        flow__free(why);
        flow__rw_task_cleanup(&t);
    }
}

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
        cmocka_unit_test(test_ident_round),
        cmocka_unit_test(test_names_of_a_submission),
        cmocka_unit_test(test_result_extras_round_trip),
        cmocka_unit_test(test_result_malformed_extras),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_spec_function_fields),
        cmocka_unit_test(spec_names_its_state_version),
        cmocka_unit_test(spec_with_the_state_in_it),
        cmocka_unit_test(malformed_specs),
        cmocka_unit_test(state_replies),
        cmocka_unit_test(streams_of_priorities),
        cmocka_unit_test(resources_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
