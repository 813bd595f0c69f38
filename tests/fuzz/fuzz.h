/* fuzz.h -- what every harness of tests/fuzz/ defines, and the helpers they
 * share. libFuzzer calls the two entry points; so does replay.c, the plain
 * driver that `make test` builds with the ordinary compiler to run the kept
 * inputs again. */
#ifndef FLOW_TESTS_FUZZ_H
#define FLOW_TESTS_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Run one input; always returns 0 (libFuzzer reserves other values). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Once, before the first input. */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A heap copy of the input of exactly `size` bytes (plus a NUL when `nul`),
 * so that ASan sees any read past the end; free() it. Never NULL. */
char *fuzz_copy(const uint8_t *data, size_t size, bool nul);
/* A new private directory (under /dev/shm when it can, which makes the
 * disk store's fsyncs free); removed at exit. Never NULL. */
const char *fuzz_tempdir(void);
/* Remove `path` and everything under it. */
void fuzz_rmtree(const char *path);
/* Abort unless `msg` is a message as the API promises them: not empty, one
 * line (no control character). */
void fuzz_check_message(const char *msg);
/* Write `len` bytes to `path` (replacing it); aborts on failure. */
void fuzz_write_file(const char *path, const void *data, size_t len);

#endif
