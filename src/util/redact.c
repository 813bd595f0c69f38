/* redact.c -- sets of secret values and the replacement of every occurrence
 * of them, in text and in JSON values (docs/internals/core.md, "Secrets").
 *
 * A set holds the named values and the patterns to look for: each value of
 * FLOW__REDACT_MIN bytes or more, and its JSON-escaped form when that
 * differs (a value with a quote or a backslash, found inside JSON text such
 * as a command's stdout). Patterns are tried longest first, so a value that
 * holds another is replaced whole. Sets are never changed once made.
 */
#include "util/compat.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/json.h"
#include "util/log.h"
#include "util/redact.h"

struct secret {
    char *name;
    char *value;
};

struct pattern {
    char *text;
    size_t len;
};

struct flow__secrets {
    atomic_int refs;
    size_t count;
    struct secret *items;
    size_t npat;
    struct pattern *pat; /* longest first */
};

static void secrets_free(struct flow__secrets *s)
{
    for (size_t i = 0; i < s->count; i++) {
        flow__free(s->items[i].name);
        flow__free(s->items[i].value);
    }
    for (size_t i = 0; i < s->npat; i++)
        flow__free(s->pat[i].text);
    flow__free(s->items);
    flow__free(s->pat);
    flow__free(s);
}

struct flow__secrets *flow__secrets_ref(struct flow__secrets *s)
{
    if (s)
        atomic_fetch_add(&s->refs, 1);
    return s;
}

void flow__secrets_unref(struct flow__secrets *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        secrets_free(s);
}

size_t flow__secrets_count(const struct flow__secrets *s)
{
    return s ? s->count : 0;
}

const char *flow__secrets_name(const struct flow__secrets *s, size_t i)
{
    return s && i < s->count ? s->items[i].name : NULL;
}

const char *flow__secrets_get(const struct flow__secrets *s, const char *name)
{
    for (size_t i = 0; s && name && i < s->count; i++)
        if (!strcmp(s->items[i].name, name))
            return s->items[i].value;
    return NULL;
}

bool flow__secrets_redact_any(const struct flow__secrets *s)
{
    return s && s->npat > 0;
}

static bool has_pattern(const struct flow__secrets *s, const char *text, size_t len)
{
    for (size_t i = 0; i < s->npat; i++)
        if (s->pat[i].len == len && !memcmp(s->pat[i].text, text, len))
            return true;
    return false;
}

static bool add_pattern(struct flow__secrets *s, const char *text, size_t len)
{
    if (len < FLOW__REDACT_MIN || has_pattern(s, text, len))
        return true;
    char *copy = flow__strndup(text, len);
    if (!copy)
        return false;
    s->pat[s->npat++] = (struct pattern){copy, len};
    return true;
}

/* The value as jansson writes it inside a JSON string, when that differs. */
static bool add_escaped(struct flow__secrets *s, const char *value)
{
    json_t *j = json_string(value);
    if (!j)
        return true; /* not UTF-8: jansson would not write it either */
    char *text = json_dumps(j, JSON_ENCODE_ANY);
    json_decref(j);
    if (!text)
        return false;
    size_t len = strlen(text);
    bool ok = len < 2 || (len - 2 == strlen(value) && !memcmp(text + 1, value, len - 2)) ||
              add_pattern(s, text + 1, len - 2);
    flow__json_free_text(text);
    return ok;
}

/* The value percent-encoded as the `| url` filter writes it (a secret put
 * in a URL's query), when that differs. */
static bool add_url_encoded(struct flow__secrets *s, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strlen(value);
    char *enc = flow__malloc(3 * len + 1);
    if (!enc)
        return false;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            enc[n++] = (char)c;
        } else {
            enc[n++] = '%';
            enc[n++] = hex[c >> 4];
            enc[n++] = hex[c & 15];
        }
    }
    bool ok = n == len || add_pattern(s, enc, n);
    flow__free(enc);
    return ok;
}

static int longest_first(const void *a, const void *b)
{
    const struct pattern *x = a, *y = b;
    return x->len < y->len ? 1 : x->len > y->len ? -1 : 0;
}

static bool has_item(const struct flow__secrets *s, const char *name, const char *value)
{
    for (size_t i = 0; i < s->count; i++)
        if (!strcmp(s->items[i].name, name) && !strcmp(s->items[i].value, value))
            return true;
    return false;
}

/* A new set of room for `cap` named values. */
static struct flow__secrets *secrets_new(size_t cap)
{
    struct flow__secrets *s = flow__calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1);
    s->items = flow__calloc(cap ? cap : 1, sizeof(*s->items));
    s->pat = flow__calloc(cap ? 3 * cap : 1, sizeof(*s->pat)); /* value, escaped, url */
    if (!s->items || !s->pat) {
        secrets_free(s);
        return NULL;
    }
    return s;
}

static bool add_item(struct flow__secrets *s, const char *name, const char *value)
{
    if (has_item(s, name, value))
        return true;
    char *n = flow__strdup(name);
    char *v = flow__strdup(value);
    if (!n || !v) {
        flow__free(n);
        flow__free(v);
        return false;
    }
    s->items[s->count++] = (struct secret){n, v};
    return add_pattern(s, value, strlen(value)) && add_escaped(s, value) &&
           add_url_encoded(s, value);
}

flow_err flow__secrets_from_env(const char *const *names, size_t count, bool need_all,
                                struct flow__secrets **out, const char **missing)
{
    *out = NULL;
    if (missing)
        *missing = NULL;
    if (!count)
        return FLOW_OK;
    for (size_t i = 0; need_all && i < count; i++) {
        if (!getenv(names[i])) {
            if (missing)
                *missing = names[i];
            return FLOW_ENOTFOUND;
        }
    }
    struct flow__secrets *s = secrets_new(count);
    if (!s)
        return FLOW_ENOMEM;
    for (size_t i = 0; i < count; i++) {
        const char *v = getenv(names[i]);
        if (!v || flow__secrets_get(s, names[i]))
            continue;
        if (!add_item(s, names[i], v)) {
            secrets_free(s);
            return FLOW_ENOMEM;
        }
        if (need_all && strlen(v) < FLOW__REDACT_MIN)
            flow__log(FLOW_LOG_WARN,
                      "secret '%s' is shorter than %d characters: it is not redacted", names[i],
                      FLOW__REDACT_MIN);
    }
    qsort(s->pat, s->npat, sizeof(*s->pat), longest_first);
    *out = s;
    return FLOW_OK;
}

flow_err flow__secrets_union(struct flow__secrets *a, struct flow__secrets *b,
                             struct flow__secrets **out)
{
    *out = NULL;
    bool news = false;
    for (size_t i = 0; b && i < b->count && !news; i++)
        news = !a || !has_item(a, b->items[i].name, b->items[i].value);
    if (!news) {
        *out = flow__secrets_ref(a);
        return FLOW_OK;
    }
    if (!a) {
        *out = flow__secrets_ref(b);
        return FLOW_OK;
    }
    struct flow__secrets *s = secrets_new(a->count + b->count);
    if (!s)
        return FLOW_ENOMEM;
    for (int k = 0; k < 2; k++) {
        const struct flow__secrets *from = k ? b : a;
        for (size_t i = 0; i < from->count; i++) {
            if (!add_item(s, from->items[i].name, from->items[i].value)) {
                secrets_free(s);
                return FLOW_ENOMEM;
            }
        }
    }
    qsort(s->pat, s->npat, sizeof(*s->pat), longest_first);
    *out = s;
    return FLOW_OK;
}

/* ---- text --------------------------------------------------------------- */

bool flow__redact_hits(const struct flow__secrets *s, const char *text, size_t len)
{
    for (size_t i = 0; s && text && i < s->npat; i++)
        if (s->pat[i].len <= len && memmem(text, len, s->pat[i].text, s->pat[i].len))
            return true;
    return false;
}

/* The length of the pattern at `p` (left bytes on), or 0. */
static size_t match_at(const struct flow__secrets *s, const char *p, size_t left)
{
    for (size_t i = 0; i < s->npat; i++)
        if (s->pat[i].len <= left && !memcmp(p, s->pat[i].text, s->pat[i].len))
            return s->pat[i].len;
    return 0;
}

flow_err flow__redact_text(const struct flow__secrets *s, const char *text, size_t len,
                           char **out, size_t *out_len)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!flow__redact_hits(s, text, len))
        return FLOW_OK;
    /* A pattern is at least FLOW__REDACT_MIN bytes, its replacement fewer. */
    char *r = flow__malloc(len + 1);
    if (!r)
        return FLOW_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t m = match_at(s, text + i, len - i);
        if (m) {
            memcpy(r + n, FLOW__REDACTED, sizeof(FLOW__REDACTED) - 1);
            n += sizeof(FLOW__REDACTED) - 1;
            i += m;
        } else {
            r[n++] = text[i++];
        }
    }
    r[n] = '\0';
    *out = r;
    if (out_len)
        *out_len = n;
    return FLOW_OK;
}

char *flow__redact_dup(const struct flow__secrets *s, const char *text)
{
    if (!text)
        return NULL;
    char *r = NULL;
    if (flow__redact_text(s, text, strlen(text), &r, NULL) != FLOW_OK)
        return NULL;
    return r ? r : flow__strdup(text);
}

flow_err flow__redact_str_swap(const struct flow__secrets *s, char **text)
{
    char *r = NULL;
    if (!*text || flow__redact_text(s, *text, strlen(*text), &r, NULL) != FLOW_OK)
        return *text ? FLOW_ENOMEM : FLOW_OK;
    if (r) {
        flow__free(*text);
        *text = r;
    }
    return FLOW_OK;
}

/* ---- JSON --------------------------------------------------------------- */

/* The text of a number, true, false or null, as it would be written. */
static size_t scalar_text(const json_t *v, char *buf, size_t size)
{
    int n;
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        n = snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        n = snprintf(buf, size, "%.17g", json_real_value(v));
        break;
    case JSON_TRUE:
        n = snprintf(buf, size, "true");
        break;
    case JSON_FALSE:
        n = snprintf(buf, size, "false");
        break;
    default:
        n = snprintf(buf, size, "null");
        break;
    }
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

static bool scalar_hits(const struct flow__secrets *s, const json_t *v)
{
    char buf[64];
    if (flow__redact_hits(s, buf, scalar_text(v, buf, sizeof(buf))))
        return true;
    if (!json_is_real(v))
        return false;
    /* Reals are written in the fewest digits that read back the same. */
    int n = snprintf(buf, sizeof(buf), "%.15g", json_real_value(v));
    return n > 0 && flow__redact_hits(s, buf, (size_t)n < sizeof(buf) ? (size_t)n : 0);
}

static bool json_hits(const struct flow__secrets *s, const json_t *v)
{
    const char *k;
    json_t *m;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        json_object_foreach((json_t *)v, k, m)
        {
            if (flow__redact_hits(s, k, strlen(k)) || json_hits(s, m))
                return true;
        }
        return false;
    case JSON_ARRAY:
        for (size_t i = 0; i < json_array_size(v); i++)
            if (json_hits(s, json_array_get(v, i)))
                return true;
        return false;
    case JSON_STRING:
        return flow__redact_hits(s, json_string_value(v), json_string_length(v));
    default:
        return scalar_hits(s, v);
    }
}

/* A string with the values replaced, new. */
static json_t *redacted_string(const struct flow__secrets *s, const char *text, size_t len)
{
    char *r = NULL;
    size_t rlen = 0;
    if (flow__redact_text(s, text, len, &r, &rlen) != FLOW_OK)
        return NULL;
    json_t *j = r ? json_stringn_nocheck(r, rlen) : json_stringn_nocheck(text, len);
    flow__free(r);
    return j;
}

/* A copy of `v` sharing nothing with it, redacted; NULL: out of memory. */
static json_t *copy_redacted(const struct flow__secrets *s, const json_t *v)
{
    const char *k;
    json_t *m;
    json_t *c = NULL;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        c = json_object();
        json_object_foreach((json_t *)v, k, m)
        {
            if (!c)
                break;
            char *rk = NULL;
            json_t *cm = copy_redacted(s, m);
            bool ok = cm && flow__redact_text(s, k, strlen(k), &rk, NULL) == FLOW_OK;
            if (!ok)
                json_decref(cm);
            /* json_object_set_new_nocheck takes cm, also when it fails */
            if (!ok || json_object_set_new_nocheck(c, rk ? rk : k, cm)) {
                json_decref(c);
                c = NULL;
            }
            flow__free(rk);
        }
        return c;
    case JSON_ARRAY:
        c = json_array();
        for (size_t i = 0; c && i < json_array_size(v); i++) {
            if (json_array_append_new(c, copy_redacted(s, json_array_get(v, i)))) {
                json_decref(c);
                c = NULL;
            }
        }
        return c;
    case JSON_STRING:
        return redacted_string(s, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return scalar_hits(s, v) ? json_string(FLOW__REDACTED) : json_integer(json_integer_value(v));
    case JSON_REAL:
        return scalar_hits(s, v) ? json_string(FLOW__REDACTED) : json_real(json_real_value(v));
    default: /* true, false and null are jansson's constants: nothing is counted */
        return scalar_hits(s, v) ? json_string(FLOW__REDACTED) : (json_t *)v;
    }
}

bool flow__redact_json_hits(const struct flow__secrets *s, const json_t *v)
{
    return v && flow__secrets_redact_any(s) && json_hits(s, v);
}

flow_err flow__redact_json(const struct flow__secrets *s, const json_t *v, json_t **out)
{
    *out = NULL;
    if (!v || !flow__secrets_redact_any(s) || !json_hits(s, v))
        return FLOW_OK;
    *out = copy_redacted(s, v);
    return *out ? FLOW_OK : FLOW_ENOMEM;
}

flow_err flow__redact_json_swap(const struct flow__secrets *s, json_t **v)
{
    json_t *r = NULL;
    flow_err rc = flow__redact_json(s, *v, &r);
    if (r) {
        json_decref(*v);
        *v = r;
    }
    return rc;
}
