/* clock.c: see clock.h. */
#include "core/clock.h"

#include <stdlib.h>

static long offset_s;

void clock_init(void)
{
    const char *v = getenv("TOLLGATE_CLOCK_OFFSET");
    offset_s = v ? strtol(v, NULL, 10) : 0;
}

void clock_wall(struct timespec *ts)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += offset_s;
}

long long clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long clock_to_period_end(time_t t, char period)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    if (period == 'm') {
        tm.tm_mday = 1;
        tm.tm_mon++; /* timegm normalises December + 1 into January */
    } else {
        tm.tm_mday++;
    }
    time_t end = timegm(&tm);
    return end > t ? (long)(end - t) : 1;
}
