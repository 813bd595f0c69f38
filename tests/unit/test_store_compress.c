/* test_store_compress.c -- large payloads kept deflated (src/store/compress.c)
 * on every backend: sqlite:, disk: and redis:// with real files and a real
 * redis-server of the suite's own, and memory:. A run with 1 MiB outputs, a
 * large state and large inputs reads back exactly (text and key order), and
 * the bytes each backend keeps are measured where it keeps them -- the
 * SQLite file, the run's files, Redis' MEMORY USAGE, the live bytes of the
 * host allocator -- with compression on (small) and off (the format of
 * earlier versions, which must still read). Random data round-trips;
 * deflated bytes damaged in each store give an error naming the run and
 * the record; the codec refuses what is not its format. */
#include "util/compat.h"

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <zlib.h>

#include "helpers.h"
#include "store_cases.h"

#include "store/compress.h"
#include "store/record.h"
#include "store/store.h"
#include "util/alloc.h"

#define MiB (1u << 20)
#define RUN "big"

/* Under valgrind (the memcheck tests) every size is a quarter: memory
 * errors show as well, at a quarter of the time. */
static unsigned shrink = 1;

/* ---- the host allocator, counting live bytes (the memory store's size) -- */

static atomic_long live_bytes;

static void *count_malloc(size_t size)
{
    void *p = malloc(size);
    if (p)
        atomic_fetch_add(&live_bytes, (long)malloc_usable_size(p));
    return p;
}

static void *count_realloc(void *ptr, size_t size)
{
    long before = ptr ? (long)malloc_usable_size(ptr) : 0;
    void *p = realloc(ptr, size);
    if (p)
        atomic_fetch_add(&live_bytes, (long)malloc_usable_size(p) - before);
    return p;
}

static void count_free(void *ptr)
{
    if (ptr)
        atomic_fetch_sub(&live_bytes, (long)malloc_usable_size(ptr));
    free(ptr);
}

/* ---- the cases' fixture ---------------------------------------------------- */

/* Every case starts and ends at the default threshold. */
static int setup(void **state)
{
    th_store_setup(state);
    flow__z_set_threshold(FLOW__Z_THRESHOLD);
    return 0;
}

static int teardown(void **state)
{
    th_store_teardown(state);
    flow__z_set_threshold(FLOW__Z_THRESHOLD);
    return 0;
}

/* ---- values ---------------------------------------------------------------- */

/* A string of `len` bytes repeating a line of text (compresses ~1000:1). */
static json_t *repeated(size_t len)
{
    static const char line[] = "2024-05-01T12:00:00Z INFO worker 7: processed batch, all good. ";
    char *s = malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        s[i] = line[i % (sizeof(line) - 1)];
    s[len] = '\0';
    json_t *v = json_stringn(s, len);
    free(s);
    return v;
}

/* A string of `len` base64 characters of random bytes (compresses to ~75%). */
static json_t *random_b64(size_t len)
{
    size_t raw = len / 4 * 3;
    char *bytes = malloc(raw);
    for (size_t at = 0; at < raw;) {
        ssize_t n = getrandom(bytes + at, raw - at, 0);
        assert_true(n > 0);
        at += (size_t)n;
    }
    char *text = flow__b64_encode(bytes, raw);
    json_t *v = json_string(text);
    flow__free(text);
    free(bytes);
    return v;
}

/* A task's 1 MiB output: a log and rows, in a fixed key order. */
static json_t *big_output(void)
{
    json_t *rows = json_array();
    int n = (int)(2000 / shrink);
    for (int i = 0; i < n; i++)
        json_array_append_new(rows, json_pack("{s:i, s:s, s:b}", "id", i % 10, "name", "row",
                                              "ok", 1));
    return json_pack("{s:o, s:o, s:i}", "log", repeated(MiB / shrink), "rows", rows, "n", n);
}

/* A large state: 3000 keys, each a longer value. */
static json_t *big_state(void)
{
    json_t *st = json_object();
    for (int i = 0; i < (int)(3000 / shrink); i++) {
        char key[32];
        snprintf(key, sizeof(key), "item-%04d", i);
        json_object_set_new(st, key, json_pack("{s:s, s:i}", "status", "done and verified",
                                               "tries", i % 3));
    }
    return st;
}

/* The journal of run RUN: created (with the inputs), a small record, the
 * completion with the output and the state writes, a small one, the end
 * with the output as the result. */
struct journal {
    json_t *inputs;
    struct flow__jrec recs[5];
};

static void journal_make(struct journal *j, json_t *output, json_t *writes)
{
    j->inputs = json_pack("{s:o, s:i}", "document", repeated(256 * 1024 / shrink), "pages", 12);
    json_t *created = json_pack("{s:s, s:O, s:[s]}", "flow", "demo", "inputs", j->inputs, "tasks",
                                "fetch");
    json_t *completed = json_pack("{s:O, s:O}", "output", output, "writes", writes);
    json_t *ended = json_pack("{s:s, s:O}", "status", "succeeded", "result", output);
    struct flow__jrec recs[] = {
        {.type = JREC_RUN_CREATED, .time = 1000.0, .payload = created},
        {.type = JREC_ACT_STARTED, .act = 1, .attempt = 1, .time = 1000.5},
        {.type = JREC_ACT_COMPLETED, .act = 1, .attempt = 1, .time = 1001.0, .payload = completed},
        {.type = JREC_LOG, .act = 1, .attempt = 1, .time = 1001.0,
         .payload = json_pack("{s:s, s:i}", "stderr", "ok", "exit_status", 0)},
        {.type = JREC_RUN_ENDED, .time = 1002.0, .payload = ended},
    };
    memcpy(j->recs, recs, sizeof(recs));
}

static void journal_free(struct journal *j)
{
    json_decref(j->inputs);
    for (size_t i = 0; i < FLOW__ARRAY_LEN(j->recs); i++)
        json_decref(j->recs[i].payload);
}

static void journal_write(struct th_store_case *fx, const char *id, const struct journal *j)
{
    struct flow__run_meta m = {0};
    snprintf(m.id, sizeof(m.id), "%s", id);
    m.flow = (char *)"demo";
    m.inputs = j->inputs;
    m.status = FLOW_RUN_RUNNING;
    m.created_at = 1000.0;
    flow_error err = {0};
    if (flow__store_run_create(fx->s, &m, &err) != FLOW_OK)
        fail_msg("run_create: %s", err.message);
    /* Two batches, as the committer writes them. */
    if (flow__store_append(fx->s, id, j->recs, 2, 0, &err) != FLOW_OK ||
        flow__store_append(fx->s, id, j->recs + 2, 3, 0, &err) != FLOW_OK)
        fail_msg("append: %s", err.message);
}

/* Equal and written the same, key order included. */
static void assert_same_text(const json_t *want, const json_t *got)
{
    if (!want || !got) {
        assert_true(!want && !got);
        return;
    }
    char *a = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
    char *b = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(strlen(a), strlen(b));
    assert_true(strcmp(a, b) == 0);
    free(a);
    free(b);
}

struct check {
    const struct journal *j;
    uint64_t n;
};

static flow_err check_rec(void *udata, uint64_t seq, const struct flow__jrec *rec)
{
    struct check *c = udata;
    assert_int_equal(seq, c->n);
    assert_true(seq < FLOW__ARRAY_LEN(c->j->recs));
    const struct flow__jrec *want = &c->j->recs[seq];
    assert_int_equal(rec->type, want->type);
    assert_int_equal(rec->act, want->act);
    assert_true(rec->time == want->time);
    assert_same_text(want->payload, rec->payload);
    c->n++;
    return FLOW_OK;
}

/* Run `id` reads back as `j` wrote it: metadata, inputs, every record;
 * with `middle`, read from its middle too (a journal follower's read). */
static void journal_check(struct th_store_case *fx, const char *id, const struct journal *j,
                          bool middle)
{
    flow_error err = {0};
    struct flow__run_meta m = {0};
    if (flow__store_run_get(fx->s, id, &m, &err) != FLOW_OK)
        fail_msg("run_get: %s", err.message);
    assert_string_equal(m.flow, "demo");
    assert_same_text(j->inputs, m.inputs);
    flow__run_meta_cleanup(&m);
    struct check c = {.j = j};
    if (flow__store_read(fx->s, id, 0, check_rec, &c, &err) != FLOW_OK)
        fail_msg("read: %s", err.message);
    assert_int_equal(c.n, FLOW__ARRAY_LEN(j->recs));
    if (!middle)
        return;
    c.n = 2;
    if (flow__store_read(fx->s, id, 2, check_rec, &c, &err) != FLOW_OK)
        fail_msg("read from 2: %s", err.message);
    assert_int_equal(c.n, FLOW__ARRAY_LEN(j->recs));
}

/* ---- what each backend keeps ------------------------------------------------------- */

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

/* Bytes of the files of run `id` in a disk store (its directory, flat). */
static long long disk_run_bytes(const struct th_store_case *fx, const char *id)
{
    char *dir = flow__asprintf("%s/runs/%s", fx->path, id);
    DIR *d = opendir(dir);
    assert_non_null(d);
    long long total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *p = flow__asprintf("%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISREG(st.st_mode))
            total += st.st_size;
        flow__free(p);
    }
    closedir(d);
    flow__free(dir);
    return total;
}

/* MEMORY USAGE of key P:KIND:ID, every element counted. */
static long long redis_usage(const char *prefix, const char *kind, const char *id)
{
    char *r = th_redis_do(&th_store_redis, "MEMORY USAGE %s:%s:%s SAMPLES 0", prefix, kind, id);
    assert_non_null(r);
    long long v = strtoll(r, NULL, 10);
    free(r);
    return v;
}

/* What the backend keeps of run `id` (durable stores closed first, so a
 * SQLite WAL is checkpointed into the file). Memory: no measure here. */
static long long stored_bytes(struct th_store_case *fx, const char *id)
{
    if (!strcmp(fx->b->name, "sqlite")) {
        flow__store_close(fx->s);
        fx->s = NULL;
        char *wal = flow__asprintf("%s-wal", fx->path);
        long long n = file_size(fx->path) + file_size(wal);
        flow__free(wal);
        fx->s = th_store_open(fx->url);
        return n;
    }
    if (!strcmp(fx->b->name, "disk"))
        return disk_run_bytes(fx, id);
    if (fx->b->redis)
        return redis_usage(fx->prefix, "journal", id) + redis_usage(fx->prefix, "run", id);
    return -1;
}

/* A run with a 1 MiB output (twice: the completion and the result), a
 * large state and 256 KiB of inputs -- 2.6 MB of JSON -- reads back
 * exactly and costs the store tens of KiB; with compression off (how
 * earlier versions wrote) it costs megabytes, and still reads once it is
 * back on. */
static void test_large_round_trip(void **state)
{
    struct th_store_case *fx = *state;
    json_t *output = big_output(), *writes = json_pack("{s:o}", "seen", big_state());
    struct journal j;
    journal_make(&j, output, writes);

    long before = atomic_load(&live_bytes);
    journal_write(fx, RUN, &j);
    long mem_on = atomic_load(&live_bytes) - before;
    flow__z_set_threshold(0);
    before = atomic_load(&live_bytes);
    journal_write(fx, "plain", &j);
    long mem_off = atomic_load(&live_bytes) - before;
    flow__z_set_threshold(FLOW__Z_THRESHOLD);

    th_store_reopen(fx);
    journal_check(fx, RUN, &j, true);
    journal_check(fx, "plain", &j, false);

    long long on, off;
    if (!strcmp(fx->b->name, "memory")) {
        on = mem_on;
        off = mem_off;
    } else if (!strcmp(fx->b->name, "sqlite")) {
        /* One file for both runs: measure "plain" by deleting it. */
        long long both = stored_bytes(fx, RUN);
        sqlite3 *db;
        assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_prepare_v2(db,
                                            "SELECT sum(length(CAST(payload AS BLOB))) "
                                            "FROM records WHERE run = ?",
                                            -1, &st, NULL),
                         SQLITE_OK);
        sqlite3_bind_text(st, 1, RUN, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        long long payload_on = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, "plain", -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        long long payload_off = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        print_message("sqlite: payload bytes %lld compressed, %lld plain\n", payload_on,
                      payload_off);
        assert_true(payload_on < 64 * 1024);
        assert_true(payload_off > 2 * MiB / shrink);
        assert_int_equal(flow__store_run_delete(fx->s, "plain", NULL), FLOW_OK);
        sqlite3 *v;
        assert_int_equal(sqlite3_open(fx->path, &v), SQLITE_OK);
        assert_int_equal(sqlite3_exec(v, "VACUUM", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(v);
        on = stored_bytes(fx, RUN);
        off = both - on;
    } else {
        on = stored_bytes(fx, RUN);
        off = stored_bytes(fx, "plain");
    }
    print_message("%s: %lld bytes kept compressed, %lld plain\n", fx->b->name, on, off);
    assert_true(on > 0 && on < 96 * 1024);
    assert_true(off > 2 * MiB / shrink);

    /* Compression off now: what was written deflated still reads. */
    flow__z_set_threshold(0);
    th_store_reopen(fx);
    journal_check(fx, RUN, &j, false);
    journal_free(&j);
    json_decref(output);
    json_decref(writes);
}

/* Random data (base64 of random bytes, 256 KiB: deflated to 3/4, which is
 * still worth it) and payloads around the threshold round-trip; so do
 * small ones between them. */
static void test_random_and_edges(void **state)
{
    struct th_store_case *fx = *state;
    json_t *output = json_pack("{s:o}", "blob", random_b64(MiB / 4 / shrink));
    json_t *writes = json_pack("{s:o, s:o, s:o}", "a", random_b64(FLOW__Z_THRESHOLD - 12),
                               "b", repeated(FLOW__Z_THRESHOLD - 8), "c", repeated(3));
    struct journal j;
    journal_make(&j, output, writes);
    journal_write(fx, RUN, &j);
    th_store_reopen(fx);
    journal_check(fx, RUN, &j, true);
    if (th_store_durable(fx)) {
        long long n = stored_bytes(fx, RUN);
        print_message("%s: random 256 KiB output kept in %lld bytes\n", fx->b->name, n);
        assert_true(n > 3 * MiB / 8 / shrink); /* the output twice, at ~3/4 */
        assert_true(n < 3 * MiB / 4 / shrink + 64 * 1024);
    }
    journal_free(&j);
    json_decref(output);
    json_decref(writes);
}

/* ---- damage --------------------------------------------------------------------- */

static void flip_middle(char *bytes, size_t len)
{
    assert_true(len > 64);
    bytes[FLOW__Z_HEADER + (len - FLOW__Z_HEADER) / 2] ^= 0x55;
}

static void sqlite_damage(struct th_store_case *fx, const char *sql_get, const char *sql_put)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql_get, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_type(st, 0), SQLITE_BLOB);
    size_t len = (size_t)sqlite3_column_bytes(st, 0);
    char *bytes = malloc(len);
    memcpy(bytes, sqlite3_column_blob(st, 0), len);
    sqlite3_finalize(st);
    assert_true(flow__z_is(bytes, len));
    flip_middle(bytes, len);
    assert_int_equal(sqlite3_prepare_v2(db, sql_put, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_blob(st, 1, bytes, (int)len, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(bytes);
}

/* Record `seq` of the disk journal damaged past its CRC (mended after), as
 * a bug or a bad disk controller would leave it. */
static void disk_damage_record(struct th_store_case *fx, uint64_t seq)
{
    char *path = flow__asprintf("%s/runs/%s/journal", fx->path, RUN);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char *all = malloc((size_t)st.st_size);
    assert_int_equal(pread(fd, all, (size_t)st.st_size, 0), st.st_size);
    size_t at = 0;
    for (uint64_t i = 0; i < seq; i++)
        at += 8 + flow__get_le32(all + at);
    uint32_t len = flow__get_le32(all + at);
    char *rec = all + at + 8;
    assert_true(flow__z_is(rec + FLOW__JREC_FIXED, len - FLOW__JREC_FIXED));
    flip_middle(rec + FLOW__JREC_FIXED, len - FLOW__JREC_FIXED);
    flow__put_le32(all + at + 4, (uint32_t)crc32(0L, (const Bytef *)rec, len));
    assert_int_equal(pwrite(fd, all, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    free(all);
    flow__free(path);
}

/* One base64 character of meta.json's "inputs_z" changed. */
static void disk_damage_inputs(struct th_store_case *fx)
{
    char *path = flow__asprintf("%s/runs/%s/meta.json", fx->path, RUN);
    json_t *o = json_load_file(path, 0, NULL);
    assert_non_null(o);
    const char *z = json_string_value(json_object_get(o, "inputs_z"));
    assert_non_null(z);
    assert_true(json_is_null(json_object_get(o, "inputs")));
    char *bad = strdup(z);
    size_t mid = strlen(bad) / 2;
    bad[mid] = bad[mid] == 'A' ? 'B' : 'A';
    json_object_set_new(o, "inputs_z", json_string(bad));
    assert_int_equal(json_dump_file(o, path, JSON_INDENT(2)), 0);
    json_decref(o);
    free(bad);
    flow__free(path);
}

/* The value at `key` (its payload after `skip` bytes) damaged. */
static void redis_damage(const char *get_fmt, const char *put_fmt, const char *key, size_t skip)
{
    redisContext *c = redisConnect("127.0.0.1", th_store_redis.port);
    assert_true(c && !c->err);
    redisReply *r = redisCommand(c, get_fmt, key);
    assert_true(r && r->type == REDIS_REPLY_STRING);
    size_t len = r->len;
    char *bytes = malloc(len);
    memcpy(bytes, r->str, len);
    freeReplyObject(r);
    assert_true(len > skip && flow__z_is(bytes + skip, len - skip));
    flip_middle(bytes + skip, len - skip);
    r = redisCommand(c, put_fmt, key, bytes, len);
    assert_true(r && r->type != REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(c);
    free(bytes);
}

static flow_err count_rec(void *udata, uint64_t seq, const struct flow__jrec *rec)
{
    (void)seq;
    (void)rec;
    (*(int *)udata)++;
    return FLOW_OK;
}

static void assert_has(const char *msg, const char *want)
{
    if (!strstr(msg, want))
        fail_msg("message '%s' lacks '%s'", msg, want);
}

/* Deflated bytes damaged where each store keeps them: reading the journal
 * is an error naming the run and the record (never a crash, never a
 * journal silently cut short), and so is reading the run's inputs. */
static void test_damaged(void **state)
{
    struct th_store_case *fx = *state;
    if (!th_store_durable(fx))
        skip(); /* the memory store's bytes are out of reach */
    json_t *output = big_output(), *writes = json_object();
    struct journal j;
    journal_make(&j, output, writes);
    journal_write(fx, RUN, &j);
    flow__store_close(fx->s);
    fx->s = NULL;
    char key[200];
    if (!strcmp(fx->b->name, "sqlite")) {
        sqlite_damage(fx, "SELECT payload FROM records WHERE run = 'big' AND seq = 2",
                      "UPDATE records SET payload = ? WHERE run = 'big' AND seq = 2");
        sqlite_damage(fx, "SELECT inputs FROM runs WHERE id = 'big'",
                      "UPDATE runs SET inputs = ? WHERE id = 'big'");
    } else if (!strcmp(fx->b->name, "disk")) {
        disk_damage_record(fx, 2);
        disk_damage_inputs(fx);
    } else {
        snprintf(key, sizeof(key), "%s:journal:%s", fx->prefix, RUN);
        redis_damage("LINDEX %s 2", "LSET %s 2 %b", key, FLOW__JREC_FIXED);
        snprintf(key, sizeof(key), "%s:run:%s", fx->prefix, RUN);
        redis_damage("HGET %s inputs", "HSET %s inputs %b", key, 0);
    }
    fx->s = th_store_open(fx->url);

    flow_error err = {0};
    int n = 0;
    flow_err rc = flow__store_read(fx->s, RUN, 0, count_rec, &n, &err);
    print_message("%s: %s\n", fx->b->name, err.message);
    assert_int_equal(rc, FLOW_EIO);
    assert_int_equal(n, 2); /* the records before it were given */
    assert_has(err.message, "run 'big'");
    assert_has(err.message, "record 2");
    assert_has(err.message, "damaged compressed payload");

    struct flow__run_meta m = {0};
    memset(&err, 0, sizeof(err));
    rc = flow__store_run_get(fx->s, RUN, &m, &err);
    print_message("%s: %s\n", fx->b->name, err.message);
    assert_int_equal(rc, FLOW_EIO);
    assert_has(err.message, "run 'big'");
    assert_has(err.message, "damaged compressed payload");

    /* Appending does not cut the damaged record off as a torn tail. */
    memset(&err, 0, sizeof(err));
    struct flow__jrec more = {.type = JREC_PAUSED, .time = 1003.0};
    rc = flow__store_append(fx->s, RUN, &more, 1, 0, &err);
    if (!strcmp(fx->b->name, "disk")) {
        assert_int_equal(rc, FLOW_EIO);
        assert_has(err.message, "record 2");
    } else {
        assert_int_equal(rc, FLOW_OK);
    }
    journal_free(&j);
    json_decref(output);
    json_decref(writes);
}

/* ---- the codec ------------------------------------------------------------------ */

static void load_fails(const char *bytes, size_t len, flow_err want, const char *why)
{
    json_t *v = (json_t *)1;
    assert_int_equal(flow__payload_load(bytes, len, &v), want);
    assert_null(v);
    assert_has(flow__payload_why(want), why);
    struct flow__payload_memo memo = {0};
    v = (json_t *)1;
    assert_int_equal(flow__payload_parse(&memo, bytes, len, &v), want);
    assert_null(v);
    flow__payload_memo_cleanup(&memo);
}

/* The format: text at or under the threshold, deflated above it when that
 * saves an eighth, never otherwise; what is not the format is refused
 * with a reason, without allocating what a damaged header claims. */
static void test_codec(void **state)
{
    (void)state;
    flow__z_set_threshold(FLOW__Z_THRESHOLD);
    struct flow__buf b;
    flow__buf_init(&b, FLOW__BUF_DEFAULT_MAX);
    bool packed = true;

    /* Exactly the threshold: text (a string of n - 2 bytes and its quotes). */
    json_t *v = repeated(FLOW__Z_THRESHOLD - 2);
    assert_int_equal(flow__payload_append(&b, v, &packed), FLOW_OK);
    assert_false(packed);
    assert_int_equal(b.len, FLOW__Z_THRESHOLD);
    assert_false(flow__payload_big(v));
    json_decref(v);
    /* One byte more: deflated, after what the buffer held. */
    v = repeated(FLOW__Z_THRESHOLD - 1);
    size_t from = b.len;
    assert_int_equal(flow__payload_append(&b, v, &packed), FLOW_OK);
    assert_true(packed);
    assert_true(flow__payload_big(v));
    const char *z = b.data + from;
    size_t zlen = b.len - from;
    assert_true(flow__z_is(z, zlen));
    assert_int_equal(z[1], 'z');
    assert_int_equal(flow__get_le32(z + 2), FLOW__Z_THRESHOLD + 1);
    assert_true(zlen < 200);
    json_t *back = NULL;
    assert_int_equal(flow__payload_load(z, zlen, &back), FLOW_OK);
    assert_same_text(v, back);
    json_decref(back);
    assert_true(b.data[from - 1] == '"'); /* the text before is untouched */

    /* Damage: the stream cut, a byte changed, the length wrong, an unknown
     * method, a header alone, a length no stream of that size can give. */
    char *copy = malloc(zlen);
    memcpy(copy, z, zlen);
    load_fails(copy, zlen - 3, FLOW_EIO, "damaged compressed payload");
    copy[zlen / 2] ^= 1;
    load_fails(copy, zlen, FLOW_EIO, "damaged compressed payload");
    memcpy(copy, z, zlen);
    flow__put_le32(copy + 2, FLOW__Z_THRESHOLD + 2);
    load_fails(copy, zlen, FLOW_EIO, "damaged compressed payload");
    flow__put_le32(copy + 2, FLOW__Z_THRESHOLD);
    load_fails(copy, zlen, FLOW_EIO, "damaged compressed payload");
    flow__put_le32(copy + 2, 0x7fffffff);
    load_fails(copy, zlen, FLOW_EIO, "impossible length");
    memcpy(copy, z, zlen);
    copy[1] = 'x';
    load_fails(copy, zlen, FLOW_EUNSUPPORTED, "does not know");
    load_fails(copy, 2, FLOW_EUNSUPPORTED, "does not know");
    load_fails(z, 1, FLOW_EIO, "truncated header");
    load_fails(z, 4, FLOW_EIO, "truncated header");
    free(copy);
    json_decref(v);

    /* Deflated bytes that hold no JSON: a parse error. */
    flow__buf_reset(&b);
    assert_int_equal(flow__buf_appends(&b, "{\"a\": "), FLOW_OK);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(flow__buf_appends(&b, "[1, 2, 3, 4]"), FLOW_OK);
    assert_int_equal(flow__z_pack(&b, 0, &packed), FLOW_OK);
    assert_true(packed);
    load_fails(b.data, b.len, FLOW_EPARSE, "bad JSON");

    /* Not worth it: random bytes stay as they are. */
    flow__buf_reset(&b);
    char noise[3 * FLOW__Z_THRESHOLD];
    assert_int_equal(getrandom(noise, sizeof(noise), 0), (ssize_t)sizeof(noise));
    noise[0] = '[';
    assert_int_equal(flow__buf_append(&b, noise, sizeof(noise)), FLOW_OK);
    assert_int_equal(flow__z_pack(&b, 0, &packed), FLOW_OK);
    assert_false(packed);
    assert_int_equal(b.len, sizeof(noise));
    assert_memory_equal(b.data, noise, sizeof(noise));

    /* Off: nothing is deflated; text written before reads as ever. */
    flow__z_set_threshold(0);
    flow__buf_reset(&b);
    v = repeated(MiB);
    assert_int_equal(flow__payload_append(&b, v, &packed), FLOW_OK);
    assert_false(packed);
    assert_int_equal(b.len, MiB + 2);
    assert_false(flow__payload_big(v));
    assert_int_equal(flow__payload_load(b.data, b.len, &back), FLOW_OK);
    assert_true(json_equal(v, back));
    json_decref(back);
    json_decref(v);
    flow__z_set_threshold(FLOW__Z_THRESHOLD);

    /* A lower bound that stops early: small values are not big. */
    v = json_pack("{s:n, s:[i, i], s:s}", "output", "xs", 1, 2, "s", "short");
    assert_false(flow__payload_big(v));
    json_decref(v);
    flow__buf_cleanup(&b);
}

static void test_base64(void **state)
{
    (void)state;
    static const char *const want[] = {"", "YQ==", "YWI=", "YWJj", "YWJjZA==", "YWJjZGU="};
    for (size_t n = 0; n < FLOW__ARRAY_LEN(want); n++) {
        char *t = flow__b64_encode("abcde", n);
        assert_string_equal(t, want[n]);
        char *back;
        size_t len;
        assert_int_equal(flow__b64_decode(t, strlen(t), &back, &len), FLOW_OK);
        assert_int_equal(len, n);
        assert_memory_equal(back, "abcde", n);
        flow__free(back);
        flow__free(t);
    }
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    char *t = flow__b64_encode((const char *)all, sizeof(all));
    char *back;
    size_t len;
    assert_int_equal(flow__b64_decode(t, strlen(t), &back, &len), FLOW_OK);
    assert_int_equal(len, sizeof(all));
    assert_memory_equal(back, all, sizeof(all));
    flow__free(back);
    flow__free(t);
    static const char *const bad[] = {"Y", "YQ=", "Y===", "YQ=A", "Y!==", "YWJj\n"};
    for (size_t i = 0; i < FLOW__ARRAY_LEN(bad); i++) {
        back = (char *)1;
        assert_int_equal(flow__b64_decode(bad[i], strlen(bad[i]), &back, &len), FLOW_EPARSE);
        assert_null(back);
    }
}

int main(void)
{
    flow_set_alloc_funcs(count_malloc, count_realloc, count_free);
    if (getenv("FLOW_VALGRIND"))
        shrink = 4;
#define ROW(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest suite[] = {
        ROW(test_large_round_trip),
        ROW(test_random_and_edges),
        ROW(test_damaged),
    };
#undef ROW
    const struct CMUnitTest codec[] = {
        cmocka_unit_test(test_codec),
        cmocka_unit_test(test_base64),
    };
    int failed = _cmocka_run_group_tests("codec", codec, FLOW__ARRAY_LEN(codec), NULL, NULL);
    return failed + th_store_suites('z', NULL, suite, FLOW__ARRAY_LEN(suite));
}
