/* svg.c -- a laid-out graph (layout.c) as a standalone SVG document: one
 * `<g id="t-NAME" class="task kind-KIND">` per task, which a page colours by
 * state with classes (st-running, st-completed, ...), so a live update
 * changes classes, never the drawing. The default style is embedded, and the
 * classes are documented in docs/cli.md (flow graph --format svg). The same
 * layout as JSON, for a page that draws for itself. */
#include "util/compat.h"

#include <stdarg.h>
#include <string.h>

#include "def/layout.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"

/* Every selector starts with .flow-graph: a page that puts the drawing
 * inline gets these rules for the drawing only. */
static const char style[] =
    "<style>\n"
    ".flow-graph{font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,\"Helvetica Neue\","
    "Arial,\"Noto Sans\",\"Liberation Sans\",sans-serif}\n"
    ".flow-graph text{fill:#1f2933}\n"
    ".flow-graph .task>rect{fill:#fff;stroke:#9aa5b1;stroke-width:1.2}\n"
    ".flow-graph .task.start>rect{stroke-width:2}\n"
    ".flow-graph .task .name{font-size:13px;font-weight:600}\n"
    ".flow-graph .task .note{font-size:11px;fill:#697586}\n"
    ".flow-graph .kind-router .note{fill:#7c4dc4}\n"
    ".flow-graph .kind-feedback .note{fill:#a86200}\n"
    ".flow-graph .kind-flow .note{fill:#0f7b8a}\n"
    ".flow-graph .kind-remote .note{fill:#3d6fb0}\n"
    ".flow-graph .label>rect{fill:#f4f6f8;stroke:#9aa5b1;stroke-dasharray:3 3}\n"
    ".flow-graph .label>text{font-size:12px;font-style:italic;fill:#52606d}\n"
    ".flow-graph .edge{fill:none;stroke:#9aa5b1;stroke-width:1.4}\n"
    ".flow-graph .edge.e-any,.flow-graph .edge.e-optional{stroke-dasharray:6 4}\n"
    ".flow-graph .edge.e-when{stroke:#7b8794;stroke-width:2.2}\n"
    ".flow-graph .edge.e-maybe{stroke-dasharray:2 3}\n"
    ".flow-graph .edge.e-connect{stroke:#3b82c4;stroke-dasharray:1 3;stroke-linecap:round;"
    "stroke-width:1.8}\n"
    ".flow-graph .edge.e-fallback{stroke:#d64545;stroke-dasharray:5 4}\n"
    ".flow-graph .elabel>rect{fill:#fff;fill-opacity:.9}\n"
    ".flow-graph .elabel>text{font-size:11px;fill:#52606d}\n"
    ".flow-graph .elabel.e-connect>text{fill:#2f6fae}\n"
    ".flow-graph .elabel.e-fallback>text{fill:#c23b3b}\n"
    ".flow-graph .st-pending>rect{fill:#fff;stroke:#9aa5b1}\n"
    ".flow-graph .st-running>rect{fill:#e7f0fd;stroke:#2f80ed;stroke-width:2;"
    "animation:flow-graph-pulse 1.6s ease-in-out infinite}\n"
    ".flow-graph .st-completed>rect{fill:#e6f4ea;stroke:#2f9e58}\n"
    ".flow-graph .st-failed>rect{fill:#fdeaea;stroke:#d64545;stroke-width:2}\n"
    ".flow-graph .st-skipped>rect{fill:#f5f6f7;stroke:#b8bec6;stroke-dasharray:4 3}\n"
    ".flow-graph .st-skipped>text{fill-opacity:.55}\n"
    ".flow-graph .st-cancelled>rect{fill:#f1f2f4;stroke:#6b7785;stroke-dasharray:4 3}\n"
    ".flow-graph .st-paused>rect{fill:#fff6db;stroke:#d99a00}\n"
    ".flow-graph .st-waiting>rect{fill:#f2ebfd;stroke:#8b5cf6;stroke-width:2}\n"
    ".flow-graph .st-stopped>rect{fill:#fcefe6;stroke:#c2703d}\n"
    "@keyframes flow-graph-pulse{50%{stroke-opacity:.35}}\n"
    "@media (prefers-reduced-motion:reduce){.flow-graph .st-running>rect{animation:none}}\n"
    "</style>\n";

/* Arrowheads drawn in user units, so a bold edge gets the same head. */
static const char markers[] =
    "<defs>\n"
    "<marker id=\"fg-arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"9\" "
    "markerHeight=\"9\" markerUnits=\"userSpaceOnUse\" orient=\"auto\">"
    "<path d=\"M0,1 L10,5 L0,9 z\" fill=\"#7b8794\"/></marker>\n"
    "<marker id=\"fg-arrow-error\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" "
    "markerWidth=\"9\" markerHeight=\"9\" markerUnits=\"userSpaceOnUse\" orient=\"auto\">"
    "<path d=\"M0,1 L10,5 L0,9 z\" fill=\"#d64545\"/></marker>\n"
    "<marker id=\"fg-open\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"9\" "
    "markerHeight=\"9\" markerUnits=\"userSpaceOnUse\" orient=\"auto\">"
    "<path d=\"M1,1 L10,5 L1,9\" fill=\"none\" stroke=\"#7b8794\" stroke-width=\"1.4\"/>"
    "</marker>\n"
    "<marker id=\"fg-dot\" viewBox=\"0 0 10 10\" refX=\"8\" refY=\"5\" markerWidth=\"8\" "
    "markerHeight=\"8\" markerUnits=\"userSpaceOnUse\" orient=\"auto\">"
    "<circle cx=\"5\" cy=\"5\" r=\"3.5\" fill=\"#3b82c4\"/></marker>\n"
    "</defs>\n";

static const char *const kind_class[] = {
    [FLOW__LE_AFTER] = "after",       [FLOW__LE_ANY] = "any",
    [FLOW__LE_OPTIONAL] = "optional", [FLOW__LE_WHEN] = "when",
    [FLOW__LE_LABEL] = "label",       [FLOW__LE_TRIGGER] = "trigger",
    [FLOW__LE_MAYBE] = "maybe",       [FLOW__LE_CONNECT] = "connect",
    [FLOW__LE_FALLBACK] = "fallback",
};

struct out {
    struct flow__buf b;
    bool ok;
};

static void put(struct out *o, const char *s)
{
    o->ok &= flow__buf_appends(&o->b, s) == FLOW_OK;
}

static void putf(struct out *o, const char *fmt, ...) FLOW__PRINTF(2, 3);

static void putf(struct out *o, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    o->ok &= flow__buf_vprintf(&o->b, fmt, ap) == FLOW_OK;
    va_end(ap);
}

/* The length of the UTF-8 character at `s` that XML can hold, or 0 when the
 * bytes are not one (bad UTF-8, a surrogate, U+FFFE, U+FFFF). */
static size_t xml_char_len(const unsigned char *s)
{
    unsigned cp;
    size_t n;

    if (s[0] < 0xC2 || s[0] > 0xF4) {
        return 0;
    }
    n = s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
    cp = s[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF) {
        return 0;
    }
    return n;
}

/* Text for an element or an attribute value: the five markup characters as
 * entities, controls as spaces, what is not UTF-8 as U+FFFD, so that any name
 * gives well-formed XML. */
static void put_text(struct out *o, const char *text)
{
    const unsigned char *s = (const unsigned char *)text;

    while (*s) {
        const unsigned char *run = s;
        const char *rep = NULL;
        size_t n = 1;

        while (*s >= 0x20 && *s < 0x7F && *s != '&' && *s != '<' && *s != '>' && *s != '"' &&
               *s != '\'') {
            s++;
        }
        o->ok &= flow__buf_append(&o->b, run, (size_t)(s - run)) == FLOW_OK;
        if (!*s) {
            break;
        }
        switch (*s) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            n = *s < 0x80 ? 0 : xml_char_len(s);
            if (n == 0) {
                rep = *s < 0x80 ? " " : "\xef\xbf\xbd";
                n = 1;
            }
            break;
        }
        if (rep) {
            put(o, rep);
        } else {
            o->ok &= flow__buf_append(&o->b, s, n) == FLOW_OK;
        }
        s += n;
    }
}

/* An id: letters, digits, '_' and '-' as they are (every task name), any
 * other byte as ".XX", so that two names never share an id. */
static void put_id(struct out *o, const char *name)
{
    for (const unsigned char *s = (const unsigned char *)name; *s; s++) {
        bool plain = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                     (*s >= '0' && *s <= '9') || *s == '_' || *s == '-';

        if (plain) {
            o->ok &= flow__buf_appendc(&o->b, (char)*s) == FLOW_OK;
        } else {
            putf(o, ".%02X", *s);
        }
    }
}

static void put_path(struct out *o, const struct flow__layout *l, const struct flow__ledge *e)
{
    for (size_t i = 0; i < e->seg_count; i++) {
        const struct flow__lseg *s = &l->segs[e->seg_first + i];

        if (s->op == 'C') {
            putf(o, "%sC%d,%d %d,%d %d,%d", i ? " " : "", s->p[0], s->p[1], s->p[2], s->p[3],
                 s->p[4], s->p[5]);
        } else {
            putf(o, "%s%c%d,%d", i ? " " : "", s->op, s->p[0], s->p[1]);
        }
    }
}

/* data-from/data-to for a task's end, data-label for a label node's. */
static void put_end(struct out *o, const struct flow__lnode *n, const char *attr)
{
    putf(o, " data-%s=\"", n->task ? attr : "label");
    put_text(o, n->name);
    put(o, "\"");
}

static void put_edges(struct out *o, const struct flow__layout *l)
{
    put(o, "<g class=\"edges\">\n");
    for (size_t i = 0; i < l->edge_count; i++) {
        const struct flow__ledge *e = &l->edges[i];
        const char *marker = e->kind == FLOW__LE_FALLBACK  ? "fg-arrow-error"
                             : e->kind == FLOW__LE_CONNECT ? "fg-dot"
                             : e->kind == FLOW__LE_MAYBE   ? "fg-open"
                                                           : "fg-arrow";

        putf(o, "<path class=\"edge e-%s%s\"", kind_class[e->kind], e->back ? " back" : "");
        put_end(o, &l->nodes[e->from], "from");
        put_end(o, &l->nodes[e->to], "to");
        put(o, " d=\"");
        put_path(o, l, e);
        putf(o, "\" fill=\"none\" stroke=\"#9aa5b1\" marker-end=\"url(#%s)\"", marker);
        if (e->text) {
            put(o, "><title>");
            put_text(o, e->text);
            put(o, "</title></path>\n");
        } else {
            put(o, "/>\n");
        }
    }
    put(o, "</g>\n<g class=\"edge-labels\">\n");
    for (size_t i = 0; i < l->edge_count; i++) {
        const struct flow__ledge *e = &l->edges[i];

        if (!e->text || !e->lw) {
            continue;
        }
        putf(o, "<g class=\"elabel e-%s\"><title>", kind_class[e->kind]);
        put_text(o, e->text);
        putf(o, "</title><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" rx=\"3\" "
                "fill=\"#fff\"/><text x=\"%d\" y=\"%d\" text-anchor=\"middle\" "
                "font-size=\"%d\">",
             e->lx, e->ly, e->lw, e->lh, e->lx + e->lw / 2, e->ly + e->lh - 4,
             FLOW__GRAPH_FONT_EDGE);
        put_text(o, e->shown);
        put(o, "</text></g>\n");
    }
    put(o, "</g>\n");
}

/* NAME"><title>NAME</title><rect .../>: what closes a node's opening tag,
 * its tooltip and its box. */
static void put_box(struct out *o, const struct flow__lnode *n, int rx, const char *fill)
{
    put_text(o, n->name);
    put(o, "\"><title>");
    put_text(o, n->name);
    putf(o, "</title><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" rx=\"%d\" "
            "fill=\"%s\" stroke=\"#9aa5b1\"/>",
         n->x, n->y, n->w, n->h, rx, fill);
}

static void put_node(struct out *o, const struct flow__lnode *n)
{
    int cx = n->x + n->w / 2;

    if (!n->task) {
        put(o, "<g class=\"label\" data-label=\"");
        put_box(o, n, n->h / 2, "#f4f6f8");
        putf(o, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"%d\">", cx,
             n->y + n->h / 2 + 4, FLOW__GRAPH_FONT_LABEL);
        put_text(o, n->text);
        put(o, "</text></g>\n");
        return;
    }
    put(o, "<g id=\"t-");
    put_id(o, n->name);
    putf(o, "\" class=\"task kind-%s", n->kind);
    if (json_is_true(json_object_get(n->task, "start"))) {
        put(o, " start");
    }
    if (json_is_true(json_object_get(n->task, "entry"))) {
        put(o, " entry");
    }
    if (json_object_get(n->task, "foreach")) {
        put(o, " foreach");
    }
    put(o, "\" data-task=\"");
    put_box(o, n, !strcmp(n->kind, "router") ? 14 : 7, "#fff");
    putf(o, "<text class=\"name\" x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"%d\" "
            "font-weight=\"600\">",
         cx, n->y + 20, FLOW__GRAPH_FONT_NAME);
    put_text(o, n->text);
    putf(o, "</text><text class=\"note\" x=\"%d\" y=\"%d\" text-anchor=\"middle\" "
            "font-size=\"%d\">",
         cx, n->y + 35, FLOW__GRAPH_FONT_NOTE);
    put_text(o, n->note ? n->note : "");
    put(o, "</text></g>\n");
}

char *flow__graph_svg(const json_t *describe, const flow_graph_options *opts, flow_error *err)
{
    struct flow__layout *l = flow__layout_new(describe, opts, err);
    const char *name = json_string_value(json_object_get(describe, "name"));
    struct out o;

    if (!l) {
        return NULL;
    }
    flow__buf_init(&o.b, 0);
    o.ok = true;
    putf(&o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"flow-graph %s\" width=\"%d\" "
             "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"system-ui, sans-serif\" "
             "role=\"img\" data-flow=\"",
         l->left_right ? "lr" : "tb", l->width, l->height, l->width, l->height);
    put_text(&o, name ? name : "");
    put(&o, "\">\n<title>");
    put_text(&o, name ? name : "");
    put(&o, "</title>\n");
    if (!opts || !opts->no_style) {
        put(&o, style);
    }
    put(&o, markers);
    put_edges(&o, l);
    put(&o, "<g class=\"nodes\">\n");
    for (size_t i = 0; i < l->node_count; i++) {
        put_node(&o, &l->nodes[i]);
    }
    put(&o, "</g>\n</svg>\n");
    flow__layout_free(l);
    if (!o.ok) {
        flow__buf_cleanup(&o.b);
        flow__error(err, FLOW_ENOMEM, "cannot draw the graph: out of memory");
        return NULL;
    }
    return flow__buf_take(&o.b);
}

static json_t *box_json(int x, int y, int w, int h)
{
    return json_pack("{s:i,s:i,s:i,s:i}", "x", x, "y", y, "w", w, "h", h);
}

static json_t *node_json(const struct flow__lnode *n)
{
    return json_pack("{s:s,s:s,s:s,s:s?,s:b,s:i,s:o}", "name", n->name, "kind", n->kind,
                          "text", n->text, "note", n->note, "task", n->task != NULL, "layer",
                          n->layer, "box", box_json(n->x, n->y, n->w, n->h));
}

static json_t *edge_json(struct out *o, const struct flow__layout *l, const struct flow__ledge *e)
{
    flow__buf_reset(&o->b);
    put_path(o, l, e);
    return json_pack("{s:s,s:s,s:s,s:s?,s:b,s:s,s:o?}", "from", l->nodes[e->from].name, "to",
                     l->nodes[e->to].name, "kind", kind_class[e->kind], "text", e->text, "back",
                     e->back, "path", flow__buf_str(&o->b), "text_box",
                     e->text && e->lw ? box_json(e->lx, e->ly, e->lw, e->lh) : NULL);
}

json_t *flow__graph_layout_json(const json_t *describe, const flow_graph_options *opts,
                                flow_error *err)
{
    struct flow__layout *l = flow__layout_new(describe, opts, err);
    json_t *nodes = json_array();
    json_t *edges = json_array();
    json_t *root = NULL;
    struct out o;
    size_t i;
    bool ok = l && nodes && edges;

    flow__buf_init(&o.b, 0);
    o.ok = true;
    for (i = 0; ok && i < l->node_count; i++) {
        ok = json_array_append_new(nodes, node_json(&l->nodes[i])) == 0;
    }
    for (i = 0; ok && i < l->edge_count; i++) {
        ok = json_array_append_new(edges, edge_json(&o, l, &l->edges[i])) == 0 && o.ok;
    }
    if (ok) {
        root = json_pack("{s:i,s:i,s:s,s:O,s:O}", "width", l->width, "height", l->height,
                         "direction", l->left_right ? "LR" : "TB", "nodes", nodes, "edges",
                         edges);
    }
    if (!root && l) {
        flow__error(err, FLOW_ENOMEM, "cannot lay out the graph: out of memory");
    }
    flow__buf_cleanup(&o.b);
    json_decref(edges);
    json_decref(nodes);
    flow__layout_free(l);
    return root;
}

char *flow_graph_svg(flow *f, const flow_graph_options *opts, flow_error *err)
{
    json_t *describe = f ? flow_describe(f) : NULL;
    char *svg;

    if (!describe) {
        flow__error(err, f ? FLOW_ENOMEM : FLOW_EINVAL, "cannot draw the graph: %s",
                    f ? "out of memory" : "no flow");
        return NULL;
    }
    svg = flow__graph_svg(describe, opts, err);
    json_decref(describe);
    return svg;
}
