/* cmd_prompts.c -- `flow prompts list|show|render`: the prompt files of a
 * directory (Graflow's format), one version of a prompt, and a prompt
 * rendered with variables, as a `prompt:` task would. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

enum { OPT_HELP = 1, OPT_PROMPTS, OPT_JSON, OPT_LABEL, OPT_VERSION, OPT_VAR, OPT_VARS };

static const struct cli_option options[] = {
    {"help", 'h', false, OPT_HELP},   {"prompts", 0, true, OPT_PROMPTS},
    {"json", 0, false, OPT_JSON},     {"label", 'l', true, OPT_LABEL},
    {"version", 0, true, OPT_VERSION}, {"var", 0, true, OPT_VAR},
    {"vars", 0, true, OPT_VARS},      {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow prompts list [--json] [--prompts DIR]\n"
    "       flow prompts show NAME [--label L | --version V] [--json] [--prompts DIR]\n"
    "       flow prompts render NAME [--label L | --version V] [--var K=V | K:=JSON]...\n"
    "                           [--vars FILE.json] [--json] [--prompts DIR]\n"
    "\n"
    "Prompt files are NAME.yaml in the prompt directory, each a list of entries\n"
    "{label, version, template} ('label' may be a list); templates name their\n"
    "variables bare: {{ text }}, {{ doc.title }}, {{ items | json }}.\n"
    "\n"
    "  list    every prompt: its versions, their labels and the variables they use;\n"
    "          a file that does not load is reported on stderr (exit 1)\n"
    "  show    one version's template as written: the one labelled L (default\n"
    "          production), or version V\n"
    "  render  the text that version gives with the variables: --var K=V a string\n"
    "          exactly as typed, --var K:=JSON a JSON value, --vars a JSON object\n"
    "          file (--var overrides its keys); a variable the prompt uses and\n"
    "          nobody gave is an error naming it\n"
    "\n"
    "Options:\n"
    "      --prompts DIR  the prompt directory (default: $FLOW_PROMPTS, else ./prompts)\n"
    "  -l, --label L      the version labelled L (default production)\n"
    "      --version V    version V (with --label, it must also carry L)\n"
    "      --var K=V      a variable for render (repeat for more)\n"
    "      --vars FILE    variables for render from a JSON object file\n"
    "      --json         print JSON: list [{name, file, versions: [{version, labels,\n"
    "                     variables, line}]} or {name, file, error}]; show {name,\n"
    "                     version, labels, variables, template, file, line}; render\n"
    "                     {text, name, version, label}\n"
    "  -h, --help         show this help\n"
    "\n"
    "Exit status: 0; 1 when a prompt file does not load (list); 2 on a usage error,\n"
    "an unknown prompt, label or version, or a variable not given.\n";

struct prompts_args {
    const char *dir;
    const char *label;
    const char *version;
    json_t *vars;
    const char *vars_file;
    bool json;
};

static int list_prompts(const struct prompts_args *pa)
{
    flow_error err;
    json_t *all;
    json_t *p;
    size_t i;
    int rc = CLI_EXIT_OK;

    memset(&err, 0, sizeof(err));
    all = flow_prompts_list(pa->dir, &err);
    if (!all) {
        cli_error("%s", err.message);
        return CLI_EXIT_USAGE;
    }
    if (!pa->json && json_array_size(all)) {
        printf("%-24s %-10s %-24s %s\n", "PROMPT", "VERSION", "LABELS", "VARIABLES");
    }
    json_array_foreach(all, i, p)
    {
        const char *name = json_string_value(json_object_get(p, "name"));
        const char *error = json_string_value(json_object_get(p, "error"));
        json_t *v;
        size_t k;

        if (error) {
            cli_error("%s", error);
            rc = CLI_EXIT_FAILED;
            continue;
        }
        json_array_foreach(json_object_get(p, "versions"), k, v)
        {
            char version[64];
            char labels[256] = "";
            char vars[512] = "";
            const json_t *ver = json_object_get(v, "version");
            json_t *s;
            size_t j;

            if (pa->json) {
                break;
            }
            if (json_is_string(ver)) {
                snprintf(version, sizeof(version), "%s", json_string_value(ver));
            } else {
                snprintf(version, sizeof(version), "%g", json_number_value(ver));
            }
            json_array_foreach(json_object_get(v, "labels"), j, s)
            {
                size_t n = strlen(labels);
                snprintf(labels + n, sizeof(labels) - n, "%s%s", j ? ", " : "",
                         json_string_value(s));
            }
            json_array_foreach(json_object_get(v, "variables"), j, s)
            {
                size_t n = strlen(vars);
                snprintf(vars + n, sizeof(vars) - n, "%s%s", j ? ", " : "", json_string_value(s));
            }
            printf("%-24s %-10s %-24s %s\n", name, version, labels[0] ? labels : "-",
                   vars[0] ? vars : "-");
        }
    }
    if (pa->json) {
        cli_print_json(stdout, all);
    } else if (!json_array_size(all)) {
        printf("no prompts in %s\n", pa->dir ? pa->dir : getenv("FLOW_PROMPTS") ? getenv("FLOW_PROMPTS") : "prompts");
    }
    json_decref(all);
    return cli_flush(stdout) ? rc : CLI_EXIT_FAILED;
}

static int show_prompt(const struct prompts_args *pa, const char *name)
{
    flow_prompt_ref ref = {pa->dir, name, pa->label, pa->version};
    flow_error err;
    json_t *p;

    memset(&err, 0, sizeof(err));
    p = flow_prompt_get(&ref, &err);
    if (!p) {
        cli_error("%s", err.message);
        return err.code == FLOW_ENOMEM || err.code == FLOW_EIO ? CLI_EXIT_FAILED : CLI_EXIT_USAGE;
    }
    if (pa->json) {
        cli_print_json(stdout, p);
    } else {
        fputs(json_string_value(json_object_get(p, "template")), stdout);
    }
    json_decref(p);
    return cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

static int render_prompt(struct prompts_args *pa, const char *name)
{
    flow_prompt_ref ref = {pa->dir, name, pa->label, pa->version};
    flow_error err;
    json_t *used = NULL;
    char *text;

    memset(&err, 0, sizeof(err));
    if (pa->vars_file) {
        json_error_t jerr;
        json_t *file = json_load_file(pa->vars_file, 0, &jerr);

        if (!json_is_object(file)) {
            cli_error("--vars '%s': %s", pa->vars_file,
                      file ? "must hold a JSON object" : jerr.text);
            json_decref(file);
            return CLI_EXIT_USAGE;
        }
        json_object_update_missing(pa->vars, file);
        json_decref(file);
    }
    text = flow_prompt_render(&ref, pa->vars, &used, &err);
    if (!text) {
        cli_error("%s", err.message);
        return err.code == FLOW_ENOMEM || err.code == FLOW_EIO ? CLI_EXIT_FAILED : CLI_EXIT_USAGE;
    }
    if (pa->json) {
        json_t *out = json_pack("{s:s}", "text", text);

        json_object_update(out, used);
        cli_print_json(stdout, out);
        json_decref(out);
    } else {
        fputs(text, stdout);
    }
    free(text);
    json_decref(used);
    return cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

static int prompts_main(int argc, char **argv)
{
    struct cli_args a;
    struct prompts_args pa;
    const char *what;
    int id;
    int rc;

    memset(&pa, 0, sizeof(pa));
    pa.vars = json_object();
    cli_args_init(&a, "prompts", argc, argv, options);
    while ((id = cli_next_opt(&a)) != 0) {
        switch (id) {
        case -1:
            json_decref(pa.vars);
            return CLI_EXIT_USAGE;
        case OPT_HELP:
            json_decref(pa.vars);
            return cli_print_help(help);
        case OPT_PROMPTS:
            pa.dir = a.value;
            break;
        case OPT_JSON:
            pa.json = true;
            break;
        case OPT_LABEL:
            pa.label = a.value;
            break;
        case OPT_VERSION:
            pa.version = a.value;
            break;
        case OPT_VARS:
            pa.vars_file = a.value;
            break;
        case OPT_VAR:
            if (!cli_add_kv("prompts", "var", pa.vars, a.value)) {
                json_decref(pa.vars);
                return CLI_EXIT_USAGE;
            }
            break;
        default:
            break;
        }
    }
    what = cli_pos(&a, 0);
    if (!what) {
        rc = cli_usage_error("prompts", "'prompts' needs list, show NAME or render NAME");
    } else if (!strcmp(what, "list")) {
        rc = a.npos > 1 ? cli_usage_error("prompts", "unexpected argument '%s' for 'prompts list'",
                                          cli_pos(&a, 1))
             : pa.label || pa.version || pa.vars_file || json_object_size(pa.vars)
                 ? cli_usage_error("prompts", "'prompts list' takes only --json and --prompts")
                 : list_prompts(&pa);
    } else if (strcmp(what, "show") && strcmp(what, "render")) {
        rc = cli_usage_error("prompts", "unknown 'prompts' command '%s' (use list, show or render)",
                             what);
    } else if (a.npos != 2) {
        rc = cli_usage_error("prompts", "'prompts %s' needs one prompt NAME", what);
    } else if (!strcmp(what, "show") && (pa.vars_file || json_object_size(pa.vars))) {
        rc = cli_usage_error("prompts", "'prompts show' takes no variables (render does)");
    } else {
        rc = !strcmp(what, "show") ? show_prompt(&pa, cli_pos(&a, 1))
                                   : render_prompt(&pa, cli_pos(&a, 1));
    }
    json_decref(pa.vars);
    return rc;
}

const struct cli_command cli_cmd_prompts = {
    "prompts",
    "list, show and render the prompts of a prompt directory",
    help,
    prompts_main,
};
