/* json.c -- JSON helpers (see json.h). */
#include "compat.h"

#include "json.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "buf.h"
#include "clock.h"
#include "flow.h"

/* True when every real in `v` survives a round trip at 15 digits. */
static bool short_reals(const json_t *v, int depth)
{
    if (depth > 1000)
        return false;
    switch (json_typeof(v)) {
    case JSON_REAL: {
        char buf[40];
        double d = json_real_value(v);
        snprintf(buf, sizeof(buf), "%.15g", d);
        return strtod(buf, NULL) == d;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            if (!short_reals(x, depth + 1))
                return false;
        }
        return true;
    }
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            if (!short_reals(x, depth + 1))
                return false;
        }
        return true;
    }
    default:
        return true;
    }
}

size_t flow__json_real_flags(const json_t *v)
{
    return JSON_REAL_PRECISION(v && short_reals(v, 0) ? 15 : 17);
}

char *flow_json_dumps(const json_t *v, size_t flags)
{
    if (!v)
        return NULL;
    return json_dumps(v, flags | JSON_ENCODE_ANY | flow__json_real_flags(v));
}

json_t *flow__json_time(double epoch)
{
    char buf[40];
    /* 0 is "not yet"; a time no calendar can show (a damaged record) is
     * shown as unknown too */
    if (!(epoch > 0) || !flow__rfc3339(epoch, buf, sizeof(buf)))
        return json_null();
    return json_string(buf);
}

void flow__json_free_text(char *text)
{
    json_free_t free_fn = NULL;
    json_get_alloc_funcs(NULL, &free_fn);
    if (text)
        (free_fn ? free_fn : free)(text);
}

const char *flow__json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
    default:
        return "null";
    }
}

static int append_cb(const char *buffer, size_t size, void *data)
{
    return flow__buf_append(data, buffer, size) == FLOW_OK ? 0 : -1;
}

flow_err flow__json_append(struct flow__buf *b, const json_t *v, size_t flags)
{
    size_t before = b->len;
    flags |= JSON_ENCODE_ANY | flow__json_real_flags(v);
    if (json_dump_callback(v, append_cb, b, flags) != 0) {
        b->len = before;
        if (b->data)
            b->data[before] = '\0';
        return b->len + 1 >= b->max ? FLOW_ELIMIT : FLOW_ENOMEM;
    }
    return FLOW_OK;
}
