/* buf.h -- a growable byte buffer with a size cap (like curl's dynbuf):
 * appending past the cap fails with FLOW_ELIMIT instead of growing forever. */
#ifndef FLOW_UTIL_BUF_H
#define FLOW_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "flow.h"

struct flow__buf {
    char *data;  /* NUL-terminated when non-NULL */
    size_t len;  /* bytes used, without the NUL */
    size_t cap;  /* bytes allocated */
    size_t max;  /* largest len allowed */
};

#define FLOW__BUF_DEFAULT_MAX ((size_t)1 << 30)

void flow__buf_init(struct flow__buf *b, size_t max);
void flow__buf_cleanup(struct flow__buf *b);
void flow__buf_reset(struct flow__buf *b);
flow_err flow__buf_append(struct flow__buf *b, const void *data, size_t len);
flow_err flow__buf_appends(struct flow__buf *b, const char *s);
flow_err flow__buf_appendc(struct flow__buf *b, char c);
flow_err flow__buf_printf(struct flow__buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
flow_err flow__buf_vprintf(struct flow__buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Hand the contents to the caller (flow__free them) and reset the buffer. */
char *flow__buf_take(struct flow__buf *b);
/* The contents, "" when empty; borrowed until the next change. */
const char *flow__buf_str(const struct flow__buf *b);

#endif
