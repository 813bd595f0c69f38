/* redis_int.h -- the inside of the Redis store (store_redis.c: the
 * connection, runs, journals, leases, control requests, answers;
 * store_redis_limits.c: concurrency slots and rate starts;
 * store_redis_cache.c: cached outputs of tasks). */
#ifndef FLOW_STORE_REDIS_INT_H
#define FLOW_STORE_REDIS_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"
#include "util/buf.h"
#include "util/redis.h"
#include "util/strmap.h"

struct rd_store {
    struct flow__redis_addr addr;
    redisContext *c; /* NULL: to connect at the next call */
    char name[400];  /* "redis://host:port/db?prefix=P", for messages */
    bool fsync_checked; /* this connection's server fsyncs every write */
    char holder[300];   /* whose lease this handle's appends need (fencing) */
    struct flow__strmap runs; /* id -> struct rd_run */
    struct flow__buf buf;     /* records of a batch, reused */
};

/* ---- store_redis.c --------------------------------------------------- */

/* Run a command; a dropped connection (Redis restarted) is made again and
 * the command sent once more (*resent, when given, then says so). NULL with
 * `err` filled ("WHAT in store ...") on failure. */
redisReply *flow__rd_cmdv(struct rd_store *s, const char *what, flow_error *err, int argc,
                          const char **argv, const size_t *lens, bool *resent);
/* EVAL `script` with `nkeys` keys and `nargs` arguments (binary-safe;
 * `arglens` NULL: C strings). */
redisReply *flow__rd_eval(struct rd_store *s, const char *what, flow_error *err,
                          const char *script, int nkeys, const char *const *keys, int nargs,
                          const char *const *args, const size_t *arglens, bool *resent);
/* A reply Redis should not have given (freed): FLOW_EIO. */
flow_err flow__rd_odd(struct rd_store *s, const char *what, redisReply *r, flow_error *err);
flow_err flow__rd_nomem(struct rd_store *s, const char *what, flow_error *err);

/* ---- store_redis_limits.c -------------------------------------------- */

flow_err flow__rd_slot_acquire(void *priv, const char *key, int limit, int want,
                               const char *holder, const char *owner, double now, double ttl,
                               int *slots, int *got, flow_error *err);
flow_err flow__rd_slot_release(void *priv, const char *key, const int *slots, int n,
                               const char *holder, flow_error *err);
flow_err flow__rd_slot_renew(void *priv, const char *holder, double now, double ttl,
                             flow_error *err);
flow_err flow__rd_slot_list(void *priv, const char *key, double now, json_t **out,
                            flow_error *err);
flow_err flow__rd_rate_take(void *priv, const char *key, int limit, double window, int want,
                            double now, int *got, double *retry_at, flow_error *err);
flow_err flow__rd_slot_contended(void *priv, const char *key, const char *holder, double now,
                                 bool *contended, flow_error *err);

/* ---- store_redis_cache.c --------------------------------------------- */

flow_err flow__rd_cache_get(void *priv, const char *fname, const char *task, const char *key,
                            double now, json_t **entry, double *created, flow_error *err);
flow_err flow__rd_cache_put(void *priv, const char *fname, const char *task, const char *key,
                            const json_t *entry, double now, double expires, flow_error *err);
flow_err flow__rd_cache_gc(void *priv, double now, bool all, size_t *removed, flow_error *err);

#endif
