/* test_layout.c -- drawing a flow's graph (src/def/layout.c, layout_graph.c,
 * svg.c): golden SVG of small flows compared byte for byte (tests/graph/;
 * FLOW_UPDATE_GOLDEN=1 writes them again), the geometry of generated graphs
 * (no two boxes overlap, every edge runs from its node to its node, a layer's
 * nodes in line, edges go around nodes, cycles and loops), escaping, the
 * options, bad descriptions, allocation failure, and 5,000 tasks. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "def/layout.h"
#include "util/alloc.h"
#include "util/error.h"

/* ------------------------------------------------------------------------ */
/* Golden drawings                                                           */

static void golden(const char *name, const flow_graph_options *opts)
{
    char rel[128];
    flow_error err;

    snprintf(rel, sizeof(rel), "tests/graph/%s.yaml", name);
    char *yaml = th_source_path(rel);
    snprintf(rel, sizeof(rel), "tests/graph/%s.svg", name);
    char *want_path = th_source_path(rel);
    flow *f = flow_load_file(yaml, NULL, &err);
    if (!f) {
        fail_msg("%s: %s", yaml, err.message);
    }
    char *svg = flow_graph_svg(f, opts, &err);
    assert_non_null(svg);
    if (getenv("FLOW_UPDATE_GOLDEN")) {
        FILE *out = fopen(want_path, "w");

        assert_non_null(out);
        fputs(svg, out);
        assert_int_equal(fclose(out), 0);
    }
    char *want = th_read_file(want_path);
    if (!want) {
        fail_msg("no %s (FLOW_UPDATE_GOLDEN=1 writes it)", want_path);
    }
    if (strcmp(svg, want) != 0) {
        size_t i = 0;

        while (svg[i] && svg[i] == want[i]) {
            i++;
        }
        size_t from = i > 60 ? i - 60 : 0;
        fail_msg("%s differs at byte %zu:\n got: %.120s\nwant: %.120s", want_path, i, svg + from,
                 want + from);
    }
    /* the same again: nothing depends on addresses or earlier calls */
    char *again = flow_graph_svg(f, opts, &err);
    assert_string_equal(again, svg);
    free(again);
    free(want);
    free(svg);
    flow_free(f);
    free(want_path);
    free(yaml);
}

static void test_golden_deps(void **state)
{
    (void)state;
    golden("deps", NULL);
}

static void test_golden_router_left_right(void **state)
{
    (void)state;
    flow_graph_options o = {.left_right = true};

    golden("router", &o);
}

static void test_golden_names(void **state)
{
    (void)state;
    flow_graph_options o = {.max_label = 12, .no_style = true};

    golden("names", &o);
}

/* ------------------------------------------------------------------------ */
/* Geometry                                                                  */

static bool on_border(const struct flow__lnode *n, int x, int y)
{
    bool inside = x >= n->x && x <= n->x + n->w && y >= n->y && y <= n->y + n->h;

    return inside && (x == n->x || x == n->x + n->w || y == n->y || y == n->y + n->h);
}

struct box {
    int x, y, w, h;
    long what; /* node index, or -1 - edge index for a text */
};

static int cmp_box(const void *pa, const void *pb)
{
    const struct box *a = pa;
    const struct box *b = pb;

    if (a->x != b->x) {
        return a->x < b->x ? -1 : 1;
    }
    return a->y < b->y ? -1 : a->y > b->y;
}

static void seg_end(const struct flow__lseg *s, int *x, int *y)
{
    int k = s->op == 'C' ? 4 : 0;

    *x = s->p[k];
    *y = s->p[k + 1];
}

/* Everything the drawing promises, whatever the graph. `through`: also check
 * that no straight stretch of an edge (where it passes a layer) cuts a node,
 * which costs edges x nodes. */
static void check_layout(const struct flow__layout *l, bool through)
{
    size_t count = 0;
    size_t i;
    struct box *boxes = calloc(l->node_count + l->edge_count + 1, sizeof(*boxes));

    assert_non_null(boxes);
    for (i = 0; i < l->node_count; i++) {
        const struct flow__lnode *n = &l->nodes[i];

        assert_true(n->w > 0 && n->h > 0);
        boxes[count++] = (struct box){n->x, n->y, n->w, n->h, (long)i};
    }
    for (i = 0; i < l->edge_count; i++) {
        const struct flow__ledge *e = &l->edges[i];

        if (e->text && e->lw) {
            boxes[count++] = (struct box){e->lx, e->ly, e->lw, e->lh, -1 - (long)i};
        }
    }
    /* no two boxes (nodes, texts) overlap, and all are inside the drawing */
    qsort(boxes, count, sizeof(*boxes), cmp_box);
    for (i = 0; i < count; i++) {
        const struct box *a = &boxes[i];

        if (a->x < 0 || a->y < 0 || a->x + a->w > l->width || a->y + a->h > l->height) {
            fail_msg("box %ld (%d,%d %dx%d) is outside %dx%d", a->what, a->x, a->y, a->w, a->h,
                     l->width, l->height);
        }
        for (size_t j = i + 1; j < count && boxes[j].x < a->x + a->w; j++) {
            const struct box *b = &boxes[j];

            if (b->y < a->y + a->h && a->y < b->y + b->h) {
                fail_msg("boxes %ld (%d,%d %dx%d) and %ld (%d,%d %dx%d) overlap", a->what, a->x,
                         a->y, a->w, a->h, b->what, b->x, b->y, b->w, b->h);
            }
        }
    }
    free(boxes);
    /* the nodes of a layer are in line: the same middle across the layers */
    int *mid = calloc(l->layer_count + 1, sizeof(int));
    assert_non_null(mid);
    for (i = 0; i < l->node_count; i++) {
        const struct flow__lnode *n = &l->nodes[i];
        int m = l->left_right ? n->x + n->w / 2 : n->y + n->h / 2;

        assert_true(n->layer >= 0 && (size_t)n->layer < l->layer_count);
        if (!mid[n->layer]) {
            mid[n->layer] = m;
        }
        assert_int_equal(m, mid[n->layer]);
    }
    free(mid);
    /* every edge from its node to its node; forwards, except to close a cycle */
    for (i = 0; i < l->edge_count; i++) {
        const struct flow__ledge *e = &l->edges[i];
        const struct flow__lseg *s = &l->segs[e->seg_first];
        const struct flow__lnode *from = &l->nodes[e->from];
        const struct flow__lnode *to = &l->nodes[e->to];
        int x0 = s[0].p[0];
        int y0 = s[0].p[1];
        int x1;
        int y1;

        assert_true(e->seg_count >= 2);
        assert_int_equal(s[0].op, 'M');
        seg_end(&s[e->seg_count - 1], &x1, &y1);
        if (!on_border(from, x0, y0) || !on_border(to, x1, y1)) {
            fail_msg("edge %zu (%s -> %s) runs from (%d,%d) to (%d,%d)", i, from->name, to->name,
                     x0, y0, x1, y1);
        }
        if (e->from != e->to) {
            int along0 = l->left_right ? x0 : y0;
            int along1 = l->left_right ? x1 : y1;

            assert_true(e->back ? along1 < along0 : along1 > along0);
            assert_true(e->back ? from->layer > to->layer : from->layer < to->layer);
        }
        for (size_t k = 1; through && k < e->seg_count; k++) {
            int xa;
            int ya;

            if (s[k].op != 'L') {
                continue;
            }
            seg_end(&s[k - 1], &xa, &ya);
            for (size_t n = 0; n < l->node_count; n++) {
                const struct flow__lnode *b = &l->nodes[n];
                int lo = l->left_right ? (xa < s[k].p[0] ? xa : s[k].p[0])
                                       : (ya < s[k].p[1] ? ya : s[k].p[1]);
                int hi = l->left_right ? (xa > s[k].p[0] ? xa : s[k].p[0])
                                       : (ya > s[k].p[1] ? ya : s[k].p[1]);
                int at = l->left_right ? ya : xa;
                bool cuts = l->left_right ? (at > b->y && at < b->y + b->h && lo < b->x + b->w &&
                                             hi > b->x)
                                          : (at > b->x && at < b->x + b->w && lo < b->y + b->h &&
                                             hi > b->y);

                if (cuts) {
                    fail_msg("edge %zu (%s -> %s) goes through node %s", i, from->name, to->name,
                             b->name);
                }
            }
        }
    }
}

/* A small deterministic generator (numerical recipes' LCG). */
static unsigned next_rand(unsigned *seed)
{
    *seed = *seed * 1664525u + 1013904223u;
    return *seed >> 8;
}

static const char *const kinds[] = {"command", "shell", "function", "noop", "feedback", "flow"};
static const char *const edge_kinds[] = {"after", "after", "after", "after_any", "optional",
                                         "when"};

/* A description of `n` tasks: dependencies on recent tasks of every kind,
 * labels from routers, events, fallbacks; with `cycles`, edges back up the
 * graph and loops as well. */
static json_t *generate(unsigned seed, int n, bool cycles)
{
    json_t *tasks = json_array();
    json_t *edges = json_array();
    char name[64];
    char other[64];

    for (int i = 0; i < n; i++) {
        bool router = next_rand(&seed) % 9 == 0;

        if (next_rand(&seed) % 7 == 0) {
            snprintf(name, sizeof(name), "task_with_a_rather_long_name_%d", i);
        } else {
            snprintf(name, sizeof(name), "t%d", i);
        }
        json_t *t = json_pack("{s:s,s:s,s:b,s:b,s:s}", "name", name, "kind",
                              kinds[next_rand(&seed) % 6], "start", i == 0, "router", router,
                              "executor", next_rand(&seed) % 5 ? "process" : "remote");
        if (router) {
            snprintf(other, sizeof(other), "echo l%d", i);
            json_object_set_new(t, "shell", json_string(other));
        }
        if (next_rand(&seed) % 6 == 0) {
            json_object_set_new(t, "foreach", json_string("{{ input }}"));
            json_object_set_new(t, "concurrency", json_integer(next_rand(&seed) % 3));
        }
        json_array_append_new(tasks, t);
    }
    for (int i = 1; i < n; i++) {
        const char *to = json_string_value(json_object_get(json_array_get(tasks, (size_t)i), "name"));
        int deps = 1 + (int)(next_rand(&seed) % 3);

        for (int k = 0; k < deps; k++) {
            int span = 1 + (int)(next_rand(&seed) % 12);
            int from = i - span < 0 ? 0 : i - span;
            const json_t *ft = json_array_get(tasks, (size_t)from);
            const char *kind = edge_kinds[next_rand(&seed) % 6];
            unsigned r = next_rand(&seed) % 20;

            if (r == 0 && json_is_true(json_object_get(ft, "router"))) {
                snprintf(other, sizeof(other), "l%d", from);
                json_array_append_new(edges, json_pack("{s:n,s:s,s:s,s:s}", "from", "to", to,
                                                       "kind", "label", "label", other));
                continue;
            }
            kind = r == 1 ? "fallback" : r == 2 ? "connect" : kind;
            json_t *e = json_pack("{s:s,s:s,s:s}", "from", json_string_value(json_object_get(ft, "name")),
                                  "to", to, "kind", kind);
            if (r == 2) {
                json_object_set_new(e, "event", json_string("progress"));
            }
            json_array_append_new(edges, e);
        }
        if (cycles && next_rand(&seed) % 10 == 0) {
            /* back to an earlier task, or a loop */
            int back = (int)(next_rand(&seed) % (unsigned)(i + 1));
            const char *bt =
                json_string_value(json_object_get(json_array_get(tasks, (size_t)back), "name"));

            json_array_append_new(edges, json_pack("{s:s,s:s,s:s,s:s}", "from", to, "to", bt,
                                                   "kind", "connect", "event", "again"));
        }
    }
    return json_pack("{s:s,s:o,s:o,s:[]}", "name", "generated", "tasks", tasks, "edges", edges,
                     "labels");
}

/* The attribute value that starts at `p` (after its opening quote), copied. */
static void value_at(const char *p, char *out, size_t cap)
{
    const char *end = strchr(p, '"');

    assert_non_null(end);
    assert_true((size_t)(end - p) < cap);
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = '\0';
}

/* Each task once in the SVG: its data-task and its id. */
static void check_tasks_once(const char *svg, const json_t *describe)
{
    size_t n = json_array_size(json_object_get(describe, "tasks"));
    size_t found = 0;
    const char *p = svg;
    json_t *seen = json_object();

    while ((p = strstr(p, "<g id=\"t-")) != NULL) {
        char id[96];
        char task[96];

        value_at(p + strlen("<g id=\"t-"), id, sizeof(id));
        p = strstr(p, "\" class=\"task kind-");
        assert_non_null(p);
        p = strstr(p, "data-task=\"");
        assert_non_null(p);
        value_at(p + strlen("data-task=\""), task, sizeof(task));
        assert_string_equal(id, task); /* plain names are their own ids */
        assert_null(json_object_get(seen, task));
        json_object_set_new(seen, task, json_true());
        found++;
    }
    assert_int_equal(found, n);
    json_decref(seen);
}

static void draw_generated(unsigned seed, int n, bool cycles, bool lr, bool through)
{
    json_t *d = generate(seed, n, cycles);
    flow_graph_options o = {.left_right = lr};
    flow_error err;
    struct flow__layout *l = flow__layout_new(d, &o, &err);

    if (!l) {
        fail_msg("layout: %s", err.message);
    }
    assert_true(l->task_count == (size_t)n);
    check_layout(l, through);
    flow__layout_free(l);
    char *svg = flow__graph_svg(d, &o, &err);
    assert_non_null(svg);
    check_tasks_once(svg, d);
    flow__free(svg);
    json_decref(d);
}

static void test_generated_graphs(void **state)
{
    (void)state;
    for (unsigned seed = 1; seed <= 24; seed++) {
        int n = 1 + (int)(seed * 7 % 60);

        draw_generated(seed, n, seed % 2 == 0, seed % 3 == 0, true);
    }
}

static void test_5000_tasks(void **state)
{
    (void)state;
    draw_generated(5000, 5000, true, false, false);
}

/* An edge longer than the dummy budget allows is drawn straight, and the
 * rest still holds. */
static void test_past_the_dummy_budget(void **state)
{
    (void)state;
    json_t *tasks = json_array();
    json_t *edges = json_array();
    char name[32];
    char prev[32];
    const int n = 1000;

    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "t%d", i);
        json_array_append_new(tasks, json_pack("{s:s,s:s}", "name", name, "kind", "noop"));
        if (i) {
            json_array_append_new(edges, json_pack("{s:s,s:s,s:s}", "from", prev, "to", name,
                                                   "kind", "after"));
            json_array_append_new(edges, json_pack("{s:s,s:s,s:s}", "from", "t0", "to", name,
                                                   "kind", i % 2 ? "after" : "after_any"));
        }
        memcpy(prev, name, sizeof(name));
    }
    json_t *d = json_pack("{s:s,s:o,s:o}", "name", "skips", "tasks", tasks, "edges", edges);
    flow_error err;
    struct flow__layout *l = flow__layout_new(d, NULL, &err);

    assert_non_null(l);
    check_layout(l, false);
    flow__layout_free(l);
    json_decref(d);
}

/* ------------------------------------------------------------------------ */
/* Texts                                                                     */

/* Well-formed enough for XML: every '&' starts one of the entities we write,
 * every '<' a tag, attribute values hold no '<', and the bytes are UTF-8
 * without controls (the e2e test parses real output with python's XML). */
static void check_markup(const char *svg)
{
    static const char *const entities[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;"};
    bool in_tag = false;
    bool in_value = false;

    for (const unsigned char *p = (const unsigned char *)svg; *p; p++) {
        if (*p == '&') {
            bool known = false;

            for (size_t k = 0; k < 5; k++) {
                known |= strncmp((const char *)p, entities[k], strlen(entities[k])) == 0;
            }
            if (!known) {
                fail_msg("a bare '&' at %.40s", (const char *)p);
            }
        } else if (*p == '<') {
            assert_false(in_tag);
            assert_true(p[1] == '/' || p[1] == '?' || (p[1] >= 'a' && p[1] <= 'z'));
            in_tag = true;
        } else if (*p == '"' && in_tag) {
            in_value = !in_value;
        } else if (*p == '>' && in_tag && !in_value) {
            in_tag = false;
        } else if (*p < 0x20 && *p != '\n') {
            fail_msg("control byte %u", *p);
        } else if (*p >= 0x80) {
            size_t len = *p >= 0xF0 ? 4 : *p >= 0xE0 ? 3 : 2;

            assert_true(*p >= 0xC2 && *p <= 0xF4);
            for (size_t k = 1; k < len; k++) {
                assert_int_equal(p[k] & 0xC0, 0x80);
            }
            p += len - 1;
        }
    }
    assert_false(in_tag);
}

static void test_escaping(void **state)
{
    (void)state;
    /* jansson refuses bad UTF-8 but for the _nocheck calls: a C caller's
     * names (flow_add_task) are not checked either */
    json_t *bad = json_string_nocheck("bad\xff\xfe"
                                      "bytes\x01\x7f");
    json_t *odd = json_string_nocheck("caf\xc3\xa9 \xf0\x9f\x9a\x80 \xed\xa0\x80 \xef\xbf\xbe");
    json_t *d = json_pack("{s:s,s:[{s:s,s:s,s:b},{s:O,s:s},{s:O,s:s},{s:s,s:s}],"
                          "s:[{s:s,s:s,s:s,s:s,s:{s:s}},{s:n,s:s,s:s,s:s},{s:s,s:O,s:s}]}",
                          "name", "<svg> & \"friends\" 'too'", "tasks", "name", "a<&>\"'b", "kind",
                          "shell", "start", 1, "name", bad, "kind", "noop", "name", odd, "kind",
                          "noop", "name", "plain", "kind", "noop", "edges", "from", "a<&>\"'b",
                          "to", "plain", "kind", "connect", "event", "e\"v'<>&", "map", "<k>",
                          "v&w", "from", "to", "plain", "kind", "label", "label", "l<&>", "from",
                          "a<&>\"'b", "to", bad, "kind", "after");
    flow_error err;

    assert_non_null(d);
    char *svg = flow__graph_svg(d, NULL, &err);
    assert_non_null(svg);
    check_markup(svg);
    assert_non_null(strstr(svg, "data-flow=\"&lt;svg&gt; &amp; &quot;friends&quot; &#39;too&#39;\""));
    assert_non_null(strstr(svg, "<g id=\"t-a.3C.26.3E.22.27b\" class=\"task kind-shell start\" "
                                "data-task=\"a&lt;&amp;&gt;&quot;&#39;b\">"));
    assert_non_null(strstr(svg, "<title>a&lt;&amp;&gt;&quot;&#39;b</title>"));
    assert_non_null(strstr(svg, "id=\"t-bad.FF.FEbytes.01.7F\""));
    /* bytes that are not UTF-8 become U+FFFD, controls spaces */
    assert_non_null(strstr(svg, "data-task=\"bad\xef\xbf\xbd\xef\xbf\xbd" "bytes  \""));
    /* good UTF-8 stays; a surrogate and U+FFFE are not characters XML has */
    assert_non_null(strstr(svg, "data-task=\"caf\xc3\xa9 \xf0\x9f\x9a\x80 \xef\xbf\xbd\xef\xbf\xbd"
                                "\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""));
    assert_non_null(strstr(svg, "e&quot;v&#39;&lt;&gt;&amp; (&lt;k&gt;\xe2\x86\x92v&amp;w)"));
    assert_non_null(strstr(svg, "data-label=\"l&lt;&amp;&gt;\""));
    flow__free(svg);
    json_decref(d);
    json_decref(odd);
    json_decref(bad);
}

static void test_cut_names(void **state)
{
    (void)state;
    json_t *d = json_pack("{s:s,s:[{s:s,s:s},{s:s,s:s}],s:[{s:s,s:s,s:s,s:s}]}", "name", "cut",
                          "tasks", "name", "abcdefghijklmnop", "kind", "noop", "name",
                          "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
                          "kind", "noop", "edges", "from", "abcdefghijklmnop", "to",
                          "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
                          "kind", "when", "label", "a condition that is long");
    flow_graph_options o = {.max_label = 8};
    flow_error err;
    char *svg = flow__graph_svg(d, &o, &err);

    assert_non_null(svg);
    check_markup(svg);
    assert_non_null(strstr(svg, ">abcdefg\xe2\x80\xa6</text>"));
    assert_non_null(strstr(svg, "<title>abcdefghijklmnop</title>"));
    assert_non_null(strstr(svg, ">\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xe2\x80"
                                "\xa6</text>"));
    assert_non_null(strstr(svg, "<title>a condition that is long</title>"));
    assert_non_null(strstr(svg, ">a condi\xe2\x80\xa6</text>"));
    flow__free(svg);
    /* at most, never under 4 characters */
    o.max_label = 1;
    svg = flow__graph_svg(d, &o, &err);
    assert_non_null(strstr(svg, ">abc\xe2\x80\xa6</text>"));
    flow__free(svg);
    json_decref(d);
}

static void test_options_and_classes(void **state)
{
    (void)state;
    const char *yaml = "name: opts\n"
                       "tasks:\n"
                       "  a: {shell: echo a}\n"
                       "  r: {after: a, router: true, run: [echo, x]}\n"
                       "  x: {on: x, fn: sq, executor: remote}\n"
                       "  fe: {after: a, foreach: '{{ input }}', run: [echo]}\n"
                       "  n: {after: fe, entry: true}\n"
                       "  h: {after: n, http: {url: 'http://x/'}}\n"
                       "  l: {after: n, llm: {prompt: hi}}\n";
    flow_error err;
    flow *f = flow_load_string(yaml, strlen(yaml), "opts.yaml", NULL, &err);
    if (!f) {
        fail_msg("%s", err.message);
    }
    char *svg = flow_graph_svg(f, NULL, &err);

    assert_non_null(svg);
    assert_non_null(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"flow-graph tb\""));
    assert_non_null(strstr(svg, "<style>"));
    assert_non_null(strstr(svg, ".flow-graph .st-running>rect{"));
    assert_non_null(strstr(svg, "class=\"task kind-shell start\" data-task=\"a\""));
    assert_non_null(strstr(svg, "class=\"task kind-router\" data-task=\"r\""));
    assert_non_null(strstr(svg, "class=\"task kind-remote\" data-task=\"x\""));
    assert_non_null(strstr(svg, "class=\"task kind-cmd foreach\" data-task=\"fe\""));
    assert_non_null(strstr(svg, "class=\"task kind-noop entry\" data-task=\"n\""));
    assert_non_null(strstr(svg, "class=\"task kind-http\" data-task=\"h\""));
    assert_non_null(strstr(svg, "class=\"task kind-llm\" data-task=\"l\""));
    assert_non_null(strstr(svg, ">router \xc2\xb7 cmd</text>"));
    assert_non_null(strstr(svg, ">remote \xc2\xb7 fn</text>"));
    assert_non_null(strstr(svg, ">cmd \xc2\xb7 foreach</text>"));
    /* the router names its label: a "may emit" edge into the label's node */
    assert_non_null(strstr(svg, "class=\"edge e-maybe\" data-from=\"r\" data-label=\"x\""));
    assert_non_null(strstr(svg, "class=\"edge e-trigger\" data-label=\"x\" data-to=\"x\""));
    free(svg);
    flow_graph_options o = {.left_right = true, .no_style = true};
    svg = flow_graph_svg(f, &o, &err);
    assert_non_null(svg);
    assert_non_null(strstr(svg, "class=\"flow-graph lr\""));
    assert_null(strstr(svg, "<style>"));
    free(svg);
    flow_free(f);
    /* no flow */
    assert_null(flow_graph_svg(NULL, NULL, &err));
    assert_int_equal(err.code, FLOW_EINVAL);
}

static void test_bad_descriptions(void **state)
{
    (void)state;
    static const char *const bad[] = {"[]", "{\"tasks\": 3}", "{}", "null"};
    flow_error err;

    for (size_t i = 0; i < 4; i++) {
        json_t *d = json_loads(bad[i], JSON_DECODE_ANY, NULL);

        flow__error_clear(&err);
        assert_null(flow__graph_svg(d, NULL, &err));
        assert_int_equal(err.code, FLOW_EINVAL);
        assert_string_equal(err.message, "not a flow's description: no 'tasks' list");
        json_decref(d);
    }
    /* odd but readable: tasks without names, edges to nobody, unknown kinds */
    json_t *d = json_loads("{\"tasks\": [{\"kind\": \"shell\"}, {\"name\": \"a\"}, {\"name\": \"a\"},"
                           " 7], \"edges\": [{\"from\": \"a\", \"to\": \"zz\"}, {\"to\": \"a\"},"
                           " {\"from\": \"a\", \"to\": \"a\", \"kind\": \"teleport\"}, 3]}",
                           0, NULL);
    char *svg = flow__graph_svg(d, NULL, &err);
    assert_non_null(svg);
    assert_non_null(strstr(svg, "data-task=\"a\""));
    assert_null(strstr(svg, "<path class=\"edge"));
    flow__free(svg);
    json_decref(d);
    /* no tasks: an empty drawing */
    d = json_loads("{\"name\": \"empty\", \"tasks\": []}", 0, NULL);
    svg = flow__graph_svg(d, NULL, &err);
    assert_non_null(svg);
    assert_non_null(strstr(svg, "width=\"32\" height=\"32\" viewBox=\"0 0 32 32\""));
    flow__free(svg);
    json_decref(d);
}

/* Values of the wrong type anywhere in a description: still a drawing. */
static void test_odd_values(void **state)
{
    (void)state;
    static const char *const fields[] = {"name",    "kind",  "start",   "router", "executor",
                                         "when",    "shell", "run",     "foreach", "concurrency",
                                         "feedback", "flow", "from",    "to",     "label",
                                         "event",   "map"};
    unsigned seed = 99;

    for (int round = 0; round < 200; round++) {
        json_t *d = generate((unsigned)round, 12, true);
        json_t *odd[] = {json_integer(7), json_real(-1.5), json_null(), json_true(),
                         json_pack("[s,i]", "t1", 3), json_pack("{s:s}", "or", "t2"),
                         json_string("")};
        flow_error err;

        for (int k = 0; k < 6; k++) {
            const char *list = next_rand(&seed) % 2 ? "tasks" : "edges";
            json_t *items = json_object_get(d, list);
            json_t *item = json_array_get(items, next_rand(&seed) % (json_array_size(items) + 1));

            json_object_set(item, fields[next_rand(&seed) % 17], odd[next_rand(&seed) % 7]);
        }
        char *svg = flow__graph_svg(d, NULL, &err);
        if (!svg) {
            fail_msg("round %d: %s", round, err.message);
        }
        check_markup(svg);
        flow__free(svg);
        for (size_t i = 0; i < 7; i++) {
            json_decref(odd[i]);
        }
        json_decref(d);
    }
}

/* The layout as JSON holds the numbers of the SVG. */
static void test_layout_json(void **state)
{
    (void)state;
    json_t *d = generate(11, 30, true);
    flow_graph_options o = {.left_right = true};
    flow_error err;
    json_t *j = flow__graph_layout_json(d, &o, &err);
    struct flow__layout *l = flow__layout_new(d, &o, &err);
    size_t i;
    json_t *v;

    assert_non_null(j);
    assert_non_null(l);
    assert_int_equal(json_integer_value(json_object_get(j, "width")), l->width);
    assert_int_equal(json_integer_value(json_object_get(j, "height")), l->height);
    assert_string_equal(json_string_value(json_object_get(j, "direction")), "LR");
    assert_int_equal(json_array_size(json_object_get(j, "nodes")), l->node_count);
    assert_int_equal(json_array_size(json_object_get(j, "edges")), l->edge_count);
    json_array_foreach(json_object_get(j, "nodes"), i, v) {
        const struct flow__lnode *n = &l->nodes[i];
        json_t *box = json_object_get(v, "box");

        assert_string_equal(json_string_value(json_object_get(v, "name")), n->name);
        assert_string_equal(json_string_value(json_object_get(v, "kind")), n->kind);
        assert_int_equal(json_is_true(json_object_get(v, "task")), n->task != NULL);
        assert_int_equal(json_integer_value(json_object_get(box, "x")), n->x);
        assert_int_equal(json_integer_value(json_object_get(box, "h")), n->h);
    }
    json_array_foreach(json_object_get(j, "edges"), i, v) {
        const struct flow__ledge *e = &l->edges[i];
        char start[32];

        snprintf(start, sizeof(start), "M%d,%d ", l->segs[e->seg_first].p[0],
                 l->segs[e->seg_first].p[1]);
        assert_string_equal(json_string_value(json_object_get(v, "from")), l->nodes[e->from].name);
        assert_int_equal(strncmp(json_string_value(json_object_get(v, "path")), start,
                                 strlen(start)),
                         0);
        assert_int_equal(json_is_null(json_object_get(v, "text_box")), !e->text || !e->lw);
        assert_int_equal(json_is_true(json_object_get(v, "back")), e->back);
    }
    flow__layout_free(l);
    json_decref(j);
    assert_null(flow__graph_layout_json(json_null(), NULL, &err));
    assert_int_equal(err.code, FLOW_EINVAL);
    json_decref(d);
}

/* Every allocation fails once: NULL and "out of memory" each time, nothing
 * leaked (valgrind and ASan run this), then the same drawing as without. */
static void test_alloc_failure(void **state)
{
    (void)state;
    json_t *d = generate(7, 40, true);
    flow_error err;
    char *want = flow__graph_svg(d, NULL, &err);
    bool done = false;
    size_t failures = 0;

    assert_non_null(want);
    for (size_t n = 1; !done && n < 100000; n++) {
        flow__error_clear(&err);
        flow__alloc_fail_at(n);
        char *svg = flow__graph_svg(d, NULL, &err);
        size_t used = flow__alloc_fail_at(0);

        if (svg) {
            assert_true(used < n);
            assert_string_equal(svg, want);
            flow__free(svg);
            done = true;
        } else {
            assert_int_equal(err.code, FLOW_ENOMEM);
            assert_non_null(strstr(err.message, "out of memory"));
            failures++;
        }
    }
    assert_true(done);
    assert_true(failures > 20);
    flow__free(want);
    json_decref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_deps),
        cmocka_unit_test(test_golden_router_left_right),
        cmocka_unit_test(test_golden_names),
        cmocka_unit_test(test_generated_graphs),
        cmocka_unit_test(test_5000_tasks),
        cmocka_unit_test(test_past_the_dummy_budget),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_cut_names),
        cmocka_unit_test(test_options_and_classes),
        cmocka_unit_test(test_bad_descriptions),
        cmocka_unit_test(test_odd_values),
        cmocka_unit_test(test_layout_json),
        cmocka_unit_test(test_alloc_failure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
