/* follow.c -- following a run to its end for `flow run` and `flow resume`
 * (follow.h).
 *
 * DESIGN: a helper thread blocks in flow_run_wait(); the main thread wakes about 20
 * times a second to print progress (progress.c) and to act on SIGINT/SIGTERM. The
 * signal handler only sets a flag (async-signal-safe); the main thread then calls
 * flow_run_interrupt(): running commands are terminated, their attempts are not
 * recorded, and the run ends `paused` ("interrupted"), resumable; we exit 130. A
 * third signal exits at once. */
#include "follow.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "color.h"

#define TICK_NS 50000000L /* progress redraw and signal poll period: 50 ms */

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

static struct saved_signals saved_signals;

void cli_signals_install(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    signal_count = 0;
    sigaction(SIGINT, &sa, &saved_signals.old_int);
    sigaction(SIGTERM, &sa, &saved_signals.old_term);
}

void cli_signals_restore(void)
{
    sigaction(SIGINT, &saved_signals.old_int, NULL);
    sigaction(SIGTERM, &saved_signals.old_term, NULL);
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

double cli_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool cli_signal_received(void)
{
    return signal_count > 0;
}

/* Act on signals received since the last tick. */
static void check_signals(flow_run *run, bool *interrupted)
{
    if (signal_count > 0 && !*interrupted) {
        *interrupted = true;
        flow_run_interrupt(run);
    }
}

/* ------------------------------------------------------------------------ */
/* Saying what a run waits for                                               */

/* The options of `flow feedback` that answer a request of `type`. */
static const char *answer_args(const char *type)
{
    return !type                       ? "--approve | --reject"
           : !strcmp(type, "approval") ? "--approve | --reject"
           : !strcmp(type, "text")     ? "--text TEXT"
                                       : "--select OPTION";
}

/* A run left to people (`--wait`, or a task that waits while others run):
 * each open request is told once, with how to answer it. The store is
 * looked at when nothing has happened for a while, and less and less often
 * while nothing happens (0.5 s after the last event, then 1, 2, ... 30 s). */
struct waiting {
    json_t *told;      /* request ids told already (an object as a set) */
    double seen;       /* the last event the looks were timed from */
    double next_look;  /* cli_now() of the next look */
    double backoff;
};

static void tell_waiting(struct cli_session *s, flow_run *run, struct waiting *w)
{
    bool color = cli_color_on(STDERR_FILENO);
    double since;
    double now = cli_now();
    json_t *reqs;
    json_t *q;
    size_t i;

    if (!s->prog || !s->store || !flow_store_is_durable(s->store)) {
        return;
    }
    /* Not "while nothing runs": a task that waits for people is running. */
    since = progress_last_event(s->prog);
    if (since != w->seen) {
        w->seen = since;
        w->backoff = 0.5;
        w->next_look = since + w->backoff;
    }
    if (now < w->next_look) {
        return;
    }
    w->backoff = w->backoff * 2 < 30 ? w->backoff * 2 : 30;
    w->next_look = now + w->backoff;
    reqs = flow_store_feedback(s->store, flow_run_id(run), NULL);
    if (!w->told) {
        w->told = json_object();
    }
    json_array_foreach(reqs, i, q)
    {
        const char *id = json_string_value(json_object_get(q, "request"));
        const char *type = json_string_value(json_object_get(q, "type"));
        const char *task = json_string_value(json_object_get(q, "task"));
        const json_t *deadline = json_object_get(q, "deadline");
        char when[48];
        char line[1024];

        if (!id || json_object_get(w->told, id) || json_is_true(json_object_get(q, "expired"))) {
            continue;
        }
        when[0] = '\0';
        if (json_is_string(deadline)) {
            char t[32];

            snprintf(when, sizeof(when), ", deadline %s", cli_short_time(deadline, t, sizeof(t)));
        }
        snprintf(line, sizeof(line),
                 "%swaiting%s for an answer to %s%s%s%s of run %s (request %s%s): flow feedback "
                 "%s %s %s",
                 color ? cli_color_code("waiting") : "", color ? CLI_COLOR_RESET : "",
                 type ? type : "request", task ? " '" : "", task ? task : "", task ? "'" : "",
                 flow_run_id(run), id, when, flow_run_id(run), id, answer_args(type));
        progress_print(s->prog, line);
        json_object_set_new(w->told, id, json_true());
    }
    json_decref(reqs);
}

/* Wait for the run to end while printing progress; returns its final status. */
static flow_run_status follow(flow_run *run, struct cli_session *s, bool *interrupted)
{
    struct progress *prog = s->prog;
    struct waiting waiting = {0};
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
            tell_waiting(s, run, &waiting);
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
    json_decref(waiting.told);
    return status;
}

int cli_run_exit_status(flow_run_status status, const char *error)
{
    switch (status) {
    case FLOW_RUN_COMPLETED:
        return CLI_EXIT_OK;
    case FLOW_RUN_PAUSED:
        if (error && strcmp(error, "interrupted") == 0) {
            return CLI_EXIT_INTERRUPTED;
        }
        return CLI_EXIT_PAUSED;
    case FLOW_RUN_CANCELLED:
        return CLI_EXIT_CANCELLED;
    case FLOW_RUN_FAILED:
        return CLI_EXIT_FAILED;
    case FLOW_RUN_PENDING:
    case FLOW_RUN_RUNNING:
    default:
        return CLI_EXIT_FAILED;
    }
}

const char *cli_exit_word(int rc)
{
    switch (rc) {
    case CLI_EXIT_OK:
        return "completed";
    case CLI_EXIT_PAUSED:
        return "paused";
    case CLI_EXIT_CANCELLED:
        return "cancelled";
    case CLI_EXIT_INTERRUPTED:
        return "interrupted";
    default:
        return "failed";
    }
}

/* A run paused for people: how to answer each of its open requests. */
static void print_answer_hints(flow_store *store, flow_run *run)
{
    json_t *reqs = store ? flow_store_feedback(store, flow_run_id(run), NULL) : NULL;
    json_t *q;
    size_t i;

    json_array_foreach(reqs, i, q)
    {
        const char *type = json_string_value(json_object_get(q, "type"));

        fprintf(stderr, "  %s: %s\n  answer with: flow feedback %s %s %s\n",
                json_string_value(json_object_get(q, "request")),
                json_string_value(json_object_get(q, "message")), flow_run_id(run),
                json_string_value(json_object_get(q, "request")), answer_args(type));
    }
    json_decref(reqs);
}

/* The summary line on stderr. */
static void print_summary(flow_run *run, int rc, double elapsed, bool quiet, bool resumable,
                          flow_store *store)
{
    char error[2048];
    size_t count = flow_run_activation_count(run);
    size_t failed = 0;
    size_t skipped = 0;
    size_t i;
    const char *word;
    char head[64];
    bool color;

    progress_one_line(error, sizeof(error), flow_run_error(run) ? flow_run_error(run) : "");
    if (quiet && rc != CLI_EXIT_FAILED && rc != CLI_EXIT_CANCELLED && rc != CLI_EXIT_PAUSED) {
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
    /* The first word says how it ended, coloured on a terminal. */
    color = cli_color_on(STDERR_FILENO);
    word = cli_exit_word(rc);
    fputs(cli_color_pad(head, sizeof(head), color, word, word, 0), stderr);
    switch (rc) {
    case CLI_EXIT_OK:
        fprintf(stderr, " in %.2fs: %zu tasks, %zu failed", elapsed, count, failed);
        if (skipped) {
            fprintf(stderr, ", %zu skipped", skipped);
        }
        fputc('\n', stderr);
        break;
    case CLI_EXIT_PAUSED:
        fprintf(stderr, " after %.2fs: %s\n", elapsed, error[0] ? error : "waiting for a person");
        if (!quiet && resumable) {
            print_answer_hints(store, run);
            fprintf(stderr, "resume it with: flow resume %s\n", flow_run_id(run));
        }
        break;
    case CLI_EXIT_CANCELLED:
        fprintf(stderr, ": %s\n", error[0] ? error : "no reason given");
        break;
    case CLI_EXIT_INTERRUPTED:
        fputc('\n', stderr);
        if (!quiet && resumable) {
            fprintf(stderr, "resume it with: flow resume %s\n", flow_run_id(run));
        }
        break;
    default:
        fprintf(stderr, ": %s\n", error[0] ? error : "the run failed");
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
int cli_start_error_status(flow_err code)
{
    switch (code) {
    case FLOW_ENOMEM:
    case FLOW_EIO:
    case FLOW_ESYSTEM:
    case FLOW_ETIMEOUT:
    case FLOW_EBUSY:
    case FLOW_EPARSE:
        return CLI_EXIT_FAILED;
    default:
        return CLI_EXIT_USAGE;
    }
}

static void quiet_log_cb(flow_log_level level, const char *message, void *udata)
{
    char text[2048];

    (void)udata;
    (void)level;
    fprintf(stderr, "error: %s\n", progress_one_line(text, sizeof(text), message));
}

/* Command tasks inherit our environment: $FLOW_BIN names this program, so a
 * task can call "$FLOW_BIN" ctl ... without `flow` on its PATH. */
void cli_export_flow_bin(void)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0 || getenv("FLOW_BIN"))
        return;
    self[n] = '\0';
    setenv("FLOW_BIN", self, 0);
}


static void quiet_log_cb(flow_log_level level, const char *message, void *udata);

flow_store *cli_open_store_code(const char *url, flow_err *code)
{
    flow_error err;
    flow_store *st;

    memset(&err, 0, sizeof(err));
    st = flow_store_open(url, &err);
    *code = err.code;
    if (!st) {
        cli_error("%s", err.message[0] ? err.message : flow_strerror(err.code));
    }
    return st;
}

int cli_store_error_status(flow_err code)
{
    return code == FLOW_ENOTFOUND || code == FLOW_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAILED;
}

flow_store *cli_open_existing_store(const char *url, int *status)
{
    flow_error err;
    flow_store *st;

    memset(&err, 0, sizeof(err));
    st = flow_store_open_flags(url, FLOW_STORE_NOCREATE, &err);
    if (!st) {
        if (err.code == FLOW_ENOTFOUND && !url) {
            cli_error("%s: nothing has run here (another store: --store URL or $FLOW_STORE)",
                      err.message);
        } else {
            cli_error("%s", err.message[0] ? err.message : flow_strerror(err.code));
        }
        *status = cli_store_error_status(err.code);
    }
    return st;
}

flow_store *cli_open_store(const char *url)
{
    flow_err code;

    return cli_open_store_code(url, &code);
}

int cli_session_open(struct cli_session *s, size_t task_count)
{
    flow_engine_options eopts;
    flow_error err;
    flow_err code;

    if (s->quiet) {
        flow_set_log(quiet_log_cb, NULL, FLOW_LOG_ERROR);
    } else {
        s->prog = progress_new(!s->no_bar && isatty(STDERR_FILENO) == 1, task_count);
        flow_set_log(progress_on_log, s->prog, s->verbose ? FLOW_LOG_INFO : FLOW_LOG_WARN);
    }
    cli_export_flow_bin();
    s->store = cli_open_store_code(s->store_url, &code);
    if (!s->store) {
        cli_session_close(s);
        return code == FLOW_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAILED;
    }
    memset(&err, 0, sizeof(err));
    memset(&eopts, 0, sizeof(eopts));
    eopts.jobs = s->jobs;
    eopts.resources = s->has_resources ? &s->resources : NULL;
    eopts.redis_url = s->redis_url;
    if (!eopts.redis_url && strncmp(flow_store_url(s->store), "redis://", 8) == 0)
        eopts.redis_url = flow_store_url(s->store);
    s->engine = flow_engine_new(&eopts, &err);
    if (!s->engine) {
        cli_error("cannot start the engine: %s", err.message);
        cli_session_close(s);
        return cli_start_error_status(err.code);
    }
    return -1;
}

void cli_session_close(struct cli_session *s)
{
    flow_engine_free(s->engine);
    s->engine = NULL;
    if (s->prog) {
        progress_finish(s->prog); /* what the engine logged as it went (notifications) */
    }
    flow_store_close(s->store);
    s->store = NULL;
    flow_set_log(NULL, NULL, FLOW_LOG_OFF);
    progress_free(s->prog);
    s->prog = NULL;
}

int cli_follow(struct cli_session *s, flow_run *run, double t0)
{
    bool interrupted = false;
    flow_run_status status;
    int rc;

    if (!s->quiet) {
        fprintf(stderr, "run %s\n", flow_run_id(run));
    }
    status = follow(run, s, &interrupted);
    cli_signals_restore();
    if (s->prog) {
        progress_finish(s->prog);
    }
    rc = cli_run_exit_status(status, flow_run_error(run));
    if (interrupted && rc == CLI_EXIT_FAILED) {
        rc = CLI_EXIT_INTERRUPTED; /* it was failing when the signal came */
    }
    print_summary(run, rc, cli_now() - t0, s->quiet, s->store && flow_store_is_durable(s->store),
                  s->store);
    if (!print_output(run, rc, s->json) && rc == CLI_EXIT_OK) {
        rc = CLI_EXIT_FAILED;
    }
    flow_run_free(run);
    return rc;
}

flow_store *cli_store_for_run(struct cli_store_args *sa, const char **run_id, int *status)
{
    *status = cli_one_run(&sa->args, run_id);
    if (*status >= 0) {
        return NULL;
    }
    return cli_open_existing_store(sa->store_url, status);
}

int cli_parse_store_args(struct cli_store_args *sa, const char *cmd, int argc, char **argv,
                         const struct cli_option *opts, const char *help,
                         int (*extra)(struct cli_args *a, int id, void *udata), void *udata)
{
    struct cli_args *a = &sa->args;
    int id;
    int rc;

    cli_args_init(a, cmd, argc, argv, opts);
    while ((id = cli_next_opt(a)) > 0) {
        switch (id) {
        case CLI_OPT_HELP:
            return cli_print_help(help);
        case CLI_OPT_JSON:
            sa->json = true;
            break;
        case CLI_OPT_STORE:
            sa->store_url = a->value;
            break;
        default:
            rc = extra ? extra(a, id, udata) : -1;
            if (rc >= 0) {
                return rc;
            }
            break;
        }
    }
    return id < 0 ? CLI_EXIT_USAGE : -1;
}
