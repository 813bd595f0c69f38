/* feedback_review.c -- a C task that asks a person in the middle of its work
 * (docs/concepts.md). The run pauses while nobody answers; the answer goes into
 * the store (here from the same program; `flow feedback` does it from any
 * terminal); the run is resumed and the task, run again as the same attempt,
 * gets the answer.
 *
 *   build/examples/feedback_review        exits 0 after printing the result
 *
 * Builds with: cc feedback_review.c -lflow -ljansson (see docs/c-api.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flow.h"

static int asked;

static int review(flow_ctx *ctx)
{
    asked++;
    flow_feedback req = {
        .type = FLOW_FEEDBACK_APPROVAL,
        .message = "Ship release 2.1?",
        .channel_key = "approval",
        .id = "ship",
    };
    json_t *answer = NULL;
    flow_err rc = flow_ctx_request_feedback(ctx, &req, &answer);
    if (rc == FLOW_EWAITING)
        return 0; /* asked: this task runs again once the answer is in */
    if (rc != FLOW_OK)
        return 1;
    bool approved = json_is_true(json_object_get(answer, "approved"));
    json_t *out = json_pack("{s:s,s:O}", "decision", approved ? "ship" : "hold", "by",
                            json_object_get(answer, "by"));
    json_decref(answer);
    return flow_ctx_set_output_take(ctx, out) ? 1 : 0;
}

int main(void)
{
    flow_error err = {0};
    char url[256];
    snprintf(url, sizeof(url), "sqlite:%s/feedback-example-%d.db",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    flow_store *store = flow_store_open(url, &err);
    flow_engine *engine = store ? flow_engine_new(NULL, &err) : NULL;
    flow *f = flow_new("release", &err);
    flow_task *t = f ? flow_add_task(f, "review", &err) : NULL;
    if (!engine || !t || flow_task_set_fn(t, review, NULL) != FLOW_OK) {
        fprintf(stderr, "feedback_review: %s\n", err.message);
        return 1;
    }
    flow_run_options opts = {.run_id = "release-2.1", .store = store};
    flow_run *run = flow_run_start(engine, f, &opts, &err);
    if (!run || flow_run_wait(run) != FLOW_RUN_PAUSED) {
        fprintf(stderr, "feedback_review: the run did not wait: %s\n", err.message);
        return 1;
    }
    printf("paused: %s\n", flow_run_error(run));
    flow_run_free(run);

    json_t *open = flow_store_feedback(store, "release-2.1", &err);
    json_t *q = json_array_get(open, 0);
    printf("request %s: %s\n", json_string_value(json_object_get(q, "request")),
           json_string_value(json_object_get(q, "message")));
    json_decref(open);

    json_t *yes = json_true();
    if (flow_store_answer(store, "release-2.1", "ship", yes, "release-manager", &err) != FLOW_OK) {
        fprintf(stderr, "feedback_review: %s\n", err.message);
        return 1;
    }
    json_decref(yes);

    run = flow_run_resume(engine, f, &opts, &err);
    if (!run || flow_run_wait(run) != FLOW_RUN_COMPLETED) {
        fprintf(stderr, "feedback_review: resume: %s\n", run ? flow_run_error(run) : err.message);
        return 1;
    }
    char *result = flow_json_dumps(flow_run_result(run), JSON_COMPACT);
    printf("result %s (the task ran %d times)\n", result, asked);
    free(result);
    flow_run_free(run);
    flow_free(f);
    flow_engine_free(engine);
    flow_store_close(store);
    remove(url + strlen("sqlite:"));
    return asked == 2 ? 0 : 1;
}
