/* clock.h -- time in the units the engine uses. */
#ifndef FLOW_UTIL_CLOCK_H
#define FLOW_UTIL_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Monotonic nanoseconds, for timers and durations. */
int64_t flow__now_ns(void);
/* Wall clock, seconds since the epoch, for records people read. */
double flow__wall_time(void);
/* Is `t` a time that can be printed: finite, from 1970 to the year 9999?
 * Times read back from a store may be anything (a damaged file). */
bool flow__time_is_valid(double t);
/* RFC 3339 UTC with milliseconds ("2026-11-22T04:00:54.123Z"); false (and
 * an empty string) for a time flow__time_is_valid refuses. */
bool flow__rfc3339(double epoch_seconds, char *out, size_t len);
/* A delay in seconds as nanoseconds for a timer: NaN and negatives are 0,
 * and anything over 100 years is 100 years, so that no value overflows. */
int64_t flow__delay_ns(double seconds);

#endif
