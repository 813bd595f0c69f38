/* serve.h -- `flow serve`: a runner with an HTTP API, a dashboard and
 * metrics (docs/internals/serve.md). The program's `serve` command fills
 * the options and calls flow_serve_main(). */
#ifndef FLOW_SERVE_SERVE_H
#define FLOW_SERVE_SERVE_H

#include <stdbool.h>

#include "flow.h"

struct flow_serve_options {
    const char *listen;     /* "HOST:PORT" ("[::1]:PORT"); default 127.0.0.1:8080 */
    const char *store_url;  /* NULL: the default store */
    const char *redis_url;  /* for remote tasks and /workers; NULL: $FLOW_REDIS */
    const char *flows_dir;  /* the flows it can start; default "." */
    const char *token_file; /* required off loopback */
    int jobs;               /* engine threads; 0: cores */
    bool has_resources;     /* --resources given: */
    flow_resources resources; /* what tasks may use at once */
    double stop_grace;      /* SIGTERM: seconds for running tasks to finish */
    double takeover_every;  /* seconds between looks for runs to take over */
    bool quiet;
};

/* Serve until SIGTERM or SIGINT; returns the program's exit status (0, or
 * 2 for bad options, 1 when the store or the address cannot be used). */
int flow_serve_main(const struct flow_serve_options *o);

#endif
