/* progress.h -- live progress of `flow run` on stderr: a one-line bar redrawn in
 * place on a terminal, else one timestamped line per task event.
 *
 * DESIGN: the engine calls progress_on_event() on its scheduler thread, which must
 * not block: the observer only updates counters and the running set and appends
 * formatted lines to a queue, under a mutex held for a few microseconds. The main
 * thread calls progress_tick() (about 20 times a second) to write the queued lines
 * and redraw the bar; all terminal output happens there, outside the lock. */
#ifndef FLOW_CLI_PROGRESS_H
#define FLOW_CLI_PROGRESS_H

#include "cli.h"

struct progress;

/* `tty`: draw the bar (stderr is a terminal); else print one line per event.
 * `task_count`: the flow's number of tasks, the first estimate of the total. */
struct progress *progress_new(bool tty, size_t task_count);
void progress_free(struct progress *p);

/* A flow_event_fn; `udata` is the struct progress. Thread-safe, never blocks on I/O. */
void progress_on_event(const flow_event *ev, void *udata);
/* A flow_log_fn; `udata` is the struct progress. Thread-safe. */
void progress_on_log(flow_log_level level, const char *message, void *udata);

/* cli_now() of the last task event (of progress_new when none came yet).
 * Thread-safe. */
double progress_last_event(struct progress *p);
/* Print `line` (without its newline) above the bar, at the next tick.
 * Thread-safe. */
void progress_print(struct progress *p, const char *line);

/* Main thread: print the queued lines and redraw the bar if anything changed. */
void progress_tick(struct progress *p);
/* Main thread: print what is queued and erase the bar, for the summary to follow. */
void progress_finish(struct progress *p);

/* Copy `s` into `out` (capacity `cap` > 0) as one line: line breaks become " | ",
 * other control characters spaces, trailing blanks dropped. Returns `out`. */
char *progress_one_line(char *out, size_t cap, const char *s);

#endif
