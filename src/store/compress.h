/* compress.h -- large payloads kept deflated in every store
 * (docs/internals/store.md, "Compression").
 *
 * The backends turn JSON values into bytes themselves (a record's payload,
 * a run's inputs); they do it through flow__payload_append and read the
 * bytes back through flow__payload_load (or record.h's
 * flow__payload_parse, which comes here), so this is the one place where a
 * payload is deflated or inflated, below the store vtable: every reader of
 * a store -- status, journals, the API and its event streams, replay,
 * retry, the runners of remote workers -- gets the same JSON values as
 * before, and data written before compression existed reads as it did.
 *
 * Format: a payload whose compact JSON text is longer than the threshold
 * (FLOW__Z_THRESHOLD unless FLOW_STORE_COMPRESS turns it off) is kept as
 *   '\0' 'z' LEN(u32 LE) ZLIB
 * -- a NUL, which no JSON text starts with; the method, 'z' for a zlib
 * stream (RFC 1950, whose Adler-32 catches damage); the length of the
 * text; then the stream -- provided that is at least an eighth shorter
 * than the text. Anything else is the JSON text itself.
 */
#ifndef FLOW_STORE_COMPRESS_H
#define FLOW_STORE_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "flow.h"
#include "util/buf.h"

#define FLOW__Z_HEADER 6 /* '\0', the method, the text's length */
#define FLOW__Z_METHOD_ZLIB 'z'
/* Payloads whose text is longer are deflated. Below it the saving is a few
 * KiB at most, and a SQLite row still fits its 4 KiB page (measured:
 * bench/compress.sh). */
#define FLOW__Z_THRESHOLD 4096

/* The threshold in force: FLOW__Z_THRESHOLD, or 0 (never deflate) when the
 * environment has FLOW_STORE_COMPRESS=0 (read once). Thread-safe. */
size_t flow__z_threshold(void);
/* Set it for this process (0: off); for tests and measurements. */
void flow__z_set_threshold(size_t bytes);

/* Are these bytes a payload kept deflated (of any method)? */
static inline bool flow__z_is(const char *data, size_t len)
{
    return len > 0 && data[0] == '\0';
}

/* Append `v` to `b` as the stores keep it: its compact JSON text, deflated
 * when over the threshold and worth it. *packed (may be NULL) says whether
 * it was deflated. FLOW_ENOMEM, FLOW_ELIMIT (past b's cap); on failure `b`
 * is as it was. */
flow_err flow__payload_append(struct flow__buf *b, const json_t *v, bool *packed);

/* Deflate b->data[from, b->len) -- JSON text just appended -- in place
 * when it is over the threshold and that makes it at least an eighth
 * shorter; else leave it. FLOW_ENOMEM (then `b` is unchanged). */
flow_err flow__z_pack(struct flow__buf *b, size_t from, bool *packed);

/* The value of a payload as a store keeps it (JSON text, or deflated) as a
 * new reference in *out. FLOW_EPARSE: not JSON; FLOW_EIO: damaged deflated
 * bytes; FLOW_EUNSUPPORTED: deflated by a method this libflow does not
 * know; FLOW_ENOMEM. */
flow_err flow__payload_load(const char *data, size_t len, json_t **out);

/* What went wrong, for a message, after flow__payload_load or
 * flow__payload_parse failed with `rc` on this thread: "bad JSON",
 * "damaged compressed payload (incorrect data check)", ... */
const char *flow__payload_why(flow_err rc);

/* Is v's compact JSON text surely longer than the threshold? A lower
 * bound that stops as soon as it gets there, so a small value costs a
 * few steps: the memory store asks before it writes a value out. */
bool flow__payload_big(const json_t *v);

/* Base64 (RFC 4648, padded), for deflated bytes in a JSON document (the
 * disk store's meta.json). The encoding is a new NUL-terminated string
 * (flow__free), NULL when out of memory; decoding gives new bytes
 * (flow__free) in *out: FLOW_EPARSE for text that is not base64. */
char *flow__b64_encode(const char *data, size_t len);
flow_err flow__b64_decode(const char *text, size_t len, char **out, size_t *out_len);

#endif
