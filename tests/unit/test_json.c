/* test_json.c -- flow__json_would_parse, the check that tells a failed parse
 * for lack of memory from text that is not JSON, agrees with jansson on
 * every input: a table of edge cases, then many mutations of valid JSON. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

static void agree(const char *s, size_t n)
{
    json_error_t e;
    json_t *v = json_loadb(s, n, JSON_DECODE_ANY, &e);
    bool jansson = v != NULL;
    json_decref(v);
    if (flow__json_would_parse(s, n) != jansson) {
        char shown[120];
        size_t k = 0;
        for (size_t i = 0; i < n && k + 5 < sizeof(shown); i++)
            k += (size_t)snprintf(shown + k, sizeof(shown) - k,
                                  (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f ? "%c"
                                                                                           : "\\x%02x",
                                  (unsigned char)s[i]);
        fail_msg("jansson %s '%s' (%zu bytes), the check says the opposite",
                 jansson ? "reads" : "refuses", shown, n);
    }
}

static void test_edge_cases(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "0", "-0", "01", "1.", ".5", "1e5", "1E+5", "1e-5", "1e", "-", "+1", "1.5e308", "1e309",
        "-1e309", "1e-400", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
        "-9223372036854775809", "123456789012345678901234567890", "true", "tru", "null", "nul",
        "\"a\"", "\"\\u0000\"", "\"\\u0041\"", "\"\\ud83d\\ude00\"", "\"\\ud83d\"", "\"\\ude00\"",
        "\"\\x\"", "\"tab\there\"", "[]", "[1,]", "[,1]", "{}", "{\"a\":1}", "{\"a\":1,}",
        "{a:1}", "{\"a\" 1}", "[1 2]", " [ 1 , 2 ] ", "1 2", "", "  ", "\"\xc3\xa9\"",
        "\"\xc3\"", "\"\xe2\x82\xac\"", "\"\xe0\x80\x80\"", "\"\xf0\x9f\x98\x80\"",
        "\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xf8\x80\x80\x80\x80\"",
        "\"\xed\xa0\x80\"", "\"\xc0\xaf\"", "\"\xff\"",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        agree(cases[i], strlen(cases[i]));
    /* long numbers: a real of 400 digits is finite, 1 followed by 400 zeros is not */
    char big[1200];
    snprintf(big, sizeof(big), "1%0400d.5", 0);
    agree(big, strlen(big));
    snprintf(big, sizeof(big), "1%0300d.5", 0);
    agree(big, strlen(big));
    snprintf(big, sizeof(big), "0.%0500d1e800", 0);
    agree(big, strlen(big));
    snprintf(big, sizeof(big), "0.%0500d1e450", 0);
    agree(big, strlen(big));
    /* depth: jansson stops at 2048 levels */
    for (int depth = 2047; depth <= 2049; depth++) {
        char *deep = malloc((size_t)depth * 2 + 1);
        memset(deep, '[', (size_t)depth);
        memset(deep + depth, ']', (size_t)depth);
        agree(deep, (size_t)depth * 2);
        free(deep);
    }
}

static void test_mutations(void **state)
{
    (void)state;
    static const char *const seeds[] = {
        "{\"a\": [1, 2.5, -3e2, true, false, null], \"b\": {\"c\": \"d\\u00e9\\n\"}}",
        "[\"\\ud83d\\ude00\", 0.1, 1e-5, \"\xc3\xa9\"]",
        "{\"n\": 9223372036854775807, \"m\": 1.7976931348623157e308}",
    };
    static const char alphabet[] = "{}[]\",:0123456789.eE+-tfnrua\\ \x00\x1f\xc3\xa9\xed\xf4\xff";
    unsigned seed = 12345;
    char buf[256];
    for (int round = 0; round < 30000; round++) {
        const char *s = seeds[round % 3];
        size_t n = strlen(s);
        memcpy(buf, s, n);
        int edits = 1 + (int)(rand_r(&seed) % 3);
        for (int k = 0; k < edits && n > 1; k++) {
            size_t at = rand_r(&seed) % n;
            char ch = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
            switch (rand_r(&seed) % 3) {
            case 0: /* replace */
                buf[at] = ch;
                break;
            case 1: /* delete */
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default: /* insert */
                if (n + 1 < sizeof(buf)) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = ch;
                    n++;
                }
            }
        }
        agree(buf, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
