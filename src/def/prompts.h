/* prompts.h -- prompt files, in Graflow's format: a directory of NAME.yaml,
 * each a list of {label, version, template} entries (`label` a string or a
 * list of them). Templates name their variables bare (`{{ text }}`). A
 * prompt is chosen by label (default `production`) or by version.
 * docs/file-format.md, "Prompts"; docs/internals/prompts.md. */
#ifndef FLOW_DEF_PROMPTS_H
#define FLOW_DEF_PROMPTS_H

#include <stdbool.h>
#include <stddef.h>

#include "flow.h"

#define FLOW__PROMPT_DEFAULT_LABEL "production"

struct flow__tmpl;

/* One entry of a prompt file. */
struct flow__prompt {
    const char *name;        /* the file's NAME (borrowed from the file) */
    char *version;           /* as text: 1, "2", "2024-05-01" */
    json_t *version_value;   /* as written: an integer or a string */
    char **labels;
    size_t nlabels;
    char *text;              /* the template as written */
    struct flow__tmpl *tmpl;
    char **vars;             /* the variables it names, in order of first use */
    size_t nvars;
    int line, column;        /* where the entry is in the file */
};

/* A prompt file, loaded whole. */
struct flow__prompt_file {
    char *name;
    char *path;
    struct flow__prompt *entries;
    size_t count;
};

/* The directory prompts are read from: $FLOW_PROMPTS when set, else
 * `prompts` in `base` (a workflow file's directory; NULL: the current
 * one). flow__free it. */
char *flow__prompt_dir(const char *base);

/* Load `dir`/`name`.yaml. A name is 1 to 100 of [A-Za-z0-9_.-], not
 * starting with '.'. Errors name the file, line and column. */
flow_err flow__prompt_file_load(const char *dir, const char *name, struct flow__prompt_file **out,
                                flow_error *err);
void flow__prompt_file_free(struct flow__prompt_file *pf);

/* The entry with `version` (when given; then `label`, if given too, must be
 * one of its labels), else the one labelled `label` (NULL: production).
 * NULL with `err` listing what there is. */
const struct flow__prompt *flow__prompt_choose(const struct flow__prompt_file *pf,
                                               const char *label, const char *version,
                                               flow_error *err);

/* The first variable of `p` that object `vars` does not give, or NULL. */
const char *flow__prompt_missing_var(const struct flow__prompt *p, const json_t *vars);

/* Render `p` with `vars` (an object) to new text (flow__free it); a variable
 * not given is an error naming it. */
char *flow__prompt_render(const struct flow__prompt *p, json_t *vars, flow_error *err);

/* {name, version, label}: what a run journals about the prompt it used.
 * `label` is the one asked for (NULL: production, which chose it), or when
 * chosen `by_version` without one, the entry's first (none: null). */
json_t *flow__prompt_used(const struct flow__prompt *p, const char *label, bool by_version);

/* The names of the prompt files of `dir` (NAME.yaml), sorted; *count gets
 * how many. Free with flow__prompt_names_free. */
flow_err flow__prompt_names(const char *dir, char ***out, size_t *count, flow_error *err);
void flow__prompt_names_free(char **names, size_t count);

#endif
