/* load_diag.c -- how the loader speaks: diagnostics with file, line and
 * column, "did you mean" suggestions, values read from the document with
 * their positions and checked types, and checks of templates against what
 * they may name. */
#include "util/compat.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "def/load_int.h"
#include "def/template.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/json.h"

struct val flow__ld_member_at(const struct loader *L, json_t *map, const char *key, json_t *value,
                              struct flow__yaml_pos *key_pos)
{
    struct val x = {value ? value : json_object_get(map, key), {0, 0}, NULL};
    flow__yaml_member(L->doc, map, key, key_pos, &x.pos, &x.raw);
    return x;
}

struct val flow__ld_member(const struct loader *L, json_t *map, const char *key)
{
    struct flow__yaml_pos key_pos;
    return flow__ld_member_at(L, map, key, NULL, &key_pos);
}

void flow__ld_concat(char *buf, size_t len, ...)
{
    if (!len)
        return;
    char *at = buf;
    char *end = buf + len - 1;
    va_list ap;
    va_start(ap, len);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL) {
        while (*s && at < end) /* short words: a loop beats strlen + memcpy */
            *at++ = *s++;
    }
    va_end(ap);
    *at = '\0';
}

struct val flow__ld_item(const struct loader *L, json_t *seq, size_t i)
{
    struct val x = {json_array_get(seq, i), flow__yaml_item_pos(L->doc, seq, i),
                    flow__yaml_item_text(L->doc, seq, i)};
    return x;
}

/* Keep a diagnostic, sorted at `at` in this file. */
void flow__ld_add_diag(struct loader *L, const flow_error *e, flow_severity sev,
                       struct flow__yaml_pos at)
{
    struct ldiag d = {.e = *e, .sev = sev, .at = at, .seq = L->diags.count};
    flow_err rc = FLOW_OK;
    size_t before = L->diags.count;
    FLOW__VEC_PUSH(&L->diags, d, rc);
    if (rc != FLOW_OK || L->diags.count == before)
        L->nomem = true;
}

static void vreport(struct loader *L, flow_severity sev, const char *file,
                    struct flow__yaml_pos pos, struct flow__yaml_pos at, const char *fmt,
                    va_list ap) FLOW__PRINTF(6, 0);

static void vreport(struct loader *L, flow_severity sev, const char *file,
                    struct flow__yaml_pos pos, struct flow__yaml_pos at, const char *fmt,
                    va_list ap)
{
    char msg[420];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    flow_error e;
    flow__error_at(&e, FLOW_EVALIDATION, file, pos.line, pos.column, "%s", msg);
    flow__ld_add_diag(L, &e, sev, at);
}

void flow__ld_report(struct loader *L, struct flow__yaml_pos pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(L, FLOW_SEV_ERROR, L->file, pos, pos, fmt, ap);
    va_end(ap);
}

void flow__ld_warn(struct loader *L, struct flow__yaml_pos pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(L, FLOW_SEV_WARNING, L->file, pos, pos, fmt, ap);
    va_end(ap);
}

/* Report a failed call into the core at `pos`. */
void flow__ld_core_failed(struct loader *L, struct flow__yaml_pos pos, flow_err rc,
                          const flow_error *e, const char *what)
{
    if (rc == FLOW_ENOMEM) {
        L->nomem = true;
        return;
    }
    if (e && e->code != FLOW_OK && e->message[0])
        flow__ld_report(L, pos, "%s: %s", what, e->message);
    else
        flow__ld_report(L, pos, "%s: %s", what, flow_strerror(rc));
}

/* In a workflow file an object is a mapping. */
const char *flow__ld_type_name(const json_t *v)
{
    return json_is_object(v) ? "a mapping" : flow__json_type_name(v);
}

/* Edit distance (Levenshtein, with a swap of two neighbours counting as one
 * edit), case-insensitive, for "did you mean"; large for long words. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a);
    size_t lb = strlen(b);
    if (la > 63 || lb > 63)
        return SIZE_MAX;
    size_t rows[3][64]; /* two rows back, one row back, this row */
    size_t *pp = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            char ca = (char)tolower((unsigned char)a[i - 1]);
            char cb = (char)tolower((unsigned char)b[j - 1]);
            size_t best = prev[j - 1] + (ca != cb);
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && pp[j - 2] + 1 < best)
                best = pp[j - 2] + 1;
            cur[j] = best;
        }
        size_t *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

/* Close enough to suggest: one edit for short words, two for longer ones,
 * and never a whole one-letter word. */
static bool close_enough(const char *word, size_t d)
{
    size_t len = strlen(word);
    return d < len && d <= (len <= 4 ? 1u : 2u);
}

const char *flow__ld_closest(const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(word, cands[i]);
        if (d < best_d) {
            best_d = d;
            best = cands[i];
        }
    }
    return best && close_enough(word, best_d) ? best : NULL;
}

/* " (did you mean 'x'?)" or "". */
void flow__ld_suggestion(char *buf, size_t len, const char *best)
{
    if (best)
        snprintf(buf, len, " (did you mean '%s'?)", best);
    else if (len)
        buf[0] = '\0';
}

/* Report every key of mapping `x` that is not in `keys` ("unknown key 'k' in
 * WHAT; did you mean ...?"); false when there was one. */
bool flow__ld_known_keys(struct loader *L, const struct val *x, const char *const *keys, size_t n,
                         const char *what)
{
    bool ok = true;
    const char *k;
    json_t *v;
    json_object_foreach(x->v, k, v)
    {
        if (!flow__ld_in_list(k, keys, n)) {
            char hint[80];
            flow__ld_suggestion(hint, sizeof(hint), flow__ld_closest(k, keys, n));
            flow__ld_report(L, flow__yaml_key_pos(L->doc, x->v, k), "unknown key '%s' in %s%s", k,
                            what, hint);
            ok = false;
        }
    }
    return ok;
}

void flow__ld_unknown_task(struct loader *L, struct flow__yaml_pos pos, const char *name,
                           const char *what)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    const char *k;
    json_t *v;
    json_object_foreach(L->tasks, k, v)
    {
        size_t d = edit_distance(name, k);
        if (d < best_d) {
            best_d = d;
            best = k;
        }
    }
    char hint[160];
    flow__ld_suggestion(hint, sizeof(hint), best && close_enough(name, best_d) ? best : NULL);
    flow__ld_report(L, pos, "unknown task '%s' in %s%s", name, what, hint);
}

bool flow__ld_valid_task_name(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return false;
    for (s++; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    }
    return true;
}

/* Values                                                                   */

bool flow__ld_get_string(struct loader *L, const struct val *x, const char *what, bool non_empty,
                         const char **out)
{
    if (!json_is_string(x->v)) {
        flow__ld_report(L, x->pos, "%s must be %s, not %s", what,
                        non_empty ? "a non-empty string" : "a string", flow__ld_type_name(x->v));
        return false;
    }
    const char *s = json_string_value(x->v);
    if (strlen(s) != json_string_length(x->v)) {
        flow__ld_report(L, x->pos, "%s cannot hold a NUL character", what);
        return false;
    }
    if (non_empty && !*s) {
        flow__ld_report(L, x->pos, "%s must be a non-empty string", what);
        return false;
    }
    *out = s;
    return true;
}

/* A scalar as text: strings as they are, numbers and booleans as written. */
const char *flow__ld_scalar_text(const struct val *x, char *buf, size_t len)
{
    if (json_is_string(x->v)) {
        const char *s = json_string_value(x->v);
        return strlen(s) == json_string_length(x->v) ? s : NULL;
    }
    if (!json_is_number(x->v) && !json_is_boolean(x->v))
        return NULL;
    if (x->raw)
        return x->raw;
    if (json_is_integer(x->v))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(x->v));
    else if (json_is_real(x->v))
        snprintf(buf, len, "%.17g", json_real_value(x->v));
    else
        snprintf(buf, len, "%s", json_is_true(x->v) ? "true" : "false");
    return buf;
}

bool flow__ld_get_bool(struct loader *L, const struct val *x, const char *what, bool *out)
{
    if (!json_is_boolean(x->v)) {
        flow__ld_report(L, x->pos, "%s must be true or false, not %s", what,
                        flow__ld_type_name(x->v));
        return false;
    }
    *out = json_is_true(x->v);
    return true;
}

bool flow__ld_get_int(struct loader *L, const struct val *x, const char *what, long long min,
                      const char *desc, int *out)
{
    if (!json_is_integer(x->v)) {
        flow__ld_report(L, x->pos, "%s must be %s, not %s", what, desc, flow__ld_type_name(x->v));
        return false;
    }
    json_int_t v = json_integer_value(x->v);
    if (v < min || v < INT_MIN || v > INT_MAX) {
        flow__ld_report(L, x->pos, "%s must be %s, not %" JSON_INTEGER_FORMAT, what, desc, v);
        return false;
    }
    *out = (int)v;
    return true;
}

bool flow__ld_get_duration(struct loader *L, const struct val *x, const char *what, double *out)
{
    if (json_is_string(x->v)) {
        const char *s = json_string_value(x->v);
        if (!flow__parse_duration(s, out)) {
            flow__ld_report(L, x->pos, "bad duration '%s' for %s (" DURATION_HINT ")", s, what);
            return false;
        }
        return true;
    }
    if (json_is_number(x->v)) {
        double d = json_number_value(x->v);
        if (d < 0) {
            flow__ld_report(L, x->pos, "bad duration '%s' for %s (" DURATION_HINT ")",
                            x->raw ? x->raw : "negative", what);
            return false;
        }
        *out = d;
        return true;
    }
    flow__ld_report(L, x->pos, "%s must be a duration (" DURATION_HINT "), not %s", what,
                    flow__ld_type_name(x->v));
    return false;
}

/* One of `names`; *out is its index. */
bool flow__ld_get_choice(struct loader *L, const struct val *x, const char *what,
                         const char *const *names, size_t n, size_t *out)
{
    char list[160] = "";
    size_t used = 0;
    for (size_t i = 0; i < n && used < sizeof(list); i++) {
        int w = snprintf(list + used, sizeof(list) - used, "%s%s", names[i],
                         i + 2 < n   ? ", "
                         : i + 1 < n ? " or "
                                     : "");
        used += w > 0 ? (size_t)w : 0;
    }
    if (!json_is_string(x->v)) {
        flow__ld_report(L, x->pos, "%s must be %s, not %s", what, list, flow__ld_type_name(x->v));
        return false;
    }
    const char *s = json_string_value(x->v);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return true;
        }
    }
    flow__ld_report(L, x->pos, "%s must be %s, not '%s'", what, list, s);
    return false;
}

/* --- templates --- */

struct ref_check {
    struct loader *L;
    struct flow__yaml_pos pos;
    const char *what;
    bool ok;
};

/* Keep a `tasks.X.output` read for the check against the graph. */
static void note_output_ref(struct ref_check *c, const struct flow__tmpl_path *path)
{
    struct loader *L = c->L;
    struct output_ref ref = {
        .task = L->cur_task,
        .dep = flow__strdup(path->segs[1].key),
        .text = flow__tmpl_path_text(path, path->count),
        .what = flow__strdup(c->what),
        .pos = c->pos,
    };
    flow_err rc = ref.dep && ref.text && ref.what ? FLOW_OK : FLOW_ENOMEM;
    if (!rc)
        FLOW__VEC_PUSH(&L->output_refs, ref, rc);
    if (rc) {
        flow__free(ref.dep);
        flow__free(ref.text);
        flow__free(ref.what);
        L->nomem = true;
    }
}

/* `{{ secrets.NAME }}` (and `{{ env.NAME }}` of a secret) only in `env`
 * values, and only of a listed NAME: a secret never goes to argv, which
 * `ps` shows, nor to anything journaled. */
static void check_secret_ref(struct ref_check *c, const struct flow__tmpl_path *path)
{
    struct loader *L = c->L;
    const char *name = path->count > 1 ? path->segs[1].key : NULL;
    bool listed = name && flow__flow_has_secret(L->f, name);
    if (strcmp(path->segs[0].key, "env") == 0) {
        if (listed && !L->in_env) {
            flow__ld_report(L, c->pos,
                            "'{{ env.%s }}' in %s: '%s' is a secret: use it only in 'env' values "
                            "(as '{{ secrets.%s }}'; commands also inherit it as $%s)",
                            name, c->what, name, name, name);
            c->ok = false;
        }
        return;
    }
    if (!L->in_env) {
        flow__ld_report(L, c->pos,
                        "'{{ secrets.%s }}' in %s: secrets can be used only in 'env' values (a "
                        "command's environment) and in the url, headers and body of 'http', "
                        "never in arguments or anything journaled",
                        name ? name : "", c->what);
        c->ok = false;
    } else if (!listed && !L->secrets_broken) {
        char hint[120];
        flow__ld_suggestion(hint, sizeof(hint),
                            flow__ld_closest(name ? name : "",
                                             (const char *const *)L->f->secrets.items,
                                             L->f->secrets.count));
        flow__ld_report(L, c->pos, "unknown secret '%s' in %s%s: list it in 'secrets'",
                        name ? name : "", c->what, hint);
        c->ok = false;
    }
}

static int check_ref(const struct flow__tmpl_path *path, void *udata)
{
    struct ref_check *c = udata;
    const char *root = path->segs[0].key;
    if (strcmp(root, "tasks") == 0 && path->count > 1 && path->segs[1].key) {
        const char *name = path->segs[1].key;
        bool known = !c->L->tasks || json_object_get(c->L->tasks, name);
        if (known && c->L->cur_task && path->count > 2 && path->segs[2].key &&
            strcmp(path->segs[2].key, "output") == 0 && strcmp(name, c->L->cur_task) != 0)
            note_output_ref(c, path);
        if (!known) {
            char *text = flow__tmpl_path_text(path, path->count);
            char what[300];
            snprintf(what, sizeof(what), "'{{ %s }}' in %s", text ? text : "tasks", c->what);
            flow__free(text);
            flow__ld_unknown_task(c->L, c->pos, name, what);
            c->ok = false;
        }
    } else if (strcmp(root, "secrets") == 0 || strcmp(root, "env") == 0) {
        check_secret_ref(c, path);
    } else if ((strcmp(root, "item") == 0 || strcmp(root, "index") == 0) &&
               c->L->item_scope != ITEM_SET) {
        if (c->L->item_scope == ITEM_LIST)
            flow__ld_report(
                c->L, c->pos,
                "'{{ %s }}' in %s: '%s' is set in the activations the list makes, not in "
                "the list itself",
                root, c->what, root);
        else
            flow__ld_report(c->L, c->pos,
                            "'{{ %s }}' in %s: '%s' is set only in a task with 'foreach'", root,
                            c->what, root);
        c->ok = false;
    }
    return 0;
}

/* Compile a template string and check the names it uses. */
bool flow__ld_check_template(struct loader *L, const char *s, struct flow__yaml_pos pos,
                             const char *what)
{
    if (!strstr(s, "{{"))
        return true; /* a plain string: nothing to compile, nothing it names */
    struct flow__tmpl *t = NULL;
    flow_error e;
    flow__error_clear(&e);
    flow_err rc = flow__tmpl_compile_string(s, &t, &e);
    if (rc == FLOW_ENOMEM) {
        L->nomem = true;
        return false;
    }
    if (rc) {
        flow__ld_report(L, pos, "bad template in %s: %s", what, e.message);
        return false;
    }
    struct ref_check c = {L, pos, what, true};
    flow__tmpl_foreach_ref(t, check_ref, &c);
    flow__tmpl_free(t);
    return c.ok;
}

size_t flow__ld_error_count(const struct loader *L)
{
    size_t n = 0;
    for (size_t i = 0; i < L->diags.count; i++)
        n += L->diags.items[i].sev == FLOW_SEV_ERROR;
    return n;
}

bool flow__ld_check_shell(struct loader *L, const char *s, struct flow__yaml_pos pos,
                          const char *what)
{
    if (!flow__ld_check_template(L, s, pos, what))
        return false;
    struct flow__tmpl *t = NULL;
    flow_error e;
    if (!strstr(s, "{{") || flow__tmpl_compile_string(s, &t, &e) != FLOW_OK)
        return true;
    const char *bare = flow__tmpl_unquoted(t);
    if (bare)
        flow__ld_warn(L, pos,
                      "'%s' in %s is not quoted for the shell: a value with a space, a quote or "
                      "a ';' would change the command (write it with '| shell', or pass it in "
                      "'env' or $FLOW_INPUT)",
                      bare, what);
    flow__tmpl_free(t);
    return true;
}

/* The same for every string inside a JSON value. */
bool flow__ld_check_template_value(struct loader *L, const struct val *x, const char *what)
{
    if (json_is_string(x->v)) {
        const char *s = json_string_value(x->v);
        if (!strstr(s, "{{"))
            return true;
        if (strlen(s) != json_string_length(x->v)) {
            flow__ld_report(L, x->pos, "%s cannot hold a NUL character", what);
            return false;
        }
        return flow__ld_check_template(L, s, x->pos, what);
    }
    bool ok = true;
    if (json_is_object(x->v)) {
        const char *k;
        json_t *v;
        json_object_foreach(x->v, k, v)
        {
            struct val kid = flow__ld_member(L, x->v, k);
            ok = flow__ld_check_template_value(L, &kid, what) && ok;
        }
    } else if (json_is_array(x->v)) {
        for (size_t i = 0; i < json_array_size(x->v); i++) {
            struct val kid = flow__ld_item(L, x->v, i);
            ok = flow__ld_check_template_value(L, &kid, what) && ok;
        }
    }
    return ok;
}

/* A `cwd` as the core should see it: relative to the workflow file. */
char *flow__ld_resolve_cwd(struct loader *L, const char *s, struct flow__yaml_pos pos,
                           const char *what)
{
    if (!L->dir || s[0] == '/' || strncmp(s, "{{", 2) == 0) {
        char *copy = flow__strdup(s);
        if (!copy)
            L->nomem = true;
        return copy;
    }
    if (strstr(L->dir, "{{")) {
        flow__ld_report(L, pos, "%s: cannot make '%s' relative to '%s', whose name holds '{{'",
                        what, s, L->dir);
        return NULL;
    }
    while (s[0] == '.' && s[1] == '/') {
        s += 2;
        while (*s == '/')
            s++;
    }
    char *path =
        (!*s || strcmp(s, ".") == 0) ? flow__strdup(L->dir) : flow__asprintf("%s/%s", L->dir, s);
    if (!path)
        L->nomem = true;
    return path;
}
