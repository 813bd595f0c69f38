/* directive.c -- what a successful attempt asks for besides its output
 * (docs/concepts.md, "Dynamic work"): the directives of a command's
 * $FLOW_CONTROL lines and of flow_ctx_* calls, checked and parsed in one
 * place, and the dynamic work they start. Runs with the engine lock held. */
#include "util/compat.h"

#include <math.h>
#include <string.h>

#include "core/run_int.h"
#include "util/alloc.h"
#include "util/json.h"

void flow__directives_cleanup(struct directives *d)
{
    json_decref(d->ops);
    flow__free(d->cancel);
    flow__free(d->pause);
    json_decref(d->terminate);
    json_decref(d->work);
    json_decref(d->info);
    memset(d, 0, sizeof(*d));
}

/* [L] Check a task name a directive gives; NULL or a message. */
static char *check_task_name(struct flow_run *r, const char *what, json_t *name)
{
    if (!json_is_string(name))
        return flow__why("directive '%s' needs a task name", what);
    if (!flow_find_task(r->flow, json_string_value(name)))
        return flow__why("directive '%s' names unknown task '%s'", what,
                              json_string_value(name));
    return NULL;
}

/* [L] Queue the state updates of one `set`, `incr`, `append` or `merge`
 * directive ({KEY: VALUE, ...}), checked. */
static char *add_ops(struct directives *out, const char *op, json_t *value)
{
    if (!json_is_object(value))
        return flow__why("directive '%s' needs an object {\"KEY\": %s}", op,
                              !strcmp(op, "incr")    ? "NUMBER"
                              : !strcmp(op, "merge") ? "{...}"
                                                     : "VALUE");
    const char *key;
    json_t *v;
    json_object_foreach(value, key, v)
    {
        if (!strcmp(op, "incr") && !json_is_number(v))
            return flow__why("directive 'incr' of key '%s' needs a number, not %s", key,
                                  flow__json_type_name(v));
        if (!strcmp(op, "merge") && !json_is_object(v))
            return flow__why("directive 'merge' of key '%s' needs an object, not %s", key,
                                  flow__json_type_name(v));
        if (!out->ops && !(out->ops = json_array()))
            return flow__why("out of memory");
        if (json_array_append_new(out->ops, json_pack("[s,s,O]", op, key, v)))
            return flow__why("out of memory");
    }
    return NULL;
}

/* The new value of a key after one update; NULL and *why when it cannot
 * apply to what the key holds. */
static json_t *apply_one(const char *op, const char *key, json_t *cur, json_t *v, char **why)
{
    bool empty = !cur || json_is_null(cur);
    if (!strcmp(op, "set"))
        return json_incref(v);
    if (!strcmp(op, "incr")) {
        if (!empty && !json_is_number(cur)) {
            *why = flow__why("cannot incr state key '%s': it holds %s, not a number", key,
                             flow__json_type_name(cur));
            return NULL;
        }
        if ((empty || json_is_integer(cur)) && json_is_integer(v)) {
            json_int_t a = empty ? 0 : json_integer_value(cur), b = json_integer_value(v), sum;
            if (!__builtin_add_overflow(a, b, &sum))
                return json_integer(sum);
        }
        double sum = (empty ? 0 : json_number_value(cur)) + json_number_value(v);
        if (!isfinite(sum)) {
            *why = flow__why("cannot incr state key '%s': the sum is too large for a number", key);
            return NULL;
        }
        return json_real(sum);
    }
    if (!strcmp(op, "append")) {
        if (!empty && !json_is_array(cur)) {
            *why = flow__why("cannot append to state key '%s': it holds %s, not a list",
                                  key, flow__json_type_name(cur));
            return NULL;
        }
        json_t *list = empty ? json_array() : json_copy(cur); /* shallow: values are immutable */
        if (list && json_array_append(list, v)) {
            json_decref(list);
            list = NULL;
        }
        return list;
    }
    /* merge */
    if (!empty && !json_is_object(cur)) {
        *why = flow__why("cannot merge into state key '%s': it holds %s, not an object", key,
                              flow__json_type_name(cur));
        return NULL;
    }
    json_t *obj = empty ? json_object() : json_copy(cur);
    if (obj && json_object_update(obj, v)) {
        json_decref(obj);
        obj = NULL;
    }
    return obj;
}

char *flow__directives_apply_ops(struct flow_run *r, json_t *ops, json_t **writes)
{
    if (!ops)
        return NULL;
    if (!*writes && !(*writes = json_object()))
        return flow__why("out of memory");
    size_t i;
    json_t *one;
    json_array_foreach(ops, i, one)
    {
        const char *op = json_string_value(json_array_get(one, 0));
        const char *key = json_string_value(json_array_get(one, 1));
        json_t *cur = json_object_get(*writes, key);
        if (!cur)
            cur = json_object_get(r->state, key);
        char *why = NULL;
        json_t *next = apply_one(op, key, cur, json_array_get(one, 2), &why);
        if (!next)
            return why ? why : flow__why("out of memory");
        if (json_object_set_new(*writes, key, next))
            return flow__why("out of memory");
    }
    return NULL;
}

/* [L] Parse `list` (an array of directive objects) into `out`. */
char *flow__directives_parse(struct flow_run *r, json_t *list, struct directives *out)
{
    size_t i;
    json_t *d;
    char *bad = NULL;
    json_array_foreach(list, i, d)
    {
        const char *key;
        json_t *value;
        json_object_foreach(d, key, value)
        {
            if (!strcmp(key, "set") || !strcmp(key, "incr") || !strcmp(key, "append") ||
                !strcmp(key, "merge")) {
                if ((bad = add_ops(out, key, value)))
                    return bad;
                continue;
            }
            if (!strcmp(key, "cancel")) {
                json_t *e = json_is_object(value) ? json_object_get(value, "error") : value;
                flow__free(out->cancel);
                out->cancel =
                    flow__strdup(json_is_string(e) ? json_string_value(e) : "cancelled by a task");
                continue;
            }
            if (!strcmp(key, "terminate")) {
                json_t *res = json_is_object(value) ? json_object_get(value, "result") : NULL;
                json_decref(out->terminate);
                out->terminate = json_incref(res ? res : json_null());
                continue;
            }
            if (!strcmp(key, "checkpoint")) {
                out->checkpoint = true;
                continue;
            }
            if (!strcmp(key, "pause")) {
                json_t *why = json_is_object(value) ? json_object_get(value, "reason") : value;
                flow__free(out->pause);
                out->pause =
                    flow__strdup(json_is_string(why) ? json_string_value(why) : "paused by a task");
                if (!out->pause)
                    return flow__why("out of memory");
                continue;
            }
            if (!strcmp(key, "then") && json_object_get(d, "parallel"))
                continue; /* part of the parallel directive */
            if (!strcmp(key, "next_task")) {
                if (!json_is_object(value))
                    return flow__why("directive 'next_task' needs {\"task\": T, \"input\": V}");
                if ((bad = check_task_name(r, key, json_object_get(value, "task"))))
                    return bad;
            } else if (!strcmp(key, "next_iteration")) {
                if (value && !json_is_object(value) && !json_is_null(value))
                    return flow__why("directive 'next_iteration' needs {\"input\": V}");
            } else if (!strcmp(key, "parallel")) {
                size_t k;
                json_t *b;
                if (!json_is_array(value) || !json_array_size(value))
                    return flow__why("directive 'parallel' needs a non-empty list of "
                                        "{\"task\": T, \"input\": V}");
                json_array_foreach(value, k, b)
                {
                    if ((bad = check_task_name(r, key, json_object_get(b, "task"))))
                        return bad;
                }
                json_t *then = json_object_get(d, "then");
                if (then && !json_is_null(then) && (bad = check_task_name(r, "then", then)))
                    return bad;
            } else if (!strcmp(key, "emit")) {
                json_t *ev = json_is_object(value) ? json_object_get(value, "event") : value;
                if (!json_is_string(ev) || !json_string_length(ev))
                    return flow__why("directive 'emit' needs an event name");
            } else {
                return flow__why("unknown directive '%s' (known: set, incr, append, merge, "
                                      "next_task, next_iteration, parallel, terminate, cancel, "
                                      "checkpoint, pause, emit)",
                                      key);
            }
            json_t *one = json_object();
            if (!one || json_object_set(one, key, value) ||
                (!strcmp(key, "parallel") && json_object_get(d, "then") &&
                 json_object_set(one, "then", json_object_get(d, "then"))) ||
                (!out->work && !(out->work = json_array()))) {
                json_decref(one);
                return flow__why("out of memory");
            }
            if (json_array_append_new(out->work, one)) /* took `one`, even on failure */
                return flow__why("out of memory");
        }
    }
    return NULL;
}

char *flow__run_check_directives(struct flow_run *r, json_t *list)
{
    struct directives d = {0};
    char *bad = flow__directives_parse(r, list, &d);
    flow__directives_cleanup(&d);
    return bad;
}

/* [L] Start the dynamic work a successful attempt asked for, in order. */
void flow__directives_start(struct flow_run *r, struct act *a, json_t *work)
{
    size_t i;
    json_t *d;
    json_array_foreach(work, i, d)
    {
        if (r->stopping)
            return;
        json_t *v;
        if ((v = json_object_get(d, "next_task"))) {
            const flow_task *t =
                flow_find_task(r->flow, json_string_value(json_object_get(v, "task")));
            json_t *in = json_object_get(v, "input");
            flow__run_fire(r, t->index, in ? in : json_null(), NULL, 0);
        } else if ((v = json_object_get(d, "next_iteration"))) {
            json_t *in = json_object_get(v, "input");
            flow__run_fire(r, a->task, in ? in : json_null(), NULL, 0);
        } else if ((v = json_object_get(d, "parallel"))) {
            json_t *then = json_object_get(d, "then");
            struct group *g = NULL;
            if (then && json_is_string(then)) {
                g = flow__calloc(1, sizeof(*g));
                flow_err rc = g ? FLOW_OK : FLOW_ENOMEM;
                if (!rc)
                    FLOW__VEC_PUSH(&r->groups, g, rc);
                if (rc || !(g->outputs = json_array())) {
                    if (rc)
                        flow__free(g);
                    flow__run_stop(r, FLOW_RUN_FAILED, "out of memory starting a parallel group");
                    return;
                }
                g->count = (uint32_t)json_array_size(v);
                g->then_task = flow_find_task(r->flow, json_string_value(then))->index;
                for (uint32_t k = 0; k < g->count; k++)
                    json_array_append_new(g->outputs, json_null());
            }
            size_t k;
            json_t *b;
            json_array_foreach(v, k, b)
            {
                const flow_task *t =
                    flow_find_task(r->flow, json_string_value(json_object_get(b, "task")));
                json_t *in = json_object_get(b, "input");
                struct act *branch = flow__run_fire(r, t->index, in ? in : json_null(), NULL, 0);
                if (!branch)
                    return;
                if (g) {
                    struct act_dyn *dy = flow__act_dyn(r, branch);
                    if (!dy) { /* a branch outside its group: the join would never run */
                        flow__run_stop(r, FLOW_RUN_FAILED,
                                       "out of memory starting a parallel group");
                        return;
                    }
                    dy->group = g;
                    dy->branch = (uint32_t)k;
                }
            }
        } else if ((v = json_object_get(d, "emit"))) {
            json_t *ev = json_is_object(v) ? json_object_get(v, "event") : v;
            json_t *data = json_is_object(v) ? json_object_get(v, "data") : NULL;
            flow__run_emit(r, a, json_string_value(ev), data, 0);
        }
    }
}
