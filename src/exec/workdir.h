/* workdir.h -- the files a runner shares with its command tasks, made so
 * that nothing a task plants among them can turn the runner's own writes or
 * reads elsewhere, and so that a runner that dies leaves nothing behind for
 * long.
 *
 * DESIGN
 * A run's work directory is BASE/flow-<run id>-<pid>-XXXXXX (BASE is
 * $TMPDIR, else /tmp), mode 0700, made by mkdtemp. The runner keeps it open
 * and holds flock(LOCK_EX) on it for as long as the directory is in use; the
 * kernel drops the lock when the runner dies, however it dies. So a work
 * directory whose lock can be taken belongs to a dead runner, and is
 * removed: by the next runner of the same run (a resume), when it makes its
 * own, and by the dead runner's reaper process (reaper.h), which looks for
 * its runner's pid in the names. No pid or time has to be trusted: a live
 * runner's lock is never free, whoever has its pid now.
 *
 * Files are created with O_CREAT | O_EXCL | O_NOFOLLOW, mode 0600, relative
 * to the directory's descriptor: a name a task planted (a symbolic link to a
 * file outside, a file of its own) is removed -- unlinkat removes the name,
 * never what a link points at -- and the file created again. Files are read
 * with O_NOFOLLOW | O_NONBLOCK and must be regular files (a FIFO would block
 * the runner). Removal never follows a link either.
 *
 * flow__workdir_sweep() and flow__workdir_rmtree_at() use only system calls
 * and no allocation, so the reaper (a fork of a threaded process) can call
 * them.
 */
#ifndef FLOW_EXEC_WORKDIR_H
#define FLOW_EXEC_WORKDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "flow.h"

struct flow__workdir {
    char *path; /* BASE/flow-<run id>-<pid>-XXXXXX; owned (flow__free) */
    int fd;     /* the directory, O_CLOEXEC, holding the lock; -1: none */
};

/* $TMPDIR when set and not empty, else "/tmp". Borrowed from the
 * environment. */
const char *flow__workdir_base(void);

/* Make the private work directory of run `run_id` (a valid run id: letters,
 * digits, '-', '_', '.'), locked, in flow__workdir_base(); first remove the
 * work directories dead runners left for the same run id. On failure `wd`
 * is {NULL, -1} and `err` names the directory and the reason. */
flow_err flow__workdir_make(const char *run_id, struct flow__workdir *wd, flow_error *err);

/* Remove the directory and everything in it (links are removed, never
 * followed), then release the lock. `wd` becomes {NULL, -1}; a `wd` of
 * {NULL, -1} is a no-op. */
void flow__workdir_remove(struct flow__workdir *wd);

/* Remove the work directories under `base` whose runner is dead (their lock
 * is free) and that belong to run `run_id` (NULL: any run) and to the
 * runner with pid `pid` (0: any). Only directories of the caller's user
 * are touched. Returns how many were removed; `*busy` (may be NULL) gets
 * how many matched but are still locked. Async-signal-safe. */
int flow__workdir_sweep(const char *base, const char *run_id, pid_t pid, int *busy);

/* Remove `name` in `dirfd` (a file, a link or a directory tree, depth at
 * most 16), never following a link. 0 or an errno. Async-signal-safe. */
int flow__workdir_rmtree_at(int dirfd, const char *name);

/* Create `name` in `dirfd` (AT_FDCWD: `name` is a path) as a new file of
 * mode 0600 holding `len` bytes of `data` (none when len is 0). Whatever
 * already has that name is removed first, once: never written through.
 * 0 or an errno; on failure no file is left. */
int flow__workfile_create(int dirfd, const char *name, const void *data, size_t len);
/* The same with another mode (0400: a file nobody may write, not even its
 * reader). */
int flow__workfile_create_mode(int dirfd, const char *name, const void *data, size_t len,
                               mode_t mode);

/* The same with `v` as JSON (jansson `flags`) and a newline; `shown` is the
 * path for the message, `what` says what the file is ("task input"). */
flow_err flow__workfile_write_json(int dirfd, const char *name, const json_t *v, size_t flags,
                                   const char *what, const char *shown, flow_error *err);

/* Open `name` in `dirfd` for reading: a descriptor (O_CLOEXEC, blocking
 * again), or -1 with errno ENOENT, ELOOP (a symbolic link: not followed),
 * EINVAL (not a regular file: a FIFO, a directory...) or another. */
int flow__workfile_open(int dirfd, const char *name);

/* One phrase for the errno of flow__workfile_*: "is a symbolic link (never
 * followed)", "is not a regular file", else strerror's text. */
const char *flow__workfile_strerror(int errnum, char *buf, size_t cap);

#endif
