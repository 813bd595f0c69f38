/* tree.h -- everything a command task started ends with its attempt, also
 * what left the task's process group (`setsid cmd &`, a daemon's double
 * fork), and what it leaves behind is reaped.
 *
 * DESIGN
 * - The runner is a child subreaper (PR_SET_CHILD_SUBREAPER, set before its
 *   first command): an orphan anywhere below a task is re-parented to the
 *   runner -- to its main thread, the first live one -- not to init, so it
 *   can still be found (/proc/PID/task/TID/children) and killed.
 * - Each attempt's environment carries FLOW_CMD_TAG=<token>-<seq>: `token`
 *   is 64 random bits drawn once per runner process, `seq` numbers the
 *   attempts. Whatever the task starts inherits it, so an orphan tells
 *   whose it is (/proc/PID/environ), and the reaper finds a dead runner's
 *   processes by its token.
 * - flow__tree_signal() signals an attempt's processes: the leader's
 *   descendants and the orphans that carry the attempt's tag, with all of
 *   theirs. flow__tree_kill() does it with SIGKILL until nothing of the
 *   attempt is left (a process may fork meanwhile: its child is adopted
 *   with the tag and found on the next round), then reaps what was
 *   re-parented to us.
 * - Zombies: the runner's main thread may also have children of the host's
 *   own, which the host waits for; a sweep must not take those. So a zombie
 *   child is reaped only when it is known to be a command's: killed by us,
 *   seen alive with a tag (flow__tree_sweep remembers those), or in a
 *   command's process group -- or when the host said all orphans are ours
 *   (flow_set_reap_orphans, as the flow CLI does). Children libflow starts
 *   itself are listed with flow__tree_own and left to their owner.
 *
 * Limits: a process that clears its environment and leaves the task's
 * process group is found only while its ancestry leads to the task's
 * leader. One that leaves the group and exits before a sweep sees it stays a
 * zombie until the runner ends, unless all orphans are reaped.
 */
#ifndef FLOW_EXEC_TREE_H
#define FLOW_EXEC_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The name of the tag variable. */
#define FLOW__TREE_TAG_VAR "FLOW_CMD_TAG"

/* Make this process a child subreaper and draw its token, once.
 * Thread-safe. */
void flow__tree_prepare(void);

/* A new attempt: its sequence number, listed as live until
 * flow__tree_attempt_end(). Thread-safe. */
uint64_t flow__tree_attempt_begin(void);
void flow__tree_attempt_end(uint64_t seq);

/* "FLOW_CMD_TAG=<token>-<seq>" into `buf` (64 bytes are enough). */
void flow__tree_tag(uint64_t seq, char *buf, size_t cap);

/* "FLOW_CMD_TAG=<token>-": what every process of this runner carries in its
 * environment (after flow__tree_prepare()). */
const char *flow__tree_tag_prefix(void);

/* `pid` is a child of ours that sweeps must leave to its owner (who reaps
 * it), until disowned. Thread-safe. */
void flow__tree_own(pid_t pid);
void flow__tree_disown(pid_t pid);

/* Send `sig` to the processes of attempt `seq` with leader `leader` (0:
 * none any more). One pass. */
void flow__tree_signal(uint64_t seq, pid_t leader, int sig);

/* The attempt is over: SIGKILL its processes until none is left (bounded),
 * then reap those re-parented to us, and the zombies of process group
 * `group` (the attempt's; 0: none). Blocks about a second at most, for
 * processes slow to die. */
void flow__tree_kill(uint64_t seq, pid_t leader, pid_t group);

/* Reap the zombie children that are commands', remember the live orphans
 * with a tag, kill those whose attempt has ended. Returns how many children
 * not owned it saw (0: nothing to look at again). */
int flow__tree_sweep(void);

/* Does process `pid` carry `prefix` at the start of an environment entry?
 * 1 (and *seq, when not NULL, gets the decimal number after the prefix),
 * 0, or -1 when its environment cannot be read. Async-signal-safe. */
int flow__tree_environ_has(pid_t pid, const char *prefix, size_t len, uint64_t *seq);


#endif
