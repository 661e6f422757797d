#include "coordinator/pending.h"

#include <stdlib.h>

#define FIRST_SLOTS 256u
#define NO_SLOT UINT32_MAX

typedef struct slot {
    coord_pending_entry e;
    uint32_t gen;  /* generation of the current (or next) call in this slot; never 0 */
    uint32_t next; /* next free slot while free */
    int used;
} slot;

struct coord_pending {
    slot *s;
    uint32_t n_slots, max_slots, free_head;
    size_t in_use;
    uint64_t probes;
};

/* Links slots [from, to) onto the free list, lowest first. */
static void link_free(coord_pending *t, uint32_t from, uint32_t to)
{
    for (uint32_t i = to; i-- > from;) {
        t->s[i].gen = 1;
        t->s[i].used = 0;
        t->s[i].next = t->free_head;
        t->free_head = i;
    }
}

static cr_err grow(coord_pending *t)
{
    uint32_t n = t->n_slots ? t->n_slots * 2 : FIRST_SLOTS;
    slot *g;
    if (n > t->max_slots)
        n = t->max_slots;
    if (n <= t->n_slots)
        return cr_error_set(CR_ERR_OVERLOADED, "%u backend calls in flight", t->n_slots);
    g = realloc(t->s, (size_t)n * sizeof *g);
    if (!g)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    t->s = g;
    link_free(t, t->n_slots, n);
    t->n_slots = n;
    return CR_OK;
}

cr_err coord_pending_new(coord_pending **out, uint32_t max_slots)
{
    coord_pending *t;
    if (max_slots < 1 || max_slots > (1u << 31))
        return cr_error_set(CR_ERR_INVALID, "pending table size %u out of range", max_slots);
    t = calloc(1, sizeof *t);
    if (!t)
        return cr_error_set(CR_ERR_NOMEM, "out of memory");
    t->max_slots = max_slots;
    t->free_head = NO_SLOT;
    *out = t;
    return CR_OK;
}

void coord_pending_free(coord_pending **pp)
{
    coord_pending *t = pp ? *pp : NULL;
    if (!t)
        return;
    free(t->s);
    free(t);
    *pp = NULL;
}

cr_err coord_pending_add(coord_pending *t, const coord_pending_entry *e, uint64_t *id)
{
    slot *s;
    uint32_t i;
    if (t->free_head == NO_SLOT) {
        cr_err rc = grow(t);
        if (rc)
            return rc;
    }
    i = t->free_head;
    s = &t->s[i];
    t->probes++;
    t->free_head = s->next;
    s->e = *e;
    s->used = 1;
    t->in_use++;
    *id = (uint64_t)s->gen << 32 | i;
    return CR_OK;
}

coord_pending_entry *coord_pending_find(coord_pending *t, uint64_t id)
{
    uint32_t i = (uint32_t)id, gen = (uint32_t)(id >> 32);
    t->probes++;
    if (i >= t->n_slots || !t->s[i].used || t->s[i].gen != gen)
        return NULL;
    return &t->s[i].e;
}

int coord_pending_del(coord_pending *t, uint64_t id)
{
    slot *s;
    if (!coord_pending_find(t, id))
        return 0;
    s = &t->s[(uint32_t)id];
    s->used = 0;
    s->gen = s->gen == UINT32_MAX ? 1 : s->gen + 1; /* the freed id never matches again */
    s->next = t->free_head;
    t->free_head = (uint32_t)id;
    t->in_use--;
    return 1;
}

void coord_pending_each(coord_pending *t, void (*fn)(void *ctx, uint64_t id,
                                                    coord_pending_entry *e), void *ctx)
{
    for (uint32_t i = 0; i < t->n_slots; i++)
        if (t->s[i].used)
            fn(ctx, (uint64_t)t->s[i].gen << 32 | i, &t->s[i].e);
}

coord_pending_stats coord_pending_get_stats(const coord_pending *t)
{
    coord_pending_stats st = {t->in_use, t->n_slots, t->probes};
    return st;
}
