/* replay.c -- run a harness over kept inputs without libFuzzer: each
 * argument is a file or a directory of them (dot files and README.md
 * skipped), each file is one input. `make test` runs every harness so over
 * tests/fuzz/crashes/ and tests/fuzz/corpus/, built by the ordinary
 * compiler (with ASan and UBSan in build-asan/, under valgrind in build/),
 * so that a fixed crash stays fixed where clang is not installed. */
#define _GNU_SOURCE 1
#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read `path` into a heap block of exactly its size, as libFuzzer would. */
static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    size_t cap = 4096;
    size_t len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            uint8_t *bigger = realloc(buf, cap *= 2);
            if (!bigger)
                free(buf);
            buf = bigger;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", path);
        return 1;
    }
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return 1;
    }
    memcpy(exact, buf, len);
    free(buf);
    printf("input %s (%zu bytes)\n", path, len);
    fflush(stdout);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int run_dir(const char *path, size_t *count)
{
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return 1;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, "README.md"))
            continue;
        size_t size = strlen(path) + strlen(e->d_name) + 2;
        char **more = realloc(names, (n + 1) * sizeof(*names));
        if (!more || !(more[n] = malloc(size))) {
            closedir(d);
            return 1;
        }
        names = more;
        snprintf(names[n++], size, "%s/%s", path, e->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(*names), by_name);
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (!failed && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            failed = run_file(names[i]);
            (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return failed;
}

int main(int argc, char **argv)
{
    /* Harnesses may change directory: name the inputs from the root. */
    for (int i = 1; i < argc; i++) {
        char *abs = realpath(argv[i], NULL);
        if (abs)
            argv[i] = abs; /* kept until exit */
    }
    LLVMFuzzerInitialize(&argc, &argv);
    size_t count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            printf("no inputs in %s\n", argv[i]); /* git keeps no empty folder */
            continue;
        }
        bool dir = S_ISDIR(st.st_mode);
        if (dir ? run_dir(argv[i], &count) : run_file(argv[i]))
            return 1;
        count += !dir;
    }
    printf("%zu inputs, no crash\n", count);
    return 0;
}
