/* parallel_merge.c -- CrewAI's "Multiple Start Points" (Parallel Execution):
 * three start tasks fetch sources A, B and C in parallel; merge_all_sources
 * runs once, after all three (and_), merges their objects into the state and
 * returns the merged object.
 *
 *   build/examples/parallel_merge        prints the merged object as JSON
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <flow.h>

/* Each "API client" answers after a short, different delay. */
static int fetch_source(flow_ctx *ctx)
{
    const char *which = flow_ctx_udata(ctx);
    struct timespec delay = {0, (long)(which[0] - 'a' + 1) * 20000000L};
    nanosleep(&delay, NULL);
    char key[32];
    snprintf(key, sizeof(key), "from_%s", which);
    json_t *data = json_pack("{s:s,s:i}", key, which, "size", (int)(which[0] - 'a' + 1) * 10);
    return flow_ctx_set_output_take(ctx, data) == FLOW_OK ? 0 : 1;
}

static int merge_all_sources(flow_ctx *ctx)
{
    /* The input of a task after several is an object keyed by task name. */
    json_t *deps = flow_ctx_input(ctx);
    json_t *merged = json_object();
    const char *name;
    json_t *out;
    json_object_foreach(deps, name, out)
    {
        json_object_update(merged, out); /* {**a, **b, **c} */
    }
    /* "size" appears in all three: the last merged wins, as in Python. */
    flow_ctx_set_state(ctx, "merged", merged);
    return flow_ctx_set_output_take(ctx, merged) == FLOW_OK ? 0 : 1;
}

int main(void)
{
    flow_error err;
    flow *f = flow_new("parallel-data-flow", &err);
    if (!f) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    static const char *const sources[] = {"a", "b", "c"};
    flow_task *merge = flow_add_task(f, "merge_all_sources", &err);
    flow_task_set_fn(merge, merge_all_sources, NULL);
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof(name), "fetch_source_%s", sources[i]);
        flow_task *t = flow_add_task(f, name, &err);
        flow_task_set_fn(t, fetch_source, (void *)sources[i]);
        flow_task_after(merge, t); /* and_(fetch_source_a, fetch_source_b, fetch_source_c) */
    }

    json_t *result = NULL;
    flow_run_status status = flow_run_simple(f, NULL, 3, &result, &err);
    if (status != FLOW_RUN_COMPLETED) {
        fprintf(stderr, "run %s: %s\n", flow_run_status_name(status), err.message);
        flow_free(f);
        return 1;
    }
    char *text = json_dumps(result, JSON_SORT_KEYS);
    printf("%s\n", text);
    free(text);
    json_decref(result);
    flow_free(f);
    return 0;
}
