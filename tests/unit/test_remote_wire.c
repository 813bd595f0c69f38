/* test_remote_wire.c -- the messages of the remote executor
 * (exec/remote_wire.c): what names a submission (run, activation, attempt,
 * round), results with a C function's extras (state writes, events, the
 * feedback request it waits for), streamed events, and the spec fields a
 * function reads (answers, item, index). Everything read from Redis is
 * checked: a malformed field is refused with a message, never a crash. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ident_round),
        cmocka_unit_test(test_names_of_a_submission),
        cmocka_unit_test(test_result_extras_round_trip),
        cmocka_unit_test(test_result_malformed_extras),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_spec_function_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
