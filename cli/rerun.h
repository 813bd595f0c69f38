/* rerun.h -- what `flow resume` and `flow retry` share (cmd_resume.c): their
 * common options, and following a run of the store again -- the run as the
 * store has it, its workflow file loaded, the engine and the store opened,
 * then followed to its end as `flow run` does (follow.c). */
#ifndef FLOW_CLI_RERUN_H
#define FLOW_CLI_RERUN_H

#include "cli.h"
#include "follow.h"

/* Option ids both commands take; a command's own start at CLI_RERUN_EXTRA. */
enum {
    CLI_RERUN_HELP = 1,
    CLI_RERUN_FORCE,
    CLI_RERUN_JOBS,
    CLI_RERUN_JSON,
    CLI_RERUN_QUIET,
    CLI_RERUN_VERBOSE,
    CLI_RERUN_STORE,
    CLI_RERUN_REDIS,
    CLI_RERUN_WAIT,
    CLI_RERUN_RESOURCES,
    CLI_RERUN_PROMPTS,
    CLI_RERUN_NO_CACHE,
    CLI_RERUN_EXTRA
};
#define CLI_RERUN_OPTIONS                                                                          \
    {"help", 'h', false, CLI_RERUN_HELP}, {"force", 0, false, CLI_RERUN_FORCE},                    \
        {"jobs", 'j', true, CLI_RERUN_JOBS}, {"json", 0, false, CLI_RERUN_JSON},                   \
        {"quiet", 'q', false, CLI_RERUN_QUIET}, {"verbose", 'v', false, CLI_RERUN_VERBOSE},        \
        {"store", 0, true, CLI_RERUN_STORE}, {"redis", 0, true, CLI_RERUN_REDIS},                  \
        {"wait", 0, false, CLI_RERUN_WAIT}, {"resources", 0, true, CLI_RERUN_RESOURCES},      \
        {"prompts", 0, true, CLI_RERUN_PROMPTS}, {"no-cache", 0, false, CLI_RERUN_NO_CACHE}

/* Their lines in both commands' --help, after the command's own. */
#define CLI_RERUN_HELP_OPTIONS                                                                     \
    "      --wait          when only people's answers can let the run go on, keep\n"               \
    "                      waiting for them instead of pausing (exit 3)\n"                         \
    "      --no-cache      run tasks with 'cache' without looking their outputs up\n"          \
    "  -j, --jobs N        tasks running at once (default 0: one per core)\n"                      \
    "      --resources cpu=N,memory=SIZE,gpu=N\n"                                               \
    "                      what tasks with 'resources' may use at once (default:\n"               \
    "                      the machine's cores and memory, gpu=0)\n"                              \
    "      --prompts DIR   where 'prompt:' finds its files (default: $FLOW_PROMPTS,\n"           \
    "                      else prompts/ beside the workflow file)\n"                            \
    "      --json          print the whole run as JSON on stdout\n"                                \
    "  -q, --quiet         nothing on stderr but errors\n"                                         \
    "  -v, --verbose       also print the library's informational messages\n"                      \
    "      --store URL     where the run is kept (default: $FLOW_STORE, else\n"                    \
    "                      sqlite:.flow/flow.db)\n"                                                \
    "      --redis URL     where tasks with 'executor: remote' go (default: a redis://\n"          \
    "                      store, else $FLOW_REDIS)\n"                                             \
    "  -h, --help          show this help\n"

struct cli_rerun {
    const char *cmd;           /* "resume", "retry": for messages */
    const char *run_id;
    struct cli_session s;      /* the session's options (--jobs, --json, ...) */
    flow_run_options ropts;    /* the command's own (force, wait, ...); run_id,
                                * store, source and the observer are set here */
    /* The run as the store has it (flow_store_run), before its workflow file
     * is loaded: -1 to go on, else the exit status (after saying why). */
    int (*check)(const json_t *stored, void *udata);
    /* Start the run: flow_run_resume, flow_run_retry. */
    flow_run *(*start)(flow_engine *e, flow *f, const flow_run_options *o, void *udata,
                       flow_error *err);
    void *udata;
    int busy_exit;             /* the exit status when a live process runs it */
};

/* Take option `id` (one of CLI_RERUN_*, its value in a->value) into `c`:
 * -1 when taken, else the exit status (the help `text` printed, or a usage
 * error). */
int cli_rerun_option(struct cli_rerun *c, const struct cli_args *a, int id, const char *text);

/* Follow run c->run_id of the store again; returns the exit status. */
int cli_rerun_follow(struct cli_rerun *c);

#endif
