/* workdir.c -- private work directories and the files in them (see
 * workdir.h for the design). */
#include "util/compat.h"

#include "exec/workdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/buf.h"
#include "util/dirscan.h"
#include "util/error.h"
#include "util/json.h"

#define RMTREE_DEPTH 16

/* ------------------------------------------------------------------------ */
/* Removal                                                                   */

static int rmtree_in(int dirfd, int depth);

/* Remove one entry of `dirfd`: unlink it, or empty it and rmdir it when it
 * is a directory. */
static int remove_entry(int dirfd, const char *name, int depth)
{
    if (unlinkat(dirfd, name, 0) == 0)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return errno == ENOENT ? 0 : errno;
    if (depth >= RMTREE_DEPTH)
        return ELOOP;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : errno;
    int rc = rmtree_in(fd, depth + 1);
    close(fd);
    if (unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        return rc ? rc : errno;
    return rc;
}

struct rmtree_pass {
    int fd;
    int depth;
    int rc;       /* the last failure */
    bool removed; /* something went in this pass */
};

static int rmtree_one(const char *name, unsigned char type, void *arg)
{
    struct rmtree_pass *p = arg;
    (void)type;
    int e = remove_entry(p->fd, name, p->depth);
    if (e)
        p->rc = e;
    else
        p->removed = true;
    return 0;
}

/* Empty the directory open as `fd`. Entries are read again from the start
 * after each pass of removals, until a pass finds nothing to remove. */
static int rmtree_in(int fd, int depth)
{
    struct rmtree_pass p = {fd, depth, 0, false};
    for (int pass = 0; pass < 64; pass++) {
        if (lseek(fd, 0, SEEK_SET) != 0)
            return errno;
        p.removed = false;
        if (flow__dirscan(fd, rmtree_one, &p) < 0)
            return errno;
        if (!p.removed || p.rc)
            break;
    }
    return p.rc;
}

int flow__workdir_rmtree_at(int dirfd, const char *name)
{
    return remove_entry(dirfd, name, 0);
}

/* ------------------------------------------------------------------------ */
/* Work directories                                                          */

const char *flow__workdir_base(void)
{
    const char *base = getenv("TMPDIR");
    return base && *base ? base : "/tmp";
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Does `name` read flow-<run id>-<pid>-XXXXXX, with that run id (NULL: any)
 * and pid (0: any)? */
static bool name_matches(const char *name, const char *run_id, pid_t pid)
{
    size_t len = strlen(name);
    if (len < 5 + 1 + 1 + 1 + 1 + 6 || memcmp(name, "flow-", 5) != 0)
        return false;
    for (size_t i = len - 6; i < len; i++) {
        if (!is_alnum(name[i]))
            return false;
    }
    if (name[len - 7] != '-')
        return false;
    size_t end = len - 7; /* one past the pid's last digit */
    size_t start = end;
    long value = 0;
    while (start > 5 && name[start - 1] >= '0' && name[start - 1] <= '9') {
        start--;
        if (end - start > 10)
            return false;
    }
    if (start == end || name[start - 1] != '-' || start - 1 <= 5)
        return false;
    for (size_t i = start; i < end; i++)
        value = value * 10 + (name[i] - '0');
    if (pid > 0 && value != (long)pid)
        return false;
    if (run_id) {
        size_t id_len = start - 1 - 5;
        if (strlen(run_id) != id_len || memcmp(name + 5, run_id, id_len) != 0)
            return false;
    }
    return true;
}

/* A work directory found by a sweep: remove it if it is ours and its
 * runner is gone. 1 removed, 0 busy, -1 left alone. */
static int sweep_one(int basefd, const char *name)
{
    int fd = openat(basefd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    int result = -1;
    if (fstat(fd, &st) != 0 || st.st_uid != geteuid())
        goto out_close;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        result = errno == EWOULDBLOCK ? 0 : -1;
        goto out_close;
    }
    if (flow__workdir_rmtree_at(basefd, name) == 0)
        result = 1;
out_close:
    close(fd); /* and with it the lock we took */
    return result;
}

struct sweep {
    int basefd;
    const char *run_id;
    pid_t pid;
    int removed;
    int busy;
};

static int sweep_entry(const char *name, unsigned char type, void *arg)
{
    struct sweep *w = arg;
    if ((type != DT_DIR && type != DT_UNKNOWN) || !name_matches(name, w->run_id, w->pid))
        return 0;
    int r = sweep_one(w->basefd, name);
    if (r > 0)
        w->removed++;
    else if (r == 0)
        w->busy++;
    return 0;
}

int flow__workdir_sweep(const char *base, const char *run_id, pid_t pid, int *busy)
{
    struct sweep w = {-1, run_id, pid, 0, 0};
    w.basefd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w.basefd >= 0) {
        flow__dirscan(w.basefd, sweep_entry, &w);
        close(w.basefd);
    }
    if (busy)
        *busy = w.busy;
    return w.removed;
}

flow_err flow__workdir_make(const char *run_id, struct flow__workdir *wd, flow_error *err)
{
    wd->path = NULL;
    wd->fd = -1;
    const char *base = flow__workdir_base();
    /* What a dead runner of this run left (a resume after a SIGKILL). */
    flow__workdir_sweep(base, run_id, 0, NULL);
    char *path = NULL;
    int fd = -1;
    bool ok = false;
    /* Another process's sweep for this run id (a worker's, on the same
     * machine) may lock and remove the new directory before we lock it:
     * then make another. Locked and still at its path, it is ours. */
    for (int tries = 0; tries < 8; tries++) {
        if (fd >= 0)
            close(fd);
        flow__free(path);
        path = flow__asprintf("%s/flow-%s-%ld-XXXXXX", base, run_id, (long)getpid());
        if (!path)
            return flow__error(err, FLOW_ENOMEM, "out of memory creating a work directory");
        if (!mkdtemp(path)) {
            flow_err rc = flow__error_errno(
                err, errno, "cannot create a work directory for commands in '%s'", base);
            flow__free(path);
            return rc;
        }
        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat a, b;
        ok = fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &a) == 0 &&
             stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
        if (ok)
            break;
    }
    /* mkdtemp's mode went through the umask: make it exactly 0700. */
    if (!ok || fchmod(fd, 0700) != 0) {
        flow_err rc =
            flow__error_errno(err, errno, "cannot set up the work directory '%s'", path);
        if (fd >= 0)
            close(fd);
        rmdir(path);
        flow__free(path);
        return rc;
    }
    wd->path = path;
    wd->fd = fd;
    return FLOW_OK;
}

void flow__workdir_remove(struct flow__workdir *wd)
{
    if (wd->fd >= 0) {
        rmtree_in(wd->fd, 0);
        if (wd->path)
            rmdir(wd->path); /* a name swapped for a link is not a directory: refused */
        close(wd->fd);
    }
    flow__free(wd->path);
    wd->path = NULL;
    wd->fd = -1;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int flow__workfile_create(int dirfd, const char *name, const void *data, size_t len)
{
    return flow__workfile_create_mode(dirfd, name, data, len, 0600);
}

int flow__workfile_create_mode(int dirfd, const char *name, const void *data, size_t len,
                               mode_t mode)
{
    const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(dirfd, name, flags, mode);
    if (fd < 0 && errno == EEXIST) {
        /* Planted or stale: the name goes, whatever it points at stays. */
        int e = flow__workdir_rmtree_at(dirfd, name);
        if (e)
            return e;
        fd = openat(dirfd, name, flags, mode);
    }
    if (fd < 0)
        return errno;
    int rc = len ? write_all(fd, data, len) : 0;
    if (close(fd) != 0 && !rc && errno != EINTR)
        rc = errno;
    if (rc)
        unlinkat(dirfd, name, 0);
    return rc;
}

flow_err flow__workfile_write_json(int dirfd, const char *name, const json_t *v, size_t flags,
                                   const char *what, const char *shown, flow_error *err)
{
    char small[4096];
    struct flow__buf big;
    flow__buf_init(&big, 0);
    const char *text = small;
    flags |= JSON_ENCODE_ANY | flow__json_real_flags(v);
    size_t len = json_dumpb(v, small, sizeof(small) - 1, flags);
    if (len == 0)
        return flow__error(err, FLOW_EINVAL, "cannot write the %s as JSON", what);
    if (len < sizeof(small) - 1) {
        small[len++] = '\n';
    } else {
        if (flow__json_append(&big, v, flags) || flow__buf_appendc(&big, '\n')) {
            flow__buf_cleanup(&big);
            return flow__error(err, FLOW_ENOMEM, "out of memory writing the %s", what);
        }
        text = big.data;
        len = big.len;
    }
    int e = flow__workfile_create(dirfd, name, text, len);
    flow__buf_cleanup(&big);
    if (!e)
        return FLOW_OK;
    char ebuf[128];
    return flow__error(err, e == ENOMEM ? FLOW_ENOMEM : FLOW_EIO, "cannot write %s '%s': %s",
                       what, shown, flow__workfile_strerror(e, ebuf, sizeof(ebuf)));
}

int flow__workfile_open(int dirfd, const char *name)
{
    /* O_NONBLOCK: a FIFO in place of the file must not block us in open. */
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    int e = 0;
    if (fstat(fd, &st) != 0)
        e = errno;
    else if (!S_ISREG(st.st_mode))
        e = EINVAL;
    else if (fcntl(fd, F_SETFL, 0) != 0)
        e = errno;
    if (e) {
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

const char *flow__workfile_strerror(int errnum, char *buf, size_t cap)
{
    if (errnum == ELOOP)
        snprintf(buf, cap, "it is a symbolic link (never followed)");
    else if (errnum == EINVAL)
        snprintf(buf, cap, "it is not a regular file");
    else
        flow__errtext(errnum, buf, cap);
    return buf;
}
