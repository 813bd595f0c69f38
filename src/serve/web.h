/* web.h -- the dashboard's files, compiled into the program. */
#ifndef FLOW_SERVE_WEB_H
#define FLOW_SERVE_WEB_H

#include <stddef.h>

struct flow_web_asset {
    const char *path;
    const char *content_type;
    const unsigned char *data;
    size_t size;
};

/* The asset served at `path` ("/" is the page), or NULL. */
const struct flow_web_asset *flow_web_find(const char *path);

#endif
