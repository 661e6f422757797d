/* clock.h — time sources. Monotonic for durations and deadlines; wall clock only for
 * timestamps that leave the process. */
#ifndef CR_CLOCK_H
#define CR_CLOCK_H

#include <stdint.h>

uint64_t cr_clock_mono_ns(void);
uint64_t cr_clock_mono_us(void);
uint64_t cr_clock_mono_ms(void);
int64_t cr_clock_unix_ms(void);
/* Sleeps `ms` milliseconds, resuming after signals. */
void cr_clock_sleep_ms(uint64_t ms);

#endif
