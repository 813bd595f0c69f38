/* template.c -- `{{ path | filter }}` templates (see template.h): compiled
 * once into literal and expression parts so that rendering is a walk over
 * precomputed segments; a template without `{{` renders to a new reference of
 * the value it was compiled from. Also shell quoting and durations. */
#include "util/compat.h"

#include "def/template.h"
#include "util/fnv.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/json.h"

/* Roots a path may start with; the checks in check_shape() name the fields
 * some of them need. */
static const char *const roots[] = {"inputs", "input", "state", "tasks", "item",
                                    "index",  "run",   "env",   "secrets"};

enum filter { FILTER_JSON = 0, FILTER_SHELL, FILTER_URL };

static const char *const filters[] = {"json", "shell", "url"};

#define MAX_FILTERS 8
#define MAX_TEXT_IN_ERRORS 80

/* One `{{ ... }}`. */
struct expr {
    struct flow__tmpl_path path;
    struct flow__tmpl_seg *segs; /* path.segs; keys point into `keys` */
    char *keys;                  /* the keys, NUL-separated */
    unsigned char filters[MAX_FILTERS];
    size_t nfilters;
    char *text; /* "{{ ... }}" as written, for messages */
};

/* A literal run of text (expr NULL) or an expression. */
struct part {
    const char *lit; /* into the template's src */
    size_t len;
    struct expr *expr;
};

enum tmpl_kind { TMPL_STATIC = 0, TMPL_STRING, TMPL_OBJECT, TMPL_ARRAY };

struct flow__tmpl {
    enum tmpl_kind kind;
    json_t *value; /* TMPL_STATIC: rendered as a new reference to it */
    /* TMPL_STRING: */
    char *src;
    struct part *parts;
    size_t nparts;
    bool whole; /* exactly one `{{ path }}` without filters: renders to the value */
    /* TMPL_OBJECT / TMPL_ARRAY: */
    size_t count;
    const char **keys; /* TMPL_OBJECT: borrowed from `value`, which is kept */
    struct flow__tmpl **kids;
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */

static bool is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident_char(char c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

/* Characters of a `.key` step: task names may hold '-'. */
static bool is_key_char(char c)
{
    return is_ident_char(c) || c == '-';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *skip_space(const char *p)
{
    while (is_space(*p))
        p++;
    return p;
}

/* Text shortened for a message: its first MAX_TEXT_IN_ERRORS bytes. */
static int text_len(size_t len)
{
    return (int)(len > MAX_TEXT_IN_ERRORS ? MAX_TEXT_IN_ERRORS : len);
}

static const char *text_more(size_t len)
{
    return len > MAX_TEXT_IN_ERRORS ? "..." : "";
}

static bool contains_braces(json_t *v)
{
    if (json_is_string(v))
        return memmem(json_string_value(v), json_string_length(v), "{{", 2) != NULL;
    if (json_is_object(v)) {
        const char *k;
        json_t *kid;
        json_object_foreach (v, k, kid) {
            if (contains_braces(kid))
                return true;
        }
        return false;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *kid;
        json_array_foreach (v, i, kid) {
            if (contains_braces(kid))
                return true;
        }
    }
    return false;
}

char *flow__tmpl_path_text(const struct flow__tmpl_path *path, size_t count)
{
    struct flow__buf b;
    flow__buf_init(&b, FLOW__BUF_DEFAULT_MAX);
    flow_err rc = FLOW_OK;
    if (count > path->count)
        count = path->count;
    for (size_t i = 0; i < count && rc == FLOW_OK; i++) {
        const struct flow__tmpl_seg *s = &path->segs[i];
        if (!s->key) {
            rc = flow__buf_printf(&b, "[%ld]", s->index);
            continue;
        }
        bool plain = *s->key != '\0';
        for (const char *p = s->key; *p && plain; p++)
            plain = is_key_char(*p);
        if (i == 0 || plain) {
            if (i > 0)
                rc = flow__buf_appendc(&b, '.');
            if (rc == FLOW_OK)
                rc = flow__buf_appends(&b, s->key);
            continue;
        }
        rc = flow__buf_appends(&b, "[\"");
        for (const char *p = s->key; *p && rc == FLOW_OK; p++) {
            if (*p == '"' || *p == '\\')
                rc = flow__buf_appendc(&b, '\\');
            if (rc == FLOW_OK)
                rc = flow__buf_appendc(&b, *p);
        }
        if (rc == FLOW_OK)
            rc = flow__buf_appends(&b, "\"]");
    }
    if (rc == FLOW_OK && !b.data)
        rc = flow__buf_appends(&b, "");
    if (rc) {
        flow__buf_cleanup(&b);
        return NULL;
    }
    return flow__buf_take(&b);
}

/* ------------------------------------------------------------------------ */
/* Compiling                                                                */

static void expr_free(struct expr *e)
{
    if (!e)
        return;
    flow__free(e->segs);
    flow__free(e->keys);
    flow__free(e->text);
    flow__free(e);
}

void flow__tmpl_free(struct flow__tmpl *t)
{
    if (!t)
        return;
    json_decref(t->value);
    for (size_t i = 0; i < t->nparts; i++)
        expr_free(t->parts[i].expr);
    flow__free(t->parts);
    flow__free(t->src);
    for (size_t i = 0; i < t->count; i++)
        flow__tmpl_free(t->kids[i]);
    flow__free(t->kids);
    flow__free(t->keys);
    flow__free(t);
}

bool flow__tmpl_is_static(const struct flow__tmpl *t)
{
    return t->kind == TMPL_STATIC;
}

bool flow__tmpl_is_whole(const struct flow__tmpl *t)
{
    return t->kind == TMPL_STRING && t->whole;
}

/* What is wrong with the expression starting at `open` (its "{{"), up to `end`. */
static flow_err syntax_error(flow_error *err, const char *open, const char *end,
                             const char *fmt, ...) FLOW__PRINTF(4, 5);

static flow_err syntax_error(flow_error *err, const char *open, const char *end,
                             const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    size_t len = (size_t)(end - open);
    return flow__error(err, FLOW_ETEMPLATE, "%s in '%.*s%s'", what, text_len(len), open,
                       text_more(len));
}

/* The end of the expression opened at `open` for messages: just past its
 * "}}", or the end of the string. */
static const char *expr_end(const char *open)
{
    const char *close = strstr(open + 2, "}}");
    return close ? close + 2 : open + strlen(open);
}

/* Checks that depend on the root: which fields `tasks` and `run` have. */
static flow_err check_shape(const struct expr *e, const char *open, flow_error *err)
{
    const struct flow__tmpl_seg *s = e->segs;
    size_t n = e->path.count;
    const char *root = s[0].key;
    const char *end = expr_end(open);
    if (strcmp(root, "tasks") == 0) {
        /* tasks.NAME is short for tasks.NAME.output */
        bool ok = n >= 2 && s[1].key;
        if (ok && n >= 3) {
            const char *field = s[2].key ? s[2].key : "";
            ok = strcmp(field, "output") == 0 ||
                 ((strcmp(field, "status") == 0 || strcmp(field, "error") == 0) && n == 3);
        }
        if (!ok)
            return syntax_error(err, open, end, "%s",
                                "expected 'tasks.NAME.output', 'tasks.NAME.status' or "
                                "'tasks.NAME.error'");
    } else if (strcmp(root, "run") == 0) {
        bool ok = n == 2 && s[1].key && (strcmp(s[1].key, "id") == 0 ||
                                          strcmp(s[1].key, "name") == 0);
        if (!ok)
            return syntax_error(err, open, end, "%s", "expected 'run.id' or 'run.name'");
    } else if (strcmp(root, "env") == 0) {
        if (n != 2 || !s[1].key)
            return syntax_error(err, open, end, "%s", "expected 'env.NAME'");
    } else if (strcmp(root, "secrets") == 0) {
        if (n != 2 || !s[1].key)
            return syntax_error(err, open, end, "%s", "expected 'secrets.NAME'");
    } else if (strcmp(root, "index") == 0) {
        if (n != 1)
            return syntax_error(err, open, end, "%s", "'index' is a number and has no fields");
    }
    return FLOW_OK;
}

/* Collected while parsing one expression, before it is packed. */
struct seg_src {
    const char *start; /* the key as written (quoted keys: inside the quotes) */
    size_t len;
    bool quoted; /* has backslash escapes to undo */
    bool is_index;
    long index;
};

#define MAX_SEGS 64

/* Parse a quoted key at `p` (on the quote); sets *end past the closing quote. */
static bool parse_quoted(const char *p, struct seg_src *s, const char **end)
{
    char q = *p++;
    s->start = p;
    s->quoted = true;
    while (*p && *p != q) {
        if (*p == '\\' && p[1])
            p++;
        p++;
    }
    if (!*p)
        return false;
    s->len = (size_t)(p - s->start);
    *end = p + 1;
    return true;
}

/* Unescape `len` bytes at `src` into `dst`; returns bytes written. */
static size_t unescape(char *dst, const char *src, size_t len, bool quoted)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (quoted && src[i] == '\\' && i + 1 < len)
            i++;
        dst[n++] = src[i];
    }
    return n;
}

/* Parse the expression after `open` ("{{"); *next is set past its "}}". */
static flow_err parse_expr(const char *open, const char **next, bool bare, struct expr **out,
                           flow_error *err)
{
    struct seg_src segs[MAX_SEGS];
    size_t nseg = 0;
    unsigned char fl[MAX_FILTERS];
    size_t nfl = 0;
    const char *p = skip_space(open + 2);
    const char *end = expr_end(open);

    if (!*p || !strstr(p, "}}"))
        return syntax_error(err, open, end, "%s", "unclosed '{{'");
    if (p[0] == '}' && p[1] == '}')
        return syntax_error(err, open, end, "%s", "empty expression");
    if (!is_ident_start(*p))
        return syntax_error(err, open, end, "expected a path such as 'inputs.name'");
    segs[0] = (struct seg_src){.start = p};
    while (is_ident_char(*p))
        p++;
    segs[0].len = (size_t)(p - segs[0].start);
    nseg = 1;
    if (!bare) {
        bool known = false;
        for (size_t i = 0; i < FLOW__ARRAY_LEN(roots) && !known; i++)
            known = strlen(roots[i]) == segs[0].len &&
                    memcmp(roots[i], segs[0].start, segs[0].len) == 0;
        if (!known) {
            char name[64];
            snprintf(name, sizeof(name), "%.*s", (int)segs[0].len, segs[0].start);
            return syntax_error(err, open, end,
                                "unknown root '%s' (use inputs, input, state, tasks, item, "
                                "index, run, env or secrets)",
                                name);
        }
    }
    for (;;) {
        struct seg_src s = {0};
        if (*p == '.') {
            s.start = ++p;
            while (is_key_char(*p))
                p++;
            s.len = (size_t)(p - s.start);
            if (s.len == 0)
                return syntax_error(err, open, end, "%s", *p ? "expected a key after '.'"
                                                              : "unclosed '{{'");
        } else if (*p == '[') {
            p = skip_space(p + 1);
            if (*p == '"' || *p == '\'') {
                if (!parse_quoted(p, &s, &p))
                    return syntax_error(err, open, end, "unclosed quote");
            } else if ((*p >= '0' && *p <= '9') || *p == '-') {
                char *num_end = NULL;
                errno = 0;
                long v = strtol(p, &num_end, 10);
                if (num_end == p || errno == ERANGE)
                    return syntax_error(err, open, end, "%s", "bad index");
                s.is_index = true;
                s.index = v;
                p = num_end;
            } else {
                return syntax_error(err, open, end, "%s",
                                    *p ? "expected a number or a quoted key after '['"
                                       : "unclosed '{{'");
            }
            p = skip_space(p);
            if (*p != ']')
                return syntax_error(err, open, end, "%s", *p ? "expected ']'" : "unclosed '{{'");
            p++;
        } else {
            break;
        }
        if (nseg == MAX_SEGS)
            return syntax_error(err, open, end, "%s", "path too long");
        segs[nseg++] = s;
    }
    p = skip_space(p);
    while (*p == '|') {
        p = skip_space(p + 1);
        const char *name = p;
        while (is_ident_char(*p))
            p++;
        size_t len = (size_t)(p - name);
        if (len == 0)
            return syntax_error(err, open, end, "%s",
                                *p ? "expected a filter name after '|'" : "unclosed '{{'");
        size_t f = 0;
        while (f < FLOW__ARRAY_LEN(filters) &&
               !(strlen(filters[f]) == len && memcmp(filters[f], name, len) == 0))
            f++;
        if (f == FLOW__ARRAY_LEN(filters)) {
            char fname[64];
            snprintf(fname, sizeof(fname), "%.*s", (int)(len < 60 ? len : 60), name);
            return syntax_error(err, open, end, "unknown filter '%s' (use json, shell or url)", fname);
        }
        if (nfl == MAX_FILTERS)
            return syntax_error(err, open, end, "%s", "too many filters");
        fl[nfl++] = (unsigned char)f;
        p = skip_space(p);
    }
    if (!*p)
        return syntax_error(err, open, end, "%s", "unclosed '{{'");
    if (p[0] != '}' || p[1] != '}') {
        char what[64];
        snprintf(what, sizeof(what), "unexpected '%c'", *p);
        return syntax_error(err, open, end, "%s", what);
    }
    p += 2;

    /* Pack: one array of segments, one buffer of keys. */
    size_t key_bytes = 0;
    for (size_t i = 0; i < nseg; i++)
        key_bytes += segs[i].is_index ? 0 : segs[i].len + 1;
    struct expr *e = flow__calloc(1, sizeof(*e));
    if (!e)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    e->segs = flow__calloc(nseg, sizeof(*e->segs));
    e->keys = flow__malloc(key_bytes);
    e->text = flow__strndup(open, (size_t)(p - open));
    if (!e->segs || !e->keys || !e->text) {
        expr_free(e);
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    char *k = e->keys;
    for (size_t i = 0; i < nseg; i++) {
        if (segs[i].is_index) {
            e->segs[i].key = NULL;
            e->segs[i].index = segs[i].index;
            continue;
        }
        size_t n = unescape(k, segs[i].start, segs[i].len, segs[i].quoted);
        k[n] = '\0';
        e->segs[i].key = k;
        k += n + 1;
    }
    e->path.segs = e->segs;
    e->path.count = nseg;
    memcpy(e->filters, fl, nfl);
    e->nfilters = nfl;
    flow_err rc = bare ? FLOW_OK : check_shape(e, open, err);
    if (rc) {
        expr_free(e);
        return rc;
    }
    *next = p;
    *out = e;
    return FLOW_OK;
}

static flow_err new_static(json_t *value, struct flow__tmpl **out, flow_error *err)
{
    struct flow__tmpl *t = flow__calloc(1, sizeof(*t));
    if (!t) {
        json_decref(value);
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    t->kind = TMPL_STATIC;
    t->value = value;
    *out = t;
    return FLOW_OK;
}

/* A string holding "{{": parts of literal text and expressions. */
static flow_err compile_parts(const char *s, size_t len, bool bare, struct flow__tmpl **out,
                              flow_error *err)
{
    struct flow__tmpl *t = flow__calloc(1, sizeof(*t));
    if (!t)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    t->kind = TMPL_STRING;
    t->src = flow__strndup(s, len);
    /* At most one literal before each expression, plus one at the end. */
    size_t max_parts = 1;
    for (const char *p = s; (p = strstr(p, "{{")); p += 2)
        max_parts += 2;
    t->parts = flow__calloc(max_parts, sizeof(*t->parts));
    if (!t->src || !t->parts) {
        flow__tmpl_free(t);
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    const char *p = t->src;
    while (*p) {
        const char *open = strstr(p, "{{");
        if (!open) {
            t->parts[t->nparts++] = (struct part){.lit = p, .len = strlen(p)};
            break;
        }
        if (open > p)
            t->parts[t->nparts++] = (struct part){.lit = p, .len = (size_t)(open - p)};
        struct expr *e = NULL;
        flow_err rc = parse_expr(open, &p, bare, &e, err);
        if (rc) {
            flow__tmpl_free(t);
            return rc;
        }
        t->parts[t->nparts++] = (struct part){.expr = e};
    }
    t->whole = t->nparts == 1 && t->parts[0].expr && t->parts[0].expr->nfilters == 0;
    *out = t;
    return FLOW_OK;
}

static flow_err compile_value(json_t *value, struct flow__tmpl **out, flow_error *err)
{
    if (!contains_braces(value))
        return new_static(json_incref(value), out, err);
    if (json_is_string(value)) {
        const char *s = json_string_value(value);
        if (strlen(s) != json_string_length(value))
            return flow__error(err, FLOW_ETEMPLATE, "a template cannot hold a NUL character");
        return compile_parts(s, json_string_length(value), false, out, err);
    }
    struct flow__tmpl *t = flow__calloc(1, sizeof(*t));
    if (!t)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    bool is_obj = json_is_object(value);
    t->kind = is_obj ? TMPL_OBJECT : TMPL_ARRAY;
    t->value = json_incref(value); /* keeps the keys alive */
    size_t n = is_obj ? json_object_size(value) : json_array_size(value);
    t->kids = flow__calloc(n ? n : 1, sizeof(*t->kids));
    if (is_obj)
        t->keys = flow__calloc(n ? n : 1, sizeof(*t->keys));
    if (!t->kids || (is_obj && !t->keys)) {
        flow__tmpl_free(t);
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    flow_err rc = FLOW_OK;
    if (is_obj) {
        void *it = json_object_iter(value);
        for (; it && rc == FLOW_OK; it = json_object_iter_next(value, it)) {
            t->keys[t->count] = json_object_iter_key(it);
            rc = compile_value(json_object_iter_value(it), &t->kids[t->count], err);
            if (rc == FLOW_OK)
                t->count++;
        }
    } else {
        for (size_t i = 0; i < n && rc == FLOW_OK; i++) {
            rc = compile_value(json_array_get(value, i), &t->kids[t->count], err);
            if (rc == FLOW_OK)
                t->count++;
        }
    }
    if (rc) {
        flow__tmpl_free(t);
        return rc;
    }
    *out = t;
    return FLOW_OK;
}

flow_err flow__tmpl_compile(json_t *value, struct flow__tmpl **out, flow_error *err)
{
    *out = NULL;
    if (!value)
        return flow__error(err, FLOW_ETEMPLATE, "no template value");
    return compile_value(value, out, err);
}

flow_err flow__tmpl_compile_string(const char *s, struct flow__tmpl **out, flow_error *err)
{
    *out = NULL;
    if (!s)
        return flow__error(err, FLOW_ETEMPLATE, "no template string");
    if (strstr(s, "{{"))
        return compile_parts(s, strlen(s), false, out, err);
    /* Not checked as UTF-8: argv elements may be any bytes. */
    json_t *v = json_stringn_nocheck(s, strlen(s));
    if (!v)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    return new_static(v, out, err);
}

flow_err flow__tmpl_compile_bare(const char *s, size_t len, struct flow__tmpl **out,
                                flow_error *err)
{
    *out = NULL;
    if (memchr(s, '\0', len))
        return flow__error(err, FLOW_ETEMPLATE, "a template cannot hold a NUL character");
    if (memmem(s, len, "{{", 2))
        return compile_parts(s, len, true, out, err);
    json_t *v = json_stringn(s, len);
    if (!v)
        return flow__error(err, FLOW_ENOMEM, "out of memory (or text not UTF-8)");
    return new_static(v, out, err);
}

/* ------------------------------------------------------------------------ */
/* References                                                               */

static int foreach_ref(const struct flow__tmpl *t, flow__tmpl_ref_fn fn, void *udata)
{
    int rc = 0;
    for (size_t i = 0; i < t->nparts && rc == 0; i++) {
        if (t->parts[i].expr)
            rc = fn(&t->parts[i].expr->path, udata);
    }
    for (size_t i = 0; i < t->count && rc == 0; i++)
        rc = foreach_ref(t->kids[i], fn, udata);
    return rc;
}

int flow__tmpl_foreach_ref(const struct flow__tmpl *t, flow__tmpl_ref_fn fn, void *udata)
{
    return t ? foreach_ref(t, fn, udata) : 0;
}

const char *flow__tmpl_unquoted(const struct flow__tmpl *t)
{
    if (!t || t->kind != TMPL_STRING)
        return NULL;
    for (size_t i = 0; i < t->nparts; i++) {
        const struct expr *e = t->parts[i].expr;
        if (e && (e->nfilters == 0 || e->filters[e->nfilters - 1] != FILTER_SHELL))
            return e->text;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Rendering                                                                */


json_t *flow__tmpl_walk(json_t *v, const struct flow__tmpl_path *path, size_t from,
                        flow_error *err)
{
    for (size_t i = from; i < path->count; i++) {
        const struct flow__tmpl_seg *s = &path->segs[i];
        json_t *next = NULL;
        if (s->key && json_is_object(v)) {
            next = json_object_get(v, s->key);
        } else if (!s->key && json_is_array(v)) {
            long n = (long)json_array_size(v);
            long at = s->index < 0 ? n + s->index : s->index;
            if (at < 0 || at >= n) {
                char *upto = flow__tmpl_path_text(path, i);
                flow__error(err, FLOW_ETEMPLATE, "index %ld is out of range: '%s' has %ld items",
                            s->index, upto ? upto : "?", n);
                flow__free(upto);
                return NULL;
            }
            next = json_array_get(v, (size_t)at);
        } else {
            char *upto = flow__tmpl_path_text(path, i);
            flow__error(err, FLOW_ETEMPLATE, "'%s' is %s, not %s", upto ? upto : "?",
                        flow__json_type_name(v), s->key ? "an object" : "a list");
            flow__free(upto);
            return NULL;
        }
        if (!next) {
            char *full = flow__tmpl_path_text(path, i + 1);
            flow__error(err, FLOW_ETEMPLATE, "'%s' is not set", full ? full : "?");
            flow__free(full);
            return NULL;
        }
        v = next;
    }
    return v;
}

char *flow__shell_quote(const char *s)
{
    size_t quotes = 0;
    size_t len = strlen(s);
    for (size_t i = 0; i < len; i++)
        quotes += s[i] == '\'';
    /* Each ' becomes '\'' (4 bytes); two outer quotes and a NUL. */
    if (quotes > (SIZE_MAX - len - 3) / 3)
        return NULL;
    char *out = flow__malloc(len + quotes * 3 + 3);
    if (!out)
        return NULL;
    char *o = out;
    *o++ = '\'';
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\'') {
            memcpy(o, "'\\''", 4);
            o += 4;
        } else {
            *o++ = s[i];
        }
    }
    *o++ = '\'';
    *o = '\0';
    return out;
}

/* Shortest "%g" text that reads back as the same double, always with a '.'
 * or an exponent, as JSON writers do. */
static void format_real(double d, char *out, size_t len)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, len, "%.*g", prec, d);
        if (strtod(out, NULL) == d)
            break;
    }
    if (!strpbrk(out, ".eEn")) {
        size_t n = strlen(out);
        if (n + 2 < len)
            memcpy(out + n, ".0", 3);
    }
}

/* Append `v` as text: strings as they are, other values as compact JSON. */
static flow_err append_text(struct flow__buf *b, json_t *v)
{
    char num[64];
    switch (json_typeof(v)) {
    case JSON_STRING:
        return flow__buf_append(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return flow__buf_appends(b, num);
    case JSON_REAL:
        format_real(json_real_value(v), num, sizeof(num));
        return flow__buf_appends(b, num);
    case JSON_TRUE:
        return flow__buf_appends(b, "true");
    case JSON_FALSE:
        return flow__buf_appends(b, "false");
    case JSON_NULL:
        return flow__buf_appends(b, "null");
    case JSON_OBJECT:
    case JSON_ARRAY:
    default:
        return flow__json_append(b, v, JSON_COMPACT);
    }
}

/* Append `v` as JSON text. */
static flow_err append_json(struct flow__buf *b, json_t *v)
{
    if (json_is_string(v) || json_is_object(v) || json_is_array(v))
        return flow__json_append(b, v, JSON_COMPACT);
    return append_text(b, v);
}

static flow_err lookup(const struct expr *e, const struct flow__tmpl_scope *scope, json_t **out,
                       flow_error *err)
{
    flow_error lerr;
    flow__error_clear(&lerr);
    json_t *v = scope && scope->lookup ? scope->lookup(scope->udata, &e->path, &lerr) : NULL;
    if (v) {
        *out = v;
        return FLOW_OK;
    }
    if (lerr.code == FLOW_OK) {
        char *p = flow__tmpl_path_text(&e->path, e->path.count);
        flow__error(&lerr, FLOW_ETEMPLATE, "'%s' is not set", p ? p : "?");
        flow__free(p);
    }
    flow_err code = lerr.code == FLOW_ENOMEM ? FLOW_ENOMEM : FLOW_ETEMPLATE;
    return flow__error(err, code, "%s in '%s'", lerr.message, e->text);
}

/* `len` bytes of `s` percent-encoded for a URL's path segment or query
 * value: every byte but RFC 3986's unreserved ones (A-Z a-z 0-9 - . _ ~). */
static flow_err append_url_encoded(struct flow__buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    flow_err rc = FLOW_OK;
    for (size_t i = 0; i < len && rc == FLOW_OK; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            rc = flow__buf_appendc(b, (char)c);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = flow__buf_append(b, esc, 3);
        }
    }
    return rc;
}

/* Evaluate one expression with its filters and append the text. */
static flow_err append_expr(struct flow__buf *b, const struct expr *e,
                            const struct flow__tmpl_scope *scope, flow_error *err)
{
    json_t *v = NULL;
    flow_err rc = lookup(e, scope, &v, err);
    if (rc)
        return rc;
    if (e->nfilters == 0) {
        rc = append_text(b, v);
        json_decref(v);
        return rc ? flow__error(err, rc, "out of memory rendering '%s'", e->text) : FLOW_OK;
    }
    /* Filters turn the value into text, one after the other. */
    struct flow__buf cur, next;
    flow__buf_init(&cur, b->max);
    flow__buf_init(&next, b->max);
    bool have_text = false;
    for (size_t i = 0; i < e->nfilters && rc == FLOW_OK; i++) {
        flow__buf_reset(&next);
        if (e->filters[i] == FILTER_JSON) {
            if (have_text) {
                json_t *s = json_stringn_nocheck(cur.data ? cur.data : "", cur.len);
                rc = s ? append_json(&next, s) : FLOW_ENOMEM;
                json_decref(s);
            } else {
                rc = append_json(&next, v);
            }
        } else if (e->filters[i] == FILTER_URL) {
            if (!have_text)
                rc = append_text(&cur, v);
            if (rc == FLOW_OK)
                rc = append_url_encoded(&next, cur.data ? cur.data : "", cur.len);
        } else {
            if (!have_text)
                rc = append_text(&cur, v);
            char *q = rc == FLOW_OK ? flow__shell_quote(flow__buf_str(&cur)) : NULL;
            rc = q ? flow__buf_appends(&next, q) : (rc ? rc : FLOW_ENOMEM);
            flow__free(q);
        }
        struct flow__buf tmp = cur;
        cur = next;
        next = tmp;
        have_text = true;
    }
    if (rc == FLOW_OK)
        rc = flow__buf_append(b, cur.data ? cur.data : "", cur.len);
    flow__buf_cleanup(&cur);
    flow__buf_cleanup(&next);
    json_decref(v);
    if (rc == FLOW_ELIMIT)
        return flow__error(err, rc, "'%s' renders to too much text", e->text);
    return rc ? flow__error(err, rc, "out of memory rendering '%s'", e->text) : FLOW_OK;
}

static flow_err render_text(const struct flow__tmpl *t, const struct flow__tmpl_scope *scope,
                            struct flow__buf *b, flow_error *err)
{
    for (size_t i = 0; i < t->nparts; i++) {
        const struct part *p = &t->parts[i];
        flow_err rc;
        if (p->expr) {
            rc = append_expr(b, p->expr, scope, err);
            if (rc)
                return rc;
        } else {
            rc = flow__buf_append(b, p->lit, p->len);
            if (rc)
                return flow__error(err, rc, "out of memory rendering a template");
        }
    }
    return FLOW_OK;
}

flow_err flow__tmpl_render(const struct flow__tmpl *t, const struct flow__tmpl_scope *scope,
                           json_t **out, flow_error *err)
{
    *out = NULL;
    switch (t->kind) {
    case TMPL_STATIC:
        /* A copy: the template belongs to the flow, which runs on several
         * engines share, each counting references under its own lock. */
        *out = json_deep_copy(t->value);
        return *out ? FLOW_OK : flow__error(err, FLOW_ENOMEM, "out of memory rendering a value");
    case TMPL_STRING: {
        if (t->whole)
            return lookup(t->parts[0].expr, scope, out, err);
        struct flow__buf b;
        flow__buf_init(&b, FLOW__BUF_DEFAULT_MAX);
        flow_err rc = render_text(t, scope, &b, err);
        if (rc == FLOW_OK) {
            *out = json_stringn_nocheck(b.data ? b.data : "", b.len);
            if (!*out)
                rc = flow__error(err, FLOW_ENOMEM, "out of memory rendering a template");
        }
        flow__buf_cleanup(&b);
        return rc;
    }
    case TMPL_OBJECT:
    case TMPL_ARRAY: {
        bool is_obj = t->kind == TMPL_OBJECT;
        json_t *res = is_obj ? json_object() : json_array();
        if (!res)
            return flow__error(err, FLOW_ENOMEM, "out of memory rendering a template");
        for (size_t i = 0; i < t->count; i++) {
            json_t *v = NULL;
            flow_err rc = flow__tmpl_render(t->kids[i], scope, &v, err);
            if (rc == FLOW_OK) {
                int bad = is_obj ? json_object_set_new(res, t->keys[i], v)
                                 : json_array_append_new(res, v);
                if (bad)
                    rc = flow__error(err, FLOW_ENOMEM, "out of memory rendering a template");
            }
            if (rc) {
                json_decref(res);
                return rc;
            }
        }
        *out = res;
        return FLOW_OK;
    }
    }
    return flow__error(err, FLOW_ETEMPLATE, "bad template");
}

flow_err flow__tmpl_render_string(const struct flow__tmpl *t, const struct flow__tmpl_scope *scope,
                                  char **out, flow_error *err)
{
    *out = NULL;
    struct flow__buf b;
    flow__buf_init(&b, FLOW__BUF_DEFAULT_MAX);
    flow_err rc;
    if (t->kind == TMPL_STRING && !t->whole) {
        rc = render_text(t, scope, &b, err);
    } else if (t->kind == TMPL_STATIC && json_is_string(t->value)) {
        rc = flow__buf_append(&b, json_string_value(t->value), json_string_length(t->value));
        if (rc)
            rc = flow__error(err, rc, "out of memory rendering a template");
    } else {
        json_t *v = NULL;
        rc = flow__tmpl_render(t, scope, &v, err);
        if (rc == FLOW_OK) {
            rc = append_text(&b, v);
            if (rc)
                rc = flow__error(err, rc, "out of memory rendering a template");
        }
        json_decref(v);
    }
    if (rc == FLOW_OK && !b.data && flow__buf_appends(&b, "") != FLOW_OK)
        rc = flow__error(err, FLOW_ENOMEM, "out of memory rendering a template");
    if (rc) {
        flow__buf_cleanup(&b);
        return rc;
    }
    *out = flow__buf_take(&b);
    return FLOW_OK;
}

/* ------------------------------------------------------------------------ */
/* Durations                                                                */

/* Units in the order they may appear: "1h30m15s250ms". */
static const struct {
    const char *name;
    double seconds;
} units[] = {{"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}, {"ms", 0.001}};

/* A decimal number without sign or exponent: "30", "1.5", ".5". */
static const char *parse_number(const char *p, double *out)
{
    double v = 0;
    bool digits = false;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        digits = true;
    }
    if (*p == '.') {
        double scale = 0.1;
        p++;
        while (*p >= '0' && *p <= '9') {
            v += (*p++ - '0') * scale;
            scale /= 10;
            digits = true;
        }
    }
    if (!digits)
        return NULL;
    *out = v;
    return p;
}

bool flow__parse_duration(const char *s, double *seconds)
{
    if (!s || !*s)
        return false;
    double total = 0;
    const char *p = parse_number(s, &total);
    if (!p)
        return false;
    if (!*p) {
        if (!isfinite(total))
            return false;
        *seconds = total;
        return true;
    }
    p = s;
    total = 0;
    size_t next_unit = 0; /* units must come in descending order, once each */
    while (*p) {
        double v;
        p = parse_number(p, &v);
        if (!p)
            return false;
        size_t u = next_unit;
        /* "ms" before "m": longest match among the units still allowed. */
        size_t best = FLOW__ARRAY_LEN(units);
        size_t best_len = 0;
        for (; u < FLOW__ARRAY_LEN(units); u++) {
            size_t len = strlen(units[u].name);
            if (strncmp(p, units[u].name, len) == 0 && len > best_len &&
                !(p[len] >= 'a' && p[len] <= 'z')) {
                best = u;
                best_len = len;
            }
        }
        if (best == FLOW__ARRAY_LEN(units))
            return false;
        total += v * units[best].seconds;
        p += best_len;
        next_unit = best + 1;
    }
    if (!isfinite(total))
        return false;
    *seconds = total;
    return true;
}

uint64_t flow__tmpl_fingerprint(const struct flow__tmpl *t, uint64_t h, bool *ok)
{
    if (!t)
        return flow__fnv_str(h, NULL);
    unsigned char kind = (unsigned char)t->kind;
    h = flow__fnv(h, &kind, 1);
    switch (t->kind) {
    case TMPL_STATIC: {
        char *text = json_dumps(t->value, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (!text)
            *ok = false;
        h = flow__fnv_str(h, text);
        flow__json_free_text(text);
        break;
    }
    case TMPL_STRING:
        h = flow__fnv_str(h, t->src);
        break;
    case TMPL_OBJECT:
    case TMPL_ARRAY:
        for (size_t i = 0; i < t->count; i++) {
            if (t->kind == TMPL_OBJECT)
                h = flow__fnv_str(h, t->keys[i]);
            h = flow__tmpl_fingerprint(t->kids[i], h, ok);
        }
        break;
    }
    return h;
}
