/* helpers.c -- see helpers.h. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/handle.h"
#include "store/store.h"

char *th_tempdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof(tmpl), "%s/flowtest.XXXXXX", base && *base ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

void th_rmtree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[4096];
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            struct stat st;
            if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
                th_rmtree(sub);
            else
                unlink(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

char *th_write_file(const char *dir, const char *name, const char *text)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *path = malloc(len);
    snprintf(path, len, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        free(path);
        return NULL;
    }
    fputs(text, f);
    fclose(f);
    return path;
}

char *th_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

char *th_source_path(const char *rel)
{
    const char *base = getenv("FLOW_SOURCE_DIR");
    if (!base)
        base = ".";
    size_t len = strlen(base) + strlen(rel) + 2;
    char *p = malloc(len);
    snprintf(p, len, "%s/%s", base, rel);
    return p;
}

flow_run_status th_run(flow_engine *e, flow *f, json_t *inputs, flow_run **out)
{
    flow_error err;
    flow_run_options o = {.inputs = inputs};
    flow_run *r = flow_run_start(e, f, &o, &err);
    if (!r)
        fail_msg("run did not start: %s", err.message);
    flow_run_status s = flow_run_wait(r);
    if (out)
        *out = r;
    else
        flow_run_free(r);
    return s;
}

int th_count_acts(flow_run *r, const char *task, flow_act_status status)
{
    int n = 0;
    for (size_t i = 0; i < flow_run_activation_count(r); i++) {
        flow_activation_info info;
        assert_int_equal(flow_run_activation(r, i, &info), FLOW_OK);
        if (!strcmp(info.task, task) && info.status == status)
            n++;
    }
    return n;
}

flow_task *th_add(flow *f, const char *name, flow_task_fn fn)
{
    flow_error err;
    flow_task *t = flow_add_task(f, name, &err);
    if (!t)
        fail_msg("cannot add task '%s': %s", name, err.message);
    if (fn)
        assert_int_equal(flow_task_set_fn(t, fn, NULL), FLOW_OK);
    return t;
}

flow_engine *th_engine;
flow_store *th_store;

int th_engine_setup(void **state)
{
    (void)state;
    flow_engine_options o = {.jobs = 2};
    th_engine = flow_engine_new(&o, NULL);
    th_store = flow_store_open("memory:", NULL);
    return th_engine && th_store ? 0 : -1;
}

int th_engine_teardown(void **state)
{
    (void)state;
    flow_engine_free(th_engine);
    flow_store_close(th_store);
    return 0;
}

struct flow__store *th_store_open(const char *url)
{
    struct flow__store *s = NULL;
    flow_error err = {0};
    if (flow__store_open(url, &s, &err) != FLOW_OK)
        fail_msg("open %s: %s", url, err.message);
    assert_non_null(s);
    return s;
}

static flow_err count_cb(void *udata, uint64_t seq, const struct flow__jrec *rec)
{
    (void)seq;
    (void)rec;
    (*(uint64_t *)udata)++;
    return FLOW_OK;
}

uint64_t th_store_count(struct flow__store *s, const char *run)
{
    uint64_t n = 0;
    flow_error err = {0};
    if (flow__store_read(s, run, 0, count_cb, &n, &err) != FLOW_OK)
        fail_msg("read %s: %s", run, err.message);
    return n;
}

void th_fork_prefix(flow_store *s, const char *from, const char *to, size_t k, int status)
{
    struct flow__run_meta meta = {0};
    assert_int_equal(flow__store_run_get(s->backend, from, &meta, NULL), FLOW_OK);
    struct flow__jrec *recs;
    size_t count;
    assert_int_equal(flow__store_read_all(s, from, &recs, &count, NULL), FLOW_OK);
    assert_true(k <= count);
    snprintf(meta.id, sizeof(meta.id), "%s", to);
    meta.status = status;
    meta.ended_at = 0;
    assert_int_equal(flow__store_run_create(s->backend, &meta, NULL), FLOW_OK);
    assert_int_equal(flow__store_append(s->backend, to, recs, k, 0, NULL), FLOW_OK);
    flow__records_free(recs, count);
    flow__run_meta_cleanup(&meta);
}

size_t th_journal_length(flow_store *s, const char *id)
{
    struct flow__jrec *recs;
    size_t count;
    assert_int_equal(flow__store_read_all(s, id, &recs, &count, NULL), FLOW_OK);
    flow__records_free(recs, count);
    return count;
}

bool th_completed_within(flow_store *s, const char *id, size_t k, uint64_t act)
{
    struct flow__jrec *recs;
    size_t count;
    bool found = false;
    assert_int_equal(flow__store_read_all(s, id, &recs, &count, NULL), FLOW_OK);
    for (size_t i = 0; i < k && i < count; i++)
        if (recs[i].type == JREC_ACT_COMPLETED && recs[i].act == act)
            found = true;
    flow__records_free(recs, count);
    return found;
}
