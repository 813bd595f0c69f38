/* test_schema.c -- the state_schema subset (src/core/schema.c): every keyword
 * good and bad, the exact messages with nested paths, compile errors, the
 * changed-keys check, bounded messages, allocation failure, sharing between
 * threads and speed. */
#include "util/compat.h"

#include "helpers.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "def/schema.h"
#include "util/alloc.h"
#include "util/error.h"

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    if (!v)
        fail_msg("bad test JSON '%s': %s", text, je.text);
    return v;
}

static struct flow__schema *compile_ok(const char *text)
{
    json_t *js = parse(text);
    struct flow__schema *s = NULL;
    flow_error err;
    flow__error_clear(&err);
    flow_err rc = flow__schema_compile(js, &s, &err);
    json_decref(js);
    if (rc != FLOW_OK)
        fail_msg("compiling %s failed: %s", text, err.message);
    assert_non_null(s);
    return s;
}

/* Compiling fails with FLOW_EINVAL and exactly `message`. */
static void compile_fails(const char *text, const char *message)
{
    json_t *js = parse(text);
    struct flow__schema *s = (struct flow__schema *)&s; /* must be reset */
    flow_error err;
    flow__error_clear(&err);
    flow_err rc = flow__schema_compile(js, &s, &err);
    json_decref(js);
    assert_null(s);
    assert_int_equal(rc, FLOW_EINVAL);
    assert_int_equal(err.code, FLOW_EINVAL);
    if (strcmp(err.message, message))
        fail_msg("schema %s\n  got:  %s\n  want: %s", text, err.message, message);
}

/* `state` conforms to `s`. */
static void conforms(const struct flow__schema *s, const char *state)
{
    json_t *v = parse(state);
    char *msg = flow__schema_check(s, v);
    json_decref(v);
    if (msg)
        fail_msg("state %s: unexpected violation: %s", state, msg);
}

/* Checking `state` against `s` reports exactly `message`. */
static void violates(const struct flow__schema *s, const char *state, const char *message)
{
    json_t *v = parse(state);
    char *msg = flow__schema_check(s, v);
    json_decref(v);
    if (!msg)
        fail_msg("state %s: no violation, want: %s", state, message);
    if (strcmp(msg, message))
        fail_msg("state %s\n  got:  %s\n  want: %s", state, msg, message);
    flow__free(msg);
}

/* ------------------------------------------------------------------------ */

static void test_type(void **unused)
{
    (void)unused;
    struct flow__schema *s = compile_ok(
        "{\"type\": \"object\", \"properties\": {"
        " \"o\": {\"type\": \"object\"}, \"a\": {\"type\": \"array\"},"
        " \"s\": {\"type\": \"string\"}, \"n\": {\"type\": \"number\"},"
        " \"i\": {\"type\": \"integer\"}, \"b\": {\"type\": \"boolean\"},"
        " \"z\": {\"type\": \"null\"}, \"u\": {\"type\": [\"string\", \"null\"]},"
        " \"ni\": {\"type\": [\"integer\", \"number\"]},"
        " \"three\": {\"type\": [\"null\", \"array\", \"boolean\"]}}}");
    conforms(s, "{}");
    conforms(s, "{\"o\": {}, \"a\": [1], \"s\": \"x\", \"n\": 1.5, \"i\": 3, \"b\": false,"
                " \"z\": null, \"u\": null, \"ni\": 2.5, \"three\": true, \"other\": 1}");
    conforms(s, "{\"n\": 7, \"i\": 3.0, \"u\": \"\", \"b\": true}");
    conforms(s, "{\"i\": -4e3}");
    conforms(s, "{\"i\": 1e300}"); /* no fraction: an integer, as JSON Schema says */
    violates(s, "[]", "state: expected an object, got an array");
    violates(s, "{\"o\": []}", "state key 'o': expected an object, got an array");
    violates(s, "{\"a\": {}}", "state key 'a': expected an array, got an object");
    violates(s, "{\"s\": 1}", "state key 's': expected a string, got an integer");
    violates(s, "{\"n\": \"1\"}", "state key 'n': expected a number, got a string");
    violates(s, "{\"n\": null}", "state key 'n': expected a number, got null");
    violates(s, "{\"i\": 3.5}", "state key 'i': expected an integer, got 3.5");
    violates(s, "{\"i\": true}", "state key 'i': expected an integer, got a boolean");
    violates(s, "{\"b\": 0}", "state key 'b': expected a boolean, got an integer");
    violates(s, "{\"z\": false}", "state key 'z': expected null, got a boolean");
    violates(s, "{\"u\": 2}", "state key 'u': expected a string or null, got an integer");
    violates(s, "{\"ni\": \"x\"}", "state key 'ni': expected a number, got a string");
    violates(s, "{\"three\": 0.25}",
             "state key 'three': expected an array, a boolean or null, got 0.25");
    flow__schema_free(s);
}

static void test_enum(void **unused)
{
    (void)unused;
    struct flow__schema *s = compile_ok(
        "{\"properties\": {"
        " \"status\": {\"enum\": [\"pending\", \"processing\", \"completed\"]},"
        " \"one\": {\"enum\": [\"only\"]},"
        " \"mixed\": {\"enum\": [1, null, {\"a\": [1, 2]}, [true]]},"
        " \"typed\": {\"type\": \"string\", \"enum\": [\"a\"]}}}");
    conforms(s, "{\"status\": \"pending\", \"one\": \"only\"}");
    conforms(s, "{\"mixed\": 1}");
    conforms(s, "{\"mixed\": 1.0}"); /* numbers compare by value */
    conforms(s, "{\"mixed\": null}");
    conforms(s, "{\"mixed\": {\"a\": [1, 2.0]}}");
    conforms(s, "{\"mixed\": [true]}");
    violates(s, "{\"status\": \"done\"}",
             "state key 'status': \"done\" is not one of \"pending\", \"processing\", "
             "\"completed\"");
    violates(s, "{\"status\": 3}",
             "state key 'status': 3 is not one of \"pending\", \"processing\", \"completed\"");
    violates(s, "{\"one\": \"two\"}", "state key 'one': \"two\" is not \"only\"");
    violates(s, "{\"mixed\": {\"a\": [2, 1]}}",
             "state key 'mixed': {\"a\": [2, 1]} is not one of 1, null, {\"a\": [1, 2]}, [true]");
    violates(s, "{\"mixed\": {\"a\": [1, 2], \"b\": 0}}",
             "state key 'mixed': {\"a\": [1, 2], \"b\": 0} is not one of 1, null, "
             "{\"a\": [1, 2]}, [true]");
    violates(s, "{\"mixed\": 1.5}",
             "state key 'mixed': 1.5 is not one of 1, null, {\"a\": [1, 2]}, [true]");
    violates(s, "{\"mixed\": false}",
             "state key 'mixed': false is not one of 1, null, {\"a\": [1, 2]}, [true]");
    violates(s, "{\"mixed\": \"1\"}",
             "state key 'mixed': \"1\" is not one of 1, null, {\"a\": [1, 2]}, [true]");
    /* the type is checked first */
    violates(s, "{\"typed\": 1}", "state key 'typed': expected a string, got an integer");
    violates(s, "{\"typed\": \"b\\n\\\"\"}", "state key 'typed': \"b\\n\\\"\" is not \"a\"");
    flow__schema_free(s);

    /* The enum list is copied: changing the source after compiling does
     * nothing. */
    json_t *js = parse("{\"enum\": [\"a\", \"b\"]}");
    struct flow__schema *s2 = NULL;
    assert_int_equal(flow__schema_compile(js, &s2, NULL), FLOW_OK);
    json_array_clear(json_object_get(js, "enum"));
    json_decref(js);
    conforms(s2, "\"b\"");
    violates(s2, "\"c\"", "state: \"c\" is not one of \"a\", \"b\"");
    flow__schema_free(s2);
}

static void test_minimum_maximum(void **unused)
{
    (void)unused;
    struct flow__schema *s = compile_ok(
        "{\"properties\": {"
        " \"confidence\": {\"type\": \"number\", \"minimum\": 0, \"maximum\": 1},"
        " \"r\": {\"minimum\": -0.5, \"maximum\": 2.25},"
        " \"big\": {\"maximum\": 9223372036854775807, \"minimum\": 4611686018427387904},"
        " \"realbig\": {\"minimum\": 4611686018427387904.0},"
        " \"only_min\": {\"minimum\": 10}}}");
    conforms(s, "{\"confidence\": 0, \"r\": -0.5, \"only_min\": 10}");
    conforms(s, "{\"confidence\": 1, \"r\": 2.25, \"only_min\": 1e9}");
    conforms(s, "{\"confidence\": 0.5, \"r\": 2}");
    conforms(s, "{\"confidence\": 1.0, \"r\": -0}");
    /* bounds ignore what is not a number */
    conforms(s, "{\"r\": \"a string\", \"only_min\": [1], \"big\": null}");
    conforms(s, "{\"big\": 9223372036854775807}");
    conforms(s, "{\"big\": 4611686018427387904}");
    conforms(s, "{\"realbig\": 4611686018427387904}");
    violates(s, "{\"confidence\": 1.5}", "state key 'confidence': 1.5 is above the maximum 1");
    violates(s, "{\"confidence\": -1}", "state key 'confidence': -1 is below the minimum 0");
    violates(s, "{\"confidence\": 1.0000000000000002}",
             "state key 'confidence': 1.0000000000000002 is above the maximum 1");
    violates(s, "{\"confidence\": -1e-300}",
             "state key 'confidence': -1e-300 is below the minimum 0");
    violates(s, "{\"r\": -1}", "state key 'r': -1 is below the minimum -0.5");
    violates(s, "{\"r\": 3}", "state key 'r': 3 is above the maximum 2.25");
    violates(s, "{\"r\": 2.2500001}", "state key 'r': 2.2500001 is above the maximum 2.25");
    violates(s, "{\"only_min\": 9.99}", "state key 'only_min': 9.99 is below the minimum 10");
    /* exact with integers a double cannot hold */
    violates(s, "{\"big\": 4611686018427387903}",
             "state key 'big': 4611686018427387903 is below the minimum 4611686018427387904");
    violates(s, "{\"big\": 1e19}",
             "state key 'big': 1e+19 is above the maximum 9223372036854775807");
    violates(s, "{\"realbig\": 4611686018427387903}",
             "state key 'realbig': 4611686018427387903 is below the minimum "
             "4.6116860184273879e+18");
    flow__schema_free(s);

    /* integer type with a real bound, and a bound that is a whole real */
    s = compile_ok("{\"type\": \"integer\", \"minimum\": 0.5, \"maximum\": 3.0}");
    conforms(s, "1");
    conforms(s, "3");
    conforms(s, "3.0");
    violates(s, "0", "state: 0 is below the minimum 0.5");
    violates(s, "4", "state: 4 is above the maximum 3.0");
    violates(s, "2.5", "state: expected an integer, got 2.5");
    flow__schema_free(s);
}

static void test_required(void **unused)
{
    (void)unused;
    struct flow__schema *s = compile_ok(
        "{\"type\": \"object\", \"required\": [\"draft\", \"user\"],"
        " \"properties\": {\"user\": {\"required\": [\"name\", \"id\"],"
        "   \"properties\": {\"name\": {\"type\": \"string\"}}}}}");
    conforms(s, "{\"draft\": \"\", \"user\": {\"name\": \"a\", \"id\": 1}}");
    conforms(s, "{\"draft\": null, \"user\": 5}"); /* required is for objects only */
    violates(s, "{}", "state: required key 'draft' is missing");
    violates(s, "{\"user\": {}}", "state: required key 'draft' is missing");
    violates(s, "{\"draft\": 1}", "state: required key 'user' is missing");
    violates(s, "{\"draft\": 1, \"user\": {\"id\": 1}}",
             "state key 'user': required key 'name' is missing");
    violates(s, "{\"draft\": 1, \"user\": {\"name\": \"x\"}}",
             "state key 'user': required key 'id' is missing");
    /* required comes before the properties' own rules */
    violates(s, "{\"draft\": 1, \"user\": {\"name\": 2}}",
             "state key 'user': required key 'id' is missing");
    violates(s, "{\"draft\": 1, \"user\": {\"name\": 2, \"id\": 0}}",
             "state key 'user.name': expected a string, got an integer");
    flow__schema_free(s);

    s = compile_ok("{\"required\": []}");
    conforms(s, "{}");
    flow__schema_free(s);
}

static void test_items_and_paths(void **unused)
{
    (void)unused;
    struct flow__schema *s = compile_ok(
        "{\"properties\": {"
        " \"tags\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}},"
        " \"people\": {\"items\": {\"type\": \"object\", \"required\": [\"name\"],"
        "   \"properties\": {\"name\": {\"type\": \"string\"},"
        "     \"scores\": {\"items\": {\"type\": \"number\", \"minimum\": 0}}}}},"
        " \"grid\": {\"items\": {\"items\": {\"enum\": [0, 1]}}},"
        " \"a\": {\"properties\": {\"b\": {\"properties\": {\"c\": {\"type\": \"null\"}}}}}}}");
    conforms(s, "{\"tags\": [], \"people\": [], \"grid\": [[]]}");
    conforms(s, "{\"tags\": [\"x\", \"y\"], \"people\": [{\"name\": \"a\", \"scores\": [0, 2.5]}],"
                " \"grid\": [[0, 1], [1.0]], \"a\": {\"b\": {\"c\": null}}}");
    conforms(s, "{\"people\": {\"not\": \"a list\"}}"); /* items is for arrays only */
    violates(s, "{\"tags\": [\"a\", \"b\", 3]}",
             "state key 'tags[2]': expected a string, got an integer");
    violates(s, "{\"tags\": \"a\"}", "state key 'tags': expected an array, got a string");
    violates(s, "{\"people\": [{\"name\": \"a\"}, {}]}",
             "state key 'people[1]': required key 'name' is missing");
    violates(s, "{\"people\": [{\"name\": \"a\"}, {\"name\": false}]}",
             "state key 'people[1].name': expected a string, got a boolean");
    violates(s, "{\"people\": [{\"name\": \"a\", \"scores\": [1, 2, 3, -4]}]}",
             "state key 'people[0].scores[3]': -4 is below the minimum 0");
    violates(s, "{\"grid\": [[0], [1, 2]]}",
             "state key 'grid[1][1]': 2 is not one of 0, 1");
    violates(s, "{\"a\": {\"b\": {\"c\": 1}}}", "state key 'a.b.c': expected null, got an integer");
    /* the first violation in schema order wins, whatever the state's order */
    violates(s, "{\"a\": {\"b\": {\"c\": 1}}, \"grid\": 1, \"tags\": [1]}",
             "state key 'tags[0]': expected a string, got an integer");
    violates(s, "{\"tags\": [1, \"x\", 2]}",
             "state key 'tags[0]': expected a string, got an integer");
    flow__schema_free(s);
}

static void test_boolean_and_ignored(void **unused)
{
    (void)unused;
    struct flow__schema *s = compile_ok(
        "{\"title\": \"t\", \"description\": \"d\", \"$comment\": \"c\", \"default\": {},"
        " \"properties\": {\"any\": true, \"never\": false,"
        "  \"x\": {\"type\": \"integer\", \"description\": \"a count\", \"default\": 0,"
        "   \"title\": 1, \"$comment\": [1]}}}");
    conforms(s, "{\"any\": [1, {}], \"x\": 2}");
    violates(s, "{\"never\": 1}",
             "state key 'never': no value is allowed here (the schema is false)");
    violates(s, "{\"x\": \"2\"}", "state key 'x': expected an integer, got a string");
    flow__schema_free(s);

    s = compile_ok("true");
    conforms(s, "{\"a\": 1}");
    flow__schema_free(s);
    s = compile_ok("{}");
    conforms(s, "[1]");
    flow__schema_free(s);

    /* NULL schema or value: nothing to check */
    assert_null(flow__schema_check(NULL, json_null()));
    assert_null(flow__schema_check_keys(NULL, json_null(), NULL));
    flow__schema_free(NULL);
}

static void test_compile_errors(void **unused)
{
    (void)unused;
    static const struct {
        const char *schema;
        const char *message;
    } cases[] = {
        {"[]", "state_schema: the schema must be an object, not an array"},
        {"\"object\"", "state_schema: the schema must be an object, not a string"},
        {"{\"properties\": {\"confidence\": {\"minimum\": \"0\"}}}",
         "state_schema: properties.confidence.minimum must be a number, not a string"},
        {"{\"maximum\": null}", "state_schema: maximum must be a number, not null"},
        {"{\"properties\": {\"x\": {\"type\": \"float\"}}}",
         "state_schema: unknown type 'float' at properties.x (use object, array, string, "
         "number, integer, boolean, null)"},
        {"{\"type\": \"Object\"}",
         "state_schema: unknown type 'Object' at the top level (use object, array, string, "
         "number, integer, boolean, null)"},
        {"{\"properties\": {\"x\": {\"pattern\": \"^a\"}}}",
         "state_schema: unsupported keyword 'pattern' at properties.x (supported: type, "
         "properties, required, enum, minimum, maximum, items)"},
        {"{\"propertes\": {}}",
         "state_schema: unsupported keyword 'propertes' at the top level (supported: type, "
         "properties, required, enum, minimum, maximum, items)"},
        {"{\"items\": {\"items\": {\"minLength\": 1}}}",
         "state_schema: unsupported keyword 'minLength' at items.items (supported: type, "
         "properties, required, enum, minimum, maximum, items)"},
        {"{\"type\": 1}", "state_schema: type must be a string or a list of strings, not an "
                          "integer"},
        {"{\"type\": []}", "state_schema: type must not be an empty list"},
        {"{\"properties\": {\"a\": {\"type\": [\"string\", 2]}}}",
         "state_schema: properties.a.type[1] must be a string, not an integer"},
        {"{\"properties\": {\"a\": {\"type\": [\"string\", \"text\"]}}}",
         "state_schema: unknown type 'text' at properties.a (use object, array, string, "
         "number, integer, boolean, null)"},
        {"{\"properties\": []}",
         "state_schema: properties must be an object (key: schema), not an array"},
        {"{\"properties\": {\"a\": 1}}",
         "state_schema: properties.a must be a schema (an object), not an integer"},
        {"{\"properties\": {\"a\": {\"properties\": {\"b\": \"string\"}}}}",
         "state_schema: properties.a.properties.b must be a schema (an object), not a string"},
        {"{\"required\": \"a\"}", "state_schema: required must be a list of key names, not a "
                                  "string"},
        {"{\"properties\": {\"u\": {\"required\": [\"a\", 1]}}}",
         "state_schema: properties.u.required[1] must be a string, not an integer"},
        {"{\"enum\": \"a\"}", "state_schema: enum must be a list of values, not a string"},
        {"{\"properties\": {\"s\": {\"enum\": []}}}",
         "state_schema: properties.s.enum must not be empty (no value would conform)"},
        {"{\"properties\": {\"t\": {\"items\": [{\"type\": \"string\"}]}}}",
         "state_schema: properties.t.items must be a schema (an object), not an array (tuple "
         "items are not supported)"},
        {"{\"items\": 3}", "state_schema: items must be a schema (an object), not an integer"},
        {"{\"properties\": {\"items\": [1]}}",
         "state_schema: properties.items must be a schema (an object), not an array"},
        /* the first error in the schema's order */
        {"{\"minimum\": \"a\", \"maximum\": \"b\"}",
         "state_schema: minimum must be a number, not a string"},
        {"{\"properties\": {\"a\": {\"type\": \"x\"}, \"b\": {\"type\": \"y\"}}}",
         "state_schema: unknown type 'x' at properties.a (use object, array, string, number, "
         "integer, boolean, null)"},
    };
    for (size_t i = 0; i < FLOW__ARRAY_LEN(cases); i++)
        compile_fails(cases[i].schema, cases[i].message);

    /* nesting has a limit (the checker recurses along the schema) */
    char deep[4096] = "";
    size_t len = 0;
    for (int i = 0; i < 100; i++)
        len += (size_t)snprintf(deep + len, sizeof(deep) - len, "{\"items\": ");
    len += (size_t)snprintf(deep + len, sizeof(deep) - len, "{}");
    for (int i = 0; i < 100; i++)
        len += (size_t)snprintf(deep + len, sizeof(deep) - len, "}");
    json_t *js = parse(deep);
    struct flow__schema *s = NULL;
    flow_error err;
    assert_int_equal(flow__schema_compile(js, &s, &err), FLOW_EINVAL);
    assert_null(s);
    assert_non_null(strstr(err.message, "state_schema: nested too deeply at items.items."));
    assert_non_null(strstr(err.message, "(more than 64 levels)"));
    json_decref(js);

    /* NULL schema; NULL err is allowed */
    s = (struct flow__schema *)&s;
    assert_int_equal(flow__schema_compile(NULL, &s, &err), FLOW_EINVAL);
    assert_null(s);
    assert_string_equal(err.message, "state_schema: no schema given");
    js = parse("{\"type\": 1}");
    assert_int_equal(flow__schema_compile(js, &s, NULL), FLOW_EINVAL);
    json_decref(js);
}

static void test_check_keys(void **unused)
{
    (void)unused;
    struct flow__schema *s = compile_ok(
        "{\"type\": \"object\", \"required\": [\"draft\"], \"properties\": {"
        " \"draft\": {\"type\": \"string\"},"
        " \"confidence\": {\"minimum\": 0, \"maximum\": 1},"
        " \"tags\": {\"items\": {\"type\": \"string\"}}}}");
    /* an old bad value is not re-checked when other keys change */
    json_t *state = parse("{\"draft\": \"x\", \"confidence\": 5, \"tags\": [1]}");
    json_t *changed = parse("{\"draft\": \"x\"}");
    assert_null(flow__schema_check_keys(s, state, changed));
    char *msg = flow__schema_check(s, state);
    assert_string_equal(msg, "state key 'confidence': 5 is above the maximum 1");
    flow__free(msg);
    json_decref(changed);

    /* a changed key is checked, with its value from the state */
    changed = parse("{\"tags\": \"stale\"}");
    msg = flow__schema_check_keys(s, state, changed);
    assert_string_equal(msg, "state key 'tags[0]': expected a string, got an integer");
    flow__free(msg);
    json_decref(changed);

    /* several changed: the first in schema order */
    changed = parse("{\"tags\": 1, \"confidence\": 1}");
    msg = flow__schema_check_keys(s, state, changed);
    assert_string_equal(msg, "state key 'confidence': 5 is above the maximum 1");
    flow__free(msg);
    json_decref(changed);

    /* keys the schema does not know, or no changes at all */
    changed = parse("{\"other\": 1}");
    assert_null(flow__schema_check_keys(s, state, changed));
    json_decref(changed);
    assert_null(flow__schema_check_keys(s, state, NULL));
    assert_null(flow__schema_check_keys(s, state, json_null()));
    json_decref(state);

    /* required of the top level is always checked */
    state = parse("{\"confidence\": 0.5}");
    changed = parse("{\"confidence\": 0.5}");
    msg = flow__schema_check_keys(s, state, changed);
    assert_string_equal(msg, "state: required key 'draft' is missing");
    flow__free(msg);
    msg = flow__schema_check_keys(s, state, NULL);
    assert_string_equal(msg, "state: required key 'draft' is missing");
    flow__free(msg);
    json_decref(changed);
    json_decref(state);

    /* a changed key deleted from the state: properties apply to present keys */
    state = parse("{\"draft\": \"\"}");
    changed = parse("{\"tags\": null}");
    assert_null(flow__schema_check_keys(s, state, changed));
    json_decref(changed);
    json_decref(state);

    /* so is the top level's type */
    state = parse("[1]");
    msg = flow__schema_check_keys(s, state, NULL);
    assert_string_equal(msg, "state: expected an object, got an array");
    flow__free(msg);
    json_decref(state);
    flow__schema_free(s);
}

/* Big values and keys give a short, valid message. */
static void test_bounded_messages(void **unused)
{
    (void)unused;
    char key[400];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    char schema[2048];
    snprintf(schema, sizeof(schema),
             "{\"required\": [\"%s\"], \"properties\": {\"%s\": {\"properties\": {\"%s\": "
             "{\"type\": \"integer\"}}}, \"s\": {\"enum\": [1]}}}",
             key, key, key);
    struct flow__schema *s = compile_ok(schema);

    json_t *state = json_object();
    json_object_set_new(state, key, json_pack("{s:s}", key, "x"));
    char *msg = flow__schema_check(s, state);
    assert_non_null(msg);
    assert_true(strlen(msg) < 300);
    assert_non_null(strstr(msg, "state key 'kkkk"));
    assert_non_null(strstr(msg, "...': expected an integer, got a string"));

    /* a long string of multi-byte characters is cut between characters,
     * wherever the cut falls */
    json_t *v = json_object();
    json_object_set_new(v, key, json_object());
    for (int shift = 0; shift < 3; shift++) {
        char big[3004];
        memset(big, 'a', (size_t)shift);
        for (int i = 0; i < 1000; i++)
            memcpy(big + shift + 3 * i, "\xe2\x82\xac", 3); /* U+20AC */
        big[shift + 3000] = '\0';
        json_object_set_new(v, "s", json_string(big));
        flow__free(msg);
        msg = flow__schema_check(s, v);
        assert_non_null(msg);
        assert_true(strlen(msg) < 300);
        assert_non_null(strstr(msg, "state key 's': \""));
        assert_non_null(strstr(msg, "\xe2\x82\xac... is not 1"));
        json_t *round = json_string(msg); /* NULL unless valid UTF-8 */
        assert_non_null(round);
        json_decref(round);
    }

    /* a deep value shows cut too */
    json_t *deep = json_integer(1);
    for (int i = 0; i < 500; i++) {
        json_t *up = json_array();
        json_array_append_new(up, deep);
        deep = up;
    }
    json_object_set_new(v, "s", deep);
    flow__free(msg);
    msg = flow__schema_check(s, v);
    assert_non_null(msg);
    assert_true(strlen(msg) < 300);
    assert_non_null(strstr(msg, "state key 's': [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["));
    assert_non_null(strstr(msg, "[[[... is not 1"));
    json_decref(v);

    /* the name of a missing key is cut */
    v = json_object();
    flow__free(msg);
    msg = flow__schema_check(s, v);
    assert_non_null(msg);
    assert_true(strlen(msg) < 300);
    assert_non_null(strstr(msg, "state: required key 'kkkk"));
    assert_non_null(strstr(msg, "k...' is missing"));
    json_decref(v);
    flow__free(msg);
    json_decref(state);
    flow__schema_free(s);

    /* a long enum list */
    char list[2048];
    size_t len = (size_t)snprintf(list, sizeof(list), "{\"enum\": [");
    for (int i = 0; i < 100; i++)
        len += (size_t)snprintf(list + len, sizeof(list) - len, "%s\"value%d\"", i ? ", " : "",
                                i);
    snprintf(list + len, sizeof(list) - len, "]}");
    s = compile_ok(list);
    v = json_string("nope");
    msg = flow__schema_check(s, v);
    assert_non_null(msg);
    assert_true(strlen(msg) < 300);
    assert_non_null(strstr(msg, "state: \"nope\" is not one of \"value0\", \"value1\""));
    assert_non_null(strstr(msg, "..."));
    flow__free(msg);
    json_decref(v);
    flow__schema_free(s);
}

static void test_alloc_failure(void **unused)
{
    (void)unused;
    json_t *js = parse("{\"type\": \"object\", \"required\": [\"a\", \"b\"], \"properties\": {"
                       " \"a\": {\"type\": [\"string\", \"null\"], \"enum\": [\"x\", null]},"
                       " \"b\": {\"items\": {\"properties\": {\"c\": {\"minimum\": 1}}}},"
                       " \"d\": {\"required\": [\"e\"]}}}");
    json_t *state = parse("{\"a\": \"x\", \"b\": [{\"c\": 0}]}");
    bool done = false;
    size_t failures = 0;
    for (size_t n = 1; !done && n < 1000; n++) {
        struct flow__schema *s = (struct flow__schema *)&s;
        flow_error err;
        flow__error_clear(&err);
        flow__alloc_fail_at(n);
        flow_err rc = flow__schema_compile(js, &s, &err);
        size_t used = flow__alloc_fail_at(0);
        if (rc == FLOW_OK) {
            assert_true(used < n);
            done = true;
        } else {
            assert_int_equal(rc, FLOW_ENOMEM);
            assert_null(s);
            assert_string_equal(err.message, "out of memory compiling state_schema");
            failures++;
            continue;
        }
        /* The check allocates nothing but its message. */
        flow__alloc_fail_at(0);
        assert_null(flow__schema_check_keys(s, state, NULL));
        assert_int_equal(flow__alloc_fail_at(0), 0);
        char *msg = flow__schema_check(s, state);
        assert_int_equal(flow__alloc_fail_at(1), 1);
        assert_string_equal(msg, "state key 'b[0].c': 0 is below the minimum 1");
        flow__free(msg);
        /* When even that fails, still a message: never "all is well". */
        msg = flow__schema_check(s, state);
        flow__alloc_fail_at(0);
        assert_string_equal(msg, "out of memory");
        flow__free(msg);
        flow__schema_free(s);
    }
    assert_true(done);
    assert_true(failures >= 10); /* every node, name and list was an allocation */
    json_decref(state);
    json_decref(js);
}

/* Many threads check against one compiled schema (run under TSan too). */
struct thread_arg {
    const struct flow__schema *s;
    int bad; /* violations seen that should not have been, or missed */
};

static void *checker(void *p)
{
    struct thread_arg *a = p;
    json_t *good = json_pack("{s:s, s:f, s:[s,s]}", "status", "done", "confidence", 0.5, "tags",
                             "a", "b");
    json_t *badv = json_pack("{s:s, s:f}", "status", "done", "confidence", 1.5);
    for (int i = 0; i < 2000; i++) {
        char *m = flow__schema_check(a->s, good);
        if (m)
            a->bad++;
        flow__free(m);
        m = flow__schema_check(a->s, badv);
        if (!m || strcmp(m, "state key 'confidence': 1.5 is above the maximum 1"))
            a->bad++;
        flow__free(m);
    }
    json_decref(good);
    json_decref(badv);
    return NULL;
}

static void test_threads(void **unused)
{
    (void)unused;
    struct flow__schema *s = compile_ok(
        "{\"properties\": {\"status\": {\"enum\": [\"new\", \"done\"]},"
        " \"confidence\": {\"maximum\": 1}, \"tags\": {\"items\": {\"type\": \"string\"}}}}");
    pthread_t t[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].s = s;
        args[i].bad = 0;
        assert_int_equal(pthread_create(&t[i], NULL, checker, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(args[i].bad, 0);
    }
    flow__schema_free(s);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A state of 100 keys and a schema of 10: microseconds per check. */
static void test_speed(void **unused)
{
    (void)unused;
    json_t *js = json_pack("{s:s, s:o}", "type", "object", "properties", json_object());
    json_t *props = json_object_get(js, "properties");
    json_t *state = json_object();
    for (int i = 0; i < 100; i++) {
        char k[16];
        snprintf(k, sizeof(k), "key%d", i);
        json_object_set_new(state, k, json_pack("{s:i, s:[s,s]}", "n", i, "tags", "a", "b"));
        if (i % 10 == 0)
            json_object_set_new(
                props, k,
                json_pack("{s:s, s:{s:{s:s, s:i}, s:{s:{s:s}}}, s:[s]}", "type", "object",
                          "properties", "n", "type", "integer", "minimum", 0, "tags", "items",
                          "type", "string", "required", "n"));
    }
    struct flow__schema *s = NULL;
    assert_int_equal(flow__schema_compile(js, &s, NULL), FLOW_OK);
    json_t *changed = json_pack("{s:i}", "key50", 1);
    /* The best of several batches, so that a busy machine does not fail it. */
    int rounds = getenv("FLOW_VALGRIND") ? 100 : 2000;
    double per_check = 1.0;
    for (int batch = 0; batch < 5; batch++) {
        double t0 = now();
        for (int i = 0; i < rounds; i++) {
            assert_null(flow__schema_check(s, state));
            assert_null(flow__schema_check_keys(s, state, changed));
        }
        double t = (now() - t0) / (2.0 * rounds);
        if (t < per_check)
            per_check = t;
    }
    fprintf(stderr, "schema check: %.2f us\n", per_check * 1e6);
    if (!getenv("FLOW_VALGRIND") && !TH_TSAN)
        assert_true(per_check < 20e-6); /* ~1 us optimised, slack for -O0 and ASan */
    json_decref(changed);
    json_decref(state);
    json_decref(js);
    flow__schema_free(s);
}

/* Names with control characters stay on the message's one line (a
 * fuzzer's find, issue #9): escaped as JSON would write them. */
static void test_names_with_control_characters(void **state)
{
    (void)state;
    compile_fails("{\"mi\\nimum\": 0}",
                  "state_schema: unsupported keyword 'mi\\nimum' at the top level (supported: "
                  "type, properties, required, enum, minimum, maximum, items)");
    compile_fails("{\"properties\": {\"a\\tb\": {\"type\": \"float\"}}}",
                  "state_schema: unknown type 'float' at properties.a\\tb (use object, array, "
                  "string, number, integer, boolean, null)");
    struct flow__schema *s = compile_ok("{\"required\": [\"k\\u0001\"], \"properties\": "
                                        "{\"a\\nb\": {\"maximum\": 1}}}");
    violates(s, "{\"k\\u0001\": 0, \"a\\nb\": 2}", "state key 'a\\nb': 2 is above the maximum 1");
    violates(s, "{}", "state: required key 'k\\u0001' is missing");
    flow__schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type),
        cmocka_unit_test(test_enum),
        cmocka_unit_test(test_minimum_maximum),
        cmocka_unit_test(test_required),
        cmocka_unit_test(test_items_and_paths),
        cmocka_unit_test(test_boolean_and_ignored),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_check_keys),
        cmocka_unit_test(test_bounded_messages),
        cmocka_unit_test(test_names_with_control_characters),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
