/* cmd_validate.c -- `flow validate FILE [--json]`: load a workflow file, print every
 * error and warning found, and exit 0 (valid) or 2 (invalid). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

enum { OPT_HELP = 1, OPT_JSON, OPT_RESOURCES, OPT_PROMPTS };

static const struct cli_option options[] = {
    {"help", 'h', false, OPT_HELP},
    {"json", 0, false, OPT_JSON},
    {"resources", 0, true, OPT_RESOURCES},
    {"prompts", 0, true, OPT_PROMPTS},
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow validate FILE [--json] [--resources AMOUNTS] [--prompts DIR]\n"
    "\n"
    "Check a workflow file (YAML or JSON): keys and types, task names, triggers,\n"
    "cycles and templates. Every error and warning is printed on stderr, one a\n"
    "line, in gcc's form (editors jump to it): 'FILE:LINE:COLUMN: error: MESSAGE'\n"
    "or 'FILE:LINE:COLUMN: warning: MESSAGE'. A valid file prints\n"
    "'ok: FILE: N tasks' on stdout.\n"
    "\n"
    "Options:\n"
    "  --json      print {\"valid\", \"file\", \"tasks\", \"errors\", \"warnings\"} on stdout\n"
    "              instead (each diagnostic {\"message\", \"file\", \"line\", \"column\"},\n"
    "              the message without the position); nothing on stderr\n"
    "  --resources AMOUNTS\n"
    "              also check that every task's 'resources' fit an engine with\n"
    "              this much (cpu=N,memory=SIZE,gpu=N; unnamed ones: this\n"
    "              machine's), as 'flow run --resources AMOUNTS' will\n"
    "  --prompts DIR\n"
    "              where 'prompt:' finds its files (default: $FLOW_PROMPTS, else\n"
    "              prompts/ beside the workflow file)\n"
    "  -h, --help  show this help\n"
    "\n"
    "Exit status: 0 valid, 2 invalid or usage error.\n";

static json_t *diag_json(const flow_error *e)
{
    char where[320];
    size_t len = cli_diag_split(e, where, sizeof(where));
    json_t *o = json_pack("{s:s#, s:s, s:i, s:i}", "message", e->message, (int)len, "file",
                          e->file, "line", e->line, "column", e->column);

    if (!o) {
        /* Only a message that is not UTF-8 gets here: keep the entry anyway. */
        o = json_pack("{s:s, s:s, s:i, s:i}", "message", "(message is not valid UTF-8)",
                      "file", "", "line", e->line, "column", e->column);
    }
    return o;
}

/* The file's tasks fit `cap` (NULL: not asked)? Else the error, in *err. */
static bool fits(const flow *f, const flow_resources *cap, flow_error *err)
{
    return !f || !cap || flow_check_resources(f, cap, err) == FLOW_OK;
}

static int validate_json(const char *path, const flow_resources *cap)
{
    flow_diags *d = flow_diags_new();
    json_t *errors = json_array();
    json_t *warnings = json_array();
    json_t *out;
    flow_error err;
    flow *f;
    size_t i;
    bool valid;
    bool ok;

    if (!d || !errors || !warnings) {
        cli_error("out of memory");
        return CLI_EXIT_FAILED;
    }
    memset(&err, 0, sizeof(err));
    f = flow_load_file(path, d, &err);
    for (i = 0; i < flow_diags_count(d); i++) {
        flow_severity sev = FLOW_SEV_ERROR;
        const flow_error *e = flow_diags_get(d, i, &sev);

        if (e) {
            json_array_append_new(sev == FLOW_SEV_WARNING ? warnings : errors, diag_json(e));
        }
    }
    if (!f && json_array_size(errors) == 0) {
        if (err.code == FLOW_OK) {
            snprintf(err.message, sizeof(err.message), "cannot load '%s'", path);
        }
        json_array_append_new(errors, diag_json(&err));
    }
    memset(&err, 0, sizeof(err));
    if (f && json_array_size(errors) == 0 && !fits(f, cap, &err)) {
        json_array_append_new(errors, diag_json(&err));
    }
    valid = f && json_array_size(errors) == 0;
    out = json_pack("{s:b, s:s, s:I, s:o, s:o}", "valid", valid, "file", path, "tasks",
                    (json_int_t)(valid ? flow_task_count(f) : 0), "errors", errors, "warnings",
                    warnings);
    flow_free(f);
    flow_diags_free(d);
    if (!out) {
        cli_error("cannot build the JSON report for '%s'", path);
        return CLI_EXIT_FAILED;
    }
    ok = cli_print_json(stdout, out);
    json_decref(out);
    if (!ok) {
        return CLI_EXIT_FAILED;
    }
    return valid ? CLI_EXIT_OK : CLI_EXIT_USAGE;
}

static int validate_main(int argc, char **argv)
{
    struct cli_args a;
    bool as_json = false;
    flow_resources res;
    const flow_resources *cap = NULL;
    const char *path;
    flow *f;
    int id;

    cli_args_init(&a, "validate", argc, argv, options);
    while ((id = cli_next_opt(&a)) > 0) {
        switch (id) {
        case OPT_HELP:
            return cli_print_help(help);
        case OPT_JSON:
            as_json = true;
            break;
        case OPT_PROMPTS:
            if (!cli_set_prompts("validate", a.value)) {
                return CLI_EXIT_USAGE;
            }
            break;
        case OPT_RESOURCES:
            if (!cli_parse_resources("validate", a.value, &res)) {
                return CLI_EXIT_USAGE;
            }
            cap = &res;
            break;
        default:
            break;
        }
    }
    if (id < 0) {
        return CLI_EXIT_USAGE;
    }
    int usage = cli_one_file(&a, &path);
    if (usage >= 0) {
        return usage;
    }
    if (as_json) {
        return validate_json(path, cap);
    }
    f = cli_load_flow(path, false);
    if (!f) {
        return CLI_EXIT_USAGE;
    }
    flow_error err;
    memset(&err, 0, sizeof(err));
    if (!fits(f, cap, &err)) {
        if (err.file[0]) {
            fprintf(stderr, "%s:%d:%d: error: %s\n", err.file, err.line, err.column,
                    err.message);
        } else {
            fprintf(stderr, "%s: error: %s\n", path, err.message);
        }
        flow_free(f);
        return CLI_EXIT_USAGE;
    }
    printf("ok: %s: %zu tasks\n", path, flow_task_count(f));
    flow_free(f);
    return CLI_EXIT_OK;
}

const struct cli_command cli_cmd_validate = {
    "validate",
    "check a workflow file and print every error found",
    help,
    validate_main,
};
