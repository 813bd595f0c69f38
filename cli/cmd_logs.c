/* cmd_logs.c -- `flow logs RUN [TASK] [--follow]`: a run's journal in readable
 * form, or one task's records and what its commands wrote on stderr; with
 * --follow, then what is added to it, until the run ends.
 *
 * DESIGN: --follow polls the store every 200 ms through a journal reader,
 * which reads only the records added since its last call, and the run's
 * status before them: a run that had ended then has given its last records.
 * Another process may run the run, or nobody (paused, or its runner died):
 * the command keeps waiting for it to go on, saying so once on stderr.
 * Ctrl-C ends it quietly, exit 130. */
#include "cli.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "color.h"
#include "follow.h"

#define POLL_NS 200000000L /* 200 ms between looks at the store */

enum { OPT_FOLLOW = CLI_OPT_EXTRA };

static const struct cli_option options[] = {
    CLI_STORE_OPTIONS,
    {"follow", 'f', false, OPT_FOLLOW},
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow logs RUN [TASK] [--follow] [--json] [--store URL]\n"
    "\n"
    "Print the journal of RUN, one record a line, in the order things happened:\n"
    "  SEQ TIME TYPE [TASK#ACTIVATION (attempt N)] DETAILS\n"
    "An element of a foreach reads TASK[INDEX]#ACTIVATION ITEM. With TASK: only that\n"
    "task's records, and after each attempt of a command what it wrote on stderr\n"
    "(its last 4 KiB), and on stdout when that was not its output (it used\n"
    "$FLOW_OUTPUT, or it failed).\n"
    "\n"
    "Options:\n"
    "  -f, --follow     then print the records added, as they come, until the run\n"
    "                   ends (exit 0); a paused or stopped run is waited for (Ctrl-C\n"
    "                   ends it: exit 130)\n"
    "      --json       print the records as a JSON array instead: {seq, time, type,\n"
    "                   task, activation, attempt, ...the record's fields}; times\n"
    "                   are RFC 3339 strings; with --follow, one object a line\n"
    "      --store URL  the store (default: $FLOW_STORE, else the nearest\n"
    "                   .flow/flow.db here or above, else sqlite:.flow/flow.db)\n"
    "      --color WHEN auto, always or never\n"
    "  -h, --help       show this help\n"
    "\n"
    "Exit status: 0; 1 when the store cannot be read; 2 on a usage error, no such\n"
    "run, or no records of TASK in a run that has ended; 130 after Ctrl-C with\n"
    "--follow.\n";

/* What the records of the run have said so far: the foreach elements among
 * its activations, for their names. */
struct elements {
    long *index; /* by activation - 1: the position, or -1 */
    json_t **item;
    size_t count;
};

static void elements_free(struct elements *e)
{
    size_t i;

    for (i = 0; i < e->count; i++) {
        json_decref(e->item[i]);
    }
    free(e->index);
    free(e->item);
}

/* An act_created record of a foreach element says which it is. */
static void elements_note(struct elements *e, json_t *rec)
{
    json_int_t act = json_integer_value(json_object_get(rec, "activation"));
    const json_t *index = json_object_get(rec, "index");
    size_t i;

    if (strcmp(json_string_value(json_object_get(rec, "type")), "act_created") != 0 ||
        !json_is_integer(index) || !json_object_get(rec, "parent") || act < 1 ||
        act > (json_int_t)1 << 40) {
        return;
    }
    if ((size_t)act > e->count) {
        size_t count = (size_t)act * 2;

        e->index = cli_realloc(e->index, count * sizeof(*e->index));
        e->item = cli_realloc(e->item, count * sizeof(*e->item));
        for (i = e->count; i < count; i++) {
            e->index[i] = -1;
            e->item[i] = NULL;
        }
        e->count = count;
    }
    e->index[act - 1] = (long)json_integer_value(index);
    json_decref(e->item[act - 1]);
    e->item[act - 1] = json_incref(json_object_get(rec, "input"));
}

/* Details of a record worth a line: its payload minus what the line already
 * says, compact. */
static void print_details(json_t *rec)
{
    static const char *const shown[] = {"seq",     "time",   "type",   "task", "activation",
                                        "attempt", "stdout", "stderr", NULL};
    json_t *rest = json_copy(rec);
    char *text;
    size_t i;

    if (!rest) {
        return;
    }
    for (i = 0; shown[i]; i++) {
        json_object_del(rest, shown[i]);
    }
    if (json_object_size(rest)) {
        text = flow_json_dumps(rest, JSON_COMPACT);
        if (text) {
            printf(" %.400s%s", text, strlen(text) > 400 ? "..." : "");
            free(text);
        }
    }
    json_decref(rest);
}

/* A command's captured text, indented, one "| " line per line. */
static void print_text(const char *label, const char *text)
{
    const char *line = text;

    if (!text || !*text) {
        return;
    }
    printf("      %s:\n", label);
    while (*line) {
        size_t n = strcspn(line, "\n");

        printf("      | %.*s\n", (int)n, line);
        line += n;
        if (*line == '\n') {
            line++;
        }
    }
}

/* The colour of a record's type: a run_ended record's is its status's. */
static const char *type_color_word(json_t *rec, const char *type)
{
    if (strcmp(type, "run_ended") == 0) {
        return json_string_value(json_object_get(rec, "status"));
    }
    return type;
}

static void print_record(json_t *rec, bool with_text, const struct elements *e, bool color)
{
    char when[32];
    char word[64];
    const char *task = json_string_value(json_object_get(rec, "task"));
    const char *type = json_string_value(json_object_get(rec, "type"));
    json_int_t act = json_integer_value(json_object_get(rec, "activation"));
    json_int_t attempt = json_integer_value(json_object_get(rec, "attempt"));

    printf("%5lld %s %s", (long long)json_integer_value(json_object_get(rec, "seq")),
           cli_short_time(json_object_get(rec, "time"), when, sizeof(when)),
           cli_color_pad(word, sizeof(word), color, type_color_word(rec, type), type, 13));
    if (task && act >= 1 && (size_t)act <= e->count && e->index[act - 1] >= 0) {
        char item[4 * CLI_ITEM_CHARS];

        printf(" %s[%ld]#%lld %s", task, e->index[act - 1], (long long)act,
               cli_item_text(e->item[act - 1], item, sizeof(item)));
    } else if (task) {
        printf(" %s#%lld", task, (long long)act);
    }
    if (attempt) {
        printf(" (attempt %lld)", (long long)attempt);
    }
    print_details(rec);
    fputc('\n', stdout);
    if (with_text) {
        print_text("stdout", json_string_value(json_object_get(rec, "stdout")));
        print_text("stderr", json_string_value(json_object_get(rec, "stderr")));
    }
}

static bool is_task(json_t *rec, const char *task)
{
    const char *t = json_string_value(json_object_get(rec, "task"));

    return !task || (t && strcmp(t, task) == 0);
}

/* Print `recs` (those of `task`, or all), one a line, or one JSON object a
 * line when following with --json. Returns how many were of `task`. */
static size_t print_batch(json_t *recs, const char *task, struct elements *e, bool json_lines,
                          bool color)
{
    size_t shown = 0;
    size_t i;
    json_t *rec;

    json_array_foreach(recs, i, rec)
    {
        elements_note(e, rec);
        if (!is_task(rec, task)) {
            continue;
        }
        shown++;
        if (json_lines) {
            char *text = flow_json_dumps(rec, JSON_COMPACT);

            if (text) {
                puts(text);
            }
            free(text);
        } else {
            print_record(rec, task != NULL, e, color);
        }
    }
    return shown;
}

/* ---- --follow ------------------------------------------------------------ */

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

static bool has_ended(const char *status)
{
    return status && (strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
                      strcmp(status, "cancelled") == 0);
}

/* Has the reader of stdout gone (`flow logs R -f | head -1`)? A write would
 * say so too, but a run that waits writes nothing for hours. */
static bool stdout_gone(void)
{
    struct pollfd p = {STDOUT_FILENO, 0, 0};

    return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP | POLLNVAL));
}

/* Say once on stderr what a run nobody runs waits for (again after it ran). */
static void note_waiting(const char *run, const char *status, const char **noted)
{
    if (!status || (*noted && strcmp(*noted, status) == 0)) {
        return;
    }
    if (strcmp(status, "paused") == 0) {
        fprintf(stderr, "run %s is paused; waiting for it to go on ('flow resume %s'; Ctrl-C to "
                        "stop following)\n",
                run, run);
        *noted = "paused";
    } else if (strcmp(status, "stopped") == 0) {
        fprintf(stderr, "run %s stopped without ending (its runner died); waiting for 'flow "
                        "resume %s' (Ctrl-C to stop following)\n",
                run, run);
        *noted = "stopped";
    } else {
        *noted = NULL;
    }
}

static int follow_logs(flow_store *st, const char *run, const char *task, bool as_json)
{
    struct elements e = {0};
    struct sigaction sa;
    struct sigaction old;
    flow_journal_reader *reader;
    flow_error err;
    const char *noted = NULL;
    bool color = !as_json && cli_color_on(STDOUT_FILENO);
    size_t shown = 0;
    int rc = CLI_EXIT_OK;

    memset(&err, 0, sizeof(err));
    reader = flow_journal_reader_new(st, run, &err);
    if (!reader) {
        cli_error("%s", err.message);
        return cli_store_error_status(err.code);
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    for (;;) {
        const struct timespec tick = {0, POLL_NS};
        json_t *recs = flow_journal_reader_next(reader, &err);
        const char *status = flow_journal_reader_status(reader);
        bool ended = has_ended(status);

        if (!recs) {
            cli_error("%s", err.message);
            rc = cli_store_error_status(err.code);
            break;
        }
        shown += print_batch(recs, task, &e, as_json, color);
        json_decref(recs);
        if (!cli_flush(stdout)) {
            rc = CLI_EXIT_FAILED;
            break;
        }
        if (ferror(stdout) || stdout_gone()) {
            break; /* its reader went away: nobody to follow it for */
        }
        if (ended) {
            if (task && !shown) {
                cli_error("run '%s' has no records of task '%s'", run, task);
                rc = CLI_EXIT_USAGE;
            }
            break;
        }
        note_waiting(run, status, &noted);
        if (!interrupted) {
            nanosleep(&tick, NULL);
        }
        if (interrupted) {
            rc = CLI_EXIT_INTERRUPTED;
            break;
        }
    }
    sigaction(SIGINT, &old, NULL);
    flow_journal_reader_free(reader);
    elements_free(&e);
    return rc;
}

static int follow_opt(struct cli_args *a, int id, void *udata)
{
    (void)a;
    if (id == OPT_FOLLOW) {
        *(bool *)udata = true;
    }
    return -1;
}

static int logs_main(int argc, char **argv)
{
    struct cli_store_args sa = {0};
    bool follow = false;
    const char *task = NULL;
    const char *run;
    struct elements e = {0};
    flow_store *st;
    flow_error err;
    json_t *recs;
    int rc;

    rc = cli_parse_store_args(&sa, "logs", argc, argv, options, help, follow_opt, &follow);
    if (rc >= 0) {
        return rc;
    }
    if (sa.args.npos < 1) {
        return cli_usage_error("logs", "'logs' needs a RUN id ('flow status' lists them)");
    }
    if (sa.args.npos > 2) {
        return cli_usage_error("logs", "unexpected argument '%s' for 'logs'", cli_pos(&sa.args, 2));
    }
    run = cli_pos(&sa.args, 0);
    task = sa.args.npos == 2 ? cli_pos(&sa.args, 1) : NULL;
    st = cli_open_existing_store(sa.store_url, &rc);
    if (!st) {
        return rc;
    }
    if (follow) {
        rc = follow_logs(st, run, task, sa.json);
        flow_store_close(st);
        return rc;
    }
    memset(&err, 0, sizeof(err));
    recs = flow_store_journal(st, run, &err);
    flow_store_close(st);
    if (!recs) {
        cli_error("%s", err.message);
        return cli_store_error_status(err.code);
    }
    if (task) {
        json_t *only = json_array();
        json_t *rec;
        size_t i;

        json_array_foreach(recs, i, rec)
        {
            if (is_task(rec, task)) {
                json_array_append(only, rec);
            }
        }
        if (json_array_size(only) == 0) {
            cli_error("run '%s' has no records of task '%s'", run, task);
            json_decref(only);
            json_decref(recs);
            return CLI_EXIT_USAGE;
        }
        if (sa.json) {
            json_decref(recs);
            recs = only;
        } else {
            json_decref(only);
        }
    }
    if (sa.json) {
        rc = cli_print_json(stdout, recs) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    } else {
        print_batch(recs, task, &e, false, cli_color_on(STDOUT_FILENO));
        rc = cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    }
    elements_free(&e);
    json_decref(recs);
    return rc;
}

const struct cli_command cli_cmd_logs = {
    "logs",
    "print a run's journal, or one task's records and stderr; --follow tails it",
    help,
    logs_main,
};
