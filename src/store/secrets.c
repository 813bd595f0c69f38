/* secrets.c -- the choke point of secrets: every write into a store goes
 * through the wrappers of store.h, which come here when the store has values
 * to redact, so that nothing a backend keeps can hold one
 * (docs/internals/core.md, "Secrets").
 *
 * The group committer calls append outside the engine lock with payloads it
 * shares with the run: redaction only reads them and makes fresh values.
 */
#include "util/compat.h"

#include <string.h>

#include "store/store.h"
#include "util/alloc.h"
#include "util/error.h"

static flow_err nomem(flow_error *err, const struct flow__store *s)
{
    return flow__error(err, FLOW_ENOMEM, "out of memory redacting secrets for store '%s'",
                       s->url);
}

flow_err flow__store_add_secrets(struct flow__store *s, struct flow__secrets *add,
                                 flow_error *err)
{
    struct flow__secrets *u = NULL;
    if (!add)
        return FLOW_OK;
    if (flow__secrets_union(s->secrets, add, &u) != FLOW_OK)
        return nomem(err, s);
    flow__secrets_unref(s->secrets);
    s->secrets = u;
    return FLOW_OK;
}

flow_err flow__store_run_create_redacted(struct flow__store *s, const struct flow__run_meta *meta,
                                         flow_error *err)
{
    struct flow__run_meta m = *meta;
    json_t *inputs = NULL;
    if (flow__redact_json(s->secrets, meta->inputs, &inputs) != FLOW_OK)
        return nomem(err, s);
    if (inputs)
        m.inputs = inputs;
    flow_err rc = s->ops->run_create(s->priv, &m, err);
    json_decref(inputs);
    return rc;
}

flow_err flow__store_append_redacted(struct flow__store *s, const char *run_id,
                                     const struct flow__jrec *recs, size_t n, unsigned flags,
                                     flow_error *err)
{
    size_t first = n;
    for (size_t i = 0; i < n && first == n; i++)
        if (flow__redact_json_hits(s->secrets, recs[i].payload))
            first = i;
    if (first == n)
        return s->ops->append(s->priv, run_id, recs, n, flags, err);
    struct flow__jrec *copy = flow__calloc(n, sizeof(*copy));
    bool *owned = flow__calloc(n, sizeof(*owned));
    flow_err rc = copy && owned ? FLOW_OK : FLOW_ENOMEM;
    for (size_t i = 0; i < n && rc == FLOW_OK; i++) {
        json_t *r = NULL;
        copy[i] = recs[i];
        if (i >= first && flow__redact_json(s->secrets, recs[i].payload, &r) != FLOW_OK)
            rc = FLOW_ENOMEM;
        if (r) {
            copy[i].payload = r;
            owned[i] = true;
        }
    }
    if (rc == FLOW_OK)
        rc = s->ops->append(s->priv, run_id, copy, n, flags, err);
    else
        nomem(err, s);
    for (size_t i = 0; copy && owned && i < n; i++)
        if (owned[i])
            json_decref(copy[i].payload);
    flow__free(copy);
    flow__free(owned);
    return rc;
}

flow_err flow__store_control_put_redacted(struct flow__store *s, const char *id,
                                          const char *kind, const char *arg, flow_error *err)
{
    char *r = NULL;
    if (arg && flow__redact_text(s->secrets, arg, strlen(arg), &r, NULL) != FLOW_OK)
        return nomem(err, s);
    flow_err rc = s->ops->control_put(s->priv, id, kind, r ? r : arg, err);
    flow__free(r);
    return rc;
}

flow_err flow__store_answer_claim_redacted(struct flow__store *s, const char *run_id,
                                           const char *request, json_t *answer,
                                           double not_after, json_t **winner, flow_error *err)
{
    json_t *r = NULL;
    if (flow__redact_json(s->secrets, answer, &r) != FLOW_OK)
        return nomem(err, s);
    flow_err rc =
        s->ops->answer_claim(s->priv, run_id, request, r ? r : answer, not_after, winner, err);
    json_decref(r);
    return rc;
}

flow_err flow__store_cache_put_redacted(struct flow__store *s, const char *fname, const char *task,
                                        const char *key, const json_t *entry, double now,
                                        double expires, flow_error *err)
{
    /* A key redacted would name another entry ("***" for every secret):
     * one that holds a secret is not kept at all. */
    if (flow__redact_hits(s->secrets, key, strlen(key)))
        return flow__error(err, FLOW_EINVAL,
                           "the cache key of task '%s' holds the value of a secret: not cached",
                           task);
    json_t *r = NULL;
    if (flow__redact_json(s->secrets, entry, &r) != FLOW_OK)
        return nomem(err, s);
    flow_err rc = s->ops->cache_put(s->priv, fname, task, key, r ? r : entry, now, expires, err);
    json_decref(r);
    return rc;
}
