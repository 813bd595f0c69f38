/* seed_report.h -- shared by the seed ports in this directory: run a flow on
 * an engine and describe the run as one JSON object, so that a test (or a
 * reader) sees the result and how many times each task ran.
 *
 *   {"status": "completed", "error": null, "result": ...,
 *    "activations": {"task": ["completed", "skipped", ...], ...}}
 *
 * "activations" lists each task's activations in creation order by status.
 */
#ifndef SEED_REPORT_H
#define SEED_REPORT_H

#include <stdio.h>
#include <stdlib.h>

#include <flow.h>

/* Start `f` with `inputs` (may be NULL) on `engine` from `start_task` (NULL:
 * the start tasks) and wait for it. NULL, with the reason on stderr, when it
 * cannot start. The caller frees the run. */
static inline flow_run *seed_run(flow_engine *engine, flow *f, json_t *inputs,
                                 const char *start_task)
{
    flow_error err;
    flow_run_options opts = {.inputs = inputs, .start_task = start_task};
    flow_run *run = flow_run_start(engine, f, &opts, &err);
    if (!run) {
        fprintf(stderr, "the run did not start: %s\n", err.message);
        return NULL;
    }
    flow_run_wait(run);
    return run;
}

/* {"task": [status, ...], ...} for every activation of the run (new reference). */
static inline json_t *seed_activations(flow_run *run)
{
    json_t *by_task = json_object();
    for (size_t i = 0; by_task && i < flow_run_activation_count(run); i++) {
        flow_activation_info info;
        if (flow_run_activation(run, i, &info) != FLOW_OK)
            continue;
        json_t *list = json_object_get(by_task, info.task);
        if (!list) {
            list = json_array();
            json_object_set_new(by_task, info.task, list);
        }
        json_array_append_new(list, json_string(flow_act_status_name(info.status)));
    }
    return by_task;
}

/* The report of a finished run (new reference); `extra` (taken, may be NULL)
 * adds keys of the example's own. */
static inline json_t *seed_report(flow_run *run, json_t *extra)
{
    json_t *rep = json_pack("{s:s,s:s?,s:O,s:o}", "status",
                            flow_run_status_name(flow_run_get_status(run)), "error",
                            flow_run_error(run), "result", flow_run_result(run), "activations",
                            seed_activations(run));
    if (rep && extra)
        json_object_update(rep, extra);
    json_decref(extra);
    return rep;
}

/* Print `v` (taken) on stdout as indented JSON with sorted keys. */
static inline void seed_print(json_t *v)
{
    char *text = v ? flow_json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    printf("%s\n", text ? text : "null");
    free(text);
    json_decref(v);
}

#endif /* SEED_REPORT_H */
