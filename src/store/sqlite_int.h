/* sqlite_int.h -- the inside of the SQLite store (store_sqlite.c: the
 * file, runs, journals, leases, control requests, answers, limits;
 * store_sqlite_cache.c: cached outputs). */
#ifndef FLOW_STORE_SQLITE_INT_H
#define FLOW_STORE_SQLITE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "store/store.h"
#include "util/buf.h"
#include "util/strmap.h"

/* Cached outputs (store_sqlite_cache.c). Added after format 1 shipped, made
 * when missing (sq_setup); an older libflow does not look at it. */
#define SQ_CACHE_TABLE                                                                           \
    "CREATE TABLE IF NOT EXISTS cache(flow TEXT NOT NULL, task TEXT NOT NULL,"                   \
    " key TEXT NOT NULL, entry TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL,"     \
    " PRIMARY KEY(flow, task, key)) WITHOUT ROWID;"                                              \
    "CREATE INDEX IF NOT EXISTS cache_expires ON cache(expires) WHERE expires > 0;"

enum { SQ_CACHE_GET, SQ_CACHE_PUT, SQ_CACHE_GC, SQ_CACHE_GC_ALL, SQ_CACHE_NSTMT };

enum sq_stmt {
    SQ_BEGIN,
    SQ_COMMIT,
    SQ_RUN_INSERT,
    SQ_RUN_GET,
    SQ_RUN_LIST,
    SQ_RUN_STATUS,
    SQ_RUN_CREATED,
    SQ_RUN_DELETE,
    SQ_MAX_SEQ,
    SQ_REC_INSERT,
    SQ_REC_READ,
    SQ_REC_DELETE,
    SQ_LEASE_GET,
    SQ_LEASE_SET,
    SQ_LEASE_CLEAR,
    SQ_CTL_PUT,
    SQ_CTL_FIRST,
    SQ_CTL_DELETE,
    SQ_CTL_DELETE_RUN,
    SQ_ANS_GET,
    SQ_ANS_PUT,
    SQ_ANS_LIST,
    SQ_ANS_DELETE_RUN,
    SQ_SLOT_BUSY,
    SQ_SLOT_PUT,
    SQ_SLOT_DROP,
    SQ_SLOT_HELD,
    SQ_SLOT_RENEW,
    SQ_SLOT_LIST,
    SQ_SLOT_LIST_KEY,
    SQ_RATE_FORGET,
    SQ_RATE_COUNT,
    SQ_RATE_ADD,
    SQ_RATE_NTH,
    SQ_WANT_DROP,
    SQ_WANT_PUT,
    SQ_WANT_OTHERS,
    SQ_NSTMT
};

/* What this handle knows of a run it appended to. Entries stay in the map
 * until close (a deleted run's entry is only made cold). */
struct sq_run {
    char id[80];       /* the map's key */
    double created_at; /* of the run next_seq belongs to */
    int64_t next_seq;  /* -1: cold, read max(seq) */
};

struct sq_store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmt[SQ_NSTMT];
    struct flow__buf json; /* payload text being written, reused */
    bool strict;           /* ?durability=strict: synchronous=FULL by default */
    bool sync_full;        /* the connection's current synchronous setting */
    struct flow__strmap runs; /* id -> struct sq_run */
    sqlite3_stmt *cache_stmt[SQ_CACHE_NSTMT]; /* store_sqlite_cache.c: prepared on first use */
};

/* ---- store_sqlite.c --------------------------------------------------- */

/* Fail with the connection's last error: "WHAT in store 'PATH': errmsg". */
flow_err flow__sq_fail(struct sq_store *s, flow_error *err, const char *what);
/* Bind `v` as a payload (compact JSON text, or deflated over the threshold:
 * compress.h); it lives in s->json until the next call. */
flow_err flow__sq_bind_json(struct sq_store *s, sqlite3_stmt *st, int col, const json_t *v);
/* A write that need not survive a power cut (limits, the cache): one
 * BEGIN IMMEDIATE..COMMIT without the fsync of a strict store; *full gets
 * the setting flow__sq_light_end puts back. */
flow_err flow__sq_light_begin(struct sq_store *s, bool *full, const char *what, flow_error *err);
flow_err flow__sq_light_end(struct sq_store *s, bool full, flow_err rc, const char *what,
                            flow_error *err);

/* ---- store_sqlite_cache.c --------------------------------------------- */

flow_err flow__sq_cache_get(void *priv, const char *fname, const char *task, const char *key,
                            double now, json_t **entry, double *created, flow_error *err);
flow_err flow__sq_cache_put(void *priv, const char *fname, const char *task, const char *key,
                            const json_t *entry, double now, double expires, flow_error *err);
flow_err flow__sq_cache_gc(void *priv, double now, bool all, size_t *removed, flow_error *err);
/* Finalize the cache's statements (close). */
void flow__sq_cache_close(struct sq_store *s);

#endif
