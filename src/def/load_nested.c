/* load_nested.c -- files: reading a workflow file, and nested flows
 * (`flow: other.yaml`), each file loaded once per tree and shared, cycles
 * and depth refused with the chain of files that led there. */
#include "util/compat.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "def/load_int.h"
#include "util/alloc.h"
#include "util/error.h"

/* Drop "." and "dir/.." steps from a path, in place, for messages
 * ("sub/../c.yaml" is "c.yaml"; a leading ".." stays). */
static void tidy_path(char *path)
{
    bool abs = path[0] == '/';
    char *out = path + abs;
    char *p = out;
    char *stop = path + strlen(path); /* writing a '/' may cover the NUL */
    size_t kept = 0;                  /* steps in `out` that a ".." may remove */
    while (p < stop) {
        char *end = memchr(p, '/', (size_t)(stop - p));
        size_t len = end ? (size_t)(end - p) : (size_t)(stop - p);
        if (len == 0 || (len == 1 && p[0] == '.')) {
            /* nothing */
        } else if (len == 2 && p[0] == '.' && p[1] == '.' && kept) {
            out[-1] = '\0'; /* back over the last step and its '/' */
            char *prev = strrchr(path + abs, '/');
            out = prev && prev >= path + abs ? prev + 1 : path + abs;
            kept--;
        } else if (len == 2 && p[0] == '.' && p[1] == '.' && abs) {
            /* "/.." is "/" */
        } else {
            memmove(out, p, len);
            out += len;
            *out++ = '/';
            if (!(len == 2 && p[0] == '.' && p[1] == '.'))
                kept++;
        }
        p += len;
        while (p < stop && *p == '/')
            p++;
    }
    if (out > path + abs)
        out--; /* the last '/' */
    else if (!abs)
        *out++ = '.';
    *out = '\0';
}

/* The name messages give a nested file `path` written in file `parent`:
 * relative to the parent's directory, as the parent is named. */
static char *nested_name(const char *parent, const char *path)
{
    const char *slash = strrchr(parent, '/');
    char *name = path[0] == '/' || !slash
                     ? flow__strdup(path)
                     : flow__asprintf("%.*s/%s", (int)(slash - parent), parent, path);
    if (name)
        tidy_path(name);
    return name;
}

/* Where a nested file's diagnostics go: copied into the parent's, sorted at
 * the `flow:` key that loads it. */
static void adopt_diags(struct loader *L, const flow_diags *d, struct flow__yaml_pos at)
{
    for (size_t i = 0; i < flow_diags_count(d); i++) {
        flow_severity sev = FLOW_SEV_ERROR;
        const flow_error *e = flow_diags_get(d, i, &sev);
        flow__ld_add_diag(L, e, sev, at);
    }
}

/* The flow of `flow: path` in task `task` (written at `pos`): loaded with
 * this loader, once per tree (a file used again shares the flow), refusing
 * cycles. Borrowed from the tree; NULL after reporting. */
flow *flow__ld_load_nested(struct loader *L, const char *path, struct flow__yaml_pos pos,
                           const char *task)
{
    struct tree *tree = L->tree;
    flow *child = NULL;
    char *canon = NULL;
    char *dir = NULL;
    flow_diags *d = NULL;
    struct flow__buf b;
    flow__buf_init(&b, FLOW__YAML_MAX_BYTES);
    char *open_path =
        path[0] == '/' || !L->dir ? flow__strdup(path) : flow__asprintf("%s/%s", L->dir, path);
    char *shown = nested_name(L->file, path);
    if (!open_path || !shown) {
        L->nomem = true;
        goto out;
    }
    char looked[300] = "";
    if (strcmp(shown, path) != 0)
        snprintf(looked, sizeof(looked), " (looked for '%s')", shown);
    char *real = realpath(open_path, NULL);
    if (!real) {
        int e = errno;
        if (e == ENOMEM)
            L->nomem = true;
        else
            flow__ld_report(L, pos, "cannot open nested flow '%s' of task '%s'%s: %s", path, task,
                            looked, strerror(e));
        goto out;
    }
    canon = flow__strdup(real);
    free(real); /* realpath() allocates with malloc */
    if (!canon) {
        L->nomem = true;
        goto out;
    }

    /* A file that is being loaded further out: a cycle, reported where it starts. */
    tree->stack.items[L->depth].include = pos;
    for (size_t i = 0; i < tree->stack.count; i++) {
        const struct frame *fr = &tree->stack.items[i];
        if (!fr->canon || strcmp(fr->canon, canon) != 0)
            continue;
        struct flow__buf chain;
        flow__buf_init(&chain, 4096);
        for (size_t k = i; k < tree->stack.count; k++)
            flow__buf_printf(&chain, "%s -> ", tree->stack.items[k].file);
        flow__buf_printf(&chain, "%s", shown);
        flow_error e;
        flow__error_at(&e, FLOW_EVALIDATION, fr->file, fr->include.line, fr->include.column,
                       "nested flow cycle: %s", flow__buf_str(&chain));
        flow__buf_cleanup(&chain);
        bool known = false; /* a file that uses the cycle twice meets it twice */
        for (size_t k = 0; k < L->diags.count && !known; k++)
            known = strcmp(L->diags.items[k].e.message, e.message) == 0 &&
                    strcmp(L->diags.items[k].e.file, e.file) == 0;
        if (!known)
            flow__ld_add_diag(L, &e, FLOW_SEV_ERROR, pos);
        else
            L->hidden_errors++;
        goto out;
    }
    for (size_t i = 0; i < tree->done.count; i++) {
        if (strcmp(tree->done.items[i].canon, canon) == 0) {
            child = tree->done.items[i].f;
            if (!child)
                L->hidden_errors++; /* reported where it was first used */
            goto out;
        }
    }
    if (tree->stack.count >= MAX_NESTING) {
        flow__ld_report(L, pos, "nested flow '%s' of task '%s' is more than %d files deep", path,
                        task, MAX_NESTING);
        goto out;
    }

    struct stat st;
    if (stat(canon, &st) == 0 && S_ISDIR(st.st_mode)) {
        flow__ld_report(L, pos,
                        "nested flow '%s' of task '%s'%s is a directory, not a workflow file", path,
                        task, looked);
        goto out;
    }
    flow_error e;
    flow__error_clear(&e);
    if (flow__ld_read_file(open_path, &b, &e)) {
        if (e.code == FLOW_ENOMEM)
            L->nomem = true;
        else
            flow__ld_report(L, pos, "cannot load nested flow '%s' of task '%s': %s", path, task,
                            e.message);
        goto out;
    }
    dir = flow__ld_base_dir(open_path);
    d = flow_diags_new();
    if (!dir || !d) {
        L->nomem = true;
        goto out;
    }
    child = flow__ld_load(b.data ? b.data : "", b.len, shown, dir, canon, tree, d, &e);
    adopt_diags(L, d, pos);
    if (!child && e.code == FLOW_ENOMEM)
        L->nomem = true;
    else if (!child && flow_diags_error_count(d) == 0)
        L->hidden_errors++;
    struct loaded ld = {canon, child};
    flow_err rc = FLOW_OK;
    size_t before = tree->done.count;
    FLOW__VEC_PUSH(&tree->done, ld, rc);
    if (rc || tree->done.count == before) {
        L->nomem = true;
        flow_free(child);
        child = NULL;
    } else {
        canon = NULL; /* the tree's now */
    }
out:
    flow_diags_free(d);
    flow__free(dir);
    flow__buf_cleanup(&b);
    flow__free(canon);
    flow__free(shown);
    flow__free(open_path);
    return child;
}
