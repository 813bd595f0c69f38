/* durable_resume.c -- a durable run from C: a run journaled in a sqlite store
 * pauses itself (FlowForge's pause(reason, checkpoint)), is resumed by a
 * second flow_run_resume() call (FlowForge's resume(job_state)), and a third
 * run travels back to the pause's checkpoint (Graflow's
 * resume_from_checkpoint). Each task body counts how often it ran, to show
 * that completed work is never run again.
 *
 *   build/examples/durable_resume [STORE_URL]
 *
 * Without an argument the store is a fresh sqlite file in a temporary
 * directory, deleted at the end; with one (e.g. sqlite:demo.db) it is kept,
 * and `flow status --store sqlite:demo.db` shows the runs.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <flow.h>

static int runs_of_ingest, runs_of_review, runs_of_publish;

static int ingest(flow_ctx *ctx)
{
    runs_of_ingest++;
    flow_ctx_set_state_take(ctx, "rows", json_integer(3));
    return flow_ctx_set_output_take(ctx, json_pack("{s:i}", "rows", 3));
}

/* Asks for a pause once it completes: the run stops after it, with a
 * checkpoint, and resumes with `publish`. */
static int review(flow_ctx *ctx)
{
    runs_of_review++;
    flow_ctx_set_output_take(ctx, json_string("looks good"));
    return flow_ctx_pause(ctx, "waiting for a sign-off") == FLOW_OK ? 0 : 1;
}

static int publish(flow_ctx *ctx)
{
    runs_of_publish++;
    json_t *rows = flow_ctx_get_state(ctx, "rows"); /* new reference */
    json_t *out = json_pack("{s:o,s:O,s:s}", "published", rows ? rows : json_null(), "review",
                            flow_ctx_dep(ctx, "review"), "run", flow_ctx_run_id(ctx));
    return flow_ctx_set_output_take(ctx, out) == FLOW_OK ? 0 : 1;
}

static flow *build_flow(flow_error *err)
{
    flow *f = flow_new("durable-demo", err);
    flow_task *a = f ? flow_add_task(f, "ingest", err) : NULL;
    flow_task *b = a ? flow_add_task(f, "review", err) : NULL;
    flow_task *c = b ? flow_add_task(f, "publish", err) : NULL;
    if (!c) {
        flow_free(f);
        return NULL;
    }
    flow_task_set_fn(a, ingest, NULL);
    flow_task_set_fn(b, review, NULL);
    flow_task_set_fn(c, publish, NULL);
    flow_task_after(b, a);
    flow_task_after(c, b);
    return f;
}

static void print_json(const char *label, json_t *v)
{
    char *text = flow_json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    printf("%s %s\n", label, text ? text : "?");
    free(text);
}

/* Wait for `r`, print how it ended, free it; returns its status. */
static flow_run_status finish(flow_run *r)
{
    flow_run_status s = flow_run_wait(r);
    printf("run %s: %s", flow_run_id(r), flow_run_status_name(s));
    if (s == FLOW_RUN_COMPLETED) {
        print_json(", result", flow_run_result(r));
    } else {
        printf(" (%s)\n", flow_run_error(r) ? flow_run_error(r) : "no reason");
    }
    flow_run_free(r);
    return s;
}

int main(int argc, char **argv)
{
    char dir[] = "/tmp/durable-resume-XXXXXX";
    char url[sizeof(dir) + 32];
    bool temporary = argc < 2;
    flow_engine *engine = NULL;
    flow_store *store;
    flow *f = NULL;
    flow_run *r;
    json_t *list, *item;
    flow_error err;
    size_t i;
    int rc = 1;

    if (temporary) {
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            return 1;
        }
        snprintf(url, sizeof(url), "sqlite:%s/flow.db", dir);
    }
    store = flow_store_open(temporary ? url : argv[1], &err);
    if (!store) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    f = build_flow(&err);
    engine = f ? flow_engine_new(NULL, &err) : NULL;
    if (!engine) {
        fprintf(stderr, "%s\n", err.message);
        goto out;
    }

    /* 1. Start a run on the store: review pauses it. */
    flow_run_options opts = {.store = store, .run_id = "demo-1"};
    r = flow_run_start(engine, f, &opts, &err);
    if (!r || finish(r) != FLOW_RUN_PAUSED) {
        fprintf(stderr, "start: %s\n", r ? "the run did not pause" : err.message);
        goto out;
    }
    list = flow_store_checkpoints(store, "demo-1", &err);
    print_json("checkpoints", list);
    json_decref(list);

    /* 2. Resume it (from here or from another process, with the same flow):
     * ingest and review are not run again; publish runs. */
    r = flow_run_resume(engine, f, &opts, &err);
    if (!r || finish(r) != FLOW_RUN_COMPLETED) {
        fprintf(stderr, "resume: %s\n", r ? "the run did not complete" : err.message);
        goto out;
    }

    /* 3. Time travel: a new run from checkpoint 1 (taken when review
     * paused); demo-1 stays as it is. */
    flow_run_options back = {.store = store,
                             .run_id = "demo-1",
                             .from_checkpoint = "1",
                             .new_run_id = "demo-1-again"};
    r = flow_run_resume(engine, f, &back, &err);
    if (!r || finish(r) != FLOW_RUN_COMPLETED) {
        fprintf(stderr, "from checkpoint: %s\n", r ? "the run did not complete" : err.message);
        goto out;
    }

    list = flow_store_runs(store, &err);
    json_array_foreach(list, i, item)
    {
        printf("stored: %s %s\n", json_string_value(json_object_get(item, "id")),
               json_string_value(json_object_get(item, "status")));
    }
    json_decref(list);
    printf("ingest ran %d time(s), review %d, publish %d\n", runs_of_ingest, runs_of_review,
           runs_of_publish);
    rc = runs_of_ingest == 1 && runs_of_review == 1 && runs_of_publish == 2 ? 0 : 1;

out:
    flow_engine_free(engine);
    flow_free(f);
    flow_store_close(store);
    if (temporary) {
        char path[sizeof(dir) + 32];
        static const char *const files[] = {"flow.db", "flow.db-wal", "flow.db-shm"};
        for (i = 0; i < 3; i++) {
            snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
            unlink(path);
        }
        rmdir(dir);
    }
    return rc;
}
