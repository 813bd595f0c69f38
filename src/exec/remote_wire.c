/* remote_wire.c -- keys and messages of the remote executor (remote_wire.h). */
#include "util/compat.h"

#include "exec/remote_wire.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/json.h"
#include "util/redact.h"

char *flow__rw_key(const char *prefix, const char *kind, const char *name)
{
    return flow__asprintf("%s:%s:%s", prefix, kind, name);
}

char *flow__rw_queue_key(const char *prefix, const char *queue, int priority)
{
    if (!priority)
        return flow__rw_key(prefix, "q", queue);
    return flow__asprintf("%s:q:%s@%d", prefix, queue, priority);
}

static const char *const res_names[] = {"cpu", "memory", "gpu"};

char *flow__rw_resources_encode(const flow_resources *r, bool all)
{
    const double v[3] = {r->cpu, r->memory, r->gpu};
    json_t *o = json_object();
    for (int i = 0; o && i < 3; i++) {
        if (!all && v[i] <= 0)
            continue;
        /* Whole numbers as integers: bytes print as bytes, not 1.7e10. */
        json_t *n = v[i] == (double)(json_int_t)v[i] ? json_integer((json_int_t)v[i])
                                                      : json_real(v[i]);
        if (json_object_set_new(o, res_names[i], n)) {
            json_decref(o);
            o = NULL;
        }
    }
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

bool flow__rw_resources_decode(const char *text, flow_resources *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    if (!text)
        return true;
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    double v[3] = {0, 0, 0};
    bool ok = json_is_object(o);
    for (int i = 0; ok && i < 3; i++) {
        json_t *n = json_object_get(o, res_names[i]);
        if (n && (!json_is_number(n) || !(json_number_value(n) >= 0) ||
                  json_number_value(n) > 1e300))
            ok = false;
        else if (n)
            v[i] = json_number_value(n);
    }
    json_decref(o);
    if (!ok) {
        *why = "field 'resources' is not an object of amounts (cpu, memory, gpu)";
        return false;
    }
    out->cpu = v[0];
    out->memory = v[1];
    out->gpu = v[2];
    return true;
}

/* The fields of a worker's heartbeat (P:worker:NAME), as listed. */
static const char *const beat_fields[] = {"host",    "pid",  "queues",    "running", "done",
                                          "started", "seen", "resources", "in_use"};
#define NBEAT FLOW__ARRAY_LEN(beat_fields)

/* One worker's heartbeat as {name, ...}; NULL when it expired (or out of
 * memory: *oom). */
static json_t *worker_of(const char *name, const redisReply *h, bool *oom)
{
    if (!h || h->type != REDIS_REPLY_ARRAY || h->elements != NBEAT ||
        h->element[0]->type != REDIS_REPLY_STRING)
        return NULL;
    json_t *o = json_pack("{s:s}", "name", name);
    for (size_t k = 0; o && k < NBEAT; k++) {
        const redisReply *v = h->element[k];
        if (v->type != REDIS_REPLY_STRING)
            continue;
        json_t *j = NULL;
        json_error_t jerr;
        if (k == 0) {
            j = json_string(v->str);
        } else if (k == 2) {
            j = json_array();
            char *copy = flow__strdup(v->str), *save = NULL;
            for (char *q = copy && j ? strtok_r(copy, ",", &save) : NULL; q;
                 q = strtok_r(NULL, ",", &save))
                json_array_append_new(j, json_string(q));
            flow__free(copy);
        } else if (k == 5 || k == 6) {
            j = json_real(strtod(v->str, NULL));
        } else if (k >= 7) {
            flow_resources r;
            const char *why;
            if (!flow__rw_resources_decode(v->str, &r, &why))
                continue; /* not ours to show */
            j = json_loads(v->str, 0, &jerr);
        } else {
            j = json_integer(strtoll(v->str, NULL, 10));
        }
        if (!j || json_object_set_new(o, beat_fields[k], j)) {
            json_decref(o);
            o = NULL;
        }
    }
    *oom = !o;
    return o;
}

flow_err flow__rw_workers_read(redisContext *c, const struct flow__redis_addr *a, bool prune,
                               json_t **out, flow_error *err)
{
    *out = NULL;
    json_t *list = json_array();
    char *set = flow__asprintf("%s:workers", a->prefix);
    redisReply *names = list && set ? flow__redis_cmd(c, a, err, "ZRANGE %s 0 -1", set) : NULL;
    flow_err rc = names ? FLOW_OK : list && set ? err->code : FLOW_ENOMEM;
    size_t n = names && names->type == REDIS_REPLY_ARRAY ? names->elements : 0;
    const char *argv[2 + NBEAT];
    argv[0] = "HMGET";
    for (size_t k = 0; k < NBEAT; k++)
        argv[2 + k] = beat_fields[k];
    /* One round trip: an HMGET per name, pipelined. */
    size_t sent = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const redisReply *nm = names->element[i];
        char *key = nm->type == REDIS_REPLY_STRING ? flow__rw_key(a->prefix, "worker", nm->str)
                                                   : flow__rw_key(a->prefix, "worker", "?");
        argv[1] = key;
        if (!key || redisAppendCommandArgv(c, (int)(2 + NBEAT), argv, NULL) != REDIS_OK)
            rc = FLOW_ENOMEM;
        else
            sent++;
        flow__free(key);
    }
    /* Names whose heartbeat expired: they are gone (a reply is read before
     * the next command is sent: pruning waits for the last one). */
    bool *gone = sent ? flow__calloc(sent, sizeof(*gone)) : NULL;
    for (size_t i = 0; i < sent; i++) {
        void *r = NULL;
        if (redisGetReply(c, &r) != REDIS_OK) {
            rc = flow__error(err, FLOW_EIO, "redis %s: %s", a->shown,
                             c->errstr[0] ? c->errstr : "connection lost");
            break;
        }
        redisReply *h = r;
        const redisReply *nm = names->element[i];
        bool oom = false;
        json_t *o = !rc && nm->type == REDIS_REPLY_STRING ? worker_of(nm->str, h, &oom) : NULL;
        if (o && json_array_append_new(list, o))
            oom = true;
        if (oom && !rc)
            rc = FLOW_ENOMEM;
        if (gone && !o && !oom && nm->type == REDIS_REPLY_STRING && h->type != REDIS_REPLY_ERROR)
            gone[i] = true;
        freeReplyObject(h);
    }
    for (size_t i = 0; prune && gone && !rc && i < sent; i++)
        if (gone[i])
            freeReplyObject(flow__redis_cmd(c, a, err, "ZREM %s %s", set, names->element[i]->str));
    flow__free(gone);
    freeReplyObject(names);
    flow__free(set);
    if (rc) {
        json_decref(list);
        if (rc == FLOW_ENOMEM)
            flow__error(err, FLOW_ENOMEM, "out of memory listing workers");
        return rc;
    }
    *out = list;
    return FLOW_OK;
}

bool flow__rw_entry_of(const redisReply *r, struct flow__rw_entry *out)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return false;
    const redisReply *id = r->element[0], *f = r->element[1];
    if (!id || id->type != REDIS_REPLY_STRING || !f || f->type != REDIS_REPLY_ARRAY ||
        f->elements % 2)
        return false;
    for (size_t i = 0; i < f->elements; i++)
        if (!f->element[i] || f->element[i]->type != REDIS_REPLY_STRING)
            return false;
    out->id = id->str;
    out->fields = f;
    return true;
}

const char *flow__rw_field(const struct flow__rw_entry *e, const char *name)
{
    for (size_t i = 0; i + 1 < e->fields->elements; i += 2)
        if (!strcmp(e->fields->element[i]->str, name))
            return e->fields->element[i + 1]->str;
    return NULL;
}

static bool parse_u32(const char *s, uint32_t *out)
{
    if (!s || !*s || strlen(s) > 10)
        return false;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v == 0 || v > UINT32_MAX || *s < '0' || *s > '9')
        return false;
    *out = (uint32_t)v;
    return true;
}

/* Not empty, short, no '/', no leading '.', no control character. */
static bool run_id_ok(const char *id)
{
    if (!id || !*id || strlen(id) >= 80 || id[0] == '.')
        return false;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if (*p == '/' || *p == '\\' || *p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

bool flow__rw_ident(const struct flow__rw_entry *e, struct flow__rw_ident *out, const char **why)
{
    const char *v = flow__rw_field(e, "v");
    if (!v || strcmp(v, FLOW__RW_VERSION)) {
        *why = "field 'v' is not " FLOW__RW_VERSION " (a message of another version)";
        return false;
    }
    out->run = flow__rw_field(e, "run");
    /* A run id names directories on the worker: nothing that climbs. */
    if (!run_id_ok(out->run)) {
        *why = "field 'run' is missing or not a run id";
        return false;
    }
    if (!parse_u32(flow__rw_field(e, "act"), &out->act)) {
        *why = "field 'act' is missing or not a positive integer";
        return false;
    }
    if (!parse_u32(flow__rw_field(e, "attempt"), &out->attempt)) {
        *why = "field 'attempt' is missing or not a positive integer";
        return false;
    }
    const char *round = flow__rw_field(e, "round");
    out->round = 0;
    if (round && strcmp(round, "0") && !parse_u32(round, &out->round)) {
        *why = "field 'round' is not a number";
        return false;
    }
    return true;
}

void flow__rw_cancel_field(char *buf, size_t size, uint32_t act, uint32_t attempt, uint32_t round)
{
    if (round)
        snprintf(buf, size, "%" PRIu32 ":%" PRIu32 ".%" PRIu32, act, attempt, round);
    else
        snprintf(buf, size, "%" PRIu32 ":%" PRIu32, act, attempt);
}

void flow__rw_inflight_value(char *buf, size_t size, uint32_t attempt, uint32_t round)
{
    if (round)
        snprintf(buf, size, "%" PRIu32 ".%" PRIu32, attempt, round);
    else
        snprintf(buf, size, "%" PRIu32, attempt);
}

static const char *const mode_names[] = {"auto", "json", "text", "lines"};

const char *flow__rw_output_mode_name(flow_output_mode m)
{
    return (unsigned)m < 4 ? mode_names[m] : "auto";
}

static json_t *strings(const char *const *v)
{
    json_t *a = json_array();
    for (size_t i = 0; a && v && v[i]; i++)
        if (json_array_append_new(a, json_string(v[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

bool flow__rw_state_v_ok(const char *v)
{
    if (!v || !*v || strlen(v) >= FLOW__RW_STATE_V_MAX)
        return false;
    for (const char *p = v; *p; p++)
        if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return false;
    return true;
}

json_t *flow__rw_spec_encode(const struct flow__cmd_spec *spec, const char *fn,
                             const char *state_v)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = 0;
    if (fn)
        bad |= json_object_set_new(o, "fn", json_string(fn));
    else if (spec->shell)
        bad |= json_object_set_new(o, "shell", json_string(spec->shell));
    else
        bad |= json_object_set_new(o, "argv", strings(spec->argv));
    if (spec->env)
        bad |= json_object_set_new(o, "env", strings(spec->env));
    if (spec->cwd)
        bad |= json_object_set_new(o, "cwd", json_string(spec->cwd));
    bad |= json_object_set(o, "input", spec->input ? spec->input : json_null());
    bad |= json_object_set_new(o, "state_v", json_string(state_v));
    bad |= json_object_set_new(o, "stdin", json_boolean(spec->stdin_input));
    bad |= json_object_set_new(o, "output",
                               json_string(flow__rw_output_mode_name(spec->output_mode)));
    bad |= json_object_set_new(o, "output_limit", json_integer((json_int_t)spec->output_limit));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* A NULL-terminated array of the strings of JSON array `a` (borrowed). */
static bool string_list(json_t *a, const char ***out, const char *field, char **why, bool need)
{
    if (!a && !need)
        return true;
    if (!json_is_array(a) || (need && !json_array_size(a))) {
        *why = flow__asprintf("field '%s' of the spec is not a%s list of strings", field,
                              need ? " non-empty" : "");
        return false;
    }
    const char **v = flow__calloc(json_array_size(a) + 1, sizeof(*v));
    if (!v) {
        *why = flow__strdup("out of memory reading a spec");
        return false;
    }
    *out = v;
    for (size_t i = 0; i < json_array_size(a); i++) {
        v[i] = json_string_value(json_array_get(a, i));
        if (!v[i]) {
            *why = flow__asprintf("item %zu of field '%s' of the spec is not a string", i + 1,
                                  field);
            return false;
        }
    }
    return true;
}

bool flow__rw_spec_decode(const char *text, struct flow__rw_task *t, char **why)
{
    memset(t, 0, sizeof(*t));
    *why = NULL;
    json_error_t jerr;
    t->owned = text ? json_loads(text, JSON_DECODE_ANY, &jerr) : NULL;
    if (!json_is_object(t->owned)) {
        *why = flow__strdup(text ? "field 'spec' is not a JSON object" : "field 'spec' is missing");
        return false;
    }
    json_t *o = t->owned, *v;
    if ((v = json_object_get(o, "fn"))) {
        if (!json_is_string(v) || !*json_string_value(v)) {
            *why = flow__strdup("field 'fn' of the spec is not a function name");
            return false;
        }
        t->fn = json_string_value(v);
    } else if ((v = json_object_get(o, "shell"))) {
        if (!json_is_string(v)) {
            *why = flow__strdup("field 'shell' of the spec is not a string");
            return false;
        }
        t->spec.shell = json_string_value(v);
    } else {
        if (!string_list(json_object_get(o, "argv"), &t->argv, "argv", why, true))
            return false;
        t->spec.argv = t->argv;
    }
    if (!string_list(json_object_get(o, "env"), &t->env, "env", why, false))
        return false;
    t->spec.env = t->env;
    for (size_t i = 0; t->env && t->env[i]; i++)
        if (!strchr(t->env[i], '=') || t->env[i][0] == '=') {
            *why = flow__asprintf("item %zu of field 'env' of the spec is not NAME=VALUE", i + 1);
            return false;
        }
    if ((v = json_object_get(o, "cwd"))) {
        if (!json_is_string(v)) {
            *why = flow__strdup("field 'cwd' of the spec is not a string");
            return false;
        }
        t->spec.cwd = json_string_value(v);
    }
    t->spec.input = json_object_get(o, "input");
    if (!t->spec.input) {
        *why = flow__strdup("field 'input' of the spec is missing");
        return false;
    }
    if ((v = json_object_get(o, "state_v"))) {
        if (!flow__rw_state_v_ok(json_string_value(v))) {
            *why = flow__strdup("field 'state_v' of the spec is not a state version");
            return false;
        }
        t->state_v = json_string_value(v);
    } else if ((v = json_object_get(o, "state"))) { /* a runner before state_v */
        if (!json_is_object(v)) {
            *why = flow__strdup("field 'state' of the spec is not an object");
            return false;
        }
        t->state = v;
    } else {
        *why = flow__strdup("field 'state_v' of the spec is missing");
        return false;
    }
    t->answers = json_object_get(o, "answers");
    if (t->answers && !json_is_object(t->answers)) {
        *why = flow__strdup("field 'answers' of the spec is not an object");
        return false;
    }
    t->item = json_object_get(o, "item");
    t->index = -1;
    if ((v = json_object_get(o, "index"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            *why = flow__strdup("field 'index' of the spec is not a position");
            return false;
        }
        t->index = (long)json_integer_value(v);
    }
    if (!string_list(json_object_get(o, "secrets"), &t->secrets, "secrets", why, false))
        return false;
    t->spec.stdin_input = json_is_true(json_object_get(o, "stdin"));
    const char *mode = json_string_value(json_object_get(o, "output"));
    t->spec.output_mode = FLOW_OUTPUT_AUTO;
    for (unsigned i = 0; mode && i < 4; i++)
        if (!strcmp(mode, mode_names[i]))
            t->spec.output_mode = (flow_output_mode)i;
    json_int_t limit = json_integer_value(json_object_get(o, "output_limit"));
    t->spec.output_limit = limit > 0 && limit < ((json_int_t)1 << 40) ? (size_t)limit : 0;
    return true;
}

void flow__rw_task_cleanup(struct flow__rw_task *t)
{
    flow__free(t->argv);
    flow__free(t->env);
    flow__free(t->secrets);
    json_decref(t->owned);
    memset(t, 0, sizeof(*t));
}

json_t *flow__rw_state_decode(const redisReply *r, const char *run, const char *state_v,
                              char **why)
{
    *why = NULL;
    if (r && r->type == REDIS_REPLY_STRING) {
        json_error_t jerr;
        json_t *o = json_loadb(r->str, r->len, 0, &jerr);
        if (json_is_object(o))
            return o;
        json_decref(o);
        *why = flow__asprintf("the state of run %s (version %s) in Redis is not a JSON object",
                              run, state_v);
    } else if (r && r->type == REDIS_REPLY_ERROR) {
        *why = flow__asprintf("cannot read the state of run %s (version %s): %.300s", run,
                              state_v, r->str ? r->str : "error");
    } else if (r && r->type != REDIS_REPLY_NIL) {
        *why = flow__asprintf("the state of run %s (version %s) in Redis is not a string", run,
                              state_v);
    } else {
        *why = flow__asprintf("the state of run %s (version %s) is not in Redis (the run ended, "
                              "or its keys expired)",
                              run, state_v);
    }
    if (!*why)
        *why = flow__strdup("out of memory reading the state");
    return NULL;
}

void flow__rw_extra_cleanup(struct flow__rw_extra *x)
{
    json_decref(x->writes);
    json_decref(x->events);
    json_decref(x->waiting);
    memset(x, 0, sizeof(*x));
}

json_t *flow__rw_result_encode(const struct flow__cmd_result *res, const struct flow__rw_extra *x)
{
    json_t *o = json_pack("{s:b,s:i,s:i}", "ok", res->ok, "exit_status", res->exit_status,
                          "term_signal", res->term_signal);
    if (!o)
        return NULL;
    int bad = 0;
    if (res->output)
        bad |= json_object_set(o, "output", res->output);
    if (res->directives)
        bad |= json_object_set(o, "directives", res->directives);
    if (x && x->writes)
        bad |= json_object_set(o, "writes", x->writes);
    if (x && x->events && json_array_size(x->events))
        bad |= json_object_set(o, "events", x->events);
    if (x && x->waiting)
        bad |= json_object_set(o, "waiting", x->waiting);
    if (res->error)
        bad |= json_object_set_new(o, "error", json_string(res->error));
    if (res->stderr_tail)
        bad |= json_object_set_new(o, "stderr", json_string(res->stderr_tail));
    if (res->stdout_tail)
        bad |= json_object_set_new(o, "stdout", json_string(res->stdout_tail));
    if (res->final)
        bad |= json_object_set_new(o, "final", json_true());
    if (res->retry_set)
        bad |= json_object_set_new(o, "retry_after", json_real(res->retry_after));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static char *opt_string(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? flow__strdup(s) : NULL;
}

/* Each element an object {event: non-empty string, data}. */
static bool events_ok(json_t *ev)
{
    if (!json_is_array(ev))
        return false;
    for (size_t i = 0; i < json_array_size(ev); i++) {
        json_t *e = json_array_get(ev, i);
        const char *name = json_string_value(json_object_get(e, "event"));
        if (!json_is_object(e) || !name || !*name)
            return false;
    }
    return true;
}

bool flow__rw_result_decode(const char *text, struct flow__cmd_result *res,
                            struct flow__rw_extra *x, char **why)
{
    memset(res, 0, sizeof(*res));
    memset(x, 0, sizeof(*x));
    *why = NULL;
    json_error_t jerr;
    json_t *o = text ? json_loads(text, JSON_DECODE_ANY, &jerr) : NULL;
    if (!json_is_object(o) || !json_is_boolean(json_object_get(o, "ok"))) {
        json_decref(o);
        *why = flow__strdup("field 'result' is not a JSON object with 'ok'");
        return false;
    }
    json_t *d = json_object_get(o, "directives");
    json_t *w = json_object_get(o, "writes");
    json_t *ev = json_object_get(o, "events");
    json_t *wt = json_object_get(o, "waiting");
    if ((d && !json_is_array(d)) || (w && !json_is_object(w)) || (ev && !events_ok(ev)) ||
        (wt && (!json_is_object(wt) || !json_is_string(json_object_get(wt, "id")) ||
                !*json_string_value(json_object_get(wt, "id"))))) {
        json_decref(o);
        *why = flow__strdup("field 'directives', 'writes', 'events' or 'waiting' of the result "
                            "has the wrong type");
        return false;
    }
    res->ok = json_is_true(json_object_get(o, "ok"));
    res->exit_status = (int)json_integer_value(json_object_get(o, "exit_status"));
    res->term_signal = (int)json_integer_value(json_object_get(o, "term_signal"));
    res->output = json_incref(json_object_get(o, "output"));
    if (res->ok && !res->output)
        res->output = json_null();
    res->directives = d ? json_incref(d) : json_array();
    x->writes = json_incref(w);
    x->events = json_incref(ev);
    x->waiting = json_incref(wt);
    res->error = opt_string(o, "error");
    res->stderr_tail = opt_string(o, "stderr");
    res->stdout_tail = opt_string(o, "stdout");
    res->final = json_is_true(json_object_get(o, "final"));
    json_t *ra = json_object_get(o, "retry_after");
    if (json_is_number(ra) && json_number_value(ra) >= 0 && json_number_value(ra) < 1e9) {
        res->retry_set = true;
        res->retry_after = json_number_value(ra);
    }
    json_decref(o);
    return true;
}

char *flow__rw_event_encode(uint32_t seq, const char *event, json_t *data)
{
    json_t *o = json_pack("{s:I,s:s,s:O}", "seq", (json_int_t)seq, "event", event, "data",
                          data ? data : json_null());
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(o);
    return text;
}

bool flow__rw_event_decode(const char *text, uint32_t *seq, const char **name, json_t **data,
                           json_t **owned, char **why)
{
    json_error_t jerr;
    json_t *o = json_loads(text, JSON_DECODE_ANY, &jerr);
    json_t *s = json_object_get(o, "seq");
    const char *n = json_string_value(json_object_get(o, "event"));
    if (!json_is_object(o) || !json_is_integer(s) || json_integer_value(s) < 0 ||
        json_integer_value(s) > (json_int_t)UINT32_MAX || !n || !*n) {
        json_decref(o);
        *why = flow__strdup("field 'event' is not an object with 'seq' and 'event'");
        return false;
    }
    *seq = (uint32_t)json_integer_value(s);
    *name = n;
    *data = json_object_get(o, "data");
    if (!*data)
        *data = json_null();
    *owned = o;
    return true;
}

/* The "{{ secrets.NAME }}" a runner left in a remote task's env value. */
#define SECRET_OPEN "{{ secrets."
#define SECRET_CLOSE " }}"

bool flow__rw_fill_secrets(const char *kv, const char *const *names,
                           const struct flow__secrets *values, char **out, char **why)
{
    *out = NULL;
    *why = NULL;
    if (!names || !strstr(kv, SECRET_OPEN))
        return true;
    struct flow__buf b;
    flow__buf_init(&b, FLOW__BUF_DEFAULT_MAX);
    bool filled = false;
    flow_err rc = FLOW_OK;
    const char *p = kv;
    for (const char *q; !rc && (q = strstr(p, SECRET_OPEN));) {
        const char *name = q + strlen(SECRET_OPEN);
        const char *end = strstr(name, SECRET_CLOSE);
        size_t len = end ? (size_t)(end - name) : 0;
        const char *listed = NULL;
        for (size_t i = 0; len && names[i] && !listed; i++)
            if (strlen(names[i]) == len && !memcmp(names[i], name, len))
                listed = names[i];
        rc = flow__buf_append(&b, p, (size_t)(q - p));
        if (!listed) { /* not one the runner left: text as it is */
            if (!rc)
                rc = flow__buf_append(&b, q, strlen(SECRET_OPEN));
            p = name;
            continue;
        }
        const char *v = flow__secrets_get(values, listed);
        if (!v) {
            *why = flow__asprintf("secret '%s' is not set in the worker's environment", listed);
            flow__buf_cleanup(&b);
            return false;
        }
        if (!rc)
            rc = flow__buf_append(&b, v, strlen(v));
        filled = true;
        p = end + strlen(SECRET_CLOSE);
    }
    if (!rc)
        rc = flow__buf_appends(&b, p);
    if (rc) {
        flow__buf_cleanup(&b);
        *why = flow__strdup("out of memory filling in secrets");
        return false;
    }
    if (filled)
        *out = flow__buf_take(&b);
    flow__buf_cleanup(&b);
    return true;
}
