/* cmd_control.c -- `flow pause RUN` and `flow cancel RUN [--reason TEXT]`:
 * leave a request in the store for the process that runs RUN, which acts on
 * it within a fraction of a second. */
#include "cli.h"

#include <string.h>

#include "follow.h"

enum { OPT_REASON = CLI_OPT_EXTRA };

static const struct cli_option options[] = {
    CLI_STORE_OPTIONS,
    {"reason", 0, true, OPT_REASON},
    {NULL, 0, false, 0},
};

static int reason_opt(struct cli_args *a, int id, void *udata)
{
    if (id == OPT_REASON) {
        *(const char **)udata = a->value;
    }
    return -1;
}

static const char pause_help[] =
    "usage: flow pause RUN [--reason TEXT] [--json] [--store URL]\n"
    "\n"
    "Ask the process running RUN to pause it: nothing new starts, running tasks\n"
    "finish, then the run is 'paused' and its 'flow run' exits 3. Continue it with\n"
    "'flow resume RUN'.\n"
    "\n"
    "Options:\n"
    "      --reason TEXT  why (shown by flow status)\n"
    "      --json         print {run, requested, status} on stdout instead of the\n"
    "                     line on stderr: status is the run's now (\"running\" while\n"
    "                     its runner has yet to act)\n"
    "      --store URL    the store (default: $FLOW_STORE, else the nearest\n"
    "                     .flow/flow.db here or above)\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0 requested, 1 the run has ended or the store cannot be written,\n"
    "2 usage error.\n";

static const char cancel_help[] =
    "usage: flow cancel RUN [--reason TEXT] [--json] [--store URL]\n"
    "\n"
    "Ask the process running RUN to cancel it: running tasks are terminated,\n"
    "nothing more runs, the run ends 'cancelled' with the reason and its 'flow run'\n"
    "exits 4.\n"
    "\n"
    "Options:\n"
    "      --reason TEXT  why (the run's error)\n"
    "      --json         print {run, requested, status} on stdout instead of the\n"
    "                     line on stderr: status is the run's now (\"running\" while\n"
    "                     its runner has yet to act)\n"
    "      --store URL    the store (default: $FLOW_STORE, else the nearest\n"
    "                     .flow/flow.db here or above)\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0 requested, 1 the run has ended or the store cannot be written,\n"
    "2 usage error.\n";

static int request_main(const char *what, const char *help, int argc, char **argv)
{
    struct cli_store_args sa = {0};
    const char *reason = NULL;
    const char *run_id = NULL;
    flow_store *st;
    flow_error err;
    int rc;

    rc = cli_parse_store_args(&sa, what, argc, argv, options, help, reason_opt, &reason);
    if (rc >= 0) {
        return rc;
    }
    st = cli_store_for_run(&sa, &run_id, &rc);
    if (!st) {
        return rc;
    }
    memset(&err, 0, sizeof(err));
    if (flow_store_request(st, run_id, what, reason, &err) != FLOW_OK) {
        cli_error("%s", err.message);
        rc = cli_store_error_status(err.code);
    } else {
        json_t *run = flow_store_run(st, run_id, NULL);
        const char *now = json_string_value(json_object_get(run, "status"));
        bool done = now && strcmp(now, "running") != 0;

        /* A run nobody was running is paused or cancelled at once. */
        rc = CLI_EXIT_OK;
        if (sa.json) {
            json_t *out = json_pack("{s:s,s:s,s:s?}", "run", run_id, "requested", what, "status",
                                    now);

            rc = cli_print_json(stdout, out) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
            json_decref(out);
        } else if (done) {
            fprintf(stderr, "run %s %s (no process was running it)\n", run_id, now);
        } else {
            fprintf(stderr, "%s requested for run %s\n", what, run_id);
        }
        json_decref(run);
    }
    flow_store_close(st);
    return rc;
}

static int pause_main(int argc, char **argv)
{
    return request_main("pause", pause_help, argc, argv);
}

static int cancel_main(int argc, char **argv)
{
    return request_main("cancel", cancel_help, argc, argv);
}

const struct cli_command cli_cmd_pause = {
    "pause",
    "ask the process running a run to pause it",
    pause_help,
    pause_main,
};

const struct cli_command cli_cmd_cancel = {
    "cancel",
    "ask the process running a run to cancel it",
    cancel_help,
    cancel_main,
};
