/* cmd_logs.c -- `flow logs RUN [TASK]`: a run's journal in readable form, or
 * one task's records and what its commands wrote on stderr. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include "follow.h"

static const struct cli_option options[] = {
    CLI_STORE_OPTIONS,
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow logs RUN [TASK] [--json] [--store URL]\n"
    "\n"
    "Print the journal of RUN, one record a line, in the order things happened:\n"
    "  SEQ TIME TYPE [TASK#ACTIVATION (attempt N)] DETAILS\n"
    "With TASK: only that task's records, and after each attempt of a command what\n"
    "it wrote on stderr (its last 4 KiB), and on stdout when that was not its\n"
    "output (it used $FLOW_OUTPUT, or it failed).\n"
    "\n"
    "Options:\n"
    "      --json       print the records as a JSON array instead: {seq, time, type,\n"
    "                   task, activation, attempt, ...the record's fields}; times\n"
    "                   are RFC 3339 strings\n"
    "      --store URL  the store (default: $FLOW_STORE, else sqlite:.flow/flow.db)\n"
    "  -h, --help       show this help\n";

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

static void print_record(json_t *rec, bool with_text)
{
    char when[32];
    const char *task = json_string_value(json_object_get(rec, "task"));
    json_int_t attempt = json_integer_value(json_object_get(rec, "attempt"));

    printf("%5lld %s %-13s", (long long)json_integer_value(json_object_get(rec, "seq")),
           cli_short_time(json_object_get(rec, "time"), when, sizeof(when)),
           json_string_value(json_object_get(rec, "type")));
    if (task) {
        printf(" %s#%lld", task, (long long)json_integer_value(json_object_get(rec, "activation")));
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

static int logs_main(int argc, char **argv)
{
    struct cli_store_args sa = {0};
    const char *task = NULL;
    flow_store *st;
    flow_error err;
    json_t *recs;
    json_t *rec;
    size_t i;
    int rc;

    rc = cli_parse_store_args(&sa, "logs", argc, argv, options, help, NULL, NULL);
    if (rc >= 0) {
        return rc;
    }
    if (sa.args.npos < 1) {
        return cli_usage_error("logs", "'logs' needs a RUN id ('flow status' lists them)");
    }
    if (sa.args.npos > 2) {
        return cli_usage_error("logs", "unexpected argument '%s' for 'logs'", cli_pos(&sa.args, 2));
    }
    task = sa.args.npos == 2 ? cli_pos(&sa.args, 1) : NULL;
    st = cli_open_existing_store(sa.store_url, &rc);
    if (!st) {
        return rc;
    }
    memset(&err, 0, sizeof(err));
    recs = flow_store_journal(st, cli_pos(&sa.args, 0), &err);
    flow_store_close(st);
    if (!recs) {
        cli_error("%s", err.message);
        return cli_store_error_status(err.code);
    }
    if (task) {
        json_t *only = json_array();

        json_array_foreach(recs, i, rec)
        {
            const char *t = json_string_value(json_object_get(rec, "task"));

            if (t && strcmp(t, task) == 0) {
                json_array_append(only, rec);
            }
        }
        json_decref(recs);
        recs = only;
        if (json_array_size(recs) == 0) {
            cli_error("run '%s' has no records of task '%s'", cli_pos(&sa.args, 0), task);
            json_decref(recs);
            return CLI_EXIT_USAGE;
        }
    }
    if (sa.json) {
        rc = cli_print_json(stdout, recs) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    } else {
        json_array_foreach(recs, i, rec)
        {
            print_record(rec, task != NULL);
        }
        rc = cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    }
    json_decref(recs);
    return rc;
}

const struct cli_command cli_cmd_logs = {
    "logs",
    "print a run's journal, or one task's records and stderr",
    help,
    logs_main,
};
