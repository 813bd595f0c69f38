/* cmd_run.c -- `flow run FILE [options]`: load a workflow file, start a run with the
 * inputs given, follow it to its end with live progress on stderr, print its result
 * on stdout, and exit with a status that says how it ended.
 *
 * DESIGN: a helper thread blocks in flow_run_wait(); the main thread wakes about 20
 * times a second to print progress (progress.c) and to act on SIGINT/SIGTERM. The
 * signal handler only sets a flag (async-signal-safe); the main thread then calls
 * flow_run_interrupt(), so the run is never touched by a handler that could race
 * with flow_run_free(). The run ends cancelled ("interrupted"); the core stops and
 * kills the command tasks; we exit 130. A third signal exits at once. */
#include "cli.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

static void export_flow_bin(void);

#define TICK_NS 50000000L /* progress redraw and signal poll period: 50 ms */

enum {
    OPT_HELP = 1,
    OPT_INPUT,
    OPT_INPUTS,
    OPT_ID,
    OPT_START,
    OPT_JOBS,
    OPT_JSON,
    OPT_QUIET,
    OPT_VERBOSE,
    OPT_STORE,
    OPT_DETACH,
    OPT_WAIT
};

static const struct cli_option options[] = {
    {"help", 'h', false, OPT_HELP},
    {"input", 'i', true, OPT_INPUT},
    {"inputs", 0, true, OPT_INPUTS},
    {"id", 0, true, OPT_ID},
    {"start", 0, true, OPT_START},
    {"jobs", 'j', true, OPT_JOBS},
    {"json", 0, false, OPT_JSON},
    {"quiet", 'q', false, OPT_QUIET},
    {"verbose", 'v', false, OPT_VERBOSE},
    {"store", 0, true, OPT_STORE},
    {"detach", 0, false, OPT_DETACH},
    {"wait", 0, false, OPT_WAIT},
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow run FILE [--input K=V]... [--inputs FILE.json] [--id RUN] [--start TASK]\n"
    "                [--jobs N] [--json] [--quiet] [--verbose] [--store URL] [--wait]\n"
    "\n"
    "Start a run of a workflow file and follow it to its end. The run id is printed\n"
    "first on stderr ('run ID'), then live progress, then a summary line; the run's\n"
    "result is printed as JSON on stdout.\n"
    "\n"
    "Options:\n"
    "  -i, --input K=V     run input K; V is parsed as JSON when it parses (42, true,\n"
    "                      [1,2], {\"a\":1}, \"text\"), else taken as a string; repeatable\n"
    "      --inputs FILE   run inputs from a JSON object file; --input overrides its keys\n"
    "      --id RUN        the run's id (default: a new unique id)\n"
    "      --start TASK    run TASK first, with the inputs, instead of the start tasks\n"
    "  -j, --jobs N        tasks running at once (default 0: one per core)\n"
    "      --json          print the whole run as JSON on stdout ({id, flow, status,\n"
    "                      result, error, tasks: [...]}) instead of the result\n"
    "  -q, --quiet         nothing on stderr but errors: no run id, no progress; the\n"
    "                      summary only when the run failed or was cancelled\n"
    "  -v, --verbose       also print the library's informational messages\n"
    "      --store URL     where runs are kept; only 'memory:' in this version\n"
    "      --wait          wait for people instead of exiting 3 (no effect yet)\n"
    "  -h, --help          show this help\n"
    "\n"
    "Progress: on a terminal, one line redrawn in place with the tasks done, running\n"
    "and failed, failures and retries printed above it; otherwise one line per event:\n"
    "  HH:MM:SS.mmm started   TASK (attempt N)\n"
    "  HH:MM:SS.mmm completed TASK (0.12s)\n"
    "  HH:MM:SS.mmm failed    TASK: ERROR\n"
    "  HH:MM:SS.mmm retrying  TASK in 1.0s (attempt N): ERROR\n"
    "  HH:MM:SS.mmm skipped   TASK\n"
    "  HH:MM:SS.mmm cancelled TASK\n"
    "  HH:MM:SS.mmm emitted   TASK -> LABEL\n"
    "\n"
    "SIGINT or SIGTERM stops the run: running commands are terminated, the run ends\n"
    "cancelled, 'interrupted' is printed and the exit status is 130. A third signal\n"
    "exits at once.\n"
    "\n"
    "Exit status: 0 completed, 1 failed, 2 usage error or invalid workflow (nothing\n"
    "ran), 3 paused, 4 cancelled, 130 interrupted.\n";

struct run_args {
    const char *file;
    const char **kv; /* --input values, in order (point into argv) */
    size_t kv_count;
    const char **files; /* --inputs files, in order */
    size_t file_count;
    const char *run_id;
    const char *start_task;
    int jobs;
    bool json;
    bool quiet;
    bool verbose;
};

/* ------------------------------------------------------------------------ */
/* Options and inputs                                                        */

static void push(const char ***list, size_t *count, const char *s)
{
    *list = cli_realloc((void *)*list, (*count + 1) * sizeof(**list));
    (*list)[(*count)++] = s;
}

/* Parse the command line into `ra`; returns -1 to go on, else an exit status. */
static int parse_args(struct run_args *ra, int argc, char **argv)
{
    struct cli_args a;
    int id;

    cli_args_init(&a, "run", argc, argv, options);
    while ((id = cli_next_opt(&a)) > 0) {
        switch (id) {
        case OPT_HELP:
            return cli_print_help(help);
        case OPT_INPUT:
            push(&ra->kv, &ra->kv_count, a.value);
            break;
        case OPT_INPUTS:
            push(&ra->files, &ra->file_count, a.value);
            break;
        case OPT_ID:
            if (!a.value[0]) {
                return cli_usage_error("run", "option '--id' of 'run' needs a non-empty RUN");
            }
            ra->run_id = a.value;
            break;
        case OPT_START:
            if (!a.value[0]) {
                return cli_usage_error("run", "option '--start' of 'run' needs a TASK");
            }
            ra->start_task = a.value;
            break;
        case OPT_JOBS:
            if (!cli_parse_count(&a, a.value, &ra->jobs)) {
                return CLI_EXIT_USAGE;
            }
            break;
        case OPT_JSON:
            ra->json = true;
            break;
        case OPT_QUIET:
            ra->quiet = true;
            break;
        case OPT_VERBOSE:
            ra->verbose = true;
            break;
        case OPT_STORE:
            if (strcmp(a.value, "memory:") != 0) {
                cli_error("store '%s' is not supported yet (only 'memory:')", a.value);
                return CLI_EXIT_USAGE;
            }
            break;
        case OPT_DETACH:
            cli_error("--detach is not supported yet (runs are kept in memory only)");
            return CLI_EXIT_USAGE;
        case OPT_WAIT:
            break;
        default:
            break;
        }
    }
    if (id < 0) {
        return CLI_EXIT_USAGE;
    }
    return cli_one_file(&a, &ra->file);
}

static bool merge_inputs_file(json_t *inputs, const char *path)
{
    json_error_t jerr;
    json_t *v = json_load_file(path, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    char text[sizeof(jerr.text)];

    if (!v) {
        progress_one_line(text, sizeof(text), jerr.text);
        if (jerr.line > 0) {
            cli_error("invalid JSON in inputs file '%s': %s (%s:%d:%d)", path, text, path,
                      jerr.line, jerr.column);
        } else {
            cli_error("cannot read inputs file '%s': %s", path, text);
        }
        return false;
    }
    if (!json_is_object(v)) {
        cli_error("inputs file '%s' must hold a JSON object", path);
        json_decref(v);
        return false;
    }
    json_object_update(inputs, v);
    json_decref(v);
    return true;
}

static bool add_input(json_t *inputs, const char *kv)
{
    const char *eq = strchr(kv, '=');
    json_t *v;
    char *key;
    bool ok;

    if (!eq) {
        cli_usage_error("run", "option '--input' of 'run' expects KEY=VALUE, got '%s'", kv);
        return false;
    }
    if (eq == kv) {
        cli_usage_error("run", "option '--input' of 'run' has an empty KEY in '%s'", kv);
        return false;
    }
    key = cli_malloc((size_t)(eq - kv) + 1);
    memcpy(key, kv, (size_t)(eq - kv));
    key[eq - kv] = '\0';
    v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    if (!v) {
        v = json_string(eq + 1);
    }
    ok = v && json_object_set_new(inputs, key, v) == 0;
    if (!ok) {
        cli_error("input '%s' is not valid UTF-8", key);
    }
    free(key);
    return ok;
}

/* The run inputs: --inputs files first, then each --input over them. */
static json_t *build_inputs(const struct run_args *ra)
{
    json_t *inputs = json_object();
    size_t i;

    if (!inputs) {
        cli_error("out of memory");
        return NULL;
    }
    for (i = 0; i < ra->file_count; i++) {
        if (!merge_inputs_file(inputs, ra->files[i])) {
            goto out_free;
        }
    }
    for (i = 0; i < ra->kv_count; i++) {
        if (!add_input(inputs, ra->kv[i])) {
            goto out_free;
        }
    }
    return inputs;

out_free:
    json_decref(inputs);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Signals                                                                   */

static volatile sig_atomic_t signal_count;

static void on_signal(int sig)
{
    static const char msg[] = "\nflow: stopping immediately\n";

    (void)sig;
    if (signal_count < 3) {
        signal_count++;
    }
    if (signal_count >= 3) {
        /* The run was interrupted two signals ago: its commands were signalled. */
        if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
            _exit(CLI_EXIT_INTERRUPTED);
        }
        _exit(CLI_EXIT_INTERRUPTED);
    }
}

struct saved_signals {
    struct sigaction old_int;
    struct sigaction old_term;
};

static void install_signals(struct saved_signals *saved)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &saved->old_int);
    sigaction(SIGTERM, &sa, &saved->old_term);
}

static void restore_signals(const struct saved_signals *saved)
{
    sigaction(SIGINT, &saved->old_int, NULL);
    sigaction(SIGTERM, &saved->old_term, NULL);
}

/* ------------------------------------------------------------------------ */
/* Following the run                                                         */

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    flow_run *run;
    flow_run_status status; /* set with done */
    bool done;
};

static void *wait_main(void *arg)
{
    struct waiter *w = arg;
    flow_run_status status = flow_run_wait(w->run);

    pthread_mutex_lock(&w->mu);
    w->status = status;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Act on signals received since the last tick. */
static void check_signals(flow_run *run, bool *interrupted)
{
    if (signal_count > 0 && !*interrupted) {
        *interrupted = true;
        flow_run_interrupt(run);
    }
}

/* Wait for the run to end while printing progress; returns its final status. */
static flow_run_status follow(flow_run *run, struct progress *prog, bool *interrupted)
{
    struct waiter w;
    pthread_condattr_t attr;
    pthread_t thread;
    flow_run_status status;

    memset(&w, 0, sizeof(w));
    w.run = run;
    pthread_mutex_init(&w.mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w.cv, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&thread, NULL, wait_main, &w) != 0) {
        /* No helper thread: poll the status instead, then collect the end. */
        const struct timespec tick = {0, TICK_NS};

        while (flow_run_get_status(run) == FLOW_RUN_PENDING ||
               flow_run_get_status(run) == FLOW_RUN_RUNNING) {
            nanosleep(&tick, NULL);
            check_signals(run, interrupted);
            if (prog) {
                progress_tick(prog);
            }
        }
        status = flow_run_wait(run);
        goto out_destroy;
    }
    pthread_mutex_lock(&w.mu);
    while (!w.done) {
        struct timespec deadline;

        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_nsec += TICK_NS;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w.cv, &w.mu, &deadline);
        if (w.done) {
            break;
        }
        pthread_mutex_unlock(&w.mu);
        check_signals(run, interrupted);
        if (prog) {
            progress_tick(prog);
        }
        pthread_mutex_lock(&w.mu);
    }
    status = w.status;
    pthread_mutex_unlock(&w.mu);
    pthread_join(thread, NULL);

out_destroy:
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return status;
}

/* The exit status for a run that ended with `status`; `interrupted`: we asked it to
 * stop because of a signal before it ended. */
static int exit_status(flow_run *run, flow_run_status status, bool interrupted)
{
    const char *error = flow_run_error(run);

    switch (status) {
    case FLOW_RUN_COMPLETED:
        return CLI_EXIT_OK;
    case FLOW_RUN_PAUSED:
        return CLI_EXIT_PAUSED;
    case FLOW_RUN_CANCELLED:
        if (interrupted || (error && strcmp(error, "interrupted") == 0)) {
            return CLI_EXIT_INTERRUPTED;
        }
        return CLI_EXIT_CANCELLED;
    case FLOW_RUN_FAILED:
        /* Stopping may surface as a failure of the commands we had killed. */
        return interrupted ? CLI_EXIT_INTERRUPTED : CLI_EXIT_FAILED;
    case FLOW_RUN_PENDING:
    case FLOW_RUN_RUNNING:
    default:
        return CLI_EXIT_FAILED;
    }
}

/* The summary line on stderr. */
static void print_summary(flow_run *run, int rc, double elapsed, bool quiet)
{
    char error[2048];
    size_t count = flow_run_activation_count(run);
    size_t failed = 0;
    size_t skipped = 0;
    size_t i;

    progress_one_line(error, sizeof(error), flow_run_error(run) ? flow_run_error(run) : "");
    if (quiet && rc != CLI_EXIT_FAILED && rc != CLI_EXIT_CANCELLED) {
        return;
    }
    for (i = 0; i < count; i++) {
        flow_activation_info info;

        memset(&info, 0, sizeof(info));
        if (flow_run_activation(run, i, &info) != FLOW_OK) {
            continue;
        }
        if (info.status == FLOW_ACT_FAILED) {
            failed++;
        } else if (info.status == FLOW_ACT_SKIPPED) {
            skipped++;
        }
    }
    switch (rc) {
    case CLI_EXIT_OK:
        fprintf(stderr, "completed in %.2fs: %zu tasks, %zu failed", elapsed, count, failed);
        if (skipped) {
            fprintf(stderr, ", %zu skipped", skipped);
        }
        fputc('\n', stderr);
        break;
    case CLI_EXIT_PAUSED:
        fprintf(stderr, "paused after %.2fs: %s\n", elapsed,
                error[0] ? error : "waiting for a person");
        break;
    case CLI_EXIT_CANCELLED:
        fprintf(stderr, "cancelled: %s\n", error[0] ? error : "no reason given");
        break;
    case CLI_EXIT_INTERRUPTED:
        fputs("interrupted\n", stderr);
        break;
    default:
        fprintf(stderr, "failed: %s\n", error[0] ? error : "the run failed");
        break;
    }
}

static bool print_output(flow_run *run, int rc, bool as_json)
{
    json_t *doc;
    bool ok;

    if (!as_json) {
        return rc != CLI_EXIT_OK || cli_print_json(stdout, flow_run_result(run));
    }
    doc = flow_run_to_json(run);
    if (!doc) {
        cli_error("cannot describe run '%s' as JSON: out of memory", flow_run_id(run));
        return false;
    }
    ok = cli_print_json(stdout, doc);
    json_decref(doc);
    return ok;
}

/* The exit status when the engine or the run cannot start: 2 when what was asked is
 * wrong (unknown --start task, existing --id, too many --jobs), else 1. */
static int start_error_status(flow_err code)
{
    switch (code) {
    case FLOW_ENOMEM:
    case FLOW_EIO:
    case FLOW_ESYSTEM:
        return CLI_EXIT_FAILED;
    default:
        return CLI_EXIT_USAGE;
    }
}

static void quiet_log(flow_log_level level, const char *message, void *udata)
{
    char text[2048];

    (void)udata;
    (void)level;
    fprintf(stderr, "error: %s\n", progress_one_line(text, sizeof(text), message));
}

static int run_flow(const struct run_args *ra, flow *f, json_t *inputs)
{
    flow_engine_options eopts;
    flow_run_options ropts;
    struct saved_signals saved;
    struct progress *prog = NULL;
    flow_engine *engine;
    flow_run *run;
    flow_error err;
    flow_run_status status;
    bool interrupted = false;
    double t0;
    int rc;

    if (ra->quiet) {
        flow_set_log(quiet_log, NULL, FLOW_LOG_ERROR);
    } else {
        prog = progress_new(isatty(STDERR_FILENO) == 1, flow_task_count(f));
        flow_set_log(progress_on_log, prog, ra->verbose ? FLOW_LOG_INFO : FLOW_LOG_WARN);
    }
    export_flow_bin();
    memset(&err, 0, sizeof(err));
    memset(&eopts, 0, sizeof(eopts));
    eopts.jobs = ra->jobs;
    engine = flow_engine_new(&eopts, &err);
    if (!engine) {
        cli_error("cannot start the engine: %s", err.message);
        rc = start_error_status(err.code);
        goto out_log;
    }
    memset(&ropts, 0, sizeof(ropts));
    ropts.inputs = inputs;
    ropts.run_id = ra->run_id;
    ropts.start_task = ra->start_task;
    ropts.on_event = prog ? progress_on_event : NULL;
    ropts.event_udata = prog;
    signal_count = 0;
    install_signals(&saved);
    t0 = now_seconds();
    run = flow_run_start(engine, f, &ropts, &err);
    if (!run) {
        restore_signals(&saved);
        cli_error("%s", err.message[0] ? err.message : flow_strerror(err.code));
        rc = start_error_status(err.code);
        goto out_engine;
    }
    if (!ra->quiet) {
        fprintf(stderr, "run %s\n", flow_run_id(run));
    }
    status = follow(run, prog, &interrupted);
    restore_signals(&saved);
    if (prog) {
        progress_finish(prog);
    }
    rc = exit_status(run, status, interrupted);
    print_summary(run, rc, now_seconds() - t0, ra->quiet);
    if (!print_output(run, rc, ra->json) && rc == CLI_EXIT_OK) {
        rc = CLI_EXIT_FAILED;
    }
    flow_run_free(run);

out_engine:
    flow_engine_free(engine);
out_log:
    flow_set_log(NULL, NULL, FLOW_LOG_OFF);
    progress_free(prog);
    return rc;
}

/* Command tasks inherit our environment: $FLOW_BIN names this program, so a
 * task can call "$FLOW_BIN" ctl ... without `flow` on its PATH. */
static void export_flow_bin(void)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0 || getenv("FLOW_BIN"))
        return;
    self[n] = '\0';
    setenv("FLOW_BIN", self, 0);
}

static int run_main(int argc, char **argv)
{
    struct run_args ra;
    json_t *inputs;
    flow *f;
    int rc;

    memset(&ra, 0, sizeof(ra));
    rc = parse_args(&ra, argc, argv);
    if (rc >= 0) {
        goto out_args;
    }
    inputs = build_inputs(&ra);
    if (!inputs) {
        rc = CLI_EXIT_USAGE;
        goto out_args;
    }
    f = cli_load_flow(ra.file, ra.quiet);
    if (!f) {
        rc = CLI_EXIT_USAGE;
        goto out_inputs;
    }
    rc = run_flow(&ra, f, inputs);
    flow_free(f);

out_inputs:
    json_decref(inputs);
out_args:
    free((void *)ra.kv);
    free((void *)ra.files);
    return rc;
}

const struct cli_command cli_cmd_run = {
    "run",
    "start a run of a workflow file and follow it to its end",
    help,
    run_main,
};
