/* cli.h -- shared helpers of the `flow` command-line program: exit codes, messages,
 * a small option parser, and loading a workflow file with its diagnostics printed.
 * The program uses only include/flow.h, as curl's tool uses only libcurl.
 * Include this header first in every cli/ file: it sets the feature macros. */
#ifndef FLOW_CLI_CLI_H
#define FLOW_CLI_CLI_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* isatty, sigaction, localtime_r, TIOCGWINSZ, pthread */
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "flow.h"

/* Exit statuses of the program (docs/cli.md). */
enum {
    CLI_EXIT_OK = 0,           /* success; a run completed */
    CLI_EXIT_FAILED = 1,       /* the run failed */
    CLI_EXIT_USAGE = 2,        /* usage error or invalid workflow; nothing ran */
    CLI_EXIT_PAUSED = 3,       /* the run is paused (resumable) */
    CLI_EXIT_CANCELLED = 4,    /* the run was cancelled */
    CLI_EXIT_INTERRUPTED = 130 /* SIGINT/SIGTERM stopped the run (resumable) */
};

#if defined(__GNUC__)
#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define CLI_NORETURN __attribute__((noreturn))
#else
#define CLI_PRINTF(f, a)
#define CLI_NORETURN
#endif

/* A subcommand: `main` gets argv with argv[0] = the command's name and returns the
 * exit status. `help` is the full text of `flow NAME --help`. */
struct cli_command {
    const char *name;
    const char *summary; /* one line for `flow --help` */
    const char *help;
    int (*main)(int argc, char **argv);
};

extern const struct cli_command cli_cmd_run;
extern const struct cli_command cli_cmd_validate;
extern const struct cli_command cli_cmd_graph;
extern const struct cli_command cli_cmd_ctl;
extern const struct cli_command cli_cmd_resume;
extern const struct cli_command cli_cmd_retry;
extern const struct cli_command cli_cmd_status;
extern const struct cli_command cli_cmd_logs;
extern const struct cli_command cli_cmd_checkpoints;
extern const struct cli_command cli_cmd_pause;
extern const struct cli_command cli_cmd_cancel;
extern const struct cli_command cli_cmd_gc;
extern const struct cli_command cli_cmd_feedback;
extern const struct cli_command cli_cmd_worker;
extern const struct cli_command cli_cmd_workers;
extern const struct cli_command cli_cmd_serve;
extern const struct cli_command cli_cmd_schedules;
extern const struct cli_command cli_cmd_prompts;
extern const struct cli_command cli_cmd_completion;

/* The hidden `flow __complete runs|tasks RUN [--store URL]` of the
 * completion scripts (cmd_completion.c). */
int cli_complete_main(int argc, char **argv);

/* Print "flow: <message>" as one line on stderr. */
void cli_error(const char *fmt, ...) CLI_PRINTF(1, 2);
/* Print "flow: <message> (see 'flow CMD --help')" on stderr and return CLI_EXIT_USAGE;
 * `cmd` may be NULL for the top level. */
int cli_usage_error(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);

/* Allocation for the program: on failure print "flow: out of memory" and exit 1
 * (the library returns errors; only the program may decide to exit). */
void *cli_malloc(size_t size);
void *cli_realloc(void *ptr, size_t size);
char *cli_strdup(const char *s);

/* --- options -------------------------------------------------------------- */

/* One option of a command. `id` is what cli_next_opt() returns for it (> 0). */
struct cli_option {
    const char *name; /* long name without "--" */
    char short_name;  /* 0: none */
    bool has_arg;     /* takes a value: "--name V", "--name=V", "-x V", "-xV" */
    int id;
};

/* The state of parsing one command's arguments. Options may come before or after
 * the positional arguments; "--" ends the options. Positional arguments are
 * gathered at the front of argv (argv[1 .. npos]), in order. */
struct cli_args {
    const char *cmd; /* command name for messages */
    int argc;
    char **argv;
    const struct cli_option *opts; /* terminated by an entry with name NULL */
    int next;                      /* next index of argv to look at */
    bool only_pos;                 /* "--" seen */
    int npos;                      /* positional arguments gathered so far */
    const char *value;             /* value of the option just returned */
    const char *opt_text;          /* the option as written, e.g. "--jobs" */
};

void cli_args_init(struct cli_args *a, const char *cmd, int argc, char **argv,
                   const struct cli_option *opts);
/* The next option's id; 0 when all arguments are consumed; -1 after printing a
 * usage error (unknown option, missing or unexpected value): exit CLI_EXIT_USAGE. */
int cli_next_opt(struct cli_args *a);
/* The i-th positional argument (0-based), valid after cli_next_opt() returned 0. */
const char *cli_pos(const struct cli_args *a, int i);

/* After the options of a command that takes exactly one FILE: set *file and
 * return -1, or report the usage error and return the exit status. */
int cli_one_file(const struct cli_args *a, const char **file);

/* The same for a command that takes exactly one RUN id. */
int cli_one_run(const struct cli_args *a, const char **run_id);

/* An RFC 3339 UTC time of the store ("2026-12-01T08:00:00.123Z") as local
 * time, "2026-12-01 09:00:00", in `out`; "-" for null. */
const char *cli_short_time(const json_t *t, char *out, size_t size);

/* A duration for people: "0.4s", "12.3s", "3m04s", "2h10m", "3d04h"; "-"
 * when it is negative or not a number. Returns `out`. */
const char *cli_format_duration(double seconds, char *out, size_t size);

/* An activation for people: its task, and for an element of a foreach its
 * position and, `with_item`, the element: `resize[3] "b.png"`. The element
 * is compact JSON, cut at CLI_ITEM_CHARS characters (ending in "...").
 * `index` < 0: not an element; `item` NULL: null. Returns `out`. */
#define CLI_ITEM_CHARS 24
const char *cli_act_label(char *out, size_t size, const char *task, long index,
                          const json_t *item, bool with_item);
/* The element alone, as cli_act_label writes it. Returns `out`. */
const char *cli_item_text(const json_t *item, char *out, size_t size);

/* Parse a non-negative int option value; prints a usage error and returns false if
 * `text` is not one. */
bool cli_parse_count(const struct cli_args *a, const char *text, int *out);
/* --resources AMOUNTS of `cmd` into *out (the machine's, changed by AMOUNTS):
 * false after a usage error. */
bool cli_parse_resources(const char *cmd, const char *spec, flow_resources *out);
/* One "K=V" (the string V exactly as typed: "v=1.10" stays "1.10") or
 * "K:=JSON" (a JSON value, httpie's convention) of option --OPT of `cmd`
 * into object `obj`; false after a usage error. */
bool cli_add_kv(const char *cmd, const char *opt, json_t *obj, const char *kv);
/* --prompts DIR: the prompt directory of this process and what it starts
 * ($FLOW_PROMPTS); false after a usage error (not a directory). */
bool cli_set_prompts(const char *cmd, const char *dir);

/* Print `help` (a command's text) on stdout and return CLI_EXIT_OK. */
int cli_print_help(const char *help);

/* --- workflow files -------------------------------------------------------- */

/* Where diagnostic `e` is, "FILE:LINE:COL" (or "FILE", or "" when it names no
 * file), in `where`; returns the length of its message without that position
 * (the library appends it as " (FILE:LINE:COL)"). */
size_t cli_diag_split(const flow_error *e, char *where, size_t size);

/* Print a diagnostic on stderr in gcc's form, so that editors jump to it:
 * "FILE:LINE:COL: error: MESSAGE" or "FILE:LINE:COL: warning: MESSAGE";
 * "error: MESSAGE" when it names no file. */
void cli_print_diag(const flow_error *e, flow_severity sev);

/* Load and validate a workflow file. Prints every diagnostic on stderr (warnings
 * too, unless `quiet_warnings`). Returns the flow (caller frees it with
 * flow_free), or NULL after printing the errors. */
flow *cli_load_flow(const char *path, bool quiet_warnings);

/* --- JSON output ----------------------------------------------------------- */

/* Write `v` (any JSON value; NULL prints null) to `out`, indented by 2, with a
 * final newline. Returns false on a write error (after printing it). */
bool cli_print_json(FILE *out, const json_t *v);
/* The same on one line: compact, no indentation (JSON Lines). */
bool cli_print_json_line(FILE *out, const json_t *v);

/* Flush `out`; false after printing the error when writing failed. A reader
 * that went away (EPIPE) or a closed descriptor (EBADF) is not a failure: the
 * output just goes nowhere, and the exit status stays what it would be. */
bool cli_flush(FILE *out);

/* Make a closed stdout or stderr harmless, before anything else: SIGPIPE is
 * ignored (a write to a gone reader fails with EPIPE instead of killing the
 * program, and the run it follows), and a standard descriptor that is not
 * open gets /dev/null, so that no file opened later takes its number and
 * receives output meant for it. */
void cli_std_streams_init(void);

/* The command named `name`, or NULL. */
const struct cli_command *cli_find_command(const char *name);
/* The i-th command of `flow --help` (0-based), or NULL past the last. */
const struct cli_command *cli_command_at(size_t i);

#endif
