/* load_net.c -- the `http:` and `llm:` bodies of a task in a file: their
 * keys and templates checked where they are written, then compiled by
 * netspec.c (which the C API uses too), its errors put at the position of
 * the value they are about. */
#include "util/compat.h"

#include <stdio.h>
#include <string.h>

#include "def/load_int.h"
#include "def/prompts.h"
#include "util/alloc.h"
#include "util/error.h"

static const char *const http_keys[] = {"method", "url",      "headers", "body",
                                        "expect", "timeout", "max_size", "ca_file"};
static const char *const llm_keys[] = {"model",      "prompt", "messages", "temperature",
                                       "max_tokens", "json",   "timeout",  "max_size"};
static const char *const message_keys[] = {"role", "content"};

/* Where netspec.c says the spec is wrong. */
static struct flow__yaml_pos bad_pos(struct loader *L, const struct val *x,
                                     const struct spec_bad *bad)
{
    if (!bad->key)
        return x->pos;
    struct val v = flow__ld_member(L, x->v, bad->key);
    if (!v.v)
        return x->pos;
    if (bad->index >= 0 && json_is_array(v.v) && (size_t)bad->index < json_array_size(v.v))
        v = flow__ld_item(L, v.v, (size_t)bad->index);
    if (bad->sub && json_is_object(v.v) && !strcmp(bad->key, "headers"))
        return flow__yaml_key_pos(L->doc, v.v, bad->sub); /* the header's name */
    if (bad->sub && json_is_object(v.v)) {
        struct val s = flow__ld_member(L, v.v, bad->sub);
        if (s.v)
            return s.pos;
    }
    return v.pos;
}

/* The string template at `key` of `x`, checked (secrets allowed when
 * `secrets`); true when absent. */
static bool check_field(struct loader *L, const struct val *x, const char *key, const char *what,
                        bool secrets)
{
    struct val v = flow__ld_member(L, x->v, key);
    if (!v.v)
        return true;
    char kwhat[300];
    flow__ld_concat(kwhat, sizeof(kwhat), "'", key, "' in ", what, (char *)NULL);
    L->in_env = secrets;
    bool ok = flow__ld_check_template_value(L, &v, kwhat);
    L->in_env = false;
    return ok;
}

/* The templates of an http request: secrets may be named in the url, the
 * headers and the body (none of it is journaled). */
static bool check_http_templates(struct loader *L, const struct val *x, const char *what)
{
    bool ok = check_field(L, x, "method", what, false);
    ok = check_field(L, x, "url", what, true) && ok;
    ok = check_field(L, x, "body", what, true) && ok;
    struct val h = flow__ld_member(L, x->v, "headers");
    if (json_is_object(h.v)) {
        const char *k;
        json_t *v;
        json_object_foreach(h.v, k, v)
        {
            char hwhat[300];
            flow__ld_concat(hwhat, sizeof(hwhat), "header '", k, "' in ", what, (char *)NULL);
            struct val hv = flow__ld_member(L, h.v, k);
            L->in_env = true;
            ok = flow__ld_check_template_value(L, &hv, hwhat) && ok;
            L->in_env = false;
        }
    }
    return ok;
}

/* `ca_file` relative to the workflow file: a copy of the mapping with it
 * resolved (a new reference), or NULL after reporting. */
static json_t *resolve_ca(struct loader *L, const struct val *x, const char *what)
{
    struct val ca = flow__ld_member(L, x->v, "ca_file");
    if (!json_is_string(ca.v) || strstr(json_string_value(ca.v), "{{") ||
        !json_string_length(ca.v))
        return json_incref(x->v); /* netspec.c says what is wrong */
    char kwhat[300];
    flow__ld_concat(kwhat, sizeof(kwhat), "'ca_file' in ", what, (char *)NULL);
    char *path = flow__ld_resolve_cwd(L, json_string_value(ca.v), ca.pos, kwhat);
    json_t *copy = path ? json_copy(x->v) : NULL;
    if (path && (!copy || json_object_set_new(copy, "ca_file", json_string(path)))) {
        L->nomem = true;
        json_decref(copy);
        copy = NULL;
    }
    flow__free(path);
    return copy;
}

struct http_spec *flow__ld_parse_http(struct loader *L, const struct val *x, const char *what)
{
    if (json_is_object(x->v) &&
        (!flow__ld_known_keys(L, x, http_keys, FLOW__ARRAY_LEN(http_keys), what) ||
         !check_http_templates(L, x, what)))
        return NULL;
    json_t *src = json_is_object(x->v) ? resolve_ca(L, x, what) : json_incref(x->v);
    if (!src)
        return NULL;
    struct http_spec *spec = NULL;
    struct spec_bad bad = {.index = -1};
    flow_error e;
    flow__error_clear(&e);
    flow_err rc = flow__http_spec_parse(src, what, &spec, &bad, &e);
    json_decref(src);
    if (rc == FLOW_ENOMEM)
        L->nomem = true;
    else if (rc)
        flow__ld_report(L, bad_pos(L, x, &bad), "%s", e.message);
    return spec;
}

static bool check_llm_templates(struct loader *L, const struct val *x, const char *what)
{
    bool ok = check_field(L, x, "model", what, false);
    struct val p = flow__ld_member(L, x->v, "prompt");
    if (json_is_string(p.v))
        ok = check_field(L, x, "prompt", what, false) && ok;
    if (json_is_object(p.v)) {
        static const char *const prompt_keys[] = {"name", "label", "version", "vars"};
        char pwhat[300];
        flow__ld_concat(pwhat, sizeof(pwhat), "'prompt' in ", what, (char *)NULL);
        struct val vars = flow__ld_member(L, p.v, "vars");
        ok = flow__ld_known_keys(L, &p, prompt_keys, FLOW__ARRAY_LEN(prompt_keys), pwhat) && ok;
        if (vars.v) {
            flow__ld_concat(pwhat, sizeof(pwhat), "'vars' of 'prompt' in ", what, (char *)NULL);
            ok = flow__ld_check_template_value(L, &vars, pwhat) && ok;
        }
    }
    struct val m = flow__ld_member(L, x->v, "messages");
    for (size_t i = 0; json_is_array(m.v) && i < json_array_size(m.v); i++) {
        struct val it = flow__ld_item(L, m.v, i);
        if (!json_is_object(it.v))
            continue; /* netspec.c says so */
        char iwhat[300], num[24];
        snprintf(num, sizeof(num), "%zu", i + 1);
        flow__ld_concat(iwhat, sizeof(iwhat), "item ", num, " of 'messages' in ", what,
                        (char *)NULL);
        if (!flow__ld_known_keys(L, &it, message_keys, FLOW__ARRAY_LEN(message_keys), iwhat)) {
            ok = false;
            continue;
        }
        ok = check_field(L, &it, "content", iwhat, false) && ok;
    }
    return ok;
}

struct llm_spec *flow__ld_parse_llm(struct loader *L, const struct val *x, const char *what)
{
    if (json_is_object(x->v) &&
        (!flow__ld_known_keys(L, x, llm_keys, FLOW__ARRAY_LEN(llm_keys), what) ||
         !check_llm_templates(L, x, what)))
        return NULL;
    struct llm_spec *spec = NULL;
    struct spec_bad bad = {.index = -1};
    flow_error e;
    flow__error_clear(&e);
    char *dir = flow__prompt_dir(L->dir);
    if (!dir) {
        L->nomem = true;
        return NULL;
    }
    flow_err rc = flow__llm_spec_parse(x->v, what, dir, &spec, &bad, &e);
    flow__free(dir);
    if (rc == FLOW_ENOMEM)
        L->nomem = true;
    else if (rc)
        flow__ld_report(L, bad_pos(L, x, &bad), "%s", e.message);
    return spec;
}
