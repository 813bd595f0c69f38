/* cmd_run.c -- `flow run FILE [options]`: load a workflow file, start a run with the
 * inputs given, follow it to its end with live progress on stderr, print its result
 * on stdout, and exit with a status that says how it ended.
 * Every run is journaled in the store (--store, $FLOW_STORE, default
 * sqlite:.flow/flow.db), so that `flow resume` can continue it; following and
 * signals are in follow.c. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "each.h"
#include "follow.h"

enum {
    OPT_HELP = 1,
    OPT_INPUT,
    OPT_INPUTS,
    OPT_INPUTS_EACH,
    OPT_ID,
    OPT_START,
    OPT_JOBS,
    OPT_JSON,
    OPT_QUIET,
    OPT_VERBOSE,
    OPT_STORE,
    OPT_DETACH,
    OPT_WAIT,
    OPT_DURABILITY,
    OPT_CHECKPOINT_EVERY,
    OPT_REDIS,
    OPT_RESOURCES,
    OPT_PROMPTS,
    OPT_NO_CACHE
};

static const struct cli_option options[] = {
    {"help", 'h', false, OPT_HELP},
    {"input", 'i', true, OPT_INPUT},
    {"inputs", 0, true, OPT_INPUTS},
    {"inputs-each", 0, true, OPT_INPUTS_EACH},
    {"id", 0, true, OPT_ID},
    {"start", 0, true, OPT_START},
    {"jobs", 'j', true, OPT_JOBS},
    {"json", 0, false, OPT_JSON},
    {"quiet", 'q', false, OPT_QUIET},
    {"verbose", 'v', false, OPT_VERBOSE},
    {"store", 0, true, OPT_STORE},
    {"detach", 0, false, OPT_DETACH},
    {"wait", 0, false, OPT_WAIT},
    {"durability", 0, true, OPT_DURABILITY},
    {"checkpoint-every", 0, true, OPT_CHECKPOINT_EVERY},
    {"redis", 0, true, OPT_REDIS},
    {"resources", 0, true, OPT_RESOURCES},
    {"prompts", 0, true, OPT_PROMPTS},
    {"no-cache", 0, false, OPT_NO_CACHE},
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow run FILE [--input K=V | K:=JSON]... [--inputs FILE.json] [--id RUN]\n"
    "                [--inputs-each FILE.jsonl] [--start TASK] [--jobs N] [--json]\n"
    "                [--quiet] [--verbose] [--store URL] [--detach]\n"
    "                [--durability normal|strict] [--checkpoint-every DURATION]\n"
    "                [--wait] [--no-cache] [--redis URL]\n"
    "\n"
    "Start a run of a workflow file and follow it to its end. The run id is printed\n"
    "first on stderr ('run ID'), then live progress, then a summary line; the run's\n"
    "result is printed as JSON on stdout. Every step is journaled in the store, so a\n"
    "run that stops (a crash, a kill, Ctrl-C, 'flow pause') continues with\n"
    "'flow resume RUN'.\n"
    "\n"
    "Options:\n"
    "  -i, --input K=V     run input K, the string V exactly as typed (v=1.10 gives\n"
    "                      \"1.10\"); repeatable\n"
    "  -i, --input K:=JSON run input K, a JSON value (n:=12, ok:=true,\n"
    "                      tags:='[\"a\",\"b\"]'); bad JSON is a usage error (exit 2)\n"
    "      --inputs FILE   run inputs from a JSON object file; --input overrides its keys\n"
    "      --inputs-each FILE.jsonl\n"
    "                      one run per line of FILE.jsonl (each a JSON object of\n"
    "                      inputs over --inputs and --input), all at once; see below\n"
    "      --id RUN        the run's id (default: a new unique id); a run with that id\n"
    "                      already in the store is not started again (exit 2)\n"
    "      --start TASK    run TASK first, with the inputs, instead of the start tasks\n"
    "  -j, --jobs N        tasks running at once (default 0: one per core)\n"
    "      --resources cpu=N,memory=SIZE,gpu=N\n"
    "                      what tasks with 'resources' may use at once (default: the\n"
    "                      machine's cores and memory, gpu=0)\n"
    "      --prompts DIR   where 'prompt:' finds its files (default: $FLOW_PROMPTS,\n"
    "                      else prompts/ beside the workflow file)\n"
    "      --json          print the whole run as JSON on stdout ({id, flow, status,\n"
    "                      result, error, tasks: [...]}) instead of the result\n"
    "  -q, --quiet         nothing on stderr but errors: no run id, no progress; the\n"
    "                      summary only when the run failed or was cancelled\n"
    "  -v, --verbose       also print the library's informational messages\n"
    "      --store URL     where runs are kept: sqlite:PATH (default: $FLOW_STORE, else\n"
    "                      the nearest .flow/flow.db here or above, else one made\n"
    "                      here), disk:DIR, memory: (nothing kept)\n"
    "      --detach        start the run in the background, print its id on stdout\n"
    "                      and exit 0; follow it with 'flow status RUN'\n"
    "      --durability L  normal (default: survives any crash of this process) or\n"
    "                      strict (survives power loss: every commit synced to disk)\n"
    "      --checkpoint-every DURATION\n"
    "                      take a checkpoint this often (5m, 30s; the file's\n"
    "                      'checkpoint_every')\n"
    "      --wait          when only people's answers (flow feedback) can let the run\n"
    "                      go on, keep waiting for them instead of pausing (exit 3)\n"
    "      --no-cache      run tasks with 'cache' without looking their outputs up\n"
    "                      (what they compute still replaces the cached entries)\n"
    "      --redis URL     where tasks with 'executor: remote' go (redis://HOST:PORT/DB;\n"
    "                      default: a redis:// store, else $FLOW_REDIS); see 'flow worker'\n"
    "  -h, --help          show this help\n"
    "\n"
    "Progress: on a terminal, one line redrawn in place with the tasks done, running\n"
    "and failed, failures and retries printed above it; otherwise one line per event:\n"
    "  HH:MM:SS.mmm started   TASK (attempt N)\n"
    "  HH:MM:SS.mmm completed TASK (0.12s)      (or '(cached)': from the cache)\n"
    "  HH:MM:SS.mmm failed    TASK: ERROR\n"
    "  HH:MM:SS.mmm retrying  TASK in 1.0s (attempt N): ERROR\n"
    "  HH:MM:SS.mmm skipped   TASK\n"
    "  HH:MM:SS.mmm cancelled TASK\n"
    "  HH:MM:SS.mmm emitted   TASK -> LABEL\n"
    "\n"
    "SIGINT or SIGTERM stops the run: running commands are terminated, 'interrupted'\n"
    "is printed and the exit status is 130; the run is paused and 'flow resume RUN'\n"
    "runs what was interrupted again. A third signal exits at once.\n"
    "\n"
    "With --inputs-each, the runs share the engine (--jobs bounds the tasks running\n"
    "across all of them) and there is no per-task progress: a line 'run ID (line N)\n"
    "STATUS in 1.23s[: ERROR]' as each run ends, then a tally. A line that is not a\n"
    "JSON object is reported as FILE:LINE: error: ... and does not run; the others\n"
    "do. stdout gets one line per line of the file, in order: the result as compact\n"
    "JSON (null when the run did not complete), or with --json {line, id, status,\n"
    "result, error}. The exit status is the worst: 130 > 2 (a line did not run) > 1 >\n"
    "4 > 3 > 0. --id and --detach are refused with it.\n"
    "\n"
    "Exit status: 0 completed, 1 failed, 2 usage error or invalid workflow (nothing\n"
    "ran), 3 paused, 4 cancelled, 130 interrupted.\n";

struct run_args {
    const char *file;
    const char **kv; /* --input values, in order (point into argv) */
    size_t kv_count;
    const char **files; /* --inputs files, in order */
    size_t file_count;
    const char *each;   /* --inputs-each FILE.jsonl */
    const char *run_id;
    const char *start_task;
    int jobs;
    bool has_resources;
    flow_resources resources;
    bool json;
    bool quiet;
    bool verbose;
    bool detach;
    bool wait;
    bool no_cache;
    const char *store;
    const char *redis;
    flow_durability durability;
    double checkpoint_every;
};

/* ------------------------------------------------------------------------ */
/* Options and inputs                                                        */

static void push(const char ***list, size_t *count, const char *s)
{
    *list = cli_realloc((void *)*list, (*count + 1) * sizeof(**list));
    (*list)[(*count)++] = s;
}

/* Parse the command line into `ra`; returns -1 to go on, else an exit status. */
static int parse_args(struct run_args *ra, int argc, char **argv)
{
    struct cli_args a;
    int id;

    cli_args_init(&a, "run", argc, argv, options);
    while ((id = cli_next_opt(&a)) > 0) {
        switch (id) {
        case OPT_HELP:
            return cli_print_help(help);
        case OPT_INPUT:
            push(&ra->kv, &ra->kv_count, a.value);
            break;
        case OPT_INPUTS:
            push(&ra->files, &ra->file_count, a.value);
            break;
        case OPT_INPUTS_EACH:
            ra->each = a.value;
            break;
        case OPT_ID:
            if (!a.value[0]) {
                return cli_usage_error("run", "option '--id' of 'run' needs a non-empty RUN");
            }
            ra->run_id = a.value;
            break;
        case OPT_START:
            if (!a.value[0]) {
                return cli_usage_error("run", "option '--start' of 'run' needs a TASK");
            }
            ra->start_task = a.value;
            break;
        case OPT_JOBS:
            if (!cli_parse_count(&a, a.value, &ra->jobs)) {
                return CLI_EXIT_USAGE;
            }
            break;
        case OPT_JSON:
            ra->json = true;
            break;
        case OPT_PROMPTS:
            if (!cli_set_prompts("run", a.value)) {
                return CLI_EXIT_USAGE;
            }
            break;
        case OPT_RESOURCES:
            if (!cli_parse_resources("run", a.value, &ra->resources)) {
                return CLI_EXIT_USAGE;
            }
            ra->has_resources = true;
            break;
        case OPT_QUIET:
            ra->quiet = true;
            break;
        case OPT_VERBOSE:
            ra->verbose = true;
            break;
        case OPT_REDIS:
            ra->redis = a.value;
            break;
        case OPT_STORE:
            ra->store = a.value;
            break;
        case OPT_DETACH:
            ra->detach = true;
            break;
        case OPT_DURABILITY:
            if (strcmp(a.value, "normal") == 0) {
                ra->durability = FLOW_DURABILITY_NORMAL;
            } else if (strcmp(a.value, "strict") == 0) {
                ra->durability = FLOW_DURABILITY_STRICT;
            } else {
                return cli_usage_error("run", "option '--durability' of 'run' is 'normal' or "
                                              "'strict', not '%s'", a.value);
            }
            break;
        case OPT_CHECKPOINT_EVERY:
            if (flow_parse_duration(a.value, &ra->checkpoint_every) != FLOW_OK ||
                ra->checkpoint_every <= 0) {
                return cli_usage_error("run", "option '--checkpoint-every' of 'run' needs a "
                                              "duration like 30s or 5m, not '%s'", a.value);
            }
            break;
        case OPT_WAIT:
            ra->wait = true;
            break;
        case OPT_NO_CACHE:
            ra->no_cache = true;
            break;
        default:
            break;
        }
    }
    if (id < 0) {
        return CLI_EXIT_USAGE;
    }
    /* Every line is a run of its own, with an id of its own, in this process. */
    if (ra->each && ra->run_id) {
        return cli_usage_error("run", "options '--id' and '--inputs-each' of 'run' do not go "
                                      "together: each line's run gets an id of its own");
    }
    if (ra->each && ra->detach) {
        return cli_usage_error("run", "options '--detach' and '--inputs-each' of 'run' do not "
                                      "go together");
    }
    return cli_one_file(&a, &ra->file);
}

static bool merge_inputs_file(json_t *inputs, const char *path)
{
    json_error_t jerr;
    json_t *v = json_load_file(path, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    char text[sizeof(jerr.text)];

    if (!v) {
        progress_one_line(text, sizeof(text), jerr.text);
        if (jerr.line > 0) {
            flow_error e;

            memset(&e, 0, sizeof(e));
            snprintf(e.message, sizeof(e.message), "invalid JSON in inputs file: %s", text);
            snprintf(e.file, sizeof(e.file), "%s", path);
            e.line = jerr.line;
            e.column = jerr.column;
            cli_print_diag(&e, FLOW_SEV_ERROR);
        } else {
            cli_error("cannot read inputs file '%s': %s", path, text);
        }
        return false;
    }
    if (!json_is_object(v)) {
        cli_error("inputs file '%s' must hold a JSON object", path);
        json_decref(v);
        return false;
    }
    json_object_update(inputs, v);
    json_decref(v);
    return true;
}

static bool add_input(json_t *inputs, const char *kv)
{
    return cli_add_kv("run", "input", inputs, kv);
}

/* The run inputs: --inputs files first, then each --input over them. */
static json_t *build_inputs(const struct run_args *ra)
{
    json_t *inputs = json_object();
    size_t i;

    if (!inputs) {
        cli_error("out of memory");
        return NULL;
    }
    for (i = 0; i < ra->file_count; i++) {
        if (!merge_inputs_file(inputs, ra->files[i])) {
            goto out_free;
        }
    }
    for (i = 0; i < ra->kv_count; i++) {
        if (!add_input(inputs, ra->kv[i])) {
            goto out_free;
        }
    }
    return inputs;

out_free:
    json_decref(inputs);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Detaching                                                                 */

/* Fork: the parent waits on a pipe for the child's first line ("run ID", or
 * "error MESSAGE"), prints it and exits; the child leaves the terminal and
 * runs the flow. Returns -1 in the child (go on), else the parent's exit
 * status. `*report_fd` gets the child's end of the pipe. */
static int detach(int *report_fd)
{
    int fds[2];
    pid_t pid;
    char line[1024];
    size_t len = 0;
    ssize_t n;

    fflush(NULL);
    if (pipe(fds) != 0) {
        cli_error("cannot detach: %s", strerror(errno));
        return CLI_EXIT_FAILED;
    }
    pid = fork();
    if (pid < 0) {
        cli_error("cannot detach: %s", strerror(errno));
        return CLI_EXIT_FAILED;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);

        close(fds[0]);
        setsid();
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
            if (null > STDERR_FILENO) {
                close(null);
            }
        }
        *report_fd = fds[1];
        return -1;
    }
    close(fds[1]);
    while (len < sizeof(line) - 1 && (n = read(fds[0], line + len, sizeof(line) - 1 - len)) != 0) {
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            break;
        }
        len += (size_t)n;
        if (memchr(line, '\n', len)) {
            break;
        }
    }
    close(fds[0]);
    line[len] = '\0';
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, "run ", 4) == 0) {
        printf("%s\n", line + 4);
        return cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    }
    if (strncmp(line, "error ", 6) == 0 && line[6]) {
        cli_error("%s", line + 7);
        return line[6] == '2' ? CLI_EXIT_USAGE : CLI_EXIT_FAILED;
    }
    cli_error("the detached run did not start");
    return CLI_EXIT_FAILED;
}

/* The detached child tells its parent how the start went: `line` is "run ID"
 * or "error CODE MESSAGE" (CODE 1 or 2, the exit status to use). */
static void report(int fd, const char *line)
{
    size_t n = strlen(line);

    if (fd < 0) {
        return;
    }
    if (write(fd, line, n) < 0 || write(fd, "\n", 1) < 0) {
        /* the parent is gone: nobody to tell */
    }
    close(fd);
}

/* ------------------------------------------------------------------------ */
/* Running                                                                   */

/* The session of the options: returns -1 when open, else the exit status. */
static int open_session(const struct run_args *ra, flow *f, struct cli_session *s)
{
    memset(s, 0, sizeof(*s));
    s->quiet = ra->quiet || ra->detach;
    s->verbose = ra->verbose;
    s->json = ra->json;
    s->jobs = ra->jobs;
    s->has_resources = ra->has_resources;
    s->resources = ra->resources;
    s->store_url = ra->store;
    s->redis_url = ra->redis;
    s->no_bar = ra->each != NULL; /* a bar of many runs' tasks would mislead */
    return cli_session_open(s, flow_task_count(f));
}

/* The options every run of the command gets; `source` (PATH_MAX) holds the
 * file's absolute path. */
static void run_options(const struct run_args *ra, const struct cli_session *s,
                        flow_run_options *ropts, char *source)
{
    memset(ropts, 0, sizeof(*ropts));
    ropts->start_task = ra->start_task;
    ropts->store = s->store;
    ropts->source = realpath(ra->file, source) ? source : ra->file;
    ropts->durability = ra->durability;
    ropts->checkpoint_every = ra->checkpoint_every;
    ropts->wait = ra->wait;
    ropts->no_cache = ra->no_cache;
}

/* --inputs-each: a run per line of the file, over the inputs of the options. */
static int run_each(const struct run_args *ra, flow *f, const json_t *inputs)
{
    struct cli_session s;
    flow_run_options ropts;
    struct cli_each *b;
    char source[PATH_MAX];
    int rc;

    b = cli_each_read(ra->each, inputs, &rc);
    if (!b) {
        return rc;
    }
    rc = open_session(ra, f, &s);
    if (rc < 0) {
        run_options(ra, &s, &ropts, source);
        rc = cli_each_follow(b, &s, f, &ropts);
        cli_session_close(&s);
    }
    cli_each_free(b);
    return rc;
}

static int run_flow(const struct run_args *ra, flow *f, json_t *inputs)
{
    struct cli_session s;
    flow_run_options ropts;
    flow_run *run;
    flow_error err;
    char source[PATH_MAX];
    int report_fd = -1;
    double t0;
    int rc;

    if (ra->detach) {
        /* The store is checked here, where errors can still be seen. */
        flow_err code;
        flow_store *st = cli_open_store_code(ra->store, &code);

        if (!st) {
            return code == FLOW_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAILED;
        }
        if (!flow_store_is_durable(st)) {
            cli_error("--detach needs a store other processes can see: '%s' keeps the run in "
                      "the detached process only",
                      flow_store_url(st));
            flow_store_close(st);
            return CLI_EXIT_USAGE;
        }
        flow_store_close(st);
        rc = detach(&report_fd);
        if (rc >= 0) {
            return rc;
        }
    }
    rc = open_session(ra, f, &s);
    if (rc >= 0) {
        report(report_fd, "error 1cannot open the store or the engine");
        return rc;
    }
    memset(&err, 0, sizeof(err));
    run_options(ra, &s, &ropts, source);
    ropts.inputs = inputs;
    ropts.run_id = ra->run_id;
    ropts.on_event = s.prog ? progress_on_event : NULL;
    ropts.event_udata = s.prog;
    cli_signals_install();
    t0 = cli_now();
    run = flow_run_start(s.engine, f, &ropts, &err);
    if (!run) {
        cli_signals_restore();
        rc = cli_start_error_status(err.code);
        if (report_fd >= 0) {
            char msg[600];

            snprintf(msg, sizeof(msg), "error %d%s", rc == CLI_EXIT_USAGE ? 2 : 1,
                     err.message[0] ? err.message : flow_strerror(err.code));
            report(report_fd, msg);
        } else {
            cli_error("%s", err.message[0] ? err.message : flow_strerror(err.code));
        }
        cli_session_close(&s);
        return rc;
    }
    if (report_fd >= 0) {
        char line[128];

        snprintf(line, sizeof(line), "run %s", flow_run_id(run));
        report(report_fd, line);
    }
    rc = cli_follow(&s, run, t0);
    cli_session_close(&s);
    return rc;
}

static int run_main(int argc, char **argv)
{
    struct run_args ra;
    json_t *inputs;
    flow *f;
    int rc;

    memset(&ra, 0, sizeof(ra));
    rc = parse_args(&ra, argc, argv);
    if (rc >= 0) {
        goto out_args;
    }
    inputs = build_inputs(&ra);
    if (!inputs) {
        rc = CLI_EXIT_USAGE;
        goto out_args;
    }
    f = cli_load_flow(ra.file, ra.quiet);
    if (!f) {
        rc = CLI_EXIT_USAGE;
        goto out_inputs;
    }
    rc = ra.each ? run_each(&ra, f, inputs) : run_flow(&ra, f, inputs);
    flow_free(f);

out_inputs:
    json_decref(inputs);
out_args:
    free((void *)ra.kv);
    free((void *)ra.files);
    return rc;
}

const struct cli_command cli_cmd_run = {
    "run",
    "start a run of a workflow file and follow it to its end",
    help,
    run_main,
};
