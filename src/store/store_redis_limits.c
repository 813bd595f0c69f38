/* store_redis_limits.c -- the Redis store's limits (docs/internals/limits.md):
 * the slots of concurrency keys and the starts of rate keys, under the
 * store's prefix P:
 *
 *   P:slots:KEY       hash: the held slots of KEY: N -> holder, N:e -> its
 *                     lease's expiry, N:o -> owner (absent: none), N:t ->
 *                     the call that took it
 *   P:slotholders:H   set: "N KEY" for each slot holder H may hold (where
 *                     renew looks)
 *   P:slotkeys        set: the keys that may have held slots (slot_list)
 *   P:slotwants:KEY   hash: holder -> the expiry of its mark that it waits
 *                     for slots of KEY
 *   P:rate:KEY        sorted set: the starts of rate key KEY, by time
 *
 * Taking slots and starting are one script each (Redis runs a script
 * alone). A slot's holder is live until its lease expires, or at once when
 * it is a process of this host that is gone, which only the caller can
 * tell: the script answers with the holders it found busy, the caller
 * judges their pids and runs it again naming the dead ones, which it takes
 * only if they still hold exactly what was judged. Every key gets a TTL
 * past its leases and windows, so that the keys of limits nobody uses any
 * more go away by themselves. */
#include "util/compat.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/redis_int.h"
#include "store/store.h"

#include "util/alloc.h"
#include "util/error.h"
#include "util/json.h"
#include "util/strmap.h"
#include "util/vec.h"

#define RD_SLOT_TRIES 4       /* rounds of judging the pids of busy slots' holders */
#define RD_LIMIT_GRACE_S 60.0 /* a limit's keys outlive its last lease or window by this */

/* ---- scripts ------------------------------------------------------------- */

/* keep(k, ms): key k lasts ms milliseconds more at least, never less (it
 * may hold another's longer lease). */
#define RD_LUA_KEEP                                                                              \
    "local function keep(k, ms)\n"                                                               \
    "  local t = redis.call('PTTL', k)\n"                                                        \
    "  if t ~= -2 and t < tonumber(ms) then redis.call('PEXPIRE', k, ms) end\n"                  \
    "end\n"

/* KEYS: slots, holder's set, index of keys, demand marks. ARGV: holder,
 * owner, '1' when there is one, now, expiry, limit, want, key, ttl in ms, a
 * token no other call has, the demand mark's expiry, its hash's ttl in ms,
 * then (slot, holder, expiry) of each holder the caller found dead. Takes the lowest free slots: held by nobody, expired, or still
 * held by a dead holder the caller named (flow__lease_is_live judges pids,
 * which a script cannot). {taken, busy}: busy is (slot, holder, expiry) of
 * each live-looking one below the last taken, for the caller to judge. At
 * most held + want turns. Each slot keeps the token of the call that took
 * it (N:t): the same call sent again after a dropped connection gets the
 * slots it took the first time, not more. */
static const char rd_lua_slot_take[] = RD_LUA_KEEP
    "local k, now, want = KEYS[1], tonumber(ARGV[4]), tonumber(ARGV[7])\n"
    "local dead, held, got, busy = {}, {}, {}, {}\n"
    "for i = 13, #ARGV, 3 do dead[ARGV[i]] = ARGV[i + 1] .. '\\n' .. ARGV[i + 2] end\n"
    "local all = redis.call('HGETALL', k)\n"
    "for i = 1, #all, 2 do\n"
    "  held[all[i]] = all[i + 1]\n"
    "  if all[i + 1] == ARGV[10] and string.sub(all[i], -2) == ':t' then\n"
    "    got[#got + 1] = string.sub(all[i], 1, -3)\n"
    "  end\n"
    "end\n"
    "if #got > 0 then return {got, busy} end\n"
    "local n = 0\n"
    "while n < tonumber(ARGV[6]) and #got < want do\n"
    "  local f = tostring(n)\n"
    "  local h, e = held[f], held[f .. ':e'] or '0'\n"
    "  if h and tonumber(e) > now and dead[f] ~= h .. '\\n' .. e then\n"
    "    busy[#busy + 1] = f; busy[#busy + 1] = h; busy[#busy + 1] = e\n"
    "  else got[#got + 1] = f end\n"
    "  n = n + 1\n"
    "end\n"
    "for _, f in ipairs(got) do\n"
    "  redis.call('HSET', k, f, ARGV[1], f .. ':e', ARGV[5], f .. ':t', ARGV[10])\n"
    "  if ARGV[3] == '1' then redis.call('HSET', k, f .. ':o', ARGV[2])\n"
    "  else redis.call('HDEL', k, f .. ':o') end\n"
    "  redis.call('SADD', KEYS[2], f .. ' ' .. ARGV[8])\n"
    "end\n"
    "if #got > 0 then\n"
    "  redis.call('SADD', KEYS[3], ARGV[8])\n"
    "  for i = 1, 3 do keep(KEYS[i], ARGV[9]) end\n"
    "end\n"
    "if #got < want then\n"
    "  local w = redis.call('HGETALL', KEYS[4])\n"
    "  for i = 1, #w, 2 do\n"
    "    if tonumber(w[i + 1]) <= now then redis.call('HDEL', KEYS[4], w[i]) end\n"
    "  end\n"
    "  redis.call('HSET', KEYS[4], ARGV[1], ARGV[11])\n"
    "  keep(KEYS[4], ARGV[12])\n"
    "else redis.call('HDEL', KEYS[4], ARGV[1]) end\n"
    "return {got, busy}\n";

/* KEYS: slots, holder's set. ARGV: holder, key, slots... */
static const char rd_lua_slot_drop[] =
    "for i = 3, #ARGV do\n"
    "  local f = ARGV[i]\n"
    "  if redis.call('HGET', KEYS[1], f) == ARGV[1] then\n"
    "    redis.call('HDEL', KEYS[1], f, f .. ':e', f .. ':o', f .. ':t')\n"
    "  end\n"
    "  redis.call('SREM', KEYS[2], f .. ' ' .. ARGV[2])\n"
    "end\n"
    "return 1\n";

/* KEYS: holder's set, index of keys, then the slots key of each member.
 * ARGV: holder, expiry, ttl in ms, then the members ("N KEY"). A member
 * whose slot the holder no longer holds leaves the set. */
static const char rd_lua_slot_renew[] = RD_LUA_KEEP
    "for i = 3, #KEYS do\n"
    "  local m = ARGV[i + 1]\n"
    "  local f = string.match(m, '^(%d+) ')\n"
    "  if f and redis.call('HGET', KEYS[i], f) == ARGV[1] then\n"
    "    redis.call('HSET', KEYS[i], f .. ':e', ARGV[2])\n"
    "    keep(KEYS[i], ARGV[3])\n"
    "  else redis.call('SREM', KEYS[1], m) end\n"
    "end\n"
    "keep(KEYS[1], ARGV[3])\n"
    "keep(KEYS[2], ARGV[3])\n"
    "return 1\n";

/* KEYS: index of keys, then the slots key of each. ARGV: the keys. The
 * slots of each; a key whose slots are all gone leaves the index. */
static const char rd_lua_slot_all[] =
    "local out = {}\n"
    "for i = 2, #KEYS do\n"
    "  out[i - 1] = redis.call('HGETALL', KEYS[i])\n"
    "  if #out[i - 1] == 0 then redis.call('SREM', KEYS[1], ARGV[i - 1]) end\n"
    "end\n"
    "return out\n";

/* KEYS: the starts. ARGV: limit, want, now, now - window, a prefix no other
 * call's starts have, ttl in ms. {taken, the score of the start whose
 * leaving lets the next one go, or ''}. Scores go back as text: a number
 * would lose its fraction on the way out of Lua. The same call sent again
 * after a dropped connection finds the starts it made the first time. */
static const char rd_lua_rate_take[] = RD_LUA_KEEP
    "local k, limit, want = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local take = 0\n"
    "while take < want and redis.call('ZSCORE', k, ARGV[5] .. ':' .. (take + 1)) do\n"
    "  take = take + 1\n"
    "end\n"
    "if take == 0 then\n"
    "  redis.call('ZREMRANGEBYSCORE', k, '-inf', ARGV[4])\n"
    "  take = math.max(0, math.min(want, limit - redis.call('ZCARD', k)))\n"
    "  for i = 1, take do redis.call('ZADD', k, ARGV[3], ARGV[5] .. ':' .. i) end\n"
    "  if take > 0 then keep(k, ARGV[6]) end\n"
    "end\n"
    "local after = ''\n"
    "if take < want then\n"
    "  local first = math.max(0, redis.call('ZCARD', k) - limit)\n"
    "  local r = redis.call('ZRANGE', k, first, first, 'WITHSCORES')\n"
    "  if r[2] then after = r[2] end\n"
    "end\n"
    "return {take, after}\n";

/* ---- methods ------------------------------------------------------------- */

/* Numbers as text that reads back to the same double. */
static void rd_num(char *out, size_t size, double v)
{
    snprintf(out, size, "%.17g", v);
}

/* The TTL in ms of a limit's keys: past the last lease or window, so that
 * the keys of limits nobody uses any more go away by themselves. */
static void rd_limit_ttl(char *out, size_t size, double span)
{
    double ms = ceil((span + RD_LIMIT_GRACE_S) * 1000);
    snprintf(out, size, "%.0f", ms < 1e15 ? ms : 1e15); /* what PEXPIRE takes */
}

/* Parse a script's list of slot numbers into slots[*got ..]. */
static bool rd_slot_numbers(const redisReply *a, int *slots, int *got, int room)
{
    if (a->type != REDIS_REPLY_ARRAY || (int)a->elements > room)
        return false;
    for (size_t i = 0; i < a->elements; i++) {
        if (!a->element[i]->str)
            return false;
        slots[(*got)++] = (int)strtol(a->element[i]->str, NULL, 10);
    }
    return true;
}

flow_err flow__rd_slot_acquire(void *priv, const char *key, int limit, int want,
                               const char *holder, const char *owner, double now, double ttl,
                               int *slots, int *got, flow_error *err)
{
    struct rd_store *s = priv;
    *got = 0;
    flow_err rc = flow__limit_check(s->name, "concurrency", key, limit, ttl, err);
    if (rc != FLOW_OK || want <= 0)
        return rc;
    static atomic_ullong calls;
    char what[300], snow[40], sexp[40], slimit[16], swant[16], sms[40], token[400];
    char swexp[40], swms[40];
    snprintf(what, sizeof(what), "cannot take a slot of concurrency key '%.200s'", key);
    rd_num(snow, sizeof(snow), now);
    rd_num(sexp, sizeof(sexp), now + ttl);
    snprintf(slimit, sizeof(slimit), "%d", limit);
    rd_limit_ttl(sms, sizeof(sms), ttl);
    rd_num(swexp, sizeof(swexp), now + FLOW__SLOT_WANT_TTL);
    rd_limit_ttl(swms, sizeof(swms), FLOW__SLOT_WANT_TTL);
    char *keys[4] = {flow__asprintf("%s:slots:%s", s->addr.prefix, key),
                     flow__asprintf("%s:slotholders:%s", s->addr.prefix, holder),
                     flow__asprintf("%s:slotkeys", s->addr.prefix),
                     flow__asprintf("%s:slotwants:%s", s->addr.prefix, key)};
    /* (slot, holder, expiry) of the dead holders found so far. */
    FLOW__VEC(char *) args = {0};
    const char *fixed[] = {holder, owner ? owner : "", owner ? "1" : "0", snow, sexp,
                           slimit, swant, key, sms, token, swexp, swms};
    for (size_t i = 0; i < FLOW__ARRAY_LEN(fixed) && rc == FLOW_OK; i++)
        FLOW__VEC_PUSH(&args, (char *)fixed[i], rc);
    if (!keys[0] || !keys[1] || !keys[2] || !keys[3] || rc != FLOW_OK) {
        rc = flow__rd_nomem(s, what, err);
        goto out;
    }
    size_t nfixed = args.count;
    bool judged = true;
    for (int tries = 0; judged && *got < want && tries < RD_SLOT_TRIES; tries++) {
        snprintf(swant, sizeof(swant), "%d", want - *got);
        snprintf(token, sizeof(token), "%s:%ld:%llu", s->holder, (long)getpid(),
                 (unsigned long long)atomic_fetch_add(&calls, 1));
        redisReply *r =
            flow__rd_eval(s, what, err, rd_lua_slot_take, 4, (const char *const *)keys,
                          (int)args.count, (const char *const *)args.items, NULL, NULL);
        if (!r) {
            rc = err ? err->code : FLOW_EIO;
            break;
        }
        const redisReply *busy = r->type == REDIS_REPLY_ARRAY && r->elements == 2 ? r->element[1]
                                                                                 : NULL;
        if (!busy || busy->type != REDIS_REPLY_ARRAY ||
            !rd_slot_numbers(r->element[0], slots, got, want - *got)) {
            rc = flow__rd_odd(s, what, r, err);
            break;
        }
        /* Another round only when a holder it found busy is dead. */
        judged = false;
        for (size_t i = 0; i + 2 < busy->elements && rc == FLOW_OK; i += 3) {
            const redisReply *f = busy->element[i], *h = busy->element[i + 1],
                             *e = busy->element[i + 2];
            if (!f->str || !h->str || !e->str ||
                flow__lease_is_live(h->str, strtod(e->str, NULL), now))
                continue;
            judged = true;
            for (int k = 0; k < 3 && rc == FLOW_OK; k++) {
                char *copy = flow__strdup(busy->element[i + (size_t)k]->str);
                if (copy)
                    FLOW__VEC_PUSH(&args, copy, rc);
                if (!copy || rc != FLOW_OK) {
                    flow__free(copy);
                    rc = FLOW_ENOMEM;
                }
            }
        }
        freeReplyObject(r);
        if (rc != FLOW_OK)
            flow__rd_nomem(s, what, err);
    }
    if (rc != FLOW_OK && *got > 0) {
        /* Taken but not told: give them back. */
        flow__rd_slot_release(s, key, slots, *got, holder, NULL);
        *got = 0;
    }
    for (size_t i = nfixed; i < args.count; i++)
        flow__free(args.items[i]);
out:
    FLOW__VEC_FREE(&args);
    for (int i = 0; i < 4; i++)
        flow__free(keys[i]);
    return rc;
}

flow_err flow__rd_slot_release(void *priv, const char *key, const int *slots, int n,
                               const char *holder, flow_error *err)
{
    struct rd_store *s = priv;
    if (n <= 0)
        return FLOW_OK;
    char what[300];
    snprintf(what, sizeof(what), "cannot give back a slot of concurrency key '%.200s'", key);
    char *keys[2] = {flow__asprintf("%s:slots:%s", s->addr.prefix, key),
                     flow__asprintf("%s:slotholders:%s", s->addr.prefix, holder)};
    const char **args = flow__calloc((size_t)n + 2, sizeof(*args));
    char(*nums)[16] = flow__calloc((size_t)n, sizeof(*nums));
    flow_err rc = FLOW_OK;
    if (!keys[0] || !keys[1] || !args || !nums) {
        rc = flow__rd_nomem(s, what, err);
        goto out;
    }
    args[0] = holder;
    args[1] = key;
    for (int i = 0; i < n; i++) {
        snprintf(nums[i], sizeof(nums[i]), "%d", slots[i]);
        args[2 + i] = nums[i];
    }
    redisReply *r = flow__rd_eval(s, what, err, rd_lua_slot_drop, 2, (const char *const *)keys,
                                  n + 2, args, NULL, NULL);
    if (r)
        freeReplyObject(r);
    else
        rc = err ? err->code : FLOW_EIO;
out:
    flow__free(args);
    flow__free(nums);
    flow__free(keys[0]);
    flow__free(keys[1]);
    return rc;
}

/* The members of set `key`: *out the reply (the caller frees it), or NULL
 * when the set is empty or the read failed (then the code says which). */
static flow_err rd_members(struct rd_store *s, const char *key, const char *what,
                           redisReply **out, flow_error *err)
{
    const char *argv[] = {"SMEMBERS", key};
    redisReply *m = flow__rd_cmdv(s, what, err, 2, argv, NULL, NULL);
    *out = NULL;
    if (!m)
        return err ? err->code : FLOW_EIO;
    if (m->type != REDIS_REPLY_ARRAY)
        return flow__rd_odd(s, what, m, err);
    if (m->elements == 0) {
        freeReplyObject(m);
        return FLOW_OK;
    }
    *out = m;
    return FLOW_OK;
}

flow_err flow__rd_slot_renew(void *priv, const char *holder, double now, double ttl,
                             flow_error *err)
{
    struct rd_store *s = priv;
    const char *what = "cannot renew the slots of concurrency keys";
    char *set = flow__asprintf("%s:slotholders:%s", s->addr.prefix, holder);
    if (!set)
        return flow__rd_nomem(s, what, err);
    /* Most runners hold no slot: one read finds that out. */
    redisReply *m = NULL;
    flow_err mrc = rd_members(s, set, what, &m, err);
    if (!m) {
        flow__free(set);
        return mrc;
    }
    size_t n = m->elements;
    char **keys = flow__calloc(n + 2, sizeof(*keys));
    const char **args = flow__calloc(n + 3, sizeof(*args));
    char sexp[40], sms[40];
    rd_num(sexp, sizeof(sexp), now + ttl);
    rd_limit_ttl(sms, sizeof(sms), ttl);
    flow_err rc = keys && args ? FLOW_OK : FLOW_ENOMEM;
    if (rc == FLOW_OK) {
        keys[0] = set;
        keys[1] = flow__asprintf("%s:slotkeys", s->addr.prefix);
        args[0] = holder;
        args[1] = sexp;
        args[2] = sms;
        rc = keys[1] ? FLOW_OK : FLOW_ENOMEM;
    }
    for (size_t i = 0; i < n && rc == FLOW_OK; i++) {
        const char *member = m->element[i]->str ? m->element[i]->str : "";
        const char *sp = strchr(member, ' ');
        keys[2 + i] = flow__asprintf("%s:slots:%s", s->addr.prefix, sp ? sp + 1 : "");
        args[3 + i] = member;
        if (!keys[2 + i])
            rc = FLOW_ENOMEM;
    }
    redisReply *r = NULL;
    if (rc != FLOW_OK)
        flow__rd_nomem(s, what, err);
    else if (!(r = flow__rd_eval(s, what, err, rd_lua_slot_renew, (int)n + 2,
                                 (const char *const *)keys, (int)n + 3, args, NULL, NULL)))
        rc = err ? err->code : FLOW_EIO;
    if (r)
        freeReplyObject(r);
    for (size_t i = 1; keys && i < n + 2; i++)
        flow__free(keys[i]);
    flow__free(keys);
    flow__free(args);
    flow__free(set);
    freeReplyObject(m);
    return rc;
}

/* Append the live slots of `key` from its hash `h` (HGETALL) to `list`. */
static flow_err rd_slots_push(const char *key, const redisReply *h, double now, json_t *list)
{
    if (h->type != REDIS_REPLY_ARRAY)
        return FLOW_EIO;
    struct flow__strmap fields;
    flow__strmap_init(&fields);
    flow_err rc = FLOW_OK;
    for (size_t i = 0; i + 1 < h->elements && rc == FLOW_OK; i += 2)
        if (h->element[i]->str && h->element[i + 1]->str)
            rc = flow__strmap_put(&fields, h->element[i]->str, h->element[i + 1]->str);
    for (size_t i = 0; i + 1 < h->elements && rc == FLOW_OK; i += 2) {
        const char *f = h->element[i]->str, *holder = h->element[i + 1]->str;
        if (!f || !holder || !*f || strspn(f, "0123456789") != strlen(f) || strlen(f) > 10)
            continue;
        char name[16];
        snprintf(name, sizeof(name), "%s:e", f);
        const char *e = flow__strmap_get(&fields, name);
        snprintf(name, sizeof(name), "%s:o", f);
        const char *o = flow__strmap_get(&fields, name);
        double expires = e ? strtod(e, NULL) : 0;
        if (flow__lease_is_live(holder, expires, now))
            rc = flow__slot_push(list, key, (int)strtol(f, NULL, 10), holder, o, expires);
    }
    flow__strmap_cleanup(&fields);
    return rc;
}

/* The live slots of `key` into `list`. */
static flow_err rd_list_key(struct rd_store *s, const char *key, double now, json_t *list,
                            const char *what, flow_error *err)
{
    char *k = flow__asprintf("%s:slots:%s", s->addr.prefix, key);
    if (!k)
        return flow__rd_nomem(s, what, err);
    const char *argv[] = {"HGETALL", k};
    redisReply *r = flow__rd_cmdv(s, what, err, 2, argv, NULL, NULL);
    flow__free(k);
    if (!r)
        return err ? err->code : FLOW_EIO;
    flow_err rc = rd_slots_push(key, r, now, list);
    if (rc == FLOW_EIO)
        return flow__rd_odd(s, what, r, err);
    freeReplyObject(r);
    return rc == FLOW_OK ? FLOW_OK : flow__rd_nomem(s, what, err);
}

/* The live slots of every key of the index into `list`: the keys, then one
 * script for their hashes. */
static flow_err rd_list_all(struct rd_store *s, double now, json_t *list, const char *what,
                            flow_error *err)
{
    char *index = flow__asprintf("%s:slotkeys", s->addr.prefix);
    if (!index)
        return flow__rd_nomem(s, what, err);
    redisReply *m = NULL;
    flow_err mrc = rd_members(s, index, what, &m, err);
    if (!m) {
        flow__free(index);
        return mrc;
    }
    size_t n = m->elements;
    char **keys = flow__calloc(n + 1, sizeof(*keys));
    const char **args = flow__calloc(n, sizeof(*args));
    flow_err rc = keys && args ? FLOW_OK : FLOW_ENOMEM;
    for (size_t i = 0; i < n && rc == FLOW_OK; i++) {
        args[i] = m->element[i]->str ? m->element[i]->str : "";
        if (!(keys[1 + i] = flow__asprintf("%s:slots:%s", s->addr.prefix, args[i])))
            rc = FLOW_ENOMEM;
    }
    redisReply *r = NULL;
    if (rc == FLOW_OK) {
        keys[0] = index;
        r = flow__rd_eval(s, what, err, rd_lua_slot_all, (int)n + 1, (const char *const *)keys,
                          (int)n, args, NULL, NULL);
        if (!r)
            rc = err ? err->code : FLOW_EIO;
        else if (r->type != REDIS_REPLY_ARRAY || r->elements != n)
            rc = FLOW_EIO;
    }
    for (size_t i = 0; i < n && rc == FLOW_OK; i++)
        rc = rd_slots_push(args[i], r->element[i], now, list);
    if (rc == FLOW_EIO && r) {
        flow__rd_odd(s, what, r, err);
        r = NULL;
    } else if (rc == FLOW_ENOMEM) {
        flow__rd_nomem(s, what, err);
    }
    if (r)
        freeReplyObject(r);
    for (size_t i = 1; keys && i <= n; i++)
        flow__free(keys[i]);
    flow__free(keys);
    flow__free(args);
    flow__free(index);
    freeReplyObject(m);
    return rc;
}

flow_err flow__rd_slot_list(void *priv, const char *key, double now, json_t **out,
                            flow_error *err)
{
    struct rd_store *s = priv;
    *out = NULL;
    const char *what = "cannot list the slots of concurrency keys";
    json_t *list = json_array();
    flow_err rc = !list ? flow__rd_nomem(s, what, err)
                  : key ? rd_list_key(s, key, now, list, what, err)
                        : rd_list_all(s, now, list, what, err);
    if (rc == FLOW_OK && flow__slot_sort(list) != FLOW_OK)
        rc = flow__rd_nomem(s, what, err);
    if (rc != FLOW_OK) {
        json_decref(list);
        return rc;
    }
    *out = list;
    return FLOW_OK;
}

flow_err flow__rd_slot_contended(void *priv, const char *key, const char *holder, double now,
                                 bool *contended, flow_error *err)
{
    struct rd_store *s = priv;
    *contended = false;
    char what[300];
    snprintf(what, sizeof(what), "cannot read who waits for concurrency key '%.200s'", key);
    char *k = flow__asprintf("%s:slotwants:%s", s->addr.prefix, key);
    if (!k)
        return flow__rd_nomem(s, what, err);
    const char *argv[] = {"HGETALL", k};
    redisReply *r = flow__rd_cmdv(s, what, err, 2, argv, NULL, NULL);
    flow__free(k);
    if (!r)
        return err ? err->code : FLOW_EIO;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2)
        return flow__rd_odd(s, what, r, err);
    /* Pids are judged here: a script cannot. */
    for (size_t i = 0; i + 1 < r->elements && !*contended; i += 2) {
        const char *h = r->element[i]->str, *e = r->element[i + 1]->str;
        *contended = h && e && strcmp(h, holder) != 0 &&
                     flow__lease_is_live(h, strtod(e, NULL), now);
    }
    freeReplyObject(r);
    return FLOW_OK;
}

/* An integer reply's value, or -1. */
static long long rd_count(const redisReply *r)
{
    return r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
}

flow_err flow__rd_rate_take(void *priv, const char *key, int limit, double window, int want,
                            double now, int *got, double *retry_at, flow_error *err)
{
    struct rd_store *s = priv;
    static atomic_ullong starts;
    *got = 0;
    if (retry_at)
        *retry_at = 0;
    flow_err rc = flow__limit_check(s->name, "rate", key, limit, window, err);
    if (rc != FLOW_OK || want <= 0)
        return rc;
    char what[300], slimit[16], swant[16], snow[40], scut[40], sms[40], unique[400];
    snprintf(what, sizeof(what), "cannot start under rate key '%.200s'", key);
    snprintf(slimit, sizeof(slimit), "%d", limit);
    snprintf(swant, sizeof(swant), "%d", want);
    rd_num(snow, sizeof(snow), now);
    rd_num(scut, sizeof(scut), now - window);
    rd_limit_ttl(sms, sizeof(sms), window);
    /* Members must differ, or a start would replace another's. */
    snprintf(unique, sizeof(unique), "%s:%s:%ld:%llu", snow, s->holder, (long)getpid(),
             (unsigned long long)atomic_fetch_add(&starts, 1));
    char *k = flow__asprintf("%s:rate:%s", s->addr.prefix, key);
    if (!k)
        return flow__rd_nomem(s, what, err);
    const char *keys[] = {k};
    const char *args[] = {slimit, swant, snow, scut, unique, sms};
    redisReply *r = flow__rd_eval(s, what, err, rd_lua_rate_take, 1, keys, 6, args, NULL, NULL);
    flow__free(k);
    if (!r)
        return err ? err->code : FLOW_EIO;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || rd_count(r->element[0]) < 0 ||
        !r->element[1]->str)
        return flow__rd_odd(s, what, r, err);
    *got = (int)rd_count(r->element[0]);
    if (retry_at && *got < want && r->element[1]->str[0])
        *retry_at = strtod(r->element[1]->str, NULL) + window;
    freeReplyObject(r);
    return FLOW_OK;
}
