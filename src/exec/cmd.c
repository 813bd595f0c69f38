/* cmd.c -- command tasks: one child per attempt (started by spawn.c), watched
 * through a pidfd and non-blocking pipes from the scheduler's poll loop;
 * stdout kept up to a limit, the tail of stderr in a ring; the FLOW_* files
 * (docs/file-format.md, Bodies) written before the spawn and read after the
 * exit.
 * See cmd.h and docs/internals/exec.md.
 */
#include "util/compat.h"

#include "exec/cmd.h"
#include "exec/reaper.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec/spawn.h"
#include "exec/tree.h"
#include "exec/workdir.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/json.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* the same number on every architecture */
#endif

#define DEFAULT_OUTPUT_LIMIT ((size_t)16 << 20)
#define DEFAULT_STDERR_TAIL ((size_t)64 << 10)
#define STDOUT_TAIL_MAX 4096 /* stdout kept for logs when it is not the output */
#define READ_CHUNK 65536       /* a full pipe buffer per read */
#define READS_PER_EVENT 16     /* then back to the poll loop: others get a turn */
#define DRAIN_READS 64         /* after the exit: bounded against escaped writers */
#define STDERR_LINE_MAX 300    /* bytes of stderr quoted in an error */

extern char **environ;

/* One running attempt. The three paths live in `files`, after the struct. */
struct flow__cmd {
    pid_t pid;            /* also the process group id */
    uint64_t seq;         /* the attempt's number in its FLOW_CMD_TAG (tree.h) */
    char tag[64];         /* FLOW_CMD_TAG=... */
    int pidfd;            /* readable at the exit; -1 once reaped */
    bool pidfd_is_timer;  /* no pidfd_open (kernel < 5.3, valgrind): a 10 ms timerfd */
    int out_fd;           /* read end of the stdout pipe; -1 once closed */
    int err_fd;           /* read end of the stderr pipe; -1 once closed */
    bool reaped;
    bool lost;            /* reaped by someone else (SIGCHLD ignored...): no status */
    int exit_status;      /* -1 unless exited normally */
    int term_signal;      /* 0 unless killed by a signal */
    flow_output_mode mode;
    size_t output_limit;

    char *out;            /* stdout, up to output_limit bytes (NUL-terminated) */
    size_t out_len;
    size_t out_cap;
    bool out_over;        /* more than output_limit bytes came: `out` is dropped */
    bool out_nomem;       /* could not grow `out`: it is dropped */
    bool output_file;     /* the output came from $FLOW_OUTPUT, not stdout */

    char *tail;           /* ring of the last tail_cap bytes of stderr; lazy */
    size_t tail_cap;
    size_t tail_pos;      /* next byte to write */
    bool tail_full;       /* the ring has wrapped */
    bool tail_nomem;

    bool input_shared;    /* input_path is a shared input file, not ours to remove */
    bool outputs_gone;    /* FLOW_OUTPUT and FLOW_CONTROL read and removed, or absent */
    int dirfd;            /* the work_dir: every file is opened relative to it */
    bool own_dirfd;       /* opened here (the caller gave no flow__workdir) */
    char *input_path;     /* full paths, for the child's environment... */
    char *output_path;
    char *control_path;
    const char *input_name; /* ...and their last parts, for us (in dirfd) */
    const char *output_name;
    const char *control_name;
    char files[];
};

/* ------------------------------------------------------------------------ */
/* Environment                                                               */

/* Order matters: values are filled in this order by env_build(). */
static const char *const flow_vars[] = {
    "FLOW_RUN_ID", "FLOW_TASK",  "FLOW_ACTIVATION", "FLOW_ATTEMPT", "FLOW_INPUT",
    "FLOW_STATE",  "FLOW_OUTPUT", "FLOW_CONTROL",   FLOW__TREE_TAG_VAR,
};
#define FLOW_VAR_COUNT FLOW__ARRAY_LEN(flow_vars)

static bool env_is(const char *entry, const char *name, size_t name_len)
{
    return strncmp(entry, name, name_len) == 0 && entry[name_len] == '=';
}

static size_t env_name_len(const char *entry)
{
    return (size_t)(strchrnul(entry, '=') - entry);
}

static bool is_flow_var(const char *entry)
{
    if (strncmp(entry, "FLOW_", 5) != 0)
        return false;
    for (size_t i = 0; i < FLOW_VAR_COUNT; i++) {
        if (env_is(entry, flow_vars[i], strlen(flow_vars[i])))
            return true;
    }
    return false;
}

/* The runner's variables a child inherits: read from `environ` at each
 * spawn (a scan of a few dozen pointers, nothing copied), so there is no
 * process-wide copy to keep or free. Like getenv, this assumes the host does
 * not change the environment while commands start. */
static bool env_keep(const char *entry)
{
    return strchr(entry, '=') && !is_flow_var(entry);
}

/* True when a later entry of `env` (from index i + 1) sets the same name. */
static bool env_set_later(const char *const *env, size_t i, size_t name_len)
{
    for (size_t j = i + 1; env[j]; j++) {
        if (env_is(env[j], env[i], name_len))
            return true;
    }
    return false;
}

/* The child's environment: our FLOW_* variables, then spec->env (the last
 * of equal names wins; our FLOW_* cannot be overridden), then the runner's
 * minus the names spec->env sets. One block; flow__free it. */
static char **env_build(const struct flow__cmd_spec *spec, const struct flow__cmd *c)
{
    char activation[24];
    char attempt[16];
    snprintf(activation, sizeof(activation), "%" PRIu64, spec->activation);
    snprintf(attempt, sizeof(attempt), "%d", spec->attempt);
    const char *values[FLOW_VAR_COUNT] = {
        spec->run_id ? spec->run_id : "",
        spec->task ? spec->task : "",
        activation,
        attempt,
        c->input_path,
        spec->state_path, /* NULL: not exported */
        c->output_path,
        c->control_path,
        c->tag + sizeof(FLOW__TREE_TAG_VAR), /* the value after "FLOW_CMD_TAG=" */
    };

    size_t extra = 0;
    for (const char *const *e = spec->env; e && *e; e++)
        extra++;
    size_t bytes = 0;
    for (size_t i = 0; i < FLOW_VAR_COUNT; i++) {
        if (values[i])
            bytes += strlen(flow_vars[i]) + strlen(values[i]) + 2;
    }
    size_t inherited = 0;
    for (char **e = environ; e && *e; e++)
        inherited++;
    size_t slots = FLOW_VAR_COUNT + extra + inherited + 1;
    char **envp = flow__malloc(slots * sizeof(char *) + bytes);
    if (!envp)
        return NULL;

    char *s = (char *)(envp + slots);
    size_t k = 0;
    for (size_t i = 0; i < FLOW_VAR_COUNT; i++) {
        if (!values[i])
            continue;
        size_t name_len = strlen(flow_vars[i]);
        size_t value_len = strlen(values[i]);
        envp[k++] = s;
        memcpy(s, flow_vars[i], name_len);
        s[name_len] = '=';
        memcpy(s + name_len + 1, values[i], value_len + 1);
        s += name_len + value_len + 2;
    }
    for (size_t i = 0; i < extra; i++) {
        const char *entry = spec->env[i];
        if (is_flow_var(entry) || env_set_later(spec->env, i, env_name_len(entry)))
            continue;
        envp[k++] = (char *)entry;
    }
    for (size_t i = 0; i < inherited && environ[i]; i++) {
        const char *entry = environ[i];
        if (!env_keep(entry))
            continue;
        bool overridden = false;
        for (size_t j = 0; j < extra && !overridden; j++)
            overridden = env_is(entry, spec->env[j], env_name_len(spec->env[j]));
        if (!overridden)
            envp[k++] = (char *)entry;
    }
    envp[k] = NULL;
    return envp;
}

/* PATH for looking argv[0] up: spec->env's if it sets one, else the
 * runner's, else the C library's default. */
static const char *lookup_path(const struct flow__cmd_spec *spec)
{
    const char *path = NULL;
    for (const char *const *e = spec->env; e && *e; e++) {
        if (env_is(*e, "PATH", 4))
            path = *e + 5;
    }
    if (!path)
        path = getenv("PATH");
    return path ? path : "/usr/local/bin:/usr/bin:/bin";
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Move a descriptor of ours off 0..2 (only when the runner closed its
 * standard descriptors), so the child's dup2 calls cannot clobber it. */
static int lift_fd(int fd)
{
    if (fd < 0 || fd > 2)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int saved = errno;
    close(fd);
    errno = saved;
    return moved;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static void trim(const char **p, size_t *len)
{
    const char *s = *p;
    size_t n = *len;
    while (n > 0 && is_space(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_space(s[n - 1]))
        n--;
    *p = s;
    *len = n;
}

/* Length of the valid UTF-8 sequence at s (at most `len` bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    unsigned min;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    while (len > 0) {
        size_t n = utf8_seq(p, len);
        if (!n)
            return false;
        p += n;
        len -= n;
    }
    return true;
}

/* "16 MiB", "512 KiB" or "1000 bytes". */
static void format_size(size_t n, char *buf, size_t cap)
{
    if (n >= ((size_t)1 << 20) && n % ((size_t)1 << 20) == 0)
        snprintf(buf, cap, "%zu MiB", n >> 20);
    else if (n >= 1024 && n % 1024 == 0)
        snprintf(buf, cap, "%zu KiB", n >> 10);
    else
        snprintf(buf, cap, "%zu bytes", n);
}

/* ------------------------------------------------------------------------ */
/* Files of the attempt                                                      */

/* The inputs most attempts get -- null, and {} (the inputs of a run started
 * without any, given to its start tasks) -- are files shared by every such
 * attempt of the work directory, written once: a file created and removed
 * per attempt cost W2 two inode operations a task. They are read-only
 * (0400), so that no task changes another's input by writing its own. */
static const struct shared_input {
    const char *name; /* in the work directory */
    const char *text; /* the compact JSON and its newline */
} shared_inputs[] = {{"null.json", "null\n"}, {"empty.json", "{}\n"}};

/* Which shared input file holds `input`; -1: none. */
static int shared_input_of(const json_t *input)
{
    if (!input || json_is_null(input))
        return 0;
    if (json_is_object(input) && json_object_size(input) == 0)
        return 1;
    return -1;
}

static bool shared_input_intact(struct flow__cmd *c, const char *text, size_t len)
{
    int fd = flow__workfile_open(c->dirfd, c->input_name);
    if (fd < 0)
        return false;
    char got[8];
    ssize_t n = read(fd, got, sizeof(got));
    struct stat st;
    bool ok = n == (ssize_t)len && !memcmp(got, text, len) && fstat(fd, &st) == 0 &&
              (st.st_mode & 07777) == 0400;
    close(fd);
    return ok;
}

/* The shared input file is there, as we wrote it (read back: a task running
 * as root may write where the mode says no), or written again. */
static flow_err ensure_shared_input(struct flow__cmd *c, int which, flow_error *err)
{
    const char *text = shared_inputs[which].text;
    size_t len = strlen(text);
    if (shared_input_intact(c, text, len))
        return FLOW_OK;
    int e = flow__workfile_create_mode(c->dirfd, c->input_name, text, len, 0400);
    if (!e)
        return FLOW_OK;
    char ebuf[128];
    return flow__error(err, e == ENOMEM ? FLOW_ENOMEM : FLOW_EIO, "cannot write task input '%s': %s",
                       c->input_path, flow__workfile_strerror(e, ebuf, sizeof(ebuf)));
}

/* Read a whole file of at most `limit` bytes, `name` in `dirfd`. Returns 0
 * and a NUL-terminated `*text` (flow__free it), or an errno: ENOENT when
 * absent, EFBIG when over the limit, ELOOP for a symbolic link (not
 * followed), EINVAL when not a regular file. */
static int read_file(int dirfd, const char *name, size_t limit, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    int fd = flow__workfile_open(dirfd, name);
    if (fd < 0)
        return errno;
    int rc = 0;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = errno;
        goto out_close;
    }
    if ((uint64_t)st.st_size > limit) {
        rc = EFBIG;
        goto out_close;
    }
    size_t cap = (size_t)st.st_size + 1;
    char *buf = flow__malloc(cap + 1);
    if (!buf) {
        rc = ENOMEM;
        goto out_close;
    }
    size_t n = 0;
    for (;;) {
        if (n == cap) { /* grew since fstat */
            rc = EFBIG;
            flow__free(buf);
            goto out_close;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = errno;
            flow__free(buf);
            goto out_close;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > limit) {
        rc = EFBIG;
        flow__free(buf);
        goto out_close;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
out_close:
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Start                                                                     */

static flow_err spawn_error(flow_error *err, enum flow__spawn_stage stage, int errnum,
                            const char *path, const char *cwd)
{
    char ebuf[128];
    const char *why = flow__errtext(errnum, ebuf, sizeof(ebuf));
    flow_err code = errnum == ENOMEM ? FLOW_ENOMEM : FLOW_ESPAWN;
    switch (stage) {
    case FLOW__SPAWN_CHDIR:
        return flow__error(err, code, "cannot change directory to '%s': %s", cwd, why);
    case FLOW__SPAWN_EXEC: {
        struct stat st;
        if (errnum == EACCES && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            why = "is a directory";
        else if (errnum == ENOENT && stat(path, &st) == 0)
            why = "bad interpreter (no such file or directory)"; /* the #! line's */
        return flow__error(err, code, "cannot execute '%s': %s", path, why);
    }
    case FLOW__SPAWN_OK:
    case FLOW__SPAWN_CLONE:
    case FLOW__SPAWN_SETUP:
        break;
    }
    return flow__error(err, code, "cannot start '%s': %s", path, why);
}

static int make_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    fds[0] = lift_fd(fds[0]);
    fds[1] = lift_fd(fds[1]);
    /* Only our end is non-blocking: the child gets an ordinary pipe. */
    if (fds[0] < 0 || fds[1] < 0 || fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0) {
        int saved = errno;
        close_fd(&fds[0]);
        close_fd(&fds[1]);
        errno = saved;
        return -1;
    }
    return 0;
}

/* A descriptor that becomes readable when `pid` exits: its pidfd, or where
 * the kernel (or valgrind) has no pidfd_open, a timer to look every 10 ms. */
static int watch_child(pid_t pid, bool *is_timer)
{
    static atomic_bool no_pidfd;
    *is_timer = false;
    if (!atomic_load_explicit(&no_pidfd, memory_order_relaxed)) {
        int fd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (fd >= 0 || errno != ENOSYS)
            return lift_fd(fd);
        atomic_store_explicit(&no_pidfd, true, memory_order_relaxed);
    }
    int fd = lift_fd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (fd < 0)
        return -1;
    struct itimerspec every = {{0, 10000000}, {0, 10000000}};
    if (timerfd_settime(fd, 0, &every, NULL) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    *is_timer = true;
    return fd;
}

/* Lay the attempt's file names out after the struct. */
static struct flow__cmd *cmd_new(const struct flow__cmd_spec *spec, int shared)
{
    char prefix[64];
    int plen = snprintf(prefix, sizeof(prefix), "/a%" PRIu64 "-%d.", spec->activation,
                        spec->attempt);
    size_t dir_len = strlen(spec->work_dir);
    size_t stem = dir_len + (size_t)plen;
    size_t size = (stem + sizeof("input.json")) + (stem + sizeof("output")) +
                  (stem + sizeof("control")) + (dir_len + sizeof("/empty.json"));
    struct flow__cmd *c = flow__calloc(1, sizeof(*c) + size);
    if (!c)
        return NULL;
    char *p = c->files;
    c->output_path = p;
    p += snprintf(p, stem + sizeof("output"), "%s%soutput", spec->work_dir, prefix) + 1;
    c->control_path = p;
    p += snprintf(p, stem + sizeof("control"), "%s%scontrol", spec->work_dir, prefix) + 1;
    c->input_path = p;
    if (shared >= 0)
        snprintf(p, dir_len + sizeof("/empty.json"), "%s/%s", spec->work_dir,
                 shared_inputs[shared].name);
    else
        snprintf(p, stem + sizeof("input.json"), "%s%sinput.json", spec->work_dir, prefix);
    c->input_shared = shared >= 0;
    c->output_name = c->output_path + dir_len + 1;
    c->control_name = c->control_path + dir_len + 1;
    c->input_name = c->input_path + dir_len + 1;
    c->dirfd = -1;
    c->pid = -1;
    c->seq = flow__tree_attempt_begin();
    flow__tree_tag(c->seq, c->tag, sizeof(c->tag));
    c->pidfd = -1;
    c->out_fd = -1;
    c->err_fd = -1;
    c->exit_status = -1;
    c->mode = spec->output_mode;
    c->output_limit = spec->output_limit ? spec->output_limit : DEFAULT_OUTPUT_LIMIT;
    c->tail_cap = spec->stderr_tail ? spec->stderr_tail : DEFAULT_STDERR_TAIL;
    return c;
}

static void remove_files(struct flow__cmd *c)
{
    if (c->dirfd < 0)
        return;
    if (!c->input_shared)
        unlinkat(c->dirfd, c->input_name, 0);
    if (!c->outputs_gone) {
        flow__workdir_rmtree_at(c->dirfd, c->output_name);
        flow__workdir_rmtree_at(c->dirfd, c->control_name);
    }
}

static void cmd_free(struct flow__cmd *c)
{
    flow__tree_attempt_end(c->seq);
    if (c->own_dirfd)
        close_fd(&c->dirfd);
    close_fd(&c->pidfd);
    close_fd(&c->out_fd);
    close_fd(&c->err_fd);
    flow__free(c->out);
    flow__free(c->tail);
    flow__free(c);
}

/* The work_dir as a descriptor: the caller's, or opened for this attempt. */
static flow_err open_work_dir(const struct flow__cmd_spec *spec, struct flow__cmd *c,
                              flow_error *err)
{
    if (spec->workdir && spec->workdir->fd >= 0) {
        c->dirfd = spec->workdir->fd;
        return FLOW_OK;
    }
    c->dirfd = open(spec->work_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (c->dirfd < 0)
        return flow__error_errno(err, errno, "cannot open the work directory '%s'",
                                 spec->work_dir);
    c->own_dirfd = true;
    return FLOW_OK;
}

/* FLOW_INPUT written as a new file of mode 0600; whatever has the names of
 * FLOW_OUTPUT and FLOW_CONTROL removed, so that the task creates them anew
 * and writes through nothing another task planted there. (Creating them
 * empty, 0600, cost W2 two inode allocations a task: several percent.) */
static flow_err create_files(const struct flow__cmd_spec *spec, struct flow__cmd *c, int shared,
                             flow_error *err)
{
    flow_err rc;
    if (shared >= 0)
        rc = ensure_shared_input(c, shared, err);
    else
        rc = flow__workfile_write_json(c->dirfd, c->input_name, spec->input, JSON_COMPACT,
                                       "task input", c->input_path, err);
    if (rc != FLOW_OK)
        return rc;
    const char *names[] = {c->output_name, c->control_name};
    const char *paths[] = {c->output_path, c->control_path};
    const char *vars[] = {"$FLOW_OUTPUT", "$FLOW_CONTROL"};
    for (size_t i = 0; i < 2; i++) {
        int e = flow__workdir_rmtree_at(c->dirfd, names[i]);
        if (e) {
            char ebuf[128];
            return flow__error(err, FLOW_EIO, "cannot clear %s '%s': %s", vars[i], paths[i],
                               flow__errtext(e, ebuf, sizeof(ebuf)));
        }
    }
    return FLOW_OK;
}

flow_err flow__cmd_start(const struct flow__cmd_spec *spec, struct flow__cmd **out,
                         flow_error *err)
{
    *out = NULL;
    if (!spec->work_dir)
        return flow__error(err, FLOW_EINVAL, "command task without a work directory");
    const char *sh_argv[] = {"/bin/sh", "-c", spec->shell, NULL};
    const char *const *argv = spec->shell ? sh_argv : spec->argv;
    if (!argv || !argv[0])
        return flow__error(err, FLOW_EINVAL, "command task without a command");
    if (!argv[0][0])
        return flow__error(err, FLOW_ESPAWN, "command not found: ''");
    for (const char *const *e = spec->env; e && *e; e++) {
        if (!strchr(*e, '=') || **e == '=')
            return flow__error(err, FLOW_EINVAL,
                               "bad environment entry '%s' for '%s' (expected NAME=VALUE)", *e,
                               argv[0]);
    }
    /* Resolve argv[0] here, so that a missing command costs no spawn and
     * gets a message that says so. */
    char resolved[PATH_MAX];
    const char *path = argv[0];
    if (!strchr(path, '/')) {
        int rc = flow__spawn_find(path, lookup_path(spec), resolved, sizeof(resolved));
        if (rc == EACCES)
            return flow__error(err, FLOW_ESPAWN, "cannot execute '%s': permission denied", path);
        if (rc != 0)
            return flow__error(err, FLOW_ESPAWN, "command not found: '%s'", path);
        path = resolved;
    }

    /* Before the first child: orphans of its children must come to us. */
    flow__tree_prepare();
    int shared = shared_input_of(spec->input);
    struct flow__cmd *c = cmd_new(spec, shared);
    if (!c)
        return flow__error(err, FLOW_ENOMEM, "out of memory starting '%s'", argv[0]);

    flow_err rc = open_work_dir(spec, c, err);
    if (rc != FLOW_OK) {
        cmd_free(c);
        return rc;
    }
    rc = create_files(spec, c, shared, err);
    if (rc != FLOW_OK) {
        remove_files(c);
        cmd_free(c);
        return rc;
    }

    char ebuf[128];
    int out_pipe[2] = {-1, -1};
    int err_pipe[2] = {-1, -1};
    int in_fd = -1;
    char **envp = env_build(spec, c);
    if (!envp) {
        rc = flow__error(err, FLOW_ENOMEM, "out of memory starting '%s'", argv[0]);
        goto out_remove;
    }
    if (make_pipe(out_pipe) != 0 || make_pipe(err_pipe) != 0) {
        rc = flow__error_errno(err, errno, "cannot create a pipe for '%s'", argv[0]);
        goto out_close;
    }
    if (spec->stdin_input) {
        in_fd = lift_fd(flow__workfile_open(c->dirfd, c->input_name));
        if (in_fd < 0) {
            rc = flow__error(err, FLOW_EIO, "cannot open task input '%s': %s", c->input_path,
                             flow__workfile_strerror(errno, ebuf, sizeof(ebuf)));
            goto out_close;
        }
    }

    struct flow__spawn_args sa = {
        .path = path,
        .argv = (char *const *)argv,
        .envp = envp,
        .cwd = spec->cwd,
        .stdin_fd = in_fd,
        .stdout_fd = out_pipe[1],
        .stderr_fd = err_pipe[1],
    };
    enum flow__spawn_stage stage;
    int errnum;
    pid_t pid = flow__spawn(&sa, &stage, &errnum);
    if (pid < 0) {
        rc = spawn_error(err, stage, errnum, path, spec->cwd);
        goto out_close;
    }
    c->pid = pid;
    c->pidfd = watch_child(pid, &c->pidfd_is_timer);
    if (c->pidfd < 0) {
        int saved = errno;
        kill(-pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        rc = flow__error_errno(err, saved, "cannot watch '%s' (pidfd_open)", argv[0]);
        goto out_close;
    }
    flow__tree_own(pid);
    flow__reaper_add(pid);
    c->out_fd = out_pipe[0];
    c->err_fd = err_pipe[0];
    out_pipe[0] = -1;
    err_pipe[0] = -1;
    rc = FLOW_OK;

out_close:
    close_fd(&out_pipe[0]);
    close_fd(&out_pipe[1]);
    close_fd(&err_pipe[0]);
    close_fd(&err_pipe[1]);
    close_fd(&in_fd);
    flow__free(envp);
    if (rc == FLOW_OK) {
        *out = c;
        return FLOW_OK;
    }
out_remove:
    remove_files(c);
    cmd_free(c);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Supervision                                                               */

int flow__cmd_pollfds(struct flow__cmd *c, struct pollfd *fds, int max)
{
    int n = 0;
    int mine[] = {c->pidfd, c->out_fd, c->err_fd};
    for (size_t i = 0; i < FLOW__ARRAY_LEN(mine) && n < max; i++) {
        if (mine[i] < 0)
            continue;
        fds[n].fd = mine[i];
        fds[n].events = POLLIN;
        fds[n].revents = 0;
        n++;
    }
    return n;
}

static void keep_stdout(struct flow__cmd *c, const char *p, size_t n)
{
    if (c->out_over || c->out_nomem)
        return;
    if (n > c->output_limit - c->out_len) {
        /* The output cannot be used any more (FLOW_OUTPUT may still win):
         * give the memory back now. */
        c->out_over = true;
        flow__free(c->out);
        c->out = NULL;
        c->out_len = c->out_cap = 0;
        return;
    }
    size_t need = c->out_len + n + 1;
    if (need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap * 2 : 1024;
        if (cap < need)
            cap = need;
        if (cap > c->output_limit + 1)
            cap = c->output_limit + 1;
        char *q = flow__realloc(c->out, cap);
        if (!q) {
            c->out_nomem = true;
            flow__free(c->out);
            c->out = NULL;
            c->out_len = c->out_cap = 0;
            return;
        }
        c->out = q;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    c->out[c->out_len] = '\0';
}

static void keep_stderr(struct flow__cmd *c, const char *p, size_t n)
{
    if (!c->tail) {
        if (c->tail_nomem)
            return;
        c->tail = flow__malloc(c->tail_cap);
        if (!c->tail) {
            c->tail_nomem = true;
            return;
        }
    }
    size_t cap = c->tail_cap;
    if (n >= cap) {
        memcpy(c->tail, p + n - cap, cap);
        c->tail_pos = 0;
        c->tail_full = true;
        return;
    }
    size_t first = cap - c->tail_pos < n ? cap - c->tail_pos : n;
    memcpy(c->tail + c->tail_pos, p, first);
    memcpy(c->tail, p + first, n - first);
    c->tail_pos += n;
    if (c->tail_pos >= cap) {
        c->tail_pos -= cap;
        c->tail_full = true;
    }
}

/* Read what `*fd` has, at most `reads` times; close it at EOF or error. */
static void read_pipe(struct flow__cmd *c, int *fd, int reads)
{
    char chunk[READ_CHUNK];
    while (*fd >= 0 && reads-- > 0) {
        ssize_t n = read(*fd, chunk, sizeof(chunk));
        if (n > 0) {
            if (fd == &c->out_fd)
                keep_stdout(c, chunk, (size_t)n);
            else
                keep_stderr(c, chunk, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            reads++;
            continue;
        }
        if (n < 0 && errno == EAGAIN)
            return;
        close_fd(fd);
    }
}

static void record_status(struct flow__cmd *c, const siginfo_t *info)
{
    if (info->si_code == CLD_EXITED) {
        c->exit_status = info->si_status;
    } else {
        c->exit_status = -1;
        c->term_signal = info->si_status;
    }
}

/* The leader has exited (or is being forced to): kill what is left of its
 * group while its zombie still holds the pgid, reap it, then take what the
 * pipes still hold and close them, so that a grandchild that inherited them
 * cannot keep the attempt alive. */
static void finish_exit(struct flow__cmd *c)
{
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    if (!c->lost) {
        kill(-c->pid, SIGKILL);
        while (waitid(P_PID, (id_t)c->pid, &info, WEXITED) != 0) {
            if (errno != EINTR) {
                c->lost = true;
                break;
            }
        }
        if (!c->lost)
            record_status(c, &info);
    }
    flow__reaper_del(c->pid); /* the group is dead and its pgid free to be reused */
    flow__tree_disown(c->pid);
    c->reaped = true;
    /* What left the group (setsid, a daemon's double fork) was adopted by
     * us when its parent died: it carries the attempt's tag. */
    flow__tree_kill(c->seq, 0, c->lost ? 0 : c->pid); /* lost: the pgid may be reused */
    close_fd(&c->pidfd);
    read_pipe(c, &c->out_fd, DRAIN_READS);
    read_pipe(c, &c->err_fd, DRAIN_READS);
    close_fd(&c->out_fd);
    close_fd(&c->err_fd);
}

static void check_exit(struct flow__cmd *c)
{
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    /* See the exit without reaping: the zombie keeps the pgid ours. */
    if (waitid(P_PID, (id_t)c->pid, &info, WEXITED | WNOWAIT | WNOHANG) != 0) {
        if (errno == EINTR)
            return;
        c->lost = true; /* ECHILD: reaped behind our back; the pgid may be reused */
    } else if (info.si_pid == 0) {
        return;
    }
    finish_exit(c);
}

void flow__cmd_handle(struct flow__cmd *c, const struct pollfd *fds, int count)
{
    bool exited = false;
    for (int i = 0; i < count; i++) {
        if (!fds[i].revents || fds[i].fd < 0)
            continue;
        if (fds[i].fd == c->out_fd)
            read_pipe(c, &c->out_fd, READS_PER_EVENT);
        else if (fds[i].fd == c->err_fd)
            read_pipe(c, &c->err_fd, READS_PER_EVENT);
        else if (fds[i].fd == c->pidfd)
            exited = true;
    }
    if (exited && c->pidfd_is_timer) {
        uint64_t ticks; /* a tick, not an exit: clear it, then look */
        ssize_t n = read(c->pidfd, &ticks, sizeof(ticks));
        (void)n;
    }
    if (exited && !c->reaped)
        check_exit(c);
}

bool flow__cmd_is_done(const struct flow__cmd *c)
{
    return c->reaped && c->out_fd < 0 && c->err_fd < 0;
}

void flow__cmd_kill(struct flow__cmd *c, int sig)
{
    /* Until the reap, the leader (alive or zombie) keeps the pgid ours. */
    if (!c->reaped) {
        kill(-c->pid, sig);
        flow__tree_signal(c->seq, c->pid, sig);
    }
}

int flow__cmd_pid(const struct flow__cmd *c)
{
    return c->pid;
}

/* ------------------------------------------------------------------------ */
/* Result                                                                    */

/* The stderr ring in order, or NULL when nothing came. */
static char *tail_take(struct flow__cmd *c, size_t *len)
{
    *len = 0;
    if (!c->tail || (!c->tail_full && c->tail_pos == 0))
        return NULL;
    size_t n = c->tail_full ? c->tail_cap : c->tail_pos;
    char *s = flow__malloc(n + 1);
    if (!s)
        return NULL;
    if (c->tail_full) {
        size_t first = c->tail_cap - c->tail_pos;
        memcpy(s, c->tail + c->tail_pos, first);
        memcpy(s + first, c->tail, c->tail_pos);
    } else {
        memcpy(s, c->tail, n);
    }
    s[n] = '\0';
    *len = n;
    return s;
}

/* `len` bytes of `s`, cut to at most STDERR_LINE_MAX bytes, made printable
 * and valid UTF-8 (a control character or a broken sequence is '?', a tab
 * a space), into `out`. */
static void printable(const char *s, size_t len, char *out, size_t cap)
{
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (len > 0 && k + 4 < cap && k < STDERR_LINE_MAX) {
        size_t seq = utf8_seq(p, len);
        if (seq == 0 || (seq == 1 && (*p < 0x20 || *p == 0x7F))) {
            out[k++] = *p == '\t' ? ' ' : '?';
            seq = 1;
        } else {
            memcpy(out + k, p, seq);
            k += seq;
        }
        p += seq;
        len -= seq;
    }
    out[k] = '\0';
}

/* The last line of `s` with something in it, trimmed, made printable, into
 * `out`. */
static void last_line(const char *s, size_t len, char *out, size_t cap)
{
    out[0] = '\0';
    size_t end = len;
    for (;;) {
        while (end > 0 && is_space(s[end - 1]))
            end--;
        if (end == 0)
            return;
        size_t start = end;
        while (start > 0 && s[start - 1] != '\n')
            start--;
        const char *line = s + start;
        size_t n = end - start;
        trim(&line, &n);
        if (n == 0) {
            end = start;
            continue;
        }
        printable(line, n, out, cap);
        return;
    }
}

static char *failure_message(const struct flow__cmd *c, bool timed_out, const char *tail,
                             size_t tail_len)
{
    struct flow__buf b;
    flow__buf_init(&b, 4096);
    if (timed_out)
        flow__buf_appends(&b, "timed out; ");
    if (c->lost) {
        flow__buf_appends(&b, "exit status lost (the child was reaped elsewhere)");
    } else if (c->term_signal) {
        const char *abbrev = sigabbrev_np(c->term_signal);
        if (abbrev)
            flow__buf_printf(&b, "killed by signal %d (SIG%s)", c->term_signal, abbrev);
        else
            flow__buf_printf(&b, "killed by signal %d", c->term_signal);
    } else {
        flow__buf_printf(&b, "exited with status %d", c->exit_status);
    }
    char line[STDERR_LINE_MAX + 8];
    if (tail)
        last_line(tail, tail_len, line, sizeof(line));
    else
        line[0] = '\0';
    if (line[0])
        flow__buf_printf(&b, ": %s", line);
    if (!b.data) {
        flow__buf_cleanup(&b);
        return NULL;
    }
    return flow__buf_take(&b);
}

/* Parse `text` per `mode`; NULL and `*error` on failure. */
static json_t *parse_output(const char *text, size_t len, flow_output_mode mode, char **error)
{
    const char *s = text;
    size_t n = len;
    trim(&s, &n);
    json_t *v = NULL;
    json_error_t je;
    switch (mode) {
    case FLOW_OUTPUT_JSON:
        v = json_loadb(s, n, JSON_DECODE_ANY, &je);
        if (!v) {
            char why[sizeof(je.text)];
            printable(je.text, strlen(je.text), why, sizeof(why)); /* it quotes the text */
            *error = flow__json_would_parse(s, n)
                         ? flow__strdup("out of memory parsing the output")
                         : flow__asprintf("output is not valid JSON: %s", why);
        }
        return v;
    case FLOW_OUTPUT_LINES: {
        if (!utf8_valid(text, len)) {
            *error = flow__strdup("output is not valid UTF-8 text");
            return NULL;
        }
        v = json_array();
        const char *p = text;
        const char *end = text + len;
        while (v && p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *le = nl ? nl : end;
            size_t ll = (size_t)(le - p);
            if (ll > 0 && p[ll - 1] == '\r')
                ll--;
            if (json_array_append_new(v, json_stringn(p, ll)) != 0) {
                json_decref(v);
                v = NULL;
            }
            p = nl ? nl + 1 : end;
        }
        if (!v)
            *error = flow__strdup("out of memory parsing the output");
        return v;
    }
    case FLOW_OUTPUT_AUTO:
        if (n == 0)
            return json_null();
        v = json_loadb(s, n, JSON_DECODE_ANY, &je);
        if (v)
            return v;
        if (flow__json_would_parse(s, n)) {
            /* JSON that could not be read for lack of memory is not text:
             * its type never depends on the memory left */
            *error = flow__strdup("out of memory parsing the output");
            return NULL;
        }
        break;
    case FLOW_OUTPUT_TEXT:
        break;
    }
    if (!utf8_valid(s, n)) {
        *error = flow__strdup("output is not valid UTF-8 text");
        return NULL;
    }
    v = json_stringn(s, n);
    if (!v)
        *error = flow__strdup("out of memory parsing the output");
    return v;
}

json_t *flow__cmd_parse_output(const char *text, size_t len, flow_output_mode mode, char **error)
{
    *error = NULL;
    return parse_output(text, len, mode, error);
}

/* One JSON object per non-empty line, in order. */
static json_t *parse_control(const char *text, size_t len, char **error)
{
    json_t *list = json_array();
    if (!list) {
        *error = flow__strdup("out of memory reading $FLOW_CONTROL");
        return NULL;
    }
    const char *p = text;
    const char *end = text + len;
    int line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *s = p;
        size_t n = (size_t)((nl ? nl : end) - p);
        p = nl ? nl + 1 : end;
        line++;
        trim(&s, &n);
        if (n == 0)
            continue;
        json_error_t je;
        json_t *v = json_loadb(s, n, JSON_DECODE_ANY, &je);
        if (!v || !json_is_object(v)) {
            const char *what = v                             ? "not a JSON object"
                               : flow__json_would_parse(s, n) ? "out of memory"
                                                              : je.text;
            char why[sizeof(je.text)];
            printable(what, strlen(what), why, sizeof(why)); /* jansson quotes the bad bytes */
            *error = flow__asprintf("bad directive in $FLOW_CONTROL line %d: %s", line, why);
            json_decref(v);
            json_decref(list);
            return NULL;
        }
        if (json_array_append_new(list, v) != 0) {
            *error = flow__strdup("out of memory reading $FLOW_CONTROL");
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

json_t *flow__cmd_parse_control(const char *text, size_t len, char **error)
{
    return parse_control(text, len, error);
}

/* Exit 0: the output (FLOW_OUTPUT, else stdout) and the directives. */
static void finish_success(struct flow__cmd *c, struct flow__cmd_result *res)
{
    char ebuf[128];
    char limit[32];
    format_size(c->output_limit, limit, sizeof(limit));

    char *text = NULL;
    size_t len = 0;
    int rc = read_file(c->dirfd, c->output_name, c->output_limit, &text, &len);
    if (rc != ENOENT)
        flow__workdir_rmtree_at(c->dirfd, c->output_name);
    if (rc == 0 && len > 0) {
        res->output = parse_output(text, len, c->mode, &res->error);
        c->output_file = true;
    } else if (rc == EFBIG) {
        res->error = flow__asprintf("$FLOW_OUTPUT is over the %s output limit", limit);
    } else if (rc != 0 && rc != ENOENT) {
        res->error = flow__asprintf("cannot read $FLOW_OUTPUT '%s': %s", c->output_path,
                                    flow__workfile_strerror(rc, ebuf, sizeof(ebuf)));
    } else if (c->out_over) {
        res->error = flow__asprintf("stdout is over the %s output limit (write large data to "
                                    "a file and output its path)",
                                    limit);
    } else if (c->out_nomem) {
        res->error = flow__strdup("out of memory keeping stdout");
    } else {
        res->output = parse_output(c->out ? c->out : "", c->out_len, c->mode, &res->error);
    }
    flow__free(text);

    char *control_error = NULL;
    rc = read_file(c->dirfd, c->control_name, c->output_limit, &text, &len);
    if (rc == ENOENT) {
        res->directives = json_array();
    } else {
        flow__workdir_rmtree_at(c->dirfd, c->control_name);
        if (rc == 0)
            res->directives = parse_control(text, len, &control_error);
        else if (rc == EFBIG)
            control_error = flow__asprintf("$FLOW_CONTROL is over the %s limit", limit);
        else
            control_error = flow__asprintf("cannot read $FLOW_CONTROL '%s': %s",
                                           c->control_path,
                                           flow__workfile_strerror(rc, ebuf, sizeof(ebuf)));
        flow__free(text);
    }
    c->outputs_gone = true;
    if (!res->directives && !control_error && !res->error)
        control_error = flow__strdup("out of memory reading $FLOW_CONTROL");
    if (control_error && !res->error)
        res->error = control_error;
    else
        flow__free(control_error);

    res->ok = !res->error && res->output && res->directives;
    if (!res->ok) {
        json_decref(res->output);
        res->output = NULL;
        if (!res->error)
            res->error = flow__strdup("out of memory reading the output");
    }
}

/* Kill the group, reap the leader (blocking: it was sent SIGKILL). */
static void force_stop(struct flow__cmd *c)
{
    if (!c->reaped)
        finish_exit(c);
}

void flow__cmd_finish(struct flow__cmd *c, bool timed_out, struct flow__cmd_result *res)
{
    memset(res, 0, sizeof(*res));
    force_stop(c);
    res->exit_status = c->exit_status;
    res->term_signal = c->term_signal;
    size_t tail_len;
    res->stderr_tail = tail_take(c, &tail_len);

    if (!c->lost && c->exit_status == 0 && !timed_out) {
        finish_success(c, res);
    } else {
        res->error = failure_message(c, timed_out, res->stderr_tail, tail_len);
        res->directives = json_array();
    }
    /* stdout the output did not take: kept for logs. */
    if ((c->output_file || !res->ok) && c->out && c->out_len > 0) {
        size_t n = c->out_len < STDOUT_TAIL_MAX ? c->out_len : STDOUT_TAIL_MAX;
        res->stdout_tail = flow__strndup(c->out + c->out_len - n, n);
    }
    remove_files(c);
    cmd_free(c);
}

void flow__cmd_result_cleanup(struct flow__cmd_result *res)
{
    if (!res)
        return;
    json_decref(res->output);
    json_decref(res->directives);
    flow__free(res->error);
    flow__free(res->stderr_tail);
    flow__free(res->stdout_tail);
    memset(res, 0, sizeof(*res));
    res->exit_status = -1;
}

void flow__cmd_abort(struct flow__cmd *c)
{
    if (!c)
        return;
    force_stop(c);
    remove_files(c);
    cmd_free(c);
}
