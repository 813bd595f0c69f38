/* http.h -- the HTTP front of `flow serve`: libmicrohttpd behind a small
 * request/response interface, so the routes (api.c) never see the library.
 * A thread per connection: a Server-Sent Events stream is a reply whose
 * producer blocks until it has something to say. */
#ifndef FLOW_SERVE_HTTP_H
#define FLOW_SERVE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "util/buf.h"

#define HTTP_BODY_MAX (1u << 20) /* request bodies above this are a 413 */

struct http_req {
    const char *method;
    const char *path; /* decoded, without the query */
    const char *body; /* NUL-terminated; "" when none */
    size_t body_len;
    void *conn; /* the library's connection, for the getters below */
};

/* A producer of a streamed reply: called again and again on the
 * connection's thread; it appends to `out` (blocking until it has
 * something) and returns true, or returns false at the end of the stream. */
typedef bool (*http_stream_fn)(void *state, struct flow__buf *out);

struct http_resp {
    int status;
    const char *content_type; /* default application/json */
    char *body;               /* malloc'd, owned by the response */
    size_t len;
    const unsigned char *static_body; /* instead of body: not freed */
    const char *cache_control;        /* default "no-store" */
    bool page;                        /* the dashboard: send the page's CSP */
    const char *www_authenticate;
    http_stream_fn stream; /* a streamed reply (text/event-stream) */
    void *stream_state;
    void (*stream_free)(void *state);
};

/* The query argument `key` of the request, or NULL. */
const char *http_query(const struct http_req *r, const char *key);
/* The request header `name` (case-insensitive), or NULL. */
const char *http_header(const struct http_req *r, const char *name);

/* Fill `resp` with `status` and `value` as its JSON body; steals `value`. */
void http_json(struct http_resp *resp, int status, json_t *value);
/* Fill `resp` with the error body {"error": {"code", "message"}}. */
void http_error(struct http_resp *resp, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

typedef void (*http_handler_fn)(void *udata, const struct http_req *req, struct http_resp *resp);

struct http_server;

struct http_options {
    const char *host; /* numeric address to listen on */
    int port;          /* 0: any free port */
    const char *token; /* non-NULL: every API request needs "Bearer TOKEN" */
    unsigned max_connections;
    http_handler_fn handler;
    void *udata;
    /* Is this path served without the token? (the page and its assets:
     * a browser cannot send a header when it navigates) */
    bool (*is_public)(const char *path);
};

/* Listen and serve on threads of the library; NULL with a message in
 * `errbuf` when the address cannot be used. */
struct http_server *http_start(const struct http_options *o, char *errbuf, size_t errlen);
/* The port actually bound (for port 0). */
int http_port(const struct http_server *s);
/* Stop accepting, wait for the connections' threads (streams must have
 * been told to end), free. */
void http_stop(struct http_server *s);

/* Is `host` a loopback address (127.0.0.0/8, ::1, localhost)? */
bool http_is_loopback(const char *host);
/* Compare in time that depends on the lengths only. */
bool http_token_equal(const char *a, const char *b);

#endif
