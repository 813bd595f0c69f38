/* flowhash.c -- the fingerprint of a flow definition, kept with each durable
 * run so that `flow resume` can tell when the flow changed since the run
 * started. Everything that changes what a run does goes in (tasks, bodies,
 * triggers, policies, templates, connections, state, schema, result); names
 * of C functions cannot (a pointer differs between processes), nor where a
 * task was written. Streamed into FNV-1a: no JSON is built, so a
 * 100,000-task flow costs milliseconds. */
#include "util/compat.h"

#include <stdio.h>

#include "def/flowdef.h"
#include "def/prompts.h"
#include "util/fnv.h"
#include "util/json.h"

static uint64_t fp_bytes(uint64_t h, const void *p, size_t n)
{
    return flow__fnv(h, p, n);
}

/* *ok turns false when a value could not be written (out of memory): the
 * hash would then differ from the same flow's, and a resume be refused. */
static uint64_t fp_json(uint64_t h, const json_t *v, bool *ok)
{
    if (!v)
        return flow__fnv_str(h, NULL);
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!text)
        *ok = false;
    h = flow__fnv_str(h, text ? text : "?");
    flow__json_free_text(text);
    return h;
}

static uint64_t fp_cond(uint64_t h, const struct flow_cond *c)
{
    if (!c)
        return flow__fnv_str(h, NULL);
    unsigned char kind = (unsigned char)c->kind;
    h = fp_bytes(h, &kind, 1);
    h = flow__fnv_str(h, c->name);
    h = fp_bytes(h, &c->count, sizeof(c->count));
    for (size_t i = 0; i < c->count; i++)
        h = fp_cond(h, c->kids[i]);
    return h;
}

static uint64_t fp_policy(uint64_t h, const struct task_policy *p)
{
    h = fp_bytes(h, &p->timeout, sizeof(p->timeout));
    h = fp_bytes(h, &p->kill_grace, sizeof(p->kill_grace));
    h = fp_bytes(h, &p->backoff.delay, sizeof(p->backoff.delay));
    h = fp_bytes(h, &p->backoff.factor, sizeof(p->backoff.factor));
    h = fp_bytes(h, &p->backoff.max_delay, sizeof(p->backoff.max_delay));
    h = fp_bytes(h, &p->backoff.jitter, sizeof(p->backoff.jitter));
    int ints[6] = {p->retries,         p->priority,         p->max_activations,
                   (int)p->on_error,   (int)p->executor,    (int)p->output_mode};
    h = fp_bytes(h, ints, sizeof(ints));
    return fp_bytes(h, &p->output_limit, sizeof(p->output_limit));
}

static uint64_t fp_task(uint64_t h, const struct flow_task *t, bool *ok)
{
    h = flow__fnv_str(h, t->name);
    unsigned char flags[4] = {t->kind, (unsigned char)t->start, t->entry, t->router};
    h = fp_bytes(h, flags, sizeof(flags));
    h = flow__fnv_str(h, flow__task_fallback(t) ? flow__task_fallback(t)->name : NULL);
    h = fp_policy(h, t->policy);
    const struct task_ext *x = t->ext;
    if (!x)
        return flow__fnv_str(h, NULL);
    for (size_t i = 0; i < x->argc; i++)
        h = flow__fnv_str(h, x->argv_src[i]);
    h = flow__fnv_str(h, x->shell_src);
    h = flow__tmpl_fingerprint(x->input, h, ok);
    for (size_t i = 0; i < x->env.count; i++) {
        h = flow__fnv_str(h, x->env.items[i].name);
        h = flow__tmpl_fingerprint(x->env.items[i].value, h, ok);
    }
    h = flow__tmpl_fingerprint(x->cwd, h, ok);
    h = flow__fnv_str(h, x->save);
    h = flow__fnv_str(h, x->queue);
    h = flow__fnv_str(h, x->remote_fn);
    h = fp_cond(h, x->when);
    for (size_t i = 0; i < x->on.count; i++)
        h = flow__fnv_str(h, x->on.items[i]);
    h = fp_json(h, x->foreach_src, ok);
    h = fp_bytes(h, &x->concurrency, sizeof(x->concurrency));
    /* concurrency keys, rate limits, resources and the cache are left out:
     * they say when (or whether) an attempt starts, not what a journal
     * means -- a cached completion is journaled as any other -- so a run
     * resumes under new limits or another cache key without --force. */
    if (x->feedback) {
        const struct feedback_spec *fs = x->feedback;
        int type = (int)fs->type;
        h = fp_bytes(h, &type, sizeof(type));
        h = flow__fnv_str(h, fs->message_src);
        h = fp_json(h, fs->options, ok);
        h = fp_bytes(h, &fs->timeout, sizeof(fs->timeout));
        h = fp_json(h, fs->default_answer, ok);
        h = flow__fnv_str(h, fs->channel_key);
        h = flow__fnv_str(h, fs->id);
    }
    if (x->prompt) {
        /* What was asked, not the text chosen: a new version of a prompt
         * is what a run resumed after it should use. */
        h = flow__fnv_str(h, x->prompt->chosen->name);
        h = flow__fnv_str(h, x->prompt->label);
        h = flow__fnv_str(h, x->prompt->version);
        h = fp_json(h, x->prompt->vars_src, ok);
    }
    if (x->http)
        h = fp_json(h, x->http->src, ok);
    if (x->llm)
        h = fp_json(h, x->llm->src, ok);
    if (x->subflow) {
        char child[64];
        if (flow__flow_hash(x->subflow, child, sizeof(child)))
            h = flow__fnv_str(h, child);
    }
    return h;
}

bool flow__flow_hash(struct flow *f, char *out, size_t size)
{
    bool written = true, *ok = &written;
    uint64_t h = FLOW__FNV_INIT;
    h = flow__fnv_str(h, f->name);
    h = flow__fnv_str(h, f->version);
    int type = (int)f->type;
    h = fp_bytes(h, &type, sizeof(type));
    h = fp_bytes(h, &f->run_timeout, sizeof(f->run_timeout));
    h = fp_json(h, f->initial_state, ok);
    h = fp_json(h, f->result_src, ok);
    h = fp_json(h, f->schema_src, ok);
    for (size_t i = 0; i < f->tasks.count; i++)
        h = fp_task(h, f->tasks.items[i], ok);
    for (size_t i = 0; i < f->edges.count; i++) {
        const struct flow_edge *e = &f->edges.items[i];
        uint32_t v[3] = {e->task, e->dep, e->kind};
        h = fp_bytes(h, v, sizeof(v));
    }
    for (size_t i = 0; i < f->connections.count; i++) {
        const struct flow_connection *c = &f->connections.items[i];
        h = flow__fnv_str(h, c->from_name);
        h = flow__fnv_str(h, c->event);
        h = flow__fnv_str(h, c->to_name);
        h = fp_json(h, c->map, ok);
    }
    snprintf(out, size, "fnv1a64:%016llx", (unsigned long long)h);
    return written;
}
