/* test_cli_format.c -- the `flow` program's helpers that need no process:
 * durations for people, foreach elements by index and item (cut by
 * characters, never inside one), and colour: the mode, the decision for a
 * stream (a terminal, NO_COLOR, TERM=dumb), the words' colours, padding
 * outside the escape codes, and --color taken by every command's parser.
 * cli/cli.c and cli/color.c are compiled into this test. */
#define _GNU_SOURCE 1
#include "cli.h"

#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "color.h"
#include "helpers.h"

static void test_duration(void **state)
{
    static const struct {
        double seconds;
        const char *text;
    } cases[] = {
        {0, "0.0s"},          {0.04, "0.0s"},       {1.24, "1.2s"},     {1.25, "1.3s"},
        {59.94, "59.9s"},     {59.96, "1m00s"},     {60, "1m00s"},      {184, "3m04s"},
        {3599.4, "59m59s"},   {3599.6, "1h00m"},    {7800, "2h10m"},    {86369, "23h59m"},
        {86371, "1d00h"},     {90000, "1d01h"},     {864000, "10d00h"}, {-1, "-"},
    };
    char out[32];
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cli_format_duration(cases[i].seconds, out, sizeof(out));
        if (strcmp(out, cases[i].text) != 0)
            fail_msg("%g s: got '%s', expected '%s'", cases[i].seconds, out, cases[i].text);
    }
    assert_string_equal(cli_format_duration(NAN, out, sizeof(out)), "-");
    assert_string_equal(cli_format_duration(INFINITY, out, sizeof(out)), "-");
}

static void test_item_and_label(void **state)
{
    char out[256];
    (void)state;
    json_t *s = json_string("b.png");
    assert_string_equal(cli_item_text(s, out, sizeof(out)), "\"b.png\"");
    assert_string_equal(cli_act_label(out, sizeof(out), "resize", 3, s, true),
                        "resize[3] \"b.png\"");
    assert_string_equal(cli_act_label(out, sizeof(out), "resize", 3, s, false), "resize[3]");
    assert_string_equal(cli_act_label(out, sizeof(out), "resize", -1, s, true), "resize");
    assert_string_equal(cli_act_label(out, sizeof(out), "resize", 0, NULL, true), "resize[0] null");
    json_decref(s);

    /* Compact JSON, cut to 24 characters: 21 and "...". */
    json_t *o = json_pack("{s:s,s:i}", "name", "a very long item name here", "n", 1);
    assert_string_equal(cli_item_text(o, out, sizeof(out)), "{\"name\":\"a very long ...");
    assert_int_equal(strlen(out), 24);
    json_decref(o);
    json_t *exact = json_string("1234567890123456789012"); /* 24 with its quotes */
    assert_string_equal(cli_item_text(exact, out, sizeof(out)), "\"1234567890123456789012\"");
    json_decref(exact);
    json_t *n = json_integer(42);
    assert_string_equal(cli_item_text(n, out, sizeof(out)), "42");
    json_decref(n);

    /* Characters, not bytes: 30 two-byte letters are cut after 21 characters. */
    char text[128];
    for (int i = 0; i < 30; i++)
        memcpy(text + 2 * i, "\xc3\xa9", 2);
    text[60] = '\0';
    json_t *u = json_string(text);
    cli_item_text(u, out, sizeof(out));
    assert_int_equal(strncmp(out, "\"\xc3\xa9", 3), 0);
    assert_int_equal(strlen(out), 1 + 20 * 2 + 3);
    assert_string_equal(out + strlen(out) - 3, "...");
    json_decref(u);

    /* Control characters come escaped by JSON: a label stays one line. */
    json_t *nl = json_string("a\nb");
    assert_string_equal(cli_item_text(nl, out, sizeof(out)), "\"a\\nb\"");
    json_decref(nl);
}

static void test_color_words(void **state)
{
    char out[64];
    (void)state;
    assert_string_equal(cli_color_code("completed"), "\033[32m");
    assert_string_equal(cli_color_code("act_completed"), "\033[32m");
    assert_string_equal(cli_color_code("failed"), "\033[31m");
    assert_string_equal(cli_color_code("stopped"), "\033[31m");
    assert_string_equal(cli_color_code("running"), "\033[36m");
    assert_string_equal(cli_color_code("paused"), "\033[33m");
    assert_string_equal(cli_color_code("cancelled"), "\033[2m");
    assert_string_equal(cli_color_code("act_skipped"), "\033[2m");
    assert_string_equal(cli_color_code("emitted"), "");
    assert_string_equal(cli_color_code("pending"), "");
    assert_string_equal(cli_color_code(NULL), "");
    /* The padding is outside the codes: columns line up either way. */
    assert_string_equal(cli_color_pad(out, sizeof(out), true, "failed", "failed", 10),
                        "\033[31mfailed\033[0m    ");
    assert_string_equal(cli_color_pad(out, sizeof(out), false, "failed", "failed", 10),
                        "failed    ");
    assert_string_equal(cli_color_pad(out, sizeof(out), true, "pending", "pending", 9),
                        "pending  ");
    assert_string_equal(cli_color_pad(out, sizeof(out), true, "completed", "completed", 4),
                        "\033[32mcompleted\033[0m");
}

/* A terminal of our own: the slave side of a pseudo-terminal. */
static int open_tty(int *master)
{
    *master = posix_openpt(O_RDWR | O_NOCTTY);
    if (*master < 0 || grantpt(*master) != 0 || unlockpt(*master) != 0)
        return -1;
    return open(ptsname(*master), O_RDWR | O_NOCTTY);
}

static void test_color_decision(void **state)
{
    enum cli_color_mode mode;
    int fds[2];
    int master = -1;
    (void)state;
    assert_true(cli_color_parse("auto", &mode) && mode == CLI_COLOR_AUTO);
    assert_true(cli_color_parse("always", &mode) && mode == CLI_COLOR_ALWAYS);
    assert_true(cli_color_parse("never", &mode) && mode == CLI_COLOR_NEVER);
    assert_false(cli_color_parse("yes", &mode));
    assert_false(cli_color_parse("", &mode));

    assert_int_equal(pipe(fds), 0);
    int tty = open_tty(&master);
    if (tty < 0)
        skip();
    unsetenv("NO_COLOR");
    setenv("TERM", "xterm", 1);
    assert_int_equal(cli_color_option("status", "auto"), -1);
    assert_true(cli_color_on(tty));
    assert_false(cli_color_on(fds[1])); /* piped */
    setenv("NO_COLOR", "", 1);          /* empty: not set */
    assert_true(cli_color_on(tty));
    setenv("NO_COLOR", "1", 1);
    assert_false(cli_color_on(tty));
    unsetenv("NO_COLOR");
    setenv("TERM", "dumb", 1);
    assert_false(cli_color_on(tty));
    /* Explicit beats the environment, and the stream. */
    setenv("NO_COLOR", "1", 1);
    assert_int_equal(cli_color_option(NULL, "always"), -1);
    assert_true(cli_color_on(fds[1]));
    assert_int_equal(cli_color_option("logs", "never"), -1);
    unsetenv("NO_COLOR");
    setenv("TERM", "xterm", 1);
    assert_false(cli_color_on(tty));
    /* A bad word is a usage error and changes nothing. */
    assert_int_equal(cli_color_option("status", "sometimes"), CLI_EXIT_USAGE);
    assert_false(cli_color_on(tty));
    assert_int_equal(cli_color_option(NULL, "auto"), -1);
    close(tty);
    close(master);
    close(fds[0]);
    close(fds[1]);
}

static void test_color_option_everywhere(void **state)
{
    static const struct cli_option opts[] = {
        {"json", 0, false, 1},
        {NULL, 0, false, 0},
    };
    char a0[] = "status", a1[] = "--color=always", a2[] = "r1", a3[] = "--json";
    char *argv[] = {a0, a1, a2, a3, NULL};
    struct cli_args a;
    int fds[2];
    (void)state;
    assert_int_equal(pipe(fds), 0);
    cli_args_init(&a, "status", 4, argv, opts);
    assert_int_equal(cli_next_opt(&a), 1); /* --json: --color was taken on the way */
    assert_int_equal(cli_next_opt(&a), 0);
    assert_int_equal(a.npos, 1);
    assert_string_equal(cli_pos(&a, 0), "r1");
    assert_true(cli_color_on(fds[1]));

    char b1[] = "--color", b2[] = "never";
    char *argv2[] = {a0, b1, b2, NULL};
    cli_args_init(&a, "status", 3, argv2, opts);
    assert_int_equal(cli_next_opt(&a), 0);
    assert_int_equal(a.npos, 0);
    assert_false(cli_color_on(fds[1]));

    char *argv3[] = {a0, b1, NULL}; /* no value */
    cli_args_init(&a, "status", 2, argv3, opts);
    assert_int_equal(cli_next_opt(&a), -1);
    char c1[] = "--color=rainbow";
    char *argv4[] = {a0, c1, NULL};
    cli_args_init(&a, "status", 2, argv4, opts);
    assert_int_equal(cli_next_opt(&a), -1);
    char d1[] = "--colors";
    char *argv5[] = {a0, d1, NULL}; /* not --color */
    cli_args_init(&a, "status", 2, argv5, opts);
    assert_int_equal(cli_next_opt(&a), -1);
    assert_int_equal(cli_color_option(NULL, "auto"), -1);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_item_and_label),
        cmocka_unit_test(test_color_words),
        cmocka_unit_test(test_color_decision),
        cmocka_unit_test(test_color_option_everywhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
