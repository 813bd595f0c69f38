/* test_workdir.c -- private work directories and their files
 * (src/exec/workdir.c): modes, the lock, links planted where the runner
 * writes or reads, and the removal of what a runner killed by SIGKILL left
 * (real processes, real signals). */
#include "util/compat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#include "exec/workdir.h"
#include "util/alloc.h"

struct fixture {
    char *base;    /* $TMPDIR for the test */
    char *outside; /* base/outside.txt: what planted links point at */
};

static const char outside_text[] = "precious\n";
static char *tmpdir_saved; /* the process's $TMPDIR, or NULL */

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->base = th_tempdir();
    assert_non_null(f->base);
    setenv("TMPDIR", f->base, 1);
    f->outside = th_write_file(f->base, "outside.txt", outside_text);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char *text = th_read_file(f->outside);
    assert_non_null(text);
    assert_string_equal(text, outside_text); /* never written through */
    free(text);
    th_rmtree(f->base);
    if (tmpdir_saved)
        setenv("TMPDIR", tmpdir_saved, 1);
    else
        unsetenv("TMPDIR");
    free(f->outside);
    free(f->base);
    free(f);
    return 0;
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Entries of `dir` whose name starts with `prefix`. */
static int count_named(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strncmp(e->d_name, prefix, strlen(prefix)))
            n++;
    }
    closedir(d);
    return n;
}

static void plant_link(int dirfd, const char *name, const char *target)
{
    assert_int_equal(symlinkat(target, dirfd, name), 0);
}

/* ------------------------------------------------------------------------ */

static void test_make_and_remove(void **state)
{
    struct fixture *f = *state;
    mode_t old = umask(0);
    struct flow__workdir wd;
    flow_error err;
    assert_int_equal(flow__workdir_make("run.1_a-b", &wd, &err), FLOW_OK);
    umask(old);
    assert_non_null(wd.path);
    assert_true(wd.fd > 2);
    char expect[4096];
    snprintf(expect, sizeof(expect), "%s/flow-run.1_a-b-%ld-", f->base, (long)getpid());
    assert_int_equal(strncmp(wd.path, expect, strlen(expect)), 0);
    assert_int_equal(strlen(wd.path), strlen(expect) + 6);
    assert_true(S_ISDIR(mode_of(wd.path)));
    assert_int_equal(mode_of(wd.path) & 07777, 0700);
    assert_true(fcntl(wd.fd, F_GETFD) & FD_CLOEXEC);

    /* Locked: another open file description cannot take the lock. */
    int other = open(wd.path, O_RDONLY | O_DIRECTORY);
    assert_true(other >= 0);
    assert_int_equal(flock(other, LOCK_EX | LOCK_NB), -1);
    assert_int_equal(errno, EWOULDBLOCK);
    close(other);
    /* So a sweep leaves it alone. */
    int busy = 0;
    assert_int_equal(flow__workdir_sweep(f->base, NULL, 0, &busy), 0);
    assert_int_equal(busy, 1);

    /* What a task may leave: files, a directory tree, a link to outside. */
    assert_int_equal(flow__workfile_create(wd.fd, "a1-1.input.json", "1\n", 2), 0);
    assert_int_equal(mkdirat(wd.fd, "sub", 0700), 0);
    assert_int_equal(mkdirat(wd.fd, "sub/deeper", 0700), 0);
    assert_int_equal(flow__workfile_create(wd.fd, "sub/deeper/f", "x", 1), 0);
    plant_link(wd.fd, "link", f->outside);
    plant_link(wd.fd, "dirlink", f->base);
    char *path = flow__strdup(wd.path);
    flow__workdir_remove(&wd);
    assert_null(wd.path);
    assert_int_equal(wd.fd, -1);
    assert_false(exists(path));
    assert_true(exists(f->outside));
    flow__free(path);
    flow__workdir_remove(&wd); /* a no-op now */
}

static void test_make_fails_clearly(void **state)
{
    struct fixture *f = *state;
    char base[4096];
    snprintf(base, sizeof(base), "%s/missing", f->base);
    setenv("TMPDIR", base, 1);
    struct flow__workdir wd;
    flow_error err;
    assert_int_not_equal(flow__workdir_make("r", &wd, &err), FLOW_OK);
    assert_null(wd.path);
    assert_int_equal(wd.fd, -1);
    assert_non_null(strstr(err.message, "cannot create a work directory for commands in '"));
    assert_non_null(strstr(err.message, "/missing'"));
    setenv("TMPDIR", f->base, 1);
}

/* A name planted where a new file goes (a link to a file outside, a file,
 * a directory) is replaced; the new file is 0600 whatever the umask. */
static void test_create_replaces_planted(void **state)
{
    struct fixture *f = *state;
    struct flow__workdir wd;
    assert_int_equal(flow__workdir_make("r", &wd, NULL), FLOW_OK);
    plant_link(wd.fd, "a", f->outside);
    assert_int_equal(flow__workfile_create(wd.fd, "b", "old", 3), 0);
    assert_int_equal(mkdirat(wd.fd, "c", 0700), 0);
    plant_link(wd.fd, "d", "/nonexistent/dangling");
    mode_t old = umask(0);
    const char *names[] = {"a", "b", "c", "d", "e"};
    for (size_t i = 0; i < FLOW__ARRAY_LEN(names); i++)
        assert_int_equal(flow__workfile_create(wd.fd, names[i], "new\n", 4), 0);
    umask(old);
    for (size_t i = 0; i < FLOW__ARRAY_LEN(names); i++) {
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", wd.path, names[i]);
        assert_true(S_ISREG(mode_of(p)));
        assert_int_equal(mode_of(p) & 07777, 0600);
        char *text = th_read_file(p);
        assert_string_equal(text, "new\n");
        free(text);
    }
    assert_false(exists("/nonexistent/dangling"));

    flow_error err;
    json_t *v = json_pack("{s:[i,s]}", "k", 1, "two");
    plant_link(wd.fd, "state-2.json", f->outside);
    assert_int_equal(
        flow__workfile_write_json(wd.fd, "state-2.json", v, JSON_COMPACT, "state", "x", &err),
        FLOW_OK);
    json_decref(v);
    char p[4096];
    snprintf(p, sizeof(p), "%s/state-2.json", wd.path);
    char *text = th_read_file(p);
    assert_string_equal(text, "{\"k\":[1,\"two\"]}\n");
    free(text);
    flow__workdir_remove(&wd);
}

/* Reading: a link is refused (ELOOP), a FIFO too (EINVAL) and at once. */
static void test_open_refuses_links_and_fifos(void **state)
{
    struct fixture *f = *state;
    struct flow__workdir wd;
    assert_int_equal(flow__workdir_make("r", &wd, NULL), FLOW_OK);
    plant_link(wd.fd, "out", f->outside);
    assert_int_equal(flow__workfile_open(wd.fd, "out"), -1);
    assert_int_equal(errno, ELOOP);
    assert_int_equal(mkfifoat(wd.fd, "fifo", 0600), 0);
    assert_int_equal(flow__workfile_open(wd.fd, "fifo"), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(flow__workfile_open(wd.fd, "none"), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(flow__workfile_create(wd.fd, "ok", "{}", 2), 0);
    int fd = flow__workfile_open(wd.fd, "ok");
    assert_true(fd >= 0);
    assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    close(fd);
    char buf[128];
    assert_string_equal(flow__workfile_strerror(ELOOP, buf, sizeof(buf)),
                        "it is a symbolic link (never followed)");
    assert_string_equal(flow__workfile_strerror(EINVAL, buf, sizeof(buf)),
                        "it is not a regular file");
    assert_string_equal(flow__workfile_strerror(ENOENT, buf, sizeof(buf)),
                        "no such file or directory");
    flow__workdir_remove(&wd);
}

/* A child process makes a work directory for `run_id`, fills it, reports
 * its path on `fd` and waits to be killed. */
static pid_t runner_child(const char *run_id, char *path, size_t cap)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        struct flow__workdir wd;
        if (flow__workdir_make(run_id, &wd, NULL) != FLOW_OK)
            _exit(1);
        flow__workfile_create(wd.fd, "a1-1.input.json", "null\n", 5);
        flow__workfile_create(wd.fd, "state-1.json", "{}\n", 3);
        size_t len = strlen(wd.path) + 1;
        if (write(fds[1], wd.path, len) != (ssize_t)len)
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    ssize_t n = read(fds[0], path, cap);
    close(fds[0]);
    assert_true(n > 0);
    return pid;
}

static void kill_child(pid_t pid)
{
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
}

/* A runner killed by SIGKILL: the next work directory made for the same
 * run removes its one; a live runner's, another run's and another user's
 * naming stay. */
static void test_dead_runner_swept_on_resume(void **state)
{
    struct fixture *f = *state;
    char dead[4096];
    char alive[4096];
    char other[4096];
    pid_t d = runner_child("run-7", dead, sizeof(dead));
    pid_t a = runner_child("run-7", alive, sizeof(alive));
    pid_t o = runner_child("run-7x", other, sizeof(other));
    char lookalike[4096];
    snprintf(lookalike, sizeof(lookalike), "%s/flow-run-7-notapid-abcdef", f->base);
    assert_int_equal(mkdir(lookalike, 0700), 0);
    kill_child(d);
    kill_child(o);
    assert_true(exists(dead));

    struct flow__workdir wd;
    assert_int_equal(flow__workdir_make("run-7", &wd, NULL), FLOW_OK);
    assert_false(exists(dead));   /* its runner is dead */
    assert_true(exists(alive));   /* locked: its runner lives */
    assert_true(exists(other));   /* dead too, but another run's */
    assert_true(exists(lookalike));
    assert_true(exists(wd.path)); /* our own, of course */

    /* By pid, as the reaper does: only that runner's. */
    int busy = 0;
    assert_int_equal(flow__workdir_sweep(f->base, NULL, a, &busy), 0);
    assert_int_equal(busy, 1);
    kill_child(a);
    assert_int_equal(flow__workdir_sweep(f->base, NULL, a, &busy), 1);
    assert_int_equal(busy, 0);
    assert_false(exists(alive));
    assert_true(exists(other));
    assert_int_equal(flow__workdir_sweep(f->base, "run-7x", 0, NULL), 1);
    assert_false(exists(other));
    flow__workdir_remove(&wd);
    assert_int_equal(count_named(f->base, "flow-"), 1); /* the lookalike */
    assert_int_equal(rmdir(lookalike), 0);
}

/* A work directory that is a link is not swept through. */
static void test_sweep_ignores_links(void **state)
{
    struct fixture *f = *state;
    char victim[4096];
    snprintf(victim, sizeof(victim), "%s/victim", f->base);
    assert_int_equal(mkdir(victim, 0700), 0);
    char *keep = th_write_file(victim, "keep", "x");
    char link[4096];
    snprintf(link, sizeof(link), "%s/flow-r-123-abcdef", f->base);
    assert_int_equal(symlink(victim, link), 0);
    assert_int_equal(flow__workdir_sweep(f->base, NULL, 0, NULL), 0);
    assert_true(exists(keep));
    assert_true(exists(link));
    unlink(link);
    free(keep);
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    tmpdir_saved = t ? strdup(t) : NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_make_and_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_make_fails_clearly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_replaces_planted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_links_and_fifos, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_runner_swept_on_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_ignores_links, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(tmpdir_saved);
    return rc;
}
