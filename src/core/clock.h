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
/* Seconds from t to the start of the next UTC month ('m') or day ('d'). */
long clock_to_period_end(time_t t, char period);

#endif
