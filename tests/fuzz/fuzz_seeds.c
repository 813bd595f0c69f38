/* fuzz_seeds.c -- `fuzz_seeds OUT FILE...` writes the seed corpora that
 * `make fuzz` starts from (tests/fuzz/run.sh calls it with the workflow
 * files of examples/ and tests/cases/), so that the repository keeps only
 * hand-made seeds:
 *   OUT/load/      each file as it is, and as JSON when it parses
 *   OUT/template/  every string that holds '{{', and every `input`,
 *                  `result` and `foreach` value as JSON
 *   OUT/schema/    every `state_schema` as JSON, followed by the `state`
 *   OUT/store/     the journal of each run of store_flow.c's flow at each
 *                  of its stops (paused, waiting for a person, ended) */
#define _GNU_SOURCE 1
#include "fuzz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "def/yaml.h"
#include "store_flow.h"

static const char *out_root;

static void make_dir(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
}

/* Write a seed named by its contents (FNV-1a), so that runs do not pile up
 * copies. */
static void seed(const char *harness, const void *data, size_t len)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ ((const unsigned char *)data)[i]) * 1099511628211ULL;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", out_root, harness);
    make_dir(path);
    snprintf(path, sizeof(path), "%s/%s/seed-%016llx", out_root, harness, (unsigned long long)h);
    fuzz_write_file(path, data, len);
}

static void seed_json(const char *harness, const json_t *v, const json_t *after)
{
    char *a = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    char *b = after ? json_dumps(after, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    size_t la = a ? strlen(a) : 0;
    size_t lb = b ? strlen(b) : 0;
    char *both = malloc(la + lb + 2);
    if (a && both) {
        memcpy(both, a, la);
        both[la] = '\n';
        if (b)
            memcpy(both + la + 1, b, lb);
        seed(harness, both, la + (b ? lb + 1 : 0));
    }
    free(both);
    free(a);
    free(b);
}

static void walk(json_t *v, const char *key, json_t *parent)
{
    if (json_is_string(v) && strstr(json_string_value(v), "{{"))
        seed("template", json_string_value(v), json_string_length(v));
    if (key && (!strcmp(key, "input") || !strcmp(key, "result") || !strcmp(key, "foreach")))
        seed_json("template", v, NULL);
    if (key && !strcmp(key, "state_schema"))
        seed_json("schema", v, json_object_get(parent, "state"));
    const char *k;
    json_t *kid;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach(v, k, kid)
            walk(kid, k, v);
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, kid)
            walk(kid, NULL, v);
    }
}

static void seed_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    seed("load", buf, len);
    struct flow__yaml_doc *d = NULL;
    if (flow__yaml_parse(buf, len, path, &d, NULL) != FLOW_OK)
        return;
    seed_json("load", flow__yaml_root(d), NULL);
    walk(flow__yaml_root(d), NULL, NULL);
    flow__yaml_free(d);
}

static void copy_journal(const char *run_id, int stop, void *udata)
{
    const char *store_dir = udata;
    char path[4096];
    snprintf(path, sizeof(path), "%s/runs/%s/journal", store_dir, run_id);
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    static char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    seed("store", buf, len);
    (void)stop;
}

static void seed_store(void)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/store", fuzz_tempdir());
    char url[4200];
    snprintf(url, sizeof(url), "disk:%s", dir);
    flow_engine_options eo = {.jobs = 2};
    flow_engine *e = flow_engine_new(&eo, NULL);
    flow_store *s = flow_store_open(url, NULL);
    flow *f = fuzz_store_flow();
    if (!e || !s)
        abort();
    for (size_t i = 0; i < fuzz_store_scenario_count(); i++) {
        char id[32];
        snprintf(id, sizeof(id), "seed-%zu", i);
        fuzz_store_scenario(e, f, s, i, id, 4, copy_journal, dir);
    }
    flow_store_close(s);
    flow_free(f);
    flow_engine_free(e);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fuzz_seeds OUT [WORKFLOW-FILE...]\n");
        return 2;
    }
    out_root = argv[1];
    make_dir(out_root);
    for (int i = 2; i < argc; i++)
        seed_file(argv[i]);
    seed_store();
    return 0;
}
