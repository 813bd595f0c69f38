/* feedback.c -- requests for people (docs/concepts.md): asking, parking the
 * activation that waits, answers (from a person or a timeout), their replay,
 * and notifications. The design is docs/internals/feedback.md. Everything
 * here runs with the engine lock held unless it says otherwise. */
#include "util/compat.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/run_int.h"
#include "exec/spawn.h"
#include "exec/tree.h"
#include "journal/durable.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/json.h"
#include "util/log.h"

extern char **environ;

static const char *const type_names[] = {"approval", "text", "selection"};

static const char *type_name(flow_feedback_type t)
{
    return (unsigned)t < 3 ? type_names[t] : "approval";
}

static flow_feedback_type type_of(const char *name)
{
    for (int i = 0; name && i < 3; i++)
        if (!strcmp(name, type_names[i]))
            return (flow_feedback_type)i;
    return FLOW_FEEDBACK_APPROVAL;
}

static struct fb_request *find(struct flow_run *r, const char *id)
{
    for (size_t i = 0; i < r->requests.count; i++)
        if (!strcmp(r->requests.items[i].id, id))
            return &r->requests.items[i];
    return NULL;
}

static struct fb_request *find_act(struct flow_run *r, const struct act *a)
{
    for (size_t i = r->requests.count; i-- > 0;)
        if (r->requests.items[i].act == a && !r->requests.items[i].retired)
            return &r->requests.items[i];
    return NULL;
}

/* How many retries ran `a` again: its requests' generation. */
static uint32_t gen_of(const struct act *a)
{
    return a->dyn ? a->dyn->retried : 0;
}

void flow__feedback_retire(struct flow_run *r, const struct act *a)
{
    for (size_t i = 0; i < r->requests.count; i++) {
        struct fb_request *q = &r->requests.items[i];
        if (q->act == a && !q->answer)
            q->retired = true;
    }
}

void flow__feedback_cleanup(struct flow_run *r)
{
    for (size_t i = 0; i < r->requests.count; i++) {
        struct fb_request *q = &r->requests.items[i];
        flow__free(q->id);
        flow__free(q->message);
        flow__free(q->channel_key);
        json_decref(q->options);
        json_decref(q->default_answer);
        json_decref(q->answer);
    }
    FLOW__VEC_FREE(&r->requests);
    json_decref(r->claimed);
    r->claimed = NULL;
}

/* [L] Add a request (fields copied); NULL when out of memory. The default
 * answer is a deep copy: it comes from the flow, shared by runs on other
 * engines, or from a task body, whose thread counts its own references. */
static struct fb_request *add(struct flow_run *r, const char *id, struct act *a,
                              flow_feedback_type type, const char *message, json_t *options,
                              double created, double deadline, json_t *dflt,
                              const char *channel_key)
{
    struct fb_request q = {
        .id = flow__strdup(id),
        .act = a,
        .type = type,
        .message = flow__strdup(message ? message : ""),
        .options = json_incref(options),
        .created = created,
        .deadline = deadline,
        .default_answer = dflt ? json_deep_copy(dflt) : NULL,
        .channel_key = channel_key ? flow__strdup(channel_key) : NULL,
        .gen = gen_of(a),
    };
    flow_err rc = q.id && q.message && (!channel_key || q.channel_key) &&
                          (!dflt || q.default_answer)
                      ? FLOW_OK
                      : FLOW_ENOMEM;
    if (rc == FLOW_OK)
        FLOW__VEC_PUSH(&r->requests, q, rc);
    if (rc != FLOW_OK) {
        flow__free(q.id);
        flow__free(q.message);
        flow__free(q.channel_key);
        json_decref(q.options);
        json_decref(q.default_answer);
        return NULL;
    }
    return &r->requests.items[r->requests.count - 1];
}

/* ---- notifications ------------------------------------------------------ */

/* Run the task's `notify` command with the request as JSON on stdin. Fire
 * and forget: the child is reaped by a double fork's middle process. */
/* [L] Queue the request's notification command: the loop thread starts it
 * after releasing the lock (flow__feedback_notify_spawn), as no process is
 * started and no file opened under the engine lock. */
static void notify(struct flow_run *r, const struct feedback_spec *fs, const struct fb_request *q)
{
    if (!fs || !fs->notify || !fs->notify_argc)
        return;
    json_t *doc = json_pack("{s:s,s:s,s:s,s:s,s:s,s:O?,s:o}", "run", r->id, "request", q->id,
                            "task", act_task(q->act)->name, "type", type_name(q->type), "message",
                            q->message, "options", q->options, "deadline",
                            flow__json_time(q->deadline));
    char *text = doc ? flow_json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    json_t *argv = json_array();
    for (size_t i = 0; argv && i < fs->notify_argc; i++) {
        if (json_array_append_new(argv, json_string(fs->notify[i]))) {
            json_decref(argv);
            argv = NULL;
        }
    }
    json_t *note = text && argv ? json_pack("{s:s,s:s,s:o,s:s}", "run", r->id, "request", q->id,
                                            "argv", argv, "stdin", text)
                                : NULL;
    if (!note)
        json_decref(argv);
    flow__json_free_text(text);
    flow_err rc = note ? FLOW_OK : FLOW_ENOMEM;
    if (note)
        FLOW__VEC_PUSH(&r->engine->notes, note, rc);
    if (rc) {
        json_decref(note);
        flow__log(FLOW_LOG_WARN, "run '%s': out of memory notifying request '%s'", r->id, q->id);
        return;
    }
    flow__engine_wake(r->engine);
}

/* Start one queued notification (its argv and stdin in `note`); the pid,
 * or -1. Without the engine lock. */
static pid_t notify_spawn(json_t *note)
{
    const char *run = json_string_value(json_object_get(note, "run"));
    const char *request = json_string_value(json_object_get(note, "request"));
    const char *text = json_string_value(json_object_get(note, "stdin"));
    json_t *jargv = json_object_get(note, "argv");
    size_t argc = json_array_size(jargv);
    const char **argv = flow__calloc(argc + 1, sizeof(*argv));
    if (!argv)
        return -1;
    for (size_t i = 0; i < argc; i++)
        argv[i] = json_string_value(json_array_get(jargv, i));
    pid_t pid = -1;
    int fds[2] = {-1, -1};
    size_t len = strlen(text);
    if (len > 60000) { /* it must fit the pipe: nothing reads it before the spawn */
        flow__log(FLOW_LOG_WARN, "run '%s': the notification of request '%s' is too large", run,
                  request);
        goto out;
    }
    if (pipe2(fds, O_CLOEXEC) != 0 || write(fds[1], text, len) != (ssize_t)len)
        goto out;
    close(fds[1]);
    fds[1] = -1;
    char path[4096];
    const char *cmd = argv[0];
    if (!strchr(cmd, '/')) {
        const char *env_path = getenv("PATH");
        if (flow__spawn_find(cmd, env_path ? env_path : "/usr/bin:/bin", path, sizeof(path))) {
            flow__log(FLOW_LOG_WARN,
                      "run '%s': notification of request '%s': command not found: '%s'", run,
                      request, cmd);
            goto out;
        }
        cmd = path;
    }
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    struct flow__spawn_args sa = {
        .path = cmd,
        .argv = (char *const *)argv,
        .envp = environ,
        .stdin_fd = fds[0] > 2 ? fds[0] : -1,
        .stdout_fd = devnull,
        .stderr_fd = devnull,
    };
    enum flow__spawn_stage stage;
    int errnum;
    pid = devnull > 2 ? flow__spawn(&sa, &stage, &errnum) : -1;
    if (devnull >= 0)
        close(devnull);
    if (pid < 0)
        flow__log(FLOW_LOG_WARN, "run '%s': cannot start the notification of request '%s'", run,
                  request);
out:
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    flow__free(argv);
    return pid;
}

void flow__feedback_notify_spawn(struct flow_engine *e)
{
    if (!e->notes.count)
        return;
    json_t **notes = e->notes.items;
    size_t count = e->notes.count;
    e->notes.items = NULL;
    e->notes.count = e->notes.cap = 0;
    pthread_mutex_unlock(&e->lock);
    pid_t *pids = flow__calloc(count, sizeof(*pids));
    for (size_t i = 0; i < count; i++) {
        pid_t pid = notify_spawn(notes[i]);
        if (pids)
            pids[i] = pid;
        else if (pid > 0) /* nowhere to keep it: wait for it rather than leave a zombie */
            waitpid(pid, NULL, 0);
        json_decref(notes[i]);
    }
    flow__free(notes);
    pthread_mutex_lock(&e->lock);
    for (size_t i = 0; pids && i < count; i++) {
        if (pids[i] <= 0)
            continue;
        flow_err rc = FLOW_OK;
        FLOW__VEC_PUSH(&e->notifiers, pids[i], rc);
        if (rc) /* reaped nowhere else: wait for it now rather than leave a zombie */
            waitpid(pids[i], NULL, 0);
        else
            flow__tree_own(pids[i]); /* the engine reaps it: not a sweep's */
    }
    flow__free(pids);
}

/* ---- asking ------------------------------------------------------------- */

/* The id of a request `a` asks as `given` (NULL or "": TASK-ACTIVATION).
 * A retried activation asks anew: its earlier requests are closed, and the
 * store takes one answer per id (docs/internals/core.md, "Retry"). */
static const char *request_id(const struct act *a, const char *given, char *out, size_t size)
{
    int n = given && *given ? snprintf(out, size, "%s", given)
                            : snprintf(out, size, "%s-%llu", act_task(a)->name,
                                       (unsigned long long)a->id);
    if (gen_of(a) && n >= 0 && (size_t)n < size)
        snprintf(out + n, size - (size_t)n, ".retry%u", (unsigned)gen_of(a));
    return out;
}

static json_t *options_json(const flow_feedback *spec)
{
    if (!spec->options || !spec->option_count)
        return NULL;
    json_t *o = json_array();
    for (size_t i = 0; o && i < spec->option_count; i++)
        json_array_append_new(o, json_string(spec->options[i] ? spec->options[i] : ""));
    return o;
}

flow_err flow__feedback_ask(struct flow_run *r, struct act *a, const flow_feedback *spec,
                            json_t **answer, flow_error *err)
{
    char idbuf[200];
    const char *id = request_id(a, spec->id, idbuf, sizeof(idbuf));
    if (r->parent_act) /* a child run's journal is not kept: nobody could answer it */
        return flow__error(err, FLOW_EUNSUPPORTED,
                           "feedback request '%s': asking people from inside a nested flow is not "
                           "supported yet (ask in the parent flow)",
                           id);
    struct fb_request *q = find(r, id);
    if (q && q->answer) {
        json_t *e = json_object_get(q->answer, "error");
        if (json_is_string(e))
            return flow__error(err, FLOW_ETIMEOUT, "%s", json_string_value(e));
        *answer = q->answer;
        return FLOW_OK;
    }
    if (q)
        return FLOW_EWAITING; /* asked again before the answer: still waiting */
    if ((unsigned)spec->type > FLOW_FEEDBACK_SELECTION)
        return flow__error(err, FLOW_EINVAL, "unknown feedback type %d", (int)spec->type);
    json_t *options = options_json(spec);
    if (spec->type == FLOW_FEEDBACK_SELECTION && !options) {
        return flow__error(err, FLOW_EINVAL, "feedback request '%s' is a selection without "
                                             "options",
                           id);
    }
    if (spec->default_answer) {
        json_t *checked = NULL;
        char *bad = flow__feedback_check(spec->type, options, spec->default_answer, "timeout", 0,
                                         &checked);
        json_decref(checked);
        if (bad) {
            json_decref(options);
            flow__error(err, FLOW_EINVAL, "the default answer of feedback request '%s': %s", id,
                        bad);
            flow__free(bad);
            return FLOW_EINVAL;
        }
    }
    double now = r->engine->clock;
    double deadline = spec->timeout > 0 ? now + spec->timeout : 0;
    q = add(r, id, a, spec->type, spec->message, options, now, deadline, spec->default_answer,
            spec->channel_key);
    json_decref(options);
    if (!q)
        return flow__error(err, FLOW_ENOMEM, "out of memory opening feedback request '%s'", id);
    if (!r->replaying) {
        flow__run_journal(r, JREC_FEEDBACK_OPENED, a,
                          json_pack("{s:s,s:s,s:s,s:O?,s:f,s:f,s:O?,s:s?}", "request", q->id,
                                    "type", type_name(q->type), "message", q->message, "options",
                                    q->options, "created", q->created, "deadline", q->deadline,
                                    "default", q->default_answer, "channel_key",
                                    q->channel_key));
        const struct task_ext *x = act_task(a)->ext;
        notify(r, x ? x->feedback : NULL, q);
    }
    return FLOW_EWAITING;
}

/* ---- parking and answers ------------------------------------------------ */

static void arm(struct flow_run *r, struct act *a, const struct fb_request *q)
{
    if (q->deadline > 0 && !q->answer)
        flow__engine_timer(r->engine, TIMER_FEEDBACK, a, q->deadline - r->engine->clock);
}

/* [L] Park or, when the answer is in already, let it go on. */
static void park(struct flow_run *r, struct act *a, struct fb_request *q)
{
    struct act_dyn *dy = flow__act_dyn(r, a);
    if (dy) /* a remote attempt's next run is a new round (core/remote.c) */
        dy->waits++;
    a->status = FLOW_ACT_PENDING;
    if (q && q->answer) { /* it came while the task still ran */
        flow__engine_enqueue(r->engine, a);
        return;
    }
    a->flags |= ACT_PARKED;
    r->parked++;
    if (q)
        arm(r, a, q);
}

void flow__feedback_park(struct flow_run *r, struct act *a, const char *request)
{
    struct fb_request *q = find(r, request);
    flow__run_journal(r, JREC_ACT_WAITING, a, json_pack("{s:s}", "request", request));
    if (a->attempt > 0)
        a->attempt--; /* the answer runs it again as the same attempt */
    park(r, a, q);
    flow__run_check_end(r);
}

static void unpark(struct flow_run *r, struct act *a)
{
    if (!(a->flags & ACT_PARKED))
        return;
    a->flags &= (uint8_t)~ACT_PARKED;
    if (r->parked > 0)
        r->parked--;
    if (r->stopping)
        flow__run_cancel_act(r, a, "the run stopped while it waited for an answer");
    else
        flow__engine_enqueue(r->engine, a);
}

void flow__feedback_stop(struct flow_run *r)
{
    for (size_t i = 0; r->parked > 0 && i < r->act_count; i++) {
        struct act *a = flow__act_at(r, i);
        if (a->flags & ACT_PARKED)
            unpark(r, a); /* the run is stopping: cancelled */
    }
}

flow_err flow__feedback_answer(struct flow_run *r, const char *id, json_t *answer,
                               flow_error *err)
{
    struct fb_request *q = find(r, id);
    if (!q)
        return flow__error(err, FLOW_ENOTFOUND, "run '%s' has no feedback request '%s'", r->id,
                           id);
    if (q->answer)
        return flow__error(err, FLOW_ESTATE, "feedback request '%s' of run '%s' is answered "
                                             "already",
                           id, r->id);
    q->answer = json_incref(answer);
    struct act *a = q->act;
    flow__run_journal(r, JREC_FEEDBACK_ANSWERED, a,
                      json_pack("{s:s,s:O}", "request", id, "answer", answer));
    if (r->status == FLOW_RUN_RUNNING || r->replaying)
        unpark(r, a);
    return FLOW_OK;
}

void flow__feedback_timer(struct flow_run *r, struct act *a)
{
    flow__engine_tick(r->engine);
    struct fb_request *q = find_act(r, a);
    if (!q || q->answer || q->claiming || !(a->flags & ACT_PARKED) || q->deadline <= 0)
        return;
    /* As of the deadline, even when taken later (a resume): the promise
     * was made for that instant. */
    json_t *answer = NULL;
    if (q->default_answer) {
        char *bad = flow__feedback_check(q->type, q->options, q->default_answer, "timeout",
                                         q->deadline, &answer);
        flow__free(bad);
    }
    if (!answer) {
        char why[300];
        snprintf(why, sizeof(why), "no answer to feedback request '%s' within %gs", q->id,
                 q->deadline - q->created);
        answer = json_pack("{s:s,s:s,s:o}", "error", why, "by", "timeout", "at",
                           flow__json_time(q->deadline));
    }
    if (!answer)
        return;
    /* A person may have answered in the store an instant before the
     * deadline, and the runner not heard of it yet: the store decides. */
    flow_err rc = r->store ? flow__journal_durable_claim(&r->journal, q->id, answer)
                           : FLOW_EUNSUPPORTED;
    if (rc == FLOW_OK) {
        q->claiming = true;
        r->claiming++;
    } else if (rc == FLOW_EUNSUPPORTED) {
        flow__feedback_answer(r, q->id, answer, NULL);
    } /* else the journal failed: the run stops (hook_failed) */
    json_decref(answer);
}

void flow__feedback_claimed(void *udata, const char *request, json_t *answer)
{
    struct flow_run *r = udata;
    struct flow_engine *e = r->engine;
    pthread_mutex_lock(&e->lock);
    flow__engine_tick(e);
    struct fb_request *q = find(r, request);
    if (q && q->claiming) {
        q->claiming = false;
        if (r->claiming > 0)
            r->claiming--;
    }
    /* A copy: the committer thread drops its own references to `answer`
     * after this call, while the run keeps and journals this one. */
    json_t *mine = q && !q->answer ? json_deep_copy(answer) : NULL;
    if (mine)
        flow__feedback_answer(r, request, mine, NULL);
    json_decref(mine);
    flow__run_check_end(r);
    pthread_mutex_unlock(&e->lock);
}

void flow__feedback_control(struct flow_run *r, const char *arg)
{
    json_t *msg = arg ? json_loads(arg, 0, NULL) : NULL;
    const char *id = json_string_value(json_object_get(msg, "request"));
    json_t *answer = json_object_get(msg, "answer");
    struct fb_request *q = id ? find(r, id) : NULL;
    if (!q || !answer || q->retired) {
        flow__log(FLOW_LOG_WARN, "run '%s': an answer to an unknown request was dropped: %.200s",
                  r->id, arg ? arg : "");
    } else if (!q->answer) {
        flow__feedback_answer(r, id, answer, NULL);
    }
    /* else: the store took it, and so did we already (read from the store
     * at a resume, or claimed by our timeout and refused in its favour) */
    json_decref(msg);
}

/* ---- the built-in feedback task ----------------------------------------- */

void flow__feedback_task(struct flow_run *r, struct act *a, struct flow_ctx *ctx)
{
    const struct flow_task *t = act_task(a);
    const struct feedback_spec *fs = t->ext ? t->ext->feedback : NULL;
    if (!fs) {
        ctx->rc = 1;
        ctx->error = flow__strdup("not a feedback task");
        return;
    }
    char *message = NULL;
    flow_error err;
    if (fs->message && flow__run_render_string(r, a, fs->message, &message, &err) != FLOW_OK) {
        ctx->rc = 1;
        ctx->error = flow__asprintf("message: %s", err.message);
        return;
    }
    const char **options = NULL;
    size_t count = json_array_size(fs->options);
    if (count && !(options = flow__calloc(count, sizeof(*options)))) {
        flow__free(message);
        ctx->rc = 1;
        ctx->error = flow__strdup("out of memory");
        return;
    }
    for (size_t i = 0; i < count; i++)
        options[i] = json_string_value(json_array_get(fs->options, i));
    flow_feedback spec = {
        .type = fs->type,
        .message = message ? message : fs->message_src,
        .options = options,
        .option_count = count,
        .timeout = fs->timeout,
        .default_answer = fs->default_answer,
        .channel_key = fs->channel_key,
        .id = fs->id,
    };
    json_t *answer = NULL;
    flow__error_clear(&err);
    flow_err rc = flow__feedback_ask(r, a, &spec, &answer, &err);
    flow__free(options);
    flow__free(message);
    if (rc == FLOW_EWAITING) {
        char idbuf[200];
        ctx->waiting = flow__strdup(request_id(a, fs->id, idbuf, sizeof(idbuf)));
        ctx->rc = 0;
        return;
    }
    if (rc != FLOW_OK) {
        ctx->rc = 1;
        ctx->error = flow__strdup(err.message);
        return;
    }
    ctx->output = json_incref(answer);
    ctx->rc = 0;
    if (fs->channel_key) {
        if (!ctx->writes)
            ctx->writes = json_object();
        if (ctx->writes)
            json_object_set(ctx->writes, fs->channel_key, flow__feedback_value(answer));
    }
}

/* ---- replay ------------------------------------------------------------- */

flow_err flow__feedback_replay(struct flow_run *r, struct act *a, const struct flow__jrec *rec,
                               flow_error *err)
{
    json_t *p = rec->payload;
    const char *id = json_string_value(json_object_get(p, "request"));
    if (!id)
        return flow__error(err, FLOW_EPARSE, "a feedback record of run '%s' has no request id",
                           r->id);
    struct fb_request *q = find(r, id);
    switch (rec->type) {
    case JREC_FEEDBACK_OPENED: {
        if (q)
            return FLOW_OK;
        json_t *options = json_object_get(p, "options");
        q = add(r, id, a, type_of(json_string_value(json_object_get(p, "type"))),
                json_string_value(json_object_get(p, "message")),
                json_is_array(options) ? options : NULL,
                json_number_value(json_object_get(p, "created")),
                json_number_value(json_object_get(p, "deadline")), json_object_get(p, "default"),
                json_string_value(json_object_get(p, "channel_key")));
        return q ? FLOW_OK : flow__error(err, FLOW_ENOMEM, "out of memory");
    }
    case JREC_ACT_WAITING:
        if (a->status == FLOW_ACT_RUNNING && r->running > 0)
            r->running--;
        if (a->dyn)
            a->dyn->streamed = 0; /* the next round streams anew */
        a->attempt = rec->attempt ? rec->attempt - 1u : 0;
        park(r, a, q);
        return FLOW_OK;
    case JREC_FEEDBACK_ANSWERED:
        if (!q)
            return flow__error(err, FLOW_EPARSE, "run '%s' answers request '%s' it never opened",
                               r->id, id);
        if (!q->answer)
            flow__feedback_answer(r, id, json_object_get(p, "answer"), NULL);
        return FLOW_OK;
    default:
        return FLOW_OK;
    }
}

void flow__feedback_resume(struct flow_run *r)
{
    for (size_t i = 0; i < r->requests.count; i++) {
        struct fb_request *q = &r->requests.items[i];
        /* Taken by the store, not yet journaled (a crash between the two,
         * or the answerer found the run busy): it is the answer. */
        if (q->retired)
            continue;
        json_t *claimed = q->answer ? NULL : json_object_get(r->claimed, q->id);
        if (claimed)
            flow__feedback_answer(r, q->id, claimed, NULL);
        if (q->answer || !(q->act->flags & ACT_PARKED))
            continue;
        if (q->deadline > 0 && q->deadline <= r->engine->clock)
            flow__feedback_timer(r, q->act); /* it ran out while nobody ran the flow */
        else
            arm(r, q->act, q);
    }
}

bool flow__feedback_only_people(struct flow_run *r)
{
    if (!r->parked || r->running || r->claiming)
        return false; /* a claim's answer is on its way */
    if (r->unfinished == r->parked)
        return true; /* every unfinished activation is parked */
    /* Newest first: ready work, when there is some, is usually recent. */
    for (size_t i = r->act_count; i-- > 0;) {
        const struct act *a = flow__act_at(r, i);
        if (a->status == FLOW_ACT_PENDING && !(a->flags & ACT_PARKED))
            return false; /* queued, held, or waiting to retry */
        if (a->status == FLOW_ACT_RUNNING) {
            const struct flow_task *t = act_task(a);
            bool foreach_parent = t->ext && t->ext->foreach && !(a->dyn && a->dyn->parent);
            if (!foreach_parent)
                return false; /* a nested flow in progress */
        }
    }
    return true;
}

char *flow__feedback_open_ids(struct flow_run *r)
{
    struct flow__buf b;
    flow__buf_init(&b, 1 << 20);
    for (size_t i = 0; i < r->requests.count; i++) {
        if (r->requests.items[i].answer || r->requests.items[i].retired)
            continue;
        if ((b.len && flow__buf_appends(&b, ", ") != FLOW_OK) ||
            flow__buf_appends(&b, r->requests.items[i].id) != FLOW_OK) {
            flow__buf_cleanup(&b);
            return NULL;
        }
    }
    char *out = flow__strdup(b.len ? flow__buf_str(&b) : "");
    flow__buf_cleanup(&b);
    return out;
}

/* ---- remote C functions ------------------------------------------------- */

json_t *flow__feedback_answers_of(struct flow_run *r, const struct act *a)
{
    json_t *all = NULL;
    for (size_t i = 0; i < r->requests.count; i++) {
        const struct fb_request *q = &r->requests.items[i];
        if (q->act != a || !q->answer || q->gen != gen_of(a))
            continue;
        if (!all && !(all = json_object()))
            return NULL;
        /* The worker asks by the id it knows: without a retry's suffix. */
        const char *dot = q->gen ? strrchr(q->id, '.') : NULL;
        if (dot)
            json_object_setn(all, q->id, (size_t)(dot - q->id), q->answer);
        else
            json_object_set(all, q->id, q->answer);
    }
    return all;
}

const char *flow__feedback_remote_ask(struct flow_run *r, struct act *a, json_t *req, char **why)
{
    json_t *opts = json_object_get(req, "options");
    size_t n = json_is_array(opts) ? json_array_size(opts) : 0;
    const char **options = n ? flow__calloc(n, sizeof(*options)) : NULL;
    if (n && !options) {
        *why = flow__strdup("out of memory opening a feedback request");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *o = json_string_value(json_array_get(opts, i));
        options[i] = o ? o : "";
    }
    json_t *type = json_object_get(req, "type");
    flow_feedback spec = {
        .type = json_is_integer(type) ? (flow_feedback_type)json_integer_value(type)
                                      : FLOW_FEEDBACK_APPROVAL,
        .message = json_string_value(json_object_get(req, "message")),
        .options = options,
        .option_count = n,
        .timeout = json_number_value(json_object_get(req, "timeout")),
        .default_answer = json_is_null(json_object_get(req, "default"))
                              ? NULL
                              : json_object_get(req, "default"),
        .channel_key = json_string_value(json_object_get(req, "channel_key")),
        .id = json_string_value(json_object_get(req, "id")),
    };
    if (json_is_integer(type) && (json_integer_value(type) < 0 || json_integer_value(type) > 2))
        spec.type = (flow_feedback_type)99; /* refused by the ask below, naming it */
    flow_error err;
    flow__error_clear(&err);
    json_t *got = NULL;
    flow_err rc = flow__feedback_ask(r, a, &spec, &got, &err);
    flow__free(options);
    char idbuf[200];
    struct fb_request *q = spec.id ? find(r, request_id(a, spec.id, idbuf, sizeof(idbuf))) : NULL;
    if (rc != FLOW_OK && rc != FLOW_EWAITING) {
        *why = flow__strdup(err.message[0] ? err.message : "cannot open the feedback request");
        return NULL;
    }
    if (!q || q->act != a) {
        *why = flow__asprintf("feedback request '%s' was opened by another activation (task "
                              "'%s'); a request id names one activation's question",
                              spec.id ? spec.id : "?", q ? act_task(q->act)->name : "?");
        return NULL;
    }
    return q->id;
}

/* ---- the public C call -------------------------------------------------- */

/* On a worker: the answer came with the activation, or the request goes
 * back with the completion and the runner opens it (the same attempt runs
 * again, as a new round, once it is answered). */
static flow_err remote_request(flow_ctx *ctx, const flow_feedback *req, json_t **answer)
{
    struct flow__rctx *rc = ctx->remote;
    char idbuf[200];
    const char *id = req->id;
    if (!id || !*id) {
        snprintf(idbuf, sizeof(idbuf), "%s-%llu", rc->task, (unsigned long long)rc->act);
        id = idbuf;
    }
    json_t *known = json_object_get(rc->answers, id);
    if (known) {
        json_t *e = json_object_get(known, "error");
        if (json_is_string(e)) {
            flow_ctx_fail(ctx, "%s", json_string_value(e));
            return FLOW_ETIMEOUT;
        }
        json_t *got = json_deep_copy(known);
        if (!got)
            return FLOW_ENOMEM;
        if (req->channel_key)
            flow_ctx_set_state(ctx, req->channel_key, flow__feedback_value(got));
        *answer = got;
        return FLOW_OK;
    }
    if (rc->waiting) /* asked before: the first request is the one that waits */
        return FLOW_EWAITING;
    json_t *options = options_json(req);
    /* A copy: the caller's default may be shared with its other threads. */
    json_t *dflt = req->default_answer ? json_deep_copy(req->default_answer) : NULL;
    rc->waiting = json_pack("{s:s,s:i,s:s,s:o*,s:f,s:o*,s:s*}", "id", id, "type", (int)req->type,
                            "message", req->message ? req->message : "", "options", options,
                            "timeout", req->timeout, "default", dflt, "channel_key",
                            req->channel_key);
    return rc->waiting ? FLOW_EWAITING : FLOW_ENOMEM;
}

flow_err flow_ctx_request_feedback(flow_ctx *ctx, const flow_feedback *req, json_t **answer)
{
    if (!ctx || !req || !answer)
        return FLOW_EINVAL;
    *answer = NULL;
    if (ctx->remote)
        return remote_request(ctx, req, answer);
    struct flow_engine *e = ctx->engine;
    json_t *got = NULL;
    flow_error err;
    flow__error_clear(&err);
    pthread_mutex_lock(&e->lock);
    if (ctx->detached) { /* abandoned: the attempt is over, nobody waits for an answer */
        pthread_mutex_unlock(&e->lock);
        return FLOW_ECANCELLED;
    }
    flow__engine_tick(e);
    flow_err rc = flow__feedback_ask(ctx->run, ctx->act, req, &got, &err);
    if (rc == FLOW_OK && !(got = json_deep_copy(got))) /* the body's own: it counts
                                                         * references without the lock */
        rc = flow__error(&err, FLOW_ENOMEM, "out of memory reading an answer");
    if (rc == FLOW_EWAITING) {
        char idbuf[200];
        flow__free(ctx->waiting);
        ctx->waiting = flow__strdup(request_id(ctx->act, req->id, idbuf, sizeof(idbuf)));
    }
    pthread_mutex_unlock(&e->lock);
    if (rc == FLOW_OK && req->channel_key)
        flow_ctx_set_state(ctx, req->channel_key, flow__feedback_value(got));
    if (rc != FLOW_OK && rc != FLOW_EWAITING && err.message[0])
        flow_ctx_fail(ctx, "%s", err.message);
    *answer = got;
    return rc;
}
