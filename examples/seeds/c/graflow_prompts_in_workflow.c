/* graflow_prompts_in_workflow.c -- Graflow's "Prompts in Workflow" (Prompt
 * Management): a task renders the prompt labelled `production` with its
 * input and builds the messages of a model call from it.
 *
 *   @task(inject_context=True)
 *   def summarize_task(ctx, text):
 *       manager = YAMLPromptManager("prompts/")
 *       prompt = manager.get_prompt("summarize", label="production")
 *       messages = [{"role": "user", "content": prompt.render(text=text)}]
 *
 * flow_ctx_render_prompt reads prompts/summarize.yaml (the directory given
 * as the first argument, default ./prompts), renders it, and journals the
 * version used with the task's completion. The seed's render passes `text`
 * only, but the production version also names `max_words`: a variable
 * nobody gives is an error in libflow (so this port gives it), and
 * `--missing` shows that error.
 *
 *   cd examples/seeds && ../../build/examples/seeds/graflow_prompts_in_workflow
 *
 * Prints the run (seed_report.h): the result is the messages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <flow.h>

#include "seed_report.h"

static const char *prompt_dir = "prompts";
static bool leave_out_max_words;

static int summarize_task(flow_ctx *ctx)
{
    json_t *in = flow_ctx_input(ctx);
    json_t *vars = json_pack("{s:O}", "text", json_object_get(in, "text"));
    if (!leave_out_max_words)
        json_object_set_new(vars, "max_words", json_integer(100));
    flow_prompt_ref ref = {.dir = prompt_dir, .name = "summarize", .label = "production"};
    flow_error err;
    char *content = flow_ctx_render_prompt(ctx, &ref, vars, &err);
    json_decref(vars);
    if (!content) {
        flow_ctx_fail(ctx, "%s", err.message);
        return 1;
    }
    json_t *messages = json_pack("[{s:s,s:s}]", "role", "user", "content", content);
    free(content);
    /* Use with LLM client... (an `llm:` task takes these messages) */
    return flow_ctx_set_output_take(ctx, messages) == FLOW_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--missing"))
            leave_out_max_words = true;
        else
            prompt_dir = argv[i];
    }
    flow_error err;
    flow *f = flow_new("graflow-prompts-in-workflow", &err);
    flow_engine *engine = flow_engine_new(NULL, &err);
    if (!f || !engine) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    flow_task *t = flow_add_task(f, "summarize_task", NULL);
    flow_task_set_fn(t, summarize_task, NULL);
    json_t *input = json_pack("{s:s}", "text", "content to summarize");
    flow_task_set_input(t, input, NULL);
    json_decref(input);
    flow_run *run = seed_run(engine, f, NULL, NULL);
    flow_free(f);
    int rc = 1;
    if (run) {
        rc = flow_run_get_status(run) == FLOW_RUN_COMPLETED ? 0 : 1;
        seed_print(seed_report(run, NULL));
    }
    flow_run_free(run);
    flow_engine_free(engine);
    return rc;
}
