/* web.c -- placeholder page until the dashboard lands. */
#include "serve/web.h"

#include <string.h>

static const char page[] = "<!doctype html><title>flow</title><p>flow serve</p>\n";

static const struct flow_web_asset assets[] = {
    {"/", "text/html; charset=utf-8", (const unsigned char *)page, sizeof(page) - 1},
};

const struct flow_web_asset *flow_web_find(const char *path)
{
    for (size_t i = 0; i < sizeof(assets) / sizeof(assets[0]); i++)
        if (!strcmp(assets[i].path, path) || (!strcmp(path, "/index.html") && i == 0))
            return &assets[i];
    return NULL;
}
