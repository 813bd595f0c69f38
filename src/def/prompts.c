/* prompts.c -- prompt files (prompts.h): read with the YAML reader the
 * workflow files use, each template compiled once with bare variable names,
 * each entry checked where it is written, so that a mistake in a prompt
 * file is reported with its line before any run uses it. */
#include "util/compat.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "def/load_int.h"
#include "def/prompts.h"
#include "def/template.h"
#include "def/yaml.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"

#define MAX_NAME 100

char *flow__prompt_dir(const char *base)
{
    const char *env = getenv("FLOW_PROMPTS");
    if (env && *env)
        return flow__strdup(env);
    if (!base || !*base)
        return flow__strdup("prompts");
    return flow__asprintf("%s/prompts", base);
}

static bool good_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > MAX_NAME || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

static void entry_cleanup(struct flow__prompt *p)
{
    flow__free(p->version);
    json_decref(p->version_value);
    for (size_t i = 0; i < p->nlabels; i++)
        flow__free(p->labels[i]);
    flow__free(p->labels);
    flow__free(p->text);
    flow__tmpl_free(p->tmpl);
    for (size_t i = 0; i < p->nvars; i++)
        flow__free(p->vars[i]);
    flow__free(p->vars);
}

void flow__prompt_file_free(struct flow__prompt_file *pf)
{
    if (!pf)
        return;
    for (size_t i = 0; i < pf->count; i++)
        entry_cleanup(&pf->entries[i]);
    flow__free(pf->entries);
    flow__free(pf->name);
    flow__free(pf->path);
    flow__free(pf);
}

/* Collects the distinct first steps of a template's paths. */
static int add_var(const struct flow__tmpl_path *path, void *udata)
{
    struct flow__prompt *p = udata;
    const char *name = path->segs[0].key;
    for (size_t i = 0; i < p->nvars; i++)
        if (!strcmp(p->vars[i], name))
            return 0;
    char **grown = flow__realloc(p->vars, (p->nvars + 1) * sizeof(*grown));
    if (!grown)
        return 1;
    p->vars = grown;
    if (!(p->vars[p->nvars] = flow__strdup(name)))
        return 1;
    p->nvars++;
    return 0;
}

/* An error in the file at `pos`: "WHAT (FILE:LINE:COL)". */
static flow_err at(flow_error *err, const struct flow__prompt_file *pf, struct flow__yaml_pos pos,
                   const char *fmt, ...) FLOW__PRINTF(4, 5);

static flow_err at(flow_error *err, const struct flow__prompt_file *pf, struct flow__yaml_pos pos,
                   const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return flow__error_at(err, FLOW_EINVAL, pf->path, pos.line, pos.column, "%s", what);
}

static const char *const entry_keys[] = {"label", "version", "template", "description",
                                         "config"};

/* Entry `i` (the mapping `m`) of the file into pf->entries[i]. */
static flow_err load_entry(struct flow__prompt_file *pf, const struct flow__yaml_doc *doc,
                           json_t *list, size_t i, flow_error *err)
{
    json_t *m = json_array_get(list, i);
    struct flow__yaml_pos pos = flow__yaml_item_pos(doc, list, i);
    struct flow__prompt *p = &pf->entries[i];
    p->name = pf->name;
    p->line = pos.line;
    p->column = pos.column;
    if (!json_is_object(m))
        return at(err, pf, pos,
                  "entry %zu of prompt '%s' must be a mapping {label, version, template}", i + 1,
                  pf->name);
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v)
    {
        bool known = false;
        for (size_t j = 0; j < FLOW__ARRAY_LEN(entry_keys) && !known; j++)
            known = !strcmp(k, entry_keys[j]);
        if (!known)
            return at(err, pf, flow__yaml_key_pos(doc, m, k),
                      "unknown key '%s' in entry %zu of prompt '%s' (an entry has label, "
                      "version, template, and may have description and config)",
                      k, i + 1, pf->name);
    }
    /* version: a number as written, or a string */
    json_t *ver = json_object_get(m, "version");
    struct flow__yaml_pos vpos = flow__yaml_value_pos(doc, m, "version");
    if (!ver)
        return at(err, pf, pos, "entry %zu of prompt '%s' has no 'version'", i + 1, pf->name);
    const char *written = flow__yaml_value_text(doc, m, "version");
    if (json_is_string(ver) && *json_string_value(ver))
        p->version = flow__strdup(json_string_value(ver));
    else if (json_is_integer(ver) || json_is_real(ver))
        p->version = written ? flow__strdup(written)
                             : flow__asprintf("%lld", (long long)json_integer_value(ver));
    else
        return at(err, pf, vpos,
                  "'version' of entry %zu of prompt '%s' must be a number or a non-empty string",
                  i + 1, pf->name);
    p->version_value = json_incref(ver);
    /* label: a string or a list of strings; none: chosen by version only */
    json_t *lab = json_object_get(m, "label");
    struct flow__yaml_pos lpos = flow__yaml_value_pos(doc, m, "label");
    size_t nl = json_is_array(lab) ? json_array_size(lab) : lab ? 1 : 0;
    p->labels = flow__calloc(nl ? nl : 1, sizeof(*p->labels));
    if (!p->version || !p->labels)
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    for (size_t j = 0; j < nl; j++) {
        json_t *l = json_is_array(lab) ? json_array_get(lab, j) : lab;
        if (!json_is_string(l) || !*json_string_value(l))
            return at(err, pf, json_is_array(lab) ? flow__yaml_item_pos(doc, lab, j) : lpos,
                      "'label' of entry %zu of prompt '%s' must be a non-empty string or a "
                      "list of them",
                      i + 1, pf->name);
        if (!(p->labels[p->nlabels++] = flow__strdup(json_string_value(l))))
            return flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    json_t *tpl = json_object_get(m, "template");
    struct flow__yaml_pos tpos = flow__yaml_value_pos(doc, m, "template");
    if (!tpl)
        return at(err, pf, pos, "entry %zu of prompt '%s' has no 'template'", i + 1, pf->name);
    if (!json_is_string(tpl))
        return at(err, pf, tpos, "'template' of entry %zu of prompt '%s' must be text", i + 1,
                  pf->name);
    if (!(p->text = flow__strndup(json_string_value(tpl), json_string_length(tpl))))
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    flow_error terr;
    flow__error_clear(&terr);
    if (flow__tmpl_compile_bare(p->text, json_string_length(tpl), &p->tmpl, &terr))
        return at(err, pf, tpos, "bad template in version %s of prompt '%s': %s", p->version,
                  pf->name, terr.message);
    if (flow__tmpl_foreach_ref(p->tmpl, add_var, p))
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    return FLOW_OK;
}

/* Two entries of one version, or one label on two entries: which one is
 * meant could not be told. */
static flow_err check_unique(const struct flow__prompt_file *pf, flow_error *err)
{
    for (size_t i = 0; i < pf->count; i++) {
        const struct flow__prompt *a = &pf->entries[i];
        for (size_t j = 0; j < i; j++) {
            const struct flow__prompt *b = &pf->entries[j];
            struct flow__yaml_pos pos = {a->line, a->column};
            if (!strcmp(a->version, b->version))
                return at(err, pf, pos,
                          "version %s of prompt '%s' is written twice (entries %zu and %zu)",
                          a->version, pf->name, j + 1, i + 1);
            for (size_t x = 0; x < a->nlabels; x++)
                for (size_t y = 0; y < b->nlabels; y++)
                    if (!strcmp(a->labels[x], b->labels[y]))
                        return at(err, pf, pos,
                                  "label '%s' of prompt '%s' is on versions %s and %s: a label "
                                  "names one version",
                                  a->labels[x], pf->name, b->version, a->version);
        }
    }
    return FLOW_OK;
}

flow_err flow__prompt_file_load(const char *dir, const char *name, struct flow__prompt_file **out,
                                flow_error *err)
{
    *out = NULL;
    if (!good_name(name))
        return flow__error(err, FLOW_EINVAL,
                           "bad prompt name '%s': use 1 to %d of letters, digits, '_', '-' and "
                           "'.', not starting with '.'",
                           name, MAX_NAME);
    struct flow__prompt_file *pf = flow__calloc(1, sizeof(*pf));
    if (!pf || !(pf->name = flow__strdup(name)) ||
        !(pf->path = flow__asprintf("%s/%s.yaml", dir, name))) {
        flow__prompt_file_free(pf);
        return flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    struct flow__buf b;
    flow__buf_init(&b, FLOW__YAML_MAX_BYTES);
    flow_error e;
    flow__error_clear(&e);
    flow_err rc = flow__ld_read_file(pf->path, &b, &e);
    if (rc == FLOW_ENOTFOUND) {
        rc = flow__error(err, FLOW_ENOTFOUND, "no prompt '%s' in %s (no file %s)", name, dir,
                         pf->path);
        goto out;
    }
    if (rc) {
        *err = e;
        goto out;
    }
    struct flow__yaml_doc *doc = NULL;
    rc = flow__yaml_parse(b.data ? b.data : "", b.len, pf->path, &doc, err);
    if (rc)
        goto out;
    json_t *list = flow__yaml_root(doc);
    struct flow__yaml_pos top = {1, 1};
    if (!json_is_array(list) || json_array_size(list) == 0) {
        rc = at(err, pf, top,
                "prompt '%s' must be a list of entries {label, version, template}, not %s", name,
                json_is_array(list) ? "an empty list" : flow__ld_type_name(list));
    } else if (!(pf->entries = flow__calloc(json_array_size(list), sizeof(*pf->entries)))) {
        rc = flow__error(err, FLOW_ENOMEM, "out of memory");
    } else {
        for (size_t i = 0; !rc && i < json_array_size(list); i++) {
            pf->count = i + 1;
            rc = load_entry(pf, doc, list, i, err);
        }
        if (!rc)
            rc = check_unique(pf, err);
    }
    flow__yaml_free(doc);
out:
    flow__buf_cleanup(&b);
    if (rc) {
        flow__prompt_file_free(pf);
        return rc;
    }
    *out = pf;
    return FLOW_OK;
}

static bool has_label(const struct flow__prompt *p, const char *label)
{
    for (size_t i = 0; i < p->nlabels; i++)
        if (!strcmp(p->labels[i], label))
            return true;
    return false;
}

/* "1 (production), 2 (development, staging), 3" */
static void describe(const struct flow__prompt_file *pf, char *out, size_t size)
{
    struct flow__buf b;
    flow__buf_init(&b, size - 1);
    for (size_t i = 0; i < pf->count; i++) {
        const struct flow__prompt *p = &pf->entries[i];
        flow__buf_printf(&b, "%s%s", i ? ", " : "", p->version);
        for (size_t j = 0; j < p->nlabels; j++)
            flow__buf_printf(&b, "%s%s%s", j ? ", " : " (", p->labels[j],
                             j + 1 == p->nlabels ? ")" : "");
    }
    snprintf(out, size, "%s", flow__buf_str(&b));
    flow__buf_cleanup(&b);
}

const struct flow__prompt *flow__prompt_choose(const struct flow__prompt_file *pf,
                                               const char *label, const char *version,
                                               flow_error *err)
{
    char there[300];
    for (size_t i = 0; i < pf->count; i++) {
        const struct flow__prompt *p = &pf->entries[i];
        if (version ? !strcmp(p->version, version) : has_label(p, label ? label
                                                                 : FLOW__PROMPT_DEFAULT_LABEL)) {
            if (version && label && !has_label(p, label)) {
                flow__error(err, FLOW_ENOTFOUND,
                            "version %s of prompt '%s' is not labelled '%s' (%s)", version,
                            pf->name, label, pf->path);
                return NULL;
            }
            return p;
        }
    }
    describe(pf, there, sizeof(there));
    if (version)
        flow__error(err, FLOW_ENOTFOUND, "prompt '%s' has no version %s (it has %s; %s)",
                    pf->name, version, there, pf->path);
    else
        flow__error(err, FLOW_ENOTFOUND, "prompt '%s' has no version labelled '%s' (it has %s; %s)",
                    pf->name, label ? label : FLOW__PROMPT_DEFAULT_LABEL, there, pf->path);
    return NULL;
}

const char *flow__prompt_missing_var(const struct flow__prompt *p, const json_t *vars)
{
    for (size_t i = 0; i < p->nvars; i++)
        if (!json_object_get(vars, p->vars[i]))
            return p->vars[i];
    return NULL;
}

struct render_scope {
    json_t *vars;
};

static json_t *lookup_var(void *udata, const struct flow__tmpl_path *path, flow_error *err)
{
    struct render_scope *rs = udata;
    json_t *v = json_object_get(rs->vars, path->segs[0].key);
    if (!v) {
        flow__error(err, FLOW_ETEMPLATE, "'%s' was not given", path->segs[0].key);
        return NULL;
    }
    v = flow__tmpl_walk(v, path, 1, err);
    return v ? json_incref(v) : NULL;
}

char *flow__prompt_render(const struct flow__prompt *p, json_t *vars, flow_error *err)
{
    const char *missing = flow__prompt_missing_var(p, vars);
    if (missing) {
        flow__error(err, FLOW_ETEMPLATE,
                    "version %s of prompt '%s' uses variable '%s', which was not given", p->version,
                    p->name, missing);
        return NULL;
    }
    struct render_scope rs = {.vars = vars};
    struct flow__tmpl_scope scope = {.lookup = lookup_var, .udata = &rs};
    char *text = NULL;
    flow_error e;
    flow__error_clear(&e);
    if (flow__tmpl_render_string(p->tmpl, &scope, &text, &e)) {
        flow__error(err, e.code, "version %s of prompt '%s': %s", p->version, p->name, e.message);
        return NULL;
    }
    return text;
}

json_t *flow__prompt_used(const struct flow__prompt *p, const char *label, bool by_version)
{
    if (!label && !by_version)
        label = FLOW__PROMPT_DEFAULT_LABEL; /* what chose it */
    else if (!label && p->nlabels)
        label = p->labels[0];
    return json_pack("{s:s,s:O,s:s?}", "name", p->name, "version", p->version_value, "label",
                     label);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void flow__prompt_names_free(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        flow__free(names[i]);
    flow__free(names);
}

flow_err flow__prompt_names(const char *dir, char ***out, size_t *count, flow_error *err)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        return flow__error(err, e == ENOENT ? FLOW_ENOTFOUND : FLOW_EIO,
                           "cannot read the prompt directory '%s': %s", dir, strerror(e));
    }
    char **names = NULL;
    size_t n = 0;
    flow_err rc = FLOW_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len <= 5 || strcmp(de->d_name + len - 5, ".yaml") || de->d_name[0] == '.')
            continue;
        char **grown = flow__realloc(names, (n + 1) * sizeof(*names));
        if (!grown || !(grown[n] = flow__strndup(de->d_name, len - 5))) {
            if (grown)
                names = grown;
            rc = flow__error(err, FLOW_ENOMEM, "out of memory");
            break;
        }
        names = grown;
        n++;
    }
    closedir(d);
    if (rc) {
        flow__prompt_names_free(names, n);
        return rc;
    }
    if (n)
        qsort(names, n, sizeof(*names), by_name);
    *out = names;
    *count = n;
    return FLOW_OK;
}

/* ---- the public functions ------------------------------------------------ */

static json_t *str_list(char *const *items, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(items[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *describe_entry(const struct flow__prompt *p, bool with_text)
{
    json_t *o = json_pack("{s:O,s:o,s:o,s:i}", "version", p->version_value, "labels",
                          str_list(p->labels, p->nlabels), "variables",
                          str_list(p->vars, p->nvars), "line", p->line);
    if (o && with_text && json_object_set_new(o, "template", json_string(p->text))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static char *dir_or_default(const char *dir)
{
    return dir ? flow__strdup(dir) : flow__prompt_dir(NULL);
}

json_t *flow_prompts_list(const char *dir, flow_error *err)
{
    char *d = dir_or_default(dir);
    char **names = NULL;
    size_t n = 0;
    if (!d || flow__prompt_names(d, &names, &n, err)) {
        if (!d)
            flow__error(err, FLOW_ENOMEM, "out of memory");
        flow__free(d);
        return NULL;
    }
    json_t *out = json_array();
    for (size_t i = 0; out && i < n; i++) {
        struct flow__prompt_file *pf = NULL;
        flow_error e;
        flow__error_clear(&e);
        char *path = flow__asprintf("%s/%s.yaml", d, names[i]);
        json_t *item = json_pack("{s:s,s:s?}", "name", names[i], "file", path);
        if (item && flow__prompt_file_load(d, names[i], &pf, &e)) {
            json_object_set_new(item, "error", json_string(e.message));
        } else if (item) {
            json_t *versions = json_array();
            for (size_t k = 0; versions && k < pf->count; k++)
                json_array_append_new(versions, describe_entry(&pf->entries[k], false));
            json_object_set_new(item, "versions", versions);
        }
        flow__prompt_file_free(pf);
        flow__free(path);
        if (!item || json_array_append_new(out, item)) {
            json_decref(out);
            out = NULL;
        }
    }
    flow__prompt_names_free(names, n);
    flow__free(d);
    if (!out)
        flow__error(err, FLOW_ENOMEM, "out of memory");
    return out;
}

/* Load the file `ref` names and choose its entry; *pf to free after. */
static const struct flow__prompt *find(const flow_prompt_ref *ref, struct flow__prompt_file **pf,
                                       flow_error *err)
{
    *pf = NULL;
    if (!ref || !ref->name) {
        flow__error(err, FLOW_EINVAL, "a prompt needs a name");
        return NULL;
    }
    char *d = dir_or_default(ref->dir);
    if (!d) {
        flow__error(err, FLOW_ENOMEM, "out of memory");
        return NULL;
    }
    flow_err rc = flow__prompt_file_load(d, ref->name, pf, err);
    flow__free(d);
    return rc ? NULL : flow__prompt_choose(*pf, ref->label, ref->version, err);
}

json_t *flow_prompt_get(const flow_prompt_ref *ref, flow_error *err)
{
    struct flow__prompt_file *pf;
    const struct flow__prompt *p = find(ref, &pf, err);
    json_t *o = p ? describe_entry(p, true) : NULL;
    if (o && (json_object_set_new(o, "name", json_string(p->name)) ||
              json_object_set_new(o, "file", json_string(pf->path)))) {
        json_decref(o);
        o = NULL;
    }
    if (p && !o)
        flow__error(err, FLOW_ENOMEM, "out of memory");
    flow__prompt_file_free(pf);
    return o;
}

char *flow_prompt_render(const flow_prompt_ref *ref, json_t *vars, json_t **used, flow_error *err)
{
    if (used)
        *used = NULL;
    if (vars && !json_is_object(vars)) {
        flow__error(err, FLOW_EINVAL, "the prompt's vars must be an object");
        return NULL;
    }
    struct flow__prompt_file *pf;
    const struct flow__prompt *p = find(ref, &pf, err);
    char *text = p ? flow__prompt_render(p, vars, err) : NULL;
    if (text && used && !(*used = flow__prompt_used(p, ref->label, ref->version != NULL))) {
        flow__free(text);
        text = NULL;
        flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    flow__prompt_file_free(pf);
    return text;
}
