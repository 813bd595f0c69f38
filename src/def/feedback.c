/* feedback.c -- what an answer to a feedback request must look like: the
 * check shared by the definition (a default answer) and by whoever answers
 * (the store, a live runner). */
#include "util/compat.h"

#include <string.h>

#include "def/flowdef.h"
#include "util/alloc.h"
#include "util/json.h"

char *flow__feedback_check(flow_feedback_type type, json_t *options, json_t *value,
                           const char *by, double at, json_t **out)
{
    *out = NULL;
    const char *key;
    switch (type) {
    case FLOW_FEEDBACK_APPROVAL:
        /* Files say `default: approve`; the answer holds the bool. */
        if (json_is_string(value) && !strcmp(json_string_value(value), "approve"))
            value = json_true();
        else if (json_is_string(value) && !strcmp(json_string_value(value), "reject"))
            value = json_false();
        if (!json_is_boolean(value))
            return flow__why("an approval is answered with approve or reject (true or false)");
        key = "approved";
        break;
    case FLOW_FEEDBACK_TEXT:
        if (!json_is_string(value))
            return flow__why("a text request is answered with a text");
        key = "text";
        break;
    case FLOW_FEEDBACK_SELECTION: {
        if (!json_is_string(value))
            return flow__why("a selection is answered with one of its options");
        bool found = false;
        size_t i;
        json_t *o;
        json_array_foreach(options, i, o)
        {
            if (json_equal(o, value))
                found = true;
        }
        if (!found) {
            char *list = options ? json_dumps(options, JSON_COMPACT) : NULL;
            char *why = flow__why("'%s' is not one of the options %s",
                                       json_string_value(value), list ? list : "[]");
            flow__json_free_text(list);
            return why;
        }
        key = "selected";
        break;
    }
    default:
        return flow__why("unknown feedback type");
    }
    *out = json_pack("{s:O,s:s?,s:o}", key, value, "by", by,
                     "at", at > 0 ? flow__json_time(at) : json_null());
    return *out ? NULL : flow__why("out of memory");
}

json_t *flow__feedback_value(json_t *answer)
{
    static const char *const keys[] = {"approved", "text", "selected"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = json_object_get(answer, keys[i]);
        if (v)
            return v;
    }
    return json_null();
}
