/* yaml.c -- YAML and JSON text to jansson values through libyaml's event
 * parser, with their positions: a record per mapping or sequence (where it
 * starts) and one per member (key and value positions) or item, kept in
 * document order, each collection's children together. See yaml.h for the
 * typing rules. */
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
#include "util/arena.h"
#include "util/error.h"
#include "util/strmap.h"
#include "util/vec.h"

/* ------------------------------------------------------------------------ */
/* Positions                                                                */

/* A member of a mapping or an item of a sequence: where it is written. */
struct child {
    const char *key;            /* mappings: the key (in the doc's arena); NULL for items */
    const char *text;           /* plain scalar typed as non-string, as written (arena), or NULL */
    struct flow__yaml_pos pos;  /* member: the key; item: the item */
    struct flow__yaml_pos vpos; /* member: the value */
};

/* A mapping or a sequence of the document. */
struct container {
    const void *node;
    struct flow__yaml_pos pos; /* where it starts */
    uint32_t first;            /* its children: kids[first .. first + count), item i at first + i */
    uint32_t count;
    uint32_t hint;   /* mappings: the child the last lookup found (readers go in order) */
    uint32_t mask;   /* index: slots - 1 */
    uint32_t *index; /* big mappings: child position + 1 by key hash, built at the first miss */
};

/* Mappings with more children than this get an index when a lookup misses the hint. */
#define SCAN_MAX 8

/* Containers looked up lately (the loader goes back and forth between a task, its mapping and
 * its lists), so that most lookups need no hashing. */
#define RECENT 4

/* How far after the last container found a lookup looks before hashing. */
#define AHEAD 8

struct lookup {
    const void *node[RECENT];
    uint32_t at[RECENT];
    unsigned next;
    uint32_t last; /* the container found last: the next one wanted is often just after it */
};

struct flow__yaml_doc {
    json_t *root;
    /* Every mapping and sequence in the order they start, each with its children together
     * once it has ended. Positions are recorded once, in document order, and read back mostly
     * in the same order: unlike one hash table of every node, this stays compact and
     * cache-friendly for big files (bench W5). */
    FLOW__VEC(struct container) containers;
    FLOW__VEC(struct child) kids;
    uint32_t *by_node; /* container position + 1 by node pointer hash */
    uint32_t by_node_mask;
    struct lookup *recent;
    struct flow__arena strings; /* keys and typed scalars' texts */
    FLOW__VEC(struct flow__yaml_dup) dups; /* keys owned (flow__strdup) */
    /* Values of duplicate keys, kept until the document is freed: the
     * position records and the duplicates found inside them point into them. */
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

/* The record of mapping or sequence `node`, or NULL when it is not one of `d`. */
static struct container *container_of(const struct flow__yaml_doc *d, const void *node)
{
    if (!node || !d->by_node)
        return NULL;
    struct lookup *lk = d->recent;
    for (unsigned i = 0; i < RECENT; i++) {
        if (lk->node[i] == node)
            return &d->containers.items[lk->at[i]];
    }
    uint32_t found = UINT32_MAX;
    for (size_t k = (size_t)lk->last + 1; k < d->containers.count && k <= (size_t)lk->last + AHEAD;
         k++) {
        if (d->containers.items[k].node == node) {
            found = (uint32_t)k;
            break;
        }
    }
    for (uint32_t i = ptr_hash(node) & d->by_node_mask; found == UINT32_MAX;
         i = (i + 1) & d->by_node_mask) {
        uint32_t at = d->by_node[i];
        if (!at)
            return NULL;
        if (d->containers.items[at - 1].node == node)
            found = at - 1;
    }
    lk->node[lk->next] = node;
    lk->at[lk->next] = found;
    lk->next = (lk->next + 1) % RECENT;
    lk->last = found;
    return &d->containers.items[found];
}

/* Power of two slots, at least twice `count`; 0 when too many. */
static size_t slots_for(size_t count)
{
    size_t n = 16;
    while (n < count * 2) {
        if (n > (size_t)UINT32_MAX / 2)
            return 0;
        n *= 2;
    }
    return n;
}

/* Index the containers by node once the document is complete. */
static flow_err index_nodes(struct flow__yaml_doc *d)
{
    size_t n = slots_for(d->containers.count);
    if (!n)
        return FLOW_ENOMEM;
    d->by_node = flow__calloc(n, sizeof(*d->by_node));
    d->recent = flow__calloc(1, sizeof(*d->recent));
    if (!d->by_node || !d->recent)
        return FLOW_ENOMEM;
    d->by_node_mask = (uint32_t)(n - 1);
    for (size_t k = 0; k < d->containers.count; k++) {
        uint32_t i = ptr_hash(d->containers.items[k].node) & d->by_node_mask;
        while (d->by_node[i])
            i = (i + 1) & d->by_node_mask;
        d->by_node[i] = (uint32_t)k + 1;
    }
    return FLOW_OK;
}

/* A big mapping's index of its children by key. Without memory the caller scans. */
static void index_keys(const struct flow__yaml_doc *d, struct container *c)
{
    size_t n = slots_for(c->count);
    uint32_t *slots = n ? flow__calloc(n, sizeof(*slots)) : NULL;
    if (!slots)
        return;
    const struct child *kids = d->kids.items + c->first;
    for (uint32_t k = 0; k < c->count; k++) {
        uint32_t i = flow__strhash(kids[k].key, strlen(kids[k].key)) & (uint32_t)(n - 1);
        while (slots[i])
            i = (i + 1) & (uint32_t)(n - 1);
        slots[i] = k + 1;
    }
    c->index = slots;
    c->mask = (uint32_t)(n - 1);
}

/* Member `key` of mapping `map`, or NULL. */
static const struct child *find_member(const struct flow__yaml_doc *d, const json_t *map,
                                       const char *key)
{
    struct container *c = key ? container_of(d, map) : NULL;
    if (!c)
        return NULL;
    const struct child *kids = d->kids.items + c->first;
    if (c->count > SCAN_MAX) {
        for (uint32_t k = c->hint; k < c->count && k < c->hint + 2; k++) {
            if (kids[k].key && strcmp(kids[k].key, key) == 0) {
                c->hint = k;
                return &kids[k];
            }
        }
        if (!c->index)
            index_keys(d, c);
    }
    if (c->index) {
        for (uint32_t i = flow__strhash(key, strlen(key)) & c->mask;; i = (i + 1) & c->mask) {
            uint32_t k = c->index[i];
            if (!k)
                return NULL;
            if (strcmp(kids[k - 1].key, key) == 0) {
                c->hint = k - 1;
                return &kids[k - 1];
            }
        }
    }
    for (uint32_t k = 0; k < c->count; k++) {
        if (kids[k].key && strcmp(kids[k].key, key) == 0)
            return &kids[k];
    }
    return NULL;
}

/* Item `i` of sequence `seq`, or NULL. */
static const struct child *find_item(const struct flow__yaml_doc *d, const json_t *seq, size_t i)
{
    const struct container *c = container_of(d, seq);
    if (!c || i >= c->count)
        return NULL;
    const struct child *kid = &d->kids.items[c->first + i];
    return kid->key ? NULL : kid;
}

/* ------------------------------------------------------------------------ */
/* Document accessors                                                       */

void flow__yaml_free(struct flow__yaml_doc *d)
{
    if (!d)
        return;
    json_decref(d->root);
    for (size_t i = 0; i < d->containers.count; i++)
        flow__free(d->containers.items[i].index);
    FLOW__VEC_FREE(&d->containers);
    FLOW__VEC_FREE(&d->kids);
    flow__free(d->by_node);
    flow__free(d->recent);
    flow__arena_cleanup(&d->strings);
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
    const struct container *c = container_of(d, node);
    return c ? c->pos : no_pos;
}

struct flow__yaml_pos flow__yaml_key_pos(const struct flow__yaml_doc *d, const json_t *map,
                                         const char *key)
{
    const struct child *e = find_member(d, map, key);
    return e ? e->pos : no_pos;
}

struct flow__yaml_pos flow__yaml_value_pos(const struct flow__yaml_doc *d, const json_t *map,
                                           const char *key)
{
    const struct child *e = find_member(d, map, key);
    return e ? e->vpos : no_pos;
}

bool flow__yaml_member(const struct flow__yaml_doc *d, const json_t *map, const char *key,
                       struct flow__yaml_pos *key_pos, struct flow__yaml_pos *value_pos,
                       const char **text)
{
    const struct child *e = find_member(d, map, key);
    *key_pos = e ? e->pos : no_pos;
    *value_pos = e ? e->vpos : no_pos;
    *text = e ? e->text : NULL;
    return e != NULL;
}

struct flow__yaml_pos flow__yaml_item_pos(const struct flow__yaml_doc *d, const json_t *seq,
                                          size_t i)
{
    const struct child *e = find_item(d, seq, i);
    return e ? e->pos : no_pos;
}

const char *flow__yaml_value_text(const struct flow__yaml_doc *d, const json_t *map,
                                  const char *key)
{
    const struct child *e = find_member(d, map, key);
    return e ? e->text : NULL;
}

const char *flow__yaml_item_text(const struct flow__yaml_doc *d, const json_t *seq, size_t i)
{
    const struct child *e = find_item(d, seq, i);
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
    uint32_t rec;       /* its record in doc->containers */
    size_t mark;        /* its children start at pending[mark] */
    char *key;          /* mappings: the key waiting for its value (doc arena), or NULL */
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
    /* Children of the open collections, the innermost's last: moved to doc->kids together
     * when their collection ends. */
    FLOW__VEC(struct child) pending;
    FLOW__VEC(struct anchor) anchors;
    struct flow__strmap anchor_index; /* name -> index + 1 (the latest definition) */
    size_t total;                     /* nodes so far, aliases expanded */
    size_t aliased;                   /* nodes that aliases stand for, against the cap */
    struct recent_string *recent_strings; /* RECENT_STRINGS slots by hash, or NULL */
    int documents;
    flow_err rc; /* first failure */
    flow_error *err;
};

/* Short strings seen lately, by hash: a file says the same things again and again (a command,
 * task names in `after`), and a string made once and shared costs two blocks less, to make and
 * to free (bench W5: a quarter of the blocks of a 100,000-task file). The tree may share values
 * anyway (aliases, jansson's true, false and null): readers never change it. */
#define RECENT_STRINGS 4096
#define RECENT_STRING_MAX 64

struct recent_string {
    json_t *v; /* a reference, or NULL */
    uint32_t hash;
    uint32_t len;
};

/* A string value of `len` bytes (no NUL among them). */
static json_t *string_value(struct builder *b, const char *s, size_t len)
{
    if (!b->recent_strings || len > RECENT_STRING_MAX)
        return json_stringn(s, len);
    uint32_t h = flow__strhash(s, len);
    struct recent_string *slot = &b->recent_strings[h & (RECENT_STRINGS - 1)];
    /* The hash and length first: the value itself is elsewhere in memory. */
    if (slot->v && slot->hash == h && slot->len == len && memcmp(json_string_value(slot->v), s, len) == 0)
        return json_incref(slot->v);
    json_t *v = json_stringn(s, len);
    if (v) {
        json_decref(slot->v);
        slot->v = json_incref(v);
        slot->hash = h;
        slot->len = (uint32_t)len;
    }
    return v;
}

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

/* Count `n` more nodes; those an alias stands for (`alias`) count against the cap. Written
 * nodes do not: the size of the text bounds them, and a file of 100,000 tasks has more than a
 * million of them (bench W5). */
static bool count_nodes(struct builder *b, size_t n, bool alias, struct flow__yaml_pos pos)
{
    if (alias && (n > FLOW__YAML_MAX_NODES || b->aliased > FLOW__YAML_MAX_NODES - n)) {
        fail(b, pos, "the document is too large: its aliases stand for over %d values",
             FLOW__YAML_MAX_NODES);
        return false;
    }
    if (alias)
        b->aliased += n;
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
    struct child e = {0};
    e.text = text ? flow__arena_strdup(&b->doc->strings, text) : NULL;
    if (text && !e.text) {
        json_decref(v);
        nomem(b);
        return;
    }
    if (json_is_array(f->node)) {
        e.pos = pos;
        if (json_array_append_new(f->node, v)) {
            nomem(b);
            return;
        }
    } else {
        char *key = f->key;
        bool dup = f->dup;
        f->key = NULL;
        f->dup = false;
        if (dup) {
            keep_dropped(b, v);
            return;
        }
        if (json_object_set_new(f->node, key, v)) {
            nomem(b);
            return;
        }
        e.key = key;
        e.pos = f->key_pos;
        e.vpos = pos;
    }
    size_t before = b->pending.count;
    flow_err rc = FLOW_OK;
    FLOW__VEC_PUSH(&b->pending, e, rc);
    if (rc != FLOW_OK || b->pending.count == before)
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
    f->key = flow__arena_strdup(&b->doc->strings, key);
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
        v = strlen(s) == len ? string_value(b, s, len) : json_stringn(s, len);
        if (!v)
            nomem(b);
        return v;
    }
    /* Most plain scalars of a file are words (task names, commands): a word can be null or a
     * boolean, never a number, and one that does not start as those do is a string. */
    if (want == WANT_ANY && len > 0 && !strchr("~0123456789+-.", s[0])) {
        int bv = strchr("nNtTfF", s[0]) ? bool_text(s) : -1;
        v = bv >= 0                                            ? json_boolean(bv)
            : (s[0] == 'n' || s[0] == 'N') && is_null_text(s, len) ? json_null()
                                                               : string_value(b, s, len);
    } else if ((want == WANT_ANY || want == WANT_NULL) && is_null_text(s, len)) {
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
            v = string_value(b, s, len);
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
    if (!count_nodes(b, 1, false, pos))
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
    if (!count_nodes(b, a->size, true, pos))
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
    if (!count_nodes(b, 1, false, pos))
        return;
    struct frame f = {0};
    f.node = mapping ? json_object() : json_array();
    f.anchor = anchor ? flow__strdup(anchor) : NULL;
    f.start_total = start_total;
    f.pos = pos;
    f.rec = (uint32_t)b->doc->containers.count;
    f.mark = b->pending.count;
    struct container c = {.node = f.node, .pos = pos};
    struct flow__yaml_doc *d = b->doc;
    size_t before = d->containers.count;
    size_t depth = b->stack.count;
    flow_err rc = FLOW_OK;
    if (f.node && (!anchor || f.anchor) && d->containers.count < UINT32_MAX)
        FLOW__VEC_PUSH(&d->containers, c, rc);
    if (rc == FLOW_OK && d->containers.count > before)
        FLOW__VEC_PUSH(&b->stack, f, rc);
    if (rc != FLOW_OK || b->stack.count == depth) {
        d->containers.count = before;
        json_decref(f.node);
        flow__free(f.anchor);
        nomem(b);
    }
}

/* Move the children of the collection that ends from pending to the document. */
static bool keep_children(struct builder *b, const struct frame *f)
{
    struct flow__yaml_doc *d = b->doc;
    size_t n = b->pending.count - f->mark;
    flow_err rc = FLOW_OK;
    if (d->kids.count + n > UINT32_MAX)
        return false;
    FLOW__VEC_RESERVE(&d->kids, d->kids.count + n, rc);
    if (rc != FLOW_OK)
        return false;
    struct container *c = &d->containers.items[f->rec];
    c->first = (uint32_t)d->kids.count;
    c->count = (uint32_t)n;
    if (n)
        memcpy(d->kids.items + d->kids.count, b->pending.items + f->mark, n * sizeof(struct child));
    d->kids.count += n;
    b->pending.count = f->mark;
    return true;
}

static void on_end(struct builder *b)
{
    struct frame f = b->stack.items[--b->stack.count];
    if (!keep_children(b, &f)) {
        flow__free(f.anchor);
        json_decref(f.node);
        nomem(b);
        return;
    }
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
    flow__arena_init(&b.doc->strings, 4096);
    b.recent_strings = flow__calloc(RECENT_STRINGS, sizeof(*b.recent_strings)); /* NULL: none */
    size_t fixed_len = 0;
    char *fixed = rewrite_surrogates(text, len, &fixed_len);
    b.text = fixed ? fixed : text;
    b.len = fixed ? fixed_len : len;

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        flow__free(fixed);
        flow__free(b.recent_strings);
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
    }
    FLOW__VEC_FREE(&b.stack);
    FLOW__VEC_FREE(&b.pending);
    for (size_t i = 0; b.recent_strings && i < RECENT_STRINGS; i++)
        json_decref(b.recent_strings[i].v);
    flow__free(b.recent_strings);
    for (size_t i = 0; i < b.anchors.count; i++) {
        flow__free(b.anchors.items[i].name);
        json_decref(b.anchors.items[i].value);
    }
    FLOW__VEC_FREE(&b.anchors);
    flow__strmap_cleanup(&b.anchor_index);

    if (b.rc == FLOW_OK && !b.doc->root)
        b.doc->root = json_null();
    if (b.rc == FLOW_OK && index_nodes(b.doc) != FLOW_OK)
        nomem(&b);
    if (b.rc) {
        flow__yaml_free(b.doc);
        return b.rc;
    }
    *out = b.doc;
    return FLOW_OK;
}
