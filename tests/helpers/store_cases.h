/* store_cases.h -- one cmocka suite run once per store backend: sqlite:
 * and disk: with real files in a temp dir of each case, memory:, and
 * redis:// on one real redis-server for the suite, each case under a key
 * prefix of its own. A test file gives its cases (their setup and teardown
 * th_store_setup and th_store_teardown, or its own calling them) to
 * th_store_suites; each case gets its th_store_case as its state. */
#ifndef FLOW_TESTS_STORE_CASES_H
#define FLOW_TESTS_STORE_CASES_H

#include "helpers.h"
#include "redis_server.h"

struct th_backend {
    const char *name; /* the URL scheme but for redis; the group's name */
    const char *rel;  /* the store's path under the temp dir; NULL: memory, redis */
    bool redis;       /* on the suite's redis-server */
};

/* The fixture of one case. */
struct th_store_case {
    const struct th_backend *b;
    char *dir;  /* the temp dir */
    char *path; /* sqlite: the file; disk: the directory; redis: its URL (how
                 * its messages name it); memory: NULL */
    char *url;
    char prefix[32]; /* redis: this case's key prefix */
    struct flow__store *s;
    char me[300]; /* this process as a lease holder */
};

/* The suite's redis-server, running while th_store_suites runs. */
extern struct th_redis th_store_redis;

/* A new temp dir, URL and open store of backend `b` (failing the test when
 * the store does not open); close it and free it all. */
struct th_store_case *th_store_case_open(const struct th_backend *b);
void th_store_case_close(struct th_store_case *c);
/* The same as a case's setup (*state: its backend, then its fixture) and
 * teardown. */
int th_store_setup(void **state);
int th_store_teardown(void **state);

/* Whether the case's store keeps what it holds across a close
 * (FLOW__STORE_CAP_DURABLE), and is shared by processes
 * (FLOW__STORE_CAP_CROSS_PROCESS). */
bool th_store_durable(const struct th_store_case *c);
bool th_store_shared(const struct th_store_case *c);
/* Close the case's store and open it again, when it is durable (what is
 * read back then comes from its bytes); a memory store stays open. */
void th_store_reopen(struct th_store_case *c);

/* Fork `n` children, child i calling child(url, i, fd): it writes lines to
 * fd and _exits, with 0 when all went well. Returns their lines in the
 * order they were written (free() it) once all of them ended; a child that
 * did not exit 0 fails the test, showing its lines from the first "X " (a
 * child's account of its failure) on, or all of them. */
char *th_store_children(const char *url, int n, void (*child)(const char *url, int i, int fd));

/* A URL of the suite's redis-server under a key prefix no case used yet,
 * written to prefix[size] (malloc'd by flow__asprintf). */
char *th_store_redis_url(char *prefix, size_t size);

/* Start the suite's redis-server (`redis_conf`: config lines to add, or
 * NULL), run the `n` cases of `suite` as one group per backend named after
 * it, stop the server; how many cases failed. The redis prefixes start
 * with `tag`, a letter of the test file's own. */
int th_store_suites(char tag, const char *redis_conf, const struct CMUnitTest *suite, size_t n);

#endif
