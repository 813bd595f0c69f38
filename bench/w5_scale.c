/*
 * w5_scale.c -- W5 for libflow: how it scales (bench/README.md, "W5"). Uses include/flow.h only
 * (and the C library: /proc/self/status for memory, fork for the killed runner).
 *
 *   w5_scale dag SHAPE THREADS REPS     build + run a graph of no-op C tasks built from C,
 *                                       1 untimed warm-up + REPS timed repetitions
 *   w5_scale mem SHAPE THREADS          one build + run in a fresh process: resident bytes per task
 *   w5_scale gen yaml|json LxW FILE     write a workflow file of L x W tasks (layered, 2 predecessors)
 *   w5_scale load FILE REPS             flow_load_file (parse, check, validate) REPS times
 *   w5_scale resume STORE N pause|kill [ID]
 *                                       a durable fan of N no-op tasks stopped near its end (its sink
 *                                       pauses the run, or a child runner SIGKILLs itself once 99% of
 *                                       the tasks are done and the store has had W5_KILL_WAIT seconds
 *                                       to catch up), then flow_run_resume until completion; with ID,
 *                                       that run of the store instead (W5_STOP_ONLY=1 stops it only)
 *   w5_scale runs K LEN THREADS [ROUNDS] K runs of a LEN-task chain started at once on one
 *                                       engine, waited for and freed, ROUNDS times (1)
 *
 * SHAPE: chain:N (N tasks), fan:N (1 -> N -> 1, N + 2 tasks), layered:LxW (L layers of W tasks, each
 * after 2 tasks of the layer before it, drawn as ../shared/bench/w1_dag/gen_dag.py does with seed 42).
 * Every run is checked (completed, every task body ran once); output: key=value lines on stdout.
 */
#define _GNU_SOURCE 1

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flow.h"

#define HARNESS_NAME "w5_scale"
#include "harness.h"

static const char usage[] =
    "usage: w5_scale dag SHAPE THREADS REPS     SHAPE: chain:N | fan:N | layered:LxW\n"
    "       w5_scale mem SHAPE THREADS\n"
    "       w5_scale gen yaml|json LxW FILE\n"
    "       w5_scale load FILE REPS\n"
    "       w5_scale resume STORE_URL N pause|kill [RUN_ID]\n"
    "       w5_scale runs K LEN THREADS [ROUNDS]\n";

/* CPU time of the process (all threads), for figures that noise on a shared machine blurs. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Whole argument as a number in [min, max]. */
static long arg_long(const char *s, const char *what, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max)
        die("%s must be a number from %ld to %ld, not '%s'", what, min, max, s);
    return v;
}

/* Bytes the C library's heap has handed out and not had back (glibc's mallinfo2). */
static long heap_inuse_kb(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (long)((mi.uordblks + mi.hblkhd) / 1024);
}

/* ------------------------------------------------------------------------ */
/* Graphs                                                                    */

/* Task ids 0..count-1; edge i: dst[i] runs after src[i]; src < dst. */
struct dag {
    char shape[64];
    long count;
    long nedges;
    uint32_t *src;
    uint32_t *dst;
};

struct splitmix {
    uint64_t state;
};

static uint64_t splitmix_next(struct splitmix *r)
{
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* "LxW" into l and w. */
static void parse_lxw(const char *s, long *l, long *w)
{
    char *end;
    errno = 0;
    *l = strtol(s, &end, 10);
    if (end == s || *end != 'x' || errno || *l < 1)
        die("expected LxW, not '%s'", s);
    const char *p = end + 1;
    *w = strtol(p, &end, 10);
    if (end == p || *end || errno || *w < 2 || *l > 100000000 / *w)
        die("expected LxW (W >= 2, L x W <= 100,000,000), not '%s'", s);
}

/* The graph of SHAPE, edges in the order gen_dag.py writes them. */
static void dag_make(struct dag *g, const char *shape)
{
    memset(g, 0, sizeof(*g));
    snprintf(g->shape, sizeof(g->shape), "%s", shape);
    long n;
    if (strncmp(shape, "chain:", 6) == 0) {
        n = arg_long(shape + 6, "chain's N", 1, 100000000);
        g->count = n;
        g->nedges = n - 1;
        g->src = xmalloc((size_t)g->nedges + 1, sizeof(uint32_t));
        g->dst = xmalloc((size_t)g->nedges + 1, sizeof(uint32_t));
        for (long i = 1; i < n; i++) {
            g->src[i - 1] = (uint32_t)(i - 1);
            g->dst[i - 1] = (uint32_t)i;
        }
    } else if (strncmp(shape, "fan:", 4) == 0) {
        n = arg_long(shape + 4, "fan's N", 1, 100000000);
        g->count = n + 2;
        g->nedges = 2 * n;
        g->src = xmalloc((size_t)g->nedges, sizeof(uint32_t));
        g->dst = xmalloc((size_t)g->nedges, sizeof(uint32_t));
        for (long i = 1; i <= n; i++) {
            g->src[i - 1] = 0;
            g->dst[i - 1] = (uint32_t)i;
            g->src[n + i - 1] = (uint32_t)i;
            g->dst[n + i - 1] = (uint32_t)(n + 1);
        }
    } else if (strncmp(shape, "layered:", 8) == 0) {
        long l;
        long w;
        parse_lxw(shape + 8, &l, &w);
        g->count = l * w;
        g->nedges = 2 * (l - 1) * w;
        g->src = xmalloc((size_t)g->nedges + 1, sizeof(uint32_t));
        g->dst = xmalloc((size_t)g->nedges + 1, sizeof(uint32_t));
        struct splitmix rng = {42};
        long e = 0;
        for (long layer = 1; layer < l; layer++) {
            long base = (layer - 1) * w;
            for (long j = 0; j < w; j++) {
                long x = (long)(splitmix_next(&rng) % (uint64_t)w);
                long y = (long)(splitmix_next(&rng) % (uint64_t)w);
                while (y == x)
                    y = (long)(splitmix_next(&rng) % (uint64_t)w);
                g->src[e] = (uint32_t)(base + x);
                g->dst[e++] = (uint32_t)(layer * w + j);
                g->src[e] = (uint32_t)(base + y);
                g->dst[e++] = (uint32_t)(layer * w + j);
            }
        }
    } else {
        die("unknown shape '%s' (chain:N, fan:N, layered:LxW)", shape);
    }
}

static void dag_free(struct dag *g)
{
    free(g->src);
    free(g->dst);
}

/* ------------------------------------------------------------------------ */
/* dag / mem: no-op C tasks built from C                                     */

static int count_fn(flow_ctx *ctx)
{
    atomic_long *ran = flow_ctx_udata(ctx);
    atomic_fetch_add_explicit(ran, 1, memory_order_relaxed);
    return 0;
}

struct dagbench {
    const struct dag *g;
    flow_engine *engine;
    flow_task **tasks; /* handle of every id, refilled by each build */
    atomic_long ran;
};

static flow *dag_build(struct dagbench *b)
{
    const struct dag *g = b->g;
    flow_error err;
    flow *f = flow_new("w5", &err);
    if (!f)
        die("flow_new: %s", err.message);
    for (long v = 0; v < g->count; v++) {
        char name[32];
        task_name(name, v);
        flow_task *t = flow_add_task(f, name, &err);
        if (!t)
            die("flow_add_task '%s': %s", name, err.message);
        if (flow_task_set_fn(t, count_fn, &b->ran) != FLOW_OK)
            die("flow_task_set_fn '%s'", name);
        b->tasks[v] = t;
    }
    for (long i = 0; i < g->nedges; i++) {
        flow_err rc = flow_task_after(b->tasks[g->dst[i]], b->tasks[g->src[i]]);
        if (rc != FLOW_OK)
            die("flow_task_after t%u -> t%u: %s", g->src[i], g->dst[i], flow_strerror(rc));
    }
    return f;
}

static flow_run *dag_execute(struct dagbench *b, flow *f)
{
    flow_run *r = run_to_end(b->engine, f);
    long ran = atomic_load(&b->ran);
    if (ran != b->g->count)
        die("%ld task bodies ran, expected %ld", ran, b->g->count);
    return r;
}

static void dagbench_init(struct dagbench *b, const struct dag *g, int threads)
{
    memset(b, 0, sizeof(*b));
    b->g = g;
    b->tasks = xmalloc((size_t)g->count, sizeof(*b->tasks));
    flow_engine_options opts = {.jobs = threads};
    flow_error err;
    b->engine = flow_engine_new(&opts, &err);
    if (!b->engine)
        die("flow_engine_new: %s", err.message);
}

static int cmd_dag(const char *shape, int threads, int reps)
{
    struct dag g;
    dag_make(&g, shape);
    struct dagbench b;
    dagbench_init(&b, &g, threads);
    fprintf(stderr, "# libflow %s, %s: tasks=%ld edges=%ld threads=%d\n", flow_version(), shape,
            g.count, g.nedges, threads);
    for (int rep = -1; rep < reps; rep++) { /* rep -1: the untimed warm-up */
        atomic_store(&b.ran, 0);
        double t0 = now_s();
        flow *f = dag_build(&b);
        double t1 = now_s();
        flow_run *r = dag_execute(&b, f);
        double t2 = now_s();
        flow_run_free(r);
        flow_free(f);
        double t3 = now_s();
        if (rep >= 0) {
            printf("rep=%d build_s=%.6f exec_s=%.6f total_s=%.6f destroy_s=%.6f ran=%ld\n", rep,
                   t1 - t0, t2 - t1, t2 - t0, t3 - t2, atomic_load(&b.ran));
            fflush(stdout);
        }
    }
    flow_engine_free(b.engine);
    printf("peak_rss_kb=%ld\n", proc_status_kb("VmHWM"));
    free(b.tasks);
    dag_free(&g);
    return 0;
}

/* (VmHWM after the run - VmRSS before building) / tasks; the graph's arrays, the task handle array
 * and the engine's threads are in the baseline, as in w1_dag --mem. */
static int cmd_mem(const char *shape, int threads)
{
    struct dag g;
    dag_make(&g, shape);
    struct dagbench b;
    dagbench_init(&b, &g, threads);
    long before_kb = proc_status_kb("VmRSS");
    long heap_before_kb = heap_inuse_kb();
    double t0 = now_s();
    flow *f = dag_build(&b);
    flow_error err;
    if (flow_validate(f, NULL, &err) != FLOW_OK) /* compiles the graph: the flow's whole size */
        die("flow_validate: %s", err.message);
    long built_kb = proc_status_kb("VmRSS");
    flow_run *r = dag_execute(&b, f);
    double t1 = now_s();
    long peak_kb = proc_status_kb("VmHWM");
    long heap_run_kb = heap_inuse_kb();
    flow_run_free(r);
    flow_free(f);
    long heap_after_kb = heap_inuse_kb();
    if (before_kb < 0 || peak_kb < 0)
        die("cannot read VmRSS/VmHWM from /proc/self/status");
    printf("bytes_per_task=%.1f flow_bytes_per_task=%.1f heap_bytes_per_task=%.1f "
           "rss_before_kb=%ld peak_rss_kb=%ld heap_left_kb=%ld total_s=%.3f tasks=%ld edges=%ld\n",
           (double)(peak_kb - before_kb) * 1024.0 / (double)g.count,
           (double)(built_kb - before_kb) * 1024.0 / (double)g.count,
           (double)(heap_run_kb - heap_before_kb) * 1024.0 / (double)g.count, before_kb, peak_kb,
           heap_after_kb - heap_before_kb, t1 - t0, g.count, g.nedges);
    flow_engine_free(b.engine);
    free(b.tasks);
    dag_free(&g);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* gen / load: workflow files                                                */

/* L x W tasks: layer 0 starts, each task of a later layer is after two of the layer before (as
 * dag_make's layered shape). Every task runs /bin/true; every 10th of a later layer also reads its
 * first predecessor's output in an input template (so the loader's checks of such reads run). */
static int cmd_gen(const char *format, const char *lxw, const char *path)
{
    bool json = strcmp(format, "json") == 0;
    if (!json && strcmp(format, "yaml") != 0)
        die("format must be yaml or json, not '%s'", format);
    long l;
    long w;
    parse_lxw(lxw, &l, &w);
    char shape[80];
    snprintf(shape, sizeof(shape), "layered:%s", lxw);
    struct dag g;
    dag_make(&g, shape);
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        die("path too long");
    FILE *fp = fopen(tmp, "w");
    if (!fp)
        die("cannot write '%s': %s", tmp, strerror(errno));
    if (json)
        fprintf(fp, "{\"name\": \"w5_%s\",\n \"tasks\": {\n", lxw);
    else
        fprintf(fp, "# w5_scale gen: %ld layers x %ld tasks, 2 predecessors each\n"
                    "name: w5_%s\ntasks:\n", l, w, lxw);
    long e = 0; /* edges of task v are 2 (v - w) and 2 (v - w) + 1 */
    for (long v = 0; v < g.count; v++) {
        char name[32];
        task_name(name, v);
        if (v < w) {
            fprintf(fp, json ? "  \"%s\": {\"run\": [\"/bin/true\"]}" : "  %s: {run: [/bin/true]}",
                    name);
        } else {
            char a[32];
            char b[32];
            task_name(a, g.src[e]);
            task_name(b, g.src[e + 1]);
            e += 2;
            if (json)
                fprintf(fp, "  \"%s\": {\"run\": [\"/bin/true\"], \"after\": [\"%s\", \"%s\"]", name,
                        a, b);
            else
                fprintf(fp, "  %s: {run: [/bin/true], after: [%s, %s]", name, a, b);
            if (v % 10 == 0)
                fprintf(fp, json ? ", \"input\": {\"x\": \"{{ tasks.%s.output }}\"}"
                                 : ", input: {x: '{{ tasks.%s.output }}'}",
                        a);
            fputc('}', fp);
        }
        if (json && v + 1 < g.count)
            fputc(',', fp);
        fputc('\n', fp);
    }
    if (json)
        fputs(" }\n}\n", fp);
    if (fclose(fp) != 0 || rename(tmp, path) != 0)
        die("cannot write '%s': %s", path, strerror(errno));
    printf("tasks=%ld edges=%ld file=%s\n", g.count, g.nedges, path);
    dag_free(&g);
    return 0;
}

static int cmd_load(const char *path, int reps)
{
    for (int rep = 0; rep < reps; rep++) {
        flow_diags *d = flow_diags_new();
        flow_error err;
        double c0 = cpu_s();
        double t0 = now_s();
        flow *f = flow_load_file(path, d, &err);
        double t1 = now_s();
        double c1 = cpu_s();
        if (!f)
            die("flow_load_file: %s:%d:%d: %s", err.file, err.line, err.column, err.message);
        if (flow_diags_error_count(d) != 0)
            die("%zu errors", flow_diags_error_count(d));
        size_t n = flow_task_count(f);
        double t2 = now_s();
        flow_free(f);
        double t3 = now_s();
        printf("rep=%d load_s=%.6f cpu_s=%.6f free_s=%.6f tasks=%zu warnings=%zu\n", rep,
               t1 - t0, c1 - c0, t3 - t2, n, flow_diags_count(d) - flow_diags_error_count(d));
        fflush(stdout);
        flow_diags_free(d);
    }
    printf("peak_rss_kb=%ld\n", proc_status_kb("VmHWM"));
    return 0;
}

/* ------------------------------------------------------------------------ */
/* resume: a long journal                                                    */

static atomic_long resume_done;   /* task bodies that completed in this process */
static long resume_kill_at;       /* kill mode: the runner SIGKILLs itself at this count */
static double resume_kill_wait;   /* ... after this many seconds, for the journal to catch up */
static _Atomic double first_work; /* when the first task body of the resumed run started */

static int resume_noop(flow_ctx *ctx)
{
    (void)ctx;
    double zero = 0;
    atomic_compare_exchange_strong(&first_work, &zero, now_s());
    long done = atomic_fetch_add(&resume_done, 1) + 1;
    if (resume_kill_at && done == resume_kill_at) {
        /* Meanwhile the other thread runs the rest of the fan (the sink waits for this task)
         * and the store's committer writes what it has queued: killed near its end. */
        struct timespec ts = {(time_t)resume_kill_wait,
                              (long)((resume_kill_wait - (double)(time_t)resume_kill_wait) * 1e9)};
        nanosleep(&ts, NULL);
        kill(getpid(), SIGKILL);
    }
    return 0;
}

static int resume_pause(flow_ctx *ctx)
{
    double zero = 0;
    atomic_compare_exchange_strong(&first_work, &zero, now_s());
    atomic_fetch_add(&resume_done, 1);
    /* The pause takes effect once: the resumed run finds this activation completed. */
    return flow_ctx_pause(ctx, "w5") ? 1 : 0;
}

/* source -> t0..t(n-1) -> sink -> tail; in pause mode the sink pauses the run. */
static flow *resume_flow(long n, bool pausing)
{
    flow_error err;
    flow *f = flow_new("w5_resume", &err);
    if (!f)
        die("flow_new: %s", err.message);
    flow_task *src = flow_add_task(f, "source", &err);
    flow_task *sink = flow_add_task(f, "sink", &err);
    flow_task *tail = flow_add_task(f, "tail", &err);
    if (!src || !sink || !tail)
        die("flow_add_task: %s", err.message);
    flow_task_set_fn(src, resume_noop, NULL);
    flow_task_set_fn(sink, pausing ? resume_pause : resume_noop, NULL);
    flow_task_set_fn(tail, resume_noop, NULL);
    flow_task_after(tail, sink);
    for (long i = 0; i < n; i++) {
        char name[32];
        task_name(name, i);
        flow_task *t = flow_add_task(f, name, &err);
        if (!t)
            die("flow_add_task: %s", err.message);
        flow_task_set_fn(t, resume_noop, NULL);
        if (flow_task_after(t, src) != FLOW_OK || flow_task_after(sink, t) != FLOW_OK)
            die("flow_task_after");
    }
    return f;
}

/* What each side of a resume needs: a store, an engine of 2 threads, the flow. */
struct runner {
    flow_store *st;
    flow_engine *e;
    flow *f;
};

static void runner_open(struct runner *rn, const char *url, long n, bool pausing)
{
    flow_error err;
    rn->st = flow_store_open(url, &err);
    if (!rn->st)
        die("flow_store_open: %s", err.message);
    flow_engine_options eo = {.jobs = 2};
    rn->e = flow_engine_new(&eo, &err);
    if (!rn->e)
        die("flow_engine_new: %s", err.message);
    rn->f = resume_flow(n, pausing);
}

static void runner_close(struct runner *rn)
{
    flow_free(rn->f);
    flow_engine_free(rn->e);
    flow_store_close(rn->st);
}

static size_t count_completed(flow_run *r)
{
    size_t done = 0;
    size_t count = flow_run_activation_count(r);
    for (size_t i = 0; i < count; i++) {
        flow_activation_info info;
        if (flow_run_activation(r, i, &info) == FLOW_OK && info.status == FLOW_ACT_COMPLETED)
            done++;
    }
    return done;
}

/* The first part of the run, in this process (pause) or in a child that kills itself (kill). */
static void resume_first_part(const char *url, const char *id, long n, bool pausing)
{
    pid_t pid = pausing ? 0 : fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid > 0) {
        int status;
        if (waitpid(pid, &status, 0) < 0)
            die("waitpid: %s", strerror(errno));
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            die("the runner was expected to die by SIGKILL (status 0x%x)", status);
        return;
    }
    /* The runner: the engine and store exist only here (a fork keeps no threads). */
    struct runner rn;
    runner_open(&rn, url, n, pausing);
    resume_kill_at = pausing ? 0 : n - n / 100; /* 99 % of the middle tasks, then SIGKILL */
    /* SQLite takes about 100,000 completions a second: time for all of them, and a second */
    const char *w = getenv("W5_KILL_WAIT");
    resume_kill_wait = w ? strtod(w, NULL) : 1.0 + (double)n * 12e-6;
    flow_run_options o = {.run_id = id, .store = rn.st};
    double t0 = now_s();
    flow_error err;
    flow_run *r = flow_run_start(rn.e, rn.f, &o, &err);
    if (!r)
        die("flow_run_start: %s", err.message);
    flow_run_status s = flow_run_wait(r);
    if (!pausing)
        die("the run ended %s before the runner killed itself", flow_run_status_name(s));
    if (s != FLOW_RUN_PAUSED)
        die("the run ended %s, expected paused: %s", flow_run_status_name(s),
            flow_run_error(r) ? flow_run_error(r) : "");
    printf("first_part_s=%.3f completed=%zu\n", now_s() - t0, count_completed(r));
    flow_run_free(r);
    runner_close(&rn);
}

/* `run_id` NULL: a new run, stopped first; else that run of the store (a copy of a store a
 * first part left, to profile the resume alone). */
static int cmd_resume(const char *url, long n, const char *mode, const char *run_id)
{
    bool pausing = strcmp(mode, "pause") == 0;
    if (!pausing && strcmp(mode, "kill") != 0)
        die("mode must be pause or kill, not '%s'", mode);
    char id[96];
    snprintf(id, sizeof(id), "w5-resume-%s-%ld-%ld-%ld", mode, n, (long)time(NULL),
             (long)getpid());
    if (run_id)
        snprintf(id, sizeof(id), "%s", run_id);
    double t0 = now_s();
    if (!run_id)
        resume_first_part(url, id, n, pausing);
    else
        fprintf(stderr, "# resuming run %s as it is in the store\n", id);
    double t1 = now_s();
    if (getenv("W5_STOP_ONLY")) { /* leave the stopped run in the store, for profiling */
        printf("stopped id=%s journal_s=%.3f\n", id, t1 - t0);
        return 0;
    }

    struct runner rn;
    runner_open(&rn, url, n, pausing);
    atomic_store(&resume_done, 0);
    atomic_store(&first_work, 0);
    resume_kill_at = 0;
    flow_run_options o = {.run_id = id, .store = rn.st};
    long rss_before_kb = proc_status_kb("VmRSS");
    double t2 = now_s();
    flow_error err;
    flow_run *r = flow_run_resume(rn.e, rn.f, &o, &err);
    double t3 = now_s();
    if (!r)
        die("flow_run_resume: %s", err.message);
    flow_run_status s = flow_run_wait(r);
    double t4 = now_s();
    if (s != FLOW_RUN_COMPLETED)
        die("the resumed run ended %s: %s", flow_run_status_name(s),
            flow_run_error(r) ? flow_run_error(r) : "");
    size_t done = count_completed(r);
    if (done != (size_t)n + 3)
        die("%zu activations completed, expected %ld", done, n + 3);
    double fw = atomic_load(&first_work);
    printf("resume_s=%.6f first_work_s=%.6f total_s=%.6f ran_again=%ld journal_s=%.3f "
           "peak_rss_kb=%ld rss_before_kb=%ld id=%s\n",
           t3 - t2, fw > 0 ? fw - t2 : -1.0, t4 - t2, atomic_load(&resume_done), t1 - t0,
           proc_status_kb("VmHWM"), rss_before_kb, id);
    flow_run_free(r);
    runner_close(&rn);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* runs: many small runs at once                                             */

/* Reset VmHWM to the current RSS (Linux: "5" to /proc/self/clear_refs), so that each round's
 * peak is its own; false when the kernel does not allow it. */
static bool reset_peak(void)
{
    FILE *fp = fopen("/proc/self/clear_refs", "w");
    if (!fp)
        return false;
    bool ok = fputs("5", fp) >= 0;
    return fclose(fp) == 0 && ok;
}

/* ROUNDS rounds: K runs of a LEN-task chain started one after the other without waiting, then
 * waited for, then freed. Memory is bounded when every round peaks where the first did and the
 * heap gets back to where it was; the C library may keep the freed pages (rss_freed_kb) until
 * malloc_trim gives them back (rss_trimmed_kb, after the last round). */
static int cmd_runs(long k, long len, int threads, int rounds)
{
    flow_error err;
    flow *f = flow_new("w5_chain", &err);
    if (!f)
        die("flow_new: %s", err.message);
    atomic_long ran = 0;
    flow_task *prev = NULL;
    for (long i = 0; i < len; i++) {
        char name[32];
        task_name(name, i);
        flow_task *t = flow_add_task(f, name, &err);
        if (!t)
            die("flow_add_task: %s", err.message);
        flow_task_set_fn(t, count_fn, &ran);
        if (prev && flow_task_after(t, prev) != FLOW_OK)
            die("flow_task_after");
        prev = t;
    }
    flow_engine_options eo = {.jobs = threads};
    flow_engine *e = flow_engine_new(&eo, &err);
    if (!e)
        die("flow_engine_new: %s", err.message);
    flow_run **runs = xmalloc((size_t)k, sizeof(*runs));
    /* A warm-up run, so that the flow is compiled and the engine's threads exist in the baseline. */
    flow_run *w = flow_run_start(e, f, NULL, &err);
    if (!w || flow_run_wait(w) != FLOW_RUN_COMPLETED)
        die("warm-up run failed");
    flow_run_free(w);
    long rss0 = proc_status_kb("VmRSS");
    long heap0 = heap_inuse_kb();
    printf("rss_before_kb=%ld heap_before_kb=%ld\n", rss0, heap0);
    for (int round = 0; round < rounds; round++) {
        atomic_store(&ran, 0);
        bool own_peak = reset_peak();
        long rss_start = proc_status_kb("VmRSS");
        double t0 = now_s();
        for (long i = 0; i < k; i++) {
            runs[i] = flow_run_start(e, f, NULL, &err);
            if (!runs[i])
                die("flow_run_start #%ld: %s", i, err.message);
        }
        double t1 = now_s();
        for (long i = 0; i < k; i++) {
            flow_run_status s = flow_run_wait(runs[i]);
            if (s != FLOW_RUN_COMPLETED)
                die("run #%ld ended %s", i, flow_run_status_name(s));
        }
        double t2 = now_s();
        long peak = proc_status_kb("VmHWM");
        long heap_done = heap_inuse_kb();
        if (atomic_load(&ran) != k * len)
            die("%ld task bodies ran, expected %ld", atomic_load(&ran), k * len);
        for (long i = 0; i < k; i++)
            flow_run_free(runs[i]);
        double t3 = now_s();
        long heap_freed = heap_inuse_kb();
        printf("round=%d total_s=%.6f start_s=%.6f free_s=%.6f peak_rss_kb=%ld%s "
               "peak_bytes_per_run=%.0f heap_bytes_per_run=%.0f rss_freed_kb=%ld heap_left_kb=%ld\n",
               round, t2 - t0, t1 - t0, t3 - t2, peak, own_peak ? "" : "(process)",
               (double)(peak - rss_start) * 1024.0 / (double)k,
               (double)(heap_done - heap0) * 1024.0 / (double)k, proc_status_kb("VmRSS"),
               heap_freed - heap0);
        fflush(stdout);
    }
    free(runs);
    flow_engine_free(e);
    flow_free(f);
    malloc_trim(0);
    printf("rss_trimmed_kb=%ld\n", proc_status_kb("VmRSS"));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "dag") == 0)
        return cmd_dag(argv[2], (int)arg_long(argv[3], "THREADS", 1, 1024),
                       (int)arg_long(argv[4], "REPS", 0, 1000000));
    if (argc == 4 && strcmp(argv[1], "mem") == 0)
        return cmd_mem(argv[2], (int)arg_long(argv[3], "THREADS", 1, 1024));
    if (argc == 5 && strcmp(argv[1], "gen") == 0)
        return cmd_gen(argv[2], argv[3], argv[4]);
    if (argc == 4 && strcmp(argv[1], "load") == 0)
        return cmd_load(argv[2], (int)arg_long(argv[3], "REPS", 1, 1000000));
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "resume") == 0)
        return cmd_resume(argv[2], arg_long(argv[3], "N", 1, 100000000), argv[4],
                          argc == 6 ? argv[5] : NULL);
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "runs") == 0)
        return cmd_runs(arg_long(argv[2], "K", 1, 10000000), arg_long(argv[3], "LEN", 1, 1000000),
                        (int)arg_long(argv[4], "THREADS", 1, 1024),
                        argc == 6 ? (int)arg_long(argv[5], "ROUNDS", 1, 1000) : 1);
    fputs(usage, stderr);
    return 2;
}
