/* cmd_graph.c -- `flow graph FILE [--format mermaid|dot|json]`: print a flow's graph
 * from flow_describe(): Mermaid flowchart, Graphviz digraph, or the description as
 * JSON. Node ids are generated (t0, t1, ... for tasks; l0, ... for labels), so any
 * task name is safe; names appear only as escaped, quoted text. */
#include "cli.h"

#include <string.h>

enum { OPT_HELP = 1, OPT_FORMAT };

static const struct cli_option options[] = {
    {"help", 'h', false, OPT_HELP},
    {"format", 'f', true, OPT_FORMAT},
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow graph FILE [--format mermaid|dot|json]\n"
    "\n"
    "Print the graph of a workflow file's tasks on stdout.\n"
    "\n"
    "Options:\n"
    "  -f, --format F  mermaid (default): a 'flowchart TD'; dot: a Graphviz digraph;\n"
    "                  json: the flow's description (tasks, edges, labels)\n"
    "  -h, --help      show this help\n"
    "\n"
    "Nodes: routers are diamonds, start tasks stadiums (mermaid) or bold rounded\n"
    "boxes (dot), entry tasks flags/double borders, C functions subroutines, no-ops\n"
    "rounded; a label that no known router emits is a hexagon. Edges: after solid,\n"
    "after_any dashed 'any', optional dashed/dotted 'optional', label solid with the\n"
    "label, when thick/bold, fallback dashed 'on error'.\n"
    "\n"
    "Exit status: 0 printed, 2 invalid workflow (errors on stderr) or usage error.\n";

enum format { FMT_MERMAID, FMT_DOT, FMT_JSON };

/* Lookups built from the description: task name -> node index, label -> index. */
struct graph {
    json_t *desc;      /* flow_describe() result, owned */
    json_t *task_ids;  /* {name: index} */
    json_t *label_ids; /* {label: index}, labels drawn as their own node */
    json_t *drawn;     /* {"label\nto": true}, label triggers already drawn */
    FILE *out;
};

static const char *str_field(const json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s ? s : dflt;
}

static bool bool_field(const json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

static long task_index(const struct graph *g, const char *name)
{
    json_t *v = name ? json_object_get(g->task_ids, name) : NULL;

    return v ? (long)json_integer_value(v) : -1;
}

/* Index of the node for `label`, created on first use; -1 on allocation failure. */
static long label_index(struct graph *g, const char *label, bool *is_new)
{
    json_t *v = json_object_get(g->label_ids, label);
    long i;

    *is_new = false;
    if (v) {
        return (long)json_integer_value(v);
    }
    i = (long)json_object_size(g->label_ids);
    if (json_object_set_new(g->label_ids, label, json_integer(i)) != 0) {
        return -1;
    }
    *is_new = true;
    return i;
}

static void mark_drawn(struct graph *g, const char *label, const char *to)
{
    size_t len = strlen(label) + strlen(to) + 2;
    char *key = cli_malloc(len);

    snprintf(key, len, "%s\n%s", label, to);
    json_object_set_new(g->drawn, key, json_true());
    free(key);
}

static bool was_drawn(const struct graph *g, const char *label, const char *to)
{
    size_t len = strlen(label) + strlen(to) + 2;
    char *key = cli_malloc(len);
    bool found;

    snprintf(key, len, "%s\n%s", label, to);
    found = json_object_get(g->drawn, key) != NULL;
    free(key);
    return found;
}

/* ------------------------------------------------------------------------ */
/* Mermaid                                                                   */

/* Text inside a quoted Mermaid string: entity codes for what the parser or the
 * HTML renderer would take as syntax. */
static void mm_text(FILE *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        switch (c) {
        case '"':
            fputs("#quot;", out);
            break;
        case '#':
            fputs("#35;", out);
            break;
        case '<':
            fputs("#lt;", out);
            break;
        case '>':
            fputs("#gt;", out);
            break;
        case '&':
            fputs("#amp;", out);
            break;
        case '|':
            fputs("#124;", out);
            break;
        case '`':
            fputs("#96;", out);
            break;
        default:
            fputc(c < 0x20 || c == 0x7f ? ' ' : c, out);
            break;
        }
    }
}

/* An edge text: bare when it is a plain word, else quoted and escaped. */
static void mm_edge_text(FILE *out, const char *s)
{
    const char *p = s;

    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '_' || c == '-' || c == '.' || c == ' ' || c == ':';

        if (!plain) {
            break;
        }
    }
    if (*s && !*p) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    mm_text(out, s);
    fputc('"', out);
}

static void mm_node(FILE *out, long i, const json_t *t)
{
    const char *kind = str_field(t, "kind", "command");
    const char *open = "[\"";
    const char *close = "\"]";

    if (bool_field(t, "router")) {
        open = "{\"";
        close = "\"}";
    } else if (bool_field(t, "start")) {
        open = "([\"";
        close = "\"])";
    } else if (bool_field(t, "entry")) {
        open = ">\"";
        close = "\"]";
    } else if (strcmp(kind, "function") == 0) {
        open = "[[\"";
        close = "\"]]";
    } else if (strcmp(kind, "noop") == 0) {
        open = "(\"";
        close = "\")";
    }
    fprintf(out, "    t%ld%s", i, open);
    mm_text(out, str_field(t, "name", "?"));
    fprintf(out, "%s\n", close);
}

static void mm_label_node(FILE *out, long i, const char *label)
{
    fprintf(out, "    l%ld{{\"", i);
    mm_text(out, label);
    fputs("\"}}\n", out);
}

/* One edge, from task `from` or, when `from_is_label`, from label node `from`. */
static void mm_edge(FILE *out, long from, bool from_is_label, long to, const char *kind,
                    const char *text)
{
    fprintf(out, "    %c%ld ", from_is_label ? 'l' : 't', from);
    if (strcmp(kind, "after_any") == 0) {
        fputs("-.->|any|", out);
    } else if (strcmp(kind, "optional") == 0) {
        fputs("-.->|optional|", out);
    } else if (strcmp(kind, "fallback") == 0) {
        fputs("-.->|on error|", out);
    } else if (strcmp(kind, "label") == 0 && !from_is_label && text && *text) {
        fputs("-->|", out);
        mm_edge_text(out, text);
        fputc('|', out);
    } else if (strcmp(kind, "when") == 0) {
        fputs("==>|", out);
        mm_edge_text(out, text && *text ? text : "when");
        fputc('|', out);
    } else {
        fputs("-->", out);
    }
    fprintf(out, " t%ld\n", to);
}

/* ------------------------------------------------------------------------ */
/* Graphviz dot                                                              */

static void dot_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc(c, out);
        } else if (c == '\n') {
            fputs("\\n", out);
        } else if (c < 0x20 || c == 0x7f) {
            fputc(' ', out);
        } else {
            fputc(c, out);
        }
    }
    fputc('"', out);
}

static void dot_node(FILE *out, long i, const json_t *t)
{
    const char *kind = str_field(t, "kind", "command");

    fprintf(out, "    t%ld [label=", i);
    dot_string(out, str_field(t, "name", "?"));
    if (bool_field(t, "router")) {
        fputs(", shape=diamond", out);
    } else if (strcmp(kind, "function") == 0) {
        fputs(", shape=component", out);
    } else if (strcmp(kind, "noop") == 0) {
        fputs(", shape=ellipse", out);
    }
    if (bool_field(t, "start")) {
        fputs(", style=\"rounded,bold\"", out);
    }
    if (bool_field(t, "entry")) {
        fputs(", peripheries=2", out);
    }
    fputs("];\n", out);
}

static void dot_label_node(FILE *out, long i, const char *label)
{
    fprintf(out, "    l%ld [label=", i);
    dot_string(out, label);
    fputs(", shape=hexagon, style=dashed];\n", out);
}

static void dot_edge(FILE *out, long from, bool from_is_label, long to, const char *kind,
                     const char *text)
{
    fprintf(out, "    %c%ld -> t%ld", from_is_label ? 'l' : 't', from, to);
    if (strcmp(kind, "after_any") == 0) {
        fputs(" [style=dashed, label=\"any\"]", out);
    } else if (strcmp(kind, "optional") == 0) {
        fputs(" [style=dotted, label=\"optional\"]", out);
    } else if (strcmp(kind, "fallback") == 0) {
        fputs(" [style=dashed, color=red, label=\"on error\"]", out);
    } else if (strcmp(kind, "label") == 0 && !from_is_label && text && *text) {
        fputs(" [label=", out);
        dot_string(out, text);
        fputc(']', out);
    } else if (strcmp(kind, "when") == 0) {
        fputs(" [style=bold, label=", out);
        dot_string(out, text && *text ? text : "when");
        fputc(']', out);
    }
    fputs(";\n", out);
}

/* ------------------------------------------------------------------------ */
/* Drawing                                                                   */

static void draw_node(struct graph *g, enum format fmt, long i, const json_t *t)
{
    if (fmt == FMT_MERMAID) {
        mm_node(g->out, i, t);
    } else {
        dot_node(g->out, i, t);
    }
}

/* An edge from the node of a label: the node is declared on first use. */
static void draw_from_label(struct graph *g, enum format fmt, const char *label, long to)
{
    bool is_new = false;
    long l = label_index(g, label, &is_new);

    if (l < 0) {
        return;
    }
    if (is_new) {
        if (fmt == FMT_MERMAID) {
            mm_label_node(g->out, l, label);
        } else {
            dot_label_node(g->out, l, label);
        }
    }
    if (fmt == FMT_MERMAID) {
        mm_edge(g->out, l, true, to, "label", label);
    } else {
        dot_edge(g->out, l, true, to, "label", label);
    }
}

static void draw_edge(struct graph *g, enum format fmt, const json_t *e)
{
    const char *kind = str_field(e, "kind", "after");
    const char *text = str_field(e, "label", NULL);
    const char *to_name = str_field(e, "to", NULL);
    long from = task_index(g, str_field(e, "from", NULL));
    long to = task_index(g, to_name);

    if (to < 0) {
        return;
    }
    if (strcmp(kind, "label") == 0 && text) {
        mark_drawn(g, text, to_name);
        if (from < 0) {
            draw_from_label(g, fmt, text, to);
            return;
        }
    }
    if (from < 0) {
        return;
    }
    if (fmt == FMT_MERMAID) {
        mm_edge(g->out, from, false, to, kind, text);
    } else {
        dot_edge(g->out, from, false, to, kind, text);
    }
}

static void draw(struct graph *g, enum format fmt)
{
    const json_t *tasks = json_object_get(g->desc, "tasks");
    const json_t *edges = json_object_get(g->desc, "edges");
    const json_t *labels = json_object_get(g->desc, "labels");
    const char *name = str_field(g->desc, "name", "flow");
    size_t i;
    json_t *v;

    if (fmt == FMT_MERMAID) {
        fputs("flowchart TD\n    %% flow: ", g->out);
        mm_text(g->out, name);
        fputc('\n', g->out);
    } else {
        fputs("digraph ", g->out);
        dot_string(g->out, name);
        fputs(" {\n    rankdir=TB;\n    node [shape=box, fontname=\"Helvetica\"];\n"
              "    edge [fontname=\"Helvetica\"];\n",
              g->out);
    }
    json_array_foreach(tasks, i, v) {
        const char *tname = str_field(v, "name", NULL);

        if (tname && !json_object_get(g->task_ids, tname)) {
            json_object_set_new(g->task_ids, tname, json_integer((json_int_t)i));
            draw_node(g, fmt, (long)i, v);
        }
    }
    json_array_foreach(edges, i, v) {
        draw_edge(g, fmt, v);
    }
    /* Label triggers that no edge drew yet (no router known to emit them). */
    json_array_foreach(labels, i, v) {
        const char *label = str_field(v, "label", NULL);
        const char *to_name = str_field(v, "to", NULL);
        long to = task_index(g, to_name);

        if (label && to >= 0 && !was_drawn(g, label, to_name)) {
            mark_drawn(g, label, to_name);
            draw_from_label(g, fmt, label, to);
        }
    }
    if (fmt == FMT_DOT) {
        fputs("}\n", g->out);
    }
}

static int graph_main(int argc, char **argv)
{
    struct cli_args a;
    enum format fmt = FMT_MERMAID;
    struct graph g;
    flow *f;
    int id;
    int rc = CLI_EXIT_OK;

    cli_args_init(&a, "graph", argc, argv, options);
    while ((id = cli_next_opt(&a)) > 0) {
        switch (id) {
        case OPT_HELP:
            return cli_print_help(help);
        case OPT_FORMAT:
            if (strcmp(a.value, "mermaid") == 0) {
                fmt = FMT_MERMAID;
            } else if (strcmp(a.value, "dot") == 0) {
                fmt = FMT_DOT;
            } else if (strcmp(a.value, "json") == 0) {
                fmt = FMT_JSON;
            } else {
                return cli_usage_error("graph", "unknown format '%s' (use mermaid, dot or json)",
                                       a.value);
            }
            break;
        default:
            break;
        }
    }
    if (id < 0) {
        return CLI_EXIT_USAGE;
    }
    const char *path = NULL;
    int usage = cli_one_file(&a, &path);
    if (usage >= 0) {
        return usage;
    }
    f = cli_load_flow(path, false);
    if (!f) {
        return CLI_EXIT_USAGE;
    }
    memset(&g, 0, sizeof(g));
    g.out = stdout;
    g.desc = flow_describe(f);
    g.task_ids = json_object();
    g.label_ids = json_object();
    g.drawn = json_object();
    if (!g.desc || !g.task_ids || !g.label_ids || !g.drawn) {
        cli_error("cannot describe the flow in '%s': out of memory", cli_pos(&a, 0));
        rc = CLI_EXIT_FAILED;
    } else if (fmt == FMT_JSON) {
        rc = cli_print_json(stdout, g.desc) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    } else {
        draw(&g, fmt);
        rc = cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    }
    json_decref(g.drawn);
    json_decref(g.label_ids);
    json_decref(g.task_ids);
    json_decref(g.desc);
    flow_free(f);
    return rc;
}

const struct cli_command cli_cmd_graph = {
    "graph",
    "print a flow's graph (mermaid, dot or json)",
    help,
    graph_main,
};
