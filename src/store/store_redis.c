/* store_redis.c -- the Redis store
 * ("redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?prefix=P&durability=strict]"):
 * runs, journals, leases, control requests, answers and limits (those in
 * store_redis_limits.c) as keys under the prefix P (docs/internals/store.md,
 * "redis"):
 *
 *   P:format          the store's format ("1")
 *   P:runs            sorted set: run ids by created_at (ties by id)
 *   P:run:ID          hash: the run's metadata
 *   P:journal:ID      list: the records, seq = index (record.h encoding)
 *   P:lease:ID        hash: holder, expiry
 *   P:ctl:ID          list: control requests, oldest first, ["kind", arg]
 *   P:answers:ID      hash: request id -> the answer (JSON)
 *   P:slots:KEY       hash: the held slots of concurrency key KEY: N -> holder,
 *                     N:e -> expiry, N:o -> owner, N:t -> the call that took it
 *   P:slotholders:H   set: "N KEY" for each slot holder H may hold
 *   P:slotkeys        set: the concurrency keys that may have held slots
 *   P:rate:KEY        sorted set: the starts of rate key KEY, scored by time
 *
 * Every change that must be atomic is one Lua script (EVAL): Redis runs a
 * script alone, and once a script has written it is not stopped half-way
 * (not even by maxmemory), so a batch of records is kept whole or not at
 * all; its effects reach the append-only file as one MULTI/EXEC.
 *
 * Fencing: an append checks, in its script, that the run's lease is held by
 * the holder this handle last took a lease as; a runner that lost its lease
 * writes nothing. Appends also name the seq they expect the batch to start
 * at, so a batch retried after a dropped connection is never kept twice.
 *
 * One hiredis connection per handle (calls are serialized by the handle's
 * io mutex); a dropped connection is made again once per call. */
#include "util/compat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/compress.h"
#include "store/redis_int.h"
#include "store/store.h"

#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/json.h"
#include "util/redis.h"

#define RD_TIMEOUT_S 5.0      /* connect, and each command */
#define RD_READ_CHUNK 1000    /* records per LRANGE */
#define RD_LIST_CHUNK 100     /* runs per HGETALL script */
#define RD_KEY_MAX 256        /* prefix (< 64) + ":journal:" + id (< 80) */
#define RD_APPEND_TRIES 3     /* seq mismatches before giving up */
#define RD_LEASE_TRIES 3      /* takeovers of dead holders raced by others */
#define RD_BATCH_MAX ((size_t)1 << 30)

/* What this handle knows of a run it appended to. */
struct rd_run {
    char id[80];      /* the map's key */
    int64_t next_seq; /* the journal's length after our last append; -1: unknown */
    bool leased;      /* this handle holds (or held) the run's lease */
};


/* ---- scripts ------------------------------------------------------------- */

/* KEYS: run, runs, journal, lease, ctl, answers. ARGV: id, created_at,
 * field, value, ... A new run starts with nothing left of an old one. */
static const char rd_lua_create[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6])\n"
    "redis.call('HSET', KEYS[1], unpack(ARGV, 3))\n"
    "redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])\n"
    "return 1\n";

/* KEYS: run. ARGV: status, ended_at. */
static const char rd_lua_status[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'status', ARGV[1], 'ended_at', ARGV[2])\n"
    "return 1\n";

/* KEYS: run, runs, journal, lease, ctl, answers. ARGV: id. */
static const char rd_lua_delete[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "redis.call('DEL', KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[6])\n"
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "return 1\n";

/* KEYS: run hashes. The metadata of each ({} for one deleted meanwhile). */
static const char rd_lua_metas[] =
    "local out = {}\n"
    "for i, k in ipairs(KEYS) do out[i] = redis.call('HGETALL', k) end\n"
    "return out\n";

/* KEYS: run, journal, lease. ARGV: holder, expected seq, '1' when the
 * writer held the lease (then a lease that is gone is lost too), records...
 * {'ok'}, {'norun'}, {'lease', holder, expiry} (another holds it, or nobody
 * any more: we lost it), or {'seq', length} (the journal is not where we
 * thought). RPUSH in slices: unpack() has a limit on the values it returns. */
static const char rd_lua_append[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {'norun'} end\n"
    "local l = redis.call('HMGET', KEYS[3], 'holder', 'expiry')\n"
    "if l[1] and l[1] ~= ARGV[1] then return {'lease', l[1], l[2] or '0'} end\n"
    "if not l[1] and ARGV[3] == '1' then return {'lease', '', '0'} end\n"
    "local n = redis.call('LLEN', KEYS[2])\n"
    "if n ~= tonumber(ARGV[2]) then return {'seq', tostring(n)} end\n"
    "for i = 4, #ARGV, 4000 do\n"
    "  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 3999, #ARGV)))\n"
    "end\n"
    "return {'ok'}\n";

/* KEYS: run, lease. ARGV: holder, now, expiry, dead holder, its expiry.
 * Taken when free, ours, expired, or still held by the dead holder the
 * caller found (flow__lease_is_live judges pids, which a script cannot). */
static const char rd_lua_lease_take[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {'norun'} end\n"
    "local l = redis.call('HMGET', KEYS[2], 'holder', 'expiry')\n"
    "local h, e = l[1], l[2] or '0'\n"
    "if h and h ~= ARGV[1] and tonumber(e) > tonumber(ARGV[2])\n"
    "   and not (h == ARGV[4] and e == ARGV[5]) then return {'busy', h, e} end\n"
    "redis.call('HSET', KEYS[2], 'holder', ARGV[1], 'expiry', ARGV[3])\n"
    "return {'ok'}\n";

/* KEYS: lease. ARGV: holder. */
static const char rd_lua_lease_drop[] =
    "if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then redis.call('DEL', KEYS[1]) end\n"
    "return 1\n";

/* KEYS: run, lease. {0} without the run, else {1, holder, expiry}. */
static const char rd_lua_lease_get[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end\n"
    "local l = redis.call('HMGET', KEYS[2], 'holder', 'expiry')\n"
    "return {1, l[1], l[2]}\n";

/* KEYS: run, ctl. ARGV: the request. */
static const char rd_lua_ctl_put[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "redis.call('RPUSH', KEYS[2], ARGV[1])\n"
    "return 1\n";

/* KEYS: run, answers. ARGV: request, answer, not_after. The deadline is the
 * server's clock (TIME), which every claimer shares. */
static const char rd_lua_claim[] =
    "redis.replicate_commands()\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {'norun'} end\n"
    "local a = redis.call('HGET', KEYS[2], ARGV[1])\n"
    "if a then return {'taken', a} end\n"
    "local na = tonumber(ARGV[3])\n"
    "if na > 0 then\n"
    "  local t = redis.call('TIME')\n"
    "  if tonumber(t[1]) + tonumber(t[2]) / 1e6 >= na then return {'late'} end\n"
    "end\n"
    "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
    "return {'ok'}\n";

/* KEYS: run, answers. {0}, or {1, {request, answer, ...}}. */
static const char rd_lua_answers[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end\n"
    "return {1, redis.call('HGETALL', KEYS[2])}\n";

/* ---- keys, messages, commands ---------------------------------------------- */

/* "P:KIND:ID" (KIND NULL: "P:ID") into `out` (RD_KEY_MAX). */
static void rd_key(const struct rd_store *s, char *out, const char *kind, const char *id)
{
    snprintf(out, RD_KEY_MAX, "%s:%s%s%s", s->addr.prefix, kind ? kind : "", kind ? ":" : "",
             id);
}

static flow_err rd_no_run(struct rd_store *s, const char *id, flow_error *err)
{
    return flow__error(err, FLOW_ENOTFOUND, "no run '%s' in store '%s'", id, s->name);
}

flow_err flow__rd_nomem(struct rd_store *s, const char *what, flow_error *err)
{
    return flow__error(err, FLOW_ENOMEM, "%s in store '%s': out of memory", what, s->name);
}

/* Fill `err` with "WHAT in store 'NAME': WHY", WHY being `inner`'s message
 * without the "redis HOST: " it begins with (the name says it). */
static flow_err rd_fail(struct rd_store *s, const char *what, const flow_error *inner,
                        flow_error *err)
{
    const char *why = inner->message;
    size_t n = strlen(s->addr.shown);
    if (!strncmp(why, "redis ", 6) && !strncmp(why + 6, s->addr.shown, n) &&
        !strncmp(why + 6 + n, ": ", 2))
        why += 6 + n + 2;
    return flow__error(err, inner->code ? inner->code : FLOW_EIO, "%s in store '%s': %s", what,
                       s->name, why);
}

/* A new connection, checked for what the store's durability needs. */
static flow_err rd_connect(struct rd_store *s, flow_error *err)
{
    s->c = flow__redis_connect(&s->addr, RD_TIMEOUT_S, err);
    if (!s->c)
        return err ? err->code : FLOW_EIO;
    s->fsync_checked = s->addr.strict;
    flow_err rc = flow__redis_check_durability(s->c, &s->addr, s->addr.strict, err);
    if (rc != FLOW_OK) {
        redisFree(s->c);
        s->c = NULL;
    }
    return rc;
}

/* Run a command; a dropped connection (Redis restarted) is made again and
 * the command sent once more (*resent, when given, then says so). NULL with
 * `err` filled ("WHAT in store ...") on failure. */
redisReply *flow__rd_cmdv(struct rd_store *s, const char *what, flow_error *err, int argc,
                          const char **argv, const size_t *lens, bool *resent)
{
    if (resent)
        *resent = false;
    flow_error inner = {0};
    for (int attempt = 0;; attempt++) {
        if (!s->c && rd_connect(s, &inner) != FLOW_OK)
            break;
        redisReply *r = flow__redis_cmdv(s->c, &s->addr, &inner, argc, argv, lens);
        if (r || !s->c->err) /* an answer, or Redis refused the command */
            return r;
        redisFree(s->c);
        s->c = NULL;
        if (attempt)
            break;
        if (resent)
            *resent = true;
    }
    rd_fail(s, what, &inner, err);
    return NULL;
}

/* EVAL `script` with `nkeys` keys and `nargs` arguments (binary-safe). */
redisReply *flow__rd_eval(struct rd_store *s, const char *what, flow_error *err,
                          const char *script, int nkeys, const char *const *keys, int nargs,
                          const char *const *args, const size_t *arglens, bool *resent)
{
    int argc = 3 + nkeys + nargs;
    const char **argv = flow__malloc((size_t)argc * sizeof(*argv));
    size_t *lens = flow__malloc((size_t)argc * sizeof(*lens));
    redisReply *r = NULL;
    if (!argv || !lens) {
        flow__rd_nomem(s, what, err);
        goto out;
    }
    char nk[16];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[0] = "EVAL";
    argv[1] = script;
    argv[2] = nk;
    for (int i = 0; i < nkeys; i++)
        argv[3 + i] = keys[i];
    for (int i = 0; i < nargs; i++) {
        argv[3 + nkeys + i] = args[i];
        lens[3 + nkeys + i] = arglens ? arglens[i] : strlen(args[i]);
    }
    for (int i = 0; i < 3 + nkeys; i++)
        lens[i] = strlen(argv[i]);
    r = flow__rd_cmdv(s, what, err, argc, argv, lens, resent);
out:
    flow__free(argv);
    flow__free(lens);
    return r;
}

/* A reply Redis should not have given: the server is not what we expect. */
flow_err flow__rd_odd(struct rd_store *s, const char *what, redisReply *r, flow_error *err)
{
    freeReplyObject(r);
    return flow__error(err, FLOW_EIO, "%s in store '%s': unexpected reply from redis", what,
                       s->name);
}

/* The reply is an array whose first element is the string `status`. */
static bool rd_is(const redisReply *r, const char *status)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements >= 1 && r->element[0]->str &&
           !strcmp(r->element[0]->str, status);
}

/* An integer reply's value, or -1. */
static long long rd_int(const redisReply *r)
{
    return r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
}

/* EVAL `script` on run `id`: KEYS are P:run:ID and P:KIND:ID. */
static redisReply *rd_eval_run(struct rd_store *s, const char *id, const char *kind,
                               const char *what, const char *script, int nargs,
                               const char *const *args, flow_error *err)
{
    char keys[2][RD_KEY_MAX];
    rd_key(s, keys[0], "run", id);
    rd_key(s, keys[1], kind, id);
    const char *kp[] = {keys[0], keys[1]};
    return flow__rd_eval(s, what, err, script, 2, kp, nargs, args, NULL, NULL);
}

/* The same for a script that answers {0} when the run does not exist and
 * {1, ...} when it does: *out gets the reply in that case. */
static flow_err rd_eval_found(struct rd_store *s, const char *id, const char *kind,
                              const char *what, const char *script, redisReply **out,
                              flow_error *err)
{
    *out = NULL;
    redisReply *r = rd_eval_run(s, id, kind, what, script, 0, NULL, err);
    if (!r)
        return err ? err->code : FLOW_EIO;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1)
        return flow__rd_odd(s, what, r, err);
    if (rd_int(r->element[0]) != 1) {
        freeReplyObject(r);
        return rd_no_run(s, id, err);
    }
    *out = r;
    return FLOW_OK;
}

/* The six keys of run `id`, in the order of rd_lua_create / rd_lua_delete. */
struct rd_run_keys {
    char k[6][RD_KEY_MAX];
    const char *p[6];
};

static void rd_run_keys(const struct rd_store *s, const char *id, struct rd_run_keys *rk)
{
    static const char *const kinds[] = {"run", NULL, "journal", "lease", "ctl", "answers"};
    for (int i = 0; i < 6; i++) {
        if (kinds[i])
            rd_key(s, rk->k[i], kinds[i], id);
        else
            rd_key(s, rk->k[i], NULL, "runs");
        rk->p[i] = rk->k[i];
    }
}

/* ---- open / close ---------------------------------------------------------- */

static void rd_close(void *priv)
{
    struct rd_store *s = priv;
    if (!s)
        return;
    if (s->c)
        redisFree(s->c);
    flow__store_run_entries_free(&s->runs, NULL);
    flow__buf_cleanup(&s->buf);
    flow__free(s);
}

/* Check (or, unless NOCREATE, write) the store's format. */
static flow_err rd_format(struct rd_store *s, unsigned flags, flow_error *err)
{
    char key[RD_KEY_MAX];
    rd_key(s, key, NULL, "format");
    const char *what = "cannot open";
    const char *set[] = {"SET", key, "1", "NX"};
    if (!(flags & FLOW__STORE_OPEN_NOCREATE)) {
        redisReply *r = flow__rd_cmdv(s, what, err, 4, set, NULL, NULL);
        if (!r)
            return err ? err->code : FLOW_EIO;
        freeReplyObject(r);
    }
    const char *get[] = {"GET", key};
    redisReply *r = flow__rd_cmdv(s, what, err, 2, get, NULL, NULL);
    if (!r)
        return err ? err->code : FLOW_EIO;
    flow_err rc = FLOW_OK;
    char *end = NULL;
    long v = r->type == REDIS_REPLY_STRING ? strtol(r->str, &end, 10) : 0;
    if (r->type == REDIS_REPLY_NIL)
        rc = flow__error(err, FLOW_ENOTFOUND, "no store '%s'", s->name);
    else if (!end || *end || v < 1)
        rc = flow__error(err, FLOW_EPARSE,
                         "store '%s' is not a libflow store (its key '%s' is damaged)", s->name,
                         key);
    else if (v > FLOW__STORE_FORMAT)
        rc = flow__store_newer_format(err, s->name, v);
    freeReplyObject(r);
    return rc;
}

static flow_err rd_open(const char *url_rest, unsigned flags, void **priv, flow_error *err)
{
    *priv = NULL;
    struct rd_store *s = flow__calloc(1, sizeof(*s));
    char *url = flow__asprintf("redis:%s", url_rest);
    if (!s || !url) {
        flow__free(s);
        flow__free(url);
        return flow__error(err, FLOW_ENOMEM, "out of memory opening store 'redis:%s'", url_rest);
    }
    flow__strmap_init(&s->runs);
    flow__buf_init(&s->buf, RD_BATCH_MAX);
    flow__lease_holder(s->holder, sizeof(s->holder));
    flow_err rc = flow__redis_parse(url, &s->addr, err);
    flow__free(url);
    if (rc == FLOW_OK) {
        snprintf(s->name, sizeof(s->name), "%s?prefix=%s", s->addr.shown, s->addr.prefix);
        rc = rd_connect(s, err);
    }
    if (rc == FLOW_OK)
        rc = rd_format(s, flags, err);
    if (rc != FLOW_OK) {
        rd_close(s);
        return rc;
    }
    *priv = s;
    return FLOW_OK;
}

/* ---- runs ------------------------------------------------------------------ */

/* Numbers as text that reads back to the same double. */
static void rd_num(char *out, size_t size, double v)
{
    snprintf(out, size, "%.17g", v);
}

static flow_err rd_run_create(void *priv, const struct flow__run_meta *meta, flow_error *err)
{
    struct rd_store *s = priv;
    flow_err rc = flow__store_check_id(s->name, meta->id, err);
    if (rc != FLOW_OK)
        return rc;
    char what[160];
    snprintf(what, sizeof(what), "cannot create run '%s'", meta->id);
    /* s->buf: the inputs as the journal's payloads are kept (compress.h). */
    flow__buf_reset(&s->buf);
    if (meta->inputs && flow__payload_append(&s->buf, meta->inputs, NULL) != FLOW_OK)
        return flow__rd_nomem(s, what, err);
    const char *inputs = meta->inputs ? s->buf.data : NULL;
    char status[16], created[40], ended[40];
    snprintf(status, sizeof(status), "%d", meta->status);
    rd_num(created, sizeof(created), meta->created_at);
    rd_num(ended, sizeof(ended), meta->ended_at);
    const char *fields[][2] = {
        {"status", status},       {"created_at", created}, {"ended_at", ended},
        {"flow", meta->flow},     {"version", meta->version}, {"def_hash", meta->def_hash},
        {"source", meta->source}, {"parent", meta->parent}, {"inputs", inputs},
    };
    const char *args[2 + 2 * FLOW__ARRAY_LEN(fields)];
    size_t lens[FLOW__ARRAY_LEN(args)];
    int nargs = 0;
    args[nargs++] = meta->id;
    args[nargs++] = created;
    for (size_t i = 0; i < FLOW__ARRAY_LEN(fields); i++) {
        if (!fields[i][1])
            continue; /* absent: NULL */
        args[nargs++] = fields[i][0];
        args[nargs++] = fields[i][1];
    }
    for (int i = 0; i < nargs; i++) /* the inputs may hold NULs (deflated) */
        lens[i] = args[i] == inputs ? s->buf.len : strlen(args[i]);
    struct rd_run_keys rk;
    rd_run_keys(s, meta->id, &rk);
    redisReply *r = flow__rd_eval(s, what, err, rd_lua_create, 6, rk.p, nargs, args, lens, NULL);
    if (s->buf.cap > ((size_t)1 << 22)) /* as after a large batch */
        flow__buf_cleanup(&s->buf);
    if (!r)
        return err ? err->code : FLOW_EIO;
    long long done = rd_int(r);
    if (done < 0)
        return flow__rd_odd(s, what, r, err);
    freeReplyObject(r);
    if (!done)
        return flow__error(err, FLOW_EEXISTS, "run '%s' already exists in store '%s'", meta->id,
                           s->name);
    struct rd_run *c = flow__strmap_get(&s->runs, meta->id);
    if (c) {
        c->next_seq = 0;
        c->leased = false; /* a new run: no lease of ours yet */
    }
    return FLOW_OK;
}

static flow_err rd_dup_field(const redisReply *v, char **out)
{
    *out = flow__strndup(v->str, v->len);
    return *out ? FLOW_OK : FLOW_ENOMEM;
}

/* Fill `out` (zeroed) for run `id` from its hash, as HGETALL gives it. */
static flow_err rd_meta_from(const char *id, const redisReply *h, struct flow__run_meta *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", id);
    flow_err rc = FLOW_OK;
    for (size_t i = 0; rc == FLOW_OK && i + 1 < h->elements; i += 2) {
        const char *f = h->element[i]->str;
        const redisReply *v = h->element[i + 1];
        if (!f || !v->str)
            continue;
        if (!strcmp(f, "status"))
            out->status = (int)strtol(v->str, NULL, 10);
        else if (!strcmp(f, "created_at"))
            out->created_at = strtod(v->str, NULL);
        else if (!strcmp(f, "ended_at"))
            out->ended_at = strtod(v->str, NULL);
        else if (!strcmp(f, "flow"))
            rc = rd_dup_field(v, &out->flow);
        else if (!strcmp(f, "version"))
            rc = rd_dup_field(v, &out->version);
        else if (!strcmp(f, "def_hash"))
            rc = rd_dup_field(v, &out->def_hash);
        else if (!strcmp(f, "source"))
            rc = rd_dup_field(v, &out->source);
        else if (!strcmp(f, "parent"))
            rc = rd_dup_field(v, &out->parent);
        else if (!strcmp(f, "inputs"))
            rc = flow__payload_load(v->str, v->len, &out->inputs);
    }
    if (rc != FLOW_OK)
        flow__run_meta_cleanup(out);
    return rc;
}

static flow_err rd_meta_fail(struct rd_store *s, const char *id, flow_err rc, flow_error *err)
{
    return flow__error(err, rc, "cannot read run '%s' in store '%s': %s", id, s->name,
                       rc == FLOW_EPARSE ? "its inputs are damaged" : flow__payload_why(rc));
}

static flow_err rd_run_get(void *priv, const char *id, struct flow__run_meta *out,
                           flow_error *err)
{
    struct rd_store *s = priv;
    memset(out, 0, sizeof(*out));
    char key[RD_KEY_MAX], what[160];
    rd_key(s, key, "run", id);
    snprintf(what, sizeof(what), "cannot read run '%s'", id);
    const char *argv[] = {"HGETALL", key};
    redisReply *r = flow__rd_cmdv(s, what, err, 2, argv, NULL, NULL);
    if (!r)
        return err ? err->code : FLOW_EIO;
    if (r->type != REDIS_REPLY_ARRAY)
        return flow__rd_odd(s, what, r, err);
    flow_err rc = r->elements ? rd_meta_from(id, r, out) : rd_no_run(s, id, err);
    if (rc != FLOW_OK && rc != FLOW_ENOTFOUND)
        rd_meta_fail(s, id, rc, err);
    freeReplyObject(r);
    return rc;
}

/* Call `cb` for the runs ids[0..n) that still exist. */
static flow_err rd_list_chunk(struct rd_store *s, redisReply *const *ids, size_t n,
                              flow__store_run_cb cb, void *udata, flow_error *err)
{
    const char *what = "cannot list the runs";
    char(*keys)[RD_KEY_MAX] = flow__malloc(n * sizeof(*keys));
    const char **kp = flow__malloc(n * sizeof(*kp));
    flow_err rc = FLOW_OK;
    redisReply *r = NULL;
    if (!keys || !kp) {
        rc = flow__rd_nomem(s, what, err);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        rd_key(s, keys[i], "run", ids[i]->str ? ids[i]->str : "");
        kp[i] = keys[i];
    }
    r = flow__rd_eval(s, what, err, rd_lua_metas, (int)n, kp, 0, NULL, NULL, NULL);
    if (!r) {
        rc = err ? err->code : FLOW_EIO;
        goto out;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        rc = flow__rd_odd(s, what, r, err);
        r = NULL;
        goto out;
    }
    for (size_t i = 0; i < n && rc == FLOW_OK; i++) {
        if (r->element[i]->type != REDIS_REPLY_ARRAY || !r->element[i]->elements)
            continue; /* deleted meanwhile */
        struct flow__run_meta meta;
        rc = rd_meta_from(ids[i]->str, r->element[i], &meta);
        if (rc != FLOW_OK) {
            rd_meta_fail(s, ids[i]->str, rc, err);
            break;
        }
        rc = cb(udata, &meta);
        flow__run_meta_cleanup(&meta);
    }
out:
    if (r)
        freeReplyObject(r);
    flow__free(keys);
    flow__free(kp);
    return rc;
}

static flow_err rd_run_list(void *priv, flow__store_run_cb cb, void *udata, flow_error *err)
{
    struct rd_store *s = priv;
    char key[RD_KEY_MAX];
    rd_key(s, key, NULL, "runs");
    /* A sorted set orders equal scores by member: created_at, then id. */
    const char *argv[] = {"ZRANGE", key, "0", "-1"};
    redisReply *r = flow__rd_cmdv(s, "cannot list the runs", err, 4, argv, NULL, NULL);
    if (!r)
        return err ? err->code : FLOW_EIO;
    if (r->type != REDIS_REPLY_ARRAY)
        return flow__rd_odd(s, "cannot list the runs", r, err);
    flow_err rc = FLOW_OK;
    for (size_t i = 0; i < r->elements && rc == FLOW_OK; i += RD_LIST_CHUNK) {
        size_t n = r->elements - i < RD_LIST_CHUNK ? r->elements - i : RD_LIST_CHUNK;
        rc = rd_list_chunk(s, r->element + i, n, cb, udata, err);
    }
    freeReplyObject(r);
    return rc;
}

/* Run a script that answers 1 (done) or 0 (no such run). */
static flow_err rd_run_script(struct rd_store *s, const char *id, const char *what,
                              const char *script, int nkeys, const char *const *keys, int nargs,
                              const char *const *args, flow_error *err)
{
    redisReply *r = flow__rd_eval(s, what, err, script, nkeys, keys, nargs, args, NULL, NULL);
    if (!r)
        return err ? err->code : FLOW_EIO;
    long long done = rd_int(r);
    if (done < 0)
        return flow__rd_odd(s, what, r, err);
    freeReplyObject(r);
    return done ? FLOW_OK : rd_no_run(s, id, err);
}

static flow_err rd_run_set_status(void *priv, const char *id, int status, double ended_at,
                                  flow_error *err)
{
    struct rd_store *s = priv;
    char key[RD_KEY_MAX], what[160], st[16], end[40];
    rd_key(s, key, "run", id);
    snprintf(what, sizeof(what), "cannot set the status of run '%s'", id);
    snprintf(st, sizeof(st), "%d", status);
    rd_num(end, sizeof(end), ended_at);
    const char *keys[] = {key};
    const char *args[] = {st, end};
    return rd_run_script(s, id, what, rd_lua_status, 1, keys, 2, args, err);
}

static flow_err rd_run_delete(void *priv, const char *id, flow_error *err)
{
    struct rd_store *s = priv;
    char what[160];
    snprintf(what, sizeof(what), "cannot delete run '%s'", id);
    struct rd_run_keys rk;
    rd_run_keys(s, id, &rk);
    const char *args[] = {id};
    flow_err rc = rd_run_script(s, id, what, rd_lua_delete, 6, rk.p, 1, args, err);
    struct rd_run *c = flow__strmap_get(&s->runs, id);
    if (c) {
        c->next_seq = -1;
        c->leased = false;
    }
    return rc;
}

/* ---- journal records ------------------------------------------------------- */

/* Encode `recs` into s->buf and point args[i] / lens[i] at record i. */
static flow_err rd_encode(struct rd_store *s, const struct flow__jrec *recs, size_t n,
                          const char **args, size_t *lens)
{
    flow__buf_reset(&s->buf);
    size_t *ends = (size_t *)lens; /* offsets first, pointers once the buffer stops moving */
    for (size_t i = 0; i < n; i++) {
        char fixed[FLOW__JREC_FIXED];
        flow__jrec_put_fixed(fixed, &recs[i]);
        flow_err rc = flow__buf_append(&s->buf, fixed, sizeof(fixed));
        if (rc == FLOW_OK && recs[i].payload)
            rc = flow__payload_append(&s->buf, recs[i].payload, NULL);
        if (rc != FLOW_OK)
            return rc;
        ends[i] = s->buf.len;
    }
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        size_t end = ends[i];
        args[i] = s->buf.data + start;
        lens[i] = end - start;
        start = end;
    }
    return FLOW_OK;
}

/* FLOW__STORE_SYNC on a store that is not strict: the server must fsync
 * every write (appendfsync always), which is checked once per connection. */
static flow_err rd_check_sync(struct rd_store *s, const char *what, flow_error *err)
{
    if (s->fsync_checked)
        return FLOW_OK;
    if (!s->c) {
        flow_error inner = {0};
        if (rd_connect(s, &inner) != FLOW_OK)
            return rd_fail(s, what, &inner, err);
    }
    flow_err rc = flow__redis_check_durability(s->c, &s->addr, true, err);
    s->fsync_checked = rc == FLOW_OK;
    return rc;
}

/* The handle's idea of where run `id`'s journal ends (-1: unknown). */
static struct rd_run *rd_run_cache(struct rd_store *s, const char *id)
{
    bool created;
    struct rd_run *c = flow__store_run_entry(&s->runs, id, sizeof(*c), &created);
    if (c && created)
        c->next_seq = -1;
    return c;
}

/* One script per batch: the run exists, the lease is ours, the journal is
 * `*expect` long -- then the records go in. A batch sent again after the
 * connection dropped may have gone in the first time: the length says so. */
static flow_err rd_append_script(struct rd_store *s, const char *run_id, const char **args,
                                 size_t *lens, size_t nargs, int64_t *expect, bool known,
                                 bool leased, bool *again, const char *what, flow_error *err)
{
    char keys[3][RD_KEY_MAX], seq[32];
    rd_key(s, keys[0], "run", run_id);
    rd_key(s, keys[1], "journal", run_id);
    rd_key(s, keys[2], "lease", run_id);
    const char *kp[] = {keys[0], keys[1], keys[2]};
    snprintf(seq, sizeof(seq), "%lld", (long long)*expect);
    args[0] = s->holder;
    lens[0] = strlen(s->holder);
    args[1] = seq;
    lens[1] = strlen(seq);
    args[2] = leased ? "1" : "0";
    lens[2] = 1;
    bool resent;
    *again = false;
    redisReply *r =
        flow__rd_eval(s, what, err, rd_lua_append, 3, kp, (int)nargs, args, lens, &resent);
    if (!r)
        return err ? err->code : FLOW_EIO;
    flow_err rc = FLOW_OK;
    int64_t batch = (int64_t)nargs - 3;
    if (rd_is(r, "ok")) {
        *expect += batch;
    } else if (rd_is(r, "norun")) {
        rc = rd_no_run(s, run_id, err);
    } else if (rd_is(r, "lease") && r->elements == 3 && r->element[1]->str) {
        flow_error why = {0};
        if (r->element[1]->str[0])
            flow__lease_busy(&why, run_id, r->element[1]->str, 0, 0);
        else
            snprintf(why.message, sizeof(why.message), "nobody holds it any more");
        rc = flow__error(err, FLOW_EBUSY, "%s in store '%s': lost the lease: %.300s", what,
                         s->name, why.message);
    } else if (rd_is(r, "seq") && r->elements == 2 && r->element[1]->str) {
        int64_t have = strtoll(r->element[1]->str, NULL, 10);
        if (resent && have == *expect + batch) {
            *expect = have; /* the first send went in */
        } else if (known && leased) {
            /* We held the lease and wrote up to *expect, and someone else
             * wrote since: this writer lost the run, whatever the lease
             * says now. (Without a lease, writers may take turns.) */
            rc = flow__error(err, FLOW_EBUSY,
                             "%s in store '%s': another process wrote to its journal (it has %lld "
                             "records, this runner wrote %lld): the run was taken over",
                             what, s->name, (long long)have, (long long)*expect);
        } else {
            *expect = have;
            *again = true;
        }
    } else {
        return flow__rd_odd(s, what, r, err);
    }
    freeReplyObject(r);
    return rc;
}

static flow_err rd_append(void *priv, const char *run_id, const struct flow__jrec *recs,
                          size_t n, unsigned flags, flow_error *err)
{
    struct rd_store *s = priv;
    if (n == 0)
        return FLOW_OK;
    char what[160];
    snprintf(what, sizeof(what), "cannot append to run '%s'", run_id);
    if (n > (size_t)INT32_MAX - 8)
        return flow__error(err, FLOW_ELIMIT, "%s in store '%s': batch too large", what, s->name);
    flow_err rc = (flags & FLOW__STORE_SYNC) ? rd_check_sync(s, what, err) : FLOW_OK;
    if (rc != FLOW_OK)
        return rc;
    const char **args = flow__malloc((n + 3) * sizeof(*args));
    size_t *lens = flow__malloc((n + 3) * sizeof(*lens));
    struct rd_run *c = rd_run_cache(s, run_id);
    int64_t expect = -1;
    if (!args || !lens) {
        rc = flow__rd_nomem(s, what, err);
        goto out;
    }
    rc = rd_encode(s, recs, n, args + 3, lens + 3);
    if (rc != FLOW_OK) {
        flow__error(err, rc, "%s in store '%s': %s", what, s->name,
                    rc == FLOW_ELIMIT ? "batch too large" : "out of memory");
        goto out;
    }
    /* Unknown: guess 0; a wrong guess costs one more round trip. */
    bool known = c && c->next_seq >= 0;
    expect = known ? c->next_seq : 0;
    bool again = true;
    for (int tries = 0; again && tries < RD_APPEND_TRIES && rc == FLOW_OK; tries++)
        rc = rd_append_script(s, run_id, args, lens, n + 3, &expect, known, c && c->leased,
                              &again, what, err);
    if (rc == FLOW_OK && again)
        rc = flow__error(err, FLOW_EBUSY,
                         "%s in store '%s': another process keeps appending to it", what,
                         s->name);
out:
    if (c)
        c->next_seq = rc == FLOW_OK ? expect : -1;
    flow__free(args);
    flow__free(lens);
    if (s->buf.cap > ((size_t)1 << 22))
        flow__buf_cleanup(&s->buf);
    return rc;
}

/* Does run `id` exist? FLOW_OK, or its error. */
static flow_err rd_run_exists(struct rd_store *s, const char *id, const char *what,
                              flow_error *err)
{
    char key[RD_KEY_MAX];
    rd_key(s, key, "run", id);
    const char *argv[] = {"EXISTS", key};
    redisReply *r = flow__rd_cmdv(s, what, err, 2, argv, NULL, NULL);
    if (!r)
        return err ? err->code : FLOW_EIO;
    long long n = rd_int(r);
    if (n < 0)
        return flow__rd_odd(s, what, r, err);
    freeReplyObject(r);
    return n ? FLOW_OK : rd_no_run(s, id, err);
}

/* Hand records `first`.. of one LRANGE reply to `cb`. */
static flow_err rd_read_chunk(struct rd_store *s, const char *run_id, const redisReply *r,
                              uint64_t first, struct flow__payload_memo *memo,
                              flow__store_rec_cb cb, void *udata, flow_error *err)
{
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        struct flow__jrec rec;
        json_t *root = NULL;
        flow_err rc = e->str ? flow__jrec_decode(e->str, e->len, &rec, &root, memo) : FLOW_EPARSE;
        if (rc != FLOW_OK)
            return flow__error(err, rc, "cannot read record %llu of run '%s' in store '%s': %s",
                               (unsigned long long)(first + i), run_id, s->name,
                               rc == FLOW_EPARSE ? "bad record" : flow__payload_why(rc));
        rc = cb(udata, first + i, &rec);
        json_decref(root);
        if (rc != FLOW_OK)
            return rc;
    }
    return FLOW_OK;
}

static flow_err rd_read(void *priv, const char *run_id, uint64_t from_seq, flow__store_rec_cb cb,
                        void *udata, flow_error *err)
{
    struct rd_store *s = priv;
    char what[160], key[RD_KEY_MAX];
    snprintf(what, sizeof(what), "cannot read the journal of run '%s'", run_id);
    flow_err rc = rd_run_exists(s, run_id, what, err);
    if (rc != FLOW_OK || from_seq > (uint64_t)INT64_MAX - RD_READ_CHUNK)
        return rc;
    rd_key(s, key, "journal", run_id);
    struct flow__payload_memo memo = {0};
    for (uint64_t at = from_seq; rc == FLOW_OK;) {
        char lo[32], hi[32];
        snprintf(lo, sizeof(lo), "%llu", (unsigned long long)at);
        snprintf(hi, sizeof(hi), "%llu", (unsigned long long)(at + RD_READ_CHUNK - 1));
        const char *argv[] = {"LRANGE", key, lo, hi};
        redisReply *r = flow__rd_cmdv(s, what, err, 4, argv, NULL, NULL);
        if (!r) {
            rc = err ? err->code : FLOW_EIO;
            break;
        }
        if (r->type != REDIS_REPLY_ARRAY) {
            rc = flow__rd_odd(s, what, r, err);
            break;
        }
        rc = rd_read_chunk(s, run_id, r, at, &memo, cb, udata, err);
        size_t got = r->elements;
        freeReplyObject(r);
        if (got < RD_READ_CHUNK)
            break;
        at += got;
    }
    flow__payload_memo_cleanup(&memo);
    return rc;
}

/* ---- leases ------------------------------------------------------------------ */

static flow_err rd_lease_acquire(void *priv, const char *id, const char *holder, double now,
                                 double ttl, flow_error *err)
{
    struct rd_store *s = priv;
    char what[160], snow[40], sexp[40];
    snprintf(what, sizeof(what), "cannot take the lease on run '%s'", id);
    rd_num(snow, sizeof(snow), now);
    rd_num(sexp, sizeof(sexp), now + ttl);
    char dead[300] = "", dead_exp[64] = "";
    for (int tries = 0; tries < RD_LEASE_TRIES; tries++) {
        const char *args[] = {holder, snow, sexp, dead, dead_exp};
        redisReply *r = rd_eval_run(s, id, "lease", what, rd_lua_lease_take, 5, args, err);
        if (!r)
            return err ? err->code : FLOW_EIO;
        if (rd_is(r, "ok") || rd_is(r, "norun")) {
            bool ok = rd_is(r, "ok");
            freeReplyObject(r);
            if (!ok)
                return rd_no_run(s, id, err);
            snprintf(s->holder, sizeof(s->holder), "%s", holder);
            struct rd_run *c = rd_run_cache(s, id);
            if (c)
                c->leased = true; /* from now on, a lease that is gone is lost */
            return FLOW_OK;
        }
        if (!rd_is(r, "busy") || r->elements != 3 || !r->element[1]->str || !r->element[2]->str)
            return flow__rd_odd(s, what, r, err);
        snprintf(dead, sizeof(dead), "%s", r->element[1]->str);
        snprintf(dead_exp, sizeof(dead_exp), "%s", r->element[2]->str);
        freeReplyObject(r);
        double expiry = strtod(dead_exp, NULL);
        if (flow__lease_is_live(dead, expiry, now))
            return flow__lease_busy(err, id, dead, expiry, now);
        /* its holder is gone: take it over, unless someone else did first */
    }
    return flow__lease_busy(err, id, dead, strtod(dead_exp, NULL), now);
}

static flow_err rd_lease_release(void *priv, const char *id, const char *holder, flow_error *err)
{
    struct rd_store *s = priv;
    char what[160], key[RD_KEY_MAX];
    snprintf(what, sizeof(what), "cannot release the lease on run '%s'", id);
    rd_key(s, key, "lease", id);
    const char *keys[] = {key};
    const char *args[] = {holder};
    struct rd_run *c = rd_run_cache(s, id);
    if (c)
        c->leased = false;
    redisReply *r = flow__rd_eval(s, what, err, rd_lua_lease_drop, 1, keys, 1, args, NULL, NULL);
    if (!r)
        return err ? err->code : FLOW_EIO;
    freeReplyObject(r);
    return FLOW_OK;
}

static flow_err rd_lease_get(void *priv, const char *id, double now, char **holder,
                             flow_error *err)
{
    struct rd_store *s = priv;
    *holder = NULL;
    char what[160];
    snprintf(what, sizeof(what), "cannot read the lease on run '%s'", id);
    redisReply *r;
    flow_err rc = rd_eval_found(s, id, "lease", what, rd_lua_lease_get, &r, err);
    if (rc != FLOW_OK)
        return rc;
    if (r->elements == 3 && r->element[1]->str && r->element[2]->str &&
        flow__lease_is_live(r->element[1]->str, strtod(r->element[2]->str, NULL), now) &&
        !(*holder = flow__strdup(r->element[1]->str)))
        rc = flow__rd_nomem(s, what, err);
    freeReplyObject(r);
    return rc;
}

/* ---- control requests ---------------------------------------------------------- */

static flow_err rd_control_put(void *priv, const char *id, const char *kind, const char *arg,
                               flow_error *err)
{
    struct rd_store *s = priv;
    char what[160], keys[2][RD_KEY_MAX];
    snprintf(what, sizeof(what), "cannot send '%s' to run '%s'", kind, id);
    rd_key(s, keys[0], "run", id);
    rd_key(s, keys[1], "ctl", id);
    json_t *req = json_pack("[s,s?]", kind, arg);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!text)
        return flow__rd_nomem(s, what, err);
    const char *kp[] = {keys[0], keys[1]};
    const char *args[] = {text};
    flow_err rc = rd_run_script(s, id, what, rd_lua_ctl_put, 2, kp, 1, args, err);
    flow__json_free_text(text);
    return rc;
}

static flow_err rd_control_take(void *priv, const char *id, char **kind, char **arg,
                                flow_error *err)
{
    struct rd_store *s = priv;
    *kind = *arg = NULL;
    char what[160], key[RD_KEY_MAX];
    snprintf(what, sizeof(what), "cannot take a request for run '%s'", id);
    rd_key(s, key, "ctl", id);
    const char *argv[] = {"LPOP", key};
    redisReply *r = flow__rd_cmdv(s, what, err, 2, argv, NULL, NULL);
    if (!r)
        return err ? err->code : FLOW_EIO;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return FLOW_OK;
    }
    if (r->type != REDIS_REPLY_STRING)
        return flow__rd_odd(s, what, r, err);
    json_t *req = NULL;
    flow_err rc = flow__json_load(r->str, r->len, 0, &req, NULL);
    freeReplyObject(r);
    const char *k = json_string_value(json_array_get(req, 0));
    const char *a = json_string_value(json_array_get(req, 1));
    if (rc == FLOW_OK && !k)
        rc = FLOW_EPARSE;
    if (rc == FLOW_OK && (!(*kind = flow__strdup(k)) || (a && !(*arg = flow__strdup(a))))) {
        flow__free(*kind);
        *kind = NULL;
        rc = FLOW_ENOMEM;
    }
    json_decref(req);
    if (rc != FLOW_OK)
        return flow__error(err, rc, "%s in store '%s': %s", what, s->name,
                           rc == FLOW_EPARSE ? "a damaged request (dropped)" : "out of memory");
    return FLOW_OK;
}

/* ---- answers ------------------------------------------------------------------ */

static flow_err rd_answer_claim(void *priv, const char *run_id, const char *request,
                                json_t *answer, double not_after, json_t **winner,
                                flow_error *err)
{
    struct rd_store *s = priv;
    char what[300], na[40];
    snprintf(what, sizeof(what), "cannot answer request '%.100s' of run '%s'", request, run_id);
    rd_num(na, sizeof(na), not_after);
    char *text = json_dumps(answer, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return flow__rd_nomem(s, what, err);
    const char *args[] = {request, text, na};
    redisReply *r = rd_eval_run(s, run_id, "answers", what, rd_lua_claim, 3, args, err);
    flow__json_free_text(text);
    if (!r)
        return err ? err->code : FLOW_EIO;
    flow_err rc = FLOW_OK;
    if (rd_is(r, "norun")) {
        rc = rd_no_run(s, run_id, err);
    } else if (rd_is(r, "late")) {
        rc = flow__store_answer_expired(err, run_id, request, not_after);
    } else if (rd_is(r, "taken") && r->elements == 2 && r->element[1]->str) {
        json_t *first = NULL;
        rc = flow__json_load(r->element[1]->str, r->element[1]->len, JSON_DECODE_ANY, &first,
                             NULL);
        if (rc != FLOW_OK)
            flow__error(err, rc, "%s in store '%s': %s", what, s->name,
                        rc == FLOW_EPARSE ? "the recorded answer is damaged" : "out of memory");
        else
            rc = flow__store_answer_taken(err, run_id, request, first);
        if (winner && rc == FLOW_EEXISTS)
            *winner = first;
        else
            json_decref(first);
    } else if (!rd_is(r, "ok")) {
        return flow__rd_odd(s, what, r, err);
    }
    freeReplyObject(r);
    return rc;
}

static flow_err rd_answer_list(void *priv, const char *run_id, json_t **out, flow_error *err)
{
    struct rd_store *s = priv;
    char what[160];
    snprintf(what, sizeof(what), "cannot read the answers of run '%s'", run_id);
    redisReply *r;
    flow_err rc = rd_eval_found(s, run_id, "answers", what, rd_lua_answers, &r, err);
    if (rc != FLOW_OK)
        return rc;
    const redisReply *h = r->elements == 2 ? r->element[1] : NULL;
    if (!h || h->type != REDIS_REPLY_ARRAY)
        return flow__rd_odd(s, what, r, err);
    json_t *all = json_object();
    rc = all ? FLOW_OK : FLOW_ENOMEM;
    for (size_t i = 0; rc == FLOW_OK && i + 1 < h->elements; i += 2) {
        json_t *a = NULL;
        const redisReply *k = h->element[i], *v = h->element[i + 1];
        rc = k->str && v->str ? flow__json_load(v->str, v->len, JSON_DECODE_ANY, &a, NULL)
                              : FLOW_EPARSE;
        if (rc == FLOW_OK && json_object_set_new(all, k->str, a) != 0)
            rc = FLOW_ENOMEM;
    }
    freeReplyObject(r);
    if (rc != FLOW_OK) {
        json_decref(all);
        return flow__error(err, rc, "%s in store '%s': %s", what, s->name,
                           rc == FLOW_EPARSE ? "an answer is damaged" : "out of memory");
    }
    *out = all;
    return FLOW_OK;
}

const struct flow__store_ops flow__store_redis_ops = {
    .version = 4,
    .scheme = "redis",
    .caps = FLOW__STORE_CAP_DURABLE | FLOW__STORE_CAP_CROSS_PROCESS,
    .open = rd_open,                     /* connect, eviction/fsync checks, format key */
    .close = rd_close,                   /* the connection and the cache */
    .run_create = rd_run_create,         /* script: hash + sorted set, EEXISTS */
    .run_get = rd_run_get,               /* HGETALL */
    .run_list = rd_run_list,             /* ZRANGE, then the hashes in chunks */
    .run_set_status = rd_run_set_status, /* script: HSET if the run exists */
    .append = rd_append,                 /* script: lease fence + expected seq + RPUSH */
    .commit = NULL,                      /* every append commits */
    .read = rd_read,                     /* LRANGE in chunks */
    .run_delete = rd_run_delete,         /* script: every key of the run */
    .lease_acquire = rd_lease_acquire,   /* script; dead pids taken over by compare-and-set */
    .lease_release = rd_lease_release,   /* script: deleted only if ours */
    .lease_get = rd_lease_get,           /* live per flow__lease_is_live */
    .control_put = rd_control_put,       /* script: RPUSH if the run exists */
    .control_take = rd_control_take,     /* LPOP */
    .answer_claim = rd_answer_claim,     /* script: HGET, TIME, HSET */
    .answer_list = rd_answer_list,       /* script: HGETALL */
    .slot_acquire = flow__rd_slot_acquire, /* script; dead pids judged here, then again */
    .slot_release = flow__rd_slot_release, /* script: HDEL only if ours */
    .slot_renew = flow__rd_slot_renew,     /* the holder's set, then a script */
    .slot_list = flow__rd_slot_list,       /* HGETALL; every key: the index, then a script */
    .rate_take = flow__rd_rate_take,       /* script: trim, count, ZADD */
    .slot_contended = flow__rd_slot_contended, /* HGETALL of the marks, pids judged here */
    .cache_get = flow__rd_cache_get,           /* GET of P:cache:N */
    .cache_put = flow__rd_cache_put,           /* SET ... PX: Redis drops it when it expires */
    .cache_gc = flow__rd_cache_gc,             /* SCAN and DEL (with `all`; else nothing) */
};
