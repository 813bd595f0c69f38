/* cmd.h -- command tasks: one child process per attempt, supervised by the
 * engine's scheduler thread through poll(2).
 *
 * DESIGN
 * The scheduler thread calls flow__cmd_start(), adds the fds from
 * flow__cmd_pollfds() to its poll set, calls flow__cmd_handle() when any of
 * them is ready, and flow__cmd_finish() once flow__cmd_is_done() says so.
 * Nothing here blocks: pipes are non-blocking, the child is watched through a
 * pidfd. The child runs in its own process group (pgid = its pid) with
 * PR_SET_PDEATHSIG=SIGKILL, so it dies with the thread that started it -- the
 * scheduler thread, which lives as long as the engine -- and so with the
 * runner process, even on SIGKILL. When the leader exits, whatever it left in
 * its group is killed before the leader is reaped (its zombie keeps the pgid
 * from being reused meanwhile). stdout is kept up to `output_limit` bytes
 * (the rest is read and dropped, and the job knows it overflowed); stderr
 * keeps its last `stderr_tail` bytes. The FLOW_* files live in
 * `work_dir`: input and state are written before the spawn, output and
 * control are read after the exit.
 *
 * Not thread-safe: one job is used by one thread (the scheduler's).
 */
#ifndef FLOW_EXEC_CMD_H
#define FLOW_EXEC_CMD_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flow.h"

struct flow__workdir;

struct flow__cmd_spec {
    /* What to run: argv (NULL-terminated, rendered, no shell) when `shell`
     * is NULL; else `/bin/sh -c shell`. argv[0] without a '/' is looked up
     * in PATH (of the extra env if it sets PATH, else the runner's). */
    const char *const *argv;
    const char *shell;
    /* "NAME=VALUE" strings added over the runner's environment, or NULL. */
    const char *const *env;
    const char *cwd;        /* NULL: the runner's */
    /* Identity, exported as FLOW_RUN_ID, FLOW_TASK, FLOW_ACTIVATION, FLOW_ATTEMPT. */
    const char *run_id;
    const char *task;
    uint64_t activation;
    int attempt;
    /* Directory (exists, private to the run) for the FLOW_* files. */
    const char *work_dir;
    /* The same directory made by flow__workdir_make (NULL: work_dir is
     * opened for each attempt): its descriptor is used for every file, so a
     * work_dir path that a task swapped for a link leads nowhere. */
    const struct flow__workdir *workdir;
    /* Task input; written to FLOW_INPUT. Borrowed. */
    json_t *input;
    /* Path of a file that already holds the state JSON (the caller shares
     * one file per state version); exported as FLOW_STATE. */
    const char *state_path;
    /* When true, the input JSON is also fed to the child's stdin; else
     * stdin is /dev/null. */
    bool stdin_input;
    flow_output_mode output_mode;
    size_t output_limit; /* 0: 16 MiB */
    size_t stderr_tail;  /* 0: 64 KiB */
};

struct flow__cmd; /* one running attempt */

/* Spawn the child. On failure nothing is left running and no file is left
 * behind; `err` names the command and the reason ("command not found:
 * 'frobnicate'"). */
flow_err flow__cmd_start(const struct flow__cmd_spec *spec, struct flow__cmd **out,
                         flow_error *err);

/* Most entries flow__cmd_pollfds() fills: the pidfd, stdout, stderr. */
#define FLOW__CMD_POLLFDS_MAX 3

/* Fill up to `max` pollfd entries (the pidfd and any open pipe); returns the
 * count. The entries' `events` are set; `revents` is for the caller. */
int flow__cmd_pollfds(struct flow__cmd *c, struct pollfd *fds, int max);

/* Act on the revents of the entries flow__cmd_pollfds() filled (same order
 * and count): read pipes, reap the child if it exited. */
void flow__cmd_handle(struct flow__cmd *c, const struct pollfd *fds, int count);

/* True once the child has exited and been reaped, and its pipes drained. */
bool flow__cmd_is_done(const struct flow__cmd *c);

/* Signal the whole process group (SIGTERM for a timeout or cancel, then
 * SIGKILL after the grace period); no-op once done. */
void flow__cmd_kill(struct flow__cmd *c, int sig);

/* The pid of the child (the process group id too). */
int flow__cmd_pid(const struct flow__cmd *c);

/* Outcome of a finished attempt. */
struct flow__cmd_result {
    bool ok;           /* exit 0 and the output was usable */
    int exit_status;   /* when exited normally, else -1 */
    int term_signal;   /* when killed by a signal, else 0 */
    json_t *output;    /* ok: new reference (FLOW_OUTPUT wins over stdout) */
    json_t *directives;/* array of the FLOW_CONTROL objects in order (new ref,
                        * maybe empty); NULL if the file had a bad line --
                        * then ok is false and error says which line */
    char *error;       /* !ok: one line: "exited with status 3: <last stderr
                        * line>" / "killed by signal 9" / "stdout is over
                        * the 16 MiB output limit" ...; flow__free it */
    char *stderr_tail; /* the last bytes of stderr (flow__free), or NULL */
    char *stdout_tail; /* the last bytes of stdout when it is not the output
                        * (FLOW_OUTPUT was used, or the command failed), or
                        * NULL (flow__free) */
    bool final;        /* !ok: not to be retried (a remote C function's
                        * flow_ctx_fail_final) */
    bool retry_set;    /* !ok: the next retry waits retry_after seconds */
    double retry_after;
};

/* After flow__cmd_is_done(): fill `res`, remove the attempt's files and free
 * the job. `timed_out` makes the error say so. Always frees `c`. */
void flow__cmd_finish(struct flow__cmd *c, bool timed_out, struct flow__cmd_result *res);

/* Free what a result holds. */
void flow__cmd_result_cleanup(struct flow__cmd_result *res);

/* The directives in `len` bytes of $FLOW_CONTROL text (not NUL-terminated):
 * one JSON object per non-empty line, in order, as a new array. NULL on a
 * bad line or out of memory, with the reason ("bad directive in
 * $FLOW_CONTROL line 2: ...") in *error (flow__free it). What the
 * directives mean is the engine's to check. */
json_t *flow__cmd_parse_control(const char *text, size_t len, char **error);
/* `len` bytes of output text as `mode` says (auto: JSON when it is JSON,
 * else the trimmed text; null when empty), as a command's stdout becomes
 * its output; NULL with *error (flow__free) when it cannot be. */
json_t *flow__cmd_parse_output(const char *text, size_t len, flow_output_mode mode, char **error);

/* Force-stop and free a job that is not done (engine shutdown): SIGKILL the
 * group, reap, remove files. */
void flow__cmd_abort(struct flow__cmd *c);

#endif
