/* harness.h -- what the benchmark harnesses share: dying with a message,
 * allocating their own arrays resident before a memory baseline, the
 * monotonic clock, and fields of /proc/self/status. Each harness defines
 * HARNESS_NAME (its messages' prefix) before including this. */
#ifndef FLOW_BENCH_HARNESS_H
#define FLOW_BENCH_HARNESS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flow.h"

#ifndef HARNESS_NAME
#error "define HARNESS_NAME before including harness.h"
#endif

static inline _Noreturn void die(const char *fmt, ...) FLOW_PRINTF(1, 2);

static inline _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    fputs(HARNESS_NAME ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* Zeroed and touched: the harness's own arrays are resident before a memory
 * baseline is taken, so they are not counted as the engine's memory. */
static inline void *xmalloc(size_t count, size_t size)
{
    if (size && count > (size_t)-1 / size)
        die("allocation of %zu x %zu bytes overflows", count, size);
    size_t len = count * size;
    void *p = malloc(len > 0 ? len : 1);
    if (!p)
        die("out of memory allocating %zu bytes", len);
    memset(p, 0, len);
    return p;
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* "t<v>" into `out` (at least 24 bytes), the task names of W1's edge
 * files, without snprintf's cost. */
static inline void task_name(char *out, long v)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    *out++ = 't';
    while (n > 0)
        *out++ = digits[--n];
    *out = '\0';
}

/* Run `f` on `e` to its end; exits unless it completed. */
static inline flow_run *run_to_end(flow_engine *e, flow *f)
{
    flow_error err;
    flow_run *r = flow_run_start(e, f, NULL, &err);
    if (!r)
        die("flow_run_start: %s", err.message);
    flow_run_status st = flow_run_wait(r);
    if (st != FLOW_RUN_COMPLETED) {
        const char *why = flow_run_error(r);
        die("run ended %s: %s", flow_run_status_name(st), why ? why : "(no error)");
    }
    return r;
}

/* A field of /proc/self/status in kB ("VmRSS", "VmHWM"), or -1. */
static inline long proc_status_kb(const char *key)
{
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp)
        return -1;
    char line[256];
    size_t klen = strlen(key);
    long kb = -1;
    while (fgets(line, sizeof(line), fp)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            kb = strtol(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(fp);
    return kb;
}

#endif
