/* each.h -- `flow run FILE --inputs-each FILE.jsonl`: one run of the flow per
 * line of a JSON Lines file, all at once on one engine (CrewAI's
 * kickoff_for_each), each an ordinary run of the store. */
#ifndef FLOW_CLI_EACH_H
#define FLOW_CLI_EACH_H

#include "cli.h"
#include "follow.h"

struct cli_each;

/* Read the lines of `path`: each non-blank line is a JSON object, the inputs
 * of one run, over `base` (the --inputs files and --input options: the
 * line's keys win). A line that is not one is reported now, in gcc's form
 * ("FILE:LINE:COL: error: ..."), and will not run. Returns the batch, or NULL
 * with *status set after printing why (the file cannot be read, or it has no
 * line at all: a usage error). */
struct cli_each *cli_each_read(const char *path, const json_t *base, int *status);
void cli_each_free(struct cli_each *b);

/* Start a run of `f` for every good line of `b` on the session's engine, with
 * `proto` as every run's options (inputs are the line's), and follow them all
 * to their ends: a summary line per run on stderr as it ends, the results on
 * stdout in line order (s->json: one {line, id, status, result, error}
 * object per line), SIGINT/SIGTERM interrupt them all. Returns the worst exit
 * status: 130 interrupted > 2 a line did not run > 1 failed > 4 cancelled >
 * 3 paused > 0 completed. */
int cli_each_follow(struct cli_each *b, struct cli_session *s, flow *f,
                    const flow_run_options *proto);

#endif
