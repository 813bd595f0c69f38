/* json.c -- JSON helpers (see json.h). */
#include "compat.h"

#include "json.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- a syntax check that allocates nothing (flow__json_would_parse) ------ */

#define MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

struct jscan {
    const unsigned char *p, *end;
    int depth;
};

static void skip_ws(struct jscan *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* One UTF-8 sequence at c->p (a lead byte >= 0x80), as jansson checks it. */
static bool scan_utf8(struct jscan *c)
{
    unsigned char b = *c->p;
    int extra = b >= 0xf0 && b <= 0xf4   ? 3
                : b >= 0xe0 && b <= 0xef ? 2
                : b >= 0xc2 && b <= 0xdf ? 1
                                         : -1;
    if (extra < 0 || c->end - c->p <= extra)
        return false;
    uint32_t cp = b & (0x3f >> extra);
    for (int i = 1; i <= extra; i++) {
        if ((c->p[i] & 0xc0) != 0x80)
            return false;
        cp = cp << 6 | (c->p[i] & 0x3f);
    }
    if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return false;
    c->p += extra + 1;
    return true;
}

static bool scan_u4(struct jscan *c, uint32_t *out)
{
    if (c->end - c->p < 4)
        return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(c->p[i]);
        if (h < 0)
            return false;
        v = v << 4 | (uint32_t)h;
    }
    c->p += 4;
    *out = v;
    return true;
}

static bool scan_string(struct jscan *c)
{
    c->p++; /* the opening quote */
    while (c->p < c->end) {
        unsigned char ch = *c->p;
        if (ch == '"') {
            c->p++;
            return true;
        }
        if (ch < 0x20)
            return false;
        if (ch >= 0x80) {
            if (!scan_utf8(c))
                return false;
            continue;
        }
        c->p++;
        if (ch != '\\')
            continue;
        if (c->p >= c->end)
            return false;
        ch = *c->p++;
        if (ch != 'u') {
            if (!ch || !strchr("\"\\/bfnrt", ch))
                return false;
            continue;
        }
        uint32_t u;
        if (!scan_u4(c, &u) || u == 0) /* \u0000: jansson refuses NUL by default */
            return false;
        if (u >= 0xdc00 && u <= 0xdfff)
            return false;
        if (u >= 0xd800 && u <= 0xdbff) {
            uint32_t lo;
            if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u')
                return false;
            c->p += 2;
            if (!scan_u4(c, &lo) || lo < 0xdc00 || lo > 0xdfff)
                return false;
        }
    }
    return false;
}

/* Does the JSON real in [p, end) overflow a double? Judged on its first 40
 * significant digits and its decimal exponent, so that a real of any length
 * is judged without allocating (digits past the 40th cannot make a finite
 * value overflow, short of the boundary itself). */
static bool real_overflows(const unsigned char *p, const unsigned char *end)
{
    char digits[48];
    size_t nd = 0;
    long point = 0; /* where the decimal point falls among the significant digits */
    bool seen_point = false, significant = false;
    if (*p == '-')
        p++;
    for (; p < end && (isdigit(*p) || *p == '.'); p++) {
        if (*p == '.') {
            seen_point = true;
            continue;
        }
        if (*p == '0' && !significant) {
            if (seen_point)
                point--;
            continue;
        }
        significant = true;
        if (!seen_point)
            point++;
        if (nd < 40)
            digits[nd++] = (char)*p;
    }
    if (!nd)
        return false; /* zero */
    long e = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        bool neg = p < end && *p == '-';
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        for (; p < end && isdigit(*p); p++)
            e = e < 100000 ? e * 10 + (*p - '0') : e;
        e = neg ? -e : e;
    }
    long exp10 = point + e; /* value = 0.DIGITS x 10^exp10 */
    if (exp10 > 400)
        return true;
    if (exp10 < -400)
        return false;
    char buf[80];
    snprintf(buf, sizeof(buf), "0.%.*se%ld", (int)nd, digits, exp10);
    errno = 0;
    double d = strtod(buf, NULL);
    return errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL);
}

static bool scan_number(struct jscan *c)
{
    const unsigned char *start = c->p;
    bool real = false;
    if (*c->p == '-')
        c->p++;
    if (c->p >= c->end || !isdigit(*c->p))
        return false;
    if (*c->p == '0')
        c->p++;
    else
        while (c->p < c->end && isdigit(*c->p))
            c->p++;
    if (c->p < c->end && *c->p == '.') {
        real = true;
        c->p++;
        if (c->p >= c->end || !isdigit(*c->p))
            return false;
        while (c->p < c->end && isdigit(*c->p))
            c->p++;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        real = true;
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (c->p >= c->end || !isdigit(*c->p))
            return false;
        while (c->p < c->end && isdigit(*c->p))
            c->p++;
    }
    /* jansson refuses integers beyond json_int_t and reals that overflow */
    size_t len = (size_t)(c->p - start);
    if (!real) {
        char buf[32];
        if (len >= sizeof(buf))
            return false; /* over 30 digits: beyond any json_int_t */
        memcpy(buf, start, len);
        buf[len] = '\0';
        errno = 0;
        (void)strtoll(buf, NULL, 10);
        return errno != ERANGE;
    }
    return !real_overflows(start, c->p);
}

static bool scan_value(struct jscan *c);

/* jansson drops a NUL byte right after a number or a literal (its lexer
 * cannot put a NUL back after looking at it): so does this check. */
static bool skip_nul(struct jscan *c)
{
    if (c->p < c->end && *c->p == '\0')
        c->p++;
    return true;
}

static bool scan_container(struct jscan *c, unsigned char close)
{
    if (++c->depth > MAX_DEPTH)
        return false;
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        c->depth--;
        return true;
    }
    for (;;) {
        skip_ws(c);
        if (close == '}') {
            if (c->p >= c->end || *c->p != '"' || !scan_string(c))
                return false;
            skip_ws(c);
            if (c->p >= c->end || *c->p++ != ':')
                return false;
        }
        if (!scan_value(c))
            return false;
        skip_ws(c);
        if (c->p >= c->end)
            return false;
        unsigned char ch = *c->p++;
        if (ch == close) {
            c->depth--;
            return true;
        }
        if (ch != ',')
            return false;
    }
}

static bool scan_word(struct jscan *c, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0)
        return false;
    c->p += n;
    return true;
}

static bool scan_value(struct jscan *c)
{
    skip_ws(c);
    if (c->p >= c->end)
        return false;
    switch (*c->p) {
    case '{':
        return scan_container(c, '}');
    case '[':
        return scan_container(c, ']');
    case '"':
        return scan_string(c);
    case 't':
        return scan_word(c, "true") && skip_nul(c);
    case 'f':
        return scan_word(c, "false") && skip_nul(c);
    case 'n':
        return scan_word(c, "null") && skip_nul(c);
    default:
        return scan_number(c) && skip_nul(c);
    }
}

flow_err flow__json_load(const char *s, size_t n, size_t flags, json_t **out, json_error_t *err)
{
    json_error_t mine;
    *out = json_loadb(s, n, flags, err ? err : &mine);
    if (*out)
        return FLOW_OK;
    struct jscan c = {(const unsigned char *)s, (const unsigned char *)s + n, 0};
    skip_ws(&c);
    bool container = c.p < c.end && (*c.p == '{' || *c.p == '[');
    return (container || flags & JSON_DECODE_ANY) && flow__json_would_parse(s, n) ? FLOW_ENOMEM
                                                                                : FLOW_EPARSE;
}

bool flow__json_would_parse(const char *s, size_t n)
{
    struct jscan c = {(const unsigned char *)s, (const unsigned char *)s + n, 0};
    if (!scan_value(&c))
        return false;
    skip_ws(&c);
    return c.p == c.end;
}
