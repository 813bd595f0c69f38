/* cache_spec.c -- what a task asks of the cache (`cache: {key, ttl}`,
 * flow_task_set_cache). Only kept here; the engine looks entries up and
 * writes them (core/cache.c, docs/internals/prompts.md "Cache"). */
#include "util/compat.h"

#include <math.h>

#include "def/flowdef.h"
#include "util/alloc.h"
#include "util/error.h"

/* A year and a bit: a longer ttl is a typo (or "never": leave it out). */
#define CACHE_TTL_MAX (10.0 * 366 * 86400)

void flow__cache_spec_free(struct flow__cache_spec *c)
{
    if (!c)
        return;
    flow__tmpl_free(c->key);
    flow__free(c->key_src);
    flow__free(c);
}

flow_err flow_task_set_cache(flow_task *t, const char *key, double ttl_seconds, flow_error *err)
{
    if (key && !(ttl_seconds >= 0 && ttl_seconds <= CACHE_TTL_MAX))
        return flow__error(err, FLOW_EINVAL,
                           "task '%s': a cache ttl must be 0 (no expiry) or a duration of at "
                           "most 10 years",
                           t->name);
    if (flow__flow_mutate(t->flow))
        return flow__error(err, FLOW_ESTATE, "flow '%s' is running: it cannot change",
                           t->flow->name);
    struct task_ext *x = flow__task_ext_of(t);
    if (!x)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    struct flow__cache_spec *c = NULL;
    if (key) {
        c = flow__calloc(1, sizeof(*c));
        if (!c || !(c->key_src = flow__strdup(key))) {
            flow__cache_spec_free(c);
            return flow__error(err, FLOW_ENOMEM, "out of memory");
        }
        c->ttl = ttl_seconds;
        if (flow__tmpl_compile_string(key, &c->key, err) != FLOW_OK) {
            flow__cache_spec_free(c);
            return err ? err->code : FLOW_ETEMPLATE;
        }
    }
    flow__cache_spec_free(x->cache);
    x->cache = c;
    return FLOW_OK;
}
