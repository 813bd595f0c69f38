/* cmd_completion.c -- `flow completion bash|zsh`: a shell completion script,
 * made from the program's own help texts, so that it knows every command,
 * every option (and which take a value, and the choices a `a|b|c` value
 * lists) and what each positional argument is (FILE, RUN, TASK, ...) as
 * the help describes them. Run ids and task names come from the store when
 * the user presses TAB, through the hidden `flow __complete runs|tasks`. */
#include "cli.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPTS 64
#define MAX_POS 8
#define MAX_WORDS 32

struct opt {
    char name[40];   /* "--jobs" */
    char short_name; /* 'j', or 0 */
    char meta[48];   /* "N", "FILE"; "" for a flag */
    char choices[48]; /* "mermaid|dot|json", from the usage; or "" */
    char desc[100];  /* its description, short */
};

struct cmd {
    const char *name;
    const char *summary;
    struct opt opts[MAX_OPTS];
    size_t nopts;
    char pos[MAX_POS][48]; /* positional arguments as the usage names them */
    size_t npos;
    bool pos_repeat;       /* the last one takes any number ("TASK...") */
    char words[MAX_WORDS][24]; /* the subcommands its help lists */
    size_t nwords;
};

static const char help[] =
    "usage: flow completion bash|zsh\n"
    "\n"
    "Print a completion script for the shell: commands, their options and the\n"
    "values some options take, workflow files, run ids and task names (these\n"
    "two read from the store, as 'flow status' finds it, when TAB is pressed).\n"
    "\n"
    "  bash   source it: . <(flow completion bash), or save it as\n"
    "         ~/.local/share/bash-completion/completions/flow\n"
    "  zsh    save it as _flow in a directory of $fpath (before compinit)\n"
    "\n"
    "'make install' installs both (share/bash-completion/completions/flow,\n"
    "share/zsh/site-functions/_flow).\n"
    "\n"
    "Options:\n"
    "  -h, --help  show this help\n"
    "\n"
    "Exit status: 0, or 2 for a usage error.\n";

/* ---- reading the help texts --------------------------------------------- */

/* Copy the token at `p` (up to a space, `stop` or the end of line) into `out`. */
static const char *token(const char *p, char *out, size_t size, char stop)
{
    size_t n = 0;

    while (*p && *p != ' ' && *p != '\n' && *p != stop) {
        if (n + 1 < size) {
            out[n++] = *p;
        }
        p++;
    }
    out[n] = '\0';
    return p;
}

/* Option `name` of `c`, added if new; NULL when there are too many. */
static struct opt *opt_of(struct cmd *c, const char *name)
{
    size_t i;
    struct opt *o;

    for (i = 0; i < c->nopts; i++) {
        if (strcmp(c->opts[i].name, name) == 0) {
            return &c->opts[i];
        }
    }
    if (c->nopts == MAX_OPTS) {
        return NULL;
    }
    o = &c->opts[c->nopts++];
    memset(o, 0, sizeof(*o));
    snprintf(o->name, sizeof(o->name), "%s", name);
    return o;
}

/* Strip the brackets and "..." around a token of a usage line. */
static char *bare(char *tok, bool *repeat)
{
    size_t len;

    while (*tok == '[' || *tok == '(') {
        tok++;
    }
    len = strlen(tok);
    while (len && (tok[len - 1] == ']' || tok[len - 1] == ')' || tok[len - 1] == '.')) {
        if (repeat) {
            *repeat = tok[len - 1] == '.';
        }
        tok[--len] = '\0';
    }
    return tok;
}

/* The description of an option, from `p` (after its metavar) and the lines
 * that continue it, shortened for a menu: no parentheses, up to a ';'. */
static void describe(struct opt *o, const char *p)
{
    char text[400];
    size_t n = 0;
    size_t k = 0;
    int depth = 0;
    const char *s;

    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);

        p += strspn(p, " ");
        len = nl ? (size_t)(nl - p) : strlen(p);
        if (len && n + len + 2 < sizeof(text)) {
            if (n) {
                text[n++] = ' ';
            }
            memcpy(text + n, p, len);
            n += len;
        }
        /* The next line goes on with it when indented past the options. */
        if (!nl || strspn(nl + 1, " ") < 10 || nl[1 + strspn(nl + 1, " ")] == '-') {
            break;
        }
        p = nl + 1;
    }
    text[n] = '\0';
    for (s = text; *s && *s != ';' && k + 1 < sizeof(o->desc); s++) {
        depth += *s == '(';
        if (!depth && !(*s == ' ' && (s[1] == '(' || s[1] == ',' || (k && o->desc[k - 1] == ' ')))) {
            o->desc[k++] = *s;
        }
        depth -= *s == ')' && depth > 0;
    }
    while (k && (o->desc[k - 1] == ' ' || o->desc[k - 1] == ',' || o->desc[k - 1] == ':')) {
        k--;
    }
    o->desc[k] = '\0';
}

/* An option line of a help text: "  -j, --jobs N    tasks at once". */
static void parse_opt_line(struct cmd *c, const char *line)
{
    const char *p = line;
    char name[40];
    char shortn = 0;
    struct opt *o;

    while (*p == ' ') {
        p++;
    }
    if (p - line > 8 || p[0] != '-') {
        return;
    }
    if (p[1] != '-' && p[1] && p[2] == ',') {
        shortn = p[1];
        p += 3;
        while (*p == ' ') {
            p++;
        }
    }
    if (p[0] != '-' || p[1] != '-' || !isalpha((unsigned char)p[2])) {
        return;
    }
    p = token(p, name, sizeof(name), '=');
    o = opt_of(c, name);
    if (!o) {
        return;
    }
    if (shortn) {
        o->short_name = shortn;
    }
    if (*p == '=' || (*p == ' ' && p[1] && p[1] != ' ' && p[1] != '\n')) {
        p = token(p + 1, o->meta, sizeof(o->meta), 0);
    }
    if (!o->desc[0]) { /* an option listed twice keeps its first description */
        describe(o, p);
    }
}

/* A usage line "flow NAME ARG [ARG] [--opt a|b] ...": the positional
 * arguments, and the choices of the options that list them. */
static void parse_usage_line(struct cmd *c, const char *p, bool continued)
{
    char tok[48];
    char pos[MAX_POS][48];
    size_t n = 0;
    bool repeat = false;
    bool in_opts = continued;
    struct opt *last = NULL;

    if (!continued) {
        p += strspn(p, " ");
        p = token(p, tok, sizeof(tok), 0); /* "flow" */
        p += strspn(p, " ");
        p = token(p, tok, sizeof(tok), 0); /* the command's name */
    }
    for (;;) {
        char *s;

        p += strspn(p, " ");
        if (!*p || *p == '\n') {
            break;
        }
        p = token(p, tok, sizeof(tok), 0);
        in_opts = in_opts || tok[0] == '(' || (tok[0] == '[' && tok[1] == '-') || tok[0] == '-';
        s = bare(tok, in_opts ? NULL : &repeat);
        if (!in_opts && *s && n < MAX_POS) {
            snprintf(pos[n++], sizeof(pos[0]), "%s", s);
        } else if (s[0] == '-' && s[1] == '-') {
            last = opt_of(c, s);
            continue;
        } else if (last && strchr(s, '|') && s[0] != '-') {
            snprintf(last->choices, sizeof(last->choices), "%s", s);
        }
        last = NULL;
    }
    if (n > c->npos) { /* of several usage lines, the one with the most */
        memcpy(c->pos, pos, sizeof(pos));
        c->npos = n;
        c->pos_repeat = repeat;
    }
}

static void parse_help(struct cmd *c, const char *text)
{
    const char *line = text;
    char prefix[64];
    bool in_words = false;
    bool in_usage = false;

    snprintf(prefix, sizeof(prefix), "flow %s", c->name);
    while (*line) {
        const char *nl = strchr(line, '\n');
        const char *p = line + strspn(line, " ");

        if (strncmp(line, "usage: ", 7) == 0) {
            parse_usage_line(c, line + 7, false);
            in_usage = true;
        } else if (in_usage && p - line == 7 && strncmp(p, prefix, strlen(prefix)) == 0 &&
                   p[strlen(prefix)] == ' ') { /* another usage, under the first */
            parse_usage_line(c, p, false);
        } else if (in_usage && line[0] == ' ') { /* the usage goes on */
            parse_usage_line(c, p, true);
        } else if (strncmp(line, "Subcommands:", 12) == 0) {
            in_words = true;
        } else if (line[0] != ' ') {
            in_words = false;
            in_usage = false;
        } else if (in_words && line[1] == ' ' && islower((unsigned char)line[2])) {
            if (c->nwords < MAX_WORDS) {
                token(line + 2, c->words[c->nwords++], sizeof(c->words[0]), 0);
            }
        } else {
            parse_opt_line(c, line);
        }
        if (!nl) {
            break;
        }
        line = nl + 1;
    }
}

static size_t load_commands(struct cmd *cmds, size_t max)
{
    size_t n = 0;
    size_t i;
    const struct cli_command *cc;

    for (i = 0; n < max && (cc = cli_command_at(i)); i++) {
        memset(&cmds[n], 0, sizeof(cmds[n]));
        cmds[n].name = cc->name;
        cmds[n].summary = cc->summary;
        parse_help(&cmds[n], cc->help);
        n++;
    }
    return n;
}

/* ---- bash ------------------------------------------------------------------- */

/* Print `s` for inside single quotes of the shell. */
static void put_quoted(const char *s)
{
    for (; *s; s++) {
        if (*s == '\'') {
            fputs("'\\''", stdout);
        } else {
            putchar(*s);
        }
    }
}

static void put_words(const char *s, char sep)
{
    for (; *s; s++) {
        putchar(*s == '|' ? sep : *s);
    }
}

static void print_bash(const struct cmd *cmds, size_t n)
{
    size_t i;
    size_t k;

    printf("# bash completion for flow (flow %s): 'flow completion bash'\n", flow_version());
    fputs("_flow_cmds='", stdout);
    for (i = 0; i < n; i++) {
        printf("%s ", cmds[i].name);
    }
    fputs("help'\n\n# _flow_info CMD opts|valopts|pos|words|repeat\n"
          "_flow_info() {\n    case $1:$2 in\n",
          stdout);
    for (i = 0; i < n; i++) {
        const struct cmd *c = &cmds[i];

        printf("    %s:opts) echo '", c->name);
        for (k = 0; k < c->nopts; k++) {
            printf("%s%s", k ? " " : "", c->opts[k].name);
            if (c->opts[k].short_name) {
                printf(" -%c", c->opts[k].short_name);
            }
        }
        printf("';;\n    %s:valopts) echo ' ", c->name);
        for (k = 0; k < c->nopts; k++) {
            if (c->opts[k].meta[0]) {
                printf("%s ", c->opts[k].name);
                if (c->opts[k].short_name) {
                    printf("-%c ", c->opts[k].short_name);
                }
            }
        }
        printf("';;\n    %s:pos) echo '", c->name);
        for (k = 0; k < c->npos; k++) {
            printf("%s", k ? " " : "");
            put_quoted(c->pos[k]);
        }
        printf("';;\n    %s:repeat) echo '%s';;\n", c->name, c->pos_repeat ? "1" : "");
        if (c->nwords) {
            printf("    %s:words) echo '", c->name);
            for (k = 0; k < c->nwords; k++) {
                printf("%s%s", k ? " " : "", c->words[k]);
            }
            fputs("';;\n", stdout);
        }
        for (k = 0; k < c->nopts; k++) {
            const struct opt *o = &c->opts[k];

            if (o->choices[0]) {
                printf("    %s:%s", c->name, o->name);
                if (o->short_name) {
                    printf(" | %s:-%c", c->name, o->short_name);
                }
                fputs(") echo '", stdout);
                put_words(o->choices, ' ');
                fputs("';;\n", stdout);
            }
        }
    }
    fputs("    help:pos) echo 'COMMAND';;\n"
          "    *:opts) echo '--help -h';;\n"
          "    esac\n}\n\n",
          stdout);
    fputs(
        "# The words of positional argument KIND (FILE, RUN, TASK, a|b...).\n"
        "_flow_pos_words() {\n"
        "    local kind=$1 cmd=$2 run=$3 store=$4 cur=$5 f\n"
        "    case $kind in\n"
        "    FILE | FILE.*)\n"
        "        compopt -o filenames 2>/dev/null\n"
        "        for f in $(compgen -f -- \"$cur\"); do\n"
        "            [[ -d $f || $f == *.yaml || $f == *.yml || $f == *.json ]] &&\n"
        "                COMPREPLY+=(\"$f\")\n"
        "        done ;;\n"
        "    RUN) COMPREPLY=($(compgen -W \"$(\"${COMP_WORDS[0]}\" __complete runs "
        "${store:+--store \"$store\"} 2>/dev/null)\" -- \"$cur\")) ;;\n"
        "    TASK) COMPREPLY=($(compgen -W \"$(\"${COMP_WORDS[0]}\" __complete tasks \"$run\" "
        "${store:+--store \"$store\"} 2>/dev/null)\" -- \"$cur\")) ;;\n"
        "    COMMAND) COMPREPLY=($(compgen -W \"$_flow_cmds\" -- \"$cur\")) ;;\n"
        "    SUBCOMMAND) COMPREPLY=($(compgen -W \"$(_flow_info \"$cmd\" words)\" -- \"$cur\")) ;;\n"
        "    *'|'*) COMPREPLY=($(compgen -W \"${kind//|/ }\" -- \"$cur\")) ;;\n"
        "    *) compopt -o default 2>/dev/null ;;\n"
        "    esac\n"
        "}\n\n"
        "_flow() {\n"
        "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
        "    local cmd='' run='' store='' npos=0 i w valopts\n"
        "    COMPREPLY=()\n"
        "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
        "        w=${COMP_WORDS[i]}\n"
        "        if [[ -z $cmd ]]; then\n"
        "            [[ $w == -* ]] || cmd=$w\n"
        "            valopts=$(_flow_info \"$cmd\" valopts)\n"
        "            continue\n"
        "        fi\n"
        "        case $w in\n"
        "        --store=*) store=${w#--store=} ;;\n"
        "        --store) store=${COMP_WORDS[i+1]} ;;\n"
        "        esac\n"
        "        if [[ $w == -* ]]; then\n"
        "            [[ $w != *=* && $valopts == *\" $w \"* ]] && ((i++))\n"
        "            continue\n"
        "        fi\n"
        "        ((npos == 0)) && run=$w\n"
        "        ((npos++))\n"
        "    done\n"
        "    if [[ -z $cmd ]]; then\n"
        "        COMPREPLY=($(compgen -W \"$_flow_cmds --help --version\" -- \"$cur\"))\n"
        "        return 0\n"
        "    fi\n"
        "    if [[ $prev == -* && $prev != *=* && $valopts == *\" $prev \"* ]]; then\n"
        "        local words\n"
        "        words=$(_flow_info \"$cmd\" \"$prev\")\n"
        "        if [[ -n $words ]]; then\n"
        "            COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
        "        else\n"
        "            compopt -o default 2>/dev/null\n"
        "        fi\n"
        "        return 0\n"
        "    fi\n"
        "    if [[ $cur == -* ]]; then\n"
        "        COMPREPLY=($(compgen -W \"$(_flow_info \"$cmd\" opts)\" -- \"$cur\"))\n"
        "        return 0\n"
        "    fi\n"
        "    local -a pos=($(_flow_info \"$cmd\" pos))\n"
        "    local kind=${pos[npos]}\n"
        "    if [[ -z $kind && -n $(_flow_info \"$cmd\" repeat) && ${#pos[@]} -gt 0 ]]; then\n"
        "        kind=${pos[${#pos[@]}-1]}\n"
        "    fi\n"
        "    _flow_pos_words \"$kind\" \"$cmd\" \"$run\" \"$store\" \"$cur\"\n"
        "    return 0\n"
        "}\n"
        "complete -F _flow flow\n",
        stdout);
}

/* ---- zsh ------------------------------------------------------------------ */

/* A description for inside '...[DESC]...' of _arguments. */
static void put_desc(const char *s)
{
    for (; *s; s++) {
        if (*s == '\'') {
            fputs("'\\''", stdout);
        } else if (*s == '[' || *s == ']' || *s == ':' || *s == '\\') {
            printf("\\%c", *s);
        } else {
            putchar(*s);
        }
    }
}

static void put_zsh_action(const char *kind, int at)
{
    if (strncmp(kind, "FILE", 4) == 0) {
        printf("%d:workflow file:_files -g \"*.(yaml|yml|json)\"", at);
    } else if (strcmp(kind, "RUN") == 0) {
        printf("%d:run:_flow_runs", at);
    } else if (strcmp(kind, "TASK") == 0) {
        printf("%d:task:_flow_tasks", at);
    } else if (strcmp(kind, "COMMAND") == 0) {
        printf("%d:command:_flow_commands", at);
    } else if (strcmp(kind, "SUBCOMMAND") == 0) {
        printf("%d:subcommand:_flow_words", at);
    } else if (strchr(kind, '|')) {
        printf("%d:%s:(", at, "value");
        put_words(kind, ' ');
        putchar(')');
    } else {
        printf("%d:%s:_files", at, kind);
    }
}

static void print_zsh(const struct cmd *cmds, size_t n)
{
    size_t i;
    size_t k;

    printf("#compdef flow\n# zsh completion for flow (flow %s): 'flow completion zsh'\n\n",
           flow_version());
    fputs("_flow_commands() {\n    local -a cmds\n    cmds=(\n", stdout);
    for (i = 0; i < n; i++) {
        fputs("        '", stdout);
        put_quoted(cmds[i].name);
        fputs(":", stdout);
        put_quoted(cmds[i].summary);
        fputs("'\n", stdout);
    }
    fputs("        'help:show the help of a command'\n"
          "    )\n    _describe -t commands 'flow command' cmds\n}\n\n",
          stdout);
    fputs("_flow_store_args() {\n"
          "    local i\n"
          "    for ((i = 1; i < ${#words}; i++)); do\n"
          "        case ${words[i]} in\n"
          "        --store) print -r -- --store ${words[i+1]} ;;\n"
          "        --store=*) print -r -- --store ${words[i]#--store=} ;;\n"
          "        esac\n"
          "    done\n"
          "}\n\n"
          "_flow_runs() {\n"
          "    local -a runs\n"
          "    runs=(${(f)\"$($_flow_prog __complete runs $(_flow_store_args) 2>/dev/null)\"})\n"
          "    _describe -t runs 'run' runs\n"
          "}\n\n"
          "_flow_tasks() {\n"
          "    local -a tasks\n"
          "    local run=${line[1]}\n"
          "    tasks=(${(f)\"$($_flow_prog __complete tasks $run $(_flow_store_args) "
          "2>/dev/null)\"})\n"
          "    _describe -t tasks 'task' tasks\n"
          "}\n\n"
          "_flow_words() {\n"
          "    local -a subs\n"
          "    case ${words[1]} in\n",
          stdout);
    for (i = 0; i < n; i++) {
        if (!cmds[i].nwords) {
            continue;
        }
        printf("    %s) subs=(", cmds[i].name);
        for (k = 0; k < cmds[i].nwords; k++) {
            printf("%s%s", k ? " " : "", cmds[i].words[k]);
        }
        fputs(") ;;\n", stdout);
    }
    fputs("    esac\n    _describe -t subcommands 'subcommand' subs\n}\n\n", stdout);
    fputs("_flow() {\n"
          "    local curcontext=$curcontext state line ret=1\n"
          "    typeset -A opt_args\n"
          "    typeset -g _flow_prog=${words[1]} # the program asked for runs and tasks\n"
          "    _arguments -C '(- 1 *)'{-h,--help}'[show the help]' "
          "'(- 1 *)'{-V,--version}'[print the version]' '1:command:_flow_commands' "
          "'*::arg:->args' && ret=0\n"
          "    [[ $state == args ]] || return ret\n"
          "    curcontext=${curcontext%:*:*}:flow-$words[1]:\n"
          "    case $words[1] in\n",
          stdout);
    for (i = 0; i < n; i++) {
        const struct cmd *c = &cmds[i];

        printf("    %s)\n        _arguments -s \\\n", c->name);
        for (k = 0; k < c->nopts; k++) {
            const struct opt *o = &c->opts[k];

            fputs("            '*'", stdout);
            if (o->short_name) {
                printf("{-%c,%s}'", o->short_name, o->name);
            } else {
                printf("'%s", o->name);
            }
            putchar('[');
            put_desc(o->desc);
            putchar(']');
            if (o->choices[0]) {
                fputs(":value:(", stdout);
                put_words(o->choices, ' ');
                putchar(')');
            } else if (o->meta[0]) {
                putchar(':');
                put_desc(o->meta);
                fputs(strstr(o->meta, "FILE") || strstr(o->meta, "DIR") ? ":_files" : ":", stdout);
            }
            fputs("' \\\n", stdout);
        }
        for (k = 0; k < c->npos; k++) {
            fputs("            '", stdout);
            if (c->pos_repeat && k + 1 == c->npos) {
                fputs("*", stdout);
                put_zsh_action(c->pos[k], 0);
            } else {
                put_zsh_action(c->pos[k], (int)k + 1);
            }
            fputs("' \\\n", stdout);
        }
        fputs("            && ret=0 ;;\n", stdout);
    }
    fputs("    completion) _arguments '1:shell:(bash zsh)' && ret=0 ;;\n"
          "    help) _arguments '1:command:_flow_commands' && ret=0 ;;\n"
          "    esac\n"
          "    return ret\n"
          "}\n\n"
          "_flow \"$@\"\n",
          stdout);
}

static int completion_main(int argc, char **argv)
{
    static const struct cli_option options[] = {
        {"help", 'h', false, 1},
        {NULL, 0, false, 0},
    };
    struct cli_args a;
    struct cmd *cmds;
    size_t n;
    const char *shell;
    int id;

    cli_args_init(&a, "completion", argc, argv, options);
    id = cli_next_opt(&a);
    if (id > 0) {
        return cli_print_help(help);
    }
    if (id < 0) {
        return CLI_EXIT_USAGE;
    }
    if (a.npos != 1) {
        return cli_usage_error("completion", "'completion' takes one shell: bash or zsh");
    }
    shell = cli_pos(&a, 0);
    if (strcmp(shell, "bash") != 0 && strcmp(shell, "zsh") != 0) {
        return cli_usage_error("completion", "unknown shell '%s' (known: bash, zsh)", shell);
    }
    cmds = cli_malloc(64 * sizeof(*cmds));
    n = load_commands(cmds, 64);
    if (strcmp(shell, "bash") == 0) {
        print_bash(cmds, n);
    } else {
        print_zsh(cmds, n);
    }
    free(cmds);
    return cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

const struct cli_command cli_cmd_completion = {
    "completion",
    "print a shell completion script (bash, zsh)",
    help,
    completion_main,
};

/* ---- flow __complete runs|tasks: words for the scripts ---------------------- */

/* Print what JSON array `list` holds under `key` of each item, once each. */
static void print_field(json_t *list, const char *key)
{
    size_t i;
    size_t j;

    for (i = 0; i < json_array_size(list); i++) {
        const char *s = json_string_value(json_object_get(json_array_get(list, i), key));
        bool seen = false;

        for (j = 0; s && j < i && !seen; j++) {
            const char *t = json_string_value(json_object_get(json_array_get(list, j), key));

            seen = t && strcmp(s, t) == 0;
        }
        if (s && !seen) {
            printf("%s\n", s);
        }
    }
}

/* `flow __complete runs [--store URL]`, `flow __complete tasks RUN [--store
 * URL]`: the run ids of the store, the tasks of a run; silent on any error
 * (nothing to complete), never creating a store. */
int cli_complete_main(int argc, char **argv)
{
    const char *store_url = NULL;
    const char *what = argc > 1 ? argv[1] : "";
    const char *run = NULL;
    flow_store *st;
    json_t *v = NULL;
    int i;

    for (i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--store") == 0 && i + 1 < argc) {
            store_url = argv[++i];
        } else if (strncmp(argv[i], "--store=", 8) == 0) {
            store_url = argv[i] + 8;
        } else if (!run) {
            run = argv[i];
        }
    }
    st = flow_store_open_flags(store_url, FLOW_STORE_NOCREATE, NULL);
    if (!st) {
        return CLI_EXIT_OK;
    }
    if (strcmp(what, "runs") == 0) {
        v = flow_store_runs(st, NULL);
        print_field(v, "id");
    } else if (strcmp(what, "tasks") == 0 && run) {
        v = flow_store_run(st, run, NULL);
        print_field(json_object_get(v, "tasks"), "task");
    }
    json_decref(v);
    flow_store_close(st);
    return cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}
