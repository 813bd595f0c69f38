/* llm.h -- one call to an OpenAI-compatible chat-completions endpoint, for
 * `llm:` tasks, over exec/http.h (docs/internals/prompts.md).
 *
 * The request: POST BASE/chat/completions (BASE as given when it already
 * ends with /chat/completions), `Authorization: Bearer KEY` when there is a
 * key, a JSON body {model, messages, temperature?, max_tokens?,
 * response_format: {type: json_object} when json}. The answer: the first
 * choice's message content, parsed as JSON when json (a fenced ```json
 * block is taken too), and the usage the endpoint reports.
 */
#ifndef FLOW_EXEC_LLM_H
#define FLOW_EXEC_LLM_H

#include <stdbool.h>
#include <stddef.h>

#include "flow.h"

struct flow__llm_call {
    const char *base_url;      /* $FLOW_LLM_URL */
    const char *key;           /* $FLOW_LLM_KEY, or NULL: no Authorization */
    const char *model;
    json_t *messages;          /* [{role, content}] (borrowed, read only) */
    double temperature;        /* NAN: left to the endpoint */
    long max_tokens;           /* 0: left to the endpoint */
    bool json;                 /* the answer must be JSON */
    double timeout;            /* seconds for the request; 0: none */
    size_t max_bytes;          /* the largest answer taken */
    bool (*cancelled)(void *arg);
    void *cancel_arg;
};

struct flow__llm_result {
    json_t *output;      /* success: the content (a string, or JSON) */
    json_t *usage;       /* {prompt_tokens, completion_tokens, total_tokens,
                          * model}, or NULL when the endpoint gave none */
    char *error;         /* failure: why (flow__free) */
    bool final;          /* failure: trying again will not help */
    double retry_after;  /* failure: the delay the endpoint asked for; -1 */
};

/* Make the call. FLOW_OK whenever it was tried (res->error says whether it
 * worked); FLOW_ENOMEM, FLOW_ESYSTEM. Clean res up in every case. */
flow_err flow__llm_perform(const struct flow__llm_call *call, struct flow__llm_result *res);
void flow__llm_result_cleanup(struct flow__llm_result *res);

/* The URL posted to for `base` (flow__free); NULL when out of memory. */
char *flow__llm_endpoint(const char *base);
/* The request body (a new object); NULL when out of memory. */
json_t *flow__llm_request_body(const struct flow__llm_call *call);
/* Read an answer body: the content (as `json` says) in *output and the
 * usage in *usage (`model` when the answer names none), or why not
 * (flow__free; then nothing is set). */
char *flow__llm_parse_answer(const char *body, size_t len, bool json, const char *model,
                             json_t **output, json_t **usage);
/* The content `s` (n bytes) as JSON, also inside a ``` fence; NULL with
 * *why when it is not JSON. */
json_t *flow__llm_content_json(const char *s, size_t n, char **why);

#endif
