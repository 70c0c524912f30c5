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

/* Midnight UTC of day anchor (clamped) of month mon (0-based, may be -1 or
 * 12: timegm normalises it) of year. */
static time_t anchor_day(int year, int mon, int anchor)
{
    struct tm first = {.tm_year = year, .tm_mon = mon + 1, .tm_mday = 0};
    time_t last = timegm(&first); /* day 0 of the next month: this month's last */
    struct tm l;
    gmtime_r(&last, &l);
    struct tm at = {
        .tm_year = year, .tm_mon = mon, .tm_mday = anchor < l.tm_mday ? anchor : l.tm_mday};
    return timegm(&at);
}

void clock_period(time_t t, int anchor, time_t *start, time_t *end)
{
    struct tm tm;
    if (anchor < 1 || anchor > 31)
        anchor = 1;
    gmtime_r(&t, &tm);
    int mon = tm.tm_mon;
    if (t < anchor_day(tm.tm_year, mon, anchor))
        mon--; /* before this month's anchor: the period began last month */
    *start = anchor_day(tm.tm_year, mon, anchor);
    *end = anchor_day(tm.tm_year, mon + 1, anchor);
}

long clock_to_period_end(time_t t, char period, int anchor)
{
    time_t start, end;
    if (period == 'm') {
        clock_period(t, anchor, &start, &end);
    } else {
        end = t - ((t % 86400) + 86400) % 86400 + 86400;
    }
    return end > t ? (long)(end - t) : 1;
}
