/* redis.c -- Redis addresses, connections and commands (redis.h). */
#include "util/compat.h"

#include "util/redis.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/error.h"

/* Copy `src[0..n)` into `dst` decoding %XX; false when it does not fit or a
 * %XX is malformed. */
static bool decode_part(char *dst, size_t cap, const char *src, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = src[i];
        if (ch == '%') {
            if (i + 2 >= n || !isxdigit((unsigned char)src[i + 1]) ||
                !isxdigit((unsigned char)src[i + 2]))
                return false;
            char hex[3] = {src[i + 1], src[i + 2], 0};
            ch = (char)strtol(hex, NULL, 16);
            i += 2;
        }
        if (o + 1 >= cap)
            return false;
        dst[o++] = ch;
    }
    dst[o] = 0;
    return true;
}

static bool parse_int(const char *s, size_t n, long lo, long hi, long *out)
{
    if (n == 0 || n > 9)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool prefix_ok(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)p[i]) && !strchr("_.:-", p[i]))
            return false;
    return true;
}

static flow_err parse_query(const char *url, const char *q, struct flow__redis_addr *out,
                            flow_error *err)
{
    while (*q) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        size_t klen = eq ? (size_t)(eq - q) : len;
        const char *v = eq ? eq + 1 : q + len;
        size_t vlen = eq ? len - klen - 1 : 0;
        if (klen == 6 && !memcmp(q, "prefix", 6)) {
            if (!prefix_ok(v, vlen) || vlen >= sizeof(out->prefix))
                return flow__error(err, FLOW_EINVAL,
                                   "bad prefix '%.*s' in redis URL '%s': use 1 to %zu of "
                                   "letters, digits, '_', '.', ':' and '-'",
                                   (int)vlen, v, url, sizeof(out->prefix) - 1);
            memcpy(out->prefix, v, vlen);
            out->prefix[vlen] = 0;
        } else if (klen == 10 && !memcmp(q, "durability", 10)) {
            if (vlen == 6 && !memcmp(v, "strict", 6))
                out->strict = true;
            else if (vlen == 6 && !memcmp(v, "normal", 6))
                out->strict = false;
            else
                return flow__error(err, FLOW_EINVAL,
                                   "bad durability '%.*s' in redis URL '%s': use normal or strict",
                                   (int)vlen, v, url);
        } else {
            return flow__error(err, FLOW_EINVAL,
                               "unknown parameter '%.*s' in redis URL '%s' (known: prefix, "
                               "durability)",
                               (int)klen, q, url);
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return FLOW_OK;
}

flow_err flow__redis_parse(const char *url, struct flow__redis_addr *out, flow_error *err)
{
    memset(out, 0, sizeof(*out));
    out->port = FLOW__REDIS_PORT;
    snprintf(out->prefix, sizeof(out->prefix), "%s", FLOW__REDIS_PREFIX);
    if (!url || strncmp(url, "redis://", 8) != 0)
        return flow__error(err, FLOW_EINVAL, "'%s' is not a redis URL (redis://HOST[:PORT][/DB])",
                           url ? url : "(null)");
    const char *p = url + 8;
    size_t auth_len = strcspn(p, "/?");
    const char *at = NULL;
    for (const char *s = p; s < p + auth_len; s++)
        if (*s == '@')
            at = s;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return flow__error(err, FLOW_EINVAL,
                               "redis URL '%s': write the password as ':PASSWORD@' or "
                               "'USER:PASSWORD@'",
                               url);
        if (!decode_part(out->user, sizeof(out->user), p, (size_t)(colon - p)) ||
            !decode_part(out->password, sizeof(out->password), colon + 1,
                         (size_t)(at - colon - 1)))
            return flow__error(err, FLOW_EINVAL,
                               "redis URL '%s': the user or password is too long or has a bad "
                               "%%XX escape",
                               url);
        p = at + 1;
    }
    size_t hp = strcspn(p, "/?");
    const char *host = p, *port = NULL;
    size_t host_len = hp;
    if (*p == '[') {
        const char *close = memchr(p, ']', hp);
        if (!close)
            return flow__error(err, FLOW_EINVAL, "redis URL '%s': '[' without ']'", url);
        host = p + 1;
        host_len = (size_t)(close - p - 1);
        if (close + 1 < p + hp) {
            if (close[1] != ':')
                return flow__error(err, FLOW_EINVAL, "redis URL '%s': bad host", url);
            port = close + 2;
        }
    } else {
        const char *colon = memchr(p, ':', hp);
        if (colon) {
            host_len = (size_t)(colon - p);
            port = colon + 1;
        }
    }
    if (host_len == 0 || host_len >= sizeof(out->host))
        return flow__error(err, FLOW_EINVAL, "redis URL '%s' has no host (redis://HOST[:PORT])",
                           url);
    memcpy(out->host, host, host_len);
    out->host[host_len] = 0;
    if (port) {
        long v;
        if (!parse_int(port, (size_t)(p + hp - port), 1, 65535, &v))
            return flow__error(err, FLOW_EINVAL, "bad port '%.*s' in redis URL '%s' (1 to 65535)",
                               (int)(p + hp - port), port, url);
        out->port = (int)v;
    }
    p += hp;
    if (*p == '/') {
        p++;
        size_t dl = strcspn(p, "?");
        if (dl) {
            long v;
            if (!parse_int(p, dl, 0, 1000000, &v))
                return flow__error(err, FLOW_EINVAL,
                                   "bad database '%.*s' in redis URL '%s' (a number, 0 to "
                                   "15 on a default server)",
                                   (int)dl, p, url);
            out->db = (int)v;
        }
        p += dl;
    }
    if (*p == '?') {
        flow_err rc = parse_query(url, p + 1, out, err);
        if (rc)
            return rc;
    }
    snprintf(out->shown, sizeof(out->shown), "redis://%s%s%s:%d/%d", strchr(out->host, ':') ? "[" : "",
             out->host, strchr(out->host, ':') ? "]" : "", out->port, out->db);
    return FLOW_OK;
}

static struct timeval to_timeval(double s)
{
    struct timeval tv;
    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
    return tv;
}

static flow_err reply_error(const struct flow__redis_addr *a, redisContext *c, redisReply *r,
                            const char *what, size_t what_len, flow_error *err)
{
    if (!r) {
        const char *why = c->errstr[0] ? c->errstr : "connection lost";
        if (c->err == REDIS_ERR_IO && errno == EAGAIN)
            why = "timed out";
        return flow__error(err, FLOW_EIO, "redis %s: %.*s: %s", a->shown, (int)what_len, what,
                           why);
    }
    flow__error(err, FLOW_EIO, "redis %s: %.*s: %.*s", a->shown, (int)what_len, what,
                (int)(r->len > 300 ? 300 : r->len), r->str ? r->str : "error");
    freeReplyObject(r);
    return FLOW_EIO;
}

/* hiredis writes with write(): to a server that went away that raises
 * SIGPIPE, which would kill a process that does not ignore it (a library
 * must not change that for its host). So the calling thread blocks SIGPIPE
 * around a command and takes back one raised meanwhile (EPIPE says it all).
 * Returns whether one was pending already (then it is left alone). */
static bool sigpipe_block(sigset_t *old)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pending);
    pthread_sigmask(SIG_BLOCK, &set, old);
    return sigismember(&pending, SIGPIPE) == 1;
}

static void sigpipe_restore(const sigset_t *old, bool was_pending)
{
    int saved = errno; /* the caller reads the command's errno */
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    if (!was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, old, NULL);
    errno = saved;
}

redisReply *flow__redis_cmdv(redisContext *c, const struct flow__redis_addr *a, flow_error *err,
                             int argc, const char **argv, const size_t *argvlen)
{
    sigset_t old;
    bool pending = sigpipe_block(&old);
    redisReply *r = redisCommandArgv(c, argc, argv, argvlen);
    sigpipe_restore(&old, pending);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        reply_error(a, c, r, argv[0], argvlen ? argvlen[0] : strlen(argv[0]), err);
        return NULL;
    }
    return r;
}

redisReply *flow__redis_cmd(redisContext *c, const struct flow__redis_addr *a, flow_error *err,
                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sigset_t old;
    bool pending = sigpipe_block(&old);
    redisReply *r = redisvCommand(c, fmt, ap);
    sigpipe_restore(&old, pending);
    va_end(ap);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        reply_error(a, c, r, fmt, strcspn(fmt, " "), err);
        return NULL;
    }
    return r;
}

redisContext *flow__redis_connect(const struct flow__redis_addr *a, double timeout_s,
                                  flow_error *err)
{
    struct timeval tv = to_timeval(timeout_s > 0 ? timeout_s : 3600.0 * 24 * 365);
    redisContext *c = timeout_s > 0 ? redisConnectWithTimeout(a->host, a->port, tv)
                                    : redisConnect(a->host, a->port);
    if (!c) {
        flow__error(err, FLOW_ENOMEM, "out of memory connecting to %s", a->shown);
        return NULL;
    }
    if (c->err) {
        flow__error(err, FLOW_EIO, "cannot connect to %s: %s", a->shown, c->errstr);
        redisFree(c);
        return NULL;
    }
    if (timeout_s > 0 && redisSetTimeout(c, tv) != REDIS_OK) {
        flow__error(err, FLOW_EIO, "cannot set the timeout of the connection to %s", a->shown);
        redisFree(c);
        return NULL;
    }
    redisReply *r = NULL;
    if (a->password[0]) {
        if (a->user[0])
            r = flow__redis_cmd(c, a, err, "AUTH %s %s", a->user, a->password);
        else
            r = flow__redis_cmd(c, a, err, "AUTH %s", a->password);
        if (!r)
            goto fail;
        freeReplyObject(r);
    }
    if (a->db) {
        r = flow__redis_cmd(c, a, err, "SELECT %d", a->db);
        if (!r)
            goto fail;
        freeReplyObject(r);
    }
    return c;
fail:
    redisFree(c);
    return NULL;
}

/* CONFIG GET name -> value in `out`; false (err filled) when unreadable. */
static bool config_get(redisContext *c, const struct flow__redis_addr *a, const char *name,
                       char *out, size_t cap, flow_error *err)
{
    redisReply *r = flow__redis_cmd(c, a, err, "CONFIG GET %s", name);
    if (!r)
        return false;
    bool ok = false;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->str) {
        snprintf(out, cap, "%s", r->element[1]->str);
        ok = true;
    } else {
        flow__error(err, FLOW_EIO, "redis %s: CONFIG GET %s gave no value", a->shown, name);
    }
    freeReplyObject(r);
    return ok;
}

flow_err flow__redis_check_durability(redisContext *c, const struct flow__redis_addr *a,
                                      bool strict, flow_error *err)
{
    char policy[64], aof[16], fsync[16];
    if (!config_get(c, a, "maxmemory-policy", policy, sizeof(policy), err))
        return err ? err->code : FLOW_EIO;
    if (strcmp(policy, "noeviction") != 0)
        return flow__error(err, FLOW_EUNSUPPORTED,
                           "redis %s evicts keys (maxmemory-policy is '%s'): libflow would lose "
                           "runs and tasks; set maxmemory-policy to noeviction",
                           a->shown, policy);
    if (!strict)
        return FLOW_OK;
    if (!config_get(c, a, "appendonly", aof, sizeof(aof), err) ||
        !config_get(c, a, "appendfsync", fsync, sizeof(fsync), err))
        return err ? err->code : FLOW_EIO;
    if (strcmp(aof, "yes") != 0 || strcmp(fsync, "always") != 0)
        return flow__error(err, FLOW_EUNSUPPORTED,
                           "durability strict needs redis %s to fsync every write: it has "
                           "appendonly '%s' and appendfsync '%s' (set appendonly yes and "
                           "appendfsync always)",
                           a->shown, aof, fsync);
    return FLOW_OK;
}

const char *flow__redis_url_from_env(const char *explicit_url)
{
    if (explicit_url && *explicit_url)
        return explicit_url;
    const char *env = getenv("FLOW_REDIS");
    return env && *env ? env : NULL;
}

bool flow__redis_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 100)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.:-", s[i]))
            return false;
    return true;
}
