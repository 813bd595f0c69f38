/* schema.h -- the JSON Schema subset that guards a run's state (a flow's
 * `state_schema`, docs/file-format.md): type, properties, required, enum, minimum, maximum, items,
 * with draft-07 meaning. A schema is compiled once into a small immutable tree;
 * checking a value walks the tree, not the value, and allocates only the
 * message of a violation. */
#ifndef FLOW_DEF_SCHEMA_H
#define FLOW_DEF_SCHEMA_H

#include <jansson.h>

#include "flow.h"

/* A compiled schema: immutable once compiled, so any number of threads may
 * check against it at the same time. Owns copies of everything it needs; the
 * source schema may change or go away after compiling. */
struct flow__schema;

/* Compile `schema` (borrowed) into `*out` (the caller frees it with
 * flow__schema_free). Besides the seven keywords, `description`, `title`,
 * `default` and `$comment` are accepted and ignored; any other keyword is an
 * error, so that a typo never silently validates nothing. `type` is a string
 * or a non-empty list of strings; `true` and `false` are schemas too
 * (anything, nothing). Errors (FLOW_EINVAL) name the place and the problem:
 *   "state_schema: properties.confidence.minimum must be a number, not a string"
 *   "state_schema: unknown type 'float' at properties.x (use object, array,
 *    string, number, integer, boolean, null)"
 *   "state_schema: unsupported keyword 'pattern' at properties.x (supported:
 *    type, properties, required, enum, minimum, maximum, items)"
 * FLOW_ENOMEM when out of memory. On failure `*out` is NULL. */
flow_err flow__schema_compile(json_t *schema, struct flow__schema **out, flow_error *err);

/* Free a compiled schema; NULL is a no-op. No check may be running on it. */
void flow__schema_free(struct flow__schema *s);

/* Check `value` (the whole state object, borrowed) against `s`. Returns NULL
 * when it conforms, else a one-line message the caller frees with flow__free,
 * naming the key path and the rule:
 *   "state key 'confidence': 1.5 is above the maximum 1"
 *   "state key 'status': \"done\" is not one of \"pending\", \"processing\""
 *   "state key 'tags[2]': expected a string, got an integer"
 *   "state: required key 'draft' is missing"
 *   "state key 'user': required key 'name' is missing"
 * It stops at the first violation. The order is fixed: at each level type,
 * enum, minimum, maximum, required (in list order), properties (in schema
 * order), then items (by index). Long values and paths are cut short with
 * "...". Out of memory for the message itself gives "out of memory"
 * (flow__why: never NULL, which would say the value is valid; no other
 * allocation happens). Thread-safe (s is read only). */
char *flow__schema_check(const struct flow__schema *s, const json_t *value);

/* The same, restricted to the keys present in `changed` (an object of keys
 * just written; NULL or a non-object means none): the top level's type, enum,
 * minimum, maximum and `required` are checked against `state` as a whole, but
 * of its `properties` only those named in `changed` are, with their values
 * taken from `state` (which already holds the writes). */
char *flow__schema_check_keys(const struct flow__schema *s, const json_t *state,
                              const json_t *changed);

#endif
