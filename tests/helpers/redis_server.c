/* redis_server.c -- see redis_server.h. */
#define _GNU_SOURCE 1
#include "redis_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "helpers.h"

/* A port the kernel just gave out and took back: free unless somebody
 * races us for it, in which case the server fails to bind and we retry. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        fail_msg("cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(sa.sin_port);
}

static bool answers_ping(int port)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    bool ok = false;
    if (c && !c->err) {
        redisReply *rep = redisCommand(c, "PING");
        /* A server with requirepass answers NOAUTH: it is up. */
        ok = rep && ((rep->type == REDIS_REPLY_STATUS && !strcmp(rep->str, "PONG")) ||
                     (rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "NOAUTH", 6)));
        if (rep)
            freeReplyObject(rep);
    }
    if (c)
        redisFree(c);
    return ok;
}

static bool spawn_server(struct th_redis *r)
{
    char conf[4096];
    snprintf(conf, sizeof(conf),
             "port %d\nbind 127.0.0.1\nprotected-mode yes\ndir %s\nappendonly yes\n"
             "appendfsync everysec\nsave \"\"\ndaemonize no\nlogfile %s/redis.log\n"
             "maxmemory-policy noeviction\n%s\n",
             r->port, r->dir, r->dir, r->extra ? r->extra : "");
    char *path = th_write_file(r->dir, "redis.conf", conf);
    pid_t pid = fork();
    if (pid == 0) {
        /* Its own process group: a test's kill of a flow group never hits it.
         * It dies with the test, even one killed by a timeout or a failed
         * assertion that skipped th_redis_stop. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
            _exit(1);
        execlp("redis-server", "redis-server", path, (char *)NULL);
        _exit(127);
    }
    free(path);
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    r->pid = pid;
    for (int i = 0; i < 200; i++) {
        if (answers_ping(r->port))
            return true;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            r->pid = 0;
            if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
                fail_msg("redis-server is not installed (scripts/setup.sh installs it)");
            return false; /* the port was taken meanwhile */
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    r->pid = 0;
    fail_msg("redis-server on port %d did not answer PING within 10 s (see %s/redis.log)",
             r->port, r->dir);
    return false;
}

void th_redis_start(struct th_redis *r, const char *extra)
{
    memset(r, 0, sizeof(*r));
    r->extra = extra;
    r->dir = th_tempdir();
    for (int tries = 0; tries < 5; tries++) {
        r->port = free_port();
        if (spawn_server(r)) {
            snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d/0", r->port);
            return;
        }
    }
    fail_msg("redis-server did not start (see %s/redis.log)", r->dir);
}

static void reap(struct th_redis *r, int sig)
{
    if (!r->pid)
        return;
    kill(r->pid, sig);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

void th_redis_kill(struct th_redis *r) { reap(r, SIGKILL); }

void th_redis_restart(struct th_redis *r)
{
    reap(r, SIGKILL);
    for (int tries = 0; tries < 50; tries++) {
        if (spawn_server(r))
            return;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fail_msg("redis-server did not start again on port %d", r->port);
}

void th_redis_stop(struct th_redis *r)
{
    reap(r, SIGTERM);
    if (r->dir) {
        th_rmtree(r->dir);
        free(r->dir);
        r->dir = NULL;
    }
}

char *th_redis_do(struct th_redis *r, const char *fmt, ...)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    char *out = NULL;
    if (rep) {
        if (rep->type == REDIS_REPLY_INTEGER) {
            if (asprintf(&out, "%lld", rep->integer) < 0)
                out = NULL;
        } else if (rep->type == REDIS_REPLY_NIL) {
            out = strdup("(nil)");
        } else if (rep->str) {
            out = strdup(rep->str);
        } else if (rep->type == REDIS_REPLY_ARRAY) {
            if (asprintf(&out, "(array of %zu)", rep->elements) < 0)
                out = NULL;
        }
        freeReplyObject(rep);
    }
    redisFree(c);
    return out;
}
