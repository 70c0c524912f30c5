/* clock.h: wall-clock time for periods (UTC month and day), records and
 * Retry-After, and the monotonic milliseconds of deadlines. Tests shift the
 * wall clock with TOLLGATE_CLOCK_OFFSET (seconds, read once at startup from
 * the environment, never from a request) to cross a month boundary without
 * waiting for one. */
#ifndef TOLLGATE_CLOCK_H
#define TOLLGATE_CLOCK_H

#include <time.h>

/* Reads TOLLGATE_CLOCK_OFFSET; call once before starting threads. */
void clock_init(void);
void clock_wall(struct timespec *ts);
/* Milliseconds on the monotonic clock (deadlines, back-off; not shifted). */
long long clock_mono_ms(void);
/* The billing period of t for a tenant whose period starts on day anchor
 * (1..31; 0 counts as 1) of each UTC month, clamped to the month's last
 * day (anchor 31 starts on Feb 28 or 29): *start and *end (exclusive). The
 * one home of the period rule: every month key is named for its start. */
void clock_period(time_t t, int anchor, time_t *start, time_t *end);
/* Seconds from t to the end of its billing period ('m', anchor as
 * clock_period) or to the start of the next UTC day ('d'); at least 1. */
long clock_to_period_end(time_t t, char period, int anchor);

#endif
