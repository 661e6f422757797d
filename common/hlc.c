#include "hlc.h"

#include "common/clock.h"

#define WALL_MAX_MS (UINT64_MAX >> CR_HLC_SHIFT)

/* The wall-clock part of a version; a clock before 1970 counts as 0 and one beyond the
 * representable range (year ~10889) saturates instead of wrapping. */
static uint64_t wall_version(int64_t ms)
{
    uint64_t u = ms > 0 ? (uint64_t)ms : 0;
    return (u > WALL_MAX_MS ? WALL_MAX_MS : u) << CR_HLC_SHIFT;
}

void cr_hlc_init(cr_hlc *h)
{
    atomic_init(&h->last, 0);
}

uint64_t cr_hlc_next(cr_hlc *h)
{
    uint64_t wall = wall_version(cr_clock_unix_ms());
    uint64_t old = atomic_load(&h->last), next;
    do {
        if (old == UINT64_MAX)
            return 0;
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

uint64_t cr_hlc_last(cr_hlc *h)
{
    return atomic_load(&h->last);
}

uint64_t cr_hlc_bound(int64_t wall_ms, uint64_t skew_ms)
{
    uint64_t u = wall_ms > 0 ? (uint64_t)wall_ms : 0;
    if (skew_ms > WALL_MAX_MS || u > WALL_MAX_MS - skew_ms)
        return UINT64_MAX;
    return ((u + skew_ms) << CR_HLC_SHIFT) | ((1u << CR_HLC_SHIFT) - 1);
}

cr_err cr_hlc_check(cr_hlc *h, uint64_t v, uint64_t skew_ms)
{
    int64_t now = cr_clock_unix_ms();
    uint64_t bound = cr_hlc_bound(now, skew_ms);
    if (v <= bound || v <= atomic_load(&h->last))
        return CR_OK;
    return cr_error_set(CR_ERR_INVALID,
                        "version %llu is beyond the server's clock (%llu) by more than the "
                        "allowed %llu ms; versions come from the servers (send 0)",
                        (unsigned long long)v, (unsigned long long)wall_version(now),
                        (unsigned long long)skew_ms);
}
