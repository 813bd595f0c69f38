/* test_alloc.c -- the host's allocator (flow_set_alloc_funcs) is used for
 * every allocation libflow makes, jansson's included, large blocks too, and
 * everything allocated is given back: counting functions are installed
 * before any other call, a flow of C tasks and commands runs, and at the end
 * as many blocks were freed as were allocated. */
#include "util/compat.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#include "util/alloc.h"

static atomic_long n_malloc;   /* blocks handed out (malloc, realloc of NULL) */
static atomic_long n_realloc;  /* reallocs of a block */
static atomic_long n_free;     /* blocks given back */
static atomic_size_t max_size; /* the largest single request */

static void note_size(size_t size)
{
    size_t cur = atomic_load(&max_size);
    while (size > cur && !atomic_compare_exchange_weak(&max_size, &cur, size)) {
    }
}

static void *count_malloc(size_t size)
{
    void *p = malloc(size);
    if (p)
        atomic_fetch_add(&n_malloc, 1);
    note_size(size);
    return p;
}

static void *count_realloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size);
    if (p && !ptr)
        atomic_fetch_add(&n_malloc, 1);
    else if (p)
        atomic_fetch_add(&n_realloc, 1);
    note_size(size);
    return p;
}

static void count_free(void *ptr)
{
    if (ptr)
        atomic_fetch_add(&n_free, 1);
    free(ptr);
}

static int noop(flow_ctx *ctx)
{
    (void)ctx;
    return 0;
}

static int make_output(flow_ctx *ctx)
{
    return flow_ctx_set_output_take(ctx, json_pack("{s:s,s:[i,i]}", "word", "hello", "n", 1, 2));
}

/* A flow of C tasks and commands, big enough that the library asks for
 * large blocks (the tasks' arena, the run's tables), runs to completion;
 * everything is freed; the counts balance. */
static void test_host_allocator_sees_everything(void **state)
{
    (void)state;
    long before = atomic_load(&n_malloc);
    flow_error err;
    flow *f = flow_new("alloc", &err);
    assert_non_null(f);
    flow_task *src = th_add(f, "src", make_output);
    flow_task *cmd = th_add(f, "cmd", NULL);
    const char *argv[] = {"/bin/sh", "-c", "cat \"$FLOW_INPUT\"", NULL};
    assert_int_equal(flow_task_set_command(cmd, argv, &err), FLOW_OK);
    assert_int_equal(flow_task_after(cmd, src), FLOW_OK);
    flow_task *sh = th_add(f, "sh", NULL);
    assert_int_equal(flow_task_set_shell(sh, "echo '{\"ok\": true}'", &err), FLOW_OK);
    assert_int_equal(flow_task_after(sh, cmd), FLOW_OK);
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "t%d", i);
        flow_task *t = th_add(f, name, noop);
        assert_int_equal(flow_task_after(t, sh), FLOW_OK);
    }

    flow_engine_options eo = {.jobs = 2};
    flow_engine *e = flow_engine_new(&eo, &err);
    assert_non_null(e);
    flow_run *r = NULL;
    assert_int_equal(th_run(e, f, NULL, &r), FLOW_RUN_COMPLETED);
    assert_int_equal(th_count_acts(r, "t4999", FLOW_ACT_COMPLETED), 1);
    flow_activation_info info;
    assert_int_equal(flow_run_activation(r, 1, &info), FLOW_OK);
    assert_string_equal(info.task, "cmd");
    assert_non_null(info.output);
    assert_string_equal(json_string_value(json_object_get(info.output, "word")), "hello");
    flow_run_free(r);
    flow_engine_free(e);
    flow_free(f);

    assert_true(atomic_load(&n_malloc) - before > 5000);
    assert_true(atomic_load(&n_free) > 0);
    /* Large blocks went through the host too, not around it. */
    assert_true(atomic_load(&max_size) >= (size_t)64 << 10);
    long live = atomic_load(&n_malloc) - atomic_load(&n_free);
    if (live != 0)
        fail_msg("%ld blocks of the host allocator were not given back", live);
}

/* jansson allocates through the host's functions too; a large request made
 * through flow__malloc reaches the host as it is (no header, no cache). */
static void test_jansson_and_large_blocks(void **state)
{
    (void)state;
    long m0 = atomic_load(&n_malloc);
    long f0 = atomic_load(&n_free);
    json_t *v = json_pack("{s:[s,i]}", "k", "text", 7);
    assert_non_null(v);
    assert_true(atomic_load(&n_malloc) > m0);
    json_decref(v);
    atomic_store(&max_size, 0);
    void *big = flow__malloc((size_t)1 << 20);
    assert_non_null(big);
    assert_int_equal(atomic_load(&max_size), (size_t)1 << 20);
    void *bigger = flow__realloc(big, (size_t)4 << 20);
    assert_non_null(bigger);
    flow__free(bigger);
    void *zeroed = flow__calloc(1000, 1000);
    assert_non_null(zeroed);
    assert_int_equal(((unsigned char *)zeroed)[999999], 0);
    flow__free(zeroed);
    assert_int_equal(atomic_load(&n_malloc) - m0, atomic_load(&n_free) - f0);
}

int main(void)
{
    flow_set_alloc_funcs(count_malloc, count_realloc, count_free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jansson_and_large_blocks),
        cmocka_unit_test(test_host_allocator_sees_everything),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    flow_set_alloc_funcs(NULL, NULL, NULL);
    return rc;
}
