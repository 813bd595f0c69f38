/* api.c -- the routes of `flow serve` (docs/operations.md has the
 * reference): each reads the request and fills a reply. Reads go to the
 * store, as `flow status` reads it, so a run of another process is seen
 * as well as one of this serve; changes go through the same calls as the
 * command line (control requests, answers), or to this serve's engine. */
#include "util/compat.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/serve_int.h"
#include "serve/web.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"

#define API "/api/v1"

/* ---- errors ------------------------------------------------------------ */

static int status_of(flow_err code)
{
    switch (code) {
    case FLOW_ENOTFOUND:
        return 404;
    case FLOW_EEXISTS:
    case FLOW_ESTATE:
    case FLOW_EBUSY:
        return 409;
    case FLOW_EPARSE: /* the flow file (serve_start) */
        return 422;
    case FLOW_EINVAL:
    case FLOW_EVALIDATION:
    case FLOW_ETEMPLATE:
        return 400;
    case FLOW_EUNSUPPORTED:
        return 501;
    default:
        return 500;
    }
}

static const char *code_of(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 409:
        return "conflict";
    case 422:
        return "invalid_flow";
    case 501:
        return "not_implemented";
    case 503:
        return "unavailable";
    default:
        return "internal";
    }
}

static void fail(struct http_resp *resp, const flow_error *err)
{
    int st = status_of(err->code);
    http_error(resp, st, code_of(st), "%s", err->message[0] ? err->message
                                                            : flow_strerror(err->code));
}

/* The request's body as a JSON object ({} when empty), or NULL after a 400. */
static json_t *body_object(const struct http_req *req, struct http_resp *resp)
{
    json_error_t jerr;
    if (req->body_len == 0)
        return json_object();
    json_t *v = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        http_error(resp, 400, "bad_json", "malformed JSON body at line %d, column %d: %s",
                   jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        http_error(resp, 400, "bad_request", "the body must be a JSON object");
        return NULL;
    }
    return v;
}

/* A string member `key` of `o`, or NULL; a member that is there and not a
 * string is a 400 (*bad set). */
static const char *opt_string(json_t *o, const char *key, struct http_resp *resp, bool *bad)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        http_error(resp, 400, "bad_request", "'%s' must be a string", key);
        *bad = true;
        return NULL;
    }
    return json_string_value(v);
}

/* ---- flows ----------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool flow_file_name(const char *file, size_t *stem)
{
    static const char *const exts[] = {".yaml", ".yml", ".json"};
    size_t n = strlen(file);
    if (file[0] == '.')
        return false;
    for (size_t i = 0; i < FLOW__ARRAY_LEN(exts); i++) {
        size_t e = strlen(exts[i]);
        if (n > e && !strcmp(file + n - e, exts[i])) {
            *stem = n - e;
            return true;
        }
    }
    return false;
}

static void get_flows(struct serve *sv, struct http_resp *resp)
{
    DIR *d = opendir(sv->flows_dir);
    json_t *list = json_array();
    FLOW__VEC(char *) names = {0};
    struct dirent *de;
    flow_err rc = FLOW_OK;
    while (d && (de = readdir(d))) {
        size_t stem;
        char *copy;
        if (!flow_file_name(de->d_name, &stem) || !(copy = flow__strdup(de->d_name)))
            continue;
        FLOW__VEC_PUSH(&names, copy, rc);
        if (rc != FLOW_OK)
            flow__free(copy);
    }
    if (d)
        closedir(d);
    if (names.count)
        qsort(names.items, names.count, sizeof(names.items[0]), cmp_str);
    for (size_t i = 0; i < names.count; i++) {
        size_t stem = 0;
        flow_file_name(names.items[i], &stem);
        char *path = flow__asprintf("%s/%s", sv->flows_dir, names.items[i]);
        flow_error err = {0};
        flow *f = path ? serve_load(path, &err) : NULL;
        json_t *one = json_pack("{s:s%,s:s}", "name", names.items[i], stem, "file", path ? path : "");
        if (f) {
            json_object_set_new(one, "version", flow_get_version(f) ? json_string(flow_get_version(f))
                                                                    : json_null());
            json_object_set_new(one, "description", flow_description(f)
                                                        ? json_string(flow_description(f))
                                                        : json_null());
            json_object_set_new(one, "tasks", json_integer((json_int_t)flow_task_count(f)));
            json_object_set_new(one, "error", json_null());
        } else {
            json_object_set_new(one, "error", json_string(err.message));
        }
        json_array_append_new(list, one);
        flow_free(f);
        flow__free(path);
        flow__free(names.items[i]);
    }
    FLOW__VEC_FREE(&names);
    http_json(resp, 200, json_pack("{s:o}", "flows", list));
}

/* The graph of a flow: {nodes, edges} as `flow graph --format json`, or
 * the SVG the dashboard colours. */
static void send_graph(flow *f, const struct http_req *req, struct http_resp *resp)
{
    json_t *desc = flow_describe(f);
    const char *format = http_query(req, "format");
    if (!desc) {
        http_error(resp, 500, "internal", "out of memory describing the flow");
        return;
    }
    if (format && !strcmp(format, "svg")) {
        const char *style = http_query(req, "style");
        const char *dir = http_query(req, "direction");
        flow_graph_options go = {0, dir && !strcmp(dir, "lr"), style && !strcmp(style, "0")};
        flow_error err = {0};
        char *svg = flow_graph_svg(f, &go, &err);
        json_decref(desc);
        if (!svg) {
            fail(resp, &err);
            return;
        }
        /* The response copies it: the library's allocator made it. */
        resp->status = 200;
        resp->content_type = "image/svg+xml";
        resp->len = strlen(svg);
        resp->body = flow__malloc(resp->len + 1);
        if (resp->body)
            memcpy(resp->body, svg, resp->len + 1);
        else
            http_error(resp, 500, "internal", "out of memory");
        free(svg);
        return;
    }
    if (format && strcmp(format, "json")) {
        json_decref(desc);
        http_error(resp, 400, "bad_request", "unknown format '%.40s' (json or svg)", format);
        return;
    }
    http_json(resp, 200, desc);
}

static void get_flow_graph(struct serve *sv, const char *name, const struct http_req *req,
                           struct http_resp *resp)
{
    flow_error err = {0};
    char *path = NULL;
    if (serve_flow_path(sv, name, &path, &err) != FLOW_OK) {
        fail(resp, &err);
        return;
    }
    flow *f = serve_load(path, &err);
    flow__free(path);
    if (!f) {
        http_error(resp, 422, "invalid_flow", "%s", err.message);
        return;
    }
    send_graph(f, req, resp);
    flow_free(f);
}

/* ---- runs ---------------------------------------------------------------- */

static const char *const run_statuses[] = {"pending",   "running",   "paused", "completed",
                                           "failed",    "cancelled", "stopped", NULL};

/* Is `run` after the cursor "CREATED_AT|ID" in the newest-first order? */
static bool after_cursor(json_t *run, const char *cursor)
{
    const char *bar = strchr(cursor, '|');
    const char *c = json_string_value(json_object_get(run, "created_at"));
    const char *id = json_string_value(json_object_get(run, "id"));
    if (!bar || !c)
        return true;
    int k = strncmp(c, cursor, (size_t)(bar - cursor));
    if (k == 0 && strlen(c) != (size_t)(bar - cursor))
        k = strlen(c) < (size_t)(bar - cursor) ? -1 : 1;
    return k < 0 || (k == 0 && strcmp(id, bar + 1) < 0);
}

static bool parse_limit(const char *text, long dflt, long max, long *out,
                        struct http_resp *resp)
{
    char *end;
    if (!text) {
        *out = dflt;
        return true;
    }
    long v = strtol(text, &end, 10);
    if (*end || end == text || v < 1 || v > max) {
        http_error(resp, 400, "bad_request", "limit must be a number from 1 to %ld", max);
        return false;
    }
    *out = v;
    return true;
}

static void get_runs(struct serve *sv, const struct http_req *req, struct http_resp *resp)
{
    const char *status = http_query(req, "status");
    const char *flow_name = http_query(req, "flow");
    const char *cursor = http_query(req, "cursor");
    long limit;
    if (!parse_limit(http_query(req, "limit"), 50, 1000, &limit, resp))
        return;
    flow_run_query q = {status && *status ? status : NULL, flow_name && *flow_name ? flow_name
                                                                                  : NULL,
                        0};
    flow_error err = {0};
    json_t *all = flow_store_list_runs(sv->store, &q, NULL, &err); /* newest first */
    if (!all) {
        fail(resp, &err);
        return;
    }
    json_t *out = json_array();
    json_t *next = json_null();
    size_t i;
    json_t *run;
    json_array_foreach(all, i, run)
    {
        if (cursor && !after_cursor(run, cursor))
            continue;
        if ((long)json_array_size(out) == limit) {
            json_t *last = json_array_get(out, json_array_size(out) - 1);
            next = json_sprintf("%s|%s", json_string_value(json_object_get(last, "created_at")),
                                json_string_value(json_object_get(last, "id")));
            break;
        }
        json_array_append(out, run);
    }
    json_decref(all);
    http_json(resp, 200, json_pack("{s:o,s:o}", "runs", out, "next", next));
}

static void post_runs(struct serve *sv, const struct http_req *req, struct http_resp *resp)
{
    json_t *body = body_object(req, resp);
    bool bad = false;
    if (!body)
        return;
    const char *name = opt_string(body, "flow", resp, &bad);
    const char *id = bad ? NULL : opt_string(body, "id", resp, &bad);
    json_t *inputs = json_object_get(body, "inputs");
    if (!bad && !name) {
        http_error(resp, 400, "bad_request", "'flow' is required: the name of a flow of the "
                                             "flows directory (GET /api/v1/flows)");
        bad = true;
    } else if (!bad && inputs && !json_is_object(inputs) && !json_is_null(inputs)) {
        http_error(resp, 400, "bad_request", "'inputs' must be a JSON object");
        bad = true;
    }
    if (bad) {
        json_decref(body);
        return;
    }
    flow_error err = {0};
    char *run_id = NULL;
    if (id) {
        json_t *existing = flow_store_run(sv->store, id, &err);
        if (existing) {
            http_error(resp, 409, "exists", "run '%s' exists already (%s): not started again",
                       id, json_string_value(json_object_get(existing, "status")));
            json_decref(existing);
            json_decref(body);
            return;
        }
        memset(&err, 0, sizeof(err));
    }
    flow_err rc = serve_start(sv, name, json_is_object(inputs) ? inputs : NULL, id, &run_id, &err);
    if (rc == FLOW_OK)
        http_json(resp, 201, json_pack("{s:s,s:s,s:s}", "id", run_id, "flow", name, "status",
                                       "running"));
    else if (rc == FLOW_ESTATE)
        http_error(resp, 503, "unavailable", "%s", err.message);
    else
        fail(resp, &err);
    flow__free(run_id);
    json_decref(body);
}

static void get_run(struct serve *sv, const char *id, struct http_resp *resp)
{
    flow_error err = {0};
    json_t *run = flow_store_run(sv->store, id, &err);
    if (!run) {
        fail(resp, &err);
        return;
    }
    json_t *fb = flow_store_feedback(sv->store, id, &err);
    json_object_set_new(run, "feedback", fb ? fb : json_array());
    http_json(resp, 200, run);
}

static void get_run_graph(struct serve *sv, const char *id, const struct http_req *req,
                          struct http_resp *resp)
{
    flow_error err = {0};
    json_t *run = flow_store_run(sv->store, id, &err);
    if (!run) {
        fail(resp, &err);
        return;
    }
    const char *source = json_string_value(json_object_get(run, "source"));
    flow *f = source ? serve_load(source, &err) : NULL;
    if (!f)
        http_error(resp, 422, "invalid_flow", "cannot load the flow of run '%s'%s%s", id,
                   source ? ": " : " (it was not started from a file)",
                   source ? err.message : "");
    else
        send_graph(f, req, resp);
    flow_free(f);
    json_decref(run);
}

static void get_journal(struct serve *sv, const char *id, const struct http_req *req,
                        struct http_resp *resp)
{
    const char *after_text = http_query(req, "after");
    long limit;
    char *end;
    long long after = after_text ? strtoll(after_text, &end, 10) : -1;
    if (after_text && (*end || end == after_text || after < -1)) {
        http_error(resp, 400, "bad_request",
                   "after must be a record number (-1, the default, for all of them)");
        return;
    }
    if (!parse_limit(http_query(req, "limit"), 500, 5000, &limit, resp))
        return;
    flow_error err = {0};
    json_t *all = flow_store_journal(sv->store, id, &err);
    if (!all) {
        fail(resp, &err);
        return;
    }
    json_t *out = json_array();
    long long last = after;
    size_t i;
    json_t *rec;
    json_array_foreach(all, i, rec)
    {
        long long seq = json_integer_value(json_object_get(rec, "seq"));
        if (seq <= after)
            continue;
        if ((long)json_array_size(out) == limit)
            break;
        json_array_append(out, rec);
        last = seq;
    }
    json_decref(all);
    http_json(resp, 200, json_pack("{s:o,s:I}", "records", out, "next", (json_int_t)last));
}

/* ---- the event stream ------------------------------------------------- */

struct sse {
    struct serve *sv;
    char *id;
    flow_journal_reader *reader;
    long long seq;     /* records sent up to here */
    char status[16];   /* the last status sent */
    uint64_t gen;
    bool started;
    bool ended;
    double last_write;
};

static void sse_free(void *p)
{
    struct sse *s = p;
    flow_journal_reader_free(s->reader);
    flow__free(s->id);
    flow__free(s);
}

static bool ended_status(const char *st)
{
    return !strcmp(st, "completed") || !strcmp(st, "failed") || !strcmp(st, "cancelled");
}

/* Append what the store holds past what was sent: the reader reads only
 * the records added since its last call, and the run's status before
 * them, so when the status is final the records are the last ones and
 * `end` never overtakes a record. */
static void sse_catch_up(struct sse *s, struct flow__buf *out)
{
    flow_error err = {0};
    json_t *recs = flow_journal_reader_next(s->reader, &err);
    const char *st = flow_journal_reader_status(s->reader);
    size_t i;
    json_t *rec;
    json_array_foreach(recs, i, rec)
    {
        long long seq = json_integer_value(json_object_get(rec, "seq"));
        if (seq <= s->seq)
            continue;
        char *text = json_dumps(rec, JSON_COMPACT);
        if (!text)
            break;
        flow__buf_printf(out, "id: %lld\nevent: record\ndata: %s\n\n", seq, text);
        free(text);
        s->seq = seq;
    }
    json_decref(recs);
    if (!recs && err.code == FLOW_ENOTFOUND) { /* deleted (flow gc) */
        flow__buf_printf(out, "event: end\ndata: {\"id\":\"%s\",\"status\":null}\n\n", s->id);
        s->ended = true;
    } else if (recs && st && strcmp(st, s->status)) {
        snprintf(s->status, sizeof(s->status), "%s", st);
        flow__buf_printf(out, "event: run\ndata: {\"id\":\"%s\",\"status\":\"%s\"}\n\n", s->id,
                         st);
        if (ended_status(st)) {
            flow__buf_printf(out, "event: end\ndata: {\"id\":\"%s\",\"status\":\"%s\"}\n\n",
                             s->id, st);
            s->ended = true;
        }
    }
}

static bool sse_next(void *state, struct flow__buf *out)
{
    struct sse *s = state;
    if (s->ended)
        return false;
    for (;;) {
        bool closing = false;
        if (s->started)
            s->gen = hub_wait(&s->sv->hub, s->gen, 1000, &closing);
        if (closing)
            return false;
        s->started = true;
        sse_catch_up(s, out);
        double now = flow__wall_time();
        if (out->len) {
            s->last_write = now;
            return true;
        }
        if (now - s->last_write >= 15) {
            flow__buf_appends(out, ": keep-alive\n\n");
            s->last_write = now;
            return true;
        }
    }
}

static void get_events(struct serve *sv, const char *id, const struct http_req *req,
                       struct http_resp *resp)
{
    flow_error err = {0};
    json_t *run = flow_store_run(sv->store, id, &err);
    if (!run) {
        fail(resp, &err);
        return;
    }
    json_decref(run);
    struct sse *s = flow__calloc(1, sizeof(*s));
    if (!s || !(s->id = flow__strdup(id)) ||
        !(s->reader = flow_journal_reader_new(sv->store, id, &err))) {
        if (s)
            sse_free(s);
        if (err.code)
            fail(resp, &err);
        else
            http_error(resp, 500, "internal", "out of memory");
        return;
    }
    const char *last = http_header(req, "Last-Event-ID");
    s->sv = sv;
    char *end = NULL;
    long long from = last ? strtoll(last, &end, 10) : -1;
    s->seq = last && end != last && !*end && from >= -1 ? from : -1; /* else: from the start */
    s->last_write = flow__wall_time();
    pthread_mutex_lock(&sv->hub.lock);
    s->gen = sv->hub.gen;
    pthread_mutex_unlock(&sv->hub.lock);
    resp->status = 200;
    resp->content_type = "text/event-stream";
    resp->stream = sse_next;
    resp->stream_state = s;
    resp->stream_free = sse_free;
}

/* ---- changes to a run ------------------------------------------------- */

static void post_control(struct serve *sv, const char *id, const char *what,
                         const struct http_req *req, struct http_resp *resp)
{
    json_t *body = body_object(req, resp);
    bool bad = false;
    if (!body)
        return;
    const char *reason = opt_string(body, "reason", resp, &bad);
    flow_error err = {0};
    /* What GET /runs/ID says (the journal) decides: a run whose end is
     * journaled has ended, even while its runner is still closing it. */
    json_t *run = bad ? NULL : flow_store_run(sv->store, id, &err);
    const char *st = json_string_value(json_object_get(run, "status"));
    if (!bad && !run) {
        fail(resp, &err);
        bad = true;
    } else if (!bad && st && ended_status(st)) {
        http_error(resp, 409, "conflict", "run '%s' has already ended (%s)", id, st);
        bad = true;
    }
    json_decref(run);
    if (!bad) {
        if (flow_store_request(sv->store, id, what, reason, &err) == FLOW_OK)
            http_json(resp, 202, json_pack("{s:s,s:s}", "id", id, "requested", what));
        else
            fail(resp, &err);
    }
    json_decref(body);
}

static void post_continue(struct serve *sv, const char *id, bool retry,
                          const struct http_req *req, struct http_resp *resp)
{
    json_t *body = body_object(req, resp);
    if (!body)
        return;
    json_t *tasks = json_object_get(body, "tasks");
    const char **names = NULL;
    /* No list, null or []: every failed, cancelled and skipped activation. */
    if (retry && tasks && !json_is_null(tasks) &&
        !(json_is_array(tasks) && json_array_size(tasks) == 0)) {
        size_t n = json_array_size(tasks);
        names = json_is_array(tasks) ? flow__calloc(n + 1, sizeof(*names)) : NULL;
        for (size_t i = 0; names && i < n; i++)
            if (!(names[i] = json_string_value(json_array_get(tasks, i)))) {
                flow__free(names);
                names = NULL;
            }
        if (!names) {
            http_error(resp, 400, "bad_request", "'tasks' must be an array of task names");
            json_decref(body);
            return;
        }
    }
    flow_error err = {0};
    if (serve_continue(sv, id, retry, names, &err) == FLOW_OK)
        http_json(resp, 202, json_pack("{s:s,s:s}", "id", id, "status", "running"));
    else
        fail(resp, &err);
    flow__free(names);
    json_decref(body);
}

/* Once the last open request of a paused run is answered, the run can go
 * on: this serve resumes it if it was waiting for people. */
static bool resume_if_answered(struct serve *sv, const char *id)
{
    flow_error err = {0};
    json_t *run = flow_store_run(sv->store, id, &err);
    const char *st = json_string_value(json_object_get(run, "status"));
    const char *why = json_string_value(json_object_get(run, "error"));
    bool resumed = false;
    if (st && !strcmp(st, "paused") && why && !strncmp(why, "waiting for feedback", 20)) {
        json_t *open = flow_store_feedback(sv->store, id, &err);
        if (open && json_array_size(open) == 0)
            resumed = serve_continue(sv, id, false, NULL, &err) == FLOW_OK;
        json_decref(open);
    }
    json_decref(run);
    return resumed;
}

static void post_answer(struct serve *sv, const char *id, const char *request,
                        const struct http_req *req, struct http_resp *resp)
{
    json_t *body = body_object(req, resp);
    bool bad = false;
    if (!body)
        return;
    const char *by = opt_string(body, "by", resp, &bad);
    json_t *answer = NULL;
    int kinds = 0;
    json_t *v;
    if ((v = json_object_get(body, "approve")) && json_is_true(v)) {
        answer = json_true();
        kinds++;
    }
    if ((v = json_object_get(body, "reject")) && json_is_true(v)) {
        answer = json_false();
        kinds++;
    }
    const char *text = bad ? NULL : opt_string(body, "text", resp, &bad);
    const char *select = bad ? NULL : opt_string(body, "select", resp, &bad);
    if (text) {
        answer = json_string(text);
        kinds++;
    }
    if (select) {
        json_decref(answer);
        answer = json_string(select);
        kinds++;
    }
    if (!bad && kinds != 1) {
        http_error(resp, 400, "bad_request",
                   "give exactly one answer: {\"approve\": true}, {\"reject\": true}, "
                   "{\"text\": \"...\"} or {\"select\": \"OPTION\"}");
        bad = true;
    }
    flow_error err = {0};
    if (!bad) {
        if (flow_store_answer(sv->store, id, request, answer, by ? by : "api", &err) == FLOW_OK) {
            bool resumed = resume_if_answered(sv, id);
            http_json(resp, 200, json_pack("{s:s,s:s,s:O,s:s,s:b}", "run", id, "request", request,
                                           "answer", answer, "by", by ? by : "api", "resumed",
                                           resumed));
        } else {
            fail(resp, &err);
        }
    }
    json_decref(answer);
    json_decref(body);
}

/* ---- the rest ---------------------------------------------------------- */

static void get_feedback(struct serve *sv, struct http_resp *resp)
{
    flow_error err = {0};
    json_t *open = flow_store_feedback(sv->store, NULL, &err);
    if (!open)
        fail(resp, &err);
    else
        http_json(resp, 200, json_pack("{s:o}", "feedback", open));
}

static void get_workers(struct serve *sv, struct http_resp *resp)
{
    flow_error err = {0};
    json_t *list = NULL;
    if (!sv->redis_url) {
        http_json(resp, 200, json_pack("{s:[],s:n}", "workers", "redis"));
        return;
    }
    if (flow_workers_list(sv->redis_url, &list, &err) != FLOW_OK) {
        http_error(resp, 502, "redis", "%s", err.message);
        return;
    }
    http_json(resp, 200, json_pack("{s:o,s:b}", "workers", list, "redis", 1));
}

static void get_health(struct serve *sv, struct http_resp *resp)
{
    flow_error err = {0};
    json_t *probe = flow_store_run(sv->store, "healthz-probe", &err);
    json_decref(probe);
    if (probe || err.code == FLOW_ENOTFOUND)
        http_json(resp, 200, json_pack("{s:b,s:s}", "ok", 1, "store", flow_store_url(sv->store)));
    else
        http_json(resp, 503, json_pack("{s:b,s:s,s:s}", "ok", 0, "store",
                                       flow_store_url(sv->store), "error", err.message));
}

static void get_metrics(struct serve *sv, struct http_resp *resp)
{
    struct flow__buf out;
    flow__buf_init(&out, FLOW__BUF_DEFAULT_MAX);
    metrics_render(sv->metrics, &out);

    flow_error err = {0};
    json_t *runs = flow_store_runs(sv->store, &err);
    flow__buf_appends(&out, "# HELP flow_runs Runs in the store, by status.\n"
                            "# TYPE flow_runs gauge\n");
    for (size_t k = 0; run_statuses[k]; k++) {
        size_t n = 0, i;
        json_t *r;
        json_array_foreach(runs, i, r)
        {
            const char *st = json_string_value(json_object_get(r, "status"));
            n += st && !strcmp(st, run_statuses[k]);
        }
        flow__buf_printf(&out, "flow_runs{status=\"%s\"} %zu\n", run_statuses[k], n);
    }
    json_decref(runs);

    flow_engine_stats es;
    flow_engine_get_stats(sv->engine, &es);
    flow__buf_printf(&out,
                     "# HELP flow_ready_queue_depth Activations ready and waiting for a slot.\n"
                     "# TYPE flow_ready_queue_depth gauge\nflow_ready_queue_depth %zu\n"
                     "# HELP flow_engine_running Attempts running on this serve's engine.\n"
                     "# TYPE flow_engine_running gauge\nflow_engine_running %d\n"
                     "# HELP flow_engine_slots Attempts this serve runs at once (--jobs).\n"
                     "# TYPE flow_engine_slots gauge\nflow_engine_slots %d\n"
                     "# HELP flow_engine_runs Runs loaded in this serve's engine.\n"
                     "# TYPE flow_engine_runs gauge\nflow_engine_runs %zu\n",
                     es.ready, es.running, es.jobs, es.runs);

    flow_commit_stats cs;
    flow_store_commit_stats(sv->store, &cs);
    flow__buf_appends(&out, "# HELP flow_journal_commit_seconds How long journal batches took "
                            "to become durable in the store.\n"
                            "# TYPE flow_journal_commit_seconds histogram\n");
    metrics_put_histogram(&out, "flow_journal_commit_seconds", "", flow_commit_bounds(),
                          FLOW_COMMIT_BUCKETS - 1, cs.buckets, cs.count, cs.seconds);

    if (sv->redis_url) {
        json_t *workers = NULL;
        memset(&err, 0, sizeof(err));
        bool ok = flow_workers_list(sv->redis_url, &workers, &err) == FLOW_OK;
        flow__buf_printf(&out,
                         "# HELP flow_workers Live workers of the Redis executor.\n"
                         "# TYPE flow_workers gauge\nflow_workers %zu\n"
                         "# HELP flow_redis_up Whether the last look at Redis worked.\n"
                         "# TYPE flow_redis_up gauge\nflow_redis_up %d\n",
                         json_array_size(workers), ok);
        json_decref(workers);
    }
    flow__buf_printf(&out,
                     "# HELP flow_serve_start_time_seconds When this serve started.\n"
                     "# TYPE flow_serve_start_time_seconds gauge\n"
                     "flow_serve_start_time_seconds %.3f\n",
                     sv->started_at);
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp->len = out.len;
    resp->body = flow__buf_take(&out);
}

static void send_asset(const char *path, struct http_resp *resp)
{
    const struct flow_web_asset *a = flow_web_find(path);
    if (!a) {
        http_error(resp, 404, "not_found", "nothing at '%.200s'", path);
        return;
    }
    resp->status = 200;
    resp->content_type = a->content_type;
    resp->static_body = a->data;
    resp->len = a->size;
    resp->page = true;
    resp->cache_control = "no-cache";
}

/* The page and its assets hold no data: a browser loads them without the
 * token (it cannot send a header when it navigates), then the page asks
 * for the token and sends it with every API call. */
bool api_is_public(const char *path)
{
    return !strcmp(path, "/") || !strcmp(path, "/index.html") ||
           !strncmp(path, "/assets/", 8) || !strcmp(path, "/favicon.svg");
}

/* ---- routing -------------------------------------------------------------- */

#define MAX_SEGS 8

/* Split "/a/b/c" into its segments; false when there are too many or one
 * is empty (a double slash). */
static int split(const char *path, char segs[MAX_SEGS][256])
{
    int n = 0;
    const char *p = path;
    while (*p == '/')
        p++;
    while (*p) {
        size_t len = strcspn(p, "/");
        if (n == MAX_SEGS || len >= 256 || len == 0)
            return -1;
        memcpy(segs[n], p, len);
        segs[n][len] = '\0';
        n++;
        p += len;
        if (*p == '/')
            p++;
    }
    return n;
}

static bool method_is(const struct http_req *req, const char *m, struct http_resp *resp)
{
    if (!strcmp(req->method, m) || (!strcmp(m, "GET") && !strcmp(req->method, "HEAD")))
        return true;
    http_error(resp, 405, "method_not_allowed", "%s is not allowed here (use %s)", req->method, m);
    return false;
}

/* Route and answer; `route` gets the pattern, for the metrics. */
static void dispatch(struct serve *sv, const struct http_req *req, struct http_resp *resp,
                     const char **route)
{
    char segs[MAX_SEGS][256];
    int n = split(req->path, segs);
    bool api = n >= 2 && !strcmp(segs[0], "api") && !strcmp(segs[1], "v1");
    *route = "other";
    if (n < 0) {
        http_error(resp, 404, "not_found", "nothing at '%.200s'", req->path);
        return;
    }
    if (!api) {
        if (n == 1 && !strcmp(segs[0], "healthz")) {
            *route = "/healthz";
            if (method_is(req, "GET", resp))
                get_health(sv, resp);
        } else if (n == 1 && !strcmp(segs[0], "metrics")) {
            *route = "/metrics";
            if (method_is(req, "GET", resp))
                get_metrics(sv, resp);
        } else {
            *route = "/";
            if (method_is(req, "GET", resp))
                send_asset(req->path, resp);
        }
        return;
    }
    const char *a = n > 2 ? segs[2] : "";
    const char *id = n > 3 ? segs[3] : NULL;
    if (n == 3 && !strcmp(a, "flows")) {
        *route = API "/flows";
        if (method_is(req, "GET", resp))
            get_flows(sv, resp);
    } else if (n == 5 && !strcmp(a, "flows") && !strcmp(segs[4], "graph")) {
        *route = API "/flows/:name/graph";
        if (method_is(req, "GET", resp))
            get_flow_graph(sv, id, req, resp);
    } else if (n == 3 && !strcmp(a, "runs")) {
        *route = API "/runs";
        if (!strcmp(req->method, "POST"))
            post_runs(sv, req, resp);
        else if (method_is(req, "GET", resp))
            get_runs(sv, req, resp);
    } else if (n == 4 && !strcmp(a, "runs")) {
        *route = API "/runs/:id";
        if (method_is(req, "GET", resp))
            get_run(sv, id, resp);
    } else if (n == 5 && !strcmp(a, "runs")) {
        const char *what = segs[4];
        if (!strcmp(what, "journal")) {
            *route = API "/runs/:id/journal";
            if (method_is(req, "GET", resp))
                get_journal(sv, id, req, resp);
        } else if (!strcmp(what, "events")) {
            *route = API "/runs/:id/events";
            if (method_is(req, "GET", resp))
                get_events(sv, id, req, resp);
        } else if (!strcmp(what, "graph")) {
            *route = API "/runs/:id/graph";
            if (method_is(req, "GET", resp))
                get_run_graph(sv, id, req, resp);
        } else if (!strcmp(what, "pause") || !strcmp(what, "cancel")) {
            *route = !strcmp(what, "pause") ? API "/runs/:id/pause" : API "/runs/:id/cancel";
            if (method_is(req, "POST", resp))
                post_control(sv, id, what, req, resp);
        } else if (!strcmp(what, "resume") || !strcmp(what, "retry")) {
            *route = !strcmp(what, "resume") ? API "/runs/:id/resume" : API "/runs/:id/retry";
            if (method_is(req, "POST", resp))
                post_continue(sv, id, !strcmp(what, "retry"), req, resp);
        } else {
            http_error(resp, 404, "not_found", "no route '%.200s'", req->path);
        }
    } else if (n == 6 && !strcmp(a, "runs") && !strcmp(segs[4], "feedback")) {
        *route = API "/runs/:id/feedback/:request";
        if (method_is(req, "POST", resp))
            post_answer(sv, id, segs[5], req, resp);
    } else if (n == 3 && !strcmp(a, "feedback")) {
        *route = API "/feedback";
        if (method_is(req, "GET", resp))
            get_feedback(sv, resp);
    } else if (n == 3 && !strcmp(a, "workers")) {
        *route = API "/workers";
        if (method_is(req, "GET", resp))
            get_workers(sv, resp);
    } else {
        http_error(resp, 404, "not_found", "no route '%.200s' (the API is described in "
                                           "docs/operations.md)",
                   req->path);
    }
}

void api_handle(void *udata, const struct http_req *req, struct http_resp *resp)
{
    struct serve *sv = udata;
    const char *route = "other";
    int64_t began = flow__now_ns();
    dispatch(sv, req, resp, &route);
    metrics_http(sv->metrics, route, resp->status, (double)(flow__now_ns() - began) / 1e9);
}
