/* buf.c -- growable byte buffer with a cap (see buf.h). */
#include "compat.h"

#include "buf.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"

void flow__buf_init(struct flow__buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : FLOW__BUF_DEFAULT_MAX;
}

void flow__buf_cleanup(struct flow__buf *b)
{
    flow__free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void flow__buf_reset(struct flow__buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static flow_err reserve(struct flow__buf *b, size_t extra)
{
    if (extra > b->max - b->len)
        return FLOW_ELIMIT;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return FLOW_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = flow__realloc(b->data, cap);
    if (!p)
        return FLOW_ENOMEM;
    b->data = p;
    b->cap = cap;
    return FLOW_OK;
}

flow_err flow__buf_append(struct flow__buf *b, const void *data, size_t len)
{
    flow_err rc = reserve(b, len);
    if (rc)
        return rc;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return FLOW_OK;
}

flow_err flow__buf_appends(struct flow__buf *b, const char *s)
{
    return flow__buf_append(b, s, strlen(s));
}

flow_err flow__buf_appendc(struct flow__buf *b, char c)
{
    return flow__buf_append(b, &c, 1);
}

flow_err flow__buf_vprintf(struct flow__buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return FLOW_EINVAL;
    flow_err rc = reserve(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return FLOW_OK;
}

flow_err flow__buf_printf(struct flow__buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    flow_err rc = flow__buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *flow__buf_take(struct flow__buf *b)
{
    char *p = b->data;
    if (!p)
        p = flow__strdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

const char *flow__buf_str(const struct flow__buf *b)
{
    return b->data ? b->data : "";
}
