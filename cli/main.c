/* main.c -- the `flow` program's front door: global options (--help, --version),
 * the table of subcommands, and dispatch to cmd_<verb>.c. */
#include "cli.h"

#include <string.h>

#include "color.h"
#ifdef __GLIBC__
#include <malloc.h>
#endif

static const struct cli_command *const commands[] = {
    &cli_cmd_run,
    &cli_cmd_validate,
    &cli_cmd_graph,
    &cli_cmd_resume,
    &cli_cmd_retry,
    &cli_cmd_status,
    &cli_cmd_logs,
    &cli_cmd_checkpoints,
    &cli_cmd_pause,
    &cli_cmd_cancel,
    &cli_cmd_gc,
    &cli_cmd_feedback,
    &cli_cmd_ctl,
    &cli_cmd_worker,
    &cli_cmd_workers,
    &cli_cmd_serve,
    &cli_cmd_schedules,
    &cli_cmd_prompts,
    &cli_cmd_completion,
    NULL,
};

/* Commands that later versions add: named, so that a user gets
 * "not available yet" rather than "unknown command". */
static const char *const later_commands[] = {
    NULL,
};

static void print_main_help(FILE *out)
{
    size_t i;

    fputs("usage: flow [--help] [--version] [--color WHEN] COMMAND [ARGS]\n"
          "\n"
          "Run durable workflows of tasks described in YAML or JSON files.\n"
          "\n"
          "Commands:\n",
          out);
    for (i = 0; commands[i]; i++) {
        fprintf(out, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
    }
    fputs("  help         show the help of a command\n"
          "\n"
          "Options:\n"
          "  -h, --help     show this help\n"
          "  -V, --version  print the version (\"flow X.Y.Z\")\n"
          "  --color WHEN   colour on a terminal: auto (default), always or never;\n"
          "                 any command takes it too (NO_COLOR=1 turns auto off)\n"
          "\n"
          "Run 'flow COMMAND --help' for the options of a command.\n"
          "Exit status: 0 success, 1 the run failed, 2 usage error or invalid workflow,\n"
          "3 paused, 4 cancelled, 130 interrupted.\n",
          out);
}

const struct cli_command *cli_command_at(size_t i)
{
    size_t n = sizeof(commands) / sizeof(commands[0]) - 1;

    return i < n ? commands[i] : NULL;
}

const struct cli_command *cli_find_command(const char *name)
{
    size_t i;

    for (i = 0; commands[i]; i++) {
        if (strcmp(commands[i]->name, name) == 0) {
            return commands[i];
        }
    }
    return NULL;
}

/* Edit distance between two short words, capped: enough to suggest a command. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);
    size_t row[32];
    size_t i;
    size_t j;

    if (la >= 32 || lb >= 32) {
        return 99;
    }
    for (j = 0; j <= lb; j++) {
        row[j] = j;
    }
    for (i = 1; i <= la; i++) {
        size_t diag = row[0];

        row[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] == b[j - 1] ? 0 : 1);

            if (up + 1 < best) {
                best = up + 1;
            }
            if (row[j - 1] + 1 < best) {
                best = row[j - 1] + 1;
            }
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

static int unknown_command(const char *name)
{
    const char *best = NULL;
    size_t best_dist = 3;
    size_t i;

    for (i = 0; later_commands[i]; i++) {
        if (strcmp(later_commands[i], name) == 0) {
            cli_error("command '%s' is not available in this version (flow %s)", name,
                      flow_version());
            return CLI_EXIT_USAGE;
        }
    }
    for (i = 0; commands[i]; i++) {
        size_t d = distance(name, commands[i]->name);

        if (d < best_dist) {
            best_dist = d;
            best = commands[i]->name;
        }
    }
    if (best) {
        return cli_usage_error(NULL, "unknown command '%s'; did you mean '%s'?", name, best);
    }
    return cli_usage_error(NULL, "unknown command '%s'", name);
}

/* `flow help [COMMAND]` */
static int cmd_help(int argc, char **argv)
{
    const struct cli_command *c;

    if (argc < 2) {
        print_main_help(stdout);
        return CLI_EXIT_OK;
    }
    if (argc > 2) {
        return cli_usage_error(NULL, "'help' takes one COMMAND, got '%s' too", argv[2]);
    }
    c = cli_find_command(argv[1]);
    if (!c) {
        return unknown_command(argv[1]);
    }
    return cli_print_help(c->help);
}

int main(int argc, char **argv)
{
    const struct cli_command *c;
    int i = 1;

    cli_std_streams_init();
    /* Every child of this process is libflow's: any orphan that comes to
     * it (a command's, re-parented) is to be reaped. */
    flow_set_reap_orphans(true);
#if defined(__GLIBC__) && defined(M_MXFAST)
    /* The host's choice (bench/README.md, W5): with glibc's fastbins, freeing
     * the million small blocks a big workflow file is read into consolidates
     * them over and over (freeing the tree of a 100,000-task file took twice
     * as long, 13% of `flow validate`); without them, tcache still serves the
     * common sizes. */
    mallopt(M_MXFAST, 0);
#endif

    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *arg = argv[i];

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_main_help(stdout);
            return CLI_EXIT_OK;
        }
        if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) {
            printf("flow %s\n", flow_version());
            return CLI_EXIT_OK;
        }
        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        }
        if (strncmp(arg, "--color", 7) == 0 && (arg[7] == '\0' || arg[7] == '=')) {
            const char *value = arg[7] ? arg + 8 : i + 1 < argc ? argv[++i] : NULL;

            if (!value) {
                return cli_usage_error(NULL, "option '--color' needs a value");
            }
            if (cli_color_option(NULL, value) >= 0) {
                return CLI_EXIT_USAGE;
            }
            continue;
        }
        return cli_usage_error(NULL, "unknown option '%s'", arg);
    }
    if (i >= argc) {
        print_main_help(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[i], "help") == 0) {
        return cmd_help(argc - i, argv + i);
    }
    if (strcmp(argv[i], "__complete") == 0) { /* for the completion scripts */
        return cli_complete_main(argc - i, argv + i);
    }
    if (strcmp(argv[i], "version") == 0) {
        printf("flow %s\n", flow_version());
        return CLI_EXIT_OK;
    }
    c = cli_find_command(argv[i]);
    if (!c) {
        return unknown_command(argv[i]);
    }
    return c->main(argc - i, argv + i);
}
