/* w3_remote.c -- W3 for libflow: no-op C functions on 2 worker processes
 * through Redis, with the rules of the peers' W3 (bench/README.md).
 *
 *   w3_remote drain   URL N RUNS [CONCURRENCY]
 *   w3_remote latency URL N RUNS [CONCURRENCY]
 *
 * drain: a run of N independent `fn: noop` remote tasks is started with no
 * worker running; once all N are queued (enqueue_s: from the run's start to
 * the queue stream holding N entries), 2 worker processes (this program,
 * forked, serving "noop" with the C worker API) start. Each body writes its
 * start and end times (CLOCK_REALTIME, ns) into a shared mapping, slot =
 * activation id; drain_s = last end - first start, as the peers measure
 * (worker start-up excluded). run_s: from the workers' start to the run's
 * end as the runner saw it (every completion applied).
 *
 * latency: the 2 workers run first and idle; a warm-up run of 20 tasks;
 * then a chain of N tasks, each queued when the one before has completed
 * (a closed loop). Submit-to-start latency of a task = its body's start -
 * its attempt's start on the runner (the FLOW_EV_TASK_STARTED time, taken
 * just before the runner queues it); done latency = body end - that time,
 * the peers' definition.
 *
 * Prints one line per run: "rep=K n=N enqueue_s= drain_s= run_s=" or
 * "rep=K n=N wall_s= p50_us= p90_us= p99_us= done_p50_us= ...". The queue
 * is emptied (FLUSHDB) before each run. */
#define _GNU_SOURCE 1
#define HARNESS_NAME "w3_remote"
#include "harness.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <time.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define NWORKERS 2
#define WARMUP 20

struct slot {
    _Atomic int64_t start_ns, done_ns;
};

static struct slot *slots; /* shared with the workers: index = activation id */
static size_t nslots;
static double *started_at; /* runner side: FLOW_EV_TASK_STARTED time by activation id */
static flow_worker *the_worker;

static int64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int noop(flow_ctx *ctx)
{
    uint64_t id = flow_ctx_activation(ctx);
    int64_t t = real_ns();
    if (id < nslots) {
        atomic_store_explicit(&slots[id].start_ns, t, memory_order_relaxed);
        atomic_store_explicit(&slots[id].done_ns, real_ns(), memory_order_relaxed);
    }
    return 0;
}

static void on_term(int sig)
{
    (void)sig;
    if (the_worker)
        flow_worker_stop(the_worker);
}

static pid_t start_worker(const char *url, int concurrency, int k)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid > 0)
        return pid;
    char name[32];
    snprintf(name, sizeof(name), "w3-%d", k);
    flow_worker_options o = {.concurrency = concurrency, .name = name};
    flow_error err;
    the_worker = flow_worker_new(url, &o, &err);
    if (!the_worker || flow_worker_register(the_worker, "noop", noop, NULL) != FLOW_OK) {
        fprintf(stderr, "w3_remote: worker: %s\n", err.message);
        _exit(1);
    }
    signal(SIGTERM, on_term);
    int rc = flow_worker_run(the_worker, &err) == FLOW_OK ? 0 : 1;
    if (rc)
        fprintf(stderr, "w3_remote: worker: %s\n", err.message);
    flow_worker_free(the_worker);
    _exit(rc);
}

static void stop_workers(const pid_t *pids)
{
    for (int k = 0; k < NWORKERS; k++)
        kill(pids[k], SIGTERM);
    for (int k = 0; k < NWORKERS; k++) {
        int st;
        if (waitpid(pids[k], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            die("worker %d did not stop cleanly", k);
    }
}

static redisContext *redis_of(const char *url)
{
    char host[128] = "127.0.0.1";
    int port = 6379;
    if (sscanf(url, "redis://%127[^:/]:%d", host, &port) < 1)
        die("bad URL %s", url);
    redisContext *c = redisConnect(host, port);
    if (!c || c->err)
        die("cannot connect to %s", url);
    return c;
}

static long long redis_int(redisContext *c, const char *cmd)
{
    redisReply *r = redisCommand(c, cmd);
    if (!r || r->type == REDIS_REPLY_ERROR)
        die("redis %s: %s", cmd, r ? r->str : c->errstr);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    return v;
}

static void on_event(const flow_event *ev, void *udata)
{
    (void)udata;
    if (ev->type == FLOW_EV_TASK_STARTED && ev->activation < nslots)
        started_at[ev->activation] = ev->time;
}

static flow *noop_flow(long n, bool chain)
{
    flow_error err;
    flow *f = flow_new("w3", &err);
    if (!f)
        die("flow_new: %s", err.message);
    flow_task *prev = NULL;
    for (long i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "t%ld", i);
        flow_task *t = flow_add_task(f, name, NULL);
        if (!t || flow_task_set_remote_fn(t, "noop") != FLOW_OK ||
            flow_task_set_executor(t, FLOW_EXEC_REMOTE) != FLOW_OK)
            die("cannot add task %s", name);
        if (chain && prev && flow_task_after(t, prev) != FLOW_OK)
            die("cannot chain task %s", name);
        prev = t;
    }
    return f;
}

static flow_run *start(flow_engine *e, flow *f)
{
    flow_error err;
    flow_run_options o = {.on_event = on_event};
    flow_run *r = flow_run_start(e, f, &o, &err);
    if (!r)
        die("flow_run_start: %s", err.message);
    return r;
}

static void finish(flow_run *r)
{
    flow_run_status st = flow_run_wait(r);
    if (st != FLOW_RUN_COMPLETED)
        die("the run did not complete (%d)", (int)st);
    flow_run_free(r);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct(const int64_t *v, long n, double q)
{
    long i = (long)(q * (double)n);
    return (double)v[i < n ? i : n - 1] / 1e3;
}

int main(int argc, char **argv)
{
    if (argc < 5 || (strcmp(argv[1], "drain") && strcmp(argv[1], "latency")))
        die("usage: w3_remote drain|latency URL N RUNS [CONCURRENCY]");
    bool latency = !strcmp(argv[1], "latency");
    const char *url = argv[2];
    long n = atol(argv[3]);
    int runs = atoi(argv[4]);
    int concurrency = argc > 5 ? atoi(argv[5]) : 8;
    if (n < 1 || runs < 1 || concurrency < 1)
        die("N, RUNS and CONCURRENCY must be positive");
    nslots = (size_t)(n > WARMUP ? n : WARMUP) + 2;
    slots = mmap(NULL, nslots * sizeof(*slots), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                 -1, 0);
    if (slots == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    started_at = xmalloc(nslots, sizeof(*started_at));
    int64_t *lat = xmalloc((size_t)n, sizeof(*lat)), *done_lat = xmalloc((size_t)n, sizeof(*lat));
    redisContext *rc = redis_of(url);
    flow_error err;
    flow_engine_options eo = {.jobs = 2, .redis_url = url};
    for (int rep = 0; rep < runs; rep++) {
        redis_int(rc, "FLUSHDB");
        memset(slots, 0, nslots * sizeof(*slots));
        flow_engine *e = flow_engine_new(&eo, &err);
        if (!e)
            die("flow_engine_new: %s", err.message);
        pid_t pids[NWORKERS];
        if (!latency) {
            flow *f = noop_flow(n, false);
            double t0 = now_s();
            flow_run *r = start(e, f);
            while (redis_int(rc, "XLEN flow:q:default") < n)
                usleep(200);
            double enq = now_s() - t0;
            double w0 = now_s();
            for (int k = 0; k < NWORKERS; k++)
                pids[k] = start_worker(url, concurrency, k);
            finish(r);
            double run_s = now_s() - w0;
            stop_workers(pids);
            int64_t first = INT64_MAX, last = 0;
            for (long i = 1; i <= n; i++) {
                int64_t s = atomic_load(&slots[i].start_ns), d = atomic_load(&slots[i].done_ns);
                if (!s || !d)
                    die("activation %ld never ran on a worker", i);
                first = s < first ? s : first;
                last = d > last ? d : last;
            }
            printf("rep=%d n=%ld enqueue_s=%.6f drain_s=%.6f run_s=%.6f\n", rep, n, enq,
                   (double)(last - first) / 1e9, run_s);
            flow_free(f);
        } else {
            for (int k = 0; k < NWORKERS; k++)
                pids[k] = start_worker(url, concurrency, k);
            flow *warm = noop_flow(WARMUP, false);
            finish(start(e, warm));
            flow_free(warm);
            memset(slots, 0, nslots * sizeof(*slots));
            memset(started_at, 0, nslots * sizeof(*started_at));
            flow *f = noop_flow(n, true);
            double t0 = now_s();
            finish(start(e, f));
            double wall = now_s() - t0;
            stop_workers(pids);
            flow_free(f);
            for (long i = 1; i <= n; i++) {
                int64_t s = atomic_load(&slots[i].start_ns), d = atomic_load(&slots[i].done_ns);
                int64_t sub = (int64_t)(started_at[i] * 1e9);
                if (!s || !sub)
                    die("activation %ld: no start time", i);
                lat[i - 1] = s - sub;
                done_lat[i - 1] = d - sub;
            }
            qsort(lat, (size_t)n, sizeof(*lat), cmp_i64);
            qsort(done_lat, (size_t)n, sizeof(*done_lat), cmp_i64);
            printf("rep=%d n=%ld wall_s=%.6f p50_us=%.1f p90_us=%.1f p99_us=%.1f done_p50_us=%.1f "
                   "done_p99_us=%.1f\n",
                   rep, n, wall, pct(lat, n, 0.5), pct(lat, n, 0.9), pct(lat, n, 0.99),
                   pct(done_lat, n, 0.5), pct(done_lat, n, 0.99));
        }
        fflush(stdout);
        flow_engine_free(e);
    }
    redisFree(rc);
    return 0;
}
