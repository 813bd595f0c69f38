/* net.c -- the bodies of `http:` and `llm:` tasks, run on the engine's
 * threads as a C function's body is (docs/internals/prompts.md).
 *
 * Each attempt renders its templates under the engine lock into values of
 * its own (deep copies: the body thread counts no reference the run holds),
 * then makes its request without the lock through exec/http.c or
 * exec/llm.c, and tells the attempt how it went through its flow_ctx: the
 * output, or an error with whether a retry may help (connection errors,
 * 408, 429, 5xx: yes, after Retry-After when given; a status that will not
 * change: no). Messages name the URL with the run's secrets redacted. */
#include "util/compat.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "exec/http.h"
#include "exec/llm.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/json.h"
#include "util/redact.h"

#define SNIPPET 200

static bool ctx_cancelled(void *arg)
{
    return flow_ctx_is_cancelled(arg);
}

/* Fail the attempt with `msg` (taken), the run's secrets redacted; `final`:
 * no retry; `retry_after` >= 0: the delay before the next one. */
static int fail(flow_ctx *ctx, char *msg, bool final, double retry_after)
{
    char *clean = msg ? flow__redact_dup(ctx->run->secrets, msg) : NULL;
    const char *text = clean ? clean : "out of memory";
    if (final)
        flow_ctx_fail_final(ctx, "%s", text);
    else
        flow_ctx_fail(ctx, "%s", text);
    if (!final && retry_after >= 0)
        flow_ctx_retry_after(ctx, retry_after);
    flow__free(clean);
    flow__free(msg);
    return 1;
}

/* ---- http ---------------------------------------------------------------- */

/* A request rendered for one attempt: everything the body thread owns. */
struct http_call {
    char *method;
    char *url;
    char **headers;      /* "Name: value" */
    size_t header_count;
    char *body;          /* or NULL */
    bool body_json;      /* the body is JSON (a value, not a string) */
    bool has_type;       /* a Content-Type header was given */
    bool secret_header;  /* a header holds a secret: no redirect is followed */
};

static void http_call_cleanup(struct http_call *c)
{
    flow__free(c->method);
    flow__free(c->url);
    for (size_t i = 0; i < c->header_count; i++)
        flow__free(c->headers[i]);
    flow__free(c->headers);
    flow__free(c->body);
}

/* [L] Render the body: a string is sent as it is, any other value as JSON. */
static flow_err render_body(struct flow_run *r, struct act *a, const struct http_spec *s,
                            struct http_call *c, flow_error *err)
{
    json_t *v = NULL;
    flow_err rc = flow__run_render(r, a, s->body, &v, err);
    if (rc)
        return rc;
    if (json_is_string(v)) {
        c->body = flow__strndup(json_string_value(v), json_string_length(v));
    } else {
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | flow__json_real_flags(v));
        c->body = text ? flow__strdup(text) : NULL;
        c->body_json = true;
        flow__json_free_text(text);
    }
    json_decref(v);
    return c->body ? FLOW_OK : flow__error(err, FLOW_ENOMEM, "out of memory rendering the body");
}

/* [L] Render every template of the request. */
static flow_err render_http(struct flow_run *r, struct act *a, const struct http_spec *s,
                            struct http_call *c, flow_error *err)
{
    flow_err rc = FLOW_OK;
    if (s->method)
        rc = flow__run_render_string(r, a, s->method, &c->method, err);
    if (!rc)
        rc = flow__run_render_string(r, a, s->url, &c->url, err);
    if (!rc && s->header_count &&
        !(c->headers = flow__calloc(s->header_count, sizeof(*c->headers))))
        rc = flow__error(err, FLOW_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < s->header_count; i++) {
        char *value = NULL;
        rc = flow__run_render_string(r, a, s->headers[i].value, &value, err);
        if (rc)
            break;
        if (strpbrk(value, "\r\n"))
            rc = flow__error(err, FLOW_EINVAL, "header '%s' holds a line break once rendered",
                             s->headers[i].name);
        else if (!(c->headers[c->header_count] =
                       flow__asprintf("%s: %s", s->headers[i].name, value)))
            rc = flow__error(err, FLOW_ENOMEM, "out of memory");
        else
            c->header_count++;
        c->has_type |= !strcasecmp(s->headers[i].name, "content-type");
        c->secret_header |= flow__redact_hits(r->secrets, value, strlen(value));
        flow__free(value);
    }
    if (!rc && s->body)
        rc = render_body(r, a, s, c, err);
    return rc;
}

/* The method as sent: upper case, checked (a template may give anything). */
static bool method_ok(struct http_call *c)
{
    if (!c->method)
        return true;
    for (char *p = c->method; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    return flow__http_valid_method(c->method);
}

static bool url_ok(const char *url)
{
    return !strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8);
}

/* Success: the body as the task's output, as a command's stdout becomes
 * one (`output:`; auto by default). */
static int http_done(flow_ctx *ctx, const struct http_call *c, const char *method,
                     struct flow__http_resp *resp)
{
    char *why = NULL;
    json_t *out = flow__cmd_parse_output(resp->body, resp->body_len,
                                         ctx->task->policy->output_mode, &why);
    if (!out)
        return fail(ctx, flow__asprintf("%s %s: the response body: %s", method, c->url,
                                        why ? why : "out of memory"),
                    why != NULL, -1);
    flow__free(why);
    flow_ctx_set_output_take(ctx, out);
    flow__ctx_note(ctx, "http", json_pack("{s:i}", "status", (int)resp->status));
    return 0;
}

int flow__net_http(flow_ctx *ctx)
{
    struct http_call c = {0};
    flow_error err;
    flow__error_clear(&err);
    flow_err rc = FLOW_OK;
    const struct http_spec *s = ctx->task->ext->http;
    pthread_mutex_lock(&ctx->engine->lock);
    if (ctx->detached)
        rc = flow__error(&err, FLOW_ECANCELLED, "cancelled");
    else
        rc = render_http(ctx->run, ctx->act, s, &c, &err);
    pthread_mutex_unlock(&ctx->engine->lock);
    if (rc) {
        http_call_cleanup(&c);
        /* A header that renders to a line break will do so again; a value
         * missing from the run may be there next time (as for a command). */
        return fail(ctx, flow__strdup(err.message), rc == FLOW_EINVAL, -1);
    }
    if (!method_ok(&c) || !url_ok(c.url)) {
        char *msg = !url_ok(c.url)
                        ? flow__asprintf("the url must start with http:// or https:// ('%s')",
                                         c.url)
                        : flow__asprintf("bad method '%s' (GET, POST, PUT, PATCH, DELETE...)",
                                         c.method);
        http_call_cleanup(&c);
        return fail(ctx, msg, true, -1);
    }
    const char *method = c.method ? c.method : c.body ? "POST" : "GET";
    /* A body without a Content-Type says what it is. */
    const char *type = c.body_json ? "Content-Type: application/json"
                                   : "Content-Type: text/plain; charset=utf-8";
    const char **headers = flow__calloc(c.header_count + 1, sizeof(*headers));
    if (!headers) {
        http_call_cleanup(&c);
        return fail(ctx, NULL, false, -1);
    }
    size_t n = 0;
    for (size_t i = 0; i < c.header_count; i++)
        headers[n++] = c.headers[i];
    if (c.body && !c.has_type)
        headers[n++] = type;
    struct flow__http_req req = {
        .method = method,
        .url = c.url,
        .headers = headers,
        .header_count = n,
        .body = c.body,
        .body_len = c.body ? strlen(c.body) : 0,
        .timeout = s->timeout,
        .max_bytes = s->max_size,
        .ca_file = s->ca_file,
        .no_redirects = c.secret_header,
        .cancelled = ctx_cancelled,
        .cancel_arg = ctx,
    };
    struct flow__http_resp resp;
    int ret;
    if (flow__http_perform(&req, &resp) != FLOW_OK) {
        ret = fail(ctx, flow__asprintf("%s %s: cannot make the request (out of memory, or "
                                       "libcurl could not start)",
                                       method, c.url),
                   false, -1);
    } else if (resp.fail != FLOW__HTTP_OK) {
        ret = fail(ctx, flow__asprintf("%s %s: %s", method, c.url, resp.error),
                   resp.fail != FLOW__HTTP_NETWORK, -1);
    } else {
        enum flow__http_verdict v = flow__http_judge(resp.status, s->expect, s->expect_count);
        if (v == FLOW__HTTP_SUCCESS) {
            ret = http_done(ctx, &c, method, &resp);
        } else {
            char *snip = flow__http_snippet(resp.body, resp.body_len, SNIPPET);
            ret = fail(ctx,
                       flow__asprintf("HTTP %ld from %s %s%s%s", resp.status, method, c.url,
                                      snip && *snip ? ": " : "", snip ? snip : ""),
                       v == FLOW__HTTP_FINAL, resp.retry_after);
            flow__free(snip);
        }
    }
    flow__http_resp_cleanup(&resp);
    flow__free(headers);
    http_call_cleanup(&c);
    return ret;
}

/* ---- llm ----------------------------------------------------------------- */

/* [L] The messages of a call: `messages:` rendered, or `prompt:` as the
 * user's message: a template, or a prompt file's version (*used gets
 * {name, version, label} then, to journal). */
static json_t *llm_messages(struct flow_run *r, struct act *a, const struct llm_spec *s,
                            json_t **used, flow_error *err)
{
    json_t *list = json_array();
    if (!list) {
        flow__error(err, FLOW_ENOMEM, "out of memory");
        return NULL;
    }
    if (s->named) {
        char *text = flow__run_prompt_text(r, a, s->named, used, err);
        json_t *m = text ? json_pack("{s:s,s:s}", "role", "user", "content", text) : NULL;
        flow__free(text);
        if (!m || json_array_append_new(list, m)) {
            if (text && !err->code)
                flow__error(err, FLOW_ENOMEM, "out of memory");
            json_decref(list);
            return NULL;
        }
        return list;
    }
    size_t n = s->prompt ? 1 : s->message_count;
    for (size_t i = 0; i < n; i++) {
        const char *role = s->prompt ? "user" : s->messages[i].role;
        const struct flow__tmpl *t = s->prompt ? s->prompt : s->messages[i].content;
        char *content = NULL;
        if (flow__run_render_string(r, a, t, &content, err) != FLOW_OK) {
            json_decref(list);
            return NULL;
        }
        json_t *m = json_pack("{s:s,s:s}", "role", role, "content", content);
        flow__free(content);
        if (!m || json_array_append_new(list, m)) {
            json_decref(list);
            flow__error(err, FLOW_ENOMEM, "out of memory");
            return NULL;
        }
    }
    return list;
}

/* What an llm attempt needs, owned by the body thread. */
struct llm_ctx {
    char *model;
    json_t *messages;
    json_t *prompt_used;  /* the prompt file's version, or NULL */
    char *base_url;
    char *key;
};

static void llm_ctx_cleanup(struct llm_ctx *l)
{
    flow__free(l->model);
    json_decref(l->messages);
    json_decref(l->prompt_used);
    flow__free(l->base_url);
    flow__free(l->key);
}

/* [L] Render the call; the endpoint and the key come from the environment
 * (the key as the run read it: a secret of the run). */
static flow_err render_llm(struct flow_run *r, struct act *a, const struct llm_spec *s,
                           struct llm_ctx *l, flow_error *err)
{
    flow_err rc = FLOW_OK;
    if (s->model) {
        rc = flow__run_render_string(r, a, s->model, &l->model, err);
    } else {
        const char *m = getenv("FLOW_LLM_MODEL");
        if (!m || !*m)
            return flow__error(err, FLOW_EINVAL,
                               "no model: give 'model' or set $FLOW_LLM_MODEL");
        rc = (l->model = flow__strdup(m)) ? FLOW_OK : flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    if (!rc && !(l->messages = llm_messages(r, a, s, &l->prompt_used, err)))
        rc = err->code ? err->code : FLOW_ENOMEM;
    const char *url = getenv("FLOW_LLM_URL");
    const char *key = flow__secrets_get(r->secrets, "FLOW_LLM_KEY");
    if (!rc && (!url || !*url))
        rc = flow__error(err, FLOW_EINVAL,
                         "$FLOW_LLM_URL is not set: the base URL of an OpenAI-compatible "
                         "endpoint (https://api.openai.com/v1, http://localhost:11434/v1...)");
    if (!rc && !(l->base_url = flow__strdup(url)))
        rc = flow__error(err, FLOW_ENOMEM, "out of memory");
    if (!rc && key && *key && !(l->key = flow__strdup(key)))
        rc = flow__error(err, FLOW_ENOMEM, "out of memory");
    return rc;
}

int flow__net_llm(flow_ctx *ctx)
{
    struct llm_ctx l = {0};
    flow_error err;
    flow__error_clear(&err);
    const struct llm_spec *s = ctx->task->ext->llm;
    flow_err rc;
    pthread_mutex_lock(&ctx->engine->lock);
    if (ctx->detached)
        rc = flow__error(&err, FLOW_ECANCELLED, "cancelled");
    else
        rc = render_llm(ctx->run, ctx->act, s, &l, &err);
    pthread_mutex_unlock(&ctx->engine->lock);
    if (rc) {
        llm_ctx_cleanup(&l);
        /* Nothing set up (the endpoint, the model) comes by itself. */
        return fail(ctx, flow__strdup(err.message), rc == FLOW_EINVAL, -1);
    }
    if (!url_ok(l.base_url)) {
        char *msg = flow__asprintf("$FLOW_LLM_URL must start with http:// or https:// ('%s')",
                                   l.base_url);
        llm_ctx_cleanup(&l);
        return fail(ctx, msg, true, -1);
    }
    struct flow__llm_call call = {
        .base_url = l.base_url,
        .key = l.key,
        .model = l.model,
        .messages = l.messages,
        .temperature = s->temperature,
        .max_tokens = s->max_tokens,
        .json = s->json,
        .timeout = s->timeout,
        .max_bytes = s->max_size,
        .cancelled = ctx_cancelled,
        .cancel_arg = ctx,
    };
    struct flow__llm_result res;
    int ret = 0;
    if (flow__llm_perform(&call, &res) != FLOW_OK) {
        ret = fail(ctx, flow__strdup("cannot call the model (out of memory, or libcurl could "
                                     "not start)"),
                   false, -1);
    } else if (res.error) {
        ret = fail(ctx, res.error, res.final, res.retry_after);
        res.error = NULL;
    } else {
        flow_ctx_set_output_take(ctx, res.output);
        res.output = NULL;
        if (res.usage)
            flow__ctx_note(ctx, "usage", res.usage);
        res.usage = NULL;
        if (l.prompt_used)
            flow__ctx_note(ctx, "prompt", json_incref(l.prompt_used));
    }
    flow__llm_result_cleanup(&res);
    llm_ctx_cleanup(&l);
    return ret;
}
