/* spawn.c -- create a command task's child with clone(CLONE_VM|CLONE_VFORK)
 * on a private stack, set it up with async-signal-safe calls only, and
 * report a failed setup, chdir or execve to the parent through the memory
 * they share. See spawn.h and docs/internals/exec.md.
 */
#include "util/compat.h"

#include "exec/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* The child runs on this much of the parent's stack (glibc gives its own
 * posix_spawn child 32 KiB plus the argv size; we only make a handful of
 * calls, none of which recurses). */
#define CHILD_STACK_SIZE 32768

/* The kernel's signal set: 64 signals, not glibc's 1024. */
#define KSIGSET_SIZE (_NSIG / 8)

/* The child shares the parent's memory and thread pointer and must not touch
 * sanitizer shadow memory or runtime state: it is left uninstrumented, and
 * it calls the kernel directly, never a libc wrapper that a sanitizer
 * intercepts (ThreadSanitizer intercepts sigaction, open, dup2, prctl,
 * write and _exit; an interceptor run by the child would update the
 * runtime's tables -- the handlers it forwards signals to, its descriptor
 * table -- in the parent's memory, or finalize the runtime on _exit). */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
#define CHILD_FN __attribute__((noinline, no_sanitize("address", "undefined", "thread")))
#else
#define CHILD_FN __attribute__((noinline))
#endif

#if defined(__SANITIZE_THREAD__) /* gcc */
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) /* clang */
#define UNDER_TSAN 1
#endif
#endif

/* ThreadSanitizer intercepts clone() and treats it as a fork: its wrapper
 * runs the runtime's after-fork code in the child, which with CLONE_VM is
 * the parent's memory. The spawning thread was then left ignoring its own
 * synchronization (races that were not there were reported against
 * everything it touched later) and the runtime believed the process had
 * forked. glibc's __clone is the same function without the interceptor. */
#if defined(UNDER_TSAN) && defined(__GLIBC__)
extern int __clone(int (*fn)(void *), void *stack, int flags, void *arg, ...);
#define spawn_clone __clone
#else
#define spawn_clone clone
#endif

/* Shared between the parent and the child (CLONE_VM): the parent sleeps in
 * clone() until the child has exec'ed or exited, then reads `stage`. */
struct child {
    const struct flow__spawn_args *a;
    pid_t ppid;          /* to detect the parent's death before PDEATHSIG was set */
    int report_fd;       /* -1, or the write end of a CLOEXEC pipe (see below) */
    volatile int stage;  /* enum flow__spawn_stage of a failure */
    volatile int errnum; /* its errno */
};

/* Whether a CLONE_VM child really shares our memory. It does on Linux, but
 * valgrind turns CLONE_VM|CLONE_VFORK into a plain fork; there a failure is
 * reported through a CLOEXEC pipe instead (three more syscalls per spawn). */
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static bool memory_shared;

/* The raw kernel mask (what glibc does around its own clone): unlike
 * sigprocmask(), this also blocks glibc's internal signals. */
CHILD_FN static void set_kernel_mask(const sigset_t *set, sigset_t *old)
{
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, set, old, (size_t)KSIGSET_SIZE);
}

/* clone(CLONE_VM|CLONE_VFORK) with every signal blocked, on `stack`. */
static pid_t clone_vfork(int (*fn)(void *), void *arg, char *stack, size_t size, int *errnum)
{
    sigset_t all;
    sigset_t old;
    sigfillset(&all);
    set_kernel_mask(&all, &old);
    /* Stacks grow down on every architecture we build for. */
    pid_t pid = spawn_clone(fn, stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, arg);
    *errnum = errno;
    set_kernel_mask(&old, NULL);
    return pid;
}

static void reap(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

/* The kernel's struct sigaction. The child only reads and sets the handler,
 * the first field on every architecture we build for (not on MIPS); the
 * rest stays zero. */
struct ksigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned char mask[KSIGSET_SIZE];
};

CHILD_FN static long child_sys(long nr, long a, long b, long c, long d)
{
    return syscall(nr, a, b, c, d);
}

CHILD_FN static _Noreturn void child_exit(int status)
{
    for (;;)
        syscall(SYS_exit_group, status);
}

CHILD_FN static int probe_child(void *arg)
{
    *(volatile int *)arg = 1;
    child_exit(0);
}

static void probe(void)
{
    _Alignas(16) char stack[4096];
    volatile int flag = 0;
    int errnum;
    pid_t pid = clone_vfork(probe_child, (void *)&flag, stack, sizeof(stack), &errnum);
    if (pid > 0)
        reap(pid);
    memory_shared = flag == 1;
}

CHILD_FN static int child_fail(struct child *ch, int stage)
{
    ch->errnum = errno;
    ch->stage = stage;
    if (ch->report_fd >= 0) {
        int report[2] = {stage, ch->errnum};
        child_sys(SYS_write, ch->report_fd, (long)report, (long)sizeof(report), 0);
    }
    child_exit(127);
}

/* Put `fd` on `target` without O_CLOEXEC. */
CHILD_FN static int child_move_fd(int fd, int target)
{
    if (fd == target)
        return (int)child_sys(SYS_fcntl, fd, F_SETFD, 0, 0);
    return child_sys(SYS_dup3, fd, target, 0, 0) < 0 ? -1 : 0;
}

CHILD_FN static int child_main(void *arg)
{
    struct child *ch = arg;
    const struct flow__spawn_args *a = ch->a;

    /* Every signal is blocked (the parent blocked them around clone), so no
     * handler of the parent can run here; make sure none will once the mask
     * is cleared. SIG_IGN is inherited across exec, except for SIGPIPE: a
     * runner that ignores it must not give its children a broken `a | b`. */
    static const struct ksigaction dfl = {.handler = SIG_DFL};
    for (int sig = 1; sig < _NSIG; sig++) {
        struct ksigaction old;
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (child_sys(SYS_rt_sigaction, sig, 0, (long)&old, KSIGSET_SIZE) != 0 ||
            old.handler == SIG_DFL)
            continue;
        if (old.handler == SIG_IGN && sig != SIGPIPE)
            continue;
        child_sys(SYS_rt_sigaction, sig, (long)&dfl, 0, KSIGSET_SIZE);
    }

    if (child_sys(SYS_setpgid, 0, 0, 0, 0) != 0)
        return child_fail(ch, FLOW__SPAWN_SETUP);
    if (child_sys(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0) != 0)
        return child_fail(ch, FLOW__SPAWN_SETUP);
    /* The parent died before the death signal was armed: nobody is left to
     * reap or kill us. */
    if (child_sys(SYS_getppid, 0, 0, 0, 0) != ch->ppid)
        child_exit(127);

    int in = a->stdin_fd;
    if (in < 0) {
        /* child_move_fd clears O_CLOEXEC */
        in = (int)child_sys(SYS_openat, AT_FDCWD, (long)"/dev/null", O_RDONLY | O_CLOEXEC, 0);
        if (in < 0)
            return child_fail(ch, FLOW__SPAWN_SETUP);
    }
    /* All three sources are > 2 (or /dev/null, opened on the lowest free
     * descriptor): the dup3 calls cannot overwrite a source still needed. */
    if (child_move_fd(in, 0) != 0 || child_move_fd(a->stdout_fd, 1) != 0 ||
        child_move_fd(a->stderr_fd, 2) != 0)
        return child_fail(ch, FLOW__SPAWN_SETUP);
    /* Descriptors other modules (or the host) opened without O_CLOEXEC must
     * not leak into the task; older kernels lack this and keep them. */
#ifdef SYS_close_range
    child_sys(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC, 0);
#endif

    if (a->cwd && child_sys(SYS_chdir, (long)a->cwd, 0, 0, 0) != 0)
        return child_fail(ch, FLOW__SPAWN_CHDIR);

    static const sigset_t empty; /* zero: no signal */
    set_kernel_mask(&empty, NULL);
    child_sys(SYS_execve, (long)a->path, (long)a->argv, (long)a->envp, 0);
    return child_fail(ch, FLOW__SPAWN_EXEC);
}

/* Without shared memory: a CLOEXEC pipe whose write end the child holds
 * until exec (EOF: success) or failure (it writes stage and errno). */
static int report_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        if (fds[i] > 2)
            continue;
        int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        close(fds[i]);
        fds[i] = moved;
    }
    if (fds[0] < 0 || fds[1] < 0) {
        if (fds[0] >= 0)
            close(fds[0]);
        if (fds[1] >= 0)
            close(fds[1]);
        return -1;
    }
    return 0;
}

static void read_report(int fd, struct child *ch)
{
    int report[2];
    size_t got = 0;
    while (got < sizeof(report)) {
        ssize_t n = read(fd, (char *)report + got, sizeof(report) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got == sizeof(report)) {
        ch->stage = report[0];
        ch->errnum = report[1];
    }
}

pid_t flow__spawn(const struct flow__spawn_args *a, enum flow__spawn_stage *stage, int *errnum)
{
    pthread_once(&probe_once, probe);
    struct child ch;
    ch.a = a;
    ch.ppid = getpid();
    ch.report_fd = -1;
    ch.stage = FLOW__SPAWN_OK;
    ch.errnum = 0;
    int report[2] = {-1, -1};
    if (!memory_shared) {
        if (report_pipe(report) != 0) {
            *stage = FLOW__SPAWN_CLONE;
            *errnum = errno;
            return -1;
        }
        ch.report_fd = report[1];
    }

    /* The parent is suspended while the child uses this (CLONE_VFORK), so a
     * piece of the parent's own frame serves as the child's stack: no mmap,
     * no page faults on fresh memory, no munmap (and its TLB shootdown). */
    _Alignas(16) char stack[CHILD_STACK_SIZE];
    int clone_errno;
    pid_t pid = clone_vfork(child_main, &ch, stack, sizeof(stack), &clone_errno);
    if (report[1] >= 0) {
        close(report[1]);
        if (pid > 0)
            read_report(report[0], &ch);
        close(report[0]);
    }

    if (pid < 0) {
        *stage = FLOW__SPAWN_CLONE;
        *errnum = clone_errno;
        return -1;
    }
    if (ch.stage != FLOW__SPAWN_OK) {
        reap(pid); /* it has called _exit(): immediate */
        *stage = (enum flow__spawn_stage)ch.stage;
        *errnum = ch.errnum;
        return -1;
    }
    return pid;
}

int flow__spawn_find(const char *name, const char *path_list, char *out, size_t cap)
{
    size_t name_len = strlen(name);
    int result = ENOENT;
    const char *p = path_list;
    for (;;) {
        const char *end = strchrnul(p, ':');
        const char *dir = p;
        size_t dir_len = (size_t)(end - p);
        if (dir_len == 0) {
            dir = ".";
            dir_len = 1;
        }
        if (dir_len + 1 + name_len < cap) {
            memcpy(out, dir, dir_len);
            out[dir_len] = '/';
            memcpy(out + dir_len + 1, name, name_len + 1);
            /* One stat per directory; the execute bits stand in for
             * access(X_OK) (execve reports the rare mismatch). */
            struct stat st;
            if (stat(out, &st) == 0) {
                if (S_ISREG(st.st_mode) && (st.st_mode & 0111))
                    return 0;
                result = EACCES;
            }
        }
        if (!*end)
            break;
        p = end + 1;
    }
    return result;
}
