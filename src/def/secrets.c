/* secrets.c -- the secrets a flow lists (`secrets:`, flow_add_secret): the
 * names, where `{{ secrets.NAME }}` may be used, and the values a run of the
 * flow takes from the environment (docs/internals/core.md, "Secrets"). */
#include "util/compat.h"

#include <string.h>

#include "def/flowdef.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"
#include "util/redact.h"

bool flow__valid_env_name(const char *s)
{
    if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return false;
    for (s++; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    }
    return true;
}

bool flow__flow_has_secret(const struct flow *f, const char *name)
{
    for (size_t i = 0; name && i < f->secrets.count; i++)
        if (!strcmp(f->secrets.items[i], name))
            return true;
    return false;
}

flow_err flow_add_secret(flow *f, const char *env_name)
{
    if (!f || !flow__valid_env_name(env_name))
        return FLOW_EINVAL;
    if (f->frozen)
        return FLOW_ESTATE;
    if (flow__flow_has_secret(f, env_name))
        return FLOW_EEXISTS;
    char *copy = flow__strdup(env_name);
    flow_err rc = copy ? FLOW_OK : FLOW_ENOMEM;
    if (!rc)
        FLOW__VEC_PUSH(&f->secrets, copy, rc);
    if (rc)
        flow__free(copy);
    return rc;
}

size_t flow_secret_count(const flow *f)
{
    return f ? f->secrets.count : 0;
}

const char *flow_secret_at(const flow *f, size_t i)
{
    return f && i < f->secrets.count ? f->secrets.items[i] : NULL;
}

void flow__flow_secrets_free(struct flow *f)
{
    for (size_t i = 0; i < f->secrets.count; i++)
        flow__free(f->secrets.items[i]);
    FLOW__VEC_FREE(&f->secrets);
}

/* ---- where templates may name them ------------------------------------- */

struct use_check {
    const struct flow *f;
    bool in_env;
    char *why; /* the first misuse */
};

static int check_use(const struct flow__tmpl_path *path, void *udata)
{
    struct use_check *c = udata;
    const char *root = path->segs[0].key;
    const char *name = path->count > 1 ? path->segs[1].key : NULL;
    if (strcmp(root, "secrets") != 0)
        return 0;
    if (!c->in_env)
        c->why = flow__why("'{{ secrets.%s }}' can only be used in 'env' values (a command's "
                           "environment) and in the url, headers and body of an 'http' task",
                           name ? name : "");
    else if (!flow__flow_has_secret(c->f, name))
        c->why = flow__why("'{{ secrets.%s }}' names no secret of flow '%s' (list it in "
                           "'secrets', or flow_add_secret)",
                           name ? name : "", c->f->name);
    return c->why != NULL;
}

static bool misused(struct use_check *c, const struct flow__tmpl *t, bool in_env)
{
    c->in_env = in_env;
    return t && flow__tmpl_foreach_ref(t, check_use, c) != 0;
}

char *flow__secrets_check_task(const struct flow *f, const struct flow_task *t)
{
    const struct task_ext *x = t->ext;
    struct use_check c = {.f = f};
    if (!x)
        return NULL;
    for (size_t i = 0; i < x->env.count; i++)
        if (misused(&c, x->env.items[i].value, true))
            goto out_why;
    for (size_t i = 0; i < x->argc; i++)
        if (misused(&c, x->argv[i], false))
            goto out_why;
    /* An http request may carry a secret (a header, the url, the body):
     * none of it is journaled, and its messages are redacted. */
    if (x->http) {
        const struct http_spec *h = x->http;
        if (misused(&c, h->method, false) || misused(&c, h->url, true) ||
            misused(&c, h->body, true))
            goto out_why;
        for (size_t i = 0; i < h->header_count; i++)
            if (misused(&c, h->headers[i].value, true))
                goto out_why;
    }
    if (x->llm) {
        const struct llm_spec *l = x->llm;
        if (misused(&c, l->model, false) || misused(&c, l->prompt, false))
            goto out_why;
        for (size_t i = 0; i < l->message_count; i++)
            if (misused(&c, l->messages[i].content, false))
                goto out_why;
    }
    if (misused(&c, x->shell, false) || misused(&c, x->input, false) ||
        misused(&c, x->cwd, false) || misused(&c, x->foreach, false) ||
        (x->feedback && misused(&c, x->feedback->message, false)) ||
        (x->cache && misused(&c, x->cache->key, false)))
        goto out_why;
    return NULL;
out_why:;
    char *why = flow__why("task '%s': %s", t->name, c.why);
    flow__free(c.why);
    return why;
}

char *flow__secrets_check_flow(const struct flow *f)
{
    struct use_check c = {.f = f};
    if (!misused(&c, f->result, false))
        return NULL;
    char *why = flow__why("'result': %s", c.why);
    flow__free(c.why);
    return why;
}

/* ---- the values a run takes -------------------------------------------- */

typedef FLOW__VEC(const char *) name_vec;

/* The key of `llm:` tasks: a secret of every run that has one. */
#define LLM_KEY "FLOW_LLM_KEY"

static flow_err collect(const struct flow *f, name_vec *names, size_t depth, bool *llm)
{
    flow_err rc = FLOW_OK;
    for (size_t i = 0; i < f->secrets.count && !rc; i++)
        FLOW__VEC_PUSH(names, f->secrets.items[i], rc);
    for (size_t i = 0; i < f->tasks.count && !*llm; i++)
        *llm = f->tasks.items[i]->kind == TASK_LLM;
    /* Nested flows cannot nest forever: validation refused cycles. */
    for (size_t i = 0; f->has_subflows && depth < 64 && i < f->tasks.count && !rc; i++) {
        const struct flow_task *t = f->tasks.items[i];
        if (t->kind == TASK_SUBFLOW && t->ext->subflow)
            rc = collect(t->ext->subflow, names, depth + 1, llm);
    }
    return rc;
}

flow_err flow__flow_secrets(const struct flow *f, struct flow__secrets **out, flow_error *err)
{
    name_vec names = {0};
    const char *missing = NULL;
    *out = NULL;
    bool llm = false;
    flow_err rc = collect(f, &names, 0, &llm);
    if (!rc)
        rc = flow__secrets_from_env(names.items, names.count, true, out, &missing);
    if (!rc && llm) {
        /* Taken when set, never required: without it no Authorization is
         * sent (a local endpoint may want none). */
        static const char *const key[] = {LLM_KEY};
        struct flow__secrets *more = NULL, *both = NULL;
        rc = flow__secrets_from_env(key, 1, false, &more, NULL);
        if (!rc)
            rc = flow__secrets_union(*out, more, &both);
        flow__secrets_unref(more);
        if (!rc) {
            flow__secrets_unref(*out);
            *out = both;
        }
    }
    if (rc == FLOW_ENOTFOUND)
        rc = flow__error(err, FLOW_EINVAL,
                         "secret '%s' is not set in the environment: a run of flow '%s' needs "
                         "it ('secrets')",
                         missing, f->name);
    else if (rc)
        flow__error(err, rc, "out of memory reading the secrets of flow '%s'", f->name);
    FLOW__VEC_FREE(&names);
    return rc;
}
