/* durable_resume.c -- a durable run from C, the example of docs/c-api.md
 * ("Stores and durable runs"): a run journaled in a sqlite store pauses
 * itself after a task (FlowForge's pause(reason, checkpoint)), is continued
 * by flow_run_resume (FlowForge's resume(job_state)), and a third run goes
 * back to the pause's checkpoint (Graflow's resume_from_checkpoint). Each
 * task body counts how often it ran: completed work is never run again.
 *
 *   build/examples/durable_resume [STORE_URL]
 *
 * Without an argument the store is a new sqlite file in a temporary
 * directory, deleted at the end. With one (sqlite:demo.db, disk:demo) it is
 * kept: `build/flow status --store sqlite:demo.db` shows the runs. Exits 0
 * when every task ran as often as it should.
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
    return flow_ctx_set_output_take(ctx, json_pack("{s:i}", "rows", 3)) == FLOW_OK ? 0 : 1;
}

/* Pauses the run once it completes: a checkpoint is taken, nothing new
 * starts, and flow_run_wait returns FLOW_RUN_PAUSED. */
static int review(flow_ctx *ctx)
{
    runs_of_review++;
    flow_ctx_set_output_take(ctx, json_string("looks good"));
    return flow_ctx_pause(ctx, "waiting for a sign-off") == FLOW_OK ? 0 : 1;
}

static int publish(flow_ctx *ctx)
{
    runs_of_publish++;
    json_t *rows = flow_ctx_get_state(ctx, "rows"); /* new reference, or NULL */
    json_t *out = json_pack("{s:o,s:O,s:s}", "published", rows ? rows : json_null(), "review",
                            flow_ctx_dep(ctx, "review"), "run", flow_ctx_run_id(ctx));
    return flow_ctx_set_output_take(ctx, out) == FLOW_OK ? 0 : 1;
}

/* The same flow must be given to flow_run_resume as to flow_run_start (its
 * definition is hashed into the run): build it in one place. */
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

/* Wait for `r`, print how it ended, free it; returns its status. */
static flow_run_status finish(flow_run *r)
{
    flow_run_status s = flow_run_wait(r);
    printf("run %s: %s", flow_run_id(r), flow_run_status_name(s));
    if (s == FLOW_RUN_COMPLETED) {
        char *text = flow_json_dumps(flow_run_result(r), JSON_COMPACT | JSON_SORT_KEYS);
        printf(", result %s\n", text ? text : "?");
        free(text);
    } else {
        printf(" (%s)\n", flow_run_error(r) ? flow_run_error(r) : "no reason");
    }
    flow_run_free(r);
    return s;
}

/* What the store says about a run, from its journal alone. */
static void show_stored(flow_store *store, const char *run_id)
{
    flow_error err;
    json_t *run = flow_store_run(store, run_id, &err);
    json_t *cps = flow_store_checkpoints(store, run_id, &err);
    json_t *v;
    size_t i;

    printf("  in the store:");
    json_array_foreach(json_object_get(run, "tasks"), i, v)
    {
        printf("%s %s %s", i ? "," : "", json_string_value(json_object_get(v, "task")),
               json_string_value(json_object_get(v, "status")));
    }
    printf("\n");
    json_array_foreach(cps, i, v)
    {
        const char *task = json_string_value(json_object_get(v, "task"));
        printf("  checkpoint %s: %s%s%s\n", json_string_value(json_object_get(v, "id")),
               json_string_value(json_object_get(v, "reason")), task ? ", after " : "",
               task ? task : "");
    }
    json_decref(cps);
    json_decref(run);
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
    char id[128];
    flow_error err;
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
        goto out;
    }
    f = build_flow(&err);
    engine = f ? flow_engine_new(NULL, &err) : NULL;
    if (!engine) {
        fprintf(stderr, "%s\n", err.message);
        goto out;
    }

    /* 1. Start a run journaled in the store (with a new id): review pauses
     * it. The id is all it takes to find the run again. */
    flow_run_options opts = {.store = store};
    r = flow_run_start(engine, f, &opts, &err);
    if (!r) {
        fprintf(stderr, "start: %s\n", err.message);
        goto out;
    }
    snprintf(id, sizeof(id), "%s", flow_run_id(r));
    if (finish(r) != FLOW_RUN_PAUSED) {
        fprintf(stderr, "start: the run did not pause\n");
        goto out;
    }
    show_stored(store, id);

    /* 2. Continue it -- here, or in another process that opens the same
     * store: the journal is replayed, ingest and review are not run again,
     * publish runs. */
    opts.run_id = id;
    r = flow_run_resume(engine, f, &opts, &err);
    if (!r || finish(r) != FLOW_RUN_COMPLETED) {
        fprintf(stderr, "resume: %s\n", r ? "the run did not complete" : err.message);
        goto out;
    }

    /* 3. Time travel: a new run (id ID.from-1, unless .new_run_id says)
     * from checkpoint 1, taken when review paused; the first run stays as
     * it is. */
    flow_run_options back = {.store = store, .run_id = id, .from_checkpoint = "1"};
    r = flow_run_resume(engine, f, &back, &err);
    if (!r || finish(r) != FLOW_RUN_COMPLETED) {
        fprintf(stderr, "from checkpoint: %s\n", r ? "the run did not complete" : err.message);
        goto out;
    }

    printf("ingest ran %d time(s), review %d, publish %d\n", runs_of_ingest, runs_of_review,
           runs_of_publish);
    rc = runs_of_ingest == 1 && runs_of_review == 1 && runs_of_publish == 2 ? 0 : 1;

out:
    flow_engine_free(engine);
    flow_free(f);
    flow_store_close(store); /* after its runs are freed */
    if (temporary) {
        static const char *const files[] = {"flow.db", "flow.db-wal", "flow.db-shm"};
        char path[sizeof(dir) + 32];
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
            snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
            unlink(path);
        }
        rmdir(dir);
    }
    return rc;
}
