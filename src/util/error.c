/* error.c -- error codes, messages and diagnostics lists. */
#include "compat.h"

#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "vec.h"

static const char *const err_messages[] = {
#define X(name, msg) msg,
    FLOW_ERR_MAP(X)
#undef X
};

static const char *const err_names[] = {
#define X(name, msg) #name,
    FLOW_ERR_MAP(X)
#undef X
};

const char *flow_strerror(flow_err code)
{
    if ((unsigned)code >= FLOW__ARRAY_LEN(err_messages))
        return "unknown error";
    return err_messages[code];
}

const char *flow_err_name(flow_err code)
{
    if ((unsigned)code >= FLOW__ARRAY_LEN(err_names))
        return "UNKNOWN";
    return err_names[code];
}

const char *flow_version(void)
{
    return FLOW_VERSION_STRING;
}

void flow__error_clear(flow_error *err)
{
    if (!err)
        return;
    err->code = FLOW_OK;
    err->message[0] = '\0';
    err->file[0] = '\0';
    err->line = err->column = 0;
}

/* A message is one line whatever it quotes (a key or a file name with a
 * newline in it, issue #9): control characters are written as escapes. */
static void one_line(char *msg, size_t cap)
{
    size_t i = 0;
    while (msg[i] && (unsigned char)msg[i] >= 0x20)
        i++;
    if (!msg[i])
        return;
    static const char hex[] = "0123456789abcdef";
    char out[sizeof(((flow_error *)0)->message)];
    size_t o = 0;
    for (i = 0; msg[i]; i++) {
        unsigned char c = (unsigned char)msg[i];
        char esc[5] = {(char)c, '\0', '\0', '\0', '\0'};
        if (c < 0x20) {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : 'x';
            if (esc[1] == 'x') {
                esc[2] = hex[c >> 4];
                esc[3] = hex[c & 15];
            }
        }
        size_t len = strlen(esc);
        if (o + len >= sizeof(out))
            break;
        memcpy(out + o, esc, len);
        o += len;
    }
    out[o] = '\0';
    snprintf(msg, cap, "%s", out);
}

flow_err flow__verror(flow_error *err, flow_err code, const char *fmt, va_list ap)
{
    if (!err)
        return code;
    flow__error_clear(err);
    err->code = code;
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    one_line(err->message, sizeof(err->message));
    return code;
}

flow_err flow__error(flow_error *err, flow_err code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    flow__verror(err, code, fmt, ap);
    va_end(ap);
    return code;
}

flow_err flow__error_at(flow_error *err, flow_err code, const char *file, int line, int column,
                        const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    flow__verror(err, code, fmt, ap);
    va_end(ap);
    if (file)
        snprintf(err->file, sizeof(err->file), "%s", file);
    err->line = line;
    err->column = column;
    size_t n = strlen(err->message);
    if (file && line > 0)
        snprintf(err->message + n, sizeof(err->message) - n, " (%s:%d:%d)", file, line, column);
    else if (file)
        snprintf(err->message + n, sizeof(err->message) - n, " (%s)", file);
    one_line(err->message, sizeof(err->message));
    return code;
}

/* The flow_err for an errno: the few a caller can act on, else SYSTEM. */
static flow_err errno_code(int errnum)
{
    switch (errnum) {
    case ENOMEM:
        return FLOW_ENOMEM;
    case ENOENT:
        return FLOW_ENOTFOUND;
    case EEXIST:
        return FLOW_EEXISTS;
    case EINVAL:
        return FLOW_EINVAL;
    case EIO:
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
    case EROFS:
        return FLOW_EIO;
    default:
        return FLOW_ESYSTEM;
    }
}

flow_err flow__error_errno(flow_error *err, int errnum, const char *fmt, ...)
{
    flow_err code = errno_code(errnum);
    if (!err)
        return code;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    char buf[128];
    /* GNU strerror_r: thread-safe, may return a static string or buf. */
    const char *text = strerror_r(errnum, buf, sizeof(buf));
    return flow__error(err, code, "%s: %s", what, text);
}

const char *flow__errtext(int errnum, char *buf, size_t cap)
{
    const char *s = strerror_r(errnum, buf, cap);
    if (s != buf)
        snprintf(buf, cap, "%s", s);
    if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
        buf[0] = (char)(buf[0] - 'A' + 'a');
    return buf;
}

struct diag {
    flow_error e;
    flow_severity sev;
};

struct flow_diags {
    FLOW__VEC(struct diag) items;
    size_t errors;
};

flow_diags *flow_diags_new(void)
{
    return flow__calloc(1, sizeof(flow_diags));
}

void flow_diags_free(flow_diags *d)
{
    if (!d)
        return;
    FLOW__VEC_FREE(&d->items);
    flow__free(d);
}

size_t flow_diags_count(const flow_diags *d)
{
    return d ? d->items.count : 0;
}

size_t flow_diags_error_count(const flow_diags *d)
{
    return d ? d->errors : 0;
}

const flow_error *flow_diags_get(const flow_diags *d, size_t i, flow_severity *severity)
{
    if (!d || i >= d->items.count)
        return NULL;
    if (severity)
        *severity = d->items.items[i].sev;
    return &d->items.items[i].e;
}

void flow__diags_add(flow_diags *d, const flow_error *e, flow_severity sev)
{
    if (!d || !e)
        return;
    flow_err rc = FLOW_OK;
    struct diag item = {.e = *e, .sev = sev};
    FLOW__VEC_PUSH(&d->items, item, rc);
    if (rc == FLOW_OK && sev == FLOW_SEV_ERROR)
        d->errors++;
}
