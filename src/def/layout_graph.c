/* layout_graph.c -- the graph the layout draws, read from flow_describe()'s
 * JSON: a node per task and per label that tasks listen to, an edge per
 * dependency, condition, label, connection and fallback, the texts shown (cut
 * to the label width) and the boxes they need. Positions are layout.c's. */
#include "util/compat.h"

#include <stdint.h>
#include <string.h>

#include "def/layout.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/strmap.h"

/* Advance widths of ASCII 32..126 in thousandths of an em: Arial's, close
 * enough to the sans-serif system fonts to size boxes without reading a font. */
static const unsigned short advance[95] = {
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, /*  ./ */
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, /* 0-? */
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, /* @-O */
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,  /* P-_ */
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,  /* `-o */
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,       /* p-~ */
};

int flow__layout_text_width(const char *s, int px, int slack_pct)
{
    unsigned long sum = 0;

    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x80) {
            sum += *p >= 32 && *p < 127 ? advance[*p - 32] : 556;
        } else if ((*p & 0xC0) != 0x80) {
            /* one character per lead byte: arrows and the ellipsis (U+2xxx)
             * are wide, CJK (U+3000 up) full width */
            sum += *p >= 0xE3 ? 1000 : *p == 0xE2 ? 900 : 600;
        }
    }
    return (int)((sum * (unsigned long)px * (100u + (unsigned)slack_pct) + 99999) / 100000);
}

/* `s` cut to `max` characters, the last one an ellipsis, when it is longer. */
static char *cut_text(const char *s, int max, bool *cut)
{
    size_t chars = 0;
    size_t keep = 0;
    const char *p;
    char *out;

    for (p = s; *p; p++) {
        if (((unsigned char)*p & 0xC0) != 0x80) {
            if (chars == (size_t)max - 1) {
                keep = (size_t)(p - s);
            }
            chars++;
        }
    }
    *cut = chars > (size_t)max;
    if (!*cut) {
        return flow__strdup(s);
    }
    out = flow__malloc(keep + 4);
    if (out) {
        memcpy(out, s, keep);
        memcpy(out + keep, "\xe2\x80\xa6", 4);
    }
    return out;
}

static const char *str_field(const json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s ? s : dflt;
}

static bool is_true(const json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

/* ------------------------------------------------------------------------ */
/* Nodes                                                                     */

/* The class a task is drawn with: what it is first, how it runs next. */
static const char *task_kind(const json_t *t)
{
    const char *kind = str_field(t, "kind", "noop");

    if (is_true(t, "router")) {
        return "router";
    }
    if (!strcmp(kind, "flow") || !strcmp(kind, "feedback") || !strcmp(kind, "prompt")) {
        return !strcmp(kind, "flow") ? "flow" : !strcmp(kind, "prompt") ? "prompt" : "feedback";
    }
    if (!strcmp(str_field(t, "executor", ""), "remote")) {
        return "remote";
    }
    if (!strcmp(kind, "function")) {
        return "fn";
    }
    if (!strcmp(kind, "command") || !strcmp(kind, "shell")) {
        return !strcmp(kind, "command") ? "cmd" : "shell";
    }
    if (!strcmp(kind, "http") || !strcmp(kind, "llm")) {
        return !strcmp(kind, "http") ? "http" : "llm";
    }
    return "noop";
}

/* The second line: "router · shell", "remote · fn", "approval", "flow: child",
 * "cmd · foreach, 4 at once". */
static flow_err task_note(struct flow__buf *b, const json_t *t)
{
    const char *kind = str_field(t, "kind", "noop");
    const char *sep = " \xc2\xb7 ";
    json_int_t conc = json_integer_value(json_object_get(t, "concurrency"));
    bool ok = true;

    if (is_true(t, "router")) {
        ok &= flow__buf_printf(b, "router%s", sep) == FLOW_OK;
    }
    if (!strcmp(str_field(t, "executor", ""), "remote")) {
        ok &= flow__buf_printf(b, "remote%s", sep) == FLOW_OK;
    }
    if (!strcmp(kind, "function")) {
        ok &= flow__buf_appends(b, "fn") == FLOW_OK;
    } else if (!strcmp(kind, "command")) {
        ok &= flow__buf_appends(b, "cmd") == FLOW_OK;
    } else if (!strcmp(kind, "flow")) {
        ok &= flow__buf_printf(b, "flow: %s", str_field(t, "flow", "?")) == FLOW_OK;
    } else if (!strcmp(kind, "feedback")) {
        ok &= flow__buf_appends(b, str_field(t, "feedback", "feedback")) == FLOW_OK;
    } else if (!strcmp(kind, "prompt")) {
        ok &= flow__buf_printf(b, "prompt: %s",
                               str_field(json_object_get(t, "prompt"), "name", "?")) == FLOW_OK;
    } else {
        ok &= flow__buf_appends(b, kind) == FLOW_OK;
    }
    if (json_object_get(t, "foreach")) {
        ok &= flow__buf_printf(b, "%sforeach", sep) == FLOW_OK;
        if (conc > 0) {
            ok &= flow__buf_printf(b, ", %lld at once", (long long)conc) == FLOW_OK;
        }
    }
    return ok ? FLOW_OK : FLOW_ENOMEM;
}

static flow_err add_node(struct flow__layout *l, size_t *cap, const json_t *task,
                         const char *name, int max)
{
    struct flow__lnode *n;
    struct flow__buf b;
    int tw;

    if (l->node_count == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        void *p = flow__reallocarray(l->nodes, nc, sizeof(*l->nodes));

        if (!p) {
            return FLOW_ENOMEM;
        }
        l->nodes = p;
        *cap = nc;
    }
    n = &l->nodes[l->node_count];
    memset(n, 0, sizeof(*n));
    n->task = task;
    n->name = name;
    n->text = cut_text(name, max, &n->cut);
    if (!n->text) {
        return FLOW_ENOMEM;
    }
    l->node_count++;
    if (!task) {
        n->kind = "label";
        n->w = flow__layout_text_width(n->text, FLOW__GRAPH_FONT_LABEL, 8) + 24;
        n->w = n->w < 48 ? 48 : n->w;
        n->h = FLOW__GRAPH_LABEL_H;
        return FLOW_OK;
    }
    n->kind = task_kind(task);
    flow__buf_init(&b, 0);
    if (task_note(&b, task) != FLOW_OK) {
        flow__buf_cleanup(&b);
        return FLOW_ENOMEM;
    }
    bool note_cut;
    n->note = cut_text(flow__buf_str(&b), max + 8, &note_cut);
    flow__buf_cleanup(&b);
    if (!n->note) {
        return FLOW_ENOMEM;
    }
    tw = flow__layout_text_width(n->text, FLOW__GRAPH_FONT_NAME, 14);
    int nw = flow__layout_text_width(n->note, FLOW__GRAPH_FONT_NOTE, 8);
    n->w = (tw > nw ? tw : nw) + 2 * FLOW__GRAPH_PAD;
    n->w = n->w < FLOW__GRAPH_MIN_W ? FLOW__GRAPH_MIN_W : n->w;
    n->h = FLOW__GRAPH_NODE_H;
    return FLOW_OK;
}

/* ------------------------------------------------------------------------ */
/* Edges                                                                     */

struct builder {
    struct flow__layout *l;
    size_t edge_cap;
    size_t node_cap;
    int max;                    /* label width, characters */
    struct flow__strmap tasks;  /* name -> node index + 1 */
    struct flow__strmap labels; /* label -> node index + 1 */
};

static long node_of(const struct flow__strmap *m, const char *name)
{
    void *v = name ? flow__strmap_get(m, name) : NULL;

    return v ? (long)(uintptr_t)v - 1 : -1;
}

static flow_err add_edge(struct builder *B, size_t from, size_t to, enum flow__ledge_kind kind,
                         const char *text)
{
    struct flow__layout *l = B->l;
    struct flow__ledge *e;

    if (l->edge_count == B->edge_cap) {
        size_t nc = B->edge_cap ? B->edge_cap * 2 : 16;
        void *p = flow__reallocarray(l->edges, nc, sizeof(*l->edges));

        if (!p) {
            return FLOW_ENOMEM;
        }
        l->edges = p;
        B->edge_cap = nc;
    }
    e = &l->edges[l->edge_count];
    memset(e, 0, sizeof(*e));
    e->from = from;
    e->to = to;
    e->kind = kind;
    if (text) {
        bool cut;

        e->text = flow__strdup(text);
        e->shown = e->text ? cut_text(text, B->max, &cut) : NULL;
        if (!e->shown) {
            flow__free(e->text);
            return FLOW_ENOMEM;
        }
        e->lw = flow__layout_text_width(e->shown, FLOW__GRAPH_FONT_EDGE, 8) + 10;
        e->lh = FLOW__GRAPH_EDGE_LABEL_H;
    }
    l->edge_count++;
    return FLOW_OK;
}

/* The node of `label`, made on first use; -1 on allocation failure. */
static long label_node(struct builder *B, const char *label)
{
    long i = node_of(&B->labels, label);

    if (i >= 0) {
        return i;
    }
    i = (long)B->l->node_count;
    if (add_node(B->l, &B->node_cap, NULL, label, B->max) != FLOW_OK ||
        flow__strmap_put(&B->labels, label, (void *)(uintptr_t)(i + 1)) != FLOW_OK) {
        return -1;
    }
    return i;
}

/* Does condition `c` name `task`; `op` gets the operator right above it
 * ("and", "or"), or NULL when the condition is the name alone. */
static bool cond_names(const json_t *c, const char *task, const char **op)
{
    const char *s = json_string_value(c);
    const json_t *kids;
    const json_t *k;
    size_t i;

    if (s) {
        *op = NULL;
        return !strcmp(s, task);
    }
    kids = json_object_get(c, "and");
    if (!kids) {
        kids = json_object_get(c, "or");
    }
    json_array_foreach(kids, i, k) {
        if (cond_names(k, task, op)) {
            if (!*op) {
                *op = json_object_get(c, "and") ? "and" : "or";
            }
            return true;
        }
    }
    return false;
}

/* "EVENT (a→b, c→d)": a connection's event and the keys its map renames. */
static flow_err connect_text(struct flow__buf *b, const json_t *e)
{
    const json_t *map = json_object_get(e, "map");
    const char *key;
    json_t *v;
    bool ok = flow__buf_appends(b, str_field(e, "event", "?")) == FLOW_OK;
    bool first = true;

    json_object_foreach((json_t *)map, key, v) {
        ok &= flow__buf_printf(b, "%s%s\xe2\x86\x92%s", first ? " (" : ", ", key,
                               json_is_string(v) ? json_string_value(v) : "?") == FLOW_OK;
        first = false;
    }
    if (!first) {
        ok &= flow__buf_appendc(b, ')') == FLOW_OK;
    }
    return ok ? FLOW_OK : FLOW_ENOMEM;
}

static flow_err read_edge(struct builder *B, const json_t *e)
{
    static const struct {
        const char *name;
        enum flow__ledge_kind kind;
        const char *text;
    } kinds[] = {
        {"after", FLOW__LE_AFTER, NULL},
        {"after_any", FLOW__LE_ANY, "any"},
        {"optional", FLOW__LE_OPTIONAL, "optional"},
        {"when", FLOW__LE_WHEN, "when"},
        {"label", FLOW__LE_LABEL, NULL},
        {"connect", FLOW__LE_CONNECT, NULL},
        {"fallback", FLOW__LE_FALLBACK, "on error"},
    };
    const char *kind = str_field(e, "kind", "after");
    const char *label = str_field(e, "label", NULL);
    long from = node_of(&B->tasks, str_field(e, "from", NULL));
    long to = node_of(&B->tasks, str_field(e, "to", NULL));
    size_t k = 0;

    while (k < FLOW__ARRAY_LEN(kinds) && strcmp(kind, kinds[k].name)) {
        k++;
    }
    if (k == FLOW__ARRAY_LEN(kinds) || to < 0) {
        return FLOW_OK; /* a kind this drawing does not know yet */
    }
    if (kinds[k].kind == FLOW__LE_LABEL) {
        if (!label) {
            return FLOW_OK;
        }
        if (from >= 0) {
            return add_edge(B, (size_t)from, (size_t)to, FLOW__LE_LABEL, label);
        }
        from = label_node(B, label);
        return from < 0 ? FLOW_ENOMEM
                        : add_edge(B, (size_t)from, (size_t)to, FLOW__LE_TRIGGER, NULL);
    }
    if (from < 0) {
        return FLOW_OK;
    }
    if (kinds[k].kind == FLOW__LE_CONNECT) {
        struct flow__buf b;
        flow_err rc;

        flow__buf_init(&b, 0);
        rc = connect_text(&b, e);
        if (rc == FLOW_OK) {
            rc = add_edge(B, (size_t)from, (size_t)to, FLOW__LE_CONNECT, flow__buf_str(&b));
        }
        flow__buf_cleanup(&b);
        return rc;
    }
    if (kinds[k].kind == FLOW__LE_WHEN && !label) {
        const char *op = NULL;

        cond_names(json_object_get(B->l->nodes[to].task, "when"),
                   B->l->nodes[from].name, &op);
        label = op ? op : "when";
    }
    return add_edge(B, (size_t)from, (size_t)to, kinds[k].kind, label ? label : kinds[k].text);
}

/* ------------------------------------------------------------------------ */
/* Who may emit a label                                                      */

static bool word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

/* Is `word` in `text` as a whole word -- with `emit`, only as what `emit` is
 * given (`flow ctl emit WORD`)? */
static bool has_word(const char *text, const char *word, bool emit)
{
    size_t n = strlen(word);
    const char *p;

    for (p = n ? strstr(text, word) : NULL; p; p = strstr(p + 1, word)) {
        const char *q = p;

        if ((p > text && word_char(p[-1])) || word_char(p[n])) {
            continue;
        }
        if (!emit) {
            return true;
        }
        while (q > text && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '"' || q[-1] == '\'')) {
            q--;
        }
        if (q < p && q - text >= 4 && !strncmp(q - 4, "emit", 4) &&
            (q - 4 == text || !word_char(q[-5]))) {
            return true;
        }
    }
    return false;
}

/* Does task `t`'s command (its `run` words or `shell` text) name `label`: a
 * router's anywhere, another task's only as `emit LABEL`. */
static bool task_names(const json_t *t, const char *label)
{
    bool emit = !is_true(t, "router");
    const char *shell = str_field(t, "shell", NULL);
    const json_t *w;
    size_t i;

    if (shell && has_word(shell, label, emit)) {
        return true;
    }
    json_array_foreach(json_object_get(t, "run"), i, w) {
        if (json_is_string(w) && has_word(json_string_value(w), label, emit)) {
            return true;
        }
    }
    return false;
}

/* "May emit" edges into the label nodes, the guess `flow graph` makes for
 * Mermaid and dot too (docs/cli.md, "Who emits a label"): a label's emitter
 * is known only at run time, so the edges say "probably", never more. */
static flow_err maybe_edges(struct builder *B, size_t first_label)
{
    struct flow__layout *l = B->l;
    size_t labels_end = l->node_count;
    bool *names_some = flow__calloc(l->task_count ? l->task_count : 1, sizeof(bool));
    long opaque = -1;
    size_t opaque_count = 0;
    flow_err rc = FLOW_OK;
    size_t i;
    size_t t;

    if (!names_some) {
        return FLOW_ENOMEM;
    }
    for (i = first_label; i < labels_end; i++) {
        for (t = 0; t < l->task_count; t++) {
            names_some[t] |= task_names(l->nodes[t].task, l->nodes[i].name);
        }
    }
    for (t = 0; t < l->task_count; t++) {
        if (is_true(l->nodes[t].task, "router") && !names_some[t]) {
            opaque = (long)t;
            opaque_count++;
        }
    }
    for (i = first_label; i < labels_end && rc == FLOW_OK; i++) {
        bool found = false;

        for (t = 0; t < l->task_count && rc == FLOW_OK; t++) {
            if (task_names(l->nodes[t].task, l->nodes[i].name)) {
                rc = add_edge(B, t, i, FLOW__LE_MAYBE, NULL);
                found = true;
            }
        }
        if (!found && opaque_count == 1 && rc == FLOW_OK) {
            rc = add_edge(B, (size_t)opaque, i, FLOW__LE_MAYBE, NULL);
        }
    }
    flow__free(names_some);
    return rc;
}

/* ------------------------------------------------------------------------ */

flow_err flow__layout_graph(struct flow__layout *l, const json_t *describe,
                            const flow_graph_options *opts, flow_error *err)
{
    const json_t *tasks = json_object_get(describe, "tasks");
    const json_t *edges = json_object_get(describe, "edges");
    struct builder B;
    const json_t *v;
    flow_err rc = FLOW_OK;
    size_t i;

    if (!json_is_array(tasks)) {
        return flow__error(err, FLOW_EINVAL, "not a flow's description: no 'tasks' list");
    }
    memset(&B, 0, sizeof(B));
    B.l = l;
    B.max = opts && opts->max_label ? opts->max_label : 24;
    B.max = B.max < 4 ? 4 : B.max;
    flow__strmap_init(&B.tasks);
    flow__strmap_init(&B.labels);
    json_array_foreach(tasks, i, v) {
        const char *name = str_field(v, "name", NULL);

        if (!name || flow__strmap_get(&B.tasks, name)) {
            continue; /* a description has neither; draw the first of a name */
        }
        rc = add_node(l, &B.node_cap, v, name, B.max);
        if (rc == FLOW_OK) {
            rc = flow__strmap_put(&B.tasks, name, (void *)(uintptr_t)l->node_count);
        }
        if (rc != FLOW_OK) {
            goto out;
        }
    }
    l->task_count = l->node_count;
    /* Every entry of the description's `labels` has its `label` edge too, so
     * the edges alone draw every subscription. */
    json_array_foreach(edges, i, v) {
        rc = read_edge(&B, v);
        if (rc != FLOW_OK) {
            goto out;
        }
    }
    rc = maybe_edges(&B, l->task_count);
out:
    flow__strmap_cleanup(&B.labels);
    flow__strmap_cleanup(&B.tasks);
    return rc == FLOW_OK ? FLOW_OK : flow__error(err, rc, "cannot lay out the graph: %s",
                                                 flow_strerror(rc));
}
