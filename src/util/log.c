/* log.c -- forwards messages to the host's log callback. */
#include "compat.h"

#include "log.h"

#include <stdarg.h>
#include <stdio.h>

flow_log_level flow__log_min_level = FLOW_LOG_OFF;
static flow_log_fn log_fn;
static void *log_udata;

void flow_set_log(flow_log_fn fn, void *udata, flow_log_level min_level)
{
    log_fn = fn;
    log_udata = udata;
    flow__log_min_level = fn ? min_level : FLOW_LOG_OFF;
}

void flow__log_write(flow_log_level level, const char *fmt, ...)
{
    if (!log_fn)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_fn(level, msg, log_udata);
}
