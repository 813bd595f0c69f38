/* cmd_feedback.c -- `flow feedback [RUN]`: the requests that wait for people;
 * `flow feedback RUN REQUEST --approve|--reject|--text T|--select OPTION`:
 * answer one (docs/cli.md). */
#include "cli.h"

#include <string.h>
#include <time.h>

#include "follow.h"

enum { OPT_APPROVE = CLI_OPT_EXTRA, OPT_REJECT, OPT_TEXT, OPT_SELECT, OPT_BY };

static const struct cli_option options[] = {
    CLI_STORE_OPTIONS,
    {"approve", 0, false, OPT_APPROVE},
    {"reject", 0, false, OPT_REJECT},
    {"text", 0, true, OPT_TEXT},
    {"select", 0, true, OPT_SELECT},
    {"by", 0, true, OPT_BY},
    {NULL, 0, false, 0},
};

static const char help[] =
    "usage: flow feedback [RUN] [--json] [--store URL]\n"
    "       flow feedback RUN REQUEST (--approve | --reject | --text TEXT | --select OPTION)\n"
    "                     [--by NAME] [--store URL]\n"
    "\n"
    "Without an answer: list the feedback requests that wait for people, of RUN or of\n"
    "every run in the store: run, request, type, message, options, age, deadline.\n"
    "A request whose deadline has passed is listed as expired: it takes no answer any\n"
    "more, its timeout answer (the default, or a failure) stands.\n"
    "\n"
    "With one: answer REQUEST of RUN. Of two answers at the same moment one is taken,\n"
    "the other refused naming it. The answer is journaled; a runner that waits\n"
    "for it ('flow run --wait') goes on within a fraction of a second, else 'flow\n"
    "resume RUN' continues the run with it. The task's output is {\"approved\": BOOL},\n"
    "{\"text\": TEXT} or {\"selected\": OPTION}, with \"by\" and \"at\".\n"
    "\n"
    "Options:\n"
    "      --approve        answer an approval request: yes\n"
    "      --reject         answer an approval request: no\n"
    "      --text TEXT      answer a text request\n"
    "      --select OPTION  answer a selection request with one of its options\n"
    "      --by NAME        who answers (default: $USER)\n"
    "      --json           the list as JSON: [{run, request, task, activation, type,\n"
    "                       message, options, created_at, deadline, expired}]\n"
    "      --store URL      the store (default: $FLOW_STORE, else the nearest\n"
    "                       .flow/flow.db here or above)\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0; 1 when the store cannot be read or written; 2 for a usage error,\n"
    "no such run or request, a request answered already or past its deadline, or an\n"
    "answer that does not fit (a selection outside its options).\n";

struct answer_args {
    json_t *answer; /* owned */
    const char *by;
    int given;
};

static int answer_opt(struct cli_args *a, int id, void *udata)
{
    struct answer_args *aa = udata;

    switch (id) {
    case OPT_APPROVE:
    case OPT_REJECT:
        json_decref(aa->answer);
        aa->answer = json_boolean(id == OPT_APPROVE);
        aa->given++;
        break;
    case OPT_TEXT:
    case OPT_SELECT:
        json_decref(aa->answer);
        aa->answer = json_string(a->value);
        aa->given++;
        if (!aa->answer) {
            return cli_usage_error("feedback", "the answer '%s' is not valid UTF-8", a->value);
        }
        break;
    case OPT_BY:
        aa->by = a->value;
        break;
    default:
        break;
    }
    return -1;
}

/* "3m", "2h", "5d" since an RFC 3339 time. */
static void age(const json_t *when, char *out, size_t size)
{
    const char *s = json_string_value(when);
    struct tm tm;
    double secs;

    memset(&tm, 0, sizeof(tm));
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6) {
        snprintf(out, size, "-");
        return;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    secs = difftime(time(NULL), timegm(&tm));
    if (secs < 120) {
        snprintf(out, size, "%.0fs", secs < 0 ? 0 : secs);
    } else if (secs < 7200) {
        snprintf(out, size, "%.0fm", secs / 60);
    } else if (secs < 172800) {
        snprintf(out, size, "%.0fh", secs / 3600);
    } else {
        snprintf(out, size, "%.0fd", secs / 86400);
    }
}

static int list(flow_store *st, const char *run_id, bool as_json)
{
    flow_error err;
    json_t *reqs;
    json_t *q;
    size_t i;
    bool ok;

    memset(&err, 0, sizeof(err));
    reqs = flow_store_feedback(st, run_id, &err);
    if (!reqs) {
        cli_error("%s", err.message);
        return cli_store_error_status(err.code);
    }
    if (as_json) {
        ok = cli_print_json(stdout, reqs);
        json_decref(reqs);
        return ok ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    }
    if (json_array_size(reqs) == 0) {
        printf("no feedback requests wait%s%s\n", run_id ? " in run " : "", run_id ? run_id : "");
    }
    json_array_foreach(reqs, i, q)
    {
        char ago[16];
        char deadline[32];
        const char *type = json_string_value(json_object_get(q, "type"));
        json_t *opts = json_object_get(q, "options");
        char *text = json_is_array(opts) ? flow_json_dumps(opts, JSON_COMPACT) : NULL;

        bool expired = json_is_true(json_object_get(q, "expired"));

        age(json_object_get(q, "created_at"), ago, sizeof(ago));
        cli_short_time(json_object_get(q, "deadline"), deadline, sizeof(deadline));
        printf("%s %s (%s, %s ago%s%s): %s\n", json_string_value(json_object_get(q, "run")),
               json_string_value(json_object_get(q, "request")), type, ago,
               !strcmp(deadline, "-") ? ""
               : expired              ? ", expired at "
                                      : ", deadline ",
               strcmp(deadline, "-") ? deadline : "",
               json_string_value(json_object_get(q, "message")));
        if (text) {
            printf("    options: %s\n", text);
        }
        free(text);
        if (expired) {
            /* a deadline is a promise: no answer is taken any more */
            printf("    expired: its timeout answer stands; 'flow resume %s' goes on with it\n",
                   json_string_value(json_object_get(q, "run")));
            continue;
        }
        printf("    answer: flow feedback %s %s %s\n",
               json_string_value(json_object_get(q, "run")),
               json_string_value(json_object_get(q, "request")),
               !strcmp(type, "approval") ? "--approve | --reject"
               : !strcmp(type, "text")   ? "--text TEXT"
                                         : "--select OPTION");
    }
    json_decref(reqs);
    return cli_flush(stdout) ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

static int feedback_main(int argc, char **argv)
{
    struct cli_store_args sa = {0};
    struct answer_args aa = {0};
    flow_store *st;
    flow_error err;
    const char *by;
    int rc;

    rc = cli_parse_store_args(&sa, "feedback", argc, argv, options, help, answer_opt, &aa);
    if (rc >= 0) {
        goto out;
    }
    if (aa.given > 1) {
        rc = cli_usage_error("feedback", "give one answer: --approve, --reject, --text or "
                                         "--select");
        goto out;
    }
    if (sa.args.npos > 2) {
        rc = cli_usage_error("feedback", "unexpected argument '%s' for 'feedback'",
                             cli_pos(&sa.args, 2));
        goto out;
    }
    if (aa.given && sa.args.npos < 2) {
        rc = cli_usage_error("feedback", "an answer needs the RUN and the REQUEST it answers");
        goto out;
    }
    if (!aa.given && sa.args.npos == 2) {
        rc = cli_usage_error("feedback", "answer request '%s' with --approve, --reject, --text "
                                         "TEXT or --select OPTION",
                             cli_pos(&sa.args, 1));
        goto out;
    }
    st = cli_open_existing_store(sa.store_url, &rc);
    if (!st) {
        goto out;
    }
    if (!aa.given) {
        rc = list(st, sa.args.npos ? cli_pos(&sa.args, 0) : NULL, sa.json);
        flow_store_close(st);
        goto out;
    }
    by = aa.by ? aa.by : getenv("USER");
    memset(&err, 0, sizeof(err));
    if (flow_store_answer(st, cli_pos(&sa.args, 0), cli_pos(&sa.args, 1), aa.answer, by, &err) !=
        FLOW_OK) {
        cli_error("%s", err.message);
        rc = err.code == FLOW_ESTATE ? CLI_EXIT_USAGE : cli_store_error_status(err.code);
    } else {
        fprintf(stderr, "answered request %s of run %s\n", cli_pos(&sa.args, 1),
                cli_pos(&sa.args, 0));
        rc = CLI_EXIT_OK;
    }
    flow_store_close(st);
out:
    json_decref(aa.answer);
    return rc;
}

const struct cli_command cli_cmd_feedback = {
    "feedback",
    "list the requests that wait for people, or answer one",
    help,
    feedback_main,
};
