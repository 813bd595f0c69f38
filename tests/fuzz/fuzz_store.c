/* fuzz_store.c -- the disk store's record reader and replay: the input is
 * the journal file of run `fuzz` in a disk store (its record framing as the
 * store writes it: u32 LE length, u32 LE crc32, the record). The harness
 * mends the checksums of the records the input frames, so that mutations
 * reach the records themselves rather than stopping at a bad CRC; lengths
 * are taken as they are (a torn tail is part of the format). Then the run
 * is listed, shown, its journal, checkpoints and open requests read
 * through the public store API, and it is resumed (flow_run_resume, forced:
 * the journal may name any task), retried (flow_run_retry, forced), resumed
 * from its first checkpoint too, and again after its open requests are
 * answered. meta.json is the one a real run
 * of store_flow.c's flow left. */
#define _GNU_SOURCE 1
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "store_flow.h"

#define RUN_ID "fuzz"
#define FORK_ID "fuzz-from-checkpoint"

static flow_engine *engine;
static flow *store_flow; /* for this input (see fuzz_control.c: not kept) */
static char url[300];
static char journal_path[300];
static char meta_path[300];
static char control_dir[300];
static char fork_dir[300];
static char *meta_text; /* meta.json as the real run left it */
static size_t meta_len;

static char *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        abort();
    char *p = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap && !(p = realloc(p, cap = cap * 2 + 4096)))
            abort();
        size_t n = fread(p + *len, 1, cap - *len, f);
        if (n == 0)
            break;
        *len += n;
    }
    fclose(f);
    return p;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = fuzz_tempdir();
    snprintf(url, sizeof(url), "disk:%s/store", dir);
    snprintf(journal_path, sizeof(journal_path), "%s/store/runs/%s/journal", dir, RUN_ID);
    snprintf(meta_path, sizeof(meta_path), "%s/store/runs/%s/meta.json", dir, RUN_ID);
    snprintf(control_dir, sizeof(control_dir), "%s/store/runs/%s/control", dir, RUN_ID);
    snprintf(fork_dir, sizeof(fork_dir), "%s/store/runs/%s", dir, FORK_ID);
    flow_engine_options eo = {.jobs = 2};
    engine = flow_engine_new(&eo, NULL);
    store_flow = fuzz_store_flow();
    flow_store *s = flow_store_open(url, NULL);
    if (!engine || !s)
        abort();
    fuzz_store_scenario(engine, store_flow, s, 0, RUN_ID, 1, NULL, NULL);
    flow_store_close(s);
    flow_free(store_flow);
    store_flow = NULL;
    meta_text = read_whole(meta_path, &meta_len);
    return 0;
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void mend_checksums(unsigned char *p, size_t size)
{
    size_t at = 0;
    while (size - at >= 8) {
        uint32_t len = get_le32(p + at);
        if (len > size - at - 8)
            break;
        put_le32(p + at + 4, (uint32_t)crc32(0L, p + at + 8, len));
        at += 8 + (size_t)len;
    }
}

/* Read what the store API shows of the run; the JSON is dumped so that
 * every value in it is touched. */
static void inspect(flow_store *s)
{
    json_t *all[5] = {flow_store_runs(s, NULL), flow_store_run(s, RUN_ID, NULL),
                      flow_store_journal(s, RUN_ID, NULL), flow_store_checkpoints(s, RUN_ID, NULL),
                      flow_store_feedback(s, RUN_ID, NULL)};
    for (int i = 0; i < 5; i++) {
        char *text = all[i] ? json_dumps(all[i], JSON_COMPACT) : NULL;
        free(text);
        json_decref(all[i]);
    }
}

static void resume(flow_store *s, const char *from_checkpoint)
{
    flow_run_options o = {.run_id = RUN_ID,
                          .store = s,
                          .force = true,
                          .from_checkpoint = from_checkpoint,
                          .new_run_id = from_checkpoint ? FORK_ID : NULL};
    flow_error err;
    flow_run *r = flow_run_resume(engine, store_flow, &o, &err);
    if (!r) {
        fuzz_check_message(err.message); /* a refused resume says why */
        return;
    }
    flow_run_wait(r);
    json_t *j = flow_run_to_json(r);
    json_decref(j);
    flow_run_free(r);
}

/* Run it again from where it failed (flow_run_retry), if it ended so. */
static void retry(flow_store *s)
{
    flow_run_options o = {.run_id = RUN_ID, .store = s, .force = true};
    flow_error err;
    flow_run *r = flow_run_retry(engine, store_flow, &o, NULL, &err);
    if (!r) {
        fuzz_check_message(err.message); /* a refused retry says why */
        return;
    }
    flow_run_wait(r);
    json_t *j = flow_run_to_json(r);
    json_decref(j);
    flow_run_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_rmtree(fork_dir);
    fuzz_rmtree(control_dir);
    unsigned char *journal = (unsigned char *)fuzz_copy(data, size, false);
    mend_checksums(journal, size);
    fuzz_write_file(journal_path, journal, size);
    free(journal);
    fuzz_write_file(meta_path, meta_text, meta_len);

    flow_store *s = flow_store_open(url, NULL);
    if (!s)
        abort();
    store_flow = fuzz_store_flow();
    inspect(s);
    resume(s, NULL);
    retry(s);
    json_t *cps = flow_store_checkpoints(s, RUN_ID, NULL);
    json_t *first = json_object_get(json_array_get(cps, 0), "id");
    char cp[32];
    if (json_is_integer(first)) {
        snprintf(cp, sizeof(cp), "%lld", (long long)json_integer_value(first));
        resume(s, cp);
    }
    json_decref(cps);
    if (fuzz_store_answer_all(s, RUN_ID) > 0) {
        inspect(s);
        resume(s, NULL);
    }
    flow_store_close(s);
    flow_free(store_flow);
    store_flow = NULL;
    return 0;
}
