/* yaml.c -- YAML and JSON text to jansson values through libyaml's event
 * parser, with a side table of positions: one open-addressing hash of
 * (container) -> start, (mapping, key) -> key and value positions, and
 * (sequence, index) -> item position. See yaml.h for the typing rules. */
#include "util/compat.h"

#include "def/yaml.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "util/alloc.h"
#include "util/error.h"
#include "util/strmap.h"
#include "util/vec.h"

/* ------------------------------------------------------------------------ */
/* Position table                                                           */

enum entry_kind { E_EMPTY = 0, E_NODE, E_MEMBER, E_ITEM };

struct entry {
    const void *node; /* E_NODE: the node; E_MEMBER, E_ITEM: its container */
    union {
        const char *key; /* E_MEMBER: the key as the jansson object stores it */
        size_t index;    /* E_ITEM */
    } at;
    char *text;                 /* plain scalar typed as non-string, as written */
    struct flow__yaml_pos pos;  /* E_NODE: start; E_MEMBER: the key; E_ITEM: the item */
    struct flow__yaml_pos vpos; /* E_MEMBER: the value */
    uint32_t hash;
    uint8_t kind;
};

struct table {
    struct entry *slots;
    size_t count;
    size_t mask; /* slots - 1, or 0 before the first insert */
};

struct flow__yaml_doc {
    json_t *root;
    struct table table;
    FLOW__VEC(struct flow__yaml_dup) dups; /* keys owned (flow__strdup) */
    /* Values of duplicate keys, kept until the document is freed: the
     * position table and the duplicates found inside them point into them. */
    FLOW__VEC(json_t *) dropped;
};

static uint32_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

static uint32_t entry_hash(uint8_t kind, const void *node, const char *key, size_t index)
{
    uint32_t h = ptr_hash(node) ^ kind;
    if (kind == E_MEMBER)
        h ^= flow__strhash(key, strlen(key)) * 31u;
    else if (kind == E_ITEM)
        h ^= (uint32_t)(index * 0x9e3779b1u);
    return h;
}

static bool entry_matches(const struct entry *e, uint8_t kind, uint32_t hash, const void *node,
                          const char *key, size_t index)
{
    if (e->kind != kind || e->hash != hash || e->node != node)
        return false;
    if (kind == E_MEMBER)
        return strcmp(e->at.key, key) == 0;
    if (kind == E_ITEM)
        return e->at.index == index;
    return true;
}

static const struct entry *table_find(const struct table *t, uint8_t kind, const void *node,
                                      const char *key, size_t index)
{
    if (!t->slots || !node || (kind == E_MEMBER && !key))
        return NULL;
    uint32_t h = entry_hash(kind, node, key, index);
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const struct entry *e = &t->slots[i];
        if (e->kind == E_EMPTY)
            return NULL;
        if (entry_matches(e, kind, h, node, key, index))
            return e;
    }
}

static flow_err table_grow(struct table *t)
{
    size_t n = t->slots ? (t->mask + 1) * 2 : 64;
    struct entry *slots = flow__calloc(n, sizeof(*slots));
    if (!slots)
        return FLOW_ENOMEM;
    for (size_t i = 0; t->slots && i <= t->mask; i++) {
        if (t->slots[i].kind == E_EMPTY)
            continue;
        size_t j = t->slots[i].hash & (n - 1);
        while (slots[j].kind != E_EMPTY)
            j = (j + 1) & (n - 1);
        slots[j] = t->slots[i];
    }
    flow__free(t->slots);
    t->slots = slots;
    t->mask = n - 1;
    return FLOW_OK;
}

/* Add an entry (the caller knows it is new). `e->text` passes to the table,
 * also on failure. */
static flow_err table_add(struct table *t, struct entry *e)
{
    if (!t->slots || (t->count + 1) * 2 > t->mask + 1) {
        if (table_grow(t)) {
            flow__free(e->text);
            return FLOW_ENOMEM;
        }
    }
    e->hash = entry_hash(e->kind, e->node, e->at.key, e->at.index);
    size_t i = e->hash & t->mask;
    while (t->slots[i].kind != E_EMPTY)
        i = (i + 1) & t->mask;
    t->slots[i] = *e;
    t->count++;
    return FLOW_OK;
}

static void table_cleanup(struct table *t)
{
    for (size_t i = 0; t->slots && i <= t->mask; i++)
        flow__free(t->slots[i].text);
    flow__free(t->slots);
    t->slots = NULL;
    t->count = t->mask = 0;
}

/* ------------------------------------------------------------------------ */
/* Document accessors                                                       */

void flow__yaml_free(struct flow__yaml_doc *d)
{
    if (!d)
        return;
    json_decref(d->root);
    table_cleanup(&d->table);
    for (size_t i = 0; i < d->dups.count; i++)
        flow__free((char *)d->dups.items[i].key);
    FLOW__VEC_FREE(&d->dups);
    for (size_t i = 0; i < d->dropped.count; i++)
        json_decref(d->dropped.items[i]);
    FLOW__VEC_FREE(&d->dropped);
    flow__free(d);
}

json_t *flow__yaml_root(const struct flow__yaml_doc *d)
{
    return d->root;
}

static const struct flow__yaml_pos no_pos = {0, 0};

struct flow__yaml_pos flow__yaml_node_pos(const struct flow__yaml_doc *d, const json_t *node)
{
    const struct entry *e = table_find(&d->table, E_NODE, node, NULL, 0);
    return e ? e->pos : no_pos;
}

struct flow__yaml_pos flow__yaml_key_pos(const struct flow__yaml_doc *d, const json_t *map,
                                         const char *key)
{
    const struct entry *e = table_find(&d->table, E_MEMBER, map, key, 0);
    return e ? e->pos : no_pos;
}

struct flow__yaml_pos flow__yaml_value_pos(const struct flow__yaml_doc *d, const json_t *map,
                                           const char *key)
{
    const struct entry *e = table_find(&d->table, E_MEMBER, map, key, 0);
    return e ? e->vpos : no_pos;
}

struct flow__yaml_pos flow__yaml_item_pos(const struct flow__yaml_doc *d, const json_t *seq,
                                          size_t i)
{
    const struct entry *e = table_find(&d->table, E_ITEM, seq, NULL, i);
    return e ? e->pos : no_pos;
}

const char *flow__yaml_value_text(const struct flow__yaml_doc *d, const json_t *map,
                                  const char *key)
{
    const struct entry *e = table_find(&d->table, E_MEMBER, map, key, 0);
    return e ? e->text : NULL;
}

const char *flow__yaml_item_text(const struct flow__yaml_doc *d, const json_t *seq, size_t i)
{
    const struct entry *e = table_find(&d->table, E_ITEM, seq, NULL, i);
    return e ? e->text : NULL;
}

size_t flow__yaml_dup_count(const struct flow__yaml_doc *d)
{
    return d->dups.count;
}

const struct flow__yaml_dup *flow__yaml_dup_at(const struct flow__yaml_doc *d, size_t i)
{
    return i < d->dups.count ? &d->dups.items[i] : NULL;
}

/* ------------------------------------------------------------------------ */
/* Building                                                                 */

/* A collection being filled. */
struct frame {
    json_t *node;
    char *anchor;       /* registered when the collection ends, or NULL */
    size_t start_total; /* nodes counted before it began */
    struct flow__yaml_pos pos;
    char *key;          /* mappings: the key waiting for its value, or NULL */
    struct flow__yaml_pos key_pos;
    bool dup; /* the waiting key is a duplicate: its value is dropped */
};

struct anchor {
    char *name;
    json_t *value;
    size_t size; /* nodes it stands for, aliases inside it expanded */
};

struct builder {
    const char *file;
    const char *text; /* what libyaml reads, for positions of reader errors */
    size_t len;
    struct flow__yaml_doc *doc;
    FLOW__VEC(struct frame) stack;
    FLOW__VEC(struct anchor) anchors;
    struct flow__strmap anchor_index; /* name -> index + 1 (the latest definition) */
    size_t total;                     /* nodes so far, aliases expanded */
    int documents;
    flow_err rc; /* first failure */
    flow_error *err;
};

static struct flow__yaml_pos mark_pos(yaml_mark_t m)
{
    struct flow__yaml_pos p = {(int)m.line + 1, (int)m.column + 1};
    return p;
}

static void fail(struct builder *b, struct flow__yaml_pos pos, const char *fmt, ...)
    FLOW__PRINTF(3, 4);

static void fail(struct builder *b, struct flow__yaml_pos pos, const char *fmt, ...)
{
    if (b->rc)
        return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    b->rc = flow__error_at(b->err, FLOW_EPARSE, b->file, pos.line, pos.column, "%s", msg);
}

static void nomem(struct builder *b)
{
    if (b->rc)
        return;
    b->rc = flow__error(b->err, FLOW_ENOMEM, "out of memory reading '%s'", b->file);
}

/* Count `n` more nodes against the cap. */
static bool count_nodes(struct builder *b, size_t n, struct flow__yaml_pos pos)
{
    if (n > FLOW__YAML_MAX_NODES || b->total > FLOW__YAML_MAX_NODES - n) {
        fail(b, pos, "the document is too large: over %d values once aliases are expanded",
             FLOW__YAML_MAX_NODES);
        return false;
    }
    b->total += n;
    return true;
}

static bool register_anchor(struct builder *b, const char *name, json_t *value, size_t size)
{
    struct anchor a = {flow__strdup(name), json_incref(value), size};
    size_t before = b->anchors.count;
    flow_err rc = FLOW_OK;
    if (a.name)
        FLOW__VEC_PUSH(&b->anchors, a, rc);
    if (rc != FLOW_OK || b->anchors.count == before) {
        flow__free(a.name);
        json_decref(a.value);
        nomem(b);
        return false;
    }
    if (flow__strmap_put(&b->anchor_index, a.name, (void *)(uintptr_t)b->anchors.count)) {
        nomem(b);
        return false;
    }
    return true;
}

/* Keep the value of a duplicate key (stolen) with the document. */
static void keep_dropped(struct builder *b, json_t *v)
{
    size_t before = b->doc->dropped.count;
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&b->doc->dropped, v, rc);
    if (rc != FLOW_OK || b->doc->dropped.count == before) {
        json_decref(v);
        nomem(b);
    }
}

/* Attach a finished value (stolen) to the collection on top of the stack, or
 * make it the root. `text` (borrowed) is the plain scalar as written when it
 * was typed as something else than a string. */
static void add_value(struct builder *b, json_t *v, struct flow__yaml_pos pos, const char *text)
{
    if (b->stack.count == 0) {
        json_decref(b->doc->root);
        b->doc->root = v;
        return;
    }
    struct frame *f = &b->stack.items[b->stack.count - 1];
    struct entry e = {0};
    e.text = text ? flow__strdup(text) : NULL;
    if (text && !e.text) {
        json_decref(v);
        nomem(b);
        return;
    }
    if (json_is_array(f->node)) {
        e.kind = E_ITEM;
        e.node = f->node;
        e.at.index = json_array_size(f->node);
        e.pos = pos;
        if (json_array_append_new(f->node, v)) {
            flow__free(e.text);
            nomem(b);
            return;
        }
    } else {
        char *key = f->key;
        bool dup = f->dup;
        f->key = NULL;
        f->dup = false;
        if (dup) {
            flow__free(key);
            flow__free(e.text);
            keep_dropped(b, v);
            return;
        }
        if (json_object_set_new(f->node, key, v)) {
            flow__free(key);
            flow__free(e.text);
            nomem(b);
            return;
        }
        e.kind = E_MEMBER;
        e.node = f->node;
        e.at.key = json_object_iter_key(json_object_iter_at(f->node, key));
        e.pos = f->key_pos;
        e.vpos = pos;
        flow__free(key);
    }
    if (table_add(&b->doc->table, &e))
        nomem(b);
}

/* True when the top of the stack is a mapping waiting for a key. */
static bool wants_key(const struct builder *b)
{
    if (b->stack.count == 0)
        return false;
    const struct frame *f = &b->stack.items[b->stack.count - 1];
    return json_is_object(f->node) && !f->key;
}

static void set_key(struct builder *b, const char *key, size_t len, struct flow__yaml_pos pos)
{
    struct frame *f = &b->stack.items[b->stack.count - 1];
    if (strlen(key) != len) {
        fail(b, pos, "a mapping key cannot hold a NUL character");
        return;
    }
    f->key = flow__strdup(key);
    if (!f->key) {
        nomem(b);
        return;
    }
    f->key_pos = pos;
    f->dup = json_object_get(f->node, key) != NULL;
    if (!f->dup)
        return;
    struct flow__yaml_dup d = {f->node, flow__strdup(key), pos};
    size_t before = b->doc->dups.count;
    flow_err rc = FLOW_OK;
    if (d.key)
        FLOW__VEC_PUSH(&b->doc->dups, d, rc);
    if (rc != FLOW_OK || b->doc->dups.count == before) {
        flow__free((char *)d.key);
        nomem(b);
    }
}

/* --- scalars (YAML 1.2 core schema) --- */

static bool is_null_text(const char *s, size_t len)
{
    return len == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static int bool_text(const char *s)
{
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return 1;
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return 0;
    return -1;
}

static bool all_of(const char *s, const char *set)
{
    return *s && strspn(s, set) == strlen(s);
}

/* 1: an integer in *out; 0: not an integer; -1: an integer too large. */
static int int_text(const char *s, json_int_t *out, double *big)
{
    int base = 10;
    const char *digits = s;
    if (s[0] == '0' && s[1] == 'x') {
        base = 16;
        digits = s + 2;
        if (!all_of(digits, "0123456789abcdefABCDEF"))
            return 0;
    } else if (s[0] == '0' && s[1] == 'o') {
        base = 8;
        digits = s + 2;
        if (!all_of(digits, "01234567"))
            return 0;
    } else {
        const char *p = (*s == '-' || *s == '+') ? s + 1 : s;
        if (!all_of(p, "0123456789"))
            return 0;
    }
    errno = 0;
    char *end = NULL;
    long long v;
    if (base == 10) {
        v = strtoll(digits, &end, 10);
    } else {
        unsigned long long u = strtoull(digits, &end, base);
        if (u > (unsigned long long)LLONG_MAX)
            errno = ERANGE;
        v = (long long)u;
    }
    if (errno == ERANGE) {
        *big = base == 10 ? strtod(digits, NULL) : 0;
        return -1;
    }
    *out = (json_int_t)v;
    return 1;
}

/* 1: a finite float; 0: not a float; -1: .inf or .nan. */
static int float_text(const char *s, double *out)
{
    const char *p = (*s == '-' || *s == '+') ? s + 1 : s;
    if (!strcmp(p, ".inf") || !strcmp(p, ".Inf") || !strcmp(p, ".INF") || !strcmp(s, ".nan") ||
        !strcmp(s, ".NaN") || !strcmp(s, ".NAN"))
        return -1;
    /* [-+]? ( \.[0-9]+ | [0-9]+ ( \.[0-9]* )? ) ( [eE][-+]?[0-9]+ )? */
    const char *q = p;
    size_t int_digits = strspn(q, "0123456789");
    q += int_digits;
    size_t frac_digits = 0;
    if (*q == '.') {
        q++;
        frac_digits = strspn(q, "0123456789");
        q += frac_digits;
    }
    if (int_digits == 0 && frac_digits == 0)
        return 0;
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '-' || *q == '+')
            q++;
        size_t exp_digits = strspn(q, "0123456789");
        if (exp_digits == 0)
            return 0;
        q += exp_digits;
    }
    if (*q)
        return 0;
    double d = strtod(s, NULL);
    if (!isfinite(d))
        return -1;
    *out = d;
    return 1;
}

enum want { WANT_ANY = 0, WANT_STR, WANT_INT, WANT_FLOAT, WANT_BOOL, WANT_NULL };

/* Type a scalar. *typed is set when a plain scalar became a non-string. */
static json_t *scalar_value(struct builder *b, const yaml_event_t *ev, struct flow__yaml_pos pos,
                            bool *typed)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    enum want want = plain ? WANT_ANY : WANT_STR;
    *typed = false;
    if (tag) {
        if (!strcmp(tag, "!") || !strcmp(tag, YAML_STR_TAG))
            want = WANT_STR;
        else if (!strcmp(tag, YAML_INT_TAG))
            want = WANT_INT;
        else if (!strcmp(tag, YAML_FLOAT_TAG))
            want = WANT_FLOAT;
        else if (!strcmp(tag, YAML_BOOL_TAG))
            want = WANT_BOOL;
        else if (!strcmp(tag, YAML_NULL_TAG))
            want = WANT_NULL;
        else {
            fail(b, pos, "unsupported tag '%s' (use !!str, !!int, !!float, !!bool or !!null)", tag);
            return NULL;
        }
    }
    json_t *v = NULL;
    if (want == WANT_STR || strlen(s) != len) {
        if (want != WANT_STR && want != WANT_ANY) {
            fail(b, pos, "'%s' cannot hold a NUL character", tag);
            return NULL;
        }
        v = json_stringn(s, len);
        if (!v)
            nomem(b);
        return v;
    }
    if ((want == WANT_ANY || want == WANT_NULL) && is_null_text(s, len)) {
        v = json_null();
    } else if ((want == WANT_ANY || want == WANT_BOOL) && bool_text(s) >= 0) {
        v = json_boolean(bool_text(s));
    } else if (want == WANT_ANY || want == WANT_INT || want == WANT_FLOAT) {
        json_int_t i = 0;
        double d = 0;
        int r = int_text(s, &i, &d);
        if (r == 1) {
            v = want == WANT_FLOAT ? json_real((double)i) : json_integer(i);
        } else if (r == -1) {
            if (want == WANT_INT || d == 0) {
                fail(b, pos, "integer '%s' is too large", s);
                return NULL;
            }
            v = json_real(d);
        } else if (want != WANT_INT) {
            r = float_text(s, &d);
            if (r == -1) {
                fail(b, pos, "'%s' is not a finite number, which JSON cannot hold", s);
                return NULL;
            }
            if (r == 1)
                v = json_real(d);
        }
        if (!v && want != WANT_ANY) {
            fail(b, pos, "'%s' is not %s", s, want == WANT_INT ? "an integer" : "a number");
            return NULL;
        }
        if (!v)
            v = json_stringn(s, len);
    } else {
        fail(b, pos, "'%s' is not %s", s, want == WANT_BOOL ? "a boolean" : "null");
        return NULL;
    }
    if (!v) {
        nomem(b);
        return NULL;
    }
    *typed = !json_is_string(v);
    return v;
}

static void on_scalar(struct builder *b, const yaml_event_t *ev)
{
    struct flow__yaml_pos pos = mark_pos(ev->start_mark);
    if (!count_nodes(b, 1, pos))
        return;
    if (wants_key(b)) {
        const char *tag = (const char *)ev->data.scalar.tag;
        if (tag && strcmp(tag, "!") && strncmp(tag, "tag:yaml.org,2002:", 18)) {
            fail(b, pos, "unsupported tag '%s' on a mapping key", tag);
            return;
        }
        set_key(b, (const char *)ev->data.scalar.value, ev->data.scalar.length, pos);
        return;
    }
    bool typed = false;
    json_t *v = scalar_value(b, ev, pos, &typed);
    if (!v)
        return;
    const char *anchor = (const char *)ev->data.scalar.anchor;
    if (anchor && !register_anchor(b, anchor, v, 1)) {
        json_decref(v);
        return;
    }
    add_value(b, v, pos, typed ? (const char *)ev->data.scalar.value : NULL);
}

static void on_alias(struct builder *b, const yaml_event_t *ev)
{
    struct flow__yaml_pos pos = mark_pos(ev->start_mark);
    const char *name = (const char *)ev->data.alias.anchor;
    uintptr_t at = (uintptr_t)flow__strmap_get(&b->anchor_index, name);
    if (!at) {
        fail(b, pos, "unknown anchor '%s' (an alias must follow its anchor's value)", name);
        return;
    }
    const struct anchor *a = &b->anchors.items[at - 1];
    if (!count_nodes(b, a->size, pos))
        return;
    if (wants_key(b)) {
        if (!json_is_string(a->value)) {
            fail(b, pos, "a mapping key must be a string: alias '%s' is not one", name);
            return;
        }
        set_key(b, json_string_value(a->value), json_string_length(a->value), pos);
        return;
    }
    add_value(b, json_incref(a->value), pos, NULL);
}

static void on_start(struct builder *b, const yaml_event_t *ev, bool mapping)
{
    struct flow__yaml_pos pos = mark_pos(ev->start_mark);
    const char *tag = (const char *)(mapping ? ev->data.mapping_start.tag
                                             : ev->data.sequence_start.tag);
    const char *anchor = (const char *)(mapping ? ev->data.mapping_start.anchor
                                                : ev->data.sequence_start.anchor);
    if (wants_key(b)) {
        fail(b, pos, "a mapping key must be a string, not a %s", mapping ? "mapping" : "list");
        return;
    }
    if (tag && strcmp(tag, "!") && strcmp(tag, mapping ? YAML_MAP_TAG : YAML_SEQ_TAG)) {
        fail(b, pos, "unsupported tag '%s' (use !!map or !!seq)", tag);
        return;
    }
    if (b->stack.count >= FLOW__YAML_MAX_DEPTH) {
        fail(b, pos, "values nest deeper than %d levels", FLOW__YAML_MAX_DEPTH);
        return;
    }
    size_t start_total = b->total;
    if (!count_nodes(b, 1, pos))
        return;
    struct frame f = {0};
    f.node = mapping ? json_object() : json_array();
    f.anchor = anchor ? flow__strdup(anchor) : NULL;
    f.start_total = start_total;
    f.pos = pos;
    struct entry e = {.kind = E_NODE, .node = f.node, .pos = pos};
    size_t before = b->stack.count;
    flow_err rc = FLOW_OK;
    if (f.node && (!anchor || f.anchor) && table_add(&b->doc->table, &e) == FLOW_OK)
        FLOW__VEC_PUSH(&b->stack, f, rc);
    if (rc != FLOW_OK || b->stack.count == before) {
        json_decref(f.node);
        flow__free(f.anchor);
        nomem(b);
    }
}

static void on_end(struct builder *b)
{
    struct frame f = b->stack.items[--b->stack.count];
    flow__free(f.key); /* only set when the text was broken, which libyaml reports */
    if (f.anchor && !register_anchor(b, f.anchor, f.node, b->total - f.start_total)) {
        flow__free(f.anchor);
        json_decref(f.node);
        return;
    }
    flow__free(f.anchor);
    add_value(b, f.node, f.pos, NULL);
}

/* Where a reader error happened: the line and column of byte `offset`. */
static struct flow__yaml_pos offset_pos(const char *text, size_t len, size_t offset)
{
    struct flow__yaml_pos p = {1, 1};
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            p.line++;
            p.column = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            p.column++;
        }
    }
    return p;
}

static void parser_error(struct builder *b, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR) {
        nomem(b);
        return;
    }
    const char *problem = p->problem ? p->problem : "unknown problem";
    if (p->error == YAML_READER_ERROR) {
        struct flow__yaml_pos pos = offset_pos(b->text, b->len, p->problem_offset);
        fail(b, pos, "cannot read the text: %s", problem);
        return;
    }
    struct flow__yaml_pos pos = mark_pos(p->problem_mark);
    if (p->context) {
        struct flow__yaml_pos cpos = mark_pos(p->context_mark);
        fail(b, pos, "syntax error: %s, %s started at line %d, column %d", problem, p->context,
             cpos.line, cpos.column);
    } else {
        fail(b, pos, "syntax error: %s", problem);
    }
}

/* The value of the four hex digits at `p`, or -1. Reads exactly four bytes:
 * the text need not be NUL-terminated (sscanf and strspn would read on). */
static long hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* libyaml rejects the UTF-16 surrogate pairs that JSON writers (Python's
 * json.dumps, jansson's JSON_ENSURE_ASCII) use for characters beyond the
 * BMP: rewrite "\uD83D\uDE00" as the YAML escape "\U0001F600" inside the
 * double-quoted strings of a JSON text. Returns NULL when there is nothing
 * to rewrite (or on allocation failure, leaving libyaml to complain). */
static char *rewrite_surrogates(const char *text, size_t len, size_t *out_len)
{
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
        i++;
    if (i == len || (text[i] != '{' && text[i] != '['))
        return NULL;
    if (!memmem(text, len, "\\ud", 3) && !memmem(text, len, "\\uD", 3))
        return NULL;
    char *out = flow__malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    bool in_string = false;
    for (i = 0; i < len; i++) {
        char c = text[i];
        if (!in_string) {
            in_string = c == '"';
            out[o++] = c;
            continue;
        }
        if (c == '"') {
            in_string = false;
            out[o++] = c;
            continue;
        }
        if (c != '\\' || i + 1 >= len) {
            out[o++] = c;
            continue;
        }
        long hi = i + 12 <= len && text[i + 1] == 'u' ? hex4(text + i + 2) : -1;
        long lo = hi >= 0 && text[i + 6] == '\\' && text[i + 7] == 'u' ? hex4(text + i + 8) : -1;
        if (hi >= 0xD800 && hi <= 0xDBFF && lo >= 0xDC00 && lo <= 0xDFFF) {
            unsigned cp = (unsigned)(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00));
            char esc[16];
            snprintf(esc, sizeof(esc), "\\U%08X", cp);
            memcpy(out + o, esc, 10);
            o += 10;
            i += 11;
            continue;
        }
        /* Any other escape: copy it whole so that \" does not end the string. */
        out[o++] = c;
        out[o++] = text[++i];
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

flow_err flow__yaml_parse(const char *text, size_t len, const char *file,
                          struct flow__yaml_doc **out, flow_error *err)
{
    *out = NULL;
    if (!file)
        file = "<string>";
    if (len > FLOW__YAML_MAX_BYTES)
        return flow__error_at(err, FLOW_EPARSE, file, 0, 0, "'%s' is too large (over %zu MiB)",
                              file, FLOW__YAML_MAX_BYTES >> 20);
    struct builder b = {0};
    b.file = file;
    b.err = err;
    flow__strmap_init(&b.anchor_index);
    b.doc = flow__calloc(1, sizeof(*b.doc));
    if (!b.doc)
        return flow__error(err, FLOW_ENOMEM, "out of memory reading '%s'", file);
    size_t fixed_len = 0;
    char *fixed = rewrite_surrogates(text, len, &fixed_len);
    b.text = fixed ? fixed : text;
    b.len = fixed ? fixed_len : len;

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        flow__free(fixed);
        flow__yaml_free(b.doc);
        return flow__error(err, FLOW_ENOMEM, "out of memory reading '%s'", file);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)b.text, b.len);
    bool done = false;
    while (!done && b.rc == FLOW_OK) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            parser_error(&b, &parser);
            break;
        }
        switch (ev.type) {
        case YAML_DOCUMENT_START_EVENT:
            if (++b.documents > 1)
                fail(&b, mark_pos(ev.start_mark),
                     "a second YAML document ('---'): a workflow file holds exactly one");
            break;
        case YAML_SCALAR_EVENT:
            on_scalar(&b, &ev);
            break;
        case YAML_ALIAS_EVENT:
            on_alias(&b, &ev);
            break;
        case YAML_MAPPING_START_EVENT:
            on_start(&b, &ev, true);
            break;
        case YAML_SEQUENCE_START_EVENT:
            on_start(&b, &ev, false);
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            on_end(&b);
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_NO_EVENT:
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    flow__free(fixed);

    while (b.stack.count > 0) {
        struct frame *f = &b.stack.items[--b.stack.count];
        json_decref(f->node);
        flow__free(f->anchor);
        flow__free(f->key);
    }
    FLOW__VEC_FREE(&b.stack);
    for (size_t i = 0; i < b.anchors.count; i++) {
        flow__free(b.anchors.items[i].name);
        json_decref(b.anchors.items[i].value);
    }
    FLOW__VEC_FREE(&b.anchors);
    flow__strmap_cleanup(&b.anchor_index);

    if (b.rc == FLOW_OK && !b.doc->root)
        b.doc->root = json_null();
    if (b.rc) {
        flow__yaml_free(b.doc);
        return b.rc;
    }
    *out = b.doc;
    return FLOW_OK;
}
