/* color.h -- colour on a terminal, for every command of `flow`: status words
 * (completed green, failed and stopped red, running cyan, paused yellow,
 * cancelled and skipped dim) and the prefixes of errors and warnings.
 *
 * `--color auto|always|never` (global, or after any command) chooses; auto
 * colours a stream that is a terminal, unless $NO_COLOR is set and not empty
 * or $TERM is "dumb" (no-color.org: an explicit --color wins over NO_COLOR).
 * The mode is set while the arguments are parsed, before any thread starts. */
#ifndef FLOW_CLI_COLOR_H
#define FLOW_CLI_COLOR_H

#include "cli.h"

enum cli_color_mode { CLI_COLOR_AUTO = 0, CLI_COLOR_ALWAYS, CLI_COLOR_NEVER };

#define CLI_COLOR_RESET "\033[0m"

/* Parse "auto", "always" or "never"; false when `text` is none of them. */
bool cli_color_parse(const char *text, enum cli_color_mode *mode);

/* Parse `value` of the option `--color` of command `cmd` (NULL: the program)
 * and make it the mode. Returns -1, or CLI_EXIT_USAGE after printing why. */
int cli_color_option(const char *cmd, const char *value);

/* Does output to descriptor `fd` (STDOUT_FILENO, STDERR_FILENO) get colour,
 * given the mode, the environment and whether `fd` is a terminal? */
bool cli_color_on(int fd);

/* The SGR sequence for a status or event word ("completed", "failed",
 * "act_retrying", "error", ...), or "" for a word without a colour. */
const char *cli_color_code(const char *word);

/* `word` left-aligned in `width` columns (0: as is), between the colour of
 * `code_word` and a reset when `color`; the padding goes after the reset,
 * so columns stay aligned. Returns `out`. */
const char *cli_color_pad(char *out, size_t cap, bool color, const char *code_word,
                          const char *word, int width);

#endif
