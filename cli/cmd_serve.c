/* cmd_serve.c -- `flow serve`: the options; the service itself is
 * src/serve/ (docs/operations.md). */
#include "cli.h"

#include <string.h>

#include "serve/serve.h"

enum { OPT_HELP = 1, OPT_LISTEN, OPT_STORE, OPT_REDIS, OPT_FLOWS, OPT_TOKEN, OPT_JOBS, OPT_GRACE,
       OPT_QUIET, OPT_RESOURCES, OPT_PROMPTS };

static const struct cli_option options[] = {
    {"help", 'h', false, OPT_HELP},
    {"listen", 'l', true, OPT_LISTEN},
    {"store", 0, true, OPT_STORE},
    {"redis", 0, true, OPT_REDIS},
    {"flows", 0, true, OPT_FLOWS},
    {"token-file", 0, true, OPT_TOKEN},
    {"jobs", 'j', true, OPT_JOBS},
    {"stop-grace", 0, true, OPT_GRACE},
    {"resources", 0, true, OPT_RESOURCES},
    {"prompts", 0, true, OPT_PROMPTS},
    {"quiet", 'q', false, OPT_QUIET},
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow serve [--listen HOST:PORT] [--flows DIR] [--store URL] [--redis URL]\n"
    "                  [--token-file FILE] [--jobs N] [--resources AMOUNTS] [--prompts DIR]\n"
    "                  [--stop-grace DURATION] [--quiet]\n"
    "\n"
    "A long-running runner with an HTTP API, a web dashboard and metrics, in one\n"
    "process. It runs the runs started through it (flows of --flows DIR only,\n"
    "by name), takes over runs of its store whose runner died, and resumes runs\n"
    "whose feedback deadline passed. SIGTERM or SIGINT pauses its runs (running\n"
    "tasks get --stop-grace to finish, then are interrupted) and exits 0; the\n"
    "next serve on the store resumes them.\n"
    "\n"
    "  http://HOST:PORT/           the dashboard\n"
    "  http://HOST:PORT/api/v1/... the JSON API (docs/operations.md)\n"
    "  http://HOST:PORT/metrics    Prometheus metrics\n"
    "  http://HOST:PORT/healthz    {\"ok\": true} while the store can be read\n"
    "\n"
    "Options:\n"
    "  -l, --listen HOST:PORT  where to listen (default 127.0.0.1:8080; port 0: any\n"
    "                          free port, printed on stderr). An address that is\n"
    "                          not loopback needs --token-file\n"
    "      --flows DIR         the workflow files it can start (default: .)\n"
    "      --store URL         the store (default: $FLOW_STORE, else\n"
    "                          sqlite:.flow/flow.db in the nearest .flow/ above)\n"
    "      --redis URL         Redis of the remote executor and its workers\n"
    "                          (default: $FLOW_REDIS)\n"
    "      --token-file FILE   every API request needs 'Authorization: Bearer TOKEN',\n"
    "                          TOKEN the file's first line (16 characters or more;\n"
    "                          the file readable by its owner only)\n"
    "  -j, --jobs N            tasks running at once (default: the cores)\n"
    "      --resources AMOUNTS\n"
    "                          what tasks with 'resources' may use at once:\n"
    "                          cpu=N,memory=SIZE,gpu=N (default: the machine's cores\n"
    "                          and memory, gpu=0)\n"
    "      --prompts DIR       where 'prompt:' finds its files (default: $FLOW_PROMPTS,\n"
    "                          else prompts/ beside each workflow file)\n"
    "      --stop-grace D      on SIGTERM, how long running tasks may finish\n"
    "                          (default 10s)\n"
    "  -q, --quiet             no line for each run taken over\n"
    "  -h, --help              show this help\n"
    "\n"
    "Exit status: 0 stopped by a signal, 1 the store or the address cannot be\n"
    "used, 2 usage error.\n";

static int serve_main(int argc, char **argv)
{
    struct cli_args a;
    struct flow_serve_options o;
    int id;
    memset(&o, 0, sizeof(o));
    cli_args_init(&a, "serve", argc, argv, options);
    while ((id = cli_next_opt(&a)) != 0) {
        switch (id) {
        case -1:
            return CLI_EXIT_USAGE;
        case OPT_HELP:
            return cli_print_help(help);
        case OPT_LISTEN:
            o.listen = a.value;
            break;
        case OPT_STORE:
            o.store_url = a.value;
            break;
        case OPT_REDIS:
            o.redis_url = a.value;
            break;
        case OPT_FLOWS:
            o.flows_dir = a.value;
            break;
        case OPT_TOKEN:
            o.token_file = a.value;
            break;
        case OPT_JOBS:
            if (!cli_parse_count(&a, a.value, &o.jobs))
                return CLI_EXIT_USAGE;
            break;
        case OPT_PROMPTS:
            if (!cli_set_prompts("serve", a.value))
                return CLI_EXIT_USAGE;
            break;
        case OPT_RESOURCES:
            if (!cli_parse_resources("serve", a.value, &o.resources))
                return CLI_EXIT_USAGE;
            o.has_resources = true;
            break;
        case OPT_GRACE:
            if (flow_parse_duration(a.value, &o.stop_grace) != FLOW_OK)
                return cli_usage_error("serve", "bad duration '%s' for --stop-grace (e.g. 30s, "
                                                "2m)",
                                       a.value);
            break;
        case OPT_QUIET:
            o.quiet = true;
            break;
        }
    }
    if (a.npos > 0)
        return cli_usage_error("serve", "unexpected argument '%s' for 'serve'", cli_pos(&a, 0));
    return flow_serve_main(&o);
}

const struct cli_command cli_cmd_serve = {
    "serve",
    "HTTP API, web dashboard and metrics",
    help,
    serve_main,
};
