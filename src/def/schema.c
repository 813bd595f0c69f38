/* schema.c -- the JSON Schema subset of `state_schema` (see schema.h): a
 * compiler from a jansson schema to a tree of nodes, and a checker that walks
 * the tree over a value. Checking allocates nothing until it has a violation
 * to report: paths and values are formatted into fixed buffers on the stack. */
#include "util/compat.h"

#include "def/schema.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/error.h"
#include "util/json.h"

#define MAX_DEPTH 64 /* schema nesting; bounds the recursion of compile and check */

enum {
    T_OBJECT = 1u << 0,
    T_ARRAY = 1u << 1,
    T_STRING = 1u << 2,
    T_NUMBER = 1u << 3,
    T_INTEGER = 1u << 4,
    T_BOOLEAN = 1u << 5,
    T_NULL = 1u << 6,
};

/* In the order messages list them. */
static const struct {
    const char *name; /* as written in `type` */
    unsigned bit;
    const char *noun; /* for messages */
} type_table[] = {
    {"object", T_OBJECT, "an object"}, {"array", T_ARRAY, "an array"},
    {"string", T_STRING, "a string"},  {"number", T_NUMBER, "a number"},
    {"integer", T_INTEGER, "an integer"}, {"boolean", T_BOOLEAN, "a boolean"},
    {"null", T_NULL, "null"},
};

#define SUPPORTED "type, properties, required, enum, minimum, maximum, items"

/* A bound of `minimum` or `maximum`, kept as written (integer or real) so that
 * big integers compare exactly. */
struct num {
    bool is_int;
    json_int_t i;
    double d;
};

struct prop {
    char *name;
    size_t name_len;
    struct flow__schema *schema;
};

/* One node of the tree; a whole compiled schema is its root node. */
struct flow__schema {
    unsigned types;     /* T_* bits allowed; 0: any type */
    bool nothing;       /* the `false` schema: no value conforms */
    bool has_min;
    bool has_max;
    struct num min;
    struct num max;
    json_t *enum_list;  /* a private deep copy of `enum`, or NULL */
    char **required;    /* `required` key names, in list order */
    size_t required_count;
    struct prop *props; /* `properties`, in schema order */
    size_t prop_count;
    struct flow__schema *items; /* `items`, or NULL */
};

/* ------------------------------------------------------------------------ */
/* Bounded string building (no allocation)                                   */
/* ------------------------------------------------------------------------ */

/* Appending past `cap` cuts the text (on a UTF-8 character boundary) and sets
 * `cut`; everything after that is dropped. */
struct sb {
    char *buf;
    size_t cap; /* bytes of buf, the NUL included */
    size_t len;
    bool cut;
};

static void sb_init(struct sb *b, char *buf, size_t cap)
{
    b->buf = buf;
    b->cap = cap;
    b->len = 0;
    b->cut = false;
    buf[0] = '\0';
}

static void sb_put(struct sb *b, const char *s, size_t n)
{
    if (b->cut)
        return;
    size_t avail = b->cap - 1 - b->len;
    if (n > avail) {
        n = avail;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
        b->cut = true;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void sb_puts(struct sb *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_printf(struct sb *b, const char *fmt, ...) FLOW__PRINTF(2, 3);
static void sb_printf(struct sb *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        sb_put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A real the way the rest of libflow writes it: the fewest digits that read
 * back exactly, and ".0" when it would look like an integer. */
static void put_real(struct sb *b, double d)
{
    char tmp[40];
    snprintf(tmp, sizeof(tmp), "%.15g", d);
    if (strtod(tmp, NULL) != d)
        snprintf(tmp, sizeof(tmp), "%.17g", d);
    sb_puts(b, tmp);
    if (!strpbrk(tmp, ".eEni"))
        sb_puts(b, ".0");
}

/* `len` bytes of `s` with control characters escaped as in JSON (and, for
 * `json`, quotes and backslashes too); runs of ordinary bytes go in whole,
 * so that a cut never splits a UTF-8 character. Names from the schema and
 * the state go through here so that a message stays on one line. */
static void put_escaped(struct sb *b, const char *s, size_t len, bool json)
{
    size_t i = 0;
    while (i < len && !b->cut) {
        size_t run = i;
        while (run < len && (unsigned char)s[run] >= 0x20 &&
               !(json && (s[run] == '"' || s[run] == '\\')))
            run++;
        sb_put(b, s + i, run - i);
        if (run == len)
            break;
        unsigned char c = (unsigned char)s[run];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sb_put(b, esc, 2);
        } else if (c == '\n') {
            sb_puts(b, "\\n");
        } else if (c == '\t') {
            sb_puts(b, "\\t");
        } else if (c == '\r') {
            sb_puts(b, "\\r");
        } else {
            sb_printf(b, "\\u%04x", c);
        }
        i = run + 1;
    }
}

/* A JSON string literal. */
static void put_string(struct sb *b, const char *s, size_t len)
{
    sb_puts(b, "\"");
    put_escaped(b, s, len, true);
    sb_puts(b, "\"");
}

/* `v` as JSON text. Each level of nesting writes at least one byte before it
 * recurses, and writing stops once the buffer is full, so the recursion is
 * bounded by the buffer's size. */
static void put_json(struct sb *b, const json_t *v)
{
    if (b->cut)
        return;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        bool first = true;
        sb_puts(b, "{");
        json_object_foreach((json_t *)v, k, x)
        {
            if (b->cut)
                return;
            if (!first)
                sb_puts(b, ", ");
            first = false;
            put_string(b, k, strlen(k));
            sb_puts(b, ": ");
            put_json(b, x);
        }
        sb_puts(b, "}");
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        sb_puts(b, "[");
        json_array_foreach(v, i, x)
        {
            if (b->cut)
                return;
            if (i > 0)
                sb_puts(b, ", ");
            put_json(b, x);
        }
        sb_puts(b, "]");
        break;
    }
    case JSON_STRING:
        put_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        sb_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        put_real(b, json_real_value(v));
        break;
    case JSON_TRUE:
        sb_puts(b, "true");
        break;
    case JSON_FALSE:
        sb_puts(b, "false");
        break;
    case JSON_NULL:
        sb_puts(b, "null");
        break;
    }
}

/* `v` as JSON text in `dst`, cut to `cap` bytes with "..." when longer. */
static const char *show(char *dst, size_t cap, const json_t *v)
{
    struct sb b;
    sb_init(&b, dst, cap - 3);
    put_json(&b, v);
    if (b.cut)
        memcpy(dst + b.len, "...", 4);
    return dst;
}

static const char *show_num(char *dst, size_t cap, const struct num *n)
{
    struct sb b;
    sb_init(&b, dst, cap);
    if (n->is_int)
        sb_printf(&b, "%" JSON_INTEGER_FORMAT, n->i);
    else
        put_real(&b, n->d);
    return dst;
}

/* A key name in `dst`, cut with "..." when longer than `cap`. */
static const char *show_key(char *dst, size_t cap, const char *key, size_t len)
{
    struct sb b;
    sb_init(&b, dst, cap - 3);
    put_escaped(&b, key, len, false);
    if (b.cut)
        memcpy(dst + b.len, "...", 4);
    return dst;
}

/* ------------------------------------------------------------------------ */
/* Numbers                                                                   */
/* ------------------------------------------------------------------------ */

#define TWO_63 9223372036854775808.0

/* Compare an integer with a real exactly: -1, 0 or 1. */
static int cmp_int_real(json_int_t i, double d)
{
    if (d >= TWO_63)
        return -1;
    if (d < -TWO_63)
        return 1;
    json_int_t t = (json_int_t)d; /* in range: truncates toward zero */
    if (i != t)
        return i < t ? -1 : 1;
    double frac = d - (double)t; /* exact: t is d without its fraction */
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static struct num num_of(const json_t *v)
{
    struct num n = {0};
    if (json_is_integer(v)) {
        n.is_int = true;
        n.i = json_integer_value(v);
    } else {
        n.d = json_real_value(v);
    }
    return n;
}

static int num_cmp(const struct num *a, const struct num *b)
{
    if (a->is_int && b->is_int)
        return a->i < b->i ? -1 : a->i > b->i;
    if (a->is_int)
        return cmp_int_real(a->i, b->d);
    if (b->is_int)
        return -cmp_int_real(b->i, a->d);
    return a->d < b->d ? -1 : a->d > b->d;
}

/* A real with no fraction counts as an integer (JSON Schema: 1.0 is 1). */
static bool is_integral(double d)
{
    if (d >= TWO_63 || d < -TWO_63)
        return true; /* such doubles have no fraction bits left */
    return d == (double)(json_int_t)d;
}

/* json_equal, except that numbers compare by value (1 equals 1.0), as JSON
 * Schema's `enum` does. */
static bool value_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        struct num x = num_of(a);
        struct num y = num_of(b);
        return num_cmp(&x, &y) == 0;
    }
    if (json_typeof(a) != json_typeof(b))
        return false;
    switch (json_typeof(a)) {
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)a, k, x)
        {
            json_t *y = json_object_get(b, k);
            if (!y || !value_equal(x, y))
                return false;
        }
        return true;
    }
    case JSON_ARRAY: {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++) {
            if (!value_equal(json_array_get(a, i), json_array_get(b, i)))
                return false;
        }
        return true;
    }
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               !memcmp(json_string_value(a), json_string_value(b), json_string_length(a));
    default:
        return true; /* true, false, null: the type is the value */
    }
}

/* ------------------------------------------------------------------------ */
/* Compiling                                                                 */
/* ------------------------------------------------------------------------ */

struct compiler {
    flow_error *err;
    struct sb place; /* "properties.x.items", "" at the top level */
    char place_buf[200];
    int depth;
};

/* "an object", "an array", ... for the type of `v`: the loader's words,
 * but JSON Schema's name for a list. */
static const char *noun_of(const json_t *v)
{
    return json_is_array(v) ? "an array" : flow__json_type_name(v);
}

/* The place of keyword `kw` of the current node, e.g. "properties.x.minimum". */
static const char *kw_place(const struct compiler *c, const char *kw, char *dst, size_t cap)
{
    snprintf(dst, cap, "%s%s%s", c->place.buf, c->place.len ? "." : "", kw);
    return dst;
}

/* "at properties.x" or "at the top level". */
static const char *at_place(const struct compiler *c, char *dst, size_t cap)
{
    if (c->place.len)
        snprintf(dst, cap, "at %s", c->place.buf);
    else
        snprintf(dst, cap, "at the top level");
    return dst;
}

static flow_err bad(const struct compiler *c, const char *fmt, ...) FLOW__PRINTF(2, 3);
static flow_err bad(const struct compiler *c, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return flow__error(c->err, FLOW_EINVAL, "state_schema: %s", msg);
}

static flow_err nomem(const struct compiler *c)
{
    return flow__error(c->err, FLOW_ENOMEM, "out of memory compiling state_schema");
}

static flow_err compile_node(struct compiler *c, const json_t *js, struct flow__schema **out);

/* Compile `js` as the schema at place "<place>.<seg>" or, with a `name`,
 * "<place>.<seg>.<name>". */
static flow_err compile_child(struct compiler *c, const char *seg, const char *name,
                              const json_t *js, struct flow__schema **out)
{
    size_t len = c->place.len;
    bool cut = c->place.cut;
    if (len)
        sb_puts(&c->place, ".");
    sb_puts(&c->place, seg);
    if (name) {
        sb_puts(&c->place, ".");
        put_escaped(&c->place, name, strlen(name), false);
    }
    c->depth++;
    flow_err rc = compile_node(c, js, out);
    c->depth--;
    c->place.len = len;
    c->place.cut = cut;
    c->place.buf[len] = '\0';
    return rc;
}

static flow_err parse_type(struct compiler *c, struct flow__schema *s, const json_t *v)
{
    char where[256];
    if (!json_is_string(v) && !json_is_array(v))
        return bad(c, "%s must be a string or a list of strings, not %s",
                   kw_place(c, "type", where, sizeof(where)), noun_of(v));
    if (json_is_array(v) && json_array_size(v) == 0)
        return bad(c, "%s must not be an empty list", kw_place(c, "type", where, sizeof(where)));
    size_t count = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < count; i++) {
        const json_t *x = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_string(x)) {
            char kw[32];
            snprintf(kw, sizeof(kw), "type[%zu]", i);
            return bad(c, "%s must be a string, not %s", kw_place(c, kw, where, sizeof(where)),
                       noun_of(x));
        }
        const char *name = json_string_value(x);
        unsigned bit = 0;
        for (size_t j = 0; j < FLOW__ARRAY_LEN(type_table); j++) {
            if (!strcmp(name, type_table[j].name))
                bit = type_table[j].bit;
        }
        if (!bit) {
            char key[80];
            char at[256];
            return bad(c,
                       "unknown type '%s' %s (use object, array, string, number, integer, "
                       "boolean, null)",
                       show_key(key, sizeof(key), name, json_string_length(x)),
                       at_place(c, at, sizeof(at)));
        }
        s->types |= bit;
    }
    return FLOW_OK;
}

static flow_err parse_properties(struct compiler *c, struct flow__schema *s, const json_t *v)
{
    char where[256];
    if (!json_is_object(v))
        return bad(c, "%s must be an object (key: schema), not %s",
                   kw_place(c, "properties", where, sizeof(where)), noun_of(v));
    if (!json_object_size(v))
        return FLOW_OK;
    s->props = flow__calloc(json_object_size(v), sizeof(*s->props));
    if (!s->props)
        return nomem(c);
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x)
    {
        struct prop *p = &s->props[s->prop_count];
        p->name_len = strlen(k);
        p->name = flow__strndup(k, p->name_len);
        if (!p->name)
            return nomem(c);
        s->prop_count++;
        flow_err rc = compile_child(c, "properties", k, x, &p->schema);
        if (rc)
            return rc;
    }
    return FLOW_OK;
}

static flow_err parse_required(struct compiler *c, struct flow__schema *s, const json_t *v)
{
    char where[256];
    if (!json_is_array(v))
        return bad(c, "%s must be a list of key names, not %s",
                   kw_place(c, "required", where, sizeof(where)), noun_of(v));
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
    {
        if (!json_is_string(x)) {
            char kw[40];
            snprintf(kw, sizeof(kw), "required[%zu]", i);
            return bad(c, "%s must be a string, not %s", kw_place(c, kw, where, sizeof(where)),
                       noun_of(x));
        }
    }
    if (!json_array_size(v))
        return FLOW_OK;
    s->required = flow__calloc(json_array_size(v), sizeof(*s->required));
    if (!s->required)
        return nomem(c);
    json_array_foreach(v, i, x)
    {
        s->required[i] = flow__strndup(json_string_value(x), json_string_length(x));
        if (!s->required[i])
            return nomem(c);
        s->required_count++;
    }
    return FLOW_OK;
}

static flow_err parse_enum(struct compiler *c, struct flow__schema *s, const json_t *v)
{
    char where[256];
    if (!json_is_array(v))
        return bad(c, "%s must be a list of values, not %s",
                   kw_place(c, "enum", where, sizeof(where)), noun_of(v));
    if (!json_array_size(v))
        return bad(c, "%s must not be empty (no value would conform)",
                   kw_place(c, "enum", where, sizeof(where)));
    /* A copy of our own: nobody else holds it, so checks on several threads
     * only ever read it. */
    s->enum_list = json_deep_copy(v);
    return s->enum_list ? FLOW_OK : nomem(c);
}

static flow_err parse_bound(struct compiler *c, const char *kw, const json_t *v, struct num *n,
                            bool *has)
{
    char where[256];
    if (!json_is_number(v))
        return bad(c, "%s must be a number, not %s", kw_place(c, kw, where, sizeof(where)),
                   noun_of(v));
    *n = num_of(v);
    *has = true;
    return FLOW_OK;
}

static bool ignored_keyword(const char *k)
{
    return !strcmp(k, "description") || !strcmp(k, "title") || !strcmp(k, "default") ||
           !strcmp(k, "$comment") || !strcmp(k, "$schema") || !strcmp(k, "$id") ||
           !strcmp(k, "examples");
}

static flow_err compile_node(struct compiler *c, const json_t *js, struct flow__schema **out)
{
    char where[256];
    *out = NULL;
    if (c->depth > MAX_DEPTH)
        return bad(c, "nested too deeply %s (more than %d levels)",
                   at_place(c, where, sizeof(where)), MAX_DEPTH);
    if (!json_is_object(js) && !json_is_boolean(js)) {
        if (!c->place.len)
            return bad(c, "the schema must be an object, not %s", noun_of(js));
        return bad(c, "%s must be a schema (an object), not %s", c->place.buf, noun_of(js));
    }
    struct flow__schema *s = flow__calloc(1, sizeof(*s));
    if (!s)
        return nomem(c);
    if (json_is_boolean(js)) {
        s->nothing = json_is_false(js);
        *out = s;
        return FLOW_OK;
    }
    flow_err rc = FLOW_OK;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)js, k, v)
    {
        if (!strcmp(k, "type")) {
            rc = parse_type(c, s, v);
        } else if (!strcmp(k, "properties")) {
            rc = parse_properties(c, s, v);
        } else if (!strcmp(k, "required")) {
            rc = parse_required(c, s, v);
        } else if (!strcmp(k, "enum")) {
            rc = parse_enum(c, s, v);
        } else if (!strcmp(k, "minimum")) {
            rc = parse_bound(c, "minimum", v, &s->min, &s->has_min);
        } else if (!strcmp(k, "maximum")) {
            rc = parse_bound(c, "maximum", v, &s->max, &s->has_max);
        } else if (!strcmp(k, "items") && json_is_array(v)) {
            rc = bad(c, "%s must be a schema (an object), not an array (tuple items are not "
                        "supported)",
                     kw_place(c, "items", where, sizeof(where)));
        } else if (!strcmp(k, "items")) {
            rc = compile_child(c, "items", NULL, v, &s->items);
        } else if (!ignored_keyword(k)) {
            char key[80];
            rc = bad(c, "unsupported keyword '%s' %s (supported: " SUPPORTED ")",
                     show_key(key, sizeof(key), k, strlen(k)), at_place(c, where, sizeof(where)));
        }
        if (rc)
            break;
    }
    if (rc) {
        flow__schema_free(s);
        return rc;
    }
    *out = s;
    return FLOW_OK;
}

flow_err flow__schema_compile(json_t *schema, struct flow__schema **out, flow_error *err)
{
    struct compiler c;
    c.err = err;
    c.depth = 0;
    sb_init(&c.place, c.place_buf, sizeof(c.place_buf));
    *out = NULL;
    if (!schema)
        return bad(&c, "no schema given");
    return compile_node(&c, schema, out);
}

void flow__schema_free(struct flow__schema *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->prop_count; i++) {
        flow__free(s->props[i].name);
        flow__schema_free(s->props[i].schema);
    }
    flow__free(s->props);
    for (size_t i = 0; i < s->required_count; i++)
        flow__free(s->required[i]);
    flow__free(s->required);
    json_decref(s->enum_list);
    flow__schema_free(s->items);
    flow__free(s);
}

/* ------------------------------------------------------------------------ */
/* Checking                                                                  */
/* ------------------------------------------------------------------------ */

/* The message for a violation at `path` ("" is the state itself). */
static char *fail(const struct sb *path, const char *fmt, ...) FLOW__PRINTF(2, 3);
static char *fail(const struct sb *path, const char *fmt, ...)
{
    char body[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    if (!path->len)
        return flow__why("state: %s", body);
    return flow__why("state key '%s%s': %s", path->buf, path->cut ? "..." : "", body);
}

static bool type_ok(unsigned types, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return types & T_OBJECT;
    case JSON_ARRAY:
        return types & T_ARRAY;
    case JSON_STRING:
        return types & T_STRING;
    case JSON_INTEGER:
        return types & (T_INTEGER | T_NUMBER);
    case JSON_REAL:
        return (types & T_NUMBER) || ((types & T_INTEGER) && is_integral(json_real_value(v)));
    case JSON_TRUE:
    case JSON_FALSE:
        return types & T_BOOLEAN;
    case JSON_NULL:
    default:
        return types & T_NULL;
    }
}

static char *type_failed(const struct flow__schema *s, const json_t *v, const struct sb *path)
{
    const char *nouns[FLOW__ARRAY_LEN(type_table)];
    size_t count = 0;
    for (size_t i = 0; i < FLOW__ARRAY_LEN(type_table); i++) {
        unsigned bit = type_table[i].bit;
        if ((s->types & bit) && !(bit == T_INTEGER && (s->types & T_NUMBER)))
            nouns[count++] = type_table[i].noun;
    }
    char want[160];
    struct sb b;
    sb_init(&b, want, sizeof(want));
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            sb_puts(&b, i + 1 == count ? " or " : ", ");
        sb_puts(&b, nouns[i]);
    }
    /* 1.5 where an integer is wanted: its type alone would not say why. */
    char got[80];
    if (json_is_real(v))
        return fail(path, "expected %s, got %s", want, show(got, sizeof(got), v));
    return fail(path, "expected %s, got %s", want, noun_of(v));
}

static char *enum_failed(const struct flow__schema *s, const json_t *v, const struct sb *path)
{
    char list[240];
    struct sb b;
    sb_init(&b, list, sizeof(list) - 3);
    size_t i;
    json_t *x;
    json_array_foreach(s->enum_list, i, x)
    {
        if (i > 0)
            sb_puts(&b, ", ");
        put_json(&b, x);
    }
    if (b.cut)
        memcpy(list + b.len, "...", 4);
    char got[80];
    return fail(path, "%s is not %s%s", show(got, sizeof(got), v),
                json_array_size(s->enum_list) > 1 ? "one of " : "", list);
}

static char *check_node(const struct flow__schema *s, const json_t *v, struct sb *path,
                        bool filter, const json_t *changed);

/* Check `v` as the child `name` (an object key) or `index` (name NULL) of
 * the value at `path`. */
static char *check_child(const struct flow__schema *s, const json_t *v, struct sb *path,
                         const char *name, size_t name_len, size_t index)
{
    size_t len = path->len;
    bool cut = path->cut;
    if (name) {
        if (len)
            sb_puts(path, ".");
        put_escaped(path, name, name_len, false);
    } else {
        sb_printf(path, "[%zu]", index);
    }
    char *msg = check_node(s, v, path, false, NULL);
    path->len = len;
    path->cut = cut;
    path->buf[len] = '\0';
    return msg;
}

/* Check `v` against `s`; with `filter`, of `properties` only the keys in
 * `changed` (none when NULL) are checked. */
static char *check_node(const struct flow__schema *s, const json_t *v, struct sb *path,
                        bool filter, const json_t *changed)
{
    char a[80];
    char b[40];
    if (s->nothing)
        return fail(path, "no value is allowed here (the schema is false)");
    if (s->types && !type_ok(s->types, v))
        return type_failed(s, v, path);
    if (s->enum_list) {
        size_t i;
        json_t *x;
        bool found = false;
        json_array_foreach(s->enum_list, i, x)
        {
            if (value_equal(v, x)) {
                found = true;
                break;
            }
        }
        if (!found)
            return enum_failed(s, v, path);
    }
    if ((s->has_min || s->has_max) && json_is_number(v)) {
        struct num n = num_of(v);
        if (s->has_min && num_cmp(&n, &s->min) < 0)
            return fail(path, "%s is below the minimum %s", show(a, sizeof(a), v),
                        show_num(b, sizeof(b), &s->min));
        if (s->has_max && num_cmp(&n, &s->max) > 0)
            return fail(path, "%s is above the maximum %s", show(a, sizeof(a), v),
                        show_num(b, sizeof(b), &s->max));
    }
    if (json_is_object(v)) {
        for (size_t i = 0; i < s->required_count; i++) {
            const char *k = s->required[i];
            size_t klen = strlen(k);
            if (!json_object_getn(v, k, klen))
                return fail(path, "required key '%s' is missing", show_key(a, sizeof(a), k, klen));
        }
        for (size_t i = 0; i < s->prop_count; i++) {
            const struct prop *p = &s->props[i];
            if (filter && (!changed || !json_object_getn(changed, p->name, p->name_len)))
                continue;
            json_t *x = json_object_getn(v, p->name, p->name_len);
            if (!x)
                continue;
            char *msg = check_child(p->schema, x, path, p->name, p->name_len, 0);
            if (msg)
                return msg;
        }
    }
    if (json_is_array(v) && s->items) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            char *msg = check_child(s->items, x, path, NULL, 0, i);
            if (msg)
                return msg;
        }
    }
    return NULL;
}

char *flow__schema_check(const struct flow__schema *s, const json_t *value)
{
    if (!s || !value)
        return NULL;
    char buf[120];
    struct sb path;
    sb_init(&path, buf, sizeof(buf));
    return check_node(s, value, &path, false, NULL);
}

char *flow__schema_check_keys(const struct flow__schema *s, const json_t *state,
                              const json_t *changed)
{
    if (!s || !state)
        return NULL;
    char buf[120];
    struct sb path;
    sb_init(&path, buf, sizeof(buf));
    return check_node(s, state, &path, true, json_is_object(changed) ? changed : NULL);
}
