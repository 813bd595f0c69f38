/* cli.c -- helpers shared by the subcommands of `flow`: messages, allocation that
 * exits on failure, the option parser, workflow loading with diagnostics, and JSON
 * output. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "color.h"

/* "flow: " in front of an error, red on a terminal. */
static void error_prefix(void)
{
    fflush(stdout);
    if (cli_color_on(STDERR_FILENO)) {
        fputs("\033[1;31mflow:" CLI_COLOR_RESET " ", stderr);
    } else {
        fputs("flow: ", stderr);
    }
}

void cli_error(const char *fmt, ...)
{
    va_list ap;

    error_prefix();
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    error_prefix();
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd) {
        fprintf(stderr, " (see 'flow %s --help')\n", cmd);
    } else {
        fputs(" (see 'flow --help')\n", stderr);
    }
    return CLI_EXIT_USAGE;
}

static CLI_NORETURN void out_of_memory(void)
{
    fputs("flow: out of memory\n", stderr);
    exit(CLI_EXIT_FAILED);
}

void *cli_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);

    if (!p) {
        out_of_memory();
    }
    return p;
}

void *cli_realloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);

    if (!p) {
        out_of_memory();
    }
    return p;
}

char *cli_strdup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *p = cli_malloc(len);

    memcpy(p, s, len);
    return p;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                   */

void cli_args_init(struct cli_args *a, const char *cmd, int argc, char **argv,
                   const struct cli_option *opts)
{
    memset(a, 0, sizeof(*a));
    a->cmd = cmd;
    a->argc = argc;
    a->argv = argv;
    a->opts = opts;
    a->next = 1;
}

static const struct cli_option *find_long(const struct cli_option *opts, const char *name,
                                          size_t len)
{
    for (; opts->name; opts++) {
        if (strlen(opts->name) == len && memcmp(opts->name, name, len) == 0) {
            return opts;
        }
    }
    return NULL;
}

static const struct cli_option *find_short(const struct cli_option *opts, char c)
{
    for (; opts->name; opts++) {
        if (opts->short_name && opts->short_name == c) {
            return opts;
        }
    }
    return NULL;
}

/* A long option: "--name", "--name=value" or "--name value". */
static int next_long(struct cli_args *a, char *arg)
{
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const struct cli_option *o = find_long(a->opts, name, len);

    if (!o) {
        cli_usage_error(a->cmd, "unknown option '--%.*s' for '%s'", (int)len, name, a->cmd);
        return -1;
    }
    a->opt_text = o->name;
    if (!o->has_arg) {
        if (eq) {
            cli_usage_error(a->cmd, "option '--%s' of '%s' takes no value", o->name, a->cmd);
            return -1;
        }
        a->value = NULL;
        return o->id;
    }
    if (eq) {
        a->value = eq + 1;
    } else if (a->next < a->argc) {
        a->value = a->argv[a->next++];
    } else {
        cli_usage_error(a->cmd, "option '--%s' of '%s' needs a value", o->name, a->cmd);
        return -1;
    }
    return o->id;
}

/* A short option: "-x", "-x value" or "-xvalue"; flags do not combine. */
static int next_short(struct cli_args *a, char *arg)
{
    const struct cli_option *o = find_short(a->opts, arg[1]);

    if (!o || (!o->has_arg && arg[2] != '\0')) {
        cli_usage_error(a->cmd, "unknown option '%s' for '%s'", arg, a->cmd);
        return -1;
    }
    a->opt_text = o->name;
    if (!o->has_arg) {
        a->value = NULL;
        return o->id;
    }
    if (arg[2] != '\0') {
        a->value = arg + 2;
    } else if (a->next < a->argc) {
        a->value = a->argv[a->next++];
    } else {
        cli_usage_error(a->cmd, "option '-%c' of '%s' needs a value", arg[1], a->cmd);
        return -1;
    }
    return o->id;
}

int cli_next_opt(struct cli_args *a)
{
    while (a->next < a->argc) {
        char *arg = a->argv[a->next++];

        if (a->only_pos || arg[0] != '-' || arg[1] == '\0') {
            /* 1 + npos < next: this never overwrites an argument not yet seen. */
            a->argv[1 + a->npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            a->only_pos = true;
            continue;
        }
        /* Every command takes --color (color.h), without an entry of its own. */
        if (strncmp(arg, "--color", 7) == 0 && (arg[7] == '\0' || arg[7] == '=') &&
            !find_long(a->opts, "color", 5)) {
            const char *value = arg[7] ? arg + 8 : NULL;

            if (!value && a->next < a->argc) {
                value = a->argv[a->next++];
            }
            if (!value) {
                cli_usage_error(a->cmd, "option '--color' of '%s' needs a value", a->cmd);
                return -1;
            }
            if (cli_color_option(a->cmd, value) >= 0) {
                return -1;
            }
            continue;
        }
        if (arg[1] == '-') {
            return next_long(a, arg);
        }
        return next_short(a, arg);
    }
    return 0;
}

const char *cli_pos(const struct cli_args *a, int i)
{
    if (i < 0 || i >= a->npos) {
        return NULL;
    }
    return a->argv[1 + i];
}

bool cli_parse_resources(const char *cmd, const char *spec, flow_resources *out)
{
    flow_error err;
    flow_resources_machine(out);
    if (flow_resources_parse(spec, out, &err) != FLOW_OK) {
        cli_usage_error(cmd, "bad --resources '%s': %s", spec, err.message);
        return false;
    }
    return true;
}

bool cli_parse_count(const struct cli_args *a, const char *text, int *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0' || v < 0 || v > INT_MAX) {
        cli_usage_error(a->cmd, "option '--%s' of '%s' needs a non-negative integer, got '%s'",
                        a->opt_text, a->cmd, text);
        return false;
    }
    *out = (int)v;
    return true;
}

int cli_print_help(const char *help)
{
    fputs(help, stdout);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* Workflow files                                                            */

size_t cli_diag_split(const flow_error *e, char *where, size_t size)
{
    char tail[320];
    size_t len = strlen(e->message);
    size_t n;

    where[0] = '\0';
    if (!e->file[0]) {
        return len;
    }
    if (e->line > 0 && e->column > 0) {
        snprintf(where, size, "%s:%d:%d", e->file, e->line, e->column);
    } else if (e->line > 0) {
        snprintf(where, size, "%s:%d", e->file, e->line);
    } else {
        snprintf(where, size, "%s", e->file);
    }
    /* The library ends a message with where it is, for readers of the message
     * alone; here the position comes first instead. */
    n = (size_t)snprintf(tail, sizeof(tail), " (%s)", where);
    if (n < sizeof(tail) && len >= n && strcmp(e->message + len - n, tail) == 0) {
        len -= n;
    }
    return len;
}

void cli_print_diag(const flow_error *e, flow_severity sev)
{
    const char *what = sev == FLOW_SEV_WARNING ? "warning" : "error";
    bool color = cli_color_on(STDERR_FILENO);
    const char *code = color ? cli_color_code(what) : "";
    const char *reset = color ? CLI_COLOR_RESET : "";
    char where[320];
    size_t len = cli_diag_split(e, where, sizeof(where));

    fflush(stdout);
    if (where[0]) {
        fprintf(stderr, "%s%s:%s %s%s:%s %.*s\n", color ? "\033[1m" : "", where, reset, code,
                what, reset, (int)len, e->message);
    } else {
        fprintf(stderr, "%s%s:%s %.*s\n", code, what, reset, (int)len, e->message);
    }
}

flow *cli_load_flow(const char *path, bool quiet_warnings)
{
    flow_diags *d = flow_diags_new();
    flow_error err;
    flow *f;
    size_t i;

    if (!d) {
        cli_error("out of memory");
        return NULL;
    }
    memset(&err, 0, sizeof(err));
    f = flow_load_file(path, d, &err);
    for (i = 0; i < flow_diags_count(d); i++) {
        flow_severity sev = FLOW_SEV_ERROR;
        const flow_error *e = flow_diags_get(d, i, &sev);

        if (e && (sev == FLOW_SEV_ERROR || !quiet_warnings)) {
            cli_print_diag(e, sev);
        }
    }
    if (!f && flow_diags_error_count(d) == 0) {
        /* The loader failed without a diagnostic (e.g. out of memory). */
        if (err.code == FLOW_OK) {
            snprintf(err.message, sizeof(err.message), "cannot load '%s'", path);
        }
        cli_print_diag(&err, FLOW_SEV_ERROR);
    }
    if (f && flow_diags_error_count(d) > 0) {
        flow_free(f);
        f = NULL;
    }
    flow_diags_free(d);
    return f;
}

/* ------------------------------------------------------------------------ */
/* JSON output                                                               */

static bool print_json(FILE *out, const json_t *v, size_t flags)
{
    int rc = 0;

    if (v) {
        char *text = flow_json_dumps(v, flags);
        if (text)
            fputs(text, out);
        else
            rc = -1;
        free(text);
    } else {
        fputs("null", out);
    }
    fputc('\n', out);
    if (rc != 0) {
        cli_error("cannot write the output");
        return false;
    }
    return cli_flush(out);
}

bool cli_print_json(FILE *out, const json_t *v)
{
    return print_json(out, v, JSON_INDENT(2));
}

bool cli_print_json_line(FILE *out, const json_t *v)
{
    return print_json(out, v, JSON_COMPACT);
}

bool cli_flush(FILE *out)
{
    int e;

    if (fflush(out) == 0 && !ferror(out)) {
        return true;
    }
    /* errno is that of the write that failed: fflush or an earlier one. */
    e = errno;
    if (e == EPIPE || e == EBADF) {
        /* The reader went away (`flow status | head -1`): it has what it
         * wanted, so stop writing there; that is no failure of ours. */
        return true;
    }
    cli_error("cannot write the output: %s", strerror(e ? e : EIO));
    return false;
}

void cli_std_streams_init(void)
{
    struct sigaction sa;
    int fd;

    for (fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            /* The lowest free number: `fd` itself, as those below are open. */
            int null = open("/dev/null", fd == STDIN_FILENO ? O_RDONLY : O_WRONLY);

            if (null >= 0 && null != fd) {
                dup2(null, fd);
                close(null);
            }
        }
    }
    /* Children get SIGPIPE back (the spawner resets it for each command). */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
}

int cli_one_run(const struct cli_args *a, const char **run_id)
{
    if (a->npos < 1) {
        return cli_usage_error(a->cmd, "'%s' needs a RUN id ('flow status' lists them)", a->cmd);
    }
    if (a->npos > 1) {
        return cli_usage_error(a->cmd, "unexpected argument '%s' for '%s'", cli_pos(a, 1),
                               a->cmd);
    }
    *run_id = cli_pos(a, 0);
    return -1;
}

const char *cli_short_time(const json_t *t, char *out, size_t size)
{
    const char *s = json_string_value(t);
    struct tm tm;
    time_t when;

    memset(&tm, 0, sizeof(tm));
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6) {
        snprintf(out, size, "-");
        return out;
    }
    /* The store keeps UTC; people read local time, as progress prints it. */
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    when = timegm(&tm);
    if (!localtime_r(&when, &tm) || strftime(out, size, "%Y-%m-%d %H:%M:%S", &tm) == 0) {
        snprintf(out, size, "%.10s %.8s", s, s + 11);
    }
    return out;
}

int cli_one_file(const struct cli_args *a, const char **file)
{
    if (a->npos < 1) {
        return cli_usage_error(a->cmd, "'%s' needs a workflow FILE", a->cmd);
    }
    if (a->npos > 1) {
        return cli_usage_error(a->cmd, "unexpected argument '%s' for '%s'", cli_pos(a, 1),
                               a->cmd);
    }
    *file = cli_pos(a, 0);
    return -1;
}

const char *cli_format_duration(double seconds, char *out, size_t size)
{
    long long t;

    if (!(seconds >= 0) || seconds > 1e12) {
        snprintf(out, size, "-");
        return out;
    }
    /* Rounded once, to the unit shown, so that 59.96 s reads 1m00s. */
    if (seconds < 59.95) {
        t = (long long)(seconds * 10 + 0.5);
        snprintf(out, size, "%lld.%llds", t / 10, t % 10);
    } else if (seconds < 3599.5) {
        t = (long long)(seconds + 0.5);
        snprintf(out, size, "%lldm%02llds", t / 60, t % 60);
    } else if (seconds < 86370) {
        t = (long long)(seconds / 60 + 0.5);
        snprintf(out, size, "%lldh%02lldm", t / 60, t % 60);
    } else {
        t = (long long)(seconds / 3600 + 0.5);
        snprintf(out, size, "%lldd%02lldh", t / 24, t % 24);
    }
    return out;
}

const char *cli_item_text(const json_t *item, char *out, size_t size)
{
    char *text = item ? flow_json_dumps(item, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    const char *s = text ? text : "null";
    size_t cut = 0;
    size_t chars = 0;
    size_t i;

    /* Characters, not bytes: a UTF-8 sequence is never split. */
    for (i = 0; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (chars == CLI_ITEM_CHARS - 3) {
                cut = i;
            }
            chars++;
        }
    }
    if (chars > CLI_ITEM_CHARS) {
        snprintf(out, size, "%.*s...", (int)cut, s);
    } else {
        snprintf(out, size, "%s", s);
    }
    free(text);
    return out;
}

const char *cli_act_label(char *out, size_t size, const char *task, long index,
                          const json_t *item, bool with_item)
{
    char text[4 * CLI_ITEM_CHARS];

    if (index < 0) {
        snprintf(out, size, "%s", task ? task : "?");
    } else if (!with_item) {
        snprintf(out, size, "%s[%ld]", task ? task : "?", index);
    } else {
        snprintf(out, size, "%s[%ld] %s", task ? task : "?", index,
                 cli_item_text(item, text, sizeof(text)));
    }
    return out;
}

/* One --input: "K=V" gives the string V exactly as typed ("v=1.10" stays "1.10"),
 * "K:=JSON" a JSON value (httpie's convention): a version or a zip code never
 * turns into a number by accident. Bad JSON after ":=" is a usage error. */
bool cli_add_kv(const char *cmd, const char *opt, json_t *obj, const char *kv)
{
    const char *eq = strchr(kv, '=');
    bool as_json = eq && eq > kv && eq[-1] == ':';
    size_t key_len = eq ? (size_t)(eq - kv) - (as_json ? 1 : 0) : 0;
    json_error_t jerr;
    json_t *v;
    char *key;
    bool ok;

    if (!eq) {
        cli_usage_error(cmd, "option '--%s' of '%s' expects KEY=VALUE or KEY:=JSON, got '%s'",
                        opt, cmd, kv);
        return false;
    }
    if (key_len == 0) {
        cli_usage_error(cmd, "option '--%s' of '%s' has an empty KEY in '%s'", opt, cmd, kv);
        return false;
    }
    key = cli_malloc(key_len + 1);
    memcpy(key, kv, key_len);
    key[key_len] = '\0';
    if (as_json) {
        v = json_loads(eq + 1, JSON_DECODE_ANY, &jerr);
        if (!v) {
            cli_usage_error(cmd,
                            "option '--%s %s' of '%s' is not JSON (%s); for a string write "
                            "'%s=...'",
                            opt, kv, cmd, jerr.text, key);
            free(key);
            return false;
        }
    } else {
        v = json_string(eq + 1);
    }
    ok = v && json_object_set_new(obj, key, v) == 0;
    if (!ok) {
        cli_error("%s '%s' is not valid UTF-8", opt, key);
    }
    free(key);
    return ok;
}

bool cli_set_prompts(const char *cmd, const char *dir)
{
    struct stat st;

    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cli_usage_error(cmd, "option '--prompts' of '%s': '%s' is not a directory", cmd, dir);
        return false;
    }
    setenv("FLOW_PROMPTS", dir, 1);
    return true;
}
