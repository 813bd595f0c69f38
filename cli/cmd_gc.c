/* cmd_gc.c -- `flow gc [--older-than DURATION]`: delete runs that ended long
 * enough ago, with their journals. Runs that have not ended are kept. */
#include "cli.h"

#include <string.h>

#include "follow.h"

enum { OPT_HELP = 1, OPT_OLDER, OPT_STORE };

static const struct cli_option options[] = {
    {"help", 'h', false, OPT_HELP},
    {"older-than", 0, true, OPT_OLDER},
    {"store", 0, true, OPT_STORE},
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow gc [--older-than DURATION] [--store URL]\n"
    "\n"
    "Delete the runs that ended (completed, failed or cancelled) more than DURATION\n"
    "ago, with their journals and checkpoints. Runs that are running, paused or\n"
    "stopped by a crash are never deleted.\n"
    "\n"
    "Options:\n"
    "      --older-than DURATION  30s, 12h, 7d, or 0 for every ended run\n"
    "                             (default: 7d)\n"
    "      --store URL            the store (default: $FLOW_STORE, else\n"
    "                             sqlite:.flow/flow.db)\n"
    "  -h, --help                 show this help\n";

static int gc_main(int argc, char **argv)
{
    struct cli_args a;
    const char *store_url = NULL;
    double older = 7 * 86400.0;
    flow_store *st;
    flow_error err;
    size_t deleted = 0;
    int id;
    int rc;

    cli_args_init(&a, "gc", argc, argv, options);
    while ((id = cli_next_opt(&a)) > 0) {
        if (id == OPT_HELP) {
            return cli_print_help(help);
        }
        if (id == OPT_OLDER) {
            if (flow_parse_duration(a.value, &older) != FLOW_OK || older < 0) {
                return cli_usage_error("gc", "option '--older-than' of 'gc' needs a duration "
                                             "like 12h or 7d, not '%s'", a.value);
            }
        } else if (id == OPT_STORE) {
            store_url = a.value;
        }
    }
    if (id < 0) {
        return CLI_EXIT_USAGE;
    }
    if (a.npos > 0) {
        return cli_usage_error("gc", "unexpected argument '%s' for 'gc'", cli_pos(&a, 0));
    }
    st = cli_open_store(store_url);
    if (!st) {
        return CLI_EXIT_FAILED;
    }
    memset(&err, 0, sizeof(err));
    rc = CLI_EXIT_OK;
    if (flow_store_gc(st, older, &deleted, &err) != FLOW_OK) {
        cli_error("%s", err.message);
        rc = CLI_EXIT_FAILED;
    }
    fprintf(stderr, "deleted %zu run%s\n", deleted, deleted == 1 ? "" : "s");
    flow_store_close(st);
    return rc;
}

const struct cli_command cli_cmd_gc = {
    "gc",
    "delete runs that ended long ago",
    help,
    gc_main,
};
