/* web.c -- finding the dashboard's embedded files (see web.h). */
#include "util/compat.h"

#include "serve/web.h"

#include <string.h>

const struct flow_web_asset *flow_web_find(const char *path)
{
    if (path == NULL)
        return NULL;
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    for (size_t i = 0; i < flow__web_asset_count; i++)
        if (strcmp(flow__web_assets[i].path, path) == 0)
            return &flow__web_assets[i];
    return NULL;
}
