/* rundir.h -- a run's private directory for its commands' files
 * (FLOW_INPUT, FLOW_OUTPUT, FLOW_CONTROL, FLOW_STATE), and the state files
 * shared by the commands that start while one version of the state is
 * current: written once per version, removed when no running command uses
 * them any more.
 *
 * Files are written by whoever spawns a command, without the engine lock
 * (no disk I/O under it); releases come from the scheduler, under it. The
 * workdir's own mutex orders the two (lock order: engine.lock, then this).
 * A spawn in progress holds a reference, so the directory outlives it even
 * if its run is freed meanwhile.
 */
#ifndef FLOW_EXEC_RUNDIR_H
#define FLOW_EXEC_RUNDIR_H

#include <stdint.h>

#include "flow.h"

struct flow__rundir;

/* A work directory for run `run_id`: `dir` when given (it exists and stays),
 * else a new private one (exec/workdir.h: locked while in use, swept when
 * its runner died), made on first use and removed with everything in it by
 * the last unref. NULL when out of memory. */
struct flow__rundir *flow__rundir_new(const char *run_id, const char *dir);
void flow__rundir_ref(struct flow__rundir *w);
void flow__rundir_unref(struct flow__rundir *w);

/* The directory, made on first use; NULL and *error (flow__free) on failure. */
const char *flow__rundir_path(struct flow__rundir *w, char **error);

/* The private directory once made (its descriptor for files relative to it),
 * or NULL for a directory the caller named. */
struct flow__workdir;
const struct flow__workdir *flow__rundir_workdir(struct flow__rundir *w);

/* The path of a file holding `state` (version `version`), written on the
 * first call for that version; the caller holds it until
 * flow__rundir_state_release. NULL and *error on failure (nothing held). */
const char *flow__rundir_state(struct flow__rundir *w, uint64_t version, json_t *state,
                                char **error);
void flow__rundir_state_release(struct flow__rundir *w, uint64_t version);

#endif
