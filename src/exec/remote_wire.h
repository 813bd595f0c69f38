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
#include "util/redis.h"

#define FLOW__RW_VERSION "1"
#define FLOW__RW_GROUP "workers"
#define FLOW__RW_TTL_S (7 * 24 * 3600) /* per-run keys */

/* "PREFIX:KIND:NAME" (a new string; NULL: out of memory). Kinds: "q"
 * (a queue's stream), "done", "inflight", "cancel", "state" (per run),
 * "worker". */
char *flow__rw_key(const char *prefix, const char *kind, const char *name);

/* The stream of queue `queue` for activations of priority `priority`:
 * "PREFIX:q:QUEUE" for 0 (as before priorities had streams of their own),
 * "PREFIX:q:QUEUE@PRIORITY" else ('@' is not allowed in a queue's name, so
 * no queue's stream is another's level). A new string; NULL: out of memory. */
char *flow__rw_queue_key(const char *prefix, const char *queue, int priority);

/* The consumer of the group that holds the entries workers took and handed
 * back for want of resources (parked: pending, in id order, taken from
 * there by a worker that can start them). A blank in it: no worker's name. */
#define FLOW__RW_PARKED "parked (resources)"

/* The resources an entry asks (field `resources`): a JSON object of the
 * amounts that are not 0 ({"cpu": 2, "memory": 4294967296, "gpu": 1}), or,
 * `all`, of all three (a worker's capacity in its heartbeat). A new string
 * (flow__json_free_text); NULL: out of memory. */
char *flow__rw_resources_encode(const flow_resources *r, bool all);
/* Parse it into *out (zeros for what it does not name; NULL text: none
 * asked); false with *why (static text) when it is not such an object. */
bool flow__rw_resources_decode(const char *text, flow_resources *out, const char **why);

/* The live workers of the Redis at `a`, read over `c`, as the JSON array of
 * flow_workers_list: {name, host, pid, queues, running, done, started,
 * seen} and, from workers that declare them, `resources` (capacity) and
 * `in_use`. `prune`: forget (ZREM) the names whose heartbeat expired. */
flow_err flow__rw_workers_read(redisContext *c, const struct flow__redis_addr *a, bool prune,
                               json_t **out, flow_error *err);

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
    uint32_t round;      /* the same attempt run again after an answer to a
                          * feedback request: 0, 1, ... (field `round`,
                          * absent for 0) */
};
/* Read `run`, `act`, `attempt`, `round` (and check `v`); false with *why
 * (static text) when one is missing or malformed. */
bool flow__rw_ident(const struct flow__rw_entry *e, struct flow__rw_ident *out, const char **why);
/* The field of P:cancel:RUN and the value of P:inflight:RUN that name one
 * submission: "ACT:ATTEMPT" / "ATTEMPT", with ".ROUND" after a round 0. */
void flow__rw_cancel_field(char *buf, size_t size, uint32_t act, uint32_t attempt, uint32_t round);
void flow__rw_inflight_value(char *buf, size_t size, uint32_t attempt, uint32_t round);

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
    json_t *answers;     /* borrowed: request id -> answer, the answered
                          * feedback requests of the activation, or NULL */
    json_t *item;        /* borrowed: a foreach element, or NULL */
    long index;          /* its position, or -1 */
    const char **argv;
    const char **env;
    const char **secrets; /* the names of the run's secrets (field `secrets`,
                           * borrowed from owned; NULL-terminated), or NULL */
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

struct flow__secrets;
/* A remote task's env item `kv` ("NAME=VALUE") with each "{{ secrets.S }}"
 * the runner left in it, for S one of `names` (NULL-terminated, may be
 * NULL), replaced by the worker's value of S (`values`): *out is a new
 * string (flow__free), or NULL when there was none to fill in. False with
 * *why (flow__free) when S is not set in `values`, or out of memory. */
bool flow__rw_fill_secrets(const char *kv, const char *const *names,
                           const struct flow__secrets *values, char **out, char **why);

/* What a C function's completion carries besides a command's result. */
struct flow__rw_extra {
    json_t *writes;   /* its state writes (an object), or NULL */
    json_t *events;   /* what it emitted, in order: [{event, data}...], or NULL */
    json_t *waiting;  /* the feedback request it ended waiting for (id, type,
                       * message, options, timeout, default, channel_key),
                       * or NULL */
};
void flow__rw_extra_cleanup(struct flow__rw_extra *x);
/* A result as JSON for the completion stream; `x` may be NULL. NULL: out
 * of memory. */
json_t *flow__rw_result_encode(const struct flow__cmd_result *res, const struct flow__rw_extra *x);
/* Parse the `result` field into `res` (cleaned with
 * flow__cmd_result_cleanup) and `x` (new references or NULL; cleaned with
 * flow__rw_extra_cleanup). */
bool flow__rw_result_decode(const char *text, struct flow__cmd_result *res,
                            struct flow__rw_extra *x, char **why);

/* An event a C function emitted while it runs, streamed to P:done:RUN
 * before its completion (field `event`): {"seq": N, "event": NAME,
 * "data": ...}, seq counting from 0 within one round of an attempt. The
 * text is freed with flow__json_free_text; NULL: out of memory. */
char *flow__rw_event_encode(uint32_t seq, const char *event, json_t *data);
/* Parse it: *name borrowed from *owned, *data borrowed (never NULL). */
bool flow__rw_event_decode(const char *text, uint32_t *seq, const char **name, json_t **data,
                           json_t **owned, char **why);

/* "auto", "json", "text", "lines". */
const char *flow__rw_output_mode_name(flow_output_mode m);

#endif
