/* cmd_ctl.c -- `flow ctl SUB ...`: directives for scripts running as command tasks
 * (docs/cli.md). Each call appends one JSON object and a newline to the file
 * named by $FLOW_CONTROL, in a single write() on an O_APPEND descriptor, so that
 * concurrent writers (a script's background jobs) never interleave; `flow ctl
 * output` replaces $FLOW_OUTPUT instead. The core reads the file when the task
 * exits and applies the directives only if it succeeded. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One subcommand: `args` is the usage after "flow ctl NAME", `min`/`max` count
 * positional arguments (-1: no limit). */
struct ctl_sub {
    const char *name;
    const char *args;
    int min;
    int max;
    const char *summary;
    const char *shape;   /* the line appended to $FLOW_CONTROL; NULL: none */
    const char *details; /* more lines of `flow ctl NAME --help`, or "" */
    json_t *(*build)(int npos, char **pos, const char *then);
};

/* ------------------------------------------------------------------------ */
/* Messages: "flow ctl: ..." on stderr, one line                             */

static void ctl_error(const char *fmt, ...) CLI_PRINTF(1, 2);
static int ctl_usage(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);

static void ctl_error(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fputs("flow ctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* A usage error of `flow CMD` ("ctl" or "ctl SUB"): returns CLI_EXIT_USAGE. */
static int ctl_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fputs("flow ctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'flow %s --help')\n", cmd);
    return CLI_EXIT_USAGE;
}

/* ------------------------------------------------------------------------ */
/* Values                                                                    */

/* JSON when `text` parses as JSON (any value), else the text as a string (a
 * script's directive says JSON; a word it writes bare is meant as text). NULL
 * after printing an error (text not UTF-8). */
static json_t *value_arg(const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);

    if (!v) {
        v = json_string(text);
    }
    if (!v) {
        ctl_error("'%s' is neither JSON nor valid UTF-8 text", text);
    }
    return v;
}

/* A name (key, task, event) as a JSON string; NULL after printing an error. */
static json_t *name_arg(const char *what, const char *text)
{
    json_t *v = json_string(text);

    if (!v) {
        ctl_error("the %s '%s' is not valid UTF-8", what, text);
    }
    return v;
}

/* {outer: inner}, taking `inner`; NULL (after printing) when `inner` is NULL. */
static json_t *wrap(const char *outer, json_t *inner)
{
    json_t *o;

    if (!inner) {
        return NULL;
    }
    o = json_object();
    if (!o || json_object_set_new(o, outer, inner) != 0) {
        json_decref(o);
        ctl_error("out of memory");
        return NULL;
    }
    return o;
}

/* Set o[key] = v, taking `v`; false (after printing, `o` freed) on failure. */
static bool put(json_t *o, const char *key, json_t *v)
{
    if (!v) {
        json_decref(o);
        return false;
    }
    if (json_object_set_new(o, key, v) != 0) {
        json_decref(o);
        ctl_error("out of memory");
        return false;
    }
    return true;
}

static json_t *new_object(void)
{
    json_t *o = json_object();

    if (!o) {
        ctl_error("out of memory");
    }
    return o;
}

/* ------------------------------------------------------------------------ */
/* Directives                                                                */

/* {OP: {KEY: VALUE}} for the state updates; VALUE as `value_arg` reads it,
 * or `dflt` when not given. */
static json_t *build_update(const char *op, int npos, char **pos, const char *dflt)
{
    json_t *o;

    if (!pos[0][0]) {
        char cmd[32];
        snprintf(cmd, sizeof(cmd), "ctl %s", op);
        ctl_usage(cmd, "%s needs a non-empty KEY", op);
        return NULL;
    }
    o = name_arg("KEY", pos[0]); /* the check of a key's UTF-8 */
    if (!o) {
        return NULL;
    }
    json_decref(o);
    o = new_object();
    if (!o || !put(o, pos[0], value_arg(npos > 1 ? pos[1] : dflt))) {
        return NULL;
    }
    return wrap(op, o);
}

static json_t *build_set(int npos, char **pos, const char *then)
{
    (void)then;
    return build_update("set", npos, pos, NULL);
}

static json_t *build_incr(int npos, char **pos, const char *then)
{
    (void)then;
    if (npos > 1) {
        json_t *n = json_loads(pos[1], JSON_DECODE_ANY, NULL);
        bool number = json_is_number(n);
        json_decref(n);
        if (!number) {
            ctl_usage("ctl incr", "incr needs a number, not '%s'", pos[1]);
            return NULL;
        }
    }
    return build_update("incr", npos, pos, "1");
}

static json_t *build_append(int npos, char **pos, const char *then)
{
    (void)then;
    return build_update("append", npos, pos, NULL);
}

static json_t *build_merge(int npos, char **pos, const char *then)
{
    (void)then;
    json_t *v = json_loads(pos[1], 0, NULL);
    bool object = json_is_object(v);
    json_decref(v);
    if (!object) {
        ctl_usage("ctl merge", "merge needs a JSON object, not '%s'", pos[1]);
        return NULL;
    }
    return build_update("merge", npos, pos, NULL);
}

/* {"NAME": {"FIELD": name, "VFIELD": value}}, the value when given. */
static json_t *named_with_value(const char *directive, const char *field, const char *what,
                                const char *vfield, int npos, char **pos)
{
    json_t *o;

    if (!pos[0][0]) {
        char cmd[32];

        snprintf(cmd, sizeof(cmd), "ctl %s", directive);
        ctl_usage(cmd, "%s needs a non-empty %s", directive, what);
        return NULL;
    }
    o = new_object();
    if (!o || !put(o, field, name_arg(what, pos[0]))) {
        return NULL;
    }
    if (npos > 1 && !put(o, vfield, value_arg(pos[1]))) {
        return NULL;
    }
    return o;
}

static json_t *build_emit(int npos, char **pos, const char *then)
{
    (void)then;
    return wrap("emit", named_with_value("emit", "event", "EVENT", "data", npos, pos));
}

static json_t *build_next_task(int npos, char **pos, const char *then)
{
    (void)then;
    return wrap("next_task", named_with_value("next-task", "task", "TASK", "input", npos, pos));
}

/* {"NAME": {"FIELD": value}}, or {"NAME": {}} without a value. */
static json_t *optional_value(const char *directive, const char *field, int npos, char **pos)
{
    json_t *o = new_object();

    if (!o || (npos > 0 && !put(o, field, value_arg(pos[0])))) {
        return NULL;
    }
    return wrap(directive, o);
}

static json_t *build_next_iteration(int npos, char **pos, const char *then)
{
    (void)then;
    return optional_value("next_iteration", "input", npos, pos);
}

static json_t *build_terminate(int npos, char **pos, const char *then)
{
    (void)then;
    return optional_value("terminate", "result", npos, pos);
}

/* TASK or TASK=JSON, one branch each. */
static json_t *build_parallel(int npos, char **pos, const char *then)
{
    json_t *branches = json_array();
    json_t *d;
    int i;

    if (!branches) {
        ctl_error("out of memory");
        return NULL;
    }
    for (i = 0; i < npos; i++) {
        char *eq = strchr(pos[i], '=');
        json_t *b = new_object();

        if (eq) {
            *eq = '\0';
        }
        if (!pos[i][0]) {
            json_decref(b);
            json_decref(branches);
            ctl_usage("ctl parallel", "parallel needs TASK or TASK=JSON, got '=%s'",
                            eq ? eq + 1 : "");
            return NULL;
        }
        if (!b || !put(b, "task", name_arg("TASK", pos[i])) ||
            (eq && !put(b, "input", value_arg(eq + 1)))) {
            json_decref(branches);
            return NULL;
        }
        if (json_array_append_new(branches, b) != 0) {
            json_decref(branches);
            ctl_error("out of memory");
            return NULL;
        }
    }
    d = wrap("parallel", branches);
    if (d && then && !put(d, "then", name_arg("TASK", then))) {
        return NULL;
    }
    return d;
}

/* {KEY: {FIELD: the words of REASON joined by spaces}}; {KEY: {}} without any. */
static json_t *build_reason(const char *key, const char *field, int npos, char **pos)
{
    json_t *o = new_object();
    size_t len = 1;
    char *reason;
    char *p;
    int i;

    if (!o || npos == 0) {
        return wrap(key, o);
    }
    for (i = 0; i < npos; i++) {
        len += strlen(pos[i]) + 1;
    }
    reason = cli_malloc(len);
    p = reason;
    for (i = 0; i < npos; i++) {
        size_t n = strlen(pos[i]);

        if (i > 0) {
            *p++ = ' ';
        }
        memcpy(p, pos[i], n);
        p += n;
    }
    *p = '\0';
    if (!put(o, field, name_arg("REASON", reason))) {
        free(reason);
        return NULL;
    }
    free(reason);
    return wrap(key, o);
}

static json_t *build_cancel(int npos, char **pos, const char *then)
{
    (void)then;
    return build_reason("cancel", "error", npos, pos);
}

static json_t *build_pause(int npos, char **pos, const char *then)
{
    (void)then;
    return build_reason("pause", "reason", npos, pos);
}

static json_t *build_checkpoint(int npos, char **pos, const char *then)
{
    (void)npos;
    (void)pos;
    (void)then;
    return wrap("checkpoint", json_true());
}

static const struct ctl_sub subs[] = {
    {"set", "KEY JSON", 2, 2, "Write the state key KEY.", "{\"set\": {KEY: VALUE}}",
     "The state is written when the task succeeds; later tasks see it in\n"
     "$FLOW_STATE and in templates as {{ state.KEY }}.\n",
     build_set},
    {"incr", "KEY [N]", 1, 2, "Add N (default 1) to the number in state key KEY.",
     "{\"incr\": {KEY: N}}",
     "Applied to the value the key holds when the task completes (absent or\n"
     "null counts as 0), so parallel tasks counting into one key lose nothing.\n",
     build_incr},
    {"append", "KEY JSON", 2, 2, "Append a value to the list in state key KEY.",
     "{\"append\": {KEY: VALUE}}",
     "Applied to the list the key holds when the task completes (absent or null:\n"
     "a new list), so parallel tasks appending to one key lose nothing.\n",
     build_append},
    {"merge", "KEY OBJECT", 2, 2, "Merge an object's keys into the object in state key KEY.",
     "{\"merge\": {KEY: {...}}}",
     "A shallow merge into the object the key holds when the task completes\n"
     "(absent or null: a new object), so parallel tasks lose nothing.\n",
     build_merge},
    {"emit", "EVENT [JSON]", 1, 2, "Emit a label or event, with an optional payload.",
     "{\"emit\": {\"event\": EVENT, \"data\": VALUE}}",
     "Tasks with 'on: EVENT' run once per emission, with the payload as input;\n"
     "'connect' entries route it to their task, renaming keys with their 'map'.\n",
     build_emit},
    {"next-task", "TASK [JSON]", 1, 2, "Run TASK after this task, with JSON as its input.",
     "{\"next_task\": {\"task\": TASK, \"input\": VALUE}}",
     "TASK is usually marked 'start: false' so that it runs only when asked for.\n",
     build_next_task},
    {"next-iteration", "[JSON]", 0, 1, "Run this task again, with JSON as its input.",
     "{\"next_iteration\": {\"input\": VALUE}}", "", build_next_iteration},
    {"parallel", "TASK[=JSON]... [--then TASK]", 1, -1,
     "Run tasks in parallel; with --then, one task once after all of them.",
     "{\"parallel\": [{\"task\": TASK, \"input\": VALUE}, ...], \"then\": TASK}",
     "Each argument is a branch: TASK, or TASK=JSON with its input (split at the\n"
     "first '='). The --then task gets the branches' outputs as a list, in the order\n"
     "given; without --then each branch continues on its own.\n",
     build_parallel},
    {"terminate", "[JSON]", 0, 1, "End the run now as completed, with JSON as its result.",
     "{\"terminate\": {\"result\": VALUE}}",
     "Tasks not yet started never run; 'flow run' prints the result and exits 0.\n",
     build_terminate},
    {"cancel", "[REASON...]", 0, -1, "End the run now as cancelled.",
     "{\"cancel\": {\"error\": REASON}}",
     "The words of REASON are joined by spaces; 'flow run' prints 'cancelled: REASON'\n"
     "and exits 4.\n",
     build_cancel},
    {"checkpoint", "", 0, 0, "Take a checkpoint after this task.", "{\"checkpoint\": true}",
     "", build_checkpoint},
    {"pause", "[REASON...]", 0, -1, "Pause the run after this task (with a checkpoint).",
     "{\"pause\": {\"reason\": REASON}}",
     "Nothing new starts; once running tasks finish the run is paused and 'flow run'\n"
     "exits 3. 'flow resume RUN' continues it.\n",
     build_pause},
    {"output", "TEXT", 1, 1, "Replace the task's output.", NULL,
     "Writes TEXT and a newline to $FLOW_OUTPUT, replacing what an earlier\n"
     "'flow ctl output' wrote. It wins over stdout and is read the same way (with\n"
     "'output: auto', JSON when it parses, else the trimmed text).\n",
     NULL},
    {NULL, NULL, 0, 0, NULL, NULL, NULL, NULL},
};

static const char help[] =
    "usage: flow ctl SUBCOMMAND [ARGS]\n"
    "\n"
    "Write directives from inside a command task ('run' or 'shell'): each call\n"
    "appends one JSON line to the file named by $FLOW_CONTROL. The directives are\n"
    "applied when the task exits with status 0, in the order written; a task that\n"
    "fails has its directives discarded.\n"
    "\n"
    "Subcommands:\n"
    "  set KEY JSON                      write state key KEY\n"
    "  incr KEY [N]                      add N (default 1) to the number in KEY\n"
    "  append KEY JSON                   append a value to the list in KEY\n"
    "  merge KEY OBJECT                  merge an object's keys into the object in KEY\n"
    "  emit EVENT [JSON]                 emit a label or event with a payload\n"
    "  next-task TASK [JSON]             run TASK after this task, with an input\n"
    "  next-iteration [JSON]             run this task again with a new input\n"
    "  parallel TASK[=JSON]... [--then TASK]\n"
    "                                    run tasks in parallel, then join once\n"
    "  terminate [JSON]                  end the run now as completed, with a result\n"
    "  cancel [REASON...]                end the run now as cancelled\n"
    "  checkpoint                        take a checkpoint after this task\n"
    "  pause [REASON...]                 pause the run after this task\n"
    "  output TEXT                       replace the task's output ($FLOW_OUTPUT)\n"
    "\n"
    "A JSON argument is parsed as JSON when it parses (42, true, [1,2], {\"a\":1},\n"
    "\"text\"), else taken as a string. A value that starts with '-' and is not a\n"
    "number goes after '--'.\n"
    "\n"
    "Example (shell: task):\n"
    "  flow ctl set score 0.92\n"
    "  flow ctl emit progress '{\"pct\": 50}'\n"
    "  flow ctl parallel fetch=1 fetch=2 fetch=3 --then merge\n"
    "\n"
    "Run 'flow ctl SUBCOMMAND --help' for one subcommand.\n"
    "Exit status: 0 written, 1 write error, 2 usage error or not inside a flow task\n"
    "($FLOW_CONTROL not set).\n";

static const struct ctl_sub *find_sub(const char *name)
{
    const struct ctl_sub *s;

    for (s = subs; s->name; s++) {
        if (strcmp(s->name, name) == 0) {
            return s;
        }
    }
    return NULL;
}

static int print_sub_help(const struct ctl_sub *s)
{
    printf("usage: flow ctl %s%s%s\n\n", s->name, s->args[0] ? " " : "", s->args);
    printf("%s\n", s->summary);
    if (s->shape) {
        printf("Appends to $FLOW_CONTROL: %s\n", s->shape);
    }
    if (s->details[0]) {
        printf("\n%s", s->details);
    }
    printf("\nMust run inside a command task ($%s set); see 'flow ctl --help'.\n"
           "Exit status: 0 written, 1 write error, 2 usage error or not inside a task.\n",
           s->shape ? "FLOW_CONTROL" : "FLOW_OUTPUT");
    return cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */

/* The path in environment variable `var`, or NULL after printing the error. */
static const char *task_file(const char *var)
{
    const char *path = getenv(var);

    if (!path || !path[0]) {
        ctl_error("not inside a flow task ($%s is not set)", var);
        return NULL;
    }
    return path;
}

/* Write `len` bytes in one write() on a descriptor opened with `flags`. */
static int write_once(const char *var, const char *path, int flags, const char *data,
                      size_t len)
{
    int fd;
    ssize_t n;
    int saved;

    do {
        fd = open(path, flags | O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        ctl_error("cannot open $%s '%s': %s", var, path, strerror(errno));
        return CLI_EXIT_FAILED;
    }
    do {
        n = write(fd, data, len);
    } while (n < 0 && errno == EINTR);
    saved = errno;
    if (close(fd) != 0 && n >= 0) {
        n = -1;
        saved = errno;
    }
    if (n < 0) {
        ctl_error("cannot write $%s '%s': %s", var, path, strerror(saved));
        return CLI_EXIT_FAILED;
    }
    if ((size_t)n != len) {
        ctl_error("cannot write $%s '%s': wrote %zd of %zu bytes", var, path, n, len);
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

/* Append `d` (taken) as one line to $FLOW_CONTROL. */
static int append_directive(json_t *d)
{
    const char *path = task_file("FLOW_CONTROL");
    char *text;
    char *line;
    size_t len;
    int rc;

    if (!path) {
        json_decref(d);
        return CLI_EXIT_USAGE;
    }
    /* Compact JSON has no raw newline: strings escape theirs. */
    text = flow_json_dumps(d, JSON_COMPACT);
    json_decref(d);
    if (!text) {
        ctl_error("out of memory");
        return CLI_EXIT_FAILED;
    }
    len = strlen(text);
    line = cli_malloc(len + 2);
    memcpy(line, text, len);
    line[len++] = '\n';
    line[len] = '\0';
    free(text);
    rc = write_once("FLOW_CONTROL", path, O_APPEND, line, len);
    free(line);
    return rc;
}

static int write_output(const char *text)
{
    const char *path = task_file("FLOW_OUTPUT");
    size_t len = strlen(text);
    char *data;
    int rc;

    if (!path) {
        return CLI_EXIT_USAGE;
    }
    data = cli_malloc(len + 2);
    memcpy(data, text, len);
    data[len++] = '\n';
    data[len] = '\0';
    rc = write_once("FLOW_OUTPUT", path, O_TRUNC, data, len);
    free(data);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                 */

/* A negative number is a value, not an option: `flow ctl set delta -3`. */
static bool is_number_arg(const char *s)
{
    return s[0] == '-' && ((s[1] >= '0' && s[1] <= '9') || s[1] == '.');
}

static int run_sub(const struct ctl_sub *s, int argc, char **argv)
{
    char cmd[40];
    const char *then = NULL;
    bool only_pos = false;
    int npos = 0;
    json_t *d;
    int i;

    snprintf(cmd, sizeof(cmd), "ctl %s", s->name);
    /* Gather the positional arguments at the front of argv + 1, in order. */
    for (i = 1; i < argc; i++) {
        char *arg = argv[i];

        if (only_pos || arg[0] != '-' || arg[1] == '\0' || is_number_arg(arg)) {
            argv[1 + npos++] = arg;
        } else if (strcmp(arg, "--") == 0) {
            only_pos = true;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            return print_sub_help(s);
        } else if (s->build == build_parallel && strcmp(arg, "--then") == 0) {
            if (i + 1 >= argc) {
                return ctl_usage(cmd, "option '--then' of parallel needs a TASK");
            }
            then = argv[++i];
        } else if (s->build == build_parallel && strncmp(arg, "--then=", 7) == 0) {
            then = arg + 7;
        } else {
            return ctl_usage(cmd, "unknown option '%s' for %s", arg, s->name);
        }
    }
    if (then && !then[0]) {
        return ctl_usage(cmd, "option '--then' of parallel needs a TASK");
    }
    if (npos < s->min) {
        return ctl_usage(cmd, "%s needs %s", s->name, s->args);
    }
    if (s->max >= 0 && npos > s->max) {
        return ctl_usage(cmd, "unexpected argument '%s' for %s", argv[1 + s->max], s->name);
    }
    if (!s->build) {
        return write_output(argv[1]);
    }
    d = s->build(npos, argv + 1, then);
    if (!d) {
        return CLI_EXIT_USAGE;
    }
    return append_directive(d);
}

static int ctl_main(int argc, char **argv)
{
    const struct ctl_sub *s;

    if (argc < 2) {
        return ctl_usage("ctl", "missing SUBCOMMAND (set, emit, next-task, "
                                      "next-iteration, parallel, terminate, cancel, "
                                      "checkpoint, pause, output)");
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        if (argc > 2 && (s = find_sub(argv[2])) != NULL) {
            return print_sub_help(s);
        }
        return cli_print_help(help);
    }
    s = find_sub(argv[1]);
    if (!s) {
        /* next_task as in the JSON, for the forgiving reader. */
        if (strcmp(argv[1], "next_task") == 0) {
            s = find_sub("next-task");
        } else if (strcmp(argv[1], "next_iteration") == 0) {
            s = find_sub("next-iteration");
        }
    }
    if (!s) {
        return ctl_usage("ctl", "unknown subcommand '%s'", argv[1]);
    }
    return run_sub(s, argc - 1, argv + 1);
}

const struct cli_command cli_cmd_ctl = {
    "ctl",
    "write directives from inside a command task (set, emit, next-task, ...)",
    help,
    ctl_main,
};
