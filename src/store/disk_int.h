/* disk_int.h -- the inside of the disk store (store_disk.c: files, the
 * per-run cache, records, runs, open and close; store_disk_ctl.c: leases,
 * control requests, answers; store_disk_limits.c: concurrency slots and
 * rate starts; store_disk_cache.c: cached outputs of tasks). */
#ifndef FLOW_STORE_DISK_INT_H
#define FLOW_STORE_DISK_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"
#include "util/buf.h"
#include "util/strmap.h"

#define DK_FORMAT_MAGIC "libflow-store"
#define DK_RECORD_MAX ((uint32_t)1 << 30) /* bytes of one record's JSON */
#define DK_HEADER 8                        /* length + crc32 */
#define DK_READ_CHUNK ((size_t)1 << 16)
#define DK_BUF_KEEP ((size_t)1 << 22) /* a larger batch buffer is freed after use */
#define DK_META_MAX ((size_t)1 << 26)
#define DK_CTL_NAME_LEN 20 /* digits of a control request's file name */
#define DK_CTL_TRIES 1000
#define DK_PATH_MAX 160 /* "<id>/meta.json.tmp" and the like */
#define DK_ANS_NAME_MAX 180 /* bytes of an answer's file name */

/* What this handle keeps of a run. Entries stay in the map until close (a
 * deleted run's entry is only made cold). */
struct dk_run {
    char id[80];        /* the map's key */
    int fd;             /* the journal, open for append; -1: cold */
    uint64_t next_seq;  /* records in the journal (valid while fd >= 0) */
    uint64_t size;      /* bytes in the journal (valid while fd >= 0) */
    int lease_fd;       /* holds the flock on `lease`, or -1 */
    char *lease_holder; /* whose lease that is */
};

struct dk_store {
    char *path; /* DIR, for messages */
    int dirfd;  /* DIR */
    int runsfd; /* DIR/runs */
    int slotsfd, holdersfd, ratesfd; /* DIR/slots, holders, rates: -1 until first used */
    int cachefd;                     /* DIR/cache: -1 until first used */
    bool strict;
    struct flow__strmap runs; /* id -> struct dk_run */
    struct flow__buf buf;     /* a batch or a file being written */
};

/* ---- store_disk.c ---------------------------------------------------- */

/* Write `data` as the new file `name` in `dfd` (replacing one), mode 0600,
 * fsync'ed. 0, or an errno (and no file). */
int flow__dk_write_file(int dfd, const char *name, const char *data, size_t len);
/* The same, `how` saying whether to fsync it (DK_SYNC) and whether it must
 * be new (DK_EXCL: EEXIST otherwise; else it replaces one). */
enum { DK_SYNC = 1u << 0, DK_EXCL = 1u << 1 };
int flow__dk_put_file(int dfd, const char *name, const char *data, size_t len, unsigned how);
/* Read the file `name` in `dfd` into `b` (reset first). 0 or an errno. */
int flow__dk_read_file(int dfd, const char *name, struct flow__buf *b);
int flow__dk_open_dir(int dfd, const char *name);
/* "<id>/<name>" (relative to runs/) into `out`; false when `id` cannot be a
 * run of this store (then there is no such run). */
bool flow__dk_run_path(char *out, size_t size, const char *id, const char *name);
flow_err flow__dk_no_run(struct dk_store *s, const char *id, flow_error *err);
/* Does run `id` exist (its meta.json does)? FLOW_OK, FLOW_ENOTFOUND or an
 * I/O error, each with its message. */
flow_err flow__dk_run_exists(struct dk_store *s, const char *id, flow_error *err);
/* A unique name for a temp entry: ".PREFIX-ID-PID-N". N counts in the
 * process, not the handle: two handles of one process (threads) must not
 * write the same temp file. */
void flow__dk_temp_name(struct dk_store *s, char *out, size_t size, const char *prefix,
                        const char *id);
/* The entry of run `id`, created cold; NULL when out of memory. */
struct dk_run *flow__dk_run_cache(struct dk_store *s, const char *id);
void flow__dk_lease_drop(struct dk_run *c);

/* ---- store_disk_ctl.c ------------------------------------------------ */

flow_err flow__dk_lease_acquire(void *priv, const char *id, const char *holder, double now,
                                double ttl, flow_error *err);
flow_err flow__dk_lease_release(void *priv, const char *id, const char *holder, flow_error *err);
/* A lease is live while its file is locked: try to take a shared lock. */
flow_err flow__dk_lease_get(void *priv, const char *id, double now, char **holder,
                            flow_error *err);
flow_err flow__dk_control_put(void *priv, const char *id, const char *kind, const char *arg,
                              flow_error *err);
flow_err flow__dk_control_take(void *priv, const char *id, char **kind, char **arg,
                               flow_error *err);
flow_err flow__dk_answer_claim(void *priv, const char *run_id, const char *request,
                               json_t *answer, double not_after, json_t **winner,
                               flow_error *err);
flow_err flow__dk_answer_list(void *priv, const char *run_id, json_t **out, flow_error *err);

/* ---- store_disk_limits.c --------------------------------------------- */

flow_err flow__dk_slot_acquire(void *priv, const char *key, int limit, int want,
                               const char *holder, const char *owner, double now, double ttl,
                               int *slots, int *got, flow_error *err);
flow_err flow__dk_slot_release(void *priv, const char *key, const int *slots, int n,
                               const char *holder, flow_error *err);
flow_err flow__dk_slot_renew(void *priv, const char *holder, double now, double ttl,
                             flow_error *err);
flow_err flow__dk_slot_list(void *priv, const char *key, double now, json_t **out,
                            flow_error *err);
flow_err flow__dk_rate_take(void *priv, const char *key, int limit, double window, int want,
                            double now, int *got, double *retry_at, flow_error *err);
flow_err flow__dk_slot_contended(void *priv, const char *key, const char *holder, double now,
                                 bool *contended, flow_error *err);

/* ---- store_disk_cache.c ---------------------------------------------- */

flow_err flow__dk_cache_get(void *priv, const char *fname, const char *task, const char *key,
                            double now, json_t **entry, double *created, flow_error *err);
flow_err flow__dk_cache_put(void *priv, const char *fname, const char *task, const char *key,
                            const json_t *entry, double now, double expires, flow_error *err);
flow_err flow__dk_cache_gc(void *priv, double now, bool all, size_t *removed, flow_error *err);

#endif
