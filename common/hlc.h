/* hlc.h — hybrid logical clock for item versions: (wall-clock ms << 16) | counter, never
 * going backwards, so a retry or a reordered older write can be recognised by comparing
 * versions. Thread-safe (atomic).
 *
 * The clock never wraps: once it has produced or observed UINT64_MAX it refuses to produce
 * more (cr_hlc_next returns 0, which is never a version), because a version that went back
 * to 0 or to the wall clock would make every later write look older than the stored one.
 * Versions chosen by clients are checked against the physical clock with cr_hlc_check before
 * they are observed, so a client cannot push the clock (and every later version) far ahead.
 */
#ifndef CR_HLC_H
#define CR_HLC_H

#include <stdatomic.h>
#include <stdint.h>

#include "common/err.h"

#define CR_HLC_SHIFT 16 /* bits of the logical counter below the wall-clock milliseconds */
/* How far a client-chosen version may lead the coordinator's physical clock: generous for
 * clients whose clocks are a little ahead, far below what freezes items (2^63 is ~2.8e5
 * years ahead). */
#define CR_HLC_MAX_SKEW_MS 60000

typedef struct cr_hlc {
    _Atomic uint64_t last;
} cr_hlc;

void cr_hlc_init(cr_hlc *h);
/* A version greater than every version this clock produced or observed, or 0 when there is
 * none (the clock has reached UINT64_MAX): the caller must then refuse the write. */
uint64_t cr_hlc_next(cr_hlc *h);
/* Moves the clock past a version seen from elsewhere (never backwards). */
void cr_hlc_observe(cr_hlc *h, uint64_t seen);
/* The highest version produced or observed so far (0 = none). */
uint64_t cr_hlc_last(cr_hlc *h);
/* The highest version a physical clock reading `wall_ms` allows when versions may lead it by
 * `skew_ms`: ((wall_ms + skew_ms) << 16) | 0xffff, saturated at UINT64_MAX. */
uint64_t cr_hlc_bound(int64_t wall_ms, uint64_t skew_ms);
/* Checks a version chosen by a client: CR_OK when `v` is no later than the clock's last
 * version or cr_hlc_bound(now, skew_ms); CR_ERR_INVALID (with a message) when it is. The
 * bound follows the physical clock, not `last`, so accepted versions cannot ratchet it. */
cr_err cr_hlc_check(cr_hlc *h, uint64_t v, uint64_t skew_ms);

#endif
