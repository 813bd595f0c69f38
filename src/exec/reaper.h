/* reaper.h -- command tasks die with the process that runs them, whole
 * process groups included (docs/file-format.md). PR_SET_PDEATHSIG reaches only a
 * command's first process; what it started (a shell's children) would live
 * on as orphans and race the resumed run. So the first command spawned in a
 * process also forks one small reaper process, which holds the other end of
 * a socket and shares a table with the runner: the runner lists each
 * command's process group there as it starts and removes it once reaped;
 * when the socket reaches end of file -- the runner died, even by SIGKILL --
 * the reaper kills every group still listed, then goes away.
 *
 * The reaper runs only async-signal-safe code (a fork of a threaded
 * process): read, kill, close, execve. It leaves the runner's process group
 * (Ctrl-C does not reach it) and every descriptor but its socket, so that a
 * pipe reading the runner's output still ends when the runner does. */
#ifndef FLOW_EXEC_REAPER_H
#define FLOW_EXEC_REAPER_H

#include <sys/types.h>

/* Tell the reaper that process group `pgid` belongs to a running command
 * (starting the reaper on first use). Best effort: a reaper that cannot
 * start is logged once, and commands then die with the runner as far as
 * PR_SET_PDEATHSIG reaches. Thread-safe. */
void flow__reaper_add(pid_t pgid);
/* The group `pgid` is gone (killed and its leader reaped). Thread-safe. */
void flow__reaper_del(pid_t pgid);
/* Start the reaper now rather than at the first command (its socket is then
 * open from here on: tests that count descriptors call this first). */
void flow__reaper_prepare(void);

#endif
