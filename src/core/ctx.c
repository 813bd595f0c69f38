/* ctx.c -- what a C task body can do through its flow_ctx. The body runs
 * without the engine lock; everything it writes stays in the context until
 * the attempt ends, and what it reads from the run is taken under the lock.
 *
 * The reference counts of the run's values change under the engine lock
 * only (docs/internals/core.md, Threads and the lock): a body gets them
 * borrowed (input, dep), or as copies of its own (state, deps), and what it
 * gives is copied, or dropped under the lock. */
#include "util/compat.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/engine.h"
#include "util/alloc.h"
#include "util/log.h"
#include "util/redact.h"

struct flow_ctx *flow__ctx_new(struct flow_engine *e, struct flow_run *r, struct act *a)
{
    struct flow_ctx *ctx = e->free_ctx;
    if (ctx)
        e->free_ctx = ctx->next_free;
    else if (!(ctx = flow__malloc(sizeof(*ctx))))
        return NULL;
    *ctx = (struct flow_ctx){0};
    ctx->engine = e;
    ctx->run = r;
    ctx->act = a;
    ctx->task = act_task(a);
    ctx->fn = ctx->task->kind == TASK_HTTP  ? flow__net_http
              : ctx->task->kind == TASK_LLM ? flow__net_llm
                                            : ctx->task->fn;
    ctx->attempt = a->attempt + 1;
    atomic_init(&ctx->cancelled, r->stopping ? 1 : 0);
    return ctx;
}

void flow__ctx_release(struct flow_engine *e, struct flow_ctx *ctx)
{
    json_decref(ctx->output);
    json_decref(ctx->writes);
    json_decref(ctx->directives);
    json_decref(ctx->info);
    ctx->directives = ctx->info = NULL;
    flow__free(ctx->error);
    flow__free(ctx->waiting);
    ctx->output = ctx->writes = NULL;
    ctx->error = NULL;
    ctx->waiting = NULL;
    ctx->next_free = e->free_ctx;
    e->free_ctx = ctx;
}

/* Runs `body` with the lock unless the context was abandoned (its run may be
 * gone); returns false then. */
#define WITH_LOCK(ctx, body)                                                   \
    do {                                                                       \
        pthread_mutex_lock(&(ctx)->engine->lock);                              \
        bool live__ = !(ctx)->detached;                                        \
        if (live__) {                                                          \
            body;                                                              \
        }                                                                      \
        pthread_mutex_unlock(&(ctx)->engine->lock);                            \
    } while (0)

/* A call a C function running on a worker cannot make: its attempt fails
 * with a message naming the call (the first one wins). */
void flow__ctx_unsupported(flow_ctx *ctx, const char *call, const char *instead)
{
    struct flow__rctx *rc = ctx->remote;
    if (!rc->unsupported)
        rc->unsupported = flow__asprintf("%s is not available to a remote function (task '%s' on "
                                         "worker '%s')%s%s",
                                         call, rc->task, rc->worker, instead ? ": " : "",
                                         instead ? instead : "");
}

json_t *flow_ctx_input(flow_ctx *ctx)
{
    if (ctx->remote)
        return ctx->remote->input;
    json_t *in = NULL;
    WITH_LOCK(ctx, {
        in = flow__run_act_input(ctx->run, ctx->act);
        if (!in) /* the attempt fails, whatever the body returns */
            ctx->input_failed = true;
    });
    return in ? in : json_null();
}

json_t *flow_ctx_dep(flow_ctx *ctx, const char *task_name)
{
    json_t *out = NULL;
    if (ctx->remote) /* what the input carries: several dependencies' outputs by name */
        return task_name ? json_object_get(ctx->remote->input, task_name) : NULL;
    WITH_LOCK(ctx, {
        const flow_task *t = flow_find_task(ctx->run->flow, task_name);
        struct act *latest = t ? flow__act_by_id(ctx->run, ctx->run->trt[t->index].latest) : NULL;
        out = latest ? latest->output : NULL;
    });
    return out;
}

json_t *flow_ctx_deps(flow_ctx *ctx)
{
    json_t *all = json_object();
    if (!all)
        return NULL;
    if (ctx->remote) {
        flow__ctx_unsupported(ctx, "flow_ctx_deps",
                              "use flow_ctx_input or flow_ctx_dep (a task with several "
                              "dependencies gets their outputs keyed by task name)");
        return all;
    }
    WITH_LOCK(ctx, {
        struct act *a = ctx->act;
        struct act *const *srcs = a->nsrc == 1 ? &a->src.one : a->src.many;
        for (uint32_t i = 0; i < a->nsrc; i++) {
            const struct act *s = srcs[i];
            const struct act *named = act_stands_for(s) ? act_stands_for(s) : s;
            if (s->output && json_object_set_new(all, act_task(named)->name,
                                                 json_deep_copy(s->output))) {
                json_decref(all);
                all = NULL;
                break;
            }
        }
    });
    return all;
}

json_t *flow_ctx_get_state(flow_ctx *ctx, const char *key)
{
    if (ctx->writes) {
        json_t *mine = json_object_get(ctx->writes, key);
        if (mine)
            return json_deep_copy(mine);
    }
    json_t *v = NULL;
    if (ctx->remote) /* the run's state when the activation was queued */
        return json_deep_copy(json_object_get(ctx->remote->state, key));
    WITH_LOCK(ctx, v = json_deep_copy(json_object_get(ctx->run->state, key)));
    return v;
}

flow_err flow_ctx_set_state_take(flow_ctx *ctx, const char *key, json_t *value)
{
    if (!value)
        return FLOW_ENOMEM;
    if (!key || !*key) {
        json_decref(value);
        return FLOW_EINVAL;
    }
    if (!ctx->writes && !(ctx->writes = json_object())) {
        json_decref(value);
        return FLOW_ENOMEM;
    }
    return json_object_set_new(ctx->writes, key, value) ? FLOW_ENOMEM : FLOW_OK;
}

flow_err flow_ctx_set_state(flow_ctx *ctx, const char *key, json_t *value)
{
    /* A deep copy: the state must not change behind the run's back when the
     * caller later modifies its value. */
    return flow_ctx_set_state_take(ctx, key, value ? json_deep_copy(value) : NULL);
}

flow_err flow_ctx_set_output_take(flow_ctx *ctx, json_t *value)
{
    if (!value)
        return FLOW_ENOMEM;
    json_decref(ctx->output);
    ctx->output = value;
    return FLOW_OK;
}

flow_err flow_ctx_set_output(flow_ctx *ctx, json_t *value)
{
    return flow_ctx_set_output_take(ctx, value ? json_deep_copy(value) : json_null());
}

void flow__ctx_note(flow_ctx *ctx, const char *key, json_t *value)
{
    if (!value)
        return;
    if (!ctx->info)
        ctx->info = json_object();
    if (!ctx->info || json_object_set_new(ctx->info, key, value))
        json_decref(value); /* out of memory: the note is lost, not the attempt */
}

void flow_ctx_fail(flow_ctx *ctx, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    flow__free(ctx->error);
    ctx->error = flow__strdup(buf);
}

void flow_ctx_fail_final(flow_ctx *ctx, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    flow__free(ctx->error);
    ctx->error = flow__strdup(buf);
    ctx->fail_final = true;
}

flow_err flow_ctx_retry_after(flow_ctx *ctx, double seconds)
{
    if (!(seconds >= 0) || !isfinite(seconds))
        return FLOW_EINVAL;
    ctx->retry_set = true;
    ctx->retry_after = seconds;
    return FLOW_OK;
}

bool flow_ctx_is_cancelled(flow_ctx *ctx)
{
    return atomic_load(&ctx->cancelled) != 0;
}

void flow_ctx_progress(flow_ctx *ctx, double fraction, const char *note)
{
    const struct flow__secrets *sec = ctx->remote ? ctx->remote->secrets : ctx->run->secrets;
    char *clean = NULL;
    if (note && flow__redact_text(sec, note, strlen(note), &clean, NULL) != FLOW_OK)
        note = NULL; /* out of memory: no note rather than a secret */
    if (clean)
        note = clean;
    flow__log(FLOW_LOG_INFO, "%s: %.0f%%%s%s", flow_ctx_task_name(ctx), fraction * 100,
              note ? " " : "", note ? note : "");
    flow__free(clean);
}

void *flow_ctx_udata(flow_ctx *ctx)
{
    return ctx->remote ? ctx->remote->udata : ctx->task->udata;
}

const char *flow_ctx_task_name(flow_ctx *ctx)
{
    return ctx->remote ? ctx->remote->task : ctx->task->name;
}

const char *flow_ctx_run_id(flow_ctx *ctx)
{
    return ctx->remote ? ctx->remote->run : ctx->run->id;
}

uint64_t flow_ctx_activation(flow_ctx *ctx)
{
    return ctx->remote ? ctx->remote->act : ctx->act->id;
}

int flow_ctx_attempt(flow_ctx *ctx)
{
    return (int)ctx->attempt;
}

/* ---- dynamic work: the same directives a command writes to $FLOW_CONTROL */

/* Append {key: value} (value stolen) to the context's directives. */
static flow_err add_directive(flow_ctx *ctx, const char *key, json_t *value)
{
    json_t *d = value ? json_object() : NULL;
    if (!d || json_object_set_new(d, key, value)) {
        json_decref(d);
        if (!d)
            json_decref(value);
        return FLOW_ENOMEM;
    }
    if (!ctx->directives && !(ctx->directives = json_array())) {
        json_decref(d);
        return FLOW_ENOMEM;
    }
    return json_array_append_new(ctx->directives, d) ? FLOW_ENOMEM : FLOW_OK;
}

/* Queue one state update `op` ({op: {key: value}}, value stolen). */
static flow_err add_update(flow_ctx *ctx, const char *op, const char *key, json_t *value)
{
    if (!value)
        return FLOW_ENOMEM;
    if (!key || !*key) {
        json_decref(value);
        return FLOW_EINVAL;
    }
    json_t *kv = json_object();
    if (!kv || json_object_set_new(kv, key, value)) {
        json_decref(kv);
        if (!kv)
            json_decref(value);
        return FLOW_ENOMEM;
    }
    return add_directive(ctx, op, kv);
}

flow_err flow_ctx_incr_state(flow_ctx *ctx, const char *key, double by)
{
    if (!isfinite(by))
        return FLOW_EINVAL;
    /* Whole numbers stay integers, so a counter reads 3, not 3.0. */
    bool whole = by == floor(by) && fabs(by) < 9007199254740992.0;
    return add_update(ctx, "incr", key, whole ? json_integer((json_int_t)by) : json_real(by));
}

flow_err flow_ctx_append_state(flow_ctx *ctx, const char *key, json_t *value)
{
    return add_update(ctx, "append", key, value ? json_deep_copy(value) : json_null());
}

flow_err flow_ctx_merge_state(flow_ctx *ctx, const char *key, json_t *object)
{
    if (!json_is_object(object))
        return FLOW_EINVAL;
    return add_update(ctx, "merge", key, json_deep_copy(object));
}

/* A worker does not have the flow: the runner checks the names it gets. */
static bool task_exists(flow_ctx *ctx, const char *name)
{
    return name && (ctx->remote || flow_find_task(ctx->task->flow, name) != NULL);
}

static json_t *copy_or_null(json_t *v)
{
    return v ? json_deep_copy(v) : json_null();
}

flow_err flow_ctx_next_task(flow_ctx *ctx, const char *task, json_t *input)
{
    if (!task_exists(ctx, task))
        return FLOW_ENOTFOUND;
    return add_directive(ctx, "next_task",
                         json_pack("{s:s,s:o}", "task", task, "input", copy_or_null(input)));
}

flow_err flow_ctx_next_iteration(flow_ctx *ctx, json_t *input)
{
    return add_directive(ctx, "next_iteration", json_pack("{s:o}", "input", copy_or_null(input)));
}

flow_err flow_ctx_parallel(flow_ctx *ctx, const flow_branch *branches, size_t count,
                           const char *then_task)
{
    if (!branches || !count)
        return FLOW_EINVAL;
    if (then_task && !task_exists(ctx, then_task))
        return FLOW_ENOTFOUND;
    for (size_t i = 0; i < count; i++) {
        if (!task_exists(ctx, branches[i].task))
            return FLOW_ENOTFOUND;
    }
    json_t *list = json_array();
    for (size_t i = 0; list && i < count; i++) {
        if (json_array_append_new(list, json_pack("{s:s,s:o}", "task", branches[i].task, "input",
                                                  copy_or_null(branches[i].input)))) {
            json_decref(list);
            list = NULL;
        }
    }
    json_t *d = list ? json_object() : NULL;
    if (!d || json_object_set_new(d, "parallel", list) ||
        (then_task && json_object_set_new(d, "then", json_string(then_task)))) {
        if (!d)
            json_decref(list);
        json_decref(d);
        return FLOW_ENOMEM;
    }
    if (!ctx->directives && !(ctx->directives = json_array())) {
        json_decref(d);
        return FLOW_ENOMEM;
    }
    return json_array_append_new(ctx->directives, d) ? FLOW_ENOMEM : FLOW_OK;
}

flow_err flow_ctx_terminate(flow_ctx *ctx, json_t *result)
{
    return add_directive(ctx, "terminate", json_pack("{s:o}", "result", copy_or_null(result)));
}

flow_err flow_ctx_cancel(flow_ctx *ctx, const char *error)
{
    return add_directive(ctx, "cancel",
                         json_pack("{s:s}", "error", error && *error ? error : "cancelled"));
}

flow_err flow_ctx_checkpoint(flow_ctx *ctx)
{
    return add_directive(ctx, "checkpoint", json_true());
}

flow_err flow_ctx_pause(flow_ctx *ctx, const char *reason)
{
    return add_directive(ctx, "pause",
                         json_pack("{s:s}", "reason", reason && *reason ? reason : "paused by a task"));
}

flow_err flow_ctx_emit(flow_ctx *ctx, const char *event, json_t *data)
{
    if (!event || !*event)
        return FLOW_EINVAL;
    json_t *payload = copy_or_null(data);
    if (!payload)
        return FLOW_ENOMEM;
    if (ctx->remote) { /* streamed by the worker to the runner, and in the completion */
        if (ctx->remote->emit) /* it takes the payload: its threads share it under their lock */
            return ctx->remote->emit(ctx->remote, event, payload);
        json_decref(payload);
        return FLOW_EUNSUPPORTED;
    }
    /* Events go out at once: a long task streams to its connections. The
     * run shares the payload from now on: it is let go under the lock. */
    pthread_mutex_lock(&ctx->engine->lock);
    if (!ctx->detached && !ctx->run->stopping) {
        flow__engine_tick(ctx->engine);
        flow__run_emit(ctx->run, ctx->act, event, payload, EMIT_STREAMED);
    }
    json_decref(payload);
    pthread_mutex_unlock(&ctx->engine->lock);
    return FLOW_OK;
}

json_t *flow_ctx_item(flow_ctx *ctx)
{
    if (ctx->remote)
        return ctx->remote->item;
    const struct act_dyn *dy = ctx->act->dyn;
    return dy && dy->parent ? dy->item : NULL;
}

long flow_ctx_index(flow_ctx *ctx)
{
    if (ctx->remote)
        return ctx->remote->index;
    const struct act_dyn *dy = ctx->act->dyn;
    return dy && dy->parent ? (long)dy->index : -1;
}
