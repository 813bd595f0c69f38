/* cmd_resume.c -- `flow resume RUN`: load the workflow file the run was
 * started from, replay its journal and follow it to its end (follow.c), or
 * start a new run from one of its checkpoints. */
#include "cli.h"

#include <string.h>

#include "follow.h"

enum {
    OPT_HELP = 1,
    OPT_FROM,
    OPT_ID,
    OPT_START,
    OPT_FORCE,
    OPT_JOBS,
    OPT_JSON,
    OPT_QUIET,
    OPT_VERBOSE,
    OPT_STORE,
    OPT_WAIT,
    OPT_REDIS
};

static const struct cli_option options[] = {
    {"help", 'h', false, OPT_HELP},
    {"from-checkpoint", 0, true, OPT_FROM},
    {"id", 0, true, OPT_ID},
    {"start", 0, true, OPT_START},
    {"force", 0, false, OPT_FORCE},
    {"jobs", 'j', true, OPT_JOBS},
    {"json", 0, false, OPT_JSON},
    {"quiet", 'q', false, OPT_QUIET},
    {"verbose", 'v', false, OPT_VERBOSE},
    {"store", 0, true, OPT_STORE},
    {"redis", 0, true, OPT_REDIS},
    {"wait", 0, false, OPT_WAIT},
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow resume RUN [--from-checkpoint ID [--id NEW]] [--force] [--jobs N]\n"
    "                   [--json] [--quiet] [--verbose] [--store URL]\n"
    "                   [--redis URL]\n"
    "\n"
    "Continue a run that stopped -- it crashed, was killed, paused, or interrupted\n"
    "with Ctrl-C -- and follow it to its end, as 'flow run' does. Its journal is\n"
    "replayed: tasks that completed are not run again (their outputs and state\n"
    "writes come from the journal); tasks that were running when it stopped run\n"
    "again. The workflow file is the one the run was started from.\n"
    "\n"
    "A run that has ended is not run again: its result is printed and the exit\n"
    "status is the one it ended with. A run that another live process is running\n"
    "is refused (exit 1) with that process's pid and host.\n"
    "\n"
    "Options:\n"
    "      --from-checkpoint ID  start a new run from checkpoint ID of RUN (see\n"
    "                      'flow checkpoints RUN'); RUN itself stays as it was\n"
    "      --id NEW        the new run's id with --from-checkpoint (default:\n"
    "                      RUN.from-ID)\n"
    "      --force         resume even though the workflow file changed since the\n"
    "                      run started\n"
    "      --wait          when only people's answers can let the run go on, keep\n"
    "                      waiting for them instead of pausing (exit 3)\n"
    "  -j, --jobs N        tasks running at once (default 0: one per core)\n"
    "      --json          print the whole run as JSON on stdout\n"
    "  -q, --quiet         nothing on stderr but errors\n"
    "  -v, --verbose       also print the library's informational messages\n"
    "      --store URL     where the run is kept (default: $FLOW_STORE, else\n"
    "                      sqlite:.flow/flow.db)\n"
    "      --redis URL     where tasks with 'executor: remote' go (default: a redis://\n"
    "                      store, else $FLOW_REDIS)\n"
    "  -h, --help          show this help\n"
    "\n"
    "Exit status: as 'flow run': 0 completed, 1 failed, 2 usage error, 3 paused,\n"
    "4 cancelled, 130 interrupted.\n";

struct resume_args {
    const char *run_id;
    const char *from;
    const char *new_id;
    bool force;
    bool wait;
    struct cli_session s;
};

static int parse_args(struct resume_args *ra, int argc, char **argv)
{
    struct cli_args a;
    int id;

    cli_args_init(&a, "resume", argc, argv, options);
    while ((id = cli_next_opt(&a)) > 0) {
        switch (id) {
        case OPT_HELP:
            return cli_print_help(help);
        case OPT_FROM:
            ra->from = a.value;
            break;
        case OPT_ID:
            ra->new_id = a.value;
            break;
        case OPT_START:
            return cli_usage_error("resume", "option '--start' of 'resume' is not supported yet");
        case OPT_FORCE:
            ra->force = true;
            break;
        case OPT_JOBS:
            if (!cli_parse_count(&a, a.value, &ra->s.jobs)) {
                return CLI_EXIT_USAGE;
            }
            break;
        case OPT_JSON:
            ra->s.json = true;
            break;
        case OPT_QUIET:
            ra->s.quiet = true;
            break;
        case OPT_VERBOSE:
            ra->s.verbose = true;
            break;
        case OPT_REDIS:
            ra->s.redis_url = a.value;
            break;
        case OPT_STORE:
            ra->s.store_url = a.value;
            break;
        case OPT_WAIT:
            ra->wait = true;
            break;
        default:
            break;
        }
    }
    if (id < 0) {
        return CLI_EXIT_USAGE;
    }
    if (ra->new_id && !ra->from) {
        return cli_usage_error("resume", "option '--id' of 'resume' goes with --from-checkpoint");
    }
    return cli_one_run(&a, &ra->run_id);
}

/* How run `id` stands in the store: NULL after saying why (*status set). */
static json_t *stored_run(flow_store *st, const char *id, int *status)
{
    flow_error err;
    json_t *run;

    memset(&err, 0, sizeof(err));
    run = flow_store_run(st, id, &err);
    if (!run) {
        cli_error("%s", err.message);
        *status = cli_store_error_status(err.code);
    }
    return run;
}

/* A run that has ended is not run again, and needs no workflow file: say
 * so, print its result, and exit as it ended. */
static int ended_run(const json_t *run, bool quiet)
{
    const char *id = json_string_value(json_object_get(run, "id"));
    const char *status = json_string_value(json_object_get(run, "status"));
    const char *error = json_string_value(json_object_get(run, "error"));
    flow_run_status s = FLOW_RUN_FAILED;
    int k;

    for (k = FLOW_RUN_COMPLETED; k <= FLOW_RUN_CANCELLED; k++) {
        if (strcmp(status, flow_run_status_name((flow_run_status)k)) == 0) {
            s = (flow_run_status)k;
        }
    }
    if (!quiet || s != FLOW_RUN_COMPLETED) {
        fprintf(stderr, "run %s had already ended (%s)%s%s; nothing was run\n", id, status,
                error ? ": " : "", error ? error : "");
    }
    if (s == FLOW_RUN_COMPLETED && !cli_print_json(stdout, json_object_get(run, "result"))) {
        return CLI_EXIT_FAILED;
    }
    return cli_run_exit_status(s, error);
}

static int resume_main(int argc, char **argv)
{
    struct resume_args ra;
    flow_run_options ropts;
    flow_error err;
    flow_store *st;
    flow_run *run;
    flow *f = NULL;
    json_t *stored;
    const char *status;
    char *source;
    double t0;
    int rc;

    memset(&ra, 0, sizeof(ra));
    rc = parse_args(&ra, argc, argv);
    if (rc >= 0) {
        return rc;
    }
    st = cli_open_existing_store(ra.s.store_url, &rc);
    if (!st) {
        return rc;
    }
    if (!flow_store_is_durable(st)) {
        cli_error("store '%s' keeps nothing between processes: there is no run to resume",
                  flow_store_url(st));
        flow_store_close(st);
        return CLI_EXIT_USAGE;
    }
    stored = stored_run(st, ra.run_id, &rc);
    flow_store_close(st);
    if (!stored) {
        return rc;
    }
    status = json_string_value(json_object_get(stored, "status"));
    if (!ra.from && (strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
                     strcmp(status, "cancelled") == 0)) {
        rc = ended_run(stored, ra.s.quiet);
        json_decref(stored);
        return rc;
    }
    if (!json_string_value(json_object_get(stored, "source"))) {
        cli_error("run '%s' was not started from a workflow file; resume it from the program "
                  "that started it (flow_run_resume)",
                  ra.run_id);
        json_decref(stored);
        return CLI_EXIT_USAGE;
    }
    source = cli_strdup(json_string_value(json_object_get(stored, "source")));
    json_decref(stored);
    f = cli_load_flow(source, ra.s.quiet);
    if (!f) {
        cli_error("cannot load '%s', the workflow file of run '%s'", source, ra.run_id);
        free(source);
        return CLI_EXIT_USAGE;
    }
    rc = cli_session_open(&ra.s, flow_task_count(f));
    if (rc >= 0) {
        goto out_flow;
    }
    memset(&err, 0, sizeof(err));
    memset(&ropts, 0, sizeof(ropts));
    ropts.run_id = ra.run_id;
    ropts.store = ra.s.store;
    ropts.source = source;
    ropts.force = ra.force;
    ropts.from_checkpoint = ra.from;
    ropts.new_run_id = ra.new_id;
    ropts.wait = ra.wait;
    ropts.on_event = ra.s.prog ? progress_on_event : NULL;
    ropts.event_udata = ra.s.prog;
    cli_signals_install();
    t0 = cli_now();
    run = flow_run_resume(ra.s.engine, f, &ropts, &err);
    if (!run) {
        cli_signals_restore();
        cli_error("%s", err.message[0] ? err.message : flow_strerror(err.code));
        rc = err.code == FLOW_EBUSY ? CLI_EXIT_FAILED : cli_start_error_status(err.code);
    } else {
        rc = cli_follow(&ra.s, run, t0);
    }
    cli_session_close(&ra.s);
out_flow:
    flow_free(f);
    free(source);
    return rc;
}

const struct cli_command cli_cmd_resume = {
    "resume",
    "continue a run that stopped, or start one from a checkpoint",
    help,
    resume_main,
};
