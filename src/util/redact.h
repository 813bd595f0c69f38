/* redact.h -- secrets: values named by environment variables that must never
 * be written to a store nor printed. A set of them is immutable once made and
 * reference-counted (atomically), so that a run, its nested runs, the store
 * and the committer thread share it. Redaction replaces every occurrence of a
 * value (and of its JSON-escaped form) by "***" (docs/internals/core.md,
 * "Secrets").
 */
#ifndef FLOW_UTIL_REDACT_H
#define FLOW_UTIL_REDACT_H

#include <stdbool.h>
#include <stddef.h>

#include "flow.h"

/* What a value is replaced by. */
#define FLOW__REDACTED "***"
/* Values shorter than this many bytes are kept (tasks get them) but not
 * redacted: redacting every "a" would make every log unreadable. */
#define FLOW__REDACT_MIN 4

struct flow__secrets;

/* A set of the values of the environment variables `names` (count of them;
 * duplicates are taken once). With `need_all`, a name that is not set is
 * FLOW_ENOTFOUND with *missing pointing at it (borrowed from `names`), and a
 * value shorter than FLOW__REDACT_MIN is logged as a warning; without it,
 * names that are not set are left out. *out is NULL when there is no value
 * (no names): NULL is the empty set everywhere. FLOW_ENOMEM. */
flow_err flow__secrets_from_env(const char *const *names, size_t count, bool need_all,
                                struct flow__secrets **out, const char **missing);
/* The union of `a` and `b` (either may be NULL) as a new reference in *out:
 * `a` itself (referenced again) when `b` adds nothing. FLOW_ENOMEM leaves *out
 * NULL. */
flow_err flow__secrets_union(struct flow__secrets *a, struct flow__secrets *b,
                             struct flow__secrets **out);
/* Thread-safe; NULL is a no-op. */
struct flow__secrets *flow__secrets_ref(struct flow__secrets *s);
void flow__secrets_unref(struct flow__secrets *s);

/* The named values, in the order they were given (NULL: none). */
size_t flow__secrets_count(const struct flow__secrets *s);
const char *flow__secrets_name(const struct flow__secrets *s, size_t i);
/* The value of secret `name` (borrowed from `s`), or NULL. */
const char *flow__secrets_get(const struct flow__secrets *s, const char *name);
/* Is there anything to redact (a value of FLOW__REDACT_MIN bytes or more)? */
bool flow__secrets_redact_any(const struct flow__secrets *s);

/* Does `len` bytes at `text` hold a value? */
bool flow__redact_hits(const struct flow__secrets *s, const char *text, size_t len);
/* `len` bytes at `text` with every value replaced: *out is a new string
 * (NUL-terminated, flow__free; *out_len its length, may be NULL) or NULL when
 * nothing was replaced. FLOW_ENOMEM. */
flow_err flow__redact_text(const struct flow__secrets *s, const char *text, size_t len,
                           char **out, size_t *out_len);
/* A copy of `text` (may be NULL: gives NULL), redacted: a new string (flow__free), NULL
 * only when out of memory or `text` is NULL. */
char *flow__redact_dup(const struct flow__secrets *s, const char *text);
/* Does `v` (may be NULL) hold a value anywhere flow__redact_json looks? */
bool flow__redact_json_hits(const struct flow__secrets *s, const json_t *v);
/* `v` (may be NULL) with every value replaced in strings, object keys and the
 * text of numbers (a number that holds one becomes the string "***"): *out
 * is a new value sharing nothing with `v`, or NULL when nothing was
 * replaced. Only reads `v` (never counts a reference to it or its members),
 * so that a thread that does not own `v` may call it. FLOW_ENOMEM. */
flow_err flow__redact_json(const struct flow__secrets *s, const json_t *v, json_t **out);
/* The same, in place of *v: the value is swapped for its redacted copy (the
 * old reference dropped) when something was replaced. FLOW_ENOMEM leaves *v
 * as it was. */
flow_err flow__redact_json_swap(const struct flow__secrets *s, json_t **v);
/* The same for a string: *text (flow__malloc'ed, may be NULL) is swapped for its
 * redacted copy. */
flow_err flow__redact_str_swap(const struct flow__secrets *s, char **text);

#endif
