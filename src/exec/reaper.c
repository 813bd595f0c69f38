/* reaper.c -- the process that kills a dead runner's command groups (see
 * reaper.h for why).
 *
 * The runner and the reaper share one table of process groups, in memory
 * mapped before the fork: the runner adds and removes entries with plain
 * stores (no system call, no wake-up: a spawn costs nothing more), and the
 * reaper looks at the table only after the runner is gone -- it sleeps in
 * read() on a socket whose other end the runner holds, and end of file means
 * the runner has died. A dead writer's stores are all visible then, and no
 * new ones can come. The table is open addressing on the pgid with
 * tombstones, written only by the runner (under reaper_mu). */
#include "util/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "exec/reaper.h"
#include "exec/tree.h"
#include "exec/workdir.h"
#include "util/dirscan.h"
#include "util/log.h"

/* Groups the table can hold at once (a power of two); more running
 * commands than that are covered by PR_SET_PDEATHSIG alone. */
#define REAPER_SLOTS 16384
#define SLOT_FREE 0
#define SLOT_GONE (-1) /* a tombstone: probing goes on past it */

static pthread_mutex_t reaper_mu = PTHREAD_MUTEX_INITIALIZER;
static volatile pid_t *reaper_slots; /* [reaper_mu] shared with the reaper */
static int reaper_fd = -1;           /* [reaper_mu] our end of the socket */
static bool reaper_tried;            /* [reaper_mu] */
static bool atfork_set;              /* [reaper_mu] */
/* Set before the fork, for the reaper: */
static char tag_prefix[64];      /* FLOW_CMD_TAG=<token>-: the runner's processes */
static size_t tag_prefix_len;
static char work_base[4096];     /* where the runner makes its work directories */
static pid_t runner_pid;

#define REAPER_NAME "flow-reaper"
#define ROUND_PAUSE_NS 20000000L /* between rounds of the reaper's kills and sweeps */
#define KILL_ROUNDS 20
#define SWEEP_ROUNDS 100

static void pause_round(void)
{
    struct timespec ts = {0, ROUND_PAUSE_NS};
    nanosleep(&ts, NULL);
}

/* Is `pid` a reaper (of a runner that one of our commands started)? That
 * one inherited our tag, but has its own runner's commands to kill. */
static bool is_reaper(long pid)
{
    char path[64];
    char *p = path + sizeof(path);
    *--p = '\0';
    const char leaf[] = "/comm";
    p -= sizeof(leaf) - 1;
    memcpy(p, leaf, sizeof(leaf) - 1);
    do {
        *--p = (char)('0' + pid % 10);
        pid /= 10;
    } while (pid);
    p -= 6;
    memcpy(p, "/proc/", 6);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char name[32];
    ssize_t n = read(fd, name, sizeof(name));
    close(fd);
    return n == (ssize_t)sizeof(REAPER_NAME) && !memcmp(name, REAPER_NAME "\n", (size_t)n);
}

static int kill_if_tagged(const char *name, unsigned char type, void *arg)
{
    int *killed = arg;
    (void)type;
    long pid = flow__dirscan_number(name);
    if (pid > 1 && pid != getpid() &&
        flow__tree_environ_has((pid_t)pid, tag_prefix, tag_prefix_len, NULL) == 1 &&
        !is_reaper(pid) && kill((pid_t)pid, SIGKILL) == 0)
        (*killed)++;
    return 0;
}

/* SIGKILL every process that carries the runner's tag (what its commands
 * started, wherever it went: setsid, a double fork); returns how many. */
static int kill_tagged(void)
{
    int fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int killed = 0;
    flow__dirscan(fd, kill_if_tagged, &killed);
    close(fd);
    return killed;
}

static void close_all_but(int keep)
{
#ifdef SYS_close_range
    if (keep > 0 && syscall(SYS_close_range, 0u, (unsigned)keep - 1, 0u) == 0 &&
        syscall(SYS_close_range, (unsigned)keep + 1, ~0u, 0u) == 0)
        return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 1 << 20)
        max = 1 << 20;
    for (int fd = 0; fd < (int)max; fd++)
        if (fd != keep)
            close(fd);
}

static __attribute__((noreturn)) void reaper_main(int fd, volatile pid_t *slots)
{
    setpgid(0, 0); /* out of the runner's group: its Ctrl-C is not for us */
    struct sigaction ign;
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    const int quiet[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU};
    for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++)
        sigaction(quiet[i], &ign, NULL);
    prctl(PR_SET_NAME, REAPER_NAME, 0, 0, 0);
    close_all_but(fd);

    char c;
    while (read(fd, &c, 1) != 0 && errno == EINTR)
        ; /* nothing is ever sent: only the end of file matters */
    for (size_t i = 0; i < REAPER_SLOTS; i++) {
        pid_t pgid = slots[i];
        if (pgid > 1)
            kill(-pgid, SIGKILL);
    }
    /* Again while any survives: one may have forked before it died. */
    for (int round = 0; round < KILL_ROUNDS && kill_tagged() > 0; round++)
        pause_round();
    /* The runner's work directories: their locks go when its last
     * descriptor does, which may be a moment after the socket's. */
    int busy = 0;
    for (int round = 0; round < SWEEP_ROUNDS; round++) {
        flow__workdir_sweep(work_base, NULL, runner_pid, &busy);
        if (!busy)
            break;
        pause_round();
    }
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
    void *mem = mmap(NULL, REAPER_SLOTS * sizeof(pid_t), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return false;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        munmap(mem, REAPER_SLOTS * sizeof(pid_t));
        return false;
    }
    reaper_slots = mem; /* zeroed: every slot free */
    snprintf(tag_prefix, sizeof(tag_prefix), "%s", flow__tree_tag_prefix());
    tag_prefix_len = strlen(tag_prefix);
    snprintf(work_base, sizeof(work_base), "%s", flow__workdir_base());
    runner_pid = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        munmap(mem, REAPER_SLOTS * sizeof(pid_t));
        reaper_slots = NULL;
        return false;
    }
    if (pid == 0) {
        close(sv[0]);
        reaper_main(sv[1], mem); /* not reaper_slots: fork_child cleared it */
    }
    close(sv[1]);
    reaper_fd = sv[0];
    flow__tree_own(pid); /* never reaped: it lives as long as we do */
    return true;
}

/* In the child of a fork: the table and the socket are the parent's. A
 * child that runs commands too gets a reaper of its own; and its copy of the
 * socket must not keep the parent's reaper from seeing the parent die. */
static void fork_child(void)
{
    if (reaper_fd >= 0)
        close(reaper_fd);
    reaper_fd = -1;
    reaper_slots = NULL; /* still mapped here, but never written again */
    reaper_tried = false;
    pthread_mutex_init(&reaper_mu, NULL);
}

/* [reaper_mu] Start the reaper once; false if it could not be. */
static bool reaper_ready(void)
{
    if (!atfork_set)
        atfork_set = pthread_atfork(NULL, NULL, fork_child) == 0;
    if (!reaper_tried) {
        reaper_tried = true;
        if (!reaper_start()) {
            char text[128];
            flow__log(FLOW_LOG_WARN,
                      "cannot start the reaper process (%s): commands that start processes "
                      "of their own may outlive a crash of this one",
                      strerror_r(errno, text, sizeof(text)));
        }
    }
    return reaper_slots != NULL;
}

void flow__reaper_add(pid_t pgid)
{
    pthread_mutex_lock(&reaper_mu);
    if (pgid > 1 && reaper_ready()) {
        size_t free_at = REAPER_SLOTS;
        size_t i = (size_t)pgid & (REAPER_SLOTS - 1);
        for (size_t n = 0; n < REAPER_SLOTS; n++, i = (i + 1) & (REAPER_SLOTS - 1)) {
            pid_t v = reaper_slots[i];
            if (v == pgid) {
                free_at = REAPER_SLOTS; /* already there */
                break;
            }
            if (v == SLOT_GONE && free_at == REAPER_SLOTS)
                free_at = i;
            if (v == SLOT_FREE) {
                if (free_at == REAPER_SLOTS)
                    free_at = i;
                break;
            }
        }
        if (free_at < REAPER_SLOTS)
            reaper_slots[free_at] = pgid;
    }
    pthread_mutex_unlock(&reaper_mu);
}

void flow__reaper_del(pid_t pgid)
{
    pthread_mutex_lock(&reaper_mu);
    if (pgid > 1 && reaper_slots) {
        size_t i = (size_t)pgid & (REAPER_SLOTS - 1);
        for (size_t n = 0; n < REAPER_SLOTS; n++, i = (i + 1) & (REAPER_SLOTS - 1)) {
            pid_t v = reaper_slots[i];
            if (v == pgid) {
                reaper_slots[i] = SLOT_GONE;
                break;
            }
            if (v == SLOT_FREE)
                break;
        }
    }
    pthread_mutex_unlock(&reaper_mu);
}

void flow__reaper_prepare(void)
{
    pthread_mutex_lock(&reaper_mu);
    reaper_ready();
    pthread_mutex_unlock(&reaper_mu);
}
