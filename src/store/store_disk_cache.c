/* store_disk_cache.c -- the disk store's cached outputs of tasks:
 *
 *   DIR/cache/N     one entry: {flow, task, key, created, expires, entry} as
 *                   JSON, N the 32 hex digits of flow__cache_name
 *
 * A put writes the file under a temp name (".cache-N-PID-COUNT") and renames
 * it over N, so that a reader, in any process, finds the old entry or the
 * new one, whole. Nothing is fsync'ed: an entry a power cut loses, or leaves
 * torn, costs one run of its task (a file that does not parse reads as no
 * entry, and a put or `flow gc` replaces or removes it). A lookup compares
 * the names the file keeps: two entries whose names hash alike replace each
 * other, and never stand for each other. The layout is store_disk.c's. */
#include "util/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/compress.h"
#include "store/disk_int.h"
#include "store/store.h"

#include "util/alloc.h"
#include "util/buf.h"
#include "util/dirscan.h"
#include "util/error.h"
#include "util/json.h"
#include "util/vec.h"

/* A temp file older than this belongs to a put that died: gc removes it. */
#define DK_CACHE_STALE_S 3600

/* DIR/cache, kept open in s->cachefd; with `make`, created when missing.
 * -1 with errno (ENOENT: nothing was ever cached here). */
static int dk_cache_dir(struct dk_store *s, bool make)
{
    if (s->cachefd >= 0)
        return s->cachefd;
    if (make && mkdirat(s->dirfd, "cache", 0700) != 0 && errno != EEXIST)
        return -1;
    s->cachefd = flow__dk_open_dir(s->dirfd, "cache");
    return s->cachefd;
}

static flow_err dk_cache_fail(struct dk_store *s, flow_error *err, int e, const char *what)
{
    if (e == ENOMEM)
        return flow__error(err, FLOW_ENOMEM, "out of memory: %s in store '%s'", what, s->path);
    return flow__error_errno(err, e, "%s in store '%s'", what, s->path);
}

/* Read cache file `name` of `dfd` and parse it into *rec; *rec NULL when it
 * is missing or does not parse. 0 or an errno. */
static int dk_cache_read(struct dk_store *s, int dfd, const char *name, json_t **rec)
{
    *rec = NULL;
    int e = flow__dk_read_file(dfd, name, &s->buf);
    if (e == ENOENT || e == ELOOP)
        return 0;
    if (e)
        return e;
    if (flow__payload_load(flow__buf_str(&s->buf), s->buf.len, rec) != FLOW_OK ||
        !json_is_object(*rec)) {
        json_decref(*rec);
        *rec = NULL; /* torn or damaged: as if none */
    }
    return 0;
}

flow_err flow__dk_cache_get(void *priv, const char *fname, const char *task, const char *key,
                            double now, json_t **entry, double *created, flow_error *err)
{
    struct dk_store *s = priv;
    *entry = NULL;
    *created = 0;
    int dfd = dk_cache_dir(s, false);
    if (dfd < 0)
        return errno == ENOENT ? FLOW_OK : dk_cache_fail(s, err, errno, "cannot read the cache");
    char name[33];
    flow__cache_name(fname, task, key, name);
    json_t *rec = NULL;
    int e = dk_cache_read(s, dfd, name, &rec);
    if (e)
        return dk_cache_fail(s, err, e, "cannot read the cache");
    if (rec)
        flow__cache_record_open(rec, fname, task, key, now, entry, created);
    json_decref(rec);
    return FLOW_OK;
}

flow_err flow__dk_cache_put(void *priv, const char *fname, const char *task, const char *key,
                            const json_t *entry, double now, double expires, flow_error *err)
{
    struct dk_store *s = priv;
    static const char what[] = "cannot write the cache";
    int dfd = dk_cache_dir(s, true);
    if (dfd < 0)
        return dk_cache_fail(s, err, errno, what);
    char name[33], tmp[DK_PATH_MAX];
    flow__cache_name(fname, task, key, name);
    json_t *rec = flow__cache_record(fname, task, key, entry, now, expires > 0 ? expires : 0);
    if (!rec)
        return dk_cache_fail(s, err, ENOMEM, what);
    flow__buf_reset(&s->buf);
    flow_err rc = flow__payload_append(&s->buf, rec, NULL);
    json_decref(rec);
    if (rc != FLOW_OK)
        return flow__error(err, rc, "%s in store '%s': %s", what, s->path,
                           rc == FLOW_ENOMEM ? "out of memory" : "the entry is too large");
    flow__dk_temp_name(s, tmp, sizeof(tmp), "cache", name);
    int e = flow__dk_put_file(dfd, tmp, flow__buf_str(&s->buf), s->buf.len, DK_EXCL);
    if (!e && renameat(dfd, tmp, dfd, name) != 0) {
        e = errno;
        unlinkat(dfd, tmp, 0);
    }
    return e ? dk_cache_fail(s, err, e, what) : FLOW_OK;
}

struct dk_names {
    FLOW__VEC(char *) names;
    bool nomem;
};

static int dk_collect(const char *name, unsigned char type, void *arg)
{
    struct dk_names *n = arg;
    FLOW__UNUSED(type);
    char *copy = flow__strdup(name);
    flow_err rc = copy ? FLOW_OK : FLOW_ENOMEM;
    if (copy)
        FLOW__VEC_PUSH(&n->names, copy, rc);
    if (rc != FLOW_OK) {
        flow__free(copy);
        n->nomem = true;
        return 1;
    }
    return 0;
}

/* A put that died left its temp file: gone once it is clearly not being
 * written any more. */
static void dk_cache_drop_stale(int dfd, const char *name, double now)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        (double)st.st_mtime < now - DK_CACHE_STALE_S)
        unlinkat(dfd, name, 0);
}

flow_err flow__dk_cache_gc(void *priv, double now, bool all, size_t *removed, flow_error *err)
{
    struct dk_store *s = priv;
    static const char what[] = "cannot remove cache entries";
    *removed = 0;
    int dfd = dk_cache_dir(s, false);
    if (dfd < 0)
        return errno == ENOENT ? FLOW_OK : dk_cache_fail(s, err, errno, what);
    struct dk_names n = {0};
    int e = 0;
    if (lseek(dfd, 0, SEEK_SET) < 0 || flow__dirscan(dfd, dk_collect, &n) < 0)
        e = errno;
    if (n.nomem)
        e = ENOMEM;
    for (size_t i = 0; !e && i < n.names.count; i++) {
        const char *name = n.names.items[i];
        if (name[0] == '.') {
            dk_cache_drop_stale(dfd, name, now);
            continue;
        }
        json_t *rec = NULL;
        if (!all && (e = dk_cache_read(s, dfd, name, &rec)) != 0)
            break;
        /* A file that does not parse is a torn put: removed too. */
        bool drop = all || flow__cache_record_expired(rec, now);
        json_decref(rec);
        if (!drop)
            continue;
        if (unlinkat(dfd, name, 0) == 0)
            (*removed)++;
        else if (errno != ENOENT)
            e = errno;
    }
    for (size_t i = 0; i < n.names.count; i++)
        flow__free(n.names.items[i]);
    FLOW__VEC_FREE(&n.names);
    return e ? dk_cache_fail(s, err, e, what) : FLOW_OK;
}
