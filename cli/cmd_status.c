/* cmd_status.c -- `flow status [RUN]`: the runs in the store, or one run with
 * each of its task activations, read from the journal. */
#include "cli.h"

#include <string.h>

#include "follow.h"

static const struct cli_option options[] = {
    CLI_STORE_OPTIONS,
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow status [RUN] [--json] [--store URL]\n"
    "\n"
    "Without RUN: every run in the store, oldest first, with its flow, status and\n"
    "times. With RUN: the run, its flow's name and version, who runs it, its result\n"
    "or error, and each task activation with its status, attempts, start and end\n"
    "times and error. A run whose process died without ending it (a crash, kill -9)\n"
    "is 'stopped' in both, and in --json: 'flow resume RUN' continues it.\n"
    "\n"
    "Options:\n"
    "      --json       print JSON: an array of runs {id, flow, version, status,\n"
    "                   created_at, ended_at, source, runner}, or one run {id, flow,\n"
    "                   version, status, result, error, source, runner, state,\n"
    "                   tasks: [{task, activation, status, attempts, started_at,\n"
    "                   ended_at, error, output}]}; runner (\"pid@host\", or null\n"
    "                   when it stopped) only for runs running or stopped\n"
    "      --store URL  the store (default: $FLOW_STORE, else sqlite:.flow/flow.db)\n"
    "  -h, --help       show this help\n"
    "\n"
    "Exit status: 0, or 1 when the store or the run cannot be read.\n";

/* For a run running or stopped: who runs it, or that nobody does. */
static void print_runner(const json_t *run)
{
    const json_t *runner = json_object_get(run, "runner");
    const char *holder = json_string_value(runner);
    const char *at = holder ? strchr(holder, '@') : NULL;

    if (!runner) {
        return;
    }
    if (at) {
        printf("runner: pid %.*s on host %s\n", (int)(at - holder), holder, at + 1);
    } else if (holder) {
        printf("runner: %s\n", holder);
    } else {
        printf("runner: none -- it stopped without ending (a crash or a kill); 'flow resume %s' "
               "continues it\n",
               json_string_value(json_object_get(run, "id")));
    }
}

static int list_runs(flow_store *st, bool as_json)
{
    flow_error err;
    json_t *runs;
    size_t i;
    json_t *r;

    memset(&err, 0, sizeof(err));
    runs = flow_store_runs(st, &err);
    if (!runs) {
        cli_error("%s", err.message);
        return cli_store_error_status(err.code);
    }
    if (as_json) {
        bool ok = cli_print_json(stdout, runs);

        json_decref(runs);
        return ok ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    }
    if (json_array_size(runs) == 0) {
        printf("no runs in %s\n", flow_store_url(st));
    } else {
        printf("%-34s %-20s %-10s %-19s  %s\n", "RUN", "FLOW", "STATUS", "CREATED", "ENDED");
    }
    json_array_foreach(runs, i, r)
    {
        char created[32];
        char ended[32];
        const char *name = json_string_value(json_object_get(r, "flow"));

        const char *status = json_string_value(json_object_get(r, "status"));

        printf("%-34s %-20s %-10s %-19s  %s\n", json_string_value(json_object_get(r, "id")),
               name ? name : "-", status,
               cli_short_time(json_object_get(r, "created_at"), created, sizeof(created)),
               cli_short_time(json_object_get(r, "ended_at"), ended, sizeof(ended)));
    }
    json_decref(runs);
    return cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

static int show_run(flow_store *st, const char *id, bool as_json)
{
    flow_error err;
    json_t *run;
    json_t *t;
    size_t i;
    const char *error;
    const char *version;
    bool ok;

    memset(&err, 0, sizeof(err));
    run = flow_store_run(st, id, &err);
    if (!run) {
        cli_error("%s", err.message);
        return cli_store_error_status(err.code);
    }
    if (as_json) {
        ok = cli_print_json(stdout, run);
        json_decref(run);
        return ok ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    }
    error = json_string_value(json_object_get(run, "error"));
    version = json_string_value(json_object_get(run, "version"));
    printf("run %s: %s (flow %s%s%s)\n", id, json_string_value(json_object_get(run, "status")),
           json_string_value(json_object_get(run, "flow")), version ? ", version " : "",
           version ? version : "");
    print_runner(run);
    if (error) {
        bool paused = strcmp(json_string_value(json_object_get(run, "status")), "paused") == 0;

        printf("%s: %s\n", paused ? "paused" : "error", error);
    }
    printf("%6s  %-24s %-10s %-8s %-19s  %-19s  %s\n", "ACT", "TASK", "STATUS", "ATTEMPTS",
           "STARTED", "ENDED", "ERROR");
    json_array_foreach(json_object_get(run, "tasks"), i, t)
    {
        char started[32];
        char ended[32];
        const char *e = json_string_value(json_object_get(t, "error"));

        printf("%6lld  %-24s %-10s %-8lld %-19s  %-19s  %s\n",
               (long long)json_integer_value(json_object_get(t, "activation")),
               json_string_value(json_object_get(t, "task")),
               json_string_value(json_object_get(t, "status")),
               (long long)json_integer_value(json_object_get(t, "attempts")),
               cli_short_time(json_object_get(t, "started_at"), started, sizeof(started)),
               cli_short_time(json_object_get(t, "ended_at"), ended, sizeof(ended)), e ? e : "");
    }
    if (!strcmp(json_string_value(json_object_get(run, "status")), "completed")) {
        fputs("result: ", stdout);
        cli_print_json(stdout, json_object_get(run, "result"));
    }
    json_decref(run);
    return cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

static int status_main(int argc, char **argv)
{
    struct cli_store_args sa = {0};
    flow_store *st;
    int rc;

    rc = cli_parse_store_args(&sa, "status", argc, argv, options, help, NULL, NULL);
    if (rc >= 0) {
        return rc;
    }
    if (sa.args.npos > 1) {
        return cli_usage_error("status", "unexpected argument '%s' for 'status'",
                               cli_pos(&sa.args, 1));
    }
    if (sa.args.npos == 0) {
        /* No store yet is no runs yet (and it is not created for that). */
        flow_error err;

        memset(&err, 0, sizeof(err));
        st = flow_store_open_flags(sa.store_url, FLOW_STORE_NOCREATE, &err);
        if (!st && err.code == FLOW_ENOTFOUND) {
            if (sa.json) {
                json_t *none = json_array();
                bool ok = cli_print_json(stdout, none);

                json_decref(none);
                return ok ? CLI_EXIT_OK : CLI_EXIT_FAILED;
            }
            printf("no runs (there is no store at %s yet)\n",
                   sa.store_url ? sa.store_url : flow_store_default_url());
            return CLI_EXIT_OK;
        }
        if (st) {
            rc = list_runs(st, sa.json);
            flow_store_close(st);
            return rc;
        }
    }
    st = cli_open_existing_store(sa.store_url, &rc);
    if (!st) {
        return rc;
    }
    rc = show_run(st, cli_pos(&sa.args, 0), sa.json);
    flow_store_close(st);
    return rc;
}

const struct cli_command cli_cmd_status = {
    "status",
    "list runs, or show one run and its task activations",
    help,
    status_main,
};
