/* hlc.h — hybrid logical clock for item versions: (wall-clock ms << 16) | counter, never
 * going backwards, so a retry or a reordered older write can be recognised by comparing
 * versions. Thread-safe (atomic). */
#ifndef CR_HLC_H
#define CR_HLC_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct cr_hlc {
    _Atomic uint64_t last;
} cr_hlc;

void cr_hlc_init(cr_hlc *h);
/* A version greater than every version this clock produced or observed. */
uint64_t cr_hlc_next(cr_hlc *h);
/* Moves the clock past a version seen from elsewhere. */
void cr_hlc_observe(cr_hlc *h, uint64_t seen);

#endif
