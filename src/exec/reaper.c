/* reaper.c -- the process that kills a dead runner's command groups (see
 * reaper.h for why). Messages are 8 bytes on a stream socket: an operation
 * (add, del) and a process group id, in the order the runner sent them, so
 * a group is always added before it is removed. */
#include "util/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "exec/reaper.h"
#include "util/log.h"

/* Groups the reaper can keep at once; more running commands than that are
 * covered by PR_SET_PDEATHSIG alone. */
#define REAPER_MAX 16384

enum { OP_ADD = 1, OP_DEL = 2 };

struct reaper_msg {
    int32_t op;
    int32_t pgid;
};

static pthread_mutex_t reaper_mu = PTHREAD_MUTEX_INITIALIZER;
static int reaper_fd = -1;  /* [reaper_mu] our end; -1 until started */
static bool reaper_broken;  /* [reaper_mu] could not start, or it died */

/* The reaper's table lives in its copy of this process's memory. */
static pid_t groups[REAPER_MAX];

static void close_all_but(int keep)
{
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 1 << 20)
        max = 1 << 20;
#ifdef SYS_close_range
    if (keep > 0 && syscall(SYS_close_range, 0u, (unsigned)keep - 1, 0u) == 0 &&
        syscall(SYS_close_range, (unsigned)keep + 1, ~0u, 0u) == 0)
        return;
#endif
    for (int fd = 0; fd < (int)max; fd++)
        if (fd != keep)
            close(fd);
}

static __attribute__((noreturn)) void reaper_main(int fd)
{
    setpgid(0, 0); /* out of the runner's group: its Ctrl-C is not for us */
    struct sigaction ign;
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    const int quiet[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU};
    for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++)
        sigaction(quiet[i], &ign, NULL);
    prctl(PR_SET_NAME, "flow-reaper", 0, 0, 0);
    close_all_but(fd);

    size_t count = 0;
    char buf[4096];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof(buf) - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* end of file: the runner is gone */
        have += (size_t)n;
        size_t used = 0;
        for (; have - used >= sizeof(struct reaper_msg); used += sizeof(struct reaper_msg)) {
            struct reaper_msg m;
            memcpy(&m, buf + used, sizeof(m));
            if (m.op == OP_ADD && count < REAPER_MAX && m.pgid > 1) {
                groups[count++] = m.pgid;
            } else if (m.op == OP_DEL) {
                for (size_t i = 0; i < count; i++) {
                    if (groups[i] == m.pgid) {
                        groups[i] = groups[--count];
                        break;
                    }
                }
            }
        }
        memmove(buf, buf + used, have - used);
        have -= used;
    }
    for (size_t i = 0; i < count; i++)
        kill(-groups[i], SIGKILL);
    /* Leave by exec rather than exit: nothing of the runner's (atexit
     * handlers, a leak checker watching it) runs in this copy of it. */
    char *const argv[] = {(char *)"true", NULL};
    char *const envp[] = {NULL};
    execve("/bin/true", argv, envp);
    _exit(0);
}

/* [reaper_mu] */
static bool reaper_start(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return false;
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return false;
    }
    if (pid == 0) {
        close(sv[0]);
        reaper_main(sv[1]);
    }
    close(sv[1]);
    reaper_fd = sv[0];
    return true;
}

static void reaper_send(int32_t op, pid_t pgid)
{
    pthread_mutex_lock(&reaper_mu);
    if (reaper_fd < 0 && !reaper_broken && op != OP_DEL && !reaper_start()) {
        char text[128];
        reaper_broken = true;
        flow__log(FLOW_LOG_WARN, "cannot start the reaper process (%s): commands that start "
                                 "processes of their own may outlive a crash of this one",
                  strerror_r(errno, text, sizeof(text)));
    }
    if (reaper_fd >= 0 && pgid > 0) {
        struct reaper_msg m = {op, (int32_t)pgid};
        ssize_t n;
        while ((n = send(reaper_fd, &m, sizeof(m), MSG_NOSIGNAL)) < 0 && errno == EINTR)
            ;
        if (n != (ssize_t)sizeof(m)) {
            close(reaper_fd);
            reaper_fd = -1;
            reaper_broken = true;
            flow__log(FLOW_LOG_WARN, "the reaper process is gone: commands that start processes "
                                     "of their own may outlive a crash of this one");
        }
    }
    pthread_mutex_unlock(&reaper_mu);
}

void flow__reaper_add(pid_t pgid)
{
    reaper_send(OP_ADD, pgid);
}

void flow__reaper_del(pid_t pgid)
{
    reaper_send(OP_DEL, pgid);
}

void flow__reaper_prepare(void)
{
    reaper_send(OP_ADD, 0); /* starts it; group 0 is not sent */
}
