/* web.h -- the dashboard's files (src/serve/web/), built into the program.
 *
 * cmake/embed.cmake turns each file into a byte array at build time
 * (web_assets.c in the build directory), so `flow serve` needs no file
 * beside it and serves exactly the page it was built with. */
#ifndef FLOW_SERVE_WEB_H
#define FLOW_SERVE_WEB_H

#include <stddef.h>

struct flow_web_asset {
    const char *path;          /* "/index.html", "/assets/app.js", ... */
    const char *content_type;  /* with "; charset=utf-8" for text */
    const unsigned char *data; /* `size` bytes, then a NUL not counted in size */
    size_t size;
};

/* The asset served at `path` (a URL path without its query string): "/" and
 * "/index.html" are the page, "/assets/NAME" its script, style sheet and
 * icon. NULL for any other path. The result is static: never freed. */
const struct flow_web_asset *flow_web_find(const char *path);

/* The generated table (web_assets.c): every asset, in the order of the
 * files given to cmake/embed.cmake. */
extern const struct flow_web_asset flow__web_assets[];
extern const size_t flow__web_asset_count;

#endif
