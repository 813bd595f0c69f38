/* progress.c -- live progress of `flow run` on stderr (see progress.h): the observer
 * queues lines and counts; the main thread prints them and redraws the bar.
 * Lock order: only progress.mu, never held while writing to stderr. */
#include "progress.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "color.h"
#include "follow.h"

#define BAR_CELLS 20
#define QUEUE_MAX (8u << 20) /* bytes of lines kept while stderr is slow */
#define LINE_MAX_LEN 4096   /* one event line, truncated beyond */

/* An activation whose attempt is running. */
struct running {
    uint64_t act;
    char *task;     /* owned: the task, or a foreach element's "task[i]" */
    double started; /* epoch seconds of the attempt's start */
};

struct progress {
    pthread_mutex_t mu;
    bool tty;
    bool color;      /* colour the event words and message prefixes */
    size_t task_count;

    /* Guarded by mu. */
    size_t done;     /* activations that ended (completed, failed, skipped, cancelled) */
    size_t failed;   /* activations that failed */
    uint64_t max_act; /* highest activation id seen: activations known so far */
    struct running *running;
    size_t running_count;
    size_t running_cap;
    char *queue; /* lines to print, each ending in '\n' */
    size_t queue_len;
    size_t queue_cap;
    size_t dropped; /* lines dropped because the queue was full */
    bool dirty;     /* the bar needs a redraw */
    double last_event; /* cli_now() of the last task event */

    /* Main thread only. */
    bool bar_shown;
    bool gone; /* stderr has no reader any more (EPIPE) or is closed (EBADF) */
};

struct progress *progress_new(bool tty, size_t task_count)
{
    struct progress *p = cli_malloc(sizeof(*p));

    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    p->tty = tty;
    p->color = cli_color_on(STDERR_FILENO);
    p->task_count = task_count;
    p->dirty = true;
    p->last_event = cli_now();
    return p;
}

void progress_free(struct progress *p)
{
    size_t i;

    if (!p) {
        return;
    }
    for (i = 0; i < p->running_count; i++) {
        free(p->running[i].task);
    }
    free(p->running);
    free(p->queue);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

char *progress_one_line(char *out, size_t cap, const char *s)
{
    size_t n = 0;

    for (; s && *s && n + 1 < cap; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '\n') {
            /* Collapse "\r\n" and runs of blank lines into one separator. */
            if (n > 0 && s[1] != '\0' && s[1] != '\n' && n + 4 < cap) {
                while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\t')) {
                    n--;
                }
                memcpy(out + n, " | ", 3);
                n += 3;
            }
        } else if (c == '\r') {
            continue;
        } else if (c < 0x20 || c == 0x7f) {
            out[n++] = ' ';
        } else {
            out[n++] = (char)c;
        }
    }
    while (n > 0 && out[n - 1] == ' ') {
        n--;
    }
    out[n] = '\0';
    return out;
}

/* ------------------------------------------------------------------------ */
/* Observer side (engine thread; mu held)                                    */

static void queue_line(struct progress *p, const char *line)
{
    size_t len = strlen(line);

    if (p->queue_len + len + 1 > QUEUE_MAX) {
        p->dropped++;
        return;
    }
    if (p->queue_len + len + 1 > p->queue_cap) {
        size_t cap = p->queue_cap ? p->queue_cap : 4096;

        while (cap < p->queue_len + len + 1) {
            cap *= 2;
        }
        p->queue = cli_realloc(p->queue, cap);
        p->queue_cap = cap;
    }
    memcpy(p->queue + p->queue_len, line, len);
    p->queue_len += len;
    p->queue[p->queue_len++] = '\n';
}

static struct running *find_running(struct progress *p, uint64_t act)
{
    size_t i;

    for (i = 0; i < p->running_count; i++) {
        if (p->running[i].act == act) {
            return &p->running[i];
        }
    }
    return NULL;
}

static void add_running(struct progress *p, const flow_event *ev)
{
    struct running *r = find_running(p, ev->activation);
    char name[256];

    if (r) {
        r->started = ev->time;
        return;
    }
    if (p->running_count == p->running_cap) {
        p->running_cap = p->running_cap ? p->running_cap * 2 : 16;
        p->running = cli_realloc(p->running, p->running_cap * sizeof(*p->running));
    }
    r = &p->running[p->running_count++];
    r->act = ev->activation;
    r->task = cli_strdup(cli_act_label(name, sizeof(name), ev->task, ev->index, NULL, false));
    r->started = ev->time;
}

/* Remove the activation from the running set; returns its start time or 0. */
static double remove_running(struct progress *p, uint64_t act)
{
    struct running *r = find_running(p, act);
    double started;
    size_t i;

    if (!r) {
        return 0;
    }
    started = r->started;
    free(r->task);
    i = (size_t)(r - p->running);
    memmove(r, r + 1, (p->running_count - i - 1) * sizeof(*r));
    p->running_count--;
    return started;
}

/* "HH:MM:SS.mmm" in local time. */
static void format_clock(char *out, size_t cap, double t)
{
    time_t secs;
    int ms;
    struct tm tm;

    if (!(t >= 0 && t < 253402300800.0)) { /* NaN, or no calendar time */
        snprintf(out, cap, "--:--:--.---");
        return;
    }
    secs = (time_t)t;
    ms = (int)((t - (double)secs) * 1000.0);
    if (ms < 0 || ms > 999) {
        ms = 0;
    }
    memset(&tm, 0, sizeof(tm));
    localtime_r(&secs, &tm);
    snprintf(out, cap, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

/* "HH:MM:SS.mmm WORD     " -- the word padded to 9 columns, coloured. */
static size_t line_head(const struct progress *p, char *out, size_t cap, const char *clock,
                        const char *word)
{
    char padded[64];
    int n = snprintf(out, cap, "%s %s", clock,
                     cli_color_pad(padded, sizeof(padded), p->color, word, word, 9));

    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

void progress_on_event(const flow_event *ev, void *udata)
{
    struct progress *p = udata;
    char clock[32];
    char err[LINE_MAX_LEN - 1024]; /* leaves room in `line` for the rest */
    char line[LINE_MAX_LEN];
    char task[512];
    bool permanent = false; /* a line worth keeping above the bar */
    double started;
    size_t n;

    line[0] = '\0';
    format_clock(clock, sizeof(clock), ev->time);
    progress_one_line(err, sizeof(err), ev->error ? ev->error : "unknown error");
    /* A foreach element by its position and item: resize[3] "b.png". */
    progress_one_line(task, sizeof(task),
                      cli_act_label(task, sizeof(task), ev->task, ev->index, ev->item, true));
    pthread_mutex_lock(&p->mu);
    if (ev->activation > p->max_act) {
        p->max_act = ev->activation;
    }
    if (ev->type != FLOW_EV_RUN_STARTED && ev->type != FLOW_EV_RUN_ENDED) {
        p->last_event = cli_now();
    }
    switch (ev->type) {
    case FLOW_EV_TASK_STARTED:
        add_running(p, ev);
        n = line_head(p, line, sizeof(line), clock, "started");
        snprintf(line + n, sizeof(line) - n, " %s (attempt %d)", task,
                 ev->attempt > 0 ? ev->attempt : 1);
        break;
    case FLOW_EV_TASK_COMPLETED:
        started = remove_running(p, ev->activation);
        p->done++;
        n = line_head(p, line, sizeof(line), clock, "completed");
        n += (size_t)snprintf(line + n, sizeof(line) - n, " %s", task);
        if (started > 0 && ev->time >= started && n < sizeof(line)) {
            n += (size_t)snprintf(line + n, sizeof(line) - n, " (%.2fs)", ev->time - started);
        }
        if (ev->label && !strcmp(ev->label, "cached") && n < sizeof(line)) {
            /* Its output came from the cache: it did not run. */
            n += (size_t)snprintf(line + n, sizeof(line) - n, " (cached)");
        }
        if (ev->error && n < sizeof(line)) {
            /* on_error: ignore -- the failure counts as a completion. */
            snprintf(line + n, sizeof(line) - n, ", error ignored: %s", err);
        }
        break;
    case FLOW_EV_TASK_FAILED:
        remove_running(p, ev->activation);
        p->done++;
        p->failed++;
        permanent = true;
        n = line_head(p, line, sizeof(line), clock, "failed");
        snprintf(line + n, sizeof(line) - n, " %s: %s", task, err);
        break;
    case FLOW_EV_TASK_RETRYING:
        /* ev->attempt is the attempt that failed; the next one is attempt + 1. */
        remove_running(p, ev->activation);
        permanent = true;
        n = line_head(p, line, sizeof(line), clock, "retrying");
        snprintf(line + n, sizeof(line) - n, " %s in %.1fs (attempt %d): %s", task, ev->delay,
                 (ev->attempt > 0 ? ev->attempt : 1) + 1, err);
        break;
    case FLOW_EV_TASK_SKIPPED:
        remove_running(p, ev->activation);
        p->done++;
        n = line_head(p, line, sizeof(line), clock, "skipped");
        snprintf(line + n, sizeof(line) - n, " %s", task);
        break;
    case FLOW_EV_TASK_CANCELLED:
        remove_running(p, ev->activation);
        p->done++;
        n = line_head(p, line, sizeof(line), clock, "cancelled");
        snprintf(line + n, sizeof(line) - n, " %s", task);
        break;
    case FLOW_EV_TASK_WAITING:
        /* Ready, but a limit holds it: say which, once. */
        n = line_head(p, line, sizeof(line), clock, "waiting");
        snprintf(line + n, sizeof(line) - n, " %s: %s", task, ev->label ? ev->label : "a limit");
        break;
    case FLOW_EV_LABEL:
        n = line_head(p, line, sizeof(line), clock, "emitted");
        snprintf(line + n, sizeof(line) - n, " %s -> %s", task, ev->label ? ev->label : "?");
        break;
    case FLOW_EV_RUN_STARTED:
    case FLOW_EV_RUN_ENDED:
    default:
        break;
    }
    if (line[0] && (!p->tty || permanent)) {
        queue_line(p, line);
    }
    p->dirty = true;
    pthread_mutex_unlock(&p->mu);
}

double progress_last_event(struct progress *p)
{
    double t;

    pthread_mutex_lock(&p->mu);
    t = p->last_event;
    pthread_mutex_unlock(&p->mu);
    return t;
}

void progress_print(struct progress *p, const char *line)
{
    pthread_mutex_lock(&p->mu);
    queue_line(p, line);
    p->dirty = true;
    pthread_mutex_unlock(&p->mu);
}

void progress_on_log(flow_log_level level, const char *message, void *udata)
{
    struct progress *p = udata;
    char text[LINE_MAX_LEN];
    char line[LINE_MAX_LEN + 16];

    const char *what = level >= FLOW_LOG_ERROR ? "error"
                       : level == FLOW_LOG_WARN ? "warning"
                                                : "info";
    const char *code = p->color ? cli_color_code(what) : "";

    progress_one_line(text, sizeof(text), message);
    snprintf(line, sizeof(line), "%s%s:%s %s", code, what, code[0] ? CLI_COLOR_RESET : "", text);
    pthread_mutex_lock(&p->mu);
    queue_line(p, line);
    p->dirty = true;
    pthread_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------------------------ */
/* Main thread side                                                          */

static int terminal_width(void)
{
    struct winsize ws;

    memset(&ws, 0, sizeof(ws));
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
        return ws.ws_col;
    }
    return 80;
}

/* Cut `s` to at most `cols` characters (UTF-8 sequences count as one). */
static void truncate_columns(char *s, int cols)
{
    int n = 0;
    char *c = s;

    for (; *c; c++) {
        if (((unsigned char)*c & 0xC0) != 0x80) {
            if (n == cols) {
                *c = '\0';
                return;
            }
            n++;
        }
    }
}

/* The bar, e.g. "[#######.......] 12/40 done, 2 running, 1 failed | running: a, b". */
static void format_bar(struct progress *p, char *out, size_t cap)
{
    size_t total = p->task_count;
    size_t filled;
    size_t n;
    size_t i;
    char cells[BAR_CELLS + 1];

    if (p->max_act > total) {
        total = (size_t)p->max_act;
    }
    if (p->done + p->running_count > total) {
        total = p->done + p->running_count;
    }
    filled = total ? p->done * BAR_CELLS / total : 0;
    for (i = 0; i < BAR_CELLS; i++) {
        cells[i] = i < filled ? '#' : '.';
    }
    cells[BAR_CELLS] = '\0';
    n = (size_t)snprintf(out, cap, "[%s] %zu/%zu done, %zu running", cells, p->done, total,
                         p->running_count);
    if (p->failed && n < cap) {
        n += (size_t)snprintf(out + n, cap - n, ", %zu failed", p->failed);
    }
    for (i = 0; i < p->running_count && n < cap; i++) {
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? ", " : " | running: ",
                              p->running[i].task);
    }
}

/* Progress is best effort: a reader of stderr that went away (`2>&1 | head -1`)
 * only means nobody reads it any more, never that the run should stop. */
static void write_all(struct progress *p, const char *s, size_t len)
{
    while (len > 0 && !p->gone) {
        ssize_t w = write(STDERR_FILENO, s, len);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            p->gone = w < 0 && (errno == EPIPE || errno == EBADF);
            return;
        }
        s += w;
        len -= (size_t)w;
    }
}

static void flush_lines(struct progress *p, bool redraw)
{
    char *queue;
    size_t len;
    size_t dropped;
    bool dirty;
    char bar[1024];

    pthread_mutex_lock(&p->mu);
    queue = p->queue;
    len = p->queue_len;
    dropped = p->dropped;
    dirty = p->dirty;
    p->queue = NULL;
    p->queue_len = 0;
    p->queue_cap = 0;
    p->dropped = 0;
    p->dirty = false;
    bar[0] = '\0';
    if (p->tty && redraw && dirty) {
        format_bar(p, bar, sizeof(bar));
    }
    pthread_mutex_unlock(&p->mu);

    if (p->bar_shown && (len > 0 || bar[0] || !redraw)) {
        write_all(p, "\r\033[K", 4);
        p->bar_shown = false;
    }
    if (len > 0) {
        write_all(p, queue, len);
    }
    free(queue);
    if (dropped > 0) {
        char note[96];
        int n = snprintf(note, sizeof(note), "(%zu progress lines dropped)\n", dropped);

        write_all(p, note, (size_t)n);
    }
    if (bar[0]) {
        int width = terminal_width();

        /* One column short of the width: a full line would wrap on some terminals. */
        truncate_columns(bar, width > 1 ? width - 1 : 1);
        write_all(p, bar, strlen(bar));
        p->bar_shown = true;
    }
}

void progress_tick(struct progress *p)
{
    flush_lines(p, true);
}

void progress_finish(struct progress *p)
{
    flush_lines(p, false);
}
