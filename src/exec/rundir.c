/* rundir.c -- a run's directory for command files and its shared state
 * files (rundir.h). */
#include "util/compat.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec/rundir.h"
#include "util/alloc.h"
#include "util/json.h"
#include "util/vec.h"

struct state_file {
    uint64_t version;
    char *path;
    uint32_t users; /* running commands that were given this file */
};

struct flow__rundir {
    atomic_int refs;
    pthread_mutex_t mu;
    char *run_id;
    char *path;                          /* [mu] NULL until made (or given) */
    bool own;                            /* made here: removed by the last unref */
    FLOW__VEC(struct state_file) states; /* [mu] the newest last */
};

struct flow__rundir *flow__rundir_new(const char *run_id, const char *dir)
{
    struct flow__rundir *w = flow__calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    atomic_init(&w->refs, 1);
    w->run_id = flow__strdup(run_id);
    w->path = dir ? flow__strdup(dir) : NULL;
    if (!w->run_id || (dir && !w->path)) {
        flow__free(w->run_id);
        flow__free(w->path);
        flow__free(w);
        return NULL;
    }
    pthread_mutex_init(&w->mu, NULL);
    return w;
}

void flow__rundir_ref(struct flow__rundir *w)
{
    atomic_fetch_add(&w->refs, 1);
}

void flow__rundir_unref(struct flow__rundir *w)
{
    if (!w || atomic_fetch_sub(&w->refs, 1) != 1)
        return;
    for (size_t i = 0; i < w->states.count; i++) {
        unlink(w->states.items[i].path);
        flow__free(w->states.items[i].path);
    }
    FLOW__VEC_FREE(&w->states);
    if (w->own && w->path)
        rmdir(w->path);
    flow__free(w->path);
    flow__free(w->run_id);
    pthread_mutex_destroy(&w->mu);
    flow__free(w);
}

/* [mu] */
static const char *make_dir(struct flow__rundir *w, char **error)
{
    if (w->path)
        return w->path;
    const char *base = getenv("TMPDIR");
    char *tmpl = flow__asprintf("%s/flow-%s-XXXXXX", base && *base ? base : "/tmp", w->run_id);
    if (!tmpl || !mkdtemp(tmpl)) {
        *error = flow__asprintf("cannot create a work directory for commands: %s",
                                tmpl ? strerror(errno) : "out of memory");
        flow__free(tmpl);
        return NULL;
    }
    w->path = tmpl;
    w->own = true;
    return w->path;
}

const char *flow__rundir_path(struct flow__rundir *w, char **error)
{
    pthread_mutex_lock(&w->mu);
    const char *p = make_dir(w, error);
    pthread_mutex_unlock(&w->mu);
    return p;
}

/* [mu] Files of older versions that nobody uses any more go. */
static void drop_unused(struct flow__rundir *w)
{
    size_t kept = 0;
    for (size_t i = 0; i + 1 < w->states.count; i++) {
        struct state_file *old = &w->states.items[i];
        if (old->users == 0) {
            unlink(old->path);
            flow__free(old->path);
        } else {
            w->states.items[kept++] = *old;
        }
    }
    w->states.items[kept++] = w->states.items[w->states.count - 1];
    w->states.count = kept;
}

const char *flow__rundir_state(struct flow__rundir *w, uint64_t version, json_t *state,
                                char **error)
{
    pthread_mutex_lock(&w->mu);
    const char *result = NULL;
    for (size_t i = w->states.count; i-- > 0;) {
        struct state_file *sf = &w->states.items[i];
        if (sf->version == version) {
            sf->users++;
            result = sf->path;
            goto out;
        }
    }
    const char *dir = make_dir(w, error);
    if (!dir)
        goto out;
    /* Commands are spawned one after another by one thread, so versions
     * arrive in order: the newest is always last. */
    char *path = flow__asprintf("%s/state-%llu.json", dir, (unsigned long long)version);
    size_t flags = JSON_COMPACT | flow__json_real_flags(state);
    if (!path || json_dump_file(state, path, flags) != 0) {
        *error = flow__asprintf("cannot write the state file for a command: %s",
                                path ? strerror(errno) : "out of memory");
        if (path)
            unlink(path);
        flow__free(path);
        goto out;
    }
    struct state_file sf = {.version = version, .path = path, .users = 1};
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&w->states, sf, rc);
    if (rc) {
        unlink(path);
        flow__free(path);
        *error = flow__strdup("out of memory");
        goto out;
    }
    drop_unused(w);
    result = path;
out:
    pthread_mutex_unlock(&w->mu);
    return result;
}

void flow__rundir_state_release(struct flow__rundir *w, uint64_t version)
{
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->states.count; i++) {
        struct state_file *sf = &w->states.items[i];
        if (sf->version == version && sf->users > 0) {
            sf->users--;
            break;
        }
    }
    pthread_mutex_unlock(&w->mu);
}
