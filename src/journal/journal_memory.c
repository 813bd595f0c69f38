/* journal_memory.c -- the in-memory journal: records in fixed-size chunks
 * (no copying as it grows, stable addresses), nothing durable. */
#include "util/compat.h"

#include "journal/journal.h"

#include "util/alloc.h"

#define CHUNK_RECORDS 4096

struct mem_journal {
    struct flow__jrec **chunks;
    size_t nchunks;
    size_t count;
};

static flow_err mem_append(void *priv, struct flow__jrec *rec)
{
    struct mem_journal *m = priv;
    size_t slot = m->count % CHUNK_RECORDS;
    if (slot == 0 && m->count / CHUNK_RECORDS == m->nchunks) {
        struct flow__jrec **chunks =
            flow__reallocarray(m->chunks, m->nchunks + 1, sizeof(*chunks));
        struct flow__jrec *chunk =
            chunks ? flow__malloc(CHUNK_RECORDS * sizeof(*chunk)) : NULL;
        if (chunks)
            m->chunks = chunks;
        if (!chunk) {
            json_decref(rec->payload);
            return FLOW_ENOMEM;
        }
        m->chunks[m->nchunks++] = chunk;
    }
    m->chunks[m->count / CHUNK_RECORDS][slot] = *rec;
    m->count++;
    return FLOW_OK;
}

static size_t mem_count(void *priv)
{
    return ((struct mem_journal *)priv)->count;
}

static const struct flow__jrec *mem_get(void *priv, size_t i)
{
    struct mem_journal *m = priv;
    if (i >= m->count)
        return NULL;
    return &m->chunks[i / CHUNK_RECORDS][i % CHUNK_RECORDS];
}

static void mem_close(void *priv)
{
    struct mem_journal *m = priv;
    if (!m)
        return;
    for (size_t i = 0; i < m->count; i++)
        json_decref(m->chunks[i / CHUNK_RECORDS][i % CHUNK_RECORDS].payload);
    for (size_t i = 0; i < m->nchunks; i++)
        flow__free(m->chunks[i]);
    flow__free(m->chunks);
    flow__free(m);
}

static const struct flow__journal_ops memory_ops = {
    .version = 1,           /* */
    .name = "memory",       /* */
    .append = mem_append,   /* records kept in chunks */
    .commit = NULL,         /* nothing is durable */
    .count = mem_count,     /* */
    .get = mem_get,         /* */
    .close = mem_close,     /* */
};

flow_err flow__journal_memory_open(struct flow__journal *j)
{
    struct mem_journal *m = flow__calloc(1, sizeof(*m));
    if (!m)
        return FLOW_ENOMEM;
    j->ops = &memory_ops;
    j->priv = m;
    return FLOW_OK;
}
