/* log.h -- the library's only way to say something: through the host's
 * callback (flow_set_log). Arguments are not evaluated below the level. */
#ifndef FLOW_UTIL_LOG_H
#define FLOW_UTIL_LOG_H

#include "flow.h"

extern flow_log_level flow__log_min_level;

void flow__log_write(flow_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define flow__log(level, ...)                                                  \
    do {                                                                       \
        if ((level) >= flow__log_min_level)                                    \
            flow__log_write((level), __VA_ARGS__);                             \
    } while (0)

#endif
