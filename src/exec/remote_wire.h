/* remote_wire.h -- the Redis layout and messages of the remote executor
 * (docs/internals/distribution.md): key names, the activation a runner
 * queues for a worker and the completion a worker sends back. Shared by the
 * runner (core/remote.c) and the worker (core/worker.c). Everything read
 * from Redis is checked here: a malformed message is an error with a
 * message naming the field, never a crash.
 */
#ifndef FLOW_EXEC_REMOTE_WIRE_H
#define FLOW_EXEC_REMOTE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "exec/cmd.h"
#include "flow.h"

#define FLOW__RW_VERSION "1"
#define FLOW__RW_GROUP "workers"
#define FLOW__RW_TTL_S (7 * 24 * 3600) /* per-run keys */

/* "PREFIX:KIND:NAME" (a new string; NULL: out of memory). Kinds: "q"
 * (a queue's stream), "done", "inflight", "cancel", "state" (per run),
 * "worker". */
char *flow__rw_key(const char *prefix, const char *kind, const char *name);

/* The fields of a stream entry, as found: [id, [k1, v1, k2, v2 ...]]. */
struct flow__rw_entry {
    const char *id;
    const redisReply *fields;
};
/* The value of field `name` (NUL-terminated by hiredis) or NULL. */
const char *flow__rw_field(const struct flow__rw_entry *e, const char *name);
/* Check the shape of an entry of an XREAD/XREADGROUP/XAUTOCLAIM reply. */
bool flow__rw_entry_of(const redisReply *r, struct flow__rw_entry *out);

/* (run, activation, attempt): what every message names. */
struct flow__rw_ident {
    const char *run;     /* points into the entry */
    uint32_t act;
    uint32_t attempt;
};
/* Read `run`, `act`, `attempt` (and check `v`); false with *why (static
 * text) when one is missing or malformed. */
bool flow__rw_ident(const struct flow__rw_entry *e, struct flow__rw_ident *out, const char **why);

/* The longest state version (`state_v`: the field of P:state:RUN that holds
 * the state an entry was rendered with), NUL included. */
#define FLOW__RW_STATE_V_MAX 64
/* Is `v` a state version: 1 to 63 of A-Za-z0-9 . _ - ? */
bool flow__rw_state_v_ok(const char *v);

/* A spec as JSON for the queue (argv or shell or fn, env, cwd, input, the
 * state version `state_v`, output mode...). NULL: out of memory. */
json_t *flow__rw_spec_encode(const struct flow__cmd_spec *spec, const char *fn,
                             const char *state_v);

/* A decoded spec: `spec` points into `owned` (argv, env, strings). */
struct flow__rw_task {
    struct flow__cmd_spec spec;
    const char *fn;      /* a C function task, or NULL */
    json_t *owned;       /* the parsed spec object */
    const char *state_v; /* the state version to read (borrowed from owned),
                          * or NULL when the spec carries the state itself */
    json_t *state;       /* the state the spec carries (an object, borrowed
                          * from owned; runners before state_v), or NULL;
                          * the worker points it at the state it read */
    const char **argv;
    const char **env;
};
/* Parse `text` (the `spec` field); false with *why (flow__free) naming the
 * field that is wrong. `t` is to be cleaned either way. */
bool flow__rw_spec_decode(const char *text, struct flow__rw_task *t, char **why);
void flow__rw_task_cleanup(struct flow__rw_task *t);

/* The state in `r`, the reply to HGET P:state:RUN STATE_V: a new reference
 * to an object; NULL with *why (flow__free; naming the run and the
 * version) when the field is missing, not a JSON object, or Redis answered
 * an error. */
json_t *flow__rw_state_decode(const redisReply *r, const char *run, const char *state_v,
                              char **why);

/* A result as JSON for the completion stream; `writes` (a C task's state
 * writes) may be NULL. NULL: out of memory. */
json_t *flow__rw_result_encode(const struct flow__cmd_result *res, json_t *writes);
/* Parse the `result` field into `res` (cleaned with
 * flow__cmd_result_cleanup) and *writes (new reference or NULL). */
bool flow__rw_result_decode(const char *text, struct flow__cmd_result *res, json_t **writes,
                            char **why);

/* "auto", "json", "text", "lines". */
const char *flow__rw_output_mode_name(flow_output_mode m);

#endif
