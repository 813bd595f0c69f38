/* crewai_flow_factory.c -- CrewAI's "Flow Factory Pattern" (Flow
 * Composition): create_flow(flow_type) picks a flow class by name and the
 * caller runs it with its input. In libflow a flow_registry maps names to
 * factories (or to ready flows); flow_registry_create() makes a fresh flow,
 * and an unknown name is an error that lists the known ones.
 *
 *   build/examples/seeds/crewai_flow_factory FLOW_TYPE [DATA]
 *
 * FLOW_TYPE is analysis, research or writing; DATA (default "libflow") is the
 * run's input "input" (flow.state.input = data). Prints the run
 * (seed_report.h); exits 2 naming the known types when FLOW_TYPE is unknown.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <flow.h>

#include "seed_report.h"

/* The one step of each flow: its name (udata) and what it did with the input. */
static int step(flow_ctx *ctx)
{
    json_t *input = json_object_get(flow_ctx_input(ctx), "input");
    json_t *out = json_pack("{s:s,s:O}", "step", (const char *)flow_ctx_udata(ctx), "input",
                            input ? input : json_null());
    return flow_ctx_set_output_take(ctx, out) == FLOW_OK ? 0 : 1;
}

/* A factory: a new flow named after `udata` ("analysis") whose task is
 * "<name>_step" running step(). */
static flow *make_flow(void *udata, flow_error *err)
{
    const char *kind = udata;
    char name[64], task[64];
    snprintf(name, sizeof(name), "%s-flow", kind);
    snprintf(task, sizeof(task), "%s_step", kind);
    flow *f = flow_new(name, err);
    flow_task *t = f ? flow_add_task(f, task, err) : NULL;
    if (!t || flow_task_set_fn(t, step, (void *)kind) != FLOW_OK) {
        flow_free(f);
        return NULL;
    }
    return f;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: crewai_flow_factory FLOW_TYPE [DATA]\n");
        return 2;
    }
    static const char *const kinds[] = {"analysis", "research", "writing"};
    flow_registry *flows = flow_registry_new();
    if (!flows)
        return 1;
    for (int i = 0; i < 3; i++) {
        if (flow_registry_add_factory(flows, kinds[i], make_flow, (void *)kinds[i]) != FLOW_OK) {
            flow_registry_free(flows);
            return 1;
        }
    }

    flow_error err;
    flow *f = flow_registry_create(flows, argv[1], &err); /* create_flow(config["flow_type"]) */
    flow_registry_free(flows);
    if (!f) {
        fprintf(stderr, "crewai_flow_factory: %s\n", err.message);
        return 2;
    }
    flow_engine *engine = flow_engine_new(NULL, &err);
    if (!engine) {
        fprintf(stderr, "%s\n", err.message);
        flow_free(f);
        return 1;
    }
    json_t *inputs = json_pack("{s:s}", "input", argc > 2 ? argv[2] : "libflow");
    flow_run *run = seed_run(engine, f, inputs, NULL); /* flow.kickoff() */
    json_decref(inputs);
    json_t *extra = json_pack("{s:s}", "flow", flow_name(f));
    flow_free(f);
    int rc = 1;
    if (run) {
        rc = flow_run_get_status(run) == FLOW_RUN_COMPLETED ? 0 : 1;
        seed_print(seed_report(run, extra));
    } else {
        json_decref(extra);
    }
    flow_run_free(run);
    flow_engine_free(engine);
    return rc;
}
