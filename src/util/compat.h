/* compat.h -- feature macros; the first include of every .c file. */
#ifndef FLOW_UTIL_COMPAT_H
#define FLOW_UTIL_COMPAT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* pipe2, clone, pidfd, memmem, strchrnul */
#endif

#define FLOW__UNUSED(x) ((void)(x))
#define FLOW__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define FLOW__LIKELY(x) __builtin_expect(!!(x), 1)
#define FLOW__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define FLOW__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FLOW__LIKELY(x) (x)
#define FLOW__UNLIKELY(x) (x)
#define FLOW__PRINTF(f, a)
#endif

#endif
