/* cron.c -- five-field cron expressions (minute hour day-of-month month
 * day-of-week, with '*', lists, ranges, steps and English names), the
 * @hourly-style names and @every DURATION, and the next tick of one in an
 * IANA time zone. Debian has no small cron library to take; this follows
 * cronie's reading: when both day fields are restricted a day matching
 * either runs, 7 is Sunday too, and a step applies to the range before it.
 *
 * Next ticks are found on the wall clock (calendar arithmetic with timegm,
 * no zone), each candidate then turned into an instant in the zone; a wall
 * time the zone skips is no tick, one it repeats is the first instant. */
#include "util/compat.h"

#include "def/cron.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/alloc.h"
#include "util/error.h"

struct field {
    const char *name;
    int lo, hi;
    const char *const *names; /* names for lo, lo+1, ... or NULL */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const struct field fields[5] = {
    {"minute", 0, 59, NULL},
    {"hour", 0, 23, NULL},
    {"day of month", 1, 31, NULL},
    {"month", 1, 12, month_names},
    {"day of week", 0, 7, day_names},
};

/* A number or a name of field `f` at *p; advances *p. */
static bool value(const struct field *f, const char **p, int *out)
{
    const char *s = *p;
    if (isdigit((unsigned char)*s)) {
        long v = 0;
        while (isdigit((unsigned char)*s) && v < 1000)
            v = v * 10 + (*s++ - '0');
        *out = (int)v;
        *p = s;
        return true;
    }
    for (int i = 0; f->names && f->names[i]; i++)
        if (!strncasecmp(s, f->names[i], 3) && !isalpha((unsigned char)s[3])) {
            *out = f->lo + i;
            *p = s + 3;
            return true;
        }
    return false;
}

/* One field's text (no spaces) into a bit set. */
static bool parse_field(const struct field *f, const char *text, uint64_t *bits, bool *any,
                        char *why, size_t whylen)
{
    const char *p = text;
    *bits = 0;
    *any = !strcmp(text, "*");
    for (;;) {
        int a, b, step = 1;
        if (*p == '*') {
            a = f->lo;
            b = f->hi;
            p++;
        } else if (value(f, &p, &a)) {
            b = a;
            if (*p == '-') {
                p++;
                if (!value(f, &p, &b)) {
                    snprintf(why, whylen, "bad range end in the %s field '%.64s'", f->name, text);
                    return false;
                }
            }
        } else {
            snprintf(why, whylen, "bad %s field '%.64s'", f->name, text);
            return false;
        }
        if (*p == '/') {
            p++;
            if (!value(f, &p, &step) || step < 1) {
                snprintf(why, whylen, "bad step in the %s field '%.64s'", f->name, text);
                return false;
            }
            if (a == b && text[0] != '*') /* "5/15": from 5 to the end */
                b = f->hi;
        }
        if (a < f->lo || b > f->hi || a > b) {
            snprintf(why, whylen, "%s field '%.64s' is out of range (%d-%d)", f->name, text, f->lo,
                     f->hi);
            return false;
        }
        for (int v = a; v <= b; v += step)
            *bits |= 1ull << v;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p) {
            snprintf(why, whylen, "bad %s field '%.64s'", f->name, text);
            return false;
        }
        return true;
    }
}

static const struct {
    const char *name;
    const char *expr;
} nicknames[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

flow_err flow__cron_parse(const char *text, struct flow__cron *out, flow_error *err)
{
    struct flow__cron c;
    char why[256];
    memset(&c, 0, sizeof(c));
    while (isspace((unsigned char)*text))
        text++;
    if (!strncmp(text, "@every ", 7)) {
        if (flow_parse_duration(text + 7, &c.every) != FLOW_OK || c.every < 1)
            return flow__error(err, FLOW_EINVAL,
                               "bad schedule '%s': @every takes a duration of a second or more "
                               "(30s, 5m, 2h)",
                               text);
        *out = c;
        return FLOW_OK;
    }
    for (size_t i = 0; i < FLOW__ARRAY_LEN(nicknames); i++)
        if (!strcmp(text, nicknames[i].name))
            return flow__cron_parse(nicknames[i].expr, out, err);
    if (text[0] == '@')
        return flow__error(err, FLOW_EINVAL,
                           "unknown schedule '%s' (@yearly, @monthly, @weekly, @daily, @hourly, "
                           "@every DURATION, or five cron fields)",
                           text);
    char part[5][64];
    int n = 0;
    const char *p = text;
    while (*p && n < 6) {
        size_t len = strcspn(p, " \t");
        if (n == 5 || len >= sizeof(part[0]))
            return flow__error(err, FLOW_EINVAL,
                               "bad schedule '%s': five fields (minute hour day month weekday)",
                               text);
        memcpy(part[n], p, len);
        part[n++][len] = '\0';
        p += len;
        while (*p == ' ' || *p == '\t')
            p++;
    }
    if (n != 5)
        return flow__error(err, FLOW_EINVAL,
                           "bad schedule '%s': five fields (minute hour day month weekday), "
                           "got %d",
                           text, n);
    uint64_t bits[5];
    bool any[5];
    for (int i = 0; i < 5; i++)
        if (!parse_field(&fields[i], part[i], &bits[i], &any[i], why, sizeof(why)))
            return flow__error(err, FLOW_EINVAL, "bad schedule '%s': %s", text, why);
    c.minutes = bits[0];
    c.hours = (uint32_t)bits[1];
    c.mdays = (uint32_t)bits[2];
    c.months = (uint16_t)bits[3];
    c.wdays = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f); /* 7 is Sunday too */
    c.mday_any = any[2];
    c.wday_any = any[4];
    *out = c;
    return FLOW_OK;
}

static bool day_matches(const struct flow__cron *c, const struct tm *t)
{
    bool md = c->mdays >> t->tm_mday & 1, wd = c->wdays >> t->tm_wday & 1;
    if (c->mday_any && c->wday_any)
        return true;
    if (c->mday_any)
        return wd;
    if (c->wday_any)
        return md;
    return md || wd; /* both restricted: either, as cron has it */
}

/* The zone's rules are the C library's, chosen by TZ: switched for the
 * call under this lock. */
static pthread_mutex_t zone_lock = PTHREAD_MUTEX_INITIALIZER;

struct zone_saved {
    char *tz;
    bool had;
};

static void zone_enter(const char *tz, struct zone_saved *z)
{
    pthread_mutex_lock(&zone_lock);
    const char *old = getenv("TZ");
    z->had = old != NULL;
    z->tz = old ? flow__strdup(old) : NULL;
    setenv("TZ", tz && *tz ? tz : "UTC", 1);
    tzset();
}

static void zone_leave(struct zone_saved *z)
{
    if (z->had && z->tz)
        setenv("TZ", z->tz, 1);
    else
        unsetenv("TZ");
    tzset();
    flow__free(z->tz);
    pthread_mutex_unlock(&zone_lock);
}

bool flow__cron_zone_known(const char *tz)
{
    char path[512];
    if (!tz || !*tz || !strcmp(tz, "UTC"))
        return true;
    if (strstr(tz, "..") || tz[0] == '/')
        return false;
    const char *dir = getenv("TZDIR");
    snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", tz);
    FILE *fp = fopen(path, "rb");
    char magic[4] = {0};
    bool ok = fp && fread(magic, 1, 4, fp) == 4 && !memcmp(magic, "TZif", 4);
    if (fp)
        fclose(fp);
    return ok;
}

/* The instant of wall time `w` in the current zone, or -1 when the zone
 * skips it. Of a repeated wall time, the first instant. */
static double wall_instant(const struct tm *w)
{
    struct tm t = *w;
    t.tm_isdst = 1; /* the earlier of two readings is the summer one */
    time_t a = mktime(&t);
    struct tm back;
    if (a != (time_t)-1 && localtime_r(&a, &back) && back.tm_hour == w->tm_hour &&
        back.tm_min == w->tm_min && back.tm_mday == w->tm_mday)
        return (double)a;
    t = *w;
    t.tm_isdst = 0;
    a = mktime(&t);
    if (a != (time_t)-1 && localtime_r(&a, &back) && back.tm_hour == w->tm_hour &&
        back.tm_min == w->tm_min && back.tm_mday == w->tm_mday)
        return (double)a;
    return -1;
}

double flow__cron_next(const struct flow__cron *c, double after, const char *tz)
{
    if (c->every > 0) {
        double k = (double)(long long)(after / c->every) + 1;
        return k * c->every;
    }
    struct zone_saved z;
    zone_enter(tz, &z);
    time_t start = (time_t)after;
    struct tm now;
    localtime_r(&start, &now);
    /* Walk the wall clock (as if it were UTC: timegm/gmtime_r do the
     * calendar) from the minute after `after`, a day, hour or minute at a
     * time as the fields allow. */
    now.tm_sec = 0;
    now.tm_isdst = 0;
    time_t w = timegm(&now) + 60;
    time_t limit = w + (time_t)5 * 366 * 86400;
    double found = -1;
    struct tm t;
    while (w < limit) {
        gmtime_r(&w, &t);
        if (!(c->months >> (t.tm_mon + 1) & 1)) {
            t.tm_mon++;
            t.tm_mday = 1;
            t.tm_hour = t.tm_min = 0;
            w = timegm(&t);
            continue;
        }
        if (!day_matches(c, &t)) {
            t.tm_mday++;
            t.tm_hour = t.tm_min = 0;
            w = timegm(&t);
            continue;
        }
        if (!(c->hours >> t.tm_hour & 1)) {
            t.tm_hour++;
            t.tm_min = 0;
            w = timegm(&t);
            continue;
        }
        if (!(c->minutes >> t.tm_min & 1)) {
            w += 60;
            continue;
        }
        double at = wall_instant(&t);
        if (at > after) {
            found = at;
            break;
        }
        w += 60; /* skipped by the zone, or a repeated hour's second reading */
    }
    zone_leave(&z);
    return found;
}
