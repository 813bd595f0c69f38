/* store_disk.c -- the disk store ("disk:DIR[?durability=strict]"): plain
 * files, one directory per run, no library but zlib's crc32.
 *
 * DESIGN (docs/internals/store.md, "Backends")
 * DIR/FORMAT says "libflow-store N". DIR/runs/<id>/ holds meta.json, the
 * journal, the lease file and control/. A run appears and disappears as a
 * whole: it is built in runs/.new-* and renamed into place, and deleted by a
 * rename to runs/.del-* before its files are removed (ids cannot start with
 * '.', so listings skip both).
 *
 * The journal is append-only; each record is u32 LE length, u32 LE crc32 of
 * the bytes, then the record: its fixed fields in 24 bytes (type u8,
 * attempt u8, two zero bytes, task, activation and source as u32 LE, the
 * time as an IEEE-754 double LE), then its payload as compact JSON, absent
 * when it has none (most records), so that replay parses JSON only for
 * payloads. One append is one write() of
 * the whole batch; a write that fails is cut back off. A crash leaves the
 * old records plus a piece of the batch: readers stop at the first record
 * that is short, fails its CRC or does not parse, and the first append of a
 * handle cuts that torn tail off. What survives is therefore always a
 * prefix of the records, but a crash in the middle of a large write() (a
 * SIGKILL between pages, a power loss) can keep the first records of a
 * batch: batch boundaries are not kept (they carry no meaning: group
 * commit picks them by timing). Records are numbered by their position. In
 * strict mode (or with FLOW__STORE_SYNC) every batch is fdatasync'ed;
 * otherwise it is in the page cache, which survives the process, and
 * `commit` syncs.
 *
 * The lease is an flock on runs/<id>/lease, held on a descriptor this handle
 * keeps open: the kernel drops it when the holder dies, so no expiry is
 * needed. Control requests are files named by a zero-padded number, created
 * by link() from a temp file so that two writers never take one number.
 * Answers to feedback requests are files in answers/, one per request, made
 * the same way: link() never replaces, so the first answer is the one. The
 * limits shared by the store's processes (concurrency slots, rate starts)
 * live in DIR/slots, DIR/holders and DIR/rates: store_disk_limits.c. */
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
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "store/compress.h"
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
/* files                                                                     */

static int dk_write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Write `data` as the new file `name` in `dfd` (replacing one), mode 0600,
 * fsync'ed. 0, or an errno (and no file). */
int flow__dk_write_file(int dfd, const char *name, const char *data, size_t len)
{
    return flow__dk_put_file(dfd, name, data, len, DK_SYNC);
}

int flow__dk_put_file(int dfd, const char *name, const char *data, size_t len, unsigned how)
{
    int flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (how & DK_EXCL ? O_EXCL : O_TRUNC);
    int fd = openat(dfd, name, flags, 0600);
    if (fd < 0)
        return errno;
    int e = 0;
    if (fchmod(fd, 0600) != 0 || dk_write_all(fd, data, len) != 0 ||
        ((how & DK_SYNC) && fsync(fd) != 0))
        e = errno;
    if (close(fd) != 0 && !e)
        e = errno;
    if (e)
        unlinkat(dfd, name, 0);
    return e;
}

/* Replace `name` in `dfd` atomically: write name.tmp, rename it over `name`,
 * fsync the directory. 0 or an errno. */
static int dk_replace_file(int dfd, const char *name, const char *data, size_t len)
{
    char tmp[DK_PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", name);
    int e = flow__dk_write_file(dfd, tmp, data, len);
    if (e)
        return e;
    if (renameat(dfd, tmp, dfd, name) != 0) {
        e = errno;
        unlinkat(dfd, tmp, 0);
        return e;
    }
    return fsync(dfd) != 0 ? errno : 0;
}

/* Read the file `name` in `dfd` into `b` (reset first). 0 or an errno. */
int flow__dk_read_file(int dfd, const char *name, struct flow__buf *b)
{
    flow__buf_reset(b);
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int e = 0;
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            e = errno;
            break;
        }
        if (n == 0)
            break;
        flow_err rc = flow__buf_append(b, chunk, (size_t)n);
        if (rc != FLOW_OK) {
            e = rc == FLOW_ENOMEM ? ENOMEM : EFBIG;
            break;
        }
    }
    close(fd);
    return e;
}

int flow__dk_open_dir(int dfd, const char *name)
{
    return openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Remove `name` in `dfd` and everything under it; best effort (what cannot
 * be removed stays, under a name listings skip). */
static void dk_rmtree(int dfd, const char *name, int depth)
{
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT || depth > 8)
        return;
    int fd = flow__dk_open_dir(dfd, name);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            dk_rmtree(fd, e->d_name, depth + 1);
    }
    closedir(d);
    unlinkat(dfd, name, AT_REMOVEDIR);
}

/* "<id>/<name>" (relative to runs/) into `out`; false when `id` cannot be a
 * run of this store (then there is no such run). */
bool flow__dk_run_path(char *out, size_t size, const char *id, const char *name)
{
    if (flow__store_check_id("", id, NULL) != FLOW_OK)
        return false;
    int n = snprintf(out, size, "%s%s%s", id, name ? "/" : "", name ? name : "");
    return n > 0 && (size_t)n < size;
}

flow_err flow__dk_no_run(struct dk_store *s, const char *id, flow_error *err)
{
    return flow__error(err, FLOW_ENOTFOUND, "no run '%s' in store '%s'", id, s->path);
}

/* Does run `id` exist (its meta.json does)? FLOW_OK, FLOW_ENOTFOUND or an
 * I/O error, each with its message. */
flow_err flow__dk_run_exists(struct dk_store *s, const char *id, flow_error *err)
{
    char rel[DK_PATH_MAX];
    struct stat st;
    if (!flow__dk_run_path(rel, sizeof(rel), id, "meta.json"))
        return flow__dk_no_run(s, id, err);
    if (fstatat(s->runsfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return FLOW_OK;
    if (errno == ENOENT || errno == ENOTDIR)
        return flow__dk_no_run(s, id, err);
    return flow__error_errno(err, errno, "cannot read run '%s' in store '%s'", id, s->path);
}

/* A unique name for a temp entry: ".PREFIX-ID-PID-N". N counts in the
 * process, not the handle: two handles of one process (threads) must not
 * write the same temp file. */
void flow__dk_temp_name(struct dk_store *s, char *out, size_t size, const char *prefix,
                        const char *id)
{
    static atomic_uint counter;
    FLOW__UNUSED(s);
    snprintf(out, size, ".%s-%s-%ld-%u", prefix, id, (long)getpid(),
             atomic_fetch_add(&counter, 1) + 1);
}

/* ------------------------------------------------------------------------ */
/* the per-run cache                                                         */

/* The entry of run `id`, created cold; NULL when out of memory. */
struct dk_run *flow__dk_run_cache(struct dk_store *s, const char *id)
{
    bool created;
    struct dk_run *c = flow__store_run_entry(&s->runs, id, sizeof(*c), &created);
    if (c && created)
        c->fd = c->lease_fd = -1;
    return c;
}

static void dk_run_cold(struct dk_run *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

void flow__dk_lease_drop(struct dk_run *c)
{
    if (c->lease_fd >= 0)
        close(c->lease_fd); /* releases the flock */
    c->lease_fd = -1;
    flow__free(c->lease_holder);
    c->lease_holder = NULL;
}

/* Close what an entry holds (flow__store_run_entries_free). */
static void dk_run_release(void *entry)
{
    dk_run_cold(entry);
    flow__dk_lease_drop(entry);
}

/* ------------------------------------------------------------------------ */
/* records                                                                   */

/* Append record `r` (framed) to s->buf: the fixed fields in binary, then
 * the payload as compact JSON (record.h: flow__jrec_put_fixed), deflated
 * when large (compress.h), so that reading back parses JSON only where
 * there is a payload (most records have none). */
static flow_err dk_encode(struct dk_store *s, const struct flow__jrec *r)
{
    struct flow__buf *b = &s->buf;
    size_t start = b->len;
    char head[DK_HEADER + FLOW__JREC_FIXED] = {0};
    flow__jrec_put_fixed(head + DK_HEADER, r);
    flow_err rc = flow__buf_append(b, head, sizeof(head));
    if (rc == FLOW_OK && r->payload)
        rc = flow__payload_append(b, r->payload, NULL);
    size_t len = rc == FLOW_OK ? b->len - start - DK_HEADER : 0;
    if (rc == FLOW_OK && len > DK_RECORD_MAX)
        rc = FLOW_ELIMIT;
    if (rc != FLOW_OK)
        return rc;
    char *p = b->data + start;
    flow__put_le32(p, (uint32_t)len);
    flow__put_le32(p + 4, (uint32_t)crc32(0L, (const Bytef *)p + DK_HEADER, (uInt)len));
    return FLOW_OK;
}

/* Where a scan of a journal ended. */
struct dk_scan {
    uint64_t end;   /* bytes of the valid prefix */
    uint64_t count; /* records in it */
    int sys_errno;  /* a failed read: its errno (the result is then FLOW_EIO) */
    bool stopped;   /* the callback stopped the walk (its code is the result) */
    bool damaged;   /* record `count` passed its CRC but its deflated payload
                     * does not inflate: an error, not a torn tail to cut */
};

/* A buffered reader of a journal (pread, so a descriptor's offset does not
 * matter). */
struct dk_reader {
    int fd;
    char *buf;
    size_t cap;
    size_t pos;   /* first byte not consumed */
    size_t have;  /* bytes in buf */
    uint64_t off; /* file offset of buf[0] */
    int sys_errno;
};

/* Make buf[pos, pos + need) hold the next `need` bytes of the file.
 * FLOW_EPARSE when the file ends first (a torn record). */
static flow_err dk_need(struct dk_reader *r, size_t need)
{
    if (r->have - r->pos >= need)
        return FLOW_OK;
    if (r->pos + need > r->cap) {
        memmove(r->buf, r->buf + r->pos, r->have - r->pos);
        r->off += r->pos;
        r->have -= r->pos;
        r->pos = 0;
        if (need > r->cap) {
            char *bigger = flow__realloc(r->buf, need);
            if (!bigger)
                return FLOW_ENOMEM;
            r->buf = bigger;
            r->cap = need;
        }
    }
    while (r->have - r->pos < need) {
        ssize_t n = pread(r->fd, r->buf + r->have, r->cap - r->have, (off_t)(r->off + r->have));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r->sys_errno = errno;
            return FLOW_EIO;
        }
        if (n == 0)
            return FLOW_EPARSE;
        r->have += (size_t)n;
    }
    return FLOW_OK;
}

/* Walk the valid prefix of the journal on `fd`: call `cb` for each record
 * with seq >= from (when cb is not NULL). The prefix ends at the first
 * record that is short, fails its CRC or does not parse. A callback's code
 * other than FLOW_OK stops the walk and is returned. */
static flow_err dk_scan(int fd, uint64_t from, flow__store_rec_cb cb, void *udata,
                        struct dk_scan *out)
{
    memset(out, 0, sizeof(*out));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        out->sys_errno = errno;
        return FLOW_EIO;
    }
    uint64_t fsize = (uint64_t)st.st_size;
    struct dk_reader r = {.fd = fd, .cap = DK_READ_CHUNK};
    r.buf = flow__malloc(r.cap);
    if (!r.buf)
        return FLOW_ENOMEM;
    flow_err rc = FLOW_OK;
    struct flow__payload_memo memo = {0};
    while (out->end + DK_HEADER <= fsize) {
        rc = dk_need(&r, DK_HEADER);
        if (rc != FLOW_OK)
            break;
        uint32_t len = flow__get_le32(r.buf + r.pos);
        /* A length past the end is a torn header: never allocate for it. */
        if (len > DK_RECORD_MAX || out->end + DK_HEADER + len > fsize)
            break;
        rc = dk_need(&r, DK_HEADER + (size_t)len);
        if (rc != FLOW_OK)
            break;
        const char *at = r.buf + r.pos;
        if ((uint32_t)crc32(0L, (const Bytef *)at + DK_HEADER, (uInt)len) != flow__get_le32(at + 4))
            break;
        struct flow__jrec rec;
        json_t *root;
        rc = flow__jrec_decode(at + DK_HEADER, len, &rec, &root, &memo);
        if (rc == FLOW_EIO || rc == FLOW_EUNSUPPORTED) {
            out->damaged = true;
            goto out_free;
        }
        if (rc == FLOW_OK && cb && out->count >= from) {
            rc = cb(udata, out->count, &rec);
            json_decref(root);
            if (rc != FLOW_OK) {
                out->stopped = true;
                goto out_free;
            }
        } else {
            json_decref(root);
        }
        if (rc != FLOW_OK)
            break;
        r.pos += DK_HEADER + (size_t)len;
        out->end += DK_HEADER + len;
        out->count++;
    }
    if (rc == FLOW_EPARSE)
        rc = FLOW_OK; /* the end of the valid prefix */
    else if (rc == FLOW_EIO)
        out->sys_errno = r.sys_errno;
out_free:
    flow__payload_memo_cleanup(&memo);
    flow__free(r.buf);
    return rc;
}

/* The message for a scan that failed with `rc` (not by its callback). */
static flow_err dk_scan_fail(struct dk_store *s, const struct dk_scan *scan, flow_err rc,
                             const char *what, flow_error *err)
{
    if (scan->damaged)
        return flow__error(err, rc, "%s in store '%s': record %" PRIu64 ": %s", what, s->path,
                           scan->count, flow__payload_why(rc));
    if (rc == FLOW_EIO)
        return flow__error_errno(err, scan->sys_errno, "%s in store '%s'", what, s->path);
    return flow__error(err, rc, "%s in store '%s': out of memory", what, s->path);
}

/* Open run `c`'s journal for appending: find the valid prefix and cut off a
 * torn tail. */
static flow_err dk_journal_open(struct dk_store *s, struct dk_run *c, const char *what,
                                flow_error *err)
{
    char rel[DK_PATH_MAX];
    if (!flow__dk_run_path(rel, sizeof(rel), c->id, "journal"))
        return flow__dk_no_run(s, c->id, err);
    int fd = openat(s->runsfd, rel, O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        flow_err rc = flow__dk_run_exists(s, c->id, err);
        if (rc != FLOW_OK)
            return rc;
        fd = openat(s->runsfd, rel, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    if (fd < 0)
        return flow__error_errno(err, errno, "%s in store '%s'", what, s->path);
    struct dk_scan scan;
    flow_err rc = dk_scan(fd, UINT64_MAX, NULL, NULL, &scan);
    if (rc != FLOW_OK) {
        close(fd);
        return dk_scan_fail(s, &scan, rc, what, err);
    }
    struct stat st;
    if (fstat(fd, &st) != 0 ||
        ((uint64_t)st.st_size > scan.end && ftruncate(fd, (off_t)scan.end) != 0)) {
        int e = errno;
        close(fd);
        return flow__error_errno(err, e, "%s (cutting off a torn record) in store '%s'", what,
                                 s->path);
    }
    c->fd = fd;
    c->size = scan.end;
    c->next_seq = scan.count;
    return FLOW_OK;
}

/* Make `c`'s journal ready for an append: open it when cold; reopen it when
 * the file is not what this handle wrote (deleted, or written elsewhere). */
static flow_err dk_journal_ready(struct dk_store *s, struct dk_run *c, const char *what,
                                 flow_error *err)
{
    if (c->fd >= 0) {
        struct stat st;
        if (fstat(c->fd, &st) == 0 && st.st_nlink > 0 && (uint64_t)st.st_size == c->size)
            return FLOW_OK;
        dk_run_cold(c);
    }
    return dk_journal_open(s, c, what, err);
}

static flow_err dk_append(void *priv, const char *run_id, const struct flow__jrec *recs,
                          size_t n, unsigned flags, flow_error *err)
{
    struct dk_store *s = priv;
    if (n == 0)
        return FLOW_OK;
    char what[160];
    snprintf(what, sizeof(what), "cannot append to run '%s'", run_id);
    if (flow__store_check_id("", run_id, NULL) != FLOW_OK)
        return flow__dk_no_run(s, run_id, err);
    struct dk_run *c = flow__dk_run_cache(s, run_id);
    if (!c)
        return flow__error(err, FLOW_ENOMEM, "%s in store '%s': out of memory", what, s->path);
    flow_err rc = dk_journal_ready(s, c, what, err);
    if (rc != FLOW_OK)
        return rc;

    flow__buf_reset(&s->buf);
    for (size_t i = 0; i < n; i++) {
        rc = dk_encode(s, &recs[i]);
        if (rc != FLOW_OK) {
            flow__error(err, rc, "cannot write record %" PRIu64 " of run '%s' in store '%s': %s",
                        c->next_seq + i, run_id, s->path,
                        rc == FLOW_EINVAL  ? "its time is not a finite number"
                        : rc == FLOW_ELIMIT ? "too large"
                                            : "out of memory");
            goto out_buf;
        }
    }
    int e = 0;
    if (dk_write_all(c->fd, s->buf.data, s->buf.len) != 0)
        e = errno;
    else if ((s->strict || (flags & FLOW__STORE_SYNC)) && fdatasync(c->fd) != 0)
        e = errno;
    if (e) {
        /* Take back what part of the batch reached the file; if even that
         * fails, the next append finds the torn tail and cuts it. */
        if (ftruncate(c->fd, (off_t)c->size) != 0)
            dk_run_cold(c);
        rc = flow__error_errno(err, e, "%s in store '%s'", what, s->path);
        goto out_buf;
    }
    c->size += s->buf.len;
    c->next_seq += n;

out_buf:
    if (s->buf.cap > DK_BUF_KEEP) {
        flow__buf_cleanup(&s->buf);
        flow__buf_init(&s->buf, FLOW__BUF_DEFAULT_MAX);
    }
    return rc;
}

/* Open run `id`'s journal for reading: *fd -1 when the run has none. */
static flow_err dk_journal_read_fd(struct dk_store *s, const char *id, int *fd, const char *what,
                                   flow_error *err)
{
    *fd = -1;
    flow_err rc = flow__dk_run_exists(s, id, err);
    if (rc != FLOW_OK)
        return rc;
    char rel[DK_PATH_MAX];
    flow__dk_run_path(rel, sizeof(rel), id, "journal");
    *fd = openat(s->runsfd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (*fd < 0 && errno != ENOENT)
        return flow__error_errno(err, errno, "%s in store '%s'", what, s->path);
    return FLOW_OK;
}

static flow_err dk_commit(void *priv, const char *run_id, flow_error *err)
{
    struct dk_store *s = priv;
    char what[160];
    snprintf(what, sizeof(what), "cannot sync run '%s'", run_id);
    struct dk_run *c = flow__strmap_get(&s->runs, run_id);
    int fd = c ? c->fd : -1;
    bool own = fd < 0;
    if (own) {
        flow_err rc = dk_journal_read_fd(s, run_id, &fd, what, err);
        if (rc != FLOW_OK || fd < 0)
            return rc;
    }
    int e = fdatasync(fd) != 0 ? errno : 0;
    if (own)
        close(fd);
    if (e)
        return flow__error_errno(err, e, "%s in store '%s'", what, s->path);
    return FLOW_OK;
}

static flow_err dk_read(void *priv, const char *run_id, uint64_t from_seq, flow__store_rec_cb cb,
                        void *udata, flow_error *err)
{
    struct dk_store *s = priv;
    char what[160];
    snprintf(what, sizeof(what), "cannot read the journal of run '%s'", run_id);
    int fd;
    flow_err rc = dk_journal_read_fd(s, run_id, &fd, what, err);
    if (rc != FLOW_OK || fd < 0)
        return rc; /* fd < 0: nothing appended */
    struct dk_scan scan;
    rc = dk_scan(fd, from_seq, cb, udata, &scan);
    close(fd);
    if (rc == FLOW_OK || scan.stopped)
        return rc;
    return dk_scan_fail(s, &scan, rc, what, err);
}

/* ------------------------------------------------------------------------ */
/* runs                                                                      */

/* meta.json of `m` into s->buf. Inputs whose text the stores would keep
 * deflated (compress.h) are there as "inputs_z", the deflated bytes in
 * base64, which a status change carries over without inflating them. */
static flow_err dk_meta_text(struct dk_store *s, const struct flow__run_meta *m)
{
    char *packed_inputs = NULL;
    bool packed = false;
    flow__buf_reset(&s->buf);
    if (m->inputs) {
        flow_err rc = flow__payload_append(&s->buf, m->inputs, &packed);
        if (rc == FLOW_OK && packed && !(packed_inputs = flow__b64_encode(s->buf.data, s->buf.len)))
            rc = FLOW_ENOMEM;
        if (rc != FLOW_OK)
            return rc;
    }
    json_t *o = json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:O?, s:s*, s:i, s:f, s:f}", "id",
                          m->id, "flow", m->flow, "version", m->version, "def_hash", m->def_hash,
                          "source", m->source, "parent", m->parent, "inputs",
                          packed ? NULL : m->inputs, "inputs_z", packed_inputs, "status",
                          m->status, "created_at", m->created_at, "ended_at", m->ended_at);
    flow__free(packed_inputs);
    if (!o)
        return FLOW_ENOMEM;
    flow__buf_reset(&s->buf);
    flow_err rc = flow__json_append(&s->buf, o, JSON_INDENT(2));
    if (rc == FLOW_OK)
        rc = flow__buf_appendc(&s->buf, '\n');
    json_decref(o);
    return rc;
}

/* The inputs of meta.json `o` into *out: "inputs" as it is, or
 * "inputs_z" inflated. */
static flow_err dk_meta_inputs(json_t *o, json_t **out)
{
    *out = NULL;
    json_t *z = json_object_get(o, "inputs_z");
    if (!z || json_is_null(z)) {
        json_t *inputs = json_object_get(o, "inputs");
        *out = json_is_null(inputs) ? NULL : json_incref(inputs);
        return FLOW_OK;
    }
    char *bytes;
    size_t len;
    const char *text = json_string_value(z);
    flow_err rc = text ? flow__b64_decode(text, json_string_length(z), &bytes, &len) : FLOW_EPARSE;
    if (rc != FLOW_OK)
        return rc;
    /* Deflated or nothing: text here would be a damaged header. */
    rc = flow__z_is(bytes, len) ? flow__payload_load(bytes, len, out) : FLOW_EPARSE;
    flow__free(bytes);
    return rc;
}

/* A string member of meta.json: *out a copy, or NULL when absent or null. */
static bool dk_meta_str(json_t *o, const char *key, char **out)
{
    const char *v = json_string_value(json_object_get(o, key));
    *out = v ? flow__strdup(v) : NULL;
    return !v || *out;
}

/* Read run `id`'s meta.json: as JSON into *root (when root is not NULL)
 * and into `out` (when not NULL). */
static flow_err dk_meta_load(struct dk_store *s, const char *id, json_t **root,
                             struct flow__run_meta *out, flow_error *err)
{
    if (out)
        memset(out, 0, sizeof(*out));
    char rel[DK_PATH_MAX];
    if (!flow__dk_run_path(rel, sizeof(rel), id, "meta.json"))
        return flow__dk_no_run(s, id, err);
    struct flow__buf text;
    flow__buf_init(&text, DK_META_MAX);
    int e = flow__dk_read_file(s->runsfd, rel, &text);
    if (e) {
        flow__buf_cleanup(&text);
        if (e == ENOENT || e == ENOTDIR)
            return flow__dk_no_run(s, id, err);
        return flow__error_errno(err, e, "cannot read run '%s' in store '%s'", id, s->path);
    }
    json_t *o = NULL;
    flow_err rc = flow__json_load(flow__buf_str(&text), text.len, 0, &o, NULL);
    flow__buf_cleanup(&text);
    if (rc == FLOW_OK && (!json_is_object(o) || !json_is_integer(json_object_get(o, "status")) ||
             !json_is_number(json_object_get(o, "created_at"))))
        rc = FLOW_EPARSE;
    if (rc == FLOW_OK && out) {
        snprintf(out->id, sizeof(out->id), "%s", id);
        out->status = (int)json_integer_value(json_object_get(o, "status"));
        out->created_at = json_number_value(json_object_get(o, "created_at"));
        out->ended_at = json_number_value(json_object_get(o, "ended_at"));
        rc = dk_meta_inputs(o, &out->inputs);
        if (rc == FLOW_OK && (!dk_meta_str(o, "flow", &out->flow) || !dk_meta_str(o, "version", &out->version) ||
            !dk_meta_str(o, "def_hash", &out->def_hash) ||
            !dk_meta_str(o, "source", &out->source) || !dk_meta_str(o, "parent", &out->parent)))
            rc = FLOW_ENOMEM;
    }
    if (rc != FLOW_OK) {
        json_decref(o);
        if (out)
            flow__run_meta_cleanup(out);
        return flow__error(err, rc, "cannot read run '%s' in store '%s': %s%s", id, s->path,
                           rc == FLOW_EPARSE ? "its meta.json is damaged"
                           : rc == FLOW_ENOMEM ? "out of memory"
                                               : "its inputs: ",
                           rc == FLOW_EPARSE || rc == FLOW_ENOMEM ? "" : flow__payload_why(rc));
    }
    if (root)
        *root = o;
    else
        json_decref(o);
    return FLOW_OK;
}

/* Build run `meta` in a temp directory: meta.json, an empty journal,
 * control/. */
static int dk_run_build(int tfd, const struct flow__buf *meta_text)
{
    int e = flow__dk_write_file(tfd, "meta.json", meta_text->data, meta_text->len);
    if (e)
        return e;
    e = flow__dk_write_file(tfd, "journal", "", 0);
    if (e)
        return e;
    if (mkdirat(tfd, "control", 0700) != 0)
        return errno;
    return fsync(tfd) != 0 ? errno : 0;
}

static flow_err dk_run_create(void *priv, const struct flow__run_meta *meta, flow_error *err)
{
    struct dk_store *s = priv;
    flow_err rc = flow__store_check_id(s->path, meta->id, err);
    if (rc != FLOW_OK)
        return rc;
    struct stat st;
    if (fstatat(s->runsfd, meta->id, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return flow__error(err, FLOW_EEXISTS, "run '%s' already exists in store '%s'", meta->id,
                           s->path);
    rc = dk_meta_text(s, meta);
    if (rc != FLOW_OK)
        return flow__error(err, rc, "cannot write the metadata of run '%s' in store '%s'",
                           meta->id, s->path);
    char tmp[DK_PATH_MAX];
    flow__dk_temp_name(s, tmp, sizeof(tmp), "new", meta->id);
    if (mkdirat(s->runsfd, tmp, 0700) != 0)
        return flow__error_errno(err, errno, "cannot create run '%s' in store '%s'", meta->id,
                                 s->path);
    int tfd = flow__dk_open_dir(s->runsfd, tmp);
    int e = tfd < 0 ? errno : dk_run_build(tfd, &s->buf);
    if (tfd >= 0)
        close(tfd);
    /* The run appears whole, or not at all. */
    if (!e && renameat2(s->runsfd, tmp, s->runsfd, meta->id, RENAME_NOREPLACE) != 0) {
        e = errno;
        if (e == EINVAL) { /* a file system without RENAME_NOREPLACE */
            e = 0;
            if (fstatat(s->runsfd, meta->id, &st, AT_SYMLINK_NOFOLLOW) == 0)
                e = EEXIST;
            else if (renameat(s->runsfd, tmp, s->runsfd, meta->id) != 0)
                e = errno;
        }
    }
    if (!e) {
        if (fsync(s->runsfd) == 0)
            return FLOW_OK;
        /* Not surely durable: take the new run back out. */
        e = errno;
        if (renameat(s->runsfd, meta->id, s->runsfd, tmp) != 0)
            dk_rmtree(s->runsfd, meta->id, 0);
    }
    dk_rmtree(s->runsfd, tmp, 0);
    if (e == EEXIST || e == ENOTEMPTY)
        return flow__error(err, FLOW_EEXISTS, "run '%s' already exists in store '%s'", meta->id,
                           s->path);
    return flow__error_errno(err, e, "cannot create run '%s' in store '%s'", meta->id, s->path);
}

static flow_err dk_run_get(void *priv, const char *id, struct flow__run_meta *out,
                           flow_error *err)
{
    return dk_meta_load(priv, id, NULL, out, err);
}

static int dk_meta_order(const void *a, const void *b)
{
    const struct flow__run_meta *x = a, *y = b;
    if (x->created_at != y->created_at)
        return x->created_at < y->created_at ? -1 : 1;
    return strcmp(x->id, y->id);
}

static flow_err dk_run_list(void *priv, flow__store_run_cb cb, void *udata, flow_error *err)
{
    struct dk_store *s = priv;
    int fd = flow__dk_open_dir(s->dirfd, "runs");
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        flow_err rc = flow__error_errno(err, errno, "cannot list the runs in store '%s'", s->path);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    FLOW__VEC(struct flow__run_meta) metas = {0};
    flow_err rc = FLOW_OK;
    struct dirent *e;
    while (rc == FLOW_OK && (errno = 0, e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue; /* ".", "..", runs being created or deleted */
        struct flow__run_meta m;
        flow_error one = {0};
        rc = dk_meta_load(s, e->d_name, NULL, &m, &one);
        if (rc == FLOW_ENOTFOUND) { /* deleted meanwhile, or not a run */
            rc = FLOW_OK;
            continue;
        }
        if (rc != FLOW_OK) {
            flow__error(err, rc, "%s", one.message);
            break;
        }
        FLOW__VEC_PUSH(&metas, m, rc);
        if (rc != FLOW_OK) {
            flow__run_meta_cleanup(&m);
            flow__error(err, rc, "cannot list the runs in store '%s': out of memory", s->path);
        }
    }
    if (rc == FLOW_OK && errno != 0)
        rc = flow__error_errno(err, errno, "cannot list the runs in store '%s'", s->path);
    closedir(d);
    if (rc == FLOW_OK && metas.count)
        qsort(metas.items, metas.count, sizeof(*metas.items), dk_meta_order);
    for (size_t i = 0; rc == FLOW_OK && i < metas.count; i++)
        rc = cb(udata, &metas.items[i]);
    for (size_t i = 0; i < metas.count; i++)
        flow__run_meta_cleanup(&metas.items[i]);
    FLOW__VEC_FREE(&metas);
    return rc;
}

static flow_err dk_run_set_status(void *priv, const char *id, int status, double ended_at,
                                  flow_error *err)
{
    struct dk_store *s = priv;
    json_t *o;
    flow_err rc = dk_meta_load(s, id, &o, NULL, err);
    if (rc != FLOW_OK)
        return rc;
    if (json_object_set_new(o, "status", json_integer(status)) != 0 ||
        json_object_set_new(o, "ended_at", json_real(ended_at)) != 0) {
        json_decref(o);
        return flow__error(err, FLOW_ENOMEM, "cannot set the status of run '%s' in store '%s': "
                                             "out of memory",
                           id, s->path);
    }
    flow__buf_reset(&s->buf);
    rc = flow__json_append(&s->buf, o, JSON_INDENT(2));
    if (rc == FLOW_OK)
        rc = flow__buf_appendc(&s->buf, '\n');
    json_decref(o);
    if (rc != FLOW_OK)
        return flow__error(err, rc, "cannot set the status of run '%s' in store '%s'", id,
                           s->path);
    int rfd = flow__dk_open_dir(s->runsfd, id);
    int e = rfd < 0 ? errno : dk_replace_file(rfd, "meta.json", s->buf.data, s->buf.len);
    if (rfd >= 0)
        close(rfd);
    if (e)
        return flow__error_errno(err, e, "cannot set the status of run '%s' in store '%s'", id,
                                 s->path);
    return FLOW_OK;
}

static flow_err dk_run_delete(void *priv, const char *id, flow_error *err)
{
    struct dk_store *s = priv;
    flow_err rc = flow__dk_run_exists(s, id, err);
    if (rc != FLOW_OK)
        return rc;
    /* Gone at once (the rename), then its files, best effort. */
    char tmp[DK_PATH_MAX];
    flow__dk_temp_name(s, tmp, sizeof(tmp), "del", id);
    if (renameat(s->runsfd, id, s->runsfd, tmp) != 0) {
        if (errno == ENOENT)
            return flow__dk_no_run(s, id, err);
        return flow__error_errno(err, errno, "cannot delete run '%s' in store '%s'", id,
                                 s->path);
    }
    fsync(s->runsfd);
    struct dk_run *c = flow__strmap_get(&s->runs, id);
    if (c) {
        dk_run_cold(c);
        flow__dk_lease_drop(c);
    }
    dk_rmtree(s->runsfd, tmp, 0);
    return FLOW_OK;
}

/* ------------------------------------------------------------------------ */
/* open / close                                                              */

/* Is directory `dfd` empty, but for a FORMAT.tmp left by a crash? 1 yes, 0
 * no, -1 error (errno). */
static int dk_dir_is_empty(int dfd)
{
    int fd = flow__dk_open_dir(dfd, ".");
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int empty = 1;
    struct dirent *e;
    while ((errno = 0, e = readdir(d))) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            strncmp(e->d_name, "FORMAT.tmp", 10) != 0) {
            empty = 0;
            break;
        }
    }
    if (empty && errno != 0)
        empty = -1;
    int saved = errno;
    closedir(d);
    errno = saved;
    return empty;
}

/* Write DIR/FORMAT in a new store. Processes creating one store at once
 * each write a file of their own and link it in: one link wins, and the
 * others find the same FORMAT in place (EEXIST). 0 or an errno. */
static int dk_create_format(int dfd)
{
    char line[64], tmp[64];
    int len = snprintf(line, sizeof(line), "%s %d\n", DK_FORMAT_MAGIC, FLOW__STORE_FORMAT);
    snprintf(tmp, sizeof(tmp), "FORMAT.tmp.%ld", (long)getpid());
    int e = flow__dk_write_file(dfd, tmp, line, (size_t)len);
    if (e)
        return e;
    e = linkat(dfd, tmp, dfd, "FORMAT", 0) != 0 && errno != EEXIST ? errno : 0;
    unlinkat(dfd, tmp, 0);
    if (!e && fsync(dfd) != 0)
        e = errno;
    return e;
}

static flow_err dk_check_format_once(struct dk_store *s, unsigned flags, bool last,
                                     flow_error *err);

/* Check DIR/FORMAT, or write it in an empty directory. */
static flow_err dk_check_format(struct dk_store *s, unsigned flags, flow_error *err)
{
    /* A directory that is not empty and has no FORMAT yet may be a store
     * another process is creating now: look once more a little later. */
    flow_err rc = dk_check_format_once(s, flags, false, err);
    if (rc == FLOW_EBUSY) {
        struct timespec pause = {0, 100 * 1000000L};
        nanosleep(&pause, NULL);
        rc = dk_check_format_once(s, flags, true, err);
    }
    return rc;
}

static flow_err dk_check_format_once(struct dk_store *s, unsigned flags, bool last,
                                     flow_error *err)
{
    struct flow__buf text;
    flow__buf_init(&text, 256);
    int e = flow__dk_read_file(s->dirfd, "FORMAT", &text);
    if (!e) {
        const char *t = flow__buf_str(&text);
        size_t mlen = strlen(DK_FORMAT_MAGIC);
        char *end = NULL;
        long format = 0;
        if (!strncmp(t, DK_FORMAT_MAGIC " ", mlen + 1)) {
            errno = 0;
            format = strtol(t + mlen + 1, &end, 10);
            if (errno || end == t + mlen + 1 || (*end && strcmp(end, "\n") != 0))
                format = 0;
        }
        flow__buf_cleanup(&text);
        if (format > FLOW__STORE_FORMAT)
            return flow__store_newer_format(err, s->path, format);
        if (format < 1)
            return flow__error(err, FLOW_EINVAL,
                               "store '%s' is not a libflow store (its FORMAT file is damaged)",
                               s->path);
        return FLOW_OK;
    }
    flow__buf_cleanup(&text);
    if (e != ENOENT)
        return flow__error_errno(err, e, "cannot read the format of store '%s'", s->path);
    int empty = dk_dir_is_empty(s->dirfd);
    if (empty < 0)
        return flow__error_errno(err, errno, "cannot open store '%s'", s->path);
    if (!empty && !last)
        return FLOW_EBUSY;
    if (!empty)
        return flow__error(err, FLOW_EINVAL,
                           "store '%s' is not a libflow store (a directory with other files "
                           "and no FORMAT)",
                           s->path);
    if (flags & FLOW__STORE_OPEN_NOCREATE)
        return flow__error(err, FLOW_ENOTFOUND, "no store '%s'", s->path);
    e = dk_create_format(s->dirfd);
    if (e)
        return flow__error_errno(err, e, "cannot create store '%s'", s->path);
    return FLOW_OK;
}

static void dk_close(void *priv)
{
    struct dk_store *s = priv;
    if (!s)
        return;
    flow__store_run_entries_free(&s->runs, dk_run_release);
    int fds[] = {s->runsfd, s->slotsfd, s->holdersfd, s->ratesfd, s->cachefd};
    for (size_t i = 0; i < FLOW__ARRAY_LEN(fds); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (s->dirfd >= 0)
        close(s->dirfd);
    flow__buf_cleanup(&s->buf);
    flow__free(s->path);
    flow__free(s);
}

static flow_err dk_open(const char *url_rest, unsigned flags, void **priv, flow_error *err)
{
    *priv = NULL;
    struct dk_store *s = flow__calloc(1, sizeof(*s));
    if (!s)
        return flow__error(err, FLOW_ENOMEM, "out of memory opening store 'disk:%s'", url_rest);
    s->dirfd = s->runsfd = s->slotsfd = s->holdersfd = s->ratesfd = s->cachefd = -1;
    flow__strmap_init(&s->runs);
    flow__buf_init(&s->buf, FLOW__BUF_DEFAULT_MAX);
    flow_err rc = flow__store_parse_url("disk", url_rest, &s->path, &s->strict, err);
    if (rc != FLOW_OK)
        goto out_close;
    if (!(flags & FLOW__STORE_OPEN_NOCREATE)) {
        rc = flow__store_make_dirs(s->path, true, err);
        if (rc != FLOW_OK)
            goto out_close;
    }
    s->dirfd = open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        if (errno == ENOENT && (flags & FLOW__STORE_OPEN_NOCREATE))
            rc = flow__error(err, FLOW_ENOTFOUND, "no store '%s'", s->path);
        else
            rc = flow__error_errno(err, errno, "cannot open store '%s'", s->path);
        goto out_close;
    }
    rc = dk_check_format(s, flags, err);
    if (rc != FLOW_OK)
        goto out_close;
    if (mkdirat(s->dirfd, "runs", 0700) != 0 && errno != EEXIST) {
        rc = flow__error_errno(err, errno, "cannot create directory 'runs' in store '%s'",
                               s->path);
        goto out_close;
    }
    s->runsfd = flow__dk_open_dir(s->dirfd, "runs");
    if (s->runsfd < 0) {
        rc = flow__error_errno(err, errno, "cannot open store '%s'", s->path);
        goto out_close;
    }
    *priv = s;
    return FLOW_OK;

out_close:
    dk_close(s);
    return rc;
}

const struct flow__store_ops flow__store_disk_ops = {
    .version = 4,
    .scheme = "disk",
    .caps = FLOW__STORE_CAP_DURABLE | FLOW__STORE_CAP_CROSS_PROCESS,
    .open = dk_open,                     /* FORMAT check, or written in an empty dir */
    .close = dk_close,                   /* closes journals, drops held leases */
    .run_create = dk_run_create,         /* built in runs/.new-*, renamed into place */
    .run_get = dk_run_get,               /* meta.json */
    .run_list = dk_run_list,             /* every meta.json, sorted */
    .run_set_status = dk_run_set_status, /* meta.json rewritten by rename */
    .append = dk_append,                 /* one write() per batch, fdatasync if strict */
    .commit = dk_commit,                 /* fdatasync */
    .read = dk_read,                     /* the valid prefix */
    .run_delete = dk_run_delete,         /* renamed away, then removed */
    .lease_acquire = flow__dk_lease_acquire,   /* flock on runs/<id>/lease */
    .lease_release = flow__dk_lease_release,   /* closes the lock's descriptor */
    .lease_get = flow__dk_lease_get,           /* is the file locked? by whom */
    .control_put = flow__dk_control_put,       /* temp file, link()ed to the next number */
    .control_take = flow__dk_control_take,     /* lowest number, read then unlinked */
    .answer_claim = flow__dk_answer_claim,     /* temp file link()ed to answers/<request> */
    .answer_list = flow__dk_answer_list,       /* every file of answers/ */
    .slot_acquire = flow__dk_slot_acquire,     /* a file per slot under the key's flock */
    .slot_release = flow__dk_slot_release,     /* unlinked only if ours */
    .slot_renew = flow__dk_slot_renew,         /* the keys holders/<holder>/ names */
    .slot_list = flow__dk_slot_list,           /* every slot file, no lock */
    .rate_take = flow__dk_rate_take,           /* a file of starts per key, flock'ed */
    .slot_contended = flow__dk_slot_contended, /* the key's mark files, under its flock */
    .cache_get = flow__dk_cache_get,           /* one file per entry, read whole */
    .cache_put = flow__dk_cache_put,           /* written aside, renamed over */
    .cache_gc = flow__dk_cache_gc,             /* a scan of cache/ */
};
