/* netspec.c -- what an `http:` or `llm:` task asks for, checked and
 * compiled from the mapping a workflow file writes (the C API takes the same
 * mapping): templates for what is rendered per activation, plain values for
 * the rest. Requests are made by core/net.c (docs/internals/prompts.md). */
#include "util/compat.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "def/flowdef.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/json.h"

static const char *const http_keys[] = {"method", "url",      "headers", "body",
                                        "expect", "timeout", "max_size", "ca_file"};
static const char *const llm_keys[] = {"model",      "prompt",  "messages", "temperature",
                                       "max_tokens", "json",    "timeout",  "max_size"};
static const char *const message_keys[] = {"role", "content"};

bool flow__http_valid_method(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return false;
    return true;
}

bool flow__http_valid_header_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!(isalnum(c) || strchr("!#$%&'*+-.^_`|~", c)))
            return false;
    }
    return true;
}

/* How a value reads in messages (a file's words: an object is a mapping). */
static const char *type_name(const json_t *v)
{
    return json_is_object(v) ? "a mapping" : flow__json_type_name(v);
}

/* A parse in progress: the message of the first error, and where. */
struct sp {
    const char *what;
    struct spec_bad *bad;
    flow_error *err;
    flow_err rc;
};

static flow_err fail_at(struct sp *p, flow_err code, const char *key, long index, const char *sub,
                        const char *fmt, ...) FLOW__PRINTF(6, 7);

static flow_err fail_at(struct sp *p, flow_err code, const char *key, long index, const char *sub,
                        const char *fmt, ...)
{
    if (p->rc)
        return p->rc;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    flow__error(p->err, code, "%s", msg);
    if (p->bad)
        *p->bad = (struct spec_bad){.key = key, .index = index, .sub = sub};
    return p->rc = code;
}

static bool in_list(const char *k, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(k, list[i]))
            return true;
    return false;
}

/* Every key of `m` is one of `keys`. */
static bool known_keys(struct sp *p, json_t *m, const char *const *keys, size_t n, const char *key,
                       long index)
{
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v)
    {
        (void)v;
        if (!in_list(k, keys, n)) {
            if (key)
                fail_at(p, FLOW_EINVAL, key, index, k, "unknown key '%s' in item %ld of '%s' in %s",
                        k, index + 1, key, p->what);
            else
                fail_at(p, FLOW_EINVAL, k, -1, NULL, "unknown key '%s' in %s", k, p->what);
            return false;
        }
    }
    return true;
}

/* A string template at `key` (NULL when absent and not required). */
static bool tmpl_string(struct sp *p, json_t *m, const char *key, bool required,
                        struct flow__tmpl **out)
{
    json_t *v = json_object_get(m, key);
    if (!v) {
        if (required)
            fail_at(p, FLOW_EINVAL, NULL, -1, NULL, "%s needs '%s'", p->what, key);
        return !required;
    }
    if (!json_is_string(v) || !json_string_length(v)) {
        fail_at(p, FLOW_EINVAL, key, -1, NULL, "'%s' in %s must be a non-empty string, not %s",
                key, p->what, json_is_string(v) ? "an empty string" : type_name(v));
        return false;
    }
    flow_error terr;
    if (flow__tmpl_compile_string(json_string_value(v), out, &terr) != FLOW_OK) {
        fail_at(p, terr.code, key, -1, NULL, "'%s' in %s: %s", key, p->what, terr.message);
        return false;
    }
    return true;
}

/* A duration: seconds (a number > 0) or "30s", "5m"... */
static bool duration(struct sp *p, json_t *m, const char *key, double *out)
{
    json_t *v = json_object_get(m, key);
    if (!v)
        return true;
    double d = -1;
    if (json_is_number(v))
        d = json_number_value(v);
    else if (json_is_string(v) && !flow__parse_duration(json_string_value(v), &d))
        d = -1;
    if (!(d > 0) || !isfinite(d) || d > 86400 * 7) {
        char buf[64];
        snprintf(buf, sizeof(buf), "%s", json_is_string(v) ? json_string_value(v) : "");
        fail_at(p, FLOW_EINVAL, key, -1, NULL,
                "bad duration%s%s%s for '%s' in %s (use 250ms, 30s, 5m or seconds; more "
                "than 0, up to 7d)",
                buf[0] ? " '" : "", buf, buf[0] ? "'" : "", key, p->what);
        return false;
    }
    *out = d;
    return true;
}

/* A size in bytes: a number, or "512K", "10M", "1G". */
static bool size_of(struct sp *p, json_t *m, const char *key, size_t *out)
{
    json_t *v = json_object_get(m, key);
    if (!v)
        return true;
    double bytes = -1;
    if (json_is_number(v)) {
        bytes = json_number_value(v);
    } else if (json_is_string(v) && json_string_length(v) < 60) {
        char spec[80];
        snprintf(spec, sizeof(spec), "memory=%s", json_string_value(v));
        flow_resources r = {0};
        flow_error e;
        if (flow_resources_parse(spec, &r, &e) == FLOW_OK)
            bytes = r.memory;
    }
    if (!(bytes >= 1) || bytes > (double)((size_t)1 << 30)) {
        fail_at(p, FLOW_EINVAL, key, -1, NULL,
                "bad size for '%s' in %s: bytes, or a size such as 512K or 10M (1 byte to 1G)",
                key, p->what);
        return false;
    }
    *out = (size_t)bytes;
    return true;
}

/* ---- http ----------------------------------------------------------------- */

void flow__http_spec_free(struct http_spec *s)
{
    if (!s)
        return;
    json_decref(s->src);
    flow__tmpl_free(s->method);
    flow__tmpl_free(s->url);
    for (size_t i = 0; i < s->header_count; i++) {
        flow__free(s->headers[i].name);
        flow__tmpl_free(s->headers[i].value);
    }
    flow__free(s->headers);
    flow__tmpl_free(s->body);
    flow__free(s->expect);
    flow__free(s->ca_file);
    flow__free(s);
}

/* A literal method must be one; a template is checked when rendered. */
static bool http_method(struct sp *p, json_t *m, struct http_spec *s)
{
    json_t *v = json_object_get(m, "method");
    if (!v)
        return true;
    if (json_is_string(v) && !strstr(json_string_value(v), "{{")) {
        char up[32];
        const char *in = json_string_value(v);
        size_t n = strlen(in);
        for (size_t i = 0; i < n && i < sizeof(up) - 1; i++)
            up[i] = (char)toupper((unsigned char)in[i]);
        up[n < sizeof(up) - 1 ? n : sizeof(up) - 1] = '\0';
        if (n >= sizeof(up) - 1 || !flow__http_valid_method(up)) {
            fail_at(p, FLOW_EINVAL, "method", -1, NULL,
                    "bad 'method' '%s' in %s: GET, POST, PUT, PATCH, DELETE, HEAD...", in,
                    p->what);
            return false;
        }
        flow_error terr;
        if (flow__tmpl_compile_string(up, &s->method, &terr) != FLOW_OK) {
            fail_at(p, terr.code, "method", -1, NULL, "%s", terr.message);
            return false;
        }
        return true;
    }
    return tmpl_string(p, m, "method", false, &s->method);
}

/* A literal URL must be http:// or https://. */
static bool http_url(struct sp *p, json_t *m, struct http_spec *s)
{
    if (!tmpl_string(p, m, "url", true, &s->url))
        return false;
    const char *u = json_string_value(json_object_get(m, "url"));
    if (strncmp(u, "{{", 2) != 0 && strncasecmp(u, "http://", 7) != 0 &&
        strncasecmp(u, "https://", 8) != 0) {
        fail_at(p, FLOW_EINVAL, "url", -1, NULL,
                "'url' in %s must start with http:// or https:// ('%s')", p->what, u);
        return false;
    }
    return true;
}

static bool http_headers(struct sp *p, json_t *m, struct http_spec *s)
{
    json_t *h = json_object_get(m, "headers");
    if (!h)
        return true;
    if (!json_is_object(h)) {
        fail_at(p, FLOW_EINVAL, "headers", -1, NULL,
                "'headers' in %s must be a mapping of header names to values, not %s", p->what,
                type_name(h));
        return false;
    }
    s->headers = flow__calloc(json_object_size(h) ? json_object_size(h) : 1, sizeof(*s->headers));
    if (!s->headers) {
        fail_at(p, FLOW_ENOMEM, NULL, -1, NULL, "out of memory");
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach(h, k, v)
    {
        if (!flow__http_valid_header_name(k)) {
            fail_at(p, FLOW_EINVAL, "headers", -1, k,
                    "bad header name '%s' in %s (letters, digits and !#$%%&'*+-.^_`|~)", k,
                    p->what);
            return false;
        }
        char num[64];
        const char *text = json_string_value(v);
        if (json_is_integer(v))
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v)), text = num;
        else if (json_is_real(v))
            snprintf(num, sizeof(num), "%.17g", json_real_value(v)), text = num;
        else if (json_is_boolean(v))
            text = json_is_true(v) ? "true" : "false";
        if (!text) {
            fail_at(p, FLOW_EINVAL, "headers", -1, k,
                    "header '%s' in %s must be a string, not %s", k, p->what, type_name(v));
            return false;
        }
        if (strpbrk(text, "\r\n")) {
            fail_at(p, FLOW_EINVAL, "headers", -1, k,
                    "header '%s' in %s holds a line break", k, p->what);
            return false;
        }
        struct task_env *e = &s->headers[s->header_count];
        flow_error terr;
        if (!(e->name = flow__strdup(k))) {
            fail_at(p, FLOW_ENOMEM, NULL, -1, NULL, "out of memory");
            return false;
        }
        s->header_count++;
        if (flow__tmpl_compile_string(text, &e->value, &terr) != FLOW_OK) {
            fail_at(p, terr.code, "headers", -1, k, "header '%s' in %s: %s", k, p->what,
                    terr.message);
            return false;
        }
    }
    return true;
}

static bool http_expect(struct sp *p, json_t *m, struct http_spec *s)
{
    json_t *e = json_object_get(m, "expect");
    if (!e)
        return true;
    size_t n = json_is_array(e) ? json_array_size(e) : 1;
    if ((json_is_array(e) && !n) || (!json_is_array(e) && !json_is_integer(e))) {
        fail_at(p, FLOW_EINVAL, "expect", -1, NULL,
                "'expect' in %s must be a status or a non-empty list of statuses ([200, 201]), "
                "not %s",
                p->what, json_is_array(e) ? "an empty list" : type_name(e));
        return false;
    }
    if (!(s->expect = flow__calloc(n, sizeof(*s->expect)))) {
        fail_at(p, FLOW_ENOMEM, NULL, -1, NULL, "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_is_array(e) ? json_array_get(e, i) : e;
        json_int_t st = json_is_integer(v) ? json_integer_value(v) : 0;
        if (st < 100 || st > 599) {
            fail_at(p, FLOW_EINVAL, "expect", json_is_array(e) ? (long)i : -1, NULL,
                    "'expect' in %s: an HTTP status is an integer from 100 to 599", p->what);
            return false;
        }
        s->expect[s->expect_count++] = (int)st;
    }
    return true;
}

flow_err flow__http_spec_parse(json_t *src, const char *what, struct http_spec **out,
                               struct spec_bad *bad, flow_error *err)
{
    struct sp p = {.what = what, .bad = bad, .err = err};
    *out = NULL;
    if (!json_is_object(src))
        return fail_at(&p, FLOW_EINVAL, NULL, -1, NULL,
                       "%s must be a mapping {url, method, headers, body, expect, timeout}, "
                       "not %s",
                       what, src ? type_name(src) : "nothing");
    struct http_spec *s = flow__calloc(1, sizeof(*s));
    if (!s)
        return fail_at(&p, FLOW_ENOMEM, NULL, -1, NULL, "out of memory");
    s->timeout = FLOW__NET_TIMEOUT;
    s->max_size = FLOW__NET_MAX_BYTES;
    s->src = json_deep_copy(src);
    json_t *body = json_object_get(src, "body");
    json_t *ca = json_object_get(src, "ca_file");
    flow_error terr;
    if (!s->src) {
        fail_at(&p, FLOW_ENOMEM, NULL, -1, NULL, "out of memory");
    } else if (known_keys(&p, src, http_keys, FLOW__ARRAY_LEN(http_keys), NULL, -1) &&
               http_method(&p, src, s) && http_url(&p, src, s) && http_headers(&p, src, s) &&
               http_expect(&p, src, s) && duration(&p, src, "timeout", &s->timeout) &&
               size_of(&p, src, "max_size", &s->max_size)) {
        if (body && flow__tmpl_compile(body, &s->body, &terr) != FLOW_OK)
            fail_at(&p, terr.code, "body", -1, NULL, "'body' in %s: %s", what, terr.message);
        else if (ca && (!json_is_string(ca) || !json_string_length(ca) ||
                        strstr(json_string_value(ca), "{{")))
            fail_at(&p, FLOW_EINVAL, "ca_file", -1, NULL,
                    "'ca_file' in %s must be the path of a CA bundle (no template)", what);
        else if (ca && !(s->ca_file = flow__strdup(json_string_value(ca))))
            fail_at(&p, FLOW_ENOMEM, NULL, -1, NULL, "out of memory");
    }
    if (p.rc) {
        flow__http_spec_free(s);
        return p.rc;
    }
    *out = s;
    return FLOW_OK;
}

/* ---- llm ------------------------------------------------------------------ */

/* `prompt: {name, label, version, vars}`: the version of a prompt file
 * (def/prompt_task.c), read now. */
static bool named_prompt(struct sp *p, json_t *prompt, const char *dir, struct llm_spec *s)
{
    const char *field = NULL;
    flow_error e;
    flow__error_clear(&e);
    flow_err rc = flow__prompt_spec_from_json(prompt, dir, p->what, &s->named, &field, &e);
    if (rc)
        fail_at(p, rc, "prompt", -1, field && strcmp(field, "name") ? field : "name", "%s",
                e.message);
    return rc == FLOW_OK;
}

void flow__llm_spec_free(struct llm_spec *s)
{
    if (!s)
        return;
    json_decref(s->src);
    flow__tmpl_free(s->model);
    flow__tmpl_free(s->prompt);
    flow__prompt_spec_free(s->named);
    for (size_t i = 0; i < s->message_count; i++) {
        flow__free(s->messages[i].role);
        flow__tmpl_free(s->messages[i].content);
    }
    flow__free(s->messages);
    flow__free(s);
}

static bool llm_messages(struct sp *p, json_t *m, struct llm_spec *s)
{
    json_t *list = json_object_get(m, "messages");
    if (!list)
        return true;
    size_t n = json_is_array(list) ? json_array_size(list) : 0;
    if (!n) {
        fail_at(p, FLOW_EINVAL, "messages", -1, NULL,
                "'messages' in %s must be a non-empty list of {role, content}, not %s", p->what,
                json_is_array(list) ? "an empty list" : type_name(list));
        return false;
    }
    if (!(s->messages = flow__calloc(n, sizeof(*s->messages)))) {
        fail_at(p, FLOW_ENOMEM, NULL, -1, NULL, "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(list, i);
        if (!json_is_object(it)) {
            fail_at(p, FLOW_EINVAL, "messages", (long)i, NULL,
                    "item %zu of 'messages' in %s must be a mapping {role, content}, not %s",
                    i + 1, p->what, type_name(it));
            return false;
        }
        if (!known_keys(p, it, message_keys, FLOW__ARRAY_LEN(message_keys), "messages", (long)i))
            return false;
        json_t *role = json_object_get(it, "role");
        json_t *content = json_object_get(it, "content");
        if (!json_is_string(role) || !json_string_length(role)) {
            fail_at(p, FLOW_EINVAL, "messages", (long)i, role ? "role" : NULL,
                    "item %zu of 'messages' in %s needs a 'role' (system, user, assistant)",
                    i + 1, p->what);
            return false;
        }
        if (!json_is_string(content)) {
            fail_at(p, FLOW_EINVAL, "messages", (long)i, content ? "content" : NULL,
                    "item %zu of 'messages' in %s needs a 'content' string, not %s", i + 1,
                    p->what, content ? type_name(content) : "nothing");
            return false;
        }
        struct llm_message *msg = &s->messages[s->message_count];
        if (!(msg->role = flow__strdup(json_string_value(role)))) {
            fail_at(p, FLOW_ENOMEM, NULL, -1, NULL, "out of memory");
            return false;
        }
        s->message_count++;
        flow_error terr;
        if (flow__tmpl_compile_string(json_string_value(content), &msg->content, &terr)) {
            fail_at(p, terr.code, "messages", (long)i, "content", "item %zu of 'messages' in %s: %s",
                    i + 1, p->what, terr.message);
            return false;
        }
    }
    return true;
}

static bool llm_numbers(struct sp *p, json_t *m, struct llm_spec *s)
{
    json_t *t = json_object_get(m, "temperature");
    if (t && (!json_is_number(t) || json_number_value(t) < 0 || json_number_value(t) > 2)) {
        fail_at(p, FLOW_EINVAL, "temperature", -1, NULL,
                "'temperature' in %s must be a number from 0 to 2", p->what);
        return false;
    }
    s->temperature = t ? json_number_value(t) : NAN;
    json_t *mt = json_object_get(m, "max_tokens");
    if (mt && (!json_is_integer(mt) || json_integer_value(mt) < 1 ||
               json_integer_value(mt) > 100000000)) {
        fail_at(p, FLOW_EINVAL, "max_tokens", -1, NULL,
                "'max_tokens' in %s must be a positive integer", p->what);
        return false;
    }
    s->max_tokens = mt ? (long)json_integer_value(mt) : 0;
    json_t *j = json_object_get(m, "json");
    if (j && !json_is_boolean(j)) {
        fail_at(p, FLOW_EINVAL, "json", -1, NULL, "'json' in %s must be true or false, not %s",
                p->what, type_name(j));
        return false;
    }
    s->json = json_is_true(j);
    return true;
}

flow_err flow__llm_spec_parse(json_t *src, const char *what, const char *prompt_dir,
                              struct llm_spec **out, struct spec_bad *bad, flow_error *err)
{
    struct sp p = {.what = what, .bad = bad, .err = err};
    *out = NULL;
    if (!json_is_object(src))
        return fail_at(&p, FLOW_EINVAL, NULL, -1, NULL,
                       "%s must be a mapping {model, prompt | messages, temperature, "
                       "max_tokens, json}, not %s",
                       what, src ? type_name(src) : "nothing");
    struct llm_spec *s = flow__calloc(1, sizeof(*s));
    if (!s)
        return fail_at(&p, FLOW_ENOMEM, NULL, -1, NULL, "out of memory");
    s->timeout = FLOW__NET_TIMEOUT;
    s->max_size = FLOW__NET_MAX_BYTES;
    s->temperature = NAN;
    s->src = json_deep_copy(src);
    json_t *prompt = json_object_get(src, "prompt");
    json_t *messages = json_object_get(src, "messages");
    if (!s->src) {
        fail_at(&p, FLOW_ENOMEM, NULL, -1, NULL, "out of memory");
    } else if (!known_keys(&p, src, llm_keys, FLOW__ARRAY_LEN(llm_keys), NULL, -1)) {
        /* said */
    } else if (!prompt == !messages) {
        fail_at(&p, FLOW_EINVAL, prompt ? "messages" : NULL, -1, NULL,
                "%s needs either 'prompt' (the user's message) or 'messages' (a list of "
                "{role, content}), %s",
                what, prompt ? "not both" : "and has neither");
    } else if (prompt && !json_is_string(prompt) && !json_is_object(prompt)) {
        fail_at(&p, FLOW_EINVAL, "prompt", -1, NULL,
                "'prompt' in %s must be a string (a template: the user's message) or a prompt "
                "file's {name, label, version, vars}, not %s",
                what, type_name(prompt));
    } else if (json_is_object(prompt) && !named_prompt(&p, prompt, prompt_dir, s)) {
        /* said */
    } else if (tmpl_string(&p, src, "model", false, &s->model) &&
               (!json_is_string(prompt) || tmpl_string(&p, src, "prompt", true, &s->prompt)) &&
               llm_messages(&p, src, s) && llm_numbers(&p, src, s) &&
               duration(&p, src, "timeout", &s->timeout)) {
        size_of(&p, src, "max_size", &s->max_size);
    }
    if (p.rc) {
        flow__llm_spec_free(s);
        return p.rc;
    }
    *out = s;
    return FLOW_OK;
}
