/* handle.c -- the public store handle: open and close a store by URL, and
 * read a run's records back. */
#include "util/compat.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/handle.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/vec.h"

/* ---- reading back ------------------------------------------------------- */

struct collect {
    FLOW__VEC(struct flow__jrec) recs;
};

static flow_err collect_rec(void *udata, uint64_t seq, const struct flow__jrec *rec)
{
    struct collect *c = udata;
    (void)seq;
    flow_err rc = FLOW_OK;
    struct flow__jrec copy = *rec;
    copy.payload = json_incref(rec->payload);
    FLOW__VEC_PUSH(&c->recs, copy, rc);
    if (rc)
        json_decref(copy.payload);
    return rc;
}

flow_err flow__store_read_all(struct flow_store *s, const char *run_id, struct flow__jrec **out,
                              size_t *count, flow_error *err)
{
    struct collect c = {0};
    flow_err rc;
    FLOW__WITH_STORE(s, rc = flow__store_read(s->backend, run_id, 0, collect_rec, &c, err));
    if (rc == FLOW_ENOMEM && err && !err->message[0])
        flow__error(err, rc, "out of memory reading the journal of run '%s'", run_id);
    if (rc != FLOW_OK) {
        flow__records_free(c.recs.items, c.recs.count);
        *out = NULL;
        *count = 0;
        return rc;
    }
    *out = c.recs.items;
    *count = c.recs.count;
    return FLOW_OK;
}

/* ---- the public handle -------------------------------------------------- */

#define DEFAULT_STORE_URL "sqlite:.flow/flow.db"
#define DEFAULT_DIR ".flow"

/* The default store without $FLOW_STORE: .flow/flow.db in the nearest
 * directory, from the current one up to the root, that has a `.flow` (as
 * git finds .git), else in the current directory. Found in the current
 * directory, or nowhere, it is DEFAULT_STORE_URL itself, relative; found
 * above, it is absolute (relative when the path holds a '?', which would
 * start the URL's options). `dir` gets the `.flow` the checks look at. Any
 * `.flow` counts, not only a directory: one that is a link, a file or
 * someone else's is found, and then refused rather than skipped. */
static void discover_default(char *url, size_t url_size, char *dir, size_t dir_size)
{
    char cwd[4096];
    snprintf(url, url_size, "%s", DEFAULT_STORE_URL);
    snprintf(dir, dir_size, "%s", DEFAULT_DIR);
    if (!getcwd(cwd, sizeof(cwd)) || cwd[0] != '/')
        return;
    size_t len = strlen(cwd);
    for (int up = 0;; up++) {
        char probe[4096 + 16];
        struct stat st;
        snprintf(probe, sizeof(probe), "%.*s/" DEFAULT_DIR, (int)len, len == 1 ? "" : cwd);
        if (lstat(probe, &st) == 0) {
            if (up == 0)
                return;
            if (!memchr(cwd, '?', len)) {
                snprintf(url, url_size, "sqlite:%s/flow.db", probe);
            } else {
                size_t n = (size_t)snprintf(url, url_size, "sqlite:");
                for (int i = 0; i < up && n < url_size; i++)
                    n += (size_t)snprintf(url + n, url_size - n, "../");
                if (n < url_size)
                    snprintf(url + n, url_size - n, DEFAULT_DIR "/flow.db");
            }
            snprintf(dir, dir_size, "%s", probe);
            return;
        }
        if (len == 1)
            return; /* the root: none anywhere */
        while (len > 1 && cwd[len - 1] != '/')
            len--;
        if (len > 1)
            len--; /* the slash, unless it is the root's */
    }
}

const char *flow_store_default_url(void)
{
    /* Each thread its own: the current directory decides, at every call. */
    static _Thread_local char url[4096 + 64];
    char dir[4096 + 16];
    const char *env = getenv("FLOW_STORE");
    if (env && *env)
        return env;
    discover_default(url, sizeof(url), dir, sizeof(dir));
    return url;
}

flow_store *flow_store_open(const char *url, flow_error *err)
{
    return flow_store_open_flags(url, 0, err);
}

/* The default store lives in whatever directory the user is in, or above
 * it: a `.flow` that others can write to or that is a link could hand them
 * the journal. Checked for the default found from here, and for the
 * default URL however it was given. */
static flow_err check_default(const char *url, flow_error *err)
{
    static const char tail[] = "/" DEFAULT_DIR "/flow.db";
    size_t len = strlen(url);
    char found[4096 + 64];
    char dir[4096 + 16];
    char file[4096 + 32];
    if (strcmp(url, DEFAULT_STORE_URL) != 0 &&
        (len < sizeof(tail) || strcmp(url + len - (sizeof(tail) - 1), tail) != 0))
        return FLOW_OK; /* no default could be spelled so: no search */
    discover_default(found, sizeof(found), dir, sizeof(dir));
    if (!strcmp(url, DEFAULT_STORE_URL))
        snprintf(dir, sizeof(dir), "%s", DEFAULT_DIR);
    else if (strcmp(url, found) != 0)
        return FLOW_OK;
    snprintf(file, sizeof(file), "%s/flow.db", dir);
    return flow__store_check_private(dir, file, err);
}

flow_store *flow_store_open_flags(const char *url, unsigned flags, flow_error *err)
{
    if (!url)
        url = flow_store_default_url();
    if (check_default(url, err) != FLOW_OK)
        return NULL;
    struct flow_store *s = flow__calloc(1, sizeof(*s));
    if (!s) {
        flow__error(err, FLOW_ENOMEM, "out of memory opening store '%s'", url);
        return NULL;
    }
    unsigned bflags = flags & FLOW_STORE_NOCREATE ? FLOW__STORE_OPEN_NOCREATE : 0;
    if (flow__store_open_flags(url, bflags, &s->backend, err) != FLOW_OK) {
        flow__free(s);
        return NULL;
    }
    pthread_mutex_init(&s->io, NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->done, NULL);
    flow__lease_holder(s->holder, sizeof(s->holder));
    return s;
}

void flow_store_close(flow_store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    void (*stop_writer)(struct flow_store *) = s->stop_writer;
    pthread_mutex_unlock(&s->mu);
    if (stop_writer)
        stop_writer(s);
    flow__store_close(s->backend);
    pthread_cond_destroy(&s->done);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->io);
    flow__free(s);
}

const char *flow_store_url(const flow_store *s)
{
    return s->backend->url;
}

bool flow_store_is_durable(const flow_store *s)
{
    return flow__store_has_cap(s->backend, FLOW__STORE_CAP_DURABLE | FLOW__STORE_CAP_CROSS_PROCESS);
}

/* ---- commit latency, for monitoring ----------------------------------- */

static const double commit_bounds[FLOW_COMMIT_BUCKETS - 1] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
};

const double *flow_commit_bounds(void)
{
    return commit_bounds;
}

void flow__commit_stats_add(flow_commit_stats *st, double seconds)
{
    size_t i = 0;
    while (i < FLOW_COMMIT_BUCKETS - 1 && seconds > commit_bounds[i])
        i++;
    st->buckets[i]++;
    st->count++;
    st->seconds += seconds;
}

void flow_store_commit_stats(flow_store *s, flow_commit_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->commits;
    pthread_mutex_unlock(&s->mu);
}
