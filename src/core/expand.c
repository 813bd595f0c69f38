/* expand.c -- activations that become more work: parallel groups and their
 * `then`, foreach fan-out over a run-time list, nested flows as child runs.
 * The design is docs/internals/core.md, "Dynamic work". Runs with the engine
 * lock held. */
#include "util/compat.h"

#include <stdio.h>
#include <string.h>

#include "core/run_int.h"
#include "util/alloc.h"
#include "util/json.h"

/* ---- groups, foreach, nested flows -------------------------------------- */

/* [L] A branch of a parallel group finished. */
void flow__group_member_done(struct flow_run *r, struct act *a)
{
    struct group *g = a->dyn->group;
    a->dyn->branch_done = true; /* count it once (a retry counts it again) */
    g->finished++;
    if (a->status == FLOW_ACT_COMPLETED)
        json_array_set(g->outputs, a->dyn->branch, a->output);
    else
        g->failed = true;
    if (g->finished < g->count || r->stopping)
        return;
    if (g->failed)
        flow__run_skip(r, g->then_task);
    else
        flow__run_fire(r, g->then_task, g->outputs, NULL, 0);
}

/* [L] Start the next children of a foreach parent while the concurrency
 * allows. */
static void foreach_spawn(struct flow_run *r, struct act *parent)
{
    struct foreach_state *fe = parent->dyn->fe;
    while (!r->stopping && (fe->redo_next < fe->redo_count || fe->next < fe->count) &&
           (!fe->concurrency || fe->running < fe->concurrency)) {
        if (fe->redo_next < fe->redo_count) {
            /* A retry: an element that failed or was cancelled runs again,
             * as the same activation (retry.c). */
            struct act *again = fe->redo[fe->redo_next++];
            again->status = FLOW_ACT_PENDING;
            fe->running++;
            r->unfinished++;
            flow__engine_enqueue(r->engine, again);
            continue;
        }
        size_t i = fe->next++;
        struct act *child = flow__act_new(r, parent->task);
        struct act_dyn *dy = child ? flow__act_dyn(r, child) : NULL;
        if (!dy) {
            flow__run_stop(r, FLOW_RUN_FAILED, "out of memory creating an activation");
            return;
        }
        dy->parent = parent;
        dy->index = i;
        if (i == 0)
            fe->first_child = child->id;
        dy->item = json_incref(json_array_get(fe->items, i));
        child->input = json_incref(dy->item); /* the element, unless `input` says more */
        fe->running++;
        r->unfinished++;
        flow__run_journal(r, JREC_ACT_CREATED, child,
                          flow__run_journaling(r)
                              ? json_pack("{s:O,s:I,s:I}", "input", dy->item, "parent",
                                          (json_int_t)parent->id, "index", (json_int_t)i)
                              : NULL);
        flow__engine_enqueue(r->engine, child);
    }
    /* Stopped with nothing of it running: the rest will never start, so
     * nothing would ever finish the parent. */
    if (r->stopping && !fe->running && parent->status == FLOW_ACT_RUNNING)
        flow__run_cancel_act(r, parent, "the run stopped before its elements ran");
}

/* [L] The parent's children are all done: it completes with their outputs,
 * or fails naming the first failure. */
static void foreach_finish(struct flow_run *r, struct act *parent)
{
    struct foreach_state *fe = parent->dyn->fe;
    if (fe->failed) {
        char *why = flow__asprintf("%zu of %zu items failed; the first: %s", fe->failed, fe->count,
                                   fe->first_error ? fe->first_error : "?");
        flow__attempt_failed_ex(r, parent, why, false);
        return;
    }
    json_t *out = fe->outputs;
    fe->outputs = NULL;
    flow__attempt_succeeded(r, parent, out, NULL, NULL);
}

void flow__foreach_child_done(struct flow_run *r, struct act *child)
{
    struct act *parent = child->dyn->parent;
    struct foreach_state *fe = parent->dyn ? parent->dyn->fe : NULL;
    if (!fe || parent->status != FLOW_ACT_RUNNING)
        return;
    fe->running--;
    fe->finished++;
    if (child->status == FLOW_ACT_COMPLETED) {
        json_array_set(fe->outputs, child->dyn->index, child->output);
    } else {
        fe->failed++;
        if (!fe->first_error)
            fe->first_error = flow__asprintf("item %zu: %s", child->dyn->index,
                                             act_error_text(child));
    }
    if (r->stopping) {
        if (!fe->running)
            flow__attempt_failed_ex(r, parent, flow__strdup("the run stopped"), false);
        return;
    }
    foreach_spawn(r, parent);
    if (fe->finished == fe->count)
        foreach_finish(r, parent);
}

void flow__foreach_continue(struct flow_run *r, struct act *parent)
{
    struct foreach_state *fe = parent->dyn->fe;
    foreach_spawn(r, parent);
    if (parent->status == FLOW_ACT_RUNNING && !fe->running && fe->finished == fe->count)
        foreach_finish(r, parent);
}

/* [L] Begin a foreach parent: render the list and start the children. */
static void expand_foreach(struct flow_run *r, struct act *a)
{
    const struct flow_task *t = act_task(a);
    flow_error err;
    json_t *list = NULL;
    struct act_dyn *dy = flow__act_dyn(r, a);
    if (!dy) {
        flow__attempt_failed_ex(r, a, flow__strdup("out of memory"), false);
        return;
    }
    char *why = NULL;
    if (!flow__run_input_ready(r, a, &why)) {
        flow__attempt_failed(r, a, why);
        return;
    }
    if (flow__run_render(r, a, t->ext->foreach, &list, &err) != FLOW_OK) {
        flow__attempt_failed(r, a, flow__asprintf("foreach: %s", err.message));
        return;
    }
    if (!json_is_array(list)) {
        why = flow__asprintf("foreach of task '%s' needs a list, got %s", t->name,
                             flow__json_type_name(list));
        json_decref(list);
        flow__attempt_failed_ex(r, a, why, false);
        return;
    }
    struct foreach_state *fe = dy->fe;
    if (!fe && !(fe = dy->fe = flow__arena_alloc(&r->act_arena, sizeof(*fe)))) {
        json_decref(list);
        flow__attempt_failed_ex(r, a, flow__strdup("out of memory"), false);
        return;
    }
    json_decref(fe->items);
    json_decref(fe->outputs);
    flow__free(fe->first_error);
    memset(fe, 0, sizeof(*fe));
    fe->items = list;
    fe->count = json_array_size(list);
    fe->concurrency = t->ext->concurrency > 0 ? (size_t)t->ext->concurrency : 0;
    fe->outputs = json_array();
    for (size_t i = 0; fe->outputs && i < fe->count; i++)
        json_array_append_new(fe->outputs, json_null());
    if (!fe->outputs) {
        flow__attempt_failed_ex(r, a, flow__strdup("out of memory"), false);
        return;
    }
    if (fe->count == 0) {
        foreach_finish(r, a); /* an empty list completes at once with [] */
        return;
    }
    foreach_spawn(r, a);
}

/* [L] Begin a nested flow: a child run on the same engine. Its end completes
 * this activation (end_run). */
static void expand_subflow(struct flow_run *r, struct act *a)
{
    const struct flow_task *t = act_task(a);
    struct flow *child = t->ext->subflow;
    struct act_dyn *dy = flow__act_dyn(r, a);
    char *why = NULL;
    if (!dy) {
        flow__attempt_failed(r, a, flow__strdup("out of memory"));
        return;
    }
    if (!flow__run_input_ready(r, a, &why)) {
        flow__attempt_failed(r, a, why);
        return;
    }
    json_t *in = flow__run_act_input(r, a);
    if (!json_is_object(in) && !json_is_null(in)) {
        flow__attempt_failed(r, a,
                             flow__asprintf("the input of nested flow '%s' must be an object, "
                                            "not %s",
                                            child->name, flow__json_type_name(in)));
        return;
    }
    char id[96];
    snprintf(id, sizeof(id), "%.60s.%llu.%u", r->id, (unsigned long long)a->id, (unsigned)a->attempt);
    flow_error err;
    struct flow_run *c =
        flow__run_create(r->engine, child, json_is_object(in) ? in : NULL, id, NULL, a, &err);
    flow_err rc = FLOW_OK;
    if (c)
        FLOW__VEC_PUSH(&r->children, c, rc);
    if (!c || rc) {
        if (c)
            flow__run_destroy(c); /* never started: nothing else knows it */
        flow__attempt_failed(r, a,
                             flow__asprintf("nested flow '%s' could not start: %s", child->name,
                                            c ? "out of memory" : err.message));
        return;
    }
    dy->child = c;
    r->subflows_running++;
    flow__run_begin(c, NULL);
}

void flow__run_expand(struct flow_run *r, struct act *a)
{
    const struct flow_task *t = act_task(a);
    a->attempt++;
    a->status = FLOW_ACT_RUNNING;
    a->started = r->engine->clock;
    flow__run_journal(r, JREC_ACT_STARTED, a, NULL);
    flow__run_notify(r, FLOW_EV_TASK_STARTED, a, NULL, 0);
    if (t->kind == TASK_SUBFLOW) {
        /* Replay: the child's journal is not kept; its end, if it came, is
         * the next input record for this activation. */
        if (!r->replaying)
            expand_subflow(r, a);
    } else {
        expand_foreach(r, a);
    }
}

/* [L] A nested run ended: its parent activation completes or fails. */
void flow__subflow_done(struct flow_run *child)
{
    struct act *a = child->parent_act;
    struct flow_run *r = a->run;
    if (a->status != FLOW_ACT_RUNNING || !a->dyn || a->dyn->child != child)
        return;
    a->dyn->child = NULL;
    if (r->subflows_running)
        r->subflows_running--;
    if (r->interrupting) {
        flow__attempt_dropped(r, a);
        return;
    }
    if (child->status == FLOW_RUN_COMPLETED)
        flow__attempt_succeeded(r, a, json_incref(child->result), NULL, NULL);
    else
        flow__attempt_failed(r, a,
                             flow__asprintf("nested flow '%s' %s: %s", child->flow->name,
                                            flow_run_status_name(child->status),
                                            child->error ? child->error : "no reason given"));
}
