/* fuzz_template.c -- templates: the input is compiled as one template
 * string and, when it is JSON, as a template value; each compiled template
 * is fingerprinted, its references listed and named, and it is rendered
 * (as a value and as a string) against a fixed scope that holds every root.
 * The input also goes through shell quoting and the duration parser. */
#define _GNU_SOURCE 1
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "def/template.h"
#include "util/alloc.h"
#include "util/error.h"

static json_t *scope_root;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    scope_root = json_loads(
        "{\"inputs\": {\"n\": 3, \"name\": \"x y\", \"list\": [1, \"two\", {\"a b\": true}],"
        "              \"rows\": [[1, 2], [3, 4]], \"empty\": {}, \"nil\": null,"
        "              \"quote\": \"it's \\\"q\\\" $HOME `x`\", \"nul\": \"a\\u0000b\"},"
        " \"input\": {\"draft\": \"d\", \"score\": 0.5, \"tags\": [\"a\", \"b\"]},"
        " \"state\": {\"count\": 0, \"final\": {\"ok\": true}, \"big\": 1e300},"
        " \"tasks\": {\"fetch\": {\"output\": {\"rows\": [1, 2, 3], \"topic\": \"t\"},"
        "                       \"status\": \"completed\", \"error\": null},"
        "            \"my-task\": {\"output\": \"text\", \"status\": \"failed\","
        "                          \"error\": \"boom\"}},"
        " \"item\": {\"path\": \"/tmp/a b\"}, \"index\": 2,"
        " \"run\": {\"id\": \"r-1\", \"name\": \"fuzz\"}, \"env\": {\"HOME\": \"/home/f\"}}",
        JSON_ALLOW_NUL, NULL);
    if (!scope_root)
        abort();
    return 0;
}

static json_t *lookup(void *udata, const struct flow__tmpl_path *path, flow_error *err)
{
    (void)udata;
    if (path->count == 0 || !path->segs[0].key) {
        flow__error(err, FLOW_ETEMPLATE, "empty template path");
        return NULL;
    }
    json_t *root = json_object_get(scope_root, path->segs[0].key);
    if (!root) {
        flow__error(err, FLOW_ETEMPLATE, "no root '%s'", path->segs[0].key);
        return NULL;
    }
    return json_incref(flow__tmpl_walk(root, path, 1, err));
}

static int name_ref(const struct flow__tmpl_path *path, void *udata)
{
    size_t *total = udata;
    for (size_t i = 0; i <= path->count; i++) {
        char *text = flow__tmpl_path_text(path, i);
        *total += text ? strlen(text) : 0;
        flow__free(text);
    }
    return 0;
}

static void exercise(const struct flow__tmpl *t)
{
    size_t total = 0;
    bool written = true;
    (void)flow__tmpl_fingerprint(t, 14695981039346656037ULL, &written);
    total += flow__tmpl_is_static(t) + flow__tmpl_is_whole(t);
    flow__tmpl_foreach_ref(t, name_ref, &total);
    struct flow__tmpl_scope scope = {lookup, NULL};
    flow_error err;
    json_t *v = NULL;
    if (flow__tmpl_render(t, &scope, &v, &err) == FLOW_OK) {
        if (!v)
            abort(); /* success gives a value */
        json_decref(v);
    } else {
        fuzz_check_message(err.message); /* a failure says why */
    }
    char *s = NULL;
    if (flow__tmpl_render_string(t, &scope, &s, &err) == FLOW_OK) {
        total += strlen(s);
        flow__free(s);
    }
    (void)total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_copy(data, size, true); /* the string API takes C strings */
    struct flow__tmpl *t = NULL;
    flow_error err;
    if (flow__tmpl_compile_string(text, &t, &err) == FLOW_OK)
        exercise(t);
    else
        fuzz_check_message(err.message);
    flow__tmpl_free(t);

    char *q = flow__shell_quote(text);
    flow__free(q);
    double seconds = 0;
    (void)flow__parse_duration(text, &seconds);
    free(text);

    char *exact = fuzz_copy(data, size, false);
    json_t *v = json_loadb(exact, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    free(exact);
    if (v) {
        t = NULL;
        if (flow__tmpl_compile(v, &t, &err) == FLOW_OK)
            exercise(t);
        flow__tmpl_free(t);
        json_decref(v);
    }
    return 0;
}
