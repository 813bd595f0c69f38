/* remote_state.c -- a worker's copies of run states, by version
 * (remote_state.h). */
#include "util/compat.h"

#include "exec/remote_state.h"

#include <stdio.h>
#include <string.h>

#include "util/alloc.h"

void flow__rstate_unref(struct flow__rstate *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    json_decref(s->state);
    flow__free(s);
}

/* Hand out slot `slot` to `need`. */
static void give(struct flow__rstate_cache *cache, struct flow__rstate_slot *slot,
                 struct flow__rstate_need *need)
{
    atomic_fetch_add(&slot->s->refs, 1);
    need->state = slot->s;
    slot->used = ++cache->clock;
}

static struct flow__rstate_slot *cached(struct flow__rstate_cache *cache, const char *run,
                                        const char *v)
{
    for (size_t i = 0; i < FLOW__RSTATE_SLOTS; i++) {
        struct flow__rstate_slot *slot = &cache->slots[i];
        if (slot->s && !strcmp(slot->v, v) && !strcmp(slot->run, run))
            return slot;
    }
    return NULL;
}

/* Keep `state` (taken) as (run, v): in the run's slot (one version a run),
 * else a free one, else the one handed out longest ago. NULL: out of
 * memory (`state` is released). */
static struct flow__rstate_slot *keep(struct flow__rstate_cache *cache, const char *run,
                                      const char *v, json_t *state)
{
    struct flow__rstate *s = flow__malloc(sizeof(*s));
    if (!s) {
        json_decref(state);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->state = state;
    s->seq = ++cache->seq;
    struct flow__rstate_slot *slot = NULL;
    for (size_t i = 0; i < FLOW__RSTATE_SLOTS; i++) {
        struct flow__rstate_slot *c = &cache->slots[i];
        if (c->s && !strcmp(c->run, run)) {
            slot = c;
            break;
        }
        if (!slot || (slot->s && (!c->s || c->used < slot->used)))
            slot = c;
    }
    flow__rstate_unref(slot->s);
    snprintf(slot->run, sizeof(slot->run), "%s", run);
    snprintf(slot->v, sizeof(slot->v), "%s", v);
    slot->s = s;
    return slot;
}

static bool same(const struct flow__rstate_need *a, const struct flow__rstate_need *b)
{
    return !strcmp(a->v, b->v) && !strcmp(a->run, b->run);
}

void flow__rstate_get(struct flow__rstate_cache *cache, redisContext *c, const char *prefix,
                      struct flow__rstate_need *needs, size_t n)
{
    struct flow__rstate_need **ask = NULL; /* the first need of each version to read */
    size_t nask = 0;
    for (size_t i = 0; i < n; i++) {
        struct flow__rstate_need *need = &needs[i];
        need->state = NULL;
        need->error = NULL;
        struct flow__rstate_slot *slot = cached(cache, need->run, need->v);
        if (slot) {
            give(cache, slot, need);
            continue;
        }
        bool asked = false;
        for (size_t k = 0; k < nask && !asked; k++)
            asked = same(ask[k], need);
        if (!asked && !ask && !(ask = flow__calloc(n, sizeof(*ask))))
            continue; /* out of memory: not read */
        if (!asked)
            ask[nask++] = need;
    }
    size_t sent = 0;
    for (size_t k = 0; c && k < nask; k++) {
        char *key = flow__rw_key(prefix, "state", ask[k]->run);
        const char *argv[] = {"HGET", key, ask[k]->v};
        if (!key || redisAppendCommandArgv(c, 3, argv, NULL) != REDIS_OK) {
            flow__free(key);
            break; /* out of memory: the rest are not read */
        }
        flow__free(key);
        sent++;
    }
    for (size_t k = 0; k < sent; k++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r)
            break; /* the connection is lost: the rest are not read */
        char *why = NULL;
        json_t *state = flow__rw_state_decode(r, ask[k]->run, ask[k]->v, &why);
        freeReplyObject(r);
        struct flow__rstate_slot *slot =
            state ? keep(cache, ask[k]->run, ask[k]->v, state) : NULL;
        for (size_t i = 0; i < n; i++) {
            struct flow__rstate_need *need = &needs[i];
            if (need->state || need->error || !same(need, ask[k]))
                continue;
            if (slot)
                give(cache, slot, need);
            else if (why)
                need->error = flow__strdup(why);
        }
        flow__free(why);
    }
    flow__free(ask);
}

uint64_t flow__rstate_seq(struct flow__rstate_cache *cache)
{
    return ++cache->seq;
}

void flow__rstate_cache_cleanup(struct flow__rstate_cache *cache)
{
    for (size_t i = 0; i < FLOW__RSTATE_SLOTS; i++)
        flow__rstate_unref(cache->slots[i].s);
    memset(cache, 0, sizeof(*cache));
}
