/* cmd_resume.c -- `flow resume RUN`: load the workflow file the run was
 * started from, replay its journal and follow it to its end (follow.c), or
 * start a new run from one of its checkpoints. Following a stored run again
 * is shared with `flow retry` (rerun.h). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include "rerun.h"

enum { OPT_FROM = CLI_RERUN_EXTRA, OPT_ID, OPT_START };

static const struct cli_option options[] = {
    CLI_RERUN_OPTIONS,
    {"from-checkpoint", 0, true, OPT_FROM},
    {"id", 0, true, OPT_ID},
    {"start", 0, true, OPT_START},
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow resume RUN [--from-checkpoint ID [--id NEW]] [--force] [--jobs N]\n"
    "                   [--json] [--quiet] [--verbose] [--store URL]\n"
    "                   [--no-cache] [--redis URL]\n"
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
    CLI_RERUN_HELP_OPTIONS
    "\n"
    "Exit status: as 'flow run': 0 completed, 1 failed, 2 usage error, 3 paused,\n"
    "4 cancelled, 130 interrupted.\n";

/* ---- what flow resume and flow retry share ------------------------------- */

int cli_rerun_option(struct cli_rerun *c, const struct cli_args *a, int id, const char *text)
{
    switch (id) {
    case CLI_RERUN_HELP:
        return cli_print_help(text);
    case CLI_RERUN_FORCE:
        c->ropts.force = true;
        break;
    case CLI_RERUN_JOBS:
        if (!cli_parse_count(a, a->value, &c->s.jobs)) {
            return CLI_EXIT_USAGE;
        }
        break;
    case CLI_RERUN_JSON:
        c->s.json = true;
        break;
    case CLI_RERUN_PROMPTS:
        return cli_set_prompts(c->cmd, a->value) ? -1 : CLI_EXIT_USAGE;
    case CLI_RERUN_RESOURCES:
        if (!cli_parse_resources(c->cmd, a->value, &c->s.resources)) {
            return CLI_EXIT_USAGE;
        }
        c->s.has_resources = true;
        break;
    case CLI_RERUN_QUIET:
        c->s.quiet = true;
        break;
    case CLI_RERUN_VERBOSE:
        c->s.verbose = true;
        break;
    case CLI_RERUN_STORE:
        c->s.store_url = a->value;
        break;
    case CLI_RERUN_REDIS:
        c->s.redis_url = a->value;
        break;
    case CLI_RERUN_WAIT:
        c->ropts.wait = true;
        break;
    case CLI_RERUN_NO_CACHE:
        c->ropts.no_cache = true;
        break;
    default:
        break;
    }
    return -1;
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

/* The workflow file run c->run_id was started from, once c->check let it
 * go on (NULL with *status set otherwise). */
static char *stored_source(struct cli_rerun *c, int *status)
{
    flow_store *st;
    json_t *stored;
    const char *source;
    char *out = NULL;

    st = cli_open_existing_store(c->s.store_url, status);
    if (!st) {
        return NULL;
    }
    if (!flow_store_is_durable(st)) {
        cli_error("store '%s' keeps nothing between processes: there is no run to %s",
                  flow_store_url(st), c->cmd);
        flow_store_close(st);
        *status = CLI_EXIT_USAGE;
        return NULL;
    }
    stored = stored_run(st, c->run_id, status);
    flow_store_close(st);
    if (!stored) {
        return NULL;
    }
    *status = c->check ? c->check(stored, c->udata) : -1;
    source = json_string_value(json_object_get(stored, "source"));
    if (*status < 0 && !source) {
        cli_error("run '%s' was not started from a workflow file; %s it from the program "
                  "that started it (flow_run_%s)",
                  c->run_id, c->cmd, c->cmd);
        *status = CLI_EXIT_USAGE;
    }
    if (*status < 0) {
        out = cli_strdup(source);
    }
    json_decref(stored);
    return out;
}

int cli_rerun_follow(struct cli_rerun *c)
{
    flow_error err;
    flow_run *run;
    flow *f;
    char *source;
    double t0;
    int rc;

    source = stored_source(c, &rc);
    if (!source) {
        return rc;
    }
    f = cli_load_flow(source, c->s.quiet);
    if (!f) {
        cli_error("cannot load '%s', the workflow file of run '%s'", source, c->run_id);
        free(source);
        return CLI_EXIT_USAGE;
    }
    rc = cli_session_open(&c->s, flow_task_count(f));
    if (rc >= 0) {
        goto out_flow;
    }
    memset(&err, 0, sizeof(err));
    c->ropts.run_id = c->run_id;
    c->ropts.store = c->s.store;
    c->ropts.source = source;
    c->ropts.on_event = c->s.prog ? progress_on_event : NULL;
    c->ropts.event_udata = c->s.prog;
    cli_signals_install();
    t0 = cli_now();
    run = c->start(c->s.engine, f, &c->ropts, c->udata, &err);
    if (!run) {
        cli_signals_restore();
        cli_error("%s", err.message[0] ? err.message : flow_strerror(err.code));
        rc = err.code == FLOW_EBUSY ? c->busy_exit : cli_start_error_status(err.code);
    } else {
        rc = cli_follow(&c->s, run, t0);
    }
    cli_session_close(&c->s);
out_flow:
    flow_free(f);
    free(source);
    return rc;
}

/* ---- flow resume --------------------------------------------------------- */

static int parse_args(struct cli_rerun *c, int argc, char **argv)
{
    struct cli_args a;
    int id;
    int rc;

    cli_args_init(&a, "resume", argc, argv, options);
    while ((id = cli_next_opt(&a)) > 0) {
        switch (id) {
        case OPT_FROM:
            c->ropts.from_checkpoint = a.value;
            break;
        case OPT_ID:
            c->ropts.new_run_id = a.value;
            break;
        case OPT_START:
            return cli_usage_error("resume", "option '--start' of 'resume' is not supported yet");
        default:
            rc = cli_rerun_option(c, &a, id, help);
            if (rc >= 0) {
                return rc;
            }
            break;
        }
    }
    if (id < 0) {
        return CLI_EXIT_USAGE;
    }
    if (c->ropts.new_run_id && !c->ropts.from_checkpoint) {
        return cli_usage_error("resume", "option '--id' of 'resume' goes with --from-checkpoint");
    }
    return cli_one_run(&a, &c->run_id);
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

static int resume_check(const json_t *stored, void *udata)
{
    struct cli_rerun *c = udata;
    const char *status = json_string_value(json_object_get(stored, "status"));

    if (!c->ropts.from_checkpoint &&
        (strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
         strcmp(status, "cancelled") == 0)) {
        return ended_run(stored, c->s.quiet);
    }
    return -1;
}

static flow_run *resume_start(flow_engine *e, flow *f, const flow_run_options *o, void *udata,
                              flow_error *err)
{
    (void)udata;
    return flow_run_resume(e, f, o, err);
}

static int resume_main(int argc, char **argv)
{
    struct cli_rerun c;
    int rc;

    memset(&c, 0, sizeof(c));
    c.cmd = "resume";
    c.check = resume_check;
    c.start = resume_start;
    c.udata = &c;
    c.busy_exit = CLI_EXIT_FAILED;
    rc = parse_args(&c, argc, argv);
    if (rc >= 0) {
        return rc;
    }
    return cli_rerun_follow(&c);
}

const struct cli_command cli_cmd_resume = {
    "resume",
    "continue a run that stopped, or start one from a checkpoint",
    help,
    resume_main,
};
