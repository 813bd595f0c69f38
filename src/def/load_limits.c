/* load_limits.c -- the limits of a workflow file: `concurrency: {limit,
 * key}` on a task or the flow, `rate_limit:` and `resources:` on a task
 * (docs/file-format.md, "Limits"). */
#include "util/compat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "def/load_int.h"
#include "util/error.h"

/* `key:` of a limit: a template string; NULL (and true) when absent. */
static bool get_key(struct loader *L, const struct val *x, const char *what, const char **out)
{
    *out = NULL;
    struct val k = flow__ld_member(L, x->v, "key");
    if (!k.v)
        return true;
    char kwhat[200];
    flow__ld_concat(kwhat, sizeof(kwhat), "'key' of ", what, (char *)NULL);
    if (!flow__ld_get_string(L, &k, kwhat, true, out))
        return false;
    return flow__ld_check_template(L, *out, k.pos, kwhat);
}

/* `{limit: N, key: TEMPLATE}` (or a bare N, where `bare_ok`). */
static bool get_concurrency(struct loader *L, const struct val *x, const char *what, int *limit,
                            const char **key, bool bare_ok)
{
    static const char *const keys[] = {"limit", "key"};
    *key = NULL;
    if (bare_ok && json_is_integer(x->v))
        return flow__ld_get_int(L, x, what, 1, "a positive integer", limit);
    if (!json_is_object(x->v)) {
        flow__ld_report(L, x->pos, "%s must be a mapping {limit: N, key: TEMPLATE}%s, not %s",
                        what, bare_ok ? " or a number" : "", flow__ld_type_name(x->v));
        return false;
    }
    if (!flow__ld_known_keys(L, x, keys, FLOW__ARRAY_LEN(keys), what))
        return false;
    struct val n = flow__ld_member(L, x->v, "limit");
    if (!n.v) {
        flow__ld_report(L, x->pos, "%s needs 'limit' (how many at once)", what);
        return false;
    }
    char nwhat[200];
    flow__ld_concat(nwhat, sizeof(nwhat), "'limit' of ", what, (char *)NULL);
    if (!flow__ld_get_int(L, &n, nwhat, 1, "a positive integer", limit))
        return false;
    return get_key(L, x, what, key);
}

bool flow__ld_parse_task_concurrency(struct loader *L, flow_task *t, const struct val *x,
                                     const char *what)
{
    int limit = 0;
    const char *key = NULL;
    if (!get_concurrency(L, x, what, &limit, &key, false))
        return false;
    flow_error e;
    flow__error_clear(&e);
    flow_err rc = t ? flow_task_set_concurrency(t, limit, key, &e) : FLOW_OK;
    if (rc)
        flow__ld_core_failed(L, x->pos, rc, &e, what);
    return rc == FLOW_OK;
}

void flow__ld_parse_flow_concurrency(struct loader *L, json_t *root)
{
    struct val x = flow__ld_member(L, root, "concurrency");
    if (!x.v)
        return;
    int limit = 0;
    const char *key = NULL;
    if (!get_concurrency(L, &x, "'concurrency' of the flow", &limit, &key, true))
        return;
    flow_error e;
    flow__error_clear(&e);
    flow_err rc = flow_set_concurrency(L->f, limit, key, &e);
    if (rc)
        flow__ld_core_failed(L, x.pos, rc, &e, "'concurrency' of the flow");
}

bool flow__ld_parse_cache(struct loader *L, const struct val *x, const char *what,
                          const char **key, double *ttl)
{
    static const char *const keys[] = {"key", "ttl"};
    *key = NULL;
    *ttl = 0;
    if (!json_is_object(x->v)) {
        flow__ld_report(L, x->pos, "%s must be a mapping {key: TEMPLATE, ttl: DURATION}, not %s",
                        what, flow__ld_type_name(x->v));
        return false;
    }
    if (!flow__ld_known_keys(L, x, keys, FLOW__ARRAY_LEN(keys), what))
        return false;
    struct val k = flow__ld_member(L, x->v, "key");
    if (!k.v) {
        flow__ld_report(L, x->pos,
                        "%s needs 'key': a template naming what the output depends on, such "
                        "as \"{{ inputs.url }}\"",
                        what);
        return false;
    }
    char kwhat[200];
    flow__ld_concat(kwhat, sizeof(kwhat), "'key' of ", what, (char *)NULL);
    if (!flow__ld_get_string(L, &k, kwhat, true, key) ||
        !flow__ld_check_template(L, *key, k.pos, kwhat))
        return false;
    struct val t = flow__ld_member(L, x->v, "ttl");
    if (!t.v)
        return true;
    char twhat[200];
    flow__ld_concat(twhat, sizeof(twhat), "'ttl' of ", what, (char *)NULL);
    if (!flow__ld_get_duration(L, &t, twhat, ttl))
        return false;
    if (!(*ttl > 0) || *ttl > 10.0 * 366 * 86400) {
        flow__ld_report(L, t.pos,
                        "%s must be more than 0 and at most 10 years (leave it out for entries "
                        "that never expire)",
                        twhat);
        return false;
    }
    return true;
}

/* "10/s", "100/m", "1000/h", "5/10s": starts per window. */
static bool parse_rate(const char *s, int *count, double *window)
{
    char *end;
    long n = strtol(s, &end, 10);
    if (end == s || n < 1 || n > 1000000000L || *end != '/')
        return false;
    const char *w = end + 1;
    static const struct {
        const char *name;
        double seconds;
    } units[] = {{"s", 1},      {"sec", 1},     {"second", 1}, {"m", 60},
                 {"min", 60},   {"minute", 60}, {"h", 3600},   {"hour", 3600},
                 {"d", 86400},  {"day", 86400}};
    for (size_t i = 0; i < FLOW__ARRAY_LEN(units); i++) {
        if (!strcmp(w, units[i].name)) {
            *count = (int)n;
            *window = units[i].seconds;
            return true;
        }
    }
    double d;
    if (!flow__parse_duration(w, &d) || !(d > 0))
        return false;
    *count = (int)n;
    *window = d;
    return true;
}

void flow__ld_parse_rate_limit(struct loader *L, flow_task *t, const struct val *x,
                               const char *what)
{
    static const char *const keys[] = {"limit", "key"};
    struct val rate = *x;
    const char *key = NULL;
    if (json_is_object(x->v)) {
        if (!flow__ld_known_keys(L, x, keys, FLOW__ARRAY_LEN(keys), what))
            return;
        rate = flow__ld_member(L, x->v, "limit");
        if (!rate.v) {
            flow__ld_report(L, x->pos, "%s needs 'limit' (\"10/s\", \"100/m\", \"1000/h\")",
                            what);
            return;
        }
        if (!get_key(L, x, what, &key))
            return;
    }
    int count = 0;
    double window = 0;
    if (!json_is_string(rate.v) || !parse_rate(json_string_value(rate.v), &count, &window)) {
        char buf[64];
        const char *text = flow__ld_scalar_text(&rate, buf, sizeof(buf));
        flow__ld_report(L, rate.pos,
                        "bad rate '%s' for %s: write COUNT/UNIT (\"10/s\", \"100/m\", "
                        "\"1000/h\", or a window such as \"5/10s\")",
                        text ? text : flow__ld_type_name(rate.v), what);
        return;
    }
    flow_error e;
    flow__error_clear(&e);
    flow_err rc = t ? flow_task_set_rate_limit(t, count, window, key, &e) : FLOW_OK;
    if (rc)
        flow__ld_core_failed(L, x->pos, rc, &e, what);
}

/* An amount: a number, or for memory a size such as "4G" or "512M". */
static bool get_amount(struct loader *L, const struct val *x, const char *name, const char *what,
                       double *out)
{
    if (json_is_number(x->v) && json_number_value(x->v) >= 0 &&
        isfinite(json_number_value(x->v))) {
        *out = json_number_value(x->v);
        return true;
    }
    if (json_is_string(x->v) && !strcmp(name, "memory")) {
        char spec[96];
        flow__ld_concat(spec, sizeof(spec), "memory=", json_string_value(x->v), (char *)NULL);
        flow_resources r = {0};
        flow_error e;
        if (flow_resources_parse(spec, &r, &e) == FLOW_OK) {
            *out = r.memory;
            return true;
        }
    }
    char buf[64];
    const char *text = flow__ld_scalar_text(x, buf, sizeof(buf));
    flow__ld_report(L, x->pos, "bad amount '%s' for '%s' of %s: %s",
                    text ? text : flow__ld_type_name(x->v), name, what,
                    strcmp(name, "memory") ? "a number, 0 or more"
                                           : "bytes, or a size such as 512M, 4G");
    return false;
}

void flow__ld_parse_resources(struct loader *L, flow_task *t, const struct val *x,
                              const char *what)
{
    static const char *const keys[] = {"cpu", "memory", "gpu"};
    if (!json_is_object(x->v)) {
        flow__ld_report(L, x->pos, "%s must be a mapping {cpu: 2, memory: 4G, gpu: 1}, not %s",
                        what, flow__ld_type_name(x->v));
        return;
    }
    if (!flow__ld_known_keys(L, x, keys, FLOW__ARRAY_LEN(keys), what))
        return;
    flow_resources r = {0};
    double *slots[] = {&r.cpu, &r.memory, &r.gpu};
    for (size_t i = 0; i < FLOW__ARRAY_LEN(keys); i++) {
        struct val v = flow__ld_member(L, x->v, keys[i]);
        if (v.v && !get_amount(L, &v, keys[i], what, slots[i]))
            return;
    }
    flow_error e;
    flow__error_clear(&e);
    flow_err rc = t ? flow_task_set_resources(t, &r, &e) : FLOW_OK;
    if (rc)
        flow__ld_core_failed(L, x->pos, rc, &e, what);
}
