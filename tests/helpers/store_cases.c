/* store_cases.c -- see store_cases.h. */
#include "util/compat.h"

#include "store_cases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"
#include "util/alloc.h"

struct th_redis th_store_redis;

static const struct th_backend backends[] = {
    {"sqlite", "x/flow.db", false},
    {"disk", "d", false},
    {"memory", NULL, false},
    {"redis", NULL, true},
};

static char redis_tag;  /* the test file's letter */
static int redis_cases; /* prefixes given out */

char *th_store_redis_url(char *prefix, size_t size)
{
    snprintf(prefix, size, "%c%ld_%d", redis_tag, (long)getpid(), ++redis_cases);
    return flow__asprintf("%s?prefix=%s", th_store_redis.url, prefix);
}

struct th_store_case *th_store_case_open(const struct th_backend *b)
{
    struct th_store_case *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->b = b;
    c->dir = th_tempdir();
    assert_non_null(c->dir);
    if (b->rel) {
        c->path = flow__asprintf("%s/%s", c->dir, b->rel);
        c->url = flow__asprintf("%s:%s", b->name, c->path);
    } else if (b->redis) {
        c->url = th_store_redis_url(c->prefix, sizeof(c->prefix));
        c->path = flow__strdup(c->url);
    } else {
        c->url = flow__asprintf("%s:", b->name);
    }
    c->s = th_store_open(c->url);
    flow__lease_holder(c->me, sizeof(c->me));
    return c;
}

void th_store_case_close(struct th_store_case *c)
{
    flow__store_close(c->s);
    th_rmtree(c->dir);
    free(c->dir);
    flow__free(c->path);
    flow__free(c->url);
    free(c);
}

int th_store_setup(void **state)
{
    *state = th_store_case_open(*state);
    return 0;
}

int th_store_teardown(void **state)
{
    th_store_case_close(*state);
    return 0;
}

bool th_store_durable(const struct th_store_case *c)
{
    return flow__store_has_cap(c->s, FLOW__STORE_CAP_DURABLE);
}

bool th_store_shared(const struct th_store_case *c)
{
    return flow__store_has_cap(c->s, FLOW__STORE_CAP_CROSS_PROCESS);
}

void th_store_reopen(struct th_store_case *c)
{
    if (!th_store_durable(c))
        return;
    flow__store_close(c->s);
    c->s = th_store_open(c->url);
}

char *th_store_children(const char *url, int n, void (*child)(const char *url, int i, int fd))
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t *pids = calloc((size_t)n, sizeof(*pids));
    assert_non_null(pids);
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(fds[0]);
            child(url, i, fds[1]);
            _exit(1); /* it must not go on with the suite */
        }
    }
    close(fds[1]);
    size_t len = 0, cap = 1 << 16;
    char *out = malloc(cap);
    assert_non_null(out);
    ssize_t got;
    while ((got = read(fds[0], out + len, cap - len - 1)) > 0) {
        len += (size_t)got;
        if (cap - len < 1024) {
            out = realloc(out, cap *= 2);
            assert_non_null(out);
        }
    }
    out[len] = '\0';
    close(fds[0]);
    for (int i = 0; i < n; i++) {
        int st;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail_msg("child %d failed (status %d): %s", i, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                     strstr(out, "X ") ? strstr(out, "X ") : out);
    }
    free(pids);
    return out;
}

int th_store_suites(char tag, const char *redis_conf, const struct CMUnitTest *suite, size_t n)
{
    redis_tag = tag;
    struct CMUnitTest *tests = malloc(n * sizeof(*tests));
    assert_non_null(tests);
    int failed = 0;
    th_redis_start(&th_store_redis, redis_conf);
    for (size_t b = 0; b < FLOW__ARRAY_LEN(backends); b++) {
        memcpy(tests, suite, n * sizeof(*tests));
        for (size_t i = 0; i < n; i++)
            tests[i].initial_state = (void *)&backends[b];
        failed += _cmocka_run_group_tests(backends[b].name, tests, n, NULL, NULL);
    }
    th_redis_stop(&th_store_redis);
    free(tests);
    return failed;
}
