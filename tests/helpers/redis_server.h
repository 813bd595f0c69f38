/* redis_server.h -- a real redis-server for a test: started on a free port
 * of 127.0.0.1 in a private temp directory, with an append-only file (so a
 * restart keeps what was written), and stopped by the test. Never the
 * system's server. */
#ifndef FLOW_TESTS_REDIS_SERVER_H
#define FLOW_TESTS_REDIS_SERVER_H

#include <stdbool.h>
#include <sys/types.h>

struct th_redis {
    pid_t pid;       /* 0 when not running */
    int port;
    char *dir;       /* its data directory (the append-only file) */
    char url[64];    /* "redis://127.0.0.1:PORT/0" */
    const char *extra; /* more config lines for redis.conf, or NULL */
};

/* Start a server (fails the test when redis-server is missing or does not
 * answer PING within 10 s). `extra`: config lines to add, or NULL. */
void th_redis_start(struct th_redis *r, const char *extra);
/* SIGKILL the server (nothing flushed beyond what appendfsync gave). */
void th_redis_kill(struct th_redis *r);
/* Start it again on the same port and directory (after th_redis_kill or
 * th_redis_stop). */
void th_redis_restart(struct th_redis *r);
/* Stop it (SIGTERM, wait) and remove its directory. */
void th_redis_stop(struct th_redis *r);
/* Run one command through redis-cli-less hiredis; returns the reply as a
 * malloc'd string (integers in decimal, nil as "(nil)"), or NULL. */
char *th_redis_do(struct th_redis *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
