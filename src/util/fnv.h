/* fnv.h -- FNV-1a, 64 bits: a fingerprint fed piece by piece (not a
 * cryptographic hash: it tells a changed definition from the same one). */
#ifndef FLOW_UTIL_FNV_H
#define FLOW_UTIL_FNV_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FLOW__FNV_INIT 1469598103934665603ULL

static inline uint64_t flow__fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* A string with its terminator, so that ("ab","c") and ("a","bc") differ;
 * NULL hashes as one 0xff byte. */
static inline uint64_t flow__fnv_str(uint64_t h, const char *s)
{
    static const unsigned char none = 0xff;
    return s ? flow__fnv(h, s, strlen(s) + 1) : flow__fnv(h, &none, 1);
}

#endif
