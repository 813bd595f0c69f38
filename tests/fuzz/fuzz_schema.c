/* fuzz_schema.c -- the state schema: the input is JSON texts one after the
 * other; the first is compiled as a schema, and every value (the others,
 * the schema itself and a fixed set of values of every type) is checked
 * against it whole and key by key. */
#define _GNU_SOURCE 1
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "def/schema.h"
#include "util/alloc.h"

#define MAX_VALUES 16

static json_t *fixed;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fixed = json_loads(
        "[null, true, false, 0, -1, 1, 9007199254740993, -9223372036854775808, 0.5, -1e308,"
        " 1e308, \"\", \"pending\", \"a\\u0000b\", [], [1, \"a\", null, [2]], {},"
        " {\"status\": \"done\", \"confidence\": 1.5, \"tags\": [\"a\", 2],"
        "  \"user\": {\"name\": \"n\", \"age\": -3}, \"draft\": null},"
        " {\"x\": {\"y\": {\"z\": [[[]]]}}}]",
        JSON_ALLOW_NUL, NULL);
    if (!fixed)
        abort();
    return 0;
}

static void check(const struct flow__schema *s, const json_t *value)
{
    char *why[3] = {flow__schema_check(s, value), flow__schema_check_keys(s, value, value),
                    flow__schema_check_keys(s, value, NULL)};
    for (int i = 0; i < 3; i++) {
        if (why[i])
            fuzz_check_message(why[i]);
        flow__free(why[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *exact = fuzz_copy(data, size, false);
    json_t *values[MAX_VALUES];
    size_t count = 0;
    size_t at = 0;
    while (at < size && count < MAX_VALUES) {
        json_error_t je;
        json_t *v = json_loadb(exact + at, size - at,
                               JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL, &je);
        if (!v || je.position <= 0)
            break;
        values[count++] = v;
        at += (size_t)je.position;
    }
    free(exact);
    if (count == 0)
        return 0;
    struct flow__schema *s = NULL;
    flow_error err;
    if (flow__schema_compile(values[0], &s, &err) == FLOW_OK) {
        for (size_t i = 0; i < count; i++)
            check(s, values[i]);
        for (size_t i = 0; i < json_array_size(fixed); i++)
            check(s, json_array_get(fixed, i));
    } else {
        fuzz_check_message(err.message);
    }
    flow__schema_free(s);
    for (size_t i = 0; i < count; i++)
        json_decref(values[i]);
    return 0;
}
