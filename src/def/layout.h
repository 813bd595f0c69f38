/* layout.h -- a flow's graph laid out in layers, and drawn as SVG: our own
 * layered (Sugiyama) layout of flow_describe()'s JSON, so it needs no internals
 * and no Graphviz. `flow graph --format svg` and `flow serve` draw with it.
 * Every function here keeps no state between calls: any thread may call them
 * at once, on descriptions no one changes meanwhile. */
#ifndef FLOW_DEF_LAYOUT_H
#define FLOW_DEF_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>

#include "flow.h"

/* Sizes, in px, that the measuring and the drawing share. */
#define FLOW__GRAPH_FONT_NAME 13  /* a task's name (bold) */
#define FLOW__GRAPH_FONT_NOTE 11  /* its second line */
#define FLOW__GRAPH_FONT_LABEL 12 /* a label node's name */
#define FLOW__GRAPH_FONT_EDGE 11  /* an edge's text */
#define FLOW__GRAPH_NODE_H 44     /* a task: two lines */
#define FLOW__GRAPH_LABEL_H 26    /* a label node */
#define FLOW__GRAPH_EDGE_LABEL_H 16
#define FLOW__GRAPH_MIN_W 84
#define FLOW__GRAPH_PAD 14 /* left and right of a task's text */

/* What an edge stands for: the description's kinds, and the two a label node
 * adds (trigger: label -> task; maybe: a task that may emit the label). */
enum flow__ledge_kind {
    FLOW__LE_AFTER,
    FLOW__LE_ANY,      /* after_any */
    FLOW__LE_OPTIONAL,
    FLOW__LE_WHEN,
    FLOW__LE_LABEL,    /* router -> task, the label known */
    FLOW__LE_TRIGGER,  /* label node -> task */
    FLOW__LE_MAYBE,    /* task -> label node: it may emit the label */
    FLOW__LE_CONNECT,
    FLOW__LE_FALLBACK
};

/* A drawn node: a task, or a label (event) that tasks listen to. */
struct flow__lnode {
    const json_t *task; /* the task's description, borrowed; NULL: a label node */
    const char *name;   /* the task's name or the label, borrowed from the description */
    char *text;         /* the name as shown, with an ellipsis when cut */
    char *note;         /* the second line ("cmd", "approval", "foreach"); NULL: none */
    const char *kind;   /* tasks: fn cmd shell http llm noop feedback flow
                         * remote router */
    bool cut;           /* `text` is shorter than `name` */
    int layer;
    int x, y, w, h;     /* the box: top-left corner and size, in px */
};

/* One piece of an edge's path, in SVG path terms. */
struct flow__lseg {
    char op;  /* 'M' (one point), 'L' (one point) or 'C' (three points) */
    int p[6]; /* x, y pairs */
};

struct flow__ledge {
    size_t from, to;          /* node indexes, as the flow says (from == to: a loop) */
    enum flow__ledge_kind kind;
    char *text;               /* the edge's text in full ("any", an event); NULL: none */
    char *shown;              /* `text` as shown, cut to the label width; NULL with text */
    bool back;                /* drawn against the layers: a cycle was broken here */
    size_t seg_first;         /* its path: segs[seg_first .. seg_first + seg_count) */
    size_t seg_count;
    int lx, ly, lw, lh;       /* the text's box when `text` is set; lw 0: no room was
                               * found for it (an edge drawn straight past the
                               * dummy budget), it is in the path's <title> only */
};

struct flow__layout {
    struct flow__lnode *nodes; /* the tasks in the description's order, then labels */
    size_t node_count;
    size_t task_count;
    struct flow__ledge *edges;
    size_t edge_count;
    struct flow__lseg *segs;
    size_t seg_count;
    size_t layer_count;
    int width, height; /* of the drawing, margins included */
    bool left_right;
};

/* Lay out the graph that `describe` (flow_describe()'s JSON, borrowed: it must
 * outlive the result) holds. Deterministic: the same description and options
 * give the same numbers. NULL with `err` set on allocation failure or when
 * `describe` is not a description (FLOW_EINVAL). The caller frees the result
 * with flow__layout_free(). */
struct flow__layout *flow__layout_new(const json_t *describe, const flow_graph_options *opts,
                                      flow_error *err);
void flow__layout_free(struct flow__layout *l);

/* The layout of `describe` as a standalone SVG document (see flow_graph_svg()
 * in flow.h): a NUL-terminated string the caller frees with flow__free(), or
 * NULL with `err` set. `opts` may be NULL. */
char *flow__graph_svg(const json_t *describe, const flow_graph_options *opts, flow_error *err);

/* The same layout as JSON, for a page that draws for itself: {width, height,
 * direction: "TB"|"LR", nodes: [{name, kind, text, note, task, layer, box: {x, y,
 * w, h}}], edges: [{from, to, kind, text, back, path, text_box}]} where `task` is
 * false for a label's node, `path` is an SVG path ("M.. C.. L..") and
 * `text_box` is null without a text. A new reference, or NULL with `err` set. */
json_t *flow__graph_layout_json(const json_t *describe, const flow_graph_options *opts,
                                flow_error *err);

/* Between the files of the layout: layout_graph.c fills `l`'s nodes and
 * edges (texts and sizes, no positions) from `describe`; layout.c places them. */
flow_err flow__layout_graph(struct flow__layout *l, const json_t *describe,
                            const flow_graph_options *opts, flow_error *err);
/* The width in px of `s` at `px` px, with `slack_pct` percent to spare (bold,
 * or a wider font than the one measured). */
int flow__layout_text_width(const char *s, int px, int slack_pct);

#endif
