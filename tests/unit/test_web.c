/* test_web.c -- the dashboard's files built into the program (cmake/embed.cmake,
 * src/serve/web.c): each is served byte for byte as it is in src/serve/web/,
 * at the path the page asks for, with its content type; nothing else is
 * found; and the page holds nothing the Content-Security-Policy of the serve
 * (default-src 'self') would block. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <stdlib.h>
#include <string.h>

#include "serve/web.h"

static const struct {
    const char *file, *path, *type;
} files[] = {
    {"index.html", "/index.html", "text/html; charset=utf-8"},
    {"app.js", "/assets/app.js", "text/javascript; charset=utf-8"},
    {"style.css", "/assets/style.css", "text/css; charset=utf-8"},
    {"favicon.svg", "/assets/favicon.svg", "image/svg+xml"},
};

static void test_files_as_they_are(void **state)
{
    (void)state;
    assert_int_equal(flow__web_asset_count, sizeof(files) / sizeof(files[0]));
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char rel[128];
        snprintf(rel, sizeof(rel), "src/serve/web/%s", files[i].file);
        char *path = th_source_path(rel);
        char *text = th_read_file(path);
        assert_non_null(text);
        const struct flow_web_asset *a = flow_web_find(files[i].path);
        assert_non_null(a);
        assert_string_equal(a->path, files[i].path);
        assert_string_equal(a->content_type, files[i].type);
        assert_int_equal(a->size, strlen(text));
        assert_memory_equal(a->data, text, a->size);
        assert_int_equal(a->data[a->size], 0); /* the NUL past the end */
        free(text);
        free(path);
    }
}

static void test_paths(void **state)
{
    (void)state;
    const struct flow_web_asset *page = flow_web_find("/index.html");
    assert_non_null(page);
    assert_ptr_equal(flow_web_find("/"), page);
    static const char *const none[] = {
        "", "/index.htm", "/index.html/", "/assets/", "/assets", "/assets/nope.js",
        "/assets/../index.html", "/app.js", "/style.css", "//", "/assets/app.js?x=1",
        "/ASSETS/app.js", "/api/v1/runs",
    };
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
        if (flow_web_find(none[i]))
            fail_msg("'%s' found an asset", none[i]);
    assert_null(flow_web_find(NULL));
}

/* The serve sends `Content-Security-Policy: default-src 'self'`: no inline
 * script or style in the page, and every asset it names is embedded (it
 * names them relatively, so a proxy may mount the serve under a prefix). */
static void test_page_within_csp(void **state)
{
    (void)state;
    const struct flow_web_asset *page = flow_web_find("/");
    const char *html = (const char *)page->data;
    assert_null(strstr(html, "<style"));
    assert_null(strstr(html, " style="));
    assert_null(strstr(html, "javascript:"));
    for (const char *p = html; (p = strstr(p, "<script")) != NULL; p++) {
        const char *end = strchr(p, '>');
        assert_non_null(end);
        if (!memmem(p, (size_t)(end - p), "src=", 4))
            fail_msg("an inline <script> in index.html");
        assert_true(strncmp(end, "></script>", 10) == 0);
    }
    for (const char *p = html; (p = strstr(p, "\"assets/")) != NULL; p++) {
        char path[64] = "/";
        size_t len = strcspn(p + 1, "\"");
        assert_true(len < sizeof(path) - 1);
        memcpy(path + 1, p + 1, len);
        path[len + 1] = '\0';
        if (!flow_web_find(path))
            fail_msg("index.html names '%s', which is not embedded", path);
    }
    const struct flow_web_asset *js = flow_web_find("/assets/app.js");
    assert_null(strstr((const char *)js->data, "eval("));
    assert_null(strstr((const char *)js->data, "new Function"));
    assert_null(strstr((const char *)js->data, "innerHTML"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files_as_they_are),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_page_within_csp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
