/* worker_take.c -- a worker's reader thread (docs/internals/distribution.md,
 * "The worker"): what it takes from the queues' streams and what it leaves.
 *
 * It takes entries only while it has free slots, highest priority first
 * (a queue's stream per priority level in use, P:levels:QUEUE), and only
 * those whose resources it can give now: an entry that asks more than is
 * free is parked (claimed by the consumer FLOW__RW_PARKED, pending in id
 * order) for a worker that can start it, and when this worker could start
 * it later it reads nothing more until its running jobs give resources
 * back. Parked entries are looked at first: at once after a release, else
 * every PARK_EVERY_NS.
 */
#include "util/compat.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/worker_int.h"
#include "exec/remote_state.h"
#include "exec/remote_wire.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"
#include "util/redis.h"

/* What the reader may still take in one round. */
struct room {
    size_t slots;        /* entries (more come through when several streams
                          * answer one read, as before priorities) */
    flow_resources free; /* what they may ask */
    bool wait;           /* it parked an entry it could start once resources
                          * are given back: it takes nothing more until then */
};

/* KEYS: P:levels:QUEUE of each of our queues, in order. ARGV: the prefix,
 * the group, the parked consumer, this worker, count, its free cpu, memory,
 * gpu, its capacity (cpu, memory, gpu), whether to look at parked entries
 * (1 or 0), the names of the queues, then the levels it reads already
 * ("QI:PRIORITY", QI counting queues from 0).
 *
 * Takes up to `count` entries without blocking, one priority level after
 * the other, highest first: at each level (its queues' streams), parked
 * entries first, oldest first, those it can start now (what they ask,
 * field `resources`, fits what is free; stopping at the first it could
 * start later: `wait`), then new ones (one XREADGROUP of the level's
 * streams, fair between its queues as one read of them all is). A level
 * first seen gets its group. Atomic: two workers never claim one parked
 * entry. Reply: {wait (0 or 1), the levels ["QI:P"...], [[stream,
 * [entry...]]...]}. */
static const char take_lua[] =
    "local nq = #KEYS\n"
    "local prefix, group, parked, me = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
    "local left = tonumber(ARGV[5])\n"
    "local free = {tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])}\n"
    "local all = {tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])}\n"
    "local look = ARGV[12] == '1'\n"
    "local known = {}\n"
    "for i = 13 + nq, #ARGV do known[ARGV[i]] = true end\n"
    "local slack = {1e-9, 0.5, 1e-9}\n"
    "local function fits(n, have)\n"
    "  for i = 1, 3 do if n[i] > have[i] + slack[i] then return false end end\n"
    "  return true\n"
    "end\n"
    "local streams = {}\n"
    "for q = 1, nq do\n"
    "  local key = prefix .. ':q:' .. ARGV[12 + q]\n"
    "  streams[#streams + 1] = {p = 0, q = q, key = key}\n"
    "  for _, p in ipairs(redis.call('ZRANGE', KEYS[q], 0, -1)) do\n"
    "    local n = tonumber(p)\n"
    "    if n and n ~= 0 and n == math.floor(n) and tostring(n) == p then\n"
    "      streams[#streams + 1] = {p = n, q = q, key = key .. '@' .. p}\n"
    "    end\n"
    "  end\n"
    "end\n"
    "table.sort(streams, function(a, b)\n"
    "  if a.p ~= b.p then return a.p > b.p end\n"
    "  return a.q < b.q\n"
    "end)\n"
    "local levels, out, wait = {}, {}, 0\n"
    "for _, s in ipairs(streams) do\n"
    "  local id = (s.q - 1) .. ':' .. s.p\n"
    "  levels[#levels + 1] = id\n"
    "  if s.p ~= 0 and not known[id] then\n"
    "    redis.pcall('XGROUP', 'CREATE', s.key, group, 0, 'MKSTREAM')\n"
    "  end\n"
    "end\n"
    "local function from_park(key)\n"
    "  local taken, start = {}, '-'\n"
    "  for page = 1, 10 do\n"
    "    local p = redis.call('XPENDING', key, group, start, '+', 100, parked)\n"
    "    for _, e in ipairs(p) do\n"
    "      local r = redis.call('XRANGE', key, e[1], e[1])\n"
    "      if #r == 0 then\n"
    "        redis.call('XACK', key, group, e[1])\n"
    "      else\n"
    "        local need, f = {0, 0, 0}, r[1][2]\n"
    "        for i = 1, #f, 2 do\n"
    "          if f[i] == 'resources' then\n"
    "            local ok, t = pcall(cjson.decode, f[i + 1])\n"
    "            if ok and type(t) == 'table' then\n"
    "              need = {tonumber(t.cpu) or 0, tonumber(t.memory) or 0, tonumber(t.gpu) or 0}\n"
    "            end\n"
    "          end\n"
    "        end\n"
    "        if fits(need, all) then\n"
    "          if not fits(need, free) then wait = 1; break end\n"
    "          local c = redis.call('XCLAIM', key, group, me, 0, e[1])\n"
    "          if #c > 0 then\n"
    "            taken[#taken + 1] = c[1]\n"
    "            for i = 1, 3 do free[i] = free[i] - need[i] end\n"
    "            left = left - 1\n"
    "            if left <= 0 then break end\n"
    "          end\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    if wait == 1 or left <= 0 or #p < 100 then break end\n"
    "    start = '(' .. p[#p][1]\n"
    "  end\n"
    "  if #taken > 0 then out[#out + 1] = {key, taken} end\n"
    "end\n"
    "local i = 1\n"
    "while i <= #streams and left > 0 and wait == 0 do\n"
    "  local j = i\n"
    "  while j < #streams and streams[j + 1].p == streams[i].p do j = j + 1 end\n"
    "  for k = i, j do\n"
    "    if look and left > 0 and wait == 0 then from_park(streams[k].key) end\n"
    "  end\n"
    "  if left > 0 and wait == 0 then\n"
    "    local args = {'XREADGROUP', 'GROUP', group, me, 'COUNT', left, 'STREAMS'}\n"
    "    for k = i, j do args[#args + 1] = streams[k].key end\n"
    "    for k = i, j do args[#args + 1] = '>' end\n"
    "    local r = redis.call(unpack(args))\n"
    "    if r then\n"
    "      for _, e in ipairs(r) do out[#out + 1] = e; left = left - #e[2] end\n"
    "    end\n"
    "  end\n"
    "  i = j + 1\n"
    "end\n"
    "return {wait, levels, out}\n";

/* ---- the streams ----------------------------------------------------------- */

static flow_err stream_add(struct flow_worker *w, size_t queue, int priority)
{
    struct wstream s = {.priority = priority, .queue = queue};
    s.key = flow__rw_queue_key(w->addr.prefix, w->queue_names[queue], priority);
    snprintf(s.cursor, sizeof(s.cursor), "0-0");
    flow_err rc = s.key ? FLOW_OK : FLOW_ENOMEM;
    if (!rc)
        FLOW__VEC_PUSH(&w->streams, s, rc);
    if (rc)
        flow__free(s.key);
    return rc;
}

flow_err flow__worker_streams_init(struct flow_worker *w)
{
    for (size_t i = 0; i < w->nqueues; i++)
        if (stream_add(w, i, 0) != FLOW_OK)
            return FLOW_ENOMEM;
    return FLOW_OK;
}

void flow__worker_streams_free(struct flow_worker *w)
{
    for (size_t i = 0; i < w->streams.count; i++)
        flow__free(w->streams.items[i].key);
    FLOW__VEC_FREE(&w->streams);
}

/* Highest priority first; a level's queues in the order given. */
static int by_priority(const void *a, const void *b)
{
    const struct wstream *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return x->queue < y->queue ? -1 : x->queue > y->queue;
}

/* [reader] Read from now on the streams of the levels `levels` names
 * (["QI:PRIORITY"...], as take_lua answers) that it does not read yet. A
 * level stays once seen: an empty stream costs little. */
static void add_levels(struct flow_worker *w, const redisReply *levels)
{
    bool added = false;
    for (size_t k = 0; levels->type == REDIS_REPLY_ARRAY && k < levels->elements; k++) {
        const redisReply *e = levels->element[k];
        char *end = NULL;
        errno = 0;
        unsigned long q = e->type == REDIS_REPLY_STRING ? strtoul(e->str, &end, 10) : ULONG_MAX;
        if (!end || *end != ':' || q >= w->nqueues)
            continue;
        long p = strtol(end + 1, &end, 10);
        if (*end || errno || p < INT_MIN || p > INT_MAX || p == 0)
            continue;
        bool have = false;
        for (size_t i = 0; i < w->streams.count && !have; i++)
            have = w->streams.items[i].queue == q && w->streams.items[i].priority == (int)p;
        if (!have && stream_add(w, q, (int)p) == FLOW_OK)
            added = true;
    }
    if (added)
        qsort(w->streams.items, w->streams.count, sizeof(*w->streams.items), by_priority);
}

static bool ensure_groups(struct flow_worker *w)
{
    if (w->groups_ok)
        return true;
    for (size_t i = 0; i < w->streams.count; i++) {
        const char *key = w->streams.items[i].key;
        if (!flow__worker_conn(w, &w->rd))
            return false;
        redisReply *r = redisCommand(w->rd.c, "XGROUP CREATE %s %s 0 MKSTREAM", key,
                                     FLOW__RW_GROUP);
        if (!r)
            return false;
        bool ok = r->type != REDIS_REPLY_ERROR || strstr(r->str, "BUSYGROUP");
        if (!ok)
            flow__log(FLOW_LOG_WARN, "worker %s: XGROUP CREATE %s: %s", w->name, key, r->str);
        freeReplyObject(r);
        if (!ok)
            return false;
    }
    w->groups_ok = true;
    return true;
}

/* ---- taking entries -------------------------------------------------------- */

/* [reader] Give each job of `jobs` its run's state: the one its entry
 * carries, or the version it names (state_v), from the cache or read once
 * (exec/remote_state.h). A version that Redis does not have, or that is
 * malformed, fails its jobs; when Redis cannot be reached they are freed
 * and set to NULL: their entries stay pending, claimed again later. */
static void give_states(struct flow_worker *w, struct wjob **jobs, size_t n)
{
    struct flow__rstate_need *needs = flow__calloc(n ? n : 1, sizeof(*needs));
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        struct wjob *j = jobs[i];
        if (!j || j->done) {
            continue;
        } else if (!j->task.state_v) {
            j->state_version = flow__rstate_seq(&w->states);
        } else if (needs) {
            needs[m++] =
                (struct flow__rstate_need){.run = j->run, .v = j->task.state_v, .owner = j};
        }
    }
    if (m)
        flow__rstate_get(&w->states, flow__worker_conn(w, &w->rd), w->addr.prefix, needs, m);
    for (size_t k = 0; k < m; k++) {
        struct wjob *j = needs[k].owner;
        j->state = needs[k].state;
        if (j->state) {
            j->task.state = j->state->state;
            j->state_version = j->state->seq;
        } else if (needs[k].error) {
            flow__worker_job_fail(j, needs[k].error);
        }
    }
    flow__free(needs);
    for (size_t i = 0; i < n; i++) {
        if (jobs[i] && !jobs[i]->done && !jobs[i]->task.state) {
            flow__worker_job_free(jobs[i]); /* not read: its entry stays pending */
            jobs[i] = NULL;
        }
    }
}

static bool asks_any(const flow_resources *r)
{
    return r->cpu > 0 || r->memory > 0 || r->gpu > 0;
}

/* [reader] Hand the entries `ids` of stream `key` back: pending with the
 * parked consumer, for a worker that can start them. A failure leaves them
 * pending here: claimed again after claim-after. */
static void park(struct flow_worker *w, const char *key, const char **ids, size_t n)
{
    const char **argv = n ? flow__calloc(n + 6, sizeof(*argv)) : NULL;
    if (!argv)
        return;
    int argc = 0;
    argv[argc++] = "XCLAIM";
    argv[argc++] = key;
    argv[argc++] = FLOW__RW_GROUP;
    argv[argc++] = FLOW__RW_PARKED;
    argv[argc++] = "0";
    for (size_t i = 0; i < n; i++)
        argv[argc++] = ids[i];
    argv[argc++] = "JUSTID";
    freeReplyObject(flow__worker_cmdv(w, &w->rd, argc, argv));
    flow__free(argv);
}

/* [reader] Take the entries of a stream reply ([[key, [entry...]]...] or,
 * for XAUTOCLAIM, [cursor, [entry...], ...] of one key) that `room` can
 * start, in order; park those it cannot: every one after an entry this
 * worker could start later, so that none overtakes it here. Returns how
 * many became jobs. */
static size_t take_entries(struct flow_worker *w, const char *key, const redisReply *list,
                           struct room *room)
{
    if (!list || list->type != REDIS_REPLY_ARRAY)
        return 0;
    size_t taken = 0, nparked = 0;
    bool main_work = false;
    struct wjob **jobs = flow__calloc(list->elements + 1, sizeof(*jobs));
    const char **parked = NULL; /* made when one is */
    if (!jobs)
        return 0; /* out of memory: the entries stay pending, claimed later */
    for (size_t k = 0; k < list->elements; k++) {
        struct flow__rw_entry en;
        const redisReply *e = list->element[k];
        if (!flow__rw_entry_of(e, &en)) {
            /* A deleted entry (nil fields) has nothing to run: acknowledge it. */
            if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
                e->element[0]->type == REDIS_REPLY_STRING) {
                const char *argv[] = {"XACK", key, FLOW__RW_GROUP, e->element[0]->str};
                flow_error err;
                freeReplyObject(flow__redis_cmdv(w->rd.c, &w->addr, &err, 4, argv, NULL));
            }
            continue;
        }
        flow_resources need;
        const char *bad = NULL;
        if (!flow__rw_resources_decode(flow__rw_field(&en, "resources"), &need, &bad))
            memset(&need, 0, sizeof(need)); /* it fails at once: nothing to hold */
        char what[64];
        if (asks_any(&need) || room->wait) {
            const char *never = flow__resources_misfit(&need, &w->capacity, what, sizeof(what));
            if (room->wait || never ||
                flow__resources_misfit(&need, &room->free, what, sizeof(what))) {
                if (!room->wait && !never)
                    room->wait = true; /* it is next here, once resources are back */
                if (never)
                    flow__log(FLOW_LOG_DEBUG,
                              "worker %s: entry %s of %s asks %s, more than this worker has: "
                              "left for another",
                              w->name, en.id, key, what);
                if (!parked && !(parked = flow__calloc(list->elements, sizeof(*parked))))
                    continue; /* out of memory: pending here, claimed again later */
                parked[nparked++] = en.id;
                continue;
            }
            room->free.cpu -= need.cpu;
            room->free.memory -= need.memory;
            room->free.gpu -= need.gpu;
        }
        struct wjob *j = flow__worker_job_of_entry(w, key, &en);
        if (j && bad && !j->done)
            flow__worker_job_fail(j, flow__asprintf("malformed activation from Redis: %s", bad));
        else if (j)
            j->need = need;
        jobs[k] = j;
    }
    park(w, key, parked, nparked);
    flow__free(parked);
    give_states(w, jobs, list->elements);
    for (size_t k = 0; k < list->elements; k++) {
        struct wjob *j = jobs[k];
        if (!j)
            continue; /* out of memory: the entry stays pending, claimed later */
        if (j->fn && !j->done)
            flow__worker_fn_prepare(w, j);
        pthread_mutex_lock(&w->mu);
        if (!flow__worker_push(w, &w->jobs, j)) {
            pthread_mutex_unlock(&w->mu);
            flow__worker_job_free(j);
            continue;
        }
        taken++;
        w->busy++;
        w->used.cpu += j->need.cpu;
        w->used.memory += j->need.memory;
        w->used.gpu += j->need.gpu;
        if (j->done) {
            flow__worker_push(w, &w->finished, j);
            main_work = true;
        } else if (j->fn) {
            if (w->q_tail)
                w->q_tail->next_q = j;
            else
                w->q_head = j;
            w->q_tail = j;
            pthread_cond_signal(&w->pool_cv);
        } else {
            flow__worker_push(w, &w->fresh, j);
            main_work = true;
        }
        pthread_mutex_unlock(&w->mu);
    }
    flow__free(jobs);
    /* The main thread checks the cancel keys of what runs: wake it even
     * for C functions, once per batch. */
    if (taken || main_work) {
        pthread_mutex_lock(&w->mu);
        flow__worker_wake_locked(w);
        pthread_mutex_unlock(&w->mu);
    }
    room->slots -= taken < room->slots ? taken : room->slots;
    return taken;
}

/* [reader] Take the entries of a reply shaped as XREADGROUP's:
 * [[key, [entry...]]...]. */
static void take_streams(struct flow_worker *w, const redisReply *r, struct room *room)
{
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *s = r->element[i];
        if (s->type == REDIS_REPLY_ARRAY && s->elements == 2 &&
            s->element[0]->type == REDIS_REPLY_STRING)
            take_entries(w, s->element[0]->str, s->element[1], room);
    }
}

/* [reader] XAUTOCLAIM the entries of dead workers, stream by stream, on
 * from where the last call stopped, until a stream's list ends (cursor
 * 0-0) or `room` is full. */
static void claim_dead(struct flow_worker *w, struct room *room)
{
    char count[24], idle[32];
    snprintf(idle, sizeof(idle), "%lld", (long long)(w->claim_after * 1000));
    for (size_t i = 0; i < w->streams.count && room->slots && !room->wait; i++) {
        struct wstream *s = &w->streams.items[i];
        for (int k = 0; k < CLAIM_CALLS_MAX && room->slots && !room->wait; k++) {
            snprintf(count, sizeof(count), "%zu", room->slots);
            const char *ac[] = {"XAUTOCLAIM", s->key, FLOW__RW_GROUP, w->name,
                                idle,         s->cursor, "COUNT",     count};
            redisReply *r = flow__worker_cmdv(w, &w->rd, 8, ac);
            bool more = false;
            if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
                const redisReply *next = r->element[0];
                bool ok = next->type == REDIS_REPLY_STRING && next->len < sizeof(s->cursor);
                snprintf(s->cursor, sizeof(s->cursor), "%s", ok ? next->str : "0-0");
                more = strcmp(s->cursor, "0-0") != 0;
                take_entries(w, s->key, r->element[1], room);
            }
            freeReplyObject(r);
            if (!more)
                break;
        }
    }
}

/* [reader] Take what `room` can start without waiting (take_lua): parked
 * entries too when `look`. Returns how many entries came (taken or
 * parked); -1 when Redis failed. */
static long take_now(struct flow_worker *w, struct room *room, bool look)
{
    size_t nq = w->nqueues, n = w->streams.count;
    const char **argv = flow__calloc(16 + 2 * nq + n, sizeof(*argv));
    char **keys = flow__calloc(nq + 1, sizeof(*keys));
    char (*lv)[32] = flow__calloc(n + 1, sizeof(*lv));
    redisReply *r = NULL;
    long came = -1;
    if (!argv || !keys || !lv)
        goto out;
    char nkeys[16], count[24], v[6][32];
    const double amounts[6] = {room->free.cpu,  room->free.memory,  room->free.gpu,
                               w->capacity.cpu, w->capacity.memory, w->capacity.gpu};
    snprintf(nkeys, sizeof(nkeys), "%zu", nq);
    snprintf(count, sizeof(count), "%zu", room->slots);
    int argc = 0;
    argv[argc++] = "EVAL";
    argv[argc++] = take_lua;
    argv[argc++] = nkeys;
    for (size_t i = 0; i < nq; i++) {
        if (!(keys[i] = flow__rw_key(w->addr.prefix, "levels", w->queue_names[i])))
            goto out;
        argv[argc++] = keys[i];
    }
    argv[argc++] = w->addr.prefix;
    argv[argc++] = FLOW__RW_GROUP;
    argv[argc++] = FLOW__RW_PARKED;
    argv[argc++] = w->name;
    argv[argc++] = count;
    for (int i = 0; i < 6; i++) {
        snprintf(v[i], sizeof(v[i]), "%.17g", amounts[i] > 0 ? amounts[i] : 0);
        argv[argc++] = v[i];
    }
    argv[argc++] = look ? "1" : "0";
    for (size_t i = 0; i < nq; i++)
        argv[argc++] = w->queue_names[i];
    for (size_t i = 0; i < n; i++) {
        const struct wstream *st = &w->streams.items[i];
        if (!st->priority)
            continue;
        snprintf(lv[i], sizeof(lv[i]), "%zu:%d", st->queue, st->priority);
        argv[argc++] = lv[i];
    }
    r = flow__worker_cmdv(w, &w->rd, argc, argv);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        add_levels(w, r->element[1]);
        const redisReply *out = r->element[2];
        came = 0;
        for (size_t i = 0; out->type == REDIS_REPLY_ARRAY && i < out->elements; i++) {
            const redisReply *e = out->element[i];
            if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
                e->element[1]->type == REDIS_REPLY_ARRAY)
                came += (long)e->element[1]->elements;
        }
        take_streams(w, out, room);
        room->wait = room->wait || r->element[0]->integer == 1;
    }
out:
    freeReplyObject(r);
    for (size_t i = 0; keys && i < nq; i++)
        flow__free(keys[i]);
    flow__free(keys);
    flow__free(lv);
    flow__free(argv);
    return came;
}

/* [reader] Do runners use priority levels other than 0 on our queues (is
 * there a P:levels:QUEUE)? False when Redis cannot tell. */
static bool levels_exist(struct flow_worker *w)
{
    size_t nq = w->nqueues;
    const char **argv = flow__calloc(nq + 1, sizeof(*argv));
    char **keys = flow__calloc(nq + 1, sizeof(*keys));
    bool yes = false;
    int argc = 0;
    if (argv && keys) {
        argv[argc++] = "EXISTS";
        for (size_t i = 0; i < nq && (keys[i] = flow__rw_key(w->addr.prefix, "levels",
                                                              w->queue_names[i])); i++)
            argv[argc++] = keys[i];
    }
    redisReply *r = argc == (int)nq + 1 ? flow__worker_cmdv(w, &w->rd, argc, argv) : NULL;
    yes = r && r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    freeReplyObject(r);
    for (size_t i = 0; keys && i < nq; i++)
        flow__free(keys[i]);
    flow__free(keys);
    flow__free(argv);
    return yes;
}

/* [reader] Wait for new entries (READ_BLOCK_MS at most) with one XREADGROUP
 * of every stream: as many as `room` has slots while it reads priority 0
 * only, else one (the next round takes the rest, highest priority first).
 * NULL: Redis failed. */
static redisReply *wait_new(struct flow_worker *w, const struct room *room)
{
    size_t n = w->streams.count;
    const char **argv = flow__calloc(9 + 2 * n, sizeof(*argv));
    if (!argv)
        return NULL;
    char count[24];
    snprintf(count, sizeof(count), "%zu", n == w->nqueues ? room->slots : 1);
    int argc = 0;
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = FLOW__RW_GROUP;
    argv[argc++] = w->name;
    argv[argc++] = "COUNT";
    argv[argc++] = count;
    argv[argc++] = "BLOCK";
    argv[argc++] = READ_BLOCK_MS;
    argv[argc++] = "STREAMS";
    for (size_t i = 0; i < n; i++)
        argv[argc++] = w->streams.items[i].key;
    for (size_t i = 0; i < n; i++)
        argv[argc++] = ">";
    redisReply *r = flow__worker_cmdv(w, &w->rd, argc, argv);
    flow__free(argv);
    return r;
}

/* [reader] Wait on reader_cv for up to `ns` (woken early by a free slot,
 * resources given back, or stopping). */
static void reader_nap(struct flow_worker *w, int64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t t = (int64_t)ts.tv_nsec + ns;
    ts.tv_sec += (time_t)(t / 1000000000LL);
    ts.tv_nsec = (long)(t % 1000000000LL);
    pthread_mutex_lock(&w->mu);
    if (!atomic_load(&w->stopping) && !w->released)
        pthread_cond_timedwait(&w->reader_cv, &w->mu, &ts);
    pthread_mutex_unlock(&w->mu);
}

/* Claim the entries of dead workers every claim-after / 2, then take new
 * ones, as many as there are free slots (parked ones too when they may
 * fit: after a release, else every PARK_EVERY_NS), and when none came,
 * wait for the next. */
void *flow__worker_reader_main(void *arg)
{
    struct flow_worker *w = arg;
    int64_t claim_at = 0, park_at = 0, levels_at = 0;
    bool waiting = false; /* for resources: until some are given back */
    for (;;) {
        pthread_mutex_lock(&w->mu);
        size_t cap = (size_t)w->concurrency;
        while (!atomic_load(&w->stopping) && (w->busy >= cap || w->jobs.count >= 2 * cap))
            pthread_cond_wait(&w->reader_cv, &w->mu);
        struct room room = {
            .slots = cap - w->busy < 2 * cap - w->jobs.count ? cap - w->busy
                                                             : 2 * cap - w->jobs.count,
            .free = {w->capacity.cpu - w->used.cpu, w->capacity.memory - w->used.memory,
                     w->capacity.gpu - w->used.gpu},
        };
        bool released = w->released;
        w->released = false;
        pthread_mutex_unlock(&w->mu);
        if (atomic_load(&w->stopping))
            break;
        if (!ensure_groups(w)) {
            reader_nap(w, RETRY_NS);
            continue;
        }
        if (w->rd.c && w->rd.c != w->rd_id_of) {
            /* Its id lets the main thread end a blocking read at once when
             * the worker stops (CLIENT UNBLOCK), so a draining worker takes
             * nothing new. */
            const char *ci[] = {"CLIENT", "ID"};
            redisReply *id = flow__worker_cmdv(w, &w->rd, 2, ci);
            if (id && id->type == REDIS_REPLY_INTEGER) {
                atomic_store(&w->rd_client_id, id->integer);
                w->rd_id_of = w->rd.c;
            }
            freeReplyObject(id);
            if (atomic_load(&w->stopping))
                continue;
        }
        int64_t now = flow__now_ns();
        if (now >= claim_at) {
            claim_at = now + (int64_t)(w->claim_after * 1e9 / 2);
            claim_dead(w, &room);
            if (room.wait || !room.slots) {
                waiting = room.wait;
                if (waiting)
                    reader_nap(w, PARK_EVERY_NS);
                continue;
            }
        }
        bool look = released || waiting || now >= park_at;
        bool plain = w->streams.count == w->nqueues;
        if (plain && now >= levels_at) {
            /* By itself, before the read: a level found here is read
             * first, before anything of a lower one is taken. */
            levels_at = now + LEVELS_EVERY_NS;
            plain = !levels_exist(w);
        }
        if (!plain || look) {
            /* Highest level first, parked entries too when they may fit. */
            if (look)
                park_at = now + PARK_EVERY_NS;
            long came = take_now(w, &room, look);
            waiting = room.wait;
            if (came < 0) {
                /* Redis failed or answered an error (it may have restarted
                 * without its data: the groups are made again). */
                w->groups_ok = false;
                reader_nap(w, RETRY_NS);
                continue;
            }
            if (waiting)
                reader_nap(w, PARK_EVERY_NS);
            if (waiting || came || !room.slots)
                continue;
        }
        /* Nothing to take now (or no level but 0, no parked entry to look
         * at: then this one read as before priorities had streams). */
        redisReply *r = wait_new(w, &room);
        take_streams(w, r, &room);
        waiting = room.wait;
        if (!r) {
            w->groups_ok = false;
            reader_nap(w, RETRY_NS);
        } else if (waiting) {
            reader_nap(w, PARK_EVERY_NS);
        }
        freeReplyObject(r);
    }
    pthread_mutex_lock(&w->mu);
    w->reader_exited = true;
    flow__worker_wake_locked(w);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}
