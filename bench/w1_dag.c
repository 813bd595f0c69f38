/*
 * w1_dag.c -- W1 benchmark: libflow's in-process scheduling overhead on a DAG of no-op C tasks.
 *
 * Reads one of the peers' edge-list files (../shared/bench/README.md, W1), or makes the same graph
 * in memory, then in every repetition builds a flow with one task per id and one flow_task_after()
 * per edge, runs it on an engine with THREADS jobs and times build + execute. Uses only
 * include/flow.h (and, for --count, valgrind's callgrind.h through count.h).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "count.h"
#include "flow.h"

#define HARNESS_NAME "w1_dag"
#include "harness.h"

static const char usage[] =
    "usage: w1_dag GRAPH THREADS REPS          one line per timed repetition, after 1 warm-up\n"
    "       w1_dag --mem GRAPH THREADS         one run in a fresh process: resident bytes per task\n"
    "       w1_dag --count GRAPH THREADS REPS  under valgrind --tool=callgrind --instr-atstart=no:\n"
    "           only the build + execute of the REPS repetitions after 1 warm-up is instrumented;\n"
    "           prints 'tasks=N edges=E reps=REPS' (bench/guard.sh)\n"
    "GRAPH: an edge file of gen_dag.py, or the same graph made in memory: chain:N, fan:N\n"
    "(N + 2 tasks) or layered:LxW:SEED\n"
    "CHECK=1 in the environment: every task records when it started and ended, and each\n"
    "repetition then checks that every task ran after all of its predecessors (untimed)\n";

/* An edge list: task ids 0..count-1; edge i means dst[i] starts after src[i] has finished. */
struct dag {
    long count;  /* tasks */
    long nedges; /* edges */
    long *src;
    long *dst;
};

struct bench;

/* CHECK=1: the udata of task `id`. */
struct check_slot {
    struct bench *b;
    long id;
};

struct bench {
    const struct dag *g;
    flow_engine *engine;
    flow_task **tasks;        /* task handle of every id, refilled by each build */
    atomic_long ran;          /* task bodies that ran in this repetition */
    bool check;               /* CHECK=1 */
    struct check_slot *slots; /* CHECK=1: per-task udata */
    atomic_long ticket;       /* CHECK=1: one counter orders every start and end */
    long *started;            /* CHECK=1: ticket taken when task v started, or -1 */
    long *ended;              /* CHECK=1: ticket taken when task v ended, or -1 */
};

/* A number from *p (leading blanks skipped); advances *p past it. */
static bool parse_long(char **p, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(*p, &end, 10);
    if (end == *p || errno)
        return false;
    *p = end;
    *out = v;
    return true;
}

static bool only_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    return *p == '\0';
}

/* Whole command-line argument as a number in [min, max]. */
static long arg_long(const char *s, const char *what, long min, long max)
{
    char *p = (char *)s;
    long v;
    if (!parse_long(&p, &v) || !only_blanks(p) || v < min || v > max)
        die("%s must be a number from %ld to %ld, not '%s'", what, min, max, s);
    return v;
}

static void dag_alloc(struct dag *g, long count, long nedges)
{
    g->count = count;
    g->nedges = nedges;
    g->src = xmalloc((size_t)nedges + 1, sizeof(long));
    g->dst = xmalloc((size_t)nedges + 1, sizeof(long));
}

/* gen_dag.py's generator for the layered graph. */
static uint64_t splitmix64(uint64_t *state)
{
    *state += 0x9E3779B97F4A7C15u;
    uint64_t z = *state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* The number after `prefix` at *p, in [min, max], and what follows it; exits on anything else. */
static long spec_long(const char *spec, char **p, const char *prefix, long min, long max)
{
    size_t len = strlen(prefix);
    long v;
    if (strncmp(*p, prefix, len) != 0)
        die("bad graph '%s': expected '%s' at '%s'", spec, prefix, *p);
    *p += len;
    if (!parse_long(p, &v) || v < min || v > max)
        die("bad graph '%s': expected a number from %ld to %ld after '%s'", spec, min, max, prefix);
    return v;
}

/* The graph `spec` names ("chain:N", "fan:N", "layered:LxW:SEED"), with the ids and edges, in the
 * order, of the file gen_dag.py writes for it; false when `spec` names no shape (it is a file). */
static bool dag_gen(const char *spec, struct dag *g)
{
    const long max = 100000000;
    char *p = (char *)spec;
    if (strncmp(spec, "chain:", 6) == 0) {
        long n = spec_long(spec, &p, "chain:", 1, max);
        dag_alloc(g, n, n - 1);
        for (long i = 1; i < n; i++) {
            g->src[i - 1] = i - 1;
            g->dst[i - 1] = i;
        }
    } else if (strncmp(spec, "fan:", 4) == 0) {
        long n = spec_long(spec, &p, "fan:", 1, max);
        dag_alloc(g, n + 2, 2 * n);
        for (long i = 1; i <= n; i++) {
            g->src[i - 1] = 0;
            g->dst[i - 1] = i;
            g->src[n + i - 1] = i;
            g->dst[n + i - 1] = n + 1;
        }
    } else if (strncmp(spec, "layered:", 8) == 0) {
        long layers = spec_long(spec, &p, "layered:", 1, max);
        long width = spec_long(spec, &p, "x", 2, max / layers);
        uint64_t state = (uint64_t)spec_long(spec, &p, ":", 0, LONG_MAX);
        uint64_t w = (uint64_t)width;
        dag_alloc(g, layers * width, 2 * (layers - 1) * width);
        long e = 0;
        for (long layer = 1; layer < layers; layer++) {
            long base = (layer - 1) * width;
            for (long j = 0; j < width; j++) {
                long a = (long)(splitmix64(&state) % w);
                long b = (long)(splitmix64(&state) % w);
                while (b == a)
                    b = (long)(splitmix64(&state) % w);
                g->src[e] = base + a;
                g->dst[e++] = layer * width + j;
                g->src[e] = base + b;
                g->dst[e++] = layer * width + j;
            }
        }
    } else {
        return false;
    }
    if (!only_blanks(p))
        die("bad graph '%s': unexpected '%s'", spec, p);
    return true;
}

/* Read the edge-list format of the peers' gen_dag.py: "# description", "<ntasks> <nedges>",
 * then one "src dst" a line with 0 <= src < dst < ntasks; or make the graph `path` names
 * (dag_gen). Exits on any error. */
static void dag_read(const char *path, struct dag *g)
{
    if (dag_gen(path, g))
        return;
    FILE *fp = fopen(path, "r");
    if (!fp)
        die("cannot open '%s': %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    long lineno = 1;
    if (getline(&line, &cap, fp) < 0 || line[0] != '#')
        die("%s:1: expected a '# description' line", path);
    lineno++;
    if (getline(&line, &cap, fp) < 0)
        die("%s:2: expected '<ntasks> <nedges>'", path);
    char *p = line;
    long count;
    long nedges;
    if (!parse_long(&p, &count) || !parse_long(&p, &nedges) || !only_blanks(p) || count < 1 ||
        nedges < 0)
        die("%s:2: expected '<ntasks> <nedges>'", path);
    dag_alloc(g, count, nedges);
    for (long i = 0; i < g->nedges; i++) {
        lineno++;
        if (getline(&line, &cap, fp) < 0)
            die("%s:%ld: expected %ld edges, found %ld", path, lineno, g->nedges, i);
        p = line;
        long s;
        long d;
        if (!parse_long(&p, &s) || !parse_long(&p, &d) || !only_blanks(p))
            die("%s:%ld: expected 'src dst'", path, lineno);
        if (s < 0 || s >= d || d >= g->count)
            die("%s:%ld: edge %ld -> %ld needs 0 <= src < dst < %ld", path, lineno, s, d,
                g->count);
        g->src[i] = s;
        g->dst[i] = d;
    }
    free(line);
    fclose(fp);
}

static int count_fn(flow_ctx *ctx)
{
    atomic_long *ran = flow_ctx_udata(ctx);
    atomic_fetch_add_explicit(ran, 1, memory_order_relaxed);
    return 0;
}

/* Tickets come from one atomic counter, whose modification order agrees with happens-before: if
 * the engine started task d after task s ended, then ended[s] < started[d]. */
static int check_fn(flow_ctx *ctx)
{
    struct check_slot *slot = flow_ctx_udata(ctx);
    struct bench *b = slot->b;
    b->started[slot->id] = atomic_fetch_add(&b->ticket, 1);
    atomic_fetch_add_explicit(&b->ran, 1, memory_order_relaxed);
    b->ended[slot->id] = atomic_fetch_add(&b->ticket, 1);
    return 0;
}

static flow *build(struct bench *b)
{
    const struct dag *g = b->g;
    flow_error err;
    flow *f = flow_new("w1", &err);
    if (!f)
        die("flow_new: %s", err.message);
    for (long v = 0; v < g->count; v++) {
        char name[32];
        task_name(name, v);
        flow_task *t = flow_add_task(f, name, &err);
        if (!t)
            die("flow_add_task '%s': %s", name, err.message);
        flow_err rc;
        if (b->check)
            rc = flow_task_set_fn(t, check_fn, &b->slots[v]);
        else
            rc = flow_task_set_fn(t, count_fn, &b->ran);
        if (rc != FLOW_OK)
            die("flow_task_set_fn '%s': %s", name, flow_strerror(rc));
        b->tasks[v] = t;
    }
    for (long i = 0; i < g->nedges; i++) {
        flow_err rc = flow_task_after(b->tasks[g->dst[i]], b->tasks[g->src[i]]);
        if (rc != FLOW_OK)
            die("flow_task_after t%ld -> t%ld: %s", g->src[i], g->dst[i], flow_strerror(rc));
    }
    return f;
}

/* Run `f` to its end; exits unless it completed. */
static flow_run *execute(struct bench *b, flow *f)
{
    return run_to_end(b->engine, f);
}

static void reset(struct bench *b)
{
    atomic_store(&b->ran, 0);
    if (b->check) {
        atomic_store(&b->ticket, 0);
        for (long v = 0; v < b->g->count; v++) {
            b->started[v] = -1;
            b->ended[v] = -1;
        }
    }
}

/* After the run: every task ran exactly once and, with CHECK=1, after its predecessors. */
static void validate(struct bench *b)
{
    const struct dag *g = b->g;
    long ran = atomic_load(&b->ran);
    if (ran != g->count)
        die("%ld task bodies ran, expected %ld (one per task)", ran, g->count);
    if (!b->check)
        return;
    for (long v = 0; v < g->count; v++) {
        if (b->started[v] < 0)
            die("task t%ld never ran", v);
    }
    long bad = 0;
    for (long i = 0; i < g->nedges; i++) {
        long s = g->src[i];
        long d = g->dst[i];
        if (b->ended[s] > b->started[d]) {
            if (bad++ < 5)
                fprintf(stderr, "w1_dag: t%ld started before its predecessor t%ld ended\n", d, s);
        }
    }
    if (bad)
        die("%ld of %ld edges ran out of order", bad, g->nedges);
}

static void bench_init(struct bench *b, const struct dag *g, int threads)
{
    memset(b, 0, sizeof(*b));
    b->g = g;
    b->tasks = xmalloc((size_t)g->count, sizeof(*b->tasks));
    const char *c = getenv("CHECK");
    b->check = c && *c && strcmp(c, "0") != 0;
    if (b->check) {
        b->slots = xmalloc((size_t)g->count, sizeof(*b->slots));
        b->started = xmalloc((size_t)g->count, sizeof(long));
        b->ended = xmalloc((size_t)g->count, sizeof(long));
        for (long v = 0; v < g->count; v++) {
            b->slots[v].b = b;
            b->slots[v].id = v;
        }
    }
    flow_engine_options opts = {.jobs = threads};
    flow_error err;
    b->engine = flow_engine_new(&opts, &err);
    if (!b->engine)
        die("flow_engine_new: %s", err.message);
}

static void bench_cleanup(struct bench *b)
{
    flow_engine_free(b->engine);
    free(b->tasks);
    free(b->slots);
    free(b->started);
    free(b->ended);
}

/* With `counting` (--count), only build + execute of the timed repetitions is instrumented:
 * reading the graph, the engine's start, the warm-up, the checks and freeing are left out. */
static int timed(const char *path, int threads, int reps, bool counting)
{
    if (counting && count_unavailable())
        die("%s", count_unavailable());
    struct dag g;
    dag_read(path, &g);
    struct bench b;
    bench_init(&b, &g, threads);
    fprintf(stderr, "# libflow %s, threads=%d, tasks=%ld edges=%ld%s\n", flow_version(), threads,
            g.count, g.nedges, b.check ? ", CHECK=1" : "");

    for (int rep = -1; rep < reps; rep++) { /* rep -1 is the untimed warm-up */
        reset(&b);
        if (counting && rep >= 0)
            count_instrument(true);
        double t0 = now_s();
        flow *f = build(&b);
        double t1 = now_s();
        flow_run *r = execute(&b, f);
        double t2 = now_s();
        if (counting && rep >= 0)
            count_instrument(false);
        validate(&b);
        double t3 = now_s();
        flow_run_free(r);
        flow_free(f);
        double t4 = now_s();
        if (rep >= 0 && !counting) {
            printf("rep=%d build_s=%.6f exec_s=%.6f total_s=%.6f destroy_s=%.6f ran=%ld\n", rep,
                   t1 - t0, t2 - t1, t2 - t0, t4 - t3, atomic_load(&b.ran));
            fflush(stdout);
        }
    }
    bench_cleanup(&b);
    if (counting)
        printf("tasks=%ld edges=%ld reps=%d\n", g.count, g.nedges, reps);
    else
        printf("peak_rss_kb=%ld\n", proc_status_kb("VmHWM"));
    free(g.src);
    free(g.dst);
    return 0;
}

/* One build + run in a fresh process: (peak RSS - RSS before building) / tasks. The edge list,
 * the harness's arrays and the engine's threads exist before the baseline is taken. */
static int memory(const char *path, int threads)
{
    struct dag g;
    dag_read(path, &g);
    struct bench b;
    bench_init(&b, &g, threads);
    reset(&b);
    long before_kb = proc_status_kb("VmRSS");
    flow *f = build(&b);
    flow_run *r = execute(&b, f);
    long peak_kb = proc_status_kb("VmHWM");
    validate(&b);
    if (before_kb < 0 || peak_kb < 0)
        die("cannot read VmRSS/VmHWM from /proc/self/status");
    printf("bytes_per_task=%.1f rss_before_kb=%ld peak_rss_kb=%ld tasks=%ld edges=%ld\n",
           (double)(peak_kb - before_kb) * 1024.0 / (double)g.count, before_kb, peak_kb, g.count,
           g.nedges);
    flow_run_free(r);
    flow_free(f);
    bench_cleanup(&b);
    free(g.src);
    free(g.dst);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--mem") == 0)
        return memory(argv[2], (int)arg_long(argv[3], "THREADS", 1, 1024));
    bool counting = argc == 5 && strcmp(argv[1], "--count") == 0;
    if (counting) {
        argc--;
        argv++;
    }
    if (argc != 4 || argv[1][0] == '-') {
        fputs(usage, stderr);
        return 2;
    }
    return timed(argv[1], (int)arg_long(argv[2], "THREADS", 1, 1024),
                 (int)arg_long(argv[3], "REPS", 0, 1000000), counting);
}
