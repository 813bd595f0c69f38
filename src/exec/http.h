/* http.h -- one HTTP request with libcurl, for `http:` and `llm:` tasks
 * (docs/internals/prompts.md, "HTTP and model tasks").
 *
 * DESIGN
 * One easy handle per request, made and freed on the calling thread (a
 * pool thread running the task's body): nothing is shared between requests
 * but curl's global state, initialised once (pthread_once). The request
 * knows nothing of runs: the caller hands it rendered strings and a
 * cancellation test, and gets the status, the body and why it failed.
 *
 * - Only http and https, for the request and for redirects (at most 5
 *   followed). curl drops Authorization and cookies on a redirect to another
 *   host but not the other headers we set: a request whose headers carry a
 *   secret follows no redirect (`no_redirects`).
 * - TLS verification is on (peer and host name); `ca_file` adds a bundle.
 * - The response body stops at `max_bytes`: the write callback refuses
 *   more, and a Content-Length above it is refused before anything is read.
 * - `timeout` bounds the whole request; the progress callback, called about
 *   once a second even when nothing moves, aborts when `cancelled` says so
 *   (the task's timeout or a run that stops).
 * - No signals (CURLOPT_NOSIGNAL): the threads are the engine's.
 */
#ifndef FLOW_EXEC_HTTP_H
#define FLOW_EXEC_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "flow.h"

struct flow__http_req {
    const char *method;        /* "GET", "POST", ... */
    const char *url;
    const char *const *headers; /* "Name: value" lines */
    size_t header_count;
    const char *body;          /* NULL: no body */
    size_t body_len;
    double timeout;            /* seconds for the whole request; 0: none */
    size_t max_bytes;          /* the largest response body taken */
    const char *ca_file;       /* a CA bundle to trust, or NULL: the system's */
    bool no_redirects;         /* a 3xx is the answer (headers that carry secrets:
                                * curl would send them to the redirect's host) */
    bool (*cancelled)(void *arg); /* polled while the request runs, or NULL */
    void *cancel_arg;
};

/* What went wrong before a status came back (or after: a body too big). */
enum flow__http_fail {
    FLOW__HTTP_OK = 0,
    FLOW__HTTP_NETWORK,   /* connecting, sending, receiving, timing out: may
                           * work next time */
    FLOW__HTTP_TLS,       /* the server's certificate was refused */
    FLOW__HTTP_TOO_BIG,   /* the body is over max_bytes */
    FLOW__HTTP_CANCELLED, /* `cancelled` said so */
    FLOW__HTTP_REQUEST,   /* the request itself is wrong (URL, scheme...) */
};

struct flow__http_resp {
    long status;          /* 0 when no response came */
    char *body;           /* NUL-terminated (flow__free), never NULL after perform */
    size_t body_len;
    char *content_type;   /* or NULL */
    double retry_after;   /* seconds a Retry-After asked for; -1: none */
    enum flow__http_fail fail;
    char *error;          /* fail != OK: one line (flow__free) */
};

/* Perform `req`. FLOW_OK whenever the request was tried (even a failure:
 * resp->fail says so); FLOW_ENOMEM, or FLOW_ESYSTEM when curl could not be
 * initialised. Clean resp up in every case. */
flow_err flow__http_perform(const struct flow__http_req *req, struct flow__http_resp *resp);
void flow__http_resp_cleanup(struct flow__http_resp *resp);

/* How a status is taken: in `expect` (count of them; none: any 2xx) is
 * success; 408, 429 and 5xx may work later (retried); anything else will
 * not. */
enum flow__http_verdict { FLOW__HTTP_SUCCESS = 0, FLOW__HTTP_RETRY, FLOW__HTTP_FINAL };
enum flow__http_verdict flow__http_judge(long status, const int *expect, size_t count);

/* A Retry-After value: delta-seconds or an HTTP date (against `now`, epoch
 * seconds). -1 when it is neither; never below 0. */
double flow__http_retry_after(const char *value, double now);

/* The first `max` bytes (or so) of a body as one printable line, for
 * messages: control characters and broken UTF-8 become '?', "..." marks a
 * cut. A new string (flow__free), NULL when out of memory. */
char *flow__http_snippet(const char *body, size_t len, size_t max);

#endif
