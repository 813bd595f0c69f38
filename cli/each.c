/* each.c -- `flow run FILE --inputs-each FILE.jsonl` (each.h).
 *
 * DESIGN: every good line's run is started at once on the one engine, whose
 * --jobs bounds the tasks running across all of them. The main thread polls
 * the runs' statuses each tick (50 ms, as follow.c does for one run) instead
 * of keeping a thread blocked in flow_run_wait() per run: a file of
 * thousands of lines would need thousands of threads. A run that has ended
 * gets its summary line on stderr at once; the results go to stdout in line
 * order, each as soon as every line before it has ended, so that a reader
 * can pair output lines with input lines and still see them as they come.
 * Per-task progress is not shown: the lines of many runs interleaved would
 * say little (the summaries and `flow status RUN` say more). */
#include "each.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "color.h"

#define TICK_NS 50000000L

struct each_line {
    long line;       /* 1-based, in the file */
    json_t *inputs;  /* the run's, until it starts; NULL: the line does not run */
    flow_run *run;   /* while it runs */
    double t0;       /* cli_now() at its start */
    int rc;          /* its exit status; -1 while it runs */
    bool started;    /* a run was started for it */
    json_t *record;  /* once it ended: {line, id, status, result, error} */
};

struct cli_each {
    const char *path;
    struct each_line *lines; /* the non-blank lines, in order */
    size_t count;
};

/* ------------------------------------------------------------------------ */
/* Reading the file                                                          */

/* A line that did not start a run: its record says why. */
static void line_not_run(struct each_line *l, int rc, const char *why)
{
    l->rc = rc;
    l->record = json_pack("{s:I,s:n,s:s,s:n,s:s}", "line", (json_int_t)l->line, "id", "status",
                          "not_started", "result", "error", why);
    if (!l->record) {
        cli_error("out of memory");
        exit(CLI_EXIT_FAILED);
    }
}

/* Report a bad line in gcc's form and keep it from running. */
static void bad_line(const char *path, struct each_line *l, int column, int rc, const char *fmt,
                     ...) CLI_PRINTF(5, 6);

static void bad_line(const char *path, struct each_line *l, int column, int rc, const char *fmt,
                     ...)
{
    flow_error e;
    va_list ap;

    memset(&e, 0, sizeof(e));
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    snprintf(e.file, sizeof(e.file), "%s", path);
    e.line = (int)l->line;
    e.column = column;
    cli_print_diag(&e, FLOW_SEV_ERROR);
    line_not_run(l, rc, e.message);
}

static bool blank(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') {
            return false;
        }
    }
    return true;
}

static void read_line(struct cli_each *b, const json_t *base, long lineno, const char *text,
                      size_t n)
{
    struct each_line *l;
    json_error_t jerr;
    json_t *v;

    b->lines = cli_realloc(b->lines, (b->count + 1) * sizeof(*b->lines));
    l = &b->lines[b->count++];
    memset(l, 0, sizeof(*l));
    l->line = lineno;
    l->rc = -1;
    v = json_loadb(text, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        char msg[sizeof(jerr.text)];

        bad_line(b->path, l, jerr.column > 0 ? jerr.column : 0, CLI_EXIT_USAGE,
                 "invalid JSON: %s", progress_one_line(msg, sizeof(msg), jerr.text));
        return;
    }
    if (!json_is_object(v)) {
        bad_line(b->path, l, 0, CLI_EXIT_USAGE,
                 "a line of --inputs-each must be a JSON object (the run's inputs)");
    } else {
        l->inputs = json_deep_copy(base);
        if (!l->inputs || json_object_update(l->inputs, v) != 0) {
            cli_error("out of memory");
            exit(CLI_EXIT_FAILED);
        }
    }
    json_decref(v);
}

struct cli_each *cli_each_read(const char *path, const json_t *base, int *status)
{
    struct cli_each *b;
    FILE *fp = fopen(path, "r");
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;

    if (!fp) {
        cli_error("cannot read inputs file '%s' of '--inputs-each': %s", path, strerror(errno));
        *status = CLI_EXIT_USAGE;
        return NULL;
    }
    b = cli_malloc(sizeof(*b));
    memset(b, 0, sizeof(*b));
    b->path = path;
    errno = 0;
    while ((n = getline(&buf, &cap, fp)) >= 0) {
        lineno++;
        if (!blank(buf, (size_t)n)) {
            read_line(b, base, lineno, buf, (size_t)n);
        }
    }
    free(buf);
    if (ferror(fp)) {
        cli_error("cannot read inputs file '%s' of '--inputs-each': %s", path,
                  strerror(errno ? errno : EIO));
        *status = CLI_EXIT_USAGE;
        goto out_free;
    }
    if (b->count == 0) {
        *status = cli_usage_error("run", "inputs file '%s' of '--inputs-each' has no line: "
                                         "nothing to run", path);
        goto out_free;
    }
    fclose(fp);
    return b;

out_free:
    fclose(fp);
    cli_each_free(b);
    return NULL;
}

void cli_each_free(struct cli_each *b)
{
    size_t i;

    if (!b) {
        return;
    }
    for (i = 0; i < b->count; i++) {
        json_decref(b->lines[i].inputs);
        json_decref(b->lines[i].record);
        flow_run_free(b->lines[i].run);
    }
    free(b->lines);
    free(b);
}

/* ------------------------------------------------------------------------ */
/* Following the runs                                                        */

/* Which of two exit statuses is worse (each.h). */
static int rank(int rc)
{
    switch (rc) {
    case CLI_EXIT_OK:
        return 0;
    case CLI_EXIT_PAUSED:
        return 1;
    case CLI_EXIT_CANCELLED:
        return 2;
    case CLI_EXIT_FAILED:
        return 3;
    case CLI_EXIT_USAGE:
        return 4;
    default:
        return 5; /* interrupted */
    }
}

static void say(struct cli_session *s, const char *line)
{
    if (s->prog) {
        progress_print(s->prog, line);
    } else {
        fprintf(stderr, "%s\n", line);
    }
}

/* "run ID (line N) failed in 0.21s: ERROR" on stderr. */
static void print_end(struct cli_session *s, const struct each_line *l, flow_run *run,
                      double elapsed)
{
    const char *word = cli_exit_word(l->rc);
    const char *error = flow_run_error(run);
    bool color = cli_color_on(STDERR_FILENO);
    char head[64];
    char text[2048];
    char line[2600];

    if (s->quiet && l->rc == CLI_EXIT_OK) {
        return;
    }
    progress_one_line(text, sizeof(text), error ? error : "");
    snprintf(line, sizeof(line), "run %s (line %ld) %s in %.2fs%s%s", flow_run_id(run), l->line,
             cli_color_pad(head, sizeof(head), color, word, word, 0), elapsed,
             text[0] && l->rc != CLI_EXIT_OK && l->rc != CLI_EXIT_INTERRUPTED ? ": " : "",
             l->rc != CLI_EXIT_OK && l->rc != CLI_EXIT_INTERRUPTED ? text : "");
    say(s, line);
}

/* The run of `l` has ended: its summary, its record, and the run freed. */
static void end_line(struct cli_session *s, struct each_line *l, bool interrupted)
{
    flow_run *run = l->run;
    flow_run_status status = flow_run_wait(run);

    l->rc = cli_run_exit_status(status, flow_run_error(run));
    if (interrupted && l->rc == CLI_EXIT_FAILED) {
        l->rc = CLI_EXIT_INTERRUPTED; /* it was failing when the signal came */
    }
    print_end(s, l, run, cli_now() - l->t0);
    l->record = json_pack("{s:I,s:s,s:s,s:O?,s:s?}", "line", (json_int_t)l->line, "id",
                          flow_run_id(run), "status", flow_run_status_name(status), "result",
                          status == FLOW_RUN_COMPLETED ? flow_run_result(run) : NULL, "error",
                          flow_run_error(run));
    if (!l->record) {
        cli_error("out of memory");
        exit(CLI_EXIT_FAILED);
    }
    flow_run_free(run);
    l->run = NULL;
}

/* Print the records of the lines from *next on that have ended, in order;
 * false when stdout could not be written. */
static bool print_ready(struct cli_each *b, bool as_json, size_t *next)
{
    bool ok = true;

    while (*next < b->count && b->lines[*next].record) {
        struct each_line *l = &b->lines[(*next)++];

        if (!(as_json ? cli_print_json_line(stdout, l->record)
                      : cli_print_json_line(stdout, json_object_get(l->record, "result")))) {
            ok = false;
        }
        json_decref(l->record);
        l->record = NULL;
    }
    return ok;
}

/* Start the run of every good line; returns how many are running. */
static size_t start_all(struct cli_each *b, struct cli_session *s, flow *f,
                        const flow_run_options *proto)
{
    size_t running = 0;
    size_t i;

    for (i = 0; i < b->count; i++) {
        struct each_line *l = &b->lines[i];
        flow_run_options ropts = *proto;
        flow_error err;

        if (!l->inputs) {
            continue;
        }
        if (cli_signal_received()) {
            line_not_run(l, CLI_EXIT_INTERRUPTED, "interrupted before it started");
        } else {
            memset(&err, 0, sizeof(err));
            ropts.inputs = l->inputs;
            l->t0 = cli_now();
            l->run = flow_run_start(s->engine, f, &ropts, &err);
            if (!l->run) {
                bad_line(b->path, l, 0, cli_start_error_status(err.code), "%s",
                         err.message[0] ? err.message : flow_strerror(err.code));
            } else {
                l->started = true;
                running++;
                if (s->verbose) {
                    char line[256];

                    snprintf(line, sizeof(line), "run %s (line %ld) started",
                             flow_run_id(l->run), l->line);
                    say(s, line);
                }
            }
        }
        json_decref(l->inputs);
        l->inputs = NULL;
    }
    return running;
}

/* "5 lines: 3 completed, 1 failed, 1 not started" on stderr. */
static void print_tally(struct cli_session *s, const struct cli_each *b, bool resumable)
{
    static const int order[] = {CLI_EXIT_OK, CLI_EXIT_FAILED, CLI_EXIT_PAUSED, CLI_EXIT_CANCELLED,
                                CLI_EXIT_INTERRUPTED};
    size_t counts[6] = {0}; /* by `order`, then the lines that did not start */
    char line[512];
    size_t n;
    size_t i;
    size_t k;

    for (i = 0; i < b->count; i++) {
        for (k = 0; k < 5 && b->lines[i].started && b->lines[i].rc != order[k]; k++) {
        }
        counts[b->lines[i].started ? k : 5]++;
    }
    n = (size_t)snprintf(line, sizeof(line), "%zu line%s:", b->count, b->count == 1 ? "" : "s");
    for (k = 0; k < 6 && n < sizeof(line); k++) {
        if (counts[k]) {
            n += (size_t)snprintf(line + n, sizeof(line) - n, "%s %zu %s",
                                  line[n - 1] != ':' ? "," : "", counts[k],
                                  k == 5 ? "not started" : cli_exit_word(order[k]));
        }
    }
    say(s, line);
    if (resumable && (counts[2] || counts[4])) {
        say(s, "resume each paused or interrupted run with: flow resume RUN");
    }
}

int cli_each_follow(struct cli_each *b, struct cli_session *s, flow *f,
                    const flow_run_options *proto)
{
    const struct timespec tick = {0, TICK_NS};
    size_t running;
    size_t next = 0;
    bool interrupted = false;
    bool output_ok = true;
    int worst = CLI_EXIT_OK;
    size_t i;

    cli_signals_install();
    running = start_all(b, s, f, proto);
    while (running > 0) {
        nanosleep(&tick, NULL);
        if (cli_signal_received() && !interrupted) {
            interrupted = true;
            for (i = 0; i < b->count; i++) {
                if (b->lines[i].run) {
                    flow_run_interrupt(b->lines[i].run);
                }
            }
        }
        for (i = 0; i < b->count; i++) {
            struct each_line *l = &b->lines[i];

            if (l->run && flow_run_get_status(l->run) >= FLOW_RUN_PAUSED) {
                end_line(s, l, interrupted);
                running--;
            }
        }
        output_ok &= print_ready(b, s->json, &next);
        if (s->prog) {
            progress_tick(s->prog);
        }
    }
    cli_signals_restore();
    output_ok &= print_ready(b, s->json, &next);
    if (!s->quiet) {
        print_tally(s, b, s->store && flow_store_is_durable(s->store));
    }
    if (s->prog) {
        progress_finish(s->prog);
    }
    for (i = 0; i < b->count; i++) {
        if (rank(b->lines[i].rc) > rank(worst)) {
            worst = b->lines[i].rc;
        }
    }
    if (!output_ok && worst == CLI_EXIT_OK) {
        worst = CLI_EXIT_FAILED;
    }
    return worst;
}
