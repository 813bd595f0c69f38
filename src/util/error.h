/* error.h -- filling flow_error and collecting diagnostics. */
#ifndef FLOW_UTIL_ERROR_H
#define FLOW_UTIL_ERROR_H

#include <stdarg.h>

#include "flow.h"

/* Fill `err` (may be NULL) and return `code`, so that callers can write
 * `return flow__error(err, FLOW_EINVAL, "bad %s", x);`. */
flow_err flow__error(flow_error *err, flow_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
flow_err flow__verror(flow_error *err, flow_err code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* The same with a position; `file` may be NULL. The message gets the
 * position appended as " (file:line:col)". */
flow_err flow__error_at(flow_error *err, flow_err code, const char *file, int line, int column,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void flow__error_clear(flow_error *err);
/* Convert errno at a syscall boundary: "what: strerror(errno)", with the code
 * ENOMEM, ENOTFOUND (ENOENT), EEXISTS, EINVAL or SYSTEM. */
flow_err flow__error_errno(flow_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* strerror_r's text for `errnum` in `buf`, starting lowercase as our
 * messages do ("no such file or directory"); returns `buf`. */
const char *flow__errtext(int errnum, char *buf, size_t cap);

/* Append a diagnostic (a copy of `e`); allocation failure is ignored. */
void flow__diags_add(flow_diags *d, const flow_error *e, flow_severity sev);

#endif
