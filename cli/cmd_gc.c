/* cmd_gc.c -- `flow gc [--older-than DURATION] [--clear-cache]`: delete runs
 * that ended long enough ago, with their journals, and the cache entries
 * that have expired (every one with --clear-cache). Runs that have not
 * ended are kept. */
#include "cli.h"

#include <string.h>

#include "follow.h"

enum { OPT_OLDER = CLI_OPT_EXTRA, OPT_CLEAR_CACHE };

static const struct cli_option options[] = {
    CLI_STORE_OPTIONS,
    {"older-than", 0, true, OPT_OLDER},
    {"clear-cache", 0, false, OPT_CLEAR_CACHE},
    {NULL, 0, false, 0},
};

struct gc_args {
    double older;
    bool clear_cache;
};

static int gc_opt(struct cli_args *a, int id, void *udata)
{
    struct gc_args *g = udata;

    if (id == OPT_CLEAR_CACHE) {
        g->clear_cache = true;
    } else if (id == OPT_OLDER &&
               (flow_parse_duration(a->value, &g->older) != FLOW_OK || g->older < 0)) {
        return cli_usage_error("gc", "option '--older-than' of 'gc' needs a duration like 12h "
                                     "or 7d, not '%s'",
                               a->value);
    }
    return -1;
}

static const char help[] =
    "usage: flow gc [--older-than DURATION] [--clear-cache] [--json] [--store URL]\n"
    "\n"
    "Delete the runs that ended (completed, failed or cancelled) more than DURATION\n"
    "ago, with their journals and checkpoints, and the cached outputs of tasks\n"
    "('cache:') whose ttl has run out. Runs that are running, paused or stopped by\n"
    "a crash are never deleted.\n"
    "\n"
    "Options:\n"
    "      --older-than DURATION  30s, 12h, 7d, or 0 for every ended run\n"
    "                             (default: 7d)\n"
    "      --clear-cache          remove every cached output, expired or not\n"
    "      --json                 print {\"deleted\": N, \"older_than\": SECONDS,\n"
    "                             \"cache_removed\": M} on stdout instead of the\n"
    "                             lines on stderr\n"
    "      --store URL            the store (default: $FLOW_STORE, else the\n"
    "                             nearest .flow/flow.db here or above)\n"
    "  -h, --help                 show this help\n";

static int gc_main(int argc, char **argv)
{
    struct cli_store_args sa = {0};
    struct gc_args g = {7 * 86400.0, false};
    flow_store *st;
    flow_error err;
    size_t deleted = 0, removed = 0;
    int rc;

    rc = cli_parse_store_args(&sa, "gc", argc, argv, options, help, gc_opt, &g);
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
    if (flow_store_gc(st, g.older, &deleted, &err) != FLOW_OK ||
        flow_store_gc_cache(st, g.clear_cache, &removed, &err) != FLOW_OK) {
        cli_error("%s", err.message);
        rc = cli_store_error_status(err.code);
    }
    flow_store_close(st);
    if (sa.json && rc == CLI_EXIT_OK) {
        json_t *out = json_pack("{s:I,s:f,s:I}", "deleted", (json_int_t)deleted, "older_than",
                                g.older, "cache_removed", (json_int_t)removed);

        rc = cli_print_json(stdout, out) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
        json_decref(out);
    } else if (!sa.json || deleted || removed) {
        fprintf(stderr, "deleted %zu run%s\n", deleted, deleted == 1 ? "" : "s");
        fprintf(stderr, "removed %zu %scache entr%s\n", removed, g.clear_cache ? "" : "expired ",
                removed == 1 ? "y" : "ies");
    }
    return rc;
}

const struct cli_command cli_cmd_gc = {
    "gc",
    "delete runs that ended long ago, and expired cached outputs",
    help,
    gc_main,
};
