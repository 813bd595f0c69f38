/* spawn.h -- low-level child creation for command tasks: what glibc's
 * posix_spawn does (clone with CLONE_VM|CLONE_VFORK on a private stack, so
 * the cost does not grow with the parent's heap), plus what it cannot: a
 * process group of its own, PR_SET_PDEATHSIG and the errno of a failed
 * chdir or execve reported back to the parent. Linux only.
 */
#ifndef FLOW_EXEC_SPAWN_H
#define FLOW_EXEC_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

/* Where a spawn failed. */
enum flow__spawn_stage {
    FLOW__SPAWN_OK = 0,
    FLOW__SPAWN_CLONE, /* clone() itself, in the parent (EAGAIN, ENOMEM) */
    FLOW__SPAWN_SETUP, /* process group, death signal or descriptors */
    FLOW__SPAWN_CHDIR, /* chdir(cwd) */
    FLOW__SPAWN_EXEC   /* execve(path) */
};

/* What to run. Everything is borrowed for the duration of the call only:
 * once flow__spawn() returns, the child has exec'ed or is gone. */
struct flow__spawn_args {
    const char *path;  /* passed to execve as is: no PATH search */
    char *const *argv; /* NULL-terminated */
    char *const *envp; /* NULL-terminated */
    const char *cwd;   /* NULL: the parent's */
    int stdin_fd;      /* -1: /dev/null */
    int stdout_fd;     /* the child's stdout */
    int stderr_fd;     /* the child's stderr */
};

/* Start a child: own process group (pgid = pid), PR_SET_PDEATHSIG=SIGKILL
 * (bound to the calling thread), signals with a handler and SIGPIPE back to
 * SIG_DFL, an empty signal mask, the three descriptors on 0, 1 and 2, every
 * other inherited descriptor closed at exec, then chdir and execve. The
 * descriptors given must be > 2 (the caller's are all O_CLOEXEC; the child
 * clears that flag on its copies).
 * Returns the pid; on failure -1 with `*stage` and `*errnum` set, and the
 * child, if one was created, already reaped. Thread-safe; async-signal
 * handlers of the process never run on the child's stack. */
pid_t flow__spawn(const struct flow__spawn_args *a, enum flow__spawn_stage *stage, int *errnum);

/* Look `name` (no '/') up in `path_list` (a PATH value; an empty element is
 * the current directory) like execvp: the first regular file with an execute
 * bit wins. Its path goes to `out` (`cap` bytes). Returns 0, ENOENT (not in
 * any directory) or EACCES (only non-executable files or directories of
 * that name). */
int flow__spawn_find(const char *name, const char *path_list, char *out, size_t cap);

#endif
