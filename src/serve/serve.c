/* serve.c -- `flow serve`: one process that is a runner (its engine runs
 * the runs started through it, takes over runs of the store whose runner
 * died, and resumes those a serve paused when it stopped) with the HTTP
 * front of http.c and api.c. The main thread is the supervisor: it waits
 * for SIGTERM/SIGINT (blocked in every thread, taken with sigtimedwait)
 * and, between signals, frees the runs that ended and looks for runs to
 * take over. */
#include "util/compat.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "serve/serve_int.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"

/* Why a serve pauses its runs when it stops: the next serve resumes the
 * runs paused for this reason, and only those. */
#define SERVE_STOP_REASON "serve stopped"

static void served_free(struct served *s)
{
    if (!s)
        return;
    flow_run_free(s->run);
    flow_free(s->f);
    flow__free(s->id);
    flow__free(s->flow_name);
    flow__free(s);
}

/* The engine's scheduler thread: count, and wake the streams. */
static void on_event(const flow_event *ev, void *udata)
{
    struct served *s = udata;
    metrics_event(s->sv->metrics, s->flow_name, ev);
    hub_notify(&s->sv->hub);
}

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 200 || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!(c == '_' || c == '-' || c == '.' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z')))
            return false;
    }
    return true;
}

flow_err serve_flow_path(struct serve *sv, const char *name, char **path, flow_error *err)
{
    static const char *const exts[] = {".yaml", ".yml", ".json"};
    if (!name_ok(name)) {
        flow__error(err, FLOW_EINVAL,
                    "bad flow name '%.100s': a file name of the flows directory without its "
                    "extension (letters, digits, '_', '-', '.'; no path)",
                    name);
        return FLOW_EINVAL;
    }
    for (size_t i = 0; i < FLOW__ARRAY_LEN(exts); i++) {
        char *p = flow__asprintf("%s/%s%s", sv->flows_dir, name, exts[i]);
        struct stat st;
        if (!p)
            return flow__error(err, FLOW_ENOMEM, "out of memory");
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            *path = p;
            return FLOW_OK;
        }
        flow__free(p);
    }
    flow__error(err, FLOW_ENOTFOUND, "no flow '%s' in %s (a file %s.yaml, .yml or .json)", name,
                sv->flows_dir, name);
    return FLOW_ENOTFOUND;
}

flow *serve_load(const char *path, flow_error *err)
{
    flow_diags *d = flow_diags_new();
    flow *f = flow_load_file(path, d, err);
    if (!f && d && flow_diags_count(d) > 0) {
        const flow_error *first = flow_diags_get(d, 0, NULL);
        if (first)
            flow__error(err, FLOW_EVALIDATION, "%s", first->message);
    }
    flow_diags_free(d);
    return f;
}

/* [lock] The run `id` if this serve runs it. */
static struct served *find_locked(struct serve *sv, const char *id)
{
    for (struct served *s = sv->runs; s; s = s->next)
        if (!strcmp(s->id, id))
            return s;
    return NULL;
}

static struct served *served_new(struct serve *sv, const char *flow_name, flow *f)
{
    struct served *s = flow__calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->sv = sv;
    s->f = f;
    s->flow_name = flow__strdup(flow_name ? flow_name : "");
    if (!s->flow_name) {
        flow__free(s);
        return NULL;
    }
    return s;
}

/* Keep a run that started: the supervisor frees it once it ended. */
static flow_err adopt(struct serve *sv, struct served *s, flow_error *err)
{
    s->id = flow__strdup(flow_run_id(s->run));
    if (!s->id)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    pthread_mutex_lock(&sv->lock);
    s->next = sv->runs;
    sv->runs = s;
    pthread_mutex_unlock(&sv->lock);
    metrics_run_started(sv->metrics);
    hub_notify(&sv->hub);
    return FLOW_OK;
}

static void run_options(struct serve *sv, struct served *s, flow_run_options *o)
{
    memset(o, 0, sizeof(*o));
    o->store = sv->store;
    o->on_event = on_event;
    o->event_udata = s;
    /* People answer through the API or `flow feedback`: the run waits for
     * them loaded, so that its deadlines fire on time. */
    o->wait = true;
}

static bool stopping(struct serve *sv, flow_error *err)
{
    pthread_mutex_lock(&sv->lock);
    bool st = sv->stopping;
    pthread_mutex_unlock(&sv->lock);
    if (st)
        flow__error(err, FLOW_ESTATE, "the serve is stopping");
    return st;
}

flow_err serve_start(struct serve *sv, const char *name, json_t *inputs, const char *id,
                     char **run_id, flow_error *err)
{
    char *path = NULL;
    flow_err rc = serve_flow_path(sv, name, &path, err);
    if (rc != FLOW_OK)
        return rc;
    if (stopping(sv, err)) {
        flow__free(path);
        return FLOW_ESTATE;
    }
    flow *f = serve_load(path, err);
    if (!f) {
        flow__free(path);
        return err->code == FLOW_ENOMEM ? FLOW_ENOMEM : (err->code = FLOW_EPARSE);
    }
    struct served *s = served_new(sv, name, f);
    if (!s) {
        flow_free(f);
        flow__free(path);
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    flow_run_options o;
    run_options(sv, s, &o);
    o.inputs = inputs;
    o.run_id = id;
    o.source = path;
    s->run = flow_run_start(sv->engine, f, &o, err);
    flow__free(path);
    if (!s->run || adopt(sv, s, err) != FLOW_OK) {
        rc = err->code ? err->code : FLOW_ENOMEM;
        served_free(s);
        return rc;
    }
    *run_id = flow__strdup(s->id);
    return FLOW_OK;
}

/* Free the runs of this serve that ended (or paused): `only` one of them,
 * or all. */
static void reap(struct serve *sv, const char *only)
{
    struct served *done = NULL;
    pthread_mutex_lock(&sv->lock);
    for (struct served **p = &sv->runs; *p;) {
        struct served *s = *p;
        flow_run_status st = flow_run_get_status(s->run);
        if ((!only || !strcmp(only, s->id)) && st != FLOW_RUN_RUNNING &&
            st != FLOW_RUN_PENDING) {
            *p = s->next;
            s->next = done;
            done = s;
        } else {
            p = &s->next;
        }
    }
    pthread_mutex_unlock(&sv->lock);
    while (done) {
        struct served *next = done->next;
        flow_run_wait(done->run);
        served_free(done);
        done = next;
    }
}

flow_err serve_continue(struct serve *sv, const char *run_id, bool retry,
                        const char *const *tasks, flow_error *err)
{
    if (stopping(sv, err))
        return FLOW_ESTATE;
    reap(sv, run_id);
    pthread_mutex_lock(&sv->lock);
    bool ours = find_locked(sv, run_id) != NULL;
    pthread_mutex_unlock(&sv->lock);
    if (ours)
        return flow__error(err, FLOW_EBUSY, "run '%s' is running in this serve", run_id);

    json_t *stored = flow_store_run(sv->store, run_id, err);
    if (!stored)
        return err->code;
    const char *status = json_string_value(json_object_get(stored, "status"));
    const char *source = json_string_value(json_object_get(stored, "source"));
    const char *flow_name = json_string_value(json_object_get(stored, "flow"));
    flow_err rc = FLOW_OK;
    if (!retry && status && strcmp(status, "paused") && strcmp(status, "stopped")) {
        rc = !strcmp(status, "running")
                 ? flow__error(err, FLOW_EBUSY, "run '%s' is running in another process", run_id)
                 : flow__error(err, FLOW_ESTATE,
                               "run '%s' has ended (%s): nothing to resume%s", run_id, status,
                               strcmp(status, "completed") ? "; retry it instead" : "");
    } else if (!source) {
        rc = flow__error(err, FLOW_ESTATE,
                         "run '%s' was not started from a workflow file: this serve cannot "
                         "load its flow",
                         run_id);
    }
    flow *f = rc == FLOW_OK ? serve_load(source, err) : NULL;
    struct served *s = f ? served_new(sv, flow_name, f) : NULL;
    json_decref(stored);
    if (rc != FLOW_OK)
        return rc;
    if (!s) {
        flow_free(f);
        return err->code ? err->code : flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    flow_run_options o;
    run_options(sv, s, &o);
    o.run_id = run_id;
    s->run = retry ? flow_run_retry(sv->engine, f, &o, tasks, err)
                   : flow_run_resume(sv->engine, f, &o, err);
    if (!s->run || adopt(sv, s, err) != FLOW_OK) {
        rc = err->code ? err->code : FLOW_ENOMEM;
        served_free(s);
        return rc;
    }
    return FLOW_OK;
}

/* ---- the supervisor ------------------------------------------------------ */

static bool given_up(struct serve *sv, const char *id)
{
    pthread_mutex_lock(&sv->lock);
    bool g = flow__strmap_get(&sv->given_up, id) != NULL;
    pthread_mutex_unlock(&sv->lock);
    return g;
}

static void give_up(struct serve *sv, const char *id, const char *why)
{
    char *key = flow__strdup(id);
    if (!sv->opts.quiet)
        fprintf(stderr, "flow serve: cannot take over run '%s': %s\n", id, why);
    pthread_mutex_lock(&sv->lock);
    if (!key || flow__strmap_put(&sv->given_up, key, key) != FLOW_OK)
        flow__free(key);
    pthread_mutex_unlock(&sv->lock);
}

static void take_over(struct serve *sv, const char *id, const char *what)
{
    flow_error err = {0};
    if (given_up(sv, id))
        return;
    flow_err rc = serve_continue(sv, id, false, NULL, &err);
    if (rc == FLOW_OK) {
        if (!sv->opts.quiet)
            fprintf(stderr, "flow serve: %s run '%s'\n", what, id);
    } else if (rc != FLOW_EBUSY) {
        /* Another serve won it (busy) -- else it cannot be loaded here:
         * say so once, not every second. */
        give_up(sv, id, err.message);
    }
}

/* Runs a serve paused when it stopped: ours to resume. */
static void resume_paused_by_serve(struct serve *sv)
{
    flow_error err = {0};
    json_t *runs = flow_store_runs(sv->store, &err);
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        const char *id = json_string_value(json_object_get(r, "id"));
        const char *st = json_string_value(json_object_get(r, "status"));
        if (!id || !st || strcmp(st, "paused"))
            continue;
        json_t *run = flow_store_run(sv->store, id, &err);
        const char *why = json_string_value(json_object_get(run, "error"));
        if (why && !strcmp(why, SERVE_STOP_REASON))
            take_over(sv, id, "resumed");
        json_decref(run);
    }
    json_decref(runs);
}

/* Has a request of paused run `id` passed its deadline? Its resume then
 * takes the timeout answer. */
static bool deadline_passed(struct serve *sv, const char *id)
{
    flow_error err = {0};
    json_t *open = flow_store_feedback(sv->store, id, &err);
    bool passed = false;
    size_t i;
    json_t *q;
    json_array_foreach(open, i, q)
        passed = passed || json_is_true(json_object_get(q, "expired"));
    json_decref(open);
    return passed;
}

/* Runs whose runner died; with `deadlines`, also paused runs whose
 * feedback deadline passed (each costs a read of its journal, so not on
 * every look). */
static void take_over_stopped(struct serve *sv, bool deadlines)
{
    flow_error err = {0};
    json_t *runs = flow_store_runs(sv->store, &err);
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        const char *id = json_string_value(json_object_get(r, "id"));
        const char *st = json_string_value(json_object_get(r, "status"));
        if (!id || !st)
            continue;
        if (!strcmp(st, "stopped"))
            take_over(sv, id, "took over");
        else if (deadlines && !strcmp(st, "paused") && deadline_passed(sv, id))
            take_over(sv, id, "resumed (a feedback deadline passed)");
    }
    json_decref(runs);
}

/* Pause every run of this serve, give running tasks `grace` seconds to
 * finish, interrupt those still running, and free them all. */
static void pause_all(struct serve *sv, double grace)
{
    pthread_mutex_lock(&sv->lock);
    sv->stopping = true;
    for (struct served *s = sv->runs; s; s = s->next)
        flow_run_pause(s->run, SERVE_STOP_REASON);
    pthread_mutex_unlock(&sv->lock);
    double until = flow__wall_time() + grace;
    for (;;) {
        bool busy = false;
        pthread_mutex_lock(&sv->lock);
        for (struct served *s = sv->runs; s; s = s->next) {
            flow_run_status st = flow_run_get_status(s->run);
            if (st == FLOW_RUN_RUNNING || st == FLOW_RUN_PENDING) {
                busy = true;
                if (flow__wall_time() >= until)
                    flow_run_interrupt(s->run);
            }
        }
        pthread_mutex_unlock(&sv->lock);
        if (!busy)
            break;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    reap(sv, NULL);
}

/* ---- options ----------------------------------------------------------- */

/* "HOST:PORT", "[V6]:PORT", or ":PORT" (loopback). */
static bool parse_listen(const char *text, char *host, size_t hsize, int *port)
{
    const char *colon;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':' || (size_t)(close - text - 1) >= hsize)
            return false;
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon || (size_t)(colon - text) >= hsize)
            return false;
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        if (!host[0])
            snprintf(host, hsize, "127.0.0.1");
    }
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || p < 0 || p > 65535)
        return false;
    *port = (int)p;
    return true;
}

/* The token of --token-file: its first line, which must be long enough
 * to guess; the file must be readable by its owner only. */
static char *read_token(const char *path)
{
    struct stat st;
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "flow: cannot read token file '%s': %s\n", path, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(fp), &st) == 0 && (st.st_mode & 077)) {
        fprintf(stderr,
                "flow: token file '%s' can be read by others (mode %04o): run 'chmod 600 %s'\n",
                path, (unsigned)(st.st_mode & 07777), path);
        fclose(fp);
        return NULL;
    }
    char line[1024];
    char *tok = NULL;
    if (fgets(line, sizeof(line), fp)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strlen(line) >= 16)
            tok = flow__strdup(line);
    }
    fclose(fp);
    if (!tok)
        fprintf(stderr, "flow: token file '%s' must hold a token of at least 16 characters on "
                        "its first line\n",
                path);
    return tok;
}

/* ---- main ---------------------------------------------------------------- */

static int serve_loop(struct serve *sv, const sigset_t *signals)
{
    double every = sv->opts.takeover_every > 0 ? sv->opts.takeover_every : 1.0;
    double next_look = 0;
    unsigned looks = 0;
    resume_paused_by_serve(sv);
    for (;;) {
        struct timespec tick = {0, 200 * 1000000L};
        int sig = sigtimedwait(signals, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            if (!sv->opts.quiet)
                fprintf(stderr, "flow serve: %s: pausing the runs of this serve\n",
                        sig == SIGTERM ? "SIGTERM" : "SIGINT");
            return 0;
        }
        reap(sv, NULL);
        serve_schedules(sv, flow__wall_time());
        if (flow__wall_time() >= next_look) {
            take_over_stopped(sv, looks++ % 5 == 0);
            next_look = flow__wall_time() + every;
        }
    }
}

int flow_serve_main(const struct flow_serve_options *opts)
{
    struct serve sv;
    char host[256];
    int port = 8080;
    char *token = NULL;
    int status = 1;

    memset(&sv, 0, sizeof(sv));
    sv.opts = *opts;
    if (!parse_listen(opts->listen ? opts->listen : "127.0.0.1:8080", host, sizeof(host),
                      &port)) {
        fprintf(stderr, "flow: bad --listen '%s' (HOST:PORT, [IPV6]:PORT or :PORT)\n",
                opts->listen);
        return 2;
    }
    if (!http_is_loopback(host) && !opts->token_file) {
        fprintf(stderr,
                "flow: --listen %s is not a loopback address: give --token-file FILE, so that "
                "every request needs its token\n",
                opts->listen);
        return 2;
    }
    if (opts->token_file && !(token = read_token(opts->token_file)))
        return 2;
    char real[PATH_MAX];
    const char *dir = opts->flows_dir ? opts->flows_dir : ".";
    struct stat dst;
    if (!realpath(dir, real) || stat(real, &dst) != 0 || !S_ISDIR(dst.st_mode)) {
        fprintf(stderr, "flow: --flows '%s' is not a directory\n", dir);
        flow__free(token);
        return 2;
    }

    /* Signals are taken by the supervisor only: block them before any
     * thread starts, so every thread inherits the mask. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    flow_error err = {0};
    sv.flows_dir = flow__strdup(real);
    sv.redis_url = opts->redis_url ? flow__strdup(opts->redis_url)
                   : getenv("FLOW_REDIS") && *getenv("FLOW_REDIS")
                       ? flow__strdup(getenv("FLOW_REDIS"))
                       : NULL;
    pthread_mutex_init(&sv.lock, NULL);
    flow__strmap_init(&sv.given_up);
    hub_init(&sv.hub);
    sv.metrics = metrics_new();
    sv.started_at = flow__wall_time();
    sv.store = flow_store_open(opts->store_url, &err);
    if (!sv.store) {
        fprintf(stderr, "flow: %s\n", err.message);
        status = err.code == FLOW_EINVAL ? 2 : 1;
        goto out;
    }
    flow_engine_options eo = {.jobs = opts->jobs,
                              .redis_url = sv.redis_url,
                              .resources = opts->has_resources ? &opts->resources : NULL};
    sv.engine = flow_engine_new(&eo, &err);
    if (!sv.engine || !sv.metrics || !sv.flows_dir) {
        fprintf(stderr, "flow: %s\n", sv.engine ? "out of memory" : err.message);
        goto out;
    }
    struct http_options ho = {host, port, token, 256, api_handle, &sv, api_is_public};
    char why[512];
    struct http_server *http = http_start(&ho, why, sizeof(why));
    if (!http) {
        fprintf(stderr, "flow: %s\n", why);
        goto out;
    }
    fprintf(stderr, "flow serve: listening on http://%s%s%s:%d/ (store %s, flows %s)\n",
            strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", http_port(http),
            flow_store_url(sv.store), sv.flows_dir);
    status = serve_loop(&sv, &signals);
    /* Streams end first (they wait on the hub), then the front stops and
     * nothing new can start; then the runs pause. */
    pthread_mutex_lock(&sv.lock);
    sv.stopping = true;
    pthread_mutex_unlock(&sv.lock);
    hub_close(&sv.hub);
    http_stop(http);
    pause_all(&sv, opts->stop_grace > 0 ? opts->stop_grace : 10.0);
    if (!opts->quiet)
        fprintf(stderr, "flow serve: stopped\n");
out:
    reap(&sv, NULL);
    serve_schedules_free(&sv);
    flow_engine_free(sv.engine);
    flow_store_close(sv.store);
    for (size_t i = 0; i <= sv.given_up.mask && sv.given_up.slots; i++)
        flow__free((char *)sv.given_up.slots[i].key);
    flow__strmap_cleanup(&sv.given_up);
    metrics_free(sv.metrics);
    hub_destroy(&sv.hub);
    pthread_mutex_destroy(&sv.lock);
    flow__free(sv.flows_dir);
    flow__free(sv.redis_url);
    flow__free(token);
    return status;
}
