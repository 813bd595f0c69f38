/*
 * count.h -- for the harnesses' --count mode (bench/guard.sh): callgrind's instrumentation
 * switched on around what a harness measures and off elsewhere, under
 * valgrind --tool=callgrind --instr-atstart=no. Callgrind counts the instructions of every
 * thread while the instrumentation is on, so the engine's loop and pool threads are counted too.
 * HAVE_CALLGRIND_H comes from CMake when valgrind's header is installed; without it --count
 * is refused rather than counting the whole process.
 */
#ifndef FLOW_BENCH_COUNT_H
#define FLOW_BENCH_COUNT_H

#include <stdbool.h>

#ifdef HAVE_CALLGRIND_H
#include <valgrind/callgrind.h>
#endif

/* NULL when --count can work in this process, else why not. */
static inline const char *count_unavailable(void)
{
#ifdef HAVE_CALLGRIND_H
    if (!RUNNING_ON_VALGRIND)
        return "--count runs under valgrind --tool=callgrind --instr-atstart=no";
    return NULL;
#else
    return "--count needs valgrind/callgrind.h at build time: install valgrind, then reconfigure";
#endif
}

/* Instrumentation on or off, for every thread. Each switch flushes valgrind's translations:
 * do it around whole runs, not per task. */
static inline void count_instrument(bool on)
{
#ifdef HAVE_CALLGRIND_H
    if (on)
        CALLGRIND_START_INSTRUMENTATION;
    else
        CALLGRIND_STOP_INSTRUMENTATION;
#else
    (void)on;
#endif
}

#endif
