/* common.c -- helpers the fuzz harnesses share (see fuzz.h). */
#define _GNU_SOURCE 1
#include "fuzz.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *fuzz_copy(const uint8_t *data, size_t size, bool nul)
{
    char *p = malloc(size + (nul ? 1 : 0) + (size == 0 && !nul));
    if (!p)
        abort();
    if (size)
        memcpy(p, data, size);
    if (nul)
        p[size] = '\0';
    return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void fuzz_rmtree(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char tempdir[256];

static void remove_tempdir(void)
{
    if (tempdir[0])
        fuzz_rmtree(tempdir);
}

const char *fuzz_tempdir(void)
{
    if (tempdir[0])
        return tempdir;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(tempdir, sizeof(tempdir), "%s/flow-fuzz-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tempdir)) {
        perror(tempdir);
        abort();
    }
    atexit(remove_tempdir);
    return tempdir;
}

void fuzz_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (len && write(fd, data, len) != (ssize_t)len) || close(fd) != 0) {
        perror(path);
        abort();
    }
}

void fuzz_check_message(const char *msg)
{
    if (!msg || !msg[0])
        abort();
    for (const char *p = msg; *p; p++) {
        if ((unsigned char)*p < 0x20) {
            fprintf(stderr, "message is not one line: %s\n", msg);
            abort();
        }
    }
}
