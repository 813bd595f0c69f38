/* load_refs.c -- a template that reads `tasks.X.output` in task T works only
 * if X can have completed before T runs: X must be upstream of T. Without
 * that, T fails or not depending on which task happens to finish first --
 * the kind of bug that passes every test and fails in production -- so the
 * loader reports it, once the whole graph is known.
 *
 * Upstream of T: the tasks its `after`, `after_any`, `optional` and `when`
 * name, the task a fallback stands in for, the source of a `connect` to it,
 * and, recursively, theirs. A task that can start from elsewhere -- `start:
 * false` (a next_task or parallel target), `on:` an event, `when` naming a
 * label -- may run after anything: its reads are not checked, nor those of
 * the tasks after it. */
#include "util/compat.h"

#include <string.h>

#include "def/load_int.h"
#include "util/alloc.h"

/* How many steps the searches of one file may take in all: past it, the
 * remaining reads go unchecked rather than make a huge file slow. */
#define SEARCH_BUDGET 20000000u

struct graph {
    uint32_t n;
    uint32_t *off;    /* n + 1 offsets into pred */
    uint32_t *pred;   /* predecessors of each task */
    uint8_t *free;    /* may start from elsewhere: not checked */
    uint32_t *seen;   /* search stamps */
    uint32_t *queue;
    uint32_t stamp;
    size_t budget;
};

static bool cond_has_label(const struct flow_cond *c)
{
    if (!c)
        return false;
    if (c->kind == COND_LABEL)
        return true;
    for (size_t i = 0; i < c->count; i++) {
        if (cond_has_label(c->kids[i]))
            return true;
    }
    return false;
}

/* Count (pred NULL) or fill in the tasks a `when` tree names. */
static void cond_deps(struct flow *f, uint32_t task, const struct flow_cond *c, uint32_t *count,
                      uint32_t *pred, uint32_t *fill)
{
    if (!c)
        return;
    if (c->kind == COND_TASK) {
        const flow_task *dep = flow_find_task(f, c->name);
        if (dep) {
            if (pred)
                pred[fill[task]++] = dep->index;
            else
                count[task]++;
        }
        return;
    }
    for (size_t i = 0; i < c->count; i++)
        cond_deps(f, task, c->kids[i], count, pred, fill);
}

/* Two passes over the same edges: count, then fill. */
static void edges(struct flow *f, uint32_t *count, uint32_t *pred, uint32_t *fill)
{
#define EDGE(to, from)                                                                             \
    do {                                                                                           \
        if (pred)                                                                                  \
            pred[fill[to]++] = (from);                                                             \
        else                                                                                       \
            count[to]++;                                                                           \
    } while (0)
    for (size_t i = 0; i < f->edges.count; i++)
        EDGE(f->edges.items[i].task, f->edges.items[i].dep);
    for (size_t i = 0; i < f->tasks.count; i++) {
        const struct flow_task *t = f->tasks.items[i];
        if (flow__task_fallback(t))
            EDGE(flow__task_fallback(t)->index, (uint32_t)i);
        if (t->ext && t->ext->when)
            cond_deps(f, (uint32_t)i, t->ext->when, count, pred, fill);
    }
    for (size_t i = 0; i < f->connections.count; i++) {
        const struct flow_connection *cn = &f->connections.items[i];
        const flow_task *from = flow_find_task(f, cn->from_name);
        const flow_task *to = flow_find_task(f, cn->to_name);
        if (from && to)
            EDGE(to->index, from->index);
    }
#undef EDGE
}

static bool graph_build(struct graph *g, struct flow *f, const struct loader *L)
{
    g->n = (uint32_t)f->tasks.count;
    g->off = flow__calloc(g->n + 1, sizeof(*g->off));
    g->free = flow__calloc(g->n ? g->n : 1, 1);
    g->seen = flow__calloc(g->n ? g->n : 1, sizeof(*g->seen));
    g->queue = flow__calloc(g->n ? g->n : 1, sizeof(*g->queue));
    uint32_t *fill = flow__calloc(g->n ? g->n : 1, sizeof(*fill));
    if (!g->off || !g->free || !g->seen || !g->queue || !fill) {
        flow__free(fill);
        return false;
    }
    edges(f, g->off + 1, NULL, NULL);
    for (uint32_t i = 0; i < g->n; i++) {
        g->off[i + 1] += g->off[i];
        fill[i] = g->off[i];
    }
    g->pred = flow__calloc(g->off[g->n] ? g->off[g->n] : 1, sizeof(*g->pred));
    if (!g->pred) {
        flow__free(fill);
        return false;
    }
    edges(f, NULL, g->pred, fill);
    flow__free(fill);
    for (uint32_t i = 0; i < g->n; i++) {
        const struct flow_task *t = f->tasks.items[i];
        g->free[i] = t->start == 0 || (t->ext && (t->ext->on.count || cond_has_label(t->ext->when)));
    }
    /* A task written with an error may lack some of its dependencies: what
     * precedes it is not known, as for one that can start from elsewhere. */
    for (size_t i = 0; i < L->broken_tasks.count; i++) {
        const flow_task *t = flow_find_task(f, L->broken_tasks.items[i]);
        if (t)
            g->free[t->index] = 1;
    }
    g->budget = SEARCH_BUDGET;
    return true;
}

static void graph_free(struct graph *g)
{
    flow__free(g->off);
    flow__free(g->pred);
    flow__free(g->free);
    flow__free(g->seen);
    flow__free(g->queue);
}

/* Is `dep` upstream of `task`? 1 also when the search meets a task that can
 * start from elsewhere (what precedes it is not known); -1 when the budget
 * ran out. */
static int upstream(struct graph *g, uint32_t task, uint32_t dep)
{
    for (uint32_t k = g->off[task]; k < g->off[task + 1]; k++) {
        if (g->pred[k] == dep)
            return 1; /* the common case: a direct dependency */
    }
    g->stamp++;
    size_t head = 0, tail = 0;
    g->queue[tail++] = task;
    g->seen[task] = g->stamp;
    while (head < tail) {
        uint32_t at = g->queue[head++];
        for (uint32_t k = g->off[at]; k < g->off[at + 1]; k++) {
            if (!g->budget--)
                return -1;
            uint32_t p = g->pred[k];
            if (p == dep || g->free[p])
                return 1;
            if (g->seen[p] != g->stamp) {
                g->seen[p] = g->stamp;
                g->queue[tail++] = p;
            }
        }
    }
    return 0;
}

void flow__ld_check_output_refs(struct loader *L)
{
    if (!L->f || !L->output_refs.count)
        return;
    struct graph g = {0};
    if (!graph_build(&g, L->f, L)) {
        graph_free(&g);
        L->nomem = true;
        return;
    }
    for (size_t i = 0; i < L->output_refs.count; i++) {
        const struct output_ref *ref = &L->output_refs.items[i];
        const flow_task *t = flow_find_task(L->f, ref->task);
        const flow_task *dep = flow_find_task(L->f, ref->dep);
        if (!t || !dep || g.free[t->index])
            continue;
        int up = upstream(&g, t->index, dep->index);
        if (up < 0)
            break;
        if (!up)
            flow__ld_report(L, ref->pos,
                            "'{{ %s }}' in %s: task '%s' never completes before '%s' runs (it is "
                            "not upstream of it; add 'after: %s')",
                            ref->text, ref->what, ref->dep, ref->task, ref->dep);
    }
    graph_free(&g);
}

void flow__ld_output_refs_free(struct loader *L)
{
    for (size_t i = 0; i < L->output_refs.count; i++) {
        flow__free(L->output_refs.items[i].dep);
        flow__free(L->output_refs.items[i].text);
        flow__free(L->output_refs.items[i].what);
    }
    FLOW__VEC_FREE(&L->output_refs);
    FLOW__VEC_FREE(&L->broken_tasks);
}
