/* llm.c -- chat completions over exec/http.c (see llm.h). */
#include "util/compat.h"

#include "exec/llm.h"

#include <math.h>
#include <string.h>

#include "exec/http.h"
#include "util/alloc.h"
#include "util/json.h"

#define SUFFIX "/chat/completions"
#define SNIPPET 200

char *flow__llm_endpoint(const char *base)
{
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    size_t sl = strlen(SUFFIX);
    if (n >= sl && !memcmp(base + n - sl, SUFFIX, sl))
        return flow__strndup(base, n);
    return flow__asprintf("%.*s%s", (int)n, base, SUFFIX);
}

json_t *flow__llm_request_body(const struct flow__llm_call *call)
{
    json_t *o = json_pack("{s:s,s:O}", "model", call->model, "messages", call->messages);
    if (!o)
        return NULL;
    int bad = 0;
    if (!isnan(call->temperature))
        bad |= json_object_set_new(o, "temperature", json_real(call->temperature));
    if (call->max_tokens > 0)
        bad |= json_object_set_new(o, "max_tokens", json_integer(call->max_tokens));
    if (call->json)
        bad |= json_object_set_new(o, "response_format", json_pack("{s:s}", "type", "json_object"));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* `s` without a surrounding ``` fence (```json ... ```), and trimmed. */
static void unfence(const char **s, size_t *n)
{
    const char *p = *s, *end = *s + *n;
    while (p < end && strchr(" \t\r\n", *p))
        p++;
    while (end > p && strchr(" \t\r\n", end[-1]))
        end--;
    if (end - p >= 6 && !memcmp(p, "```", 3) && !memcmp(end - 3, "```", 3)) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl && nl < end - 3) {
            p = nl + 1;
            end -= 3;
        }
    }
    *s = p;
    *n = (size_t)(end - p);
}

json_t *flow__llm_content_json(const char *s, size_t n, char **why)
{
    unfence(&s, &n);
    json_error_t je;
    json_t *v = NULL;
    flow_err rc = flow__json_load(s, n, JSON_DECODE_ANY, &v, &je);
    if (rc == FLOW_ENOMEM) {
        *why = flow__strdup("out of memory reading the answer");
        return NULL;
    }
    if (rc) {
        char *snip = flow__http_snippet(s, n, SNIPPET);
        *why = flow__asprintf("the model's answer is not JSON (json: true): %s; it begins: %s",
                              je.text, snip ? snip : "");
        flow__free(snip);
        return NULL;
    }
    return v;
}

/* The usage the answer reports, with the model that answered. */
static json_t *usage_of(json_t *answer, const char *model)
{
    json_t *u = json_object_get(answer, "usage");
    if (!json_is_object(u))
        return NULL;
    json_t *out = json_object();
    static const char *const keys[] = {"prompt_tokens", "completion_tokens", "total_tokens"};
    for (size_t i = 0; out && i < FLOW__ARRAY_LEN(keys); i++) {
        json_t *v = json_object_get(u, keys[i]);
        if (json_is_integer(v) && json_object_set_new(out, keys[i], json_copy(v))) {
            json_decref(out);
            return NULL;
        }
    }
    const char *m = json_string_value(json_object_get(answer, "model"));
    if (out && (m || model) && json_object_set_new(out, "model", json_string(m ? m : model))) {
        json_decref(out);
        return NULL;
    }
    return out;
}

char *flow__llm_parse_answer(const char *body, size_t len, bool json, const char *model,
                             json_t **output, json_t **usage)
{
    *output = *usage = NULL;
    json_t *answer = NULL;
    flow_err rc = flow__json_load(body, len, 0, &answer, NULL);
    if (rc == FLOW_ENOMEM)
        return flow__strdup("out of memory reading the answer");
    if (rc || !json_is_object(answer)) {
        json_decref(answer);
        char *snip = flow__http_snippet(body, len, SNIPPET);
        char *why = flow__why("the endpoint's answer is not a JSON object: %s", snip ? snip : "");
        flow__free(snip);
        return why;
    }
    json_t *msg = json_object_get(json_array_get(json_object_get(answer, "choices"), 0), "message");
    json_t *content = json_object_get(msg, "content");
    char *why = NULL;
    if (!json_is_string(content)) {
        char *snip = flow__http_snippet(body, len, SNIPPET);
        why = flow__why("the endpoint's answer has no choices[0].message.content: %s",
                        snip ? snip : "");
        flow__free(snip);
    } else if (json) {
        *output = flow__llm_content_json(json_string_value(content), json_string_length(content),
                                         &why);
    } else {
        *output = json_copy(content);
        if (!*output)
            why = flow__strdup("out of memory reading the answer");
    }
    if (!why)
        *usage = usage_of(answer, model);
    json_decref(answer);
    return why;
}

/* A failed status: why, and whether to try again. */
static void status_failed(const struct flow__http_resp *resp, const char *url,
                          struct flow__llm_result *res)
{
    char *snip = flow__http_snippet(resp->body, resp->body_len, SNIPPET);
    const char *hint = resp->status == 401 || resp->status == 403
                           ? " (check $FLOW_LLM_KEY)"
                           : resp->status == 404 ? " (check $FLOW_LLM_URL and the model)" : "";
    res->error = flow__asprintf("HTTP %ld from POST %s%s: %s", resp->status, url, hint,
                                snip ? snip : "");
    flow__free(snip);
    res->final = flow__http_judge(resp->status, NULL, 0) == FLOW__HTTP_FINAL;
    res->retry_after = resp->retry_after;
}

flow_err flow__llm_perform(const struct flow__llm_call *call, struct flow__llm_result *res)
{
    memset(res, 0, sizeof(*res));
    res->retry_after = -1;
    char *url = flow__llm_endpoint(call->base_url);
    json_t *body = flow__llm_request_body(call);
    char *text = body ? json_dumps(body, JSON_COMPACT | flow__json_real_flags(body)) : NULL;
    char *auth = call->key ? flow__asprintf("Authorization: Bearer %s", call->key) : NULL;
    json_decref(body);
    if (!url || !text || (call->key && !auth)) {
        flow__free(url);
        flow__json_free_text(text);
        flow__free(auth);
        return FLOW_ENOMEM;
    }
    const char *headers[] = {"Content-Type: application/json", "Accept: application/json", auth};
    struct flow__http_req req = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .header_count = auth ? 3 : 2,
        .body = text,
        .body_len = strlen(text),
        .timeout = call->timeout,
        .max_bytes = call->max_bytes,
        .cancelled = call->cancelled,
        .cancel_arg = call->cancel_arg,
    };
    struct flow__http_resp resp;
    flow_err rc = flow__http_perform(&req, &resp);
    if (rc == FLOW_OK) {
        if (resp.fail != FLOW__HTTP_OK) {
            res->error = flow__asprintf("POST %s: %s", url, resp.error);
            res->final = resp.fail != FLOW__HTTP_NETWORK;
        } else if (resp.status < 200 || resp.status >= 300) {
            status_failed(&resp, url, res);
        } else {
            res->error = flow__llm_parse_answer(resp.body, resp.body_len, call->json, call->model,
                                                &res->output, &res->usage);
        }
        if (res->error == flow__nomem_why)
            res->error = NULL;
        if (!res->output && !res->error)
            rc = FLOW_ENOMEM;
    }
    flow__http_resp_cleanup(&resp);
    flow__free(url);
    flow__json_free_text(text);
    flow__free(auth);
    return rc;
}

void flow__llm_result_cleanup(struct flow__llm_result *res)
{
    json_decref(res->output);
    json_decref(res->usage);
    flow__free(res->error);
    memset(res, 0, sizeof(*res));
    res->retry_after = -1;
}
