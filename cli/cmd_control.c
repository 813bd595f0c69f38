/* cmd_control.c -- `flow pause RUN` and `flow cancel RUN [--reason TEXT]`:
 * leave a request in the store for the process that runs RUN, which acts on
 * it within a fraction of a second. */
#include "cli.h"

#include <string.h>

#include "follow.h"

enum { OPT_HELP = 1, OPT_REASON, OPT_STORE };

static const struct cli_option options[] = {
    {"help", 'h', false, OPT_HELP},
    {"reason", 0, true, OPT_REASON},
    {"store", 0, true, OPT_STORE},
    {NULL, 0, false, 0},
};

static const char pause_help[] =
    "usage: flow pause RUN [--reason TEXT] [--store URL]\n"
    "\n"
    "Ask the process running RUN to pause it: nothing new starts, running tasks\n"
    "finish, then the run is 'paused' and its 'flow run' exits 3. Continue it with\n"
    "'flow resume RUN'.\n"
    "\n"
    "Options:\n"
    "      --reason TEXT  why (shown by flow status)\n"
    "      --store URL    the store (default: $FLOW_STORE, else sqlite:.flow/flow.db)\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0 requested, 1 the run has ended or the store cannot be written,\n"
    "2 usage error.\n";

static const char cancel_help[] =
    "usage: flow cancel RUN [--reason TEXT] [--store URL]\n"
    "\n"
    "Ask the process running RUN to cancel it: running tasks are terminated,\n"
    "nothing more runs, the run ends 'cancelled' with the reason and its 'flow run'\n"
    "exits 4.\n"
    "\n"
    "Options:\n"
    "      --reason TEXT  why (the run's error)\n"
    "      --store URL    the store (default: $FLOW_STORE, else sqlite:.flow/flow.db)\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0 requested, 1 the run has ended or the store cannot be written,\n"
    "2 usage error.\n";

static int request_main(const char *what, const char *help, int argc, char **argv)
{
    struct cli_args a;
    const char *store_url = NULL;
    const char *reason = NULL;
    const char *run_id = NULL;
    flow_store *st;
    flow_error err;
    int id;
    int rc;

    cli_args_init(&a, what, argc, argv, options);
    while ((id = cli_next_opt(&a)) > 0) {
        if (id == OPT_HELP) {
            return cli_print_help(help);
        }
        if (id == OPT_REASON) {
            reason = a.value;
        } else if (id == OPT_STORE) {
            store_url = a.value;
        }
    }
    if (id < 0) {
        return CLI_EXIT_USAGE;
    }
    rc = cli_one_run(&a, &run_id);
    if (rc >= 0) {
        return rc;
    }
    st = cli_open_store(store_url);
    if (!st) {
        return CLI_EXIT_FAILED;
    }
    memset(&err, 0, sizeof(err));
    if (flow_store_request(st, run_id, what, reason, &err) != FLOW_OK) {
        cli_error("%s", err.message);
        rc = CLI_EXIT_FAILED;
    } else {
        fprintf(stderr, "%s requested for run %s\n", what, run_id);
        rc = CLI_EXIT_OK;
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
