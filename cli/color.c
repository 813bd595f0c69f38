/* color.c -- colour on a terminal (color.h): the mode, the decision for a
 * stream, and the colour of each status word. */
#include "color.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Written only while the arguments are parsed, before any thread starts. */
static enum cli_color_mode color_mode = CLI_COLOR_AUTO;

bool cli_color_parse(const char *text, enum cli_color_mode *mode)
{
    static const char *const names[] = {"auto", "always", "never"};
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(text, names[i]) == 0) {
            *mode = (enum cli_color_mode)i;
            return true;
        }
    }
    return false;
}

int cli_color_option(const char *cmd, const char *value)
{
    enum cli_color_mode mode;

    if (!cli_color_parse(value, &mode)) {
        if (cmd) {
            return cli_usage_error(cmd, "option '--color' of '%s' needs auto, always or never, "
                                        "not '%s'",
                                   cmd, value);
        }
        return cli_usage_error(NULL, "option '--color' needs auto, always or never, not '%s'",
                               value);
    }
    color_mode = mode;
    return -1;
}

bool cli_color_on(int fd)
{
    const char *no_color;
    const char *term;

    if (color_mode != CLI_COLOR_AUTO) {
        return color_mode == CLI_COLOR_ALWAYS;
    }
    no_color = getenv("NO_COLOR");
    term = getenv("TERM");
    if ((no_color && *no_color) || (term && strcmp(term, "dumb") == 0)) {
        return false;
    }
    return isatty(fd) == 1;
}

#define GREEN "\033[32m"
#define RED "\033[31m"
#define BOLD_RED "\033[1;31m"
#define CYAN "\033[36m"
#define YELLOW "\033[33m"
#define BOLD_MAGENTA "\033[1;35m"
#define DIM "\033[2m"

const char *cli_color_code(const char *word)
{
    static const struct {
        const char *word;
        const char *code;
    } colors[] = {
        {"completed", GREEN}, {"failed", RED},         {"stopped", RED},
        {"running", CYAN},    {"started", CYAN},       {"paused", YELLOW},
        {"retrying", YELLOW}, {"waiting", YELLOW},     {"interrupted", YELLOW},
        {"cancelled", DIM},   {"skipped", DIM},        {"error", BOLD_RED},
        {"warning", BOLD_MAGENTA},
    };
    size_t i;

    if (!word) {
        return "";
    }
    /* Journal record types say it after their first word: act_failed. */
    if (strncmp(word, "act_", 4) == 0) {
        word += 4;
    }
    for (i = 0; i < sizeof(colors) / sizeof(colors[0]); i++) {
        if (strcmp(word, colors[i].word) == 0) {
            return colors[i].code;
        }
    }
    return "";
}

const char *cli_color_pad(char *out, size_t cap, bool color, const char *code_word,
                          const char *word, int width)
{
    const char *code = color ? cli_color_code(code_word) : "";
    int len = (int)strlen(word);

    snprintf(out, cap, "%s%s%s%*s", code, word, code[0] ? CLI_COLOR_RESET : "",
             width > len ? width - len : 0, "");
    return out;
}
