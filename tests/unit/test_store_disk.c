/* test_store_disk.c -- what only the disk store does (src/store/store_disk.c):
 * its files, torn journal tails cut off, FORMAT checks, safe run ids. */
#include "util/compat.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "helpers.h"

#include "store/store.h"
#include "util/alloc.h"

struct fixture {
    char *dir;     /* temp dir */
    char *path;    /* the store: dir/d */
    char *url;     /* disk:dir/d */
    char *journal; /* dir/d/runs/r/journal */
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    fx->dir = th_tempdir();
    fx->path = flow__asprintf("%s/d", fx->dir);
    fx->url = flow__asprintf("disk:%s", fx->path);
    fx->journal = flow__asprintf("%s/runs/r/journal", fx->path);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    th_rmtree(fx->dir);
    free(fx->dir);
    flow__free(fx->path);
    flow__free(fx->url);
    flow__free(fx->journal);
    free(fx);
    return 0;
}

static void make_run(struct flow__store *s, const char *id)
{
    struct flow__run_meta m = {.status = FLOW_RUN_RUNNING, .created_at = 5.0};
    snprintf(m.id, sizeof(m.id), "%s", id);
    flow_error err = {0};
    if (flow__store_run_create(s, &m, &err) != FLOW_OK)
        fail_msg("run_create: %s", err.message);
}

/* Record i: act i, payload {"i": i}. */
static void append_n(struct flow__store *s, uint32_t first, uint32_t n)
{
    struct flow__jrec recs[16];
    assert_true(n <= 16);
    for (uint32_t k = 0; k < n; k++)
        recs[k] = (struct flow__jrec){.type = 4,
                                      .act = first + k,
                                      .task = 2,
                                      .attempt = 1,
                                      .time = 1700000000.5,
                                      .payload = json_pack("{s:i}", "i", (int)(first + k))};
    flow_error err = {0};
    flow_err rc = flow__store_append(s, "r", recs, n, 0, &err);
    for (uint32_t k = 0; k < n; k++)
        json_decref(recs[k].payload);
    if (rc != FLOW_OK)
        fail_msg("append: %s", err.message);
}

static flow_err check_cb(void *udata, uint64_t seq, const struct flow__jrec *rec)
{
    uint64_t *count = udata;
    assert_int_equal(seq, *count);
    assert_int_equal(rec->act, (uint32_t)seq);
    assert_int_equal(json_integer_value(json_object_get(rec->payload, "i")), (json_int_t)seq);
    assert_int_equal(rec->type, 4);
    assert_int_equal(rec->attempt, 1);
    (*count)++;
    return FLOW_OK;
}

/* Records 0..n-1, in order, and nothing else. */
static void assert_records(struct flow__store *s, uint64_t n)
{
    uint64_t count = 0;
    flow_error err = {0};
    if (flow__store_read(s, "r", 0, check_cb, &count, &err) != FLOW_OK)
        fail_msg("read: %s", err.message);
    assert_int_equal(count, n);
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* Walk the frames of a journal file: how many, and whether they end exactly
 * at the end of the file. */
static int frames(const char *path, bool *exact)
{
    char *data = th_read_file(path);
    assert_non_null(data);
    size_t len = (size_t)file_size(path), pos = 0;
    int n = 0;
    while (pos + 8 <= len) {
        const unsigned char *u = (const unsigned char *)data + pos;
        uint32_t rlen = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
                        (uint32_t)u[3] << 24;
        uint32_t crc = (uint32_t)u[4] | (uint32_t)u[5] << 8 | (uint32_t)u[6] << 16 |
                       (uint32_t)u[7] << 24;
        if (pos + 8 + rlen > len ||
            crc32(0L, (const Bytef *)data + pos + 8, (uInt)rlen) != crc)
            break;
        pos += 8 + rlen;
        n++;
    }
    *exact = pos == len;
    free(data);
    return n;
}

static void corrupt(const char *path, off_t at, unsigned char xor_with)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, at), 1);
    c ^= xor_with;
    assert_int_equal(pwrite(fd, &c, 1, at), 1);
    close(fd);
}

static void append_bytes(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* In a new handle: records 0..have-1 are there, `more` appended after them
 * follow in order. */
static void reopen_append(struct fixture *fx, uint32_t have, uint32_t more)
{
    struct flow__store *s = th_store_open(fx->url);
    assert_records(s, have);
    append_n(s, have, more);
    assert_records(s, have + more);
    flow__store_close(s);
}

/* Six records written, then the tail damaged by `damage`: the journal reads
 * as the five before it, and the next append goes on cleanly after them. */
static void torn_case(struct fixture *fx, void (*damage)(struct fixture *fx))
{
    struct flow__store *s = th_store_open(fx->url);
    make_run(s, "r");
    append_n(s, 0, 5);
    append_n(s, 5, 1);
    flow__store_close(s);
    damage(fx);

    reopen_append(fx, 5, 3);
    bool exact;
    assert_int_equal(frames(fx->journal, &exact), 8);
    assert_true(exact);
    reopen_append(fx, 8, 1);
}

static void cut_3(struct fixture *fx)
{
    assert_int_equal(truncate(fx->journal, file_size(fx->journal) - 3), 0);
}

static void flip_last_byte(struct fixture *fx)
{
    corrupt(fx->journal, file_size(fx->journal) - 2, 0x20);
}

static void short_header(struct fixture *fx)
{
    cut_3(fx); /* record 5 torn ... */
    append_bytes(fx->journal, "\x05\x00\x00", 3); /* ... and junk after it */
}

/* The offset just after the first `k` frames of the journal. */
static off_t frame_end(const char *path, int k)
{
    char *data = th_read_file(path);
    assert_non_null(data);
    size_t pos = 0;
    for (int i = 0; i < k; i++) {
        const unsigned char *u = (const unsigned char *)data + pos;
        pos += 8 + ((uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
                    (uint32_t)u[3] << 24);
    }
    free(data);
    return (off_t)pos;
}

static void length_past_end(struct fixture *fx)
{
    /* record 5's length claims far more than the file has */
    off_t at = frame_end(fx->journal, 5);
    assert_true(at < file_size(fx->journal));
    corrupt(fx->journal, at + 3, 0x20); /* the high byte of the length */
}

static void good_crc_bad_json(struct fixture *fx)
{
    /* record 5 replaced by a frame whose CRC is right but whose bytes are
     * not a record */
    assert_int_equal(truncate(fx->journal, frame_end(fx->journal, 5)), 0);
    /* the 24 bytes of fields of an act_completed record, then not JSON */
    const char body[] = "\x04\x01\0\0" "\0\0\0\0" "\x05\0\0\0" "\0\0\0\0"
                        "\0\0\0\0\0\0\xf0\x3f" "{\"output\": not json";
    uint32_t len = sizeof(body) - 1;
    uint32_t crc = (uint32_t)crc32(0L, (const Bytef *)body, len);
    unsigned char frame[8] = {(unsigned char)len,         (unsigned char)(len >> 8),
                              (unsigned char)(len >> 16), (unsigned char)(len >> 24),
                              (unsigned char)crc,         (unsigned char)(crc >> 8),
                              (unsigned char)(crc >> 16), (unsigned char)(crc >> 24)};
    append_bytes(fx->journal, frame, sizeof(frame));
    append_bytes(fx->journal, body, len);
}

static void test_torn_cut(void **state)
{
    torn_case(*state, cut_3);
}

static void test_torn_flipped(void **state)
{
    torn_case(*state, flip_last_byte);
}

static void test_torn_short_header(void **state)
{
    torn_case(*state, short_header);
}

static void test_torn_length(void **state)
{
    torn_case(*state, length_past_end);
}

static void test_torn_bad_json(void **state)
{
    torn_case(*state, good_crc_bad_json);
}

/* A torn tail is cut by the first append of a handle that already has the
 * journal open (written by another handle meanwhile). */
static void test_torn_while_open(void **state)
{
    struct fixture *fx = *state;
    struct flow__store *s = th_store_open(fx->url);
    make_run(s, "r");
    append_n(s, 0, 4);
    append_bytes(fx->journal, "\x20\x00\x00\x00garbage", 11);
    assert_records(s, 4);
    append_n(s, 4, 2);
    assert_records(s, 6);
    bool exact;
    assert_int_equal(frames(fx->journal, &exact), 6);
    assert_true(exact);
    flow__store_close(s);
}

/* The files of a run, as docs/internals/store.md describes them. */
static void test_layout(void **state)
{
    struct fixture *fx = *state;
    struct flow__store *s = th_store_open(fx->url);
    make_run(s, "r");
    append_n(s, 0, 1);
    flow_error err = {0};
    assert_int_equal(flow__store_lease_acquire(s, "r", "42@somehost", 0, 15, &err), FLOW_OK);
    assert_int_equal(flow__store_control_put(s, "r", "cancel", "because", &err), FLOW_OK);

    char *p = flow__asprintf("%s/FORMAT", fx->path);
    char *text = th_read_file(p);
    assert_string_equal(text, "libflow-store 1\n");
    free(text);
    flow__free(p);

    p = flow__asprintf("%s/runs/r/lease", fx->path);
    text = th_read_file(p);
    assert_string_equal(text, "42@somehost");
    free(text);
    flow__free(p);

    p = flow__asprintf("%s/runs/r/control/00000000000000000001", fx->path);
    text = th_read_file(p);
    assert_non_null(text);
    json_t *req = json_loads(text, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(req, "kind")), "cancel");
    assert_string_equal(json_string_value(json_object_get(req, "arg")), "because");
    json_decref(req);
    free(text);
    flow__free(p);

    p = flow__asprintf("%s/runs/r/meta.json", fx->path);
    text = th_read_file(p);
    json_t *meta = json_loads(text, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(meta, "id")), "r");
    assert_int_equal(json_integer_value(json_object_get(meta, "status")), FLOW_RUN_RUNNING);
    json_decref(meta);
    free(text);
    flow__free(p);

    /* The record: length, crc32, 24 bytes of fields, the payload's JSON. */
    static const char payload[] = "{\"i\":0}";
    const size_t body = 24 + sizeof(payload) - 1;
    assert_int_equal(file_size(fx->journal), 8 + (off_t)body);
    FILE *jf = fopen(fx->journal, "rb");
    unsigned char rec[64];
    assert_int_equal(fread(rec, 1, 8 + body, jf), 8 + body);
    fclose(jf);
    assert_int_equal(rec[0] | rec[1] << 8 | rec[2] << 16 | (uint32_t)rec[3] << 24, body);
    assert_int_equal(rec[4] | rec[5] << 8 | rec[6] << 16 | (uint32_t)rec[7] << 24,
                     (uint32_t)crc32(0L, rec + 8, (uInt)body));
    const unsigned char *f = rec + 8;
    assert_int_equal(f[0], 4);                                   /* type */
    assert_int_equal(f[1], 1);                                   /* attempt */
    assert_int_equal(f[4] | f[5] << 8, 2);                        /* task */
    double when;
    uint64_t bits = 0;
    for (int i = 7; i >= 0; i--)
        bits = bits << 8 | f[16 + i];
    memcpy(&when, &bits, sizeof(when));
    assert_true(when == 1700000000.5);
    assert_memory_equal(f + 24, payload, sizeof(payload) - 1);

    /* leftovers of a crashed create or delete are not runs */
    p = flow__asprintf("%s/runs/.new-x-1-1", fx->path);
    assert_int_equal(mkdir(p, 0700), 0);
    flow__free(p);
    p = flow__asprintf("%s/runs/stray", fx->path); /* a directory without meta.json */
    assert_int_equal(mkdir(p, 0700), 0);
    flow__free(p);
    struct flow__run_meta m;
    assert_int_equal(flow__store_run_get(s, "stray", &m, &err), FLOW_ENOTFOUND);
    flow__store_close(s);
}

/* Records whose CRC is right but whose fields are damaged (a fuzzer's
 * find, issue #9): an activation number far past the records and a time no
 * calendar shows. Reading the run folds at most one entry per record, and
 * the time reads as unknown. */
static void test_damaged_fields(void **state)
{
    struct fixture *fx = *state;
    struct flow__store *s = th_store_open(fx->url);
    make_run(s, "r");
    append_n(s, 1, 1);
    struct flow__jrec bad = {.type = 3, .act = 975332724, .task = 1962934272, .attempt = 1,
                             .time = 9.466946057571313e+218};
    flow_error err = {0};
    assert_int_equal(flow__store_append(s, "r", &bad, 1, 0, &err), FLOW_OK);
    flow__store_close(s);

    flow_store *pub = flow_store_open(fx->url, &err);
    assert_non_null(pub);
    json_t *run = flow_store_run(pub, "r", &err);
    assert_non_null(run);
    assert_int_equal(json_array_size(json_object_get(run, "tasks")), 1);
    json_decref(run);
    json_t *journal = flow_store_journal(pub, "r", &err);
    assert_int_equal(json_array_size(journal), 2);
    assert_true(json_is_null(json_object_get(json_array_get(journal, 1), "time")));
    json_decref(journal);
    flow_store_close(pub);
}

static void test_format(void **state)
{
    struct fixture *fx = *state;
    flow_error err = {0};
    struct flow__store *s = NULL;

    /* a directory of other things is not a store */
    assert_int_equal(mkdir(fx->path, 0700), 0);
    char *f = th_write_file(fx->path, "notes.txt", "mine\n");
    assert_int_equal(flow__store_open(fx->url, &s, &err), FLOW_EINVAL);
    assert_null(s);
    char *want = flow__asprintf("store '%s' is not a libflow store", fx->path);
    if (!strstr(err.message, want))
        fail_msg("message: %s", err.message);
    unlink(f);
    free(f);

    /* an empty one becomes one */
    s = th_store_open(fx->url);
    make_run(s, "r");
    flow__store_close(s);

    f = th_write_file(fx->path, "FORMAT", "something else\n");
    assert_int_equal(flow__store_open(fx->url, &s, &err), FLOW_EINVAL);
    if (!strstr(err.message, want) || !strstr(err.message, "FORMAT"))
        fail_msg("message: %s", err.message);
    free(f);
    flow__free(want);

    f = th_write_file(fx->path, "FORMAT", "libflow-store 12\n");
    assert_int_equal(flow__store_open(fx->url, &s, &err), FLOW_EUNSUPPORTED);
    want = flow__asprintf("store '%s' has format 12; this libflow understands up to 1: upgrade "
                          "libflow",
                          fx->path);
    assert_string_equal(err.message, want);
    flow__free(want);
    free(f);

    f = th_write_file(fx->path, "FORMAT", "libflow-store 1\n");
    free(f);
    s = th_store_open(fx->url);
    struct flow__run_meta m;
    assert_int_equal(flow__store_run_get(s, "r", &m, &err), FLOW_OK);
    flow__run_meta_cleanup(&m);
    flow__store_close(s);
}

/* A damaged meta.json is an error naming the run, not a crash. */
static void test_bad_meta(void **state)
{
    struct fixture *fx = *state;
    struct flow__store *s = th_store_open(fx->url);
    make_run(s, "r");
    char *dir = flow__asprintf("%s/runs/r", fx->path);
    char *f = th_write_file(dir, "meta.json", "{\"id\": ");
    free(f);
    flow__free(dir);
    struct flow__run_meta m;
    flow_error err = {0};
    assert_int_equal(flow__store_run_get(s, "r", &m, &err), FLOW_EPARSE);
    if (!strstr(err.message, "run 'r'") || !strstr(err.message, "meta.json"))
        fail_msg("message: %s", err.message);
    flow__store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_torn_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_flipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_short_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_bad_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_while_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_meta, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
