/* helpers.h -- shared test helpers: temp dirs, reading files, cmocka glue. */
#ifndef FLOW_TESTS_HELPERS_H
#define FLOW_TESTS_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "flow.h"

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

#endif
