/* limits.c -- what a task or a flow asks of the limits shared across runs:
 * concurrency keys, rate limits and resources (docs/internals/limits.md).
 * The engine enforces them (core/gate.c); here they are only kept. */
#include "util/compat.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "def/flowdef.h"
#include "util/alloc.h"
#include "util/error.h"

void flow__limit_free(struct flow__limit *l)
{
    if (!l)
        return;
    flow__tmpl_free(l->key);
    flow__free(l->key_src);
    flow__free(l->fixed);
    flow__free(l);
}

/* A new limit, or NULL with `err` filled. */
static struct flow__limit *limit_new(int limit, double window, const char *key,
                                     const char *fixed, flow_error *err)
{
    struct flow__limit *l = flow__calloc(1, sizeof(*l));
    if (!l || !(l->fixed = flow__strdup(fixed)) || (key && !(l->key_src = flow__strdup(key)))) {
        flow__limit_free(l);
        flow__error(err, FLOW_ENOMEM, "out of memory");
        return NULL;
    }
    l->limit = limit;
    l->window = window;
    if (key && flow__tmpl_compile_string(key, &l->key, err) != FLOW_OK) {
        flow__limit_free(l);
        return NULL;
    }
    return l;
}

static flow_err set_task_limit(flow_task *t, struct flow__limit **slot, int limit, double window,
                               const char *key, flow_error *err)
{
    if (flow__flow_mutate(t->flow))
        return flow__error(err, FLOW_ESTATE, "flow '%s' is running: it cannot change",
                           t->flow->name);
    struct task_ext *x = flow__task_ext_of(t);
    if (!x)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    struct flow__limit *l = NULL;
    if (limit > 0) {
        char fixed[512];
        snprintf(fixed, sizeof(fixed), "%s.%s", t->flow->name ? t->flow->name : "flow", t->name);
        if (!(l = limit_new(limit, window, key, fixed, err)))
            return err ? err->code : FLOW_ENOMEM;
    }
    flow__limit_free(*slot);
    *slot = l;
    return FLOW_OK;
}

flow_err flow_task_set_concurrency(flow_task *t, int limit, const char *key, flow_error *err)
{
    if (limit < 0)
        return flow__error(err, FLOW_EINVAL, "task '%s': a concurrency limit must be 1 or more",
                           t->name);
    struct task_ext *x = flow__task_ext_of(t);
    if (!x)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    return set_task_limit(t, &x->concurrency_limit, limit, 0, key, err);
}

flow_err flow_task_set_rate_limit(flow_task *t, int limit, double window, const char *key,
                                  flow_error *err)
{
    if (limit < 0 || (limit > 0 && !(window > 0 && window <= 366.0 * 86400)))
        return flow__error(err, FLOW_EINVAL,
                           "task '%s': a rate limit needs a count of 1 or more and a window of "
                           "more than 0 seconds and at most a year",
                           t->name);
    struct task_ext *x = flow__task_ext_of(t);
    if (!x)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    return set_task_limit(t, &x->rate_limit, limit, window, key, err);
}

flow_err flow_set_concurrency(flow *f, int limit, const char *key, flow_error *err)
{
    if (limit < 0)
        return flow__error(err, FLOW_EINVAL, "flow '%s': a concurrency limit must be 1 or more",
                           f->name);
    if (flow__flow_mutate(f))
        return flow__error(err, FLOW_ESTATE, "flow '%s' is running: it cannot change", f->name);
    struct flow__limit *l = NULL;
    if (limit > 0 && !(l = limit_new(limit, 0, key, f->name ? f->name : "flow", err)))
        return err ? err->code : FLOW_ENOMEM;
    flow__limit_free(f->run_limit);
    f->run_limit = l;
    return FLOW_OK;
}

static bool resources_valid(const flow_resources *r)
{
    const double v[3] = {r->cpu, r->memory, r->gpu};
    for (int i = 0; i < 3; i++)
        if (!isfinite(v[i]) || v[i] < 0)
            return false;
    return true;
}

flow_err flow_task_set_resources(flow_task *t, const flow_resources *r, flow_error *err)
{
    if (r && !resources_valid(r))
        return flow__error(err, FLOW_EINVAL, "task '%s': resources must be 0 or more", t->name);
    if (flow__flow_mutate(t->flow))
        return flow__error(err, FLOW_ESTATE, "flow '%s' is running: it cannot change",
                           t->flow->name);
    struct task_ext *x = flow__task_ext_of(t);
    if (!x)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    flow_resources *copy = NULL;
    if (r && (r->cpu > 0 || r->memory > 0 || r->gpu > 0)) {
        if (!(copy = flow__malloc(sizeof(*copy))))
            return flow__error(err, FLOW_ENOMEM, "out of memory");
        *copy = *r;
    }
    flow__free(x->resources);
    x->resources = copy;
    return FLOW_OK;
}

/* "16G" -> bytes; false when it is not a size. */
static bool parse_bytes(const char *s, size_t len, double *out)
{
    char buf[64];
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (end == buf || errno || !isfinite(v) || v < 0)
        return false;
    double unit = 1;
    if (*end) {
        static const char units[] = "KMGT";
        const char *u = strchr(units, toupper((unsigned char)*end));
        if (!u || !*end)
            return false;
        unit = pow(1024, (double)(u - units) + 1);
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
        if (*end)
            return false;
    }
    *out = v * unit;
    return isfinite(*out);
}

flow_err flow_resources_parse(const char *spec, flow_resources *out, flow_error *err)
{
    flow_resources r = *out;
    const char *p = spec ? spec : "";
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq)
            return flow__error(err, FLOW_EINVAL,
                               "'%.*s' is not NAME=AMOUNT (cpu=8,memory=16G,gpu=1)", (int)len, p);
        size_t nlen = (size_t)(eq - p);
        const char *val = eq + 1;
        size_t vlen = len - nlen - 1;
        double v;
        if (!parse_bytes(val, vlen, &v))
            return flow__error(err, FLOW_EINVAL, "'%.*s' is not an amount of %.*s", (int)vlen,
                               val, (int)nlen, p);
        if (nlen == 3 && !strncmp(p, "cpu", 3))
            r.cpu = v;
        else if (nlen == 6 && !strncmp(p, "memory", 6))
            r.memory = v;
        else if (nlen == 3 && !strncmp(p, "gpu", 3))
            r.gpu = v;
        else
            return flow__error(err, FLOW_EINVAL, "unknown resource '%.*s' (cpu, memory or gpu)",
                               (int)nlen, p);
        p += len;
        if (*p == ',')
            p++;
    }
    *out = r;
    return FLOW_OK;
}

void flow_resources_machine(flow_resources *out)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long pages = sysconf(_SC_PHYS_PAGES);
    long page = sysconf(_SC_PAGESIZE);
    out->cpu = cores > 0 ? (double)cores : 1;
    out->memory = pages > 0 && page > 0 ? (double)pages * (double)page : 0;
    out->gpu = 0;
}

void flow__format_bytes(double bytes, char *buf, size_t size)
{
    static const char units[] = "KMGT";
    int u = -1;
    double v = bytes;
    while (v >= 1024 && u < 3) {
        v /= 1024;
        u++;
    }
    if (u < 0)
        snprintf(buf, size, "%.0f", bytes);
    else if (v == floor(v))
        snprintf(buf, size, "%.0f%c", v, units[u]);
    else
        snprintf(buf, size, "%.1f%c", v, units[u]);
}

const char *flow__resources_misfit(const flow_resources *need, const flow_resources *have,
                                   char *buf, size_t size)
{
    /* A little slack: 0.1 + 0.2 of a cpu fits 0.3. */
    const double eps = 1e-9;
    if (need->cpu > have->cpu + eps)
        snprintf(buf, size, "cpu %g", need->cpu);
    else if (need->memory > have->memory + 0.5) {
        char b[32];
        flow__format_bytes(need->memory, b, sizeof(b));
        snprintf(buf, size, "memory %s", b);
    } else if (need->gpu > have->gpu + eps)
        snprintf(buf, size, "gpu %g", need->gpu);
    else
        return NULL;
    return buf;
}

/* How much of resource `what` ("cpu 2") `have` has, for a message. */
static void have_of(const char *what, const flow_resources *have, char *buf, size_t size)
{
    if (!strncmp(what, "cpu", 3))
        snprintf(buf, size, "%g", have->cpu);
    else if (!strncmp(what, "memory", 6))
        flow__format_bytes(have->memory, buf, size);
    else
        snprintf(buf, size, "%g", have->gpu);
}

static flow_err check_flow(const flow *f, const flow_resources *cap, int depth, flow_error *err)
{
    if (depth > 32)
        return FLOW_OK; /* nesting cycles are flow_validate's to report */
    for (size_t i = 0; i < f->tasks.count; i++) {
        const struct flow_task *t = f->tasks.items[i];
        if (!t->ext)
            continue;
        if (t->ext->subflow) {
            flow_err rc = check_flow(t->ext->subflow, cap, depth + 1, err);
            if (rc)
                return rc;
        }
        if (!t->ext->resources || t->policy->executor == FLOW_EXEC_REMOTE)
            continue;
        char what[64], have[32];
        if (!flow__resources_misfit(t->ext->resources, cap, what, sizeof(what)))
            continue;
        have_of(what, cap, have, sizeof(have));
        char name[8];
        size_t nlen = strcspn(what, " ");
        memcpy(name, what, nlen < sizeof(name) - 1 ? nlen : sizeof(name) - 1);
        name[nlen < sizeof(name) - 1 ? nlen : sizeof(name) - 1] = '\0';
        flow__error(err, FLOW_EINVAL,
                    "task '%s' asks %s, more than this engine has (%s %s): it could never "
                    "start (give it more with --resources %s=N)",
                    t->name, what, name, have, name);
        if (err && t->ext->origin_file) {
            /* Where the task is written, for editors. */
            snprintf(err->file, sizeof(err->file), "%s", t->ext->origin_file);
            err->line = t->ext->origin_line;
            err->column = t->ext->origin_column;
        }
        return FLOW_EINVAL;
    }
    return FLOW_OK;
}

flow_err flow_check_resources(const flow *f, const flow_resources *capacity, flow_error *err)
{
    flow_resources machine;
    if (!capacity) {
        flow_resources_machine(&machine);
        capacity = &machine;
    }
    return check_flow(f, capacity, 0, err);
}
