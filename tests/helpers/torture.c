/* torture.c -- the program tests/e2e/test_torture.sh kills with SIGKILL
 * again and again: a durable flow of a few hundred activations (C tasks and
 * commands, two fan-outs, a router loop, state writes, a chain), started or
 * resumed in a store. Every attempt appends "TASK ACTIVATION ATTEMPT" to the
 * side-effect log $TORTURE_LOG before it does its work, so the script can see
 * what ran again after each kill.
 *
 * usage: torture run|resume STORE_URL RUN_ID
 * prints {"status", "result", "state"} as JSON on stdout at the end. */
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "flow.h"

#define ITEMS 60
#define ROUNDS 15
#define CHAIN 40

static int log_fd = -1;

static void side_effect(flow_ctx *ctx)
{
    char line[160];
    int n = snprintf(line, sizeof(line), "%s %llu %d\n", flow_ctx_task_name(ctx),
                     (unsigned long long)flow_ctx_activation(ctx), flow_ctx_attempt(ctx));
    if (write(log_fd, line, (size_t)n) != n)
        abort();
}

static void pause_ms(int ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

static int t_start(flow_ctx *ctx)
{
    side_effect(ctx);
    json_t *items = json_array();
    for (int i = 1; i <= ITEMS; i++)
        json_array_append_new(items, json_integer(i));
    flow_ctx_set_state_take(ctx, "round", json_integer(0));
    return flow_ctx_set_output_take(ctx, items) ? 1 : 0;
}

static int t_triple(flow_ctx *ctx)
{
    side_effect(ctx);
    pause_ms(2);
    return flow_ctx_set_output_take(ctx, json_integer(json_integer_value(flow_ctx_item(ctx)) * 3))
               ? 1
               : 0;
}

static int t_sum(flow_ctx *ctx)
{
    side_effect(ctx);
    json_int_t sum = 0;
    json_t *in = flow_ctx_input(ctx);
    const char *key;
    json_t *list;
    json_object_foreach(in, key, list)
    {
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v) sum += json_integer_value(v);
    }
    flow_ctx_set_state_take(ctx, "total", json_integer(sum));
    return flow_ctx_set_output_take(ctx, json_integer(sum)) ? 1 : 0;
}

static int t_loop(flow_ctx *ctx)
{
    side_effect(ctx);
    pause_ms(3);
    json_t *r = flow_ctx_get_state(ctx, "round");
    json_int_t next = json_integer_value(r) + 1;
    json_decref(r);
    flow_ctx_set_state_take(ctx, "round", json_integer(next));
    return flow_ctx_set_output_take(ctx, json_string(next < ROUNDS ? "again" : "done")) ? 1 : 0;
}

static int t_link(flow_ctx *ctx)
{
    side_effect(ctx);
    pause_ms(4);
    json_t *in = flow_ctx_input(ctx);
    json_int_t v = json_is_integer(in) ? json_integer_value(in) : 0;
    char key[32];
    snprintf(key, sizeof(key), "%s", flow_ctx_task_name(ctx));
    flow_ctx_set_state_take(ctx, key, json_integer(v + 1));
    return flow_ctx_set_output_take(ctx, json_integer(v + 1)) ? 1 : 0;
}

static flow *build(void)
{
    flow_error err;
    flow *f = flow_new("torture", &err);
    flow_task *start = flow_add_task(f, "start", &err);
    flow_task_set_fn(start, t_start, NULL);

    /* Commands: one process per item, four at a time. */
    flow_task *doubled = flow_add_task(f, "doubled", &err);
    const char *argv[] = {"sh", "-c",
                          "echo \"$FLOW_TASK $FLOW_ACTIVATION $FLOW_ATTEMPT\" >> \"$TORTURE_LOG\"; "
                          "sleep 0.005; echo $(( {{ item }} * 2 )) # torture-marker",
                          NULL};
    if (flow_task_set_command(doubled, argv, &err) != FLOW_OK) {
        fprintf(stderr, "torture: %s\n", err.message);
        exit(2);
    }
    json_t *tmpl = json_string("{{ tasks.start.output }}");
    flow_task_set_foreach(doubled, tmpl, 4, &err);
    flow_task_after(doubled, start);

    flow_task *tripled = flow_add_task(f, "tripled", &err);
    flow_task_set_fn(tripled, t_triple, NULL);
    flow_task_set_foreach(tripled, tmpl, 3, &err);
    flow_task_after(tripled, start);
    json_decref(tmpl);

    flow_task *sum = flow_add_task(f, "sum", &err);
    flow_task_set_fn(sum, t_sum, NULL);
    flow_task_after(sum, doubled);
    flow_task_after(sum, tripled);

    flow_task *loop = flow_add_task(f, "loop", &err);
    flow_task_set_fn(loop, t_loop, NULL);
    flow_task_set_router(loop, true);
    flow_task_after(loop, sum);
    flow_task_on(loop, "again");

    flow_task *prev = NULL;
    for (int i = 0; i < CHAIN; i++) {
        char name[32];
        snprintf(name, sizeof(name), "link%02d", i);
        flow_task *t = flow_add_task(f, name, &err);
        flow_task_set_fn(t, t_link, NULL);
        if (prev)
            flow_task_after(t, prev);
        else
            flow_task_on(t, "done");
        prev = t;
    }
    json_t *result = json_pack("{s:s,s:s}", "total", "{{ tasks.sum.output }}", "last",
                               "{{ tasks.link39.output }}");
    flow_set_result_template(f, result, &err);
    json_decref(result);
    return f;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "run") && strcmp(argv[1], "resume"))) {
        fprintf(stderr, "usage: torture run|resume STORE_URL RUN_ID\n");
        return 2;
    }
    const char *log = getenv("TORTURE_LOG");
    if (!log || (log_fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600)) < 0) {
        fprintf(stderr, "torture: set TORTURE_LOG to a writable file\n");
        return 2;
    }
    flow_error err = {0};
    flow_store *st = flow_store_open(argv[2], &err);
    if (!st) {
        fprintf(stderr, "torture: %s\n", err.message);
        return 1;
    }
    flow_engine_options eo = {.jobs = 2};
    flow_engine *e = flow_engine_new(&eo, &err);
    flow *f = build();
    flow_run_options o = {.run_id = argv[3], .store = st};
    flow_run *r = !strcmp(argv[1], "run") ? flow_run_start(e, f, &o, &err)
                                           : flow_run_resume(e, f, &o, &err);
    if (!r) {
        fprintf(stderr, "torture: %s\n", err.message);
        return 1;
    }
    flow_run_status s = flow_run_wait(r);
    json_t *state = flow_run_state(r);
    json_t *out = json_pack("{s:s,s:O,s:o}", "status", flow_run_status_name(s), "result",
                            flow_run_result(r), "state", state);
    char *text = flow_json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
    puts(text);
    free(text);
    json_decref(out);
    flow_run_free(r);
    flow_free(f);
    flow_engine_free(e);
    flow_store_close(st);
    close(log_fd);
    return s == FLOW_RUN_COMPLETED ? 0 : 1;
}
