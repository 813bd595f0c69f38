/* clock.c -- clocks (see clock.h). */
#include "compat.h"

#include "clock.h"

#include <stdio.h>
#include <time.h>

int64_t flow__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double flow__wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* 9999-12-31T23:59:59Z: four digits of year, and far inside time_t. */
#define TIME_MAX 253402300799.0
#define DELAY_MAX (100.0 * 365 * 86400)

bool flow__time_is_valid(double t)
{
    return t >= 0 && t <= TIME_MAX; /* false for NaN too */
}

bool flow__rfc3339(double t, char *out, size_t len)
{
    struct tm tm;
    time_t secs = flow__time_is_valid(t) ? (time_t)t : 0;
    if (!flow__time_is_valid(t) || !gmtime_r(&secs, &tm)) {
        if (len)
            out[0] = '\0';
        return false;
    }
    int ms = (int)((t - (double)secs) * 1000.0);
    if (ms < 0)
        ms = 0;
    if (ms > 999)
        ms = 999;
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return true;
}

int64_t flow__delay_ns(double seconds)
{
    if (!(seconds > 0))
        return 0;
    if (seconds > DELAY_MAX)
        seconds = DELAY_MAX;
    return (int64_t)(seconds * 1e9);
}
