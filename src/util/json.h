/* json.h -- JSON helpers on top of jansson. */
#ifndef FLOW_UTIL_JSON_H
#define FLOW_UTIL_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

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

/* Is `s` (n bytes) one JSON value that json_loadb(JSON_DECODE_ANY) would
 * accept given the memory? Allocates nothing: told apart from a failed
 * parse, it says when jansson failed for lack of memory, which jansson does
 * not report reliably. */
bool flow__json_would_parse(const char *s, size_t n);

/* json_loadb(s, n, flags) telling why it failed: FLOW_EPARSE for text that
 * is not JSON, FLOW_ENOMEM for JSON that could not be read for lack of
 * memory. `err` (may be NULL) gets jansson's message. */
flow_err flow__json_load(const char *s, size_t n, size_t flags, json_t **out, json_error_t *err);

#endif
