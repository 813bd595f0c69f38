/* test_prompts.c -- prompt files (Graflow's format) and the prompt: task:
 * choosing by label and version, rendering with bare variables, every
 * mistake in a file named with its line, variables nobody gives (when the
 * flow is built, and at run time), the version journaled in a real sqlite
 * store, and workflow files asking for prompts. */
#define _GNU_SOURCE 1
#include "helpers.h"

#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "def/prompts.h"
#include "util/alloc.h"

static const char summarize[] = "- label: production\n"
                                "  version: 1\n"
                                "  template: |\n"
                                "    Summarize in {{max_words}} words: {{ text }}\n"
                                "- label: [development, staging]\n"
                                "  version: \"2b\"\n"
                                "  template: \"[DEV] {{ doc.title }}: {{ tags | json }}\"\n";

static char *prompt_dir(void)
{
    char *dir = th_tempdir();
    free(th_write_file(dir, "summarize.yaml", summarize));
    return dir;
}

static void test_choose_and_render(void **state)
{
    (void)state;
    char *dir = prompt_dir();
    struct flow__prompt_file *pf = NULL;
    flow_error err = {0};
    assert_int_equal(flow__prompt_file_load(dir, "summarize", &pf, &err), FLOW_OK);
    assert_int_equal(pf->count, 2);
    const struct flow__prompt *p = flow__prompt_choose(pf, NULL, NULL, &err);
    assert_non_null(p);
    assert_string_equal(p->version, "1");
    assert_int_equal(p->nvars, 2);
    assert_string_equal(p->vars[0], "max_words");
    assert_string_equal(p->vars[1], "text");
    json_t *vars = json_pack("{s:i,s:s}", "max_words", 50, "text", "the text");
    char *text = flow__prompt_render(p, vars, &err);
    assert_non_null(text);
    assert_string_equal(text, "Summarize in 50 words: the text\n");
    flow__free(text);
    json_decref(vars);
    /* a label of a list, a version by text; paths and filters in the template */
    p = flow__prompt_choose(pf, "staging", NULL, &err);
    assert_non_null(p);
    assert_string_equal(p->version, "2b");
    assert_non_null(flow__prompt_choose(pf, NULL, "2b", &err));
    vars = json_pack("{s:{s:s},s:[s,s]}", "doc", "title", "T", "tags", "a", "b");
    text = flow__prompt_render(p, vars, &err);
    assert_string_equal(text, "[DEV] T: [\"a\",\"b\"]");
    flow__free(text);
    json_decref(vars);
    /* what is not there is named */
    assert_null(flow__prompt_choose(pf, "prod", NULL, &err));
    assert_non_null(strstr(err.message, "no version labelled 'prod'"));
    assert_non_null(strstr(err.message, "1 (production), 2b (development, staging)"));
    assert_null(flow__prompt_choose(pf, NULL, "3", &err));
    assert_non_null(strstr(err.message, "has no version 3"));
    assert_null(flow__prompt_choose(pf, "production", "2b", &err));
    assert_non_null(strstr(err.message, "is not labelled 'production'"));
    vars = json_pack("{s:s}", "text", "x");
    assert_null(flow__prompt_render(flow__prompt_choose(pf, NULL, "1", &err), vars, &err));
    assert_non_null(strstr(err.message, "uses variable 'max_words', which was not given"));
    json_decref(vars);
    flow__prompt_file_free(pf);
    assert_int_equal(flow__prompt_file_load(dir, "nope", &pf, &err), FLOW_ENOTFOUND);
    assert_non_null(strstr(err.message, "no prompt 'nope'"));
    assert_int_equal(flow__prompt_file_load(dir, "../etc/passwd", &pf, &err), FLOW_EINVAL);
    th_rmtree(dir);
    free(dir);
}

/* Each mistake in a file is an error at its line and column. */
static void test_bad_files(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *says;
        int line;
    } cases[] = {
        {"label: production\n", "must be a list of entries", 1},
        {"[]\n", "not an empty list", 1},
        {"- 7\n", "must be a mapping", 1},
        {"- label: production\n  template: x\n", "has no 'version'", 1},
        {"- label: production\n  version: 1\n", "has no 'template'", 1},
        {"- version: 1\n  template: [a]\n", "'template' of entry 1", 2},
        {"- version: 1\n  template: a\n  colour: red\n", "unknown key 'colour'", 3},
        {"- version: 1\n  template: \"{{ x\"\n", "unclosed '{{'", 2},
        {"- version: 1\n  label: [a, \"\"]\n  template: x\n", "'label' of entry 1", 2},
        {"- version: 1\n  template: x\n- version: 1\n  template: y\n", "written twice", 3},
        {"- {version: 1, label: a, template: x}\n- {version: 2, label: [b, a], template: y}\n",
         "label 'a' of prompt 'p' is on versions 1 and 2", 2},
        {"- version: 1\n  template: x\n  - oops\n", "(", 0},
    };
    char *dir = th_tempdir();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        free(th_write_file(dir, "p.yaml", cases[i].text));
        struct flow__prompt_file *pf = NULL;
        flow_error err = {0};
        assert_int_not_equal(flow__prompt_file_load(dir, "p", &pf, &err), FLOW_OK);
        assert_null(pf);
        if (!strstr(err.message, cases[i].says))
            fail_msg("case %zu: '%s' does not say '%s'", i, err.message, cases[i].says);
        assert_non_null(strstr(err.message, "p.yaml"));
        if (cases[i].line && err.line != cases[i].line)
            fail_msg("case %zu: line %d, not %d (%s)", i, err.line, cases[i].line, err.message);
    }
    th_rmtree(dir);
    free(dir);
}

static void test_public_listing(void **state)
{
    (void)state;
    char *dir = prompt_dir();
    free(th_write_file(dir, "broken.yaml", "- version: 1\n"));
    free(th_write_file(dir, "notes.txt", "not a prompt"));
    flow_error err = {0};
    json_t *all = flow_prompts_list(dir, &err);
    assert_non_null(all);
    assert_int_equal(json_array_size(all), 2);
    json_t *broken = json_array_get(all, 0), *good = json_array_get(all, 1);
    assert_string_equal(json_string_value(json_object_get(broken, "name")), "broken");
    assert_non_null(strstr(json_string_value(json_object_get(broken, "error")), "template"));
    json_t *versions = json_object_get(good, "versions");
    assert_int_equal(json_array_size(versions), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(versions, 0), "version")),
                     1);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(versions, 1), "version")), "2b");
    json_decref(all);

    flow_prompt_ref ref = {.dir = dir, .name = "summarize", .label = "development"};
    json_t *one = flow_prompt_get(&ref, &err);
    assert_non_null(one);
    assert_string_equal(json_string_value(json_object_get(one, "template")),
                        "[DEV] {{ doc.title }}: {{ tags | json }}");
    json_decref(one);
    json_t *used = NULL;
    json_t *vars = json_pack("{s:{s:s},s:[]}", "doc", "title", "T", "tags");
    char *text = flow_prompt_render(&ref, vars, &used, &err);
    assert_string_equal(text, "[DEV] T: []");
    assert_string_equal(json_string_value(json_object_get(used, "label")), "development");
    free(text);
    json_decref(used);
    json_decref(vars);
    json_t *none = flow_prompts_list("/nonexistent/prompts", &err);
    assert_null(none);
    assert_int_equal(err.code, FLOW_ENOTFOUND);
    th_rmtree(dir);
    free(dir);
}

/* A prompt task in a run with a store: output, the journaled version, a
 * variable only known at run time failing the attempt, naming it. */
static void test_prompt_task_journaled(void **state)
{
    (void)state;
    char *dir = prompt_dir();
    char url[600];
    snprintf(url, sizeof(url), "sqlite:%s/s.db", dir);
    flow_error err = {0};
    flow *f = flow_new("prompted", &err);
    flow_task *t = flow_add_task(f, "s", NULL);
    flow_prompt_ref ref = {.dir = dir, .name = "summarize"};
    json_t *vars = json_pack("{s:s,s:i}", "text", "{{ inputs.text }}", "max_words", 7);
    assert_int_equal(flow_task_set_prompt(t, &ref, vars, &err), FLOW_OK);
    json_decref(vars);
    /* vars only known when the run renders them */
    flow_task *late = flow_add_task(f, "late", NULL);
    json_t *whole = json_string("{{ inputs.vars }}");
    assert_int_equal(flow_task_set_prompt(late, &ref, whole, &err), FLOW_OK);
    json_decref(whole);
    flow_store *st = flow_store_open(url, &err);
    assert_non_null(st);
    flow_engine *e = flow_engine_new(NULL, &err);
    json_t *in = json_pack("{s:s,s:{s:s}}", "text", "hello", "vars", "text", "t");
    flow_run_options o = {.inputs = in, .store = st, .run_id = "r1"};
    flow_run *r = flow_run_start(e, f, &o, &err);
    assert_non_null(r);
    assert_int_equal(flow_run_wait(r), FLOW_RUN_FAILED);
    flow_activation_info info;
    json_t *out = NULL;
    for (size_t k = 0; k < flow_run_activation_count(r); k++)
        if (flow_run_activation(r, k, &info) == FLOW_OK && !strcmp(info.task, "s"))
            out = info.output;
    assert_non_null(out);
    assert_string_equal(json_string_value(json_object_get(out, "text")),
                        "Summarize in 7 words: hello\n");
    assert_int_equal(json_integer_value(json_object_get(out, "version")), 1);
    assert_string_equal(json_string_value(json_object_get(out, "label")), "production");
    flow_run_free(r);
    json_t *stored = flow_store_run(st, "r1", &err);
    assert_non_null(stored);
    size_t i;
    json_t *act;
    int seen = 0;
    json_array_foreach(json_object_get(stored, "tasks"), i, act)
    {
        const char *task = json_string_value(json_object_get(act, "task"));
        if (!strcmp(task, "s")) {
            json_t *used = json_object_get(json_object_get(act, "info"), "prompt");
            assert_string_equal(json_string_value(json_object_get(used, "name")), "summarize");
            assert_int_equal(json_integer_value(json_object_get(used, "version")), 1);
            seen++;
        } else {
            assert_string_equal(json_string_value(json_object_get(act, "status")), "failed");
            assert_non_null(strstr(json_string_value(json_object_get(act, "error")),
                                   "uses variable 'max_words', which was not given"));
            seen++;
        }
    }
    assert_int_equal(seen, 2);
    json_decref(stored);
    json_decref(in);
    flow_engine_free(e);
    flow_store_close(st);
    flow_free(f);
    th_rmtree(dir);
    free(dir);
}

/* flow_task_set_prompt refuses what it cannot use, naming it, and keeps the
 * task as it was. */
static void test_set_prompt_errors(void **state)
{
    (void)state;
    char *dir = prompt_dir();
    flow_error err = {0};
    flow *f = flow_new("p", &err);
    flow_task *t = flow_add_task(f, "s", NULL);
    flow_prompt_ref ref = {.dir = dir, .name = "summarize"};
    json_t *vars = json_pack("{s:s}", "text", "x");
    assert_int_equal(flow_task_set_prompt(t, &ref, vars, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "task 's'"));
    assert_non_null(strstr(err.message, "'max_words'"));
    assert_int_equal(flow_task_set_prompt(t, &ref, NULL, &err), FLOW_EINVAL);
    assert_non_null(strstr(err.message, "it has no vars"));
    ref.label = "nope";
    assert_int_equal(flow_task_set_prompt(t, &ref, vars, &err), FLOW_ENOTFOUND);
    json_t *list = json_array();
    ref.label = NULL;
    assert_int_equal(flow_task_set_prompt(t, &ref, list, &err), FLOW_EINVAL);
    json_decref(list);
    json_decref(vars);
    json_t *d = flow_describe(f);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(d, "tasks"), 0), "kind")),
                        "noop");
    json_decref(d);
    flow_free(f);
    th_rmtree(dir);
    free(dir);
}

/* In a workflow file: prompts/ beside the file, errors at the line that
 * asks, $FLOW_PROMPTS over the default. */
static void test_workflow_file(void **state)
{
    (void)state;
    char *dir = th_tempdir();
    char sub[600];
    snprintf(sub, sizeof(sub), "%s/prompts", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    free(th_write_file(sub, "summarize.yaml", summarize));
    char *good = th_write_file(dir, "good.yaml",
                               "name: g\n"
                               "tasks:\n"
                               "  s:\n"
                               "    prompt: {name: summarize, vars: {text: hi, max_words: 3}}\n");
    char *bad = th_write_file(dir, "bad.yaml",
                              "name: b\n"
                              "tasks:\n"
                              "  s:\n"
                              "    prompt:\n"
                              "      name: summarize\n"
                              "      label: staging\n"
                              "      vars: {doc: 1}\n");
    flow_error err = {0};
    unsetenv("FLOW_PROMPTS");
    flow *f = flow_load_file(good, NULL, &err);
    assert_non_null(f);
    json_t *d = flow_describe(f);
    json_t *task = json_array_get(json_object_get(d, "tasks"), 0);
    assert_string_equal(json_string_value(json_object_get(task, "kind")), "prompt");
    json_decref(d);
    flow_free(f);
    assert_null(flow_load_file(bad, NULL, &err));
    assert_int_equal(err.line, 7);
    assert_non_null(strstr(err.message, "uses variable 'tags'"));
    /* $FLOW_PROMPTS: a directory without it */
    setenv("FLOW_PROMPTS", dir, 1);
    assert_null(flow_load_file(good, NULL, &err));
    assert_non_null(strstr(err.message, "no prompt 'summarize'"));
    assert_int_equal(err.line, 4);
    unsetenv("FLOW_PROMPTS");
    free(good);
    free(bad);
    th_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_choose_and_render),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_public_listing),
        cmocka_unit_test(test_prompt_task_journaled),
        cmocka_unit_test(test_set_prompt_errors),
        cmocka_unit_test(test_workflow_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
