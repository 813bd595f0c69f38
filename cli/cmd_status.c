/* cmd_status.c -- `flow status [RUN]`: the runs in the store, newest first
 * and filtered, or one run with each of its task activations, read from the
 * journal. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "color.h"
#include "follow.h"

#define DEFAULT_LIMIT 20

enum { OPT_STATUS = CLI_OPT_EXTRA, OPT_FLOW, OPT_LIMIT, OPT_ALL };

static const struct cli_option options[] = {
    CLI_STORE_OPTIONS,
    {"status", 0, true, OPT_STATUS},
    {"flow", 0, true, OPT_FLOW},
    {"limit", 'n', true, OPT_LIMIT},
    {"all", 'a', false, OPT_ALL},
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow status [--status S[,S...]] [--flow NAME] [--limit N | --all] [--json]\n"
    "                   [--store URL]\n"
    "       flow status RUN [--json] [--store URL]\n"
    "\n"
    "Without RUN: the runs in the store, newest first, with their flow, status,\n"
    "creation time and duration (to their end, or so far while they run); the 20\n"
    "newest unless --limit or --all says otherwise. With RUN: the run, its flow's\n"
    "name and version, who runs it, its result or error, and each task activation\n"
    "with its status, attempts, start and end times and error; an element of a\n"
    "foreach reads TASK[INDEX] ITEM. A run whose process died without ending it (a\n"
    "crash, kill -9) is 'stopped' in both, and in --json: 'flow resume RUN'\n"
    "continues it.\n"
    "\n"
    "Options:\n"
    "      --status S    only runs in status S: pending, running, paused, completed,\n"
    "                    failed, cancelled or stopped; a comma list or repeated for\n"
    "                    several\n"
    "      --flow NAME   only runs of the flow NAME\n"
    "  -n, --limit N     the N newest runs (default 20; N > 0)\n"
    "  -a, --all         every run\n"
    "      --json        print JSON: an array of runs {id, flow, version, status,\n"
    "                    created_at, ended_at, duration, source, runner}, with the\n"
    "                    same filters, or one run {id, flow, version, status,\n"
    "                    result, error, source, runner, duration, state, tasks:\n"
    "                    [{task, activation, status, attempts, started_at,\n"
    "                    ended_at, error, output, info, index, item}]}; info\n"
    "                    says what its completion journaled: {cached: true,\n"
    "                    cached_at},\n"
    "                    {prompt: {name, version, label}}, {usage: {prompt_tokens,\n"
    "                    completion_tokens, total_tokens}}; runner (\"pid@host\",\n"
    "                    or null when it stopped) only for runs running or stopped;\n"
    "                    index and item only for the elements of a foreach\n"
    "      --store URL   the store (default: $FLOW_STORE, else the nearest\n"
    "                    .flow/flow.db here or above, else sqlite:.flow/flow.db)\n"
    "      --color WHEN  auto, always or never\n"
    "  -h, --help        show this help\n"
    "\n"
    "When runs were left out, stderr says how many: 'showing 20 of 153 runs; --all\n"
    "or --limit N for more'.\n"
    "\n"
    "Exit status: 0; 1 when the store or the run cannot be read; 2 on a usage error\n"
    "or no such run.\n";

/* The listing's options. */
struct list_opts {
    char *status; /* comma list, the --status options joined (owned) */
    const char *flow;
    int limit;    /* 0: not given */
    bool all;
    const char *first_list_opt; /* for "does not go with RUN" */
};

static int list_opt(struct cli_args *a, int id, void *udata)
{
    struct list_opts *o = udata;

    if (!o->first_list_opt) {
        o->first_list_opt = a->opt_text;
    }
    switch (id) {
    case OPT_STATUS:
        if (o->status) {
            size_t len = strlen(o->status) + strlen(a->value) + 2;
            char *both = cli_malloc(len);

            snprintf(both, len, "%s,%s", o->status, a->value);
            free(o->status);
            o->status = both;
        } else {
            o->status = cli_strdup(a->value);
        }
        break;
    case OPT_FLOW:
        o->flow = a->value;
        break;
    case OPT_LIMIT:
        if (!cli_parse_count(a, a->value, &o->limit)) {
            return CLI_EXIT_USAGE;
        }
        if (o->limit == 0) {
            return cli_usage_error("status", "option '--limit' of 'status' needs a count above "
                                             "0 (every run: --all)");
        }
        break;
    case OPT_ALL:
        o->all = true;
        break;
    default:
        break;
    }
    return -1;
}

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

/* What the filters were, for "no runs ...": " with status failed of flow x". */
static void describe_filter(const struct list_opts *o, char *out, size_t size)
{
    int n = 0;

    out[0] = '\0';
    if (o->status) {
        n = snprintf(out, size, " with status %s", o->status);
    }
    if (o->flow && n >= 0 && (size_t)n < size) {
        snprintf(out + n, size - (size_t)n, " of flow '%s'", o->flow);
    }
}

static int list_runs(flow_store *st, const struct list_opts *o, bool as_json)
{
    flow_run_query q;
    flow_error err;
    size_t matched = 0;
    json_t *runs;
    size_t i;
    json_t *r;
    bool color = !as_json && cli_color_on(STDOUT_FILENO);
    int rc;

    memset(&q, 0, sizeof(q));
    memset(&err, 0, sizeof(err));
    q.status = o->status;
    q.flow = o->flow;
    q.limit = o->all ? 0 : o->limit ? (size_t)o->limit : DEFAULT_LIMIT;
    runs = flow_store_list_runs(st, &q, &matched, &err);
    if (!runs) {
        if (err.code == FLOW_EINVAL) {
            return cli_usage_error("status", "option '--status' of 'status': %s", err.message);
        }
        cli_error("%s", err.message);
        return cli_store_error_status(err.code);
    }
    if (as_json) {
        rc = cli_print_json(stdout, runs) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    } else {
        if (json_array_size(runs) == 0) {
            char filter[512];

            describe_filter(o, filter, sizeof(filter));
            printf("no runs%s in %s\n", filter, flow_store_url(st));
        } else {
            printf("%-34s %-20s %-10s %-19s  %s\n", "RUN", "FLOW", "STATUS", "CREATED",
                   "DURATION");
        }
        json_array_foreach(runs, i, r)
        {
            char created[32];
            char took[32];
            char word[64];
            const char *name = json_string_value(json_object_get(r, "flow"));
            const char *status = json_string_value(json_object_get(r, "status"));
            const json_t *d = json_object_get(r, "duration");

            if (json_is_number(d)) {
                cli_format_duration(json_number_value(d), took, sizeof(took));
            } else {
                snprintf(took, sizeof(took), "-");
            }
            printf("%-34s %-20s %s %-19s  %s\n", json_string_value(json_object_get(r, "id")),
                   name ? name : "-", cli_color_pad(word, sizeof(word), color, status, status, 10),
                   cli_short_time(json_object_get(r, "created_at"), created, sizeof(created)),
                   took);
        }
        rc = cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    }
    if (matched > json_array_size(runs)) {
        /* On stderr: the listing itself stays what was asked for. */
        fprintf(stderr, "showing %zu of %zu runs; --all or --limit N for more\n",
                json_array_size(runs), matched);
    }
    json_decref(runs);
    return rc;
}

/* The name shown for activation `t` of a run's JSON: its task, or for a
 * foreach element `task[index] item`. */
static const char *act_label(const json_t *t, char *out, size_t size)
{
    const json_t *index = json_object_get(t, "index");

    return cli_act_label(out, size, json_string_value(json_object_get(t, "task")),
                         json_is_integer(index) ? (long)json_integer_value(index) : -1,
                         json_object_get(t, "item"), true);
}

/* What an activation's completion journaled about it (`info`), in words:
 * "cached", "prompt summarize v1 (production)", "tokens 12+30". Empty when
 * nothing. */
static const char *info_note(const json_t *t, char *out, size_t size)
{
    const json_t *info = json_object_get(t, "info");
    const json_t *prompt = json_object_get(info, "prompt");
    const json_t *usage = json_object_get(info, "usage");
    size_t n = 0;

    out[0] = '\0';
    if (json_is_true(json_object_get(info, "cached"))) {
        n += (size_t)snprintf(out + n, size - n, "cached");
    }
    if (json_is_object(prompt) && n < size) {
        const json_t *v = json_object_get(prompt, "version");
        const char *label = json_string_value(json_object_get(prompt, "label"));
        char version[64];

        if (json_is_integer(v)) {
            snprintf(version, sizeof(version), "%lld", (long long)json_integer_value(v));
        } else if (json_is_real(v)) {
            snprintf(version, sizeof(version), "%.15g", json_real_value(v));
        } else {
            snprintf(version, sizeof(version), "%s", json_string_value(v) ? json_string_value(v) : "?");
        }
        n += (size_t)snprintf(out + n, size - n, "%sprompt %s v%s%s%s%s", n ? ", " : "",
                              json_string_value(json_object_get(prompt, "name")) ?
                                  json_string_value(json_object_get(prompt, "name")) : "?",
                              version, label ? " (" : "", label ? label : "", label ? ")" : "");
    }
    if (json_is_object(usage) && n < size) {
        snprintf(out + n, size - n, "%stokens %lld+%lld", n ? ", " : "",
                 (long long)json_integer_value(json_object_get(usage, "prompt_tokens")),
                 (long long)json_integer_value(json_object_get(usage, "completion_tokens")));
    }
    return out;
}

static int show_run(flow_store *st, const char *id, bool as_json)
{
    flow_error err;
    json_t *run;
    json_t *t;
    size_t i;
    const char *error;
    const char *version;
    const char *status;
    bool color = !as_json && cli_color_on(STDOUT_FILENO);
    char word[64];
    char label[256];
    int width = 24;
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
    status = json_string_value(json_object_get(run, "status"));
    printf("run %s: %s (flow %s%s%s)\n", id, cli_color_pad(word, sizeof(word), color, status,
                                                           status, 0),
           json_string_value(json_object_get(run, "flow")), version ? ", version " : "",
           version ? version : "");
    print_runner(run);
    if (error) {
        bool paused = strcmp(status, "paused") == 0;

        printf("%s: %s\n", paused ? "paused" : "error", error);
    }
    /* Elements of a foreach name their item: the column takes the longest. */
    json_array_foreach(json_object_get(run, "tasks"), i, t)
    {
        int len = (int)strlen(act_label(t, label, sizeof(label)));

        if (len > width) {
            width = len;
        }
    }
    printf("%6s  %-*s %-10s %-8s %-19s  %-19s  %s\n", "ACT", width, "TASK", "STATUS", "ATTEMPTS",
           "STARTED", "ENDED", "NOTE");
    json_array_foreach(json_object_get(run, "tasks"), i, t)
    {
        char started[32];
        char ended[32];
        const char *e = json_string_value(json_object_get(t, "error"));
        const char *act_status = json_string_value(json_object_get(t, "status"));
        const char *held = json_string_value(json_object_get(t, "waiting_for"));
        char note[256];

        printf("%6lld  %-*s %s %-8lld %-19s  %-19s  %s\n",
               (long long)json_integer_value(json_object_get(t, "activation")), width,
               act_label(t, label, sizeof(label)),
               cli_color_pad(word, sizeof(word), color, act_status, act_status, 10),
               (long long)json_integer_value(json_object_get(t, "attempts")),
               cli_short_time(json_object_get(t, "started_at"), started, sizeof(started)),
               cli_short_time(json_object_get(t, "ended_at"), ended, sizeof(ended)),
               held ? held : e ? e : info_note(t, note, sizeof(note)));
    }
    if (!strcmp(status, "completed")) {
        fputs("result: ", stdout);
        cli_print_json(stdout, json_object_get(run, "result"));
    }
    json_decref(run);
    return cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

/* Where there is no store there are no runs; a bad --status is still a
 * usage error, as an empty store of our own says. */
static int list_no_store(const char *url, const struct list_opts *o, bool as_json)
{
    flow_store *empty = flow_store_open("memory:", NULL);
    int rc;

    if (empty && o->status) {
        flow_run_query q;
        flow_error err;
        json_t *none;

        memset(&q, 0, sizeof(q));
        memset(&err, 0, sizeof(err));
        q.status = o->status;
        none = flow_store_list_runs(empty, &q, NULL, &err);
        json_decref(none);
        if (!none && err.code == FLOW_EINVAL) {
            flow_store_close(empty);
            return cli_usage_error("status", "option '--status' of 'status': %s", err.message);
        }
    }
    flow_store_close(empty);
    if (as_json) {
        json_t *none = json_array();

        rc = cli_print_json(stdout, none) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
        json_decref(none);
        return rc;
    }
    printf("no runs (there is no store at %s yet)\n", url ? url : flow_store_default_url());
    return cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

static int status_main(int argc, char **argv)
{
    struct cli_store_args sa = {0};
    struct list_opts lo;
    flow_store *st;
    int rc;

    memset(&lo, 0, sizeof(lo));
    rc = cli_parse_store_args(&sa, "status", argc, argv, options, help, list_opt, &lo);
    if (rc < 0 && sa.args.npos > 1) {
        rc = cli_usage_error("status", "unexpected argument '%s' for 'status'",
                             cli_pos(&sa.args, 1));
    } else if (rc < 0 && sa.args.npos == 1 && lo.first_list_opt) {
        rc = cli_usage_error("status", "option '--%s' of 'status' is for the list of runs, not "
                                       "one run",
                             lo.first_list_opt);
    } else if (rc < 0 && lo.all && lo.limit) {
        rc = cli_usage_error("status", "options '--all' and '--limit' of 'status' do not go "
                                       "together");
    }
    if (rc >= 0) {
        free(lo.status);
        return rc;
    }
    if (sa.args.npos == 0) {
        /* No store yet is no runs yet (and it is not created for that). */
        flow_error err;

        memset(&err, 0, sizeof(err));
        st = flow_store_open_flags(sa.store_url, FLOW_STORE_NOCREATE, &err);
        if (!st && err.code == FLOW_ENOTFOUND) {
            rc = list_no_store(sa.store_url, &lo, sa.json);
        } else if (st) {
            rc = list_runs(st, &lo, sa.json);
            flow_store_close(st);
        } else {
            cli_error("%s", err.message[0] ? err.message : flow_strerror(err.code));
            rc = cli_store_error_status(err.code);
        }
        free(lo.status);
        return rc;
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
