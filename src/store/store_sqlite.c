/* store_sqlite.c -- the SQLite store ("sqlite:PATH[?durability=strict]"):
 * one database file in WAL mode, runs in `runs`, journal records in
 * `records` keyed by (run, seq), control requests in `control`, answers to
 * feedback requests in `answers` keyed by (run, request), the slots of
 * concurrency keys in `slots` keyed by (key, slot) and the starts of rate
 * keys in `rates` (with the holders waiting for a key's slots in
 * `slot_wants`), one BEGIN IMMEDIATE..COMMIT per append, answer, slot
 * taken or start; cached outputs in `cache` (store_sqlite_cache.c). Schema
 * and format: docs/internals/store.md.
 *
 * The next seq of each run this handle appended to is cached, so a batch
 * costs one primary-key lookup (the run still exists, and is the same run:
 * same created_at) plus its inserts. Another connection appending to the
 * same run (which the lease forbids) shows up as a primary-key conflict on
 * the first insert; the seq is then read again. */
#include "util/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/compress.h"
#include "store/sqlite_int.h"
#include "store/store.h"

#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/json.h"
#include "util/vec.h"

#define SQ_BUSY_TIMEOUT_S 5
#define SQ_BUSY_TIMEOUT_MS (SQ_BUSY_TIMEOUT_S * 1000)
#define FLOW__STR_(x) #x
#define FLOW__STR(x) FLOW__STR_(x)
#define SQ_PAYLOAD_MAX ((size_t)1 << 30)

/* Added to format 1 after it shipped: made when missing (sq_setup). */
#define SQ_ANSWERS_TABLE                                                                         \
    "CREATE TABLE IF NOT EXISTS answers(run TEXT NOT NULL, request TEXT NOT NULL,"               \
    " answer TEXT NOT NULL, PRIMARY KEY(run, request)) WITHOUT ROWID;"

/* The limits shared by the processes of a store (docs/internals/limits.md):
 * concurrency slots held with a lease, the holders that wait for them (a
 * mark with an expiry) and the start times of rate keys.
 * Added after format 1 shipped, made when missing (sq_setup); an older
 * libflow does not look at them. */
#define SQ_LIMITS_TABLES                                                                         \
    "CREATE TABLE IF NOT EXISTS slots(key TEXT NOT NULL, slot INTEGER NOT NULL,"                 \
    " holder TEXT NOT NULL, owner TEXT, expires REAL NOT NULL, PRIMARY KEY(key, slot))"          \
    " WITHOUT ROWID;"                                                                            \
    "CREATE INDEX IF NOT EXISTS slots_holder ON slots(holder);"                                  \
    "CREATE TABLE IF NOT EXISTS rates(key TEXT NOT NULL, at REAL NOT NULL);"                     \
    "CREATE INDEX IF NOT EXISTS rates_key ON rates(key, at);"                                    \
    "CREATE TABLE IF NOT EXISTS slot_wants(key TEXT NOT NULL, holder TEXT NOT NULL,"             \
    " expires REAL NOT NULL, PRIMARY KEY(key, holder)) WITHOUT ROWID;"

static const char sq_schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS runs(id TEXT PRIMARY KEY, flow TEXT, version TEXT,"
    " def_hash TEXT, source TEXT, parent TEXT, inputs TEXT, status INTEGER NOT NULL,"
    " created_at REAL NOT NULL, ended_at REAL NOT NULL DEFAULT 0, lease_holder TEXT,"
    " lease_expiry REAL);"
    "CREATE TABLE IF NOT EXISTS records(run TEXT NOT NULL, seq INTEGER NOT NULL,"
    " type INTEGER NOT NULL, act INTEGER NOT NULL, task INTEGER NOT NULL,"
    " attempt INTEGER NOT NULL, src INTEGER NOT NULL, time REAL NOT NULL, payload TEXT,"
    " PRIMARY KEY(run, seq)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS control(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " run TEXT NOT NULL, kind TEXT NOT NULL, arg TEXT);"
    "CREATE INDEX IF NOT EXISTS control_run ON control(run, seq);"
    SQ_ANSWERS_TABLE
    SQ_LIMITS_TABLES
    SQ_CACHE_TABLE
    "INSERT OR REPLACE INTO meta(key, value) VALUES('format', '1');"
    "PRAGMA user_version = 1;";

#define SQ_META_COLUMNS                                                                          \
    "id, flow, version, def_hash, source, parent, inputs, status, created_at, ended_at"

static const char *const sq_sql[SQ_NSTMT] = {
    [SQ_BEGIN] = "BEGIN IMMEDIATE",
    [SQ_COMMIT] = "COMMIT",
    [SQ_RUN_INSERT] = "INSERT INTO runs(" SQ_META_COLUMNS ")"
                      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [SQ_RUN_GET] = "SELECT " SQ_META_COLUMNS " FROM runs WHERE id = ?1",
    [SQ_RUN_LIST] = "SELECT " SQ_META_COLUMNS " FROM runs ORDER BY created_at, id",
    [SQ_RUN_STATUS] = "UPDATE runs SET status = ?2, ended_at = ?3 WHERE id = ?1",
    [SQ_RUN_CREATED] = "SELECT created_at FROM runs WHERE id = ?1",
    [SQ_RUN_DELETE] = "DELETE FROM runs WHERE id = ?1",
    [SQ_MAX_SEQ] = "SELECT max(seq) FROM records WHERE run = ?1",
    [SQ_REC_INSERT] = "INSERT INTO records(run, seq, type, act, task, attempt, src, time, payload)"
                      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [SQ_REC_READ] = "SELECT seq, type, act, task, attempt, src, time, payload FROM records"
                    " WHERE run = ?1 AND seq >= ?2 ORDER BY seq",
    [SQ_REC_DELETE] = "DELETE FROM records WHERE run = ?1",
    [SQ_LEASE_GET] = "SELECT lease_holder, lease_expiry FROM runs WHERE id = ?1",
    [SQ_LEASE_SET] = "UPDATE runs SET lease_holder = ?2, lease_expiry = ?3 WHERE id = ?1",
    [SQ_LEASE_CLEAR] = "UPDATE runs SET lease_holder = NULL, lease_expiry = NULL"
                       " WHERE id = ?1 AND lease_holder = ?2",
    [SQ_CTL_PUT] = "INSERT INTO control(run, kind, arg) SELECT ?1, ?2, ?3"
                   " WHERE EXISTS(SELECT 1 FROM runs WHERE id = ?1)",
    [SQ_CTL_FIRST] = "SELECT seq, kind, arg FROM control WHERE run = ?1 ORDER BY seq LIMIT 1",
    [SQ_CTL_DELETE] = "DELETE FROM control WHERE seq = ?1",
    [SQ_CTL_DELETE_RUN] = "DELETE FROM control WHERE run = ?1",
    [SQ_ANS_GET] = "SELECT answer FROM answers WHERE run = ?1 AND request = ?2",
    [SQ_ANS_PUT] = "INSERT INTO answers(run, request, answer) VALUES(?1, ?2, ?3)",
    [SQ_ANS_LIST] = "SELECT request, answer FROM answers WHERE run = ?1",
    [SQ_ANS_DELETE_RUN] = "DELETE FROM answers WHERE run = ?1",
    [SQ_SLOT_BUSY] = "SELECT slot, holder, expires FROM slots WHERE key = ?1 AND slot < ?2"
                     " ORDER BY slot",
    [SQ_SLOT_PUT] = "INSERT OR REPLACE INTO slots(key, slot, holder, owner, expires)"
                    " VALUES(?1, ?2, ?3, ?4, ?5)",
    [SQ_SLOT_DROP] = "DELETE FROM slots WHERE key = ?1 AND slot = ?2 AND holder = ?3",
    [SQ_SLOT_HELD] = "SELECT 1 FROM slots WHERE holder = ?1 LIMIT 1",
    [SQ_SLOT_RENEW] = "UPDATE slots SET expires = ?2 WHERE holder = ?1",
    [SQ_SLOT_LIST] = "SELECT key, slot, holder, owner, expires FROM slots ORDER BY key, slot",
    [SQ_SLOT_LIST_KEY] = "SELECT key, slot, holder, owner, expires FROM slots WHERE key = ?1"
                         " ORDER BY slot",
    [SQ_RATE_FORGET] = "DELETE FROM rates WHERE key = ?1 AND at <= ?2",
    [SQ_RATE_COUNT] = "SELECT count(*) FROM rates WHERE key = ?1",
    [SQ_RATE_ADD] = "INSERT INTO rates(key, at) VALUES(?1, ?2)",
    [SQ_RATE_NTH] = "SELECT at FROM rates WHERE key = ?1 ORDER BY at LIMIT 1 OFFSET ?2",
    [SQ_WANT_DROP] = "DELETE FROM slot_wants WHERE key = ?1 AND (holder = ?2 OR expires <= ?3)",
    [SQ_WANT_PUT] = "INSERT OR REPLACE INTO slot_wants(key, holder, expires) VALUES(?1, ?2, ?3)",
    [SQ_WANT_OTHERS] = "SELECT holder, expires FROM slot_wants"
                       " WHERE key = ?1 AND holder <> ?2 AND expires > ?3",
};

static flow_err sq_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        return FLOW_ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return FLOW_ETIMEOUT;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        return FLOW_EPARSE;
    case SQLITE_TOOBIG:
        return FLOW_ELIMIT;
    default:
        return FLOW_EIO;
    }
}

/* Fail with the connection's last error: "WHAT in store 'PATH': errmsg". */
static flow_err sq_fail(struct sq_store *s, flow_error *err, const char *what)
{
    int rc = sqlite3_extended_errcode(s->db);
    int sys = sqlite3_system_errno(s->db);
    char buf[128];
    /* SQLite says "disk I/O error"; the system call may say which one. */
    const char *why = NULL;
    if (sys && (rc & 0xff) == SQLITE_IOERR)
        why = strerror_r(sys, buf, sizeof(buf));
    else if (rc == SQLITE_IOERR_WRITE || (rc & 0xff) == SQLITE_FULL)
        why = "is the disk full, or the file at its size limit?";
    else if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
        why = "another process holds it; waited " FLOW__STR(SQ_BUSY_TIMEOUT_S) "s";
    return flow__error(err, sq_code(rc), "%s in store '%s': %s%s%s%s", what, s->path,
                       sqlite3_errmsg(s->db), why ? " (" : "", why ? why : "", why ? ")" : "");
}

static sqlite3_stmt *sq_stmt(struct sq_store *s, enum sq_stmt which)
{
    sqlite3_stmt *st = s->stmt[which];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

/* Step a statement that returns no rows (or whose rows are not wanted). */
static int sq_exec(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = SQLITE_DONE;
    int rc2 = sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : (rc2 != SQLITE_OK ? rc2 : rc);
}

static void sq_rollback(struct sq_store *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Bind `v` as compact JSON text (NULL as SQL NULL), or with `pack` as a
 * payload (compress.h: a BLOB when deflated); the bytes live in s->json
 * until the next call. */
static flow_err sq_bind_json(struct sq_store *s, sqlite3_stmt *st, int col, const json_t *v,
                             bool pack)
{
    if (!v)
        return sqlite3_bind_null(st, col) == SQLITE_OK ? FLOW_OK : FLOW_ENOMEM;
    flow__buf_reset(&s->json);
    bool packed = false;
    flow_err rc = pack ? flow__payload_append(&s->json, v, &packed)
                       : flow__json_append(&s->json, v, JSON_COMPACT);
    if (rc != FLOW_OK)
        return rc;
    const char *bytes = flow__buf_str(&s->json);
    int n = (int)s->json.len;
    if ((packed ? sqlite3_bind_blob(st, col, bytes, n, SQLITE_STATIC)
                : sqlite3_bind_text(st, col, bytes, n, SQLITE_STATIC)) != SQLITE_OK)
        return FLOW_ENOMEM;
    return FLOW_OK;
}

static int sq_bind_str(sqlite3_stmt *st, int col, const char *str)
{
    return str ? sqlite3_bind_text(st, col, str, -1, SQLITE_STATIC) : sqlite3_bind_null(st, col);
}

/* Parse a JSON column, text or deflated (compress.h); *out NULL for SQL
 * NULL. */
static flow_err sq_column_json(sqlite3_stmt *st, int col, json_t **out)
{
    *out = NULL;
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return FLOW_OK;
    const char *bytes = sqlite3_column_blob(st, col); /* text or blob, as it is */
    int len = sqlite3_column_bytes(st, col);
    if (!bytes)
        return len ? FLOW_ENOMEM : FLOW_EPARSE;
    return flow__payload_load(bytes, (size_t)len, out);
}

static flow_err sq_column_str(sqlite3_stmt *st, int col, char **out)
{
    *out = NULL;
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return FLOW_OK;
    const char *text = (const char *)sqlite3_column_text(st, col);
    if (!text)
        return FLOW_ENOMEM;
    *out = flow__strdup(text);
    return *out ? FLOW_OK : FLOW_ENOMEM;
}

/* ------------------------------------------------------------------------ */
/* open / close                                                              */

/* Create the file with mode 0600 whatever the umask (an existing file keeps
 * its mode). */
static flow_err sq_create_file(const char *path, unsigned flags, flow_error *err)
{
    if (flags & FLOW__STORE_OPEN_NOCREATE) {
        if (access(path, F_OK) != 0) {
            if (errno == ENOENT)
                return flow__error(err, FLOW_ENOTFOUND, "no store '%s'", path);
            return flow__error_errno(err, errno, "cannot open store '%s'", path);
        }
        return FLOW_OK;
    }
    flow_err rc = flow__store_make_dirs(path, false, err);
    if (rc != FLOW_OK)
        return rc;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return FLOW_OK;
        return flow__error_errno(err, errno, "cannot create store '%s'", path);
    }
    if (fchmod(fd, 0600) != 0) {
        int e = errno;
        close(fd);
        return flow__error_errno(err, e, "cannot set the mode of store '%s'", path);
    }
    close(fd);
    return FLOW_OK;
}

/* Read PRAGMA user_version; -1 on failure (error in the connection). */
static int sq_user_version(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return -1;
    int v = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Switch the connection's synchronous pragma to FULL or NORMAL. Outside a
 * transaction only (SQLite ignores it inside one). */
static flow_err sq_set_sync(struct sq_store *s, bool full, flow_error *err)
{
    if (sqlite3_exec(s->db, full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                     NULL, NULL, NULL) != SQLITE_OK)
        return sq_fail(s, err, "cannot set the durability");
    s->sync_full = full;
    return FLOW_OK;
}

/* A store made before `answers`, `slots`, `rates` or `slot_wants` existed
 * gets them; the others are only read. */
static flow_err sq_add_tables(struct sq_store *s, flow_error *err)
{
    sqlite3_stmt *st = NULL;
    int have = -1;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                           " AND name IN ('answers', 'slots', 'rates', 'slot_wants', 'cache')",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        have = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (have < 0)
        return sq_fail(s, err, "cannot read the schema");
    if (have == 5)
        return FLOW_OK;
    if (sqlite3_exec(s->db, SQ_ANSWERS_TABLE SQ_LIMITS_TABLES SQ_CACHE_TABLE, NULL, NULL, NULL) !=
        SQLITE_OK)
        return sq_fail(s, err, "cannot add the tables of answers, limits and the cache");
    return FLOW_OK;
}

/* Set the pragmas, check the format, create the schema when new. */
static flow_err sq_setup(struct sq_store *s, flow_error *err)
{
    sqlite3_busy_timeout(s->db, SQ_BUSY_TIMEOUT_MS);
    int version = sq_user_version(s->db);
    if (version < 0) {
        if ((sqlite3_errcode(s->db) & 0xff) == SQLITE_NOTADB)
            return flow__error(err, FLOW_EPARSE,
                               "store '%s' is not a libflow store (file is not a database)",
                               s->path);
        return sq_fail(s, err, "cannot read the format");
    }
    if (version > FLOW__STORE_FORMAT)
        return flow__store_newer_format(err, s->path, version);

    char *mode = NULL;
    int rc = SQLITE_BUSY;
    /* Processes opening a new store at once race to switch it to WAL, and
     * SQLite answers that race with SQLITE_BUSY without calling the busy
     * handler (it would deadlock): wait and ask again, as long as the busy
     * timeout. */
    for (int tries = 0; rc != SQLITE_ROW && tries < SQ_BUSY_TIMEOUT_MS / 10; tries++) {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *m = (const char *)sqlite3_column_text(st, 0);
            mode = m ? flow__strdup(m) : NULL;
        }
        sqlite3_finalize(st);
        if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
            break;
        struct timespec pause = {0, 10 * 1000000L};
        nanosleep(&pause, NULL);
    }
    if (rc != SQLITE_ROW)
        return sq_fail(s, err, "cannot set wal mode");
    int wal = mode && !strcmp(mode, "wal");
    flow__free(mode);
    if (!wal)
        return flow__error(err, FLOW_EIO, "cannot set wal mode in store '%s'", s->path);

    flow_err frc = sq_set_sync(s, s->strict, err);
    if (frc != FLOW_OK)
        return frc;

    if (version == FLOW__STORE_FORMAT)
        return sq_add_tables(s, err);
    /* A new file (or one another process is creating right now). */
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return sq_fail(s, err, "cannot create the schema");
    version = sq_user_version(s->db);
    if (version == 0) {
        int foreign = 0;
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db,
                               "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                               " AND name NOT IN ('meta', 'runs', 'records', 'control',"
                               " 'answers', 'slots', 'rates', 'slot_wants', 'cache',"
                               " 'sqlite_sequence')",
                               -1, &st, NULL) == SQLITE_OK) {
            if (sqlite3_step(st) == SQLITE_ROW)
                foreign = sqlite3_column_int(st, 0);
            sqlite3_finalize(st);
        }
        if (foreign) {
            sq_rollback(s);
            return flow__error(err, FLOW_EINVAL,
                               "store '%s' is not a libflow store (it holds other tables)",
                               s->path);
        }
        if (sqlite3_exec(s->db, sq_schema, NULL, NULL, NULL) != SQLITE_OK) {
            flow_err e = sq_fail(s, err, "cannot create the schema");
            sq_rollback(s);
            return e;
        }
    }
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        flow_err e = sq_fail(s, err, "cannot create the schema");
        sq_rollback(s);
        return e;
    }
    return FLOW_OK;
}

static void sq_close(void *priv)
{
    struct sq_store *s = priv;
    if (!s)
        return;
    for (int i = 0; i < SQ_NSTMT; i++)
        sqlite3_finalize(s->stmt[i]);
    flow__sq_cache_close(s);
    sqlite3_close(s->db);
    flow__store_run_entries_free(&s->runs, NULL);
    flow__buf_cleanup(&s->json);
    flow__free(s->path);
    flow__free(s);
}

static flow_err sq_open(const char *url_rest, unsigned flags, void **priv, flow_error *err)
{
    *priv = NULL;
    struct sq_store *s = flow__calloc(1, sizeof(*s));
    if (!s)
        return flow__error(err, FLOW_ENOMEM, "out of memory opening store 'sqlite:%s'", url_rest);
    flow__buf_init(&s->json, SQ_PAYLOAD_MAX);
    flow__strmap_init(&s->runs);
    flow_err rc = flow__store_parse_url("sqlite", url_rest, &s->path, &s->strict, err);
    if (rc != FLOW_OK)
        goto out_close;
    rc = sq_create_file(s->path, flags, err);
    if (rc != FLOW_OK)
        goto out_close;
    if (sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        if (!s->db) {
            rc = flow__error(err, FLOW_ENOMEM, "out of memory opening store '%s'", s->path);
            goto out_close;
        }
        rc = sq_fail(s, err, "cannot open");
        goto out_close;
    }
    sqlite3_extended_result_codes(s->db, 1);
    rc = sq_setup(s, err);
    if (rc != FLOW_OK)
        goto out_close;
    for (int i = 0; i < SQ_NSTMT; i++) {
        if (sqlite3_prepare_v3(s->db, sq_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                               NULL) != SQLITE_OK) {
            rc = sq_fail(s, err, "cannot prepare statements");
            goto out_close;
        }
    }
    *priv = s;
    return FLOW_OK;

out_close:
    sq_close(s);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* runs                                                                      */

static flow_err sq_run_create(void *priv, const struct flow__run_meta *meta, flow_error *err)
{
    struct sq_store *s = priv;
    flow_err rc = flow__store_check_id(s->path, meta->id, err);
    if (rc != FLOW_OK)
        return rc;
    sqlite3_stmt *st = sq_stmt(s, SQ_RUN_INSERT);
    sqlite3_bind_text(st, 1, meta->id, -1, SQLITE_STATIC);
    sq_bind_str(st, 2, meta->flow);
    sq_bind_str(st, 3, meta->version);
    sq_bind_str(st, 4, meta->def_hash);
    sq_bind_str(st, 5, meta->source);
    sq_bind_str(st, 6, meta->parent);
    sqlite3_bind_int(st, 8, meta->status);
    sqlite3_bind_double(st, 9, meta->created_at);
    sqlite3_bind_double(st, 10, meta->ended_at);
    rc = sq_bind_json(s, st, 7, meta->inputs, true);
    if (rc != FLOW_OK)
        return flow__error(err, rc, "cannot write the inputs of run '%s' in store '%s'", meta->id,
                           s->path);
    if (sq_exec(st) != SQLITE_OK) {
        if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
            rc = flow__error(err, FLOW_EEXISTS, "run '%s' already exists in store '%s'",
                             meta->id, s->path);
        else {
            char what[160];
            snprintf(what, sizeof(what), "cannot create run '%s'", meta->id);
            rc = sq_fail(s, err, what);
        }
    }
    sqlite3_bind_null(st, 7); /* do not keep a pointer into s->json */
    return rc;
}

/* Fill `out` from a row of SQ_RUN_GET / SQ_RUN_LIST. */
static flow_err sq_row_meta(sqlite3_stmt *st, struct flow__run_meta *out)
{
    memset(out, 0, sizeof(*out));
    const char *id = (const char *)sqlite3_column_text(st, 0);
    if (!id)
        return FLOW_ENOMEM;
    snprintf(out->id, sizeof(out->id), "%s", id);
    flow_err rc = sq_column_str(st, 1, &out->flow);
    if (rc == FLOW_OK)
        rc = sq_column_str(st, 2, &out->version);
    if (rc == FLOW_OK)
        rc = sq_column_str(st, 3, &out->def_hash);
    if (rc == FLOW_OK)
        rc = sq_column_str(st, 4, &out->source);
    if (rc == FLOW_OK)
        rc = sq_column_str(st, 5, &out->parent);
    if (rc == FLOW_OK)
        rc = sq_column_json(st, 6, &out->inputs);
    out->status = sqlite3_column_int(st, 7);
    out->created_at = sqlite3_column_double(st, 8);
    out->ended_at = sqlite3_column_double(st, 9);
    if (rc != FLOW_OK)
        flow__run_meta_cleanup(out);
    return rc;
}

static flow_err sq_run_get(void *priv, const char *id, struct flow__run_meta *out,
                           flow_error *err)
{
    struct sq_store *s = priv;
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = sq_stmt(s, SQ_RUN_GET);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    flow_err rc;
    if (step == SQLITE_ROW) {
        rc = sq_row_meta(st, out);
        if (rc != FLOW_OK)
            flow__error(err, rc, "cannot read run '%s' in store '%s': %s", id, s->path,
                        rc == FLOW_EPARSE ? "its inputs are damaged" : flow__payload_why(rc));
    } else if (step == SQLITE_DONE) {
        rc = flow__error(err, FLOW_ENOTFOUND, "no run '%s' in store '%s'", id, s->path);
    } else {
        char what[160];
        snprintf(what, sizeof(what), "cannot read run '%s'", id);
        rc = sq_fail(s, err, what);
    }
    sqlite3_reset(st);
    return rc;
}

static flow_err sq_run_list(void *priv, flow__store_run_cb cb, void *udata, flow_error *err)
{
    struct sq_store *s = priv;
    sqlite3_stmt *st = sq_stmt(s, SQ_RUN_LIST);
    flow_err rc = FLOW_OK;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct flow__run_meta meta;
        rc = sq_row_meta(st, &meta);
        if (rc != FLOW_OK) {
            const char *id = (const char *)sqlite3_column_text(st, 0);
            flow__error(err, rc, "cannot list the runs in store '%s': run '%s': %s", s->path,
                        id ? id : "?", flow__payload_why(rc));
            break;
        }
        rc = cb(udata, &meta);
        flow__run_meta_cleanup(&meta);
        if (rc != FLOW_OK)
            break;
    }
    if (rc == FLOW_OK && step != SQLITE_DONE)
        rc = sq_fail(s, err, "cannot list the runs");
    sqlite3_reset(st);
    return rc;
}

static flow_err sq_run_set_status(void *priv, const char *id, int status, double ended_at,
                                  flow_error *err)
{
    struct sq_store *s = priv;
    sqlite3_stmt *st = sq_stmt(s, SQ_RUN_STATUS);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, status);
    sqlite3_bind_double(st, 3, ended_at);
    if (sq_exec(st) != SQLITE_OK) {
        char what[160];
        snprintf(what, sizeof(what), "cannot set the status of run '%s'", id);
        return sq_fail(s, err, what);
    }
    if (sqlite3_changes(s->db) == 0)
        return flow__error(err, FLOW_ENOTFOUND, "no run '%s' in store '%s'", id, s->path);
    return FLOW_OK;
}

/* ------------------------------------------------------------------------ */
/* journal records                                                           */

/* Does run `id` exist? 1 yes (*created_at set), 0 no, -1 error (in the
 * connection). */
static int sq_run_created(struct sq_store *s, const char *id, double *created_at)
{
    sqlite3_stmt *st = sq_stmt(s, SQ_RUN_CREATED);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW)
        *created_at = sqlite3_column_double(st, 0);
    sqlite3_reset(st);
    return step == SQLITE_ROW ? 1 : step == SQLITE_DONE ? 0 : -1;
}

/* Begin a write transaction on run `id`, which must exist. */
static flow_err sq_begin_run(struct sq_store *s, const char *id, double *created_at,
                             const char *what, flow_error *err)
{
    if (sq_exec(sq_stmt(s, SQ_BEGIN)) != SQLITE_OK)
        return sq_fail(s, err, what);
    double created = 0;
    int exists = sq_run_created(s, id, &created);
    if (exists > 0) {
        if (created_at)
            *created_at = created;
        return FLOW_OK;
    }
    flow_err rc = exists < 0 ? sq_fail(s, err, what)
                             : flow__error(err, FLOW_ENOTFOUND, "no run '%s' in store '%s'", id,
                                           s->path);
    sq_rollback(s);
    return rc;
}

static flow_err sq_commit(struct sq_store *s, const char *what, flow_error *err)
{
    if (sq_exec(sq_stmt(s, SQ_COMMIT)) == SQLITE_OK)
        return FLOW_OK;
    flow_err rc = sq_fail(s, err, what);
    sq_rollback(s);
    return rc;
}

/* The cache entry of run `id`, created cold; NULL when out of memory (the
 * append then reads the seq every time). */
static struct sq_run *sq_run_cache(struct sq_store *s, const char *id)
{
    bool created;
    struct sq_run *c = flow__store_run_entry(&s->runs, id, sizeof(*c), &created);
    if (c && created)
        c->next_seq = -1;
    return c;
}

/* The seq the next record of `run_id` gets, read from the table. */
static flow_err sq_read_next_seq(struct sq_store *s, const char *run_id, int64_t *seq,
                                 const char *what, flow_error *err)
{
    sqlite3_stmt *st = sq_stmt(s, SQ_MAX_SEQ);
    sqlite3_bind_text(st, 1, run_id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        flow_err rc = sq_fail(s, err, what);
        sqlite3_reset(st);
        return rc;
    }
    *seq = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 0) + 1;
    sqlite3_reset(st);
    return FLOW_OK;
}

/* Insert `recs` as seq, seq+1, ... inside the open transaction. *conflict
 * is set when the first row's seq is taken (a stale cache). */
static flow_err sq_insert_records(struct sq_store *s, const char *run_id,
                                  const struct flow__jrec *recs, size_t n, int64_t seq,
                                  bool *conflict, const char *what, flow_error *err)
{
    *conflict = false;
    sqlite3_stmt *st = sq_stmt(s, SQ_REC_INSERT);
    sqlite3_bind_text(st, 1, run_id, -1, SQLITE_STATIC);
    flow_err rc = FLOW_OK;
    for (size_t i = 0; i < n; i++, seq++) {
        const struct flow__jrec *r = &recs[i];
        sqlite3_bind_int64(st, 2, seq);
        sqlite3_bind_int(st, 3, r->type);
        sqlite3_bind_int64(st, 4, r->act);
        sqlite3_bind_int64(st, 5, r->task);
        sqlite3_bind_int(st, 6, r->attempt);
        sqlite3_bind_int64(st, 7, r->src);
        sqlite3_bind_double(st, 8, r->time);
        rc = sq_bind_json(s, st, 9, r->payload, true);
        if (rc != FLOW_OK) {
            flow__error(err, rc, "cannot write record %lld of run '%s' in store '%s'",
                        (long long)seq, run_id, s->path);
            break;
        }
        if (sq_exec(st) != SQLITE_OK) {
            if (i == 0 && sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
                *conflict = true;
            rc = sq_fail(s, err, what);
            break;
        }
    }
    sqlite3_bind_null(st, 9); /* do not keep a pointer into s->json */
    return rc;
}

static flow_err sq_append(void *priv, const char *run_id, const struct flow__jrec *recs,
                          size_t n, unsigned flags, flow_error *err)
{
    struct sq_store *s = priv;
    if (n == 0)
        return FLOW_OK;
    char what[160];
    snprintf(what, sizeof(what), "cannot append to run '%s'", run_id);
    /* The pragma only takes effect outside a transaction. */
    bool full = s->strict || (flags & FLOW__STORE_SYNC);
    flow_err rc = full != s->sync_full ? sq_set_sync(s, full, err) : FLOW_OK;
    if (rc != FLOW_OK)
        return rc;
    struct sq_run *c = sq_run_cache(s, run_id);
    double created = 0;
    rc = sq_begin_run(s, run_id, &created, what, err);
    if (rc != FLOW_OK)
        goto out_cold;
    bool warm = c && c->next_seq >= 0 && c->created_at == created;
    int64_t seq = warm ? c->next_seq : 0;
    if (!warm)
        rc = sq_read_next_seq(s, run_id, &seq, what, err);
    bool conflict = false;
    if (rc == FLOW_OK)
        rc = sq_insert_records(s, run_id, recs, n, seq, &conflict, what, err);
    if (rc != FLOW_OK && conflict && warm) {
        rc = sq_read_next_seq(s, run_id, &seq, what, err);
        if (rc == FLOW_OK)
            rc = sq_insert_records(s, run_id, recs, n, seq, &conflict, what, err);
    }
    if (rc != FLOW_OK) {
        sq_rollback(s);
        goto out_cold;
    }
    rc = sq_commit(s, what, err);
    if (rc != FLOW_OK)
        goto out_cold;
    if (c) {
        c->next_seq = seq + (int64_t)n;
        c->created_at = created;
    }
    return FLOW_OK;

out_cold:
    if (c)
        c->next_seq = -1;
    return rc;
}

static flow_err sq_read(void *priv, const char *run_id, uint64_t from_seq, flow__store_rec_cb cb,
                        void *udata, flow_error *err)
{
    struct sq_store *s = priv;
    char what[160];
    snprintf(what, sizeof(what), "cannot read the journal of run '%s'", run_id);
    double created;
    int exists = sq_run_created(s, run_id, &created);
    if (exists < 0)
        return sq_fail(s, err, what);
    if (exists == 0)
        return flow__error(err, FLOW_ENOTFOUND, "no run '%s' in store '%s'", run_id, s->path);
    if (from_seq > (uint64_t)INT64_MAX)
        return FLOW_OK;
    sqlite3_stmt *st = sq_stmt(s, SQ_REC_READ);
    sqlite3_bind_text(st, 1, run_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)from_seq);
    flow_err rc = FLOW_OK;
    struct flow__payload_memo memo = {0};
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
        int attempt = sqlite3_column_int(st, 4);
        struct flow__jrec rec = {
            .type = (uint8_t)sqlite3_column_int(st, 1),
            .act = (uint32_t)sqlite3_column_int64(st, 2),
            .task = (uint32_t)sqlite3_column_int64(st, 3),
            .attempt = (uint8_t)(attempt > 255 ? 255 : attempt < 0 ? 0 : attempt),
            .src = (uint32_t)sqlite3_column_int64(st, 5),
            .time = sqlite3_column_double(st, 6),
        };
        if (sqlite3_column_type(st, 7) != SQLITE_NULL) {
            const char *bytes = sqlite3_column_blob(st, 7); /* text, or deflated */
            rc = bytes ? flow__payload_parse(&memo, bytes, (size_t)sqlite3_column_bytes(st, 7),
                                             &rec.payload)
                       : FLOW_EPARSE;
        }
        if (rc != FLOW_OK) {
            flow__error(err, rc, "cannot read record %llu of run '%s' in store '%s': %s",
                        (unsigned long long)seq, run_id, s->path,
                        rc == FLOW_EPARSE ? "bad payload" : flow__payload_why(rc));
            break;
        }
        rc = cb(udata, seq, &rec);
        json_decref(rec.payload);
        if (rc != FLOW_OK)
            break;
    }
    flow__payload_memo_cleanup(&memo);
    if (rc == FLOW_OK && step != SQLITE_DONE)
        rc = sq_fail(s, err, what);
    sqlite3_reset(st);
    return rc;
}

static flow_err sq_run_delete(void *priv, const char *id, flow_error *err)
{
    struct sq_store *s = priv;
    char what[160];
    snprintf(what, sizeof(what), "cannot delete run '%s'", id);
    flow_err rc = sq_begin_run(s, id, NULL, what, err);
    if (rc != FLOW_OK)
        return rc;
    static const enum sq_stmt deletes[] = {SQ_RUN_DELETE, SQ_REC_DELETE, SQ_CTL_DELETE_RUN,
                                           SQ_ANS_DELETE_RUN};
    for (size_t i = 0; i < FLOW__ARRAY_LEN(deletes); i++) {
        sqlite3_stmt *st = sq_stmt(s, deletes[i]);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (sq_exec(st) != SQLITE_OK) {
            rc = sq_fail(s, err, what);
            sq_rollback(s);
            return rc;
        }
    }
    rc = sq_commit(s, what, err);
    struct sq_run *c = flow__strmap_get(&s->runs, id);
    if (c)
        c->next_seq = -1;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* leases and control requests                                               */

static flow_err sq_lease_acquire(void *priv, const char *id, const char *holder, double now,
                                 double ttl, flow_error *err)
{
    struct sq_store *s = priv;
    char what[160];
    snprintf(what, sizeof(what), "cannot take the lease on run '%s'", id);
    flow_err rc = sq_begin_run(s, id, NULL, what, err);
    if (rc != FLOW_OK)
        return rc;
    sqlite3_stmt *st = sq_stmt(s, SQ_LEASE_GET);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = sq_fail(s, err, what);
        goto out_rollback;
    }
    const char *current = (const char *)sqlite3_column_text(st, 0);
    double expiry = sqlite3_column_double(st, 1);
    rc = flow__lease_check(err, id, current, expiry, holder, now);
    sqlite3_reset(st);
    if (rc != FLOW_OK)
        goto out_rollback;
    st = sq_stmt(s, SQ_LEASE_SET);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, holder, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, now + ttl);
    if (sq_exec(st) != SQLITE_OK) {
        rc = sq_fail(s, err, what);
        goto out_rollback;
    }
    return sq_commit(s, what, err);

out_rollback:
    sqlite3_reset(st);
    sq_rollback(s);
    return rc;
}

static flow_err sq_lease_release(void *priv, const char *id, const char *holder, flow_error *err)
{
    struct sq_store *s = priv;
    sqlite3_stmt *st = sq_stmt(s, SQ_LEASE_CLEAR);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, holder, -1, SQLITE_STATIC);
    if (sq_exec(st) != SQLITE_OK) {
        char what[160];
        snprintf(what, sizeof(what), "cannot release the lease on run '%s'", id);
        return sq_fail(s, err, what);
    }
    return FLOW_OK;
}

static flow_err sq_lease_get(void *priv, const char *id, double now, char **holder,
                             flow_error *err)
{
    struct sq_store *s = priv;
    *holder = NULL;
    sqlite3_stmt *st = sq_stmt(s, SQ_LEASE_GET);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    flow_err rc = FLOW_OK;
    if (step == SQLITE_ROW) {
        const char *current = (const char *)sqlite3_column_text(st, 0);
        double expiry = sqlite3_column_double(st, 1);
        if (current && flow__lease_is_live(current, expiry, now) &&
            !(*holder = flow__strdup(current)))
            rc = flow__error(err, FLOW_ENOMEM, "out of memory reading run '%s'", id);
    } else if (step == SQLITE_DONE) {
        rc = flow__error(err, FLOW_ENOTFOUND, "no run '%s' in store '%s'", id, s->path);
    } else {
        char what[160];
        snprintf(what, sizeof(what), "cannot read the lease on run '%s'", id);
        rc = sq_fail(s, err, what);
    }
    sqlite3_reset(st);
    return rc;
}

static flow_err sq_control_put(void *priv, const char *id, const char *kind, const char *arg,
                               flow_error *err)
{
    struct sq_store *s = priv;
    sqlite3_stmt *st = sq_stmt(s, SQ_CTL_PUT);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    sq_bind_str(st, 3, arg);
    if (sq_exec(st) != SQLITE_OK) {
        char what[160];
        snprintf(what, sizeof(what), "cannot send '%s' to run '%s'", kind, id);
        return sq_fail(s, err, what);
    }
    if (sqlite3_changes(s->db) == 0)
        return flow__error(err, FLOW_ENOTFOUND, "no run '%s' in store '%s'", id, s->path);
    return FLOW_OK;
}

/* The oldest request of `id` (its seq, or -1 when none) with copies of its
 * kind and arg. */
static flow_err sq_control_first(struct sq_store *s, const char *id, int64_t *seq, char **kind,
                                 char **arg)
{
    *seq = -1;
    *kind = *arg = NULL;
    sqlite3_stmt *st = sq_stmt(s, SQ_CTL_FIRST);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    flow_err rc = FLOW_OK;
    if (step == SQLITE_ROW) {
        *seq = sqlite3_column_int64(st, 0);
        rc = sq_column_str(st, 1, kind);
        if (rc == FLOW_OK)
            rc = sq_column_str(st, 2, arg);
    } else if (step != SQLITE_DONE) {
        rc = FLOW_EIO;
    }
    sqlite3_reset(st);
    if (rc != FLOW_OK) {
        flow__free(*kind);
        flow__free(*arg);
        *kind = *arg = NULL;
    }
    return rc;
}

static flow_err sq_control_take(void *priv, const char *id, char **kind, char **arg,
                                flow_error *err)
{
    struct sq_store *s = priv;
    *kind = *arg = NULL;
    char what[160];
    snprintf(what, sizeof(what), "cannot take a request for run '%s'", id);
    /* Runners poll often and rarely find anything: look before taking the
     * write lock. */
    int64_t seq;
    char *k, *a;
    flow_err rc = sq_control_first(s, id, &seq, &k, &a);
    flow__free(k);
    flow__free(a);
    if (rc != FLOW_OK)
        return rc == FLOW_ENOMEM ? flow__error(err, rc, "out of memory in store '%s'", s->path)
                                 : sq_fail(s, err, what);
    if (seq < 0)
        return FLOW_OK;
    if (sq_exec(sq_stmt(s, SQ_BEGIN)) != SQLITE_OK)
        return sq_fail(s, err, what);
    rc = sq_control_first(s, id, &seq, &k, &a);
    if (rc != FLOW_OK) {
        rc = rc == FLOW_ENOMEM ? flow__error(err, rc, "out of memory in store '%s'", s->path)
                               : sq_fail(s, err, what);
        sq_rollback(s);
        return rc;
    }
    if (seq >= 0) {
        sqlite3_stmt *st = sq_stmt(s, SQ_CTL_DELETE);
        sqlite3_bind_int64(st, 1, seq);
        if (sq_exec(st) != SQLITE_OK) {
            rc = sq_fail(s, err, what);
            sq_rollback(s);
            goto out_free;
        }
    }
    rc = sq_commit(s, what, err);
    if (rc != FLOW_OK)
        goto out_free;
    *kind = k;
    *arg = a;
    return FLOW_OK;

out_free:
    flow__free(k);
    flow__free(a);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* answers                                                                   */

/* The answer recorded for (run_id, request), parsed into *out (NULL when
 * there is none), inside the caller's transaction or not. */
static flow_err sq_answer_get(struct sq_store *s, const char *run_id, const char *request,
                              json_t **out, const char *what, flow_error *err)
{
    *out = NULL;
    sqlite3_stmt *st = sq_stmt(s, SQ_ANS_GET);
    sqlite3_bind_text(st, 1, run_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, request, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    flow_err rc = FLOW_OK;
    if (step == SQLITE_ROW) {
        rc = sq_column_json(st, 0, out);
        if (rc != FLOW_OK)
            flow__error(err, rc, "%s in store '%s': %s", what, s->path,
                        rc == FLOW_EPARSE ? "the recorded answer is damaged" : "out of memory");
    } else if (step != SQLITE_DONE) {
        rc = sq_fail(s, err, what);
    }
    sqlite3_reset(st);
    return rc;
}

/* One transaction: the look and the insert cannot be split by another
 * connection (BEGIN IMMEDIATE takes the write lock first), and the primary
 * key refuses a second row should anything get past. */
static flow_err sq_answer_claim(void *priv, const char *run_id, const char *request,
                                json_t *answer, double not_after, json_t **winner,
                                flow_error *err)
{
    struct sq_store *s = priv;
    char what[300];
    snprintf(what, sizeof(what), "cannot answer request '%.100s' of run '%s'", request, run_id);
    flow_err rc = s->sync_full != s->strict ? sq_set_sync(s, s->strict, err) : FLOW_OK;
    if (rc == FLOW_OK)
        rc = sq_begin_run(s, run_id, NULL, what, err);
    if (rc != FLOW_OK)
        return rc;
    json_t *first = NULL;
    rc = sq_answer_get(s, run_id, request, &first, what, err);
    if (rc == FLOW_OK && first) {
        rc = flow__store_answer_taken(err, run_id, request, first);
        if (winner)
            *winner = first;
        else
            json_decref(first);
        goto out_rollback;
    }
    if (rc == FLOW_OK && flow__store_answer_late(not_after))
        rc = flow__store_answer_expired(err, run_id, request, not_after);
    if (rc != FLOW_OK)
        goto out_rollback;
    sqlite3_stmt *st = sq_stmt(s, SQ_ANS_PUT);
    sqlite3_bind_text(st, 1, run_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, request, -1, SQLITE_STATIC);
    rc = sq_bind_json(s, st, 3, answer, false);
    if (rc != FLOW_OK) {
        flow__error(err, rc, "%s in store '%s': out of memory", what, s->path);
    } else if (sq_exec(st) != SQLITE_OK) {
        rc = sq_fail(s, err, what);
    }
    sqlite3_bind_null(st, 3); /* do not keep a pointer into s->json */
    if (rc != FLOW_OK)
        goto out_rollback;
    return sq_commit(s, what, err);

out_rollback:
    sq_rollback(s);
    return rc;
}

static flow_err sq_answer_list(void *priv, const char *run_id, json_t **out, flow_error *err)
{
    struct sq_store *s = priv;
    char what[160];
    snprintf(what, sizeof(what), "cannot read the answers of run '%s'", run_id);
    double created;
    int exists = sq_run_created(s, run_id, &created);
    if (exists <= 0)
        return exists < 0 ? sq_fail(s, err, what)
                          : flow__error(err, FLOW_ENOTFOUND, "no run '%s' in store '%s'", run_id,
                                        s->path);
    json_t *all = json_object();
    if (!all)
        return flow__error(err, FLOW_ENOMEM, "%s in store '%s': out of memory", what, s->path);
    sqlite3_stmt *st = sq_stmt(s, SQ_ANS_LIST);
    sqlite3_bind_text(st, 1, run_id, -1, SQLITE_STATIC);
    flow_err rc = FLOW_OK;
    int step;
    while (rc == FLOW_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *request = (const char *)sqlite3_column_text(st, 0);
        json_t *answer = NULL;
        rc = request ? sq_column_json(st, 1, &answer) : FLOW_ENOMEM;
        if (rc == FLOW_OK && json_object_set_new(all, request, answer) != 0)
            rc = FLOW_ENOMEM;
        if (rc != FLOW_OK)
            flow__error(err, rc, "%s in store '%s': %s", what, s->path,
                        rc == FLOW_EPARSE ? "an answer is damaged" : "out of memory");
    }
    if (rc == FLOW_OK && step != SQLITE_DONE)
        rc = sq_fail(s, err, what);
    sqlite3_reset(st);
    if (rc != FLOW_OK) {
        json_decref(all);
        return rc;
    }
    *out = all;
    return FLOW_OK;
}

/* ------------------------------------------------------------------------ */
/* limits                                                                    */

/* Slots and rate starts are leases: a power cut that loses the last of them
 * loses nothing that matters (by the time the machine is back their leases
 * have expired and their windows gone by), so they are committed without
 * the fsync of synchronous=FULL even in a strict store. Each call is one
 * BEGIN IMMEDIATE..COMMIT, on the hot path of every limited task. *full
 * gets the setting to put back (sq_limits_end). */
static flow_err sq_limits_begin(struct sq_store *s, bool *full, const char *what,
                                flow_error *err)
{
    *full = s->sync_full;
    flow_err rc = s->sync_full ? sq_set_sync(s, false, err) : FLOW_OK;
    if (rc == FLOW_OK && sq_exec(sq_stmt(s, SQ_BEGIN)) != SQLITE_OK)
        rc = sq_fail(s, err, what);
    return rc;
}

/* Commit (unless `rc` says the transaction failed: roll back) and put the
 * synchronous setting back. A failure to put it back is not the call's
 * (what it did is done): s->sync_full still says what the connection has,
 * and the next append or answer, which set it per call, puts it back. */
static flow_err sq_limits_end(struct sq_store *s, bool full, flow_err rc, const char *what,
                              flow_error *err)
{
    if (rc == FLOW_OK)
        rc = sq_commit(s, what, err);
    else
        sq_rollback(s);
    if (full && !s->sync_full)
        sq_set_sync(s, true, NULL);
    return rc;
}

flow_err flow__sq_light_begin(struct sq_store *s, bool *full, const char *what, flow_error *err)
{
    return sq_limits_begin(s, full, what, err);
}

flow_err flow__sq_light_end(struct sq_store *s, bool full, flow_err rc, const char *what,
                            flow_error *err)
{
    return sq_limits_end(s, full, rc, what, err);
}

flow_err flow__sq_fail(struct sq_store *s, flow_error *err, const char *what)
{
    return sq_fail(s, err, what);
}

flow_err flow__sq_bind_json(struct sq_store *s, sqlite3_stmt *st, int col, const json_t *v)
{
    return sq_bind_json(s, st, col, v, true);
}

/* In slot_acquire's transaction: mark that `holder` waits for `key` (and
 * forget the marks that expired), or, not `wait`, that it does not. */
static flow_err sq_want_keep(struct sq_store *s, const char *key, const char *holder, bool wait,
                             double now, const char *what, flow_error *err)
{
    sqlite3_stmt *st = sq_stmt(s, SQ_WANT_DROP);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, holder, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, now);
    if (sq_exec(st) != SQLITE_OK)
        return sq_fail(s, err, what);
    if (!wait)
        return FLOW_OK;
    st = sq_stmt(s, SQ_WANT_PUT);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, holder, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, now + FLOW__SLOT_WANT_TTL);
    return sq_exec(st) != SQLITE_OK ? sq_fail(s, err, what) : FLOW_OK;
}

static flow_err sq_slot_acquire(void *priv, const char *key, int limit, int want,
                                const char *holder, const char *owner, double now, double ttl,
                                int *slots, int *got, flow_error *err)
{
    struct sq_store *s = priv;
    *got = 0;
    flow_err rc = flow__limit_check(s->path, "concurrency", key, limit, ttl, err);
    if (rc != FLOW_OK || want <= 0)
        return rc;
    char what[300];
    snprintf(what, sizeof(what), "cannot take a slot of concurrency key '%.200s'", key);
    bool full;
    rc = sq_limits_begin(s, &full, what, err);
    if (rc != FLOW_OK)
        return sq_limits_end(s, full, rc, what, err);
    FLOW__VEC(int) busy = {0};
    sqlite3_stmt *st = sq_stmt(s, SQ_SLOT_BUSY);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, limit);
    int step = SQLITE_DONE;
    while (rc == FLOW_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *h = (const char *)sqlite3_column_text(st, 1);
        if (h && flow__lease_is_live(h, sqlite3_column_double(st, 2), now))
            FLOW__VEC_PUSH(&busy, sqlite3_column_int(st, 0), rc);
        if (rc != FLOW_OK)
            flow__error(err, rc, "%s in store '%s': out of memory", what, s->path);
    }
    if (rc == FLOW_OK && step != SQLITE_DONE)
        rc = sq_fail(s, err, what);
    sqlite3_reset(st);
    int n = rc == FLOW_OK ? flow__slot_pick(busy.items, busy.count, limit, want, slots) : 0;
    FLOW__VEC_FREE(&busy);
    st = sq_stmt(s, SQ_SLOT_PUT);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, holder, -1, SQLITE_STATIC);
    sq_bind_str(st, 4, owner);
    sqlite3_bind_double(st, 5, now + ttl);
    for (int i = 0; i < n && rc == FLOW_OK; i++) {
        sqlite3_bind_int(st, 2, slots[i]);
        if (sq_exec(st) != SQLITE_OK)
            rc = sq_fail(s, err, what);
    }
    if (rc == FLOW_OK)
        rc = sq_want_keep(s, key, holder, n < want, now, what, err);
    rc = sq_limits_end(s, full, rc, what, err);
    if (rc == FLOW_OK)
        *got = n;
    return rc;
}

static flow_err sq_slot_release(void *priv, const char *key, const int *slots, int n,
                                const char *holder, flow_error *err)
{
    struct sq_store *s = priv;
    if (n <= 0)
        return FLOW_OK;
    char what[300];
    snprintf(what, sizeof(what), "cannot give back a slot of concurrency key '%.200s'", key);
    bool full;
    flow_err rc = sq_limits_begin(s, &full, what, err);
    sqlite3_stmt *st = sq_stmt(s, SQ_SLOT_DROP);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, holder, -1, SQLITE_STATIC);
    for (int i = 0; i < n && rc == FLOW_OK; i++) {
        sqlite3_bind_int(st, 2, slots[i]);
        if (sq_exec(st) != SQLITE_OK)
            rc = sq_fail(s, err, what);
    }
    return sq_limits_end(s, full, rc, what, err);
}

static flow_err sq_slot_renew(void *priv, const char *holder, double now, double ttl,
                              flow_error *err)
{
    struct sq_store *s = priv;
    const char *what = "cannot renew the slots of concurrency keys";
    /* Every runner renews at every tick, and most hold no slot: look
     * before taking the write lock. */
    sqlite3_stmt *st = sq_stmt(s, SQ_SLOT_HELD);
    sqlite3_bind_text(st, 1, holder, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    sqlite3_reset(st);
    if (step == SQLITE_DONE)
        return FLOW_OK;
    if (step != SQLITE_ROW)
        return sq_fail(s, err, what);
    bool full;
    flow_err rc = sq_limits_begin(s, &full, what, err);
    st = sq_stmt(s, SQ_SLOT_RENEW);
    sqlite3_bind_text(st, 1, holder, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, now + ttl);
    if (rc == FLOW_OK && sq_exec(st) != SQLITE_OK)
        rc = sq_fail(s, err, what);
    return sq_limits_end(s, full, rc, what, err);
}

static flow_err sq_slot_list(void *priv, const char *key, double now, json_t **out,
                             flow_error *err)
{
    struct sq_store *s = priv;
    *out = NULL;
    const char *what = "cannot list the slots of concurrency keys";
    json_t *list = json_array();
    if (!list)
        return flow__error(err, FLOW_ENOMEM, "%s in store '%s': out of memory", what, s->path);
    sqlite3_stmt *st = sq_stmt(s, key ? SQ_SLOT_LIST_KEY : SQ_SLOT_LIST);
    if (key)
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    flow_err rc = FLOW_OK;
    int step = SQLITE_DONE;
    while (rc == FLOW_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        const char *h = (const char *)sqlite3_column_text(st, 2);
        const char *o = (const char *)sqlite3_column_text(st, 3);
        double e = sqlite3_column_double(st, 4);
        if (!k || !h)
            rc = FLOW_ENOMEM;
        else if (flow__lease_is_live(h, e, now))
            rc = flow__slot_push(list, k, sqlite3_column_int(st, 1), h, o, e);
        if (rc != FLOW_OK)
            flow__error(err, rc, "%s in store '%s': out of memory", what, s->path);
    }
    if (rc == FLOW_OK && step != SQLITE_DONE)
        rc = sq_fail(s, err, what);
    sqlite3_reset(st);
    if (rc != FLOW_OK) {
        json_decref(list);
        return rc;
    }
    *out = list;
    return FLOW_OK;
}

/* One SELECT, no write lock: a mark is either there or not. */
static flow_err sq_slot_contended(void *priv, const char *key, const char *holder, double now,
                                  bool *contended, flow_error *err)
{
    struct sq_store *s = priv;
    *contended = false;
    sqlite3_stmt *st = sq_stmt(s, SQ_WANT_OTHERS);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, holder, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, now);
    int step = SQLITE_DONE;
    while (!*contended && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *h = (const char *)sqlite3_column_text(st, 0);
        *contended = h && flow__lease_is_live(h, sqlite3_column_double(st, 1), now);
    }
    flow_err rc = *contended || step == SQLITE_DONE
                      ? FLOW_OK
                      : sq_fail(s, err, "cannot read who waits for a concurrency key");
    sqlite3_reset(st);
    return rc;
}

static flow_err sq_rate_take(void *priv, const char *key, int limit, double window, int want,
                             double now, int *got, double *retry_at, flow_error *err)
{
    struct sq_store *s = priv;
    double retry = 0;
    *got = 0;
    if (retry_at)
        *retry_at = 0;
    flow_err rc = flow__limit_check(s->path, "rate", key, limit, window, err);
    if (rc != FLOW_OK || want <= 0)
        return rc;
    char what[300];
    snprintf(what, sizeof(what), "cannot start under rate key '%.200s'", key);
    bool full;
    rc = sq_limits_begin(s, &full, what, err);
    sqlite3_stmt *st = sq_stmt(s, SQ_RATE_FORGET);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, now - window);
    if (rc == FLOW_OK && sq_exec(st) != SQLITE_OK)
        rc = sq_fail(s, err, what);
    int64_t count = 0;
    if (rc == FLOW_OK) {
        st = sq_stmt(s, SQ_RATE_COUNT);
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            count = sqlite3_column_int64(st, 0);
        else
            rc = sq_fail(s, err, what);
        sqlite3_reset(st);
    }
    int64_t room = (int64_t)limit - count;
    int take = room <= 0 ? 0 : room < want ? (int)room : want;
    st = sq_stmt(s, SQ_RATE_ADD);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, now);
    for (int i = 0; i < take && rc == FLOW_OK; i++)
        if (sq_exec(st) != SQLITE_OK)
            rc = sq_fail(s, err, what);
    if (rc == FLOW_OK && take < want) {
        /* The window holds count + take >= limit starts: the next may go
         * once all but limit - 1 of them have left it. */
        st = sq_stmt(s, SQ_RATE_NTH);
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, count + take - limit);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW)
            retry = sqlite3_column_double(st, 0) + window;
        else if (step != SQLITE_DONE)
            rc = sq_fail(s, err, what);
        sqlite3_reset(st);
    }
    rc = sq_limits_end(s, full, rc, what, err);
    if (rc == FLOW_OK) {
        *got = take;
        if (retry_at)
            *retry_at = retry;
    }
    return rc;
}

const struct flow__store_ops flow__store_sqlite_ops = {
    .version = 4,
    .scheme = "sqlite",
    .caps = FLOW__STORE_CAP_DURABLE | FLOW__STORE_CAP_CROSS_PROCESS,
    .open = sq_open,                     /* WAL, busy timeout, format check */
    .close = sq_close,                   /* finalizes statements, closes the db */
    .run_create = sq_run_create,         /* INSERT; EEXISTS on the primary key */
    .run_get = sq_run_get,               /* one row */
    .run_list = sq_run_list,             /* by created_at, id */
    .run_set_status = sq_run_set_status, /* UPDATE */
    .append = sq_append,                 /* BEGIN IMMEDIATE..COMMIT per batch, cached seq */
    .commit = NULL,                      /* every append commits */
    .read = sq_read,                     /* payloads parsed back */
    .run_delete = sq_run_delete,         /* runs, records, control, answers: one transaction */
    .lease_acquire = sq_lease_acquire,   /* holder and expiry in runs, BEGIN IMMEDIATE */
    .lease_release = sq_lease_release,   /* cleared only if ours */
    .lease_get = sq_lease_get,           /* live per flow__lease_is_live */
    .control_put = sq_control_put,       /* INSERT if the run exists */
    .control_take = sq_control_take,     /* oldest, deleted in the same transaction */
    .answer_claim = sq_answer_claim,     /* look and insert in one BEGIN IMMEDIATE */
    .answer_list = sq_answer_list,       /* the run's rows */
    .slot_acquire = sq_slot_acquire,     /* look and insert in one BEGIN IMMEDIATE */
    .slot_release = sq_slot_release,     /* deleted only if ours */
    .slot_renew = sq_slot_renew,         /* one UPDATE, when the holder has any */
    .slot_list = sq_slot_list,           /* live rows by key, slot */
    .rate_take = sq_rate_take,           /* forget, count, insert in one BEGIN IMMEDIATE */
    .slot_contended = sq_slot_contended, /* one SELECT of slot_wants */
    .cache_get = flow__sq_cache_get,     /* one SELECT by (flow, task, key) */
    .cache_put = flow__sq_cache_put,     /* INSERT OR REPLACE, not synced */
    .cache_gc = flow__sq_cache_gc,       /* one DELETE */
};
