/* redis.h -- Redis addresses and connections: what the redis:// store, the
 * remote executor and `flow worker` share.
 *
 * A thin layer over hiredis (the official synchronous client): parsing
 * `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?prefix=P&durability=...]`,
 * connecting with timeouts, AUTH and SELECT, running a command with every
 * failure turned into one clear message that names the server, and the
 * checks of the server's configuration that durability depends on.
 *
 * A connection is used by one thread at a time (hiredis contexts are not
 * thread-safe); whoever owns it serializes its calls.
 */
#ifndef FLOW_UTIL_REDIS_H
#define FLOW_UTIL_REDIS_H

#include <stdbool.h>

#include <hiredis/hiredis.h>

#include "flow.h"

/* Defaults of a URL's parts. */
#define FLOW__REDIS_PORT 6379
#define FLOW__REDIS_PREFIX "flow"

struct flow__redis_addr {
    char host[256];
    int port;
    int db;
    char user[128];     /* "" : the default user */
    char password[256]; /* "" : no AUTH */
    char prefix[64];    /* key prefix, "flow" unless ?prefix= */
    bool strict;        /* ?durability=strict */
    char shown[320];    /* "redis://host:port/db" for messages (no password) */
};

/* Parse `url` ("redis://..."). FLOW_EINVAL with a message naming the part
 * that is wrong. Unknown query parameters are refused. */
flow_err flow__redis_parse(const char *url, struct flow__redis_addr *out, flow_error *err);

/* Connect to `a` within `timeout_s` seconds (also the timeout of every
 * command afterwards; 0: none), authenticate and select the database. NULL
 * with `err` filled ("cannot connect to redis://h:p/0: connection refused"). */
redisContext *flow__redis_connect(const struct flow__redis_addr *a, double timeout_s,
                                  flow_error *err);

/* Run a command (redisCommand's format). A reply of the error type, a lost
 * connection or a timeout return NULL with `err` filled, naming the server
 * `a` and the command's first word; otherwise the reply (freeReplyObject). */
redisReply *flow__redis_cmd(redisContext *c, const struct flow__redis_addr *a, flow_error *err,
                            const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The same with an argv (binary-safe). */
redisReply *flow__redis_cmdv(redisContext *c, const struct flow__redis_addr *a, flow_error *err,
                             int argc, const char **argv, const size_t *argvlen);

/* Refuse a server that can lose what libflow writes: an eviction policy
 * other than `noeviction` (FLOW_EUNSUPPORTED naming `maxmemory-policy`),
 * and, when `strict`, `appendfsync` other than `always` with `appendonly
 * yes` (naming `appendfsync`). */
flow_err flow__redis_check_durability(redisContext *c, const struct flow__redis_addr *a,
                                      bool strict, flow_error *err);

/* The Redis URL a runner or worker uses: `explicit_url` when given, else
 * $FLOW_REDIS, else NULL. */
const char *flow__redis_url_from_env(const char *explicit_url);

/* A queue or function name for workers (a part of a key): 1 to 100 of
 * [A-Za-z0-9_.:-]. */
bool flow__redis_name_ok(const char *s);

#endif
