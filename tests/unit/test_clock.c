/* test_clock.c -- clocks: RFC 3339 text for every double a damaged record
 * can hold (issue #9: NaN and huge times were undefined behaviour). */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <math.h>
#include <string.h>

#include "util/clock.h"

static void expect(double t, const char *want)
{
    char buf[40];
    memset(buf, 'x', sizeof(buf));
    flow__rfc3339(t, buf, sizeof(buf));
    if (strcmp(buf, want) != 0)
        fail_msg("%g gives '%.39s', expected '%s'", t, buf, want);
}

static void test_rfc3339(void **state)
{
    (void)state;
    expect(0, "1970-01-01T00:00:00.000Z");
    expect(1.5, "1970-01-01T00:00:01.500Z");
    expect(1795320054.25, "2026-11-22T04:00:54.250Z");
    expect(253402300799.9995, "9999-12-31T23:59:59.999Z");
}

static void test_rfc3339_damaged_times(void **state)
{
    (void)state;
    expect(-1, "1970-01-01T00:00:00.000Z");
    expect(-1e300, "1970-01-01T00:00:00.000Z");
    expect(NAN, "1970-01-01T00:00:00.000Z");
    expect(-INFINITY, "1970-01-01T00:00:00.000Z");
    expect(253402300800.0, "9999-12-31T23:59:59.999Z");
    expect(3.99284e+252, "9999-12-31T23:59:59.999Z");
    expect(INFINITY, "9999-12-31T23:59:59.999Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_rfc3339_damaged_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
