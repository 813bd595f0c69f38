/* store_redis_cache.c -- the Redis store's cached outputs of tasks, under
 * the store's prefix P:
 *
 *   P:cache:N   string: {flow, task, key, created, expires, entry} as JSON,
 *               N the 32 hex digits of flow__cache_name
 *
 * A put is one SET, with PX when the entry expires: Redis drops the key by
 * itself then, so `flow gc` finds nothing expired here (with `all` it scans
 * for P:cache:N and deletes what it finds). A lookup compares the names the
 * value keeps and its expiry by the caller's clock (the server's may
 * differ by a little). */
#include "util/compat.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "store/compress.h"
#include "store/redis_int.h"
#include "store/store.h"

#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/json.h"

#define RD_CACHE_KEY_MAX 128 /* prefix (< 64) + ":cache:" + 32 */
#define RD_SCAN_COUNT "500"

static void rd_cache_key(const struct rd_store *s, const char *fname, const char *task,
                         const char *key, char out[RD_CACHE_KEY_MAX])
{
    char name[33];
    flow__cache_name(fname, task, key, name);
    snprintf(out, RD_CACHE_KEY_MAX, "%s:cache:%s", s->addr.prefix, name);
}

flow_err flow__rd_cache_get(void *priv, const char *fname, const char *task, const char *key,
                            double now, json_t **entry, double *created, flow_error *err)
{
    struct rd_store *s = priv;
    const char *what = "cannot read the cache";
    *entry = NULL;
    *created = 0;
    char k[RD_CACHE_KEY_MAX];
    rd_cache_key(s, fname, task, key, k);
    const char *argv[] = {"GET", k};
    redisReply *r = flow__rd_cmdv(s, what, err, 2, argv, NULL, NULL);
    if (!r)
        return err ? err->code : FLOW_EIO;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return FLOW_OK;
    }
    if (r->type != REDIS_REPLY_STRING)
        return flow__rd_odd(s, what, r, err);
    json_t *rec = NULL;
    if (flow__payload_load(r->str, r->len, &rec) == FLOW_OK)
        flow__cache_record_open(rec, fname, task, key, now, entry, created);
    json_decref(rec); /* damaged: as if none (a put replaces it) */
    freeReplyObject(r);
    return FLOW_OK;
}

flow_err flow__rd_cache_put(void *priv, const char *fname, const char *task, const char *key,
                            const json_t *entry, double now, double expires, flow_error *err)
{
    struct rd_store *s = priv;
    const char *what = "cannot write the cache";
    char k[RD_CACHE_KEY_MAX], ms[32];
    rd_cache_key(s, fname, task, key, k);
    json_t *rec = flow__cache_record(fname, task, key, entry, now, expires > 0 ? expires : 0);
    if (!rec)
        return flow__rd_nomem(s, what, err);
    flow__buf_reset(&s->buf);
    flow_err rc = flow__payload_append(&s->buf, rec, NULL);
    json_decref(rec);
    if (rc != FLOW_OK)
        return rc == FLOW_ENOMEM ? flow__rd_nomem(s, what, err)
                                 : flow__error(err, rc, "%s in store '%s': the entry is too large",
                                               what, s->name);
    int argc = 3;
    const char *argv[] = {"SET", k, flow__buf_str(&s->buf), "PX", ms};
    size_t lens[] = {3, strlen(k), s->buf.len, 2, 0};
    if (expires > 0) {
        /* At least a millisecond: PX 0 is an error, and the entry is not
         * worth a refusal. */
        double left = ceil((expires - now) * 1000.0);
        snprintf(ms, sizeof(ms), "%.0f", left < 1 ? 1 : left > 9e15 ? 9e15 : left);
        lens[4] = strlen(ms);
        argc = 5;
    }
    redisReply *r = flow__rd_cmdv(s, what, err, argc, argv, lens, NULL);
    if (!r)
        return err ? err->code : FLOW_EIO;
    if (r->type != REDIS_REPLY_STATUS)
        return flow__rd_odd(s, what, r, err);
    freeReplyObject(r);
    return FLOW_OK;
}

/* `text` with the glob characters of a SCAN pattern escaped, into `out`. */
static void rd_glob_escape(const char *text, char *out, size_t size)
{
    size_t n = 0;
    for (const char *p = text; *p && n + 2 < size; p++) {
        if (strchr("*?[]\\", *p))
            out[n++] = '\\';
        out[n++] = *p;
    }
    out[n] = '\0';
}

flow_err flow__rd_cache_gc(void *priv, double now, bool all, size_t *removed, flow_error *err)
{
    struct rd_store *s = priv;
    const char *what = "cannot remove cache entries";
    FLOW__UNUSED(now);
    *removed = 0;
    if (!all)
        return FLOW_OK; /* Redis drops an entry once it expires */
    /* Exactly 32 hex digits after "P:cache:": a store whose prefix is
     * "P:cache" keeps its keys apart ("P:cache:run:ID" is not ours). */
    char prefix[140], pattern[140 + 8 + 32 * 6 + 1], cursor[32] = "0";
    rd_glob_escape(s->addr.prefix, prefix, sizeof(prefix));
    int len = snprintf(pattern, sizeof(pattern), "%s:cache:", prefix);
    for (int i = 0; i < 32 && len > 0 && (size_t)len < sizeof(pattern); i++)
        len += snprintf(pattern + len, sizeof(pattern) - (size_t)len, "[0-9a-f]");
    do {
        const char *argv[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", RD_SCAN_COUNT};
        redisReply *r = flow__rd_cmdv(s, what, err, 6, argv, NULL, NULL);
        if (!r)
            return err ? err->code : FLOW_EIO;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY)
            return flow__rd_odd(s, what, r, err);
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        if (keys->elements) {
            size_t n = keys->elements + 1;
            const char **dv = flow__calloc(n, sizeof(*dv));
            size_t *dl = flow__calloc(n, sizeof(*dl));
            if (!dv || !dl) {
                flow__free(dv);
                flow__free(dl);
                freeReplyObject(r);
                return flow__rd_nomem(s, what, err);
            }
            dv[0] = "DEL";
            dl[0] = 3;
            for (size_t i = 0; i < keys->elements; i++) {
                dv[i + 1] = keys->element[i]->str ? keys->element[i]->str : "";
                dl[i + 1] = keys->element[i]->str ? keys->element[i]->len : 0;
            }
            redisReply *d = flow__rd_cmdv(s, what, err, (int)n, dv, dl, NULL);
            flow__free(dv);
            flow__free(dl);
            if (!d) {
                freeReplyObject(r);
                return err ? err->code : FLOW_EIO;
            }
            if (d->type == REDIS_REPLY_INTEGER && d->integer > 0)
                *removed += (size_t)d->integer;
            freeReplyObject(d);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return FLOW_OK;
}
