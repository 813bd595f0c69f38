/* http.c -- one HTTP request with libcurl (see http.h). */
#include "util/compat.h"

#include "exec/http.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

/* Once per process, and only in one that makes a request: curl's global
 * state (and OpenSSL's) is never set up by runs without HTTP tasks. */
static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

enum flow__http_verdict flow__http_judge(long status, const int *expect, size_t count)
{
    if (count) {
        for (size_t i = 0; i < count; i++)
            if (expect[i] == status)
                return FLOW__HTTP_SUCCESS;
    } else if (status >= 200 && status < 300) {
        return FLOW__HTTP_SUCCESS;
    }
    if (status == 408 || status == 429 || (status >= 500 && status < 600))
        return FLOW__HTTP_RETRY;
    return FLOW__HTTP_FINAL;
}

double flow__http_retry_after(const char *value, double now)
{
    while (value && (*value == ' ' || *value == '\t'))
        value++;
    if (!value || !*value)
        return -1;
    if (isdigit((unsigned char)*value)) {
        char *end = NULL;
        double s = strtod(value, &end);
        while (end && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
            end++;
        if (!end || *end || !isfinite(s) || s < 0)
            return -1;
        return s;
    }
    char date[64];
    size_t n = strcspn(value, "\r\n");
    if (n >= sizeof(date))
        return -1;
    memcpy(date, value, n);
    date[n] = '\0';
    time_t at = curl_getdate(date, NULL);
    if (at == (time_t)-1)
        return -1;
    double d = (double)at - now;
    return d > 0 ? d : 0;
}

/* ---- callbacks ------------------------------------------------------------ */

struct xfer {
    const struct flow__http_req *req;
    struct flow__buf body;
    bool too_big;
    char *retry_after;   /* the last response's header value, or NULL */
    bool nomem;
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct xfer *x = arg;
    size_t len = size * n;
    if (x->body.len + len > x->req->max_bytes) {
        x->too_big = true;
        return 0; /* CURLE_WRITE_ERROR */
    }
    if (flow__buf_append(&x->body, data, len) != FLOW_OK) {
        x->nomem = true;
        return 0;
    }
    return len;
}

/* Keeps Retry-After of the last response (a redirect's or a 100's go). */
static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct xfer *x = arg;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len >= 5 && !strncmp(data, "HTTP/", 5)) {
        flow__free(x->retry_after);
        x->retry_after = NULL;
    } else if (len > sizeof(name) - 1 && !strncasecmp(data, name, sizeof(name) - 1)) {
        flow__free(x->retry_after);
        x->retry_after = flow__strndup(data + sizeof(name) - 1, len - (sizeof(name) - 1));
        if (!x->retry_after)
            x->nomem = true;
    }
    return len;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    struct xfer *x = arg;
    return x->req->cancelled && x->req->cancelled(x->req->cancel_arg) ? 1 : 0;
}

/* ---- one request ---------------------------------------------------------- */

/* What a curl failure means for the task. */
static enum flow__http_fail classify(CURLcode rc, const struct xfer *x)
{
    if (x->too_big || rc == CURLE_FILESIZE_EXCEEDED)
        return FLOW__HTTP_TOO_BIG;
    switch (rc) {
    case CURLE_ABORTED_BY_CALLBACK:
        return FLOW__HTTP_CANCELLED;
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
        return FLOW__HTTP_NETWORK;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        return FLOW__HTTP_TLS;
    default:
        return FLOW__HTTP_REQUEST;
    }
}

static long ms_of(double seconds)
{
    double ms = ceil(seconds * 1000);
    return ms > 2147483647.0 ? 2147483647L : ms < 1 ? 1 : (long)ms;
}

/* Set the method and the body. */
static bool set_method(CURL *h, const struct flow__http_req *req)
{
    const char *m = req->method ? req->method : req->body ? "POST" : "GET";
    bool ok = true;
    if (req->body) {
        ok &= curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len) ==
              CURLE_OK;
        ok &= curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body) == CURLE_OK;
        if (strcmp(m, "POST") != 0)
            ok &= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m) == CURLE_OK;
    } else if (!strcmp(m, "HEAD")) {
        ok &= curl_easy_setopt(h, CURLOPT_NOBODY, 1L) == CURLE_OK;
    } else if (strcmp(m, "GET") != 0) {
        ok &= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m) == CURLE_OK;
    }
    return ok;
}

static bool setup(CURL *h, const struct flow__http_req *req, struct xfer *x,
                  struct curl_slist *headers, char *errbuf)
{
    bool ok = true;
    ok &= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_URL, req->url) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, req->no_redirects ? 0L : 1L) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK;
    if (req->ca_file)
        ok &= curl_easy_setopt(h, CURLOPT_CAINFO, req->ca_file) == CURLE_OK;
    char agent[64];
    snprintf(agent, sizeof(agent), "libflow/%s", flow_version());
    ok &= curl_easy_setopt(h, CURLOPT_USERAGENT, agent) == CURLE_OK; /* copied by curl */
    ok &= curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "") == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_bytes) == CURLE_OK;
    if (req->timeout > 0) {
        ok &= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms_of(req->timeout)) == CURLE_OK;
        ok &= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                               ms_of(req->timeout < 30 ? req->timeout : 30)) == CURLE_OK;
    }
    ok &= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_WRITEDATA, x) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_HEADERDATA, x) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_XFERINFODATA, x) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L) == CURLE_OK;
    ok &= curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) == CURLE_OK;
    return ok && set_method(h, req);
}

/* The request's headers, and "Expect:" so that a large body goes at once
 * rather than after a 100 Continue that some servers never send. */
static struct curl_slist *header_list(const struct flow__http_req *req)
{
    struct curl_slist *list = curl_slist_append(NULL, "Expect:");
    for (size_t i = 0; list && i < req->header_count; i++) {
        struct curl_slist *next = curl_slist_append(list, req->headers[i]);
        if (!next) {
            curl_slist_free_all(list);
            return NULL;
        }
        list = next;
    }
    return list;
}

static char *fail_text(CURLcode rc, const char *errbuf, const struct xfer *x,
                       const struct flow__http_req *req)
{
    if (x->too_big || rc == CURLE_FILESIZE_EXCEEDED)
        return flow__asprintf("the response body is over the limit of %zu bytes (max_size)",
                              req->max_bytes);
    if (rc == CURLE_ABORTED_BY_CALLBACK)
        return flow__strdup("cancelled");
    const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    size_t n = strcspn(why, "\r\n");
    if (rc == CURLE_PEER_FAILED_VERIFICATION)
        return flow__asprintf("TLS verification failed: %.*s (give the server's CA with "
                              "'ca_file')",
                              (int)n, why);
    if (rc == CURLE_OPERATION_TIMEDOUT && req->timeout > 0)
        return flow__asprintf("no complete answer within %gs: %.*s", req->timeout, (int)n, why);
    return flow__asprintf("%.*s", (int)n, why);
}

flow_err flow__http_perform(const struct flow__http_req *req, struct flow__http_resp *resp)
{
    memset(resp, 0, sizeof(*resp));
    resp->retry_after = -1;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return FLOW_ESYSTEM;
    struct xfer x = {.req = req};
    flow__buf_init(&x.body, req->max_bytes + 1);
    char errbuf[CURL_ERROR_SIZE];
    errbuf[0] = '\0';
    CURL *h = curl_easy_init();
    struct curl_slist *headers = h ? header_list(req) : NULL;
    if (!h || !headers || !setup(h, req, &x, headers, errbuf)) {
        curl_slist_free_all(headers);
        if (h)
            curl_easy_cleanup(h);
        return FLOW_ENOMEM;
    }
    CURLcode rc = curl_easy_perform(h);
    flow_err out = FLOW_OK;
    if (x.nomem) {
        out = FLOW_ENOMEM;
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
        const char *ct = NULL;
        if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
            resp->content_type = flow__strdup(ct);
        if (x.retry_after)
            resp->retry_after = flow__http_retry_after(x.retry_after, flow__wall_time());
        if (rc != CURLE_OK) {
            resp->fail = classify(rc, &x);
            resp->error = fail_text(rc, errbuf, &x, req);
            if (!resp->error)
                out = FLOW_ENOMEM;
        }
        resp->body_len = x.body.len;
        resp->body = x.body.data ? flow__buf_take(&x.body) : flow__strdup("");
        if (!resp->body)
            out = FLOW_ENOMEM;
    }
    flow__free(x.retry_after);
    flow__buf_cleanup(&x.body);
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
    return out;
}

void flow__http_resp_cleanup(struct flow__http_resp *resp)
{
    flow__free(resp->body);
    flow__free(resp->content_type);
    flow__free(resp->error);
    memset(resp, 0, sizeof(*resp));
    resp->retry_after = -1;
}

char *flow__http_snippet(const char *body, size_t len, size_t max)
{
    struct flow__buf b;
    flow__buf_init(&b, FLOW__BUF_DEFAULT_MAX);
    const unsigned char *p = (const unsigned char *)body;
    size_t i = 0;
    while (i < len && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
        i++;
    bool cut = false;
    while (i < len) {
        if (b.len >= max) {
            cut = true;
            break;
        }
        unsigned char c = p[i];
        size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                                : (c & 0xF8) == 0xF0 ? 4 : 0;
        bool ok = n > 0 && i + n <= len;
        for (size_t k = 1; ok && k < n; k++)
            ok = (p[i + k] & 0xC0) == 0x80;
        if (!ok || (n == 1 && (c < 0x20 || c == 0x7F))) {
            /* line breaks and tabs read as a space; anything else as '?' */
            bool space = c == '\n' || c == '\r' || c == '\t';
            if (flow__buf_appendc(&b, space ? ' ' : '?') != FLOW_OK)
                break;
            i++;
            continue;
        }
        if (flow__buf_append(&b, p + i, n) != FLOW_OK)
            break;
        i += n;
    }
    if (cut)
        flow__buf_appends(&b, "...");
    if (!b.data)
        return flow__strdup("");
    return flow__buf_take(&b);
}
