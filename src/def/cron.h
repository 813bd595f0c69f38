/* cron.h -- schedules of flows (`schedule:`): five-field cron expressions,
 * the @hourly-style names and @every DURATION, and their next tick in a
 * time zone (docs/internals/limits.md, "Schedules"). */
#ifndef FLOW_DEF_CRON_H
#define FLOW_DEF_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flow.h"

struct flow__cron {
    uint64_t minutes; /* bit m: minute m (0-59) */
    uint32_t hours;   /* bit h (0-23) */
    uint32_t mdays;   /* bit d (1-31) */
    uint16_t months;  /* bit m (1-12) */
    uint8_t wdays;    /* bit w (0-6, Sunday 0) */
    bool mday_any;    /* the day-of-month field was '*' */
    bool wday_any;    /* the day-of-week field was '*' */
    double every;     /* @every: seconds between ticks (> 0); 0 otherwise */
};

/* Parse `text`; on error FLOW_EINVAL with a message naming the field in
 * `err`, and *out untouched. */
flow_err flow__cron_parse(const char *text, struct flow__cron *out, flow_error *err);

/* The first tick strictly after `after` (epoch seconds), in time zone `tz`
 * (an IANA name such as "Europe/Berlin"; NULL or "" is UTC), or -1 when
 * there is none in the next five years (0 0 30 2 *). A wall time that the
 * zone skips (spring forward) has no tick; one it repeats (fall back) has
 * one, the first. @every ticks at the multiples of its duration since the
 * epoch, whatever the zone. Thread-safe. */
double flow__cron_next(const struct flow__cron *c, double after, const char *tz);

/* Is `tz` a time zone this machine knows? */
bool flow__cron_zone_known(const char *tz);

#endif
