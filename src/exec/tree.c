/* tree.c -- finding, killing and reaping every process of a command
 * attempt (see tree.h for the design). Processes are found through /proc:
 * a thread's children in /proc/PID/task/TID/children, an orphan's owner by
 * the tag in /proc/PID/environ.
 *
 * Lock order: tree_mu is a leaf (nothing else is taken under it).
 */
#include "util/compat.h"

#include "exec/tree.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flow.h"
#include "util/alloc.h"
#include "util/dirscan.h"
#include "util/error.h"
#include "util/log.h"
#include "util/vec.h"

/* More live attempts or owned children than this at once (the engine runs
 * at most 128 commands) only costs precision: see own_overflow. */
#define REGISTRY_MAX 4096
#define KILL_ROUNDS 8
#define KILL_WAIT_NS 1000000000LL /* for all rounds of one flow__tree_kill */

/* Whether this process has its token and is a subreaper. A fork clears it
 * (fork_child): the child that runs commands too is a runner of its own --
 * the subreaper flag is not inherited, and it needs a token of its own and
 * empty lists. */
static atomic_bool prepared;
static bool atfork_set; /* [tree_mu] */
static char tag_prefix[40]; /* [tree_mu] "FLOW_CMD_TAG=<16 hex digits>-" */
static size_t tag_prefix_len; /* [tree_mu] */
static atomic_uint_fast64_t next_seq = 1;

static pthread_mutex_t tree_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t own_pids[REGISTRY_MAX];     /* [tree_mu] children their owner reaps */
static size_t own_count;                 /* [tree_mu] */
static bool own_overflow;                /* [tree_mu] then every child may be owned */
static uint64_t live_seqs[REGISTRY_MAX]; /* [tree_mu] attempts not over */
static size_t live_count;                /* [tree_mu] */
static bool live_overflow;               /* [tree_mu] then no attempt is known over */
static struct tracked {
    pid_t pid;    /* an orphan seen alive... */
    uint64_t seq; /* ...with this attempt's tag */
} tracked[REGISTRY_MAX];                 /* [tree_mu] */
static size_t tracked_count;             /* [tree_mu] */
static atomic_bool reap_all;             /* flow_set_reap_orphans */

/* ------------------------------------------------------------------------ */
/* Identity                                                                  */

/* [tree_mu] Returns 0, or the errno of a failed PR_SET_CHILD_SUBREAPER. */
static int prepare(void)
{
    uint64_t token = 0;
    if (getrandom(&token, sizeof(token), GRND_NONBLOCK) != (ssize_t)sizeof(token)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        token = ((uint64_t)getpid() << 40) ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)ts.tv_nsec ^
                (uint64_t)(uintptr_t)&token;
    }
    snprintf(tag_prefix, sizeof(tag_prefix), "%s=%016" PRIx64 "-", FLOW__TREE_TAG_VAR, token);
    tag_prefix_len = strlen(tag_prefix);
    own_count = 0;
    own_overflow = false;
    live_count = 0;
    live_overflow = false;
    tracked_count = 0;
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 ? errno : 0;
}

static void fork_child(void)
{
    atomic_store(&prepared, false);
}

void flow__tree_prepare(void)
{
    if (atomic_load_explicit(&prepared, memory_order_acquire))
        return;
    int failed = 0;
    pthread_mutex_lock(&tree_mu);
    if (!atomic_load(&prepared)) {
        if (!atfork_set)
            atfork_set = pthread_atfork(NULL, NULL, fork_child) == 0;
        failed = prepare();
        atomic_store_explicit(&prepared, true, memory_order_release);
    }
    pthread_mutex_unlock(&tree_mu);
    if (failed) {
        char text[128];
        flow__log(FLOW_LOG_WARN,
                  "cannot become a child subreaper (%s): processes a command starts outside "
                  "its process group may outlive it",
                  flow__errtext(failed, text, sizeof(text)));
    }
}

const char *flow__tree_tag_prefix(void)
{
    flow__tree_prepare();
    return tag_prefix;
}

void flow__tree_tag(uint64_t seq, char *buf, size_t cap)
{
    flow__tree_prepare();
    snprintf(buf, cap, "%s%" PRIu64, tag_prefix, seq);
}

/* ------------------------------------------------------------------------ */
/* Registry                                                                  */

void flow_set_reap_orphans(bool all)
{
    atomic_store(&reap_all, all);
}

uint64_t flow__tree_attempt_begin(void)
{
    flow__tree_prepare();
    uint64_t seq = atomic_fetch_add(&next_seq, 1);
    pthread_mutex_lock(&tree_mu);
    if (live_count < REGISTRY_MAX)
        live_seqs[live_count++] = seq;
    else
        live_overflow = true;
    pthread_mutex_unlock(&tree_mu);
    return seq;
}

void flow__tree_attempt_end(uint64_t seq)
{
    pthread_mutex_lock(&tree_mu);
    for (size_t i = 0; i < live_count; i++) {
        if (live_seqs[i] == seq) {
            live_seqs[i] = live_seqs[--live_count];
            break;
        }
    }
    pthread_mutex_unlock(&tree_mu);
}

void flow__tree_own(pid_t pid)
{
    flow__tree_prepare();
    pthread_mutex_lock(&tree_mu);
    if (own_count < REGISTRY_MAX)
        own_pids[own_count++] = pid;
    else
        own_overflow = true;
    pthread_mutex_unlock(&tree_mu);
}

void flow__tree_disown(pid_t pid)
{
    pthread_mutex_lock(&tree_mu);
    for (size_t i = 0; i < own_count; i++) {
        if (own_pids[i] == pid) {
            own_pids[i] = own_pids[--own_count];
            break;
        }
    }
    pthread_mutex_unlock(&tree_mu);
}

static bool is_owned(pid_t pid)
{
    pthread_mutex_lock(&tree_mu);
    bool owned = own_overflow;
    for (size_t i = 0; !owned && i < own_count; i++)
        owned = own_pids[i] == pid;
    pthread_mutex_unlock(&tree_mu);
    return owned;
}

static bool is_over(uint64_t seq)
{
    pthread_mutex_lock(&tree_mu);
    bool over = !live_overflow;
    for (size_t i = 0; over && i < live_count; i++)
        over = live_seqs[i] != seq;
    pthread_mutex_unlock(&tree_mu);
    return over;
}

/* Remember an orphan seen alive with the tag of live attempt `seq`: when it
 * dies, its zombie is known to be ours. */
static void track(pid_t pid, uint64_t seq)
{
    pthread_mutex_lock(&tree_mu);
    bool known = false;
    for (size_t i = 0; !known && i < tracked_count; i++)
        known = tracked[i].pid == pid;
    if (!known && tracked_count < REGISTRY_MAX)
        tracked[tracked_count++] = (struct tracked){pid, seq};
    pthread_mutex_unlock(&tree_mu);
}

/* Forget `pid` (reaped); true when it was tracked. */
static bool untrack(pid_t pid)
{
    pthread_mutex_lock(&tree_mu);
    bool found = false;
    for (size_t i = 0; !found && i < tracked_count; i++) {
        if (tracked[i].pid == pid) {
            tracked[i] = tracked[--tracked_count];
            found = true;
        }
    }
    pthread_mutex_unlock(&tree_mu);
    return found;
}

/* ------------------------------------------------------------------------ */
/* /proc                                                                     */

static size_t put_str(char *buf, size_t n, size_t cap, const char *s)
{
    while (*s && n + 1 < cap)
        buf[n++] = *s++;
    return n;
}

static size_t put_num(char *buf, size_t n, size_t cap, pid_t v)
{
    char tmp[16];
    int len = 0;
    unsigned long u = (unsigned long)v;
    do {
        tmp[len++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (len > 0 && n + 1 < cap)
        buf[n++] = tmp[--len];
    return n;
}

/* "/proc/<pid>/<leaf>", or "/proc/<pid>/task/<tid>/<leaf>" when tid > 0;
 * without printf (async-signal-safe). */
static void proc_path(char *buf, size_t cap, pid_t pid, pid_t tid, const char *leaf)
{
    size_t n = put_num(buf, put_str(buf, 0, cap, "/proc/"), cap, pid);
    if (tid > 0)
        n = put_num(buf, put_str(buf, n, cap, "/task/"), cap, tid);
    n = put_str(buf, put_str(buf, n, cap, "/"), cap, leaf);
    buf[n] = '\0';
}

int flow__tree_environ_has(pid_t pid, const char *prefix, size_t len, uint64_t *seq)
{
    char path[64];
    proc_path(path, sizeof(path), pid, 0, "environ");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[4096];
    size_t pos = 0;     /* bytes of `prefix` matched at the start of this entry */
    bool miss = false;  /* this entry does not start with it */
    bool found = false; /* matched: now reading the number */
    uint64_t value = 0;
    int result = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            result = found ? 1 : (n < 0 ? -1 : 0);
            break;
        }
        for (ssize_t i = 0; i < n; i++) {
            char c = buf[i];
            if (found) {
                if (c >= '0' && c <= '9') {
                    value = value * 10 + (uint64_t)(c - '0');
                    continue;
                }
                result = 1;
                goto out;
            }
            if (c == '\0') {
                pos = 0;
                miss = false;
            } else if (!miss) {
                if (c != prefix[pos])
                    miss = true;
                else if (++pos == len)
                    found = true;
            }
        }
    }
out:
    close(fd);
    if (result == 1 && seq)
        *seq = value;
    return result;
}

/* What /proc/PID/stat says of a process: state letter (R, S, D, T, Z...)
 * and process group; false when it is gone. */
static bool proc_stat(pid_t pid, char *state, pid_t *pgid)
{
    char path[64];
    proc_path(path, sizeof(path), pid, 0, "stat");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char buf[512];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    /* "pid (name) S ppid pgrp ...": the name may hold anything but not
     * after its last ')'. */
    char *p = strrchr(buf, ')');
    long ppid = 0;
    long pgrp = 0;
    if (!p || sscanf(p + 1, " %c %ld %ld", state, &ppid, &pgrp) != 3)
        return false;
    *pgid = (pid_t)pgrp;
    return true;
}

static bool is_dead(char state)
{
    return state == 'Z' || state == 'X';
}

struct pidvec {
    pid_t *items;
    size_t count;
    size_t cap;
};

static bool pidvec_has(const struct pidvec *v, pid_t pid)
{
    for (size_t i = 0; i < v->count; i++) {
        if (v->items[i] == pid)
            return true;
    }
    return false;
}

/* Add `pid` once; out of memory, the walk sees less (best effort). */
static void pidvec_add(struct pidvec *v, pid_t pid)
{
    if (pidvec_has(v, pid))
        return;
    if (v->count == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 32;
        pid_t *items = flow__reallocarray(v->items, cap, sizeof(*items));
        if (!items)
            return;
        v->items = items;
        v->cap = cap;
    }
    v->items[v->count++] = pid;
}

/* Append the children of thread `tid` of process `pid` to `out`. */
static void thread_children(pid_t pid, pid_t tid, struct pidvec *out)
{
    char path[80];
    proc_path(path, sizeof(path), pid, tid, "children");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[4096];
    long cur = -1; /* the number being read, across reads */
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] >= '0' && buf[i] <= '9') {
                cur = (cur < 0 ? 0 : cur * 10) + (buf[i] - '0');
            } else if (cur >= 0) {
                pidvec_add(out, (pid_t)cur);
                cur = -1;
            }
        }
    }
    if (cur >= 0)
        pidvec_add(out, (pid_t)cur);
    close(fd);
}

struct thread_scan {
    pid_t pid;
    struct pidvec *out;
};

static int thread_entry(const char *name, unsigned char type, void *arg)
{
    struct thread_scan *t = arg;
    (void)type;
    long tid = flow__dirscan_number(name);
    if (tid > 0)
        thread_children(t->pid, (pid_t)tid, t->out);
    return 0;
}

/* Append the children of every thread of process `pid` to `out`. */
static void process_children(pid_t pid, struct pidvec *out)
{
    char path[64];
    proc_path(path, sizeof(path), pid, 0, "task");
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    struct thread_scan t = {pid, out};
    flow__dirscan(fd, thread_entry, &t);
    close(fd);
}

/* Orphans are re-parented to the first live thread of a subreaper -- our
 * main thread -- whichever thread spawned their command. */
static void adopted_children(struct pidvec *out)
{
    pid_t self = getpid();
    thread_children(self, self, out);
}

/* The live processes of attempt `seq`: the leader (0: none) and the
 * orphans that carry its tag or are in its process group `group` (0: none;
 * one that is exiting may show no environment any more), then all their
 * descendants. All but the leader (its owner's) are tracked: their zombies
 * are ours to reap. */
static void collect(uint64_t seq, pid_t leader, pid_t group, struct pidvec *out)
{
    out->count = 0;
    if (leader > 0)
        pidvec_add(out, leader);
    struct pidvec kids = {0};
    adopted_children(&kids);
    for (size_t i = 0; i < kids.count; i++) {
        pid_t p = kids.items[i];
        char st;
        pid_t pgid;
        uint64_t got = 0;
        if (p == leader || is_owned(p) || !proc_stat(p, &st, &pgid) || is_dead(st))
            continue;
        if ((group > 0 && pgid == group) ||
            (flow__tree_environ_has(p, tag_prefix, tag_prefix_len, &got) == 1 && got == seq))
            pidvec_add(out, p);
    }
    flow__free(kids.items);
    for (size_t i = 0; i < out->count; i++)
        process_children(out->items[i], out); /* grows as it goes: breadth first */
    for (size_t i = 0; i < out->count; i++) {
        if (out->items[i] != leader)
            track(out->items[i], seq);
    }
}

void flow__tree_signal(uint64_t seq, pid_t leader, int sig)
{
    flow__tree_prepare();
    struct pidvec v = {0};
    collect(seq, leader, 0, &v);
    for (size_t i = 0; i < v.count; i++)
        kill(v.items[i], sig);
    flow__free(v.items);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Forget the tracked processes that are gone (reaped by their parent): their
 * pids may be anyone's next. */
static void prune_tracked(void)
{
    pthread_mutex_lock(&tree_mu);
    for (size_t i = 0; i < tracked_count;) {
        char path[64];
        proc_path(path, sizeof(path), tracked[i].pid, 0, "stat");
        if (access(path, F_OK) != 0)
            tracked[i] = tracked[--tracked_count];
        else
            i++;
    }
    pthread_mutex_unlock(&tree_mu);
}

/* Is the zombie `pid` (in process group `pgid`) ours to reap? Never when
 * owned. Yes when it was tracked (found as an attempt's, alive), it was in
 * a command's process group (`group`, or a leader's still listed), or the
 * host said every orphan is ours. Anything else may be a child the host
 * waits for itself. */
static bool ours_to_reap(pid_t pid, pid_t pgid, pid_t group)
{
    if (is_owned(pid))
        return false;
    if (untrack(pid) || atomic_load(&reap_all) || (group > 0 && pgid == group))
        return true;
    return pgid != pid && pgid > 1 && is_owned(pgid); /* a running command's group */
}

struct seqvec {
    uint64_t *items;
    size_t count;
    size_t cap;
};

/* Reap our zombie children (see ours_to_reap); remember the live tagged
 * ones, and with `over` collect the attempts they belong to when those are
 * over. Returns how many children not owned it saw. */
static int reap_orphans(pid_t group, struct seqvec *over)
{
    prune_tracked();
    struct pidvec kids = {0};
    adopted_children(&kids);
    int seen = 0;
    for (size_t i = 0; i < kids.count; i++) {
        pid_t p = kids.items[i];
        char st;
        pid_t pgid;
        if (is_owned(p) || !proc_stat(p, &st, &pgid))
            continue;
        seen++;
        if (is_dead(st)) {
            if (ours_to_reap(p, pgid, group)) {
                siginfo_t info;
                waitid(P_PID, (id_t)p, &info, WEXITED | WNOHANG);
            }
            continue;
        }
        uint64_t seq = 0;
        if (flow__tree_environ_has(p, tag_prefix, tag_prefix_len, &seq) != 1)
            continue;
        if (!is_over(seq)) {
            track(p, seq);
        } else if (over) {
            flow_err rc = FLOW_OK;
            FLOW__VEC_PUSH(over, seq, rc); /* out of memory: the next sweep */
            (void)rc;
        }
    }
    flow__free(kids.items);
    return seen;
}

/* Has the main thread a child not owned? (Most attempts leave nothing: one
 * read of one /proc file says so.) */
static bool any_adopted(void)
{
    struct pidvec kids = {0};
    adopted_children(&kids);
    bool any = false;
    for (size_t i = 0; i < kids.count && !any; i++)
        any = !is_owned(kids.items[i]);
    flow__free(kids.items);
    return any;
}

void flow__tree_kill(uint64_t seq, pid_t leader, pid_t group)
{
    flow__tree_prepare();
    if (leader <= 0 && !any_adopted())
        return;
    int64_t deadline = now_ns() + KILL_WAIT_NS;
    struct pidvec v = {0};
    for (int round = 0; round < KILL_ROUNDS; round++) {
        collect(seq, round == 0 ? leader : 0, group, &v);
        if (!v.count)
            break;
        for (size_t i = 0; i < v.count; i++)
            kill(v.items[i], SIGKILL);
        /* Until each is dead: its children are ours (or dead) only then. */
        for (;;) {
            bool alive = false;
            for (size_t i = 0; i < v.count && !alive; i++) {
                char st;
                pid_t pgid;
                alive = proc_stat(v.items[i], &st, &pgid) && !is_dead(st);
            }
            if (!alive || now_ns() > deadline)
                break;
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
        if (now_ns() > deadline)
            break;
    }
    reap_orphans(group, NULL);
    flow__free(v.items);
}

int flow__tree_sweep(void)
{
    flow__tree_prepare();
    struct seqvec over = {0};
    int seen = reap_orphans(0, &over);
    for (size_t i = 0; i < over.count; i++)
        flow__tree_kill(over.items[i], 0, 0);
    FLOW__VEC_FREE(&over);
    return seen;
}
