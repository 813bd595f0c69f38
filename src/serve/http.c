/* http.c -- libmicrohttpd glue for `flow serve`: the listening socket, a
 * thread per connection, request bodies read up to a limit, the bearer
 * token, and replies (whole or streamed) with the headers every reply
 * carries. The routes live in api.c and never see the library. */
#include "util/compat.h"

#include "serve/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "util/alloc.h"

struct http_server {
    struct MHD_Daemon *daemon;
    int fd;
    int port;
    struct http_options opts;
    char *token;
};

/* What a connection accumulates between the library's calls. */
struct pending {
    struct flow__buf body;
    bool too_large;
};

const char *http_query(const struct http_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *http_header(const struct http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

static int dump_to_buf(const char *data, size_t len, void *udata)
{
    return flow__buf_append(udata, data, len) == FLOW_OK ? 0 : -1;
}

void http_json(struct http_resp *resp, int status, json_t *value)
{
    struct flow__buf b;
    flow__buf_init(&b, FLOW__BUF_DEFAULT_MAX);
    if (!value || json_dump_callback(value, dump_to_buf, &b, JSON_COMPACT | JSON_REAL_PRECISION(15)) != 0 ||
        flow__buf_appendc(&b, '\n') != FLOW_OK) {
        flow__buf_cleanup(&b);
        json_decref(value);
        resp->status = 500;
        resp->static_body = (const unsigned char *)
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n";
        resp->len = strlen((const char *)resp->static_body);
        return;
    }
    json_decref(value);
    resp->status = status;
    resp->len = b.len;
    resp->body = flow__buf_take(&b);
}

void http_error(struct http_resp *resp, int status, const char *code, const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    json_t *v = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    if (!v) {
        /* The message quotes what the request held (its path, a name), which
         * need not be UTF-8: a JSON string cannot carry such bytes. */
        for (char *c = message; *c; c++)
            if ((unsigned char)*c >= 0x80)
                *c = '?';
        v = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    }
    http_json(resp, status, v);
}

bool http_token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = la != lb;
    /* Walk the expected token's length whatever the given one is, so the
     * time says nothing about where they differ. */
    for (size_t i = 0; i < la; i++)
        diff |= (unsigned char)(a[i] ^ (i < lb ? b[i] : 0));
    return diff == 0;
}

bool http_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (!strcmp(host, "localhost"))
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

static const char page_csp[] =
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

static void add_common_headers(struct MHD_Response *r, const struct http_resp *resp)
{
    MHD_add_response_header(r, "Content-Type",
                            resp->content_type ? resp->content_type : "application/json");
    MHD_add_response_header(r, "Cache-Control",
                            resp->cache_control ? resp->cache_control : "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    if (resp->page) {
        MHD_add_response_header(r, "Content-Security-Policy", page_csp);
        MHD_add_response_header(r, "X-Frame-Options", "DENY");
    }
    if (resp->www_authenticate)
        MHD_add_response_header(r, "WWW-Authenticate", resp->www_authenticate);
}

/* A streamed reply: the producer fills `out`, which is handed to the
 * library piece by piece. */
struct stream {
    http_stream_fn fn;
    void *state;
    void (*state_free)(void *);
    struct flow__buf out;
    size_t sent;
    bool done;
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *s = cls;
    (void)pos;
    while (s->sent == s->out.len) {
        flow__buf_reset(&s->out);
        s->sent = 0;
        if (s->done || !s->fn(s->state, &s->out)) {
            s->done = true;
            if (s->out.len == 0)
                return MHD_CONTENT_READER_END_OF_STREAM;
        }
    }
    size_t n = s->out.len - s->sent;
    if (n > max)
        n = max;
    memcpy(buf, s->out.data + s->sent, n);
    s->sent += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    struct stream *s = cls;
    if (s->state_free)
        s->state_free(s->state);
    flow__buf_cleanup(&s->out);
    flow__free(s);
}

static enum MHD_Result send_resp(struct MHD_Connection *conn, struct http_resp *resp)
{
    struct MHD_Response *r;
    if (resp->stream) {
        struct stream *s = flow__malloc(sizeof(*s));
        if (!s) {
            if (resp->stream_free)
                resp->stream_free(resp->stream_state);
            return MHD_NO;
        }
        memset(s, 0, sizeof(*s));
        s->fn = resp->stream;
        s->state = resp->stream_state;
        s->state_free = resp->stream_free;
        flow__buf_init(&s->out, FLOW__BUF_DEFAULT_MAX);
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s,
                                              stream_free);
        if (!r) {
            stream_free(s);
            return MHD_NO;
        }
    } else if (resp->body) {
        r = MHD_create_response_from_buffer(resp->len, resp->body, MHD_RESPMEM_MUST_COPY);
    } else {
        r = MHD_create_response_from_buffer(resp->len, (void *)resp->static_body,
                                            MHD_RESPMEM_PERSISTENT);
    }
    if (!r)
        return MHD_NO;
    add_common_headers(r, resp);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

static bool authorized(const struct http_server *srv, struct MHD_Connection *conn)
{
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    return http_token_equal(srv->token, h);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    struct http_server *srv = cls;
    struct pending *p = *con_cls;
    (void)version;
    if (!p) {
        p = flow__malloc(sizeof(*p));
        if (!p)
            return MHD_NO;
        flow__buf_init(&p->body, HTTP_BODY_MAX);
        p->too_large = false;
        *con_cls = p;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!p->too_large && flow__buf_append(&p->body, upload_data, *upload_size) != FLOW_OK)
            p->too_large = true;
        *upload_size = 0;
        return MHD_YES;
    }

    struct http_resp resp;
    memset(&resp, 0, sizeof(resp));
    struct http_req req = {method, url, flow__buf_str(&p->body), p->body.len, conn};
    bool public_path = srv->opts.is_public && srv->opts.is_public(url);
    if (srv->token && !public_path && !authorized(srv, conn)) {
        resp.www_authenticate = "Bearer";
        http_error(&resp, 401, "unauthorized",
                   "this server needs 'Authorization: Bearer TOKEN' (the token of its "
                   "--token-file)");
    } else if (p->too_large) {
        http_error(&resp, 413, "too_large", "request body over %u bytes", HTTP_BODY_MAX);
    } else {
        srv->opts.handler(srv->opts.udata, &req, &resp);
    }
    enum MHD_Result ret = send_resp(conn, &resp);
    flow__free(resp.body);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct pending *p = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (p) {
        flow__buf_cleanup(&p->body);
        flow__free(p);
        *con_cls = NULL;
    }
}

static int listen_on(const char *host, int port, int *bound, char *errbuf, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    char service[16];
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        snprintf(errbuf, errlen, "cannot listen on '%s:%d': %s", host, port, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        snprintf(errbuf, errlen, "cannot listen on '%s:%d': %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    *bound = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt,
                                                          va_list ap)
{
    (void)cls;
    fputs("flow serve: http: ", stderr);
    vfprintf(stderr, fmt, ap);
}

struct http_server *http_start(const struct http_options *o, char *errbuf, size_t errlen)
{
    struct http_server *srv = flow__malloc(sizeof(*srv));
    if (!srv) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    memset(srv, 0, sizeof(*srv));
    srv->opts = *o;
    srv->token = o->token ? flow__strdup(o->token) : NULL;
    srv->fd = listen_on(o->host, o->port, &srv->port, errbuf, errlen);
    if (srv->fd < 0 || (o->token && !srv->token)) {
        if (srv->fd >= 0)
            close(srv->fd);
        if (o->token && !srv->token)
            snprintf(errbuf, errlen, "out of memory");
        flow__free(srv->token);
        flow__free(srv);
        return NULL;
    }
    srv->daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
            MHD_USE_POLL,
        0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, srv->fd,
        MHD_OPTION_CONNECTION_LIMIT, o->max_connections ? o->max_connections : 256u,
        MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(errbuf, errlen, "cannot start the HTTP server on '%s:%d'", o->host, o->port);
        close(srv->fd);
        flow__free(srv->token);
        flow__free(srv);
        return NULL;
    }
    return srv;
}

int http_port(const struct http_server *s)
{
    return s->port;
}

void http_stop(struct http_server *s)
{
    if (!s)
        return;
    /* The daemon closes the listening socket it was given: closing it
     * again could close a descriptor another thread has just opened. */
    MHD_stop_daemon(s->daemon);
    flow__free(s->token);
    flow__free(s);
}
