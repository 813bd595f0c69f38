/* fuzz_load.c -- workflow loading: the input is a workflow file, YAML or
 * JSON, given to flow_load_string() twice: in a heap block of exactly its
 * length (no NUL after it, so that ASan catches a read past `len`) and
 * with a NUL after it. A loaded flow is described and freed; nothing runs
 * (a fuzzed `run:` could be any program). The harness works in a temp dir
 * holding a few nested flows (`flow: sub.yaml`, a broken one, a cycle). */
#define _GNU_SOURCE 1
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flow.h"

static void put(const char *name, const char *text)
{
    fuzz_write_file(name, text, strlen(text));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (chdir(fuzz_tempdir()) != 0)
        abort();
    put("sub.yaml", "name: sub\nresult: '{{ tasks.b.output }}'\n"
                    "tasks:\n  a: {}\n  b: {after: a, input: {n: '{{ inputs.n }}'}}\n");
    put("bad.yaml", "name: bad\ntasks:\n  a: {after: nope}\n  a: {}\n");
    put("loop.yaml", "name: loop\ntasks:\n  a: {flow: loop2.yaml}\n");
    put("loop2.yaml", "name: loop2\ntasks:\n  b: {flow: loop.yaml}\n");
    put("sub.json", "{\"name\": \"subj\", \"tasks\": {\"x\": {\"noop\": true}}}");
    return 0;
}

static void load_one(const char *text, size_t len, const char *name)
{
    flow_diags *d = flow_diags_new();
    flow_error err;
    flow *f = flow_load_string(text, len, name, d, &err);
    size_t total = 0;
    for (size_t i = 0; i < flow_diags_count(d); i++) {
        flow_severity sev;
        const flow_error *e = flow_diags_get(d, i, &sev);
        fuzz_check_message(e->message);
        total += strlen(e->file);
    }
    if (!f && flow_diags_error_count(d) == 0 && err.code != FLOW_ENOMEM)
        abort(); /* a refused file says why */
    if (f) {
        json_t *desc = flow_describe(f);
        char *s = desc ? json_dumps(desc, JSON_COMPACT) : NULL;
        total += s ? strlen(s) : 0;
        free(s);
        json_decref(desc);
        flow_free(f);
    }
    flow_diags_free(d);
    (void)total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *exact = fuzz_copy(data, size, false);
    load_one(exact, size, "fuzz.yaml");
    free(exact);
    char *terminated = fuzz_copy(data, size, true);
    load_one(terminated, size, "fuzz.json");
    free(terminated);
    return 0;
}
