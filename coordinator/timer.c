#include "coordinator/timer.h"

#include <stdlib.h>

static void place(coord_timers *h, size_t i, coord_timer *t)
{
    h->heap[i] = t;
    t->pos = i + 1;
}

static void sift_up(coord_timers *h, size_t i)
{
    coord_timer *t = h->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->heap[parent]->at_us <= t->at_us)
            break;
        place(h, i, h->heap[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(coord_timers *h, size_t i)
{
    coord_timer *t = h->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->heap[c + 1]->at_us < h->heap[c]->at_us)
            c++;
        if (t->at_us <= h->heap[c]->at_us)
            break;
        place(h, i, h->heap[c]);
        i = c;
    }
    place(h, i, t);
}

void coord_timer_init(coord_timer *t, void (*fire)(void *owner), void *owner)
{
    t->at_us = 0;
    t->pos = 0;
    t->fire = fire;
    t->owner = owner;
}

void coord_timers_init(coord_timers *h)
{
    h->heap = NULL;
    h->n = h->cap = 0;
}

void coord_timers_free(coord_timers *h)
{
    free(h->heap);
    coord_timers_init(h);
}

cr_err coord_timers_arm(coord_timers *h, coord_timer *t, uint64_t at_us)
{
    if (t->pos) {
        size_t i = t->pos - 1;
        uint64_t was = t->at_us;
        t->at_us = at_us;
        if (at_us < was)
            sift_up(h, i);
        else
            sift_down(h, i);
        return CR_OK;
    }
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        coord_timer **g = realloc(h->heap, cap * sizeof *g);
        if (!g)
            return cr_error_set(CR_ERR_NOMEM, "out of memory");
        h->heap = g;
        h->cap = cap;
    }
    t->at_us = at_us;
    place(h, h->n++, t);
    sift_up(h, h->n - 1);
    return CR_OK;
}

void coord_timers_cancel(coord_timers *h, coord_timer *t)
{
    size_t i;
    coord_timer *last;
    if (!t->pos)
        return;
    i = t->pos - 1;
    t->pos = 0;
    last = h->heap[--h->n];
    if (i == h->n)
        return;
    place(h, i, last);
    if (i > 0 && h->heap[(i - 1) / 2]->at_us > last->at_us)
        sift_up(h, i);
    else
        sift_down(h, i);
}

uint64_t coord_timers_next(const coord_timers *h)
{
    return h->n ? h->heap[0]->at_us : UINT64_MAX;
}

size_t coord_timers_run(coord_timers *h, uint64_t now_us)
{
    size_t fired = 0;
    while (h->n && h->heap[0]->at_us <= now_us) {
        coord_timer *t = h->heap[0];
        coord_timers_cancel(h, t);
        t->fire(t->owner);
        fired++;
    }
    return fired;
}
