/* w4_durable.c -- W4 for libflow: durable no-op task completions per second,
 * and resuming a long journal (bench/README.md, "W4"). Uses include/flow.h
 * only.
 *
 * usage: w4_durable fan STORE_URL N REPS normal|strict [THREADS]
 *          a fan-out source -> N no-op C tasks -> sink, REPS timed runs, each a
 *          new run in the store; prints "secs=S records=R" per run: S from
 *          flow_run_start to flow_run_wait's return, which is after the last
 *          journal record is durable
 *        w4_durable resume STORE_URL N REPS [normal|strict [THREADS]]
 *          per rep: a run of N no-op tasks that pauses once they are all done
 *          (untimed), then flow_run_resume of it (timed: replay of the whole
 *          journal) and the rest of the run; prints "secs=S total=T"
 *        w4_durable --count fan STORE_URL N REPS normal|strict [THREADS]
 *          under valgrind --tool=callgrind --instr-atstart=no (bench/guard.sh):
 *          one untimed warm-up run, then REPS runs instrumented from
 *          flow_run_start to flow_run_wait's return and nothing else; prints
 *          "tasks=N+2 reps=REPS"
 * The engine has THREADS jobs (2 unless given). Every run is checked:
 * completed, N + 2 completed activations. */
#define _GNU_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "count.h"
#include "flow.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int noop(flow_ctx *ctx)
{
    (void)ctx;
    return 0;
}

static int pause_here(flow_ctx *ctx)
{
    return flow_ctx_pause(ctx, "bench") ? 1 : 0;
}

static void die(const char *what, const flow_error *err)
{
    fprintf(stderr, "w4_durable: %s: %s\n", what, err ? err->message : "");
    exit(1);
}

/* source -> n no-ops -> sink [-> tail, when pausing]. */
static flow *fan_flow(long n, bool pausing)
{
    flow_error err = {0};
    flow *f = flow_new("w4", &err);
    flow_task *src = flow_add_task(f, "source", &err);
    flow_task *sink = flow_add_task(f, "sink", &err);
    if (!src || !sink)
        die("flow", &err);
    flow_task_set_fn(src, noop, NULL);
    flow_task_set_fn(sink, pausing ? pause_here : noop, NULL);
    char name[32];
    for (long i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "t%ld", i);
        flow_task *t = flow_add_task(f, name, &err);
        if (!t)
            die("flow", &err);
        flow_task_set_fn(t, noop, NULL);
        flow_task_after(t, src);
        flow_task_after(sink, t);
    }
    if (pausing) {
        flow_task *tail = flow_add_task(f, "tail", &err);
        flow_task_set_fn(tail, noop, NULL);
        flow_task_after(tail, sink);
    }
    return f;
}

static void check(flow_run *r, flow_run_status want, size_t completed_at_least)
{
    flow_run_status s = flow_run_wait(r);
    if (s != want) {
        fprintf(stderr, "w4_durable: run %s ended %s: %s\n", flow_run_id(r),
                flow_run_status_name(s), flow_run_error(r) ? flow_run_error(r) : "");
        exit(1);
    }
    size_t done = 0;
    for (size_t i = 0; i < flow_run_activation_count(r); i++) {
        flow_activation_info info;
        if (flow_run_activation(r, i, &info) == FLOW_OK && info.status == FLOW_ACT_COMPLETED)
            done++;
    }
    if (done < completed_at_least) {
        fprintf(stderr, "w4_durable: run %s: %zu completed, expected %zu\n", flow_run_id(r), done,
                completed_at_least);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    bool counting = argc > 1 && !strcmp(argv[1], "--count");
    if (counting) {
        argc--;
        argv++;
    }
    if (argc < 5 || argc > 7 || (strcmp(argv[1], "fan") && strcmp(argv[1], "resume")) ||
        (counting && strcmp(argv[1], "fan"))) {
        fprintf(stderr, "usage: w4_durable [--count] fan STORE_URL N REPS normal|strict [THREADS]\n"
                        "       w4_durable resume STORE_URL N REPS [normal|strict [THREADS]]\n");
        return 2;
    }
    if (counting && count_unavailable()) {
        fprintf(stderr, "w4_durable: %s\n", count_unavailable());
        return 1;
    }
    const char *url = argv[2];
    long n = atol(argv[3]);
    int reps = atoi(argv[4]);
    bool strict = argc > 5 && !strcmp(argv[5], "strict");
    int threads = argc > 6 ? atoi(argv[6]) : 2;
    if (threads < 1) {
        fprintf(stderr, "w4_durable: THREADS must be at least 1, not '%s'\n", argv[6]);
        return 2;
    }
    flow_error err = {0};
    flow_store *st = flow_store_open(url, &err);
    if (!st)
        die("store", &err);
    flow_engine_options eo = {.jobs = threads};
    flow_engine *e = flow_engine_new(&eo, &err);
    if (!e)
        die("engine", &err);
    bool resume = !strcmp(argv[1], "resume");
    flow *f = fan_flow(n, resume);
    char id[64];
    /* --count: rep -1 is an untimed warm-up (the store's first run). */
    for (int rep = counting ? -1 : 0; rep < reps; rep++) {
        /* --count wants a new store: ids that vary with the time and the pid would vary the
         * store's b-trees, and with them the instructions SQLite spends per record. */
        if (counting)
            snprintf(id, sizeof(id), "w4-count-%ld-%d", n, rep);
        else
            snprintf(id, sizeof(id), "w4-%s-%ld-%d-%ld-%ld", argv[1], n, rep, (long)time(NULL),
                     (long)getpid());
        flow_run_options o = {.run_id = id,
                              .store = st,
                              .durability = strict ? FLOW_DURABILITY_STRICT
                                                   : FLOW_DURABILITY_NORMAL};
        if (counting && rep >= 0)
            count_instrument(true);
        double t0 = now_s();
        flow_run *r = flow_run_start(e, f, &o, &err);
        if (!r)
            die("start", &err);
        if (counting) {
            flow_run_wait(r);
            if (rep >= 0)
                count_instrument(false);
        }
        if (!resume) {
            check(r, FLOW_RUN_COMPLETED, (size_t)n + 2);
            double secs = now_s() - t0;
            if (!counting)
                printf("secs=%.6f records=%ld\n", secs, 3 * (n + 2) + 2);
            flow_run_free(r);
            continue;
        }
        check(r, FLOW_RUN_PAUSED, (size_t)n + 2);
        flow_run_free(r);
        t0 = now_s();
        r = flow_run_resume(e, f, &o, &err);
        if (!r)
            die("resume", &err);
        double replay = now_s() - t0;
        check(r, FLOW_RUN_COMPLETED, (size_t)n + 3);
        printf("secs=%.6f total=%.6f\n", replay, now_s() - t0);
        flow_run_free(r);
    }
    if (counting)
        printf("tasks=%ld reps=%d\n", n + 2, reps);
    flow_free(f);
    flow_engine_free(e);
    flow_store_close(st);
    return 0;
}
