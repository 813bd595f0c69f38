/*
 * graph_svg.c -- how long flow_graph_svg() takes to lay out and draw a big flow (the
 * drawing of `flow graph --format svg` and `flow serve`'s dashboard). Uses include/flow.h
 * only. Not part of `make bench`: run it by hand.
 *
 *   graph_svg SHAPE [REPS]      build the flow once, then draw it REPS times (5)
 *
 * SHAPE: chain:N (N tasks), fan:N (1 -> N -> 1), layered:LxW (L layers of W tasks, each
 * after 2 tasks of the layer before), random:N (each task after 1 to 3 of the 40 before it).
 * Output: shape=... tasks=N bytes=B min_ms=... median_ms=... max_ms=...
 */
#define _GNU_SOURCE 1

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow.h"

#define HARNESS_NAME "graph_svg"
#include "harness.h"

static flow_task *add(flow *f, long i)
{
    char name[24];
    flow_error err;
    flow_task *t;

    task_name(name, i);
    t = flow_add_task(f, name, &err);
    if (!t || flow_task_set_noop(t) != FLOW_OK)
        die("flow_add_task %s: %s", name, t ? "noop" : err.message);
    return t;
}

static void after(flow_task *t, flow_task *dep)
{
    if (flow_task_after(t, dep) != FLOW_OK)
        die("flow_task_after");
}

static flow *build(const char *shape, long *tasks)
{
    flow_error err;
    flow *f = flow_new("graph-bench", &err);
    long n = 0;
    long w = 0;
    unsigned seed = 42;

    if (!f)
        die("flow_new: %s", err.message);
    if (sscanf(shape, "chain:%ld", &n) == 1 && n > 0) {
        flow_task *prev = add(f, 0);
        for (long i = 1; i < n; i++) {
            flow_task *t = add(f, i);
            after(t, prev);
            prev = t;
        }
    } else if (sscanf(shape, "fan:%ld", &n) == 1 && n > 0) {
        flow_task *src = add(f, 0);
        flow_task *sink = add(f, n + 1);
        for (long i = 1; i <= n; i++) {
            flow_task *t = add(f, i);
            after(t, src);
            after(sink, t);
        }
        n += 2;
    } else if (sscanf(shape, "layered:%ldx%ld", &n, &w) == 2 && n > 0 && w > 0) {
        flow_task **prev = xmalloc((size_t)w, sizeof(*prev));
        flow_task **cur = xmalloc((size_t)w, sizeof(*cur));
        for (long l = 0; l < n; l++) {
            for (long i = 0; i < w; i++) {
                cur[i] = add(f, l * w + i);
                if (l > 0) {
                    seed = seed * 1664525u + 1013904223u;
                    after(cur[i], prev[(seed >> 8) % (unsigned long)w]);
                    after(cur[i], prev[(seed >> 20) % (unsigned long)w]);
                }
            }
            flow_task **swap = prev;
            prev = cur;
            cur = swap;
        }
        free(prev);
        free(cur);
        n *= w;
    } else if (sscanf(shape, "random:%ld", &n) == 1 && n > 0) {
        flow_task **all = xmalloc((size_t)n, sizeof(*all));
        for (long i = 0; i < n; i++) {
            all[i] = add(f, i);
            for (int k = i ? (int)(seed % 3) + 1 : 0; k > 0; k--) {
                seed = seed * 1664525u + 1013904223u;
                long span = 1 + (long)((seed >> 8) % 40);
                after(all[i], all[i - span < 0 ? 0 : i - span]);
            }
        }
        free(all);
    } else {
        die("unknown shape '%s' (chain:N, fan:N, layered:LxW, random:N)", shape);
    }
    if (flow_validate(f, NULL, &err) != FLOW_OK)
        die("flow_validate: %s", err.message);
    *tasks = n;
    return f;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3)
        die("usage: graph_svg SHAPE [REPS]   SHAPE: chain:N | fan:N | layered:LxW | random:N");
    int reps = argc == 3 ? (int)strtol(argv[2], NULL, 10) : 5;
    if (reps < 1)
        die("REPS must be at least 1");
    long tasks = 0;
    flow *f = build(argv[1], &tasks);
    double *ms = xmalloc((size_t)reps, sizeof(*ms));
    size_t bytes = 0;

    for (int r = 0; r < reps; r++) {
        flow_error err;
        double t0 = now_s();
        char *svg = flow_graph_svg(f, NULL, &err);
        ms[r] = (now_s() - t0) * 1e3;
        if (!svg)
            die("flow_graph_svg: %s", err.message);
        bytes = strlen(svg);
        free(svg);
    }
    qsort(ms, (size_t)reps, sizeof(*ms), cmp_double);
    printf("shape=%s tasks=%ld bytes=%zu min_ms=%.1f median_ms=%.1f max_ms=%.1f\n", argv[1], tasks,
           bytes, ms[0], ms[reps / 2], ms[reps - 1]);
    free(ms);
    flow_free(f);
    return 0;
}
