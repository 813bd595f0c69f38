/* follow.h -- what `flow run` and `flow resume` share: opening the engine and
 * the store, following a run to its end with progress on stderr and signals
 * handled, and saying how it ended (summary, result, exit status). */
#ifndef FLOW_CLI_FOLLOW_H
#define FLOW_CLI_FOLLOW_H

#include "cli.h"
#include "progress.h"

struct cli_session {
    /* set by the caller */
    bool quiet;
    bool verbose;
    bool json;
    int jobs;
    const char *store_url; /* NULL: flow_store_default_url() */
    const char *redis_url; /* --redis; NULL: a redis:// store, else $FLOW_REDIS */
    bool no_bar;           /* progress as lines even on a terminal */
    bool has_resources;    /* --resources: what tasks may use at once */
    flow_resources resources;
    /* set by cli_session_open */
    struct progress *prog;
    flow_engine *engine;
    flow_store *store;
};

/* Open the store and the engine, set up logging and progress for a flow of
 * `task_count` tasks. Returns -1 when ready, else the exit status (after
 * printing why). */
int cli_session_open(struct cli_session *s, size_t task_count);
void cli_session_close(struct cli_session *s);

/* Open just the store named by `url` (NULL: the default); prints the error
 * and returns NULL when it cannot. */
flow_store *cli_open_store(const char *url);
/* The same, giving the error's code (FLOW_EINVAL: a bad URL). */
flow_store *cli_open_store_code(const char *url, flow_err *code);
/* Open a store that must exist already (commands that look at runs never
 * create one); prints why not and sets *status to the exit status. */
flow_store *cli_open_existing_store(const char *url, int *status);
/* The exit status for a failed store call: 2 when what was asked is wrong
 * (no such run, a bad URL), else 1. */
int cli_store_error_status(flow_err code);

/* Signals: SIGINT/SIGTERM ask the run to stop (resumable); a third exits. */
void cli_signals_install(void);
void cli_signals_restore(void);
/* Has SIGINT or SIGTERM come since cli_signals_install? */
bool cli_signal_received(void);

/* Follow `run` to its end (progress, signals), print the summary and the
 * result, free the run; returns the exit status. `t0` from cli_now(). */
int cli_follow(struct cli_session *s, flow_run *run, double t0);

/* The exit status when a run cannot start: 2 when what was asked is wrong,
 * 1 when the system failed. */
int cli_start_error_status(flow_err code);

/* The exit status a run that ended with `status` and `error` gets. */
int cli_run_exit_status(flow_run_status status, const char *error);
/* How a run that gets exit status `rc` ended, in a word: "completed",
 * "failed", "paused", "cancelled", "interrupted". */
const char *cli_exit_word(int rc);

double cli_now(void);

/* Commands that read or write a store share --help, --json and --store. */
enum { CLI_OPT_HELP = 1, CLI_OPT_JSON, CLI_OPT_STORE, CLI_OPT_EXTRA };
#define CLI_STORE_OPTIONS                                                                          \
    {"help", 'h', false, CLI_OPT_HELP}, {"json", 0, false, CLI_OPT_JSON},                          \
        {"store", 0, true, CLI_OPT_STORE}

struct cli_store_args {
    struct cli_args args; /* positional arguments after parsing */
    const char *store_url;
    bool json;
};

/* Parse a store command's argv with `opts` (CLI_STORE_OPTIONS and its own,
 * ids from CLI_OPT_EXTRA, which go to `extra`: it returns -1 to go on or an
 * exit status). Returns -1 when parsed, else the exit status (help shown,
 * usage error printed). */
int cli_parse_store_args(struct cli_store_args *sa, const char *cmd, int argc, char **argv,
                         const struct cli_option *opts, const char *help,
                         int (*extra)(struct cli_args *a, int id, void *udata), void *udata);

/* For a command of one RUN: after cli_parse_store_args, take the RUN id and
 * open the store it is in. Returns the store, or NULL with *status set
 * (usage error printed, or why the store cannot be opened). */
flow_store *cli_store_for_run(struct cli_store_args *sa, const char **run_id, int *status);

/* $FLOW_BIN names this program for command tasks (flow ctl). */
void cli_export_flow_bin(void);

#endif
