/* schedule.c -- a flow's schedule (`schedule:`): kept parsed with the
 * flow, so a bad expression or time zone is an error when the flow is
 * built or loaded, not when a serve first looks at it. */
#include "util/compat.h"

#include <string.h>

#include "def/cron.h"
#include "def/flowdef.h"
#include "util/alloc.h"
#include "util/error.h"

struct flow__schedule {
    flow_schedule pub; /* strings owned */
    struct flow__cron cron;
};

void flow__schedule_free(struct flow *f)
{
    struct flow__schedule *s = f->schedule;
    if (!s)
        return;
    flow__free((char *)s->pub.cron);
    flow__free((char *)s->pub.timezone);
    json_decref(s->pub.inputs);
    flow__free(s);
    f->schedule = NULL;
}

flow_err flow_set_schedule(flow *f, const flow_schedule *in, flow_error *err)
{
    struct flow__cron parsed;
    if (!in || !in->cron) {
        flow__schedule_free(f);
        return FLOW_OK;
    }
    flow_err rc = flow__cron_parse(in->cron, &parsed, err);
    if (rc)
        return rc;
    if (in->timezone && !flow__cron_zone_known(in->timezone))
        return flow__error(err, FLOW_EINVAL,
                           "unknown time zone '%.100s' (an IANA name such as Europe/Berlin or "
                           "America/New_York; UTC by default)",
                           in->timezone);
    if (in->inputs && !json_is_object(in->inputs))
        return flow__error(err, FLOW_EINVAL, "the inputs of a schedule must be an object");
    struct flow__schedule *s = flow__calloc(1, sizeof(*s));
    if (!s || !(s->pub.cron = flow__strdup(in->cron)) ||
        (in->timezone && !(s->pub.timezone = flow__strdup(in->timezone)))) {
        if (s)
            flow__free((char *)s->pub.cron);
        flow__free(s);
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    s->pub.inputs = in->inputs ? json_deep_copy(in->inputs) : NULL;
    s->pub.catchup = in->catchup;
    s->cron = parsed;
    flow__schedule_free(f);
    f->schedule = s;
    return FLOW_OK;
}

const flow_schedule *flow_get_schedule(const flow *f)
{
    return f->schedule ? &f->schedule->pub : NULL;
}

double flow_schedule_next(const flow *f, double after)
{
    if (!f->schedule)
        return -1;
    return flow__cron_next(&f->schedule->cron, after, f->schedule->pub.timezone);
}
