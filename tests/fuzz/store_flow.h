/* store_flow.h -- the flow whose journals fuzz_store replays, and the runs
 * that make its seed journals (shared by fuzz_store.c and fuzz_seeds.c). */
#ifndef FLOW_TESTS_FUZZ_STORE_FLOW_H
#define FLOW_TESTS_FUZZ_STORE_FLOW_H

#include <stddef.h>

#include "flow.h"

/* The flow, loaded and bound to its C functions; aborts on failure. */
flow *fuzz_store_flow(void);

/* Ways to run it (each a different journal). */
size_t fuzz_store_scenario_count(void);

/* Called each time a scenario's run stops (paused, waiting or ended). */
typedef void (*fuzz_store_stop_fn)(const char *run_id, int stop, void *udata);

/* Run scenario `i` as run `run_id` in `store`: start it, then, while it
 * stops paused, answer what it asks and resume it, or when it failed or was
 * cancelled, retry it (at most `stops` times).
 * `on_stop` (may be NULL) is called at each stop. */
void fuzz_store_scenario(flow_engine *e, flow *f, flow_store *store, size_t i,
                         const char *run_id, int stops, fuzz_store_stop_fn on_stop, void *udata);

/* Answer every open request of `run_id` (approval yes, a text, the first
 * option); returns how many were answered. */
int fuzz_store_answer_all(flow_store *store, const char *run_id);

#endif
