/* metrics.c -- the counters and histograms of `flow serve`, fed by the
 * engine's events of its runs and by the HTTP front, written in the
 * Prometheus text format. What the store or the engine can say at scrape
 * time (runs by status, queue depth, commit latency) is read then, in
 * api.c; only what happens in between is counted here. */
#include "util/compat.h"

#include <stdio.h>
#include <string.h>

#include "serve/serve_int.h"
#include "util/alloc.h"
#include "util/buf.h"

/* Seconds: a task takes from milliseconds to hours. */
static const double task_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1,  0.25, 0.5,
                                     1,     2.5,  5,     10,   30,   60,   300, 1800};
#define TASK_BUCKETS (FLOW__ARRAY_LEN(task_bounds) + 1)
static const double http_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                     0.05,   0.1,   0.25,   0.5,   1,    2.5};
#define HTTP_BUCKETS (FLOW__ARRAY_LEN(http_bounds) + 1)

struct histo {
    char *key;   /* "FLOW\x1fTASK" or "ROUTE\x1fCODE" */
    uint64_t count;
    double sum;
    uint64_t buckets[TASK_BUCKETS > HTTP_BUCKETS ? TASK_BUCKETS : HTTP_BUCKETS];
    struct histo *next; /* in creation order, for a stable output */
};

/* When an attempt started, until it ends. */
struct started {
    char *key; /* "RUN\x1fACTIVATION" */
    double at;
    bool live;
};

enum { T_COMPLETED, T_FAILED, T_RETRIED, T_SKIPPED, T_CANCELLED, T_KINDS };
static const char *const task_kind_names[T_KINDS] = {"completed", "failed", "retried", "skipped",
                                                     "cancelled"};

struct metrics {
    pthread_mutex_t lock;
    uint64_t runs_started;
    uint64_t runs_ended[FLOW_RUN_CANCELLED + 1];
    uint64_t tasks[T_KINDS];
    struct flow__strmap task_histos; /* key -> struct histo */
    struct histo *task_first, *task_last;
    struct flow__strmap http_histos;
    struct histo *http_first, *http_last;
    struct flow__strmap starts; /* key -> struct started */
    FLOW__VEC(struct started *) start_list;
    size_t live_starts;
};

struct metrics *metrics_new(void)
{
    struct metrics *m = flow__calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    flow__strmap_init(&m->task_histos);
    flow__strmap_init(&m->http_histos);
    flow__strmap_init(&m->starts);
    return m;
}

static void histos_free(struct histo *h)
{
    while (h) {
        struct histo *next = h->next;
        flow__free(h->key);
        flow__free(h);
        h = next;
    }
}

static void starts_free(struct metrics *m)
{
    for (size_t i = 0; i < m->start_list.count; i++) {
        flow__free(m->start_list.items[i]->key);
        flow__free(m->start_list.items[i]);
    }
    FLOW__VEC_FREE(&m->start_list);
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    histos_free(m->task_first);
    histos_free(m->http_first);
    starts_free(m);
    flow__strmap_cleanup(&m->task_histos);
    flow__strmap_cleanup(&m->http_histos);
    flow__strmap_cleanup(&m->starts);
    pthread_mutex_destroy(&m->lock);
    flow__free(m);
}

/* [lock] The histogram of `a` and `b`, made on first use; NULL when out
 * of memory (the observation is lost, nothing else). */
static struct histo *histo_get(struct flow__strmap *map, struct histo **first,
                               struct histo **last, const char *a, const char *b)
{
    char *key = flow__asprintf("%s\x1f%s", a, b);
    if (!key)
        return NULL;
    struct histo *h = flow__strmap_get(map, key);
    if (h) {
        flow__free(key);
        return h;
    }
    h = flow__calloc(1, sizeof(*h));
    if (!h || flow__strmap_put(map, key, h) != FLOW_OK) {
        flow__free(h);
        flow__free(key);
        return NULL;
    }
    h->key = key;
    if (*last)
        (*last)->next = h;
    else
        *first = h;
    *last = h;
    return h;
}

static void histo_observe(struct histo *h, const double *bounds, size_t nbounds, double v)
{
    size_t i = 0;
    while (i < nbounds && v > bounds[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum += v;
}

/* [lock] Forget the ended attempts once they are most of the map: the
 * map has no delete, so it is built again from the live ones. */
static void starts_compact(struct metrics *m)
{
    if (m->start_list.count < 1024 || m->live_starts * 2 > m->start_list.count)
        return;
    flow__strmap_cleanup(&m->starts);
    flow__strmap_init(&m->starts);
    size_t keep = 0;
    for (size_t i = 0; i < m->start_list.count; i++) {
        struct started *s = m->start_list.items[i];
        if (s->live && flow__strmap_put(&m->starts, s->key, s) == FLOW_OK) {
            m->start_list.items[keep++] = s;
        } else {
            flow__free(s->key);
            flow__free(s);
        }
    }
    m->start_list.count = keep;
    m->live_starts = keep;
}

static void attempt_started(struct metrics *m, const char *key, double at)
{
    struct started *s = flow__strmap_get(&m->starts, key);
    if (s) {
        if (!s->live)
            m->live_starts++;
        s->at = at;
        s->live = true;
        return;
    }
    s = flow__calloc(1, sizeof(*s));
    char *k = flow__strdup(key);
    flow_err rc = s && k ? FLOW_OK : FLOW_ENOMEM;
    if (rc == FLOW_OK)
        FLOW__VEC_PUSH(&m->start_list, s, rc);
    if (rc != FLOW_OK) {
        flow__free(s);
        flow__free(k);
        return;
    }
    s->key = k;
    s->at = at;
    s->live = true;
    if (flow__strmap_put(&m->starts, k, s) != FLOW_OK) {
        s->live = false; /* kept in the list, freed by the next compaction */
        return;
    }
    m->live_starts++;
}

/* [lock] The attempt `key` ended at `at`: how long it ran, or -1 when its
 * start was not seen (it started before this serve took the run over). */
static double attempt_ended(struct metrics *m, const char *key, double at)
{
    struct started *s = flow__strmap_get(&m->starts, key);
    if (!s || !s->live)
        return -1;
    s->live = false;
    m->live_starts--;
    starts_compact(m);
    return at >= s->at ? at - s->at : 0;
}

void metrics_event(struct metrics *m, const char *flow_name, const flow_event *ev)
{
    char key[192];
    int kind = -1;
    if (ev->task)
        snprintf(key, sizeof(key), "%s\x1f%llu", ev->run_id, (unsigned long long)ev->activation);
    pthread_mutex_lock(&m->lock);
    switch (ev->type) {
    case FLOW_EV_TASK_STARTED:
        attempt_started(m, key, ev->time);
        break;
    case FLOW_EV_TASK_COMPLETED:
        kind = T_COMPLETED;
        break;
    case FLOW_EV_TASK_FAILED:
        kind = T_FAILED;
        break;
    case FLOW_EV_TASK_RETRYING:
        kind = T_RETRIED;
        break;
    case FLOW_EV_TASK_SKIPPED:
        kind = T_SKIPPED;
        break;
    case FLOW_EV_TASK_CANCELLED:
        kind = T_CANCELLED;
        break;
    case FLOW_EV_RUN_ENDED:
        if ((size_t)ev->run_status < FLOW__ARRAY_LEN(m->runs_ended))
            m->runs_ended[ev->run_status]++;
        break;
    default:
        break;
    }
    if (kind >= 0) {
        m->tasks[kind]++;
        double took = attempt_ended(m, key, ev->time);
        struct histo *h = took < 0 ? NULL
                                   : histo_get(&m->task_histos, &m->task_first, &m->task_last,
                                               flow_name, ev->task);
        if (h)
            histo_observe(h, task_bounds, FLOW__ARRAY_LEN(task_bounds), took);
    }
    pthread_mutex_unlock(&m->lock);
}

void metrics_run_started(struct metrics *m)
{
    pthread_mutex_lock(&m->lock);
    m->runs_started++;
    pthread_mutex_unlock(&m->lock);
}

void metrics_http(struct metrics *m, const char *route, int status, double seconds)
{
    char code[16];
    snprintf(code, sizeof(code), "%d", status);
    pthread_mutex_lock(&m->lock);
    struct histo *h = histo_get(&m->http_histos, &m->http_first, &m->http_last, route, code);
    if (h)
        histo_observe(h, http_bounds, FLOW__ARRAY_LEN(http_bounds), seconds);
    pthread_mutex_unlock(&m->lock);
}

/* A label value as the text format wants it: \ " and newlines escaped. */
static void put_label(struct flow__buf *out, const char *name, const char *v, size_t len)
{
    flow__buf_printf(out, "%s=\"", name);
    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        if (c == '\\' || c == '"')
            flow__buf_appendc(out, '\\');
        if (c == '\n')
            flow__buf_appends(out, "\\n");
        else
            flow__buf_appendc(out, c);
    }
    flow__buf_appendc(out, '"');
}

static void put_labels(struct flow__buf *out, const char *a_name, const char *b_name,
                       const char *key)
{
    const char *sep = strchr(key, '\x1f');
    put_label(out, a_name, key, (size_t)(sep - key));
    flow__buf_appendc(out, ',');
    put_label(out, b_name, sep + 1, strlen(sep + 1));
}

void metrics_put_histogram(struct flow__buf *out, const char *name, const char *labels,
                           const double *bounds, size_t nbounds, const uint64_t *buckets,
                           uint64_t count, double sum)
{
    uint64_t cum = 0;
    bool some = labels && *labels;
    const char *comma = some ? "," : "";
    if (!some)
        labels = "";
    for (size_t i = 0; i < nbounds; i++) {
        cum += buckets[i];
        flow__buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, comma, bounds[i],
                         (unsigned long long)cum);
    }
    flow__buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, comma,
                     (unsigned long long)count);
    flow__buf_printf(out, "%s_sum%s%s%s %.9g\n%s_count%s%s%s %llu\n", name, some ? "{" : "", labels,
                     some ? "}" : "", sum, name, some ? "{" : "", labels, some ? "}" : "",
                     (unsigned long long)count);
}

static void put_histos(struct flow__buf *out, const char *name, const struct histo *h,
                       const char *a_name, const char *b_name, const double *bounds,
                       size_t nbounds)
{
    struct flow__buf labels;
    flow__buf_init(&labels, 4096);
    for (; h; h = h->next) {
        flow__buf_reset(&labels);
        put_labels(&labels, a_name, b_name, h->key);
        metrics_put_histogram(out, name, flow__buf_str(&labels), bounds, nbounds, h->buckets,
                              h->count, h->sum);
    }
    flow__buf_cleanup(&labels);
}

void metrics_render(struct metrics *m, struct flow__buf *out)
{
    pthread_mutex_lock(&m->lock);
    flow__buf_printf(out,
                     "# HELP flow_runs_started_total Runs started by this serve.\n"
                     "# TYPE flow_runs_started_total counter\n"
                     "flow_runs_started_total %llu\n"
                     "# HELP flow_runs_ended_total Runs of this serve that ended or paused, by "
                     "status.\n"
                     "# TYPE flow_runs_ended_total counter\n",
                     (unsigned long long)m->runs_started);
    for (int s = FLOW_RUN_PAUSED; s <= FLOW_RUN_CANCELLED; s++)
        flow__buf_printf(out, "flow_runs_ended_total{status=\"%s\"} %llu\n",
                         flow_run_status_name((flow_run_status)s),
                         (unsigned long long)m->runs_ended[s]);
    flow__buf_appends(out, "# HELP flow_tasks_total Task activations of this serve's runs that "
                           "ended, by how (retried: an attempt failed and another follows).\n"
                           "# TYPE flow_tasks_total counter\n");
    for (int k = 0; k < T_KINDS; k++)
        flow__buf_printf(out, "flow_tasks_total{status=\"%s\"} %llu\n", task_kind_names[k],
                         (unsigned long long)m->tasks[k]);
    flow__buf_printf(out,
                     "# HELP flow_tasks_running Attempts of this serve's runs running now.\n"
                     "# TYPE flow_tasks_running gauge\nflow_tasks_running %zu\n",
                     m->live_starts);
    flow__buf_appends(out, "# HELP flow_task_duration_seconds How long task attempts ran.\n"
                           "# TYPE flow_task_duration_seconds histogram\n");
    put_histos(out, "flow_task_duration_seconds", m->task_first, "flow", "task", task_bounds,
               FLOW__ARRAY_LEN(task_bounds));
    flow__buf_appends(out, "# HELP flow_http_request_duration_seconds HTTP requests served, "
                           "by route and status code.\n"
                           "# TYPE flow_http_request_duration_seconds histogram\n");
    put_histos(out, "flow_http_request_duration_seconds", m->http_first, "route", "code",
               http_bounds, FLOW__ARRAY_LEN(http_bounds));
    pthread_mutex_unlock(&m->lock);
}
