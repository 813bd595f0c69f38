/* store.c -- the store registry: picks a backend by URL scheme and holds the
 * open store; also what every backend shares: URL and run id checks, the
 * directories of a store, and leases held by "pid@host" (see store.h and
 * docs/internals/store.md). */
#include "util/compat.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"

#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fnv.h"

/* NULL-terminated; backends that need optional libraries go in #ifdefs. */
static const struct flow__store_ops *const store_backends[] = {
    &flow__store_sqlite_ops,
    &flow__store_disk_ops,
    &flow__store_memory_ops,
    &flow__store_redis_ops,
    NULL,
};

void flow__run_meta_cleanup(struct flow__run_meta *m)
{
    if (!m)
        return;
    flow__free(m->flow);
    flow__free(m->version);
    flow__free(m->def_hash);
    flow__free(m->source);
    flow__free(m->parent);
    json_decref(m->inputs);
    memset(m, 0, sizeof(*m));
}

/* A copy of `s` (NULL stays NULL) into *out; false when out of memory. */
static bool dup_opt(const char *s, char **out)
{
    *out = s ? flow__strdup(s) : NULL;
    return !s || *out;
}

flow_err flow__run_meta_copy(struct flow__run_meta *dst, const struct flow__run_meta *src)
{
    memset(dst, 0, sizeof(*dst));
    memcpy(dst->id, src->id, sizeof(dst->id));
    dst->id[sizeof(dst->id) - 1] = '\0';
    dst->status = src->status;
    dst->created_at = src->created_at;
    dst->ended_at = src->ended_at;
    /* A deep copy: the caller may change its inputs after run_create, and
     * what run_get returns is the caller's to change. */
    if (src->inputs) {
        dst->inputs = json_deep_copy(src->inputs);
        if (!dst->inputs)
            goto out_nomem;
    }
    if (dup_opt(src->flow, &dst->flow) && dup_opt(src->version, &dst->version) &&
        dup_opt(src->def_hash, &dst->def_hash) && dup_opt(src->source, &dst->source) &&
        dup_opt(src->parent, &dst->parent))
        return FLOW_OK;
out_nomem:
    flow__run_meta_cleanup(dst);
    return FLOW_ENOMEM;
}

flow_err flow__store_check_id(const char *store, const char *id, flow_error *err)
{
    size_t len = strnlen(id, sizeof(((struct flow__run_meta *)0)->id));
    if (len == 0)
        return flow__error(err, FLOW_EINVAL, "empty run id for store '%s'", store);
    if (len == sizeof(((struct flow__run_meta *)0)->id))
        return flow__error(err, FLOW_EINVAL, "run id '%.20s...' is too long for store '%s'", id,
                           store);
    if (strchr(id, '/') || id[0] == '.')
        return flow__error(err, FLOW_EINVAL,
                           "invalid run id '%s' for store '%s' (it may not contain '/' or "
                           "start with '.')",
                           id, store);
    return FLOW_OK;
}

flow_err flow__store_parse_url(const char *scheme, const char *rest, char **path, bool *strict,
                               flow_error *err)
{
    *path = NULL;
    *strict = false;
    const char *q = strchr(rest, '?');
    size_t plen = q ? (size_t)(q - rest) : strlen(rest);
    if (plen == 0)
        return flow__error(err, FLOW_EINVAL, "store url '%s:%s' has no path", scheme, rest);
    if (q) {
        const char *opt = q + 1;
        if (!strcmp(opt, "durability=strict"))
            *strict = true;
        else if (strcmp(opt, "durability=normal") != 0)
            return flow__error(err, FLOW_EINVAL,
                               "unknown option '%s' in store url '%s:%s' (known: "
                               "durability=normal, durability=strict)",
                               opt, scheme, rest);
    }
    *path = flow__strndup(rest, plen);
    if (!*path)
        return flow__error(err, FLOW_ENOMEM, "out of memory opening store '%s:%s'", scheme, rest);
    return FLOW_OK;
}

flow_err flow__store_make_dirs(const char *path, bool self, flow_error *err)
{
    char *dir = flow__strdup(path);
    if (!dir)
        return flow__error(err, FLOW_ENOMEM, "out of memory opening store '%s'", path);
    flow_err rc = FLOW_OK;
    for (char *p = dir + 1;; p++) {
        bool last = *p == '\0';
        if (last && !self)
            break;
        if (*p != '/' && !last)
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            rc = flow__error_errno(err, errno, "cannot create directory '%s' for store '%s'", dir,
                                   path);
            break;
        }
        if (last)
            break;
        *p = '/';
    }
    flow__free(dir);
    return rc;
}

/* One path of the default store, a directory or a file. */
static flow_err check_private(const char *path, bool want_dir, flow_error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return FLOW_OK;
        return flow__error_errno(err, errno, "cannot check store path '%s'", path);
    }
    char cwd[4096];
    const char *where = path;
    char full[4096 + 256];
    if (path[0] != '/' && getcwd(cwd, sizeof(cwd))) {
        snprintf(full, sizeof(full), "%s/%s", strcmp(cwd, "/") ? cwd : "", path);
        where = full;
    }
    const char *what = want_dir ? "directory" : "file";
    const char *choose = "or choose a store with --store or FLOW_STORE";
    if (S_ISLNK(st.st_mode))
        return flow__error(err, FLOW_EINVAL,
                           "store %s '%s' is a symbolic link, which is never followed: replace "
                           "it with a %s of your own, %s",
                           what, where, what, choose);
    if (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
        return flow__error(err, FLOW_EINVAL, "store %s '%s' is not a %s: remove it, %s", what,
                           where, want_dir ? "directory" : "regular file", choose);
    if (st.st_uid != geteuid())
        return flow__error(err, FLOW_EINVAL,
                           "store %s '%s' belongs to another user (uid %ld): use a %s of your "
                           "own, %s",
                           what, where, (long)st.st_uid, what, choose);
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return flow__error(err, FLOW_EINVAL,
                           "store %s '%s' is writable by others (mode %04o): run 'chmod go-w "
                           "%s', %s",
                           what, where, (unsigned)(st.st_mode & 07777), where, choose);
    return FLOW_OK;
}

flow_err flow__store_check_private(const char *dir, const char *file, flow_error *err)
{
    flow_err rc = check_private(dir, true, err);
    if (rc == FLOW_OK && file)
        rc = check_private(file, false, err);
    return rc;
}

void *flow__store_run_entry(struct flow__strmap *map, const char *id, size_t size,
                            bool *created)
{
    *created = false;
    char *e = flow__strmap_get(map, id);
    if (e)
        return e;
    size_t idsize = sizeof(((struct flow__run_meta *)0)->id);
    e = size >= idsize ? flow__calloc(1, size) : NULL;
    if (!e)
        return NULL;
    snprintf(e, idsize, "%s", id);
    if (flow__strmap_put(map, e, e) != FLOW_OK) {
        flow__free(e);
        return NULL;
    }
    *created = true;
    return e;
}

void flow__store_run_entries_free(struct flow__strmap *map, void (*release)(void *entry))
{
    for (size_t i = 0; map->mask && i <= map->mask; i++) {
        void *e = map->slots[i].value;
        if (!e)
            continue;
        if (release)
            release(e);
        flow__free(e);
    }
    flow__strmap_cleanup(map);
}

flow_err flow__store_newer_format(flow_error *err, const char *path, long format)
{
    return flow__error(err, FLOW_EUNSUPPORTED,
                       "store '%s' has format %ld; this libflow understands up to %d: "
                       "upgrade libflow",
                       path, format, FLOW__STORE_FORMAT);
}

/* ---- leases -------------------------------------------------------------- */

void flow__lease_holder(char *out, size_t size)
{
    char host[256];
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    snprintf(out, size, "%ld@%s", (long)getpid(), host);
}

/* Split "PID@HOST": the pid (0 when it is not a number) and the host. */
static long holder_pid(const char *holder, const char **host)
{
    const char *at = strchr(holder, '@');
    *host = at ? at + 1 : NULL;
    if (!at || at == holder)
        return 0;
    char *end;
    errno = 0;
    long pid = strtol(holder, &end, 10);
    if (errno || end != at || pid <= 0)
        return 0;
    return pid;
}

/* A process that died and was not reaped yet still answers kill(pid, 0):
 * a runner killed a moment ago is one until its parent waits for it. Where
 * there is no /proc, nobody can tell: alive. */
static bool process_is_dead_zombie(long pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[512];
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = '\0';
    /* "PID (COMM) STATE ...": COMM may hold spaces and parentheses. */
    const char *close = strrchr(line, ')');
    return close && close[1] == ' ' && (close[2] == 'Z' || close[2] == 'X');
}

bool flow__lease_is_live(const char *holder, double expiry, double now)
{
    if (expiry <= now)
        return false;
    const char *host;
    long pid = holder_pid(holder, &host);
    if (pid <= 0 || (long)(pid_t)pid != pid)
        return true; /* not ours to judge: live until it expires */
    char me[256];
    if (gethostname(me, sizeof(me)) != 0)
        return true;
    me[sizeof(me) - 1] = '\0';
    if (strcmp(host, me) != 0)
        return true;
    /* EPERM means the process exists (another user's): still live. */
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return false;
    return !process_is_dead_zombie(pid);
}

flow_err flow__lease_busy(flow_error *err, const char *id, const char *holder, double expiry,
                          double now)
{
    const char *host;
    long pid = holder_pid(holder ? holder : "", &host);
    char who[320];
    if (pid > 0)
        snprintf(who, sizeof(who), "pid %ld on host %s", pid, host);
    else if (holder && *holder)
        snprintf(who, sizeof(who), "'%s'", holder);
    else
        snprintf(who, sizeof(who), "another process");
    if (expiry == 0)
        return flow__error(err, FLOW_EBUSY, "run '%s' is being executed by %s", id, who);
    double left = ceil(expiry - now);
    return flow__error(err, FLOW_EBUSY, "run '%s' is being executed by %s (lease expires in %.0fs)",
                       id, who, left > 0 ? left : 0);
}

flow_err flow__lease_check(flow_error *err, const char *id, const char *current, double expiry,
                           const char *holder, double now)
{
    if (!current || !strcmp(current, holder) || !flow__lease_is_live(current, expiry, now))
        return FLOW_OK;
    return flow__lease_busy(err, id, current, expiry, now);
}

/* ---- the registry ---------------------------------------------------------- */

/* "sqlite, disk" for messages; `out` must be large enough. */
static void scheme_list(char *out, size_t size)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; store_backends[i] && len < size; i++) {
        int n = snprintf(out + len, size - len, "%s%s", i ? ", " : "",
                         store_backends[i]->scheme);
        if (n < 0)
            break;
        len += (size_t)n;
    }
}

flow_err flow__store_open_flags(const char *url, unsigned flags, struct flow__store **out,
                                flow_error *err)
{
    *out = NULL;
    if (!url || !*url)
        return flow__error(err, FLOW_EINVAL, "empty store url");
    const char *colon = strchr(url, ':');
    char schemes[256];
    scheme_list(schemes, sizeof(schemes));
    if (!colon || colon == url)
        return flow__error(err, FLOW_EINVAL,
                           "store url '%s' has no scheme (expected scheme:..., built in: %s)",
                           url, schemes);
    size_t slen = (size_t)(colon - url);
    const struct flow__store_ops *ops = NULL;
    for (size_t i = 0; store_backends[i]; i++) {
        if (strlen(store_backends[i]->scheme) == slen &&
            !memcmp(store_backends[i]->scheme, url, slen)) {
            ops = store_backends[i];
            break;
        }
    }
    if (!ops)
        return flow__error(err, FLOW_EINVAL, "unknown store scheme '%.*s' in '%s' (built in: %s)",
                           (int)slen, url, url, schemes);

    struct flow__store *s = flow__calloc(1, sizeof(*s));
    char *copy = flow__strdup(url);
    if (!s || !copy) {
        flow__free(s);
        flow__free(copy);
        return flow__error(err, FLOW_ENOMEM, "out of memory opening store '%s'", url);
    }
    flow_err rc = ops->open(colon + 1, flags, &s->priv, err);
    if (rc != FLOW_OK) {
        flow__free(s);
        flow__free(copy);
        return rc;
    }
    s->ops = ops;
    s->url = copy;
    *out = s;
    return FLOW_OK;
}

flow_err flow__store_open(const char *url, struct flow__store **out, flow_error *err)
{
    return flow__store_open_flags(url, 0, out, err);
}

void flow__store_close(struct flow__store *s)
{
    if (!s)
        return;
    s->ops->close(s->priv);
    flow__secrets_unref(s->secrets);
    flow__free(s->url);
    flow__free(s);
}

/* ---- answers ------------------------------------------------------------ */

bool flow__store_answer_late(double not_after)
{
    return not_after > 0 && flow__wall_time() >= not_after;
}

flow_err flow__store_answer_expired(flow_error *err, const char *run_id, const char *request,
                                    double not_after)
{
    char at[40];
    if (!flow__rfc3339(not_after, at, sizeof(at)))
        snprintf(at, sizeof(at), "its deadline");
    return flow__error(err, FLOW_ETIMEOUT,
                       "request '%s' of run '%s' expired at %s: its timeout answer stands",
                       request, run_id, at);
}

flow_err flow__store_answer_taken(flow_error *err, const char *run_id, const char *request,
                                  const json_t *winner)
{
    const char *by = json_string_value(json_object_get(winner, "by"));
    const char *at = json_string_value(json_object_get(winner, "at"));
    return flow__error(err, FLOW_EEXISTS, "request '%s' of run '%s' was already answered by %s%s%s",
                       request, run_id, by ? by : "someone", at ? " at " : "", at ? at : "");
}

/* ---- limits ----------------------------------------------------------------- */

flow_err flow__limit_check(const char *store, const char *kind, const char *key, int limit,
                           double span, flow_error *err)
{
    if (!key)
        return flow__error(err, FLOW_EINVAL, "no %s key for store '%s'", kind, store);
    if (limit < 1)
        return flow__error(err, FLOW_EINVAL, "%s key '%.200s' has limit %d in store '%s' (at "
                                             "least 1)",
                           kind, key, limit, store);
    if (!(span > 0) || !isfinite(span))
        return flow__error(err, FLOW_EINVAL, "%s key '%.200s' has a bad %s (%g) in store '%s'",
                           kind, key, strcmp(kind, "rate") ? "ttl" : "window", span, store);
    return FLOW_OK;
}

int flow__slot_pick(const int *busy, size_t nbusy, int limit, int want, int *slots)
{
    int got = 0;
    size_t i = 0;
    /* At most nbusy + want turns: every number passed is busy or taken. */
    for (int n = 0; n < limit && got < want; n++) {
        while (i < nbusy && busy[i] < n)
            i++;
        if (i < nbusy && busy[i] == n)
            continue;
        slots[got++] = n;
    }
    return got;
}

flow_err flow__slot_push(json_t *list, const char *key, int slot, const char *holder,
                         const char *owner, double expires)
{
    json_t *o = json_pack("{s:s, s:i, s:s, s:s?, s:f}", "key", key, "slot", slot, "holder",
                          holder, "owner", owner, "expires", expires);
    if (!o || json_array_append_new(list, o) != 0)
        return FLOW_ENOMEM;
    return FLOW_OK;
}

static int slot_order(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    const char *kx = json_string_value(json_object_get(x, "key"));
    const char *ky = json_string_value(json_object_get(y, "key"));
    int c = strcmp(kx ? kx : "", ky ? ky : "");
    if (c)
        return c;
    json_int_t sx = json_integer_value(json_object_get(x, "slot"));
    json_int_t sy = json_integer_value(json_object_get(y, "slot"));
    return (sx > sy) - (sx < sy);
}

flow_err flow__slot_sort(json_t *list)
{
    size_t n = json_array_size(list);
    if (n < 2)
        return FLOW_OK;
    json_t **items = flow__calloc(n, sizeof(*items));
    if (!items)
        return FLOW_ENOMEM;
    for (size_t i = 0; i < n; i++)
        items[i] = json_array_get(list, i);
    qsort(items, n, sizeof(*items), slot_order);
    /* In place: the array keeps its references, only their order changes. */
    for (size_t i = 0; i < n; i++)
        json_incref(items[i]);
    for (size_t i = 0; i < n; i++)
        json_array_set_new(list, i, items[i]); /* replaces, so cannot fail */
    flow__free(items);
    return FLOW_OK;
}

static int double_order(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

size_t flow__rate_apply(double *starts, size_t n, int limit, double window, int want, double now,
                        int *got, double *retry_at)
{
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (starts[i] > now - window)
            starts[kept++] = starts[i];
    long room = (long)limit - (long)kept;
    int take = want < room ? want : (int)(room > 0 ? room : 0);
    if (take < 0)
        take = 0;
    for (int i = 0; i < take; i++)
        starts[kept + (size_t)i] = now;
    n = kept + (size_t)take;
    qsort(starts, n, sizeof(*starts), double_order);
    *got = take;
    *retry_at = 0;
    if (take < want && n > 0) {
        /* The next start may go when the window holds limit - 1: once the
         * (n - limit + 1)th oldest has left it (the oldest, unless the
         * limit was lowered since the others came). */
        size_t first = n >= (size_t)limit ? n - (size_t)limit : 0;
        *retry_at = starts[first] + window;
    }
    return n;
}

/* ---- cache entries (store.h): shared by the backends ------------------- */

void flow__cache_name(const char *fname, const char *task, const char *key, char out[33])
{
    /* Two hashes of the three texts, the second seeded apart: 128 bits, so
     * that two entries sharing a name (and so replacing each other) is
     * never seen in practice; a lookup still compares the names. */
    uint64_t a = flow__fnv_str(flow__fnv_str(flow__fnv_str(FLOW__FNV_INIT, fname), task), key);
    uint64_t b = flow__fnv_str(FLOW__FNV_INIT ^ 0x9e3779b97f4a7c15ULL, key);
    b = flow__fnv_str(flow__fnv_str(b, task), fname);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
}

json_t *flow__cache_record(const char *fname, const char *task, const char *key,
                           const json_t *entry, double now, double expires)
{
    return json_pack("{s:s,s:s,s:s,s:f,s:f,s:O}", "flow", fname, "task", task, "key", key,
                     "created", now, "expires", expires, "entry", (json_t *)entry);
}

bool flow__cache_record_expired(const json_t *rec, double now)
{
    json_t *exp = json_object_get(rec, "expires");
    if (!json_is_number(exp) || !json_object_get(rec, "entry"))
        return true;
    double e = json_number_value(exp);
    return e > 0 && e <= now;
}

void flow__cache_record_open(json_t *rec, const char *fname, const char *task, const char *key,
                             double now, json_t **entry, double *created)
{
    *entry = NULL;
    *created = 0;
    const char *f = json_string_value(json_object_get(rec, "flow"));
    const char *t = json_string_value(json_object_get(rec, "task"));
    const char *k = json_string_value(json_object_get(rec, "key"));
    if (!f || !t || !k || strcmp(f, fname) || strcmp(t, task) || strcmp(k, key) ||
        flow__cache_record_expired(rec, now))
        return;
    *entry = json_incref(json_object_get(rec, "entry"));
    *created = json_number_value(json_object_get(rec, "created"));
}
