/* json.h -- JSON helpers on top of jansson. */
#ifndef FLOW_UTIL_JSON_H
#define FLOW_UTIL_JSON_H

#include <jansson.h>

#include "buf.h"

/* The jansson flags that write every real of `v` in the fewest digits that
 * read back to the same double (15 when that is enough, else 17), so that
 * 0.92 stays "0.92" and nothing is lost. */
size_t flow__json_real_flags(const json_t *v);

/* "an object", "a list", "a string", "an integer", "a number", "a boolean",
 * "null": for messages. */
/* An RFC 3339 time string for `epoch` seconds, or null for 0 or less and
 * for a time that cannot be shown (flow__time_is_valid); a new reference,
 * NULL when out of memory. */
json_t *flow__json_time(double epoch);

/* Free text that jansson allocated (json_dumps), with jansson's allocator. */
void flow__json_free_text(char *text);

const char *flow__json_type_name(const json_t *v);

/* Append `v` as JSON text (any value; shortest exact reals) to `b`. On
 * failure `b` is as it was. */
flow_err flow__json_append(struct flow__buf *b, const json_t *v, size_t flags);

#endif
