/* graph.c -- compiles a flow's triggers into leaves, dependants and
 * expressions, checks it (names, cycles, start tasks) and describes it as
 * JSON. See docs/internals/core.md, "Triggers". */
#include "util/compat.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "def/flowdef.h"
#include "def/prompts.h"
#include "util/alloc.h"
#include "util/error.h"

void flow__graph_reset(struct flow *f);

void flow__graph_reset(struct flow *f)
{
    flow__free(f->leaves);
    flow__free(f->dependant_off);
    flow__free(f->dependant_leaf);
    flow__free(f->expr);
    flow__free(f->expr_root);
    f->leaves = NULL;
    f->dependant_off = NULL;
    f->dependant_leaf = NULL;
    f->expr = NULL;
    f->expr_root = NULL;
    f->leaf_count = 0;
    f->has_optional = false;
    f->expr_count = 0;
    for (size_t i = 0; i < f->labels.count; i++) {
        FLOW__VEC_FREE(&f->labels.items[i].subscribers);
        FLOW__VEC_FREE(&f->labels.items[i].leaves);
    }
    FLOW__VEC_FREE(&f->labels);
    flow__strmap_cleanup(&f->label_by_name);
    FLOW__VEC_FREE(&f->start_tasks);
    FLOW__VEC_FREE(&f->end_tasks);
    f->compiled = false;
}

int flow__label_index(const struct flow *f, const char *name)
{
    uintptr_t v = (uintptr_t)flow__strmap_get(&f->label_by_name, name);
    return v ? (int)(v - 1) : -1;
}

/* The label's index, adding it when new; -1 on allocation failure. */
static int label_intern(struct flow *f, const char *name)
{
    int i = flow__label_index(f, name);
    if (i >= 0 || f->labels.count >= FLOW__MAX_TASKS)
        return i;
    struct label_info li = {0};
    li.name = flow__arena_strdup(&f->arena, name);
    if (!li.name)
        return -1;
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&f->labels, li, rc);
    if (rc)
        return -1;
    if (flow__strmap_put(&f->label_by_name, li.name, (void *)(uintptr_t)f->labels.count)) {
        f->labels.count--;
        return -1;
    }
    return (int)f->labels.count - 1;
}

struct compiler {
    struct flow *f;
    flow_diags *diags;
    flow_error first;
    int errors;
    FLOW__VEC(struct flow_leaf) leaves;
    FLOW__VEC(struct expr_node) expr;
    uint32_t *seen_and; /* per dependency: owner index + 1 of the last leaf made */
    uint32_t *seen_any;
    /* Per task, what other tasks say of it (a task list of 100,000 is
     * megabytes: one pass over it gathers what later passes need). */
    uint8_t *mark;
    FLOW__VEC(uint32_t) subscribing; /* tasks with `on:` labels */
    FLOW__VEC(uint32_t) targets;     /* fallback and connection targets */
    bool nomem;
};

enum task_mark {
    MARK_NOT_START = 1, /* a fallback or connection target */
    MARK_NAMED = 2      /* named by another task's fallback or connection */
};

static void report(struct compiler *c, const struct flow_task *t, flow_err code,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void report(struct compiler *c, const struct flow_task *t, flow_err code,
                   const char *fmt, ...)
{
    flow_error e;
    va_list ap;
    va_start(ap, fmt);
    flow__verror(&e, code, fmt, ap);
    va_end(ap);
    if (t && t->ext && t->ext->origin_file) {
        char where[300];
        flow__task_where(t, where, sizeof(where));
        size_t n = strlen(e.message);
        snprintf(e.message + n, sizeof(e.message) - n, "%s", where);
        snprintf(e.file, sizeof(e.file), "%s", t->ext->origin_file);
        e.line = t->ext->origin_line;
        e.column = t->ext->origin_column;
    }
    flow__diags_add(c->diags, &e, FLOW_SEV_ERROR);
    if (c->errors++ == 0)
        c->first = e;
}

static uint32_t add_leaf(struct compiler *c, uint32_t owner, uint32_t source, int kind)
{
    struct flow_leaf l = {.owner = owner, .source = source, .kind = (uint8_t)kind};
    if (kind == LEAF_OPTIONAL)
        c->f->has_optional = true;
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&c->leaves, l, rc);
    if (rc)
        c->nomem = true;
    return (uint32_t)c->leaves.count - 1;
}

static uint32_t add_node(struct compiler *c, uint8_t op, uint32_t leaf, uint32_t count)
{
    struct expr_node n = {.op = op, .leaf = leaf, .first = 0, .count = count};
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&c->expr, n, rc);
    if (rc)
        c->nomem = true;
    return (uint32_t)c->expr.count - 1;
}

/* Children of a node must be contiguous: reserve their slots first, then
 * fill them (a child's own children go after). */
static uint32_t reserve_nodes(struct compiler *c, uint32_t count)
{
    uint32_t first = (uint32_t)c->expr.count;
    for (uint32_t i = 0; i < count; i++)
        add_node(c, 0, 0, 0);
    return first;
}

/* Compile a `when` tree into node `slot`. */
static void compile_cond(struct compiler *c, struct flow_task *t, const struct flow_cond *cond,
                         uint32_t slot)
{
    if (c->nomem)
        return;
    if (cond->kind == COND_TASK || cond->kind == COND_LABEL) {
        uint32_t leaf;
        if (cond->kind == COND_TASK) {
            struct flow_task *src = flow_find_task(c->f, cond->name);
            if (!src) {
                report(c, t, FLOW_EVALIDATION, "unknown task '%s' in 'when' of task '%s'",
                       cond->name, t->name);
                src = t; /* keep compiling to find more errors */
            }
            leaf = add_leaf(c, t->index, src->index, LEAF_WHEN_TASK);
        } else {
            int li = label_intern(c->f, cond->name);
            if (li < 0) {
                c->nomem = true;
                return;
            }
            leaf = add_leaf(c, t->index, (uint32_t)li, LEAF_WHEN_LABEL);
        }
        if (c->nomem)
            return;
        c->expr.items[slot].op = 0;
        c->expr.items[slot].leaf = leaf;
        return;
    }
    if (cond->count == 0) {
        report(c, t, FLOW_EVALIDATION, "empty '%s' in 'when' of task '%s'",
               cond->kind == COND_AND ? "and" : "or", t->name);
    }
    uint32_t first = reserve_nodes(c, (uint32_t)cond->count);
    if (c->nomem)
        return;
    c->expr.items[slot].op = cond->kind == COND_AND ? 1 : 2;
    c->expr.items[slot].first = first;
    c->expr.items[slot].count = (uint32_t)cond->count;
    for (size_t i = 0; i < cond->count; i++)
        compile_cond(c, t, cond->kids[i], first + (uint32_t)i);
}

/* Leaves and expression of one task; `edges` are this task's edges. */
static void compile_task(struct compiler *c, struct flow_task *t, const struct flow_edge *edges,
                         size_t nedges)
{
    struct flow *f = c->f;
    size_t n_and = 0, n_any = 0;
    t->leaf_first = (uint32_t)c->leaves.count;
    /* Flat leaves first, in declaration order: AND (after, optional), then any. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < nedges; i++) {
            const struct flow_edge *e = &edges[i];
            bool is_any = e->kind == EDGE_AFTER_ANY;
            if (is_any != (pass == 1))
                continue;
            /* A dependency named twice is one leaf: stamps per dep. */
            uint32_t *stamp = is_any ? &c->seen_any[e->dep] : &c->seen_and[e->dep];
            if (*stamp == t->index + 1)
                continue;
            *stamp = t->index + 1;
            int kind = e->kind == EDGE_AFTER      ? LEAF_AFTER
                       : e->kind == EDGE_OPTIONAL ? LEAF_OPTIONAL
                                                  : LEAF_ANY;
            add_leaf(c, t->index, e->dep, kind);
            if (is_any)
                n_any++;
            else
                n_and++;
        }
    }
    const struct flow_cond *when = t->ext ? t->ext->when : NULL;
    if (!when && n_any == 0) {
        t->trig = n_and ? TRIG_AND : TRIG_NONE;
    } else if (!when && n_and == 0) {
        t->trig = TRIG_ANY;
    } else {
        t->trig = TRIG_EXPR;
        /* root = AND(and-leaves..., OR(any-leaves...)?, when?) */
        uint32_t kids = (uint32_t)n_and + (n_any ? 1 : 0) + (when ? 1 : 0);
        uint32_t root = add_node(c, 1, 0, kids);
        uint32_t first = reserve_nodes(c, kids);
        if (c->nomem)
            return;
        c->expr.items[root].first = first;
        uint32_t k = first;
        for (uint32_t i = 0; i < n_and; i++, k++) {
            c->expr.items[k].op = 0;
            c->expr.items[k].leaf = t->leaf_first + i;
        }
        if (n_any) {
            uint32_t or_first = reserve_nodes(c, (uint32_t)n_any);
            if (c->nomem)
                return;
            c->expr.items[k].op = 2;
            c->expr.items[k].first = or_first;
            c->expr.items[k].count = (uint32_t)n_any;
            for (uint32_t i = 0; i < n_any; i++) {
                c->expr.items[or_first + i].op = 0;
                c->expr.items[or_first + i].leaf = t->leaf_first + (uint32_t)n_and + i;
            }
            k++;
        }
        if (when)
            compile_cond(c, t, when, k);
        if (!f->expr_root) { /* most flows have no expression: no table */
            size_t n = f->tasks.count;
            f->expr_root = flow__reallocarray(NULL, n, sizeof(*f->expr_root));
            if (!f->expr_root) {
                c->nomem = true;
                return;
            }
            memset(f->expr_root, 0xff, n * sizeof(*f->expr_root)); /* UINT32_MAX */
        }
        f->expr_root[t->index] = root;
    }
    t->leaf_count = (uint32_t)c->leaves.count - t->leaf_first;
}

/* Kahn's algorithm over task-to-task leaves; whatever is left is in or
 * behind a cycle. Name one cycle by walking predecessors among the rest. */
static void check_cycles(struct compiler *c)
{
    struct flow *f = c->f;
    size_t n = f->tasks.count;
    /* When every dependency was added before its dependant (programs that
     * build graphs in topological order, which is most of them), task order
     * is a topological order and there can be no cycle. */
    bool forward = true;
    for (uint32_t i = 0; i < f->leaf_count && forward; i++) {
        const struct flow_leaf *l = &f->leaves[i];
        forward = l->kind == LEAF_WHEN_LABEL || l->source < l->owner;
    }
    if (forward)
        return;
    uint32_t *indeg = flow__calloc(n ? n : 1, sizeof(*indeg));
    uint32_t *queue = flow__calloc(n ? n : 1, sizeof(*queue));
    if (!indeg || !queue) {
        c->nomem = true;
        goto out;
    }
    for (uint32_t i = 0; i < f->leaf_count; i++) {
        if (f->leaves[i].kind != LEAF_WHEN_LABEL)
            indeg[f->leaves[i].owner]++;
    }
    size_t head = 0, tail = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!indeg[i])
            queue[tail++] = i;
    }
    while (head < tail) {
        uint32_t v = queue[head++];
        for (uint32_t k = f->dependant_off[v]; k < f->dependant_off[v + 1]; k++) {
            uint32_t owner = f->leaves[f->dependant_leaf[k]].owner;
            if (--indeg[owner] == 0)
                queue[tail++] = owner;
        }
    }
    if (tail == n)
        goto out;
    /* Start anywhere left and follow a predecessor that is also left; within
     * n steps we are inside a cycle. Mark visits to find where it closes. */
    uint32_t v = 0;
    while (indeg[v] == 0)
        v++;
    for (size_t step = 0; step < n; step++) {
        struct flow_task *t = f->tasks.items[v];
        for (uint32_t i = 0; i < t->leaf_count; i++) {
            const struct flow_leaf *l = &f->leaves[t->leaf_first + i];
            if (l->kind != LEAF_WHEN_LABEL && indeg[l->source]) {
                v = l->source;
                break;
            }
        }
    }
    /* v is on a cycle: list it in dependency order. */
    char names[400] = "";
    size_t used = 0;
    uint32_t start = v;
    uint32_t *path = queue; /* reuse */
    size_t len = 0;
    do {
        path[len++] = v;
        struct flow_task *t = f->tasks.items[v];
        for (uint32_t i = 0; i < t->leaf_count; i++) {
            const struct flow_leaf *l = &f->leaves[t->leaf_first + i];
            if (l->kind != LEAF_WHEN_LABEL && indeg[l->source]) {
                v = l->source;
                break;
            }
        }
    } while (v != start && len < n);
    for (size_t i = len; i-- > 0;) {
        int w = snprintf(names + used, sizeof(names) - used, "%s -> ",
                         f->tasks.items[path[i]]->name);
        if (w < 0 || (size_t)w >= sizeof(names) - used) {
            used = sizeof(names) - 1;
            break;
        }
        used += (size_t)w;
    }
    snprintf(names + used, sizeof(names) - used, "%s", f->tasks.items[path[len - 1]]->name);
    report(c, f->tasks.items[path[len - 1]], FLOW_EVALIDATION,
           "cycle through after/after_any/when/optional: %s (such tasks could never run; "
           "use a router label for a loop)",
           names);
out:
    flow__free(indeg);
    flow__free(queue);
}

/* The tasks whose outputs make the result (flowdef.h, end_tasks): the run's
 * result must not depend on which task happened to finish last. A router's
 * output is a label for others, so a router is an end task only when no
 * other task is one. */
static flow_err find_end_tasks(struct compiler *c)
{
    struct flow *f = c->f;
    size_t n = f->tasks.count;
    uint8_t *mark = c->mark;
    for (uint32_t i = 0; i < f->leaf_count; i++) {
        const struct flow_leaf *l = &f->leaves[i];
        if (l->kind != LEAF_WHEN_LABEL && l->source != l->owner)
            mark[l->source] |= MARK_NAMED;
    }
    flow_err rc = FLOW_OK;
    for (int routers = 0; routers < 2 && !f->end_tasks.count && !rc; routers++) {
        for (size_t i = 0; i < n && !rc; i++) {
            if (!(mark[i] & MARK_NAMED) && f->tasks.items[i]->router == (routers == 1))
                FLOW__VEC_PUSH(&f->end_tasks, (uint32_t)i, rc);
        }
    }
    return rc;
}

static flow_err compile(struct flow *f, flow_diags *diags, flow_error *err)
{
    struct compiler c = {.f = f, .diags = diags};
    f->compiling = true; /* a nested flow that reaches us again is a cycle */
    flow__graph_reset(f);
    size_t n = f->tasks.count;

    /* Group the edges by task with a counting sort. */
    uint32_t *edge_off = flow__calloc(n + 1, sizeof(*edge_off));
    struct flow_edge *sorted = flow__calloc(f->edges.count ? f->edges.count : 1, sizeof(*sorted));
    c.seen_and = flow__calloc(n ? n : 1, sizeof(*c.seen_and));
    c.seen_any = flow__calloc(n ? n : 1, sizeof(*c.seen_any));
    c.mark = flow__calloc(n ? n : 1, sizeof(*c.mark));
    flow_err vrc = FLOW_OK;
    FLOW__VEC_RESERVE(&c.leaves, f->edges.count, vrc); /* one leaf per edge, mostly */
    if (vrc || !edge_off || !sorted || !c.seen_and || !c.seen_any || !c.mark)
        goto out_nomem;
    for (size_t i = 0; i < f->edges.count; i++)
        edge_off[f->edges.items[i].task + 1]++;
    for (size_t i = 0; i < n; i++)
        edge_off[i + 1] += edge_off[i];
    for (size_t i = 0; i < f->edges.count; i++) {
        const struct flow_edge *e = &f->edges.items[i];
        sorted[edge_off[e->task]++] = *e;
    }
    for (size_t i = n; i > 0; i--)
        edge_off[i] = edge_off[i - 1];
    edge_off[0] = 0;

    bool any_entry = false;
    f->has_routers = false;
    f->has_subflows = false;
    for (size_t i = 0; i < n && !c.nomem; i++) {
        struct flow_task *t = f->tasks.items[i];
        compile_task(&c, t, sorted + edge_off[i], edge_off[i + 1] - edge_off[i]);
        flow_err prc = FLOW_OK;
        const struct flow_task *fb = flow__task_fallback(t);
        if (fb) {
            c.mark[fb->index] |= fb != t ? MARK_NOT_START | MARK_NAMED : MARK_NOT_START;
            FLOW__VEC_PUSH(&c.targets, fb->index, prc);
        }
        if (t->ext && t->ext->on.count)
            FLOW__VEC_PUSH(&c.subscribing, (uint32_t)i, prc);
        /* A start task, unless a later task or a connection names it as a
         * target (fixed below): the targets are few, the tasks many. */
        t->is_fallback_target = false;
        bool triggered = t->leaf_count || (t->ext && t->ext->on.count);
        t->is_start = t->start == 1 || (t->start == -1 && !triggered);
        if (t->is_start)
            FLOW__VEC_PUSH(&f->start_tasks, (uint32_t)i, prc);
        c.nomem |= prc != FLOW_OK;
        any_entry |= t->entry;
        f->has_routers |= t->router;
        f->has_subflows |= t->kind == TASK_SUBFLOW;
        if (t->policy->on_error == FLOW_ON_ERROR_FALLBACK && !flow__task_fallback(t))
            report(&c, t, FLOW_EVALIDATION, "task '%s' has on_error fallback but no fallback task",
                   t->name);
        if (flow__task_fallback(t) == t)
            report(&c, t, FLOW_EVALIDATION, "task '%s' cannot be its own fallback", t->name);
        if (t->kind == TASK_FN && !t->fn && !(t->ext && t->ext->remote_fn))
            report(&c, t, FLOW_EVALIDATION, "task '%s' has no function", t->name);
        if (t->kind != TASK_COMMAND && t->kind != TASK_SHELL &&
            t->policy->executor == FLOW_EXEC_PROCESS)
            report(&c, t, FLOW_EVALIDATION,
                   "task '%s': executor 'process' runs commands only (use 'thread' or "
                   "'inline' for a C function)",
                   t->name);
        if ((t->kind == TASK_HTTP || t->kind == TASK_LLM) &&
            (t->policy->executor == FLOW_EXEC_INLINE || t->policy->executor == FLOW_EXEC_REMOTE))
            report(&c, t, FLOW_EVALIDATION,
                   "task '%s': %s task runs on the engine's threads (executor 'thread', the "
                   "default), not '%s'",
                   t->name, t->kind == TASK_HTTP ? "an 'http'" : "an 'llm'",
                   t->policy->executor == FLOW_EXEC_INLINE ? "inline" : "remote");
        bool remote = t->policy->executor == FLOW_EXEC_REMOTE;
        const char *rfn = t->ext ? t->ext->remote_fn : NULL;
        if (rfn && !remote)
            report(&c, t, FLOW_EVALIDATION,
                   "task '%s': 'fn: %s' is a function served by workers: it needs "
                   "'executor: remote'",
                   t->name, rfn);
        if (remote && t->kind == TASK_FN && !rfn)
            report(&c, t, FLOW_EVALIDATION,
                   "task '%s': executor 'remote' runs a C function only by name ('fn: NAME', "
                   "flow_task_set_remote_fn)",
                   t->name);
        if (remote && t->kind != TASK_FN && t->kind != TASK_COMMAND && t->kind != TASK_SHELL &&
            t->kind != TASK_HTTP && t->kind != TASK_LLM && !(t->ext && t->ext->foreach))
            report(&c, t, FLOW_EVALIDATION,
                   "task '%s': executor 'remote' runs commands and 'fn' functions only", t->name);
        if (t->ext && t->ext->cache && (t->kind == TASK_NOOP || t->kind == TASK_FEEDBACK))
            report(&c, t, FLOW_EVALIDATION,
                   "task '%s': 'cache' needs a body that computes the output (%s)", t->name,
                   t->kind == TASK_NOOP ? "a no-op has nothing to keep"
                                        : "a feedback question asks a person each time");
        if (t->ext && t->ext->queue && !remote)
            report(&c, t, FLOW_EVALIDATION,
                   "task '%s': 'queue: %s' needs 'executor: remote'", t->name, t->ext->queue);
        if (f->secrets.count) { /* a flow without any: a run-time error ("no secret") */
            char *why = flow__secrets_check_task(f, t);
            if (why)
                report(&c, t, FLOW_EVALIDATION, "%s", why);
            flow__free(why);
        }
        if (t->kind == TASK_SUBFLOW) {
            struct flow *child = t->ext->subflow;
            if (child->compiling) {
                report(&c, t, FLOW_EVALIDATION,
                       "nested flow cycle: task '%s' runs flow '%s', which contains it", t->name,
                       child->name);
            } else {
                flow_error cerr;
                flow_err crc = flow_validate(child, NULL, &cerr);
                if (crc == FLOW_ENOMEM)
                    c.nomem = true;
                else if (crc != FLOW_OK)
                    report(&c, t, FLOW_EVALIDATION, "nested flow '%s' of task '%s': %s",
                           child->name, t->name, cerr.message);
            }
        }
    }
    char *why = f->secrets.count ? flow__secrets_check_flow(f) : NULL;
    if (why)
        report(&c, NULL, FLOW_EVALIDATION, "%s", why);
    flow__free(why);
    /* The scratch of the pass goes before what is kept is made: it is the
     * size of the whole graph. */
    flow__free(edge_off);
    flow__free(sorted);
    flow__free(c.seen_and);
    flow__free(c.seen_any);
    edge_off = NULL;
    sorted = NULL;
    c.seen_and = c.seen_any = NULL;
    if (c.nomem)
        goto out_nomem;
    /* Compiled once per definition and kept as long as it: exact sizes. */
    FLOW__VEC_SHRINK(&c.leaves);
    FLOW__VEC_SHRINK(&f->edges);
    FLOW__VEC_SHRINK(&f->tasks);
    f->leaves = c.leaves.items;
    f->leaf_count = (uint32_t)c.leaves.count;
    c.leaves.items = NULL;
    f->expr = c.expr.items;
    f->expr_count = (uint32_t)c.expr.count;
    c.expr.items = NULL;

    /* Dependants: CSR from each source task to the leaves it feeds. */
    f->dependant_off = flow__calloc(n + 1, sizeof(*f->dependant_off));
    f->dependant_leaf = flow__calloc(f->leaf_count ? f->leaf_count : 1,
                                     sizeof(*f->dependant_leaf));
    if (!f->dependant_off || !f->dependant_leaf)
        goto out_nomem;
    for (uint32_t i = 0; i < f->leaf_count; i++) {
        if (f->leaves[i].kind != LEAF_WHEN_LABEL)
            f->dependant_off[f->leaves[i].source + 1]++;
    }
    for (size_t i = 0; i < n; i++)
        f->dependant_off[i + 1] += f->dependant_off[i];
    for (uint32_t i = 0; i < f->leaf_count; i++) {
        const struct flow_leaf *l = &f->leaves[i];
        if (l->kind != LEAF_WHEN_LABEL)
            f->dependant_leaf[f->dependant_off[l->source]++] = i;
    }
    for (size_t i = n; i > 0; i--)
        f->dependant_off[i] = f->dependant_off[i - 1];
    f->dependant_off[0] = 0;

    /* Label subscribers and label leaves. */
    flow_err rc = FLOW_OK;
    for (uint32_t i = 0; i < f->leaf_count && !rc; i++) {
        if (f->leaves[i].kind == LEAF_WHEN_LABEL)
            FLOW__VEC_PUSH(&f->labels.items[f->leaves[i].source].leaves, i, rc);
    }
    for (size_t s = 0; s < c.subscribing.count && !rc; s++) {
        uint32_t i = c.subscribing.items[s];
        struct flow_task *t = f->tasks.items[i];
        for (size_t k = 0; k < t->ext->on.count && !rc; k++) {
            int li = label_intern(f, t->ext->on.items[k]);
            if (li < 0)
                goto out_nomem;
            FLOW__VEC_PUSH(&f->labels.items[li].subscribers, i, rc);
        }
    }
    if (rc)
        goto out_nomem;

    /* Connections: resolve names; a target is not a start task. */
    for (size_t i = 0; i < f->connections.count; i++) {
        struct flow_connection *cn = &f->connections.items[i];
        const struct flow_task *from = flow_find_task(f, cn->from_name);
        const struct flow_task *to = flow_find_task(f, cn->to_name);
        if (!from)
            report(&c, NULL, FLOW_EVALIDATION, "unknown task '%s' in connect %s.%s -> %s",
                   cn->from_name, cn->from_name, cn->event, cn->to_name);
        if (!to)
            report(&c, NULL, FLOW_EVALIDATION, "unknown task '%s' in connect %s.%s -> %s",
                   cn->to_name, cn->from_name, cn->event, cn->to_name);
        cn->from = from ? from->index : 0;
        cn->to = to ? to->index : 0;
        if (to) {
            c.mark[to->index] |= MARK_NOT_START;
            FLOW__VEC_PUSH(&c.targets, to->index, rc);
        }
        if (from && to && from != to)
            c.mark[from->index] |= MARK_NAMED;
    }
    /* A target starts only when asked for (start: true aside). */
    bool unstarted = false;
    for (size_t k = 0; k < c.targets.count; k++) {
        struct flow_task *t = f->tasks.items[c.targets.items[k]];
        t->is_fallback_target = true;
        if (t->start == -1 && t->is_start) {
            t->is_start = false;
            unstarted = true;
        }
    }
    if (unstarted) {
        size_t kept = 0;
        for (size_t k = 0; k < f->start_tasks.count; k++) {
            if (f->tasks.items[f->start_tasks.items[k]]->is_start)
                f->start_tasks.items[kept++] = f->start_tasks.items[k];
        }
        f->start_tasks.count = kept;
    }
    if (rc || find_end_tasks(&c) != FLOW_OK)
        goto out_nomem;
    if (n == 0)
        report(&c, NULL, FLOW_EVALIDATION, "flow '%s' has no tasks", f->name);
    else if (f->start_tasks.count == 0 && !any_entry)
        report(&c, NULL, FLOW_EVALIDATION,
               "flow '%s' has no start task: every task waits for another "
               "(give one 'start: true', or remove its trigger)",
               f->name);

    check_cycles(&c);
    if (c.nomem)
        goto out_nomem;
    flow__free(edge_off);
    flow__free(sorted);
    flow__free(c.seen_and);
    flow__free(c.seen_any);
    flow__free(c.mark);
    FLOW__VEC_FREE(&c.subscribing);
    FLOW__VEC_FREE(&c.targets);
    f->compiling = false;
    if (c.errors) {
        if (err)
            *err = c.first;
        flow__graph_reset(f);
        return FLOW_EVALIDATION;
    }
    f->compiled = true;
    f->dirty = false;
    return FLOW_OK;

out_nomem:
    f->compiling = false;
    FLOW__VEC_FREE(&c.leaves);
    FLOW__VEC_FREE(&c.expr);
    flow__free(c.seen_and);
    flow__free(c.seen_any);
    flow__free(c.mark);
    FLOW__VEC_FREE(&c.subscribing);
    FLOW__VEC_FREE(&c.targets);
    flow__free(edge_off);
    flow__free(sorted);
    flow__graph_reset(f);
    return flow__error(err, FLOW_ENOMEM, "out of memory validating flow '%s'", f->name);
}

/* Flows are compiled, and frozen for their first run, under one lock for
 * the whole process: a flow may be started by several engines at once, and
 * their own locks do not order one engine's accesses against another's.
 * Recursive: validating a flow validates its nested flows. */
static pthread_mutex_t defs_lock;
static pthread_once_t defs_once = PTHREAD_ONCE_INIT;

static void defs_init(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&defs_lock, &a);
    pthread_mutexattr_destroy(&a);
}

static void defs_enter(void)
{
    pthread_once(&defs_once, defs_init);
    pthread_mutex_lock(&defs_lock);
}

/* [defs_lock] */
static flow_err validate(struct flow *f, flow_diags *diags, flow_error *err)
{
    if (f->compiled && !f->dirty)
        return FLOW_OK;
    if (f->frozen)
        return flow__error(err, FLOW_ESTATE, "flow '%s' changed while running", f->name);
    return compile(f, diags, err);
}

flow_err flow_validate(flow *f, flow_diags *diags, flow_error *err)
{
    defs_enter();
    flow_err rc = validate(f, diags, err);
    pthread_mutex_unlock(&defs_lock);
    return rc;
}

/* [defs_lock] A valid flow has no nested cycle: this ends. */
static void freeze(struct flow *f)
{
    f->frozen = true;
    for (size_t i = 0; f->has_subflows && i < f->tasks.count; i++) {
        const struct flow_task *t = f->tasks.items[i];
        if (t->kind == TASK_SUBFLOW && !t->ext->subflow->frozen)
            freeze(t->ext->subflow);
    }
}

flow_err flow__flow_freeze(struct flow *f, flow_error *err)
{
    defs_enter();
    flow_err rc = validate(f, NULL, err);
    if (rc == FLOW_OK && !f->frozen)
        freeze(f);
    pthread_mutex_unlock(&defs_lock);
    return rc;
}

/* ---- flow_describe ------------------------------------------------------ */

static const char *kind_name(const struct flow_task *t)
{
    switch (t->kind) {
    case TASK_FN:
        return "function";
    case TASK_COMMAND:
        return "command";
    case TASK_SHELL:
        return "shell";
    case TASK_SUBFLOW:
        return "flow";
    case TASK_FEEDBACK:
        return "feedback";
    case TASK_PROMPT:
        return "prompt";
    case TASK_HTTP:
        return "http";
    case TASK_LLM:
        return "llm";
    default:
        return "noop";
    }
}

static const char *on_error_name(flow_on_error e)
{
    switch (e) {
    case FLOW_ON_ERROR_CONTINUE:
        return "continue";
    case FLOW_ON_ERROR_IGNORE:
        return "ignore";
    case FLOW_ON_ERROR_FALLBACK:
        return "fallback";
    default:
        return "fail";
    }
}

static const char *executor_name(const struct flow_task *t)
{
    switch (t->policy->executor) {
    case FLOW_EXEC_INLINE:
        return "inline";
    case FLOW_EXEC_THREAD:
        return "thread";
    case FLOW_EXEC_PROCESS:
        return "process";
    case FLOW_EXEC_REMOTE:
        return "remote";
    default:
        return t->kind == TASK_COMMAND || t->kind == TASK_SHELL ? "process"
               : t->kind == TASK_FN || t->kind == TASK_HTTP || t->kind == TASK_LLM
                   ? "thread"
                   : "inline";
    }
}

static json_t *cond_json(const struct flow_cond *c)
{
    if (c->kind == COND_TASK || c->kind == COND_LABEL)
        return json_string(c->name);
    json_t *arr = json_array();
    for (size_t i = 0; i < c->count; i++)
        json_array_append_new(arr, cond_json(c->kids[i]));
    return json_pack("{s:o}", c->kind == COND_AND ? "and" : "or", arr);
}

static void cond_edges(const struct flow *f, const struct flow_task *t, const struct flow_cond *c,
                       json_t *edges)
{
    if (c->kind == COND_TASK && flow_find_task(f, c->name)) {
        json_array_append_new(edges, json_pack("{s:s,s:s,s:s}", "from", c->name, "to", t->name,
                                               "kind", "when"));
    } else if (c->kind == COND_TASK || c->kind == COND_LABEL) {
        json_array_append_new(edges, json_pack("{s:n,s:s,s:s,s:s}", "from", "to", t->name, "kind",
                                               "label", "label", c->name));
    }
    for (size_t i = 0; i < c->count; i++)
        cond_edges(f, t, c->kids[i], edges);
}

json_t *flow_describe(flow *f)
{
    json_t *tasks = json_array();
    json_t *edges = json_array();
    json_t *labels = json_array();
    json_t *root = json_pack("{s:s,s:s?,s:s?,s:o,s:o,s:o}", "name", f->name, "description",
                             f->description, "version", f->version, "tasks", tasks, "edges",
                             edges, "labels", labels);
    if (!root)
        return NULL;
    static const char *const edge_kinds[] = {"after", "after_any", "optional"};
    /* Per task: has it a dependency, is it someone's fallback (one pass each,
     * so that describing a 100,000-task flow stays linear). */
    uint8_t *not_start = flow__calloc(f->tasks.count ? f->tasks.count : 1, 1);
    if (!not_start) {
        json_decref(root);
        return NULL;
    }
    for (size_t i = 0; i < f->edges.count; i++)
        not_start[f->edges.items[i].task] |= 1;
    for (size_t i = 0; i < f->tasks.count; i++)
        if (flow__task_fallback(f->tasks.items[i]))
            not_start[flow__task_fallback(f->tasks.items[i])->index] |= 2;
    for (size_t i = 0; i < f->edges.count; i++) {
        const struct flow_edge *e = &f->edges.items[i];
        json_array_append_new(edges,
                              json_pack("{s:s,s:s,s:s}", "from", f->tasks.items[e->dep]->name,
                                        "to", f->tasks.items[e->task]->name, "kind",
                                        edge_kinds[e->kind]));
    }
    for (size_t i = 0; i < f->tasks.count; i++) {
        const struct flow_task *t = f->tasks.items[i];
        const struct task_ext *x = t->ext;
        bool triggered = (x && (x->on.count || x->when)) || (not_start[t->index] & 1);
        bool is_start = t->start == 1 || (t->start == -1 && !triggered);
        if (is_start && t->start != 1 && (not_start[t->index] & 2))
            is_start = false;
        for (size_t k = 0; k < f->connections.count && is_start && t->start != 1; k++)
            is_start = strcmp(f->connections.items[k].to_name, t->name) != 0;
        json_t *jt = json_pack(
            "{s:s,s:s,s:b,s:b,s:b,s:s,s:f,s:i,s:s,s:s?,s:i,s:o}", "name", t->name, "kind",
            kind_name(t), "start", is_start, "entry", t->entry, "router", t->router, "executor",
            executor_name(t), "timeout", t->policy->timeout, "retries", t->policy->retries,
            "on_error", on_error_name(t->policy->on_error), "fallback",
            flow__task_fallback(t) ? flow__task_fallback(t)->name : NULL, "priority", t->policy->priority, "on",
            json_array());
        if (!jt)
            continue;
        if (x && x->when) {
            json_object_set_new(jt, "when", cond_json(x->when));
            cond_edges(f, t, x->when, edges);
        }
        if (x && x->argc) {
            json_t *argv = json_array();
            for (size_t k = 0; k < x->argc; k++)
                json_array_append_new(argv, json_string(x->argv_src[k]));
            json_object_set_new(jt, "run", argv);
        }
        if (x && x->shell_src)
            json_object_set_new(jt, "shell", json_string(x->shell_src));
        if (x && x->subflow) {
            json_object_set_new(jt, "flow", json_string(x->subflow->name));
            json_object_set_new(jt, "subflow", flow_describe(x->subflow));
        }
        if (x && x->feedback) {
            static const char *const types[] = {"approval", "text", "selection"};
            unsigned type = (unsigned)x->feedback->type;
            json_object_set_new(jt, "feedback",
                                json_string(type < 3 ? types[type] : "approval"));
        }
        if (x && x->prompt)
            json_object_set_new(jt, "prompt",
                                json_pack("{s:s,s:s?,s:s?}", "name", x->prompt->chosen->name,
                                          "label", x->prompt->label, "version",
                                          x->prompt->version));
        if (x && x->cache)
            json_object_set_new(jt, "cache", json_pack("{s:s,s:f}", "key", x->cache->key_src,
                                                       "ttl", x->cache->ttl));
        if (x && x->foreach_src) {
            json_object_set(jt, "foreach", x->foreach_src);
            json_object_set_new(jt, "concurrency", json_integer(x->concurrency));
        }
        for (size_t k = 0; x && k < x->on.count; k++) {
            json_array_append_new(json_object_get(jt, "on"), json_string(x->on.items[k]));
            json_array_append_new(labels,
                                  json_pack("{s:s,s:s}", "label", x->on.items[k], "to", t->name));
            json_array_append_new(edges, json_pack("{s:n,s:s,s:s,s:s}", "from", "to", t->name,
                                                   "kind", "label", "label", x->on.items[k]));
        }
        if (flow__task_fallback(t))
            json_array_append_new(edges, json_pack("{s:s,s:s,s:s}", "from", t->name, "to",
                                                   flow__task_fallback(t)->name, "kind", "fallback"));
        json_array_append_new(tasks, jt);
    }
    for (size_t i = 0; i < f->connections.count; i++) {
        const struct flow_connection *cn = &f->connections.items[i];
        json_t *e = json_pack("{s:s,s:s,s:s,s:s}", "from", cn->from_name, "to", cn->to_name,
                              "kind", "connect", "event", cn->event);
        if (e && cn->map)
            json_object_set(e, "map", cn->map);
        json_array_append_new(edges, e);
    }
    flow__free(not_start);
    return root;
}
