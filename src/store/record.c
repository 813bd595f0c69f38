/* record.c -- helpers for journal records (record.h). */
#include "util/compat.h"

#include "store/record.h"

#include <string.h>

#include "store/compress.h"
#include "util/alloc.h"
#include "util/json.h"

const char *flow__jrec_type_name(int type)
{
    static const char *const names[] = {
        "?",           "run_created",   "act_created", "act_started",
        "act_completed", "act_failed",  "act_retrying", "act_skipped",
        "act_cancelled", "label",       "state_set",   "run_ended",  "checkpoint",
        "event",         "paused",      "resumed",     "log",
        "feedback_opened", "act_waiting", "feedback_answered", "run_retried", "act_held",
    };
    if (type < 0 || (size_t)type >= sizeof(names) / sizeof(names[0]))
        return "?";
    return names[type];
}

void flow__records_free(struct flow__jrec *recs, size_t count)
{
    for (size_t i = 0; i < count; i++)
        json_decref(recs[i].payload);
    flow__free(recs);
}

flow_err flow__payload_parse(struct flow__payload_memo *m, const char *text, size_t len,
                             json_t **out)
{
    if (flow__z_is(text, len))
        return flow__payload_load(text, len, out); /* large: never remembered */
    if (m->len && len == m->len && memcmp(text, m->text, len) == 0) {
        *out = json_incref(m->value);
        return FLOW_OK;
    }
    flow_err rc = flow__json_load(text, len, JSON_DECODE_ANY, out, NULL);
    if (rc != FLOW_OK || len == 0 || len > sizeof(m->text))
        return rc;
    json_decref(m->value);
    memcpy(m->text, text, len);
    m->len = len;
    m->value = json_incref(*out);
    return FLOW_OK;
}

void flow__payload_memo_cleanup(struct flow__payload_memo *m)
{
    json_decref(m->value);
    m->value = NULL;
    m->len = 0;
}

void flow__jrec_put_fixed(char *out, const struct flow__jrec *r)
{
    memset(out, 0, FLOW__JREC_FIXED);
    out[0] = (char)r->type;
    out[1] = (char)r->attempt;
    flow__put_le32(out + 4, r->task);
    flow__put_le32(out + 8, r->act);
    flow__put_le32(out + 12, r->src);
    uint64_t bits;
    memcpy(&bits, &r->time, sizeof(bits));
    flow__put_le32(out + 16, (uint32_t)bits);
    flow__put_le32(out + 20, (uint32_t)(bits >> 32));
}

flow_err flow__jrec_decode(const char *data, size_t len, struct flow__jrec *rec, json_t **root,
                           struct flow__payload_memo *memo)
{
    *root = NULL;
    if (len < FLOW__JREC_FIXED || data[2] || data[3])
        return FLOW_EPARSE;
    uint64_t bits = (uint64_t)flow__get_le32(data + 16) | (uint64_t)flow__get_le32(data + 20) << 32;
    double time;
    memcpy(&time, &bits, sizeof(time));
    *rec = (struct flow__jrec){
        .type = (uint8_t)data[0],
        .attempt = (uint8_t)data[1],
        .task = flow__get_le32(data + 4),
        .act = flow__get_le32(data + 8),
        .src = flow__get_le32(data + 12),
        .time = time,
    };
    if (len == FLOW__JREC_FIXED)
        return FLOW_OK;
    flow_err rc = flow__payload_parse(memo, data + FLOW__JREC_FIXED, len - FLOW__JREC_FIXED, root);
    if (rc)
        return rc;
    rec->payload = *root;
    return FLOW_OK;
}
