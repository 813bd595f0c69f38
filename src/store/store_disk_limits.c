/* store_disk_limits.c -- the disk store's limits (docs/internals/limits.md):
 * the slots of concurrency keys and the starts of rate keys, as files that
 * every process of the store shares. K is a key's file name (dk_limit_name),
 * H a holder's:
 *
 *   DIR/slots/K/key     the key itself
 *   DIR/slots/K/lock    flock'ed while a process looks and takes, gives back
 *                       or renews
 *   DIR/slots/K/N       slot N, held: its expiry, holder and owner
 *   DIR/slots/K/wH      H waits for slots of K: the mark's expiry, then H
 *   DIR/holders/H/K     empty: H may hold slots of K (where renew looks)
 *   DIR/rates/K         the starts of rate key K, one a line, flock'ed
 *
 * A key's directory appears whole (built under a dot name, renamed into
 * place), so it always has its key and lock. A slot file is written under a
 * temp name and renamed over, so that slot_list, which takes no lock, reads
 * whole files. Nothing is fsync'ed: slots and starts are leases, and a power
 * cut that loses the last of them loses nothing that matters (by the time
 * the machine is back their leases have expired and their windows gone by);
 * a slot file it leaves empty reads as free. The layout is store_disk.c's. */
#include "util/compat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/disk_int.h"
#include "store/store.h"

#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/fnv.h"
#include "util/json.h"
#include "util/vec.h"

#define DK_LIMIT_PLAIN 100   /* bytes of a key that its file name spells out */
#define DK_LIMIT_NAME_MAX 220 /* "k", 2 * DK_LIMIT_PLAIN hex digits, "~", 16 */
#define DK_MARK_TRIES 3

/* ------------------------------------------------------------------------ */
/* files and names                                                           */

/* A key (or holder) -> a file name: "k" and the hex of its bytes. A long one
 * keeps the hex of its first DK_LIMIT_PLAIN bytes, then "~" and the FNV-1a
 * of the whole ('~' is no hex digit: never a short key's name). Two long
 * keys that share both would share slots: stricter, never looser. */
static void dk_limit_name(const char *key, char out[DK_LIMIT_NAME_MAX + 1])
{
    static const char hex[] = "0123456789abcdef";
    size_t len = strlen(key), n = 0;
    out[n++] = 'k';
    for (size_t i = 0; i < len && i < DK_LIMIT_PLAIN; i++) {
        unsigned char b = (unsigned char)key[i];
        out[n++] = hex[b >> 4];
        out[n++] = hex[b & 15];
    }
    out[n] = '\0';
    if (len > DK_LIMIT_PLAIN)
        snprintf(out + n, DK_LIMIT_NAME_MAX + 1 - n, "~%016llx",
                 (unsigned long long)flow__fnv_str(FLOW__FNV_INIT, key));
}

/* DIR/`name`, kept open in *fd; with `make`, created when missing. -1 with
 * errno (ENOENT: none yet). */
static int dk_limits_dir(struct dk_store *s, int *fd, const char *name, bool make)
{
    if (*fd >= 0)
        return *fd;
    if (make && mkdirat(s->dirfd, name, 0700) != 0 && errno != EEXIST)
        return -1;
    *fd = flow__dk_open_dir(s->dirfd, name);
    return *fd;
}

/* Open slots/`kname` of `key` in `sfd`; with `make`, create it, whole, when
 * missing. -1 with errno (ENOENT: no slot of it was ever taken). */
static int dk_key_open(struct dk_store *s, int sfd, const char *kname, const char *key,
                       bool make)
{
    int kfd = flow__dk_open_dir(sfd, kname);
    if (kfd >= 0 || errno != ENOENT || !make)
        return kfd;
    char tmp[DK_PATH_MAX];
    flow__dk_temp_name(s, tmp, sizeof(tmp), "new", "slots");
    if (mkdirat(sfd, tmp, 0700) != 0)
        return -1;
    int tfd = flow__dk_open_dir(sfd, tmp);
    int e = tfd < 0 ? errno : flow__dk_put_file(tfd, "key", key, strlen(key), 0);
    if (!e)
        e = flow__dk_put_file(tfd, "lock", "", 0, 0);
    /* rename() does not replace a directory that has files: another
     * process made it first, and that one is as good. */
    if (!e && renameat(sfd, tmp, sfd, kname) != 0)
        e = errno;
    if (e) {
        if (tfd >= 0) {
            unlinkat(tfd, "key", 0);
            unlinkat(tfd, "lock", 0);
        }
        unlinkat(sfd, tmp, AT_REMOVEDIR);
    }
    if (tfd >= 0)
        close(tfd);
    if (e && e != EEXIST && e != ENOTEMPTY) {
        errno = e;
        return -1;
    }
    return flow__dk_open_dir(sfd, kname);
}

/* Take key directory `kfd`'s lock: the descriptor whose close gives it
 * back, or -1 with errno. It waits: every holder of it is quick. */
static int dk_key_lock(int kfd)
{
    int fd = openat(kfd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int rc;
    while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR)
        ;
    if (rc != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* ------------------------------------------------------------------------ */
/* slot files                                                                */

struct dk_held {
    int slot;
    char *holder;
    char *owner; /* may be NULL */
    double expires;
};

struct dk_helds {
    struct dk_held *items;
    size_t count, cap;
};

static void dk_helds_free(struct dk_helds *v)
{
    for (size_t i = 0; i < v->count; i++) {
        flow__free(v->items[i].holder);
        flow__free(v->items[i].owner);
    }
    FLOW__VEC_FREE(v);
}

/* A slot file's number, or -1 for another name (key, lock, temp files). */
static int dk_slot_number(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 10 || (name[0] == '0' && len > 1))
        return -1;
    long long v = 0;
    for (const char *p = name; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v <= INT_MAX ? (int)v : -1;
}

/* A slot file: "EXPIRES HOLDER-LENGTH OWNER-LENGTH\n" (-1: no owner), then
 * the holder's bytes and the owner's, whatever they are. */

/* Parse a slot file; false for one that is not (a power cut emptied it):
 * its slot is free. */
static bool dk_held_parse(const struct flow__buf *text, int slot, struct dk_held *out)
{
    const char *p = flow__buf_str(text);
    const char *nl = memchr(p, '\n', text->len);
    char *end;
    errno = 0;
    double expires = nl ? strtod(p, &end) : 0;
    long long hlen = nl && *end == ' ' ? strtoll(end + 1, &end, 10) : -1;
    long long olen = hlen >= 0 && *end == ' ' ? strtoll(end + 1, &end, 10) : -2;
    size_t body = nl ? text->len - (size_t)(nl + 1 - p) : 0;
    if (errno || olen < -1 || end != nl || (unsigned long long)hlen > body ||
        (unsigned long long)hlen + (olen > 0 ? (unsigned long long)olen : 0) != body) {
        errno = EBADMSG;
        return false;
    }
    *out = (struct dk_held){.slot = slot, .expires = expires};
    out->holder = flow__strndup(nl + 1, (size_t)hlen);
    out->owner = olen >= 0 ? flow__strndup(nl + 1 + hlen, (size_t)olen) : NULL;
    if (out->holder && (olen < 0 || out->owner))
        return true;
    flow__free(out->holder);
    flow__free(out->owner);
    errno = ENOMEM;
    return false;
}

/* Directory `name` of `dfd` to read (the DIR owns its descriptor); NULL
 * with errno set. */
static DIR *dk_dir_of(int dfd, const char *name)
{
    int fd = flow__dk_open_dir(dfd, name);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d && fd >= 0) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return d;
}

static int dk_held_order(const void *a, const void *b)
{
    const struct dk_held *x = a, *y = b;
    return (x->slot > y->slot) - (x->slot < y->slot);
}

/* The slots held in key directory `kfd`, by number. 0 or an errno. */
static int dk_slots_read(int kfd, struct dk_helds *out)
{
    memset(out, 0, sizeof(*out));
    DIR *d = dk_dir_of(kfd, ".");
    if (!d)
        return errno;
    struct flow__buf text;
    flow__buf_init(&text, DK_META_MAX);
    int e = 0;
    struct dirent *ent;
    while (!e && (errno = 0, ent = readdir(d))) {
        int slot = dk_slot_number(ent->d_name);
        if (slot < 0)
            continue;
        int r = flow__dk_read_file(kfd, ent->d_name, &text);
        if (r == ENOENT)
            continue; /* given back meanwhile (slot_list takes no lock) */
        if (r) {
            e = r;
            break;
        }
        struct dk_held h;
        if (!dk_held_parse(&text, slot, &h)) {
            if (errno == ENOMEM)
                e = ENOMEM;
            continue;
        }
        flow_err rc = FLOW_OK;
        FLOW__VEC_PUSH(out, h, rc);
        if (rc != FLOW_OK) {
            flow__free(h.holder);
            flow__free(h.owner);
            e = ENOMEM;
        }
    }
    if (!e && errno)
        e = errno;
    closedir(d);
    flow__buf_cleanup(&text);
    if (e)
        dk_helds_free(out);
    else if (out->count > 1)
        qsort(out->items, out->count, sizeof(*out->items), dk_held_order);
    return e;
}

/* Write slot `slot` of key directory `kfd`, whole. 0 or an errno. */
static int dk_slot_write(struct dk_store *s, int kfd, int slot, const char *holder,
                         const char *owner, double expires)
{
    char head[80];
    int n = snprintf(head, sizeof(head), "%.17g %zu %lld\n", expires, strlen(holder),
                     owner ? (long long)strlen(owner) : -1LL);
    flow__buf_reset(&s->buf);
    if (flow__buf_append(&s->buf, head, (size_t)n) != FLOW_OK ||
        flow__buf_append(&s->buf, holder, strlen(holder)) != FLOW_OK ||
        (owner && flow__buf_append(&s->buf, owner, strlen(owner)) != FLOW_OK))
        return ENOMEM;
    char tmp[DK_PATH_MAX], name[16];
    flow__dk_temp_name(s, tmp, sizeof(tmp), "tmp", "slot");
    snprintf(name, sizeof(name), "%d", slot);
    int e = flow__dk_put_file(kfd, tmp, s->buf.data, s->buf.len, 0);
    if (!e && renameat(kfd, tmp, kfd, name) != 0) {
        e = errno;
        unlinkat(kfd, tmp, 0);
    }
    return e;
}

/* ------------------------------------------------------------------------ */
/* holders: where renew looks                                                */

/* Note that `holder` may hold slots of key directory `kname`. 0 or an
 * errno. */
static int dk_mark(struct dk_store *s, const char *holder, const char *kname)
{
    int hfd = dk_limits_dir(s, &s->holdersfd, "holders", true);
    if (hfd < 0)
        return errno;
    char hname[DK_LIMIT_NAME_MAX + 1];
    dk_limit_name(holder, hname);
    /* A holder's directory goes once it is empty (dk_unmark), maybe right
     * between our mkdir and our file: make it again. */
    for (int i = 0; i < DK_MARK_TRIES; i++) {
        if (mkdirat(hfd, hname, 0700) != 0 && errno != EEXIST)
            return errno;
        int d = flow__dk_open_dir(hfd, hname);
        if (d < 0 && errno == ENOENT)
            continue;
        if (d < 0)
            return errno;
        int e = flow__dk_put_file(d, kname, "", 0, 0);
        close(d);
        if (e != ENOENT)
            return e;
    }
    return ENOENT;
}

/* `holder` holds no slot of `kname` any more (said under its lock). */
static void dk_unmark(struct dk_store *s, const char *holder, const char *kname)
{
    int hfd = dk_limits_dir(s, &s->holdersfd, "holders", false);
    if (hfd < 0)
        return;
    char hname[DK_LIMIT_NAME_MAX + 1];
    dk_limit_name(holder, hname);
    int d = flow__dk_open_dir(hfd, hname);
    if (d < 0)
        return;
    unlinkat(d, kname, 0);
    close(d);
    unlinkat(hfd, hname, AT_REMOVEDIR); /* only when it is empty */
}

/* How many of `held` are `holder`'s, but for slots[0 .. n). */
static size_t dk_held_by(const struct dk_helds *held, const char *holder, const int *slots,
                         int n)
{
    size_t count = 0;
    for (size_t i = 0; i < held->count; i++) {
        bool gone = false;
        for (int k = 0; k < n && !gone; k++)
            gone = held->items[i].slot == slots[k];
        if (!gone && !strcmp(held->items[i].holder, holder))
            count++;
    }
    return count;
}

/* ------------------------------------------------------------------------ */
/* demand marks: who waits for a key's slots                                 */

/* A mark's file name in its key directory: "w" and the holder's name. */
static void dk_want_name(const char *holder, char out[DK_LIMIT_NAME_MAX + 2])
{
    out[0] = 'w';
    dk_limit_name(holder, out + 1);
}

/* Look at the marks of key directory `kfd`, under its lock: *contended
 * becomes true when one of a holder other than `holder` is live at `now`.
 * The others that are not live, or not whole (a power cut), are removed.
 * 0 or an errno. */
static int dk_wants_scan(int kfd, const char *holder, double now, bool *contended)
{
    DIR *d = dk_dir_of(kfd, ".");
    if (!d)
        return errno;
    struct flow__buf text;
    flow__buf_init(&text, DK_META_MAX);
    int e = 0;
    struct dirent *ent;
    while (!e && (errno = 0, ent = readdir(d))) {
        if (ent->d_name[0] != 'w')
            continue;
        int r = flow__dk_read_file(kfd, ent->d_name, &text);
        if (r) {
            e = r == ENOENT ? 0 : r;
            continue;
        }
        const char *p = flow__buf_str(&text);
        const char *nl = memchr(p, '\n', text.len);
        char *end;
        double expires = nl ? strtod(p, &end) : 0;
        if (nl && end == nl && !strcmp(nl + 1, holder))
            continue; /* the caller's own */
        if (nl && end == nl && flow__lease_is_live(nl + 1, expires, now))
            *contended = true;
        else
            unlinkat(kfd, ent->d_name, 0);
    }
    if (!e && errno)
        e = errno;
    closedir(d);
    flow__buf_cleanup(&text);
    return e;
}

/* Under key directory `kfd`'s lock: mark that `holder` waits for it until
 * `expires` (forgetting the marks no longer live), or, not `wait`, that it
 * does not. 0 or an errno. */
static int dk_want_keep(struct dk_store *s, int kfd, const char *holder, bool wait,
                        double now, double expires)
{
    char name[DK_LIMIT_NAME_MAX + 2];
    dk_want_name(holder, name);
    if (!wait) {
        unlinkat(kfd, name, 0); /* a mark left behind expires anyway */
        return 0;
    }
    bool ignored = false;
    int e = dk_wants_scan(kfd, holder, now, &ignored);
    char head[40];
    int n = snprintf(head, sizeof(head), "%.17g\n", expires);
    flow__buf_reset(&s->buf);
    if (!e && (flow__buf_append(&s->buf, head, (size_t)n) != FLOW_OK ||
               flow__buf_append(&s->buf, holder, strlen(holder)) != FLOW_OK))
        e = ENOMEM;
    return e ? e : flow__dk_put_file(kfd, name, s->buf.data, s->buf.len, 0);
}

/* ------------------------------------------------------------------------ */
/* slots                                                                     */

/* The key directory of `key`, open (made with `make`) and locked: *kfd and
 * *lfd, both to close. FLOW_ENOTFOUND when it does not exist. */
static flow_err dk_key_enter(struct dk_store *s, const char *key, const char *kname, bool make,
                             int *kfd, int *lfd, const char *what, flow_error *err)
{
    *kfd = *lfd = -1;
    int sfd = dk_limits_dir(s, &s->slotsfd, "slots", make);
    if (sfd >= 0)
        *kfd = dk_key_open(s, sfd, kname, key, make);
    if (*kfd >= 0 && (*lfd = dk_key_lock(*kfd)) >= 0)
        return FLOW_OK;
    int e = errno;
    if (*kfd >= 0)
        close(*kfd);
    *kfd = -1;
    if (e == ENOENT && !make)
        return FLOW_ENOTFOUND;
    return flow__error_errno(err, e, "%s in store '%s'", what, s->path);
}

static void dk_key_leave(int kfd, int lfd)
{
    close(lfd); /* gives the lock back */
    close(kfd);
}

flow_err flow__dk_slot_acquire(void *priv, const char *key, int limit, int want,
                               const char *holder, const char *owner, double now, double ttl,
                               int *slots, int *got, flow_error *err)
{
    struct dk_store *s = priv;
    *got = 0;
    flow_err rc = flow__limit_check(s->path, "concurrency", key, limit, ttl, err);
    if (rc != FLOW_OK || want <= 0)
        return rc;
    char what[300], kname[DK_LIMIT_NAME_MAX + 1];
    snprintf(what, sizeof(what), "cannot take a slot of concurrency key '%.200s'", key);
    dk_limit_name(key, kname);
    int kfd, lfd;
    rc = dk_key_enter(s, key, kname, true, &kfd, &lfd, what, err);
    if (rc != FLOW_OK)
        return rc;
    struct dk_helds held;
    int e = dk_slots_read(kfd, &held);
    int *busy = e ? NULL : flow__calloc(held.count + 1, sizeof(*busy));
    if (!e && !busy)
        e = ENOMEM;
    int n = 0;
    if (!e) {
        size_t nbusy = 0;
        for (size_t i = 0; i < held.count; i++)
            if (flow__lease_is_live(held.items[i].holder, held.items[i].expires, now))
                busy[nbusy++] = held.items[i].slot;
        n = flow__slot_pick(busy, nbusy, limit, want, slots);
    }
    flow__free(busy);
    /* The demand mark before any slot: a call that fails takes nothing. */
    if (!e)
        e = dk_want_keep(s, kfd, holder, n < want, now, now + FLOW__SLOT_WANT_TTL);
    /* Marked first: a slot renew cannot find would expire while held. */
    if (!e && n > 0)
        e = dk_mark(s, holder, kname);
    int written = 0;
    while (!e && written < n &&
           !(e = dk_slot_write(s, kfd, slots[written], holder, owner, now + ttl)))
        written++;
    if (e) {
        for (int i = 0; i < written; i++) {
            char name[16];
            snprintf(name, sizeof(name), "%d", slots[i]);
            unlinkat(kfd, name, 0); /* free again (a dead holder's was free) */
        }
    } else {
        /* The dead holders we took over from may hold nothing more here. */
        for (size_t i = 0; i < held.count; i++) {
            const char *was = held.items[i].holder;
            bool taken = false;
            for (int k = 0; k < n && !taken; k++)
                taken = held.items[i].slot == slots[k];
            if (taken && strcmp(was, holder) != 0 && !dk_held_by(&held, was, slots, n))
                dk_unmark(s, was, kname);
        }
        *got = n;
    }
    dk_helds_free(&held);
    dk_key_leave(kfd, lfd);
    if (e)
        return flow__error_errno(err, e, "%s in store '%s'", what, s->path);
    return FLOW_OK;
}

flow_err flow__dk_slot_release(void *priv, const char *key, const int *slots, int n,
                               const char *holder, flow_error *err)
{
    struct dk_store *s = priv;
    if (n <= 0)
        return FLOW_OK;
    char what[300], kname[DK_LIMIT_NAME_MAX + 1];
    snprintf(what, sizeof(what), "cannot give back a slot of concurrency key '%.200s'", key);
    dk_limit_name(key, kname);
    int kfd, lfd;
    flow_err rc = dk_key_enter(s, key, kname, false, &kfd, &lfd, what, err);
    if (rc != FLOW_OK)
        return rc == FLOW_ENOTFOUND ? FLOW_OK : rc; /* nothing was ever held */
    struct dk_helds held;
    int e = dk_slots_read(kfd, &held);
    for (size_t i = 0; !e && i < held.count; i++) {
        const struct dk_held *h = &held.items[i];
        bool asked = false;
        for (int k = 0; k < n && !asked; k++)
            asked = h->slot == slots[k];
        if (!asked || strcmp(h->holder, holder) != 0)
            continue;
        char name[16];
        snprintf(name, sizeof(name), "%d", h->slot);
        if (unlinkat(kfd, name, 0) != 0 && errno != ENOENT)
            e = errno;
    }
    if (!e && !dk_held_by(&held, holder, slots, n))
        dk_unmark(s, holder, kname);
    dk_helds_free(&held);
    dk_key_leave(kfd, lfd);
    if (e)
        return flow__error_errno(err, e, "%s in store '%s'", what, s->path);
    return FLOW_OK;
}

flow_err flow__dk_slot_contended(void *priv, const char *key, const char *holder, double now,
                                 bool *contended, flow_error *err)
{
    struct dk_store *s = priv;
    *contended = false;
    char what[300], kname[DK_LIMIT_NAME_MAX + 1];
    snprintf(what, sizeof(what), "cannot read who waits for concurrency key '%.200s'", key);
    dk_limit_name(key, kname);
    int kfd, lfd;
    flow_err rc = dk_key_enter(s, key, kname, false, &kfd, &lfd, what, err);
    if (rc != FLOW_OK)
        return rc == FLOW_ENOTFOUND ? FLOW_OK : rc; /* nobody ever asked for it */
    int e = dk_wants_scan(kfd, holder, now, contended);
    dk_key_leave(kfd, lfd);
    if (e)
        return flow__error_errno(err, e, "%s in store '%s'", what, s->path);
    return FLOW_OK;
}

/* Renew `holder`'s slots of key directory `kname`. 0 or an errno. */
static int dk_renew_key(struct dk_store *s, const char *kname, const char *holder,
                        double expires)
{
    int sfd = dk_limits_dir(s, &s->slotsfd, "slots", false);
    int kfd = sfd < 0 ? -1 : flow__dk_open_dir(sfd, kname);
    int lfd = kfd < 0 ? -1 : dk_key_lock(kfd);
    if (lfd < 0) {
        int e = errno;
        if (kfd >= 0)
            close(kfd);
        return e == ENOENT ? 0 : e;
    }
    struct dk_helds held;
    int e = dk_slots_read(kfd, &held);
    bool none = true;
    for (size_t i = 0; !e && i < held.count; i++) {
        const struct dk_held *h = &held.items[i];
        if (strcmp(h->holder, holder) != 0)
            continue;
        none = false;
        e = dk_slot_write(s, kfd, h->slot, h->holder, h->owner, expires);
    }
    if (!e && none)
        dk_unmark(s, holder, kname); /* under the key's lock, as dk_mark */
    dk_helds_free(&held);
    dk_key_leave(kfd, lfd);
    return e;
}

flow_err flow__dk_slot_renew(void *priv, const char *holder, double now, double ttl,
                             flow_error *err)
{
    struct dk_store *s = priv;
    const char *what = "cannot renew the slots of concurrency keys";
    int hfd = dk_limits_dir(s, &s->holdersfd, "holders", false);
    char hname[DK_LIMIT_NAME_MAX + 1];
    dk_limit_name(holder, hname);
    DIR *d = hfd < 0 ? NULL : dk_dir_of(hfd, hname);
    if (!d) {
        int e = errno;
        if (e == ENOENT)
            return FLOW_OK; /* holds nothing */
        return flow__error_errno(err, e, "%s in store '%s'", what, s->path);
    }
    /* The names first: renewing changes the directory. */
    FLOW__VEC(char *) names = {0};
    flow_err rc = FLOW_OK;
    struct dirent *ent;
    while (rc == FLOW_OK && (errno = 0, ent = readdir(d))) {
        if (ent->d_name[0] == '.')
            continue;
        char *name = flow__strdup(ent->d_name);
        if (name)
            FLOW__VEC_PUSH(&names, name, rc);
        if (!name || rc != FLOW_OK) {
            flow__free(name);
            rc = flow__error(err, FLOW_ENOMEM, "%s in store '%s': out of memory", what, s->path);
        }
    }
    if (rc == FLOW_OK && errno)
        rc = flow__error_errno(err, errno, "%s in store '%s'", what, s->path);
    closedir(d);
    /* A key that fails (or a listing cut short) does not keep the others
     * from being renewed. */
    for (size_t i = 0; i < names.count; i++) {
        int e = dk_renew_key(s, names.items[i], holder, now + ttl);
        if (e && rc == FLOW_OK)
            rc = flow__error_errno(err, e, "%s in store '%s'", what, s->path);
    }
    for (size_t i = 0; i < names.count; i++)
        flow__free(names.items[i]);
    FLOW__VEC_FREE(&names);
    return rc;
}

/* Append the live slots of `key` (directory `kname` of `sfd`) to `list`.
 * 0 or an errno. */
static int dk_list_key(int sfd, const char *kname, const char *key, double now, json_t *list)
{
    int kfd = flow__dk_open_dir(sfd, kname);
    if (kfd < 0)
        return errno == ENOENT ? 0 : errno;
    struct dk_helds held;
    int e = dk_slots_read(kfd, &held);
    close(kfd);
    for (size_t i = 0; !e && i < held.count; i++) {
        const struct dk_held *h = &held.items[i];
        if (flow__lease_is_live(h->holder, h->expires, now) &&
            flow__slot_push(list, key, h->slot, h->holder, h->owner, h->expires) != FLOW_OK)
            e = ENOMEM;
    }
    dk_helds_free(&held);
    return e;
}

/* Every key directory of `sfd`, listed into `list`. 0 or an errno. */
static int dk_list_all(int sfd, double now, json_t *list)
{
    DIR *d = dk_dir_of(sfd, ".");
    if (!d)
        return errno;
    struct flow__buf key;
    flow__buf_init(&key, DK_META_MAX);
    int e = 0;
    struct dirent *ent;
    while (!e && (errno = 0, ent = readdir(d))) {
        if (ent->d_name[0] == '.')
            continue; /* ".", "..", directories being made */
        char rel[sizeof(ent->d_name) + 8];
        snprintf(rel, sizeof(rel), "%s/key", ent->d_name);
        e = flow__dk_read_file(sfd, rel, &key);
        if (e == ENOENT || e == ENOTDIR) {
            e = 0;
            continue;
        }
        if (!e)
            e = dk_list_key(sfd, ent->d_name, flow__buf_str(&key), now, list);
    }
    if (!e && errno)
        e = errno;
    closedir(d);
    flow__buf_cleanup(&key);
    return e;
}

flow_err flow__dk_slot_list(void *priv, const char *key, double now, json_t **out,
                            flow_error *err)
{
    struct dk_store *s = priv;
    *out = NULL;
    const char *what = "cannot list the slots of concurrency keys";
    json_t *list = json_array();
    if (!list)
        return flow__error(err, FLOW_ENOMEM, "%s in store '%s': out of memory", what, s->path);
    int sfd = dk_limits_dir(s, &s->slotsfd, "slots", false);
    int e = sfd < 0 && errno != ENOENT ? errno : 0;
    if (!e && sfd >= 0 && key) {
        char kname[DK_LIMIT_NAME_MAX + 1];
        dk_limit_name(key, kname);
        e = dk_list_key(sfd, kname, key, now, list);
    } else if (!e && sfd >= 0) {
        e = dk_list_all(sfd, now, list);
    }
    if (!e && flow__slot_sort(list) != FLOW_OK)
        e = ENOMEM;
    if (e) {
        json_decref(list);
        return flow__error_errno(err, e, "%s in store '%s'", what, s->path);
    }
    *out = list;
    return FLOW_OK;
}

/* ------------------------------------------------------------------------ */
/* rates                                                                     */

/* Read the starts in rate file `fd` into a new array with room for `more`
 * to come: *starts (flow__free) and *n. 0 or an errno. A start past now +
 * window (a line a power cut tore) is dropped: it would hold the key shut
 * for as long. */
static int dk_rate_read(int fd, double now, double window, size_t more, double **starts,
                        size_t *n)
{
    *starts = NULL;
    *n = 0;
    struct flow__buf text;
    flow__buf_init(&text, DK_META_MAX);
    char chunk[4096];
    int e = 0;
    for (off_t at = 0;;) {
        ssize_t got = pread(fd, chunk, sizeof(chunk), at);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            e = got < 0 ? errno : 0;
            break;
        }
        if (flow__buf_append(&text, chunk, (size_t)got) != FLOW_OK) {
            e = ENOMEM;
            break;
        }
        at += got;
    }
    const char *p = flow__buf_str(&text), *stop = p + text.len;
    size_t lines = 0;
    for (const char *q = p; q < stop; q++)
        lines += *q == '\n';
    double *v = e ? NULL : flow__calloc(lines + more + 1, sizeof(*v));
    if (!e && !v)
        e = ENOMEM;
    while (!e && p < stop) {
        const char *nl = memchr(p, '\n', (size_t)(stop - p));
        if (!nl)
            break; /* a torn last line */
        char *end;
        double t = strtod(p, &end);
        if (end == nl && isfinite(t) && t <= now + window)
            v[(*n)++] = t;
        p = nl + 1;
    }
    flow__buf_cleanup(&text);
    if (e)
        flow__free(v);
    else
        *starts = v;
    return e;
}

/* Write the starts back over rate file `fd`. 0 or an errno. */
static int dk_rate_write(struct dk_store *s, int fd, const double *starts, size_t n)
{
    flow__buf_reset(&s->buf);
    for (size_t i = 0; i < n; i++) {
        char line[40];
        int len = snprintf(line, sizeof(line), "%.17g\n", starts[i]);
        if (flow__buf_append(&s->buf, line, (size_t)len) != FLOW_OK)
            return ENOMEM;
    }
    const char *data = s->buf.data;
    size_t left = s->buf.len;
    for (off_t at = 0; left > 0;) {
        ssize_t w = pwrite(fd, data, left, at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        data += w;
        left -= (size_t)w;
        at += w;
    }
    return ftruncate(fd, (off_t)s->buf.len) != 0 ? errno : 0;
}

flow_err flow__dk_rate_take(void *priv, const char *key, int limit, double window, int want,
                            double now, int *got, double *retry_at, flow_error *err)
{
    struct dk_store *s = priv;
    double retry = 0;
    *got = 0;
    if (retry_at)
        *retry_at = 0;
    flow_err rc = flow__limit_check(s->path, "rate", key, limit, window, err);
    if (rc != FLOW_OK || want <= 0)
        return rc;
    char what[300], kname[DK_LIMIT_NAME_MAX + 1];
    snprintf(what, sizeof(what), "cannot start under rate key '%.200s'", key);
    dk_limit_name(key, kname);
    int rfd = dk_limits_dir(s, &s->ratesfd, "rates", true);
    int fd = rfd < 0 ? -1 : openat(rfd, kname, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    int e = fd < 0 ? errno : fchmod(fd, 0600) != 0 ? errno : 0;
    while (!e && flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR)
            e = errno;
    }
    double *starts = NULL;
    size_t n = 0;
    if (!e)
        e = dk_rate_read(fd, now, window, (size_t)(want < limit ? want : limit), &starts, &n);
    int take = 0;
    if (!e) {
        n = flow__rate_apply(starts, n, limit, window, want, now, &take, &retry);
        e = dk_rate_write(s, fd, starts, n);
    }
    flow__free(starts);
    if (fd >= 0)
        close(fd); /* gives the lock back */
    if (e)
        return flow__error_errno(err, e, "%s in store '%s'", what, s->path);
    *got = take;
    if (retry_at)
        *retry_at = retry;
    return FLOW_OK;
}
