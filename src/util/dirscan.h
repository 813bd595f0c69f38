/* dirscan.h -- the entries of a directory without opendir: getdents64 into
 * a buffer on the stack, so that no memory is allocated and a process forked
 * from a threaded one (the reaper) may use it. */
#ifndef FLOW_UTIL_DIRSCAN_H
#define FLOW_UTIL_DIRSCAN_H

/* Called with each entry's name (never "." or "..") and d_type (DT_UNKNOWN
 * when the file system does not say); a non-zero return stops the scan. */
typedef int (*flow__dirscan_fn)(const char *name, unsigned char type, void *arg);

/* Scan the directory open as `fd` from its current position (lseek it to 0
 * to start again). Returns 0 at the end, the callback's non-zero value, or
 * -1 with errno. Async-signal-safe when `fn` is. */
int flow__dirscan(int fd, flow__dirscan_fn fn, void *arg);

/* The number that `name` is (a pid in /proc), or -1 when it is not all
 * decimal digits. */
long flow__dirscan_number(const char *name);

#endif
