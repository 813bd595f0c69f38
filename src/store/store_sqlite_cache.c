/* store_sqlite_cache.c -- the SQLite store's cached outputs: table `cache`,
 * keyed by (flow, task, key), each row the entry as JSON text, when it was
 * put and its expiry (0: never). A put is one INSERT OR REPLACE, committed
 * without the fsync of a strict store: a cache entry lost in a power cut
 * costs one run of its task, nothing more. The statements are prepared on
 * first use, so that a store nobody caches in pays nothing. */
#include "util/compat.h"

#include <string.h>

#include "store/compress.h"
#include "store/sqlite_int.h"

#include "util/error.h"
#include "util/json.h"

static const char *const sq_cache_sql[SQ_CACHE_NSTMT] = {
    [SQ_CACHE_GET] = "SELECT entry, created, expires FROM cache"
                     " WHERE flow = ?1 AND task = ?2 AND key = ?3",
    [SQ_CACHE_PUT] = "INSERT OR REPLACE INTO cache(flow, task, key, entry, created, expires)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [SQ_CACHE_GC] = "DELETE FROM cache WHERE expires > 0 AND expires <= ?1",
    [SQ_CACHE_GC_ALL] = "DELETE FROM cache",
};

/* The statement `which`, prepared and reset; NULL with `err` filled. */
static sqlite3_stmt *sq_cache_stmt(struct sq_store *s, int which, const char *what,
                                   flow_error *err)
{
    sqlite3_stmt *st = s->cache_stmt[which];
    if (!st) {
        if (sqlite3_prepare_v3(s->db, sq_cache_sql[which], -1, SQLITE_PREPARE_PERSISTENT, &st,
                               NULL) != SQLITE_OK) {
            flow__sq_fail(s, err, what);
            return NULL;
        }
        s->cache_stmt[which] = st;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

static void sq_bind_name(sqlite3_stmt *st, const char *fname, const char *task, const char *key)
{
    sqlite3_bind_text(st, 1, fname, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, task, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
}

flow_err flow__sq_cache_get(void *priv, const char *fname, const char *task, const char *key,
                            double now, json_t **entry, double *created, flow_error *err)
{
    struct sq_store *s = priv;
    static const char what[] = "cannot read the cache";
    *entry = NULL;
    *created = 0;
    sqlite3_stmt *st = sq_cache_stmt(s, SQ_CACHE_GET, what, err);
    if (!st)
        return err ? err->code : FLOW_EIO;
    sq_bind_name(st, fname, task, key);
    int step = sqlite3_step(st);
    flow_err rc = FLOW_OK;
    if (step == SQLITE_ROW) {
        double expires = sqlite3_column_double(st, 2);
        const char *text = sqlite3_column_blob(st, 0); /* text, or deflated */
        int len = sqlite3_column_bytes(st, 0);
        if (expires > 0 && expires <= now) {
            /* expired: none */
        } else if (!text && len > 0) {
            rc = flow__error(err, FLOW_ENOMEM, "%s in store '%s': out of memory", what, s->path);
        } else if (!text) {
            /* an empty entry: damaged, as if none */
        } else if (flow__payload_load(text, (size_t)len, entry) == FLOW_OK) {
            *created = sqlite3_column_double(st, 1);
        } else {
            *entry = NULL; /* damaged: as if none (a put replaces it) */
        }
    } else if (step != SQLITE_DONE) {
        rc = flow__sq_fail(s, err, what);
    }
    sqlite3_reset(st);
    return rc;
}

flow_err flow__sq_cache_put(void *priv, const char *fname, const char *task, const char *key,
                            const json_t *entry, double now, double expires, flow_error *err)
{
    struct sq_store *s = priv;
    static const char what[] = "cannot write the cache";
    sqlite3_stmt *st = sq_cache_stmt(s, SQ_CACHE_PUT, what, err);
    if (!st)
        return err ? err->code : FLOW_EIO;
    bool full;
    flow_err rc = flow__sq_light_begin(s, &full, what, err);
    if (rc != FLOW_OK)
        return rc;
    sq_bind_name(st, fname, task, key);
    rc = flow__sq_bind_json(s, st, 4, entry);
    if (rc != FLOW_OK) {
        flow__error(err, rc, "%s in store '%s': %s", what, s->path,
                    rc == FLOW_ENOMEM ? "out of memory" : "the entry is too large");
    } else {
        sqlite3_bind_double(st, 5, now);
        sqlite3_bind_double(st, 6, expires > 0 ? expires : 0);
        int step = sqlite3_step(st);
        if (step != SQLITE_DONE)
            rc = flow__sq_fail(s, err, what);
    }
    sqlite3_reset(st);
    return flow__sq_light_end(s, full, rc, what, err);
}

flow_err flow__sq_cache_gc(void *priv, double now, bool all, size_t *removed, flow_error *err)
{
    struct sq_store *s = priv;
    static const char what[] = "cannot remove cache entries";
    *removed = 0;
    sqlite3_stmt *st = sq_cache_stmt(s, all ? SQ_CACHE_GC_ALL : SQ_CACHE_GC, what, err);
    if (!st)
        return err ? err->code : FLOW_EIO;
    if (!all)
        sqlite3_bind_double(st, 1, now);
    int step = sqlite3_step(st);
    sqlite3_reset(st);
    if (step != SQLITE_DONE)
        return flow__sq_fail(s, err, what);
    *removed = (size_t)sqlite3_changes(s->db);
    return FLOW_OK;
}

void flow__sq_cache_close(struct sq_store *s)
{
    for (int i = 0; i < SQ_CACHE_NSTMT; i++) {
        sqlite3_finalize(s->cache_stmt[i]);
        s->cache_stmt[i] = NULL;
    }
}
