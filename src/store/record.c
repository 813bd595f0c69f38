/* record.c -- helpers for journal records (record.h). */
#include "util/compat.h"

#include "store/record.h"
#include "util/alloc.h"

const char *flow__jrec_type_name(int type)
{
    static const char *const names[] = {
        "?",           "run_created",   "act_created", "act_started",
        "act_completed", "act_failed",  "act_retrying", "act_skipped",
        "act_cancelled", "label",       "state_set",   "run_ended",  "checkpoint",
        "event",         "paused",      "resumed",     "log",
        "feedback_opened", "act_waiting", "feedback_answered",
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
