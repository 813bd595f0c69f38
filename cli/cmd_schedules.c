/* cmd_schedules.c -- `flow schedules [--flows DIR] [--json] [--count N]`:
 * the flows of a directory that have a `schedule:`, and their next ticks
 * (what `flow serve --flows DIR` starts, and when). */
#include "cli.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { OPT_HELP = 1, OPT_FLOWS, OPT_JSON, OPT_COUNT };

static const struct cli_option options[] = {
    {"help", 'h', false, OPT_HELP},
    {"flows", 0, true, OPT_FLOWS},
    {"json", 0, false, OPT_JSON},
    {"count", 'n', true, OPT_COUNT},
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow schedules [--flows DIR] [--count N] [--json]\n"
    "\n"
    "List the workflow files of DIR (*.yaml, *.yml, *.json) that have a\n"
    "'schedule:', with their time zone and next ticks: the runs 'flow serve\n"
    "--flows DIR' starts, with the ids NAME@TIME. A file that does not load is\n"
    "reported on stderr (FILE:LINE:COL: error: ...) and left out.\n"
    "\n"
    "Options:\n"
    "      --flows DIR  the directory (default: .)\n"
    "  -n, --count N    next ticks to show a flow (default 3)\n"
    "      --json       print [{flow, file, schedule, timezone, catchup, inputs,\n"
    "                   next: [RFC 3339 UTC times]}] instead\n"
    "  -h, --help       show this help\n"
    "\n"
    "Exit status: 0, 2 for a usage error or when a file did not load.\n";

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool flow_file(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && ((n > 5 && !strcmp(name + n - 5, ".yaml")) ||
                              (n > 4 && !strcmp(name + n - 4, ".yml")) ||
                              (n > 5 && !strcmp(name + n - 5, ".json")));
}

static void utc_text(double t, char *out, size_t size)
{
    time_t s = (time_t)t;
    struct tm tm;
    strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&s, &tm));
}

static int schedules_main(int argc, char **argv)
{
    struct cli_args a;
    const char *dir = ".";
    bool json = false;
    int count = 3, id, status = CLI_EXIT_OK;
    cli_args_init(&a, "schedules", argc, argv, options);
    while ((id = cli_next_opt(&a)) != 0) {
        if (id == -1)
            return CLI_EXIT_USAGE;
        if (id == OPT_HELP)
            return cli_print_help(help);
        if (id == OPT_FLOWS)
            dir = a.value;
        if (id == OPT_JSON)
            json = true;
        if (id == OPT_COUNT && (!cli_parse_count(&a, a.value, &count) || count < 1))
            return count < 1 ? cli_usage_error("schedules", "--count must be 1 or more")
                             : CLI_EXIT_USAGE;
    }
    if (a.npos > 0)
        return cli_usage_error("schedules", "unexpected argument '%s' for 'schedules'",
                               cli_pos(&a, 0));
    DIR *d = opendir(dir);
    if (!d) {
        cli_error("cannot read the flows directory '%s'", dir);
        return CLI_EXIT_USAGE;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!flow_file(de->d_name))
            continue;
        names = cli_realloc(names, (n + 1) * sizeof(*names));
        names[n++] = cli_strdup(de->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(*names), by_name);
    json_t *out = json_array();
    if (!json)
        printf("%-24s %-20s %-16s %s\n", "FLOW", "SCHEDULE", "TIMEZONE", "NEXT (local time)");
    double now = (double)time(NULL);
    for (size_t i = 0; i < n; i++) {
        char *path = cli_malloc(strlen(dir) + strlen(names[i]) + 2);
        snprintf(path, strlen(dir) + strlen(names[i]) + 2, "%s/%s", dir, names[i]);
        flow *f = cli_load_flow(path, true);
        const flow_schedule *sc = f ? flow_get_schedule(f) : NULL;
        if (!f)
            status = CLI_EXIT_USAGE;
        if (sc) {
            json_t *next = json_array();
            double t = now;
            char line[512] = "";
            for (int k = 0; k < count && (t = flow_schedule_next(f, t)) >= 0; k++) {
                char utc[32];
                utc_text(t, utc, sizeof(utc));
                json_array_append_new(next, json_string(utc));
                if (!json) {
                    time_t s = (time_t)t;
                    struct tm tm;
                    char local[32];
                    strftime(local, sizeof(local), "%Y-%m-%d %H:%M", localtime_r(&s, &tm));
                    size_t len = strlen(line);
                    snprintf(line + len, sizeof(line) - len, "%s%s", k ? ", " : "", local);
                }
            }
            if (json)
                json_array_append_new(
                    out, json_pack("{s:s,s:s,s:s,s:s?,s:b,s:O?,s:o}", "flow", flow_name(f), "file",
                                   path, "schedule", sc->cron, "timezone", sc->timezone,
                                   "catchup", sc->catchup, "inputs", sc->inputs, "next", next));
            else {
                printf("%-24s %-20s %-16s %s\n", flow_name(f), sc->cron,
                       sc->timezone ? sc->timezone : "UTC", line[0] ? line : "(never)");
                json_decref(next);
            }
        }
        flow_free(f);
        free(path);
        free(names[i]);
    }
    free(names);
    if (json) {
        char *text = json_dumps(out, JSON_INDENT(2));
        printf("%s\n", text ? text : "[]");
        free(text);
    }
    json_decref(out);
    return status;
}

const struct cli_command cli_cmd_schedules = {
    "schedules",
    "list the flows of a directory that have a schedule, and their next ticks",
    help,
    schedules_main,
};
