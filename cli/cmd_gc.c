/* cmd_gc.c -- `flow gc [--older-than DURATION]`: delete runs that ended long
 * enough ago, with their journals. Runs that have not ended are kept. */
#include "cli.h"

#include <string.h>

#include "follow.h"

enum { OPT_OLDER = CLI_OPT_EXTRA };

static const struct cli_option options[] = {
    CLI_STORE_OPTIONS,
    {"older-than", 0, true, OPT_OLDER},
    {NULL, 0, false, 0},
};

static int older_opt(struct cli_args *a, int id, void *udata)
{
    if (id == OPT_OLDER &&
        (flow_parse_duration(a->value, (double *)udata) != FLOW_OK || *(double *)udata < 0)) {
        return cli_usage_error("gc", "option '--older-than' of 'gc' needs a duration like 12h "
                                     "or 7d, not '%s'",
                               a->value);
    }
    return -1;
}

static const char help[] =
    "usage: flow gc [--older-than DURATION] [--json] [--store URL]\n"
    "\n"
    "Delete the runs that ended (completed, failed or cancelled) more than DURATION\n"
    "ago, with their journals and checkpoints. Runs that are running, paused or\n"
    "stopped by a crash are never deleted.\n"
    "\n"
    "Options:\n"
    "      --older-than DURATION  30s, 12h, 7d, or 0 for every ended run\n"
    "                             (default: 7d)\n"
    "      --json                 print {\"deleted\": N, \"older_than\": SECONDS} on\n"
    "                             stdout instead of the line on stderr\n"
    "      --store URL            the store (default: $FLOW_STORE, else the\n"
    "                             nearest .flow/flow.db here or above)\n"
    "  -h, --help                 show this help\n";

static int gc_main(int argc, char **argv)
{
    struct cli_store_args sa = {0};
    double older = 7 * 86400.0;
    flow_store *st;
    flow_error err;
    size_t deleted = 0;
    int rc;

    rc = cli_parse_store_args(&sa, "gc", argc, argv, options, help, older_opt, &older);
    if (rc >= 0) {
        return rc;
    }
    if (sa.args.npos > 0) {
        return cli_usage_error("gc", "unexpected argument '%s' for 'gc'", cli_pos(&sa.args, 0));
    }
    st = cli_open_existing_store(sa.store_url, &rc);
    if (!st) {
        return rc;
    }
    memset(&err, 0, sizeof(err));
    rc = CLI_EXIT_OK;
    if (flow_store_gc(st, older, &deleted, &err) != FLOW_OK) {
        cli_error("%s", err.message);
        rc = cli_store_error_status(err.code);
    }
    flow_store_close(st);
    if (sa.json && rc == CLI_EXIT_OK) {
        json_t *out = json_pack("{s:I,s:f}", "deleted", (json_int_t)deleted, "older_than", older);

        rc = cli_print_json(stdout, out) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
        json_decref(out);
    } else if (!sa.json || deleted) {
        fprintf(stderr, "deleted %zu run%s\n", deleted, deleted == 1 ? "" : "s");
    }
    return rc;
}

const struct cli_command cli_cmd_gc = {
    "gc",
    "delete runs that ended long ago",
    help,
    gc_main,
};
