/* cmd_checkpoints.c -- `flow checkpoints RUN`: the checkpoints of a run, for
 * `flow resume RUN --from-checkpoint ID`. */
#include "cli.h"

#include <string.h>

#include "follow.h"

static const struct cli_option options[] = {
    CLI_STORE_OPTIONS,
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow checkpoints RUN [--json] [--store URL]\n"
    "\n"
    "List the checkpoints of RUN: taken after a task that asked for one, every\n"
    "'checkpoint_every', and when the run paused. 'flow resume RUN\n"
    "--from-checkpoint ID' starts a new run from one (time travel).\n"
    "\n"
    "Options:\n"
    "      --json       print an array of {id, task, created_at, reason}\n"
    "      --store URL  the store (default: $FLOW_STORE, else the nearest\n"
    "                   .flow/flow.db here or above)\n"
    "  -h, --help       show this help\n";

static int checkpoints_main(int argc, char **argv)
{
    struct cli_store_args sa = {0};
    const char *run_id = NULL;
    flow_store *st;
    flow_error err;
    json_t *list;
    json_t *c;
    size_t i;
    int rc;

    rc = cli_parse_store_args(&sa, "checkpoints", argc, argv, options, help, NULL, NULL);
    if (rc >= 0) {
        return rc;
    }
    st = cli_store_for_run(&sa, &run_id, &rc);
    if (!st) {
        return rc;
    }
    memset(&err, 0, sizeof(err));
    list = flow_store_checkpoints(st, run_id, &err);
    flow_store_close(st);
    if (!list) {
        cli_error("%s", err.message);
        return cli_store_error_status(err.code);
    }
    if (sa.json) {
        rc = cli_print_json(stdout, list) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
        json_decref(list);
        return rc;
    }
    if (json_array_size(list) == 0) {
        printf("run %s has no checkpoints\n", run_id);
    } else {
        printf("%-6s %-19s  %-12s %s\n", "ID", "CREATED", "REASON", "TASK");
    }
    json_array_foreach(list, i, c)
    {
        char when[32];
        const char *task = json_string_value(json_object_get(c, "task"));

        printf("%-6s %-19s  %-12s %s\n", json_string_value(json_object_get(c, "id")),
               cli_short_time(json_object_get(c, "created_at"), when, sizeof(when)),
               json_string_value(json_object_get(c, "reason")), task ? task : "-");
    }
    json_decref(list);
    return cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

const struct cli_command cli_cmd_checkpoints = {
    "checkpoints",
    "list a run's checkpoints",
    help,
    checkpoints_main,
};
