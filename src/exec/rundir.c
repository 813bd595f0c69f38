/* rundir.c -- a run's directory for command files and its shared state
 * files (rundir.h). */
#include "util/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec/rundir.h"
#include "exec/workdir.h"
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
    char *given;                         /* a directory the caller named (kept), or NULL */
    struct flow__workdir wd;             /* [mu] else the private one, made on first use */
    FLOW__VEC(struct state_file) states; /* [mu] the newest last */
};

struct flow__rundir *flow__rundir_new(const char *run_id, const char *dir)
{
    struct flow__rundir *w = flow__calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    atomic_init(&w->refs, 1);
    w->wd.fd = -1;
    w->run_id = flow__strdup(run_id);
    w->given = dir ? flow__strdup(dir) : NULL;
    if (!w->run_id || (dir && !w->given)) {
        flow__free(w->run_id);
        flow__free(w->given);
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
        if (w->given)
            unlink(w->states.items[i].path);
        flow__free(w->states.items[i].path);
    }
    FLOW__VEC_FREE(&w->states);
    flow__workdir_remove(&w->wd); /* ours: with everything in it, never following a link */
    flow__free(w->given);
    flow__free(w->run_id);
    pthread_mutex_destroy(&w->mu);
    flow__free(w);
}

/* [mu] */
static const char *make_dir(struct flow__rundir *w, char **error)
{
    if (w->given)
        return w->given;
    if (w->wd.path)
        return w->wd.path;
    flow_error err;
    if (flow__workdir_make(w->run_id, &w->wd, &err) != FLOW_OK) {
        *error = flow__strdup(err.message);
        return NULL;
    }
    return w->wd.path;
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
    flow_error err;
    /* In our directory, relative to its descriptor: a name a task planted
     * there is replaced, never written through. */
    bool own = !w->given;
    if (!path || flow__workfile_write_json(own ? w->wd.fd : AT_FDCWD,
                                           own ? path + strlen(dir) + 1 : path, state, flags,
                                           "the state file for a command", path, &err) != FLOW_OK) {
        *error = path ? flow__strdup(err.message) : flow__strdup("out of memory");
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

const struct flow__workdir *flow__rundir_workdir(struct flow__rundir *w)
{
    pthread_mutex_lock(&w->mu);
    const struct flow__workdir *wd = w->wd.fd >= 0 ? &w->wd : NULL;
    pthread_mutex_unlock(&w->mu);
    return wd;
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
