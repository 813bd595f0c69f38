/* helpers.h -- shared test helpers: temp dirs, reading files, cmocka glue. */
#ifndef FLOW_TESTS_HELPERS_H
#define FLOW_TESTS_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "flow.h"

/* 1 in a ThreadSanitizer build: every memory access is about ten times
 * slower and every byte touched costs shadow memory, so wall-time and
 * memory bounds scale (or are skipped) there. */
#if defined(__SANITIZE_THREAD__)
#define TH_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TH_TSAN 1
#endif
#endif
#ifndef TH_TSAN
#define TH_TSAN 0
#endif

/* A new private temp dir (mkdtemp under $TMPDIR or /tmp); free() it. */
char *th_tempdir(void);
/* Remove a directory tree (for temp dirs). */
void th_rmtree(const char *path);
/* Write `text` to dir/name; returns the malloc'd full path. */
char *th_write_file(const char *dir, const char *name, const char *text);
/* Read a whole file into a malloc'd NUL-terminated string, or NULL. */
char *th_read_file(const char *path);
/* Path under the source tree ($FLOW_SOURCE_DIR or "."); malloc'd. */
char *th_source_path(const char *rel);

/* Engine tests: start `f` on `e` with `inputs` (may be NULL) and wait; the
 * run is returned in *out (free it); a run that cannot start fails the test. */
flow_run_status th_run(flow_engine *e, flow *f, json_t *inputs, flow_run **out);
/* Activations of `task` with `status` in a finished run. */
int th_count_acts(flow_run *r, const char *task, flow_act_status status);
/* Add a task (failing the test if it cannot), with body `fn` when not NULL. */
flow_task *th_add(flow *f, const char *name, flow_task_fn fn);

/* Engine tests: an engine of 2 jobs and a memory store, made by
 * th_engine_setup and freed by th_engine_teardown (a cmocka group's setup
 * and teardown; th_engine_setup fails when either cannot be made). */
extern flow_engine *th_engine;
extern flow_store *th_store;
int th_engine_setup(void **state);
int th_engine_teardown(void **state);

/* Store tests (src/store/store.h): open `url` or fail the test; how many
 * records run `run` of `s` holds (a failed read fails the test). */
struct flow__store;
struct flow__store *th_store_open(const char *url);
uint64_t th_store_count(struct flow__store *s, const char *run);

/* Durable runs through a store handle: a new run `to` holding the first `k`
 * records of run `from` (the journal a crash after record k would have
 * left), its status `status`; how many records run `id` has; whether
 * activation `act` completed within its first `k`. Failures fail the test. */
void th_fork_prefix(flow_store *s, const char *from, const char *to, size_t k, int status);
size_t th_journal_length(flow_store *s, const char *id);
bool th_completed_within(flow_store *s, const char *id, size_t k, uint64_t act);

#endif
