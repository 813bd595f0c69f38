/* inspect.c -- what a reader sees of stored runs (flow status, logs,
 * checkpoints, gc, and requests to a runner), folded from the journal alone:
 * no flow definition is needed, since run_created names the tasks. */
#include "util/compat.h"

#include <math.h>
#include <string.h>

#include "def/flowdef.h"
#include "store/handle.h"

#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/json.h"
#include "util/vec.h"

static const char *const run_status_names[] = {"pending",   "running", "paused",
                                               "completed", "failed",  "cancelled"};

static const char *status_name(int s)
{
    return s >= 0 && (size_t)s < sizeof(run_status_names) / sizeof(run_status_names[0])
               ? run_status_names[s]
               : "unknown";
}

static json_t *meta_json(const struct flow__run_meta *m)
{
    return json_pack("{s:s,s:s?,s:s?,s:s,s:o,s:o,s:s?,s:s?}", "id", m->id, "flow", m->flow,
                     "version", m->version, "status", status_name(m->status), "created_at",
                     flow__json_time(m->created_at), "ended_at", flow__json_time(m->ended_at),
                     "source", m->source, "parent", m->parent);
}

/* For a run the store says is running: "runner", the live process that
 * runs it ("pid@host"), or null and the status "stopped" when none does --
 * its runner died without ending it (kill -9, a crash), so every reader
 * (list, detail, JSON) tells the same story. False when it stopped; true
 * when it runs or the lease cannot be read (then nothing is claimed). */
/* A run is created in the store a moment before its runner takes its lease
 * and writes its first record: a run that young, with no lease and no
 * record yet, is starting, not stopped. */
#define STARTING_GRACE 2.0

static flow_err first_record(void *udata, uint64_t seq, const struct flow__jrec *rec)
{
    (void)seq;
    (void)rec;
    *(bool *)udata = true;
    return FLOW_ECANCELLED; /* one is enough */
}

/* [io] Has run `id` no record yet? */
static bool no_record(flow_store *s, const char *id)
{
    bool any = false;
    (void)flow__store_read(s->backend, id, 0, first_record, &any, NULL);
    return !any;
}

static bool set_runner(flow_store *s, json_t *run, double created_at)
{
    char *holder = NULL;
    const char *id = json_string_value(json_object_get(run, "id"));
    flow_err rc;
    bool starting = false;
    pthread_mutex_lock(&s->io);
    rc = flow__store_lease_get(s->backend, id, flow__wall_time(), &holder, NULL);
    if (rc == FLOW_OK && !holder && flow__wall_time() - created_at < STARTING_GRACE)
        starting = no_record(s, id);
    pthread_mutex_unlock(&s->io);
    if (rc != FLOW_OK)
        return true;
    json_object_set_new(run, "runner", holder ? json_string(holder) : json_null());
    if (!holder && !starting)
        json_object_set_new(run, "status", json_string("stopped"));
    flow__free(holder);
    return holder != NULL || starting;
}

struct listed {
    json_t *runs;
    FLOW__VEC(double) created; /* each run's creation time, for set_runner */
};

static flow_err list_one(void *udata, const struct flow__run_meta *m)
{
    struct listed *l = udata;
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&l->created, m->created_at, rc);
    json_t *j = rc ? NULL : meta_json(m);
    if (!j || json_array_append_new(l->runs, j))
        return FLOW_ENOMEM;
    return FLOW_OK;
}

json_t *flow_store_runs(flow_store *s, flow_error *err)
{
    json_t *out = json_array();
    if (!out) {
        flow__error(err, FLOW_ENOMEM, "out of memory listing runs");
        return NULL;
    }
    flow_err rc;
    struct listed l = {.runs = out};
    FLOW__WITH_STORE(s, rc = flow__store_run_list(s->backend, list_one, &l, err));
    if (rc != FLOW_OK) {
        if (rc == FLOW_ENOMEM)
            flow__error(err, rc, "out of memory listing runs");
        FLOW__VEC_FREE(&l.created);
        json_decref(out);
        return NULL;
    }
    size_t i;
    json_t *run;
    json_array_foreach(out, i, run)
    {
        if (!strcmp(json_string_value(json_object_get(run, "status")), "running"))
            (void)set_runner(s, run, l.created.items[i]);
    }
    FLOW__VEC_FREE(&l.created);
    return out;
}

/* Seconds from the run's creation to its end, or until now while it runs;
 * null for a run that neither ended nor runs (paused, stopped, pending). */
static void add_duration(json_t *run, double created_at, double ended_at)
{
    const char *status = json_string_value(json_object_get(run, "status"));
    double end = ended_at > 0                            ? ended_at
                 : status && !strcmp(status, "running") ? flow__wall_time()
                                                         : 0;
    double d = end - created_at;
    /* Milliseconds are all the store's times mean. */
    json_object_set_new(run, "duration",
                        end > 0 ? json_real(d > 0 ? round(d * 1000) / 1000 : 0) : json_null());
}

/* ---- a query over the runs ---------------------------------------------- */

/* The statuses a query names, as bits: 1 << flow_run_status, and "stopped"
 * (a run stored as running that nobody runs) above them. */
#define STOPPED_BIT (1u << FLOW__ARRAY_LEN(run_status_names))
#define ALL_STATUSES ((STOPPED_BIT << 1) - 1)

static flow_err query_statuses(const char *text, unsigned *mask, flow_error *err)
{
    static const char known[] = "pending, running, paused, completed, failed, cancelled, stopped";
    *mask = text ? 0 : ALL_STATUSES;
    for (const char *p = text; p && *p;) {
        size_t n = strcspn(p, ",");
        const char *w = p;
        size_t wn = n;
        while (wn && (*w == ' ' || *w == '\t'))
            w++, wn--;
        while (wn && (w[wn - 1] == ' ' || w[wn - 1] == '\t'))
            wn--;
        unsigned bit = 0;
        for (size_t k = 0; k < FLOW__ARRAY_LEN(run_status_names) && !bit; k++)
            if (strlen(run_status_names[k]) == wn && !memcmp(run_status_names[k], w, wn))
                bit = 1u << k;
        if (!bit && wn == 7 && !memcmp(w, "stopped", 7))
            bit = STOPPED_BIT;
        if (!bit && wn)
            return flow__error(err, FLOW_EINVAL, "unknown run status '%.*s' (known: %s)",
                               (int)(wn > 64 ? 64 : wn), w, known);
        *mask |= bit;
        p += n + (p[n] == ',');
    }
    if (!*mask)
        return flow__error(err, FLOW_EINVAL, "no run status in '%s' (known: %s)", text, known);
    return FLOW_OK;
}

struct query_scan {
    unsigned mask;
    const char *flow;
    FLOW__VEC(struct flow__run_meta) runs; /* candidates, oldest first; no inputs */
};

static flow_err query_one(void *udata, const struct flow__run_meta *m)
{
    struct query_scan *q = udata;
    unsigned bit = m->status >= 0 && (size_t)m->status < FLOW__ARRAY_LEN(run_status_names)
                       ? 1u << m->status
                       : 0;
    if (!(q->mask & bit) && !(m->status == FLOW_RUN_RUNNING && (q->mask & STOPPED_BIT)))
        return FLOW_OK;
    if (q->flow && (!m->flow || strcmp(m->flow, q->flow) != 0))
        return FLOW_OK;
    struct flow__run_meta bare = *m, copy;
    bare.inputs = NULL; /* never shown in a list */
    flow_err rc = flow__run_meta_copy(&copy, &bare);
    if (rc == FLOW_OK)
        FLOW__VEC_PUSH(&q->runs, copy, rc);
    if (rc != FLOW_OK)
        flow__run_meta_cleanup(&copy);
    return rc;
}

json_t *flow_store_list_runs(flow_store *s, const flow_run_query *query, size_t *matched,
                             flow_error *err)
{
    static const flow_run_query every;
    const flow_run_query *q = query ? query : &every;
    struct query_scan scan = {.flow = q->flow};
    size_t count = 0;
    if (matched)
        *matched = 0;
    flow_err rc = query_statuses(q->status, &scan.mask, err);
    if (rc != FLOW_OK)
        return NULL;
    json_t *out = json_array();
    if (!out) {
        flow__error(err, FLOW_ENOMEM, "out of memory listing runs");
        return NULL;
    }
    /* The backend lists oldest first, through its lock: take the candidates
     * out, then decide, newest first, who runs each one still "running". */
    FLOW__WITH_STORE(s, rc = flow__store_run_list(s->backend, query_one, &scan, err));
    if (rc == FLOW_ENOMEM)
        flow__error(err, rc, "out of memory listing runs");
    unsigned live_bits = scan.mask & (1u << FLOW_RUN_RUNNING | STOPPED_BIT);
    bool both = live_bits == (1u << FLOW_RUN_RUNNING | STOPPED_BIT);
    for (size_t i = scan.runs.count; rc == FLOW_OK && i-- > 0;) {
        const struct flow__run_meta *m = &scan.runs.items[i];
        bool shown = !q->limit || json_array_size(out) < q->limit;
        bool running = m->status == FLOW_RUN_RUNNING;
        if (!shown && (!running || both)) {
            count++; /* counted without a look at its lease */
            continue;
        }
        json_t *j = meta_json(m);
        if (!j) {
            rc = flow__error(err, FLOW_ENOMEM, "out of memory listing runs");
            break;
        }
        if (running) {
            bool live = set_runner(s, j, m->created_at);
            if (!(scan.mask & (live ? 1u << FLOW_RUN_RUNNING : STOPPED_BIT))) {
                json_decref(j);
                continue;
            }
        }
        count++;
        if (!shown) {
            json_decref(j);
            continue;
        }
        add_duration(j, m->created_at, m->ended_at);
        if (json_array_append_new(out, j))
            rc = flow__error(err, FLOW_ENOMEM, "out of memory listing runs");
    }
    for (size_t i = 0; i < scan.runs.count; i++)
        flow__run_meta_cleanup(&scan.runs.items[i]);
    FLOW__VEC_FREE(&scan.runs);
    if (rc != FLOW_OK) {
        json_decref(out);
        return NULL;
    }
    if (matched)
        *matched = count;
    return out;
}

/* The task name of a record, from run_created's list. */
static const char *rec_task(json_t *names, const struct flow__jrec *rec)
{
    return json_string_value(json_array_get(names, rec->task));
}

static const char *act_status_name(int s)
{
    static const char *const names[] = {"pending", "running", "completed",
                                        "failed",  "skipped", "cancelled"};
    return s >= 0 && s < 6 ? names[s] : "unknown";
}

struct fold_act {
    uint32_t task;
    const char *name; /* borrowed from the records */
    int status;
    int attempts;
    double started, ended;
    json_t *output; /* borrowed from the records */
    json_t *info;   /* act_completed's `info` (borrowed): prompt, usage, cached */
    const char *error;
    const char *stderr_tail;
    uint32_t parent; /* a foreach element: its parent's id */
    long index;      /* a foreach element: its position, else -1 */
    json_t *item;    /* ... and its element (borrowed from the records) */
    const char *held; /* waiting for a limit: why (borrowed from the records) */
};

/* A retry (run_retried): the run runs again, and so do the activations it
 * names and the failed elements of those that fan out. */
static void fold_retried(struct fold_act *acts, size_t count, json_t *p)
{
    size_t i;
    json_t *id;
    json_array_foreach(json_object_get(p, "activations"), i, id)
    {
        json_int_t root = json_integer_value(id);
        for (size_t k = 0; root > 0 && k < count; k++) {
            struct fold_act *a = &acts[k];
            bool element = a->parent == root &&
                           (a->status == FLOW_ACT_FAILED || a->status == FLOW_ACT_CANCELLED);
            if ((json_int_t)k + 1 != root && !element)
                continue;
            a->status = FLOW_ACT_PENDING;
            a->error = NULL;
            a->output = NULL;
            a->info = NULL;
            a->ended = 0;
        }
    }
}

json_t *flow_store_run(flow_store *s, const char *run_id, flow_error *err)
{
    struct flow__run_meta meta = {0};
    flow_err rc;
    FLOW__WITH_STORE(s, rc = flow__store_run_get(s->backend, run_id, &meta, err));
    if (rc != FLOW_OK)
        return NULL;
    struct flow__jrec *recs = NULL;
    size_t count = 0;
    json_t *out = NULL;
    if (flow__store_read_all(s, run_id, &recs, &count, err) != FLOW_OK)
        goto out_meta;
    FLOW__VEC(struct fold_act) acts = {0};
    json_t *names = NULL, *state = NULL, *result = NULL;
    const char *error = NULL;
    int status = meta.status;
    double ended = 0; /* the journal's end: the store's may lag behind it */
    for (size_t i = 0; i < count; i++) {
        const struct flow__jrec *rec = &recs[i];
        json_t *p = rec->payload;
        if (rec->type == JREC_RUN_CREATED) {
            names = json_object_get(p, "tasks");
            json_decref(state);
            state = json_copy(json_object_get(p, "state"));
            continue;
        }
        if (rec->type == JREC_RUN_ENDED) {
            const char *st = json_string_value(json_object_get(p, "status"));
            for (int k = FLOW_RUN_COMPLETED; st && k <= FLOW_RUN_CANCELLED; k++)
                if (!strcmp(st, status_name(k)))
                    status = k;
            result = json_object_get(p, "result");
            error = json_string_value(json_object_get(p, "error"));
            ended = rec->time;
            /* Ended (a cancel written by another process): nothing left runs. */
            for (size_t k = 0; k < acts.count; k++)
                if (acts.items[k].status == FLOW_ACT_RUNNING ||
                    acts.items[k].status == FLOW_ACT_PENDING)
                    acts.items[k].status = FLOW_ACT_CANCELLED;
            continue;
        }
        if (rec->type == JREC_PAUSED) {
            error = json_string_value(json_object_get(p, "reason"));
            /* What an interrupt stopped was not recorded as ended: it runs
             * again on resume. */
            for (size_t k = 0; k < acts.count; k++)
                if (acts.items[k].status == FLOW_ACT_RUNNING)
                    acts.items[k].status = FLOW_ACT_PENDING;
        }
        if (rec->type == JREC_RUN_RETRIED) {
            status = FLOW_RUN_RUNNING;
            ended = 0;
            result = NULL;
            error = NULL;
            fold_retried(acts.items, acts.count, p);
            continue;
        }
        if (rec->type == JREC_RESUMED) {
            error = NULL;
            if (json_is_array(json_object_get(p, "tasks"))) /* a forced resume: new names */
                names = json_object_get(p, "tasks");
        }
        /* Each activation has its act_created record, so a damaged record
         * naming one past the record count must not size the fold. */
        if (!rec->act || rec->act > count)
            continue;
        while (acts.count < rec->act) {
            struct fold_act blank = {.status = FLOW_ACT_PENDING, .index = -1};
            FLOW__VEC_PUSH(&acts, blank, rc);
            if (rc)
                goto out_nomem;
        }
        struct fold_act *a = &acts.items[rec->act - 1];
        a->task = rec->task;
        if (!a->name)
            a->name = rec_task(names, rec);
        if (rec->type != JREC_ACT_HELD && rec->type != JREC_LOG)
            a->held = NULL; /* whatever came next ended the wait */
        switch (rec->type) {
        case JREC_ACT_HELD: /* ready, held by a limit: why */
            a->held = json_string_value(json_object_get(p, "reason"));
            break;
        case JREC_ACT_CREATED: { /* made again: a retry reuses an activation */
            a->status = FLOW_ACT_PENDING;
            a->error = NULL;
            a->output = NULL;
            a->ended = 0;
            a->parent = (uint32_t)json_integer_value(json_object_get(p, "parent"));
            /* A foreach element says which: its parent and position. */
            json_t *index = json_object_get(p, "index");
            if (json_is_integer(index) && json_object_get(p, "parent")) {
                a->index = (long)json_integer_value(index);
                a->item = json_object_get(p, "input");
            }
            break;
        }
        case JREC_ACT_STARTED:
            a->status = FLOW_ACT_RUNNING;
            a->attempts = rec->attempt;
            a->started = rec->time;
            break;
        case JREC_ACT_COMPLETED: {
            a->status = FLOW_ACT_COMPLETED;
            a->output = json_object_get(p, "output");
            a->info = json_object_get(p, "info");
            a->error = json_string_value(json_object_get(p, "ignored"));
            a->ended = rec->time;
            if (json_is_true(json_object_get(a->info, "cached"))) {
                /* From the cache: an attempt that started and ended at once,
                 * with no act_started of its own. */
                a->attempts = rec->attempt;
                a->started = rec->time;
            }
            json_t *w = json_object_get(p, "writes");
            if (state && json_is_object(w))
                json_object_update(state, w);
            break;
        }
        case JREC_ACT_FAILED:
        case JREC_ACT_CANCELLED:
        case JREC_ACT_RETRYING:
            a->status = rec->type == JREC_ACT_FAILED      ? FLOW_ACT_FAILED
                        : rec->type == JREC_ACT_CANCELLED ? FLOW_ACT_CANCELLED
                                                          : FLOW_ACT_PENDING;
            a->error = json_string_value(json_object_get(p, "error"));
            if (rec->type != JREC_ACT_RETRYING)
                a->ended = rec->time;
            /* An attempt may fail before it starts (a cache key that cannot
             * render): it counts all the same. */
            if (rec->type != JREC_ACT_CANCELLED && (int)rec->attempt > a->attempts)
                a->attempts = (int)rec->attempt;
            break;
        case JREC_ACT_SKIPPED:
            a->status = FLOW_ACT_SKIPPED;
            a->ended = rec->time;
            break;
        case JREC_LOG:
            a->stderr_tail = json_string_value(json_object_get(p, "stderr"));
            break;
        case JREC_ACT_WAITING: /* for a person: it runs again once answered */
            a->status = FLOW_ACT_PENDING;
            break;
        default:
            break;
        }
    }
    json_t *tasks = json_array();
    /* The journal's end comes before the run's row says so: both agree with
     * the status shown. */
    double ended_at = status < FLOW_RUN_COMPLETED ? 0 : ended > 0 ? ended : meta.ended_at;
    out = json_pack("{s:s,s:s?,s:s?,s:s,s:O,s:s?,s:s?,s:o,s:o,s:O,s:o}", "id", meta.id, "flow",
                    meta.flow, "version", meta.version, "status", status_name(status), "result",
                    result ? result : json_null(), "error", error, "source", meta.source,
                    "created_at", flow__json_time(meta.created_at), "ended_at",
                    flow__json_time(ended_at), "state", state ? state : json_null(), "tasks",
                    tasks);
    for (size_t i = 0; out && i < acts.count; i++) {
        const struct fold_act *a = &acts.items[i];
        const char *name = a->name;
        json_t *jt = json_pack("{s:s,s:I,s:s,s:i,s:o,s:o,s:s?}", "task", name ? name : "?",
                               "activation", (json_int_t)(i + 1), "status",
                               a->held && a->status == FLOW_ACT_PENDING &&
                                       status == FLOW_RUN_RUNNING
                                   ? "waiting"
                                   : act_status_name(a->status),
                               "attempts", a->attempts, "started_at",
                               flow__json_time(a->started), "ended_at", flow__json_time(a->ended), "error",
                               a->error);
        if (jt && a->output)
            json_object_set(jt, "output", a->output);
        if (jt && json_is_object(a->info))
            json_object_set(jt, "info", a->info);
        if (jt && a->held && a->status == FLOW_ACT_PENDING && status == FLOW_RUN_RUNNING)
            json_object_set_new(jt, "waiting_for", json_string(a->held));
        if (jt && a->stderr_tail)
            json_object_set_new(jt, "stderr_tail", json_string(a->stderr_tail));
        if (jt && a->index >= 0) {
            json_object_set_new(jt, "index", json_integer(a->index));
            json_object_set(jt, "item", a->item ? a->item : json_null());
        }
        if (!jt || json_array_append_new(tasks, jt)) {
            json_decref(out);
            out = NULL;
        }
    }
    if (out && status == FLOW_RUN_RUNNING && !set_runner(s, out, meta.created_at)) {
        /* Nothing runs what its dead runner was running: on resume those
         * attempts run again. */
        size_t k;
        json_t *jt;
        json_array_foreach(tasks, k, jt)
        {
            if (!strcmp(json_string_value(json_object_get(jt, "status")), "running"))
                json_object_set_new(jt, "status", json_string("stopped"));
        }
    }
    if (out)
        add_duration(out, meta.created_at, ended_at);
    if (!out)
        flow__error(err, FLOW_ENOMEM, "out of memory reading run '%s'", run_id);
    json_decref(state);
    FLOW__VEC_FREE(&acts);
    flow__records_free(recs, count);
out_meta:
    flow__run_meta_cleanup(&meta);
    return out;

out_nomem:
    json_decref(state);
    FLOW__VEC_FREE(&acts);
    flow__records_free(recs, count);
    flow__run_meta_cleanup(&meta);
    flow__error(err, FLOW_ENOMEM, "out of memory reading run '%s'", run_id);
    return NULL;
}

/* One JSON value per record of a run (`one` gives it, or *out NULL to
 * leave the record out; false when out of memory). */
typedef bool (*record_json_fn)(const struct flow__jrec *rec, size_t seq, json_t *names,
                               json_t **out);

static json_t *records_json(flow_store *s, const char *run_id, record_json_fn one,
                            flow_error *err)
{
    struct flow__jrec *recs = NULL;
    size_t count = 0;
    if (flow__store_read_all(s, run_id, &recs, &count, err) != FLOW_OK)
        return NULL;
    json_t *names = count && recs[0].type == JREC_RUN_CREATED
                        ? json_object_get(recs[0].payload, "tasks")
                        : NULL;
    json_t *out = json_array();
    for (size_t i = 0; out && i < count; i++) {
        json_t *j = NULL;
        json_t *renamed = recs[i].type == JREC_RESUMED ? json_object_get(recs[i].payload, "tasks")
                                                       : NULL;
        if (json_is_array(renamed)) /* a forced resume: the flow's tasks from here on */
            names = renamed;
        if (!one(&recs[i], i, names, &j) || (j && json_array_append_new(out, j))) {
            json_decref(out);
            out = NULL;
        }
    }
    flow__records_free(recs, count);
    if (!out)
        flow__error(err, FLOW_ENOMEM, "out of memory reading run '%s'", run_id);
    return out;
}

/* Payload fields that hold epoch seconds: shown as RFC 3339, as every time
 * a reader sees is. */
static bool is_time_field(int type, const char *key)
{
    return type == JREC_FEEDBACK_OPENED && (!strcmp(key, "created") || !strcmp(key, "deadline"));
}

/* Add the payload's fields to `j`, a record's header. A field the header
 * already has (a feedback request's "type") never overwrites the record's
 * own: it is kept under the record's first word ("feedback_type"). */
static bool add_payload(json_t *j, const struct flow__jrec *rec)
{
    const char *rtype = flow__jrec_type_name(rec->type);
    size_t word = strcspn(rtype, "_");
    const char *key;
    json_t *v;
    json_object_foreach(rec->payload, key, v)
    {
        json_t *shown = is_time_field(rec->type, key) && json_is_number(v)
                            ? flow__json_time(json_number_value(v))
                            : json_incref(v);
        int rc;
        if (json_object_get(j, key)) {
            char renamed[96];
            snprintf(renamed, sizeof(renamed), "%.*s_%s", (int)word, rtype, key);
            rc = json_object_set_new(j, renamed, shown);
        } else {
            rc = json_object_set_new(j, key, shown);
        }
        if (rc)
            return false;
    }
    return true;
}

static bool journal_one(const struct flow__jrec *rec, size_t seq, json_t *names, json_t **out)
{
    json_t *j = json_pack("{s:I,s:o,s:s}", "seq", (json_int_t)seq, "time",
                          flow__json_time(rec->time), "type", flow__jrec_type_name(rec->type));
    if (j && rec->act) {
        const char *name = rec_task(names, rec);
        json_object_set_new(j, "task", name ? json_string(name) : json_integer(rec->task));
        json_object_set_new(j, "activation", json_integer(rec->act));
        if (rec->attempt)
            json_object_set_new(j, "attempt", json_integer(rec->attempt));
    }
    if (j && rec->type == JREC_RUN_CREATED) {
        /* What the run is of, and with what; the task list and the state
         * are for replay and `flow status`. */
        json_t *p = rec->payload;
        static const char *const keep[] = {"flow", "version", "inputs", "start", NULL};
        for (size_t i = 0; keep[i]; i++) {
            json_t *v = json_object_get(p, keep[i]);
            if (v && !json_is_null(v))
                json_object_set(j, keep[i], v);
        }
    } else if (j && json_is_object(rec->payload) && !add_payload(j, rec)) {
        json_decref(j);
        j = NULL;
    }
    *out = j;
    return j != NULL;
}

json_t *flow_store_journal(flow_store *s, const char *run_id, flow_error *err)
{
    return records_json(s, run_id, journal_one, err);
}

/* ---- reading a journal as it grows -------------------------------------- */

struct flow_journal_reader {
    flow_store *store;
    char *run_id;
    uint64_t next;      /* the seq of the first record not read yet */
    json_t *names;      /* the task names in force at `next` (a reference) */
    char status[16];    /* as the last call found it; "" before */
};

flow_journal_reader *flow_journal_reader_new(flow_store *s, const char *run_id, flow_error *err)
{
    struct flow__run_meta meta = {0};
    flow_err rc;
    FLOW__WITH_STORE(s, rc = flow__store_run_get(s->backend, run_id, &meta, err));
    if (rc != FLOW_OK)
        return NULL;
    flow__run_meta_cleanup(&meta);
    struct flow_journal_reader *r = flow__calloc(1, sizeof(*r));
    if (r)
        r->run_id = flow__strdup(run_id);
    if (!r || !r->run_id) {
        flow__free(r);
        flow__error(err, FLOW_ENOMEM, "out of memory reading run '%s'", run_id);
        return NULL;
    }
    r->store = s;
    return r;
}

void flow_journal_reader_free(flow_journal_reader *r)
{
    if (!r)
        return;
    json_decref(r->names);
    flow__free(r->run_id);
    flow__free(r);
}

const char *flow_journal_reader_status(const flow_journal_reader *r)
{
    return r->status[0] ? r->status : NULL;
}

struct reader_batch {
    flow_journal_reader *r;
    json_t *out;
};

static flow_err reader_rec(void *udata, uint64_t seq, const struct flow__jrec *rec)
{
    struct reader_batch *b = udata;
    flow_journal_reader *r = b->r;
    json_t *names = rec->type == JREC_RUN_CREATED || rec->type == JREC_RESUMED
                        ? json_object_get(rec->payload, "tasks")
                        : NULL;
    if (json_is_array(names) && names != r->names) { /* the run's, or a forced resume's */
        json_decref(r->names);
        r->names = json_incref(names);
    }
    json_t *j = NULL;
    if (!journal_one(rec, (size_t)seq, r->names, &j) || json_array_append_new(b->out, j))
        return FLOW_ENOMEM;
    r->next = seq + 1;
    return FLOW_OK;
}

json_t *flow_journal_reader_next(flow_journal_reader *r, flow_error *err)
{
    flow_store *s = r->store;
    struct flow__run_meta meta = {0};
    flow_err rc;
    /* The status first: a run that had ended by then has all its records
     * in the store, so the read below gets them all. */
    FLOW__WITH_STORE(s, rc = flow__store_run_get(s->backend, r->run_id, &meta, err));
    if (rc != FLOW_OK)
        return NULL;
    json_t *run = meta_json(&meta);
    if (run && meta.status == FLOW_RUN_RUNNING)
        (void)set_runner(s, run, meta.created_at);
    const char *status = json_string_value(json_object_get(run, "status"));
    snprintf(r->status, sizeof(r->status), "%s", status ? status : status_name(meta.status));
    json_decref(run);
    flow__run_meta_cleanup(&meta);
    struct reader_batch b = {r, json_array()};
    if (!b.out)
        rc = FLOW_ENOMEM;
    else
        FLOW__WITH_STORE(s, rc = flow__store_read(s->backend, r->run_id, r->next, reader_rec, &b,
                                                  err));
    if (rc == FLOW_ENOMEM)
        flow__error(err, rc, "out of memory reading run '%s'", r->run_id);
    if (rc != FLOW_OK && b.out && json_array_size(b.out) > 0) {
        flow__error_clear(err); /* what was read is given; the next call reads on from there */
        rc = FLOW_OK;
    }
    if (rc != FLOW_OK) {
        json_decref(b.out);
        return NULL;
    }
    return b.out;
}

static bool checkpoint_one(const struct flow__jrec *rec, size_t seq, json_t *names, json_t **out)
{
    (void)seq;
    *out = NULL;
    if (rec->type != JREC_CHECKPOINT)
        return true;
    char id[32];
    snprintf(id, sizeof(id), "%lld",
             (long long)json_integer_value(json_object_get(rec->payload, "id")));
    const char *task = rec->act ? rec_task(names, rec) : NULL;
    *out = json_pack("{s:s,s:s?,s:o,s:O?}", "id", id, "task", task, "created_at",
                     flow__json_time(rec->time), "reason", json_object_get(rec->payload, "reason"));
    return *out != NULL;
}

json_t *flow_store_checkpoints(flow_store *s, const char *run_id, flow_error *err)
{
    return records_json(s, run_id, checkpoint_one, err);
}

/* [io] Take the lease of a run no live process runs: FLOW_OK (ours now:
 * release it), FLOW_EBUSY (a runner has it: send it a request), or an
 * error. A runner of this very process holds the lease under our own name,
 * so look before taking it. */
static flow_err take_unattended(flow_store *s, const char *run_id, double now, flow_error *err)
{
    char *runner = NULL;
    flow_err rc = flow__store_lease_get(s->backend, run_id, now, &runner, err);
    if (rc == FLOW_OK && runner)
        rc = FLOW_EBUSY;
    else if (rc == FLOW_OK)
        rc = flow__store_lease_acquire(s->backend, run_id, s->holder, now, FLOW__LEASE_TTL, err);
    flow__free(runner);
    return rc;
}

flow_err flow_store_request(flow_store *s, const char *run_id, const char *what,
                            const char *reason, flow_error *err)
{
    if (!what || (strcmp(what, "pause") != 0 && strcmp(what, "cancel") != 0))
        return flow__error(err, FLOW_EINVAL, "unknown request '%s' (known: pause, cancel)",
                           what ? what : "");
    struct flow__run_meta meta = {0};
    flow_err rc;
    FLOW__WITH_STORE(s, rc = flow__store_run_get(s->backend, run_id, &meta, err));
    if (rc != FLOW_OK)
        return rc;
    int status = meta.status;
    flow__run_meta_cleanup(&meta);
    if (status >= FLOW_RUN_COMPLETED)
        return flow__error(err, FLOW_ESTATE, "run '%s' has already ended (%s)", run_id,
                           status_name(status));
    if (status == FLOW_RUN_PAUSED && !strcmp(what, "pause"))
        return flow__error(err, FLOW_ESTATE, "run '%s' is already paused", run_id);
    /* Nobody runs it? Then we may: take its lease and write the end (or the
     * pause) ourselves, so that the request does not wait for a resume. */
    double now = flow__wall_time();
    pthread_mutex_lock(&s->io);
    rc = take_unattended(s, run_id, now, err);
    if (rc == FLOW_OK) {
        bool cancel = !strcmp(what, "cancel");
        const char *why = reason && *reason ? reason
                          : cancel             ? "cancelled from another process"
                                               : "paused from another process";
        struct flow__jrec rec = {
            .type = cancel ? JREC_RUN_ENDED : JREC_PAUSED,
            .time = now,
            .payload = cancel ? json_pack("{s:s,s:n,s:s}", "status", "cancelled", "result",
                                          "error", why)
                              : json_pack("{s:s}", "reason", why),
        };
        rc = rec.payload ? flow__store_append(s->backend, run_id, &rec, 1, 0, err)
                         : flow__error(err, FLOW_ENOMEM, "out of memory");
        if (rc == FLOW_OK)
            rc = flow__store_run_set_status(s->backend, run_id,
                                            cancel ? FLOW_RUN_CANCELLED : FLOW_RUN_PAUSED,
                                            cancel ? now : 0, err);
        json_decref(rec.payload);
        flow__store_lease_release(s->backend, run_id, s->holder, NULL);
    } else if (rc == FLOW_EBUSY) { /* a live runner: it takes the request */
        flow__error_clear(err);
        rc = flow__store_control_put(s->backend, run_id, what, reason, err);
    }
    pthread_mutex_unlock(&s->io);
    return rc;
}

struct gc_list {
    double cutoff;
    FLOW__VEC(char *) ids;
};

static flow_err gc_pick(void *udata, const struct flow__run_meta *m)
{
    struct gc_list *g = udata;
    if (m->status < FLOW_RUN_COMPLETED || m->ended_at <= 0 || m->ended_at > g->cutoff)
        return FLOW_OK;
    char *id = flow__strdup(m->id);
    flow_err rc = id ? FLOW_OK : FLOW_ENOMEM;
    if (id)
        FLOW__VEC_PUSH(&g->ids, id, rc);
    if (rc)
        flow__free(id);
    return rc;
}

flow_err flow_store_gc(flow_store *s, double older_than, size_t *deleted, flow_error *err)
{
    struct gc_list g = {.cutoff = flow__wall_time() - older_than};
    flow_err rc;
    size_t n = 0;
    if (deleted)
        *deleted = 0;
    FLOW__WITH_STORE(s, rc = flow__store_run_list(s->backend, gc_pick, &g, err));
    for (size_t i = 0; rc == FLOW_OK && i < g.ids.count; i++) {
        FLOW__WITH_STORE(s, rc = flow__store_run_delete(s->backend, g.ids.items[i], err));
        if (rc == FLOW_OK)
            n++;
    }
    for (size_t i = 0; i < g.ids.count; i++)
        flow__free(g.ids.items[i]);
    FLOW__VEC_FREE(&g.ids);
    if (deleted)
        *deleted = n;
    return rc;
}

flow_err flow_store_gc_cache(flow_store *s, bool all, size_t *removed, flow_error *err)
{
    size_t n = 0;
    flow_err rc = FLOW_OK;
    if (flow__store_has_cache(s->backend))
        FLOW__WITH_STORE(s, rc = s->backend->ops->cache_gc(s->backend->priv, flow__wall_time(),
                                                           all, &n, err));
    if (removed)
        *removed = rc == FLOW_OK ? n : 0;
    return rc;
}

/* ---- feedback requests -------------------------------------------------- */

/* One request as folded from a journal. */
struct fold_req {
    json_t *opened;  /* the feedback_opened payload (borrowed) */
    uint32_t act, task;
    double time;
    json_t *answer;  /* the journaled answer (borrowed), or NULL */
    bool run_ended;  /* nothing waits in an ended run */
};

static bool fold_open(const struct fold_req *q)
{
    return !q->answer && !q->run_ended;
}

/* Fold the requests of a run's records; *reqs is the caller's (free it). */
static flow_err fold_requests(const struct flow__jrec *recs, size_t count, struct fold_req **reqs,
                              size_t *n)
{
    FLOW__VEC(struct fold_req) v = {0};
    flow_err rc = FLOW_OK;
    for (size_t i = 0; i < count && rc == FLOW_OK; i++) {
        const struct flow__jrec *rec = &recs[i];
        const char *id = json_string_value(json_object_get(rec->payload, "request"));
        if (rec->type == JREC_RUN_ENDED) {
            for (size_t k = 0; k < v.count; k++)
                v.items[k].run_ended = true;
            continue;
        }
        if (!id)
            continue;
        struct fold_req *q = NULL;
        for (size_t k = 0; k < v.count; k++)
            if (!strcmp(json_string_value(json_object_get(v.items[k].opened, "request")), id))
                q = &v.items[k];
        if (rec->type == JREC_FEEDBACK_OPENED && !q) {
            struct fold_req nq = {rec->payload, rec->act, rec->task, rec->time, NULL, false};
            FLOW__VEC_PUSH(&v, nq, rc);
        } else if (rec->type == JREC_FEEDBACK_ANSWERED && q && !q->answer) {
            json_t *answer = json_object_get(rec->payload, "answer");
            q->answer = answer ? answer : json_null();
        }
    }
    *reqs = v.items;
    *n = v.count;
    return rc;
}

static double fold_deadline(const struct fold_req *q)
{
    return json_number_value(json_object_get(q->opened, "deadline"));
}

static flow_err list_requests(flow_store *s, const char *run_id, json_t *out, flow_error *err)
{
    struct flow__jrec *recs = NULL;
    size_t count = 0;
    if (flow__store_read_all(s, run_id, &recs, &count, err) != FLOW_OK)
        return err ? err->code : FLOW_EIO;
    /* Answers the store took but the journal does not show yet (the runner
     * has not written them, or nobody runs the flow) are answers too. */
    json_t *claimed = NULL;
    flow_err rc;
    FLOW__WITH_STORE(s, rc = flow__store_answer_list(s->backend, run_id, &claimed, err));
    json_t *names = count && recs[0].type == JREC_RUN_CREATED
                        ? json_object_get(recs[0].payload, "tasks")
                        : NULL;
    struct fold_req *reqs = NULL;
    size_t n = 0;
    if (rc == FLOW_OK)
        rc = fold_requests(recs, count, &reqs, &n);
    for (size_t i = 0; rc == FLOW_OK && i < n; i++) {
        json_t *o = reqs[i].opened;
        if (!fold_open(&reqs[i]) || json_object_get(claimed, json_string_value(
                                                                 json_object_get(o, "request"))))
            continue;
        double deadline = fold_deadline(&reqs[i]);
        json_t *j = json_pack("{s:s,s:O,s:s?,s:I,s:O,s:O,s:O?,s:o,s:o,s:b}", "run", run_id,
                              "request", json_object_get(o, "request"), "task",
                              json_string_value(json_array_get(names, reqs[i].task)),
                              "activation", (json_int_t)reqs[i].act, "type",
                              json_object_get(o, "type"), "message", json_object_get(o, "message"),
                              "options", json_object_get(o, "options"), "created_at",
                              flow__json_time(reqs[i].time), "deadline",
                              flow__json_time(deadline), "expired",
                              flow__store_answer_late(deadline));
        if (!j || json_array_append_new(out, j))
            rc = flow__error(err, FLOW_ENOMEM, "out of memory listing requests");
    }
    json_decref(claimed);
    flow__free(reqs);
    flow__records_free(recs, count);
    return rc;
}

json_t *flow_store_feedback(flow_store *s, const char *run_id, flow_error *err)
{
    json_t *out = json_array();
    if (!out) {
        flow__error(err, FLOW_ENOMEM, "out of memory listing requests");
        return NULL;
    }
    if (run_id) {
        if (list_requests(s, run_id, out, err) != FLOW_OK) {
            json_decref(out);
            return NULL;
        }
        return out;
    }
    json_t *runs = flow_store_runs(s, err);
    if (!runs) {
        json_decref(out);
        return NULL;
    }
    size_t i;
    json_t *run;
    json_array_foreach(runs, i, run)
    {
        const char *status = json_string_value(json_object_get(run, "status"));
        if (strcmp(status, "paused") != 0 && strcmp(status, "running") != 0 &&
            strcmp(status, "stopped") != 0)
            continue;
        if (list_requests(s, json_string_value(json_object_get(run, "id")), out, err) != FLOW_OK) {
            json_decref(out);
            out = NULL;
            break;
        }
    }
    json_decref(runs);
    return out;
}

/* An answer refused because the request is closed (answered, expired, or
 * its run ended): FLOW_ESTATE, whatever the detail, with the message kept. */
static flow_err closed(flow_error *err)
{
    if (err)
        err->code = FLOW_ESTATE;
    return FLOW_ESTATE;
}

static flow_feedback_type fold_type(const struct fold_req *q)
{
    const char *tn = json_string_value(json_object_get(q->opened, "type"));
    if (tn && !strcmp(tn, "text"))
        return FLOW_FEEDBACK_TEXT;
    if (tn && !strcmp(tn, "selection"))
        return FLOW_FEEDBACK_SELECTION;
    return FLOW_FEEDBACK_APPROVAL;
}

/* Check an answer to `request` against the run's journal: *answer gets it
 * as the task will see it, *deadline the request's (0: none), *act and
 * *task whom it goes to. */
static flow_err answer_check(flow_store *s, const char *run_id, const char *request,
                             json_t *value, const char *by, json_t **answer, double *deadline,
                             uint32_t *act, uint32_t *task, flow_error *err)
{
    struct flow__jrec *recs = NULL;
    size_t count = 0;
    if (flow__store_read_all(s, run_id, &recs, &count, err) != FLOW_OK)
        return err ? err->code : FLOW_EIO;
    struct fold_req *reqs = NULL;
    size_t n = 0;
    flow_err rc = fold_requests(recs, count, &reqs, &n);
    struct fold_req *q = NULL;
    for (size_t i = 0; rc == FLOW_OK && i < n; i++)
        if (!strcmp(json_string_value(json_object_get(reqs[i].opened, "request")), request))
            q = &reqs[i];
    char *bad = NULL;
    if (rc != FLOW_OK) {
        flow__error(err, rc, "out of memory reading run '%s'", run_id);
    } else if (!q) {
        rc = flow__error(err, FLOW_ENOTFOUND, "run '%s' has no feedback request '%s' (see flow "
                                              "feedback %s)",
                         run_id, request, run_id);
    } else if (q->answer) {
        flow__store_answer_taken(err, run_id, request, q->answer);
        rc = closed(err);
    } else if (q->run_ended) {
        rc = flow__error(err, FLOW_ESTATE, "run '%s' has ended: request '%s' takes no answer",
                         run_id, request);
    } else if (flow__store_answer_late(fold_deadline(q))) {
        flow__store_answer_expired(err, run_id, request, fold_deadline(q));
        rc = closed(err);
    } else {
        bad = flow__feedback_check(fold_type(q), json_object_get(q->opened, "options"), value,
                                   by, flow__wall_time(), answer);
        if (bad)
            rc = flow__error(err, FLOW_EINVAL, "cannot answer feedback request '%s' of run '%s': "
                                               "%s",
                             request, run_id, bad);
    }
    if (rc == FLOW_OK) {
        *deadline = fold_deadline(q);
        *act = q->act;
        *task = q->task;
    }
    flow__free(bad);
    flow__free(reqs);
    flow__records_free(recs, count);
    return rc;
}

flow_err flow_store_answer(flow_store *s, const char *run_id, const char *request,
                           json_t *value, const char *by, flow_error *err)
{
    if (!run_id || !request || !value)
        return flow__error(err, FLOW_EINVAL, "flow_store_answer needs a run, a request and an "
                                             "answer");
    json_t *answer = NULL;
    double deadline = 0;
    uint32_t act = 0, task = 0;
    flow_err rc = answer_check(s, run_id, request, value, by, &answer, &deadline, &act, &task,
                               err);
    if (rc != FLOW_OK)
        return rc;

    /* The store decides which answer is taken: of two at the same moment,
     * in any processes, one claim succeeds and the other is refused naming
     * it. Only then is the run told: by its live runner, or in its journal. */
    double now = flow__wall_time();
    pthread_mutex_lock(&s->io);
    rc = flow__store_answer_claim(s->backend, run_id, request, answer, deadline, NULL, err);
    if (rc == FLOW_EEXISTS || rc == FLOW_ETIMEOUT)
        rc = closed(err);
    if (rc == FLOW_OK)
        rc = take_unattended(s, run_id, now, err);
    if (rc == FLOW_EBUSY) {
        flow__error_clear(err);
        json_t *msg = json_pack("{s:s,s:O}", "request", request, "answer", answer);
        char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
        rc = text ? flow__store_control_put(s->backend, run_id, "feedback", text, err)
                  : flow__error(err, FLOW_ENOMEM, "out of memory");
        flow__json_free_text(text);
        json_decref(msg);
    } else if (rc == FLOW_OK) {
        struct flow__jrec rec = {
            .type = JREC_FEEDBACK_ANSWERED,
            .task = task,
            .act = act,
            .time = now,
            .payload = json_pack("{s:s,s:O}", "request", request, "answer", answer),
        };
        rc = rec.payload ? flow__store_append(s->backend, run_id, &rec, 1, 0, err)
                         : flow__error(err, FLOW_ENOMEM, "out of memory");
        json_decref(rec.payload);
        flow__store_lease_release(s->backend, run_id, s->holder, NULL);
    }
    pthread_mutex_unlock(&s->io);
    json_decref(answer);
    return rc;
}
