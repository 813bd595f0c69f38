/* clock.h -- time in the units the engine uses. */
#ifndef FLOW_UTIL_CLOCK_H
#define FLOW_UTIL_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Monotonic nanoseconds, for timers and durations. */
int64_t flow__now_ns(void);
/* Wall clock, seconds since the epoch, for records people read. */
double flow__wall_time(void);
/* RFC 3339 UTC with milliseconds ("2026-11-22T04:00:54.123Z"). Times
 * before the epoch (and NaN) read as the epoch, times after the year 9999
 * as its last millisecond. */
void flow__rfc3339(double epoch_seconds, char *out, size_t len);

#endif
