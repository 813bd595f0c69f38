/* hub.c -- wakes the event streams of `flow serve` when something happens:
 * a generation counter under a lock and a condition. A stream reads the
 * store after each wake, so the store stays the one source of truth (a
 * run another process executes is streamed too, by the same reads, only
 * woken by the clock instead of by its events). */
#include "util/compat.h"

#include <time.h>

#include "serve/serve_int.h"

void hub_init(struct hub *h)
{
    pthread_condattr_t attr;
    pthread_mutex_init(&h->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&h->cond, &attr);
    pthread_condattr_destroy(&attr);
    h->gen = 0;
    h->closing = false;
}

void hub_destroy(struct hub *h)
{
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->lock);
}

void hub_notify(struct hub *h)
{
    pthread_mutex_lock(&h->lock);
    h->gen++;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

void hub_close(struct hub *h)
{
    pthread_mutex_lock(&h->lock);
    h->closing = true;
    h->gen++;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

uint64_t hub_wait(struct hub *h, uint64_t seen, int ms, bool *closing)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&h->lock);
    while (h->gen == seen && !h->closing)
        if (pthread_cond_timedwait(&h->cond, &h->lock, &until) != 0)
            break;
    uint64_t gen = h->gen;
    *closing = h->closing;
    pthread_mutex_unlock(&h->lock);
    return gen;
}
