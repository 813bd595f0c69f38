/* store_memory.c -- the memory store ("memory:"): runs, journals, leases,
 * control requests and limits in this process only, for tests and
 * embedders that want no files. Nothing survives the process, and every open is a new, empty
 * store. Like run metadata, payloads are deep copies both ways: the store's
 * values are touched only under the store's io lock, while the values it
 * was given are reference-counted by the scheduler's threads and the ones it
 * hands out by the reader's (a jansson value is counted by one thread at a
 * time: see journal/durable.c). Large payloads and inputs are kept deflated
 * instead, as the other stores keep them (compress.h). */
#include "util/compat.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "store/compress.h"
#include "store/store.h"

#include "util/alloc.h"
#include "util/error.h"
#include "util/strmap.h"
#include "util/vec.h"

struct mem_request {
    char *kind;
    char *arg; /* may be NULL */
};

/* A record: its payload our own copy, or, when large, r.payload NULL and
 * the payload deflated in z[0, zlen). */
struct mem_rec {
    struct flow__jrec r;
    char *z;
    size_t zlen;
};

/* A run. Deleting one frees what it holds but keeps the entry (its key is
 * the map's) until close; creating the id again reuses it. */
struct mem_run {
    char key[80]; /* the map's key: the id */
    bool live;    /* false once deleted */
    struct flow__run_meta meta;         /* inputs NULL when kept in inputs_z */
    char *inputs_z;                     /* large inputs, deflated; or NULL */
    size_t inputs_zlen;
    FLOW__VEC(struct mem_rec) recs;
    json_t *last_payload;               /* our copy of the last payload appended */
    FLOW__VEC(struct mem_request) reqs; /* oldest first */
    char *lease_holder;                 /* NULL: no lease */
    double lease_expiry;
    json_t *answers;                    /* request -> its answer; NULL: none yet */
};

/* A slot of a concurrency key, held. */
struct mem_slot {
    int slot;
    char *holder;
    char *owner; /* may be NULL */
    double expires;
};

/* A holder's demand mark: it waits for slots of the key. */
struct mem_want {
    char *holder;
    double expires;
};

/* What a key limits: the slots held of it as a concurrency key, its starts
 * as a rate key (the two kinds share the entry of a key, never a field). */
struct mem_limit {
    char *key;                        /* the map's key */
    FLOW__VEC(struct mem_slot) slots; /* ascending slot numbers */
    FLOW__VEC(struct mem_want) wants; /* one per holder at most */
    FLOW__VEC(double) starts;         /* oldest first */
};

/* A cache entry. Removing one frees its value and keeps the struct (its
 * name is the map's key) until close; putting the name again reuses it. */
struct mem_cached {
    char *name;    /* the map's key: flow, task and key, each with its length */
    json_t *entry; /* our own deep copy; NULL: removed */
    double created, expires;
};

struct mem_store {
    struct flow__strmap runs;   /* id -> struct mem_run */
    struct flow__strmap limits; /* key -> struct mem_limit */
    struct flow__strmap cache;  /* name -> struct mem_cached */
};

#define MEM_NAME "memory:"

/* Free what `r` holds and mark it deleted. */
static void mem_run_clear(struct mem_run *r)
{
    flow__run_meta_cleanup(&r->meta);
    flow__free(r->inputs_z);
    r->inputs_z = NULL;
    for (size_t i = 0; i < r->recs.count; i++) {
        json_decref(r->recs.items[i].r.payload);
        flow__free(r->recs.items[i].z);
    }
    FLOW__VEC_FREE(&r->recs);
    json_decref(r->last_payload);
    r->last_payload = NULL;
    for (size_t i = 0; i < r->reqs.count; i++) {
        flow__free(r->reqs.items[i].kind);
        flow__free(r->reqs.items[i].arg);
    }
    FLOW__VEC_FREE(&r->reqs);
    flow__free(r->lease_holder);
    r->lease_holder = NULL;
    r->lease_expiry = 0;
    json_decref(r->answers);
    r->answers = NULL;
    r->live = false;
}

static flow_err mem_nomem(flow_error *err, const char *doing, const char *id)
{
    return flow__error(err, FLOW_ENOMEM, "out of memory %s run '%s' in store '" MEM_NAME "'",
                       doing, id);
}

static void mem_run_release(void *entry)
{
    mem_run_clear(entry);
}

/* The live run `id`, or NULL with FLOW_ENOTFOUND in `err`. */
static struct mem_run *mem_find(struct mem_store *s, const char *id, flow_error *err)
{
    struct mem_run *r = flow__strmap_get(&s->runs, id);
    if (r && r->live)
        return r;
    flow__error(err, FLOW_ENOTFOUND, "no run '%s' in store '" MEM_NAME "'", id);
    return NULL;
}

/* `v` deflated into a new *z of *zlen bytes when it is large and that is
 * worth it (compress.h), else *z NULL. FLOW_ENOMEM. The bytes are copied
 * out of the buffer, which grew to hold the whole text. */
static flow_err mem_pack(const json_t *v, char **z, size_t *zlen)
{
    *z = NULL;
    *zlen = 0;
    if (!flow__payload_big(v))
        return FLOW_OK;
    struct flow__buf b;
    flow__buf_init(&b, FLOW__BUF_DEFAULT_MAX);
    bool packed;
    flow_err rc = flow__payload_append(&b, v, &packed);
    if (rc == FLOW_OK && packed) {
        if ((*z = flow__malloc(b.len)))
            memcpy(*z, b.data, *zlen = b.len);
        else
            rc = FLOW_ENOMEM;
    }
    flow__buf_cleanup(&b);
    return rc;
}

/* Run `r`'s metadata as it was given, into `out` (what it owns is the
 * caller's to clean up with flow__run_meta_cleanup when `copy`; else only
 * out->inputs, when the inputs are kept deflated). FLOW_ENOMEM, or
 * flow__payload_load's codes. */
static flow_err mem_meta(const struct mem_run *r, bool copy, struct flow__run_meta *out)
{
    if (!copy)
        *out = r->meta;
    else if (flow__run_meta_copy(out, &r->meta) != FLOW_OK)
        return FLOW_ENOMEM;
    if (!r->inputs_z)
        return FLOW_OK;
    flow_err rc = flow__payload_load(r->inputs_z, r->inputs_zlen, &out->inputs);
    if (rc != FLOW_OK && copy)
        flow__run_meta_cleanup(out);
    return rc;
}

static flow_err mem_open(const char *url_rest, unsigned flags, void **priv, flow_error *err)
{
    *priv = NULL;
    if (*url_rest)
        return flow__error(err, FLOW_EINVAL,
                           "store url '" MEM_NAME "%s' has something after 'memory:' (the "
                           "memory store takes no path or options)",
                           url_rest);
    if (flags & FLOW__STORE_OPEN_NOCREATE)
        return flow__error(err, FLOW_ENOTFOUND,
                           "no store '" MEM_NAME "' (a memory store exists only in the process "
                           "that made it)");
    struct mem_store *s = flow__calloc(1, sizeof(*s));
    if (!s)
        return flow__error(err, FLOW_ENOMEM, "out of memory opening store '" MEM_NAME "'");
    flow__strmap_init(&s->runs);
    flow__strmap_init(&s->limits);
    flow__strmap_init(&s->cache);
    *priv = s;
    return FLOW_OK;
}

static void mem_slot_clear(struct mem_slot *sl)
{
    flow__free(sl->holder);
    flow__free(sl->owner);
}

static void mem_close(void *priv)
{
    struct mem_store *s = priv;
    if (!s)
        return;
    flow__store_run_entries_free(&s->runs, mem_run_release);
    for (size_t i = 0; s->limits.mask && i <= s->limits.mask; i++) {
        struct mem_limit *l = s->limits.slots[i].value;
        if (!l)
            continue;
        for (size_t k = 0; k < l->slots.count; k++)
            mem_slot_clear(&l->slots.items[k]);
        for (size_t k = 0; k < l->wants.count; k++)
            flow__free(l->wants.items[k].holder);
        FLOW__VEC_FREE(&l->slots);
        FLOW__VEC_FREE(&l->wants);
        FLOW__VEC_FREE(&l->starts);
        flow__free(l->key);
        flow__free(l);
    }
    flow__strmap_cleanup(&s->limits);
    for (size_t i = 0; s->cache.mask && i <= s->cache.mask; i++) {
        struct mem_cached *c = s->cache.slots[i].value;
        if (!c)
            continue;
        json_decref(c->entry);
        flow__free(c->name);
        flow__free(c);
    }
    flow__strmap_cleanup(&s->cache);
    flow__free(s);
}

static flow_err mem_run_create(void *priv, const struct flow__run_meta *meta, flow_error *err)
{
    struct mem_store *s = priv;
    flow_err rc = flow__store_check_id(MEM_NAME, meta->id, err);
    if (rc != FLOW_OK)
        return rc;
    struct mem_run *r = flow__strmap_get(&s->runs, meta->id);
    if (r && r->live)
        return flow__error(err, FLOW_EEXISTS, "run '%s' already exists in store '" MEM_NAME "'",
                           meta->id);
    struct flow__run_meta copy, bare = *meta;
    char *z;
    size_t zlen;
    if (mem_pack(meta->inputs, &z, &zlen) != FLOW_OK)
        return mem_nomem(err, "creating", meta->id);
    if (z)
        bare.inputs = NULL;
    if (flow__run_meta_copy(&copy, &bare) != FLOW_OK) {
        flow__free(z);
        return mem_nomem(err, "creating", meta->id);
    }
    bool created;
    r = flow__store_run_entry(&s->runs, meta->id, sizeof(*r), &created);
    if (!r) {
        flow__run_meta_cleanup(&copy);
        flow__free(z);
        return mem_nomem(err, "creating", meta->id);
    }
    r->meta = copy;
    r->inputs_z = z;
    r->inputs_zlen = zlen;
    r->live = true;
    return FLOW_OK;
}

static flow_err mem_run_get(void *priv, const char *id, struct flow__run_meta *out,
                            flow_error *err)
{
    memset(out, 0, sizeof(*out));
    struct mem_run *r = mem_find(priv, id, err);
    if (!r)
        return FLOW_ENOTFOUND;
    flow_err rc = mem_meta(r, true, out);
    if (rc != FLOW_OK)
        return flow__error(err, rc, "cannot read run '%s' in store '" MEM_NAME "': %s", id,
                           flow__payload_why(rc));
    return FLOW_OK;
}

static int mem_run_order(const void *a, const void *b)
{
    const struct mem_run *x = *(struct mem_run *const *)a, *y = *(struct mem_run *const *)b;
    if (x->meta.created_at != y->meta.created_at)
        return x->meta.created_at < y->meta.created_at ? -1 : 1;
    return strcmp(x->meta.id, y->meta.id);
}

static flow_err mem_run_list(void *priv, flow__store_run_cb cb, void *udata, flow_error *err)
{
    struct mem_store *s = priv;
    FLOW__VEC(struct mem_run *) live = {0};
    flow_err rc = FLOW_OK;
    for (size_t i = 0; s->runs.mask && i <= s->runs.mask && rc == FLOW_OK; i++) {
        struct mem_run *r = s->runs.slots[i].value;
        if (r && r->live)
            FLOW__VEC_PUSH(&live, r, rc);
    }
    if (rc != FLOW_OK) {
        FLOW__VEC_FREE(&live);
        return flow__error(err, rc, "out of memory listing the runs in store '" MEM_NAME "'");
    }
    if (live.count)
        qsort(live.items, live.count, sizeof(*live.items), mem_run_order);
    for (size_t i = 0; i < live.count && rc == FLOW_OK; i++) {
        struct flow__run_meta m;
        rc = mem_meta(live.items[i], false, &m);
        if (rc != FLOW_OK) {
            flow__error(err, rc, "cannot list the runs in store '" MEM_NAME "': run '%s': %s",
                        m.id, flow__payload_why(rc));
            break;
        }
        rc = cb(udata, &m);
        if (m.inputs != live.items[i]->meta.inputs)
            json_decref(m.inputs);
    }
    FLOW__VEC_FREE(&live);
    return rc;
}

static flow_err mem_run_set_status(void *priv, const char *id, int status, double ended_at,
                                   flow_error *err)
{
    struct mem_run *r = mem_find(priv, id, err);
    if (!r)
        return FLOW_ENOTFOUND;
    r->meta.status = status;
    r->meta.ended_at = ended_at;
    return FLOW_OK;
}

/* Equal and written the same: json_equal ignores the order of keys, which a
 * replayed value's text must keep. */
static bool same_in_order(const json_t *a, const json_t *b)
{
    if (json_typeof(a) != json_typeof(b))
        return false;
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b))
            return false;
        void *ia = json_object_iter((json_t *)a), *ib = json_object_iter((json_t *)b);
        for (; ia && ib; ia = json_object_iter_next((json_t *)a, ia),
                         ib = json_object_iter_next((json_t *)b, ib)) {
            if (strcmp(json_object_iter_key(ia), json_object_iter_key(ib)) ||
                !same_in_order(json_object_iter_value(ia), json_object_iter_value(ib)))
                return false;
        }
        return !ia && !ib;
    }
    if (json_is_array(a)) {
        size_t n = json_array_size(a);
        if (n != json_array_size(b))
            return false;
        for (size_t i = 0; i < n; i++) {
            if (!same_in_order(json_array_get(a, i), json_array_get(b, i)))
                return false;
        }
        return true;
    }
    return json_equal(a, b);
}

static flow_err mem_append(void *priv, const char *run_id, const struct flow__jrec *recs,
                           size_t n, unsigned flags, flow_error *err)
{
    FLOW__UNUSED(flags); /* nothing to sync */
    struct mem_run *r = mem_find(priv, run_id, err);
    if (!r)
        return FLOW_ENOTFOUND;
    if (n == 0)
        return FLOW_OK;
    flow_err rc = FLOW_OK;
    if (r->recs.count + n < r->recs.count)
        rc = FLOW_ENOMEM;
    else
        FLOW__VEC_RESERVE(&r->recs, r->recs.count + n, rc);
    if (rc != FLOW_OK)
        return mem_nomem(err, "appending to", run_id);
    size_t first = r->recs.count;
    for (size_t i = 0; i < n; i++) {
        struct mem_rec *dst = &r->recs.items[r->recs.count++];
        *dst = (struct mem_rec){.r = recs[i]};
        if (!recs[i].payload)
            continue;
        /* Runs repeat payloads ({"output": null} a task): one copy serves
         * them all (it is ours, counted under our lock only). */
        if (r->last_payload && same_in_order(r->last_payload, recs[i].payload)) {
            dst->r.payload = json_incref(r->last_payload);
            continue;
        }
        rc = mem_pack(recs[i].payload, &dst->z, &dst->zlen);
        if (rc == FLOW_OK && dst->z) {
            dst->r.payload = NULL;
            continue;
        }
        if (rc != FLOW_OK || !(dst->r.payload = json_deep_copy(recs[i].payload))) {
            dst->r.payload = NULL;
            while (r->recs.count > first) { /* a failed append appends nothing */
                struct mem_rec *gone = &r->recs.items[--r->recs.count];
                json_decref(gone->r.payload);
                flow__free(gone->z);
            }
            return mem_nomem(err, "appending to", run_id);
        }
        json_decref(r->last_payload);
        r->last_payload = json_incref(dst->r.payload);
    }
    return FLOW_OK;
}

static flow_err mem_read(void *priv, const char *run_id, uint64_t from_seq, flow__store_rec_cb cb,
                         void *udata, flow_error *err)
{
    struct mem_run *r = mem_find(priv, run_id, err);
    if (!r)
        return FLOW_ENOTFOUND;
    for (uint64_t i = from_seq; i < r->recs.count; i++) {
        const struct mem_rec *m = &r->recs.items[i];
        struct flow__jrec rec = m->r;
        if (m->z) {
            flow_err rc = flow__payload_load(m->z, m->zlen, &rec.payload);
            if (rc != FLOW_OK)
                return flow__error(err, rc, "cannot read record %llu of run '%s' in store '" MEM_NAME
                                            "': %s",
                                   (unsigned long long)i, run_id, flow__payload_why(rc));
        } else if (rec.payload && !(rec.payload = json_deep_copy(rec.payload))) {
            return mem_nomem(err, "reading", run_id);
        }
        flow_err rc = cb(udata, i, &rec);
        json_decref(rec.payload);
        if (rc != FLOW_OK)
            return rc;
    }
    return FLOW_OK;
}

static flow_err mem_run_delete(void *priv, const char *id, flow_error *err)
{
    struct mem_run *r = mem_find(priv, id, err);
    if (!r)
        return FLOW_ENOTFOUND;
    mem_run_clear(r);
    return FLOW_OK;
}

static flow_err mem_lease_acquire(void *priv, const char *id, const char *holder, double now,
                                  double ttl, flow_error *err)
{
    struct mem_run *r = mem_find(priv, id, err);
    if (!r)
        return FLOW_ENOTFOUND;
    flow_err rc = flow__lease_check(err, id, r->lease_holder, r->lease_expiry, holder, now);
    if (rc != FLOW_OK)
        return rc;
    if (!r->lease_holder || strcmp(r->lease_holder, holder) != 0) {
        char *mine = flow__strdup(holder);
        if (!mine)
            return mem_nomem(err, "taking the lease on", id);
        flow__free(r->lease_holder);
        r->lease_holder = mine;
    }
    r->lease_expiry = now + ttl;
    return FLOW_OK;
}

static flow_err mem_lease_get(void *priv, const char *id, double now, char **holder,
                              flow_error *err)
{
    struct mem_store *s = priv;
    struct mem_run *r = mem_find(s, id, err);
    *holder = NULL;
    if (!r)
        return FLOW_ENOTFOUND;
    if (r->lease_holder && flow__lease_is_live(r->lease_holder, r->lease_expiry, now) &&
        !(*holder = flow__strdup(r->lease_holder)))
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    return FLOW_OK;
}

static flow_err mem_lease_release(void *priv, const char *id, const char *holder, flow_error *err)
{
    FLOW__UNUSED(err);
    struct mem_run *r = mem_find(priv, id, NULL);
    if (r && r->lease_holder && !strcmp(r->lease_holder, holder)) {
        flow__free(r->lease_holder);
        r->lease_holder = NULL;
        r->lease_expiry = 0;
    }
    return FLOW_OK;
}

static flow_err mem_control_put(void *priv, const char *id, const char *kind, const char *arg,
                                flow_error *err)
{
    struct mem_run *r = mem_find(priv, id, err);
    if (!r)
        return FLOW_ENOTFOUND;
    struct mem_request q = {.kind = flow__strdup(kind), .arg = arg ? flow__strdup(arg) : NULL};
    flow_err rc = !q.kind || (arg && !q.arg) ? FLOW_ENOMEM : FLOW_OK;
    if (rc == FLOW_OK)
        FLOW__VEC_PUSH(&r->reqs, q, rc);
    if (rc != FLOW_OK) {
        flow__free(q.kind);
        flow__free(q.arg);
        return flow__error(err, rc, "out of memory sending '%s' to run '%s' in store '" MEM_NAME
                                    "'",
                           kind, id);
    }
    return FLOW_OK;
}

static flow_err mem_control_take(void *priv, const char *id, char **kind, char **arg,
                                 flow_error *err)
{
    FLOW__UNUSED(err);
    *kind = *arg = NULL;
    struct mem_run *r = mem_find(priv, id, NULL);
    if (!r || r->reqs.count == 0)
        return FLOW_OK;
    *kind = r->reqs.items[0].kind;
    *arg = r->reqs.items[0].arg;
    r->reqs.count--;
    memmove(r->reqs.items, r->reqs.items + 1, r->reqs.count * sizeof(*r->reqs.items));
    return FLOW_OK;
}

/* Atomic because callers serialize every call into a store (the public
 * handle's mutex): the check and the insert see the same answers. */
static flow_err mem_answer_claim(void *priv, const char *run_id, const char *request,
                                 json_t *answer, double not_after, json_t **winner,
                                 flow_error *err)
{
    struct mem_run *r = mem_find(priv, run_id, err);
    if (!r)
        return FLOW_ENOTFOUND;
    json_t *first = json_object_get(r->answers, request);
    if (first) {
        if (winner && !(*winner = json_deep_copy(first)))
            return mem_nomem(err, "reading an answer of", run_id);
        return flow__store_answer_taken(err, run_id, request, first);
    }
    if (flow__store_answer_late(not_after))
        return flow__store_answer_expired(err, run_id, request, not_after);
    if (!r->answers && !(r->answers = json_object()))
        return mem_nomem(err, "answering", run_id);
    /* A copy: the caller may change its value afterwards. */
    if (json_object_set_new(r->answers, request, json_deep_copy(answer)) != 0)
        return mem_nomem(err, "answering", run_id);
    return FLOW_OK;
}

static flow_err mem_answer_list(void *priv, const char *run_id, json_t **out, flow_error *err)
{
    struct mem_run *r = mem_find(priv, run_id, err);
    if (!r)
        return FLOW_ENOTFOUND;
    *out = r->answers ? json_deep_copy(r->answers) : json_object();
    return *out ? FLOW_OK : mem_nomem(err, "reading the answers of", run_id);
}

/* ---- limits: in this process only; each call is atomic, as every call
 * into a store is serialized by its handle's lock ---------------------------- */

/* The entry of `key`, made when missing; NULL when out of memory. */
static struct mem_limit *mem_limit(struct mem_store *s, const char *key)
{
    struct mem_limit *l = flow__strmap_get(&s->limits, key);
    if (l)
        return l;
    l = flow__calloc(1, sizeof(*l));
    if (l && (l->key = flow__strdup(key)) && flow__strmap_put(&s->limits, l->key, l) == FLOW_OK)
        return l;
    if (l)
        flow__free(l->key);
    flow__free(l);
    return NULL;
}

static flow_err mem_limit_nomem(flow_error *err, const char *kind, const char *key)
{
    return flow__error(err, FLOW_ENOMEM,
                       "out of memory in %s key '%.200s' of store '" MEM_NAME "'", kind, key);
}

/* `holder`'s demand mark in `l`, or NULL. */
static struct mem_want *mem_want_find(struct mem_limit *l, const char *holder)
{
    for (size_t i = 0; i < l->wants.count; i++)
        if (!strcmp(l->wants.items[i].holder, holder))
            return &l->wants.items[i];
    return NULL;
}

/* Mark that `holder` waits for `l` until `expires` (`copy`: its own copy
 * of holder, with room in l->wants, when it had no mark), forgetting the
 * marks no longer live; or, not `wait`, remove its mark. Cannot fail. */
static void mem_want_keep(struct mem_limit *l, const char *holder, char *copy, bool wait,
                          double expires, double now)
{
    size_t keep = 0;
    for (size_t i = 0; i < l->wants.count; i++) {
        struct mem_want *w = &l->wants.items[i];
        bool mine = !strcmp(w->holder, holder);
        if (mine && wait) {
            w->expires = expires;
        } else if (mine || (wait && !flow__lease_is_live(w->holder, w->expires, now))) {
            flow__free(w->holder);
            continue;
        }
        l->wants.items[keep++] = *w;
    }
    l->wants.count = keep;
    if (copy)
        l->wants.items[l->wants.count++] = (struct mem_want){copy, expires};
}

static flow_err mem_slot_acquire(void *priv, const char *key, int limit, int want,
                                 const char *holder, const char *owner, double now, double ttl,
                                 int *slots, int *got, flow_error *err)
{
    struct mem_store *s = priv;
    *got = 0;
    flow_err rc = flow__limit_check(MEM_NAME, "concurrency", key, limit, ttl, err);
    if (rc != FLOW_OK || want <= 0)
        return rc;
    struct mem_limit *l = mem_limit(s, key);
    int *busy = l ? flow__calloc(l->slots.count + 1, sizeof(*busy)) : NULL;
    if (!busy)
        return mem_limit_nomem(err, "concurrency", key);
    size_t nbusy = 0;
    for (size_t i = 0; i < l->slots.count; i++) {
        const struct mem_slot *sl = &l->slots.items[i];
        if (flow__lease_is_live(sl->holder, sl->expires, now))
            busy[nbusy++] = sl->slot;
    }
    int n = flow__slot_pick(busy, nbusy, limit, want, slots);
    flow__free(busy);
    /* Everything that can fail first: a failed call takes nothing. */
    struct mem_slot *fresh = flow__calloc((size_t)n + 1, sizeof(*fresh));
    bool ok = fresh != NULL;
    char *mark = NULL; /* a new demand mark's holder */
    if (ok && n < want && !mem_want_find(l, holder)) {
        FLOW__VEC_RESERVE(&l->wants, l->wants.count + 1, rc);
        ok = rc == FLOW_OK && (mark = flow__strdup(holder));
    }
    for (int i = 0; ok && i < n; i++) {
        fresh[i] = (struct mem_slot){.slot = slots[i], .expires = now + ttl};
        ok = (fresh[i].holder = flow__strdup(holder)) &&
             (!owner || (fresh[i].owner = flow__strdup(owner)));
    }
    if (ok)
        FLOW__VEC_RESERVE(&l->slots, l->slots.count + (size_t)n, rc);
    if (!ok || rc != FLOW_OK) {
        for (int i = 0; fresh && i < n; i++)
            mem_slot_clear(&fresh[i]);
        flow__free(fresh);
        flow__free(mark);
        return mem_limit_nomem(err, "concurrency", key);
    }
    mem_want_keep(l, holder, mark, n < want, now + FLOW__SLOT_WANT_TTL, now);
    for (int i = 0; i < n; i++) {
        size_t at = 0;
        while (at < l->slots.count && l->slots.items[at].slot < fresh[i].slot)
            at++;
        struct mem_slot *sl = &l->slots.items[at];
        if (at < l->slots.count && sl->slot == fresh[i].slot) {
            mem_slot_clear(sl); /* a dead holder's */
        } else {
            memmove(sl + 1, sl, (l->slots.count - at) * sizeof(*sl));
            l->slots.count++;
        }
        *sl = fresh[i];
    }
    flow__free(fresh);
    *got = n;
    return FLOW_OK;
}

static flow_err mem_slot_release(void *priv, const char *key, const int *slots, int n,
                                 const char *holder, flow_error *err)
{
    FLOW__UNUSED(err);
    struct mem_limit *l = flow__strmap_get(&((struct mem_store *)priv)->limits, key);
    for (int i = 0; l && i < n; i++) {
        for (size_t at = 0; at < l->slots.count; at++) {
            struct mem_slot *sl = &l->slots.items[at];
            if (sl->slot != slots[i] || strcmp(sl->holder, holder) != 0)
                continue;
            mem_slot_clear(sl);
            l->slots.count--;
            memmove(sl, sl + 1, (l->slots.count - at) * sizeof(*sl));
            break;
        }
    }
    return FLOW_OK;
}

static flow_err mem_slot_renew(void *priv, const char *holder, double now, double ttl,
                               flow_error *err)
{
    FLOW__UNUSED(err);
    struct mem_store *s = priv;
    for (size_t i = 0; s->limits.mask && i <= s->limits.mask; i++) {
        struct mem_limit *l = s->limits.slots[i].value;
        for (size_t k = 0; l && k < l->slots.count; k++)
            if (!strcmp(l->slots.items[k].holder, holder))
                l->slots.items[k].expires = now + ttl;
    }
    return FLOW_OK;
}

/* Append the live slots of `l` to `list`. */
static flow_err mem_slot_list_one(const struct mem_limit *l, double now, json_t *list)
{
    flow_err rc = FLOW_OK;
    for (size_t k = 0; rc == FLOW_OK && k < l->slots.count; k++) {
        const struct mem_slot *sl = &l->slots.items[k];
        if (flow__lease_is_live(sl->holder, sl->expires, now))
            rc = flow__slot_push(list, l->key, sl->slot, sl->holder, sl->owner, sl->expires);
    }
    return rc;
}

static flow_err mem_slot_list(void *priv, const char *key, double now, json_t **out,
                              flow_error *err)
{
    struct mem_store *s = priv;
    json_t *list = json_array();
    flow_err rc = list ? FLOW_OK : FLOW_ENOMEM;
    if (rc == FLOW_OK && key) {
        struct mem_limit *l = flow__strmap_get(&s->limits, key);
        rc = l ? mem_slot_list_one(l, now, list) : FLOW_OK;
    }
    for (size_t i = 0; rc == FLOW_OK && !key && s->limits.mask && i <= s->limits.mask; i++) {
        struct mem_limit *l = s->limits.slots[i].value;
        if (l)
            rc = mem_slot_list_one(l, now, list);
    }
    if (rc == FLOW_OK)
        rc = flow__slot_sort(list);
    if (rc != FLOW_OK) {
        json_decref(list);
        *out = NULL;
        return flow__error(err, rc, "out of memory listing the slots in store '" MEM_NAME "'");
    }
    *out = list;
    return FLOW_OK;
}

static flow_err mem_slot_contended(void *priv, const char *key, const char *holder, double now,
                                   bool *contended, flow_error *err)
{
    FLOW__UNUSED(err);
    struct mem_limit *l = flow__strmap_get(&((struct mem_store *)priv)->limits, key);
    *contended = false;
    for (size_t i = 0; l && i < l->wants.count && !*contended; i++) {
        const struct mem_want *w = &l->wants.items[i];
        *contended = strcmp(w->holder, holder) != 0 &&
                     flow__lease_is_live(w->holder, w->expires, now);
    }
    return FLOW_OK;
}

static flow_err mem_rate_take(void *priv, const char *key, int limit, double window, int want,
                              double now, int *got, double *retry_at, flow_error *err)
{
    double retry = 0;
    *got = 0;
    if (retry_at)
        *retry_at = 0;
    flow_err rc = flow__limit_check(MEM_NAME, "rate", key, limit, window, err);
    if (rc != FLOW_OK || want <= 0)
        return rc;
    struct mem_limit *l = mem_limit(priv, key);
    if (l)
        FLOW__VEC_RESERVE(&l->starts, l->starts.count + (size_t)(want < limit ? want : limit),
                          rc);
    if (!l || rc != FLOW_OK)
        return mem_limit_nomem(err, "rate", key);
    l->starts.count = flow__rate_apply(l->starts.items, l->starts.count, limit, window, want,
                                       now, got, &retry);
    if (retry_at)
        *retry_at = retry;
    return FLOW_OK;
}

/* ---- the cache ------------------------------------------------------------ */

/* The map's key of (flow, task, key): each with its length, so that no two
 * triples share one. */
static char *mem_cache_name(const char *fname, const char *task, const char *key)
{
    return flow__asprintf("%zu:%s%zu:%s%zu:%s", strlen(fname), fname, strlen(task), task,
                          strlen(key), key);
}

static flow_err mem_cache_nomem(flow_error *err)
{
    return flow__error(err, FLOW_ENOMEM, "out of memory in the cache of store '" MEM_NAME "'");
}

static flow_err mem_cache_get(void *priv, const char *fname, const char *task, const char *key,
                              double now, json_t **entry, double *created, flow_error *err)
{
    struct mem_store *s = priv;
    *entry = NULL;
    *created = 0;
    char *name = mem_cache_name(fname, task, key);
    if (!name)
        return mem_cache_nomem(err);
    struct mem_cached *c = flow__strmap_get(&s->cache, name);
    flow__free(name);
    if (!c || !c->entry || (c->expires > 0 && c->expires <= now))
        return FLOW_OK;
    /* A copy: the caller's thread counts its references, we count ours. */
    if (!(*entry = json_deep_copy(c->entry)))
        return mem_cache_nomem(err);
    *created = c->created;
    return FLOW_OK;
}

static flow_err mem_cache_put(void *priv, const char *fname, const char *task, const char *key,
                              const json_t *entry, double now, double expires, flow_error *err)
{
    struct mem_store *s = priv;
    json_t *copy = json_deep_copy(entry);
    char *name = mem_cache_name(fname, task, key);
    if (!copy || !name) {
        json_decref(copy);
        flow__free(name);
        return mem_cache_nomem(err);
    }
    struct mem_cached *c = flow__strmap_get(&s->cache, name);
    if (c) {
        flow__free(name);
    } else if (!(c = flow__calloc(1, sizeof(*c))) ||
               flow__strmap_put(&s->cache, name, c) != FLOW_OK) {
        flow__free(c);
        flow__free(name);
        json_decref(copy);
        return mem_cache_nomem(err);
    } else {
        c->name = name;
    }
    json_decref(c->entry);
    c->entry = copy;
    c->created = now;
    c->expires = expires;
    return FLOW_OK;
}

static flow_err mem_cache_gc(void *priv, double now, bool all, size_t *removed, flow_error *err)
{
    FLOW__UNUSED(err);
    struct mem_store *s = priv;
    size_t n = 0;
    for (size_t i = 0; s->cache.mask && i <= s->cache.mask; i++) {
        struct mem_cached *c = s->cache.slots[i].value;
        if (!c || !c->entry || (!all && !(c->expires > 0 && c->expires <= now)))
            continue;
        json_decref(c->entry);
        c->entry = NULL;
        n++;
    }
    *removed = n;
    return FLOW_OK;
}

const struct flow__store_ops flow__store_memory_ops = {
    .version = 4,
    .scheme = "memory",
    .caps = 0, /* neither durable nor seen by other processes */
    .open = mem_open,                     /* a new, empty store */
    .close = mem_close,                   /* frees everything */
    .run_create = mem_run_create,         /* a deep copy of the metadata */
    .run_get = mem_run_get,               /* a deep copy back */
    .run_list = mem_run_list,             /* sorted by created_at, id */
    .run_set_status = mem_run_set_status, /* in place */
    .append = mem_append,                 /* reserves, then copies: all or nothing */
    .commit = NULL,                       /* nothing to make durable */
    .read = mem_read,                     /* the records themselves, borrowed */
    .run_delete = mem_run_delete,         /* frees the run, keeps its entry */
    .lease_acquire = mem_lease_acquire,   /* holder and expiry, as sqlite */
    .lease_release = mem_lease_release,   /* cleared only if ours */
    .lease_get = mem_lease_get,           /* live per flow__lease_is_live */
    .control_put = mem_control_put,       /* a queue per run */
    .control_take = mem_control_take,     /* the front of the queue */
    .answer_claim = mem_answer_claim,     /* check and set in one call */
    .answer_list = mem_answer_list,       /* a copy of the run's answers */
    .slot_acquire = mem_slot_acquire,     /* slots kept per key, by number */
    .slot_release = mem_slot_release,     /* removed only if ours */
    .slot_renew = mem_slot_renew,         /* every key's slots of the holder */
    .slot_list = mem_slot_list,           /* live ones, sorted */
    .rate_take = mem_rate_take,           /* a log of starts per key */
    .slot_contended = mem_slot_contended, /* the key's demand marks */
    .cache_get = mem_cache_get,           /* a deep copy of the entry */
    .cache_put = mem_cache_put,           /* a deep copy kept, by name */
    .cache_gc = mem_cache_gc,             /* frees the values, keeps the names */
};
