/* cmd_worker.c -- `flow worker`: run the activations of `executor: remote`
 * tasks taken from Redis; `flow workers`: list the live workers
 * (docs/internals/distribution.md). */
#include "cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "follow.h"

enum {
    OPT_HELP = 1,
    OPT_REDIS,
    OPT_QUEUE,
    OPT_CONCURRENCY,
    OPT_NAME,
    OPT_CLAIM,
    OPT_RESOURCES,
    OPT_JSON
};

static const struct cli_option worker_options[] = {
    {"help", 'h', false, OPT_HELP},
    {"redis", 0, true, OPT_REDIS},
    {"queue", 0, true, OPT_QUEUE},
    {"concurrency", 'c', true, OPT_CONCURRENCY},
    {"name", 0, true, OPT_NAME},
    {"claim-after", 0, true, OPT_CLAIM},
    {"resources", 0, true, OPT_RESOURCES},
    {NULL, 0, false, 0},
};

static const char worker_help[] =
    "usage: flow worker [--redis URL] [--queue Q]... [--concurrency N] [--name NAME]\n"
    "                   [--claim-after DURATION] [--resources LIST]\n"
    "\n"
    "Run the activations of tasks with 'executor: remote' that runners queue in\n"
    "Redis, and send their completions back. Commands run as they would on the\n"
    "runner, with the same FLOW_* variables and files, plus FLOW_WORKER (this\n"
    "worker's name). SIGTERM or SIGINT drains: running tasks finish and are\n"
    "reported, no new one is taken, and the worker exits 0. A worker that is\n"
    "killed loses nothing: another takes its tasks over after --claim-after.\n"
    "Tasks of higher priority are taken first. A task that asks resources starts\n"
    "when they are free here; one that asks more than this worker has is left to\n"
    "another worker.\n"
    "\n"
    "Options:\n"
    "      --redis URL      redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]\n"
    "                       (default: $FLOW_REDIS)\n"
    "      --queue Q        a queue to take tasks from (repeatable; default: default)\n"
    "  -c, --concurrency N  tasks at once (default 4)\n"
    "      --name NAME      this worker's name (default: HOST-PID)\n"
    "      --claim-after DURATION\n"
    "                       take over the tasks of a worker silent this long\n"
    "                       (default 30s)\n"
    "      --resources LIST what this worker's tasks may use at once, like\n"
    "                       cpu=8,memory=16G,gpu=1 (default: its cores and RAM,\n"
    "                       gpu=0; what LIST does not name keeps its default)\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0 stopped by a signal, 1 Redis failed, 2 usage error.\n";

static flow_worker *the_worker;

static void on_stop(int sig)
{
    (void)sig;
    if (the_worker)
        flow_worker_stop(the_worker);
}

static int worker_main(int argc, char **argv)
{
    struct cli_args a;
    flow_worker_options o;
    memset(&o, 0, sizeof(o));
    const char *url = NULL;
    flow_resources res;
    flow_resources_machine(&res);
    const char **queues = cli_malloc((size_t)argc * sizeof(*queues) + sizeof(*queues));
    size_t nq = 0;
    int id, rc = CLI_EXIT_OK;
    cli_args_init(&a, "worker", argc, argv, worker_options);
    while ((id = cli_next_opt(&a)) != 0) {
        switch (id) {
        case -1:
            free(queues);
            return CLI_EXIT_USAGE;
        case OPT_HELP:
            free(queues);
            return cli_print_help(worker_help);
        case OPT_REDIS:
            url = a.value;
            break;
        case OPT_QUEUE:
            queues[nq++] = a.value;
            break;
        case OPT_CONCURRENCY:
            if (!cli_parse_count(&a, a.value, &o.concurrency) || o.concurrency < 1) {
                free(queues);
                return cli_usage_error("worker", "option '--concurrency' of 'worker' needs a "
                                                 "positive number, not '%s'",
                                       a.value);
            }
            break;
        case OPT_NAME:
            o.name = a.value;
            break;
        case OPT_CLAIM:
            if (flow_parse_duration(a.value, &o.claim_after) != FLOW_OK || o.claim_after <= 0) {
                free(queues);
                return cli_usage_error("worker", "option '--claim-after' of 'worker' needs a "
                                                 "duration like 30s or 2m, not '%s'",
                                       a.value);
            }
            break;
        case OPT_RESOURCES: {
            flow_error perr;
            memset(&perr, 0, sizeof(perr));
            if (flow_resources_parse(a.value, &res, &perr) != FLOW_OK) {
                free(queues);
                return cli_usage_error("worker", "option '--resources' of 'worker': %s",
                                       perr.message);
            }
            break;
        }
        default:
            break;
        }
    }
    if (a.npos > 0) {
        free(queues);
        return cli_usage_error("worker", "unexpected argument '%s' for 'worker'", cli_pos(&a, 0));
    }
    queues[nq] = NULL;
    o.queues = nq ? queues : NULL;
    o.resources = &res;
    flow_error err;
    memset(&err, 0, sizeof(err));
    flow_set_reap_orphans(true);
    flow_worker *w = flow_worker_new(url, &o, &err);
    if (!w) {
        cli_error("%s", err.message);
        free(queues);
        return err.code == FLOW_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAILED;
    }
    the_worker = w;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (flow_worker_run(w, &err) != FLOW_OK) {
        cli_error("%s", err.message);
        rc = CLI_EXIT_FAILED;
    }
    the_worker = NULL;
    flow_worker_free(w);
    free(queues);
    return rc;
}

const struct cli_command cli_cmd_worker = {
    "worker",
    "run remote tasks taken from Redis",
    worker_help,
    worker_main,
};

static const struct cli_option workers_options[] = {
    {"help", 'h', false, OPT_HELP},
    {"redis", 0, true, OPT_REDIS},
    {"json", 0, false, OPT_JSON},
    {NULL, 0, false, 0},
};

static const char workers_help[] =
    "usage: flow workers [--redis URL] [--json]\n"
    "\n"
    "List the live workers (their heartbeat is under 3 seconds old): name, host,\n"
    "pid, queues, tasks running, tasks done, resources in use of what it has\n"
    "(cpu, memory, gpu), last seen.\n"
    "\n"
    "Options:\n"
    "      --redis URL  the Redis of the workers (default: $FLOW_REDIS)\n"
    "      --json       a JSON array of {name, host, pid, queues, running, done,\n"
    "                   started, seen, resources, in_use} (times in epoch\n"
    "                   seconds; resources and in_use: {cpu, memory, gpu},\n"
    "                   memory in bytes)\n"
    "  -h, --help       show this help\n"
    "\n"
    "Exit status: 0 listed, 1 Redis failed, 2 usage error.\n";

/* 4.5G, 512M, 2: an amount as `--resources` takes it. */
static void amount(double v, bool bytes, char *buf, size_t size)
{
    static const char units[] = "KMGT";
    int u = -1;
    while (bytes && v >= 1024 && u < 3) {
        v /= 1024;
        u++;
    }
    if (u < 0)
        snprintf(buf, size, "%g", v);
    else
        snprintf(buf, size, v == (double)(long long)v ? "%.0f%c" : "%.1f%c", v, units[u]);
}

/* "USED/HAS" of resource `name` of worker `w`, or "-" when it declares none. */
static void used_of(const json_t *w, const char *name, char *buf, size_t size)
{
    json_t *has = json_object_get(json_object_get(w, "resources"), name);
    json_t *used = json_object_get(json_object_get(w, "in_use"), name);
    if (!json_is_number(has)) {
        snprintf(buf, size, "-");
        return;
    }
    char u[16], h[16];
    bool bytes = !strcmp(name, "memory");
    amount(json_is_number(used) ? json_number_value(used) : 0, bytes, u, sizeof(u));
    amount(json_number_value(has), bytes, h, sizeof(h));
    snprintf(buf, size, "%s/%s", u, h);
}

static int workers_main(int argc, char **argv)
{
    struct cli_args a;
    const char *url = NULL;
    bool json = false;
    int id;
    cli_args_init(&a, "workers", argc, argv, workers_options);
    while ((id = cli_next_opt(&a)) != 0) {
        if (id == -1)
            return CLI_EXIT_USAGE;
        if (id == OPT_HELP)
            return cli_print_help(workers_help);
        if (id == OPT_REDIS)
            url = a.value;
        if (id == OPT_JSON)
            json = true;
    }
    if (a.npos > 0)
        return cli_usage_error("workers", "unexpected argument '%s' for 'workers'",
                               cli_pos(&a, 0));
    flow_error err;
    memset(&err, 0, sizeof(err));
    json_t *list = NULL;
    if (flow_workers_list(url, &list, &err) != FLOW_OK) {
        cli_error("%s", err.message);
        return err.code == FLOW_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAILED;
    }
    if (json) {
        char *s = json_dumps(list, JSON_INDENT(2));
        printf("%s\n", s ? s : "[]");
        free(s);
    } else {
        printf("%-24s %-16s %7s %-16s %7s %7s %-9s %-13s %-7s %s\n", "NAME", "HOST", "PID",
               "QUEUES", "RUNNING", "DONE", "CPU", "MEMORY", "GPU", "LAST SEEN");
        size_t i;
        json_t *w;
        json_array_foreach(list, i, w)
        {
            json_t *q = json_object_get(w, "queues");
            char queues[128] = "";
            size_t k;
            json_t *qv;
            json_array_foreach(q, k, qv)
            {
                size_t n = strlen(queues);
                snprintf(queues + n, sizeof(queues) - n, "%s%s", k ? "," : "",
                         json_string_value(qv));
            }
            time_t seen = (time_t)json_real_value(json_object_get(w, "seen"));
            struct tm tm;
            char when[64] = "-";
            if (localtime_r(&seen, &tm))
                strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
            char cpu[32], mem[32], gpu[32];
            used_of(w, "cpu", cpu, sizeof(cpu));
            used_of(w, "memory", mem, sizeof(mem));
            used_of(w, "gpu", gpu, sizeof(gpu));
            printf("%-24s %-16s %7lld %-16s %7lld %7lld %-9s %-13s %-7s %s\n",
                   json_string_value(json_object_get(w, "name")),
                   json_string_value(json_object_get(w, "host")),
                   (long long)json_integer_value(json_object_get(w, "pid")), queues,
                   (long long)json_integer_value(json_object_get(w, "running")),
                   (long long)json_integer_value(json_object_get(w, "done")), cpu, mem, gpu,
                   when);
        }
    }
    json_decref(list);
    return CLI_EXIT_OK;
}

const struct cli_command cli_cmd_workers = {
    "workers",
    "list the live workers",
    workers_help,
    workers_main,
};
