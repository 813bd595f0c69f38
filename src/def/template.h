/* template.h -- `{{ path | filter }}` templates in workflow values.
 *
 * A template is any JSON value; each string in it may hold `{{ expr }}`
 * parts. expr is a path -- a root (inputs, input, state, tasks, item, index,
 * run, env, secrets) then `.key` and `[n]` steps -- followed by optional filters
 * `| json` (JSON text), `| shell` (quoted for /bin/sh) and `| url`
 * (percent-encoded). A string that is
 * exactly one `{{ path }}` without filters renders to the value itself (an
 * object stays an object); anything else renders to a string, where
 * non-string values are written as compact JSON.
 */
#ifndef FLOW_DEF_TEMPLATE_H
#define FLOW_DEF_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "flow.h"

struct flow__tmpl;

/* One step of a path: a key, or an index when `key` is NULL. */
struct flow__tmpl_seg {
    const char *key;
    long index;
};

struct flow__tmpl_path {
    const struct flow__tmpl_seg *segs; /* segs[0].key is the root */
    size_t count;
};

/* Compile `value` (borrowed). Syntax errors ("unclosed '{{'", "unknown
 * filter 'x'", "unknown root 'foo'") go to `err` with the offending text. */
flow_err flow__tmpl_compile(json_t *value, struct flow__tmpl **out, flow_error *err);
/* The same for one string. */
flow_err flow__tmpl_compile_string(const char *s, struct flow__tmpl **out, flow_error *err);
/* A prompt's text (def/prompts.c): its expressions name variables bare
 * (`{{ text }}`, `{{ doc.title }}`): any first step is a root, looked up
 * by the scope it is rendered with. */
flow_err flow__tmpl_compile_bare(const char *s, size_t len, struct flow__tmpl **out,
                                 flow_error *err);
void flow__tmpl_free(struct flow__tmpl *t);
/* Feed the template (its text and structure) into FNV-1a state `h`; *ok
 * turns false when it could not be written (out of memory). */
uint64_t flow__tmpl_fingerprint(const struct flow__tmpl *t, uint64_t h, bool *ok);

/* True when the template has no {{ }} at all (renders to itself). */
bool flow__tmpl_is_static(const struct flow__tmpl *t);
/* True when the template is a string that is exactly one `{{ path }}`
 * without filters, so that it renders to the value at the path, whatever its
 * type (any other string template renders to a string). */
bool flow__tmpl_is_whole(const struct flow__tmpl *t);

/* Call `fn` for every path the template references, in order; stops at the
 * first nonzero return, which it returns. */
typedef int (*flow__tmpl_ref_fn)(const struct flow__tmpl_path *path, void *udata);
int flow__tmpl_foreach_ref(const struct flow__tmpl *t, flow__tmpl_ref_fn fn, void *udata);

/* The text ("{{ x }}") of the first expression of a string template whose
 * last filter is not `shell`, borrowed from `t`; NULL when every one is
 * quoted for a shell (or there is none). */
const char *flow__tmpl_unquoted(const struct flow__tmpl *t);

/* Where rendering finds values. `lookup` returns a new reference to the
 * value at `path`, or NULL with a message in `err` ("no task 'x'",
 * "'inputs.n' is not set"). flow__tmpl_walk() helps with the steps below
 * the part the caller resolves itself. */
struct flow__tmpl_scope {
    json_t *(*lookup)(void *udata, const struct flow__tmpl_path *path, flow_error *err);
    void *udata;
};

/* Render to a new reference. Errors name the template text. */
flow_err flow__tmpl_render(const struct flow__tmpl *t, const struct flow__tmpl_scope *scope,
                           json_t **out, flow_error *err);
/* Render and convert to a string (strings as they are, other values as
 * compact JSON); for argv elements, env values and paths. flow__free it. */
flow_err flow__tmpl_render_string(const struct flow__tmpl *t, const struct flow__tmpl_scope *scope,
                                  char **out, flow_error *err);

/* Follow segs[from..count) below `v` (borrowed); returns a borrowed value or
 * NULL with `err` naming the first step that does not exist. */
json_t *flow__tmpl_walk(json_t *v, const struct flow__tmpl_path *path, size_t from,
                        flow_error *err);

/* The first `count` steps of `path` as text ("inputs.rows[0][\"a b\"]"), for
 * messages. flow__free it; NULL when out of memory. */
char *flow__tmpl_path_text(const struct flow__tmpl_path *path, size_t count);

/* Quote `s` for /bin/sh (single quotes). flow__free the result. */
char *flow__shell_quote(const char *s);
/* Durations: "250ms", "30s", "5m", "2h", "1h30m", or a number of seconds.
 * Returns false on anything else. */
bool flow__parse_duration(const char *s, double *seconds);

#endif
