#include "hlc.h"

#include "common/clock.h"

void cr_hlc_init(cr_hlc *h)
{
    atomic_init(&h->last, 0);
}

uint64_t cr_hlc_next(cr_hlc *h)
{
    uint64_t wall = (uint64_t)cr_clock_unix_ms() << 16;
    uint64_t old = atomic_load(&h->last), next;
    do {
        next = wall > old ? wall : old + 1;
    } while (!atomic_compare_exchange_weak(&h->last, &old, next));
    return next;
}

void cr_hlc_observe(cr_hlc *h, uint64_t seen)
{
    uint64_t old = atomic_load(&h->last);
    while (seen > old && !atomic_compare_exchange_weak(&h->last, &old, seen))
        ;
}
