/* layout.c -- places the nodes and routes the edges of a flow's graph in
 * layers (Sugiyama's method); layout_graph.c reads the graph, svg.c draws it.
 *
 * DESIGN. Four steps, all in integers so that the output is the same byte for
 * byte on every machine and compiler:
 * 1. Cycles (loops through labels, connections or fallbacks) are broken by a
 *    depth-first search from the start tasks, in the description's order: an
 *    edge that closes a cycle is laid out reversed, and drawn upwards.
 * 2. Layers: the longest path from the roots, where an edge with a text is two
 *    layers long so that its text gets a place of its own on the layer between;
 *    then a root moves down to just above its nearest successor.
 * 3. An edge longer than one layer gets a dummy vertex on each layer it
 *    crosses, so that edges go around nodes, not through them. Barycentre
 *    sweeps down and up order each layer; the order with the fewest crossings
 *    (counted with a Fenwick tree) wins.
 * 4. Along each layer, a few sweeps move every vertex towards the weighted mean
 *    of its neighbours (links between dummies weigh most, so long edges run
 *    straight), to the nearest positions that keep the order and the gaps: an
 *    isotonic regression, by pooling adjacent violators.
 * Layers stand apart by a fixed gap, more where edges travel far along them
 * (a wide fan), and edges are cubic curves from a port on a node's side
 * through their dummies to a port on the other node. Coordinates are computed
 * along a layer (`a`) and across the layers (`b`); top to bottom, a is x and b
 * is y, left to right the other way round. */
#include "util/compat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "def/layout.h"
#include "util/alloc.h"
#include "util/error.h"

#define MARGIN 16
#define RANK_GAP_TB 44 /* between layers, top to bottom */
#define RANK_GAP_LR 64 /* left to right: edges run along the gap */
#define GAP_NODES_TB 28 /* between two nodes of a layer */
#define GAP_NODES_LR 18
#define GAP_TEXT 14     /* between a text and a node or a text */
#define GAP_DUMMY 10    /* next to an edge going through */
#define LOOP_R 26       /* how far a loop reaches out of its node */
#define LOOP_STEP 14    /* each further loop of a node */
#define PORT_STEP 12    /* between the ends of edges on a node's side */
#define ORDER_SWEEPS 24
#define PLACE_SWEEPS 8
/* Dummies at most: an edge that would pass the budget is drawn straight
 * between its nodes instead (a pathological graph, not a flow one writes). */
#define DUMMY_BUDGET(n) (50000 + 10 * (n))

struct vtx {
    int layer;
    int order; /* index in its layer */
    int pos;   /* centre along the layer */
    int lo;    /* extent along the layer before pos */
    int hi;    /* and after pos, room for loops included */
    int size_a; /* the box along the layer */
    int size_b; /* and across */
    bool text; /* a dummy that holds its edge's text */
};

/* Between a vertex on layer i and one on layer i + 1. */
struct link {
    size_t top;
    size_t bottom;
    int weight;
};

struct lay {
    struct flow__layout *l;
    bool lr;
    size_t n;      /* nodes: vertices 0 .. n - 1; dummies follow */
    struct vtx *v;
    size_t vcount;
    size_t *chain;       /* per edge, its vertices in layer order */
    size_t *chain_first; /* edge e: chain[chain_first[e] .. + chain_len[e]) */
    size_t *chain_len;   /* 0: a loop */
    struct link *links;
    size_t link_count;
    size_t *up_off; /* links above vertex u: up[up_off[u] .. up_off[u + 1]) */
    size_t *up;
    size_t *down_off;
    size_t *down;
    size_t layers;
    size_t *layer_off; /* vertices of layer i, in order: layer_v[layer_off[i] .. ) */
    size_t *layer_v;
    int *band_top; /* per layer: where it starts across the layers */
    int *band_size; /* and how thick it is */
    int shift_a; /* added to positions along the layers, so that they start at the margin */
    int *port_out; /* per edge: offset of its ends from their node's middle */
    int *port_in;
};

static bool is_dummy(const struct lay *L, size_t u)
{
    return u >= L->n;
}

/* Where an edge starts and ends in layer order (against the flow's direction
 * when it closes a cycle). */
static size_t dag_from(const struct flow__ledge *e)
{
    return e->back ? e->to : e->from;
}

static size_t dag_to(const struct flow__ledge *e)
{
    return e->back ? e->from : e->to;
}

/* An edge with a text spans two layers: its text sits on the one between. */
static int edge_len(const struct flow__ledge *e)
{
    return e->text ? 2 : 1;
}

static int floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;

    return (int)(q * b > a ? q - 1 : q);
}

/* The edges leaving each node, loops left out: adj[off[u] .. off[u + 1]),
 * in edge order; with `dag`, in layer order (dag_from), else as the flow has
 * them. */
struct out_edges {
    size_t *off;
    size_t *adj;
    size_t *indeg; /* edges coming in, per node */
};

static void out_edges_cleanup(struct out_edges *g)
{
    flow__free(g->indeg);
    flow__free(g->adj);
    flow__free(g->off);
    memset(g, 0, sizeof(*g));
}

static flow_err out_edges_init(struct out_edges *g, const struct flow__layout *l, bool dag)
{
    size_t n = l->node_count;
    size_t *fill = flow__calloc(n ? n : 1, sizeof(size_t));
    size_t i;

    g->off = flow__calloc(n + 1, sizeof(size_t));
    g->adj = flow__calloc(l->edge_count ? l->edge_count : 1, sizeof(size_t));
    g->indeg = flow__calloc(n ? n : 1, sizeof(size_t));
    if (!fill || !g->off || !g->adj || !g->indeg) {
        flow__free(fill);
        out_edges_cleanup(g);
        return FLOW_ENOMEM;
    }
    for (i = 0; i < l->edge_count; i++) {
        const struct flow__ledge *e = &l->edges[i];

        if (e->from != e->to) {
            g->off[(dag ? dag_from(e) : e->from) + 1]++;
            g->indeg[dag ? dag_to(e) : e->to]++;
        }
    }
    for (i = 0; i < n; i++) {
        g->off[i + 1] += g->off[i];
        fill[i] = g->off[i];
    }
    for (i = 0; i < l->edge_count; i++) {
        const struct flow__ledge *e = &l->edges[i];

        if (e->from != e->to) {
            g->adj[fill[dag ? dag_from(e) : e->from]++] = i;
        }
    }
    flow__free(fill);
    return FLOW_OK;
}

/* ------------------------------------------------------------------------ */
/* 1. Cycles                                                                 */

static flow_err break_cycles(struct flow__layout *l)
{
    size_t n = l->node_count;
    size_t *next = flow__calloc(n ? n : 1, sizeof(size_t));
    size_t *stack = flow__calloc(n ? n : 1, sizeof(size_t));
    unsigned char *state = flow__calloc(n ? n : 1, 1); /* 0 new, 1 on the path, 2 done */
    struct out_edges g;
    flow_err rc = out_edges_init(&g, l, false);

    if (rc != FLOW_OK || !next || !stack || !state) {
        rc = FLOW_ENOMEM;
        goto out;
    }
    /* Start tasks first, then roots, then whatever a cycle left unreached. */
    for (int pass = 0; pass < 3; pass++) {
        for (size_t s = 0; s < n; s++) {
            bool take = pass == 2 || (pass == 1 && g.indeg[s] == 0) ||
                        (l->nodes[s].task && json_is_true(json_object_get(l->nodes[s].task, "start")));
            size_t sp = 0;

            if (state[s] || !take) {
                continue;
            }
            stack[sp++] = s;
            state[s] = 1;
            next[s] = g.off[s];
            while (sp) {
                size_t u = stack[sp - 1];

                if (next[u] == g.off[u + 1]) {
                    state[u] = 2;
                    sp--;
                    continue;
                }
                struct flow__ledge *e = &l->edges[g.adj[next[u]++]];
                if (state[e->to] == 1) {
                    e->back = true;
                } else if (state[e->to] == 0) {
                    state[e->to] = 1;
                    next[e->to] = g.off[e->to];
                    stack[sp++] = e->to;
                }
            }
        }
    }
out:
    out_edges_cleanup(&g);
    flow__free(state);
    flow__free(stack);
    flow__free(next);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* 2. Layers                                                                 */

static flow_err assign_layers(struct flow__layout *l)
{
    size_t n = l->node_count;
    size_t *queue = flow__calloc(n ? n : 1, sizeof(size_t));
    struct out_edges g;
    size_t head = 0;
    size_t tail = 0;
    size_t i;
    int top = 0;

    if (!queue || out_edges_init(&g, l, true) != FLOW_OK) {
        flow__free(queue);
        return FLOW_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        l->nodes[i].layer = 0;
        if (g.indeg[i] == 0) {
            queue[tail++] = i;
        }
    }
    size_t roots = tail;
    while (head < tail) {
        size_t u = queue[head++];

        for (size_t k = g.off[u]; k < g.off[u + 1]; k++) {
            const struct flow__ledge *e = &l->edges[g.adj[k]];
            size_t w = dag_to(e);
            int at = l->nodes[u].layer + edge_len(e);

            l->nodes[w].layer = at > l->nodes[w].layer ? at : l->nodes[w].layer;
            if (--g.indeg[w] == 0) {
                queue[tail++] = w;
            }
        }
    }
    /* A root sits right above its nearest successor rather than on top of
     * everything (a second start task, a label no router names). */
    for (i = 0; i < roots; i++) {
        size_t u = queue[i];
        int best = -1;

        for (size_t k = g.off[u]; k < g.off[u + 1]; k++) {
            const struct flow__ledge *e = &l->edges[g.adj[k]];
            int at = l->nodes[dag_to(e)].layer - edge_len(e);

            best = best < 0 || at < best ? at : best;
        }
        if (best > 0) {
            l->nodes[u].layer = best;
        }
    }
    for (i = 0; i < n; i++) {
        top = l->nodes[i].layer > top ? l->nodes[i].layer : top;
    }
    l->layer_count = n ? (size_t)top + 1 : 0;
    out_edges_cleanup(&g);
    flow__free(queue);
    return FLOW_OK;
}

/* ------------------------------------------------------------------------ */
/* 3. Vertices, links and the order in each layer                           */

static void set_size(struct vtx *x, bool lr, int w, int h)
{
    x->size_a = lr ? h : w;
    x->size_b = lr ? w : h;
    x->lo = x->size_a / 2;
    x->hi = x->size_a - x->lo;
}

/* How far `count` loops reach out of their node (a cubic's bulge is three
 * quarters of its control points' distance), and a little air. */
static int loop_reach(int count)
{
    return count ? 3 * (LOOP_R + (count - 1) * LOOP_STEP) / 4 + 6 : 0;
}

/* The room a node's loops take beyond its far side along the layer: their
 * reach, then their texts one after the other. */
static void loop_room(const struct lay *L, int *room)
{
    const struct flow__layout *l = L->l;
    int *count = room; /* counts first, then turned into room in place */
    size_t i;

    for (i = 0; i < l->edge_count; i++) {
        const struct flow__ledge *e = &l->edges[i];

        if (e->from == e->to) {
            count[e->from]++;
        }
    }
    for (i = 0; i < L->n; i++) {
        room[i] = loop_reach(count[i]);
    }
    for (i = 0; i < l->edge_count; i++) {
        const struct flow__ledge *e = &l->edges[i];

        if (e->from == e->to && e->text) {
            room[e->from] += (L->lr ? e->lh : e->lw) + 4;
        }
    }
}

static flow_err make_vertices(struct lay *L)
{
    struct flow__layout *l = L->l;
    size_t m = l->edge_count;
    size_t budget = DUMMY_BUDGET(L->n);
    size_t dummies = 0;
    size_t entries = 0;
    size_t i;
    int *room;

    L->chain_first = flow__calloc(m ? m : 1, sizeof(size_t));
    L->chain_len = flow__calloc(m ? m : 1, sizeof(size_t));
    room = flow__calloc(L->n ? L->n : 1, sizeof(int));
    if (!L->chain_first || !L->chain_len || !room) {
        flow__free(room);
        return FLOW_ENOMEM;
    }
    for (i = 0; i < m; i++) {
        const struct flow__ledge *e = &l->edges[i];
        size_t span = (size_t)(l->nodes[dag_to(e)].layer - l->nodes[dag_from(e)].layer);

        if (e->from == e->to) {
            continue;
        }
        L->chain_first[i] = entries;
        L->chain_len[i] = 2;
        if (span > 1 && dummies + span - 1 <= budget) {
            dummies += span - 1;
            L->chain_len[i] = span + 1;
        }
        entries += L->chain_len[i];
    }
    L->vcount = L->n + dummies;
    L->v = flow__calloc(L->vcount ? L->vcount : 1, sizeof(*L->v));
    L->chain = flow__calloc(entries ? entries : 1, sizeof(size_t));
    if (!L->v || !L->chain) {
        flow__free(room);
        return FLOW_ENOMEM;
    }
    loop_room(L, room);
    for (i = 0; i < L->n; i++) {
        struct vtx *x = &L->v[i];

        set_size(x, L->lr, l->nodes[i].w, l->nodes[i].h);
        x->hi += room[i];
        x->layer = l->nodes[i].layer;
    }
    flow__free(room);
    size_t next = L->n;
    for (i = 0; i < m; i++) {
        const struct flow__ledge *e = &l->edges[i];
        size_t *c = L->chain + L->chain_first[i];
        size_t len = L->chain_len[i];

        if (!len) {
            continue;
        }
        c[0] = dag_from(e);
        c[len - 1] = dag_to(e);
        for (size_t k = 1; k + 1 < len; k++) {
            struct vtx *x = &L->v[next];

            x->layer = l->nodes[c[0]].layer + (int)k;
            x->text = e->text && k == (len - 1) / 2;
            if (x->text) {
                set_size(x, L->lr, e->lw, e->lh);
            } else {
                set_size(x, L->lr, 2, 0);
            }
            c[k] = next++;
        }
    }
    return FLOW_OK;
}

static flow_err make_links(struct lay *L)
{
    const struct flow__layout *l = L->l;
    size_t count = 0;
    size_t i;

    for (i = 0; i < l->edge_count; i++) {
        size_t len = L->chain_len[i];
        const size_t *c = L->chain + L->chain_first[i];

        if (len && L->v[c[len - 1]].layer - L->v[c[0]].layer == (int)len - 1) {
            count += len - 1;
        }
    }
    L->links = flow__calloc(count ? count : 1, sizeof(*L->links));
    L->up_off = flow__calloc(L->vcount + 1, sizeof(size_t));
    L->down_off = flow__calloc(L->vcount + 1, sizeof(size_t));
    L->up = flow__calloc(count ? count : 1, sizeof(size_t));
    L->down = flow__calloc(count ? count : 1, sizeof(size_t));
    if (!L->links || !L->up_off || !L->down_off || !L->up || !L->down) {
        return FLOW_ENOMEM;
    }
    for (i = 0; i < l->edge_count; i++) {
        size_t len = L->chain_len[i];
        const size_t *c = L->chain + L->chain_first[i];

        if (!len || L->v[c[len - 1]].layer - L->v[c[0]].layer != (int)len - 1) {
            continue; /* a loop, or drawn straight past the dummy budget */
        }
        for (size_t k = 0; k + 1 < len; k++) {
            struct link *lk = &L->links[L->link_count++];
            int dummies = is_dummy(L, c[k]) + is_dummy(L, c[k + 1]);

            lk->top = c[k];
            lk->bottom = c[k + 1];
            lk->weight = dummies == 2 ? 8 : dummies == 1 ? 2 : 1;
            L->up_off[c[k + 1] + 1]++;
            L->down_off[c[k] + 1]++;
        }
    }
    for (i = 0; i < L->vcount; i++) {
        L->up_off[i + 1] += L->up_off[i];
        L->down_off[i + 1] += L->down_off[i];
    }
    size_t *up_fill = flow__calloc(L->vcount ? L->vcount : 1, sizeof(size_t));
    size_t *down_fill = flow__calloc(L->vcount ? L->vcount : 1, sizeof(size_t));
    if (!up_fill || !down_fill) {
        flow__free(up_fill);
        flow__free(down_fill);
        return FLOW_ENOMEM;
    }
    for (i = 0; i < L->link_count; i++) {
        size_t b = L->links[i].bottom;
        size_t t = L->links[i].top;

        L->up[L->up_off[b] + up_fill[b]++] = i;
        L->down[L->down_off[t] + down_fill[t]++] = i;
    }
    flow__free(up_fill);
    flow__free(down_fill);
    return FLOW_OK;
}

static flow_err make_layers(struct lay *L)
{
    size_t i;

    L->layers = L->l->layer_count;
    L->layer_off = flow__calloc(L->layers + 1, sizeof(size_t));
    L->layer_v = flow__calloc(L->vcount ? L->vcount : 1, sizeof(size_t));
    if (!L->layer_off || !L->layer_v) {
        return FLOW_ENOMEM;
    }
    for (i = 0; i < L->vcount; i++) {
        L->layer_off[L->v[i].layer + 1]++;
    }
    for (i = 0; i < L->layers; i++) {
        L->layer_off[i + 1] += L->layer_off[i];
    }
    /* The first order: nodes as the description has them, dummies as their
     * edges come. */
    size_t *fill = flow__calloc(L->layers ? L->layers : 1, sizeof(size_t));
    if (!fill) {
        return FLOW_ENOMEM;
    }
    for (i = 0; i < L->vcount; i++) {
        int layer = L->v[i].layer;

        L->v[i].order = (int)fill[layer];
        L->layer_v[L->layer_off[layer] + fill[layer]++] = i;
    }
    flow__free(fill);
    return FLOW_OK;
}

/* Something to sort (a vertex in its layer, an end on its node's side): by
 * key, then by order, so that ties keep the order they had. */
struct keyed {
    int64_t key;
    int order;
    size_t v;
};

static int cmp_keyed(const void *pa, const void *pb)
{
    const struct keyed *a = pa;
    const struct keyed *b = pb;

    if (a->key != b->key) {
        return a->key < b->key ? -1 : 1;
    }
    return a->order < b->order ? -1 : a->order > b->order;
}

/* Sort a layer by the barycentre of each vertex's neighbours on the layer
 * above (`from_above`) or below; one without keeps its place. */
static void order_layer(struct lay *L, size_t layer, bool from_above, struct keyed *tmp)
{
    size_t first = L->layer_off[layer];
    size_t count = L->layer_off[layer + 1] - first;
    size_t i;

    for (i = 0; i < count; i++) {
        size_t u = L->layer_v[first + i];
        const size_t *off = from_above ? L->up_off : L->down_off;
        const size_t *idx = from_above ? L->up : L->down;
        int64_t sum = 0;
        int64_t n = 0;

        for (size_t k = off[u]; k < off[u + 1]; k++) {
            const struct link *lk = &L->links[idx[k]];

            sum += L->v[from_above ? lk->top : lk->bottom].order;
            n++;
        }
        tmp[i].key = n ? sum * 1024 / n : (int64_t)L->v[u].order * 1024;
        tmp[i].order = L->v[u].order;
        tmp[i].v = u;
    }
    qsort(tmp, count, sizeof(*tmp), cmp_keyed);
    for (i = 0; i < count; i++) {
        L->layer_v[first + i] = tmp[i].v;
        L->v[tmp[i].v].order = (int)i;
    }
}

/* Links that cross, layer pair by layer pair: for each link in the order of
 * its top, those before it whose bottom lies further along (Fenwick tree
 * `bit`, one slot per vertex of the lower layer). */
static uint64_t crossings(const struct lay *L, uint32_t *bit)
{
    uint64_t total = 0;

    for (size_t layer = 0; layer + 1 < L->layers; layer++) {
        size_t below = L->layer_off[layer + 2] - L->layer_off[layer + 1];
        uint64_t seen = 0;

        memset(bit, 0, (below + 1) * sizeof(*bit));
        for (size_t i = L->layer_off[layer]; i < L->layer_off[layer + 1]; i++) {
            size_t u = L->layer_v[i];
            size_t k;

            for (k = L->down_off[u]; k < L->down_off[u + 1]; k++) {
                uint64_t not_after = 0;

                for (size_t j = (size_t)L->v[L->links[L->down[k]].bottom].order + 1; j;
                     j -= j & -j) {
                    not_after += bit[j];
                }
                total += seen - not_after;
            }
            for (k = L->down_off[u]; k < L->down_off[u + 1]; k++) {
                for (size_t j = (size_t)L->v[L->links[L->down[k]].bottom].order + 1; j <= below;
                     j += j & -j) {
                    bit[j]++;
                }
                seen++;
            }
        }
    }
    return total;
}

static flow_err order_layers(struct lay *L)
{
    size_t widest = 0;
    size_t i;
    flow_err rc = FLOW_ENOMEM;

    for (i = 0; i < L->layers; i++) {
        size_t w = L->layer_off[i + 1] - L->layer_off[i];

        widest = w > widest ? w : widest;
    }
    struct keyed *tmp = flow__calloc(widest ? widest : 1, sizeof(*tmp));
    uint32_t *bit = flow__calloc(widest + 1, sizeof(*bit));
    int *best = flow__calloc(L->vcount ? L->vcount : 1, sizeof(int));
    if (!tmp || !bit || !best) {
        goto out;
    }
    uint64_t least = crossings(L, bit);
    int stale = 0;
    for (i = 0; i < L->vcount; i++) {
        best[i] = L->v[i].order;
    }
    for (int sweep = 0; sweep < ORDER_SWEEPS && least > 0 && stale < 4; sweep++) {
        if (sweep % 2 == 0) {
            for (size_t layer = 1; layer < L->layers; layer++) {
                order_layer(L, layer, true, tmp);
            }
        } else {
            for (size_t layer = L->layers - 1; layer-- > 0;) {
                order_layer(L, layer, false, tmp);
            }
        }
        uint64_t c = crossings(L, bit);
        if (c < least) {
            least = c;
            stale = 0;
            for (i = 0; i < L->vcount; i++) {
                best[i] = L->v[i].order;
            }
        } else {
            stale++;
        }
    }
    for (i = 0; i < L->vcount; i++) {
        L->v[i].order = best[i];
        L->layer_v[L->layer_off[L->v[i].layer] + (size_t)best[i]] = i;
    }
    rc = FLOW_OK;
out:
    flow__free(best);
    flow__free(bit);
    flow__free(tmp);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* 4. Positions along the layers                                            */

/* The space between two neighbours of a layer: nodes want air, an edge going
 * through needs little. */
static int gap(const struct lay *L, size_t u, size_t w)
{
    bool nodes = !is_dummy(L, u) && !is_dummy(L, w);
    bool boxes = (!is_dummy(L, u) || L->v[u].text) && (!is_dummy(L, w) || L->v[w].text);

    if (nodes) {
        return L->lr ? GAP_NODES_LR : GAP_NODES_TB;
    }
    return boxes ? GAP_TEXT : GAP_DUMMY;
}

/* The distance between the centres of neighbours `u` and `w`. */
static int sep(const struct lay *L, size_t u, size_t w)
{
    return L->v[u].hi + L->v[w].lo + gap(L, u, w);
}

/* Each layer packed tight, centred on 0. */
static void pack_layers(struct lay *L)
{
    for (size_t layer = 0; layer < L->layers; layer++) {
        size_t first = L->layer_off[layer];
        size_t end = L->layer_off[layer + 1];
        int at = 0;

        for (size_t i = first; i < end; i++) {
            at += i > first ? sep(L, L->layer_v[i - 1], L->layer_v[i]) : 0;
            L->v[L->layer_v[i]].pos = at;
        }
        if (end > first) {
            const struct vtx *a = &L->v[L->layer_v[first]];
            const struct vtx *b = &L->v[L->layer_v[end - 1]];
            int mid = floor_div((int64_t)(a->pos - a->lo) + (b->pos + b->hi), 2);

            for (size_t i = first; i < end; i++) {
                L->v[L->layer_v[i]].pos -= mid;
            }
        }
    }
}

/* A run of neighbours that settled at one offset. */
struct pool {
    int64_t weight;
    int64_t sum; /* of weight x wanted offset */
    size_t first;
};

enum { SIDE_ABOVE = 1, SIDE_BELOW = 2 };

/* Move the vertices of a layer towards the weighted mean of their neighbours
 * on `side`, as close as the order and the gaps allow: with off_i the packed
 * offset of vertex i, pos_i - off_i must not decrease along the layer, and
 * pooling adjacent violators gives the least-squares solution. */
static void place_layer(struct lay *L, size_t layer, int side, struct pool *pools, int *off)
{
    size_t first = L->layer_off[layer];
    size_t count = L->layer_off[layer + 1] - first;
    size_t np = 0;
    size_t i;

    for (i = 0; i < count; i++) {
        size_t u = L->layer_v[first + i];
        int64_t sum = 0;
        int64_t weight = 0;
        size_t k;

        off[i] = i ? off[i - 1] + sep(L, L->layer_v[first + i - 1], u) : 0;
        if (side & SIDE_ABOVE) {
            for (k = L->up_off[u]; k < L->up_off[u + 1]; k++) {
                const struct link *lk = &L->links[L->up[k]];

                sum += (int64_t)lk->weight * L->v[lk->top].pos;
                weight += lk->weight;
            }
        }
        if (side & SIDE_BELOW) {
            for (k = L->down_off[u]; k < L->down_off[u + 1]; k++) {
                const struct link *lk = &L->links[L->down[k]];

                sum += (int64_t)lk->weight * L->v[lk->bottom].pos;
                weight += lk->weight;
            }
        }
        int want = weight ? floor_div(sum, weight) : L->v[u].pos;
        weight = weight ? weight : 1;
        pools[np].weight = weight;
        pools[np].sum = weight * (want - off[i]);
        pools[np].first = i;
        np++;
        while (np > 1 && floor_div(pools[np - 2].sum, pools[np - 2].weight) >
                             floor_div(pools[np - 1].sum, pools[np - 1].weight)) {
            pools[np - 2].weight += pools[np - 1].weight;
            pools[np - 2].sum += pools[np - 1].sum;
            np--;
        }
    }
    for (size_t p = 0; p < np; p++) {
        int at = floor_div(pools[p].sum, pools[p].weight);
        size_t end = p + 1 < np ? pools[p + 1].first : count;

        for (i = pools[p].first; i < end; i++) {
            L->v[L->layer_v[first + i]].pos = at + off[i];
        }
    }
}

static flow_err place(struct lay *L)
{
    size_t widest = 0;
    size_t i;

    for (i = 0; i < L->layers; i++) {
        size_t w = L->layer_off[i + 1] - L->layer_off[i];

        widest = w > widest ? w : widest;
    }
    struct pool *pools = flow__calloc(widest ? widest : 1, sizeof(*pools));
    int *off = flow__calloc(widest ? widest : 1, sizeof(int));
    if (!pools || !off) {
        flow__free(pools);
        flow__free(off);
        return FLOW_ENOMEM;
    }
    pack_layers(L);
    for (int sweep = 0; sweep < PLACE_SWEEPS + 2; sweep++) {
        /* down and up, then twice both ways, so that no direction has the
         * last word */
        int above = sweep < PLACE_SWEEPS ? SIDE_ABOVE : SIDE_ABOVE | SIDE_BELOW;
        int below = sweep < PLACE_SWEEPS ? SIDE_BELOW : SIDE_ABOVE | SIDE_BELOW;

        for (size_t layer = 1; layer < L->layers; layer++) {
            place_layer(L, layer, above, pools, off);
        }
        for (size_t layer = L->layers; layer-- > 0;) {
            place_layer(L, layer, below, pools, off);
        }
    }
    flow__free(off);
    flow__free(pools);
    return FLOW_OK;
}

/* ------------------------------------------------------------------------ */
/* 5. Across the layers; ports; paths                                       */

/* The space after each layer: wider where edges must travel far along the
 * layers (a wide fan), so that they fan out instead of running flat. */
static void layer_gaps(const struct lay *L, int *gaps)
{
    int base = L->lr ? RANK_GAP_LR : RANK_GAP_TB;
    size_t i;

    for (i = 0; i < L->layers; i++) {
        gaps[i] = base;
    }
    for (i = 0; i < L->link_count; i++) {
        const struct link *lk = &L->links[i];
        int d = L->v[lk->top].pos - L->v[lk->bottom].pos;
        int want = (d < 0 ? -d : d) / 6;
        int layer = L->v[lk->top].layer;

        want = want > 3 * base ? 3 * base : want;
        gaps[layer] = want > gaps[layer] ? want : gaps[layer];
    }
}

static flow_err make_bands(struct lay *L, int *total)
{
    int *gaps = flow__calloc(L->layers ? L->layers : 1, sizeof(int));
    int b = 0;
    int gap_b = 0;

    L->band_top = flow__calloc(L->layers ? L->layers : 1, sizeof(int));
    L->band_size = flow__calloc(L->layers ? L->layers : 1, sizeof(int));
    if (!gaps || !L->band_top || !L->band_size) {
        flow__free(gaps);
        return FLOW_ENOMEM;
    }
    layer_gaps(L, gaps);
    for (size_t layer = 0; layer < L->layers; layer++) {
        int thick = 0;

        for (size_t i = L->layer_off[layer]; i < L->layer_off[layer + 1]; i++) {
            int sb = L->v[L->layer_v[i]].size_b;

            thick = sb > thick ? sb : thick;
        }
        if (L->layer_off[layer + 1] > L->layer_off[layer]) {
            b += gap_b;
            gap_b = gaps[layer];
        }
        L->band_top[layer] = b;
        L->band_size[layer] = thick;
        b += thick;
    }
    *total = b;
    flow__free(gaps);
    return FLOW_OK;
}

/* Where vertex `u`'s box starts across the layers: centred in its band, its
 * middle (box_b + size_b / 2) the band's whatever its size. */
static int box_b(const struct lay *L, size_t u)
{
    const struct vtx *x = &L->v[u];

    return L->band_top[x->layer] + L->band_size[x->layer] / 2 - x->size_b / 2;
}

/* The ends of a node's edges spread along its side, in the order of where
 * they go, so that they leave and arrive side by side without crossing. */
static flow_err make_ports(struct lay *L)
{
    size_t m = L->l->edge_count;
    struct keyed *ends = flow__calloc(m ? m : 1, sizeof(*ends));

    L->port_out = flow__calloc(m ? m : 1, sizeof(int));
    L->port_in = flow__calloc(m ? m : 1, sizeof(int));
    if (!ends || !L->port_out || !L->port_in) {
        flow__free(ends);
        return FLOW_ENOMEM;
    }
    for (int out = 0; out < 2; out++) {
        size_t count = 0;
        int *port = out ? L->port_out : L->port_in;

        for (size_t e = 0; e < m; e++) {
            const size_t *c = L->chain + L->chain_first[e];
            size_t len = L->chain_len[e];

            if (len) {
                /* by node, then by where the edge goes; ties in edge order */
                size_t node = out ? c[0] : c[len - 1];
                int64_t toward = L->v[out ? c[1] : c[len - 2]].pos;

                ends[count].key = (int64_t)node * ((int64_t)1 << 32) + toward + INT32_MAX;
                ends[count].order = (int)e;
                ends[count].v = e;
                count++;
            }
        }
        qsort(ends, count, sizeof(*ends), cmp_keyed);
        for (size_t i = 0; i < count;) {
            const size_t *c = L->chain + L->chain_first[ends[i].v];
            size_t node = out ? c[0] : c[L->chain_len[ends[i].v] - 1];
            int size = L->v[node].size_a;
            int margin = size / 4 < 12 ? size / 4 : 12;
            size_t j = i;
            int k;
            int step;

            while (j < count && ends[j].key >> 32 == ends[i].key >> 32) {
                j++;
            }
            k = (int)(j - i);
            step = k > 1 ? (size - 2 * margin) / (k - 1) : 0;
            step = step > PORT_STEP ? PORT_STEP : step;
            for (int q = 0; q < k; q++) {
                port[ends[i + (size_t)q].v] = (2 * q - (k - 1)) * step / 2;
            }
            i = j;
        }
    }
    flow__free(ends);
    return FLOW_OK;
}

static void seg_at(struct flow__lseg *s, char op, int a0, int b0, int a1, int b1, int a2, int b2)
{
    s->op = op;
    s->p[0] = a0;
    s->p[1] = b0;
    s->p[2] = a1;
    s->p[3] = b1;
    s->p[4] = a2;
    s->p[5] = b2;
}

/* A curve from (a0, b0) to (a1, b1) that leaves and arrives across the layers. */
static void curve(struct flow__lseg *s, int a0, int b0, int a1, int b1)
{
    int half = (b1 - b0) / 2;

    seg_at(s, 'C', a0, b0 + half, a1, b1 - half, a1, b1);
}

/* Edge `e`'s path in layer order and (a, b) coordinates; returns the pieces. */
static size_t trace(const struct lay *L, size_t e, struct flow__lseg *out)
{
    const size_t *c = L->chain + L->chain_first[e];
    size_t len = L->chain_len[e];
    const struct vtx *u = &L->v[c[0]];
    int a = u->pos + L->port_out[e];
    int b = box_b(L, c[0]) + u->size_b;
    size_t n = 0;

    seg_at(&out[n++], 'M', a, b, 0, 0, 0, 0);
    for (size_t k = 1; k < len; k++) {
        const struct vtx *w = &L->v[c[k]];

        if (k + 1 < len) {
            int top = L->band_top[w->layer];
            int bottom = top + L->band_size[w->layer];

            curve(&out[n++], a, b, w->pos, top);
            if (bottom > top) {
                seg_at(&out[n++], 'L', w->pos, bottom, 0, 0, 0, 0);
            }
            a = w->pos;
            b = bottom;
        } else {
            curve(&out[n++], a, b, w->pos + L->port_in[e], box_b(L, c[k]));
        }
    }
    return n;
}

static void xy(const struct lay *L, int a, int b, int *x, int *y)
{
    *x = L->lr ? b + MARGIN : a + L->shift_a;
    *y = L->lr ? a + L->shift_a : b + MARGIN;
}

static void end_of(const struct flow__lseg *s, int *a, int *b)
{
    int k = s->op == 'C' ? 4 : 0;

    *a = s->p[k];
    *b = s->p[k + 1];
}

/* Copy pieces into the layout in x, y; backwards for an edge that closes a
 * cycle, so that every path runs from the edge's `from` to its `to`. */
static void emit_path(struct lay *L, struct flow__ledge *e, const struct flow__lseg *p, size_t n)
{
    struct flow__lseg *out = L->l->segs + L->l->seg_count;
    size_t i;
    int a;
    int b;

    e->seg_first = L->l->seg_count;
    e->seg_count = n;
    L->l->seg_count += n;
    if (!e->back) {
        memcpy(out, p, n * sizeof(*p));
    } else {
        end_of(&p[n - 1], &a, &b);
        seg_at(&out[0], 'M', a, b, 0, 0, 0, 0);
        for (i = 1; i < n; i++) {
            const struct flow__lseg *s = &p[n - i];

            end_of(&p[n - i - 1], &a, &b);
            if (s->op == 'C') {
                seg_at(&out[i], 'C', s->p[2], s->p[3], s->p[0], s->p[1], a, b);
            } else {
                seg_at(&out[i], 'L', a, b, 0, 0, 0, 0);
            }
        }
    }
    for (i = 0; i < n; i++) {
        int points = out[i].op == 'C' ? 3 : 1;

        for (int k = 0; k < points; k++) {
            xy(L, out[i].p[2 * k], out[i].p[2 * k + 1], &out[i].p[2 * k], &out[i].p[2 * k + 1]);
        }
    }
}

/* A text's box in x, y around its centre (a, b). */
static void text_box(const struct lay *L, struct flow__ledge *e, int a, int b)
{
    int x;
    int y;

    xy(L, a, b, &x, &y);
    e->lx = x - e->lw / 2;
    e->ly = y - e->lh / 2;
}

/* Loops reach out of their node's far side along the layer, one inside the
 * other; their texts line up beyond the outermost. */
static void trace_loops(struct lay *L, size_t node, struct flow__lseg *tmp)
{
    const struct flow__layout *l = L->l;
    const struct vtx *u = &L->v[node];
    int side = u->pos + (u->size_a - u->size_a / 2);
    int mid = box_b(L, node) + u->size_b / 2;
    int count = 0;
    int k = 0;
    size_t i;

    for (i = 0; i < l->edge_count; i++) {
        count += l->edges[i].from == node && l->edges[i].to == node;
    }
    int text_at = side + loop_reach(count);
    for (i = 0; i < l->edge_count && k < count; i++) {
        struct flow__ledge *e = &l->edges[i];
        int r = LOOP_R + k * LOOP_STEP;
        int h = 5 + 3 * k; /* where it leaves and comes back, from the middle */

        if (e->from != node || e->to != node) {
            continue;
        }
        seg_at(&tmp[0], 'M', side, mid - h, 0, 0, 0, 0);
        seg_at(&tmp[1], 'C', side + r, mid - h - r / 2, side + r, mid + h + r / 2, side, mid + h);
        emit_path(L, e, tmp, 2);
        if (e->text) {
            int along = L->lr ? e->lh : e->lw;

            text_box(L, e, text_at + along / 2, mid);
            text_at += along + 4;
        }
        k++;
    }
}

static flow_err route(struct lay *L)
{
    struct flow__layout *l = L->l;
    size_t most = 2;
    size_t total = 0;
    size_t i;

    for (i = 0; i < l->edge_count; i++) {
        size_t n = L->chain_len[i] ? 2 * L->chain_len[i] : 2;

        total += n;
        most = n > most ? n : most;
    }
    l->segs = flow__calloc(total ? total : 1, sizeof(*l->segs));
    struct flow__lseg *tmp = flow__calloc(most, sizeof(*tmp));
    if (!l->segs || !tmp) {
        flow__free(tmp);
        return FLOW_ENOMEM;
    }
    for (i = 0; i < l->edge_count; i++) {
        struct flow__ledge *e = &l->edges[i];
        const size_t *c = L->chain + L->chain_first[i];
        size_t len = L->chain_len[i];

        if (!len) {
            continue;
        }
        emit_path(L, e, tmp, trace(L, i, tmp));
        if (!e->text) {
            continue;
        }
        for (size_t k = 1; k + 1 < len; k++) {
            if (L->v[c[k]].text) {
                text_box(L, e, L->v[c[k]].pos, box_b(L, c[k]) + L->v[c[k]].size_b / 2);
            }
        }
        if (len == 2) {
            /* no layer for the text (past the dummy budget): no room that is
             * sure to be free, so the text is only the path's <title> */
            e->lw = 0;
            e->lh = 0;
        }
    }
    for (i = 0; i < L->n; i++) {
        if (L->v[i].hi > L->v[i].size_a - L->v[i].lo) {
            trace_loops(L, i, tmp);
        }
    }
    flow__free(tmp);
    return FLOW_OK;
}

/* Shift everything to start at the margin; the boxes of the nodes. */
static void finish(struct lay *L, int total_b)
{
    struct flow__layout *l = L->l;
    int lo = 0;
    int hi = 0;
    size_t i;

    for (i = 0; i < L->vcount; i++) {
        const struct vtx *x = &L->v[i];

        lo = i == 0 || x->pos - x->lo < lo ? x->pos - x->lo : lo;
        hi = i == 0 || x->pos + x->hi > hi ? x->pos + x->hi : hi;
    }
    L->shift_a = MARGIN - lo;
    for (i = 0; i < L->n; i++) {
        const struct vtx *x = &L->v[i];
        struct flow__lnode *nd = &l->nodes[i];

        xy(L, x->pos - x->lo, box_b(L, i), &nd->x, &nd->y);
    }
    int size_a = hi - lo + 2 * MARGIN;
    int size_b = total_b + 2 * MARGIN;
    l->width = L->lr ? size_b : size_a;
    l->height = L->lr ? size_a : size_b;
}

static void lay_cleanup(struct lay *L)
{
    flow__free(L->port_in);
    flow__free(L->port_out);
    flow__free(L->band_size);
    flow__free(L->band_top);
    flow__free(L->layer_v);
    flow__free(L->layer_off);
    flow__free(L->down);
    flow__free(L->down_off);
    flow__free(L->up);
    flow__free(L->up_off);
    flow__free(L->links);
    flow__free(L->chain_len);
    flow__free(L->chain_first);
    flow__free(L->chain);
    flow__free(L->v);
}

struct flow__layout *flow__layout_new(const json_t *describe, const flow_graph_options *opts,
                                      flow_error *err)
{
    struct flow__layout *l = flow__calloc(1, sizeof(*l));
    struct lay L;
    int total_b = 0;
    flow_err rc;

    if (!l) {
        flow__error(err, FLOW_ENOMEM, "cannot lay out the graph: out of memory");
        return NULL;
    }
    l->left_right = opts && opts->left_right;
    if (flow__layout_graph(l, describe, opts, err) != FLOW_OK) {
        flow__layout_free(l);
        return NULL;
    }
    memset(&L, 0, sizeof(L));
    L.l = l;
    L.lr = l->left_right;
    L.n = l->node_count;
    rc = break_cycles(l);
    rc = rc ? rc : assign_layers(l);
    rc = rc ? rc : make_vertices(&L);
    rc = rc ? rc : make_links(&L);
    rc = rc ? rc : make_layers(&L);
    rc = rc ? rc : order_layers(&L);
    rc = rc ? rc : place(&L);
    rc = rc ? rc : make_bands(&L, &total_b);
    rc = rc ? rc : make_ports(&L);
    if (rc == FLOW_OK) {
        finish(&L, total_b);
        rc = route(&L);
    }
    lay_cleanup(&L);
    if (rc != FLOW_OK) {
        flow__error(err, rc, "cannot lay out the graph: %s", flow_strerror(rc));
        flow__layout_free(l);
        return NULL;
    }
    return l;
}

void flow__layout_free(struct flow__layout *l)
{
    size_t i;

    if (!l) {
        return;
    }
    for (i = 0; i < l->node_count; i++) {
        flow__free(l->nodes[i].text);
        flow__free(l->nodes[i].note);
    }
    for (i = 0; i < l->edge_count; i++) {
        flow__free(l->edges[i].text);
        flow__free(l->edges[i].shown);
    }
    flow__free(l->nodes);
    flow__free(l->edges);
    flow__free(l->segs);
    flow__free(l);
}
