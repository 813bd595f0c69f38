/* load_policy.c -- a task's policy in a file (timeout, retries, backoff,
 * on_error, executor, priority, max_activations, output, env, cwd) and the
 * flow's `defaults`, merged key by key when applied to a task. */
#include "util/compat.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "def/load_int.h"
#include "util/alloc.h"
#include "util/error.h"

bool flow__ld_check_worker_name(struct loader *L, const char *s, struct flow__yaml_pos pos,
                                const char *what)
{
    size_t n = strlen(s);
    bool ok = n > 0 && n <= 100;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)s[i]) || strchr("_.:-", s[i]);
    if (!ok)
        flow__ld_report(L, pos,
                        "%s must be 1 to 100 letters, digits and _ . : - ('%s' is not)", what, s);
    return ok;
}

static const char *const policy_keys[] = {
    "timeout",         "retries", "backoff", "on_error", "executor",   "priority",
    "max_activations", "output",  "env",     "cwd",      "kill_grace", "queue",
};
static const char *const backoff_keys[] = {"delay", "factor", "max_delay", "jitter"};
static const char *const on_error_names[] = {"fail", "continue", "ignore"};
static const flow_on_error on_error_values[] = {FLOW_ON_ERROR_FAIL, FLOW_ON_ERROR_CONTINUE,
                                                FLOW_ON_ERROR_IGNORE};
static const char *const executor_names[] = {"inline", "thread", "process", "remote"};
static const flow_executor executor_values[] = {FLOW_EXEC_INLINE, FLOW_EXEC_THREAD,
                                                FLOW_EXEC_PROCESS, FLOW_EXEC_REMOTE};
static const char *const output_names[] = {"auto", "json", "text", "lines"};
static const flow_output_mode output_values[] = {FLOW_OUTPUT_AUTO, FLOW_OUTPUT_JSON,
                                                 FLOW_OUTPUT_TEXT, FLOW_OUTPUT_LINES};

/* Policies                                                                 */

void flow__ld_policy_cleanup(struct policy *p)
{
    json_decref(p->env);
    flow__free(p->cwd);
    memset(p, 0, sizeof(*p));
}

static void parse_backoff(struct loader *L, const struct val *x, const char *owner,
                          struct policy *p)
{
    char what[200];
    snprintf(what, sizeof(what), "'backoff'%s", owner);
    if (!json_is_object(x->v)) {
        flow__ld_report(L, x->pos,
                        "%s must be a mapping {delay, factor, max_delay, jitter}, not %s", what,
                        flow__ld_type_name(x->v));
        return;
    }
    char inner[240];
    snprintf(inner, sizeof(inner), " in 'backoff'%s", owner);
    bool ok = true;
    const char *k;
    json_t *v;
    json_object_foreach(x->v, k, v)
    {
        struct val kid = flow__ld_member(L, x->v, k);
        char kwhat[300];
        snprintf(kwhat, sizeof(kwhat), "'%s'%s", k, inner);
        if (strcmp(k, "delay") == 0) {
            ok = flow__ld_get_duration(L, &kid, kwhat, &p->backoff.delay) && ok;
            p->backoff_set |= B_DELAY;
        } else if (strcmp(k, "max_delay") == 0) {
            ok = flow__ld_get_duration(L, &kid, kwhat, &p->backoff.max_delay) && ok;
            p->backoff_set |= B_MAX_DELAY;
        } else if (strcmp(k, "factor") == 0) {
            if (!json_is_number(kid.v) || json_number_value(kid.v) < 1) {
                flow__ld_report(L, kid.pos, "%s must be a number of at least 1, not %s", kwhat,
                                json_is_number(kid.v) ? (kid.raw ? kid.raw : "that")
                                                      : flow__ld_type_name(kid.v));
                ok = false;
            } else {
                p->backoff.factor = json_number_value(kid.v);
                p->backoff_set |= B_FACTOR;
            }
        } else if (strcmp(k, "jitter") == 0) {
            ok = flow__ld_get_bool(L, &kid, kwhat, &p->backoff.jitter) && ok;
            p->backoff_set |= B_JITTER;
        } else {
            char hint[80];
            flow__ld_suggestion(hint, sizeof(hint),
                                flow__ld_closest(k, backoff_keys, FLOW__ARRAY_LEN(backoff_keys)));
            flow__ld_report(L, flow__yaml_key_pos(L->doc, x->v, k), "unknown key '%s'%s%s", k,
                            inner, hint);
            ok = false;
        }
    }
    if (ok)
        p->set |= P_BACKOFF;
}

static void parse_on_error(struct loader *L, const struct val *x, const char *what,
                           bool in_defaults, const char *task, struct policy *p)
{
    if (json_is_string(x->v)) {
        size_t i;
        const char *s = json_string_value(x->v);
        for (i = 0; i < FLOW__ARRAY_LEN(on_error_names); i++) {
            if (strcmp(s, on_error_names[i]) == 0)
                break;
        }
        if (i < FLOW__ARRAY_LEN(on_error_names)) {
            p->on_error = on_error_values[i];
            p->set |= P_ON_ERROR;
            return;
        }
        if (strcmp(s, "fallback") == 0) {
            flow__ld_report(L, x->pos, "%s: write the fallback task as {fallback: TASK}", what);
            return;
        }
    }
    if (json_is_object(x->v) && json_object_size(x->v) == 1 && json_object_get(x->v, "fallback")) {
        struct val fb = flow__ld_member(L, x->v, "fallback");
        if (in_defaults) {
            flow__ld_report(L, fb.pos, "%s: a fallback task cannot be a default (give it per task)",
                            what);
            return;
        }
        const char *name = NULL;
        char fwhat[300];
        snprintf(fwhat, sizeof(fwhat), "'fallback' in %s", what);
        if (!flow__ld_get_string(L, &fb, fwhat, true, &name))
            return;
        if (L->tasks && !json_object_get(L->tasks, name)) {
            flow__ld_unknown_task(L, fb.pos, name, fwhat);
            return;
        }
        if (task && strcmp(task, name) == 0) {
            flow__ld_report(L, fb.pos, "task '%s' cannot be its own fallback", task);
            return;
        }
        p->on_error = FLOW_ON_ERROR_FALLBACK;
        p->fallback = name;
        p->set |= P_ON_ERROR;
        return;
    }
    if (json_is_string(x->v))
        flow__ld_report(L, x->pos,
                        "%s must be fail, continue, ignore or {fallback: TASK}, not '%s'", what,
                        json_string_value(x->v));
    else
        flow__ld_report(L, x->pos, "%s must be fail, continue, ignore or {fallback: TASK}, not %s",
                        what, flow__ld_type_name(x->v));
}

static void parse_env(struct loader *L, const struct val *x, const char *what, struct policy *p)
{
    if (!json_is_object(x->v)) {
        flow__ld_report(L, x->pos, "%s must be a mapping of NAME: value, not %s", what,
                        flow__ld_type_name(x->v));
        return;
    }
    json_t *env = json_object();
    if (!env) {
        L->nomem = true;
        return;
    }
    bool ok = true;
    const char *k;
    json_t *v;
    json_object_foreach(x->v, k, v)
    {
        struct val kid = flow__ld_member(L, x->v, k);
        if (!flow__valid_env_name(k)) {
            flow__ld_report(
                L, flow__yaml_key_pos(L->doc, x->v, k),
                "invalid environment variable name '%s' in %s (use letters, digits and '_', "
                "not starting with a digit)",
                k, what);
            ok = false;
            continue;
        }
        char buf[64];
        const char *s = flow__ld_scalar_text(&kid, buf, sizeof(buf));
        char kwhat[300];
        snprintf(kwhat, sizeof(kwhat), "'%s' in %s", k, what);
        if (!s) {
            flow__ld_report(L, kid.pos, "%s must be a string, not %s", kwhat,
                            flow__ld_type_name(kid.v));
            ok = false;
            continue;
        }
        L->in_env = true;
        bool good = flow__ld_check_template(L, s, kid.pos, kwhat);
        L->in_env = false;
        if (!good) {
            ok = false;
            continue;
        }
        if (json_object_set_new(env, k, json_string(s)))
            L->nomem = true;
    }
    if (!ok) {
        json_decref(env);
        return;
    }
    json_decref(p->env);
    p->env = env;
    p->set |= P_ENV;
}

/* Parse one policy key into `p`; false when `key` is not a policy key. */
bool flow__ld_parse_policy_key(struct loader *L, const char *key, const struct val *x,
                               const char *owner, bool in_defaults, const char *task,
                               struct policy *p)
{
    if (!IN(key, policy_keys))
        return false; /* before the message words: most keys of a task are not policy keys */
    char what[240];
    flow__ld_concat(what, sizeof(what), "'", key, "'", owner, (char *)NULL);
    size_t i = 0;
    if (strcmp(key, "timeout") == 0) {
        if (flow__ld_get_duration(L, x, what, &p->timeout))
            p->set |= P_TIMEOUT;
    } else if (strcmp(key, "kill_grace") == 0) {
        if (flow__ld_get_duration(L, x, what, &p->kill_grace))
            p->set |= P_KILL_GRACE;
    } else if (strcmp(key, "retries") == 0) {
        if (!flow__ld_get_int(L, x, what, 0, "a non-negative integer", &p->retries))
            ;
        else if (p->retries > FLOW_MAX_RETRIES)
            flow__ld_report(L, x->pos, "%s must be at most %d, not %d", what, FLOW_MAX_RETRIES,
                            p->retries);
        else
            p->set |= P_RETRIES;
    } else if (strcmp(key, "priority") == 0) {
        if (flow__ld_get_int(L, x, what, INT_MIN, "an integer", &p->priority))
            p->set |= P_PRIORITY;
    } else if (strcmp(key, "max_activations") == 0) {
        if (flow__ld_get_int(L, x, what, 1, "a positive integer", &p->max_activations))
            p->set |= P_MAX_ACTIVATIONS;
    } else if (strcmp(key, "backoff") == 0) {
        parse_backoff(L, x, owner, p);
    } else if (strcmp(key, "on_error") == 0) {
        parse_on_error(L, x, what, in_defaults, task, p);
    } else if (strcmp(key, "executor") == 0) {
        if (flow__ld_get_choice(L, x, what, executor_names, FLOW__ARRAY_LEN(executor_names), &i)) {
            const struct unsupported *u =
                flow__ld_find_unsupported(SCOPE_TASK, key, executor_names[i]);
            if (u) {
                flow__ld_report(L, x->pos, "%s, in %s", u->message, what);
            } else {
                p->executor = executor_values[i];
                p->set |= P_EXECUTOR;
            }
        }
    } else if (strcmp(key, "output") == 0) {
        if (flow__ld_get_choice(L, x, what, output_names, FLOW__ARRAY_LEN(output_names), &i)) {
            p->output = output_values[i];
            p->set |= P_OUTPUT;
        }
    } else if (strcmp(key, "env") == 0) {
        parse_env(L, x, what, p);
    } else if (strcmp(key, "queue") == 0) {
        const char *s = NULL;
        if (flow__ld_get_string(L, x, what, true, &s) && flow__ld_check_worker_name(L, s, x->pos, what)) {
            p->queue = s;
            p->set |= P_QUEUE;
        }
    } else if (strcmp(key, "cwd") == 0) {
        const char *s = NULL;
        if (flow__ld_get_string(L, x, what, true, &s) &&
            flow__ld_check_template(L, s, x->pos, what)) {
            char *cwd = flow__ld_resolve_cwd(L, s, x->pos, what);
            if (cwd) {
                flow__free(p->cwd);
                p->cwd = cwd;
                p->set |= P_CWD;
            }
        }
    } else {
        return false;
    }
    return true;
}

void flow__ld_parse_defaults(struct loader *L, const struct val *x)
{
    if (!json_is_object(x->v)) {
        flow__ld_report(L, x->pos, "'defaults' must be a mapping of task policy keys, not %s",
                        flow__ld_type_name(x->v));
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(x->v, k, v)
    {
        struct val kid = flow__ld_member(L, x->v, k);
        if (flow__ld_parse_policy_key(L, k, &kid, " in 'defaults'", true, NULL, &L->defaults))
            continue;
        struct flow__yaml_pos kpos = flow__yaml_key_pos(L->doc, x->v, k);
        if (flow__ld_is_task_key(k)) {
            flow__ld_report(
                L, kpos,
                "'%s' cannot be set in 'defaults', which holds timeout, retries, backoff, "
                "on_error, executor, priority, max_activations, output, env, cwd, "
                "kill_grace and queue",
                k);
            continue;
        }
        char hint[80];
        flow__ld_suggestion(hint, sizeof(hint),
                            flow__ld_closest(k, policy_keys, FLOW__ARRAY_LEN(policy_keys)));
        flow__ld_report(L, kpos, "unknown key '%s' in 'defaults'%s", k, hint);
    }
}

/* Apply a task's policy merged over the defaults. Command-only defaults (env,
 * cwd, output, kill_grace) go only to command tasks. */
void flow__ld_apply_policy(struct loader *L, flow_task *t, const struct policy *tp, bool is_command,
                           struct flow__yaml_pos pos)
{
    const struct policy *dp = &L->defaults;
    unsigned cmd_only = P_ENV | P_CWD | P_OUTPUT | P_KILL_GRACE;
    unsigned from_defaults = dp->set & ~tp->set & (is_command ? ~0u : ~cmd_only);
    char what[200];
    flow__ld_concat(what, sizeof(what), "task '", flow_task_name(t), "'", (char *)NULL);
#define PICK(bit) ((tp->set & (bit)) ? tp : (from_defaults & (bit)) ? dp : NULL)
    const struct policy *s;
    flow_err rc;
    if ((s = PICK(P_TIMEOUT)) && (rc = flow_task_set_timeout(t, s->timeout)))
        flow__ld_core_failed(L, pos, rc, NULL, what);
    if ((s = PICK(P_KILL_GRACE)) && (rc = flow_task_set_kill_grace(t, s->kill_grace)))
        flow__ld_core_failed(L, pos, rc, NULL, what);
    if ((s = PICK(P_RETRIES)) && (rc = flow_task_set_retries(t, s->retries)))
        flow__ld_core_failed(L, pos, rc, NULL, what);
    if ((s = PICK(P_PRIORITY)) && (rc = flow_task_set_priority(t, s->priority)))
        flow__ld_core_failed(L, pos, rc, NULL, what);
    if ((s = PICK(P_MAX_ACTIVATIONS)) &&
        (rc = flow_task_set_max_activations(t, s->max_activations)))
        flow__ld_core_failed(L, pos, rc, NULL, what);
    /* `executor: remote` from `defaults` goes to what a worker can run
     * (commands, `fn` functions); a task with nothing to run there -- no
     * body, a nested flow, a question for a person -- stays with the runner,
     * as a join of remote branches usually is. */
    if ((s = PICK(P_EXECUTOR)) && !(s == dp && s->executor == FLOW_EXEC_REMOTE && !is_command &&
                                     !flow__task_runs_remote_fn(t)) &&
        (rc = flow_task_set_executor(t, s->executor)))
        flow__ld_core_failed(L, pos, rc, NULL, what);
    /* A queue from `defaults` goes to the remote tasks; a task's own is
     * checked against its executor (graph.c). */
    if ((s = PICK(P_QUEUE)) && (s == tp || t->policy->executor == FLOW_EXEC_REMOTE) &&
        (rc = flow_task_set_queue(t, s->queue)))
        flow__ld_core_failed(L, pos, rc, NULL, what);
    if ((s = PICK(P_OUTPUT)) && (rc = flow_task_set_output_mode(t, s->output)))
        flow__ld_core_failed(L, pos, rc, NULL, what);
    if ((tp->set | from_defaults) & P_BACKOFF) {
        /* Field by field: the task's fields over the defaults' over the built-in. */
        flow_backoff b = {.delay = 1, .factor = 2, .max_delay = 300, .jitter = false};
        const struct policy *layers[2] = {(from_defaults & P_BACKOFF) ? dp : NULL,
                                          (tp->set & P_BACKOFF) ? tp : NULL};
        for (size_t i = 0; i < 2; i++) {
            const struct policy *l = layers[i];
            if (!l)
                continue;
            if (l->backoff_set & B_DELAY)
                b.delay = l->backoff.delay;
            if (l->backoff_set & B_FACTOR)
                b.factor = l->backoff.factor;
            if (l->backoff_set & B_MAX_DELAY)
                b.max_delay = l->backoff.max_delay;
            if (l->backoff_set & B_JITTER)
                b.jitter = l->backoff.jitter;
        }
        if ((rc = flow_task_set_backoff(t, &b)))
            flow__ld_core_failed(L, pos, rc, NULL, what);
    }
    if ((s = PICK(P_ON_ERROR))) {
        if (s->on_error == FLOW_ON_ERROR_FALLBACK) {
            flow_task *fb = flow_find_task(L->f, s->fallback);
            if (fb && (rc = flow_task_set_fallback(t, fb)))
                flow__ld_core_failed(L, pos, rc, NULL, what);
        } else if ((rc = flow_task_set_on_error(t, s->on_error))) {
            flow__ld_core_failed(L, pos, rc, NULL, what);
        }
    }
    if ((s = PICK(P_CWD))) {
        flow_error e;
        flow__error_clear(&e);
        if ((rc = flow_task_set_cwd(t, s->cwd, &e)))
            flow__ld_core_failed(L, pos, rc, &e, what);
    }
    /* env: the defaults' variables the task does not set, then the task's. */
    for (int layer = 0; layer < 2; layer++) {
        json_t *env = layer == 0 ? ((dp->set & P_ENV) && is_command ? dp->env : NULL)
                                 : ((tp->set & P_ENV) ? tp->env : NULL);
        const char *k;
        json_t *v;
        json_object_foreach(env, k, v)
        {
            if (layer == 0 && tp->env && json_object_get(tp->env, k))
                continue;
            flow_error e;
            flow__error_clear(&e);
            if ((rc = flow_task_set_env(t, k, json_string_value(v), &e)))
                flow__ld_core_failed(L, pos, rc, &e, what);
        }
    }
#undef PICK
}
