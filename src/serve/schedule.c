/* schedule.c -- `flow serve` starts the runs of flows with a `schedule:`:
 * the run of a tick has the id NAME@TIME (NAME the file's name in --flows,
 * TIME the tick in UTC), so the store refuses a second one and two serves
 * on one store never start a tick twice. The supervisor thread alone calls
 * this; the flows directory is looked at again every few seconds. */
#include "util/compat.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/serve_int.h"
#include "util/alloc.h"

#define RESCAN_EVERY 10.0 /* seconds between looks at the flows directory */
#define CATCHUP_MAX 100   /* ticks a serve that was down starts at once, at most */

struct sched {
    char *name;   /* the file's name without its extension */
    char *cron;   /* to notice a changed schedule */
    double next;  /* the next tick to start */
    bool catchup;
    bool seen;    /* in the directory at the last look */
};

struct serve_schedules {
    FLOW__VEC(struct sched) items;
    double rescan_at;
};

static void tick_id(const char *name, double t, char *out, size_t size)
{
    time_t s = (time_t)t;
    struct tm tm;
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&s, &tm));
    snprintf(out, size, "%s@%s", name, when);
}

/* The latest tick of `name` the store has a run of, or -1. */
static double last_tick(struct serve *sv, const char *name)
{
    flow_error err = {0};
    json_t *runs = flow_store_runs(sv->store, &err);
    size_t n = strlen(name), i;
    json_t *r;
    double last = -1;
    json_array_foreach(runs, i, r)
    {
        const char *id = json_string_value(json_object_get(r, "id"));
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        if (id && !strncmp(id, name, n) && id[n] == '@' &&
            strptime(id + n + 1, "%Y-%m-%dT%H:%M:%SZ", &tm)) {
            double t = (double)timegm(&tm);
            if (t > last)
                last = t;
        }
    }
    json_decref(runs);
    return last;
}

static struct sched *find(struct serve_schedules *ss, const char *name)
{
    for (size_t i = 0; i < ss->items.count; i++)
        if (!strcmp(ss->items.items[i].name, name))
            return &ss->items.items[i];
    return NULL;
}

static void sched_drop(struct serve_schedules *ss, size_t i)
{
    flow__free(ss->items.items[i].name);
    flow__free(ss->items.items[i].cron);
    ss->items.items[i] = ss->items.items[--ss->items.count];
}

/* Look at the flows directory: new scheduled flows, changed and removed
 * ones. */
static void rescan(struct serve *sv, struct serve_schedules *ss, double now)
{
    DIR *d = opendir(sv->flows_dir);
    struct dirent *de;
    for (size_t i = 0; i < ss->items.count; i++)
        ss->items.items[i].seen = false;
    while (d && (de = readdir(d))) {
        char name[256];
        size_t len = strlen(de->d_name);
        const char *dot = strrchr(de->d_name, '.');
        if (de->d_name[0] == '.' || !dot ||
            (strcmp(dot, ".yaml") && strcmp(dot, ".yml") && strcmp(dot, ".json")) ||
            (size_t)(dot - de->d_name) >= sizeof(name) || len > 250)
            continue;
        memcpy(name, de->d_name, (size_t)(dot - de->d_name));
        name[dot - de->d_name] = '\0';
        char *path = flow__asprintf("%s/%s", sv->flows_dir, de->d_name);
        flow_error err = {0};
        flow *f = path ? serve_load(path, &err) : NULL;
        const flow_schedule *sc = f ? flow_get_schedule(f) : NULL;
        struct sched *s = sc ? find(ss, name) : NULL;
        if (s && strcmp(s->cron, sc->cron)) { /* changed: from now on */
            s->next = flow_schedule_next(f, now);
            flow__free(s->cron);
            s->cron = flow__strdup(sc->cron);
        }
        if (sc && !s) {
            struct sched n = {flow__strdup(name), flow__strdup(sc->cron), -1, sc->catchup, true};
            double from = sc->catchup ? last_tick(sv, name) : -1;
            n.next = flow_schedule_next(f, from >= 0 ? from : now);
            flow_err rc = n.name && n.cron ? FLOW_OK : FLOW_ENOMEM;
            if (rc == FLOW_OK)
                FLOW__VEC_PUSH(&ss->items, n, rc);
            if (rc != FLOW_OK) {
                flow__free(n.name);
                flow__free(n.cron);
            }
        } else if (s) {
            s->seen = true;
            s->catchup = sc->catchup;
        }
        flow_free(f);
        flow__free(path);
    }
    if (d)
        closedir(d);
    for (size_t i = ss->items.count; i-- > 0;)
        if (!ss->items.items[i].seen)
            sched_drop(ss, i);
}

/* Start the run of each tick that is due. */
static void start_due(struct serve *sv, struct sched *s, double now)
{
    char *path = NULL;
    flow_error err = {0};
    if (serve_flow_path(sv, s->name, &path, &err) != FLOW_OK)
        return;
    flow *f = serve_load(path, &err);
    flow__free(path);
    const flow_schedule *sc = f ? flow_get_schedule(f) : NULL;
    for (int n = 0; sc && s->next >= 0 && s->next <= now && n < CATCHUP_MAX; n++) {
        if (!s->catchup && now - s->next > 60) { /* missed while down: not ours to start */
            s->next = flow_schedule_next(f, now);
            break;
        }
        char id[300];
        char *run_id = NULL;
        tick_id(s->name, s->next, id, sizeof(id));
        memset(&err, 0, sizeof(err));
        flow_err rc = serve_start(sv, s->name, sc->inputs, id, &run_id, &err);
        if (rc == FLOW_OK && !sv->opts.quiet)
            fprintf(stderr, "flow serve: started run '%s' (schedule '%s')\n", id, sc->cron);
        else if (rc != FLOW_OK && rc != FLOW_EEXISTS && !sv->opts.quiet)
            fprintf(stderr, "flow serve: cannot start run '%s': %s\n", id, err.message);
        flow__free(run_id);
        s->next = flow_schedule_next(f, s->next);
    }
    flow_free(f);
}

void serve_schedules(struct serve *sv, double now)
{
    struct serve_schedules *ss = sv->schedules;
    if (!ss) {
        ss = sv->schedules = flow__calloc(1, sizeof(*ss));
        if (!ss)
            return;
    }
    if (now >= ss->rescan_at) {
        rescan(sv, ss, now);
        ss->rescan_at = now + RESCAN_EVERY;
    }
    for (size_t i = 0; i < ss->items.count; i++)
        if (ss->items.items[i].next >= 0 && ss->items.items[i].next <= now)
            start_due(sv, &ss->items.items[i], now);
}

void serve_schedules_free(struct serve *sv)
{
    struct serve_schedules *ss = sv->schedules;
    if (!ss)
        return;
    while (ss->items.count)
        sched_drop(ss, ss->items.count - 1);
    FLOW__VEC_FREE(&ss->items);
    flow__free(ss);
    sv->schedules = NULL;
}
