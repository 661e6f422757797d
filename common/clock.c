#include "clock.h"

#include <errno.h>
#include <time.h>

uint64_t cr_clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t cr_clock_mono_us(void)
{
    return cr_clock_mono_ns() / 1000u;
}

uint64_t cr_clock_mono_ms(void)
{
    return cr_clock_mono_ns() / 1000000u;
}

int64_t cr_clock_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cr_clock_sleep_ms(uint64_t ms)
{
    struct timespec req = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&req, &req) != 0 && errno == EINTR)
        ;
}
