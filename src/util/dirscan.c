/* dirscan.c -- directory entries without allocation (see dirscan.h). */
#include "compat.h"

#include "dirscan.h"

#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kernel's struct linux_dirent64. */
struct dirent64_raw {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

int flow__dirscan(int fd, flow__dirscan_fn fn, void *arg)
{
    char buf[4096] __attribute__((aligned(8)));
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        for (long off = 0; off < n;) {
            struct dirent64_raw *d = (struct dirent64_raw *)(buf + off);
            off += d->d_reclen;
            if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
                continue;
            int rc = fn(d->d_name, d->d_type, arg);
            if (rc)
                return rc;
        }
    }
}

long flow__dirscan_number(const char *name)
{
    long v = 0;
    const char *p = name;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (1L << 40))
            return -1;
        v = v * 10 + (*p - '0');
    }
    return *p || p == name ? -1 : v;
}
