/* cmd_graph.c -- `flow graph FILE [--format mermaid|dot|json|svg]`: print a flow's
 * graph from flow_describe(): Mermaid flowchart, Graphviz digraph, the description as
 * JSON, or an SVG drawing (flow_graph_svg(), the library's own layout). Node ids are generated (t0, t1, ... for tasks; l0, ... for labels; a nested
 * flow's nodes carry its task's id as a prefix, t3_t0), so any task name is safe;
 * names appear only as escaped, quoted text. Every edge kind has its own style; the
 * legend is in the help below and in docs/cli.md. */
#include "cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { OPT_HELP = 1, OPT_FORMAT, OPT_DIRECTION, OPT_MAX_LABEL, OPT_NO_STYLE };

static const struct cli_option options[] = {
    {"help", 'h', false, OPT_HELP},
    {"format", 'f', true, OPT_FORMAT},
    {"direction", 'd', true, OPT_DIRECTION},
    {"max-label", 0, true, OPT_MAX_LABEL},
    {"no-style", 0, false, OPT_NO_STYLE},
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow graph FILE [--format mermaid|dot|json|svg] [--direction TB|LR]\n"
    "\n"
    "Print the graph of a workflow file's tasks on stdout.\n"
    "\n"
    "Options:\n"
    "  -f, --format F     mermaid (default): a 'flowchart TD'; dot: a Graphviz digraph;\n"
    "                     json: the flow's description (tasks, edges, labels);\n"
    "                     svg: a drawing, laid out by flow itself (no Graphviz)\n"
    "  -d, --direction D  TB (default): layers from top to bottom; LR: left to right\n"
    "      --max-label N  svg: characters of a name or an edge's text before it is\n"
    "                     cut with an ellipsis (default 24; the full text is in a tooltip)\n"
    "      --no-style     svg: leave out the embedded style sheet\n"
    "  -h, --help         show this help\n"
    "\n"
    "Nodes: routers are diamonds, start tasks stadiums (mermaid) or bold rounded\n"
    "boxes (dot), entry tasks flags/double borders, C functions subroutines, no-ops\n"
    "rounded; a label or event that tasks listen to ('on:') is a hexagon. A nested\n"
    "flow ('flow:') is a box around the child's own graph. 'foreach' tasks say so\n"
    "under their name: (foreach, 4 at once).\n"
    "\n"
    "Edges (mermaid / dot):\n"
    "  after          -->                  solid\n"
    "  after_any      -.->|any|            dashed, 'any'\n"
    "  optional       -.->|optional|       dotted, 'optional'\n"
    "  when           ==>|CONDITION|       bold\n"
    "  label          hexagon --> task     solid from the label's node\n"
    "  may emit       router -.-> hexagon  dotted, open arrow: a router (or a task\n"
    "                                      running 'flow ctl emit') that may emit it\n"
    "  connect        --o|EVENT (a→b)|     blue, round head: events routed by\n"
    "                                      'connect', with the keys 'map' renames\n"
    "  on error       -.->|on error|       dashed red: the fallback\n"
    "\n"
    "SVG: one <g id=\"t-NAME\" class=\"task kind-KIND\"> per task; the classes\n"
    "st-pending, st-running, st-completed, st-failed, st-skipped, st-cancelled,\n"
    "st-paused, st-waiting and st-stopped on it colour the task (docs/cli.md).\n"
    "\n"
    "Exit status: 0 printed, 2 invalid workflow (errors on stderr) or usage error.\n";

enum format { FMT_MERMAID, FMT_DOT, FMT_JSON, FMT_SVG };

/* Nested flows deeper than this are drawn as one node. */
#define MAX_DEPTH 8
/* Node ids: "t12_t3_l0" -- a prefix per level of nesting. */
#define ID_MAX 192

/* Edge kinds of the drawing: the description's, plus the two a label node adds. */
enum edge_kind {
    E_AFTER,
    E_AFTER_ANY,
    E_OPTIONAL,
    E_WHEN,
    E_LABEL,   /* router -> task, the label known */
    E_TRIGGER, /* label node -> task */
    E_MAYBE,   /* task -> label node: it may emit the label */
    E_CONNECT,
    E_FALLBACK
};

/* One flow being drawn: the top one, or a nested flow inside its task's box. */
struct level {
    FILE *out;
    enum format fmt;
    const json_t *desc; /* flow_describe() of this flow, borrowed */
    json_t *task_ids;   /* {name: index} */
    json_t *label_ids;  /* {label: index}, labels drawn as their own node */
    json_t *drawn;      /* {"label\nto": true}, label triggers already drawn */
    char prefix[ID_MAX];
    int depth;
    bool left_right; /* --direction LR */
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

static const json_t *task_at(const struct level *L, long i)
{
    return json_array_get(json_object_get(L->desc, "tasks"), (size_t)i);
}

static long task_index(const struct level *L, const char *name)
{
    json_t *v = name ? json_object_get(L->task_ids, name) : NULL;

    return v ? (long)json_integer_value(v) : -1;
}

/* The child's description when task `t` at nesting `depth` is drawn as a nested
 * flow (kind "flow" with a "subflow" that has tasks), else NULL. */
static const json_t *subflow_of(const json_t *t, int depth)
{
    const json_t *sub = json_object_get(t, "subflow");

    if (depth + 1 >= MAX_DEPTH || strcmp(str_field(t, "kind", ""), "flow") != 0 ||
        !json_is_object(sub) || json_array_size(json_object_get(sub, "tasks")) == 0) {
        return NULL;
    }
    return sub;
}

/* Index of the node for `label`, created on first use; -1 on allocation failure. */
static long label_index(struct level *L, const char *label, bool *is_new)
{
    json_t *v = json_object_get(L->label_ids, label);
    long i;

    *is_new = false;
    if (v) {
        return (long)json_integer_value(v);
    }
    i = (long)json_object_size(L->label_ids);
    if (json_object_set_new(L->label_ids, label, json_integer(i)) != 0) {
        return -1;
    }
    *is_new = true;
    return i;
}

static char *pair_key(const char *label, const char *to)
{
    size_t len = strlen(label) + strlen(to) + 2;
    char *key = cli_malloc(len);

    snprintf(key, len, "%s\n%s", label, to);
    return key;
}

static void mark_drawn(struct level *L, const char *label, const char *to)
{
    char *key = pair_key(label, to);

    json_object_set_new(L->drawn, key, json_true());
    free(key);
}

static bool was_drawn(const struct level *L, const char *label, const char *to)
{
    char *key = pair_key(label, to);
    bool found = json_object_get(L->drawn, key) != NULL;

    free(key);
    return found;
}

/* snprintf into an id buffer; an id never nears the cap (MAX_DEPTH levels of
 * "t<index>_"), and a truncated one would only misdraw, never overflow. */
static void set_id(char *buf, size_t cap, const char *fmt, ...) CLI_PRINTF(3, 4);

static void set_id(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

static void indent(const struct level *L)
{
    int i;

    for (i = 0; i <= L->depth; i++) {
        fputs("    ", L->out);
    }
}

/* The note under a task's name: "(foreach, 4 at once)", "(flow: child)"; "" when
 * none. `with_flow`: mention the child flow (a task drawn as one node). */
static void task_note(const json_t *t, bool with_flow, char *buf, size_t cap)
{
    const char *child = str_field(t, "flow", NULL);
    json_int_t conc = json_integer_value(json_object_get(t, "concurrency"));
    bool foreach = json_object_get(t, "foreach") != NULL;
    size_t n = 0;

    buf[0] = '\0';
    if (with_flow && strcmp(str_field(t, "kind", ""), "flow") == 0) {
        n += (size_t)snprintf(buf + n, cap - n, "flow: %s", child ? child : "?");
    }
    if (foreach && n < cap) {
        n += (size_t)snprintf(buf + n, cap - n, "%sforeach", n ? ", " : "");
        if (conc > 0 && n < cap) {
            snprintf(buf + n, cap - n, ", %lld at once", (long long)conc);
        }
    }
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

/* A node's text: the name, and the note on a second line. */
static void mm_label(FILE *out, const char *name, const char *note)
{
    fputc('"', out);
    mm_text(out, name);
    if (note[0]) {
        fputs("<br/>(", out);
        mm_text(out, note);
        fputc(')', out);
    }
    fputc('"', out);
}

static void mm_node(const struct level *L, long i, const json_t *t)
{
    const char *kind = str_field(t, "kind", "command");
    const char *open = "[";
    const char *close = "]";
    char note[128];

    if (bool_field(t, "router")) {
        open = "{";
        close = "}";
    } else if (bool_field(t, "start")) {
        open = "([";
        close = "])";
    } else if (bool_field(t, "entry")) {
        open = ">";
        close = "]";
    } else if (strcmp(kind, "function") == 0 || strcmp(kind, "flow") == 0) {
        open = "[[";
        close = "]]";
    } else if (strcmp(kind, "noop") == 0) {
        open = "(";
        close = ")";
    }
    task_note(t, true, note, sizeof(note));
    indent(L);
    fprintf(L->out, "%st%ld%s", L->prefix, i, open);
    mm_label(L->out, str_field(t, "name", "?"), note);
    fprintf(L->out, "%s\n", close);
}

static void mm_label_node(const struct level *L, long i, const char *label)
{
    indent(L);
    fprintf(L->out, "%sl%ld{{\"", L->prefix, i);
    mm_text(L->out, label);
    fputs("\"}}\n", L->out);
}

static void mm_edge(const struct level *L, const char *from, const char *to, enum edge_kind kind,
                    const char *text)
{
    FILE *out = L->out;

    indent(L);
    fprintf(out, "%s ", from);
    switch (kind) {
    case E_AFTER_ANY:
        fputs("-.->|any|", out);
        break;
    case E_OPTIONAL:
        fputs("-.->|optional|", out);
        break;
    case E_FALLBACK:
        fputs("-.->|on error|", out);
        break;
    case E_MAYBE:
        fputs("-.->", out);
        break;
    case E_WHEN:
        fputs("==>|", out);
        mm_edge_text(out, text && *text ? text : "when");
        fputc('|', out);
        break;
    case E_LABEL:
    case E_CONNECT:
        fputs(kind == E_LABEL ? "-->|" : "--o|", out);
        mm_edge_text(out, text && *text ? text : "?");
        fputc('|', out);
        break;
    case E_AFTER:
    case E_TRIGGER:
    default:
        fputs("-->", out);
        break;
    }
    fprintf(out, " %s\n", to);
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

/* label="NAME\n(NOTE)" */
static void dot_label(FILE *out, const char *name, const char *note)
{
    size_t len = strlen(name) + strlen(note) + 4;
    char *text = cli_malloc(len);

    if (note[0]) {
        snprintf(text, len, "%s\n(%s)", name, note);
    } else {
        snprintf(text, len, "%s", name);
    }
    fputs("label=", out);
    dot_string(out, text);
    free(text);
}

static void dot_node(const struct level *L, long i, const json_t *t)
{
    const char *kind = str_field(t, "kind", "command");
    FILE *out = L->out;
    char note[128];

    task_note(t, true, note, sizeof(note));
    indent(L);
    fprintf(out, "%st%ld [", L->prefix, i);
    dot_label(out, str_field(t, "name", "?"), note);
    if (bool_field(t, "router")) {
        fputs(", shape=diamond", out);
    } else if (strcmp(kind, "function") == 0 || strcmp(kind, "flow") == 0) {
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

static void dot_label_node(const struct level *L, long i, const char *label)
{
    indent(L);
    fprintf(L->out, "%sl%ld [label=", L->prefix, i);
    dot_string(L->out, label);
    fputs(", shape=hexagon, style=dashed];\n", L->out);
}

/* `ltail`/`lhead`: the cluster an end belongs to when it stands for a nested flow
 * ("" if not); with compound=true the edge is clipped at the cluster's border. */
static void dot_edge(const struct level *L, const char *from, const char *ltail, const char *to,
                     const char *lhead, enum edge_kind kind, const char *text)
{
    FILE *out = L->out;
    bool attrs = false;

    indent(L);
    fprintf(out, "%s -> %s", from, to);
#define ATTR(...)                                                                              \
    do {                                                                                       \
        fputs(attrs ? ", " : " [", out);                                                       \
        attrs = true;                                                                          \
        fprintf(out, __VA_ARGS__);                                                             \
    } while (0)
    switch (kind) {
    case E_AFTER_ANY:
        ATTR("style=dashed, label=\"any\"");
        break;
    case E_OPTIONAL:
        ATTR("style=dotted, label=\"optional\"");
        break;
    case E_FALLBACK:
        ATTR("style=dashed, color=red, label=\"on error\"");
        break;
    case E_MAYBE:
        ATTR("style=dotted, arrowhead=empty");
        break;
    case E_WHEN:
        ATTR("style=bold, label=");
        dot_string(out, text && *text ? text : "when");
        break;
    case E_LABEL:
        ATTR("label=");
        dot_string(out, text && *text ? text : "?");
        break;
    case E_CONNECT:
        ATTR("color=blue, fontcolor=blue, arrowhead=dot, label=");
        dot_string(out, text && *text ? text : "?");
        break;
    case E_AFTER:
    case E_TRIGGER:
    default:
        break;
    }
    if (ltail[0]) {
        ATTR("ltail=%s", ltail);
    }
    if (lhead[0]) {
        ATTR("lhead=%s", lhead);
    }
#undef ATTR
    fputs(attrs ? "];\n" : ";\n", out);
}

/* ------------------------------------------------------------------------ */
/* Edge ends                                                                 */

/* Does the child flow `sub` have an edge of the ordering kinds from `name`? */
static bool has_successor(const json_t *sub, const char *name)
{
    const json_t *e;
    size_t i;

    json_array_foreach(json_object_get(sub, "edges"), i, e) {
        const char *kind = str_field(e, "kind", "after");

        if (strcmp(str_field(e, "from", ""), name) == 0 &&
            (strcmp(kind, "after") == 0 || strcmp(kind, "after_any") == 0 ||
             strcmp(kind, "optional") == 0 || strcmp(kind, "when") == 0)) {
            return true;
        }
    }
    return false;
}

/* The node of nested flow `sub` (ids prefixed by `prefix`, at nesting `depth`)
 * where an edge ends in dot: an edge in reaches its first start task, an edge out
 * leaves its last task without successor; nested flows inside are followed. */
static void dot_anchor(const json_t *sub, const char *prefix, int depth, bool head, char *id,
                       size_t cap)
{
    const json_t *tasks = json_object_get(sub, "tasks");
    size_t count = json_array_size(tasks);
    size_t pick = head ? 0 : count - 1;
    const json_t *inner;
    size_t i;

    for (i = 0; i < count; i++) {
        size_t k = head ? i : count - 1 - i;
        const json_t *t = json_array_get(tasks, k);

        if (head ? bool_field(t, "start") : !has_successor(sub, str_field(t, "name", ""))) {
            pick = k;
            break;
        }
    }
    set_id(id, cap, "%st%zu", prefix, pick);
    inner = subflow_of(json_array_get(tasks, pick), depth);
    if (inner) {
        char next[ID_MAX];

        set_id(next, sizeof(next), "%s_", id);
        dot_anchor(inner, next, depth + 1, head, id, cap);
    }
}

/* The id of task `i`'s end of an edge; in dot, a nested flow is entered through
 * an anchor node and `cluster` names its box (else ""). */
static void task_end(const struct level *L, long i, bool head, char *id, char *cluster)
{
    const json_t *sub = subflow_of(task_at(L, i), L->depth);

    set_id(id, ID_MAX, "%st%ld", L->prefix, i);
    cluster[0] = '\0';
    if (sub && L->fmt == FMT_DOT) {
        char prefix[ID_MAX];

        set_id(cluster, ID_MAX + 8, "cluster_%s", id);
        set_id(prefix, sizeof(prefix), "%s_", id);
        dot_anchor(sub, prefix, L->depth + 1, head, id, ID_MAX);
    }
}

/* One edge; `from`/`to` are task indexes, or label node indexes for the ends
 * that `kind` says are labels (E_TRIGGER from, E_MAYBE to). */
static void edge(const struct level *L, long from, long to, enum edge_kind kind, const char *text)
{
    char from_id[ID_MAX];
    char to_id[ID_MAX];
    char ltail[ID_MAX + 8];
    char lhead[ID_MAX + 8];

    if (kind == E_TRIGGER) {
        set_id(from_id, sizeof(from_id), "%sl%ld", L->prefix, from);
        ltail[0] = '\0';
    } else {
        task_end(L, from, false, from_id, ltail);
    }
    if (kind == E_MAYBE) {
        set_id(to_id, sizeof(to_id), "%sl%ld", L->prefix, to);
        lhead[0] = '\0';
    } else {
        task_end(L, to, true, to_id, lhead);
    }
    if (L->fmt == FMT_MERMAID) {
        mm_edge(L, from_id, to_id, kind, text);
    } else {
        dot_edge(L, from_id, ltail, to_id, lhead, kind, text);
    }
}

/* ------------------------------------------------------------------------ */
/* Drawing                                                                   */

static void draw_flow(struct level *L);

/* A task: one node, or for a nested flow a box holding the child's graph. */
static void draw_task(struct level *L, long i, const json_t *t)
{
    const json_t *sub = subflow_of(t, L->depth);
    struct level child;
    char note[128];

    if (!sub) {
        if (L->fmt == FMT_MERMAID) {
            mm_node(L, i, t);
        } else {
            dot_node(L, i, t);
        }
        return;
    }
    memset(&child, 0, sizeof(child));
    child.out = L->out;
    child.fmt = L->fmt;
    child.desc = sub;
    child.depth = L->depth + 1;
    set_id(child.prefix, sizeof(child.prefix), "%st%ld_", L->prefix, i);
    child.task_ids = json_object();
    child.label_ids = json_object();
    child.drawn = json_object();
    if (!child.task_ids || !child.label_ids || !child.drawn) {
        cli_error("out of memory");
        exit(CLI_EXIT_FAILED);
    }
    task_note(t, true, note, sizeof(note));
    indent(L);
    if (L->fmt == FMT_MERMAID) {
        fprintf(L->out, "subgraph %st%ld [", L->prefix, i);
        mm_label(L->out, str_field(t, "name", "?"), note);
        fputs("]\n", L->out);
    } else {
        fprintf(L->out, "subgraph cluster_%st%ld {\n", L->prefix, i);
        indent(&child);
        dot_label(L->out, str_field(t, "name", "?"), note);
        fputs(";\n", L->out);
        indent(&child);
        fputs("style=\"rounded,dashed\";\n", L->out);
    }
    draw_flow(&child);
    indent(L);
    fputs(L->fmt == FMT_MERMAID ? "end\n" : "}\n", L->out);
    json_decref(child.drawn);
    json_decref(child.label_ids);
    json_decref(child.task_ids);
}

/* An edge from the node of a label: the node is declared on first use. */
static void draw_from_label(struct level *L, const char *label, long to)
{
    bool is_new = false;
    long l = label_index(L, label, &is_new);

    if (l < 0) {
        return;
    }
    if (is_new) {
        if (L->fmt == FMT_MERMAID) {
            mm_label_node(L, l, label);
        } else {
            dot_label_node(L, l, label);
        }
    }
    edge(L, l, to, E_TRIGGER, label);
}

/* "EVENT (a→b, c→d)": a connection's event and the keys its map renames. */
static char *connect_text(const json_t *e)
{
    const json_t *map = json_object_get(e, "map");
    const char *event = str_field(e, "event", "?");
    size_t cap = strlen(event) + 4;
    const char *k;
    json_t *v;
    char *s;
    size_t n;

    json_object_foreach((json_t *)map, k, v) {
        cap += strlen(k) + strlen(str_field(map, k, "?")) + 6;
    }
    s = cli_malloc(cap);
    n = (size_t)snprintf(s, cap, "%s", event);
    if (json_object_size(map) == 0) {
        return s;
    }
    n += (size_t)snprintf(s + n, cap - n, " (");
    json_object_foreach((json_t *)map, k, v) {
        const char *to = json_string_value(v);

        n += (size_t)snprintf(s + n, cap - n, "%s%s\xe2\x86\x92%s", s[n - 1] == '(' ? "" : ", ",
                              k, to ? to : "?");
    }
    snprintf(s + n, cap - n, ")");
    return s;
}

static void draw_edge(struct level *L, const json_t *e)
{
    const char *kind = str_field(e, "kind", "after");
    const char *text = str_field(e, "label", NULL);
    const char *to_name = str_field(e, "to", NULL);
    long from = task_index(L, str_field(e, "from", NULL));
    long to = task_index(L, to_name);
    static const struct {
        const char *name;
        enum edge_kind kind;
    } kinds[] = {
        {"after", E_AFTER},       {"after_any", E_AFTER_ANY}, {"optional", E_OPTIONAL},
        {"when", E_WHEN},         {"label", E_LABEL},         {"connect", E_CONNECT},
        {"fallback", E_FALLBACK},
    };
    enum edge_kind k = E_AFTER;
    size_t i;

    if (to < 0) {
        return;
    }
    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(kind, kinds[i].name) == 0) {
            k = kinds[i].kind;
        }
    }
    if (k == E_LABEL && text) {
        mark_drawn(L, text, to_name);
        if (from < 0) {
            draw_from_label(L, text, to);
            return;
        }
    }
    if (from < 0) {
        return;
    }
    if (k == E_CONNECT) {
        char *ct = connect_text(e);

        edge(L, from, to, k, ct);
        free(ct);
        return;
    }
    edge(L, from, to, k, text);
}

/* ------------------------------------------------------------------------ */
/* Who may emit a label                                                      */

static bool word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

/* Does `text` hold `word` as a whole word; with `after_emit`, only right after the
 * word "emit" and blanks or a quote (a `flow ctl emit WORD` call)? */
static bool mentions(const char *text, const char *word, bool after_emit)
{
    size_t wlen = strlen(word);
    const char *p = text;

    if (wlen == 0) {
        return false;
    }
    while ((p = strstr(p, word)) != NULL) {
        const char *q = p;
        bool whole = (p == text || !word_char(p[-1])) && !word_char(p[wlen]);

        p += wlen;
        if (!whole) {
            continue;
        }
        if (!after_emit) {
            return true;
        }
        while (q > text && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '"' || q[-1] == '\'')) {
            q--;
        }
        if (q != p - wlen && q - text >= 4 && strncmp(q - 4, "emit", 4) == 0 &&
            (q - 4 == text || !word_char(q[-5]))) {
            return true;
        }
    }
    return false;
}

/* Does task `t`'s command (run argv or shell text) mention `label`? */
static bool task_mentions(const json_t *t, const char *label, bool after_emit)
{
    const char *shell = str_field(t, "shell", NULL);
    const json_t *arg;
    size_t i;

    if (shell && mentions(shell, label, after_emit)) {
        return true;
    }
    json_array_foreach(json_object_get(t, "run"), i, arg) {
        const char *s = json_string_value(arg);

        if (s && mentions(s, label, after_emit)) {
            return true;
        }
    }
    return false;
}

/* Dotted "may emit" edges into the label nodes. A label's output is only known
 * at run time, so this is a guess that reads well: a router whose command names
 * the label, or any task whose command runs `flow ctl emit LABEL`; a label nobody
 * names goes to the one router whose command names none of the labels (a C
 * function, or a computed output), when there is exactly one such router. */
static void draw_maybe_edges(struct level *L)
{
    const json_t *tasks = json_object_get(L->desc, "tasks");
    size_t ntasks = json_array_size(tasks);
    bool *names_some = cli_malloc(ntasks ? ntasks : 1);
    long opaque = -1;
    size_t opaque_count = 0;
    const char *label;
    json_t *v;
    size_t i;

    memset(names_some, 0, ntasks ? ntasks : 1);
    json_object_foreach(L->label_ids, label, v) {
        for (i = 0; i < ntasks; i++) {
            const json_t *t = json_array_get(tasks, i);
            bool router = bool_field(t, "router");

            if (task_mentions(t, label, !router)) {
                names_some[i] = true;
            }
        }
    }
    for (i = 0; i < ntasks; i++) {
        if (bool_field(json_array_get(tasks, i), "router") && !names_some[i]) {
            opaque = (long)i;
            opaque_count++;
        }
    }
    json_object_foreach(L->label_ids, label, v) {
        long l = (long)json_integer_value(v);
        bool found = false;

        for (i = 0; i < ntasks; i++) {
            const json_t *t = json_array_get(tasks, i);
            bool router = bool_field(t, "router");

            if (task_mentions(t, label, !router)) {
                edge(L, (long)i, l, E_MAYBE, NULL);
                found = true;
            }
        }
        if (!found && opaque_count == 1) {
            edge(L, opaque, l, E_MAYBE, NULL);
        }
    }
    free(names_some);
}

/* The nodes and edges of one flow (the top one or a nested one). */
static void draw_flow(struct level *L)
{
    const json_t *tasks = json_object_get(L->desc, "tasks");
    const json_t *edges = json_object_get(L->desc, "edges");
    const json_t *labels = json_object_get(L->desc, "labels");
    size_t i;
    json_t *v;

    json_array_foreach(tasks, i, v) {
        const char *tname = str_field(v, "name", NULL);

        if (tname && !json_object_get(L->task_ids, tname)) {
            json_object_set_new(L->task_ids, tname, json_integer((json_int_t)i));
            draw_task(L, (long)i, v);
        }
    }
    json_array_foreach(edges, i, v) {
        draw_edge(L, v);
    }
    /* Label triggers that no edge drew yet (no router known to emit them). */
    json_array_foreach(labels, i, v) {
        const char *label = str_field(v, "label", NULL);
        const char *to_name = str_field(v, "to", NULL);
        long to = task_index(L, to_name);

        if (label && to >= 0 && !was_drawn(L, label, to_name)) {
            mark_drawn(L, label, to_name);
            draw_from_label(L, label, to);
        }
    }
    draw_maybe_edges(L);
}

static void draw(struct level *L)
{
    const char *name = str_field(L->desc, "name", "flow");

    if (L->fmt == FMT_MERMAID) {
        fprintf(L->out, "flowchart %s\n    %%%% flow: ", L->left_right ? "LR" : "TD");
        mm_text(L->out, name);
        fputc('\n', L->out);
    } else {
        fputs("digraph ", L->out);
        dot_string(L->out, name);
        fprintf(L->out,
                " {\n    rankdir=%s;\n    compound=true;\n    fontname=\"Helvetica\";\n"
                "    node [shape=box, fontname=\"Helvetica\"];\n"
                "    edge [fontname=\"Helvetica\"];\n",
                L->left_right ? "LR" : "TB");
    }
    draw_flow(L);
    if (L->fmt == FMT_DOT) {
        fputs("}\n", L->out);
    }
}

/* The drawing of `f` as SVG, on stdout. */
static int print_svg(flow *f, const flow_graph_options *gopts, const char *path)
{
    flow_error err;
    char *svg = flow_graph_svg(f, gopts, &err);

    if (!svg) {
        cli_error("cannot draw the graph of '%s': %s", path, err.message);
        return CLI_EXIT_FAILED;
    }
    fputs(svg, stdout);
    free(svg);
    return cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

static int graph_main(int argc, char **argv)
{
    struct cli_args a;
    enum format fmt = FMT_MERMAID;
    flow_graph_options gopts;
    struct level top;
    json_t *desc;
    flow *f;
    int id;
    int rc = CLI_EXIT_OK;

    memset(&gopts, 0, sizeof(gopts));
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
            } else if (strcmp(a.value, "svg") == 0) {
                fmt = FMT_SVG;
            } else {
                return cli_usage_error("graph",
                                       "unknown format '%s' (use mermaid, dot, json or svg)",
                                       a.value);
            }
            break;
        case OPT_DIRECTION:
            if (strcasecmp(a.value, "TB") == 0 || strcasecmp(a.value, "TD") == 0) {
                gopts.left_right = false;
            } else if (strcasecmp(a.value, "LR") == 0) {
                gopts.left_right = true;
            } else {
                return cli_usage_error("graph", "unknown direction '%s' (use TB or LR)",
                                       a.value);
            }
            break;
        case OPT_MAX_LABEL:
            if (!cli_parse_count(&a, a.value, &gopts.max_label)) {
                return CLI_EXIT_USAGE;
            }
            if (gopts.max_label < 4) {
                return cli_usage_error("graph", "--max-label must be at least 4, not %d",
                                       gopts.max_label);
            }
            break;
        case OPT_NO_STYLE:
            gopts.no_style = true;
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
    if (fmt == FMT_SVG) {
        rc = print_svg(f, &gopts, path);
        flow_free(f);
        return rc;
    }
    memset(&top, 0, sizeof(top));
    top.out = stdout;
    top.fmt = fmt;
    top.left_right = gopts.left_right;
    desc = flow_describe(f);
    top.desc = desc;
    top.task_ids = json_object();
    top.label_ids = json_object();
    top.drawn = json_object();
    if (!desc || !top.task_ids || !top.label_ids || !top.drawn) {
        cli_error("cannot describe the flow in '%s': out of memory", path);
        rc = CLI_EXIT_FAILED;
    } else if (fmt == FMT_JSON) {
        rc = cli_print_json(stdout, desc) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    } else {
        draw(&top);
        rc = cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    }
    json_decref(top.drawn);
    json_decref(top.label_ids);
    json_decref(top.task_ids);
    json_decref(desc);
    flow_free(f);
    return rc;
}

const struct cli_command cli_cmd_graph = {
    "graph",
    "print a flow's graph (mermaid, dot, json or svg)",
    help,
    graph_main,
};
