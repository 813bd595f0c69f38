/* store.c -- the store registry: picks a backend by URL scheme and holds the
 * open store (see store.h and docs/internals/store.md). */
#include "util/compat.h"

#include <stdio.h>
#include <string.h>

#include "store/store.h"

#include "util/alloc.h"
#include "util/error.h"

/* NULL-terminated; backends that need optional libraries go in #ifdefs. */
static const struct flow__store_ops *const store_backends[] = {
    &flow__store_sqlite_ops,
    NULL,
};

void flow__run_meta_cleanup(struct flow__run_meta *m)
{
    if (!m)
        return;
    flow__free(m->flow);
    flow__free(m->version);
    flow__free(m->def_hash);
    json_decref(m->inputs);
    memset(m, 0, sizeof(*m));
}

/* "sqlite, disk" for messages; `out` must be large enough. */
static void scheme_list(char *out, size_t size)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; store_backends[i] && len < size; i++) {
        int n = snprintf(out + len, size - len, "%s%s", i ? ", " : "",
                         store_backends[i]->scheme);
        if (n < 0)
            break;
        len += (size_t)n;
    }
}

flow_err flow__store_open_flags(const char *url, unsigned flags, struct flow__store **out,
                                flow_error *err)
{
    *out = NULL;
    if (!url || !*url)
        return flow__error(err, FLOW_EINVAL, "empty store url");
    const char *colon = strchr(url, ':');
    char schemes[256];
    scheme_list(schemes, sizeof(schemes));
    if (!colon || colon == url)
        return flow__error(err, FLOW_EINVAL,
                           "store url '%s' has no scheme (expected scheme:..., built in: %s)",
                           url, schemes);
    size_t slen = (size_t)(colon - url);
    const struct flow__store_ops *ops = NULL;
    for (size_t i = 0; store_backends[i]; i++) {
        if (strlen(store_backends[i]->scheme) == slen &&
            !memcmp(store_backends[i]->scheme, url, slen)) {
            ops = store_backends[i];
            break;
        }
    }
    if (!ops)
        return flow__error(err, FLOW_EINVAL, "unknown store scheme '%.*s' in '%s' (built in: %s)",
                           (int)slen, url, url, schemes);

    struct flow__store *s = flow__calloc(1, sizeof(*s));
    char *copy = flow__strdup(url);
    if (!s || !copy) {
        flow__free(s);
        flow__free(copy);
        return flow__error(err, FLOW_ENOMEM, "out of memory opening store '%s'", url);
    }
    flow_err rc = ops->open(colon + 1, flags, &s->priv, err);
    if (rc != FLOW_OK) {
        flow__free(s);
        flow__free(copy);
        return rc;
    }
    s->ops = ops;
    s->url = copy;
    *out = s;
    return FLOW_OK;
}

flow_err flow__store_open(const char *url, struct flow__store **out, flow_error *err)
{
    return flow__store_open_flags(url, 0, out, err);
}

void flow__store_close(struct flow__store *s)
{
    if (!s)
        return;
    s->ops->close(s->priv);
    flow__free(s->url);
    flow__free(s);
}
