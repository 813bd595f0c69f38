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

/* 9999-12-31T23:59:59.999Z, the last time four digits of year can show. */
#define LAST_TIME 253402300799.9995

void flow__rfc3339(double t, char *out, size_t len)
{
    /* Times come from records that may be damaged: converting a NaN or one
     * beyond time_t to an integer is undefined, and gmtime_r fails on years
     * it cannot hold. */
    if (!(t >= 0))
        t = 0;
    if (t > LAST_TIME)
        t = LAST_TIME;
    time_t secs = (time_t)t;
    int ms = (int)((t - (double)secs) * 1000.0);
    if (ms < 0)
        ms = 0;
    if (ms > 999)
        ms = 999;
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}
