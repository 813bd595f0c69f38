/* serve_int.h -- what the parts of `flow serve` share: the service (its
 * store, engine and runs), the hub that wakes event streams, and the
 * metrics. Locks: serve.lock, then hub.lock; metrics.lock is a leaf. */
#ifndef FLOW_SERVE_SERVE_INT_H
#define FLOW_SERVE_SERVE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "flow.h"
#include "serve/http.h"
#include "serve/serve.h"
#include "util/buf.h"
#include "util/strmap.h"
#include "util/vec.h"

/* ---- hub.c: "something happened", for the streams waiting on it ------- */

struct hub {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t gen;  /* [lock] bumped by every event and by close */
    bool closing;  /* [lock] the serve stops: streams end */
};

void hub_init(struct hub *h);
void hub_destroy(struct hub *h);
/* Something changed: wake every waiter. Never blocks for long (the
 * engine's scheduler thread calls it). */
void hub_notify(struct hub *h);
void hub_close(struct hub *h);
/* Wait until the generation differs from `seen` or `ms` passed; returns
 * the generation now, and *closing whether the serve stops. */
uint64_t hub_wait(struct hub *h, uint64_t seen, int ms, bool *closing);

/* ---- metrics.c --------------------------------------------------------- */

struct metrics;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);
/* An event of a run of this serve, whose flow is `flow_name`. */
void metrics_event(struct metrics *m, const char *flow_name, const flow_event *ev);
void metrics_run_started(struct metrics *m);
void metrics_http(struct metrics *m, const char *route, int status, double seconds);
/* Append what was counted, in the Prometheus text format. */
void metrics_render(struct metrics *m, struct flow__buf *out);
/* Append one histogram's series: `buckets` counts per bucket (not
 * cumulative), the last one past the largest bound. */
void metrics_put_histogram(struct flow__buf *out, const char *name, const char *labels,
                           const double *bounds, size_t nbounds, const uint64_t *buckets,
                           uint64_t count, double sum);

/* ---- serve.c: the service ---------------------------------------------- */

/* A run this serve executes. */
struct served {
    struct served *next;
    struct serve *sv;
    char *id;
    char *flow_name;
    flow *f;
    flow_run *run;
};

struct serve {
    struct flow_serve_options opts;
    flow_store *store;
    flow_engine *engine;
    char *flows_dir;        /* its real path */
    char *redis_url;        /* NULL: none configured */
    struct hub hub;
    struct metrics *metrics;
    pthread_mutex_t lock;
    struct served *runs;    /* [lock] */
    struct flow__strmap given_up; /* [lock] runs takeover could not load: id -> why */
    bool stopping;          /* [lock] */
    double started_at;
    struct serve_schedules *schedules; /* the supervisor's own (schedule.c) */
};

/* Start run of the flow file `name` of the flows directory; on success
 * *run_id gets its id (flow__free it). Errors: FLOW_ENOTFOUND (no such
 * flow), FLOW_EEXISTS (a run with that id), FLOW_EINVAL/FLOW_EVALIDATION
 * (bad inputs or flow file), others. */
flow_err serve_start(struct serve *sv, const char *name, json_t *inputs, const char *id,
                     char **run_id, flow_error *err);
/* Go on with a stored run in this serve: a paused or stopped one
 * (`retry` false), or a failed or cancelled one again from where it
 * failed (`retry` true, `tasks` NULL or a NULL-terminated list). */
flow_err serve_continue(struct serve *sv, const char *run_id, bool retry,
                        const char *const *tasks, flow_error *err);
/* The flow file `name` of the flows directory: its path in *path
 * (flow__free it), or FLOW_ENOTFOUND / FLOW_EINVAL for a bad name. */
flow_err serve_flow_path(struct serve *sv, const char *name, char **path, flow_error *err);
/* Load a flow file; diagnostics folded into `err`'s message. */
flow *serve_load(const char *path, flow_error *err);

/* ---- schedule.c: runs of flows with a `schedule:` ------------------- */

/* The supervisor, every pass: start the runs of the ticks that are due. */
void serve_schedules(struct serve *sv, double now);
void serve_schedules_free(struct serve *sv);

/* ---- api.c -------------------------------------------------------------- */

void api_handle(void *udata, const struct http_req *req, struct http_resp *resp);
bool api_is_public(const char *path);

/* ---- web assets (web.c, generated from web/) ------------------------- */

#endif
