/* test_cron.c -- schedules: parsing (fields, names, steps, nicknames,
 * @every, errors) and next ticks against known dates, in UTC and across
 * the daylight-saving changes of Europe/Berlin and America/New_York. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "def/cron.h"

/* Epoch seconds of a UTC time. */
static double utc(int y, int mo, int d, int h, int mi)
{
    struct tm t = {0};
    t.tm_year = y - 1900;
    t.tm_mon = mo - 1;
    t.tm_mday = d;
    t.tm_hour = h;
    t.tm_min = mi;
    return (double)timegm(&t);
}

static double next(const char *expr, double after, const char *tz)
{
    struct flow__cron c;
    flow_error err = {0};
    assert_int_equal(flow__cron_parse(expr, &c, &err), FLOW_OK);
    return flow__cron_next(&c, after, tz);
}

static void expect_next(const char *expr, const char *tz, double after, double want)
{
    double got = next(expr, after, tz);
    if (got != want) {
        char g[64] = "none", w[64] = "none";
        time_t gt = (time_t)got, wt = (time_t)want;
        struct tm tm;
        if (got >= 0)
            strftime(g, sizeof(g), "%Y-%m-%dT%H:%MZ", gmtime_r(&gt, &tm));
        if (want >= 0)
            strftime(w, sizeof(w), "%Y-%m-%dT%H:%MZ", gmtime_r(&wt, &tm));
        fail_msg("'%s' in %s: next %s, expected %s", expr, tz ? tz : "UTC", g, w);
    }
}

static void test_utc(void **state)
{
    (void)state;
    /* 2026-12-03 is a Thursday */
    expect_next("*/15 * * * *", NULL, utc(2026, 12, 3, 14, 7), utc(2026, 12, 3, 14, 15));
    expect_next("*/15 * * * *", NULL, utc(2026, 12, 3, 14, 15), utc(2026, 12, 3, 14, 30));
    expect_next("0 9 * * 1-5", NULL, utc(2026, 12, 4, 10, 0), utc(2026, 12, 7, 9, 0));
    expect_next("0 9 * * mon-fri", NULL, utc(2026, 12, 4, 10, 0), utc(2026, 12, 7, 9, 0));
    expect_next("@yearly", NULL, utc(2026, 12, 3, 0, 0), utc(2027, 1, 1, 0, 0));
    expect_next("@monthly", NULL, utc(2026, 12, 3, 0, 0), utc(2027, 1, 1, 0, 0));
    expect_next("@weekly", NULL, utc(2026, 12, 3, 0, 0), utc(2026, 12, 6, 0, 0));
    expect_next("@daily", NULL, utc(2026, 12, 3, 0, 0), utc(2026, 12, 4, 0, 0));
    expect_next("@hourly", NULL, utc(2026, 12, 3, 14, 59), utc(2026, 12, 3, 15, 0));
    expect_next("0 0 29 2 *", NULL, utc(2026, 3, 1, 0, 0), utc(2028, 2, 29, 0, 0));
    expect_next("0 0 30 2 *", NULL, utc(2026, 3, 1, 0, 0), -1);
    /* both day fields restricted: the 13th or a Friday */
    expect_next("0 12 13 * 5", NULL, utc(2026, 12, 3, 13, 0), utc(2026, 12, 4, 12, 0));
    expect_next("0 12 13 * 5", NULL, utc(2026, 12, 11, 13, 0), utc(2026, 12, 13, 12, 0));
    /* 7 is Sunday; names; lists; a step after a start */
    expect_next("0 0 * * 7", NULL, utc(2026, 12, 3, 0, 0), utc(2026, 12, 6, 0, 0));
    expect_next("0 0 1 jan,jul *", NULL, utc(2026, 12, 3, 0, 0), utc(2027, 1, 1, 0, 0));
    expect_next("5/20 * * * *", NULL, utc(2026, 12, 3, 14, 26), utc(2026, 12, 3, 14, 45));
    expect_next("1-10/3 * * * *", NULL, utc(2026, 12, 3, 14, 5), utc(2026, 12, 3, 14, 7));
    /* @every: the multiples of its duration since the epoch */
    expect_next("@every 5m", NULL, utc(2026, 12, 3, 14, 7) + 30, utc(2026, 12, 3, 14, 10));
    expect_next("@every 1h", "Europe/Berlin", utc(2026, 12, 3, 14, 0), utc(2026, 12, 3, 15, 0));
}

static void test_zones(void **state)
{
    (void)state;
    expect_next("0 9 * * *", "America/New_York", utc(2026, 12, 3, 0, 0), utc(2026, 12, 3, 14, 0));
    expect_next("0 9 * * *", "America/New_York", utc(2026, 7, 3, 0, 0), utc(2026, 7, 3, 13, 0));
    /* spring forward (Berlin, 2027-03-28 02:00 -> 03:00): 02:30 does not
     * exist that day, so no tick */
    expect_next("30 2 * * *", "Europe/Berlin", utc(2027, 3, 27, 2, 0), utc(2027, 3, 29, 0, 30));
    /* ... while 03:30 does, in summer time */
    expect_next("30 3 * * *", "Europe/Berlin", utc(2027, 3, 27, 3, 0), utc(2027, 3, 28, 1, 30));
    /* fall back (Berlin, 2026-10-25 03:00 -> 02:00): 02:30 happens twice,
     * the tick once, at the first */
    expect_next("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12, 0), utc(2026, 10, 25, 0, 30));
    expect_next("30 2 * * *", "Europe/Berlin", utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30));
    /* every 30 minutes through the repeated hour: 02:00, 02:30 once each */
    expect_next("*/30 * * * *", "Europe/Berlin", utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 30));
    expect_next("*/30 * * * *", "Europe/Berlin", utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2, 0));
    assert_true(flow__cron_zone_known("Europe/Berlin"));
    assert_true(flow__cron_zone_known(NULL));
    assert_false(flow__cron_zone_known("Mars/Olympus"));
    assert_false(flow__cron_zone_known("../../etc/passwd"));
}

static void test_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "61 * * * *", "* 24 * * *", "* * 0 * *",   "* * * 13 *", "* * * * 8",
        "* * *",      "* * * * * *", "@sometimes", "*/0 * * * *", "5-1 * * * *",
        "@every 0s",  "@every soon", "x * * * *",  "1,,2 * * * *", "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct flow__cron c;
        flow_error err = {0};
        if (flow__cron_parse(bad[i], &c, &err) != FLOW_EINVAL)
            fail_msg("'%s' was taken", bad[i]);
        assert_non_null(strstr(err.message, "schedule"));
    }
    flow_error err = {0};
    struct flow__cron c;
    flow__cron_parse("61 * * * *", &c, &err);
    assert_non_null(strstr(err.message, "minute"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utc),
        cmocka_unit_test(test_zones),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
