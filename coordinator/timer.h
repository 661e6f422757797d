/* timer.h — the event loop's timers: a binary min-heap of deadlines (monotonic microseconds).
 * A timer is embedded in its owner (a backend call, the loop itself) and remembers its heap
 * position, so arming, re-arming and cancelling are O(log n) and a cancelled timer leaves
 * nothing behind.
 *
 *   coord_timer t; coord_timer_init(&t, on_fire, owner);
 *   coord_timers_arm(&heap, &t, now_us + 30000);   // re-arming moves it
 *   coord_timers_cancel(&heap, &t);                 // before freeing the owner
 *   coord_timers_run(&heap, now_us);                // fires every due timer, earliest first
 *
 * A timer is disarmed before its function runs; the function may arm or cancel any timer.
 * Thread rules: one thread (the event loop).
 */
#ifndef COORD_TIMER_H
#define COORD_TIMER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct coord_timer {
    uint64_t at_us;
    size_t pos;                /* heap position + 1; 0 = not armed */
    void (*fire)(void *owner); /* runs on the loop thread */
    void *owner;
} coord_timer;

typedef struct coord_timers {
    coord_timer **heap;
    size_t n, cap;
} coord_timers;

void coord_timer_init(coord_timer *t, void (*fire)(void *owner), void *owner);
void coord_timers_init(coord_timers *h);
/* Frees the heap only; the timers belong to their owners. */
void coord_timers_free(coord_timers *h);

/* Arms (or moves) t to fire at at_us. CR_ERR_NOMEM when the heap cannot grow. */
cr_err coord_timers_arm(coord_timers *h, coord_timer *t, uint64_t at_us);
/* Disarms t; a no-op when it is not armed. */
void coord_timers_cancel(coord_timers *h, coord_timer *t);
/* The earliest deadline, UINT64_MAX when no timer is armed. */
uint64_t coord_timers_next(const coord_timers *h);
/* Fires every timer due at now_us; returns how many fired. */
size_t coord_timers_run(coord_timers *h, uint64_t now_us);

#endif
