/* cmd_retry.c -- `flow retry RUN [TASK...]`: a run that ended failed or
 * cancelled runs again in the same run id, from where it failed
 * (flow_run_retry), followed to its end as `flow resume` follows a run
 * (rerun.h). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include "rerun.h"

enum { OPT_BY = CLI_RERUN_EXTRA };

static const struct cli_option options[] = {
    CLI_RERUN_OPTIONS,
    {"by", 0, true, OPT_BY},
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow retry RUN [TASK...] [--jobs N] [--json] [--quiet] [--verbose] [--wait]\n"
    "                  [--force] [--by NAME] [--no-cache] [--store URL] [--redis URL]\n"
    "\n"
    "Run again a run that ended failed or cancelled, in the same run id, from where\n"
    "it failed, and follow it to its end as 'flow run' does. Its failed and cancelled\n"
    "tasks run again, as their next attempt; the tasks skipped because of them run\n"
    "once what they wait on completes; completed tasks keep their outputs and are\n"
    "not run again. With TASK names, only those tasks run again (a TASK that\n"
    "completed runs again, and so does everything after it). The retry is kept in\n"
    "the run's journal ('flow logs RUN'); 'flow status RUN' shows the attempts grow.\n"
    "The workflow file is the one the run was started from.\n"
    "\n"
    "A run that completed, is paused, is running, or stopped without ending (its\n"
    "runner died) is refused with exit 2 and changes nothing: 'flow resume'\n"
    "continues a paused or stopped run.\n"
    "\n"
    "Options:\n"
    "      --by NAME       who retries, kept in the journal (default: $USER)\n"
    "      --force         retry even though the workflow file changed since the run\n"
    "                      started\n"
    CLI_RERUN_HELP_OPTIONS
    "\n"
    "Exit status: as 'flow run': 0 completed, 1 failed, 2 usage error or refused\n"
    "(nothing ran), 3 paused, 4 cancelled, 130 interrupted.\n";

struct retry_args {
    struct cli_rerun c;
    const char **tasks; /* NULL-terminated, or NULL: every failure */
};

static int parse_args(struct retry_args *ra, int argc, char **argv)
{
    struct cli_args a;
    int id;
    int rc;
    int i;

    cli_args_init(&a, "retry", argc, argv, options);
    while ((id = cli_next_opt(&a)) > 0) {
        if (id == OPT_BY) {
            ra->c.ropts.by = a.value;
            continue;
        }
        rc = cli_rerun_option(&ra->c, &a, id, help);
        if (rc >= 0) {
            return rc;
        }
    }
    if (id < 0) {
        return CLI_EXIT_USAGE;
    }
    if (a.npos < 1) {
        return cli_usage_error("retry", "'retry' needs a RUN id ('flow status' lists them)");
    }
    ra->c.run_id = cli_pos(&a, 0);
    if (a.npos > 1) {
        ra->tasks = cli_malloc((size_t)a.npos * sizeof(*ra->tasks));
        for (i = 1; i < a.npos; i++) {
            ra->tasks[i - 1] = cli_pos(&a, i);
        }
        ra->tasks[a.npos - 1] = NULL;
    }
    return -1;
}

/* Only a run that ended failed or cancelled is retried; the others need no
 * workflow file to be refused. */
static int retry_check(const json_t *stored, void *udata)
{
    const char *id = json_string_value(json_object_get(stored, "id"));
    const char *status = json_string_value(json_object_get(stored, "status"));
    const char *runner = json_string_value(json_object_get(stored, "runner"));

    (void)udata;
    if (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0) {
        return -1;
    }
    if (strcmp(status, "completed") == 0) {
        cli_error("run '%s' completed: nothing to retry", id);
    } else if (strcmp(status, "paused") == 0) {
        cli_error("run '%s' is paused, not ended: continue it with flow resume %s", id, id);
    } else if (strcmp(status, "stopped") == 0) {
        cli_error("run '%s' stopped before it ended (its runner died): continue it with flow "
                  "resume %s",
                  id, id);
    } else {
        cli_error("run '%s' has not ended: it is %s%s%s%s; nothing to retry", id, status,
                  runner ? " (" : "", runner ? runner : "", runner ? ")" : "");
    }
    return CLI_EXIT_USAGE;
}

static flow_run *retry_start(flow_engine *e, flow *f, const flow_run_options *o, void *udata,
                             flow_error *err)
{
    const struct retry_args *ra = udata;

    return flow_run_retry(e, f, o, ra->tasks, err);
}

static int retry_main(int argc, char **argv)
{
    struct retry_args ra;
    int rc;

    memset(&ra, 0, sizeof(ra));
    ra.c.cmd = "retry";
    ra.c.check = retry_check;
    ra.c.start = retry_start;
    ra.c.udata = &ra;
    ra.c.busy_exit = CLI_EXIT_USAGE; /* refused: it has not ended */
    ra.c.ropts.by = getenv("USER");
    rc = parse_args(&ra, argc, argv);
    if (rc < 0) {
        rc = cli_rerun_follow(&ra.c);
    }
    free(ra.tasks);
    return rc;
}

const struct cli_command cli_cmd_retry = {
    "retry",
    "run a failed or cancelled run again, from where it failed",
    help,
    retry_main,
};
