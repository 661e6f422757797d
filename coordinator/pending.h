/* pending.h — the coordinator's table of backend calls in flight, indexed by call id.
 *
 * A call id is (generation << 32) | slot. Free slots sit on a free list and are reused; a
 * slot's generation grows each time it is freed, so the id of a freed call (a late reply, the
 * answer of a hedged twin that lost) never matches again. Add, find and delete touch exactly
 * one slot whatever has passed before: no probing, no tombstones, O(1) forever. The table
 * grows (doubling) with the number of calls in flight, never with the number of calls made.
 *
 *   coord_pending *t; coord_pending_new(&t, 1u << 20);
 *   coord_pending_entry e = {call, sub, backend}; uint64_t id;
 *   if (coord_pending_add(t, &e, &id)) ...              // CR_ERR_OVERLOADED when full
 *   coord_pending_entry *p = coord_pending_find(t, id); // NULL: unknown, freed or stale
 *   coord_pending_del(t, id);
 *
 * Id 0 is never issued. Thread rules: one thread (the event loop).
 */
#ifndef COORD_PENDING_H
#define COORD_PENDING_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct coord_pending coord_pending;

typedef struct coord_pending_entry {
    void *owner; /* the call waiting for the answer; NULL for a health ping */
    int sub;     /* the sub-request of the owner */
    int backend; /* the backend the request went to */
} coord_pending_entry;

typedef struct coord_pending_stats {
    size_t in_use;   /* calls in flight */
    size_t slots;    /* slots allocated (grows with in_use, never with history) */
    uint64_t probes; /* slots read by add/find/del since creation: one per operation */
} coord_pending_stats;

/* A table that holds at most max_slots calls at once (>= 1, <= 2^31). */
cr_err coord_pending_new(coord_pending **out, uint32_t max_slots);
void coord_pending_free(coord_pending **pp);

/* Stores a copy of *e under a fresh id. CR_ERR_OVERLOADED when max_slots calls are in
 * flight, CR_ERR_NOMEM when the table cannot grow. */
cr_err coord_pending_add(coord_pending *t, const coord_pending_entry *e, uint64_t *id);

/* The entry of a call in flight, or NULL for an id never issued, freed, or from an earlier
 * generation of its slot. The pointer is valid until the next add or del. */
coord_pending_entry *coord_pending_find(coord_pending *t, uint64_t id);

/* Frees the call's slot; 1 when it was in flight, 0 when the id was unknown or stale. */
int coord_pending_del(coord_pending *t, uint64_t id);

/* Visits every call in flight (a map reload re-routes them); fn may delete the visited id. */
void coord_pending_each(coord_pending *t, void (*fn)(void *ctx, uint64_t id,
                                                    coord_pending_entry *e), void *ctx);

coord_pending_stats coord_pending_get_stats(const coord_pending *t);

#endif
