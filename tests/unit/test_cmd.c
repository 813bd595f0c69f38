/* test_cmd.c -- command tasks (src/exec/cmd.c): real children, pipes, files
 * and signals, driven by a small poll() loop like the scheduler's. */
#include "util/compat.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#include "exec/cmd.h"
#include "exec/reaper.h"
#include "exec/tree.h"
#include "util/alloc.h"

struct fixture {
    char *dir;    /* the work_dir */
    int fd_count; /* open descriptors before the test */
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n;
}

/* Names in `dir` other than the shared input files. */
static int count_attempt_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, "null.json") ||
            !strcmp(e->d_name, "empty.json"))
            continue;
        fprintf(stderr, "left over in work_dir: %s\n", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->dir = th_tempdir();
    assert_non_null(f->dir);
    f->fd_count = count_fds();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(count_fds(), f->fd_count);
    assert_int_equal(count_attempt_files(f->dir), 0);
    th_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static struct flow__cmd_spec base_spec(struct fixture *f)
{
    static int activation;
    struct flow__cmd_spec s;
    memset(&s, 0, sizeof(s));
    s.run_id = "run-1";
    s.task = "task-a";
    s.activation = (uint64_t)++activation;
    s.attempt = 1;
    s.work_dir = f->dir;
    return s;
}

/* The scheduler's loop in miniature: poll, handle, until done. Returns false
 * when `limit` seconds passed first. */
static bool drive(struct flow__cmd *c, double limit)
{
    double end = now() + limit;
    while (!flow__cmd_is_done(c)) {
        if (now() > end)
            return false;
        struct pollfd fds[FLOW__CMD_POLLFDS_MAX];
        int n = flow__cmd_pollfds(c, fds, FLOW__CMD_POLLFDS_MAX);
        assert_true(n > 0);
        int r = poll(fds, (nfds_t)n, 50);
        if (r < 0 && errno == EINTR)
            continue;
        assert_true(r >= 0);
        flow__cmd_handle(c, fds, n);
    }
    return true;
}

/* Start, drive to the end, finish. */
static void run_spec(const struct flow__cmd_spec *s, struct flow__cmd_result *res)
{
    struct flow__cmd *c = NULL;
    flow_error err;
    flow_err rc = flow__cmd_start(s, &c, &err);
    if (rc != FLOW_OK)
        fail_msg("start failed: %s", err.message);
    assert_true(drive(c, 20));
    flow__cmd_finish(c, false, res);
}

static void run_shell(struct fixture *f, const char *script, flow_output_mode mode,
                      struct flow__cmd_result *res)
{
    struct flow__cmd_spec s = base_spec(f);
    s.shell = script;
    s.output_mode = mode;
    run_spec(&s, res);
}

/* Start must fail; returns the message (static buffer). */
static const char *start_error(const struct flow__cmd_spec *s)
{
    static flow_error err;
    struct flow__cmd *c = NULL;
    flow_err rc = flow__cmd_start(s, &c, &err);
    assert_int_not_equal(rc, FLOW_OK);
    assert_null(c);
    return err.message;
}

static bool process_gone(pid_t pid)
{
    if (kill(pid, 0) != 0)
        return errno == ESRCH;
    /* Gone but not yet reaped by init (or no init reaping at all). */
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *stat = th_read_file(path);
    if (!stat)
        return true;
    char *p = strrchr(stat, ')');
    bool zombie = p && (p[2] == 'Z' || p[2] == 'X');
    free(stat);
    return zombie;
}

static bool wait_gone(pid_t pid, double limit)
{
    double end = now() + limit;
    while (!process_gone(pid)) {
        if (now() > end)
            return false;
        usleep(10000);
    }
    return true;
}

/* Live processes whose command line holds `needle` (zombies have none). */
static int count_marked(const char *needle)
{
    DIR *d = opendir("/proc");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300];
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        char buf[4096];
        size_t len = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        for (size_t i = 0; i < len; i++)
            buf[i] = buf[i] ? buf[i] : ' ';
        buf[len] = '\0';
        if (strstr(buf, needle))
            n++;
    }
    closedir(d);
    return n;
}

static bool wait_marked(const char *needle, int at_least, double limit)
{
    double end = now() + limit;
    while (count_marked(needle) < at_least) {
        if (now() > end)
            return false;
        usleep(10000);
    }
    return true;
}

/* Children of this process (any thread) that are zombies. */
static int zombie_children(void)
{
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    int zombies = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300];
        snprintf(path, sizeof(path), "/proc/self/task/%s/children", e->d_name);
        char *kids = th_read_file(path);
        for (char *p = kids; p && *p;) {
            char *end;
            long pid = strtol(p, &end, 10);
            if (end == p)
                break;
            p = end;
            if (process_gone((pid_t)pid) && kill((pid_t)pid, 0) == 0) {
                char sp[64];
                snprintf(sp, sizeof(sp), "/proc/%ld/stat", pid);
                char *st = th_read_file(sp);
                if (getenv("DEBUG_ZOMBIES"))
                    fprintf(stderr, "zombie: %s", st ? st : "?\n");
                free(st);
                zombies++;
            }
        }
        free(kids);
    }
    closedir(d);
    return zombies;
}

/* A helper process (a child of this test, the host) ran commands and died:
 * what it left (its commands, its reaper) was re-parented to this process,
 * a subreaper too. The host says its orphans are all libflow's, and sweeps
 * reap them until there is none, dead or alive. */
static void reap_helper_orphans(void)
{
    flow_set_reap_orphans(true);
    double end = now() + 5;
    while (flow__tree_sweep() > 0 && now() < end)
        usleep(10000);
    flow_set_reap_orphans(false);
    assert_int_equal(flow__tree_sweep(), 0);
}

/* Peak resident memory in KiB, reset first when `reset`. */
static long vm_hwm(bool reset)
{
    if (reset) {
        FILE *cr = fopen("/proc/self/clear_refs", "w");
        if (cr) {
            fputs("5", cr);
            fclose(cr);
        }
    }
    char *status = th_read_file("/proc/self/status");
    assert_non_null(status);
    char *p = strstr(status, "VmHWM:");
    assert_non_null(p);
    long kb = strtol(p + 6, NULL, 10);
    free(status);
    return kb;
}

/* ------------------------------------------------------------------------ */

static void test_true_false(void **state)
{
    struct fixture *f = *state;
    struct flow__cmd_result res;
    struct flow__cmd_spec s = base_spec(f);
    const char *t[] = {"true", NULL};
    s.argv = t;
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_int_equal(res.exit_status, 0);
    assert_int_equal(res.term_signal, 0);
    assert_true(json_is_null(res.output));
    assert_true(json_is_array(res.directives));
    assert_int_equal(json_array_size(res.directives), 0);
    assert_null(res.error);
    assert_null(res.stderr_tail);
    flow__cmd_result_cleanup(&res);

    const char *fa[] = {"/bin/false", NULL};
    s = base_spec(f);
    s.argv = fa;
    run_spec(&s, &res);
    assert_false(res.ok);
    assert_int_equal(res.exit_status, 1);
    assert_null(res.output);
    assert_string_equal(res.error, "exited with status 1");
    flow__cmd_result_cleanup(&res);

    run_shell(f, "exit 7", FLOW_OUTPUT_AUTO, &res);
    assert_false(res.ok);
    assert_int_equal(res.exit_status, 7);
    assert_string_equal(res.error, "exited with status 7");
    flow__cmd_result_cleanup(&res);
}

static void test_output_modes(void **state)
{
    struct fixture *f = *state;
    struct flow__cmd_result res;

    run_shell(f, "echo '{\"a\": [1, 2]}'", FLOW_OUTPUT_AUTO, &res);
    assert_true(res.ok);
    assert_true(json_is_object(res.output));
    assert_int_equal(json_integer_value(json_array_get(json_object_get(res.output, "a"), 1)), 2);
    flow__cmd_result_cleanup(&res);

    run_shell(f, "printf '  hello world \\n\\n'", FLOW_OUTPUT_AUTO, &res);
    assert_true(res.ok);
    assert_string_equal(json_string_value(res.output), "hello world");
    flow__cmd_result_cleanup(&res);

    run_shell(f, "echo 42", FLOW_OUTPUT_AUTO, &res);
    assert_true(res.ok);
    assert_int_equal(json_integer_value(res.output), 42);
    flow__cmd_result_cleanup(&res);

    run_shell(f, "echo 42", FLOW_OUTPUT_TEXT, &res);
    assert_true(res.ok);
    assert_string_equal(json_string_value(res.output), "42");
    flow__cmd_result_cleanup(&res);

    run_shell(f, "printf 'a\\n b\\r\\n\\nc\\n'", FLOW_OUTPUT_LINES, &res);
    assert_true(res.ok);
    assert_int_equal(json_array_size(res.output), 4);
    assert_string_equal(json_string_value(json_array_get(res.output, 0)), "a");
    assert_string_equal(json_string_value(json_array_get(res.output, 1)), " b");
    assert_string_equal(json_string_value(json_array_get(res.output, 2)), "");
    assert_string_equal(json_string_value(json_array_get(res.output, 3)), "c");
    flow__cmd_result_cleanup(&res);

    run_shell(f, "true", FLOW_OUTPUT_LINES, &res);
    assert_true(res.ok);
    assert_int_equal(json_array_size(res.output), 0);
    flow__cmd_result_cleanup(&res);

    run_shell(f, "echo '[1, 2'", FLOW_OUTPUT_JSON, &res);
    assert_false(res.ok);
    assert_int_equal(res.exit_status, 0);
    assert_null(res.output);
    assert_non_null(strstr(res.error, "output is not valid JSON: "));
    flow__cmd_result_cleanup(&res);

    run_shell(f, "printf '\\377\\376'", FLOW_OUTPUT_TEXT, &res);
    assert_false(res.ok);
    assert_string_equal(res.error, "output is not valid UTF-8 text");
    flow__cmd_result_cleanup(&res);
}

static void test_sigpipe_default(void **state)
{
    struct fixture *f = *state;
    struct flow__cmd_result res;
    /* The runner ignores SIGPIPE (see main): with that inherited, `yes` would
     * complain of a broken pipe instead of dying quietly. */
    run_shell(f, "yes | head -c 3", FLOW_OUTPUT_LINES, &res);
    assert_true(res.ok);
    assert_int_equal(json_array_size(res.output), 2);
    assert_null(res.stderr_tail);
    flow__cmd_result_cleanup(&res);
}

static void test_flow_output_wins(void **state)
{
    struct fixture *f = *state;
    struct flow__cmd_result res;

    run_shell(f, "echo from-stdout; echo '[1, 2]' > \"$FLOW_OUTPUT\"", FLOW_OUTPUT_AUTO, &res);
    assert_true(res.ok);
    assert_true(json_is_array(res.output));
    assert_int_equal(json_array_size(res.output), 2);
    flow__cmd_result_cleanup(&res);

    /* An empty FLOW_OUTPUT falls back to stdout. */
    run_shell(f, "echo from-stdout; : > \"$FLOW_OUTPUT\"", FLOW_OUTPUT_AUTO, &res);
    assert_true(res.ok);
    assert_string_equal(json_string_value(res.output), "from-stdout");
    flow__cmd_result_cleanup(&res);

    /* Over the limit on stdout is fine when FLOW_OUTPUT has the output... */
    struct flow__cmd_spec s = base_spec(f);
    s.shell = "head -c 5000 /dev/zero; echo '\"file\"' > \"$FLOW_OUTPUT\"";
    s.output_limit = 1000;
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_string_equal(json_string_value(res.output), "file");
    flow__cmd_result_cleanup(&res);

    /* ...and an error when stdout is the output. */
    s = base_spec(f);
    s.shell = "head -c 5000 /dev/zero";
    s.output_limit = 1000;
    run_spec(&s, &res);
    assert_false(res.ok);
    assert_string_equal(res.error, "stdout is over the 1000 bytes output limit (write large data "
                                   "to a file and output its path)");
    flow__cmd_result_cleanup(&res);

    /* Exactly at the limit is not over it. */
    s = base_spec(f);
    s.shell = "head -c 1000 /dev/zero | tr '\\0' x";
    s.output_limit = 1000;
    s.output_mode = FLOW_OUTPUT_TEXT;
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_int_equal(json_string_length(res.output), 1000);
    flow__cmd_result_cleanup(&res);
}

static void test_input(void **state)
{
    struct fixture *f = *state;
    struct flow__cmd_result res;
    json_error_t je;
    json_t *input = json_loads("{\"x\": [1, \"two\", null], \"y\": {\"z\": true}}", 0, &je);
    assert_non_null(input);

    struct flow__cmd_spec s = base_spec(f);
    s.shell = "cat \"$FLOW_INPUT\"";
    s.input = input;
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_true(json_equal(res.output, input));
    flow__cmd_result_cleanup(&res);

    /* Fed to stdin too when asked. */
    const char *cat[] = {"cat", NULL};
    s = base_spec(f);
    s.argv = cat;
    s.input = input;
    s.stdin_input = true;
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_true(json_equal(res.output, input));
    flow__cmd_result_cleanup(&res);

    /* Else stdin is /dev/null. */
    s.stdin_input = false;
    s.activation++;
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_true(json_is_null(res.output));
    flow__cmd_result_cleanup(&res);

    /* A null input is the shared null.json. */
    s = base_spec(f);
    s.shell = "cat \"$FLOW_INPUT\"; echo \"$FLOW_INPUT\" >&2";
    s.output_mode = FLOW_OUTPUT_TEXT;
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_string_equal(json_string_value(res.output), "null");
    assert_non_null(strstr(res.stderr_tail, "/null.json"));
    flow__cmd_result_cleanup(&res);

    /* So is {}, in empty.json; an object with a key is the attempt's own. */
    s = base_spec(f);
    s.shell = "cat \"$FLOW_INPUT\"; echo \"$FLOW_INPUT\" >&2";
    s.output_mode = FLOW_OUTPUT_JSON;
    json_t *empty = json_object();
    s.input = empty;
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_true(json_is_object(res.output) && json_object_size(res.output) == 0);
    assert_non_null(strstr(res.stderr_tail, "/empty.json"));
    flow__cmd_result_cleanup(&res);
    json_t *one = json_pack("{s:i}", "k", 1);
    s.input = one;
    s.activation++;
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_true(json_equal(res.output, one));
    assert_null(strstr(res.stderr_tail, "/empty.json"));
    flow__cmd_result_cleanup(&res);
    /* A task that writes its shared input changes nobody else's: the file
     * is read-only, and one written anyway (root may) is written again. */
    s.input = empty;
    s.shell = "printf '[]\\n' > \"$FLOW_INPUT\" 2>/dev/null; echo '{}'";
    s.activation++;
    run_spec(&s, &res);
    flow__cmd_result_cleanup(&res);
    s.shell = "cat \"$FLOW_INPUT\"";
    s.activation++;
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_true(json_is_object(res.output) && json_object_size(res.output) == 0);
    flow__cmd_result_cleanup(&res);
    json_decref(empty);
    json_decref(one);

    /* Large input (over the small-buffer path). */
    json_t *big = json_array();
    for (int i = 0; i < 2000; i++)
        json_array_append_new(big, json_string("0123456789"));
    s = base_spec(f);
    s.shell = "cat \"$FLOW_INPUT\"";
    s.input = big;
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_true(json_equal(res.output, big));
    flow__cmd_result_cleanup(&res);
    json_decref(big);
    json_decref(input);
}

static void test_env(void **state)
{
    struct fixture *f = *state;
    struct flow__cmd_result res;
    struct flow__cmd_spec s = base_spec(f);
    s.activation = 77;
    s.attempt = 3;
    s.state_path = "/some/state.json";
    s.shell = "echo \"$FLOW_RUN_ID\"; echo \"$FLOW_TASK\"; echo \"$FLOW_ACTIVATION\"; "
              "echo \"$FLOW_ATTEMPT\"; echo \"$FLOW_STATE\"; echo \"$FLOW_INPUT\"; "
              "echo \"$FLOW_OUTPUT\"; echo \"$FLOW_CONTROL\"; echo \"$FLOW_TEST_VAR\"; "
              "echo \"$FLOW_TEST_OTHER\"";
    s.output_mode = FLOW_OUTPUT_LINES;
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_int_equal(json_array_size(res.output), 10);
    const char *want[] = {"run-1", "task-a", "77", "3", "/some/state.json"};
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(json_string_value(json_array_get(res.output, i)), want[i]);
    for (size_t i = 5; i < 8; i++) {
        const char *path = json_string_value(json_array_get(res.output, i));
        assert_true(strncmp(path, f->dir, strlen(f->dir)) == 0);
    }
    assert_non_null(strstr(json_string_value(json_array_get(res.output, 6)), "a77-3."));
    assert_string_equal(json_string_value(json_array_get(res.output, 8)), "from-runner");
    assert_string_equal(json_string_value(json_array_get(res.output, 9)), "kept");
    flow__cmd_result_cleanup(&res);

    /* spec->env overrides the runner's; the last of equal names wins; our
     * FLOW_* variables cannot be overridden. */
    const char *env[] = {"FLOW_TEST_VAR=first", "NEW_VAR=new", "FLOW_TEST_VAR=from-task",
                         "FLOW_TASK=forged", NULL};
    s = base_spec(f);
    s.env = env;
    s.shell = "echo \"$FLOW_TEST_VAR\"; echo \"$NEW_VAR\"; echo \"$FLOW_TASK\"; "
              "echo \"$FLOW_TEST_OTHER\"; env | grep -c '^FLOW_TEST_VAR='; "
              "env | grep -c '^FLOW_CMD_TAG='; echo \"FLOW_CMD_TAG=$FLOW_CMD_TAG\"";
    s.output_mode = FLOW_OUTPUT_LINES;
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_string_equal(json_string_value(json_array_get(res.output, 0)), "from-task");
    assert_string_equal(json_string_value(json_array_get(res.output, 1)), "new");
    assert_string_equal(json_string_value(json_array_get(res.output, 2)), "task-a");
    assert_string_equal(json_string_value(json_array_get(res.output, 3)), "kept");
    assert_string_equal(json_string_value(json_array_get(res.output, 4)), "1");
    /* The attempt's own tag, not the one this runner inherited. */
    assert_string_equal(json_string_value(json_array_get(res.output, 5)), "1");
    const char *tag = json_string_value(json_array_get(res.output, 6));
    const char *prefix = flow__tree_tag_prefix();
    assert_int_equal(strncmp(tag, prefix, strlen(prefix)), 0);
    assert_true(strlen(tag) > strlen(prefix));
    assert_int_equal(strspn(tag + strlen(prefix), "0123456789"), strlen(tag + strlen(prefix)));
    flow__cmd_result_cleanup(&res);

    /* argv[0] is looked up in the task's PATH when it sets one. */
    const char *path_env[] = {"PATH=/nonexistent-dir", NULL};
    const char *t[] = {"true", NULL};
    s = base_spec(f);
    s.env = path_env;
    s.argv = t;
    assert_string_equal(start_error(&s), "command not found: 'true'");

    const char *bad_env[] = {"NOEQUALS", NULL};
    s = base_spec(f);
    s.env = bad_env;
    s.argv = t;
    assert_non_null(strstr(start_error(&s), "bad environment entry 'NOEQUALS'"));
}

static void test_cwd(void **state)
{
    struct fixture *f = *state;
    struct flow__cmd_result res;
    struct flow__cmd_spec s = base_spec(f);
    const char *pwd[] = {"pwd", NULL};
    s.argv = pwd;
    s.cwd = "/";
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_string_equal(json_string_value(res.output), "/");
    flow__cmd_result_cleanup(&res);

    s = base_spec(f);
    s.argv = pwd;
    s.cwd = "/nope";
    assert_string_equal(start_error(&s),
                        "cannot change directory to '/nope': no such file or directory");
}

static void test_start_errors(void **state)
{
    struct fixture *f = *state;
    struct flow__cmd_spec s = base_spec(f);
    const char *nosuch[] = {"nosuchcmd", "arg", NULL};
    s.argv = nosuch;
    assert_string_equal(start_error(&s), "command not found: 'nosuchcmd'");

    const char *passwd[] = {"/etc/passwd", NULL};
    s.argv = passwd;
    assert_string_equal(start_error(&s), "cannot execute '/etc/passwd': permission denied");

    const char *dir[] = {"/tmp", NULL};
    s.argv = dir;
    assert_string_equal(start_error(&s), "cannot execute '/tmp': is a directory");

    const char *missing[] = {"/nonexistent/cmd", NULL};
    s.argv = missing;
    assert_string_equal(start_error(&s),
                        "cannot execute '/nonexistent/cmd': no such file or directory");

    /* (valgrind kills a child whose execve fails after its own checks, so
     * there the failure is not reported.) */
    const char *preload = getenv("LD_PRELOAD");
    if (!preload || !strstr(preload, "vgpreload")) {
        char *script = th_write_file(f->dir, "script", "#!/nonexistent/interpreter\necho hi\n");
        assert_non_null(script);
        assert_int_equal(chmod(script, 0755), 0);
        const char *bad_interp[] = {script, NULL};
        s.argv = bad_interp;
        char want[8192];
        snprintf(want, sizeof(want),
                 "cannot execute '%s': bad interpreter (no such file or directory)", script);
        assert_string_equal(start_error(&s), want);
        unlink(script);
        free(script);
        s.argv = missing;
    }

    /* A failed start leaves no file: the input file is removed too. */
    s.input = json_pack("{s:i}", "n", 1);
    assert_non_null(s.input);
    assert_non_null(start_error(&s));
    json_decref(s.input);

    s = base_spec(f);
    assert_string_equal(start_error(&s), "command task without a command");
}

static void test_stdout_100mb(void **state)
{
    struct fixture *f = *state;
    struct flow__cmd_result res;
    long before = vm_hwm(true);
    struct flow__cmd_spec s = base_spec(f);
    const char *head[] = {"head", "-c", "100000000", "/dev/zero", NULL};
    s.argv = head;
    run_spec(&s, &res);
    long grew = vm_hwm(false) - before;
    assert_false(res.ok);
    assert_int_equal(res.exit_status, 0);
    assert_string_equal(res.error, "stdout is over the 16 MiB output limit (write large data to "
                                   "a file and output its path)");
    flow__cmd_result_cleanup(&res);
    /* The 16 MiB kept, then dropped; nowhere near the 100 MB written. (Not
     * under TSan: there the shadow of every buffer the output grew through
     * makes the high-water mark 160 MiB; the other builds check it.) */
    if (!TH_TSAN)
        assert_true(grew < 60 * 1024);
}

static void test_stderr_100mb(void **state)
{
    struct fixture *f = *state;
    struct flow__cmd_result res;
    long before = vm_hwm(true);
    run_shell(f, "head -c 100000000 /dev/zero | tr '\\0' x >&2; echo the-end >&2; echo done",
              FLOW_OUTPUT_AUTO, &res);
    long grew = vm_hwm(false) - before;
    assert_true(res.ok);
    assert_string_equal(json_string_value(res.output), "done");
    assert_non_null(res.stderr_tail);
    assert_int_equal(strlen(res.stderr_tail), 64 * 1024);
    assert_string_equal(res.stderr_tail + 64 * 1024 - 8, "the-end\n");
    assert_int_equal(res.stderr_tail[0], 'x');
    flow__cmd_result_cleanup(&res);
    assert_true(grew < 20 * 1024);

    struct flow__cmd_spec s = base_spec(f);
    s.shell = "echo 0123456789 >&2; echo abc >&2";
    s.stderr_tail = 6;
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_string_equal(res.stderr_tail, "9\nabc\n");
    flow__cmd_result_cleanup(&res);
}

static void test_stderr_in_error(void **state)
{
    struct fixture *f = *state;
    struct flow__cmd_result res;
    run_shell(f, "echo first >&2; echo '  the real reason ' >&2; echo >&2; exit 3",
              FLOW_OUTPUT_AUTO, &res);
    assert_false(res.ok);
    assert_int_equal(res.exit_status, 3);
    assert_string_equal(res.error, "exited with status 3: the real reason");
    assert_string_equal(res.stderr_tail, "first\n  the real reason \n\n");
    flow__cmd_result_cleanup(&res);

    run_shell(f, "echo oops >&2; kill -TERM $$", FLOW_OUTPUT_AUTO, &res);
    assert_false(res.ok);
    assert_int_equal(res.exit_status, -1);
    assert_int_equal(res.term_signal, SIGTERM);
    assert_string_equal(res.error, "killed by signal 15 (SIGTERM): oops");
    flow__cmd_result_cleanup(&res);
}

static void test_kill(void **state)
{
    struct fixture *f = *state;
    char ready[4096];
    snprintf(ready, sizeof(ready), "%s/ready", f->dir);
    char script[8192];
    snprintf(script, sizeof(script), "trap '' TERM; : > '%s'; sleep 30; echo survived", ready);

    struct flow__cmd_spec s = base_spec(f);
    s.shell = script;
    struct flow__cmd *c = NULL;
    flow_error err;
    assert_int_equal(flow__cmd_start(&s, &c, &err), FLOW_OK);
    pid_t pid = flow__cmd_pid(c);
    assert_true(pid > 0);
    assert_int_equal(getpgid(pid), pid);
    struct stat st;
    double end = now() + 10;
    while (stat(ready, &st) != 0 && now() < end)
        usleep(5000);
    unlink(ready);

    flow__cmd_kill(c, SIGTERM);
    assert_false(drive(c, 0.3)); /* ignored */
    double t0 = now();
    flow__cmd_kill(c, SIGKILL);
    assert_true(drive(c, 2));
    assert_true(now() - t0 < 1);
    flow__cmd_kill(c, SIGKILL); /* no-op once done */
    struct flow__cmd_result res;
    flow__cmd_finish(c, true, &res);
    assert_false(res.ok);
    assert_int_equal(res.term_signal, SIGKILL);
    assert_string_equal(res.error, "timed out; killed by signal 9 (SIGKILL)");
    flow__cmd_result_cleanup(&res);

    /* SIGTERM, honoured, as a timeout would send it. */
    const char *sleep30[] = {"sleep", "30", NULL};
    s = base_spec(f);
    s.argv = sleep30;
    assert_int_equal(flow__cmd_start(&s, &c, &err), FLOW_OK);
    flow__cmd_kill(c, SIGTERM);
    assert_true(drive(c, 2));
    flow__cmd_finish(c, true, &res);
    assert_string_equal(res.error, "timed out; killed by signal 15 (SIGTERM)");
    flow__cmd_result_cleanup(&res);
}

static void test_grandchild(void **state)
{
    struct fixture *f = *state;
    struct flow__cmd_spec s = base_spec(f);
    s.shell = "sleep 30 & echo $!";
    struct flow__cmd *c = NULL;
    flow_error err;
    double t0 = now();
    assert_int_equal(flow__cmd_start(&s, &c, &err), FLOW_OK);
    assert_true(drive(c, 5));
    assert_true(now() - t0 < 2);
    struct flow__cmd_result res;
    flow__cmd_finish(c, false, &res);
    assert_true(res.ok);
    assert_true(json_is_integer(res.output));
    pid_t grandchild = (pid_t)json_integer_value(res.output);
    assert_true(grandchild > 0);
    assert_true(wait_gone(grandchild, 1));
    flow__cmd_result_cleanup(&res);
}

/* A task that starts processes outside its group (`setsid cmd &`, a
 * double fork, a plain background job): timed out (SIGTERM), killed
 * (SIGKILL) or exited, nothing of it survives the attempt and no zombie is
 * left. Each sleep has a duration of its own, to be found by. */
static void test_tree_killed(void **state)
{
    struct fixture *f = *state;
    const char *ends[] = {"sleep 30", "sleep 30", "sleep 0.5; echo 1"};
    for (int mode = 0; mode < 3; mode++) {
        char marker[64];
        snprintf(marker, sizeof(marker), "sleep 1000.%d%d", (int)getpid(), mode);
        char script[1024];
        snprintf(script, sizeof(script), "setsid %s & (setsid %s &); (%s &); %s", marker, marker,
                 marker, ends[mode]);
        struct flow__cmd_spec s = base_spec(f);
        s.shell = script;
        struct flow__cmd *c = NULL;
        flow_error err;
        assert_int_equal(flow__cmd_start(&s, &c, &err), FLOW_OK);
        assert_true(wait_marked(marker, 3, 5));
        if (mode == 0)
            flow__cmd_kill(c, SIGTERM);
        else if (mode == 1)
            flow__cmd_kill(c, SIGKILL);
        assert_true(drive(c, 5));
        struct flow__cmd_result res;
        flow__cmd_finish(c, mode < 2, &res);
        assert_int_equal(res.ok, mode == 2);
        flow__cmd_result_cleanup(&res);
        if (count_marked(marker) != 0)
            fail_msg("mode %d: %d processes of the attempt survived it", mode,
                     count_marked(marker));
        /* A member killed with the group may die just after the last scan:
         * the runner's loop sweeps again (flow__tree_sweep) while orphans
         * are about, as here; none may be left once it has. */
        for (int i = 0; i < 200 && zombie_children() != 0; i++) {
            flow__tree_sweep();
            usleep(10000);
        }
        if (zombie_children() != 0)
            fail_msg("mode %d: %d zombies left", mode, zombie_children());
    }
}

/* Orphans that die while their task still runs are reaped by a sweep, not
 * left as zombies of the runner until the task ends: those of the task's
 * process group always; those that left it (setsid) and died before anyone
 * saw them, only when the host says every orphan is libflow's. */
static void test_orphans_reaped(void **state)
{
    struct fixture *f = *state;
    const char *scripts[] = {
        "for i in 1 2 3; do (sh -c 'exit 0' &); done; sleep 30",
        "for i in 1 2 3; do (setsid sh -c 'exit 0' &); done; sleep 30",
    };
    for (int i = 0; i < 2; i++) {
        struct flow__cmd_spec s = base_spec(f);
        s.shell = scripts[i];
        struct flow__cmd *c = NULL;
        flow_error err;
        assert_int_equal(flow__cmd_start(&s, &c, &err), FLOW_OK);
        double end = now() + 5;
        while (zombie_children() < 3 && now() < end)
            usleep(10000);
        assert_int_equal(zombie_children(), 3); /* ours now: the subreaper's */
        if (i == 1) {
            assert_int_equal(flow__tree_sweep(), 3);
            assert_int_equal(zombie_children(), 3); /* they might be the host's */
            flow_set_reap_orphans(true);
        }
        assert_int_equal(flow__tree_sweep(), 3);
        flow_set_reap_orphans(false);
        assert_int_equal(zombie_children(), 0);
        assert_false(flow__cmd_is_done(c));
        flow__cmd_kill(c, SIGKILL);
        assert_true(drive(c, 5));
        struct flow__cmd_result res;
        flow__cmd_finish(c, true, &res);
        flow__cmd_result_cleanup(&res);
        assert_int_equal(flow__tree_sweep(), 0);
    }
}

static void test_control(void **state)
{
    struct fixture *f = *state;
    struct flow__cmd_result res;
    run_shell(f,
              "echo '{\"set\": {\"a\": 1}}' >> \"$FLOW_CONTROL\"; echo >> \"$FLOW_CONTROL\"; "
              "echo '{\"emit\": {\"event\": \"e\"}}' >> \"$FLOW_CONTROL\"; "
              "printf '{\"checkpoint\": true}' >> \"$FLOW_CONTROL\"",
              FLOW_OUTPUT_AUTO, &res);
    assert_true(res.ok);
    assert_int_equal(json_array_size(res.directives), 3);
    assert_non_null(json_object_get(json_array_get(res.directives, 0), "set"));
    assert_non_null(json_object_get(json_array_get(res.directives, 1), "emit"));
    assert_non_null(json_object_get(json_array_get(res.directives, 2), "checkpoint"));
    flow__cmd_result_cleanup(&res);

    run_shell(f,
              "printf '{\"set\": {}}\\n\\n{bad\\n' >> \"$FLOW_CONTROL\"; echo '\"out\"'",
              FLOW_OUTPUT_AUTO, &res);
    assert_false(res.ok);
    assert_null(res.directives);
    assert_null(res.output);
    assert_non_null(strstr(res.error, "bad directive in $FLOW_CONTROL line 3: "));
    flow__cmd_result_cleanup(&res);

    run_shell(f, "echo '[1]' >> \"$FLOW_CONTROL\"", FLOW_OUTPUT_AUTO, &res);
    assert_false(res.ok);
    assert_string_equal(res.error, "bad directive in $FLOW_CONTROL line 1: not a JSON object");
    flow__cmd_result_cleanup(&res);

    /* A failed task's control file is removed too. */
    run_shell(f, "echo '{}' >> \"$FLOW_CONTROL\"; echo 1 > \"$FLOW_OUTPUT\"; exit 1",
              FLOW_OUTPUT_AUTO, &res);
    assert_false(res.ok);
    assert_string_equal(res.error, "exited with status 1");
    flow__cmd_result_cleanup(&res);
}

/* A task plants links to a file outside where the runner will write the
 * next attempt's files (and replaces its own output and control files with
 * a link or a FIFO): the runner never writes or reads through them, the
 * file outside is untouched, and every file the runner makes is 0600. */
static void test_planted_links(void **state)
{
    struct fixture *f = *state;
    char *outside_dir = th_tempdir();
    char *outside = th_write_file(outside_dir, "precious", "\"keep me\"\n");
    char script[8192];
    snprintf(script, sizeof(script),
             "cd \"$(dirname \"$FLOW_INPUT\")\" && rm -f null.json && ln -s '%s' null.json && "
             "for x in a901-1.input.json a901-1.output a901-1.control a902-1.output "
             "a902-1.control; do ln -s '%s' $x; done",
             outside, outside);
    struct flow__cmd_spec s = base_spec(f);
    s.activation = 900;
    s.shell = script;
    struct flow__cmd_result res;
    run_spec(&s, &res);
    assert_true(res.ok);
    flow__cmd_result_cleanup(&res);

    mode_t old = umask(0); /* the runner's umask does not widen its files */
    s = base_spec(f);
    s.activation = 901;
    s.input = json_pack("{s:i}", "x", 1);
    s.shell = "stat -c %a \"$FLOW_INPUT\" >&2; "
              "test ! -e \"$FLOW_OUTPUT\" && test ! -e \"$FLOW_CONTROL\" && "
              "cat \"$FLOW_INPUT\" > \"$FLOW_OUTPUT\" && "
              "echo '{\"set\": {}}' >> \"$FLOW_CONTROL\"";
    run_spec(&s, &res);
    umask(old);
    json_decref(s.input);
    assert_true(res.ok);
    assert_int_equal(json_integer_value(json_object_get(res.output, "x")), 1);
    assert_int_equal(json_array_size(res.directives), 1);
    assert_string_equal(res.stderr_tail, "600\n");
    flow__cmd_result_cleanup(&res);

    s = base_spec(f);
    s.activation = 902; /* null input: the shared null.json, a link no more */
    s.shell = "test ! -L \"$FLOW_INPUT\" && cat \"$FLOW_INPUT\"";
    run_spec(&s, &res);
    assert_true(res.ok);
    assert_true(json_is_null(res.output));
    flow__cmd_result_cleanup(&res);

    /* The task's own files swapped for a link or a FIFO: refused, at once. */
    const char *vars[] = {"FLOW_OUTPUT", "FLOW_CONTROL", "FLOW_OUTPUT"};
    const char *errors[] = {
        "cannot read $FLOW_OUTPUT '",
        "cannot read $FLOW_CONTROL '",
        "cannot read $FLOW_OUTPUT '",
    };
    const char *why[] = {
        "': it is a symbolic link (never followed)",
        "': it is a symbolic link (never followed)",
        "': it is not a regular file",
    };
    for (size_t i = 0; i < FLOW__ARRAY_LEN(vars); i++) {
        if (i < 2)
            snprintf(script, sizeof(script), "rm -f \"$%s\" && ln -s '%s' \"$%s\"", vars[i],
                     outside, vars[i]);
        else
            snprintf(script, sizeof(script), "rm -f \"$%s\" && mkfifo \"$%s\"", vars[i], vars[i]);
        run_shell(f, script, FLOW_OUTPUT_AUTO, &res);
        assert_false(res.ok);
        assert_non_null(strstr(res.error, errors[i]));
        assert_non_null(strstr(res.error, why[i]));
        flow__cmd_result_cleanup(&res);
    }

    char *text = th_read_file(outside);
    assert_string_equal(text, "\"keep me\"\n");
    free(text);
    th_rmtree(outside_dir);
    free(outside);
    free(outside_dir);
}

static bool has_control_char(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20)
            return true;
    }
    return false;
}

/* jansson's messages quote the bytes they choke on; ours stay one line
 * (a fuzzer's find, issue #9). */
static void test_parse_errors_are_one_line(void **state)
{
    struct fixture *f = *state;
    struct flow__cmd_result res;
    run_shell(f, "printf '   \\r\\021 ;\\n' >> \"$FLOW_CONTROL\"", FLOW_OUTPUT_AUTO, &res);
    assert_false(res.ok);
    assert_non_null(strstr(res.error, "bad directive in $FLOW_CONTROL line 1: "));
    if (has_control_char(res.error))
        fail_msg("not one line: %s", res.error);
    flow__cmd_result_cleanup(&res);

    run_shell(f, "printf '{\"a\": \\033[1m}'", FLOW_OUTPUT_JSON, &res);
    assert_false(res.ok);
    assert_non_null(strstr(res.error, "output is not valid JSON: "));
    if (has_control_char(res.error))
        fail_msg("not one line: %s", res.error);
    flow__cmd_result_cleanup(&res);
}

static void test_pdeathsig(void **state)
{
    struct fixture *f = *state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t helper = fork();
    assert_true(helper >= 0);
    if (helper == 0) {
        close(fds[0]);
        struct flow__cmd_spec s = base_spec(f);
        const char *sleep30[] = {"sleep", "30", NULL};
        s.argv = sleep30;
        struct flow__cmd *c = NULL;
        if (flow__cmd_start(&s, &c, NULL) != FLOW_OK)
            _exit(1);
        int pid = flow__cmd_pid(c);
        if (write(fds[1], &pid, sizeof(pid)) != (ssize_t)sizeof(pid))
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    int pid = 0;
    assert_int_equal(read(fds[0], &pid, sizeof(pid)), (ssize_t)sizeof(pid));
    close(fds[0]);
    assert_true(pid > 0);
    assert_false(process_gone(pid));
    kill(helper, SIGKILL);
    assert_int_equal(waitpid(helper, NULL, 0), helper);
    assert_true(wait_gone(pid, 1));
    reap_helper_orphans();
}

/* The runner dies by SIGKILL: its reaper kills what its commands started
 * outside their groups too. */
static void test_reaper_kills_tree(void **state)
{
    struct fixture *f = *state;
    char marker[64];
    snprintf(marker, sizeof(marker), "sleep 1000.%d9", (int)getpid());
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t helper = fork();
    assert_true(helper >= 0);
    if (helper == 0) {
        close(fds[0]);
        char script[512];
        snprintf(script, sizeof(script), "setsid %s & (setsid %s &); sleep 30", marker, marker);
        struct flow__cmd_spec s = base_spec(f);
        s.shell = script;
        struct flow__cmd *c = NULL;
        if (flow__cmd_start(&s, &c, NULL) != FLOW_OK)
            _exit(1);
        if (write(fds[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    char x;
    assert_int_equal(read(fds[0], &x, 1), 1);
    close(fds[0]);
    assert_true(wait_marked(marker, 2, 5));
    kill(helper, SIGKILL);
    assert_int_equal(waitpid(helper, NULL, 0), helper);
    double end = now() + 5;
    while (count_marked(marker) > 0 && now() < end)
        usleep(10000);
    assert_int_equal(count_marked(marker), 0);
    reap_helper_orphans();
}

static void test_abort(void **state)
{
    struct fixture *f = *state;
    struct flow__cmd_spec s = base_spec(f);
    s.shell = "echo 1 > \"$FLOW_OUTPUT\"; sleep 30 & sleep 30";
    s.input = json_pack("[i]", 1);
    struct flow__cmd *c = NULL;
    assert_int_equal(flow__cmd_start(&s, &c, NULL), FLOW_OK);
    pid_t pid = flow__cmd_pid(c);
    usleep(50000);
    double t0 = now();
    flow__cmd_abort(c);
    assert_true(now() - t0 < 1);
    assert_true(process_gone(pid));
    flow__cmd_abort(NULL);
    json_decref(s.input);
}

/* Fail each allocation of a whole attempt once: no crash, no leak (ASan),
 * no descriptor or file left behind (teardown). */
static void test_alloc_failures(void **state)
{
    struct fixture *f = *state;
    json_t *input = json_pack("{s:i}", "a", 1);
    const char *env[] = {"EXTRA=1", NULL};
    bool clean = false;
    for (size_t n = 1; !clean && n < 1000; n++) {
        struct flow__cmd_spec s = base_spec(f);
        s.shell = "cat \"$FLOW_INPUT\"; echo err >&2; echo '{\"set\": {}}' >> \"$FLOW_CONTROL\"";
        s.input = input;
        s.env = env;
        flow__alloc_fail_at(n);
        struct flow__cmd *c = NULL;
        flow_error err;
        flow_err rc = flow__cmd_start(&s, &c, &err);
        if (rc == FLOW_OK) {
            assert_true(drive(c, 10));
            struct flow__cmd_result res;
            flow__cmd_finish(c, false, &res);
            if (res.ok) {
                assert_true(json_equal(res.output, input));
                assert_int_equal(json_array_size(res.directives), 1);
            }
            flow__cmd_result_cleanup(&res);
        } else {
            assert_int_equal(rc, FLOW_ENOMEM);
            assert_non_null(strstr(err.message, "out of memory"));
        }
        clean = flow__alloc_fail_at(0) < n;
    }
    assert_true(clean);
    json_decref(input);
}

static void test_many(void **state)
{
    struct fixture *f = *state;
    /* Two at a time, as the scheduler would, through one poll set. */
    const char *t[] = {"/bin/true", NULL};
    int done = 0;
    struct flow__cmd *jobs[2] = {NULL, NULL};
    int started = 0;
    while (done < 200) {
        for (int i = 0; i < 2; i++) {
            if (!jobs[i] && started < 200) {
                struct flow__cmd_spec s = base_spec(f);
                s.argv = t;
                assert_int_equal(flow__cmd_start(&s, &jobs[i], NULL), FLOW_OK);
                started++;
            }
        }
        struct pollfd fds[2 * FLOW__CMD_POLLFDS_MAX];
        int counts[2] = {0, 0};
        int n = 0;
        for (int i = 0; i < 2; i++) {
            if (jobs[i]) {
                counts[i] = flow__cmd_pollfds(jobs[i], fds + n, FLOW__CMD_POLLFDS_MAX);
                n += counts[i];
            }
        }
        assert_true(poll(fds, (nfds_t)n, 1000) > 0);
        n = 0;
        for (int i = 0; i < 2; i++) {
            if (!jobs[i])
                continue;
            flow__cmd_handle(jobs[i], fds + n, counts[i]);
            n += counts[i];
            if (flow__cmd_is_done(jobs[i])) {
                struct flow__cmd_result res;
                flow__cmd_finish(jobs[i], false, &res);
                assert_true(res.ok);
                flow__cmd_result_cleanup(&res);
                jobs[i] = NULL;
                done++;
            }
        }
    }
}

static volatile sig_atomic_t usr1_seen;

static void on_usr1(int sig)
{
    (void)sig;
    usr1_seen = 1;
}

/* A spawn leaves the runner as it was: its signal handlers still run after
 * a child that exec'ed and after one whose exec failed. (The child shares
 * our memory until exec: under ThreadSanitizer, a child calling libc's
 * sigaction rewrote the runtime's record of our handlers, and Ctrl-C then
 * reached no handler at all.) */
static void test_runner_untouched(void **state)
{
    struct fixture *f = *state;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    struct flow__cmd_spec s = base_spec(f);
    const char *t[] = {"true", NULL};
    s.argv = t;
    struct flow__cmd_result res;
    run_spec(&s, &res);
    assert_true(res.ok);
    flow__cmd_result_cleanup(&res);
    usr1_seen = 0;
    raise(SIGUSR1);
    assert_int_equal(usr1_seen, 1);

    const char *dir[] = {"/tmp", NULL}; /* execve fails: the child exits */
    s.argv = dir;
    assert_string_equal(start_error(&s), "cannot execute '/tmp': is a directory");
    usr1_seen = 0;
    raise(SIGUSR1);
    assert_int_equal(usr1_seen, 1);
    sigaction(SIGUSR1, &old, NULL);
}

int main(void)
{
    /* Its socket stays open for the process's life: open it before the
     * tests count descriptors. */
    flow__reaper_prepare();
    /* The runner's environment, as the children will inherit it. */
    setenv("FLOW_TEST_VAR", "from-runner", 1);
    setenv("FLOW_TEST_OTHER", "kept", 1);
    setenv("FLOW_TASK", "from-runner-env", 1);
    setenv("FLOW_CMD_TAG", "0123456789abcdef-1", 1); /* as a runner started by a task */
    /* A runner that ignores SIGPIPE must not pass that on. */
    signal(SIGPIPE, SIG_IGN);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stdout_100mb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stderr_100mb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_true_false, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigpipe_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flow_output_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cwd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stderr_in_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grandchild, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control, setup, teardown),
        cmocka_unit_test_setup_teardown(test_planted_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_errors_are_one_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pdeathsig, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tree_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_orphans_reaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reaper_kills_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runner_untouched, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
