/* store_disk_ctl.c -- the disk store's leases (an flock on a file per
 * run), control requests (numbered files, link()ed into place) and answers
 * to feedback requests (one file per request, link()ed: the first wins). The
 * layout is store_disk.c's. */
#include "util/compat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "store/disk_int.h"
#include "store/store.h"

#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/fnv.h"
#include "util/json.h"
#include "util/strmap.h"
#include "util/vec.h"

/* ------------------------------------------------------------------------ */
/* leases                                                                    */

/* The holder text in an open lease file, whitespace trimmed. */
static void dk_lease_text(int fd, char *out, size_t size)
{
    ssize_t n = pread(fd, out, size - 1, 0);
    size_t len = n > 0 ? (size_t)n : 0;
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == ' ' || out[len - 1] == '\0'))
        len--;
    out[len] = '\0';
}

flow_err flow__dk_lease_acquire(void *priv, const char *id, const char *holder, double now,
                                double ttl, flow_error *err)
{
    struct dk_store *s = priv;
    FLOW__UNUSED(ttl); /* the lock lasts as long as its holder's process */
    char what[160];
    snprintf(what, sizeof(what), "cannot take the lease on run '%s'", id);
    flow_err rc = flow__dk_run_exists(s, id, err);
    if (rc != FLOW_OK)
        return rc;
    struct dk_run *c = flow__dk_run_cache(s, id);
    if (!c)
        return flow__error(err, FLOW_ENOMEM, "%s in store '%s': out of memory", what, s->path);
    if (c->lease_fd >= 0) {
        struct stat st;
        if (fstat(c->lease_fd, &st) == 0 && st.st_nlink > 0) {
            if (!strcmp(c->lease_holder, holder))
                return FLOW_OK; /* a renewal: the lock is still ours */
            return flow__lease_busy(err, id, c->lease_holder, 0, now);
        }
        flow__dk_lease_drop(c); /* the run was deleted and made again elsewhere */
    }
    char *mine = flow__strdup(holder);
    if (!mine)
        return flow__error(err, FLOW_ENOMEM, "%s in store '%s': out of memory", what, s->path);
    char rel[DK_PATH_MAX];
    flow__dk_run_path(rel, sizeof(rel), id, "lease");
    int fd = openat(s->runsfd, rel, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = errno == ENOENT ? flow__dk_no_run(s, id, err)
                             : flow__error_errno(err, errno, "%s in store '%s'", what, s->path);
        goto out_free;
    }
    int locked;
    while ((locked = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR)
        ;
    if (locked != 0) {
        if (errno == EWOULDBLOCK) {
            char text[256];
            dk_lease_text(fd, text, sizeof(text));
            rc = flow__lease_busy(err, id, text, 0, now);
        } else {
            rc = flow__error_errno(err, errno, "%s in store '%s'", what, s->path);
        }
        goto out_close;
    }
    size_t len = strlen(holder);
    if (fchmod(fd, 0600) != 0 || ftruncate(fd, 0) != 0 ||
        pwrite(fd, holder, len, 0) != (ssize_t)len) {
        rc = flow__error_errno(err, errno, "%s in store '%s'", what, s->path);
        goto out_close; /* closing releases the lock */
    }
    c->lease_fd = fd;
    c->lease_holder = mine;
    return FLOW_OK;

out_close:
    close(fd);
out_free:
    flow__free(mine);
    return rc;
}

flow_err flow__dk_lease_release(void *priv, const char *id, const char *holder, flow_error *err)
{
    struct dk_store *s = priv;
    FLOW__UNUSED(err);
    struct dk_run *c = flow__strmap_get(&s->runs, id);
    if (c && c->lease_fd >= 0 && !strcmp(c->lease_holder, holder))
        flow__dk_lease_drop(c);
    return FLOW_OK;
}

/* A lease is live while its file is locked: try to take a shared lock. */
flow_err flow__dk_lease_get(void *priv, const char *id, double now, char **holder, flow_error *err)
{
    struct dk_store *s = priv;
    FLOW__UNUSED(now);
    *holder = NULL;
    flow_err rc = flow__dk_run_exists(s, id, err);
    if (rc != FLOW_OK)
        return rc;
    struct dk_run *c = flow__strmap_get(&s->runs, id);
    if (c && c->lease_fd >= 0) { /* ours */
        *holder = flow__strdup(c->lease_holder);
        return *holder ? FLOW_OK : flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    char rel[DK_PATH_MAX];
    flow__dk_run_path(rel, sizeof(rel), id, "lease");
    int fd = openat(s->runsfd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return FLOW_OK; /* never leased */
    int locked;
    while ((locked = flock(fd, LOCK_SH | LOCK_NB)) != 0 && errno == EINTR)
        ;
    if (locked != 0 && errno == EWOULDBLOCK) {
        char text[256];
        dk_lease_text(fd, text, sizeof(text));
        *holder = flow__strdup(text);
        if (!*holder)
            rc = flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    close(fd); /* drops the shared lock if we got it */
    return rc;
}

/* ------------------------------------------------------------------------ */
/* control requests                                                          */

/* The number a control request's file name stands for, or 0 when the name
 * is not one (temp files). */
static uint64_t dk_ctl_number(const char *name)
{
    if (strlen(name) != DK_CTL_NAME_LEN)
        return 0;
    uint64_t v = 0;
    for (const char *p = name; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    return v;
}

/* The lowest and highest request numbers in control dir `cfd` (0 when
 * none). 0 or an errno. */
static int dk_ctl_bounds(int cfd, uint64_t *lo, uint64_t *hi)
{
    *lo = *hi = 0;
    int fd = flow__dk_open_dir(cfd, ".");
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return e;
    }
    struct dirent *e;
    while ((errno = 0, e = readdir(d))) {
        uint64_t v = dk_ctl_number(e->d_name);
        if (v && (!*lo || v < *lo))
            *lo = v;
        if (v > *hi)
            *hi = v;
    }
    int rc = errno;
    closedir(d);
    return rc;
}

/* Open run `id`'s control directory; with `make`, create it when the run
 * exists without one. -1 with errno (ENOENT: no such run). */
static int dk_ctl_open(struct dk_store *s, const char *id, bool make)
{
    char rel[DK_PATH_MAX];
    if (!flow__dk_run_path(rel, sizeof(rel), id, "control")) {
        errno = ENOENT;
        return -1;
    }
    int fd = flow__dk_open_dir(s->runsfd, rel);
    if (fd >= 0 || errno != ENOENT || !make || flow__dk_run_exists(s, id, NULL) != FLOW_OK)
        return fd;
    if (mkdirat(s->runsfd, rel, 0700) != 0 && errno != EEXIST)
        return -1;
    return flow__dk_open_dir(s->runsfd, rel);
}

flow_err flow__dk_control_put(void *priv, const char *id, const char *kind, const char *arg,
                              flow_error *err)
{
    struct dk_store *s = priv;
    char what[160];
    snprintf(what, sizeof(what), "cannot send '%s' to run '%s'", kind, id);
    int cfd = dk_ctl_open(s, id, true);
    if (cfd < 0) {
        if (errno == ENOENT)
            return flow__dk_no_run(s, id, err);
        return flow__error_errno(err, errno, "%s in store '%s'", what, s->path);
    }
    json_t *o = json_pack("{s:s, s:s?}", "kind", kind, "arg", arg);
    flow__buf_reset(&s->buf);
    flow_err rc = o ? flow__json_append(&s->buf, o, JSON_COMPACT) : FLOW_ENOMEM;
    json_decref(o);
    if (rc != FLOW_OK) {
        close(cfd);
        return flow__error(err, rc, "%s in store '%s': out of memory", what, s->path);
    }
    char tmp[DK_PATH_MAX];
    flow__dk_temp_name(s, tmp, sizeof(tmp), "tmp", "ctl");
    uint64_t lo, hi;
    int e = dk_ctl_bounds(cfd, &lo, &hi);
    if (!e)
        e = flow__dk_write_file(cfd, tmp, s->buf.data, s->buf.len);
    if (!e) {
        /* link() never replaces: a number another writer took is skipped. */
        char name[DK_CTL_NAME_LEN + 1];
        e = EEXIST;
        for (int i = 0; i < DK_CTL_TRIES && e == EEXIST; i++) {
            snprintf(name, sizeof(name), "%0*" PRIu64, DK_CTL_NAME_LEN, hi + 1 + (uint64_t)i);
            e = linkat(cfd, tmp, cfd, name, 0) == 0 ? 0 : errno;
        }
        unlinkat(cfd, tmp, 0);
        if (!e && fsync(cfd) != 0) {
            e = errno;
            unlinkat(cfd, name, 0);
        }
    }
    close(cfd);
    if (e)
        return flow__error_errno(err, e, "%s in store '%s'", what, s->path);
    return FLOW_OK;
}

/* Parse a request file's text into new strings. */
static flow_err dk_ctl_parse(const struct flow__buf *text, char **kind, char **arg)
{
    json_t *o = json_loadb(flow__buf_str(text), text->len, 0, NULL);
    const char *k = json_string_value(json_object_get(o, "kind"));
    const char *a = json_string_value(json_object_get(o, "arg"));
    flow_err rc = FLOW_OK;
    if (!k) {
        rc = FLOW_EPARSE;
    } else {
        *kind = flow__strdup(k);
        *arg = a ? flow__strdup(a) : NULL;
        if (!*kind || (a && !*arg)) {
            flow__free(*kind);
            flow__free(*arg);
            *kind = *arg = NULL;
            rc = FLOW_ENOMEM;
        }
    }
    json_decref(o);
    return rc;
}

flow_err flow__dk_control_take(void *priv, const char *id, char **kind, char **arg, flow_error *err)
{
    struct dk_store *s = priv;
    *kind = *arg = NULL;
    char what[160];
    snprintf(what, sizeof(what), "cannot take a request for run '%s'", id);
    int cfd = dk_ctl_open(s, id, false);
    if (cfd < 0) {
        if (errno == ENOENT)
            return FLOW_OK; /* no such run: no request */
        return flow__error_errno(err, errno, "%s in store '%s'", what, s->path);
    }
    struct flow__buf text;
    flow__buf_init(&text, DK_META_MAX);
    flow_err rc = FLOW_OK;
    for (int i = 0; i < DK_CTL_TRIES; i++) {
        uint64_t lo, hi;
        int e = dk_ctl_bounds(cfd, &lo, &hi);
        if (e) {
            rc = flow__error_errno(err, e, "%s in store '%s'", what, s->path);
            break;
        }
        if (!lo)
            break; /* none */
        char name[DK_CTL_NAME_LEN + 1];
        snprintf(name, sizeof(name), "%0*" PRIu64, DK_CTL_NAME_LEN, lo);
        e = flow__dk_read_file(cfd, name, &text);
        if (e == ENOENT)
            continue; /* another process took it */
        if (e) {
            rc = flow__error_errno(err, e, "%s in store '%s'", what, s->path);
            break;
        }
        char *k = NULL, *a = NULL;
        rc = dk_ctl_parse(&text, &k, &a);
        if (rc == FLOW_ENOMEM) {
            flow__error(err, rc, "%s in store '%s': out of memory", what, s->path);
            break;
        }
        /* Only whoever unlinks it has taken it. */
        if (unlinkat(cfd, name, 0) != 0) {
            e = errno;
            flow__free(k);
            flow__free(a);
            rc = FLOW_OK;
            if (e == ENOENT)
                continue;
            rc = flow__error_errno(err, e, "%s in store '%s'", what, s->path);
            break;
        }
        if (rc == FLOW_EPARSE) { /* a damaged request: dropped */
            rc = FLOW_OK;
            continue;
        }
        *kind = k;
        *arg = a;
        break;
    }
    flow__buf_cleanup(&text);
    close(cfd);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* answers                                                                   */

/* Request id -> file name. Bytes other than letters, digits, '_', '-' and a
 * '.' that does not come first are written %XX, so that two ids never
 * share a name and none is hidden ("." starts temp files). An id whose name
 * would be too long keeps the start of it plus "~" and its FNV-1a hash ('~'
 * is never written as itself, so such a name is never another id's); the
 * file also holds the id, and reading checks it. */
static void dk_answer_name(const char *request, char out[DK_ANS_NAME_MAX + 1])
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)request; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
                     (*p == '.' && p != (const unsigned char *)request);
        if (n + (plain ? 1 : 3) > DK_ANS_NAME_MAX) {
            if (n > DK_ANS_NAME_MAX - 17)
                n = DK_ANS_NAME_MAX - 17;
            snprintf(out + n, DK_ANS_NAME_MAX + 1 - n, "~%016llx",
                     (unsigned long long)flow__fnv_str(FLOW__FNV_INIT, request));
            return;
        }
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
}

/* Open run `id`'s answers/ directory; with `make`, create it when the run
 * exists without one. -1 with errno (ENOENT: no such run, or no answers
 * without `make`). */
static int dk_answers_open(struct dk_store *s, const char *id, bool make)
{
    char rel[DK_PATH_MAX];
    if (!flow__dk_run_path(rel, sizeof(rel), id, "answers")) {
        errno = ENOENT;
        return -1;
    }
    int fd = flow__dk_open_dir(s->runsfd, rel);
    if (fd >= 0 || errno != ENOENT || !make)
        return fd;
    flow_err exists = flow__dk_run_exists(s, id, NULL);
    if (exists != FLOW_OK) {
        errno = exists == FLOW_ENOTFOUND ? ENOENT : EIO;
        return -1;
    }
    if (mkdirat(s->runsfd, rel, 0700) != 0 && errno != EEXIST)
        return -1;
    return flow__dk_open_dir(s->runsfd, rel);
}

/* Read answer file `name` in `afd`: *request borrowed from *root (the
 * caller decrefs it), *answer borrowed likewise. ENOENT, another errno,
 * or EBADMSG for a file that is not an answer. */
static int dk_answer_read(int afd, const char *name, json_t **root, const char **request,
                          json_t **answer)
{
    *root = NULL;
    struct flow__buf text;
    flow__buf_init(&text, DK_META_MAX);
    int e = flow__dk_read_file(afd, name, &text);
    json_t *o = e ? NULL : json_loadb(flow__buf_str(&text), text.len, 0, NULL);
    flow__buf_cleanup(&text);
    if (e)
        return e;
    *request = json_string_value(json_object_get(o, "request"));
    *answer = json_object_get(o, "answer");
    if (!*request || !*answer) {
        json_decref(o);
        return EBADMSG;
    }
    *root = o;
    return 0;
}

/* The answer already recorded as `name` for `request`: FLOW_EEXISTS with
 * *winner (may be NULL) a new reference to it; FLOW_OK when there is none;
 * or an error. */
static flow_err dk_answer_first(struct dk_store *s, int afd, const char *name, const char *run_id,
                                const char *request, json_t **winner, const char *what,
                                flow_error *err)
{
    json_t *root;
    const char *req;
    json_t *answer;
    int e = dk_answer_read(afd, name, &root, &req, &answer);
    if (e == ENOENT)
        return FLOW_OK;
    if (!e && strcmp(req, request) != 0)
        e = EBADMSG; /* a hashed name of another id: never in practice */
    if (e == EBADMSG) {
        json_decref(root);
        return flow__error(err, FLOW_EPARSE, "%s in store '%s': the answer file '%s' is damaged",
                           what, s->path, name);
    }
    if (e)
        return flow__error_errno(err, e, "%s in store '%s'", what, s->path);
    flow_err rc = flow__store_answer_taken(err, run_id, request, answer);
    if (winner)
        *winner = json_incref(answer);
    json_decref(root);
    return rc;
}

flow_err flow__dk_answer_claim(void *priv, const char *run_id, const char *request, json_t *answer,
                               double not_after, json_t **winner, flow_error *err)
{
    struct dk_store *s = priv;
    char what[300];
    snprintf(what, sizeof(what), "cannot answer request '%.100s' of run '%s'", request, run_id);
    int afd = dk_answers_open(s, run_id, true);
    if (afd < 0) {
        if (errno == ENOENT)
            return flow__dk_no_run(s, run_id, err);
        return flow__error_errno(err, errno, "%s in store '%s'", what, s->path);
    }
    char name[DK_ANS_NAME_MAX + 1];
    dk_answer_name(request, name);
    flow_err rc = dk_answer_first(s, afd, name, run_id, request, winner, what, err);
    if (rc == FLOW_OK && flow__store_answer_late(not_after))
        rc = flow__store_answer_expired(err, run_id, request, not_after);
    json_t *o = NULL;
    if (rc == FLOW_OK) {
        o = json_pack("{s:s, s:O}", "request", request, "answer", answer);
        flow__buf_reset(&s->buf);
        rc = o ? flow__json_append(&s->buf, o, JSON_COMPACT) : FLOW_ENOMEM;
        if (rc == FLOW_OK)
            rc = flow__buf_appendc(&s->buf, '\n');
        json_decref(o);
        if (rc != FLOW_OK)
            flow__error(err, rc, "%s in store '%s': out of memory", what, s->path);
    }
    if (rc != FLOW_OK) {
        close(afd);
        return rc;
    }
    char tmp[DK_PATH_MAX];
    flow__dk_temp_name(s, tmp, sizeof(tmp), "tmp", "answer");
    int e = flow__dk_write_file(afd, tmp, s->buf.data, s->buf.len);
    if (!e) {
        /* The compare-and-set: link() fails on a name that exists. */
        e = linkat(afd, tmp, afd, name, 0) == 0 ? 0 : errno;
        unlinkat(afd, tmp, 0);
        if (!e && fsync(afd) != 0) {
            e = errno;
            unlinkat(afd, name, 0);
        }
    }
    if (e == EEXIST) {
        rc = dk_answer_first(s, afd, name, run_id, request, winner, what, err);
        if (rc == FLOW_OK) /* it was taken back (a failed sync): still not ours */
            rc = flow__error(err, FLOW_EBUSY,
                             "%s in store '%s': another answer came at the same "
                             "time",
                             what, s->path);
    } else if (e) {
        rc = flow__error_errno(err, e, "%s in store '%s'", what, s->path);
    }
    close(afd);
    return rc;
}

flow_err flow__dk_answer_list(void *priv, const char *run_id, json_t **out, flow_error *err)
{
    struct dk_store *s = priv;
    char what[160];
    snprintf(what, sizeof(what), "cannot read the answers of run '%s'", run_id);
    int afd = dk_answers_open(s, run_id, false);
    if (afd < 0 && errno != ENOENT)
        return flow__error_errno(err, errno, "%s in store '%s'", what, s->path);
    if (afd < 0) { /* no answers yet, or no run */
        flow_err rc = flow__dk_run_exists(s, run_id, err);
        if (rc == FLOW_OK && !(*out = json_object()))
            rc = flow__error(err, FLOW_ENOMEM, "%s in store '%s': out of memory", what, s->path);
        return rc;
    }
    int fd = flow__dk_open_dir(afd, ".");
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    json_t *all = json_object();
    flow_err rc = FLOW_OK;
    if (!d || !all) {
        rc = !all ? flow__error(err, FLOW_ENOMEM, "%s in store '%s': out of memory", what, s->path)
                  : flow__error_errno(err, errno, "%s in store '%s'", what, s->path);
        if (!d && fd >= 0)
            close(fd);
    }
    struct dirent *ent;
    while (d && rc == FLOW_OK && (errno = 0, ent = readdir(d))) {
        if (ent->d_name[0] == '.')
            continue; /* ".", "..", temp files */
        json_t *root;
        const char *request;
        json_t *answer;
        int e = dk_answer_read(afd, ent->d_name, &root, &request, &answer);
        if (e == ENOENT)
            continue;
        if (e == EBADMSG)
            rc = flow__error(err, FLOW_EPARSE,
                             "%s in store '%s': the answer file '%s' is "
                             "damaged",
                             what, s->path, ent->d_name);
        else if (e)
            rc = flow__error_errno(err, e, "%s in store '%s'", what, s->path);
        else if (json_object_set(all, request, answer) != 0)
            rc = flow__error(err, FLOW_ENOMEM, "%s in store '%s': out of memory", what, s->path);
        json_decref(root);
    }
    if (d && rc == FLOW_OK && errno != 0)
        rc = flow__error_errno(err, errno, "%s in store '%s'", what, s->path);
    if (d)
        closedir(d);
    close(afd);
    if (rc != FLOW_OK) {
        json_decref(all);
        return rc;
    }
    *out = all;
    return FLOW_OK;
}
